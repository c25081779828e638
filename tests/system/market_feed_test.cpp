// The market-data feed of the gateway simulator (tools/market_feed.hpp) against a real
// server on loopback: it lists its instruments, prices them as random walks with jumps,
// and the engine's market ends with every price it took, the feed's last prices, and
// move halts where the jumps were.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "engine/server.hpp"
#include "support/engine_fixture.hpp"
#include "support/seed.hpp"
#include "tools/market_feed.hpp"

using namespace mesob;
using namespace mesob::test;

TEST(market_feed, prices_instruments_with_jumps_into_halts) {
  temp_dir dir;
  auto eng = open_engine(test_config(dir.path()));
  ASSERT_TRUE(eng);
  const std::vector<uint8_t> secret(32, 0x5a);
  engine::server_config scfg;
  scfg.port = 0;
  scfg.gateways = {{"feed", secret, wire::roles::market_data}};
  std::string err;
  auto srv = engine::server::start(*eng, scfg, &err);
  ASSERT_TRUE(srv) << err;

  tools::market_feed_options o;
  o.port = srv->port();
  o.gateway = "feed";
  o.secret = secret;
  for (uint64_t id = 100; id < 120; ++id) o.instruments.push_back(id);
  o.define = true;
  o.definition.cls = wire::asset_class::fund;
  o.definition.currency = wire::currency("ETB");
  o.definition.tick = 1;
  o.definition.lot = 1;
  o.definition.move_bp = 1000;
  o.definition.move_window_ms = 60'000;
  o.definition.stale_ms = 600'000;
  o.definition.halt_ms = 1;
  o.prices_per_s = 50'000;
  o.prices_max = 40'000;
  o.batch_max = 512;
  o.volatility_bp = 1;  // a walk of ~2,000 steps spreads ~0.5%: only jumps move 10%
  o.jump_rate = 0.002;
  o.jump_bp = 2500;
  o.seed = test_seed("market_feed");
  tools::market_feed feed(o);
  feed.start();
  // The feed drops its connection twice with requests in flight: what was not answered
  // is sent again, and nothing counts twice.
  for (int drops = 0; drops < 2;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(40));
    if (feed.stats().prices_sent > uint64_t(drops + 1) * 10'000) {
      feed.disconnect(20);
      ++drops;
    }
  }
  for (int i = 0; i < 1000 && !feed.stats().done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  feed.stop();
  const auto s = feed.stats();
  ASSERT_TRUE(s.done) << "sent " << s.prices_sent << " ok " << s.prices_ok;
  EXPECT_EQ(s.defined, 20u);
  EXPECT_GE(s.connects, 3u);
  EXPECT_EQ(s.prices_ok, o.prices_max);
  EXPECT_EQ(s.prices_refused, 0u);
  EXPECT_GT(s.jumps, 0u);

  const auto all = eng->lookup_instruments({}).instruments;
  ASSERT_EQ(all.size(), 20u);
  uint64_t prices = 0, halts = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].def.instrument_id, 100 + i);
    EXPECT_EQ(all[i].def.cls, wire::asset_class::fund);
    EXPECT_EQ(all[i].last_ticks, feed.last_ticks(i)) << "instrument " << all[i].def.instrument_id;
    prices += all[i].prices;
    halts += all[i].halts;
  }
  EXPECT_EQ(prices, o.prices_max);
  // Each jump of 25% moves a price more than 10% from its window: a move halt, unless
  // that instrument was halted already (a halt lasts 1 ms here).
  EXPECT_GT(halts, 0u);
  EXPECT_LE(halts, s.jumps) << "a halt without a jump";

  // A feed started again (a new process: its sequences from 1, its walk from start_ticks)
  // counts on from the engine's sequences and prices: every price taken, and no halt from
  // a jump back to start_ticks. Before, every price was refused sequence_out_of_order.
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // (the last move halts, 1 ms, are over)
  auto again = o;
  again.define = false;
  again.prices_max = 2'000;
  again.jump_rate = 0;
  again.seed = o.seed + 1;
  tools::market_feed restarted(again);
  restarted.start();
  for (int i = 0; i < 1000 && !restarted.stats().done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  restarted.stop();
  const auto s2 = restarted.stats();
  ASSERT_TRUE(s2.done) << "sent " << s2.prices_sent << " ok " << s2.prices_ok << " refused " << s2.prices_refused;
  EXPECT_EQ(s2.prices_ok, again.prices_max);
  EXPECT_EQ(s2.prices_refused, 0u);
  uint64_t prices_after = 0, halts_after = 0;
  const auto after = eng->lookup_instruments({}).instruments;
  for (size_t i = 0; i < after.size(); ++i) {
    prices_after += after[i].prices;
    halts_after += after[i].halts;
    EXPECT_EQ(after[i].last_ticks, restarted.last_ticks(i)) << "instrument " << after[i].def.instrument_id;
  }
  EXPECT_EQ(prices_after, o.prices_max + again.prices_max);
  EXPECT_EQ(halts_after, halts) << "a walk started again at start_ticks jumps";
  srv->stop();
}
