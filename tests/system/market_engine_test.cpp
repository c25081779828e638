// The market inside the engine (actors/market.hpp): instruments, prices and halts in log
// order on every shard's copy, their events, and restarts from the log and from snapshots.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "actors/market.hpp"
#include "actors/trading.hpp"
#include "support/engine_fixture.hpp"
#include "support/event_files.hpp"

using namespace mesob;
using wire::result;

namespace {

constexpr uint64_t ms = 1'000'000ull;

// 5% moves within a minute, stale after 10 s, move halts of 30 s.
wire::instrument_op define(uint64_t id, const char* symbol, wire::asset_class cls = wire::asset_class::equity) {
  return actors::market::definition(id, symbol, cls, wire::currency("ETB"), 1, 1, {500, 60'000, 10'000, 30'000});
}

wire::instrument_op by_hand(uint64_t id, wire::instrument_op_kind k) {
  wire::instrument_op op;
  op.instrument_id = id;
  op.kind = k;
  return op;
}

class market_engine : public ::testing::Test {
 protected:
  explicit market_engine(bool checkpoint_on_close = true) : fx_(2, checkpoint_on_close) {}
  engine::engine& e() { return fx_.e(); }
  wire::instrument_state state(uint64_t id) {
    auto r = e().lookup_instruments({id});
    EXPECT_EQ(r.results.size(), 1u);
    EXPECT_EQ(r.instruments.size(), 1u);
    return r.instruments.empty() ? wire::instrument_state{} : r.instruments[0];
  }
  // Waits (real time) until the engine has ticked past the clock and the instrument's
  // reasons are `want`.
  bool wait_reasons(uint64_t id, uint8_t want) {
    for (int i = 0; i < 400; ++i) {
      if (state(id).reasons == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  test::engine_fixture fx_;
};

class market_engine_replay : public market_engine {
 protected:
  market_engine_replay() : market_engine(false) {}
};

}  // namespace

TEST_F(market_engine, DefinitionsPricesAndEveryRefusal) {
  auto r = e().instruments({define(1, "ETEL"), define(2, "CBE.B", wire::asset_class::bond), define(1, "ETEL"),
                            define(3, "ETEL"), by_hand(9, wire::instrument_op_kind::halt)});
  EXPECT_EQ(r.results, (std::vector<result>{result::ok, result::ok, result::ok, result::symbol_in_use,
                                            result::instrument_not_found}));
  auto changed = define(1, "ETEL");
  changed.lot = 100;
  auto bad_symbol = define(4, "etel");
  auto bad_tick = define(4, "X");
  bad_tick.tick = 0;
  auto bad_rule = define(4, "X");
  bad_rule.stale_ms = 0;
  auto bad_kind = define(4, "X");
  bad_kind.kind = wire::instrument_op_kind(7);
  auto halt_with_fields = by_hand(1, wire::instrument_op_kind::halt);
  halt_with_fields.currency = wire::currency("ETB");
  r = e().instruments({changed, bad_symbol, bad_tick, bad_rule, bad_kind, halt_with_fields, define(0, "Y")});
  EXPECT_EQ(r.results, (std::vector<result>{result::exists_with_different_fields, result::symbol_invalid,
                                            result::tick_invalid, result::halt_rule_invalid,
                                            result::instrument_op_invalid, result::instrument_op_invalid,
                                            result::id_must_not_be_zero}));
  // No price yet: stale. Prices: bad ones refused, good ones start trading.
  EXPECT_EQ(state(1).reasons, wire::halt_reasons::stale);
  r = e().prices({{1, 100, 1}, {1, 0, 2}, {8, 5, 1}, {0, 5, 1}, {1, (1ull << 53) + 1, 2}, {2, 990, 1}, {1, 100, 0}});
  EXPECT_EQ(r.results, (std::vector<result>{result::ok, result::price_invalid, result::instrument_not_found,
                                            result::id_must_not_be_zero, result::price_invalid, result::ok,
                                            result::price_invalid}));
  // The latest price again is a repeat; other ticks under its sequence, or an older
  // sequence, are refused; none of them counts.
  r = e().prices({{1, 100, 1}, {1, 101, 1}, {1, 105, 3}, {1, 104, 2}});
  EXPECT_EQ(r.results, (std::vector<result>{result::ok, result::exists_with_different_fields, result::ok,
                                            result::sequence_out_of_order}));
  EXPECT_EQ(state(1).prices, 2u);
  EXPECT_EQ(state(1).last_ticks, 105u);
  const auto s = state(1);
  EXPECT_EQ(s.reasons, 0);
  EXPECT_EQ(s.def.lot, 1u) << "the refused change changed nothing";
  EXPECT_EQ(e().lookup_instruments({77}).results, std::vector<result>{result::instrument_not_found});
  // Every instrument, by id.
  const auto all = e().lookup_instruments({});
  ASSERT_EQ(all.instruments.size(), 2u);
  EXPECT_EQ(all.instruments[0].def.instrument_id, 1u);
  EXPECT_EQ(all.instruments[1].def.instrument_id, 2u);
  EXPECT_EQ(all.instruments[1].def.cls, wire::asset_class::bond);
}

// A definition refused for its fields changes nothing: before, the trading accounts of
// its currency were made ahead of it all the same (the currency then showed in look-ups
// and totals).
TEST_F(market_engine, ADefinitionRefusedForItsFieldsMakesNoTradingAccounts) {
  const auto usd = wire::currency("USD");
  std::vector<uint64_t> ids;
  for (uint32_t s = 0; s < 2; ++s) ids.push_back(actors::trading::account_for(usd, s, 2));
  auto bad = actors::market::definition(5, "USD.X", wire::asset_class::equity, usd, 1, 1, {500, 60'000, 10'000, 30'000});
  bad.tick = 0;
  EXPECT_EQ(e().instruments({bad}).results, std::vector<result>{result::tick_invalid});
  for (const auto& a : e().lookup_accounts(ids).accounts) EXPECT_EQ(a.id, 0u) << "made for a refused definition";
  bad.tick = 1;
  EXPECT_EQ(e().instruments({bad}).results, std::vector<result>{result::ok});
  const auto made = e().lookup_accounts(ids).accounts;
  ASSERT_EQ(made.size(), 2u);
  for (size_t i = 0; i < made.size(); ++i) EXPECT_EQ(made[i].id, ids[i]);

  // Nor one refused for the market's state: a symbol in use (earlier in the same request
  // too), an id defined with other fields. Before, each made its currency's accounts.
  for (const auto c : {wire::currency("EUR"), wire::currency("GBP"), wire::currency("KES")}) {
    const std::string code = wire::currency_name(c);
    const auto in_use = actors::market::definition(6, "USD.X", wire::asset_class::equity, c, 1, 1, {500, 60'000, 10'000, 30'000});
    auto redefined = bad;
    redefined.currency = c;
    auto first = actors::market::definition(7, "PAIR", wire::asset_class::equity, usd, 1, 1, {500, 60'000, 10'000, 30'000});
    auto second = actors::market::definition(8, "PAIR", wire::asset_class::equity, c, 1, 1, {500, 60'000, 10'000, 30'000});
    const auto r = e().instruments({in_use, redefined, first, second}).results;
    EXPECT_EQ(r, (std::vector<result>{result::symbol_in_use, result::exists_with_different_fields,
                                      result::ok /* made, then repeated */, result::symbol_in_use}));
    std::vector<uint64_t> theirs;
    for (uint32_t sh = 0; sh < 2; ++sh) theirs.push_back(actors::trading::account_for(c, sh, 2));
    for (const auto& a : e().lookup_accounts(theirs).accounts) EXPECT_EQ(a.id, 0u) << code << ": made for a refused definition";
  }
}

TEST_F(market_engine, HaltsByMoveByHandAndByTime) {
  ASSERT_EQ(e().instruments({define(1, "ETEL")}).results[0], result::ok);
  ASSERT_EQ(e().prices({{1, 1000, 1}, {1, 1040, 2}}).results, (std::vector<result>{result::ok, result::ok}));
  EXPECT_EQ(state(1).reasons, 0);
  ASSERT_EQ(e().prices({{1, 1051, 3}}).results[0], result::ok);  // over 5% above 1000
  auto s = state(1);
  EXPECT_EQ(s.reasons, wire::halt_reasons::move);
  EXPECT_EQ(s.halts, 1u);
  // An operator lifts it early; then halts and resumes by hand.
  EXPECT_EQ(e().instruments({by_hand(1, wire::instrument_op_kind::resume)}).results[0], result::ok);
  EXPECT_EQ(state(1).reasons, 0);
  EXPECT_EQ(e().instruments({by_hand(1, wire::instrument_op_kind::resume)}).results[0], result::instrument_not_halted);
  EXPECT_EQ(e().instruments({by_hand(1, wire::instrument_op_kind::halt)}).results[0], result::ok);
  EXPECT_EQ(state(1).reasons, wire::halt_reasons::manual);
  EXPECT_EQ(e().instruments({by_hand(1, wire::instrument_op_kind::resume)}).results[0], result::ok);
  // No price for longer than stale_ms: the engine ticks and the look-up sees it stale.
  fx_.advance_s(11);
  ASSERT_TRUE(wait_reasons(1, wire::halt_reasons::stale));
  EXPECT_EQ(e().instruments({by_hand(1, wire::instrument_op_kind::resume)}).results[0], result::price_stale);
  ASSERT_EQ(e().prices({{1, 1052, 4}}).results[0], result::ok);
  EXPECT_EQ(state(1).reasons, 0);
}

TEST_F(market_engine_replay, ReplayAndSnapshotsRebuildTheMarketAndItsEvents) {
  ASSERT_EQ(e().instruments({define(1, "ETEL"), define(2, "CBE")}).results,
            (std::vector<result>{result::ok, result::ok}));
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  std::vector<wire::price> feed;
  for (uint64_t i = 0; i < 200; ++i) feed.push_back({1 + i % 2, 1000 + (i % 7), 1 + i / 2});
  ASSERT_EQ(e().prices(feed).results, std::vector<result>(feed.size(), result::ok));
  ASSERT_EQ(e().prices({{2, 2000, 101}}).results[0], result::ok);  // a move halt for 2
  ASSERT_EQ(e().instruments({by_hand(1, wire::instrument_op_kind::halt)}).results[0], result::ok);
  fx_.advance_s(31);  // 2's move halt ends; both go stale
  ASSERT_TRUE(wait_reasons(2, wire::halt_reasons::stale));
  ASSERT_TRUE(wait_reasons(1, wire::halt_reasons::manual | wire::halt_reasons::stale));
  const auto before = e().lookup_instruments({}).instruments;
  fx_.close();

  const auto first = test::all_events(fx_.dir());
  std::vector<wire::event> market;
  for (const auto& ev : first)
    if (ev.type >= wire::event_type::instrument_defined) market.push_back(ev);
  ASSERT_EQ(market.size(), 2u + 201u + 6u);
  // Each instrument: defined, resumed by its first price (stale over), ...
  EXPECT_EQ(market[0].type, wire::event_type::instrument_defined);
  EXPECT_EQ(market[2].type, wire::event_type::price);
  EXPECT_EQ(market[3].type, wire::event_type::instrument_resumed);
  EXPECT_EQ(market[3].code, wire::halt_reasons::stale);
  std::vector<std::pair<wire::event_type, uint64_t>> halts;
  for (const auto& ev : market)
    if (ev.type == wire::event_type::instrument_halted || ev.type == wire::event_type::instrument_resumed)
      halts.emplace_back(ev.type, ev.account_a);
  using T = wire::event_type;
  EXPECT_EQ(halts, (std::vector<std::pair<T, uint64_t>>{{T::instrument_resumed, 1},
                                                        {T::instrument_resumed, 2},
                                                        {T::instrument_halted, 2},    // the move
                                                        {T::instrument_halted, 1},    // by hand
                                                        {T::instrument_halted, 1},    // stale (while halted by hand)
                                                        {T::instrument_halted, 2}}))  // stale while its move halt lasts
      << "2's move halt ending while it is stale is no resume";

  // Replay from the log alone writes the same events again and the same market.
  const uint64_t past = test::first_past_snapshot(fx_.dir(), first);
  ASSERT_NE(past, 0u);
  test::cut_event_log(fx_.dir(), past, 0);
  fx_.open();
  auto after = e().lookup_instruments({}).instruments;
  ASSERT_EQ(after.size(), before.size());
  EXPECT_EQ(std::memcmp(after.data(), before.data(), after.size() * sizeof after[0]), 0);
  ASSERT_TRUE(e().checkpoint(&err)) << err;  // now from a snapshot holding it all
  fx_.close();
  EXPECT_TRUE(test::same_events(test::all_events(fx_.dir()), first));
  fx_.open();
  after = e().lookup_instruments({}).instruments;
  EXPECT_EQ(std::memcmp(after.data(), before.data(), after.size() * sizeof after[0]), 0);
  // Three shards read the same market from the snapshot; a price still starts trading.
  fx_.close_snapshotted();
  fx_.set_shards(3);
  fx_.open();
  ASSERT_EQ(e().prices({{2, 2001, 102}}).results[0], result::ok);
  EXPECT_EQ(state(2).reasons, 0);
  EXPECT_EQ(state(1).reasons, wire::halt_reasons::manual | wire::halt_reasons::stale);
}

// An operator's resequence (the feed started its count again) is logged: the log's
// replay and a snapshot both keep it, and it makes one event.
TEST_F(market_engine_replay, AResequenceHoldsAcrossRestartsFromTheLogAndASnapshot) {
  ASSERT_EQ(e().instruments({define(1, "ETEL")}).results[0], result::ok);
  ASSERT_EQ(e().prices({{1, 1000, 500}}).results[0], result::ok);
  EXPECT_EQ(e().prices({{1, 1001, 1}}).results[0], result::sequence_out_of_order);
  auto looked = e().lookup_instruments({1});
  ASSERT_EQ(looked.instrument_sequences, std::vector<uint64_t>{500});
  auto q = by_hand(1, wire::instrument_op_kind::resequence);
  ASSERT_EQ(e().instruments({q}).results[0], result::ok);
  EXPECT_EQ(e().prices({{1, 1001, 1}}).results[0], result::ok);
  q.lot = 3;
  EXPECT_EQ(e().instruments({q}).results[0], result::instrument_op_invalid);
  fx_.close();
  std::vector<wire::event> resequenced;
  for (const auto& ev : test::all_events(fx_.dir()))
    if (ev.type == wire::event_type::instrument_resequenced) resequenced.push_back(ev);
  ASSERT_EQ(resequenced.size(), 1u);
  EXPECT_EQ(resequenced[0].ref.lo, 0u);
  EXPECT_EQ(resequenced[0].ref.hi, 500u);
  fx_.open();  // the log replayed
  EXPECT_EQ(e().lookup_instruments({1}).instrument_sequences, std::vector<uint64_t>{1});
  EXPECT_EQ(e().prices({{1, 1002, 1}}).results[0], result::exists_with_different_fields);
  EXPECT_EQ(e().prices({{1, 1002, 2}}).results[0], result::ok);
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  fx_.close();
  fx_.open();  // from the snapshot
  EXPECT_EQ(e().lookup_instruments({}).instrument_sequences, std::vector<uint64_t>{2});
  EXPECT_EQ(e().prices({{1, 1003, 2}}).results[0], result::exists_with_different_fields);
}

// A resequence to the sequence the last price took takes effect (rules version 18): a
// price at it is out of order, and it makes its event. Before, it was a repeat, and a
// price there the same as the last an ok that took nothing.
TEST_F(market_engine_replay, AResequenceToTheCurrentSequenceTakesEffect) {
  ASSERT_EQ(e().instruments({define(1, "ETEL")}).results[0], result::ok);
  ASSERT_EQ(e().prices({{1, 1000, 500}}).results[0], result::ok);
  auto q = by_hand(1, wire::instrument_op_kind::resequence);
  q.tick = 500;
  ASSERT_EQ(e().instruments({q}).results[0], result::ok);
  EXPECT_EQ(e().prices({{1, 1000, 500}}).results[0], result::sequence_out_of_order);
  ASSERT_EQ(e().instruments({q}).results[0], result::ok);  // the same again: no change, no event
  fx_.close();
  fx_.open();  // the log replayed
  EXPECT_EQ(e().prices({{1, 1000, 500}}).results[0], result::sequence_out_of_order);
  EXPECT_EQ(e().prices({{1, 1001, 501}}).results[0], result::ok);
  fx_.close();
  size_t events = 0;
  for (const auto& ev : test::all_events(fx_.dir()))
    events += ev.type == wire::event_type::instrument_resequenced && ev.ref.lo == 500 && ev.ref.hi == 500;
  EXPECT_EQ(events, 1u);
  fx_.open();
}

// A resequence in a log an older build wrote (version 8, when the kind was no kind) was
// refused there, and replays refused.
TEST(market_engine_log, a_resequence_in_a_version_8_record_replays_refused) {
  for (const uint16_t version : {uint16_t(8), uint16_t(9)}) {
    test::temp_dir dir;
    const auto kind_instruments = uint16_t(actors::op_kind::instrument_ops);
    const auto kind_prices = uint16_t(actors::op_kind::prices);
    const std::vector<wire::price> price{{1, 1000, 500}};
    test::write_batch_records(dir.path(), {{version, kind_instruments, 1, test::ops_bytes(std::vector{define(1, "ETEL")})},
                                           {version, kind_prices, 1, test::ops_bytes(price)},
                                           {version, kind_instruments, 1,
                                            test::ops_bytes(std::vector{by_hand(1, wire::instrument_op_kind::resequence)})}});
    std::string err;
    auto e = engine::engine::open(test::test_config(dir.path()), &err);
    ASSERT_TRUE(e) << err;
    EXPECT_EQ(e->lookup_instruments({1}).instrument_sequences, std::vector<uint64_t>{version == 8 ? 500u : 0u})
        << "version " << version;
  }
}

// Timers pending in a snapshot (a move halt running, prices about to go stale) fire after
// a restart from it at the times they were due, as they would have without the restart.
TEST_F(market_engine_replay, TimersPendingInASnapshotFireOnTimeAfterARestart) {
  ASSERT_EQ(e().instruments({define(1, "ETEL"), define(2, "CBE")}).results,
            (std::vector<result>{result::ok, result::ok}));
  ASSERT_EQ(e().prices({{1, 1000, 1}, {2, 1000, 1}}).results, (std::vector<result>{result::ok, result::ok}));
  const uint64_t priced_at = state(1).last_price_at;
  ASSERT_EQ(e().prices({{2, 1100, 2}}).results[0], result::ok);  // +10%: a move halt of 30 s
  const auto halted = state(2);
  ASSERT_EQ(halted.reasons, wire::halt_reasons::move);
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  fx_.close();
  fx_.open();  // from the snapshot: nothing to replay
  EXPECT_EQ(state(2).move_halt_until, halted.move_halt_until);
  fx_.advance_s(45);  // 1 and 2 go stale at 10 s; 2's move halt ends at 30 s
  ASSERT_TRUE(wait_reasons(1, wire::halt_reasons::stale));
  ASSERT_TRUE(wait_reasons(2, wire::halt_reasons::stale));
  fx_.close();
  std::vector<wire::event> halts;
  for (const auto& ev : test::all_events(fx_.dir()))
    if (ev.type == wire::event_type::instrument_halted || ev.type == wire::event_type::instrument_resumed)
      halts.push_back(ev);
  ASSERT_EQ(halts.size(), 5u);  // 1 and 2 trade; 2 halts on the move; 1 and 2 go stale
  EXPECT_EQ(halts[2].account_a, 2u);
  EXPECT_EQ(halts[2].flags, wire::halt_reasons::move);
  EXPECT_EQ(halts[3].account_a, 1u);
  EXPECT_EQ(halts[3].flags, wire::halt_reasons::stale);
  EXPECT_EQ(halts[3].timestamp, priced_at + 10'000 * ms + 1) << "at the time it went stale";
  EXPECT_EQ(halts[4].account_a, 2u);
  EXPECT_EQ(halts[4].flags, wire::halt_reasons::stale);
  EXPECT_EQ(halts[4].timestamp, halted.last_price_at + 10'000 * ms + 1);
  fx_.open();
  EXPECT_EQ(state(2).halts, 2u);
  EXPECT_EQ(state(1).halts, 1u);
}
