// mesob::storage event log: the committed changes as events, by offset (storage/README.md).
//
// Segments `events-<index:016x>.log` in one directory, each holding `segment_events`
// events: segment i holds offsets i * segment_events + 1 .. (i + 1) * segment_events.
// Events are stored packed (wire/event_pack.hpp: columns of fixed-width numbers, the
// event's CRC-32C among them), in chunks of at most 128 events that never cross a
// 128-offset group; a full segment ends with a seal that says where each group starts.
// The format is below (`event_format`) and in storage/README.md. A stream of transfers
// takes about 14 bytes an event on the disk instead of 96: the log's writes were a fifth
// of what the engine wrote at its maximum rate (perf/RESULTS.md, twenty-third session).
// Every event read is checked (its chunk's CRC, then its offset and its own CRC), and
// recovery finds the end of the last segment at the first chunk that fails.
//
// One writer thread appends and syncs (fdatasync); readers on any thread read what it
// appended, before it is synced. Writes go around the
// page cache (O_DIRECT, whole 4 KiB blocks, the last partial block written again, the same
// bytes, with the next chunks): buffered appends cost the writer about 1.2 ns of kernel
// time per byte on this machine, direct ones a fifth of that. Bytes once written never
// change until a cut, so a torn write can only lose what came after them.
// The newest `ring_events` events are also kept in memory, unpacked, where readers near
// the end of the log find them; older ones are read from the files, also with O_DIRECT (a
// buffered read racing the rewrite of a partial block could cache a stale page).
// Retention drops whole segments, oldest first, past an age or a size; what was dropped
// is refused to readers (read_status::truncated).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "wire/types.hpp"

namespace mesob::storage {

// The on-disk format. Numbers are little-endian; CRCs are CRC-32C.
namespace event_format {
// Segment header, at byte 0: magic "MESOBEV2", u32 version, u32 segment_events,
// u64 segment index, u32 zero, u32 CRC of the 28 bytes before it.
constexpr char segment_magic[8] = {'M', 'E', 'S', 'O', 'B', 'E', 'V', '2'};
constexpr uint32_t version = 2;
constexpr size_t segment_header_bytes = 32;
// Chunk, from byte 32 on, back to back: u32 magic "EVCK", u16 events (1..128), u16 zero,
// u32 body bytes, u64 first offset, u32 CRC of the 20 bytes before it and the body; then
// the body: the events packed as one block (wire/event_pack.hpp). A chunk's events lie in
// one group of 128 offsets (group g of segment i: offsets i * segment_events + 128 g + 1
// onwards); a group's first chunk starts with its first offset.
constexpr uint32_t chunk_magic = 0x4b435645;  // "EVCK"
constexpr size_t chunk_header_bytes = 24;
constexpr size_t group_events = 128;
// Seal, once a segment is full: whole 4 KiB blocks from the first block boundary after
// its last chunk to the end of the file, the seal's bytes at their end: per group the
// byte position of its first chunk (u32), u32 the byte after the last chunk, u32 groups,
// u32 magic "EVSL", u32 CRC of the seal's bytes before it.
constexpr uint32_t seal_magic = 0x4c535645;  // "EVSL"
constexpr size_t seal_fixed_bytes = 16;
// Positions are 32-bit: a segment of this many events fits whatever its chunks.
constexpr uint64_t segment_events_max = 1ull << 22;
}  // namespace event_format

struct event_log_options {
  std::string dir;
  uint64_t segment_events = 1ull << 19;  // a multiple of 128, at most event_format::segment_events_max
  uint64_t ring_events = 1ull << 19;     // newest events kept in memory (a power of two)
  uint64_t retention_bytes = 0;          // 0: no size limit
  uint64_t retention_ns = 0;             // 0: no age limit
  // Offsets below this were synced (the engine records it with each snapshot): damage
  // before it is corruption, which refuses to open, not a torn tail to cut. 1: none known.
  uint64_t synced_end = 1;
};

struct event_log_recovery {
  uint64_t first_offset = 1;  // oldest event kept
  uint64_t next_offset = 1;   // the next event appended gets this offset
  uint64_t last_lsn = 0;      // lsn of the newest event (0: none kept)
  uint64_t segments = 0;
  std::string torn_tail;      // empty, or what was cut (file, offset, why)
};

class event_log {
 public:
  // Opens (creating the directory) and recovers: a torn last segment is cut after its
  // last whole chunk (a full one is sealed if it was not). A missing segment in the
  // middle, a segment before the last without its seal or whose first or last chunk is
  // damaged, a segment of another format or size, or damage or an end before
  // `synced_end`, refuses to open (naming the file and the byte) and changes nothing.
  static std::unique_ptr<event_log> open(const event_log_options& opt, event_log_recovery* rec, std::string* error);
  // The memory an open log comes to hold (its ring of `ring_events`, the packed groups'
  // ring and its slots, the write buffers), whatever the traffic: for a start's estimate.
  static uint64_t memory_bytes(uint64_t ring_events);
  ~event_log();
  event_log(const event_log&) = delete;
  event_log& operator=(const event_log&) = delete;

  // Recovery, before appending: where the events of log records >= `lsn` start at the
  // end of the log (next_offset() if none); cut_back_to() then removes them (a batch's
  // events may have been cut short by a crash; replay writes them again).
  bool newest_run_from(uint64_t lsn, uint64_t* from, std::string* error);
  // Removes every event from offset `end` on (durably; the events before it stay, at
  // every moment: the segment holding `end` is replaced whole). After a failure, open the
  // log again before using it.
  bool cut_back_to(uint64_t end, std::string* error);

  // ---- the writer thread
  // Appends events, giving each its offset (next_offset(), next_offset() + 1, ...) and
  // CRC: readable at once (the writes went around the page cache), durable after sync().
  // The first append into a new segment syncs first, so every segment before the last is
  // whole on the disk, and only the last can lose events to a power cut (opening cuts it
  // at its first damaged event).
  bool append(std::span<wire::event> events, std::string* error);
  // Makes every appended event durable (and readable).
  bool sync(std::string* error);
  [[nodiscard]] uint64_t next_offset() const { return next_offset_; }
  // Drops segments wholly older than the retention age, and the oldest while the log is
  // over its size; never the segment being written. Age is measured by the events' own
  // clock (engine time): a segment's newest event against the newest durable event, so
  // a step of the wall clock, which the engine clock does not follow, drops nothing
  // early (an idle engine's stream ages when it writes again). Returns how many. Each
  // removal is made durable (the directory synced) before the next: one whose sync
  // failed stops the drops until a later call's sync succeeds, and one whose file could
  // not be removed (out of the log all the same) until a later call removes it. Before,
  // a failed removal went unseen and the next segment's went on: the directory then held
  // a segment whose later neighbour was gone, which the next start refuses. A segment
  // whose events cannot be read (damage, an I/O error) stops the drops too, said on
  // stderr once for each new cause (before, in silence: the log grew past its limit).
  // At most `max` segments a call: the writer calls it between its appends, and a start
  // with a lower limit over a long log would otherwise hold them for every drop's read,
  // unlink and directory sync; it calls again at once while a call drops `max`.
  size_t apply_retention(size_t max = SIZE_MAX);

  // ---- any thread
  [[nodiscard]] uint64_t durable_end() const { return durable_end_.load(std::memory_order_acquire); }
  // One past the newest event appended: readers read below it.
  [[nodiscard]] uint64_t written_end() const { return written_end_.load(std::memory_order_acquire); }
  [[nodiscard]] uint64_t first_offset() const { return first_offset_.load(std::memory_order_acquire); }
  // Bytes the segment files hold.
  [[nodiscard]] uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  // Full segments opened for readers (their seals read) since open.
  [[nodiscard]] uint64_t segments_opened() const { return segments_opened_.load(std::memory_order_relaxed); }
  // Whether a read from `from` would find its first events in memory (the ring), not the
  // files: a hint, which the writer may make stale at once.
  [[nodiscard]] bool in_memory(uint64_t from) const {
    return from >= ring_first_.load(std::memory_order_acquire) &&
           ring_writing_.load(std::memory_order_acquire) <= from + ring_mask_ + 1;
  }
  enum class read_status { ok, truncated, failed };
  // Reads up to `max` events from offset `from` (>= 1), stopping at written_end().
  // truncated: `from` is older than the oldest event kept (retention dropped it).
  read_status read(uint64_t from, size_t max, std::vector<wire::event>* out, std::string* error);
  // The same into `out` (room for `max`); *n events read; *from_files (if given) set when
  // they came from the files, not the ring.
  read_status read(uint64_t from, size_t max, wire::event* out, size_t* n, std::string* error,
                   bool* from_files = nullptr);
  // The newest events as the writer packed them: from `from` (the first offset of a group
  // of 128), whole groups each appended as one chunk, up to `max` events, their packed
  // blocks appended to `out` back to back (wire/event_pack.hpp's form: a frame's packed
  // events). Returns how many events (a multiple of 128); 0 when `from` is not a group's
  // first, or its group is not kept packed in memory (older than the memory holds, not
  // whole yet, or split across appends with its first part no longer in the ring or
  // appended before this run or a cut): the caller reads and packs them itself.
  size_t read_packed(uint64_t from, size_t max, std::vector<uint8_t>& out) const;

  [[nodiscard]] static uint32_t event_crc(const wire::event& e);
  [[nodiscard]] static std::string segment_path(const std::string& dir, uint64_t index);

 private:
  event_log() = default;
  // A segment as readers see it: where each group's first chunk starts (written by the
  // writer before the events are visible, for the open segment; from the seal for a full
  // one) and where its chunks end.
  struct segment_file {
    int fd = -1;  // O_RDONLY | O_DIRECT
    std::unique_ptr<std::atomic<uint32_t>[]> starts;
    std::atomic<uint64_t> end{0};
    ~segment_file();
  };
  std::shared_ptr<segment_file> new_segment_file(uint64_t index, std::string* error) const;
  std::shared_ptr<segment_file> reader_fd(uint64_t index, std::string* error);
  bool open_for_append(uint64_t index, std::string* error);
  bool write_stage(size_t len, uint64_t at, uint64_t index, std::string* error);
  bool seal(std::string* error);
  bool read_files(uint64_t from, uint64_t to, uint64_t visible, wire::event* out, std::string* error);
  bool read_ring(uint64_t from, uint64_t to, wire::event* out) const;
  [[nodiscard]] uint64_t files_bytes() const;

  event_log_options opt_;
  uint64_t next_offset_ = 1;
  int append_fd_ = -1;
  uint64_t append_index_ = UINT64_MAX;  // the segment append_fd_ is open on
  // The segment next_offset_ lies in (UINT64_MAX: none yet) and the bytes it holds.
  std::shared_ptr<segment_file> last_;
  uint64_t last_index_ = UINT64_MAX;
  uint64_t last_end_ = 0;
  // The open segment's last partial 4 KiB block, as written (rewritten with the next chunks).
  uint8_t* tail_ = nullptr;
  uint8_t* stage_ = nullptr;  // aligned staging for one write
  size_t stage_bytes_ = 0;
  std::vector<uint8_t> pack_;  // one chunk's body
  // The newest events in memory: offset o in slot (o - 1) & (ring - 1). Slots up to
  // ring_writing_ - 1 may be being written: a reader's copy of offset o is good if,
  // after it, ring_writing_ <= o + ring.
  // malloc'ed: its pages come in as events arrive, those of each append's slots backed in
  // one call (populate_pages) while the ring is on its first pass, rather than faulted in
  // one by one (on this machine's hypervisor, 0.6 of the cost; perf/RESULTS.md,
  // seventy-first session). The same for packed_, 256 KiB ahead of the writes.
  wire::event* ring_ = nullptr;
  uint64_t ring_appended_ = 0;  // events appended since open (the ring's first pass: fewer than its slots)
  uint64_t ring_mask_ = 0;
  std::atomic<uint64_t> ring_writing_{1};
  std::atomic<uint64_t> ring_first_{1};  // oldest offset the ring was given
  // The newest whole groups' packed bodies, in memory for read_packed: bytes at
  // absolute position p in packed_[p & (packed_bytes - 1)]; group g's slot g & (slots - 1)
  // says where its bytes are (a seqlock: the group number is cleared while it changes).
  // A reader's copy of [p, p + len) is good if, after it, packed_writing_ <= p + packed_bytes.
  struct packed_slot {
    std::atomic<uint64_t> group{UINT64_MAX};
    std::atomic<uint64_t> at{0};
    std::atomic<uint32_t> len{0};
  };
  static constexpr uint64_t packed_bytes = 16ull << 20;
  uint8_t* packed_ = nullptr;  // mapped (huge pages): pages come in as chunks arrive
  uint64_t packed_backed_ = 0;  // its bytes [0, this) are backed (a first pass: packed_end_ only grows)
  std::unique_ptr<packed_slot[]> packed_slots_;
  uint64_t packed_slot_mask_ = 0;
  uint64_t packed_end_ = 0;  // the writer's next absolute position
  std::atomic<uint64_t> packed_writing_{0};
  void keep_packed(uint64_t group, const std::vector<uint8_t>& body);
  // A group whose first events an earlier append wrote (its chunks split at the append's
  // end): its events from `from` are `rest`, the rest of it is in the ring. Packed whole
  // for the packed ring, so that read_packed serves it too (else every frame starting at
  // an append's end would be read and packed again by the hub); not when the ring no
  // longer holds its first part (a ring smaller than the append) or it was appended
  // before this run or a cut.
  void keep_completed_group(uint64_t from, std::span<const wire::event> rest);
  std::vector<uint8_t> whole_group_pack_;
  bool unsynced_ = false;           // the open segment was written since the last sync (the ones before never are)
  bool dir_dirty_ = false;          // a segment was created since the last sync
  bool removal_unsynced_ = false;   // a dropped segment's removal is not durable yet (its directory sync failed)
  std::string removal_failed_;      // a dropped segment whose file could not be removed: tried again first
  uint64_t removal_failed_bytes_ = 0;  // its size, still counted in bytes_
  // Why retention last stopped at a segment it could not read ("" since it could):
  // written to stderr once each time it changes, not at every look.
  std::string retention_error_;
  bool remove_segment_file(const std::string& path);
  std::atomic<uint64_t> durable_end_{1};
  std::atomic<uint64_t> written_end_{1};
  std::atomic<uint64_t> first_offset_{1};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> segments_opened_{0};
  std::mutex mu_;  // guards readers_, reader_use_, readers_changed_, last_ (for readers) and segment removal
  // Full segments readers opened, at most readers_max, the least recently used going first
  // (subscribers catching up from different old segments keep theirs).
  struct reader_entry {
    std::shared_ptr<segment_file> file;
    uint64_t used = 0;
  };
  static constexpr size_t readers_max = 8;
  std::map<uint64_t, reader_entry> readers_;
  uint64_t reader_use_ = 0;
  // Counts the times a cut removed or replaced segments: a reader that opened one outside
  // mu_ keeps it only if no cut came meanwhile. (Retention drops only segments before
  // first_offset_, which such a reader checks again.)
  uint64_t readers_changed_ = 0;
  void keep_reader(uint64_t index, std::shared_ptr<segment_file> f);  // under mu_
};

}  // namespace mesob::storage
