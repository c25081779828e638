// id_hash: the keyed hash transfer ids are filed under, in the id index
// (engine/id_index.hpp) and in the snapshot's `transfer_ids` (engine/record_rows.hpp).
//
// SipHash-1-3 of the id's 16 bytes (lo, then hi, each little-endian) under a 128-bit key
// (k0, k1 as SipHash reads its key's two little-endian halves). Ids are the clients':
// under an unkeyed hash (the fixed mix this replaced) a client could compute ids whose
// hashes are equal, whole 64 bits of them, and make each look-up compare its id with
// every one of them (a batch of such ids costs the sequencer time quadratic in their
// number). SipHash is a keyed pseudo-random function: without the key, ids that
// collide are found only by chance. One compression round per word and three to
// finish, as Rust's and Python's hash tables use it against the same attack; it costs
// a few nanoseconds more per id than the mix (perf/RESULTS.md: BM_id_index_*).
//
// The key is the store's: drawn from the OS's random source when a store has none
// (a new one, or one of a build before keys) and kept in its `id_hash_key` row, so the
// hashes `transfer_ids` stores stay valid across starts. id_index_test checks the
// function against OpenSSL's SipHash.
#pragma once

#include <bit>
#include <cstdint>

#include "wire/types.hpp"

namespace mesob::engine {

struct id_hash_key {
  uint64_t k0 = 0, k1 = 0;
  friend bool operator==(const id_hash_key&, const id_hash_key&) = default;

  // A key from the OS's random source (OpenSSL's RAND_bytes; aborts if it fails).
  static id_hash_key random();
};

// SipHash-c-d of two little-endian 64-bit words (a 16-byte message).
template <int C, int D>
constexpr uint64_t siphash_2words(const id_hash_key& key, uint64_t m0, uint64_t m1) {
  uint64_t v0 = key.k0 ^ 0x736f6d6570736575ull;
  uint64_t v1 = key.k1 ^ 0x646f72616e646f6dull;
  uint64_t v2 = key.k0 ^ 0x6c7967656e657261ull;
  uint64_t v3 = key.k1 ^ 0x7465646279746573ull;
  auto round = [&] {
    v0 += v1;
    v1 = std::rotl(v1, 13);
    v1 ^= v0;
    v0 = std::rotl(v0, 32);
    v2 += v3;
    v3 = std::rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = std::rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = std::rotl(v1, 17);
    v1 ^= v2;
    v2 = std::rotl(v2, 32);
  };
  auto compress = [&](uint64_t m) {
    v3 ^= m;
    for (int i = 0; i < C; ++i) round();
    v0 ^= m;
  };
  compress(m0);
  compress(m1);
  compress(uint64_t(16) << 56);  // the last block: the message's length, no bytes left
  v2 ^= 0xff;
  for (int i = 0; i < D; ++i) round();
  return v0 ^ v1 ^ v2 ^ v3;
}

class id_hasher {
 public:
  id_hasher() = default;
  explicit id_hasher(const id_hash_key& key) : key_(key) {}
  [[nodiscard]] uint64_t operator()(const wire::id128& id) const { return siphash_2words<1, 3>(key_, id.lo, id.hi); }
  [[nodiscard]] const id_hash_key& key() const { return key_; }

 private:
  id_hash_key key_;
};

}  // namespace mesob::engine
