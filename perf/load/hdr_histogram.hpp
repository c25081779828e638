// hdr_histogram: a high-dynamic-range histogram of non-negative integers (latencies in
// nanoseconds), after Gil Tene's HdrHistogram: values are kept to a fixed relative
// precision over the whole range, in constant memory, and merging two is adding counts.
//
// Layout: bucket 0 holds 0 .. 2S-1 exactly (S = 2^sub_bits); bucket b >= 1 holds
// [S << b, S << (b+1)) in S slots of width 2^b. A recorded value is therefore within
// 2^-sub_bits of its true value (sub_bits = 10: 0.1%). With 10 sub-bits and 40 buckets
// it covers 0 .. 2^51 ns (26 days) in 42 x 1,024 counters (336 KiB).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

namespace mesob::load {

class hdr_histogram {
 public:
  static constexpr uint32_t sub_bits = 10;
  static constexpr uint64_t sub_count = 1ull << sub_bits;
  static constexpr uint32_t buckets = 41;  // bucket 0 (2S exact values) + 40 doublings
  static constexpr uint64_t value_max = (sub_count << buckets) - 1;

  hdr_histogram() : counts_(sub_count * (buckets + 1), 0) {}

  // Values above value_max are recorded as value_max (and counted in `clamped`).
  void record(uint64_t v, uint64_t n = 1) {
    if (v > value_max) {
      v = value_max;
      clamped_ += n;
    }
    counts_[index_of(v)] += n;
    total_ += n;
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
    sum_ += double(v) * double(n);
  }

  void merge(const hdr_histogram& o) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    clamped_ += o.clamped_;
    min_ = std::min(min_, o.min_);
    max_ = std::max(max_, o.max_);
    sum_ += o.sum_;
  }

  // Trades contents with o (a pointer swap: cheap under a lock).
  void swap(hdr_histogram& o) noexcept {
    counts_.swap(o.counts_);
    std::swap(total_, o.total_);
    std::swap(clamped_, o.clamped_);
    std::swap(min_, o.min_);
    std::swap(max_, o.max_);
    std::swap(sum_, o.sum_);
  }

  void reset() {
    std::fill(counts_.begin(), counts_.end(), 0);
    total_ = clamped_ = 0;
    min_ = UINT64_MAX;
    max_ = 0;
    sum_ = 0;
  }

  [[nodiscard]] uint64_t count() const { return total_; }
  [[nodiscard]] uint64_t clamped() const { return clamped_; }
  [[nodiscard]] uint64_t min() const { return total_ ? min_ : 0; }
  [[nodiscard]] uint64_t max() const { return max_; }
  [[nodiscard]] double mean() const { return total_ ? sum_ / double(total_) : 0; }

  // The smallest recorded value v such that at least pct% of the values are <= v, to
  // the histogram's precision (the top of v's slot, never above the true maximum).
  [[nodiscard]] uint64_t percentile(double pct) const {
    if (total_ == 0) return 0;
    pct = std::clamp(pct, 0.0, 100.0);
    // The rank: ceil(pct% of the count), so that at least pct% are at or under it (a
    // rounded rank could fall one short: p99 of 80 values was the 79th). The epsilon
    // keeps an exact product (p50 of 200) from going one up on float error.
    auto want = uint64_t(std::ceil(pct / 100.0 * double(total_) - 1e-9));
    want = std::clamp<uint64_t>(want, 1, total_);
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= want) return std::min(highest_of(i), max_);
    }
    return max_;
  }

  // Every non-empty slot: (lowest value of the slot, highest value, count), ascending.
  template <class F>
  void for_each_slot(F&& f) const {
    for (size_t i = 0; i < counts_.size(); ++i)
      if (counts_[i] != 0) f(lowest_of(i), highest_of(i), counts_[i]);
  }

  static size_t index_of(uint64_t v) {
    if (v < 2 * sub_count) return size_t(v);
    const uint32_t b = uint32_t(std::bit_width(v)) - sub_bits - 1;  // v in [S << b, S << (b+1))
    return size_t((b + 1) * sub_count + ((v >> b) - sub_count));
  }
  static uint64_t lowest_of(size_t i) {
    if (i < 2 * sub_count) return i;
    const uint64_t b = i / sub_count - 1;
    return (sub_count + i % sub_count) << b;
  }
  static uint64_t highest_of(size_t i) {
    if (i < 2 * sub_count) return i;
    const uint64_t b = i / sub_count - 1;
    return lowest_of(i) + (1ull << b) - 1;
  }

 private:
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0, clamped_ = 0;
  uint64_t min_ = UINT64_MAX, max_ = 0;
  double sum_ = 0;
};

}  // namespace mesob::load
