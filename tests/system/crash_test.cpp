// Crash test: the engine runs in a child process (crash_driver) under a concurrent
// transfer load and is killed with SIGKILL at random moments, 24 times. After each kill
// the engine is recovered here and checked: every acknowledged transfer is present
// exactly once with the acknowledged outcome, every account's balance equals the sum of
// the transfers recorded for it (so no transfer is half-applied, across shards too), and
// debits equal credits.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "actors/customers.hpp"
#include "actors/payout_desk.hpp"
#include "actors/trading.hpp"
#include "engine/engine.hpp"
#include "support/engine_fixture.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"
#include "system/crash_workload.hpp"

using namespace mesob;
using namespace mesob::test;
using namespace mesob::test::crash;

namespace {

struct ack {
  uint64_t id_lo;
  uint32_t result;
  uint32_t pad;
};

std::string driver_path() {
  const char* dir = std::getenv("MESOB_TEST_BIN_DIR");
  return std::string(dir ? dir : ".") + "/tests/crash_driver";
}

// Runs the driver for `ms` milliseconds, then SIGKILLs it. Returns its acks.
std::vector<ack> run_and_kill(const std::string& data, uint64_t run, int ms, const char* mode = nullptr) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  // Everything the child needs is made before fork: the parent may have threads, so
  // the child must not allocate.
  const auto path = driver_path();
  const auto run_s = std::to_string(run);
  const std::string cannot = "crash_test: cannot run " + path + " (errno below)\n";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execl(path.c_str(), path.c_str(), data.c_str(), run_s.c_str(), mode, nullptr);
    // A binary just linked can still be busy for a moment (ETXTBSY): try again.
    for (int i = 0; i < 100 && errno == ETXTBSY; ++i) {
      const timespec pause{0, 10'000'000};
      ::nanosleep(&pause, nullptr);
      ::execl(path.c_str(), path.c_str(), data.c_str(), run_s.c_str(), mode, nullptr);
    }
    const int err = errno;
    [[maybe_unused]] auto n = ::write(2, cannot.data(), cannot.size());
    char digits[16];
    int len = 0;
    for (int v = err; len == 0 || v > 0; v /= 10) digits[len++] = char('0' + v % 10);
    for (int i = len - 1; i >= 0; --i) n = ::write(2, &digits[i], 1);
    n = ::write(2, "\n", 1);
    std::_Exit(127);
  }
  ::close(fds[1]);
  std::vector<ack> acks;
  std::thread reader([&] {
    std::vector<char> buf;
    char chunk[65536];
    for (;;) {
      const auto n = ::read(fds[0], chunk, sizeof chunk);
      if (n <= 0) break;
      buf.insert(buf.end(), chunk, chunk + n);
    }
    const size_t whole = buf.size() / sizeof(ack);
    acks.resize(whole);
    std::memcpy(acks.data(), buf.data(), whole * sizeof(ack));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  reader.join();
  ::close(fds[0]);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "driver exited on its own, status " << status;
  return acks;
}

}  // namespace

// The transfer load killed `kills` times. With `kyc`, the even accounts are customers of
// a tier whose limits the load runs into: after every kill, also, each one's outflow
// today is what its recorded transfers took out, and nothing recorded broke a limit.
void kill_transfer_runs(const char* mode, int kills) {
  const bool kyc = mode != nullptr;
  const uint64_t seed = test_seed(kyc ? "crash test with KYC limits (kill timings)" : "crash test (kill timings)");
  std::mt19937_64 rng(seed);
  temp_dir dir;
  const uint64_t day_first = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count()) /
                             actors::customers::ns_per_day;
  std::unordered_map<uint64_t, uint32_t> acked;                  // id.lo -> result
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> max_seq;  // (run, worker) -> seq
  uint64_t torn = 0, total_acked = 0;
  for (int k = 1; k <= kills; ++k) {
    const int ms = 150 + int(rng() % 700);
    const auto acks = run_and_kill(dir.path(), uint64_t(k), ms, mode);
    for (const auto& a : acks) {
      acked[a.id_lo] = a.result;
      auto& m = max_seq[{a.id_lo >> 40, (a.id_lo >> 32) & 0xff}];
      m = std::max(m, a.id_lo & 0xffffffff);
    }
    total_acked += acks.size();

    auto cfg = test_config(dir.path(), 2);
    cfg.wal_segment_mib = 4;
    cfg.wal_group_mib = 1;
    std::string err;
    auto e = engine::engine::open(cfg, &err);
    ASSERT_TRUE(e) << "kill " << k << ": recovery failed: " << err;
    if (!e->recovery().torn_tail.empty()) ++torn;

    // Every transfer that may have been submitted: up to one unacknowledged batch
    // (64) past the last acknowledged one, per worker and run.
    std::vector<wire::id128> candidates;
    for (uint64_t run = 1; run <= uint64_t(k); ++run)
      for (uint64_t w = 0; w < workers; ++w) {
        auto it = max_seq.find({run, w});
        const uint64_t top = (it == max_seq.end() ? 0 : it->second + 1) + 64;
        for (uint64_t s = 0; s < top; ++s) candidates.push_back(transfer_id(run, w, s));
      }
    std::vector<uint64_t> debits(accounts + 1, 0), credits(accounts + 1, 0);
    uint64_t found = 0, acked_found = 0;
    for (size_t i = 0; i < candidates.size(); i += 8192) {
      std::vector<wire::id128> ids(candidates.begin() + long(i),
                                   candidates.begin() + long(std::min(candidates.size(), i + 8192)));
      auto r = e->lookup_transfers(ids);
      ASSERT_EQ(r.st, engine::status::ok);
      for (size_t j = 0; j < ids.size(); ++j) {
        auto a = acked.find(ids[j].lo);
        if (r.results[j] != wire::result::ok) {
          ASSERT_TRUE(a == acked.end()) << "kill " << k << ": acknowledged transfer " << ids[j].lo
                                        << " is missing after recovery";
          continue;
        }
        const auto& rec = r.transfers[j];
        ++found;
        auto expect = transfer_for(ids[j]);
        ASSERT_EQ(rec.t.debit_account_id, expect.debit_account_id);
        ASSERT_EQ(rec.t.credit_account_id, expect.credit_account_id);
        ASSERT_EQ(rec.t.amount, expect.amount);
        if (a != acked.end()) {
          ++acked_found;
          ASSERT_EQ(rec.result, a->second) << "kill " << k << ": outcome changed for " << ids[j].lo;
        }
        if (rec.result == uint32_t(wire::result::ok)) {
          if (kyc && crash::kyc::tiered(rec.t.debit_account_id)) {  // every transfer ran after the KYC records
            ASSERT_LE(rec.t.amount, crash::kyc::single_max) << "kill " << k << ": " << ids[j].lo << " broke the single limit";
          }
          debits[rec.t.debit_account_id] += rec.t.amount;
          credits[rec.t.credit_account_id] += rec.t.amount;
        }
      }
    }
    ASSERT_EQ(acked_found, acked.size()) << "kill " << k;
    std::vector<uint64_t> ids;
    for (uint64_t id = 1; id <= accounts; ++id) ids.push_back(id);
    auto accts = e->lookup_accounts(ids);
    // A kill before the driver's first run created its accounts (one batch: all or none)
    // leaves none, and then no transfer either.
    if (accts.results[0] == wire::result::account_not_found) {
      ASSERT_EQ(found, 0u) << "kill " << k << ": transfers recorded but their accounts are missing";
      for (uint64_t id = 1; id <= accounts; ++id)
        ASSERT_EQ(accts.results[id - 1], wire::result::account_not_found) << "kill " << k << ": account " << id;
      std::printf("kill %2d after %3d ms: before the accounts were made (nothing recorded)\n", k, ms);
      continue;
    }
    for (uint64_t id = 1; id <= accounts; ++id) {
      ASSERT_EQ(accts.results[id - 1], wire::result::ok) << "account " << id;
      const auto& a = accts.accounts[id - 1];
      ASSERT_EQ(a.debits_posted, debits[id]) << "kill " << k << ": account " << id
                                             << " debits differ from its recorded transfers";
      ASSERT_EQ(a.credits_posted, credits[id]) << "kill " << k << ": account " << id;
      ASSERT_EQ(a.debits_pending + a.credits_pending, 0u);
    }
    const auto bal = e->check_balances();
    ASSERT_TRUE(bal.balanced) << bal.detail;
    uint64_t limited = 0;
    if (kyc) {
      std::vector<uint64_t> tiered;
      for (uint64_t id = 2; id <= accounts; id += 2) tiered.push_back(id);
      auto cs = e->lookup_customers(tiered);
      const uint64_t day_now = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count()) /
                               actors::customers::ns_per_day;
      for (size_t i = 0; i < tiered.size(); ++i) {
        const uint64_t id = tiered[i];
        const auto& a = accts.accounts[id - 1];
        if (cs.results[i] != wire::result::ok) {  // killed before the records were made
          ASSERT_EQ(a.tier, 0u) << "kill " << k << ": account " << id << " has a tier but no KYC record";
          ASSERT_EQ(debits[id], 0u) << "kill " << k << ": transfers ran before the KYC records";
          continue;
        }
        ASSERT_EQ(a.tier, crash::kyc::tier);
        ASSERT_LE(a.credits_posted - std::min(a.credits_posted, a.debits_posted), crash::kyc::balance_max)
            << "kill " << k << ": account " << id << " holds past its balance limit";
        if (day_now == day_first) {  // all of it on one UTC day
          ASSERT_EQ(cs.customers[i].outflow_today, debits[id])
              << "kill " << k << ": account " << id << ": the day's outflow is not what its transfers took out";
        }
        ASSERT_LE(cs.customers[i].outflow_today, crash::kyc::daily_outflow_max);
      }
      for (const auto& [id, res] : acked)
        limited += res == uint32_t(wire::result::exceeds_daily_outflow) ||
                   res == uint32_t(wire::result::exceeds_transfer_limit) ||
                   res == uint32_t(wire::result::exceeds_balance_limit);
    }
    std::printf("kill %2d after %3d ms: %6zu acked (%llu recorded in all, %llu refused by limits), %llu log records "
                "replayed%s\n", k, ms, acks.size(), static_cast<unsigned long long>(found),
                static_cast<unsigned long long>(limited),
                static_cast<unsigned long long>(e->recovery().records_replayed),
                e->recovery().torn_tail.empty() ? "" : ", torn tail cut");
    e->close();
  }
  EXPECT_GT(total_acked, 1000u) << "the load never got going";
  if (kyc) {  // the limits were reached, or the checks above tested nothing
    std::set<uint32_t> seen;
    for (const auto& [id, res] : acked) seen.insert(res);
    EXPECT_TRUE(seen.count(uint32_t(wire::result::exceeds_transfer_limit))) << "no single-limit refusal";
    EXPECT_TRUE(seen.count(uint32_t(wire::result::exceeds_daily_outflow))) << "no daily-outflow refusal";
  }
  std::printf("%d kills, %llu acknowledged transfers, %llu torn tails cut\n", kills,
              static_cast<unsigned long long>(total_acked), static_cast<unsigned long long>(torn));
}

TEST(crash, sigkill_under_load_loses_and_duplicates_nothing) { kill_transfer_runs(nullptr, 16); }

// Customers' limits under SIGKILL: the day's outflow the ledger checks against is rebuilt
// from the snapshot and the log exactly as the transfers left it.
TEST(crash, sigkill_with_kyc_limits_keeps_each_days_outflow) { kill_transfer_runs("kyc", 10); }

// The same with equb groups paying round after round: after every kill, every
// acknowledged payment is there with its outcome, every group's escrow account holds
// what the group says, each wallet's balance is its starting money less what it paid in
// plus the one payout it received (never two), and the payouts the crash interrupted
// are carried after recovery.
TEST(crash, sigkill_mid_equb_rounds_loses_nothing_and_pays_nothing_twice) {
  namespace q = mesob::test::crash::equb;
  const uint64_t seed = test_seed("crash test with equb rounds (kill timings)");
  std::mt19937_64 rng(seed);
  temp_dir dir;
  // On a host slowed by other work the early kills can all land before the first
  // payment is acknowledged: more runs (up to kills_max) until the load has got going.
  constexpr int kills = 10, kills_max = 14;  // (past 14 runs wallet ids would reach group ids)
  constexpr uint64_t acked_min = 500;
  std::unordered_map<uint64_t, uint32_t> acked;  // id.lo -> result
  uint64_t total_acked = 0, completed = 0;
  for (int k = 1; k <= kills || (total_acked <= acked_min && k <= kills_max); ++k) {
    const int ms = 100 + int(rng() % 500);
    const auto acks = run_and_kill(dir.path(), uint64_t(k), ms, "equb");
    for (const auto& a : acks) {
      ASSERT_EQ(a.result, uint32_t(wire::result::ok)) << "kill " << k << ": payment " << a.id_lo << " refused";
      acked[a.id_lo] = a.result;
    }
    total_acked += acks.size();

    auto cfg = test_config(dir.path(), 2);
    std::string err;
    auto e = engine::engine::open(cfg, &err);
    ASSERT_TRUE(e) << "kill " << k << ": recovery failed: " << err;

    // Payouts re-emitted at start are carried before anything is checked.
    const uint64_t all = uint64_t(k) * q::groups;  // every run's groups
    std::vector<uint64_t> gids;
    for (uint64_t g = 0; g < all; ++g) gids.push_back(q::group_id(g));
    std::vector<actors::equb::group_entry> groups(all);
    std::vector<bool> exists(all);
    for (int tries = 0;; ++tries) {
      bool waiting = false;
      for (size_t i = 0; i < gids.size(); i += 64) {
        std::vector<uint64_t> part(gids.begin() + long(i), gids.begin() + long(std::min(gids.size(), i + 64)));
        auto r = e->lookup_groups(part);
        ASSERT_EQ(r.st, engine::status::ok);
        for (size_t j = 0; j < part.size(); ++j) {
          exists[i + j] = r.results[j] == wire::result::ok;
          groups[i + j] = r.groups[j];
          for (const auto& o : r.groups[j].owed) {
            ASSERT_FALSE(o.refused) << "kill " << k << ": a payout was refused: " << wire::result_name(o.refusal);
            waiting = true;
          }
        }
      }
      if (!waiting) break;
      ASSERT_LT(tries, 2000) << "kill " << k << ": payouts never carried";
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }

    // Every acknowledged payment is recorded with its outcome.
    std::vector<wire::id128> ids;
    for (const auto& [lo, res] : acked) ids.push_back({lo, 0xE0B0});
    for (size_t i = 0; i < ids.size(); i += 8192) {
      std::vector<wire::id128> part(ids.begin() + long(i), ids.begin() + long(std::min(ids.size(), i + 8192)));
      auto r = e->lookup_transfers(part);
      for (size_t j = 0; j < part.size(); ++j) {
        ASSERT_EQ(r.results[j], wire::result::ok) << "kill " << k << ": acknowledged payment " << part[j].lo << " is missing";
        ASSERT_EQ(r.transfers[j].result, acked[part[j].lo]);
      }
    }

    // Balances: wallets, escrows, the fee account.
    std::vector<uint64_t> accts;
    for (uint64_t g = 0; g < all; ++g) {
      accts.push_back(q::group_id(g));
      for (uint32_t s = 0; s < q::seats; ++s) accts.push_back(q::wallet(g, s));
    }
    std::vector<wire::id128> fundings;
    for (uint64_t g = 0; g < all; ++g)
      for (uint32_t s = 0; s < q::seats; ++s) fundings.push_back({q::wallet(g, s), 0xF00D});
    std::vector<wire::result> funded;
    for (size_t i = 0; i < fundings.size(); i += 8192) {
      std::vector<wire::id128> part(fundings.begin() + long(i), fundings.begin() + long(std::min(fundings.size(), i + 8192)));
      const auto r = e->lookup_transfers(part);
      funded.insert(funded.end(), r.results.begin(), r.results.end());
    }
    std::unordered_map<uint64_t, wire::account> acct;
    for (size_t i = 0; i < accts.size(); i += 8192) {
      std::vector<uint64_t> part(accts.begin() + long(i), accts.begin() + long(std::min(accts.size(), i + 8192)));
      auto r = e->lookup_accounts(part);
      for (size_t j = 0; j < part.size(); ++j) acct[part[j]] = r.accounts[j];
    }
    const uint64_t pot = q::seats * q::contribution, fee = pot * q::fee_bp / 10'000;
    uint64_t rounds_paid = 0, routed_received = 0;
    std::unordered_map<uint64_t, uint32_t> held_for;  // wallet -> payouts the desks hold for it
    auto acct_debits_pending = [&](uint64_t w) { return acct[w].debits_pending; };
    completed = 0;
    for (uint64_t g = 0; g < all; ++g) {
      const auto& esc = acct[q::group_id(g)];
      if (!exists[g]) {
        EXPECT_EQ(esc.id, 0u) << "group " << g;
        continue;
      }
      const auto& st = groups[g].g;
      ASSERT_EQ(esc.credits_posted - esc.debits_posted, actors::equb::escrow_expected(groups[g])) << "group " << g;
      ASSERT_EQ(actors::equb::escrow_expected(groups[g]), st.escrow) << "settled: nothing owed";
      std::set<uint32_t> receivers;
      for (const auto& h : groups[g].history) ASSERT_TRUE(receivers.insert(h.seat).second) << "group " << g << " paid a seat twice";
      rounds_paid += groups[g].history.size();
      if (st.ph == actors::equb::phase::completed) {
        ++completed;
        ASSERT_EQ(esc.credits_posted, esc.debits_posted) << "a completed group's escrow is empty";
        ASSERT_EQ(receivers.size(), q::seats);
      }
      for (uint32_t s = 0; s < q::seats; ++s) {
        const uint64_t w = q::wallet(g, s);
        uint64_t paid = 0, got = 0;
        if (s < st.seats.size()) {
          const auto& seat = st.seats[s];
          ASSERT_EQ(seat.wallet, w) << "group " << g << " seat " << s;
          if (st.ph == actors::equb::phase::forming) paid = 1;
          else if (st.ph == actors::equb::phase::completed) paid = q::seats;
          else paid = 1 + (st.round - 2) + (seat.paid ? 1 : 0);
          if (seat.received_round != 0) got = pot - fee;
          // A routed seat's payout went on: held (no gateway answers) once, never twice.
          const bool routed = q::routed(g) && s == q::routed_seat && seat.payout_rail == 1;
          if (st.ph != actors::equb::phase::forming) {  // routes were set before the starts
            ASSERT_EQ(routed, q::routed(g) && s == q::routed_seat) << "group " << g << " seat " << s;
          }
          if (routed && seat.received_round != 0) {
            ++routed_received;
            held_for[w] = 0;
          }
          ASSERT_EQ(acct_debits_pending(w), routed && seat.received_round != 0 ? pot - fee : 0)
              << "kill " << k << ": group " << g << " seat " << s;
        }
        const uint64_t start = funded[g * q::seats + s] == wire::result::ok ? q::starting : 0;
        const auto& a = acct[w];
        ASSERT_EQ(int64_t(a.credits_posted) - int64_t(a.debits_posted),
                  int64_t(start) - int64_t(paid * q::contribution) + int64_t(got))
            << "kill " << k << ": group " << g << " seat " << s;
      }
    }
    // The desks hold one payout per routed seat that received, each under an id of the
    // engine's own, for that seat's wallet and amount.
    const auto held = e->lookup_payouts(0, 1u << 20).payouts;
    ASSERT_EQ(held.size(), routed_received) << "kill " << k;
    std::set<uint64_t> held_ids;
    for (const auto& p : held) {
      ASSERT_TRUE(actors::payouts::engine_payout(p.id)) << p.id;
      ASSERT_TRUE(held_ids.insert(p.id).second);
      ASSERT_EQ(p.amount, pot - fee);
      ASSERT_EQ(held_for.count(p.wallet), 1u) << "kill " << k << ": a payout for wallet " << p.wallet;
      ASSERT_EQ(++held_for[p.wallet], 1u) << "kill " << k << ": wallet " << p.wallet << " has two payouts held";
    }
    const auto fee_acct = e->lookup_accounts({q::fee_account}).accounts.at(0);
    ASSERT_EQ(fee_acct.credits_posted, rounds_paid * fee) << "kill " << k << ": one fee per payout";
    const auto bal = e->check_balances();
    ASSERT_TRUE(bal.balanced) << bal.detail;
    std::printf("kill %2d after %3d ms: %5zu payments acked, %llu rounds paid out (%llu through the gateway), "
                "%llu groups completed, %llu payouts re-sent\n", k, ms, acks.size(),
                static_cast<unsigned long long>(rounds_paid), static_cast<unsigned long long>(routed_received),
                static_cast<unsigned long long>(completed),
                static_cast<unsigned long long>(e->recovery().groups_reemitted));
    e->close();
  }
  EXPECT_GT(total_acked, acked_min) << "the load never got going";
}

// Orders under SIGKILL: customers place buys while a broker fills them in two parts (or
// rejects them) and the settlements are in flight; in odd runs a hung broker, first by
// priority, takes orders first (answer timeouts, retries, its breaker, the fallback to
// the broker that fills). After every kill: every acknowledged
// order's hold is recorded once with the acknowledged outcome; no order took a fill
// twice or its second before its first; each wallet paid exactly what its recorded fills
// cost and holds exactly what its open orders hold; the trading accounts hold the other
// side of both; the books balance.
TEST(crash, sigkill_with_orders_in_flight_settles_each_fill_once) {
  namespace q = mesob::test::crash::orders;
  const uint64_t seed = test_seed("crash test with orders (kill timings)");
  std::mt19937_64 rng(seed);
  temp_dir dir;
  constexpr int kills = 8;
  std::unordered_map<uint64_t, uint32_t> acked;  // order id -> result
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> last_seq;  // (run, worker) -> highest seq acked
  uint64_t total_filled = 0;
  for (int k = 1; k <= kills; ++k) {
    const int ms = 300 + int(rng() % 600);
    const auto acks = run_and_kill(dir.path(), uint64_t(k), ms, "orders");
    for (const auto& a : acks) {
      acked[a.id_lo] = a.result;
      auto& s = last_seq[{a.id_lo >> 40, (a.id_lo >> 32) & 0xff}];
      s = std::max(s, a.id_lo & 0xffffffff);
    }
    auto cfg = test_config(dir.path(), 2);
    std::string err;
    auto e = engine::engine::open(cfg, &err);
    ASSERT_TRUE(e) << "kill " << k << ": recovery failed: " << err;
    (void)e->lookup_accounts({q::bank});  // behind the settlements sent again at start

    // Every order any run may have placed: those acknowledged, and per worker the one
    // request in flight after its last acknowledged one.
    std::vector<uint64_t> candidates;
    for (uint64_t run = 1; run <= uint64_t(k); ++run)
      for (uint64_t w = 0; w < workers; ++w) {
        const auto it = last_seq.find({run, w});
        const uint64_t last = it == last_seq.end() ? 0 : it->second;
        for (uint64_t s = 1; s <= last + q::batch_max; ++s) candidates.push_back(q::order_id(run, w, s));
      }
    std::vector<wire::id128> ids;
    for (const uint64_t o : candidates) {
      ids.push_back(actors::trading::hold_id(o, 0));
      ids.push_back(actors::trading::chain_id(o, 1, 0));
      ids.push_back(actors::trading::chain_id(o, 2, 0));
    }
    std::vector<wire::result> found;
    std::vector<engine::transfer_record> recs;
    for (size_t i = 0; i < ids.size(); i += 8190) {
      std::vector<wire::id128> part(ids.begin() + long(i), ids.begin() + long(std::min(ids.size(), i + 8190)));
      auto r = e->lookup_transfers(part);
      ASSERT_EQ(r.st, engine::status::ok);
      found.insert(found.end(), r.results.begin(), r.results.end());
      recs.insert(recs.end(), r.transfers.begin(), r.transfers.end());
    }
    std::unordered_map<uint64_t, uint64_t> paid;  // wallet -> fills' cost
    std::vector<uint64_t> placed;
    uint64_t fills = 0;
    for (size_t c = 0; c < candidates.size(); ++c) {
      const uint64_t o = candidates[c];
      const auto want = q::order_for(o);
      const bool hold = found[3 * c] == wire::result::ok;
      if (const auto a = acked.find(o); a != acked.end()) {
        ASSERT_TRUE(hold) << "kill " << k << ": acknowledged order " << o << " is missing";
        ASSERT_EQ(recs[3 * c].result, a->second) << "kill " << k << ": order " << o;
      }
      if (!hold) {
        ASSERT_NE(found[3 * c + 1], wire::result::ok) << "a fill of an order never placed";
        continue;
      }
      const auto& h = recs[3 * c];
      if (h.result != uint32_t(wire::result::ok)) continue;
      placed.push_back(o);
      ASSERT_EQ(h.t.debit_account_id, want.wallet);
      ASSERT_EQ(h.t.amount, want.quantity * q::limit);
      bool first = false;
      for (uint64_t f = 1; f <= 2; ++f) {
        const size_t at = 3 * c + f;
        if (found[at] != wire::result::ok || recs[at].result != uint32_t(wire::result::ok)) continue;
        ASSERT_TRUE(f == 1 || first) << "kill " << k << ": order " << o << " settled its second fill before its first";
        ASSERT_FALSE(q::rejected(o)) << "order " << o << " was rejected, yet filled";
        ASSERT_EQ(recs[at].t.amount, q::fill_quantity(o, f) * q::price);
        first = true;
        paid[want.wallet] += recs[at].t.amount;
        ++fills;
      }
    }
    // What open orders hold, by wallet (closed ones hold nothing, found or forgotten).
    // Orders sent more than once (the hung broker's timeouts, restarts) are counted.
    std::unordered_map<uint64_t, uint64_t> held;
    uint64_t resent = 0;
    for (size_t i = 0; i < placed.size(); i += 8192) {
      std::vector<uint64_t> part(placed.begin() + long(i), placed.begin() + long(std::min(placed.size(), i + 8192)));
      auto r = e->lookup_orders(part);
      for (size_t j = 0; j < part.size(); ++j) {
        if (r.results[j] != wire::result::ok) continue;
        resent += r.orders[j].attempts > 1;
        if (r.orders[j].state == uint8_t(actors::portfolio::order_state::open)) held[r.orders[j].o.wallet] += r.orders[j].held;
      }
    }
    std::vector<uint64_t> wallets;
    for (uint64_t w = q::first_wallet; w < q::first_wallet + q::wallets; ++w) wallets.push_back(w);
    const auto wa = e->lookup_accounts(wallets);
    uint64_t all_paid = 0, all_held = 0;
    for (size_t i = 0; i < wallets.size(); ++i) {
      const auto& a = wa.accounts[i];
      ASSERT_EQ(a.debits_posted, paid[wallets[i]]) << "kill " << k << ": wallet " << wallets[i];
      ASSERT_EQ(a.debits_pending, held[wallets[i]]) << "kill " << k << ": wallet " << wallets[i];
      all_paid += a.debits_posted;
      all_held += a.debits_pending;
    }
    const auto ta = e->lookup_accounts({actors::trading::account_for(wire::currency("ETB"), 0, 2),
                                        actors::trading::account_for(wire::currency("ETB"), 1, 2)});
    ASSERT_EQ(ta.accounts[0].credits_posted + ta.accounts[1].credits_posted, all_paid);
    ASSERT_EQ(ta.accounts[0].credits_pending + ta.accounts[1].credits_pending, all_held);
    const auto bal = e->check_balances();
    ASSERT_TRUE(bal.balanced) << bal.detail;
    total_filled = fills;
    std::printf("kill %d after %3d ms: %5zu orders acked, %6zu placed in all, %6llu fills settled, %llu settlements "
                "re-sent, %llu portfolios loaded, %llu orders kept that were sent more than once\n", k, ms, acks.size(),
                placed.size(), static_cast<unsigned long long>(fills),
                static_cast<unsigned long long>(e->recovery().order_chains_reemitted),
                static_cast<unsigned long long>(e->recovery().portfolios_loaded), static_cast<unsigned long long>(resent));
    e->close();
  }
  EXPECT_GT(total_filled, 1000u) << "the load never got going";
}
