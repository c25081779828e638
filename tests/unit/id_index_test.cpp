// The id index: every id found after any number of background growths (the builder
// reads hashes across the hash log's segments while the owner appends), growth with a
// slow builder (the owner waits only at 7/8 load), abandoning a growth.
#include "engine/id_index.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <random>

using namespace mesob;
using engine::id_index;

namespace {

struct fixture {
  std::vector<wire::id128> ids;
  uint64_t inserted = 0;

  explicit fixture(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    ids.resize(n);
    for (auto& id : ids) id = {rng(), rng()};
  }
  void insert_all(id_index& idx, size_t n) {
    for (; inserted < n; ++inserted) idx.insert(ids[inserted], inserted);
  }
  void expect_all_found(const id_index& idx, size_t n) {
    auto id_of = [this](uint64_t s) { return ids[s]; };
    for (uint64_t s = 0; s < n; ++s) ASSERT_EQ(idx.find(ids[s], id_of), int64_t(s)) << "serial " << s;
    std::mt19937_64 rng(99);
    for (int k = 0; k < 10000; ++k) ASSERT_EQ(idx.find({rng(), rng()}, id_of), -1);
  }
};

}  // namespace

TEST(id_index, every_id_found_across_growths) {
  const uint64_t seed = std::random_device{}();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  // The last growth (at 393,217 ids) reads serials across the hash log's segments at
  // 2^16, 2^17 and 2^18.
  fixture f(400000, seed);
  id_index idx;
  f.insert_all(idx, 196000);
  EXPECT_EQ(idx.next_growth_at(), 196608u) << "3/4 of 2^18 slots";
  idx.slow_growth_for_tests(std::chrono::milliseconds(50));
  f.insert_all(idx, 200000);  // a growth to 2^19 slots starts at 196,609
  ASSERT_TRUE(idx.growing());
  EXPECT_EQ(idx.next_growth_at(), 200000u) << "under way: the size now";
  f.expect_all_found(idx, 200000);  // served by the old table meanwhile
  idx.slow_growth_for_tests({});
  f.insert_all(idx, 400000);
  idx.finish_growth_now();
  EXPECT_EQ(idx.next_growth_at(), 786432u) << "3/4 of 2^20 slots";
  f.expect_all_found(idx, 400000);
  EXPECT_EQ(idx.growth_stats().growths, 9u) << "2,048 slots to 2^20";
  EXPECT_EQ(idx.size(), 400000u);
  EXPECT_EQ(idx.memory_bytes(), (size_t(1) << 20) * 8 + 400000 * 8) << "the table and the hash log";
}

TEST(id_index, a_slow_builder_makes_the_owner_wait_only_at_seven_eighths) {
  fixture f(100000, 7);
  id_index idx;
  idx.slow_growth_for_tests(std::chrono::milliseconds(30));  // per 2^16 hashes placed
  f.insert_all(idx, 100000);
  idx.finish_growth_now();
  f.expect_all_found(idx, 100000);
  EXPECT_GT(idx.growth_stats().waits, 0u);
  EXPECT_LE(idx.growth_stats().waits, idx.growth_stats().growths);
}

TEST(id_index, reserve_sizes_up_front) {
  fixture f(50000, 8);
  id_index idx;
  idx.reserve(50000);
  f.insert_all(idx, 50000);
  EXPECT_EQ(idx.growth_stats().growths, 0u);
  EXPECT_FALSE(idx.growing());
  f.expect_all_found(idx, 50000);
}

TEST(id_index, abandoning_a_growth_keeps_the_old_table) {
  fixture f(20000, 9);
  id_index idx;
  idx.slow_growth_for_tests(std::chrono::milliseconds(200));
  f.insert_all(idx, 1600);  // just past 3/4 of the first 2,048 slots: a growth starts
  ASSERT_TRUE(idx.growing());
  idx.abandon_growth();
  EXPECT_FALSE(idx.growing());
  f.expect_all_found(idx, 1600);
  idx.slow_growth_for_tests({});
  f.insert_all(idx, 20000);  // growth starts again and completes
  idx.finish_growth_now();
  f.expect_all_found(idx, 20000);
}

TEST(id_index, destroying_during_a_growth_joins_the_builder) {
  fixture f(2000, 10);
  {
    id_index idx;
    idx.slow_growth_for_tests(std::chrono::milliseconds(100));
    f.insert_all(idx, 1600);
    EXPECT_TRUE(idx.growing());
  }
  SUCCEED();
}

// The hash is stored in the snapshot (`transfer_ids`): it must not change unnoticed.
TEST(id_index, the_stored_hash_is_frozen) {
  static_assert(id_index::hash_of(wire::id128{1, 7}) == 0x524257c04fcf117ull);
  EXPECT_EQ(id_index::hash_of(wire::id128{0xdeadbeef, 0}), 0xd29a9300569a165ull);
}
