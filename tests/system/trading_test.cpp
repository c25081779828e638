// Trading over the protocol, against a real server on loopback: a client places orders
// (payments role), the gateway simulator's market-data feed prices the instruments, and
// its broker (tools/broker_sim.hpp) works the orders pushed to it, filling at the feed's
// prices, some in parts, rejecting some, dropping its connection once. In the end every
// order is closed, no hold is left, the money the fills moved is on the ledger exactly,
// and the books balance.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <thread>

#include "actors/customers.hpp"
#include "actors/market.hpp"
#include "actors/trading.hpp"
#include "engine/metrics.hpp"
#include "engine/server.hpp"
#include "support/engine_fixture.hpp"
#include "support/metrics_render.hpp"
#include "support/seed.hpp"
#include "tools/broker_sim.hpp"
#include "tools/market_feed.hpp"
#include "wire/client.hpp"

using namespace mesob;
using namespace mesob::test;
using wire::result;

namespace {
// Wallets 1 .. n (debits must not exceed credits) funded with `each` from `bank` (a
// system account), each a verified customer of tier 1 and the moderate profile, which
// trades funds up to position_max.
void verified_customers(engine::engine& eng, uint64_t n, uint64_t bank, uint64_t each, uint64_t position_max) {
  const auto etb = wire::currency("ETB");
  auto src = make_account(bank);
  src.kind = wire::account_kind::system;
  std::vector<wire::account> accts{src};
  for (uint64_t w = 1; w <= n; ++w) accts.push_back(make_account(w, wire::account_flags::debits_must_not_exceed_credits));
  ASSERT_EQ(eng.create_accounts(accts).results, std::vector<result>(accts.size(), result::ok));
  wire::policy_op moderate;
  moderate.kind = wire::policy_op_kind::profile;
  moderate.number = uint8_t(wire::risk_profile::moderate);
  moderate.classes = 1u << (uint8_t(wire::asset_class::fund) - 1);
  moderate.position_max = position_max;
  ASSERT_EQ(eng.policies({actors::customers::tier_op(1, etb, 1ull << 40, 1ull << 40, 1ull << 50), moderate}).results,
            std::vector<result>(2, result::ok));
  std::vector<wire::customer_op> kyc;
  std::vector<wire::transfer> funding;
  for (uint64_t w = 1; w <= n; ++w) {
    kyc.push_back(actors::customers::verified_op(w, 1, wire::risk_profile::moderate));
    funding.push_back(make_transfer(w, bank, w, each));
  }
  ASSERT_EQ(eng.customers(kyc).results, std::vector<result>(n, result::ok));
  ASSERT_EQ(eng.create_transfers(funding).results, std::vector<result>(n, result::ok));
}
// The orders `ids` once none is open (polling up to 15 s); empty, with the open ones
// described in *open, when some still are.
std::vector<wire::order_state_view> wait_closed(wire::client& app, const std::vector<uint64_t>& ids, std::string* open) {
  for (int i = 0; i < 1500; ++i) {
    auto r = app.call(wire::lookup_orders_body(ids));
    EXPECT_TRUE(r.ok) << r.failure;
    if (!r.ok) return {};
    bool any = false;
    for (const auto& o : r.reply.orders) any = any || o.state == uint8_t(actors::portfolio::order_state::open);
    if (!any) return r.reply.orders;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto r = app.call(wire::lookup_orders_body(ids));
  for (const auto& o : r.reply.orders)
    if (o.state == uint8_t(actors::portfolio::order_state::open))
      *open += " " + std::to_string(o.o.id) + ": routing " + std::to_string(o.routing) + " broker " +
               std::to_string(o.broker) + " attempts " + std::to_string(o.attempts) + " dead " +
               std::to_string(o.dead_reason) + ";";
  return {};
}
}  // namespace

TEST(trading, orders_through_a_simulated_broker_at_the_feeds_prices) {
  temp_dir dir;
  auto eng = open_engine(test_config(dir.path()));
  ASSERT_TRUE(eng);
  const auto etb = wire::currency("ETB");
  const std::vector<uint8_t> app_secret(32, 0x11), feed_secret(32, 0x22);
  engine::server_config scfg;
  scfg.port = 0;
  scfg.gateways = {{"app", app_secret, wire::roles::payments}, {"feed", feed_secret, wire::roles::market_data}};
  std::string err;
  auto srv = engine::server::start(*eng, scfg, &err);
  ASSERT_TRUE(srv) << err;
  eng->set_order_sink([&srv](const std::string& broker, std::vector<wire::order_instruction>&& list) {
    engine::push_order_instructions(*srv, broker, list);
  });
  auto broker = make_gateway_registration("broker", 9001);
  broker.roles = wire::roles::broker;
  broker.rail = 3;
  ASSERT_EQ(eng->gateways({broker}).results.at(0), result::ok);
  const std::vector<uint8_t> broker_secret(broker.secret, broker.secret + broker.secret_bytes);

  // Wallets with KYC records; a moderate profile trades funds.
  constexpr uint64_t wallets = 16, bank = 5000;
  ASSERT_NO_FATAL_FAILURE(verified_customers(*eng, wallets, bank, 1'000'000'000, 1'000'000'000'000ull));
  // Trading accounts are made with the instruments' definitions (the feed's, over TCP).
  constexpr uint64_t first_instrument = 100, instruments = 5;

  const uint64_t seed = test_seed("trading");
  tools::market_feed_options fo;
  fo.port = srv->port();
  fo.gateway = "feed";
  fo.secret = feed_secret;
  for (uint64_t id = first_instrument; id < first_instrument + instruments; ++id) fo.instruments.push_back(id);
  fo.define = true;
  // Lots of 10: the broker's part fills are whole lots (before, it cut parts of any size,
  // the engine refused them as lot_size_invalid, and the orders stayed open).
  constexpr uint64_t lot = 10;
  fo.definition = actors::market::definition(0, "", wire::asset_class::fund, etb, 1, lot, {9000, 60'000, 600'000, 1000});
  fo.prices_per_s = 2000;
  fo.volatility_bp = 5;
  fo.jump_rate = 0;
  fo.seed = seed;
  tools::market_feed feed(fo);
  feed.start();
  for (int i = 0; i < 500 && feed.stats().prices_ok < 2 * instruments; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GE(feed.stats().prices_ok, 2 * instruments);

  tools::broker_sim_options bo;
  bo.port = srv->port();
  bo.gateway = "broker";
  bo.secret = broker_secret;
  bo.latency_ms = 2;
  bo.partial_rate = 0.3;
  bo.reject_rate = 0.1;
  bo.seed = seed + 1;
  bo.price_of = [&feed](uint64_t id) {
    return id >= first_instrument && id < first_instrument + instruments ? feed.last_ticks(id - first_instrument) : 0;
  };
  bo.lot_of = [](uint64_t) { return lot; };
  std::map<std::string, uint64_t> refused;  // the engine's refusals of the broker's answers, by code
  bo.on_answered = [&refused](const wire::order_answer& a, result r) {
    if (r != result::ok) ++refused[std::string(wire::result_name(r)) + (a.kind == wire::order_answer_kind::fill ? " (fill)" : " (other)")];
  };
  tools::broker_sim sim(bo);
  sim.start();
  for (int i = 0; i < 500 && !sim.connected(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(sim.connected());

  wire::client::options co;
  co.port = srv->port();
  co.gateway = "app";
  co.secret = app_secret;
  auto app = wire::client::connect(co, &err);
  ASSERT_TRUE(app) << err;

  std::mt19937_64 rng(seed);
  std::vector<uint64_t> placed;  // order ids accepted
  tools::broker_sim& sim_ref = sim;
  auto closed = [&, &sim = sim_ref](const std::vector<uint64_t>& ids) {
    std::string open;
    auto views = wait_closed(*app, ids, &open);
    if (views.empty()) {
      const auto st = sim.stats();
      ADD_FAILURE() << "orders still open:" << open.substr(0, 400) << " broker: " << st.instructions
                    << " instructions, " << st.fills_sent << " fills sent, " << st.answers_ok << " taken, "
                    << st.answers_refused << " refused, " << st.working << " working, " << st.connects << " connects";
      for (const auto& [why, n] : refused) ADD_FAILURE() << "refused: " << why << " x" << n;
    }
    return views;
  };

  // Buys: market orders with a protective limit 50% above the last price, 1 to 10 lots.
  uint64_t next_id = 1;
  std::vector<wire::order> buys;
  for (uint64_t n = 0; n < 400; ++n) {
    wire::order o{};
    o.id = next_id++;
    o.wallet = 1 + rng() % wallets;
    o.instrument_id = first_instrument + rng() % instruments;
    o.quantity = lot * (1 + rng() % 10);
    o.limit_ticks = feed.last_ticks(o.instrument_id - first_instrument) * 3 / 2;
    o.currency = etb;
    o.side = wire::order_side::buy;
    o.type = wire::order_type::market;
    buys.push_back(o);
  }
  bool dropped = false;
  for (size_t at = 0; at < buys.size(); at += 50) {
    std::vector<wire::order> batch(buys.begin() + long(at), buys.begin() + long(std::min(buys.size(), at + 50)));
    auto r = app->call(wire::orders_body(batch));
    ASSERT_TRUE(r.ok) << r.failure;
    for (size_t i = 0; i < batch.size(); ++i) {
      EXPECT_EQ(r.reply.results[i], result::ok) << "order " << batch[i].id;
      if (r.reply.results[i] == result::ok) placed.push_back(batch[i].id);
    }
    if (!dropped && at >= 200) {  // the broker drops its connection with orders working
      sim.disconnect(30);
      dropped = true;
    }
  }
  auto bought = closed(placed);
  ASSERT_EQ(bought.size(), placed.size());
  // Sells of half of what each wallet holds per instrument, as limit orders at 50% below.
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> held;
  for (const auto& o : bought) held[{o.o.wallet, o.o.instrument_id}] += o.filled;
  std::vector<wire::order> sells;
  for (const auto& [k, q] : held) {
    if (q / 2 < lot) continue;
    wire::order o{};
    o.id = next_id++;
    o.wallet = k.first;
    o.instrument_id = k.second;
    o.quantity = q / 2 / lot * lot;
    o.limit_ticks = std::max<uint64_t>(1, feed.last_ticks(o.instrument_id - first_instrument) / 2);
    o.currency = etb;
    o.side = wire::order_side::sell;
    o.type = wire::order_type::limit;
    sells.push_back(o);
  }
  ASSERT_FALSE(sells.empty());
  std::vector<uint64_t> sold_ids;
  {
    // A sell of all a wallet holds, behind its first sell in the same batch, is refused:
    // the first sell reserves half. (In a later request the broker may already have
    // rejected the first sell, which frees what it reserved.)
    auto too_much = sells.front();
    too_much.id = next_id++;
    too_much.quantity = held[{too_much.wallet, too_much.instrument_id}];
    auto batch = sells;
    batch.push_back(too_much);
    auto r = app->call(wire::orders_body(batch));
    ASSERT_TRUE(r.ok) << r.failure;
    ASSERT_EQ(r.reply.results.size(), batch.size());
    for (size_t i = 0; i < sells.size(); ++i) {
      EXPECT_EQ(r.reply.results[i], result::ok) << "sell " << sells[i].id;
      sold_ids.push_back(sells[i].id);
    }
    EXPECT_EQ(r.reply.results.back(), result::insufficient_position);
  }
  auto sold = closed(sold_ids);
  ASSERT_EQ(sold.size(), sold_ids.size());
  sim.stop();
  feed.stop();

  // Every order closed; the money: each wallet paid its buys and got its sells exactly,
  // and holds nothing pending; the trading accounts hold the difference.
  uint64_t filled = 0, rejected = 0;
  std::map<uint64_t, int64_t> net;  // wallet -> proceeds less cost
  for (const auto* list : {&bought, &sold})
    for (const auto& o : *list) {
      const bool buy = o.o.side == wire::order_side::buy;
      net[o.o.wallet] += buy ? -int64_t(o.paid) : int64_t(o.paid);
      filled += o.state == uint8_t(actors::portfolio::order_state::filled);
      rejected += o.state == uint8_t(actors::portfolio::order_state::rejected);
      EXPECT_NE(o.state, uint8_t(actors::portfolio::order_state::open));
      EXPECT_EQ(o.settle_refused, 0);
    }
  EXPECT_GT(filled, 0u);
  EXPECT_GT(rejected, 0u);
  std::vector<uint64_t> ids;
  for (uint64_t w = 1; w <= wallets; ++w) ids.push_back(w);
  auto r = app->call(wire::lookup_accounts_body(ids));
  ASSERT_TRUE(r.ok);
  int64_t traded = 0;
  for (const auto& a : r.reply.accounts) {
    EXPECT_EQ(a.debits_pending, 0u) << "wallet " << a.id;
    EXPECT_EQ(a.credits_pending, 0u) << "wallet " << a.id;
    EXPECT_EQ(int64_t(a.credits_posted) - int64_t(a.debits_posted), 1'000'000'000 + net[a.id]) << "wallet " << a.id;
    traded += net[a.id];
  }
  const auto t0 = eng->lookup_accounts({actors::trading::account_for(etb, 0, 2), actors::trading::account_for(etb, 1, 2)});
  int64_t trading_balance = 0;
  for (const auto& a : t0.accounts) trading_balance += int64_t(a.credits_posted) - int64_t(a.debits_posted);
  EXPECT_EQ(trading_balance, -traded);
  const auto s = sim.stats();
  EXPECT_GE(s.connects, 2u);
  EXPECT_EQ(s.errors, 0u);
  // Answers to orders closed meanwhile (order_not_open) aside, none is refused: every part
  // fill whole lots, within the band.
  std::string refusals;
  for (const auto& [why, n] : refused)
    if (!why.starts_with("order_not_open")) refusals += " " + why + " x" + std::to_string(n);
  EXPECT_EQ(refusals, "");
  const auto check = eng->check_balances();
  EXPECT_TRUE(check.balanced) << check.detail;
  // What operators see: no order open, every fill counted.
  uint64_t open = 0, fills = 0, taken = 0;
  for (const auto& rep : eng->shard_reports()) {
    open += rep.orders_open;
    fills += rep.fills;
  }
  for (const auto* list : {&bought, &sold})
    for (const auto& o : *list) taken += o.fills;
  EXPECT_EQ(open, 0u);
  EXPECT_EQ(fills, taken);
  const std::string text = test::render_answered(*eng, srv.get());
  EXPECT_NE(text.find("mesob_orders_open{shard=\"0\"} 0"), std::string::npos);
  EXPECT_NE(text.find("mesob_order_fills_total{shard=\"1\"}"), std::string::npos);

  // A rebalance over the protocol: the model puts 30% in the first instrument; wallet 1
  // gets the orders that move it there, placed in one batch.
  const auto m = actors::customers::model_op(uint8_t(wire::risk_profile::moderate), first_instrument, 3000);
  ASSERT_EQ(eng->policies({m}).results.at(0), result::ok);
  wire::rebalance_request rq;
  rq.wallet = 1;
  rq.first_order_id = 1'000'000;
  rq.drift_bp = 100;
  rq.slippage_bp = 200;
  auto rr = app->call(wire::rebalance_body(rq));
  ASSERT_TRUE(rr.ok) << rr.failure;
  ASSERT_EQ(rr.reply.kind, wire::reply_kind::placed_orders);
  ASSERT_FALSE(rr.reply.placed.empty());
  EXPECT_EQ(rr.reply.placed.size(), rr.reply.results.size());
  EXPECT_EQ(rr.reply.placed[0].id, 1'000'000u);
  EXPECT_EQ(rr.reply.placed[0].instrument_id, first_instrument);
  EXPECT_EQ(rr.reply.placed[0].side, wire::order_side::buy);
  EXPECT_EQ(rr.reply.results[0], result::ok);
  rq.reserved = 1;
  rr = app->call(wire::rebalance_body(rq));
  ASSERT_TRUE(rr.ok);
  EXPECT_TRUE(rr.reply.placed.empty());
  EXPECT_EQ(rr.reply.results, std::vector<result>{result::reserved_field});
  srv->stop();
  eng->set_order_sink(nullptr);
}

// A broker that takes orders and never answers (a hang): each order waits its answer
// timeout, is retried there, then goes to the fallback broker, which fills it; after
// twenty timeouts the hung broker's breaker opens and new orders go to the fallback at once.
TEST(trading, a_hung_broker_times_out_and_its_fallback_fills) {
  temp_dir dir;
  auto eng = open_engine(test_config(dir.path()));
  ASSERT_TRUE(eng);
  const auto etb = wire::currency("ETB");
  const std::vector<uint8_t> app_secret(32, 0x11);
  engine::server_config scfg;
  scfg.port = 0;
  scfg.gateways = {{"app", app_secret, wire::roles::payments}};
  std::string err;
  auto srv = engine::server::start(*eng, scfg, &err);
  ASSERT_TRUE(srv) << err;
  eng->set_order_sink([&srv](const std::string& broker, std::vector<wire::order_instruction>&& list) {
    engine::push_order_instructions(*srv, broker, list);
  });
  auto hung = make_gateway_registration("hung", 9001, 1, 100);  // answers due in 100 ms
  auto fallback = make_gateway_registration("fallback", 9002, 2, 5000);
  for (auto* g : {&hung, &fallback}) {
    g->roles = wire::roles::broker;
    g->rail = 3;
  }
  ASSERT_EQ(eng->gateways({hung, fallback}).results, std::vector<result>(2, result::ok));
  constexpr uint64_t wallets = 8, bank = 5000, fund = 100;
  ASSERT_NO_FATAL_FAILURE(verified_customers(*eng, wallets, bank, 1'000'000, 1'000'000'000));
  ASSERT_EQ(eng->instruments({actors::market::definition(fund, "FUND", wire::asset_class::fund, etb, 1, 1,
                                                         {2000, 60'000, 600'000, 30'000})})
                .results.at(0),
            result::ok);
  wire::price p;
  p.instrument_id = fund;
  p.ticks = 100;
  p.sequence = 1;
  ASSERT_EQ(eng->prices({p}).results.at(0), result::ok);

  const uint64_t seed = test_seed("trading_hung");
  auto sim_of = [&](const wire::gateway_op& g, bool silent) {
    tools::broker_sim_options bo;
    bo.port = srv->port();
    bo.gateway = g.id;
    bo.secret.assign(g.secret, g.secret + g.secret_bytes);
    bo.latency_ms = 1;
    bo.silent = silent;
    bo.price_of = [](uint64_t) { return uint64_t(100); };  // the last price
    bo.seed = seed + (silent ? 1 : 2);
    return std::make_unique<tools::broker_sim>(bo);
  };
  auto hung_sim = sim_of(hung, true), fallback_sim = sim_of(fallback, false);
  hung_sim->start();
  fallback_sim->start();
  for (int i = 0; i < 500 && !(hung_sim->connected() && fallback_sim->connected()); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(hung_sim->connected() && fallback_sim->connected());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // their sessions are logged

  wire::client::options co;
  co.port = srv->port();
  co.gateway = "app";
  co.secret = app_secret;
  auto app = wire::client::connect(co, &err);
  ASSERT_TRUE(app) << err;
  auto place = [&](uint64_t first, uint64_t n) {
    std::vector<wire::order> batch;
    std::vector<uint64_t> ids;
    for (uint64_t id = first; id < first + n; ++id) {
      wire::order o{};
      o.id = id;
      o.wallet = 1 + id % wallets;
      o.instrument_id = fund;
      o.quantity = 1 + id % 7;
      o.limit_ticks = 150;
      o.currency = etb;
      o.side = wire::order_side::buy;
      o.type = wire::order_type::market;
      batch.push_back(o);
      ids.push_back(id);
    }
    auto r = app->call(wire::orders_body(batch));
    EXPECT_TRUE(r.ok) << r.failure;
    EXPECT_EQ(r.reply.results, std::vector<result>(n, result::ok));
    return ids;
  };
  auto wait_filled = [&](const std::vector<uint64_t>& ids) {
    std::string open;
    auto views = wait_closed(*app, ids, &open);
    if (views.empty()) ADD_FAILURE() << "orders still open:" << open;
    return views;
  };

  const uint32_t fallback_number = eng->gateway_registry()->find("fallback")->number;
  // The first 30 go to the hung broker and time out there (its breaker opens at the
  // twentieth timeout); the fallback fills every one.
  const auto first = wait_filled(place(1, 30));
  ASSERT_EQ(first.size(), 30u);
  for (const auto& o : first) {
    EXPECT_EQ(o.state, uint8_t(actors::portfolio::order_state::filled)) << "order " << o.o.id;
    EXPECT_EQ(o.broker, fallback_number) << "order " << o.o.id;
    EXPECT_GE(o.attempts, 2) << "order " << o.o.id << ": the hung broker first";
  }
  EXPECT_GE(hung_sim->stats().instructions, 30u);
  EXPECT_EQ(hung_sim->stats().fills_sent + hung_sim->stats().accepts_sent, 0u);
  // With the breaker open (or half open, probing with one order), new orders go to the
  // fallback at once.
  const auto second = wait_filled(place(100, 30));
  ASSERT_EQ(second.size(), 30u);
  uint32_t direct = 0;
  for (const auto& o : second) {
    EXPECT_EQ(o.state, uint8_t(actors::portfolio::order_state::filled)) << "order " << o.o.id;
    direct += o.attempts == 1;
  }
  EXPECT_GE(direct, 29u) << "at most one probe to the hung broker";
  uint64_t timeouts = 0;
  for (const auto& r : eng->shard_reports()) timeouts += r.order_timeouts;
  EXPECT_GE(timeouts, 30u);
  const std::string text = test::render_answered(*eng, srv.get());
  EXPECT_NE(text.find("mesob_order_timeouts_total{shard=\"0\"}"), std::string::npos);
  EXPECT_NE(text.find("mesob_orders_dead{shard=\"0\"} 0"), std::string::npos);
  EXPECT_NE(text.find("mesob_order_breaker_state{gateway=\"hung\",shard="), std::string::npos) << "its breakers";
  bool tripped = false;
  for (const auto& row : eng->lookup_payouts(0, 0, false).order_breakers)
    tripped = tripped || (row.gateway == eng->gateway_registry()->find("hung")->number && row.b.trips > 0);
  EXPECT_TRUE(tripped) << "the hung broker's breaker opened on a shard";
  // Every fill moved its money; nothing is held.
  uint64_t paid = 0;
  for (const auto* list : {&first, &second})
    for (const auto& o : *list) paid += o.paid;
  auto r = app->call(wire::lookup_accounts_body(std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  ASSERT_TRUE(r.ok);
  uint64_t spent = 0;
  for (const auto& a : r.reply.accounts) {
    EXPECT_EQ(a.debits_pending, 0u);
    spent += a.debits_posted;
  }
  EXPECT_EQ(spent, paid);
  // The positions over the protocol: every unit filled, at its cost.
  uint64_t filled = 0;
  for (const auto* list : {&first, &second})
    for (const auto& o : *list) filled += o.filled;
  auto pr = app->call(wire::lookup_positions_body(std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 77}));
  ASSERT_TRUE(pr.ok) << pr.failure;
  ASSERT_EQ(pr.reply.kind, wire::reply_kind::positions);
  EXPECT_EQ(pr.reply.results.back(), result::account_not_found);
  uint64_t units = 0, cost = 0;
  for (const auto& pos : pr.reply.positions) {
    EXPECT_EQ(pos.instrument_id, fund);
    units += pos.quantity;
    cost += pos.cost;
  }
  EXPECT_EQ(units, filled);
  EXPECT_EQ(cost, paid);
  auto too_many = app->call(wire::lookup_positions_body(std::vector<uint64_t>(17, 1)));
  EXPECT_FALSE(too_many.ok) << "17 wallets: more than a request may read";
  hung_sim->stop();
  fallback_sim->stop();
  const auto check = eng->check_balances();
  EXPECT_TRUE(check.balanced) << check.detail;
}
