#include "storage/wal.hpp"

#include "storage/file_io.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>

#include "storage/failure_probes.hpp"
#include "wire/assert.hpp"
#include "wire/steady_ns.hpp"

namespace mesob::storage {

namespace {
bool read_segment_header(const std::string& path, bool direct, segment_header* out);
}  // namespace

namespace {

// Completion user data: a flight's id times 4 plus the kind; the wake read is kind 3.
constexpr uint64_t tag_write = 1;
constexpr uint64_t tag_fsync = 2;
constexpr uint64_t tag_wake = 3;

uint64_t round_up(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

std::string errno_text(int e) { return std::strerror(e); }

uint32_t segment_header_crc(segment_header h) {
  h.header_crc = 0;
  return crc32c(&h, sizeof h);
}

uint32_t record_header_crc(const record_header& h) {
  auto p = reinterpret_cast<const uint8_t*>(&h);
  return crc32c(p + 8, sizeof h - 8);
}

// A record's chain hash: the previous one, the chained header bytes (with unacked_back
// as zero: it is set at submit, after the hash) and the payload.
chain_hash record_chain(const chain_hash& prev, const record_header& h, const uint8_t* payload) {
  record_header hashed = h;
  hashed.unacked_back = 0;
  chain_hasher hasher;
  hasher.update(prev.data(), prev.size());
  hasher.update(reinterpret_cast<const uint8_t*>(&hashed) + record_chained_bytes_begin,
                record_chained_bytes_end - record_chained_bytes_begin);
  hasher.update(payload, h.payload_bytes);
  return hasher.finish();
}

}  // namespace

bool fsync_dir(const std::string& dir) {
  if (auto& probe = failure_probes::instance().dir_sync_failures;
      probe.load(std::memory_order_relaxed) > 0 && probe.fetch_sub(1) > 0) {
    errno = EIO;
    return false;
  }
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  const int why = errno;
  ::close(fd);
  errno = why;  // (fsync's, not close's)
  return ok;
}

bool replace_file(const std::string& path, std::string_view text, std::string* error) {
  const std::string tmp = path + ".new";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && pwrite_full(fd, text.data(), text.size(), 0) && ::fdatasync(fd) == 0;
  int why = ok ? 0 : errno;  // (close may set errno)
  if (fd >= 0) ::close(fd);
  const std::string dir = path.substr(0, path.rfind('/'));
  if (ok && !(::rename(tmp.c_str(), path.c_str()) == 0 && fsync_dir(dir.empty() ? "." : dir))) {
    ok = false;
    why = errno;
  }
  if (!ok) *error = "cannot write " + path + ": " + std::strerror(why);
  return ok;
}

failure_probes& failure_probes::instance() {
  static failure_probes p;
  return p;
}

std::string segment_path(const std::string& dir, uint64_t index) {
  char name[64];
  std::snprintf(name, sizeof name, "/wal-%016llx.log", static_cast<unsigned long long>(index));
  return dir + name;
}

std::vector<std::pair<uint64_t, std::string>> list_segments(const std::string& dir, std::string* error) {
  std::vector<std::pair<uint64_t, std::string>> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (errno != ENOENT && error) *error = "wal: cannot list " + dir + ": " + errno_text(errno);
    return out;
  }
  for (;;) {
    errno = 0;
    const auto* e = ::readdir(d);
    if (!e) {
      // An error reading the directory would look like a shorter log, whose next
      // segment the writer would then create over one that holds records.
      if (errno != 0 && error) {
        *error = "wal: cannot list " + dir + ": " + errno_text(errno);
        out.clear();
      }
      break;
    }
    // A segment's name exactly as segment_path() writes it: 16 lower-case hex digits.
    // (strtoull alone took a sign, spaces, "0x" and upper case: a stray copy named
    // wal-000000000000000A.log was a second segment 10, and wal--000000000000001.log
    // segment 2^64 - 1, which a start could remove as unused.)
    std::string n = e->d_name;
    if (n.size() != 24 || n.rfind("wal-", 0) != 0 || n.substr(20) != ".log" ||
        !std::all_of(n.begin() + 4, n.begin() + 20, [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
      continue;
    out.emplace_back(std::strtoull(n.c_str() + 4, nullptr, 16), dir + "/" + n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// ---------------------------------------------------------------------------------
// wal_writer

uint64_t wal_writer::record_bytes(uint64_t payload_bytes) {
  return round_up(sizeof(record_header) + payload_bytes, record_align);
}

uint64_t wal_writer::record_payload_bytes_max() const {
  // A record must fit in a group together with a segment header block.
  return opt_.group_bytes_max - wal_block_bytes - sizeof(record_header);
}

std::unique_ptr<wal_writer> wal_writer::open(const wal_options& opt, const wal_position& pos,
                                             int wake_fd, std::string* error) {
  if (opt.group_bytes_max % wal_block_bytes != 0 || opt.segment_bytes % wal_block_bytes != 0 ||
      opt.group_bytes_max < 2 * wal_block_bytes ||
      opt.segment_bytes < opt.group_bytes_max + wal_block_bytes) {
    *error = "wal: segment_bytes and group_bytes_max must be multiples of 4096 and "
             "segment_bytes >= group_bytes_max + 4096";
    return nullptr;
  }
  if (opt.flights_max < 1 || opt.flights_max > wal_flights_limit) {
    *error = "wal: groups in flight must be 1 .. " + std::to_string(wal_flights_limit) + ", not " +
             std::to_string(opt.flights_max);
    return nullptr;
  }
  std::unique_ptr<wal_writer> w(new wal_writer());
  w->opt_ = opt;
  w->wake_fd_ = wake_fd;
  w->next_lsn_ = pos.next_lsn;
  w->durable_lsn_ = pos.next_lsn - 1;
  w->chain_ = pos.chain;
  w->durable_chain_ = pos.chain;
  w->segment_index_ = pos.next_segment_index;

  if (int rc = io_uring_queue_init(4 * opt.flights_max + 8, &w->ring_, 0); rc < 0) {
    *error = "wal: io_uring_queue_init failed: " + errno_text(-rc);
    return nullptr;
  }
  w->ring_ok_ = true;
  io_uring_probe* probe = io_uring_get_probe_ring(&w->ring_);
  if (!probe) {
    *error = "wal: io_uring probe unavailable";
    return nullptr;
  }
  const bool ops_ok = io_uring_opcode_supported(probe, IORING_OP_WRITE) &&
                      io_uring_opcode_supported(probe, IORING_OP_FSYNC) &&
                      io_uring_opcode_supported(probe, IORING_OP_READ);
  io_uring_free_probe(probe);
  if (!ops_ok) {
    *error = "wal: the kernel's io_uring lacks WRITE, FSYNC or READ";
    return nullptr;
  }
  for (uint32_t i = 0; i <= opt.flights_max; ++i) {
    auto* b = static_cast<uint8_t*>(std::aligned_alloc(wal_block_bytes, opt.group_bytes_max));
    if (b == nullptr) {
      *error = "wal: out of memory for its " + std::to_string(opt.flights_max + 1) + " group buffers of " +
               std::to_string(opt.group_bytes_max >> 20) + " MiB";
      return nullptr;  // (the buffers taken so far go with the writer)
    }
    std::memset(b, 0, opt.group_bytes_max);
    w->buf_.push_back(b);
    if (i > 0) w->free_bufs_.push_back(i);
  }
  w->open_buf_ = 0;
  std::string list_err;
  const auto listed = list_segments(opt.dir, &list_err);
  if (!list_err.empty()) {
    *error = list_err;
    return nullptr;
  }
  for (auto& [idx, path] : listed) {
    if (idx >= pos.next_segment_index) continue;
    // Its checksum too, not the magic alone: a damaged first lsn would drop the segment
    // before it early (a small one) or hold every later drop (a large one). The segments
    // recovery read were checked by its scan; one that fails here is a leftover before
    // the snapshot (recovery skips it), left in place out of the drops.
    segment_header h{};
    if (read_segment_header(path, false, &h) && h.segment_index == idx) {
      const uint64_t bytes = h.segment_bytes != 0 ? h.segment_bytes : opt.segment_bytes;  // 0: an older format's
      w->segments_.push_back({idx, h.first_lsn, bytes});
      w->kept_bytes_ += bytes;
    }
  }
  // Segments a crash left half deleted: out of the log's names already.
  if (DIR* dd = ::opendir(opt.dir.c_str())) {
    while (auto* e = ::readdir(dd)) {
      const std::string n = e->d_name;
      struct stat st {};
      const std::string path = opt.dir + "/" + n;
      if (n.ends_with(dropped_suffix) && n.starts_with("wal-") &&
          ::stat(path.c_str(), &st) == 0)
        // Its rename may not have been durable (a sync that failed, then a crash):
        // synced before it is cut.
        w->unlink_queue_.push_back({path, uint64_t(st.st_size), true, true});
    }
    ::closedir(dd);
  }
  w->preparer_ = std::thread([p = w.get()] {
    pthread_setname_np(pthread_self(), "mesob.walprep");
    p->prepare_loop();
  });
  if (!w->open_next_segment(error)) return nullptr;
  return w;
}

wal_writer::~wal_writer() {
  drain();
  {
    std::lock_guard lk(prep_mu_);
    prep_stop_ = true;
  }
  prep_cv_.notify_all();
  if (preparer_.joinable()) preparer_.join();
  if (fd_ >= 0) ::close(fd_);
  for (auto* b : buf_) std::free(b);
  if (ring_ok_) io_uring_queue_exit(&ring_);
}

// Pre-zeroes the next segment in the background. The zeros go out with O_DIRECT in 256 KiB
// writes, one at a time: buffered zeros left 64 MiB of dirty pages for one fdatasync,
// and the log's own fdatasyncs queued behind that flood (single-transfer requests saw
// 20-40 ms stalls every segment, perf/RESULTS.md). Now a log write waits behind at most
// one 256 KiB write.
void wal_writer::prepare_loop() {
  constexpr uint64_t unlink_step_bytes = 4 << 20;
  constexpr int unlink_step_pause_ms = 10;
  constexpr size_t unlink_behind_max = 16;
  constexpr size_t chunk = 256 << 10;
  void* zmem = nullptr;
  MESOB_ASSERT(::posix_memalign(&zmem, wal_block_bytes, chunk) == 0);
  std::memset(zmem, 0, chunk);
  const std::unique_ptr<void, decltype(&std::free)> zeros(zmem, &std::free);
  std::unique_lock lk(prep_mu_);
  for (;;) {
    prep_cv_.wait(lk, [&] {
      return prep_stop_ || prep_request_.has_value() || (!unlink_queue_.empty() && drops_held_ == 0);
    });
    if (!prep_request_.has_value() || prep_stop_) {  // a segment the writer may wait for goes first
      if (unlink_queue_.empty()) return;  // stopping, with every dropped segment deleted
      // Dropped segments are out of the log already. The first step renames one out of
      // the log's names, so a crash never leaves a cut-down segment where a scan looks;
      // one a crash leaves whole is dropped again after the next checkpoint, and a
      // renamed one is deleted when the log is next opened. Stopping deletes at once.
      dropped_segment& d = unlink_queue_.front();
      const bool rename_step = !d.renamed && !prep_stop_;
      // A rename whose directory sync failed: synced again before any cut.
      const bool sync_step = d.renamed && d.rename_unsynced && !prep_stop_;
      const bool last_step = !rename_step && !sync_step && (prep_stop_ || d.bytes <= unlink_step_bytes);
      const std::string path = d.path;
      const uint64_t left = rename_step || sync_step ? d.bytes : last_step ? 0 : d.bytes - unlink_step_bytes;
      uint64_t left_on_disk = left;
      const bool tell = rename_step && d.failures == 0;
      if (last_step) {
        unlink_queue_.pop_front();
      } else {
        d.bytes = left;
      }
      unlinking_ = true;
      lk.unlock();
      // The directory sync that makes a rename durable (a probe can fail it).
      auto sync_rename = [&] {
        auto& probe = failure_probes::instance().drop_sync_failures;
        if (probe.load(std::memory_order_relaxed) > 0 && probe.fetch_sub(1) > 0) {
          errno = EIO;
          return false;
        }
        return fsync_dir(opt_.dir);
      };
      bool moved = false, synced = true;
      int rename_errno = 0;
      if (rename_step) {
        // Renamed and the rename made durable before the first cut: a crash must not
        // bring back a cut-down segment under its log name.
        struct stat st {};
        const std::string aside = path + std::string(dropped_suffix);
        auto& probes = failure_probes::instance();
        const bool probed = probes.drop_rename_failures.load(std::memory_order_relaxed) > 0 &&
                            probes.drop_rename_failures.fetch_sub(1) > 0;
        if (probed) errno = EIO;
        if (probed || ::rename(path.c_str(), aside.c_str()) != 0) {
          rename_errno = errno;
          if (tell && rename_errno != ENOENT)
            std::fprintf(stderr, "mesobd: wal: cannot move dropped segment %s aside: %s (tried again each second)\n",
                         path.c_str(), errno_text(rename_errno).c_str());
        } else {
          moved = true;
          if (::stat(aside.c_str(), &st) == 0) left_on_disk = uint64_t(st.st_size);
          synced = sync_rename();
        }
      } else if (sync_step) {
        synced = sync_rename();
      } else if (last_step) {
        ::unlink(path.c_str());
      } else if (const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC); fd >= 0) {
        [[maybe_unused]] const int rc = ::ftruncate(fd, off_t(left));
        ::close(fd);
      }
      const int sync_errno = synced ? 0 : errno;
      lk.lock();
      unlinking_ = false;
      int pause_ms = unlink_step_pause_ms;
      if (rename_step) {
        dropped_segment& head = unlink_queue_.front();
        if (moved) {
          head.path += dropped_suffix;
          head.renamed = true;
          head.bytes = left_on_disk;  // what the file holds (an older size?)
        } else if (rename_errno == ENOENT || ++head.failures >= drop_tries_max) {
          // Gone already (removed by hand), or it will not move: given up on, left under
          // its name. Recovery's scan starts past the segments the snapshot covers, so a
          // leftover (and a gap before later ones) is no damage; the writer's next start
          // drops it again. Later drops are not held behind it: the disk's space first.
          if (rename_errno != ENOENT)
            std::fprintf(stderr, "mesobd: wal: dropped segment %s left in place after %u tries (dropped again at the next start)\n",
                         head.path.c_str(), unsigned(head.failures));
          unlink_queue_.pop_front();
        } else {
          // Tried again first, so that drops go in order while they can.
          pause_ms = 1000;
        }
      }
      if ((rename_step && moved) || sync_step) {
        // No cut before the rename is durable: a crash could bring the cut-down segment
        // back under its log name. Synced again each second, the drops behind it waiting.
        dropped_segment& head = unlink_queue_.front();
        if (!synced && !head.rename_unsynced)
          std::fprintf(stderr, "mesobd: wal: cannot sync %s after moving a dropped segment aside as %s: %s (tried again each second before it is cut)\n",
                       opt_.dir.c_str(), head.path.c_str(), errno_text(sync_errno).c_str());
        head.rename_unsynced = !synced;
        if (!synced) pause_ms = 1000;
      }
      prep_cv_.notify_all();
      // The pause between steps; a pre-zeroing request or stop ends it. Far behind (more
      // than unlink_behind_max segments waiting), or with the writer waiting for the space,
      // no pause: the disk's space comes first.
      const bool behind = unlink_queue_.size() > unlink_behind_max || drops_wanted_.load(std::memory_order_relaxed);
      if (!last_step && (!behind || pause_ms > unlink_step_pause_ms))
        prep_cv_.wait_for(lk, std::chrono::milliseconds(pause_ms),
                          [&] { return prep_stop_ || prep_request_.has_value(); });
      continue;
    }
    const uint64_t idx = *prep_request_;
    prep_request_.reset();
    prep_busy_ = idx;
    const bool drops_waiting = !unlink_queue_.empty() || unlinking_;
    lk.unlock();
    std::string err;
    const auto path = segment_path(opt_.dir, idx);
    // Never over a file of that name: the log's end was read wrong if one is there (a
    // segment past the end is removed before the writer opens), and truncating it would
    // lose what it holds.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0644);
    const bool existed = fd < 0 && errno == EEXIST;
    if (fd < 0) {
      err = "wal: cannot create " + path + ": " + errno_text(errno) +
            (existed ? " (a segment past what the log's scan found: refusing to overwrite it)" : "");
    } else {
      auto& probe = failure_probes::instance().prezero_failures;
      const bool probed = (probe.load(std::memory_order_relaxed) > 0 && probe.fetch_sub(1) > 0) ||
                          (drops_waiting && failure_probes::instance().prezero_full_while_drops.load());
      for (uint64_t off = 0; off < opt_.segment_bytes && err.empty();) {
        const auto n = std::min<uint64_t>(chunk, opt_.segment_bytes - off);
        const auto w = probed && off + n >= opt_.segment_bytes ? (errno = ENOSPC, -1) : ::pwrite(fd, zeros.get(), n, off);
        if (w <= 0) err = "wal: cannot pre-zero " + path + ": " + errno_text(errno);
        else off += uint64_t(w);
      }
      if (err.empty() && ::fdatasync(fd) != 0) err = "wal: fdatasync " + path + ": " + errno_text(errno);
      ::close(fd);
      if (err.empty() && !fsync_dir(opt_.dir)) err = "wal: fsync of directory " + opt_.dir + " failed";
      // Not in the log yet (the writer opens it once it is ready): a part-zeroed file
      // goes, its space with it (a full disk).
      if (!err.empty()) ::unlink(path.c_str());
    }
    lk.lock();
    prep_busy_.reset();
    if (err.empty()) prep_ready_ = idx;
    else prep_error_ = err;
    prep_cv_.notify_all();
  }
}

bool wal_writer::open_next_segment(std::string* error) {
  MESOB_ASSERT(!in_flight() && staged_records_ == 0);
  const uint64_t idx = segment_index_ + (fd_ >= 0 ? 1 : 0);
  {
    std::unique_lock lk(prep_mu_);
    // A failed pre-zeroing of this segment (in the background, maybe long ago: a disk
    // full then) is tried once more now it is needed, after the dropped segments waiting
    // to be deleted are gone (their space may be what it lacked; the preparer takes a
    // request before them, so none is made meanwhile; a holder of the drops, a log
    // verify, is asked to give way), up to 10 s; a second failure fails the writer.
    for (int failures = 0; prep_ready_ != idx;) {
      if (!prep_error_.empty()) {
        if (++failures == 2) {
          *error = prep_error_;
          return false;
        }
        std::fprintf(stderr, "mesobd: %s (tried once more)\n", prep_error_.c_str());
        prep_error_.clear();
        drops_wanted_.store(true, std::memory_order_relaxed);
        prep_cv_.wait_for(lk, std::chrono::seconds(10),
                          [&] { return prep_stop_ || (drops_held_ == 0 && unlink_queue_.empty() && !unlinking_); });
        drops_wanted_.store(false, std::memory_order_relaxed);
      }
      // Asked for only if it is neither ready nor being zeroed: a second request for the
      // segment being zeroed would zero it again (O_TRUNC) after this writer wrote into it.
      if (prep_ready_ != idx && prep_busy_ != idx && prep_request_ != idx) {
        prep_request_ = idx;
        prep_cv_.notify_all();
      }
      prep_cv_.wait(lk, [&] { return prep_ready_ == idx || !prep_error_.empty(); });
    }
    prep_ready_.reset();
    prep_request_ = idx + 1;  // pre-zero the one after, in the background
    prep_cv_.notify_all();
  }
  const auto path = segment_path(opt_.dir, idx);
  int fd = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) {
    *error = "wal: cannot open " + path + " with O_DIRECT: " + errno_text(errno);
    return false;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  segment_index_ = idx;
  segment_offset_ = 0;
  // The header block leads the first group written into this segment.
  segment_header h{};
  h.magic = segment_magic;
  h.version = wal_format_version;
  h.segment_index = idx;
  h.first_lsn = next_lsn_;
  h.prev_chain = chain_;
  h.created_ns = 0;
  h.flights_max = opt_.flights_max;
  h.segment_bytes = opt_.segment_bytes;
  h.header_crc = segment_header_crc(h);
  uint8_t* b = buf_[open_buf_];
  std::memset(b, 0, wal_block_bytes);
  std::memcpy(b, &h, sizeof h);
  staged_bytes_ = wal_block_bytes;
  segments_.push_back({idx, next_lsn_, opt_.segment_bytes});
  kept_bytes_ += opt_.segment_bytes;
  return true;
}

uint64_t wal_writer::stage(record_kind kind, uint16_t version, uint64_t timestamp,
                           std::span<const std::span<const uint8_t>> pieces) {
  MESOB_ASSERT(!failure_reported_);
  uint64_t payload = 0;
  for (auto p : pieces) payload += p.size();
  MESOB_ASSERT(payload <= record_payload_bytes_max());
  const uint64_t need = staged_bytes_ + record_bytes(payload);
  const bool fits_group = round_up(need, wal_block_bytes) <= opt_.group_bytes_max;
  const bool fits_segment = segment_offset_ + round_up(need, wal_block_bytes) <= opt_.segment_bytes;
  if (!fits_group && staged_records_ > 0) return 0;
  if (!fits_segment) {
    if (staged_records_ > 0 || in_flight()) return 0;
    std::string err;
    if (!open_next_segment(&err)) {
      failed_ = failure_reported_ = true;  // nothing is in flight: reported at once
      error_ = err;
      return 0;
    }
    return stage(kind, version, timestamp, pieces);
  }
  uint8_t* at = buf_[open_buf_] + staged_bytes_;
  record_header h{};
  h.magic = record_magic;
  h.payload_bytes = uint32_t(payload);
  h.lsn = next_lsn_;
  h.group_first_lsn = staged_records_ == 0 ? next_lsn_ : group_first_lsn_;
  h.timestamp = timestamp;
  h.kind = uint16_t(kind);
  h.version = version;
  uint8_t* dst = at + sizeof h;
  uint32_t crc = 0;
  for (auto p : pieces) {
    std::memcpy(dst, p.data(), p.size());
    dst += p.size();
  }
  std::memset(dst, 0, record_bytes(payload) - sizeof h - payload);  // the padding to record_align
  crc = crc32c(at + sizeof h, payload);
  h.payload_crc = crc;
  h.chain = record_chain(chain_, h, at + sizeof h);
  h.header_crc = record_header_crc(h);
  std::memcpy(at, &h, sizeof h);
  chain_ = h.chain;
  if (staged_records_ == 0) {
    group_first_lsn_ = next_lsn_;
    group_begin_ = staged_bytes_;
  }
  group_last_lsn_ = next_lsn_;
  ++staged_records_;
  staged_bytes_ = need;
  return next_lsn_++;
}

void wal_writer::submit_range(flight& f, uint64_t offset, uint64_t len) {
  auto& probes = failure_probes::instance();
  if (probes.short_write.exchange(false) && len > wal_block_bytes) len = wal_block_bytes;
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  MESOB_ASSERT(sqe != nullptr);
  io_uring_prep_write(sqe, fd_, buf_[f.buf] + (offset - f.offset), unsigned(len), offset);
  sqe->flags |= IOSQE_IO_LINK;
  io_uring_sqe_set_data64(sqe, f.id * 4 + tag_write);
  sqe = io_uring_get_sqe(&ring_);
  MESOB_ASSERT(sqe != nullptr);
  io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data64(sqe, f.id * 4 + tag_fsync);
  f.cqes_pending = 2;
  cqes_outstanding_ += 2;
  submit_all(2);
}

// A submit the kernel refuses for a moment, taking nothing (EINTR; EAGAIN: short of
// memory; EBUSY: completions it cannot post yet), is tried again, a millisecond apart,
// for up to ten seconds: a passing refusal is not a reason to stop the engine. (The ring holds more
// completions than the log ever has outstanding, so EBUSY does not wait on this thread's
// reaping.) Anything else, or a refusal that lasts, is a broken ring: an abort, the log
// as it stands recovered at the next start.
void wal_writer::submit_all(int want) {
  int done = 0;
  for (int tries = 0; done < want; ++tries) {
    const int rc = io_uring_submit(&ring_);
    if (rc > 0) {
      // Part of a linked write and fdatasync taken: sent again, the fdatasync would no
      // longer wait for the write. (Not seen; an abort, as before.)
      done += rc;
      MESOB_ASSERT_MSG(done >= want, "io_uring_submit took part of a linked write and fdatasync");
      continue;
    }
    MESOB_ASSERT_MSG((rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) && tries < 10'000,
                     "io_uring_submit failed");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void wal_writer::submit() {
  MESOB_ASSERT(can_submit() && staged_records_ > 0 && !free_bufs_.empty());
  const uint64_t len = round_up(staged_bytes_, wal_block_bytes);
  std::memset(buf_[open_buf_] + staged_bytes_, 0, len - staged_bytes_);
  if (!flights_.empty()) {
    // Earlier groups are still in flight: every record says how far back the oldest
    // one starts (wal_format.hpp), so that recovery can tell which damage may be torn.
    const uint64_t back = group_first_lsn_ - flights_.front().first_lsn;
    MESOB_ASSERT(back > 0 && back <= UINT32_MAX);
    for (uint64_t pos = group_begin_; pos < staged_bytes_;) {
      record_header h;
      std::memcpy(&h, buf_[open_buf_] + pos, sizeof h);
      h.unacked_back = uint32_t(back);
      h.header_crc = record_header_crc(h);
      std::memcpy(buf_[open_buf_] + pos, &h, sizeof h);
      pos += record_bytes(h.payload_bytes);
    }
  }
  flight& f = flights_.emplace_back();
  f.id = next_flight_id_++;
  f.buf = open_buf_;
  f.offset = segment_offset_;
  f.len = len;
  f.first_lsn = group_first_lsn_;
  f.last_lsn = group_last_lsn_;
  f.chain = chain_;
  f.start_ns = steady_ns();
  groups_.fetch_add(1, std::memory_order_relaxed);
  records_.fetch_add(staged_records_, std::memory_order_relaxed);
  bytes_.fetch_add(len, std::memory_order_relaxed);
  open_buf_ = free_bufs_.back();
  free_bufs_.pop_back();
  segment_offset_ += len;
  staged_bytes_ = 0;
  staged_records_ = 0;
  submit_range(f, f.offset, f.len);
}

void wal_writer::arm_wake() {
  if (wake_fd_ < 0 || wake_armed_) return;
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  MESOB_ASSERT(sqe != nullptr);
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof wake_buf_, 0);
  io_uring_sqe_set_data64(sqe, tag_wake);
  wake_armed_ = true;
  submit_all(1);
}

// A failed group fails every group after it too: none of them is reported durable.
// Earlier groups still in flight are reported as they complete, then the failure.
// The dropped groups' completions still come and are reaped (drain); their buffers
// stay until then.
void wal_writer::fail_flights(size_t from, const char* what, int res) {
  failed_ = true;
  flights_.erase(flights_.begin() + long(from), flights_.end());
  error_ = std::string("wal: ") + what + " " + segment_path(opt_.dir, segment_index_) + " failed: " +
           errno_text(-res);
}

wal_writer::wait_status wal_writer::wait_us(int64_t timeout_us) {
  arm_wake();
  // One deadline for the whole call: a completion that reports nothing (a write before its
  // fdatasync, a later group's) does not start the timeout again.
  const uint64_t deadline = timeout_us < 0 ? 0 : steady_ns() + uint64_t(timeout_us) * 1000;
  for (;;) {
    // Groups are reported in log order: the oldest, once its write and fdatasync are in.
    if (!flights_.empty() && flights_.front().complete) {
      const flight& f = flights_.front();
      const uint64_t took = steady_ns() - f.start_ns;
      flight_ns_.fetch_add(took, std::memory_order_relaxed);
      size_t b = 0;
      while (b < wal_commit_buckets.size() && double(took) > wal_commit_buckets[b] * 1e9) ++b;
      commit_buckets_[b].fetch_add(1, std::memory_order_relaxed);
      durable_lsn_ = f.last_lsn;
      durable_chain_ = f.chain;
      free_bufs_.push_back(f.buf);
      flights_.pop_front();
      return wait_status::committed;
    }
    if (failed_ && flights_.empty() && !failure_reported_) {
      failure_reported_ = true;
      return wait_status::failed;
    }
    io_uring_cqe* cqe = nullptr;
    int rc;
    if (timeout_us < 0) {
      rc = io_uring_wait_cqe(&ring_, &cqe);
    } else {
      const uint64_t now = steady_ns();
      const int64_t left_ns = now < deadline ? int64_t(deadline - now) : 0;
      __kernel_timespec ts{left_ns / 1'000'000'000, left_ns % 1'000'000'000};
      rc = io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
    }
    if (rc == -ETIME) return wait_status::timed_out;
    if (rc == -EINTR) continue;
    MESOB_ASSERT_MSG(rc == 0, "io_uring_wait_cqe failed");
    const uint64_t data = io_uring_cqe_get_data64(cqe);
    const int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    auto& probes = failure_probes::instance();
    const uint64_t tag = data % 4;
    if (tag == tag_wake) {
      wake_armed_ = false;
      return wait_status::woken;
    }
    if (tag != tag_write && tag != tag_fsync) continue;  // a cancel's own completion
    --cqes_outstanding_;
    const uint64_t id = data / 4;
    if (flights_.empty() || id < flights_.front().id || id >= flights_.front().id + flights_.size())
      continue;
    const size_t fi = size_t(id - flights_.front().id);
    flight& f = flights_[fi];
    if (tag == tag_write) {
      const uint64_t only = probes.write_errno_last_lsn.load(std::memory_order_relaxed);
      int injected = only == 0 || only == f.last_lsn ? probes.write_errno.exchange(0) : 0;
      f.write_res = injected ? -injected : probes.zero_write.exchange(false) ? 0 : res;
    } else {
      int injected = probes.fsync_errno.exchange(0);
      f.fsync_res = injected ? -injected : res;
    }
    if (--f.cqes_pending > 0) continue;
    // Both completions of this flight's write+fsync pair are in. A write or fdatasync
    // interrupted or refused for a moment (EINTR, EAGAIN) is done again, a bounded
    // number of times: a passing refusal is not a reason to fail the log for good.
    const auto passing = [&](int r) {
      return (r == -EINTR || r == -EAGAIN) && f.retries++ < passing_retries_max;
    };
    if (f.write_res < 0) {
      if (passing(f.write_res)) {  // the linked fdatasync was cancelled: both again
        submit_range(f, f.offset + f.done, f.len - f.done);
        continue;
      }
      fail_flights(fi, "write to", f.write_res);
      continue;
    }
    if (f.write_res == 0) {  // no progress (not expected of a regular file): do not retry forever
      fail_flights(fi, "write (no bytes written) to", -EIO);
      continue;
    }
    f.done += uint64_t(f.write_res);
    if (f.done < f.len) {  // short write: the linked fsync was cancelled
      f.done = f.done / wal_block_bytes * wal_block_bytes;
      submit_range(f, f.offset + f.done, f.len - f.done);
      continue;
    }
    if (f.fsync_res < 0) {
      if (passing(f.fsync_res)) {  // written whole: its last block and the fdatasync again
        f.done = f.len - wal_block_bytes;
        submit_range(f, f.offset + f.done, wal_block_bytes);
        continue;
      }
      fail_flights(fi, "fdatasync of", f.fsync_res);
      continue;
    }
    f.complete = true;
  }
}

bool wal_writer::drain() {
  while (in_flight())
    if (wait(-1) == wait_status::failed) break;
  // After a failure the other groups' completions still come: reap them before the
  // ring and the buffers go.
  while (cqes_outstanding_ > 0) {
    io_uring_cqe* cqe = nullptr;
    const int rc = io_uring_wait_cqe(&ring_, &cqe);
    if (rc == -EINTR) continue;
    MESOB_ASSERT_MSG(rc == 0, "io_uring_wait_cqe failed");
    const uint64_t tag = io_uring_cqe_get_data64(cqe) % 4;
    io_uring_cqe_seen(&ring_, cqe);
    if (tag == tag_wake) wake_armed_ = false;
    else if (tag == tag_write || tag == tag_fsync) --cqes_outstanding_;
  }
  if (failed_) {
    flights_.clear();
    failure_reported_ = true;
  }
  // A wake read may still be armed; cancel it so the ring can be torn down cleanly.
  if (wake_armed_) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_cancel64(sqe, tag_wake, 0);
    io_uring_sqe_set_data64(sqe, 0);
    io_uring_submit(&ring_);
    wake_armed_ = false;
  }
  return !failed_;
}

void wal_writer::drop_segments_before(uint64_t lsn) {
  // Segment i holds lsns [first_i, first_{i+1}); it can go when first_{i+1} <= lsn, and
  // once the next segment's header is durable (its first group): a crash before that
  // leaves the next one all zeros, removed at start as unused, and the log would then
  // have to begin at whatever older segment a failed drop left behind.
  while (segments_.size() >= 2 && segments_[1].first_lsn <= lsn && segments_[1].first_lsn <= durable_lsn_ &&
         segments_[0].index != segment_index_) {
    {
      std::lock_guard lk(prep_mu_);
      unlink_queue_.push_back({segment_path(opt_.dir, segments_[0].index), segments_[0].bytes});
    }
    prep_cv_.notify_all();
    kept_bytes_ -= segments_[0].bytes;
    segments_.erase(segments_.begin());
  }
}

void wal_writer::wait_dropped() {
  std::unique_lock lk(prep_mu_);
  prep_cv_.wait(lk, [&] { return unlink_queue_.empty() && !unlinking_; });
}

void wal_writer::hold_drops() {
  std::unique_lock lk(prep_mu_);
  ++drops_held_;
  prep_cv_.wait(lk, [&] { return !unlinking_; });
}

void wal_writer::release_drops() {
  {
    std::lock_guard lk(prep_mu_);
    MESOB_ASSERT(drops_held_ > 0);
    --drops_held_;
  }
  prep_cv_.notify_all();
}

// ---------------------------------------------------------------------------------
// scan_wal

namespace {

// A segment's bytes, read whole. The memory is kept from segment to segment and is not
// cleared before a read fills it (before, a std::vector's resize zeroed 64 MiB, a
// quarter of a small log's start-up, only for the read to write over it).
struct file_buf {
  std::span<const uint8_t> data;
  bool load(const std::string& path, std::string* error, bool direct = false) {
    data = {};  // until this file is read whole: a failed load leaves nothing to scan
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
    if (fd < 0) {
      *error = "wal: cannot open " + path + ": " + errno_text(errno);
      return false;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      *error = "wal: cannot read the size of " + path + ": " + errno_text(errno);
      ::close(fd);
      return false;
    }
    if (uint64_t(st.st_size) > wal_segment_file_bytes_max) {
      *error = "wal: " + path + " is " + std::to_string(st.st_size) + " bytes, more than any segment (" +
               std::to_string(wal_segment_file_bytes_max) + "): damaged, or not a segment of this log";
      ::close(fd);
      return false;
    }
    const size_t size = size_t(st.st_size);
    if (size > capacity_) {
      mem_.reset();
      capacity_ = 0;
      mem_.reset(new (std::nothrow) uint8_t[size]);  // (default-initialised: not zeroed)
      if (!mem_) {
        *error = "wal: out of memory reading " + path + " (" + std::to_string(size) + " bytes)";
        ::close(fd);
        return false;
      }
      capacity_ = size;
    }
    uint8_t* const buf = mem_.get();
    // O_DIRECT reads land in an aligned bounce buffer, a chunk at a time.
    constexpr size_t chunk = 1u << 20;
    std::unique_ptr<uint8_t, decltype(&std::free)> bounce(nullptr, &std::free);
    if (direct) {
      void* p = nullptr;
      if (::posix_memalign(&p, wal_block_bytes, chunk) != 0) {
        *error = "wal: out of memory reading " + path;
        ::close(fd);
        return false;
      }
      bounce.reset(static_cast<uint8_t*>(p));
    }
    size_t off = 0;
    while (off < size) {
      const size_t want = std::min(size - off, direct ? chunk : size - off);
      // A direct read asks for whole blocks; the file's end cuts it short.
      const size_t ask = direct ? (want + wal_block_bytes - 1) / wal_block_bytes * wal_block_bytes : want;
      auto n = ::pread(fd, direct ? bounce.get() : buf + off, ask, off_t(off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        *error = "wal: cannot read " + path + ": " + (n == 0 ? std::string("it shrank while being read") : errno_text(errno));
        ::close(fd);
        return false;
      }
      const size_t got = std::min(size_t(n), want);
      if (direct) std::memcpy(buf + off, bounce.get(), got);
      off += got;
    }
    ::close(fd);
    data = {buf, size};
    return true;
  }

 private:
  std::unique_ptr<uint8_t[]> mem_;
  size_t capacity_ = 0;
};

// A segment's header, if it reads whole and checks (magic, checksum).
bool read_segment_header(const std::string& path, bool direct, segment_header* out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
  if (fd < 0) return false;
  void* p = nullptr;
  bool ok = ::posix_memalign(&p, wal_block_bytes, wal_block_bytes) == 0;
  const std::unique_ptr<void, decltype(&std::free)> block(p, &std::free);
  ok = ok && ::pread(fd, p, wal_block_bytes, 0) >= ssize_t(sizeof(segment_header));
  ::close(fd);
  if (!ok) return false;
  std::memcpy(out, p, sizeof *out);
  return out->magic == segment_magic && segment_header_crc(*out) == out->header_crc;
}

bool all_zero(const uint8_t* p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {  // (a segment's unused rest is read whole at each start)
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w) return false;
  }
  for (; i < n; ++i)
    if (p[i]) return false;
  return true;
}

// What lies after the point `from` where a segment's valid records end (inside an
// unfinished group, at lsn `expected`): records of that group itself, and later
// groups. A later group may legitimately be there only if it was submitted while the
// unfinished group was still in flight (never acknowledged: groups are acknowledged in
// log order), which its records say (record_header::unacked_back). One submitted after
// that group was acknowledged proves the damage is to an acknowledged group:
// corruption, not a torn tail. With one group in flight at a time, every later group
// is such a proof. `expected` 0 means unknown (a torn header of the log's first
// segment): the oldest group any record found names stands for the unfinished one.
struct after_end {
  bool same_group = false;
  uint64_t later_groups = 0;
  bool later_after_ack = false;
  uint64_t lowest_lsn = UINT64_MAX;  // of the groups' first records found
};
after_end what_follows(std::span<const uint8_t> d, uint64_t from, uint64_t expected_lsn) {
  auto for_each_header = [&](auto&& fn) {
    for (uint64_t b = round_up(from, wal_block_bytes); b + sizeof(record_header) <= d.size();
         b += wal_block_bytes) {
      record_header h;
      std::memcpy(&h, d.data() + b, sizeof h);
      if (h.magic != record_magic || record_header_crc(h) != h.header_crc) continue;
      if (h.unacked_back > h.group_first_lsn) continue;  // cannot be: not a record of ours
      fn(h);
    }
  };
  auto oldest_unacked = [](const record_header& h) { return h.group_first_lsn - h.unacked_back; };
  if (expected_lsn == 0) {
    expected_lsn = UINT64_MAX;
    for_each_header([&](const record_header& h) { expected_lsn = std::min(expected_lsn, oldest_unacked(h)); });
  }
  after_end seen;
  uint64_t last_group = 0;
  for_each_header([&](const record_header& h) {
    seen.lowest_lsn = std::min(seen.lowest_lsn, h.lsn);
    if (h.group_first_lsn <= expected_lsn) {
      seen.same_group = true;
      return;
    }
    if (h.unacked_back == 0 || oldest_unacked(h) > expected_lsn) seen.later_after_ack = true;
    if (h.group_first_lsn != last_group) {
      last_group = h.group_first_lsn;
      ++seen.later_groups;
    }
  });
  return seen;
}

std::string hex_offset(uint64_t off) {
  char s[32];
  std::snprintf(s, sizeof s, "%llu", static_cast<unsigned long long>(off));
  return s;
}

bool zeros_on_disk(const std::string& path, uint64_t from, uint64_t to, std::string* error);

bool zero_range(const std::string& path, uint64_t from, uint64_t to, std::string* error) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = "wal: cannot open " + path + " to cut its torn tail: " + errno_text(errno);
    return false;
  }
  std::vector<uint8_t> zeros(1 << 20, 0);
  for (uint64_t off = from; off < to;) {
    const auto n = std::min<uint64_t>(zeros.size(), to - off);
    if (!pwrite_full(fd, zeros.data(), n, off)) {
      *error = "wal: cannot cut torn tail of " + path + ": " + errno_text(errno);
      ::close(fd);
      return false;
    }
    off += n;
  }
  if (::fdatasync(fd) != 0) {
    const int err = errno;
    // The zeros may stay in the page cache, clean, though the disk never took them: a
    // later start in this boot would read them and take the tail as cut. Dropped, the
    // next read goes to the disk and finds the torn bytes again.
    (void)::posix_fadvise(fd, off_t(from), off_t(to - from), POSIX_FADV_DONTNEED);
    ::close(fd);
    *error = "wal: fdatasync of " + path + " failed while cutting its tail: " + errno_text(err);
    return false;
  }
  ::close(fd);
  return zeros_on_disk(path, from, to, error);
}

// Reads [from, to) of `path` back from the disk (O_DIRECT, past the page cache): the cut
// of a torn tail is trusted only once the disk holds it.
bool zeros_on_disk(const std::string& path, uint64_t from, uint64_t to, std::string* error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) {
    *error = "wal: cannot open " + path + " with O_DIRECT to read its cut tail back: " + errno_text(errno);
    return false;
  }
  constexpr size_t chunk = 1 << 20;
  void* mem = nullptr;
  MESOB_ASSERT(::posix_memalign(&mem, wal_block_bytes, chunk) == 0);
  const std::unique_ptr<void, decltype(&std::free)> buf(mem, &std::free);
  const auto* bytes = static_cast<const uint8_t*>(mem);
  bool ok = true;
  for (uint64_t at = from / wal_block_bytes * wal_block_bytes; ok && at < to;) {
    const ssize_t n = ::pread(fd, mem, chunk, off_t(at));
    if (n <= 0) {
      if (n < 0) *error = "wal: cannot read " + path + " back after cutting its tail: " + errno_text(errno);
      ok = n == 0;  // (the file ends: nothing past it to be torn)
      break;
    }
    const uint64_t lo = std::max(from, at), hi = std::min(to, at + uint64_t(n));
    if (lo < hi && !all_zero(bytes + (lo - at), hi - lo)) {
      *error = "wal: " + path + ": the cut of its torn tail from offset " + std::to_string(from) +
               " did not reach the disk (read back, it is not zeros)";
      ok = false;
    }
    at += uint64_t(n);
  }
  ::close(fd);
  return ok;
}

}  // namespace

bool scan_wal(const wal_scan_options& opt,
              const std::function<bool(const wal_record_view&)>& on_record,
              wal_scan_result* result, std::string* error) {
  std::string list_err;
  auto segs = list_segments(opt.dir, &list_err);
  if (!list_err.empty()) {
    *error = list_err;
    return false;
  }
  wal_scan_result r;
  // Trailing segments with nothing in them were pre-zeroed but never used. One whose
  // header block is zero but which holds anything else (records, or bytes no header
  // names) is left to the header check below: torn and reported, or damage. (Before,
  // only the header block and whole record headers were looked at: a segment whose
  // header and record headers were lost went without a word.)
  // The last segment that holds anything stays loaded: when it is the only one the scan
  // below reads (a small log, or one checkpointed within its last segment), it is not
  // read again (before, every start read it in full twice).
  file_buf f;  // one buffer for every segment: no fresh pages per file
  bool last_loaded = false;
  uint64_t lowest_unused = 0;
  while (!segs.empty()) {
    if (!f.load(segs.back().second, error, opt.direct_io)) return false;
    if (!all_zero(f.data.data(), f.data.size())) {
      last_loaded = true;
      break;
    }
    // The writer pre-zeroes segment k + 1 only once it has opened k: unused segments
    // follow each other, and the last used one, without a gap. A gap says a segment
    // between them is missing (lost in a copy, deleted), and its records would be taken
    // for never written: refused, naming it.
    if (!r.unused_segments.empty() && segs.back().first + 1 != lowest_unused) {
      *error = "wal: " + segment_path(opt.dir, segs.back().first + 1) + " is missing: " + segs.back().second +
               " is followed by " + r.unused_segments.back() +
               " (the writer makes a segment only after the one before it)";
      return false;
    }
    lowest_unused = segs.back().first;
    r.unused_segments.push_back(segs.back().second);
    segs.pop_back();
  }
  if (!segs.empty() && !r.unused_segments.empty() && segs.back().first + 1 != lowest_unused) {
    *error = "wal: " + segment_path(opt.dir, segs.back().first + 1) + " is missing: " + segs.back().second +
             " holds records and the next segment present, " + r.unused_segments.back() +
             ", is an unused one (the writer makes a segment only after the one before it)";
    return false;
  }
  if (opt.start_lsn != 0) {
    size_t start = 0;
    for (size_t si = segs.size(); si-- > 0 && start == 0;) {
      segment_header sh{};
      if (read_segment_header(segs[si].second, opt.direct_io, &sh) && sh.segment_index == segs[si].first &&
          sh.first_lsn <= opt.start_lsn)
        start = si;
    }
    r.segments_skipped = start;
    segs.erase(segs.begin(), segs.begin() + ptrdiff_t(start));
  }
  uint64_t expected = 0;  // the next record's lsn, once the first segment's header set it
  bool started = false;
  chain_hash chain{};
  uint64_t last_index = 0;
  for (size_t si = 0; si < segs.size(); ++si) {
    const auto& [index, path] = segs[si];
    const bool last = si + 1 == segs.size();
    if (!(last && last_loaded)) {
      if (!f.load(path, error, opt.direct_io)) return false;
      last_loaded = false;  // (the buffer holds another segment now)
    }
    const auto& d = f.data;
    r.segments += 1;
    last_index = index;
    segment_header sh{};
    bool header_ok = d.size() >= wal_block_bytes;
    if (header_ok) {
      std::memcpy(&sh, d.data(), sizeof sh);
      header_ok = sh.magic == segment_magic && segment_header_crc(sh) == sh.header_crc;
    }
    if (header_ok && (sh.version < 1 || sh.version > wal_format_version)) {
      *error = "wal: " + path + " has format version " + std::to_string(sh.version) +
               ", this build reads versions 1 to " + std::to_string(wal_format_version);
      return false;
    }
    if (!header_ok && d.size() < wal_block_bytes) {
      // A segment is pre-zeroed to its full size, synced, before any header goes into it
      // (a crash while zeroing leaves zeros only, an unused segment above): a shorter one
      // holding anything was cut since it was written, and what it held past the cut is
      // not there to judge a torn write by.
      *error = "wal: " + path + " is " + std::to_string(d.size()) + " bytes, shorter than its header block (" +
               std::to_string(wal_block_bytes) + "), and not all zero: cut short since it was written (a log "
               "segment is never that short); put the whole segment back";
      return false;
    }
    if (!header_ok) {
      // The header went out with the segment's first group: torn with it only if no
      // later group was submitted after that group was acknowledged (a segment starts
      // only with nothing in flight, so `expected` is that group's first lsn).
      const after_end follows = what_follows(d, wal_block_bytes, started ? expected : 0);
      // A record the snapshot covers was durable, and the header with it: damage.
      if (opt.start_lsn != 0 && follows.lowest_lsn < opt.start_lsn) {
        *error = "wal: " + path + " offset 0: bad segment header (checksum or magic), and the segment holds lsn " +
                 std::to_string(follows.lowest_lsn) + ", which the snapshot covers (up to " +
                 std::to_string(opt.start_lsn - 1) + "): it was durable, so this is damage, not a torn write";
        return false;
      }
      // The first segment read after a snapshot holds the lsn after it or one before: the
      // writer drops a segment only once the next one's first record is durable, so this
      // header was durable before the snapshot was taken, and torn it is damage (its
      // records acknowledged), not a crash's torn write.
      if (!started && opt.start_lsn > 1) {
        *error = "wal: " + path + " offset 0: bad segment header (checksum or magic) on the first segment after the "
                 "snapshot (at lsn " + std::to_string(opt.start_lsn - 1) +
                 "): a crash cannot tear it (it was durable before the snapshot), so this is damage";
        return false;
      }
      if (last && !follows.later_after_ack && follows.later_groups < wal_flights_limit) {
        r.torn_tail = path + " offset 0: segment header incomplete (torn)";
        r.torn_segment = path;
        r.segments -= 1;
        last_index = index;
        break;
      }
      *error = "wal: " + path + " offset 0: bad segment header (checksum or magic)";
      return false;
    }
    if (sh.segment_index != index) {
      *error = "wal: " + path + " offset 0: header names segment " +
               std::to_string(sh.segment_index);
      return false;
    }
    if (sh.segment_bytes != 0 && d.size() != sh.segment_bytes) {
      *error = "wal: " + path + " is " + std::to_string(d.size()) + " bytes, but its header says it was made " +
               std::to_string(sh.segment_bytes) + " bytes long: " +
               (d.size() < sh.segment_bytes ? "cut short (records past the cut would be lost unseen)" : "grown") +
               " since it was written; put the whole segment back";
      return false;
    }
    if (!started) {
      started = true;
      expected = sh.first_lsn;
      chain = sh.prev_chain;
    } else if (sh.first_lsn != expected || sh.prev_chain != chain) {
      *error = "wal: " + path + " offset 0: segment starts at lsn " +
               std::to_string(sh.first_lsn) + " but the log continues at lsn " +
               std::to_string(expected) + (sh.prev_chain != chain ? " (hash chain broken)" : "");
      return false;
    }
    uint64_t pos = wal_block_bytes;
    std::string damage;
    while (pos + sizeof(record_header) <= d.size()) {
      record_header h;
      std::memcpy(&h, d.data() + pos, sizeof h);
      if (h.magic == 0) {
        if (pos % wal_block_bytes == 0) break;  // end of this segment's data
        // Group padding, zeros to the block's end (written so): anything else there is a
        // record whose header was lost.
        const uint64_t pad_end = std::min<uint64_t>(round_up(pos, wal_block_bytes), d.size());
        if (!all_zero(d.data() + pos, pad_end - pos)) {
          damage = "zeros where a record header should be, with data after them in the block";
          break;
        }
        pos = pad_end;
        continue;
      }
      if (h.magic != record_magic || record_header_crc(h) != h.header_crc) {
        damage = "record header checksum mismatch";
        break;
      }
      if (h.lsn != expected) {
        damage = "record lsn " + std::to_string(h.lsn) + " where " + std::to_string(expected) +
                 " was expected";
        break;
      }
      if (pos + sizeof h + h.payload_bytes > d.size()) {
        damage = "record runs past the end of the segment";
        break;
      }
      const uint8_t* payload = d.data() + pos + sizeof h;
      if (crc32c(payload, h.payload_bytes) != h.payload_crc) {
        damage = "payload checksum mismatch";
        break;
      }
      if (record_chain(chain, h, payload) != h.chain) {
        *error = "wal: " + path + " offset " + hex_offset(pos) + ": hash chain broken at lsn " +
                 std::to_string(h.lsn) + " (record altered)";
        return false;
      }
      wal_record_view v{&h, {payload, h.payload_bytes}, path.c_str(), pos, &chain};
      if (!on_record(v)) {
        if (error->empty()) *error = "wal: replay stopped at " + path + " offset " + hex_offset(pos);
        return false;
      }
      chain = h.chain;
      ++expected;
      ++r.records;
      pos += wal_writer::record_bytes(h.payload_bytes);
    }
    // After the data only zeros (segments are zeroed before use, a cut tail zeroed): bytes
    // there are records whose start was lost, even where no later group's header sits on
    // a block boundary for what_follows to find.
    if (damage.empty() && pos < d.size() && !all_zero(d.data() + pos, d.size() - pos))
      damage = "data ends, but bytes that are not zeros follow";
    // What follows is looked for after the damaged record's bytes when its header is
    // intact (its own: the lsn expected there): its payload is a client's bytes, which
    // may hold what reads as a later record's header on a block boundary.
    uint64_t follows_from = pos + 1;
    if (!damage.empty() && pos + sizeof(record_header) <= d.size()) {
      record_header h;
      std::memcpy(&h, d.data() + pos, sizeof h);
      if (h.magic == record_magic && record_header_crc(h) == h.header_crc && h.lsn == expected &&
          h.payload_bytes <= d.size())
        follows_from = std::max(follows_from, pos + wal_writer::record_bytes(h.payload_bytes));
    }
    const after_end follows = last ? what_follows(d, follows_from, expected) : after_end{};
    const uint64_t flights = std::clamp<uint64_t>(sh.flights_max, 1, wal_flights_limit);
    const bool not_a_tail = follows.later_groups > flights - 1 || follows.later_after_ack;
    if (!damage.empty() && (!last || not_a_tail)) {
      *error = "wal: " + path + " offset " + hex_offset(pos) + ": " + damage +
               (last ? " (later records follow: corruption, not a torn tail)" : "");
      return false;
    }
    if (damage.empty() && not_a_tail) {
      *error = "wal: " + path + " offset " + hex_offset(pos) +
               ": data ends but later records follow (corruption)";
      return false;
    }
    if (!damage.empty() || follows.same_group || follows.later_groups > 0) {
      // An unfinished last group: never acknowledged, so cut it.
      if (damage.empty()) damage = "unfinished group (its first block is missing)";
      r.torn_tail = path + " offset " + hex_offset(pos) + ": " + damage + "; cut there";
      r.torn_file = path;
      r.torn_from = pos;
      r.torn_to = d.size();
    }
  }
  r.end.next_lsn = expected == 0 ? 1 : expected;
  r.end.chain = chain;
  r.end.next_segment_index = segs.empty() && r.segments == 0 ? 0 : last_index + 1;
  if (opt.repair_tail && r.needs_repair() && !repair_wal_tail(opt.dir, r, error)) return false;
  if (result) *result = r;
  return true;
}

bool sync_segments(const std::string& dir, std::string* error) {
  std::string list_err;
  const auto segs = list_segments(dir, &list_err);
  if (!list_err.empty()) {
    *error = list_err;
    return false;
  }
  for (const auto& [index, path] : segs) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::fdatasync(fd) != 0) {
      *error = "wal: cannot sync " + path + " before replaying it: " + errno_text(errno);
      if (fd >= 0) ::close(fd);
      return false;
    }
    ::close(fd);
  }
  return true;
}

bool repair_wal_tail(const std::string& dir, const wal_scan_result& r, std::string* error) {
  if (!r.torn_file.empty() && !zero_range(r.torn_file, r.torn_from, r.torn_to, error)) return false;
  std::vector<std::string> gone = r.unused_segments;
  if (!r.torn_segment.empty()) gone.push_back(r.torn_segment);
  for (const auto& path : gone)
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      *error = "wal: cannot remove " + path + " past the log's end: " + errno_text(errno);
      return false;
    }
  if (!gone.empty() && !fsync_dir(dir)) {
    *error = "wal: cannot sync the directory " + dir + " after removing segments past the log's end";
    return false;
  }
  return true;
}

}  // namespace mesob::storage
