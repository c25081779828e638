// equb_bench: equb groups running whole rounds over TCP, durable.
//
//   equb_bench [--groups N] [--seats N] [--rounds N] [--connections N] [--depth N]
//              [--order seat|group] [--out FILE] [--dir DIR]
//
// One engine (one shard per core, durable) and its server on loopback. Set-up, through
// the embedded API and not timed: N groups of `seats` seats (default 100,000 x 12:
// 1.2 million member wallets), each wallet funded, every seat joined, every group
// started (round 1 is paid by the deposits). Then, timed, `rounds` complete rounds of
// every group over TCP: every seat's contribution, sent in batches of up to 8,192
// payments by `connections` clients with `depth` batches in flight each, and every
// round's payout (fee and payout chain, emitted by the groups). A round ends when the
// fee account holds one fee per group per round paid out, i.e. every payout is carried.
// --order: a batch's payments seat by seat across its groups (seat, the default) or
// group by group (group: every payment waits for the one before it when they cross
// shards, since they touch the same escrow).
// Figures: contributions per second (from the first payment sent to the last answered)
// and the seconds of one complete round of every group (first payment to last payout
// carried), per round and their mean; the check that every group's escrow account
// holds what the group says. Writes FILE as one JSON object of metric name -> number.
#include "engine/server.hpp"
#include "perf/bench_common.hpp"
#include "wire/client.hpp"

using namespace mesob;
using namespace mesob::bench;

namespace {

constexpr uint64_t contribution = 10'000;
constexpr uint32_t fee_bp = 100;
constexpr uint64_t fee_account = 1;
constexpr uint64_t funding_account = 2;
constexpr uint64_t first_group = 1'000'000'000;
constexpr uint64_t first_wallet = 10;

struct layout {
  uint64_t groups = 100'000;
  uint32_t seats = 12;
  uint64_t group(uint64_t g) const { return first_group + g; }
  uint64_t wallet(uint64_t g, uint32_t s) const { return first_wallet + g * seats + s; }
};

void check(const engine::reply& r, const char* what) {
  if (r.st != engine::status::ok) {
    std::fprintf(stderr, "equb_bench: %s: %s\n", what, engine::status_name(r.st));
    std::exit(1);
  }
  for (auto x : r.results)
    if (x != wire::result::ok && x != wire::result::exists_with_different_fields) {
      std::fprintf(stderr, "equb_bench: %s: %s\n", what, std::string(wire::result_name(x)).c_str());
      std::exit(1);
    }
}

void set_up(engine::engine& e, const layout& l) {
  const auto t0 = clk::now();
  auto account = [](uint64_t id, wire::account_kind kind, uint16_t flags) {
    wire::account a;
    a.id = id;
    a.currency = wire::currency("ETB");
    a.kind = kind;
    a.flags = flags;
    return a;
  };
  check(e.create_accounts({account(fee_account, wire::account_kind::fee, 0),
                           account(funding_account, wire::account_kind::system, 0)}),
        "system accounts");
  const uint64_t wallets = l.groups * l.seats;
  std::vector<wire::account> as;
  std::vector<wire::transfer> ts;
  for (uint64_t w = 0; w < wallets; ++w) {
    as.push_back(account(first_wallet + w, wire::account_kind::customer_wallet,
                         wire::account_flags::debits_must_not_exceed_credits));
    wire::transfer t;
    t.id = {first_wallet + w, 0xF00D};
    t.debit_account_id = funding_account;
    t.credit_account_id = first_wallet + w;
    t.amount = 1'000 * contribution;
    t.currency = wire::currency("ETB");
    ts.push_back(t);
    if (as.size() == 8192 || w + 1 == wallets) {
      check(e.create_accounts(std::move(as)), "wallets");
      check(e.create_transfers(std::move(ts)), "funding");
      as.clear();
      ts.clear();
    }
  }
  std::vector<wire::equb_op> ops;
  for (uint64_t g = 0; g < l.groups; ++g) {
    wire::equb_op op;
    op.kind = wire::equb_op_kind::create;
    op.group_id = l.group(g);
    op.fee_account_id = fee_account;
    op.currency = wire::currency("ETB");
    op.contribution = contribution;
    op.period_ns = 30ull * 86'400 * 1'000'000'000;  // rounds close on payment, not on time
    op.fee_bp = fee_bp;
    op.rotation = 1;
    op.default_policy = 3;
    ops.push_back(op);
    if (ops.size() == 4096 || g + 1 == l.groups) {
      check(e.equb(std::move(ops)), "creates");
      ops.clear();
    }
  }
  // Joins: whole groups per batch, seats in order.
  const uint64_t per_batch = 8192 / l.seats;
  for (uint64_t g0 = 0; g0 < l.groups; g0 += per_batch) {
    std::vector<wire::transfer> joins;
    for (uint64_t g = g0; g < std::min(l.groups, g0 + per_batch); ++g)
      for (uint32_t s = 0; s < l.seats; ++s) {
        wire::transfer t;
        t.id = {l.wallet(g, s), 0x501};
        t.debit_account_id = l.wallet(g, s);
        t.credit_account_id = l.group(g);
        t.amount = contribution;
        t.currency = wire::currency("ETB");
        t.flags = wire::transfer_flags::equb;
        joins.push_back(t);
      }
    check(e.create_transfers(std::move(joins)), "joins");
  }
  for (uint64_t g = 0; g < l.groups; ++g) {
    wire::equb_op op;
    op.kind = wire::equb_op_kind::start;
    op.group_id = l.group(g);
    ops.push_back(op);
    if (ops.size() == 4096 || g + 1 == l.groups) {
      check(e.equb(std::move(ops)), "starts");
      ops.clear();
    }
  }
  record("setup_s", since(t0));
}

uint64_t fee_credits(wire::client& c) {
  const std::vector<uint64_t> id{fee_account};
  auto r = c.call(wire::lookup_accounts_body(id));
  return r.ok ? r.reply.accounts.at(0).credits_posted : 0;
}

}  // namespace

int main(int argc, char** argv) {
  layout l;
  uint32_t rounds = 2, connections = 4, depth = 4;
  bool seat_major = true;
  std::string out = "perf/results/equb.json", dir = "/tmp/mesob-equb-bench";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto num = [&] { return std::strtoull(argv[++i], nullptr, 10); };
    if (a == "--groups" && i + 1 < argc) l.groups = num();
    else if (a == "--seats" && i + 1 < argc) l.seats = uint32_t(num());
    else if (a == "--rounds" && i + 1 < argc) rounds = uint32_t(num());
    else if (a == "--connections" && i + 1 < argc) connections = uint32_t(num());
    else if (a == "--depth" && i + 1 < argc) depth = uint32_t(num());
    else if (a == "--order" && i + 1 < argc) seat_major = std::string(argv[++i]) != "group";
    else if (a == "--out" && i + 1 < argc) out = argv[++i];
    else if (a == "--dir" && i + 1 < argc) dir = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: equb_bench [--groups N] [--seats N] [--rounds N] [--connections N] [--depth N] "
                   "[--order seat|group] [--out FILE] [--dir DIR]\n");
      return 2;
    }
  }
  if (l.groups == 0 || l.seats < 2 || l.seats > 1000 || rounds == 0 || rounds + 1 > l.seats || connections == 0 ||
      depth == 0) {
    std::fprintf(stderr, "equb_bench: need groups >= 1, 2 <= seats <= 1000, 1 <= rounds < seats, connections and depth >= 1\n");
    return 2;
  }
  const uint32_t shards = std::max(1u, std::min(std::thread::hardware_concurrency(), 32u));
  std::printf("%-48s %16s\n", "metric", "value");
  record("groups", double(l.groups));
  record("seats", l.seats);
  record("shards", shards);
  record("seat_major_order", seat_major ? 1 : 0);
  auto e = open_engine(dir, shards, l.groups * (l.seats + 1) + 16, true, false);
  set_up(*e, l);

  auto server = start_loopback_server(*e, "equb_bench");
  auto& srv = server.srv;
  wire::client::options o = server.client;
  o.timeout_ms = 600'000;
  std::string err;
  auto probe = wire::client::connect(o, &err);
  if (!probe) {
    std::fprintf(stderr, "equb_bench: %s\n", err.c_str());
    return 1;
  }
  const uint64_t pot = uint64_t(l.seats) * contribution, fee = pot * fee_bp / 10'000;
  uint64_t fees_expected = fee_credits(*probe);  // round 1 paid out at start
  double contributions_s_sum = 0, round_s_sum = 0;
  for (uint32_t r = 2; r < 2 + rounds; ++r) {
    // Each connection pays a contiguous share of the groups, whole groups per batch.
    std::atomic<uint64_t> ok{0}, refused{0};
    std::atomic<bool> failed{false};
    std::vector<std::thread> threads;
    const auto t0 = clk::now();
    for (uint32_t c = 0; c < connections; ++c) {
      threads.emplace_back([&, c] {
        std::string why;
        auto cl = wire::client::connect(o, &why);
        if (!cl) {
          std::fprintf(stderr, "equb_bench: %s\n", why.c_str());
          failed = true;
          return;
        }
        const uint64_t g_begin = l.groups * c / connections, g_end = l.groups * (c + 1) / connections;
        const uint64_t per_batch = 8192 / l.seats;
        std::deque<uint64_t> in_flight;
        auto settle = [&] {
          auto res = cl->wait(in_flight.front());
          in_flight.pop_front();
          if (!res.ok) {
            std::fprintf(stderr, "equb_bench: %s%s\n", res.failure.c_str(), res.error.message.c_str());
            failed = true;
            return;
          }
          for (auto x : res.reply.results) (x == wire::result::ok ? ok : refused).fetch_add(1, std::memory_order_relaxed);
        };
        for (uint64_t g0 = g_begin; g0 < g_end && !failed; g0 += per_batch) {
          // Seat-major: consecutive payments go to different groups' escrows, so a
          // payment that crosses shards does not wait for the one before it (the
          // shards set aside such payments while later ones touch other accounts:
          // actors/README.md, "publish and continue").
          std::vector<wire::transfer> pays;
          const uint64_t g1 = std::min(g_end, g0 + per_batch), n = (g1 - g0) * l.seats;
          for (uint64_t k = 0; k < n; ++k) {
            const uint64_t g = seat_major ? g0 + k % (g1 - g0) : g0 + k / l.seats;
            const auto s = uint32_t(seat_major ? k / (g1 - g0) : k % l.seats);
            wire::transfer t;
            t.id = {l.wallet(g, s), 0x500 + uint64_t(r)};
            t.debit_account_id = l.wallet(g, s);
            t.credit_account_id = l.group(g);
            t.amount = contribution;
            t.currency = wire::currency("ETB");
            t.flags = wire::transfer_flags::equb;
            t.user_data = uint64_t(r) << 32 | s;
            pays.push_back(t);
          }
          if (in_flight.size() == depth) settle();
          in_flight.push_back(cl->send(wire::create_transfers_body(pays)));
        }
        while (!in_flight.empty() && !failed) settle();
      });
    }
    for (auto& t : threads) t.join();
    const double paid_s = since(t0);
    if (failed || refused.load() != 0) {
      std::fprintf(stderr, "equb_bench: round %u: %llu payments refused%s\n", r,
                   static_cast<unsigned long long>(refused.load()), failed ? ", a connection failed" : "");
      return 1;
    }
    fees_expected += l.groups * fee;
    while (fee_credits(*probe) < fees_expected) std::this_thread::sleep_for(std::chrono::microseconds(500));
    const double round_s = since(t0);
    const double per_s = double(ok.load()) / paid_s;
    std::printf("round %u: %llu contributions in %.2f s (%.0f/s), every payout carried after %.2f s\n", r,
                static_cast<unsigned long long>(ok.load()), paid_s, per_s, round_s);
    contributions_s_sum += per_s;
    round_s_sum += round_s;
  }
  record("equb_contributions_per_s", contributions_s_sum / rounds);
  record("equb_round_s", round_s_sum / rounds);
  if (l.groups == 100'000 && l.seats == 12) record("equb_round_s_100k_groups", round_s_sum / rounds);

  // Every group's escrow holds what the group says (a sample of 64 groups per 1,000).
  uint64_t checked = 0, wrong = 0;
  for (uint64_t g0 = 0; g0 < l.groups; g0 += 1000) {
    std::vector<uint64_t> ids;
    for (uint64_t g = g0; g < std::min(l.groups, g0 + 64); ++g) ids.push_back(l.group(g));
    auto gr = probe->call(wire::lookup_groups_body(ids));
    auto ar = probe->call(wire::lookup_accounts_body(ids));
    if (!gr.ok || !ar.ok) break;
    for (size_t i = 0; i < ids.size(); ++i) {
      ++checked;
      const auto& a = ar.reply.accounts[i];
      const auto& g = gr.reply.groups[i];
      if (a.credits_posted - a.debits_posted != g.escrow_expected || g.round != 2 + rounds) ++wrong;
    }
  }
  record("groups_checked", double(checked));
  record("groups_wrong", double(wrong));
  const auto bal = e->check_balances();
  record("balanced", bal.balanced ? 1 : 0);
  record("rss_mib", double(rss_bytes()) / (1 << 20));
  srv->stop();
  e->close();
  std::filesystem::remove_all(dir);
  write_json(out);
  return wrong == 0 && bal.balanced ? 0 : 1;
}
