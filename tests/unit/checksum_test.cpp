#include "storage/checksum.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace mesob::storage;

TEST(crc32c, known_vectors) {
  // RFC 3720 (iSCSI) test vectors for CRC-32C.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  uint8_t zeros[32] = {};
  EXPECT_EQ(crc32c(zeros, 32), 0x8A9136AAu);
  uint8_t ones[32];
  std::memset(ones, 0xff, 32);
  EXPECT_EQ(crc32c(ones, 32), 0x62A8AB43u);
  EXPECT_EQ(crc32c("", 0), 0u);
}

namespace {
// CRC-32C a bit at a time, from its definition.
uint32_t bitwise(const uint8_t* p, size_t n, uint32_t seed) {
  uint32_t c = ~seed;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
  }
  return ~c;
}
}  // namespace

// Every length's tail (8-, 4-, 2- and 1-byte steps) against a bit-at-a-time CRC-32C, from
// every alignment, and a seed carrying one CRC into the next.
TEST(crc32c, every_length_and_alignment_matches_the_bitwise_definition) {
  uint8_t bytes[64 + 8];
  for (size_t i = 0; i < sizeof bytes; ++i) bytes[i] = uint8_t(i * 167 + 13);
  for (size_t at = 0; at < 8; ++at)
    for (size_t n = 0; n <= 64; ++n) {
      ASSERT_EQ(crc32c(bytes + at, n), bitwise(bytes + at, n, 0)) << "at " << at << ", " << n << " bytes";
      const uint32_t first = crc32c(bytes + at, n / 3);
      ASSERT_EQ(crc32c(bytes + at + n / 3, n - n / 3, first), crc32c(bytes + at, n)) << "at " << at << ", " << n;
    }
}

// Long buffers go three lanes at a time and are joined: every length around the lanes'
// edges (one short round, long rounds, long then short, the tail after them), from two
// alignments and with a seed, against the bit-at-a-time definition.
TEST(crc32c, three_lanes_give_the_same_crc_as_one_chain) {
  std::vector<uint8_t> bytes(4 * 3 * crc_lane_long + 64);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (auto& b : bytes) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b = uint8_t(x);
  }
  std::vector<size_t> lengths;
  for (size_t edge : {3 * crc_lane_short, 6 * crc_lane_short, 3 * crc_lane_long, 6 * crc_lane_long,
                      3 * crc_lane_long + 3 * crc_lane_short})
    for (size_t d = 0; d < 20; ++d) {
      lengths.push_back(edge + d);
      lengths.push_back(edge - 1 - d);
    }
  lengths.push_back(bytes.size() - 8);
  for (size_t at : {0, 3})
    for (size_t n : lengths) {
      ASSERT_EQ(crc32c(bytes.data() + at, n), bitwise(bytes.data() + at, n, 0)) << "at " << at << ", " << n;
      ASSERT_EQ(crc32c(bytes.data() + at, n, 0x12345678u), bitwise(bytes.data() + at, n, 0x12345678u))
          << "at " << at << ", " << n << ", seeded";
    }
}

TEST(crc32c, detects_a_flipped_bit_anywhere) {
  std::string s(1000, 'x');
  const uint32_t base = crc32c(s.data(), s.size());
  for (size_t i = 0; i < s.size(); i += 37) {
    s[i] ^= 1;
    EXPECT_NE(crc32c(s.data(), s.size()), base) << "byte " << i;
    s[i] ^= 1;
  }
}

TEST(chain_hasher, is_sha256) {
  chain_hasher h;
  h.update("abc", 3);
  EXPECT_EQ(to_hex(h.finish()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Reusable after finish, and pieces concatenate.
  h.update("a", 1);
  h.update("bc", 2);
  EXPECT_EQ(to_hex(h.finish()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
