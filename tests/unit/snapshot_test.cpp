#include "storage/snapshot.hpp"

#include <gtest/gtest.h>

#include <functional>

#include <fcntl.h>
#include <sys/mman.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lmdb.h>
#include <csignal>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "support/temp_dir.hpp"

using namespace mesob::storage;
using mesob::test::temp_dir;

namespace {
std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A child process reading the store at `dir` (LMDB: one environment of a file per
// process): it opens it read-only, begins `reads` read transactions (-1: until the
// reader table is full), says so, and waits to be killed; killed, its slots stay behind.
struct reader_process {
  pid_t pid = -1;
  char said = 0;
  reader_process(const std::string& dir, int reads) {
    int p[2];
    if (::pipe(p) != 0) return;
    pid = ::fork();
    if (pid == 0) {
      MDB_env* env = nullptr;
      const bool opened = mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 32) == 0 &&
                          mdb_env_open(env, dir.c_str(), MDB_RDONLY | MDB_NOTLS, 0644) == 0;
      int rc = 0;
      for (int i = 0; opened && rc == 0 && (reads < 0 || i < reads) && i < 100'000; ++i) {
        MDB_txn* txn = nullptr;
        rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
      }
      const char c = opened && (reads < 0 ? rc == MDB_READERS_FULL : rc == 0) ? '1' : '0';
      (void)!::write(p[1], &c, 1);
      for (;;) ::pause();
    }
    if (pid > 0 && ::read(p[0], &said, 1) != 1) said = 0;
    ::close(p[0]);
    ::close(p[1]);
  }
  [[nodiscard]] bool ready() const { return pid > 0 && said == '1'; }
  void kill() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    int status = 0;
    (void)::waitpid(pid, &status, 0);
    pid = -1;
  }
  ~reader_process() { kill(); }
  reader_process(const reader_process&) = delete;
  reader_process& operator=(const reader_process&) = delete;
};
}  // namespace

TEST(snapshot, empty_store_has_no_meta) {
  temp_dir d;
  std::string err;
  auto s = snapshot_store::open(d.path(), 1 << 26, &err);
  ASSERT_TRUE(s) << err;
  EXPECT_FALSE(s->read_meta(&err).has_value());
  EXPECT_TRUE(err.empty()) << err;
}

TEST(snapshot, state_and_lsn_commit_together) {
  temp_dir d;
  std::string err;
  {
    auto s = snapshot_store::open(d.path(), 1 << 26, &err);
    ASSERT_TRUE(s) << err;
    auto w = s->begin(&err);
    ASSERT_TRUE(w) << err;
    ASSERT_TRUE(w->put(table::accounts, 42, bytes("forty-two")));
    ASSERT_TRUE(w->append(table::transfers, 0, bytes("t0")));
    ASSERT_TRUE(w->append(table::transfers, 1, bytes("t1")));
    snapshot_meta m;
    m.lsn = 7;
    m.next_serial = 2;
    ASSERT_TRUE(w->commit(m)) << w->error();
    // An aborted checkpoint leaves the previous snapshot untouched.
    auto w2 = s->begin(&err);
    ASSERT_TRUE(w2->put(table::accounts, 43, bytes("never")));
  }
  auto s = snapshot_store::open(d.path(), 1 << 26, &err);
  ASSERT_TRUE(s) << err;
  auto m = s->read_meta(&err);
  ASSERT_TRUE(m.has_value()) << err;
  EXPECT_EQ(m->lsn, 7u);
  std::string v;
  EXPECT_TRUE(s->get(table::accounts, 42, &v, &err));
  EXPECT_EQ(v, "forty-two");
  EXPECT_FALSE(s->get(table::accounts, 43, &v, &err));
  std::vector<uint64_t> keys;
  ASSERT_TRUE(s->scan(table::transfers, [&](uint64_t k, std::span<const uint8_t>) {
    keys.push_back(k);
    return true;
  }, &err)) << err;
  EXPECT_EQ(keys, (std::vector<uint64_t>{0, 1}));
}

TEST(snapshot, append_out_of_order_is_refused) {
  temp_dir d;
  std::string err;
  auto s = snapshot_store::open(d.path(), 1 << 26, &err);
  auto w = s->begin(&err);
  ASSERT_TRUE(w->append(table::transfers, 5, bytes("x")));
  EXPECT_FALSE(w->append(table::transfers, 3, bytes("y")));
  EXPECT_NE(w->error().find("append"), std::string::npos);
}

TEST(snapshot, map_full_fails_the_checkpoint_and_keeps_the_last_one) {
  temp_dir d;
  std::string err;
  auto s = snapshot_store::open(d.path(), 1 << 20, &err);  // 1 MiB ceiling
  ASSERT_TRUE(s) << err;
  {
    auto w = s->begin(&err);
    snapshot_meta m;
    m.lsn = 1;
    ASSERT_TRUE(w->commit(m));
  }
  auto w = s->begin(&err);
  std::string big(4000, 'x');
  bool failed = false;
  for (uint64_t k = 0; k < 2000 && !failed; ++k) failed = !w->put(table::accounts, k, bytes(big));
  EXPECT_TRUE(failed);
  EXPECT_NE(w->error().find("MDB_MAP_FULL"), std::string::npos) << w->error();
  w.reset();
  auto m = s->read_meta(&err);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->lsn, 1u);
}

TEST(snapshot, scan_covers_the_whole_key_range_and_stops_at_an_end_key) {
  temp_dir d;
  std::string err;
  auto s = snapshot_store::open(d.path(), 1 << 26, &err);
  auto w = s->begin(&err);
  for (uint64_t k : {uint64_t(0), uint64_t(1), uint64_t(1) << 63, UINT64_MAX})
    ASSERT_TRUE(w->put(table::accounts, k, bytes("v")));
  ASSERT_TRUE(w->commit(snapshot_meta{}));
  std::vector<uint64_t> keys;
  auto collect = [&](uint64_t k, std::span<const uint8_t>) {
    keys.push_back(k);
    return true;
  };
  ASSERT_TRUE(s->scan(table::accounts, collect, &err)) << err;
  EXPECT_EQ(keys, (std::vector<uint64_t>{0, 1, uint64_t(1) << 63, UINT64_MAX}));
  keys.clear();
  ASSERT_TRUE(s->scan(table::accounts, collect, &err, 2)) << err;
  EXPECT_EQ(keys, (std::vector<uint64_t>{0, 1}));
}

namespace {
// Resident kB of this process's mappings of files whose path contains `needle`.
long mapped_rss_kb(const std::string& needle) {
  std::ifstream f("/proc/self/smaps");
  std::string line;
  bool in = false;
  long rss = 0;
  while (std::getline(f, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
        line.find('-') < 20)
      in = line.find(needle) != std::string::npos;
    else if (in && line.rfind("Rss:", 0) == 0)
      rss += std::stol(line.substr(4));
  }
  return rss;
}
}  // namespace

TEST(snapshot, release_pages_drops_scanned_history_from_resident_memory) {
  temp_dir d;
  std::string err;
  auto s = snapshot_store::open(d.path(), 1ull << 32, &err);
  ASSERT_TRUE(s) << err;
  auto w = s->begin(&err);
  const std::string v(104, 'x');
  for (uint64_t k = 0; k < 200000; ++k) ASSERT_TRUE(w->append(table::transfers, k, bytes(v)));
  ASSERT_TRUE(w->commit(snapshot_meta{}));
  uint64_t n = 0;
  ASSERT_TRUE(s->scan(table::transfers, [&](uint64_t, std::span<const uint8_t>) {
    ++n;
    return true;
  }, &err));
  EXPECT_EQ(n, 200000u);
  EXPECT_GT(mapped_rss_kb("data.mdb"), 10000);  // ~24 MB of pages were read through the map
  s->release_pages();
  EXPECT_LT(mapped_rss_kb("data.mdb"), 1000);
}

// Counting a table's rows reads its tree, not its large rows: 4,000 rows of 6,000 bytes
// (two pages each, 32 MB) are counted through a few leaf pages, where a scan maps them all.
// (The kernel maps the pages around each one read that it holds: several MB here, whose
// share of the rows' still shows the difference.)
TEST(snapshot, counting_rows_reads_no_large_row) {
  temp_dir d;
  std::string err;
  auto s = snapshot_store::open(d.path(), 1ull << 32, &err);
  ASSERT_TRUE(s) << err;
  auto w = s->begin(&err);
  const std::string v(6000, 'r');
  for (uint64_t k = 0; k < 4000; ++k) ASSERT_TRUE(w->append(table::transfers, k, bytes(v)));
  ASSERT_TRUE(w->commit(snapshot_meta{}));
  s->release_pages();
  ASSERT_EQ(mapped_rss_kb("data.mdb"), 0);
  ASSERT_TRUE(s->check_row_count(table::transfers, &err)) << err;
  const long counting = mapped_rss_kb("data.mdb");
  s->release_pages();
  ASSERT_TRUE(s->scan(table::transfers, [](uint64_t, std::span<const uint8_t>) { return true; }, &err)) << err;
  const long scanning = mapped_rss_kb("data.mdb");
  EXPECT_GT(scanning, 30000) << "a scan reads every row";
  EXPECT_LT(counting * 4, scanning) << counting << " kB mapped counting, " << scanning << " scanning";
  s->release_pages();
}

TEST(snapshot, erase_from_drops_the_tail_of_a_table) {
  temp_dir d;
  std::string err;
  auto s = snapshot_store::open(d.path(), 1 << 26, &err);
  auto w = s->begin(&err);
  for (uint64_t k = 0; k < 1000; ++k) ASSERT_TRUE(w->append(table::transfers, k, bytes("r")));
  ASSERT_TRUE(w->commit_without_meta());
  w = s->begin(&err);
  ASSERT_TRUE(w->erase_from(table::transfers, 600)) << w->error();
  ASSERT_TRUE(w->commit(snapshot_meta{}));
  uint64_t n = 0, last = 0;
  ASSERT_TRUE(s->scan(table::transfers, [&](uint64_t k, std::span<const uint8_t>) {
    ++n;
    last = k;
    return true;
  }, &err));
  EXPECT_EQ(n, 600u);
  EXPECT_EQ(last, 599u);
  w = s->begin(&err);
  EXPECT_TRUE(w->erase_from(table::transfers, 5000)) << w->error();  // nothing to erase
}

namespace {
// Pages of `file` in the page cache (mincore over a mapping of our own).
size_t cached_pages(const std::string& file) {
  const int fd = ::open(file.c_str(), O_RDONLY);
  if (fd < 0) return 0;
  struct stat st {};
  ::fstat(fd, &st);
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  const size_t len = size_t(st.st_size);
  void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return 0;
  std::vector<unsigned char> v((len + page - 1) / page);
  size_t n = 0;
  if (::mincore(p, len, v.data()) == 0)
    for (unsigned char c : v) n += c & 1;
  ::munmap(p, len);
  return n;
}
}  // namespace

// Rows that fill a page of their own leave the page cache once durable, the rest of
// the file (small rows, the tree) stays, and the rows still read back whole.
TEST(snapshot, uncache_rows_drops_only_the_pages_of_the_rows_asked_for) {
  temp_dir d;
  struct statfs fs {};
  if (::statfs(d.path().c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC)
    GTEST_SKIP() << "tmpfs: the page cache is the file's only copy, nothing to drop";
  std::string err;
  auto s = snapshot_store::open(d.path(), 1 << 26, &err);
  ASSERT_TRUE(s) << err;
  auto row = [](uint64_t k) { return std::string(3952, char('a' + k % 26)); };  // one page each
  auto w = s->begin(&err);
  ASSERT_TRUE(w) << err;
  for (uint64_t k = 0; k < 200; ++k) ASSERT_TRUE(w->append(table::transfers, k, bytes(row(k))));
  for (uint64_t k = 0; k < 200; ++k) ASSERT_TRUE(w->put(table::accounts, k, bytes("small row")));
  ASSERT_TRUE(w->commit_without_meta()) << w->error();
  s->release_pages();
  const std::string file = d.path() + "/data.mdb";
  const size_t before = cached_pages(file);
  ASSERT_GE(before, 200u) << "the commit's pages are in the page cache";
  s->uncache_rows(table::transfers, 50, 150);
  // The page cache keeps a multi-page folio whole while any of its pages lies outside
  // the range, so a few pages at the edges of runs may stay; never more than asked.
  const size_t dropped = before - cached_pages(file);
  EXPECT_GE(dropped, 50u);
  EXPECT_LE(dropped, 100u);
  s->uncache_rows(table::accounts, 0, 200);  // small rows share leaf pages: kept
  EXPECT_EQ(before - cached_pages(file), dropped);
  for (uint64_t k = 0; k < 200; ++k) {
    std::string v;
    ASSERT_TRUE(s->get(table::transfers, k, &v, &err)) << err;
    ASSERT_EQ(v, row(k)) << "row " << k;
  }
}

namespace {
std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
// Flips one bit of the only copy of `needle` in `path`, at `at` bytes into it.
void flip_in_file(const std::string& path, const std::string& needle, size_t at) {
  std::string all = read_file(path);
  const size_t pos = all.find(needle);
  ASSERT_NE(pos, std::string::npos) << "not in the file";
  ASSERT_EQ(all.find(needle, pos + 1), std::string::npos) << "more than one copy";
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(std::streamoff(pos + at));
  const char c = char(all[pos + at] ^ 0x10);
  f.write(&c, 1);
}

// A store as a build before rows' checks wrote it: LMDB's own calls, no checks.
void write_unchecked_store(const std::string& dir, const std::vector<std::pair<uint64_t, std::string>>& transfers,
                           const std::string& account_42, uint32_t version = 11, uint64_t magic = snapshot_magic) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_set_maxdbs(env, 32), 0);
  ASSERT_EQ(mdb_env_set_mapsize(env, 1 << 28), 0);
  ASSERT_EQ(mdb_env_open(env, dir.c_str(), MDB_NOTLS, 0644), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  auto put = [&](const char* table_name, uint64_t k, const std::string& v) {
    MDB_dbi dbi = 0;
    ASSERT_EQ(mdb_dbi_open(txn, table_name, MDB_CREATE, &dbi), 0);
    uint8_t kb[8];
    for (int i = 0; i < 8; ++i) kb[i] = uint8_t(k >> (56 - 8 * i));
    MDB_val key{8, kb}, val{v.size(), const_cast<char*>(v.data())};
    ASSERT_EQ(mdb_put(txn, dbi, &key, &val, 0), 0);
  };
  snapshot_meta m;
  m.version = version;
  m.magic = magic;
  m.lsn = 77;
  put("meta", 0, std::string(reinterpret_cast<const char*>(&m), sizeof m));
  put("accounts", 42, account_42);
  for (const auto& [k, v] : transfers) put("transfers", k, v);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

// One write transaction on table `table_name` of the store in `dir`, through LMDB itself
// (what a damaged or hand-edited file would hold), committed.
void edit_raw(const std::string& dir, const char* table_name, const std::function<void(MDB_txn*, MDB_dbi)>& edit) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_set_maxdbs(env, 32), 0);
  ASSERT_EQ(mdb_env_open(env, dir.c_str(), MDB_NOTLS, 0644), 0);
  MDB_txn* txn = nullptr;
  MDB_dbi dbi = 0;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  ASSERT_EQ(mdb_dbi_open(txn, table_name, 0, &dbi), 0);
  edit(txn, dbi);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

// The stored size of one row, as LMDB holds it.
size_t raw_size(const std::string& dir, const char* table_name, uint64_t k) {
  MDB_env* env = nullptr;
  mdb_env_create(&env);
  mdb_env_set_maxdbs(env, 32);
  size_t n = 0;
  MDB_txn* txn = nullptr;
  MDB_dbi dbi = 0;
  if (mdb_env_open(env, dir.c_str(), MDB_NOTLS | MDB_RDONLY, 0644) == 0 &&
      mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) == 0 && mdb_dbi_open(txn, table_name, 0, &dbi) == 0) {
    uint8_t kb[8];
    for (int i = 0; i < 8; ++i) kb[i] = uint8_t(k >> (56 - 8 * i));
    MDB_val key{8, kb}, val{};
    if (mdb_get(txn, dbi, &key, &val) == 0) n = val.mv_size;
  }
  if (txn) mdb_txn_abort(txn);
  mdb_env_close(env);
  return n;
}
}  // namespace

// LMDB reads back whatever the disk holds. A bit flipped in a row, small or on pages of
// its own, or in the snapshot's meta row, fails that row's reads with its table and key
// named; the other rows still read.
TEST(snapshot, a_damaged_row_fails_its_check_and_is_named) {
  temp_dir d;
  std::string err;
  const std::string small = "account forty-two's bytes";
  const std::string big(6000, 'B');  // overflow pages
  {
    auto s = snapshot_store::open(d.path(), 1 << 26, &err);
    ASSERT_TRUE(s) << err;
    auto w = s->begin(&err);
    ASSERT_TRUE(w->put(table::accounts, 42, bytes(small)));
    ASSERT_TRUE(w->put(table::accounts, 43, bytes("account forty-three")));
    ASSERT_TRUE(w->append(table::transfers, 9, bytes(big)));
    snapshot_meta m;
    m.lsn = 0x5151515151515151ull;
    ASSERT_TRUE(w->commit(m)) << w->error();
  }
  const std::string file = d.path() + "/data.mdb";
  flip_in_file(file, small, 8);
  flip_in_file(file, big, 5000);
  flip_in_file(file, std::string(8, '\x51'), 3);
  auto s = snapshot_store::open(d.path(), 1 << 26, &err);
  ASSERT_TRUE(s) << err;
  std::string v;
  err.clear();
  EXPECT_FALSE(s->get(table::accounts, 42, &v, &err));
  EXPECT_NE(err.find("row 42 of table accounts (29 bytes) fails its check"), std::string::npos) << err;
  err.clear();
  EXPECT_FALSE(s->scan(table::accounts, [](uint64_t, std::span<const uint8_t>) { return true; }, &err));
  EXPECT_NE(err.find("row 42 of table accounts"), std::string::npos) << err;
  err.clear();
  uint64_t key = 0;
  EXPECT_FALSE(s->floor_row(table::transfers, 100, &key, &v, &err));
  EXPECT_NE(err.find("row 9 of table transfers (6004 bytes) fails its check"), std::string::npos) << err;
  err.clear();
  EXPECT_FALSE(s->read_meta(&err).has_value());
  EXPECT_NE(err.find("row 0 of table meta"), std::string::npos) << err;
  err.clear();
  EXPECT_TRUE(s->get(table::accounts, 43, &v, &err)) << err;
  EXPECT_EQ(v, "account forty-three");
}

// A row's whole stored bytes, check included, under another key (as a damaged branch
// page would put them) fail: the key is in the check.
TEST(snapshot, a_row_under_another_key_fails_its_check) {
  temp_dir d;
  std::string err;
  {
    auto s = snapshot_store::open(d.path(), 1 << 26, &err);
    ASSERT_TRUE(s) << err;
    auto w = s->begin(&err);
    ASSERT_TRUE(w->put(table::accounts, 42, bytes("forty-two")));
    ASSERT_TRUE(w->commit(snapshot_meta{})) << w->error();
  }
  ASSERT_NO_FATAL_FAILURE(edit_raw(d.path(), "accounts", [](MDB_txn* txn, MDB_dbi dbi) {
    uint8_t k42[8] = {0, 0, 0, 0, 0, 0, 0, 42}, k44[8] = {0, 0, 0, 0, 0, 0, 0, 44};
    MDB_val key{8, k42}, val{};
    ASSERT_EQ(mdb_get(txn, dbi, &key, &val), 0);
    const std::string stored(static_cast<const char*>(val.mv_data), val.mv_size);
    MDB_val key44{8, k44}, copy{stored.size(), const_cast<char*>(stored.data())};
    ASSERT_EQ(mdb_put(txn, dbi, &key44, &copy, 0), 0);
  }));
  auto s = snapshot_store::open(d.path(), 1 << 26, &err);
  ASSERT_TRUE(s) << err;
  std::string v;
  EXPECT_TRUE(s->get(table::accounts, 42, &v, &err)) << err;
  EXPECT_FALSE(s->get(table::accounts, 44, &v, &err));
  EXPECT_NE(err.find("row 44 of table accounts"), std::string::npos) << err;
}

// A store of the format before checks: read as it is when opened read-only; opened for
// writing, every row (enough to split pages as they grow, some on pages of their own)
// gets its check in one transaction, the meta row's version becomes this format's, and
// every row reads back as it was.
TEST(snapshot, an_older_store_is_converted_when_opened) {
  temp_dir d;
  std::vector<std::pair<uint64_t, std::string>> transfers;
  for (uint64_t k = 0; k < 3000; ++k)
    transfers.emplace_back(k, k % 500 == 7 ? std::string(5000 + k, char('a' + k % 26))
                                           : std::string(20 + k % 90, char('a' + k % 26)));
  write_unchecked_store(d.path(), transfers, "the forty-second");
  ASSERT_EQ(raw_size(d.path(), "accounts", 42), 16u);
  std::string err;
  auto read_all = [&](snapshot_store& s) {
    std::vector<std::pair<uint64_t, std::string>> got;
    EXPECT_TRUE(s.scan(table::transfers, [&](uint64_t k, std::span<const uint8_t> v) {
      got.emplace_back(k, std::string(reinterpret_cast<const char*>(v.data()), v.size()));
      return true;
    }, &err)) << err;
    EXPECT_TRUE(got == transfers);
    std::string v;
    EXPECT_TRUE(s.get(table::accounts, 42, &v, &err)) << err;
    EXPECT_EQ(v, "the forty-second");
    auto m = s.read_meta(&err);
    EXPECT_TRUE(m.has_value()) << err;
    return m ? m->version : 0;
  };
  {
    auto ro = snapshot_store::open_read_only(d.path(), &err);
    ASSERT_TRUE(ro) << err;
    EXPECT_FALSE(ro->rows_checked());
    EXPECT_EQ(read_all(*ro), 11u);
    // Tables the store does not have read as empty. Before, their handle was LMDB's table
    // of tables: a scan met "meta" (a key of 4 bytes) and failed, a get of the key
    // spelling "accounts" found that table's record.
    uint64_t seen = 0;
    EXPECT_TRUE(ro->scan(table::payouts, [&](uint64_t, std::span<const uint8_t>) { return ++seen, true; }, &err))
        << err;
    EXPECT_EQ(seen, 0u);
    uint64_t spelled = 0;
    for (char c : std::string("accounts")) spelled = spelled << 8 | uint8_t(c);
    std::string v, row_err;
    EXPECT_FALSE(ro->get(table::payouts, spelled, &v, &row_err));
    EXPECT_TRUE(row_err.empty()) << row_err;
    uint64_t row_key = 0;
    EXPECT_FALSE(ro->floor_row(table::payouts, spelled, &row_key, &v, &row_err));
    EXPECT_TRUE(row_err.empty()) << row_err;
  }
  {
    auto s = snapshot_store::open(d.path(), 1 << 28, &err);
    ASSERT_TRUE(s) << err;
    EXPECT_TRUE(s->rows_checked());
    EXPECT_EQ(read_all(*s), snapshot_format_version);
    EXPECT_EQ(s->read_meta(&err)->lsn, 77u);
  }
  EXPECT_EQ(raw_size(d.path(), "accounts", 42), 16u + snapshot_row_check_bytes);
  EXPECT_EQ(raw_size(d.path(), "transfers", 507), 5507u + snapshot_row_check_bytes);
  auto again = snapshot_store::open(d.path(), 1 << 28, &err);  // converted once only
  ASSERT_TRUE(again) << err;
  EXPECT_EQ(read_all(*again), snapshot_format_version);
  auto ro = snapshot_store::open_read_only(d.path(), &err);
  ASSERT_TRUE(ro) << err;
  EXPECT_TRUE(ro->rows_checked());
  EXPECT_EQ(read_all(*ro), snapshot_format_version);
}

// A store of this format whose meta rows are lost (the rows' format row; the snapshot row
// too, or not) is damage: opening it for writing refuses, rewriting nothing. Before, it was
// taken for a store of the format before checks and every row was given a second check,
// which a repair by hand would then have to strip from each.
TEST(snapshot, a_store_that_lost_its_meta_rows_is_refused_unchanged) {
  for (const bool snapshot_row_too : {true, false}) {
    SCOPED_TRACE(snapshot_row_too ? "both meta rows lost" : "the rows' format row lost");
    temp_dir d;
    std::string err;
    write_unchecked_store(d.path(), {{5, "a transfer's row"}}, "the forty-second");
    ASSERT_TRUE(snapshot_store::open(d.path(), 1 << 28, &err)) << err;  // converted: checked rows
    const size_t checked = raw_size(d.path(), "accounts", 42);
    ASSERT_EQ(checked, 16u + snapshot_row_check_bytes);
    ASSERT_NO_FATAL_FAILURE(edit_raw(d.path(), "meta", [&](MDB_txn* txn, MDB_dbi dbi) {
      for (uint64_t k : {uint64_t(1), uint64_t(0)}) {
        if (k == 0 && !snapshot_row_too) continue;
        uint8_t kb[8] = {0, 0, 0, 0, 0, 0, 0, uint8_t(k)};
        MDB_val key{8, kb};
        ASSERT_EQ(mdb_del(txn, dbi, &key, nullptr), 0);
      }
    }));
    err.clear();
    EXPECT_FALSE(snapshot_store::open(d.path(), 1 << 28, &err));
    // (With the snapshot row there, the conversion refuses it: it has its check, so it is
    // not one of the format before checks.)
    EXPECT_NE(err.find(snapshot_row_too ? "its meta rows are lost; nothing was changed" : "meta record has"),
              std::string::npos)
        << err;
    EXPECT_EQ(raw_size(d.path(), "accounts", 42), checked) << "no second check";
  }
}

// A store copied or restored without its lock file opens read-only without one, creating
// nothing: before, the inspection made lock.mdb, owned by whoever ran it (root under
// sudo), which the engine's own user could then not open.
TEST(snapshot, a_read_only_open_of_a_store_without_its_lock_file_creates_none) {
  temp_dir d;
  write_unchecked_store(d.path(), {{1, "one"}}, "an account");
  const std::string lock = d.path() + "/lock.mdb";
  ASSERT_TRUE(std::filesystem::exists(lock));
  ASSERT_TRUE(std::filesystem::remove(lock));
  std::string err;
  {
    auto ro = snapshot_store::open_read_only(d.path(), &err);
    ASSERT_TRUE(ro) << err;
    ASSERT_EQ(ro->read_meta(&err)->version, 11u) << err;
  }
  EXPECT_FALSE(std::filesystem::exists(lock));
  // With the lock file there (an engine may have the store open), it is used as before.
  { auto s = snapshot_store::open(d.path(), 1 << 26, &err); ASSERT_TRUE(s) << err; }
  ASSERT_TRUE(std::filesystem::exists(lock));
  auto ro = snapshot_store::open_read_only(d.path(), &err);
  ASSERT_TRUE(ro) << err;
  EXPECT_TRUE(ro->read_meta(&err).has_value()) << err;
}

// mesob-log opens a store read-only and reads its meta row; an engine starting meanwhile
// may convert the store. Before, the rows' format was read once, at open, and the
// converted meta row (its check on the end) was then "a meta record of 92 bytes".
TEST(snapshot, a_read_only_store_reads_the_meta_of_a_conversion_since_it_opened) {
  temp_dir d;
  write_unchecked_store(d.path(), {{1, "one"}}, "an account");
  std::string err;
  auto ro = snapshot_store::open_read_only(d.path(), &err);
  ASSERT_TRUE(ro) << err;
  EXPECT_FALSE(ro->rows_checked());
  ASSERT_EQ(ro->read_meta(&err)->version, 11u) << err;
  const pid_t child = ::fork();  // LMDB: one environment of a file per process
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::string e;
    auto s = snapshot_store::open(d.path(), 1 << 26, &e);
    ::_exit(s && s->rows_checked() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the conversion failed";
  const auto m = ro->read_meta(&err);
  ASSERT_TRUE(m.has_value()) << err;
  EXPECT_EQ(m->version, snapshot_format_version);
  EXPECT_TRUE(ro->rows_checked());
}

// A process killed inside a read transaction leaves its reader slot behind, and LMDB
// clears the table at open only when no other process has the store open. open() clears
// such slots (mdb_reader_check): a stale one pins the pages of its snapshot, so no later
// commit could reuse what was freed since and the map would fill.
TEST(snapshot, a_reader_killed_inside_a_read_is_cleared_at_open) {
  temp_dir d;
  {
    std::string err;
    auto s = snapshot_store::open(d.path(), 1 << 26, &err);
    ASSERT_TRUE(s) << err;
  }
  // One process keeps the store open (no read), another is killed inside a read.
  reader_process keeper(d.path(), 0), reader(d.path(), 1);
  ASSERT_TRUE(keeper.ready());
  ASSERT_TRUE(reader.ready());
  reader.kill();
  std::string err;
  auto s = snapshot_store::open(d.path(), 1 << 26, &err);
  ASSERT_TRUE(s) << err;
  EXPECT_EQ(s->stale_readers_cleared(), 1u) << "the killed reader's slot";
}

// A reader killed while the engine has the store open (mesob-log, say) leaves a slot
// open() cannot see. Each checkpoint looks first: the stale slot would pin the snapshot
// it read, no checkpoint could reuse the pages freed since, and the map would fill (here
// each checkpoint rewrites a 1-MiB row in a 16-MiB map).
TEST(snapshot, a_reader_killed_while_the_store_is_open_is_cleared_before_the_next_checkpoint) {
  temp_dir d;
  std::string err;
  auto s = snapshot_store::open(d.path(), 16 << 20, &err);
  ASSERT_TRUE(s) << err;
  const auto checkpoint = [&](uint64_t lsn) {
    auto w = s->begin(&err);
    if (!w) return err;
    const std::string big(1 << 20, char('a' + lsn % 26));
    snapshot_meta m;
    m.lsn = lsn;
    if (!w->put(table::transfers, 1, bytes(big)) || !w->commit(m)) return w->error();
    return std::string();
  };
  ASSERT_EQ(checkpoint(1), "");
  reader_process reader(d.path(), 1);
  ASSERT_TRUE(reader.ready());
  reader.kill();
  EXPECT_EQ(s->stale_readers_cleared(), 0u);
  for (uint64_t lsn = 2; lsn <= 40; ++lsn) ASSERT_EQ(checkpoint(lsn), "") << "checkpoint " << lsn;
  EXPECT_EQ(s->stale_readers_cleared(), 1u) << "the killed reader's slot";
  EXPECT_EQ(s->read_meta(&err)->lsn, 40u);
}

// A process killed holding every slot of the reader table (LMDB's 126) would leave
// every read failing with MDB_READERS_FULL; a read that finds the table full clears the
// slots of dead processes and goes on.
TEST(snapshot, a_reader_table_filled_by_a_dead_process_is_cleared_by_the_next_read) {
  temp_dir d;
  std::string err;
  auto s = snapshot_store::open(d.path(), 1 << 24, &err);
  ASSERT_TRUE(s) << err;
  {
    auto w = s->begin(&err);
    snapshot_meta m;
    m.lsn = 7;
    ASSERT_TRUE(w->put(table::accounts, 42, bytes("forty-two")));
    ASSERT_TRUE(w->commit(m)) << w->error();
  }
  reader_process reader(d.path(), -1);
  ASSERT_TRUE(reader.ready()) << "the child filled the reader table";
  reader.kill();
  std::string v;
  EXPECT_TRUE(s->get(table::accounts, 42, &v, &err)) << err;
  EXPECT_EQ(v, "forty-two");
  EXPECT_GE(s->stale_readers_cleared(), 100u);
  auto m = s->read_meta(&err);
  ASSERT_TRUE(m) << err;
  EXPECT_EQ(m->lsn, 7u);
}

// A scrub reads verify_rows_per_read rows to a transaction: one transaction over a whole
// table would hold its snapshot's pages as long as the scrub ran. Seen from outside: a
// commit made while the scrub is in its first rows is what it reads further on (the
// damaged row the commit rewrote is not reported), and every row is counted once.
TEST(snapshot, a_scrub_reads_in_transactions_of_a_bounded_number_of_rows) {
  temp_dir d;
  std::string err;
  const uint64_t n = 3 * snapshot_store::verify_rows_per_read + 100, early = 5, late = n - 50;
  const auto row = [](uint64_t k) {
    char b[40];
    std::snprintf(b, sizeof b, "account row %09llu", static_cast<unsigned long long>(k));
    return std::string(b);
  };
  {
    auto s = snapshot_store::open(d.path(), 1 << 26, &err);
    ASSERT_TRUE(s) << err;
    auto w = s->begin(&err);
    // Appended (no page split leaves a second copy of a row for the damage to miss).
    for (uint64_t k = 1; k <= n; ++k) ASSERT_TRUE(w->append(table::accounts, k, bytes(row(k))));
    snapshot_meta m;
    m.lsn = 1;
    ASSERT_TRUE(w->commit(m)) << w->error();
  }
  const std::string file = d.path() + "/data.mdb";
  flip_in_file(file, row(early), 14);
  flip_in_file(file, row(late), 14);
  auto s = snapshot_store::open(d.path(), 1 << 26, &err);
  ASSERT_TRUE(s) << err;
  const auto scrub = [&](bool mend_late) {
    std::vector<uint64_t> damaged;
    uint64_t rows = 0;
    EXPECT_TRUE(s->verify_rows(table::accounts, [&](uint64_t key, const std::string& why) {
      damaged.push_back(key);
      EXPECT_NE(why.find("fails its check"), std::string::npos) << why;
      if (mend_late && key == early) {  // a checkpoint while the scrub is in its first rows
        auto w = s->begin(&err);
        EXPECT_TRUE(w && w->put(table::accounts, late, bytes(row(late))) && w->commit_without_meta());
      }
    }, &rows, &err)) << err;
    EXPECT_EQ(rows, n);
    return damaged;
  };
  EXPECT_EQ(scrub(false), (std::vector<uint64_t>{early, late}));
  EXPECT_EQ(scrub(true), (std::vector<uint64_t>{early})) << "the rewritten row, read after the commit";
  EXPECT_EQ(scrub(false), (std::vector<uint64_t>{early}));
}

// A leaf page whose header lost an entry (its lower bound two bytes short: a bit flipped
// on the disk) drops that row from every walk of the tree while each row left passes its
// check. A scan of the whole table counts the rows it walks against LMDB's own count and
// says the table is damaged; before, a table no other figure covers (groups, gateways,
// payouts, customers, ...) loaded without the row and without a word.
TEST(snapshot, a_walk_that_finds_fewer_rows_than_the_table_holds_fails) {
  temp_dir d;
  std::string err;
  const uint64_t n = 3000, lost_near = 2000;
  const auto row = [](uint64_t k) {
    char b[40];
    std::snprintf(b, sizeof b, "group row %09llu", static_cast<unsigned long long>(k));
    return std::string(b);
  };
  {
    auto s = snapshot_store::open(d.path(), 1 << 26, &err);
    ASSERT_TRUE(s) << err;
    auto w = s->begin(&err);
    for (uint64_t k = 1; k <= n; ++k) ASSERT_TRUE(w->append(table::groups, k, bytes(row(k))));
    snapshot_meta m;
    m.lsn = 1;
    ASSERT_TRUE(w->commit(m)) << w->error();
    uint64_t walked = 0;
    ASSERT_TRUE(s->scan(table::groups, [&](uint64_t, std::span<const uint8_t>) { return ++walked, true; }, &err))
        << err;
    ASSERT_EQ(walked, n);
  }
  // The leaf page holding row lost_near: LMDB's page header is the page number (8 bytes),
  // 2 bytes of padding, the flags (2 bytes, 0x02 a leaf), then the lower bound (2 bytes:
  // the header's 16 bytes and 2 per entry).
  const std::string file = d.path() + "/data.mdb";
  std::string all = read_file(file);
  const size_t pos = all.find(row(lost_near));
  ASSERT_NE(pos, std::string::npos);
  ASSERT_EQ(all.find(row(lost_near), pos + 1), std::string::npos) << "one copy of the row";
  const size_t page = pos / 4096 * 4096;
  uint16_t flags = 0, lower = 0;
  std::memcpy(&flags, all.data() + page + 10, 2);
  std::memcpy(&lower, all.data() + page + 12, 2);
  ASSERT_TRUE(flags & 0x02) << "a leaf page";
  ASSERT_GT(lower, 16 + 2 * 2) << "more than two entries";
  lower = uint16_t(lower - 2);
  {
    std::fstream f(file, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(std::streamoff(page + 12));
    f.write(reinterpret_cast<const char*>(&lower), 2);
  }
  auto s = snapshot_store::open(d.path(), 1 << 26, &err);
  ASSERT_TRUE(s) << err;
  uint64_t walked = 0;
  err.clear();
  EXPECT_FALSE(s->scan(table::groups, [&](uint64_t, std::span<const uint8_t>) { return ++walked, true; }, &err));
  EXPECT_EQ(walked, n - 1) << "the walk itself finds nothing wrong";
  EXPECT_NE(err.find("table groups holds 3000 rows by LMDB's count but a walk of it found 2999"), std::string::npos)
      << err;
  // A walk of its keys alone (a start's, for the transfer records it does not read) too.
  err.clear();
  EXPECT_FALSE(s->check_row_count(table::groups, &err));
  EXPECT_NE(err.find("table groups holds 3000 rows by LMDB's count but a walk of it found 2999"), std::string::npos)
      << err;
  EXPECT_TRUE(s->check_row_count(table::accounts, &err)) << err;
  // The scrub (mesob-log --snapshot-rows) says so too: no commit came while it read.
  err.clear();
  uint64_t scrubbed = 0;
  EXPECT_FALSE(s->verify_rows(table::groups, [](uint64_t, const std::string&) {}, &scrubbed, &err));
  EXPECT_EQ(scrubbed, n - 1);
  EXPECT_NE(err.find("table groups holds 3000 rows by LMDB's count but a walk of it found 2999"), std::string::npos)
      << err;
  // A scan of part of the table reads what it reaches, as before (no count covers it).
  err.clear();
  walked = 0;
  EXPECT_TRUE(s->scan(table::groups, [&](uint64_t, std::span<const uint8_t>) { return ++walked, true; }, &err,
                      uint64_t(100), 1))
      << err;
  EXPECT_EQ(walked, 99u);
}

// Only a snapshot of a format this build reads is converted: one of format 3 (resolved
// pending transfers still among the open ones), a bad magic, or a version-12 row without
// the rows' format row is refused as before, and the store is left as it was.
TEST(snapshot, a_store_of_a_format_not_read_is_refused_unchanged) {
  struct bad {
    uint32_t version;
    uint64_t magic;
    const char* says;
  };
  for (const bad& b : {bad{3, snapshot_magic, "format version 3 is not a version this build reads"},
                       bad{12, snapshot_magic, "format version 12 is not a version this build reads"},
                       bad{11, 0x1234, "bad magic number"}}) {
    temp_dir d;
    write_unchecked_store(d.path(), {{0, "row"}}, "the forty-second", b.version, b.magic);
    std::string err;
    EXPECT_FALSE(snapshot_store::open(d.path(), 1 << 28, &err));
    EXPECT_NE(err.find(b.says), std::string::npos) << err;
    EXPECT_EQ(raw_size(d.path(), "accounts", 42), 16u) << "nothing changed";
    EXPECT_EQ(raw_size(d.path(), "meta", 0), sizeof(snapshot_meta));
  }
}

// A store whose file was cut short (a copy that ran out of disk): the first read past
// its end names the file and ends the process with exit status 1, through the engine's
// open and a read-only one alike, and leaves the file as it was. Before, the process died
// of a bare SIGBUS. (No comparison of lengths at open could refuse it instead: a whole
// file may end before the last page its commit names, on pages that commit took and
// freed, which LMDB never writes.) Whole again, it opens and reads every row.
TEST(snapshot, a_store_cut_short_stops_the_process_naming_its_file) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  temp_dir d;
  std::string err;
  {
    auto s = snapshot_store::open(d.path(), 1 << 26, &err);
    ASSERT_TRUE(s) << err;
    auto w = s->begin(&err);
    ASSERT_TRUE(w) << err;
    const std::string row(1000, 'r');
    for (uint64_t k = 0; k < 2000; ++k) ASSERT_TRUE(w->append(table::transfers, k, bytes(row))) << w->error();
    snapshot_meta m;
    m.lsn = 1;
    m.next_serial = 2000;
    ASSERT_TRUE(w->commit(m)) << w->error();
  }
  const std::string file = d.path() + "/data.mdb", whole = d.path() + "/whole.mdb";
  ASSERT_GT(std::filesystem::file_size(file), 1u << 20);
  std::filesystem::copy_file(file, whole);
  std::filesystem::resize_file(file, 16384);
  const auto read_every_row = [&](bool read_only) {
    std::string e;
    auto s = read_only ? snapshot_store::open_read_only(d.path(), &e) : snapshot_store::open(d.path(), 1 << 26, &e);
    if (!s) std::exit(2);
    uint64_t rows = 0;
    (void)s->scan(table::transfers, [&](uint64_t, std::span<const uint8_t>) { return ++rows, true; }, &e);
    std::exit(3);  // (not reached: a page past the end faults)
  };
  EXPECT_EXIT(read_every_row(false), ::testing::ExitedWithCode(1),
              "snapshot: .*/data.mdb could not be read through its map \\(SIGBUS\\): the snapshot file is damaged "
              "\\(cut short");
  EXPECT_EXIT(read_every_row(true), ::testing::ExitedWithCode(1), "the snapshot file is damaged");
  EXPECT_EQ(std::filesystem::file_size(file), 16384u) << "the file is left as it was";
  std::filesystem::rename(whole, file);
  auto s = snapshot_store::open(d.path(), 1 << 26, &err);
  ASSERT_TRUE(s) << err;
  uint64_t rows = 0;
  ASSERT_TRUE(s->scan(table::transfers, [&](uint64_t, std::span<const uint8_t>) {
    ++rows;
    return true;
  }, &err)) << err;
  EXPECT_EQ(rows, 2000u);
}

// usage(): the map's size and the bytes up to the newest commit's last page, growing
// with what commits write; at 80% of the map nearly_full() says so, before MDB_MAP_FULL
// stops every write.
TEST(snapshot, usage_grows_with_commits_and_says_when_the_map_is_nearly_full) {
  temp_dir d;
  std::string err;
  auto s = snapshot_store::open(d.path(), 4u << 20, &err);
  ASSERT_TRUE(s) << err;
  auto u = s->usage();
  EXPECT_EQ(u.map, 4u << 20);
  EXPECT_GT(u.used, 0u);
  EXPECT_FALSE(u.nearly_full()) << u.used;
  const std::string row(3000, 'r');
  uint64_t key = 0, last_used = u.used;
  for (int commit = 0; commit < 100 && !s->usage().nearly_full(); ++commit) {
    auto w = s->begin(&err);
    ASSERT_TRUE(w) << err;
    for (int i = 0; i < 50; ++i, ++key) ASSERT_TRUE(w->append(table::transfers, key, bytes(row))) << w->error();
    snapshot_meta m;
    m.lsn = uint64_t(commit) + 1;
    m.next_serial = key;
    ASSERT_TRUE(w->commit(m)) << w->error();
    u = s->usage();
    EXPECT_GT(u.used, last_used) << "appended rows take pages past the last";
    EXPECT_LE(u.used, u.map);
    last_used = u.used;
  }
  u = s->usage();
  EXPECT_TRUE(u.nearly_full()) << u.used << " of " << u.map;
  EXPECT_GE(u.used * 5, u.map * 4);
}
