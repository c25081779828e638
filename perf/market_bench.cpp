// market_bench: market data into the engine, durable: prices per second embedded and over
// TCP, and what a price costs the transfers running beside it.
//
//   market_bench [--instruments N] [--prices N] [--shards N] [--out FILE] [--dir DIR]
//
// One engine (one shard per core, durable) with N instruments (default 1,000).
//  1. Embedded: N prices (default 2,000,000) in requests of 8,192, 8 callers in flight,
//     instruments in turn, each price a step of a random walk. Prices per second.
//  2. Over TCP: the gateway simulator's market-data feed (tools/market_feed.hpp) through
//     the server on loopback, 8,192 prices a request, 8 in flight, as fast as it goes.
//  3. Transfers alone, then transfers with a feed of 200,000 prices/s running, 3 s each
//     (8,192-transfer batches, 2 callers), alternating, three rounds: the medians of the
//     transfer rate each way and of the round's loss.
// Every shard applies every price to its copy of the market (actors/market.hpp), so the
// figures say what that replication costs. Writes FILE as one JSON object of metric
// name -> number.
#include "perf/bench_common.hpp"
#include "tools/market_feed.hpp"

using namespace mesob;
using namespace mesob::bench;

namespace {

wire::instrument_op definition(uint64_t id) {
  return actors::market::definition(id, "S" + std::to_string(id), wire::asset_class::equity, wire::currency("ETB"), 1, 1,
                                    {2000, 60'000, 600'000, 1'000});
}

}  // namespace

int main(int argc, char** argv) {
  std::string out = "perf/results/market.json", dir = "/tmp/mesob-market-bench";
  uint64_t instruments = 1000, prices = 2'000'000;
  uint32_t shards = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--instruments") instruments = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--prices") prices = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--shards") shards = uint32_t(std::strtoul(next().c_str(), nullptr, 10));
    else if (a == "--out") out = next();
    else if (a == "--dir") dir = next();
    else {
      std::fprintf(stderr, "usage: market_bench [--instruments N] [--prices N] [--shards N] [--out FILE] [--dir DIR]\n");
      return 2;
    }
  }
  constexpr uint32_t rounds = 3;
  constexpr uint64_t sets = 2 + rounds;  // the embedded run's, the TCP feed's, one per round beside transfers
  if (instruments == 0 || instruments > actors::market::instruments_max / sets || prices < 8192) {
    std::fprintf(stderr, "market_bench: 1 .. 13,107 instruments (five sets are listed) and at least 8,192 prices\n");
    return 2;
  }
  std::filesystem::remove_all(dir);
  auto e = open_engine(dir, shards, 200'000, true);
  // Three sets of instruments: the embedded run's, the TCP feed's and the feed beside
  // transfers' (each feed starts its sequences at 1).
  auto define = [&](uint64_t first) {
    std::vector<wire::instrument_op> defs;
    for (uint64_t id = first; id < first + instruments; ++id) defs.push_back(definition(id));
    for (size_t at = 0; at < defs.size(); at += 8192) {
      auto r = e->instruments({defs.begin() + long(at), defs.begin() + long(std::min(defs.size(), at + 8192))});
      for (auto x : r.results)
        if (x != wire::result::ok) {
          std::fprintf(stderr, "market_bench: define: %s\n", std::string(wire::result_name(x)).c_str());
          std::exit(1);
        }
    }
  };
  for (uint64_t set = 0; set < sets; ++set) define(set * instruments + 1);
  record("instruments", double(instruments));
  record("shards", shards);

  // 1. Embedded.
  {
    std::vector<uint64_t> px(instruments + 1, 10'000), seq(instruments + 1, 0);
    std::mt19937_64 rng(7);
    std::vector<std::vector<wire::price>> batches;
    for (uint64_t made = 0, id = 1; made < prices; made += 8192) {
      std::vector<wire::price> b;
      for (uint32_t k = 0; k < 8192; ++k, id = id % instruments + 1) {
        px[id] = std::max<uint64_t>(1, px[id] + rng() % 21 - 10);
        b.push_back({id, px[id], ++seq[id]});
      }
      batches.push_back(std::move(b));
    }
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> ok{0};
    const auto t0 = clk::now();
    std::vector<std::thread> callers;
    for (int c = 0; c < 8; ++c)
      callers.emplace_back([&] {
        // Each caller takes batches in turn; a price may arrive after a later one of its
        // instrument (another caller's): sequence_out_of_order, counted apart.
        for (size_t i; (i = next.fetch_add(1)) < batches.size();) {
          auto r = e->prices(batches[i]);
          for (auto x : r.results) ok += x == wire::result::ok;
        }
      });
    for (auto& t : callers) t.join();
    const double s = since(t0);
    // Callers overtake one another: a batch behind a later one of the same instruments is
    // refused whole (sequence_out_of_order). Counted: those taken.
    record("prices_per_s_embedded", double(ok.load()) / s);
    record("prices_taken_share_embedded", double(ok.load()) / (double(batches.size()) * 8192));
  }

  // 2. Over TCP through the feed.
  engine::server_config scfg;
  scfg.port = 0;
  const std::vector<uint8_t> secret(32, 0x6d);
  scfg.gateways = {{"feed", secret, wire::roles::market_data}};
  std::string err;
  auto srv = engine::server::start(*e, scfg, &err);
  if (!srv) {
    std::fprintf(stderr, "market_bench: server: %s\n", err.c_str());
    return 1;
  }
  tools::market_feed_options fo;
  fo.port = srv->port();
  fo.gateway = "feed";
  fo.secret = secret;
  for (uint64_t id = 1; id <= instruments; ++id) fo.instruments.push_back(id);
  fo.start_ticks = 10'000;
  fo.prices_per_s = 1e9;
  fo.batch_max = 8192;
  fo.in_flight_max = 8;
  fo.volatility_bp = 5;
  fo.jump_rate = 0;
  fo.seed = 11;
  fo.instruments.clear();
  for (uint64_t id = instruments + 1; id <= 2 * instruments; ++id) fo.instruments.push_back(id);
  fo.prices_max = prices;
  {
    tools::market_feed feed(fo);
    const auto t0 = clk::now();
    feed.start();
    while (!feed.stats().done) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const double s = since(t0);
    feed.stop();
    const auto st = feed.stats();
    record("prices_per_s_tcp", double(st.prices_ok) / s);
    record("prices_refused_tcp", double(st.prices_refused));
  }

  // 3. Transfers alone, then beside the feed, alternating, three rounds: the medians.
  // Each round's feed prices a set of its own (a new feed starts its sequences at 1).
  create_accounts(*e, 100'000);
  pair_picker pick(100'000, shards, 10);
  fo.prices_max = 0;
  fo.prices_per_s = 200'000;
  std::vector<double> alone, beside, loss, feed_rates;
  for (uint32_t round = 0; round < rounds; ++round) {
    alone.push_back(throughput(*e, pick, 8192, 2, 4, 3.0));
    fo.seed = 12 + round;
    fo.instruments.clear();
    for (uint64_t id = (2 + round) * instruments + 1; id <= (3 + round) * instruments; ++id) fo.instruments.push_back(id);
    tools::market_feed feed(fo);
    feed.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const uint64_t before = feed.stats().prices_ok;
    const auto t0 = clk::now();
    beside.push_back(throughput(*e, pick, 8192, 2, 4, 3.0));
    feed_rates.push_back(double(feed.stats().prices_ok - before) / since(t0));
    feed.stop();
    loss.push_back(100.0 * (1.0 - beside.back() / alone.back()));
    std::printf("round %u: alone %.0f, beside %.0f transfers/s, loss %.1f%%\n", round + 1, alone.back(), beside.back(),
                loss.back());
  }
  record("transfers_per_s_alone", percentile(alone, 50));
  record("transfers_per_s_with_200k_prices_per_s", percentile(beside, 50));
  record("prices_per_s_beside_transfers", percentile(feed_rates, 50));
  record("transfer_loss_pct_with_prices", percentile(loss, 50));
  srv->stop();
  e->close();
  write_json(out);
  std::filesystem::remove_all(dir);
  return 0;
}
