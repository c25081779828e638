#include "storage/event_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "storage/checksum.hpp"
#include "storage/file_io.hpp"
#include "storage/wal.hpp"

namespace mesob::storage {
namespace {

constexpr size_t event_bytes = sizeof(wire::event);
constexpr size_t crc_bytes = offsetof(wire::event, crc);
constexpr uint64_t block = 4096;
constexpr size_t write_events_max = 8192;  // events per write (768 KiB)

uint8_t* aligned_bytes(size_t n) {
  void* p = nullptr;
  return ::posix_memalign(&p, block, n) == 0 ? static_cast<uint8_t*>(p) : nullptr;
}

std::string errno_text(const char* what, const std::string& path) {
  return std::string("event log: ") + what + " " + path + ": " + std::strerror(errno);
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
  if (opt.segment_events < 128 || opt.segment_events > (1ull << 24) || opt.segment_events % 128 != 0) {
    *error = "event log: segment_events must be a multiple of 128 in 128 .. 16,777,216";
    return nullptr;
  }
  if (opt.ring_events < 1024 || (opt.ring_events & (opt.ring_events - 1)) != 0) {
    *error = "event log: ring_events must be a power of two of at least 1,024";
    return nullptr;
  }
  std::error_code ec;
  std::filesystem::create_directories(opt.dir, ec);
  if (ec) {
    *error = "event log: cannot create " + opt.dir + ": " + ec.message();
    return nullptr;
  }
  {
    // Appends and reads go around the page cache: say so now if the filesystem cannot.
    const std::string probe = opt.dir + "/.direct-probe";
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0644);
    uint8_t* b = aligned_bytes(block);
    const bool ok = fd >= 0 && b && (std::memset(b, 0, block), ::pwrite(fd, b, block, 0) == ssize_t(block));
    const int why = errno;
    std::free(b);
    if (fd >= 0) ::close(fd);
    ::unlink(probe.c_str());
    if (!ok) {
      *error = "event log: " + opt.dir + " does not take O_DIRECT writes of 4 KiB blocks (" + std::strerror(why) +
               "): put the data directory on a disk filesystem (ext4, xfs)";
      return nullptr;
    }
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
      const bool ok = size == seg_bytes && pread_full(fd, &first, event_bytes, 0) &&
                      pread_full(fd, &end, event_bytes, seg_bytes - event_bytes) && check(first, idx * seg + 1) &&
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
    if (!buf.empty() && !pread_full(fd, buf.data(), buf.size(), 0)) {
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
      if (fd >= 0 && pread_full(fd, &e, event_bytes, ((o - 1) % seg) * event_bytes)) rec->last_lsn = e.lsn;
      if (fd >= 0) ::close(fd);
    }
  } else {
    log->first_offset_.store(1);
  }
  log->durable_end_.store(log->next_offset_);
  log->written_end_.store(log->next_offset_);
  log->bytes_.store(bytes);
  log->ring_ = static_cast<wire::event*>(std::malloc(opt.ring_events * event_bytes));
  log->ring_mask_ = opt.ring_events - 1;
  log->ring_writing_.store(log->next_offset_);
  log->ring_first_.store(log->next_offset_);
  log->tail_ = aligned_bytes(block);
  log->stage_bytes_ = write_events_max * event_bytes + 2 * block;
  log->stage_ = aligned_bytes(log->stage_bytes_);
  if (!log->tail_ || !log->stage_ || !log->ring_) {
    *error = "event log: out of memory for its write buffers";
    return nullptr;
  }
  rec->first_offset = log->first_offset_.load();
  rec->next_offset = log->next_offset_;
  rec->segments = indexes.size();
  return log;
}

event_log::~event_log() {
  if (append_fd_ >= 0) ::close(append_fd_);
  std::free(tail_);
  std::free(stage_);
  std::free(ring_);
}

bool event_log::open_for_append(uint64_t index, std::string* error) {
  const std::string path = segment_path(opt_.dir, index);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = errno_text("cannot open", path);
    return false;
  }
  // The partial block the next write starts with, as the file has it.
  std::memset(tail_, 0, block);
  const uint64_t pos = ((next_offset_ - 1) % opt_.segment_events) * event_bytes;
  if (pos % block != 0) {
    ssize_t got;
    do got = ::pread(fd, tail_, block, off_t(pos - pos % block));
    while (got < 0 && errno == EINTR);
    if (got < ssize_t(pos % block)) {  // the events it holds must all be there
      ::close(fd);
      *error = got < 0 ? errno_text("cannot read the last block of", path)
                       : "event log: " + path + " is shorter than its events (" + std::to_string(got) + " bytes of " +
                             std::to_string(pos % block) + " in its last block)";
      return false;
    }
  }
  // The previous segment is synced (append() syncs before it opens the next one).
  if (append_fd_ >= 0) ::close(append_fd_);
  append_fd_ = fd;
  append_index_ = index;
  dir_dirty_ = true;
  return true;
}

bool event_log::append(std::span<wire::event> events, std::string* error, bool visible) {
  const uint64_t seg = opt_.segment_events;
  size_t i = 0;
  while (i < events.size()) {
    const uint64_t o = next_offset_;
    const uint64_t index = (o - 1) / seg, at = (o - 1) % seg;
    if (index != append_index_) {
      if (unsynced_ && !sync(error)) return false;  // the segment before ends whole
      if (!open_for_append(index, error)) return false;
    }
    const size_t n = size_t(std::min<uint64_t>({events.size() - i, seg - at, write_events_max}));
    // Readers learn that these slots change before they do (a seqlock's write side).
    ring_writing_.store(o + n, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    for (size_t k = 0; k < n; ++k) {
      wire::event& e = events[i + k];
      e.offset = o + k;
      e.crc = event_crc(e);
      ring_[(o + k - 1) & ring_mask_] = e;
    }
    // One aligned write: the partial block so far, the new events, zeros to the block end.
    const uint64_t pos = at * event_bytes, floor = pos - pos % block, head = pos - floor;
    const uint64_t end = pos + n * event_bytes, len = (end - floor + block - 1) / block * block;
    std::memcpy(stage_, tail_, head);
    std::memcpy(stage_ + head, events.data() + i, n * event_bytes);
    std::memset(stage_ + head + n * event_bytes, 0, len - head - n * event_bytes);
    if (!pwrite_full(append_fd_, stage_, len, floor)) {
      *error = errno_text("cannot write", segment_path(opt_.dir, index));
      return false;
    }
    std::memset(tail_, 0, block);
    std::memcpy(tail_, stage_ + (end - end % block - floor), end % block);
    unsynced_ = true;
    next_offset_ += n;
    bytes_.fetch_add(n * event_bytes, std::memory_order_relaxed);
    if (visible) written_end_.store(next_offset_, std::memory_order_release);
    i += n;
  }
  return true;
}

bool event_log::sync(std::string* error) {
  if (unsynced_ && ::fdatasync(append_fd_) != 0) {
    *error = std::string("event log: fdatasync failed: ") + std::strerror(errno);
    return false;
  }
  unsynced_ = false;
  if (dir_dirty_) {
    if (!fsync_dir(opt_.dir)) {
      *error = "event log: cannot sync the directory " + opt_.dir;
      return false;
    }
    dir_dirty_ = false;
  }
  durable_end_.store(next_offset_, std::memory_order_release);
  written_end_.store(next_offset_, std::memory_order_release);
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
  written_end_.store(o, std::memory_order_release);
  ring_writing_.store(o);
  ring_first_.store(o);
  // What the open segment held past the cut is gone, and the cut segment is synced above.
  if (append_fd_ >= 0) ::close(append_fd_);
  append_fd_ = -1;
  unsynced_ = false;
  append_index_ = UINT64_MAX;  // the next append reads its partial block again
  return true;
}

std::shared_ptr<event_log::segment_file> event_log::reader_fd(uint64_t index, std::string* error) {
  std::lock_guard lk(mu_);
  if (auto it = readers_.find(index); it != readers_.end()) return it->second;
  if (index < (first_offset_.load() - 1) / opt_.segment_events) return nullptr;
  auto f = std::make_shared<segment_file>();
  const std::string path = segment_path(opt_.dir, index);
  f->fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
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
  const uint64_t end = written_end();
  out->resize(size_t(from == 0 || end <= from ? 0 : std::min<uint64_t>(max, end - from)));
  size_t n = 0;
  const read_status st = read(from, out->size(), out->data(), &n, error);
  out->resize(n);
  return st;
}

event_log::read_status event_log::read(uint64_t from, size_t max, wire::event* out, size_t* n, std::string* error) {
  *n = 0;
  const uint64_t end = written_end();
  if (from == 0) from = 1;
  if (from < first_offset()) return read_status::truncated;
  if (from >= end || max == 0) return read_status::ok;
  const uint64_t to = std::min<uint64_t>(end, from + max);
  // From memory when the newest events are asked for, else from the files; each event's
  // offset and checksum are checked either way (in memory, against a copy torn by the
  // writer reusing its slot).
  if (!read_ring(from, to, out) && !read_files(from, to, out, error))
    return from < first_offset() ? read_status::truncated : read_status::failed;
  for (uint64_t o = from; o < to; ++o) {
    const wire::event& e = out[o - from];
    if (e.offset != o || e.crc != event_crc(e)) {
      *error = "event log: event " + std::to_string(o) + " fails its checks (offset " + std::to_string(e.offset) +
               ", checksum " + (e.crc == event_crc(e) ? "good" : "bad") + ")";
      return read_status::failed;
    }
  }
  *n = size_t(to - from);
  return read_status::ok;
}

bool event_log::read_ring(uint64_t from, uint64_t to, wire::event* out) const {
  const uint64_t ring = ring_mask_ + 1;
  if (from < ring_first_.load(std::memory_order_acquire) || ring_writing_.load(std::memory_order_acquire) > from + ring)
    return false;
  for (uint64_t o = from; o < to; ++o) out[o - from] = ring_[(o - 1) & ring_mask_];
  // Good unless the writer started on a slot of this range meanwhile.
  std::atomic_thread_fence(std::memory_order_acquire);
  return ring_writing_.load(std::memory_order_relaxed) <= from + ring;
}

bool event_log::read_files(uint64_t from, uint64_t to, wire::event* out, std::string* error) {
  // Aligned reads around the page cache, through one buffer per reading thread.
  thread_local std::unique_ptr<uint8_t, decltype(&std::free)> buf(nullptr, &std::free);
  thread_local size_t buf_bytes = 0;
  const uint64_t seg = opt_.segment_events;
  uint64_t o = from;
  while (o < to) {
    const uint64_t index = (o - 1) / seg, at = (o - 1) % seg;
    const uint64_t n = std::min<uint64_t>({to - o, seg - at, write_events_max});
    const uint64_t pos = at * event_bytes, floor = pos - pos % block;
    const uint64_t len = (pos + n * event_bytes - floor + block - 1) / block * block;
    if (buf_bytes < len) {
      buf.reset(aligned_bytes(len));
      buf_bytes = buf ? len : 0;
      if (!buf) {
        *error = "event log: out of memory for a read";
        return false;
      }
    }
    auto f = reader_fd(index, error);
    if (!f) return false;
    ssize_t got;
    do got = ::pread(f->fd, buf.get(), len, off_t(floor));
    while (got < 0 && errno == EINTR);
    if (got < ssize_t(pos - floor + n * event_bytes)) {
      *error = errno_text("cannot read", segment_path(opt_.dir, index));
      return false;
    }
    std::memcpy(out + (o - from), buf.get() + (pos - floor), n * event_bytes);
    o += n;
  }
  return true;
}

}  // namespace mesob::storage
