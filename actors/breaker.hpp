// breaker: the circuit breaker and retry backoff that payout desks (payout_desk.hpp) and
// the trading tables (trading.hpp) keep per gateway: one mechanism for every gateway a
// shard sends work to and waits on.
//
// Phases: closed; open when at least breaker_min of the last breaker_window outcomes are
// known and half or more are bad; after `cooldown` (the caller's: 4 answer timeouts) it
// is half-open and lets one request through as a probe, whose outcome closes it (good)
// or opens it again (bad). Everything here is a pure function of the calls made, in log
// order, so replay decides the same.
#pragma once

#include <cstdint>
#include <string>

#include "actors/byte_codec.hpp"

namespace mesob::actors::gateways {

// A window of 64 outcomes, at least 20 known: a gateway that fails everything trips a
// breaker after 20 failures, while one declining 10% of requests at random trips it by
// chance about once in 10^15 full windows, and about once in 77,000 breakers in the
// windows of 20 to 63 outcomes after a (re)start (with a window of 20, at least 10 known,
// it was once in 140,000 full windows: gateway_bench tripped it).
constexpr uint32_t breaker_window = 64, breaker_min = 20;

// A running sum of amounts for operators (breakers' and reconciliation's): it stops at
// 2^64 - 1 instead of wrapping to a small figure that looks plausible.
inline void add_amount(uint64_t& total, uint64_t amount) {
  if (__builtin_add_overflow(total, amount, &total)) total = UINT64_MAX;
}

struct breaker {
  enum class phase : uint8_t { closed = 1, open = 2, half_open = 3 };
  phase ph = phase::closed;
  uint64_t open_until = 0;
  uint64_t probe = 0;      // half-open: the request probing (0: none yet)
  uint64_t outcomes = 0;   // the last `n` outcomes, newest in bit 0 (1: bad)
  uint8_t n = 0;
  uint64_t trips = 0;
  // Counters for operators (payouts: sent, settled, failed, timed out, and the amounts;
  // orders: sent, answered, rejected, timed out).
  uint64_t sent = 0, settled = 0, failed = 0, timeouts = 0;
  uint64_t settled_amount = 0, failed_amount = 0;

  // Whether request `key` may go through at `now`. An open breaker past open_until turns
  // half-open with `key` as its probe; a half-open one makes `key` the probe unless
  // busy(probe) says the current probe still decides. *changed: the state changed (the
  // caller stores it); *moved: the phase did (the caller tells operators).
  template <class Busy>
  bool admit(uint64_t key, uint64_t now, Busy&& busy, bool* changed, bool* moved) {
    *changed = *moved = false;
    switch (ph) {
      case phase::closed: return true;
      case phase::open:
        if (now < open_until) return false;
        ph = phase::half_open;
        probe = key;
        *changed = *moved = true;
        return true;
      case phase::half_open:
        if (probe != 0 && probe != key && busy(probe)) return false;
        probe = key;
        *changed = true;
        return true;
    }
    return false;
  }
  // The outcome of request `key` (bad: a failure or a timeout, as the caller judges: a
  // payout the gateway declined is good, wire::payout_failure). Returns whether the phase
  // moved. While half-open only the probe decides; while open, late outcomes of requests
  // sent before it opened count for nothing.
  bool record(uint64_t key, bool bad, uint64_t now, uint64_t cooldown);
};
[[nodiscard]] const char* phase_name(breaker::phase p);

// Byte form inside the owners' rows (the gateway number first, then the fields).
void encode_breaker(byte_writer& w, uint32_t gateway, const breaker& b);
// `outcomes32`: the payout desks' format 1, which kept 20 outcomes in a u32. False on
// damage it can see (the caller names the row).
bool decode_breaker(byte_reader& r, bool outcomes32, uint32_t* gateway, breaker* b);

// The wait before retry k (1, 2, ...) of request `key` at a gateway whose answer timeout
// is `timeout_ns`: exponential from a quarter of the timeout, at most 8 timeouts, with
// jitter of +-25% derived from the key and k (so replay agrees).
[[nodiscard]] uint64_t backoff_ns(uint64_t timeout_ns, uint32_t k, uint64_t key);

}  // namespace mesob::actors::gateways
