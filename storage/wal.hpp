// mesob::storage write-ahead log: writer and reader.
//
// wal_writer — owned by one thread (the engine's sequencer). It stages records into
// a group buffer and commits the group with io_uring: one aligned O_DIRECT write
// linked to one fdatasync. Up to flights_max groups are in flight (1 by default, at
// most wal_flights_limit), reported durable strictly in log order; the next one is
// staged meanwhile, which is what makes group commit pay. A record is
// durable once the wait() that reports its group's completion returns; nothing may be
// acknowledged before. A helper thread pre-zeroes the next segment ahead of need.
//
// scan_wal — reads a log directory from the start, verifying every segment header,
// record checksum, lsn continuity and the hash chain, and hands each record to a
// callback. A torn tail (an unfinished last group) is cut and reported; damage before
// the tail is an error naming the file and offset.
#pragma once

#include <liburing.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "storage/wal_format.hpp"

namespace mesob::storage {

struct wal_options {
  std::string dir;
  uint64_t segment_bytes = 64ull << 20;
  uint64_t group_bytes_max = 8ull << 20;  // largest group committed by one write
  // Groups whose write+fdatasync may be in flight at once (1 .. wal_flights_limit). They
  // become durable, and are reported, in log order.
  uint32_t flights_max = 1;
};
constexpr uint32_t wal_flights_limit = 16;
// Upper bounds (seconds) of the commit latency histogram's buckets (wal_writer::stats).
inline constexpr std::array<double, 12> wal_commit_buckets = {0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005,
                                                              0.01,   0.025,   0.05,   0.1,   0.25,  1};

// Where the log continues after recovery.
struct wal_position {
  uint64_t next_lsn = 1;
  chain_hash chain{};               // chain hash of record next_lsn - 1
  uint64_t next_segment_index = 0;  // new appends start a fresh segment
};

struct wal_error {
  std::string message;
};

class wal_writer {
 public:
  enum class wait_status { committed, failed, woken, timed_out };

  // Opens the writer; appends go to a new segment `pos.next_segment_index`.
  // `wake_fd`, if >= 0, is an eventfd whose readability wakes wait().
  static std::unique_ptr<wal_writer> open(const wal_options& opt, const wal_position& pos,
                                          int wake_fd, std::string* error);
  ~wal_writer();
  wal_writer(const wal_writer&) = delete;
  wal_writer& operator=(const wal_writer&) = delete;

  // Bytes a record with this payload takes in a group.
  [[nodiscard]] static uint64_t record_bytes(uint64_t payload_bytes);
  [[nodiscard]] uint64_t record_payload_bytes_max() const;

  // Stages a record into the open group; the payload is the concatenation of
  // `pieces`. Returns its lsn, or 0 if the open group has no room (submit first).
  uint64_t stage(record_kind kind, uint16_t version, uint64_t timestamp,
                 std::span<const std::span<const uint8_t>> pieces);
  [[nodiscard]] bool group_empty() const { return staged_records_ == 0; }
  // A group, or a failure, not yet reported by wait().
  [[nodiscard]] bool in_flight() const { return !flights_.empty() || (failed_ && !failure_reported_); }
  [[nodiscard]] bool can_submit() const { return flights_.size() < opt_.flights_max && !failed_; }
  [[nodiscard]] uint64_t last_staged_lsn() const { return next_lsn_ - 1; }
  [[nodiscard]] uint64_t durable_lsn() const { return durable_lsn_; }
  [[nodiscard]] const chain_hash& durable_chain() const { return durable_chain_; }
  // Bytes of the segments in the log (not dropped), the one appended to included, each at
  // the size its header gives: what the log keeps on the disk (the owner's thread).
  [[nodiscard]] uint64_t kept_bytes() const { return kept_bytes_; }

  // Starts committing the open group. Requires can_submit() and !group_empty().
  void submit();
  // Waits for the oldest group in flight, the wake fd, or the timeout (-1: forever).
  // After `committed`, durable_lsn() covers that group (groups are reported one per
  // call, in log order). A failed group is reported as `failed` once every group
  // before it has been reported; the groups after it are dropped, never reported
  // durable. From then on error() says why and the writer accepts nothing more: the
  // log's tail is no longer trusted. Records staged meanwhile are never submitted.
  wait_status wait(int timeout_ms) { return wait_us(timeout_ms < 0 ? -1 : int64_t(timeout_ms) * 1000); }
  // The same with the timeout in microseconds (-1: forever), counted from the call.
  wait_status wait_us(int64_t timeout_us);
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] bool failed() const { return failure_reported_; }
  // Waits for any in-flight group (used at shutdown).
  bool drain();

  // Segments wholly before `lsn` (every record < lsn) are deleted, by the background
  // thread, a few MiB at a time. On this machine's ext4 (mounted with discard) an unlink of
  // a 64 MiB segment took 15-20 ms, and freeing six at once held the disk's fdatasyncs for
  // 14 ms; on the sequencer's thread a checkpoint that dropped six held every commit for
  // about 100 ms. Cut down 4 MiB per 10 ms, the fdatasyncs beside it do not stall.
  void drop_segments_before(uint64_t lsn);
  // What a dropped segment's name gets once it is out of the log (cut down, then deleted).
  static constexpr std::string_view dropped_suffix = ".dropped";
  // Renames of a dropped segment tried (a second apart) before it is left in place.
  static constexpr uint8_t drop_tries_max = 3;
  // Waits until every segment dropped so far is deleted (tests).
  void wait_dropped();
  // Any thread: while held, no dropped segment is moved out of the log's names (a scan of
  // the directory sees a steady set of segments); hold_drops waits out a step under way.
  void hold_drops();
  void release_drops();
  // Whether the writer needs the dropped segments deleted now: the next segment's
  // pre-zeroing failed (a full disk, say) while drops were held. A holder gives way.
  [[nodiscard]] bool drops_wanted() const { return drops_wanted_.load(std::memory_order_relaxed); }

  struct stats {
    uint64_t groups = 0;
    uint64_t records = 0;
    uint64_t bytes = 0;
    uint64_t flight_ns = 0;  // summed time from a group's submit to its durable completion
    std::array<uint64_t, wal_commit_buckets.size() + 1> commit_buckets{};  // per bucket, then +Inf (not cumulative)
    uint64_t segments_deleting = 0;  // dropped, not yet deleted (a disk falling behind shows here)
    uint64_t deleting_bytes = 0;     // what is left of them on the disk
  };
  // Safe from any thread (relaxed counters).
  [[nodiscard]] stats counters() const {
    stats s{groups_.load(std::memory_order_relaxed), records_.load(std::memory_order_relaxed),
            bytes_.load(std::memory_order_relaxed), flight_ns_.load(std::memory_order_relaxed), {}};
    for (size_t i = 0; i < s.commit_buckets.size(); ++i) s.commit_buckets[i] = commit_buckets_[i].load(std::memory_order_relaxed);
    std::lock_guard lk(prep_mu_);
    s.segments_deleting = unlink_queue_.size();
    for (const auto& d : unlink_queue_) s.deleting_bytes += d.bytes;
    return s;
  }

 private:
  wal_writer() = default;
  bool open_next_segment(std::string* error);
  void arm_wake();
  // Submits the `want` entries prepared; a passing EINTR, EAGAIN or EBUSY is waited out.
  void submit_all(int want);
  struct flight {
    uint64_t id = 0;  // submission number, in the completions' user data
    uint32_t buf = 0;
    uint64_t offset = 0, len = 0, done = 0;
    uint64_t first_lsn = 0, last_lsn = 0;
    chain_hash chain{};
    uint64_t start_ns = 0;
    int cqes_pending = 0;
    int write_res = 0, fsync_res = 0;
    int retries = 0;  // writes and fdatasyncs done again after EINTR or EAGAIN
    bool complete = false;
  };
  static constexpr int passing_retries_max = 100;
  void submit_range(flight& f, uint64_t offset, uint64_t len);
  void fail_flights(size_t from, const char* what, int res);
  void prepare_loop();

  wal_options opt_;
  io_uring ring_{};
  bool ring_ok_ = false;
  int wake_fd_ = -1;
  uint64_t wake_buf_ = 0;
  bool wake_armed_ = false;

  // current segment
  int fd_ = -1;
  uint64_t segment_index_ = 0;
  uint64_t segment_offset_ = 0;  // where the open group will be written
  bool segment_fresh_ = false;   // header block not yet written
  segment_header pending_header_{};

  // group buffers: one open, one per group in flight
  std::vector<uint8_t*> buf_;
  std::vector<uint32_t> free_bufs_;
  uint32_t open_buf_ = 0;
  uint64_t staged_bytes_ = 0;
  uint64_t staged_records_ = 0;
  uint64_t group_first_lsn_ = 0;
  uint64_t group_begin_ = 0;  // where the open group's first record lies in its buffer
  uint64_t group_last_lsn_ = 0;

  // groups in flight, oldest first
  std::deque<flight> flights_;
  uint64_t next_flight_id_ = 1;
  uint64_t cqes_outstanding_ = 0;  // write and fsync completions not yet reaped
  chain_hash durable_chain_{};

  uint64_t next_lsn_ = 1;
  uint64_t durable_lsn_ = 0;
  chain_hash chain_{};
  bool failed_ = false;            // a group failed: nothing more is submitted
  bool failure_reported_ = false;  // ... and wait() has said so (after every earlier group)
  std::string error_;
  std::atomic<uint64_t> groups_{0}, records_{0}, bytes_{0}, flight_ns_{0};
  std::array<std::atomic<uint64_t>, wal_commit_buckets.size() + 1> commit_buckets_{};

  // segment preparer
  std::thread preparer_;
  mutable std::mutex prep_mu_;
  std::condition_variable prep_cv_;
  std::optional<uint64_t> prep_request_;  // index to prepare
  std::optional<uint64_t> prep_ready_;    // index prepared
  std::optional<uint64_t> prep_busy_;     // index being zeroed now
  std::string prep_error_;
  struct dropped_segment {
    std::string path;
    uint64_t bytes = 0;    // what is left of it
    bool renamed = false;  // out of the log's names (<segment>.dropped): cut down, then deleted
    bool rename_unsynced = false;  // renamed, the directory's sync failed: no cut until one succeeds
    uint8_t failures = 0;  // renames that failed (drop_tries_max: given up on)
  };
  uint32_t drops_held_ = 0;
  std::atomic<bool> drops_wanted_{false};
  std::deque<dropped_segment> unlink_queue_;  // deleted after any pre-zeroing, a step at a time
  bool unlinking_ = false;                    // the preparer is cutting one down now
  bool prep_stop_ = false;
  struct live_segment {
    uint64_t index, first_lsn, bytes;
  };
  std::vector<live_segment> segments_;  // the live segments, oldest first
  uint64_t kept_bytes_ = 0;             // their bytes
};

// ---------------------------------------------------------------------------------
// Reading

struct wal_record_view {
  const record_header* header;
  std::span<const uint8_t> payload;
  const char* file;  // segment path, for messages
  uint64_t offset;   // of the record header in that file
  const chain_hash* prev_chain = nullptr;  // the chain hash before this record
};

// The largest segment file a scan reads (the config's wal_segment_mib ceiling): a
// larger one is damage (a size read from the disk is not trusted for memory).
constexpr uint64_t wal_segment_file_bytes_max = 4096ull << 20;

// (No segment size: each segment's header gives its own, checked against the file.)
struct wal_scan_options {
  std::string dir;
  bool repair_tail = true;  // cut a torn tail on disk (zero it, drop empty segments)
  // Read with O_DIRECT, around the page cache: for reading the log of a running engine
  // (its O_DIRECT appends and a buffered read racing them could leave a stale page in
  // the cache, which a later buffered read, such as recovery's, would trust).
  bool direct_io = false;
  // Non-zero: the scan begins at the newest segment whose header says it starts at or
  // before this lsn. The segments before it hold only older records (a checkpoint covers
  // them: recovery passes the snapshot's lsn + 1) that a drop left behind, whole or in
  // part (a rename or unlink a crash or an error lost): a gap among them is no damage.
  // They are left for the writer to drop again.
  uint64_t start_lsn = 0;
};

struct wal_scan_result {
  wal_position end;           // where appends continue
  uint64_t records = 0;
  uint64_t segments = 0;
  uint64_t segments_skipped = 0;  // before the one start_lsn names
  std::string torn_tail;      // empty, or what was cut (file, offset, why)
  // What repair_wal_tail removes (found whatever repair_tail says): trailing segments
  // never written, a last segment whose header is torn, a torn last group (zeroed).
  std::vector<std::string> unused_segments;
  std::string torn_segment;
  std::string torn_file;
  uint64_t torn_from = 0, torn_to = 0;
  [[nodiscard]] bool needs_repair() const {
    return !unused_segments.empty() || !torn_segment.empty() || !torn_file.empty();
  }
};

// Calls `on_record` for every valid record in lsn order. Returns false with `error`
// set when the log is damaged before its tail or the callback returns false.
bool scan_wal(const wal_scan_options& opt,
              const std::function<bool(const wal_record_view&)>& on_record,
              wal_scan_result* result, std::string* error);

// Whether scan_wal's error is a failure to read (a file that cannot be listed, opened or
// read: a permission, descriptors, memory), not damage found in what was read.
[[nodiscard]] inline bool wal_error_is_read_failure(const std::string& error) {
  return error.rfind("wal: cannot", 0) == 0 || error.rfind("wal: out of memory", 0) == 0;
}

// Cuts what a scan found past the log's end (wal_scan_result's unused segments and torn
// tail), durably. scan_wal does it itself with repair_tail; recovery scans without it and
// cuts only once nothing known durable would go (engine.cpp).
bool repair_wal_tail(const std::string& dir, const wal_scan_result& r, std::string* error);

// Makes a directory's entries (files created, renamed, removed) durable.
bool fsync_dir(const std::string& dir);

// Makes every log segment's contents durable (fdatasync each). Recovery calls it before
// it replays: what a crash left written and not yet synced would otherwise reach the
// snapshot, the event log and the transfer rows (durable) before the log itself, and a
// power cut then could leave them past a log that lost it.
bool sync_segments(const std::string& dir, std::string* error);
// Replaces a small file whole and durably: written to <path>.new, synced, renamed over
// `path`, the directory synced. False (with the reason) on failure: `path` is then as it
// was, or (the rename done, the directory's sync failed) the new text not yet durable.
bool replace_file(const std::string& path, std::string_view text, std::string* error);

// Segment files in the directory, sorted by index.
// The log's segments in index order. A directory that cannot be read (any error but its
// absence) sets *error, when given, and lists none.
std::vector<std::pair<uint64_t, std::string>> list_segments(const std::string& dir, std::string* error = nullptr);
std::string segment_path(const std::string& dir, uint64_t index);

}  // namespace mesob::storage
