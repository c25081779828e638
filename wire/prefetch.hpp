// prefetch: start loading the cache line holding `p`, without waiting for it.
//
// Written as an instruction rather than __builtin_prefetch: g++ 12 at -O1 and above
// silently drops __builtin_prefetch when the address comes from a hash with more
// than one multiply (as every index look-up here does), so the prefetch never ran.
#pragma once

namespace mesob {

inline void prefetch(const void* p) {
#if defined(__x86_64__)
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p);
#endif
}

// The same, for a line about to be written: fetched exclusive, so the store that
// follows does not wait for another core to give the line up.
inline void prefetch_write(const void* p) {
#if defined(__x86_64__)
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1);
#endif
}

}  // namespace mesob
