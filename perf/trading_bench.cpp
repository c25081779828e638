// trading_bench: orders end to end, durable: placed over TCP, pushed to a broker (the
// gateway simulator's, tools/broker_sim.hpp, answering at once), filled, and settled on
// the ledger.
//
//   trading_bench [--wallets N] [--orders N] [--batch N] [--window N] [--shards N]
//                 [--out FILE] [--dir DIR]
//
// One engine (one shard per core, durable), a server on loopback, N customer wallets
// (default 100,000: verified, funded) and 100 instruments priced once. A client places
// market buys of one lot (default 400,000 orders) in requests of `batch` (8,192) with
// `window` (4) requests in flight; the broker fills each one in full at the price as soon
// as its instruction arrives (latency 0), in requests of up to 8,192 answers.
//  - orders_filled_per_s: orders whose fill the engine took, per second, from the first
//    order sent to the last fill taken;
//  - orders_placed_per_s: orders placed per second (their replies), over the same run;
//  - order_to_fill_p50_us_max_rate / p99: per order of that run, from its request's send
//    to the reply to its fill (queueing behind the batches before it included).
// Then 5,000 orders one at a time (one order per request, the next sent once the last
// is filled):
//  - order_to_fill_engine_p50_us / p99_us: from the order's send to the reply to its
//    fill: the engine's time (placing and logging the order, pushing the instruction,
//    logging the fill: two durable commits) and two loopback round trips, and the
//    simulator's own loop time (it adds no latency of its own). An upper bound of the
//    engine's part.
// Writes FILE as one JSON object of metric name -> number.
#include <atomic>

#include "actors/customers.hpp"
#include "actors/market.hpp"
#include "actors/portfolio.hpp"
#include "perf/bench_common.hpp"
#include "tools/broker_sim.hpp"

using namespace mesob;
using namespace mesob::bench;

namespace {

void must(const engine::reply& r, const char* what) {
  if (r.st != engine::status::ok) {
    std::fprintf(stderr, "trading_bench: %s: %s\n", what, engine::status_name(r.st));
    std::exit(1);
  }
  for (auto x : r.results)
    if (x != wire::result::ok) {
      std::fprintf(stderr, "trading_bench: %s: %s\n", what, std::string(wire::result_name(x)).c_str());
      std::exit(1);
    }
}

uint64_t now_ns() { return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now().time_since_epoch()).count()); }

}  // namespace

int main(int argc, char** argv) {
  std::string out = "perf/results/trading.json", dir = "/tmp/mesob-trading-bench";
  uint64_t wallets = 100'000, orders = 400'000;
  uint32_t batch = 8192, window = 4;
  uint32_t shards = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--wallets") wallets = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--orders") orders = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--batch") batch = uint32_t(std::strtoul(next().c_str(), nullptr, 10));
    else if (a == "--window") window = uint32_t(std::strtoul(next().c_str(), nullptr, 10));
    else if (a == "--shards") shards = uint32_t(std::strtoul(next().c_str(), nullptr, 10));
    else if (a == "--out") out = next();
    else if (a == "--dir") dir = next();
    else {
      std::fprintf(stderr, "usage: trading_bench [--wallets N] [--orders N] [--batch N] [--window N] [--shards N] "
                           "[--out FILE] [--dir DIR]\n");
      return 2;
    }
  }
  if (wallets == 0 || orders == 0 || batch == 0 || batch > 8192 || window == 0 ||
      orders > wallets * actors::portfolio::open_orders_max) {
    std::fprintf(stderr, "trading_bench: wallets, orders, batch (1..8,192) and window must be positive, and at most "
                         "1,024 orders per wallet\n");
    return 2;
  }
  const auto etb = wire::currency("ETB");
  constexpr uint64_t instruments = 100, bank = 1ull << 40, price = 1000;
  auto e = open_engine(dir, shards, wallets + 16, true);
  record("shards", shards);
  record("wallets", double(wallets));

  // Customers: wallets, funded from a bank account, verified, moderate (funds).
  {
    wire::account src{};
    src.id = bank;
    src.currency = etb;
    src.kind = wire::account_kind::system;
    must(e->create_accounts({src}), "bank");
    wire::policy_op moderate{};
    moderate.kind = wire::policy_op_kind::profile;
    moderate.number = uint8_t(wire::risk_profile::moderate);
    moderate.classes = 1u << (uint8_t(wire::asset_class::fund) - 1);
    moderate.position_max = 1ull << 50;
    must(e->policies({actors::customers::tier_op(1, etb, 1ull << 40, 1ull << 40, 1ull << 50), moderate}), "policy");
    for (uint64_t first = 1; first <= wallets; first += 8192) {
      const uint64_t last = std::min(wallets, first + 8191);
      std::vector<wire::account> a;
      std::vector<wire::customer_op> c;
      std::vector<wire::transfer> t;
      for (uint64_t w = first; w <= last; ++w) {
        wire::account x{};
        x.id = w;
        x.currency = etb;
        x.kind = wire::account_kind::customer_wallet;
        x.flags = wire::account_flags::debits_must_not_exceed_credits;
        a.push_back(x);
        wire::customer_op k{};
        k.wallet = w;
        k.sequence = 1;
        k.kyc = wire::kyc_status::verified;
        k.profile = wire::risk_profile::moderate;
        k.tier = 1;
        c.push_back(k);
        wire::transfer f{};
        f.id = {w, 0};
        f.debit_account_id = bank;
        f.credit_account_id = w;
        f.amount = 1'000'000'000;
        f.currency = etb;
        t.push_back(f);
      }
      must(e->create_accounts(a), "wallets");
      must(e->customers(c), "customers");
      must(e->create_transfers(t), "funding");
    }
    std::vector<wire::instrument_op> defs;
    std::vector<wire::price> prices;
    for (uint64_t id = 1; id <= instruments; ++id) {
      defs.push_back(actors::market::definition(id, "F" + std::to_string(id), wire::asset_class::fund, etb, 1, 1,
                                                {9000, 60'000, 3'600'000, 1'000}));
      prices.push_back({id, price, 1});
    }
    must(e->instruments(defs), "instruments");
    must(e->prices(prices), "prices");
  }

  // The server, a registered broker, the simulator and the client.
  const std::vector<uint8_t> app_secret(32, 0x61);
  engine::server_config scfg;
  scfg.port = 0;
  scfg.gateways = {{"app", app_secret, wire::roles::payments}};
  std::string err;
  auto srv = engine::server::start(*e, scfg, &err);
  if (!srv) {
    std::fprintf(stderr, "trading_bench: server: %s\n", err.c_str());
    return 1;
  }
  e->set_order_sink([&srv](const std::string& b, std::vector<wire::order_instruction>&& list) {
    srv->push(b, wire::orders_topic, wire::order_instructions_body(list));
  });
  wire::gateway_op reg{};
  reg.kind = wire::gateway_op_kind::register_gateway;
  std::memcpy(reg.id, "broker", 6);
  reg.rail = 3;
  reg.priority = 1;
  reg.roles = wire::roles::broker;
  reg.answer_timeout_ms = 30'000;
  reg.currencies_n = 1;
  reg.currencies[0] = {etb, 0, bank + 1};
  reg.secret_bytes = 32;
  for (int i = 0; i < 32; ++i) reg.secret[i] = uint8_t(0x70 + i);
  must(e->gateways({reg}), "broker");

  constexpr uint64_t single_orders = 5000;
  std::vector<std::atomic<uint64_t>> sent_at(orders + single_orders + 1);
  std::vector<double> latency_us;
  latency_us.reserve(orders);
  std::atomic<uint64_t> filled{0}, refused{0};
  tools::broker_sim_options bo;
  bo.port = srv->port();
  bo.gateway = "broker";
  bo.secret.assign(reg.secret, reg.secret + 32);
  bo.latency_ms = 0;
  bo.acknowledge = false;  // it fills at once: the fill is the acknowledgement
  bo.in_flight_max = 8;
  bo.seed = 5;
  bo.price_of = [](uint64_t) { return price; };
  bo.on_answered = [&](const wire::order_answer& a, wire::result r) {
    if (r != wire::result::ok) {
      refused.fetch_add(1);
      return;
    }
    if (a.order_id < sent_at.size()) latency_us.push_back(double(now_ns() - sent_at[a.order_id].load()) / 1000.0);
    filled.fetch_add(1, std::memory_order_release);
  };
  tools::broker_sim sim(bo);
  sim.start();
  while (!sim.connected()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // its session is logged up

  wire::client::options co;
  co.port = srv->port();
  co.gateway = "app";
  co.secret = app_secret;
  auto cl = wire::client::connect(co, &err);
  if (!cl) {
    std::fprintf(stderr, "trading_bench: client: %s\n", err.c_str());
    return 1;
  }
  // The orders, made before the clock starts: order i buys one unit for wallet
  // 1 + (i - 1) % wallets, instruments in turn, at market with a limit twice the price.
  std::vector<std::vector<wire::order>> batches;
  for (uint64_t id = 1; id <= orders;) {
    std::vector<wire::order> b;
    for (; id <= orders && b.size() < batch; ++id) {
      wire::order o{};
      o.id = id;
      o.wallet = 1 + (id - 1) % wallets;
      o.instrument_id = 1 + (id - 1) % instruments;
      o.quantity = 1;
      o.limit_ticks = 2 * price;
      o.currency = etb;
      o.side = wire::order_side::buy;
      o.type = wire::order_type::market;
      b.push_back(o);
    }
    batches.push_back(std::move(b));
  }
  std::vector<std::vector<uint8_t>> bodies;
  for (const auto& b : batches) bodies.push_back(wire::orders_body(b));

  uint64_t placed = 0, not_placed = 0;
  const auto t0 = clk::now();
  std::deque<uint64_t> in_flight;
  size_t next = 0;
  double placed_s = 0;
  while (next < bodies.size() || !in_flight.empty()) {
    while (next < bodies.size() && in_flight.size() < window) {
      const uint64_t t = now_ns();
      for (const auto& o : batches[next]) sent_at[o.id].store(t, std::memory_order_relaxed);
      in_flight.push_back(cl->send(bodies[next]));
      ++next;
    }
    auto r = cl->wait(in_flight.front());
    in_flight.pop_front();
    if (!r.ok) {
      std::fprintf(stderr, "trading_bench: orders: %s\n", r.failure.c_str());
      return 1;
    }
    for (auto x : r.reply.results) (x == wire::result::ok ? placed : not_placed) += 1;
  }
  placed_s = since(t0);
  while (filled.load(std::memory_order_acquire) + refused.load() < placed && since(t0) < 600)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  const double filled_s = since(t0);
  const std::vector<double> max_rate = latency_us;  // the simulator's thread is done with them
  // One order at a time.
  for (uint64_t id = orders + 1; id <= orders + single_orders; ++id) {
    wire::order o = batches[0][0];
    o.id = id;
    o.wallet = 1 + (id - 1) % wallets;
    o.instrument_id = 1 + (id - 1) % instruments;
    const uint64_t want = filled.load() + 1;
    sent_at[id].store(now_ns());
    auto r = cl->call(wire::orders_body(std::vector{o}));
    if (!r.ok || r.reply.results.at(0) != wire::result::ok) {
      std::fprintf(stderr, "trading_bench: a single order: %s\n",
                   r.ok ? std::string(wire::result_name(r.reply.results.at(0))).c_str() : r.failure.c_str());
      return 1;
    }
    ++placed;
    while (filled.load(std::memory_order_acquire) < want && refused.load() == 0)
      std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  sim.stop();
  const std::vector<double> single(latency_us.begin() + long(max_rate.size()), latency_us.end());
  if (not_placed != 0 || refused.load() != 0 || filled.load() != placed) {
    std::fprintf(stderr, "trading_bench: %llu orders refused, %llu fills refused, %llu of %llu filled\n",
                 static_cast<unsigned long long>(not_placed), static_cast<unsigned long long>(refused.load()),
                 static_cast<unsigned long long>(filled.load()), static_cast<unsigned long long>(placed));
    return 1;
  }
  record("orders", double(orders));
  record("orders_placed_per_s", double(placed) / placed_s);
  record("orders_filled_per_s", double(max_rate.size()) / filled_s);
  record("order_to_fill_p50_us_max_rate", percentile(max_rate, 50));
  record("order_to_fill_p99_us_max_rate", percentile(max_rate, 99));
  record("order_to_fill_engine_p50_us", percentile(single, 50));
  record("order_to_fill_engine_p99_us", percentile(single, 99));
  // The money: every wallet paid exactly its fills (one unit at the price each). A fill's
  // settlement is queued before the fill's reply, so these reads come after all of them.
  const auto check = e->check_balances();
  if (!check.balanced) {
    std::fprintf(stderr, "trading_bench: the books do not balance: %s\n", check.detail.c_str());
    return 1;
  }
  auto a = e->lookup_accounts({1, wallets});
  uint64_t per_wallet_first = 0;  // wallet 1's orders
  for (uint64_t id = 1; id <= orders + single_orders; id += wallets) ++per_wallet_first;
  if (a.accounts[0].debits_posted != per_wallet_first * price) {
    std::fprintf(stderr, "trading_bench: wallet 1 paid %llu, not %llu\n",
                 static_cast<unsigned long long>(a.accounts[0].debits_posted),
                 static_cast<unsigned long long>(per_wallet_first * price));
    return 1;
  }
  srv->stop();
  e->set_order_sink(nullptr);
  e->close();
  write_json(out);
  std::filesystem::remove_all(dir);
  return 0;
}
