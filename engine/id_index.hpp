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
// written once and never moved). Growth never stalls the owner for long and reads
// nothing else: at 3/4 load the owner starts a builder thread that fills a table of
// twice the size from the hash log, up to the count the owner publishes with each
// insert. Meanwhile the old table keeps serving look-ups and inserts. The owner swaps
// tables at its first insert after the builder is done, placing the few hashes the
// builder did not see. It waits for the builder only if the old table reaches 7/8 load
// first (counted in stats().waits). Memory: 18.7 to 29.3 bytes per recorded transfer
// (the table 10.7 to 21.3, the hash log 8) between growths; during one, the new table.
// The log's segments are ordinary memory, backed page by page as the owner writes them
// (read and written in order, so huge pages would buy nothing, and a 2 MiB page's
// zeroing would stall the owner's insert).
#pragma once

#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>
#include <vector>

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

  explicit id_index(size_t capacity_hint = 1024);
  ~id_index();
  id_index(const id_index&) = delete;
  id_index& operator=(const id_index&) = delete;

  [[nodiscard]] size_t size() const { return size_; }
  [[nodiscard]] size_t memory_bytes() const;
  [[nodiscard]] const stats& growth_stats() const { return stats_; }
  [[nodiscard]] bool growing() const { return build_ != nullptr; }
  // The size past which the next growth starts (the size now while one is under way).
  [[nodiscard]] size_t next_growth_at() const { return build_ ? size_ : slots_.size() / 4 * 3; }

  // Returns the serial recorded for `id`, or -1. `id_of(serial)` reads a record's id.
  template <class IdOf>
  [[nodiscard]] int64_t find(const wire::id128& id, IdOf&& id_of) const {
    const uint64_t h = hash(id);
    const uint64_t fp = fingerprint(h);
    for (size_t i = home(h, mask_);; i = (i + 1) & mask_) {
      const uint64_t s = slots_[i];
      if (s == 0) return -1;
      if ((s >> 40) == fp) {
        const uint64_t serial = (s & serial_mask) - 1;
        if (id_of(serial) == id) return int64_t(serial);
      }
    }
  }

  // Starts loading the two lines where `id`'s probe begins (issue a few look-ups ahead).
  void prefetch(const wire::id128& id) const {
    const size_t i = home(hash(id), mask_);
    mesob::prefetch(&slots_[i]);
    mesob::prefetch(&slots_[(i + line_slots) & mask_]);
  }

  // Records `id` at `serial`; serials are inserted densely (0, 1, 2, ...).
  void insert(const wire::id128& id, uint64_t serial) { insert_hashed(hash(id), serial); }
  // The same, from the id's hash (hash_of), as the snapshot stores it.
  void insert_hashed(uint64_t h, uint64_t serial);
  // insert_hashed for serials first, first + 1, ...: slots are prefetched ahead, so the
  // cache misses of a long run overlap (loading a snapshot).
  void insert_hashed_run(std::span<const uint64_t> hashes, uint64_t first);
  // The hash the index keeps for `serial` (< size()).
  [[nodiscard]] uint64_t hash_at(uint64_t serial) const { return hashes_.at(serial); }

  // The hash the index files an id under, stored in the snapshot (engine/record_rows.hpp):
  // frozen (see hash below).
  static constexpr uint64_t hash_of(const wire::id128& id) { return hash(id); }

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

    static constexpr unsigned first_bits = 16;
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

  // Frozen: the snapshot stores it (`transfer_ids`). A change needs a new snapshot format
  // whose start clears `transfer_ids` and fills it in again; id_index_test pins a value.
  static constexpr uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }
  static constexpr uint64_t hash(const wire::id128& id) { return mix(id.lo ^ mix(id.hi + 0x9e3779b97f4a7c15ull)); }
  static uint64_t fingerprint(uint64_t h) { return (h >> 40) | 1; }  // never 0
  static size_t capacity_for(size_t n);
  static void place(table& slots, uint64_t h, uint64_t serial);
  void start_growth();
  void finish_growth(bool wait);

  hash_log hashes_;
  table slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
  std::unique_ptr<build> build_;
  stats stats_;
  std::chrono::microseconds build_pause_{0};
};

}  // namespace mesob::engine
