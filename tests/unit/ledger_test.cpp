// The ledger's rules through the embedded engine, on 1 and 2 shards: every rejection
// code, chains, two-phase transfers, expiry, idempotency, look-ups and restarts.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "actors/flat_map.hpp"
#include "actors/shard.hpp"
#include "actors/trading.hpp"
#include "engine/engine_clock.hpp"
#include "engine/id_index.hpp"
#include "engine/limits.hpp"
#include "engine/record_rows.hpp"
#include "storage/failure_probes.hpp"
#include "storage/snapshot.hpp"
#include "storage/wal.hpp"
#include "support/engine_fixture.hpp"
#include "support/seed.hpp"
#include "support/sequencer_gate.hpp"
#include "wire/event_pack.hpp"

#include <cstring>
#include <random>

using namespace mesob;
using namespace mesob::test;
using wire::result;
namespace tf = wire::transfer_flags;
namespace af = wire::account_flags;

class ledger : public ::testing::TestWithParam<uint32_t> {
 protected:
  ledger() : f_(GetParam()) {}
  engine::engine& e() { return f_.e(); }

  // Accounts 1..4 in ETB (1 must not overdraw), 5 in USD, 6 must not exceed debits.
  void seed_accounts() {
    auto r = e().create_accounts({make_account(1, af::debits_must_not_exceed_credits),
                                  make_account(2), make_account(3), make_account(4),
                                  make_account(5, 0, "USD"),
                                  make_account(6, af::credits_must_not_exceed_debits)});
    ASSERT_EQ(r.st, engine::status::ok);
    for (auto x : r.results) ASSERT_EQ(x, result::ok);
  }
  result one(const wire::transfer& t) {
    auto r = e().create_transfers({t});
    EXPECT_EQ(r.st, engine::status::ok);
    return r.results.at(0);
  }
  wire::account acct(uint64_t id) {
    auto r = e().lookup_accounts({id});
    EXPECT_EQ(r.results.at(0), result::ok);
    return r.accounts.at(0);
  }
  // Funds account 1 from account 2 (which may go negative).
  // Waits (up to 2 s) for the engine's ticks to bring account id's credits_pending to v.
  void await_credits_pending(uint64_t id, uint64_t v) {
    for (int i = 0; i < 400 && acct(id).credits_pending != v; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  void fund(uint64_t id, uint64_t amount, uint64_t tid) {
    ASSERT_EQ(one(make_transfer(tid, 2, id, amount)), result::ok);
  }

  engine_fixture f_;
};

INSTANTIATE_TEST_SUITE_P(shards, ledger, ::testing::Values(1u, 2u));

TEST_P(ledger, account_field_checks) {
  auto bad = [&](wire::account a) {
    auto r = e().create_accounts({a});
    return r.results.at(0);
  };
  auto a = make_account(10);
  a.timestamp = 1;
  EXPECT_EQ(bad(a), result::timestamp_must_be_zero);
  EXPECT_EQ(bad(make_account(0)), result::id_must_not_be_zero);
  a = make_account(10);
  a.tier = 1;  // the engine's to set
  EXPECT_EQ(bad(a), result::reserved_field);
  EXPECT_EQ(bad(make_account(10, 0x80)), result::flags_invalid);
  EXPECT_EQ(bad(make_account(10, af::all)), result::flags_are_mutually_exclusive);
  EXPECT_EQ(bad(make_account(10, 0, "et1")), result::currency_invalid);
  a = make_account(10);
  a.kind = wire::account_kind(9);
  EXPECT_EQ(bad(a), result::kind_invalid);
  a = make_account(10);
  a.status = wire::account_status::frozen;
  EXPECT_EQ(bad(a), result::status_invalid);
  a = make_account(10);
  a.credits_posted = 5;
  EXPECT_EQ(bad(a), result::balances_must_be_zero);
  // None of those created anything.
  EXPECT_EQ(e().lookup_accounts({10}).results.at(0), result::account_not_found);
}

TEST_P(ledger, account_idempotency) {
  auto r = e().create_accounts({make_account(7), make_account(7)});
  EXPECT_EQ(r.results.at(0), result::ok);
  EXPECT_EQ(r.results.at(1), result::id_duplicated_in_batch);
  EXPECT_EQ(e().create_accounts({make_account(7)}).results.at(0), result::ok);
  auto changed = make_account(7);
  changed.user_data = 99;
  EXPECT_EQ(e().create_accounts({changed}).results.at(0), result::exists_with_different_fields);
  const auto a = acct(7);
  EXPECT_EQ(a.user_data, 0u);
  EXPECT_EQ(a.timestamp, r.timestamp_base);
  EXPECT_EQ(a.status, wire::account_status::open);
}

TEST_P(ledger, transfer_field_checks) {
  seed_accounts();
  auto t = make_transfer(100, 1, 2, 5);
  t.timestamp = 3;
  EXPECT_EQ(one(t), result::timestamp_must_be_zero);
  EXPECT_EQ(one(make_transfer(0, 1, 2, 5)), result::id_must_not_be_zero);
  t = make_transfer(100, 1, 2, 5);
  t.reserved = 1;
  EXPECT_EQ(one(t), result::reserved_field);
  EXPECT_EQ(one(make_transfer(100, 1, 2, 5, 0x100)), result::flags_invalid);
  EXPECT_EQ(one(make_transfer(100, 1, 2, 5, tf::pending | tf::void_pending)),
            result::flags_are_mutually_exclusive);
  t = make_transfer(100, 1, 2, 5);
  t.pending_id = {9, 0};
  EXPECT_EQ(one(t), result::pending_id_must_be_zero);
  t = make_transfer(100, 1, 2, 5);
  t.timeout_s = 10;
  EXPECT_EQ(one(t), result::timeout_reserved_for_pending_transfer);
  EXPECT_EQ(one(make_transfer(100, 0, 2, 5)), result::debit_account_id_must_not_be_zero);
  EXPECT_EQ(one(make_transfer(100, 1, 0, 5)), result::credit_account_id_must_not_be_zero);
  EXPECT_EQ(one(make_transfer(100, 1, 1, 5)), result::accounts_must_be_different);
  EXPECT_EQ(one(make_transfer(100, 1, 2, 0)), result::amount_must_not_be_zero);
  EXPECT_EQ(one(make_transfer(100, 1, 2, 5, 0, "us$")), result::currency_invalid);
  // Post/void field checks.
  t = make_transfer(100, 0, 0, 0, tf::post_pending);
  EXPECT_EQ(one(t), result::pending_id_must_not_be_zero);
  t.pending_id = t.id;
  EXPECT_EQ(one(t), result::pending_id_must_be_different);
  t.pending_id = {55, 0};
  t.timeout_s = 1;
  EXPECT_EQ(one(t), result::timeout_reserved_for_pending_transfer);
  t = make_transfer(100, 0, 0, 7, tf::void_pending);
  t.pending_id = {55, 0};
  EXPECT_EQ(one(t), result::amount_must_be_zero);
  // Field failures are not recorded: the id is still free.
  EXPECT_EQ(one(make_transfer(100, 2, 3, 5)), result::ok);
}

TEST_P(ledger, transfer_state_checks) {
  seed_accounts();
  EXPECT_EQ(one(make_transfer(200, 99, 2, 5)), result::debit_account_not_found);
  EXPECT_EQ(one(make_transfer(201, 2, 99, 5)), result::credit_account_not_found);
  EXPECT_EQ(one(make_transfer(202, 2, 5, 5)), result::transfer_currency_mismatch);
  EXPECT_EQ(one(make_transfer(203, 2, 3, 5, 0, "USD")), result::transfer_currency_mismatch);
  EXPECT_EQ(one(make_transfer(204, 1, 2, 5)), result::exceeds_credits);
  EXPECT_EQ(one(make_transfer(205, 2, 6, 5)), result::exceeds_debits);
  fund(1, 100, 206);
  EXPECT_EQ(one(make_transfer(207, 1, 3, 100)), result::ok);
  EXPECT_EQ(one(make_transfer(208, 1, 3, 1)), result::exceeds_credits);
  // Overflows.
  EXPECT_EQ(one(make_transfer(209, 3, 4, UINT64_MAX)), result::ok);
  EXPECT_EQ(one(make_transfer(210, 3, 4, 1)), result::overflows_debits_posted);
  EXPECT_EQ(one(make_transfer(211, 2, 4, 1)), result::overflows_credits_posted);
  EXPECT_EQ(one(make_transfer(212, 3, 2, 1, tf::pending)), result::overflows_debits);
  EXPECT_EQ(one(make_transfer(213, 2, 4, 1, tf::pending)), result::overflows_credits);
  // A deadline past 2^64 ns: only reachable with a clock near the end of its range.
  f_.set_clock_ns(UINT64_MAX - 1000ull * 1'000'000'000ull);
  auto t = make_transfer(214, 2, 3, 1, tf::pending);
  t.timeout_s = 2000;
  EXPECT_EQ(one(t), result::overflows_timeout);
  EXPECT_TRUE(e().check_balances().balanced) << e().check_balances().detail;
}

TEST_P(ledger, pending_overflow_codes) {
  seed_accounts();
  EXPECT_EQ(one(make_transfer(300, 2, 3, UINT64_MAX, tf::pending)), result::ok);
  EXPECT_EQ(one(make_transfer(301, 2, 4, 1, tf::pending)), result::overflows_debits_pending);
  EXPECT_EQ(one(make_transfer(302, 4, 3, 1, tf::pending)), result::overflows_credits_pending);
}

TEST_P(ledger, frozen_and_closed_accounts) {
  seed_accounts();
  using st = wire::account_status;
  auto set = [&](uint64_t id, st s) {
    return e().set_account_status({{id, s, 0, 0}}).results.at(0);
  };
  EXPECT_EQ(set(99, st::frozen), result::account_not_found);
  EXPECT_EQ(set(0, st::frozen), result::id_must_not_be_zero);
  EXPECT_EQ(set(3, st(7)), result::status_invalid);
  EXPECT_EQ(e().set_account_status({{3, st::frozen, 1, 0}}).results.at(0), result::reserved_field);
  EXPECT_EQ(set(3, st::frozen), result::ok);
  EXPECT_EQ(one(make_transfer(400, 3, 4, 1)), result::debit_account_frozen);
  EXPECT_EQ(one(make_transfer(401, 4, 3, 1)), result::credit_account_frozen);
  EXPECT_EQ(set(3, st::open), result::ok);
  EXPECT_EQ(one(make_transfer(402, 3, 4, 1)), result::ok);
  EXPECT_EQ(set(3, st::closed), result::account_has_balance);
  EXPECT_EQ(one(make_transfer(403, 4, 3, 1)), result::ok);  // back to zero
  EXPECT_EQ(set(3, st::closed), result::ok);
  EXPECT_EQ(one(make_transfer(404, 3, 4, 1)), result::debit_account_closed);
  EXPECT_EQ(one(make_transfer(405, 4, 3, 1)), result::credit_account_closed);
  EXPECT_EQ(set(3, st::open), result::account_closed);
  EXPECT_EQ(acct(3).status, st::closed);
}

TEST_P(ledger, transfer_idempotency) {
  seed_accounts();
  auto t = make_transfer(500, 2, 3, 40);
  auto first = e().create_transfers({t});
  ASSERT_EQ(first.results.at(0), result::ok);
  // Same id, same fields: the original outcome, applied once.
  EXPECT_EQ(one(t), result::ok);
  EXPECT_EQ(acct(3).credits_posted, 40u);
  auto changed = t;
  changed.amount = 41;
  EXPECT_EQ(one(changed), result::exists_with_different_fields);
  // A recorded failure is returned again even once the transfer could succeed.
  auto over = make_transfer(501, 1, 3, 10);
  EXPECT_EQ(one(over), result::exceeds_credits);
  fund(1, 50, 502);
  EXPECT_EQ(one(over), result::exceeds_credits);
  EXPECT_EQ(acct(1).debits_posted, 0u);
  // Twice in one batch: the second is refused.
  auto r = e().create_transfers({make_transfer(503, 2, 3, 1), make_transfer(503, 2, 3, 1)});
  EXPECT_EQ(r.results.at(0), result::ok);
  EXPECT_EQ(r.results.at(1), result::id_duplicated_in_batch);
  // A repeat of a recorded transfer, twice in one batch: the first gets the recorded
  // outcome, the second is an in-batch duplicate; in the next batch, the outcome again.
  // A field failure does not count as a first occurrence.
  auto zero = make_transfer(504, 2, 3, 0);
  r = e().create_transfers({t, over, t, over, zero, make_transfer(504, 2, 3, 2), zero});
  EXPECT_EQ(r.results, (std::vector<result>{result::ok, result::exceeds_credits, result::id_duplicated_in_batch,
                                            result::id_duplicated_in_batch, result::amount_must_not_be_zero,
                                            result::ok, result::amount_must_not_be_zero}));
  r = e().create_transfers({t, make_transfer(504, 2, 3, 2)});
  EXPECT_EQ(r.results, (std::vector<result>{result::ok, result::ok}));
  EXPECT_EQ(acct(3).credits_posted, 43u);
  // Nor does a refusal that comes before the ids are looked at (it takes no id): here a
  // trading account named by a client (actors/README.md, "Ids").
  const uint64_t trading = actors::trading::account(wire::currency("ETB"), 0);
  r = e().create_transfers({make_transfer(505, trading, 3, 1), make_transfer(505, 2, 3, 1)});
  EXPECT_EQ(r.results, (std::vector<result>{result::trading_account_reserved, result::ok}));
  EXPECT_EQ(acct(3).credits_posted, 44u);
  // Look-up returns the recorded transfer with its timestamp and outcome.
  auto lk = e().lookup_transfers({{500, 0}, {501, 0}, {777, 0}});
  EXPECT_EQ(lk.results.at(0), result::ok);
  EXPECT_EQ(lk.transfers.at(0).t.amount, 40u);
  EXPECT_EQ(lk.transfers.at(0).t.timestamp, first.timestamp_base);
  EXPECT_EQ(lk.transfers.at(0).result, uint32_t(result::ok));
  EXPECT_EQ(lk.transfers.at(1).result, uint32_t(result::exceeds_credits));
  EXPECT_EQ(lk.results.at(2), result::transfer_not_found);
}

TEST_P(ledger, linked_chains_are_all_or_nothing) {
  seed_accounts();
  fund(1, 100, 600);
  auto r = e().create_transfers({make_transfer(601, 1, 3, 30, tf::linked),
                                 make_transfer(602, 3, 4, 30, tf::linked),
                                 make_transfer(603, 4, 2, 30)});
  for (auto x : r.results) EXPECT_EQ(x, result::ok);
  EXPECT_EQ(acct(1).debits_posted, 30u);
  // The second fails: the first is undone, the third never runs.
  r = e().create_transfers({make_transfer(604, 1, 3, 50, tf::linked),
                            make_transfer(605, 1, 4, 50, tf::linked),
                            make_transfer(606, 4, 2, 10),
                            make_transfer(607, 2, 4, 5)});
  EXPECT_EQ(r.results.at(0), result::linked_event_failed);
  EXPECT_EQ(r.results.at(1), result::exceeds_credits);  // the failing one keeps its code
  EXPECT_EQ(r.results.at(2), result::linked_event_failed);
  EXPECT_EQ(r.results.at(3), result::ok);
  r = e().create_transfers({make_transfer(608, 1, 3, 10, tf::linked),
                            make_transfer(609, 1, 4, 10, tf::linked),
                            make_transfer(610, 9, 2, 10)});
  EXPECT_EQ(r.results.at(0), result::linked_event_failed);
  EXPECT_EQ(r.results.at(1), result::linked_event_failed);
  EXPECT_EQ(r.results.at(2), result::debit_account_not_found);
  EXPECT_EQ(acct(1).debits_posted, 30u);
  EXPECT_EQ(acct(3).credits_posted, 30u);
  // A chain left open at the end of the batch.
  r = e().create_transfers({make_transfer(611, 2, 3, 1), make_transfer(612, 2, 3, 1, tf::linked),
                            make_transfer(613, 2, 3, 1, tf::linked)});
  EXPECT_EQ(r.results.at(0), result::ok);
  EXPECT_EQ(r.results.at(1), result::linked_event_failed);
  EXPECT_EQ(r.results.at(2), result::linked_event_chain_open);
  // A field failure inside a chain fails the chain.
  r = e().create_transfers({make_transfer(614, 2, 3, 1, tf::linked), make_transfer(615, 2, 3, 0)});
  EXPECT_EQ(r.results.at(0), result::linked_event_failed);
  EXPECT_EQ(r.results.at(1), result::amount_must_not_be_zero);
  // Failed chain members were recorded with their outcome; retrying returns it.
  r = e().create_transfers({make_transfer(604, 1, 3, 50, tf::linked),
                            make_transfer(605, 1, 4, 50, tf::linked),
                            make_transfer(606, 4, 2, 10)});
  EXPECT_EQ(r.results.at(0), result::linked_event_failed);
  EXPECT_EQ(r.results.at(1), result::exceeds_credits);
  EXPECT_EQ(r.results.at(2), result::linked_event_failed);
  EXPECT_TRUE(e().check_balances().balanced) << e().check_balances().detail;
}

TEST_P(ledger, two_phase_post_and_void) {
  seed_accounts();
  fund(1, 100, 700);
  auto p = make_transfer(701, 1, 3, 60, tf::pending);
  ASSERT_EQ(one(p), result::ok);
  auto a1 = acct(1);
  EXPECT_EQ(a1.debits_pending, 60u);
  EXPECT_EQ(acct(3).credits_pending, 60u);
  // Reserved funds count against the balance limit.
  EXPECT_EQ(one(make_transfer(702, 1, 4, 50)), result::exceeds_credits);
  auto post = make_transfer(703, 0, 0, 70, tf::post_pending);
  post.pending_id = {701, 0};
  EXPECT_EQ(one(post), result::exceeds_pending_transfer_amount);
  post.id = {704, 0};
  post.amount = 45;
  post.debit_account_id = 4;
  EXPECT_EQ(one(post), result::pending_transfer_has_different_debit_account);
  post.id = {705, 0};
  post.debit_account_id = 0;
  post.credit_account_id = 4;
  EXPECT_EQ(one(post), result::pending_transfer_has_different_credit_account);
  post.id = {706, 0};
  post.credit_account_id = 0;
  post.currency = wire::currency("USD");
  EXPECT_EQ(one(post), result::pending_transfer_has_different_currency);
  post.id = {707, 0};
  post.currency = 0;
  EXPECT_EQ(one(post), result::ok);  // partial post: 45 of 60
  a1 = acct(1);
  EXPECT_EQ(a1.debits_pending, 0u);
  EXPECT_EQ(a1.debits_posted, 45u);
  EXPECT_EQ(acct(3).credits_posted, 45u);
  auto again = make_transfer(708, 0, 0, 0, tf::void_pending);
  again.pending_id = {701, 0};
  EXPECT_EQ(one(again), result::pending_transfer_already_posted);
  // Void.
  ASSERT_EQ(one(make_transfer(709, 1, 4, 20, tf::pending)), result::ok);
  auto v = make_transfer(710, 0, 0, 0, tf::void_pending);
  v.pending_id = {709, 0};
  EXPECT_EQ(one(v), result::ok);
  EXPECT_EQ(acct(1).debits_pending, 0u);
  v.id = {711, 0};
  EXPECT_EQ(one(v), result::pending_transfer_already_voided);
  auto post2 = make_transfer(712, 0, 0, 0, tf::post_pending);
  post2.pending_id = {709, 0};
  EXPECT_EQ(one(post2), result::pending_transfer_already_voided);
  // Unknown, failed and non-pending references.
  post2.id = {713, 0};
  post2.pending_id = {999, 0};
  EXPECT_EQ(one(post2), result::pending_transfer_not_found);
  post2.id = {714, 0};
  post2.pending_id = {702, 0};  // recorded, but it failed
  EXPECT_EQ(one(post2), result::pending_transfer_not_found);
  post2.id = {715, 0};
  post2.pending_id = {700, 0};  // a single-phase transfer
  EXPECT_EQ(one(post2), result::pending_transfer_not_pending);
  // Full post (amount 0) on a pending in the same batch as its creation.
  auto r = e().create_transfers({make_transfer(716, 2, 3, 9, tf::pending),
                                 [] {
                                   auto x = make_transfer(717, 0, 0, 0, tf::post_pending);
                                   x.pending_id = {716, 0};
                                   return x;
                                 }()});
  EXPECT_EQ(r.results.at(0), result::ok);
  EXPECT_EQ(r.results.at(1), result::ok);
  EXPECT_EQ(acct(3).credits_posted, 54u);
  EXPECT_TRUE(e().check_balances().balanced) << e().check_balances().detail;
}

TEST_P(ledger, post_to_frozen_account_is_refused_but_void_is_allowed) {
  seed_accounts();
  ASSERT_EQ(one(make_transfer(800, 2, 3, 10, tf::pending)), result::ok);
  ASSERT_EQ(e().set_account_status({{3, wire::account_status::frozen, 0, 0}}).results.at(0), result::ok);
  auto post = make_transfer(801, 0, 0, 0, tf::post_pending);
  post.pending_id = {800, 0};
  EXPECT_EQ(one(post), result::credit_account_frozen);
  auto v = make_transfer(802, 0, 0, 0, tf::void_pending);
  v.pending_id = {800, 0};
  EXPECT_EQ(one(v), result::ok);
  EXPECT_EQ(acct(3).credits_pending, 0u);
}

TEST_P(ledger, pending_transfers_expire_on_the_engine_clock) {
  seed_accounts();
  auto p = make_transfer(900, 2, 3, 10, tf::pending);
  p.timeout_s = 5;
  ASSERT_EQ(one(p), result::ok);
  f_.advance_s(3);
  EXPECT_EQ(acct(3).credits_pending, 10u);
  f_.advance_s(3);
  // No request needed: the engine ticks while timed pending transfers exist.
  await_credits_pending(3, 0);
  EXPECT_EQ(acct(3).credits_pending, 0u);
  EXPECT_EQ(acct(2).debits_pending, 0u);
  auto post = make_transfer(901, 0, 0, 0, tf::post_pending);
  post.pending_id = {900, 0};
  EXPECT_EQ(one(post), result::pending_transfer_expired);
  // Expiry is logged like everything else: it holds across a restart.
  f_.restart();
  EXPECT_EQ(acct(3).credits_pending, 0u);
  post.id = {902, 0};
  EXPECT_EQ(one(post), result::pending_transfer_expired);
}

// Ticks are logged once a pending transfer's deadline has passed, not before, and not
// for transfers posted or refused. Before, the sequencer logged one every tick_ms until
// the latest deadline it had sequenced passed: an hour's hold posted at once, or a
// refused one with the longest timeout, meant ticks for an hour or 136 years. And the
// expiry entries of holds resolved early leave memory once their rows are evicted, not
// at their deadline.
TEST_P(ledger, ticks_wait_for_a_deadline_and_holds_resolved_early_leave_the_expiry_heap) {
  seed_accounts();
  fund(1, 100'000, 7000);
  auto refused = make_transfer(7001, 4242, 3, 10, tf::pending);  // no account 4242
  refused.timeout_s = UINT32_MAX;
  ASSERT_EQ(one(refused), result::debit_account_not_found);
  auto live = make_transfer(7002, 1, 3, 10, tf::pending);
  live.timeout_s = 3600;
  ASSERT_EQ(one(live), result::ok);
  // 10,000 two-hour holds, each posted at once.
  for (uint64_t first = 10'000; first < 20'000; first += 5000) {
    std::vector<wire::transfer> holds, posts;
    for (uint64_t id = first; id < first + 5000; ++id) {
      auto h = make_transfer(id, 1, 3, 1, tf::pending);
      h.timeout_s = 7200;
      holds.push_back(h);
      auto p = make_transfer(id + 100'000, 0, 0, 0, tf::post_pending);
      p.pending_id = {id, 0};
      posts.push_back(p);
    }
    for (auto r : e().create_transfers(holds).results) ASSERT_EQ(r, result::ok);
    for (auto r : e().create_transfers(posts).results) ASSERT_EQ(r, result::ok);
  }
  const uint64_t records = e().stats().wal_records;
  for (int i = 0; i < 5; ++i) {  // (the test clock moves only here: a tick period each)
    f_.advance_s(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(e().stats().wal_records, records) << "no deadline has passed: nothing to log";
  EXPECT_GE(e().stats().pending_expiry_entries, 10'001u) << "the live hold's entry is first: the rest wait";
  // Once the posted holds' rows are evicted (two checkpoints), the heap is made again
  // from the live hold alone (one entry on each shard holding a side of it).
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  ASSERT_EQ(one(make_transfer(7003, 2, 4, 1)), result::ok);  // a batch: the shards tidy after it
  EXPECT_LE(e().stats().pending_expiry_entries, 2u);
  EXPECT_EQ(acct(3).credits_pending, 10u);
  // The live hold's deadline passes: a tick expires it.
  f_.advance_s(3601);
  await_credits_pending(3, 0);
  EXPECT_EQ(acct(3).credits_pending, 0u);
  EXPECT_EQ(acct(1).debits_pending, 0u);
  EXPECT_EQ(e().stats().pending_expiry_entries, 0u);
  EXPECT_TRUE(e().check_balances().balanced) << e().check_balances().detail;
}

// A pending transfer a restart loads expires at its deadline with no request to follow:
// each shard publishes its earliest deadline before the sequencer starts. Nothing reads
// the accounts meanwhile (a look-up is a batch, and a batch executed publishes too): the
// tick is seen in the log's record count.
TEST_P(ledger, a_pending_transfer_loaded_at_a_restart_expires_with_no_request) {
  seed_accounts();
  auto p = make_transfer(950, 2, 3, 10, tf::pending);
  p.timeout_s = 5;
  ASSERT_EQ(one(p), result::ok);
  f_.restart();  // a clean close: nothing to replay
  const uint64_t records = e().stats().wal_records;
  f_.advance_s(6);
  for (int i = 0; i < 400 && e().stats().wal_records == records; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GT(e().stats().wal_records, records) << "no tick was logged for the deadline that passed";
  await_credits_pending(3, 0);
  EXPECT_EQ(acct(3).credits_pending, 0u);
  EXPECT_EQ(acct(2).debits_pending, 0u);
}

TEST_P(ledger, state_survives_restart_with_and_without_snapshot) {
  seed_accounts();
  fund(1, 100, 1000);
  ASSERT_EQ(one(make_transfer(1001, 1, 3, 30, tf::pending)), result::ok);
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  ASSERT_EQ(one(make_transfer(1002, 1, 4, 20)), result::ok);  // only in the log
  const auto before1 = acct(1), before3 = acct(3);
  f_.restart();
  const auto after1 = acct(1), after3 = acct(3);
  EXPECT_EQ(std::memcmp(&before1, &after1, sizeof before1), 0);
  EXPECT_EQ(std::memcmp(&before3, &after3, sizeof before3), 0);
  EXPECT_EQ(one(make_transfer(1002, 1, 4, 20)), result::ok);  // a repeat: not applied again
  EXPECT_EQ(acct(1).debits_posted, 20u);
  auto post = make_transfer(1003, 0, 0, 0, tf::post_pending);
  post.pending_id = {1001, 0};
  EXPECT_EQ(one(post), result::ok);
  EXPECT_EQ(acct(1).debits_posted, 50u);
  f_.restart();
  EXPECT_EQ(acct(1).debits_posted, 50u);
  EXPECT_TRUE(e().check_balances().balanced);
}

// Transfer batches go to the log packed (record version 4, batch_flag_packed) when that is
// smaller, and every restart replays them to the same state; a batch of one goes as it is.
TEST(ledger_log, transfer_batches_are_logged_packed_and_replay_the_same) {
  engine_fixture f(2, false);  // no snapshot at close: every restart replays the log
  constexpr uint64_t accounts = 1000;
  create_accounts(f.e(), accounts);
  const uint64_t seed = test_seed("ledger_log packed");
  std::mt19937_64 rng(seed);
  std::vector<wire::transfer> batch;
  for (uint64_t i = 0; i < 5000; ++i) {
    const uint64_t dr = 1 + rng() % accounts, cr = 1 + (dr + rng() % (accounts - 1)) % accounts;
    auto t = make_transfer(100'000 + i, dr, cr, 1 + rng() % 1000, i % 7 == 0 ? tf::pending : 0);
    if (i % 7 == 0) t.timeout_s = uint32_t(rng() % 100'000);
    t.user_data = i % 3 == 0 ? rng() : 0;
    t.code = uint16_t(i % 5);
    batch.push_back(t);
  }
  auto r = f.e().create_transfers(batch);
  ASSERT_EQ(r.st, engine::status::ok);
  for (auto x : r.results) ASSERT_EQ(x, result::ok);
  ASSERT_EQ(f.e().create_transfers({make_transfer(200'000, 1, 2, 5)}).results.at(0), result::ok);
  std::vector<uint64_t> ids;
  for (uint64_t id = 1; id <= accounts; ++id) ids.push_back(id);
  const auto before = f.e().lookup_accounts(ids).accounts;
  f.close();

  struct seen_record {
    uint16_t version, flags;
    uint32_t count, bytes;
  };
  std::vector<seen_record> transfer_records;
  storage::wal_scan_options so;
  so.dir = f.dir() + "/wal";
  so.repair_tail = false;
  storage::wal_scan_result sr;
  std::string err;
  ASSERT_TRUE(storage::scan_wal(so, [&](const storage::wal_record_view& v) {
    uint16_t kind = 0, flags = 0;
    uint32_t count = 0;
    std::memcpy(&kind, v.payload.data(), 2);
    std::memcpy(&flags, v.payload.data() + 2, 2);
    std::memcpy(&count, v.payload.data() + 4, 4);
    if (kind == uint16_t(actors::op_kind::create_transfers))
      transfer_records.push_back({v.header->version, flags, count, uint32_t(v.payload.size())});
    return true;
  }, &sr, &err)) << err;
  ASSERT_EQ(transfer_records.size(), 2u);
  EXPECT_EQ(transfer_records[0].version, actors::rules_newest);  // this build's (packing came with version 4)
  EXPECT_EQ(transfer_records[0].count, 5000u);
  EXPECT_EQ(transfer_records[0].flags, 4u);                 // packed
  EXPECT_LT(transfer_records[0].bytes, 16u + 16u + 5000u * 30u);  // against 88 a transfer as they are
  EXPECT_EQ(transfer_records[1].flags, 0u);                 // one transfer: as it is
  EXPECT_EQ(transfer_records[1].bytes, 16u + 8u + 8u + sizeof(wire::transfer));  // header, pending_max, transfers_max, the transfer

  for (int round = 0; round < 2; ++round) {
    f.open();
    const auto after = f.e().lookup_accounts(ids).accounts;
    ASSERT_EQ(after.size(), before.size());
    EXPECT_EQ(std::memcmp(after.data(), before.data(), before.size() * sizeof(wire::account)), 0)
        << "seed " << seed << ", restart " << round;
    // Every transfer is known again: repeats give the first outcome and move nothing.
    auto again = f.e().create_transfers(batch);
    for (auto x : again.results) ASSERT_EQ(x, result::ok);
    const auto looked = f.e().lookup_transfers({batch[6].id, batch[7].id});
    ASSERT_EQ(looked.results, (std::vector<result>{result::ok, result::ok}));
    EXPECT_EQ(looked.transfers[1].t.timeout_s, batch[7].timeout_s);
    EXPECT_EQ(looked.transfers[0].t.user_data, batch[6].user_data);
    EXPECT_EQ(f.e().lookup_accounts(ids).accounts.at(0).debits_posted, before.at(0).debits_posted);
    EXPECT_TRUE(f.e().check_balances().balanced);
    f.close();
  }
}

// Transfer records of earlier versions (88-byte transfers as they are) replay; a packed
// flag where no version allows it, or packed bytes that do not hold the batch, stop
// start-up with the record and the reason.
TEST(ledger_log, older_transfer_records_replay_and_bad_packed_ones_stop_start_up) {
  const std::vector<wire::account> accounts{make_account(1), make_account(2)};
  const std::vector<wire::transfer> transfers{make_transfer(10, 1, 2, 30), make_transfer(11, 2, 1, 5)};
  const auto kind_accounts = uint16_t(actors::op_kind::create_accounts);
  const auto kind_transfers = uint16_t(actors::op_kind::create_transfers);
  {
    temp_dir dir;
    write_batch_records(dir.path(), {{3, kind_accounts, 2, ops_bytes(accounts)},
                                     {3, kind_transfers, 2, ops_bytes(transfers)}});
    std::string err;
    auto e = engine::engine::open(test_config(dir.path()), &err);
    ASSERT_TRUE(e) << err;
    const auto a = e->lookup_accounts({1, 2}).accounts;
    ASSERT_EQ(a.size(), 2u);
    EXPECT_EQ(a[0].debits_posted, 30u);
    EXPECT_EQ(a[0].credits_posted, 5u);
    EXPECT_EQ(e->create_transfers(transfers).results, (std::vector<result>{result::ok, result::ok}));
    EXPECT_EQ(e->lookup_accounts({1}).accounts.at(0).debits_posted, 30u);
  }
  std::vector<uint8_t> packed;
  wire::pack_transfers(transfers, packed);
  auto refused = [&](uint16_t version, std::vector<uint8_t> body, uint32_t count, const char* why) {
    temp_dir dir;
    write_batch_records(dir.path(), {{3, kind_accounts, 2, ops_bytes(accounts)},
                                     {version, kind_transfers, count, std::move(body), 4}});
    std::string err;
    EXPECT_FALSE(engine::engine::open(test_config(dir.path()), &err));
    EXPECT_NE(err.find("malformed batch record"), std::string::npos) << err;
    EXPECT_NE(err.find(why), std::string::npos) << err;
  };
  refused(3, packed, 2, "kind 2, 2 operations");             // version 3 knows no packed flag
  refused(3, ops_bytes(transfers), 2, "kind 2, 2 operations, 176 bytes");  // nor with a body as they are
  refused(4, packed, 3, "packed transfers: the block at byte 0");  // one transfer short
  auto cut = packed;
  cut.pop_back();
  refused(4, cut, 2, "packed transfers");
  refused(4, ops_bytes(transfers), 2, "packed transfers");  // flagged packed, but as they are
  {  // only transfer batches are ever packed
    temp_dir dir;
    write_batch_records(dir.path(), {{4, kind_accounts, 2, ops_bytes(accounts), 4}});
    std::string err;
    EXPECT_FALSE(engine::engine::open(test_config(dir.path()), &err));
    EXPECT_NE(err.find("malformed batch record (kind 1, 2 operations"), std::string::npos) << err;
  }
}

// Status changes numbered on their account (rules version 17; actors/README.md
// "set_account_status"): a numbered change applies only as the account's next; a repeat
// of the latest returns its outcome and changes nothing (a close retried after its
// answer was lost is ok, not account_closed); the same number with another status is
// exists_with_different_fields. Unnumbered changes count too; refused ones take no
// number. The count survives a restart.
TEST_P(ledger, numbered_status_changes_apply_once_and_in_order) {
  seed_accounts();
  using st = wire::account_status;
  auto change = [&](uint64_t id, st s, uint32_t seq) {
    wire::account_status_change c;
    c.account_id = id;
    c.status = s;
    c.seq = seq;
    return e().set_account_status({c}).results.at(0);
  };
  EXPECT_EQ(acct(3).status_seq, 0u);
  EXPECT_EQ(change(3, st::frozen, 2), result::status_seq_ahead);
  EXPECT_EQ(change(3, st::frozen, 1), result::ok);
  EXPECT_EQ(acct(3).status_seq, 1u);
  EXPECT_EQ(change(3, st::frozen, 1), result::ok);  // a retry
  EXPECT_EQ(change(3, st::open, 1), result::exists_with_different_fields);  // another change numbered 1
  EXPECT_EQ(acct(3).status, st::frozen);
  EXPECT_EQ(acct(3).status_seq, 1u);
  EXPECT_EQ(change(3, st::open, 0), result::ok);  // unnumbered
  EXPECT_EQ(acct(3).status_seq, 2u);
  EXPECT_EQ(change(3, st::frozen, 1), result::status_changed_since);  // the retry after another change
  EXPECT_EQ(acct(3).status, st::open);
  EXPECT_EQ(change(4, st::closed, 1), result::ok);
  EXPECT_EQ(change(4, st::closed, 1), result::ok);  // the close retried
  EXPECT_EQ(change(4, st::closed, 2), result::account_closed);
  EXPECT_EQ(change(4, st::open, 0), result::account_closed);
  fund(1, 100, 900);
  EXPECT_EQ(change(1, st::closed, 1), result::account_has_balance);
  EXPECT_EQ(acct(1).status_seq, 0u);  // refused: no number taken
  EXPECT_EQ(change(1, st::frozen, 1), result::ok);
  f_.restart();
  EXPECT_EQ(acct(3).status_seq, 2u);
  EXPECT_EQ(acct(4).status_seq, 1u);
  EXPECT_EQ(change(1, st::frozen, 1), result::ok);  // retried across the restart
  EXPECT_EQ(change(3, st::open, 2), result::ok);
  EXPECT_EQ(change(3, st::frozen, 3), result::ok);
  EXPECT_EQ(acct(3).status_seq, 3u);
}

// Before version 17 a status change's seq was reserved and changes were not counted:
// records of older builds replay so.
TEST(ledger_log, status_changes_of_older_records_replay_uncounted) {
  const auto kind_accounts = uint16_t(actors::op_kind::create_accounts);
  const auto kind_status = uint16_t(actors::op_kind::set_account_status);
  wire::account_status_change freeze;
  freeze.account_id = 1;
  freeze.status = wire::account_status::frozen;
  auto numbered = freeze;
  numbered.seq = 1;
  auto reopen = numbered;
  reopen.status = wire::account_status::open;
  temp_dir dir;
  // Version 16: the numbered freeze refused (reserved_field), the other made, uncounted.
  // Version 17: the reopen numbered 1 is then the account's first counted change (had
  // the freeze counted, it would be another change numbered 1: refused, still frozen).
  write_batch_records(dir.path(), {{15, kind_accounts, 1, ops_bytes(std::vector{make_account(1)})},
                                   {16, kind_status, 2, ops_bytes(std::vector{numbered, freeze})},
                                   {17, kind_status, 1, ops_bytes(std::vector{reopen})}});
  auto e = open_engine(test_config(dir.path(), 1));
  ASSERT_TRUE(e);
  const auto a = e->lookup_accounts({1}).accounts.at(0);
  EXPECT_EQ(a.status, wire::account_status::open);
  EXPECT_EQ(a.status_seq, 1u);
  EXPECT_EQ(e->set_account_status({reopen}).results.at(0), result::ok);  // a repeat of it
}

// Records of account creates from version 16 carry the accounts_max they were decided by
// before their operations: a replay decides by it whatever the engine is set to now.
// Older records knew no limit; a capacity missing or 0 stops start-up.
TEST(ledger_log, account_creates_replay_by_the_capacity_logged_with_them) {
  const std::vector<wire::account> accounts{make_account(1), make_account(2)};
  const auto kind_accounts = uint16_t(actors::op_kind::create_accounts);
  auto with_capacity = [&](uint64_t capacity) {
    std::vector<uint8_t> body(sizeof capacity);
    std::memcpy(body.data(), &capacity, sizeof capacity);
    const auto ops = ops_bytes(accounts);
    body.insert(body.end(), ops.begin(), ops.end());
    return body;
  };
  auto replayed = [&](uint16_t version, std::vector<uint8_t> body, uint64_t accounts_max) {
    temp_dir dir;
    write_batch_records(dir.path(), {{version, kind_accounts, 2, std::move(body)}});
    auto cfg = test_config(dir.path(), 1);
    cfg.accounts_max = accounts_max;
    std::string err;
    auto e = engine::engine::open(cfg, &err);
    EXPECT_TRUE(e) << err;
    return e ? e->lookup_accounts({1, 2}).results : std::vector<result>{};
  };
  EXPECT_EQ(replayed(15, ops_bytes(accounts), 1), (std::vector<result>{result::ok, result::ok}));
  EXPECT_EQ(replayed(16, with_capacity(1), 100), (std::vector<result>{result::ok, result::account_not_found}));
  EXPECT_EQ(replayed(16, with_capacity(2), 1), (std::vector<result>{result::ok, result::ok}));
  auto refused = [&](std::vector<uint8_t> body, uint32_t count, const char* why) {
    temp_dir dir;
    write_batch_records(dir.path(), {{16, kind_accounts, count, std::move(body)}});
    std::string err;
    EXPECT_FALSE(engine::engine::open(test_config(dir.path(), 1), &err));
    EXPECT_NE(err.find(why), std::string::npos) << err;
  };
  refused(with_capacity(0), 2, "with capacity 0");
  refused({}, 0, "shorter than its capacity");
  refused(ops_bytes(accounts), 2, "malformed batch record (kind 1, 2 operations, 152 bytes)");  // no capacity
}

// The flush gap (engine/README.md): a group commit starts no sooner than the gap after the
// one before, the requests meanwhile held in one group; a stop commits a held group at once.
TEST(ledger_log, a_flush_gap_holds_the_next_group_commit_and_a_stop_ends_the_hold) {
  using clk = std::chrono::steady_clock;
  constexpr auto gap = std::chrono::seconds(1);  // the longest a configuration may set
  engine_fixture f(1);
  f.set_flush_gap_us(uint32_t(std::chrono::microseconds(gap).count()));
  f.restart();
  const auto before = clk::now();  // the accounts' group starts after this
  ASSERT_EQ(f.e().create_accounts({make_account(1), make_account(2)}).st, engine::status::ok);
  const uint64_t groups = f.e().stats().wal_groups;
  std::atomic<int> taken{0};
  std::vector<std::thread> callers;
  for (uint64_t i = 0; i < 4; ++i)
    callers.emplace_back([&, i] {
      const auto r = f.e().create_transfers({make_transfer(100 + i, 1, 2, 5)});
      if (r.st == engine::status::ok && r.results.at(0) == result::ok) ++taken;
    });
  for (auto& c : callers) c.join();
  EXPECT_EQ(taken.load(), 4);
  EXPECT_GE(clk::now() - before, gap) << "the transfers' group started within the gap";
  EXPECT_EQ(f.e().stats().wal_groups, groups + 1) << "the four transfers held went in one group";

  // Held again (the gap runs from the transfers' group); the engine stops meanwhile.
  const auto held_from = clk::now();
  clk::time_point answered{};
  engine::reply r;
  std::thread caller([&] {
    r = f.e().create_transfers({make_transfer(200, 1, 2, 7)});
    answered = clk::now();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the caller's transfer is queued
  f.close();
  caller.join();
  ASSERT_EQ(r.st, engine::status::ok);
  EXPECT_EQ(r.results.at(0), result::ok);
  // (The hold would end a gap after the transfers' group started, a little before
  // held_from + gap; the stop came 300 ms after held_from.)
  EXPECT_LT(answered - held_from, std::chrono::milliseconds(gap) - std::chrono::milliseconds(100))
      << "the stop did not end the hold";
  f.open();
  const auto l = f.e().lookup_transfers({{200, 0}});
  EXPECT_EQ(l.results.at(0), result::ok) << "the transfer answered at the stop is not in the log";
  EXPECT_EQ(f.e().lookup_accounts({2}).accounts.at(0).credits_posted, 4 * 5 + 7u);
}

// Capacity (engine/README.md "Capacity"): each shard holds its share of accounts_max,
// rounded up. A create past it is refused, accounts_full, and changes nothing; a repeat
// of an account that exists is still ok, and the engine's own accounts (a gateway's
// payout accounts) are made regardless. The setting is logged with each create, so a
// replay under another setting decides as the live run did; new creates follow the new
// one.
// Resolved pending transfers stay in the shards' memory until a snapshot holds them.
// With checkpoints on demand only (interval 0), they grew for good; past
// resolved_pending_cut_at a checkpoint is taken whatever the interval, and they go.
TEST(ledger_capacity, resolved_pending_transfers_make_a_checkpoint_due) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  ASSERT_EQ(cfg.checkpoint_interval_ms, 0u);
  cfg.resolved_pending_cut_at = 200;
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 4);
  std::vector<wire::transfer> holds, voids;
  for (uint64_t i = 1; i <= 300; ++i) {
    holds.push_back(make_transfer(1000 + i, 1 + i % 2, 3 + i % 2, 1, tf::pending));
    auto v = make_transfer(5000 + i, 0, 0, 0, tf::void_pending);
    v.pending_id = {1000 + i, 0};
    voids.push_back(v);
  }
  for (const auto r : e->create_transfers(holds).results) ASSERT_EQ(r, result::ok);
  for (const auto r : e->create_transfers(voids).results) ASSERT_EQ(r, result::ok);
  EXPECT_EQ(e->stats().pending_open, 0u);
  for (int i = 0; i < 300 && e->stats().checkpoints == 0; ++i) {
    ASSERT_EQ(e->create_transfers({make_transfer(9000 + i, 1, 2, 1)}).results.at(0), result::ok);  // (the loop turns)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE(e->stats().checkpoints, 1u) << "300 resolved, 200 allowed: a checkpoint is due";
  for (int i = 0; i < 300 && e->stats().pending_tracked != 0; ++i) {
    e->create_transfers({make_transfer(20000 + i, 1, 2, 1)});
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(e->stats().pending_tracked, 0u) << "the snapshot has them: they left memory";
  engine::config bad = cfg;
  bad.resolved_pending_cut_at = 0;
  EXPECT_NE(bad.validate().find("resolved_pending_cut_at must be at least 1"), std::string::npos);
}

TEST(ledger_capacity, accounts_past_a_shards_share_are_refused_and_replay_as_decided) {
  engine_fixture f(2, /*checkpoint_on_close=*/false);
  f.set_capacity(5, 0);  // 3 a shard
  f.restart();
  constexpr uint64_t settlement = 100;
  auto settle = make_account(settlement);
  settle.kind = wire::account_kind::gateway_settlement;
  ASSERT_EQ(f.e().create_accounts({settle}).results.at(0), result::ok);
  uint32_t held[2] = {0, 0};
  held[actors::shard_of(settlement, 2)] = 1;
  std::vector<wire::account> batch;
  for (uint64_t id = 1; id <= 20; ++id) batch.push_back(make_account(id));
  const auto r = f.e().create_accounts(batch);
  ASSERT_EQ(r.st, engine::status::ok);
  const auto [made, refused] = expect_capacity_split(1, 20, held, 3, r.results, result::accounts_full);
  ASSERT_EQ(held[0] + held[1], 6u);
  ASSERT_EQ(made.size(), 5u);
  EXPECT_EQ(f.e().stats().accounts_max, 5u);
  EXPECT_DOUBLE_EQ(f.e().stats().accounts_share_used, 1.0);
  auto exist = [&](const std::vector<uint64_t>& ids, result want) {
    const auto l = f.e().lookup_accounts(ids);
    for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(l.results.at(i), want) << "account " << ids[i];
  };
  exist(made, result::ok);
  exist(refused, result::account_not_found);
  // Full: repeats are ok, new accounts are not.
  std::vector<wire::account> again;
  for (const uint64_t id : made) again.push_back(make_account(id));
  for (const auto x : f.e().create_accounts(again).results) EXPECT_EQ(x, result::ok);
  EXPECT_EQ(f.e().create_accounts({make_account(refused[0])}).results.at(0), result::accounts_full);
  // A gateway's payout accounts are the engine's: made on full shards. A new settlement
  // account is a client's account like any other.
  auto reg = f.e().gateways({make_gateway_registration("mm-capacity", settlement)});
  ASSERT_EQ(reg.st, engine::status::ok);
  EXPECT_EQ(reg.results.at(0), result::ok);
  reg = f.e().gateways({make_gateway_registration("mm-capacity-2", 101)});
  ASSERT_EQ(reg.st, engine::status::ok);
  EXPECT_EQ(reg.results.at(0), result::accounts_full);
  exist({101}, result::account_not_found);
  const auto totals = f.e().check_balances();
  EXPECT_TRUE(totals.balanced);

  // Replayed from the log under a larger setting: as decided, then room for more.
  f.set_capacity(100, 0);
  f.restart();
  exist(made, result::ok);
  exist(refused, result::account_not_found);
  exist({101}, result::account_not_found);
  EXPECT_EQ(f.e().gateways({make_gateway_registration("mm-capacity", settlement)}).results.at(0),
            result::gateway_exists);  // registered before: replayed
  std::vector<wire::account> rest;
  for (const uint64_t id : refused) rest.push_back(make_account(id));
  for (const auto x : f.e().create_accounts(rest).results) EXPECT_EQ(x, result::ok);
  std::string err;
  ASSERT_TRUE(f.e().checkpoint(&err)) << err;

  // Back to the small setting: shards past their share refuse new accounts, keep the old.
  f.set_capacity(5, 0);
  f.restart();
  exist(made, result::ok);
  exist(refused, result::ok);
  EXPECT_EQ(f.e().create_accounts({make_account(21)}).results.at(0), result::accounts_full);
  EXPECT_EQ(f.e().create_accounts({make_account(refused[0])}).results.at(0), result::ok);
}

// Open pending transfers are bounded the same way: a new one makes an entry on the shard
// of each side, and a side's shard holding its share of pending_max refuses it
// (pending_full), through the side it owns whichever shard decides. Posts, voids, expiry
// and a chain's rollback make room; repeats keep their first outcome; transfers that are
// not pending go on. A replay under another setting decides as the live run did.
TEST(ledger_capacity, pending_transfers_past_a_shards_share_are_refused_and_replay_as_decided) {
  namespace tf = wire::transfer_flags;
  engine_fixture f(2, /*checkpoint_on_close=*/false);
  f.set_capacity(0, 0, 4);  // 2 a shard
  f.restart();
  std::vector<uint64_t> on[2];  // two accounts on each shard
  for (uint64_t id = 1; on[0].size() < 2 || on[1].size() < 2; ++id) {
    auto& mine = on[actors::shard_of(id, 2)];
    if (mine.size() < 2) mine.push_back(id);
  }
  std::vector<wire::account> accounts;
  for (const auto& s : on)
    for (const uint64_t id : s) accounts.push_back(make_account(id));
  for (const auto x : f.e().create_accounts(accounts).results) ASSERT_EQ(x, result::ok);
  const uint64_t a0 = on[0][0], b0 = on[0][1], a1 = on[1][0], b1 = on[1][1];
  auto one = [&](const wire::transfer& t) {
    const auto r = f.e().create_transfers({t});
    EXPECT_EQ(r.st, engine::status::ok);
    return r.results.empty() ? result::reserved_field : r.results[0];  // (any failure)
  };
  auto pending = [&](uint64_t id, uint64_t dr, uint64_t cr, uint32_t timeout_s = 0) {
    auto t = make_transfer(id, dr, cr, 10, tf::pending);
    t.timeout_s = timeout_s;
    return t;
  };
  auto resolve = [&](uint64_t id, uint64_t of, uint16_t flag) {
    auto t = make_transfer(id, 0, 0, 0, flag);
    t.pending_id = {of, 0};
    return t;
  };
  EXPECT_EQ(one(pending(1, a0, b0)), result::ok);     // shard 0: 1
  EXPECT_EQ(one(pending(2, a0, a1)), result::ok);     // across: shard 0: 2, shard 1: 1
  EXPECT_EQ(one(pending(3, b0, a0)), result::pending_full);
  EXPECT_EQ(one(pending(4, a1, a0)), result::pending_full);  // shard 0 full, on its credit side
  EXPECT_EQ(one(pending(5, a1, b1)), result::ok);     // shard 1: 2
  EXPECT_EQ(one(pending(6, b1, a1)), result::pending_full);
  EXPECT_EQ(one(make_transfer(7, a0, b1, 10)), result::ok);  // not pending: goes on
  EXPECT_EQ(one(pending(1, a0, b0)), result::ok);     // a repeat: its first outcome
  EXPECT_EQ(one(pending(3, b0, a0)), result::pending_full);
  EXPECT_EQ(f.e().stats().pending_open, 4u);
  EXPECT_EQ(f.e().stats().pending_max, 4u);
  EXPECT_DOUBLE_EQ(f.e().stats().pending_share_used, 1.0);
  // A void makes room on shard 1; a chain that makes a pending transfer and then fails
  // gives it back.
  EXPECT_EQ(one(resolve(8, 5, tf::void_pending)), result::ok);  // shard 1: 1
  auto linked = pending(9, a1, b1);
  linked.flags |= tf::linked;
  const auto chain = f.e().create_transfers({linked, make_transfer(10, a1, 999, 10)});
  ASSERT_EQ(chain.results.size(), 2u);
  EXPECT_EQ(chain.results[0], result::linked_event_failed);
  EXPECT_EQ(chain.results[1], result::credit_account_not_found);
  EXPECT_EQ(one(pending(11, b1, a1)), result::ok);    // shard 1: 2
  EXPECT_EQ(one(pending(12, a1, b1)), result::pending_full);
  // A post makes room on shard 0; expiry too.
  EXPECT_EQ(one(resolve(13, 1, tf::post_pending)), result::ok);  // shard 0: 1
  EXPECT_EQ(one(pending(14, b0, a0, 1)), result::ok);  // shard 0: 2
  EXPECT_EQ(one(pending(15, b0, a0)), result::pending_full);
  f.advance_s(2);
  EXPECT_EQ(one(pending(16, b0, a0)), result::ok);  // 14 expired first: shard 0: 2
  EXPECT_EQ(f.e().stats().pending_open, 4u);
  const std::vector<wire::id128> ids{{1, 0}, {2, 0}, {3, 0}, {4, 0}, {5, 0}, {6, 0}, {9, 0}, {11, 0}, {12, 0}, {14, 0}, {15, 0}, {16, 0}};
  const auto before = f.e().lookup_transfers(ids);
  const auto accounts_before = f.e().lookup_accounts({a0, b0, a1, b1});
  EXPECT_TRUE(f.e().check_balances().balanced);

  // Replayed from the log under a larger setting: as decided, then room for more.
  f.set_capacity(0, 0, 100);
  f.restart();
  const auto after = f.e().lookup_transfers(ids);
  EXPECT_EQ(after.results, before.results);
  ASSERT_EQ(after.transfers.size(), before.transfers.size());
  for (size_t i = 0; i < after.transfers.size(); ++i)
    EXPECT_EQ(std::memcmp(&after.transfers[i], &before.transfers[i], sizeof after.transfers[i]), 0) << "transfer " << i;
  const auto accounts_after = f.e().lookup_accounts({a0, b0, a1, b1});
  ASSERT_EQ(accounts_after.accounts.size(), 4u);
  for (size_t i = 0; i < 4; ++i)
    EXPECT_EQ(std::memcmp(&accounts_after.accounts[i], &accounts_before.accounts[i], sizeof(wire::account)), 0) << i;
  EXPECT_EQ(f.e().stats().pending_open, 4u);
  EXPECT_EQ(one(pending(17, b0, a0)), result::ok);
  EXPECT_EQ(one(pending(18, b1, a1)), result::ok);
  std::string err;
  ASSERT_TRUE(f.e().checkpoint(&err)) << err;

  // Back to the small setting: the open ones stay (from the snapshot), new ones wait for room.
  f.set_capacity(0, 0, 4);
  f.restart();
  EXPECT_EQ(f.e().stats().pending_open, 6u);
  EXPECT_EQ(one(pending(19, b0, a0)), result::pending_full);
  EXPECT_EQ(one(resolve(20, 17, tf::void_pending)), result::ok);
  EXPECT_EQ(one(resolve(21, 16, tf::void_pending)), result::ok);
  EXPECT_EQ(one(pending(22, b0, a0)), result::ok);
}

// Records of transfer batches from version 19 carry the pending_max they were decided by:
// older ones replay without a limit, newer ones by theirs, and a start with another shard
// count is refused while the pending transfers held and made past the snapshot could have
// met a shard's share under either count.
TEST(ledger_log, pending_transfers_replay_by_the_capacity_logged_with_them) {
  namespace tf = wire::transfer_flags;
  const auto kind_accounts = uint16_t(actors::op_kind::create_accounts);
  const auto kind_transfers = uint16_t(actors::op_kind::create_transfers);
  const std::vector<wire::transfer> transfers{make_transfer(1, 1, 2, 5, tf::pending), make_transfer(2, 2, 1, 5, tf::pending)};
  auto with_capacity = [](uint64_t capacity, std::vector<uint8_t> ops) {
    std::vector<uint8_t> body(sizeof capacity);
    std::memcpy(body.data(), &capacity, sizeof capacity);
    body.insert(body.end(), ops.begin(), ops.end());
    return body;
  };
  auto replayed = [&](uint16_t version, std::vector<uint8_t> body) {
    temp_dir dir;
    write_batch_records(dir.path(), {{16, kind_accounts, 2, with_capacity(100, ops_bytes(std::vector{make_account(1), make_account(2)}))},
                                     {version, kind_transfers, 2, std::move(body)}});
    auto cfg = test_config(dir.path(), 1);
    cfg.pending_max = 1;
    std::string err;
    auto e = engine::engine::open(cfg, &err);
    EXPECT_TRUE(e) << err;
    return e ? e->stats().pending_open : 0u;
  };
  EXPECT_EQ(replayed(18, ops_bytes(transfers)), 2u);  // no limit then, whatever pending_max is now
  // Refused transfers are recorded too: the second is pending_full, not pending.
  temp_dir dir;
  write_batch_records(dir.path(), {{16, kind_accounts, 2, with_capacity(100, ops_bytes(std::vector{make_account(1), make_account(2)}))},
                                   {19, kind_transfers, 2, with_capacity(1, ops_bytes(transfers))}});
  auto cfg = test_config(dir.path(), 1);
  cfg.pending_max = 100;
  std::string err;
  {
    auto e = engine::engine::open(cfg, &err);
    ASSERT_TRUE(e) << err;
    EXPECT_EQ(e->stats().pending_open, 1u);
    EXPECT_EQ(e->create_transfers({transfers[1]}).results.at(0), result::pending_full);  // its first outcome
    EXPECT_EQ(e->lookup_accounts({1}).accounts.at(0).debits_pending, 5u);
  }
  temp_dir bad;
  write_batch_records(bad.path(), {{19, kind_transfers, 2, ops_bytes(transfers)}});  // no capacity
  EXPECT_FALSE(engine::engine::open(test_config(bad.path(), 1), &err));
  EXPECT_NE(err.find("malformed batch record (kind 2"), std::string::npos) << err;
}

// Every transfer keeps its id in memory, so the engine records at most transfers_max of
// them (engine/README.md "Capacity"), whatever their outcome. A new one past it is
// refused, transfers_full, and not recorded (its id stays free); a repeat keeps its first
// outcome; a chain without room for all its links is refused whole, none recorded (so it
// goes through once there is room); a post or void goes on past it (a pending transfer
// resolves once: money held is not held for good). The setting is logged with each
// batch: a replay under another setting decides as the live run did, and new transfers
// follow the new one.
namespace {
// An engine (2 shards, accounts 1..4) that records at most `transfers_max` transfers.
void open_capped(engine_fixture& f, uint64_t transfers_max) {
  f.set_transfers_max(transfers_max);
  f.restart();
  create_accounts(f.e(), 4);
}
// The results of one batch of transfers (the call itself must go through).
std::vector<result> results_of(engine_fixture& f, const std::vector<wire::transfer>& ts) {
  const auto r = f.e().create_transfers(ts);
  EXPECT_EQ(r.st, engine::status::ok);
  return r.results;
}
}  // namespace

TEST(ledger_capacity, transfers_past_transfers_max_are_refused_and_replay_as_decided) {
  namespace tf = wire::transfer_flags;
  engine_fixture f(2, /*checkpoint_on_close=*/false);
  open_capped(f, 6);
  auto results = [&](const std::vector<wire::transfer>& ts) { return results_of(f, ts); };
  using R = std::vector<result>;
  const result ok = result::ok, full = result::transfers_full;
  EXPECT_EQ(results({make_transfer(1, 1, 2, 10, tf::pending), make_transfer(2, 2, 3, 10), make_transfer(3, 3, 4, 10)}),
            (R{ok, ok, ok}));
  // A failed transfer is recorded too (its id is taken): it counts.
  EXPECT_EQ(results({make_transfer(4, 1, 99, 10)}), (R{result::credit_account_not_found}));
  // Room for one: a chain of two is refused whole (before, its first link was recorded,
  // failed, and every retry of the chain failed on it).
  auto chain = make_transfer(8, 1, 2, 10, tf::linked);
  EXPECT_EQ(results({make_transfer(5, 4, 1, 10), chain, make_transfer(9, 2, 1, 10)}),
            (R{ok, full, result::linked_event_failed}));
  EXPECT_EQ(f.e().stats().transfers, 5u);
  EXPECT_EQ(results({make_transfer(6, 1, 3, 10), make_transfer(7, 2, 4, 10), make_transfer(3, 3, 4, 10)}),
            (R{ok, full, ok}));  // the repeat of 3: its first outcome
  EXPECT_EQ(f.e().stats().transfers, 6u);
  EXPECT_EQ(f.e().stats().transfers_max, 6u);
  EXPECT_EQ(results({chain, make_transfer(9, 2, 1, 10)}), (R{full, result::linked_event_failed}));
  EXPECT_EQ(results({make_transfer(7, 2, 4, 10)}), (R{full}));  // not recorded: refused again
  EXPECT_EQ(results({make_transfer(4, 1, 99, 10)}), (R{result::credit_account_not_found}));
  // Full, a pending transfer is still posted (or voided): what it holds is not held for good.
  auto post = make_transfer(10, 0, 0, 0, tf::post_pending);
  post.pending_id = {1, 0};
  EXPECT_EQ(results({post}), (R{ok}));
  EXPECT_EQ(f.e().stats().transfers, 7u);
  auto bogus = make_transfer(12, 0, 0, 0, tf::post_pending);  // names no pending transfer: no room of its own
  bogus.pending_id = {999, 0};
  EXPECT_EQ(results({bogus}), (R{full}));
  EXPECT_EQ(f.e().stats().transfers, 7u);
  EXPECT_EQ(f.e().lookup_accounts({1}).accounts.at(0).debits_pending, 0u);
  const std::vector<wire::id128> ids{{1, 0}, {4, 0}, {6, 0}, {7, 0}, {8, 0}, {9, 0}, {10, 0}};
  const R found{ok, ok, ok, result::transfer_not_found, result::transfer_not_found, result::transfer_not_found, ok};
  EXPECT_EQ(f.e().lookup_transfers(ids).results, found);
  const auto accounts_before = f.e().lookup_accounts({1, 2, 3, 4});
  EXPECT_TRUE(f.e().check_balances().balanced);

  // Replayed from the log under a larger setting: as decided, then room for more.
  f.set_transfers_max(100);
  f.restart();
  EXPECT_EQ(f.e().lookup_transfers(ids).results, found);
  const auto accounts_after = f.e().lookup_accounts({1, 2, 3, 4});
  ASSERT_EQ(accounts_after.accounts.size(), 4u);
  for (size_t i = 0; i < 4; ++i)
    EXPECT_EQ(std::memcmp(&accounts_after.accounts[i], &accounts_before.accounts[i], sizeof(wire::account)), 0) << i;
  EXPECT_EQ(f.e().stats().transfers, 7u);
  EXPECT_EQ(results({make_transfer(7, 2, 4, 10), chain, make_transfer(9, 2, 1, 10)}), (R{ok, ok, ok}));
  std::string err;
  ASSERT_TRUE(f.e().checkpoint(&err)) << err;

  // Back to the small setting: what was recorded stays (from the snapshot); new ones are
  // refused, repeats are not, a chain's included (10 recorded, past 6 and the 2 pending
  // transfers a post may pass it by: a repeat of a chain was refused whole before).
  f.set_transfers_max(6);
  f.set_capacity(0, 0, 2);
  f.restart();
  EXPECT_EQ(f.e().stats().transfers, 10u);
  EXPECT_EQ(results({make_transfer(11, 1, 2, 10), make_transfer(8, 1, 2, 10, tf::linked), make_transfer(9, 2, 1, 10)}),
            (R{full, ok, ok}));
  EXPECT_TRUE(f.e().check_balances().balanced);
  engine::config bad = f.config();
  bad.transfers_max = 0;
  EXPECT_NE(bad.validate().find("transfers_max must be 1..1099511627774"), std::string::npos) << bad.validate();
  bad.transfers_max = 1ull << 40;
  EXPECT_NE(bad.validate().find("transfers_max must be 1..1099511627774"), std::string::npos) << bad.validate();
}

// A chain refused whole for room refuses its new links alone, as a lone transfer is: a
// repeat among its links keeps its first outcome, and a new link with a bad field gets
// that field's code. Before, every link got transfers_full.
TEST(ledger_capacity, a_chain_without_room_answers_its_repeats_and_field_failures) {
  namespace tf = wire::transfer_flags;
  engine_fixture f(2, /*checkpoint_on_close=*/false);
  open_capped(f, 4);
  auto results = [&](const std::vector<wire::transfer>& ts) { return results_of(f, ts); };
  using R = std::vector<result>;
  const result ok = result::ok, full = result::transfers_full;
  const auto first = make_transfer(1, 1, 2, 10, tf::linked), second = make_transfer(2, 2, 3, 10);
  EXPECT_EQ(results({first, second, make_transfer(3, 3, 4, 10), make_transfer(4, 4, 1, 10)}), (R{ok, ok, ok, ok}));
  EXPECT_EQ(f.e().stats().transfers, 4u) << "full";
  EXPECT_EQ(results({first, second}), (R{ok, ok})) << "a repeated chain needs no room";
  // The first link a repeat, the second new: the new one alone is refused for room.
  EXPECT_EQ(results({first, make_transfer(5, 2, 3, 10)}), (R{ok, full}));
  // A new link with no amount: its own code, the chain's first failure (the link after
  // it fails with the chain).
  EXPECT_EQ(results({make_transfer(6, 1, 2, 0, tf::linked), make_transfer(7, 2, 3, 10)}),
            (R{result::amount_must_not_be_zero, result::linked_event_failed}));
  EXPECT_EQ(f.e().stats().transfers, 4u) << "nothing recorded";
  const std::vector<wire::id128> ids{{5, 0}, {6, 0}, {7, 0}};
  EXPECT_EQ(f.e().lookup_transfers(ids).results,
            (R{result::transfer_not_found, result::transfer_not_found, result::transfer_not_found}));
  EXPECT_TRUE(f.e().check_balances().balanced);
}

// Records of transfer batches from version 24 carry the transfers_max they were decided
// by, after their pending_max: older ones replay without a limit, newer ones by theirs,
// and one without it, or with 0, refuses the start by name.
TEST(ledger_log, transfers_replay_by_the_transfers_capacity_logged_with_them) {
  const auto kind_accounts = uint16_t(actors::op_kind::create_accounts);
  const auto kind_transfers = uint16_t(actors::op_kind::create_transfers);
  const std::vector<wire::transfer> transfers{make_transfer(1, 1, 2, 5), make_transfer(2, 2, 1, 5)};
  auto with = [](std::vector<uint64_t> capacities, std::vector<uint8_t> ops) {
    std::vector<uint8_t> body(capacities.size() * sizeof(uint64_t));
    if (!capacities.empty()) std::memcpy(body.data(), capacities.data(), body.size());
    body.insert(body.end(), ops.begin(), ops.end());
    return body;
  };
  const auto accounts = with({100}, ops_bytes(std::vector{make_account(1), make_account(2)}));
  auto replayed = [&](uint16_t version, std::vector<uint8_t> body) {
    temp_dir dir;
    write_batch_records(dir.path(), {{16, kind_accounts, 2, accounts}, {version, kind_transfers, 2, std::move(body)}});
    auto cfg = test_config(dir.path(), 1);
    cfg.transfers_max = 1;
    std::string err;
    auto e = engine::engine::open(cfg, &err);
    EXPECT_TRUE(e) << err;
    return e ? e->lookup_transfers({{1, 0}, {2, 0}}).results : std::vector<result>{};
  };
  const result ok = result::ok;
  EXPECT_EQ(replayed(23, with({100}, ops_bytes(transfers))), (std::vector<result>{ok, ok}));  // no limit then
  EXPECT_EQ(replayed(24, with({100, 1}, ops_bytes(transfers))), (std::vector<result>{ok, result::transfer_not_found}));
  EXPECT_EQ(replayed(24, with({100, 2}, ops_bytes(transfers))), (std::vector<result>{ok, ok}));
  auto refused = [&](std::vector<uint8_t> body, uint32_t count, const char* why) {
    temp_dir dir;
    write_batch_records(dir.path(), {{16, kind_accounts, 2, accounts}, {24, kind_transfers, count, std::move(body)}});
    std::string err;
    EXPECT_FALSE(engine::engine::open(test_config(dir.path(), 1), &err));
    EXPECT_NE(err.find(why), std::string::npos) << err;
  };
  refused(with({100, 0}, ops_bytes(transfers)), 2, "with transfers capacity 0");
  refused(with({100, 1ull << 40}, ops_bytes(transfers)), 2, "with transfers capacity 1099511627776 (1..1099511627774)");
  refused(with({100}, {}), 0, "shorter than its transfers capacity");
  refused(with({100}, ops_bytes(transfers)), 2, "malformed batch record (kind 2");  // no transfers capacity
}

TEST_P(ledger, batch_limits) {
  std::vector<wire::transfer> big(engine::batch_ops_max + 1, make_transfer(1, 1, 2, 1));
  EXPECT_EQ(e().create_transfers(big).st, engine::status::batch_too_large);
  auto r = e().create_transfers({});
  EXPECT_EQ(r.st, engine::status::ok);
  EXPECT_TRUE(r.results.empty());
}

// Records go to LMDB in steps of `transfers_flush_step` executed records (by default a
// 32nd of the window), not all at once when the window runs short; a step above half
// the window is refused.
TEST(ledger_window, records_flush_in_steps) {
  for (const uint64_t step : {uint64_t(0), uint64_t(4096)}) {
    temp_dir dir;
    auto cfg = test_config(dir.path());
    cfg.transfers_resident_max = 1 << 14;
    cfg.transfers_flush_step = step;
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    create_accounts(*e, 64);
    // 1,000 transfers in batches of 100: past the default step (512), short of 4,096.
    for (uint64_t base = 1; base <= 1000; base += 100) {
      std::vector<wire::transfer> b;
      for (uint64_t i = base; i < base + 100; ++i) b.push_back(make_transfer(i, 1 + i % 64, 1 + (i + 5) % 64, 1));
      for (auto x : e->create_transfers(b).results) ASSERT_EQ(x, result::ok);
    }
    if (step == 0) {
      // The flush runs on the checkpoint thread: it starts once a batch after the
      // 512th record is sequenced, and covers what had executed by then.
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (e->stats().transfers_in_snapshot < 512 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      EXPECT_GE(e->stats().transfers_in_snapshot, 512u);
      EXPECT_LE(e->stats().transfers_in_snapshot, 1000u);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      EXPECT_EQ(e->stats().transfers_in_snapshot, 0u) << "no flush before 4,096 records";
    }
  }
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.transfers_resident_max = 1 << 14;
  cfg.transfers_flush_step = (1 << 13) + 1;
  std::string err;
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_EQ(err, "config: transfers_flush_step must be at most half of transfers_resident_max (0: a 32nd of it)");
}

// A window of 16,384 resident records: most of the history below is served from LMDB.
TEST(ledger_window, history_outlives_the_resident_window) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.transfers_resident_max = 1 << 14;
  std::string err;
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  std::vector<wire::account> accts;
  for (uint64_t id = 1; id <= 64; ++id) accts.push_back(make_account(id));
  ASSERT_EQ(e->create_accounts(accts).results.at(0), result::ok);
  // Pending transfers first (ids 1..100), then 60,000 singles, several windows' worth.
  std::vector<wire::transfer> first;
  for (uint64_t i = 1; i <= 100; ++i) first.push_back(make_transfer(i, 1 + i % 64, 1 + (i + 1) % 64, 5, tf::pending));
  ASSERT_EQ(e->create_transfers(first).results.at(0), result::ok);
  // Transfers ids 1000..60999 in batches of 4,000; `extra` is added to every amount.
  auto send_singles = [&](uint64_t extra, result expect) {
    for (uint64_t base = 1000; base < 61000; base += 4000) {
      std::vector<wire::transfer> b;
      for (uint64_t i = base; i < base + 4000; ++i)
        b.push_back(make_transfer(i, 1 + i % 64, 1 + (i * 7 + 3) % 64, 1 + i % 9 + extra));
      for (auto& t : b)
        if (t.debit_account_id == t.credit_account_id) t.credit_account_id = 1 + t.credit_account_id % 64;
      // Every other batch counting down: those ids go to the id index's table (and grow
      // it), the others' to ranges (engine/id_index.hpp).
      if (base / 4000 % 2 == 1) std::reverse(b.begin(), b.end());
      for (auto x : e->create_transfers(b).results) ASSERT_EQ(x, expect);
    }
  };
  send_singles(0, result::ok);
  EXPECT_GE(e->stats().transfers_in_snapshot, 60000u - 16384u);
  // Every id survives the id index's growths (built from its hash log on a builder
  // thread), in the table or in a range: each one repeated with a different amount is
  // recognised.
  // (How many depends on how far inserts got while the builder thread ran: 4 or 5 seen.)
  EXPECT_GE(e->stats().id_index_growths, 2u);
  send_singles(99, result::exists_with_different_fields);
  // Old ids are still recognised: same fields -> original outcome, else a distinct error.
  auto old = make_transfer(1000, 1 + 1000 % 64, 1 + (1000 * 7 + 3) % 64, 1 + 1000 % 9);
  EXPECT_EQ(e->create_transfers({old}).results.at(0), result::ok);
  old.amount += 1;
  EXPECT_EQ(e->create_transfers({old}).results.at(0), result::exists_with_different_fields);
  // Look-ups of evicted records come from LMDB with their timestamps and outcomes.
  auto lk = e->lookup_transfers({{1000, 0}, {5, 0}, {60999, 0}});
  EXPECT_EQ(lk.results.at(0), result::ok);
  EXPECT_EQ(lk.transfers.at(0).t.amount, 1 + 1000 % 9);
  EXPECT_NE(lk.transfers.at(0).t.timestamp, 0u);
  EXPECT_EQ(lk.transfers.at(1).t.flags, tf::pending);
  EXPECT_EQ(lk.results.at(2), result::ok);
  // Posting a pending transfer recorded long ago.
  auto post = make_transfer(70000, 0, 0, 0, tf::post_pending);
  post.pending_id = {5, 0};
  EXPECT_EQ(e->create_transfers({post}).results.at(0), result::ok);
  post.id = {70001, 0};
  EXPECT_EQ(e->create_transfers({post}).results.at(0), result::pending_transfer_already_posted);
  auto not_pending = make_transfer(70002, 0, 0, 0, tf::void_pending);
  not_pending.pending_id = {2000, 0};
  EXPECT_EQ(e->create_transfers({not_pending}).results.at(0), result::pending_transfer_not_pending);
  EXPECT_TRUE(e->check_balances().balanced);
  // And all of it across a restart.
  e.reset();
  e = engine::engine::open(cfg, &err);
  ASSERT_TRUE(e) << err;
  // The loaded index's figures are there before any batch (3/4 of its power-of-two
  // table, above the 60,103 ids it holds).
  const auto st = e->stats();
  EXPECT_GT(st.id_index_next_growth_at, st.transfers);
  EXPECT_EQ(st.id_index_next_growth_at % 3, 0u);
  EXPECT_TRUE(std::has_single_bit(st.id_index_next_growth_at / 3 * 4)) << st.id_index_next_growth_at;
  EXPECT_GT(e->stats().memory_bytes_id_index, 0u);
  EXPECT_EQ(e->lookup_transfers({{1000, 0}}).results.at(0), result::ok);
  EXPECT_EQ(e->create_transfers({post}).results.at(0), result::pending_transfer_already_posted);
  old.amount -= 1;
  EXPECT_EQ(e->create_transfers({old}).results.at(0), result::ok);
  // An account's history reaches back past the window, through LMDB.
  uint64_t count = 0, cursor = 0;
  uint64_t expect_credits = 0;
  for (int page = 0; page < 1000; ++page) {
    auto r = e->lookup_account_transfers({{7, cursor, 1024}});
    ASSERT_EQ(r.pages.at(0).result, result::ok);
    for (const auto& rec : r.pages[0].records) {
      ++count;
      if (rec.t.credit_account_id == 7 && !(rec.t.flags & tf::pending)) expect_credits += rec.t.amount;
      if ((rec.t.flags & tf::post_pending) && rec.owner_account_id != 7) expect_credits += 5;
    }
    cursor = r.pages[0].next_cursor;
    if (cursor == 0) break;
  }
  EXPECT_GT(count, 900u);  // ~61,000 transfers over 64 accounts, two sides each
  const auto a7 = e->lookup_accounts({7}).accounts.at(0);
  EXPECT_EQ(a7.credits_posted, expect_credits);
}

// Checkpoints taken while transfers flow: a records flush may run past a checkpoint's cut
// before the checkpoint is written (its shards still copying accounts). The checkpoint
// must not move the flushed position back (the next flush would append rows that exist).
TEST(ledger_window, checkpoints_racing_records_flushes) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.transfers_resident_max = 1 << 14;  // a flush every 512 records
  std::string err;
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 60000);  // many dirty accounts: each cut takes a while to copy
  std::atomic<bool> done{false};
  std::atomic<int> checkpoints{0};
  std::thread ck([&] {
    std::string cerr;
    while (!done.load()) {
      if (!e->checkpoint(&cerr)) {
        ADD_FAILURE() << cerr;
        return;
      }
      ++checkpoints;
    }
  });
  // Four callers keep batches flowing, so cuts complete while later batches execute.
  std::vector<std::thread> callers;
  for (uint64_t c = 0; c < 4; ++c)
    callers.emplace_back([&, c] {
      for (uint64_t round = 0; round < 10; ++round) {
        std::vector<wire::transfer> b;
        for (uint64_t i = 0; i < 4000; ++i) {
          const uint64_t id = 1 + (c * 10 + round) * 4000 + i;
          b.push_back(make_transfer(id, 1 + id % 60000, 1 + (id * 7 + 1) % 60000, 1));
          if (b.back().debit_account_id == b.back().credit_account_id)
            b.back().credit_account_id = 1 + b.back().credit_account_id % 60000;
        }
        for (auto x : e->create_transfers(b).results) ASSERT_EQ(x, result::ok);
      }
    });
  for (auto& t : callers) t.join();
  done = true;
  ck.join();
  EXPECT_GT(checkpoints.load(), 1);
  EXPECT_GE(e->stats().transfers_in_snapshot, 160000u - 16384u);
  EXPECT_EQ(e->lookup_transfers({{7, 0}}).transfers.at(0).t.amount, 1u);  // from LMDB
  e.reset();
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->lookup_transfers({{159999, 0}}).results.at(0), result::ok);
  EXPECT_TRUE(e->check_balances().balanced);
}

// Shards run only the transfer batches they have a part in, so batches finish out of
// dispatch order. Records are flushed to LMDB only below the point where every earlier
// batch has finished: single-transfer batches alternating between the two shards'
// accounts, many callers, a window small enough to flush often.
TEST(ledger_window, batches_finishing_out_of_order_flush_only_final_records) {
  temp_dir dir;
  auto cfg = test_config(dir.path(), 2);
  cfg.transfers_resident_max = 1 << 14;  // a flush every 512 records
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 400);
  std::vector<uint64_t> on[2];
  for (uint64_t id = 1; id <= 400; ++id) on[actors::shard_of(id, 2)].push_back(id);
  ASSERT_GE(on[0].size(), 2u);
  ASSERT_GE(on[1].size(), 2u);
  constexpr uint64_t callers = 8, per_caller = 5000;
  std::vector<std::thread> ts;
  for (uint64_t c = 0; c < callers; ++c)
    ts.emplace_back([&, c] {
      for (uint64_t i = 0; i < per_caller; ++i) {
        const auto& acc = on[(c + i) % 2];  // both accounts on one shard
        const uint64_t id = 1 + c * per_caller + i;
        const uint64_t dr = acc[id % acc.size()], cr = acc[(id + 1) % acc.size()];
        ASSERT_EQ(e->create_transfers({make_transfer(id, dr, cr, 1)}).results.at(0), result::ok);
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_GE(e->stats().transfers_in_snapshot, callers * per_caller - (1u << 14));
  for (uint64_t id : {uint64_t(1), uint64_t(777), callers * per_caller})
    EXPECT_EQ(e->lookup_transfers({{id, 0}}).transfers.at(0).result, uint32_t(result::ok)) << id;
  e.reset();
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->lookup_transfers({{3, 0}}).transfers.at(0).result, uint32_t(result::ok));
  EXPECT_TRUE(e->check_balances().balanced);
}

// A pending transfer whose accounts live on two shards has a copy on each, and shards
// expire lazily (when a batch reaches them). A checkpoint must still hold both copies in
// the same state: here only the debit side's shard sees a batch after the expiry, then
// a checkpoint and a restart follow, with no look-up in between (a look-up would make
// both shards catch up). No ticks: they would reach both shards.
TEST(ledger_expiry, checkpoint_after_one_side_expired_a_cross_shard_pending_transfer) {
  temp_dir dir;
  auto cfg = test_config(dir.path(), 2);
  cfg.tick_ms = 60'000;
  std::atomic<uint64_t> clock{1'700'000'000'000'000'000ull};
  cfg.clock = [&clock] { return clock.load(); };
  std::vector<uint64_t> on[2];
  for (uint64_t id = 1; on[0].size() < 2 || on[1].empty(); ++id) on[actors::shard_of(id, 2)].push_back(id);
  const uint64_t a = on[0][0], a2 = on[0][1], c = on[1][0];
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  for (auto x : e->create_accounts({make_account(a), make_account(a2), make_account(c)}).results)
    ASSERT_EQ(x, result::ok);
  auto p = make_transfer(100, a, c, 10, tf::pending);
  p.timeout_s = 1;
  ASSERT_EQ(e->create_transfers({p}).results.at(0), result::ok);
  clock += 5'000'000'000ull;
  ASSERT_EQ(e->create_transfers({make_transfer(101, a2, a, 1)}).results.at(0), result::ok);  // shard 0 only
  std::string err;
  ASSERT_TRUE(e->checkpoint(&err)) << err;
  e.reset();
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  auto post = make_transfer(102, 0, 0, 0, tf::post_pending);
  post.pending_id = {100, 0};
  EXPECT_EQ(e->create_transfers({post}).results.at(0), result::pending_transfer_expired);
  const auto accts = e->lookup_accounts({a, c});
  EXPECT_EQ(accts.accounts.at(0).debits_pending, 0u);
  EXPECT_EQ(accts.accounts.at(1).credits_pending, 0u);
  EXPECT_EQ(accts.accounts.at(0).credits_posted, 1u);
  EXPECT_TRUE(e->check_balances().balanced) << e->check_balances().detail;
}

// The engine clock's source (engine/engine_clock.hpp): a step of the wall clock past
// step_max is not followed, either way; the clock runs on by the steady clock, and
// follows the wall clock again once it is back within step_max.
TEST(engine_clock, a_step_of_the_wall_clock_is_not_followed) {
  constexpr uint64_t s = 1'000'000'000ull, day = 86'400 * s;
  engine::engine_clock c(s);
  uint64_t wall = 1'700'000'000 * s, steady = 5 * s;
  EXPECT_EQ(c.read(wall, steady), wall);
  wall += 500'000'000, steady += 400'000'000;  // within a second: followed
  EXPECT_EQ(c.read(wall, steady), wall);
  const uint64_t at = wall;
  wall += day, steady += 2 * s;  // a day forward in two seconds
  EXPECT_EQ(c.read(wall, steady), at + 2 * s);
  EXPECT_EQ(c.steps(), 1u);
  EXPECT_EQ(c.skew_ns(), int64_t(day - 2 * s));
  wall += s, steady += s;
  EXPECT_EQ(c.read(wall, steady), at + 3 * s);
  EXPECT_EQ(c.steps(), 1u);  // the same step
  wall = at + 3 * s + 300'000'000, steady += 0;  // set right again: followed
  EXPECT_EQ(c.read(wall, steady), wall);
  EXPECT_EQ(c.skew_ns(), 0);
  const uint64_t back = wall;
  wall -= 2 * day, steady += s;  // two days back: not followed
  EXPECT_EQ(c.read(wall, steady), back + s);
  EXPECT_EQ(c.steps(), 2u);
  EXPECT_LT(c.skew_ns(), 0);
  // A start: held at or past the log's last time, the wall clock behind it.
  engine::engine_clock d(s);
  d.hold_at_least(back);
  EXPECT_EQ(d.read(back - day, 100), back);
  EXPECT_EQ(d.steps(), 1u);
  EXPECT_EQ(d.read(back - day + 5 * s, 100 + 5 * s), back + 5 * s);
}

// In the engine: a pending transfer's deadline is not brought forward by a step of the
// wall clock (a day ahead: every hold would expire at once), and a start with the wall
// clock behind the log's last time still expires holds on time (the engine clock went
// on from the log's time; ticks compared deadlines with the wall clock, and none came).
TEST(ledger_expiry, a_step_of_the_wall_clock_moves_no_deadline) {
  constexpr uint64_t s = 1'000'000'000ull, day = 86'400 * s;
  temp_dir dir;
  auto cfg = test_config(dir.path(), 2);
  cfg.tick_ms = 5;
  std::atomic<uint64_t> wall{1'700'000'000 * s}, steady{1'000 * s};
  cfg.clock = [&wall] { return wall.load(); };
  cfg.steady_clock = [&steady] { return steady.load(); };
  const auto pending_of = [](engine::engine& e, uint64_t account) {
    return e.lookup_accounts({account}).accounts.at(0).debits_pending;
  };
  // Ticks come every 5 ms when a deadline has passed: waits up to two seconds for one.
  const auto expired_within = [&](engine::engine& e, uint64_t account) {
    for (int i = 0; i < 400 && pending_of(e, account) != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return pending_of(e, account) == 0;
  };
  {
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    for (auto x : e->create_accounts({make_account(1), make_account(2)}).results) ASSERT_EQ(x, result::ok);
    auto p = make_transfer(100, 1, 2, 10, tf::pending);
    p.timeout_s = 60;
    ASSERT_EQ(e->create_transfers({p}).results.at(0), result::ok);
    wall += day;  // an operator's `date -s`: a day ahead in a moment
    steady += s;
    ASSERT_EQ(e->create_transfers({make_transfer(101, 2, 1, 1)}).results.at(0), result::ok);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // forty ticks' worth
    EXPECT_EQ(pending_of(*e, 1), 10u) << "a step of the wall clock expired a hold 59 s early";
    const auto st = e->stats();
    EXPECT_EQ(st.clock_steps, 1u);
    EXPECT_GT(st.clock_skew_ns, int64_t(day - 2 * s));
    steady += 60 * s;  // its minute, by the steady clock
    EXPECT_TRUE(expired_within(*e, 1));
  }
  // The log's last time is now about a day past the wall clock set right again.
  wall -= day;
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  auto p = make_transfer(102, 1, 2, 7, tf::pending);
  p.timeout_s = 1;
  ASSERT_EQ(e->create_transfers({p}).results.at(0), result::ok);
  EXPECT_EQ(pending_of(*e, 1), 7u);
  steady += 2 * s, wall += 2 * s;
  EXPECT_TRUE(expired_within(*e, 1)) << "a hold made with the wall clock behind the log never expired";
  EXPECT_EQ(e->stats().clock_steps, 1u);
  EXPECT_TRUE(e->check_balances().balanced);
}

// After a failed commit the engine keeps serving reads. The failed group's records
// never become final, so reads must not move the point below which records are final
// (and get flushed) past them: a window small enough that one failed 8,192-transfer
// batch is more than 1/32 of it, then reads.
TEST(ledger_window, reads_after_a_failed_commit_leave_unfinished_records_unflushed) {
  temp_dir dir;
  auto cfg = test_config(dir.path(), 2);
  cfg.transfers_resident_max = 1 << 14;  // a flush once 512 records are final
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 100);
  storage::failure_probes::instance().fsync_errno = EIO;
  std::vector<wire::transfer> b;
  for (uint64_t i = 0; i < 8192; ++i) b.push_back(make_transfer(1 + i, 1 + i % 50, 51 + i % 50, 1));
  EXPECT_EQ(e->create_transfers(b).st, engine::status::engine_failed);
  for (int i = 0; i < 20; ++i) {
    auto r = e->lookup_accounts({1, 51});
    ASSERT_EQ(r.st, engine::status::ok);
    EXPECT_EQ(r.accounts.at(0).debits_posted, 0u);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(e->stats().transfers_in_snapshot, 0u);
}

// Transfers [first, first + n) between accounts 1..50 and 51..100, one unit each.
std::vector<wire::transfer> unit_transfers(uint64_t first, uint64_t n) {
  std::vector<wire::transfer> b;
  for (uint64_t i = 0; i < n; ++i) b.push_back(make_transfer(first + i, 1 + i % 50, 51 + i % 50, 1));
  return b;
}

// A window of 16,384 records (two full batches), flushed every 1,024.
engine::config small_window(const std::string& dir) {
  auto cfg = test_config(dir, 2);
  cfg.transfers_resident_max = 1 << 14;
  cfg.transfers_flush_step = 1024;
  return cfg;
}

// Records flushes fail with MDB_MAP_FULL `n` times while it lives.
struct failing_row_commits {
  explicit failing_row_commits(int n) {
    storage::failure_probes::instance().rows_commit_errno = MDB_MAP_FULL;
    storage::failure_probes::instance().rows_commit_failures = n;
  }
  ~failing_row_commits() { storage::failure_probes::instance().rows_commit_failures = 0; }
};

uint64_t posted_debits(engine::engine& e, uint64_t from, uint64_t to) {
  std::vector<uint64_t> ids;
  for (uint64_t a = from; a <= to; ++a) ids.push_back(a);
  uint64_t sum = 0;
  for (const auto& a : e.lookup_accounts(ids).accounts) sum += a.debits_posted;
  return sum;
}

// A records flush that fails (the snapshot refused its commit) is tried again after a
// pause, live; writes go on meanwhile and nothing is lost.
TEST(ledger_window, a_failed_records_flush_is_tried_again) {
  temp_dir dir;
  const auto cfg = small_window(dir.path());
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 100);
  failing_row_commits failing(3);
  auto r = e->create_transfers(unit_transfers(1, 4096));
  ASSERT_EQ(r.st, engine::status::ok);
  // Tries after 250, 500 and 1,000 ms fail or succeed; the fourth finds the probe spent.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (e->stats().transfers_in_snapshot < 4096 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto st = e->stats();
  EXPECT_EQ(storage::failure_probes::instance().rows_commit_failures.load(), 0);
  EXPECT_GE(st.transfers_in_snapshot, 4096u);
  EXPECT_EQ(st.records_flush_failures, 3u);
  EXPECT_FALSE(st.writes_refused);
  ASSERT_EQ(e->create_transfers(unit_transfers(5000, 10)).st, engine::status::ok);
  e->close();
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(posted_debits(*e, 1, 50), 4106u);
  EXPECT_TRUE(e->check_balances().balanced) << e->check_balances().detail;
}

// Flushes failing until the resident window is full: the engine refuses writes until
// restart (before, an assertion ended the process), keeps serving reads, and the log
// brings back every acknowledged transfer at the next start.
TEST(ledger_window, records_flushes_failing_until_the_window_is_full_refuse_writes) {
  temp_dir dir;
  const auto cfg = small_window(dir.path());
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 100);
  auto failing = std::make_unique<failing_row_commits>(1 << 30);
  ASSERT_EQ(e->create_transfers(unit_transfers(1, 8192)).st, engine::status::ok);
  ASSERT_EQ(e->create_transfers(unit_transfers(8193, 8192)).st, engine::status::ok);  // the window is full
  EXPECT_EQ(e->create_transfers(unit_transfers(20000, 8192)).st, engine::status::engine_failed);
  EXPECT_EQ(e->create_transfers(unit_transfers(30000, 1)).st, engine::status::engine_failed);
  EXPECT_EQ(e->create_accounts({make_account(500)}).st, engine::status::engine_failed);
  const auto st = e->stats();
  EXPECT_TRUE(st.writes_refused);
  EXPECT_NE(st.writes_refused_why.find("the window of resident records is full"), std::string::npos)
      << st.writes_refused_why;
  EXPECT_GE(st.records_flush_failures, 2u);  // the last one tried when the window was full
  EXPECT_EQ(st.transfers_in_snapshot, 0u);
  // Reads go on: the acknowledged transfers, and none of the refused batch.
  EXPECT_EQ(posted_debits(*e, 1, 50), 16384u);
  auto lk = e->lookup_transfers({{1, 0}, {16384, 0}, {20000, 0}});
  EXPECT_EQ(lk.results.at(0), result::ok);
  EXPECT_EQ(lk.results.at(1), result::ok);
  EXPECT_EQ(lk.results.at(2), result::transfer_not_found);
  failing.reset();
  e->close();
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(posted_debits(*e, 1, 50), 16384u);
  EXPECT_EQ(e->lookup_transfers({{20000, 0}}).results.at(0), result::transfer_not_found);
  EXPECT_EQ(e->create_transfers(unit_transfers(20000, 100)).st, engine::status::ok);
  EXPECT_EQ(posted_debits(*e, 1, 50), 16484u);
  EXPECT_TRUE(e->check_balances().balanced) << e->check_balances().detail;
}

// The log kept on the disk has a limit (wal_kept_max_mib). Past half of it a checkpoint is
// due with no interval set; past it the sequencer waits for one, so writes that outrun the
// checkpoints are slowed, never refused. With checkpoints failing for good the log is still
// over the limit after the one taken for it: writes are refused until restart (the refused
// batch changing nothing) and reads go on. A start replays it all, and the first write
// past the limit takes a checkpoint that drops it.
TEST(ledger_window, a_log_kept_past_its_limit_waits_for_a_checkpoint_and_stops_writes_if_it_fails) {
  temp_dir dir;
  const auto cfg = log_limit_config(dir.path());  // checkpoints only on demand
  auto bad = cfg;
  bad.wal_kept_max_mib = 7;
  EXPECT_NE(bad.validate().find("wal_kept_max_mib must be at least four log segments (8 MiB"), std::string::npos)
      << bad.validate();
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 100);
  std::string err;
  ASSERT_TRUE(e->checkpoint(&err)) << err;
  constexpr uint64_t limit = 8u << 20, segment = 2u << 20;
  EXPECT_EQ(e->stats().log_kept_max_bytes, limit);
  uint64_t next = 1;  // the next transfer's id (each moves 1 from accounts 1..50)
  // Past half the limit a checkpoint is taken, and the segments it covers go.
  uint64_t taken = e->stats().checkpoints, kept = 0;
  for (int i = 0; i < 400 && kept <= limit / 2; ++i) {
    ASSERT_EQ(bulky_batch(*e, &next), engine::status::ok);
    kept = e->stats().log_kept_bytes;
  }
  ASSERT_GT(kept, limit / 2);
  ASSERT_TRUE(eventually([&] { return e->stats().checkpoints > taken && e->stats().log_kept_bytes <= limit / 2; }))
      << e->stats().log_kept_bytes;
  // About three limits' worth at once: the sequencer waits for checkpoints, none refused.
  taken = e->stats().checkpoints;
  uint64_t kept_max = 0;
  for (int i = 0; i < 250; ++i) {
    ASSERT_EQ(bulky_batch(*e, &next), engine::status::ok) << e->stats().writes_refused_why;
    kept_max = std::max(kept_max, e->stats().log_kept_bytes);
  }
  EXPECT_GE(e->stats().checkpoints, taken + 2);
  EXPECT_LE(kept_max, limit + segment);  // checked before each group: one more segment at most
  EXPECT_EQ(e->stats().checkpoint_failures, 0u);

  // Checkpoints fail from here: writes up to the limit, then refused until restart.
  failing_checkpoints failing(1 << 30);
  ASSERT_EQ(write_until_refused(*e, &next), engine::status::engine_failed);
  const auto s = e->stats();
  EXPECT_TRUE(s.writes_refused);
  EXPECT_NE(s.writes_refused_why.find("over its limit of 8 MiB (--wal-kept-max-mib), and the 3 checkpoints taken for "
                                      "it failed, the last: snapshot: commit: Input/output error"),
            std::string::npos)
      << s.writes_refused_why;
  EXPECT_GT(s.log_kept_bytes, limit);
  EXPECT_GE(s.checkpoint_failures, 1u);
  // The refused batch changed nothing; reads go on.
  const uint64_t acked = next - 1;
  EXPECT_EQ(posted_debits(*e, 1, 50), acked);
  auto lk = e->lookup_transfers({{next, 0}, {acked, 0}});
  ASSERT_EQ(lk.st, engine::status::ok);
  EXPECT_EQ(lk.results.at(0), result::transfer_not_found);
  EXPECT_EQ(lk.results.at(1), result::ok);
  EXPECT_EQ(e->create_accounts({make_account(500)}).st, engine::status::engine_failed);
  // Writes refused: no checkpoint at close, the next start replays the whole log; the
  // close says why it was not clean (mesobd exits 1).
  const std::string why = e->close();
  EXPECT_EQ(why.rfind("writes were refused until restart (", 0), 0u) << why;
  EXPECT_NE(why.find("over its limit of 8 MiB"), std::string::npos) << why;
  EXPECT_EQ(e->close(), why) << "the same when asked again";

  storage::failure_probes::instance().snapshot_commit_failures = 0;
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(posted_debits(*e, 1, 50), acked);
  EXPECT_GT(e->stats().log_kept_bytes, limit);
  taken = e->stats().checkpoints;
  ASSERT_EQ(bulky_batch(*e, &next), engine::status::ok);
  EXPECT_GT(e->stats().checkpoints, taken);
  EXPECT_LE(e->stats().log_kept_bytes, limit);
  EXPECT_FALSE(e->stats().writes_refused);
  EXPECT_TRUE(e->check_balances().balanced) << e->check_balances().detail;

  // A start with smaller segments than the last one written (8 MiB, by a start with
  // --wal-segment-mib 8): that segment, which the snapshot covers, stays until this
  // start's first group is durable, over the limit with the new one for a moment. Writes
  // go on, and no checkpoint is taken for it (none could free more).
  e->close();
  auto larger = cfg;
  larger.wal_segment_mib = 8;
  larger.wal_kept_max_mib = 32;
  e = open_engine(larger);
  ASSERT_TRUE(e);
  ASSERT_EQ(bulky_batch(*e, &next), engine::status::ok);
  e->close();  // its checkpoint covers the whole log; the 8 MiB segment stays, the last
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_GT(e->stats().log_kept_bytes, limit);
  taken = e->stats().checkpoints;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(bulky_batch(*e, &next), engine::status::ok) << e->stats().writes_refused_why;
  EXPECT_EQ(e->stats().checkpoints, taken);
  EXPECT_TRUE(eventually([&] { return e->stats().log_kept_bytes <= limit; })) << e->stats().log_kept_bytes;
  EXPECT_EQ(posted_debits(*e, 1, 50), next - 1);
}

// A full window does not refuse writes on a failure that a try now would mend: the one
// failed flush is tried again at once instead of at its pause's end.
TEST(ledger_window, a_full_window_tries_a_failed_flush_again_before_refusing_writes) {
  temp_dir dir;
  const auto cfg = small_window(dir.path());
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 100);
  failing_row_commits failing(1);
  for (uint64_t k = 0; k < 4; ++k)
    ASSERT_EQ(e->create_transfers(unit_transfers(1 + k * 8192, 8192)).st, engine::status::ok) << k;
  const auto st = e->stats();
  EXPECT_EQ(st.records_flush_failures, 1u);
  EXPECT_FALSE(st.writes_refused);
  EXPECT_EQ(posted_debits(*e, 1, 50), 4u * 8192);
}

// The log fails while the sequencer waits for room in the window: the batches it waits
// for never execute, so the wait must end (before, the sequencer hung: no read was
// answered and close() never returned). The engine's clock holds the sequencer while
// three 8,192-transfer batches queue, so that it takes them in one pass: the first two
// fill the window and the third waits for them to commit.
TEST(ledger_window, a_log_failure_while_waiting_for_room_refuses_writes) {
  temp_dir dir;
  auto cfg = test_config(dir.path(), 2);
  cfg.transfers_resident_max = 1 << 14;
  test::sequencer_gate gate;
  cfg.clock = gate.clock();
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 100);
  ASSERT_TRUE(gate.hold()) << "the sequencer did not read the clock in 10 s";
  storage::failure_probes::instance().write_errno = EIO;
  std::vector<std::future<engine::reply>> answers;
  std::vector<std::shared_ptr<std::promise<engine::reply>>> promises;
  for (uint64_t k = 0; k < 3; ++k) {
    auto p = std::make_shared<std::promise<engine::reply>>();
    answers.push_back(p->get_future());
    engine::request q;
    q.transfers = unit_transfers(1 + k * 8192, 8192);
    e->submit(std::move(q), [p](engine::reply&& r) { p->set_value(std::move(r)); });
  }
  gate.release();
  for (auto& f : answers) {
    if (f.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      ADD_FAILURE() << "a batch was not answered in 30 s: the sequencer hangs";
      std::fflush(stdout);
      std::_Exit(1);  // the engine cannot be closed
    }
    EXPECT_EQ(f.get().st, engine::status::engine_failed);
  }
  EXPECT_TRUE(e->stats().writes_refused);
  EXPECT_EQ(e->create_transfers(unit_transfers(30000, 1)).st, engine::status::engine_failed);
  EXPECT_EQ(e->lookup_accounts({1}).st, engine::status::ok);
  EXPECT_EQ(e->lookup_transfers({{16385, 0}}).results.at(0), result::transfer_not_found);
  e->close();
  // The third batch was never logged; the first two may have reached the disk before the
  // failure was reported (engine_failed is an unknown outcome), whole or not at all.
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->lookup_transfers({{16385, 0}}).results.at(0), result::transfer_not_found);
  const uint64_t debits = posted_debits(*e, 1, 50);
  EXPECT_TRUE(debits == 0 || debits == 8192 || debits == 16384) << debits;
  EXPECT_TRUE(e->check_balances().balanced) << e->check_balances().detail;
}

// A caller that bounds what it has in flight itself (the server's network thread) does not
// wait for room in the engine's queue: with the queue full and the sequencer held, a
// submit that waits for space waits, one that does not returns at once, and both are
// answered once the sequencer goes on. Before, the network thread could wait there
// (other producers share the queue), stopping every session.
TEST(engine_queue, a_submit_that_does_not_wait_for_space_returns_with_the_queue_full) {
  temp_dir dir;
  auto cfg = test_config(dir.path(), 2);
  cfg.queue_requests_max = 2;
  test::sequencer_gate gate;
  cfg.clock = gate.clock();
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 4);
  ASSERT_TRUE(gate.hold()) << "the sequencer did not read the clock in 10 s";
  std::vector<std::future<engine::reply>> answers;
  auto submit = [&](bool wait) {
    auto p = std::make_shared<std::promise<engine::reply>>();
    answers.push_back(p->get_future());
    engine::request q;
    q.kind = actors::op_kind::lookup_accounts;
    q.account_ids = {1};
    e->submit(std::move(q), [p](engine::reply&& r) { p->set_value(std::move(r)); }, wait);
  };
  submit(true);
  submit(true);  // the queue is full
  auto waiting = std::async(std::launch::async, [&] {
    engine::request q;
    q.kind = actors::op_kind::lookup_accounts;
    q.account_ids = {2};
    return e->call(std::move(q));
  });
  EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout) << "it waits for room";
  auto not_waiting = std::async(std::launch::async, [&] { submit(false); });
  const bool returned = not_waiting.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  EXPECT_TRUE(returned) << "a submit that does not wait for space waited";
  gate.release();
  not_waiting.wait();
  EXPECT_EQ(waiting.get().st, engine::status::ok);
  for (auto& f : answers) {
    ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    const auto r = f.get();
    EXPECT_EQ(r.st, engine::status::ok);
    EXPECT_EQ(r.accounts.size(), 1u);
  }
}

// checkpoint() after close() answers at once (before, its caller waited for good).
TEST(ledger_window, a_checkpoint_asked_of_a_closed_engine_is_refused) {
  temp_dir dir;
  auto e = open_engine(test_config(dir.path(), 2));
  ASSERT_TRUE(e);
  create_accounts(*e, 10);
  e->close();
  auto asked = std::async(std::launch::async, [&] {
    std::string err;
    const bool ok = e->checkpoint(&err);
    return std::make_pair(ok, err);
  });
  if (asked.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "checkpoint() on a closed engine did not return in 10 s";
    std::fflush(stdout);
    std::_Exit(1);  // the waiting thread cannot be joined
  }
  const auto [ok, err] = asked.get();
  EXPECT_FALSE(ok);
  EXPECT_EQ(err, "the engine is closed");
}

// The snapshot's files held open by this process (LMDB's data and lock files).
static int snapshot_files_open(const std::string& data_dir) {
  int n = 0;
  const auto snap = std::filesystem::weakly_canonical(std::filesystem::path(data_dir) / "snapshot");
  for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(fd.path(), ec);
    if (!ec && target.parent_path() == snap) ++n;
  }
  return n;
}

// close() closes the snapshot store: LMDB must not have one environment open twice in a
// process, and an engine opened on the directory after close() (before the closed one
// is destroyed) would otherwise be the second (before, the store stayed open until
// destruction).
TEST(ledger_window, close_closes_the_snapshot_store) {
  temp_dir dir;
  auto cfg = test_config(dir.path(), 2);
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 10);
  EXPECT_GT(snapshot_files_open(dir.path()), 0);
  e->close();
  EXPECT_EQ(snapshot_files_open(dir.path()), 0);
  auto again = open_engine(cfg);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->recovery().accounts_loaded, 10u);
  EXPECT_GT(snapshot_files_open(dir.path()), 0);
  e.reset();  // the closed engine's destruction leaves the open one's store alone
  EXPECT_GT(snapshot_files_open(dir.path()), 0);
  EXPECT_EQ(again->create_accounts({make_account(1000)}).results.at(0), result::ok);
  again->close();
  EXPECT_EQ(snapshot_files_open(dir.path()), 0);
}

// One write transaction on a stopped engine's snapshot (rows only), for damaging it.
using snapshot_edit = std::function<void(storage::snapshot_store&, storage::snapshot_store::writer&)>;
static void edit_snapshot(const std::string& snap_dir, const snapshot_edit& f) {
  std::string err;
  auto s = storage::snapshot_store::open(snap_dir, 1ull << 30, &err);
  ASSERT_TRUE(s) << err;
  auto w = s->begin(&err);
  ASSERT_TRUE(w) << err;
  f(*s, *w);
  ASSERT_TRUE(w->commit_without_meta()) << w->error();
}
static std::span<const uint8_t> as_span(const std::string& b) {
  return {reinterpret_cast<const uint8_t*>(b.data()), b.size()};
}

// LMDB keeps no checksums: a damaged account row must stop the start, not be served.
// Money that does not balance per currency, or a field no ledger operation makes, is
// refused, naming it, and the engine starts again once the row is whole.
TEST(ledger_snapshot, damaged_account_rows_refuse_to_start) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 8);
  ASSERT_EQ(e->create_transfers({make_transfer(1, 1, 2, 500), make_transfer(2, 3, 4, 70, wire::transfer_flags::pending)})
                .results,
            (std::vector<result>{result::ok, result::ok}));
  e.reset();  // closes with a snapshot
  const std::string snap_dir = dir.path() + "/snapshot";
  std::string row;
  {
    std::string err;
    auto s = storage::snapshot_store::open(snap_dir, 1ull << 30, &err);
    ASSERT_TRUE(s) << err;
    ASSERT_TRUE(s->get(storage::table::accounts, 2, &row, &err)) << err;
  }
  ASSERT_EQ(row.size(), sizeof(actors::stored_account));
  auto with = [&](auto change) {
    actors::stored_account sa;
    std::memcpy(&sa, row.data(), sizeof sa);
    change(sa.a);
    edit_snapshot(snap_dir, [&](auto&, auto& w) {
      ASSERT_TRUE(w.put(storage::table::accounts, 2, {reinterpret_cast<const uint8_t*>(&sa), sizeof sa}));
    });
  };
  std::string err;
  with([](wire::account& a) { a.credits_posted += 1; });
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("money does not balance in ETB: debits posted 500, credits posted 501"), std::string::npos)
      << err;
  with([](wire::account& a) { a.credits_pending += 1; });
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("debits pending 70, credits pending 71"), std::string::npos) << err;
  with([](wire::account& a) { a.kind = wire::account_kind(0); });
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("the row of account 2 is damaged"), std::string::npos) << err;
  with([](wire::account& a) { a.flags = 0x40; });
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("the row of account 2 is damaged"), std::string::npos) << err;
  with([](wire::account& a) { a.status = wire::account_status(0); });
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("the row of account 2 is damaged"), std::string::npos) << err;
  with([](wire::account&) {});
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->check_balances().balanced);
  EXPECT_EQ(e->lookup_accounts({2}).accounts.at(0).credits_posted, 500u);
}

// A bit flipped on the disk in a field no load check reads (an account's user_data)
// refuses the start, naming the row: before rows carried checks, the engine started
// and served the changed account as its own.
TEST(ledger_snapshot, a_bit_flipped_in_a_row_on_the_disk_refuses_to_start) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  {
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    create_accounts(*e, 8);
    ASSERT_EQ(e->create_transfers({make_transfer(1, 1, 2, 500)}).results.at(0), result::ok);
  }  // closes with a snapshot
  const std::string snap_dir = dir.path() + "/snapshot";
  std::string row, err;
  {
    auto s = storage::snapshot_store::open(snap_dir, 1ull << 30, &err);
    ASSERT_TRUE(s) << err;
    ASSERT_TRUE(s->get(storage::table::accounts, 2, &row, &err)) << err;
  }
  auto flip_user_data = [&] {
    ASSERT_GE(flip_every_copy(snap_dir + "/data.mdb", row, offsetof(wire::account, user_data), 0x01), 1);
    row[offsetof(wire::account, user_data)] ^= 0x01;
  };
  flip_user_data();
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("row 2 of table accounts (92 bytes) fails its check: the snapshot file is damaged"),
            std::string::npos)
      << err;
  flip_user_data();  // back as it was
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->lookup_accounts({2}).accounts.at(0).credits_posted, 500u);
}

// A transfer row damaged on the disk below the resident window is read only when a
// request needs one of its records. Before, that read aborted the engine. Now a look-up
// that needs it is answered engine_failed alone, and a write that needs it refuses every
// write from then on (what it was decided on may be wrong, and it is never logged); the
// engine keeps serving every other read.
TEST(ledger_snapshot, a_damaged_transfer_row_fails_the_requests_that_read_it) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.transfers_resident_max = 1 << 14;
  auto pair_of = [](uint64_t i) {
    uint64_t d = 1 + i % 64, c = 1 + (i * 7 + 3) % 64;
    if (c == d) c = 1 + c % 64;
    return std::pair{d, c};
  };
  {
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    std::vector<wire::account> accts;
    for (uint64_t id = 1; id <= 64; ++id) accts.push_back(make_account(id));
    ASSERT_EQ(e->create_accounts(accts).results.at(0), result::ok);
    for (uint64_t base = 1; base <= 20000; base += 4000) {
      std::vector<wire::transfer> b;
      for (uint64_t i = base; i < base + 4000; ++i) b.push_back(make_transfer(i, pair_of(i).first, pair_of(i).second, 1));
      for (auto x : e->create_transfers(b).results) ASSERT_EQ(x, result::ok);
    }
  }  // closes with a snapshot
  ASSERT_GE(damage_snapshot_row(dir.path(), storage::table::transfers, 0, 0x04), 1);  // serials 0.., ids 1..
  auto e = open_engine(cfg);  // the start reads no record of that row
  ASSERT_TRUE(e);
  EXPECT_EQ(e->lookup_transfers({{5, 0}}).st, engine::status::engine_failed);
  const auto resident = e->lookup_transfers({{19000, 0}});
  ASSERT_EQ(resident.st, engine::status::ok);
  EXPECT_EQ(resident.results.at(0), result::ok);
  // An account's history, page after page back into the damaged row.
  engine::status walked = engine::status::ok;
  uint64_t cursor = 0;
  for (int page = 0; page < 1000 && walked == engine::status::ok; ++page) {
    auto h = e->lookup_account_transfers({{pair_of(5).first, cursor, uint32_t(engine::history_page_max), 0}});
    walked = h.st;
    if (walked != engine::status::ok) break;
    ASSERT_EQ(h.pages.at(0).result, result::ok);
    cursor = h.pages.at(0).next_cursor;
    if (cursor == 0) break;
  }
  EXPECT_EQ(walked, engine::status::engine_failed);
  EXPECT_FALSE(e->stats().writes_refused) << "look-ups refuse nothing else";
  EXPECT_EQ(e->create_transfers({make_transfer(30000, 1, 2, 1)}).results.at(0), result::ok);
  // A repeat of transfer 5 must compare with its record: writes stop.
  EXPECT_EQ(e->create_transfers({make_transfer(5, pair_of(5).first, pair_of(5).second, 1)}).st,
            engine::status::engine_failed);
  EXPECT_TRUE(e->stats().writes_refused);
  EXPECT_NE(e->stats().writes_refused_why.find("row 0 of table transfers (1224 bytes) fails its check"),
            std::string::npos)
      << e->stats().writes_refused_why;
  EXPECT_EQ(e->create_transfers({make_transfer(30001, 1, 2, 1)}).st, engine::status::engine_failed);
  EXPECT_EQ(e->lookup_transfers({{30000, 0}}).results.at(0), result::ok) << "reads still served";
}

// Posts (or voids) pending transfer `pending_id` by transfer `id`: its result.
result resolve_pending(engine::engine& e, uint64_t id, uint64_t pending_id, bool post) {
  auto t = make_transfer(id, 0, 0, 0, post ? tf::post_pending : tf::void_pending);
  t.pending_id = {pending_id, 0};
  return e.create_transfers({t}).results.at(0);
}

// A resolved pending transfer leaves memory; a later post or void reads its final state
// from the snapshot. Before, a row failing its check there aborted the engine, at run
// time and in replay. It was resolved whatever the row held, so the post or void is
// refused (pending_transfer_unreadable), nothing changes, the operator is told (stderr,
// the count), every other write goes on, and replay decides the same.
TEST(ledger_snapshot, a_damaged_resolved_pending_row_refuses_its_posts_alone) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.checkpoint_on_close = true;
  const auto resolve = &resolve_pending;
  {
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    create_accounts(*e, 4);
    for (uint64_t id = 100; id <= 101; ++id)  // serials 0 and 1, on accounts 1 -> 2
      ASSERT_EQ(e->create_transfers({make_transfer(id, 1, 2, 10, tf::pending)}).results.at(0), result::ok);
    ASSERT_EQ(resolve(*e, 200, 100, true), result::ok);
    ASSERT_EQ(resolve(*e, 201, 101, false), result::ok);
  }  // closes with a snapshot holding both final states; a start loads neither
  ASSERT_GE(damage_snapshot_row(dir.path(), storage::table::resolved, 0, 0x10), 1);
  cfg.checkpoint_on_close = false;  // the next start replays what this one does
  {
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    EXPECT_EQ(resolve(*e, 202, 100, true), result::pending_transfer_unreadable);
    EXPECT_EQ(resolve(*e, 203, 100, false), result::pending_transfer_unreadable);
    EXPECT_EQ(resolve(*e, 204, 101, true), result::pending_transfer_already_voided) << "its neighbour reads";
    EXPECT_EQ(e->stats().snapshot_rows_unreadable, 2u);
    EXPECT_FALSE(e->stats().writes_refused);
    ASSERT_EQ(e->create_transfers({make_transfer(102, 1, 2, 7, tf::pending)}).results.at(0), result::ok);
    EXPECT_EQ(resolve(*e, 205, 102, true), result::ok);
    EXPECT_EQ(e->lookup_accounts({1}).accounts.at(0).debits_posted, 17u);
    EXPECT_EQ(e->lookup_accounts({1}).accounts.at(0).debits_pending, 0u);
    EXPECT_TRUE(e->check_balances().balanced) << e->check_balances().detail;
  }
  {
    auto e = open_engine(cfg);  // replays 202..205 over the damaged row
    ASSERT_TRUE(e);
    EXPECT_GE(e->recovery().records_replayed, 4u);
    const auto looked = e->lookup_transfers({{202, 0}, {203, 0}, {205, 0}});
    ASSERT_EQ(looked.st, engine::status::ok);
    ASSERT_EQ(looked.transfers.size(), 3u);
    EXPECT_EQ(looked.results.at(0), result::ok);
    EXPECT_EQ(looked.transfers.at(0).result, uint32_t(result::pending_transfer_unreadable));
    EXPECT_EQ(looked.transfers.at(1).result, uint32_t(result::pending_transfer_unreadable));
    EXPECT_EQ(looked.transfers.at(2).result, uint32_t(result::ok));
    EXPECT_EQ(e->lookup_accounts({1}).accounts.at(0).debits_posted, 17u);
    EXPECT_TRUE(e->check_balances().balanced) << e->check_balances().detail;
  }
  // A row that passes its check but names no final state (written wrong, not damaged
  // after) is unreadable too: before, a state of none such was taken for pending, and
  // a post took the hold off the accounts' pending totals a second time.
  {
    std::string err, row;
    auto snap = storage::snapshot_store::open(dir.path() + "/snapshot", 1ull << 30, &err);
    ASSERT_TRUE(snap) << err;
    ASSERT_TRUE(snap->get(storage::table::resolved, 1, &row, &err)) << err;  // 101, voided
    actors::pending_info p;
    ASSERT_EQ(row.size(), sizeof p);
    std::memcpy(&p, row.data(), sizeof p);
    ASSERT_EQ(p.state, actors::pending_state::voided);
    p.state = actors::pending_state(7);
    auto w = snap->begin(&err);
    ASSERT_TRUE(w) << err;
    ASSERT_TRUE(w->put(storage::table::resolved, 1, {reinterpret_cast<const uint8_t*>(&p), sizeof p})) << w->error();
    ASSERT_TRUE(w->commit_without_meta()) << w->error();
  }
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  const auto before = e->lookup_accounts({1, 2});
  EXPECT_EQ(resolve(*e, 206, 101, true), result::pending_transfer_unreadable);
  EXPECT_EQ(resolve(*e, 207, 101, false), result::pending_transfer_unreadable);
  const auto after = e->lookup_accounts({1, 2});
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(after.accounts.at(i).debits_pending, before.accounts.at(i).debits_pending) << i;
    EXPECT_EQ(after.accounts.at(i).credits_pending, before.accounts.at(i).credits_pending) << i;
    EXPECT_EQ(after.accounts.at(i).debits_posted, before.accounts.at(i).debits_posted) << i;
  }
  EXPECT_TRUE(e->check_balances().balanced) << e->check_balances().detail;
}

// The store failing (a full reader table, MDB_PANIC), not the row: a post or void of an
// evicted pending transfer is not refused pending_transfer_unreadable, an outcome replay
// would not decide again once the store reads (the start then stopped at the kept row).
// A failure that passes is read again; one that stays (for 2 s, or MDB_PANIC at once)
// stops the engine before the outcome is decided, and the next start decides it from
// the row.
TEST(ledger_snapshot, a_failing_store_is_read_again_or_stops_the_engine_never_decides) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.checkpoint_on_close = true;
  const auto resolve = &resolve_pending;
  auto& probe = storage::failure_probes::instance().resolved_read_failures;
  {
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    create_accounts(*e, 4);
    ASSERT_EQ(e->create_transfers({make_transfer(100, 1, 2, 10, tf::pending)}).results.at(0), result::ok);
    ASSERT_EQ(resolve(*e, 200, 100, true), result::ok);
  }  // its final state in the snapshot alone from the next start
  {
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    probe = 3;  // passes after three reads
    EXPECT_EQ(resolve(*e, 201, 100, false), result::pending_transfer_already_posted);
    EXPECT_EQ(probe.load(), 0);
    EXPECT_EQ(e->stats().snapshot_rows_unreadable, 0u);
  }
  cfg.checkpoint_on_close = false;  // the next start replays what the stopped ones logged
  const std::string style = GTEST_FLAG_GET(death_test_style);
  GTEST_FLAG_SET(death_test_style, "fast");  // the child's log is this directory's
  for (const bool panic : {false, true}) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EXIT(
        {
          auto e = open_engine(cfg);
          if (!e) std::exit(0);
          storage::failure_probes::instance().resolved_read_panic = panic;
          storage::failure_probes::instance().resolved_read_failures = 1 << 30;  // stays
          resolve(*e, panic ? 203 : 202, 100, true);
          std::exit(0);  // (decided without the row: not what the test wants)
        },
        ::testing::ExitedWithCode(1),
        "the snapshot store cannot be read .* for the final state of resolved pending transfer 0, which a post or "
        "void needs: stopping, the post or void undecided");
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (panic) EXPECT_LT(took, 1.8) << "MDB_PANIC is not read again for 2 s";
    else EXPECT_GE(took, 2.0) << "read again for 2 s first";
  }
  GTEST_FLAG_SET(death_test_style, style);
  probe = 0;
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  const auto looked = e->lookup_transfers({{201, 0}, {202, 0}, {203, 0}});
  ASSERT_EQ(looked.st, engine::status::ok);
  ASSERT_EQ(looked.transfers.size(), 3u);
  EXPECT_EQ(looked.transfers.at(0).result, uint32_t(result::pending_transfer_already_posted));
  for (size_t i = 1; i < 3; ++i)
    EXPECT_EQ(looked.transfers.at(i).result, uint32_t(result::pending_transfer_already_posted))
        << i << ": decided at the start from the row";
  EXPECT_EQ(e->stats().snapshot_rows_unreadable, 0u);
  EXPECT_EQ(e->lookup_accounts({1}).accounts.at(0).debits_posted, 10u);
  EXPECT_TRUE(e->check_balances().balanced) << e->check_balances().detail;
}

// Each row's check covers its own bytes, not a row that is gone: a missing open pending
// row left the currencies' totals balanced, and the engine started with the money held
// for good (its post refused pending_transfer_unreadable, never expiring). A start now
// checks every account's pending totals against the open pending rows naming it.
TEST(ledger_snapshot, a_missing_or_altered_pending_row_refuses_to_start) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.checkpoint_on_close = true;
  {
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    create_accounts(*e, 4);
    ASSERT_EQ(e->create_transfers({make_transfer(100, 1, 2, 10, tf::pending)}).results.at(0), result::ok);
    ASSERT_EQ(e->create_transfers({make_transfer(101, 3, 4, 5, tf::pending)}).results.at(0), result::ok);
  }
  const std::string snap = dir.path() + "/snapshot";
  std::string row;
  {
    std::string err;
    auto s = storage::snapshot_store::open(snap, 1ull << 30, &err);
    ASSERT_TRUE(s) << err;
    ASSERT_TRUE(s->get(storage::table::pending, 0, &row, &err)) << err;
    ASSERT_EQ(row.size(), sizeof(actors::pending_info));
  }
  {
    auto e = open_engine(cfg);  // whole: starts
    ASSERT_TRUE(e);
  }
  edit_snapshot(snap, [](storage::snapshot_store&, storage::snapshot_store::writer& w) {
    ASSERT_TRUE(w.erase(storage::table::pending, 0));
  });
  std::string err;
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_EQ(err, "snapshot: account 1 has 10 of pending debits that no open pending transfer in the snapshot "
                 "holds (a pending row is missing; nothing was started)");
  actors::pending_info more;
  std::memcpy(&more, row.data(), sizeof more);
  more.amount = 11;
  edit_snapshot(snap, [&](storage::snapshot_store&, storage::snapshot_store::writer& w) {
    ASSERT_TRUE(w.put(storage::table::pending, 0, {reinterpret_cast<const uint8_t*>(&more), sizeof more}));
  });
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_EQ(err, "snapshot: the open pending transfer of serial 0 holds 11 on account 1, whose pending debits do not "
                 "hold it (damaged rows; nothing was started)");
  edit_snapshot(snap, [&](storage::snapshot_store&, storage::snapshot_store::writer& w) {
    ASSERT_TRUE(w.put(storage::table::pending, 0, as_span(row)));
  });
  auto e = open_engine(cfg);  // whole again
  ASSERT_TRUE(e);
  EXPECT_EQ(e->lookup_accounts({1}).accounts.at(0).debits_pending, 10u);
}

// Two open pending rows whose debit accounts were swapped: every account's pending total
// still adds up, but a post of either would be routed by its record's accounts and
// applied to the row's (another customer's wallet). The start refuses it, for a record
// in the resident window and for one before it (read from the snapshot).
TEST(ledger_snapshot, pending_rows_that_disagree_with_their_records_refuse_to_start) {
  for (const bool before_window : {false, true}) {
    SCOPED_TRACE(before_window ? "records before the window" : "records in the window");
    temp_dir dir;
    auto cfg = test_config(dir.path());
    cfg.checkpoint_on_close = true;
    cfg.transfers_resident_max = 1 << 14;
    {
      auto e = open_engine(cfg);
      ASSERT_TRUE(e);
      create_accounts(*e, 8);
      ASSERT_EQ(e->create_transfers({make_transfer(100, 1, 2, 10, tf::pending)}).results.at(0), result::ok);
      ASSERT_EQ(e->create_transfers({make_transfer(101, 3, 4, 10, tf::pending)}).results.at(0), result::ok);
      // Past the window's 16,384 records: the two pending ones are no longer resident.
      for (uint64_t base = 1000; before_window && base < 1000 + 20'000; base += 4000) {
        std::vector<wire::transfer> b;
        for (uint64_t i = base; i < base + 4000; ++i) b.push_back(make_transfer(i, 5 + i % 2, 7, 1));
        for (auto x : e->create_transfers(b).results) ASSERT_EQ(x, result::ok);
      }
    }
    const std::string snap = dir.path() + "/snapshot";
    actors::pending_info rows[2];
    {
      std::string err, row;
      auto s = storage::snapshot_store::open(snap, 1ull << 30, &err);
      ASSERT_TRUE(s) << err;
      for (uint64_t k = 0; k < 2; ++k) {
        ASSERT_TRUE(s->get(storage::table::pending, k, &row, &err)) << err;
        ASSERT_EQ(row.size(), sizeof(actors::pending_info));
        std::memcpy(&rows[k], row.data(), sizeof rows[k]);
      }
    }
    auto put_rows = [&](const actors::pending_info& a, const actors::pending_info& b) {
      edit_snapshot(snap, [&](storage::snapshot_store&, storage::snapshot_store::writer& w) {
        ASSERT_TRUE(w.put(storage::table::pending, 0, {reinterpret_cast<const uint8_t*>(&a), sizeof a}));
        ASSERT_TRUE(w.put(storage::table::pending, 1, {reinterpret_cast<const uint8_t*>(&b), sizeof b}));
      });
    };
    actors::pending_info swapped[2] = {rows[0], rows[1]};
    std::swap(swapped[0].debit_account_id, swapped[1].debit_account_id);
    put_rows(swapped[0], swapped[1]);
    std::string err;
    EXPECT_FALSE(engine::engine::open(cfg, &err));
    EXPECT_EQ(err, "snapshot: the open pending transfer of serial 0: it holds 10 in " +
                       wire::currency_name(rows[0].currency) + " from account 3 to 2, never expiring but its "
                       "transfer record 10 in " + wire::currency_name(rows[0].currency) +
                       " from account 1 to 2, never expiring (damaged rows; nothing was started)");
    actors::pending_info later = rows[0];
    later.expires_at = 1;
    put_rows(later, rows[1]);
    EXPECT_FALSE(engine::engine::open(cfg, &err));
    EXPECT_NE(err.find("serial 0: it holds 10 in " + wire::currency_name(rows[0].currency) +
                       " from account 1 to 2, expiring at 1 but its transfer record"),
              std::string::npos)
        << err;
    put_rows(rows[0], rows[1]);
    auto e = open_engine(cfg);  // whole again
    ASSERT_TRUE(e);
    EXPECT_EQ(e->lookup_accounts({1}).accounts.at(0).debits_pending, 10u);
    EXPECT_EQ(e->lookup_accounts({3}).accounts.at(0).debits_pending, 10u);
  }
}

// The log must continue the snapshot's history: a log from another engine with the same
// lsns (another clone's wal/, say) is refused at the first record past the snapshot, by
// its chain hash. Before, it replayed silently onto the snapshot.
TEST(ledger_snapshot, a_log_that_is_not_the_snapshots_history_is_refused) {
  temp_dir mine, other;
  auto run = [](const std::string& data, uint64_t amount) {
    auto cfg = test_config(data);
    cfg.checkpoint_on_close = false;
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    create_accounts(*e, 4);
    ASSERT_EQ(e->create_transfers({make_transfer(1, 1, 2, amount)}).results.at(0), result::ok);
    std::string err;
    ASSERT_TRUE(e->checkpoint(&err)) << err;
    ASSERT_EQ(e->create_transfers({make_transfer(2, 3, 4, amount)}).results.at(0), result::ok);
  };
  run(mine.path(), 5);
  run(other.path(), 7);
  std::filesystem::rename(mine.path() + "/wal", mine.path() + "/wal.mine");
  std::filesystem::copy(other.path() + "/wal", mine.path() + "/wal");
  auto cfg = test_config(mine.path());
  std::string err;
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("this log is not the snapshot's history"), std::string::npos) << err;
  std::filesystem::remove_all(mine.path() + "/wal");
  std::filesystem::rename(mine.path() + "/wal.mine", mine.path() + "/wal");
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->lookup_accounts({2}).accounts.at(0).credits_posted, 5u);
  EXPECT_EQ(e->lookup_accounts({4}).accounts.at(0).credits_posted, 5u);
}

// A snapshot whose log is gone (the log's directory emptied, removed, or a mount that
// did not come up: an empty directory in its place) refuses to start, naming it, and
// changes nothing: with the log back the engine starts with every acknowledged transfer.
// Before, it started from the snapshot, the transfers acknowledged after it lost and
// their lsns written again with other records.
TEST(ledger_snapshot, a_snapshot_without_its_log_refuses_to_start) {
  temp_dir d;
  auto cfg = test_config(d.path());
  cfg.checkpoint_on_close = false;
  {
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    create_accounts(*e, 4);
    std::string err;
    ASSERT_TRUE(e->checkpoint(&err)) << err;
    ASSERT_EQ(e->create_transfers({make_transfer(1, 1, 2, 5)}).results.at(0), result::ok);  // after the snapshot
  }
  const std::string wal = d.path() + "/wal", kept = d.path() + "/wal.kept";
  std::filesystem::rename(wal, kept);
  for (const bool empty_dir : {false, true}) {
    SCOPED_TRACE(empty_dir ? "an empty log directory" : "no log directory");
    if (empty_dir) std::filesystem::create_directory(wal);
    std::string err;
    EXPECT_FALSE(engine::engine::open(cfg, &err));
    EXPECT_NE(err.find("holds no log segment, but the snapshot is at lsn"), std::string::npos) << err;
    EXPECT_TRUE(storage::list_segments(wal).empty()) << "nothing written";
    std::filesystem::remove_all(wal);
  }
  std::filesystem::rename(kept, wal);
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->lookup_accounts({2}).accounts.at(0).credits_posted, 5u);
}

// Log segments of 2 MiB (commit groups of 1 MiB), no snapshot at close: a few batches
// fill a segment, and records stay past the last snapshot.
engine::config small_segments_config(const std::string& dir) {
  auto cfg = test_config(dir);
  cfg.checkpoint_on_close = false;
  cfg.wal_segment_mib = 2;
  cfg.wal_group_mib = 1;
  return cfg;
}

// Batches of 4,096 transfers among accounts 1..8 (ids from *id + 1) until the log has
// `segments` segments.
void fill_log_to(engine::engine& e, const std::string& dir, size_t segments, uint64_t* id) {
  while (storage::list_segments(dir + "/wal").size() < segments) {
    std::vector<wire::transfer> ts;
    for (int i = 0; i < 4096; ++i, ++*id) ts.push_back(make_transfer(*id + 1, 1 + *id % 4, 5 + *id % 4, 1));
    ASSERT_EQ(e.create_transfers(ts).st, engine::status::ok);
  }
}

// An engine on 2 MiB segments keeping at most `kept_max_mib` of log, with accounts 1..8
// and six segments of transfers among them (ids from *id + 1); null if it failed.
std::unique_ptr<engine::engine> engine_with_six_segments(const std::string& dir, uint64_t kept_max_mib,
                                                         uint64_t* id) {
  auto cfg = small_segments_config(dir);
  cfg.wal_kept_max_mib = kept_max_mib;
  auto e = open_engine(cfg);
  if (!e) return e;
  create_accounts(*e, 8);
  fill_log_to(*e, dir, 6, id);
  if (::testing::Test::HasFatalFailure()) e.reset();
  return e;
}

// A log segment a checkpoint covered but whose drop a crash lost (its rename out of the
// log's names not yet durable), left before a gap where later ones went: recovery starts
// at the segment that holds the snapshot's next lsn and does not read it, so the gap is
// no damage. Before, the start refused the log ("segment starts at lsn ... but the log
// continues at ...").
TEST(ledger_snapshot, a_covered_segment_left_before_a_gap_does_not_stop_a_start) {
  temp_dir d;
  const auto cfg = small_segments_config(d.path());
  const std::string first = storage::segment_path(d.path() + "/wal", 0);
  const std::string kept = d.path() + "/segment-0.copy";
  uint64_t id = 0;
  {
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    create_accounts(*e, 8);
    ASSERT_NO_FATAL_FAILURE(fill_log_to(*e, d.path(), 4, &id));
    std::filesystem::copy_file(first, kept);
    std::string err;
    ASSERT_TRUE(e->checkpoint(&err)) << err;
    for (int i = 0; i < 500 && std::filesystem::exists(storage::segment_path(d.path() + "/wal", 1)); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_FALSE(std::filesystem::exists(storage::segment_path(d.path() + "/wal", 1)));
    ASSERT_EQ(e->create_transfers({make_transfer(++id, 1, 5, 1)}).results.at(0), result::ok);
  }
  std::filesystem::remove(first);
  std::filesystem::rename(kept, first);  // the drop a crash lost
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  uint64_t credits = 0;
  for (const auto& a : e->lookup_accounts({5, 6, 7, 8}).accounts) credits += a.credits_posted;
  EXPECT_EQ(credits, id);
  // The console's log verify reads what recovery reads: the leftover is no damage.
  const auto v = e->verify_log();
  EXPECT_TRUE(v.intact) << v.fault;
}

// The console's log verify checks what a start checks: the log must begin at or before
// the snapshot's next record. With the segment that holds it gone, it said the log was
// intact (its scan began at the first segment left), and the next start refused it.
TEST(ledger_snapshot, log_verify_finds_the_records_after_the_snapshot_missing) {
  temp_dir d;
  const auto cfg = small_segments_config(d.path());
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 8);
  uint64_t id = 0;
  ASSERT_NO_FATAL_FAILURE(fill_log_to(*e, d.path(), 2, &id));
  std::string err;
  ASSERT_TRUE(e->checkpoint(&err)) << err;
  ASSERT_EQ(e->create_transfers({make_transfer(++id, 1, 5, 1)}).results.at(0), result::ok);
  const auto after = storage::list_segments(d.path() + "/wal");
  const uint64_t next = e->stats().snapshot_lsn + 1;
  std::string holding;  // the segment that holds the snapshot's next record
  for (const auto& [index, path] : after) {
    storage::segment_header h{};
    const int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0) << path;
    const bool read = ::pread(fd, &h, sizeof h, 0) == ssize_t(sizeof h);
    ::close(fd);
    if (read && h.magic == storage::segment_magic && h.first_lsn <= next) holding = path;
  }
  ASSERT_FALSE(holding.empty());
  ASSERT_NO_FATAL_FAILURE(fill_log_to(*e, d.path(), after.size() + 3, &id));
  EXPECT_TRUE(e->verify_log().intact);
  // A check its caller stops (the admin endpoint stopping) ends at once, neither intact
  // nor damaged.
  const std::atomic<bool> stop{true};
  const auto stopped = e->verify_log(&stop);
  EXPECT_TRUE(stopped.stopped);
  EXPECT_FALSE(stopped.intact);
  EXPECT_EQ(stopped.records, 0u);
  EXPECT_NE(stopped.fault.find("stopped before lsn"), std::string::npos) << stopped.fault;
  std::filesystem::remove(holding);
  const auto v = e->verify_log();
  EXPECT_FALSE(v.intact);
  EXPECT_NE(v.fault.find("records are missing"), std::string::npos) << v.fault;
}

// The dropped segments a log verify keeps from being deleted are not in the log's limit:
// the check gives way once they hold half of it (wal_kept_max_mib), neither intact nor
// damaged, and they go. Before, a long check under a high write rate kept every segment
// dropped meanwhile until it ended, whatever the disk had room for.
TEST(ledger_snapshot, a_log_verify_gives_way_to_the_dropped_segments_it_keeps) {
  temp_dir d;
  // Eight 2 MiB segments: the check gives way past 8 MiB kept for it.
  uint64_t id = 0;
  auto e = engine_with_six_segments(d.path(), 16, &id);
  ASSERT_TRUE(e);
  auto& probes = storage::failure_probes::instance();
  struct unstall {
    std::atomic<int>& ms;
    ~unstall() { ms = 0; }
  } reset{probes.verify_segment_stall_ms};
  // A slow check: it waits at each segment until it gives way, or the writes below end
  // (up to 10 minutes a segment: a loaded machine's writer is slow).
  probes.verify_segment_stall_ms = 600'000;
  std::future<engine::log_verification> check = std::async(std::launch::async, [&] { return e->verify_log(); });
  // Meanwhile the log goes on and checkpoints drop what they cover, kept for the check
  // until they pass 8 MiB (five segments), when it gives way.
  std::string err;
  size_t kept_most = 0;
  for (int i = 0; i < 1000 && check.wait_for(std::chrono::seconds(0)) != std::future_status::ready; ++i) {
    std::vector<wire::transfer> ts;
    for (int k = 0; k < 4096; ++k, ++id) ts.push_back(make_transfer(id + 1, 1 + id % 4, 5 + id % 4, 1));
    ASSERT_EQ(e->create_transfers(ts).st, engine::status::ok);
    if (i % 4 == 3) {
      ASSERT_TRUE(e->checkpoint(&err)) << err;
    }
    kept_most = std::max<size_t>(kept_most, e->stats().wal_segments_deleting);
  }
  EXPECT_GE(kept_most, 2u) << "the check kept dropped segments";
  probes.verify_segment_stall_ms = 0;
  const auto v = check.get();
  EXPECT_TRUE(v.gave_way) << v.fault;
  EXPECT_FALSE(v.intact);
  EXPECT_LT(v.last_lsn, v.durable_lsn);
  EXPECT_NE(v.fault.find("over half of 16 MiB (--wal-kept-max-mib)"), std::string::npos) << v.fault;
  for (int i = 0; i < 1000 && e->stats().wal_segments_deleting > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(e->stats().wal_segments_deleting, 0u) << "deleted once the check gave way";
  const auto again = e->verify_log();
  EXPECT_TRUE(again.intact) << again.fault;
  EXPECT_FALSE(again.gave_way);
}

// A log verify that keeps dropped segments from being deleted gives way when the log
// needs their space: the next segment's pre-zeroing failed (here a disk whose free space
// is in the dropped segments), and the log asks for them before it tries once more. Before,
// the second try came at once, with the segments still kept, and failed the log until a
// restart.
TEST(ledger_snapshot, a_log_verify_gives_way_when_the_log_needs_the_space_it_keeps) {
  temp_dir d;
  // Far from the half the check gives way at by itself.
  uint64_t id = 0;
  auto e = engine_with_six_segments(d.path(), 1024, &id);
  ASSERT_TRUE(e);
  auto& probes = storage::failure_probes::instance();
  struct unprobe {
    storage::failure_probes& p;
    ~unprobe() {
      p.verify_segment_stall_ms = 0;
      p.prezero_full_while_drops = false;
    }
  } reset{probes};
  // A slow check: it waits at each segment until it gives way, or the writes below end
  // (up to 10 minutes a segment; a second a segment was too short for a loaded machine's
  // writer to reach a new segment).
  probes.verify_segment_stall_ms = 600'000;
  probes.prezero_full_while_drops = true;
  std::future<engine::log_verification> check = std::async(std::launch::async, [&] { return e->verify_log(); });
  // Meanwhile the log goes on and checkpoints drop what they cover, until the check ends.
  std::string err;
  int batches = 0;
  for (; batches < 1000 && check.wait_for(std::chrono::seconds(0)) != std::future_status::ready; ++batches) {
    std::vector<wire::transfer> ts;
    for (int k = 0; k < 4096; ++k, ++id) ts.push_back(make_transfer(id + 1, 1 + id % 4, 5 + id % 4, 1));
    ASSERT_EQ(e->create_transfers(ts).st, engine::status::ok) << "batch " << batches << ": the log failed";
    if (batches % 4 == 3) {
      ASSERT_TRUE(e->checkpoint(&err)) << err;
    }
  }
  probes.verify_segment_stall_ms = 0;
  const auto v = check.get();
  EXPECT_TRUE(v.gave_way) << v.fault;
  EXPECT_FALSE(v.intact);
  EXPECT_NE(v.fault.find("the log needed their disk space for its next segment"), std::string::npos) << v.fault;
  EXPECT_LT(batches, 1000) << "the check ended while the log went on";
  probes.prezero_full_while_drops = false;
  // The log still takes writes, past more segments.
  const size_t segments = storage::list_segments(d.path() + "/wal").size();
  ASSERT_NO_FATAL_FAILURE(fill_log_to(*e, d.path(), segments + 2, &id));
  const auto again = e->verify_log();
  EXPECT_TRUE(again.intact) << again.fault;
}

// Rows flushed to LMDB after the last snapshot are kept across a restart and compared
// with what replay produces; a row that differs, or rows the log cannot reproduce, stop
// start-up with a message naming them.
TEST(ledger_window, rows_flushed_after_the_snapshot_are_checked_on_restart) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.transfers_resident_max = 1 << 14;
  cfg.checkpoint_on_close = false;
  std::string err;
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 64);
  ASSERT_TRUE(e->checkpoint(&err)) << err;
  for (uint64_t base = 1; base < 80001; base += 4000) {
    std::vector<wire::transfer> b;
    for (uint64_t i = base; i < base + 4000; ++i) b.push_back(make_transfer(i, 1 + i % 64, 1 + (i + 5) % 64, 1 + i % 7));
    for (auto x : e->create_transfers(b).results) ASSERT_EQ(x, result::ok);
  }
  const uint64_t flushed = e->stats().transfers_in_snapshot;
  EXPECT_GE(flushed, 80000u - 16384u);
  const auto a9 = e->lookup_accounts({9}).accounts.at(0);
  e.reset();  // no final snapshot: the rows stay past it

  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->recovery().operations_replayed, 80000u);
  EXPECT_GE(e->stats().transfers_in_snapshot, flushed);
  EXPECT_EQ(e->lookup_accounts({9}).accounts.at(0).credits_posted, a9.credits_posted);
  EXPECT_EQ(e->lookup_transfers({{17, 0}}).transfers.at(0).t.amount, 1 + 17 % 7);
  EXPECT_TRUE(e->check_balances().balanced);
  e.reset();

  const std::string snap_dir = dir.path() + "/snapshot";
  auto edit = [&](const snapshot_edit& f) { edit_snapshot(snap_dir, f); };
  // The row holding record 20000 (records are stored packed, several to a row; a packed
  // row's count is its bytes 4-5: engine/record_rows.hpp), and its records.
  auto packed_count = [](const std::string& r) {
    uint16_t n = 0;
    std::memcpy(&n, r.data() + 4, 2);
    return uint64_t(n);
  };
  std::string row;
  uint64_t row_key = 0, row_n = 0;
  std::vector<actors::transfer_record> recs;
  {
    auto s = storage::snapshot_store::open(snap_dir, 1ull << 30, &err);
    ASSERT_TRUE(s->floor_row(storage::table::transfers, 20000, &row_key, &row, &err)) << err;
    row_n = packed_count(row);
    ASSERT_LE(row_key, 20000u);
    ASSERT_GT(row_key + row_n, 20000u);
    ASSERT_TRUE(engine::record_rows::scan(*s, row_key, row_key + row_n, [&](uint64_t, const actors::transfer_record& r) {
      recs.push_back(r);
      return true;
    }, &err)) << err;
    ASSERT_EQ(recs.size(), row_n);
  }
  // One kept record altered (an amount), its row's records rewritten in the first form (26
  // to a row, as older builds wrote them): start-up reads them and names the record.
  auto altered = recs;
  altered[20000 - row_key].t.amount ^= 1;
  edit([&](auto&, auto& w) {
    for (uint64_t i = 0; i < row_n; i += 26)
      ASSERT_TRUE(w.put(storage::table::transfers, row_key + i,
                        {reinterpret_cast<const uint8_t*>(altered.data() + i),
                         std::min<uint64_t>(26, row_n - i) * sizeof(actors::transfer_record)}));
  });
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("transfer record 20000 differs"), std::string::npos) << err;
  // Restored, plus a row past anything the log holds: start-up says records are missing.
  err.clear();
  uint64_t end_key = 0;
  edit([&](auto& s, auto& w) {
    for (uint64_t i = 26; i < row_n; i += 26) ASSERT_TRUE(w.erase(storage::table::transfers, row_key + i));
    ASSERT_TRUE(w.put(storage::table::transfers, row_key, as_span(row)));
    std::string last;
    uint64_t last_key = 0;
    ASSERT_TRUE(s.floor_row(storage::table::transfers, UINT64_MAX, &last_key, &last, &err)) << err;
    end_key = last_key + packed_count(last);
    ASSERT_TRUE(w.append(storage::table::transfers, end_key, as_span(row)));
    const std::string hashes(row_n * sizeof(uint64_t), '\0');
    ASSERT_TRUE(w.append(storage::table::transfer_ids, end_key, as_span(hashes)));
  });
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("log records are missing"), std::string::npos) << err;
  // A row cut short is named.
  err.clear();
  edit([&](auto&, auto& w) { ASSERT_TRUE(w.put(storage::table::transfers, end_key, as_span(row.substr(0, 100)))); });
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("transfers row " + std::to_string(end_key) + ": packed records: "), std::string::npos) << err;
  EXPECT_NE(err.find("cut short"), std::string::npos) << err;
  // Without the extra row the engine starts again, with the same balances.
  err.clear();
  edit([&](auto&, auto& w) {
    ASSERT_TRUE(w.erase_from(storage::table::transfers, end_key));
    ASSERT_TRUE(w.erase_from(storage::table::transfer_ids, end_key));
  });
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->lookup_accounts({9}).accounts.at(0).credits_posted, a9.credits_posted);
}

namespace {

// Transfers make(i, 0) for i in `which` are known to `e`: each sent again is ok and
// moves no balance, and one with another amount (make(i, 1)) exists with different
// fields. (An id the index lost would be applied again and move the accounts' balances.)
void expect_ids_known(engine::engine& e, const std::function<wire::transfer(uint64_t, uint64_t)>& make,
                      std::initializer_list<uint64_t> which) {
  for (uint64_t i : which) {
    const auto t = make(i, 0);
    const auto before = e.lookup_accounts({t.debit_account_id, t.credit_account_id}).accounts;
    EXPECT_EQ(e.create_transfers({t}).results.at(0), result::ok) << i;
    EXPECT_EQ(e.create_transfers({make(i, 1)}).results.at(0), result::exists_with_different_fields) << i;
    const auto after = e.lookup_accounts({t.debit_account_id, t.credit_account_id}).accounts;
    ASSERT_EQ(after.size(), 2u);
    ASSERT_EQ(before.size(), 2u);
    EXPECT_EQ(after.at(0).debits_posted, before.at(0).debits_posted) << i;
    EXPECT_EQ(after.at(1).credits_posted, before.at(1).credits_posted) << i;
  }
}

}  // namespace

// A start loads the id index from `transfer_ids` (each record's id hash) and checks the
// resident window's records against it; a snapshot without them (format 9 and older)
// is loaded from the records and the hashes are written; damage is named.
TEST(ledger_window, transfer_ids_load_the_id_index_and_are_filled_in_for_older_snapshots) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.transfers_resident_max = 1 << 14;
  std::string err;
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 64);
  auto make = [](uint64_t i, uint64_t extra) {
    auto t = make_transfer(i, 1 + i % 64, 1 + (i + 5) % 64, 1 + i % 7 + extra);
    return t;
  };
  for (uint64_t base = 1; base < 40001; base += 4000) {
    std::vector<wire::transfer> b;
    for (uint64_t i = base; i < base + 4000; ++i) b.push_back(make(i, 0));
    for (auto x : e->create_transfers(b).results) ASSERT_EQ(x, result::ok);
  }
  e.reset();  // the closing snapshot holds all 40,000
  // Ids older than the window (5) and in it (39,999) are known after each start.
  auto ids_known = [&] { expect_ids_known(*e, make, {5, 39999}); };
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->recovery().transfers_loaded, 40000u);
  EXPECT_EQ(e->recovery().transfer_ids_filled_in, 0u);
  ids_known();
  e.reset();

  const std::string snap_dir = dir.path() + "/snapshot";
  auto edit = [&](const snapshot_edit& f) { edit_snapshot(snap_dir, f); };
  // As a snapshot written before transfer_ids: filled in once, then read.
  edit([&](auto&, auto& w) { ASSERT_TRUE(w.clear(storage::table::transfer_ids)); });
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->recovery().transfer_ids_filled_in, 40000u);
  ids_known();
  e.reset();
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->recovery().transfer_ids_filled_in, 0u);
  ids_known();
  e.reset();

  // A resident record's hash altered: start-up names the record.
  uint64_t key = 0, last_key = 0;
  std::string row, last;
  {
    auto s = storage::snapshot_store::open(snap_dir, 1ull << 30, &err);
    ASSERT_TRUE(s) << err;
    ASSERT_TRUE(s->floor_row(storage::table::transfer_ids, 39990, &key, &row, &err)) << err;
    ASSERT_TRUE(s->floor_row(storage::table::transfer_ids, UINT64_MAX, &last_key, &last, &err)) << err;
  }
  std::string bad = row;
  bad[(39990 - key) * sizeof(uint64_t)] ^= 1;
  edit([&](auto&, auto& w) { ASSERT_TRUE(w.put(storage::table::transfer_ids, key, as_span(bad))); });
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("transfer record 39990's id does not match its hash"), std::string::npos) << err;
  // Restored, plus a row of hashes past the last record: the two tables' ends differ.
  err.clear();
  const uint64_t end = last_key + last.size() / sizeof(uint64_t);
  ASSERT_EQ(end, 40000u);
  edit([&](auto&, auto& w) {
    ASSERT_TRUE(w.put(storage::table::transfer_ids, key, as_span(row)));
    ASSERT_TRUE(w.append(storage::table::transfer_ids, end, as_span(last)));
  });
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("transfer_ids ends at serial " + std::to_string(end + last.size() / sizeof(uint64_t)) +
                     " but transfers at 40000: the snapshot is damaged"),
            std::string::npos) << err;
  // Without it and without the last row too (as a filling-in cut short by a crash): the
  // start writes the missing hashes.
  err.clear();
  edit([&](auto&, auto& w) { ASSERT_TRUE(w.erase_from(storage::table::transfer_ids, last_key)); });
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->recovery().transfer_ids_filled_in, 40000u - last_key);
  ids_known();
}

// The store keeps the key its ids are hashed under (`id_hash_key`, engine/id_hash.hpp):
// a start reads it and hashes nothing again. A store without one (format 12 and older,
// whose hashes are of an unkeyed function) gets a new key, its hashes dropped and
// written again from the records, every id still known. A malformed key row stops the
// start and changes nothing.
TEST(ledger_window, ids_are_hashed_under_the_store_s_key) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  std::string err;
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->recovery().id_hash_key_made) << "a new store";
  create_accounts(*e, 16);
  auto make = [](uint64_t i, uint64_t extra) { return make_transfer(i, 1 + i % 16, 1 + (i + 3) % 16, 1 + i % 5 + extra); };
  for (uint64_t base = 1; base < 10001; base += 2000) {
    std::vector<wire::transfer> b;
    for (uint64_t i = base; i < base + 2000; ++i) b.push_back(make(i, 0));
    for (auto x : e->create_transfers(b).results) ASSERT_EQ(x, result::ok);
  }
  e.reset();
  const std::string snap_dir = dir.path() + "/snapshot";
  // The store's key, and whether every stored hash is its record's id's under it.
  auto stored = [&](engine::id_hash_key* key, bool* hashes_match) {
    auto s = storage::snapshot_store::open(snap_dir, 1ull << 30, &err);
    ASSERT_TRUE(s) << err;
    auto k = engine::record_rows::hash_key(*s, &err);
    ASSERT_TRUE(k) << err;
    *key = *k;
    std::vector<wire::id128> ids;
    ASSERT_TRUE(engine::record_rows::scan(*s, 0, 10000, [&](uint64_t, const actors::transfer_record& r) {
      ids.push_back(r.t.id);
      return true;
    }, &err)) << err;
    ASSERT_EQ(ids.size(), 10000u);
    *hashes_match = true;
    const engine::id_hasher hash(*k);
    ASSERT_TRUE(engine::record_rows::scan_hashes(*s, 0, 10000, [&](uint64_t serial, uint64_t h) {
      *hashes_match = *hashes_match && h == hash(ids.at(serial));
      return true;
    }, &err)) << err;
    EXPECT_EQ(engine::record_rows::hashes_end(*s, &err), std::optional<uint64_t>(10000));
  };
  // A start: whether it made a key, how many hashes it wrote; every id still known.
  auto start = [&](bool key_made, uint64_t filled_in) {
    e = open_engine(cfg);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->recovery().id_hash_key_made, key_made);
    EXPECT_EQ(e->recovery().transfer_ids_filled_in, filled_in);
    expect_ids_known(*e, make, {5, 9999});
  };
  engine::id_hash_key k1, k;
  bool match = false;
  stored(&k1, &match);
  EXPECT_TRUE(match);
  start(false, 0);
  e.reset();
  stored(&k, &match);
  EXPECT_EQ(k, k1) << "kept";

  // As a store of a build before keys: no key row, hashes under none the start knows.
  auto edit = [&](const snapshot_edit& f) { edit_snapshot(snap_dir, f); };
  edit([&](auto&, auto& w) { ASSERT_TRUE(w.clear(storage::table::id_hash_key)); });
  start(true, 10000);
  e.reset();
  stored(&k, &match);
  EXPECT_NE(k, k1) << "a new key";
  EXPECT_TRUE(match) << "every hash written again under it";
  start(false, 0);
  e.reset();

  // A key row cut short, or of another magic: the start stops, the store as it was.
  const engine::id_hash_key k2 = k;
  for (const std::string& bad : {std::string(23, 'k'), std::string(24, 'k')}) {
    edit([&](auto&, auto& w) {
      ASSERT_TRUE(w.put(storage::table::id_hash_key, 0,
                        {reinterpret_cast<const uint8_t*>(bad.data()), bad.size()}));
    });
    err.clear();
    EXPECT_FALSE(engine::engine::open(cfg, &err));
    EXPECT_NE(err.find("the id_hash_key row is " + std::to_string(bad.size()) + " bytes"), std::string::npos) << err;
    {
      auto s = storage::snapshot_store::open(snap_dir, 1ull << 30, &err);
      ASSERT_TRUE(s) << err;
      std::string row;
      ASSERT_TRUE(s->get(storage::table::id_hash_key, 0, &row, &err)) << err;
      EXPECT_EQ(row, bad) << "the row left as it was";
      EXPECT_EQ(engine::record_rows::hashes_end(*s, &err), std::optional<uint64_t>(10000)) << "the hashes kept";
    }
  }
  // The key put back: the start reads it, nothing to hash again.
  edit([&](auto&, auto& w) {
    uint8_t row[24] = {'I', 'D', 'K', '1', 0, 0, 0, 0};
    std::memcpy(row + 8, &k2.k0, 8);
    std::memcpy(row + 16, &k2.k1, 8);
    ASSERT_TRUE(w.put(storage::table::id_hash_key, 0, row));
  });
  start(false, 0);
}

// A store whose snapshot row is lost while its other rows are there (and no log to
// replay) is refused, the table named, nothing changed: before, the start took it for a
// new store and served balances of zero beside the accounts' rows.
TEST(ledger_window, a_store_without_its_snapshot_row_but_with_accounts_is_refused) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 8);  // (no transfers: kept transfer rows would stop the start anyway)
  e.reset();  // the closing checkpoint
  const std::string snap_dir = dir.path() + "/snapshot";
  {  // the meta row dropped, below the store's own API (as damage would)
    MDB_env* env = nullptr;
    ASSERT_EQ(mdb_env_create(&env), 0);
    ASSERT_EQ(mdb_env_set_maxdbs(env, 32), 0);
    ASSERT_EQ(mdb_env_set_mapsize(env, 1ull << 30), 0);
    ASSERT_EQ(mdb_env_open(env, snap_dir.c_str(), 0, 0644), 0);
    MDB_txn* txn = nullptr;
    MDB_dbi dbi = 0;
    ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
    ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    uint8_t zero[8] = {};
    MDB_val key{sizeof zero, zero};
    ASSERT_EQ(mdb_del(txn, dbi, &key, nullptr), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
  }
  std::filesystem::remove_all(dir.path() + "/wal");  // and the log and events gone with it
  std::filesystem::remove_all(dir.path() + "/events");
  std::filesystem::create_directories(dir.path() + "/wal");
  std::string err;
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("the accounts table has rows (its last is 8) but the store has no snapshot row"), std::string::npos)
      << err;
  auto s = storage::snapshot_store::open(snap_dir, 1ull << 30, &err);
  ASSERT_TRUE(s) << err;
  err.clear();
  EXPECT_FALSE(s->read_meta(&err)) << "no snapshot row written by the start";
  EXPECT_EQ(err, "");
  std::string row;
  EXPECT_TRUE(s->get(storage::table::accounts, 8, &row, &err)) << err;
}

// The snapshot bounds its ids' lo by bucket of id.hi (`id_lo_max`): a start loads the id
// index from hashes and those bounds, so that new ids counting on skip its table, while
// every old id is still known: in a range, in the table, or the highest of its id.hi. A
// snapshot without the row (an older build's) gets it from its records once; a
// malformed one stops the start.
TEST(ledger_window, id_lo_max_bounds_the_ids_a_start_loads_by_hash) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.transfers_resident_max = 1 << 14;
  std::string err;
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 64);
  std::mt19937_64 rng(test_seed("id_lo_max"));
  auto make = [](wire::id128 id, uint64_t extra) {
    auto t = make_transfer(0, 1 + id.lo % 64, 1 + (id.lo + 5) % 64, 1 + id.lo % 7 + extra);
    t.id = id;
    return t;
  };
  std::vector<wire::id128> ids;
  auto send = [&](const std::vector<wire::id128>& batch) {
    std::vector<wire::transfer> b;
    for (const auto& id : batch) b.push_back(make(id, 0));
    for (auto x : e->create_transfers(b).results) ASSERT_EQ(x, result::ok);
    ids.insert(ids.end(), batch.begin(), batch.end());
  };
  // Counting up under hi 0 (ranges), counting down under hi 9 (the table), random ids.
  for (uint64_t base = 1; base < 20001; base += 4000) {
    std::vector<wire::id128> b;
    for (uint64_t i = base; i < base + 4000; ++i) b.push_back({i, 0});
    send(b);
  }
  std::vector<wire::id128> down, random;
  for (uint64_t i = 0; i < 3000; ++i) down.push_back({30000 - i, 9});
  // Random ids under random id.hi, none in hi 0's bucket: one there would top its bound
  // (random lo), and the ids counting on under hi 0 would rightly probe (id_index.hpp).
  for (int i = 0; i < 2000; ++i) {
    uint64_t hi = rng();
    while (engine::id_index::bucket_of(hi) == engine::id_index::bucket_of(0)) hi = rng();
    random.push_back({rng() | 1, hi});
  }
  send(down);
  send(random);
  e.reset();  // the closing snapshot holds all 25,000
  // Each of the first and last 100 ids, and 300 more, repeated with a different amount.
  auto ids_known = [&] {
    std::vector<size_t> probes;
    for (size_t k = 0; k < 100; ++k) probes.push_back(k), probes.push_back(ids.size() - 1 - k);
    for (int k = 0; k < 300; ++k) probes.push_back(rng() % ids.size());
    probes.push_back(19999);  // {20000, 0}: the highest lo of hi 0
    probes.push_back(20000);  // {30000, 9}: of hi 9
    for (size_t k : probes)
      ASSERT_EQ(e->create_transfers({make(ids[k], 1)}).results.at(0), result::exists_with_different_fields)
          << ids[k].hi << ":" << ids[k].lo;
  };
  auto want = [&] {
    std::vector<uint64_t> m(engine::id_index::buckets, 0);
    for (const auto& id : ids) {
      uint64_t& x = m[engine::id_index::bucket_of(id.hi)];
      x = std::max(x, id.lo);
    }
    return m;
  };
  const std::string snap_dir = dir.path() + "/snapshot";
  auto stored = [&](uint64_t end) {
    auto s = storage::snapshot_store::open(snap_dir, 1ull << 30, &err);
    EXPECT_TRUE(s) << err;
    return engine::record_rows::lo_max(*s, end, &err);
  };
  EXPECT_EQ(stored(25000).value_or(std::vector<uint64_t>{}), want());
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->recovery().id_lo_max_filled_in);
  ids_known();
  // Counting on past the bounds: no look-up probes the table.
  auto count_on = [&](uint64_t from, size_t n) {
    std::vector<wire::id128> more;
    for (uint64_t i = from; i < from + n; ++i) more.push_back({i, 0});
    const uint64_t probes = e->stats().id_index_probes;
    send(more);
    EXPECT_EQ(e->stats().id_index_probes, probes) << "from " << from;
  };
  count_on(20001, 100);
  send({{30001, 9}});
  ids_known();
  e.reset();
  EXPECT_EQ(stored(25101).value_or(std::vector<uint64_t>{}), want());

  auto edit = [&](const snapshot_edit& f) { edit_snapshot(snap_dir, f); };
  // As an older build's snapshot: the row is written from the records at the start.
  edit([&](auto&, auto& w) { ASSERT_TRUE(w.erase(storage::table::id_lo_max, 0)); });
  EXPECT_FALSE(stored(25101));
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->recovery().id_lo_max_filled_in);
  ids_known();
  count_on(20101, 50);
  e.reset();
  EXPECT_EQ(stored(25151).value_or(std::vector<uint64_t>{}), want());
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->recovery().id_lo_max_filled_in);
  count_on(20151, 50);
  e.reset();
  // A row counting fewer records than the snapshot holds (a build that appended without
  // keeping it), and one of another bucket function (its magic): filled in again.
  std::string row;
  {
    auto s = storage::snapshot_store::open(snap_dir, 1ull << 30, &err);
    ASSERT_TRUE(s->get(storage::table::id_lo_max, 0, &row, &err)) << err;
  }
  for (int form = 0; form < 2; ++form) {
    std::string changed = row;
    const uint64_t short_of = 1000;
    if (form == 0) std::memcpy(changed.data() + 8, &short_of, 8);
    else changed[3] = '9';
    edit([&](auto&, auto& w) { ASSERT_TRUE(w.put(storage::table::id_lo_max, 0, as_span(changed))); });
    e = open_engine(cfg);
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->recovery().id_lo_max_filled_in) << form;
    ids_known();
    e.reset();
    EXPECT_EQ(stored(25201).value_or(std::vector<uint64_t>{}), want());
  }
  // Malformed: named, and nothing starts.
  edit([&](auto&, auto& w) {
    ASSERT_TRUE(w.put(storage::table::id_lo_max, 0, as_span(row.substr(0, row.size() - 1))));
  });
  err.clear();
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_EQ(err, "snapshot: the id_lo_max row is " + std::to_string(row.size() - 1) +
                     " bytes, not 16 + 12 per bucket");
}

TEST_P(ledger, account_history_pages_newest_first) {
  seed_accounts();
  // Account 3 takes part in 7 applied transfers (one pending, later posted) and 1 failure.
  std::vector<uint64_t> ts;
  for (uint64_t i = 0; i < 5; ++i) {
    auto r = e().create_transfers({make_transfer(1100 + i, i % 2 ? 3 : 2, i % 2 ? 4 : 3, 10 + i)});
    ASSERT_EQ(r.results.at(0), result::ok);
    ts.push_back(r.timestamp_base);
    f_.advance_s(1);
  }
  ASSERT_EQ(one(make_transfer(1105, 3, 99, 1)), result::credit_account_not_found);
  ASSERT_EQ(one(make_transfer(1106, 2, 3, 7, tf::pending)), result::ok);
  auto post = make_transfer(1107, 0, 0, 0, tf::post_pending);
  post.pending_id = {1106, 0};
  ASSERT_EQ(one(post), result::ok);
  std::vector<uint64_t> seen;
  uint64_t cursor = 0;
  for (int page = 0; page < 10; ++page) {
    auto r = e().lookup_account_transfers({{3, cursor, 3}});
    ASSERT_EQ(r.pages.at(0).result, result::ok);
    for (const auto& rec : r.pages[0].records) seen.push_back(rec.t.id.lo);
    cursor = r.pages[0].next_cursor;
    if (cursor == 0) break;
  }
  EXPECT_EQ(seen, (std::vector<uint64_t>{1107, 1106, 1104, 1103, 1102, 1101, 1100}));
  EXPECT_EQ(e().lookup_account_transfers({{99, 0, 3}}).pages.at(0).result, result::account_not_found);
  EXPECT_EQ(e().lookup_account_transfers({{3, 0, 0}}).pages.at(0).result, result::limit_invalid);
  // A cursor must name a record of that account's history: one of account 4's transfers
  // with account 2 (account 4's page's next_cursor) would walk their chains as 3's.
  ASSERT_EQ(one(make_transfer(1108, 2, 4, 1)), result::ok);
  ASSERT_EQ(one(make_transfer(1109, 2, 4, 1)), result::ok);
  const auto four = e().lookup_account_transfers({{4, 0, 1}});
  ASSERT_EQ(four.pages.at(0).records.at(0).t.id.lo, 1109u);
  const uint64_t not_3s = four.pages[0].next_cursor;  // 1108's
  EXPECT_EQ(e().lookup_account_transfers({{4, not_3s, 1}}).pages.at(0).records.at(0).t.id.lo, 1108u);
  EXPECT_EQ(e().lookup_account_transfers({{3, not_3s, 3}}).pages.at(0).result, result::history_cursor_invalid);
  EXPECT_EQ(e().lookup_account_transfers({{3, not_3s + 1000, 3}}).pages.at(0).result, result::history_cursor_invalid);
  // The post's record (its accounts are its pending's) is 3's: a cursor naming it is.
  const auto from_post = e().lookup_account_transfers({{3, 0, 1}});
  ASSERT_EQ(from_post.pages.at(0).records.at(0).t.id.lo, 1107u);
  const auto two = e().lookup_account_transfers({{2, 0, 3}});
  ASSERT_EQ(two.pages.at(0).records.at(2).t.id.lo, 1107u);
  const uint64_t at_post = e().lookup_account_transfers({{2, 0, 2}}).pages.at(0).next_cursor;  // 1107's
  const auto via = e().lookup_account_transfers({{3, at_post, 2}});
  ASSERT_EQ(via.pages.at(0).result, result::ok);
  EXPECT_EQ(via.pages[0].records.at(0).t.id.lo, 1107u);
  EXPECT_EQ(via.pages[0].records.at(1).t.id.lo, 1106u);
  // Posted balances as of each moment: after transfer k, account 3 has seen those up to k.
  auto as_of = [&](uint64_t t) {
    auto r = e().lookup_balances_as_of({{3, t}});
    EXPECT_EQ(r.results.at(0), result::ok);
    return r.balances.at(0);
  };
  EXPECT_EQ(as_of(ts[0] - 1).credits_posted, 0u);  // after creation, before any transfer
  EXPECT_EQ(as_of(ts[0]).credits_posted, 10u);
  EXPECT_EQ(as_of(ts[1]).debits_posted, 11u);
  EXPECT_EQ(as_of(ts[2] + 5).credits_posted, 22u);
  EXPECT_EQ(as_of(ts[4]).debits_posted, 11u + 13u);
  const auto now = acct(3);
  const auto last = as_of(UINT64_MAX);
  EXPECT_EQ(last.debits_posted, now.debits_posted);
  EXPECT_EQ(last.credits_posted, now.credits_posted);
  EXPECT_EQ(e().lookup_balances_as_of({{3, 5}}).results.at(0), result::account_not_found);
  // The chains survive a restart (history heads are in the snapshot, records in LMDB).
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  f_.restart();
  auto r = e().lookup_account_transfers({{3, 0, 100}});
  ASSERT_EQ(r.pages.at(0).records.size(), 7u);
  EXPECT_EQ(r.pages[0].records.front().t.id.lo, 1107u);
  EXPECT_EQ(as_of(ts[2] + 5).credits_posted, 22u);
}

// Look-ups walk records on the sequencer, so one request's walk is bounded: its pages ask
// for at most history_request_records_max records in all (else the request is refused),
// and its balance queries share one budget of history_walk_max records (the queries past
// it get history_walk_limit, the ones before are answered).
TEST_P(ledger, one_lookups_walk_is_bounded) {
  seed_accounts();
  constexpr uint64_t n = engine::history_walk_max + 4000;  // account 3 in every one
  std::vector<uint64_t> ts;
  for (uint64_t done = 0; done < n;) {
    std::vector<wire::transfer> batch;
    for (; batch.size() < engine::batch_ops_max && done < n; ++done)
      batch.push_back(make_transfer(200'000 + done, done % 2 ? 3 : 2, done % 2 ? 4 : 3, 1));
    auto r = e().create_transfers(std::move(batch));
    ASSERT_EQ(r.st, engine::status::ok);
    for (auto x : r.results) ASSERT_EQ(x, result::ok);
    for (uint64_t i = 0; i < r.results.size(); ++i) ts.push_back(r.timestamp_base + i);
    f_.advance_s(1);
  }
  // Pages: 16 x 1,024 records is the most one request asks for; pages over their own
  // limit are refused one by one and not counted.
  std::vector<engine::history_query> pages(engine::history_request_records_max / engine::history_page_max,
                                           {3, 0, engine::history_page_max});
  pages.push_back({3, 0, engine::history_page_max + 1});
  auto r = e().lookup_account_transfers(pages);
  ASSERT_EQ(r.st, engine::status::ok);
  EXPECT_EQ(r.pages.at(0).records.size(), engine::history_page_max);
  EXPECT_EQ(r.pages.back().result, result::limit_invalid);
  pages.back().limit = 1;
  EXPECT_EQ(e().lookup_account_transfers(pages).st, engine::status::batch_too_large);
  // Balances: the first transfer lies past the budget alone; one 40,000 records back is
  // within it alone, but not twice in one request.
  const uint64_t back = 40'000;
  EXPECT_EQ(e().lookup_balances_as_of({{3, ts.front()}}).results.at(0), result::history_walk_limit);
  const uint64_t t = ts[n - back];
  auto one_of = e().lookup_balances_as_of({{3, t}});
  ASSERT_EQ(one_of.results.at(0), result::ok);
  EXPECT_EQ(one_of.balances.at(0).debits_posted + one_of.balances.at(0).credits_posted, n - back + 1);
  auto two = e().lookup_balances_as_of({{3, t}, {3, t}, {4, ts.back()}});
  EXPECT_EQ(two.results.at(0), result::ok);
  EXPECT_EQ(two.balances.at(0).credits_posted, one_of.balances.at(0).credits_posted);
  EXPECT_EQ(two.results.at(1), result::history_walk_limit);
  EXPECT_EQ(two.results.at(2), result::history_walk_limit) << "the budget is the request's";
  // A query of an account with no transfer walks nothing.
  EXPECT_EQ(e().lookup_balances_as_of({{3, t}, {3, t}, {6, UINT64_MAX}}).results.at(2), result::ok);
  // Walks queued together from several threads are split across the sequencer's passes
  // (walk_pass_steps), with writes between them: each is answered, and answered right.
  // Rounds until some were queued together (each walk takes milliseconds: the first).
  std::atomic<int> right{0}, asked{0};
  const uint64_t deferred_before = e().stats().walks_deferred;
  for (int round = 0; round < 20 && e().stats().walks_deferred == deferred_before; ++round) {
    std::vector<std::thread> callers;
    for (int c = 0; c < 6; ++c)
      callers.emplace_back([&, c, round] {
        ++asked;
        auto b = e().lookup_balances_as_of({{3, t}});
        if (b.results.at(0) == result::ok && b.balances.at(0).credits_posted == one_of.balances.at(0).credits_posted)
          ++right;
        const uint64_t id = 900'000 + uint64_t(round) * 10 + uint64_t(c);
        EXPECT_EQ(e().create_transfers({make_transfer(id, 2, 4, 1)}).results.at(0), result::ok);
      });
    for (auto& th : callers) th.join();
  }
  EXPECT_GT(e().stats().walks_deferred, deferred_before) << "walks queued together were never split";
  EXPECT_EQ(right.load(), asked.load());
}

// Checkpoints cut copy-on-write while batches keep changing accounts. Recovering from
// a snapshot taken under load plus the log after it must give exactly the balances of
// the recorded transfers: an account copied after a later change would count twice.
TEST(ledger_checkpoint, snapshots_taken_under_load_are_consistent) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.checkpoint_on_close = false;  // recovery must use a snapshot taken under load
  constexpr uint64_t accounts = 40000;  // several cut slices per shard
  std::string err;
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, accounts);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> next{1};
  std::thread load([&] {
    uint64_t seed = 1;
    while (!stop) {
      std::vector<wire::transfer> b;
      for (int i = 0; i < 2048; ++i) {
        seed = actors::mix64(seed);
        const uint64_t dr = 1 + seed % accounts, cr = 1 + (seed >> 32) % accounts;
        if (dr == cr) continue;
        b.push_back(make_transfer(next++, dr, cr, 1 + seed % 50));
      }
      e->create_transfers(b);
    }
  });
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    ASSERT_TRUE(e->checkpoint(&err)) << err;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  stop = true;
  load.join();
  const uint64_t ids = next.load();
  EXPECT_GT(e->stats().checkpoint_pause_us_max, 0u);
  e->close();
  e.reset();
  e = engine::engine::open(cfg, &err);
  ASSERT_TRUE(e) << err;
  EXPECT_GT(e->recovery().records_replayed, 0u);
  std::vector<uint64_t> debits(accounts + 1), credits(accounts + 1);
  for (uint64_t first = 1; first < ids; first += 8192) {
    std::vector<wire::id128> q;
    for (uint64_t id = first; id < std::min(ids, first + 8192); ++id) q.push_back({id, 0});
    auto r = e->lookup_transfers(q);
    for (size_t j = 0; j < q.size(); ++j) {
      if (r.results[j] != result::ok) continue;
      const auto& rec = r.transfers[j];
      if (rec.result != uint32_t(result::ok)) continue;
      debits[rec.t.debit_account_id] += rec.t.amount;
      credits[rec.t.credit_account_id] += rec.t.amount;
    }
  }
  for (uint64_t first = 1; first <= accounts; first += 8192) {
    std::vector<uint64_t> q;
    for (uint64_t id = first; id < std::min(accounts + 1, first + 8192); ++id) q.push_back(id);
    auto r = e->lookup_accounts(q);
    for (size_t j = 0; j < q.size(); ++j) {
      ASSERT_EQ(r.accounts[j].debits_posted, debits[q[j]]) << "account " << q[j];
      ASSERT_EQ(r.accounts[j].credits_posted, credits[q[j]]) << "account " << q[j];
    }
  }
}

// A failed fdatasync: the request is refused, nothing of it is applied, reads go on,
// writes are refused until restart, and after restart the ledger is whole.
TEST_P(ledger, storage_failure_refuses_writes_and_keeps_serving_reads) {
  seed_accounts();
  fund(1, 100, 1200);
  storage::failure_probes::instance().fsync_errno = EIO;
  auto r = e().create_transfers({make_transfer(1201, 1, 3, 10)});
  EXPECT_EQ(r.st, engine::status::engine_failed);
  EXPECT_EQ(e().create_transfers({make_transfer(1202, 1, 3, 10)}).st, engine::status::engine_failed);
  auto a = e().lookup_accounts({1});
  ASSERT_EQ(a.st, engine::status::ok);
  EXPECT_EQ(a.accounts.at(0).debits_posted, 0u);
  EXPECT_EQ(a.accounts.at(0).credits_posted, 100u);
  f_.restart();
  // The failed group may or may not have reached the disk; either way it is whole.
  const auto after = acct(1);
  EXPECT_TRUE(after.debits_posted == 0u || after.debits_posted == 10u);
  EXPECT_EQ(one(make_transfer(1203, 1, 3, 5)), result::ok);
  EXPECT_TRUE(e().check_balances().balanced);
}

// Stopping while requests stream in and checkpoints run back to back: close() drains,
// takes the final snapshot after the periodic one, and the ledger reopens whole.
TEST(ledger_checkpoint, close_under_load_with_continuous_checkpoints) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.checkpoint_interval_ms = 1;
  constexpr uint64_t accounts = 20000;
  std::string err;
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, accounts);
  std::atomic<bool> stopped{false};
  std::atomic<uint64_t> acked{0};
  std::thread load([&] {
    uint64_t seed = 7, id = 1;
    while (!stopped) {
      std::vector<wire::transfer> b;
      for (int i = 0; i < 1024; ++i) {
        seed = actors::mix64(seed);
        const uint64_t dr = 1 + seed % accounts, cr = 1 + (seed >> 32) % accounts;
        if (dr != cr) b.push_back(make_transfer(id++, dr, cr, 1 + seed % 50));
      }
      auto r = e->create_transfers(b);
      if (r.st == engine::status::stopping) stopped = true;
      else acked += r.results.size();
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  e->close();
  load.join();
  EXPECT_GT(acked.load(), 0u);
  e.reset();
  e = engine::engine::open(cfg, &err);
  ASSERT_TRUE(e) << err;
  EXPECT_EQ(e->recovery().records_replayed, 0u);  // the final snapshot covers everything
  EXPECT_TRUE(e->check_balances().balanced) << e->check_balances().detail;
}

// Resolved pending transfers leave the shards once a committed snapshot holds their
// final state (memory does not grow with two-phase history); a later post or void of
// one still gets its precise code, read back from the snapshot, also after a restart.
TEST_P(ledger, resolved_pending_transfers_leave_memory_after_checkpoints) {
  seed_accounts();
  fund(1, 1000, 5000);
  auto tracked = [&] { return e().stats().pending_tracked; };
  auto pending = [&](uint64_t id, uint32_t timeout_s) {
    auto p = make_transfer(id, 1, 3, 10, tf::pending);
    p.timeout_s = timeout_s;
    return one(p);
  };
  auto resolve = [&](uint64_t id, uint64_t pending_id, bool post) {
    auto t = make_transfer(id, 0, 0, 0, post ? tf::post_pending : tf::void_pending);
    t.pending_id = {pending_id, 0};
    return one(t);
  };
  const uint64_t before = tracked();
  ASSERT_EQ(pending(5001, 0), result::ok);
  const uint64_t copies = tracked() - before;  // 1, or 2 when accounts 1 and 3 are on two shards
  ASSERT_GE(copies, 1u);
  for (uint64_t id = 5002; id <= 5020; ++id) ASSERT_EQ(pending(id, 0), result::ok);
  for (uint64_t id = 5021; id <= 5025; ++id) ASSERT_EQ(pending(id, 5), result::ok);
  for (uint64_t id = 5026; id <= 5030; ++id) ASSERT_EQ(pending(id, 0), result::ok);
  for (uint64_t id = 5001; id <= 5010; ++id) ASSERT_EQ(resolve(id + 100, id, true), result::ok);
  for (uint64_t id = 5011; id <= 5020; ++id) ASSERT_EQ(resolve(id + 100, id, false), result::ok);
  f_.advance_s(6);
  await_credits_pending(3, 50);
  ASSERT_EQ(acct(3).credits_pending, 50u);  // 5026..5030 still pending
  EXPECT_EQ(tracked(), before + 30 * copies);
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;  // holds the final states
  ASSERT_TRUE(e().checkpoint(&err)) << err;  // started after that commit: evicts them
  EXPECT_EQ(tracked(), before + 5 * copies);
  auto check_resolved_codes = [&](uint64_t first_id) {
    EXPECT_EQ(resolve(first_id, 5001, true), result::pending_transfer_already_posted);
    EXPECT_EQ(resolve(first_id + 1, 5010, false), result::pending_transfer_already_posted);
    EXPECT_EQ(resolve(first_id + 2, 5011, true), result::pending_transfer_already_voided);
    EXPECT_EQ(resolve(first_id + 3, 5021, true), result::pending_transfer_expired);
    EXPECT_EQ(resolve(first_id + 4, 5025, false), result::pending_transfer_expired);
  };
  check_resolved_codes(6000);
  EXPECT_EQ(resolve(5101, 5001, true), result::ok);  // the original post, repeated
  EXPECT_EQ(resolve(5126, 5026, true), result::ok);  // live ones still resolve
  f_.restart();  // the closing snapshot has 5026 posted: only 5027..5030 are loaded
  EXPECT_EQ(tracked(), before + 4 * copies);
  EXPECT_EQ(e().recovery().pending_loaded, 4u);  // resolved rows are not even read
  check_resolved_codes(6100);
  EXPECT_EQ(resolve(6200, 5026, false), result::pending_transfer_already_posted);
  EXPECT_EQ(resolve(5127, 5027, false), result::ok);
  EXPECT_EQ(acct(1).debits_posted, 110u);  // ten posted at 10, then 5026
  EXPECT_EQ(acct(1).debits_pending, 30u);  // 5028..5030
  EXPECT_TRUE(e().check_balances().balanced) << e().check_balances().detail;
}

// A close whose final checkpoint fails says so (mesobd exits 1, "not cleanly"), and
// nothing is lost: the next start replays the log. A clean close says nothing.
TEST_P(ledger, a_close_says_when_its_final_checkpoint_failed) {
  seed_accounts();
  fund(1, 100, 7000);
  const auto before = acct(1);
  storage::failure_probes::instance().snapshot_commit_errno = MDB_MAP_FULL;
  const std::string why = e().close();
  EXPECT_NE(why.find("the final checkpoint failed ("), std::string::npos) << why;
  EXPECT_NE(why.find("MDB_MAP_FULL"), std::string::npos) << why;
  f_.restart();
  const auto after = acct(1);
  EXPECT_EQ(std::memcmp(&before, &after, sizeof before), 0);
  EXPECT_EQ(e().close(), "") << "a clean close";
}

// A checkpoint that fails to commit hands its changes to the next one: each cut holds
// only what changed since the previous cut, so without that the next snapshot would
// lack them while recovery replays only the log after it.
TEST_P(ledger, a_failed_checkpoint_carries_its_changes_to_the_next) {
  seed_accounts();
  fund(1, 100, 7000);
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  ASSERT_EQ(one(make_transfer(7001, 1, 4, 30)), result::ok);
  auto p = make_transfer(7002, 1, 3, 20, tf::pending);
  ASSERT_EQ(one(p), result::ok);
  storage::failure_probes::instance().snapshot_commit_errno = MDB_MAP_FULL;
  EXPECT_EQ(e().stats().checkpoint_failures, 0u);
  EXPECT_FALSE(e().checkpoint(&err));
  EXPECT_NE(err.find("MDB_MAP_FULL"), std::string::npos) << err;
  EXPECT_NE(err.find("raise --snapshot-map-gib"), std::string::npos) << err;
  // Counted, with its error, for operators (the log keeps its segments meanwhile).
  EXPECT_EQ(e().stats().checkpoint_failures, 1u);
  EXPECT_EQ(e().stats().checkpoint_error_last, err);
  // A second failure, with account 1 and 4 changed again: the newest copies win.
  ASSERT_EQ(one(make_transfer(7005, 1, 4, 10)), result::ok);
  storage::failure_probes::instance().snapshot_commit_errno = MDB_MAP_FULL;
  EXPECT_FALSE(e().checkpoint(&err));
  EXPECT_EQ(e().stats().checkpoint_failures, 2u);
  const auto past = e().stats();
  EXPECT_GT(past.lsn_durable, past.snapshot_lsn);
  ASSERT_EQ(one(make_transfer(7003, 6, 2, 5)), result::ok);  // other accounts change after
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  const auto a1 = acct(1), a4 = acct(4), a3 = acct(3);
  f_.restart();
  const auto b1 = acct(1), b4 = acct(4), b3 = acct(3);
  EXPECT_EQ(std::memcmp(&a1, &b1, sizeof a1), 0);
  EXPECT_EQ(std::memcmp(&a4, &b4, sizeof a4), 0);
  EXPECT_EQ(std::memcmp(&a3, &b3, sizeof a3), 0);
  EXPECT_EQ(b4.credits_posted, 40u);
  auto post = make_transfer(7004, 0, 0, 0, tf::post_pending);
  post.pending_id = {7002, 0};
  EXPECT_EQ(one(post), result::ok);  // the pending entry survived too
  EXPECT_TRUE(e().check_balances().balanced) << e().check_balances().detail;
}

// Rows flushed before any checkpoint (no snapshot meta yet) in a store without
// transfer_ids: the start writes their hashes too, and the next start reads them.
TEST(ledger_window, transfer_ids_are_filled_in_for_rows_kept_before_the_first_snapshot) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.transfers_resident_max = 1 << 14;
  cfg.checkpoint_on_close = false;
  std::string err;
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 64);
  for (uint64_t base = 1; base < 40001; base += 4000) {
    std::vector<wire::transfer> b;
    for (uint64_t i = base; i < base + 4000; ++i) b.push_back(make_transfer(i, 1 + i % 64, 1 + (i + 5) % 64, 1 + i % 7));
    for (auto x : e->create_transfers(b).results) ASSERT_EQ(x, result::ok);
  }
  ASSERT_GT(e->stats().transfers_in_snapshot, 0u);
  e.reset();
  uint64_t flushed = 0;
  {
    auto s = storage::snapshot_store::open(dir.path() + "/snapshot", 1ull << 30, &err);
    ASSERT_TRUE(s) << err;
    ASSERT_FALSE(s->read_meta(&err).has_value()) << "no checkpoint yet";
    flushed = engine::record_rows::end(*s, &err).value_or(0);
    ASSERT_GT(flushed, 0u) << err;
    auto w = s->begin(&err);
    ASSERT_TRUE(w->clear(storage::table::transfer_ids));
    ASSERT_TRUE(w->commit_without_meta());
  }
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->recovery().transfer_ids_filled_in, flushed);
  EXPECT_GE(e->recovery().operations_replayed, 40000u) << "replay checks the kept rows";
  e.reset();
  e = open_engine(cfg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->recovery().transfer_ids_filled_in, 0u);
  const auto t = make_transfer(5, 1 + 5 % 64, 1 + 10 % 64, 1 + 5 % 7);
  EXPECT_EQ(e->create_transfers({t}).results.at(0), result::ok);
  auto changed = t;
  changed.amount += 1;
  EXPECT_EQ(e->create_transfers({changed}).results.at(0), result::exists_with_different_fields);
}
