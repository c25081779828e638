// audit_log: the admin audit trail, an append-only file of entries made durable one by
// one (admin commands are rare; each costs a write and an fdatasync).
//
// File layout: an 8-byte magic "MSBAUD01", then entries, each
//   u32 payload_bytes | u32 crc32c(chain || payload) | 32-byte chain | payload
// little-endian, where chain = SHA-256(previous entry's chain || payload) (all zeros
// before the first entry), so changing or dropping any entry breaks every link after it.
// The payload is text (the admin endpoint writes tab-separated fields).
//
// Opening checks every entry. A last entry cut short, or whose checksum fails, is a torn
// tail: it is cut (the file truncated to the last whole entry) and reported. Any other
// fault (bad magic, a broken chain, a bad entry followed by more bytes) refuses to open,
// naming the offset: the trail is evidence, and is never rewritten.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "storage/checksum.hpp"

namespace mesob::storage {

class audit_log {
 public:
  static constexpr size_t payload_bytes_max = 4096;
  static constexpr size_t tail_kept = 1024;  // newest entries kept in memory for show

  // Opens or creates `path`. *repaired says what was cut, if anything.
  static std::unique_ptr<audit_log> open(const std::string& path, std::string* error, std::string* repaired);
  ~audit_log();
  audit_log(const audit_log&) = delete;
  audit_log& operator=(const audit_log&) = delete;

  // Appends one entry and makes it durable (write + fdatasync) before returning. On
  // failure nothing counts as written, and the file is cut back to its last entry.
  bool append(std::string_view payload, std::string* error);

  // The newest `n` entries (up to tail_kept), oldest first.
  [[nodiscard]] std::vector<std::string> tail(size_t n) const;
  [[nodiscard]] uint64_t entries() const { return entries_; }
  [[nodiscard]] const chain_hash& head() const { return chain_; }

 private:
  audit_log() = default;
  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t entries_ = 0;
  chain_hash chain_{};
  std::deque<std::string> tail_;
};

}  // namespace mesob::storage
