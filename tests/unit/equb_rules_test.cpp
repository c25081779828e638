// Equb groups' rules (actors/equb_rules.hpp) on a small ledger model: every transfer the
// rules ask for is applied to balances, and after every step the escrow holds exactly
// what the group says it must and no money appears or vanishes. Lifecycle and errors,
// each default policy, late penalties, debts and their creditors, a 12-seat lottery run
// to completion with every draw checked against the seed chain, dissolution, and a
// seeded random run of many groups (MESOB_SEED=<n> replays it).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>

#include "actors/equb_group.hpp"
#include "actors/equb_rules.hpp"
#include "actors/rules_version.hpp"
#include "actors/trading.hpp"
#include "support/seed.hpp"

using namespace mesob;
using namespace mesob::actors::equb;

namespace {

constexpr uint64_t escrow = 900, fee_acct = 901, guarantor = 902, organizer = 903;
constexpr uint64_t c = 50'000;  // 500.00 ETB
constexpr uint64_t period = 1'000'000'000ull * 3600 * 24 * 30;
constexpr uint64_t grace = 1'000'000'000ull * 3600 * 24 * 3;

group_config config(rotation rot = rotation::fixed_order, default_policy pol = default_policy::pay_what_is_there) {
  group_config g;
  g.group_id = 77;
  g.escrow_account_id = escrow;
  g.fee_account_id = fee_acct;
  g.guarantor_account_id = pol == default_policy::cover_from_guarantor ? guarantor : 0;
  g.currency = wire::currency("ETB");
  g.contribution = c;
  g.period_ns = period;
  g.grace_ns = grace;
  g.late_penalty = 2'500;
  g.fee_bp = 100;  // 1%
  g.policy = rot;
  g.on_default = pol;
  return g;
}

// Balances of every account the rules touch; wallets start rich.
struct ledger {
  std::map<uint64_t, int64_t> bal;
  int64_t total() const {
    int64_t t = 0;
    for (const auto& [a, b] : bal) t += b;
    return t;
  }
  void apply(const outcome& o) {
    ASSERT_EQ(o.code, result::ok) << result_name(o.code);
    // (Chains held for a cover are applied with it: the rules alone carry every chain.)
    std::vector<money> held;
    for (const auto& h : o.held) held.push_back(h.m);
    for (const std::vector<money>* chain : {&o.transfers, &o.shared, &std::as_const(held)})
      for (const auto& m : *chain) {
        ASSERT_GT(m.amount, 0u);
        ASSERT_NE(m.debit_account_id, m.credit_account_id);
        bal[m.debit_account_id] -= int64_t(m.amount);
        bal[m.credit_account_id] += int64_t(m.amount);
      }
    for (const auto& m : o.shared) ASSERT_EQ(m.why, purpose::dividend);
  }
};

// Applies `o` and checks the invariants: escrow as the group says, money conserved.
void step(ledger& l, const group_state& g, const outcome& o) {
  const int64_t before = l.total();
  l.apply(o);
  EXPECT_EQ(l.total(), before);
  EXPECT_EQ(l.bal[escrow], int64_t(g.escrow));
  uint64_t credits = 0;
  for (const auto& seat : g.seats) credits += seat.credit;
  EXPECT_EQ(g.escrow, g.pot + credits + g.held);
  // Every state the rules reach is one a snapshot loads (decode_group's checks).
  const auto bytes = encode_group(g);
  group_state back;
  std::string why;
  EXPECT_TRUE(decode_group(bytes, &back, &why)) << why;
}

const seed secret_a = [] {
  seed s{};
  for (size_t i = 0; i < s.size(); ++i) s[i] = uint8_t(i * 7 + 3);
  return s;
}();

uint64_t wallet(uint32_t i) { return 1000 + i; }

// A contribution of `c` from wallet `w` into group `group`'s escrow (round 0: a join).
wire::transfer equb_payment(uint64_t group, uint64_t w, uint32_t round, uint32_t seat) {
  wire::transfer p;
  p.debit_account_id = w;
  p.credit_account_id = group;
  p.amount = c;
  p.currency = config().currency;
  p.flags = wire::transfer_flags::equb;
  p.user_data = uint64_t(round) << 32 | seat;
  return p;
}

// A group of `n` seats (seat i held by wallet(i)), started at time 0.
group_state started(ledger& l, uint32_t n, group_config cfg, const seed& secret = secret_a) {
  auto g = make_group(cfg);
  EXPECT_EQ(check_config(cfg), result::ok);
  for (uint32_t i = 0; i < n; ++i) step(l, g, join(g, wallet(i)));
  step(l, g, start(g, 0, secret));
  return g;
}

// Round k's deadline (and `plus` after it) of a group started at 0 by this build's rules:
// k - 1 periods (round 1 pays out at the start; round 2 has one period).
uint64_t due_at(uint32_t k, uint64_t plus = 0) { return deadline_after(0, k - 1, period, plus); }

// Every seat pays on time for the current round.
void everyone_pays(ledger& l, group_state& g, uint64_t now) {
  for (uint32_t i = 0; i < g.seats.size(); ++i) {
    if (g.seats[i].paid) continue;
    const uint64_t due = owed(g, i, now);
    step(l, g, contribute(g, i, wallet(i), g.round, due, g.cfg.currency, now));
  }
}

// A member's payment into a group table's group (round 0 joins).
wire::transfer group_payment(const group_config& cfg, uint64_t w, uint32_t round, uint32_t seat, uint64_t amount) {
  wire::transfer p;
  p.debit_account_id = w;
  p.credit_account_id = cfg.escrow_account_id;
  p.amount = amount;
  p.currency = cfg.currency;
  p.flags = wire::transfer_flags::equb;
  p.user_data = uint64_t(round) << 32 | seat;
  return p;
}

// Each wallet joins the table's group at `ts` (a seat each).
void join_all(group_table& t, const group_config& cfg, std::initializer_list<uint64_t> wallets, uint64_t ts) {
  for (const uint64_t w : wallets) {
    const auto p = group_payment(cfg, w, 0, 0, cfg.contribution);
    ASSERT_EQ(t.verdict(p, ts), result::ok);
    t.paid(p, ts);
  }
}

}  // namespace

TEST(equb_rules, configuration_errors) {
  EXPECT_EQ(check_config(config()), result::ok);
  auto bad = [](auto change, result expect) {
    auto cfg = config();
    change(cfg);
    EXPECT_EQ(check_config(cfg), expect) << result_name(expect);
  };
  bad([](group_config& g) { g.contribution = 0; }, result::contribution_must_not_be_zero);
  bad([](group_config& g) { g.contribution = uint64_t(1) << 62; }, result::amounts_too_large);
  bad([](group_config& g) { g.late_penalty = uint64_t(1) << 62; }, result::amounts_too_large);
  bad([](group_config& g) { g.period_ns = 0; }, result::period_must_not_be_zero);
  // A deadline past 2^64 ns wrapped to the start: a round closed before anyone could pay.
  // New groups' periods are capped when sequenced (period_too_long, equb_engine_test);
  // a group from before the cap keeps its period, and its deadlines saturate.
  EXPECT_EQ(deadline_after(1000, 2, uint64_t(1) << 63, 0), UINT64_MAX);
  EXPECT_EQ(deadline_after(UINT64_MAX - 5, 0, 7, 6), UINT64_MAX);
  EXPECT_EQ(deadline_after(1000, seats_max, period_max_ns, period_max_ns),
            1000 + uint64_t(seats_max + 1) * period_max_ns);
  bad([](group_config& g) { g.fee_bp = bp_max + 1; }, result::basis_points_too_high);
  bad([](group_config& g) { g.max_discount_bp = bp_max + 1; }, result::basis_points_too_high);
  bad([](group_config& g) { g.commission_bp = bp_max + 1; }, result::basis_points_too_high);
  bad(
      [](group_config& g) {
        g.policy = rotation::bidding;
        g.commission_bp = 100;
      },
      result::organizer_required);
  bad(
      [](group_config& g) {
        g.policy = rotation::bidding;
        g.commission_bp = 100;
        g.organizer_account_id = escrow;
      },
      result::accounts_must_differ);
  bad([](group_config& g) { g.currency = 0; }, result::currency_invalid);
  bad([](group_config& g) { g.policy = rotation(9); }, result::rotation_invalid);
  bad([](group_config& g) { g.on_default = default_policy(9); }, result::default_policy_invalid);
  bad([](group_config& g) { g.fee_account_id = escrow; }, result::accounts_must_differ);
  bad([](group_config& g) { g.escrow_account_id = 0; }, result::accounts_must_differ);
  bad([](group_config& g) { g.on_default = default_policy::cover_from_guarantor; }, result::guarantor_required);
  bad(
      [](group_config& g) {
        g.on_default = default_policy::cover_from_guarantor;
        g.guarantor_account_id = fee_acct;
      },
      result::accounts_must_differ);
}

TEST(equb_rules, forming_joins_with_a_deposit_and_leaving_returns_it) {
  ledger l;
  auto g = make_group(config());
  step(l, g, join(g, wallet(0)));
  step(l, g, join(g, wallet(1)));
  step(l, g, join(g, wallet(0)));  // a second seat for the same member
  EXPECT_EQ(l.bal[escrow], int64_t(3 * c));
  EXPECT_EQ(l.bal[wallet(0)], -int64_t(2 * c));
  EXPECT_EQ(leave(g, 1, wallet(0)).code, result::not_a_member);  // seat 1 is wallet 1's
  EXPECT_EQ(leave(g, 7, wallet(0)).code, result::not_a_member);
  step(l, g, leave(g, 1, wallet(1)));
  EXPECT_EQ(l.bal[wallet(1)], 0);
  EXPECT_EQ(g.seats.size(), 2u);
  auto empty = make_group(config());
  EXPECT_EQ(start(empty, 0, secret_a).code, result::too_few_seats);
  EXPECT_EQ(join(g, 0).code, result::not_a_member);
  EXPECT_EQ(join(g, escrow).code, result::not_a_member);
  step(l, g, start(g, 0, secret_a));
  EXPECT_EQ(g.ph, phase::active);
  EXPECT_EQ(leave(g, 0, wallet(0)).code, result::leaving_after_start);
  EXPECT_EQ(join(g, wallet(5)).code, result::group_not_forming);
  EXPECT_EQ(start(g, 0, secret_a).code, result::group_not_forming);
}

// A leave names a seat by its place, and the seats after it move down one. A member
// leaves its last seat first: before, a leave sent again after a lost answer found the
// member's next seat in the place of the one it left and took that too. Now the place
// holds another member's seat (or none) and the repeat takes nothing. Records before
// rules_leave_last_seat are replayed as taken then.
TEST(equb_rules, a_member_leaves_its_last_seat_first_so_a_repeated_leave_takes_nothing) {
  ledger l;
  auto g = make_group(config());
  step(l, g, join(g, wallet(0)));  // seat 0
  step(l, g, join(g, wallet(1)));  // seat 1
  step(l, g, join(g, wallet(1)));  // seat 2: wallet 1's second
  step(l, g, join(g, wallet(2)));  // seat 3
  EXPECT_EQ(leave(g, 1, wallet(1)).code, result::seat_not_last);
  EXPECT_EQ(g.seats.size(), 4u) << "refused: nothing changed";
  step(l, g, leave(g, 2, wallet(1)));  // its last
  EXPECT_EQ(leave(g, 2, wallet(1)).code, result::not_a_member) << "the repeat meets wallet 2's seat";
  step(l, g, leave(g, 1, wallet(1)));  // now its last
  EXPECT_EQ(leave(g, 1, wallet(1)).code, result::not_a_member) << "the repeat meets wallet 2's seat";
  ASSERT_EQ(g.seats.size(), 2u);
  EXPECT_EQ(g.seats[0].wallet, wallet(0));
  EXPECT_EQ(g.seats[1].wallet, wallet(2));
  EXPECT_EQ(l.bal[wallet(1)], 0) << "both deposits back, once each";
  EXPECT_EQ(l.bal[escrow], int64_t(2 * c));

  // As an older record was decided: any seat of the member's.
  ledger l2;
  auto old = make_group(config());
  step(l2, old, join(old, wallet(3)));
  step(l2, old, join(old, wallet(3)));
  step(l2, old, join(old, wallet(4)));
  const outcome o = leave(old, 0, wallet(3), false);
  EXPECT_EQ(o.code, result::ok);
  step(l2, old, o);
  ASSERT_EQ(old.seats.size(), 2u);
  EXPECT_EQ(old.seats[0].wallet, wallet(3));
}

// The group table decides a leave by its batch's rules.
TEST(equb_rules, group_table_decides_a_leave_by_its_records_rules) {
  for (const uint16_t rules : {uint16_t(mesob::actors::rules_leave_last_seat - 1), mesob::actors::rules_newest}) {
    auto cfg = config();
    cfg.group_id = escrow;
    group_table t;
    auto make_escrow = [](const wire::account&) { return true; };
    ASSERT_EQ(t.execute(create_op_of(cfg), 1, make_escrow), result::ok);
    join_all(t, cfg, {wallet(0), wallet(0), wallet(1)}, 2);
    wire::equb_op leave_first;
    leave_first.kind = wire::equb_op_kind::leave;
    leave_first.group_id = escrow;
    leave_first.seat = 0;
    leave_first.wallet = wallet(0);
    t.set_rules(rules);
    const bool old = rules < mesob::actors::rules_leave_last_seat;
    EXPECT_EQ(t.execute(leave_first, 3, make_escrow), old ? result::ok : result::seat_not_last) << rules;
    EXPECT_EQ(t.find(escrow)->g.seats.size(), old ? 2u : 3u) << rules;
  }
}

// Fixed order, everyone on time: seat k receives in round k the whole pot less the fee.
TEST(equb_rules, fixed_order_runs_to_completion) {
  ledger l;
  auto g = started(l, 4, config());
  for (uint32_t round = 1; round <= 4; ++round) {
    const uint64_t now = due_at(round);  // at the deadline itself: on time
    everyone_pays(l, g, now);
    ASSERT_TRUE(round_due(g, now));
    const auto o = close_round(g, now);
    ASSERT_EQ(o.code, result::ok);
    EXPECT_EQ(o.recipient_seat, round - 1);
    step(l, g, o);
  }
  EXPECT_EQ(g.ph, phase::completed);
  EXPECT_EQ(l.bal[escrow], 0);
  const int64_t fee = int64_t(4 * c / 100);
  EXPECT_EQ(l.bal[fee_acct], 4 * fee);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(g.seats[i].received_round, i + 1);
    EXPECT_EQ(l.bal[wallet(i)], -int64_t(4 * c) + int64_t(4 * c) - fee);  // paid 4 rounds, got one pot
  }
  EXPECT_EQ(contribute(g, 0, wallet(0), 5, c, g.cfg.currency, 0).code, result::group_not_active);
  EXPECT_EQ(close_round(g, 0).code, result::group_not_active);
  EXPECT_EQ(dissolve(g).code, result::group_not_active);
}

TEST(equb_rules, contribution_errors_change_nothing) {
  ledger l;
  auto g = started(l, 3, config());
  step(l, g, close_round(g, 5));  // round 1 (the deposits) pays out at once
  ASSERT_EQ(g.round, 2u);
  const auto before = g.escrow;
  const auto etb = g.cfg.currency;
  EXPECT_EQ(contribute(g, 0, wallet(1), 2, c, etb, 10).code, result::not_a_member);
  EXPECT_EQ(contribute(g, 9, wallet(0), 2, c, etb, 10).code, result::not_a_member);
  EXPECT_EQ(contribute(g, 0, wallet(0), 2, c, wire::currency("USD"), 10).code, result::wrong_currency);
  EXPECT_EQ(contribute(g, 0, wallet(0), 1, c, etb, 10).code, result::round_already_paid);
  EXPECT_EQ(contribute(g, 0, wallet(0), 3, c, etb, 10).code, result::round_not_open);
  EXPECT_EQ(contribute(g, 0, wallet(0), 2, c - 1, etb, 10).code, result::wrong_amount);
  EXPECT_EQ(close_round(g, 10).code, result::round_not_due);
  EXPECT_EQ(g.escrow, before);
  step(l, g, contribute(g, 0, wallet(0), 2, c, etb, 10));
  EXPECT_EQ(contribute(g, 0, wallet(0), 2, c, etb, 11).code, result::already_contributed);
}

// After the deadline a contribution pays the late penalty into the pot.
TEST(equb_rules, late_contributions_pay_the_penalty_into_the_pot) {
  ledger l;
  auto g = started(l, 2, config());
  step(l, g, close_round(g, 1));  // round 1 from the deposits
  const uint64_t late = due_at(2) + 5;  // round 2's deadline: a period after the start
  EXPECT_EQ(owed(g, 0, late), c + g.cfg.late_penalty);
  EXPECT_EQ(owed(g, 0, due_at(2)), c);  // at the deadline itself: on time
  EXPECT_EQ(contribute(g, 0, wallet(0), 2, c, g.cfg.currency, late).code, result::wrong_amount);
  step(l, g, contribute(g, 0, wallet(0), 2, c + g.cfg.late_penalty, g.cfg.currency, late));
  step(l, g, contribute(g, 1, wallet(1), 2, c, g.cfg.currency, due_at(2)));
  EXPECT_EQ(g.pot, 2 * c + g.cfg.late_penalty);
  const auto o = close_round(g, late);
  step(l, g, o);
  const uint64_t pot = 2 * c + g.cfg.late_penalty, fee = pot / 100;
  EXPECT_EQ(l.bal[wallet(1)], -int64_t(2 * c) + int64_t(pot - fee));
}

// pay_what_is_there: the recipient gets what was paid; a missing due is a debt owed to
// that recipient, forwarded to it when the debtor next pays. The debt carries the late
// penalty (rules version 20; `penalty` false: the rules before, the due alone), so a
// skipped round never costs less than a late one.
TEST(equb_rules, pay_what_is_there_makes_debts_owed_to_the_short_changed_recipient) {
  for (const bool penalty : {false, true}) {
    SCOPED_TRACE(penalty ? "default penalty" : "rules before version 20");
    ledger l;
    auto g = started(l, 3, config());
    const uint64_t p = penalty ? g.cfg.late_penalty : 0;
    step(l, g, close_round(g, 1));  // round 1: seat 0
    const uint64_t now = due_at(2) - 1;
    step(l, g, contribute(g, 0, wallet(0), 2, c, g.cfg.currency, now));
    step(l, g, contribute(g, 1, wallet(1), 2, c, g.cfg.currency, now));
    EXPECT_FALSE(round_due(g, due_at(2, grace)));
    const uint64_t after_grace = due_at(2, grace) + 1;
    ASSERT_TRUE(round_due(g, after_grace));
    const auto o = close_round(g, after_grace, true, penalty);
    EXPECT_EQ(o.recipient_seat, 1u);
    step(l, g, o);
    ASSERT_EQ(g.seats[2].debts.size(), 1u);
    EXPECT_EQ(g.seats[2].debts[0].creditor_account_id, wallet(1));
    EXPECT_EQ(g.seats[2].debts[0].round, 2u);
    EXPECT_EQ(g.seats[2].debts[0].amount, c + p);
    if (penalty) {
      EXPECT_GE(g.seats[2].debts[0].amount, c + g.cfg.late_penalty) << "no cheaper than paying late";
    }
    // The group's state with such a debt survives its byte form (a snapshot).
    group_state back;
    std::string why;
    ASSERT_TRUE(decode_group(encode_group(g), &back, &why)) << why;
    EXPECT_EQ(encode_group(back), encode_group(g));
    const int64_t w1_before = l.bal[wallet(1)];
    // Round 3, late: the debtor owes due + penalty + its debt; the debt goes to wallet 1.
    const uint64_t late = due_at(3) + 7;
    EXPECT_EQ(owed(g, 2, late), c + g.cfg.late_penalty + c + p);
    step(l, g, contribute(g, 2, wallet(2), 3, 2 * c + g.cfg.late_penalty + p, g.cfg.currency, late));
    EXPECT_EQ(l.bal[wallet(1)], w1_before + int64_t(c + p));
    EXPECT_TRUE(g.seats[2].debts.empty());
    step(l, g, contribute(g, 0, wallet(0), 3, c + g.cfg.late_penalty, g.cfg.currency, late));
    step(l, g, contribute(g, 1, wallet(1), 3, c + g.cfg.late_penalty, g.cfg.currency, late));
    step(l, g, close_round(g, late, true, penalty));
    EXPECT_EQ(g.ph, phase::completed);
    EXPECT_EQ(l.bal[escrow], 0);
  }
}

// One wallet holding two seats owes itself nothing (rules version 46): its seat unpaid
// when its other seat receives leaves that payout short, as the recipient seat's own
// missed due does, and keeps no debt. Before, the seat owed its own wallet the due and
// the penalty, forwarded straight back from its next payment, which had to carry them:
// a wallet with only the due could not pay it.
TEST(equb_rules, a_wallet_with_two_seats_owes_itself_nothing) {
  for (const bool taken : {true, false}) {
    SCOPED_TRACE(taken ? "this build's rules" : "rules before version 46");
    ledger l;
    auto g = make_group(config());
    const uint64_t w = wallet(0), x = wallet(2);
    for (const uint64_t member : {w, w, x}) step(l, g, join(g, member));
    step(l, g, start(g, 0, secret_a));
    step(l, g, close_round(g, 1));  // round 1: seat 0 (w)
    const uint64_t now = due_at(2) - 1;
    step(l, g, contribute(g, 1, w, 2, c, g.cfg.currency, now));
    step(l, g, contribute(g, 2, x, 2, c, g.cfg.currency, now));
    const int64_t w_before = l.bal[w];
    const auto o = close_round(g, due_at(2, grace) + 1, true, true, true, true, true, {}, taken);
    step(l, g, o);  // seat 0 (w) unpaid
    ASSERT_EQ(o.recipient_seat, 1u);
    EXPECT_EQ(l.bal[w] - w_before, int64_t(2 * c - 2 * c / 100)) << "the pot w's seat 0 left short";
    const uint64_t at3 = due_at(3) - 1;
    if (!taken) {
      ASSERT_EQ(g.seats[0].debts.size(), 1u);
      EXPECT_EQ(g.seats[0].debts[0].creditor_account_id, w);
      EXPECT_EQ(owed(g, 0, at3), 2 * c + g.cfg.late_penalty);
      EXPECT_EQ(contribute(g, 0, w, 3, c, g.cfg.currency, at3).code, result::wrong_amount);
      continue;
    }
    EXPECT_TRUE(g.seats[0].debts.empty());
    EXPECT_EQ(owed(g, 0, at3), c);
    step(l, g, contribute(g, 0, w, 3, c, g.cfg.currency, at3));
    step(l, g, contribute(g, 1, w, 3, c, g.cfg.currency, at3));
    step(l, g, contribute(g, 2, x, 3, c, g.cfg.currency, at3));
    step(l, g, close_round(g, due_at(3, grace) + 1));
    EXPECT_EQ(g.ph, phase::completed);
    EXPECT_EQ(l.bal[escrow], 0);
    for (const auto& s : g.seats) EXPECT_TRUE(s.debts.empty());
    EXPECT_EQ(l.bal[x], -int64_t(3 * c / 100)) << "x paid 3 dues, received 3 less the fee";
    EXPECT_EQ(l.bal[w], -int64_t(3 * c / 100 + 2 * c / 100)) << "w: 5 dues in, 2 payouts less their fees";
  }
}

// A seat whose dividend credit covered its due, unpaid only for an older debt it still
// owes, that lets the round close owes the late penalty alone (rules version 20): paying
// late would have cost it the penalty too. Before, skipping cost it nothing.
TEST(equb_rules, a_seat_whose_credit_covers_its_due_still_owes_the_penalty_when_it_misses) {
  for (const bool penalty : {false, true}) {
    SCOPED_TRACE(penalty ? "default penalty" : "rules before version 20");
    ledger l;
    auto g = started(l, 3, config());
    step(l, g, close_round(g, 1));  // round 1: seat 0
    // Seat 2 as a bidding round's dividend can leave it: its credit is the whole due, and
    // an older debt keeps it unpaid (escrow holds the credit: escrow = pot + credits).
    g.seats[2].credit = c;
    g.escrow += c;
    l.bal[escrow] += int64_t(c);
    l.bal[fee_acct] -= int64_t(c);  // (where the credit's money came from, for the ledger's sum)
    g.seats[2].debts.push_back({1, 700, wallet(0)});
    g.seats[2].paid = false;
    const uint64_t now = due_at(2) - 1;
    EXPECT_EQ(owed(g, 2, now), 700u);
    EXPECT_EQ(owed(g, 2, due_at(2) + 1), 700u + g.cfg.late_penalty) << "late, it pays the penalty";
    step(l, g, contribute(g, 0, wallet(0), 2, c, g.cfg.currency, now));
    step(l, g, contribute(g, 1, wallet(1), 2, c, g.cfg.currency, now));
    const auto o = close_round(g, due_at(2, grace) + 1, true, penalty);
    step(l, g, o);
    ASSERT_EQ(g.seats[2].debts.size(), penalty ? 2u : 1u);
    if (penalty) {
      EXPECT_EQ(g.seats[2].debts[1].amount, g.cfg.late_penalty);
      EXPECT_EQ(g.seats[2].debts[1].creditor_account_id, wallet(1)) << "the round's recipient";
    }
    group_state back;
    std::string why;
    EXPECT_TRUE(decode_group(encode_group(g), &back, &why)) << why;
  }
}

// cover_from_guarantor: the guarantor fills the gap so the pot is whole; the debts (each
// a due and, from rules version 20, the late penalty) are the guarantor's. A recipient
// that did not pay settles its own debt from its payout, and debts larger than a payout
// are settled as far as it goes, oldest first.
TEST(equb_rules, cover_from_guarantor_and_debts_settled_from_the_payout) {
  for (const uint64_t fee_bp : {1000u, 6000u}) {  // the payout covers the debts, or not
    for (const bool penalty : {false, true}) {
      SCOPED_TRACE(std::string(penalty ? "default penalty" : "rules before version 20") + ", fee " +
                   std::to_string(fee_bp) + " bp");
      ledger l;
      auto cfg = config(rotation::fixed_order, default_policy::cover_from_guarantor);
      cfg.fee_bp = uint32_t(fee_bp);
      const uint64_t p = penalty ? cfg.late_penalty : 0;
      auto g = started(l, 3, cfg);
      step(l, g, close_round(g, 1));  // round 1: seat 0, from the deposits
      // Seat 2 pays nothing in rounds 2 and 3.
      uint64_t now = due_at(2, grace) + 1;
      step(l, g, contribute(g, 0, wallet(0), 2, c + cfg.late_penalty, cfg.currency, now));
      step(l, g, contribute(g, 1, wallet(1), 2, c + cfg.late_penalty, cfg.currency, now));
      auto o = close_round(g, now, true, penalty);
      step(l, g, o);
      EXPECT_EQ(l.bal[guarantor], -int64_t(c)) << "the cover is the due alone";
      EXPECT_EQ(o.recipient_seat, 1u);
      const uint64_t pot2 = 3 * c + 2 * cfg.late_penalty;
      EXPECT_EQ(l.bal[wallet(1)], -int64_t(2 * c + cfg.late_penalty) + int64_t(pot2 - pot2 * fee_bp / 10'000));
      ASSERT_EQ(g.seats[2].debts.size(), 1u);
      EXPECT_EQ(g.seats[2].debts[0].creditor_account_id, guarantor);
      EXPECT_EQ(g.seats[2].debts[0].amount, c + p);
      now = due_at(3, grace) + 1;
      step(l, g, contribute(g, 0, wallet(0), 3, c + cfg.late_penalty, cfg.currency, now));
      step(l, g, contribute(g, 1, wallet(1), 3, c + cfg.late_penalty, cfg.currency, now));
      o = close_round(g, now, true, penalty);  // seat 2 receives, unpaid: the guarantor covers, its debts are settled first
      EXPECT_EQ(o.recipient_seat, 2u);
      step(l, g, o);
      // Pot: 2 (c + penalty) + c (cover) = 3c + 2 penalties; the fee; debts 2 (c + p)
      // settle from the rest, as far as it goes.
      const uint64_t pot = 3 * c + 2 * cfg.late_penalty, net = pot - pot * fee_bp / 10'000, debts = 2 * (c + p);
      EXPECT_EQ(l.bal[guarantor], -int64_t(2 * c) + int64_t(std::min(net, debts)));
      EXPECT_EQ(l.bal[wallet(2)], -int64_t(c) + int64_t(net > debts ? net - debts : 0));
      EXPECT_EQ(g.ph, phase::completed);
      EXPECT_EQ(l.bal[escrow], 0);
      uint64_t left = 0;
      for (const auto& d : g.seats[2].debts) left += d.amount;
      EXPECT_EQ(left, net >= debts ? 0 : debts - net);
    }
  }
}

TEST(equb_rules, hold_round_waits_for_every_seat) {
  ledger l;
  auto g = started(l, 2, config(rotation::fixed_order, default_policy::hold_round));
  step(l, g, close_round(g, 1));
  step(l, g, contribute(g, 0, wallet(0), 2, c, g.cfg.currency, 10));
  const uint64_t much_later = 50 * period;
  EXPECT_FALSE(round_due(g, much_later));
  EXPECT_EQ(close_round(g, much_later).code, result::round_not_due);
  step(l, g, contribute(g, 1, wallet(1), 2, c + g.cfg.late_penalty, g.cfg.currency, much_later));
  EXPECT_TRUE(round_due(g, much_later));
  step(l, g, close_round(g, much_later));
  EXPECT_EQ(g.ph, phase::completed);
}

// A round held past its close moves the schedule by how far past it closed: the next
// round opens with the time a round closed on time leaves (period - grace to its
// deadline), not already late for every member (rules version 23). Before, its deadline
// stayed 28 periods in the past and the two members who had paid on time paid the late
// penalty again.
TEST(equb_rules, a_held_round_moves_the_next_rounds_deadline) {
  for (const bool moves : {true, false}) {
    ledger l;
    auto g = started(l, 3, config(rotation::fixed_order, default_policy::hold_round));
    step(l, g, close_round(g, 1, true, true, moves));
    step(l, g, contribute(g, 0, wallet(0), 2, c, g.cfg.currency, 10));
    step(l, g, contribute(g, 1, wallet(1), 2, c, g.cfg.currency, 10));
    const uint64_t late = 30 * period;  // round 2 closed at a period + grace
    step(l, g, contribute(g, 2, wallet(2), 2, c + g.cfg.late_penalty, g.cfg.currency, late));
    step(l, g, close_round(g, late, true, true, moves));
    ASSERT_EQ(g.round, 3u);
    if (!moves) {  // the rules before: every member late from the round's start
      EXPECT_EQ(owed(g, 0, late + 1), c + g.cfg.late_penalty);
      continue;
    }
    EXPECT_EQ(g.shift_ns, late - due_at(2, grace));
    EXPECT_EQ(round_deadline(g), late + period - grace);
    EXPECT_EQ(owed(g, 0, late + 1), c) << "on time";
    EXPECT_EQ(owed(g, 1, round_deadline(g)), c) << "at the deadline, still on time";
    EXPECT_EQ(owed(g, 1, round_deadline(g) + 1), c + g.cfg.late_penalty);
    // A round closed within its close time (here, every seat on time) moves nothing.
    for (uint32_t i = 0; i < 3; ++i) step(l, g, contribute(g, i, wallet(i), 3, c, g.cfg.currency, late + 2));
    const uint64_t shift = g.shift_ns;
    step(l, g, close_round(g, late + 2));
    EXPECT_EQ(g.shift_ns, shift);
    EXPECT_EQ(g.ph, phase::completed);
  }
}

// A 12-seat lottery group run to completion: every seat receives exactly once, every
// revealed seed hashes to the one before it (back to the commitment published at
// start), and every draw can be recomputed from the revealed seed alone.
TEST(equb_rules, twelve_seat_lottery_runs_to_completion_and_every_draw_verifies) {
  ledger l;
  auto g = started(l, 12, config(rotation::lottery));
  const seed commitment = g.commitment;
  seed previous = commitment;
  std::set<uint32_t> received;
  std::vector<uint32_t> order;
  for (uint32_t round = 1; round <= 12; ++round) {
    const uint64_t now = due_at(round);
    everyone_pays(l, g, now);
    std::vector<uint32_t> candidates;
    for (uint32_t i = 0; i < 12; ++i)
      if (!received.count(i)) candidates.push_back(i);
    const auto o = close_round(g, now);
    ASSERT_EQ(o.code, result::ok);
    EXPECT_TRUE(seed_follows(o.revealed, previous)) << "round " << round;
    EXPECT_EQ(draw(o.revealed, g.cfg.group_id, round, candidates), o.recipient_seat);
    EXPECT_TRUE(received.insert(o.recipient_seat).second) << "seat drawn twice";
    order.push_back(o.recipient_seat);
    previous = o.revealed;
    step(l, g, o);
  }
  EXPECT_EQ(g.ph, phase::completed);
  EXPECT_EQ(received.size(), 12u);
  EXPECT_EQ(l.bal[escrow], 0);
  EXPECT_EQ(previous, secret_a);  // the last round reveals s_N itself
  std::vector<uint32_t> seat_order(12);
  for (uint32_t i = 0; i < 12; ++i) seat_order[i] = i;
  EXPECT_NE(order, seat_order) << "a lottery that drew seat order is suspicious";
  // The same secret draws the same order (replay); another secret, another order.
  ledger l2, l3;
  auto again = started(l2, 12, config(rotation::lottery));
  seed other = secret_a;
  other[0] ^= 1;
  auto third = started(l3, 12, config(rotation::lottery), other);
  std::vector<uint32_t> order2, order3;
  for (uint32_t round = 1; round <= 12; ++round) {
    everyone_pays(l2, again, (round - 1) * period);
    everyone_pays(l3, third, (round - 1) * period);
    const auto o2 = close_round(again, (round - 1) * period), o3 = close_round(third, (round - 1) * period);
    step(l2, again, o2);
    step(l3, third, o3);
    order2.push_back(o2.recipient_seat);
    order3.push_back(o3.recipient_seat);
  }
  EXPECT_EQ(order2, order);
  EXPECT_NE(order3, order);
}

group_config bidding_config() {
  auto cfg = config(rotation::bidding);
  cfg.contribution = 10'000;
  cfg.max_discount_bp = 3000;  // bids down to 70% of the nominal pot
  cfg.commission_bp = 1000;    // the organizer takes 10% of the discount
  cfg.commission_cap = 1'000;
  cfg.organizer_account_id = organizer;
  return cfg;
}

// A bid of 1 makes a dividend of nearly the whole pot: two of three seats get credits of
// a whole contribution, owe nothing next round, and are paid when it opens; the third
// pays its 1 and the round closes (hold_round waits for every seat). Before (and by the
// rules before version 9), those two owed 0, could not pay it, and the round never closed.
TEST(equb_rules, a_credit_that_covers_the_contribution_pays_it) {
  for (const bool credits_pay : {true, false}) {
    SCOPED_TRACE(credits_pay ? "this build's rules" : "rules before version 9");
    ledger l;
    auto cfg = bidding_config();
    cfg.contribution = 100;
    cfg.max_discount_bp = 10'000;
    cfg.commission_bp = 0;  // the whole discount a dividend: 299 = 100 + 100 + 99
    cfg.on_default = default_policy::hold_round;
    auto g = started(l, 3, cfg);
    ASSERT_EQ(bid(g, 1, wallet(1), 1, 1).code, result::ok);
    step(l, g, close_round(g, 1, credits_pay));
    ASSERT_EQ(g.round, 2u);
    const uint64_t shares = g.seats[0].credit + g.seats[1].credit + g.seats[2].credit;
    uint32_t covered = 0;
    for (uint32_t i = 0; i < 3; ++i) {
      if (g.seats[i].credit < cfg.contribution) continue;
      ++covered;
      EXPECT_EQ(owed(g, i, 2), 0u);
      EXPECT_EQ(g.seats[i].paid, credits_pay) << "seat " << i;
    }
    ASSERT_EQ(covered, 2u) << "credits " << shares;
    for (uint32_t i = 0; i < 3; ++i)
      if (g.seats[i].credit < cfg.contribution)
        step(l, g, contribute(g, i, wallet(i), 2, owed(g, i, 2), g.cfg.currency, 2));
    EXPECT_EQ(round_due(g, 3), credits_pay) << "every seat paid, or two that cannot pay 0";
  }
}

// Bidding: the lowest bid wins (the earliest of equal ones); the discount less the
// organizer's commission is a dividend that lowers every seat's next contribution, to
// the minor unit.
TEST(equb_rules, bidding_lowest_bid_wins_and_the_dividend_lowers_next_contributions) {
  ledger l;
  auto g = started(l, 4, bidding_config());
  ASSERT_EQ(nominal_pot(g), 40'000u);
  EXPECT_EQ(bid(g, 1, wallet(1), 1, 36'000).code, result::ok);
  EXPECT_EQ(bid(g, 2, wallet(2), 1, 33'999).code, result::ok);
  EXPECT_EQ(bid(g, 3, wallet(3), 1, 33'999).code, result::ok);  // equal, later: loses
  EXPECT_EQ(bid(g, 2, wallet(2), 1, 30'000).code, result::already_bid);
  EXPECT_EQ(bid(g, 0, wallet(0), 1, 27'999).code, result::bid_outside_limits);
  EXPECT_EQ(bid(g, 0, wallet(0), 1, 40'001).code, result::bid_outside_limits);
  EXPECT_EQ(bid(g, 0, wallet(0), 1, 0).code, result::bid_outside_limits);
  EXPECT_EQ(bid(g, 0, wallet(1), 1, 30'000).code, result::not_a_member);
  EXPECT_EQ(bid(g, 0, wallet(0), 2, 30'000).code, result::round_not_open);
  const auto o = close_round(g, 1);
  ASSERT_EQ(o.code, result::ok);
  EXPECT_EQ(o.recipient_seat, 2u);
  step(l, g, o);
  // Discount 6,001: commission 600 (10%, under the cap), dividend 5,401 = 4 x 1,350 + 1.
  EXPECT_EQ(l.bal[organizer], 600);
  const uint64_t gross = 40'000 - 6'001, fee = gross / 100;
  EXPECT_EQ(l.bal[wallet(2)], -10'000 + int64_t(gross - fee));
  EXPECT_EQ(g.seats[0].credit, 1'351u);
  for (uint32_t i = 1; i < 4; ++i) EXPECT_EQ(g.seats[i].credit, 1'350u);
  EXPECT_EQ(l.bal[escrow], 5'401);
  EXPECT_EQ(owed(g, 0, period), 10'000u - 1'351u);
  EXPECT_EQ(owed(g, 1, period), 10'000u - 1'350u);
  EXPECT_EQ(bid(g, 2, wallet(2), 2, 36'000).code, result::already_received);
  EXPECT_EQ(bid(g, 2, wallet(2), 1, 36'000).code, result::round_closed);
  // Round 2 without bids: the first seat in order that has not received.
  everyone_pays(l, g, period);
  const auto o2 = close_round(g, period);
  EXPECT_EQ(o2.recipient_seat, 0u);
  step(l, g, o2);
  EXPECT_EQ(l.bal[escrow], 0);
  // A group that does not bid refuses bids.
  ledger lf;
  auto fixed = started(lf, 2, config());
  EXPECT_EQ(bid(fixed, 1, wallet(1), 1, 2 * c).code, result::bidding_not_allowed);
}

// A discount in the last round has no next contribution to lower: the dividend is paid
// to the seats at once, and escrow ends empty.
TEST(equb_rules, bidding_dividend_of_the_last_round_is_paid_out) {
  ledger l;
  auto g = started(l, 2, bidding_config());
  step(l, g, close_round(g, 1));  // seat 0, no bids
  everyone_pays(l, g, period);
  EXPECT_EQ(bid(g, 1, wallet(1), 2, 18'000).code, result::ok);  // discount 2,000
  const int64_t w0 = l.bal[wallet(0)];
  step(l, g, close_round(g, period));
  EXPECT_EQ(g.ph, phase::completed);
  EXPECT_EQ(l.bal[escrow], 0);
  EXPECT_EQ(l.bal[organizer], 200);
  EXPECT_EQ(l.bal[wallet(0)], w0 + 900);  // half of the 1,800 dividend
}

// A bid's config for the discount tests: 4 seats of 100, bids down to half the nominal
// pot, no fee, a late penalty of 10.
group_config short_pot_config(uint32_t commission_bp) {
  auto cfg = bidding_config();
  cfg.contribution = 100;
  cfg.max_discount_bp = 5000;
  cfg.commission_bp = commission_bp;
  cfg.fee_bp = 0;
  cfg.late_penalty = 10;
  return cfg;
}

// The table's group of `cfg` (escrow `escrow`) of wallets 0..3, started at 3 (round 1
// to seat 0); seat 1 bids 200 for round 2 and only seat 2 pays it, at 5.
void short_pot_round_two(group_table& t, const group_config& cfg) {
  auto make_escrow = [](const wire::account&) { return true; };
  ASSERT_EQ(t.execute(create_op_of(cfg), 1, make_escrow), result::ok);
  join_all(t, cfg, {wallet(0), wallet(1), wallet(2), wallet(3)}, 2);
  wire::equb_op op;
  op.kind = wire::equb_op_kind::start;
  op.group_id = escrow;
  ASSERT_EQ(t.execute(op, 3, make_escrow), result::ok);  // round 1 pays seat 0 at once
  op.kind = wire::equb_op_kind::bid;
  op.seat = 1;
  op.wallet = wallet(1);
  op.round = 2;
  op.amount = 200;
  ASSERT_EQ(t.execute(op, 4, make_escrow), result::ok);
  const auto p = group_payment(cfg, wallet(2), 2, 2, 100);
  ASSERT_EQ(t.verdict(p, 5), result::ok);
  t.paid(p, 5);
}

// Repaid group parts shared out (the outcome's chain of its own), and dividends held for
// the close's cover.
uint64_t dividends_in(const outcome& o) {
  uint64_t n = 0;
  for (const auto& m : o.shared) n += m.amount;
  for (const auto& h : o.held) n += h.m.why == purpose::dividend ? h.m.amount : 0;
  return n;
}

// The winner bids 200 of the nominal 400 and only one seat pays: the pot (100) cannot pay
// the discount (200). From rules version 26 the rest (100) is owed to the group by the
// round's first missed debt (its group part): repaid, it is the seats' dividend, and the
// winner, owed the other debt and the penalties, ends as if every seat had paid, plus
// those penalties. By the rules before, the discount was the pot and the winner was
// owed both missed dues: 100 more than it bid, the dividend 100 short (the review's
// example, with numbers of its own).
TEST(equb_rules, a_bids_discount_the_pot_cannot_pay_is_owed_to_the_group) {
  for (const bool owed_rule : {true, false}) {
    SCOPED_TRACE(owed_rule ? "this build's rules" : "rules before version 26");
    ledger l;
    auto g = started(l, 4, short_pot_config(1000));  // commission: 10% of the discount
    step(l, g, close_round(g, 1));                   // round 1: seat 0, no bids
    const int64_t w1_start = l.bal[wallet(1)];
    ASSERT_EQ(bid(g, 1, wallet(1), 2, 200).code, result::ok);
    step(l, g, contribute(g, 2, wallet(2), 2, 100, g.cfg.currency, due_at(2)));  // seats 0, 1, 3 miss
    const auto o = close_round(g, due_at(2, grace) + 1, true, true, true, owed_rule);
    step(l, g, o);
    ASSERT_EQ(o.recipient_seat, 1u);
    EXPECT_EQ(l.bal[wallet(1)], w1_start) << "the pot went to the discount: nothing paid now";
    ASSERT_EQ(g.seats[0].debts.size(), 1u);
    ASSERT_EQ(g.seats[3].debts.size(), 1u);
    EXPECT_TRUE(g.seats[1].debts.empty()) << "the winner owes itself no due";
    EXPECT_EQ(g.seats[0].debts[0].amount, 110u);
    EXPECT_EQ(g.seats[0].debts[0].creditor_account_id, wallet(1));
    EXPECT_EQ(g.seats[0].debts[0].group_part, owed_rule ? 100u : 0u);
    EXPECT_EQ(g.seats[3].debts[0].group_part, 0u);
    // Commission 10% of the whole discount (20), of the pot before (10); the pot's rest
    // is the dividend now, as credits.
    EXPECT_EQ(l.bal[organizer], owed_rule ? 20 : 10);
    uint64_t credits = 0;
    for (const auto& s : g.seats) credits += s.credit;
    EXPECT_EQ(credits, owed_rule ? 80u : 90u);
    // Round 3: every seat pays what it owes; seat 0's debt goes on to the winner less its
    // group part, which the group holds for the seats until the close.
    const uint64_t at3 = due_at(2, grace) + 10;
    for (uint32_t i = 0; i < 4; ++i) step(l, g, contribute(g, i, wallet(i), 3, owed(g, i, at3), g.cfg.currency, at3));
    EXPECT_EQ(g.held, owed_rule ? 100u : 0u);
    EXPECT_EQ(l.bal[escrow], int64_t(400 + g.held)) << "the pot, and what it holds for the seats";
    const auto o3 = close_round(g, at3, true, true, true, owed_rule);
    step(l, g, o3);
    EXPECT_EQ(dividends_in(o3), owed_rule ? 100u : 0u) << "repaid group parts go to the seats at the close";
    EXPECT_EQ(g.held, 0u);
    everyone_pays(l, g, due_at(4));
    step(l, g, close_round(g, due_at(4), true, true, true, owed_rule));
    ASSERT_EQ(g.ph, phase::completed);
    EXPECT_EQ(l.bal[escrow], 0);
    // The winner: paid 100 (round 1), its round 3 due less its credit, 100 (round 4); got
    // the debts' parts owed to it (10 of seat 0's, 110 of seat 3's) and a share of the
    // repaid group part. Had every seat paid round 2, it would have paid 100 more and got
    // its 200 bid: the same, less the two penalties it is owed.
    const int64_t w1 = l.bal[wallet(1)] - w1_start;
    if (owed_rule) {
      EXPECT_EQ(w1, -80 - 100 + 120 + 25);
      const int64_t every_seat_paid = -100 - (100 - 45) - 100 + 200;  // a dividend of 180: 45 a seat
      EXPECT_EQ(w1, every_seat_paid + 2 * 10);
    } else {
      EXPECT_EQ(w1, -77 - 100 + 220) << "the winner got 100 more than its bid";
    }
  }
}

// One wallet with seats 0 and 1 of a bidding group: seat 1 wins round 2 with a discount
// the pot cannot pay, and seat 0, which missed the round (it won round 1), owes the
// winner's wallet, its own: what it owes itself is forgiven (rules version 46) and the
// group's part stays, a debt naming no creditor of a round seat 0 did not win. A snapshot
// loads that state (before, its reader refused the row, and the engine could not start).
TEST(equb_rules, a_seats_debt_left_to_the_group_alone_loads_from_a_snapshot) {
  ledger l;
  auto g = make_group(short_pot_config(1000));
  const uint64_t w = wallet(0);
  for (const uint64_t member : {w, w, wallet(2), wallet(3)}) step(l, g, join(g, member));
  step(l, g, start(g, 0, secret_a));
  step(l, g, close_round(g, 1));  // round 1: seat 0 (w), no bids
  ASSERT_EQ(g.seats[0].received_round, 1u);
  ASSERT_EQ(bid(g, 1, w, 2, 200).code, result::ok);
  step(l, g, contribute(g, 2, wallet(2), 2, 100, g.cfg.currency, due_at(2)));  // seats 0, 1, 3 miss
  const auto o = close_round(g, due_at(2, grace) + 1, true, true, true, true, true, {}, true);
  step(l, g, o);  // (step checks that the row decodes)
  ASSERT_EQ(o.recipient_seat, 1u);
  ASSERT_EQ(g.seats[0].debts.size(), 1u);
  const debt& d = g.seats[0].debts[0];
  EXPECT_EQ(d.round, 2u);
  EXPECT_EQ(d.creditor_account_id, 0u) << "owed to its own wallet: forgiven but for the group's part";
  EXPECT_EQ(d.group_part, d.amount);
  EXPECT_EQ(d.amount, 100u);
  group_state back;
  std::string why;
  ASSERT_TRUE(decode_group(encode_group(g), &back, &why)) << why;
  ASSERT_EQ(back.seats[0].debts.size(), 1u);
  EXPECT_EQ(back.seats[0].debts[0].group_part, 100u);
  // Round 3: seat 0 pays its due and the group's part; the group ends with nothing held.
  const uint64_t at3 = due_at(2, grace) + 10;
  for (uint32_t i = 0; i < 4; ++i) step(l, g, contribute(g, i, g.seats[i].wallet, 3, owed(g, i, at3), g.cfg.currency, at3));
  EXPECT_TRUE(g.seats[0].debts.empty());
  step(l, g, close_round(g, at3, true, true, true, true, true, {}, true));
  for (uint32_t i = 0; i < 4; ++i)
    if (!g.seats[i].paid)
      step(l, g, contribute(g, i, g.seats[i].wallet, 4, owed(g, i, due_at(4)), g.cfg.currency, due_at(4)));
  step(l, g, close_round(g, due_at(4), true, true, true, true, true, {}, true));
  ASSERT_EQ(g.ph, phase::completed);
  EXPECT_EQ(l.bal[escrow], 0);
}

// The winner missed its own due too, and bid 50 of a nominal 300 (a discount of 250):
// the pot (0) and the other missed dues (200) leave 50 of the discount, which the winner
// owes the group itself (a debt naming no creditor). Debts' group parts repaid after the
// group ended go to the seats at once.
TEST(equb_rules, a_winner_that_missed_owes_the_group_what_the_others_dues_cannot_cover) {
  ledger l;
  auto cfg = short_pot_config(0);
  cfg.max_discount_bp = bp_max;
  cfg.late_penalty = 0;
  auto g = started(l, 3, cfg);
  step(l, g, close_round(g, 1));  // round 1: seat 0
  ASSERT_EQ(bid(g, 1, wallet(1), 2, 50).code, result::ok);
  const uint64_t close2 = due_at(2, grace) + 1;
  const auto o = close_round(g, close2);  // nobody paid round 2
  step(l, g, o);
  ASSERT_EQ(o.recipient_seat, 1u);
  ASSERT_EQ(g.seats[1].debts.size(), 1u);
  EXPECT_EQ(g.seats[1].debts[0].amount, 50u);
  EXPECT_EQ(g.seats[1].debts[0].group_part, 50u);
  EXPECT_EQ(g.seats[1].debts[0].creditor_account_id, 0u);
  for (const uint32_t i : {0u, 2u}) {
    ASSERT_EQ(g.seats[i].debts.size(), 1u);
    EXPECT_EQ(g.seats[i].debts[0].group_part, 100u) << i;
  }
  // Round 3 (the last): seats 1 and 2 pay, their debts with them (held); seat 0 misses
  // and owes seat 2, which receives; the held parts go to the seats at that close.
  const uint64_t at3 = close2 + 10;
  step(l, g, contribute(g, 1, wallet(1), 3, 150, g.cfg.currency, at3));
  step(l, g, contribute(g, 2, wallet(2), 3, 200, g.cfg.currency, at3));
  EXPECT_EQ(g.held, 150u);
  const auto o3 = close_round(g, due_at(3, grace) + 1);
  step(l, g, o3);
  ASSERT_EQ(g.ph, phase::completed);
  EXPECT_EQ(dividends_in(o3), 150u);
  EXPECT_EQ(l.bal[escrow], 0);
  // After the end: seat 0's debts repaid (round 2's, wholly the group's 100, and round
  // 3's 100 to seat 2): the creditor's part forwarded, the group's shared out.
  ASSERT_EQ(debts_of(g.seats[0]), 200u);
  const int64_t to_seat2 = l.bal[wallet(2)];
  const auto r = repay(g, 0, wallet(0), g.round, 200, g.cfg.currency);
  step(l, g, r);
  EXPECT_EQ(dividends_in(r), 100u);
  EXPECT_EQ(l.bal[wallet(2)] - to_seat2, 100 + 33) << "seat 2 gets its debt and its share";
  EXPECT_EQ(l.bal[escrow], 0);
  EXPECT_EQ(dividends_in(o3) + dividends_in(r), 250u) << "the whole discount went to the seats";
}

// Under cover_from_guarantor the winner bids 200 of a nominal 400 and only seat 2 pays:
// the cover (300) makes the pot whole and pays the discount, but the escrow holds the
// cover only once the ledger carries the close's chain, which a guarantor without the
// money refuses. From rules version 41 the credits are what the pot held without the
// cover (100, 25 a seat), and the rest of the dividend (100) goes to the seats as
// dividends held for that chain (round 0, funded by round 2). Before, the credits were
// the whole dividend (200): more than the escrow held while the cover was refused, so the
// next chain paying them out was refused too.
TEST(equb_rules, a_dividend_only_a_cover_backs_waits_for_the_cover) {
  for (const bool backs : {true, false}) {
    SCOPED_TRACE(backs ? "this build's rules" : "rules before version 41");
    ledger l;
    auto cfg = short_pot_config(0);
    cfg.on_default = default_policy::cover_from_guarantor;
    cfg.guarantor_account_id = guarantor;
    auto g = started(l, 4, cfg);
    step(l, g, close_round(g, 1));  // round 1: seat 0
    ASSERT_EQ(bid(g, 1, wallet(1), 2, 200).code, result::ok);
    step(l, g, contribute(g, 2, wallet(2), 2, 100, g.cfg.currency, due_at(2)));  // seats 0, 1, 3 miss
    const int64_t escrow_without_cover = l.bal[escrow];
    ASSERT_EQ(escrow_without_cover, 100);
    const auto o = close_round(g, due_at(2, grace) + 1, true, true, true, true, backs);
    ASSERT_EQ(o.code, result::ok);
    ASSERT_EQ(o.recipient_seat, 1u);
    uint64_t cover = 0;
    for (const auto& m : o.transfers) cover += m.why == purpose::cover ? m.amount : 0;
    EXPECT_EQ(cover, 300u);
    uint64_t credits = 0;
    for (const auto& st : g.seats) credits += st.credit;
    if (!backs) {
      EXPECT_EQ(credits, 200u) << "more than the escrow holds without the cover";
      EXPECT_TRUE(o.held.empty());
      step(l, g, o);
      continue;
    }
    EXPECT_EQ(credits, 100u);
    EXPECT_LE(int64_t(credits), escrow_without_cover) << "the credits are what the escrow holds without the cover";
    for (const auto& st : g.seats) EXPECT_EQ(st.credit, 25u);
    ASSERT_EQ(o.held.size(), 4u);
    for (uint32_t i = 0; i < 4; ++i) {
      const auto& h = o.held[i];
      EXPECT_EQ(h.round, 0u);
      EXPECT_EQ(h.funded_by, 2u);
      EXPECT_EQ(h.m.why, purpose::dividend);
      EXPECT_EQ(h.m.debit_account_id, escrow);
      EXPECT_EQ(h.m.credit_account_id, wallet(i));
      EXPECT_EQ(h.m.amount, 25u);
    }
    EXPECT_EQ(dividends_in(o), 100u);
    const int64_t w1 = l.bal[wallet(1)];
    step(l, g, o);
    // The winner: its bid (200) less its own missed debt (110 with the penalty, to the
    // guarantor), and its held share (the model carries held chains with their cover).
    EXPECT_EQ(l.bal[wallet(1)] - w1, 200 - 110 + 25);
    // Round 3: each seat owes its due less its 25 (and its debt); all pay, seat 2 receives.
    everyone_pays(l, g, due_at(3));
    step(l, g, close_round(g, due_at(3)));
    everyone_pays(l, g, due_at(4));
    step(l, g, close_round(g, due_at(4)));
    ASSERT_EQ(g.ph, phase::completed);
    EXPECT_EQ(l.bal[escrow], 0);
    EXPECT_EQ(l.bal[guarantor], 3 * int64_t(cfg.late_penalty)) << "its covers back with the penalties";
  }
  // Shares to the minor unit: a dividend of 6 among 4 seats, 3 of it credits. Each seat
  // gets its share of the whole (2, 2, 1, 1), credited as far as its share of the
  // credits goes (1, 1, 1, 0), the rest held (1, 1, 0, 1).
  ledger l;
  auto cfg = short_pot_config(0);
  cfg.contribution = 3;
  cfg.late_penalty = 0;
  cfg.on_default = default_policy::cover_from_guarantor;
  cfg.guarantor_account_id = guarantor;
  auto g = started(l, 4, cfg);
  step(l, g, close_round(g, 1));
  ASSERT_EQ(bid(g, 1, wallet(1), 2, 6).code, result::ok);
  step(l, g, contribute(g, 2, wallet(2), 2, 3, g.cfg.currency, due_at(2)));
  const auto o = close_round(g, due_at(2, grace) + 1);
  step(l, g, o);
  const uint64_t credit[4] = {1, 1, 1, 0}, held[4] = {1, 1, 0, 1};
  std::vector<uint64_t> held_to(4, 0);
  for (const auto& h : o.held) held_to.at(h.m.credit_account_id - wallet(0)) += h.m.amount;
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(g.seats[i].credit, credit[i]) << i;
    EXPECT_EQ(held_to[i], held[i]) << i;
  }
}

// A seat whose debt has a group part wins the next round: its payout settles the group
// part first (the seats' dividend, paid at that close), then its creditor's. And a group
// dissolved while it holds repaid group parts shares them out with the refunds.
TEST(equb_rules, group_parts_are_settled_from_a_payout_first_and_shared_at_a_dissolution) {
  ledger l;
  auto g = started(l, 4, short_pot_config(0));
  step(l, g, close_round(g, 1));  // round 1: seat 0
  ASSERT_EQ(bid(g, 1, wallet(1), 2, 200).code, result::ok);
  step(l, g, contribute(g, 0, wallet(0), 2, 100, g.cfg.currency, due_at(2)));  // seats 2 and 3 miss
  step(l, g, close_round(g, due_at(2, grace) + 1));
  ASSERT_EQ(g.seats[2].debts.size(), 1u);
  EXPECT_EQ(g.seats[2].debts[0].group_part, 100u);
  EXPECT_EQ(g.seats[3].debts[0].group_part, 0u);
  const ledger l2 = l;
  const group_state g2 = g;
  // Seat 2 (the first that has not received, no bids) misses round 3 and receives it.
  const uint64_t at3 = due_at(2, grace) + 10;
  for (const uint32_t i : {0u, 1u, 3u}) step(l, g, contribute(g, i, wallet(i), 3, owed(g, i, at3), g.cfg.currency, at3));
  const int64_t w1 = l.bal[wallet(1)];
  const auto o3 = close_round(g, due_at(3, grace) + 1);
  step(l, g, o3);
  ASSERT_EQ(o3.recipient_seat, 2u);
  EXPECT_TRUE(g.seats[2].debts.empty());
  EXPECT_EQ(dividends_in(o3), 100u) << "the group part, settled first from the payout";
  EXPECT_EQ(l.bal[wallet(1)] - w1, 10 + 25) << "the creditor's part (the penalty) and a share";
  EXPECT_EQ(g.held, 0u);
  // The same group, seat 2 paying round 3 with its debt instead, then dissolved.
  ledger ld = l2;
  group_state d = g2;
  step(ld, d, contribute(d, 2, wallet(2), 3, owed(d, 2, at3), d.cfg.currency, at3));
  EXPECT_EQ(d.held, 100u);
  const auto od = dissolve(d);
  step(ld, d, od);
  EXPECT_EQ(dividends_in(od), 100u);
  EXPECT_EQ(d.held, 0u);
  EXPECT_EQ(ld.bal[escrow], 0);
  // Or seat 2 wins round 3 with a bid of 200 while it and seat 3 miss: its payout (the pot
  // of 250 less the discount) is 50, which settles part of its debt, the group's part
  // first: 50 shared, nothing to the creditor (wallet 1, which gets its share).
  ledger lp = l2;
  group_state p = g2;
  ASSERT_EQ(bid(p, 2, wallet(2), 3, 200).code, result::ok);
  for (const uint32_t i : {0u, 1u}) step(lp, p, contribute(p, i, wallet(i), 3, owed(p, i, at3), p.cfg.currency, at3));
  const int64_t w1p = lp.bal[wallet(1)];
  const auto op = close_round(p, due_at(3, grace) + 1);
  step(lp, p, op);
  ASSERT_EQ(op.recipient_seat, 2u);
  ASSERT_EQ(p.seats[2].debts.size(), 1u);
  EXPECT_EQ(p.seats[2].debts[0].amount, 60u);
  EXPECT_EQ(p.seats[2].debts[0].group_part, 50u);
  EXPECT_EQ(dividends_in(op), 50u);
  EXPECT_EQ(lp.bal[wallet(1)] - w1p, 13) << "a share of 50 (13, 13, 12, 12), nothing as the creditor";
}

// The group table decides a close by its record's rules: a short pot's discount is owed to
// the group from version 26 on, and capped by the pot before (replay of older logs).
TEST(equb_rules, group_table_owes_a_short_pots_discount_by_the_records_rules) {
  using mesob::actors::rules_bid_discount_owed;
  for (const uint16_t rules : {rules_bid_discount_owed, uint16_t(rules_bid_discount_owed - 1)}) {
    SCOPED_TRACE(rules);
    auto cfg = short_pot_config(0);
    cfg.group_id = cfg.escrow_account_id = escrow;
    group_table t;
    t.set_rules(rules);
    short_pot_round_two(t, cfg);
    if (HasFatalFailure()) return;
    const uint64_t after = deadline_after(3, 2, period, grace) + 1;
    ASSERT_TRUE(t.due(after));
    t.close_due(after);
    const group_entry& e = *t.find(escrow);
    ASSERT_EQ(e.g.round, 3u);
    ASSERT_EQ(e.g.seats[0].debts.size(), 1u);
    EXPECT_EQ(e.g.seats[0].debts[0].group_part, rules >= rules_bid_discount_owed ? 100u : 0u);
    const auto item = to_item(e);
    EXPECT_EQ(item.debts_to_group.at(0), rules >= rules_bid_discount_owed ? 100u : 0u);
    // Its entry (snapshot bytes) keeps the group part.
    group_entry back;
    std::string why;
    ASSERT_TRUE(decode_entry(encode_entry(e), &back, &why)) << why;
    EXPECT_EQ(back.g.seats[0].debts[0].group_part, e.g.seats[0].debts[0].group_part);
  }
}

// The group table decides a covered close's dividend by its record's rules: from version
// 41 the part only the cover backs is an obligation held back for the close's chain
// (waits_too), whose shares go to the seats once that chain is carried; by the rules
// before, the whole dividend is credits. From version 55 each seat's share is an
// obligation of its own (one wallet refusing holds back no other's).
TEST(equb_rules, group_table_holds_a_dividend_only_a_cover_backs_by_the_records_rules) {
  using mesob::actors::rules_cover_backs_credits;
  using mesob::actors::rules_equb_forwards_apart;
  for (const uint16_t rules :
       {rules_equb_forwards_apart, rules_cover_backs_credits, uint16_t(rules_cover_backs_credits - 1)}) {
    SCOPED_TRACE(rules);
    const bool backs = rules >= rules_cover_backs_credits, apart = rules >= rules_equb_forwards_apart;
    auto cfg = short_pot_config(0);
    cfg.group_id = cfg.escrow_account_id = escrow;
    cfg.on_default = default_policy::cover_from_guarantor;
    cfg.guarantor_account_id = guarantor;
    group_table t;
    t.set_rules(rules);
    std::vector<std::vector<wire::transfer>> sent;
    t.set_emit([&](std::vector<wire::transfer>&& chain) { sent.push_back(std::move(chain)); });
    short_pot_round_two(t, cfg);
    if (HasFatalFailure()) return;
    ASSERT_EQ(sent.size(), 1u) << "round 1's chain";
    t.chain_done(sent[0].front(), result::ok);
    t.close_due(deadline_after(3, 1, period, grace) + 1);  // seats 0, 1 and 3 covered (300)
    const group_entry& e = *t.find(escrow);
    ASSERT_EQ(e.g.round, 3u);
    ASSERT_EQ(sent.size(), 2u) << "the close's chain, the cover in it";
    uint64_t credits = 0;
    for (const auto& st : e.g.seats) credits += st.credit;
    EXPECT_EQ(credits, backs ? 100u : 200u);
    ASSERT_EQ(e.owed.size(), backs ? (apart ? 5u : 2u) : 1u);
    EXPECT_EQ(e.owed[0].covers_round, 2u);
    if (!backs) continue;
    for (size_t k = 1; k < e.owed.size(); ++k) {
      const obligation& held = e.owed[k];
      EXPECT_EQ(held.waits_for, 0u);
      EXPECT_EQ(held.waits_too, 2u);
      ASSERT_EQ(held.transfers.size(), apart ? 1u : 4u);
    }
    EXPECT_EQ(to_item(e).owed.back().waits_for_cover, 2u);
    EXPECT_EQ(escrow_expected(e), 100u) << "what the escrow holds: the credits, the cover not in yet";
    group_entry back;
    std::string why;
    ASSERT_TRUE(decode_entry(encode_entry(e), &back, &why)) << why;
    EXPECT_EQ(back.owed.at(1).waits_too, 2u);
    t.chain_done(sent[1].front(), result::ok);  // the cover is carried: the dividend goes
    ASSERT_EQ(sent.size(), apart ? 6u : 3u);
    std::vector<wire::transfer> shares;
    for (size_t k = 2; k < sent.size(); ++k) {
      EXPECT_EQ(sent[k].size(), apart ? 1u : 4u);
      shares.insert(shares.end(), sent[k].begin(), sent[k].end());
    }
    ASSERT_EQ(shares.size(), 4u);
    for (uint32_t i = 0; i < 4; ++i) {
      EXPECT_EQ(shares[i].debit_account_id, escrow);
      EXPECT_EQ(shares[i].credit_account_id, wallet(i));
      EXPECT_EQ(shares[i].amount, 25u);
      EXPECT_EQ(shares[i].code, emitted_code_base + uint16_t(purpose::dividend));
    }
    for (size_t k = 2; k < sent.size(); ++k) t.chain_done(sent[k].front(), result::ok);
    EXPECT_TRUE(t.find(escrow)->owed.empty());
    EXPECT_EQ(escrow_expected(*t.find(escrow)), 100u);
  }
}

namespace {
// A cover_from_guarantor group (or `pol`'s) of `seats` seats (wallet(i) in seat i, or
// owners[i]) in a table that keeps the chains it sends, started at 3 by `rules`: round 1
// paid out, its chain carried.
struct cover_group {
  group_config cfg = [] {
    auto x = config(rotation::fixed_order, default_policy::cover_from_guarantor);
    x.group_id = escrow;  // in the engine a group's id is its escrow account's
    return x;
  }();
  group_table t;
  std::vector<std::vector<wire::transfer>> sent;
  static bool make_escrow(const wire::account&) { return true; }

  explicit cover_group(uint32_t seats, uint16_t rules = mesob::actors::rules_newest,
                       default_policy pol = default_policy::cover_from_guarantor,
                       const std::vector<uint64_t>& owners = {}) {
    cfg.on_default = pol;
    cfg.guarantor_account_id = pol == default_policy::cover_from_guarantor ? guarantor : 0;
    t.set_rules(rules);
    t.set_emit([this](std::vector<wire::transfer>&& chain) { sent.push_back(std::move(chain)); });
    EXPECT_EQ(t.execute(create_op_of(cfg), 1, make_escrow), result::ok);
    for (uint32_t i = 0; i < seats; ++i) pay(i, 0, cfg.contribution, 2, i < owners.size() ? owners[i] : 0);
    wire::equb_op op;
    op.kind = wire::equb_op_kind::start;
    op.group_id = escrow;
    EXPECT_EQ(t.execute(op, 3, make_escrow), result::ok);  // round 1 pays seat 0 at once
    EXPECT_EQ(sent.size(), 1u);
    if (!sent.empty()) t.chain_done(sent[0].front(), result::ok);
  }
  // Seat i pays `amount` for `round` at ts (round 0 joins), from `payer` (0: wallet(i)).
  void pay(uint32_t i, uint32_t round, uint64_t amount, uint64_t ts, uint64_t payer = 0) {
    const auto p = group_payment(cfg, payer != 0 ? payer : wallet(i), round, round == 0 ? 0 : i, amount);
    EXPECT_EQ(t.verdict(p, ts), result::ok) << "seat " << i << " round " << round;
    t.paid(p, ts);
  }
  result replace(uint64_t from, uint64_t to, uint64_t ts) {
    wire::equb_op op;
    op.kind = wire::equb_op_kind::replace_account;
    op.group_id = escrow;
    op.wallet = from;
    op.amount = to;
    return t.execute(op, ts, make_escrow);
  }
  result retry(uint64_t ts) {
    wire::equb_op op;
    op.kind = wire::equb_op_kind::retry;
    op.group_id = escrow;
    return t.execute(op, ts, make_escrow);
  }
  [[nodiscard]] const group_entry& e() const { return *t.find(escrow); }
  // The chains sent from the `from`th on settled: refused (credit_account_frozen) those
  // crediting `frozen`, the rest carried.
  void settle_sent_from(size_t from, uint64_t frozen) {
    for (size_t k = from; k < sent.size(); ++k) {
      const auto& chain = sent[k];
      const bool refused = std::any_of(chain.begin(), chain.end(),
                                       [&](const wire::transfer& x) { return x.credit_account_id == frozen; });
      t.chain_done(chain.front(), refused ? result::credit_account_frozen : result::ok);
    }
  }
};
}  // namespace

// A dissolution's refunds go one transfer a chain (rules version 45): the ledger refusing
// one (a frozen wallet) holds back that seat's alone, and an operator's retry sends it
// again. Before, they were one chain, refused whole: every seat's money waited.
TEST(equb_rules, group_table_sends_a_dissolutions_refunds_apart_by_the_records_rules) {
  using mesob::actors::rules_refunds_apart;
  for (const uint16_t rules : {rules_refunds_apart, uint16_t(rules_refunds_apart - 1)}) {
    SCOPED_TRACE(rules);
    const bool apart = rules >= rules_refunds_apart;
    cover_group g(3, rules);
    auto& [cfg, t, sent] = g;
    for (const uint32_t i : {0u, 1u}) g.pay(i, 2, c, 4);  // round 2 stays open: seat 2 has not paid
    wire::equb_op op;
    op.kind = wire::equb_op_kind::dissolve;
    op.group_id = escrow;
    ASSERT_EQ(t.execute(op, 5, cover_group::make_escrow), result::ok);
    const size_t before = 1;  // round 1's chain
    ASSERT_EQ(sent.size(), before + (apart ? 2u : 1u)) << "seats 0 and 1's refunds";
    ASSERT_EQ(g.e().owed.size(), apart ? 2u : 1u);
    // Seat 1's wallet is frozen: its refund is refused.
    g.settle_sent_from(before, wallet(1));
    ASSERT_EQ(g.e().owed.size(), 1u);
    const obligation& left = g.e().owed[0];
    EXPECT_TRUE(left.refused);
    EXPECT_EQ(left.refusal, result::credit_account_frozen);
    ASSERT_EQ(left.transfers.size(), apart ? 1u : 2u) << "only the frozen wallet's refund waits";
    EXPECT_EQ(escrow_expected(g.e()), apart ? c : 2 * c) << "what the escrow still holds";
    EXPECT_EQ(g.retry(6), result::ok);  // unfrozen since
    ASSERT_EQ(sent.size(), before + (apart ? 3u : 2u));
    EXPECT_EQ(sent.back().size(), apart ? 1u : 2u);
    t.chain_done(sent.back().front(), result::ok);
    EXPECT_TRUE(g.e().owed.empty());
    EXPECT_EQ(escrow_expected(g.e()), 0u);
  }
}

// A group table decides by the record's rules whether a seat may owe its own wallet: a
// close where one wallet's seat misses the round its other seat receives, and an account
// replaced by the wallet of a seat that owed it. From rules version 46 neither debt is
// kept (neither had a part owed to the group); before, both stayed, for the seat to pay
// into the escrow and have forwarded back.
TEST(equb_rules, group_table_keeps_no_debt_owed_to_itself_by_the_records_rules) {
  using mesob::actors::rules_no_debt_to_itself;
  for (const uint16_t rules : {rules_no_debt_to_itself, uint16_t(rules_no_debt_to_itself - 1)}) {
    SCOPED_TRACE(rules);
    // A close: seats 0 and 1 are wallet 0's; seat 0 misses round 2, which seat 1 receives.
    {
      cover_group two(3, rules, default_policy::pay_what_is_there, {wallet(0), wallet(0), wallet(2)});
      two.pay(1, 2, c, 4, wallet(0));
      two.pay(2, 2, c, 4);
      two.t.close_due(deadline_after(3, 1, period, grace) + 1);
      ASSERT_EQ(two.e().g.round, 3u);
      EXPECT_EQ(two.e().g.seats[0].debts.size(), rules >= rules_no_debt_to_itself ? 0u : 1u);
    }
    cover_group g(3, rules, default_policy::pay_what_is_there);
    auto& [cfg, t, sent] = g;
    for (const uint32_t i : {0u, 1u}) g.pay(i, 2, c, 4);  // seat 2 misses round 2
    const uint64_t after = deadline_after(3, 1, period, grace) + 1;
    t.close_due(after);  // seat 1 receives, seat 2 owes wallet 1
    ASSERT_EQ(g.e().g.round, 3u);
    ASSERT_EQ(g.e().g.seats[2].debts.size(), 1u);
    EXPECT_EQ(g.e().g.seats[2].debts[0].creditor_account_id, wallet(1));
    ASSERT_EQ(g.replace(wallet(1), wallet(2), after + 1), result::ok);
    EXPECT_EQ(g.e().g.seats[1].wallet, wallet(2));
    if (rules >= rules_no_debt_to_itself) {
      EXPECT_TRUE(g.e().g.seats[2].debts.empty());
      EXPECT_EQ(owed(g.e().g, 2, after + 2), c);
    } else {
      ASSERT_EQ(g.e().g.seats[2].debts.size(), 1u);
      EXPECT_EQ(g.e().g.seats[2].debts[0].creditor_account_id, wallet(2)) << "owed to itself";
    }
  }
}

// An active group's forwards of a seat's debts, paid with its contribution, go one
// transfer a chain from rules version 55: the ledger refusing one (its creditor's wallet
// frozen) holds back that creditor's alone. Before, they were one chain, refused whole:
// every creditor waited for the operator.
TEST(equb_rules, group_table_sends_an_active_groups_forwards_apart_by_the_records_rules) {
  using mesob::actors::rules_equb_forwards_apart;
  for (const uint16_t rules : {rules_equb_forwards_apart, uint16_t(rules_equb_forwards_apart - 1)}) {
    SCOPED_TRACE(rules);
    const bool apart = rules >= rules_equb_forwards_apart;
    cover_group g(5, rules, default_policy::pay_what_is_there);
    auto& [cfg, t, sent] = g;
    // Seat 3 misses rounds 2 and 3: it owes their recipients, seats 1 and 2.
    uint64_t at = 4;
    for (const uint32_t round : {2u, 3u}) {
      for (const uint32_t i : {0u, 1u, 2u, 4u}) g.pay(i, round, c, at);
      const size_t before = sent.size();
      t.close_due(deadline_after(3, round - 1, period, grace) + 1);
      ASSERT_EQ(g.e().g.round, round + 1);
      for (size_t k = before; k < sent.size(); ++k) t.chain_done(sent[k].front(), result::ok);
      at = deadline_after(3, round - 1, period, grace) + 2;
    }
    ASSERT_EQ(g.e().g.seats[3].debts.size(), 2u);
    EXPECT_EQ(g.e().g.seats[3].debts[0].creditor_account_id, wallet(1));
    EXPECT_EQ(g.e().g.seats[3].debts[1].creditor_account_id, wallet(2));
    ASSERT_TRUE(g.e().owed.empty());
    const size_t before = sent.size();
    g.pay(3, 4, owed(g.e().g, 3, at), at);  // round 4's due and both debts
    ASSERT_EQ(sent.size(), before + (apart ? 2u : 1u)) << "the two forwards";
    // Wallet 1 is frozen: its forward is refused.
    g.settle_sent_from(before, wallet(1));
    ASSERT_EQ(g.e().owed.size(), 1u);
    const obligation& left = g.e().owed[0];
    EXPECT_TRUE(left.refused);
    ASSERT_EQ(left.transfers.size(), apart ? 1u : 2u) << "only the frozen wallet's forward waits";
    EXPECT_EQ(left.transfers[0].credit_account_id, wallet(1));
    EXPECT_EQ(g.retry(at + 1), result::ok);  // unfrozen since
    ASSERT_EQ(sent.back().size(), apart ? 1u : 2u);
    t.chain_done(sent.back().front(), result::ok);
    EXPECT_TRUE(g.e().owed.empty());
  }
}

// From rules version 55 a group sends one transfer an obligation while it owes fewer
// than owed_apart_max (1,024) obligations; past that, the rest of a decision's transfers
// go as one chain, as before the rules that split them (settling an obligation costs the
// list's length). Here 600 leavers' refunds are still owed when 1,000 seats' dissolution
// refunds come: 424 go apart, 576 together. By rules 54, all 1,000 apart.
TEST(equb_rules, a_group_owing_many_obligations_sends_the_rest_of_a_decision_together) {
  using mesob::actors::equb::owed_apart_max;
  using mesob::actors::rules_equb_forwards_apart;
  static_assert(owed_apart_max == 1'024);
  for (const uint16_t rules : {rules_equb_forwards_apart, uint16_t(rules_equb_forwards_apart - 1)}) {
    SCOPED_TRACE(rules);
    const bool capped = rules >= rules_equb_forwards_apart;
    auto cfg = config();
    cfg.group_id = escrow;
    group_table t;
    t.set_rules(rules);
    size_t chains = 0;
    t.set_emit([&](std::vector<wire::transfer>&&) { ++chains; });
    auto make_escrow = [](const wire::account&) { return true; };
    ASSERT_EQ(t.execute(create_op_of(cfg), 1, make_escrow), result::ok);
    auto join = [&](uint64_t w) {
      const auto p = group_payment(cfg, w, 0, 0, cfg.contribution);
      ASSERT_EQ(t.verdict(p, 2), result::ok);
      t.paid(p, 2);
    };
    for (uint32_t i = 0; i < 1'000; ++i) join(wallet(i));
    for (uint32_t i = 1'000; i-- > 400;) {  // the last 600 leave, last first: their refunds owed
      wire::equb_op leave;
      leave.kind = wire::equb_op_kind::leave;
      leave.group_id = escrow;
      leave.seat = i;
      leave.wallet = wallet(i);
      ASSERT_EQ(t.execute(leave, 3, make_escrow), result::ok);
    }
    for (uint32_t i = 0; i < 600; ++i) join(wallet(2'000 + i));
    ASSERT_EQ(t.find(escrow)->owed.size(), 600u);
    wire::equb_op dissolve;
    dissolve.kind = wire::equb_op_kind::dissolve;
    dissolve.group_id = escrow;
    ASSERT_EQ(t.execute(dissolve, 4, make_escrow), result::ok);
    const auto& owed = t.find(escrow)->owed;
    ASSERT_EQ(owed.size(), capped ? owed_apart_max + 1 : 1'600u);
    EXPECT_EQ(chains, owed.size());
    EXPECT_EQ(owed[owed_apart_max - 1].transfers.size(), 1u);
    EXPECT_EQ(owed.back().transfers.size(), capped ? 576u : 1u);
    uint64_t refunds = 0;
    for (const auto& o : owed) refunds += o.transfers.size();
    EXPECT_EQ(refunds, 1'600u);
    EXPECT_EQ(escrow_expected(*t.find(escrow)), 1'600 * c) << "every refund still owed";
  }
}

// A cover carried re-points its round's debts to the account that paid it; from rules
// version 55 one that then names the owing seat's own wallet is forgiven (it keeps only
// a part owed to the group), as at a close and a replace_account. Here the guarantor is
// replaced while its cover is in flight, and the seat that missed the round is then
// given the guarantor's account: the cover it paid was its own due. Before, the seat
// owed itself for good.
TEST(equb_rules, a_cover_paid_by_the_owing_seats_own_wallet_leaves_it_no_debt_to_itself) {
  using mesob::actors::rules_equb_forwards_apart;
  for (const uint16_t rules : {rules_equb_forwards_apart, uint16_t(rules_equb_forwards_apart - 1)}) {
    SCOPED_TRACE(rules);
    cover_group g(3, rules);
    auto& [cfg, t, sent] = g;
    for (const uint32_t i : {0u, 1u}) g.pay(i, 2, c, 4);  // seat 2 misses round 2
    const uint64_t after = deadline_after(3, 1, period, grace) + 1;
    const size_t before = sent.size();
    t.close_due(after);
    ASSERT_EQ(g.e().g.round, 3u);
    ASSERT_EQ(sent.size(), before + 1) << "the close's chain, the guarantor's cover in it";
    ASSERT_EQ(g.e().g.seats[2].debts.size(), 1u);
    EXPECT_EQ(g.e().g.seats[2].debts[0].creditor_account_id, guarantor);
    constexpr uint64_t other = 950;
    ASSERT_EQ(g.replace(guarantor, other, after + 1), result::ok);
    ASSERT_EQ(g.replace(wallet(2), guarantor, after + 2), result::ok);
    t.chain_done(sent[before].front(), result::ok);  // the cover, paid from the guarantor's account
    if (rules >= rules_equb_forwards_apart) {
      EXPECT_TRUE(g.e().g.seats[2].debts.empty());
      EXPECT_EQ(owed(g.e().g, 2, after + 3), c) << "round 3's due alone";
    } else {
      ASSERT_EQ(g.e().g.seats[2].debts.size(), 1u);
      EXPECT_EQ(g.e().g.seats[2].debts[0].creditor_account_id, guarantor) << "owed to itself";
    }
  }
}

// The group table writes off a seat's debts from rules version 51, an event a debt, and
// the group then retires at its time; by the rules before, the kind was unknown
// (equb_op_invalid) and a group with a debt never paid stayed for good.
TEST(equb_rules, group_table_writes_off_a_seats_debts_by_the_records_rules) {
  using mesob::actors::rules_equb_write_off;
  for (const uint16_t rules : {rules_equb_write_off, uint16_t(rules_equb_write_off - 1)}) {
    SCOPED_TRACE(rules);
    const bool writes_off = rules >= rules_equb_write_off;
    cover_group g(2, rules, default_policy::pay_what_is_there);  // round 1: seat 0, at 3
    auto& t = g.t;
    std::vector<wire::event> events;
    t.set_events([&](wire::event&& ev) { events.push_back(ev); });
    t.set_retire([](const group_entry&) { return 1u; });
    wire::equb_op dissolve;
    dissolve.kind = wire::equb_op_kind::dissolve;
    dissolve.group_id = escrow;
    ASSERT_EQ(t.execute(dissolve, 4, cover_group::make_escrow), result::ok);
    ASSERT_EQ(g.e().g.seats[0].debts.size(), 1u) << "seat 0 received: it owes seat 1 a contribution";
    ASSERT_TRUE(g.e().owed.empty());
    const uint64_t retire_at = g.e().retire_at;
    wire::equb_op off;
    off.kind = wire::equb_op_kind::write_off;
    off.group_id = escrow;
    off.seat = 0;
    off.wallet = wallet(0);
    off.amount = c;
    ASSERT_EQ(check_op_fields(off), result::ok);
    EXPECT_EQ(t.execute(off, 5, cover_group::make_escrow), writes_off ? result::ok : result::equb_op_invalid);
    EXPECT_EQ(g.e().g.seats[0].debts.empty(), writes_off);
    if (writes_off) {
      ASSERT_EQ(events.size(), 1u);
      EXPECT_EQ(events[0].type, wire::event_type::equb_debt_written_off);
      EXPECT_EQ(events[0].account_a, escrow);
      EXPECT_EQ(events[0].account_b, wallet(1));
      EXPECT_EQ(events[0].amount, c);
      EXPECT_EQ(events[0].code, 0u);
      EXPECT_EQ(events[0].ref.lo, 2u) << "the round the dissolution made the debt in";
      EXPECT_EQ(events[0].currency, g.cfg.currency);
      EXPECT_EQ(t.execute(off, 6, cover_group::make_escrow), result::nothing_owed) << "a repeat changes nothing";
    } else {
      EXPECT_TRUE(events.empty());
    }
    events.clear();
    t.close_due(retire_at + 1);
    EXPECT_EQ(t.find(escrow) == nullptr, writes_off) << "retired once nothing is owed";
  }
}

// A guarantor is repaid a round's cover only once the ledger has carried that cover
// (rules version 36): a member's repayment while the round's close chain is in flight or
// refused is held back in escrow, an obligation of its own, and sent when the chain is
// carried, to the account that paid the cover: a guarantor replaced while its cover was
// refused, the new one; replaced while the cover was in flight (and then carried), the
// old one. Before, the repayment went at once, to a guarantor that had not covered.
TEST(equb_rules, group_table_holds_a_guarantors_repayment_until_its_cover_is_carried) {
  using mesob::actors::rules_cover_forwards_wait;
  constexpr uint64_t new_guarantor = 6100;
  // Cover in flight, cover refused then the guarantor replaced, older rules, the guarantor
  // replaced while the cover is in flight.
  for (const int k : {0, 1, 2, 3}) {
    SCOPED_TRACE(k);
    cover_group g(3, k == 2 ? uint16_t(rules_cover_forwards_wait - 1) : rules_cover_forwards_wait);
    auto& [cfg, t, sent] = g;
    for (const uint32_t i : {0u, 1u}) g.pay(i, 2, c, 4);
    const uint64_t after = deadline_after(3, 1, period, grace) + 1;  // round 2 closes, seat 2 covered
    t.close_due(after);
    ASSERT_EQ(sent.size(), 2u);
    const auto cover_chain = sent[1];
    const auto cover = std::find_if(cover_chain.begin(), cover_chain.end(), [](const wire::transfer& x) {
      return x.code == emitted_code_base + uint16_t(purpose::cover);
    });
    ASSERT_NE(cover, cover_chain.end());
    EXPECT_EQ(cover->debit_account_id, guarantor);
    EXPECT_EQ(t.find(escrow)->owed.at(0).covers_round, k == 2 ? 0u : 2u);
    if (k == 1) {  // the guarantor has not the money
      t.chain_done(cover_chain.front(), result::exceeds_credits);
      ASSERT_TRUE(t.find(escrow)->owed.at(0).refused);
    }
    if (k == 3) {  // the debt now names the new one; the chain in flight, the old
      ASSERT_EQ(g.replace(guarantor, new_guarantor, after), result::ok);
      EXPECT_EQ(t.find(escrow)->g.seats[2].debts.at(0).creditor_account_id, new_guarantor);
    }
    // Seat 2 pays round 3 with its debt for round 2 (its due and the penalty).
    const uint64_t debt = c + cfg.late_penalty;
    g.pay(2, 3, c + debt, after + 1);
    const group_entry& e = g.e();
    EXPECT_TRUE(e.g.seats[2].debts.empty());
    if (k == 2) {  // sent at once
      ASSERT_EQ(sent.size(), 3u);
      ASSERT_EQ(sent[2].size(), 1u);
      EXPECT_EQ(sent[2][0].credit_account_id, guarantor);
      EXPECT_EQ(sent[2][0].amount, debt);
      continue;
    }
    ASSERT_EQ(sent.size(), 2u) << "the repayment waits for the cover";
    ASSERT_EQ(e.owed.size(), 2u);
    const obligation& held = e.owed[1];
    EXPECT_EQ(held.waits_for, 2u);
    EXPECT_FALSE(held.refused);
    EXPECT_FALSE(in_flight(held));
    ASSERT_EQ(held.transfers.size(), 1u);
    EXPECT_EQ(held.transfers[0].credit_account_id, k == 3 ? new_guarantor : guarantor);
    EXPECT_EQ(held.transfers[0].amount, debt);
    EXPECT_EQ(to_item(e).owed.back().waits_for_cover, 2u);
    // What escrow holds counts it: the cover still to come in, the repayment still to go.
    uint64_t out = 0, in = 0;
    for (const auto& o : e.owed)
      for (const auto& m : o.transfers) {
        if (m.debit_account_id == escrow) out += m.amount;
        if (m.credit_account_id == escrow) in += m.amount;
      }
    EXPECT_EQ(escrow_expected(e), e.g.escrow + out - in);
    // A snapshot keeps which round each waits for and carries; one that loses the cover
    // is refused (the forward would wait for good).
    group_entry back;
    std::string why;
    ASSERT_TRUE(decode_entry(encode_entry(e), &back, &why)) << why;
    EXPECT_EQ(back.owed.at(0).covers_round, 2u);
    EXPECT_EQ(back.owed.at(1).waits_for, 2u);
    group_entry lost = e;
    lost.owed.erase(lost.owed.begin());
    EXPECT_FALSE(decode_entry(encode_entry(lost), &back, &why));
    EXPECT_NE(why.find("an obligation held back waits for a cover no obligation carries"), std::string::npos) << why;
    uint64_t repaid_to = guarantor;
    if (k == 1) {
      // The guarantor is replaced: the new one covers, and the repayment follows the cover.
      ASSERT_EQ(g.replace(guarantor, new_guarantor, after + 2), result::ok);
      ASSERT_EQ(g.retry(after + 3), result::ok);
      ASSERT_EQ(sent.size(), 3u) << "the cover again; the repayment still waits";
      EXPECT_EQ(t.find(escrow)->owed[1].waits_for, 2u);
      repaid_to = new_guarantor;
    }
    t.chain_done(sent.back().front(), result::ok);  // the cover is carried
    ASSERT_EQ(sent.size(), k == 1 ? 4u : 3u);
    ASSERT_EQ(sent.back().size(), 1u);
    EXPECT_EQ(sent.back()[0].credit_account_id, repaid_to);
    EXPECT_EQ(sent.back()[0].amount, debt);
    ASSERT_EQ(t.find(escrow)->owed.size(), 1u);
    EXPECT_TRUE(in_flight(t.find(escrow)->owed[0]));
    t.chain_done(sent.back().front(), result::ok);
    EXPECT_TRUE(t.find(escrow)->owed.empty());
    EXPECT_EQ(escrow_expected(*t.find(escrow)), t.find(escrow)->g.escrow);
  }
}

// A guarantor replaced while its cover is in flight: once the ledger carries that cover,
// the round's debts are owed to the account that paid it, so a repayment after it goes
// there too, as a held one does (before, the debts named the new guarantor, repaid a
// cover it never made).
TEST(equb_rules, group_table_repays_a_cover_to_its_payer_after_a_replace_in_flight) {
  constexpr uint64_t new_guarantor = 6100;
  cover_group g(4);
  auto& [cfg, t, sent] = g;
  for (const uint32_t i : {0u, 1u}) g.pay(i, 2, c, 4);  // seats 2 and 3 miss round 2
  const uint64_t after = deadline_after(3, 1, period, grace) + 1;
  t.close_due(after);
  ASSERT_EQ(sent.size(), 2u);  // round 2's chain, the cover from `guarantor`, in flight
  ASSERT_EQ(g.replace(guarantor, new_guarantor, after + 1), result::ok);
  const uint64_t debt = c + cfg.late_penalty;
  g.pay(2, 3, c + debt, after + 2);  // held: its cover in flight
  EXPECT_EQ(t.find(escrow)->g.seats[3].debts.at(0).creditor_account_id, new_guarantor);
  t.chain_done(sent[1].front(), result::ok);  // carried: `guarantor` covered both
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[2].at(0).credit_account_id, guarantor) << "the held repayment";
  EXPECT_EQ(t.find(escrow)->g.seats[3].debts.at(0).creditor_account_id, guarantor);
  g.pay(3, 3, c + debt, after + 3);  // after the cover: at once
  ASSERT_EQ(sent.size(), 4u);
  ASSERT_EQ(sent[3].size(), 1u);
  EXPECT_EQ(sent[3][0].credit_account_id, guarantor);
  EXPECT_EQ(sent[3][0].amount, debt);
}

// A recipient's older debt settled from its payout, its round's cover not carried, waits
// for that cover and for the close's own chain when a cover in it pays the payout: in
// whichever order the two are carried, the repayment goes after both. (Held for the older
// round alone, it could go while the payout's own cover was refused, out of other money
// in escrow or refused for the lack of it.)
TEST(equb_rules, group_table_holds_a_repayment_from_a_payout_for_the_payouts_own_cover_too) {
  for (const bool older_first : {true, false}) {
    SCOPED_TRACE(older_first);
    cover_group g(3);
    auto& [cfg, t, sent] = g;
    // Seat 2 misses rounds 2 and 3 (its own); the guarantor has not the money for either.
    for (const uint32_t round : {2u, 3u}) {
      for (const uint32_t i : {0u, 1u}) g.pay(i, round, c, deadline_after(3, round - 2, period, grace) + 2);
      t.close_due(deadline_after(3, round - 1, period, grace) + 1);
      ASSERT_EQ(sent.size(), round);
      t.chain_done(sent.back().front(), result::exceeds_credits);
    }
    const group_entry& e = g.e();
    ASSERT_EQ(e.g.ph, phase::completed);
    // Round 3's chain settled seat 2's round-3 debt in it; its round-2 debt is held.
    ASSERT_EQ(e.owed.size(), 3u);
    EXPECT_EQ(e.owed[1].covers_round, 3u);
    const obligation& held = e.owed[2];
    EXPECT_EQ(held.waits_for, 2u);
    EXPECT_EQ(held.waits_too, 3u);
    ASSERT_EQ(held.transfers.size(), 1u);
    EXPECT_EQ(held.transfers[0].amount, c + cfg.late_penalty);
    group_entry back;
    std::string why;
    ASSERT_TRUE(decode_entry(encode_entry(e), &back, &why)) << why;
    EXPECT_EQ(back.owed.at(2).waits_too, 3u);
    ASSERT_EQ(g.retry(deadline_after(3, 3, period, grace)), result::ok);
    ASSERT_EQ(sent.size(), 5u) << "both chains again, the repayment still held";
    const auto round2 = sent[3], round3 = sent[4];
    t.chain_done((older_first ? round2 : round3).front(), result::ok);
    EXPECT_EQ(sent.size(), 5u) << "one of the two carried: still held";
    EXPECT_TRUE(held_back(t.find(escrow)->owed.back()));
    uint64_t repaid_to = guarantor;
    if (older_first) {
      // Bound to the payer of round 2's cover, it is replaced as a refused chain is (the
      // payer closed meanwhile, say), before it is ever sent.
      constexpr uint64_t successor = 6200;
      ASSERT_EQ(g.replace(guarantor, successor, deadline_after(3, 3, period, grace) + 1), result::ok);
      EXPECT_EQ(t.find(escrow)->owed.back().transfers.at(0).credit_account_id, successor);
      repaid_to = successor;
    }
    t.chain_done((older_first ? round3 : round2).front(), result::ok);
    ASSERT_EQ(sent.size(), 6u);
    ASSERT_EQ(sent[5].size(), 1u);
    EXPECT_EQ(sent[5][0].credit_account_id, repaid_to);
    EXPECT_EQ(sent[5][0].amount, c + cfg.late_penalty);
    t.chain_done(sent[5].front(), result::ok);
    EXPECT_TRUE(t.find(escrow)->owed.empty());
  }
}

// Round 1 is paid by the deposits and pays out at the start. From rules version 27 round
// k is due at the start + k - 1 periods, so round 2, the first the members pay, has one
// period like every later round; a group started by the rules before keeps round k due
// at the start + k periods (round 2 had two), in its bytes (the schedule offset) and its
// wire item, whatever the rules of the records after its start.
TEST(equb_rules, group_table_gives_round_two_one_period_from_rules_27) {
  using mesob::actors::rules_newest;
  using mesob::actors::rules_round_two_one_period;
  for (const uint16_t rules : {rules_round_two_one_period, uint16_t(rules_round_two_one_period - 1)}) {
    SCOPED_TRACE(rules);
    const bool one = rules >= rules_round_two_one_period;
    auto cfg = config();
    cfg.group_id = cfg.escrow_account_id = escrow;
    group_table t;
    t.set_rules(rules);
    auto make_escrow = [](const wire::account&) { return true; };
    ASSERT_EQ(t.execute(create_op_of(cfg), 1, make_escrow), result::ok);
    join_all(t, cfg, {wallet(0), wallet(1), wallet(2)}, 2);
    EXPECT_EQ(to_item(*t.find(escrow)).round_deadline, 0u) << "forming: no round";
    wire::equb_op start;
    start.kind = wire::equb_op_kind::start;
    start.group_id = escrow;
    constexpr uint64_t t0 = 1'000;
    ASSERT_EQ(t.execute(start, t0, make_escrow), result::ok);  // round 1 pays seat 0 at once
    t.set_rules(rules_newest);  // later records' rules do not move a started group
    const group_entry& e = *t.find(escrow);
    ASSERT_EQ(e.g.round, 2u);
    EXPECT_EQ(e.g.schedule_offset, one ? 1u : 0u);
    const uint64_t deadline2 = t0 + (one ? 1 : 2) * period;
    EXPECT_EQ(round_deadline(e.g), deadline2);
    EXPECT_EQ(round_close(e.g), deadline2 + grace);
    const auto item = to_item(e);
    EXPECT_EQ(item.round_deadline, deadline2);
    EXPECT_EQ(item.round_close, deadline2 + grace);
    // A period and a minute after the start: late by the new schedule, on time by the old.
    const uint64_t at = t0 + period + 60'000'000'000ull;
    const auto on_time = group_payment(cfg, wallet(0), 2, 0, c);
    const auto late = group_payment(cfg, wallet(0), 2, 0, c + cfg.late_penalty);
    EXPECT_EQ(t.verdict(on_time, at), one ? result::wrong_amount : result::ok);
    EXPECT_EQ(t.verdict(late, at), one ? result::ok : result::wrong_amount);
    // Unpaid, round 2 closes after its close and round 3 is due a period later.
    t.close_due(deadline2 + grace);
    EXPECT_EQ(t.find(escrow)->g.round, 2u) << "at its close itself: not closed";
    ASSERT_TRUE(t.due(deadline2 + grace + 1));
    t.close_due(deadline2 + grace + 1);
    ASSERT_EQ(t.find(escrow)->g.round, 3u);
    EXPECT_EQ(round_deadline(t.find(escrow)->g), deadline2 + period);
    // Its entry (snapshot bytes) keeps the schedule.
    group_entry back;
    std::string why;
    ASSERT_TRUE(decode_entry(encode_entry(*t.find(escrow)), &back, &why)) << why;
    EXPECT_EQ(back.g.schedule_offset, e.g.schedule_offset);
    EXPECT_EQ(round_deadline(back.g), deadline2 + period);
  }
}

TEST(equb_rules, dissolving_refunds_the_current_round_to_the_minor_unit) {
  ledger l;
  auto g = started(l, 3, config());
  step(l, g, close_round(g, 1));
  step(l, g, contribute(g, 0, wallet(0), 2, c, g.cfg.currency, 10));
  const uint64_t late = due_at(2) + 1;
  step(l, g, contribute(g, 2, wallet(2), 2, c + g.cfg.late_penalty, g.cfg.currency, late));
  const int64_t w0 = l.bal[wallet(0)], w2 = l.bal[wallet(2)];
  auto before_v7 = g;
  step(l, g, dissolve(g));
  EXPECT_EQ(g.ph, phase::dissolved);
  EXPECT_EQ(l.bal[escrow], 0);
  EXPECT_EQ(l.bal[wallet(0)], w0 + int64_t(c));
  EXPECT_EQ(l.bal[wallet(2)], w2 + int64_t(c + g.cfg.late_penalty));
  EXPECT_EQ(dissolve(g).code, result::group_not_active);
  // Round 1's pot went to seat 0, paid in by seats 1 and 2: seat 0 owes each one
  // contribution (nominal: its fee stays paid).
  ASSERT_EQ(g.seats[0].debts.size(), 2u);
  EXPECT_EQ(g.seats[0].debts[0].creditor_account_id, wallet(1));
  EXPECT_EQ(g.seats[0].debts[1].creditor_account_id, wallet(2));
  EXPECT_EQ(debts_of(g.seats[0]), 2 * c);
  EXPECT_TRUE(g.seats[1].debts.empty() && g.seats[2].debts.empty());
  // The rules before version 7 refunded the current round alone.
  const outcome o = dissolve(before_v7, false);
  EXPECT_EQ(o.transfers.size(), 2u);
  EXPECT_TRUE(before_v7.seats[0].debts.empty());
  // A member holding two seats, one of which received, owes itself nothing.
  ledger t;
  auto two = make_group(config());
  step(t, two, join(two, wallet(0)));
  step(t, two, join(two, wallet(0)));
  step(t, two, join(two, wallet(1)));
  step(t, two, start(two, 0, secret_a));
  step(t, two, close_round(two, 1));
  step(t, two, dissolve(two));
  ASSERT_EQ(two.seats[0].debts.size(), 1u);
  EXPECT_EQ(two.seats[0].debts[0].creditor_account_id, wallet(1));
  // Dissolving while forming returns every deposit.
  ledger lf;
  auto f = make_group(config());
  step(lf, f, join(f, wallet(0)));
  step(lf, f, join(f, wallet(1)));
  step(lf, f, dissolve(f));
  EXPECT_EQ(lf.bal[wallet(0)], 0);
  EXPECT_EQ(lf.bal[wallet(1)], 0);
  EXPECT_EQ(lf.bal[escrow], 0);
}

// Many groups with random sizes, policies, late and missed payments, run to the end (or
// dissolved midway): money is conserved at every step, escrow always holds what the
// group says, and a completed group paid every seat exactly once and holds nothing.
TEST(equb_rules, random_groups_keep_every_invariant) {
  const uint64_t s = test::test_seed("equb_rules random");
  std::mt19937_64 rng(s);
  uint64_t group_parts = 0;  // debts given a group part by a close
  uint64_t covered_dividends = 0;  // closes whose dividend a cover partly backs (held for it)
  for (int group = 0; group < 200; ++group) {
    const auto rot = rotation(1 + rng() % 3);
    const auto pol = default_policy(1 + rng() % 3);
    auto cfg = rot == rotation::bidding ? bidding_config() : config(rot, pol);
    cfg.on_default = pol;
    cfg.guarantor_account_id = pol == default_policy::cover_from_guarantor ? guarantor : 0;
    cfg.group_id = uint64_t(group);
    cfg.fee_bp = uint32_t(rng() % 500);
    cfg.contribution = 1 + rng() % 100'000;
    cfg.late_penalty = rng() % 1000;
    const auto n = uint32_t(2 + rng() % 15);
    // Bidding groups: any discount limit, and up to 8 seats in 10 missing a round (a pot
    // short of the discount: group parts).
    const uint64_t misses = rot == rotation::bidding ? 1 + rng() % 8 : 1;
    if (rot == rotation::bidding) cfg.max_discount_bp = uint32_t(rng() % (bp_max + 1));
    seed secret{};
    for (auto& b : secret) b = uint8_t(rng());
    ledger l;
    auto g = started(l, n, cfg, secret);
    std::set<uint32_t> received;
    // The group's discounts, what went to the organizer and the seats of them, and the
    // commission at its rate and cap against what was paid (at most the pot).
    uint64_t discounts = 0, given = 0, commission_paid = 0, commission_expected = 0;
    const bool dissolve_midway = rng() % 10 == 0;
    for (uint32_t round = 1; g.ph == phase::active; ++round) {
      ASSERT_LT(round, 10 * n) << "seed " << s << " group " << group;
      const uint64_t deadline_at = g.started_at + g.shift_ns + uint64_t(g.round - 1) * cfg.period_ns;
      for (uint32_t i = 0; i < n; ++i) {
        if (g.seats[i].paid) continue;
        const auto fate = rng() % 10;
        if (fate < misses && pol != default_policy::hold_round) continue;  // misses the round
        const uint64_t at = fate == 9 ? deadline_at + 1 + rng() % cfg.grace_ns : deadline_at - rng() % period;
        step(l, g, contribute(g, i, wallet(i), g.round, owed(g, i, at), cfg.currency, at));
        ASSERT_FALSE(HasFailure()) << "seed " << s << " group " << group;
      }
      if (rot == rotation::bidding)
        for (uint32_t i = 0; i < n; ++i)
          if (rng() % 3 == 0 && g.seats[i].received_round == 0) {
            const uint64_t nominal = nominal_pot(g), span = nominal * cfg.max_discount_bp / bp_max;
            const auto o = bid(g, i, wallet(i), g.round, std::max<uint64_t>(1, nominal - rng() % (span + 1)));
            ASSERT_EQ(o.code, result::ok) << "seed " << s << ": " << result_name(o.code);
          }
      if (dissolve_midway && round == n / 2) {
        const auto o = dissolve(g);
        step(l, g, o);
        given += dividends_in(o);
        break;
      }
      const uint64_t close_at = deadline_at + cfg.grace_ns + 1;
      ASSERT_TRUE(round_due(g, close_at)) << "seed " << s;
      std::vector<uint64_t> bids;
      for (const auto& st : g.seats) bids.push_back(st.bid);
      const int64_t escrow_at_close = l.bal[escrow];  // without a cover this close makes
      const auto o = close_round(g, close_at);
      ASSERT_EQ(o.code, result::ok) << "seed " << s;
      EXPECT_TRUE(received.insert(o.recipient_seat).second) << "seed " << s << ": a seat received twice";
      step(l, g, o);
      covered_dividends += !o.held.empty();
      // Credits are money the escrow held before the close: none counts on a cover the
      // ledger may refuse (rules version 41).
      uint64_t credits = 0;
      for (const auto& st : g.seats) credits += st.credit;
      EXPECT_LE(int64_t(credits), escrow_at_close) << "seed " << s << " group " << group;
      // The winner's discount: the organizer's commission (at most the pot: what it could
      // not pay is counted here), then the seats' dividend, now or once repaid.
      const uint64_t discount = bids[o.recipient_seat] == 0 ? 0 : nominal_pot(g) - bids[o.recipient_seat];
      discounts += discount;
      const uint64_t commission =
          std::min(uint64_t((unsigned __int128)discount * cfg.commission_bp / bp_max), cfg.commission_cap);
      for (const auto& m : o.transfers) {
        if (m.why == purpose::commission) given += m.amount, commission_paid += m.amount;
        if (m.why == purpose::dividend) given += m.amount;
      }
      commission_expected += commission;
      given += dividends_in(o);
      for (const auto& st : g.seats) given += g.ph == phase::active ? st.credit : 0;
      for (const auto& st : g.seats)
        for (const auto& d : st.debts) group_parts += d.round == g.round - (g.ph == phase::active) && d.group_part > 0;
      ASSERT_FALSE(HasFailure()) << "seed " << s << " group " << group;
    }
    EXPECT_EQ(l.bal[escrow], 0) << "seed " << s << " group " << group;
    if (g.ph == phase::completed) {
      EXPECT_EQ(received.size(), n) << "seed " << s;
    }
    // Every debt repaid after the end: forwarded, its group part shared, escrow empty.
    for (uint32_t i = 0; i < n; ++i)
      if (!g.seats[i].debts.empty()) {
        const auto o = repay(g, i, wallet(i), g.round, debts_of(g.seats[i]), cfg.currency);
        step(l, g, o);
        given += dividends_in(o);
      }
    EXPECT_EQ(l.bal[escrow], 0) << "seed " << s << " group " << group;
    // Every discount reached the organizer and the seats, whole: a commission the pot
    // could not pay goes to the seats with the rest.
    EXPECT_LE(commission_paid, commission_expected) << "seed " << s << " group " << group;
    EXPECT_EQ(given, discounts) << "seed " << s << " group " << group;
  }
  std::printf("seed %llu: %llu debts were given a group part, %llu closes held dividends for their cover\n",
              (unsigned long long)s, (unsigned long long)group_parts, (unsigned long long)covered_dividends);
}

// A group's bytes (snapshots): every state round-trips exactly; a cut, a trailing
// byte, an unknown version or enum, a bad config, counts out of range and broken
// escrow arithmetic are refused with the fault named.
TEST(equb_rules, group_state_bytes_round_trip_and_damage_is_refused) {
  ledger l;
  std::vector<group_state> states;
  states.push_back(make_group(config()));
  auto lottery = started(l, 5, config(rotation::lottery, default_policy::cover_from_guarantor));
  step(l, lottery, close_round(lottery, 1));
  step(l, lottery, contribute(lottery, 1, wallet(1), 2, c, lottery.cfg.currency, 10));
  states.push_back(lottery);  // mid-round, a seed revealed
  ledger lb;
  auto bidding = started(lb, 4, bidding_config());
  EXPECT_EQ(bid(bidding, 1, wallet(1), 1, 35'000).code, result::ok);
  step(lb, bidding, close_round(bidding, 1));
  EXPECT_EQ(bid(bidding, 2, wallet(2), 2, 36'000).code, result::ok);
  const uint64_t after = due_at(2, grace) + 1;
  step(lb, bidding, close_round(bidding, after));  // every seat missed: debts and credits
  states.push_back(bidding);
  for (const auto& g : states) {
    const auto bytes = encode_group(g);
    group_state back;
    std::string why;
    ASSERT_TRUE(decode_group(bytes, &back, &why)) << why;
    EXPECT_EQ(encode_group(back), bytes);
    EXPECT_EQ(back.seats.size(), g.seats.size());
    EXPECT_EQ(back.escrow, g.escrow);
    // Every cut refused.
    for (size_t n = 0; n < bytes.size(); ++n) {
      EXPECT_FALSE(decode_group({bytes.data(), n}, &back, &why)) << n;
      EXPECT_NE(why.find("cut short"), std::string::npos) << why;
    }
    auto longer = bytes;
    longer.push_back(0);
    EXPECT_FALSE(decode_group(longer, &back, &why));
    EXPECT_NE(why.find("bytes after the last seat"), std::string::npos) << why;
  }
  const auto bytes = encode_group(states[2]);
  group_state back;
  std::string why;
  auto bad = bytes;
  bad[0] = 9;
  EXPECT_FALSE(decode_group(bad, &back, &why));
  EXPECT_NE(why.find("version 9"), std::string::npos) << why;
  bad = bytes;
  bad[4 + 5 * 8 + 4 + 4 + 4 * 8] = 7;  // the rotation policy
  EXPECT_FALSE(decode_group(bad, &back, &why));
  EXPECT_NE(why.find("rotation_invalid"), std::string::npos) << why;
  // The pot, one minor unit off: escrow no longer adds up.
  const size_t pot_at = 4 + 5 * 8 + 4 + 4 + 4 * 8 + 4 + 4 + 4 + 8 + 8 /* number */ + 4 + 4 + 4 + 8 + 8 /* shift */;
  bad = bytes;
  bad[pot_at] ^= 1;
  EXPECT_FALSE(decode_group(bad, &back, &why));
  EXPECT_NE(why.find("is not pot"), std::string::npos) << why;
}

// A group damaged on the disk in a way its escrow sum does not show is refused at load,
// naming the fault, rather than failing at its next close: each change below breaks one
// thing the rules keep true (and encode_group writes it as given).
TEST(equb_rules, group_state_the_rules_cannot_reach_is_refused) {
  ledger l;
  auto lottery = started(l, 5, config(rotation::lottery, default_policy::cover_from_guarantor));
  step(l, lottery, close_round(lottery, 1));
  step(l, lottery, contribute(lottery, 1, wallet(1), 2, c, lottery.cfg.currency, 10));
  ledger lb;
  auto bidding = started(lb, 4, bidding_config());
  EXPECT_EQ(bid(bidding, 1, wallet(1), 1, 35'000).code, result::ok);
  step(lb, bidding, close_round(bidding, 1));  // seat 1 wins, every seat holds a credit
  EXPECT_EQ(bid(bidding, 2, wallet(2), 2, 36'000).code, result::ok);
  ledger lc;
  auto done = started(lc, 2, config());
  for (int r = 0; r < 2; ++r) {
    everyone_pays(lc, done, 0);
    step(lc, done, close_round(done, 0));
  }
  ASSERT_EQ(done.ph, phase::completed);
  ledger lf;
  auto forming = make_group(config());
  step(lf, forming, join(forming, wallet(0)));

  struct damage {
    const char* name;
    const group_state* from;
    std::function<void(group_state&)> change;
    const char* says;
  };
  const std::vector<damage> cases = {
      {"every seat received, round still open", &lottery,
       [](group_state& g) {
         for (uint32_t i = 0; i < g.seats.size(); ++i) g.seats[i].received_round = i + 1;
         g.round = uint32_t(g.seats.size());
       },
       "paid-out rounds"},
      {"a seat received the current round", &lottery,
       [](group_state& g) {
         for (auto& s : g.seats)
           if (s.received_round == 1) s.received_round = 2;
       },
       "paid-out rounds"},
      {"two seats received round 1", &lottery,
       [](group_state& g) {
         for (auto& s : g.seats)
           if (s.received_round == 0) {
             s.received_round = 1;
             break;
           }
         ++g.round;
       },
       "paid-out rounds"},
      {"the lottery's secret changed", &lottery, [](group_state& g) { g.secret[3] ^= 1; }, "lottery seeds"},
      {"the revealed seed changed", &lottery, [](group_state& g) { g.last_revealed[0] ^= 1; }, "lottery seeds"},
      {"pot moved with escrow", &lottery,
       [](group_state& g) {
         g.pot += 5;
         g.escrow += 5;
       },
       "what its seats paid"},
      {"an unpaid seat with money paid", &lottery,
       [](group_state& g) {
         for (auto& s : g.seats)
           if (!s.paid) {
             s.paid_amount = 7;
             g.pot += 7;
             g.escrow += 7;
             break;
           }
       },
       "what it paid"},
      {"a credit past a contribution", &bidding,
       [](group_state& g) {
         g.seats[0].credit += g.cfg.contribution;
         g.escrow += g.cfg.contribution;
       },
       "credit"},
      {"a debt past a contribution and the late penalty", &lottery,
       [](group_state& g) {
         g.seats[0].debts.push_back({1, g.cfg.contribution + g.cfg.late_penalty + 1, wallet(1)});
       },
       "a debt"},
      {"a debt owed to the escrow", &lottery,
       [](group_state& g) { g.seats[0].debts.push_back({1, 10, g.cfg.escrow_account_id}); }, "a debt"},
      {"a debt from a round to come", &lottery,
       [](group_state& g) { g.seats[0].debts.push_back({g.round + 1, 10, wallet(1)}); }, "a debt"},
      {"a group part past its debt", &bidding,
       [](group_state& g) { g.seats[0].debts.push_back({1, 10, wallet(1), 11}); }, "part owed to the group"},
      {"a group part past a due", &bidding,
       [](group_state& g) {
         g.seats[0].debts.push_back({1, g.cfg.contribution + 1, wallet(1), g.cfg.contribution + 1});
       },
       "part owed to the group"},
      {"a debt naming no creditor, not the group's whole", &bidding,
       [](group_state& g) { g.seats[0].debts.push_back({1, 10, 0, 9}); }, "part owed to the group"},
      {"a group part in a group that does not bid", &lottery,
       [](group_state& g) { g.seats[0].debts.push_back({1, 10, wallet(1), 5}); }, "part owed to the group"},
      {"held money without escrow", &bidding, [](group_state& g) { g.held = 5; }, "plus held 5"},
      {"a completed group holding group parts", &done,
       [](group_state& g) {
         g.held = 5;
         g.escrow += 5;
       },
       "only an active bidding group holds"},
      {"held money in a group that does not bid", &lottery,
       [](group_state& g) {
         g.held = 5;
         g.escrow += 5;
       },
       "only an active bidding group holds"},
      // (A debt naming no creditor on a seat that did not win its round is state: what is
      // left of a debt owed to the seat's own wallet, a_seats_debt_left_to_the_group_alone_loads_from_a_snapshot.)
      {"a paid seat that paid less than its due", &lottery,
       [](group_state& g) {
         for (auto& s : g.seats)
           if (s.paid) {
             g.pot -= s.paid_amount;
             g.escrow -= s.paid_amount;
             s.paid_amount = 0;
             break;
           }
       },
       "paid less than its due"},
      {"a seat's wallet of 0", &lottery, [](group_state& g) { g.seats[1].wallet = 0; }, "its wallet is 0"},
      {"a seat's wallet the escrow", &forming, [](group_state& g) { g.seats[0].wallet = g.cfg.escrow_account_id; },
       "or the group's escrow"},
      {"a bid below the limit", &bidding, [](group_state& g) { g.seats[2].bid = 1; }, "its bid"},
      {"a bid by the seat that received", &bidding,
       [](group_state& g) {
         g.seats[1].bid = 36'000;
         g.seats[1].bid_order = 2;
         g.bids = 2;
       },
       "its bid"},
      {"the bid count off", &bidding, [](group_state& g) { g.bids = 2; }, "bid count"},
      {"a bid count past the seats", &bidding, [](group_state& g) { g.bids = 0xFFFFFFFFu; }, "bid count"},
      {"a completed group with a round to go", &done, [](group_state& g) { g.seats[0].received_round = 0; },
       "paid-out rounds"},
      {"a completed group holding a pot", &done,
       [](group_state& g) {
         g.pot = 1;
         g.escrow = 1;
       },
       "is not what its seats paid"},
      {"a forming group with a round", &forming, [](group_state& g) { g.round = 1; }, "a forming group has a round"},
      {"a forming seat without its deposit", &forming,
       [](group_state& g) {
         g.seats[0].paid_amount -= 1;
         g.pot -= 1;
         g.escrow -= 1;
       },
       "deposit"},
  };
  for (const auto& d : cases) {
    SCOPED_TRACE(d.name);
    group_state back;
    std::string why;
    ASSERT_TRUE(decode_group(encode_group(*d.from), &back, &why)) << why;
    group_state g = *d.from;
    d.change(g);
    EXPECT_FALSE(decode_group(encode_group(g), &back, &why));
    EXPECT_NE(why.find(d.says), std::string::npos) << why;
    EXPECT_NE(why.find("group 77: "), std::string::npos) << why;
  }
}

// A seat whose payout goes on through a gateway: the chain ends with a hold on its
// wallet of exactly what the wallet received (purpose payout_out, credit 0: the desk is
// chosen when the chain is sent), after every other transfer, the bidding dividends of
// the last round included. Errors change nothing.
TEST(equb_rules, payout_to_sends_the_payout_on_as_the_chains_last_transfer) {
  ledger l;
  auto cfg = bidding_config();
  cfg.fee_bp = 150;
  auto g = make_group(cfg);
  for (uint32_t i = 0; i < 3; ++i) step(l, g, join(g, wallet(i)));
  // A group without a number (made before numbers) pays to wallets only.
  EXPECT_EQ(payout_to(g, 1, wallet(1), 1, 251'900'000'001), result::group_payouts_wallet_only);
  g.number = 5;
  EXPECT_EQ(payout_to(g, 1, wallet(2), 1, 251'900'000'001), result::not_a_member);
  EXPECT_EQ(payout_to(g, 7, wallet(1), 1, 251'900'000'001), result::not_a_member);
  const auto before = encode_group(g);
  ASSERT_EQ(payout_to(g, 1, wallet(1), 1, 251'900'000'001), result::ok);
  ASSERT_EQ(payout_to(g, 2, wallet(2), 3, 4'000'000'002), result::ok);
  ASSERT_EQ(payout_to(g, 2, wallet(2), 0, 0), result::ok);  // back to the wallet
  ASSERT_EQ(payout_to(g, 2, wallet(2), 3, 4'000'000'002), result::ok);
  EXPECT_NE(encode_group(g), before);
  step(l, g, start(g, 0, secret_a));
  uint32_t sent = 0;
  uint64_t sent_total = 0;
  for (uint32_t round = 1; g.ph == phase::active; ++round) {
    if (round > 1) everyone_pays(l, g, uint64_t(round - 1) * period);
    // Seat 2 bids low in round 2 to receive with a discount; the last round pays dividends.
    if (round == 2) {
      ASSERT_EQ(bid(g, 2, wallet(2), 2, 28'000).code, result::ok);
    }
    const auto o = close_round(g, uint64_t(round - 1) * period + 1);
    ASSERT_EQ(o.code, result::ok);
    const seat& r = g.seats[o.recipient_seat];
    uint64_t paid_to_wallet = 0;
    for (const auto& m : o.transfers)
      if (m.why == purpose::payout) paid_to_wallet = m.amount;
    const bool out = r.payout_rail != 0;
    for (size_t i = 0; i < o.transfers.size(); ++i) {
      const money& m = o.transfers[i];
      if (m.why != purpose::payout_out) continue;
      ++sent;
      EXPECT_TRUE(out);
      EXPECT_EQ(i + 1, o.transfers.size()) << "round " << round;
      EXPECT_EQ(m.debit_account_id, r.wallet);
      EXPECT_EQ(m.credit_account_id, 0u);
      EXPECT_EQ(m.amount, paid_to_wallet);
      EXPECT_EQ(m.rail, r.payout_rail);
      EXPECT_EQ(m.destination, r.destination);
    }
    if (round == 3) {
      EXPECT_EQ(o.transfers.back().why, purpose::payout_out);  // after the dividends
    }
    step(l, g, o);
    if (out) sent_total += paid_to_wallet;
    EXPECT_EQ(l.bal[0], int64_t(sent_total));  // account 0 stands for the desks: what went on
    // After receiving, the route is fixed.
    if (g.ph == phase::active) {
      EXPECT_EQ(payout_to(g, o.recipient_seat, r.wallet, 0, 0), result::already_received);
    }
  }
  EXPECT_EQ(sent, 2u);
  EXPECT_EQ(g.ph, phase::completed);
  EXPECT_EQ(l.bal[escrow], 0);
  EXPECT_EQ(payout_to(g, 0, wallet(0), 1, 9), result::group_not_active);
}

// Version 5 bytes carry the number, the schedule offset, the shift, each seat's route,
// what the group holds of repaid group parts and each debt's group part; version 4 bytes
// (no schedule offset: a group started before rules version 27), version 3 bytes (nor
// the last two), version 2 bytes (no shift either) and version 1 bytes (no number, no
// shift, no destinations) are still read; a route the state cannot have is refused.
TEST(equb_rules, group_bytes_carry_payout_routes_and_versions_1_to_4_are_read) {
  ledger l;
  auto g = started(l, 3, config());
  g.number = 41;
  ASSERT_EQ(payout_to(g, 2, wallet(2), 2, 77'000'123), result::ok);
  const auto bytes = encode_group(g);
  group_state back;
  std::string why;
  ASSERT_TRUE(decode_group(bytes, &back, &why)) << why;
  EXPECT_EQ(back.number, 41u);
  EXPECT_EQ(back.seats[2].payout_rail, 2);
  EXPECT_EQ(back.seats[2].destination, 77'000'123u);
  EXPECT_EQ(encode_group(back), bytes);
  // Version 1: the same state without the number and the seats' destinations.
  const size_t number_at = 4 + 5 * 8 + 4 + 4 + 4 * 8 + 4 + 4 + 4 + 4 + 8;
  const size_t shift_at = number_at + 8 + 4 + 4 + 8;
  const size_t held_at = shift_at + 8 + 8 + 8;
  const size_t seats_at = held_at + 8 + 4 + 4 + 3 * 32;
  const size_t seat_v2 = 8 + 4 + 4 + 8 + 8 + 8 + 4 + 8 + 4;
  ASSERT_EQ(bytes.size(), seats_at + 3 * seat_v2);  // no debts after round 1
  const size_t offset_at = number_at + 8 + 1;       // after the phase
  EXPECT_EQ(back.schedule_offset, 1u);
  ASSERT_EQ(bytes[offset_at], 1u);
  // Version 4 from version 5: the schedule offset's byte was reserved (0): round k due at
  // the start + k periods. Read, it is written back as version 5 with offset 0.
  const auto to_v4 = [&](std::vector<uint8_t> v5) {
    v5[0] = 4;
    v5[offset_at] = 0;
    return v5;
  };
  const auto as_v5 = [](std::vector<uint8_t> v4) {
    v4[0] = 5;
    return v4;
  };
  {
    auto v4_with_offset = bytes;
    v4_with_offset[0] = 4;  // a reserved byte version 4 never set: ignored
    ASSERT_TRUE(decode_group(v4_with_offset, &back, &why)) << why;
    EXPECT_EQ(back.schedule_offset, 0u);
    EXPECT_EQ(encode_group(back), as_v5(to_v4(bytes)));
    EXPECT_EQ(round_deadline(back), period) << "k periods: round 1's deadline, a period after the start";
    EXPECT_EQ(round_deadline(g), 0u) << "this build's rules: round 1 is due at the start";
  }
  // Version 3 from version 4: without `held`, and each debt without its group part.
  const auto to_v3 = [&](const std::vector<uint8_t>& v4) {
    std::vector<uint8_t> out(v4.begin(), v4.begin() + held_at);
    size_t at = held_at + 8;
    out.insert(out.end(), v4.begin() + at, v4.begin() + seats_at);
    at = seats_at;
    while (at < v4.size()) {
      uint32_t debts = 0;
      std::memcpy(&debts, v4.data() + at + seat_v2 - 4, 4);
      out.insert(out.end(), v4.begin() + at, v4.begin() + at + seat_v2);
      at += seat_v2;
      for (uint32_t k = 0; k < debts; ++k, at += 32) out.insert(out.end(), v4.begin() + at, v4.begin() + at + 24);
    }
    out[0] = 3;
    return out;
  };
  auto plain = make_group(config());
  ledger l1;
  plain = started(l1, 3, config());
  const auto v4 = to_v4(encode_group(plain));
  ASSERT_TRUE(decode_group(v4, &back, &why)) << why;
  EXPECT_EQ(encode_group(back), as_v5(v4));
  const auto v3 = to_v3(v4);
  ASSERT_TRUE(decode_group(v3, &back, &why)) << why;
  EXPECT_EQ(encode_group(back), as_v5(v4));
  // A version 3 group with debts reads them with no group part.
  {
    ledger ld;
    auto owing = started(ld, 3, config());
    step(ld, owing, close_round(owing, 1));
    step(ld, owing, contribute(owing, 0, wallet(0), 2, c, owing.cfg.currency, 10));
    step(ld, owing, close_round(owing, due_at(2, grace) + 1));  // seat 2 owes seat 1
    ASSERT_EQ(owing.seats[2].debts.size(), 1u);
    const auto with_debts = to_v4(encode_group(owing));
    ASSERT_TRUE(decode_group(to_v3(with_debts), &back, &why)) << why;
    ASSERT_EQ(back.seats[2].debts.size(), 1u);
    EXPECT_EQ(back.seats[2].debts[0].amount, c + owing.cfg.late_penalty);
    EXPECT_EQ(back.seats[2].debts[0].group_part, 0u);
    EXPECT_EQ(encode_group(back), as_v5(with_debts));
  }
  // Version 2: the same state without the shift.
  std::vector<uint8_t> v2(v3.begin(), v3.begin() + shift_at);
  v2.insert(v2.end(), v3.begin() + shift_at + 8, v3.end());
  v2[0] = 2;
  ASSERT_TRUE(decode_group(v2, &back, &why)) << why;
  EXPECT_EQ(back.shift_ns, 0u);
  EXPECT_EQ(encode_group(back), as_v5(v4));
  // Version 1: without the number, the shift and the seats' destinations.
  std::vector<uint8_t> v1(v3.begin(), v3.begin() + number_at);
  v1.insert(v1.end(), v3.begin() + number_at + 8, v3.begin() + shift_at);
  const size_t seats_v3 = seats_at - 8;
  v1.insert(v1.end(), v3.begin() + shift_at + 8, v3.begin() + seats_v3);
  for (size_t s = 0; s < 3; ++s) {
    const size_t at = seats_v3 + s * seat_v2;
    v1.insert(v1.end(), v3.begin() + at, v3.begin() + at + seat_v2 - 12);
    v1.insert(v1.end(), v3.begin() + at + seat_v2 - 4, v3.begin() + at + seat_v2);
  }
  v1[0] = 1;
  ASSERT_TRUE(decode_group(v1, &back, &why)) << why;
  EXPECT_EQ(encode_group(back), as_v5(v4));
  // A shift round-trips; a forming group cannot have one.
  auto moved = plain;
  moved.shift_ns = 123'456;
  ASSERT_TRUE(decode_group(encode_group(moved), &back, &why)) << why;
  EXPECT_EQ(back.shift_ns, 123'456u);
  auto forming = make_group(config());
  forming.shift_ns = 1;
  EXPECT_FALSE(decode_group(encode_group(forming), &back, &why));
  EXPECT_NE(why.find("a forming group has a round"), std::string::npos) << why;
  forming.shift_ns = 0;
  forming.schedule_offset = 1;
  EXPECT_FALSE(decode_group(encode_group(forming), &back, &why));
  EXPECT_NE(why.find("a forming group has a round"), std::string::npos) << why;
  // A rail without a destination, a destination without a rail, a rail in a group with
  // no number, a rail out of range, a number out of range: refused.
  auto damaged = [&](auto change) {
    auto bad = bytes;
    change(bad);
    return !decode_group(bad, &back, &why);
  };
  const size_t rail_at = seats_at + 2 * seat_v2 + 8 + 4 + 1;
  const size_t dest_at = seats_at + 2 * seat_v2 + seat_v2 - 12;
  EXPECT_TRUE(damaged([&](auto& b) { std::fill(b.begin() + dest_at, b.begin() + dest_at + 8, 0); }));
  EXPECT_NE(why.find("seat 2 is out of range"), std::string::npos) << why;
  EXPECT_TRUE(damaged([&](auto& b) { b[rail_at] = 0; }));
  EXPECT_TRUE(damaged([&](auto& b) { b[rail_at] = 4; }));
  EXPECT_TRUE(damaged([&](auto& b) { std::fill(b.begin() + number_at, b.begin() + number_at + 8, 0); }));
  EXPECT_TRUE(damaged([&](auto& b) { b[number_at + 4] = 0x80; }));  // 2^39 and up
  EXPECT_NE(why.find("number"), std::string::npos) << why;
  EXPECT_TRUE(damaged([&](auto& b) { b[offset_at] = 2; }));
  EXPECT_NE(why.find("schedule offset"), std::string::npos) << why;
}

// A seat that received and then missed rounds ends the group owing them: the debts
// outlive the group and are paid after it ends, all at once, naming its last round, each
// forwarded to its creditor. Before, an ended group refused every payment and the
// short-changed recipients were never repaid.
TEST(equb_rules, debts_outlive_the_group_and_are_paid_after_it_ends) {
  ledger l;
  auto g = started(l, 3, config());
  const uint64_t debt = c + g.cfg.late_penalty;  // a missed due and its penalty (rules_default_penalty)
  step(l, g, close_round(g, 1));  // round 1: seat 0 (wallet 0)
  // Rounds 2 and 3: seat 0 pays nothing; the others pay on time.
  for (uint32_t round = 2; round <= 3; ++round) {
    step(l, g, contribute(g, 1, wallet(1), round, owed(g, 1, 5), g.cfg.currency, 5));
    step(l, g, contribute(g, 2, wallet(2), round, owed(g, 2, 5), g.cfg.currency, 5));
    const uint64_t after = due_at(round, grace) + 1;
    step(l, g, close_round(g, after));
    if (round == 2) {
      // A payment for the round seat 0 missed: that round closed (its due is a debt, owed
      // with the next payment); seat 1 paid it. (Before, both were round_already_paid: a
      // member who missed a round was told it had paid it.)
      ASSERT_EQ(g.round, 3u);
      EXPECT_EQ(can_contribute(g, 0, wallet(0), 2, c, g.cfg.currency, after), result::round_closed);
      EXPECT_EQ(can_contribute(g, 1, wallet(1), 2, c, g.cfg.currency, after), result::round_already_paid);
    }
  }
  ASSERT_EQ(g.ph, phase::completed);
  ASSERT_EQ(g.seats[0].debts.size(), 2u);
  EXPECT_EQ(debts_of(g.seats[0]), 2 * debt);
  EXPECT_EQ(g.seats[0].debts[0].creditor_account_id, wallet(1));
  EXPECT_EQ(g.seats[0].debts[1].creditor_account_id, wallet(2));
  EXPECT_EQ(l.bal[escrow], 0);

  const auto etb = g.cfg.currency;
  EXPECT_EQ(can_contribute(g, 0, wallet(0), 3, 2 * debt, etb, 10), result::group_not_active);
  EXPECT_EQ(can_repay(g, 0, wallet(0), 3, 2 * debt - 1, etb), result::wrong_amount);
  EXPECT_EQ(can_repay(g, 0, wallet(0), 3, debt, etb), result::wrong_amount);
  EXPECT_EQ(can_repay(g, 0, wallet(0), 2, 2 * debt, etb), result::round_already_paid);
  EXPECT_EQ(can_repay(g, 0, wallet(0), 4, 2 * debt, etb), result::round_not_open);
  EXPECT_EQ(can_repay(g, 0, wallet(1), 3, 2 * debt, etb), result::not_a_member);
  EXPECT_EQ(can_repay(g, 0, wallet(0), 3, 2 * debt, wire::currency("USD")), result::wrong_currency);
  EXPECT_EQ(can_repay(g, 1, wallet(1), 3, 0, etb), result::nothing_owed) << "seat 1 owes nothing";
  const int64_t w1 = l.bal[wallet(1)], w2 = l.bal[wallet(2)];
  const outcome o = repay(g, 0, wallet(0), 3, 2 * debt, etb);
  ASSERT_EQ(o.transfers.size(), 3u);
  EXPECT_EQ(o.transfers[0].debit_account_id, wallet(0));
  EXPECT_EQ(o.transfers[0].why, purpose::contribution);
  step(l, g, o);
  EXPECT_EQ(l.bal[wallet(1)], w1 + int64_t(debt));
  EXPECT_EQ(l.bal[wallet(2)], w2 + int64_t(debt));
  EXPECT_EQ(l.bal[escrow], 0);
  EXPECT_TRUE(g.seats[0].debts.empty());
  EXPECT_EQ(repay(g, 0, wallet(0), 3, 2 * debt, etb).code, result::nothing_owed) << "paid once";

  // A dissolved group's debts too: seat 2 misses round 2, the group dissolves in round 3.
  ledger d;
  auto h = started(d, 3, config());
  step(d, h, close_round(h, 1));
  step(d, h, contribute(h, 0, wallet(0), 2, c, h.cfg.currency, 5));
  step(d, h, contribute(h, 1, wallet(1), 2, c, h.cfg.currency, 5));
  step(d, h, close_round(h, due_at(2, grace) + 1));
  ASSERT_EQ(h.round, 3u);
  EXPECT_EQ(can_repay(h, 2, wallet(2), 3, debt, etb), result::group_not_active) << "active: contribute pays debts";
  step(d, h, dissolve(h));
  const int64_t creditor = d.bal[wallet(1)];
  step(d, h, repay(h, 2, wallet(2), 3, debt, etb));
  EXPECT_EQ(d.bal[wallet(1)], creditor + int64_t(debt));
  EXPECT_EQ(d.bal[escrow], 0);
}

// A seat's debts that will never be paid are written off in an ended group, all at once
// and only as the operator saw them: the creditors are never paid them, no money moves,
// and a repayment after finds nothing owed. An active group's debts ride on the seat's
// payments and are not written off.
TEST(equb_rules, an_ended_groups_seat_debts_are_written_off_whole) {
  ledger l;
  auto g = started(l, 3, config());
  const uint64_t missed = c + g.cfg.late_penalty;
  step(l, g, close_round(g, 1));  // round 1: seat 0
  for (uint32_t round = 2; round <= 3; ++round) {  // seat 0 pays nothing
    if (round == 3) {
      EXPECT_EQ(can_write_off(g, 0, wallet(0), missed), result::group_not_ended) << "active";
    }
    step(l, g, contribute(g, 1, wallet(1), round, owed(g, 1, 5), g.cfg.currency, 5));
    step(l, g, contribute(g, 2, wallet(2), round, owed(g, 2, 5), g.cfg.currency, 5));
    step(l, g, close_round(g, due_at(round, grace) + 1));
  }
  ASSERT_EQ(g.ph, phase::completed);
  ASSERT_EQ(debts_of(g.seats[0]), 2 * missed);
  EXPECT_EQ(can_write_off(g, 0, wallet(0), 2 * missed - 1), result::wrong_amount);
  EXPECT_EQ(can_write_off(g, 0, wallet(0), missed), result::wrong_amount) << "all of it or nothing";
  EXPECT_EQ(can_write_off(g, 0, wallet(1), 2 * missed), result::not_a_member);
  EXPECT_EQ(can_write_off(g, 3, wallet(0), 2 * missed), result::not_a_member) << "no such seat";
  EXPECT_EQ(can_write_off(g, 1, wallet(1), 0), result::nothing_owed);
  const auto ledger_before = l.bal;
  const std::vector<debt> gone = write_off(g, 0, wallet(0), 2 * missed);
  ASSERT_EQ(gone.size(), 2u);
  EXPECT_EQ(gone[0].round, 2u);
  EXPECT_EQ(gone[0].creditor_account_id, wallet(1));
  EXPECT_EQ(gone[1].round, 3u);
  EXPECT_EQ(gone[1].creditor_account_id, wallet(2));
  EXPECT_EQ(gone[0].amount + gone[1].amount, 2 * missed);
  EXPECT_TRUE(g.seats[0].debts.empty());
  EXPECT_EQ(l.bal, ledger_before) << "no money moves";
  EXPECT_EQ(g.escrow, 0u);
  EXPECT_EQ(can_repay(g, 0, wallet(0), 3, 2 * missed, g.cfg.currency), result::nothing_owed);
  EXPECT_EQ(can_write_off(g, 0, wallet(0), 2 * missed), result::nothing_owed) << "written off once";
}

// replace_account: a closed account never takes a payment again, so the group puts
// another one wherever it names the old (config, seats' wallets, debts' creditors).
TEST(equb_rules, replace_account_moves_every_use_and_keeps_the_config_valid) {
  ledger l;
  auto g = started(l, 3, config(rotation::fixed_order, default_policy::cover_from_guarantor));
  constexpr uint64_t fresh = 5000;
  EXPECT_EQ(can_replace_account(g, escrow, fresh), result::group_account_reserved);
  EXPECT_EQ(can_replace_account(g, fee_acct, escrow), result::group_account_reserved);
  EXPECT_EQ(can_replace_account(g, fee_acct, fee_acct), result::accounts_must_differ);
  EXPECT_EQ(can_replace_account(g, fee_acct, 0), result::id_must_not_be_zero);
  EXPECT_EQ(can_replace_account(g, guarantor, fee_acct), result::accounts_must_differ) << "as check_config";
  EXPECT_TRUE(names_account(g, wallet(1)));
  EXPECT_TRUE(names_account(g, guarantor));
  EXPECT_FALSE(names_account(g, fresh));
  EXPECT_FALSE(names_account(g, escrow));
  EXPECT_FALSE(names_account(g, 0));

  ASSERT_EQ(can_replace_account(g, fee_acct, fresh), result::ok);
  replace_account(g, fee_acct, fresh);
  EXPECT_EQ(g.cfg.fee_account_id, fresh);
  EXPECT_FALSE(names_account(g, fee_acct));
  step(l, g, close_round(g, 1));  // round 1 pays its fee to the new account
  EXPECT_EQ(l.bal[fresh], int64_t(3 * c / 100));
  EXPECT_EQ(l.bal[fee_acct], 0);

  // Seat 2 misses round 2: its debt is the guarantor's. Replace the guarantor and seat 2's
  // wallet: the debt's creditor moves, and seat 2 pays from its new wallet only.
  step(l, g, contribute(g, 0, wallet(0), 2, c, g.cfg.currency, 5));
  step(l, g, contribute(g, 1, wallet(1), 2, c, g.cfg.currency, 5));
  step(l, g, close_round(g, due_at(2, grace) + 1));
  ASSERT_EQ(g.seats[2].debts.size(), 1u);
  constexpr uint64_t new_guarantor = 5001, new_wallet = 5002;
  replace_account(g, guarantor, new_guarantor);
  replace_account(g, wallet(2), new_wallet);
  EXPECT_EQ(g.cfg.guarantor_account_id, new_guarantor);
  EXPECT_EQ(g.seats[2].debts[0].creditor_account_id, new_guarantor);
  const uint64_t late = due_at(3) + 1;
  const uint64_t due = owed(g, 2, late);
  EXPECT_EQ(can_contribute(g, 2, wallet(2), 3, due, g.cfg.currency, late), result::not_a_member);
  const outcome o = contribute(g, 2, new_wallet, 3, due, g.cfg.currency, late);
  ASSERT_EQ(o.code, result::ok);
  step(l, g, o);
  EXPECT_EQ(l.bal[new_guarantor], int64_t(c + g.cfg.late_penalty)) << "the debt went to the new guarantor";
}

// The group table decides by the rules of the build that wrote the log record it
// replays (actors/rules_version.hpp): before version 7 an ended group refused every
// payment, replace_account did not exist (the engine refuses it when decoding such a
// record), and a create over the period cap was refused even when it repeated an
// existing group's config.
// A round that closes early (every seat paid) leaves its deadline entries in the table's
// heap until their time, possibly years on: groups paid through in minutes, one after
// another, kept two entries a round each, whatever groups_max said. The heap stays
// within what its groups could hold live (two each) twice over and 4,096 more.
TEST(equb_rules, deadline_entries_of_rounds_closed_early_are_bounded) {
  constexpr uint32_t groups = 40, seats = 60;
  static_assert(groups * (seats - 1) * 2 > 4 * groups + 4096, "enough early closes to pass the bound");
  group_table t;
  auto make_escrow = [](const wire::account&) { return true; };
  uint64_t ts = 10;
  size_t most = 0;
  for (uint32_t k = 0; k < groups; ++k) {
    auto cfg = config();
    cfg.group_id = cfg.escrow_account_id = 500'000 + k;
    ASSERT_EQ(t.execute(create_op_of(cfg), ts++, make_escrow), result::ok);
    for (uint32_t i = 0; i < seats; ++i) {
      const auto p = group_payment(cfg, wallet(k * seats + i), 0, 0, c);
      ASSERT_EQ(t.verdict(p, ts), result::ok);
      t.paid(p, ts++);
    }
    wire::equb_op start;
    start.kind = wire::equb_op_kind::start;
    start.group_id = cfg.group_id;
    ASSERT_EQ(t.execute(start, ts++, make_escrow), result::ok);
    for (uint32_t round = 2; round <= seats; ++round) {
      for (uint32_t i = 0; i < seats; ++i) {
        const auto p = group_payment(cfg, wallet(k * seats + i), round, i, c);
        ASSERT_EQ(t.verdict(p, ts), result::ok) << "group " << k << " round " << round << " seat " << i;
        t.paid(p, ts++);
      }
      most = std::max(most, t.deadline_entries());
    }
    ASSERT_EQ(t.find(cfg.group_id)->g.ph, phase::completed);
  }
  EXPECT_LE(most, size_t(4 * groups + 4096));
}

TEST(equb_rules, group_table_decides_older_records_by_their_rules) {
  using mesob::actors::rules_ended_groups;
  using mesob::actors::rules_newest;
  using mesob::actors::rules_default_penalty;
  using mesob::actors::rules_equb_codes;
  using mesob::actors::rules_grace_within_period;
  using mesob::actors::rules_period_cap;
  auto cfg = config();
  cfg.group_id = escrow;  // in the engine a group's id is its escrow account's
  group_table t;
  auto make_escrow = [](const wire::account&) { return true; };
  wire::equb_op create = create_op_of(cfg);
  ASSERT_EQ(t.execute(create, 1, make_escrow), result::ok);
  auto payment = [&](uint64_t w, uint32_t round, uint32_t seat, uint64_t amount) {
    return group_payment(cfg, w, round, seat, amount);
  };
  join_all(t, cfg, {wallet(0), wallet(1)}, 2);
  wire::equb_op start;
  start.kind = wire::equb_op_kind::start;
  start.group_id = escrow;
  ASSERT_EQ(t.execute(start, 3, make_escrow), result::ok);  // round 1 pays seat 0 at once
  // The fee account was closed: round 1's chain is refused and waits.
  ASSERT_EQ(t.find(escrow)->owed.size(), 1u);
  const auto chain = chain_of(*t.find(escrow), t.find(escrow)->owed[0], 1);
  t.chain_done(chain.front(), result::credit_account_closed);
  ASSERT_TRUE(t.find(escrow)->owed[0].refused);
  // Round 2: seat 1 pays, seat 0 does not; the round closes on its deadline.
  ASSERT_EQ(t.verdict(payment(wallet(1), 2, 1, c), 5), result::ok);
  t.paid(payment(wallet(1), 2, 1, c), 5);
  const uint64_t after = deadline_after(3, 2, period, grace) + 1;
  ASSERT_TRUE(t.due(after));
  // Closed by a record before version 20: the missed due is the debt, without the late
  // penalty (the rules' own test checks both).
  t.set_rules(rules_default_penalty - 1);
  t.close_due(after);
  t.set_rules(rules_newest);
  const group_entry& e = *t.find(escrow);
  ASSERT_EQ(e.g.ph, phase::completed);
  ASSERT_EQ(debts_of(e.g.seats[0]), c);

  const auto repay_it = payment(wallet(0), 2, 0, c);
  t.set_rules(rules_ended_groups - 1);
  EXPECT_EQ(t.verdict(repay_it, after + 1), result::group_not_active);
  t.set_rules(rules_newest);
  EXPECT_EQ(t.verdict(repay_it, after + 1), result::ok);
  t.paid(repay_it, after + 1);
  EXPECT_TRUE(t.find(escrow)->g.seats[0].debts.empty());
  EXPECT_EQ(t.verdict(repay_it, after + 2), result::nothing_owed);
  // A refused payment is a transfer record and keeps its code: older records' stays.
  t.set_rules(actors::rules_round_closed_codes - 1);
  EXPECT_EQ(t.verdict(repay_it, after + 2), result::group_not_active);
  t.set_rules(rules_newest);

  // replace_account: the refused chain's fee transfer moves to the new account, and a
  // retry emits it under new ids.
  constexpr uint64_t new_fee = 6000;
  wire::equb_op replace;
  replace.kind = wire::equb_op_kind::replace_account;
  replace.group_id = escrow;
  replace.wallet = fee_acct;
  replace.amount = new_fee;
  EXPECT_EQ(check_op_fields(replace), result::ok);
  auto no_new = replace;
  no_new.amount = 0;
  EXPECT_EQ(check_op_fields(no_new), result::id_must_not_be_zero);
  auto with_seat = replace;
  with_seat.seat = 1;
  EXPECT_EQ(check_op_fields(with_seat), result::equb_op_invalid);
  auto stranger = replace;
  stranger.wallet = 4242;
  EXPECT_EQ(t.execute(stranger, after + 3, make_escrow), result::account_not_in_group);
  // The engine's own accounts: a group's chains would move their money unchecked.
  const uint64_t desk = mesob::actors::payouts::desk_account(cfg.currency, 0);
  const uint64_t trading = mesob::actors::trading::account(cfg.currency, 0);
  auto to_engine = replace;
  to_engine.amount = desk;
  EXPECT_EQ(t.execute(to_engine, after + 3, make_escrow), result::payout_account_reserved);
  to_engine.amount = trading;
  EXPECT_EQ(t.execute(to_engine, after + 3, make_escrow), result::trading_account_reserved);
  ASSERT_EQ(t.execute(replace, after + 3, make_escrow), result::ok);
  const group_entry& moved = *t.find(escrow);
  EXPECT_EQ(moved.g.cfg.fee_account_id, new_fee);
  bool to_new = false;
  for (const auto& m : moved.owed.at(0).transfers) {
    EXPECT_NE(m.credit_account_id, fee_acct);
    to_new = to_new || (m.credit_account_id == new_fee && m.why == purpose::fee);
  }
  EXPECT_TRUE(to_new);
  EXPECT_EQ(t.execute(replace, after + 4, make_escrow), result::account_not_in_group) << "named nowhere now";
  wire::equb_op retry;
  retry.kind = wire::equb_op_kind::retry;
  retry.group_id = escrow;
  ASSERT_EQ(t.execute(retry, after + 5, make_escrow), result::ok);
  EXPECT_FALSE(t.find(escrow)->owed.at(0).refused);
  // A create repeating the group's config: its config changed (the fee account).
  EXPECT_EQ(t.execute(create, after + 6, make_escrow), result::exists_with_different_fields);

  // The period cap. A group made before it (rules 4) with a 200-day period.
  group_table p;
  auto long_cfg = config();
  long_cfg.group_id = long_cfg.escrow_account_id = 7000;
  long_cfg.period_ns = 200ull * 86'400 * 1'000'000'000;
  const wire::equb_op long_create = create_op_of(long_cfg);
  p.set_rules(rules_period_cap - 1);
  ASSERT_EQ(p.execute(long_create, 1, make_escrow), result::ok);
  p.set_rules(rules_ended_groups - 1);
  EXPECT_EQ(p.execute(long_create, 2, make_escrow), result::period_too_long) << "as versions 5 and 6 refused it";
  p.set_rules(rules_newest);
  EXPECT_EQ(p.execute(long_create, 3, make_escrow), result::ok) << "a client's retry of the create";
  auto other = long_create;
  other.fee_bp += 1;
  EXPECT_EQ(p.execute(other, 4, make_escrow), result::exists_with_different_fields);
  auto fresh = long_create;
  fresh.group_id = 7001;
  EXPECT_EQ(p.execute(fresh, 5, make_escrow), result::period_too_long);
  EXPECT_EQ(p.find(7001), nullptr);

  // A grace as long as the period, or longer: refused for a new group from version 13
  // on (every payment of the next round would be late), taken before; a create repeating
  // an existing group's config stays ok.
  for (const uint16_t rules : {uint16_t(rules_grace_within_period - 1), rules_newest}) {
    group_table q;
    q.set_rules(rules);
    auto wide = config();
    wide.group_id = wide.escrow_account_id = 7050;
    wide.grace_ns = wide.period_ns;
    const bool refused = rules >= rules_grace_within_period;
    EXPECT_EQ(q.execute(create_op_of(wide), 1, make_escrow), refused ? result::grace_not_within_period : result::ok);
    EXPECT_EQ(q.find(7050) == nullptr, refused);
    wide.grace_ns = wide.period_ns - 1;
    EXPECT_EQ(q.execute(create_op_of(wide), 2, make_escrow), refused ? result::ok : result::exists_with_different_fields);
  }
  {
    group_table q;
    q.set_rules(rules_grace_within_period - 1);
    auto wide = config();
    wide.group_id = wide.escrow_account_id = 7060;
    wide.grace_ns = 2 * wide.period_ns;
    ASSERT_EQ(q.execute(create_op_of(wide), 1, make_escrow), result::ok);
    q.set_rules(rules_newest);
    EXPECT_EQ(q.execute(create_op_of(wide), 2, make_escrow), result::ok) << "a client's retry of the create";
  }

  // Version 20's codes: a join naming a seat and a bid for round 0 are equb_op_invalid
  // (not_a_member and round_already_paid before), and a new bidding group with a
  // commission but a cap of 0 is commission_cap_missing (taken before; its repeat stays
  // ok).
  for (const uint16_t rules : {uint16_t(rules_equb_codes - 1), rules_newest}) {
    SCOPED_TRACE("rules " + std::to_string(rules));
    const bool v20 = rules >= rules_equb_codes;
    group_table q;
    q.set_rules(rules);
    auto bidding = config(rotation::bidding);
    bidding.group_id = bidding.escrow_account_id = 7070;
    bidding.max_discount_bp = 2000;
    bidding.commission_bp = 500;
    bidding.organizer_account_id = organizer;
    bidding.commission_cap = 0;
    EXPECT_EQ(q.execute(create_op_of(bidding), 1, make_escrow), v20 ? result::commission_cap_missing : result::ok);
    EXPECT_EQ(q.find(7070) == nullptr, v20);
    if (!v20) {
      q.set_rules(rules_newest);
      EXPECT_EQ(q.execute(create_op_of(bidding), 2, make_escrow), result::ok) << "a repeat of the group made";
      q.set_rules(rules);
    }
    bidding.group_id = bidding.escrow_account_id = 7071;
    bidding.commission_cap = 1'000;
    ASSERT_EQ(q.execute(create_op_of(bidding), 3, make_escrow), result::ok);
    EXPECT_EQ(q.verdict(group_payment(bidding, wallet(0), 0, 1, c), 4),
              v20 ? result::equb_op_invalid : result::not_a_member);
    join_all(q, bidding, {wallet(0), wallet(1), wallet(2)}, 4);
    wire::equb_op go;
    go.kind = wire::equb_op_kind::start;
    go.group_id = 7071;
    ASSERT_EQ(q.execute(go, 5, make_escrow), result::ok);
    ASSERT_EQ(q.find(7071)->g.round, 2u);
    wire::equb_op offer;
    offer.kind = wire::equb_op_kind::bid;
    offer.group_id = 7071;
    offer.seat = 1;
    offer.wallet = wallet(1);
    offer.amount = 3 * c - 1;
    EXPECT_EQ(q.execute(offer, 6, make_escrow), v20 ? result::equb_op_invalid : result::round_already_paid);
    offer.round = 2;
    EXPECT_EQ(q.execute(offer, 7, make_escrow), result::ok);
  }

  // A create naming an engine account: refused from version 7 on, taken before (as
  // those builds did).
  for (const uint16_t rules : {uint16_t(rules_ended_groups - 1), rules_newest}) {
    group_table q;
    q.set_rules(rules);
    auto with = config();
    with.group_id = with.escrow_account_id = 7100;
    with.fee_account_id = mesob::actors::payouts::desk_account(with.currency, 3);
    EXPECT_EQ(q.execute(create_op_of(with), 1, make_escrow),
              rules == rules_newest ? result::payout_account_reserved : result::ok);
    with.fee_account_id = fee_acct;
    with.on_default = default_policy::cover_from_guarantor;
    with.guarantor_account_id = mesob::actors::trading::account(with.currency, 1);
    with.group_id = with.escrow_account_id = 7101;
    EXPECT_EQ(q.execute(create_op_of(with), 1, make_escrow),
              rules == rules_newest ? result::trading_account_reserved : result::ok);
  }

  // Dissolving: the past rounds become debts from version 7 on.
  for (const uint16_t rules : {uint16_t(rules_ended_groups - 1), rules_newest}) {
    group_table d;
    d.set_rules(rules);
    ASSERT_EQ(d.execute(create, 1, make_escrow), result::ok);
    for (uint32_t i = 0; i < 3; ++i) d.paid(payment(wallet(i), 0, 0, c), 2);
    ASSERT_EQ(d.execute(start, 3, make_escrow), result::ok);
    wire::equb_op dissolve_op;
    dissolve_op.kind = wire::equb_op_kind::dissolve;
    dissolve_op.group_id = escrow;
    ASSERT_EQ(d.execute(dissolve_op, 4, make_escrow), result::ok);
    EXPECT_EQ(d.find(escrow)->g.seats[0].debts.size(), rules == rules_newest ? 2u : 0u) << "rules " << rules;
  }
}

// The engine's downtime (rules version 12): a group whose round deadline or close fell
// between the last timestamp logged before an outage and the first after it has its
// schedule moved by the outage's length; one whose deadlines all fall outside it, or
// whose round was already due when the engine stopped, is not.
TEST(equb_rules, reschedule_moves_the_deadlines_an_outage_covered) {
  ledger l;
  group_state fresh = started(l, 3, config());
  step(l, fresh, close_round(fresh, 1));  // round 1 (the deposits) pays seat 0 at once
  const uint64_t deadline = due_at(2), close = due_at(2, grace);
  ASSERT_EQ(round_deadline(fresh), deadline);
  ASSERT_EQ(round_close(fresh), close);
  {  // before the deadline, and after it within the grace: not moved
    auto g = fresh;
    EXPECT_EQ(reschedule(g, 10, deadline - 1), 0u);
    EXPECT_EQ(reschedule(g, deadline + 1, close - 1), 0u);
    EXPECT_EQ(g.shift_ns, 0u);
  }
  {  // an outage of four periods covering the deadline: the members get back the time
     // they had when it stopped, and nothing is late or closed when it resumes
    auto g = fresh;
    const uint64_t from = deadline - 1'000, to = deadline + 4 * period;
    EXPECT_EQ(reschedule(g, from, to), to - from);
    EXPECT_EQ(g.shift_ns, to - from);
    EXPECT_EQ(round_deadline(g), to + 1'000);
    EXPECT_EQ(round_close(g), to + 1'000 + grace);
    EXPECT_FALSE(round_due(g, to));
    for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ(owed(g, i, to), c) << "no late penalty";
    everyone_pays(l, g, to);
    step(l, g, close_round(g, to));
    EXPECT_EQ(g.round, 3u);
    // Later rounds keep the moved schedule.
    EXPECT_EQ(round_deadline(g), due_at(3) + (to - from));
    // A second outage adds to it.
    const uint64_t again = round_deadline(g);
    EXPECT_EQ(reschedule(g, again - 5, again + 10), 15u);
    EXPECT_EQ(g.shift_ns, to - from + 15);
  }
  {  // the deadline passed before the outage, the close fell in it: moved, grace kept
    auto g = fresh;
    const uint64_t from = deadline + 10, to = close + period;
    EXPECT_EQ(reschedule(g, from, to), to - from);
    EXPECT_FALSE(round_due(g, to));
    EXPECT_EQ(round_close(g), close + (to - from));
  }
  {  // already due when it stopped (the close before the last timestamp): closes as it would
    auto g = fresh;
    EXPECT_EQ(reschedule(g, close + 1, close + 5 * period), 0u);
    EXPECT_TRUE(round_due(g, close + 5 * period));
  }
  {  // the bounds: a close at the last timestamp logged was not yet due there
    auto g = fresh;
    EXPECT_EQ(reschedule(g, close, close + 3), 3u);
    auto h = fresh;
    EXPECT_EQ(reschedule(h, deadline + 1, close), close - deadline - 1)
        << "a close at the resume time passes at the next operation";
  }
  {  // hold_round: only the deadline counts (rounds do not close on their own)
    ledger lh;
    auto g = started(lh, 3, config(rotation::fixed_order, default_policy::hold_round));
    step(lh, g, close_round(g, 1));
    EXPECT_EQ(reschedule(g, deadline + 1, close + 10), 0u);
    EXPECT_EQ(reschedule(g, deadline - 1, deadline + 1), 2u);
  }
  {  // not active: never moved; a shift saturates
    auto forming = make_group(config());
    EXPECT_EQ(reschedule(forming, 0, period * 9), 0u);
    auto g = fresh;
    g.shift_ns = UINT64_MAX - 1;
    EXPECT_EQ(round_deadline(g), UINT64_MAX);
    EXPECT_EQ(reschedule(g, UINT64_MAX - 10, UINT64_MAX - 1), 0u) << "its deadline is past any time";
  }
}

// The group table before and after an outage: without the resume (the rules before
// version 12), every round that fell due while the engine was down closes at the first
// batch, each with its debts; with it, none does, the group's next close is moved and an
// equb_rescheduled event says so.
TEST(equb_rules, group_table_resume_keeps_an_outage_from_closing_rounds) {
  auto cfg = config();
  cfg.group_id = escrow;
  auto make_escrow = [](const wire::account&) { return true; };
  auto build = [&](group_table& t) {
    ASSERT_EQ(t.execute(create_op_of(cfg), 1, make_escrow), result::ok);
    join_all(t, cfg, {wallet(0), wallet(1), wallet(2)}, 2);
    wire::equb_op start;
    start.kind = wire::equb_op_kind::start;
    start.group_id = escrow;
    ASSERT_EQ(t.execute(start, 3, make_escrow), result::ok);  // round 1 pays seat 0
    ASSERT_EQ(t.find(escrow)->g.round, 2u);
  };
  const uint64_t last = 3 + period / 2, resumed = 3 + 10 * period;  // down for 9.5 periods
  group_table before;
  build(before);
  ASSERT_TRUE(before.due(resumed));
  before.close_due(resumed);
  EXPECT_EQ(before.find(escrow)->g.ph, phase::completed) << "rounds 2 and 3 closed at once";
  EXPECT_EQ(debts_of(before.find(escrow)->g.seats[0]), 2 * (c + cfg.late_penalty));

  group_table now;
  std::vector<wire::event> events;
  now.set_events([&](wire::event&& e) { events.push_back(e); });
  build(now);
  events.clear();
  now.resume(last, resumed);
  EXPECT_FALSE(now.due(resumed));
  now.close_due(resumed);
  const group_entry& e = *now.find(escrow);
  EXPECT_EQ(e.g.round, 2u);
  EXPECT_EQ(e.g.shift_ns, resumed - last);
  EXPECT_EQ(now.next_deadline(), round_deadline(e.g)) << "the heap holds the moved deadline and close";
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, wire::event_type::equb_rescheduled);
  EXPECT_EQ(events[0].account_a, escrow);
  EXPECT_EQ(events[0].code, 2u);
  EXPECT_EQ(events[0].amount, resumed - last);
  EXPECT_EQ(events[0].ref.lo, round_deadline(e.g));
  EXPECT_EQ(events[0].ref.hi, round_close(e.g));
  EXPECT_EQ(events[0].timestamp, resumed);
  // Its moved close comes: the round closes then, as any round would.
  const uint64_t moved = round_close(e.g) + 1;
  ASSERT_TRUE(now.due(moved));
  now.close_due(moved);
  EXPECT_EQ(now.find(escrow)->g.round, 3u);
}

// Rounds that fall due in one batch close in the order of their current closes, whatever
// stale entries the table's heap holds: a round closed early (every seat paid) left its
// deadline and close behind, and before, that old close closed the group's next round
// ahead of another group's earlier one. A table loaded from the same groups (a snapshot,
// which keeps no stale entries) closes them in the same order.
TEST(equb_rules, rounds_due_together_close_in_the_order_of_their_closes) {
  auto make_escrow = [](const wire::account&) { return true; };
  constexpr uint64_t a_id = 900, b_id = 910;
  auto form = [&](group_table& t, uint64_t id, uint64_t start_at) {
    auto cfg = config();
    cfg.group_id = cfg.escrow_account_id = id;
    ASSERT_EQ(t.execute(create_op_of(cfg), 1, make_escrow), result::ok);
    for (uint32_t i = 0; i < 3; ++i) {
      ASSERT_EQ(t.verdict(equb_payment(id, wallet(i), 0, 0), 2), result::ok);
      t.paid(equb_payment(id, wallet(i), 0, 0), 2);
    }
    wire::equb_op start;
    start.kind = wire::equb_op_kind::start;
    start.group_id = id;
    ASSERT_EQ(t.execute(start, start_at, make_escrow), result::ok);  // round 1 pays at once
  };
  group_table live;
  std::vector<uint64_t> closed;  // groups, in the order their rounds closed
  auto watch = [&](group_table& t) {
    t.set_events([&](wire::event&& ev) {
      if (ev.type == wire::event_type::equb_round_closed) closed.push_back(ev.account_a);
    });
  };
  form(live, a_id, 3);
  form(live, b_id, 3 + period / 2);
  for (uint32_t i = 0; i < 3; ++i) {  // a's round 2, paid in full early: it closes at once
    ASSERT_EQ(live.verdict(equb_payment(a_id, wallet(i), 2, i), 10), result::ok);
    live.paid(equb_payment(a_id, wallet(i), 2, i), 10);
  }
  ASSERT_EQ(live.find(a_id)->g.round, 3u);
  // a's round 3 closes after b's round 2; both are due at `now`.
  const uint64_t now = round_close(live.find(a_id)->g) + 1;
  ASSERT_LT(round_close(live.find(b_id)->g), round_close(live.find(a_id)->g));
  group_table loaded;
  for (const uint64_t id : {b_id, a_id}) {
    group_entry e;
    std::string why;
    ASSERT_TRUE(decode_entry(encode_entry(*live.find(id)), &e, &why)) << why;
    loaded.load(std::move(e));
  }
  watch(live);
  live.close_due(now);
  EXPECT_EQ(closed, (std::vector<uint64_t>{b_id, a_id}));
  closed.clear();
  watch(loaded);
  loaded.close_due(now);
  EXPECT_EQ(closed, (std::vector<uint64_t>{b_id, a_id})) << "the same from a snapshot";
}

// An ended group with nothing owed retires retire_after_ns after it ended, by the rules
// of the batch (rules_groups_retire); one its shard will not close (the callback) stays,
// looked at again as long after. Its row becomes a tombstone; entries keep the time
// (version 3), and an older entry of an ended group gets one from its schedule.
TEST(equb_rules, ended_groups_retire_by_their_time_and_rules) {
  using mesob::actors::rules_groups_retire;
  auto make_escrow = [](const wire::account&) { return true; };
  auto payment = [](uint32_t i, uint32_t round) { return equb_payment(escrow, wallet(i), round, round == 0 ? 0 : i); };
  group_table t;
  auto cfg = config();
  cfg.group_id = cfg.escrow_account_id = escrow;
  ASSERT_EQ(t.execute(create_op_of(cfg), 1, make_escrow), result::ok);
  for (uint32_t i = 0; i < 3; ++i) t.paid(payment(i, 0), 2);
  wire::equb_op start;
  start.kind = wire::equb_op_kind::start;
  start.group_id = escrow;
  ASSERT_EQ(t.execute(start, 3, make_escrow), result::ok);
  for (uint32_t round = 2; round <= 3; ++round)
    for (uint32_t i = 0; i < 3; ++i) {
      ASSERT_EQ(t.verdict(payment(i, round), 10 + round), result::ok);
      t.paid(payment(i, round), 10 + round);
    }
  ASSERT_TRUE(ended(t.find(escrow)->g));
  const uint64_t ended_at = 13, at = ended_at + retire_after_ns;
  EXPECT_EQ(t.find(escrow)->retire_at, at);
  std::vector<uint32_t> steps;
  for (const auto& o : t.find(escrow)->owed) steps.push_back(o.first_step);
  for (const uint32_t step : steps) {  // the ledger carried every payment
    wire::transfer first;
    first.id = emitted_id(escrow, step);
    first.user_data = escrow;
    t.chain_done(first, result::ok);
  }
  ASSERT_TRUE(t.find(escrow)->owed.empty());
  ASSERT_EQ(escrow_expected(*t.find(escrow)), 0u);

  // Bytes: version 3 keeps the time; version 2 (without it) gets the last round's close
  // plus the time kept; a tombstone is no entry and an entry no tombstone.
  const auto bytes = encode_entry(*t.find(escrow));
  group_entry back;
  std::string why;
  ASSERT_TRUE(decode_entry(bytes, &back, &why)) << why;
  EXPECT_EQ(back.retire_at, at);
  auto v2 = std::vector<uint8_t>(bytes.begin(), bytes.end() - 8);
  v2[0] = 2;
  ASSERT_TRUE(decode_entry(v2, &back, &why)) << why;
  const group_state& g = t.find(escrow)->g;
  EXPECT_EQ(back.retire_at, deadline_after(g.started_at, 3, period, grace) + retire_after_ns);
  auto bad = bytes;
  bad[bad.size() - 8] ^= 1;  // still ended: a time is a time
  ASSERT_TRUE(decode_entry(bad, &back, &why)) << why;
  std::fill(bad.end() - 8, bad.end(), 0);
  EXPECT_FALSE(decode_entry(bad, &back, &why)) << "an ended group without a time";
  retired_group r;
  EXPECT_FALSE(decode_retired(bytes, &r));
  const auto stone = encode_retired({escrow, 7, 99});
  ASSERT_TRUE(decode_retired(stone, &r));
  EXPECT_EQ(r.group_id, escrow);
  EXPECT_EQ(r.number, 7u);
  EXPECT_EQ(r.retired_at, 99u);
  EXPECT_FALSE(decode_entry(stone, &back, &why));
  EXPECT_FALSE(decode_retired(std::vector<uint8_t>(stone.begin(), stone.end() - 1), &r));
  // A table loaded from the entry looks at it then too.
  group_table loaded;
  ASSERT_TRUE(decode_entry(bytes, &back, &why)) << why;
  loaded.load(std::move(back));
  EXPECT_EQ(loaded.next_deadline(), at);
  // A group that ended by older rules gets the time every recovery path computes: its
  // schedule's end plus the time kept, as an older snapshot's entry of it does.
  group_table older;
  older.set_rules(rules_groups_retire - 1);
  ASSERT_EQ(older.execute(create_op_of(cfg), 1, make_escrow), result::ok);
  for (uint32_t i = 0; i < 3; ++i) older.paid(payment(i, 0), 2);
  ASSERT_EQ(older.execute(start, 3, make_escrow), result::ok);
  for (uint32_t round = 2; round <= 3; ++round)
    for (uint32_t i = 0; i < 3; ++i) older.paid(payment(i, round), 10 + round);
  ASSERT_TRUE(ended(older.find(escrow)->g));
  EXPECT_EQ(older.find(escrow)->retire_at, legacy_retire_at(*older.find(escrow)));
  EXPECT_EQ(older.find(escrow)->retire_at, deadline_after(3, 3, period, grace) + retire_after_ns);

  // By older rules nothing retires, and no tick is asked for it.
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> rows;
  t.take_dirty(&rows);
  rows.clear();
  t.set_rules(rules_groups_retire - 1);
  t.drop_ended();  // (as its shard does after every batch: the ended group's round entries)
  EXPECT_FALSE(t.due(at + 1));
  t.close_due(at + 1);
  ASSERT_NE(t.find(escrow), nullptr);
  // Its shard will not close the escrow: kept, looked at again a month on.
  t.set_rules(rules_groups_retire);
  t.drop_ended();  // the rounds' stale entries (the shard drops them at each batch's end)
  EXPECT_EQ(t.next_deadline(), at);
  EXPECT_EQ(t.next_round_deadline(), UINT64_MAX) << "no heartbeat for an ended group";
  EXPECT_FALSE(t.due(at));
  ASSERT_TRUE(t.due(at + 1));
  bool agree = false;
  std::vector<wire::event> events;
  t.set_retire([&](const group_entry&) { return agree ? 1u : 0u; });
  t.set_events([&](wire::event&& ev) { events.push_back(ev); });
  t.close_due(at + 1);
  ASSERT_NE(t.find(escrow), nullptr);
  EXPECT_EQ(t.find(escrow)->retire_at, at + 1 + retire_after_ns);
  EXPECT_TRUE(events.empty());
  agree = true;
  t.close_due(at + 2);  // (the old time's entry is stale)
  ASSERT_NE(t.find(escrow), nullptr);
  t.close_due(at + 2 + retire_after_ns);
  EXPECT_EQ(t.find(escrow), nullptr);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.retired(), 1u);
  EXPECT_EQ(t.next_deadline(), UINT64_MAX);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, wire::event_type::equb_retired);
  EXPECT_EQ(events[0].account_a, escrow);
  EXPECT_EQ(events[0].ref.hi, 3u);
  EXPECT_EQ(events[1].type, wire::event_type::account_status);
  EXPECT_EQ(events[1].account_a, escrow);
  EXPECT_EQ(events[1].amount, 1u);
  t.take_dirty(&rows);
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows.back().first, escrow);
  ASSERT_TRUE(decode_retired(rows.back().second, &r));
  EXPECT_EQ(r.retired_at, at + 2 + retire_after_ns);
}

// A group's item_bytes (what look-ups bound their copies by) is at least what its look-up
// takes on the wire with the debts copied beside it, and not far above: seats, paid-out
// rounds, owed payments, debts.
TEST(equb_rules, item_bytes_bounds_a_groups_wire_size) {
  for (const uint32_t seats : {2u, 40u, 400u}) {
    SCOPED_TRACE(seats);
    ledger l;
    group_entry e;
    e.g = started(l, seats, bidding_config());
    for (uint32_t round = 1; round <= std::min(seats, 5u); ++round) {
      auto o = close_round(e.g, due_at(round, grace) + 1);  // unpaid rounds: debts
      ASSERT_EQ(o.code, result::ok);
      e.history.push_back({round, o.recipient_seat, {}});
      obligation ob;
      ob.first_step = e.next_step;
      ob.transfers = o.transfers;
      e.next_step += uint32_t(ob.transfers.size());
      if (!ob.transfers.empty()) e.owed.push_back(ob);
    }
    const auto body = wire::groups_body(std::vector{to_item(e)});
    size_t debts = 0;  // copied with the group, only their sums sent
    for (const auto& st : e.g.seats) debts += st.debts.size();
    ASSERT_GT(debts, 0u);
    const size_t copied = body.size() + debts * sizeof(debt);
    EXPECT_LE(copied, item_bytes(e));
    EXPECT_LE(item_bytes(e), 2 * copied + 1024);
  }
}
