// market: the instruments Mesob trades, their prices and their halts, as durable
// engine state decided in log order.
//
// An instrument has a client-chosen id, a symbol, an asset class, a currency, a price
// tick (minor units per tick per unit) and a lot size, and its halt rules. Prices are
// integer ticks from a market-data gateway (wire::price), stamped with the engine clock.
// Trading in an instrument is halted, for any of these reasons at once
// (wire::halt_reasons):
//   - manual: an operator's `halt`, until an operator's `resume`;
//   - move: a price more than move_bp basis points above the lowest or below the highest
//     price of the last move_window_ms halts it for halt_ms. The window is kept as 8
//     slices of move_window_ms / 8 (each its lowest and highest), so it covers between
//     7/8 of the window and all of it: a bounded, deterministic approximation. A move halt
//     forgets the window, and prices during it stay out of it: the first price after it
//     starts the window again. A price that finds the window empty (the feed quiet
//     longer than the window) is measured against the last price instead, if that one
//     was taken into the window and is not stale (rules version 24).
//     Every price is kept as the last price, halted or not;
//   - stale: no price yet, or the last price is older than stale_ms (it ends with the
//     next price).
// An operator's `resume` lifts manual and move halts; staleness only a price lifts
// (price_stale). Whether an instrument trades at engine time t is a pure function of
// its state and t (`reasons`), so every reader at the same log position agrees.
//
// Placement: every shard keeps its own copy of the market (a replica) and applies every
// instrument and price batch in log order, so a portfolio's order check on any shard
// reads the market as of the order's place in the log without a message. Shard 0's copy
// writes the results, makes the events (including the halts and resumes time decides:
// a price ageing past stale_ms, a move halt ending, announced at the first batch that
// starts after them) and goes into the snapshot.
//
// Ownership: one copy per shard, touched only by that shard's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "actors/rules_version.hpp"
#include "wire/types.hpp"

namespace mesob::actors::market {

constexpr uint32_t instruments_max = 65'536;
constexpr uint64_t tick_max = 1'000'000'000ull;
constexpr uint64_t lot_max = 1'000'000'000ull;
constexpr uint64_t notional_max = 1ull << 53;  // a price (ticks x tick) in minor units
// Whether the smallest order of a definition (one lot at one tick) is within notional_max
// (rules_instrument_tradable: one past it could never trade).
[[nodiscard]] inline bool tradable(const wire::instrument_op& def) {
  return (unsigned __int128)def.tick * def.lot <= notional_max;
}
constexpr uint32_t move_bp_max = 10'000;
constexpr uint32_t window_ms_max = 86'400'000;      // 1 day
constexpr uint32_t stale_ms_max = 7 * 86'400'000;   // 7 days
constexpr uint32_t halt_ms_max = 86'400'000;
constexpr uint32_t window_slices = 8;
constexpr uint64_t ns_per_ms = 1'000'000ull;

// The symbol an operation names ("" when it is not valid).
[[nodiscard]] std::string symbol_of(const wire::instrument_op& op);
bool set_symbol(wire::instrument_op& op, std::string_view symbol);
// Field checks (no state).
[[nodiscard]] wire::result check_op_fields(const wire::instrument_op& op);

// A definition with every field (checked when applied; a symbol too long is left empty).
struct halt_rules {
  uint32_t move_bp = 0, move_window_ms = 0, stale_ms = 0, halt_ms = 0;
};
[[nodiscard]] wire::instrument_op definition(uint64_t id, std::string_view symbol, wire::asset_class cls,
                                             wire::currency_code currency, uint64_t tick, uint64_t lot,
                                             halt_rules rules);

struct slice {
  uint64_t number = 0;  // t / slice length; 0 with lo == 0: empty
  uint64_t lo = 0, hi = 0;
};

struct instrument {
  wire::instrument_op def;
  uint64_t defined_at = 0;
  uint64_t evaluated_at = 0;  // the engine time its halt reasons were last announced as of
  uint64_t last_ticks = 0;
  // The last price taken outside a move halt that did not begin one (0: none known, as
  // from a snapshot of before it taken during a halt): brokers' fills are banded around
  // it (rules version 11), and from version 37 around the window's prices too, so that a
  // bad print that halts the instrument does not move the band to itself. (A manual halt,
  // its resume or a resequence leaves the window as it is: its prices are all within
  // move_bp of one another.)
  uint64_t band_ticks = 0;
  uint64_t last_sequence = 0;  // the feed's sequence number of the last price, or an operator's resequence
  uint64_t last_price_at = 0;
  uint64_t move_halt_until = 0;
  uint64_t prices = 0;
  uint32_t halts = 0;
  bool manual = false;
  // last_sequence is an operator's resequence: no price was taken at it (a price there is
  // not a repeat of the last one but out of order, like any at or below it).
  bool resequenced = false;
  uint8_t announced = 0;  // the reasons last announced as events
  slice window[window_slices] = {};

  [[nodiscard]] uint64_t stale_ns() const { return uint64_t(def.stale_ms) * ns_per_ms; }
  // The price it trades at: the last one taken outside a move halt (band_ticks), else the
  // last one. They differ only after a print that began a move halt, or came during one,
  // until the next price: fills are banded around this one (rules version 11), orders
  // checked against it (rules_reference_price) and rebalances valued at it.
  [[nodiscard]] uint64_t reference_ticks() const { return band_ticks != 0 ? band_ticks : last_ticks; }
  // The lowest and highest prices of its move window at engine time t (the last
  // move_window_ms, prices taken outside move halts); false, and *lo and *hi untouched,
  // when it holds none.
  bool window_range(uint64_t t, uint64_t* lo, uint64_t* hi) const;
  // Why it does not trade at engine time t (0: it trades).
  [[nodiscard]] uint8_t reasons(uint64_t t) const;
  // When `reasons` next changes by time alone (UINT64_MAX: not by time), given that it
  // was last evaluated at `t`.
  [[nodiscard]] uint64_t next_change(uint64_t t) const;
  [[nodiscard]] wire::instrument_state view(uint64_t t) const;
};

class book {
 public:
  // Events for what the market decides (shard 0's copy): each as wire::decided_event.
  using event_sink = std::function<void(wire::event&&)>;
  void set_events(event_sink s) { events_ = std::move(s); }

  // Applies operation `op` at engine time `t`; the result, and `repeated` set when an ok
  // changes nothing (a definition again, a halt of a halted instrument).
  wire::result apply(const wire::instrument_op& op, uint64_t t, bool* repeated);
  wire::result apply(const wire::price& p, uint64_t t);
  // Halts and resumes that time decided by `t` (stale prices, move halts ending),
  // announced; `due(t)` says whether there is any.
  [[nodiscard]] bool due(uint64_t t) const { return !timers_.empty() && timers_.begin()->first <= t; }
  void run_due(uint64_t t);
  [[nodiscard]] uint64_t next_due() const { return timers_.empty() ? UINT64_MAX : timers_.begin()->first; }
  // The latest engine time the book holds (a snapshot's must not pass its clock).
  [[nodiscard]] uint64_t latest_time() const;

  // The rules a batch is decided by (its log record's version in replay; rules_newest live).
  void set_rules(uint16_t version) { rules_ = version; }

  [[nodiscard]] const instrument* find(uint64_t id) const;
  [[nodiscard]] bool symbol_taken(const std::string& symbol) const { return by_symbol_.count(symbol) != 0; }
  [[nodiscard]] size_t size() const { return by_id_.size(); }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [id, in] : by_id_) f(in);
  }
  [[nodiscard]] size_t memory_bytes() const;

  // Snapshot byte form (version 3; versions 1 and 2 are read too): every instrument, in id order. decode refuses any
  // damage it can see (a bad field, a repeated id or symbol, a window out of order).
  [[nodiscard]] std::vector<uint8_t> encode() const;
  static bool decode(std::span<const uint8_t> bytes, book* out, std::string* why);

 private:
  void announce(instrument& in, uint64_t t);
  void schedule(const instrument& in, uint64_t t);
  void emit(const instrument& in, wire::event_type type, uint64_t t, uint16_t code, uint16_t flags);

  std::unordered_map<uint64_t, instrument> by_id_;
  std::unordered_map<std::string, uint64_t> by_symbol_;
  uint16_t rules_ = rules_newest;
  // (due time, instrument id): one entry per instrument, at or before its next change by
  // time alone (next_change(evaluated_at)); one coming up early changes nothing.
  std::set<std::pair<uint64_t, uint64_t>> timers_;
  std::unordered_map<uint64_t, uint64_t> scheduled_;  // instrument -> its entry's time
  event_sink events_;
};

}  // namespace mesob::actors::market
