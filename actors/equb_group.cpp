#include "actors/equb_group.hpp"

#include <algorithm>
#include <cstring>
#include <functional>

#include "actors/byte_codec.hpp"
#include "actors/trading.hpp"
#include "wire/assert.hpp"

namespace mesob::actors::equb {

using wire::equb_op_kind;

namespace {

// The most transfers one obligation can hold: a contribution's debt forwards (one per
// missed round), an ended group's repayment (those, and a dividend per seat), a round's
// close (cover, commission, fee, the recipient's debts, payout, a dividend per seat), a
// dissolution (a refund and a dividend per seat).
constexpr uint32_t chain_max = 2 * seats_max + 16;
// Every step a group can need in its whole life without retries and leaves: at most
// seats_max closes of at most 2 * seats_max + 4 transfers, at most seats_max^2 debts
// each forwarded once, a dissolve of seats_max refunds. Retries and leaves (which a
// client can repeat) only take steps while this many stay free, so no decision the
// group cannot refuse (a round closing on its deadline) ever finds the steps gone.
constexpr uint32_t life_steps_before_v26 = 3 * seats_max * seats_max + 6 * seats_max + 16;
// From rules version 26 repaid group parts of debts are paid to the seats: a dividend
// per seat at each close (counted above only for the last), at each of at most
// seats_max repayments after the group ended, and at a dissolution.
constexpr uint32_t life_steps_before_v41 = life_steps_before_v26 + 2 * seats_max * seats_max + seats_max;
// From rules version 41 a close whose cover backs part of its dividend pays that part to
// the seats once its chain is carried: a dividend per seat at each close.
constexpr uint32_t life_steps = life_steps_before_v41 + seats_max * seats_max;
static_assert(life_steps < steps_max / 2);
// Version 5: an obligation held back may be a close's dividends (rules version 41),
// which a reader of version 4 refuses.
constexpr uint32_t entry_version = 5;
// A tombstone's first word (an entry's is its version, 1..5).
constexpr uint32_t retired_marker = 0xDEAD0001u;

uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }
using heap_cmp = std::greater<std::pair<uint64_t, uint64_t>>;

// The engine's own accounts (payout desks', trading's) move money for their owners only.
// A group naming one would move money through them in its chains, which the checks of
// clients' transfers never see: refused as a client's transfer touching one is.
result engine_account(uint64_t id) {
  if (payouts::payout_account(id)) return result::payout_account_reserved;
  if (trading::trading_account(id)) return result::trading_account_reserved;
  return result::ok;
}

// Whether `n` more steps may go to a retry or a leave, by the rules of version `rules`.
bool optional_steps(const group_entry& e, uint64_t n, uint16_t rules) {
  const uint64_t life = rules >= rules_cover_backs_credits ? life_steps
                        : rules >= rules_bid_discount_owed  ? life_steps_before_v41
                                                            : life_steps_before_v26;
  return uint64_t(e.next_step) + n + life <= steps_max;
}

}  // namespace

wire::result new_group_refusal(const group_config& c, uint16_t rules) {
  if (const result r = check_config(c); r != result::ok) return r;
  if (rules >= rules_period_cap && (c.period_ns > period_max_ns || c.grace_ns > period_max_ns))
    return result::period_too_long;
  if (rules >= rules_grace_within_period && c.grace_ns >= c.period_ns) return result::grace_not_within_period;
  if (rules >= rules_group_lifetime_sums) {
    if (c.period_ns < period_min_ns) return result::period_too_short;
    if (c.contribution + c.late_penalty > seat_round_max) return result::amounts_too_large;  // (each below 2^62)
  }
  if (rules >= rules_penalty_within_contribution && c.late_penalty > c.contribution)
    return result::late_penalty_past_contribution;
  if (rules >= rules_equb_codes && c.policy == rotation::bidding && c.commission_bp > 0 && c.commission_cap == 0)
    return result::commission_cap_missing;
  // The escrow takes the group's id: not one of the engine's (a desk's payout account or
  // a trading account another currency or shard count will need; before version 9 a
  // group could take one, and the engine's account was then never made).
  if (rules >= rules_group_ids_reserved &&
      (payouts::payout_account(c.group_id) || trading::reserved_key(c.group_id)))
    return result::id_reserved;
  if (rules >= rules_ended_groups)
    for (const uint64_t a : {c.fee_account_id, c.guarantor_account_id, c.organizer_account_id})
      if (const result r = engine_account(a); r != result::ok) return r;
  return result::ok;
}

group_config config_of(const wire::equb_op& op) {
  group_config c;
  c.group_id = op.group_id;
  c.escrow_account_id = op.group_id;
  c.fee_account_id = op.fee_account_id;
  c.guarantor_account_id = op.guarantor_account_id;
  c.organizer_account_id = op.organizer_account_id;
  c.currency = op.currency;
  c.contribution = op.contribution;
  c.period_ns = op.period_ns;
  c.grace_ns = op.grace_ns;
  c.late_penalty = op.late_penalty;
  c.fee_bp = op.fee_bp;
  c.policy = rotation(op.rotation);
  c.max_discount_bp = op.max_discount_bp;
  c.commission_bp = op.commission_bp;
  c.commission_cap = op.commission_cap;
  c.on_default = default_policy(op.default_policy);
  return c;
}

uint64_t number_of(const wire::equb_op& op) {
  uint64_t n = 0;
  std::memcpy(&n, op.seed, sizeof n);  // little-endian (wire/types.cpp checks the platform)
  return n;
}

void set_number(wire::equb_op& op, uint64_t number) { std::memcpy(op.seed, &number, sizeof number); }

wire::result check_op_fields(const wire::equb_op& op) {
  if (op.group_id == 0) return result::id_must_not_be_zero;
  if (uint16_t(op.kind) == 0 || uint16_t(op.kind) > wire::equb_op_kind_max || op.reserved != 0 || op.reserved2 != 0)
    return result::equb_op_invalid;
  const bool create = op.kind == equb_op_kind::create;
  const bool config_set = op.fee_account_id || op.guarantor_account_id || op.organizer_account_id ||
                          op.contribution || op.period_ns || op.grace_ns || op.late_penalty || op.commission_cap ||
                          op.currency || op.fee_bp || op.max_discount_bp || op.commission_bp || op.rotation ||
                          op.default_policy;
  if (!create && config_set) return result::equb_op_invalid;
  const bool payout_to = op.kind == equb_op_kind::payout_to;
  const bool replace = op.kind == equb_op_kind::replace_account;
  const bool write_off = op.kind == equb_op_kind::write_off;
  const bool seat_ops = op.kind == equb_op_kind::leave || op.kind == equb_op_kind::bid || payout_to || write_off;
  if (!seat_ops && op.seat != 0) return result::equb_op_invalid;
  if (!seat_ops && !replace && op.wallet != 0) return result::equb_op_invalid;
  if (op.kind != equb_op_kind::bid && op.round != 0) return result::equb_op_invalid;
  if (op.kind != equb_op_kind::bid && !payout_to && !replace && !write_off && op.amount != 0)
    return result::equb_op_invalid;
  if (replace && (op.wallet == 0 || op.amount == 0)) return result::id_must_not_be_zero;
  if (!payout_to && op.rail != 0) return result::equb_op_invalid;
  if (payout_to) {  // amount is the destination
    if (op.rail > gateways::rail_max) return result::rail_invalid;
    if (op.rail == 0 && op.amount != 0) return result::equb_op_invalid;
    if (op.rail != 0 && op.amount == 0) return result::payout_destination_missing;
  }
  // The seed is the engine's to fill: start's whole, create's first 8 bytes (the
  // number); every other operation leaves it zero.
  const size_t engine_bytes = op.kind == equb_op_kind::start ? sizeof op.seed
                              : op.kind == equb_op_kind::create ? sizeof(uint64_t) : 0;
  for (size_t i = engine_bytes; i < sizeof op.seed; ++i)
    if (op.seed[i] != 0) return result::equb_op_invalid;
  return result::ok;
}

wire::equb_op create_op_of(const group_config& c) {
  wire::equb_op op;
  op.kind = wire::equb_op_kind::create;
  op.group_id = c.group_id;
  op.fee_account_id = c.fee_account_id;
  op.guarantor_account_id = c.guarantor_account_id;
  op.organizer_account_id = c.organizer_account_id;
  op.contribution = c.contribution;
  op.period_ns = c.period_ns;
  op.grace_ns = c.grace_ns;
  op.late_penalty = c.late_penalty;
  op.commission_cap = c.commission_cap;
  op.currency = c.currency;
  op.fee_bp = c.fee_bp;
  op.max_discount_bp = c.max_discount_bp;
  op.commission_bp = c.commission_bp;
  op.rotation = uint8_t(c.policy);
  op.default_policy = uint8_t(c.on_default);
  return op;
}

wire::group_item to_item(const group_entry& e) {
  const group_state& g = e.g;
  const group_config& c = g.cfg;
  wire::group_item it;
  it.config = create_op_of(c);
  set_number(it.config, g.number);
  it.phase = uint8_t(g.ph);
  it.round = g.round;
  it.bids = g.bids;
  it.next_step = e.next_step;
  it.created_at = e.created_at;
  it.started_at = g.started_at;
  it.shift_ns = g.shift_ns;
  if (g.ph == phase::active) {
    it.round_deadline = round_deadline(g);
    it.round_close = round_close(g);
  }
  it.pot = g.pot;
  it.escrow = g.escrow;
  it.held = g.held;
  it.escrow_expected = escrow_expected(e);
  if (c.policy == rotation::lottery && g.ph != phase::forming) {
    it.commitment.assign(g.commitment.begin(), g.commitment.end());
    it.last_revealed.assign(g.last_revealed.begin(), g.last_revealed.end());
  }
  for (const auto& s : g.seats) {
    wire::group_seat_item si;
    si.wallet = s.wallet;
    si.paid_amount = s.paid_amount;
    si.credit = s.credit;
    si.bid = s.bid;
    uint64_t to_group = 0;
    for (const auto& d : s.debts) {
      si.debt_total += d.amount;
      to_group += d.group_part;
    }
    si.received_round = s.received_round;
    si.debts = uint32_t(s.debts.size());
    si.paid = s.paid;
    si.payout_rail = s.payout_rail;
    it.seats.push_back(si);
    it.destinations.push_back(s.destination);
    it.debts_to_group.push_back(to_group);
  }
  for (const auto& h : e.history) {
    wire::group_round_item ri;
    ri.round = h.round;
    ri.seat = h.seat;
    std::copy(h.revealed.begin(), h.revealed.end(), ri.revealed);
    it.history.push_back(ri);
  }
  for (const auto& o : e.owed)
    for (size_t i = 0; i < o.transfers.size(); ++i) {
      const money& m = o.transfers[i];
      wire::group_payment_item pi;
      pi.debit_account_id = m.debit_account_id;
      pi.credit_account_id = m.credit_account_id;
      pi.amount = m.amount;
      pi.step = o.first_step + uint32_t(i);
      pi.refusal = uint32_t(o.refusal);
      pi.purpose = uint8_t(m.why);
      pi.refused = o.refused;
      pi.waits_for_cover = o.waits_for != 0 ? o.waits_for : o.waits_too;
      it.owed.push_back(pi);
    }
  return it;
}

size_t item_bytes(const group_entry& e) {
  size_t owed = 0, debts = 0;
  for (const auto& o : e.owed) owed += o.transfers.size();
  for (const auto& s : e.g.seats) debts += s.debts.size();
  return 512 + e.g.seats.size() * std::max(sizeof(wire::group_seat_item) + 2 * sizeof(uint64_t), sizeof(seat)) +
         debts * sizeof(debt) + e.history.size() * std::max(sizeof(wire::group_round_item), sizeof(group_entry::round_result)) +
         owed * std::max(sizeof(wire::group_payment_item), sizeof(money));
}

uint64_t escrow_expected(const group_entry& e) {
  unsigned __int128 v = e.g.escrow;
  const uint64_t escrow = e.g.cfg.escrow_account_id;
  for (const auto& o : e.owed)
    for (const auto& m : o.transfers) {
      if (m.debit_account_id == escrow) v += m.amount;
      if (m.credit_account_id == escrow) v -= m.amount;
    }
  return uint64_t(v);
}

std::vector<wire::transfer> chain_of(const group_entry& e, const obligation& o, uint32_t shards) {
  std::vector<wire::transfer> chain;
  chain.reserve(o.transfers.size());
  const wire::currency_code c = e.g.cfg.currency;
  for (size_t i = 0; i < o.transfers.size(); ++i) {
    const money& m = o.transfers[i];
    const uint32_t step = o.first_step + uint32_t(i);
    wire::transfer t;
    t.id = emitted_id(e.g.cfg.group_id, step);
    t.debit_account_id = m.debit_account_id;
    t.credit_account_id = m.credit_account_id;
    t.amount = m.amount;
    t.currency = c;
    t.user_data = e.g.cfg.group_id;
    t.code = uint16_t(emitted_code_base + uint16_t(m.why));
    t.flags = i + 1 < o.transfers.size() ? wire::transfer_flags::linked : 0;
    if (m.why == purpose::payout_out) {  // a payout hold, as engine::payouts makes one
      t.id = payouts::hold_id(group_payout_id(e.g.number, step));
      t.credit_account_id = payouts::desk_account_for(c, shard_of(m.debit_account_id, shards), shards);
      t.user_data = m.destination;
      t.code = m.rail;
      t.flags |= wire::transfer_flags::pending;
    }
    chain.push_back(t);
  }
  return chain;
}

group_entry* group_table::find(uint64_t id) {
  auto it = groups_.find(id);
  return it == groups_.end() ? nullptr : &it->second;
}

const group_entry* group_table::find(uint64_t id) const {
  auto it = groups_.find(id);
  return it == groups_.end() ? nullptr : &it->second;
}

void group_table::touch(group_entry& e) {
  if (e.listed_dirty) return;
  e.listed_dirty = true;
  dirty_.push_back(e.g.cfg.group_id);
}

void group_table::schedule(const group_entry& e) {
  if (e.g.ph != phase::active) return;
  // A round that closed early (every seat paid) leaves its entries until their time,
  // which may be years on, and its group may end and retire meanwhile: past what the
  // groups held could have live (two each) twice over and 4,096 more, the heap is made
  // again from the current rounds, as load() makes it (close_due passes stale entries
  // over: no close moves). Before, a group paid through in minutes left two entries a
  // round, whatever groups_max said.
  if (deadlines_.size() >= 4 * groups_.size() + 4096) return schedule_all();
  // The deadline too (close_due passes over it): the engine ticks when it passes, so the
  // log shows the engine was up then, and an outage after it does not move it (resume).
  deadlines_.emplace_back(round_deadline(e.g), e.g.cfg.group_id);
  std::push_heap(deadlines_.begin(), deadlines_.end(), heap_cmp{});
  if (e.g.cfg.on_default == default_policy::hold_round) return;  // closes only when every seat paid
  deadlines_.emplace_back(round_close(e.g), e.g.cfg.group_id);
  std::push_heap(deadlines_.begin(), deadlines_.end(), heap_cmp{});
}

void group_table::owe(group_entry& e, std::vector<money>&& m, uint32_t covers_round) {
  if (m.empty()) return;
  obligation o;
  o.first_step = e.next_step;
  o.transfers = std::move(m);
  if (rules_ >= rules_cover_forwards_wait &&
      std::any_of(o.transfers.begin(), o.transfers.end(), [](const money& x) { return x.why == purpose::cover; }))
    o.covers_round = covers_round;
  e.next_step += uint32_t(o.transfers.size());
  MESOB_ASSERT(e.next_step <= steps_max);
  if (emit_) emit_(chain_of(e, o, shards_));
  e.owed.push_back(std::move(o));
}

void group_table::owe_apart(group_entry& e, std::vector<money>&& m) {
  if (rules_ < rules_refunds_apart) return owe(e, std::move(m));
  const bool capped = rules_ >= rules_equb_forwards_apart;
  size_t k = 0;
  for (; k < m.size() && !(capped && e.owed.size() >= owed_apart_max); ++k) owe(e, std::vector<money>{m[k]});
  if (k < m.size()) owe(e, std::vector<money>(m.begin() + ptrdiff_t(k), m.end()));  // past owed_apart_max
}

void group_table::owe_held(group_entry& e, std::vector<outcome::held_forward>&& held) {
  // In the order they were decided, one obligation a transfer (rules_equb_forwards_apart,
  // while the group owes fewer than owed_apart_max) or, before, one per pair of rounds
  // waited for (the first not yet owed, with every later one of its pair).
  std::vector<bool> taken(held.size());
  for (size_t i = 0; i < held.size(); ++i) {
    if (taken[i]) continue;
    const bool apart = rules_ >= rules_equb_forwards_apart && e.owed.size() < owed_apart_max;
    obligation o;
    o.first_step = e.next_step;
    o.waits_for = held[i].round;
    o.waits_too = held[i].funded_by;
    for (size_t j = i; j < held.size() && !(apart && j > i); ++j)
      if (!taken[j] && held[j].round == o.waits_for && held[j].funded_by == o.waits_too) {
        o.transfers.push_back(held[j].m);
        taken[j] = true;
      }
    e.next_step += uint32_t(o.transfers.size());
    MESOB_ASSERT(e.next_step <= steps_max);
    e.owed.push_back(std::move(o));
  }
}

std::vector<uint32_t> group_table::uncovered(const group_entry& e) const {
  std::vector<uint32_t> rounds;
  if (rules_ < rules_cover_forwards_wait) return rounds;
  for (const auto& o : e.owed)
    if (o.covers_round != 0) rounds.push_back(o.covers_round);
  return rounds;
}

// A refusal's code as the rules of the record decide it: before rules_round_closed_codes,
// round_closed was round_already_paid and nothing_owed group_not_active.
wire::result group_table::as_decided(wire::result r) const {
  if (rules_ >= rules_round_closed_codes) return r;
  if (r == result::round_closed) return result::round_already_paid;
  if (r == result::nothing_owed) return result::group_not_active;
  return r;
}

wire::result group_table::verdict(const wire::transfer& t, uint64_t ts) const {
  const group_entry* e = find(t.credit_account_id);
  if (!e) return result::group_not_found;
  const auto round = uint32_t(t.user_data >> 32), seat = uint32_t(t.user_data);
  const group_state& g = e->g;
  if (round == 0) {  // a join: the deposit is round 1's contribution
    if (seat != 0) return rules_ >= rules_equb_codes ? result::equb_op_invalid : result::not_a_member;
    if (const result r = can_join(g, t.debit_account_id); r != result::ok) return r;
    if (t.currency != g.cfg.currency) return result::wrong_currency;
    if (t.amount != g.cfg.contribution) return result::wrong_amount;
    return result::ok;
  }
  if (ended(g) && rules_ >= rules_ended_groups)
    return as_decided(can_repay(g, seat, t.debit_account_id, round, t.amount, t.currency));
  return as_decided(can_contribute(g, seat, t.debit_account_id, round, t.amount, t.currency, ts));
}

void group_table::paid(const wire::transfer& t, uint64_t ts) {
  group_entry* e = find(t.credit_account_id);
  MESOB_ASSERT(e != nullptr);
  const auto round = uint32_t(t.user_data >> 32), seat = uint32_t(t.user_data);
  touch(*e);
  if (round == 0) {
    const outcome o = join(e->g, t.debit_account_id);
    MESOB_ASSERT(o.code == result::ok);
    return;
  }
  if (ended(e->g)) {  // a seat's debts, paid after the group ended (its verdict took it)
    outcome o = repay(e->g, seat, t.debit_account_id, round, t.amount, t.currency, uncovered(*e));
    MESOB_ASSERT_MSG(o.code == result::ok && !o.transfers.empty(), std::string(result_name(o.code)).c_str());
    o.transfers.erase(o.transfers.begin());  // the payment itself: the ledger carried it
    owe_apart(*e, std::move(o.transfers));  // forwards of money the escrow now holds
    owe_apart(*e, std::move(o.shared));     // apart from the forwards
    owe_held(*e, std::move(o.held));
    return;
  }
  const bool late = ts > round_deadline(e->g);
  outcome o = contribute(e->g, seat, t.debit_account_id, round, t.amount, t.currency, ts, uncovered(*e));
  MESOB_ASSERT_MSG(o.code == result::ok && !o.transfers.empty(), std::string(result_name(o.code)).c_str());
  if (late && events_) {
    auto ev = wire::decided_event(wire::event_type::equb_late, ts, e->g.cfg.currency, e->g.cfg.group_id,
                                  t.debit_account_id);
    ev.ref = {round, seat};
    ev.amount = e->g.cfg.late_penalty;
    events_(std::move(ev));
  }
  o.transfers.erase(o.transfers.begin());  // the payment itself: the ledger carried it
  MESOB_ASSERT(o.shared.empty());  // (a contribution's group parts are held until the close)
  if (rules_ >= rules_equb_forwards_apart) owe_apart(*e, std::move(o.transfers));  // the debts' forwards
  else owe(*e, std::move(o.transfers));
  owe_held(*e, std::move(o.held));
  if (round_due(e->g, ts)) after_round(*e, ts);
}

void group_table::after_round(group_entry& e, uint64_t now) {
  const uint32_t round = e.g.round;
  std::vector<uint64_t> owed_before;
  if (events_)
    for (const auto& s : e.g.seats) {
      uint64_t d = 0;
      for (const auto& x : s.debts) d += x.amount;
      owed_before.push_back(s.paid ? UINT64_MAX : d);  // UINT64_MAX: paid, no miss
    }
  const uint64_t shift_before = e.g.shift_ns;
  outcome o = close_round(e.g, now, rules_ >= rules_credits_pay, rules_ >= rules_default_penalty,
                          rules_ >= rules_held_round_moves_schedule, rules_ >= rules_bid_discount_owed,
                          rules_ >= rules_cover_backs_credits, uncovered(e), rules_ >= rules_no_debt_to_itself);
  MESOB_ASSERT(o.code == result::ok);
  e.history.push_back({round, o.recipient_seat, o.revealed});
  if (events_) {
    const uint64_t group = e.g.cfg.group_id;
    for (uint32_t i = 0; i < e.g.seats.size() && i < owed_before.size(); ++i) {
      if (owed_before[i] == UINT64_MAX) continue;
      auto ev = wire::decided_event(wire::event_type::equb_missed, now, e.g.cfg.currency, group, e.g.seats[i].wallet);
      ev.ref = {round, i};
      for (const auto& x : e.g.seats[i].debts) ev.amount += x.amount;
      events_(std::move(ev));
    }
    auto ev = wire::decided_event(wire::event_type::equb_round_closed, now, e.g.cfg.currency, group,
                                  o.recipient_seat < e.g.seats.size() ? e.g.seats[o.recipient_seat].wallet : 0);
    ev.code = uint16_t(round);
    ev.flags = uint16_t(o.recipient_seat);
    static_assert(sizeof ev.id + sizeof ev.ref == sizeof o.revealed);
    std::memcpy(&ev.id, o.revealed.data(), sizeof ev.id);
    std::memcpy(&ev.ref, o.revealed.data() + sizeof ev.id, sizeof ev.ref);
    events_(std::move(ev));
    if (e.g.shift_ns != shift_before) {  // a held round closed past its close: the schedule moved
      auto moved = wire::decided_event(wire::event_type::equb_rescheduled, now, e.g.cfg.currency, group);
      moved.code = uint16_t(e.g.round);
      moved.amount = e.g.shift_ns - shift_before;
      moved.ref = {round_deadline(e.g), round_close(e.g)};
      events_(std::move(moved));
    }
    if (e.g.ph == phase::completed) {
      auto done = wire::decided_event(wire::event_type::equb_completed, now, e.g.cfg.currency, group);
      done.code = uint16_t(round);
      events_(std::move(done));
    }
  }
  owe(e, std::move(o.transfers), round);
  owe_apart(e, std::move(o.shared));  // group parts repaid: money the escrow holds
  owe_held(e, std::move(o.held));
  schedule(e);
  if (ended(e.g)) ended_now(e, now);
}

uint64_t legacy_retire_at(const group_entry& e) {
  const uint64_t end = e.g.started_at == 0 ? e.created_at
                                           : deadline_after(add_sat(e.g.started_at, e.g.shift_ns), e.g.seats.size(),
                                                            e.g.cfg.period_ns, e.g.cfg.grace_ns);
  return add_sat(std::max(end, e.created_at), retire_after_ns);
}

void group_table::ended_now(group_entry& e, uint64_t now) {
  // Ended by older rules: the time every recovery path computes alike (a snapshot of an
  // older build keeps no time).
  e.retire_at = rules_ >= rules_groups_retire ? add_sat(now, retire_after_ns) : legacy_retire_at(e);
  retires_.emplace_back(e.retire_at, e.g.cfg.group_id);
  std::push_heap(retires_.begin(), retires_.end(), heap_cmp{});
}

bool group_table::settled(const group_entry& e) {
  if (!ended(e.g) || !e.owed.empty() || e.g.escrow != 0 || escrow_expected(e) != 0) return false;
  for (const auto& st : e.g.seats)
    if (!st.debts.empty() || st.credit != 0) return false;
  return true;
}

void group_table::close_due(uint64_t now) {
  while (!deadlines_.empty() && deadlines_.front().first < now) {
    const auto [at, id] = deadlines_.front();
    std::pop_heap(deadlines_.begin(), deadlines_.end(), heap_cmp{});
    deadlines_.pop_back();
    group_entry* e = find(id);
    // Only the entry of the group's current close closes it, in that close's order: a
    // deadline's entry, or a stale one (the round closed early with every seat paid, the
    // group ended or was moved), is passed over. Rounds so close in the same order live
    // and after a snapshot's load, which keeps no stale entries.
    if (!e || e->g.ph != phase::active || round_close(e->g) != at || !round_due(e->g, now)) continue;
    touch(*e);
    after_round(*e, now);
  }
  if (rules_ < rules_groups_retire) return;
  for (uint32_t n = 0; n < retires_per_batch_max && !retires_.empty() && retires_.front().first < now;) {
    const auto [at, id] = retires_.front();
    std::pop_heap(retires_.begin(), retires_.end(), heap_cmp{});
    retires_.pop_back();
    auto it = groups_.find(id);
    if (it == groups_.end() || it->second.retire_at != at) continue;  // stale
    group_entry& e = it->second;
    ++n;
    const uint32_t status_seq = settled(e) && retire_ ? retire_(e) : 0;
    if (status_seq == 0) {  // something is still owed: looked at again later
      touch(e);
      ended_now(e, now);
      continue;
    }
    if (events_) {
      auto ev = wire::decided_event(wire::event_type::equb_retired, now, e.g.cfg.currency, id);
      ev.ref = {e.g.number, uint64_t(e.history.size())};
      events_(std::move(ev));
      auto closed = wire::decided_event(wire::event_type::account_status, now, e.g.cfg.currency, id);
      closed.code = uint16_t(wire::account_status::closed);
      closed.amount = status_seq;
      events_(std::move(closed));
    }
    retired_rows_.push_back({id, e.g.number, now});
    ++retired_count_;
    groups_.erase(it);
  }
}

void group_table::drop_ended() {
  while (!deadlines_.empty()) {
    const group_entry* e = find(deadlines_.front().second);
    if (e && e->g.ph == phase::active) return;
    std::pop_heap(deadlines_.begin(), deadlines_.end(), heap_cmp{});
    deadlines_.pop_back();
  }
}

void group_table::resume(uint64_t last_before, uint64_t resumed) {
  // In id order: the events come out the same live and in replay, whatever order the
  // table was filled in.
  std::vector<uint64_t> ids;
  for (const auto& [id, e] : groups_)
    if (e.g.ph == phase::active) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  bool moved = false;
  for (const uint64_t id : ids) {
    group_entry& e = groups_.at(id);
    const uint64_t added = reschedule(e.g, last_before, resumed);
    if (added == 0) continue;
    moved = true;
    touch(e);
    if (events_) {
      auto ev = wire::decided_event(wire::event_type::equb_rescheduled, resumed, e.g.cfg.currency, id);
      ev.code = uint16_t(e.g.round);
      ev.amount = added;
      ev.ref = {round_deadline(e.g), round_close(e.g)};
      events_(std::move(ev));
    }
  }
  if (!moved) return;
  // The moved groups' old entries are stale: the heap again, as load() makes it, so that
  // due() asks for no tick that would close nothing.
  schedule_all();
}

void group_table::schedule_all() {
  deadlines_.clear();
  for (const auto& [id, e] : groups_) schedule(e);
}

void group_table::chain_done(const wire::transfer& first, wire::result r) {
  group_entry* e = find(first.user_data);
  if (!e || !reserved_id(first.id) || first.id.lo != e->g.cfg.group_id) return;
  const uint32_t step = uint32_t(first.id.hi & (steps_max - 1));
  auto it = std::find_if(e->owed.begin(), e->owed.end(), [&](const obligation& o) { return o.first_step == step; });
  if (it == e->owed.end()) return;  // not an obligation's first transfer
  touch(*e);
  if (r == result::ok) {
    const uint32_t covered = it->covers_round;
    uint64_t payer = 0;
    for (const auto& m : it->transfers)
      if (m.why == purpose::cover) payer = m.debit_account_id;
    if (it->refused) --refused_;  // (a refused one is not in flight: not expected)
    e->owed.erase(it);
    if (covered == 0) return;
    // The cover is in escrow: its round's debts are owed to the account that paid it (a
    // guarantor replaced while it was in flight is not repaid another's cover), and the
    // forwards held back for it go now (those waiting for no other), to that account.
    for (auto& s : e->g.seats)
      for (auto& d : s.debts)
        if (d.round == covered && d.creditor_account_id != 0) d.creditor_account_id = payer;
    if (rules_ >= rules_equb_forwards_apart) forgive_debts_to_itself(e->g);  // the payer a seat's own wallet
    for (auto& o : e->owed) {
      if (!held_back(o) || (o.waits_for != covered && o.waits_too != covered)) continue;
      if (o.waits_for == covered) {
        o.waits_for = 0;
        for (auto& m : o.transfers) m.credit_account_id = payer;
      }
      if (o.waits_too == covered) o.waits_too = 0;
      if (!held_back(o) && emit_) emit_(chain_of(*e, o, shards_));
    }
  } else {
    if (!it->refused) ++refused_;
    it->refused = true;
    it->refusal = r;
  }
}

wire::result group_table::execute(const wire::equb_op& op, uint64_t ts,
                                  const std::function<bool(const wire::account&)>& make_escrow, uint64_t groups_max,
                                  bool escrow_room) {
  // An unknown kind by the rules before (the sequencer's field check refused it then,
  // before the group was looked for).
  if (op.kind == equb_op_kind::write_off && rules_ < rules_equb_write_off) return result::equb_op_invalid;
  group_entry* e = find(op.group_id);
  if (op.kind == equb_op_kind::create) {
    const group_config c = config_of(op);
    // The cap on periods: records of versions 5 and 6 refused a create over it before
    // anything else (at the sequencer); since, a create repeating an existing group's
    // config (a group made before the cap) is ok.
    const bool too_long = rules_ >= rules_period_cap && (c.period_ns > period_max_ns || c.grace_ns > period_max_ns);
    if (too_long && rules_ < rules_ended_groups) return result::period_too_long;
    if (const result r = check_config(c); r != result::ok) return r;
    if (e) {
      const wire::equb_op asked = create_op_of(c), held = create_op_of(e->g.cfg);
      return std::memcmp(&asked, &held, sizeof asked) == 0 ? result::ok : result::exists_with_different_fields;
    }
    if (const result r = new_group_refusal(c, rules_); r != result::ok) return r;
    if (rules_ >= rules_groups_retire && account_taken_ && account_taken_(op.group_id))
      return result::group_account_exists;  // a retired group's id, say: taken for good
    if (groups_.size() >= groups_max) return result::groups_full;
    if (!escrow_room) return result::accounts_full;
    wire::account escrow;
    escrow.id = op.group_id;
    escrow.currency = op.currency;
    escrow.kind = wire::account_kind::group_escrow;
    escrow.flags = wire::account_flags::debits_must_not_exceed_credits;
    escrow.timestamp = ts;
    if (!make_escrow(escrow)) return result::group_account_exists;
    group_entry fresh;
    fresh.g = make_group(c);
    fresh.g.number = number_of(op);
    fresh.created_at = ts;
    touch(groups_.emplace(op.group_id, std::move(fresh)).first->second);
    return result::ok;
  }
  if (!e) return result::group_not_found;
  group_state& g = e->g;
  outcome o;
  switch (op.kind) {
    case equb_op_kind::create: break;
    case equb_op_kind::start: {
      seed secret;
      std::copy(std::begin(op.seed), std::end(op.seed), secret.begin());
      o = start(g, ts, secret, rules_ >= rules_round_two_one_period);
      if (o.code != result::ok) return o.code;
      touch(*e);
      // Round 1 is paid by the deposits: it pays out at once.
      if (round_due(g, ts)) after_round(*e, ts);
      else schedule(*e);
      return result::ok;
    }
    case equb_op_kind::leave:
      if (!optional_steps(*e, 1, rules_)) return result::group_steps_exhausted;
      o = leave(g, op.seat, op.wallet, rules_ >= rules_leave_last_seat);
      break;
    case equb_op_kind::bid:
      if (op.round == 0 && rules_ >= rules_equb_codes) return result::equb_op_invalid;  // no group has a round 0
      o = bid(g, op.seat, op.wallet, op.round, op.amount);
      o.code = as_decided(o.code);
      break;
    case equb_op_kind::payout_to: {
      if (const result r = can_payout_to(g, op.seat, op.wallet, op.rail); r != result::ok) return r;
      if (op.rail != 0 && !(rail_served_ && rail_served_(op.rail, g.cfg.currency))) return result::payout_rail_unserved;
      const result r = payout_to(g, op.seat, op.wallet, op.rail, op.amount);
      if (r == result::ok) touch(*e);
      return r;
    }
    case equb_op_kind::dissolve:
      o = dissolve(g, rules_ >= rules_ended_groups);
      if (o.code == result::ok) ended_now(*e, ts);
      break;
    case equb_op_kind::replace_account: {
      const uint64_t from = op.wallet, to = op.amount;
      if (const result r = can_replace_account(g, from, to); r != result::ok) return r;
      if (const result r = engine_account(to); r != result::ok) return r;
      // The chains no ledger is deciding: refused ones, and forwards held back once bound
      // to their cover's payer (before, they go to whoever pays it: chain_done).
      auto in_refused = [&](auto&& f) {
        for (auto& ob : e->owed)
          if (ob.refused || (held_back(ob) && ob.waits_for == 0))
            for (auto& m : ob.transfers) f(m);
      };
      bool named = names_account(g, from);
      in_refused([&](const money& m) { named = named || m.debit_account_id == from || m.credit_account_id == from; });
      if (!named) return result::account_not_in_group;
      touch(*e);
      replace_account(g, from, to);
      if (rules_ >= rules_no_debt_to_itself) forgive_debts_to_itself(g);
      in_refused([&](money& m) {
        if (m.debit_account_id == from) m.debit_account_id = to;
        if (m.credit_account_id == from) m.credit_account_id = to;
      });
      return result::ok;
    }
    case equb_op_kind::write_off: {
      if (const result r = can_write_off(g, op.seat, op.wallet, op.amount); r != result::ok) return r;
      touch(*e);
      const std::vector<debt> gone = write_off(g, op.seat, op.wallet, op.amount);
      if (events_)
        for (const debt& d : gone) {
          auto ev = wire::decided_event(wire::event_type::equb_debt_written_off, ts, g.cfg.currency, op.group_id,
                                        d.creditor_account_id);
          ev.amount = d.amount;
          ev.code = uint16_t(op.seat);
          ev.ref = {d.round, d.group_part};
          events_(std::move(ev));
        }
      return result::ok;
    }
    case equb_op_kind::retry: {
      uint64_t need = 0;
      for (const auto& ob : e->owed)
        if (ob.refused) need += ob.transfers.size();
      if (need == 0) return result::nothing_to_retry;
      if (!optional_steps(*e, need, rules_)) return result::group_steps_exhausted;  // before changing anything
      touch(*e);
      for (auto& ob : e->owed) {
        if (!ob.refused) continue;
        ob.refused = false;
        --refused_;
        ob.refusal = result::ok;
        ob.first_step = e->next_step;
        e->next_step += uint32_t(ob.transfers.size());
        if (emit_) emit_(chain_of(*e, ob, shards_));
      }
      return result::ok;
    }
  }
  if (o.code != result::ok) return o.code;
  touch(*e);
  owe_apart(*e, std::move(o.transfers));  // a leave's or a dissolution's refunds
  owe_apart(*e, std::move(o.shared));
  return result::ok;
}

void group_table::load(group_entry&& e) {
  const uint64_t id = e.g.cfg.group_id;
  MESOB_ASSERT(groups_.find(id) == groups_.end());
  auto& stored = groups_.emplace(id, std::move(e)).first->second;
  for (const obligation& o : stored.owed) refused_ += o.refused ? 1 : 0;
  schedule(stored);
  if (ended(stored.g) && stored.retire_at != 0) {
    retires_.emplace_back(stored.retire_at, id);
    std::push_heap(retires_.begin(), retires_.end(), heap_cmp{});
  }
}

void group_table::take_dirty(std::vector<std::pair<uint64_t, std::vector<uint8_t>>>* out) {
  for (const uint64_t id : dirty_)
    if (group_entry* e = find(id)) {
      e->listed_dirty = false;
      out->emplace_back(id, encode_entry(*e));
    }
  dirty_.clear();
  for (const auto& r : retired_rows_) out->emplace_back(r.group_id, encode_retired(r));
  retired_rows_.clear();
}

size_t group_table::memory_bytes() const {
  size_t n = groups_.bucket_count() * sizeof(void*) + deadlines_.capacity() * 16;
  for (const auto& [id, e] : groups_) {
    n += sizeof(e) + 32 + e.g.seats.capacity() * sizeof(seat) + e.history.capacity() * sizeof(group_entry::round_result);
    for (const auto& s : e.g.seats) n += s.debts.capacity() * sizeof(debt);
    for (const auto& o : e.owed) n += sizeof(o) + o.transfers.capacity() * sizeof(money);
  }
  return n;
}

// ---- bytes ---------------------------------------------------------------------------

std::vector<uint8_t> encode_entry(const group_entry& e) {
  byte_writer w;
  w.put(entry_version);
  w.put(e.next_step);
  w.put(e.created_at);
  w.put(uint32_t(e.owed.size()));
  for (const auto& o : e.owed) {
    w.put(o.first_step);
    w.put(uint8_t(o.refused));
    w.put(uint32_t(o.refusal));
    w.put(o.covers_round);
    w.put(o.waits_for);
    w.put(o.waits_too);
    w.put(uint32_t(o.transfers.size()));
    for (const auto& m : o.transfers) {
      w.put(m.debit_account_id);
      w.put(m.credit_account_id);
      w.put(m.amount);
      w.put(uint8_t(m.why));
      if (m.why == purpose::payout_out) {
        w.put(m.rail);
        w.put(m.destination);
      }
    }
  }
  w.put(uint32_t(e.history.size()));
  for (const auto& h : e.history) {
    w.put(h.round);
    w.put(h.seat);
    w.put(h.revealed);
  }
  const auto g = encode_group(e.g);
  w.put(uint32_t(g.size()));
  w.put_bytes(g);
  w.put(e.retire_at);
  return std::move(w.out);
}

std::vector<uint8_t> encode_retired(const retired_group& r) {
  byte_writer w;
  w.put(retired_marker);
  w.put(r.group_id);
  w.put(r.number);
  w.put(r.retired_at);
  return std::move(w.out);
}

bool decode_retired(std::span<const uint8_t> bytes, retired_group* out) {
  byte_reader r{bytes};
  if (r.get<uint32_t>() != retired_marker || r.short_read) return false;
  retired_group g;
  g.group_id = r.get<uint64_t>();
  g.number = r.get<uint64_t>();
  g.retired_at = r.get<uint64_t>();
  if (r.short_read || r.at != bytes.size()) return false;
  *out = g;
  return true;
}

namespace {

// What a decoded entry must satisfy beyond its fields' ranges ("" when it does).
std::string entry_fault(const group_entry& e) {
  const group_state& g = e.g;
  const uint64_t escrow = g.cfg.escrow_account_id;
  if (escrow != g.cfg.group_id) return "its escrow account is not the group's id";
  if (ended(g) != (e.retire_at != 0)) return "its retire time does not match its phase";
  // Obligations: each transfer moves money out of or into the escrow (one side exactly),
  // between two real accounts; their step ranges lie below next_step and do not overlap
  // (the same ids twice would make one of them a repeat that never settles).
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  unsigned __int128 out = 0, in = 0;
  for (const auto& o : e.owed) {
    if (o.refused && result_name(o.refusal) == "unknown_result") return "an obligation's refusal is not a result code";
    for (size_t i = 0; i < o.transfers.size(); ++i) {
      const money& m = o.transfers[i];
      if (m.why == purpose::payout_out) {  // the payout sent on from its wallet, last of its chain
        const auto paid = std::find_if(o.transfers.begin(), o.transfers.end(), [&](const money& x) {
          return x.why == purpose::payout && x.credit_account_id == m.debit_account_id && x.amount == m.amount;
        });
        if (paid == o.transfers.end() || m.credit_account_id != 0 || m.rail == 0 || m.rail > gateways::rail_max ||
            m.destination == 0 || i + 1 != o.transfers.size() || g.number == 0)
          return "an obligation's gateway payout is malformed";
        continue;
      }
      if (m.debit_account_id == 0 || m.credit_account_id == 0 || m.debit_account_id == m.credit_account_id ||
          (m.debit_account_id == escrow) == (m.credit_account_id == escrow))
        return "an obligation moves money that is not its escrow's";
      (m.debit_account_id == escrow ? out : in) += m.amount;
    }
    ranges.emplace_back(o.first_step, o.first_step + uint32_t(o.transfers.size()));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) return "two obligations share transfer ids";
  // Covers and the forwards held back for them: one obligation carries a round's cover, a
  // cover of a round that closed; a held one forwards debts, or pays dividends a close's
  // cover funds (waiting for that close alone), for a cover still owed (else nothing
  // would ever send it).
  std::vector<uint32_t> covers;
  for (const auto& o : e.owed) {
    if (o.covers_round == 0) continue;
    if (o.covers_round > g.round ||
        std::none_of(o.transfers.begin(), o.transfers.end(), [](const money& m) { return m.why == purpose::cover; }))
      return "an obligation carries a cover it does not hold";
    covers.push_back(o.covers_round);
  }
  std::sort(covers.begin(), covers.end());
  if (std::adjacent_find(covers.begin(), covers.end()) != covers.end()) return "two obligations carry one round's cover";
  for (const auto& o : e.owed) {
    if (!held_back(o)) continue;
    for (const uint32_t round : {o.waits_for, o.waits_too})
      if (round != 0 && !std::binary_search(covers.begin(), covers.end(), round))
        return "an obligation held back waits for a cover no obligation carries";
    for (const auto& m : o.transfers)
      if ((m.why != purpose::debt_forward && (m.why != purpose::dividend || o.waits_for != 0)) ||
          m.debit_account_id != escrow)
        return "an obligation held back is not a debt's forward or a covered close's dividend";
  }
  // What the escrow account must hold fits and is not negative.
  const unsigned __int128 expected = (unsigned __int128)g.escrow + out;
  if (in > expected || expected - in > UINT64_MAX) return "its obligations take more than its escrow holds";
  // History: one entry per paid-out round, rounds 1, 2, ... to seats that received them.
  if (e.history.size() > g.seats.size()) return "more paid-out rounds than seats";
  for (size_t i = 0; i < e.history.size(); ++i) {
    const auto& h = e.history[i];
    if (h.round != i + 1 || h.seat >= g.seats.size() || g.seats[h.seat].received_round != h.round)
      return "its history does not match its seats";
  }
  size_t received = 0;
  for (const auto& st : g.seats) received += st.received_round != 0;
  if (received != e.history.size()) return "its history does not match its seats";
  return {};
}

}  // namespace

bool decode_entry(std::span<const uint8_t> bytes, group_entry* out, std::string* why) {
  byte_reader r{bytes};
  group_entry e;
  const auto version = r.get<uint32_t>();
  if (!r.short_read && (version < 1 || version > entry_version)) {
    *why = "group entry version " + std::to_string(version) + " (this build reads 1 to " +
           std::to_string(entry_version) + ")";
    return false;
  }
  e.next_step = r.get<uint32_t>();
  e.created_at = r.get<uint64_t>();
  const auto owed = r.get<uint32_t>();
  if (!r.short_read && (e.next_step > steps_max || owed > steps_max)) {
    *why = "group entry: step " + std::to_string(e.next_step) + ", " + std::to_string(owed) + " obligations: out of range";
    return false;
  }
  for (uint32_t i = 0; i < owed && !r.short_read; ++i) {
    obligation o;
    o.first_step = r.get<uint32_t>();
    const auto refused = r.get<uint8_t>();
    o.refusal = wire::result(r.get<uint32_t>());
    if (version >= 4) {
      o.covers_round = r.get<uint32_t>();
      o.waits_for = r.get<uint32_t>();
      o.waits_too = r.get<uint32_t>();
    }
    const auto n = r.get<uint32_t>();
    if (r.short_read) break;
    if (refused > 1 || n == 0 || n > chain_max || uint64_t(o.first_step) + n > e.next_step ||
        (refused == 0) != (o.refusal == result::ok) || (held_back(o) && (refused != 0 || o.covers_round != 0))) {
      *why = "group entry: obligation " + std::to_string(i) + " is out of range";
      return false;
    }
    o.refused = refused == 1;
    for (uint32_t k = 0; k < n && !r.short_read; ++k) {
      money m;
      m.debit_account_id = r.get<uint64_t>();
      m.credit_account_id = r.get<uint64_t>();
      m.amount = r.get<uint64_t>();
      const auto p = r.get<uint8_t>();
      if (p == uint8_t(purpose::payout_out) && version != 1) {
        m.rail = r.get<uint8_t>();
        m.destination = r.get<uint64_t>();
      }
      if (p > uint8_t(version == 1 ? purpose::dividend : purpose::payout_out) || m.amount == 0) {
        if (r.short_read) break;
        *why = "group entry: obligation " + std::to_string(i) + " transfer " + std::to_string(k) + " is out of range";
        return false;
      }
      m.why = purpose(p);
      o.transfers.push_back(m);
    }
    e.owed.push_back(std::move(o));
  }
  const auto hist = r.get<uint32_t>();
  if (!r.short_read && hist > seats_max) {
    *why = "group entry: " + std::to_string(hist) + " rounds of history: out of range";
    return false;
  }
  for (uint32_t i = 0; i < hist && !r.short_read; ++i) {
    group_entry::round_result h;
    h.round = r.get<uint32_t>();
    h.seat = r.get<uint32_t>();
    r.get(h.revealed);
    e.history.push_back(h);
  }
  const auto glen = r.get<uint32_t>();
  const auto gbytes = r.take(glen);
  if (version >= 3) e.retire_at = r.get<uint64_t>();
  if (r.short_read) {
    *why = "group entry cut short (" + std::to_string(bytes.size()) + " bytes)";
    return false;
  }
  if (r.at != bytes.size()) {
    *why = "group entry: " + std::to_string(bytes.size() - r.at) + " bytes after its state";
    return false;
  }
  if (!decode_group(gbytes, &e.g, why)) return false;
  if (version < 3 && ended(e.g)) e.retire_at = legacy_retire_at(e);  // ended by older rules
  if (const std::string fault = entry_fault(e); !fault.empty()) {
    *why = "group " + std::to_string(e.g.cfg.group_id) + ": " + fault;
    return false;
  }
  *out = std::move(e);
  return true;
}

}  // namespace mesob::actors::equb
