// The id index: every id found after any number of background growths, growth with a
// slow builder (the owner waits only at 7/8 load), abandoning a growth, a failed read.
#include "engine/id_index.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <thread>

using namespace mesob;
using engine::id_index;

namespace {

struct fixture {
  std::vector<wire::id128> ids;
  uint64_t inserted = 0;
  uint64_t lag = 0;  // the newest `lag` serials are not yet stable
  std::chrono::microseconds read_delay{0};
  bool fail = false;

  explicit fixture(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    ids.resize(n);
    for (auto& id : ids) id = {rng(), rng()};
  }
  id_index::source source() {
    id_index::source s;
    s.stable_end = [this] { return inserted > lag ? inserted - lag : 0; };
    s.read_stable = [this](uint64_t b, uint64_t e, const id_index::id_fn& fn, std::string* err) {
      if (fail) {
        *err = "snapshot: read failed on purpose";
        return false;
      }
      for (uint64_t k = b; k < e; ++k) fn(k, ids[k]);
      if (read_delay.count() > 0) std::this_thread::sleep_for(read_delay);
      return true;
    };
    s.read_recent = [this](uint64_t k) {
      EXPECT_GE(k + lag, inserted) << "owner read of a stable serial";
      return ids[k];
    };
    return s;
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
  for (uint64_t lag : {0u, 300u, 5000u}) {
    fixture f(300000, seed + lag);
    f.lag = lag;
    id_index idx(f.source());
    f.insert_all(idx, 150000);
    f.expect_all_found(idx, 150000);  // possibly while a growth is in progress
    f.insert_all(idx, 300000);
    idx.finish_growth_now();
    f.expect_all_found(idx, 300000);
    EXPECT_GE(idx.growth_stats().growths, 8u) << "2,048 slots to 2^19";
    EXPECT_EQ(idx.size(), 300000u);
    if (lag > 0) {
      EXPECT_GT(idx.growth_stats().handover_max, 0u);
    }
  }
}

TEST(id_index, a_slow_builder_makes_the_owner_wait_only_at_seven_eighths) {
  fixture f(100000, 7);
  f.read_delay = std::chrono::milliseconds(30);  // per chunk of reads
  id_index idx(f.source());
  f.insert_all(idx, 100000);
  idx.finish_growth_now();
  f.expect_all_found(idx, 100000);
  EXPECT_GT(idx.growth_stats().waits, 0u);
}

TEST(id_index, reserve_sizes_up_front) {
  fixture f(50000, 8);
  id_index idx(f.source());
  idx.reserve(50000);
  f.insert_all(idx, 50000);
  EXPECT_EQ(idx.growth_stats().growths, 0u);
  EXPECT_FALSE(idx.growing());
  f.expect_all_found(idx, 50000);
}

TEST(id_index, abandoning_a_growth_keeps_the_old_table) {
  fixture f(20000, 9);
  f.read_delay = std::chrono::milliseconds(200);
  id_index idx(f.source());
  f.insert_all(idx, 1600);  // just past 3/4 of the first 2,048 slots: a growth starts
  ASSERT_TRUE(idx.growing());
  idx.abandon_growth();
  EXPECT_FALSE(idx.growing());
  f.expect_all_found(idx, 1600);
  f.read_delay = {};
  f.insert_all(idx, 20000);  // growth starts again and completes
  idx.finish_growth_now();
  f.expect_all_found(idx, 20000);
}

TEST(id_index, destroying_during_a_growth_joins_the_builder) {
  fixture f(2000, 10);
  f.read_delay = std::chrono::milliseconds(100);
  {
    id_index idx(f.source());
    f.insert_all(idx, 1600);
    EXPECT_TRUE(idx.growing());
  }
  SUCCEED();
}

TEST(id_index_death, a_failed_read_stops_with_its_message) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        fixture f(5000, 11);
        f.fail = true;
        id_index idx(f.source());
        f.insert_all(idx, 5000);
        idx.finish_growth_now();
      },
      "read failed on purpose");
}
