#include "storage/event_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "storage/checksum.hpp"
#include "storage/wal.hpp"

namespace mesob::storage {
namespace {

constexpr size_t event_bytes = sizeof(wire::event);
constexpr size_t crc_bytes = offsetof(wire::event, crc);

std::string errno_text(const char* what, const std::string& path) {
  return std::string("event log: ") + what + " " + path + ": " + std::strerror(errno);
}

bool pread_all(int fd, void* buf, size_t len, uint64_t off) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    const ssize_t n = ::pread(fd, p, len, off_t(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= size_t(n);
    off += uint64_t(n);
  }
  return true;
}

bool pwrite_all(int fd, const void* buf, size_t len, uint64_t off) {
  const auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    const ssize_t n = ::pwrite(fd, p, len, off_t(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= size_t(n);
    off += uint64_t(n);
  }
  return true;
}

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

}  // namespace

uint32_t event_log::event_crc(const wire::event& e) { return crc32c(&e, crc_bytes); }

std::string event_log::segment_path(const std::string& dir, uint64_t index) {
  char name[40];
  std::snprintf(name, sizeof name, "events-%016llx.log", static_cast<unsigned long long>(index));
  return dir + "/" + name;
}

event_log::segment_file::~segment_file() {
  if (fd >= 0) ::close(fd);
}

std::unique_ptr<event_log> event_log::open(const event_log_options& opt, event_log_recovery* rec, std::string* error) {
  if (opt.segment_events < 16 || opt.segment_events > (1ull << 24)) {
    *error = "event log: segment_events must be 16 .. 16,777,216";
    return nullptr;
  }
  std::error_code ec;
  std::filesystem::create_directories(opt.dir, ec);
  if (ec) {
    *error = "event log: cannot create " + opt.dir + ": " + ec.message();
    return nullptr;
  }
  std::unique_ptr<event_log> log(new event_log());
  log->opt_ = opt;
  *rec = {};

  // Segment files, by index.
  std::vector<uint64_t> indexes;
  for (const auto& ent : std::filesystem::directory_iterator(opt.dir, ec)) {
    const std::string name = ent.path().filename().string();
    unsigned long long idx = 0;
    char tail[8] = {};
    if (name.size() == 27 && std::sscanf(name.c_str(), "events-%16llx.%3s", &idx, tail) == 2 &&
        std::strcmp(tail, "log") == 0)
      indexes.push_back(idx);
  }
  if (ec) {
    *error = "event log: cannot list " + opt.dir + ": " + ec.message();
    return nullptr;
  }
  std::sort(indexes.begin(), indexes.end());
  for (size_t i = 1; i < indexes.size(); ++i)
    if (indexes[i] != indexes[i - 1] + 1) {
      *error = "event log: segment " + segment_path(opt.dir, indexes[i - 1] + 1) + " is missing (" +
               std::to_string(indexes.size()) + " segments from " + std::to_string(indexes.front()) + ")";
      return nullptr;
    }
  const uint64_t seg = opt.segment_events;
  const uint64_t seg_bytes = seg * event_bytes;
  auto check = [&](const wire::event& e, uint64_t expect) {
    return e.offset == expect && e.crc == event_crc(e);
  };
  uint64_t bytes = 0;
  for (size_t i = 0; i < indexes.size(); ++i) {
    const uint64_t idx = indexes[i];
    const std::string path = segment_path(opt.dir, idx);
    const bool last = i + 1 == indexes.size();
    const int fd = ::open(path.c_str(), last ? O_RDWR : O_RDONLY);
    if (fd < 0) {
      *error = errno_text("cannot open", path);
      return nullptr;
    }
    struct stat st {};
    ::fstat(fd, &st);
    const uint64_t size = uint64_t(st.st_size);
    if (!last) {
      // A full segment: its size, and its first and last events.
      wire::event first{}, end{};
      const bool ok = size == seg_bytes && pread_all(fd, &first, event_bytes, 0) &&
                      pread_all(fd, &end, event_bytes, seg_bytes - event_bytes) && check(first, idx * seg + 1) &&
                      check(end, idx * seg + seg);
      ::close(fd);
      if (!ok) {
        *error = "event log: " + path + " is damaged (a segment before the last must hold " + std::to_string(seg) +
                 " whole events; it has " + std::to_string(size) + " bytes)";
        return nullptr;
      }
      bytes += seg_bytes;
      continue;
    }
    // The last segment: read it whole, and keep its events up to the first that fails.
    std::vector<uint8_t> buf(std::min(size, seg_bytes));
    if (!buf.empty() && !pread_all(fd, buf.data(), buf.size(), 0)) {
      ::close(fd);
      *error = errno_text("cannot read", path);
      return nullptr;
    }
    uint64_t n = 0;
    wire::event e{};
    while ((n + 1) * event_bytes <= buf.size()) {
      std::memcpy(&e, buf.data() + n * event_bytes, event_bytes);
      if (!check(e, idx * seg + n + 1)) break;
      rec->last_lsn = e.lsn;
      ++n;
    }
    const uint64_t keep = n * event_bytes;
    if (keep < size) {
      const bool zeros = all_zero(buf.data() + keep, buf.size() - keep) && size <= seg_bytes;
      if (!zeros)
        rec->torn_tail = path + " at byte " + std::to_string(keep) + ": " +
                         std::to_string(size - keep) + " bytes after the last whole event cut";
      if (::ftruncate(fd, off_t(keep)) != 0) {
        ::close(fd);
        *error = errno_text("cannot cut the tail of", path);
        return nullptr;
      }
    }
    // What a killed process wrote may sit in the page cache only: durable before served.
    if (::fdatasync(fd) != 0) {
      ::close(fd);
      *error = errno_text("cannot sync", path);
      return nullptr;
    }
    ::close(fd);
    bytes += keep;
    log->next_offset_ = idx * seg + n + 1;
    if (n == 0 && i > 0) rec->last_lsn = 0;  // found below from the previous segment
  }
  if (!indexes.empty()) {
    log->first_offset_.store(indexes.front() * seg + 1);
    if (rec->last_lsn == 0 && log->next_offset_ > indexes.front() * seg + 1) {
      // The last segment is empty: the newest event ends the segment before it.
      const uint64_t o = log->next_offset_ - 1;
      const std::string path = segment_path(opt.dir, (o - 1) / seg);
      const int fd = ::open(path.c_str(), O_RDONLY);
      wire::event e{};
      if (fd >= 0 && pread_all(fd, &e, event_bytes, ((o - 1) % seg) * event_bytes)) rec->last_lsn = e.lsn;
      if (fd >= 0) ::close(fd);
    }
  } else {
    log->first_offset_.store(1);
  }
  log->durable_end_.store(log->next_offset_);
  log->bytes_.store(bytes);
  rec->first_offset = log->first_offset_.load();
  rec->next_offset = log->next_offset_;
  rec->segments = indexes.size();
  return log;
}

event_log::~event_log() {
  if (append_fd_ >= 0) ::close(append_fd_);
  for (int fd : unsynced_fds_)
    if (fd != append_fd_) ::close(fd);
}

bool event_log::open_for_append(uint64_t index, std::string* error) {
  const std::string path = segment_path(opt_.dir, index);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = errno_text("cannot open", path);
    return false;
  }
  // The previous segment stays open until the next sync has made it durable.
  if (append_fd_ >= 0 && std::find(unsynced_fds_.begin(), unsynced_fds_.end(), append_fd_) == unsynced_fds_.end())
    ::close(append_fd_);
  append_fd_ = fd;
  append_index_ = index;
  dir_dirty_ = true;
  return true;
}

bool event_log::append(std::span<wire::event> events, std::string* error) {
  const uint64_t seg = opt_.segment_events;
  size_t i = 0;
  while (i < events.size()) {
    const uint64_t o = next_offset_;
    const uint64_t index = (o - 1) / seg, at = (o - 1) % seg;
    if (index != append_index_ && !open_for_append(index, error)) return false;
    const size_t n = size_t(std::min<uint64_t>(events.size() - i, seg - at));
    for (size_t k = 0; k < n; ++k) {
      wire::event& e = events[i + k];
      e.offset = o + k;
      e.crc = event_crc(e);
    }
    if (!pwrite_all(append_fd_, events.data() + i, n * event_bytes, at * event_bytes)) {
      *error = errno_text("cannot write", segment_path(opt_.dir, index));
      return false;
    }
    if (std::find(unsynced_fds_.begin(), unsynced_fds_.end(), append_fd_) == unsynced_fds_.end())
      unsynced_fds_.push_back(append_fd_);
    next_offset_ += n;
    bytes_.fetch_add(n * event_bytes, std::memory_order_relaxed);
    i += n;
  }
  return true;
}

bool event_log::sync(std::string* error) {
  for (int fd : unsynced_fds_)
    if (::fdatasync(fd) != 0) {
      *error = std::string("event log: fdatasync failed: ") + std::strerror(errno);
      return false;
    }
  for (int fd : unsynced_fds_)
    if (fd != append_fd_) ::close(fd);
  unsynced_fds_.clear();
  if (dir_dirty_) {
    if (!fsync_dir(opt_.dir)) {
      *error = "event log: cannot sync the directory " + opt_.dir;
      return false;
    }
    dir_dirty_ = false;
  }
  durable_end_.store(next_offset_, std::memory_order_release);
  return true;
}

size_t event_log::apply_retention(uint64_t now_ns) {
  if (opt_.retention_bytes == 0 && opt_.retention_ns == 0) return 0;
  const uint64_t seg = opt_.segment_events, seg_bytes = seg * event_bytes;
  size_t dropped = 0;
  for (;;) {
    const uint64_t first = first_offset_.load();
    const uint64_t index = (first - 1) / seg;
    const uint64_t durable = durable_end_.load();
    // Only a full segment wholly durable, and never the one holding the newest event (the
    // directory then always says where offsets continue).
    if (next_offset_ < 2 || (index + 1) * seg + 1 > durable || index >= (next_offset_ - 2) / seg) break;
    bool drop = opt_.retention_bytes != 0 && bytes_.load() > opt_.retention_bytes;
    if (!drop && opt_.retention_ns != 0) {
      std::vector<wire::event> last;
      std::string err;
      if (read((index + 1) * seg, 1, &last, &err) != read_status::ok || last.empty()) break;
      drop = last[0].timestamp + opt_.retention_ns < now_ns;
    }
    if (!drop) break;
    {
      std::lock_guard lk(mu_);
      first_offset_.store((index + 1) * seg + 1, std::memory_order_release);
      readers_.erase(index);
    }
    ::unlink(segment_path(opt_.dir, index).c_str());
    bytes_.fetch_sub(std::min(bytes_.load(), seg_bytes));
    ++dropped;
  }
  return dropped;
}

bool event_log::cut_from(uint64_t lsn, uint64_t* cut, std::string* error) {
  *cut = 0;
  const uint64_t seg = opt_.segment_events;
  // The first offset of the run of events with lsn >= `lsn` at the end of the log.
  uint64_t o = next_offset_;
  std::vector<wire::event> one;
  while (o > first_offset()) {
    if (read(o - 1, 1, &one, error) != read_status::ok || one.empty()) return false;
    if (one[0].lsn < lsn) break;
    --o;
  }
  if (o == next_offset_) return true;
  const uint64_t keep_index = (o - 1) / seg;
  for (uint64_t index = (next_offset_ - 2) / seg; index > keep_index; --index) {
    {
      std::lock_guard lk(mu_);
      readers_.erase(index);
    }
    if (::unlink(segment_path(opt_.dir, index).c_str()) != 0) {
      *error = errno_text("cannot remove", segment_path(opt_.dir, index));
      return false;
    }
  }
  const std::string path = segment_path(opt_.dir, keep_index);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 || ::ftruncate(fd, off_t(((o - 1) % seg) * event_bytes)) != 0 || ::fdatasync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    *error = errno_text("cannot cut", path);
    return false;
  }
  ::close(fd);
  if (!fsync_dir(opt_.dir)) {
    *error = "event log: cannot sync the directory " + opt_.dir;
    return false;
  }
  {
    std::lock_guard lk(mu_);
    readers_.erase(keep_index);
  }
  *cut = next_offset_ - o;
  bytes_.fetch_sub(std::min(bytes_.load(), *cut * event_bytes));
  next_offset_ = o;
  durable_end_.store(o, std::memory_order_release);
  return true;
}

std::shared_ptr<event_log::segment_file> event_log::reader_fd(uint64_t index, std::string* error) {
  std::lock_guard lk(mu_);
  if (auto it = readers_.find(index); it != readers_.end()) return it->second;
  if (index < (first_offset_.load() - 1) / opt_.segment_events) return nullptr;
  auto f = std::make_shared<segment_file>();
  const std::string path = segment_path(opt_.dir, index);
  f->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) {
    *error = errno_text("cannot open", path);
    return nullptr;
  }
  // Few segments are read at once: readers near the end share the newest two.
  while (readers_.size() >= 8) readers_.erase(readers_.begin());
  readers_[index] = f;
  return f;
}

event_log::read_status event_log::read(uint64_t from, size_t max, std::vector<wire::event>* out, std::string* error) {
  out->clear();
  const uint64_t end = durable_end();
  if (from == 0) from = 1;
  if (from < first_offset()) return read_status::truncated;
  if (from >= end || max == 0) return read_status::ok;
  const uint64_t to = std::min<uint64_t>(end, from + max);
  out->resize(size_t(to - from));
  const uint64_t seg = opt_.segment_events;
  uint64_t o = from;
  while (o < to) {
    const uint64_t index = (o - 1) / seg, at = (o - 1) % seg;
    const uint64_t n = std::min(to - o, seg - at);
    auto f = reader_fd(index, error);
    if (!f) {
      out->clear();
      if (from < first_offset()) return read_status::truncated;
      return read_status::failed;
    }
    if (!pread_all(f->fd, out->data() + (o - from), size_t(n) * event_bytes, at * event_bytes)) {
      out->clear();
      *error = errno_text("cannot read", segment_path(opt_.dir, index));
      return read_status::failed;
    }
    o += n;
  }
  // Retention may have dropped the segment while it was read: the events are whole
  // (the file stays readable while open), but say so if the caller's offset is gone.
  for (const auto& e : *out)
    if (e.crc != event_crc(e)) {
      *error = "event log: event " + std::to_string(e.offset) + " fails its checksum";
      out->clear();
      return read_status::failed;
    }
  return read_status::ok;
}

}  // namespace mesob::storage
