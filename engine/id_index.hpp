// id_index: every transfer id the engine has recorded -> its serial.
//
// 8 bytes per slot: a 24-bit fingerprint of the id and the serial + 1 (40 bits, so up
// to 2^40 - 2 transfers). Linear probing, power-of-two capacity, load at most 75%: from
// 10.7 bytes per recorded transfer (just before a doubling) to 21.3 (just after). A fingerprint match is confirmed against the record itself by the caller,
// so false matches cost a look-up, never a wrong answer. Owned by the sequencer thread;
// not thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "actors/flat_map.hpp"
#include "wire/assert.hpp"
#include "wire/types.hpp"

namespace mesob::engine {

class id_index {
 public:
  static constexpr uint64_t serial_max = (1ull << 40) - 2;

  explicit id_index(size_t capacity_hint = 1024) { rehash(capacity_for(capacity_hint)); }

  [[nodiscard]] size_t size() const { return size_; }
  [[nodiscard]] size_t memory_bytes() const { return slots_.size() * sizeof(uint64_t); }

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

  // Records `id` at `serial`. Serials are inserted densely (0, 1, 2, ...), so growing
  // re-reads every id in serial order through `for_each_id(fn(serial, id))` rather than
  // storing hashes (the caller reads old ids from the snapshot).
  template <class ForEachId>
  void insert(const wire::id128& id, uint64_t serial, ForEachId&& for_each_id) {
    MESOB_ASSERT(serial <= serial_max && serial == size_);
    if ((size_ + 1) * 4 > slots_.size() * 3) {
      std::vector<uint64_t>(slots_.size() * 2, 0).swap(slots_);
      mask_ = slots_.size() - 1;
      uint64_t seen = 0;
      for_each_id([&](uint64_t s, const wire::id128& old) {
        MESOB_ASSERT(s == seen);
        place(hash(old), s);
        ++seen;
      });
      MESOB_ASSERT(seen == size_);
    }
    place(hash(id), serial);
    ++size_;
  }

  // Sizes the table for n ids; only before the first insert.
  void reserve(size_t n) {
    MESOB_ASSERT(size_ == 0);
    if (capacity_for(n) > slots_.size()) rehash(capacity_for(n));
  }

 private:
  static constexpr uint64_t serial_mask = (1ull << 40) - 1;

  static uint64_t hash(const wire::id128& id) {
    return actors::mix64(id.lo ^ actors::mix64(id.hi + 0x9e3779b97f4a7c15ull));
  }
  static uint64_t fingerprint(uint64_t h) { return (h >> 40) | 1; }  // never 0
  static size_t capacity_for(size_t n) {
    size_t c = 1024;
    while (c * 3 < n * 4 + 4) c *= 2;
    return c;
  }
  void place(uint64_t h, uint64_t serial) {
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      if (slots_[i] == 0) {
        slots_[i] = fingerprint(h) << 40 | (serial + 1);
        return;
      }
    }
  }
  void rehash(size_t cap) {
    std::vector<uint64_t>(cap, 0).swap(slots_);
    mask_ = cap - 1;
  }

  std::vector<uint64_t> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace mesob::engine
