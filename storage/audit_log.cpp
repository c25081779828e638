#include "storage/audit_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mesob::storage {

namespace {

constexpr char magic[8] = {'M', 'S', 'B', 'A', 'U', 'D', '0', '1'};
constexpr size_t entry_head_bytes = 4 + 4 + 32;

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

chain_hash link(const chain_hash& prev, const void* payload, size_t n) {
  chain_hasher h;
  h.update(prev.data(), prev.size());
  h.update(payload, n);
  return h.finish();
}

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

uint32_t entry_crc(const chain_hash& chain, const void* payload, size_t n) {
  return crc32c(payload, n, crc32c(chain.data(), chain.size()));
}

bool write_all(int fd, const void* data, size_t n, uint64_t off) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, off_t(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= size_t(w);
    off += uint64_t(w);
  }
  return true;
}

}  // namespace

std::unique_ptr<audit_log> audit_log::open(const std::string& path, std::string* error, std::string* repaired) {
  repaired->clear();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    *error = errno_text("audit trail " + path);
    return nullptr;
  }
  std::unique_ptr<audit_log> log(new audit_log());
  log->fd_ = fd;
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    *error = errno_text("audit trail " + path);
    return nullptr;
  }
  std::vector<uint8_t> data(size_t(st.st_size));
  for (size_t got = 0; got < data.size();) {
    const ssize_t n = ::pread(fd, data.data() + got, data.size() - got, off_t(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = errno_text("audit trail " + path + ": read");
      return nullptr;
    }
    got += size_t(n);
  }
  if (data.empty()) {  // new file: the magic, durable before any entry
    if (!write_all(fd, magic, sizeof magic, 0) || ::fdatasync(fd) != 0) {
      *error = errno_text("audit trail " + path + ": write");
      return nullptr;
    }
    log->size_ = sizeof magic;
    return log;
  }
  if (data.size() < sizeof magic || std::memcmp(data.data(), magic, sizeof magic) != 0) {
    // A file cut inside its magic was created and never held an entry.
    if (data.size() < sizeof magic && std::memcmp(data.data(), magic, data.size()) == 0) {
      if (!write_all(fd, magic, sizeof magic, 0) || ::fdatasync(fd) != 0) {
        *error = errno_text("audit trail " + path + ": write");
        return nullptr;
      }
      log->size_ = sizeof magic;
      *repaired = path + ": a torn header was completed";
      return log;
    }
    *error = "audit trail " + path + ": not an audit trail (bad magic at offset 0)";
    return nullptr;
  }
  size_t pos = sizeof magic;
  while (pos < data.size()) {
    const size_t left = data.size() - pos;
    uint32_t len = 0, crc = 0;
    chain_hash chain{};
    bool whole = left >= entry_head_bytes;
    if (whole) {
      std::memcpy(&len, data.data() + pos, 4);
      std::memcpy(&crc, data.data() + pos + 4, 4);
      std::memcpy(chain.data(), data.data() + pos + 8, 32);
      whole = len <= payload_bytes_max && left >= entry_head_bytes + len;
    }
    const uint8_t* payload = data.data() + pos + entry_head_bytes;
    const bool crc_ok = whole && entry_crc(chain, payload, len) == crc;
    if (!whole || !crc_ok) {
      // Torn: the bytes after the last whole entry are what an interrupted append
      // leaves (zeros, or a prefix of the entry). Anything else is damage.
      bool torn;
      if (all_zero(data.data() + pos, left)) torn = true;
      else if (left < entry_head_bytes) torn = true;
      else if (len > payload_bytes_max) torn = false;
      else if (left < entry_head_bytes + len) torn = true;
      else torn = pos + entry_head_bytes + len == data.size();
      if (!torn) {
        *error = "audit trail " + path + ": entry " + std::to_string(log->entries_ + 1) + " at offset " +
                 std::to_string(pos) + " is damaged (" + (len > payload_bytes_max ? "length" : "checksum") +
                 ") and is not the last";
        return nullptr;
      }
      if (::ftruncate(fd, off_t(pos)) != 0 || ::fdatasync(fd) != 0) {
        *error = errno_text("audit trail " + path + ": cutting a torn tail");
        return nullptr;
      }
      *repaired = path + ": torn last entry cut at offset " + std::to_string(pos) + " (" + std::to_string(left) +
                  " bytes)";
      break;
    }
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
  }
  log->size_ = pos;
  return log;
}

audit_log::~audit_log() {
  if (fd_ >= 0) ::close(fd_);
}

bool audit_log::append(std::string_view payload, std::string* error) {
  if (payload.size() > payload_bytes_max) {
    *error = "audit entry of " + std::to_string(payload.size()) + " bytes; the limit is " +
             std::to_string(payload_bytes_max);
    return false;
  }
  const chain_hash chain = link(chain_, payload.data(), payload.size());
  std::vector<uint8_t> buf(entry_head_bytes + payload.size());
  const auto len = uint32_t(payload.size());
  const uint32_t crc = entry_crc(chain, payload.data(), payload.size());
  std::memcpy(buf.data(), &len, 4);
  std::memcpy(buf.data() + 4, &crc, 4);
  std::memcpy(buf.data() + 8, chain.data(), 32);
  std::memcpy(buf.data() + entry_head_bytes, payload.data(), payload.size());
  if (!write_all(fd_, buf.data(), buf.size(), size_) || ::fdatasync(fd_) != 0) {
    *error = errno_text("audit trail append");
    [[maybe_unused]] const int rc = ::ftruncate(fd_, off_t(size_));  // keep the file whole
    return false;
  }
  size_ += buf.size();
  chain_ = chain;
  ++entries_;
  tail_.emplace_back(payload);
  if (tail_.size() > tail_kept) tail_.pop_front();
  return true;
}

std::vector<std::string> audit_log::tail(size_t n) const {
  n = std::min(n, tail_.size());
  return {tail_.end() - ptrdiff_t(n), tail_.end()};
}

}  // namespace mesob::storage
