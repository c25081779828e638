#include "actors/breaker.hpp"

#include <algorithm>

#include "actors/flat_map.hpp"

namespace mesob::actors::gateways {

bool breaker::record(uint64_t key, bool bad, uint64_t now, uint64_t cooldown) {
  if (ph == phase::half_open) {
    if (probe != key) return false;  // only the probe decides
    probe = 0;
    if (bad) {
      ph = phase::open;
      open_until = now + cooldown;
      ++trips;
    } else {
      ph = phase::closed;
      outcomes = 0;
      n = 0;
    }
    return true;
  }
  if (ph == phase::open) return false;
  static_assert(breaker_window == 64, "outcomes: one bit each in a u64");
  outcomes = outcomes << 1 | (bad ? 1u : 0u);
  if (n < breaker_window) ++n;
  if (n >= breaker_min && uint32_t(__builtin_popcountll(outcomes)) * 2 >= n) {
    ph = phase::open;
    open_until = now + cooldown;
    outcomes = 0;
    n = 0;
    ++trips;
    return true;
  }
  return false;
}

const char* phase_name(breaker::phase p) {
  switch (p) {
    case breaker::phase::closed: return "closed";
    case breaker::phase::open: return "open";
    case breaker::phase::half_open: return "half_open";
  }
  return "?";
}

void encode_breaker(byte_writer& w, uint32_t gateway, const breaker& b) {
  w.put(gateway);
  w.put(uint8_t(b.ph));
  w.put(b.n);
  w.put(b.outcomes);
  w.put(b.open_until);
  w.put(b.probe);
  w.put(b.trips);
  w.put(b.sent);
  w.put(b.settled);
  w.put(b.failed);
  w.put(b.timeouts);
  w.put(b.settled_amount);
  w.put(b.failed_amount);
}

bool decode_breaker(byte_reader& r, bool outcomes32, uint32_t* gateway, breaker* out) {
  breaker b;
  *gateway = r.get<uint32_t>();
  const auto ph = r.get<uint8_t>();
  b.n = r.get<uint8_t>();
  b.outcomes = outcomes32 ? r.get<uint32_t>() : r.get<uint64_t>();
  b.open_until = r.get<uint64_t>();
  b.probe = r.get<uint64_t>();
  b.trips = r.get<uint64_t>();
  b.sent = r.get<uint64_t>();
  b.settled = r.get<uint64_t>();
  b.failed = r.get<uint64_t>();
  b.timeouts = r.get<uint64_t>();
  b.settled_amount = r.get<uint64_t>();
  b.failed_amount = r.get<uint64_t>();
  // (Outcomes beyond the n known are damage.)
  if (r.short_read || *gateway == 0 || ph < 1 || ph > 3 || b.n > breaker_window ||
      (b.n < breaker_window && (b.outcomes >> b.n) != 0))
    return false;
  b.ph = breaker::phase(ph);
  *out = b;
  return true;
}

uint64_t backoff_ns(uint64_t timeout_ns, uint32_t k, uint64_t key) {
  const uint64_t base = timeout_ns / 4;
  uint64_t wait = std::min<uint64_t>(base << std::min<uint32_t>(k == 0 ? 0 : k - 1, 16), 8 * timeout_ns);
  const uint64_t jitter = mix64(key ^ (uint64_t(k) << 48));
  return wait - wait / 4 + (wait / 2 == 0 ? 0 : jitter % (wait / 2));
}

}  // namespace mesob::actors::gateways
