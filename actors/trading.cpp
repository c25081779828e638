#include "actors/trading.hpp"

#include <algorithm>
#include <cstring>

#include "actors/byte_codec.hpp"
#include "wire/assert.hpp"

namespace mesob::actors::trading {

using wire::result;
using portfolio::order_entry;
using portfolio::order_state;

namespace {
constexpr uint32_t row_magic = 0x54524144;  // "TRAD"
constexpr uint16_t row_version = 1;
constexpr uint32_t chain_max = 3;           // a fill's post, improvement and hold

bool buying(const wire::order& o) { return o.side == wire::order_side::buy; }

wire::transfer engine_transfer(const order_entry& e, wire::id128 id, uint16_t code) {
  wire::transfer t{};
  t.id = id;
  t.currency = e.o.currency;
  t.user_data = e.o.wallet;  // routes the chain's outcome to the wallet's shard
  t.code = code;
  return t;
}

// What a wallet's row may owe: the chains `fill` and `close` emit, nothing else (they go
// to the ledger again after a restart as the engine's own, which no client check sees).
// A fill's: the post of hold k - 1 (chain_id(o, k, 0)), a sell's price improvement
// (k, 1) from the currency's trading account, and hold k again while the order is open
// (the wallet's money to a trading account, or the units' proceeds from one); a
// close's: the void of hold k (k, 2). One order, the wallet, one currency; the order's
// side, currency and instrument when the book still keeps it. Empty: as emitted.
std::string chain_damage(uint64_t wallet, const std::vector<wire::transfer>& c, const portfolio::book& b) {
  namespace tf = wire::transfer_flags;
  const wire::transfer& f = c.front();
  const uint64_t o = f.id.lo;
  if (!emitted(f.id)) return "does not start with a post or a void";
  const uint64_t k = (f.id.hi & ~kind_mask) >> 2;
  const uint32_t j = uint32_t(f.id.hi & 3);
  const order_entry* e = b.order(o);
  const auto linked = [&](size_t i) { return uint16_t(i + 1 < c.size() ? tf::linked : 0); };
  const auto trading_of = [&](uint64_t a) { return trading_account(a) && (a & 0xFFFFFF) == (f.currency & 0xFFFFFF); };
  if (e && e->o.currency != f.currency) return "is not in its order's currency";
  for (const auto& t : c)
    if (t.id.lo != o || t.currency != f.currency || t.timestamp != 0 || t.timeout_s != 0 || t.reserved != 0)
      return "mixes orders or currencies, or carries fields no chain sets";
  const bool plain = f.debit_account_id == 0 && f.credit_account_id == 0 && f.user_data == wallet;
  if (j == 2) {
    if (c.size() != 1 || !plain || f.pending_id != hold_id(o, k) || f.flags != tf::void_pending || f.amount != 0 ||
        f.code != code_close)
      return "is not a close's void";
    return {};
  }
  if (j != 0 || k == 0 || !plain || f.pending_id != hold_id(o, k - 1) || f.flags != (tf::post_pending | linked(0)) ||
      f.amount == 0 || f.code != code_fill)
    return "is not a close's void nor a fill's post";
  size_t i = 1;
  if (i < c.size() && c[i].id == chain_id(o, k, 1)) {
    const wire::transfer& t = c[i];
    if ((e && buying(e->o)) || !trading_of(t.debit_account_id) || t.credit_account_id != wallet || t.amount == 0 ||
        t.flags != linked(i) || t.pending_id != wire::id128{} || t.code != code_improvement || t.user_data != wallet)
      return "has a damaged price improvement";
    ++i;
  }
  if (i < c.size()) {
    const wire::transfer& t = c[i];
    const bool buy = t.debit_account_id == wallet && trading_of(t.credit_account_id);
    const bool sell = trading_of(t.debit_account_id) && t.credit_account_id == wallet;
    if (t.id != hold_id(o, k) || !(e ? (buying(e->o) ? buy : sell) : buy || sell) || t.amount == 0 ||
        t.flags != tf::pending || t.pending_id != wire::id128{} || (t.code & 0xFFF0) != code_hold ||
        (e && (t.code != hold_code(e->o) || t.user_data != e->o.instrument_id)))
      return "has a damaged hold";
    ++i;
  }
  if (i != c.size()) return "has transfers past a fill's";
  return {};
}
}  // namespace

uint64_t hold_amount(const order_entry& e) {
  return buying(e.o) ? e.held : portfolio::notional(e.open_quantity(), e.o.limit_ticks, e.tick);
}

result order_hold(const wire::order& o, const market::instrument* ins, uint32_t shards, wire::transfer* out) {
  if (const result r = portfolio::check_order(o, ins); r != result::ok) return r;
  if (trading_account(o.wallet)) return result::trading_account_reserved;
  if (payouts::payout_account(o.wallet)) return result::payout_account_reserved;
  const uint64_t desk = account_for(o.currency, shard_of(o.wallet, shards), shards);
  wire::transfer t{};
  t.id = hold_id(o.id, 0);
  t.debit_account_id = buying(o) ? o.wallet : desk;
  t.credit_account_id = buying(o) ? desk : o.wallet;
  t.amount = portfolio::notional(o.quantity, o.limit_ticks, ins->def.tick);
  t.user_data = o.instrument_id;
  t.currency = o.currency;
  t.code = hold_code(o);
  t.flags = wire::transfer_flags::pending;
  t.pending_id = terms(o);
  *out = t;
  return result::ok;
}

const char* route_state_name(uint8_t s) {
  switch (route_state(s)) {
    case route_state::waiting: return "waiting";
    case route_state::sent: return "sent";
    case route_state::working: return "working";
    case route_state::dead: return "dead";
    case route_state::halted: return "halted";
  }
  return "?";
}

const char* dead_reason_name(uint8_t r) {
  switch (dead_reason(r)) {
    case dead_reason::none: return "";
    case dead_reason::attempts: return "attempts_exhausted";
    case dead_reason::routes: return "every_broker_given_up";
    case dead_reason::no_route: return "no_broker_in_time";
    case dead_reason::withdrawn: return "broker_withdrawn";
    case dead_reason::unanswered: return "broker_silent";
  }
  return "?";
}

result check_answer_fields(const wire::order_answer& a) {
  if (a.order_id == 0) return result::id_must_not_be_zero;
  if (a.attempt > portfolio::attempts_kept_max) return result::order_answer_invalid;
  switch (a.kind) {
    case wire::order_answer_kind::fill:
      if (a.fill_id == 0) return result::id_must_not_be_zero;
      if (a.reason != 0) return result::order_answer_invalid;
      if (a.quantity == 0) return result::amount_must_not_be_zero;
      if (a.price_ticks == 0) return result::price_invalid;
      return result::ok;
    case wire::order_answer_kind::reject:
      if (a.fill_id != 0 || a.quantity != 0 || a.price_ticks != 0) return result::order_answer_invalid;
      return result::ok;
    case wire::order_answer_kind::accepted:
      if (a.fill_id != 0 || a.quantity != 0 || a.price_ticks != 0 || a.reason != 0) return result::order_answer_invalid;
      return result::ok;
  }
  return result::order_answer_invalid;
}

table::wallet_entry* table::entry(uint64_t wallet) {
  auto it = wallets_.find(wallet);
  return it == wallets_.end() ? nullptr : &it->second;
}

const portfolio::book* table::book_of(uint64_t wallet) const {
  auto it = wallets_.find(wallet);
  return it == wallets_.end() ? nullptr : &it->second.b;
}

bool table::holds_anything(uint64_t wallet) const {
  auto it = wallets_.find(wallet);
  return it != wallets_.end() && (it->second.b.holds_anything() || !it->second.owed.empty());
}

const order_entry* table::find(uint64_t wallet, uint64_t id) const {
  const auto* b = book_of(wallet);
  return b ? b->order(id) : nullptr;
}

void table::touch(uint64_t wallet, wallet_entry& w) {
  if (w.dirty) return;
  w.dirty = true;
  dirty_.push_back(wallet);
}

result table::check(const wire::order& o, const portfolio::order_inputs& in) const {
  static const portfolio::book empty;
  const auto* b = book_of(o.wallet);
  return (b ? *b : empty).check(o, in);
}

void table::placed(const wire::order& o, uint64_t tick, uint64_t ts) {
  wallet_entry& w = wallets_[o.wallet];
  const market::instrument* ins = market_ ? market_->find(o.instrument_id) : nullptr;
  w.b.accept(o, tick, ins ? ins->def.lot : 1);
  ++open_;
  order_entry& e = *w.b.order_mut(o.id);
  e.placed_at = ts;
  e.expires_at = o.expires_s == 0 ? 0 : ts + uint64_t(o.expires_s) * 1'000'000'000ull;
  if (e.expires_at != 0) add_timer(e.expires_at, o.wallet);
  touch(o.wallet, w);
  route(o.wallet, w, e, ts);
}

std::vector<broker_info> table::brokers(wire::currency_code c) const {
  std::vector<broker_info> out;
  if (brokers_) brokers_(c, &out);
  return out;
}

void table::set_routing(order_entry& e, route_state s) {
  if (route_state(e.routing) == route_state::halted && s != route_state::halted) unhold(e);
  const bool was_dead = route_state(e.routing) == route_state::dead, dead = s == route_state::dead;
  if (was_dead != dead) dead ? ++dead_ : --dead_;
  e.routing = uint8_t(s);
  if (!dead) e.dead = 0;
  if (s != route_state::sent && s != route_state::working) e.broker = 0;
  if (s != route_state::waiting) e.wait_since = 0;
  if (s == route_state::working || s == route_state::dead) e.route_due = 0;
}

void table::retire(order_entry& e) {
  if (route_state(e.routing) == route_state::dead) --dead_;
  if (route_state(e.routing) == route_state::halted) unhold(e);
  e.ending = order_state::open;  // (counted out by the caller)
  e.ending_at = 0;
  e.ending_since = 0;
  e.routing = uint8_t(e.broker != 0 ? route_state::working : route_state::waiting);  // (the broker stays on view)
  e.dead = 0;
  e.route_due = 0;
  e.wait_since = 0;
  unrouted_.erase(e.o.id);
}

void table::route(uint64_t wallet, wallet_entry& w, order_entry& e, uint64_t now) {
  touch(wallet, w);
  if (e.ending != order_state::open) {  // cancelled or expired here: it goes nowhere new
    set_routing(e, route_state::waiting);
    e.route_due = 0;
    unrouted_.erase(e.o.id);
    return;
  }
  if (e.attempts.size() - e.routing_base >= attempts_max) return make_dead(wallet, w, e, dead_reason::attempts, now);
  if (held_by_halt(wallet, e, now)) return;
  const auto cands = brokers(e.o.currency);
  // The broker of its last attempt in this routing may have it (it never answered): from
  // rules_order_waits_for_broker no other broker gets it while that one is an enabled
  // broker with no session up; it gets it again once back (while it may take it), and
  // one disabled meanwhile can no longer say (a dead letter, as for a working order); nor
  // can one no longer serving it, its role or the order's currency taken
  // (rules_order_role_loss_dead_letter).
  if (rules_ >= rules_order_waits_for_broker && e.attempts.size() > e.routing_base) {
    const uint32_t g = e.attempts.back();
    const auto it = std::find_if(cands.begin(), cands.end(), [&](const broker_info& b) { return b.number == g; });
    if (it != cands.end() ? !it->enabled : rules_ >= rules_order_role_loss_dead_letter)
      return make_dead(wallet, w, e, dead_reason::withdrawn, now);
    const bool gave_up = std::find(e.given_up.begin(), e.given_up.end(), g) != e.given_up.end();
    if (it != cands.end() && it->up && !gave_up && admits(g, wallet, e.o.id, now)) {
      send(wallet, w, e, *it, now);
      return;
    }
    // Away; or back from being away, its breaker refusing (the outage's own timeouts may
    // have opened it): it waits for that broker, looking again each route_poll_ns while
    // it is up. (One whose attempt timed out with the broker up, a hung broker, goes on
    // below when its breaker refuses, as before.)
    if (it != cands.end() && (!it->up || (!gave_up && e.wait_since != 0))) {
      const uint64_t since = e.wait_since != 0 ? e.wait_since : now;
      if (now - since >= route_wait_max_ns) return make_dead(wallet, w, e, dead_reason::unanswered, now);
      set_routing(e, route_state::waiting);
      e.wait_since = since;
      // (Away: its session opening routes it before.)
      e.route_due = it->up ? std::min(now + route_poll_ns, since + route_wait_max_ns) : since + route_wait_max_ns;
      add_timer(e.route_due, wallet);
      unrouted_[e.o.id] = wallet;
      return;
    }
    // Up but given up (silent through its tries with a session up), or, by the rules
    // before rules_order_role_loss_dead_letter, no longer a broker of the currency (its
    // role or the currency taken: rules version 20 hands such orders on): on by
    // priority, it told to stop (send).
  }
  bool any_left = false, any_up = false;
  for (const auto& b : cands) {
    if (!b.enabled || std::find(e.given_up.begin(), e.given_up.end(), b.number) != e.given_up.end()) continue;
    any_left = true;
    if (!b.up) continue;
    any_up = true;
    if (!admits(b.number, wallet, e.o.id, now)) continue;
    send(wallet, w, e, b, now);
    return;
  }
  if (!any_left && std::any_of(cands.begin(), cands.end(), [](const broker_info& b) { return b.enabled; }))
    return make_dead(wallet, w, e, dead_reason::routes, now);
  // No broker can take it now: wait for a session to open (or, breakers refusing it, look
  // again shortly), up to route_wait_max.
  const uint64_t since = e.wait_since != 0 ? e.wait_since : now;
  if (now - since >= route_wait_max_ns) return make_dead(wallet, w, e, dead_reason::no_route, now);
  set_routing(e, route_state::waiting);
  e.wait_since = since;
  e.route_due = any_up ? std::min(now + route_poll_ns, since + route_wait_max_ns) : since + route_wait_max_ns;
  add_timer(e.route_due, wallet);
  unrouted_[e.o.id] = wallet;
}

// An order leaving route_state::halted leaves halted_ (and an instrument holding none).
void table::unhold(const order_entry& e) {
  const auto it = halted_.find(e.o.instrument_id);
  if (it == halted_.end()) return;  // (market_changed took the instrument's out)
  const auto at = it->second.lower_bound({e.o.id, 0});
  if (at != it->second.end() && at->first == e.o.id) it->second.erase(at);
  if (!it->second.empty()) return;
  halted_.erase(it);
  if (halted_.empty()) halted_due_ = UINT64_MAX;
}

uint64_t table::halted_orders() const {
  uint64_t n = 0;
  for (const auto& [i, held] : halted_) n += held.size();
  return n;
}

bool table::held_by_halt(uint64_t wallet, order_entry& e, uint64_t now) {
  if (rules_ < rules_halts_hold_orders || !market_) return false;
  const market::instrument* ins = market_->find(e.o.instrument_id);
  if (!ins || ins->reasons(now) == 0) return false;
  set_routing(e, route_state::halted);  // halted or stale: no broker gets it now
  e.route_due = 0;
  unrouted_.erase(e.o.id);
  halted_[e.o.instrument_id].emplace(e.o.id, wallet);
  halted_due_ = std::min(halted_due_, ins->next_change(now));
  return true;
}

void table::send(uint64_t wallet, wallet_entry& w, order_entry& e, const broker_info& b, uint64_t now) {
  // The broker of the attempt before, told to stop should it have the order after all.
  if (!e.attempts.empty() && e.attempts.back() != b.number)
    instruct(e, wire::order_instruction_kind::cancel, e.attempts.back());
  if (e.attempts.size() < portfolio::attempts_kept_max) e.attempts.push_back(b.number);
  ++breakers_[b.number].b.sent;
  breakers_dirty_ = true;
  set_routing(e, route_state::sent);
  e.broker = b.number;
  e.route_due = now + b.timeout_ns;
  add_timer(e.route_due, wallet);
  unrouted_.erase(e.o.id);
  touch(wallet, w);
  instruct(e, wire::order_instruction_kind::work);
}

uint64_t table::answer_timeout_ns(const std::vector<broker_info>& cands, uint32_t g) {
  const auto it = std::find_if(cands.begin(), cands.end(), [&](const broker_info& b) { return b.number == g; });
  return it != cands.end() ? it->timeout_ns : gateways::answer_timeout_ms_default * 1'000'000ull;
}

void table::timed_out(uint64_t wallet, wallet_entry& w, order_entry& e, uint64_t now) {
  const uint32_t g = e.broker;
  const auto cands = brokers(e.o.currency);
  const auto it = std::find_if(cands.begin(), cands.end(), [&](const broker_info& b) { return b.number == g; });
  const uint64_t timeout = answer_timeout_ns(cands, g);
  ++timeouts_;
  ++breakers_[g].b.timeouts;
  record(g, e.o.id, true, timeout, now);
  if (events_) {
    auto ev = wire::decided_event(wire::event_type::order_timeout, now, e.o.currency, wallet);
    ev.ref = {e.o.id, uint64_t(e.attempts.size())};
    ev.gateway = uint16_t(g);
    events_(std::move(ev));
  }
  const auto tries = std::count(e.attempts.begin() + e.routing_base, e.attempts.end(), g);
  if (uint32_t(tries) >= tries_per_gateway) e.given_up.push_back(g);
  const bool again_here = uint32_t(tries) < tries_per_gateway && it != cands.end() && it->enabled && it->up &&
                          breakers_[g].b.ph == gateways::breaker::phase::closed;
  set_routing(e, route_state::waiting);
  if (!again_here) return route(wallet, w, e, now);  // the next broker, at once
  e.route_due = now + gateways::backoff_ns(timeout, uint32_t(e.attempts.size() - e.routing_base), e.o.id);
  add_timer(e.route_due, wallet);
  touch(wallet, w);
}

// An order whose backoff after a timeout ended (timed_out chose to try its broker again),
// or one sent before a halt held it, whose halt ended (rules_order_retry_same_broker):
// the broker of its last attempt still, if it may take it; else route(), the next by
// priority, that broker told to cancel (send). An order ending, at attempts_max or held
// by a halt goes where route() sends it.
void table::route_to_last(uint64_t wallet, wallet_entry& w, order_entry& e, uint64_t now) {
  touch(wallet, w);
  if (e.ending == order_state::open && e.attempts.size() - e.routing_base < attempts_max &&
      !held_by_halt(wallet, e, now)) {
    const uint32_t g = e.attempts.back();
    const auto cands = brokers(e.o.currency);
    const auto it = std::find_if(cands.begin(), cands.end(), [&](const broker_info& b) { return b.number == g; });
    if (it != cands.end() && it->enabled && it->up &&
        std::find(e.given_up.begin(), e.given_up.end(), g) == e.given_up.end() && admits(g, wallet, e.o.id, now)) {
      send(wallet, w, e, *it, now);
      return;
    }
  }
  if (route_state(e.routing) == route_state::halted) return;  // (held_by_halt took it)
  route(wallet, w, e, now);
}

void table::make_dead(uint64_t wallet, wallet_entry& w, order_entry& e, dead_reason why, uint64_t now) {
  set_routing(e, route_state::dead);
  e.dead = uint8_t(why);
  unrouted_.erase(e.o.id);
  touch(wallet, w);
  if (!events_) return;
  auto ev = wire::decided_event(wire::event_type::order_dead, now, e.o.currency, wallet);
  ev.ref = {e.o.id, uint64_t(e.attempts.size())};
  ev.code = uint16_t(why);
  ev.gateway = uint16_t(e.attempts.empty() ? 0 : e.attempts.back());
  events_(std::move(ev));
}

bool table::admits(uint32_t g, uint64_t wallet, uint64_t order_id, uint64_t now) {
  auto it = breakers_.find(g);
  if (it == breakers_.end()) return true;  // closed, nothing seen yet
  broker_state& st = it->second;
  // The probe still decides while it waits for its answer there; one moved elsewhere (or
  // closed) hands the probe on.
  const auto busy = [&](uint64_t probe) {
    const order_entry* p = find(st.probe_wallet, probe);
    return p && p->st == order_state::open && route_state(p->routing) == route_state::sent && p->broker == g;
  };
  bool changed = false, moved = false;
  const bool ok = st.b.admit(order_id, now, busy, &changed, &moved);
  if (changed) {
    st.probe_wallet = wallet;
    breakers_dirty_ = true;
  }
  if (moved) breaker_moved(g, st.b, now);
  return ok;
}

void table::record(uint32_t g, uint64_t order_id, bool bad, uint64_t timeout_ns, uint64_t now) {
  broker_state& st = breakers_[g];
  breakers_dirty_ = true;
  if (st.b.record(order_id, bad, now, 4 * timeout_ns)) breaker_moved(g, st.b, now);
}

void table::breaker_moved(uint32_t g, const gateways::breaker& b, uint64_t now) {
  if (!events_) return;
  auto ev = wire::decided_event(wire::event_type::order_breaker, now, 0, 0);
  ev.flags = uint16_t(shard_);
  ev.ref = {b.trips, b.ph == gateways::breaker::phase::open ? b.open_until : 0};
  ev.code = uint16_t(b.ph);
  ev.gateway = uint16_t(g);
  events_(std::move(ev));
}

void table::acknowledged(uint64_t wallet, wallet_entry& w, order_entry& e, uint32_t g, uint64_t now, bool closing) {
  const route_state rs = route_state(e.routing);
  // A broker no longer enabled with the role (its answer sequenced after the registry
  // change that withdrew it) does not take the order to work: the order is a dead letter,
  // as that change made the ones working there (its fills settle all the same).
  // (The broker as the registry has it: none when it no longer has the role.)
  const auto listed = [&](const std::vector<broker_info>& cands) {
    return std::find_if(cands.begin(), cands.end(), [&](const broker_info& b) { return b.number == g; });
  };
  // (Not for its reject that ends the order: a dead letter closing at once is no letter.)
  const auto withdrawn = [&](const std::vector<broker_info>& cands) {
    const auto it = listed(cands);
    return rules_ >= rules_withdrawn_broker_dead_letters && (it == cands.end() || !it->enabled) &&
           !(closing && rules_ >= rules_closing_answer_not_dead);
  };
  if (e.broker == g) {
    if (rs == route_state::sent) {  // the answer the attempt waited for
      broker_state& st = breakers_[g];
      ++st.b.settled;
      const auto cands = brokers(e.o.currency);
      record(g, e.o.id, false, answer_timeout_ns(cands, g), now);
      if (withdrawn(cands)) return make_dead(wallet, w, e, dead_reason::withdrawn, now);
      set_routing(e, route_state::working);
      e.broker = g;
      touch(wallet, w);
    }
    return;
  }
  // A broker the order has moved on from (it was told to stop then): its late answer moves
  // nothing (its fills still settle); it is told again. Only the latest broker sent to,
  // while nobody has the order now (waiting after its timeout, or a dead letter), takes it.
  if (rs == route_state::working || rs == route_state::sent || e.attempts.empty() || e.attempts.back() != g) {
    instruct(e, wire::order_instruction_kind::cancel, g);
    return;
  }
  if (withdrawn(brokers(e.o.currency))) {  // it has the order, and may trade it: nobody else may
    if (rs != route_state::dead) make_dead(wallet, w, e, dead_reason::withdrawn, now);
    return;
  }
  set_routing(e, route_state::working);
  e.broker = g;
  unrouted_.erase(e.o.id);
  touch(wallet, w);
  if (e.ending != order_state::open) instruct(e, wire::order_instruction_kind::cancel);
}

void table::cancel_at_brokers(const order_entry& e, uint32_t except) {
  std::vector<uint32_t> told{except};
  for (const uint32_t g : e.attempts)
    if (std::find(told.begin(), told.end(), g) == told.end()) {
      told.push_back(g);
      instruct(e, wire::order_instruction_kind::cancel, g);
    }
}

uint8_t table::latest_attempt(const order_entry& e, uint32_t g) {
  for (size_t k = e.attempts.size(); k > 0; --k)
    if (e.attempts[k - 1] == g) return uint8_t(k);
  return 0;
}

void table::instruct(const order_entry& e, wire::order_instruction_kind kind, uint32_t to) {
  if (to == 0) to = e.broker;
  if (to == 0) return;
  wire::order_instruction in{};
  in.order_id = e.o.id;
  in.instrument_id = e.o.instrument_id;
  in.quantity = e.open_quantity();
  in.limit_ticks = e.o.limit_ticks;
  in.expires_at = e.expires_at;
  in.currency = e.o.currency;
  in.kind = kind;
  in.side = e.o.side;
  in.type = e.o.type;
  in.attempt = latest_attempt(e, to);
  outbox_[to].push_back(in);
}

void table::emit(wallet_entry& w, std::vector<wire::transfer>&& chain) {
  for (size_t i = 0; i + 1 < chain.size(); ++i) chain[i].flags |= wire::transfer_flags::linked;
  if (order_entry* e = w.b.order_mut(chain.front().id.lo)) ++e->chains_owed;
  w.owed.push_back(chain);
  if (!emit_) return;  // replaying: the chain is owed until a later record carries it
  // Whole chains in groups of up to emit_group_max transfers: one queue entry (and one
  // batch) per group, not per chain.
  if (chains_out_.empty() || chains_out_.back().size() + chain.size() > emit_group_max) chains_out_.emplace_back();
  chains_out_.back().insert(chains_out_.back().end(), chain.begin(), chain.end());
}

result table::answer(const wire::order_answer& a, const market::book& market, uint64_t ts, bool* repeated) {
  *repeated = false;
  wallet_entry* w = entry(a.wallet);
  order_entry* e = w ? w->b.order_mut(a.order_id) : nullptr;
  // The sequencer found the order's hold. A closed order is decided the same whether or
  // not the book still keeps it (forget_closed), so every decision here reads open
  // orders only. One thing reads a closed order: a repeat of a fill it took (the one
  // that closed it, resent after a lost answer) is answered as the repeat it is while the
  // book keeps the order, else order_not_open. Either way nothing changes and no event is
  // made, so replay (which may keep other closed orders) reaches the same state.
  if (!e || e->st != order_state::open) {
    if (e && a.kind == wire::order_answer_kind::fill)
      for (const auto& f : e->fills)
        if (f.id == a.fill_id && (f.gateway == 0 || f.gateway == a.gateway) && f.quantity == a.quantity &&
            f.price_ticks == a.price_ticks) {
          *repeated = true;
          return result::ok;
        }
    return result::order_not_open;
  }
  // Only a broker it was sent to may answer (any of them: one that never acknowledged may
  // still have it).
  if (std::find(e->attempts.begin(), e->attempts.end(), a.gateway) == e->attempts.end()) return result::order_wrong_broker;
  if (a.kind == wire::order_answer_kind::reject) {
    // The broker it is with (or, waiting or a dead letter, the last it was sent to).
    const uint32_t holder = e->broker != 0 ? e->broker : e->attempts.back();
    // An earlier broker says it does not have it, or the broker confirms the cancel of an
    // earlier sending (the order came back to it since).
    if (holder != a.gateway || (a.attempt != 0 && a.attempt != latest_attempt(*e, a.gateway))) {
      *repeated = true;
      return result::ok;
    }
    acknowledged(a.wallet, *w, *e, a.gateway, ts, true);
    // Another broker it went to may still have it (told to stop, it may not have heard):
    // the order waits for the grace, taking their fills, before it closes.
    const bool others = rules_ >= rules_orders_wait_for_brokers &&
                        std::any_of(e->attempts.begin(), e->attempts.end(), [&](uint32_t g) { return g != a.gateway; });
    if (others) {
      if (e->ending == order_state::open) {
        e->reason = a.reason;
        end(a.wallet, *w, *e, order_state::rejected, ts, a.gateway);
      } else {
        *repeated = rules_ >= rules_repeated_reject && e->ending == order_state::rejected;  // its reject again
      }
      return result::ok;
    }
    // Ending (cancelled or expired here): the broker confirms it stopped.
    close(a.wallet, *w, a.order_id, e->ending != order_state::open ? e->ending : order_state::rejected,
          e->ending == order_state::rejected ? e->reason : a.reason);
    return result::ok;
  }
  if (a.kind == wire::order_answer_kind::accepted) {
    *repeated = e->broker == a.gateway && route_state(e->routing) == route_state::working;
    acknowledged(a.wallet, *w, *e, a.gateway, ts);
    return result::ok;
  }
  // A fill id is the broker's: another broker's fill under the same id is another fill
  // (before version 7, the order's whichever broker sent it).
  for (const auto& f : e->fills)
    if (f.id == a.fill_id &&
        (rules_ < rules_orders_wait_for_brokers || f.gateway == 0 || f.gateway == a.gateway)) {
      *repeated = f.quantity == a.quantity && f.price_ticks == a.price_ticks;
      return *repeated ? result::ok : result::fill_id_reused;
    }
  if (e->fills.size() >= portfolio::fills_max) return result::too_many_fills;
  // Whole lots, at a price within the instrument's move band of the prices it traded at
  // (below; a broker's answer is not trusted to name any price within the limit).
  const market::instrument* ins = market.find(e->o.instrument_id);
  MESOB_ASSERT(ins != nullptr);  // instruments are never removed
  if (a.quantity % ins->def.lot != 0) return result::lot_size_invalid;
  // The band's anchor: the reference price (rules version 11; before, the last price, so a
  // bad print that halted the instrument moved the band to itself), and from version 37
  // the prices of the move window too (a fill made at one of them, answered after the
  // price moved on, is within the band of the price it was made at; the window holds no
  // print that began a move halt).
  if (uint64_t lo = 0, hi = 0; fill_band(*ins, ts, &lo, &hi) && (a.price_ticks < lo || a.price_ticks > hi))
    return result::fill_invalid;
  const uint64_t before = hold_amount(*e);
  const uint64_t k = e->fills.size() + 1;
  result r = result::ok;
  uint64_t released = 0;
  const uint64_t value = w->b.fill(a.order_id, a.quantity, a.price_ticks, &r, &released, a.fill_id, a.gateway);
  if (r != result::ok) return r;
  e = w->b.order_mut(a.order_id);
  MESOB_ASSERT(e != nullptr);
  const bool open = e->st == order_state::open;
  ++fills_;
  if (open) {
    acknowledged(a.wallet, *w, *e, a.gateway, ts);  // the broker that filled works it
  } else {
    --open_;
    if (e->ending != order_state::open) --ending_;
    e->reason = 0;  // (an order ending as rejected that fills after all is filled)
    // Filled in full: every other broker it went to is told to stop. (Closing: from
    // rules_completing_fill_not_dead a broker withdrawn since does not make it a dead
    // letter first, as its reject that ends an order does not.)
    if (e->broker == a.gateway)  // (its breaker's outcome)
      acknowledged(a.wallet, *w, *e, a.gateway, ts, rules_ >= rules_completing_fill_not_dead);
    cancel_at_brokers(*e, a.gateway);
    retire(*e);
  }
  std::vector<wire::transfer> chain;
  wire::transfer post = engine_transfer(*e, chain_id(e->o.id, k, 0), code_fill);
  post.pending_id = hold_id(e->o.id, k - 1);
  post.flags = wire::transfer_flags::post_pending;
  if (buying(e->o)) {
    post.amount = value;  // the rest of hold k-1 is released (held again below if open)
    chain.push_back(post);
  } else {
    const uint64_t least = portfolio::notional(a.quantity, e->o.limit_ticks, e->tick);
    MESOB_ASSERT(least <= value && least <= before);
    post.amount = least;
    chain.push_back(post);
    if (value > least) {
      wire::transfer up = engine_transfer(*e, chain_id(e->o.id, k, 1), code_improvement);
      up.debit_account_id = trading_account_of(*e);
      up.credit_account_id = e->o.wallet;
      up.amount = value - least;
      chain.push_back(up);
    }
  }
  if (open) {
    wire::transfer again = engine_transfer(*e, hold_id(e->o.id, k), hold_code(e->o));
    const bool buy = buying(e->o);
    again.debit_account_id = buy ? e->o.wallet : trading_account_of(*e);
    again.credit_account_id = buy ? trading_account_of(*e) : e->o.wallet;
    again.amount = hold_amount(*e);
    again.user_data = e->o.instrument_id;
    again.flags = wire::transfer_flags::pending;
    chain.push_back(again);
  }
  MESOB_ASSERT(chain.size() <= chain_max);
  emit(*w, std::move(chain));
  touch(a.wallet, *w);
  if (!open) {
    unrouted_.erase(a.order_id);
    note_closed(a.wallet);
  }
  return result::ok;
}

uint64_t table::trading_account_of(const order_entry& e) const {
  return account_for(e.o.currency, shard_, shards_);
}

void table::close(uint64_t wallet, wallet_entry& w, uint64_t order_id, order_state why, uint16_t reason) {
  order_entry* e = w.b.order_mut(order_id);
  MESOB_ASSERT(e != nullptr && e->st == order_state::open);
  const uint64_t k = e->fills.size();
  --open_;
  if (e->ending != order_state::open) --ending_;
  result r = result::ok;
  w.b.close(order_id, why, &r);
  MESOB_ASSERT(r == result::ok);
  e = w.b.order_mut(order_id);
  MESOB_ASSERT(e != nullptr);
  e->reason = reason;
  e->ending = order_state::open;
  e->ending_at = 0;
  retire(*e);
  wire::transfer v = engine_transfer(*e, chain_id(order_id, k, 2), code_close);
  v.pending_id = hold_id(order_id, k);
  v.flags = wire::transfer_flags::void_pending;
  emit(w, {v});
  unrouted_.erase(order_id);
  touch(wallet, w);
  note_closed(wallet);
}

// Between cuts the list stays within twice the wallets (and 4,096) entries.
void table::note_closed(uint64_t wallet) {
  closed_in_.push_back(wallet);
  if (closed_in_.size() > 2 * wallets_.size() + 4096) {
    std::sort(closed_in_.begin(), closed_in_.end());
    closed_in_.erase(std::unique(closed_in_.begin(), closed_in_.end()), closed_in_.end());
  }
}

result table::cancel(const wire::order_cancel& c, uint64_t ts, bool* repeated) {
  *repeated = false;
  wallet_entry* w = entry(c.wallet);
  order_entry* e = w ? w->b.order_mut(c.order_id) : nullptr;
  // The sequencer found the order's hold for this wallet: one not kept was closed. A
  // cancel repeated after it closed the order (one no broker had closes at once) is
  // answered as the repeat it is while the book keeps the order (as a fill's, in answer).
  if (e && e->st == order_state::cancelled) {
    *repeated = true;
    return result::ok;
  }
  if (!e || e->st != order_state::open) return result::order_not_open;
  if (e->ending != order_state::open) {  // asked already (or expiring): nothing more to do
    *repeated = true;
    return result::ok;
  }
  end(c.wallet, *w, *e, order_state::cancelled, ts);
  return result::ok;
}

// A cancel or expiry here: an order no broker has closes at once; one a broker has keeps
// its hold (the broker may have filled it before it hears) until the broker confirms or
// the grace passes.
void table::end(uint64_t wallet, wallet_entry& w, order_entry& e, order_state why, uint64_t ts, uint32_t except) {
  if (e.attempts.empty()) {
    close(wallet, w, e.o.id, why, 0);
    return;
  }
  e.ending = why;
  e.ending_at = ts;
  e.ending_since = ts;
  ++ending_;
  // Every broker it went to is told to stop (any of them may have it); one waiting or a
  // dead letter is routed no more.
  cancel_at_brokers(e, except);
  if (route_state(e.routing) == route_state::halted) set_routing(e, route_state::waiting);  // (goes nowhere now)
  if (route_state(e.routing) == route_state::waiting) {
    e.route_due = 0;
    e.wait_since = 0;
    unrouted_.erase(e.o.id);
  }
  add_timer(ts + cancel_grace_ns, wallet);
  add_timer(ts + ending_max_ns, wallet);  // (as a snapshot's load adds it, whatever the rules)
  touch(wallet, w);
}

bool table::brokers_up(const order_entry& e) const {
  if (rules_ >= rules_grace_by_sessions) {
    for (const uint32_t g : e.attempts) {
      const broker_info b = broker_of_ ? broker_of_(g) : broker_info{};
      if (b.enabled && !b.up) return false;
    }
    return true;
  }
  const auto cands = brokers(e.o.currency);
  for (const uint32_t g : e.attempts) {
    const auto it = std::find_if(cands.begin(), cands.end(), [&](const broker_info& b) { return b.number == g; });
    if (it == cands.end() || !it->up) return false;
  }
  return true;
}

uint64_t table::grace_end(const order_entry& e) const {
  const uint64_t grace = e.ending_at + cancel_grace_ns;
  if (rules_ < rules_orders_wait_for_brokers) return grace;
  // At most a day after it began ending, whatever its brokers do (sessions reopening
  // keep telling them again).
  const uint64_t cap = e.ending_since + ending_max_ns;
  return brokers_up(e) ? std::min(grace, cap) : cap;
}

// Whether an ending order may close depends on its brokers' sessions and, through
// brokers(), on the registry: every change of either must come with a timer, so that live
// and replay (from any snapshot, whose load adds each order's timers) look at it at the
// same batches. Sessions opening tell the brokers again (a timer); closing can only delay
// it; a registry change adds a timer here.
void table::registry_changed(uint64_t ts) {
  if (ending_ == 0) return;
  each_open([&](uint64_t wallet, wallet_entry&, order_entry& e) {
    if (e.ending != order_state::open) add_timer(ts, wallet);
  });
}

// Open orders of every wallet, in (wallet, order id) order: what is decided for them is the
// same live and in replay, whatever order the map keeps.
template <class F>
void table::each_open(F&& f) {
  std::vector<uint64_t> ids;
  ids.reserve(wallets_.size());
  for (const auto& [wallet, w] : wallets_)
    if (w.b.open_orders() != 0) ids.push_back(wallet);
  std::sort(ids.begin(), ids.end());
  std::vector<uint64_t> orders;
  for (const uint64_t wallet : ids) {
    wallet_entry& w = wallets_.at(wallet);
    orders.clear();
    w.b.for_each_order([&](const order_entry& e) {
      if (e.st == order_state::open) orders.push_back(e.o.id);
    });
    for (const uint64_t id : orders) {
      order_entry* e = w.b.order_mut(id);
      if (e && e->st == order_state::open) f(wallet, w, *e);
    }
  }
}

// An ending order's brokers were told again (a session opened): its grace runs from now.
void table::told_again(uint64_t wallet, wallet_entry& w, order_entry& e, uint64_t ts) {
  if (rules_ < rules_orders_wait_for_brokers) return;
  e.ending_at = ts;
  add_timer(ts + cancel_grace_ns, wallet);
  touch(wallet, w);
}

void table::broker_up(uint32_t gateway, uint64_t ts) {
  const std::vector<broker_info> cands_none;
  each_open([&](uint64_t wallet, wallet_entry& w, order_entry& e) {
    if (e.broker == gateway) {
      // One unacknowledged, its instrument halted now: held, not pushed again (it may
      // never have reached the broker); a late acknowledgment still takes it to work.
      if (route_state(e.routing) == route_state::sent && e.ending == order_state::open &&
          rules_ >= rules_halt_holds_resent && held_by_halt(wallet, e, ts)) {
        touch(wallet, w);
        return;
      }
      // Pushed again (any of its sessions may be the new one); those ending, with their
      // cancel; one unacknowledged, with its answer due from now.
      // (Not one the broker rejected: it is told to stop, never to work it again.)
      if (e.ending != order_state::rejected) instruct(e, wire::order_instruction_kind::work);
      if (e.ending != order_state::open) {
        instruct(e, wire::order_instruction_kind::cancel);
        told_again(wallet, w, e, ts);
      }
      // (From rules_order_waits_for_broker the deadline stays: its sessions closing no
      // longer hand the order on, so a broker whose sessions come and go still times out.)
      if (route_state(e.routing) == route_state::sent && rules_ < rules_order_waits_for_broker) {
        e.route_due = ts + answer_timeout_ns(brokers(e.o.currency), gateway);
        add_timer(e.route_due, wallet);
        touch(wallet, w);
      }
    } else if ((e.broker != 0 || e.ending != order_state::open) &&
               std::find(e.attempts.begin(), e.attempts.end(), gateway) != e.attempts.end()) {
      // It went to another broker since, or it is ending: this one is told to stop.
      instruct(e, wire::order_instruction_kind::cancel, gateway);
      if (e.ending != order_state::open) told_again(wallet, w, e, ts);
    }
  });
  route_waiting(ts);
}

void table::route_waiting(uint64_t ts) {
  // Orders waiting for a broker, in order id order.
  std::vector<std::pair<uint64_t, uint64_t>> waiting(unrouted_.begin(), unrouted_.end());
  for (const auto& [id, wallet] : waiting) {
    wallet_entry* w = entry(wallet);
    order_entry* e = w ? w->b.order_mut(id) : nullptr;
    if (!e || e->st != order_state::open || route_state(e->routing) != route_state::waiting) {
      unrouted_.erase(id);
      continue;
    }
    route(wallet, *w, *e, ts);
  }
}

void table::market_changed(uint64_t ts) {
  halted_due_ = UINT64_MAX;
  for (auto it = halted_.begin(); it != halted_.end();) {
    const market::instrument* ins = market_ ? market_->find(it->first) : nullptr;
    if (ins && ins->reasons(ts) != 0) {
      halted_due_ = std::min(halted_due_, ins->next_change(ts));  // a move halt's end, say
      ++it;
      continue;
    }
    auto held = std::move(it->second);  // in order id order
    it = halted_.erase(it);
    for (const auto& [id, wallet] : held) {
      wallet_entry* w = entry(wallet);
      order_entry* e = w ? w->b.order_mut(id) : nullptr;
      if (!e || e->st != order_state::open || route_state(e->routing) != route_state::halted) continue;  // moved on
      if (e->expires_at != 0 && e->expires_at <= ts) {  // expires at the next batch: goes nowhere first
        halted_[e->o.instrument_id].emplace(id, wallet);
        continue;
      }
      set_routing(*e, route_state::waiting);
      // One sent before the halt held it: back to that broker while it may take it (it
      // may have the order), as after a backoff (rules_order_retry_same_broker).
      if (rules_ >= rules_order_retry_same_broker && e->attempts.size() > e->routing_base)
        route_to_last(wallet, *w, *e, ts);
      else
        route(wallet, *w, *e, ts);
    }
  }
}

void table::broker_down(uint32_t gateway, uint64_t ts, bool closed) {
  // The instruction may have reached it: its deadline decides (timed_out, then route).
  if (closed && rules_ >= rules_order_waits_for_broker) return;
  std::vector<std::pair<uint64_t, uint64_t>> moving;  // (order id, wallet): in order id order
  each_open([&](uint64_t wallet, wallet_entry&, order_entry& e) {
    if (e.broker == gateway && route_state(e.routing) == route_state::sent) moving.emplace_back(e.o.id, wallet);
  });
  std::sort(moving.begin(), moving.end());
  for (const auto& [id, wallet] : moving) {
    wallet_entry& w = *entry(wallet);
    order_entry& e = *w.b.order_mut(id);
    set_routing(e, route_state::waiting);
    route(wallet, w, e, ts);
  }
}

void table::broker_withdrawn(uint32_t gateway, uint64_t ts) {
  std::vector<std::pair<uint64_t, uint64_t>> stranded;  // (order id, wallet): in order id order
  each_open([&](uint64_t wallet, wallet_entry&, order_entry& e) {
    // (An ending one closes at its grace: nothing for an operator to decide.)
    if (e.broker == gateway && route_state(e.routing) == route_state::working && e.ending == order_state::open)
      stranded.emplace_back(e.o.id, wallet);
  });
  std::sort(stranded.begin(), stranded.end());
  for (const auto& [id, wallet] : stranded) {
    wallet_entry& w = *entry(wallet);
    make_dead(wallet, w, *w.b.order_mut(id), dead_reason::withdrawn, ts);
  }
}

void table::reset(uint64_t ts) {
  // A start (its reset is its first batch that runs orders' timers): the rules may have
  // changed since the last run's batches what holds an ending order (rules version 29),
  // and no timer marks that moment, so every ending order looks again here, in every
  // history (a snapshot's load re-adds the timers of its past).
  if (rules_ >= rules_grace_by_sessions) registry_changed(ts);
  each_open([&](uint64_t wallet, wallet_entry& w, order_entry& e) {
    const route_state rs = route_state(e.routing);
    if (rs != route_state::sent && rs != route_state::waiting) return;
    // From rules_orders_downtime an order its broker may have stays with that broker, as a
    // payout in flight does with its gateway (rules 10): one sent and not acknowledged
    // waits an answer timeout from now for it (its session reopening pushes it again),
    // and one waiting out its backoff after a timeout there keeps at least that long;
    // then it goes on as after any timeout (the next broker, the first told to stop; from
    // rules_order_retry_same_broker a backoff's end tries that broker again first).
    // Before, both went to the first broker to come up, while the first might be working it.
    const uint32_t last = e.attempts.empty() ? 0 : e.attempts.back();
    const bool backing_off = rs == route_state::waiting && e.wait_since == 0 && e.route_due != 0 && last != 0;
    if (rules_ >= rules_orders_downtime && e.ending == order_state::open && (rs == route_state::sent || backing_off)) {
      e.route_due = std::max(backing_off ? e.route_due : 0, ts + answer_timeout_ns(brokers(e.o.currency), last));
      add_timer(e.route_due, wallet);
      unrouted_.erase(e.o.id);
      touch(wallet, w);
      return;
    }
    const bool kept = rules_ >= rules_reset_keeps_route_wait && rs == route_state::waiting && e.wait_since != 0;
    set_routing(e, route_state::waiting);
    if (e.ending != order_state::open) {
      e.route_due = 0;
    } else {
      if (!kept) e.wait_since = ts;
      e.route_due = e.wait_since + route_wait_max_ns;  // a broker coming up routes it before
      add_timer(e.route_due, wallet);
      unrouted_[e.o.id] = wallet;
    }
    touch(wallet, w);
  });
}

void table::resume(uint64_t last_before, uint64_t resumed) {
  if (rules_ < rules_reset_keeps_route_wait || resumed <= last_before) return;
  const uint64_t down = resumed - last_before;
  each_open([&](uint64_t wallet, wallet_entry& w, order_entry& e) {
    if (e.ending != order_state::open && rules_ >= rules_orders_downtime) {
      // Its cap and grace (both began before): timers at their new ends.
      e.ending_since = std::min(e.ending_since + down, resumed);
      e.ending_at = std::min(e.ending_at + down, resumed);
      add_timer(e.ending_at + cancel_grace_ns, wallet);
      add_timer(e.ending_since + ending_max_ns, wallet);
      touch(wallet, w);
    }
    if (route_state(e.routing) != route_state::waiting || e.wait_since == 0) return;
    e.wait_since = std::min(e.wait_since + down, resumed);  // (it began before)
    touch(wallet, w);
  });
}

bool table::fill_band(const market::instrument& ins, uint64_t ts, uint64_t* lo, uint64_t* hi) const {
  const uint64_t anchor = rules_ >= rules_portfolio_close_and_sells ? ins.reference_ticks() : ins.last_ticks;
  if (anchor == 0) return false;
  uint64_t low = anchor, high = anchor;
  if (rules_ >= rules_fill_band_window && ins.window_range(ts, &low, &high)) {
    low = std::min(low, anchor);
    high = std::max(high, anchor);
  }
  *lo = low - uint64_t((unsigned __int128)low * ins.def.move_bp / 10'000);
  const unsigned __int128 h = (unsigned __int128)high + (unsigned __int128)high * ins.def.move_bp / 10'000;
  *hi = h > UINT64_MAX ? UINT64_MAX : uint64_t(h);
  return true;
}

// What a sell of `quantity` at `limit` (its hold `held`) may fetch past its hold at ts.
uint64_t table::sell_past_hold(uint64_t instrument, uint64_t quantity, uint64_t limit, uint64_t tick, uint64_t held,
                               uint64_t ts) const {
  const market::instrument* ins = market_ ? market_->find(instrument) : nullptr;
  uint64_t lo = 0, hi = 0;
  if (!ins || !fill_band(*ins, ts, &lo, &hi) || hi <= limit) return 0;
  const uint64_t most = portfolio::notional(quantity, hi, tick);
  return most > held ? most - held : 0;
}

uint64_t table::sell_balance_credit(const wire::order& o, uint64_t hold, uint64_t ts) const {
  const market::instrument* ins = market_ ? market_->find(o.instrument_id) : nullptr;
  unsigned __int128 sum = hold;
  if (ins) sum += sell_past_hold(o.instrument_id, o.quantity, o.limit_ticks, ins->def.tick, hold, ts);
  sum += open_sells_credit(o.wallet, ts);
  return sum > UINT64_MAX ? UINT64_MAX : uint64_t(sum);
}

uint64_t table::open_sells_credit(uint64_t wallet, uint64_t ts) const {
  unsigned __int128 sum = 0;
  const auto it = wallets_.find(wallet);
  if (it != wallets_.end()) {
    it->second.b.for_each_order([&](const order_entry& e) {
      if (e.st == order_state::open && !buying(e.o))
        sum += sell_past_hold(e.o.instrument_id, e.open_quantity(), e.o.limit_ticks, e.tick, hold_amount(e), ts);
    });
    for (const auto& chain : it->second.owed)  // fills settled by the book, not yet by the ledger
      for (const auto& t : chain)
        if (t.code == code_improvement) sum += t.amount;
  }
  return sum > UINT64_MAX ? UINT64_MAX : uint64_t(sum);
}

result table::retry(const wire::order_cancel& c, uint64_t ts, bool force) {
  wallet_entry* w = entry(c.wallet);
  order_entry* e = w ? w->b.order_mut(c.order_id) : nullptr;
  if (!e || e->st != order_state::open) return result::order_not_open;
  if (route_state(e->routing) != route_state::dead || e->ending != order_state::open) return result::order_not_dead;
  if (e->attempts.size() + attempts_max > portfolio::attempts_kept_max) return result::order_retries_exhausted;
  // Sent to a broker since the last retry, none answering; or working at a broker since
  // withdrawn (which may have acknowledged an attempt from before that retry).
  const bool may_be_traded =
      e->attempts.size() > e->routing_base || dead_reason(e->dead) == dead_reason::withdrawn;
  if (rules_ >= rules_order_retry_checks_broker && !force && may_be_traded) return result::order_may_be_traded;
  e->routing_base = uint32_t(e->attempts.size());
  e->given_up.clear();
  set_routing(*e, route_state::waiting);
  route(c.wallet, *w, *e, ts);
  return result::ok;
}

void table::add_timer(uint64_t at, uint64_t wallet) {
  timers_.emplace_back(at, wallet);
  std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
}

void table::add_timers_of(const order_entry& e, uint64_t wallet) {
  if (e.expires_at != 0) add_timer(e.expires_at, wallet);
  if (e.ending != order_state::open) {
    add_timer(e.ending_at + cancel_grace_ns, wallet);
    add_timer(e.ending_since + ending_max_ns, wallet);
  }
  if (e.route_due != 0) add_timer(e.route_due, wallet);
}

void table::compact_timers() {
  if (timers_.size() < timers_compact_at_) return;
  std::vector<uint64_t> wallets;
  wallets.reserve(timers_.size());
  for (const auto& [at, wallet] : timers_) wallets.push_back(wallet);
  std::sort(wallets.begin(), wallets.end());
  wallets.erase(std::unique(wallets.begin(), wallets.end()), wallets.end());
  timers_.clear();
  for (const uint64_t wallet : wallets)
    if (const wallet_entry* w = entry(wallet))
      w->b.for_each_order([&](const order_entry& e) {
        if (e.st == order_state::open) add_timers_of(e, wallet);
      });
  timers_.shrink_to_fit();
  timers_compact_at_ = std::max<size_t>(timers_compact_min, 2 * timers_.size());
}

void table::run_due(uint64_t now) {
  // Every open order due by `now` (its expiry, or the grace of its ending) of the wallets
  // whose timers fired, in (time, wallet, order id) order: the same live and in replay,
  // whatever timers (some stale) the heap holds.
  enum class why : uint8_t { grace = 0, expiry = 1, route = 2 };
  struct due_order {
    uint64_t at, wallet, id;
    why w;
    auto operator<=>(const due_order&) const = default;
  };
  std::vector<uint64_t> wallets;
  while (!timers_.empty() && timers_.front().first <= now) {
    std::pop_heap(timers_.begin(), timers_.end(), std::greater<>());
    wallets.push_back(timers_.back().second);
    timers_.pop_back();
  }
  std::sort(wallets.begin(), wallets.end());
  wallets.erase(std::unique(wallets.begin(), wallets.end()), wallets.end());
  std::vector<due_order> due;
  for (const uint64_t wallet : wallets) {
    wallet_entry* w = entry(wallet);
    if (!w) continue;
    w->b.for_each_order([&](const order_entry& e) {
      if (e.st != order_state::open) return;
      if (e.ending != order_state::open) {
        if (const uint64_t at = grace_end(e); at <= now) due.push_back({at, wallet, e.o.id, why::grace});
      } else if (e.expires_at != 0 && e.expires_at <= now) {
        due.push_back({e.expires_at, wallet, e.o.id, why::expiry});
      }
      // An answer deadline, a backoff or a look for a broker (the order may expire at the
      // same time: its expiry comes first).
      if (e.route_due != 0 && e.route_due <= now) due.push_back({e.route_due, wallet, e.o.id, why::route});
    });
  }
  std::sort(due.begin(), due.end());
  for (const auto& d : due) {
    wallet_entry& w = *entry(d.wallet);
    order_entry* ep = w.b.order_mut(d.id);
    if (!ep || ep->st != order_state::open) continue;  // closed by an earlier entry
    order_entry& e = *ep;
    if (d.w == why::route) {
      if (e.route_due != d.at) continue;  // moved since
      e.route_due = 0;
      // Waiting with no wait begun, after attempts of this routing: a backoff that ended.
      const bool backed_off = e.wait_since == 0 && e.attempts.size() > e.routing_base;
      if (route_state(e.routing) == route_state::sent) timed_out(d.wallet, w, e, now);
      else if (route_state(e.routing) == route_state::waiting && backed_off && rules_ >= rules_order_retry_same_broker)
        route_to_last(d.wallet, w, e, now);
      else if (route_state(e.routing) == route_state::waiting) route(d.wallet, w, e, now);
      continue;
    }
    if (d.w == why::grace) {  // the broker never confirmed: it closes as it was ending
      close(d.wallet, w, d.id, e.ending, e.ending == order_state::rejected ? e.reason : 0);
      continue;
    }
    if (events_) {
      wire::event ev{};
      ev.timestamp = now;
      ev.type = wire::event_type::order_expired;
      ev.account_a = d.wallet;
      ev.ref.lo = d.id;
      ev.amount = e.open_quantity();
      events_(std::move(ev));
    }
    end(d.wallet, w, e, order_state::expired, now);
  }
}

void table::chain_done(const wire::transfer& first, result r) {
  wallet_entry* w = entry(first.user_data);
  if (!w) return;
  auto it = std::find_if(w->owed.begin(), w->owed.end(), [&](const auto& c) { return c.front().id == first.id; });
  if (it == w->owed.end()) return;  // emitted again after a restart: the first settled it
  w->owed.erase(it);
  order_entry* e = w->b.order_mut(first.id.lo);
  if (e && e->chains_owed > 0) --e->chains_owed;
  if (r != result::ok) {
    ++settle_refusals_;
    if (e) e->settle_refused = true;
  }
  if (w->b.empty() && w->owed.empty()) {  // nothing left: its row goes at the next cut
    if (!w->dirty) dirty_.push_back(first.user_data);
    wallets_.erase(first.user_data);
    return;
  }
  touch(first.user_data, *w);
}

void table::flush() {
  if (instruct_)
    for (auto& [g, list] : outbox_)
      if (!list.empty()) instruct_(g, std::move(list));
  outbox_.clear();
  if (emit_)
    for (auto& c : chains_out_) emit_(std::move(c));
  chains_out_.clear();
}

std::vector<std::vector<wire::transfer>> table::chains_owed() const {
  std::vector<std::vector<wire::transfer>> out;
  // Wallets in id order, each wallet's chains oldest first (a wallet's chains depend on
  // each other in that order; different wallets' do not).
  std::vector<uint64_t> ids;
  for (const auto& [w, e] : wallets_)
    if (!e.owed.empty()) ids.push_back(w);
  std::sort(ids.begin(), ids.end());
  for (const uint64_t id : ids)
    for (const auto& c : wallets_.at(id).owed) out.push_back(c);
  return out;
}


wire::order_state_view table::view(const order_entry& e) {
  wire::order_state_view v{};
  v.o = e.o;
  v.filled = e.filled;
  v.held = e.held;
  v.paid = e.paid;
  v.placed_at = e.placed_at;
  v.broker = e.broker;
  v.fills = uint32_t(e.fills.size());
  v.state = uint8_t(e.st);
  v.settle_refused = e.settle_refused ? 1 : 0;
  v.cancelling = e.ending != order_state::open ? uint8_t(e.ending) : 0;
  v.reason = e.reason;
  v.routing = e.st == order_state::open ? e.routing : 0;
  v.dead_reason = e.st == order_state::open ? e.dead : 0;
  v.attempts = uint8_t(std::min<size_t>(e.attempts.size(), 255));
  return v;
}

std::vector<uint8_t> table::encode_row(uint64_t wallet) const {
  const auto it = wallets_.find(wallet);
  if (it == wallets_.end() || (it->second.b.empty() && it->second.owed.empty())) return {};
  byte_writer w;
  w.put(row_magic);
  w.put(row_version);
  const auto book = it->second.b.encode();
  w.put(uint32_t(book.size()));
  w.put_bytes(book);
  w.put(uint32_t(it->second.owed.size()));
  for (const auto& c : it->second.owed) {
    w.put(uint32_t(c.size()));
    for (const auto& t : c) w.put_bytes({reinterpret_cast<const uint8_t*>(&t), sizeof t});
  }
  return std::move(w.out);
}

bool table::load_row(uint64_t wallet, std::span<const uint8_t> bytes, std::string* why) {
  byte_reader r{bytes};
  const uint32_t magic = r.get<uint32_t>();
  const uint16_t version = r.get<uint16_t>();
  const uint32_t nb = r.get<uint32_t>();
  if (r.short_read || magic != row_magic || version != row_version || nb > bytes.size())
    return *why = "trading: wallet " + std::to_string(wallet) + ": not a row of version 1", false;
  wallet_entry w;
  if (!portfolio::book::decode(r.take(nb), &w.b, why)) return *why = "wallet " + std::to_string(wallet) + ": " + *why, false;
  const uint32_t nc = r.get<uint32_t>();
  if (r.short_read || nc > (bytes.size() - r.at) / sizeof(wire::transfer))
    return *why = "trading: wallet " + std::to_string(wallet) + ": bad chain count", false;
  for (uint32_t i = 0; i < nc; ++i) {
    const uint32_t n = r.get<uint32_t>();
    if (r.short_read || n == 0 || n > chain_max)
      return *why = "trading: wallet " + std::to_string(wallet) + ": chain " + std::to_string(i) + " is damaged", false;
    std::vector<wire::transfer> c(n);
    for (auto& t : c) {
      const auto raw = r.take(sizeof t);
      if (raw.size() != sizeof t) return *why = "trading: wallet " + std::to_string(wallet) + ": a chain is cut short", false;
      std::memcpy(&t, raw.data(), sizeof t);
      if (t.user_data != wallet && !hold(t.id)) return *why = "trading: wallet " + std::to_string(wallet) + ": a chain of another wallet", false;
      if (!reserved_id(t.id)) return *why = "trading: wallet " + std::to_string(wallet) + ": a chain with a client's id", false;
    }
    w.owed.push_back(std::move(c));
  }
  if (r.at != bytes.size()) return *why = "trading: wallet " + std::to_string(wallet) + ": bytes after the row", false;
  for (size_t i = 0; i < w.owed.size(); ++i) {
    if (const std::string d = chain_damage(wallet, w.owed[i], w.b); !d.empty())
      return *why = "trading: wallet " + std::to_string(wallet) + ": chain " + std::to_string(i) + " " + d, false;
    if (order_entry* e = w.b.order_mut(w.owed[i].front().id.lo)) ++e->chains_owed;
  }
  // Every order is the row's wallet's, and an open one's instrument is listed (the
  // market's row loads first): a fill of one that is not would find no instrument. An
  // instrument's tick and currency never change: an order listed under it has them (its
  // hold and fills were valued by that tick).
  std::string damaged;
  w.b.for_each_order([&](const order_entry& e) {
    if (!damaged.empty()) return;
    const market::instrument* ins = market_ ? market_->find(e.o.instrument_id) : nullptr;
    if (e.o.wallet != wallet) damaged = "order " + std::to_string(e.o.id) + " names wallet " + std::to_string(e.o.wallet);
    else if (e.st == order_state::open && market_ && !ins)
      damaged = "open order " + std::to_string(e.o.id) + " names instrument " + std::to_string(e.o.instrument_id) +
                ", which is not listed";
    else if (ins && (ins->def.tick != e.tick || ins->def.currency != e.o.currency))
      damaged = "order " + std::to_string(e.o.id) + " differs from its instrument's tick or currency";
  });
  if (!damaged.empty()) return *why = "trading: wallet " + std::to_string(wallet) + ": " + damaged, false;
  if (market_) w.b.count_lots(*market_);  // as accept counted them live
  bool closed = false;
  w.b.for_each_order([&](const order_entry& e) {
    if (e.st != order_state::open) {
      closed = true;
      return;
    }
    ++open_;
    if (e.ending != order_state::open) ++ending_;
    add_timers_of(e, wallet);
    if (route_state(e.routing) == route_state::dead) ++dead_;
    // Waiting for a broker (or, from a version 2 row, never sent): routed when one comes up.
    if (route_state(e.routing) == route_state::waiting && e.ending == order_state::open &&
        (e.wait_since != 0 || e.attempts.empty()))
      unrouted_[e.o.id] = wallet;
    if (route_state(e.routing) == route_state::halted) {
      halted_[e.o.instrument_id].emplace(e.o.id, wallet);
      halted_due_ = 0;  // looked at by the next logged batch (market_changed sets it)
    }
  });
  if (closed) note_closed(wallet);
  wallets_[wallet] = std::move(w);
  return true;
}

namespace {
constexpr uint32_t breakers_magic = 0x5442524B;  // "TBRK"
constexpr uint16_t breakers_version = 1;
}  // namespace

std::vector<uint8_t> table::encode_breakers() const {
  byte_writer w;
  w.put(breakers_magic);
  w.put(breakers_version);
  w.put(shard_);
  w.put(shards_);
  w.put(uint32_t(breakers_.size()));
  for (const auto& [g, st] : breakers_) {
    gateways::encode_breaker(w, g, st.b);
    w.put(st.probe_wallet);
  }
  return std::move(w.out);
}

bool table::load_breakers(std::span<const uint8_t> bytes, bool* taken, bool* live, uint32_t* count, std::string* why) {
  *taken = *live = false;
  byte_reader r{bytes};
  const uint32_t magic = r.get<uint32_t>();
  const uint16_t version = r.get<uint16_t>();
  const uint32_t shard = r.get<uint32_t>(), shards = r.get<uint32_t>(), n = r.get<uint32_t>();
  if (r.short_read || magic != breakers_magic || version != breakers_version || shards == 0 || shard >= shards ||
      n > gateways::gateways_max)
    return *why = "trading: the breakers' row is damaged", false;
  std::map<uint32_t, broker_state> got;
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t g = 0;
    broker_state st;
    if (!gateways::decode_breaker(r, false, &g, &st.b) || got.count(g))
      return *why = "trading: a broker's breaker is damaged", false;
    st.probe_wallet = r.get<uint64_t>();
    *live = *live || st.b.ph != gateways::breaker::phase::closed || st.b.n != 0;
    got[g] = st;
  }
  if (r.short_read || r.at != bytes.size()) return *why = "trading: the breakers' row is damaged", false;
  *count = shards;
  if (shard != shard_ || shards != shards_) return true;  // another shard count's: they start closed
  breakers_ = std::move(got);
  *taken = true;
  return true;
}

void table::take_dirty(std::vector<std::pair<uint64_t, std::vector<uint8_t>>>* out) {
  // Every cut: the row also says which shard count wrote the snapshot's routing state.
  breakers_dirty_ = false;
  out->emplace_back(breakers_hi | shard_, encode_breakers());
  for (const uint64_t wallet : dirty_) {
    auto it = wallets_.find(wallet);
    if (it == wallets_.end()) {
      out->emplace_back(wallet, std::vector<uint8_t>{});  // gone: its row is erased
      continue;
    }
    it->second.dirty = false;
    out->emplace_back(wallet, encode_row(wallet));
  }
  dirty_.clear();
}

void table::forget_closed() {
  std::sort(closed_in_.begin(), closed_in_.end());
  closed_in_.erase(std::unique(closed_in_.begin(), closed_in_.end()), closed_in_.end());
  std::vector<uint64_t> later;
  for (const uint64_t wallet : closed_in_) {
    auto it = wallets_.find(wallet);
    if (it == wallets_.end()) continue;
    if (!it->second.owed.empty()) {  // a closing chain not yet carried: its outcome marks the order
      later.push_back(wallet);
      continue;
    }
    it->second.b.forget_closed();
    if (it->second.b.empty() && it->second.owed.empty()) {
      // Its row goes at the next cut (an empty row erases it).
      if (!it->second.dirty) dirty_.push_back(wallet);
      wallets_.erase(it);
      continue;
    }
    touch(wallet, it->second);
  }
  closed_in_ = std::move(later);
}

size_t table::memory_bytes() const {
  size_t n = sizeof *this + timers_.capacity() * 16 + unrouted_.size() * 64;
  for (const auto& [i, held] : halted_) n += 64 + held.size() * 48;
  for (const auto& [id, w] : wallets_) {
    n += 64 + w.b.memory_bytes();
    for (const auto& c : w.owed) n += 24 + c.capacity() * sizeof(wire::transfer);
  }
  return n;
}

}  // namespace mesob::actors::trading
