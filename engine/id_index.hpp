// id_index: every transfer id the engine has recorded -> its serial.
//
// 8 bytes per slot: a 24-bit fingerprint of the id and the serial + 1 (40 bits, so up
// to 2^40 - 2 transfers). Linear probing, power-of-two capacity. A fingerprint match is
// confirmed against the record itself by the caller, so false matches cost a look-up,
// never a wrong answer. Owned by one thread (the sequencer); not thread-safe, except
// for the growth builder described below, which it starts and joins itself.
//
// Growth never stalls the owner for long. Slots keep no full hash, so a bigger table
// needs every id again. At 3/4 load the owner starts a builder thread that fills a
// table of twice the size: ids of serials below `stable_end()` (already in the
// snapshot) it reads itself through `read_stable`, in order; the hashes of the newer
// ones, which only the owner may read, the owner hands over at the start and then with
// each insert. Meanwhile the old table keeps serving look-ups and inserts. The owner
// swaps tables at its first insert after the builder is done, placing the few hashes
// the builder did not see. It waits for the builder only if the old table reaches 7/8
// load first (counted in stats().waits). Memory: 10.7 to 21.3 bytes per recorded
// transfer between growths; during one, the new table and the handed-over hashes too.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "actors/flat_map.hpp"
#include "wire/assert.hpp"
#include "wire/huge_pages.hpp"
#include "wire/prefetch.hpp"
#include "wire/types.hpp"

namespace mesob::engine {

class id_index {
 public:
  static constexpr uint64_t serial_max = (1ull << 40) - 2;

  using id_fn = std::function<void(uint64_t serial, const wire::id128& id)>;
  // Where the ids of recorded serials come from.
  struct source {
    // Serials below this one are readable by read_stable (from any thread). Owner only.
    std::function<uint64_t()> stable_end;
    // Calls fn(serial, id) for serials [begin, end) in order; from the builder thread.
    // False (with *error) when the ids cannot be read.
    std::function<bool(uint64_t begin, uint64_t end, const id_fn& fn, std::string* error)> read_stable;
    // The id of a serial at or above stable_end(). Owner only.
    std::function<wire::id128(uint64_t serial)> read_recent;
  };

  struct stats {
    uint64_t growths = 0;       // tables swapped in
    uint64_t waits = 0;         // inserts that waited for a builder (old table 7/8 full)
    uint64_t handover_max = 0;  // most hashes computed by the owner when starting a build
  };

  explicit id_index(source src, size_t capacity_hint = 1024);
  ~id_index();
  id_index(const id_index&) = delete;
  id_index& operator=(const id_index&) = delete;

  [[nodiscard]] size_t size() const { return size_; }
  [[nodiscard]] size_t memory_bytes() const;
  [[nodiscard]] const stats& growth_stats() const { return stats_; }
  [[nodiscard]] bool growing() const { return build_ != nullptr; }

  // Returns the serial recorded for `id`, or -1. `id_of(serial)` reads a record's id.
  template <class IdOf>
  [[nodiscard]] int64_t find(const wire::id128& id, IdOf&& id_of) const {
    const uint64_t h = hash(id);
    const uint64_t fp = fingerprint(h);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const uint64_t s = slots_[i];
      if (s == 0) return -1;
      if ((s >> 40) == fp) {
        const uint64_t serial = (s & serial_mask) - 1;
        if (id_of(serial) == id) return int64_t(serial);
      }
    }
  }

  // Starts loading the slot where `id`'s probe begins (issue a few look-ups ahead).
  void prefetch(const wire::id128& id) const { mesob::prefetch(&slots_[hash(id) & mask_]); }

  // Records `id` at `serial`; serials are inserted densely (0, 1, 2, ...).
  void insert(const wire::id128& id, uint64_t serial);

  // Sizes the table for n ids; only before the first insert.
  void reserve(size_t n);

  // Waits for a growth in progress and swaps it in (tests).
  void finish_growth_now();
  // Stops a growth in progress and drops it; before the id source goes away.
  void abandon_growth();

 private:
  static constexpr uint64_t serial_mask = (1ull << 40) - 1;
  using table = std::vector<uint64_t, huge_page_allocator<uint64_t>>;
  struct build;

  static uint64_t hash(const wire::id128& id) {
    return actors::mix64(id.lo ^ actors::mix64(id.hi + 0x9e3779b97f4a7c15ull));
  }
  static uint64_t fingerprint(uint64_t h) { return (h >> 40) | 1; }  // never 0
  static size_t capacity_for(size_t n);
  static void place(table& slots, uint64_t h, uint64_t serial);
  void start_growth();
  void finish_growth(bool wait);

  source src_;
  table slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
  std::unique_ptr<build> build_;
  stats stats_;
};

}  // namespace mesob::engine
