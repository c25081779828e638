// crash_driver <data_dir> <run> [equb|kyc|orders]: runs the engine under a concurrent transfer load
// until killed. Writes to stdout, binary, one {id.lo, result} record per transfer it
// got an acknowledgement for — only after the engine's reply, i.e. once durable.
// With `equb`: the load is equb groups paying round after round (crash_workload.hpp);
// each worker looks its groups up, pays every seat that has not paid this round, and
// goes on until every group completed (then waits to be killed).
// With `orders`: customers' orders filled by a broker thread (crash_workload.hpp); the
// records are {order id, result} of the orders acknowledged.
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "actors/customers.hpp"
#include "actors/market.hpp"
#include "engine/engine.hpp"
#include "system/crash_workload.hpp"

using namespace mesob;
using namespace mesob::test::crash;

struct ack {
  uint64_t id_lo;
  uint32_t result;
  uint32_t pad;
};

// Sets up the equb workload (idempotent: a later run finds it made) and pays rounds.
void run_equb(engine::engine& e, std::mutex& out_mu, uint64_t run) {
  namespace q = mesob::test::crash::equb;
  const uint64_t first = (run - 1) * q::groups, end = run * q::groups;
  std::vector<wire::account> accts;
  auto account = [](uint64_t id, wire::account_kind kind, uint16_t flags) {
    wire::account a;
    a.id = id;
    a.currency = wire::currency("ETB");
    a.kind = kind;
    a.flags = flags;
    return a;
  };
  accts.push_back(account(q::fee_account, wire::account_kind::fee, 0));
  accts.push_back(account(q::funding_account, wire::account_kind::system, 0));
  for (uint64_t g = first; g < end; ++g)
    for (uint32_t s = 0; s < q::seats; ++s)
      accts.push_back(account(q::wallet(g, s), wire::account_kind::customer_wallet,
                              wire::account_flags::debits_must_not_exceed_credits));
  e.create_accounts(accts);
  std::vector<wire::transfer> funding;
  for (const auto& a : accts) {
    if (a.kind != wire::account_kind::customer_wallet) continue;
    wire::transfer t;
    t.id = {a.id, 0xF00D};
    t.debit_account_id = q::funding_account;
    t.credit_account_id = a.id;
    t.amount = q::starting;
    t.currency = a.currency;
    funding.push_back(t);
  }
  e.create_transfers(funding);
  std::vector<wire::equb_op> creates;
  for (uint64_t g = first; g < end; ++g) {
    wire::equb_op op;
    op.kind = wire::equb_op_kind::create;
    op.group_id = q::group_id(g);
    op.fee_account_id = q::fee_account;
    op.currency = wire::currency("ETB");
    op.contribution = q::contribution;
    op.period_ns = 86'400ull * 1'000'000'000ull;
    op.fee_bp = q::fee_bp;
    op.rotation = g % 2 == 0 ? 1 : 2;  // fixed order and lottery
    op.default_policy = 3;              // hold the round: only payments close rounds here
    creates.push_back(op);
  }
  e.equb(creates);
  // Joins in one batch, in seat order (a join's seat is its place in the log), then the
  // starts.
  std::vector<wire::transfer> joins;
  std::vector<wire::equb_op> starts;
  for (uint64_t g = first; g < end; ++g) {
    for (uint32_t s = 0; s < q::seats; ++s) joins.push_back(q::payment(g, 0, s));
    wire::equb_op start;
    start.kind = wire::equb_op_kind::start;
    start.group_id = q::group_id(g);
    starts.push_back(start);
  }
  e.create_transfers(joins);
  // The routed seats' payouts go on through the gateway (before the starts: a seat
  // that received can no longer change its route).
  wire::gateway_op gw{};
  gw.kind = wire::gateway_op_kind::register_gateway;
  std::strncpy(gw.id, "crash-mm", sizeof gw.id);
  gw.rail = 1;
  gw.priority = 1;
  gw.roles = 1;  // payments
  gw.answer_timeout_ms = 5000;
  gw.currencies_n = 1;
  gw.currencies[0] = {wire::currency("ETB"), 0, q::settlement_account};
  gw.secret_bytes = 32;
  for (int i = 0; i < 32; ++i) gw.secret[i] = uint8_t(0x40 + i);
  e.gateways({gw});  // gateway_exists after the first run
  std::vector<wire::equb_op> routes;
  for (uint64_t g = first; g < end; ++g) {
    if (!q::routed(g)) continue;
    wire::equb_op op;
    op.kind = wire::equb_op_kind::payout_to;
    op.group_id = q::group_id(g);
    op.seat = q::routed_seat;
    op.wallet = q::wallet(g, q::routed_seat);
    op.rail = 1;
    op.amount = q::destination(g);
    routes.push_back(op);
  }
  e.equb(routes);
  e.equb(starts);
  std::fprintf(stderr, "crash_driver: equb groups ready\n");
  std::vector<std::thread> threads;
  for (uint32_t w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      std::vector<ack> acks;
      for (bool any = true; any;) {
        any = false;
        for (uint64_t g = first + w; g < end; g += workers) {
          auto r = e.lookup_groups({q::group_id(g)});
          if (r.st != engine::status::ok || r.results.at(0) != wire::result::ok) continue;
          const auto& grp = r.groups[0].g;
          if (grp.ph != actors::equb::phase::active) continue;
          any = true;
          std::vector<wire::transfer> pays;
          for (uint32_t s = 0; s < grp.seats.size(); ++s)
            if (!grp.seats[s].paid) pays.push_back(q::payment(g, grp.round, s));
          if (pays.empty()) continue;
          auto res = e.create_transfers(pays);
          if (res.st != engine::status::ok) continue;
          acks.clear();
          for (size_t i = 0; i < pays.size(); ++i) acks.push_back({pays[i].id.lo, uint32_t(res.results[i]), 0});
          std::lock_guard lk(out_mu);
          if (::write(1, acks.data(), acks.size() * sizeof(ack)) < 0) std::_Exit(3);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::fprintf(stderr, "crash_driver: every group completed\n");
  for (;;) ::pause();
}

// Sets up the orders workload (idempotent: later runs get repeats), then places orders
// while a broker thread fills them.
void run_orders(engine::engine& e, std::mutex& out_mu, uint64_t run) {
  namespace q = mesob::test::crash::orders;
  const auto etb = wire::currency("ETB");
  std::vector<wire::account> accts;
  wire::account bank{};
  bank.id = q::bank;
  bank.currency = etb;
  bank.kind = wire::account_kind::system;
  accts.push_back(bank);
  std::vector<wire::transfer> funding;
  std::vector<wire::customer_op> kyc;
  for (uint64_t w = q::first_wallet; w < q::first_wallet + q::wallets; ++w) {
    wire::account a{};
    a.id = w;
    a.currency = etb;
    a.kind = wire::account_kind::customer_wallet;
    a.flags = wire::account_flags::debits_must_not_exceed_credits;
    accts.push_back(a);
    wire::transfer t{};
    t.id = {w, 0xF00D};
    t.debit_account_id = q::bank;
    t.credit_account_id = w;
    t.amount = q::starting;
    t.currency = etb;
    funding.push_back(t);
    wire::customer_op c{};
    c.wallet = w;
    c.kyc = wire::kyc_status::verified;
    c.profile = wire::risk_profile::moderate;
    c.tier = 1;
    c.sequence = 1;
    kyc.push_back(c);
  }
  e.create_accounts(accts);
  e.create_transfers(funding);
  wire::policy_op moderate{};
  moderate.kind = wire::policy_op_kind::profile;
  moderate.number = uint8_t(wire::risk_profile::moderate);
  moderate.classes = 1u << (uint8_t(wire::asset_class::fund) - 1);
  moderate.position_max = 1ull << 50;
  e.policies({actors::customers::tier_op(1, etb, 1ull << 40, 1ull << 40, 1ull << 50), moderate});
  e.customers(kyc);
  std::vector<wire::instrument_op> defs;
  std::vector<wire::price> prices;
  for (uint64_t i = 1; i <= q::instruments; ++i) {
    defs.push_back(actors::market::definition(i, "C" + std::to_string(i), wire::asset_class::fund, etb, 1, 1,
                                              {9000, 60'000, 86'400'000, 1000}));
    prices.push_back({i, q::price, 1});  // the same price again each run: a repeat
  }
  e.instruments(defs);
  e.prices(prices);
  wire::gateway_op gw{};
  gw.kind = wire::gateway_op_kind::register_gateway;
  std::strncpy(gw.id, q::broker, sizeof gw.id);
  gw.rail = 3;
  gw.priority = 1;
  gw.roles = 2;  // broker
  gw.answer_timeout_ms = 5000;
  gw.currencies_n = 1;
  gw.currencies[0] = {etb, 0, q::settlement};
  gw.secret_bytes = 32;
  for (int i = 0; i < 32; ++i) gw.secret[i] = uint8_t(0x50 + i);
  // A second broker, first by priority, that hangs: it takes orders and never answers.
  // Its session is up in odd runs only: orders sent there wait its answer timeout (100
  // ms), are sent again, then go to the broker that fills them; its breaker opens and
  // probes. Kills land in every one of those states.
  wire::gateway_op hung = gw;
  std::memset(hung.id, 0, sizeof hung.id);
  std::strncpy(hung.id, "hung-broker", sizeof hung.id);
  hung.priority = 0;
  hung.answer_timeout_ms = 100;
  hung.currencies[0] = {etb, 0, q::settlement + 1};
  for (int i = 0; i < 32; ++i) hung.secret[i] = uint8_t(0x70 + i);
  e.gateways({gw, hung});  // gateway_exists after the first run
  // The broker: answers each instruction at once, fills in two parts or a reject.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<wire::order_instruction> inbox;
  e.set_order_sink([&](const std::string& to, std::vector<wire::order_instruction>&& list) {
    if (to != q::broker) return;  // the hung one
    std::lock_guard lk(mu);
    inbox.insert(inbox.end(), list.begin(), list.end());
    cv.notify_one();
  });
  std::thread broker([&] {
    for (;;) {
      std::vector<wire::order_instruction> work;
      {
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return !inbox.empty(); });
        work.assign(inbox.begin(), inbox.end());
        inbox.clear();
      }
      std::vector<wire::order_answer> answers;
      for (const auto& in : work) {
        if (in.kind != wire::order_instruction_kind::work) continue;
        wire::order_answer a{};
        a.order_id = in.order_id;
        if (q::rejected(in.order_id)) {
          a.kind = wire::order_answer_kind::reject;
          a.reason = 9;
          answers.push_back(a);
          continue;
        }
        for (uint64_t k = 1; k <= 2; ++k) {  // fills the engine took already are repeats
          a.kind = wire::order_answer_kind::fill;
          a.fill_id = k;
          a.quantity = q::fill_quantity(in.order_id, k);
          a.price_ticks = q::price;
          answers.push_back(a);
        }
      }
      for (size_t i = 0; i < answers.size(); i += 8192)
        e.order_answers(q::broker, {answers.begin() + long(i), answers.begin() + long(std::min(answers.size(), i + 8192))});
    }
  });
  broker.detach();
  const auto* g = e.gateway_registry()->find(q::broker);
  if (!g) {
    std::fprintf(stderr, "crash_driver: the broker is not registered\n");
    std::_Exit(1);
  }
  e.gateway_event({g->number, wire::gateway_event_kind::up, {}});  // open orders are pushed again
  if (run % 2 == 1) e.gateway_event({e.gateway_registry()->find("hung-broker")->number, wire::gateway_event_kind::up, {}});
  std::fprintf(stderr, "crash_driver: orders run %llu ready\n", static_cast<unsigned long long>(run));
  std::vector<std::thread> threads;
  for (uint32_t w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      std::vector<ack> acks;
      for (uint64_t seq = 1;;) {
        const uint64_t n = 1 + actors::mix64(run * 1000 + w * 100000 + seq) % q::batch_max;
        std::vector<wire::order> batch;
        for (uint64_t i = 0; i < n; ++i) batch.push_back(q::order_for(q::order_id(run, w, seq++)));
        auto r = e.orders(batch);
        if (r.st != engine::status::ok) continue;
        acks.clear();
        for (size_t i = 0; i < batch.size(); ++i) acks.push_back({batch[i].id, uint32_t(r.results[i]), 0});
        std::lock_guard lk(out_mu);
        if (::write(1, acks.data(), acks.size() * sizeof(ack)) < 0) std::_Exit(3);
      }
    });
  }
  for (auto& t : threads) t.join();
}

int main(int argc, char** argv) {
  const std::string mode = argc == 4 ? argv[3] : "";
  if (argc != 3 && !(argc == 4 && (mode == "equb" || mode == "kyc" || mode == "orders"))) {
    std::fprintf(stderr, "usage: crash_driver <data_dir> <run> [equb|kyc|orders]\n");
    return 2;
  }
  engine::config cfg;
  cfg.data_dir = argv[1];
  cfg.shards = 2;
  cfg.pin_shards = false;
  cfg.checkpoint_interval_ms = 150;  // kills land during checkpoints too
  cfg.wal_segment_mib = 4;           // and across segment switches
  cfg.wal_group_mib = 1;
  cfg.wal_flights = 4;  // kills land with several commit groups in flight
  const uint64_t run = std::strtoull(argv[2], nullptr, 10);
  std::string err;
  auto e = engine::engine::open(cfg, &err);
  if (!e) {
    std::fprintf(stderr, "crash_driver: %s\n", err.c_str());
    return 1;
  }
  std::mutex out_mu;
  if (mode == "equb") run_equb(*e, out_mu, std::strtoull(argv[2], nullptr, 10));
  if (mode == "orders") run_orders(*e, out_mu, run);
  std::vector<wire::account> accts;
  for (uint64_t id = 1; id <= accounts; ++id) {
    wire::account a;
    a.id = id;
    a.currency = wire::currency("ETB");
    a.kind = wire::account_kind::customer_wallet;
    accts.push_back(a);
  }
  e->create_accounts(accts);
  if (mode == "kyc") {  // again each run: repeats after the first
    e->policies({actors::customers::tier_op(kyc::tier, wire::currency("ETB"), kyc::single_max, kyc::daily_outflow_max,
                                            kyc::balance_max)});
    std::vector<wire::customer_op> cs;
    for (uint64_t id = 1; id <= accounts; ++id) {
      if (!kyc::tiered(id)) continue;
      wire::customer_op c;
      c.wallet = id;
      c.kyc = wire::kyc_status::verified;
      c.profile = wire::risk_profile::moderate;
      c.tier = kyc::tier;
      c.sequence = 1;
      cs.push_back(c);
    }
    e->customers(cs);
  }
  std::fprintf(stderr, "crash_driver: run %llu ready\n", static_cast<unsigned long long>(run));
  std::vector<std::thread> threads;
  for (uint32_t w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      uint64_t seq = 0;
      std::vector<ack> acks;
      for (;;) {
        const uint64_t n = 1 + actors::mix64(run * 1000 + w * 100000 + seq) % 64;
        std::vector<wire::transfer> batch;
        for (uint64_t i = 0; i < n; ++i) batch.push_back(transfer_for(transfer_id(run, w, seq++)));
        batch.back().flags &= uint16_t(~wire::transfer_flags::linked);
        auto r = e->create_transfers(batch);
        if (r.st != engine::status::ok) continue;
        acks.clear();
        for (size_t i = 0; i < batch.size(); ++i)
          acks.push_back({batch[i].id.lo, uint32_t(r.results[i]), 0});
        std::lock_guard lk(out_mu);
        if (::write(1, acks.data(), acks.size() * sizeof(ack)) < 0) std::_Exit(3);
      }
    });
  }
  for (auto& t : threads) t.join();
}
