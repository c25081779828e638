#include "storage/snapshot.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cctype>
#include <fstream>

#include "support/temp_dir.hpp"

using namespace mesob::storage;
using mesob::test::temp_dir;

namespace {
std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
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
