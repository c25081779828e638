// gateway_bench: deposits and payouts through payment gateways over TCP, durable.
//
//   gateway_bench [--wallets N] [--seconds S] [--payouts N] [--latency-ms X]
//                 [--fail-rate F] [--shards N] [--out FILE] [--dir DIR]
//
// One engine (one shard per core, durable) and its server on loopback; four gateways
// registered (mobile money, ETB, priorities 1..4), each a gateway simulator session
// (tools/gateway_sim.hpp) in this process. Set-up, not timed: N wallets (default
// 100,000), each funded.
//  1. Deposits through one gateway session for S seconds (default 5), as fast as the
//     session's pipeline (8,192 per request, 8 requests in flight) goes; then through
//     four sessions at once. Deposits per second: those the engine answered ok.
//  2. Payouts: N payouts (default 500,000; 100 minor units, wallets in turn) sent by a
//     client in batches of 8,192, 8 in flight; the gateway with priority 1 answers each
//     instruction after an exponential latency of mean X ms (default 1), failing a share
//     F (default 0.1). Payouts completed per second: N over the time from the first
//     payout sent until no hold is left and nothing is left to sweep (every payout
//     settled, posted and swept into the settlement account, or failed, voided). The check: settlement credits equal what
//     left the wallets, and about 1 - F of the payouts settled.
// Writes FILE as one JSON object of metric name -> number.
#include "actors/payout_desk.hpp"
#include "engine/server.hpp"
#include "perf/bench_common.hpp"
#include "tools/gateway_sim.hpp"
#include "wire/client.hpp"

using namespace mesob;
using namespace mesob::bench;

namespace {

constexpr uint64_t funding = 1, first_wallet = 10, settlement_first = 1'000'000'000'000;
constexpr uint64_t payout_amount = 100;

void check(const engine::reply& r, const char* what) {
  if (r.st != engine::status::ok) {
    std::fprintf(stderr, "gateway_bench: %s: %s\n", what, engine::status_name(r.st));
    std::exit(1);
  }
  for (auto x : r.results)
    if (x != wire::result::ok) {
      std::fprintf(stderr, "gateway_bench: %s: %s\n", what, std::string(wire::result_name(x)).c_str());
      std::exit(1);
    }
}

wire::account account_of(uint64_t id, wire::account_kind k) {
  wire::account a;
  a.id = id;
  a.currency = wire::currency("ETB");
  a.kind = k;
  return a;
}

// Deposits through `sessions` simulator sessions for `seconds`; deposits answered ok per s.
double deposit_run(const std::vector<tools::gateway_sim_options>& gws, size_t sessions, double seconds,
                   uint64_t wallets, uint64_t reference_first) {
  std::vector<std::unique_ptr<tools::gateway_sim>> sims;
  for (size_t i = 0; i < sessions; ++i) {
    auto o = gws[i];
    o.deposits_per_s = 1e7;  // as fast as the pipeline goes
    o.deposit_batch_max = 8192;
    o.in_flight_max = 8;
    o.wallet_first = first_wallet;
    o.wallet_count = wallets;
    o.deposit_amount = 1;
    o.reference_first = reference_first;
    sims.push_back(std::make_unique<tools::gateway_sim>(o));
  }
  for (auto& s : sims) s->start();
  for (int i = 0; i < 500 && !std::all_of(sims.begin(), sims.end(), [](auto& s) { return s->connected(); }); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  uint64_t ok0 = 0;
  for (auto& s : sims) ok0 += s->stats().deposits_ok;
  const auto t0 = clk::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  uint64_t ok = 0, refused = 0;
  for (auto& s : sims) {
    ok += s->stats().deposits_ok;
    refused += s->stats().deposits_refused;
  }
  const double dt = since(t0);
  for (auto& s : sims) s->stop();
  if (refused != 0) {
    std::fprintf(stderr, "gateway_bench: %llu deposits refused\n", static_cast<unsigned long long>(refused));
    std::exit(1);
  }
  return double(ok - ok0) / dt;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t wallets = 100'000, payouts = 500'000;
  uint32_t shards = std::max(1u, std::thread::hardware_concurrency());  // --shards
  double seconds = 5, latency_ms = 1, fail_rate = 0.1;
  std::string out = "perf/results/gateways.json", dir = "/tmp/mesob-gateway-bench";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "gateway_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--wallets") wallets = std::stoull(next());
    else if (a == "--payouts") payouts = std::stoull(next());
    else if (a == "--seconds") seconds = std::stod(next());
    else if (a == "--latency-ms") latency_ms = std::stod(next());
    else if (a == "--fail-rate") fail_rate = std::stod(next());
    else if (a == "--out") out = next();
    else if (a == "--dir") dir = next();
    else if (a == "--shards") shards = uint32_t(std::stoul(next()));
    else {
      std::fprintf(stderr, "gateway_bench: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  auto e = open_engine(dir, shards, wallets + 64, true, false);
  auto net = start_loopback_server(*e, "gateway_bench");
  e->set_instruction_sink([s = net.srv.get()](const std::string& g, std::vector<wire::payout_instruction>&& list) {
    engine::push_payout_instructions(*s, g, std::move(list));
  });

  // Set-up: four gateways, wallets, funding.
  const auto t0 = clk::now();
  std::vector<tools::gateway_sim_options> gws;
  for (uint32_t i = 0; i < 4; ++i) {
    wire::gateway_op op{};
    op.kind = wire::gateway_op_kind::register_gateway;
    const std::string id = "gw" + std::to_string(i + 1);
    actors::gateways::set_op_id(op, id);
    op.rail = 1;
    op.priority = i + 1;
    op.roles = wire::roles::payments;
    op.answer_timeout_ms = 5000;
    op.currencies_n = 1;
    op.currencies[0] = {wire::currency("ETB"), 0, settlement_first + i};
    op.secret_bytes = 32;
    std::memset(op.secret, int(0x30 + i), 32);
    check(e->gateways({op}), "register");
    tools::gateway_sim_options o;
    o.port = net.client.port;
    o.gateway = id;
    o.secret.assign(op.secret, op.secret + 32);
    o.seed = 1000 + i;
    gws.push_back(o);
  }
  check(e->create_accounts({account_of(funding, wire::account_kind::system)}), "funding account");
  for (uint64_t first = 0; first < wallets; first += 8192) {
    std::vector<wire::account> a;
    std::vector<wire::transfer> t;
    for (uint64_t w = first; w < std::min(wallets, first + 8192); ++w) {
      a.push_back(account_of(first_wallet + w, wire::account_kind::customer_wallet));
      wire::transfer f;
      f.id = {first_wallet + w, 0xF00D};
      f.debit_account_id = funding;
      f.credit_account_id = first_wallet + w;
      f.amount = 1'000'000;
      f.currency = wire::currency("ETB");
      t.push_back(f);
    }
    check(e->create_accounts(std::move(a)), "wallets");
    check(e->create_transfers(std::move(t)), "funding");
  }
  record("setup_s", since(t0));
  record("shards", shards);

  // 1. Deposits.
  record("deposits_per_s_1_session", deposit_run(gws, 1, seconds, wallets, 1));
  record("deposits_per_s_4_sessions", deposit_run(gws, 4, seconds, wallets, 1ull << 40));

  // 2. Payouts, answered by gw1 (priority 1).
  auto po = gws[0];
  po.latency_ms = latency_ms;
  po.fail_rate = fail_rate;
  po.in_flight_max = 64;
  tools::gateway_sim answering(po);
  answering.start();
  for (int i = 0; i < 500 && !answering.connected(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::string err;
  auto c = wire::client::connect(net.client, &err);
  if (!c) {
    std::fprintf(stderr, "gateway_bench: %s\n", err.c_str());
    return 1;
  }
  // What the payout accounts (one per shard) hold: pending (payouts held) and posted
  // (settled, not yet swept to the settlement account).
  const std::vector<uint64_t> payout_accounts = actors::payouts::desk_accounts_for(wire::currency("ETB"), shards);
  auto held = [&]() -> uint64_t {
    auto r = c->call(wire::lookup_accounts_body(payout_accounts));
    if (!r.ok || r.reply.accounts.size() != payout_accounts.size()) return ~0ull;
    uint64_t sum = 0;
    for (const auto& a : r.reply.accounts) sum += a.credits_pending + (a.credits_posted - a.debits_posted);
    return sum;
  };
  const auto p0 = clk::now();
  std::deque<uint64_t> window;
  uint64_t next = 0, refused = 0;
  while (next < payouts || !window.empty()) {
    while (next < payouts && window.size() < 8) {
      std::vector<wire::payout> batch;
      for (; next < payouts && batch.size() < 8192; ++next) {
        wire::payout p{};
        p.id = next + 1;
        p.wallet = first_wallet + next % wallets;
        p.amount = payout_amount;
        p.destination = 251900000000 + next;
        p.currency = wire::currency("ETB");
        p.rail = 1;
        batch.push_back(p);
      }
      window.push_back(c->send(wire::payouts_body(batch)));
    }
    auto r = c->wait(window.front());
    window.pop_front();
    if (!r.ok) {
      std::fprintf(stderr, "gateway_bench: payouts: %s%s\n", r.failure.c_str(), r.error.message.c_str());
      return 1;
    }
    for (auto x : r.reply.results) refused += x != wire::result::ok;
  }
  const double sent_s = since(p0);
  while (held() != 0 && since(p0) < 600) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const double done_s = since(p0);
  answering.stop();
  if (refused != 0 || held() != 0) {
    std::fprintf(stderr, "gateway_bench: %llu payouts refused, %llu still held\n",
                 static_cast<unsigned long long>(refused), static_cast<unsigned long long>(held()));
    return 1;
  }
  // More than one connect: the session was cut (say as a slow reader) and payouts waited.
  // More instructions than payouts: some were sent again (an answer timeout ran out).
  const auto st = answering.stats();
  record("payout_session_connects", double(st.connects));
  record("payout_instructions", double(st.instructions));
  record("payout_answers_refused", double(st.answers_refused));
  // A breaker trip stalls its desk's payouts for the cool-down (4 answer timeouts).
  uint64_t trips = 0;
  for (const auto& b : e->lookup_payouts(0, 0).breakers) trips += b.b.trips;
  record("payout_breaker_trips", double(trips));
  record("payouts_sent_s", sent_s);
  record("payouts_completed_s", done_s);
  record("payouts_completed_per_s", double(payouts) / done_s);
  record("payout_latency_ms_mean", latency_ms);
  record("payout_fail_rate", fail_rate);

  // The check: what left the wallets is in the settlement account; about 1 - F settled.
  std::vector<uint64_t> ids{settlement_first};
  for (uint64_t w = 0; w < wallets; ++w) ids.push_back(first_wallet + w);
  uint64_t out_of_wallets = 0, settled_amount = 0;
  for (size_t i = 0; i < ids.size(); i += 8192) {
    const std::vector<uint64_t> part(ids.begin() + ptrdiff_t(i), ids.begin() + ptrdiff_t(std::min(ids.size(), i + 8192)));
    const auto r = e->lookup_accounts(part);
    for (size_t k = 0; k < part.size(); ++k) {
      if (part[k] == settlement_first) settled_amount = r.accounts[k].credits_posted;
      else out_of_wallets += r.accounts[k].debits_posted;
    }
  }
  const double settled_share = double(settled_amount / payout_amount) / double(payouts);
  record("payouts_settled_share", settled_share);
  const auto bal = e->check_balances();
  const bool ok = out_of_wallets == settled_amount && bal.balanced && settled_share > 1 - fail_rate - 0.02 &&
                  settled_share < 1 - fail_rate + 0.02;
  record("check_ok", ok ? 1 : 0);
  write_json(out);
  net.srv->stop();
  e->close();
  e->set_instruction_sink(nullptr);
  std::filesystem::remove_all(dir);
  return ok ? 0 : 1;
}
