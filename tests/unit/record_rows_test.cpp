// Transfer records stored several to a row: appends split into rows, reads find the row
// holding a serial, scans start and stop inside rows, and malformed rows are named.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "engine/id_index.hpp"
#include "engine/record_rows.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

using namespace mesob;
using engine::record_rows::records_per_row;

namespace {

// The key the rows' id hashes are under (as a store's: engine/id_hash.hpp).
const engine::id_hasher test_hash{engine::id_hash_key{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull}};

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
  }, test_hash));
  ASSERT_TRUE(w->commit_without_meta()) << w->error();
}

}  // namespace

TEST(record_rows, appends_reads_and_scans_across_partial_rows) {
  test::temp_dir dir;
  auto s = open_store(dir.path());
  std::string err;
  EXPECT_EQ(engine::record_rows::end(*s, &err).value_or(99), 0u) << err;
  // Flushes that end mid-row: rows of 128, then 72, then 3, then 300 (128 + 128 + 44).
  put(*s, 0, 200);
  put(*s, 200, 3);
  put(*s, 203, 300);
  EXPECT_EQ(engine::record_rows::end(*s, &err).value_or(0), 503u) << err;
  for (uint64_t serial : {0ull, 127ull, 128ull, 199ull, 200ull, 202ull, 203ull, 330ull, 331ull, 502ull}) {
    actors::transfer_record r;
    ASSERT_TRUE(engine::record_rows::get(*s, serial, &r, &err)) << serial << " " << err;
    EXPECT_EQ(r.t.amount, serial * 3 + 1);
  }
  actors::transfer_record r;
  EXPECT_FALSE(engine::record_rows::get(*s, 503, &r, &err));
  EXPECT_TRUE(err.empty()) << err;
  // A reader keeping the row it read: in order, back and forth across rows, and past the
  // end, every record as get gives it.
  engine::record_rows::reader rd(*s);
  std::vector<uint64_t> order;
  for (uint64_t serial = 0; serial < 503; serial += 1 + serial % 5) order.push_back(serial);
  for (uint64_t serial : {502ull, 0ull, 127ull, 128ull, 127ull, 202ull, 203ull, 200ull, 331ull, 330ull}) order.push_back(serial);
  for (const uint64_t serial : order) {
    ASSERT_TRUE(rd.get(serial, &r, &err)) << serial << " " << err;
    EXPECT_EQ(r.t.amount, serial * 3 + 1) << serial;
  }
  EXPECT_FALSE(rd.get(503, &r, &err));
  EXPECT_TRUE(err.empty()) << err;
  ASSERT_TRUE(rd.get(5, &r, &err)) << err;
  EXPECT_EQ(r.t.amount, 16u);
  // Scans that begin and end inside rows see exactly their range, in order.
  for (auto [b, e] : std::vector<std::pair<uint64_t, uint64_t>>{{0, 503}, {5, 141}, {130, 131}, {142, 400}, {400, 900}}) {
    std::vector<uint64_t> seen;
    ASSERT_TRUE(engine::record_rows::scan(*s, b, e, [&](uint64_t serial, const actors::transfer_record& x) {
      EXPECT_EQ(x.t.amount, serial * 3 + 1);
      seen.push_back(serial);
      return true;
    }, &err)) << err;
    const uint64_t last = std::min<uint64_t>(e, 503);
    ASSERT_EQ(seen.size(), last - b) << b << ".." << e;
    for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], b + i);
  }
}

namespace {
// A record with every field drawn from `rng`: all 152 bytes, at random widths per row.
actors::transfer_record random_record(std::mt19937_64& rng, uint64_t serial, const uint64_t (&masks)[19]) {
  actors::transfer_record r;
  uint64_t words[19];
  for (size_t i = 0; i < 19; ++i) words[i] = rng() & masks[i];
  std::memcpy(&r, words, sizeof r);
  r.t.amount = serial * 3 + 1;
  return r;
}
bool same(const actors::transfer_record& a, const actors::transfer_record& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}
}  // namespace

// Records of every shape read back byte for byte; rows of the first form (152-byte records
// as they are, formats 3 to 10) read beside packed ones; a packed row whose size happens
// to look like the first form carries a pad byte and reads as packed.
TEST(record_rows, packed_rows_of_any_records_and_rows_of_the_first_form_read_back) {
  static_assert(sizeof(actors::transfer_record) == 19 * 8);
  test::temp_dir dir;
  auto s = open_store(dir.path());
  std::string err;
  const uint64_t seed = test::test_seed("record_rows packed");
  std::mt19937_64 rng(seed);
  std::vector<actors::transfer_record> want;
  // First-form rows: 26 records, then 10, written as an older build wrote them.
  {
    auto w = s->begin(&err);
    ASSERT_TRUE(w) << err;
    uint64_t masks[19];
    for (auto& m : masks) m = ~0ull;
    for (uint64_t serial = 0; serial < 36; ++serial) want.push_back(random_record(rng, serial, masks));
    ASSERT_TRUE(w->append(storage::table::transfers, 0,
                          {reinterpret_cast<const uint8_t*>(want.data()), 26 * sizeof(actors::transfer_record)}));
    ASSERT_TRUE(w->append(storage::table::transfers, 26,
                          {reinterpret_cast<const uint8_t*>(want.data() + 26), 10 * sizeof(actors::transfer_record)}));
    ASSERT_TRUE(w->commit_without_meta()) << w->error();
  }
  // Packed rows after them, of random lengths and field widths, until one needed its pad
  // byte (about one row in 150 of those short enough to look like the first form).
  uint64_t padded = 0;
  for (int round = 0; round < 10 && padded == 0; ++round) {
    auto w = s->begin(&err);
    ASSERT_TRUE(w) << err;
    for (int rows = 0; rows < 2000; ++rows) {
      uint64_t masks[19];
      for (auto& m : masks) m = rng() % 3 == 0 ? 0 : (1ull << (rng() % 64)) - 1;  // narrow fields make short rows
      const uint64_t first = want.size(), n = 1 + rng() % engine::record_rows::records_per_row;
      for (uint64_t i = 0; i < n; ++i) want.push_back(random_record(rng, first + i, masks));
      if (rows % 2 == 0) {
        // Fields counted up with jitter (delta columns of 1 to 8 bytes a number): the
        // id, the timestamp, the history links (8 bytes), currency and result (4), code
        // and flags (2).
        const uint64_t jitter = (uint64_t(1) << (rng() % 62)) | 1;
        uint64_t id = rng(), ts = rng(), prev = rng(), cur = rng(), code = rng();
        for (uint64_t i = 0; i < n; ++i) {
          auto& r = want[first + i];
          r.t.id.lo = id += rng() % jitter;
          r.t.timestamp = ts += 1 + rng() % (jitter | 0xffff);
          r.debit_prev = prev += rng() % 1000;
          r.t.currency = uint32_t(cur += rng() % 70000);
          r.result = uint32_t(cur >> 7);
          r.t.code = uint16_t(code += rng() % 300);
          r.t.flags = uint16_t(code >> 3);
        }
      }
      ASSERT_TRUE(engine::record_rows::append(*w, first, n, [&](uint64_t serial) -> const actors::transfer_record& {
        return want[serial];
      }, test_hash));
    }
    ASSERT_TRUE(w->commit_without_meta()) << w->error();
    ASSERT_TRUE(s->scan(storage::table::transfers, [&](uint64_t key, std::span<const uint8_t> v) {
      if (key < 36) return true;
      auto first_form = [](size_t n) { return n % sizeof(actors::transfer_record) == 0 && n / sizeof(actors::transfer_record) <= 26; };
      EXPECT_FALSE(first_form(v.size())) << "row " << key << ": a packed row of a first-form size";
      if (v[6] == 1) {
        EXPECT_TRUE(first_form(v.size() - 1)) << "row " << key << ": padded without need";
        ++padded;
      }
      return true;
    }, &err)) << err;
  }
  EXPECT_GT(padded, 0u) << "seed " << seed;
  EXPECT_EQ(engine::record_rows::end(*s, &err).value_or(0), want.size()) << err;
  uint64_t next = 0;
  ASSERT_TRUE(engine::record_rows::scan(*s, 0, want.size(), [&](uint64_t serial, const actors::transfer_record& r) {
    EXPECT_EQ(serial, next++);
    EXPECT_TRUE(same(r, want[serial])) << "serial " << serial << ", seed " << seed;
    return true;
  }, &err)) << err;
  EXPECT_EQ(next, want.size());
  for (int i = 0; i < 2000; ++i) {
    const uint64_t serial = i < 36 ? uint64_t(i) : rng() % want.size();
    actors::transfer_record r;
    ASSERT_TRUE(engine::record_rows::get(*s, serial, &r, &err)) << serial << " " << err;
    ASSERT_TRUE(same(r, want[serial])) << "serial " << serial << ", seed " << seed;
  }
  // Packed rows take a fraction of the space of the first form (these are random-width
  // records; a load's take about a quarter: perf/RESULTS.md).
  uint64_t packed_bytes = 0;
  ASSERT_TRUE(s->scan(storage::table::transfers, [&](uint64_t key, std::span<const uint8_t> v) {
    if (key >= 36) packed_bytes += v.size();
    return true;
  }, &err)) << err;
  EXPECT_LT(packed_bytes, (want.size() - 36) * sizeof(actors::transfer_record));
}

TEST(record_rows, malformed_packed_rows_are_named) {
  test::temp_dir dir;
  auto s = open_store(dir.path());
  std::string err;
  put(*s, 0, 300);
  std::string good;
  uint64_t key = 0;
  ASSERT_TRUE(s->floor_row(storage::table::transfers, 0, &key, &good, &err)) << err;
  ASSERT_EQ(key, 0u);
  auto write_row = [&](uint64_t at, std::string bytes) {
    auto w = s->begin(&err);
    ASSERT_TRUE(w) << err;
    ASSERT_TRUE(w->append(storage::table::transfers, at, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}));
    ASSERT_TRUE(w->commit_without_meta()) << w->error();
  };
  auto bad = good;
  bad[4] = char(200);  // count 200: over a row's 128
  ASSERT_EQ(good[4], char(128));
  write_row(300, bad);
  actors::transfer_record r;
  err.clear();
  EXPECT_FALSE(engine::record_rows::get(*s, 301, &r, &err));
  EXPECT_NE(err.find("transfers row 300"), std::string::npos) << err;
  EXPECT_NE(err.find("nor a packed row of 1 to 128"), std::string::npos) << err;
  err.clear();
  EXPECT_FALSE(engine::record_rows::end(*s, &err));
  EXPECT_FALSE(err.empty());
  test::temp_dir dir2;
  s = open_store(dir2.path());
  put(*s, 0, 128);
  bad = good.substr(0, good.size() - 5);  // the block cut short
  write_row(128, bad);
  err.clear();
  EXPECT_FALSE(engine::record_rows::scan(*s, 0, 1000, [](uint64_t, const actors::transfer_record&) { return true; },
                                         &err));
  EXPECT_NE(err.find("transfers row 128: packed records"), std::string::npos) << err;
  // Read alone: a record in the row, and one past it (whose row is checked all the same).
  for (const uint64_t serial : {uint64_t(130), uint64_t(128 + 128)}) {
    err.clear();
    actors::transfer_record x;
    EXPECT_FALSE(engine::record_rows::get(*s, serial, &x, &err)) << serial;
    EXPECT_NE(err.find("transfers row 128: packed records"), std::string::npos) << serial << ": " << err;
  }
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
        EXPECT_EQ(h, test_hash(rec(serial).t.id)) << serial;
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
    for (uint64_t i = 0; i < 480; ++i) first[i] = test_hash(rec(i).t.id);
    ASSERT_TRUE(w->append(storage::table::transfer_ids, 0, {reinterpret_cast<const uint8_t*>(first.data()), 480 * 8}));
    ASSERT_TRUE(w->commit_without_meta());
  }
  ASSERT_TRUE(engine::record_rows::fill_in_hashes(*s, 480, 1103, test_hash, &err)) << err;
  check();
  {
    uint64_t key = 0;
    std::string row;
    ASSERT_TRUE(s->floor_row(storage::table::transfer_ids, 1102, &key, &row, &err)) << err;
    EXPECT_EQ(row.size(), (1103 - key) * sizeof(uint64_t));
    EXPECT_LE(row.size(), engine::record_rows::hashes_per_row * sizeof(uint64_t));
  }
  // Records missing below the end asked for are named.
  EXPECT_FALSE(engine::record_rows::fill_in_hashes(*s, 1103, 1110, test_hash, &err));
  EXPECT_NE(err.find("transfer records 1103..1110 are missing"), std::string::npos) << err;
}

// The store's hash key: none at first; set_hash_key writes it and drops the stored
// hashes in one transaction, and marks the snapshot row (when there is one) this
// build's format, its position kept; a malformed row is named.
TEST(record_rows, the_hash_key_is_set_with_the_hashes_dropped_and_the_format_marked) {
  test::temp_dir dir;
  auto s = open_store(dir.path());
  std::string err;
  put(*s, 0, 600);
  EXPECT_FALSE(engine::record_rows::hash_key(*s, &err));
  EXPECT_EQ(err, "") << "none: no error";
  const engine::id_hash_key k{0x1111, 0x2222};
  // No snapshot row yet: none written.
  ASSERT_TRUE(engine::record_rows::set_hash_key(*s, k, std::nullopt, &err)) << err;
  EXPECT_EQ(engine::record_rows::hash_key(*s, &err), std::optional(k)) << err;
  EXPECT_EQ(engine::record_rows::hashes_end(*s, &err).value_or(99), 0u) << err;
  EXPECT_FALSE(s->read_meta(&err));
  EXPECT_EQ(err, "");
  // A snapshot of format 12 (before keys): marked 13 with the key, the rest as it was.
  put(*s, 600, 10);
  storage::snapshot_meta m;
  m.version = 12;
  m.lsn = 77;
  m.next_serial = m.transfers = 610;
  {
    auto w = s->begin(&err);
    ASSERT_TRUE(w) << err;
    ASSERT_TRUE(w->commit(m)) << w->error();
  }
  EXPECT_EQ(engine::record_rows::hashes_end(*s, &err).value_or(0), 610u) << err;
  const engine::id_hash_key k2{0x3333, 0x4444};
  ASSERT_TRUE(engine::record_rows::set_hash_key(*s, k2, m, &err)) << err;
  EXPECT_EQ(engine::record_rows::hash_key(*s, &err), std::optional(k2)) << err;
  EXPECT_EQ(engine::record_rows::hashes_end(*s, &err).value_or(99), 0u) << err;
  const auto now = s->read_meta(&err);
  ASSERT_TRUE(now) << err;
  EXPECT_EQ(now->version, storage::snapshot_format_version);
  EXPECT_EQ(storage::snapshot_format_version, 13u);
  EXPECT_EQ(now->lsn, 77u);
  EXPECT_EQ(now->transfers, 610u);
  // A row of another size or magic is named, not read as a key.
  for (const std::string& bad : {std::string(8, 'x'), std::string(24, 'x')}) {
    {
      auto w = s->begin(&err);
      ASSERT_TRUE(w->put(storage::table::id_hash_key, 0, {reinterpret_cast<const uint8_t*>(bad.data()), bad.size()}));
      ASSERT_TRUE(w->commit_without_meta());
    }
    err.clear();
    EXPECT_FALSE(engine::record_rows::hash_key(*s, &err));
    EXPECT_NE(err.find("the id_hash_key row is " + std::to_string(bad.size()) + " bytes"), std::string::npos) << err;
  }
}

// The highest id.lo by bucket of id.hi is kept with every append, for every bucket the
// records reach; an append that does not continue it (the row of a build that did not
// keep it) drops it, a filling-in writes it from the records, and a malformed row is
// named.
TEST(record_rows, id_lo_max_is_kept_with_the_records_dropped_when_behind_and_filled_in) {
  test::temp_dir dir;
  auto s = open_store(dir.path());
  std::string err;
  const uint64_t seed = test::test_seed("id_lo_max");
  std::mt19937_64 rng(seed);
  std::vector<actors::transfer_record> all;
  std::vector<uint64_t> want(engine::id_index::buckets, 0);
  auto append = [&](uint64_t n) {
    const uint64_t first = all.size();
    for (uint64_t i = 0; i < n; ++i) {
      actors::transfer_record r = rec(first + i);
      r.t.id = {rng() % 4 == 0 ? rng() : first + i + 1, rng() % 3 == 0 ? rng() : 1 + rng() % 5};
      uint64_t& m = want[engine::id_index::bucket_of(r.t.id.hi)];
      m = std::max(m, r.t.id.lo);
      all.push_back(r);
    }
    auto w = s->begin(&err);
    ASSERT_TRUE(w) << err;
    ASSERT_TRUE(engine::record_rows::append(*w, first, n, [&](uint64_t serial) -> const actors::transfer_record& {
      return all.at(serial);
    }, test_hash)) << w->error();
    ASSERT_TRUE(w->commit_without_meta()) << w->error();
  };
  auto lo_max = [&](uint64_t end) {
    err.clear();
    auto v = engine::record_rows::lo_max(*s, end, &err);
    EXPECT_EQ(err, "");
    return v;
  };
  EXPECT_FALSE(lo_max(0)) << "no row";
  append(200);
  append(3);
  append(1000);
  ASSERT_TRUE(lo_max(1203));
  EXPECT_EQ(*lo_max(1203), want);
  EXPECT_TRUE(lo_max(1000)) << "it bounds the records below its end too";
  EXPECT_FALSE(lo_max(1204)) << "records past its end are not bounded";
  auto put_row = [&](const std::string& bytes) {
    auto w = s->begin(&err);
    ASSERT_TRUE(w->put(storage::table::id_lo_max, 0, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}));
    ASSERT_TRUE(w->commit_without_meta());
  };
  // As a build that appended without keeping it: counting to 1,000 when records end at
  // 1,203, the next append drops it.
  std::string row;
  ASSERT_TRUE(s->get(storage::table::id_lo_max, 0, &row, &err)) << err;
  std::string behind = row;
  const uint64_t thousand = 1000;
  ASSERT_EQ(row.substr(0, 8), std::string("IDL1\0\0\0\0", 8));
  std::memcpy(behind.data() + 8, &thousand, 8);
  put_row(behind);
  append(50);
  EXPECT_FALSE(lo_max(1253));
  EXPECT_FALSE(s->get(storage::table::id_lo_max, 0, &row, &err)) << "dropped";
  append(10);
  EXPECT_FALSE(lo_max(1263)) << "and not started again past serial 0";
  ASSERT_TRUE(engine::record_rows::fill_in_lo_max(*s, 1263, &err)) << err;
  ASSERT_TRUE(lo_max(1263));
  EXPECT_EQ(*lo_max(1263), want);
  append(100);
  EXPECT_EQ(lo_max(1363).value_or(std::vector<uint64_t>{}), want) << "kept again";
  // A row of another layout or bucket function (its magic) reads as none, and the next
  // append drops it.
  std::string other;
  ASSERT_TRUE(s->get(storage::table::id_lo_max, 0, &other, &err)) << err;
  other[3] = '2';
  put_row(other);
  EXPECT_FALSE(lo_max(1363));
  append(1);
  EXPECT_FALSE(s->get(storage::table::id_lo_max, 0, &row, &err)) << "dropped";
  // Malformed rows of this magic are named.
  put_row(std::string("IDL1\0\0\0\0\0", 9));
  EXPECT_FALSE(engine::record_rows::lo_max(*s, 1363, &err));
  EXPECT_EQ(err, "snapshot: the id_lo_max row is 9 bytes, not 16 + 12 per bucket");
  std::string pad("IDL1\x07\0\0\0", 8);
  pad.resize(16, '\0');
  put_row(pad);
  err.clear();
  EXPECT_FALSE(engine::record_rows::lo_max(*s, 0, &err));
  EXPECT_EQ(err, "snapshot: the id_lo_max row has 7 where its header's 4 zero bytes are");
  std::string bad("IDL1", 4);
  bad.resize(28, '\0');
  const uint32_t past = engine::id_index::buckets;
  std::memcpy(bad.data() + 16, &past, 4);
  put_row(bad);
  err.clear();
  EXPECT_FALSE(engine::record_rows::lo_max(*s, 0, &err));
  EXPECT_EQ(err, "snapshot: the id_lo_max row names bucket 4096 out of order or past 4095");
  EXPECT_FALSE(engine::record_rows::fill_in_lo_max(*s, 1400, &err));
  EXPECT_NE(err.find("transfer records 1364..1400 are missing"), std::string::npos) << err;
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
  EXPECT_NE(err.find("transfers row 17 (100 bytes) is neither 1 to 26 records as they are nor a packed row"),
            std::string::npos)
      << err;
}
