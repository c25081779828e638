// Equb groups in the engine: group operations, member payments decided with the ledger
// (across shards too), payouts the groups emit, deadlines on the engine clock, refused
// payouts and retries, and restarts from a snapshot and from the log alone. Every money
// movement is checked against the accounts, and each group's escrow account against
// what its state says it must hold.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include <chrono>
#include <thread>

#include "actors/customers.hpp"
#include "actors/equb_group.hpp"
#include "actors/shard.hpp"
#include "storage/snapshot.hpp"
#include "support/engine_fixture.hpp"
#include "support/event_files.hpp"
#include "support/metrics_render.hpp"

namespace mesob::test {
namespace {

using actors::equb::group_entry;
using actors::equb::phase;
using wire::result;

constexpr uint64_t funding = 999;      // system account: pays the members' starting money
constexpr uint64_t fee_account = 900;
constexpr uint64_t guarantor = 901;
constexpr uint64_t contribution = 100;
constexpr uint64_t late_penalty = 5;
// A missed round's debt: the due and the late penalty (rules version 20).
constexpr uint64_t missed_debt = contribution + late_penalty;
constexpr uint64_t starting = 10'000;

class equb_engine : public ::testing::Test {
 protected:
  explicit equb_engine(bool checkpoint_on_close = true) : fx_(2, checkpoint_on_close) {}

  engine::engine& e() { return fx_.e(); }

  // Wallets 1..n with `starting` each, the fee and guarantor accounts, the funding account.
  void open_wallets(uint64_t n) {
    std::vector<wire::account> a;
    for (uint64_t id = 1; id <= n; ++id) a.push_back(make_account(id, wire::account_flags::debits_must_not_exceed_credits));
    a.push_back(make_account(fee_account));
    a.push_back(make_account(guarantor));
    a.push_back(make_account(funding));
    for (auto r : e().create_accounts(a).results) ASSERT_EQ(r, result::ok);
    std::vector<wire::transfer> t;
    for (uint64_t id = 1; id <= n; ++id) t.push_back(make_transfer(next_id_++, funding, id, starting));
    for (auto r : e().create_transfers(t).results) ASSERT_EQ(r, result::ok);
  }

  wire::equb_op create_op(uint64_t group, actors::equb::rotation rot = actors::equb::rotation::fixed_order,
                          actors::equb::default_policy pol = actors::equb::default_policy::pay_what_is_there) {
    wire::equb_op op = make_equb_create(group, fee_account, contribution, uint8_t(rot));
    op.guarantor_account_id = pol == actors::equb::default_policy::cover_from_guarantor ? guarantor : 0;
    op.period_ns = 7 * 86'400ull * 1'000'000'000ull;  // a week
    op.grace_ns = 86'400ull * 1'000'000'000ull;       // a day
    op.late_penalty = late_penalty;
    op.fee_bp = 100;  // 1%
    op.default_policy = uint8_t(pol);
    return op;
  }

  result op1(const wire::equb_op& op) {
    auto r = e().equb({op});
    EXPECT_EQ(r.st, engine::status::ok);
    return r.results.empty() ? result::linked_event_failed : r.results[0];
  }
  result simple(wire::equb_op_kind kind, uint64_t group) {
    wire::equb_op op;
    op.kind = kind;
    op.group_id = group;
    return op1(op);
  }

  // A member payment: round 0 joins.
  wire::transfer payment(uint64_t wallet, uint64_t group, uint32_t round, uint32_t seat, uint64_t amount) {
    wire::transfer t = make_transfer(next_id_++, wallet, group, amount, wire::transfer_flags::equb);
    t.user_data = uint64_t(round) << 32 | seat;
    return t;
  }
  result pay(uint64_t wallet, uint64_t group, uint32_t round, uint32_t seat, uint64_t amount) {
    auto r = e().create_transfers({payment(wallet, group, round, seat, amount)});
    return r.results.at(0);
  }

  group_entry group(uint64_t id) {
    auto r = e().lookup_groups({id});
    EXPECT_EQ(r.results.at(0), result::ok);
    return r.groups.at(0);
  }

  // Waits until the group's emitted payments are carried or refused (they are sequenced
  // after the request that caused them).
  group_entry settled(uint64_t id) {
    for (int i = 0; i < 2000; ++i) {
      group_entry g = group(id);
      bool waiting = false;
      for (const auto& o : g.owed) waiting = waiting || actors::equb::in_flight(o);
      if (!waiting) return g;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ADD_FAILURE() << "group " << id << " still has payments in flight";
    return group(id);
  }
  // Group `id` once completed (its last round closed at the engine's tick), up to 5 s.
  group_entry completed(uint64_t id) {
    group_entry st;
    for (int i = 0; i < 1000 && st.g.ph != phase::completed; ++i) {
      st = settled(id);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return st;
  }
  // Whether group `id` has retired (look-ups find it no more), waiting up to 5 s.
  bool retired(uint64_t id) {
    for (int i = 0; i < 1000; ++i) {
      if (e().lookup_groups({id}).results.at(0) == result::group_not_found) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  // Waits (up to 5 s) for a log record after the durable lsn `logged` (a tick the
  // engine logs by itself); returns the durable lsn then.
  uint64_t logged_after(uint64_t logged) {
    uint64_t now = logged;
    for (int i = 0; i < 1000 && now == logged; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      now = e().stats().lsn_durable;
    }
    return now;
  }

  // Waits (up to 5 s) for the engine's ticks to close rounds on their deadlines until
  // the group is at `round`; returns it settled, at that round or where it stopped.
  group_entry at_round(uint64_t id, uint32_t round) {
    group_entry st;
    for (int i = 0; i < 1000; ++i) {
      st = settled(id);
      if (st.g.round == round) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return st;
  }

  wire::account account(uint64_t id) { return e().lookup_accounts({id}).accounts.at(0); }
  int64_t balance(uint64_t id) {
    const auto a = account(id);
    return int64_t(a.credits_posted) - int64_t(a.debits_posted);
  }
  // The escrow account holds exactly what the group's state says, once settled.
  void expect_escrow_consistent(uint64_t id) {
    const group_entry g = settled(id);
    const auto a = account(id);
    EXPECT_EQ(a.credits_posted - a.debits_posted, actors::equb::escrow_expected(g)) << "group " << id;
    EXPECT_EQ(a.debits_pending + a.credits_pending, 0u);
    const auto check = e().check_balances();  // the admin audit's check: every group against its escrow
    EXPECT_TRUE(check.balanced) << check.detail;
    EXPECT_GE(check.groups_checked, 1u);
    // A look-up of the group reads its escrow account with it, at one point of the
    // request stream (what the admin's `group show` compares).
    const auto r = e().lookup_groups({id});
    ASSERT_EQ(r.accounts.size(), 1u);
    EXPECT_EQ(r.accounts[0].id, id);
    EXPECT_EQ(r.accounts[0].credits_posted - r.accounts[0].debits_posted, actors::equb::escrow_expected(r.groups.at(0)));
  }

  // A group with members 1..n (seat i - 1 held by wallet i), forming.
  void gather(uint64_t id, uint32_t n, actors::equb::rotation rot = actors::equb::rotation::fixed_order,
              actors::equb::default_policy pol = actors::equb::default_policy::pay_what_is_there) {
    ASSERT_EQ(op1(create_op(id, rot, pol)), result::ok);
    for (uint32_t w = 1; w <= n; ++w) ASSERT_EQ(pay(w, id, 0, 0, contribution), result::ok) << "join " << w;
  }
  // The same, started.
  void form(uint64_t id, uint32_t n, actors::equb::rotation rot = actors::equb::rotation::fixed_order,
            actors::equb::default_policy pol = actors::equb::default_policy::pay_what_is_there) {
    gather(id, n, rot, pol);
    ASSERT_EQ(simple(wire::equb_op_kind::start, id), result::ok);
  }

  // Group `id` of three seats, started: wallet 1 holds seats 0 and 1, wallet 2 seat 2.
  void form_with_two_numbers(uint64_t id) {
    open_wallets(2);
    ASSERT_EQ(op1(create_op(id)), result::ok);
    for (const uint64_t w : {1, 1, 2}) ASSERT_EQ(pay(w, id, 0, 0, contribution), result::ok);
    ASSERT_EQ(simple(wire::equb_op_kind::start, id), result::ok);
  }

  // Group `id` of wallets 1..3, round 1 paid by wallet 2, in a snapshot; the engine closed.
  void closed_after_a_round_paid(uint64_t id) {
    open_wallets(3);
    form(id, 3);
    ASSERT_EQ(pay(1, id, 2, 0, contribution), result::ok);
    settled(id);
    std::string err;
    ASSERT_TRUE(e().checkpoint(&err)) << err;
    fx_.close();
  }
  // Rewrites group `id`'s row in the closed engine's snapshot through `change`.
  void rewrite_group_row(uint64_t id, const std::function<void(group_entry&)>& change) {
    rewrite_snapshot_row(fx_.dir(), storage::table::groups, id, [&](std::span<const uint8_t> row) {
      group_entry entry;
      std::string why;
      if (!actors::equb::decode_entry(row, &entry, &why)) {
        ADD_FAILURE() << "group row " << id << ": " << why;
        return std::vector<uint8_t>{};
      }
      change(entry);
      return actors::equb::encode_entry(entry);
    });
  }

  void outage_does_not_count_against_members();
  void short_pot_discount_is_owed_to_the_group();
  void a_dividend_only_a_cover_backs_waits_for_it();
  // Bidding group `g` of wallets 1..4 under `c` (no fee, bids down to half the nominal
  // pot 400), started (round 1 to seat 0); seat 1 bids 200 for round 2 and only seat 2
  // pays it.
  void short_pot_round_two(uint64_t g, wire::equb_op c) {
    c.fee_bp = 0;
    c.max_discount_bp = 5000;
    ASSERT_EQ(op1(c), result::ok);
    for (uint32_t w = 1; w <= 4; ++w) ASSERT_EQ(pay(w, g, 0, 0, contribution), result::ok);
    ASSERT_EQ(simple(wire::equb_op_kind::start, g), result::ok);
    wire::equb_op bid;
    bid.kind = wire::equb_op_kind::bid;
    bid.group_id = g;
    bid.seat = 1;
    bid.wallet = 2;
    bid.round = 2;
    bid.amount = 200;
    ASSERT_EQ(op1(bid), result::ok);
    ASSERT_EQ(pay(3, g, 2, 2, contribution), result::ok);  // seats 0, 1 and 3 miss round 2
  }
  static uint64_t debts_of_seat(const group_entry& g, uint32_t seat) { return actors::equb::debts_of(g.g.seats.at(seat)); }
  // Wallet `w` a verified customer at `tier`.
  void give_tier(uint64_t w, uint8_t tier) {
    wire::customer_op c;
    c.wallet = w;
    c.kyc = wire::kyc_status::verified;
    c.profile = wire::risk_profile::moderate;
    c.tier = tier;
    c.sequence = 1;
    ASSERT_EQ(e().customers({c}).results.at(0), result::ok);
  }
  uint64_t outflow_today(uint64_t w) { return e().lookup_customers({w}).customers.at(0).outflow_today; }

  engine_fixture fx_;
  uint64_t next_id_ = 1;
};

class equb_engine_replay : public equb_engine {
 protected:
  equb_engine_replay() : equb_engine(false) {}
};

TEST_F(equb_engine, FixedOrderGroupRunsToCompletionAcrossShards) {
  constexpr uint64_t g = 5000;
  constexpr uint32_t n = 6;
  open_wallets(n);
  // Members on both shards, and on the escrow's own: payments both cross and stay.
  bool local = false, remote = false;
  for (uint64_t w = 1; w <= n; ++w) (actors::shard_of(w, 2) == actors::shard_of(g, 2) ? local : remote) = true;
  ASSERT_TRUE(local && remote);

  // Creates its configuration refuses spend no group number (numbers are never given
  // again: a client repeating a bad create used them up).
  auto bad = create_op(g);
  bad.contribution = 0;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(op1(bad), result::contribution_must_not_be_zero);
  // Nor do those the shard refuses by their configuration (before, each took a number).
  auto late = create_op(g);
  late.grace_ns = late.period_ns;
  EXPECT_EQ(op1(late), result::grace_not_within_period);
  auto uncapped = create_op(g, actors::equb::rotation::bidding);
  uncapped.commission_bp = 500;
  uncapped.organizer_account_id = guarantor;
  EXPECT_EQ(op1(uncapped), result::commission_cap_missing);
  // A round under a minute, and a seat's round whose lifetime sums could overflow the
  // escrow (rules version 34); older records' creates took them.
  auto quick = create_op(g);
  quick.period_ns = actors::equb::period_min_ns - 1;
  quick.grace_ns = 0;
  EXPECT_EQ(op1(quick), result::period_too_short);
  auto dear = create_op(g);
  dear.contribution = actors::equb::seat_round_max - dear.late_penalty + 1;
  EXPECT_EQ(op1(dear), result::amounts_too_large);
  for (const auto& op : {quick, dear}) {
    const auto c = actors::equb::config_of(op);
    EXPECT_EQ(actors::equb::new_group_refusal(c, actors::rules_group_lifetime_sums - 1), result::ok);
  }
  dear.contribution -= 1;
  EXPECT_EQ(actors::equb::new_group_refusal(actors::equb::config_of(dear), actors::rules_newest), result::ok);
  // A late penalty over the contribution (rules version 47): a member's late payment
  // passes its tier's limits, and only the contribution met them at the join. Older
  // records' creates took it; a penalty of the contribution itself is fine.
  auto steep = create_op(g);
  steep.late_penalty = contribution + 1;
  EXPECT_EQ(op1(steep), result::late_penalty_past_contribution);
  EXPECT_EQ(actors::equb::new_group_refusal(actors::equb::config_of(steep), actors::rules_penalty_within_contribution - 1),
            result::ok);
  steep.late_penalty = contribution;
  EXPECT_EQ(actors::equb::new_group_refusal(actors::equb::config_of(steep), actors::rules_newest), result::ok);
  ASSERT_EQ(op1(create_op(g)), result::ok);
  EXPECT_EQ(group(g).g.number, 1u) << "refused creates took numbers";
  ASSERT_EQ(op1(create_op(g)), result::ok) << "a repeated create is answered ok";
  auto changed = create_op(g);
  changed.contribution = 101;
  EXPECT_EQ(op1(changed), result::exists_with_different_fields);
  const auto escrow = account(g);
  EXPECT_EQ(escrow.kind, wire::account_kind::group_escrow);
  EXPECT_EQ(group(g).g.ph, phase::forming);

  for (uint32_t w = 1; w <= n; ++w) ASSERT_EQ(pay(w, g, 0, 0, contribution), result::ok);
  EXPECT_EQ(balance(g), int64_t(n * contribution));
  EXPECT_EQ(simple(wire::equb_op_kind::start, g), result::ok);
  EXPECT_EQ(simple(wire::equb_op_kind::start, g), result::group_not_forming);

  const uint64_t pot = n * contribution, fee = pot / 100;
  for (uint32_t round = 2; round <= n; ++round) {
    // Round round - 1 paid out to seat round - 2 (wallet round - 1).
    const group_entry st = settled(g);
    ASSERT_EQ(st.g.round, round);
    EXPECT_EQ(st.g.seats[round - 2].received_round, round - 1);
    EXPECT_EQ(balance(round - 1), int64_t(starting - (round - 1) * contribution + pot - fee));
    expect_escrow_consistent(g);
    for (uint32_t seat = 0; seat < n; ++seat)
      ASSERT_EQ(pay(seat + 1, g, round, seat, contribution), result::ok) << "round " << round << " seat " << seat;
  }
  const group_entry done = settled(g);
  EXPECT_EQ(done.g.ph, phase::completed);
  for (uint32_t seat = 0; seat < n; ++seat) {
    EXPECT_EQ(done.g.seats[seat].received_round, seat + 1);
    EXPECT_EQ(balance(seat + 1), int64_t(starting - n * contribution + pot - fee));
  }
  EXPECT_EQ(balance(g), 0);
  EXPECT_EQ(balance(fee_account), int64_t(n * fee));
  expect_escrow_consistent(g);
  EXPECT_EQ(pay(1, g, n, 0, contribution), result::nothing_owed) << "ended, and seat 0 owes nothing";
}

TEST_F(equb_engine, BadPaymentsGetPreciseErrorsAndChangeNothing) {
  constexpr uint64_t g = 5001;
  open_wallets(5);
  form(g, 3);
  const group_entry before = settled(g);
  ASSERT_EQ(before.g.round, 2u);
  const int64_t b1 = balance(1), bg = balance(g);

  EXPECT_EQ(pay(1, g, 2, 0, contribution - 1), result::wrong_amount);
  EXPECT_EQ(pay(1, g, 1, 0, contribution), result::round_already_paid);
  EXPECT_EQ(pay(1, g, 3, 0, contribution), result::round_not_open);
  EXPECT_EQ(pay(1, g, 2, 1, contribution), result::not_a_member) << "seat 1 is wallet 2's";
  EXPECT_EQ(pay(4, g, 2, 0, contribution), result::not_a_member);
  EXPECT_EQ(pay(4, g, 0, 0, contribution), result::group_not_forming);
  EXPECT_EQ(pay(1, fee_account, 2, 0, contribution), result::group_not_found);
  auto usd = payment(1, g, 2, 0, contribution);
  usd.currency = wire::currency("USD");
  EXPECT_EQ(e().create_transfers({usd}).results.at(0), result::transfer_currency_mismatch);
  auto linked = payment(1, g, 2, 0, contribution);
  linked.flags |= wire::transfer_flags::linked;
  auto tail = make_transfer(next_id_++, 1, 2, 1);
  const auto lr = e().create_transfers({linked, tail});
  EXPECT_EQ(lr.results.at(0), result::equb_transfer_must_stand_alone);
  auto reserved = make_transfer(0, 1, 2, 1);
  reserved.id = actors::equb::emitted_id(g, 77);
  EXPECT_EQ(e().create_transfers({reserved}).results.at(0), result::id_reserved);
  // A wallet without the money: the ledger's refusal comes first.
  std::vector<wire::transfer> drain{make_transfer(next_id_++, 1, funding, uint64_t(balance(1)))};
  ASSERT_EQ(e().create_transfers(drain).results.at(0), result::ok);
  EXPECT_EQ(pay(1, g, 2, 0, contribution), result::exceeds_credits);
  EXPECT_EQ(balance(g), bg);
  const group_entry after = settled(g);
  EXPECT_FALSE(after.g.seats[0].paid);
  EXPECT_EQ(after.g.escrow, before.g.escrow);
  ASSERT_EQ(e().create_transfers({make_transfer(next_id_++, funding, 1, uint64_t(b1))}).results.at(0), result::ok);

  // Paid once; a retry of the same payment (same id) is answered, not charged again;
  // another payment for the same seat and round is refused.
  const auto p = payment(1, g, 2, 0, contribution);
  EXPECT_EQ(e().create_transfers({p}).results.at(0), result::ok);
  EXPECT_EQ(e().create_transfers({p}).results.at(0), result::ok);
  EXPECT_EQ(balance(1), b1 - int64_t(contribution));
  EXPECT_EQ(pay(1, g, 2, 0, contribution), result::already_contributed);
  expect_escrow_consistent(g);

  // Group operations' field checks.
  wire::equb_op bad;
  bad.kind = wire::equb_op_kind(10);  // past the last (write_off)
  bad.group_id = g;
  EXPECT_EQ(op1(bad), result::equb_op_invalid);
  bad.kind = wire::equb_op_kind::dissolve;
  bad.seed[3] = 1;
  EXPECT_EQ(op1(bad), result::equb_op_invalid);
  bad = {};
  bad.kind = wire::equb_op_kind::start;
  EXPECT_EQ(op1(bad), result::id_must_not_be_zero);
  EXPECT_EQ(simple(wire::equb_op_kind::start, 4242), result::group_not_found);
  auto taken = create_op(1);  // wallet 1's id
  EXPECT_EQ(op1(taken), result::group_account_exists);
  // An id the engine keeps for its own accounts: a payout desk's of a currency no gateway
  // serves yet, and a trading account's. Before, the escrow took it, and the engine's
  // account was never made when the currency came to be served.
  for (const uint64_t engines : {actors::payouts::desk_account_for(wire::currency("USD"), 0, 2),
                                  actors::trading::account_for(wire::currency("USD"), 1, 2)}) {
    EXPECT_EQ(op1(create_op(engines)), result::id_reserved) << engines;
    EXPECT_EQ(account(engines).id, 0u);
  }
  auto zero = create_op(6000);
  zero.contribution = 0;
  EXPECT_EQ(op1(zero), result::contribution_must_not_be_zero);
  EXPECT_EQ(account(6000).id, 0u) << "a refused create makes no account";
}

TEST_F(equb_engine, MissedDeadlinePaysWhatIsThereAndTheDebtFollowsTheMember) {
  constexpr uint64_t g = 5002;
  open_wallets(3);
  form(g, 3);
  ASSERT_EQ(settled(g).g.round, 2u);
  // Round 2: wallets 1 and 2 pay, wallet 3 does not. Round k's deadline is k - 1 weeks
  // after the start (round 1 paid out at it), then a day of grace.
  ASSERT_EQ(pay(1, g, 2, 0, contribution), result::ok);
  ASSERT_EQ(pay(2, g, 2, 1, contribution), result::ok);
  fx_.advance_s(8 * 86'400 + 1);
  // The engine ticks on its clock: the round closes without a request.
  const group_entry st = at_round(g, 3);
  ASSERT_EQ(st.g.round, 3u);
  // Seat 1 (wallet 2) received the 200 collected, less 1%.
  EXPECT_EQ(balance(2), int64_t(starting - 2 * contribution + 200 - 2));
  ASSERT_EQ(st.g.seats[2].debts.size(), 1u);
  EXPECT_EQ(st.g.seats[2].debts[0].creditor_account_id, 2u);
  expect_escrow_consistent(g);
  EXPECT_EQ(st.g.seats[2].debts[0].amount, missed_debt);
  // Round 3 (its deadline is two weeks after the start: not late yet): wallet 3 owes its due and its debt.
  EXPECT_EQ(pay(3, g, 3, 2, contribution), result::wrong_amount);
  EXPECT_EQ(pay(3, g, 3, 2, 2 * contribution), result::wrong_amount) << "the debt is the due and the penalty";
  const int64_t creditor = balance(2);
  ASSERT_EQ(pay(3, g, 3, 2, contribution + missed_debt), result::ok);
  settled(g);
  EXPECT_EQ(balance(2), creditor + int64_t(missed_debt)) << "the debt, penalty included, went on to its creditor";
  expect_escrow_consistent(g);
}

TEST_F(equb_engine, RefusedPayoutWaitsForRetryAcrossRestart) {
  constexpr uint64_t g = 5003;
  // What operators are shown (mesob_equb_obligations_refused): the shards' refused
  // obligations, as published after their batches.
  auto refused_shown = [&](uint64_t want) {
    uint64_t n = 0;
    for (int i = 0; i < 500; ++i) {
      n = 0;
      for (const auto& r : e().shard_reports()) n += r.group_refusals;
      if (n == want) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(4));
    }
    return n;
  };
  open_wallets(3);
  // Wallet 1 receives round 1; frozen, the payout is refused and the money stays held.
  gather(g, 3);
  ASSERT_EQ(e().set_account_status({{1, wire::account_status::frozen}}).results.at(0), result::ok);
  ASSERT_EQ(simple(wire::equb_op_kind::start, g), result::ok);
  group_entry st = settled(g);
  ASSERT_EQ(st.owed.size(), 1u);
  EXPECT_TRUE(st.owed[0].refused);
  EXPECT_EQ(st.owed[0].refusal, result::credit_account_frozen);
  EXPECT_EQ(balance(g), int64_t(3 * contribution));
  expect_escrow_consistent(g);
  EXPECT_EQ(refused_shown(1), 1u);
  const std::string text = test::render_answered(e());
  EXPECT_NE(text.find("mesob_equb_obligations_refused{shard=\"" + std::to_string(actors::shard_of(g, 2)) + "\"} 1"),
            std::string::npos)
      << text.substr(0, 2000);

  fx_.restart();
  st = settled(g);
  ASSERT_EQ(st.owed.size(), 1u);
  EXPECT_TRUE(st.owed[0].refused) << "a refused payout is not sent again by itself";
  EXPECT_EQ(refused_shown(1), 1u) << "counted as the snapshot loads";
  EXPECT_EQ(simple(wire::equb_op_kind::retry, g), result::ok);
  EXPECT_TRUE(settled(g).owed[0].refused) << "still frozen";
  EXPECT_EQ(refused_shown(1), 1u) << "retried and refused again: once";
  ASSERT_EQ(e().set_account_status({{1, wire::account_status::open}}).results.at(0), result::ok);
  EXPECT_EQ(simple(wire::equb_op_kind::retry, g), result::ok);
  st = settled(g);
  EXPECT_TRUE(st.owed.empty());
  EXPECT_EQ(refused_shown(0), 0u);
  EXPECT_EQ(balance(1), int64_t(starting - contribution + 3 * contribution - 3));
  EXPECT_EQ(simple(wire::equb_op_kind::retry, g), result::nothing_to_retry);
  expect_escrow_consistent(g);
}

// Capacity (engine/README.md "Capacity"): each shard holds its share of groups_max,
// rounded up. A create past it is refused, groups_full, and makes no escrow account; a
// repeat of a group that exists is still ok. The setting is logged with each create: a
// replay under a larger one decides as the live run did, and new creates follow it.
TEST_F(equb_engine_replay, GroupsPastAShardsShareAreRefusedAndReplayAsDecided) {
  fx_.set_capacity(0, 3);  // 2 a shard
  fx_.restart();
  open_wallets(1);
  std::vector<wire::equb_op> ops;
  for (uint64_t g = 5001; g <= 5010; ++g) ops.push_back(create_op(g));
  const auto r = e().equb(ops);
  ASSERT_EQ(r.st, engine::status::ok);
  uint32_t held[2] = {0, 0};
  const auto [made, refused] = expect_capacity_split(5001, 5010, held, 2, r.results, result::groups_full);
  ASSERT_EQ(made.size(), 4u);
  EXPECT_EQ(e().stats().groups, 4u);
  EXPECT_DOUBLE_EQ(e().stats().groups_share_used, 1.0);
  for (const uint64_t g : refused) {
    EXPECT_EQ(e().lookup_groups({g}).results.at(0), result::group_not_found) << g;
    EXPECT_EQ(e().lookup_accounts({g}).results.at(0), result::account_not_found) << g;
  }
  EXPECT_EQ(op1(create_op(made[0])), result::ok);  // a repeat
  EXPECT_EQ(op1(create_op(refused[0])), result::groups_full);
  ASSERT_EQ(pay(1, made[0], 0, 0, contribution), result::ok);  // the groups made work as any

  fx_.set_capacity(0, 100);
  fx_.restart();  // from the log alone
  for (const uint64_t g : made) EXPECT_EQ(e().lookup_groups({g}).results.at(0), result::ok) << g;
  for (const uint64_t g : refused) EXPECT_EQ(e().lookup_groups({g}).results.at(0), result::group_not_found) << g;
  expect_escrow_consistent(made[0]);
  EXPECT_EQ(op1(create_op(refused[0])), result::ok);
}

// A group's escrow account counts against its shard's share of accounts_max (rules
// version 31): a create on a shard holding its share of accounts is refused,
// accounts_full, and makes neither group nor account. The setting is logged with the
// create: a replay under a larger one decides as the live run did. (Before, escrows were
// made whatever the shard held, and retired groups' escrows stay: creates could grow the
// accounts past accounts_max.)
TEST_F(equb_engine_replay, EscrowAccountsCountAgainstAccountsMax) {
  open_wallets(1);
  uint32_t held[2] = {0, 0};
  for (const auto& r : e().shard_reports()) held[r.shard] = uint32_t(r.accounts);
  const uint32_t share = std::max(held[0], held[1]) + 2;  // the fuller shard: room for 2
  fx_.set_capacity(2 * share, 100);
  fx_.restart();
  for (const auto& r : e().shard_reports()) held[r.shard] = uint32_t(r.accounts);
  ASSERT_LE(std::max(held[0], held[1]), share);
  std::vector<wire::equb_op> ops;
  for (uint64_t g = 5101; g <= 5112; ++g) ops.push_back(create_op(g));
  const auto r = e().equb(ops);
  ASSERT_EQ(r.st, engine::status::ok);
  const auto [made, refused] = expect_capacity_split(5101, 5112, held, share, r.results, result::accounts_full);
  ASSERT_FALSE(refused.empty());
  EXPECT_DOUBLE_EQ(e().stats().accounts_share_used, 1.0);
  for (const uint64_t g : refused) {
    EXPECT_EQ(e().lookup_groups({g}).results.at(0), result::group_not_found) << g;
    EXPECT_EQ(e().lookup_accounts({g}).results.at(0), result::account_not_found) << g;
  }
  EXPECT_EQ(op1(create_op(made[0])), result::ok);  // a repeat
  EXPECT_EQ(op1(create_op(refused[0])), result::accounts_full);

  fx_.set_capacity(0, 0);  // the defaults
  fx_.restart();  // from the log alone
  for (const uint64_t g : made) EXPECT_EQ(e().lookup_groups({g}).results.at(0), result::ok) << g;
  for (const uint64_t g : refused) EXPECT_EQ(e().lookup_groups({g}).results.at(0), result::group_not_found) << g;
  EXPECT_EQ(op1(create_op(refused[0])), result::ok);
}

// Transfers past transfers_max (engine/README.md "Capacity"): a member's payment is a
// client's transfer and is refused (transfers_full); the chains the group emits are the
// engine's own and go on, live and in replay.
TEST_F(equb_engine_replay, AGroupsChainsGoOnPastTransfersMax) {
  constexpr uint64_t g = 5031;
  open_wallets(3);
  form(g, 3);  // round 1: wallet 1 receives at once
  ASSERT_EQ(pay(1, g, 2, 0, contribution), result::ok);
  ASSERT_EQ(pay(2, g, 2, 1, contribution), result::ok);
  settled(g);
  const uint64_t full = e().stats().transfers;
  fx_.set_transfers_max(full);
  fx_.restart();
  EXPECT_EQ(pay(3, g, 2, 2, contribution), result::transfers_full);
  const int64_t w2 = balance(2);
  fx_.advance_s(8 * 86'400 + 1);  // wallet 3 misses round 2: it closes, wallet 2 receives
  ASSERT_EQ(at_round(g, 3).g.round, 3u);
  EXPECT_GT(e().stats().transfers, full) << "the group's chains are the engine's own";
  EXPECT_GT(balance(2), w2);
  EXPECT_EQ(debts_of_seat(settled(g), 2), missed_debt);
  expect_escrow_consistent(g);
  const int64_t received = balance(2);
  const uint64_t transfers = e().stats().transfers;
  fx_.restart();  // from the log alone, under the same setting
  EXPECT_EQ(settled(g).g.round, 3u);
  EXPECT_EQ(balance(2), received);
  EXPECT_EQ(e().stats().transfers, transfers);
  expect_escrow_consistent(g);
}

// Restarts that recover from the log alone: groups are rebuilt by replay, with the same
// payouts, and payouts the log does not hold are sent again.
TEST_F(equb_engine_replay, GroupsAreRebuiltByReplay) {
  constexpr uint64_t g = 5004, h = 5005;
  open_wallets(8);
  form(g, 4, actors::equb::rotation::lottery);
  form(h, 4, actors::equb::rotation::fixed_order, actors::equb::default_policy::cover_from_guarantor);
  for (uint32_t seat = 0; seat < 4; ++seat) ASSERT_EQ(pay(seat + 1, g, 2, seat, contribution), result::ok);
  ASSERT_EQ(pay(1, h, 2, 0, contribution), result::ok);
  const group_entry g1 = settled(g), h1 = settled(h);
  std::vector<int64_t> balances;
  for (uint64_t id = 1; id <= 8; ++id) balances.push_back(balance(id));

  fx_.restart();
  EXPECT_EQ(e().recovery().groups_loaded, 0u) << "no snapshot: replay alone";
  const group_entry g2 = settled(g), h2 = settled(h);
  EXPECT_EQ(actors::equb::encode_entry(g2), actors::equb::encode_entry(g1));
  EXPECT_EQ(actors::equb::encode_entry(h2), actors::equb::encode_entry(h1));
  for (uint64_t id = 1; id <= 8; ++id) EXPECT_EQ(balance(id), balances[id - 1]) << "wallet " << id;
  expect_escrow_consistent(g);
  expect_escrow_consistent(h);

  // The lottery's draws check against its commitment: H(s_k) = s_{k-1}, and the winner
  // is draw(s_k) among the seats that had not received.
  ASSERT_EQ(g2.history.size(), 2u);
  auto prev = g2.g.commitment;
  std::vector<uint32_t> candidates{0, 1, 2, 3};
  for (const auto& r : g2.history) {
    EXPECT_TRUE(actors::equb::seed_follows(r.revealed, prev)) << "round " << r.round;
    EXPECT_EQ(r.seat, actors::equb::draw(r.revealed, g, r.round, candidates));
    std::erase(candidates, r.seat);
    prev = r.revealed;
  }
  // The group goes on after the restart.
  for (uint32_t seat = 0; seat < 4; ++seat) ASSERT_EQ(pay(seat + 1, g, 3, seat, contribution), result::ok);
  EXPECT_EQ(settled(g).g.round, 4u);
  expect_escrow_consistent(g);
}

// A closed account never takes a payment again: a group whose fee account or a
// recipient's wallet was closed had its payout refused for good (retry only met the
// same refusal). replace_account puts another account in its place, and a retry pays.
// Recovered from the log alone, the group comes back as it was.
TEST_F(equb_engine_replay, ClosedAccountsAreReplacedAndTheRefusedPayoutsRetried) {
  constexpr uint64_t g = 5020, closed_fee = 950, new_fee = 951;
  open_wallets(4);
  ASSERT_EQ(e().create_accounts({make_account(closed_fee), make_account(new_fee)}).results.at(0), result::ok);
  auto c = create_op(g);
  c.fee_account_id = closed_fee;
  ASSERT_EQ(op1(c), result::ok);  // closed after the create (a create naming a closed one is refused)
  ASSERT_EQ(e().set_account_status({{closed_fee, wire::account_status::closed}}).results.at(0), result::ok);
  for (uint32_t w = 1; w <= 3; ++w) ASSERT_EQ(pay(w, g, 0, 0, contribution), result::ok);
  ASSERT_EQ(simple(wire::equb_op_kind::start, g), result::ok);
  group_entry st = settled(g);
  ASSERT_EQ(st.owed.size(), 1u);
  EXPECT_EQ(st.owed[0].refusal, result::credit_account_closed);
  EXPECT_EQ(simple(wire::equb_op_kind::retry, g), result::ok);
  EXPECT_EQ(settled(g).owed.at(0).refusal, result::credit_account_closed) << "closed for good";

  auto replace = [&](uint64_t from, uint64_t to) { return op1(make_equb_replace(g, from, to)); };
  EXPECT_EQ(replace(closed_fee, g), result::replacement_account_unfit) << "the escrow";
  EXPECT_EQ(replace(closed_fee, closed_fee), result::replacement_account_unfit) << "closed";
  EXPECT_EQ(replace(1, 1), result::accounts_must_differ);
  EXPECT_EQ(replace(4242, new_fee), result::account_not_in_group);
  EXPECT_EQ(replace(closed_fee, 0), result::id_must_not_be_zero);
  EXPECT_EQ(balance(g), int64_t(3 * contribution)) << "refusals change nothing";
  ASSERT_EQ(replace(closed_fee, new_fee), result::ok);
  EXPECT_EQ(settled(g).owed.at(0).refusal, result::credit_account_closed) << "replacing sends nothing";
  ASSERT_EQ(simple(wire::equb_op_kind::retry, g), result::ok);
  st = settled(g);
  EXPECT_TRUE(st.owed.empty());
  EXPECT_EQ(st.g.cfg.fee_account_id, new_fee);
  EXPECT_EQ(balance(new_fee), 3);
  EXPECT_EQ(balance(1), int64_t(starting - contribution + 3 * contribution - 3));
  expect_escrow_consistent(g);

  // Round 2's recipient (wallet 2) pays, then empties and closes its wallet: its payout is
  // refused until wallet 4 replaces it; seat 1 then pays from wallet 4.
  ASSERT_EQ(pay(2, g, 2, 1, contribution), result::ok);
  ASSERT_EQ(e().create_transfers({make_transfer(next_id_++, 2, funding, uint64_t(balance(2)))}).results.at(0),
            result::ok);
  ASSERT_EQ(e().set_account_status({{2, wire::account_status::closed}}).results.at(0), result::ok);
  ASSERT_EQ(pay(1, g, 2, 0, contribution), result::ok);
  ASSERT_EQ(pay(3, g, 2, 2, contribution), result::ok);
  st = settled(g);
  ASSERT_EQ(st.owed.size(), 1u);
  EXPECT_EQ(st.owed[0].refusal, result::credit_account_closed);
  const int64_t w4 = balance(4);
  ASSERT_EQ(replace(2, 4), result::ok);
  ASSERT_EQ(simple(wire::equb_op_kind::retry, g), result::ok);
  st = settled(g);
  EXPECT_TRUE(st.owed.empty());
  EXPECT_EQ(st.g.seats[1].wallet, 4u);
  EXPECT_EQ(balance(4), w4 + int64_t(3 * contribution - 3));
  EXPECT_EQ(pay(2, g, 3, 1, contribution), result::debit_account_closed);
  EXPECT_EQ(pay(1, g, 3, 1, contribution), result::not_a_member);
  ASSERT_EQ(pay(4, g, 3, 1, contribution), result::ok);
  expect_escrow_consistent(g);

  fx_.restart();
  const group_entry back = settled(g);
  EXPECT_EQ(back.g.cfg.fee_account_id, new_fee);
  EXPECT_EQ(back.g.seats[1].wallet, 4u);
  EXPECT_TRUE(back.g.seats[1].paid);
  EXPECT_EQ(actors::equb::encode_entry(back), actors::equb::encode_entry(settled(g)));
  ASSERT_EQ(pay(1, g, 3, 0, contribution), result::ok);
  ASSERT_EQ(pay(3, g, 3, 2, contribution), result::ok);
  st = settled(g);
  EXPECT_EQ(st.g.ph, phase::completed);
  EXPECT_EQ(balance(new_fee), 9);
  expect_escrow_consistent(g);
}

// A member who received and then stopped paying ends the group owing the recipients it
// short-changed. The debt outlives the group: the member pays it after the end, naming
// the last round, and it goes on to its creditor. Replay from the log takes it again.
TEST_F(equb_engine_replay, DebtsArePaidAfterTheGroupEnds) {
  constexpr uint64_t g = 5021;
  open_wallets(2);
  form(g, 2);  // round 1: wallet 1 receives at once
  ASSERT_EQ(pay(2, g, 2, 1, contribution), result::ok);
  fx_.advance_s(8 * 86'400 + 1);  // wallet 1 misses round 2
  group_entry st = completed(g);
  ASSERT_EQ(st.g.ph, phase::completed);
  ASSERT_EQ(st.g.seats[0].debts.size(), 1u);
  EXPECT_EQ(st.g.seats[0].debts[0].creditor_account_id, 2u);
  EXPECT_EQ(st.g.seats[0].debts[0].amount, missed_debt);
  const int64_t w1 = balance(1), w2 = balance(2);
  EXPECT_EQ(pay(1, g, 2, 0, contribution), result::wrong_amount) << "the penalty is owed too";
  EXPECT_EQ(pay(2, g, 2, 1, 0 + contribution), result::nothing_owed) << "wallet 2 owes nothing";
  EXPECT_EQ(pay(1, g, 3, 0, missed_debt), result::round_not_open);
  ASSERT_EQ(pay(1, g, 2, 0, missed_debt), result::ok);
  st = settled(g);
  EXPECT_TRUE(st.g.seats[0].debts.empty());
  EXPECT_EQ(balance(1), w1 - int64_t(missed_debt));
  EXPECT_EQ(balance(2), w2 + int64_t(missed_debt)) << "the debt went on to the short-changed recipient";
  EXPECT_EQ(pay(1, g, 2, 0, missed_debt), result::nothing_owed) << "paid once";
  expect_escrow_consistent(g);

  fx_.restart();
  st = settled(g);
  EXPECT_TRUE(st.g.seats[0].debts.empty());
  EXPECT_EQ(balance(1), w1 - int64_t(missed_debt));
  EXPECT_EQ(balance(2), w2 + int64_t(missed_debt));
  expect_escrow_consistent(g);
}

// A debt a member will never pay is written off by an operator, whole, as seen: the
// creditor is not paid it, no money moves, an event says so to the creditor, and the group
// then retires at its next look (30 days on) and frees its place. A replay decides the
// same.
TEST_F(equb_engine_replay, ADebtWrittenOffLetsTheGroupRetire) {
  constexpr uint64_t g = 5031, day_s = 86'400;
  open_wallets(3);
  form(g, 2);  // round 1: wallet 1 receives at once
  ASSERT_EQ(pay(2, g, 2, 1, contribution), result::ok);
  EXPECT_EQ(op1(make_equb_write_off(g, 0, 1, contribution)), result::group_not_ended);
  fx_.advance_s(8 * day_s + 1);  // wallet 1 misses round 2
  group_entry st = completed(g);
  ASSERT_EQ(st.g.ph, phase::completed);
  ASSERT_EQ(debts_of_seat(st, 0), missed_debt);
  const uint64_t first_look = st.retire_at;
  const int64_t w1 = balance(1), w2 = balance(2), escrow = balance(g);
  EXPECT_EQ(op1(make_equb_write_off(g, 0, 1, missed_debt - 1)), result::wrong_amount);
  EXPECT_EQ(op1(make_equb_write_off(g, 0, 3, missed_debt)), result::not_a_member);
  EXPECT_EQ(op1(make_equb_write_off(g, 1, 2, 1)), result::nothing_owed);
  EXPECT_EQ(op1(make_equb_write_off(g, 0, 1, 0)), result::wrong_amount);
  auto stray = make_equb_write_off(g, 0, 1, missed_debt);
  stray.round = 2;
  EXPECT_EQ(op1(stray), result::equb_op_invalid);
  EXPECT_EQ(op1(make_equb_write_off(g + 1, 0, 1, missed_debt)), result::group_not_found);
  EXPECT_EQ(debts_of_seat(settled(g), 0), missed_debt) << "refusals change nothing";
  ASSERT_EQ(op1(make_equb_write_off(g, 0, 1, missed_debt)), result::ok);
  EXPECT_TRUE(settled(g).g.seats[0].debts.empty());
  EXPECT_EQ(op1(make_equb_write_off(g, 0, 1, missed_debt)), result::nothing_owed) << "once";
  EXPECT_EQ(pay(1, g, 2, 0, missed_debt), result::nothing_owed) << "nothing is left to repay";
  EXPECT_EQ(balance(1), w1);
  EXPECT_EQ(balance(2), w2) << "the creditor is not paid it";
  EXPECT_EQ(balance(g), escrow);
  expect_escrow_consistent(g);

  fx_.restart();  // replay
  EXPECT_TRUE(settled(g).g.seats[0].debts.empty());
  EXPECT_EQ(settled(g).retire_at, first_look);
  // At its look, nothing owed: retired.
  fx_.advance_s(31 * day_s);
  ASSERT_TRUE(retired(g));
  EXPECT_EQ(account(g).status, wire::account_status::closed);
  EXPECT_EQ(balance(1), w1);
  EXPECT_EQ(balance(2), w2);

  std::vector<wire::event> ops, offs;
  fx_.close();
  for (const auto& ev : all_events(fx_.dir())) {
    if (ev.type == wire::event_type::equb_op && ev.code == uint16_t(wire::equb_op_kind::write_off)) ops.push_back(ev);
    if (ev.type == wire::event_type::equb_debt_written_off) offs.push_back(ev);
  }
  ASSERT_EQ(ops.size(), 1u) << "the refused ones and the replay wrote none";
  EXPECT_EQ(ops[0].account_a, g);
  EXPECT_EQ(ops[0].account_b, 1u);
  EXPECT_EQ(ops[0].amount, missed_debt);
  ASSERT_EQ(offs.size(), 1u);
  EXPECT_EQ(offs[0].account_a, g);
  EXPECT_EQ(offs[0].account_b, 2u) << "the creditor";
  EXPECT_EQ(offs[0].amount, missed_debt);
  EXPECT_EQ(offs[0].code, 0u) << "seat 0";
  EXPECT_EQ(offs[0].ref.lo, 2u) << "round 2";
  EXPECT_EQ(offs[0].ref.hi, 0u) << "no part owed to the group";
  EXPECT_EQ(offs[0].lsn, ops[0].lsn) << "in the same batch";
}

// An ended group with nothing owed leaves the engine 30 days after it ended
// (rules_groups_retire): look-ups find it no more, its escrow account is closed, its
// place under groups_max is free, and its id and number stay taken, through a replay
// and a checkpoint alike. One with a seat's debt stays until the debt is paid.
TEST_F(equb_engine_replay, EndedGroupsRetireAMonthOnAndFreeTheirPlace) {
  using actors::equb::retire_after_ns;
  constexpr uint64_t day_s = 86'400;
  fx_.set_capacity(0, 3);  // 2 groups a shard
  fx_.restart();
  open_wallets(2);
  // Four ids on one shard.
  std::vector<uint64_t> ids;
  for (uint64_t id = 5100; ids.size() < 4; ++id)
    if (actors::shard_of(id, 2) == actors::shard_of(5100, 2)) ids.push_back(id);
  const uint64_t a = ids[0], b = ids[1], c = ids[2], d = ids[3];
  form(a, 2);  // round 1 paid out at the start
  ASSERT_EQ(pay(1, a, 2, 0, contribution), result::ok);
  ASSERT_EQ(pay(2, a, 2, 1, contribution), result::ok);
  ASSERT_EQ(settled(a).g.ph, phase::completed);
  const uint64_t a_retire = settled(a).retire_at, a_number = settled(a).g.number;
  EXPECT_GT(a_retire, retire_after_ns);
  form(b, 2);
  ASSERT_EQ(pay(2, b, 2, 1, contribution), result::ok);  // wallet 1 will miss round 2
  EXPECT_EQ(op1(create_op(c)), result::groups_full);
  fx_.advance_s(15 * day_s + 1);  // b's round 2 closes: b ends, wallet 1 owing its due
  group_entry st = completed(b);
  ASSERT_EQ(st.g.ph, phase::completed);
  ASSERT_EQ(debts_of_seat(st, 0), missed_debt);
  const uint64_t b_retire = st.retire_at;
  // A checkpoint holds both, ended, with their times; a start loads them from it.
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  fx_.restart();
  EXPECT_EQ(e().recovery().groups_loaded, 2u);
  EXPECT_EQ(settled(a).retire_at, a_retire);
  EXPECT_EQ(settled(b).retire_at, b_retire);

  // 29 days after a ended: kept. Then past its 30: retired at the engine's next tick.
  fx_.advance_s(14 * day_s);
  EXPECT_EQ(e().lookup_groups({a}).results.at(0), result::ok);
  fx_.advance_s(2 * day_s);
  ASSERT_TRUE(retired(a));
  const auto escrow = account(a);
  EXPECT_EQ(escrow.status, wire::account_status::closed);
  EXPECT_EQ(escrow.status_seq, 1u);
  EXPECT_EQ(escrow.credits_posted, escrow.debits_posted);
  EXPECT_EQ(e().stats().groups, 1u);
  EXPECT_EQ(pay(1, a, 2, 0, contribution), result::credit_account_closed) << "the ledger's check, first";
  EXPECT_EQ(simple(wire::equb_op_kind::dissolve, a), result::group_not_found);
  ASSERT_EQ(op1(create_op(c)), result::ok) << "its place under groups_max is free";
  const uint64_t c_number = settled(c).g.number;
  EXPECT_GT(c_number, a_number);
  EXPECT_EQ(op1(create_op(a)), result::group_account_exists) << "its id stays taken, on a full shard too";
  EXPECT_EQ(e().lookup_groups({b}).results.at(0), result::ok) << "b ended later, owing";

  // Past b's time, still owing: kept, looked at again 30 days on.
  fx_.advance_s((b_retire - a_retire) / 1'000'000'000 + 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (int i = 0; i < 1000 && settled(b).retire_at == b_retire; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GT(settled(b).retire_at, b_retire + retire_after_ns - 1);
  ASSERT_EQ(pay(1, b, 2, 0, missed_debt), result::ok);  // the debt, paid
  EXPECT_EQ(simple(wire::equb_op_kind::dissolve, c), result::ok);  // forming: its deposits back
  fx_.advance_s(31 * day_s);
  ASSERT_TRUE(retired(b));
  ASSERT_TRUE(retired(c));
  EXPECT_EQ(e().stats().groups, 0u);
  const int64_t w1 = balance(1), w2 = balance(2);

  // From the checkpoint taken while a and b were ended, and the log after it: the same
  // retirements.
  fx_.restart();
  EXPECT_EQ(e().recovery().groups_loaded, 2u);
  for (const uint64_t id : {a, b, c}) {
    EXPECT_EQ(e().lookup_groups({id}).results.at(0), result::group_not_found) << id;
    EXPECT_EQ(account(id).status, wire::account_status::closed) << id;
  }
  EXPECT_EQ(balance(1), w1);
  EXPECT_EQ(balance(2), w2);
  // From a checkpoint: tombstones keep the ids and numbers taken.
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  fx_.restart();
  EXPECT_EQ(e().recovery().groups_loaded, 0u);
  EXPECT_EQ(e().recovery().groups_retired, 3u);
  EXPECT_EQ(op1(create_op(c)), result::group_account_exists);
  ASSERT_EQ(op1(create_op(d)), result::ok);
  EXPECT_GT(settled(d).g.number, c_number) << "c's number, the newest, is not given again";
  EXPECT_TRUE(e().check_balances().balanced);

  // The events: each retirement and its escrow's close, once (the replays wrote none again).
  std::vector<wire::event> retired, closed;
  fx_.close();
  for (const auto& ev : all_events(fx_.dir())) {
    if (ev.type == wire::event_type::equb_retired) retired.push_back(ev);
    if (ev.type == wire::event_type::account_status && (ev.account_a == a || ev.account_a == b || ev.account_a == c))
      closed.push_back(ev);
  }
  ASSERT_EQ(retired.size(), 3u);
  EXPECT_EQ(retired[0].account_a, a);
  EXPECT_EQ(retired[0].ref.lo, a_number);
  EXPECT_EQ(retired[0].ref.hi, 2u) << "rounds paid out";
  ASSERT_EQ(closed.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(closed[i].account_a, retired[i].account_a);
    EXPECT_EQ(closed[i].code, uint16_t(wire::account_status::closed));
    EXPECT_EQ(closed[i].amount, 1u) << "the escrow's status_seq after it";
    EXPECT_EQ(closed[i].lsn, retired[i].lsn) << "in the same batch";
  }
  // A tombstone whose number is past the last refuses the start (before, it loaded, and
  // every later create was refused group_numbers_exhausted for good).
  auto set_tombstone = [&](uint64_t number) {
    std::string err2, row;
    auto snap = storage::snapshot_store::open(fx_.dir() + "/snapshot", 1ull << 30, &err2);
    ASSERT_TRUE(snap) << err2;
    ASSERT_TRUE(snap->get(storage::table::groups, c, &row, &err2)) << err2;
    actors::equb::retired_group r;
    ASSERT_TRUE(actors::equb::decode_retired({reinterpret_cast<const uint8_t*>(row.data()), row.size()}, &r));
    r.number = number;
    auto w = snap->begin(&err2);
    ASSERT_TRUE(w) << err2;
    ASSERT_TRUE(w->put(storage::table::groups, c, actors::equb::encode_retired(r))) << w->error();
    ASSERT_TRUE(w->commit_without_meta()) << w->error();
  };
  set_tombstone(actors::equb::numbers_max);
  {
    std::string why;
    EXPECT_FALSE(engine::engine::open(fx_.config(), &why));
    EXPECT_NE(why.find("group " + std::to_string(c) + ": number " + std::to_string(actors::equb::numbers_max) +
                       " is past the last"),
              std::string::npos)
        << why;
  }
  set_tombstone(c_number);
  fx_.open();
  EXPECT_EQ(e().recovery().groups_retired, 3u);
}

TEST_F(equb_engine, DissolveAndLeaveReturnEveryMinorUnit) {
  constexpr uint64_t g = 5006, h = 5007;
  open_wallets(4);
  gather(g, 3);
  wire::equb_op leave;
  leave.kind = wire::equb_op_kind::leave;
  leave.group_id = g;
  leave.seat = 1;
  leave.wallet = 1;  // seat 1 is wallet 2's
  EXPECT_EQ(op1(leave), result::not_a_member);
  leave.wallet = 2;
  EXPECT_EQ(op1(leave), result::ok);
  settled(g);
  EXPECT_EQ(balance(2), int64_t(starting));
  EXPECT_EQ(simple(wire::equb_op_kind::dissolve, g), result::ok);
  EXPECT_EQ(settled(g).g.ph, phase::dissolved);
  for (uint64_t w = 1; w <= 3; ++w) EXPECT_EQ(balance(w), int64_t(starting));
  EXPECT_EQ(balance(g), 0);
  expect_escrow_consistent(g);

  // Dissolving an active group refunds the current round's payments, and settles the
  // past ones as debts: wallet 1 took round 1's pot, paid in by wallets 2 and 3, and owes
  // each of them a contribution.
  form(h, 3);
  ASSERT_EQ(pay(2, h, 2, 1, contribution), result::ok);
  leave.group_id = h;
  EXPECT_EQ(op1(leave), result::leaving_after_start);
  EXPECT_EQ(simple(wire::equb_op_kind::dissolve, h), result::ok);
  const group_entry gone = settled(h);
  EXPECT_EQ(balance(2), int64_t(starting - contribution)) << "its round-2 payment came back";
  EXPECT_EQ(balance(h), 0);
  ASSERT_EQ(gone.g.seats[0].debts.size(), 2u);
  EXPECT_EQ(gone.g.seats[0].debts[0].creditor_account_id, 2u);
  EXPECT_EQ(gone.g.seats[0].debts[1].creditor_account_id, 3u);
  EXPECT_TRUE(gone.g.seats[1].debts.empty());
  EXPECT_EQ(pay(2, h, 2, 1, contribution), result::nothing_owed) << "wallet 2 owes nothing";
  ASSERT_EQ(pay(1, h, 2, 0, 2 * contribution), result::ok);
  settled(h);
  EXPECT_EQ(balance(1), int64_t(starting - 3)) << "wallet 1 bore its pot's fee";
  EXPECT_EQ(balance(2), int64_t(starting));
  EXPECT_EQ(balance(3), int64_t(starting));
  expect_escrow_consistent(h);
}

// A dissolution refunds every seat it can: a frozen wallet's refund is refused alone and
// waits for an operator's retry (rules version 45). Before, the refunds were one chain,
// and the frozen wallet held back every seat's money.
TEST_F(equb_engine, ADissolutionRefundsEverySeatButAFrozenWallet) {
  constexpr uint64_t g = 5010;
  open_wallets(3);
  form(g, 3);
  settled(g);
  // Round 2 stays open: wallets 2 and 3 pay it, wallet 1 has not.
  for (uint32_t w = 2; w <= 3; ++w) ASSERT_EQ(pay(w, g, 2, w - 1, contribution), result::ok);
  ASSERT_EQ(e().set_account_status({{3, wire::account_status::frozen}}).results.at(0), result::ok);
  const int64_t before1 = balance(1), before2 = balance(2), before3 = balance(3);
  EXPECT_EQ(simple(wire::equb_op_kind::dissolve, g), result::ok);
  group_entry st = settled(g);
  EXPECT_EQ(balance(1), before1) << "it paid nothing into round 2";
  EXPECT_EQ(balance(2), before2 + int64_t(contribution));
  EXPECT_EQ(balance(3), before3) << "frozen";
  ASSERT_EQ(st.owed.size(), 1u);
  EXPECT_TRUE(st.owed[0].refused);
  EXPECT_EQ(st.owed[0].refusal, result::credit_account_frozen);
  ASSERT_EQ(st.owed[0].transfers.size(), 1u) << "wallet 3's refund alone";
  expect_escrow_consistent(g);
  ASSERT_EQ(e().set_account_status({{3, wire::account_status::open}}).results.at(0), result::ok);
  EXPECT_EQ(simple(wire::equb_op_kind::retry, g), result::ok);
  st = settled(g);
  EXPECT_TRUE(st.owed.empty());
  EXPECT_EQ(balance(3), before3 + int64_t(contribution));
  EXPECT_EQ(balance(g), 0);
  expect_escrow_consistent(g);
}

TEST_F(equb_engine, EscrowAccountsMoveOnlyWithTheirGroup) {
  constexpr uint64_t g = 5008, lottery = 5009;
  open_wallets(4);
  form(g, 3);
  settled(g);
  ASSERT_EQ(pay(3, g, 2, 2, contribution), result::ok);  // the escrow holds money
  const int64_t held = balance(g);
  ASSERT_EQ(held, int64_t(contribution));
  EXPECT_EQ(e().create_transfers({make_transfer(next_id_++, 1, g, 50)}).results.at(0), result::group_account_reserved);
  EXPECT_EQ(e().create_transfers({make_transfer(next_id_++, g, 1, 50)}).results.at(0), result::group_account_reserved);
  EXPECT_EQ(e().create_transfers({make_transfer(next_id_++, 1, g, 50, wire::transfer_flags::pending)}).results.at(0),
            result::group_account_reserved);
  // In a chain: the whole chain fails.
  const auto chain = e().create_transfers({make_transfer(next_id_++, 1, 2, 5, wire::transfer_flags::linked),
                                           make_transfer(next_id_++, 2, g, 5)});
  EXPECT_EQ(chain.results.at(0), result::linked_event_failed);
  EXPECT_EQ(chain.results.at(1), result::group_account_reserved);
  // An equb payment as the last link of a chain does not stand alone either.
  auto last = payment(1, g, 2, 0, contribution);
  const auto chain2 = e().create_transfers({make_transfer(next_id_++, 2, 1, 5, wire::transfer_flags::linked), last});
  EXPECT_EQ(chain2.results.at(1), result::equb_transfer_must_stand_alone);
  EXPECT_EQ(e().set_account_status({{g, wire::account_status::frozen}}).results.at(0), result::group_account_reserved);
  EXPECT_EQ(balance(g), held);
  EXPECT_EQ(account(g).status, wire::account_status::open);
  expect_escrow_consistent(g);

  // A lottery's secret never leaves its shard: look-ups show the commitment only.
  form(lottery, 3, actors::equb::rotation::lottery);
  const group_entry l = settled(lottery);
  EXPECT_EQ(l.g.secret, actors::equb::seed{});
  EXPECT_NE(l.g.commitment, actors::equb::seed{});
}

// The accounts a group pays into are looked at when it is made (and when one is
// replaced): a missing, closed or other-currency fee account, guarantor or organizer,
// or a group's escrow or gateway's settlement account, is refused by name and nothing is
// made. Before, any was taken, and every payment a round sent there was refused round
// after round, the money left in escrow (a settlement account as guarantor, which may go
// below zero, minted its covers). In a request of several, the others go on in order.
TEST_F(equb_engine, AGroupsAccountsAreCheckedWhenItIsMadeAndWhenOneIsReplaced) {
  constexpr uint64_t g = 5010, closed = 960, usd = 961, settlement = 962, missing = 963, fit = 964, other = 5011;
  open_wallets(3);
  wire::account st = make_account(settlement);
  st.kind = wire::account_kind::gateway_settlement;
  ASSERT_EQ(e().create_accounts({make_account(closed), make_account(usd, 0, "USD"), st, make_account(fit)}).results,
            std::vector<result>(4, result::ok));
  ASSERT_EQ(e().set_account_status({{closed, wire::account_status::closed}}).results.at(0), result::ok);
  form(other, 2);  // an escrow
  using actors::equb::default_policy;
  using actors::equb::rotation;
  const auto with_fee = [&](uint64_t a) {
    auto op = create_op(g);
    op.fee_account_id = a;
    return op;
  };
  const auto with_guarantor = [&](uint64_t a) {
    auto op = create_op(g, rotation::fixed_order, default_policy::cover_from_guarantor);
    op.guarantor_account_id = a;
    return op;
  };
  const auto with_organizer = [&](uint64_t a) {
    auto op = create_op(g, rotation::bidding);
    op.commission_bp = 200;
    op.commission_cap = 50;
    op.max_discount_bp = 1000;
    op.organizer_account_id = a;
    return op;
  };
  for (uint64_t a : {missing, closed, usd, settlement, other}) {
    EXPECT_EQ(op1(with_fee(a)), result::fee_account_unfit) << a;
    EXPECT_EQ(op1(with_guarantor(a)), result::guarantor_account_unfit) << a;
    EXPECT_EQ(op1(with_organizer(a)), result::organizer_account_unfit) << a;
  }
  EXPECT_EQ(e().lookup_groups({g}).results.at(0), result::group_not_found) << "nothing was made";
  EXPECT_EQ(e().lookup_accounts({g}).results.at(0), result::account_not_found) << "no escrow either";
  // Field checks still come first; an unused guarantor is not looked at.
  auto no_fee = with_fee(0);
  EXPECT_EQ(op1(no_fee), result::accounts_must_differ);
  auto unused = create_op(g);
  unused.guarantor_account_id = missing;
  // Several at once: each answered in its place, the fit ones made.
  auto second = with_fee(fit);
  second.group_id = g + 100;
  const auto r = e().equb({with_fee(missing), unused, with_guarantor(closed), second});
  ASSERT_EQ(r.st, engine::status::ok);
  EXPECT_EQ(r.results, (std::vector<result>{result::fee_account_unfit, result::ok, result::guarantor_account_unfit,
                                            result::ok}));
  EXPECT_EQ(group(g).g.cfg.fee_account_id, fee_account);
  EXPECT_EQ(group(g + 100).g.cfg.fee_account_id, fit);
  // replace_account: the new account against the group's currency.
  wire::equb_op replace = make_equb_replace(g, fee_account, 0);
  for (uint64_t a : {missing, closed, usd, settlement, other}) {
    replace.amount = a;
    EXPECT_EQ(op1(replace), result::replacement_account_unfit) << a;
  }
  replace.group_id = 4242;  // no such group: the group's own answer
  replace.amount = fit;
  EXPECT_EQ(op1(replace), result::group_not_found);
  replace.group_id = g;
  EXPECT_EQ(op1(replace), result::ok);
  EXPECT_EQ(group(g).g.cfg.fee_account_id, fit);
}

// The look-ups behind the check: a replace_account of a group created earlier in the
// same request is checked against that create's currency (the group did not exist when
// looked at); a create repeated after its fee account closed is still its repeat; and a
// request naming more accounts than one look-up takes (8,192) is looked up in parts.
TEST_F(equb_engine, TheAccountChecksFollowTheRequestAndSpanLookUps) {
  constexpr uint64_t g = 5030, usd = 970, fit = 971;
  open_wallets(2);
  ASSERT_EQ(e().create_accounts({make_account(usd, 0, "USD"), make_account(fit)}).results,
            std::vector<result>(2, result::ok));
  wire::equb_op replace = make_equb_replace(g, fee_account, usd);
  auto r = e().equb({create_op(g), replace});
  EXPECT_EQ(r.results, (std::vector<result>{result::ok, result::replacement_account_unfit}));
  replace.group_id = g + 1;
  replace.amount = fit;
  r = e().equb({create_op(g + 1), replace});
  EXPECT_EQ(r.results, (std::vector<result>{result::ok, result::ok}));
  EXPECT_EQ(group(g + 1).g.cfg.fee_account_id, fit);
  // g's fee account closes; the create sent again is its repeat.
  constexpr uint64_t fee2 = 972;
  ASSERT_EQ(e().create_accounts({make_account(fee2)}).results.at(0), result::ok);
  auto c = create_op(g + 2);
  c.fee_account_id = fee2;
  ASSERT_EQ(op1(c), result::ok);
  ASSERT_EQ(e().set_account_status({{fee2, wire::account_status::closed}}).results.at(0), result::ok);
  EXPECT_EQ(op1(c), result::ok) << "a repeat";
  auto other = c;
  other.fee_bp = 7;
  EXPECT_EQ(op1(other), result::exists_with_different_fields);
  // 2,100 bidding groups covering defaults, each naming its own fee, guarantor and
  // organizer: 8,400 ids with the groups' own. The last of them unfit (a USD fee).
  constexpr uint64_t n = 2100, base = 100'000;
  std::vector<wire::account> accts;
  for (uint64_t i = 0; i < 3 * n; ++i) accts.push_back(make_account(base + i, 0, i == 3 * (n - 1) ? "USD" : "ETB"));
  for (size_t at = 0; at < accts.size(); at += 4000) {
    const std::vector<wire::account> part(accts.begin() + ptrdiff_t(at),
                                          accts.begin() + ptrdiff_t(std::min<size_t>(accts.size(), at + 4000)));
    for (auto res : e().create_accounts(part).results) ASSERT_EQ(res, result::ok);
  }
  std::vector<wire::equb_op> many;
  for (uint64_t i = 0; i < n; ++i) {
    auto op = create_op(200'000 + i, actors::equb::rotation::bidding, actors::equb::default_policy::cover_from_guarantor);
    op.fee_account_id = base + 3 * i;
    op.guarantor_account_id = base + 3 * i + 1;
    op.organizer_account_id = base + 3 * i + 2;
    op.commission_bp = 100;
    op.commission_cap = 10;
    op.max_discount_bp = 500;
    many.push_back(op);
  }
  r = e().equb(many);
  ASSERT_EQ(r.st, engine::status::ok);
  ASSERT_EQ(r.results.size(), n);
  for (uint64_t i = 0; i + 1 < n; ++i) ASSERT_EQ(r.results[i], result::ok) << i;
  EXPECT_EQ(r.results[n - 1], result::fee_account_unfit);
  EXPECT_EQ(group(200'000 + n - 2).g.cfg.organizer_account_id, base + 3 * (n - 2) + 2);
}

// A lottery of twelve run to completion: each seat receives once, and every draw checks
// against the commitment published at the start.
TEST_F(equb_engine, TwelveSeatLotteryToCompletionWithProofs) {
  constexpr uint64_t g = 5011;
  constexpr uint32_t n = 12;
  open_wallets(n);
  form(g, n, actors::equb::rotation::lottery);
  for (uint32_t round = 2; round <= n; ++round)
    for (uint32_t seat = 0; seat < n; ++seat) ASSERT_EQ(pay(seat + 1, g, round, seat, contribution), result::ok);
  const group_entry done = settled(g);
  ASSERT_EQ(done.g.ph, phase::completed);
  ASSERT_EQ(done.history.size(), n);
  auto prev = done.g.commitment;
  std::vector<uint32_t> candidates(n);
  for (uint32_t i = 0; i < n; ++i) candidates[i] = i;
  for (const auto& r : done.history) {
    EXPECT_TRUE(actors::equb::seed_follows(r.revealed, prev)) << "round " << r.round;
    EXPECT_EQ(r.seat, actors::equb::draw(r.revealed, g, r.round, candidates)) << "round " << r.round;
    std::erase(candidates, r.seat);
    prev = r.revealed;
  }
  EXPECT_TRUE(candidates.empty()) << "every seat received once";
  const uint64_t pot = n * contribution, fee = pot / 100;
  for (uint64_t w = 1; w <= n; ++w) EXPECT_EQ(balance(w), int64_t(starting - n * contribution + pot - fee));
  EXPECT_EQ(balance(g), 0);
  expect_escrow_consistent(g);
}

// What a group decides on its own is in the event stream: each round's close with its
// recipient and, for a lottery, the seed it revealed; a missed contribution with what the
// member then owes; the group's completion. Replay (every record after the snapshot, the
// event log cut back to it) writes the very same events.
TEST_F(equb_engine_replay, DecisionsAreEventsAndReplayWritesThemAgain) {
  constexpr uint64_t g = 5021;
  constexpr uint32_t n = 4;
  open_wallets(n);
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  form(g, n, actors::equb::rotation::lottery);
  ASSERT_EQ(settled(g).g.round, 2u);
  for (uint32_t seat = 0; seat + 1 < n; ++seat) ASSERT_EQ(pay(seat + 1, g, 2, seat, contribution), result::ok);
  fx_.advance_s(8 * 86'400 + 1);  // wallet 4 misses round 2
  ASSERT_EQ(at_round(g, 3).g.round, 3u);
  // Wallet 4 owes round 2's contribution, unless round 2's draw picked it and its payout
  // settled the debt.
  uint64_t debt = 0;
  for (const auto& d : settled(g).g.seats[3].debts) debt += d.amount;
  for (uint32_t round = 3; round <= n; ++round) {
    // Round 4 is paid late: past its deadline (day 21), within its grace (a day).
    if (round == 4) fx_.advance_s(13 * 86'400);
    for (uint32_t seat = 0; seat < n; ++seat) {
      const uint64_t owed = contribution + (seat == 3 && round == 3 ? debt : 0) + (round == 4 ? 5 : 0);
      ASSERT_EQ(pay(seat + 1, g, round, seat, owed), result::ok) << round << " " << seat;
    }
  }
  const group_entry done = settled(g);
  ASSERT_EQ(done.g.ph, phase::completed);
  fx_.close();

  const auto first = all_events(fx_.dir());
  std::vector<wire::event> closed, missed, completed, late;
  for (const auto& ev : first) {
    if (ev.type == wire::event_type::equb_late) late.push_back(ev);
    if (ev.type == wire::event_type::equb_round_closed) closed.push_back(ev);
    if (ev.type == wire::event_type::equb_missed) missed.push_back(ev);
    if (ev.type == wire::event_type::equb_completed) completed.push_back(ev);
  }
  ASSERT_EQ(closed.size(), size_t(n));
  for (uint32_t r = 0; r < n; ++r) {
    SCOPED_TRACE("round " + std::to_string(r + 1));
    EXPECT_EQ(closed[r].account_a, g);
    EXPECT_EQ(closed[r].code, r + 1);
    EXPECT_EQ(closed[r].flags, done.history[r].seat);
    EXPECT_EQ(closed[r].account_b, done.history[r].seat + 1u);  // seat i is wallet i + 1
    actors::equb::seed revealed{};
    std::memcpy(revealed.data(), &closed[r].id, 16);
    std::memcpy(revealed.data() + 16, &closed[r].ref, 16);
    EXPECT_EQ(revealed, done.history[r].revealed) << "the proof a subscriber checks";
  }
  ASSERT_EQ(missed.size(), 1u);
  EXPECT_EQ(missed[0].account_b, 4u);
  EXPECT_EQ(missed[0].ref.lo, 2u);
  EXPECT_EQ(missed[0].ref.hi, 3u);
  EXPECT_EQ(missed[0].amount, debt) << "what it owes after the close (its own payout may have settled it)";
  EXPECT_LT(missed[0].offset, closed[1].offset) << "the miss is told before the close that made it";
  ASSERT_EQ(late.size(), size_t(n)) << "every seat paid round 4 late";
  for (uint32_t seat = 0; seat < n; ++seat) {
    EXPECT_EQ(late[seat].account_a, g);
    EXPECT_EQ(late[seat].account_b, seat + 1u);
    EXPECT_EQ(late[seat].ref.lo, 4u);
    EXPECT_EQ(late[seat].ref.hi, seat);
    EXPECT_EQ(late[seat].amount, 5u);  // the penalty
    EXPECT_LT(late[seat].offset, closed[3].offset);
  }
  ASSERT_EQ(completed.size(), 1u);
  EXPECT_EQ(completed[0].code, n);
  EXPECT_GT(completed[0].offset, closed.back().offset);

  const uint64_t past = first_past_snapshot(fx_.dir(), first);
  ASSERT_NE(past, 0u);
  cut_event_log(fx_.dir(), past, 0);
  fx_.open();
  fx_.close();
  {
    const auto again = all_events(fx_.dir());
    EXPECT_TRUE(same_events(again, first));
    for (size_t i = 0; i < std::max(again.size(), first.size()); ++i)
      if (i >= again.size() || i >= first.size() || std::memcmp(&again[i], &first[i], sizeof again[i]) != 0) {
        ADD_FAILURE() << "event " << i << " of " << first.size() << "/" << again.size() << ": type "
                      << (i < first.size() ? int(first[i].type) : -1) << " then " << (i < again.size() ? int(again[i].type) : -1)
                      << " lsn " << (i < first.size() ? first[i].lsn : 0) << " then " << (i < again.size() ? again[i].lsn : 0);
        break;
      }
  }

  // Those decisions fell where their shards' timers fired: another shard count would put
  // them elsewhere, so it waits until a run with this one has snapshotted them.
  fx_.set_shards(3);
  auto cfg = fx_.config();
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("--shards 2"), std::string::npos) << err;
  cfg.shards = 2;
  cfg.checkpoint_on_close = true;
  err.clear();
  auto two = engine::engine::open(cfg, &err);
  ASSERT_TRUE(two) << err;
  two->close();
  two.reset();
  cfg.shards = 3;
  auto three = engine::engine::open(cfg, &err);
  ASSERT_TRUE(three) << err;
  three->close();
  EXPECT_TRUE(same_events(all_events(fx_.dir()), first)) << "nothing new happened";
}

// The engine's downtime does not count against members (rules version 12): the engine is
// down for 30 days across round 2's deadline. Before, its first batch closed every round
// that fell due meanwhile (debts, misses, a member's payment refused as
// round_already_paid); now the groups' schedules move by the outage and the members have
// the time they had when it stopped. The same after a restart from the snapshot and from
// the log alone, and the moved schedule closes rounds as any.
void equb_engine::outage_does_not_count_against_members() {
  constexpr uint64_t g = 5031, h = 5032;
  constexpr uint64_t day_s = 86'400;
  open_wallets(3);
  form(g, 3);  // a week a round, a day of grace, 5 late penalty
  form(h, 3, actors::equb::rotation::fixed_order, actors::equb::default_policy::hold_round);
  ASSERT_EQ(settled(g).g.round, 2u);
  ASSERT_EQ(settled(h).g.round, 2u);
  const uint64_t round2_deadline = actors::equb::round_deadline(settled(g).g);
  const uint64_t h_deadline = actors::equb::round_deadline(settled(h).g);  // h started a little later
  ASSERT_EQ(pay(1, g, 2, 0, contribution), result::ok);
  fx_.advance_s(5 * day_s);
  ASSERT_EQ(pay(2, g, 2, 1, contribution), result::ok);  // the last batch before the outage
  fx_.close();
  fx_.advance_s(30 * day_s);  // past round 2's deadline, its close, and round 3's
  fx_.open();
  group_entry st = settled(g);
  ASSERT_EQ(st.g.round, 2u) << "no round closed by the outage";
  const uint64_t shift = st.g.shift_ns;
  EXPECT_GT(shift, 30 * day_s * 1'000'000'000ull - 1'000'000'000ull);
  EXPECT_LE(shift, 30 * day_s * 1'000'000'000ull);
  EXPECT_EQ(actors::equb::round_deadline(st.g), round2_deadline + shift);
  EXPECT_EQ(settled(h).g.shift_ns, shift) << "the same outage";
  // Wallet 3 pays its contribution, no penalty: the round closes with every seat paid.
  ASSERT_EQ(pay(3, g, 2, 2, contribution), result::ok);
  st = settled(g);
  ASSERT_EQ(st.g.round, 3u);
  for (const auto& s : st.g.seats) EXPECT_TRUE(s.debts.empty());
  EXPECT_EQ(balance(2), int64_t(starting - 3 * contribution + (3 * contribution - 3)))
      << "two joins and round 2 of g paid; round 2's whole pot received, less the fee";
  for (uint32_t w = 1; w <= 3; ++w) ASSERT_EQ(pay(w, h, 2, w - 1, contribution), result::ok) << "not late: " << w;
  ASSERT_EQ(settled(h).g.round, 3u);
  expect_escrow_consistent(g);
  expect_escrow_consistent(h);

  fx_.restart();  // nothing fell due in this gap: nothing moves
  EXPECT_EQ(settled(g).g.shift_ns, shift);
  EXPECT_EQ(settled(g).g.round, 3u);
  EXPECT_EQ(settled(h).g.round, 3u);
  // Round 3's moved close passes with the engine up: it closes on its tick, with the
  // debts of the seats that did not pay.
  fx_.advance_s(10 * day_s + 1);  // day 45 + 1 s: round 3 closes on day 14 + 1 + ~30
  for (int i = 0; i < 1000 && settled(g).g.ph != phase::completed; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  st = settled(g);
  ASSERT_EQ(st.g.ph, phase::completed);
  EXPECT_EQ(debts_of_seat(st, 0) + debts_of_seat(st, 1), 2 * missed_debt);
  expect_escrow_consistent(g);
  fx_.close();

  std::vector<wire::event> moved;
  for (const auto& ev : all_events(fx_.dir()))
    if (ev.type == wire::event_type::equb_rescheduled) moved.push_back(ev);
  ASSERT_EQ(moved.size(), 2u) << "one per group, once";
  // (Each shard's decisions come together: by group id here, whatever shards they are on.)
  std::sort(moved.begin(), moved.end(), [](const wire::event& x, const wire::event& y) { return x.account_a < y.account_a; });
  EXPECT_EQ(moved[0].account_a, g);
  EXPECT_EQ(moved[1].account_a, h);
  for (size_t i = 0; i < moved.size(); ++i) {
    const auto& ev = moved[i];
    const uint64_t deadline = (i == 0 ? round2_deadline : h_deadline) + shift;
    EXPECT_EQ(ev.code, 2u);
    EXPECT_EQ(ev.amount, shift);
    EXPECT_EQ(ev.ref.lo, deadline);
    EXPECT_EQ(ev.ref.hi, deadline + 86'400ull * 1'000'000'000ull);
  }
  fx_.open();
}

TEST_F(equb_engine, AnOutageDoesNotCountAgainstMembers) { outage_does_not_count_against_members(); }

// A deadline that passed while the engine was up, with nothing happening, stays passed
// across an outage that follows: the engine ticks when a round's deadline passes, so the
// log shows it was up then. The grace the outage took is given back (its close fell in
// it), but the member who missed the deadline still pays the late penalty. Before that
// tick, the outage was measured from the last request, and a restart waived the penalty
// of a member who had had all the time.
TEST_F(equb_engine, ADeadlinePassedWhileUpIsNotMovedByALaterOutage) {
  constexpr uint64_t g = 5033;
  open_wallets(3);
  form(g, 3);
  ASSERT_EQ(pay(1, g, 2, 0, contribution), result::ok);
  ASSERT_EQ(pay(2, g, 2, 1, contribution), result::ok);
  settled(g);
  const uint64_t logged = e().stats().lsn_durable;
  fx_.advance_s(7 * 86'400 + 3600);  // round 2's deadline (day 7) an hour past; its grace runs
  ASSERT_GT(logged_after(logged), logged) << "a tick at the deadline";
  fx_.close();
  fx_.advance_s(2 * 86'400);  // past the close (day 8)
  fx_.open();
  group_entry st = settled(g);
  ASSERT_EQ(st.g.round, 2u) << "the grace the outage took is given back";
  EXPECT_GT(st.g.shift_ns, 0u);
  EXPECT_EQ(pay(3, g, 2, 2, contribution), result::wrong_amount) << "late: the penalty is owed";
  ASSERT_EQ(pay(3, g, 2, 2, contribution + late_penalty), result::ok);
  st = settled(g);
  EXPECT_EQ(st.g.round, 3u);
  EXPECT_TRUE(st.g.seats[2].debts.empty());
  expect_escrow_consistent(g);
}
// A quiet spell with the engine up is not outage: while groups are scheduled the engine
// logs a heartbeat tick after a minute without a logged batch, so the schedule moves by
// the time the engine was down (5 days here), not by the time since the last request (10
// days). Before, the restart measured from the last payment.
TEST_F(equb_engine, AQuietSpellBeforeAnOutageIsNotCountedAsOutage) {
  constexpr uint64_t g = 5034;
  constexpr uint64_t day_ns = 86'400ull * 1'000'000'000ull;
  open_wallets(3);
  form(g, 3);  // round 2's deadline on day 7
  ASSERT_EQ(pay(1, g, 2, 0, contribution), result::ok);
  settled(g);
  const uint64_t logged = e().stats().lsn_durable;
  fx_.advance_s(5 * 86'400);  // up and quiet for 5 days
  ASSERT_GT(logged_after(logged), logged) << "a heartbeat tick";
  fx_.close();
  fx_.advance_s(5 * 86'400);  // down across round 2's deadline
  fx_.open();
  const group_entry st = settled(g);
  ASSERT_EQ(st.g.round, 2u);
  EXPECT_GT(st.g.shift_ns, 5 * day_ns - 1'000'000'000ull);
  EXPECT_LE(st.g.shift_ns, 5 * day_ns + 1'000'000'000ull) << "the outage, not the 5 quiet days before it";
  ASSERT_EQ(pay(2, g, 2, 1, contribution), result::ok);
  ASSERT_EQ(pay(3, g, 2, 2, contribution), result::ok);
  EXPECT_EQ(settled(g).g.round, 3u);
  expect_escrow_consistent(g);
}
// The heartbeat is for active groups: once the last group has completed (every round
// paid early, so each left a deadline entry for days later), a quiet minute logs no tick.
// Before, the ended group's entries kept the heartbeat going until the last one's time.
TEST_F(equb_engine, NoHeartbeatAfterTheLastGroupEnds) {
  constexpr uint64_t g = 5035;
  constexpr uint32_t n = 3;
  open_wallets(n);
  form(g, n);
  for (uint32_t round = 2; round <= n; ++round) {
    ASSERT_EQ(settled(g).g.round, round);
    for (uint32_t seat = 0; seat < n; ++seat) ASSERT_EQ(pay(seat + 1, g, round, seat, contribution), result::ok);
  }
  ASSERT_EQ(settled(g).g.ph, phase::completed);
  const uint64_t logged = e().stats().lsn_durable;
  fx_.advance_s(120);  // two heartbeats' time, days before the rounds' deadlines
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // 60 ticks of 5 ms
  EXPECT_EQ(e().stats().lsn_durable, logged) << "no tick for a group that has ended";
}
TEST_F(equb_engine_replay, AnOutageDoesNotCountAgainstMembersReplayed) { outage_does_not_count_against_members(); }

// Bidding: the lowest bid wins; the discount less the organizer's commission is shared as
// dividends that lower every seat's next contribution, to the minor unit.
TEST_F(equb_engine, BiddingRoundsWithDividendsToTheMinorUnit) {
  constexpr uint64_t g = 5012, organizer = 902;
  open_wallets(4);
  ASSERT_EQ(e().create_accounts({make_account(organizer)}).results.at(0), result::ok);
  auto c = create_op(g, actors::equb::rotation::bidding);
  c.fee_bp = 0;
  c.late_penalty = 0;
  c.max_discount_bp = 2000;  // a bid takes at least 80% of the nominal pot (400)
  c.commission_bp = 1000;    // 10% of the discount, at most 1000
  c.commission_cap = 1000;
  c.organizer_account_id = organizer;
  ASSERT_EQ(op1(c), result::ok);
  for (uint32_t w = 1; w <= 4; ++w) ASSERT_EQ(pay(w, g, 0, 0, contribution), result::ok);
  ASSERT_EQ(simple(wire::equb_op_kind::start, g), result::ok);  // round 1: no bids, seat 0
  auto bid = [&](uint32_t seat, uint32_t round, uint64_t amount) {
    wire::equb_op op;
    op.kind = wire::equb_op_kind::bid;
    op.group_id = g;
    op.seat = seat;
    op.wallet = seat + 1;
    op.round = round;
    op.amount = amount;
    return op1(op);
  };
  EXPECT_EQ(bid(0, 2, 350), result::already_received);
  EXPECT_EQ(bid(1, 2, 319), result::bid_outside_limits);
  EXPECT_EQ(bid(1, 2, 401), result::bid_outside_limits);
  EXPECT_EQ(bid(2, 2, 350), result::ok);
  EXPECT_EQ(bid(3, 2, 340), result::ok);
  EXPECT_EQ(bid(3, 2, 330), result::already_bid);
  EXPECT_EQ(bid(1, 3, 340), result::round_not_open);
  for (uint32_t seat = 0; seat < 4; ++seat) ASSERT_EQ(pay(seat + 1, g, 2, seat, contribution), result::ok);
  group_entry st = settled(g);
  // Seat 3 won with 340: discount 60, commission 6, dividend 54 = 14 + 14 + 13 + 13.
  ASSERT_EQ(st.history.size(), 2u);
  EXPECT_EQ(st.history[1].seat, 3u);
  EXPECT_EQ(balance(4), int64_t(starting - 2 * contribution + 340));
  EXPECT_EQ(balance(organizer), 6);
  const uint64_t credit[4] = {14, 14, 13, 13};
  for (uint32_t seat = 0; seat < 4; ++seat) EXPECT_EQ(st.g.seats[seat].credit, credit[seat]) << seat;
  EXPECT_EQ(balance(g), 54) << "the dividends wait in escrow";
  expect_escrow_consistent(g);
  // Round 3 owes the contribution less the dividend; no bids: the first seat in order.
  EXPECT_EQ(pay(1, g, 3, 0, contribution), result::wrong_amount);
  for (uint32_t seat = 0; seat < 4; ++seat)
    ASSERT_EQ(pay(seat + 1, g, 3, seat, contribution - credit[seat]), result::ok) << seat;
  st = settled(g);
  EXPECT_EQ(st.history[2].seat, 1u);
  EXPECT_EQ(balance(2), int64_t(starting - 3 * contribution + credit[1] + 400));
  for (uint32_t seat = 0; seat < 4; ++seat) ASSERT_EQ(pay(seat + 1, g, 4, seat, contribution), result::ok);
  st = settled(g);
  EXPECT_EQ(st.g.ph, phase::completed);
  // Each wallet: paid 4 x 100 less its dividend, received once; the organizer kept 6.
  const int64_t received[4] = {400, 400, 400, 340};
  for (uint32_t seat = 0; seat < 4; ++seat)
    EXPECT_EQ(balance(seat + 1), int64_t(starting) - 400 + int64_t(credit[seat]) + received[seat]) << seat;
  EXPECT_EQ(balance(g), 0);
  expect_escrow_consistent(g);
}

// A winning bid whose discount the pot cannot pay (members missed the round): the rest is
// owed to the group by a missed seat's debt (its group part, rules version 26), kept
// through a restart (from the snapshot, or replayed from the log alone), held in escrow
// when repaid, and paid to the seats at the next close. The winner gets its bid, less its
// own missed due, plus the penalties it is owed; before, it was owed both missed dues.
void equb_engine::short_pot_discount_is_owed_to_the_group() {
  constexpr uint64_t g = 5041;
  open_wallets(4);
  short_pot_round_two(g, create_op(g, actors::equb::rotation::bidding));
  if (HasFatalFailure()) return;
  const int64_t w2 = balance(2);
  fx_.advance_s(8 * 86'400 + 1);  // past round 2's deadline (day 7) and its grace
  group_entry st = at_round(g, 3);
  ASSERT_EQ(st.g.round, 3u);
  ASSERT_EQ(st.history.at(1).seat, 1u);
  EXPECT_EQ(balance(2), w2) << "the pot (100) went to the discount (200)";
  ASSERT_EQ(st.g.seats[0].debts.size(), 1u);
  ASSERT_EQ(st.g.seats[3].debts.size(), 1u);
  EXPECT_EQ(st.g.seats[0].debts[0].amount, missed_debt);
  EXPECT_EQ(st.g.seats[0].debts[0].creditor_account_id, 2u);
  EXPECT_EQ(st.g.seats[0].debts[0].group_part, 100u) << "the discount the pot could not pay";
  EXPECT_EQ(st.g.seats[3].debts[0].group_part, 0u);
  for (uint32_t seat = 0; seat < 4; ++seat) EXPECT_EQ(st.g.seats[seat].credit, 25u) << seat;
  expect_escrow_consistent(g);

  fx_.restart();
  st = settled(g);
  EXPECT_EQ(st.g.seats[0].debts.at(0).group_part, 100u) << "kept through the restart";
  // Round 3: seat 0 pays its due less its credit and its debt; the group holds the debt's
  // group part and forwards the rest (the penalty) to the winner.
  ASSERT_EQ(pay(1, g, 3, 0, contribution - 25 + missed_debt), result::ok);
  st = settled(g);
  EXPECT_EQ(st.g.held, 100u);
  EXPECT_EQ(balance(2), w2 + int64_t(late_penalty));
  expect_escrow_consistent(g);
  fx_.restart();
  EXPECT_EQ(settled(g).g.held, 100u) << "held through the restart";
  const int64_t w1 = balance(1);
  ASSERT_EQ(pay(2, g, 3, 1, contribution - 25), result::ok);
  ASSERT_EQ(pay(3, g, 3, 2, contribution - 25), result::ok);
  ASSERT_EQ(pay(4, g, 3, 3, contribution - 25 + missed_debt), result::ok);  // every seat paid: round 3 closes
  st = settled(g);
  ASSERT_EQ(st.g.round, 4u);
  EXPECT_EQ(st.g.held, 0u);
  EXPECT_EQ(balance(1), w1 + 25) << "a share of the repaid group part";
  // The winner: its 200 bid less its missed due (100), the penalties it is owed (two),
  // a share of the group part, less its round 3 payment.
  EXPECT_EQ(balance(2), w2 + 100 + 2 * int64_t(late_penalty) + 25 - 75);
  expect_escrow_consistent(g);
}
TEST_F(equb_engine, AShortPotsDiscountIsOwedToTheGroup) { short_pot_discount_is_owed_to_the_group(); }
TEST_F(equb_engine_replay, AShortPotsDiscountIsOwedToTheGroupReplayed) { short_pot_discount_is_owed_to_the_group(); }

// A bidding group under cover_from_guarantor whose guarantor has not the money: round 2's
// winner bid 200 of the nominal 400, one seat paid, and the close's chain (a cover of 300
// in it) is refused. From rules version 41 the seats' credits are only what the escrow
// holds without that cover (100, 25 a seat); the rest of the dividend waits for the
// chain. So round 3's chain, with a cover the guarantor (funded meanwhile) can pay, is
// carried, and the retry of round 2's chain sends the held dividend; through a restart
// from the snapshot or the log alone. Before, the credits counted on the refused cover
// and round 3's payout was refused too (exceeds_credits on the escrow).
void equb_engine::a_dividend_only_a_cover_backs_waits_for_it() {
  constexpr uint64_t g = 5043, short_guarantor = 962;
  open_wallets(4);
  ASSERT_EQ(e().create_accounts({make_account(short_guarantor, wire::account_flags::debits_must_not_exceed_credits)})
                .results.at(0),
            result::ok);
  auto c = create_op(g, actors::equb::rotation::bidding, actors::equb::default_policy::cover_from_guarantor);
  c.guarantor_account_id = short_guarantor;
  short_pot_round_two(g, c);
  if (HasFatalFailure()) return;
  fx_.advance_s(8 * 86'400 + 1);  // past round 2's deadline (day 7) and its grace
  group_entry st = at_round(g, 3);
  ASSERT_EQ(st.g.round, 3u);
  ASSERT_EQ(st.owed.size(), 5u) << "the close's chain and each seat's held share (rules 55)";
  EXPECT_EQ(st.owed[0].refusal, result::exceeds_credits) << "the guarantor has nothing";
  EXPECT_EQ(st.owed[0].covers_round, 2u);
  for (uint32_t seat = 0; seat < 4; ++seat) {
    const actors::equb::obligation& held = st.owed[1 + seat];
    EXPECT_EQ(held.waits_too, 2u) << "the dividend only the cover backs";
    EXPECT_EQ(held.waits_for, 0u);
    EXPECT_EQ(st.g.seats[seat].credit, 25u) << seat;
    ASSERT_EQ(held.transfers.size(), 1u);
    EXPECT_EQ(held.transfers[0].credit_account_id, seat + 1u);
    EXPECT_EQ(held.transfers[0].amount, 25u);
  }
  EXPECT_EQ(balance(g), 100) << "seat 2's payment: what the credits are";
  expect_escrow_consistent(g);
  // A row whose held dividend waits for a debt's round, or for a close no obligation
  // covers, is refused at load (nothing would ever send it, or it is not a dividend's).
  for (const auto& [damage, fault] : std::vector<std::pair<std::function<void(group_entry&)>, std::string>>{
           {[](group_entry& x) { x.owed[1].waits_for = 2; }, "is not a debt's forward or a covered close's dividend"},
           {[](group_entry& x) { x.owed[1].waits_too = 1; }, "an obligation held back waits for a cover no obligation carries"}}) {
    group_entry bad = st, back;
    damage(bad);
    std::string why;
    EXPECT_FALSE(actors::equb::decode_entry(actors::equb::encode_entry(bad), &back, &why));
    EXPECT_NE(why.find(fault), std::string::npos) << why;
  }
  fx_.restart();
  EXPECT_EQ(actors::equb::encode_entry(settled(g)), actors::equb::encode_entry(st));
  // The guarantor is funded, but no operator retried round 2 yet. Round 3: seat 2 pays its
  // due less its credit, the others miss again; the close covers them (225) and pays seat
  // 2 the whole pot (400), out of what the escrow holds with that cover alone.
  ASSERT_EQ(e().create_transfers({make_transfer(next_id_++, funding, short_guarantor, 1'000)}).results.at(0),
            result::ok);
  ASSERT_EQ(pay(3, g, 3, 2, contribution - 25), result::ok);
  fx_.advance_s(7 * 86'400);  // past round 3's close (day 15)
  st = at_round(g, 4);
  ASSERT_EQ(st.g.round, 4u);
  ASSERT_EQ(st.history.at(2).seat, 2u);
  EXPECT_EQ(balance(3), int64_t(starting - 2 * contribution - 75 + 400)) << "round 3's payout was carried";
  EXPECT_EQ(balance(short_guarantor), 1'000 - 225);
  ASSERT_EQ(st.owed.size(), 5u) << "round 2's chain, refused, and its dividend's shares";
  EXPECT_TRUE(st.owed[0].refused);
  expect_escrow_consistent(g);
  // The operator's retry: round 2's cover is carried, then the held dividend.
  ASSERT_EQ(simple(wire::equb_op_kind::retry, g), result::ok);
  st = settled(g);
  EXPECT_TRUE(st.owed.empty());
  EXPECT_EQ(balance(1), int64_t(starting - contribution + 400 + 25));
  EXPECT_EQ(balance(2), int64_t(starting - contribution + 200 - missed_debt + 25)) << "its bid less its own debt";
  EXPECT_EQ(balance(3), int64_t(starting - 2 * contribution - 75 + 400 + 25));
  EXPECT_EQ(balance(4), int64_t(starting - contribution + 25));
  EXPECT_EQ(balance(short_guarantor), 1'000 - 225 - 300 + int64_t(missed_debt));
  EXPECT_EQ(balance(g), 0);
  expect_escrow_consistent(g);
  fx_.restart();
  // Round 4, the last: every seat pays its due and its debts (to the guarantor).
  for (uint32_t seat = 0; seat < 4; ++seat) {
    const uint64_t owes = contribution + debts_of_seat(settled(g), seat);
    ASSERT_EQ(pay(seat + 1, g, 4, seat, owes), result::ok) << seat;
  }
  st = settled(g);
  EXPECT_EQ(st.g.ph, phase::completed);
  EXPECT_EQ(balance(short_guarantor), 1'000 + 6 * int64_t(late_penalty)) << "its covers back, and six penalties";
  EXPECT_EQ(balance(g), 0);
  expect_escrow_consistent(g);
}
TEST_F(equb_engine, ADividendOnlyACoverBacksWaitsForIt) { a_dividend_only_a_cover_backs_waits_for_it(); }
TEST_F(equb_engine_replay, ADividendOnlyACoverBacksWaitsForItReplayed) { a_dividend_only_a_cover_backs_waits_for_it(); }

// A start carrying seed bytes is refused (the seed is the engine's to draw; before, the
// client's was replaced silently), live and in replay alike; the group stays forming.
TEST_F(equb_engine_replay, AStartWithAClientsSeedIsRefused) {
  constexpr uint64_t g = 5043;
  open_wallets(2);
  gather(g, 2);
  wire::equb_op start;
  start.kind = wire::equb_op_kind::start;
  start.group_id = g;
  start.seed[31] = 1;
  EXPECT_EQ(op1(start), result::equb_op_invalid);
  EXPECT_EQ(group(g).g.ph, phase::forming);
  fx_.restart();  // from the log alone: the refused start is refused again
  EXPECT_EQ(group(g).g.ph, phase::forming);
  ASSERT_EQ(simple(wire::equb_op_kind::start, g), result::ok);
  EXPECT_EQ(settled(g).g.ph, phase::active);
}

// A look-up may name a group many times (64, the most a request names): each is answered,
// the group copied once each while the copies fit the shard's share of a reply (a group
// past it would be answered lookup_reply_full; a small one never is).
TEST_F(equb_engine, ALookUpNamingAGroupManyTimesAnswersEach) {
  constexpr uint64_t g = 5042;
  open_wallets(3);
  form(g, 3);
  const auto r = e().lookup_groups(std::vector<uint64_t>(64, g));
  ASSERT_EQ(r.results.size(), 64u);
  for (size_t i = 0; i < 64; ++i) {
    EXPECT_EQ(r.results[i], result::ok) << i;
    EXPECT_EQ(r.groups.at(i).g.cfg.group_id, g) << i;
  }
}

// A member who misses the deadline, under the other two default policies: a guarantor
// covers the gap (and is owed it), or the round waits for every seat.
TEST_F(equb_engine, DefaultingMemberUnderCoverAndHold) {
  constexpr uint64_t cover = 5013, hold = 5014;
  open_wallets(6);
  ASSERT_EQ(op1(create_op(cover, actors::equb::rotation::fixed_order,
                          actors::equb::default_policy::cover_from_guarantor)), result::ok);
  ASSERT_EQ(op1(create_op(hold, actors::equb::rotation::fixed_order, actors::equb::default_policy::hold_round)),
            result::ok);
  for (uint32_t w = 1; w <= 3; ++w) ASSERT_EQ(pay(w, cover, 0, 0, contribution), result::ok);
  for (uint32_t w = 4; w <= 6; ++w) ASSERT_EQ(pay(w, hold, 0, 0, contribution), result::ok);
  ASSERT_EQ(simple(wire::equb_op_kind::start, cover), result::ok);
  ASSERT_EQ(simple(wire::equb_op_kind::start, hold), result::ok);
  ASSERT_EQ(pay(1, cover, 2, 0, contribution), result::ok);
  ASSERT_EQ(pay(2, cover, 2, 1, contribution), result::ok);
  ASSERT_EQ(pay(4, hold, 2, 0, contribution), result::ok);
  ASSERT_EQ(pay(5, hold, 2, 1, contribution), result::ok);
  fx_.advance_s(8 * 86'400 + 1);  // past round 2's deadline + grace
  const group_entry c = at_round(cover, 3);
  ASSERT_EQ(c.g.round, 3u);
  // The guarantor paid wallet 3's due into the pot; the recipient got a whole pot.
  EXPECT_EQ(balance(guarantor), -int64_t(contribution));
  EXPECT_EQ(balance(2), int64_t(starting - 2 * contribution + 300 - 3));
  ASSERT_EQ(c.g.seats[2].debts.size(), 1u);
  EXPECT_EQ(c.g.seats[2].debts[0].creditor_account_id, guarantor);
  expect_escrow_consistent(cover);
  // Holding: the round is still open; the late payment pays the penalty and closes it.
  group_entry h = settled(hold);
  EXPECT_EQ(h.g.round, 2u);
  EXPECT_EQ(pay(6, hold, 2, 2, contribution), result::wrong_amount) << "late: the penalty is owed";
  ASSERT_EQ(pay(6, hold, 2, 2, contribution + late_penalty), result::ok);
  h = settled(hold);
  EXPECT_EQ(h.g.round, 3u);
  EXPECT_EQ(balance(5), int64_t(starting - 2 * contribution + 305 - 3)) << "the penalty went into the pot";
  expect_escrow_consistent(hold);
  // The defaulter repays the guarantor with its next payment.
  ASSERT_EQ(pay(3, cover, 3, 2, contribution + missed_debt), result::ok);  // its due and its debt (round 3 is not late)
  settled(cover);
  EXPECT_EQ(balance(guarantor), int64_t(late_penalty)) << "its cover back, and the penalty for it";
  expect_escrow_consistent(cover);
}

// A guarantor without the money: the round's close chain, its cover in it, is refused
// and waits. The defaulter's repayment then waits in escrow too (rules version 36), across
// a restart from the log alone; replaced, the new guarantor covers and is repaid, the old
// one gets nothing. Before, the old guarantor was repaid a cover it never made.
TEST_F(equb_engine_replay, AGuarantorIsRepaidOnlyACoverTheLedgerCarried) {
  constexpr uint64_t g = 5016, short_guarantor = 960, new_guarantor = 961;
  open_wallets(3);
  ASSERT_EQ(e().create_accounts({make_account(short_guarantor, wire::account_flags::debits_must_not_exceed_credits),
                                 make_account(new_guarantor)})
                .results,
            (std::vector<result>{result::ok, result::ok}));
  auto c = create_op(g, actors::equb::rotation::fixed_order, actors::equb::default_policy::cover_from_guarantor);
  c.guarantor_account_id = short_guarantor;
  ASSERT_EQ(op1(c), result::ok);
  for (uint32_t w = 1; w <= 3; ++w) ASSERT_EQ(pay(w, g, 0, 0, contribution), result::ok);
  ASSERT_EQ(simple(wire::equb_op_kind::start, g), result::ok);
  ASSERT_EQ(pay(1, g, 2, 0, contribution), result::ok);
  ASSERT_EQ(pay(2, g, 2, 1, contribution), result::ok);
  fx_.advance_s(8 * 86'400 + 1);  // past round 2's deadline + grace: wallet 3's due is to be covered
  group_entry st = at_round(g, 3);
  ASSERT_EQ(st.owed.size(), 1u);
  EXPECT_EQ(st.owed[0].refusal, result::exceeds_credits) << "the guarantor has nothing";
  EXPECT_EQ(st.owed[0].covers_round, 2u);
  // Wallet 3 pays round 3 with its debt for round 2: taken, the debt cleared, and the
  // repayment held in escrow.
  ASSERT_EQ(pay(3, g, 3, 2, contribution + missed_debt), result::ok);
  st = settled(g);
  EXPECT_TRUE(st.g.seats[2].debts.empty());
  ASSERT_EQ(st.owed.size(), 2u);
  EXPECT_EQ(st.owed[1].waits_for, 2u);
  EXPECT_EQ(balance(short_guarantor), 0) << "not repaid a cover it has not made";
  expect_escrow_consistent(g);
  fx_.restart();  // from the log alone
  const group_entry back = settled(g);
  EXPECT_EQ(actors::equb::encode_entry(back), actors::equb::encode_entry(st));
  EXPECT_EQ(balance(short_guarantor), 0);
  // Another guarantor takes the old one's place: it covers round 2, then is repaid.
  ASSERT_EQ(op1(make_equb_replace(g, short_guarantor, new_guarantor)), result::ok);
  ASSERT_EQ(simple(wire::equb_op_kind::retry, g), result::ok);
  st = settled(g);
  EXPECT_TRUE(st.owed.empty());
  EXPECT_EQ(balance(new_guarantor), int64_t(late_penalty)) << "its cover back, and the penalty for it";
  EXPECT_EQ(balance(short_guarantor), 0);
  EXPECT_EQ(balance(2), int64_t(starting - 2 * contribution + 3 * contribution - 3)) << "round 2's pot, whole";
  expect_escrow_consistent(g);
}

// A round held for a late seat longer than a period: the next round opens with the time
// a round closed on time leaves, and the members who paid on time are not late in it
// from its start (rules version 23; before, wrong_amount for the due alone, the penalty
// owed). The schedule's move is the group's, in its row and in replay alike.
TEST_F(equb_engine_replay, AHeldRoundDoesNotMakeTheNextRoundLateForEveryone) {
  constexpr uint64_t hold = 5015;
  constexpr uint64_t day_s = 86'400;
  open_wallets(3);
  form(hold, 3, actors::equb::rotation::fixed_order, actors::equb::default_policy::hold_round);
  ASSERT_EQ(pay(1, hold, 2, 0, contribution), result::ok);
  ASSERT_EQ(pay(2, hold, 2, 1, contribution), result::ok);
  fx_.advance_s(40 * day_s);  // round 2 closed at 8 days, round 3's deadline was 14
  ASSERT_EQ(pay(3, hold, 2, 2, contribution + late_penalty), result::ok);
  group_entry h = settled(hold);
  ASSERT_EQ(h.g.round, 3u);
  EXPECT_GT(h.g.shift_ns, 24 * day_s * 1'000'000'000ull);
  EXPECT_GT(actors::equb::round_deadline(h.g), fx_.now_ns() + 5 * day_s * 1'000'000'000ull) << "6 days to pay";
  const uint64_t deadline = actors::equb::round_deadline(h.g);
  ASSERT_EQ(pay(1, hold, 3, 0, contribution), result::ok) << "on time: the due alone";
  const uint64_t shift = h.g.shift_ns;
  fx_.restart();  // replayed from the log
  EXPECT_EQ(settled(hold).g.shift_ns, shift);
  ASSERT_EQ(pay(2, hold, 3, 1, contribution), result::ok);
  fx_.advance_s(7 * day_s);  // past the moved deadline: late again
  EXPECT_EQ(pay(3, hold, 3, 2, contribution), result::wrong_amount);
  ASSERT_EQ(pay(3, hold, 3, 2, contribution + late_penalty), result::ok);
  EXPECT_EQ(settled(hold).g.ph, actors::equb::phase::completed);
  expect_escrow_consistent(hold);
  // The move is an event, after round 2's close (once: the replay wrote none again).
  fx_.close();
  std::vector<wire::event> moved;
  for (const auto& ev : all_events(fx_.dir()))
    if (ev.type == wire::event_type::equb_rescheduled && ev.account_a == hold) moved.push_back(ev);
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved[0].code, 3u) << "the round it moved";
  EXPECT_EQ(moved[0].amount, shift);
  EXPECT_EQ(moved[0].ref.lo, deadline);
  fx_.open();
}

// A guarantor that is a customer's wallet with a KYC tier: its cover counts in the
// wallet's outflow of the day (the cover itself is not refused: the group's guarantee
// stands), so the wallet's own transfers meet its daily limit. Before, covers left the
// wallet unseen by its limits.
TEST_F(equb_engine, AGuarantorsCoverCountsInItsDailyOutflow) {
  constexpr uint64_t g = 5030;
  open_wallets(3);
  const auto etb = wire::currency("ETB");
  ASSERT_EQ(e().policies({actors::customers::tier_op(1, etb, 1'000, 150, 1'000'000)}).results.at(0), result::ok);
  const auto kyc = actors::customers::verified_op(guarantor, 1, wire::risk_profile::conservative, 1, 1);
  ASSERT_EQ(e().customers({kyc}).results.at(0), result::ok);
  ASSERT_EQ(op1(create_op(g, actors::equb::rotation::fixed_order, actors::equb::default_policy::cover_from_guarantor)),
            result::ok);
  for (uint32_t w = 1; w <= 3; ++w) ASSERT_EQ(pay(w, g, 0, 0, contribution), result::ok);
  ASSERT_EQ(simple(wire::equb_op_kind::start, g), result::ok);
  ASSERT_EQ(pay(1, g, 2, 0, contribution), result::ok);
  ASSERT_EQ(pay(2, g, 2, 1, contribution), result::ok);
  fx_.advance_s(8 * 86'400 + 1);  // past round 2's deadline + grace: wallet 3's due is covered
  ASSERT_EQ(at_round(g, 3).g.round, 3u);
  EXPECT_EQ(balance(guarantor), -int64_t(contribution));
  EXPECT_EQ(e().lookup_customers({guarantor}).customers.at(0).outflow_today, contribution);
  // 100 covered and 60 more would pass the day's 150.
  EXPECT_EQ(e().create_transfers({make_transfer(next_id_++, guarantor, funding, 60)}).results.at(0),
            result::exceeds_daily_outflow);
  EXPECT_EQ(e().create_transfers({make_transfer(next_id_++, guarantor, funding, 50)}).results.at(0), result::ok);
  expect_escrow_consistent(g);
}

// A member may hold more than one number: each receives its own payout.
TEST_F(equb_engine, AMemberWithTwoNumbersReceivesTwice) {
  constexpr uint64_t g = 5015;
  ASSERT_NO_FATAL_FAILURE(form_with_two_numbers(g));
  for (uint32_t round = 2; round <= 3; ++round) {
    ASSERT_EQ(pay(1, g, round, 0, contribution), result::ok);
    ASSERT_EQ(pay(1, g, round, 1, contribution), result::ok);
    ASSERT_EQ(pay(2, g, round, 2, contribution), result::ok);
  }
  const group_entry st = settled(g);
  EXPECT_EQ(st.g.ph, phase::completed);
  const int64_t payout = 3 * contribution - 3;
  EXPECT_EQ(balance(1), int64_t(starting) - 6 * int64_t(contribution) + 2 * payout);
  EXPECT_EQ(balance(2), int64_t(starting) - 3 * int64_t(contribution) + payout);
  expect_escrow_consistent(g);
}

// A member with two numbers that misses one's due when the other receives owes itself
// nothing (rules version 46): that payout is short by the due, and the next round's
// payment is the contribution alone. Before, it owed its own wallet the due and the
// penalty, to pay into the escrow with its next due and have forwarded back.
TEST_F(equb_engine, AMemberWithTwoNumbersOwesItselfNothingForTheDueItMissed) {
  constexpr uint64_t g = 5079;
  ASSERT_NO_FATAL_FAILURE(form_with_two_numbers(g));
  ASSERT_EQ(pay(1, g, 2, 1, contribution), result::ok);
  ASSERT_EQ(pay(2, g, 2, 2, contribution), result::ok);
  fx_.advance_s(8 * 86'400 + 1);  // seat 0 misses round 2: it closes, seat 1 (wallet 1) receives
  ASSERT_EQ(at_round(g, 3).g.round, 3u);
  EXPECT_EQ(debts_of_seat(settled(g), 0), 0u);
  ASSERT_EQ(pay(1, g, 3, 0, contribution), result::ok) << "the due alone";
  ASSERT_EQ(pay(1, g, 3, 1, contribution), result::ok);
  ASSERT_EQ(pay(2, g, 3, 2, contribution), result::ok);
  const group_entry st = settled(g);
  EXPECT_EQ(st.g.ph, phase::completed);
  // Wallet 1: five dues in, round 1's payout (300 less 3) and round 2's (200 less 2).
  EXPECT_EQ(balance(1), int64_t(starting) - 5 * int64_t(contribution) + (3 * int64_t(contribution) - 3) +
                            (2 * int64_t(contribution) - 2));
  EXPECT_EQ(balance(2), int64_t(starting) - 3 * int64_t(contribution) + 3 * int64_t(contribution) - 3);
  expect_escrow_consistent(g);
}

// At recovery each group is checked against its escrow account in the same snapshot: a
// group row that decodes but claims money the account does not hold stops start-up.
TEST_F(equb_engine, RecoveryRefusesAGroupItsEscrowDoesNotBackUp) {
  constexpr uint64_t g = 5016;
  ASSERT_NO_FATAL_FAILURE(closed_after_a_round_paid(g));
  rewrite_group_row(g, [](group_entry& entry) {
    entry.g.seats[1].credit += 1;  // one made-up minor unit, consistent within the group
    entry.g.escrow += 1;
  });
  std::string why;
  auto reopened = engine::engine::open(fx_.config(), &why);
  EXPECT_FALSE(reopened);
  EXPECT_NE(why.find("group 5016: its escrow account holds 100 but the group says 101"), std::string::npos) << why;
}

// A group's create makes its escrow in the group's currency: a group row of another
// currency than its escrow account (the row well formed, the escrow's balance what the
// group says) refuses the start by name. Loaded, every payment of the group would be
// refused, its money stuck.
TEST_F(equb_engine, RecoveryRefusesAGroupOfAnotherCurrencyThanItsEscrow) {
  constexpr uint64_t g = 5017;
  ASSERT_NO_FATAL_FAILURE(closed_after_a_round_paid(g));
  auto rewrite = [&](wire::currency_code currency) {
    rewrite_group_row(g, [&](group_entry& entry) { entry.g.cfg.currency = currency; });
  };
  rewrite(wire::currency("USD"));
  std::string why;
  EXPECT_FALSE(engine::engine::open(fx_.config(), &why));
  EXPECT_EQ(why, "snapshot: equb group: group 5017: its escrow account is in ETB but the group in USD");
  rewrite(wire::currency("ETB"));
  fx_.open();
  EXPECT_EQ(group(g).g.cfg.currency, wire::currency("ETB"));
}

// A group's snapshot bytes are read strictly: damage that would make up or lose money,
// or repeat transfer ids, is refused with the reason.
TEST_F(equb_engine, DamagedGroupRecordsAreRefused) {
  constexpr uint64_t g = 5010;
  open_wallets(3);
  form(g, 3);
  ASSERT_EQ(e().set_account_status({{1, wire::account_status::frozen}}).results.at(0), result::ok);
  ASSERT_EQ(pay(1, g, 2, 0, contribution), result::debit_account_frozen);
  ASSERT_EQ(e().set_account_status({{1, wire::account_status::open}}).results.at(0), result::ok);
  const group_entry good = settled(g);
  group_entry back;
  std::string why;
  ASSERT_TRUE(actors::equb::decode_entry(actors::equb::encode_entry(good), &back, &why)) << why;
  EXPECT_EQ(actors::equb::encode_entry(back), actors::equb::encode_entry(good));

  auto refused = [&](const char* what, auto&& damage) {
    group_entry bad = good;
    damage(bad);
    group_entry out;
    std::string reason;
    EXPECT_FALSE(actors::equb::decode_entry(actors::equb::encode_entry(bad), &out, &reason)) << what;
    EXPECT_FALSE(reason.empty()) << what;
  };
  actors::equb::obligation o;
  o.first_step = good.next_step;
  o.transfers.push_back({g, 1, 10, actors::equb::purpose::refund});
  refused("steps past next_step", [&](group_entry& b) { b.owed.push_back(o); });
  refused("overlapping steps", [&](group_entry& b) {
    b.next_step += 2;
    auto a = o, c = o;
    c.transfers.push_back({g, 2, 10, actors::equb::purpose::refund});
    b.owed.push_back(a);
    b.owed.push_back(c);
  });
  refused("money that is not the escrow's", [&](group_entry& b) {
    auto x = o;
    x.transfers[0] = {1, 2, 10, actors::equb::purpose::refund};
    b.next_step += 1;
    b.owed.push_back(x);
  });
  refused("more paid in than held", [&](group_entry& b) {
    auto x = o;
    x.transfers[0] = {2, g, b.g.escrow + 1'000'000, actors::equb::purpose::cover};
    b.next_step += 1;
    b.owed.push_back(x);
  });
  refused("a history that does not match", [&](group_entry& b) { b.history.at(0).seat = 2; });
  refused("a lost history", [&](group_entry& b) { b.history.clear(); });
  refused("another group's id", [&](group_entry& b) { b.g.cfg.group_id += 1; });
  refused("a made-up refusal", [&](group_entry& b) {
    auto x = o;
    x.refused = true;
    x.refusal = wire::result(9999);
    b.next_step += 1;
    b.owed.push_back(x);
  });
  auto bytes = actors::equb::encode_entry(good);
  bytes.pop_back();
  EXPECT_FALSE(actors::equb::decode_entry(bytes, &back, &why));
}


// A member's KYC tier limits what it may hold and send, but not what its group pays it
// (actors/customers.hpp: the engine's own transfers are not checked): the round's pot
// reaches a wallet already at its balance limit, and the next transfer in is refused.
TEST_F(equb_engine, TieredMembersReceiveTheirPayoutPastTheirLimits) {
  constexpr uint64_t g = 5077;
  open_wallets(3);
  // At most what each holds before it joins.
  const auto tier = actors::customers::tier_op(1, wire::currency("ETB"), contribution, contribution, starting);
  ASSERT_EQ(e().policies({tier}).results.at(0), result::ok);
  for (uint64_t w = 1; w <= 3; ++w) give_tier(w, 1);
  form(g, 3);  // joining pays round 1 (each within its limits); round 1 pays wallet 1 at start
  const group_entry st = settled(g);
  ASSERT_TRUE(st.owed.empty()) << "the payout was refused";
  EXPECT_GT(balance(1), int64_t(starting)) << "the pot arrived past the balance limit";
  EXPECT_EQ(e().create_transfers({make_transfer(next_id_++, funding, 1, 1)}).results.at(0),
            result::exceeds_balance_limit);
  expect_escrow_consistent(g);
}

// A member's payment of what its seat owes is not refused by its wallet's tier
// (rules_equb_dues_past_limits): a late payment (the due and the missed round's debt, in
// one transfer past the single limit) and a due paid after the day's outflow was spent
// both pass, and both count in the day's outflow, which the wallet's own transfers then
// meet. The join is checked like any transfer. Before, the late member could never pay:
// its debt's creditor was never repaid.
TEST_F(equb_engine, AMembersDuesPassItsTiersLimitsAndCountInItsOutflow) {
  constexpr uint64_t g = 5078;
  open_wallets(4);
  const auto etb = wire::currency("ETB");
  ASSERT_EQ(e().policies({actors::customers::tier_op(1, etb, contribution, 2 * contribution, 1'000'000)}).results.at(0),
            result::ok);
  ASSERT_EQ(e().policies({actors::customers::tier_op(2, etb, contribution - 1, 1'000, 1'000'000)}).results.at(0),
            result::ok);
  for (uint64_t w = 1; w <= 3; ++w) give_tier(w, 1);
  give_tier(4, 2);
  ASSERT_EQ(op1(create_op(g)), result::ok);
  EXPECT_EQ(pay(4, g, 0, 0, contribution), result::exceeds_transfer_limit) << "a join is checked";
  for (uint32_t w = 1; w <= 3; ++w) ASSERT_EQ(pay(w, g, 0, 0, contribution), result::ok);
  ASSERT_EQ(simple(wire::equb_op_kind::start, g), result::ok);
  ASSERT_EQ(settled(g).g.round, 2u);
  // Wallet 1 spends the rest of its day's outflow (its join took the first 100), then pays round 2.
  ASSERT_EQ(e().create_transfers({make_transfer(next_id_++, 1, funding, contribution)}).results.at(0), result::ok);
  EXPECT_EQ(e().create_transfers({make_transfer(next_id_++, 1, funding, 1)}).results.at(0),
            result::exceeds_daily_outflow);
  EXPECT_EQ(pay(1, g, 2, 0, contribution), result::ok) << "a due past the day's outflow";
  EXPECT_EQ(outflow_today(1), 3 * contribution);
  ASSERT_EQ(pay(2, g, 2, 1, contribution), result::ok);
  fx_.advance_s(8 * 86'400 + 1);  // wallet 3 missed round 2: a debt to wallet 2
  const group_entry st = at_round(g, 3);
  ASSERT_EQ(st.g.round, 3u);
  ASSERT_EQ(debts_of_seat(st, 2), missed_debt);
  // Round 3's due and the debt: one transfer, past the single limit.
  EXPECT_EQ(e().create_transfers({make_transfer(next_id_++, 3, funding, contribution + missed_debt)}).results.at(0),
            result::exceeds_transfer_limit)
      << "the wallet's own transfers meet its limits";
  const int64_t creditor = balance(2);
  EXPECT_EQ(pay(3, g, 3, 2, contribution + missed_debt), result::ok) << "a late member pays what it owes";
  EXPECT_EQ(outflow_today(3), contribution + missed_debt);
  EXPECT_EQ(e().create_transfers({make_transfer(next_id_++, 3, funding, 1)}).results.at(0),
            result::exceeds_daily_outflow)
      << "what it paid the group counts in its day";
  EXPECT_EQ(debts_of_seat(settled(g), 2), 0u);
  EXPECT_EQ(balance(2), creditor + int64_t(missed_debt)) << "the creditor is repaid";
  expect_escrow_consistent(g);
}

// Logs written by hand, as older builds wrote them. A batch record's body: the capacities
// the batch was decided by (an accounts create's accounts_max; a groups batch's
// groups_max, and its accounts_max from version 31; a transfer batch's pending_max and
// transfers_max), 8 bytes each, 1,000,000 here, then the operations.
std::vector<uint8_t> with_capacities(std::vector<uint8_t> ops, size_t settings) {
  std::vector<uint8_t> b(settings * 8);
  for (size_t i = 0; i < settings; ++i) {
    const uint64_t max = 1'000'000;
    std::memcpy(b.data() + i * 8, &max, 8);
  }
  b.insert(b.end(), ops.begin(), ops.end());
  return b;
}
uint16_t op_kind_of(actors::op_kind k) { return uint16_t(k); }
wire::equb_op start_op(uint64_t group) {
  wire::equb_op start;
  start.kind = wire::equb_op_kind::start;
  start.group_id = group;
  return start;
}

// A group started by a batch record of version 26 keeps round k due at the start + k
// periods when the log is replayed by this build (round 2: two periods); one started by a
// version 27 record has round k due at k - 1 periods. The log is written with the
// engine's own writer, as each build wrote it (wallets, the create, the joins, the start).
TEST(equb_engine_upgrade, a_group_started_by_an_older_record_keeps_its_schedule) {
  for (const uint16_t version : {uint16_t(26), uint16_t(27)}) {
    SCOPED_TRACE(version);
    temp_dir dir;
    constexpr uint64_t group = 831, fee = 900;
    const auto create = make_equb_create(group, fee, 100);
    std::vector<wire::transfer> joins;
    for (const uint64_t w : {1, 2}) joins.push_back(make_transfer(40 + w, w, group, 100, wire::transfer_flags::equb));
    const wire::equb_op start = start_op(group);
    write_batch_records(
        dir.path(),
        {{version, op_kind_of(actors::op_kind::create_accounts), 3,
          with_capacities(ops_bytes(std::vector{make_account(1), make_account(2), make_account(fee)}), 1)},
         {version, op_kind_of(actors::op_kind::equb_ops), 1, with_capacities(ops_bytes(std::vector{create}), 1)},
         {version, op_kind_of(actors::op_kind::create_transfers), 2, with_capacities(ops_bytes(joins), 2)},
         {version, op_kind_of(actors::op_kind::equb_ops), 1, with_capacities(ops_bytes(std::vector{start}), 1)}});
    std::string err;
    auto e = engine::engine::open(test_config(dir.path()), &err);
    ASSERT_TRUE(e) << err;
    const auto r = e->lookup_groups({group});
    ASSERT_EQ(r.groups.size(), 1u);
    const auto& g = r.groups[0].g;
    ASSERT_EQ(g.ph, phase::active);
    ASSERT_EQ(g.round, 2u) << "round 1 paid out at the start";
    EXPECT_EQ(g.schedule_offset, version >= 27 ? 1u : 0u);
    // (The engine was down from the log's last record until now: the schedule moved by that.)
    EXPECT_EQ(actors::equb::round_deadline(g) - g.started_at - g.shift_ns,
              (version >= 27 ? 1 : 2) * create.period_ns);
  }
}

// A due paid past the day's outflow, in a batch record of version 43, replays as it was
// decided then (exceeds_daily_outflow); in one of version 44 it is paid. The log is
// written with the engine's own writer: a tier, two wallets funded and made its
// customers, a group they join and start, wallet 1's transfer that spends the rest of
// its day, and its round 2 due.
TEST(equb_engine_upgrade, a_due_past_the_days_outflow_in_an_older_record_replays_as_refused) {
  for (const uint16_t version : {uint16_t(actors::rules_equb_dues_past_limits - 1), actors::rules_equb_dues_past_limits}) {
    SCOPED_TRACE(version);
    temp_dir dir;
    constexpr uint64_t group = 832, fee = 900, funds = 999;
    const auto etb = wire::currency("ETB");
    const auto tier = actors::customers::tier_op(1, etb, 100, 200, 1'000'000);
    std::vector<wire::customer_op> kyc;
    for (const uint64_t w : {1, 2}) kyc.push_back(actors::customers::verified_op(w, 1, wire::risk_profile::moderate));
    std::vector<wire::transfer> funded, joins;
    for (const uint64_t w : {1, 2}) {
      funded.push_back(make_transfer(10 + w, funds, w, 1'000));
      joins.push_back(make_transfer(40 + w, w, group, 100, wire::transfer_flags::equb));
    }
    const wire::equb_op start = start_op(group);
    const wire::transfer spend = make_transfer(50, 1, funds, 100);
    wire::transfer due = make_transfer(51, 1, group, 100, wire::transfer_flags::equb);
    due.user_data = uint64_t(2) << 32 | 0;  // round 2, seat 0
    const auto wallet = [](uint64_t id) { return make_account(id, wire::account_flags::debits_must_not_exceed_credits); };
    write_batch_records(
        dir.path(),
        {{version, op_kind_of(actors::op_kind::policy_ops), 1, ops_bytes(std::vector{tier})},
         {version, op_kind_of(actors::op_kind::create_accounts), 4,
          with_capacities(ops_bytes(std::vector{wallet(1), wallet(2), make_account(fee), make_account(funds)}), 1)},
         {version, op_kind_of(actors::op_kind::create_transfers), 2, with_capacities(ops_bytes(funded), 2)},
         {version, op_kind_of(actors::op_kind::customer_ops), 2, ops_bytes(kyc)},
         {version, op_kind_of(actors::op_kind::equb_ops), 1,
          with_capacities(ops_bytes(std::vector{make_equb_create(group, fee, 100)}), 2)},
         {version, op_kind_of(actors::op_kind::create_transfers), 2, with_capacities(ops_bytes(joins), 2)},
         {version, op_kind_of(actors::op_kind::equb_ops), 1, with_capacities(ops_bytes(std::vector{start}), 2)},
         {version, op_kind_of(actors::op_kind::create_transfers), 1, with_capacities(ops_bytes(std::vector{spend}), 2)},
         {version, op_kind_of(actors::op_kind::create_transfers), 1, with_capacities(ops_bytes(std::vector{due}), 2)}});
    std::string err;
    auto e = engine::engine::open(test_config(dir.path()), &err);
    ASSERT_TRUE(e) << err;
    const auto looked = e->lookup_transfers({spend.id, due.id});
    ASSERT_EQ(looked.transfers.size(), 2u);
    EXPECT_EQ(looked.transfers[0].result, uint32_t(result::ok));
    const auto paid = version >= actors::rules_equb_dues_past_limits;
    EXPECT_EQ(looked.transfers[1].result, uint32_t(paid ? result::ok : result::exceeds_daily_outflow));
    const auto r = e->lookup_groups({group});
    ASSERT_EQ(r.groups.size(), 1u);
    EXPECT_EQ(r.groups[0].g.seats.at(0).paid, paid);
    EXPECT_EQ(r.groups[0].g.round, 2u);
  }
}

}  // namespace
}  // namespace mesob::test
