#include "storage/checksum.hpp"

#include <nmmintrin.h>
#include <openssl/evp.h>

#include <cstring>

#include "wire/assert.hpp"

namespace mesob::storage {

namespace {
// The last 0..7 bytes: a 4-byte, a 2-byte and a 1-byte step where they fit (the same CRC
// as a step a byte).
inline uint32_t tail(uint32_t c, const uint8_t* p, size_t len) {
  if (len >= 4) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    c = _mm_crc32_u32(c, v);
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    c = _mm_crc32_u16(c, v);
    p += 2;
    len -= 2;
  }
  if (len > 0) c = _mm_crc32_u8(c, *p);
  return c;
}
}  // namespace

uint32_t crc32c(const void* data, size_t len, uint32_t seed) {
  auto p = static_cast<const uint8_t*>(data);
  uint64_t c = ~seed;
  while (len >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
    p += 8;
    len -= 8;
  }
  return ~tail(uint32_t(c), p, len);
}

namespace {
// The SHA-256 implementation, fetched from OpenSSL's provider once. EVP_sha256() in an
// init call makes OpenSSL 3 look the algorithm up again (locks, string compares) on every
// record: 790 ns for a 64-byte hash against ~100 ns with the fetched one
// (BM_chain_hash/64, perf/RESULTS.md).
const EVP_MD* sha256() {
  static const EVP_MD* md = [] {
    EVP_MD* m = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    MESOB_ASSERT_MSG(m != nullptr, "OpenSSL has no SHA256");
    return m;  // kept for the life of the process
  }();
  return md;
}
}  // namespace

chain_hasher::chain_hasher() : ctx_(EVP_MD_CTX_new()) {
  MESOB_ASSERT(ctx_ != nullptr);
  MESOB_ASSERT(EVP_DigestInit_ex2(static_cast<EVP_MD_CTX*>(ctx_), sha256(), nullptr) == 1);
}

chain_hasher::~chain_hasher() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void chain_hasher::update(const void* data, size_t len) {
  MESOB_ASSERT(EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, len) == 1);
}

chain_hash chain_hasher::finish() {
  chain_hash h{};
  unsigned int n = 0;
  MESOB_ASSERT(EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), h.data(), &n) == 1);
  MESOB_ASSERT(n == h.size());
  MESOB_ASSERT(EVP_DigestInit_ex2(static_cast<EVP_MD_CTX*>(ctx_), nullptr, nullptr) == 1);
  return h;
}

std::string to_hex(const chain_hash& h) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(64);
  for (auto b : h) {
    s.push_back(digits[b >> 4]);
    s.push_back(digits[b & 15]);
  }
  return s;
}

}  // namespace mesob::storage
