// The seed of a randomized test: MESOB_SEED (decimal) when set, else a fresh one;
// printed either way, so any run can be replayed.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace mesob::test {

inline uint64_t test_seed(const char* what) {
  const char* env = std::getenv("MESOB_SEED");
  const uint64_t seed = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
  std::printf("%s seed %llu (MESOB_SEED=%llu replays it)\n", what, static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  return seed;
}

}  // namespace mesob::test
