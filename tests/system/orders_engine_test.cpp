// Orders in the engine (actors/trading.hpp): each order placed with its hold on the
// wallet's shard after the portfolio's checks, pushed to a broker, filled in parts,
// rejected, cancelled or expired, with every refusal; the money on the ledger after each
// step; restarts from the log and from snapshots.
#include <gtest/gtest.h>

#include <algorithm>

#include <chrono>
#include <mutex>
#include <thread>

#include "actors/customers.hpp"
#include "actors/market.hpp"
#include "actors/placement.hpp"
#include "actors/trading.hpp"
#include "support/engine_fixture.hpp"
#include "support/event_files.hpp"
#include "wire/protocol.hpp"

using namespace mesob;
using wire::result;

namespace {

constexpr uint64_t bank = 900;        // where wallets' money comes from (may go below zero)
constexpr uint64_t settlement = 901;  // the broker's settlement account
constexpr uint64_t etel = 1, bond = 2, quiet = 3;  // instruments
const wire::currency_code etb = wire::currency("ETB");

wire::order buy(uint64_t id, uint64_t wallet, uint64_t quantity, uint64_t limit, uint64_t instrument = etel,
                wire::order_type type = wire::order_type::market) {
  wire::order o;
  o.id = id;
  o.wallet = wallet;
  o.instrument_id = instrument;
  o.quantity = quantity;
  o.limit_ticks = limit;
  o.currency = etb;
  o.side = wire::order_side::buy;
  o.type = type;
  return o;
}

wire::order sell(uint64_t id, uint64_t wallet, uint64_t quantity, uint64_t limit, uint64_t instrument = etel) {
  auto o = buy(id, wallet, quantity, limit, instrument, wire::order_type::limit);
  o.side = wire::order_side::sell;
  return o;
}

wire::order_answer fill(uint64_t order, uint64_t fill_id, uint64_t quantity, uint64_t price) {
  wire::order_answer a;
  a.order_id = order;
  a.fill_id = fill_id;
  a.quantity = quantity;
  a.price_ticks = price;
  a.kind = wire::order_answer_kind::fill;
  return a;
}

wire::order_answer reject(uint64_t order, uint16_t reason = 7) {
  wire::order_answer a;
  a.order_id = order;
  a.kind = wire::order_answer_kind::reject;
  a.reason = reason;
  return a;
}

wire::gateway_op broker_registration(const char* id, uint32_t priority = 10) {
  auto op = test::make_gateway_registration(id, settlement + priority, priority);
  op.roles = wire::roles::broker;
  op.rail = 3;
  return op;
}

class orders_engine : public ::testing::Test {
 protected:
  explicit orders_engine(bool checkpoint_on_close = true) : fx_(2, checkpoint_on_close) {}
  engine::engine& e() { return fx_.e(); }

  void SetUp() override {
    attach();
    std::vector<uint64_t> on[2];
    for (uint64_t id = 1; on[0].size() < 2 || on[1].size() < 2; ++id) on[actors::shard_of(id, 2)].push_back(id);
    a_ = on[0][0];
    b_ = on[1][0];
    poor_ = on[0][1];
    unknown_ = on[1][1];  // a wallet without a KYC record
    auto src = test::make_account(bank);
    src.kind = wire::account_kind::system;
    std::vector<wire::account> accts{src};
    for (uint64_t w : {a_, b_, poor_, unknown_})
      accts.push_back(test::make_account(w, wire::account_flags::debits_must_not_exceed_credits));
    ASSERT_EQ(e().create_accounts(accts).results, std::vector<result>(accts.size(), result::ok));
    ASSERT_EQ(e().gateways({broker_registration("broker-a"), broker_registration("broker-b", 20)}).results,
              (std::vector<result>{result::ok, result::ok}));
    ASSERT_EQ(e().instruments({actors::market::definition(etel, "ETEL", wire::asset_class::equity, etb, 1, 10,
                                                          {2000, 60'000, 600'000, 30'000}),
                               actors::market::definition(bond, "GOV26", wire::asset_class::bond, etb, 100, 1,
                                                          {2000, 60'000, 600'000, 30'000}),
                               actors::market::definition(quiet, "QUIET", wire::asset_class::equity, etb, 1, 1,
                                                          {2000, 60'000, 600'000, 30'000})})
                  .results,
              std::vector<result>(3, result::ok));
    ASSERT_EQ(e().prices({price(etel, 100, 1), price(bond, 98, 1)}).results, std::vector<result>(2, result::ok));
    // Tier 1: large limits. Moderate investors: equities and funds, positions up to 50,000.
    wire::policy_op moderate;
    moderate.kind = wire::policy_op_kind::profile;
    moderate.number = uint8_t(wire::risk_profile::moderate);
    moderate.classes = 1u << (uint8_t(wire::asset_class::equity) - 1) | 1u << (uint8_t(wire::asset_class::fund) - 1);
    moderate.position_max = 50'000;
    ASSERT_EQ(e().policies({actors::customers::tier_op(1, etb, 1'000'000, 10'000'000, 100'000'000), moderate}).results,
              std::vector<result>(2, result::ok));
    ASSERT_EQ(e().customers({kyc(a_), kyc(b_), kyc(poor_)}).results, std::vector<result>(3, result::ok));
    ASSERT_EQ(e().create_transfers({test::make_transfer(1, bank, a_, 100'000), test::make_transfer(2, bank, b_, 100'000),
                                    test::make_transfer(3, bank, poor_, 500)})
                  .results,
              std::vector<result>(3, result::ok));
  }

  static wire::price price(uint64_t instrument, uint64_t ticks, uint64_t sequence) {
    wire::price p;
    p.instrument_id = instrument;
    p.ticks = ticks;
    p.sequence = sequence;
    return p;
  }
  static wire::customer_op kyc(uint64_t wallet, wire::kyc_status s = wire::kyc_status::verified, uint64_t sequence = 1) {
    wire::customer_op c;
    c.wallet = wallet;
    c.sequence = sequence;
    c.kyc = s;
    c.profile = wire::risk_profile::moderate;
    c.tier = 1;
    c.reference = wallet;
    return c;
  }

  void attach() {
    e().set_order_sink([this](const std::string& g, std::vector<wire::order_instruction>&& list) {
      std::lock_guard lk(mu_);
      for (const auto& in : list) sent_.push_back({g, in});
    });
  }
  void restart() {
    fx_.restart();
    attach();
  }
  uint32_t number(const char* g) { return e().gateway_registry()->find(g)->number; }
  void up(const char* g) {
    e().gateway_event({number(g), wire::gateway_event_kind::up, {}});
    sync();
  }
  void down(const char* g) {
    e().gateway_event({number(g), wire::gateway_event_kind::down, {}});
    sync();
  }
  void sync() { (void)e().lookup_accounts({bank}); }
  std::vector<std::pair<std::string, wire::order_instruction>> sent() {
    std::lock_guard lk(mu_);
    return sent_;
  }
  void clear_sent() {
    std::lock_guard lk(mu_);
    sent_.clear();
  }
  // An operator resumes trading in `instrument`: the instructions that sends, alone.
  std::vector<std::pair<std::string, wire::order_instruction>> sent_at_resume(uint64_t instrument) {
    clear_sent();
    wire::instrument_op resume;
    resume.instrument_id = instrument;
    resume.kind = wire::instrument_op_kind::resume;
    EXPECT_EQ(e().instruments({resume}).results.at(0), result::ok);
    sync();
    return sent();
  }
  wire::account account(uint64_t id) {
    auto r = e().lookup_accounts({id});
    EXPECT_EQ(r.results.at(0), result::ok);
    return r.accounts.at(0);
  }
  wire::order_state_view order(uint64_t id) {
    auto r = e().lookup_orders({id});
    EXPECT_EQ(r.results.at(0), result::ok) << "order " << id;
    return r.orders.at(0);
  }
  result place(const wire::order& o) {
    auto r = e().orders({o});
    sync();  // and the instruction it made, and any chain
    return r.results.at(0);
  }
  result answer(const char* broker, const wire::order_answer& a) {
    auto r = e().order_answers(broker, {a});
    sync();
    return r.results.at(0);
  }
  uint64_t trading(uint32_t shard) { return actors::trading::account_for(etb, shard, 2); }
  // A gateway with the payments role alone (on the brokers' rail, `priority` its
  // settlement account's offset too) and a session up; returns the update that makes it
  // a broker too.
  wire::gateway_op payments_gateway_up(const char* id, uint32_t priority) {
    auto reg = test::make_gateway_registration(id, settlement + priority, priority);
    reg.roles = wire::roles::payments;
    reg.rail = 3;
    EXPECT_EQ(e().gateways({reg}).results.at(0), result::ok);
    up(id);
    reg.kind = wire::gateway_op_kind::update;
    reg.secret_bytes = 0;
    std::memset(reg.secret, 0, sizeof reg.secret);
    reg.roles = wire::roles::payments | wire::roles::broker;
    return reg;
  }
  // The same, and an order placed while no broker is up.
  wire::gateway_op broker_role_for_a_payments_gateway_with_an_order_waiting(const char* id, uint64_t order_id) {
    const auto upd = payments_gateway_up(id, 30);
    EXPECT_EQ(place(buy(order_id, a_, 10, 100)), result::ok);
    EXPECT_TRUE(sent().empty()) << "no broker up";
    return upd;
  }
  // The same, made a broker with its session up: the order is sent to it (and not yet
  // acknowledged). Returns the update that made it a broker.
  wire::gateway_op an_order_sent_to_a_payments_gateway_made_broker(const char* id, uint64_t order_id) {
    const auto upd = broker_role_for_a_payments_gateway_with_an_order_waiting(id, order_id);
    EXPECT_EQ(e().gateways({upd}).results.at(0), result::ok);
    sync();
    EXPECT_EQ(order(order_id).broker, number(id));
    EXPECT_EQ(order(order_id).routing, uint8_t(actors::trading::route_state::sent));
    return upd;
  }
  // Order `id` placed and sent to broker-a, then broker-a disabled, its session not yet
  // closed: the order still sent there.
  void sent_to_broker_a_then_disabled(uint64_t id) {
    up("broker-a");
    ASSERT_EQ(place(buy(id, a_, 10, 100)), result::ok);
    ASSERT_EQ(order(id).routing, uint8_t(actors::trading::route_state::sent));
    wire::gateway_op off{};
    off.kind = wire::gateway_op_kind::disable;
    actors::gateways::set_op_id(off, "broker-a");
    ASSERT_EQ(e().gateways({off}).results.at(0), result::ok);
    sync();
    ASSERT_EQ(order(id).broker, number("broker-a")) << "still sent there";
  }
  // An ending order's day-long cap is of the engine's up time (rules version 35).
  void ending_order_day_skips_downtime();
  // Order `id`'s order_dead events and its answers of `kind`, from the event log (the
  // engine closed to read it, then opened again).
  std::pair<size_t, size_t> dead_letters_and_answers(uint64_t id, wire::order_answer_kind kind) {
    fx_.close();
    std::pair<size_t, size_t> n{0, 0};
    for (const auto& ev : test::all_events(fx_.dir())) {
      n.first += ev.type == wire::event_type::order_dead && ev.ref.lo == id;
      n.second += ev.type == wire::event_type::order_answer && ev.ref.lo == id && ev.code == uint16_t(kind);
    }
    fx_.open();
    return n;
  }
  // The admin audit's check (engine::check_balances).
  void expect_balanced() {
    const auto check = e().check_balances();
    EXPECT_TRUE(check.balanced) << check.detail;
  }

  test::engine_fixture fx_;
  std::mutex mu_;
  std::vector<std::pair<std::string, wire::order_instruction>> sent_;
  uint64_t a_ = 0, b_ = 0, poor_ = 0, unknown_ = 0;
};

// A look-up after a restart: the same, but an order sent and not yet acknowledged waits
// for a broker again (the restart's session reset).
::testing::AssertionResult same_after_restart(wire::order_state_view before, const wire::order_state_view& after) {
  auto fields = [](const wire::order_state_view& v) {
    return "state " + std::to_string(v.state) + " routing " + std::to_string(v.routing) + " broker " +
           std::to_string(v.broker) + " attempts " + std::to_string(v.attempts) + " filled " + std::to_string(v.filled) +
           " held " + std::to_string(v.held) + " cancelling " + std::to_string(v.cancelling);
  };
  const auto was = before;
  if (before.routing == uint8_t(actors::trading::route_state::sent) &&
      after.routing == uint8_t(actors::trading::route_state::waiting))
    before.routing = after.routing, before.broker = after.broker;
  if (std::memcmp(&before, &after, sizeof before) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "before: " << fields(was) << "; after: " << fields(after);
}

// An instruction the engine sent: to `gateway`, about `order_id`, of `kind`.
::testing::AssertionResult is_instruction(const std::pair<std::string, wire::order_instruction>& got,
                                          const std::string& gateway, uint64_t order_id,
                                          wire::order_instruction_kind kind) {
  if (got.first == gateway && got.second.order_id == order_id && got.second.kind == kind)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "sent to " << got.first << " about order " << got.second.order_id
                                       << ", kind " << unsigned(got.second.kind) << "; expected " << gateway
                                       << ", order " << order_id << ", kind " << unsigned(kind);
}

class orders_engine_replay : public orders_engine {
 protected:
  orders_engine_replay() : orders_engine(false) {}
  // A restart (replaying the log since the snapshot) leaves the order as it was.
  void expect_kept_across_restart(uint64_t order_id) {
    const auto before = order(order_id);
    restart();
    EXPECT_TRUE(same_after_restart(before, order(order_id))) << "order " << order_id;
  }
};

}  // namespace

TEST_F(orders_engine, BuyHeldRoutedFilledInPartsAndSettled) {
  up("broker-a");
  up("broker-b");
  ASSERT_EQ(place(buy(10, a_, 50, 105)), result::ok);
  // The hold: 50 x 105 x 1 on the wallet, pending to the trading account of its shard.
  auto w = account(a_);
  EXPECT_EQ(w.debits_pending, 5250u);
  EXPECT_EQ(account(trading(0)).credits_pending, 5250u);
  auto s = sent();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].first, "broker-a") << "the broker of lowest priority";
  EXPECT_EQ(s[0].second.order_id, 10u);
  EXPECT_EQ(s[0].second.kind, wire::order_instruction_kind::work);
  EXPECT_EQ(s[0].second.quantity, 50u);
  EXPECT_EQ(s[0].second.limit_ticks, 105u);
  EXPECT_EQ(order(10).broker, number("broker-a"));
  EXPECT_EQ(place(buy(10, a_, 50, 105)), result::ok) << "a retry is a repeat";
  EXPECT_EQ(place(buy(10, a_, 60, 105)), result::exists_with_different_fields);
  // The same notional (5,250) from another quantity and limit is another order.
  EXPECT_EQ(place(buy(10, a_, 70, 75)), result::exists_with_different_fields);
  EXPECT_EQ(account(a_).debits_pending, 5250u) << "held once";

  // A fill of 20 at 101: 2,020 posted, the rest held again (3,230).
  ASSERT_EQ(answer("broker-a", fill(10, 1, 20, 101)), result::ok);
  w = account(a_);
  EXPECT_EQ(w.debits_posted, 2020u);
  EXPECT_EQ(w.debits_pending, 3230u);
  auto o = order(10);
  EXPECT_EQ(o.filled, 20u);
  EXPECT_EQ(o.held, 3230u);
  EXPECT_EQ(o.paid, 2020u);
  EXPECT_EQ(o.fills, 1u);
  EXPECT_EQ(o.state, uint8_t(actors::portfolio::order_state::open));
  expect_balanced();  // the hold again on the ledger is the book's (3,230)
  // The same fill again: a repeat; the same id with other fields, another broker's
  // answer, an unknown order: refused, nothing moves.
  EXPECT_EQ(answer("broker-a", fill(10, 1, 20, 101)), result::ok);
  EXPECT_EQ(answer("broker-a", fill(10, 1, 20, 102)), result::fill_id_reused);
  EXPECT_EQ(answer("broker-b", fill(10, 2, 10, 100)), result::order_wrong_broker);
  EXPECT_EQ(answer("broker-a", fill(77, 1, 10, 100)), result::order_not_found);
  EXPECT_EQ(answer("broker-a", fill(10, 3, 40, 100)), result::fill_invalid) << "more than is open";
  EXPECT_EQ(answer("broker-a", fill(10, 3, 10, 106)), result::fill_invalid) << "past the limit";
  auto bad = fill(10, 0, 10, 100);
  EXPECT_EQ(answer("broker-a", bad), result::id_must_not_be_zero);
  bad = reject(10);
  bad.quantity = 1;
  EXPECT_EQ(answer("broker-a", bad), result::order_answer_invalid);
  EXPECT_EQ(account(a_).debits_posted, 2020u);

  // The rest at 100: filled; what the limit held beyond the cost goes back.
  ASSERT_EQ(answer("broker-a", fill(10, 2, 30, 100)), result::ok);
  w = account(a_);
  EXPECT_EQ(w.debits_posted, 5020u);
  EXPECT_EQ(w.debits_pending, 0u);
  EXPECT_EQ(account(trading(0)).credits_posted, 5020u);
  EXPECT_EQ(account(trading(0)).credits_pending, 0u);
  o = order(10);
  EXPECT_EQ(o.state, uint8_t(actors::portfolio::order_state::filled));
  EXPECT_EQ(o.paid, 5020u);
  EXPECT_EQ(answer("broker-a", fill(10, 4, 1, 100)), result::order_not_open);
  EXPECT_EQ(answer("broker-a", fill(10, 2, 30, 101)), result::order_not_open) << "not the fill it took";
  // The closing fill sent again (its answer lost): the repeat it is, while the book keeps
  // the closed order; nothing moves. Before, order_not_open, as for a fill that would
  // never settle.
  EXPECT_EQ(answer("broker-a", fill(10, 2, 30, 100)), result::ok);
  EXPECT_EQ(answer("broker-a", fill(10, 1, 20, 101)), result::ok) << "the first fill too";
  EXPECT_EQ(account(a_).debits_posted, 5020u);
  EXPECT_EQ(order(10).paid, 5020u);
  // Forgotten at the cut after it closed: then order_not_open (nothing moves either way).
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  EXPECT_EQ(answer("broker-a", fill(10, 2, 30, 100)), result::order_not_open);
  EXPECT_EQ(account(a_).debits_posted, 5020u);
  // The position: 50 units at a cost of 5,020; an unknown wallet is account_not_found.
  auto pos = e().lookup_positions({a_, 4242, b_});
  EXPECT_EQ(pos.results, (std::vector<result>{result::ok, result::account_not_found, result::ok}));
  ASSERT_EQ(pos.positions.size(), 1u);
  EXPECT_EQ(pos.positions[0].wallet, a_);
  EXPECT_EQ(pos.positions[0].instrument_id, etel);
  EXPECT_EQ(pos.positions[0].quantity, 50u);
  EXPECT_EQ(pos.positions[0].cost, 5020u);
  EXPECT_EQ(pos.positions[0].reserved, 0u);
  EXPECT_EQ(pos.positions[0].buying, 0u);
  EXPECT_EQ(e().lookup_positions(std::vector<uint64_t>(17, a_)).st, engine::status::batch_too_large);
  // The engine's own key space (trading accounts, the breakers' rows) is no client's.
  auto reserved = test::make_account(actors::trading::breakers_hi | 1);
  EXPECT_EQ(e().create_accounts({reserved}).results.at(0), result::id_reserved);
  expect_balanced();
}

TEST_F(orders_engine, SellAnnouncesLeastProceedsAndPaysThePriceImprovement) {
  up("broker-a");
  // The audit checks each portfolio's holds against the ledger: b's is one more.
  const uint64_t checked = e().check_balances().groups_checked;
  ASSERT_EQ(place(buy(10, b_, 40, 100)), result::ok);
  const auto with_b = e().check_balances();
  EXPECT_TRUE(with_b.balanced) << with_b.detail;
  EXPECT_EQ(with_b.groups_checked, checked + 1);
  ASSERT_EQ(answer("broker-a", fill(10, 1, 40, 100)), result::ok);
  EXPECT_EQ(account(b_).debits_posted, 4000u);
  EXPECT_EQ(place(sell(19, b_, 50, 110)), result::insufficient_position);
  ASSERT_EQ(place(sell(11, b_, 30, 110)), result::ok);
  EXPECT_EQ(account(b_).credits_pending, 3300u) << "the least proceeds, announced";
  EXPECT_EQ(place(sell(12, b_, 20, 110)), result::insufficient_position) << "30 of 40 are reserved";
  // 10 at 112: 1,100 posted from the announcement, 20 paid on top.
  ASSERT_EQ(answer("broker-a", fill(11, 1, 10, 112)), result::ok);
  auto w = account(b_);
  EXPECT_EQ(w.credits_posted, 100'000u + 1120u);
  EXPECT_EQ(w.credits_pending, 2200u);
  EXPECT_EQ(answer("broker-a", fill(11, 2, 10, 109)), result::fill_invalid) << "below a sell's limit";
  ASSERT_EQ(answer("broker-a", fill(11, 2, 20, 110)), result::ok);
  w = account(b_);
  EXPECT_EQ(w.credits_posted, 100'000u + 1120u + 2200u);
  EXPECT_EQ(w.credits_pending, 0u);
  EXPECT_EQ(order(11).paid, 3320u);
  const auto t = account(trading(1));
  EXPECT_EQ(t.credits_posted, 4000u);
  EXPECT_EQ(t.debits_posted, 3320u);
  EXPECT_EQ(t.debits_pending, 0u);
  expect_balanced();
}

// A sell's hold counts toward its wallet's balance limit at the highest price a fill may
// have now (the move band's top: 120 for ETEL at 100) when that is above its limit, and
// the wallet's open sells too, past their holds (rules version 53): fills' improvements
// are unchecked, so a sell limited at 1 tick passed with 40 and its fills paid the wallet
// the position's whole value, past the limit.
TEST_F(orders_engine, ASellFarBelowTheMarketCountsAtTheMarketTowardTheBalanceLimit) {
  up("broker-a");
  ASSERT_EQ(place(buy(10, b_, 40, 100)), result::ok);
  ASSERT_EQ(answer("broker-a", fill(10, 1, 40, 100)), result::ok);  // b_: 96,000 and 40 units
  ASSERT_EQ(e().policies({actors::customers::tier_op(2, etb, 1'000'000, 10'000'000, 98'400)}).results.at(0),
            result::ok);
  auto moved = kyc(b_, wire::kyc_status::verified, 2);
  moved.tier = 2;
  ASSERT_EQ(e().customers({moved}).results.at(0), result::ok);
  const auto before = account(b_);
  EXPECT_EQ(place(sell(11, b_, 40, 1)), result::exceeds_balance_limit) << "4,800 at the band's top: 100,800";
  EXPECT_EQ(place(sell(12, b_, 30, 50)), result::exceeds_balance_limit) << "3,600 at the band's top";
  const auto after = account(b_);
  EXPECT_EQ(after.credits_pending, before.credits_pending) << "refused: nothing held";
  ASSERT_EQ(place(sell(13, b_, 20, 1)), result::ok) << "2,400 at the band's top: 98,400";
  EXPECT_EQ(account(b_).credits_pending, before.credits_pending + 20) << "the hold is still its least proceeds";
  // The open sell counts at the band's top too: 2,380 past its hold.
  EXPECT_EQ(place(sell(14, b_, 10, 1)), result::exceeds_balance_limit) << "96,020, 1,200 and 2,380";
  EXPECT_EQ(place(sell(15, b_, 10, 120)), result::exceeds_balance_limit) << "at its limit, the band's top";
  // Filled at the market: the wallet holds its limit's worth, no more.
  ASSERT_EQ(answer("broker-a", fill(13, 1, 20, 100)), result::ok);
  EXPECT_EQ(account(b_).credits_posted - account(b_).debits_posted, 98'000u);
  EXPECT_EQ(place(sell(16, b_, 10, 1)), result::exceeds_balance_limit) << "nothing left under the limit";
  expect_balanced();
}

// A wallet whose cash is all paid out but that holds units may not be closed: closed,
// a sell's proceeds could never reach it and the units could never be sold. And a
// customer moved to a profile that forbids what it holds may still sell it. Before
// (rules version 10 and older), the close went through and such sells got
// risk_profile_forbids, the sells rebalancing plans among them.
TEST_F(orders_engine, AWalletHoldingUnitsStaysOpenAndAStricterProfileStillSells) {
  up("broker-a");
  ASSERT_EQ(place(buy(10, b_, 40, 100)), result::ok);
  ASSERT_EQ(answer("broker-a", fill(10, 1, 40, 100)), result::ok);
  auto cash = [&] {
    const auto w = account(b_);
    return w.credits_posted - w.debits_posted - w.debits_pending;
  };
  ASSERT_EQ(e().create_transfers({test::make_transfer(50, b_, bank, cash())}).results.at(0), result::ok);
  EXPECT_EQ(e().set_account_status({{b_, wire::account_status::closed}}).results.at(0), result::account_has_positions);
  EXPECT_EQ(account(b_).status, wire::account_status::open);
  // The moderate profile now allows bonds only: the equity it holds may be sold, not bought.
  wire::policy_op bonds_only;
  bonds_only.kind = wire::policy_op_kind::profile;
  bonds_only.number = uint8_t(wire::risk_profile::moderate);
  bonds_only.classes = 1u << (uint8_t(wire::asset_class::bond) - 1);
  bonds_only.position_max = 50'000;
  ASSERT_EQ(e().policies({bonds_only}).results.at(0), result::ok);
  ASSERT_EQ(e().create_transfers({test::make_transfer(51, bank, b_, 1000)}).results.at(0), result::ok);
  EXPECT_EQ(place(buy(11, b_, 10, 100)), result::risk_profile_forbids);
  ASSERT_EQ(place(sell(12, b_, 40, 100)), result::ok);
  EXPECT_EQ(e().set_account_status({{b_, wire::account_status::closed}}).results.at(0), result::account_has_balance)
      << "an open sell's proceeds are announced (pending)";
  ASSERT_EQ(answer("broker-a", fill(12, 1, 40, 100)), result::ok);
  ASSERT_EQ(e().create_transfers({test::make_transfer(52, b_, bank, cash())}).results.at(0), result::ok);
  EXPECT_EQ(e().set_account_status({{b_, wire::account_status::closed}}).results.at(0), result::ok)
      << "nothing held: it closes";
  expect_balanced();
}

// A bad print that halts the instrument on a move does not move the band a broker's fill
// must fall in: it stays around the last price before the halt. Before (rules 10), the
// band followed the print, so a fill at the bad price's level went through.
TEST_F(orders_engine, AFillIsBandedAroundThePriceBeforeAMoveHalt) {
  up("broker-a");
  ASSERT_EQ(place(buy(60, a_, 10, 170, etel, wire::order_type::limit)), result::ok);
  ASSERT_EQ(e().prices({price(etel, 200, 2)}).results.at(0), result::ok);  // +100%: a move halt
  EXPECT_EQ(answer("broker-a", fill(60, 1, 10, 165)), result::fill_invalid) << "within 20% of the bad print only";
  EXPECT_EQ(answer("broker-a", fill(60, 1, 10, 115)), result::ok) << "within 20% of 100";
  EXPECT_EQ(account(a_).debits_posted, 1150u);
  expect_balanced();
}

// A fill made at a price the feed printed within the move window, answered after the
// price moved on within its band, is taken (rules 37): 85 is within 20% of 100, printed
// before 118, though not of 118; 79 is within neither. Before, 85 was refused
// fill_invalid.
TEST_F(orders_engine, AFillAtAnEarlierPriceOfTheMoveWindowIsTaken) {
  up("broker-a");
  ASSERT_EQ(place(buy(62, a_, 20, 130, etel, wire::order_type::limit)), result::ok);
  ASSERT_EQ(e().prices({price(etel, 118, 2)}).results.at(0), result::ok);  // +18%: within the band
  EXPECT_EQ(answer("broker-a", fill(62, 1, 10, 79)), result::fill_invalid);
  EXPECT_EQ(answer("broker-a", fill(62, 1, 10, 85)), result::ok);
  EXPECT_EQ(account(a_).debits_posted, 850u);
  expect_balanced();
}

// A portfolio's open orders take at most 65,536 fills together (rules version 22): with
// 700 open orders of 10 lots (ETEL's lot is 10 units: 70,000 units) and 57 of 1,024
// lots, the shard counts lots (not units) and refuses the order that would pass 65,536,
// a rebalance plans within what is left, and the same holds after a restart from the
// snapshot and the log. Before, a million.
TEST_F(orders_engine, OpenOrdersTogetherTakeABoundedNumberOfFills) {
  wire::policy_op roomy;
  roomy.kind = wire::policy_op_kind::profile;
  roomy.number = uint8_t(wire::risk_profile::moderate);
  roomy.classes = 1u << (uint8_t(wire::asset_class::equity) - 1);
  roomy.position_max = 1ull << 50;
  ASSERT_EQ(e().policies({roomy}).results.at(0), result::ok);
  ASSERT_EQ(e().create_transfers({test::make_transfer(4, bank, a_, 900'000)}).results.at(0), result::ok);
  // Limit buys at 1 tick (the last price is 100): they wait, open, holding 1 a unit.
  std::vector<wire::order> small;
  for (uint64_t k = 0; k < 700; ++k) small.push_back(buy(1'000 + k, a_, 100, 1, etel, wire::order_type::limit));
  EXPECT_EQ(e().orders(small).results, std::vector<result>(700, result::ok));
  std::vector<wire::order> big;
  for (uint64_t k = 0; k < 57; ++k)
    big.push_back(buy(2'000 + k, a_, 10 * actors::portfolio::fills_max, 1, etel, wire::order_type::limit));
  EXPECT_EQ(e().orders(big).results, std::vector<result>(57, result::ok));
  // 65,368 lots open: 169 more pass the bound.
  EXPECT_EQ(place(buy(3'000, a_, 10 * 169, 1, etel, wire::order_type::limit)), result::open_lots_past_fills);
  // A rebalance plans within the 168 lots left: QUIET (lot 1, at 50), the whole model,
  // gets 168 units, not the thousands the cash would buy.
  ASSERT_EQ(e().prices({price(quiet, 50, 1)}).results.at(0), result::ok);
  ASSERT_EQ(e().policies({actors::customers::model_op(uint8_t(wire::risk_profile::moderate), quiet, 10'000)})
                .results.at(0),
            result::ok);
  const auto r = e().rebalance(a_, 5'000, 200, 100);
  ASSERT_EQ(r.placed.size(), 1u);
  EXPECT_EQ(r.results, std::vector<result>{result::ok});
  EXPECT_EQ(r.placed[0].instrument_id, quiet);
  EXPECT_EQ(r.placed[0].quantity, 168u);
  EXPECT_EQ(place(buy(3'002, a_, 10, 1, etel, wire::order_type::limit)), result::open_lots_past_fills);
  EXPECT_EQ(place(buy(4'000, b_, 10, 1, etel, wire::order_type::limit)), result::ok) << "another wallet's own";
  restart();
  EXPECT_EQ(place(buy(3'003, a_, 10, 1, etel, wire::order_type::limit)), result::open_lots_past_fills);
  EXPECT_EQ(order(5'000).state, uint8_t(actors::portfolio::order_state::open));
}

TEST_F(orders_engine, EveryRefusalChangesNothing) {
  up("broker-a");
  ASSERT_EQ(e().customers({kyc(unknown_, wire::kyc_status::pending)}).results.at(0), result::ok);
  auto wrong_currency = buy(20, a_, 10, 100);
  wrong_currency.currency = wire::currency("USD");
  auto stray = buy(20, a_, 10, 100);
  stray.reserved2 = 1;
  auto no_side = buy(20, a_, 10, 100);
  no_side.side = wire::order_side(0);
  ASSERT_EQ(e().instruments({[] {
              wire::instrument_op h;
              h.instrument_id = etel;
              h.kind = wire::instrument_op_kind::halt;
              return h;
            }()}).results.at(0),
            result::ok);
  wrong_currency.id = 206;
  stray.id = 202;
  no_side.id = 201;
  auto r = e().orders({buy(0, a_, 10, 100), no_side, stray, buy(203, a_, 0, 100), buy(204, a_, 10, 0),
                       buy(205, a_, 10, 100, 99), wrong_currency, buy(207, a_, 15, 100), buy(208, unknown_, 10, 100),
                       buy(209, 777, 10, 100), buy(210, a_, 1, 100, bond), buy(211, a_, 10, 100),
                       buy(212, a_, 10, 100, quiet), buy(213, poor_, 10, 100, quiet)});
  EXPECT_EQ(r.results,
            (std::vector<result>{result::id_must_not_be_zero, result::order_invalid, result::reserved_field,
                                 result::amount_must_not_be_zero, result::price_invalid, result::instrument_not_found,
                                 result::wrong_currency, result::lot_size_invalid, result::kyc_not_verified,
                                 result::debit_account_not_found, result::risk_profile_forbids, result::instrument_halted,
                                 result::price_stale, result::price_stale}));
  ASSERT_EQ(e().instruments({[] {
              wire::instrument_op h;
              h.instrument_id = etel;
              h.kind = wire::instrument_op_kind::resume;
              return h;
            }()}).results.at(0),
            result::ok);
  ASSERT_EQ(e().prices({price(quiet, 10, 1)}).results.at(0), result::ok);
  r = e().orders({buy(21, a_, 10, 99), buy(22, a_, 600, 100), buy(23, poor_, 10, 100), buy(24, poor_, 50, 10, quiet),
                  sell(25, a_, 10, 100)});
  EXPECT_EQ(r.results, (std::vector<result>{result::price_limit_exceeded, result::exceeds_position_limit,
                                            result::insufficient_cash, result::ok, result::insufficient_position}));
  EXPECT_EQ(account(poor_).debits_pending, 500u) << "only the order that passed holds";
  EXPECT_EQ(account(a_).debits_pending, 0u);
  // A refused order's id is taken (a retry gets the first outcome), like a transfer's.
  EXPECT_EQ(e().orders({buy(23, poor_, 10, 100)}).results.at(0), result::insufficient_cash);
  // A frozen wallet is the ledger's to name (before, the portfolio read its cash first and
  // said insufficient_cash).
  ASSERT_EQ(e().set_account_status({{poor_, wire::account_status::frozen, 0, 0}}).results.at(0), result::ok);
  EXPECT_EQ(e().orders({buy(26, poor_, 10, 100)}).results.at(0), result::debit_account_frozen);
  // Before its KYC tier's limits too (rules version 15; before, this hold of 2,000,000,
  // past tier 1's single_max, got exceeds_transfer_limit).
  EXPECT_EQ(e().orders({buy(27, poor_, 1000, 2000)}).results.at(0), result::debit_account_frozen);
  ASSERT_EQ(e().set_account_status({{poor_, wire::account_status::open, 0, 0}}).results.at(0), result::ok);
  // Clients may not touch the trading space.
  auto t = test::make_transfer(30, a_, trading(0), 10);
  auto hold_like = test::make_transfer(31, a_, bank, 10);
  hold_like.id = actors::trading::hold_id(99, 0);
  auto post_hold = test::make_transfer(32, 0, 0, 0, wire::transfer_flags::post_pending);
  post_hold.pending_id = actors::trading::hold_id(24, 0);
  r = e().create_transfers({t, hold_like, post_hold});
  EXPECT_EQ(r.results, (std::vector<result>{result::trading_account_reserved, result::id_reserved, result::id_reserved}));
  EXPECT_EQ(e().set_account_status({{trading(0), wire::account_status::frozen, 0, 0}}).results.at(0),
            result::trading_account_reserved);
  EXPECT_EQ(e().lookup_orders({21}).results.at(0), result::order_not_found);
  EXPECT_EQ(e().cancel_orders({{24, b_}}).results.at(0), result::order_not_found) << "not that wallet's";
}

// An order's hold is a pending transfer: one on a shard holding its share of pending_max
// is refused pending_full (engine/README.md "Capacity"), after the portfolio's verdict
// and never in place of the ledger's word on the wallet (frozen, missing). The other
// shard goes on.
TEST_F(orders_engine, HoldsPastAShardsPendingShareAreRefused) {
  fx_.set_capacity(0, 0, 2);  // 1 a shard
  restart();
  up("broker-a");
  uint64_t missing = 1000;  // no such account, on a_'s shard
  while (actors::shard_of(missing, 2) != actors::shard_of(a_, 2)) ++missing;
  EXPECT_EQ(place(buy(40, a_, 10, 100)), result::ok);
  EXPECT_EQ(place(buy(41, a_, 10, 100)), result::pending_full);
  EXPECT_EQ(place(buy(42, poor_, 10, 100)), result::insufficient_cash);  // the portfolio's first
  EXPECT_EQ(place(buy(43, missing, 10, 100)), result::debit_account_not_found);
  ASSERT_EQ(e().set_account_status({{poor_, wire::account_status::frozen, 0, 0}}).results.at(0), result::ok);
  EXPECT_EQ(place(buy(44, poor_, 10, 100)), result::debit_account_frozen);
  EXPECT_EQ(e().create_transfers({test::make_transfer(45, b_, a_, 10, wire::transfer_flags::pending)}).results.at(0),
            result::pending_full);  // a_'s shard full, on the credit side
  EXPECT_EQ(place(buy(46, b_, 10, 100)), result::ok);  // the other shard
  EXPECT_EQ(account(a_).debits_pending, 1000u) << "order 40's hold alone";
  EXPECT_EQ(e().lookup_orders({41}).results.at(0), result::order_not_found);
  expect_balanced();
}

// Orders that close early leave their timers (an expiry up to a year out, an answer
// deadline) in the heap; past twice what the open orders needed it is rebuilt from
// them. Before, they stayed until due: placing and closing orders at a steady rate grew
// the heap for a year. An order open throughout keeps its timers: its answer deadline,
// its expiry and its grace still fire after the rebuild.
TEST_F(orders_engine, TimersOfClosedOrdersDoNotPileUp) {
  up("broker-a");
  // Another wallet of the same shard as the orders that come and go, so that their stale
  // timers never make the table look at it.
  ASSERT_EQ(actors::shard_of(poor_, 2), actors::shard_of(a_, 2));
  ASSERT_EQ(e().prices({price(quiet, 10, 1)}).results.at(0), result::ok);
  auto kept = buy(999, poor_, 5, 10, quiet);
  kept.expires_s = 600;
  ASSERT_EQ(place(kept), result::ok);  // sent to broker-a, never answered
  auto timers = [&] {
    uint64_t n = 0;
    for (const auto& r : e().shard_reports()) n += r.order_timers;
    return n;
  };
  uint64_t id = 1000, most = 0;
  for (int round = 0; round < 100; ++round) {
    std::vector<wire::order> placed;
    std::vector<wire::order_answer> rejects;
    for (int i = 0; i < 40; ++i, ++id) {  // 400 units at 100: within the profile's 50,000
      auto o = buy(id, a_, 10, 100);
      o.expires_s = actors::portfolio::expires_s_max;
      placed.push_back(o);
      rejects.push_back(reject(id));
    }
    const auto r = e().orders(placed).results;
    for (size_t i = 0; i < r.size(); ++i) ASSERT_EQ(r[i], result::ok) << "round " << round << " order " << i;
    ASSERT_EQ(e().order_answers("broker-a", rejects).results, std::vector<result>(rejects.size(), result::ok));
    sync();  // the holds' releases (chains the rejects emitted)
    most = std::max(most, timers());
  }
  sync();
  EXPECT_GE(most, 3000u) << "the timers of closed orders piled up to near the threshold";
  EXPECT_LT(timers(), 4096u) << "4,000 orders closed: their timers went";
  EXPECT_EQ(account(a_).debits_pending, 0u);
  EXPECT_EQ(account(poor_).debits_pending, 50u) << "the kept order's hold";
  auto timeouts = [&] {
    uint64_t n = 0;
    for (const auto& r : e().shard_reports()) n += r.order_timeouts;
    return n;
  };
  auto wait_for = [&](auto&& done) {
    for (int i = 0; i < 400 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return done();
  };
  fx_.advance_s(6);  // past broker-a's answer deadline (5 s)
  EXPECT_TRUE(wait_for([&] { return timeouts() >= 1; })) << "the kept order's answer deadline was lost";
  fx_.advance_s(600);
  EXPECT_TRUE(wait_for([&] { return order(999).cancelling == uint8_t(actors::portfolio::order_state::expired); }))
      << "its expiry was lost";
  fx_.advance_s(actors::trading::cancel_grace_ns / 1'000'000'000 + 1);
  EXPECT_TRUE(wait_for([&] { return order(999).state == uint8_t(actors::portfolio::order_state::expired); }))
      << "its grace was lost";
  sync();
  EXPECT_EQ(account(poor_).debits_pending, 0u);
  ASSERT_EQ(e().prices({price(etel, 100, 2)}).results.at(0), result::ok);  // fresh after the 10 minutes
  EXPECT_EQ(e().orders({buy(id, a_, 10, 100)}).results.at(0), result::ok) << "and orders go on";
  expect_balanced();
}

TEST_F(orders_engine, RejectCancelAndExpiryReleaseTheHold) {
  up("broker-a");
  auto expiring = buy(42, a_, 10, 100);
  expiring.expires_s = 60;
  ASSERT_EQ(e().orders({buy(40, a_, 10, 100), buy(41, a_, 30, 100), expiring}).results, std::vector<result>(3, result::ok));
  sync();
  EXPECT_EQ(account(a_).debits_pending, 5000u);
  clear_sent();
  ASSERT_EQ(answer("broker-a", reject(40, 13)), result::ok);
  EXPECT_EQ(order(40).state, uint8_t(actors::portfolio::order_state::rejected));
  EXPECT_EQ(order(40).reason, 13);
  EXPECT_EQ(answer("broker-a", reject(40, 13)), result::order_not_open) << "closed: a reject again changes nothing";
  EXPECT_EQ(answer("broker-a", fill(40, 1, 10, 100)), result::order_not_open);
  EXPECT_EQ(account(a_).debits_pending, 4000u);
  // A cancel: the broker is told; the order keeps its hold and takes the fill the broker
  // made before it heard, then closes when the broker confirms (a reject).
  ASSERT_EQ(answer("broker-a", fill(41, 1, 10, 100)), result::ok);
  ASSERT_EQ(e().cancel_orders({{41, a_}}).results.at(0), result::ok);
  sync();
  EXPECT_EQ(e().cancel_orders({{41, a_}}).results.at(0), result::ok) << "asked already";
  EXPECT_EQ(e().cancel_orders({{41, b_}}).results.at(0), result::order_not_found) << "not b's order";
  EXPECT_EQ(order(41).state, uint8_t(actors::portfolio::order_state::open));
  EXPECT_EQ(order(41).cancelling, uint8_t(actors::portfolio::order_state::cancelled));
  auto s = sent();
  ASSERT_FALSE(s.empty());
  EXPECT_EQ(s.back().second.kind, wire::order_instruction_kind::cancel);
  EXPECT_EQ(s.back().second.order_id, 41u);
  EXPECT_EQ(s.back().second.quantity, 20u) << "what was still open";
  ASSERT_EQ(answer("broker-a", fill(41, 2, 4, 100)), result::lot_size_invalid) << "whole lots (10)";
  ASSERT_EQ(answer("broker-a", fill(41, 2, 10, 150)), result::fill_invalid) << "past the limit";
  ASSERT_EQ(answer("broker-a", fill(41, 2, 10, 50)), result::fill_invalid) << "past the move band (20%)";
  ASSERT_EQ(answer("broker-a", fill(41, 2, 10, 100)), result::ok) << "made before the broker heard";
  ASSERT_EQ(answer("broker-a", reject(41, 3)), result::ok) << "the broker confirms";
  EXPECT_EQ(order(41).state, uint8_t(actors::portfolio::order_state::cancelled));
  EXPECT_EQ(order(41).filled, 20u);
  // Cancelled: a cancel again is its repeat while the book keeps the order (before,
  // order_not_open, as if the order had closed some other way).
  EXPECT_EQ(e().cancel_orders({{41, a_}}).results.at(0), result::ok);
  EXPECT_EQ(account(a_).debits_pending, 1000u);
  EXPECT_EQ(account(a_).debits_posted, 2000u);
  // The expiry, on the engine clock (the sequencer ticks for it): the broker is told;
  // it never confirms, so the order closes after the grace.
  EXPECT_EQ(order(42).cancelling, 0);
  fx_.advance_s(61);
  auto wait_state = [&](uint64_t id, uint8_t cancelling, uint8_t state) {
    for (int i = 0; i < 400; ++i) {
      const auto o = order(id);
      if (o.cancelling == cancelling && o.state == state) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  };
  ASSERT_TRUE(wait_state(42, uint8_t(actors::portfolio::order_state::expired), uint8_t(actors::portfolio::order_state::open)));
  EXPECT_EQ(account(a_).debits_pending, 1000u) << "held until the broker confirms or the grace passes";
  fx_.advance_s(actors::trading::cancel_grace_ns / 1'000'000'000 + 1);
  ASSERT_TRUE(wait_state(42, 0, uint8_t(actors::portfolio::order_state::expired)));
  sync();
  EXPECT_EQ(account(a_).debits_pending, 0u);
  EXPECT_EQ(answer("broker-a", fill(42, 1, 10, 100)), result::order_not_open);
  expect_balanced();
}

TEST_F(orders_engine, OrdersWaitForABrokerAndFollowItsSessions) {
  ASSERT_EQ(place(buy(50, a_, 10, 100)), result::ok);
  EXPECT_TRUE(sent().empty()) << "no broker up";
  EXPECT_EQ(order(50).broker, 0u);
  EXPECT_EQ(answer("broker-a", fill(50, 1, 10, 100)), result::order_wrong_broker);
  up("broker-b");
  auto s = sent();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].first, "broker-b");
  EXPECT_EQ(order(50).broker, number("broker-b"));
  // Another session of it: pushed again; broker-a coming up changes nothing for it.
  clear_sent();
  up("broker-b");
  up("broker-a");
  s = sent();
  ASSERT_EQ(s.size(), 1u) << "broker-a's session has no orders of its own";
  EXPECT_EQ(s[0].first, "broker-b");
  EXPECT_EQ(answer("broker-b", fill(50, 1, 10, 100)), result::ok);
}

// A gateway given the broker role while a session of it is up (counted for its payments
// role) takes the orders waiting for a broker at that registry change (rules version
// 19): no session event says it. Before, they waited for its next session. The log
// replays it so.
TEST_F(orders_engine_replay, ABrokerRoleGivenToAnOpenSessionTakesTheWaitingOrders) {
  const auto upd = broker_role_for_a_payments_gateway_with_an_order_waiting("bank-broker", 70);
  ASSERT_EQ(e().gateways({upd}).results.at(0), result::ok);
  sync();
  const auto s = sent();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_TRUE(is_instruction(s[0], "bank-broker", 70, wire::order_instruction_kind::work));
  EXPECT_EQ(order(70).broker, number("bank-broker"));
  expect_kept_across_restart(70);
}

// The broker role taken from a gateway whose sessions stay up (counted for its payments
// role) makes the orders sent to it and not acknowledged dead letters
// (broker_withdrawn) at that registry change (rules version 54), as a disable does: it
// may have them and trade them, and can no longer report it. The server refuses its
// sessions' answers once it sees the change. An operator's retry is refused
// order_may_be_traded unless forced; forced, the order goes to the next broker, and the
// gateway it left is told to stop. Before (rules version 20), the order went to the next
// broker at once, and both could trade it. The log replays it so.
TEST_F(orders_engine_replay, ABrokerRoleTakenFromAnOpenSessionLeavesItsUnacknowledgedOrdersDeadLetters) {
  auto upd = an_order_sent_to_a_payments_gateway_made_broker("bank-broker", 70);
  clear_sent();
  upd.roles = wire::roles::payments;
  ASSERT_EQ(e().gateways({upd}).results.at(0), result::ok);
  sync();
  EXPECT_EQ(order(70).routing, uint8_t(actors::trading::route_state::dead));
  EXPECT_EQ(order(70).dead_reason, uint8_t(actors::trading::dead_reason::withdrawn));
  up("broker-a");
  EXPECT_TRUE(sent().empty()) << "a dead letter goes nowhere by itself";
  expect_kept_across_restart(70);
  EXPECT_EQ(e().retry_orders({{70, a_}}).results.at(0), result::order_may_be_traded);
  EXPECT_EQ(order(70).routing, uint8_t(actors::trading::route_state::dead));
  up("broker-a");
  clear_sent();
  ASSERT_EQ(e().retry_orders({{70, a_}}, true).results.at(0), result::ok);
  sync();
  const auto s = sent();
  // The order to broker-a, and word to the gateway it left to stop (it may have it).
  ASSERT_EQ(s.size(), 2u);
  EXPECT_TRUE(is_instruction(s[0], "broker-a", 70, wire::order_instruction_kind::work));
  EXPECT_TRUE(is_instruction(s[1], "bank-broker", 70, wire::order_instruction_kind::cancel));
  EXPECT_EQ(order(70).broker, number("broker-a"));
}

// One batch of changes taking the broker role from one gateway and giving it to another
// with a session up: the order the first had is a dead letter (the first may have it);
// an operator's forced retry sends it to the second, once.
TEST_F(orders_engine, ABrokerRoleMovedInOneBatchLeavesTheOrderToAnOperator) {
  auto upd = an_order_sent_to_a_payments_gateway_made_broker("bank-broker", 70);
  const auto two = payments_gateway_up("bank-two", 40);
  clear_sent();
  upd.roles = wire::roles::payments;
  ASSERT_EQ(e().gateways({upd, two}).results, (std::vector<result>{result::ok, result::ok}));
  sync();
  EXPECT_TRUE(sent().empty());
  EXPECT_EQ(order(70).routing, uint8_t(actors::trading::route_state::dead));
  EXPECT_EQ(order(70).dead_reason, uint8_t(actors::trading::dead_reason::withdrawn));
  ASSERT_EQ(e().retry_orders({{70, a_}}, true).results.at(0), result::ok);
  sync();
  const auto s = sent();
  size_t work = 0;
  bool stop = false;
  for (const auto& [g, in] : s) {
    if (g == "bank-two" && in.order_id == 70 && in.kind == wire::order_instruction_kind::work) ++work;
    stop |= g == "bank-broker" && in.order_id == 70 && in.kind == wire::order_instruction_kind::cancel;
  }
  EXPECT_EQ(work, 1u) << s.size() << " instructions";
  EXPECT_TRUE(stop) << "the gateway it left is told to stop";
  EXPECT_EQ(order(70).broker, number("bank-two"));
}

// The same change made with a disable and an enable in one batch: the sessions counted
// are the server's to close (they were cut off), so the orders wait for the next
// session, which routes them.
TEST_F(orders_engine, ABrokerRoleGivenAlongADisableWaitsForTheNextSession) {
  const auto upd = broker_role_for_a_payments_gateway_with_an_order_waiting("bank-broker", 70);
  wire::gateway_op off{};
  off.kind = wire::gateway_op_kind::disable;
  actors::gateways::set_op_id(off, "bank-broker");
  auto on = off;
  on.kind = wire::gateway_op_kind::enable;
  ASSERT_EQ(e().gateways({off, upd, on}).results, (std::vector<result>{result::ok, result::ok, result::ok}));
  sync();
  EXPECT_TRUE(sent().empty());
  EXPECT_EQ(order(70).broker, 0u);
  up("bank-broker");  // a new session
  const auto s = sent();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].second.order_id, 70u);
  EXPECT_EQ(order(70).broker, number("bank-broker"));
}

// The same change made with a secret rotation in one batch (rules version 33): the
// sessions counted were opened with the old secret, perhaps a leaked one, and the server
// closes them; the orders wait for a session of the new secret. Before, the order was
// sent to a session of the old. The log replays it so.
TEST_F(orders_engine_replay, ABrokerRoleGivenAlongASecretRotationWaitsForTheNextSession) {
  const auto upd = broker_role_for_a_payments_gateway_with_an_order_waiting("bank-broker", 70);
  wire::gateway_op rot{};
  rot.kind = wire::gateway_op_kind::rotate_secret;
  actors::gateways::set_op_id(rot, "bank-broker");
  rot.secret_bytes = 32;
  std::memset(rot.secret, 0x5a, rot.secret_bytes);
  ASSERT_EQ(e().gateways({rot, upd}).results, (std::vector<result>{result::ok, result::ok}));
  sync();
  EXPECT_TRUE(sent().empty());
  EXPECT_EQ(order(70).broker, 0u);
  expect_kept_across_restart(70);
}

// A gateway that stops being an enabled broker (here the role taken; or disabled) makes
// the orders working there dead letters (rules version 21): it can no longer report their
// fills, and a working order never moves by itself (it may have traded). Its answers are
// still taken: given the role back, its fill settles the order. Before, the order stayed
// working there, its hold kept, until it expired or was cancelled. The log replays it so.
TEST_F(orders_engine_replay, ABrokerWithdrawnLeavesItsWorkingOrdersDeadLetters) {
  auto upd = an_order_sent_to_a_payments_gateway_made_broker("bank-broker", 70);
  wire::order_answer took{};
  took.order_id = 70;
  took.kind = wire::order_answer_kind::accepted;
  ASSERT_EQ(answer("bank-broker", took), result::ok);
  ASSERT_EQ(order(70).routing, uint8_t(actors::trading::route_state::working));
  const uint64_t held = account(a_).debits_pending;
  clear_sent();
  upd.roles = wire::roles::payments;
  ASSERT_EQ(e().gateways({upd}).results.at(0), result::ok);
  sync();
  EXPECT_EQ(order(70).routing, uint8_t(actors::trading::route_state::dead));
  EXPECT_EQ(order(70).dead_reason, uint8_t(actors::trading::dead_reason::withdrawn));
  EXPECT_EQ(account(a_).debits_pending, held) << "its hold kept";
  EXPECT_TRUE(sent().empty()) << "sent nowhere by itself";
  expect_kept_across_restart(70);
  // An answer of its sequenced after the change (sent before its session saw it) does not
  // take the order back to work there.
  ASSERT_EQ(answer("bank-broker", took), result::ok);
  EXPECT_EQ(order(70).routing, uint8_t(actors::trading::route_state::dead));
  upd.roles = wire::roles::payments | wire::roles::broker;
  ASSERT_EQ(e().gateways({upd}).results.at(0), result::ok);
  ASSERT_EQ(answer("bank-broker", fill(70, 1, 10, 100)), result::ok) << "the broker that had it reports its fill";
  EXPECT_EQ(order(70).state, uint8_t(actors::portfolio::order_state::filled));
  expect_balanced();
}

// A disable does the same; a disable and an enable in one batch (cutting off the sessions
// it had) leaves the broker enabled, and its orders working.
TEST_F(orders_engine, ADisabledBrokerLeavesItsWorkingOrdersDeadLetters) {
  up("broker-a");
  wire::order_answer took{};
  took.kind = wire::order_answer_kind::accepted;
  for (const uint64_t id : {80, 81}) {
    ASSERT_EQ(place(buy(id, a_, 10, 100)), result::ok);
    took.order_id = id;
    ASSERT_EQ(answer("broker-a", took), result::ok);
  }
  ASSERT_EQ(place(buy(82, a_, 10, 100)), result::ok);  // sent, not acknowledged
  wire::gateway_op off{};
  off.kind = wire::gateway_op_kind::disable;
  actors::gateways::set_op_id(off, "broker-a");
  auto on = off;
  on.kind = wire::gateway_op_kind::enable;
  ASSERT_EQ(e().gateways({off, on}).results, (std::vector<result>{result::ok, result::ok}));
  sync();
  EXPECT_EQ(order(80).routing, uint8_t(actors::trading::route_state::working)) << "enabled as the batch left it";
  ASSERT_EQ(e().gateways({off}).results.at(0), result::ok);
  sync();
  for (const uint64_t id : {80, 81}) {
    EXPECT_EQ(order(id).routing, uint8_t(actors::trading::route_state::dead)) << id;
    EXPECT_EQ(order(id).dead_reason, uint8_t(actors::trading::dead_reason::withdrawn)) << id;
  }
  EXPECT_EQ(order(82).routing, uint8_t(actors::trading::route_state::sent)) << "its answer deadline decides";
  EXPECT_EQ(order(82).dead_reason, 0);
}

TEST_F(orders_engine, AFillSettlesOnAFrozenWallet) {
  up("broker-a");
  ASSERT_EQ(place(buy(60, a_, 20, 100)), result::ok);
  ASSERT_EQ(e().set_account_status({{a_, wire::account_status::frozen, 0, 0}}).results.at(0), result::ok);
  EXPECT_EQ(place(buy(61, a_, 10, 100)), result::debit_account_frozen) << "no new order";
  ASSERT_EQ(answer("broker-a", fill(60, 1, 10, 100)), result::ok);
  auto w = account(a_);
  EXPECT_EQ(w.debits_posted, 1000u) << "the trade the broker made settles";
  EXPECT_EQ(w.debits_pending, 1000u);
  EXPECT_EQ(order(60).settle_refused, 0);
}

namespace {
// Orders and accounts as looked up, before and after a restart.
struct seen {
  std::vector<wire::order_state_view> orders;
  std::vector<wire::account> accounts;
};
seen seen_now(engine::engine& e, std::vector<uint64_t> orders, std::vector<uint64_t> accounts) {
  seen s;
  s.orders = e.lookup_orders(std::move(orders)).orders;
  s.accounts = e.lookup_accounts(std::move(accounts)).accounts;
  return s;
}
void expect_same_after_restart(const seen& before, const seen& after) {
  ASSERT_EQ(before.orders.size(), after.orders.size());
  ASSERT_EQ(before.accounts.size(), after.accounts.size());
  for (size_t i = 0; i < before.orders.size(); ++i)
    EXPECT_TRUE(same_after_restart(before.orders[i], after.orders[i])) << "order " << i;
  for (size_t i = 0; i < before.accounts.size(); ++i)
    EXPECT_EQ(std::memcmp(&before.accounts[i], &after.accounts[i], sizeof before.accounts[i]), 0) << "account " << i;
}
}  // namespace

// Restarted from the log, the engine shows the same orders and money and goes on: the
// broker gets the open orders again, fills and expiries follow.
TEST_F(orders_engine_replay, RestartFromTheLogKeepsOrdersAndMoney) {
  up("broker-a");
  auto expiring = buy(72, a_, 10, 100);
  expiring.expires_s = 30;
  ASSERT_EQ(e().orders({buy(70, a_, 30, 105), buy(71, b_, 20, 100), expiring}).results, std::vector<result>(3, result::ok));
  sync();
  ASSERT_EQ(answer("broker-a", fill(70, 1, 10, 101)), result::ok);
  ASSERT_EQ(answer("broker-a", fill(71, 1, 20, 99)), result::ok);
  ASSERT_EQ(place(sell(73, b_, 10, 120)), result::ok);
  const auto before = seen_now(e(), {70, 71, 72, 73}, {a_, b_, trading(0), trading(1)});
  restart();
  expect_same_after_restart(before, seen_now(e(), {70, 71, 72, 73}, {a_, b_, trading(0), trading(1)}));
  // After a start no broker is up: they wait; the broker coming back gets them again.
  clear_sent();
  up("broker-a");
  auto s = sent();
  EXPECT_EQ(s.size(), 3u) << "orders 70, 72 and 73 are open";
  ASSERT_EQ(answer("broker-a", fill(70, 2, 20, 100)), result::ok);
  EXPECT_EQ(account(a_).debits_posted, 1010u + 2000u);
  // Its expiry: the broker is told (and would confirm); here it confirms.
  fx_.advance_s(31);
  bool ending = false;
  for (int i = 0; i < 400 && !ending; ++i) {
    ending = order(72).cancelling == uint8_t(actors::portfolio::order_state::expired);
    if (!ending) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(ending);
  ASSERT_EQ(answer("broker-a", reject(72, 3)), result::ok);
  restart();
  EXPECT_EQ(order(72).state, uint8_t(actors::portfolio::order_state::expired));
  EXPECT_EQ(order(70).state, uint8_t(actors::portfolio::order_state::filled));
  sync();
  EXPECT_EQ(account(a_).debits_pending, 0u);
  expect_balanced();
}

// An order's hold has no timeout: a snapshot whose portfolio row is lost (its checksum
// covers the row alone, not its presence) held the wallet's money for good, and a
// retry of the order was a repeat of its hold. A start checks every portfolio's open
// orders against its holds in the ledger, as it checks the payout desks, and refuses.
TEST_F(orders_engine, AStartRefusesAPortfolioThatDisagreesWithItsHolds) {
  up("broker-a");
  ASSERT_EQ(e().orders({buy(90, a_, 30, 105)}).results.at(0), result::ok);
  sync();
  const uint64_t held = account(a_).debits_pending;
  ASSERT_GT(held, 0u);
  fx_.close();  // with a snapshot
  {
    std::string err;
    auto s = storage::snapshot_store::open(fx_.dir() + "/snapshot", 1ull << 30, &err);
    ASSERT_TRUE(s) << err;
    auto w = s->begin(&err);
    ASSERT_TRUE(w) << err;
    ASSERT_TRUE(w->erase(storage::table::portfolios, a_)) << w->error();
    ASSERT_TRUE(w->commit_without_meta()) << w->error();
  }
  std::string err;
  EXPECT_FALSE(engine::engine::open(fx_.config(), &err));
  EXPECT_NE(err.find("snapshot: orders: portfolio " + std::to_string(a_) + ": its 0 open orders hold 0 for buys and 0 for "
                     "sells, but the ledger holds " + std::to_string(held) + " and 0 pending"),
            std::string::npos)
      << err;
}

TEST_F(orders_engine, RestartFromASnapshotKeepsOrdersAndMoney) {
  up("broker-a");
  ASSERT_EQ(e().orders({buy(80, a_, 30, 105), buy(81, b_, 20, 100)}).results, std::vector<result>(2, result::ok));
  sync();
  ASSERT_EQ(answer("broker-a", fill(80, 1, 10, 101)), result::ok);
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  ASSERT_EQ(answer("broker-a", fill(81, 1, 10, 99)), result::ok);
  const auto before = seen_now(e(), {80, 81}, {a_, b_});
  restart();
  EXPECT_EQ(e().recovery().portfolios_loaded, 2u);
  expect_same_after_restart(before, seen_now(e(), {80, 81}, {a_, b_}));
  up("broker-a");
  ASSERT_EQ(answer("broker-a", fill(80, 2, 20, 105)), result::ok);
  ASSERT_EQ(answer("broker-a", fill(81, 2, 10, 100)), result::ok);
  EXPECT_EQ(account(a_).debits_pending, 0u);
  EXPECT_EQ(account(b_).debits_pending, 0u);
  EXPECT_EQ(account(b_).debits_posted, 990u + 1000u);
  // A snapshot holds the closed orders; then the portfolios let them go: a look-up no
  // longer finds them, a broker's answer again changes nothing.
  EXPECT_EQ(order(80).state, uint8_t(actors::portfolio::order_state::filled));
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  EXPECT_EQ(e().lookup_orders({80}).results.at(0), result::order_not_found);
  EXPECT_EQ(answer("broker-a", fill(80, 2, 20, 105)), result::order_not_open);
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  restart();
  EXPECT_EQ(e().recovery().portfolios_loaded, 2u) << "their positions stay";
  EXPECT_EQ(e().lookup_orders({80, 81}).results, std::vector<result>(2, result::order_not_found));
  EXPECT_EQ(account(a_).debits_posted, 1010u + 2100u);
  expect_balanced();
}

// Orders logged past the snapshot are not replayed under another shard count (their
// routing's timers and breakers are decided per shard): that start is refused; a start
// with the count that wrote them snapshots when it stops, and the next takes the new count
// with every order, hold and balance as they were.
TEST_F(orders_engine_replay, AnotherShardCountTakesTheOrdersFromASnapshotAtTheTip) {
  up("broker-a");
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  ASSERT_EQ(e().orders({buy(90, a_, 30, 105), buy(91, b_, 20, 100)}).results, std::vector<result>(2, result::ok));
  sync();
  ASSERT_EQ(answer("broker-a", fill(90, 1, 10, 101)), result::ok);
  const auto before = seen_now(e(), {90, 91}, {a_, b_});
  fx_.close();
  auto cfg = fx_.config();
  cfg.shards = 3;
  ASSERT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("start once with --shards 2"), std::string::npos) << err;
  cfg.shards = 2;
  cfg.checkpoint_on_close = true;
  ASSERT_TRUE(engine::engine::open(cfg, &err)) << err;  // replays, snapshots at close
  fx_.set_shards(3);
  fx_.open();
  attach();
  ASSERT_EQ(e().shards(), 3u);
  expect_same_after_restart(before, seen_now(e(), {90, 91}, {a_, b_}));
  up("broker-a");
  ASSERT_EQ(answer("broker-a", fill(90, 2, 20, 100)), result::ok);
  ASSERT_EQ(answer("broker-a", fill(91, 1, 20, 100)), result::ok);
  ASSERT_EQ(place(buy(92, a_, 10, 100)), result::ok);
  // Retries of orders placed under two shards: repeats, though three shards would put
  // their holds on other trading accounts.
  EXPECT_EQ(place(buy(90, a_, 30, 105)), result::ok);
  EXPECT_EQ(place(buy(91, b_, 20, 100)), result::ok);
  EXPECT_EQ(place(buy(91, b_, 40, 50)), result::exists_with_different_fields);
  ASSERT_EQ(answer("broker-a", fill(92, 1, 10, 100)), result::ok);
  EXPECT_EQ(account(a_).debits_pending, 0u);
  EXPECT_EQ(account(b_).debits_pending, 0u);
  EXPECT_EQ(account(a_).debits_posted, 1010u + 2000u + 1000u);
  const auto t3 = account(actors::trading::account_for(etb, actors::shard_of(a_, 3), 3));
  EXPECT_EQ(t3.credits_posted, 1000u + (actors::trading::account_for(etb, actors::shard_of(a_, 3), 3) == trading(0) ? 3010u : 0u))
      << "the new order's trading account is the three-shard one";
  expect_balanced();
}

namespace {
wire::policy_op model(uint64_t instrument, uint64_t weight_bp) {
  return actors::customers::model_op(uint8_t(wire::risk_profile::moderate), instrument, weight_bp);
}
// The moderate profile: equities and funds, positions of at most `position_max`.
wire::policy_op moderate_profile(uint64_t position_max) {
  wire::policy_op p;
  p.kind = wire::policy_op_kind::profile;
  p.number = uint8_t(wire::risk_profile::moderate);
  p.classes = 1u << (uint8_t(wire::asset_class::equity) - 1) | 1u << (uint8_t(wire::asset_class::fund) - 1);
  p.position_max = position_max;
  return p;
}
}  // namespace

// Rebalancing: the orders that bring a portfolio back to its profile's model, placed as
// one batch, then nothing while it stays within the drift band, then a sell when the
// model changes.
TEST_F(orders_engine, RebalanceTowardTheModel) {
  up("broker-a");
  auto bad = model(bond, 4001);
  EXPECT_EQ(e().policies({model(etel, 4000), model(quiet, 2000), bad}).results,
            (std::vector<result>{result::ok, result::ok, result::policy_op_invalid}))
      << "the weights may not pass 100%";
  ASSERT_EQ(e().prices({price(quiet, 50, 1)}).results.at(0), result::ok);
  EXPECT_EQ(e().rebalance(unknown_, 1000, 200, 100).results, std::vector<result>{result::customer_not_found});
  // 100,000 in cash: 40% into ETEL (400 units at 100, limit 101), 20% into QUIET (400 at 50).
  auto r = e().rebalance(a_, 1000, 200, 100);
  ASSERT_EQ(r.st, engine::status::ok);
  ASSERT_EQ(r.placed.size(), 2u);
  EXPECT_EQ(r.results, std::vector<result>(2, result::ok));
  EXPECT_EQ(r.placed[0].id, 1000u);
  EXPECT_EQ(r.placed[0].instrument_id, etel);
  EXPECT_EQ(r.placed[0].quantity, 400u);
  EXPECT_EQ(r.placed[0].limit_ticks, 101u);
  EXPECT_EQ(r.placed[0].side, wire::order_side::buy);
  EXPECT_EQ(r.placed[1].id, 1001u);
  EXPECT_EQ(r.placed[1].instrument_id, quiet);
  EXPECT_EQ(r.placed[1].quantity, 400u);
  sync();
  EXPECT_EQ(account(a_).debits_pending, 400u * 101 + 400u * 50);
  ASSERT_EQ(answer("broker-a", fill(1000, 1, 400, 100)), result::ok);
  ASSERT_EQ(answer("broker-a", fill(1001, 1, 400, 50)), result::ok);
  // Within the band: nothing to place.
  r = e().rebalance(a_, 1100, 200, 100);
  EXPECT_TRUE(r.placed.empty());
  EXPECT_EQ(r.results, std::vector<result>{result::ok});
  // The model moves ETEL to 20%: 200 of the 400 units are sold (limit 99).
  ASSERT_EQ(e().policies({model(etel, 2000)}).results.at(0), result::ok);
  r = e().rebalance(a_, 1200, 200, 100);
  ASSERT_EQ(r.placed.size(), 1u);
  EXPECT_EQ(r.results.at(0), result::ok);
  EXPECT_EQ(r.placed[0].side, wire::order_side::sell);
  EXPECT_EQ(r.placed[0].quantity, 200u);
  EXPECT_EQ(r.placed[0].limit_ticks, 99u);
  EXPECT_EQ(e().rebalance(a_, 1300, 200, 100).placed.size(), 0u) << "an order open on ETEL: left as it is";
  expect_balanced();
}

// A model of 100%: the buy is sized at the last price but holds at its limit, so the
// plan keeps the buys' holds within the cash (990 units at limit 101, in lots of 10, for
// 100,000). Before, it asked for 1,000 units holding 101,000, was refused
// insufficient_cash, and every rebalance planned the same. First ids whose 128 would
// wrap past 2^64 are refused.
TEST_F(orders_engine, RebalanceToAFullModelHoldsNoMoreThanTheCash) {
  up("broker-a");
  ASSERT_EQ(e().policies({moderate_profile(1'000'000), model(etel, 10'000)}).results, std::vector<result>(2, result::ok));
  EXPECT_EQ(e().rebalance(a_, UINT64_MAX - 126, 200, 100).results, std::vector<result>{result::order_invalid});
  auto r = e().rebalance(a_, 1000, 200, 100);
  ASSERT_EQ(r.placed.size(), 1u);
  EXPECT_EQ(r.results, std::vector<result>{result::ok});
  EXPECT_EQ(r.placed[0].quantity, 990u);
  EXPECT_EQ(r.placed[0].limit_ticks, 101u);
  sync();
  EXPECT_EQ(account(a_).debits_pending, 990u * 101);
  ASSERT_EQ(answer("broker-a", fill(1000, 1, 990, 100)), result::ok);
  // 1,000 left and 99,000 in ETEL: within the band.
  EXPECT_TRUE(e().rebalance(a_, 1100, 200, 100).placed.empty());
  expect_balanced();
}

// A plan keeps each buy within the profile's position limit, as the order is checked
// against it (the units held and bought, at the order's limit): 40% of 100,000 is 400
// ETEL at 100, but a position of at most 20,000 at the limit 101 takes 198, 190 in lots
// of 10. Before, the plan asked for 400, the order was refused exceeds_position_limit,
// and every rebalance planned the same.
TEST_F(orders_engine, RebalanceKeepsWithinThePositionLimit) {
  up("broker-a");
  ASSERT_EQ(e().policies({moderate_profile(20'000), model(etel, 4000)}).results, std::vector<result>(2, result::ok));
  auto r = e().rebalance(a_, 1000, 200, 100);
  ASSERT_EQ(r.placed.size(), 1u);
  EXPECT_EQ(r.results, std::vector<result>{result::ok});
  EXPECT_EQ(r.placed[0].quantity, 190u);
  EXPECT_EQ(r.placed[0].limit_ticks, 101u);
  ASSERT_EQ(answer("broker-a", fill(1000, 1, 190, 100)), result::ok);
  // At the limit: nothing more to buy, though the line is still off its weight.
  EXPECT_TRUE(e().rebalance(a_, 1100, 200, 100).placed.empty());
  expect_balanced();
}

// A plan buys only what the customer's profile allows: a model weight on a bond, which
// the moderate profile forbids, is left in cash (it still counts in the value). Before,
// the bond's buy was planned, refused risk_profile_forbids, and planned again at every
// rebalance.
TEST_F(orders_engine, RebalanceBuysOnlyTheClassesTheProfileAllows) {
  up("broker-a");
  ASSERT_EQ(e().policies({model(etel, 4000), model(bond, 3000)}).results, std::vector<result>(2, result::ok));
  auto r = e().rebalance(a_, 1000, 200, 100);
  ASSERT_EQ(r.placed.size(), 1u);
  EXPECT_EQ(r.results, std::vector<result>{result::ok});
  EXPECT_EQ(r.placed[0].instrument_id, etel);
  EXPECT_EQ(r.placed[0].quantity, 400u) << "40% of 100,000 at 100";
  ASSERT_EQ(answer("broker-a", fill(1000, 1, 400, 100)), result::ok);
  EXPECT_TRUE(e().rebalance(a_, 1100, 200, 100).placed.empty());
  // Allowed bonds: the same plan buys them.
  auto p = moderate_profile(50'000);
  p.classes |= 1u << (uint8_t(wire::asset_class::bond) - 1);
  ASSERT_EQ(e().policies({p}).results.at(0), result::ok);
  r = e().rebalance(a_, 1200, 200, 100);
  ASSERT_EQ(r.placed.size(), 1u);
  EXPECT_EQ(r.results, std::vector<result>{result::ok});
  EXPECT_EQ(r.placed[0].instrument_id, bond);
  // A profile with a model and no classes set: every buy would be refused
  // (risk_profile_undefined), so none is planned; sells would go on.
  ASSERT_EQ(e().policies({actors::customers::model_op(uint8_t(wire::risk_profile::aggressive), etel, 5000)})
                .results.at(0),
            result::ok);
  auto k = kyc(b_, wire::kyc_status::verified, 2);
  k.profile = wire::risk_profile::aggressive;
  ASSERT_EQ(e().customers({k}).results.at(0), result::ok);
  r = e().rebalance(b_, 1300, 200, 100);
  EXPECT_EQ(r.results, std::vector<result>{result::ok});
  EXPECT_TRUE(r.placed.empty()) << "no buy placed to be refused";
  expect_balanced();
}

// A plan reads the tier's day, the halts and staleness at its own time, not the last
// logged batch's: a day after the wallet spent its daily outflow, with nothing logged
// since, the plan buys again. Before, it read the day before's outflow and planned
// nothing.
TEST_F(orders_engine, RebalancePlansAtItsOwnTime) {
  up("broker-a");
  constexpr uint64_t fund = 4;  // priced once, stale after 3 days
  ASSERT_EQ(e().instruments({actors::market::definition(fund, "FUND1", wire::asset_class::fund, etb, 1, 1,
                                                         {2000, 60'000, 3 * 86'400'000, 30'000})})
                .results.at(0),
            result::ok);
  ASSERT_EQ(e().prices({price(fund, 10, 1)}).results.at(0), result::ok);
  ASSERT_EQ(e().policies({actors::customers::tier_op(2, etb, 100'000, 1'000, 100'000'000), model(fund, 5000)})
                .results,
            std::vector<result>(2, result::ok));
  auto k = kyc(a_, wire::kyc_status::verified, 2);
  k.tier = 2;
  ASSERT_EQ(e().customers({k}).results.at(0), result::ok);
  auto r = e().rebalance(a_, 1000, 200, 100);
  ASSERT_EQ(r.placed.size(), 1u);
  EXPECT_EQ(r.placed[0].quantity, 100u) << "the day's 1,000 at 10";
  ASSERT_EQ(answer("broker-a", fill(1000, 1, 100, 10)), result::ok);
  EXPECT_TRUE(e().rebalance(a_, 1100, 200, 100).placed.empty()) << "the day's outflow spent";
  fx_.advance_s(86'400);
  r = e().rebalance(a_, 1200, 200, 100);
  ASSERT_EQ(r.placed.size(), 1u) << "a new day";
  EXPECT_EQ(r.results, std::vector<result>{result::ok});
  EXPECT_EQ(r.placed[0].quantity, 100u);
  expect_balanced();
}

// A plan keeps within the wallet's tier as its orders' holds are checked against it:
// each buy's hold within the single-transfer limit, the buys' holds together within the
// day's outflow left, the sells' credits within the balance limit's room, each sell at
// the highest price it may fill at (the move band's top). Before, the plan asked for
// what the model wanted, the orders were refused (exceeds_transfer_limit,
// exceeds_daily_outflow, exceeds_balance_limit), and every rebalance planned the same.
TEST_F(orders_engine, RebalanceKeepsWithinTheTiersLimits) {
  up("broker-a");
  // Tier 2: holds of at most 15,000 each and 30,000 a day.
  ASSERT_EQ(e().policies({actors::customers::tier_op(2, etb, 15'000, 30'000, 100'000'000), model(etel, 4000),
                          model(quiet, 2000)})
                .results,
            std::vector<result>(3, result::ok));
  auto k = kyc(a_, wire::kyc_status::verified, 2);
  k.tier = 2;
  ASSERT_EQ(e().customers({k}).results.at(0), result::ok);
  ASSERT_EQ(e().prices({price(quiet, 50, 1)}).results.at(0), result::ok);
  // 40,000 of ETEL (limit 101) would hold 40,400: 148 units fit 15,000, 140 in lots of
  // 10 (14,140). 20,000 of QUIET (limit 50) would hold 20,000: 300 units (15,000).
  auto r = e().rebalance(a_, 1000, 200, 100);
  ASSERT_EQ(r.placed.size(), 2u);
  EXPECT_EQ(r.results, std::vector<result>(2, result::ok));
  EXPECT_EQ(r.placed[0].instrument_id, etel);
  EXPECT_EQ(r.placed[0].quantity, 140u);
  EXPECT_EQ(r.placed[1].instrument_id, quiet);
  EXPECT_EQ(r.placed[1].quantity, 300u);
  ASSERT_EQ(answer("broker-a", fill(1000, 1, 140, 100)), result::ok);
  ASSERT_EQ(answer("broker-a", fill(1001, 1, 300, 50)), result::ok);
  // 860 of the day's 30,000 left: no lot of ETEL (1,010), 17 units of QUIET (850).
  r = e().rebalance(a_, 1100, 200, 100);
  ASSERT_EQ(r.placed.size(), 1u);
  EXPECT_EQ(r.results, std::vector<result>{result::ok});
  EXPECT_EQ(r.placed[0].instrument_id, quiet);
  EXPECT_EQ(r.placed[0].quantity, 17u);
  ASSERT_EQ(answer("broker-a", fill(1100, 1, 17, 50)), result::ok);
  EXPECT_TRUE(e().rebalance(a_, 1200, 200, 100).placed.empty()) << "10 left: not a unit of either";
  // ETEL out of the model, with room for 6,000 under the balance limit: a sell of ETEL
  // may fill up to 120 (ETEL's 20% band over 100), so 50 of its 140 units (limit 99).
  const auto now = account(a_);
  const uint64_t balance = now.credits_posted + now.credits_pending - now.debits_posted;
  ASSERT_EQ(e().policies({actors::customers::tier_op(2, etb, 15'000, 30'000, balance + 6'000), model(etel, 0)})
                .results,
            std::vector<result>(2, result::ok));
  r = e().rebalance(a_, 1300, 200, 100);
  ASSERT_EQ(r.placed.size(), 1u);
  EXPECT_EQ(r.results, std::vector<result>{result::ok});
  EXPECT_EQ(r.placed[0].side, wire::order_side::sell);
  EXPECT_EQ(r.placed[0].quantity, 50u);
  EXPECT_EQ(r.placed[0].limit_ticks, 99u);
  // QUIET down to 0.01%: that open sell takes the whole room (4,950 held at its limit,
  // 1,050 more up to 120), so none of QUIET's 317 units is sold; 600 more room sells 10
  // of them (at most 60 each).
  ASSERT_EQ(e().policies({model(quiet, 1)}).results.at(0), result::ok);
  r = e().rebalance(a_, 1400, 200, 100);
  EXPECT_EQ(r.results, std::vector<result>{result::ok});
  EXPECT_TRUE(r.placed.empty());
  ASSERT_EQ(e().policies({actors::customers::tier_op(2, etb, 15'000, 30'000, balance + 6'600)}).results.at(0),
            result::ok);
  r = e().rebalance(a_, 1500, 200, 100);
  ASSERT_EQ(r.placed.size(), 1u);
  EXPECT_EQ(r.results, std::vector<result>{result::ok});
  EXPECT_EQ(r.placed[0].instrument_id, quiet);
  EXPECT_EQ(r.placed[0].quantity, 10u);
  expect_balanced();
}

// ---- brokers failing -------------------------------------------------------------------

namespace {
wire::order_answer accepted(uint64_t order) {
  wire::order_answer a;
  a.order_id = order;
  a.kind = wire::order_answer_kind::accepted;
  return a;
}
// Polls until pred() holds (the engine's ticker runs what the clock made due).
template <class F>
bool eventually(F&& pred) {
  for (int i = 0; i < 600; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}
// A figure of the shards' reports, summed over the shards.
uint64_t summed(engine::engine& e, uint64_t engine::shard_report::*figure) {
  uint64_t n = 0;
  for (const auto& r : e.shard_reports()) n += r.*figure;
  return n;
}
uint64_t order_timeouts(engine::engine& e) { return summed(e, &engine::shard_report::order_timeouts); }
uint64_t orders_dead(engine::engine& e) { return summed(e, &engine::shard_report::orders_dead); }
uint64_t orders_halted(engine::engine& e) { return summed(e, &engine::shard_report::orders_halted); }
}  // namespace

// A backoff's end goes to the broker that timed out again while it may take it, not to
// a broker first by priority whose session opened during the backoff (rules version 40;
// before, broker-a got the order after one timeout at broker-b, which might be working
// it). No cancel goes to broker-b: the order stays there.
TEST_F(orders_engine, ARetryAfterABackoffStaysWithItsBrokerWhenABetterOneComesUp) {
  up("broker-b");
  const uint32_t bb = number("broker-b");
  ASSERT_EQ(place(buy(101, a_, 20, 105)), result::ok);
  ASSERT_EQ(order(101).broker, bb) << "broker-a has no session";
  fx_.advance_s(6);  // broker-b's answer timeout (5 s) passes: a backoff
  ASSERT_TRUE(eventually([&] { return order_timeouts(e()) == 1u; }));
  EXPECT_EQ(order(101).routing, uint8_t(actors::trading::route_state::waiting));
  up("broker-a");
  EXPECT_EQ(order(101).routing, uint8_t(actors::trading::route_state::waiting)) << "broker-a does not take it now";
  clear_sent();
  fx_.advance_s(4);  // the backoff ends
  ASSERT_TRUE(eventually([&] { return order(101).attempts == 2; }));
  const auto o = order(101);
  EXPECT_EQ(o.broker, bb) << "the same broker while it may";
  EXPECT_EQ(o.routing, uint8_t(actors::trading::route_state::sent));
  for (const auto& [g, in] : sent()) {
    EXPECT_EQ(g, "broker-b");
    EXPECT_EQ(in.kind, wire::order_instruction_kind::work) << "no cancel";
  }
}

TEST_F(orders_engine, AnUnacknowledgedOrderIsRetriedThenFallsBackToTheNextBroker) {
  up("broker-a");
  up("broker-b");
  const uint32_t ba = number("broker-a"), bb = number("broker-b");
  ASSERT_EQ(place(buy(100, a_, 20, 105)), result::ok);
  auto o = order(100);
  EXPECT_EQ(o.routing, uint8_t(actors::trading::route_state::sent));
  EXPECT_EQ(o.broker, ba);
  EXPECT_EQ(o.attempts, 1);
  // broker-a never acknowledges: its answer timeout (5 s) passes three times, with a
  // backoff before each retry there (a quarter of the timeout, doubling, +-25%).
  for (uint8_t attempt = 2; attempt <= 3; ++attempt) {
    fx_.advance_s(6);
    ASSERT_TRUE(eventually([&] { return order_timeouts(e()) == attempt - 1u; })) << "timeout " << int(attempt - 1);
    EXPECT_EQ(order(100).routing, uint8_t(actors::trading::route_state::waiting)) << "backing off";
    fx_.advance_s(4);
    ASSERT_TRUE(eventually([&] { return order(100).attempts == attempt; })) << "attempt " << int(attempt);
    EXPECT_EQ(order(100).broker, ba) << "the same broker while it may";
  }
  clear_sent();
  fx_.advance_s(6);
  // The third timeout gives broker-a up: at once to broker-b, broker-a told to cancel.
  ASSERT_TRUE(eventually([&] { return order(100).broker == bb; }));
  o = order(100);
  EXPECT_EQ(o.attempts, 4);
  EXPECT_EQ(o.routing, uint8_t(actors::trading::route_state::sent));
  EXPECT_EQ(order_timeouts(e()), 3u);
  // Operators see the wallet's shard's breakers: broker-a sent 3, timed out 3 (closed:
  // fewer than 20 outcomes), broker-b sent 1.
  const auto br = e().lookup_payouts(0, 0, false).order_breakers;
  // The same read with the breakers alone (the console's `brokers`: no pass over payouts).
  const auto alone = e().lookup_payouts(0, 0, false, false, 0, true);
  ASSERT_EQ(alone.order_breakers.size(), br.size());
  for (size_t i = 0; i < br.size(); ++i) {
    EXPECT_EQ(alone.order_breakers[i].gateway, br[i].gateway);
    EXPECT_EQ(alone.order_breakers[i].b.sent, br[i].b.sent);
  }
  EXPECT_TRUE(alone.payout_counts.empty() && alone.payouts.empty());
  ASSERT_EQ(br.size(), 2u);
  EXPECT_EQ(br[0].gateway, ba);
  EXPECT_EQ(br[0].desk, uint64_t(actors::shard_of(a_, 2)));
  EXPECT_EQ(br[0].b.sent, 3u);
  EXPECT_EQ(br[0].b.timeouts, 3u);
  EXPECT_EQ(br[0].b.ph, actors::gateways::breaker::phase::closed);
  EXPECT_EQ(br[1].gateway, bb);
  EXPECT_EQ(br[1].b.sent, 1u);
  auto s = sent();
  std::sort(s.begin(), s.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].first, "broker-a");
  EXPECT_EQ(s[0].second.kind, wire::order_instruction_kind::cancel);
  EXPECT_EQ(s[1].first, "broker-b");
  EXPECT_EQ(s[1].second.kind, wire::order_instruction_kind::work);
  // broker-b acknowledges: working there; time passing changes nothing now.
  EXPECT_EQ(answer("broker-b", accepted(100)), result::ok);
  EXPECT_EQ(answer("broker-b", accepted(100)), result::ok) << "again: a repeat";
  EXPECT_EQ(order(100).routing, uint8_t(actors::trading::route_state::working));
  fx_.advance_s(30);
  sync();
  (void)e().create_accounts({test::make_account(bank)});  // a logged batch: the ticker's moment
  sync();
  EXPECT_EQ(order_timeouts(e()), 3u);
  EXPECT_EQ(order(100).broker, bb);
  // broker-a had it after all and traded half: its fill settles (it was sent there), and
  // it is told again to stop; broker-b fills the rest.
  clear_sent();
  EXPECT_EQ(answer("broker-a", fill(100, 1, 10, 100)), result::ok);
  s = sent();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].first, "broker-a");
  EXPECT_EQ(s[0].second.kind, wire::order_instruction_kind::cancel);
  EXPECT_EQ(order(100).broker, bb) << "still working at broker-b";
  // Fill ids are each broker's: broker-b's fill 1 is not broker-a's (taken as a repeat, it
  // would have gone unsettled though broker-b traded).
  EXPECT_EQ(answer("broker-a", fill(100, 1, 10, 99)), result::fill_id_reused) << "broker-a's own id again";
  EXPECT_EQ(answer("broker-b", fill(100, 1, 10, 101)), result::ok);
  o = order(100);
  EXPECT_EQ(o.state, uint8_t(actors::portfolio::order_state::filled));
  EXPECT_EQ(o.paid, 1000u + 1010u);
  EXPECT_EQ(account(a_).debits_posted, 2010u);
  EXPECT_EQ(account(a_).debits_pending, 0u);
  expect_balanced();
}

// A cancel sent while the broker working the order has no session never reached it: the
// grace waits for a session (the cancel goes again when one opens) and runs from then,
// so fills the broker made meanwhile still settle. A broker that never comes back holds
// the order at most ending_max_ns.
TEST_F(orders_engine, ACancelWaitsForTheBrokerToHearIt) {
  up("broker-a");
  const uint32_t ba = number("broker-a");
  ASSERT_EQ(e().orders({buy(120, a_, 20, 100), buy(121, a_, 10, 100)}).results, std::vector<result>(2, result::ok));
  sync();
  ASSERT_EQ(answer("broker-a", accepted(120)), result::ok);
  ASSERT_EQ(answer("broker-a", accepted(121)), result::ok);
  e().gateway_event({ba, wire::gateway_event_kind::down, {}});
  sync();
  ASSERT_EQ(e().cancel_orders({{120, a_}, {121, a_}}).results, std::vector<result>(2, result::ok));
  sync();
  fx_.advance_s(actors::trading::cancel_grace_ns / 1'000'000'000 + 5);
  sync();
  (void)e().create_accounts({test::make_account(bank)});  // a logged batch: the ticker's moment
  sync();
  EXPECT_EQ(order(120).state, uint8_t(actors::portfolio::order_state::open)) << "no session heard the cancel";
  EXPECT_EQ(order(120).cancelling, uint8_t(actors::portfolio::order_state::cancelled));
  clear_sent();
  up("broker-a");
  bool cancel_again = false;
  for (const auto& [g, in] : sent()) cancel_again = cancel_again || (in.order_id == 120 && in.kind == wire::order_instruction_kind::cancel);
  EXPECT_TRUE(cancel_again) << "told again as its session opens";
  // It had traded before it heard: the fill settles.
  ASSERT_EQ(answer("broker-a", fill(120, 1, 10, 100)), result::ok);
  EXPECT_EQ(order(120).filled, 10u);
  fx_.advance_s(30);
  (void)e().create_accounts({test::make_account(bank)});
  sync();
  EXPECT_EQ(order(120).state, uint8_t(actors::portfolio::order_state::open)) << "the grace runs from the session's opening";
  fx_.advance_s(31);
  ASSERT_TRUE(eventually([&] { return order(120).state == uint8_t(actors::portfolio::order_state::cancelled); }));
  ASSERT_TRUE(eventually([&] { return order(121).state == uint8_t(actors::portfolio::order_state::cancelled); }));
  EXPECT_EQ(answer("broker-a", fill(120, 2, 10, 100)), result::order_not_open);

  // An order broker-a works, its session then down, cancelled.
  auto cancelled_while_down = [&](uint64_t id) {
    ASSERT_EQ(place(buy(id, a_, 10, 100)), result::ok);
    ASSERT_EQ(answer("broker-a", accepted(id)), result::ok);
    e().gateway_event({ba, wire::gateway_event_kind::down, {}});
    sync();
    ASSERT_EQ(e().cancel_orders({{id, a_}}).results.at(0), result::ok);
    sync();
  };
  // A broker gone for good: the order closes ending_max_ns after it began ending.
  cancelled_while_down(122);
  fx_.advance_s(actors::trading::ending_max_ns / 1'000'000'000 - 10);
  (void)e().create_accounts({test::make_account(bank)});
  sync();
  EXPECT_EQ(order(122).state, uint8_t(actors::portfolio::order_state::open));
  fx_.advance_s(11);
  ASSERT_TRUE(eventually([&] { return order(122).state == uint8_t(actors::portfolio::order_state::cancelled); }));

  // A day is the most whatever the sessions do: one opening just before the day is up
  // tells the broker again, and the order still closes at the day.
  up("broker-a");
  ASSERT_EQ(e().prices({price(etel, 100, 2)}).results.at(0), result::ok);  // a day on: a fresh price
  cancelled_while_down(123);
  fx_.advance_s(actors::trading::ending_max_ns / 1'000'000'000 - 30);
  up("broker-a");
  EXPECT_EQ(order(123).state, uint8_t(actors::portfolio::order_state::open));
  fx_.advance_s(31);
  ASSERT_TRUE(eventually([&] { return order(123).state == uint8_t(actors::portfolio::order_state::cancelled); }));
  sync();
  EXPECT_EQ(account(a_).debits_pending, 0u);
  expect_balanced();
}

// A reject from the broker an order fell back to, while the broker it left may still
// have it: the order waits for the grace, taking that broker's fills, and then closes as
// rejected with the broker's reason.
TEST_F(orders_engine, ARejectWaitsForTheBrokerTheOrderLeft) {
  up("broker-a");
  up("broker-b");
  const uint32_t bb = number("broker-b");
  ASSERT_EQ(place(buy(130, a_, 20, 105)), result::ok);
  for (int k = 0; k < 3; ++k) {  // broker-a never acknowledges: three timeouts, then broker-b
    fx_.advance_s(6);
    ASSERT_TRUE(eventually([&] { return order_timeouts(e()) == uint64_t(k + 1); })) << k;
    if (k < 2) {
      fx_.advance_s(4);
      ASSERT_TRUE(eventually([&] { return order(130).attempts == k + 2; })) << k;
    }
  }
  ASSERT_TRUE(eventually([&] { return order(130).broker == bb; }));
  clear_sent();
  ASSERT_EQ(answer("broker-b", reject(130, 21)), result::ok);
  auto o = order(130);
  EXPECT_EQ(o.state, uint8_t(actors::portfolio::order_state::open));
  EXPECT_EQ(o.cancelling, uint8_t(actors::portfolio::order_state::rejected));
  bool told_a = false, told_b = false;
  for (const auto& [g, in] : sent()) {
    told_a = told_a || (g == "broker-a" && in.kind == wire::order_instruction_kind::cancel);
    told_b = told_b || g == "broker-b";
  }
  EXPECT_TRUE(told_a);
  EXPECT_FALSE(told_b) << "the broker that rejected it is not told";
  ASSERT_EQ(answer("broker-a", fill(130, 1, 10, 100)), result::ok) << "broker-a had it after all";
  EXPECT_EQ(answer("broker-b", reject(130, 21)), result::ok) << "again: still waiting for broker-a";
  EXPECT_EQ(order(130).state, uint8_t(actors::portfolio::order_state::open));
  fx_.advance_s(actors::trading::cancel_grace_ns / 1'000'000'000 + 1);
  ASSERT_TRUE(eventually([&] { return order(130).state == uint8_t(actors::portfolio::order_state::rejected); }));
  o = order(130);
  EXPECT_EQ(o.reason, 21);
  EXPECT_EQ(o.filled, 10u);
  sync();
  EXPECT_EQ(account(a_).debits_posted, 1000u);
  EXPECT_EQ(account(a_).debits_pending, 0u);
  expect_balanced();
  // Broker-b's reject sent again is a repeat: one order_answer event of it (rules version
  // 28; before, two).
  fx_.close();
  size_t rejects = 0;
  for (const auto& ev : test::all_events(fx_.dir()))
    rejects += ev.type == wire::event_type::order_answer && ev.ref.lo == 130 &&
               ev.code == uint16_t(wire::order_answer_kind::reject);
  EXPECT_EQ(rejects, 1u);
  fx_.open();
}

// An order waiting for a broker keeps its wait across restarts (rules version 34): ten
// minutes of the engine's up time make it a dead letter however often it restarts (the
// downtime does not count). Before, each restart began the wait again: an engine
// restarting every few minutes never made it one, its hold kept without an operator
// hearing of it.
TEST_F(orders_engine, AnOrderWaitingForABrokerKeepsItsWaitAcrossRestarts) {
  ASSERT_EQ(place(buy(120, a_, 10, 100)), result::ok);  // no broker up
  EXPECT_EQ(order(120).routing, uint8_t(actors::trading::route_state::waiting));
  for (uint64_t k = 0; k < 3; ++k) {
    fx_.advance_s(200);
    ASSERT_EQ(e().prices({price(etel, 100, 2 + k)}).results.at(0), result::ok);
    restart();
    EXPECT_EQ(order(120).routing, uint8_t(actors::trading::route_state::waiting)) << k;
  }
  fx_.advance_s(60);  // 660 s of waiting, none of it down
  ASSERT_EQ(e().prices({price(etel, 100, 5)}).results.at(0), result::ok);
  ASSERT_TRUE(eventually([&] { return orders_dead(e()) == 1; })) << orders_dead(e());
  EXPECT_EQ(order(120).dead_reason, uint8_t(actors::trading::dead_reason::no_route));
  EXPECT_EQ(account(a_).debits_pending, 1000u) << "its hold kept";
}

// ... and the downtime does not count with no equb group running either: the start's
// resume marker, which moves the wait, was logged only when a group was active, so an
// order that had waited 5 minutes, then 8 down, was a dead letter at the start.
TEST_F(orders_engine, AnOrderWaitingForABrokerDoesNotCountTheDowntimeWithNoGroupRunning) {
  ASSERT_EQ(place(buy(121, a_, 10, 100)), result::ok);  // no broker up
  EXPECT_EQ(order(121).routing, uint8_t(actors::trading::route_state::waiting));
  fx_.advance_s(300);
  ASSERT_EQ(e().prices({price(etel, 100, 2)}).results.at(0), result::ok);
  fx_.close();
  fx_.advance_s(480);  // down
  fx_.open();
  attach();
  fx_.advance_s(1);
  ASSERT_EQ(e().prices({price(etel, 100, 3)}).results.at(0), result::ok);
  sync();
  EXPECT_EQ(order(121).routing, uint8_t(actors::trading::route_state::waiting)) << "301 s of waiting up";
  EXPECT_EQ(orders_dead(e()), 0u);
  fx_.advance_s(301);  // 600 s up and more (from the resume marker: the first batch after the start)
  ASSERT_EQ(e().prices({price(etel, 100, 4)}).results.at(0), result::ok);
  ASSERT_TRUE(eventually([&] { return orders_dead(e()) == 1; })) << orders_dead(e());
  EXPECT_EQ(order(121).dead_reason, uint8_t(actors::trading::dead_reason::no_route));
  // Never sent to a broker, none may have it: an operator's retry needs no force.
  EXPECT_EQ(order(121).attempts, 0);
  EXPECT_EQ(e().retry_orders({{121, a_}}).results.at(0), result::ok);
  EXPECT_EQ(order(121).routing, uint8_t(actors::trading::route_state::waiting)) << "no broker up yet";
}

TEST_F(orders_engine, ADeadLetterKeepsItsHoldUntilAnOperatorRetriesOrCancelsIt) {
  up("broker-a");  // broker-b (the fallback) never comes up
  ASSERT_EQ(place(buy(110, a_, 10, 100)), result::ok);
  ASSERT_EQ(place(buy(111, a_, 10, 100)), result::ok);
  EXPECT_EQ(e().retry_orders({{110, a_}}).results.at(0), result::order_not_dead);
  // Three timeouts each give broker-a up; broker-b is down: they wait for it, then (10
  // minutes) become dead letters, holds kept.
  for (int k = 0; k < 6; ++k) fx_.advance_s(6), sync(), std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(eventually([&] { return order_timeouts(e()) == 6; })) << order_timeouts(e());
  EXPECT_EQ(order(110).routing, uint8_t(actors::trading::route_state::waiting));
  EXPECT_EQ(order(110).attempts, 3);
  fx_.advance_s(300);
  ASSERT_EQ(e().prices({price(etel, 100, 2)}).results.at(0), result::ok);  // (not stale: a stale one holds them)
  fx_.advance_s(301);
  ASSERT_TRUE(eventually([&] { return orders_dead(e()) == 2; }));
  auto o = order(110);
  EXPECT_EQ(o.routing, uint8_t(actors::trading::route_state::dead));
  EXPECT_EQ(o.dead_reason, uint8_t(actors::trading::dead_reason::no_route));
  EXPECT_EQ(o.state, uint8_t(actors::portfolio::order_state::open));
  EXPECT_EQ(account(a_).debits_pending, 2000u) << "both holds kept";
  // A late answer from broker-a still counts (it was sent there): it works 111 after all.
  EXPECT_EQ(answer("broker-a", accepted(111)), result::ok);
  EXPECT_EQ(order(111).routing, uint8_t(actors::trading::route_state::working));
  EXPECT_EQ(orders_dead(e()), 1u);
  EXPECT_EQ(answer("broker-b", accepted(110)), result::order_wrong_broker) << "never sent there";
  // An operator retries 110: broker-a never answered it and may be working it, so the
  // retry is refused unless the operator checked with it (force, rules version 52); then
  // routed afresh from the first broker.
  clear_sent();
  EXPECT_EQ(e().retry_orders({{110, a_}}).results.at(0), result::order_may_be_traded);
  EXPECT_EQ(order(110).routing, uint8_t(actors::trading::route_state::dead)) << "refused: nothing changes";
  EXPECT_TRUE(sent().empty());
  EXPECT_EQ(e().retry_orders({{110, a_}}, true).results.at(0), result::ok);
  sync();
  o = order(110);
  EXPECT_EQ(o.routing, uint8_t(actors::trading::route_state::sent));
  EXPECT_EQ(o.attempts, 4);
  EXPECT_EQ(o.broker, number("broker-a"));
  EXPECT_EQ(e().retry_orders({{110, a_}}).results.at(0), result::order_not_dead);
  EXPECT_EQ(e().retry_orders({{110, b_}}).results.at(0), result::order_not_found) << "not that wallet's";
  EXPECT_EQ(e().retry_orders({{119, a_}}).results.at(0), result::order_not_found);
  auto s = sent();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].second.kind, wire::order_instruction_kind::work);
  // broker-a rejects it: closed, the hold released. 111 is cancelled: broker-a confirms.
  EXPECT_EQ(answer("broker-a", reject(110, 9)), result::ok);
  EXPECT_EQ(order(110).state, uint8_t(actors::portfolio::order_state::rejected));
  EXPECT_EQ(e().cancel_orders({{111, a_}}).results.at(0), result::ok);
  sync();
  EXPECT_EQ(answer("broker-a", reject(111, 3)), result::ok);
  EXPECT_EQ(order(111).state, uint8_t(actors::portfolio::order_state::cancelled));
  EXPECT_EQ(account(a_).debits_pending, 0u);
  EXPECT_EQ(orders_dead(e()), 0u);
  expect_balanced();
}

TEST_F(orders_engine_replay, RoutingStateSurvivesARestartFromSnapshotAndLog) {
  up("broker-a");
  up("broker-b");
  ASSERT_EQ(place(buy(120, a_, 10, 100)), result::ok);
  fx_.advance_s(6);
  ASSERT_TRUE(eventually([&] { return order_timeouts(e()) == 1; }));
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  fx_.advance_s(4);
  ASSERT_TRUE(eventually([&] { return order(120).attempts == 2; }));
  const auto before = order(120);
  restart();  // the snapshot, then the log after it
  const auto after = order(120);
  EXPECT_TRUE(same_after_restart(before, after));
  EXPECT_EQ(after.attempts, 2);
  // broker-a comes back and acknowledges: working, the attempts kept.
  up("broker-a");
  ASSERT_TRUE(eventually([&] { return order(120).routing == uint8_t(actors::trading::route_state::sent); }));
  EXPECT_EQ(answer("broker-a", accepted(120)), result::ok);
  EXPECT_EQ(order(120).routing, uint8_t(actors::trading::route_state::working));
  EXPECT_EQ(answer("broker-a", fill(120, 1, 10, 100)), result::ok);
  EXPECT_EQ(account(a_).debits_posted, 1000u);
  expect_balanced();
}

namespace {
wire::instrument_op by_hand(uint64_t instrument, wire::instrument_op_kind k) {
  wire::instrument_op h;
  h.instrument_id = instrument;
  h.kind = k;
  return h;
}
}  // namespace

// A halt stops orders reaching brokers, not only being placed: an order waiting for a
// broker when the instrument is halted is held (routing 4) when a broker's session opens,
// across a restart from the snapshot and the log, and goes to the broker when an
// operator resumes trading. One whose retry falls while the price is stale is held until
// a fresh price. Before, both went to the broker and their fills settled while trading
// was halted.
TEST_F(orders_engine_replay, AHaltHoldsOrdersFromBrokersUntilTheInstrumentTradesAgain) {
  const auto routing = [&](uint64_t id) { return actors::trading::route_state(order(id).routing); };
  using actors::trading::route_state;
  ASSERT_EQ(place(buy(130, a_, 10, 105)), result::ok);  // no broker yet
  EXPECT_EQ(routing(130), route_state::waiting);
  ASSERT_EQ(e().instruments({by_hand(etel, wire::instrument_op_kind::halt)}).results.at(0), result::ok);
  up("broker-a");
  EXPECT_TRUE(sent().empty()) << "nothing goes to a broker while its instrument is halted";
  EXPECT_EQ(routing(130), route_state::halted);
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  ASSERT_EQ(e().prices({price(etel, 100, 2)}).results.at(0), result::ok);  // a price lifts no manual halt
  restart();  // the snapshot, then the log after it
  up("broker-a");
  EXPECT_EQ(routing(130), route_state::halted);
  EXPECT_TRUE(sent().empty());
  auto s = sent_at_resume(etel);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_TRUE(is_instruction(s[0], "broker-a", 130, wire::order_instruction_kind::work));
  EXPECT_EQ(routing(130), route_state::sent);
  ASSERT_EQ(answer("broker-a", fill(130, 1, 10, 100)), result::ok);
  EXPECT_EQ(account(a_).debits_posted, 1000u);

  // broker-a never acknowledges order 131; by its retry the price has gone stale (10
  // minutes): held, until a fresh price routes it.
  clear_sent();
  ASSERT_EQ(place(buy(131, a_, 10, 105)), result::ok);
  EXPECT_EQ(routing(131), route_state::sent);
  fx_.advance_s(6);
  ASSERT_TRUE(eventually([&] { return order_timeouts(e()) == 1; }));
  EXPECT_EQ(routing(131), route_state::waiting) << "backing off";
  fx_.advance_s(601);
  (void)e().create_accounts({test::make_account(bank)});  // a logged batch: the ticker's moment
  ASSERT_TRUE(eventually([&] { return routing(131) == route_state::halted; }));
  EXPECT_EQ(sent().size(), 1u) << "only the first work";
  expect_kept_across_restart(131);  // the log alone since the snapshot
  up("broker-a");
  EXPECT_EQ(routing(131), route_state::halted);
  clear_sent();
  ASSERT_EQ(e().prices({price(etel, 100, 3)}).results.at(0), result::ok);
  sync();
  s = sent();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].second.order_id, 131u);
  EXPECT_EQ(routing(131), route_state::sent);
  EXPECT_EQ(order(131).attempts, 2);
  ASSERT_EQ(answer("broker-a", reject(131, 1)), result::ok);

  // A move halt ends by time alone, and the order it holds is on the other shard: the
  // engine ticks at the halt's end and that batch routes it (no market timer of that
  // shard's own), the same from a snapshot cut while it was held. Order 133 expires while
  // held: it is ending (broker-a, which it went to once, is told), and goes to no broker
  // when the halt ends.
  clear_sent();
  ASSERT_EQ(place(buy(132, b_, 10, 200)), result::ok);  // b_: shard 1
  auto expiring = buy(133, a_, 10, 200);
  expiring.expires_s = 20;
  ASSERT_EQ(place(expiring), result::ok);
  ASSERT_EQ(e().prices({price(etel, 130, 4)}).results.at(0), result::ok);  // +30%: a move halt of 30 s
  ASSERT_NE(e().lookup_instruments({etel}).instruments.at(0).reasons & wire::halt_reasons::move, 0);
  fx_.advance_s(6);
  ASSERT_TRUE(eventually([&] { return order_timeouts(e()) == 3; }));
  fx_.advance_s(4);
  (void)e().create_accounts({test::make_account(bank)});
  ASSERT_TRUE(eventually([&] { return routing(132) == route_state::halted && routing(133) == route_state::halted; }));
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  fx_.advance_s(11);  // 133's expiry (20 s) passes; the halt (30 s) not yet
  (void)e().create_accounts({test::make_account(bank)});
  ASSERT_TRUE(eventually([&] { return order(133).cancelling == uint8_t(actors::portfolio::order_state::expired); }));
  EXPECT_EQ(routing(133), route_state::waiting);
  clear_sent();
  fx_.advance_s(10);  // past the halt's end: no batch but the engine's tick
  ASSERT_TRUE(eventually([&] { return routing(132) == route_state::sent; }));
  EXPECT_EQ(order(132).attempts, 2);
  s = sent();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].second.order_id, 132u);
  const auto sent_live = order(132);
  restart();  // the snapshot (132 held), then the log
  EXPECT_TRUE(same_after_restart(sent_live, order(132)));
  EXPECT_EQ(order(132).attempts, 2);
  ASSERT_EQ(answer("broker-a", reject(133, 1)), result::ok);  // broker-a confirms: closed
  EXPECT_EQ(order(133).state, uint8_t(actors::portfolio::order_state::expired));
  EXPECT_EQ(account(a_).debits_pending, 0u) << "133's hold released";
  expect_balanced();
}

// Orders a halt holds are counted (mesob_orders_halted), on both shards and across a
// restart; one cancelled while held leaves the count (and the shard's list of held
// orders) at once, not when the halt ends; the resume routes the rest and the count is 0.
TEST_F(orders_engine_replay, AnOrderCancelledWhileHaltedLeavesTheHeldOrders) {
  const auto routing = [&](uint64_t id) { return actors::trading::route_state(order(id).routing); };
  using actors::trading::route_state;
  ASSERT_EQ(place(buy(170, a_, 10, 105)), result::ok);  // no broker yet: waiting
  ASSERT_EQ(place(buy(171, b_, 10, 105)), result::ok);  // b_: shard 1
  ASSERT_EQ(place(buy(172, a_, 10, 105)), result::ok);
  ASSERT_EQ(e().instruments({by_hand(etel, wire::instrument_op_kind::halt)}).results.at(0), result::ok);
  up("broker-a");
  for (uint64_t id : {170, 171, 172}) EXPECT_EQ(routing(id), route_state::halted) << id;
  ASSERT_TRUE(eventually([&] { return orders_halted(e()) == 3; })) << orders_halted(e());
  ASSERT_EQ(e().cancel_orders({{170, a_}}).results.at(0), result::ok);  // sent nowhere: closes at once
  sync();
  EXPECT_EQ(order(170).state, uint8_t(actors::portfolio::order_state::cancelled));
  ASSERT_TRUE(eventually([&] { return orders_halted(e()) == 2; })) << orders_halted(e());
  restart();
  up("broker-a");
  ASSERT_TRUE(eventually([&] { return orders_halted(e()) == 2; })) << orders_halted(e());
  ASSERT_EQ(e().cancel_orders({{171, b_}}).results.at(0), result::ok);
  sync();
  ASSERT_TRUE(eventually([&] { return orders_halted(e()) == 1; })) << orders_halted(e());
  const auto s = sent_at_resume(etel);
  ASSERT_EQ(s.size(), 1u) << "172 alone: the cancelled ones go nowhere";
  EXPECT_TRUE(is_instruction(s[0], "broker-a", 172, wire::order_instruction_kind::work));
  ASSERT_TRUE(eventually([&] { return orders_halted(e()) == 0; })) << orders_halted(e());
  EXPECT_EQ(account(a_).debits_pending, 1050u) << "172's hold alone";
  expect_balanced();
}

// A session of the broker opening while the instrument is halted holds an order sent
// there and not yet acknowledged, instead of pushing it again (the push may be its
// first to reach the broker); an acknowledgment of the first push still takes the order
// to work there (rules version 29).
TEST_F(orders_engine_replay, ASessionOpeningDuringAHaltHoldsTheOrderItWouldPushAgain) {
  using actors::trading::route_state;
  const auto routing = [&](uint64_t id) { return route_state(order(id).routing); };
  up("broker-a");
  ASSERT_EQ(place(buy(160, a_, 10, 105)), result::ok);
  ASSERT_EQ(place(buy(161, a_, 10, 105)), result::ok);
  ASSERT_EQ(routing(160), route_state::sent);
  ASSERT_EQ(routing(161), route_state::sent);
  ASSERT_EQ(e().instruments({by_hand(etel, wire::instrument_op_kind::halt)}).results.at(0), result::ok);
  clear_sent();
  up("broker-a");  // another session of it
  EXPECT_TRUE(sent().empty()) << "nothing pushed while the instrument is halted";
  EXPECT_EQ(routing(160), route_state::halted);
  EXPECT_EQ(routing(161), route_state::halted);
  expect_kept_across_restart(160);
  up("broker-a");  // (a restart closes every session)
  EXPECT_TRUE(sent().empty());
  ASSERT_EQ(answer("broker-a", accepted(161)), result::ok) << "it had the first push";
  EXPECT_EQ(routing(161), route_state::working);
  EXPECT_EQ(order(161).broker, number("broker-a"));
  const auto s = sent_at_resume(etel);
  ASSERT_EQ(s.size(), 1u) << "the held order only";
  EXPECT_TRUE(is_instruction(s[0], "broker-a", 160, wire::order_instruction_kind::work));
  EXPECT_EQ(s[0].second.attempt, 2);
  EXPECT_EQ(routing(160), route_state::sent);
  ASSERT_EQ(answer("broker-a", fill(160, 1, 10, 100)), result::ok);
  ASSERT_EQ(answer("broker-a", fill(161, 1, 10, 100)), result::ok);
  EXPECT_EQ(account(a_).debits_posted, 2000u);
  EXPECT_EQ(account(a_).debits_pending, 0u);
  expect_balanced();
}

// An order waiting for a broker is routed when a registry change makes a broker with a
// session up serve its currency (rules version 40; before, it waited for a session to
// open, up to 10 minutes, and then became a dead letter).
TEST_F(orders_engine, AWaitingOrderGoesToABrokerUpThatNowServesItsCurrency) {
  // (Its USD settlement account another than its ETB one, which is of ETB.)
  const auto update = [](const char* id, uint32_t priority, wire::currency_code c) {
    auto u = broker_registration(id, priority);
    u.kind = wire::gateway_op_kind::update;
    u.secret_bytes = 0;
    std::memset(u.secret, 0, sizeof u.secret);
    u.currencies[0] = {c, 0, c == etb ? settlement + priority : settlement + 50};
    return u;
  };
  ASSERT_EQ(e().gateways({update("broker-a", 10, wire::currency("USD"))}).results.at(0), result::ok);
  up("broker-a");
  clear_sent();
  ASSERT_EQ(place(buy(163, a_, 10, 105)), result::ok);
  EXPECT_EQ(order(163).routing, uint8_t(actors::trading::route_state::waiting)) << "no broker serves ETB";
  EXPECT_TRUE(sent().empty());
  ASSERT_EQ(e().gateways({update("broker-a", 10, etb)}).results.at(0), result::ok);
  sync();
  EXPECT_EQ(order(163).routing, uint8_t(actors::trading::route_state::sent));
  EXPECT_EQ(order(163).broker, number("broker-a"));
  const auto s = sent();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_TRUE(is_instruction(s[0], "broker-a", 163, wire::order_instruction_kind::work));
}

// An order sent and then held by a halt (its broker's session opening while halted) goes
// back to that broker when the halt ends, not to one of higher priority that came up
// meanwhile: the first may have it (rules version 40; before, broker-a got it and
// broker-b was told to cancel).
TEST_F(orders_engine, AnOrderHeldByAHaltGoesBackToItsBrokerWhenTheHaltEnds) {
  using actors::trading::route_state;
  up("broker-b");
  ASSERT_EQ(place(buy(162, a_, 10, 105)), result::ok);
  ASSERT_EQ(order(162).broker, number("broker-b"));
  ASSERT_EQ(e().instruments({by_hand(etel, wire::instrument_op_kind::halt)}).results.at(0), result::ok);
  up("broker-b");  // another session of it
  ASSERT_EQ(route_state(order(162).routing), route_state::halted);
  up("broker-a");
  const auto s = sent_at_resume(etel);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_TRUE(is_instruction(s[0], "broker-b", 162, wire::order_instruction_kind::work));
  EXPECT_EQ(s[0].second.attempt, 2);
  EXPECT_EQ(order(162).broker, number("broker-b"));
}

// An ending order waits for the brokers that could still answer and have not heard: an
// enabled broker with no session open, whatever currencies it serves now. One that has a
// session open heard; one withdrawn cannot answer (rules version 29; before, a broker
// that stopped serving the order's currency, or lost the role, held it a day).
TEST_F(orders_engine, AnEndingOrderWaitsOnlyForBrokersThatCouldAnswer) {
  const auto state = [&](uint64_t id) { return actors::portfolio::order_state(order(id).state); };
  const auto advance = [&](uint64_t s) {
    fx_.advance_s(s);
    (void)e().create_accounts({test::make_account(bank)});  // a logged batch: the ticker's moment
    sync();
  };
  const uint64_t grace_s = actors::trading::cancel_grace_ns / 1'000'000'000;
  // Broker-a works order 170, its session goes, the order is cancelled, and broker-a stops
  // serving ETB: it still holds the order while it has no session.
  up("broker-a");
  ASSERT_EQ(place(buy(170, a_, 10, 100)), result::ok);
  ASSERT_EQ(answer("broker-a", accepted(170)), result::ok);
  e().gateway_event({number("broker-a"), wire::gateway_event_kind::down, {}});
  sync();
  ASSERT_EQ(e().cancel_orders({{170, a_}}).results.at(0), result::ok);
  auto usd_only = broker_registration("broker-a");
  usd_only.kind = wire::gateway_op_kind::update;
  usd_only.secret_bytes = 0;
  std::memset(usd_only.secret, 0, sizeof usd_only.secret);
  usd_only.currencies[0] = {wire::currency("USD"), 0, settlement + 50};
  ASSERT_EQ(e().gateways({usd_only}).results.at(0), result::ok);
  advance(grace_s + 5);
  EXPECT_EQ(state(170), actors::portfolio::order_state::open) << "broker-a has no session: it has not heard";
  up("broker-a");  // told again: it has heard now
  advance(grace_s + 1);
  ASSERT_TRUE(eventually([&] { return state(170) == actors::portfolio::order_state::cancelled; }))
      << "broker-a, no longer serving ETB, heard the cancel: the grace, not a day";
  // Broker-b works order 171 (broker-a serves ETB no more), its session goes, the order is
  // cancelled, and broker-b loses the role: it cannot answer, so it holds nothing.
  up("broker-b");
  ASSERT_EQ(place(buy(171, a_, 10, 100)), result::ok);
  ASSERT_EQ(order(171).broker, number("broker-b"));
  ASSERT_EQ(answer("broker-b", accepted(171)), result::ok);
  e().gateway_event({number("broker-b"), wire::gateway_event_kind::down, {}});
  sync();
  ASSERT_EQ(e().cancel_orders({{171, a_}}).results.at(0), result::ok);
  auto payments_only = broker_registration("broker-b", 20);
  payments_only.kind = wire::gateway_op_kind::update;
  payments_only.secret_bytes = 0;
  std::memset(payments_only.secret, 0, sizeof payments_only.secret);
  payments_only.roles = wire::roles::payments;
  ASSERT_EQ(e().gateways({payments_only}).results.at(0), result::ok);
  advance(grace_s + 1);
  ASSERT_TRUE(eventually([&] { return state(171) == actors::portfolio::order_state::cancelled; }))
      << "a broker withdrawn cannot answer: the grace, not a day";
  sync();
  EXPECT_EQ(account(a_).debits_pending, 0u);
  expect_balanced();
}

// A reject that ends the order, from a broker withdrawn since (its answer sequenced after
// the change; here disabled, its session not yet closed: the order still sent there),
// closes it without first making it a dead letter: no order_dead event (rules version
// 29; before, one came just ahead of the close).
TEST_F(orders_engine, AWithdrawnBrokersRejectClosesTheOrderWithoutADeadLetter) {
  ASSERT_NO_FATAL_FAILURE(sent_to_broker_a_then_disabled(180));
  ASSERT_EQ(answer("broker-a", reject(180, 9)), result::ok);
  EXPECT_EQ(order(180).state, uint8_t(actors::portfolio::order_state::rejected));
  EXPECT_EQ(order(180).reason, 9);
  EXPECT_EQ(account(a_).debits_pending, 0u);
  expect_balanced();
  EXPECT_EQ(dead_letters_and_answers(180, wire::order_answer_kind::reject), std::make_pair(size_t(0), size_t(1)));
}

// The same for a fill that completes the order, from a broker disabled since (its
// session not yet closed: the order still sent there), rules version 40; before, an
// order_dead event came just ahead of the fill that closed it.
TEST_F(orders_engine, AWithdrawnBrokersCompletingFillClosesTheOrderWithoutADeadLetter) {
  ASSERT_NO_FATAL_FAILURE(sent_to_broker_a_then_disabled(181));
  ASSERT_EQ(answer("broker-a", fill(181, 1, 10, 100)), result::ok);
  EXPECT_EQ(order(181).state, uint8_t(actors::portfolio::order_state::filled));
  EXPECT_EQ(account(a_).debits_pending, 0u);
  EXPECT_EQ(account(a_).debits_posted, 1000u);
  expect_balanced();
  EXPECT_EQ(dead_letters_and_answers(181, wire::order_answer_kind::fill), std::make_pair(size_t(0), size_t(1)));
}

// An ending order's day-long cap is of the engine's up time: downtime does not count, so
// a day passing while the engine is down does not close it at the start, its hold
// released before its broker could say whether it filled it; and a quiet spell before
// the stop is not downtime (a heartbeat tick a minute keeps the last logged time while
// orders are ending: before, a cancel 23 hours before a 3-hour stop moved the day 26
// hours). Rules version 35.
void orders_engine::ending_order_day_skips_downtime() {
  const auto state = [&](uint64_t id) { return actors::portfolio::order_state(order(id).state); };
  const auto advance = [&](uint64_t s) {
    fx_.advance_s(s);
    (void)e().create_accounts({test::make_account(bank)});  // a logged batch: the ticker's moment
    sync();
  };
  up("broker-a");
  ASSERT_EQ(place(buy(190, a_, 10, 100)), result::ok);
  ASSERT_EQ(answer("broker-a", accepted(190)), result::ok);
  e().gateway_event({number("broker-a"), wire::gateway_event_kind::down, {}});
  sync();
  ASSERT_EQ(e().cancel_orders({{190, a_}}).results.at(0), result::ok);  // ending: broker-a has not heard
  advance(3600);
  EXPECT_EQ(state(190), actors::portfolio::order_state::open);
  const uint64_t logged = e().stats().lsn_durable;
  fx_.advance_s(22 * 3600);  // quiet
  ASSERT_TRUE(eventually([&] { return e().stats().lsn_durable > logged; })) << "a heartbeat tick";
  fx_.close();
  fx_.advance_s(3 * 3600);  // down
  fx_.open();
  attach();
  advance(1);
  EXPECT_EQ(state(190), actors::portfolio::order_state::open) << "23 hours of the day up";
  EXPECT_EQ(account(a_).debits_pending, 1000u) << "its hold kept";
  advance(3600 + 120);  // the day up: broker-a never came back
  ASSERT_TRUE(eventually([&] { return state(190) == actors::portfolio::order_state::cancelled; }));
  EXPECT_EQ(account(a_).debits_pending, 0u);
  expect_balanced();
}
TEST_F(orders_engine, AnEndingOrdersDayDoesNotCountTheDowntime) { ending_order_day_skips_downtime(); }
TEST_F(orders_engine_replay, AnEndingOrdersDayDoesNotCountTheDowntimeReplayed) { ending_order_day_skips_downtime(); }

// An order sent and not acknowledged stays with its broker across a restart, which may be
// working it: another broker coming up first does not get it (rules version 35, as
// payouts in flight since version 10; before, the first broker to come up got it at
// once); an answer timeout from the start passes, and it still waits for that broker
// (rules version 50; before, it went on to the next one, the first told to stop when it
// came back), which gets it again when it is back.
TEST_F(orders_engine, AnUnacknowledgedOrderStaysWithItsBrokerAcrossARestart) {
  using actors::trading::route_state;
  up("broker-a");
  ASSERT_EQ(place(buy(200, a_, 10, 100)), result::ok);
  ASSERT_EQ(order(200).broker, number("broker-a"));
  restart();
  clear_sent();
  up("broker-b");
  EXPECT_EQ(order(200).routing, uint8_t(route_state::sent));
  EXPECT_EQ(order(200).broker, number("broker-a"));
  EXPECT_EQ(order(200).attempts, 1);
  EXPECT_TRUE(sent().empty()) << "nothing to broker-b while broker-a may have it";
  fx_.advance_s(6);  // broker-a's answer timeout (5 s) from the start
  (void)e().create_accounts({test::make_account(bank)});  // a logged batch: the ticker's moment
  ASSERT_TRUE(eventually([&] { return order_timeouts(e()) == 1; }));
  EXPECT_EQ(order(200).routing, uint8_t(route_state::waiting)) << "waiting for broker-a, which may have it";
  EXPECT_EQ(order(200).attempts, 1);
  EXPECT_TRUE(sent().empty()) << "still nothing to broker-b";
  up("broker-a");
  EXPECT_EQ(order(200).broker, number("broker-a"));
  EXPECT_EQ(order(200).routing, uint8_t(route_state::sent));
  EXPECT_EQ(order(200).attempts, 2);
  size_t works = 0;
  for (const auto& [g, in] : sent()) {
    EXPECT_EQ(g, "broker-a");
    works += in.order_id == 200 && in.kind == wire::order_instruction_kind::work;
  }
  EXPECT_EQ(works, 1u) << "broker-a gets it again";
  EXPECT_EQ(answer("broker-a", accepted(200)), result::ok);
  EXPECT_EQ(order(200).routing, uint8_t(route_state::working));
}

// An order sent and not acknowledged stays with its broker when that broker's last
// session closes (its deadline unchanged by a session reopening), and past the deadline
// with the broker away it waits for it, nothing to another broker; still away after
// route_wait_max, it is a dead letter (`broker_silent`) for an operator, hold kept.
// Before (rules version 50), the close handed it to the next broker at once.
TEST_F(orders_engine, AnUnacknowledgedOrderWaitsForItsBrokerThroughAnOutage) {
  using actors::trading::route_state;
  up("broker-a");
  up("broker-b");
  ASSERT_EQ(place(buy(204, a_, 10, 100)), result::ok);
  ASSERT_EQ(order(204).broker, number("broker-a"));
  clear_sent();
  down("broker-a");
  EXPECT_EQ(order(204).routing, uint8_t(route_state::sent));
  EXPECT_EQ(order(204).broker, number("broker-a"));
  EXPECT_TRUE(sent().empty()) << "nothing to broker-b when broker-a's session closes";
  fx_.advance_s(3);
  up("broker-a");  // pushed again, its deadline kept
  down("broker-a");
  clear_sent();
  fx_.advance_s(3);  // past the deadline (5 s) from the placing, not from the reopening
  (void)e().create_accounts({test::make_account(bank)});
  ASSERT_TRUE(eventually([&] { return order_timeouts(e()) == 1; }));
  EXPECT_EQ(order(204).routing, uint8_t(route_state::waiting));
  EXPECT_TRUE(sent().empty()) << "nothing to broker-b while broker-a may have it";
  for (uint64_t k = 0; k < 2; ++k) {  // route_wait_max with broker-a away (the price kept fresh)
    fx_.advance_s(301);
    ASSERT_EQ(e().prices({price(etel, 100, 2 + k)}).results.at(0), result::ok);
  }
  ASSERT_TRUE(eventually([&] { return order(204).routing == uint8_t(route_state::dead); }));
  EXPECT_EQ(order(204).dead_reason, uint8_t(actors::trading::dead_reason::unanswered));
  EXPECT_STREQ(actors::trading::dead_reason_name(order(204).dead_reason), "broker_silent");
  EXPECT_EQ(order(204).attempts, 1);
  EXPECT_EQ(account(a_).debits_pending, 1000u) << "its hold kept";
  for (const auto& [g, in] : sent()) EXPECT_NE(g, "broker-b") << "broker-b never got it";
  expect_balanced();
  // Disabled while it is away with an order it may have: that broker can no longer say,
  // and the order is a dead letter (`broker_withdrawn`) at its deadline, not broker-b's.
  up("broker-a");
  ASSERT_EQ(place(buy(205, a_, 10, 100)), result::ok);
  ASSERT_EQ(order(205).broker, number("broker-a"));
  down("broker-a");
  wire::gateway_op off{};
  off.kind = wire::gateway_op_kind::disable;
  actors::gateways::set_op_id(off, "broker-a");
  ASSERT_EQ(e().gateways({off}).results.at(0), result::ok);
  clear_sent();
  fx_.advance_s(6);
  (void)e().create_accounts({test::make_account(bank)});
  ASSERT_TRUE(eventually([&] { return order(205).routing == uint8_t(route_state::dead); }));
  EXPECT_EQ(order(205).dead_reason, uint8_t(actors::trading::dead_reason::withdrawn));
  EXPECT_TRUE(sent().empty()) << "nothing to broker-b";
}

// A broker that stops serving the order's currency while it may have an unacknowledged
// order leaves it a dead letter (`broker_withdrawn`) at its deadline, not broker-b's
// (rules version 54; before, broker-b got it then, and both could trade it). Given the
// currency back, its acknowledgement takes the order back to work there, and its fill
// settles.
TEST_F(orders_engine, ABrokerThatStopsServingTheCurrencyLeavesItsUnacknowledgedOrderADeadLetter) {
  using actors::trading::route_state;
  up("broker-a");
  up("broker-b");
  ASSERT_EQ(place(buy(206, a_, 10, 100)), result::ok);
  ASSERT_EQ(order(206).broker, number("broker-a"));
  auto usd_only = broker_registration("broker-a");
  usd_only.kind = wire::gateway_op_kind::update;
  usd_only.secret_bytes = 0;
  std::memset(usd_only.secret, 0, sizeof usd_only.secret);
  auto etb_again = usd_only;
  usd_only.currencies[0] = {wire::currency("USD"), 0, settlement + 50};
  ASSERT_EQ(e().gateways({usd_only}).results.at(0), result::ok);
  sync();
  EXPECT_EQ(order(206).routing, uint8_t(route_state::sent)) << "its answer deadline decides";
  clear_sent();
  fx_.advance_s(6);
  (void)e().create_accounts({test::make_account(bank)});
  ASSERT_TRUE(eventually([&] { return order(206).routing == uint8_t(route_state::dead); }));
  EXPECT_EQ(order(206).dead_reason, uint8_t(actors::trading::dead_reason::withdrawn));
  for (const auto& [g, in] : sent()) EXPECT_NE(g, "broker-b") << "broker-b never got it";
  EXPECT_EQ(answer("broker-a", accepted(206)), result::ok);
  EXPECT_EQ(order(206).routing, uint8_t(route_state::dead)) << "not serving ETB: it stays a dead letter";
  ASSERT_EQ(e().gateways({etb_again}).results.at(0), result::ok);
  ASSERT_EQ(answer("broker-a", accepted(206)), result::ok);
  EXPECT_EQ(order(206).routing, uint8_t(route_state::working));
  EXPECT_EQ(order(206).broker, number("broker-a"));
  ASSERT_EQ(answer("broker-a", fill(206, 1, 10, 100)), result::ok);
  EXPECT_EQ(order(206).state, uint8_t(actors::portfolio::order_state::filled));
  expect_balanced();
}

// An outage's own timeouts open the broker's breaker: when the broker comes back, the
// orders that waited for it keep waiting (its breaker looked at each second) rather than
// going to another broker while it may have them. Before, each went to broker-b at
// once, broker-a told to stop in the same breath.
TEST_F(orders_engine, AnOutageThatOpensTheBreakerSendsNoOrderElsewhere) {
  using actors::trading::route_state;
  up("broker-a");
  up("broker-b");
  for (uint64_t id = 400; id < 420; ++id) ASSERT_EQ(place(buy(id, a_, 10, 100)), result::ok) << id;
  for (uint64_t id = 400; id < 420; ++id) ASSERT_EQ(order(id).broker, number("broker-a")) << id;
  down("broker-a");
  fx_.advance_s(6);  // every deadline passes with broker-a away: twenty timeouts
  (void)e().create_accounts({test::make_account(bank)});
  ASSERT_TRUE(eventually([&] { return order_timeouts(e()) == 20; }));
  clear_sent();
  up("broker-a");  // its breaker open
  fx_.advance_s(2);
  (void)e().create_accounts({test::make_account(bank)});
  sync();
  for (const auto& [g, in] : sent()) EXPECT_NE(g, "broker-b") << "order " << in.order_id;
  for (uint64_t id = 400; id < 420; ++id) {
    EXPECT_EQ(order(id).routing, uint8_t(route_state::waiting)) << id;
    EXPECT_EQ(order(id).attempts, 1) << id;
  }
}

// ... and so does one waiting out its backoff after a timeout there (past an answer
// timeout from the start, it waits for broker-a: rules version 50).
TEST_F(orders_engine, AnOrderBackingOffStaysWithItsBrokerAcrossARestart) {
  using actors::trading::route_state;
  up("broker-a");
  ASSERT_EQ(place(buy(202, a_, 10, 100)), result::ok);
  fx_.advance_s(6);  // broker-a's answer timeout: a retry there after a backoff
  ASSERT_TRUE(eventually([&] { return order_timeouts(e()) == 1; }));
  EXPECT_EQ(order(202).routing, uint8_t(route_state::waiting));
  restart();
  clear_sent();
  up("broker-b");
  EXPECT_EQ(order(202).routing, uint8_t(route_state::waiting));
  EXPECT_EQ(order(202).attempts, 1);
  EXPECT_TRUE(sent().empty()) << "nothing to broker-b while broker-a may have it";
  fx_.advance_s(6);  // an answer timeout from the start: broker-a did not come back
  (void)e().create_accounts({test::make_account(bank)});
  sync();
  EXPECT_EQ(order(202).routing, uint8_t(route_state::waiting));
  EXPECT_EQ(order(202).attempts, 1);
  EXPECT_TRUE(sent().empty()) << "still nothing to broker-b";
  // The wait for broker-a began at the backoff's end: route_wait_max later (the price
  // kept fresh) it is a dead letter, broker-b never having had it.
  for (uint64_t k = 0; k < 2; ++k) {
    fx_.advance_s(301);
    ASSERT_EQ(e().prices({price(etel, 100, 2 + k)}).results.at(0), result::ok);
  }
  ASSERT_TRUE(eventually([&] { return order(202).routing == uint8_t(route_state::dead); }));
  EXPECT_EQ(order(202).dead_reason, uint8_t(actors::trading::dead_reason::unanswered));
  EXPECT_EQ(order(202).attempts, 1);
  EXPECT_TRUE(sent().empty());
}

// An order held by a move halt that ends while the engine is down is routed after the
// start's reset, by the sessions open then, not by the resume marker, whose sessions are
// those before the stop (rules version 35; before, the marker sent it to broker-a, an
// attempt spent on an instruction no session took).
TEST_F(orders_engine_replay, AHaltEndingWhileDownRoutesNoOrderAtTheResumeMarker) {
  const auto routing = [&](uint64_t id) { return actors::trading::route_state(order(id).routing); };
  using actors::trading::route_state;
  up("broker-a");
  // Order 193, working at broker-a and cancelled, is ending: the start logs a marker (an
  // order ending runs on the engine's up time).
  ASSERT_EQ(place(buy(193, a_, 10, 200)), result::ok);
  ASSERT_EQ(answer("broker-a", accepted(193)), result::ok);
  ASSERT_EQ(e().cancel_orders({{193, a_}}).results.at(0), result::ok);
  ASSERT_NE(order(193).cancelling, 0);
  ASSERT_EQ(place(buy(192, a_, 10, 200)), result::ok);
  EXPECT_EQ(routing(192), route_state::sent);
  ASSERT_EQ(e().prices({price(etel, 130, 2)}).results.at(0), result::ok);  // +30%: a move halt of 30 s
  fx_.advance_s(6);
  ASSERT_TRUE(eventually([&] { return order_timeouts(e()) == 1; }));
  fx_.advance_s(4);
  (void)e().create_accounts({test::make_account(bank)});
  ASSERT_TRUE(eventually([&] { return routing(192) == route_state::halted; }));
  EXPECT_EQ(order(192).attempts, 1);
  fx_.close();  // the log alone: broker-a's session as it was
  fx_.advance_s(60);  // the halt ends while down
  fx_.open();
  attach();
  sync();
  EXPECT_EQ(routing(192), route_state::waiting) << "no broker up since the start";
  EXPECT_EQ(order(192).attempts, 1);
  clear_sent();
  up("broker-a");
  EXPECT_EQ(routing(192), route_state::sent);
  EXPECT_EQ(order(192).attempts, 2);
  size_t works = 0;  // (and 193's cancel, told again)
  for (const auto& [g, in] : sent()) works += in.order_id == 192 && in.kind == wire::order_instruction_kind::work;
  EXPECT_EQ(works, 1u);
}

TEST_F(orders_engine_replay, AnotherShardCountIsRefusedWhileRoutingIsUnderWayPastTheSnapshot) {
  up("broker-a");
  ASSERT_EQ(place(buy(130, a_, 10, 100)), result::ok);  // sent, not acknowledged
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  ASSERT_EQ(place(buy(131, b_, 10, 100)), result::ok);  // a record past the snapshot
  fx_.close();
  auto cfg = fx_.config();
  cfg.shards = 3;
  auto refused = engine::engine::open(cfg, &err);
  ASSERT_FALSE(refused);
  EXPECT_NE(err.find("start once with --shards 2"), std::string::npos) << err;
  // Once more with two shards, which snapshots when it stops (at the tip: ticks are
  // records too, and a tick may fire a routing timer): then three may start.
  cfg.shards = 2;
  cfg.checkpoint_on_close = true;
  {
    auto two = engine::engine::open(cfg, &err);
    ASSERT_TRUE(two) << err;
    auto r = two->lookup_orders({130});
    EXPECT_EQ(r.orders.at(0).attempts, 1);
  }
  fx_.set_shards(3);
  fx_.open();
  attach();
  ASSERT_EQ(e().shards(), 3u);
  up("broker-a");
  EXPECT_EQ(answer("broker-a", fill(130, 1, 10, 100)), result::ok);
  EXPECT_EQ(answer("broker-a", fill(131, 1, 10, 100)), result::ok);
  EXPECT_EQ(account(a_).debits_posted, 1000u);
  EXPECT_EQ(account(b_).debits_posted, 1000u);
  expect_balanced();
}
