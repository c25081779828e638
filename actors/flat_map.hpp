// flat_u64_map: an open-addressing hash map from a nonzero 64-bit key to a 32-bit value,
// linear probing, power-of-two capacity, backward-shift deletion. 16 bytes per slot, key
// and value side by side, so a look-up costs one cache miss (with separate key and value
// arrays it cost two; perf/RESULTS.md).
// Single-threaded (owned by one shard). Grows by doubling at 70% load; a caller that
// must not grow past a limit checks size() first.
// Keys are hashed with a seed drawn once per process: they come from clients (account
// ids), and mix64 alone can be inverted, so a client could choose ids that all start
// their probe at one slot, making every look-up of them walk one long run. Nothing
// iterates a map, so where a key sits decides nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "wire/assert.hpp"
#include "wire/huge_pages.hpp"
#include "wire/prefetch.hpp"

namespace mesob::actors {

[[nodiscard]] inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

// The process's seed for flat_u64_map (odd, from the OS's random source).
[[nodiscard]] inline uint64_t flat_map_seed() {
  static const uint64_t seed = [] {
    std::random_device rd;
    return ((uint64_t(rd()) << 32) ^ rd()) | 1;
  }();
  return seed;
}

// The hash of a std::unordered_map or unordered_set keyed by ids clients choose
// (wallets, payouts, groups, accounts in a request). std::hash<uint64_t> is the key
// itself, and the table's bucket count is a prime from a fixed list: keys that are
// multiples of it share one bucket, and every look-up of one walks them all. Mixed
// with the process's seed, as flat_u64_map does.
struct seeded_u64_hash {
  // noexcept: the maps' nodes then keep no copy of the hash.
  [[nodiscard]] size_t operator()(uint64_t key) const noexcept { return size_t(mix64(key ^ flat_map_seed())); }
};

class flat_u64_map {
 public:
  explicit flat_u64_map(size_t capacity_hint = 16) { rehash(capacity_for(capacity_hint)); }

  [[nodiscard]] size_t size() const { return size_; }
  [[nodiscard]] size_t capacity() const { return slots_.size(); }
  [[nodiscard]] size_t memory_bytes() const { return slots_.size() * sizeof(slot); }

  [[nodiscard]] const uint32_t* find(uint64_t key) const {
    MESOB_DEBUG_ASSERT(key != 0);
    for (size_t i = home(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].value;
      if (slots_[i].key == 0) return nullptr;
    }
  }
  // The slots a look-up of `key` reads (1: at its home slot).
  [[nodiscard]] size_t probes(uint64_t key) const {
    size_t n = 1;
    for (size_t i = home(key); slots_[i].key != key && slots_[i].key != 0; i = (i + 1) & mask_) ++n;
    return n;
  }
  // Starts loading the slot where `key` would be found (for batches: issue a few
  // look-ups ahead so their cache misses overlap).
  void prefetch(uint64_t key) const { mesob::prefetch(&slots_[home(key)]); }
  [[nodiscard]] uint32_t* find(uint64_t key) {
    return const_cast<uint32_t*>(static_cast<const flat_u64_map*>(this)->find(key));
  }
  // Inserts or overwrites.
  void put(uint64_t key, uint32_t value) {
    MESOB_ASSERT(key != 0);
    if ((size_ + 1) * 10 > slots_.size() * 7) rehash(slots_.size() * 2);
    for (size_t i = home(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) {
        slots_[i].value = value;
        return;
      }
      if (slots_[i].key == 0) {
        slots_[i] = {key, value};
        ++size_;
        return;
      }
    }
  }
  bool erase(uint64_t key) {
    size_t i = home(key);
    for (;; i = (i + 1) & mask_) {
      if (slots_[i].key == 0) return false;
      if (slots_[i].key == key) break;
    }
    // Backward-shift: pull later members of the probe run into the hole.
    for (size_t j = (i + 1) & mask_; slots_[j].key != 0; j = (j + 1) & mask_) {
      const size_t h = home(slots_[j].key);
      if (((j - h) & mask_) >= ((j - i) & mask_)) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i].key = 0;
    --size_;
    return true;
  }
  void reserve(size_t n) {
    if (capacity_for(n) > slots_.size()) rehash(capacity_for(n));
  }
  // The bytes a map made for `n` keys takes at once (its slots are zero-filled).
  static size_t bytes_for(size_t n) { return capacity_for(n) * sizeof(slot); }

 private:
  static size_t capacity_for(size_t n) {
    size_t c = 16;
    while (c * 7 < n * 10 + 10) c *= 2;
    return c;
  }
  struct slot {
    uint64_t key;
    uint32_t value;
  };
  [[nodiscard]] size_t home(uint64_t key) const { return mix64(key ^ seed_) & mask_; }
  void rehash(size_t cap) {
    std::vector<slot, huge_page_allocator<slot>> old(cap, slot{0, 0});
    old.swap(slots_);
    mask_ = cap - 1;
    size_ = 0;
    for (const slot& s : old)
      if (s.key != 0) put(s.key, s.value);
  }

  std::vector<slot, huge_page_allocator<slot>> slots_;
  uint64_t seed_ = flat_map_seed();
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace mesob::actors
