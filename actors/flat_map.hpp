// flat_u64_map: an open-addressing hash map from a nonzero 64-bit key to a 32-bit value,
// linear probing, power-of-two capacity, backward-shift deletion. 12 bytes per slot.
// Single-threaded (owned by one shard). Grows by doubling at 70% load; a caller that
// must not grow past a limit checks size() first.
#pragma once

#include <cstdint>
#include <vector>

#include "wire/assert.hpp"

namespace mesob::actors {

[[nodiscard]] inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

class flat_u64_map {
 public:
  explicit flat_u64_map(size_t capacity_hint = 16) { rehash(capacity_for(capacity_hint)); }

  [[nodiscard]] size_t size() const { return size_; }
  [[nodiscard]] size_t capacity() const { return keys_.size(); }
  [[nodiscard]] size_t memory_bytes() const { return keys_.size() * 12; }

  [[nodiscard]] const uint32_t* find(uint64_t key) const {
    MESOB_DEBUG_ASSERT(key != 0);
    for (size_t i = mix64(key) & mask_;; i = (i + 1) & mask_) {
      if (keys_[i] == key) return &values_[i];
      if (keys_[i] == 0) return nullptr;
    }
  }
  [[nodiscard]] uint32_t* find(uint64_t key) {
    return const_cast<uint32_t*>(static_cast<const flat_u64_map*>(this)->find(key));
  }
  // Inserts or overwrites.
  void put(uint64_t key, uint32_t value) {
    MESOB_ASSERT(key != 0);
    if ((size_ + 1) * 10 > keys_.size() * 7) rehash(keys_.size() * 2);
    for (size_t i = mix64(key) & mask_;; i = (i + 1) & mask_) {
      if (keys_[i] == key) {
        values_[i] = value;
        return;
      }
      if (keys_[i] == 0) {
        keys_[i] = key;
        values_[i] = value;
        ++size_;
        return;
      }
    }
  }
  bool erase(uint64_t key) {
    size_t i = mix64(key) & mask_;
    for (;; i = (i + 1) & mask_) {
      if (keys_[i] == 0) return false;
      if (keys_[i] == key) break;
    }
    // Backward-shift: pull later members of the probe run into the hole.
    for (size_t j = (i + 1) & mask_; keys_[j] != 0; j = (j + 1) & mask_) {
      const size_t home = mix64(keys_[j]) & mask_;
      if (((j - home) & mask_) >= ((j - i) & mask_)) {
        keys_[i] = keys_[j];
        values_[i] = values_[j];
        i = j;
      }
    }
    keys_[i] = 0;
    --size_;
    return true;
  }
  void reserve(size_t n) {
    if (capacity_for(n) > keys_.size()) rehash(capacity_for(n));
  }

 private:
  static size_t capacity_for(size_t n) {
    size_t c = 16;
    while (c * 7 < n * 10 + 10) c *= 2;
    return c;
  }
  void rehash(size_t cap) {
    std::vector<uint64_t> old_keys(cap, 0);
    std::vector<uint32_t> old_values(cap, 0);
    old_keys.swap(keys_);
    old_values.swap(values_);
    mask_ = cap - 1;
    size_ = 0;
    for (size_t i = 0; i < old_keys.size(); ++i)
      if (old_keys[i] != 0) put(old_keys[i], old_values[i]);
  }

  std::vector<uint64_t> keys_;
  std::vector<uint32_t> values_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace mesob::actors
