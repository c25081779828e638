// The engine clock's source: the wall clock, held to a steady clock between reads.
#pragma once

#include <algorithm>
#include <cstdint>

namespace mesob::engine {

// Timestamps mean dates (daily limits, reconciliation days, what clients read), so the
// engine clock comes from the wall clock. But a step of the wall clock (an operator's
// `date -s`, a host that booted before NTP corrected it, a clock set back while the
// engine was down) would move every deadline at once: a step forward expires every hold
// and closes every equb round that falls within it; a step back, or a start with the
// wall clock behind the log's last time, stops every expiry and timer until the wall
// clock passes where the engine was (the engine clock never goes back).
//
// So between two reads the clock moves by what a steady clock (CLOCK_BOOTTIME: not set
// by anyone, and counting a suspend) measured, and takes the wall clock's reading only
// while that lies within step_max of it: a difference past step_max is a step, not
// followed; the clock runs on from where it was, and the step is counted and its size
// kept (skew) until the wall clock comes back within step_max, when it is followed
// again. A start holds the clock at or past the log's last time (hold_at_least).
//
// Not thread-safe: the sequencer alone reads it (steps and skew are copied out to
// atomics for the metrics).
class engine_clock {
 public:
  explicit engine_clock(uint64_t step_max_ns) : step_max_(step_max_ns) {}

  // The clock now, from the wall clock's and the steady clock's readings (ns).
  uint64_t read(uint64_t wall, uint64_t steady) {
    if (!started_) {
      started_ = true;
      at_ = std::max(wall, floor_);
    } else {
      at_ += steady > steady_ ? steady - steady_ : 0;  // a steady clock that went back: none
    }
    steady_ = steady;
    const bool within = wall >= at_ ? wall - at_ <= step_max_ : at_ - wall <= step_max_;
    if (within) {
      at_ = std::max(wall, floor_);  // (a step back within step_max: the sequencer keeps order)
      stepped_ = false;
      skew_ = 0;
    } else {
      if (!stepped_) ++steps_;
      stepped_ = true;
      skew_ = int64_t(wall - at_);
    }
    return at_;
  }

  // Not before t (a start: the log's last time plus one), from the next read on.
  void hold_at_least(uint64_t t) {
    floor_ = std::max(floor_, t);
    at_ = std::max(at_, floor_);
  }

  [[nodiscard]] uint64_t steps() const { return steps_; }  // wall clock steps not followed
  [[nodiscard]] int64_t skew_ns() const { return skew_; }  // wall clock minus the clock, while stepped (else 0)

 private:
  uint64_t step_max_;
  bool started_ = false;
  uint64_t at_ = 0, steady_ = 0, floor_ = 0;
  bool stepped_ = false;
  uint64_t steps_ = 0;
  int64_t skew_ = 0;
};

}  // namespace mesob::engine
