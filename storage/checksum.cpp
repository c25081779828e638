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

namespace {
// Long buffers go three lanes at a time. The crc32 instruction takes 3 cycles and a core
// starts one a cycle, so one chain uses a third of it: three lanes of `lane` bytes each
// are computed together, the second and third from a zero state, and joined. The state
// after A then B is shift(state after A, |B|) ^ (B's state from zero): with zero data the
// instruction is linear in the state, so shifting by n bytes is a 32x32 matrix over
// GF(2), applied as four byte-indexed tables (built once, from the instruction itself
// over zeros, on first use: storage::check_platform has checked SSE4.2 by then).
class lane_shift {
 public:
  explicit lane_shift(size_t bytes) {
    uint32_t basis[32];
    for (int i = 0; i < 32; ++i) {
      uint64_t c = uint64_t(1) << i;
      for (size_t k = 0; k < bytes / 8; ++k) c = _mm_crc32_u64(c, 0);
      basis[i] = uint32_t(c);
    }
    for (int k = 0; k < 4; ++k)
      for (int b = 0; b < 256; ++b) {
        uint32_t v = 0;
        for (int bit = 0; bit < 8; ++bit)
          if ((b >> bit) & 1) v ^= basis[8 * k + bit];
        t_[k][b] = v;
      }
  }
  [[nodiscard]] uint32_t operator()(uint32_t c) const {
    return t_[0][c & 0xff] ^ t_[1][(c >> 8) & 0xff] ^ t_[2][(c >> 16) & 0xff] ^ t_[3][c >> 24];
  }

 private:
  uint32_t t_[4][256];
};

template <size_t lane>
inline uint64_t three_lanes(uint64_t c, const uint8_t*& p, size_t& len) {
  static const lane_shift shift(lane);
  while (len >= 3 * lane) {
    uint64_t c1 = 0, c2 = 0;
    for (size_t i = 0; i < lane; i += 8) {
      uint64_t v0, v1, v2;
      std::memcpy(&v0, p + i, 8);
      std::memcpy(&v1, p + lane + i, 8);
      std::memcpy(&v2, p + 2 * lane + i, 8);
      c = _mm_crc32_u64(c, v0);
      c1 = _mm_crc32_u64(c1, v1);
      c2 = _mm_crc32_u64(c2, v2);
    }
    c = shift(uint32_t(shift(uint32_t(c)) ^ c1)) ^ c2;
    p += 3 * lane;
    len -= 3 * lane;
  }
  return c;
}

// Apart from crc32c, so that short buffers (an event's 92 bytes) pay for none of it.
[[gnu::noinline]] uint64_t all_lanes(uint64_t c, const uint8_t** p, size_t* len) {
  const uint8_t* q = *p;
  size_t n = *len;
  c = three_lanes<crc_lane_long>(c, q, n);
  c = three_lanes<crc_lane_short>(c, q, n);
  *p = q;
  *len = n;
  return c;
}
}  // namespace

uint32_t crc32c(const void* data, size_t len, uint32_t seed) {
  auto p = static_cast<const uint8_t*>(data);
  uint64_t c = ~seed;
  if (len >= 3 * crc_lane_short) [[unlikely]]
    c = all_lanes(c, &p, &len);
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
