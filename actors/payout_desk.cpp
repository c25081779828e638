#include "actors/payout_desk.hpp"

#include <algorithm>
#include <set>

#include "actors/byte_codec.hpp"
#include "actors/stale_heap.hpp"
#include "wire/assert.hpp"
#include "actors/flat_map.hpp"
#include "wire/protocol.hpp"

namespace mesob::actors::payouts {

using wire::result;

const char* state_name(state s) {
  switch (s) {
    case state::waiting: return "waiting";
    case state::in_flight: return "in_flight";
    case state::settling: return "settling";
    case state::failing: return "failing";
    case state::dead: return "dead";
    case state::settle_refused: return "settle_refused";
    case state::resolved: return "resolved";
  }
  return "?";
}

const char* dead_reason_name(dead_reason r) {
  switch (r) {
    case dead_reason::none: return "";
    case dead_reason::attempts: return "attempts_exhausted";
    case dead_reason::routes: return "every_gateway_given_up";
    case dead_reason::no_route: return "no_gateway_in_time";
    case dead_reason::unsettled_elsewhere: return "unanswered_attempt_elsewhere";
    case dead_reason::withdrawn: return "gateway_withdrawn";
    case dead_reason::unanswered: return "gateway_silent";
  }
  return "?";
}

bool may_pay(const payout_entry& p, uint32_t gateway) {
  for (auto it = p.attempts.rbegin(); it != p.attempts.rend(); ++it)
    if (it->gateway == gateway) return !it->failed && !it->settled;
  return false;
}

namespace {
// Calls f(gateway, attempt) for each gateway's latest attempt of those from the `from`th
// on, newest first.
template <class F>
void latest_attempts(const payout_entry& p, F&& f, size_t from = 0) {
  std::vector<uint32_t> seen;
  for (size_t k = p.attempts.size(); k-- > from;) {
    const uint32_t g = p.attempts[k].gateway;
    if (std::find(seen.begin(), seen.end(), g) != seen.end()) continue;
    seen.push_back(g);
    f(p.attempts[k], uint32_t(k + 1));
  }
}
}  // namespace

uint32_t latest_attempt_at(const payout_entry& p, uint32_t gateway) {
  for (size_t k = p.attempts.size(); k-- > 0;)
    if (p.attempts[k].gateway == gateway) return uint32_t(k + 1);
  return 0;
}

bool another_may_pay(const payout_entry& p, uint32_t except, size_t from) {
  bool any = false;
  latest_attempts(
      p, [&](const attempt& a, uint32_t) { any = any || (a.gateway != except && !a.failed && !a.settled); }, from);
  return any;
}

std::vector<wire::transfer> chain_of(const payout_entry& p) {
  std::vector<wire::transfer> chain;
  wire::transfer t{};
  t.id = emitted_id(p.desk, p.chain_step);
  t.pending_id = hold_id(p.id);
  t.currency = p.currency;
  t.user_data = p.desk;
  if (p.st == state::settling || p.st == state::settle_refused) {
    t.flags = wire::transfer_flags::post_pending;
    t.code = code_post;
    chain.push_back(t);
  } else {
    t.flags = wire::transfer_flags::void_pending;
    t.code = code_void;
    chain.push_back(t);
  }
  return chain;
}

wire::transfer sweep_transfer(const desk& d, uint64_t settlement, const sweep& s) {
  wire::transfer m{};
  m.id = emitted_id(d.account, s.step);
  m.debit_account_id = d.account;
  m.credit_account_id = settlement;
  m.amount = s.amount;
  m.currency = d.currency;
  m.user_data = d.account;  // routes its outcome to the desk's shard
  m.code = code_settle;
  return m;
}

// ---- byte forms ----------------------------------------------------------------------

namespace {
// Version 2 adds the desk's payout account (and breakers keep 64 outcomes, not 20);
// version 1 rows are slot 0's. Desk version 3 adds the sweeps.
constexpr uint32_t payout_format = 3, desk_format = 4, sessions_format = 1;
constexpr uint32_t list_max = attempts_kept_max;
}  // namespace

std::vector<uint8_t> encode_payout(const payout_entry& p) {
  byte_writer w;
  w.put(payout_format);
  w.put(p.id);
  w.put(p.desk);
  w.put(p.wallet);
  w.put(p.amount);
  w.put(p.destination);
  w.put(p.currency);
  w.put(p.rail);
  w.put(uint8_t(p.st));
  w.put(uint8_t(p.dead));
  w.put(uint8_t(p.cancelling));
  w.put(p.gateway_reason);
  w.put(uint32_t(p.refusal));
  w.put(p.created_at);
  w.put(p.due);
  w.put(p.wait_since);
  w.put(p.settled_by);
  w.put(p.settlement);
  w.put(p.routing_base);
  w.put(p.chain_step);
  w.put(uint32_t(p.attempts.size()));
  for (const auto& a : p.attempts) {
    w.put(a.gateway);
    w.put(a.sent_at);
    w.put(a.settlement);
    w.put(uint8_t(a.settled ? 2 : a.failed ? 1 : 0));  // rows from before kept 0 or 1
  }
  w.put(uint32_t(p.given_up.size()));
  for (const auto g : p.given_up) w.put(g);
  w.put(p.cancel_wait);
  return std::move(w.out);
}

bool decode_payout(std::span<const uint8_t> bytes, payout_entry* out, std::string* why) {
  byte_reader r{bytes};
  payout_entry p;
  const uint32_t format = r.get<uint32_t>();
  if (format < 1 || format > payout_format) {
    *why = "payout: unknown format";
    return false;
  }
  p.id = r.get<uint64_t>();
  p.desk = format == 1 ? 0 : r.get<uint64_t>();
  p.wallet = r.get<uint64_t>();
  p.amount = r.get<uint64_t>();
  p.destination = r.get<uint64_t>();
  p.currency = r.get<uint32_t>();
  if (format == 1) p.desk = desk_account(p.currency, 0);
  p.rail = r.get<uint8_t>();
  const auto st = r.get<uint8_t>();
  const auto dead = r.get<uint8_t>();
  const auto cancelling = r.get<uint8_t>();
  p.gateway_reason = r.get<uint16_t>();
  p.refusal = result(r.get<uint32_t>());
  p.created_at = r.get<uint64_t>();
  p.due = r.get<uint64_t>();
  p.wait_since = r.get<uint64_t>();
  p.settled_by = r.get<uint32_t>();
  p.settlement = r.get<uint64_t>();
  p.routing_base = r.get<uint32_t>();
  p.chain_step = r.get<uint64_t>();
  const uint32_t na = r.get<uint32_t>();
  if (r.short_read || na > list_max) {
    *why = "payout: truncated or too many attempts";
    return false;
  }
  for (uint32_t i = 0; i < na; ++i) {
    attempt a;
    a.gateway = r.get<uint32_t>();
    a.sent_at = r.get<uint64_t>();
    a.settlement = r.get<uint64_t>();
    const auto answered = r.get<uint8_t>();
    if (answered > 2 || a.gateway == 0) {
      *why = "payout " + std::to_string(p.id) + ": an attempt is damaged";
      return false;
    }
    a.failed = answered == 1;
    a.settled = answered == 2;
    p.attempts.push_back(a);
  }
  const uint32_t ng = r.get<uint32_t>();
  if (r.short_read || ng > list_max) {
    *why = "payout: truncated or too many gateways given up";
    return false;
  }
  for (uint32_t i = 0; i < ng; ++i) p.given_up.push_back(r.get<uint32_t>());
  if (format >= 3) p.cancel_wait = r.get<uint32_t>();
  // A dead letter made while it waited on a cancel's answer kept that gateway in rows of
  // older builds: it waits on nothing.
  if (st == uint8_t(state::dead)) p.cancel_wait = 0;
  if (r.short_read || r.at != bytes.size()) {
    *why = "payout " + std::to_string(p.id) + ": truncated or trailing bytes";
    return false;
  }
  if (p.id == 0 || p.amount == 0 || p.wallet == 0 || !wire::currency_valid(p.currency) || !payout_account(p.desk) ||
      desk_currency(p.desk) != p.currency || p.rail == 0 ||
      p.rail > gateways::rail_max || st < 1 || st > uint8_t(state::resolved) || dead > uint8_t(dead_reason::unanswered) || cancelling > 1 ||
      p.routing_base > p.attempts.size() || (st == uint8_t(state::in_flight) && p.attempts.empty()) ||
      ((st == uint8_t(state::settling) || st == uint8_t(state::settle_refused)) &&
       (p.settled_by == 0 || p.settlement == 0)) ||
      ((st == uint8_t(state::settling) || st == uint8_t(state::settle_refused) || st == uint8_t(state::failing)) &&
       p.chain_step == 0) ||
      (st == uint8_t(state::dead) && dead == 0) ||  // (rows of other states may keep a reason: older builds')
      (p.cancel_wait != 0 && (st != uint8_t(state::waiting) || p.attempts.empty())) ||
      (st == uint8_t(state::resolved) && (p.due == 0 || !another_may_pay(p, p.settled_by))) ||
      // A chain's refusal is a ledger result (one a settling payout's chain always has).
      (p.refusal != result::ok && wire::result_name(p.refusal) == std::string_view("unknown_result")) ||
      (st == uint8_t(state::settle_refused) && p.refusal == result::ok)) {
    *why = "payout " + std::to_string(p.id) + ": a field is out of range";
    return false;
  }
  for (size_t i = 0; i < p.given_up.size(); ++i)  // gateway numbers, each once
    if (p.given_up[i] == 0 || std::find(p.given_up.begin(), p.given_up.begin() + i, p.given_up[i]) != p.given_up.begin() + i) {
      *why = "payout " + std::to_string(p.id) + ": its gateways given up are damaged";
      return false;
    }
  p.st = state(st);
  p.dead = dead_reason(dead);
  p.cancelling = cancelling == 1;
  *out = std::move(p);
  return true;
}

std::vector<uint8_t> encode_desk(const desk& d) {
  byte_writer w;
  w.put(desk_format);
  w.put(d.account);
  w.put(d.currency);
  w.put(d.next_step);
  std::vector<uint32_t> keys;
  for (const auto& [g, b] : d.breakers) keys.push_back(g);
  std::sort(keys.begin(), keys.end());
  w.put(uint32_t(keys.size()));
  for (const uint32_t g : keys) {
    encode_breaker(w, g, d.breakers.at(g));
  }
  w.put(uint32_t(d.sweeps.size()));
  for (const auto& [a, sw] : d.sweeps) {
    w.put(a);
    w.put(sw.owed);
    w.put(sw.step);
    w.put(sw.amount);
    w.put(uint32_t(sw.refusal));
    w.put(sw.retry_at);
    w.put(sw.refusals);  // (format 4 on)
  }
  return std::move(w.out);
}

bool decode_desk(std::span<const uint8_t> bytes, desk* out, std::string* why) {
  byte_reader r{bytes};
  desk d;
  const uint32_t format = r.get<uint32_t>();
  if (format < 1 || format > desk_format) {
    *why = "payout desk: unknown format";
    return false;
  }
  d.account = format == 1 ? 0 : r.get<uint64_t>();
  d.currency = r.get<uint32_t>();
  if (format == 1) d.account = desk_account(d.currency, 0);
  d.next_step = r.get<uint64_t>();
  const uint32_t n = r.get<uint32_t>();
  if (r.short_read || n > gateways::gateways_max || !wire::currency_valid(d.currency) || d.next_step == 0 ||
      !payout_account(d.account) || desk_currency(d.account) != d.currency) {
    *why = "payout desk: truncated or out of range";
    return false;
  }
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t g = 0;
    breaker b;
    if (!decode_breaker(r, format == 1, &g, &b) || d.breakers.count(g)) {
      *why = "payout desk " + wire::currency_name(d.currency) + ": a breaker is damaged";
      return false;
    }
    d.breakers[g] = b;
  }
  // Sweeps are by settlement account, and a gateway names up to
  // settlement_accounts_named_max of them over its life, former ones included (each
  // stays owed until swept): the bound is those, not the accounts named at once (before,
  // gateways_max x gateway_currencies_max, which a desk could pass and then not load its
  // own snapshot).
  const uint32_t ns = format >= 3 ? r.get<uint32_t>() : 0;
  if (r.short_read || ns > gateways::gateways_max * gateways::settlement_accounts_named_max) {
    *why = "payout desk: truncated or too many sweeps";
    return false;
  }
  for (uint32_t i = 0; i < ns; ++i) {
    const uint64_t a = r.get<uint64_t>();
    sweep sw;
    sw.owed = r.get<uint64_t>();
    sw.step = r.get<uint64_t>();
    sw.amount = r.get<uint64_t>();
    sw.refusal = result(r.get<uint32_t>());
    sw.retry_at = r.get<uint64_t>();
    sw.refusals = format >= 4 ? r.get<uint32_t>() : 0;
    const bool step_taken =
        sw.step != 0 && std::any_of(d.sweeps.begin(), d.sweeps.end(), [&](const auto& x) { return x.second.step == sw.step; });
    if (r.short_read || a == 0 || sw.owed == 0 || sw.amount > sw.owed || (sw.step == 0) != (sw.amount == 0) ||
        sw.step >= d.next_step || step_taken || (sw.step != 0 && sw.refusal != result::ok) ||
        (sw.refusal == result::ok) != (sw.retry_at == 0) ||
        (sw.refusal != result::ok && wire::result_name(sw.refusal) == std::string_view("unknown_result")) ||
        sw.refusals > sweep_refusals_max || (sw.refusals != 0 && sw.step == 0 && sw.refusal == result::ok) ||
        d.sweeps.count(a)) {
      *why = "payout desk " + wire::currency_name(d.currency) + ": a sweep is damaged";
      return false;
    }
    d.sweeps[a] = sw;
  }
  if (r.at != bytes.size()) {
    *why = "payout desk: trailing bytes";
    return false;
  }
  *out = std::move(d);
  return true;
}

std::vector<uint8_t> desk_table::encode_sessions() const {
  std::vector<std::pair<uint32_t, uint32_t>> s(sessions_.begin(), sessions_.end());
  std::sort(s.begin(), s.end());
  byte_writer w;
  w.put(sessions_format);
  w.put(uint32_t(s.size()));
  for (const auto& [g, n] : s) {
    w.put(g);
    w.put(n);
  }
  return std::move(w.out);
}

void desk_table::load_sessions(std::span<const uint8_t> bytes, std::string* why, bool* ok) {
  byte_reader r{bytes};
  *ok = false;
  if (r.get<uint32_t>() != sessions_format) {
    *why = "gateway sessions: unknown format";
    return;
  }
  const uint32_t n = r.get<uint32_t>();
  if (r.short_read || n > gateways::gateways_max) {
    *why = "gateway sessions: truncated or too many";
    return;
  }
  std::unordered_map<uint32_t, uint32_t> s;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t g = r.get<uint32_t>(), c = r.get<uint32_t>();
    if (g == 0 || c == 0 || s.count(g)) {
      *why = "gateway sessions: a row is damaged";
      return;
    }
    s[g] = c;
  }
  if (r.short_read || r.at != bytes.size()) {
    *why = "gateway sessions: truncated or trailing bytes";
    return;
  }
  sessions_ = std::move(s);
  *ok = true;
}

// ---- state ---------------------------------------------------------------------------

desk& desk_table::desk_of(uint64_t account) {
  auto [it, fresh] = desks_.try_emplace(account);
  if (fresh) {
    it->second.account = account;
    it->second.currency = desk_currency(account);
    touch(it->second);
  }
  return it->second;
}

std::pair<desk*, payout_entry*> desk_table::find_in(uint64_t account, uint64_t payout_id, payout_map desk::*which) {
  const auto dit = desks_.find(account);
  if (dit == desks_.end()) return {nullptr, nullptr};
  auto& m = dit->second.*which;
  const auto it = m.find(payout_id);
  if (it == m.end()) return {nullptr, nullptr};
  return {&dit->second, &it->second};
}

uint32_t desk_table::sessions(uint32_t gateway) const {
  const auto it = sessions_.find(gateway);
  return it == sessions_.end() ? 0 : it->second;
}

void desk_table::touch(desk& d) {
  if (d.listed_dirty) return;
  d.listed_dirty = true;
  dirty_desks_.push_back(d.account);
}

void desk_table::touch(desk& d, payout_entry& p) {
  if (!p.recount_listed) {
    p.recount_listed = true;
    recount_.emplace_back(d.account, p.id);
  }
  if (p.listed_dirty) return;
  p.listed_dirty = true;
  dirty_payouts_.emplace_back(d.account, p.id);
}

void desk_table::count_as(desk& d, payout_entry& p) {
  const uint32_t g = p.attempts.empty() ? 0 : p.attempts.back().gateway;
  if (p.counted_as == uint8_t(p.st) && p.counted_gateway == g) return;
  if (p.counted_as != 0) {
    if (p.counted_as != uint8_t(p.st)) ++held_version_;  // (what a shard publishes: by state alone)
    drop_figures(d, p);
  } else {
    d.held_ids.insert(p.id);
    ++held_version_;
  }
  p.counted_as = uint8_t(p.st);
  p.counted_gateway = g;
  auto& h = d.held[size_t(p.st) % d.held.size()];
  ++h.n;
  h.amount += p.amount;  // (a desk's held amounts are its account's pending credits: no sum passes 2^64)
  auto& c = d.counts[{p.counted_as, g, uint32_t(p.created_at / ns_per_day)}];
  ++c.n;
  c.amount += p.amount;
  if (is_problem(p.st)) d.problem_ids.insert(p.id);
}

void desk_table::drop_figures(desk& d, const payout_entry& p) {
  auto& h = d.held[p.counted_as % d.held.size()];
  --h.n;
  h.amount -= p.amount;
  const auto c = d.counts.find({p.counted_as, p.counted_gateway, uint32_t(p.created_at / ns_per_day)});
  if (c != d.counts.end()) {  // (always there: the audit compares the figures with the payouts)
    if (--c->second.n == 0) d.counts.erase(c);
    else c->second.amount -= p.amount;
  }
  if (is_problem(state(p.counted_as))) d.problem_ids.erase(p.id);
}

void desk_table::uncount(desk& d, payout_entry& p) {
  if (p.counted_as == 0) return;
  drop_figures(d, p);
  d.held_ids.erase(p.id);
  p.counted_as = 0;
  ++held_version_;
}

void desk_table::recount() {
  for (const auto& [account, id] : recount_) {
    const auto dit = desks_.find(account);
    if (dit == desks_.end()) continue;
    // One no longer held was uncounted as it left (resolve).
    if (const auto it = dit->second.payouts.find(id); it != dit->second.payouts.end()) {
      it->second.recount_listed = false;
      count_as(dit->second, it->second);
    } else if (const auto w = dit->second.watched.find(id); w != dit->second.watched.end()) {
      w->second.recount_listed = false;
    }
  }
  recount_.clear();
}

void desk_table::schedule(payout_entry& p, uint64_t at) {
  p.due = at;
  add_timer({at, p.id, p.desk});
}

bool desk_table::timer_live(const timer& t) const {
  const auto dit = desks_.find(t.desk);
  if (dit == desks_.end()) return false;
  const desk& d = dit->second;
  if (t.payout == 0) {  // as run_due starts sweeps
    for (const auto& [a, s] : d.sweeps)
      if (s.step == 0 && s.refusal != result::ok && s.retry_at == t.at) return true;
    return false;
  }
  if (const auto it = d.payouts.find(t.payout); it != d.payouts.end()) return it->second.due == t.at;
  const auto w = d.watched.find(t.payout);
  return w != d.watched.end() && w->second.due == t.at;
}

void desk_table::compact_timers() {
  const bool rebuilt = tidy_stale_heap(
      timers_, timers_compact_at_, std::greater<>{}, [&](const timer& t) { return timer_live(t); },
      [&](std::vector<timer>& heap) {
        for (const auto& [account, d] : desks_) {
          for (const auto& [id, p] : d.payouts)
            if (p.due != 0) heap.push_back({p.due, id, account});
          for (const auto& [id, p] : d.watched)
            if (p.due != 0) heap.push_back({p.due, id, account});
          std::set<uint64_t> retries;
          for (const auto& [a, s] : d.sweeps)
            if (s.step == 0 && s.refusal != result::ok && s.retry_at != 0) retries.insert(s.retry_at);
          for (const uint64_t at : retries) heap.push_back({at, 0, account});
        }
      });
  if (rebuilt) timers_compact_at_ = std::max<size_t>(timers_compact_min, 2 * timers_.size());
}

void desk_table::add_timer(const timer& t) {
  timers_.push_back(t);
  std::push_heap(timers_.begin(), timers_.end(), std::greater<>{});
}

uint64_t desk_table::timeout_ns(uint32_t gateway) const {
  const gateways::gateway* g = registry_->find(gateway);
  const uint64_t ms = g ? g->answer_timeout_ms : gateways::answer_timeout_ms_default;
  return ms * 1'000'000ull;
}

// ---- breakers ------------------------------------------------------------------------

bool desk_table::admits(desk& d, const gateways::gateway& g, uint64_t payout, uint64_t now) {
  auto it = d.breakers.find(g.number);
  if (it == d.breakers.end()) return true;  // closed, nothing seen yet
  // The probe still decides while it is in flight here; one re-routed elsewhere (or
  // resolved) hands the probe on.
  const auto busy = [&](uint64_t probe) {
    const auto probing = d.payouts.find(probe);
    return probing != d.payouts.end() && probing->second.st == state::in_flight &&
           probing->second.attempts.back().gateway == g.number;
  };
  bool changed = false, moved = false;
  const bool ok = it->second.admit(payout, now, busy, &changed, &moved);
  if (changed) touch(d);
  if (moved) breaker_moved(d, g.number, it->second, now);
  return ok;
}

void desk_table::record(desk& d, uint32_t gateway, uint64_t payout, bool bad, uint64_t now) {
  breaker& b = d.breakers[gateway];
  touch(d);
  if (b.record(payout, bad, now, 4 * timeout_ns(gateway))) breaker_moved(d, gateway, b, now);
}

// ---- routing -------------------------------------------------------------------------

void desk_table::send(desk& d, payout_entry& p, const gateways::gateway& g, uint64_t now, bool new_attempt) {
  if (new_attempt) {
    const wire::gateway_currency* gc = g.serves(p.currency);
    p.attempts.push_back({g.number, now, gc ? gc->settlement_account_id : 0, false, false});
    ++d.breakers[g.number].sent;
    touch(d);
    cancel_elsewhere(p, g.number);  // the gateways it leaves behind
  }
  p.st = state::in_flight;
  p.wait_since = 0;
  if (new_attempt || before_cancels_ || p.due == 0) schedule(p, now + timeout_ns(g.number));
  touch(d, p);
  wire::payout_instruction in{};
  in.payout_id = p.id;
  in.amount = p.amount;
  in.destination = p.destination;
  in.currency = p.currency;
  in.attempt = uint32_t(p.attempts.size());
  in.rail = p.rail;
  outbox_[g.number].push_back(in);
}

void desk_table::cancel_at(const payout_entry& p, uint32_t gateway, uint32_t attempt) {
  wire::payout_instruction in{};
  in.payout_id = p.id;
  in.amount = p.amount;
  in.destination = p.destination;
  in.currency = p.currency;
  in.attempt = attempt;
  in.rail = p.rail;
  in.kind = wire::payout_instruction_kind::cancel;
  outbox_[gateway].push_back(in);
}

void desk_table::cancel_elsewhere(const payout_entry& p, uint32_t except) {
  latest_attempts(p, [&](const attempt& a, uint32_t k) {
    if (a.gateway != except && !a.failed && !a.settled) cancel_at(p, a.gateway, k);
  });
}

void desk_table::make_dead(desk& d, payout_entry& p, dead_reason why, uint64_t now) {
  p.st = state::dead;
  p.dead = why;
  p.due = 0;
  p.wait_since = 0;
  p.cancel_wait = 0;  // waiting on nothing now (a row keeps one for a waiting payout only)
  touch(d, p);
  cancel_elsewhere(p, 0);  // nobody works it now
  if (!events_) return;
  auto ev = wire::decided_event(wire::event_type::payout_dead, now, p.currency, p.wallet, d.account);
  ev.ref = {p.id, uint64_t(p.attempts.size())};
  ev.amount = p.amount;
  ev.code = uint16_t(why);
  ev.gateway = uint16_t(p.attempts.empty() ? 0 : p.attempts.back().gateway);
  events_(std::move(ev));
}

void desk_table::breaker_moved(const desk& d, uint32_t gateway, const breaker& b, uint64_t now) {
  if (!events_) return;
  auto ev = wire::decided_event(wire::event_type::payout_breaker, now, d.currency, d.account);
  ev.ref = {b.trips, b.ph == breaker::phase::open ? b.open_until : 0};
  ev.code = uint16_t(b.ph);
  ev.gateway = uint16_t(gateway);
  events_(std::move(ev));
}

void desk_table::route(desk& d, payout_entry& p, uint64_t now) {
  p.cancel_wait = 0;
  if (p.attempts.size() - p.routing_base >= attempts_max) return make_dead(d, p, dead_reason::attempts, now);
  // Candidates in priority order, then number.
  std::vector<const gateways::gateway*> serving;
  for (const auto& g : registry_->all())
    if (g.enabled && g.rail == p.rail && g.serves(p.currency) && (!payout_routes_ || gateways::registry::takes_payouts(g)))
      serving.push_back(&g);
  std::stable_sort(serving.begin(), serving.end(), [](auto* a, auto* b) { return a->priority < b->priority; });
  const auto gave_up = [&](uint32_t g) { return std::find(p.given_up.begin(), p.given_up.end(), g) != p.given_up.end(); };
  if (asks_before_routing_) {
    // Gateways it went to since the last operator's retry that may still pay it and can
    // hear (newest first): one came back while the payout waited for a gateway.
    std::vector<uint32_t> hearing;
    latest_attempts(
        p,
        [&](const attempt& a, uint32_t) {
          if (!a.failed && !a.settled && sessions(a.gateway) > 0) hearing.push_back(a.gateway);
        },
        p.routing_base);
    if (!hearing.empty()) {
      const uint32_t h = hearing.front();
      const auto it = std::find_if(serving.begin(), serving.end(), [&](auto* g) { return g->number == h; });
      if (hearing.size() == 1 && it != serving.end() && !gave_up(h) && admits(d, **it, p.id, now)) {
        send(d, p, **it, now, true);  // the same payment, where it may already be
        return;
      }
      // (A wait on a cancel, not for a gateway; from rules version 49 the wait for a
      // gateway it began goes on through it, so that one asked at each of its openings
      // and gone before it answers does not begin it anew: route_wait_max still ends it.)
      if (!waits_for_payer_) p.wait_since = 0;
      return leave_gateway(d, p, h, now, true);
    }
  }
  // A gateway it went to that may still pay it and cannot hear now (none above has a
  // session up): nobody else gets it before that one is heard (rules version 49). Its
  // session opening routes the payout, to it or through its answer to a cancel (above).
  bool payer_away = false;
  if (waits_for_payer_) {
    bool withdrawn = false;
    latest_attempts(
        p,
        [&](const attempt& a, uint32_t) {
          if (a.failed || a.settled) return;
          payer_away = true;
          withdrawn = withdrawn || !answers(a.gateway);
        },
        p.routing_base);
    // One an operator disabled or removed meanwhile can no longer say (rules version 15).
    if (withdrawn && withdrawn_dead_) return make_dead(d, p, dead_reason::withdrawn, now);
  }
  bool any_left = false;
  for (const auto* g : serving) {
    if (payer_away) break;
    if (gave_up(g->number)) continue;
    any_left = true;
    if (sessions(g->number) == 0 || !admits(d, *g, p.id, now)) continue;
    send(d, p, *g, now, true);
    return;
  }
  if (!payer_away && !any_left && !serving.empty()) return make_dead(d, p, dead_reason::routes, now);
  // No gateway can take it now (or the one that may pay is away): look again shortly, up
  // to route_wait_max; then it is an operator's (one that may have been paid, forced).
  if (p.wait_since == 0) p.wait_since = now;
  if (now - p.wait_since >= route_wait_max_ns)
    return make_dead(d, p, payer_away ? dead_reason::unanswered : dead_reason::no_route, now);
  p.st = state::waiting;
  touch(d, p);
  schedule(p, std::min(now + route_poll_ns, p.wait_since + route_wait_max_ns));
}

void desk_table::timed_out(desk& d, payout_entry& p, uint64_t now) {
  const uint32_t g = p.attempts.back().gateway;
  breaker& b = d.breakers[g];
  ++b.timeouts;
  record(d, g, p.id, true, now);
  const auto tries = std::count_if(p.attempts.begin() + p.routing_base, p.attempts.end(),
                                   [&](const attempt& a) { return a.gateway == g; });
  if (uint32_t(tries) >= tries_per_gateway) p.given_up.push_back(g);
  const gateways::gateway* gw = registry_->find(g);
  const bool again_here = uint32_t(tries) < tries_per_gateway && gw && gw->enabled && sessions(g) > 0 &&
                          d.breakers[g].ph == breaker::phase::closed && (!withdrawn_dead_ || answers(g));
  if (!again_here) return leave_gateway(d, p, g, now, true);
  // Exponential backoff with jitter (from the payout and attempt: replay agrees).
  const uint64_t wait = gateways::backoff_ns(timeout_ns(g), uint32_t(p.attempts.size() - p.routing_base), p.id);
  p.st = state::waiting;
  touch(d, p);
  schedule(p, now + wait);
}

// A payout whose backoff after a timeout ended (timed_out chose to try its gateway
// again): that gateway still, if it may take it; leaving it, the way timed_out leaves
// one (a gateway that can hear is asked to cancel, and gets an answer timeout to say
// whether it paid, before another gets the payout). Before rules version 9 `route` took
// the best gateway by priority here, possibly another while the first might have paid.
void desk_table::retry_after_backoff(desk& d, payout_entry& p, uint64_t now) {
  if (p.attempts.size() - p.routing_base >= attempts_max) return route(d, p, now);  // a dead letter
  const uint32_t g = p.attempts.back().gateway;
  const gateways::gateway* gw = registry_->find(g);
  const bool given_up = std::find(p.given_up.begin(), p.given_up.end(), g) != p.given_up.end();
  // As route() would take it (an operator may have changed its rail or currencies since).
  if (gw && gw->enabled && gw->rail == p.rail && gw->serves(p.currency) && !given_up && sessions(g) > 0 &&
      gateways::registry::takes_payouts(*gw) && admits(d, *gw, p.id, now)) {
    p.cancel_wait = 0;
    send(d, p, *gw, now, true);
    return;
  }
  leave_gateway(d, p, g, now, may_pay(p, g));
}

bool desk_table::answers(uint32_t g) const {
  const gateways::gateway* gw = registry_->find(g);
  return gw && gw->enabled && (!payout_routes_ || gateways::registry::takes_payouts(*gw));
}

// Leaving gateway g, which may have paid: if it can hear, it is asked to cancel first and
// gets one more answer timeout to say whether it paid (a `failed` moves the payout on at
// once, a `settled` settles it); else the next gateway at once.
void desk_table::leave_gateway(desk& d, payout_entry& p, uint32_t g, uint64_t now, bool may_have_paid) {
  // Nobody could tell whether it paid: another gateway paying too would never be seen.
  if (may_have_paid && withdrawn_dead_ && !answers(g)) return make_dead(d, p, dead_reason::withdrawn, now);
  if (may_have_paid && !before_cancels_ && sessions(g) > 0) {
    p.st = state::waiting;
    p.cancel_wait = g;
    cancel_at(p, g, latest_attempt_at(p, g));
    touch(d, p);
    schedule(p, now + timeout_ns(g));
    return;
  }
  route(d, p, now);
}

void desk_table::settle(desk& d, payout_entry& p, uint32_t gateway, uint64_t settlement) {
  p.settled_by = gateway;
  p.settlement = settlement;
  cancel_elsewhere(p, gateway);
  start_chain(d, p, state::settling);
}

void desk_table::start_chain(desk& d, payout_entry& p, state st) {
  p.st = st;
  p.cancel_wait = 0;
  p.dead = dead_reason::none;  // no longer a dead letter
  p.refusal = result::ok;
  p.due = 0;
  p.chain_step = d.next_step++;
  touch(d);
  touch(d, p);
  emit(chain_of(p));
}

void desk_table::start_sweep(desk& d, uint64_t settlement, sweep& s) {
  s.step = d.next_step++;
  s.amount = s.owed;
  s.refusal = result::ok;
  s.retry_at = 0;
  touch(d);
  emit({sweep_transfer(d, settlement, s)});
}

void desk_table::sweep_done(const wire::transfer& t, result r, uint64_t ts) {
  const auto dit = desks_.find(emitting_desk(t.id));
  if (dit == desks_.end()) return;
  desk& d = dit->second;
  const auto sit = d.sweeps.find(t.credit_account_id);
  if (sit == d.sweeps.end() || sit->second.step != t.id.lo) return;  // not this desk's sweep in flight
  sweep& sw = sit->second;
  touch(d);
  if (r == result::ok) {
    MESOB_ASSERT_MSG(t.amount == sw.amount && t.amount <= sw.owed, "a sweep moved what its desk did not send");
    sw.owed -= t.amount;
    sw.step = 0;
    sw.amount = 0;
    sw.refusals = 0;
    if (sw.owed == 0) d.sweeps.erase(sit);
    else start_sweep(d, t.credit_account_id, sw);  // what the posts meanwhile added
    return;
  }
  sw.step = 0;
  sw.amount = 0;
  sw.refusal = r;
  uint64_t wait = sweep_retry_ns;
  if (sweep_backoff_) {
    sw.refusals = std::min(sw.refusals + 1, sweep_refusals_max);
    wait = std::min(sweep_retry_ns << std::min(sw.refusals - 1, 6u), sweep_retry_max_ns);
  }
  sw.retry_at = ts + wait;
  add_timer({sw.retry_at, 0, d.account});
}

void desk_table::release(desk& d, payout_entry& p, bool cancel) {
  p.cancelling = cancel;
  cancel_elsewhere(p, 0);
  start_chain(d, p, state::failing);
}

void desk_table::unwatch(desk& d, uint64_t id) {
  erased_.emplace_back(d.account, id);
  d.watched.erase(id);
}

void desk_table::resolve(desk& d, payout_entry& p, resolution r, uint64_t ts) {
  const uint64_t id = p.id;
  const uint32_t gateway = r == resolution::settled ? p.settled_by : p.attempts.empty() ? 0 : p.attempts.back().gateway;
  recon_counts& c = recon_at(gateway, ts, p.currency);
  switch (r) {
    case resolution::settled:
      ++c.settled;
      gateways::add_amount(c.settled_amount, p.amount);
      break;
    case resolution::failed:
      ++c.failed;
      gateways::add_amount(c.failed_amount, p.amount);
      break;
    case resolution::cancelled:
      ++c.cancelled;
      gateways::add_amount(c.cancelled_amount, p.amount);
      break;
  }
  uncount(d, p);
  if (another_may_pay(p, p.settled_by)) {  // kept for that gateway's answer
    p.st = state::resolved;
    p.refusal = result::ok;
    schedule(p, ts + watch_keep_ns);
    touch(d, p);
    d.watched.emplace(id, std::move(p));
  } else {
    erased_.emplace_back(d.account, id);
  }
  d.payouts.erase(id);
}

// ---- inputs --------------------------------------------------------------------------

void desk_table::held(const wire::transfer& h, uint64_t ts) {
  desk& d = desk_of(h.credit_account_id);
  payout_entry p;
  p.id = h.id.lo;
  p.desk = d.account;
  p.wallet = h.debit_account_id;
  p.amount = h.amount;
  p.destination = h.user_data;
  p.currency = h.currency;
  p.rail = uint8_t(h.code);
  p.created_at = ts;
  auto [it, fresh] = d.payouts.emplace(p.id, std::move(p));
  if (!fresh) return;  // cannot happen: a hold id is recorded once
  count_as(d, it->second);
  route(d, it->second, ts);
}

void desk_table::note_failed(desk& d, payout_entry& p, const wire::payout_answer& a) {
  for (uint32_t k = 0; k < a.attempt; ++k) {
    attempt& at = p.attempts[k];
    if (at.gateway != a.gateway || at.failed || at.settled) continue;
    at.failed = true;
    touch(d, p);
  }
}

void desk_table::note_settled(desk& d, payout_entry& p, uint32_t gateway) {
  for (attempt& at : p.attempts)
    if (at.gateway == gateway && !at.settled) {
      at.settled = true;
      touch(d, p);
    }
}

result desk_table::settled_after_end(desk& d, payout_entry& p, const wire::payout_answer& a, uint64_t ts, bool kept) {
  const bool known = a.gateway == p.settled_by ||
                     std::any_of(p.attempts.begin(), p.attempts.end(),
                                 [&](const attempt& x) { return x.gateway == a.gateway && x.settled; });
  if (known) {  // a duplicate
    note_settled(d, p, a.gateway);
    if (kept && !another_may_pay(p, p.settled_by)) unwatch(d, p.id);
    return result::payout_already_resolved;
  }
  note_settled(d, p, a.gateway);
  const uint8_t ended = p.st == state::settling || p.st == state::settle_refused || p.settled_by != 0 ? 1
                        : p.cancelling                                                            ? 3
                                                                                                  : 2;
  recon_counts& c = recon_at(a.gateway, ts, p.currency);
  ++c.overpaid;
  gateways::add_amount(c.overpaid_amount, p.amount);
  if (events_) {
    auto ev = wire::decided_event(wire::event_type::payout_overpaid, ts, p.currency, p.wallet, d.account);
    ev.ref = {p.id, a.attempt};
    ev.amount = p.amount;
    ev.code = ended;
    ev.gateway = uint16_t(a.gateway);
    events_(std::move(ev));
  }
  if (kept && !another_may_pay(p, p.settled_by)) unwatch(d, p.id);
  return result::payout_overpaid;
}

namespace {
// What every answer is checked for first, under any rules: its attempt, gateway, amount.
result answer_fits(const payout_entry& p, const wire::payout_answer& a) {
  if (a.attempt == 0 || a.attempt > p.attempts.size()) return result::payout_instruction_unknown;
  if (p.attempts[a.attempt - 1].gateway != a.gateway) return result::payout_wrong_gateway;
  if (a.amount != p.amount) return result::payout_amount_mismatch;
  return result::ok;
}
}  // namespace

result desk_table::took_settled(desk& d, payout_entry& p, const wire::payout_answer& a, uint64_t ts) {
  breaker& b = d.breakers[a.gateway];
  ++b.settled;
  gateways::add_amount(b.settled_amount, p.amount);
  record(d, a.gateway, p.id, false, ts);
  if (!before_cancels_) note_settled(d, p, a.gateway);  // (rows as the builds before wrote them)
  settle(d, p, a.gateway, p.attempts[a.attempt - 1].settlement);  // whichever attempt: the money went out
  return result::ok;
}

void desk_table::took_failed(desk& d, payout_entry& p, const wire::payout_answer& a, uint64_t ts, bool sample) {
  breaker& b = d.breakers[a.gateway];
  ++b.failed;
  gateways::add_amount(b.failed_amount, p.amount);
  touch(d);  // (record touches it too; a failure it does not sample changes the counts all the same)
  // A decline (rules_payout_declines) is the payment's, not the gateway's: a good outcome.
  if (sample) record(d, a.gateway, p.id, a.failure != wire::payout_failure::declined, ts);
  p.gateway_reason = a.reason;
}

// The answer rules of the builds before cancels (records of version 5 and older).
result desk_table::answer_before_cancels(const wire::payout_answer& a, uint64_t desk_account, uint64_t ts) {
  const auto [dp, p] = held_payout(desk_account, a.payout_id);
  if (!p) return result::payout_already_resolved;
  desk& d = *dp;
  if (const result r = answer_fits(*p, a); r != result::ok) return r;
  if (p->st == state::settling || p->st == state::settle_refused || p->st == state::failing)
    return result::payout_already_resolved;
  const bool current = p->st == state::in_flight && a.attempt == p->attempts.size();
  attempt& at = p->attempts[a.attempt - 1];
  if (a.outcome == wire::payout_outcome::settled) return took_settled(d, *p, a, ts);
  if (!at.failed) {
    at.failed = true;
    touch(d, *p);
  }
  if (!current) return result::payout_answer_late;
  took_failed(d, *p, a, ts);
  for (size_t k = 0; k + 1 < p->attempts.size(); ++k)
    if (p->attempts[k].gateway != a.gateway && !p->attempts[k].failed) {
      make_dead(d, *p, dead_reason::unsettled_elsewhere, ts);
      return result::ok;
    }
  release(d, *p, false);
  return result::ok;
}

result desk_table::answer(const wire::payout_answer& a, uint64_t desk_account, uint64_t ts) {
  if (before_cancels_) return answer_before_cancels(a, desk_account, ts);
  auto [dp, p] = held_payout(desk_account, a.payout_id);
  const bool kept = p == nullptr;
  if (kept) std::tie(dp, p) = watched_payout(desk_account, a.payout_id);
  if (!p) return result::payout_already_resolved;
  desk& d = *dp;
  if (const result r = answer_fits(*p, a); r != result::ok) return r;
  if (kept || p->st == state::settling || p->st == state::settle_refused || p->st == state::failing) {
    if (a.outcome == wire::payout_outcome::settled) return settled_after_end(d, *p, a, ts, kept);
    note_failed(d, *p, a);
    if (kept && !another_may_pay(*p, p->settled_by)) unwatch(d, p->id);
    return result::payout_already_resolved;
  }
  const bool current = p->st == state::in_flight && a.attempt == p->attempts.size();
  // The latest attempt timed out and the payout waits to try its gateway again: that
  // gateway saying it did not pay ends the wait as a current answer would have.
  const bool backing_off = failed_in_backoff_ && in_backoff(*p) && a.attempt == p->attempts.size() &&
                           a.gateway == p->attempts.back().gateway;
  if (a.outcome == wire::payout_outcome::settled) return took_settled(d, *p, a, ts);
  const bool might_have_paid = may_pay(*p, a.gateway);
  note_failed(d, *p, a);
  if (!current && !backing_off) {
    // Waiting for a gateway that left it in an outage and may pay it (rules version 49):
    // that gateway saying it did not pay sends it on now, as its answer to a cancel would.
    if (waits_for_payer_ && p->st == state::waiting && p->wait_since != 0 && p->cancel_wait == 0 && might_have_paid &&
        latest_attempt_at(*p, a.gateway) > p->routing_base) {
      route(d, *p, ts);
      return result::ok;
    }
    // The gateway asked to cancel did not pay: on to the next one now, unless another it
    // went to since the last operator's retry may still pay (one left in an outage): then
    // a dead letter waiting on that one (below), rather than a third gateway paying
    // beside it (rules version 38).
    if (p->st == state::waiting && p->cancel_wait == a.gateway && !may_pay(*p, a.gateway)) {
      if (stays_while_may_pay_ && another_may_pay(*p, 0, p->routing_base))
        make_dead(d, *p, dead_reason::unanswered, ts);
      else route(d, *p, ts);
      return result::ok;
    }
    // The last gateway that might have paid a dead letter did not: its hold is released.
    if (p->st == state::dead && p->dead == dead_reason::unsettled_elsewhere && !another_may_pay(*p, 0)) {
      release(d, *p, false);
      return result::ok;
    }
    // A dead letter its withdrawn gateway left, that gateway back and saying it did not
    // pay: nobody may pay it now, so it goes on, as a cancel's `failed` sends a payout on
    // from the gateway it leaves (given up for this routing).
    // So does one left `unanswered` (rules version 38): by a gateway silent to a cancel
    // with a session up, or one whose cancel was answered failed while another gateway
    // could still pay; whichever of them answers last, the last `failed` sends it on.
    const bool left_behind =
        p->st == state::dead &&
        ((p->dead == dead_reason::withdrawn && withdrawn_dead_) || p->dead == dead_reason::unanswered);
    if (left_behind && !another_may_pay(*p, 0, stays_while_may_pay_ ? p->routing_base : 0)) {
      p->dead = dead_reason::none;
      if (std::find(p->given_up.begin(), p->given_up.end(), a.gateway) == p->given_up.end())
        p->given_up.push_back(a.gateway);
      route(d, *p, ts);
      return result::ok;
    }
    // One of them saying it did not pay its latest attempt while another still may: taken
    // (noted above), the dead letter waiting on the others (before version 38: late). An
    // answer for an older attempt is late, as ever.
    if (left_behind && stays_while_may_pay_ && !may_pay(*p, a.gateway)) return result::ok;
    return result::payout_answer_late;
  }
  took_failed(d, *p, a, ts, current);  // (in the backoff the timeout counted in the breaker)
  // Another gateway it went to, never answered, may still pay.
  if (another_may_pay(*p, a.gateway)) {
    make_dead(d, *p, dead_reason::unsettled_elsewhere, ts);
    return result::ok;
  }
  release(d, *p, false);
  return result::ok;
}

void desk_table::deposited(uint32_t gateway, const wire::transfer& t, uint64_t ts) {
  recon_counts& c = recon_at(gateway, ts, t.currency);
  ++c.deposits;
  gateways::add_amount(c.deposits_amount, t.amount);
}

recon_counts& desk_table::recon_at(uint32_t gateway, uint64_t ts, wire::currency_code currency) {
  return recon_[{gateway, uint32_t(ts / ns_per_day), currency}];
}

void desk_table::recon_drop_before(uint32_t day) {
  recon_.erase(recon_.begin(), recon_.lower_bound(recon_key{0, day, 0}));
}

std::vector<recon_row> desk_table::recon_rows_from(uint32_t first_day) const {
  std::vector<recon_row> out;
  for (auto it = recon_.lower_bound(recon_key{0, first_day, 0}); it != recon_.end(); ++it)
    out.push_back({it->first, it->second});
  return out;
}

std::vector<recon_row> desk_table::recon_rows_of(uint32_t gateway, uint64_t day_plus_one) const {
  std::vector<recon_row> out;
  auto it = day_plus_one == 0 ? recon_.begin() : recon_.lower_bound(recon_key{0, uint32_t(day_plus_one - 1), 0});
  for (; it != recon_.end() && (day_plus_one == 0 || it->first.day == day_plus_one - 1); ++it)
    if (it->first.gateway == gateway) out.push_back({it->first, it->second});
  return out;
}

uint64_t recon_row_key(const recon_key& k) {
  return uint64_t(k.gateway) << 44 | uint64_t(k.day & 0xFFFFF) << 24 | (k.currency & 0xFFFFFF);
}

std::vector<uint8_t> encode_recon(const recon_counts& c) {
  byte_writer w;
  for (uint64_t v : {c.deposits, c.deposits_amount, c.settled, c.settled_amount, c.failed, c.failed_amount,
                     c.cancelled, c.cancelled_amount, c.overpaid, c.overpaid_amount})
    w.put(v);
  return std::move(w.out);
}

bool decode_recon(uint64_t key, std::span<const uint8_t> bytes, recon_row* out, std::string* why) {
  byte_reader r{bytes};
  recon_row row;
  row.k.gateway = uint32_t(key >> 44);
  row.k.day = uint32_t((key >> 24) & 0xFFFFF);
  row.k.currency = uint32_t(key & 0xFFFFFF);
  for (uint64_t* v : {&row.c.deposits, &row.c.deposits_amount, &row.c.settled, &row.c.settled_amount, &row.c.failed,
                      &row.c.failed_amount, &row.c.cancelled, &row.c.cancelled_amount})
    *v = r.get<uint64_t>();
  if (bytes.size() == 10 * sizeof(uint64_t)) {  // 8: from before overpayments were counted
    row.c.overpaid = r.get<uint64_t>();
    row.c.overpaid_amount = r.get<uint64_t>();
  }
  if (r.short_read || r.at != bytes.size() || !wire::currency_valid(row.k.currency)) {
    *why = "reconciliation row " + std::to_string(key) + " is damaged";
    return false;
  }
  *out = row;
  return true;
}

void desk_table::chain_done(const wire::transfer& first, result r, uint64_t ts) {
  if (!emitted(first.id)) return;
  if (!hold(first.pending_id)) {
    if (first.code == code_settle) sweep_done(first, r, ts);
    return;
  }
  const auto [dp, pp] = held_payout(emitting_desk(first.id), first.pending_id.lo);
  if (!pp) return;
  desk& d = *dp;
  payout_entry& p = *pp;
  if (first.id.lo != p.chain_step || (p.st != state::settling && p.st != state::failing)) return;
  if (r == result::ok) {
    const resolution res = p.st == state::settling ? resolution::settled
                           : p.cancelling          ? resolution::cancelled
                                                   : resolution::failed;
    if (res == resolution::settled) {  // posted into the payout account: owed to the settlement account
      sweep& sw = d.sweeps[p.settlement];
      sw.owed += p.amount;
      touch(d);
      if (sw.step == 0 && sw.refusal == result::ok) start_sweep(d, p.settlement, sw);
    }
    resolve(d, p, res, ts);
    return;
  }
  p.refusal = r;
  if (p.st == state::settling) p.st = state::settle_refused;
  touch(d, p);
}

bool desk_table::waiting_for_a_gateway() const {
  for (const auto& [c, d] : desks_)
    for (const auto& [id, p] : d.payouts)
      if (p.st == state::waiting && p.wait_since != 0) return true;
  return false;
}

void desk_table::resume(uint64_t last_before, uint64_t resumed) {
  if (!reset_keeps_route_wait_ || resumed <= last_before) return;
  for (auto& [c, d] : desks_)
    for (auto& [id, p] : d.payouts)
      if (p.st == state::waiting && p.wait_since != 0) {
        p.wait_since = std::min(p.wait_since + (resumed - last_before), resumed);  // (it began before)
        touch(d, p);
      }
}

void desk_table::event(const wire::gateway_event& e, uint64_t ts) {
  if (e.kind == wire::gateway_event_kind::reset) {
    sessions_.clear();
    for (auto& [c, d] : desks_)
      for (auto& [id, p] : d.payouts)
        if (p.st == state::in_flight && !before_cancels_) {
          // Its gateway may have it: it gets it again when it comes back, or the answer
          // deadline (from now) passes and the payout goes on.
          touch(d, p);
          schedule(p, ts + timeout_ns(p.attempts.back().gateway));
        } else if (p.st == state::waiting && p.cancel_wait != 0 && !before_cancels_) {
          // Waiting for a gateway's answer to a cancel: still, from now.
          touch(d, p);
          schedule(p, ts + timeout_ns(p.cancel_wait));
        } else if (in_backoff(p) && reset_keeps_backoff_) {
          // Waiting out its backoff after a timeout at its gateway, which may have paid:
          // still that gateway's, which gets an answer timeout from now to come back (as
          // one in flight does) before retry_after_backoff moves it on.
          touch(d, p);
          schedule(p, std::max(p.due, ts + timeout_ns(p.attempts.back().gateway)));
        } else if (p.st == state::in_flight || p.st == state::waiting) {
          // Waiting for any gateway: a gateway coming up routes it. One that waited
          // already keeps its wait (moved by the downtime: resume) and is looked at
          // again shortly, as before the restart (rules_reset_keeps_route_wait).
          const bool kept = reset_keeps_route_wait_ && p.st == state::waiting && p.wait_since != 0;
          p.st = state::waiting;
          if (!kept) p.wait_since = ts;
          touch(d, p);
          schedule(p, reset_keeps_route_wait_ ? std::min(ts + route_poll_ns, p.wait_since + route_wait_max_ns)
                                              : ts + route_wait_max_ns);
        }
    return;
  }
  uint32_t& n = sessions_[e.gateway];
  const bool was_up = n > 0;
  if (e.kind == wire::gateway_event_kind::up) {
    ++n;
  } else if (n > 0) {
    --n;
  }
  const bool up = n > 0;
  if (n == 0) sessions_.erase(e.gateway);
  if (was_up == up) return;
  const gateways::gateway* g = registry_->find(e.gateway);
  // Desks in account order: what they decide is written in the order they decide it, and
  // the map's own order differs between live (desks made as holds come) and replay.
  std::vector<desk*> in_order;
  for (auto& [c, d] : desks_) in_order.push_back(&d);
  std::sort(in_order.begin(), in_order.end(), [](const desk* x, const desk* y) { return x->account < y->account; });
  for (desk* dp : in_order) {
    desk& d = *dp;
    std::vector<payout_entry*> to_route;
    for (auto& [id, p] : d.payouts) {
      if (up && p.st == state::waiting && p.cancel_wait == e.gateway) {
        cancel_at(p, e.gateway, latest_attempt_at(p, e.gateway));  // the cancel it waits on, again
      } else if (up && p.st == state::in_flight && p.attempts.back().gateway == e.gateway) {
        // The same instruction again, its deadline kept (one already passed: its timer,
        // later in this batch, moves it on; sent again now, it would be paid twice). A
        // gateway that can no longer answer for payouts (the payments role taken, its
        // sessions kept for another role) is told to cancel it instead: its deadline
        // makes the payout an operator's, and paid now it would be paid twice. (Given the
        // role back before the deadline, its `failed` to the cancel fails the payout, as
        // any `failed` of the attempt in flight does: the hold goes back, nothing paid.)
        if (g && (before_cancels_ || p.due > ts)) {
          if (before_cancels_ || answers(e.gateway)) send(d, p, *g, ts, false);
          else cancel_at(p, e.gateway, uint32_t(p.attempts.size()));
        }
      } else if (up && p.st == state::waiting && p.wait_since != 0 && p.cancel_wait == 0) {
        to_route.push_back(&p);
      } else if (!up && before_cancels_ && p.st == state::in_flight && p.attempts.back().gateway == e.gateway) {
        to_route.push_back(&p);  // the rule of the builds before cancels
      }
      // Down: its payouts in flight keep their answer deadline. The instruction may have
      // reached it; sending the payout elsewhere at once would invite a second payment.
    }
    // In payout id order: replay must route them in the same order (breaker probes).
    std::sort(to_route.begin(), to_route.end(), [](auto* a, auto* b) { return a->id < b->id; });
    for (auto* p : to_route) route(d, *p, ts);
    if (!up) continue;
    // Cancels it may not have had: payouts that left it (routed first, so that one routed
    // back to it gets its instruction alone), a page now and the rest a page at a time.
    cancel_pager& pg = cancel_pages_[{d.account, e.gateway}];
    pg.start = pg.after;
    pg.wrapped = false;
    send_cancel_page(d, e.gateway, pg, ts);
  }
}

void desk_table::send_cancel_page(desk& d, uint32_t gateway, cancel_pager& pg, uint64_t now) {
  // The run's payouts still to go, in two ranges: past the last sent (up to the highest,
  // or once wrapped up to where the run began), and from the lowest up to that start
  // (the wrap's). Only the page's own are sorted.
  std::vector<const payout_entry*> ahead, wrap;
  const auto consider = [&](const payout_entry& p) {
    // (Waiting on a cancel from it: sent at the opening.)
    const bool works_here = (p.st == state::in_flight || p.st == state::waiting) && !p.attempts.empty() &&
                            p.attempts.back().gateway == gateway &&
                            std::find(p.given_up.begin(), p.given_up.end(), gateway) == p.given_up.end();
    if (works_here || p.cancel_wait == gateway || p.settled_by == gateway || !may_pay(p, gateway)) return;
    if (p.id > pg.after && (!pg.wrapped || p.id <= pg.start)) ahead.push_back(&p);
    else if (!pg.wrapped && p.id <= pg.start) wrap.push_back(&p);
  };
  for (const auto& [id, p] : d.payouts) consider(p);
  for (const auto& [id, p] : d.watched) consider(p);
  size_t sent = 0;
  const auto take = [&](std::vector<const payout_entry*>& v) {
    const size_t k = std::min(v.size(), cancels_on_open_max - sent);
    std::partial_sort(v.begin(), v.begin() + std::ptrdiff_t(k), v.end(), [](auto* a, auto* b) { return a->id < b->id; });
    for (size_t i = 0; i < k; ++i)
      latest_attempts(*v[i], [&](const attempt& a, uint32_t n) {
        if (a.gateway == gateway) cancel_at(*v[i], a.gateway, n);
      });
    if (k > 0) pg.after = v[k - 1]->id;
    sent += k;
  };
  take(ahead);
  if (sent < cancels_on_open_max && !pg.wrapped && pg.start != 0) {
    pg.wrapped = true;  // past the highest: on from the lowest
    pg.after = 0;
    take(wrap);
  }
  pg.sent_at = now;
  // Pages remain while this one was full; a run that ended leaves nothing to go on from.
  const bool more = sent == cancels_on_open_max;
  if (more != pg.active) pagers_active_ += more ? 1 : -1;
  pg.active = more;
  if (!more) pg.after = pg.start;
}

uint64_t desk_table::next_deadline() const {
  uint64_t due = timers_.empty() ? UINT64_MAX : timers_.front().at;
  if (pagers_active_ == 0) return due;
  for (const auto& [key, pg] : cancel_pages_)
    if (pg.active && sessions_.count(key.second)) due = std::min(due, pg.sent_at + cancel_page_gap_ns);
  return due;
}

void desk_table::page_cancels(uint64_t now) {
  if (pagers_active_ == 0) return;
  for (auto& [key, pg] : cancel_pages_) {
    if (!pg.active || now < pg.sent_at + cancel_page_gap_ns) continue;
    const auto dit = desks_.find(key.first);
    if (!sessions_.count(key.second) || dit == desks_.end()) {
      pg.active = false;  // its sessions went: the next opening goes on from past its last page
      --pagers_active_;
      continue;
    }
    send_cancel_page(dit->second, key.second, pg, now);
  }
}

result desk_table::op(const wire::payout_op& o, uint64_t desk_account, uint64_t ts) {
  const auto [dp, p] = held_payout(desk_account, o.payout_id);
  if (!p) return result::payout_already_resolved;
  desk& d = *dp;
  // A dead letter a gateway was sent and never answered may have been paid there: routed
  // again or cancelled (its hold voided), it could be paid twice. The desk tells that
  // gateway to cancel, but does not wait for its answer as its own fallback does: the
  // operator checks with the gateway first, and says so (force).
  const auto unchecked = [&] {
    if (!ops_checked_ || (o.flags & wire::payout_op_flags::force) || p->st != state::dead) return false;
    return std::any_of(p->attempts.begin(), p->attempts.end(), [&](const attempt& a) { return may_pay(*p, a.gateway); });
  };
  if (o.kind == wire::payout_op_kind::cancel) {
    if (p->st == state::settle_refused) return result::payout_settled_elsewhere;
    if (p->st != state::dead) return result::payout_not_dead;
    if (unchecked()) return result::payout_may_be_paid;
    release(d, *p, true);
    return result::ok;
  }
  if (p->st == state::settle_refused) {
    settle(d, *p, p->settled_by, p->settlement);  // post again, under new ids
    return result::ok;
  }
  if (void_retry_ && p->st == state::failing && p->refusal != result::ok) {
    start_chain(d, *p, state::failing);  // void again, under new ids
    return result::ok;
  }
  if (p->st != state::dead) return result::payout_not_dead;
  if (unchecked()) return result::payout_may_be_paid;
  if (p->attempts.size() + attempts_max > attempts_kept_max) return result::payout_retries_exhausted;
  p->routing_base = uint32_t(p->attempts.size());
  p->given_up.clear();
  p->dead = dead_reason::none;
  p->wait_since = 0;
  route(d, *p, ts);
  return result::ok;
}

void desk_table::run_due(uint64_t now) {
  while (!timers_.empty() && timers_.front().at <= now) {
    std::pop_heap(timers_.begin(), timers_.end(), std::greater<>{});
    const timer t = timers_.back();
    timers_.pop_back();
    if (t.payout == 0) {  // refused sweeps whose retry fell due
      const auto dit = desks_.find(t.desk);
      if (dit == desks_.end()) continue;
      for (auto& [a, sw] : dit->second.sweeps)
        if (sw.step == 0 && sw.refusal != result::ok && sw.retry_at == t.at) start_sweep(dit->second, a, sw);
      continue;
    }
    const auto [dp, pp] = held_payout(t.desk, t.payout);
    if (!pp) {  // a resolved payout kept for late answers: kept long enough
      const auto [wd, wp] = watched_payout(t.desk, t.payout);
      if (wp && wp->due == t.at) unwatch(*wd, t.payout);
      continue;
    }
    if (pp->due != t.at) continue;  // a stale timer
    desk& d = *dp;
    payout_entry& p = *pp;
    const size_t tried = p.attempts.size();
    if (p.st == state::in_flight) {
      timed_out(d, p, now);
      timer_acted(d, p, timer_due::answer_timeout, tried, now);
    } else if (in_backoff(p)) {
      retry_after_backoff(d, p, now);
      timer_acted(d, p, timer_due::backoff_end, tried, now);
    } else if (p.st == state::waiting) {
      const timer_due why = p.cancel_wait != 0 ? timer_due::cancel_wait : timer_due::route_poll;
      if (p.cancel_wait != 0 && withdrawn_dead_ && !answers(p.cancel_wait))
        make_dead(d, p, dead_reason::withdrawn, now);  // asked to cancel, it can no longer say
      else if (p.cancel_wait != 0 && stays_while_may_pay_ && sessions(p.cancel_wait) > 0)
        make_dead(d, p, dead_reason::unanswered, now);  // it can hear, said nothing, may have paid
      else
        route(d, p, now);
      timer_acted(d, p, why, tried, now);
    }
  }
}

void desk_table::timer_acted(const desk& d, const payout_entry& p, timer_due why, size_t tried, uint64_t now) {
  if (!events_) return;
  timer_then then = timer_then::route_wait;
  uint32_t gateway = p.attempts.empty() ? 0 : p.attempts.back().gateway;
  if (p.st == state::dead) {
    then = timer_then::dead;
  } else if (p.attempts.size() > tried) {
    then = timer_then::sent;
  } else if (p.st == state::waiting && p.cancel_wait != 0) {
    then = timer_then::cancel_asked;
    gateway = p.cancel_wait;
  } else if (p.st == state::waiting && p.wait_since == 0) {
    then = timer_then::backoff;
  }
  // A look that found no route changes nothing but the time of the next.
  if (why == timer_due::route_poll && then == timer_then::route_wait) return;
  auto ev = wire::decided_event(wire::event_type::payout_timer, now, p.currency, p.wallet, d.account);
  ev.ref = {p.id, uint64_t(p.attempts.size())};
  ev.amount = p.amount;
  ev.code = uint16_t(why);
  ev.flags = uint16_t(then);
  ev.gateway = uint16_t(gateway);
  events_(std::move(ev));
}

void desk_table::emit(std::vector<wire::transfer>&& chain) {
  if (!emit_) return;  // replaying: the chain is owed, or a later record carries it
  if (chains_out_.empty() || chains_out_.back().size() + chain.size() > emit_group_max) chains_out_.emplace_back();
  auto& group = chains_out_.back();
  group.insert(group.end(), chain.begin(), chain.end());
}

void desk_table::flush() {
  recount();
  for (auto& group : chains_out_) emit_(std::move(group));
  chains_out_.clear();
  if (outbox_.empty()) return;
  if (instruct_) {
    for (auto& [g, list] : outbox_) instruct_(g, std::move(list));
  }
  outbox_.clear();
}

std::vector<std::vector<wire::transfer>> desk_table::chains_owed() const {
  std::vector<const payout_entry*> owed;
  for (const auto& [c, d] : desks_)
    for (const auto& [id, p] : d.payouts)
      // (A void the ledger refused waits for an operator's retry, as a refused post does.)
      if (p.st == state::settling || (p.st == state::failing && p.refusal == result::ok)) owed.push_back(&p);
  std::sort(owed.begin(), owed.end(), [](auto* a, auto* b) { return a->id < b->id; });
  std::vector<std::vector<wire::transfer>> out;
  for (const auto* p : owed) out.push_back(chain_of(*p));
  // Sweeps in flight, by desk then settlement account.
  std::vector<const desk*> ds;
  for (const auto& [a, d] : desks_) ds.push_back(&d);
  std::sort(ds.begin(), ds.end(), [](auto* a, auto* b) { return a->account < b->account; });
  for (const desk* d : ds)
    for (const auto& [a, sw] : d->sweeps)
      if (sw.step != 0) out.push_back({sweep_transfer(*d, a, sw)});
  return out;
}

// ---- recovery and checkpoints ----------------------------------------------------------

void desk_table::load_desk(desk&& d) {
  d.listed_dirty = false;
  const auto a = d.account;
  for (const auto& [s, sw] : d.sweeps)
    if (sw.retry_at != 0) add_timer({sw.retry_at, 0, a});
  desks_[a] = std::move(d);
}

bool desk_table::load_payout(payout_entry&& p, std::string* why) {
  const auto dit = desks_.find(p.desk);
  if (dit == desks_.end()) {
    *why = "payout " + std::to_string(p.id) + ": no desk " + std::to_string(desk_slot(p.desk)) + " for " +
           wire::currency_name(p.currency);
    return false;
  }
  if (p.chain_step >= dit->second.next_step) {
    *why = "payout " + std::to_string(p.id) + ": its chain's step is one its desk has not taken";
    return false;
  }
  if (p.chain_step != 0 && std::any_of(dit->second.sweeps.begin(), dit->second.sweeps.end(),
                                       [&](const auto& x) { return x.second.step == p.chain_step; })) {
    *why = "payout " + std::to_string(p.id) + ": its chain's step is a sweep's";
    return false;
  }
  p.listed_dirty = false;
  const uint64_t due = p.due;
  const bool kept = p.st == state::resolved;
  const uint64_t id = p.id;
  if (dit->second.payouts.count(id) || dit->second.watched.count(id)) {
    *why = "payout " + std::to_string(id) + " is stored twice";
    return false;
  }
  auto& to = kept ? dit->second.watched : dit->second.payouts;
  payout_entry& e = to.emplace(id, std::move(p)).first->second;
  e.counted_as = 0;
  e.recount_listed = false;
  if (!kept) count_as(dit->second, e);
  if (due != 0 && (e.st == state::in_flight || e.st == state::waiting || kept)) schedule(e, due);
  return true;
}

void desk_table::take_dirty(dirty_rows* out) {
  for (const auto& [c, id] : dirty_payouts_) {
    const auto dit = desks_.find(c);
    if (dit == desks_.end()) continue;
    auto& held = dit->second.payouts;
    auto& kept = dit->second.watched;
    payout_entry* p = nullptr;
    if (const auto it = held.find(id); it != held.end()) p = &it->second;
    else if (const auto k = kept.find(id); k != kept.end()) p = &k->second;
    if (!p) continue;  // resolved: in erased_
    p->listed_dirty = false;
    out->payouts.emplace_back(id, encode_payout(*p));
  }
  dirty_payouts_.clear();
  for (const auto& [c, id] : erased_) {
    const auto dit = desks_.find(c);
    if (dit != desks_.end() && (dit->second.payouts.count(id) || dit->second.watched.count(id)))
      continue;  // cannot be: ids are not reused
    out->payouts.emplace_back(id, std::vector<uint8_t>{});
  }
  erased_.clear();
  for (const auto c : dirty_desks_) {
    auto it = desks_.find(c);
    if (it == desks_.end()) continue;
    it->second.listed_dirty = false;
    out->desks.emplace_back(c, encode_desk(it->second));
  }
  dirty_desks_.clear();
}

size_t desk_table::memory_bytes() const {
  size_t b = timers_.capacity() * sizeof(timer);
  for (const auto& [c, d] : desks_) {
    b += sizeof d + d.breakers.size() * (sizeof(breaker) + 16) + d.sweeps.size() * (sizeof(sweep) + 48);
    for (const auto* m : {&d.payouts, &d.watched})
      for (const auto& [id, p] : *m)
        b += sizeof p + 32 + p.attempts.capacity() * sizeof(attempt) + p.given_up.capacity() * 4;
    b += d.counts.size() * (sizeof(desk::count_key) + sizeof(desk::held_figures) + 48) + d.held_ids.memory_bytes() +
         d.problem_ids.memory_bytes();
  }
  return b;
}

}  // namespace mesob::actors::payouts
