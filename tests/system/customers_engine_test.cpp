// Customers in the engine (actors/customers.hpp): the policy of tiers and profiles, KYC
// records, and the tier limits the ledger enforces on every transfer, across shards,
// inside linked chains (undone with them), across days and across restarts.
#include <gtest/gtest.h>

#include "actors/customers.hpp"
#include "actors/placement.hpp"
#include "support/engine_fixture.hpp"
#include "support/event_files.hpp"

using namespace mesob;
using wire::result;

namespace {

constexpr uint64_t bank = 900;  // a system account money comes from (it may go below zero)

wire::policy_op tier(uint8_t n, uint64_t single, uint64_t daily, uint64_t balance) {
  return actors::customers::tier_op(n, wire::currency("ETB"), single, daily, balance);
}

wire::customer_op kyc(uint64_t wallet, uint8_t t, wire::kyc_status s = wire::kyc_status::verified,
                      uint64_t sequence = 1) {
  wire::customer_op c;
  c.wallet = wallet;
  c.sequence = sequence;
  c.kyc = s;
  c.profile = wire::risk_profile::moderate;
  c.tier = t;
  c.reference = wallet * 7;
  return c;
}

class customers_engine : public ::testing::Test {
 protected:
  explicit customers_engine(bool checkpoint_on_close = true) : fx_(2, checkpoint_on_close) {}
  engine::engine& e() { return fx_.e(); }
  // Wallets a, b on shard 0 and c on shard 1 (two shards).
  void SetUp() override {
    std::vector<uint64_t> on[2];
    for (uint64_t id = 1; on[0].size() < 2 || on[1].empty(); ++id) on[actors::shard_of(id, 2)].push_back(id);
    a_ = on[0][0];
    b_ = on[0][1];
    c_ = on[1][0];
    auto src = test::make_account(bank);
    src.kind = wire::account_kind::system;
    std::vector<wire::account> accts{src, test::make_account(a_), test::make_account(b_), test::make_account(c_)};
    ASSERT_EQ(e().create_accounts(accts).results, std::vector<result>(4, result::ok));
    ASSERT_EQ(e().policies({tier(1, 1000, 1500, 5000), tier(2, 100'000, 100'000, 1'000'000)}).results,
              (std::vector<result>{result::ok, result::ok}));
  }
  result move(uint64_t id, uint64_t from, uint64_t to, uint64_t amount, uint16_t flags = 0) {
    return e().create_transfers({test::make_transfer(id, from, to, amount, flags)}).results.at(0);
  }
  wire::customer_state customer(uint64_t wallet) {
    auto r = e().lookup_customers({wallet});
    EXPECT_EQ(r.customers.size(), 1u);
    return r.customers.empty() ? wire::customer_state{} : r.customers[0];
  }
  test::engine_fixture fx_;
  uint64_t a_ = 0, b_ = 0, c_ = 0;
};

class customers_engine_replay : public customers_engine {
 protected:
  customers_engine_replay() : customers_engine(false) {}
};

}  // namespace

TEST_F(customers_engine, PolicyAndKycRecordsWithEveryRefusal) {
  auto fee = test::make_account(901);
  fee.kind = wire::account_kind::fee;
  ASSERT_EQ(e().create_accounts({fee}).results[0], result::ok);
  auto bad_kyc = kyc(a_, 1);
  bad_kyc.kyc = wire::kyc_status(9);
  auto bad_profile = kyc(a_, 1);
  bad_profile.profile = wire::risk_profile(0);
  auto stray = kyc(a_, 1);
  stray.reserved2 = 1;
  auto r = e().customers({kyc(0, 1), bad_kyc, bad_profile, kyc(a_, 0), kyc(a_, 17), kyc(a_, 3), kyc(7777, 1),
                          kyc(901, 1), stray, kyc(a_, 1)});
  EXPECT_EQ(r.results, (std::vector<result>{result::id_must_not_be_zero, result::kyc_status_invalid,
                                            result::risk_profile_invalid, result::tier_undefined, result::tier_undefined,
                                            result::tier_undefined, result::account_not_found,
                                            result::customer_wallet_required, result::reserved_field, result::ok}));
  EXPECT_EQ(e().customers({kyc(a_, 1)}).results[0], result::ok) << "the same again";
  auto c = customer(a_);
  EXPECT_EQ(c.wallet, a_);
  EXPECT_EQ(c.kyc, wire::kyc_status::verified);
  EXPECT_EQ(c.tier, 1);
  EXPECT_EQ(c.reference, a_ * 7);
  EXPECT_EQ(e().lookup_accounts({a_}).accounts[0].tier, 1) << "the ledger sees the tier";
  EXPECT_EQ(e().lookup_customers({b_}).results[0], result::customer_not_found);
  // Rejected later: the record follows. A late retry of the first record is refused and
  // changes nothing; the latest again with other fields is refused too.
  ASSERT_EQ(e().customers({kyc(a_, 2, wire::kyc_status::rejected, 2)}).results[0], result::ok);
  EXPECT_EQ(customer(a_).kyc, wire::kyc_status::rejected);
  EXPECT_EQ(e().lookup_accounts({a_}).accounts[0].tier, 2);
  EXPECT_EQ(e().customers({kyc(a_, 1), kyc(a_, 1, wire::kyc_status::rejected, 2), kyc(a_, 2, wire::kyc_status::rejected, 0)})
                .results,
            (std::vector<result>{result::sequence_out_of_order, result::exists_with_different_fields,
                                 result::id_must_not_be_zero}));
  EXPECT_EQ(customer(a_).sequence, 2u);
  EXPECT_EQ(customer(a_).tier, 2);
  // Policy refusals.
  auto zero = tier(1, 0, 1, 1);
  auto big = tier(17, 1, 1, 1);
  wire::policy_op prof;
  prof.kind = wire::policy_op_kind::profile;
  prof.number = 2;
  prof.classes = 0x3;
  prof.position_max = 50'000;
  auto bad_classes = prof;
  bad_classes.classes = 0x30;
  auto unknown = prof;
  unknown.kind = wire::policy_op_kind(5);
  r = e().policies({zero, big, bad_classes, unknown, prof});
  EXPECT_EQ(r.results, (std::vector<result>{result::policy_op_invalid, result::policy_op_invalid,
                                            result::policy_op_invalid, result::policy_op_invalid, result::ok}));
  actors::customers::policy p;
  std::string why;
  ASSERT_TRUE(actors::customers::policy::decode(e().lookup_policy().policy, &p, &why)) << why;
  ASSERT_NE(p.profile(2), nullptr);
  EXPECT_EQ(p.profile(2)->position_max, 50'000u);
  ASSERT_NE(p.tier(1, wire::currency("ETB")), nullptr);
  EXPECT_EQ(p.tier(1, wire::currency("ETB"))->daily_outflow_max, 1500u);
}

TEST_F(customers_engine, TierLimitsOnEveryTransferAcrossShardsChainsAndDays) {
  ASSERT_EQ(move(1, bank, a_, 4000), result::ok);
  ASSERT_EQ(e().customers({kyc(a_, 1), kyc(c_, 1)}).results, (std::vector<result>{result::ok, result::ok}));
  // Out of a (shard 0) to c (shard 1): single and daily limits, the ledger's own first.
  EXPECT_EQ(move(2, a_, c_, 1001), result::exceeds_transfer_limit);
  EXPECT_EQ(move(3, a_, c_, 1000), result::ok);
  EXPECT_EQ(move(4, a_, c_, 600), result::exceeds_daily_outflow);
  EXPECT_EQ(move(5, a_, b_, 500), result::ok);  // b has no tier
  EXPECT_EQ(move(6, a_, b_, 1), result::exceeds_daily_outflow);
  EXPECT_EQ(customer(a_).outflow_today, 1500u);
  // A linked chain that fails undoes its outflow with it (a new day first).
  fx_.advance_s(86'400);
  auto first = test::make_transfer(7, a_, b_, 800, wire::transfer_flags::linked);
  auto second = test::make_transfer(8, a_, c_, 800);
  EXPECT_EQ(e().create_transfers({first, second}).results,
            (std::vector<result>{result::linked_event_failed, result::exceeds_daily_outflow}));
  EXPECT_EQ(customer(a_).outflow_today, 0u);
  EXPECT_EQ(move(9, a_, c_, 1000), result::ok);
  // Into c: its balance may not pass 5,000 (holds count).
  EXPECT_EQ(move(10, bank, c_, 2000), result::ok);
  const auto cacct = e().lookup_accounts({c_}).accounts[0];
  const uint64_t held = cacct.credits_posted - cacct.debits_posted;
  ASSERT_EQ(held, 4000u);  // 1,000 + 1,000 + 2,000
  EXPECT_EQ(move(11, bank, c_, 1000, wire::transfer_flags::pending), result::ok);
  EXPECT_EQ(move(12, bank, c_, 1), result::exceeds_balance_limit);
  EXPECT_EQ(move(13, bank, c_, 1, wire::transfer_flags::pending), result::exceeds_balance_limit);
  // A wider tier applies from its place in the log on.
  ASSERT_EQ(e().customers({kyc(c_, 2, wire::kyc_status::verified, 2)}).results[0], result::ok);
  EXPECT_EQ(move(14, bank, c_, 1), result::ok);
  ASSERT_EQ(e().policies({tier(1, 1000, 5000, 5000)}).results[0], result::ok);
  EXPECT_EQ(move(15, a_, c_, 1000), result::ok);  // 2,000 out today, under the new 5,000
  EXPECT_EQ(customer(a_).outflow_today, 2000u);
  auto check = e().check_balances();
  EXPECT_TRUE(check.balanced) << check.detail;
}

// Several transfers from one wallet in one request, crossing shards (set aside until the
// other shard has published): each reads the outflow the ones before it left.
TEST_F(customers_engine, OneRequestOfTransfersFromOneWalletAcrossShards) {
  ASSERT_EQ(move(1, bank, a_, 4000), result::ok);
  ASSERT_EQ(e().customers({kyc(a_, 1)}).results[0], result::ok);
  std::vector<wire::transfer> ts{test::make_transfer(2, a_, c_, 1000), test::make_transfer(3, c_, a_, 10),
                                 test::make_transfer(4, a_, c_, 600), test::make_transfer(5, a_, c_, 500),
                                 test::make_transfer(6, a_, b_, 1)};
  EXPECT_EQ(e().create_transfers(ts).results,
            (std::vector<result>{result::ok, result::ok, result::exceeds_daily_outflow, result::ok,
                                 result::exceeds_daily_outflow}));
  EXPECT_EQ(customer(a_).outflow_today, 1500u) << "money in gives no outflow back";
}

// A chain that fails on the other shard's verdict (the credit wallet's balance limit)
// after this wallet's outflow was counted: the outflow goes with the rest of the chain.
TEST_F(customers_engine, AChainRefusedByTheOtherShardUndoesTheOutflow) {
  ASSERT_EQ(move(1, bank, a_, 4000), result::ok);
  ASSERT_EQ(move(2, bank, c_, 4500), result::ok);
  ASSERT_EQ(e().customers({kyc(a_, 1), kyc(c_, 1)}).results, (std::vector<result>{result::ok, result::ok}));
  auto first = test::make_transfer(3, a_, b_, 900, wire::transfer_flags::linked);
  auto second = test::make_transfer(4, a_, c_, 600);  // c would hold 5,100
  EXPECT_EQ(e().create_transfers({first, second}).results,
            (std::vector<result>{result::linked_event_failed, result::exceeds_balance_limit}));
  EXPECT_EQ(customer(a_).outflow_today, 0u);
  EXPECT_EQ(e().lookup_accounts({a_}).accounts[0].debits_posted, 0u);
  EXPECT_EQ(move(5, a_, b_, 1000), result::ok);
  EXPECT_EQ(move(6, a_, b_, 500), result::ok) << "the whole day's room is there";
}

TEST_F(customers_engine_replay, OutflowAndRecordsSurviveReplayAndSnapshots) {
  ASSERT_EQ(move(1, bank, a_, 4000), result::ok);
  ASSERT_EQ(e().customers({kyc(a_, 1), kyc(c_, 1)}).results, (std::vector<result>{result::ok, result::ok}));
  ASSERT_EQ(move(2, a_, c_, 900), result::ok);
  // Repeats make no event: the same record, the same tier limits.
  ASSERT_EQ(e().customers({kyc(a_, 1)}).results[0], result::ok);
  ASSERT_EQ(e().policies({tier(1, 1000, 1500, 5000)}).results[0], result::ok);
  fx_.restart();  // the log alone
  EXPECT_EQ(customer(a_).outflow_today, 900u);
  EXPECT_EQ(move(3, a_, c_, 700), result::exceeds_daily_outflow);
  ASSERT_EQ(move(4, a_, c_, 600), result::ok);
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  fx_.restart();  // the snapshot
  EXPECT_EQ(customer(a_).outflow_today, 1500u);
  EXPECT_EQ(customer(c_).tier, 1);
  EXPECT_EQ(move(5, a_, c_, 1), result::exceeds_daily_outflow);
  EXPECT_EQ(e().lookup_accounts({a_}).accounts[0].tier, 1);
  fx_.close();
  size_t kyc_events = 0, policy_events = 0;
  for (const auto& ev : test::all_events(fx_.dir())) {
    kyc_events += ev.type == wire::event_type::customer_kyc;
    policy_events += ev.type == wire::event_type::policy_changed;
  }
  EXPECT_EQ(kyc_events, 2u);
  EXPECT_EQ(policy_events, 2u);
}

// A provider that started its count again has every record refused until an operator's
// resequence; the resequence is logged (replay and a snapshot keep it, sequence 0 too)
// and makes one event. In an older build's record the kind byte was reserved.
TEST_F(customers_engine_replay, AResequenceLetsAProviderCountAgainAcrossRestarts) {
  ASSERT_EQ(e().customers({kyc(a_, 1, wire::kyc_status::pending, 900)}).results[0], result::ok);
  EXPECT_EQ(e().customers({kyc(a_, 1, wire::kyc_status::verified, 1)}).results[0], result::sequence_out_of_order);
  wire::customer_op q;
  q.wallet = a_;
  q.kind = wire::customer_op_kind::resequence;
  auto stray = q;
  stray.tier = 1;
  auto unknown = q;
  unknown.kind = wire::customer_op_kind(2);
  auto nobody = q;
  nobody.wallet = b_;
  EXPECT_EQ(e().customers({stray, unknown, nobody}).results,
            (std::vector<result>{result::customer_op_invalid, result::customer_op_invalid, result::customer_not_found}));
  ASSERT_EQ(e().customers({q}).results[0], result::ok);
  EXPECT_EQ(customer(a_).sequence, 0u);
  EXPECT_EQ(customer(a_).kyc, wire::kyc_status::pending) << "the record itself stays";
  ASSERT_EQ(e().customers({q}).results[0], result::ok);  // the same again: no change, no event
  fx_.restart();  // the log alone
  EXPECT_EQ(customer(a_).sequence, 0u);
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  fx_.restart();  // a snapshot holding sequence 0
  EXPECT_EQ(customer(a_).sequence, 0u);
  ASSERT_EQ(e().customers({kyc(a_, 1, wire::kyc_status::verified, 1)}).results[0], result::ok);
  EXPECT_EQ(customer(a_).kyc, wire::kyc_status::verified);
  // At the sequence given no record was taken: one there is out of order, not a repeat
  // of the kept record (before, the same fields were an ok that took nothing), also from
  // a snapshot.
  q.sequence = 5;
  ASSERT_EQ(e().customers({q}).results[0], result::ok);
  EXPECT_EQ(e().customers({kyc(a_, 1, wire::kyc_status::verified, 5)}).results[0], result::sequence_out_of_order);
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  fx_.restart();
  EXPECT_EQ(e().customers({kyc(a_, 1, wire::kyc_status::verified, 5)}).results[0], result::sequence_out_of_order);
  ASSERT_EQ(e().customers({kyc(a_, 1, wire::kyc_status::verified, 6)}).results[0], result::ok);
  EXPECT_EQ(e().customers({kyc(a_, 1, wire::kyc_status::verified, 6)}).results[0], result::ok);  // a repeat
  fx_.close();
  std::vector<wire::event> resequenced;
  for (const auto& ev : test::all_events(fx_.dir()))
    if (ev.type == wire::event_type::customer_resequenced) resequenced.push_back(ev);
  ASSERT_EQ(resequenced.size(), 2u);
  EXPECT_EQ(resequenced[0].account_a, a_);
  EXPECT_EQ(resequenced[0].ref.lo, 0u);
  EXPECT_EQ(resequenced[1].ref.lo, 5u);
}

// A resequence to the sequence the last record took takes effect (rules version 18):
// a record at it is out of order, and it makes its event. Before, it was a repeat, and a
// record there with the same fields an ok that took nothing.
TEST_F(customers_engine_replay, AResequenceToTheCurrentSequenceTakesEffect) {
  ASSERT_EQ(e().customers({kyc(a_, 1, wire::kyc_status::pending, 7)}).results[0], result::ok);
  wire::customer_op q;
  q.wallet = a_;
  q.kind = wire::customer_op_kind::resequence;
  q.sequence = 7;
  ASSERT_EQ(e().customers({q}).results[0], result::ok);
  EXPECT_EQ(e().customers({kyc(a_, 1, wire::kyc_status::pending, 7)}).results[0], result::sequence_out_of_order);
  ASSERT_EQ(e().customers({q}).results[0], result::ok);  // the same again: no change, no event
  fx_.restart();  // the log alone
  EXPECT_EQ(e().customers({kyc(a_, 1, wire::kyc_status::pending, 7)}).results[0], result::sequence_out_of_order);
  EXPECT_EQ(e().customers({kyc(a_, 1, wire::kyc_status::verified, 8)}).results[0], result::ok);
  fx_.close();
  size_t events = 0;
  for (const auto& ev : test::all_events(fx_.dir()))
    events += ev.type == wire::event_type::customer_resequenced && ev.account_a == a_ && ev.ref.lo == 7;
  EXPECT_EQ(events, 1u);
  fx_.open();
}

TEST(customers_log, a_resequence_in_a_version_8_record_replays_refused) {
  for (const uint16_t version : {uint16_t(8), uint16_t(9)}) {
    test::temp_dir dir;
    auto wallet = test::make_account(1);
    wallet.kind = wire::account_kind::customer_wallet;
    wire::customer_op q;
    q.wallet = 1;
    q.kind = wire::customer_op_kind::resequence;
    test::write_batch_records(
        dir.path(),
        {{version, uint16_t(actors::op_kind::create_accounts), 1, test::ops_bytes(std::vector{wallet})},
         {version, uint16_t(actors::op_kind::policy_ops), 1, test::ops_bytes(std::vector{tier(1, 10, 10, 10)})},
         {version, uint16_t(actors::op_kind::customer_ops), 1, test::ops_bytes(std::vector{kyc(1, 1, wire::kyc_status::verified, 50)})},
         {version, uint16_t(actors::op_kind::customer_ops), 1, test::ops_bytes(std::vector{q})}});
    std::string err;
    auto e = engine::engine::open(test::test_config(dir.path()), &err);
    ASSERT_TRUE(e) << err;
    const auto c = e->lookup_customers({1});
    ASSERT_EQ(c.customers.size(), 1u);
    EXPECT_EQ(c.customers[0].sequence, version == 8 ? 50u : 0u) << "version " << version;
  }
}

// A policy emptied (its only model weight removed) replaces the row an earlier snapshot
// wrote. Before, an empty policy was not written, so recovery from the later snapshot
// brought the removed weight back, and a weight the live run took (6,000 with the old
// one gone) replayed as over 100% and was refused.
TEST(customers_policy, AnEmptiedPolicyIsWrittenOverTheOldOne) {
  test::engine_fixture fx(2, false);
  auto model = [](uint64_t instrument, uint32_t weight_bp) {
    return actors::customers::model_op(uint8_t(wire::risk_profile::moderate), instrument, weight_bp);
  };
  std::string err;
  ASSERT_EQ(fx.e().policies({model(7, 6000)}).results.at(0), result::ok);
  ASSERT_TRUE(fx.e().checkpoint(&err)) << err;
  ASSERT_EQ(fx.e().policies({model(7, 0)}).results.at(0), result::ok);
  ASSERT_TRUE(fx.e().checkpoint(&err)) << err;
  ASSERT_EQ(fx.e().policies({model(8, 6000)}).results.at(0), result::ok);
  fx.restart();  // the later snapshot, then the log
  const auto r = fx.e().lookup_policy();
  actors::customers::policy p;
  ASSERT_TRUE(actors::customers::policy::decode(r.policy, &p, &err)) << err;
  EXPECT_EQ(p.model(uint8_t(wire::risk_profile::moderate)), (actors::customers::model_weights{{8, 6000}}));
}

// A gateway's deposit is checked like any transfer in: into a wallet of tier 1 (a
// balance of at most 5,000) holding 4,000, a deposit of 1,001 is refused
// exceeds_balance_limit and changes nothing (the wallet's balance, the gateway's float,
// the wallet's day's outflow), and the room it did not take is still there: 1,000 under
// a new reference brings the wallet to 5,000 exactly, and one unit more is refused.
// Wallets on both shards (a on 0, c on 1); b, without a tier, takes 6,000. Breaking it:
// deposits let past the tier checks (as the engine's own transfers are) would take the
// 1,001, and the wallet would hold 5,001.
TEST_F(customers_engine, ADepositPastTheTiersBalanceLimitIsRefusedAndChangesNothing) {
  constexpr uint64_t settlement = 7001;  // the gateway's ETB settlement account (made by its registration)
  const auto reg = e().gateways({test::make_gateway_registration("telebirr", settlement)});
  ASSERT_EQ(reg.st, engine::status::ok);
  ASSERT_EQ(reg.results.at(0), result::ok);
  ASSERT_EQ(e().customers({kyc(a_, 1), kyc(c_, 1)}).results, (std::vector<result>{result::ok, result::ok}));
  const auto deposit = [](uint64_t reference, uint64_t wallet, uint64_t amount) {
    wire::deposit d{};
    d.reference = reference;
    d.wallet = wallet;
    d.amount = amount;
    d.currency = wire::currency("ETB");
    return d;
  };
  const auto balance = [&](uint64_t id) -> uint64_t {
    const auto found = e().lookup_accounts({id});
    EXPECT_EQ(found.results.at(0), result::ok) << id;
    const wire::account acct = found.accounts.at(0);
    return acct.credits_posted + acct.credits_pending - acct.debits_posted;
  };
  const auto float_held = [&]() -> uint64_t {  // what the gateway holds for us: its account's debits
    const wire::account acct = e().lookup_accounts({settlement}).accounts.at(0);
    return acct.debits_posted - acct.credits_posted;
  };
  auto r = e().deposit("telebirr", {deposit(1, a_, 4000), deposit(2, c_, 4000), deposit(3, b_, 6000)});
  ASSERT_EQ(r.st, engine::status::ok);
  ASSERT_EQ(r.results, (std::vector<result>{result::ok, result::ok, result::ok})) << "b has no tier: no limit";
  ASSERT_EQ(balance(a_), 4000u);
  ASSERT_EQ(balance(c_), 4000u);
  ASSERT_EQ(float_held(), 14'000u);
  // One past the limit each: refused, nothing moves.
  r = e().deposit("telebirr", {deposit(11, a_, 1001)});
  ASSERT_EQ(r.st, engine::status::ok);
  EXPECT_EQ(r.results.at(0), result::exceeds_balance_limit) << "a (shard 0) would hold 5,001";
  r = e().deposit("telebirr", {deposit(12, c_, 1001)});
  ASSERT_EQ(r.st, engine::status::ok);
  EXPECT_EQ(r.results.at(0), result::exceeds_balance_limit) << "c (shard 1) would hold 5,001";
  EXPECT_EQ(balance(a_), 4000u);
  EXPECT_EQ(balance(c_), 4000u);
  EXPECT_EQ(float_held(), 14'000u) << "the gateway's float moved";
  EXPECT_EQ(customer(a_).outflow_today, 0u);
  EXPECT_EQ(customer(c_).outflow_today, 0u);
  // The room the refusals did not take: up to the limit exactly, then not a unit more.
  r = e().deposit("telebirr", {deposit(21, a_, 1000), deposit(22, c_, 1000)});
  EXPECT_EQ(r.results, (std::vector<result>{result::ok, result::ok}));
  EXPECT_EQ(balance(a_), 5000u);
  EXPECT_EQ(balance(c_), 5000u);
  r = e().deposit("telebirr", {deposit(31, a_, 1), deposit(32, c_, 1)});
  EXPECT_EQ(r.results, (std::vector<result>{result::exceeds_balance_limit, result::exceeds_balance_limit}));
  EXPECT_EQ(balance(a_), 5000u);
  EXPECT_EQ(balance(c_), 5000u);
  EXPECT_EQ(float_held(), 16'000u);
  const auto check = e().check_balances();
  EXPECT_TRUE(check.balanced) << check.detail;
}
