#include "actors/equb_rules.hpp"

#include "actors/byte_codec.hpp"
#include "actors/gateway_registry.hpp"
#include "wire/assert.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace mesob::actors::equb {

namespace {

seed sha256(const void* data, size_t n) {
  seed out{};
  unsigned len = 0;
  EVP_Digest(data, n, out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

outcome fail(result r) {
  outcome o;
  o.code = r;
  return o;
}

bool seat_of(const group_state& g, uint32_t seat_index, uint64_t wallet) {
  return seat_index < g.seats.size() && g.seats[seat_index].wallet == wallet;
}


void add(outcome& o, uint64_t dr, uint64_t cr, uint64_t amount, purpose why) {
  if (amount > 0) o.transfers.push_back({dr, cr, amount, why});
}

// Seat i's share of `total` shared by n seats: equal shares, the remainder's minor units
// to the first seats in order.
uint64_t share_of(uint64_t total, uint32_t n, uint32_t i) { return total / n + (i < total % n ? 1 : 0); }

// `amount` (repaid group parts) paid from escrow to the seats' wallets as a dividend, in
// shares, in the outcome's chain of its own.
void share_out(outcome& o, const group_state& g, uint64_t amount) {
  const auto n = uint32_t(g.seats.size());
  for (uint32_t i = 0; i < n && amount > 0; ++i)
    if (const uint64_t share = share_of(amount, n, i); share > 0)
      o.shared.push_back({g.cfg.escrow_account_id, g.seats[i].wallet, share, purpose::dividend});
}

// `amount` of debt d paid on to its creditor: in the outcome's chain, or held (o.held)
// while d's round is among `uncovered` (its cover not carried yet); `funded_by`: the
// round of the chain's own cover, when the money comes from a payout it pays into.
void forward(outcome& o, const group_state& g, const debt& d, uint64_t amount, std::span<const uint32_t> uncovered,
             uint32_t funded_by = 0) {
  if (amount == 0) return;
  const money m{g.cfg.escrow_account_id, d.creditor_account_id, amount, purpose::debt_forward};
  if (std::find(uncovered.begin(), uncovered.end(), d.round) != uncovered.end()) o.held.push_back({d.round, funded_by, m});
  else o.transfers.push_back(m);
}

// A seat's debts paid in whole: each forwarded to its creditor, less its group part,
// whose sum is returned (it stays in escrow).
uint64_t forward_debts(outcome& o, const group_state& g, const seat& s, std::span<const uint32_t> uncovered) {
  uint64_t to_group = 0;
  for (const auto& d : s.debts) {
    forward(o, g, d, d.amount - d.group_part, uncovered);
    to_group += d.group_part;
  }
  return to_group;
}

}  // namespace

uint64_t deadline_after(uint64_t started_at, uint64_t rounds, uint64_t period_ns, uint64_t grace_ns) {
  // Saturating: groups made before periods were capped (period_max_ns) may have any.
  uint64_t t = 0;
  if (__builtin_mul_overflow(rounds, period_ns, &t) || __builtin_add_overflow(t, started_at, &t) ||
      __builtin_add_overflow(t, grace_ns, &t))
    return UINT64_MAX;
  return t;
}

namespace {
// Where the schedule counts from: the start, moved by the downtime that fell on it.
uint64_t schedule_base(const group_state& g) {
  uint64_t t = 0;
  return __builtin_add_overflow(g.started_at, g.shift_ns, &t) ? UINT64_MAX : t;
}

// Periods from the schedule's base to round g.round's deadline (an active group's round is
// at least 1 and its offset at most 1: group_fault).
uint64_t periods_due(const group_state& g) { return g.round - std::min<uint32_t>(g.round, g.schedule_offset); }
}  // namespace

uint64_t round_deadline(const group_state& g) {
  return deadline_after(schedule_base(g), periods_due(g), g.cfg.period_ns, 0);
}
uint64_t round_close(const group_state& g) {
  return deadline_after(schedule_base(g), periods_due(g), g.cfg.period_ns, g.cfg.grace_ns);
}

uint64_t reschedule(group_state& g, uint64_t last_before, uint64_t resumed) {
  if (g.ph != phase::active || resumed <= last_before) return 0;
  // A contribution at t is late when t > deadline, and a round closes when t > its close:
  // one at `last_before` had not passed there, and one at `resumed` (the resume marker's
  // own time, which no operation takes) passes at the next operation.
  const auto in_gap = [&](uint64_t t) { return t >= last_before && t <= resumed; };
  if (!in_gap(round_deadline(g)) && (g.cfg.on_default == default_policy::hold_round || !in_gap(round_close(g))))
    return 0;
  const uint64_t before = g.shift_ns;
  uint64_t shifted = 0;
  g.shift_ns = __builtin_add_overflow(g.shift_ns, resumed - last_before, &shifted) ? UINT64_MAX : shifted;
  return g.shift_ns - before;
}

result check_config(const group_config& c) {
  if (c.contribution == 0) return result::contribution_must_not_be_zero;
  // Every sum of a round (a pot, a payment with debts) stays far below 2^64.
  constexpr uint64_t per_seat_max = (uint64_t(1) << 63) / (uint64_t(seats_max) * 4);
  if (c.contribution > per_seat_max || c.late_penalty > per_seat_max) return result::amounts_too_large;
  if (c.period_ns == 0) return result::period_must_not_be_zero;
  if (c.fee_bp > bp_max || c.max_discount_bp > bp_max || c.commission_bp > bp_max)
    return result::basis_points_too_high;
  if (!wire::currency_valid(c.currency)) return result::currency_invalid;
  if (c.policy != rotation::fixed_order && c.policy != rotation::lottery && c.policy != rotation::bidding)
    return result::rotation_invalid;
  if (c.on_default != default_policy::pay_what_is_there && c.on_default != default_policy::cover_from_guarantor &&
      c.on_default != default_policy::hold_round)
    return result::default_policy_invalid;
  if (c.escrow_account_id == 0 || c.fee_account_id == 0 || c.escrow_account_id == c.fee_account_id)
    return result::accounts_must_differ;
  if (c.on_default == default_policy::cover_from_guarantor) {
    if (c.guarantor_account_id == 0) return result::guarantor_required;
    if (c.guarantor_account_id == c.escrow_account_id || c.guarantor_account_id == c.fee_account_id)
      return result::accounts_must_differ;
  }
  if (c.policy == rotation::bidding && c.commission_bp > 0) {
    if (c.organizer_account_id == 0) return result::organizer_required;
    if (c.organizer_account_id == c.escrow_account_id) return result::accounts_must_differ;
  }
  return result::ok;
}

group_state make_group(const group_config& c) {
  group_state g;
  g.cfg = c;
  return g;
}

result can_join(const group_state& g, uint64_t wallet) {
  if (g.ph != phase::forming) return result::group_not_forming;
  if (g.seats.size() >= seats_max) return result::group_full;
  if (wallet == 0 || wallet == g.cfg.escrow_account_id) return result::not_a_member;
  return result::ok;
}

outcome join(group_state& g, uint64_t wallet) {
  if (const result r = can_join(g, wallet); r != result::ok) return fail(r);
  outcome o;
  seat s;
  s.wallet = wallet;
  s.paid = true;  // the deposit is round 1's contribution
  s.paid_amount = g.cfg.contribution;
  g.seats.push_back(s);
  g.pot += g.cfg.contribution;
  g.escrow += g.cfg.contribution;
  add(o, wallet, g.cfg.escrow_account_id, g.cfg.contribution, purpose::deposit);
  return o;
}

outcome leave(group_state& g, uint32_t seat_index, uint64_t wallet, bool last_seat_only) {
  if (g.ph == phase::active) return fail(result::leaving_after_start);
  if (g.ph != phase::forming) return fail(result::group_not_forming);
  if (!seat_of(g, seat_index, wallet)) return fail(result::not_a_member);
  if (last_seat_only)
    for (size_t i = size_t(seat_index) + 1; i < g.seats.size(); ++i)
      if (g.seats[i].wallet == wallet) return fail(result::seat_not_last);
  outcome o;
  const uint64_t back = g.seats[seat_index].paid_amount;
  add(o, g.cfg.escrow_account_id, wallet, back, purpose::deposit_refund);
  g.pot -= back;
  g.escrow -= back;
  g.seats.erase(g.seats.begin() + seat_index);
  return o;
}

outcome start(group_state& g, uint64_t now, const seed& secret, bool round_two_one_period) {
  if (g.ph != phase::forming) return fail(result::group_not_forming);
  if (g.seats.size() < 2) return fail(result::too_few_seats);
  g.ph = phase::active;
  g.round = 1;
  g.started_at = now;
  g.schedule_offset = round_two_one_period ? 1 : 0;
  if (g.cfg.policy == rotation::lottery) {
    g.secret = secret;
    g.commitment = seed_at(secret, uint32_t(g.seats.size()), 0);
    g.last_revealed = g.commitment;
  }
  return {};
}

uint64_t owed(const group_state& g, uint32_t seat_index, uint64_t now) {
  const seat& s = g.seats[seat_index];
  uint64_t total = g.cfg.contribution - s.credit + (now > round_deadline(g) ? g.cfg.late_penalty : 0);
  for (const auto& d : s.debts) total += d.amount;
  return total;
}

result can_contribute(const group_state& g, uint32_t seat_index, uint64_t wallet, uint32_t round, uint64_t amount,
                      wire::currency_code currency, uint64_t now) {
  if (g.ph != phase::active) return result::group_not_active;
  if (!seat_of(g, seat_index, wallet)) return result::not_a_member;
  if (currency != g.cfg.currency) return result::wrong_currency;
  if (round < g.round) {  // paid then (a debt of it repaid since included), or missed
    const auto& debts = g.seats[seat_index].debts;
    return std::any_of(debts.begin(), debts.end(), [&](const debt& d) { return d.round == round; })
               ? result::round_closed
               : result::round_already_paid;
  }
  if (round > g.round) return result::round_not_open;
  if (g.seats[seat_index].paid) return result::already_contributed;
  if (amount != owed(g, seat_index, now)) return result::wrong_amount;
  return result::ok;
}

outcome contribute(group_state& g, uint32_t seat_index, uint64_t wallet, uint32_t round, uint64_t amount,
                   wire::currency_code currency, uint64_t now, std::span<const uint32_t> uncovered) {
  if (const result r = can_contribute(g, seat_index, wallet, round, amount, currency, now); r != result::ok)
    return fail(r);
  seat& s = g.seats[seat_index];
  outcome o;
  add(o, wallet, g.cfg.escrow_account_id, amount, purpose::contribution);
  const uint64_t to_group = forward_debts(o, g, s, uncovered);  // held for the seats until the close
  s.debts.clear();
  const uint64_t kept = g.cfg.contribution - s.credit + (now > round_deadline(g) ? g.cfg.late_penalty : 0);
  s.paid = true;
  s.paid_amount = kept;
  g.pot += kept;
  g.held += to_group;
  g.escrow += kept + to_group;
  return o;
}

bool ended(const group_state& g) { return g.ph == phase::completed || g.ph == phase::dissolved; }

uint64_t debts_of(const seat& s) {
  uint64_t total = 0;
  for (const auto& d : s.debts) total += d.amount;
  return total;
}

result can_repay(const group_state& g, uint32_t seat_index, uint64_t wallet, uint32_t round, uint64_t amount,
                 wire::currency_code currency) {
  if (!ended(g)) return result::group_not_active;  // (an active group's payments are can_contribute's)
  if (!seat_of(g, seat_index, wallet)) return result::not_a_member;
  if (g.seats[seat_index].debts.empty()) return result::nothing_owed;
  if (currency != g.cfg.currency) return result::wrong_currency;
  if (round < g.round) return result::round_already_paid;
  if (round > g.round) return result::round_not_open;
  if (amount != debts_of(g.seats[seat_index])) return result::wrong_amount;
  return result::ok;
}

outcome repay(group_state& g, uint32_t seat_index, uint64_t wallet, uint32_t round, uint64_t amount,
              wire::currency_code currency, std::span<const uint32_t> uncovered) {
  if (const result r = can_repay(g, seat_index, wallet, round, amount, currency); r != result::ok) return fail(r);
  seat& s = g.seats[seat_index];
  outcome o;
  add(o, wallet, g.cfg.escrow_account_id, amount, purpose::contribution);
  const uint64_t to_group = forward_debts(o, g, s, uncovered);
  s.debts.clear();
  share_out(o, g, to_group);  // the group has ended: the seats' dividend at once
  return o;
}

result can_write_off(const group_state& g, uint32_t seat_index, uint64_t wallet, uint64_t amount) {
  if (!ended(g)) return result::group_not_ended;  // (an active group's debts ride on the seat's payments)
  if (!seat_of(g, seat_index, wallet)) return result::not_a_member;
  if (g.seats[seat_index].debts.empty()) return result::nothing_owed;
  if (amount != debts_of(g.seats[seat_index])) return result::wrong_amount;
  return result::ok;
}

std::vector<debt> write_off(group_state& g, uint32_t seat_index, uint64_t wallet, uint64_t amount) {
  MESOB_ASSERT(can_write_off(g, seat_index, wallet, amount) == result::ok);
  return std::exchange(g.seats[seat_index].debts, {});
}

bool names_account(const group_state& g, uint64_t a) {
  if (a == 0 || a == g.cfg.escrow_account_id) return false;
  const group_config& c = g.cfg;
  if (c.fee_account_id == a || c.guarantor_account_id == a || c.organizer_account_id == a) return true;
  for (const auto& s : g.seats) {
    if (s.wallet == a) return true;
    for (const auto& d : s.debts)
      if (d.creditor_account_id == a) return true;
  }
  return false;
}

namespace {
void replace_in(uint64_t& field, uint64_t from, uint64_t to) {
  if (field == from) field = to;
}
}  // namespace

result can_replace_account(const group_state& g, uint64_t from, uint64_t to) {
  if (from == g.cfg.escrow_account_id || to == g.cfg.escrow_account_id) return result::group_account_reserved;
  if (from == 0 || to == 0) return result::id_must_not_be_zero;
  if (from == to) return result::accounts_must_differ;
  group_config c = g.cfg;
  replace_in(c.fee_account_id, from, to);
  replace_in(c.guarantor_account_id, from, to);
  replace_in(c.organizer_account_id, from, to);
  return check_config(c);
}

void replace_account(group_state& g, uint64_t from, uint64_t to) {
  MESOB_ASSERT(can_replace_account(g, from, to) == result::ok);
  replace_in(g.cfg.fee_account_id, from, to);
  replace_in(g.cfg.guarantor_account_id, from, to);
  replace_in(g.cfg.organizer_account_id, from, to);
  for (auto& s : g.seats) {
    replace_in(s.wallet, from, to);
    for (auto& d : s.debts) replace_in(d.creditor_account_id, from, to);
  }
}

uint64_t nominal_pot(const group_state& g) { return uint64_t(g.seats.size()) * g.cfg.contribution; }

outcome bid(group_state& g, uint32_t seat_index, uint64_t wallet, uint32_t round, uint64_t amount) {
  if (g.ph != phase::active) return fail(result::group_not_active);
  if (g.cfg.policy != rotation::bidding) return fail(result::bidding_not_allowed);
  if (!seat_of(g, seat_index, wallet)) return fail(result::not_a_member);
  if (round < g.round) return fail(result::round_closed);
  if (round > g.round) return fail(result::round_not_open);
  seat& s = g.seats[seat_index];
  if (s.received_round != 0) return fail(result::already_received);
  if (s.bid != 0) return fail(result::already_bid);
  const uint64_t nominal = nominal_pot(g);
  const uint64_t lowest = nominal - uint64_t((unsigned __int128)nominal * g.cfg.max_discount_bp / bp_max);
  if (amount == 0 || amount < lowest || amount > nominal) return fail(result::bid_outside_limits);
  s.bid = amount;
  s.bid_order = ++g.bids;
  return {};
}

bool round_due(const group_state& g, uint64_t now) {
  if (g.ph != phase::active) return false;
  bool all = true;
  for (const auto& s : g.seats) all = all && s.paid;
  if (all) return true;
  return g.cfg.on_default != default_policy::hold_round && now > round_close(g);
}

void forgive_debts_to_itself(group_state& g) {
  for (auto& s : g.seats) {
    for (auto& d : s.debts)
      if (d.creditor_account_id == s.wallet) {
        d.amount = d.group_part;
        d.creditor_account_id = 0;
      }
    std::erase_if(s.debts, [](const debt& d) { return d.amount == 0; });
  }
}

outcome close_round(group_state& g, uint64_t now, bool credits_pay, bool default_penalty, bool held_moves,
                    bool discount_owed, bool cover_backs_credits, std::span<const uint32_t> uncovered,
                    bool no_debt_to_itself) {
  if (g.ph != phase::active) return fail(result::group_not_active);
  if (!round_due(g, now)) return fail(result::round_not_due);
  // A round held past its close: how far past (the schedule moves by it, below).
  const uint64_t close_at = round_close(g);
  const uint64_t held_past =
      held_moves && g.cfg.on_default == default_policy::hold_round && now > close_at ? now - close_at : 0;
  const auto n = uint32_t(g.seats.size());
  std::vector<uint32_t> candidates;
  for (uint32_t i = 0; i < n; ++i)
    if (g.seats[i].received_round == 0) candidates.push_back(i);
  outcome o;
  uint32_t r = candidates.front();
  if (g.cfg.policy == rotation::lottery) {
    const seed revealed = seed_at(g.secret, n, g.round);
    if (!seed_follows(revealed, g.last_revealed)) return fail(result::seed_mismatch);
    r = draw(revealed, g.cfg.group_id, g.round, candidates);
    o.revealed = revealed;
    g.last_revealed = revealed;
  }
  if (g.cfg.policy == rotation::bidding) {  // the lowest bid, the earliest among equal ones
    for (const uint32_t i : candidates) {
      const seat& s = g.seats[i];
      const seat& best = g.seats[r];
      if (s.bid != 0 && (best.bid == 0 || s.bid < best.bid || (s.bid == best.bid && s.bid_order < best.bid_order)))
        r = i;
    }
  }
  seat& rs = g.seats[r];
  // The unpaid: each missing due becomes a debt (the recipient's own missing due under
  // pay_what_is_there simply leaves the pot short: it owes it to itself).
  const bool cover = g.cfg.on_default == default_policy::cover_from_guarantor;
  uint64_t gap = 0;
  std::vector<std::pair<uint32_t, uint64_t>> missed;  // (seat, its due) of this close's new debts
  for (uint32_t i = 0; i < n; ++i) {
    seat& s = g.seats[i];
    if (s.paid) continue;
    const uint64_t due = g.cfg.contribution - s.credit;
    // (A seat whose credit covered its due is unpaid for older debts it still owes: it
    // owes the penalty alone.)
    const uint64_t debt = due + (default_penalty ? g.cfg.late_penalty : 0);
    if ((!cover && i == r) || debt == 0) continue;
    gap += due;
    s.debts.push_back({g.round, debt, cover ? g.cfg.guarantor_account_id : rs.wallet});
    missed.emplace_back(i, due);
  }
  const uint64_t winner_due = rs.paid ? 0 : g.cfg.contribution - rs.credit;
  if (cover && gap > 0) {
    add(o, g.cfg.guarantor_account_id, g.cfg.escrow_account_id, gap, purpose::cover);
    g.pot += gap;
    g.escrow += gap;
  }
  // Every seat's credit (last round's dividend) was for this round: into the pot.
  for (auto& s : g.seats) {
    g.pot += s.credit;
    s.credit = 0;
  }
  // Bidding: the winner's discount is withheld: commission, then the dividend. The pot
  // pays what it can of it now; the rest is owed to the group by this round's new debts
  // (their dues, in seat order; then the winner's own missed due, a debt of its owed to
  // the group alone), which the pot and those dues always cover: the pot and every other
  // seat's due make the nominal pot less the winner's missed due, and a bid is at least 1.
  // By the rules before version 26 the discount was at most the pot, nothing owed.
  const uint64_t full = rs.bid == 0 ? 0 : nominal_pot(g) - rs.bid;
  const uint64_t discount = std::min(g.pot, full);
  const uint64_t commission = std::min(
      {uint64_t((unsigned __int128)(discount_owed ? full : discount) * g.cfg.commission_bp / bp_max),
       g.cfg.commission_cap, discount});
  const uint64_t dividend = discount - commission;
  const bool last = candidates.size() == 1;
  // Money this close's cover brings in is in escrow only once the ledger carries the
  // close's chain, which a guarantor without the money refuses (it waits for a retry). So
  // the dividend's part past the pot without the cover is not credits, which the escrow
  // could not pay while the cover is refused, but the seats' dividend held for that chain
  // (outcome::held, funded by this round). A last round's dividend is in the chain itself.
  // (A covered pot is whole, so it pays the whole discount: no group parts arise.)
  const bool cover_funds = cover_backs_credits && cover && gap > 0;
  const uint64_t paid_in = g.pot - (cover_funds ? gap : 0);
  const uint64_t unbacked = cover_funds && !last && dividend > paid_in ? dividend - paid_in : 0;
  if (discount_owed && full > discount) {
    uint64_t rest = full - discount;
    for (const auto& [i, due] : missed) {
      debt& d = g.seats[i].debts.back();
      d.group_part = std::min(rest, due);
      rest -= d.group_part;
    }
    MESOB_ASSERT(rest < winner_due || rest == 0);
    if (rest > 0) rs.debts.push_back({g.round, rest, 0, rest});
  }
  // (Before the payout: the recipient's wallet is paid nothing back from it by itself.)
  if (no_debt_to_itself) forgive_debts_to_itself(g);
  add(o, g.cfg.escrow_account_id, g.cfg.organizer_account_id, commission, purpose::commission);
  // The payout chain: fee, the recipient's own debts (oldest first, as far as it goes),
  // the rest to the recipient.
  const uint64_t gross = g.pot - discount;
  const uint64_t fee = uint64_t((unsigned __int128)gross * g.cfg.fee_bp / bp_max);
  uint64_t left = gross - fee;
  add(o, g.cfg.escrow_account_id, g.cfg.fee_account_id, fee, purpose::fee);
  size_t settled = 0;
  uint64_t to_group = 0;  // group parts the payout settled: the seats' dividend, below
  for (auto& d : rs.debts) {
    if (left == 0) break;
    const uint64_t part = std::min(left, d.amount);
    const uint64_t group = std::min(part, d.group_part);  // the group's part first
    // (Held, it also waits for this chain: the payout it is taken from has this cover in it.)
    forward(o, g, d, part - group, uncovered, cover && gap > 0 ? g.round : 0);
    to_group += group;
    d.group_part -= group;
    left -= part;
    d.amount -= part;
    if (d.amount == 0) ++settled;
  }
  rs.debts.erase(rs.debts.begin(), rs.debts.begin() + ptrdiff_t(settled));
  add(o, g.cfg.escrow_account_id, rs.wallet, left, purpose::payout);
  const uint64_t sent_on = rs.payout_rail != 0 ? left : 0;
  g.escrow -= g.pot - dividend + g.held;  // (to_group left with the pot: paid out below)
  g.pot = 0;
  const uint64_t repaid = g.held + to_group;  // group parts repaid: paid out to the seats now
  g.held = 0;
  rs.received_round = g.round;
  o.recipient_seat = r;
  // The dividend: equal shares, the remainder's minor units to the first seats; credits
  // off the next contribution (but for the part only the cover backs, held for its chain),
  // or paid out after the last round.
  // (A seat's share is the same either way: what is held of it is its share of the whole
  // less its share of the credited part, shares of a larger sum being no smaller.)
  for (uint32_t i = 0; i < n && dividend > 0; ++i) {
    const uint64_t share = share_of(dividend, n, i);
    if (last) {
      add(o, g.cfg.escrow_account_id, g.seats[i].wallet, share, purpose::dividend);
      g.escrow -= share;
      continue;
    }
    g.seats[i].credit = share_of(dividend - unbacked, n, i);
    if (const uint64_t held = share - g.seats[i].credit; held > 0)
      o.held.push_back({0, g.round, {g.cfg.escrow_account_id, g.seats[i].wallet, held, purpose::dividend}});
  }
  g.escrow -= unbacked;
  share_out(o, g, repaid);  // repaid group parts: paid out (a credit is at most a due)
  g.bids = 0;
  for (auto& s : g.seats) {
    s.bid = 0;
    s.bid_order = 0;
  }
  // Last, so that nothing after it in the chain can fail: the desk takes a hold once
  // applied (payout_desk.hpp), never to be undone.
  if (sent_on > 0) o.transfers.push_back({rs.wallet, 0, sent_on, purpose::payout_out, rs.payout_rail, rs.destination});
  if (last) {
    g.ph = phase::completed;
  } else {
    ++g.round;
    uint64_t shifted = 0;
    g.shift_ns = __builtin_add_overflow(g.shift_ns, held_past, &shifted) ? UINT64_MAX : shifted;
    for (auto& s : g.seats) {
      // (A credit is at most a contribution: the dividend is under n contributions.)
      s.paid = credits_pay && s.debts.empty() && s.credit >= g.cfg.contribution;
      s.paid_amount = 0;
    }
  }
  return o;
}

result can_payout_to(const group_state& g, uint32_t seat_index, uint64_t wallet, uint8_t rail) {
  if (g.ph != phase::forming && g.ph != phase::active) return result::group_not_active;
  if (!seat_of(g, seat_index, wallet)) return result::not_a_member;
  if (g.seats[seat_index].received_round != 0) return result::already_received;
  if (rail != 0 && g.number == 0) return result::group_payouts_wallet_only;
  return result::ok;
}

result payout_to(group_state& g, uint32_t seat_index, uint64_t wallet, uint8_t rail, uint64_t destination) {
  if (const result r = can_payout_to(g, seat_index, wallet, rail); r != result::ok) return r;
  seat& s = g.seats[seat_index];
  s.payout_rail = rail;
  s.destination = destination;
  return result::ok;
}

outcome dissolve(group_state& g, bool settle_received) {
  if (g.ph != phase::forming && g.ph != phase::active) return fail(result::group_not_active);
  outcome o;
  const bool forming = g.ph == phase::forming;
  // Past rounds: each recipient owes each seat that has not received one contribution.
  // A seat ends with fewer than seats_max debts (decode_group's limit): at most one a
  // closed round from round 2 on (k - 2 in round k), and one a seat that has not
  // received (n - k + 1).
  for (auto& r : g.seats) {
    if (!settle_received || r.received_round == 0) continue;
    for (const auto& s : g.seats)
      if (s.received_round == 0 && s.wallet != r.wallet) r.debts.push_back({g.round, g.cfg.contribution, s.wallet});
  }
  for (auto& s : g.seats) {
    add(o, g.cfg.escrow_account_id, s.wallet, s.paid_amount + s.credit,
        forming ? purpose::deposit_refund : purpose::refund);
    g.escrow -= s.paid_amount + s.credit;
    s.paid_amount = 0;
    s.credit = 0;
    s.paid = false;
  }
  share_out(o, g, g.held);  // group parts repaid since the last close: the seats'
  g.escrow -= g.held;
  g.held = 0;
  g.pot = 0;
  g.ph = phase::dissolved;
  return o;
}

seed seed_at(const seed& secret, uint32_t n, uint32_t k) {
  seed s = secret;
  for (uint32_t i = k; i < n; ++i) s = sha256(s.data(), s.size());
  return s;
}

bool seed_follows(const seed& revealed, const seed& previous) {
  return sha256(revealed.data(), revealed.size()) == previous;
}

uint32_t draw(const seed& revealed, uint64_t group_id, uint32_t round, const std::vector<uint32_t>& candidates) {
  uint8_t buf[32 + 8 + 4];
  std::memcpy(buf, revealed.data(), 32);
  std::memcpy(buf + 32, &group_id, 8);  // little-endian (wire/types.cpp checks the platform)
  std::memcpy(buf + 40, &round, 4);
  const seed h = sha256(buf, sizeof buf);
  uint64_t v = 0;
  std::memcpy(&v, h.data(), 8);
  return candidates[size_t(v % candidates.size())];
}

// ---- bytes ---------------------------------------------------------------------------

namespace {

constexpr uint16_t codec_version = 5;


}  // namespace

std::vector<uint8_t> encode_group(const group_state& g) {
  byte_writer w;
  const group_config& c = g.cfg;
  w.put(codec_version);
  w.put(uint16_t(0));
  w.put(c.group_id);
  w.put(c.escrow_account_id);
  w.put(c.fee_account_id);
  w.put(c.guarantor_account_id);
  w.put(c.organizer_account_id);
  w.put(c.currency);
  w.put(c.fee_bp);
  w.put(c.contribution);
  w.put(c.period_ns);
  w.put(c.grace_ns);
  w.put(c.late_penalty);
  w.put(uint8_t(c.policy));
  w.put(uint8_t(c.on_default));
  w.put(uint16_t(0));
  w.put(c.max_discount_bp);
  w.put(c.commission_bp);
  w.put(uint32_t(0));
  w.put(c.commission_cap);
  w.put(g.number);
  w.put(uint8_t(g.ph));
  w.put(g.schedule_offset);
  w.put(uint16_t(0));
  w.put(g.round);
  w.put(g.started_at);
  w.put(g.shift_ns);
  w.put(g.pot);
  w.put(g.escrow);
  w.put(g.held);
  w.put(g.bids);
  w.put(uint32_t(g.seats.size()));
  w.put(g.secret);
  w.put(g.commitment);
  w.put(g.last_revealed);
  for (const auto& st : g.seats) {
    w.put(st.wallet);
    w.put(st.received_round);
    w.put(uint8_t(st.paid));
    w.put(st.payout_rail);
    w.put(uint16_t(0));
    w.put(st.paid_amount);
    w.put(st.credit);
    w.put(st.bid);
    w.put(st.bid_order);
    w.put(st.destination);
    w.put(uint32_t(st.debts.size()));
    for (const auto& d : st.debts) {
      w.put(d.round);
      w.put(uint32_t(0));
      w.put(d.amount);
      w.put(d.creditor_account_id);
      w.put(d.group_part);
    }
  }
  return std::move(w.out);
}

namespace {

// What a decoded group must satisfy beyond its fields' ranges and its escrow sum ("" when
// it does): what the rules keep true between operations, so that a group damaged on the
// disk is refused at load instead of failing at its next close (an active group with no
// seat left to receive, a credit past a contribution or a debt past one and the late
// penalty, a lottery whose seed chain
// no longer verifies).
std::string group_fault(const group_state& g) {
  const auto n = uint32_t(g.seats.size());
  const uint64_t c = g.cfg.contribution;
  const bool forming = g.ph == phase::forming, active = g.ph == phase::active, completed = g.ph == phase::completed;
  if (forming && (g.round != 0 || g.started_at != 0 || g.shift_ns != 0 || g.schedule_offset != 0))
    return "a forming group has a round";
  if (g.schedule_offset > 1) return "its schedule offset is out of range";
  if ((!active || g.cfg.policy != rotation::bidding) && g.held != 0)
    return "only an active bidding group holds repaid group parts";
  if (active && (n < 2 || g.round == 0)) return "an active group without its round or seats";
  if (completed && g.round != n) return "a completed group ended before its last round";
  // Each round paid out once, to one seat, before the current round (the last one too,
  // once completed); an active group's closed rounds are every round before its own.
  std::vector<bool> paid_out(size_t(n) + 1, false);
  uint32_t received = 0;
  for (const auto& s : g.seats) {
    if (s.received_round == 0) continue;
    if (s.received_round > g.round || (s.received_round == g.round && !completed) || paid_out[s.received_round])
      return "its seats' paid-out rounds do not match its round";
    paid_out[s.received_round] = true;
    ++received;
  }
  if ((active && received != g.round - 1) || (completed && received != n))
    return "its seats' paid-out rounds do not match its round";
  unsigned __int128 paid = 0;
  uint32_t bids = 0;
  if (g.bids > n) return "its bid count does not match its seats' bids";  // (before sizing by it)
  std::vector<bool> bid_orders(size_t(g.bids) + 1, false);
  const uint64_t nominal = nominal_pot(g);
  const uint64_t lowest = nominal - uint64_t((unsigned __int128)nominal * g.cfg.max_discount_bp / bp_max);
  for (uint32_t i = 0; i < n; ++i) {
    const seat& s = g.seats[i];
    const std::string which = "seat " + std::to_string(i) + ": ";
    // (A seat's wallet paid its join, and replace_account never names the escrow: a
    // payout to 0 or to the escrow itself would be refused for good.)
    if (s.wallet == 0 || s.wallet == g.cfg.escrow_account_id) return which + "its wallet is 0 or the group's escrow";
    if (s.credit > c || (!active && s.credit != 0)) return which + "its credit is out of range";
    if (forming && (!s.paid || s.paid_amount != c)) return which + "a forming group's seat has not paid its deposit";
    if (active && (s.paid_amount > c + g.cfg.late_penalty || (!s.paid && s.paid_amount != 0)))
      return which + "what it paid this round is out of range";
    // (A seat pays its due, the contribution less its credit, and the penalty if late; one
    // whose credit covers it is paid with nothing more: paid, it put a contribution in.)
    if (active && s.paid && s.paid_amount + s.credit < c)
      return which + "it paid less than its due this round";
    if (forming || active) paid += s.paid_amount;
    for (const auto& d : s.debts) {
      // (A debt is at most a due and the late penalty: rules_default_penalty.)
      if (d.round == 0 || d.round > g.round || d.amount == 0 || d.amount > c + g.cfg.late_penalty ||
          d.creditor_account_id == g.cfg.escrow_account_id)
        return which + "a debt is out of range";
      // (A group part is a bid's discount, at most the debt's due; a debt naming no
      // creditor is the group's whole: the winner's own of the round it won, or what is
      // left of a debt a seat owed its own wallet, rules_no_debt_to_itself.)
      if (d.group_part > std::min(d.amount, c) || (d.group_part != 0 && g.cfg.policy != rotation::bidding) ||
          (d.creditor_account_id == 0 && d.group_part != d.amount))
        return which + "a debt's part owed to the group is out of range";
    }
    if (forming && !s.debts.empty()) return which + "a forming group's seat owes debts";
    if (g.ph == phase::dissolved) continue;  // (bids a dissolution left stay, unused)
    if (s.bid == 0) {
      if (s.bid_order != 0) return which + "its bid is out of range";
      continue;
    }
    if (!active || g.cfg.policy != rotation::bidding || s.received_round != 0 || s.bid < lowest || s.bid > nominal ||
        s.bid_order == 0 || s.bid_order > g.bids || bid_orders[s.bid_order])
      return which + "its bid is out of range";
    bid_orders[s.bid_order] = true;
    ++bids;
  }
  if (g.ph != phase::dissolved && bids != g.bids) return "its bid count does not match its seats' bids";
  if ((forming || active) ? paid != g.pot : g.pot != 0)
    return "pot " + std::to_string(g.pot) + " is not what its seats paid this round";
  if (active && g.cfg.policy == rotation::lottery &&
      (g.commitment != seed_at(g.secret, n, 0) || !seed_follows(seed_at(g.secret, n, g.round), g.last_revealed)))
    return "its lottery seeds do not follow from its secret";
  return {};
}

}  // namespace

bool decode_group(std::span<const uint8_t> bytes, group_state* out, std::string* why) {
  byte_reader r{bytes};
  group_state g;
  group_config& c = g.cfg;
  const auto version = r.get<uint16_t>();
  r.get<uint16_t>();
  if (!r.short_read && (version < 1 || version > codec_version)) {
    *why = "group state version " + std::to_string(version) + " (this build reads 1 to " +
           std::to_string(codec_version) + ")";
    return false;
  }
  const bool v1 = version == 1;
  c.group_id = r.get<uint64_t>();
  c.escrow_account_id = r.get<uint64_t>();
  c.fee_account_id = r.get<uint64_t>();
  c.guarantor_account_id = r.get<uint64_t>();
  c.organizer_account_id = r.get<uint64_t>();
  c.currency = r.get<uint32_t>();
  c.fee_bp = r.get<uint32_t>();
  c.contribution = r.get<uint64_t>();
  c.period_ns = r.get<uint64_t>();
  c.grace_ns = r.get<uint64_t>();
  c.late_penalty = r.get<uint64_t>();
  c.policy = rotation(r.get<uint8_t>());
  c.on_default = default_policy(r.get<uint8_t>());
  r.get<uint16_t>();
  c.max_discount_bp = r.get<uint32_t>();
  c.commission_bp = r.get<uint32_t>();
  r.get<uint32_t>();
  c.commission_cap = r.get<uint64_t>();
  if (!v1) g.number = r.get<uint64_t>();
  const auto ph = r.get<uint8_t>();
  const auto offset = r.get<uint8_t>();  // (zero before version 5)
  if (version >= 5) g.schedule_offset = offset;
  r.get<uint16_t>();
  g.round = r.get<uint32_t>();
  g.started_at = r.get<uint64_t>();
  if (version >= 3) g.shift_ns = r.get<uint64_t>();
  g.pot = r.get<uint64_t>();
  g.escrow = r.get<uint64_t>();
  if (version >= 4) g.held = r.get<uint64_t>();
  g.bids = r.get<uint32_t>();
  const auto seats = r.get<uint32_t>();
  r.get(g.secret);
  r.get(g.commitment);
  r.get(g.last_revealed);
  const std::string where = "group " + std::to_string(c.group_id) + ": ";
  if (r.short_read) {
    *why = "group state cut short (" + std::to_string(bytes.size()) + " bytes)";
    return false;
  }
  if (const result cr = check_config(c); cr != result::ok) {
    *why = where + "its configuration is invalid (" + std::string(result_name(cr)) + ")";
    return false;
  }
  if (g.number >= numbers_max) {
    *why = where + "number " + std::to_string(g.number) + " is out of range";
    return false;
  }
  if (ph < uint8_t(phase::forming) || ph > uint8_t(phase::dissolved)) {
    *why = where + "unknown phase " + std::to_string(ph);
    return false;
  }
  g.ph = phase(ph);
  if (seats > seats_max || g.round > seats) {
    *why = where + std::to_string(seats) + " seats, round " + std::to_string(g.round) + ": out of range";
    return false;
  }
  unsigned __int128 credits = 0;
  for (uint32_t i = 0; i < seats; ++i) {
    seat st;
    st.wallet = r.get<uint64_t>();
    st.received_round = r.get<uint32_t>();
    const auto paid = r.get<uint8_t>();
    st.payout_rail = r.get<uint8_t>();
    r.get<uint16_t>();
    st.paid_amount = r.get<uint64_t>();
    st.credit = r.get<uint64_t>();
    st.bid = r.get<uint64_t>();
    st.bid_order = r.get<uint32_t>();
    if (!v1) st.destination = r.get<uint64_t>();
    const auto debts = r.get<uint32_t>();
    if (r.short_read) break;
    if (paid > 1 || debts > seats_max || st.received_round > seats || st.payout_rail > gateways::rail_max ||
        (st.payout_rail == 0) != (st.destination == 0) || (st.payout_rail != 0 && g.number == 0)) {
      *why = where + "seat " + std::to_string(i) + " is out of range";
      return false;
    }
    st.paid = paid == 1;
    for (uint32_t k = 0; k < debts && !r.short_read; ++k) {
      debt d;
      d.round = r.get<uint32_t>();
      r.get<uint32_t>();
      d.amount = r.get<uint64_t>();
      d.creditor_account_id = r.get<uint64_t>();
      if (version >= 4) d.group_part = r.get<uint64_t>();
      st.debts.push_back(d);
    }
    credits += st.credit;
    g.seats.push_back(std::move(st));
  }
  if (r.short_read) {
    *why = where + "state cut short (" + std::to_string(bytes.size()) + " bytes)";
    return false;
  }
  if (r.at != bytes.size()) {
    *why = where + std::to_string(bytes.size() - r.at) + " bytes after the last seat";
    return false;
  }
  if ((unsigned __int128)g.escrow != g.pot + credits + g.held) {
    *why = where + "escrow " + std::to_string(g.escrow) + " is not pot " + std::to_string(g.pot) + " plus credits" +
           (g.held != 0 ? " plus held " + std::to_string(g.held) : "");
    return false;
  }
  if (const std::string fault = group_fault(g); !fault.empty()) {
    *why = where + fault;
    return false;
  }
  *out = std::move(g);
  return true;
}

}  // namespace mesob::actors::equb

