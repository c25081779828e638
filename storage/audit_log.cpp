#include "storage/audit_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <utility>

#include "storage/failure_probes.hpp"
#include "storage/file_io.hpp"
#include "storage/wal.hpp"

namespace mesob::storage {

namespace {

constexpr char magic[8] = {'M', 'S', 'B', 'A', 'U', 'D', '0', '1'};
constexpr size_t header_bytes = sizeof magic + 32;  // magic, the chain the file starts from
constexpr size_t entry_head_bytes = 4 + 4 + 32;
constexpr size_t block_bytes = 4096;  // a torn append leaves whole file blocks unwritten (zeros)

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

chain_hash link(const chain_hash& prev, const void* payload, size_t n) {
  chain_hasher h;
  h.update(prev.data(), prev.size());
  h.update(payload, n);
  return h.finish();
}

uint32_t entry_crc(const chain_hash& chain, const void* payload, size_t n) {
  return crc32c(payload, n, crc32c(chain.data(), chain.size()));
}

// The whole file, if it is at most `bytes_max` (a size read from the disk is not trusted
// for memory); false with errno EFBIG past it.
bool read_all(int fd, std::vector<uint8_t>* out, uint64_t bytes_max) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return false;
  if (uint64_t(st.st_size) > bytes_max) {
    errno = EFBIG;
    return false;
  }
  out->resize(size_t(st.st_size));
  return pread_full(fd, out->data(), out->size(), 0);
}

// A whole entry with a valid checksum at `q`.
bool valid_entry_at(const std::vector<uint8_t>& d, size_t q) {
  if (d.size() - q < entry_head_bytes) return false;
  uint32_t len = 0, crc = 0;
  chain_hash chain{};
  std::memcpy(&len, d.data() + q, 4);
  std::memcpy(&crc, d.data() + q + 4, 4);
  std::memcpy(chain.data(), d.data() + q + 8, 32);
  return len <= audit_log::payload_bytes_max && d.size() - q - entry_head_bytes >= len &&
         entry_crc(chain, d.data() + q + entry_head_bytes, len) == crc;
}

// The rotated files of the trail at `path` (path.<number>, the wall clock's ns at their
// rotation): their names, and the newest's (the largest number) and its number.
std::vector<std::string> rotated_files(const std::string& path, std::string* newest, uint64_t* newest_number = nullptr) {
  const std::filesystem::path p(path);
  const std::string prefix = p.filename().string() + ".";
  std::vector<std::string> all;
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(p.has_parent_path() ? p.parent_path() : ".", ec)) {
    const std::string name = f.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    if (!std::all_of(name.begin() + long(prefix.size()), name.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    all.push_back(name);
    if (name.size() > newest->size() || (name.size() == newest->size() && name > *newest)) *newest = name;
  }
  if (newest_number) {
    const std::string digits = newest->empty() ? "" : newest->substr(prefix.size());
    *newest_number = !digits.empty() && digits.size() <= 19 ? std::stoull(digits) : 0;  // (longer: not a clock's)
  }
  return all;
}

std::string dir_of(const std::string& path) {
  const auto d = std::filesystem::path(path).parent_path().string();
  return d.empty() ? "." : d;
}

// A new trail file at `path` starting from `chain`, durable (directory entry included).
int create_file(const std::string& path, const chain_hash& chain, std::string* error) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  uint8_t head[header_bytes];
  std::memcpy(head, magic, sizeof magic);
  std::memcpy(head + sizeof magic, chain.data(), chain.size());
  if (fd < 0 || !pwrite_full(fd, head, sizeof head, 0) || ::fdatasync(fd) != 0 || !fsync_dir(dir_of(path))) {
    *error = errno_text("audit trail " + path + ": create");
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

// The chain a rotated file ends at (its last entry's; its header's with none), its entries
// found by their lengths and checked by their checksums (a rotated file was whole when it
// was put aside: any damage is reported). A file past `bytes_max` (written under a larger
// limit than this run's) is not read: *why says so.
bool rotated_file_end(const std::string& path, uint64_t bytes_max, chain_hash* out, std::string* why) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  std::vector<uint8_t> d;
  const bool read = fd >= 0 && read_all(fd, &d, bytes_max + entry_head_bytes + audit_log::payload_bytes_max);
  if (!read) *why = std::strerror(errno);
  if (fd >= 0) ::close(fd);
  if (!read) return false;
  if (d.size() < header_bytes || std::memcmp(d.data(), magic, sizeof magic) != 0) {
    *why = "not an audit trail file (bad magic or header cut short)";
    return false;
  }
  std::memcpy(out->data(), d.data() + sizeof magic, 32);
  for (size_t pos = header_bytes; pos < d.size();) {
    if (!valid_entry_at(d, pos)) {
      *why = "damaged at offset " + std::to_string(pos);
      return false;
    }
    uint32_t len = 0;
    std::memcpy(&len, d.data() + pos, 4);
    std::memcpy(out->data(), d.data() + pos + 8, 32);
    pos += entry_head_bytes + len;
  }
  return true;
}


}  // namespace

std::unique_ptr<audit_log> audit_log::open(const std::string& path, std::string* error, std::string* repaired,
                                           uint64_t file_bytes_max) {
  repaired->clear();
  std::unique_ptr<audit_log> log(new audit_log());
  log->path_ = path;
  log->file_bytes_max_ = std::max<uint64_t>(file_bytes_max, header_bytes + entry_head_bytes + payload_bytes_max);
  const std::string fresh = path + ".new";
  std::error_code ec;
  // An interrupted rotation: the new file was complete before either rename.
  if (std::filesystem::exists(fresh, ec)) {
    if (!std::filesystem::exists(path, ec)) {
      if (::rename(fresh.c_str(), path.c_str()) != 0 || !fsync_dir(dir_of(path))) {
        *error = errno_text("audit trail " + path + ": finishing a rotation");
        return nullptr;
      }
      *repaired = path + ": an interrupted rotation was finished";
    } else {
      std::filesystem::remove(fresh, ec);  // the rotation had not begun: done again later
    }
  }
  // Only the first file of a trail is created in place (a rotation writes the next one
  // aside and renames it): with rotated files beside it, a missing or cut-short current
  // file is a trail lost or cut, not one to start again.
  std::string newest;
  const std::vector<std::string> rotated_names = rotated_files(path, &newest);
  const size_t rotated = rotated_names.size();
  log->rotated_ = rotated;
  const auto lost = [&](const char* what) {
    *error = "audit trail " + path + " is " + what + " while " + std::to_string(rotated) +
             " rotated file(s) of it remain (the newest " + newest +
             "): restore it, or move the rotated files aside to start a new trail";
    return nullptr;
  };
  if (!std::filesystem::exists(path, ec)) {
    if (rotated > 0) return lost("missing");
    log->fd_ = create_file(path, chain_hash{}, error);
    if (log->fd_ < 0 || !fsync_dir(dir_of(path))) {
      if (log->fd_ >= 0) *error = errno_text("audit trail " + path + ": directory fsync");
      return nullptr;
    }
    log->size_ = header_bytes;
    return log;
  }
  log->fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  std::vector<uint8_t> d;
  // A file holds at most file_bytes_max (an append that would pass it rotates first).
  if (log->fd_ < 0 ||
      !read_all(log->fd_, &d, std::max(log->file_bytes_max_, file_bytes_max_default) + entry_head_bytes + payload_bytes_max)) {
    *error = errno_text("audit trail " + path);
    return nullptr;
  }
  if (d.size() < header_bytes || std::memcmp(d.data(), magic, sizeof magic) != 0) {
    // Only the first file is created in place: a torn header of it holds a prefix of the
    // magic and zeros (its start chain), or zeros alone (its size written, its bytes
    // not), and no entry.
    uint8_t first[header_bytes] = {};
    std::memcpy(first, magic, sizeof magic);
    const size_t n = std::min(d.size(), header_bytes);
    const bool torn_first =
        d.size() <= header_bytes && (std::memcmp(d.data(), first, n) == 0 || all_zero(d.data(), n));
    const bool magic_begun = std::memcmp(d.data(), magic, std::min(n, sizeof magic)) == 0;
    if (torn_first || (d.size() < header_bytes && magic_begun)) {
      if (rotated > 0) return lost("cut short");
      if (!torn_first) {
        *error = "audit trail " + path + ": its header is cut short (" + std::to_string(d.size()) + " of " +
                 std::to_string(header_bytes) + " bytes) and names a chain a first file does not start from";
        return nullptr;
      }
      // The directory too: the crash that tore the header may have come before the
      // creating start synced the file's name, and entries acknowledged from here on
      // would go with it.
      if (!pwrite_full(log->fd_, first, sizeof first, 0) || ::fdatasync(log->fd_) != 0 || !fsync_dir(dir_of(path))) {
        *error = errno_text("audit trail " + path + ": write");
        return nullptr;
      }
      log->size_ = header_bytes;
      *repaired = path + ": a torn header was completed";
      return log;
    }
    *error = "audit trail " + path + ": not an audit trail (bad magic at offset 0)";
    return nullptr;
  }
  std::memcpy(log->chain_.data(), d.data() + sizeof magic, 32);
  // A rotation starts the new file from the full one's last chain: the newest rotated
  // file must end where this one starts. Else one of them was cut (at an entry boundary,
  // which its own entries cannot show) or replaced.
  if (rotated > 0) {
    const auto end_of = [&](const std::string& name, chain_hash* ends, std::string* why) {
      return rotated_file_end(dir_of(path) + "/" + name, std::max(log->file_bytes_max_, file_bytes_max_default), ends, why);
    };
    std::string why;
    chain_hash ends{};
    if (!end_of(newest, &ends, &why)) {
      *error = "audit trail " + path + ": its newest rotated file " + newest + ": " + why;
      return nullptr;
    }
    // Named by the wall clock at its rotation: a clock set back between two rotations
    // makes an older file look newest. The current file may follow any of them.
    for (size_t i = 0; i < rotated_names.size() && ends != log->chain_; ++i) {
      chain_hash other{};
      if (rotated_names[i] != newest && end_of(rotated_names[i], &other, &why) && other == log->chain_) ends = other;
    }
    if (ends != log->chain_) {
      *error = "audit trail " + path + " starts from chain " + to_hex(log->chain_) + " but its newest rotated file " +
               newest + " ends at " + to_hex(ends) +
               ": one of them was cut or replaced (restore it, or move the rotated files aside to start a new trail)";
      return nullptr;
    }
  }
  size_t pos = header_bytes;
  while (pos < d.size()) {
    if (valid_entry_at(d, pos)) {
      uint32_t len = 0;
      chain_hash chain{};
      std::memcpy(&len, d.data() + pos, 4);
      std::memcpy(chain.data(), d.data() + pos + 8, 32);
      const uint8_t* payload = d.data() + pos + entry_head_bytes;
      if (link(log->chain_, payload, len) != chain) {
        *error = "audit trail " + path + ": entry " + std::to_string(log->entries_ + 1) + " at offset " +
                 std::to_string(pos) + " breaks the hash chain";
        return nullptr;
      }
      log->chain_ = chain;
      ++log->entries_;
      log->tail_.emplace_back(reinterpret_cast<const char*>(payload), len);
      if (log->tail_.size() > tail_kept) log->tail_.pop_front();
      pos += entry_head_bytes + len;
      continue;
    }
    // Not a whole valid entry. Torn only if it is what one interrupted append leaves.
    const size_t left = d.size() - pos;
    uint32_t len = 0;
    if (left >= 4) std::memcpy(&len, d.data() + pos, 4);
    std::string why;
    if (left > entry_head_bytes + payload_bytes_max) {
      why = "more bytes follow than one entry holds";
    } else if (left >= 4 && len > payload_bytes_max) {
      why = "impossible length";
    } else {
      for (size_t q = pos + 1; q + entry_head_bytes <= d.size() && why.empty(); ++q)
        if (valid_entry_at(d, q)) why = "a valid entry follows it at offset " + std::to_string(q);
      // The checksum does not cover the length: a whole last entry whose length was
      // damaged upward would look like an entry's prefix. It is whole if the rest of the
      // file passes its checksum as its payload.
      if (why.empty() && left >= entry_head_bytes && left < entry_head_bytes + len) {
        uint32_t crc = 0;
        chain_hash chain{};
        std::memcpy(&crc, d.data() + pos + 4, 4);
        std::memcpy(chain.data(), d.data() + pos + 8, 32);
        if (entry_crc(chain, d.data() + pos + entry_head_bytes, left - entry_head_bytes) == crc)
          why = "its length field says " + std::to_string(len) + " bytes, but the " +
                std::to_string(left - entry_head_bytes) + " that follow pass its checksum";
      }
      if (why.empty() && left >= entry_head_bytes + len) {
        // Whole-length, yet the checksum fails: torn only with a block never written.
        bool zero_block = false;
        for (size_t b = pos / block_bytes * block_bytes; b < d.size() && !zero_block; b += block_bytes) {
          const size_t from = std::max(b, pos), to = std::min(b + block_bytes, d.size());
          zero_block = all_zero(d.data() + from, to - from);
        }
        if (!zero_block) why = "checksum";
      }
    }
    if (!why.empty()) {
      *error = "audit trail " + path + ": entry " + std::to_string(log->entries_ + 1) + " at offset " +
               std::to_string(pos) + " is damaged (" + why + ")";
      return nullptr;
    }
    if (::ftruncate(log->fd_, off_t(pos)) != 0 || ::fdatasync(log->fd_) != 0) {
      *error = errno_text("audit trail " + path + ": cutting a torn tail");
      return nullptr;
    }
    *repaired = path + ": torn last entry cut at offset " + std::to_string(pos) + " (" + std::to_string(left) +
                " bytes)";
    break;
  }
  log->size_ = pos;
  return log;
}

audit_log::~audit_log() {
  if (fd_ >= 0) ::close(fd_);
  if (fresh_fd_ >= 0) ::close(fresh_fd_);
}

bool audit_log::rotate(std::string* error) {
  const std::string fresh = path_ + ".new";
  auto fault = [](int step) {
    auto& probe = failure_probes::instance().audit_rotation_fault;
    if (probe.load() != step) return false;
    probe = 0;
    errno = EIO;
    return true;
  };
  if (rotation_ == rotation::none) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    // Each rotated file's number passes the last one's, whatever the clock did since.
    std::string newest;
    uint64_t last = 0;
    rotated_files(path_, &newest, &last);
    archived_ = path_ + "." + std::to_string(std::max<uint64_t>(uint64_t(ns), last + 1));
    fresh_fd_ = create_file(fresh, chain_, error);
    if (fresh_fd_ < 0) return false;
    rotation_ = rotation::created;
  }
  if (rotation_ == rotation::created) {
    if (::rename(path_.c_str(), archived_.c_str()) != 0) {
      *error = errno_text("audit trail " + path_ + ": rotation: renaming the full file to " + archived_);
      return false;
    }
    ++rotated_;  // the full file is aside, whatever follows
    rotation_ = rotation::archived;
  }
  if (rotation_ == rotation::archived) {
    if (fault(1) || ::rename(fresh.c_str(), path_.c_str()) != 0) {
      *error = errno_text("audit trail " + path_ + ": rotation: renaming " + fresh + " in place");
      return false;
    }
    ::close(fd_);
    fd_ = std::exchange(fresh_fd_, -1);
    size_ = header_bytes;
    entries_ = 0;
    rotation_ = rotation::renamed;
  }
  if (fault(2) || !fsync_dir(dir_of(path_))) {
    *error = errno_text("audit trail " + path_ + ": rotation: directory fsync");
    return false;
  }
  rotation_ = rotation::none;
  return true;
}

bool audit_log::append(std::string_view payload, std::string* error) {
  if (payload.size() > payload_bytes_max) {
    *error = "audit entry of " + std::to_string(payload.size()) + " bytes; the limit is " +
             std::to_string(payload_bytes_max);
    return false;
  }
  // A failed append's bytes not yet cut off go first (else the next entry would be
  // written over their start, the rest left behind it, and the trail refused at the next
  // open; or, the cut lost in a crash, the failed entry back as if it had been written).
  if (uncut_ && !cut_back(error)) return false;
  if ((rotation_ != rotation::none || size_ + entry_head_bytes + payload.size() > file_bytes_max_) && !rotate(error))
    return false;
  const chain_hash chain = link(chain_, payload.data(), payload.size());
  std::vector<uint8_t> buf(entry_head_bytes + payload.size());
  const auto len = uint32_t(payload.size());
  const uint32_t crc = entry_crc(chain, payload.data(), payload.size());
  std::memcpy(buf.data(), &len, 4);
  std::memcpy(buf.data() + 4, &crc, 4);
  std::memcpy(buf.data() + 8, chain.data(), 32);
  std::memcpy(buf.data() + entry_head_bytes, payload.data(), payload.size());
  const auto sync = [&] {
    if (const int e = failure_probes::instance().audit_sync_errno.exchange(0); e != 0) {
      errno = e;
      return false;
    }
    return ::fdatasync(fd_) == 0;
  };
  if (!pwrite_full(fd_, buf.data(), buf.size(), size_) || !sync()) {
    *error = errno_text("audit trail append");
    uncut_ = true;
    std::string cut_error;
    if (!cut_back(&cut_error)) *error += "; " + cut_error + " (cut again before the next entry)";
    return false;
  }
  size_ += buf.size();
  chain_ = chain;
  ++entries_;
  tail_.emplace_back(payload);
  if (tail_.size() > tail_kept) tail_.pop_front();
  return true;
}

bool audit_log::cut_back(std::string* error) {
  auto& probe = failure_probes::instance().audit_cut_failures;
  const bool probed = probe.load() > 0 && probe.fetch_sub(1) > 0;
  if (probed) errno = EIO;
  if (probed || ::ftruncate(fd_, off_t(size_)) != 0 || ::fdatasync(fd_) != 0) {
    *error = errno_text("audit trail " + path_ + ": cutting a failed entry off");
    return false;
  }
  uncut_ = false;
  return true;
}

std::vector<std::string> audit_log::tail(size_t n) const {
  n = std::min(n, tail_.size());
  return {tail_.end() - ptrdiff_t(n), tail_.end()};
}

}  // namespace mesob::storage
