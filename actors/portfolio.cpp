#include "actors/portfolio.hpp"

#include <algorithm>
#include <set>

#include "actors/byte_codec.hpp"
#include "wire/assert.hpp"

namespace mesob::actors::portfolio {

using wire::result;

namespace {
constexpr uint32_t book_magic = 0x504F5254;  // "PORT"
// 2: the engine's fields of an order (placed, expiry, broker, fills); 3: its routing;
// 4: when it began ending, and each fill's broker.
constexpr uint16_t book_version = 4;
using u128 = unsigned __int128;

bool buying(const wire::order& o) { return o.side == wire::order_side::buy; }
}  // namespace

uint64_t notional(uint64_t quantity, uint64_t price_ticks, uint64_t tick) {
  const u128 units = u128(quantity) * price_ticks;  // < 2^128: no wrap
  if (units > market::notional_max || tick > market::notional_max) return UINT64_MAX;
  const u128 n = units * tick;  // both factors below 2^53: below 2^106
  return n > market::notional_max ? UINT64_MAX : uint64_t(n);
}

order_entry* book::order_mut(uint64_t id) {
  auto it = orders_.find(id);
  return it == orders_.end() ? nullptr : &it->second;
}

size_t book::memory_bytes() const {
  size_t n = sizeof *this + positions_.size() * (sizeof(position) + 48) + closed_.capacity() * 8;
  for (const auto& [id, e] : orders_)
    n += sizeof e + 48 + e.fills.capacity() * sizeof(fill_record) + (e.attempts.capacity() + e.given_up.capacity()) * 4;
  return n;
}

std::vector<wire::order> plan_rebalance(const book& b, uint64_t wallet, uint64_t first_id, const rebalance_inputs& in) {
  // Prices of what counts: the model's instruments and those held, in the currency.
  struct line {
    uint64_t id, unit, held, free, lot, last, tick;  // last: the reference price; unit: minor units a unit at it
    uint64_t top;  // the highest price a sell may fill at now (0: none known)
    bool buys;     // the profile lets the customer buy it
    uint32_t weight;
    bool trades;
  };
  std::map<uint64_t, line> lines;
  auto add = [&](uint64_t id) {
    if (lines.count(id)) return;
    const market::instrument* ins = in.market->find(id);
    if (!ins || ins->def.currency != in.currency) return;
    const position* p = b.find(id);
    // Valued, and its orders' limits set, at the price its fills are banded around (a
    // look-up: no rules version); before, the last price, so after a print that began a
    // move halt a rebalance valued the line at that print and planned orders that could
    // not fill.
    const uint64_t price = ins->reference_ticks();
    line l{id, 0, p ? p->quantity : 0, p ? p->quantity - p->reserved : 0, ins->def.lot, price, ins->def.tick,
           in.sell_top ? in.sell_top(*ins) : 0, (in.classes & (1u << (uint8_t(ins->def.cls) - 1))) != 0, 0, false};
    const uint64_t unit = notional(1, price, ins->def.tick);
    l.unit = unit == UINT64_MAX ? 0 : unit;
    l.trades = l.unit != 0 && ins->reasons(in.t) == 0 && !(p && (p->buying != 0 || p->reserved != 0));
    const auto w = in.model->find(id);
    l.weight = w == in.model->end() ? 0 : w->second;
    lines.emplace(id, l);
  };
  for (const auto& [id, w] : *in.model) add(id);
  b.for_each_position([&](uint64_t id, const position& p) {
    if (p.quantity != 0 || p.buying != 0) add(id);
  });
  // The value: the cash, the units held, and what open buys of these lines still hold
  // (out of the cash: money until it buys units, about as much at the price it fills).
  // Before, a rebalance while a buy was open valued the portfolio without it, and sold
  // the other lines toward a share of too little; then the units such a buy may add,
  // at the reference price, which a resting bid far below it made many times its hold.
  using u128 = unsigned __int128;
  // Each line's part is below 2^117 (2^64 units at < 2^53 each), a hold below 2^64; the
  // sum stops at 2^127 (a portfolio past it is valued there), so a share, at most the
  // value, fits.
  constexpr u128 value_max = u128(1) << 127;
  u128 value = in.cash;
  for (const auto& [id, l] : lines) value = std::min(value + u128(l.held) * l.unit, value_max);
  b.for_each_order([&](const order_entry& e) {
    if (e.st == order_state::open && buying(e.o) && lines.count(e.o.instrument_id))
      value = std::min(value + e.held, value_max);
  });
  const auto share = [&](uint32_t bp) { return value / 10'000 * bp + value % 10'000 * bp / 10'000; };
  const u128 band = share(in.drift_bp);
  // A buy is sized at the last price but holds its quantity at its limit (the last price
  // and the slippage): the buys' holds together are kept within the cash there is, in
  // instrument order (sells' proceeds come later: the next rebalance spends them).
  // Before, buys toward weights summing to about 100% held more than the cash, were
  // refused (insufficient_cash), and every rebalance planned the same.
  // The tier's daily outflow counts every hold made today, so the buys' holds share
  // what is left of it as they share the cash.
  u128 cash_left = std::min<u128>(std::min(in.cash, in.outflow_left), market::notional_max);
  u128 credit_left = std::min<u128>(in.balance_room, market::notional_max);  // (a sell's worth stays exact)
  uint64_t lots_left = open_fills_max - std::min<uint64_t>(b.open_lots(), open_fills_max);
  std::vector<wire::order> sells, buys;
  for (const auto& [id, l] : lines) {
    if (!l.trades) continue;
    const u128 target = share(l.weight), now = u128(l.held) * l.unit;
    const bool buy = target > now;
    const u128 gap = buy ? target - now : now - target;
    if (gap <= band || (buy && !l.buys)) continue;
    const uint64_t slip = uint64_t(u128(l.last) * in.slippage_bp / 10'000);
    const uint64_t limit = buy ? l.last + slip : std::max<uint64_t>(1, l.last - std::min(slip, l.last));
    const uint64_t held_unit = buy ? notional(1, limit, l.tick) : l.unit;  // a unit's hold
    if (held_unit == 0 || held_unit == UINT64_MAX) continue;
    // A sell's credit toward the balance limit, a unit: at its limit, or the highest
    // price it may fill at when that is higher.
    const uint64_t credit_unit = buy ? 0 : notional(1, std::max(limit, l.top), l.tick);
    if (!buy && credit_unit == UINT64_MAX) continue;
    uint64_t units = uint64_t(std::min<u128>(gap / l.unit, u128(1) << 62));
    if (buy) {
      units = uint64_t(std::min<u128>(units, cash_left / held_unit));
      // Within the profile's position limit as the order will be checked against it (the
      // units held and bought, at the limit): before, a buy past it was planned, refused
      // exceeds_position_limit, and that line never moved.
      const uint64_t within = in.position_max / held_unit;
      units = within > l.held ? std::min(units, within - l.held) : 0;
      // Its hold within the tier's single-transfer limit (exceeds_transfer_limit).
      units = std::min(units, in.single_max / held_unit);
    } else {
      units = std::min(units, l.free);
      // Its credit within the balance limit's room (exceeds_balance_limit).
      if (credit_unit != 0) units = uint64_t(std::min<u128>(units, credit_left / credit_unit));
    }
    // At most the lots an order may take fills of (order_lots_past_fills), and the lots
    // the open orders leave the portfolio (open_lots_past_fills): a line further off its
    // target moves that far, and the next rebalance goes on.
    units = uint64_t(std::min<u128>(units, u128(l.lot) * std::min<uint64_t>(fills_max, lots_left)));
    units -= units % l.lot;
    if (units == 0) continue;
    lots_left -= units / l.lot;
    if (buy) cash_left -= u128(units) * held_unit;
    else credit_left -= u128(units) * credit_unit;
    wire::order o{};
    o.wallet = wallet;
    o.instrument_id = id;
    o.quantity = units;
    o.currency = in.currency;
    o.side = buy ? wire::order_side::buy : wire::order_side::sell;
    o.type = wire::order_type::market;
    o.expires_s = in.expires_s;
    o.limit_ticks = limit;
    (buy ? buys : sells).push_back(o);
  }
  std::vector<wire::order> out = std::move(sells);
  out.insert(out.end(), buys.begin(), buys.end());
  if (out.size() > rebalance_orders_max) out.resize(rebalance_orders_max);
  for (size_t i = 0; i < out.size(); ++i) out[i].id = first_id + i;
  return out;
}

const position* book::find(uint64_t instrument) const {
  auto it = positions_.find(instrument);
  return it == positions_.end() ? nullptr : &it->second;
}

const order_entry* book::order(uint64_t id) const {
  auto it = orders_.find(id);
  return it == orders_.end() ? nullptr : &it->second;
}

result check_order(const wire::order& o, const market::instrument* ins) {
  // 1. fields
  if (o.id == 0 || o.wallet == 0 || o.instrument_id == 0) return result::id_must_not_be_zero;
  if ((o.side != wire::order_side::buy && o.side != wire::order_side::sell) ||
      (o.type != wire::order_type::market && o.type != wire::order_type::limit) || o.expires_s > expires_s_max)
    return result::order_invalid;
  if (o.reserved != 0 || o.reserved2 != 0 || o.reserved3 != 0) return result::reserved_field;
  if (o.quantity == 0) return result::amount_must_not_be_zero;
  if (o.limit_ticks == 0) return result::price_invalid;
  // 2. the instrument
  if (!ins) return result::instrument_not_found;
  if (o.currency != ins->def.currency) return result::wrong_currency;
  if (o.quantity % ins->def.lot != 0) return result::lot_size_invalid;
  if (notional(o.quantity, o.limit_ticks, ins->def.tick) == UINT64_MAX) return result::amounts_too_large;
  return result::ok;
}

result book::check(const wire::order& o, const order_inputs& in) const {
  if (const result r = check_order(o, in.instrument); r != result::ok) return r;
  if (orders_.count(o.id)) return result::exists_with_different_fields;  // the engine answers repeats first
  const market::instrument* ins = in.instrument;
  // A broker may fill a lot at a time, and an order takes at most fills_max fills: one of
  // more lots could be filled past what settles (its hold kept for units bought).
  if (in.rules >= rules_orders_within_fills && o.quantity / ins->def.lot > fills_max) return result::order_lots_past_fills;
  const uint64_t cost = notional(o.quantity, o.limit_ticks, ins->def.tick);
  // 3. the customer
  const customers::customer* c = in.customer;
  if (!c) return result::customer_not_found;
  if (c->kyc != wire::kyc_status::verified) return result::kyc_not_verified;
  const customers::profile_rules* rules = in.policy ? in.policy->profile(uint8_t(c->profile)) : nullptr;
  // The profile limits what is bought: a sell of what a stricter profile forbids goes.
  const bool profile_limits = buying(o) || in.rules < rules_portfolio_close_and_sells;
  if (!rules && profile_limits) return result::risk_profile_undefined;
  if (profile_limits && !(rules->classes & (1u << (uint8_t(ins->def.cls) - 1)))) return result::risk_profile_forbids;
  // 4. the market at the order's time
  const uint8_t why = ins->reasons(in.t);
  if (why & (wire::halt_reasons::manual | wire::halt_reasons::move)) return result::instrument_halted;
  if (why & wire::halt_reasons::stale) return result::price_stale;
  // (Against the price fills are banded around, rules_reference_price; before, the last
  // price, which after a print that began a move halt is that print.)
  const uint64_t price = in.rules >= rules_reference_price ? ins->reference_ticks() : ins->last_ticks;
  if (o.type == wire::order_type::market && (buying(o) ? price > o.limit_ticks : price < o.limit_ticks))
    return result::price_limit_exceeded;
  // 5. position and money
  const position* p = find(o.instrument_id);
  if (open_ >= open_orders_max || (!p && positions_.size() >= positions_max)) return result::too_many_orders;
  if (in.rules >= rules_open_lots_within_fills &&
      open_lots_ + std::min<uint64_t>(o.quantity / ins->def.lot, fills_max) > open_fills_max)
    return result::open_lots_past_fills;
  if (buying(o)) {
    const u128 could = u128(p ? p->quantity : 0) + (p ? p->buying : 0) + o.quantity;  // < 2^66
    const u128 per_unit = u128(o.limit_ticks) * ins->def.tick;                       // < 2^128
    if (could > rules->position_max || per_unit > rules->position_max ||
        could * per_unit > rules->position_max)  // both at most position_max < 2^64 here
      return result::exceeds_position_limit;
    if (cost > in.wallet_available) return result::insufficient_cash;
  } else if (!p || p->quantity - p->reserved < o.quantity) {
    return result::insufficient_position;
  }
  return result::ok;
}

void book::count_lots(const market::book& market) {
  open_lots_ = 0;
  for (auto& [id, e] : orders_) {
    if (e.st != order_state::open) continue;
    const market::instrument* ins = market.find(e.o.instrument_id);
    e.lots = uint32_t(std::min<uint64_t>(e.o.quantity / (ins ? ins->def.lot : 1), fills_max));
    open_lots_ += e.lots;
  }
}

void book::accept(const wire::order& o, uint64_t tick, uint64_t lot) {
  MESOB_ASSERT(orders_.count(o.id) == 0);
  position& p = positions_[o.instrument_id];
  order_entry e;
  e.o = o;
  e.tick = tick;
  if (buying(o)) {
    e.held = notional(o.quantity, o.limit_ticks, tick);
    p.buying += o.quantity;
  } else {
    MESOB_ASSERT(p.quantity - p.reserved >= o.quantity);
    p.reserved += o.quantity;
  }
  e.lots = uint32_t(std::min<uint64_t>(o.quantity / std::max<uint64_t>(lot, 1), fills_max));
  open_lots_ += e.lots;
  orders_.emplace(o.id, e);
  ++open_;
}

uint64_t book::fill(uint64_t order_id, uint64_t quantity, uint64_t price_ticks, result* r, uint64_t* released,
                    uint64_t fill_id, uint32_t gateway) {
  *released = 0;
  auto it = orders_.find(order_id);
  if (it == orders_.end() || it->second.st != order_state::open) {
    *r = result::order_not_open;
    return 0;
  }
  order_entry& e = it->second;
  const bool buy = buying(e.o);
  if (quantity == 0 || quantity > e.open_quantity() || price_ticks == 0 ||
      (buy ? price_ticks > e.o.limit_ticks : price_ticks < e.o.limit_ticks)) {
    *r = result::fill_invalid;
    return 0;
  }
  // A buy within its limit costs at most the notional held for it; a sell's proceeds
  // have no cap but the market's.
  const uint64_t value = notional(quantity, price_ticks, e.tick);
  if (value == UINT64_MAX) {
    *r = result::fill_invalid;
    return 0;
  }
  position& p = positions_.at(e.o.instrument_id);
  if (buy) {
    MESOB_ASSERT(value <= e.held && p.buying >= quantity);
    e.held -= value;
    p.buying -= quantity;
    p.quantity += quantity;
    p.cost += value;
  } else {
    MESOB_ASSERT(p.reserved >= quantity && p.quantity >= quantity);
    // The basis leaves in proportion, rounded down: what stays keeps the remainder.
    const uint64_t basis = uint64_t(u128(p.cost) * quantity / p.quantity);
    p.cost -= basis;
    p.quantity -= quantity;
    p.reserved -= quantity;
  }
  e.paid += value;
  e.filled += quantity;
  e.fills.push_back({fill_id != 0 ? fill_id : e.fills.size() + 1, quantity, price_ticks, gateway});
  *r = result::ok;
  if (e.open_quantity() == 0) {
    *released = e.held;
    e.held = 0;
    closed(e, order_state::filled);
  }
  return value;
}

uint64_t book::close(uint64_t order_id, order_state why, result* r) {
  MESOB_ASSERT(why != order_state::open && why != order_state::filled);
  auto it = orders_.find(order_id);
  if (it == orders_.end() || it->second.st != order_state::open) {
    *r = result::order_not_open;
    return 0;
  }
  order_entry& e = it->second;
  position& p = positions_.at(e.o.instrument_id);
  uint64_t released = 0;
  if (buying(e.o)) {
    p.buying -= e.open_quantity();
    released = e.held;
    e.held = 0;
  } else {
    p.reserved -= e.open_quantity();
  }
  closed(e, why);
  *r = result::ok;
  return released;
}

void book::closed(order_entry& e, order_state why) {
  e.st = why;
  --open_;
  open_lots_ -= e.lots;
  closed_.push_back(e.o.id);
  closed_fills_ += e.fills.size();
  while (closed_.size() > closed_kept_max || (closed_fills_ > closed_fills_kept_max && closed_.size() > 1)) {
    // The oldest, past those whose settlement the ledger refused (an operator's to see,
    // as forget_closed keeps them) or may still refuse (a chain owed); one of those only
    // past closed_kept_max. Never this one: its caller reads it next.
    auto drop = std::find_if(closed_.begin(), closed_.end() - 1, [&](uint64_t id) {
      const auto it = orders_.find(id);
      return it == orders_.end() || (!it->second.settle_refused && it->second.chains_owed == 0);
    });
    if (drop == closed_.end() - 1) {
      if (closed_.size() <= closed_kept_max) break;
      drop = closed_.begin();
    }
    if (const auto it = orders_.find(*drop); it != orders_.end()) {
      closed_fills_ -= it->second.fills.size();
      orders_.erase(it);
    }
    closed_.erase(drop);
  }
  drop_if_empty(e.o.instrument_id);
}

void book::drop_if_empty(uint64_t instrument) {
  auto it = positions_.find(instrument);
  // Nothing held and nothing open on it (open orders keep `buying` or `reserved` above 0).
  if (it == positions_.end() || it->second.quantity != 0 || it->second.buying != 0 || it->second.reserved != 0) return;
  positions_.erase(it);
}

void book::forget_closed() {
  std::vector<uint64_t> kept;  // orders whose settlement the ledger refused: an operator's to see
  closed_fills_ = 0;
  for (const uint64_t id : closed_) {
    auto it = orders_.find(id);
    if (it == orders_.end()) continue;
    if (it->second.settle_refused) {
      kept.push_back(id);
      closed_fills_ += it->second.fills.size();
      continue;
    }
    orders_.erase(it);
  }
  closed_ = std::move(kept);
}

std::vector<uint8_t> book::encode() const {
  byte_writer w;
  w.put(book_magic);
  w.put(book_version);
  w.put(uint32_t(positions_.size()));
  for (const auto& [id, p] : positions_)
    for (uint64_t v : {id, p.quantity, p.reserved, p.cost, p.buying}) w.put(v);
  w.put(uint32_t(orders_.size()));
  for (const auto& [id, e] : orders_) {
    w.put_bytes({reinterpret_cast<const uint8_t*>(&e.o), sizeof e.o});
    for (uint64_t v : {e.tick, e.filled, e.held, e.paid}) w.put(v);
    w.put(uint8_t(e.st));
    w.put(e.placed_at);
    w.put(e.expires_at);
    w.put(e.broker);
    w.put(e.reason);
    w.put(uint8_t(e.settle_refused));
    w.put(uint8_t(e.ending));
    w.put(e.ending_at);
    w.put(e.ending_since);
    w.put(e.routing);
    w.put(e.dead);
    w.put(e.route_due);
    w.put(e.wait_since);
    w.put(e.routing_base);
    w.put(uint16_t(e.attempts.size()));
    for (const uint32_t g : e.attempts) w.put(g);
    w.put(uint16_t(e.given_up.size()));
    for (const uint32_t g : e.given_up) w.put(g);
    w.put(uint32_t(e.fills.size()));
    for (const auto& f : e.fills) {
      for (uint64_t v : {f.id, f.quantity, f.price_ticks}) w.put(v);
      w.put(f.gateway);
    }
  }
  w.put(uint32_t(closed_.size()));
  for (const uint64_t id : closed_) w.put(id);
  return std::move(w.out);
}

bool book::decode(std::span<const uint8_t> bytes, book* out, std::string* why) {
  byte_reader r{bytes};
  const uint32_t magic = r.get<uint32_t>();
  const uint16_t version = r.get<uint16_t>();
  const uint32_t np = r.get<uint32_t>();
  if (r.short_read || magic != book_magic || version < 2 || version > book_version)
    return *why = "portfolio: not a portfolio record of version 2 to 4", false;
  if (np > positions_max) return *why = "portfolio: too many positions", false;
  book b;
  for (uint32_t i = 0; i < np; ++i) {
    const uint64_t id = r.get<uint64_t>();
    position p;
    p.quantity = r.get<uint64_t>();
    p.reserved = r.get<uint64_t>();
    p.cost = r.get<uint64_t>();
    p.buying = r.get<uint64_t>();
    const bool in_order = b.positions_.empty() || id > b.positions_.rbegin()->first;
    if (r.short_read || id == 0 || !in_order || p.reserved > p.quantity || (p.quantity == 0 && p.cost != 0) ||
        !b.positions_.emplace(id, p).second)
      return *why = "portfolio: position " + std::to_string(i) + " is damaged", false;
  }
  // An empty position (nothing held, nothing open on it) is dropped, as the book drops
  // it live: kept, it would count against positions_max and be listed for good.
  std::erase_if(b.positions_, [](const auto& kv) {
    const position& p = kv.second;
    return p.quantity == 0 && p.reserved == 0 && p.buying == 0;
  });
  const uint32_t no = r.get<uint32_t>();
  if (r.short_read || no > open_orders_max + closed_kept_max) return *why = "portfolio: bad order count", false;
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> open;  // instrument -> (buying, reserved) of open orders
  for (uint32_t i = 0; i < no; ++i) {
    order_entry e;
    const auto o = r.take(sizeof e.o);
    if (o.size() == sizeof e.o) std::memcpy(&e.o, o.data(), sizeof e.o);
    e.tick = r.get<uint64_t>();
    e.filled = r.get<uint64_t>();
    e.held = r.get<uint64_t>();
    e.paid = r.get<uint64_t>();
    e.st = order_state(r.get<uint8_t>());
    e.placed_at = r.get<uint64_t>();
    e.expires_at = r.get<uint64_t>();
    e.broker = r.get<uint32_t>();
    e.reason = r.get<uint16_t>();
    const uint8_t refused = r.get<uint8_t>();
    e.settle_refused = refused == 1;
    const uint8_t ending = r.get<uint8_t>();
    e.ending = order_state(ending);
    e.ending_at = r.get<uint64_t>();
    e.ending_since = version >= 4 ? r.get<uint64_t>() : e.ending_at;
    if (version >= 3) {
      e.routing = r.get<uint8_t>();
      e.dead = r.get<uint8_t>();
      e.route_due = r.get<uint64_t>();
      e.wait_since = r.get<uint64_t>();
      e.routing_base = r.get<uint32_t>();
      const uint16_t na = r.get<uint16_t>();
      for (uint32_t k = 0; k < na && k <= attempts_kept_max && !r.short_read; ++k) e.attempts.push_back(r.get<uint32_t>());
      const uint16_t ng = r.get<uint16_t>();
      for (uint32_t k = 0; k < ng && k <= attempts_kept_max && !r.short_read; ++k) e.given_up.push_back(r.get<uint32_t>());
      // routing: 0 waiting, 1 sent, 2 working (with `broker`), 3 dead, 4 halted (trading.hpp).
      const bool with_broker = e.routing == 1 || e.routing == 2;
      // (sent: an answer deadline; at most 8 attempts a routing.)
      if (na > attempts_kept_max || ng > na || e.routing > 4 || e.dead > 5 || (e.dead != 0) != (e.routing == 3) ||
          with_broker != (e.broker != 0) || e.routing_base > na || na - e.routing_base > 8 ||
          (e.routing == 1 && e.route_due == 0) ||
          (e.broker != 0 && std::find(e.attempts.begin(), e.attempts.end(), e.broker) == e.attempts.end()) ||
          std::find(e.attempts.begin(), e.attempts.end(), 0u) != e.attempts.end())
        return *why = "portfolio: order " + std::to_string(e.o.id) + ": its routing is damaged", false;
    } else if (e.broker != 0) {  // version 2: an order with a broker was with it, working
      e.routing = 2;
      e.attempts.push_back(e.broker);
    }
    if ((ending != uint8_t(order_state::open) && ending != uint8_t(order_state::cancelled) &&
         ending != uint8_t(order_state::expired) && ending != uint8_t(order_state::rejected)) ||
        (ending != uint8_t(order_state::open) && e.ending_since > e.ending_at))
      return *why = "portfolio: order " + std::to_string(e.o.id) + " is damaged", false;
    const uint32_t nf = r.get<uint32_t>();
    if (r.short_read || refused > 1 || nf > fills_max)
      return *why = "portfolio: order " + std::to_string(e.o.id) + " is damaged", false;
    uint64_t fill_units = 0, fill_value = 0;
    for (uint32_t k = 0; k < nf; ++k) {
      fill_record f;
      f.id = r.get<uint64_t>();
      f.quantity = r.get<uint64_t>();
      f.price_ticks = r.get<uint64_t>();
      if (version >= 4) f.gateway = r.get<uint32_t>();
      const uint64_t value = notional(f.quantity, f.price_ticks, e.tick);
      // Within the order's limit, as book::fill takes them: a buy's hold then covers
      // every fill of what is still open at the limit.
      const bool within = buying(e.o) ? f.price_ticks <= e.o.limit_ticks : f.price_ticks >= e.o.limit_ticks;
      if (r.short_read || f.id == 0 || f.quantity == 0 || f.quantity > e.o.quantity || f.price_ticks == 0 || !within ||
          value == UINT64_MAX || fill_units > UINT64_MAX - f.quantity || fill_value > UINT64_MAX - value)
        return *why = "portfolio: order " + std::to_string(e.o.id) + ": fill " + std::to_string(k) + " is damaged", false;
      fill_units += f.quantity;
      fill_value += value;
      e.fills.push_back(f);
    }
    // What an order paid (a buy) or was paid (a sell) is its fills' notional, each fill's
    // exactly; its times are engine times (nanoseconds, far below 2^62), so that a grace
    // or deadline added to them cannot wrap.
    constexpr uint64_t time_max = 1ull << 62;
    if (fill_units != e.filled || fill_value != e.paid || (e.expires_at != 0 && e.expires_at < e.placed_at))
      return *why = "portfolio: order " + std::to_string(e.o.id) + ": its fills differ from what it filled or paid", false;
    if (std::max({e.placed_at, e.expires_at, e.ending_at, e.ending_since, e.route_due, e.wait_since}) > time_max)
      return *why = "portfolio: order " + std::to_string(e.o.id) + ": a time past 2^62 ns", false;
    const auto* p = b.find(e.o.instrument_id);
    const bool in_order = b.orders_.empty() || e.o.id > b.orders_.rbegin()->first;
    const bool buy = e.o.side == wire::order_side::buy;
    const uint64_t full = notional(e.o.quantity, e.o.limit_ticks, e.tick);
    const bool fields = (buy || e.o.side == wire::order_side::sell) &&
                        (e.o.type == wire::order_type::market || e.o.type == wire::order_type::limit) &&
                        e.o.quantity != 0 && e.o.limit_ticks != 0 && e.tick != 0 && e.tick <= market::tick_max &&
                        full != UINT64_MAX && (buy ? e.paid <= full && e.held == (e.st == order_state::open ? full - e.paid : 0)
                                                   : e.held == 0);
    if (r.short_read || !fields || e.o.id == 0 || !in_order || (!p && e.st == order_state::open) ||
        e.filled > e.o.quantity || uint8_t(e.st) == 0 || (e.ending != order_state::open && e.st != order_state::open) ||
        uint8_t(e.st) > uint8_t(order_state::expired) || (e.st == order_state::filled) != (e.filled == e.o.quantity) ||
        (e.st != order_state::open && e.held != 0) || !b.orders_.emplace(e.o.id, e).second)
      return *why = "portfolio: order " + std::to_string(e.o.id) + " is damaged", false;
    if (e.st == order_state::open) {
      ++b.open_;
      uint32_t& lots = b.orders_.at(e.o.id).lots;
      lots = uint32_t(std::min<uint64_t>(e.o.quantity, fills_max));  // units: a bound until count_lots
      b.open_lots_ += lots;
      (buying(e.o) ? open[e.o.instrument_id].first : open[e.o.instrument_id].second) += e.open_quantity();
    }
  }
  const uint32_t nc = r.get<uint32_t>();
  if (r.short_read || nc > closed_kept_max) return *why = "portfolio: bad closed count", false;
  for (uint32_t i = 0; i < nc; ++i) {
    const uint64_t id = r.get<uint64_t>();
    auto it = b.orders_.find(id);
    if (r.short_read || it == b.orders_.end() || it->second.st == order_state::open)
      return *why = "portfolio: closed order " + std::to_string(id) + " is not a closed order", false;
    b.closed_.push_back(id);
    b.closed_fills_ += it->second.fills.size();
  }
  if (b.closed_.size() + b.open_ != b.orders_.size() ||
      std::set<uint64_t>(b.closed_.begin(), b.closed_.end()).size() != b.closed_.size())
    return *why = "portfolio: the closed orders' list differs from the orders", false;
  if (r.at != bytes.size()) return *why = "portfolio: bytes after the record", false;
  for (const auto& [id, p] : b.positions_) {
    const auto it = open.find(id);
    const auto want = it == open.end() ? std::pair<uint64_t, uint64_t>{0, 0} : it->second;
    if (p.buying != want.first || p.reserved != want.second)
      return *why = "portfolio: instrument " + std::to_string(id) + ": what its open orders hold differs", false;
  }
  if (b.open_ > open_orders_max) return *why = "portfolio: too many open orders", false;
  *out = std::move(b);
  return true;
}

}  // namespace mesob::actors::portfolio
