// mesob-load against a real mesobd on loopback: the closed and open loops, the two-phase
// and skewed workloads, deposits through a gateway registered on the admin port,
// verification (and that it catches a lost acknowledged transfer), set-up on a previous
// run's accounts, and the program's options, report and plots.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <fstream>
#include <sstream>
#include <thread>

#include "perf/load/driver.hpp"
#include "perf/load/mesob_target.hpp"
#include "support/admin_client.hpp"
#include "support/mesobd_process.hpp"
#include "support/temp_dir.hpp"

using namespace mesob;
using namespace mesob::test;

namespace {

load::workload small_workload(uint64_t first_account) {
  load::workload w;
  w.accounts = 2000;
  w.first_account = first_account;
  w.batch = 100;
  w.shards = 2;
  w.cross_pct = 30;
  w.seed = 7;
  w.run = 0x10ad;
  w.opening = 1'000'000;
  w.amount_max = 50;
  return w;
}

// A run of one-transfer requests against a fake target: a closed loop (rate 0, `window`
// in flight a connection) or an open one, for `duration_s` after `warmup_s`; the report (a
// failed run is a test failure).
load::run_report run_single_transfers(load::target& t, uint32_t connections, double rate, double duration_s,
                                      double drain_timeout_s = 60, double warmup_s = 0, uint32_t window = 4) {
  auto w = small_workload(1);
  w.batch = 1;
  load::run_options o;
  o.connections = connections;
  o.window = window;
  o.rate = rate;
  o.warmup_s = warmup_s;
  o.duration_s = duration_s;
  o.drain_timeout_s = drain_timeout_s;
  o.progress = false;
  load::run_report r;
  std::string err;
  EXPECT_TRUE(load::run_load(t, w, o, &r, &err)) << err;
  return r;
}

// Equb payments one a request: 4 groups of 3, 4 x 3 seats x rounds 2 and 3 = 24 in all.
load::workload four_equb_groups() {
  auto w = small_workload(1);
  w.kind = load::item_kind::equb;
  w.accounts = 12;
  w.equb_seats = 3;
  w.batch = 1;
  return w;
}

load::run_options quick_run() {
  load::run_options o;
  o.connections = 2;
  o.window = 4;
  o.duration_s = 0.5;
  o.progress = false;
  o.verify = true;
  return o;
}

std::unique_ptr<load::target> connect_target(const std::string& data, uint16_t port) {
  std::string err;
  auto t = load::make_mesob_target(dev_gateway_options(data, port), &err);
  EXPECT_TRUE(t) << err;
  return t;
}

// A target passing everything to a real one: the misreporting targets below change one part.
class forwarding_target : public load::target {
 public:
  explicit forwarding_target(load::target& real) : real_(real) {}
  std::string supports(const load::workload& w) const override { return real_.supports(w); }
  bool setup(const load::workload& w, std::string* e) override { return real_.setup(w, e); }
  std::unique_ptr<load::target_connection> connect(const load::workload& w, std::string* e) override {
    return real_.connect(w, e);
  }
  bool read_balances(const load::workload& w, int64_t* f, std::vector<int64_t>* a, std::string* e) override {
    return real_.read_balances(w, f, a, e);
  }
  bool find_transfers(std::span<const wire::id128> ids, std::vector<load::found_transfer>* out,
                      std::string* e) override {
    return real_.find_transfers(ids, out, e);
  }
  bool read_pending_debits(const load::workload& w, std::vector<uint64_t>* accounts, std::string* e) override {
    return real_.read_pending_debits(w, accounts, e);
  }

 protected:
  load::target& real_;
};

// A target that acknowledges one request as all ok without sending it: an engine that
// loses acknowledged transfers, which verification must catch.
class losing_target final : public forwarding_target {
 public:
  using forwarding_target::forwarding_target;
  std::string name() const override { return "losing"; }
  std::unique_ptr<load::target_connection> connect(const load::workload& w, std::string* e) override {
    class conn final : public load::target_connection {
     public:
      conn(std::unique_ptr<load::target_connection> c, std::atomic<int>* n) : c_(std::move(c)), n_(n) {}
      void submit(std::vector<wire::transfer> b, std::function<void(load::batch_outcome&&)> done) override {
        if (n_->fetch_add(1) == 5) {
          load::batch_outcome o;
          o.results.assign(b.size(), wire::result::ok);
          done(std::move(o));
          return;
        }
        c_->submit(std::move(b), std::move(done));
      }
      uint32_t window_max() const override { return c_->window_max(); }

     private:
      std::unique_ptr<load::target_connection> c_;
      std::atomic<int>* n_;
    };
    auto c = real_.connect(w, e);
    return c ? std::make_unique<conn>(std::move(c), &sent_) : nullptr;
  }

 private:
  std::atomic<int> sent_{0};
};

// A target whose first account shows one minor unit more pending than the engine holds:
// a post that left part of its pending held, which only the pending balances show.
class pending_left_target final : public forwarding_target {
 public:
  using forwarding_target::forwarding_target;
  std::string name() const override { return "pending-left"; }
  bool read_pending_debits(const load::workload& w, std::vector<uint64_t>* accounts, std::string* e) override {
    if (!real_.read_pending_debits(w, accounts, e)) return false;
    if (!accounts->empty()) ++accounts->front();
    return true;
  }
};

// A target of the driver's own tests: it takes any workload, sets nothing up and keeps
// nothing to verify (its connections are the test's).
class keeps_nothing_target : public load::target {
 public:
  std::string supports(const load::workload&) const override { return ""; }
  bool setup(const load::workload&, std::string*) override { return true; }
  bool read_balances(const load::workload&, int64_t*, std::vector<int64_t>*, std::string* e) override {
    *e = "not kept";
    return false;
  }
  bool find_transfers(std::span<const wire::id128>, std::vector<load::found_transfer>*, std::string* e) override {
    *e = "not kept";
    return false;
  }
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

// The generator's pairs: the share crossing shards as asked, debit and credit apart,
// every account of the range chosen about equally often (however an account of a shard
// is found: drawn ids, or the shard's list), and with a hot share, that share on each
// shard's first hot accounts.
// Ids fall on shards by hash: a range with two accounts per shard on average may leave a
// shard with fewer than two, where a transfer within it has no pair (before, the
// generator divided by zero or drew for ever). Refused, naming the shard.
TEST(load, a_shard_without_two_accounts_is_refused) {
  uint64_t found = 0;
  for (uint64_t first = 2; first < 10'000 && found == 0; ++first) {
    std::vector<int> per(4, 0);
    for (uint64_t id = first; id < first + 8; ++id) ++per[actors::shard_of(id, 4)];
    if (*std::min_element(per.begin(), per.end()) < 2) found = first;
  }
  ASSERT_NE(found, 0u) << "eight ids over four shards always two each";
  load::workload w = small_workload(found);
  w.accounts = 8;
  w.shards = 4;
  EXPECT_EQ(w.check(), "") << "two a shard on average";
  const std::string bad = w.check_layout();
  EXPECT_NE(bad.find("every shard needs at least 2"), std::string::npos) << bad;
  w.accounts = 5000;
  EXPECT_EQ(w.check_layout(), "");
}

TEST(load, pairs_cross_shards_as_asked_and_spread_over_every_account) {
  for (uint32_t shards : {1u, 2u, 3u}) {
    load::workload w = small_workload(5000);
    w.shards = shards;
    const load::account_layout layout(w);
    load::splitmix rng{shards};
    std::vector<uint64_t> hits(w.accounts, 0);
    uint64_t crossed = 0;
    const uint64_t n = 400000;
    for (uint64_t i = 0; i < n; ++i) {
      const auto [dr, cr] = layout.pick(w, rng);
      ASSERT_NE(dr, cr);
      ASSERT_GE(dr, w.first_account);
      ASSERT_LT(dr, w.first_account + w.accounts);
      ASSERT_GE(cr, w.first_account);
      ASSERT_LT(cr, w.first_account + w.accounts);
      crossed += actors::shard_of(dr, shards) != actors::shard_of(cr, shards);
      ++hits[dr - w.first_account];
      ++hits[cr - w.first_account];
    }
    const double share = double(crossed) / double(n);
    if (shards == 1) EXPECT_EQ(crossed, 0u);
    else EXPECT_NEAR(share, 0.30, 0.01) << shards << " shards";
    // 400 hits an account on average: every one within a generous band.
    const auto [lo, hi] = std::minmax_element(hits.begin(), hits.end());
    EXPECT_GT(*lo, 200u) << shards << " shards";
    EXPECT_LT(*hi, 700u) << shards << " shards";
  }
  load::workload w = small_workload(5000);
  w.hot_pct = 80;
  w.hot_accounts = 16;
  const load::account_layout layout(w);
  load::splitmix rng{9};
  std::vector<uint64_t> hits(w.accounts, 0);
  for (int i = 0; i < 100000; ++i) {
    const auto [dr, cr] = layout.pick(w, rng);
    ++hits[dr - w.first_account];
  }
  std::vector<uint64_t> sorted = hits;
  std::sort(sorted.rbegin(), sorted.rend());
  uint64_t top = 0;  // the 32 hot accounts (16 a shard) take 80% and a share of the rest
  for (int i = 0; i < 32; ++i) top += sorted[i];
  EXPECT_NEAR(double(top) / 100000.0, 0.80, 0.02);
}

TEST(load, closed_loop_open_loop_and_workloads_verify_against_mesobd) {
  temp_dir dir;
  auto r = start_and_stop_mesobd(dir.path(), [&](uint16_t port) {
    ASSERT_NE(port, 0);
    auto t = connect_target(dir.path(), port);
    ASSERT_TRUE(t);
    std::string err;
    // A run through a target that misreports, whose verification must fail naming `what`.
    const auto verify_fails = [&](load::target& lying, const load::workload& lw, const load::run_options& lo,
                                  const char* what) {
      ASSERT_TRUE(lying.setup(lw, &err)) << err;
      load::run_report lr;
      ASSERT_TRUE(load::run_load(lying, lw, lo, &lr, &err)) << err;
      EXPECT_FALSE(lr.verify.ok);
      ASSERT_FALSE(lr.verify.problems.empty());
      EXPECT_NE(lr.verify.problems[0].find(what), std::string::npos) << lr.verify.problems[0];
    };

    // Closed loop, uniform, 30% crossing shards.
    auto w = small_workload(1'000'000);
    ASSERT_TRUE(t->setup(w, &err)) << err;
    load::run_report rep;
    ASSERT_TRUE(load::run_load(*t, w, quick_run(), &rep, &err)) << err;
    EXPECT_TRUE(rep.verify.ok) << (rep.verify.problems.empty() ? "" : rep.verify.problems[0]);
    EXPECT_GT(rep.transfers_ok, 0u);
    EXPECT_EQ(rep.requests_failed, 0u);
    EXPECT_EQ(rep.latency.count(), rep.requests);
    EXPECT_EQ(rep.verify.transfers_checked, rep.transfers_ok);
    EXPECT_EQ(rep.verify.accounts_checked, w.accounts);
    EXPECT_FALSE(rep.timeline.empty());

    // Set-up refuses accounts a previous run moved money on.
    std::string why;
    EXPECT_FALSE(t->setup(w, &why));
    EXPECT_NE(why.find("previous run"), std::string::npos) << why;

    // Hot-account skew with balances that run out: rejections are counted by code, and
    // the verified balances still hold.
    auto hot = small_workload(2'000'000);
    hot.hot_pct = 80;
    hot.hot_accounts = 4;
    hot.opening = 200;
    hot.amount_max = 100;
    hot.run = 0x40;
    ASSERT_TRUE(t->setup(hot, &err)) << err;
    load::run_report hrep;
    ASSERT_TRUE(load::run_load(*t, hot, quick_run(), &hrep, &err)) << err;
    EXPECT_TRUE(hrep.verify.ok) << (hrep.verify.problems.empty() ? "" : hrep.verify.problems[0]);
    EXPECT_GT(hrep.results["exceeds_credits"], 0u);
    // The timeline counts what the headline does: the transfers answered ok (before, every
    // answered one, the rejections too).
    uint64_t timeline_ok = 0;
    for (const auto& row : hrep.timeline) timeline_ok += row.transfers;
    EXPECT_EQ(timeline_ok, hrep.transfers_ok);

    // Two-phase: pendings, each posted by a later request.
    auto two = small_workload(3'000'000);
    two.two_phase = true;
    two.run = 0x2f;
    ASSERT_TRUE(t->setup(two, &err)) << err;
    load::run_report trep;
    ASSERT_TRUE(load::run_load(*t, two, quick_run(), &trep, &err)) << err;
    EXPECT_TRUE(trep.verify.ok) << (trep.verify.problems.empty() ? "" : trep.verify.problems[0]);
    EXPECT_GT(trep.transfers_ok, 0u);
    EXPECT_EQ(trep.pendings_ok + trep.posts_ok, trep.transfers_ok);
    // What stays pending is checked too: every posted balance right, an amount left held.
    auto held = small_workload(3'250'000);
    held.two_phase = true;
    held.run = 0x2d;
    pending_left_target plt(*t);
    verify_fails(plt, held, quick_run(), "pending, expected");

    // An odd batch: a request posts up to half its batch rounded up, so the pendings left
    // waiting for their posts stay within what the windows hold (with half rounded down,
    // one more waited after every request: thousands in this run).
    auto odd = small_workload(3'500'000);
    odd.two_phase = true;
    odd.batch = 3;
    odd.run = 0x2e;
    ASSERT_TRUE(t->setup(odd, &err)) << err;
    auto oddo = quick_run();
    oddo.duration_s = 1.5;  // enough requests for the bound below to mean something
    load::run_report odrep;
    ASSERT_TRUE(load::run_load(*t, odd, oddo, &odrep, &err)) << err;
    EXPECT_TRUE(odrep.verify.ok) << (odrep.verify.problems.empty() ? "" : odrep.verify.problems[0]);
    EXPECT_GT(odrep.requests, 500u);
    EXPECT_EQ(odrep.pendings_ok + odrep.posts_ok, odrep.transfers_ok);
    EXPECT_LE(odrep.pendings_ok - odrep.posts_ok, uint64_t(oddo.connections) * 2 * oddo.window * odd.batch)
        << odrep.pendings_ok << " pendings, " << odrep.posts_ok << " posted, in " << odrep.requests << " requests";

    // Open loop: requests leave on schedule (rate x duration / batch), whatever the answers.
    auto open = small_workload(4'000'000);
    open.run = 0x0e;
    ASSERT_TRUE(t->setup(open, &err)) << err;
    auto o = quick_run();
    o.rate = 40'000;  // transfers/s: 400 requests/s of 100
    o.duration_s = 1;
    load::run_report orep;
    ASSERT_TRUE(load::run_load(*t, open, o, &orep, &err)) << err;
    EXPECT_TRUE(orep.verify.ok) << (orep.verify.problems.empty() ? "" : orep.verify.problems[0]);
    EXPECT_GE(orep.requests, 380u);
    EXPECT_LE(orep.requests, 402u);
    // Its rate is over the duration at least: at most the rate offered (before, over the
    // time to the last answer, which a low rate's last request ends early).
    EXPECT_GE(orep.seconds, 1.0);
    EXPECT_LE(orep.transfers_per_s(), 40'000 * 1.01);

    // Equb rounds: groups made, joined and started at setup; rounds 2 .. 5 of every group
    // paid (each group's payments on one connection, in round order), each round paying
    // out when its last seat paid. The run ends when every round is paid; every payment,
    // wallet, escrow and the fee account verified.
    auto eq = small_workload(6'000'000);
    eq.kind = load::item_kind::equb;
    eq.equb_seats = 5;
    eq.accounts = 503;  // 100 groups; 3 wallets idle
    eq.amount_max = 100;
    eq.run = 0xE0;
    ASSERT_TRUE(t->setup(eq, &err)) << err;
    auto eo = quick_run();
    eo.connections = 3;
    eo.duration_s = 60;  // an upper bound: it stops when the items run out
    load::run_report erep;
    ASSERT_TRUE(load::run_load(*t, eq, eo, &erep, &err)) << err;
    EXPECT_TRUE(erep.verify.ok) << (erep.verify.problems.empty() ? "" : erep.verify.problems[0]);
    EXPECT_EQ(eq.items_total(), 100u * 5 * 4);
    EXPECT_EQ(erep.transfers_ok, eq.items_total());
    EXPECT_EQ(erep.results["ok"], eq.items_total());
    EXPECT_EQ(erep.verify.accounts_checked, eq.tracked_accounts());
    // Every group completed: the fee account holds one fee per round of every group.
    {
      auto c = wire::client::connect(dev_gateway_options(dir.path(), port), &err);
      ASSERT_TRUE(c) << err;
      const uint64_t ids[] = {eq.fee_account(), eq.group_id(0), eq.group_id(99)};
      auto found = c->call(wire::lookup_accounts_body(ids));
      ASSERT_TRUE(found.ok);
      EXPECT_EQ(found.reply.accounts.at(0).credits_posted, 100u * 5 * eq.equb_fee());
      for (int i : {1, 2}) EXPECT_EQ(found.reply.accounts.at(i).credits_posted, found.reply.accounts.at(i).debits_posted);
    }
    // The same rounds open loop: one pacer sends for the three connections, passes over
    // a connection whose groups are all paid, and the run ends when every one is. In
    // batches of 20 the first connection (34 groups) has one request more than the
    // others (33 groups each), so it sends after they ran out.
    auto eq_open = eq;
    eq_open.first_account = 8'000'000;
    eq_open.run = 0xE2;
    eq_open.batch = 20;
    ASSERT_TRUE(t->setup(eq_open, &err)) << err;
    auto eoo = eo;
    eoo.rate = 20'000;
    load::run_report eorep;
    ASSERT_TRUE(load::run_load(*t, eq_open, eoo, &eorep, &err)) << err;
    EXPECT_EQ(eorep.mode, "open");
    EXPECT_TRUE(eorep.verify.ok) << (eorep.verify.problems.empty() ? "" : eorep.verify.problems[0]);
    EXPECT_EQ(eorep.transfers_ok, eq_open.items_total());
    EXPECT_LT(eorep.seconds, 30.0);
    // An equb request acknowledged but never applied is caught.
    auto eq_lost = eq;
    eq_lost.first_account = 7'000'000;
    eq_lost.run = 0xE1;
    losing_target elt(*t);
    ASSERT_TRUE(elt.setup(eq_lost, &err)) << err;
    load::run_report elrep;
    ASSERT_TRUE(load::run_load(elt, eq_lost, eo, &elrep, &err)) << err;
    EXPECT_FALSE(elrep.verify.ok);
    ASSERT_FALSE(elrep.verify.problems.empty());
    EXPECT_NE(elrep.verify.problems[0].find("is missing"), std::string::npos) << elrep.verify.problems[0];
    EXPECT_GT(elrep.results["round_not_open"], 0u) << "the lost payments' groups could not go on";

    // Verification catches an acknowledged request the target never applied.
    auto lost = small_workload(5'000'000);
    lost.run = 0x105e;
    losing_target lt(*t);
    verify_fails(lt, lost, quick_run(), "is missing");
  });
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.out;
}

// mesob-load across a crash: mesobd is killed (SIGKILL) mid-run and started again on the
// same port. The client reconnects and sends again what was not answered (a repeat of a
// transfer changes nothing); the report counts both, and verification finds every
// acknowledged transfer and the money conserved.
TEST(load, a_run_across_an_engine_crash_counts_reconnects_and_verifies) {
  temp_dir dir;
  auto d = std::make_unique<live_mesobd>(dir.path());
  ASSERT_TRUE(d->up());
  const uint16_t port = d->port();
  auto t = connect_target(dir.path(), port);
  ASSERT_TRUE(t);
  std::string err;
  auto w = small_workload(1'000'000);
  ASSERT_TRUE(t->setup(w, &err)) << err;
  auto o = quick_run();
  o.duration_s = 4;
  bool restarted = false;
  std::thread crasher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    d->crash();
    d = std::make_unique<live_mesobd>(dir.path(), std::vector<std::string>{"--port", std::to_string(port)});
    restarted = d->up();
  });
  load::run_report rep;
  const bool ran = load::run_load(*t, w, o, &rep, &err);
  crasher.join();
  ASSERT_TRUE(restarted) << d->output();
  ASSERT_TRUE(ran) << err;
  EXPECT_TRUE(rep.verify.ok) << (rep.verify.problems.empty() ? "" : rep.verify.problems[0]);
  EXPECT_GE(rep.reconnects, uint64_t(o.connections)) << "each connection was made again";
  EXPECT_GT(rep.resent, 0u) << "requests in flight at the crash were sent again";
  EXPECT_GT(rep.transfers_ok, 0u);
  std::printf("across the crash: %llu requests, %llu failed, %llu reconnects, %llu resent\n",
              (unsigned long long)rep.requests, (unsigned long long)rep.requests_failed,
              (unsigned long long)rep.reconnects, (unsigned long long)rep.resent);
}

// Deposits: mesob-load connects as a gateway registered on the admin port (its number
// from Welcome), credits the load's accounts from the gateway's settlement account, and
// verification finds every acknowledged deposit as the transfer it became and every
// balance; the program refuses --deposits for a gateway of the config file. Payouts:
// mesob-load answers as the registered gateway and verifies every outcome.
TEST(load, deposits_and_payouts_through_a_registered_gateway_verify) {
  temp_dir dir;
  live_mesobd d(dir.path(), two_gateways());
  ASSERT_TRUE(d.up()) << d.output();
  std::string err;
  auto ops = connect_ops(d.admin_port());
  ASSERT_TRUE(ops);
  auto m = admin(*ops, "gateway register", {"mpesa", "mobile_money", "1", "payments,ledger", "ETB=9100"});
  ASSERT_EQ(m.code, wire::admin_code::ok) << m.message;
  const std::string secret = cell(m, "credentials (shown once)", "secret_hex");

  auto w = small_workload(6'000'000);
  w.kind = load::item_kind::deposits;
  w.run = 0xde9;
  auto t = load::make_mesob_target(options(d.port(), "mpesa", secret), &err);
  ASSERT_TRUE(t) << err;
  w.gateway_number = t->gateway_number();
  ASSERT_NE(w.gateway_number, 0u);
  ASSERT_TRUE(t->setup(w, &err)) << err;
  load::run_report rep;
  ASSERT_TRUE(load::run_load(*t, w, quick_run(), &rep, &err)) << err;
  EXPECT_TRUE(rep.verify.ok) << (rep.verify.problems.empty() ? "" : rep.verify.problems[0]);
  EXPECT_GT(rep.transfers_ok, 0u);
  EXPECT_EQ(rep.verify.transfers_checked, rep.transfers_ok);
  EXPECT_EQ(rep.results["ok"], rep.transfers_ok);
  // The settlement account paid for every deposit.
  auto pay = wire::client::connect(options(d.port(), "pay", pay_hex), &err);
  ASSERT_TRUE(pay) << err;
  const auto s = pay->call(wire::lookup_accounts_body(std::vector<uint64_t>{9100}));
  ASSERT_TRUE(s.ok && s.reply.accounts.size() == 1) << s.failure;
  ASSERT_EQ(rep.requests_failed, 0u);
  const load::account_layout layout(w);
  uint64_t deposited = 0;  // items 1 .. n were sent, every one answered ok
  for (uint64_t k = 1; k <= rep.transfers; ++k) deposited += load::make_transfer(w, layout, k).amount;
  EXPECT_EQ(s.reply.accounts[0].debits_posted, deposited);

  // The program: --deposits as a registered gateway works; as a config gateway it is refused.
  const std::string base = bin("perf/mesob-load") + " --port " + std::to_string(d.port()) + " --shards 2";
  auto ok = run(base + " --deposits --gateway mpesa --secret " + secret +
                " --accounts 500 --first-account 7000000 --batch 50 --duration 0.4 --verify --quiet");
  EXPECT_TRUE(WIFEXITED(ok.status) && WEXITSTATUS(ok.status) == 0) << ok.out;
  EXPECT_NE(ok.out.find("verify: ok"), std::string::npos) << ok.out;
  auto config_gw = run(base + " --deposits --gateway pay --secret " + pay_hex + " --duration 1");
  EXPECT_EQ(WEXITSTATUS(config_gw.status), 2) << config_gw.out;
  EXPECT_NE(config_gw.out.find("not a registered gateway"), std::string::npos) << config_gw.out;

  // Payouts: mesob-load pays out as the client "pay" and answers as mpesa, a tenth of
  // them failed; verification waits for every answer and checks every balance.
  auto payouts = run(base + " --payouts --gateway pay --secret " + pay_hex + " --answer-gateway mpesa --answer-secret " +
                     secret + " --answer-fail-pct 10 --accounts 500 --first-account 8000000 --batch 50 --duration 0.4 "
                     "--verify --quiet");
  EXPECT_TRUE(WIFEXITED(payouts.status) && WEXITSTATUS(payouts.status) == 0) << payouts.out;
  EXPECT_NE(payouts.out.find("verify: ok"), std::string::npos) << payouts.out;
  EXPECT_NE(payouts.out.find("payouts answered: "), std::string::npos) << payouts.out;
  auto no_answer = run(base + " --payouts --gateway pay --secret " + pay_hex + " --duration 1");
  EXPECT_EQ(WEXITSTATUS(no_answer.status), 2) << no_answer.out;
  EXPECT_NE(no_answer.out.find("--answer-gateway"), std::string::npos) << no_answer.out;

  // The mix: every workload at once, each on its own accounts and connections, each
  // verified on its own, with one JSON report per workload. Deposits come from another
  // registered gateway than the one answering payouts.
  auto m2 = admin(*ops, "gateway register", {"airtel", "mobile_money", "2", "payments,ledger", "ETB=9101"});
  ASSERT_EQ(m2.code, wire::admin_code::ok) << m2.message;
  const std::string airtel = cell(m2, "credentials (shown once)", "secret_hex");
  const std::string json = dir.path() + "/mix.json";
  const std::string gateways = " --gateway pay --secret " + pay_hex + " --deposit-gateway airtel --deposit-secret " +
                               airtel + " --answer-gateway mpesa --answer-secret " + secret;
  auto mix = run(base + " --mix 'transfers:2, two-phase:1,deposits:1,payouts:1,equb:1'" + gateways +
                 " --accounts 600 --equb-seats 3 --first-account 9000000 --batch 60 --duration 0.8 --verify --quiet"
                 " --json " + json);
  EXPECT_TRUE(WIFEXITED(mix.status) && WEXITSTATUS(mix.status) == 0) << mix.out;
  for (const char* name : {"transfers", "two-phase", "deposits", "payouts", "equb"}) {
    EXPECT_NE(mix.out.find(std::string("== ") + name + "\n"), std::string::npos) << name << "\n" << mix.out;
    std::error_code ec;
    EXPECT_TRUE(std::filesystem::exists(dir.path() + "/mix-" + name + ".json", ec)) << name;
  }
  size_t verified = 0;
  for (size_t at = 0; (at = mix.out.find("verify: ok", at)) != std::string::npos; ++at) ++verified;
  EXPECT_EQ(verified, 5u) << mix.out;
  EXPECT_NE(mix.out.find("over 5 workloads at once"), std::string::npos) << mix.out;
  // Bad mixes: precise refusals.
  auto bad_kind = run(base + " --mix transfers,trades --gateway pay --secret " + pay_hex);
  EXPECT_EQ(WEXITSTATUS(bad_kind.status), 2) << bad_kind.out;
  EXPECT_NE(bad_kind.out.find("unknown workload 'trades'"), std::string::npos) << bad_kind.out;
  auto twice = run(base + " --mix equb:1,equb:2 --gateway pay --secret " + pay_hex);
  EXPECT_NE(twice.out.find("'equb' twice"), std::string::npos) << twice.out;
  auto no_deposit_gw = run(base + " --mix transfers,deposits --gateway pay --secret " + pay_hex);
  EXPECT_EQ(WEXITSTATUS(no_deposit_gw.status), 2) << no_deposit_gw.out;
  EXPECT_NE(no_deposit_gw.out.find("--deposit-gateway"), std::string::npos) << no_deposit_gw.out;
  auto same_gw = run(base + " --mix deposits,payouts --gateway pay --secret " + pay_hex +
                     " --deposit-gateway mpesa --deposit-secret " + secret + " --answer-gateway mpesa --answer-secret " +
                     secret);
  EXPECT_EQ(WEXITSTATUS(same_gw.status), 2) << same_gw.out;
  EXPECT_NE(same_gw.out.find("must differ"), std::string::npos) << same_gw.out;
  // A mix of one is still a mix: deposits from --deposit-gateway, a report named for it.
  // (--answer-* with no payouts in the mix would change nothing: refused.)
  auto unused = run(base + " --mix deposits:2" + gateways);
  EXPECT_EQ(WEXITSTATUS(unused.status), 2) << unused.out;
  EXPECT_NE(unused.out.find("--answer-gateway answers payouts: this run has none"), std::string::npos) << unused.out;
  auto one = run(base + " --mix deposits:2 --gateway pay --secret " + pay_hex + " --deposit-gateway airtel --deposit-secret " +
                 airtel + " --accounts 300 --first-account 30000000 --batch 50 " +
                 "--duration 0.4 --verify --quiet --json " + dir.path() + "/one.json");
  EXPECT_TRUE(WIFEXITED(one.status) && WEXITSTATUS(one.status) == 0) << one.out;
  EXPECT_NE(one.out.find("== deposits\n"), std::string::npos) << one.out;
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/one-deposits.json"));
}

// Orders: an operator sets tier 1 and the moderate profile and registers a broker and a
// gateway with the payments, KYC and market-data roles; mesob-load lists the instrument,
// makes its accounts verified customers, places market buys as that gateway and fills
// them as the broker (rejecting a tenth); verification waits for every answer and checks
// that each account paid exactly its filled orders and holds nothing pending. In a mix
// too, beside transfers.
TEST(load, orders_filled_by_the_broker_mesob_load_answers_as_verify) {
  temp_dir dir;
  live_mesobd d(dir.path(), two_gateways());
  ASSERT_TRUE(d.up()) << d.output();
  std::string err;
  auto ops = connect_ops(d.admin_port());
  ASSERT_TRUE(ops);
  const std::string big = "1000000000000000";
  ASSERT_EQ(admin(*ops, "tier set", {"1", "ETB", big, big, big}).code, wire::admin_code::ok);
  ASSERT_EQ(admin(*ops, "profile set", {"moderate", "fund", big}).code, wire::admin_code::ok);
  auto bk = admin(*ops, "gateway register", {"bk", "bank", "1", "broker", "ETB=9300"});
  ASSERT_EQ(bk.code, wire::admin_code::ok) << bk.message;
  auto loader = admin(*ops, "gateway register", {"loader", "bank", "2", "payments,kyc,market_data,ledger", "ETB=9301"});
  ASSERT_EQ(loader.code, wire::admin_code::ok) << loader.message;
  const std::string bk_secret = cell(bk, "credentials (shown once)", "secret_hex");
  const std::string loader_secret = cell(loader, "credentials (shown once)", "secret_hex");
  const std::string base = bin("perf/mesob-load") + " --port " + std::to_string(d.port()) + " --shards 2";
  const std::string as = " --gateway loader --secret " + loader_secret + " --broker-gateway bk --broker-secret " + bk_secret;
  auto orders = run(base + " --orders" + as + " --broker-reject-pct 10 --accounts 500 --first-account 5000000 " +
                    "--batch 50 --duration 1 --verify --quiet");
  EXPECT_TRUE(WIFEXITED(orders.status) && WEXITSTATUS(orders.status) == 0) << orders.out;
  EXPECT_NE(orders.out.find("verify: ok"), std::string::npos) << orders.out;
  EXPECT_NE(orders.out.find("orders answered: "), std::string::npos) << orders.out;
  EXPECT_EQ(orders.out.find("orders answered: 0 filled"), std::string::npos) << orders.out;
  // Some positions the fills made, read back.
  auto c = wire::client::connect(options(d.port(), "loader", loader_secret), &err);
  ASSERT_TRUE(c) << err;
  std::vector<uint64_t> wallets;
  for (uint64_t w = 5000000; w < 5000016; ++w) wallets.push_back(w);
  auto pos = c->call(wire::lookup_positions_body(wallets));
  ASSERT_TRUE(pos.ok) << pos.failure;
  EXPECT_EQ(pos.reply.results, std::vector<wire::result>(16, wire::result::ok));
  EXPECT_FALSE(pos.reply.positions.empty());
  // In a mix, beside transfers; without a broker it is refused.
  auto mix = run(base + " --mix transfers:1,orders:1" + as + " --accounts 400 --first-account 6000000 --batch 40 " +
                 "--duration 1 --verify --quiet");
  EXPECT_TRUE(WIFEXITED(mix.status) && WEXITSTATUS(mix.status) == 0) << mix.out;
  EXPECT_NE(mix.out.find("== orders\n"), std::string::npos) << mix.out;
  auto no_broker = run(base + " --orders --gateway loader --secret " + loader_secret + " --duration 1");
  EXPECT_EQ(WEXITSTATUS(no_broker.status), 2) << no_broker.out;
  EXPECT_NE(no_broker.out.find("--broker-gateway"), std::string::npos) << no_broker.out;
}

// A synchronous target (a window of 1: the request runs inside submit, as PostgreSQL's
// and Redis's do) keeps a sender per connection in the open loop: 4 connections whose
// requests take 10 ms each carry 150 requests/s on schedule, which one sender for all
// (at most 100/s) could not.
TEST(load, open_loop_keeps_a_sender_per_synchronous_connection) {
  class sleepy final : public keeps_nothing_target {
   public:
    std::string name() const override { return "sleepy"; }
    std::unique_ptr<load::target_connection> connect(const load::workload&, std::string*) override {
      class conn final : public load::target_connection {
       public:
        void submit(std::vector<wire::transfer> b, std::function<void(load::batch_outcome&&)> done) override {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          load::batch_outcome o;
          o.results.assign(b.size(), wire::result::ok);
          done(std::move(o));
        }
        uint32_t window_max() const override { return 1; }
      };
      return std::make_unique<conn>();
    }
  } t;
  const load::run_report r = run_single_transfers(t, 4, 150, 2);
  EXPECT_GE(r.requests, 280u) << "requests due in 2 s: 300";
  EXPECT_LE(r.requests, 301u);
}

// A pipelined target (a window of 8) answering each request when `answer_at` says, given
// when it came and its number on the connection: in order of those times, each from one
// worker thread of the connection.
class timed_target : public keeps_nothing_target {
 public:
  using clock = std::chrono::steady_clock;
  using answer_time = std::function<clock::time_point(clock::time_point came, size_t k)>;
  explicit timed_target(answer_time answer_at) : answer_at_(std::move(answer_at)) {}
  std::unique_ptr<load::target_connection> connect(const load::workload&, std::string*) override {
    return std::make_unique<conn>(answer_at_);
  }

 private:
  class conn final : public load::target_connection {
   public:
    explicit conn(answer_time answer_at) : answer_at_(std::move(answer_at)), worker_([this] { run(); }) {}
    ~conn() override {
      {
        std::lock_guard lk(mu_);
        stop_ = true;
      }
      cv_.notify_all();
      worker_.join();
    }
    void submit(std::vector<wire::transfer> b, std::function<void(load::batch_outcome&&)> done) override {
      {
        std::lock_guard lk(mu_);
        queue_.push_back({answer_at_(clock::now(), next_++), b.size(), std::move(done)});
      }
      cv_.notify_all();
    }
    uint32_t window_max() const override { return 8; }

   private:
    struct waiting {
      clock::time_point at;
      size_t n;
      std::function<void(load::batch_outcome&&)> done;
    };
    void run() {
      std::unique_lock lk(mu_);
      for (;;) {
        cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        const auto first = std::min_element(queue_.begin(), queue_.end(),
                                            [](const waiting& x, const waiting& y) { return x.at < y.at; });
        if (!stop_ && clock::now() < first->at) {
          cv_.wait_until(lk, first->at);
          continue;
        }
        waiting w = std::move(*first);
        queue_.erase(first);
        lk.unlock();
        load::batch_outcome o;
        o.results.assign(w.n, wire::result::ok);
        w.done(std::move(o));
        lk.lock();
      }
    }
    answer_time answer_at_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<waiting> queue_;
    size_t next_ = 0;
    bool stop_ = false;
    std::thread worker_;
  };
  answer_time answer_at_;
};

// Answers at once, but holds every answer while it stalls (from `stall_from` to `stall_to`
// after it was made), as an engine does in a long fsync.
class stalling_target final : public timed_target {
 public:
  stalling_target(std::chrono::milliseconds from, std::chrono::milliseconds to)
      : timed_target([from = clock::now() + from, to = clock::now() + to](clock::time_point came, size_t) {
          return came >= from && came < to ? to : came;
        }) {}
  std::string name() const override { return "stalling"; }
};

// Answers each request after a delay of `mean` on average (half to one and a half of it,
// in a fixed cycle, so that a window's answers spread rather than come together): a
// closed loop's rate is connections x window / mean.
class delayed_target final : public timed_target {
 public:
  explicit delayed_target(std::chrono::milliseconds mean)
      : timed_target([mean](clock::time_point came, size_t k) {
          static constexpr int spread[] = {50, 150, 75, 125, 100, 60, 140, 100};  // percent of the mean: 100 on average
          return came + mean * spread[k % std::size(spread)] / 100;
        }) {}
  std::string name() const override { return "delayed"; }
};

// The open loop sends every request due before the end, however late: a stall across the
// end (its window full) delays them and their latency shows it. Before, the requests due
// after the stall began and before the end were never sent nor counted, and the stall
// showed only in the few in flight.
TEST(load, an_open_loop_sends_everything_due_before_the_end) {
  stalling_target t(std::chrono::milliseconds(1400), std::chrono::milliseconds(3600));
  const load::run_report r = run_single_transfers(t, 2, 1000, 2);
  EXPECT_EQ(r.requests_failed, 0u);
  EXPECT_GE(r.requests, 1990u) << "requests due in 2 s: 2,000";
  EXPECT_LE(r.requests, 2001u);
  // About 600 requests were due during the stall before the end: their latency counts
  // from their due times, hundreds of ms for the p90 and up.
  EXPECT_GE(r.latency.percentile(90), 200'000'000u) << "p90 " << r.latency.percentile(90) << " ns";
  EXPECT_EQ(r.window, 8u) << "the target's cap, not the asked";
  // The load generator's own lateness: every request sent is in it, and those due in the
  // stall left when it ended (over 2 s late), not on time.
  EXPECT_EQ(r.send_lag.count(), r.requests);
  EXPECT_GE(r.send_lag.max(), 1'500'000'000u) << "max " << r.send_lag.max() << " ns";
  EXPECT_EQ(r.failed_latency.count(), 0u);
  // The drain has a row each second too (before, one row held everything after the end).
  ASSERT_GE(r.timeline.size(), 4u);
  EXPECT_TRUE(std::any_of(r.timeline.begin(), r.timeline.end(), [](const auto& row) { return row.t_s > 2.5 && row.t_s < 3.5; }))
      << "no row for the drain's first second";
  for (size_t i = 1; i < r.timeline.size(); ++i) EXPECT_GT(r.timeline[i].t_s, r.timeline[i - 1].t_s) << i;
}

// A closed loop's rate after a warm-up is its rate: the windows still full of the warm-up's
// requests at its end are answered in the measured time, and count there. Before, they
// counted as the warm-up's (sent then) while their time was measured: 2 x 8 requests
// answered 200 ms after they came on average, 80 a second, read about 65 a second over a
// 1-s window.
TEST(load, a_closed_loop_after_a_warm_up_measures_its_rate) {
  delayed_target t(std::chrono::milliseconds(200));
  const load::run_report r = run_single_transfers(t, 2, 0, 1, 60, 1, 8);
  EXPECT_EQ(r.requests_failed, 0u);
  EXPECT_GE(r.warmup_requests, 64u) << "80 a second";
  EXPECT_GE(r.transfers_per_s(), 70.0) << r.requests << " requests over " << r.seconds << " s";
  EXPECT_LE(r.transfers_per_s(), 86.0) << r.requests << " requests over " << r.seconds << " s";
  // Their latency is the target's 100-300 ms, the warm-up's requests answered in it included.
  EXPECT_GE(r.latency.percentile(1), 95'000'000u);
  EXPECT_LE(r.latency.percentile(99), 400'000'000u);
}

// A warm-up's requests are answered but not measured: a stall inside it (0.2-0.7 s of a
// 1-s warm-up) shows in the timeline, not in the measured window's latency or throughput.
TEST(load, a_warm_up_is_answered_but_not_measured) {
  stalling_target t(std::chrono::milliseconds(200), std::chrono::milliseconds(700));
  load::run_report r = run_single_transfers(t, 2, 1000, 1, 60, 1);
  EXPECT_EQ(r.requests_failed, 0u);
  EXPECT_DOUBLE_EQ(r.warmup_s, 1.0);
  // About 1,000 due in each (a few due just before the warm-up's end answered after it).
  EXPECT_GE(r.warmup_requests, 950u);
  EXPECT_LE(r.warmup_requests, 1001u);
  EXPECT_EQ(r.warmup_transfers_ok, r.warmup_requests);
  EXPECT_GE(r.requests, 990u);
  EXPECT_LE(r.requests, 1050u);
  EXPECT_GE(r.requests + r.warmup_requests, 1990u);
  EXPECT_LE(r.requests + r.warmup_requests, 2001u);
  EXPECT_EQ(r.latency.count(), r.requests);
  EXPECT_EQ(r.results[std::string(wire::result_name(wire::result::ok))], r.requests);
  // The stall's half second would be the p99 and more had its requests been measured.
  EXPECT_LT(r.latency.percentile(99), 100'000'000u) << "p99 " << r.latency.percentile(99) << " ns";
  EXPECT_GT(r.seconds, 0.9);
  EXPECT_LT(r.seconds, 1.5);
  // The timeline covers both: the warm-up's stall is in it.
  ASSERT_FALSE(r.timeline.empty());
  EXPECT_GE(r.timeline.back().t_s, 1.9);
  uint64_t timeline_ok = 0, stall_max = 0;
  for (const auto& row : r.timeline) {
    timeline_ok += row.transfers;
    if (row.t_s < 1.5) stall_max = std::max(stall_max, row.max_ns);  // the first row, however late it closed
  }
  EXPECT_EQ(timeline_ok, r.transfers_ok + r.warmup_transfers_ok);
  EXPECT_GE(stall_max, 300'000'000u) << "the warm-up's stall, in its rows";
}

// Requests still due when the drain timeout gives up on them (the window stayed full
// through a stall) fail with their time to failure from their due times. Before, they
// were counted failed with no time at all.
TEST(load, requests_never_sent_by_the_drain_timeout_fail_with_their_time_to_failure) {
  stalling_target t(std::chrono::milliseconds(500), std::chrono::milliseconds(3500));
  // The drain gives up 3 s in; the stall's window is answered 3.5 s in.
  load::run_report r = run_single_transfers(t, 1, 500, 2, 1);
  const uint64_t unsent = r.failures["not sent: still due at the drain timeout (the window full, or the sender behind)"];
  EXPECT_GE(unsent, 600u) << "about 750 due from 0.5 s to 2 s, less the window of 8";
  EXPECT_EQ(r.requests_failed, unsent);
  EXPECT_EQ(r.failed_latency.count(), unsent);
  // Each was due before the end (2 s in) and given up 3 s in: a second or more.
  EXPECT_GE(r.failed_latency.percentile(1), 900'000'000u) << r.failed_latency.percentile(1) << " ns";
  EXPECT_LE(r.failed_latency.max(), 3'500'000'000u);
  EXPECT_GE(r.requests, 200u);
}

// An equb open loop whose window stays full past the drain timeout: what is counted not
// sent is what its items would still have made, not every due slot to the end (its items
// run out: before, 24 payments left counted some 1,000 requests failed).
TEST(load, an_equb_run_given_up_counts_only_the_payments_it_had_left) {
  stalling_target t(std::chrono::milliseconds(0), std::chrono::milliseconds(3000));
  const auto w = four_equb_groups();  // 24 payments
  load::run_options o;
  o.connections = 1;
  o.rate = 500;
  o.duration_s = 2;
  o.drain_timeout_s = 0.5;
  o.progress = false;
  load::run_report r;
  std::string err;
  ASSERT_TRUE(load::run_load(t, w, o, &r, &err)) << err;
  const uint64_t unsent = r.failures["not sent: still due at the drain timeout (the window full, or the sender behind)"];
  EXPECT_GT(unsent, 0u) << "the window of 8 stayed full";
  EXPECT_EQ(r.requests + unsent, 24u) << r.requests << " sent, " << unsent << " counted not sent";
  EXPECT_EQ(r.failed_latency.count(), r.requests_failed);
}

// An equb run whose payments all come back in the warm-up measured nothing: it fails,
// saying so, rather than reporting 0 a second.
TEST(load, a_run_answered_wholly_in_its_warm_up_fails) {
  delayed_target t(std::chrono::milliseconds(2));
  const auto w = four_equb_groups();  // 24 payments, answered in well under the warm-up's second
  load::run_options o;
  o.connections = 1;
  o.warmup_s = 1;
  o.duration_s = 1;
  o.progress = false;
  load::run_report r;
  std::string err;
  EXPECT_FALSE(load::run_load(t, w, o, &r, &err));
  EXPECT_NE(err.find("every answer came in the warm-up (24 requests): nothing was measured"), std::string::npos)
      << err;
}

// An engine that stops answering with its connections open: the requests still out a
// drain timeout after the last was sent are failed by closing the connections, and the
// run reports (before, it ended with an error and no report at all).
TEST(load, requests_unanswered_at_the_drain_timeout_fail_and_the_run_still_reports) {
  class hanging final : public keeps_nothing_target {
   public:
    std::string name() const override { return "hanging"; }
    std::unique_ptr<load::target_connection> connect(const load::workload&, std::string*) override {
      class conn final : public load::target_connection {
       public:
        ~conn() override {  // as the client's: what is out fails as the connection closes
          for (auto& done : held_) {
            load::batch_outcome o;
            o.failure = "client closed";
            done(std::move(o));
          }
        }
        void submit(std::vector<wire::transfer> b, std::function<void(load::batch_outcome&&)> done) override {
          if (++n_ <= 10) {  // the first ten answered, then nothing
            load::batch_outcome o;
            o.results.assign(b.size(), wire::result::ok);
            done(std::move(o));
            return;
          }
          std::lock_guard lk(mu_);
          held_.push_back(std::move(done));
        }
        uint32_t window_max() const override { return 4; }

       private:
        uint64_t n_ = 0;
        std::mutex mu_;
        std::vector<std::function<void(load::batch_outcome&&)>> held_;
      };
      return std::make_unique<conn>();
    }
  } t;
  const auto begun = std::chrono::steady_clock::now();
  load::run_report r = run_single_transfers(t, 2, 0, 0.5, 0.5);
  EXPECT_LT(std::chrono::steady_clock::now() - begun, std::chrono::seconds(10));
  EXPECT_EQ(r.requests, 20u) << "ten a connection answered";
  EXPECT_EQ(r.unanswered_at_drain, 8u) << "each connection's window of 4";
  EXPECT_EQ(r.requests_failed, 8u);
  EXPECT_EQ(r.failures["client closed"], 8u);
  EXPECT_EQ(r.failed_latency.count(), 8u);
  EXPECT_LT(r.seconds, 0.5) << "the run's time ends at its last answer, not at the close's failures";
}

// Failed requests: their time to failure is reported apart from the latency of answered
// ones, and the connections' reconnects and resends are summed into the report.
TEST(load, failures_time_to_failure_and_reconnects_are_reported) {
  class flaky final : public keeps_nothing_target {
   public:
    std::string name() const override { return "flaky"; }
    std::unique_ptr<load::target_connection> connect(const load::workload&, std::string*) override {
      class conn final : public load::target_connection {
       public:
        void submit(std::vector<wire::transfer> b, std::function<void(load::batch_outcome&&)> done) override {
          load::batch_outcome o;
          if (++n_ % 4 == 0) {  // fails after 20 ms
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            o.failure = "connection lost";
          } else {
            o.results.assign(b.size(), wire::result::ok);
          }
          done(std::move(o));
        }
        uint32_t window_max() const override { return 1; }
        uint64_t reconnects() const override { return n_ / 4; }
        uint64_t resent() const override { return 2 * (n_ / 4); }

       private:
        uint64_t n_ = 0;
      };
      return std::make_unique<conn>();
    }
  } t;
  load::run_report r = run_single_transfers(t, 2, 0, 1);
  ASSERT_GT(r.requests_failed, 0u);
  EXPECT_EQ(r.failed_latency.count(), r.requests_failed);
  EXPECT_GE(r.failed_latency.percentile(50), 20'000'000u);
  EXPECT_LT(r.latency.percentile(99), 20'000'000u) << "the failures' 20 ms are not in the answered requests' latency";
  EXPECT_EQ(r.failures["connection lost"], r.requests_failed);
  EXPECT_EQ(r.reconnects, r.requests_failed);
  EXPECT_EQ(r.resent, 2 * r.requests_failed);
  EXPECT_EQ(r.send_lag.count(), 0u) << "a closed loop sends when it may";
}

TEST(load, the_program_reports_json_and_plots_and_refuses_bad_input) {
  temp_dir dir;
  const std::string out = dir.path() + "/out";
  auto r = start_and_stop_mesobd(dir.path() + "/data", [&](uint16_t port) {
    ASSERT_NE(port, 0);
    const std::string base = bin("perf/mesob-load") + " --port " + std::to_string(port) +
                             " --secret-file " + dir.path() + "/data/dev-gateway.secret";
    auto ok = run(base + " --accounts 1000 --batch 64 --duration 1.5 --verify --quiet --json " + out +
                  "/load.json --plot " + out + " --label t");
    ASSERT_TRUE(WIFEXITED(ok.status) && WEXITSTATUS(ok.status) == 0) << ok.out;
    EXPECT_NE(ok.out.find("verify: ok"), std::string::npos) << ok.out;
    // The layout's shard count is the one mesobd says in its Welcome (2 here), whatever this
    // machine's cores.
    EXPECT_NE(ok.out.find(" accounts, 2 shards, "), std::string::npos) << ok.out;
    EXPECT_NE(ok.out.find("p99.99"), std::string::npos) << ok.out;
    const auto json = read_file(out + "/load.json");
    EXPECT_NE(json.find("\"transfers_per_s\""), std::string::npos) << json;
    // A warm-up's transfers are verified with the rest, and reported apart.
    auto warm = run(base + " --accounts 1000 --first-account 700000 --batch 64 --warmup 0.5 --duration 0.5 --verify "
                           "--quiet --json " + out + "/warm.json --plot " + out + " --label w");
    ASSERT_TRUE(WIFEXITED(warm.status) && WEXITSTATUS(warm.status) == 0) << warm.out;
    EXPECT_NE(warm.out.find("warm-up 0.50 s first: "), std::string::npos) << warm.out;
    const auto warm_json = read_file(out + "/warm.json");
    const auto number = [&](const std::string& key) -> uint64_t {
      const auto at = warm_json.find("\"" + key + "\": ");
      if (at == std::string::npos) {
        ADD_FAILURE() << key << " missing: " << warm_json;
        return 0;
      }
      return std::stoull(warm_json.substr(at + key.size() + 4));
    };
    EXPECT_GT(number("warmup_transfers_ok"), 0u) << warm_json;
    EXPECT_GT(number("transfers_ok"), 0u) << warm_json;
    EXPECT_EQ(number("transfers_checked"), number("transfers_ok") + number("warmup_transfers_ok")) << warm_json;
    EXPECT_NE(warm_json.find("\"ok\": true"), std::string::npos) << warm_json;
    EXPECT_NE(read_file(out + "/w.gp").find("warm-up ends"), std::string::npos);
    EXPECT_NE(json.find("\"p99_99\""), std::string::npos) << json;
    EXPECT_NE(json.find("\"ok\": true"), std::string::npos) << json;
    for (const char* png : {"/t-latency-over-time.png", "/t-latency-distribution.png"}) {
      std::error_code ec;
      EXPECT_GT(std::filesystem::file_size(out + png, ec), 1000u) << png << " " << ec.message();
    }
    // Bad options: exit code 2 and what is wrong.
    auto bad = run(base + " --batch 9000");
    EXPECT_EQ(WEXITSTATUS(bad.status), 2) << bad.out;
    EXPECT_NE(bad.out.find("batch: 1 .. 8,192"), std::string::npos) << bad.out;
    // Refused before anything is made on the target (before, the accounts were made and
    // funded first, and the exit code was 1).
    for (const auto& [flag, says] : std::vector<std::pair<std::string, std::string>>{
             {" --duration 0", "duration must be over 0"},
             {" --duration nan", "'nan' is not a finite decimal number"},
             {" --warmup -1", "warm-up must be 0 .. 3,600 s"},
             {" --warmup 4000", "warm-up must be 0 .. 3,600 s"},
             {" --connections 0", "connections: 1 .. 1,024"},
             {" --rate -1", "rate must be 0 .. 1e9"},
             // Fewer than two requests in the duration (before, one was sent and its
             // batch over its latency reported as the rate).
             {" --rate 100 --duration 1", "sends fewer than two requests of"},
             // Options that would change nothing are refused, not ignored.
             {" --window 0", "window: 1 .. 1,024"},
             {" --rate 1000 --window 8", "--window is the closed loop's"},
             {" --mix transfers:1 --connections 4", "--connections: a mix gives each workload its own"},
             {" --label \"it's\" --plot " + out, "--label 'it's': no quotes"},
             {" --answer-fail-pct 5", "--answer-fail-pct answers payouts: this run has none"},
             {" --broker-latency-ms 5", "--broker-latency-ms answers orders: this run has none"},
             {" --deposit-gateway gw", "--deposit-gateway is where a mix's deposits come from: --deposits uses"},
             // A layout for another shard count would cross shards in other shares than asked.
             {" --shards 3", "--shards 3: the target has 2 shards"},
             // Verification counts from the opening balances setup pays (before, it failed
             // on any accounts an earlier run had moved).
             {" --no-setup --verify", "drop --no-setup"},
             // Where the report goes is checked first (before, after the run, and a path
             // under a file ended it in std::terminate).
             {" --json " + out + "/load.json/x.json", "--json: " + out + "/load.json: cannot make the directory"},
             {" --json " + out, "--json: " + out + " is a directory: name a file"},
             {" --plot " + out + "/load.json", "--plot: " + out + "/load.json: cannot make the directory"}}) {
      auto refused = run(base + " --accounts 500" + flag);
      EXPECT_EQ(WEXITSTATUS(refused.status), 2) << flag << refused.out;
      EXPECT_NE(refused.out.find(says), std::string::npos) << flag << refused.out;
      EXPECT_EQ(refused.out.find("accounts ready"), std::string::npos) << flag << refused.out;
    }
    // A run id given again: the earlier run's transfers would be answered ok as repeats and
    // counted as new ones. Refused, nothing sent.
    const std::string again = base + " --accounts 300 --first-account 900000 --duration 0.3 --quiet --run-id 777";
    auto first = run(again);
    ASSERT_EQ(WEXITSTATUS(first.status), 0) << first.out;
    auto second = run(again + " --no-setup");
    EXPECT_EQ(WEXITSTATUS(second.status), 2) << second.out;
    EXPECT_NE(second.out.find("--run-id 0000000000000309: the target holds this run's first transfer already"),
              std::string::npos)
        << second.out;
    EXPECT_EQ(second.out.find("requests answered"), std::string::npos) << second.out;
    auto no_secret = run(bin("perf/mesob-load") + " --port " + std::to_string(port));
    EXPECT_EQ(WEXITSTATUS(no_secret.status), 2) << no_secret.out;
    EXPECT_NE(no_secret.out.find("no gateway secret"), std::string::npos) << no_secret.out;
    // Wrong secret: the server's refusal, exit code 1.
    auto wrong = run(bin("perf/mesob-load") + " --port " + std::to_string(port) + " --secret " +
                     std::string(64, 'a'));
    EXPECT_EQ(WEXITSTATUS(wrong.status), 1) << wrong.out;
    EXPECT_NE(wrong.out.find("auth failed"), std::string::npos) << wrong.out;
  });
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.out;
  // Nobody listening: a clear refusal.
  auto refused = run(bin("perf/mesob-load") + " --port 1 --secret " + std::string(64, 'a'));
  EXPECT_EQ(WEXITSTATUS(refused.status), 1) << refused.out;
  EXPECT_NE(refused.out.find("refused"), std::string::npos) << refused.out;
}
