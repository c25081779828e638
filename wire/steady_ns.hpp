// The steady (monotonic) clock in nanoseconds, for intervals and deadlines within a run
// (never for dates: a step of the wall clock does not move it).
#pragma once

#include <chrono>
#include <cstdint>

namespace mesob {

inline uint64_t steady_ns() {
  return uint64_t(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

}  // namespace mesob
