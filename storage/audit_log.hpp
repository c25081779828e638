// audit_log: the admin audit trail, an append-only file of entries made durable one by
// one (admin commands are rare; each costs a write and an fdatasync).
//
// File layout: a 40-byte header (8-byte magic "MSBAUD01", then the 32-byte chain value
// the file starts from: zeros for the first file), then entries, each
//   u32 payload_bytes | u32 crc32c(chain || payload) | 32-byte chain | payload
// little-endian, where chain = SHA-256(previous chain || payload), so changing or
// dropping any entry breaks every link after it. The payload is text (the admin
// endpoint writes tab-separated fields), at most 4 KiB.
//
// A file is limited to `file_bytes_max`: the append that would pass it first rotates
// the file: the full one is renamed to `<path>.<unix ns>` (kept: archiving it is the
// operator's call) and a new file starts from its chain value, so the chain runs on
// across files. The new file is written under `<path>.new` and renamed in place, and an
// interrupted rotation is finished (or undone) at the next open. A rotation that fails
// part way (a rename, the directory's sync) is taken up where it stopped by the next
// append, which is refused until it completes: never an archived file begun twice.
//
// Opening checks every entry, and that the newest rotated file ends at the chain the
// current one starts from (a file cut at an entry boundary or replaced shows there). What an interrupted append can leave after the last whole
// entry is a torn tail: a prefix of one entry, or an entry with a zero-filled block in
// it; it is cut (the file truncated to the last whole entry) and reported. Anything else
// (a bad magic, a broken chain, more bytes than one append writes, a damaged entry
// followed by a valid one, a whole entry with a bad checksum and no zero block) refuses
// to open, naming the entry and offset: the trail is evidence, and is never rewritten.
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
  static constexpr uint64_t file_bytes_max_default = 64ull << 20;

  // Opens or creates `path`. *repaired says what was cut or finished, if anything.
  static std::unique_ptr<audit_log> open(const std::string& path, std::string* error, std::string* repaired,
                                         uint64_t file_bytes_max = file_bytes_max_default);
  ~audit_log();
  audit_log(const audit_log&) = delete;
  audit_log& operator=(const audit_log&) = delete;

  // Appends one entry and makes it durable (write + fdatasync) before returning. On
  // failure nothing counts as written, and the file is cut back to its last entry
  // (durably; if the cut fails, the next append cuts first and fails if it cannot).
  bool append(std::string_view payload, std::string* error);

  // The newest `n` entries (up to tail_kept, across a rotation), oldest first.
  [[nodiscard]] std::vector<std::string> tail(size_t n) const;
  [[nodiscard]] uint64_t entries() const { return entries_; }  // in the current file
  // Rotated files of the trail beside the current one (found at open, plus rotations since).
  [[nodiscard]] size_t files_rotated() const { return rotated_; }
  [[nodiscard]] const chain_hash& head() const { return chain_; }

 private:
  audit_log() = default;
  bool rotate(std::string* error);
  // Cuts the file back to its last entry (size_) durably: a failed append's bytes.
  bool cut_back(std::string* error);
  bool uncut_ = false;  // a failed append's bytes may be past size_
  // A rotation's steps done so far: the new file written (fresh_fd_), the full one
  // renamed to archived_, the new one renamed in place (fd_ on it), the directory synced.
  enum class rotation { none, created, archived, renamed };
  rotation rotation_ = rotation::none;
  int fresh_fd_ = -1;
  std::string archived_;
  std::string path_;
  uint64_t file_bytes_max_ = file_bytes_max_default;
  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t entries_ = 0;
  size_t rotated_ = 0;
  chain_hash chain_{};
  std::deque<std::string> tail_;
};

}  // namespace mesob::storage
