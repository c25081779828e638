// Payment gateways end to end: a real mesobd on loopback, gateways registered through
// its admin port, and the gateway simulator (tools/gateway_sim.hpp) connected as those
// gateways over the protocol. Deposits, payouts settled and failed with duplicate
// answers, a gateway dropping its connection with payouts in flight, timeouts into dead
// letters that operators cancel and retry, a kill -9 of the engine with payouts in
// flight, and the mesob-gatewaysim program itself. Money is checked at the end of each:
// what left the wallets is what reached the settlement accounts, and no hold is left.
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <atomic>
#include <algorithm>
#include <chrono>
#include <thread>

#include "actors/payout_desk.hpp"
#include "support/engine_fixture.hpp"
#include "support/admin_client.hpp"
#include "support/mesobd_process.hpp"
#include "support/temp_dir.hpp"
#include "tools/gateway_sim.hpp"
#include "wire/client.hpp"

using namespace mesob;
using namespace mesob::test;
using wire::admin_code;

namespace {

constexpr uint64_t settle_a = 7001, settle_b = 7002, wallets = 40;

// A live mesobd with alpha (priority 1) and beta (priority 2) registered, both mobile
// money in ETB, and `wallets` funded wallets (through alpha's deposits).
struct gateway_world {
  temp_dir dir;
  std::unique_ptr<live_mesobd> d;
  std::unique_ptr<wire::client> pay, ops;
  std::string alpha_hex, beta_hex;

  void start(uint32_t timeout_ms) {
    d = std::make_unique<live_mesobd>(dir.path(), two_gateways());
    ASSERT_TRUE(d->up()) << d->output();
    connect();
    const std::string t = "timeout_ms=" + std::to_string(timeout_ms);
    auto m = admin(*ops, "gateway register", {"alpha", "mobile_money", "1", "payments", "ETB=7001", t});
    ASSERT_EQ(m.code, admin_code::ok) << m.message;
    alpha_hex = cell(m, "credentials (shown once)", "secret_hex");
    m = admin(*ops, "gateway register", {"beta", "mobile_money", "2", "payments", "ETB=7002", t});
    ASSERT_EQ(m.code, admin_code::ok) << m.message;
    beta_hex = cell(m, "credentials (shown once)", "secret_hex");
    std::vector<wire::account> a;
    for (uint64_t id = 1; id <= wallets; ++id) a.push_back(make_account(id, wire::account_flags::debits_must_not_exceed_credits));
    ASSERT_TRUE(pay->call(wire::create_accounts_body(a)).ok);
  }
  void connect() {
    std::string err;
    pay = wire::client::connect(options(d->port(), "pay", pay_hex), &err);
    ops = wire::client::connect(options(d->admin_port(), "ops", ops_hex), &err);
    ASSERT_TRUE(pay && ops) << err;
  }
  tools::gateway_sim_options sim(const std::string& g, uint64_t seed) const {
    tools::gateway_sim_options o;
    o.port = d->port();
    o.gateway = g;
    EXPECT_TRUE(wire::from_hex(g == "alpha" ? alpha_hex : beta_hex, &o.secret));
    o.seed = seed;
    o.latency_ms = 1;
    o.wallet_first = 1;
    o.wallet_count = wallets;
    return o;
  }
  std::vector<wire::account> accounts(std::vector<uint64_t> ids) {
    auto r = pay->call(wire::lookup_accounts_body(ids));
    EXPECT_TRUE(r.ok) << r.failure;
    return r.reply.accounts;
  }
  std::vector<wire::result> payouts(uint64_t first, uint64_t n, uint64_t amount) {
    std::vector<wire::payout> ps;
    for (uint64_t i = 0; i < n; ++i) {
      wire::payout p{};
      p.id = first + i;
      p.wallet = 1 + (first + i) % wallets;
      p.amount = amount;
      p.destination = 251900000000 + first + i;
      p.currency = wire::currency("ETB");
      p.rail = 1;
      ps.push_back(p);
    }
    auto r = pay->call(wire::payouts_body(ps));
    EXPECT_TRUE(r.ok) << r.failure << r.error.message;
    return r.reply.results;
  }
  uint64_t held() {
    auto m = admin(*ops, "payouts");
    uint64_t n = 0;
    for (const auto& s : m.sections)
      if (s.title == "desks")
        for (const auto& row : s.rows) n += std::stoull(row[2]);
    return n;
  }
  // The dead letters the admin port lists (ids).
  std::vector<std::string> dead_letters() {
    std::vector<std::string> ids;
    for (const auto& s : admin(*ops, "payouts", {"4096"}).sections)
      if (s.title == "dead letters")
        for (const auto& row : s.rows) ids.push_back(row[0]);
    return ids;
  }
  // Waits until every payout held is a dead letter; returns how many there are.
  size_t wait_only_dead_letters(int seconds) {
    for (int i = 0; i < seconds * 20; ++i) {
      const uint64_t h = held();
      const auto dead = dead_letters();
      if (h == dead.size()) return dead.size();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << held() << " payouts still held that are not dead letters";
    return 0;
  }
  bool wait_held(uint64_t n, int seconds) {
    for (int i = 0; i < seconds * 20; ++i) {
      if (held() == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // Settlement account `id`'s credits once they reach `amount` (or 10 s passed): a payout's
  // hold resolves before the sweep that carries it to its settlement account lands.
  uint64_t credited(uint64_t id, uint64_t amount) {
    uint64_t got = 0;
    for (int i = 0; i < 200 && (got = accounts({id}).at(0).credits_posted) < amount; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return got;
  }
  // What left the wallets reached the settlement accounts (once the sweeps are done);
  // nothing is held or pending.
  void expect_money_where_it_belongs(uint64_t deposited) {
    const auto payout_accounts = actors::payouts::desk_accounts_for(wire::currency("ETB"), 2);  // live_mesobd's shards
    for (int i = 0; i < 200; ++i) {
      bool swept = true;
      for (const auto& p : accounts(payout_accounts)) swept = swept && p.credits_posted == p.debits_posted;
      if (swept) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::vector<uint64_t> ids;
    for (uint64_t id = 1; id <= wallets; ++id) ids.push_back(id);
    uint64_t out = 0, in = 0;
    for (const auto& a : accounts(ids)) {
      out += a.debits_posted;
      in += a.credits_posted;
      EXPECT_EQ(a.debits_pending, 0u) << a.id;
    }
    EXPECT_EQ(in, deposited);
    const auto s = accounts({settle_a, settle_b});
    EXPECT_EQ(s[0].credits_posted + s[1].credits_posted, out);
    EXPECT_EQ(s[0].debits_posted + s[1].debits_posted, deposited);
    for (const auto& p : accounts(payout_accounts)) {
      EXPECT_EQ(p.credits_pending, 0u) << p.id;
      EXPECT_EQ(p.credits_posted, p.debits_posted) << p.id;
    }
    EXPECT_EQ(admin(*ops, "audit").code, admin_code::ok);
  }
};

void fund(gateway_world& w, uint64_t per_wallet) {
  auto o = w.sim("alpha", 7);
  o.deposits_per_s = 20'000;
  o.deposits_max = wallets * 4;
  o.deposit_amount = per_wallet / 4;
  tools::gateway_sim s(o);
  s.start();
  for (int i = 0; i < 200 && s.stats().deposits_ok + s.stats().deposits_refused < o.deposits_max; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  s.stop();
  EXPECT_EQ(s.stats().deposits_ok, o.deposits_max);
}

// Starts a gateway simulator and waits (up to 2 s) until its session is up.
void start_connected(tools::gateway_sim& g) {
  g.start();
  for (int i = 0; i < 100 && !g.connected(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

// A world with beta disabled and alpha up, taking payouts and never answering them, sent
// payouts 1 and 2 (500 each).
std::unique_ptr<tools::gateway_sim> two_payouts_to_a_silent_alpha(gateway_world& w, uint32_t timeout_ms,
                                                                  uint64_t seed) {
  w.start(timeout_ms);
  fund(w, 10'000);
  EXPECT_EQ(admin(*w.ops, "gateway disable", {"beta"}).code, admin_code::ok);
  auto oa = w.sim("alpha", seed);
  oa.timeout_rate = 1.0;  // takes the payouts and never answers
  auto alpha = std::make_unique<tools::gateway_sim>(oa);
  start_connected(*alpha);
  for (auto r : w.payouts(1, 2, 500)) EXPECT_EQ(r, wire::result::ok);
  return alpha;
}

// Payout 1 cancelled (its hold voided), payout 2 paid at beta, every unit where it belongs.
void expect_first_cancelled_second_paid_at_beta(gateway_world& w) {
  const auto a = w.accounts({1 + 1 % wallets, 1 + 2 % wallets, settle_b});
  EXPECT_EQ(a[0].debits_posted, 0u);  // cancelled: voided
  EXPECT_EQ(a[1].debits_posted, 500u);
  EXPECT_EQ(a[2].credits_posted, 500u);
  w.expect_money_where_it_belongs(wallets * 10'000);
}

}  // namespace

TEST(gateways, deposits_and_payouts_with_failures_duplicates_and_a_dropped_connection) {
  gateway_world w;
  w.start(300);
  fund(w, 100'000);
  auto oa = w.sim("alpha", 11), ob = w.sim("beta", 12);
  std::atomic<uint64_t> overpaid_answers{0};
  for (auto* o : {&oa, &ob}) {
    o->fail_rate = 0.1;
    o->duplicate_rate = 0.2;
    o->on_answered = [&](const wire::payout_answer&, wire::result r) {
      if (r == wire::result::payout_overpaid) overpaid_answers.fetch_add(1);
    };
  }
  tools::gateway_sim alpha(oa), beta(ob);
  alpha.start();
  beta.start();
  for (int i = 0; i < 100 && !(alpha.connected() && beta.connected()); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  uint64_t sent = 0;
  for (int round = 0; round < 6; ++round) {
    for (auto r : w.payouts(1000 + sent, 50, 100)) EXPECT_EQ(r, wire::result::ok);
    sent += 50;
    if (round == 2) alpha.disconnect(400);  // its payouts in flight go to beta
  }
  // A payout re-routed from alpha (dropped with it in flight) that then failed at beta is
  // a dead letter: alpha never answered, and may have paid. Operators cancel them here.
  // (alpha, back, answers the cancels it is sent: settled where it had paid, which
  // settles such a dead letter, or is an overpayment where beta paid too.)
  for (int i = 0; i < 100 && alpha.stats().connects < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const size_t dead = w.wait_only_dead_letters(30);
  for (const auto& id : w.dead_letters()) {
    const auto shown = admin(*w.ops, "payout show", {id});
    EXPECT_EQ(cell(shown, "payout", "state"), "dead (unanswered_attempt_elsewhere)") << id;
    EXPECT_EQ(admin(*w.ops, "payout cancel", {id}).code, admin_code::refused) << id << ": alpha may have paid";
    EXPECT_EQ(admin(*w.ops, "payout cancel", {id, "force"}).code, admin_code::ok) << id;
  }
  ASSERT_TRUE(w.wait_held(0, 30)) << w.held() << " payouts still held";
  for (int i = 0; i < 100 && alpha.stats().connects < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  alpha.stop();
  beta.stop();
  const auto sa = alpha.stats(), sb = beta.stats();
  EXPECT_GE(sa.connects, 2u);         // it came back after the drop
  EXPECT_GT(sb.instructions, 0u);     // beta (priority 2) only gets what alpha could not take
  EXPECT_GT(sa.answers_refused + sb.answers_refused, 0u);  // duplicates recognised
  w.expect_money_where_it_belongs(wallets * 100'000);
  // About 10% failed (voided): what was posted is a multiple of 100, most of it.
  const auto s = w.accounts({settle_a, settle_b});
  const uint64_t settled = (s[0].credits_posted + s[1].credits_posted) / 100;
  EXPECT_GE(settled, sent * 7 / 10);
  EXPECT_LT(settled, sent);
  // Reconciliation agrees with the ledger: per gateway, deposits and settled payouts are
  // what its settlement account moved; settled and failed add up to every payout.
  uint64_t recon_settled = 0, recon_failed = 0, recon_cancelled = 0, recon_overpaid = 0;
  for (const auto& [g, account] : {std::pair{"alpha", settle_a}, std::pair{"beta", settle_b}}) {
    auto m = admin(*w.ops, "gateway recon", {g});
    ASSERT_EQ(m.code, admin_code::ok) << m.message;
    ASSERT_EQ(m.sections.size(), 1u);
    uint64_t dep_amount = 0, settled_amount = 0;
    for (const auto& row : m.sections[0].rows) {
      EXPECT_EQ(row[1], "ETB");
      dep_amount += std::stoull(row[3]);
      recon_settled += std::stoull(row[4]);
      settled_amount += std::stoull(row[5]);
      recon_failed += std::stoull(row[6]);
      recon_cancelled += std::stoull(row[8]);
      recon_overpaid += std::stoull(row[10]);
      EXPECT_EQ(std::stoull(row[11]), std::stoull(row[10]) * 100);
      EXPECT_EQ(row[12], "0");  // nothing pending
    }
    const auto acc = w.accounts({account}).at(0);
    EXPECT_EQ(dep_amount, acc.debits_posted) << g;
    EXPECT_EQ(settled_amount, acc.credits_posted) << g;
  }
  EXPECT_EQ(recon_settled, settled);
  EXPECT_EQ(recon_cancelled, dead);
  EXPECT_EQ(recon_settled + recon_failed + recon_cancelled, sent);
  // Each overpayment was answered so, and came from a cancel alpha answered settled.
  EXPECT_EQ(recon_overpaid, overpaid_answers.load());
  EXPECT_LE(recon_overpaid, sa.cancels_paid);
  std::printf("cancels: alpha %llu (%llu answered paid), beta %llu; overpayments %llu\n",
              (unsigned long long)sa.cancels, (unsigned long long)sa.cancels_paid, (unsigned long long)sb.cancels,
              (unsigned long long)recon_overpaid);
  EXPECT_EQ(admin(*w.ops, "gateway recon", {"alpha", "2026-13-01"}).code, admin_code::arguments_invalid);
  // A day past its month's end is no day (timegm alone rolled it over to March 1st), and
  // a date is exactly YYYY-MM-DD.
  const auto feb30 = admin(*w.ops, "gateway recon", {"alpha", "2024-02-30"});
  EXPECT_EQ(feb30.code, admin_code::arguments_invalid);
  EXPECT_NE(feb30.message.find("is not a day of the calendar"), std::string::npos) << feb30.message;
  EXPECT_EQ(admin(*w.ops, "gateway recon", {"alpha", "2024-2-9"}).code, admin_code::arguments_invalid);
  // Ten characters, but spaces where digits go (strptime alone read them as 2024-01-01).
  for (const char* spaced : {" 2024-1-01", "2024- 1-01", "2024-01- 1"})
    EXPECT_EQ(admin(*w.ops, "gateway recon", {"alpha", spaced}).code, admin_code::arguments_invalid) << spaced;
  EXPECT_EQ(admin(*w.ops, "gateway recon", {"alpha", "2024-02-29"}).code, admin_code::ok);
  EXPECT_EQ(admin(*w.ops, "gateway recon", {"nobody"}).code, admin_code::not_found);
}

// `payouts all 4096` pages through every payout held, each once, in id order, although
// an answer holds fewer rows than that (its byte limit cuts the list): the next page
// starts at the first payout not shown. Before, the hint pointed past the rows the cut
// dropped, and they were never listed. Ids of 19 digits make the bytes, not the rows, cut
// a page: before, the answer was fitted again after its hint was added, which dropped
// one more row, the one before the next page's start.
TEST(gateways, the_payout_listing_pages_through_every_payout) {
  gateway_world w;
  w.start(60'000);
  fund(w, 13'000'000'000);
  // No gateway session is open: every payout waits for one, held.
  constexpr uint64_t n = 5'000, base = 1'000'000'000'000'000'000ull;
  for (uint64_t first = 1; first <= n; first += 1000)
    for (auto r : w.payouts(base + first, 1000, 100'000'000)) ASSERT_EQ(r, wire::result::ok);
  ASSERT_EQ(w.held(), n);
  std::vector<uint64_t> seen;
  std::string from;
  int pages = 0;
  for (; pages < 10; ++pages) {
    std::vector<std::string> args = {"all", "4096"};
    if (!from.empty()) args.push_back("from=" + from);
    const auto m = admin(*w.ops, "payouts", args);
    ASSERT_EQ(m.code, admin_code::ok) << m.message;
    // The desks, breakers and sweeps come on the first page only (before, on every page:
    // enough breakers would have left no room for the list, each page naming itself next).
    EXPECT_EQ(m.sections.size(), from.empty() ? 4u : 1u) << pages;
    for (const auto& s : m.sections)
      if (s.title == "payouts")
        for (const auto& row : s.rows) seen.push_back(std::stoull(row[0]));
    const auto at = m.message.find("more from id ");
    if (at == std::string::npos) break;
    from = m.message.substr(at + 13, m.message.find(' ', at + 13) - (at + 13));
  }
  EXPECT_GE(pages, 1) << "one answer cannot hold 5,000 rows";
  std::vector<uint64_t> want(n);
  for (uint64_t i = 0; i < n; ++i) want[i] = base + i + 1;
  EXPECT_EQ(seen, want) << "every payout once, in id order, over " << pages + 1 << " pages";
}

TEST(gateways, silent_gateway_dead_letters_then_cancel_and_retry) {
  gateway_world w;
  auto alpha = two_payouts_to_a_silent_alpha(w, 200, 21);
  // Three timeouts with backoff on alpha, then no gateway left: dead letters.
  bool dead = false;
  for (int i = 0; i < 200 && !dead; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    dead = w.held() == 2 && admin(*w.ops, "payouts").sections.back().rows.size() == 2;
  }
  ASSERT_TRUE(dead);
  EXPECT_EQ(alpha->stats().dropped, 6u);
  auto shown = admin(*w.ops, "payout show", {"1"});
  EXPECT_EQ(cell(shown, "payout", "state"), "dead (every_gateway_given_up)");
  EXPECT_EQ(admin(*w.ops, "payout retry", {"77"}).code, admin_code::not_found);
  // (alpha answered the cancels it was sent as it gave each up: it did not pay, no force.)
  EXPECT_EQ(admin(*w.ops, "payout cancel", {"1"}).code, admin_code::ok);
  alpha->stop();
  // beta comes back, answering; the other dead letter is retried and settles there
  // (alpha's session is gone, so routing passes it by).
  EXPECT_EQ(admin(*w.ops, "gateway enable", {"beta"}).code, admin_code::ok);
  tools::gateway_sim beta(w.sim("beta", 22));
  start_connected(beta);
  EXPECT_EQ(admin(*w.ops, "payout retry", {"2"}).code, admin_code::ok);
  ASSERT_TRUE(w.wait_held(0, 10));
  beta.stop();
  expect_first_cancelled_second_paid_at_beta(w);
}

// A dead letter a gateway was sent and never answered (here: disabled with payouts in
// flight, which leave it at their answer timeout, unanswered) may have been paid there.
// Routed again, or cancelled with its hold voided, it could be paid twice: the operator's
// retry and cancel are refused, naming the gateway, until the operator says it checked
// ('force'). Before, either went ahead at once (the automatic fallback waits for the
// cancel's answer; the operator's did not).
TEST(gateways, a_dead_letter_a_gateway_may_have_paid_takes_force) {
  gateway_world w;
  auto alpha = two_payouts_to_a_silent_alpha(w, 300, 31);
  for (int i = 0; i < 200 && alpha->stats().dropped < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(alpha->stats().dropped, 2u);
  EXPECT_EQ(admin(*w.ops, "gateway disable", {"alpha"}).code, admin_code::ok);
  ASSERT_EQ(w.wait_only_dead_letters(10), 2u);
  const auto shown = admin(*w.ops, "payout show", {"1"});
  EXPECT_EQ(cell(shown, "payout", "state"), "dead (gateway_withdrawn)");
  EXPECT_EQ(cell(shown, "attempts", "answer"), "") << "alpha's attempt, unanswered";
  const auto refused = admin(*w.ops, "payout cancel", {"1"});
  EXPECT_EQ(refused.code, admin_code::refused);
  EXPECT_NE(refused.message.find("payout 1: alpha (attempt "), std::string::npos) << refused.message;
  EXPECT_NE(refused.message.find(") never answered and may have paid it"), std::string::npos) << refused.message;
  EXPECT_NE(refused.message.find("payout cancel 1 force"), std::string::npos) << refused.message;
  const auto again = admin(*w.ops, "payout retry", {"2"});
  EXPECT_EQ(again.code, admin_code::refused);
  EXPECT_NE(again.message.find("payout retry 2 force"), std::string::npos) << again.message;
  EXPECT_EQ(admin(*w.ops, "payout cancel", {"1", "forse"}).code, admin_code::arguments_invalid);
  EXPECT_EQ(w.held(), 2u) << "the refusals changed nothing";
  EXPECT_EQ(w.dead_letters().size(), 2u);
  // Checked with alpha (it did not pay): cancelled, and the other sent to beta.
  EXPECT_EQ(admin(*w.ops, "payout cancel", {"1", "force"}).code, admin_code::ok);
  EXPECT_EQ(admin(*w.ops, "gateway enable", {"beta"}).code, admin_code::ok);
  tools::gateway_sim beta(w.sim("beta", 32));
  start_connected(beta);
  EXPECT_EQ(admin(*w.ops, "payout retry", {"2", "force"}).code, admin_code::ok);
  ASSERT_TRUE(w.wait_held(0, 10));
  alpha->stop();
  beta.stop();
  expect_first_cancelled_second_paid_at_beta(w);
}

// The breaker over TCP: a gateway failing everything trips open and payouts fall back to
// the next; after its cool-down one payout probes it, and its success closes it again.
// Breakers are per desk (a desk per shard, each seeing its wallets' payouts): every
// desk trips, and probes, on its own.
TEST(gateways, breaker_opens_falls_back_probes_and_closes) {
  gateway_world w;
  // Answer timeout 1.5 s: cool-down 6 s. The fallback payouts must go out before the
  // cool-down ends (or a probe takes one to the failing alpha); with a 2-s cool-down a
  // loaded machine (ctest -j2) let it end first now and then. The failures are answered
  // at once, so the longer timeout costs only the wait for the cool-down below.
  w.start(1500);
  fund(w, 10'000);
  auto fa = w.sim("alpha", 41);
  fa.fail_rate = 1.0;
  auto failing = std::make_unique<tools::gateway_sim>(fa);
  tools::gateway_sim beta(w.sim("beta", 42));
  failing->start();
  beta.start();
  for (int i = 0; i < 100 && !(failing->connected() && beta.connected()); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // The phases of g's breakers, one per desk (columns: currency, desk, gateway, phase).
  auto breaker = [&](const std::string& g) {
    std::string phases;
    for (const auto& s : admin(*w.ops, "payouts").sections)
      if (s.title == "breakers")
        for (const auto& row : s.rows)
          if (row[2] == g) phases += (phases.empty() ? "" : ",") + row[3];
    return phases;
  };
  // All to alpha, all fail: each of the two desks sees twenty or more (each wallet of
  // 1..40 pays twice).
  for (auto r : w.payouts(1, 80, 10)) EXPECT_EQ(r, wire::result::ok);
  ASSERT_TRUE(w.wait_held(0, 10));
  EXPECT_EQ(breaker("alpha"), "open,open");
  for (auto r : w.payouts(100, 5, 10)) EXPECT_EQ(r, wire::result::ok);  // fall back to beta
  ASSERT_TRUE(w.wait_held(0, 10));
  EXPECT_EQ(w.credited(settle_b, 50), 50u);
  // alpha comes back healthy; after the cool-down one payout probes it and closes it.
  failing->stop();
  failing.reset();
  tools::gateway_sim healthy(w.sim("alpha", 43));
  start_connected(healthy);
  // Until both desks' cool-downs are over (`payouts` says when: engine time, the wall
  // clock here).
  uint64_t open_until = 0;
  for (const auto& s : admin(*w.ops, "payouts").sections)
    if (s.title == "breakers") {
      ASSERT_EQ(s.columns.back().name, "open_until");
      for (const auto& row : s.rows)
        if (row[2] == "alpha") open_until = std::max<uint64_t>(open_until, std::stoull(row.back()));
    }
  ASSERT_GT(open_until, 0u) << "alpha's breakers are open";
  const uint64_t now_ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
  ASSERT_LT(open_until, now_ns + 7'000'000'000ull) << "a cool-down of 4 answer timeouts (6 s)";
  std::this_thread::sleep_for(std::chrono::nanoseconds(open_until > now_ns ? open_until - now_ns : 0) +
                              std::chrono::milliseconds(100));
  // One request over every wallet: each desk's first payout probes alpha, the rest go to
  // beta while the probe is out.
  for (auto r : w.payouts(200, 40, 10)) EXPECT_EQ(r, wire::result::ok);
  ASSERT_TRUE(w.wait_held(0, 10));
  EXPECT_EQ(breaker("alpha"), "closed,closed");
  EXPECT_EQ(w.credited(settle_a, 20), 20u);  // the two probes
  for (auto r : w.payouts(300, 3, 10)) EXPECT_EQ(r, wire::result::ok);
  ASSERT_TRUE(w.wait_held(0, 10));
  // Alpha takes payouts again (at least one: on a loaded machine an answer may take past
  // the 1.5-s timeout, and that payout go on to beta).
  EXPECT_GT(w.accounts({settle_a}).at(0).credits_posted, 20u);
  healthy.stop();
  beta.stop();
  w.expect_money_where_it_belongs(wallets * 10'000);
}

// A gateway declining every payout (the payments refused, the gateway well: answers
// marked declined) over TCP: each hold is voided and the money is back in its wallet, and
// its breakers stay closed where as many plain failures open them (above), so the
// payouts never go to beta.
TEST(gateways, a_gateway_declining_every_payout_keeps_its_breaker_closed) {
  gateway_world w;
  w.start(5000);  // (a loaded machine's late answer would be sent again, declined twice)
  fund(w, 10'000);
  auto da = w.sim("alpha", 44);
  da.decline_rate = 1.0;
  tools::gateway_sim declining(da);
  tools::gateway_sim beta(w.sim("beta", 45));
  start_connected(declining);
  start_connected(beta);
  for (auto r : w.payouts(1, 80, 10)) EXPECT_EQ(r, wire::result::ok);
  ASSERT_TRUE(w.wait_held(0, 10)) << w.held() << " still held";
  std::string phases;
  for (const auto& s : admin(*w.ops, "payouts").sections)
    if (s.title == "breakers")
      for (const auto& row : s.rows)
        if (row[2] == "alpha") phases += (phases.empty() ? "" : ",") + row[3];
  EXPECT_EQ(phases, "closed,closed");
  EXPECT_GE(declining.stats().answered_declined, 80u);
  EXPECT_EQ(declining.stats().answered_failed, declining.stats().answered_declined);
  declining.stop();
  beta.stop();
  w.expect_money_where_it_belongs(wallets * 10'000);
  std::vector<uint64_t> ids;
  for (uint64_t id = 1; id <= wallets; ++id) ids.push_back(id);
  for (const auto& a : w.accounts(ids)) EXPECT_EQ(a.debits_posted, 0u) << a.id << ": every payout voided";
}

// kill -9 with payouts in flight: after the restart every hold is still held (and its
// instruction sent again once a gateway connects), or posted, or voided; none is lost and
// none paid twice.
TEST(gateways, sigkill_with_payouts_in_flight_loses_and_repeats_nothing) {
  gateway_world w;
  w.start(1000);
  fund(w, 100'000);
  auto oa = w.sim("alpha", 31);
  oa.latency_ms = 30;
  oa.fail_rate = 0.1;
  auto alpha = std::make_unique<tools::gateway_sim>(oa);
  start_connected(*alpha);
  for (int round = 0; round < 4; ++round)
    for (auto r : w.payouts(1 + round * 100, 100, 10)) EXPECT_EQ(r, wire::result::ok);
  w.d->crash();
  alpha->stop();
  const uint64_t answered_before = alpha->stats().answers_ok;
  w.d = std::make_unique<live_mesobd>(w.dir.path(), two_gateways());
  ASSERT_TRUE(w.d->up()) << w.d->output();
  w.connect();
  const uint64_t held = w.held();
  EXPECT_LE(held, 400u);
  EXPECT_GT(held, 0u);  // the crash caught payouts in flight
  std::printf("held at restart: %llu of 400\n", static_cast<unsigned long long>(held));
  oa.port = w.d->port();
  oa.latency_ms = 1;
  alpha = std::make_unique<tools::gateway_sim>(oa);
  alpha->start();
  ASSERT_TRUE(w.wait_held(0, 30)) << w.held() << " still held";
  alpha->stop();
  // Every payout's hold is recorded (none lost), and each was posted or voided once.
  std::vector<wire::id128> holds;
  for (uint64_t id = 1; id <= 400; ++id) holds.push_back(actors::payouts::hold_id(id));
  auto r = w.pay->call(wire::lookup_transfers_body(holds));
  ASSERT_TRUE(r.ok);
  for (size_t i = 0; i < holds.size(); ++i) EXPECT_EQ(r.reply.results[i], wire::result::ok) << i + 1;
  w.expect_money_where_it_belongs(wallets * 100'000);
  EXPECT_GT(answered_before + alpha->stats().answers_ok, 0u);
}

TEST(gateways, the_simulator_program_deposits_and_reports) {
  gateway_world w;
  w.start(1000);
  const std::string depositing = bin("tools/mesob-gatewaysim") + " --port " + std::to_string(w.d->port()) +
                                 " --gateway alpha:" + w.alpha_hex + " --deposits-per-s 500 --deposits-max 100 --wallets 1-" +
                                 std::to_string(wallets) + " --amount 7 --seconds 2 --seed 5";
  const auto r = run(depositing);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("gatewaysim: ready"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"deposits_ok\":100"), std::string::npos) << r.out;
  w.expect_money_where_it_belongs(700);
  // A second run's deposits are new ones (references from the clock): before, every run
  // counted from 1, its deposits were repeats the engine answered ok, and no money moved.
  const auto again = run(depositing);
  EXPECT_EQ(again.status, 0) << again.out;
  EXPECT_NE(again.out.find("\"deposits_ok\":100"), std::string::npos) << again.out;
  w.expect_money_where_it_belongs(1400);
  // One gateway named twice would report each reference twice.
  const auto twice = run(bin("tools/mesob-gatewaysim") + " --port 1 --gateway alpha:" + w.alpha_hex + " --gateway alpha:" +
                         w.alpha_hex);
  EXPECT_EQ(WEXITSTATUS(twice.status), 2) << twice.out;
  EXPECT_NE(twice.out.find("--gateway alpha is given twice"), std::string::npos) << twice.out;
  const auto bad = run(bin("tools/mesob-gatewaysim") + " --port 1 --gateway alpha:zz");
  EXPECT_EQ(WEXITSTATUS(bad.status), 2) << bad.out;
  // Its commands: a pause is decimal milliseconds up to a day (before, -1 was read as
  // 2^64 - 1 and became a reconnection at once).
  const auto commands = run("printf 'disconnect alpha -1\\ndisconnect alpha 0x10\\ndisconnect alpha 50\\nquit\\n' | " +
                            bin("tools/mesob-gatewaysim") + " --port " + std::to_string(w.d->port()) + " --gateway alpha:" +
                            w.alpha_hex + " --wallets 1-" + std::to_string(wallets));
  EXPECT_EQ(commands.status, 0) << commands.out;
  EXPECT_NE(commands.out.find("disconnect: '-1' is not a pause"), std::string::npos) << commands.out;
  EXPECT_NE(commands.out.find("disconnect: '0x10' is not a pause"), std::string::npos) << commands.out;
  EXPECT_NE(commands.out.find("alpha disconnected for 50 ms"), std::string::npos) << commands.out;
  // Standard input read as it comes: two commands in one write while the pipe stays open
  // both run (before, the second waited in stdin's buffer for the next write or the end),
  // a word past a command's is refused with nothing done, and a line without its end
  // does not hold the run past --seconds (before, it blocked until the input ended).
  const std::string sim = bin("tools/mesob-gatewaysim") + " --port " + std::to_string(w.d->port()) +
                          " --gateway alpha:" + w.alpha_hex + " --wallets 1-" + std::to_string(wallets) + " --seconds 2";
  const auto held_open = run("(printf 'disconnect alpha 50 junk\\nstats\\n'; sleep 3) | " + sim);
  EXPECT_EQ(held_open.status, 0) << held_open.out;
  EXPECT_NE(held_open.out.find("'junk' after the command"), std::string::npos) << held_open.out;
  EXPECT_EQ(held_open.out.find("alpha disconnected"), std::string::npos) << held_open.out;
  size_t stats_lines = 0;
  for (size_t at = held_open.out.find("gatewaysim: stats"); at != std::string::npos;
       at = held_open.out.find("gatewaysim: stats", at + 1))
    ++stats_lines;
  EXPECT_EQ(stats_lines, 2u) << "the command's and the end's: " << held_open.out;
  const auto unended = run("(printf 'stats'; sleep 4) | timeout 3 " + sim);
  EXPECT_EQ(unended.status, 0) << "it stopped at --seconds: " << unended.out;
  // Ranges are digits only, from 1, first <= last: before, "1-100O" was 1-100, "5--3"
  // a range to the top of the ids, "0-9" took wallet 0.
  for (const char* range : {"1-100O", "5--3", "0-9", "9-1", "-", "1-", "x"}) {
    const auto loose = run(bin("tools/mesob-gatewaysim") + " --port 1 --gateway alpha:" + w.alpha_hex +
                           " --wallets '" + range + "'");
    EXPECT_EQ(WEXITSTATUS(loose.status), 2) << range << ": " << loose.out;
    EXPECT_NE(loose.out.find("--wallets must be first-last"), std::string::npos) << loose.out;
  }
}
