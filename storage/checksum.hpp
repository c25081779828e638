// Checksums and the log's hash chain.
//
// crc32c: CRC-32C (Castagnoli) with the SSE4.2 instruction, checked at start-up by
// storage::check_platform(). It guards each record against torn and flipped bytes.
// chain_hash: SHA-256 (OpenSSL, SHA-NI where the CPU has it). Each log record stores
// SHA-256(previous chain || record header fields || payload), so the log is a
// tamper-evident audit trail: changing any byte of any record breaks every link after it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace mesob::storage {

// Buffers of 3 x crc_lane_short bytes or more go three lanes at a time (lanes of
// crc_lane_long bytes while they last, then short ones): about three times the speed of
// one chain (perf/RESULTS.md, thirty-sixth session). The same CRC either way.
constexpr size_t crc_lane_short = 256;
constexpr size_t crc_lane_long = 2048;
[[nodiscard]] uint32_t crc32c(const void* data, size_t len, uint32_t seed = 0);

using chain_hash = std::array<uint8_t, 32>;

// Streaming SHA-256 over the pieces of one record.
class chain_hasher {
 public:
  chain_hasher();
  ~chain_hasher();
  chain_hasher(const chain_hasher&) = delete;
  chain_hasher& operator=(const chain_hasher&) = delete;
  void update(const void* data, size_t len);
  [[nodiscard]] chain_hash finish();

 private:
  void* ctx_;
};

[[nodiscard]] std::string to_hex(const chain_hash& h);

}  // namespace mesob::storage
