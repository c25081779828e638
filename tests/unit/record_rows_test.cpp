// Transfer records stored several to a row: appends split into rows, reads find the row
// holding a serial, scans start and stop inside rows, and malformed rows are named.
#include <gtest/gtest.h>

#include <vector>

#include "engine/id_index.hpp"
#include "engine/record_rows.hpp"
#include "support/temp_dir.hpp"

using namespace mesob;
using engine::record_rows::records_per_row;

namespace {

actors::transfer_record rec(uint64_t serial) {
  actors::transfer_record r;
  r.t.id = {serial + 1, 7};
  r.t.amount = serial * 3 + 1;
  r.result = 0;
  return r;
}

std::unique_ptr<storage::snapshot_store> open_store(const std::string& dir) {
  std::string err;
  auto s = storage::snapshot_store::open(dir, 1ull << 30, &err);
  EXPECT_TRUE(s) << err;
  return s;
}

// Appends [first, first + n) in one transaction.
void put(storage::snapshot_store& s, uint64_t first, uint64_t n) {
  std::string err;
  auto w = s.begin(&err);
  ASSERT_TRUE(w) << err;
  std::vector<actors::transfer_record> tmp;
  ASSERT_TRUE(engine::record_rows::append(*w, first, n, [&](uint64_t serial) -> const actors::transfer_record& {
    tmp.push_back(rec(serial));
    return tmp.back();
  }));
  ASSERT_TRUE(w->commit_without_meta()) << w->error();
}

}  // namespace

TEST(record_rows, appends_reads_and_scans_across_partial_rows) {
  test::temp_dir dir;
  auto s = open_store(dir.path());
  std::string err;
  EXPECT_EQ(engine::record_rows::end(*s, &err).value_or(99), 0u) << err;
  // Flushes that end mid-row: rows of 26, then 14, then 3, then 60 (26 + 26 + 8).
  put(*s, 0, 40);
  put(*s, 40, 3);
  put(*s, 43, 60);
  EXPECT_EQ(engine::record_rows::end(*s, &err).value_or(0), 103u) << err;
  for (uint64_t serial : {0ull, 25ull, 26ull, 39ull, 40ull, 42ull, 43ull, 102ull}) {
    actors::transfer_record r;
    ASSERT_TRUE(engine::record_rows::get(*s, serial, &r, &err)) << serial << " " << err;
    EXPECT_EQ(r.t.amount, serial * 3 + 1);
  }
  actors::transfer_record r;
  EXPECT_FALSE(engine::record_rows::get(*s, 103, &r, &err));
  EXPECT_TRUE(err.empty()) << err;
  // Scans that begin and end inside rows see exactly their range, in order.
  for (auto [b, e] : std::vector<std::pair<uint64_t, uint64_t>>{{0, 103}, {5, 41}, {30, 31}, {42, 100}, {100, 500}}) {
    std::vector<uint64_t> seen;
    ASSERT_TRUE(engine::record_rows::scan(*s, b, e, [&](uint64_t serial, const actors::transfer_record& x) {
      EXPECT_EQ(x.t.amount, serial * 3 + 1);
      seen.push_back(serial);
      return true;
    }, &err)) << err;
    const uint64_t last = std::min<uint64_t>(e, 103);
    ASSERT_EQ(seen.size(), last - b) << b << ".." << e;
    for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], b + i);
  }
  static_assert(records_per_row * sizeof(actors::transfer_record) <= 4096 - 16, "one overflow page per row");
}

// Each appended record's id hash is stored beside it, read back over any range; a
// snapshot without them gets them written from the records.
TEST(record_rows, id_hashes_are_stored_with_the_records_and_can_be_filled_in) {
  test::temp_dir dir;
  auto s = open_store(dir.path());
  std::string err;
  put(*s, 0, 40);
  put(*s, 40, 3);
  put(*s, 43, 60);
  put(*s, 103, 1000);  // hashes in rows of 480, 480 and 40
  auto check = [&] {
    EXPECT_EQ(engine::record_rows::hashes_end(*s, &err).value_or(0), 1103u) << err;
    for (auto [b, e] : std::vector<std::pair<uint64_t, uint64_t>>{{0, 1103}, {5, 41}, {42, 100}, {100, 1000}}) {
      uint64_t next = b;
      ASSERT_TRUE(engine::record_rows::scan_hashes(*s, b, e, [&](uint64_t serial, uint64_t h) {
        EXPECT_EQ(serial, next);
        EXPECT_EQ(h, engine::id_index::hash_of(rec(serial).t.id)) << serial;
        ++next;
        return true;
      }, &err)) << err;
      EXPECT_EQ(next, e);
    }
  };
  check();
  {
    auto w = s->begin(&err);
    ASSERT_TRUE(w->clear(storage::table::transfer_ids));
    ASSERT_TRUE(w->commit_without_meta());
  }
  EXPECT_EQ(engine::record_rows::hashes_end(*s, &err).value_or(99), 0u) << err;
  // Filled in from where the table ends: as if cut short after the first 480.
  {
    auto w = s->begin(&err);
    std::vector<uint64_t> first(480);
    for (uint64_t i = 0; i < 480; ++i) first[i] = engine::id_index::hash_of(rec(i).t.id);
    ASSERT_TRUE(w->append(storage::table::transfer_ids, 0, {reinterpret_cast<const uint8_t*>(first.data()), 480 * 8}));
    ASSERT_TRUE(w->commit_without_meta());
  }
  ASSERT_TRUE(engine::record_rows::fill_in_hashes(*s, 480, 1103, &err)) << err;
  check();
  {
    uint64_t key = 0;
    std::string row;
    ASSERT_TRUE(s->floor_row(storage::table::transfer_ids, 1102, &key, &row, &err)) << err;
    EXPECT_EQ(row.size(), (1103 - key) * sizeof(uint64_t));
    EXPECT_LE(row.size(), engine::record_rows::hashes_per_row * sizeof(uint64_t));
  }
  // Records missing below the end asked for are named.
  EXPECT_FALSE(engine::record_rows::fill_in_hashes(*s, 1103, 1110, &err));
  EXPECT_NE(err.find("transfer records 1103..1110 are missing"), std::string::npos) << err;
}

TEST(record_rows, gaps_and_bad_sizes_are_named) {
  test::temp_dir dir;
  auto s = open_store(dir.path());
  std::string err;
  put(*s, 0, 10);
  put(*s, 12, 5);  // serials 10 and 11 are missing
  bool ok = engine::record_rows::scan(*s, 0, 100, [](uint64_t, const actors::transfer_record&) { return true; }, &err);
  EXPECT_FALSE(ok);
  EXPECT_NE(err.find("transfers row 12 follows a row ending at serial 10"), std::string::npos) << err;
  err.clear();
  {
    auto w = s->begin(&err);
    const std::vector<uint8_t> junk(100, 1);
    ASSERT_TRUE(w->append(storage::table::transfers, 17, junk));
    ASSERT_TRUE(w->commit_without_meta());
  }
  EXPECT_FALSE(engine::record_rows::end(*s, &err));
  EXPECT_NE(err.find("transfers row 17 has 100 bytes"), std::string::npos) << err;
}
