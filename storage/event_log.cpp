#include "storage/event_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include "storage/checksum.hpp"
#include "storage/failure_probes.hpp"
#include "storage/file_io.hpp"
#include "storage/wal.hpp"
#include "wire/assert.hpp"
#include "wire/event_pack.hpp"
#include "wire/huge_pages.hpp"

namespace mesob::storage {
namespace {

namespace fmt = event_format;
constexpr size_t event_bytes = sizeof(wire::event);
constexpr uint64_t block = 4096;
constexpr size_t write_events_max = 8192;  // events per write
// One write: the partial block before it, a segment header, its chunks (a write splits at
// group boundaries only: at most write_events_max / 128 + 1 chunks), the padding.
constexpr size_t write_bytes_max = block + fmt::segment_header_bytes +
                                   (write_events_max / fmt::group_events + 1) *
                                       (fmt::chunk_header_bytes + wire::packed_block_overhead_max) +
                                   write_events_max * event_bytes + block;
// The seal of the largest segment, in whole blocks.
constexpr size_t seal_bytes_max =
    (fmt::segment_events_max / fmt::group_events * 4 + fmt::seal_fixed_bytes + block - 1) / block * block;
// Positions are 32-bit: the most a segment's chunks take (a chunk of one event each).
static_assert(fmt::segment_header_bytes + fmt::segment_events_max * (fmt::chunk_header_bytes +
                                                                     wire::packed_block_overhead_max + event_bytes) +
                  seal_bytes_max <
              (1ull << 32));
// Bytes read from a segment at once, at most (a group's chunks are read whole).
constexpr size_t read_bytes_max = 1 << 20;

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

uint64_t round_up(uint64_t n) { return (n + block - 1) / block * block; }

template <class T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
void put(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

size_t seal_bytes(uint64_t groups) { return size_t(round_up(groups * 4 + fmt::seal_fixed_bytes)); }

void put_segment_header(uint8_t* p, uint64_t segment_events, uint64_t index) {
  std::memcpy(p, fmt::segment_magic, 8);
  put<uint32_t>(p + 8, fmt::version);
  put<uint32_t>(p + 12, uint32_t(segment_events));
  put<uint64_t>(p + 16, index);
  put<uint32_t>(p + 24, 0);
  put<uint32_t>(p + 28, crc32c(p, 28));
}

// A seal of `groups` groups (seal_bytes(groups) at `p`, zeros before its fields) for chunks
// ending at byte `end`, group g starting at start_of(g).
void put_seal(uint8_t* p, uint64_t groups, uint64_t end, const std::function<uint32_t(uint64_t)>& start_of) {
  const size_t len = seal_bytes(groups);
  std::memset(p, 0, len);
  uint8_t* fixed = p + len - fmt::seal_fixed_bytes;
  uint8_t* first = fixed - groups * 4;
  for (uint64_t g = 0; g < groups; ++g) put<uint32_t>(first + g * 4, start_of(g));
  put<uint32_t>(fixed, uint32_t(end));
  put<uint32_t>(fixed + 4, uint32_t(groups));
  put<uint32_t>(fixed + 8, fmt::seal_magic);
  put<uint32_t>(fixed + 12, crc32c(first, groups * 4 + 12));
}

// Whether `p` (at least 32 bytes) is this segment's header; else *why says what it is.
bool check_segment_header(const uint8_t* p, uint64_t segment_events, uint64_t index, std::string* why) {
  if (std::memcmp(p, fmt::segment_magic, 8) != 0 || get<uint32_t>(p + 28) != crc32c(p, 28)) {
    *why = "no segment header";
    return false;
  }
  if (get<uint32_t>(p + 8) != fmt::version) {
    *why = "format version " + std::to_string(get<uint32_t>(p + 8)) + " (this mesobd reads version " +
           std::to_string(fmt::version) + ")";
    return false;
  }
  if (get<uint32_t>(p + 12) != segment_events || get<uint64_t>(p + 16) != index) {
    *why = "a header for segment " + std::to_string(get<uint64_t>(p + 16)) + " of " +
           std::to_string(get<uint32_t>(p + 12)) + " events (expected segment " + std::to_string(index) + " of " +
           std::to_string(segment_events) + ": events_segment_events must not change while the log is kept)";
    return false;
  }
  return true;
}

// An event of the event log's first format (96-byte events back to back, no header)?
bool first_format_event(const uint8_t* p, size_t n) {
  if (n < event_bytes) return false;
  wire::event e;
  std::memcpy(&e, p, event_bytes);
  return e.offset != 0 && e.crc == event_log::event_crc(e);
}

// One chunk at `p` (`avail` bytes there): checked whole (header, CRC, its events'
// offsets and CRCs, within one group), its events unpacked into `out`. *used: its bytes.
bool parse_chunk(const uint8_t* p, size_t avail, uint64_t first, uint64_t segment_events,
                 std::vector<wire::event>& out, size_t* used, std::string* why) {
  if (avail < fmt::chunk_header_bytes) {
    *why = avail == 0 ? "the chunk is missing" : "a cut chunk header";
    return false;
  }
  const uint32_t count = get<uint16_t>(p + 4), body = get<uint32_t>(p + 8);
  if (get<uint32_t>(p) != fmt::chunk_magic) {
    *why = all_zero(p, std::min<size_t>(avail, fmt::chunk_header_bytes)) ? "zeros where a chunk should be"
                                                                        : "no chunk header";
    return false;
  }
  const uint64_t in_group = ((first - 1) % segment_events) % fmt::group_events;
  if (count == 0 || in_group + count > fmt::group_events || get<uint16_t>(p + 6) != 0 ||
      body > wire::packed_block_overhead_max + count * event_bytes) {
    *why = "a chunk header out of bounds (" + std::to_string(count) + " events, " + std::to_string(body) + " bytes)";
    return false;
  }
  if (get<uint64_t>(p + 12) != first) {
    *why = "a chunk from offset " + std::to_string(get<uint64_t>(p + 12)) + " where " + std::to_string(first) +
           " was due";
    return false;
  }
  if (avail < fmt::chunk_header_bytes + body) {
    *why = "a cut chunk";
    return false;
  }
  if (get<uint32_t>(p + 20) != crc32c(p + fmt::chunk_header_bytes, body, crc32c(p, 20))) {
    *why = "a chunk failing its checksum";
    return false;
  }
  std::string bad;
  if (!wire::unpack_events({p + fmt::chunk_header_bytes, body}, count, out, &bad)) {
    *why = "a chunk whose events do not unpack (" + bad + ")";
    return false;
  }
  for (uint32_t k = 0; k < count; ++k)
    if (out[k].offset != first + k || out[k].crc != event_log::event_crc(out[k])) {
      *why = "event " + std::to_string(first + k) + " failing its checks";
      return false;
    }
  *used = fmt::chunk_header_bytes + body;
  return true;
}

// A full segment's seal, read from its file of `size` bytes into `starts` and *end;
// false with why.
// A group takes at least a chunk header and at most 128 chunks of one event.
constexpr uint64_t group_bytes_max =
    fmt::group_events * (fmt::chunk_header_bytes + wire::packed_block_overhead_max + event_bytes);
// The largest segment file a setting of `segment_events` writes: a larger one is damage
// (a size read from the disk is not trusted for memory; the last segment is read whole).
constexpr uint64_t segment_file_bytes_max(uint64_t segment_events) {
  return block + fmt::segment_header_bytes + segment_events / fmt::group_events * group_bytes_max + seal_bytes_max;
}

bool read_seal(int fd, uint64_t segment_events, uint64_t size, std::atomic<uint32_t>* starts, uint64_t* end,
               std::string* why) {
  const uint64_t groups = segment_events / fmt::group_events;
  const size_t len = seal_bytes(groups);
  if (size < fmt::segment_header_bytes + len || size % block != 0) {
    *why = "no seal (" + std::to_string(size) + " bytes)";
    return false;
  }
  std::unique_ptr<uint8_t, decltype(&std::free)> buf(aligned_bytes(len), &std::free);
  if (!buf || !pread_full(fd, buf.get(), len, size - len)) {
    *why = std::string("cannot read its seal: ") + std::strerror(errno);
    return false;
  }
  const uint8_t* fixed = buf.get() + len - fmt::seal_fixed_bytes;
  const uint8_t* first = fixed - groups * 4;
  if (get<uint32_t>(fixed + 8) != fmt::seal_magic || get<uint32_t>(fixed + 4) != groups ||
      get<uint32_t>(fixed + 12) != crc32c(first, groups * 4 + 12)) {
    *why = "no seal at its end";
    return false;
  }
  *end = get<uint32_t>(fixed);
  if (round_up(*end) + len != size) {
    *why = "a seal whose chunks end at byte " + std::to_string(*end) + " of " + std::to_string(size);
    return false;
  }
  uint64_t prev = 0;
  for (uint64_t g = 0; g <= groups; ++g) {
    const uint64_t at = g < groups ? get<uint32_t>(first + g * 4) : *end;
    const bool ok = g == 0 ? at == fmt::segment_header_bytes
                           : at >= prev + fmt::chunk_header_bytes && at - prev <= group_bytes_max;
    if (!ok) {
      *why = "a seal placing " + (g < groups ? "group " + std::to_string(g) : std::string("the chunks' end")) +
             " at byte " + std::to_string(at);
      return false;
    }
    if (g < groups) starts[g].store(uint32_t(at), std::memory_order_relaxed);
    prev = at;
  }
  return true;
}

// Writes `events` (1..128, within one group, offsets and CRCs set) at `h` as one chunk;
// returns its bytes. `pack` is scratch.
size_t put_chunk(uint8_t* h, std::span<const wire::event> events, std::vector<uint8_t>& pack) {
  pack.clear();
  wire::pack_events(events, pack);
  put<uint32_t>(h, fmt::chunk_magic);
  put<uint16_t>(h + 4, uint16_t(events.size()));
  put<uint16_t>(h + 6, 0);
  put<uint32_t>(h + 8, uint32_t(pack.size()));
  put<uint64_t>(h + 12, events.front().offset);
  std::memcpy(h + fmt::chunk_header_bytes, pack.data(), pack.size());
  put<uint32_t>(h + 20, crc32c(pack.data(), pack.size(), crc32c(h, 20)));
  return fmt::chunk_header_bytes + pack.size();
}

// Reads the chunks in bytes [pos0, pos1) of a segment, the first holding offset `first`
// and each the next: they must fill the range exactly. Each chunk's events go to `each`
// with the chunk's position; *next: the offset after the last chunk's. Aligned reads (the file may be open with O_DIRECT) through
// one buffer per thread.
using chunk_visitor = std::function<void(std::span<const wire::event>, uint64_t)>;
bool read_chunks(int fd, uint64_t pos0, uint64_t pos1, uint64_t first, uint64_t segment_events,
                 const chunk_visitor& each, uint64_t* next, std::string* why) {
  thread_local std::unique_ptr<uint8_t, decltype(&std::free)> buf(nullptr, &std::free);
  thread_local size_t buf_bytes = 0;
  thread_local std::vector<wire::event> events;
  const uint64_t floor = pos0 - pos0 % block, len = round_up(pos1) - floor;
  if (buf_bytes < len) {
    buf.reset(aligned_bytes(len));
    buf_bytes = buf ? len : 0;
    if (!buf) {
      *why = "out of memory for a read";
      return false;
    }
  }
  ssize_t got;
  do got = ::pread(fd, buf.get(), len, off_t(floor));
  while (got < 0 && errno == EINTR);
  if (got < ssize_t(pos1 - floor)) {
    *why = got < 0 ? std::string("cannot read: ") + std::strerror(errno)
                   : "cannot read bytes " + std::to_string(pos0) + ".." + std::to_string(pos1) + " (the file ends)";
    return false;
  }
  for (uint64_t p = pos0; p < pos1;) {
    size_t used = 0;
    if (!parse_chunk(buf.get() + (p - floor), pos1 - p, first, segment_events, events, &used, why)) {
      *why = "at byte " + std::to_string(p) + ": " + *why;
      return false;
    }
    each(events, p);
    first += events.size();
    p += used;
  }
  *next = first;
  return true;
}

}  // namespace

uint32_t event_log::event_crc(const wire::event& e) { return wire::event_crc(e); }

std::string event_log::segment_path(const std::string& dir, uint64_t index) {
  char name[40];
  std::snprintf(name, sizeof name, "events-%016llx.log", static_cast<unsigned long long>(index));
  return dir + "/" + name;
}

event_log::segment_file::~segment_file() {
  if (fd >= 0) ::close(fd);
}

std::shared_ptr<event_log::segment_file> event_log::new_segment_file(uint64_t index, std::string* error) const {
  auto f = std::make_shared<segment_file>();
  const uint64_t groups = opt_.segment_events / fmt::group_events;
  f->starts = std::make_unique<std::atomic<uint32_t>[]>(groups);
  for (uint64_t g = 0; g < groups; ++g) f->starts[g].store(0, std::memory_order_relaxed);
  const std::string path = segment_path(opt_.dir, index);
  f->fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (f->fd < 0) {
    *error = errno_text("cannot open", path);
    return nullptr;
  }
  return f;
}

uint64_t event_log::memory_bytes(uint64_t ring_events) {
  return big_buffer_bytes(ring_events * event_bytes) + big_buffer_bytes(packed_bytes) + ring_events / fmt::group_events * sizeof(packed_slot) + block +
         std::max(write_bytes_max, seal_bytes_max);
}

std::unique_ptr<event_log> event_log::open(const event_log_options& opt, event_log_recovery* rec, std::string* error) {
  if (opt.segment_events < fmt::group_events || opt.segment_events > fmt::segment_events_max ||
      opt.segment_events % fmt::group_events != 0) {
    *error = "event log: segment_events must be a multiple of 128 in 128 .. " + std::to_string(fmt::segment_events_max);
    return nullptr;
  }
  if (opt.ring_events < 1024 || (opt.ring_events & (opt.ring_events - 1)) != 0) {
    *error = "event log: ring_events must be a power of two of at least 1,024";
    return nullptr;
  }
  std::error_code ec;
  if (std::filesystem::create_directories(opt.dir, ec) && !ec) {
    const std::string parent = std::filesystem::path(opt.dir).parent_path().string();
    if (!fsync_dir(parent.empty() ? "." : parent)) {
      *error = "event log: cannot sync the directory above " + opt.dir;
      return nullptr;
    }
  }
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
  for (uint64_t idx : indexes) ::unlink((segment_path(opt.dir, idx) + ".cut").c_str());  // a cut cut short
  for (size_t i = 1; i < indexes.size(); ++i)
    if (indexes[i] != indexes[i - 1] + 1) {
      *error = "event log: segment " + segment_path(opt.dir, indexes[i - 1] + 1) + " is missing (" +
               std::to_string(indexes.size()) + " segments from " + std::to_string(indexes.front()) + ")";
      return nullptr;
    }
  const uint64_t seg = opt.segment_events, groups = seg / fmt::group_events;
  const std::string first_format = " holds events in the event log's first format (96 bytes each, no header); this "
                                   "mesobd reads format 2: move the events directory aside to start a new event log "
                                   "(its offsets start again at 1), or run the mesobd that wrote it";
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
    if (::fstat(fd, &st) != 0) {
      *error = errno_text("cannot read the size of", path);
      ::close(fd);
      return nullptr;
    }
    const uint64_t size = uint64_t(st.st_size);
    if (size > segment_file_bytes_max(fmt::segment_events_max)) {
      *error = "event log: " + path + " is " + std::to_string(size) + " bytes, more than any segment (" +
               std::to_string(segment_file_bytes_max(fmt::segment_events_max)) + "): damaged, or not a segment of this log";
      ::close(fd);
      return nullptr;
    }
    uint8_t head[event_bytes] = {};
    const bool have_head = size >= event_bytes && pread_full(fd, head, event_bytes, 0);
    if (have_head && first_format_event(head, event_bytes)) {
      ::close(fd);
      *error = "event log: " + path + first_format;
      return nullptr;
    }
    std::string why;
    if (!last) {
      // A full segment: its seal, its header, its first and last groups whole.
      auto starts = std::make_unique<std::atomic<uint32_t>[]>(groups);
      uint64_t end = 0, seen = 0, next = 0;
      auto count = [&](std::span<const wire::event> ev, uint64_t) { seen += ev.size(); };
      bool ok = read_seal(fd, seg, size, starts.get(), &end, &why) &&
                check_segment_header(head, seg, idx, &why) &&
                read_chunks(fd, starts[0], groups > 1 ? starts[1].load() : end, idx * seg + 1, seg, count, &next, &why);
      if (ok && groups > 1)
        ok = read_chunks(fd, starts[groups - 1], end, idx * seg + seg - fmt::group_events + 1, seg, count, &next,
                         &why);
      if (ok && (next != idx * seg + seg + 1 || seen != std::min<uint64_t>(seg, 2 * fmt::group_events))) {
        ok = false;
        why = "its first and last groups hold " + std::to_string(seen) + " events";
      }
      ::close(fd);
      if (!ok) {
        *error = "event log: " + path + " is damaged (a segment before the last must be whole and sealed, " +
                 std::to_string(seg) + " events: " + why + ")";
        return nullptr;
      }
      bytes += size;
      continue;
    }
    // The last segment: read it whole, and keep its chunks up to the first that fails.
    // Whole means at most what a segment of this setting takes (a larger file would be
    // read into memory for nothing: it is damaged, or of another setting).
    if (size > segment_file_bytes_max(seg)) {
      ::close(fd);
      *error = "event log: " + path + " is " + std::to_string(size) + " bytes, more than a segment of " +
               std::to_string(seg) + " events takes (" + std::to_string(segment_file_bytes_max(seg)) + "): " +
               (have_head && !check_segment_header(head, seg, idx, &why) ? why : "damaged, or not a segment of this log");
      return nullptr;
    }
    std::vector<uint8_t> buf(size);
    if (!buf.empty() && !pread_full(fd, buf.data(), buf.size(), 0)) {
      ::close(fd);
      *error = errno_text("cannot read", path);
      return nullptr;
    }
    auto starts = std::make_unique<uint32_t[]>(groups);
    uint64_t n = 0, keep = 0;
    const bool header = size >= fmt::segment_header_bytes && check_segment_header(buf.data(), seg, idx, &why);
    if (!header && idx * seg + 1 < opt.synced_end) {
      ::close(fd);
      *error = "event log: " + path + " is damaged: " + (size < fmt::segment_header_bytes ? "no segment header" : why) +
               ", but its events from offset " + std::to_string(idx * seg + 1) + " to " +
               std::to_string(opt.synced_end - 1) + " were synced (nothing was changed)";
      return nullptr;
    }
    if (header) {
      keep = fmt::segment_header_bytes;
      std::vector<wire::event> events;
      while (n < seg) {
        size_t used = 0;
        if (!parse_chunk(buf.data() + keep, size - keep, idx * seg + n + 1, seg, events, &used, &why)) {
          if (idx * seg + n + 1 < opt.synced_end) {
            ::close(fd);
            *error = "event log: " + path + " is damaged at byte " + std::to_string(keep) + " (offset " +
                     std::to_string(idx * seg + n + 1) + "): " + why + ", but its events up to offset " +
                     std::to_string(opt.synced_end - 1) + " were synced (nothing was changed)";
            return nullptr;
          }
          break;
        }
        if (n % fmt::group_events == 0) starts[n / fmt::group_events] = uint32_t(keep);
        rec->last_lsn = events.back().lsn;
        n += events.size();
        keep += used;
      }
    } else if (size >= fmt::segment_header_bytes && why != "no segment header") {
      ::close(fd);
      *error = "event log: " + path + " has " + why;
      return nullptr;
    }
    uint64_t kept_bytes = keep;
    if (idx * seg + n + 1 < opt.synced_end) {  // whole, but segments after it are gone
      ::close(fd);
      *error = "event log: it ends at offset " + std::to_string(idx * seg + n) + " (" + path + ") but events up to " +
               std::to_string(opt.synced_end - 1) + " were synced: segments after it are missing (nothing was changed)";
      return nullptr;
    }
    if (n == seg) {
      // Full: sealed, or sealed now (a crash came between its last chunk and its seal).
      auto sealed = std::make_unique<std::atomic<uint32_t>[]>(groups);
      uint64_t end = 0;
      std::string unsealed;
      kept_bytes = round_up(keep) + seal_bytes(groups);
      if (!read_seal(fd, seg, size, sealed.get(), &end, &unsealed) || end != keep) {
        std::vector<uint8_t> s(seal_bytes(groups));
        put_seal(s.data(), groups, keep, [&](uint64_t g) { return starts[g]; });
        if (::ftruncate(fd, off_t(keep)) != 0 || !pwrite_full(fd, s.data(), s.size(), round_up(keep))) {
          ::close(fd);
          *error = errno_text("cannot seal", path);
          return nullptr;
        }
      }
    } else if (keep < size) {
      if (!all_zero(buf.data() + keep, buf.size() - keep))
        rec->torn_tail = path + " at byte " + std::to_string(keep) + ": " + why + "; " +
                         std::to_string(size - keep) + " bytes after the last whole chunk cut";
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
    bytes += kept_bytes;
    log->next_offset_ = idx * seg + n + 1;
    auto f = log->new_segment_file(idx, error);
    if (!f) return nullptr;
    for (uint64_t g = 0; g < groups; ++g) f->starts[g].store(starts[g], std::memory_order_relaxed);
    f->end.store(keep);
    log->last_ = std::move(f);
    log->last_index_ = idx;
    log->last_end_ = keep;
    if (n == 0 && i > 0) rec->last_lsn = 0;  // found below from the previous segment
  }
  if (indexes.empty() && opt.synced_end > 1) {
    *error = "event log: " + opt.dir + " holds no segment, but events up to offset " +
             std::to_string(opt.synced_end - 1) + " were synced";
    return nullptr;
  }
  // The segments' names durable before their events count as such (a run killed after
  // making its newest segment, before the sync that took the directory with it, left
  // the name to the page cache; a checkpoint may record offsets in it before this run's
  // first sync).
  if (!indexes.empty() && !fsync_dir(opt.dir)) {
    *error = errno_text("cannot sync the directory", opt.dir);
    return nullptr;
  }
  log->first_offset_.store(indexes.empty() ? 1 : indexes.front() * seg + 1);
  log->durable_end_.store(log->next_offset_);
  log->written_end_.store(log->next_offset_);
  log->bytes_.store(bytes);
  // (With 4 KiB pages the TLB misses of the ring's stores took about a sixth of the
  // writer's time.)
  log->ring_ = static_cast<wire::event*>(big_buffer(opt.ring_events * event_bytes, alignof(wire::event)));
  log->ring_mask_ = opt.ring_events - 1;
  log->ring_writing_.store(log->next_offset_);
  log->ring_first_.store(log->next_offset_);
  log->packed_ = static_cast<uint8_t*>(big_buffer(packed_bytes, 64));
  log->packed_slot_mask_ = opt.ring_events / fmt::group_events - 1;
  log->packed_slots_ = std::make_unique<packed_slot[]>(log->packed_slot_mask_ + 1);
  log->tail_ = aligned_bytes(block);
  log->stage_bytes_ = std::max(write_bytes_max, seal_bytes_max);
  log->stage_ = aligned_bytes(log->stage_bytes_);
  if (!log->tail_ || !log->stage_ || !log->ring_ || !log->packed_) {
    *error = "event log: out of memory for its write buffers";
    return nullptr;
  }
  if (rec->last_lsn == 0 && log->next_offset_ > log->first_offset_.load()) {
    // The last segment is empty: the newest event ends the segment before it.
    std::vector<wire::event> one;
    if (log->read(log->next_offset_ - 1, 1, &one, error) != read_status::ok || one.empty()) return nullptr;
    rec->last_lsn = one[0].lsn;
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
  big_buffer_free(ring_, (ring_mask_ + 1) * event_bytes);
  big_buffer_free(packed_, packed_bytes);
}

bool event_log::open_for_append(uint64_t index, std::string* error) {
  const std::string path = segment_path(opt_.dir, index);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = errno_text("cannot open", path);
    return false;
  }
  if (index != last_index_) {
    // A new segment (the one before is full, sealed and synced).
    auto f = new_segment_file(index, error);
    if (!f) {
      ::close(fd);
      return false;
    }
    std::lock_guard lk(mu_);
    if (last_) keep_reader(last_index_, std::move(last_));
    last_ = std::move(f);
    last_index_ = index;
    last_end_ = 0;
  }
  // The partial block the next write starts with, as the file has it.
  std::memset(tail_, 0, block);
  if (last_end_ % block != 0) {
    ssize_t got;
    do got = ::pread(fd, tail_, block, off_t(last_end_ - last_end_ % block));
    while (got < 0 && errno == EINTR);
    if (got < ssize_t(last_end_ % block)) {  // the chunks it holds must all be there
      ::close(fd);
      *error = got < 0 ? errno_text("cannot read the last block of", path)
                       : "event log: " + path + " is shorter than its chunks (" + std::to_string(got) + " bytes of " +
                             std::to_string(last_end_ % block) + " in its last block)";
      return false;
    }
  }
  if (append_fd_ >= 0) ::close(append_fd_);
  append_fd_ = fd;
  append_index_ = index;
  dir_dirty_ = true;
  return true;
}

bool event_log::write_stage(size_t len, uint64_t at, uint64_t index, std::string* error) {
  MESOB_ASSERT(len <= stage_bytes_ && len % block == 0 && at % block == 0);
  if (!pwrite_full(append_fd_, stage_, len, at)) {
    *error = errno_text("cannot write", segment_path(opt_.dir, index));
    return false;
  }
  return true;
}

bool event_log::append(std::span<wire::event> events, std::string* error) {
  const uint64_t seg = opt_.segment_events;
  size_t i = 0;
  while (i < events.size()) {
    const uint64_t o = next_offset_;
    const uint64_t index = (o - 1) / seg, at = (o - 1) % seg;
    if (index != append_index_) {
      if (unsynced_ && !sync(error)) return false;  // the segment before ends whole, sealed
      if (!open_for_append(index, error)) return false;
    }
    const size_t n = size_t(std::min<uint64_t>({events.size() - i, seg - at, write_events_max}));
    // Readers learn that these slots change before they do (a seqlock's write side).
    ring_writing_.store(o + n, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    if (ring_appended_ <= ring_mask_) {  // the first pass: these slots' pages are fresh
      const uint64_t s = (o - 1) & ring_mask_, upto_end = std::min<uint64_t>(n, ring_mask_ + 1 - s);
      populate_pages(ring_ + s, upto_end * event_bytes);
      populate_pages(ring_, std::min<uint64_t>(n - upto_end, s) * event_bytes);  // past the end: from slot 0
    }
    ring_appended_ += n;
    for (size_t k = 0; k < n; ++k) {
      wire::event& e = events[i + k];
      e.offset = o + k;
      e.crc = event_crc(e);
      ring_[(o + k - 1) & ring_mask_] = e;
    }
    // One aligned write: the partial block so far (the same bytes again), the new chunks
    // (after the segment's header, if it is new), zeros to the block end.
    const uint64_t floor = last_end_ - last_end_ % block;
    size_t len = size_t(last_end_ - floor);
    std::memcpy(stage_, tail_, len);
    if (last_end_ == 0) {
      put_segment_header(stage_, seg, index);
      len = fmt::segment_header_bytes;
    }
    for (size_t k = 0; k < n;) {
      const uint64_t in_seg = at + k;
      const size_t m = size_t(std::min<uint64_t>(n - k, fmt::group_events - in_seg % fmt::group_events));
      const size_t bytes = put_chunk(stage_ + len, {events.data() + i + k, m}, pack_);
      if (in_seg % fmt::group_events == 0) {
        last_->starts[in_seg / fmt::group_events].store(uint32_t(floor + len), std::memory_order_relaxed);
        if (m == fmt::group_events) keep_packed((o + k - 1) / fmt::group_events, pack_);
      } else if ((in_seg + m) % fmt::group_events == 0) {
        keep_completed_group(o + k, events.subspan(i + k, m));
      }
      len += bytes;
      k += m;
    }
    const size_t padded = size_t(round_up(len));
    std::memset(stage_ + len, 0, padded - len);
    if (!write_stage(padded, floor, index, error)) return false;
    std::memset(tail_, 0, block);
    std::memcpy(tail_, stage_ + (len - len % block), len % block);
    bytes_.fetch_add(floor + len - last_end_, std::memory_order_relaxed);
    last_end_ = floor + len;
    last_->end.store(last_end_, std::memory_order_release);
    unsynced_ = true;
    next_offset_ += n;
    if (at + n == seg && !seal(error)) return false;
    written_end_.store(next_offset_, std::memory_order_release);
    i += n;
  }
  return true;
}

void event_log::keep_completed_group(uint64_t from, std::span<const wire::event> rest) {
  const uint64_t first = from - (from - 1) % fmt::group_events;  // the group's first offset
  if (first < ring_first_.load(std::memory_order_relaxed)) return;  // its start came before this run
  std::array<wire::event, fmt::group_events> group;
  const size_t before = size_t(from - first);
  for (size_t j = 0; j < before; ++j) {
    group[j] = ring_[(first + j - 1) & ring_mask_];
    // This append's events went to the ring first: with a ring smaller than an append
    // and the group's start, they took the slots of the group's first part.
    if (group[j].offset != first + j) return;
  }
  std::copy(rest.begin(), rest.end(), group.begin() + before);
  whole_group_pack_.clear();
  wire::pack_events(group, whole_group_pack_);
  keep_packed((first - 1) / fmt::group_events, whole_group_pack_);
}

void event_log::keep_packed(uint64_t group, const std::vector<uint8_t>& body) {
  const uint64_t at = packed_end_, mask = packed_bytes - 1;
  if (at + body.size() > packed_backed_ && packed_backed_ < packed_bytes) {
    constexpr uint64_t step = 256 << 10;
    const uint64_t to = std::min(packed_bytes, std::max<uint64_t>(at + body.size(), packed_backed_ + step));
    populate_pages(packed_ + packed_backed_, to - packed_backed_);
    packed_backed_ = to;
  }
  packed_writing_.store(at + body.size(), std::memory_order_relaxed);
  packed_slot& slot = packed_slots_[group & packed_slot_mask_];
  slot.group.store(UINT64_MAX, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  const size_t first = std::min<size_t>(body.size(), size_t(packed_bytes - (at & mask)));
  std::memcpy(packed_ + (at & mask), body.data(), first);
  std::memcpy(packed_, body.data() + first, body.size() - first);
  slot.at.store(at, std::memory_order_relaxed);
  slot.len.store(uint32_t(body.size()), std::memory_order_relaxed);
  slot.group.store(group, std::memory_order_release);
  packed_end_ = at + body.size();
}

size_t event_log::read_packed(uint64_t from, size_t max, std::vector<uint8_t>& out) const {
  // Offsets retention dropped are refused by read(), not served from memory.
  if (from < first_offset() || (from - 1) % fmt::group_events != 0) return 0;
  const uint64_t end = written_end(), mask = packed_bytes - 1;
  size_t n = 0;
  while (n + fmt::group_events <= max && from + n + fmt::group_events <= end) {
    const uint64_t group = (from + n - 1) / fmt::group_events;
    const packed_slot& slot = packed_slots_[group & packed_slot_mask_];
    if (slot.group.load(std::memory_order_acquire) != group) break;
    const uint64_t at = slot.at.load(std::memory_order_relaxed);
    const uint32_t len = slot.len.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (slot.group.load(std::memory_order_relaxed) != group ||
        packed_writing_.load(std::memory_order_acquire) > at + packed_bytes)
      break;
    const size_t before = out.size(), first = std::min<size_t>(len, size_t(packed_bytes - (at & mask)));
    out.resize(before + len);
    std::memcpy(out.data() + before, packed_ + (at & mask), first);
    std::memcpy(out.data() + before + first, packed_, len - first);
    // Good unless the writer reached these bytes meanwhile.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (packed_writing_.load(std::memory_order_relaxed) > at + packed_bytes) {
      out.resize(before);
      break;
    }
    n += fmt::group_events;
  }
  return n;
}

bool event_log::seal(std::string* error) {
  const uint64_t groups = opt_.segment_events / fmt::group_events;
  const size_t len = seal_bytes(groups);
  put_seal(stage_, groups, last_end_, [&](uint64_t g) { return last_->starts[g].load(std::memory_order_relaxed); });
  const uint64_t at = round_up(last_end_);
  if (!write_stage(len, at, last_index_, error)) return false;
  bytes_.fetch_add(at + len - last_end_, std::memory_order_relaxed);
  return true;
}

bool event_log::sync(std::string* error) {
  if (const int e = failure_probes::instance().event_sync_errno.exchange(0); e != 0) {
    *error = std::string("event log: fdatasync failed: ") + std::strerror(e);
    return false;
  }
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

size_t event_log::apply_retention(size_t max) {
  if (opt_.retention_bytes == 0 && opt_.retention_ns == 0) return 0;
  const uint64_t seg = opt_.segment_events;
  size_t dropped = 0;
  // Oldest first, each removal durable before the next: a power cut never leaves a
  // segment whose later neighbour is gone (a gap, which open refuses).
  // A segment out of the log whose file could not be removed stays on the disk (its
  // events are whole: a start would take them back): none after it goes until it does,
  // so the directory never holds a segment whose later neighbour is gone.
  if (!removal_failed_.empty()) {
    if (!remove_segment_file(removal_failed_)) return 0;
    removal_failed_.clear();
    bytes_.fetch_sub(std::min(bytes_.load(), removal_failed_bytes_));
    removal_unsynced_ = true;
  }
  if (removal_unsynced_) {
    if (!fsync_dir(opt_.dir)) return 0;
    removal_unsynced_ = false;
  }
  while (dropped < max) {
    const uint64_t first = first_offset_.load();
    const uint64_t index = (first - 1) / seg;
    const uint64_t durable = durable_end_.load();
    // Only a full segment wholly durable, and never the one holding the newest event (the
    // directory then always says where offsets continue).
    if (next_offset_ < 2 || (index + 1) * seg + 1 > durable || index >= (next_offset_ - 2) / seg) break;
    // Nor one holding events of the newest durable event's record: after a crash,
    // recovery cuts the newest record's events back to its first and replay writes them
    // again from there (newest_run_from), so that run must start within the kept
    // segments, or its events would come back at other offsets.
    std::vector<wire::event> last, newest;
    std::string err;
    if (read((index + 1) * seg, 1, &last, &err) != read_status::ok || last.empty() ||
        read(durable - 1, 1, &newest, &err) != read_status::ok || newest.empty()) {
      // Damage or an I/O error: nothing is dropped until it reads, and the log grows past
      // its limit meanwhile. Said, or the operator would learn of it at the next start.
      if (err.empty()) err = "the last event of segment " + std::to_string(index) + ", or the newest durable one, reads as none";
      if (err != retention_error_)
        std::fprintf(stderr, "mesobd: event log retention stopped (nothing is dropped until it reads): %s\n",
                     err.c_str());
      retention_error_ = std::move(err);
      break;
    }
    retention_error_.clear();
    if (last[0].lsn >= newest[0].lsn) break;
    bool drop = opt_.retention_bytes != 0 && bytes_.load() > opt_.retention_bytes;
    if (!drop && opt_.retention_ns != 0) drop = last[0].timestamp + opt_.retention_ns < newest[0].timestamp;
    if (!drop) break;
    const std::string path = segment_path(opt_.dir, index);
    struct stat st {};
    const uint64_t size = ::stat(path.c_str(), &st) == 0 ? uint64_t(st.st_size) : 0;
    {
      std::lock_guard lk(mu_);
      first_offset_.store((index + 1) * seg + 1, std::memory_order_release);
      readers_.erase(index);
    }
    ++dropped;
    if (!remove_segment_file(path)) {
      removal_failed_ = path;  // (out of the log all the same: first_offset_ moved)
      removal_failed_bytes_ = size;
      break;
    }
    bytes_.fetch_sub(std::min(bytes_.load(), size));
    if (!fsync_dir(opt_.dir)) {
      std::fprintf(stderr, "mesobd: %s\n",
                   errno_text("cannot sync the directory after removing", path).c_str());
      removal_unsynced_ = true;
      break;
    }
  }
  return dropped;
}

// Removes a segment's file: false (said on stderr) if it is still there.
bool event_log::remove_segment_file(const std::string& path) {
  int why = 0;
  if (auto& probe = failure_probes::instance().event_unlink_failures;
      probe.load(std::memory_order_relaxed) > 0 && probe.fetch_sub(1) > 0)
    why = EIO;
  else if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    why = errno;
  if (why == 0) return true;
  errno = why;
  std::fprintf(stderr, "mesobd: %s; trying again at the next retention pass\n",
               errno_text("cannot remove the event log segment", path).c_str());
  return false;
}

uint64_t event_log::files_bytes() const {
  const uint64_t seg = opt_.segment_events;
  uint64_t sum = 0;
  for (uint64_t index = (first_offset_.load() - 1) / seg; index <= (next_offset_ - 1) / seg; ++index) {
    struct stat st {};
    if (::stat(segment_path(opt_.dir, index).c_str(), &st) == 0) sum += uint64_t(st.st_size);
  }
  return sum;
}

bool event_log::newest_run_from(uint64_t lsn, uint64_t* at, std::string* error) {
  // The first offset of the run of events with lsn >= `lsn` at the end of the log.
  uint64_t o = next_offset_;
  std::vector<wire::event> part;
  while (o > first_offset()) {
    const uint64_t from = std::max(first_offset(), o > 4096 ? o - 4096 : 1);
    if (read(from, o - from, &part, error) != read_status::ok || part.size() != o - from) {
      if (error->empty()) *error = "event log: cannot read events " + std::to_string(from) + ".." + std::to_string(o);
      return false;
    }
    size_t k = part.size();
    while (k > 0 && part[k - 1].lsn >= lsn) --k;
    o = from + k;
    if (k > 0) break;
  }
  *at = o;
  return true;
}

bool event_log::cut_back_to(uint64_t end, std::string* error) {
  if (end >= next_offset_) return true;
  if (end < first_offset()) {
    *error = "event log: cannot cut back to offset " + std::to_string(end) + ", before the oldest kept (" +
             std::to_string(first_offset()) + ")";
    return false;
  }
  const uint64_t seg = opt_.segment_events;
  const uint64_t keep_index = (end - 1) / seg, g = ((end - 1) % seg) / fmt::group_events;
  const std::string path = segment_path(opt_.dir, keep_index);
  // The chunk holding `end`: the segment is replaced by its bytes before that chunk and a
  // chunk of the events of it before `end`.
  auto f = reader_fd(keep_index, error);
  if (!f) return false;
  const uint64_t groups = seg / fmt::group_events, group_first = keep_index * seg + g * fmt::group_events + 1;
  const uint64_t pos0 = f->starts[g].load(std::memory_order_acquire);
  const uint64_t pos1 = g + 1 < groups && group_first + fmt::group_events < next_offset_
                            ? f->starts[g + 1].load(std::memory_order_acquire)
                            : f->end.load(std::memory_order_acquire);
  uint64_t cut_at = 0, cut_first = 0, next = 0;
  std::string why;
  if (!read_chunks(f->fd, pos0, pos1, group_first, seg, [&](std::span<const wire::event> ev, uint64_t pos) {
        if (ev.front().offset <= end && end < ev.front().offset + ev.size()) cut_at = pos, cut_first = ev.front().offset;
      }, &next, &why) || cut_at == 0) {
    *error = "event log: " + path + ": " + (why.empty() ? "no chunk holds offset " + std::to_string(end) : why);
    return false;
  }
  std::vector<wire::event> again;
  if (cut_first < end && (read(cut_first, end - cut_first, &again, error) != read_status::ok ||
                          again.size() != end - cut_first))
    return false;
  // The segments after it go first (and the directory is synced): a crash then leaves this
  // one whole as the last, and the next start cuts again. From here the open segment may
  // change under the writer: it opens it again at its next append.
  if (append_fd_ >= 0) ::close(append_fd_);
  append_fd_ = -1;
  append_index_ = UINT64_MAX;
  for (uint64_t index = (next_offset_ - 1) / seg; index > keep_index; --index) {
    {
      std::lock_guard lk(mu_);
      readers_.erase(index);
      ++readers_changed_;
      if (last_index_ == index) last_.reset(), last_index_ = UINT64_MAX;
    }
    if (::unlink(segment_path(opt_.dir, index).c_str()) != 0 && errno != ENOENT) {
      *error = errno_text("cannot remove", segment_path(opt_.dir, index));
      return false;
    }
  }
  if (!fsync_dir(opt_.dir)) {
    *error = "event log: cannot sync the directory " + opt_.dir;
    return false;
  }
  if (failure_probes::instance().event_cut_stop.exchange(false)) {
    *error = "event log: cut stopped by a failure probe";
    return false;
  }
  // The replacement, written whole and synced beside it, then renamed over it: the events
  // before `end` are on the disk at every moment.
  std::vector<uint8_t> bytes(cut_at + (again.empty() ? 0 : fmt::chunk_header_bytes + wire::packed_block_overhead_max +
                                                               again.size() * event_bytes));
  const int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const bool read_ok = in >= 0 && pread_full(in, bytes.data(), cut_at, 0);
  if (in >= 0) ::close(in);
  if (!read_ok) {
    *error = errno_text("cannot read", path);
    return false;
  }
  const uint64_t new_end = cut_at + (again.empty() ? 0 : put_chunk(bytes.data() + cut_at, again, pack_));
  const std::string aside = path + ".cut";
  const int out = ::open(aside.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const bool written = out >= 0 && pwrite_full(out, bytes.data(), new_end, 0) && ::fdatasync(out) == 0;
  if (out >= 0) ::close(out);
  if (!written || ::rename(aside.c_str(), path.c_str()) != 0 || !fsync_dir(opt_.dir)) {
    *error = errno_text("cannot replace", path);
    return false;
  }
  auto cut_file = new_segment_file(keep_index, error);
  if (!cut_file) return false;
  for (uint64_t k = 0; k <= g; ++k) {
    const uint32_t at = f->starts[k].load(std::memory_order_relaxed);
    cut_file->starts[k].store(at < cut_at ? at : 0, std::memory_order_relaxed);
  }
  if (cut_first == group_first && !again.empty()) cut_file->starts[g].store(uint32_t(cut_at), std::memory_order_relaxed);
  cut_file->end.store(new_end);
  {
    std::lock_guard lk(mu_);
    readers_.erase(keep_index);
    ++readers_changed_;
    last_ = std::move(cut_file);
    last_index_ = keep_index;
  }
  last_end_ = new_end;
  next_offset_ = end;
  durable_end_.store(end, std::memory_order_release);
  written_end_.store(end, std::memory_order_release);
  ring_writing_.store(end);
  ring_first_.store(end);
  for (uint64_t k = 0; k <= packed_slot_mask_; ++k) packed_slots_[k].group.store(UINT64_MAX, std::memory_order_release);
  // The open segment was replaced: the next append opens it again and reads its last block.
  if (append_fd_ >= 0) ::close(append_fd_);
  append_fd_ = -1;
  unsynced_ = false;
  append_index_ = UINT64_MAX;
  bytes_.store(files_bytes());
  return true;
}

void event_log::keep_reader(uint64_t index, std::shared_ptr<segment_file> f) {
  while (readers_.size() >= readers_max) {
    auto oldest = readers_.begin();
    for (auto it = readers_.begin(); it != readers_.end(); ++it)
      if (it->second.used < oldest->second.used) oldest = it;
    readers_.erase(oldest);
  }
  readers_[index] = {std::move(f), ++reader_use_};
}

std::shared_ptr<event_log::segment_file> event_log::reader_fd(uint64_t index, std::string* error) {
  for (int attempt = 0;; ++attempt) {
    uint64_t changed = 0;
    {
      std::lock_guard lk(mu_);
      if (last_ && index == last_index_) return last_;
      if (auto it = readers_.find(index); it != readers_.end()) {
        it->second.used = ++reader_use_;
        return it->second.file;
      }
      if (index < (first_offset_.load() - 1) / opt_.segment_events) return nullptr;
      changed = readers_changed_;
    }
    // A full segment: where its groups start, from its seal. Opened and read outside mu_,
    // which the writer takes at each new segment: a reader waiting for the disk here must
    // not hold up the appends.
    if (const int stall = failure_probes::instance().event_reader_open_stall_ms.exchange(0); stall > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(stall));
    segments_opened_.fetch_add(1, std::memory_order_relaxed);
    auto f = new_segment_file(index, error);
    if (!f) return nullptr;
    struct stat st {};
    uint64_t end = 0;
    std::string why = "cannot stat it";
    if (::fstat(f->fd, &st) != 0 ||
        !read_seal(f->fd, opt_.segment_events, uint64_t(st.st_size), f->starts.get(), &end, &why)) {
      *error = "event log: " + segment_path(opt_.dir, index) + ": " + why;
      return nullptr;
    }
    f->end.store(end);
    std::lock_guard lk(mu_);
    // Dropped by retention meanwhile: the read is refused (truncated) as it would have been.
    if (index < (first_offset_.load() - 1) / opt_.segment_events) return nullptr;
    if (readers_changed_ != changed) {
      // A cut removed or replaced segments meanwhile: look again.
      if (attempt < 2) continue;
      return f;  // (not kept)
    }
    if (auto it = readers_.find(index); it != readers_.end()) {  // another reader opened it meanwhile
      it->second.used = ++reader_use_;
      return it->second.file;
    }
    keep_reader(index, f);
    return f;
  }
}

event_log::read_status event_log::read(uint64_t from, size_t max, std::vector<wire::event>* out, std::string* error) {
  const uint64_t end = written_end();
  out->resize(size_t(from == 0 || end <= from ? 0 : std::min<uint64_t>(max, end - from)));
  size_t n = 0;
  const read_status st = read(from, out->size(), out->data(), &n, error);
  out->resize(n);
  return st;
}

event_log::read_status event_log::read(uint64_t from, size_t max, wire::event* out, size_t* n, std::string* error,
                                       bool* from_files) {
  *n = 0;
  if (from_files) *from_files = false;
  const uint64_t end = written_end();
  if (from == 0) from = 1;
  if (from < first_offset()) return read_status::truncated;
  if (from >= end || max == 0) return read_status::ok;
  const uint64_t to = std::min<uint64_t>(end, from + max);
  // From memory when the newest events are asked for, else from the files; each event's
  // offset and checksum are checked either way (in memory, against a copy torn by the
  // writer reusing its slot; from the files, as each chunk is unpacked).
  if (!read_ring(from, to, out)) {
    if (from_files) *from_files = true;
    if (!read_files(from, to, end, out, error))
      return from < first_offset() ? read_status::truncated : read_status::failed;
  } else {
    for (uint64_t o = from; o < to; ++o) {
      const wire::event& e = out[o - from];
      if (e.offset != o || e.crc != event_crc(e)) {
        *error = "event log: event " + std::to_string(o) + " fails its checks (offset " + std::to_string(e.offset) +
                 ", checksum " + (e.crc == event_crc(e) ? "good" : "bad") + ")";
        return read_status::failed;
      }
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

bool event_log::read_files(uint64_t from, uint64_t to, uint64_t visible, wire::event* out, std::string* error) {
  const uint64_t seg = opt_.segment_events, groups = seg / fmt::group_events;
  uint64_t o = from;
  while (o < to) {
    const uint64_t index = (o - 1) / seg, at = (o - 1) % seg;
    auto f = reader_fd(index, error);
    if (!f) return false;
    const uint64_t base = index * seg, seg_to = std::min(to, base + seg + 1);
    const uint64_t g0 = at / fmt::group_events, g_last = (seg_to - 2 - base) / fmt::group_events;
    // Where group g starts, or where the chunks end (g past the last or not visible yet).
    auto start = [&](uint64_t g) -> uint64_t {
      return g < groups && base + g * fmt::group_events + 1 < visible ? f->starts[g].load(std::memory_order_acquire)
                                                                      : f->end.load(std::memory_order_acquire);
    };
    // Whole groups, about read_bytes_max at most (one group at least).
    const uint64_t pos0 = start(g0);
    uint64_t g1 = g0 + 1;
    while (g1 <= g_last && start(g1 + 1) - pos0 <= read_bytes_max) ++g1;
    std::string why;
    uint64_t next = 0;
    const uint64_t upto = std::min(seg_to, base + g1 * fmt::group_events + 1);
    if (!read_chunks(f->fd, pos0, start(g1), base + g0 * fmt::group_events + 1, seg,
                     [&](std::span<const wire::event> ev, uint64_t) {
                       for (const auto& e : ev)
                         if (e.offset >= o && e.offset < seg_to) out[e.offset - from] = e;
                     },
                     &next, &why)) {
      *error = "event log: " + segment_path(opt_.dir, index) + " " + why;
      return false;
    }
    // The chunks read must reach the next group (a seal could say otherwise).
    if (next < upto) {
      *error = "event log: " + segment_path(opt_.dir, index) + ": its chunks from byte " + std::to_string(pos0) +
               " end at offset " + std::to_string(next) + ", before " + std::to_string(upto);
      return false;
    }
    o = upto;
  }
  return true;
}

}  // namespace mesob::storage
