// id_index: every transfer id the engine has recorded -> its serial.
//
// 8 bytes per slot: a 24-bit fingerprint of the id and the serial + 1 (40 bits, so up
// to 2^40 - 2 transfers). Linear probing from the start of the 64-byte line (8 slots)
// the hash picks, power-of-two capacity: a probe reads every slot of that line before
// it goes on to the next, and prefetch() loads both, so a look-up of a new id (every
// new transfer's) mostly ends in lines already on their way. Probing from the hashed
// slot itself, with only its line prefetched, cost as much at 3/8 load, 1.4-1.5x as
// much at 5/8 and 3/4 (perf/micro_perf BM_id_index_find_new; perf/RESULTS.md). A fingerprint match is
// confirmed against the record itself by the caller, so false matches cost a look-up,
// never a wrong answer. Owned by one thread (the sequencer); not thread-safe, except
// for the growth builder described below, which it starts and joins itself.
//
// Slots keep no full hash, so a bigger table needs every id's hash again: the index
// also keeps each serial's 64-bit hash in order (`hash_log`, 8 bytes per transfer,
// written once and never moved), and a bit per serial saying whether the table holds
// it (ranges, below). Growth never stalls the owner for long and reads nothing else: at
// 3/4 load the owner starts a builder thread that fills a table of twice the size from
// the hash log's ids in the table, up to the count the owner publishes with each
// insert. Meanwhile the old table keeps serving look-ups and inserts. The owner swaps
// tables at its first insert after the builder is done, placing the few hashes the
// builder did not see. It waits for the builder only if the old table reaches 7/8 load
// first (counted in stats().waits). Memory per id in the table: 18.8 to 29.5 bytes (the
// table 10.7 to 21.3, the hash log 8, a bit saying the table holds it) between growths;
// during one, the new table. Per id in a range: 8.1 bytes and its share of the range's
// map node (80 bytes, at most one per 17 ids).
// The log's segments are ordinary memory, backed 64 KiB at a time as the owner reaches
// them (populate_pages: one call instead of 16 page faults, which cost the sequencer about
// a tenth of its time at the maximum transfer rate; perf/RESULTS.md, seventy-first
// session). Read and written in order, so huge pages would buy nothing, and a 2 MiB page's
// zeroing would stall the owner's insert.
//
// Ids that count up skip the table. Clients number their transfers (a counter in id.lo
// under a fixed id.hi, as mesob-load and time-ordered ids do), so most new ids are the
// last one's lo + 1 at the last one's serial + 1: a run. The index keeps the run being
// recorded, and every run past its first `table_first` ids as a range in an ordered map
// ((hi, first lo) -> last lo, first serial), one node per run. A run's first
// `table_first` ids also go to the table, so a run that stops short is wholly in the
// table, and the map holds at most one node per table_first + 1 ids. For the table's
// other ids (short runs, loaded hashes) the index keeps, per bucket of id.hi values,
// the highest id.lo among them (`lo_max`): a new id past the run, short of the next
// range, and above its bucket's lo_max is new without a look at the table, so neither
// the look-up nor its prefetch touches it, and the table grows only for short runs and
// ids that do not count up.
// Random ids (UUIDv4) all go to the table and cost what they did, plus a bucket test
// (and a map look-up where their bucket holds a range): 5-11% more per look-up of a new
// one (BM_id_index_find_new). Their random id.lo tops out their buckets' lo_max, and
// under many id.hi values a few tens of thousands of them top out every bucket: ids
// counting up then still stay out of the table (no growth for them) but their look-ups
// probe it, as before ranges. An exact lo_max per id.hi would not have that limit, but
// needs an unbounded map, or a bound under which the same happens.
// The snapshot keeps hashes, not ids: `insert_hashed` cannot tell which bucket an id is
// in, so loading sets every bucket's lo_max to what the snapshot recorded for it
// (`set_lo_max`), or to the top when it has no record of it.
// Ids hash under a secret key (engine/id_hash.hpp: SipHash-1-3), the store's when the
// engine owns the index (set_key), else one of its own: a client that cannot compute
// the hashes cannot choose ids that share a line or a fingerprint.
#pragma once

#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "engine/id_hash.hpp"
#include "wire/assert.hpp"
#include "wire/huge_pages.hpp"
#include "wire/prefetch.hpp"
#include "wire/types.hpp"

namespace mesob::engine {

class id_index {
 public:
  static constexpr uint64_t serial_max = (1ull << 40) - 2;

  struct stats {
    uint64_t growths = 0;       // tables swapped in
    uint64_t waits = 0;         // inserts that waited for a builder (old table 7/8 full)
  };

  // Hashing under `key` (a random one unless given).
  explicit id_index(size_t capacity_hint = 1024, const id_hash_key& key = id_hash_key::random());
  ~id_index();
  id_index(const id_index&) = delete;
  id_index& operator=(const id_index&) = delete;

  [[nodiscard]] size_t size() const { return size_; }  // ids recorded
  [[nodiscard]] size_t table_size() const { return table_size_; }  // of them, in the table
  [[nodiscard]] size_t ranges() const { return ranges_.size(); }
  [[nodiscard]] uint64_t probes() const { return probes_; }
  [[nodiscard]] size_t memory_bytes() const;
  [[nodiscard]] const stats& growth_stats() const { return stats_; }
  [[nodiscard]] bool growing() const { return build_ != nullptr; }
  // The size past which the next growth starts (the size now while one is under way).
  // Counted in table entries.
  [[nodiscard]] size_t next_growth_at() const { return build_ ? table_size_ : slots_.size() / 4 * 3; }

  // The hash `id` is filed under. Only ids that reach the table need one: a look-up
  // that probes it (may_probe), an insert that is not a range's. find, prefetch and
  // insert hash the id when they need to and are not given its hash (h null). A caller
  // with many ids hashes those that may probe once, in a loop of their own (their
  // latencies overlap there; in a look-up the hash's latency comes before the probe's
  // load), and gives each its hash (perf/RESULTS.md: BM_id_index_*).
  [[nodiscard]] uint64_t hash(const wire::id128& id) const { return hash_(id); }
  // Whether a look-up of `id` now would probe the table (its id.lo not above its bucket's
  // lo_max). Inserts raise lo_max: an id may probe later that would not now.
  [[nodiscard]] bool may_probe(const wire::id128& id) const { return id.lo <= lo_max_[bucket(id.hi)]; }

  // Returns the serial recorded for `id`, or -1. `id_of(serial)` reads a record's id.
  template <class IdOf>
  [[nodiscard]] int64_t find(const wire::id128& id, IdOf&& id_of) const {
    return find(id, nullptr, id_of);
  }
  template <class IdOf>
  [[nodiscard]] int64_t find(const wire::id128& id, const uint64_t* h, IdOf&& id_of) const {
    const size_t b = bucket(id.hi);
    bool in_no_range = false;
    if (id.hi == run_.hi && run_.count != 0) {
      const uint64_t d = id.lo - run_.lo_first;
      if (d < run_.count) return int64_t(run_.serial_first + d);
      in_no_range = id.lo > run_.lo_last && id.lo < run_.next_first;  // past the run
    }
    if (!in_no_range && has_ranges(b)) {
      const int64_t s = find_range(id);
      if (s >= 0) return s;
    }
    if (id.lo > lo_max_[b]) return -1;
    ++probes_;
    const uint64_t hv = h ? *h : hash_(id);
    const uint64_t fp = fingerprint(hv);
    for (size_t i = home(hv, mask_);; i = (i + 1) & mask_) {
      const uint64_t s = slots_[i];
      if (s == 0) return -1;
      if ((s >> 40) == fp) {
        const uint64_t serial = (s & serial_mask) - 1;
        if (id_of(serial) == id) return int64_t(serial);
      }
    }
  }

  // Starts loading the two lines where `id`'s probe begins, if it has one (issue a few
  // look-ups ahead).
  void prefetch(const wire::id128& id, const uint64_t* h = nullptr) const {
    if (!may_probe(id)) return;
    const size_t i = home(h ? *h : hash_(id), mask_);
    mesob::prefetch(&slots_[i]);
    mesob::prefetch(&slots_[(i + line_slots) & mask_]);
  }

  // Records `id` (not recorded yet) at `serial`; serials are inserted densely (0, 1, 2, ...).
  void insert(const wire::id128& id, uint64_t serial, const uint64_t* h = nullptr);
  // The same, from the id's hash (hasher()), as the snapshot stores it: into the table,
  // and with no id.lo to go by, every bucket's lo_max goes to the top (every later look-up
  // of an id outside a run or range probes the table).
  void insert_hashed(uint64_t h, uint64_t serial);
  // insert_hashed for serials first, first + 1, ...: slots are prefetched ahead, so the
  // cache misses of a long run overlap (loading a snapshot).
  void insert_hashed_run(std::span<const uint64_t> hashes, uint64_t first);
  // lo_max for ids loaded by hash: by_bucket[bucket_of(hi)] is the highest id.lo the
  // snapshot recorded under those id.hi values. Only while every id came by hash.
  void set_lo_max(std::span<const uint64_t> by_bucket);
  static constexpr size_t bucket_of(uint64_t hi) { return bucket(hi); }
  // The hash the index keeps for `serial` (< size()): 0 for an id it keeps in a range
  // (nothing reads it: a growth places the table's ids, a snapshot hashes its records).
  [[nodiscard]] uint64_t hash_at(uint64_t serial) const { return hashes_.at(serial); }

  // The hash the index files an id under, stored in the snapshot (engine/record_rows.hpp)
  // with its key.
  [[nodiscard]] const id_hasher& hasher() const { return hash_; }
  // Hashes under `key` from now on: only while the index is empty (before a start loads
  // the store's hashes).
  void set_key(const id_hash_key& key);

  // Where the probe for hash h starts: the first of 8 slots (64 bytes) aligned to 8. A
  // cache line for tables of 4 MiB or more (2 MiB-aligned, wire/huge_pages.hpp); smaller
  // ones are where the ordinary allocator put them. Correctness does not depend on it.
  static constexpr size_t line_slots = 64 / sizeof(uint64_t);
  static size_t home(uint64_t h, size_t mask) { return h & mask & ~(line_slots - 1); }

  // Sizes the table for n ids; only before the first insert.
  void reserve(size_t n);

  // Waits for a growth in progress and swaps it in (tests).
  void finish_growth_now();
  // Stops a growth in progress and drops it.
  void abandon_growth();
  // Makes the builder sleep this long after each 2^16 hashes it places (tests).
  void slow_growth_for_tests(std::chrono::microseconds per_chunk) { build_pause_ = per_chunk; }

 private:
  static constexpr uint64_t serial_mask = (1ull << 40) - 1;
  using table = std::vector<uint64_t, huge_page_allocator<uint64_t>>;
  struct build;

 public:
  // A run's ids that go to the table before the rest go to a range.
  static constexpr uint64_t table_first = 16;
  // Buckets of id.hi values for lo_max (8 bytes each) and whether any range is there (a bit).
  static constexpr unsigned bucket_bits = 12;
  static constexpr size_t buckets = size_t(1) << bucket_bits;
  // What one range costs (a std::map node), for memory_bytes.
  static constexpr size_t range_bytes = 80;

 private:
  struct range_end {
    uint64_t lo_last;
    uint64_t serial_first;
  };
  using range_map = std::map<std::pair<uint64_t, uint64_t>, range_end>;  // (hi, first lo) ->
  // The run being recorded: ids (hi, lo_first + i) at serial_first + i for i < count.
  struct open_run {
    uint64_t hi = 0, lo_first = 0, lo_last = 0, serial_first = 0, count = 0;
    size_t bucket = 0;  // of hi
    uint64_t next_first = 0;  // the first lo of the next range of this hi, or UINT64_MAX
    range_map::iterator node{};
    bool in_map = false;
  };

  // Every serial's hash, in serial order. Segments double in size (the first holds 2^16,
  // segment j >= 1 holds serials [2^(15+j), 2^(16+j))), so an element never moves: the
  // builder reads hashes the owner published while the owner appends more.
  class hash_log {
   public:
    hash_log() = default;
    hash_log(const hash_log&) = delete;
    hash_log& operator=(const hash_log&) = delete;
    ~hash_log();
    void push(uint64_t serial, uint64_t h);  // serial == the count pushed so far
    [[nodiscard]] uint64_t at(uint64_t serial) const { return seg_[segment(serial)][offset(serial)]; }
    [[nodiscard]] uint64_t& ref(uint64_t serial) const { return seg_[segment(serial)][offset(serial)]; }

    static constexpr unsigned first_bits = 16;
    static constexpr size_t populate_entries = 8192;  // 64 KiB backed at a time
    static constexpr size_t segments = 41 - first_bits;  // serials below 2^40
    static constexpr size_t segment(uint64_t s) {
      return s >> first_bits == 0 ? 0 : size_t(std::bit_width(s)) - first_bits;
    }
    static constexpr uint64_t offset(uint64_t s) {
      return s >> first_bits == 0 ? s : s - (uint64_t(1) << (std::bit_width(s) - 1));
    }
    static constexpr size_t length(size_t seg) { return size_t(1) << (seg == 0 ? first_bits : first_bits - 1 + seg); }

   private:
    uint64_t* seg_[segments] = {};
  };

  static uint64_t fingerprint(uint64_t h) { return (h >> 40) | 1; }  // never 0
  // Frozen: the snapshot stores lo_max by bucket (record_rows::lo_max). One multiply (a
  // look-up computes it for every id): the top bits of the product depend on every bit
  // of hi.
  static constexpr size_t bucket(uint64_t hi) { return size_t((hi * 0x9e3779b97f4a7c15ull) >> (64 - bucket_bits)); }
  [[nodiscard]] bool has_ranges(size_t b) const { return (ranges_in_[b / 64] >> (b % 64)) & 1; }
  [[nodiscard]] int64_t find_range(const wire::id128& id) const;
  void end_run();
  void record(uint64_t h, uint64_t serial, bool in_table);
  bool in_table(uint64_t serial) const;
  static size_t capacity_for(size_t n);
  static void place(table& slots, uint64_t h, uint64_t serial);
  void start_growth();
  void finish_growth(bool wait);

  id_hasher hash_;
  hash_log hashes_;
  // Bit s % 64 of word s / 64: serial s is in the table. Written by the owner, read by a
  // builder below the count it published, one word shared: relaxed atomic accesses.
  hash_log table_bits_;
  table slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
  size_t table_size_ = 0;
  open_run run_;
  range_map ranges_;
  mutable range_map::const_iterator last_hit_ = ranges_.end();
  std::unique_ptr<uint64_t[]> lo_max_;     // by bucket
  uint64_t ranges_in_[buckets / 64] = {};  // bit b: bucket b holds a range (512 bytes)
  bool lo_max_topped_ = false;
  mutable uint64_t probes_ = 0;
  size_t hashed_ = 0;  // ids inserted by hash
  std::unique_ptr<build> build_;
  stats stats_;
  std::chrono::microseconds build_pause_{0};
};

}  // namespace mesob::engine
