#include "storage/snapshot.hpp"

#include "storage/failure_probes.hpp"
#include "storage/wal.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "wire/assert.hpp"

namespace mesob::storage {

namespace {

struct be_key {
  uint8_t b[8];
  explicit be_key(uint64_t k) {
    for (int i = 0; i < 8; ++i) b[i] = uint8_t(k >> (56 - 8 * i));
  }
  MDB_val val() { return MDB_val{sizeof b, b}; }
};

uint64_t from_be(const MDB_val& v) {
  MESOB_ASSERT(v.mv_size == 8);
  auto p = static_cast<const uint8_t*>(v.mv_data);
  uint64_t k = 0;
  for (int i = 0; i < 8; ++i) k = k << 8 | p[i];
  return k;
}

// LMDB's codes for a damaged file (they read the same every time), not a failing store.
bool damage_code(int rc) { return rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID; }

std::string lmdb_error(const char* what, int rc) {
  std::string e = std::string("snapshot: ") + what + ": " + mdb_strerror(rc);
  if (rc == MDB_MAP_FULL) e += " (the store's map is full: raise --snapshot-map-gib)";
  if (damage_code(rc)) e += std::string(": ") + snapshot_damaged;
  return e;
}

// Each row's check: CRC-32C of the table's number, the key (little-endian) and the
// bytes, stored after the bytes. The table and key are in it so that a row's bytes
// under another key (a damaged branch page) fail too.
constexpr size_t check_bytes = snapshot_row_check_bytes;
constexpr int meta_table = 255;            // meta's number in a row's check
constexpr uint64_t row_format_key = 1;     // meta's row saying rows carry checks
constexpr uint32_t row_format_checked = 1;
constexpr uint32_t format_of_row_checks = 12;  // the snapshot format that brought them

uint32_t row_check(int table_no, uint64_t key, const void* bytes, size_t n) {
  uint8_t head[9];
  head[0] = uint8_t(table_no);
  std::memcpy(head + 1, &key, 8);
  return crc32c(bytes, n, crc32c(head, sizeof head));
}

const char* table_label(int table_no) { return table_no == meta_table ? "meta" : table_name(table(table_no)); }

// The snapshot row's bytes, if their size, magic and version (up to `newest`) are ones
// this build reads; else nullopt with *error saying which (`note` after the versions).
std::optional<snapshot_meta> decode_meta(const void* p, size_t n, uint32_t newest, const std::string& note,
                                         std::string* error) {
  snapshot_meta m{};
  if (n != sizeof m) {
    *error = "snapshot: meta record has " + std::to_string(n) + " bytes, expected " + std::to_string(sizeof m);
    return std::nullopt;
  }
  std::memcpy(&m, p, sizeof m);
  if (m.magic != snapshot_magic) {
    *error = "snapshot: meta record has a bad magic number";
    return std::nullopt;
  }
  if (m.version < snapshot_format_oldest || m.version > newest) {
    *error = "snapshot: format version " + std::to_string(m.version) + " is not a version this build reads (" +
             std::to_string(snapshot_format_oldest) + ".." + std::to_string(snapshot_format_version) + note + ")";
    return std::nullopt;
  }
  return m;
}

// Checks a row's check and drops it from *val; false with *error naming the row.
bool check_row(int table_no, uint64_t key, MDB_val* val, std::string* error) {
  uint32_t stored = 0;
  if (val->mv_size >= check_bytes) {
    std::memcpy(&stored, static_cast<const uint8_t*>(val->mv_data) + val->mv_size - check_bytes, check_bytes);
    if (stored == row_check(table_no, key, val->mv_data, val->mv_size - check_bytes)) {
      val->mv_size -= check_bytes;
      return true;
    }
  }
  *error = std::string("snapshot: row ") + std::to_string(key) + " of table " + table_label(table_no) + " (" +
           std::to_string(val->mv_size) + " bytes) fails its check: " + snapshot_damaged;
  return false;
}

// Clears the reader slots of processes that ended inside a read (mdb_reader_check),
// counting them in *cleared and saying so on stderr. A stale slot pins its snapshot's
// pages: no later commit can reuse the pages freed since, and the map fills; enough of
// them fill the reader table (MDB_READERS_FULL). LMDB clears the table itself only at an
// open with no other process on the store, so the store looks at every open, before
// every write transaction, and when a read finds the table full. Cheap: one lock probe
// per process in the table.
int clear_stale_readers(MDB_env* env, std::atomic<uint32_t>* cleared) {
  int stale = 0;
  const int rc = mdb_reader_check(env, &stale);
  if (rc == 0 && stale > 0) {
    cleared->fetch_add(uint32_t(stale), std::memory_order_relaxed);
    std::fprintf(stderr, "mesobd: snapshot: cleared %d reader slot(s) of processes that ended inside a read\n", stale);
  }
  return rc;
}

// A read transaction; a full reader table is looked at for stale slots and tried again
// once.
int begin_read(MDB_env* env, MDB_txn** txn, std::atomic<uint32_t>* cleared) {
  int rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, txn);
  if (rc == MDB_READERS_FULL && clear_stale_readers(env, cleared) == 0)
    rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, txn);
  return rc;
}

// A walk of table `t` found `walked` rows where LMDB counts `counted`.
std::string rows_lost(table t, uint64_t counted, uint64_t walked) {
  return std::string("snapshot: table ") + table_name(t) + " holds " + std::to_string(counted) +
         " rows by LMDB's count but a walk of it found " + std::to_string(walked) + ": pages of it are damaged or lost";
}

// A read transaction with a cursor on one table, both closed when it goes out of scope.
struct read_cursor {
  MDB_txn* txn = nullptr;
  MDB_cursor* cur = nullptr;
  int rc = 0;
  read_cursor(MDB_env* env, MDB_dbi dbi, std::atomic<uint32_t>* cleared) {
    rc = begin_read(env, &txn, cleared);
    if (rc == 0) rc = mdb_cursor_open(txn, dbi, &cur);
  }
  ~read_cursor() {
    if (cur) mdb_cursor_close(cur);
    if (txn) mdb_txn_abort(txn);
  }
  read_cursor(const read_cursor&) = delete;
  read_cursor& operator=(const read_cursor&) = delete;
  bool open(std::string* error) const {
    if (rc != 0) *error = lmdb_error("begin read", rc);
    return rc == 0;
  }
};

// Reads of a store's map that fault (SIGBUS): past the end of a file cut short (a copy
// that ran out of disk, part of a restore), or a page the disk failed to read. LMDB reads
// the pages a commit names through its map without comparing them with the file's
// length, and no comparison of lengths could tell (a file may end before the last page
// number a commit names, on pages that commit took and freed, which LMDB never writes),
// so such a read took the process down with a bare SIGBUS. The maps of the stores open
// are registered here; a fault in one says which file, on stderr, and ends the process
// with exit status 1 (as a damaged file stops a start: nothing read from it was used). A
// fault elsewhere is left to the handler before, or the default.
namespace bus_guard {
constexpr int slots = 16;
struct slot {
  std::atomic<bool> taken{false};
  std::atomic<uintptr_t> begin{0};
  uintptr_t end = 0;
  char message[640] = {};
  size_t length = 0;
};
slot table[slots];
struct sigaction before {};
std::once_flag installed;

void on_bus(int sig, siginfo_t* info, void* context) {
  const auto at = reinterpret_cast<uintptr_t>(info->si_addr);
  for (const slot& s : table) {
    const uintptr_t b = s.begin.load(std::memory_order_acquire);
    if (b != 0 && at >= b && at < s.end) {
      (void)!::write(STDERR_FILENO, s.message, s.length);
      ::_exit(1);
    }
  }
  if (before.sa_flags & SA_SIGINFO) {
    if (before.sa_sigaction) return before.sa_sigaction(sig, info, context);
  } else if (before.sa_handler != SIG_DFL && before.sa_handler != SIG_IGN && before.sa_handler) {
    return before.sa_handler(sig);
  }
  ::signal(SIGBUS, SIG_DFL);  // the fault again, as if no handler were here
}

// Registers [addr, addr + bytes) as `path`'s map: the slot, or -1 (all taken: that map is
// not guarded).
int add(void* addr, size_t bytes, const std::string& path) {
  std::call_once(installed, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_bus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &before);
  });
  for (int i = 0; i < slots; ++i) {
    slot& s = table[i];
    if (s.taken.exchange(true, std::memory_order_acq_rel)) continue;
    const std::string m = "snapshot: " + path + " could not be read through its map (SIGBUS): " + snapshot_damaged +
                          " (cut short: a partial copy or restore?) or the disk failed to read it; stopped with " +
                          "nothing read from it used. Put the whole file back\n";
    s.length = std::min(m.size(), sizeof s.message);
    std::memcpy(s.message, m.data(), s.length);
    s.end = reinterpret_cast<uintptr_t>(addr) + bytes;
    s.begin.store(reinterpret_cast<uintptr_t>(addr), std::memory_order_release);
    return i;
  }
  return -1;
}

void remove(int i) {
  if (i < 0) return;
  table[i].begin.store(0, std::memory_order_release);
  table[i].taken.store(false, std::memory_order_release);
}
}  // namespace bus_guard

}  // namespace

const char* table_name(table t) {
  switch (t) {
    case table::accounts: return "accounts";
    case table::transfers: return "transfers";
    case table::pending: return "pending";
    case table::resolved: return "resolved";
    case table::groups: return "groups";
    case table::gateways: return "gateways";
    case table::payouts: return "payouts";
    case table::desks: return "desks";
    case table::recon: return "recon";
    case table::market: return "market";
    case table::policy: return "policy";
    case table::customers: return "customers";
    case table::portfolios: return "portfolios";
    case table::transfer_ids: return "transfer_ids";
    case table::id_lo_max: return "id_lo_max";
    case table::id_hash_key: return "id_hash_key";
  }
  return "?";
}

snapshot_store::usage_bytes snapshot_store::usage() const {
  MDB_envinfo info{};
  MDB_stat st{};
  if (mdb_env_info(env_, &info) != 0 || mdb_env_stat(env_, &st) != 0) return {};
  return {uint64_t(info.me_mapsize), (uint64_t(info.me_last_pgno) + 1) * st.ms_psize};
}

std::unique_ptr<snapshot_store> snapshot_store::open(const std::string& dir, uint64_t map_bytes,
                                                     std::string* error) {
  ::mkdir(dir.c_str(), 0755);
  std::unique_ptr<snapshot_store> s(new snapshot_store());
  int rc = mdb_env_create(&s->env_);
  if (rc == 0) rc = mdb_env_set_maxdbs(s->env_, 32);
  if (rc == 0) rc = mdb_env_set_mapsize(s->env_, map_bytes);
  if (rc == 0) rc = mdb_env_open(s->env_, dir.c_str(), MDB_NOTLS, 0644);
  if (rc == 0) s->guard_map(dir);  // before any read of a page
  // A process killed inside a read transaction leaves its slot in the reader table
  // (clear_stale_readers says why that matters).
  if (rc == 0) rc = clear_stale_readers(s->env_, &s->stale_readers_cleared_);
  if (rc != 0) {
    *error = lmdb_error(("open " + dir).c_str(), rc);
    return nullptr;
  }
  // The files LMDB may just have created: their entries durable before any commit
  // counts (a checkpoint's commit lets the log segments it covers go).
  if (!fsync_dir(dir)) {
    *error = "snapshot: cannot sync the directory " + dir + ": " + std::strerror(errno);
    return nullptr;
  }
  MDB_txn* txn = nullptr;
  rc = mdb_txn_begin(s->env_, nullptr, 0, &txn);
  if (rc == 0) rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->dbi_meta_);
  for (int i = 0; i < tables && rc == 0; ++i)
    rc = mdb_dbi_open(txn, table_name(table(i)), MDB_CREATE, &s->dbi_[i]);
  if (rc != 0) {
    if (txn) mdb_txn_abort(txn);
    *error = lmdb_error("open tables", rc);
    return nullptr;
  }
  // The rows' format: a new store's rows carry checks from the first; an older store's
  // rows get theirs now, in this one transaction (whole or not at all).
  bool found = false;
  if (!s->read_row_format(txn, &found, error)) {
    mdb_txn_abort(txn);
    return nullptr;
  }
  if (!found) {
    bool has_rows = false;
    for (int i = -1; i < tables && !has_rows; ++i) {
      MDB_stat st{};
      has_rows = mdb_stat(txn, i < 0 ? s->dbi_meta_ : s->dbi_[i], &st) == 0 && st.ms_entries > 0;
    }
    if (has_rows) {
      // A store with rows and no snapshot row lost its meta rows (damage: an older
      // store's snapshot row is converted with the rest, one of another format refused
      // there): rewriting every row under a second check would bury what a repair by
      // hand needs. Refused, nothing changed.
      be_key k0(0);
      MDB_val key0 = k0.val(), val0{};
      if (const int rc0 = mdb_get(txn, s->dbi_meta_, &key0, &val0); rc0 != 0) {
        mdb_txn_abort(txn);
        *error = rc0 == MDB_NOTFOUND
                     ? "snapshot: " + dir + " has rows but neither its snapshot row nor its rows' format row: " +
                           snapshot_damaged + " (its meta rows are lost; nothing was changed)"
                     : lmdb_error("read meta", rc0);
        return nullptr;
      }
      std::fprintf(stderr, "mesobd: snapshot: %s is of an older format: every row is given its check now, once\n",
                   dir.c_str());
    }
    if (!s->convert_rows(txn, error)) {
      mdb_txn_abort(txn);
      return nullptr;
    }
  }
  rc = mdb_txn_commit(txn);
  if (rc != 0) {
    *error = lmdb_error("open tables", rc);
    return nullptr;
  }
  s->rows_checked_ = true;
  return s;
}

bool snapshot_store::read_row_format(MDB_txn* txn, bool* found, std::string* error) {
  be_key k(row_format_key);
  MDB_val key = k.val(), val{};
  const int rc = mdb_get(txn, dbi_meta_, &key, &val);
  *found = rc == 0;
  if (rc == MDB_NOTFOUND) return true;
  if (rc != 0) {
    *error = lmdb_error("read the rows' format", rc);
    return false;
  }
  uint32_t format = 0;
  if (!check_row(meta_table, row_format_key, &val, error)) return false;
  if (val.mv_size == sizeof format) std::memcpy(&format, val.mv_data, sizeof format);
  if (format != row_format_checked) {
    *error = "snapshot: the rows' format row says " + std::to_string(format) + " (" + std::to_string(val.mv_size) +
             " bytes); this build writes " + std::to_string(row_format_checked);
    return false;
  }
  return true;
}

// Every row of every table, meta's snapshot row included (its version set to this
// format's, so that a build before checks refuses the store), rewritten with its check;
// then the row saying so.
bool snapshot_store::convert_rows(MDB_txn* txn, std::string* error) {
  // Read in chunks, then written back by key: the cursor never walks rows as they grow.
  constexpr size_t chunk_rows = 1024;
  std::vector<std::pair<uint64_t, std::string>> chunk;
  for (int i = -1; i < tables; ++i) {
    const int table_no = i < 0 ? meta_table : i;
    const MDB_dbi dbi = i < 0 ? dbi_meta_ : dbi_[i];
    uint64_t from = 0;
    for (bool more = true; more;) {
      chunk.clear();
      MDB_cursor* cur = nullptr;
      int rc = mdb_cursor_open(txn, dbi, &cur);
      be_key k(from);
      MDB_val key = k.val(), val{};
      if (rc == 0) rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
      for (; rc == 0 && chunk.size() < chunk_rows; rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size != 8) {
          mdb_cursor_close(cur);
          *error = std::string("snapshot: table ") + table_label(table_no) + " has a key of " +
                   std::to_string(key.mv_size) + " bytes";
          return false;
        }
        chunk.emplace_back(from_be(key), std::string(static_cast<const char*>(val.mv_data), val.mv_size));
      }
      if (cur) mdb_cursor_close(cur);
      if (rc != 0 && rc != MDB_NOTFOUND) {
        *error = lmdb_error((std::string("convert table ") + table_label(table_no)).c_str(), rc);
        return false;
      }
      more = rc == 0;  // a row after the chunk (so its last key is below UINT64_MAX)
      for (auto& [row_key, bytes] : chunk) {
        if (i < 0 && row_key == 0) {
          // Only a snapshot of a format this build reads is converted (and made this
          // format's): anything else is refused as read_meta would, nothing changed.
          auto m = decode_meta(bytes.data(), bytes.size(), format_of_row_checks - 1,
                               "; " + std::to_string(format_of_row_checks) + " on only with its rows' format row",
                               error);
          if (!m) return false;
          m->version = snapshot_format_version;
          std::memcpy(bytes.data(), &*m, sizeof *m);
        }
        rc = put_row(txn, dbi, table_no, row_key,
                     {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, 0);
        if (rc != 0) {
          *error = lmdb_error((std::string("convert table ") + table_label(table_no)).c_str(), rc);
          // Every row is rewritten in one transaction, whose freed pages LMDB reuses
          // only after it commits: the map must hold the old rows and the new at once.
          if (rc == MDB_MAP_FULL)
            *error += " (converting needs room for the snapshot twice over, for this start)";
          return false;
        }
      }
      if (more) from = chunk.back().first + 1;
    }
  }
  const uint32_t format = row_format_checked;
  const int rc = put_row(txn, dbi_meta_, meta_table, row_format_key,
                         {reinterpret_cast<const uint8_t*>(&format), sizeof format}, 0);
  if (rc != 0) {
    *error = lmdb_error("write the rows' format", rc);
    return false;
  }
  return true;
}

bool snapshot_store::unwrap(int table_no, uint64_t key, MDB_val* val, std::string* error) const {
  return !rows_checked_ || check_row(table_no, key, val, error);
}

int snapshot_store::put_row(MDB_txn* txn, MDB_dbi dbi, int table_no, uint64_t key_v, std::span<const uint8_t> bytes,
                            unsigned flags) const {
  be_key k(key_v);
  MDB_val key = k.val(), val{bytes.size() + check_bytes, nullptr};
  // Reserved: the bytes and their check go straight into LMDB's page.
  const int rc = mdb_put(txn, dbi, &key, &val, flags | MDB_RESERVE);
  if (rc != 0) return rc;
  auto* to = static_cast<uint8_t*>(val.mv_data);
  if (!bytes.empty()) std::memcpy(to, bytes.data(), bytes.size());
  const uint32_t c = row_check(table_no, key_v, bytes.data(), bytes.size());
  std::memcpy(to + bytes.size(), &c, check_bytes);
  return 0;
}

std::unique_ptr<snapshot_store> snapshot_store::open_read_only(const std::string& dir, std::string* error) {
  error->clear();
  std::unique_ptr<snapshot_store> s(new snapshot_store());
  s->read_only_ = true;
  int rc = mdb_env_create(&s->env_);
  if (rc == 0) rc = mdb_env_set_maxdbs(s->env_, 32);
  // Without a lock file no process has the store open (LMDB makes one at every open and
  // leaves it): reading without one creates nothing (before, lock.mdb, owned by whoever
  // ran the inspection, root under sudo, which the engine's user then could not open).
  struct stat lock_st {};
  const bool no_lock_file = ::stat((dir + "/lock.mdb").c_str(), &lock_st) != 0 && errno == ENOENT;
  if (rc == 0) rc = mdb_env_open(s->env_, dir.c_str(), MDB_NOTLS | MDB_RDONLY | (no_lock_file ? MDB_NOLOCK : 0), 0644);
  if (rc != 0) {
    *error = lmdb_error(("open " + dir + " read-only").c_str(), rc);
    return nullptr;
  }
  s->guard_map(dir);  // before any read of a page
  MDB_txn* txn = nullptr;
  rc = begin_read(s->env_, &txn, &s->stale_readers_cleared_);
  if (rc == 0) rc = mdb_dbi_open(txn, "meta", 0, &s->dbi_meta_);
  for (int i = 0; i < tables && rc == 0; ++i) {
    rc = mdb_dbi_open(txn, table_name(table(i)), 0, &s->dbi_[i]);
    if (rc == MDB_NOTFOUND) {  // a table of a later build: not read here
      s->absent_[i] = true;
      rc = 0;
    }
  }
  // Rows carry checks if the store says so; an older store's are read as they are.
  if (rc == 0 && !s->read_row_format(txn, &s->rows_checked_, error)) {
    mdb_txn_abort(txn);
    return nullptr;
  }
  // Committed, even read-only: an aborted transaction would close the handles it opened.
  if (rc == 0) rc = mdb_txn_commit(txn);
  else if (txn) mdb_txn_abort(txn);
  if (rc == MDB_NOTFOUND) return nullptr;  // no meta table: never written
  if (rc != 0) {
    *error = lmdb_error("open tables", rc);
    return nullptr;
  }
  return s;
}

void snapshot_store::release_pages() {
  if (map_addr_ != nullptr) ::madvise(map_addr_, map_bytes_, MADV_DONTNEED);
}

void snapshot_store::uncache_rows(table t, uint64_t begin_key, uint64_t end_key) {
  int fd = -1;
  MDB_stat st{};
  if (map_addr_ == nullptr || begin_key >= end_key || mdb_env_get_fd(env_, &fd) != 0 ||
      mdb_env_stat(env_, &st) != 0 || st.ms_psize == 0)
    return;
  const uint64_t page = st.ms_psize;
  const auto base = reinterpret_cast<uintptr_t>(map_addr_);
  uint64_t run_begin = 0, run_end = 0;  // contiguous pages, dropped with one call
  auto drop_run = [&] {
    if (run_end > run_begin) ::posix_fadvise(fd, off_t(run_begin), off_t(run_end - run_begin), POSIX_FADV_DONTNEED);
  };
  std::string ignored;
  scan_rows(t, [&](uint64_t, std::span<const uint8_t> v) {  // reads the row's address, not its bytes
    const auto at = reinterpret_cast<uintptr_t>(v.data());
    if (v.size() < page / 2 || at < base || at + v.size() > base + map_bytes_) return true;
    const uint64_t first = (at - base) / page * page;
    const uint64_t end = (at - base + v.size() + page - 1) / page * page;
    if (first != run_end) {
      drop_run();
      run_begin = first;
    }
    run_end = end;
    return true;
  }, &ignored, end_key, begin_key, false);
  drop_run();
}

// LMDB does not export its map address unless MDB_FIXEDMAP: find the mapping of
// data.mdb in /proc/self/maps, by inode and by its length, LMDB's map size (another
// filesystem's file may have the same inode number, and madvise would then drop that
// mapping's pages; the device is no help: overlayfs and btrfs subvolumes show another
// in the maps than stat gives).
void snapshot_store::find_map(const std::string& dir) {
  struct stat st {};
  if (::stat((dir + "/data.mdb").c_str(), &st) != 0) return;
  MDB_envinfo info{};
  if (mdb_env_info(env_, &info) != 0 || info.me_mapsize == 0) return;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    unsigned long long start = 0, end = 0, offset = 0, inode = 0;
    char perms[8] = {}, dev[16] = {};
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %15s %llu", &start, &end, perms, &offset,
                    dev, &inode) == 6 &&
        inode == static_cast<unsigned long long>(st.st_ino) && offset == 0 && end - start == info.me_mapsize) {
      map_addr_ = reinterpret_cast<void*>(start);
      map_bytes_ = size_t(end - start);
      return;
    }
  }
}

void snapshot_store::guard_map(const std::string& dir) {
  find_map(dir);
  if (map_addr_ != nullptr) bus_slot_ = bus_guard::add(map_addr_, map_bytes_, dir + "/data.mdb");
}

snapshot_store::~snapshot_store() {
  bus_guard::remove(bus_slot_);
  if (env_) mdb_env_close(env_);
}

std::optional<snapshot_meta> snapshot_store::read_meta(std::string* error) {
  MDB_txn* txn = nullptr;
  int rc = begin_read(env_, &txn, &stale_readers_cleared_);
  if (rc != 0) {
    *error = lmdb_error("begin read", rc);
    return std::nullopt;
  }
  if (read_only_ && !read_row_format(txn, &rows_checked_, error)) {
    mdb_txn_abort(txn);
    return std::nullopt;
  }
  be_key k(0);
  MDB_val key = k.val(), val{};
  rc = mdb_get(txn, dbi_meta_, &key, &val);
  std::optional<snapshot_meta> out;
  if (rc == 0 && !unwrap(meta_table, 0, &val, error)) {
    // named in *error
  } else if (rc == 0) {
    out = decode_meta(val.mv_data, val.mv_size, snapshot_format_version, "", error);
  } else if (rc != MDB_NOTFOUND) {
    *error = lmdb_error("read meta", rc);
  }
  mdb_txn_abort(txn);
  return out;
}

bool snapshot_store::scan(table t, const std::function<bool(uint64_t, std::span<const uint8_t>)>& fn,
                          std::string* error, std::optional<uint64_t> end_key, uint64_t begin_key) {
  return scan_rows(t, fn, error, end_key, begin_key, true);
}

bool snapshot_store::scan_rows(table t, const std::function<bool(uint64_t, std::span<const uint8_t>)>& fn,
                               std::string* error, std::optional<uint64_t> end_key, uint64_t begin_key, bool check,
                               uint64_t rows_max, std::optional<uint64_t>* next_key) {
  if (next_key) next_key->reset();
  // A table a read-only store does not have: no rows (its handle would be LMDB's table
  // of tables, whose entries are the tables' names).
  if (absent_[int(t)]) return true;
  read_cursor rd(env_, dbi_[int(t)], &stale_readers_cleared_);
  if (!rd.open(error)) return false;
  MDB_cursor* cur = rd.cur;
  int rc = 0;
  MDB_val key{}, val{};
  be_key begin(begin_key);
  if (begin_key != 0) key = begin.val();
  bool ok = true;
  uint64_t rows = 0;
  MESOB_ASSERT(rows_max == UINT64_MAX || next_key);
  for (rc = mdb_cursor_get(cur, &key, &val, begin_key != 0 ? MDB_SET_RANGE : MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
    if (key.mv_size != 8) {
      *error = std::string("snapshot: table ") + table_name(t) + " has a key of " +
               std::to_string(key.mv_size) + " bytes";
      ok = false;
      break;
    }
    if (end_key && from_be(key) >= *end_key) {
      rc = MDB_NOTFOUND;
      break;
    }
    if (rows++ == rows_max) {  // the rest in another transaction
      *next_key = from_be(key);
      rc = MDB_NOTFOUND;
      break;
    }
    if (check && !unwrap(int(t), from_be(key), &val, error)) {
      ok = false;
      break;
    }
    if (!fn(from_be(key), {static_cast<const uint8_t*>(val.mv_data), val.mv_size})) {
      ok = false;
      if (error->empty())
        *error = std::string("snapshot: bad row ") + std::to_string(from_be(key)) + " in table " + table_name(t);
      break;
    }
  }
  if (ok && rc != MDB_NOTFOUND) {
    *error = lmdb_error("scan", rc);
    ok = false;
  }
  // A walk of the whole table against LMDB's own count of its rows (kept in the table's
  // record, apart from the tree's pages): a damaged page header that drops entries from a
  // leaf, or a branch that skips one, loses rows without any row failing its check, and
  // only a table some other figure covers (accounts, transfers) would have said so.
  if (ok && begin_key == 0 && !end_key && rows_max == UINT64_MAX) ok = rows_counted(rd.txn, t, rows, error);
  return ok;
}

bool snapshot_store::rows_counted(MDB_txn* txn, table t, uint64_t walked, std::string* error) const {
  MDB_stat st{};
  if (int rc = mdb_stat(txn, dbi_[int(t)], &st); rc != 0) {
    *error = lmdb_error("stat", rc);
    return false;
  }
  if (st.ms_entries == walked) return true;
  *error = rows_lost(t, st.ms_entries, walked);
  return false;
}

bool snapshot_store::check_row_count(table t, std::string* error) {
  if (absent_[int(t)]) return true;
  read_cursor rd(env_, dbi_[int(t)], &stale_readers_cleared_);
  if (!rd.open(error)) return false;
  // A large row's value is its first overflow page's address in the map: handed back,
  // not read.
  MDB_val key{}, val{};
  uint64_t rows = 0;
  int rc = mdb_cursor_get(rd.cur, &key, &val, MDB_FIRST);
  for (; rc == 0; rc = mdb_cursor_get(rd.cur, &key, &val, MDB_NEXT)) ++rows;
  if (rc != MDB_NOTFOUND) {
    *error = lmdb_error("scan", rc);
    return false;
  }
  return rows_counted(rd.txn, t, rows, error);
}

bool snapshot_store::verify_rows(table t, const std::function<void(uint64_t, const std::string&)>& damaged,
                                 uint64_t* rows, std::string* error) {
  *rows = 0;
  if (absent_[int(t)]) return true;
  // A read transaction per verify_rows_per_read rows: one over a whole table would hold
  // its snapshot's pages for as long as the scrub runs, and a running engine's
  // checkpoints could not reuse the pages they free meanwhile (the map would grow).
  // LMDB's count of the table's rows and the newest commit's id, before and after: with
  // no commit between them every read saw that one snapshot, and the walk must find as
  // many rows as it holds (scan_rows says why).
  struct count {
    uint64_t rows = 0, txn = 0;
  };
  auto counted = [&](count* c) {
    read_cursor rd(env_, dbi_[int(t)], &stale_readers_cleared_);
    if (!rd.open(error)) return false;
    MDB_stat st{};
    if (int rc = mdb_stat(rd.txn, dbi_[int(t)], &st); rc != 0) {
      *error = lmdb_error("stat", rc);
      return false;
    }
    *c = {st.ms_entries, mdb_txn_id(rd.txn)};
    return true;
  };
  count before, after;
  if (!counted(&before)) return false;
  std::optional<uint64_t> next = 0;
  while (next) {
    const uint64_t from = *next;
    if (!scan_rows(t, [&](uint64_t key, std::span<const uint8_t> v) {
          ++*rows;
          MDB_val val{v.size(), const_cast<uint8_t*>(v.data())};
          std::string why;
          if (rows_checked_ && !check_row(int(t), key, &val, &why)) damaged(key, why);
          return true;
        }, error, std::nullopt, from, false, verify_rows_per_read, &next))
      return false;
  }
  if (!counted(&after)) return false;
  if (before.txn == after.txn && before.rows != *rows) {
    *error = rows_lost(t, before.rows, *rows);
    return false;
  }
  return true;
}

bool snapshot_store::floor_row(table t, uint64_t key_v, uint64_t* row_key, std::string* bytes, std::string* error) {
  if (absent_[int(t)]) return false;  // no rows (scan_rows says why)
  read_cursor rd(env_, dbi_[int(t)], &stale_readers_cleared_);
  if (!rd.open(error)) return false;
  be_key k(key_v);
  MDB_val key = k.val(), val{};
  // The first row >= key; unless it is key itself, the one before it.
  int rc = mdb_cursor_get(rd.cur, &key, &val, MDB_SET_RANGE);
  if (rc == 0 && key.mv_size == 8 && from_be(key) != key_v) rc = mdb_cursor_get(rd.cur, &key, &val, MDB_PREV);
  else if (rc == MDB_NOTFOUND) rc = mdb_cursor_get(rd.cur, &key, &val, MDB_LAST);
  if (rc == 0 && key.mv_size == 8) {
    *row_key = from_be(key);
    if (!unwrap(int(t), *row_key, &val, error)) return false;
    bytes->assign(static_cast<const char*>(val.mv_data), val.mv_size);
    return true;
  }
  if (rc == 0)
    *error = std::string("snapshot: table ") + table_name(t) + " has a key of " + std::to_string(key.mv_size) + " bytes";
  else if (rc != MDB_NOTFOUND)
    *error = lmdb_error("floor row", rc);
  return false;
}

bool snapshot_store::get(table t, uint64_t key_v, std::string* out, std::string* error, store_failure* failure) {
  if (failure) *failure = store_failure::none;
  if (absent_[int(t)]) return false;  // no rows (scan_rows says why)
  const auto store_error = [&](const char* what, int rc) {
    *error = lmdb_error(what, rc);
    if (failure && !damage_code(rc))
      *failure = rc == MDB_PANIC ? store_failure::lasting : store_failure::passing;
    return false;
  };
  if (auto& probe = failure_probes::instance().resolved_read_failures;
      t == table::resolved && probe.load(std::memory_order_relaxed) > 0) {
    probe.fetch_sub(1);
    return store_error("begin read", failure_probes::instance().resolved_read_panic ? MDB_PANIC : MDB_READERS_FULL);
  }
  MDB_txn* txn = nullptr;
  int rc = begin_read(env_, &txn, &stale_readers_cleared_);
  if (rc != 0) return store_error("begin read", rc);
  be_key k(key_v);
  MDB_val key = k.val(), val{};
  rc = mdb_get(txn, dbi_[int(t)], &key, &val);
  const bool ok = rc == 0 && unwrap(int(t), key_v, &val, error);
  if (ok) out->assign(static_cast<const char*>(val.mv_data), val.mv_size);
  else if (rc != 0 && rc != MDB_NOTFOUND) store_error("get", rc);
  mdb_txn_abort(txn);
  return ok;
}

std::unique_ptr<snapshot_store::writer> snapshot_store::begin(std::string* error) {
  auto w = std::make_unique<writer>();
  w->store_ = this;
  // A stale reader slot would keep this checkpoint from reusing the pages freed since
  // its snapshot (and a failed one, on MDB_MAP_FULL, from being retried with them). The
  // look is a help, not a condition: one that fails (the lock file's probe refused) does
  // not fail the checkpoint, which may well fit without those pages.
  (void)clear_stale_readers(env_, &stale_readers_cleared_);
  const int rc = mdb_txn_begin(env_, nullptr, 0, &w->txn_);
  if (rc != 0) {
    *error = lmdb_error("begin write", rc);
    return nullptr;
  }
  return w;
}

snapshot_store::writer::~writer() {
  if (txn_) mdb_txn_abort(txn_);
}

bool snapshot_store::writer::put(table t, uint64_t key_v, std::span<const uint8_t> bytes) {
  const int rc = store_->put_row(txn_, store_->dbi_[int(t)], int(t), key_v, bytes, 0);
  if (rc != 0) error_ = lmdb_error("put", rc);
  return rc == 0;
}

bool snapshot_store::writer::get(table t, uint64_t key_v, std::string* out) {
  error_.clear();  // absent says so by an empty error(), whatever failed before
  be_key k(key_v);
  MDB_val key = k.val(), val{};
  const int rc = mdb_get(txn_, store_->dbi_[int(t)], &key, &val);
  const bool ok = rc == 0 && store_->unwrap(int(t), key_v, &val, &error_);
  if (ok) out->assign(static_cast<const char*>(val.mv_data), val.mv_size);
  else if (rc != 0 && rc != MDB_NOTFOUND) error_ = lmdb_error("get", rc);
  return ok;
}

bool snapshot_store::writer::append(table t, uint64_t key_v, std::span<const uint8_t> bytes) {
  const int rc = store_->put_row(txn_, store_->dbi_[int(t)], int(t), key_v, bytes, MDB_APPEND);
  if (rc != 0) error_ = lmdb_error("append", rc);
  return rc == 0;
}

bool snapshot_store::writer::clear(table t) {
  int rc = mdb_drop(txn_, store_->dbi_[int(t)], 0);
  if (rc != 0) error_ = lmdb_error("clear", rc);
  return rc == 0;
}

bool snapshot_store::writer::erase(table t, uint64_t key_v) {
  be_key k(key_v);
  MDB_val key = k.val();
  const int rc = mdb_del(txn_, store_->dbi_[int(t)], &key, nullptr);
  if (rc != 0 && rc != MDB_NOTFOUND) {
    error_ = lmdb_error("erase", rc);
    return false;
  }
  return true;
}

bool snapshot_store::writer::erase_from(table t, uint64_t first_key) {
  MDB_cursor* cur = nullptr;
  int rc = mdb_cursor_open(txn_, store_->dbi_[int(t)], &cur);
  be_key k(first_key);
  MDB_val key = k.val(), val{};
  if (rc == 0) rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
  while (rc == 0) {
    rc = mdb_cursor_del(cur, 0);
    if (rc == 0) rc = mdb_cursor_get(cur, &key, &val, MDB_GET_CURRENT);
    if (rc == EINVAL) rc = MDB_NOTFOUND;  // deleted the last row
  }
  if (cur) mdb_cursor_close(cur);
  if (rc != MDB_NOTFOUND) {
    error_ = lmdb_error("erase", rc);
    return false;
  }
  return true;
}

bool snapshot_store::writer::commit_without_meta() {
  auto& probes = failure_probes::instance();
  int rc = 0;
  if (probes.rows_commit_failures.load(std::memory_order_relaxed) > 0) {
    probes.rows_commit_failures.fetch_sub(1, std::memory_order_relaxed);
    rc = probes.rows_commit_errno.load(std::memory_order_relaxed);
    if (rc == 0) rc = EIO;
    mdb_txn_abort(txn_);
  } else {
    rc = mdb_txn_commit(txn_);
  }
  txn_ = nullptr;
  if (rc != 0) error_ = lmdb_error("commit", rc);
  return rc == 0;
}

bool snapshot_store::writer::commit(const snapshot_meta& meta) {
  int rc = store_->put_row(txn_, store_->dbi_meta_, meta_table, 0,
                           {reinterpret_cast<const uint8_t*>(&meta), sizeof meta}, 0);
  auto& probes = failure_probes::instance();
  if (rc == 0 && probes.snapshot_commit_errno.load(std::memory_order_relaxed) != 0)
    rc = probes.snapshot_commit_errno.exchange(0, std::memory_order_relaxed);
  if (rc == 0 && probes.snapshot_commit_failures.load(std::memory_order_relaxed) > 0) {
    probes.snapshot_commit_failures.fetch_sub(1, std::memory_order_relaxed);
    rc = EIO;
  }
  if (rc == 0) rc = mdb_txn_commit(txn_);
  else mdb_txn_abort(txn_);
  txn_ = nullptr;
  if (rc != 0) error_ = lmdb_error("commit", rc);
  return rc == 0;
}

}  // namespace mesob::storage
