// The HDR histogram of mesob-load: slots tile the range without gaps, every value lands
// in a slot that holds it, percentiles agree with exact ones within the stated precision.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "perf/load/hdr_histogram.hpp"

using mesob::load::hdr_histogram;

TEST(hdr_histogram, slots_tile_the_range_and_hold_their_values) {
  // Consecutive slots are adjacent, and the value at each slot edge maps back to it.
  const size_t slots = hdr_histogram::sub_count * (hdr_histogram::buckets + 1);
  for (size_t i = 0; i + 1 < slots; ++i) {
    ASSERT_EQ(hdr_histogram::highest_of(i) + 1, hdr_histogram::lowest_of(i + 1)) << "slot " << i;
    ASSERT_EQ(hdr_histogram::index_of(hdr_histogram::lowest_of(i)), i);
    ASSERT_EQ(hdr_histogram::index_of(hdr_histogram::highest_of(i)), i);
  }
  EXPECT_EQ(hdr_histogram::highest_of(slots - 1), hdr_histogram::value_max);
  // Slot width relative to its values: at most 2^-sub_bits.
  for (size_t i = 2 * hdr_histogram::sub_count; i < slots; i += 97) {
    const double width = double(hdr_histogram::highest_of(i) - hdr_histogram::lowest_of(i) + 1);
    EXPECT_LE(width / double(hdr_histogram::lowest_of(i)), 1.0 / double(hdr_histogram::sub_count));
  }
}

TEST(hdr_histogram, percentiles_match_exact_ones_within_precision) {
  const uint64_t seed = std::random_device{}();
  std::printf("seed %llu\n", (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  // Latency-like: a log-normal body with a long tail, from 1 us to seconds, in ns.
  std::lognormal_distribution<double> body(11.0, 1.2);
  std::vector<uint64_t> v;
  hdr_histogram h;
  for (int i = 0; i < 200'000; ++i) {
    uint64_t x = uint64_t(body(rng));
    if (i % 1000 == 0) x *= 1000;  // the tail
    v.push_back(x);
    h.record(x);
  }
  std::sort(v.begin(), v.end());
  for (double p : {1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    // The exact rank, in integers: the least r with r / n >= p / 100.
    const size_t n = v.size(), per_100k = size_t(p * 1000.0 + 0.5);
    const size_t rank = std::clamp<size_t>((per_100k * n + 99'999) / 100'000, 1, n);
    const uint64_t exact = v[rank - 1];
    const uint64_t got = h.percentile(p);
    EXPECT_GE(got, exact) << "p" << p << " seed " << seed;
    EXPECT_LE(double(got - exact), double(exact) / double(hdr_histogram::sub_count) + 1.0) << "p" << p << " seed " << seed;
  }
  EXPECT_EQ(h.count(), v.size());
  EXPECT_EQ(h.min(), v.front());
  EXPECT_EQ(h.max(), v.back());
}

// Few values, each exact in its slot (under sub_count): the percentile is the value at
// rank ceil(p% of n). Before, the rank was rounded: p99 of 80 values was the 79th, the
// maximum hidden.
TEST(hdr_histogram, small_counts_take_the_rank_at_or_above) {
  for (uint64_t n : {1u, 2u, 7u, 80u, 99u, 100u, 101u, 200u, 999u}) {
    hdr_histogram h;
    for (uint64_t i = 1; i <= n; ++i) h.record(i);  // value i at rank i
    for (const auto& [p, per_100k] : {std::pair{50.0, 50'000u}, {90.0, 90'000u}, {99.0, 99'000u},
                                      {99.9, 99'900u}, {100.0, 100'000u}}) {
      const uint64_t rank = std::max<uint64_t>(1, (uint64_t(per_100k) * n + 99'999) / 100'000);
      EXPECT_EQ(h.percentile(p), rank) << "p" << p << " of " << n;
    }
  }
}

TEST(hdr_histogram, merge_adds_and_reset_empties) {
  hdr_histogram a, b;
  for (uint64_t i = 1; i <= 1000; ++i) a.record(i * 1000);
  for (uint64_t i = 1001; i <= 2000; ++i) b.record(i * 1000);
  a.merge(b);
  EXPECT_EQ(a.count(), 2000u);
  EXPECT_EQ(a.min(), 1000u);
  EXPECT_EQ(a.max(), 2'000'000u);
  const uint64_t median = a.percentile(50);
  EXPECT_GE(median, 1'000'000u);
  EXPECT_LE(median, 1'001'000u);
  EXPECT_NEAR(a.mean(), 1'000'500.0, 1.0);
  a.reset();
  EXPECT_EQ(a.count(), 0u);
  EXPECT_EQ(a.percentile(99), 0u);
  EXPECT_EQ(a.max(), 0u);
}

// swap trades everything (what the load generator's per-second rows take under a lock).
TEST(hdr_histogram, swap_trades_contents) {
  hdr_histogram a, b;
  for (uint64_t i = 1; i <= 100; ++i) a.record(i * 10);
  b.record(hdr_histogram::value_max + 1);
  a.swap(b);
  EXPECT_EQ(a.count(), 1u);
  EXPECT_EQ(a.clamped(), 1u);
  EXPECT_EQ(a.min(), hdr_histogram::value_max);
  EXPECT_EQ(b.count(), 100u);
  EXPECT_EQ(b.clamped(), 0u);
  EXPECT_EQ(b.min(), 10u);
  EXPECT_EQ(b.max(), 1000u);
  EXPECT_NEAR(b.mean(), 505.0, 0.01);
  EXPECT_EQ(b.percentile(50), 500u);
}

TEST(hdr_histogram, values_past_the_range_are_clamped_and_counted) {
  hdr_histogram h;
  h.record(0);
  h.record(hdr_histogram::value_max + 5, 3);
  EXPECT_EQ(h.count(), 4u);
  EXPECT_EQ(h.clamped(), 3u);
  EXPECT_EQ(h.max(), hdr_histogram::value_max);
  EXPECT_EQ(h.percentile(10), 0u);
  EXPECT_EQ(h.percentile(100), hdr_histogram::value_max);
}
