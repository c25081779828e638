#include "actors/market.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "actors/byte_codec.hpp"
#include "wire/assert.hpp"

namespace mesob::actors::market {

using wire::result;

namespace {

constexpr uint32_t book_magic = 0x4D4B5431;  // "MKT1"
// Version 2 adds each instrument's `resequenced` byte; version 1 reads with it 0.
constexpr uint16_t book_version = 3;  // 3: band_ticks

bool symbol_char(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-'; }

uint64_t slice_ns(const wire::instrument_op& d) {
  return std::max<uint64_t>(1, uint64_t(d.move_window_ms) * ns_per_ms / window_slices);
}

}  // namespace

bool instrument::window_range(uint64_t t, uint64_t* lo, uint64_t* hi) const {
  const uint64_t number = t / slice_ns(def);
  uint64_t l = UINT64_MAX, h = 0;
  for (const slice& s : window)
    if (s.lo != 0 && s.number + window_slices > number && s.number <= number) {
      l = std::min(l, s.lo);
      h = std::max(h, s.hi);
    }
  if (h == 0) return false;
  *lo = l;
  *hi = h;
  return true;
}

std::string symbol_of(const wire::instrument_op& op) {
  size_t n = 0;
  while (n < sizeof op.symbol && op.symbol[n] != 0) ++n;
  if (n == 0 || n == sizeof op.symbol) return {};
  for (size_t i = 0; i < n; ++i)
    if (!symbol_char(op.symbol[i])) return {};
  for (size_t i = n; i < sizeof op.symbol; ++i)
    if (op.symbol[i] != 0) return {};
  return std::string(op.symbol, n);
}

bool set_symbol(wire::instrument_op& op, std::string_view symbol) {
  if (symbol.size() >= sizeof op.symbol) return false;
  std::memset(op.symbol, 0, sizeof op.symbol);
  std::memcpy(op.symbol, symbol.data(), symbol.size());
  return true;
}

wire::instrument_op definition(uint64_t id, std::string_view symbol, wire::asset_class cls,
                               wire::currency_code currency, uint64_t tick, uint64_t lot, halt_rules rules) {
  wire::instrument_op op;
  op.instrument_id = id;
  set_symbol(op, symbol);
  op.kind = wire::instrument_op_kind::define;
  op.cls = cls;
  op.currency = currency;
  op.tick = tick;
  op.lot = lot;
  op.move_bp = rules.move_bp;
  op.move_window_ms = rules.move_window_ms;
  op.stale_ms = rules.stale_ms;
  op.halt_ms = rules.halt_ms;
  return op;
}

result check_op_fields(const wire::instrument_op& op) {
  const uint8_t kind = uint8_t(op.kind);
  if (kind == 0 || kind > wire::instrument_op_kind_max) return result::instrument_op_invalid;
  if (op.instrument_id == 0) return result::id_must_not_be_zero;
  if (op.reserved != 0) return result::reserved_field;
  if (op.kind != wire::instrument_op_kind::define) {
    wire::instrument_op bare;  // the instrument, and a resequence's sequence
    bare.instrument_id = op.instrument_id;
    bare.kind = op.kind;
    if (op.kind == wire::instrument_op_kind::resequence) bare.tick = op.tick;
    return std::memcmp(&bare, &op, sizeof op) == 0 ? result::ok : result::instrument_op_invalid;
  }
  if (symbol_of(op).empty()) return result::symbol_invalid;
  if (op.tick == 0 || op.tick > tick_max) return result::tick_invalid;
  if (op.lot == 0 || op.lot > lot_max) return result::lot_invalid;
  if (!wire::currency_valid(op.currency)) return result::currency_invalid;
  if (uint8_t(op.cls) == 0 || uint8_t(op.cls) > wire::asset_class_max) return result::asset_class_invalid;
  if (op.move_bp == 0 || op.move_bp > move_bp_max || op.move_window_ms == 0 || op.move_window_ms > window_ms_max ||
      op.stale_ms == 0 || op.stale_ms > stale_ms_max || op.halt_ms == 0 || op.halt_ms > halt_ms_max)
    return result::halt_rule_invalid;
  return result::ok;
}

uint8_t instrument::reasons(uint64_t t) const {
  uint8_t r = 0;
  if (manual) r |= wire::halt_reasons::manual;
  if (t < move_halt_until) r |= wire::halt_reasons::move;
  if (last_ticks == 0 || (t > last_price_at && t - last_price_at > stale_ns())) r |= wire::halt_reasons::stale;
  return r;
}

uint64_t instrument::next_change(uint64_t t) const {
  uint64_t next = UINT64_MAX;
  if (move_halt_until > t) next = move_halt_until;
  if (last_ticks != 0) {
    const uint64_t stale_at = last_price_at + stale_ns() + 1;
    if (stale_at > t) next = std::min(next, stale_at);
  }
  return next;
}

wire::instrument_state instrument::view(uint64_t t) const {
  wire::instrument_state v;
  v.def = def;
  v.last_ticks = last_ticks;
  v.last_price_at = last_price_at;
  v.move_halt_until = move_halt_until;
  v.defined_at = defined_at;
  v.prices = prices;
  v.halts = halts;
  v.reasons = reasons(t);
  return v;
}

const instrument* book::find(uint64_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

size_t book::memory_bytes() const {
  return by_id_.size() * (sizeof(instrument) + 64) + by_symbol_.size() * 64 + timers_.size() * 48 +
         scheduled_.size() * 32;
}

uint64_t book::latest_time() const {
  uint64_t t = 0;
  for (const auto& [id, in] : by_id_) t = std::max({t, in.evaluated_at, in.last_price_at, in.defined_at});
  return t;
}

void book::emit(const instrument& in, wire::event_type type, uint64_t t, uint16_t code, uint16_t flags) {
  if (!events_) return;
  wire::event e = wire::decided_event(type, t, in.def.currency, in.def.instrument_id);
  e.code = code;
  e.flags = flags;
  e.amount = in.last_ticks;
  if (type == wire::event_type::instrument_halted && (flags & wire::halt_reasons::move)) e.ref.lo = in.move_halt_until;
  events_(std::move(e));
}

// Announces a change of the halt reasons at t: a halt when a reason begins, a resume
// when none is left; a reason ending while another holds changes nothing visible.
// An entry queued before later changes to the instrument is looked at as of the latest
// time its reasons were (what holds then holds from then on): time never runs back.
void book::announce(instrument& in, uint64_t t) {
  t = std::max(t, in.evaluated_at);
  in.evaluated_at = t;
  const uint8_t now = in.reasons(t);
  if (now == in.announced) return;
  const uint8_t began = now & ~in.announced;
  const uint8_t ended = in.announced & ~now;
  in.announced = now;
  if (began != 0) {
    ++in.halts;
    emit(in, wire::event_type::instrument_halted, t, now, began);
  } else if (now == 0) {
    emit(in, wire::event_type::instrument_resumed, t, ended, 0);
  }
}

// The instrument's one entry, at or before its next change by time from `t` (the time
// its reasons were last evaluated at). A price moves the stale time later on every call:
// the entry then stays where it is (no tree churn per price) and, when it comes up early,
// moves to the true time without touching the instrument; only a change to an earlier
// time (a move halt's end before the stale time) moves it at once.
void book::schedule(const instrument& in, uint64_t t) {
  const uint64_t id = in.def.instrument_id;
  const uint64_t d = in.next_change(t);
  if (d == UINT64_MAX) return;  // an entry left comes up early and goes (run_due)
  auto it = scheduled_.find(id);
  if (it != scheduled_.end()) {
    if (it->second <= d) return;
    timers_.erase({it->second, id});
    it->second = d;
  } else {
    scheduled_.emplace(id, d);
  }
  timers_.emplace(d, id);
}

void book::run_due(uint64_t t) {
  while (!timers_.empty() && timers_.begin()->first <= t) {
    const auto [d, id] = *timers_.begin();
    timers_.erase(timers_.begin());
    scheduled_.erase(id);
    auto& in = by_id_.at(id);
    const uint64_t truly = in.next_change(in.evaluated_at);
    if (truly == d) announce(in, d);  // else it came up early: nothing changes at d
    schedule(in, in.evaluated_at);
  }
}

result book::apply(const wire::instrument_op& op, uint64_t t, bool* repeated) {
  *repeated = false;
  if (const result r = check_op_fields(op); r != result::ok) return r;
  auto it = by_id_.find(op.instrument_id);
  if (op.kind == wire::instrument_op_kind::define) {
    if (it != by_id_.end()) {
      if (std::memcmp(&it->second.def, &op, sizeof op) != 0) return result::exists_with_different_fields;
      *repeated = true;
      return result::ok;
    }
    if (rules_ >= rules_instrument_tradable && !tradable(op)) return result::lot_invalid;
    const std::string sym = symbol_of(op);
    if (by_symbol_.count(sym)) return result::symbol_in_use;
    if (by_id_.size() >= instruments_max) return result::instruments_full;
    instrument& in = by_id_[op.instrument_id];
    in.def = op;
    in.defined_at = t;
    in.evaluated_at = t;
    in.announced = wire::halt_reasons::stale;  // no price yet: trading starts with the first
    by_symbol_.emplace(sym, op.instrument_id);
    if (events_) {
      wire::event e = wire::decided_event(wire::event_type::instrument_defined, t, op.currency, op.instrument_id);
      std::memcpy(&e.id, op.symbol, sizeof e.id);
      e.code = uint16_t(op.cls);
      e.amount = op.tick;
      e.ref.lo = op.lot;
      events_(std::move(e));
    }
    return result::ok;
  }
  if (it == by_id_.end()) return result::instrument_not_found;
  instrument& in = it->second;
  if (op.kind == wire::instrument_op_kind::resequence) {
    // Prices count from op.tick: the feed's next must be greater. Nothing else changes
    // (the last price and its time stay: only a new price lifts a stale halt).
    // Prices already count from there, by an earlier resequence (or, by older rules, by
    // whatever set it: a price taken at it too).
    if (op.tick == in.last_sequence && (in.resequenced || rules_ < rules_resequence_marks)) {
      *repeated = true;
      return result::ok;
    }
    if (events_) {
      wire::event e = wire::decided_event(wire::event_type::instrument_resequenced, t, in.def.currency, in.def.instrument_id);
      e.ref.lo = op.tick;
      e.ref.hi = in.last_sequence;
      events_(std::move(e));
    }
    in.last_sequence = op.tick;
    in.resequenced = true;
    return result::ok;
  }
  if (op.kind == wire::instrument_op_kind::halt) {
    if (in.manual) {
      *repeated = true;
      return result::ok;
    }
    in.manual = true;
  } else {
    // Lifts a manual or move halt; a stale price stays (only a price lifts it), so with
    // nothing else to lift the answer says why it does not trade.
    if (!in.manual && t >= in.move_halt_until)
      return (in.reasons(t) & wire::halt_reasons::stale) ? result::price_stale : result::instrument_not_halted;
    in.manual = false;
    if (t < in.move_halt_until) {
      in.move_halt_until = 0;
      std::fill(std::begin(in.window), std::end(in.window), slice{});
    }
  }
  announce(in, t);
  schedule(in, t);
  return result::ok;
}

result book::apply(const wire::price& p, uint64_t t) {
  if (p.instrument_id == 0) return result::id_must_not_be_zero;
  auto it = by_id_.find(p.instrument_id);
  if (it == by_id_.end()) return result::instrument_not_found;
  instrument& in = it->second;
  if (p.ticks == 0 || p.ticks > notional_max / in.def.tick || p.sequence == 0) return result::price_invalid;
  // The feed's sequence numbers make a price idempotent: the latest again is a repeat.
  if (p.sequence == in.last_sequence && !in.resequenced)
    return p.ticks == in.last_ticks ? result::ok : result::exists_with_different_fields;
  if (p.sequence <= in.last_sequence) return result::sequence_out_of_order;
  const uint64_t number = t / slice_ns(in.def);
  if (t >= in.move_halt_until) {
    uint64_t lo = UINT64_MAX, hi = 0;
    in.window_range(t, &lo, &hi);  // (none: hi stays 0)
    // A quiet feed left the window empty: the last price measures the move, if it was
    // taken into the window (not the print that began a move halt nor one during it, so
    // not before the window last started again) and is not stale.
    if (hi == 0 && rules_ >= rules_move_after_quiet && in.band_ticks != 0 && in.last_price_at >= in.move_halt_until &&
        in.last_ticks == in.band_ticks && t - in.last_price_at < in.stale_ns())
      lo = hi = in.band_ticks;
    using u128 = unsigned __int128;
    const u128 scaled = u128(p.ticks) * 10'000;
    if (hi != 0 && (scaled > u128(lo) * (10'000 + in.def.move_bp) || scaled < u128(hi) * (10'000 - in.def.move_bp))) {
      in.move_halt_until = t + uint64_t(in.def.halt_ms) * ns_per_ms;
      std::fill(std::begin(in.window), std::end(in.window), slice{});
    }
    // The window holds prices outside move halts only: the first price after one starts it again.
    if (t >= in.move_halt_until) {
      in.band_ticks = p.ticks;
      slice& s = in.window[number % window_slices];
      if (s.lo == 0 || s.number != number) s = {number, p.ticks, p.ticks};
      else {
        s.lo = std::min(s.lo, p.ticks);
        s.hi = std::max(s.hi, p.ticks);
      }
    }
  }
  in.last_ticks = p.ticks;
  in.last_sequence = p.sequence;
  in.resequenced = false;
  in.last_price_at = t;
  ++in.prices;
  if (events_) {
    wire::event e = wire::decided_event(wire::event_type::price, t, in.def.currency, in.def.instrument_id);
    e.amount = p.ticks;
    events_(std::move(e));
  }
  announce(in, t);
  schedule(in, t);
  return result::ok;
}

std::vector<uint8_t> book::encode() const {
  byte_writer w;
  w.put(book_magic);
  w.put(book_version);
  w.put(uint32_t(by_id_.size()));
  std::map<uint64_t, const instrument*> ordered;
  for (const auto& [id, in] : by_id_) ordered.emplace(id, &in);
  for (const auto& [id, in] : ordered) {
    w.put_bytes({reinterpret_cast<const uint8_t*>(&in->def), sizeof in->def});
    for (uint64_t v : {in->defined_at, in->evaluated_at, in->last_ticks, in->last_sequence, in->last_price_at,
                       in->move_halt_until, in->prices})
      w.put(v);
    w.put(in->halts);
    w.put(uint8_t(in->manual));
    w.put(in->announced);
    w.put(uint8_t(in->resequenced));
    w.put(in->band_ticks);
    for (const slice& s : in->window) {
      w.put(s.number);
      w.put(s.lo);
      w.put(s.hi);
    }
  }
  return std::move(w.out);
}

bool book::decode(std::span<const uint8_t> bytes, book* out, std::string* why) {
  byte_reader r{bytes};
  const uint32_t magic = r.get<uint32_t>();
  const uint16_t version = r.get<uint16_t>();
  const uint32_t n = r.get<uint32_t>();
  if (r.short_read || magic != book_magic) return *why = "market: not a market record", false;
  if (version < 1 || version > book_version)
    return *why = "market: unknown version " + std::to_string(version), false;
  if (n > instruments_max) return *why = "market: " + std::to_string(n) + " instruments, over the limit", false;
  book b;
  uint64_t prev = 0;
  for (uint32_t i = 0; i < n; ++i) {
    instrument in;
    const auto def = r.take(sizeof in.def);
    if (def.size() == sizeof in.def) std::memcpy(&in.def, def.data(), sizeof in.def);
    in.defined_at = r.get<uint64_t>();
    in.evaluated_at = r.get<uint64_t>();
    in.last_ticks = r.get<uint64_t>();
    in.last_sequence = r.get<uint64_t>();
    in.last_price_at = r.get<uint64_t>();
    in.move_halt_until = r.get<uint64_t>();
    in.prices = r.get<uint64_t>();
    in.halts = r.get<uint32_t>();
    const uint8_t manual = r.get<uint8_t>();
    in.announced = r.get<uint8_t>();
    const uint8_t resequenced = version >= 2 ? r.get<uint8_t>() : 0;
    // Before version 3: the last price if it was taken into the window (at or after the
    // end of the last move halt), else unknown (the print that began a halt, or one
    // during it). Before, unknown whenever a move halt had ever been, though one that
    // ended is not cleared: an instrument priced since came back without its band.
    in.band_ticks = version >= 3 ? r.get<uint64_t>() : in.last_price_at < in.move_halt_until ? 0 : in.last_ticks;
    for (slice& s : in.window) {
      s.number = r.get<uint64_t>();
      s.lo = r.get<uint64_t>();
      s.hi = r.get<uint64_t>();
    }
    const std::string at = "market: instrument " + std::to_string(in.def.instrument_id) + ": ";
    if (r.short_read) return *why = "market: the record is cut short", false;
    if (in.def.kind != wire::instrument_op_kind::define || check_op_fields(in.def) != result::ok)
      return *why = at + "its definition is invalid", false;
    if (in.def.instrument_id <= prev) return *why = at + "out of order or repeated", false;
    prev = in.def.instrument_id;
    if (manual > 1 || (in.announced & ~wire::halt_reasons::all) != 0) return *why = at + "bad halt state", false;
    in.manual = manual == 1;
    if (resequenced > 1) return *why = at + "bad resequence flag", false;
    in.resequenced = resequenced == 1;
    // (The sequence is not tied to the price: an operator may resequence at any time.)
    if ((in.last_ticks == 0) != (in.last_price_at == 0) || (in.last_ticks == 0) != (in.prices == 0) ||
        in.last_ticks > notional_max / in.def.tick || in.evaluated_at < in.defined_at ||
        in.evaluated_at < in.last_price_at || in.band_ticks > notional_max / in.def.tick ||
        (in.band_ticks != 0 && in.last_ticks == 0))
      return *why = at + "bad last price", false;
    const uint64_t len = slice_ns(in.def);
    for (size_t k = 0; k < window_slices; ++k) {
      const slice& s = in.window[k];
      const bool empty = s.lo == 0 && s.hi == 0 && s.number == 0;
      if (!empty && (s.lo == 0 || s.lo > s.hi || s.hi > notional_max / in.def.tick || s.number % window_slices != k ||
                     in.last_ticks == 0 || s.number > in.last_price_at / len))
        return *why = at + "bad price window", false;
    }
    if (in.move_halt_until != 0 &&
        (in.last_ticks == 0 || in.move_halt_until > in.last_price_at + uint64_t(in.def.halt_ms) * ns_per_ms))
      return *why = at + "a move halt without the price that began it", false;
    if (in.announced != in.reasons(in.evaluated_at))
      return *why = at + "its announced halt state is not its state", false;
    if (!b.by_symbol_.emplace(symbol_of(in.def), in.def.instrument_id).second)
      return *why = at + "its symbol is another instrument's", false;
    const uint64_t id = in.def.instrument_id;
    b.by_id_.emplace(id, in);
  }
  if (r.at != bytes.size()) return *why = "market: bytes after the last instrument", false;
  // Timers again: each instrument's next change by time, as the live book had it.
  for (const auto& [id, in] : b.by_id_) b.schedule(in, in.evaluated_at);
  b.events_ = std::move(out->events_);
  *out = std::move(b);
  return true;
}

}  // namespace mesob::actors::market
