#include "storage/checksum.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

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
