// Payouts in the engine (actors/payout_desk.hpp): holds placed and routed, instructions
// handed to the sink, answers settling (post + move to the gateway's settlement account)
// or failing (void), duplicates and late answers, timeouts with backoff, circuit
// breakers opening, probing and closing, fallback to the next gateway, re-routing when a
// gateway's session closes, dead letters retried and cancelled, and all of it across
// restarts from a snapshot and from the log alone, and a desk per shard across a change
// of the shard count. Money is checked at every step: the wallet, the payout accounts
// (pending = the payouts held), the settlement accounts.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "actors/equb_group.hpp"
#include "actors/payout_desk.hpp"
#include "engine/events.hpp"
#include "storage/failure_probes.hpp"
#include "storage/snapshot.hpp"
#include "storage/wal.hpp"
#include "support/engine_fixture.hpp"
#include "support/event_files.hpp"
#include "support/payouts.hpp"
#include "wire/protocol.hpp"

namespace mesob::test {
namespace {

using actors::payouts::state;
using wire::result;

constexpr uint64_t funding = 999;
constexpr uint64_t starting = 100'000;
constexpr uint64_t settle_a = 7001, settle_b = 7002;
const wire::currency_code etb = wire::currency("ETB");

wire::gateway_op registration(const char* id, uint64_t etb_account, uint32_t priority) {
  return make_gateway_registration(id, etb_account, priority, 1000);
}

// The update that leaves a gateway the broker role alone (its secret kept).
wire::gateway_op broker_only(const char* id, uint64_t etb_account, uint32_t priority) {
  auto update = registration(id, etb_account, priority);
  update.kind = wire::gateway_op_kind::update;
  update.secret_bytes = 0;
  std::memset(update.secret, 0, sizeof update.secret);
  update.roles = wire::roles::broker;
  return update;
}

wire::payout make_payout(uint64_t id, uint64_t wallet, uint64_t amount, uint8_t rail = 1) {
  wire::payout p{};
  p.id = id;
  p.wallet = wallet;
  p.amount = amount;
  p.destination = 251911000000 + id;
  p.currency = etb;
  p.rail = rail;
  return p;
}

struct sent {
  std::string gateway;
  wire::payout_instruction in;
};

class payout_engine : public ::testing::Test {
 protected:
  explicit payout_engine(bool checkpoint_on_close = true) : fx_(2, checkpoint_on_close) { setup(); }

  void setup() {
    attach();
    ASSERT_EQ(e().gateways({registration("alpha", settle_a, 1), registration("beta", settle_b, 2)}).results,
              (std::vector<result>{result::ok, result::ok}));
    std::vector<wire::account> a;
    for (uint64_t id = 1; id <= 8; ++id) a.push_back(make_account(id, wire::account_flags::debits_must_not_exceed_credits));
    a.push_back(make_account(funding));
    for (auto r : e().create_accounts(a).results) ASSERT_EQ(r, result::ok);
    std::vector<wire::transfer> t;
    for (uint64_t id = 1; id <= 8; ++id) t.push_back(make_transfer(5000 + id, funding, id, starting));
    for (auto r : e().create_transfers(t).results) ASSERT_EQ(r, result::ok);
  }
  void attach() {
    e().set_instruction_sink([this](const std::string& g, std::vector<wire::payout_instruction>&& list) {
      std::lock_guard lk(mu_);
      for (const auto& in : list) sent_.push_back({g, in});
    });
  }
  void restart() {
    fx_.restart();
    attach();
  }
  engine::engine& e() { return fx_.e(); }
  uint32_t number(const char* g) { return e().gateway_registry()->find(g)->number; }
  // Every gateway's reconciliation rows, every day.
  std::vector<actors::payouts::recon_row> recon() {
    std::vector<actors::payouts::recon_row> out;
    for (const auto& g : e().gateway_registry()->all()) {
      std::string err;
      const auto r = e().lookup_recon(g.number, std::nullopt, &err);
      EXPECT_EQ(err, "");
      out.insert(out.end(), r.recon.begin(), r.recon.end());
    }
    return out;
  }

  void up(const char* g) { event(g, wire::gateway_event_kind::up); }
  void down(const char* g) { event(g, wire::gateway_event_kind::down); }
  // g's last session closes and its payouts' answer deadline (1 s) passes: they wait for
  // g, which may have paid them (rules version 49), and go to no other gateway meanwhile.
  void lose(const char* g) {
    down(g);
    advance_ms(1100);
  }
  // Payouts `ids` wait for a gateway that may have paid them and has no session up: past
  // route_wait_max they are dead letters (`gateway_silent`), and an operator who checked
  // with that gateway retries them (force; unforced, refused): each is routed afresh and
  // that gateway told to cancel. (What the dead letters' own cancels sent is dropped.)
  void retried_past_a_silent_gateway(std::initializer_list<uint64_t> ids) {
    for (const uint64_t id : ids) ASSERT_EQ(payout(id).st, state::waiting) << id;
    EXPECT_TRUE(pays(take()).empty()) << "no other gateway pays them meanwhile";
    advance_ms(actors::payouts::route_wait_max_ns / 1'000'000 + 1000);
    take();
    for (const uint64_t id : ids) {
      ASSERT_EQ(payout(id).st, state::dead) << id;
      ASSERT_EQ(payout(id).dead, actors::payouts::dead_reason::unanswered) << id;
      wire::payout_op retry{id, etb, wire::payout_op_kind::retry, 0, {}};
      ASSERT_EQ(e().payout_ops({retry}).results.at(0), result::payout_may_be_paid) << id;
      retry.flags = wire::payout_op_flags::force;
      ASSERT_EQ(e().payout_ops({retry}).results.at(0), result::ok) << id;
    }
    sync();
  }
  void event(const char* g, wire::gateway_event_kind k) {
    e().gateway_event({number(g), k, {}});
    sync();
  }
  // Everything submitted before has executed (a read behind it in the stream).
  void sync() { (void)e().lookup_accounts({1}); }
  // Advances the engine clock and lets the sequencer tick through what fell due.
  void advance_ms(uint64_t ms) {
    fx_.set_clock_ns(now_ns() + ms * 1'000'000ull);
    // A tick needs a moment of sequencer time; a write makes one at once.
    for (int i = 0; i < 3; ++i) {
      (void)e().create_accounts({make_account(1)});  // a repeat: changes nothing, stamps the clock
      sync();
    }
  }
  uint64_t now_ns() {
    const auto r = e().create_accounts({make_account(1)});
    return r.timestamp_base;
  }

  // Rewrites payout `id`'s row in the closed engine's snapshot through `change`; with
  // `attempts`, the row must hold that many attempts (else a failure, the row kept).
  void rewrite_payout_row(uint64_t id, const std::function<void(actors::payouts::payout_entry&)>& change,
                          size_t attempts = SIZE_MAX) {
    rewrite_snapshot_row(fx_.dir(), storage::table::payouts, id, [&](std::span<const uint8_t> row) {
      actors::payouts::payout_entry p;
      std::string why;
      if (!actors::payouts::decode_payout(row, &p, &why) || (attempts != SIZE_MAX && p.attempts.size() != attempts)) {
        ADD_FAILURE() << "payout row " << id << ": " << why << " (" << p.attempts.size() << " attempts)";
        return std::vector<uint8_t>{};
      }
      change(p);
      return actors::payouts::encode_payout(p);
    });
  }
  result pay(uint64_t id, uint64_t wallet, uint64_t amount, uint8_t rail = 1) {
    auto r = e().payouts({make_payout(id, wallet, amount, rail)});
    EXPECT_EQ(r.st, engine::status::ok);
    return r.results.at(0);
  }
  result answer(const char* g, uint64_t id, uint32_t attempt, uint64_t amount, wire::payout_outcome o) {
    auto r = e().payout_answers(g, {etb_payout_answer(id, attempt, amount, o)});
    EXPECT_EQ(r.st, engine::status::ok);
    swept();
    return r.results.at(0);
  }
  // The chains answers emitted have run, and the sweeps they started: a look-up of the
  // payouts reaches every shard after what was queued before it, and a sweep finishing
  // starts the next one (what the posts meanwhile added) at once, so none in flight
  // means none to come.
  void swept() {
    sync();
    for (int i = 0; i < 500; ++i) {
      const auto sw = e().lookup_payouts(0, 0).sweeps;
      if (std::none_of(sw.begin(), sw.end(), [](const auto& x) { return x.s.amount != 0; })) return;
    }
    ADD_FAILURE() << "sweeps still in flight";
  }
  std::vector<sent> take() {
    sync();
    std::lock_guard lk(mu_);
    return std::exchange(sent_, {});
  }
  // The instructions of one kind among those taken.
  static std::vector<sent> only(const std::vector<sent>& s, wire::payout_instruction_kind k) {
    std::vector<sent> out;
    for (const auto& x : s)
      if (x.in.kind == k) out.push_back(x);
    return out;
  }
  static std::vector<sent> pays(const std::vector<sent>& s) { return only(s, wire::payout_instruction_kind::pay); }
  static std::vector<sent> cancels(const std::vector<sent>& s) {
    return only(s, wire::payout_instruction_kind::cancel);
  }
  actors::payouts::payout_entry payout(uint64_t id) {
    auto r = e().lookup_payouts(id, 1);
    EXPECT_EQ(r.payouts.size(), 1u) << "payout " << id;
    return r.payouts.empty() ? actors::payouts::payout_entry{} : r.payouts[0];
  }
  bool resolved(uint64_t id) { return e().lookup_payouts(id, 1).payouts.empty(); }
  // Gateway g's breaker at the desk of payout account `desk`.
  actors::payouts::breaker breaker_at(uint64_t desk, const char* g) {
    for (const auto& row : e().lookup_payouts(0, 0).breakers)
      if (row.desk == desk && row.gateway == number(g)) return row.b;
    ADD_FAILURE() << "no breaker for " << g << " at desk " << desk;
    return actors::payouts::breaker{};
  }
  wire::account account(uint64_t id) { return e().lookup_accounts({id}).accounts.at(0); }
  uint64_t available(uint64_t wallet) {
    const auto a = account(wallet);
    return a.credits_posted - a.debits_posted - a.debits_pending;
  }
  // The wallets 1..8 on `shard` of the fixture's shards (they pay into one desk).
  std::vector<uint64_t> wallets_on(uint32_t shard) {
    std::vector<uint64_t> out;
    for (uint64_t w = 1; w <= 8; ++w)
      if (actors::shard_of(w, fx_.shards()) == shard) out.push_back(w);
    return out;
  }
  // The payout accounts every shard count up to 4 would use, those that exist, summed.
  wire::account payout_accounts_total() {
    std::vector<uint64_t> ids;
    for (uint32_t n = 1; n <= 4; ++n)
      for (const uint64_t id : actors::payouts::desk_accounts_for(etb, n))
        if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
    wire::account sum{};
    const auto r = e().lookup_accounts(ids);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (r.results[i] != result::ok) continue;
      sum.credits_pending += r.accounts[i].credits_pending;
      sum.debits_pending += r.accounts[i].debits_pending;
      sum.credits_posted += r.accounts[i].credits_posted;
      sum.debits_posted += r.accounts[i].debits_posted;
    }
    return sum;
  }
  // The payout accounts hold, pending, every payout the desks have, and posted what the
  // sweeps owe.
  void expect_payout_account_consistent() {
    const auto a = payout_accounts_total();
    uint64_t held = 0, counted = 0, problems = 0, owed = 0;
    const auto r = e().lookup_payouts(0, 1u << 20);
    for (const auto& s : r.sweeps) owed += s.s.owed;
    for (const auto& p : r.payouts) {
      held += p.amount;
      problems += p.st == state::dead || p.st == state::settle_refused;
    }
    for (const auto& c : r.payout_counts) counted += c.amount;
    EXPECT_EQ(a.credits_pending, held);
    EXPECT_EQ(counted, held);
    // What the shards publish (the metrics' figures, kept as payouts change) is what the
    // walk counts, by currency and state.
    std::map<std::pair<wire::currency_code, state>, std::pair<uint64_t, uint64_t>> walked, published;
    for (const auto& c : r.payout_counts) {
      auto& w = walked[{c.currency, c.st}];
      w.first += c.n;
      w.second += c.amount;
    }
    for (const auto& c : e().payouts_held()) {
      auto& p = published[{c.currency, c.st}];
      p.first += c.n;
      p.second += c.amount;
    }
    EXPECT_EQ(published, walked);
    EXPECT_EQ(e().lookup_payouts(0, 1u << 20, true).payouts.size(), problems);
    EXPECT_EQ(a.debits_pending, 0u);
    EXPECT_EQ(a.credits_posted - a.debits_posted, owed);
    const auto audit = e().check_balances();  // desks against their accounts too
    EXPECT_TRUE(audit.balanced) << audit.detail;
  }

  // Payout id, made with alpha and beta up: alpha takes it, then alpha's session closes
  // past its deadline and stays closed, and an operator sends it on: beta takes it as
  // attempt 2 (and alpha is told to cancel).
  void via_alpha_to_beta(uint64_t id, uint64_t wallet, uint64_t amount) {
    up("alpha");
    ASSERT_EQ(pay(id, wallet, amount), result::ok);
    ASSERT_EQ(pays(take()).at(0).gateway, "alpha");
    lose("alpha");
    ASSERT_NO_FATAL_FAILURE(retried_past_a_silent_gateway({id}));
    ASSERT_EQ(pays(take()).at(0).gateway, "beta");
  }

  // An operator's cancel of payout id (`force`: the operator checked with a gateway that
  // may have paid it); the void it starts has run.
  result cancel_op(uint64_t id, bool force = false) {
    const wire::payout_op op{id, etb, wire::payout_op_kind::cancel, force ? wire::payout_op_flags::force : uint8_t(0), {}};
    const result r = e().payout_ops({op}).results.at(0);
    sync();
    sync();
    return r;
  }
  // Closes the engine and reads its event log: the events of one type.
  std::vector<wire::event> closed_events(wire::event_type type) {
    fx_.close();
    std::vector<wire::event> out;
    for (const auto& ev : all_events(fx_.dir()))
      if (ev.type == type) out.push_back(ev);
    return out;
  }

  engine_fixture fx_;
  std::mutex mu_;
  std::vector<sent> sent_;
};

TEST_F(payout_engine, settled_payout_posts_the_hold_into_the_gateways_settlement_account) {
  up("alpha");
  ASSERT_EQ(pay(1, 1, 2500), result::ok);
  EXPECT_EQ(available(1), starting - 2500);
  auto s = take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "alpha");
  EXPECT_EQ(s[0].in.payout_id, 1u);
  EXPECT_EQ(s[0].in.attempt, 1u);
  EXPECT_EQ(s[0].in.amount, 2500u);
  EXPECT_EQ(s[0].in.destination, 251911000001u);
  EXPECT_EQ(payout(1).st, state::in_flight);
  expect_payout_account_consistent();

  // Bad answers first: each precise, none changing anything.
  EXPECT_EQ(answer("beta", 1, 1, 2500, wire::payout_outcome::settled), result::payout_wrong_gateway);
  EXPECT_EQ(answer("alpha", 1, 2, 2500, wire::payout_outcome::settled), result::payout_instruction_unknown);
  EXPECT_EQ(answer("alpha", 1, 1, 2400, wire::payout_outcome::settled), result::payout_amount_mismatch);
  EXPECT_EQ(answer("alpha", 77, 1, 2500, wire::payout_outcome::settled), result::payout_not_found);
  EXPECT_EQ(answer("nobody", 1, 1, 2500, wire::payout_outcome::settled), result::gateway_not_registered);
  EXPECT_EQ(payout(1).st, state::in_flight);
  EXPECT_EQ(available(1), starting - 2500);

  EXPECT_EQ(answer("alpha", 1, 1, 2500, wire::payout_outcome::settled), result::ok);
  EXPECT_TRUE(resolved(1));
  const auto w = account(1);
  EXPECT_EQ(w.debits_posted, 2500u);
  EXPECT_EQ(w.debits_pending, 0u);
  const auto st = account(settle_a);
  EXPECT_EQ(st.credits_posted, 2500u);
  // A duplicate answer is recognised and changes nothing.
  EXPECT_EQ(answer("alpha", 1, 1, 2500, wire::payout_outcome::settled), result::payout_already_resolved);
  EXPECT_EQ(answer("alpha", 1, 1, 2500, wire::payout_outcome::failed), result::payout_already_resolved);
  EXPECT_EQ(account(1).debits_posted, 2500u);
  EXPECT_EQ(account(settle_a).credits_posted, 2500u);
  // The payout id is the hold's: a retry of the request returns its first result.
  EXPECT_EQ(pay(1, 1, 2500), result::ok);
  EXPECT_TRUE(take().empty());
  expect_payout_account_consistent();
}

// A listing pages in id order: each shard copies the lowest ids from `from_id` on, so
// the merged lowest `limit` are the lowest held, and the next page starts after them.
// Before, each shard copied the first it met in its tables' order: an arbitrary subset,
// and payouts past the limit could never be listed.
TEST_F(payout_engine, the_payout_listing_pages_in_id_order) {
  up("alpha");
  std::vector<uint64_t> ids;
  for (uint64_t i = 0; i < 40; ++i) ids.push_back(1000 + (i * 37) % 97);  // scattered, distinct
  for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(pay(ids[i], 1 + i % 8, 10), result::ok) << ids[i];
  std::sort(ids.begin(), ids.end());
  std::vector<uint64_t> seen;
  uint64_t from = 0;
  for (int page = 0; page < 10 && seen.size() < ids.size(); ++page) {
    auto r = e().lookup_payouts(0, 7, false, false, from);
    std::vector<uint64_t> got;
    for (const auto& p : r.payouts) {
      EXPECT_GE(p.id, from);
      got.push_back(p.id);
    }
    std::sort(got.begin(), got.end());
    if (got.size() > 7) got.resize(7);  // the merged lowest 7 (each shard gives its own 7)
    ASSERT_FALSE(got.empty());
    seen.insert(seen.end(), got.begin(), got.end());
    from = got.back() + 1;
  }
  EXPECT_EQ(seen, ids) << "every payout, once, in id order";
}

TEST_F(payout_engine, failed_payout_voids_the_hold_and_bad_requests_are_refused) {
  up("alpha");
  ASSERT_EQ(pay(2, 2, 700), result::ok);
  ASSERT_EQ(take().size(), 1u);
  EXPECT_EQ(answer("alpha", 2, 1, 700, wire::payout_outcome::failed), result::ok);
  EXPECT_TRUE(resolved(2));
  EXPECT_EQ(available(2), starting);
  EXPECT_EQ(account(2).debits_posted, 0u);
  EXPECT_EQ(account(settle_a).credits_posted, 0u);

  EXPECT_EQ(pay(3, 3, starting + 1), result::exceeds_credits);  // the ledger's own check
  EXPECT_EQ(pay(4, 3, 10, 3), result::payout_rail_unserved);      // no bank gateway
  EXPECT_EQ(pay(5, 3, 10, 9), result::rail_invalid);
  EXPECT_EQ(pay(0, 3, 10), result::id_must_not_be_zero);
  EXPECT_EQ(pay(6, 3, 0), result::amount_must_not_be_zero);
  wire::payout nowhere = make_payout(60, 3, 10);
  nowhere.destination = 0;  // (before, held, and a gateway told to pay destination 0)
  EXPECT_EQ(e().payouts({nowhere}).results.at(0), result::payout_destination_missing);
  const uint64_t pa = actors::payouts::desk_account_for(etb, 0, 2);
  EXPECT_EQ(pay(7, pa, 10), result::payout_account_reserved);
  EXPECT_EQ(pay(8, actors::payouts::desk_account(etb, 4095), 10), result::payout_account_reserved);
  // Only a customer wallet pays out (rules version 42): not a gateway's settlement account
  // (its hold's post and sweep would net to nothing while the gateway paid), not a
  // system account.
  wire::account treasury = make_account(8100);
  treasury.kind = wire::account_kind::system;
  ASSERT_EQ(e().create_accounts({treasury}).results.at(0), result::ok);
  ASSERT_EQ(e().create_transfers({make_transfer(8101, funding, treasury.id, 100)}).results.at(0), result::ok);
  EXPECT_EQ(pay(11, settle_a, 10), result::customer_wallet_required);
  EXPECT_EQ(pay(12, treasury.id, 10), result::customer_wallet_required);
  EXPECT_EQ(account(settle_a).debits_pending, 0u);
  EXPECT_EQ(account(treasury.id).debits_pending, 0u);
  EXPECT_TRUE(take().empty());
  // Nobody else may touch the payout accounts or the holds.
  EXPECT_EQ(e().create_transfers({make_transfer(8001, 3, pa, 5)}).results.at(0), result::payout_account_reserved);
  EXPECT_EQ(e().create_transfers({make_transfer(8002, pa, 3, 5)}).results.at(0), result::payout_account_reserved);
  ASSERT_EQ(pay(9, 3, 50), result::ok);
  wire::transfer post = make_transfer(8003, 0, 0, 0, wire::transfer_flags::post_pending);
  post.pending_id = actors::payouts::hold_id(9);
  EXPECT_EQ(e().create_transfers({post}).results.at(0), result::id_reserved);
  wire::account fake = make_account(actors::payouts::desk_account(wire::currency("USD"), 7));
  fake.currency = wire::currency("USD");
  EXPECT_EQ(e().create_accounts({fake}).results.at(0), result::id_reserved);
  EXPECT_EQ(e().set_account_status({{pa, wire::account_status::frozen}}).results.at(0), result::payout_account_reserved);
  // An answer or an operator's action naming payout 9 in another currency than its hold's
  // does not match it (before, payout_not_found: as if there were no payout 9); an
  // operator's action of an unknown kind is kind_invalid (before, payout_answer_invalid).
  wire::payout_answer usd = etb_payout_answer(9, 1, 50, wire::payout_outcome::failed);
  usd.currency = wire::currency("USD");
  EXPECT_EQ(e().payout_answers("alpha", {usd}).results.at(0), result::payout_amount_mismatch);
  EXPECT_EQ(e().payout_ops({{9, wire::currency("USD"), wire::payout_op_kind::cancel, {}}}).results.at(0),
            result::payout_amount_mismatch);
  EXPECT_EQ(e().payout_ops({{9, etb, wire::payout_op_kind(9), {}}}).results.at(0), result::kind_invalid);
  EXPECT_EQ(e().payout_ops({{99, etb, wire::payout_op_kind::cancel, {}}}).results.at(0), result::payout_not_found);
  EXPECT_FALSE(resolved(9)) << "nothing moved";
  expect_payout_account_consistent();
  // With no gateway serving the rail any more, a retry of a payout made before is still
  // its repeat (it is held and will be paid), not payout_rail_unserved: a client taking
  // that for "not made" would pay out again under another id.
  for (const char* g : {"alpha", "beta"}) {
    wire::gateway_op off{};
    off.kind = wire::gateway_op_kind::disable;
    actors::gateways::set_op_id(off, g);
    ASSERT_EQ(e().gateways({off}).results.at(0), result::ok);
  }
  EXPECT_EQ(pay(9, 3, 50), result::ok);
  EXPECT_EQ(pay(9, 3, 51), result::exists_with_different_fields);
  EXPECT_EQ(pay(10, 3, 50), result::payout_rail_unserved);
  EXPECT_EQ(available(3), starting - 50);
}

// A gateway that never answers, its session up: 3 tries (timeout 1 s, backoff between),
// then it is asked to cancel; saying nothing to that either, one more timeout later, the
// payout is a dead letter (gateway_silent, hold kept), never sent to beta while alpha may
// have paid it (rules version 38; before, beta took it then). Alpha's `failed` for its
// attempt sends it on to beta at once, which settles it.
TEST_F(payout_engine, timeouts_retry_with_backoff_then_a_silent_gateway_holds_the_payout_until_it_answers) {
  up("alpha");
  up("beta");
  ASSERT_EQ(pay(10, 1, 100), result::ok);
  auto s = take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "alpha");  // priority 1 first
  std::vector<std::string> route;
  for (int step = 0; step < 40; ++step) {  // 20 s, in steps of 500 ms
    advance_ms(500);
    for (const auto& x : take())
      route.push_back((x.in.kind == wire::payout_instruction_kind::cancel ? "cancel " : "") + x.gateway + "#" +
                      std::to_string(x.in.attempt));
  }
  // (The cancel goes again as the payout becomes a dead letter: nobody works it now.)
  EXPECT_EQ(route, (std::vector<std::string>{"alpha#2", "alpha#3", "cancel alpha#3", "cancel alpha#3"}));
  auto p = payout(10);
  EXPECT_EQ(p.st, state::dead);
  EXPECT_EQ(p.dead, actors::payouts::dead_reason::unanswered);
  EXPECT_EQ(p.attempts.size(), 3u);
  EXPECT_EQ(available(1), starting - 100) << "the hold stays";
  // A late failure for an earlier attempt changes nothing; alpha saying it did not pay
  // the latest sends the payout on to beta, which settles attempt 4.
  EXPECT_EQ(answer("alpha", 10, 2, 100, wire::payout_outcome::failed), result::payout_answer_late);
  EXPECT_TRUE(pays(take()).empty());
  EXPECT_EQ(answer("alpha", 10, 3, 100, wire::payout_outcome::failed), result::ok);
  s = pays(take());
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "beta");
  EXPECT_EQ(s[0].in.attempt, 4u);
  EXPECT_EQ(answer("beta", 10, 4, 100, wire::payout_outcome::settled), result::ok);
  EXPECT_TRUE(resolved(10));
  EXPECT_EQ(account(settle_b).credits_posted, 100u);
  EXPECT_EQ(account(settle_a).credits_posted, 0u);
  expect_payout_account_consistent();
}

// A gateway given up after its timeouts, with a session up, is asked to cancel before
// another pays: its `failed` sends the payout on at once, its `settled` settles it and
// the next gateway never gets it.
TEST_F(payout_engine, a_gateway_given_up_is_asked_to_cancel_before_the_next_pays) {
  up("alpha");
  up("beta");
  ASSERT_EQ(pay(13, 3, 130), result::ok);
  ASSERT_EQ(pay(14, 4, 140), result::ok);
  take();
  // Both time out three times at alpha; each gets a cancel naming attempt 3.
  std::map<uint64_t, uint32_t> asked;
  for (int step = 0; step < 60 && asked.size() < 2; ++step) {
    advance_ms(250);
    for (const auto& x : take()) {
      EXPECT_EQ(x.gateway, "alpha") << x.in.payout_id;
      if (x.in.kind == wire::payout_instruction_kind::cancel) asked[x.in.payout_id] = x.in.attempt;
    }
  }
  ASSERT_EQ(asked.size(), 2u);
  EXPECT_EQ(asked[13], 3u);
  EXPECT_EQ(asked[14], 3u);
  EXPECT_EQ(payout(13).st, state::waiting);
  EXPECT_EQ(payout(13).cancel_wait, number("alpha"));
  // 13: alpha did not pay; beta gets it now, not a timeout later.
  EXPECT_EQ(answer("alpha", 13, 3, 130, wire::payout_outcome::failed), result::ok);
  auto s = pays(take());
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "beta");
  EXPECT_EQ(s[0].in.payout_id, 13u);
  EXPECT_EQ(s[0].in.attempt, 4u);
  EXPECT_EQ(answer("beta", 13, 4, 130, wire::payout_outcome::settled), result::ok);
  // 14: alpha paid: settled through alpha; beta never gets it, however long we wait.
  EXPECT_EQ(answer("alpha", 14, 3, 140, wire::payout_outcome::settled), result::ok);
  EXPECT_TRUE(resolved(14));
  advance_ms(5000);
  EXPECT_TRUE(pays(take()).empty());
  EXPECT_EQ(account(settle_a).credits_posted, 140u);
  EXPECT_EQ(account(settle_b).credits_posted, 130u);
  EXPECT_TRUE(e().lookup_payouts(13, 1).watched_payouts.empty()) << "alpha answered: nothing kept";
  expect_payout_account_consistent();
}

TEST_F(payout_engine, a_timeout_then_the_retry_on_the_same_gateway_settles) {
  up("alpha");
  ASSERT_EQ(pay(12, 2, 120), result::ok);
  ASSERT_EQ(take().size(), 1u);
  std::vector<sent> s;
  for (int i = 0; i < 20 && s.empty(); ++i) {
    advance_ms(300);
    s = take();
  }
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "alpha");
  EXPECT_EQ(s[0].in.attempt, 2u);
  EXPECT_EQ(payout(12).st, state::in_flight);
  EXPECT_EQ(answer("alpha", 12, 2, 120, wire::payout_outcome::settled), result::ok);
  EXPECT_TRUE(resolved(12));
  EXPECT_EQ(account(settle_a).credits_posted, 120u);
  const auto br = e().lookup_payouts(0, 0).breakers.at(0).b;
  EXPECT_EQ(br.timeouts, 1u);
  EXPECT_EQ(br.settled, 1u);
  expect_payout_account_consistent();
}

// Settled payouts reach the settlement account in sweeps: one per desk and settlement
// account in flight, carrying every post finished meanwhile. A refused sweep (the
// settlement account frozen) keeps what it owes, visibly, in the payout account, and is
// tried again a minute later; nothing is lost or moved twice.
TEST_F(payout_engine, sweeps_carry_settlements_and_a_refused_one_is_tried_again) {
  up("alpha");
  const auto w = wallets_on(0);
  ASSERT_GE(w.size(), 1u);
  // Many settled in one request of answers: far fewer sweeps than payouts.
  std::vector<wire::payout_answer> answers;
  for (uint64_t id = 70; id < 90; ++id) {
    ASSERT_EQ(pay(id, w[id % w.size()], 10), result::ok);
    answers.push_back(etb_payout_answer(id, 1, 10));
  }
  take();
  const auto r = e().payout_answers("alpha", answers);
  for (auto x : r.results) ASSERT_EQ(x, result::ok);
  swept();
  EXPECT_EQ(account(settle_a).credits_posted, 200u);
  const auto history = e().lookup_account_transfers({{settle_a, 0, 100}}).pages.at(0).records;
  EXPECT_GE(history.size(), 1u);
  EXPECT_LT(history.size(), 20u) << "a sweep per payout";
  for (const auto& rec : history) EXPECT_EQ(rec.t.code, actors::payouts::code_settle);
  EXPECT_TRUE(e().lookup_payouts(0, 0).sweeps.empty());
  expect_payout_account_consistent();

  // Frozen settlement account: the post goes through, the sweep is refused.
  ASSERT_EQ(e().set_account_status({{settle_a, wire::account_status::frozen}}).results.at(0), result::ok);
  ASSERT_EQ(pay(91, w[0], 35), result::ok);
  take();
  EXPECT_EQ(answer("alpha", 91, 1, 35, wire::payout_outcome::settled), result::ok);
  EXPECT_TRUE(resolved(91));
  EXPECT_EQ(account(w[0]).debits_pending, 0u);
  auto sw = e().lookup_payouts(0, 0).sweeps;
  ASSERT_EQ(sw.size(), 1u);
  EXPECT_EQ(sw[0].settlement, settle_a);
  EXPECT_EQ(sw[0].s.owed, 35u);
  EXPECT_EQ(sw[0].s.amount, 0u);  // not in flight
  EXPECT_NE(sw[0].s.refusal, result::ok);
  EXPECT_EQ(account(settle_a).credits_posted, 200u);
  expect_payout_account_consistent();
  // Another settlement meanwhile adds to what is owed; no new sweep before the retry.
  ASSERT_EQ(pay(92, w[0], 5), result::ok);
  take();
  EXPECT_EQ(answer("alpha", 92, 1, 5, wire::payout_outcome::settled), result::ok);
  EXPECT_EQ(e().lookup_payouts(0, 0).sweeps.at(0).s.owed, 40u);
  expect_payout_account_consistent();
  // The same across a restart (the desk's snapshot row keeps the sweep).
  restart();
  up("alpha");
  sw = e().lookup_payouts(0, 0).sweeps;
  ASSERT_EQ(sw.size(), 1u);
  EXPECT_EQ(sw[0].s.owed, 40u);
  expect_payout_account_consistent();
  EXPECT_EQ(sw[0].s.refusals, 1u);
  // Still frozen a minute on: refused again, and the next retry two minutes later, then
  // four (rules version 25: each retry records a transfer).
  advance_ms(61'000);
  swept();
  sw = e().lookup_payouts(0, 0).sweeps;
  ASSERT_EQ(sw.size(), 1u);
  EXPECT_EQ(sw[0].s.refusals, 2u);
  const uint64_t refused_at = now_ns();
  EXPECT_GT(sw[0].s.retry_at, refused_at + 110'000'000'000ull);
  EXPECT_LT(sw[0].s.retry_at, refused_at + 130'000'000'000ull);
  advance_ms(61'000);  // not yet
  swept();
  EXPECT_EQ(e().lookup_payouts(0, 0).sweeps.at(0).s.refusals, 2u);
  advance_ms(61'000);
  swept();
  sw = e().lookup_payouts(0, 0).sweeps;
  ASSERT_EQ(sw.size(), 1u);
  EXPECT_EQ(sw[0].s.refusals, 3u);
  EXPECT_EQ(sw[0].s.owed, 40u);
  expect_payout_account_consistent();
  // Thawed, and four minutes on: the retry moves all of it, once.
  ASSERT_EQ(e().set_account_status({{settle_a, wire::account_status::open}}).results.at(0), result::ok);
  advance_ms(241'000);
  swept();
  EXPECT_EQ(account(settle_a).credits_posted, 240u);
  EXPECT_TRUE(e().lookup_payouts(0, 0).sweeps.empty());
  advance_ms(61'000);
  EXPECT_EQ(account(settle_a).credits_posted, 240u);
  expect_payout_account_consistent();
}

// A payout row's past times (made, waiting since, each attempt sent) come before the
// snapshot's clock: a row with one past it is damage, and the start is refused by name.
TEST_F(payout_engine, a_payout_row_with_a_time_past_the_snapshot_refuses_the_start) {
  up("alpha");
  ASSERT_EQ(pay(60, 1, 100), result::ok);
  take();
  const uint64_t now = fx_.now_ns();
  fx_.close();  // with a snapshot
  auto rewrite = [&](const std::function<void(actors::payouts::payout_entry&)>& change) {
    rewrite_payout_row(60, change, 1);
  };
  uint64_t made_at = 0, sent_at = 0;  // as written
  rewrite([&](actors::payouts::payout_entry& p) {
    made_at = p.created_at;
    sent_at = p.attempts[0].sent_at;
  });
  std::string err;
  for (const auto& change : std::vector<std::function<void(actors::payouts::payout_entry&)>>{
           [&](actors::payouts::payout_entry& p) { p.created_at = now + 1'000'000'000'000ull; },
           [&](actors::payouts::payout_entry& p) { p.attempts[0].sent_at = now + 1'000'000'000'000ull; }}) {
    rewrite(change);
    EXPECT_FALSE(engine::engine::open(fx_.config(), &err));
    EXPECT_NE(err.find("snapshot: payouts: payout 60: a time (made, waiting since or an attempt sent)"), std::string::npos)
        << err;
    EXPECT_NE(err.find("past the snapshot's clock"), std::string::npos) << err;
    rewrite([&](actors::payouts::payout_entry& p) {
      p.created_at = made_at;
      p.attempts[0].sent_at = sent_at;
    });
  }
  fx_.open();
  attach();
  EXPECT_EQ(e().lookup_payouts(0, 10).payouts.size(), 1u);
}

// Each payout is its own hold's: two payout rows that swapped amounts (or wallets) keep
// the payout account's pending sum, but one customer's hold would then pay the other's
// payout. The start refuses it by name, nothing changed; the rows as written start.
TEST_F(payout_engine, payout_rows_that_disagree_with_their_holds_refuse_the_start) {
  up("alpha");
  ASSERT_EQ(pay(60, 1, 100), result::ok);
  ASSERT_EQ(pay(61, 2, 250), result::ok);
  take();
  fx_.close();  // with a snapshot
  uint64_t desk60 = 0, desk61 = 0;
  rewrite_payout_row(60, [&](actors::payouts::payout_entry& p) { desk60 = p.desk; });
  rewrite_payout_row(61, [&](actors::payouts::payout_entry& p) { desk61 = p.desk; });
  std::string err;
  rewrite_payout_row(60, [](actors::payouts::payout_entry& p) { p.amount = 250; });
  rewrite_payout_row(61, [](actors::payouts::payout_entry& p) { p.amount = 100; });
  EXPECT_FALSE(engine::engine::open(fx_.config(), &err));
  // (The two may be at two desks, one per shard: the lower payout account's is named.)
  const std::string d60 = std::to_string(desk60), d61 = std::to_string(desk61);
  const bool first60 = desk60 <= desk61;
  EXPECT_NE(err.find(first60 ? "snapshot: payouts: payout 60: it pays 250 in ETB from wallet 1 through payout account " +
                                   d60 + " but its hold (transfer serial "
                             : "snapshot: payouts: payout 61: it pays 100 in ETB from wallet 2 through payout account " +
                                   d61 + " but its hold (transfer serial "),
            std::string::npos)
      << err;
  EXPECT_NE(err.find(first60 ? ") holds 100 in ETB from account 1 to " + d60 : ") holds 250 in ETB from account 2 to " + d61),
            std::string::npos)
      << err;
  rewrite_payout_row(60, [](actors::payouts::payout_entry& p) { p.amount = 100; });
  rewrite_payout_row(61, [](actors::payouts::payout_entry& p) { p.amount = 250; });
  rewrite_payout_row(61, [](actors::payouts::payout_entry& p) { p.wallet = 1; });
  EXPECT_FALSE(engine::engine::open(fx_.config(), &err));
  EXPECT_NE(err.find("snapshot: payouts: payout 61: it pays 250 in ETB from wallet 1 through payout account "),
            std::string::npos)
      << err;
  rewrite_payout_row(61, [](actors::payouts::payout_entry& p) { p.wallet = 2; });
  fx_.open();
  attach();
  EXPECT_EQ(e().lookup_payouts(0, 10).payouts.size(), 2u);
}

// A desk's steps name its chains' transfer ids: two payout rows on one step (each row
// well formed, the step one the desk took) refuse the start by name. Loaded, the second
// chain would be refused as the first's repeat, the payout stuck with its hold.
TEST_F(payout_engine, two_payouts_on_one_chain_step_refuse_the_start) {
  up("alpha");
  ASSERT_EQ(pay(60, 1, 100), result::ok);
  take();
  ASSERT_EQ(answer("alpha", 60, 1, 100, wire::payout_outcome::settled), result::ok);  // its chain, its sweep: steps taken
  ASSERT_EQ(pay(61, 1, 100), result::ok);
  ASSERT_EQ(pay(62, 1, 50), result::ok);  // the same wallet: the same desk
  take();
  fx_.close();  // with a snapshot
  auto set_step = [&](uint64_t id, uint64_t step) {
    rewrite_payout_row(id, [&](actors::payouts::payout_entry& p) { p.chain_step = step; });
  };
  set_step(61, 1);
  std::string err;
  {
    auto e = engine::engine::open(fx_.config(), &err);  // one payout on a spent step: well formed
    EXPECT_TRUE(e) << err;
  }
  set_step(62, 1);
  EXPECT_FALSE(engine::engine::open(fx_.config(), &err));
  EXPECT_EQ(err, "snapshot: payouts: payout 62: its chain's step 1 is payout 61's");
  set_step(61, 0);
  set_step(62, 0);
  fx_.open();
  attach();
  EXPECT_EQ(e().lookup_payouts(0, 10).payouts.size(), 2u);
}

// A desk's sweeps are emitted without a request's checks: a desk row whose sweep goes to
// a customer's wallet, or a payout row whose attempt names a wallet as its gateway's
// settlement account or a gateway never registered (each row well formed, every sum
// agreeing), refuses the start by name. Loaded, the sweep would move settled money into
// that wallet.
TEST_F(payout_engine, a_desk_naming_a_wallet_or_an_unknown_gateway_refuses_the_start) {
  up("alpha");
  const auto w = wallets_on(0);
  ASSERT_GE(w.size(), 1u);
  // A sweep refused (the settlement account frozen): still owed in the snapshot.
  ASSERT_EQ(e().set_account_status({{settle_a, wire::account_status::frozen}}).results.at(0), result::ok);
  ASSERT_EQ(pay(60, w[0], 35), result::ok);
  take();
  ASSERT_EQ(answer("alpha", 60, 1, 35, wire::payout_outcome::settled), result::ok);
  ASSERT_EQ(e().lookup_payouts(0, 0).sweeps.size(), 1u);
  ASSERT_EQ(pay(61, w[0], 20), result::ok);  // in flight: an attempt sent to alpha
  take();
  fx_.close();  // with a snapshot
  uint64_t desk = 0;
  auto rewrite_payout = [&](const std::function<void(actors::payouts::payout_entry&)>& change) {
    rewrite_payout_row(61, change, 1);
  };
  uint64_t settlement = 0;
  rewrite_payout([&](actors::payouts::payout_entry& p) {
    desk = p.desk;
    settlement = p.attempts[0].settlement;
  });
  ASSERT_EQ(settlement, settle_a);
  auto rewrite_desk = [&](uint64_t from, uint64_t to) {
    rewrite_snapshot_row(fx_.dir(), storage::table::desks, desk, [&](std::span<const uint8_t> row) {
      actors::payouts::desk d;
      std::string why;
      if (!actors::payouts::decode_desk(row, &d, &why) || d.sweeps.count(from) != 1) {
        ADD_FAILURE() << "desk row " << desk << ": " << why;
        return std::vector<uint8_t>{};
      }
      d.sweeps[to] = d.sweeps[from];
      d.sweeps.erase(from);
      return actors::payouts::encode_desk(d);
    });
  };
  const std::string wallet = std::to_string(w[0]);
  rewrite_desk(settle_a, w[0]);
  std::string err;
  EXPECT_FALSE(engine::engine::open(fx_.config(), &err));
  EXPECT_EQ(err, "snapshot: payouts: the ETB payout account " + std::to_string(desk) + " owes a sweep to account " +
                     wallet + " is not a ETB settlement account");
  rewrite_desk(w[0], settle_a);
  rewrite_payout([&](actors::payouts::payout_entry& p) { p.attempts[0].settlement = w[0]; });
  EXPECT_FALSE(engine::engine::open(fx_.config(), &err));
  EXPECT_EQ(err, "snapshot: payouts: payout 61: its gateway's settlement account " + wallet +
                     " is not a ETB settlement account");
  rewrite_payout([&](actors::payouts::payout_entry& p) { p.attempts[0].settlement = settle_a; });
  // And a gateway number past the registry's (alpha 1, beta 2): a payout waiting on it
  // would wait for good.
  uint32_t sent_to = 0;
  rewrite_payout([&](actors::payouts::payout_entry& p) { sent_to = std::exchange(p.attempts[0].gateway, 9); });
  EXPECT_FALSE(engine::engine::open(fx_.config(), &err));
  EXPECT_EQ(err, "snapshot: payouts: payout 61: it names gateway 9, which is not registered");
  rewrite_payout([&](actors::payouts::payout_entry& p) { p.attempts[0].gateway = sent_to; });
  fx_.open();
  attach();
  EXPECT_EQ(e().lookup_payouts(0, 0).sweeps.size(), 1u);
}

// A payout account holding money has its desk: the desks row lost from the snapshot
// (with its payouts' rows, which would otherwise bring a desk back) refuses the start by
// name, nothing changed. Before, the start passed, the account's money held for payouts
// that no desk would ever pay or release.
TEST_F(payout_engine, a_payout_account_holding_money_without_its_desk_refuses_the_start) {
  up("alpha");
  ASSERT_EQ(pay(61, 1, 100), result::ok);
  take();
  const uint64_t desk = actors::payouts::desk_account_for(etb, actors::shard_of(1, fx_.shards()), fx_.shards());
  fx_.close();  // with a snapshot
  std::string err;
  {
    auto s = storage::snapshot_store::open(fx_.dir() + "/snapshot", 1ull << 30, &err);
    ASSERT_TRUE(s) << err;
    std::string kept;
    ASSERT_TRUE(s->get(storage::table::desks, desk, &kept, &err)) << err;
    auto w = s->begin(&err);
    ASSERT_TRUE(w) << err;
    ASSERT_TRUE(w->erase(storage::table::desks, desk)) << w->error();
    ASSERT_TRUE(w->erase(storage::table::payouts, 61)) << w->error();
    ASSERT_TRUE(w->commit_without_meta()) << w->error();
  }
  EXPECT_FALSE(engine::engine::open(fx_.config(), &err));
  EXPECT_NE(err.find("snapshot: payouts: the ETB payout account " + std::to_string(desk) +
                     " holds 100 pending and 0 posted but has no desk (its desks row is lost)"),
            std::string::npos)
      << err;
}

TEST_F(payout_engine, a_late_settlement_of_an_earlier_attempt_still_settles_once) {
  up("alpha");
  ASSERT_EQ(pay(11, 1, 300), result::ok);
  take();
  advance_ms(1100);  // attempt 1 timed out; attempt 2 waits for its backoff
  for (int i = 0; i < 10 && payout(11).attempts.size() < 2; ++i) advance_ms(300);
  ASSERT_EQ(payout(11).attempts.size(), 2u);
  EXPECT_EQ(answer("alpha", 11, 1, 300, wire::payout_outcome::settled), result::ok);  // the money went out
  EXPECT_TRUE(resolved(11));
  EXPECT_EQ(answer("alpha", 11, 2, 300, wire::payout_outcome::settled), result::payout_already_resolved);
  EXPECT_EQ(account(1).debits_posted, 300u);
  EXPECT_EQ(account(settle_a).credits_posted, 300u);
  expect_payout_account_consistent();
}

TEST_F(payout_engine, breaker_opens_on_failures_probes_half_open_and_closes) {
  up("alpha");
  up("beta");
  // Breakers are per desk (currency and shard): wallets on one shard pay into one desk.
  const auto w = wallets_on(actors::shard_of(1, fx_.shards()));
  ASSERT_GE(w.size(), 1u);
  // Twenty failures out of twenty: alpha's breaker opens.
  for (uint64_t id = 100; id < 120; ++id) {
    ASSERT_EQ(pay(id, w[id % w.size()], 10), result::ok);
    ASSERT_EQ(answer("alpha", id, 1, 10, wire::payout_outcome::failed), result::ok);
  }
  take();
  const uint64_t desk = actors::payouts::desk_account_for(etb, actors::shard_of(1, fx_.shards()), fx_.shards());
  auto alpha_breaker = [&] { return breaker_at(desk, "alpha"); };
  EXPECT_EQ(alpha_breaker().ph, actors::payouts::breaker::phase::open);
  EXPECT_EQ(alpha_breaker().failed, 20u);
  // Open: new payouts go to beta.
  ASSERT_EQ(pay(200, w[0], 10), result::ok);
  auto s = take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "beta");
  ASSERT_EQ(answer("beta", 200, 1, 10, wire::payout_outcome::settled), result::ok);
  // The other shard's desk has its own breaker for alpha, closed: its wallets' payouts
  // still go to alpha.
  const auto other = wallets_on(1 - actors::shard_of(1, fx_.shards()));
  ASSERT_FALSE(other.empty());
  ASSERT_EQ(pay(199, other[0], 10), result::ok);
  s = take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "alpha");
  ASSERT_EQ(answer("alpha", 199, 1, 10, wire::payout_outcome::settled), result::ok);
  // After 4 answer timeouts it is half-open: one probe goes to alpha, the next to beta.
  advance_ms(4100);
  ASSERT_EQ(pay(201, w[0], 10), result::ok);
  ASSERT_EQ(pay(202, w[1 % w.size()], 10), result::ok);
  s = take();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].gateway, "alpha");
  EXPECT_EQ(s[0].in.payout_id, 201u);
  EXPECT_EQ(s[1].gateway, "beta");
  EXPECT_EQ(alpha_breaker().ph, actors::payouts::breaker::phase::half_open);
  // The probe succeeds: closed again, alpha takes payouts.
  ASSERT_EQ(answer("alpha", 201, 1, 10, wire::payout_outcome::settled), result::ok);
  EXPECT_EQ(alpha_breaker().ph, actors::payouts::breaker::phase::closed);
  ASSERT_EQ(pay(203, w[2 % w.size()], 10), result::ok);
  s = take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "alpha");
  expect_payout_account_consistent();
  // Each change of alpha's breaker at this desk is an event: open, half open, closed.
  const uint32_t alpha = number("alpha");
  const auto moves = closed_events(wire::event_type::payout_breaker);
  ASSERT_EQ(moves.size(), 3u);
  const uint16_t want[] = {2, 3, 1};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(moves[i].code, want[i]) << i;
    EXPECT_EQ(moves[i].account_a, desk);
    EXPECT_EQ(moves[i].gateway, alpha);
    EXPECT_EQ(moves[i].ref.lo, 1u) << "trips";
  }
  EXPECT_GT(moves[0].ref.hi, moves[0].timestamp) << "open until";
}

// A `failed` the gateway marks declined (the payment refused: a closed destination) is
// the payment's, not the gateway's: its breaker counts a good outcome, so forty declines
// in a row leave it closed where twenty plain failures open it (above), and the next
// payout still goes to alpha (rules version 39). Each decline voids its hold all the
// same, and its event says declined. A failure kind the engine does not know, or one on a
// settlement, is refused and changes nothing.
TEST_F(payout_engine, declines_void_their_holds_and_never_open_the_breaker) {
  up("alpha");
  up("beta");
  const auto w = wallets_on(actors::shard_of(1, fx_.shards()));
  ASSERT_GE(w.size(), 1u);
  const uint64_t desk = actors::payouts::desk_account_for(etb, actors::shard_of(1, fx_.shards()), fx_.shards());
  auto alpha_breaker = [&] { return breaker_at(desk, "alpha"); };
  auto declined = [](uint64_t id) {
    wire::payout_answer a = etb_payout_answer(id, 1, 10, wire::payout_outcome::failed);
    a.failure = wire::payout_failure::declined;
    a.reason = 53;
    return a;
  };
  // Refused: an unknown failure kind, and a kind on a settlement.
  ASSERT_EQ(pay(99, w[0], 10), result::ok);
  ASSERT_EQ(pays(take()).at(0).gateway, "alpha");
  auto unknown = declined(99);
  unknown.failure = wire::payout_failure(2);
  auto settled_declined = declined(99);
  settled_declined.outcome = wire::payout_outcome::settled;
  EXPECT_EQ(e().payout_answers("alpha", {unknown, settled_declined}).results,
            (std::vector<result>{result::payout_answer_invalid, result::payout_answer_invalid}));
  EXPECT_EQ(payout(99).st, state::in_flight) << "nothing changed";
  EXPECT_EQ(e().payout_answers("alpha", {declined(99)}).results.at(0), result::ok);
  swept();
  for (uint64_t id = 100; id < 139; ++id) {
    ASSERT_EQ(pay(id, w[id % w.size()], 10), result::ok);
    ASSERT_EQ(e().payout_answers("alpha", {declined(id)}).results.at(0), result::ok) << id;
  }
  swept();
  ASSERT_EQ(pays(take()).size(), 39u);
  const auto b = alpha_breaker();
  EXPECT_EQ(b.ph, actors::payouts::breaker::phase::closed);
  EXPECT_EQ(b.failed, 40u);
  EXPECT_EQ(b.trips, 0u);
  for (const uint64_t wallet : w) EXPECT_EQ(available(wallet), starting) << "every hold voided";
  ASSERT_EQ(pay(200, w[0], 10), result::ok);
  const auto s = pays(take());
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "alpha") << "alpha still takes payouts";
  expect_payout_account_consistent();
  const auto answers = closed_events(wire::event_type::payout_answer);
  ASSERT_EQ(answers.size(), 40u);
  for (const auto& ev : answers) {
    EXPECT_EQ(ev.code, uint16_t(wire::payout_outcome::failed));
    EXPECT_EQ(ev.flags, uint16_t(wire::payout_failure::declined)) << ev.ref.lo;
  }
}

TEST_F(payout_engine, a_closed_session_keeps_its_payouts_and_an_opened_one_resends) {
  up("alpha");
  up("beta");
  ASSERT_EQ(pay(20, 1, 40), result::ok);
  ASSERT_EQ(take().at(0).gateway, "alpha");
  // alpha's session closes: 20 keeps its answer deadline there (alpha may have it)...
  down("alpha");
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(payout(20).st, state::in_flight);
  // ... and a session of alpha opening in time gets the same instruction again.
  up("alpha");
  auto again = take();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].gateway, "alpha");
  EXPECT_EQ(again[0].in.attempt, 1u);
  EXPECT_EQ(again[0].in.kind, wire::payout_instruction_kind::pay);
  // Closed past the deadline: 20 waits for alpha (which may have it), beta up or not;
  // an operator who checked with alpha sends it on: to beta; alpha is told to cancel.
  lose("alpha");
  ASSERT_NO_FATAL_FAILURE(retried_past_a_silent_gateway({20}));
  auto all = take();
  auto s = pays(all);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "beta");
  EXPECT_EQ(s[0].in.attempt, 2u);
  auto c = cancels(all);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].gateway, "alpha");
  EXPECT_EQ(c[0].in.payout_id, 20u);
  EXPECT_EQ(c[0].in.attempt, 1u);
  lose("beta");  // nobody: it waits for a gateway
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(payout(20).st, state::waiting);
  ASSERT_EQ(pay(21, 2, 40), result::ok);  // accepted, held, waiting too
  EXPECT_EQ(payout(21).st, state::waiting);
  up("beta");  // both are routed (and alpha told again to cancel 20's attempt)
  all = take();
  s = pays(all);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(cancels(all).size(), 1u);
  EXPECT_EQ(s[0].gateway, "beta");
  EXPECT_EQ(s[1].gateway, "beta");
  // A second session of beta coming up re-sends nothing; one going down keeps it up.
  up("beta");
  down("beta");
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(payout(20).st, state::in_flight);
  // alpha coming back gets the cancel again (20 left it unanswered); beta keeps 20.
  up("alpha");
  c = take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].gateway, "alpha");
  EXPECT_EQ(c[0].in.kind, wire::payout_instruction_kind::cancel);
  EXPECT_EQ(c[0].in.payout_id, 20u);
  // alpha did not pay: its answer to the cancel closes its attempt; nothing else moves.
  EXPECT_EQ(answer("alpha", 20, 1, 40, wire::payout_outcome::failed), result::payout_answer_late);
  EXPECT_TRUE(payout(20).attempts[0].failed);
  EXPECT_EQ(payout(20).st, state::in_flight);
  down("alpha");
  up("alpha");
  EXPECT_TRUE(take().empty()) << "a gateway that answered gets no cancel";
  expect_payout_account_consistent();
}

// A failure at the latest gateway does not release the money while an earlier gateway
// never answered: it may still pay. The payout waits as a dead letter, and that
// gateway's late settlement settles it, into the settlement account it was sent with.
TEST_F(payout_engine, a_failure_after_an_unanswered_reroute_keeps_the_hold) {
  up("alpha");
  up("beta");
  ASSERT_EQ(pay(50, 6, 250), result::ok);
  ASSERT_EQ(take().at(0).gateway, "alpha");
  lose("alpha");
  ASSERT_NO_FATAL_FAILURE(retried_past_a_silent_gateway({50}));  // to beta, alpha's attempt unanswered
  ASSERT_EQ(pays(take()).at(0).gateway, "beta");
  EXPECT_EQ(answer("beta", 50, 2, 250, wire::payout_outcome::failed), result::ok);
  auto p = payout(50);
  EXPECT_EQ(p.st, state::dead);
  EXPECT_EQ(p.dead, actors::payouts::dead_reason::unsettled_elsewhere);
  EXPECT_EQ(available(6), starting - 250);  // still held
  EXPECT_EQ(answer("alpha", 50, 1, 250, wire::payout_outcome::settled), result::ok);
  EXPECT_TRUE(resolved(50));
  EXPECT_EQ(account(settle_a).credits_posted, 250u);
  EXPECT_EQ(account(6).debits_posted, 250u);
  // The same with the earlier gateway's failure known: the hold is released.
  up("alpha");
  ASSERT_EQ(pay(51, 6, 100), result::ok);
  ASSERT_EQ(take().at(0).gateway, "alpha");
  EXPECT_EQ(answer("alpha", 51, 1, 100, wire::payout_outcome::failed), result::ok);
  EXPECT_TRUE(resolved(51));
  EXPECT_EQ(available(6), starting - 250);
  expect_payout_account_consistent();
}

// A gateway left behind (its session closed, and an operator sent the payout on) is told
// to cancel.
// The payout settles through the next one and is kept, resolved, until the first
// answers: its late settlement is an overpayment (counted per gateway, an event, answered
// payout_overpaid, the ledger unchanged); a failure, or 30 days, forget it.
TEST_F(payout_engine, a_gateway_left_behind_is_told_to_cancel_and_its_late_payment_is_an_overpayment) {
  up("alpha");
  up("beta");
  ASSERT_EQ(pay(60, 7, 500), result::ok);
  ASSERT_EQ(pays(take()).at(0).gateway, "alpha");
  lose("alpha");
  ASSERT_NO_FATAL_FAILURE(retried_past_a_silent_gateway({60}));
  auto all = take();
  ASSERT_EQ(pays(all).size(), 1u);
  EXPECT_EQ(pays(all)[0].gateway, "beta");
  ASSERT_EQ(cancels(all).size(), 1u);
  EXPECT_EQ(cancels(all)[0].gateway, "alpha");
  EXPECT_EQ(cancels(all)[0].in.amount, 500u);
  EXPECT_EQ(answer("beta", 60, 2, 500, wire::payout_outcome::settled), result::ok);
  EXPECT_EQ(cancels(take()).size(), 1u) << "settled elsewhere: alpha is told to cancel";
  EXPECT_TRUE(resolved(60));
  auto kept = e().lookup_payouts(60, 1).watched_payouts;
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].st, state::resolved);
  EXPECT_EQ(kept[0].settled_by, number("beta"));
  EXPECT_TRUE(kept[0].attempts[1].settled);
  EXPECT_TRUE(e().lookup_payouts(0, 100).watched_payouts.empty()) << "listed by id only";
  expect_payout_account_consistent();  // not held: the payout account holds nothing for it
  // alpha comes back: told again; it had paid before the cancel reached it.
  up("alpha");
  all = take();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].in.kind, wire::payout_instruction_kind::cancel);
  EXPECT_EQ(answer("alpha", 60, 1, 500, wire::payout_outcome::settled), result::payout_overpaid);
  EXPECT_EQ(answer("alpha", 60, 1, 500, wire::payout_outcome::settled), result::payout_already_resolved);
  EXPECT_TRUE(e().lookup_payouts(60, 1).watched_payouts.empty()) << "every gateway has answered";
  EXPECT_EQ(account(7).debits_posted, 500u) << "the wallet paid once";
  EXPECT_EQ(account(settle_b).credits_posted, 500u);
  EXPECT_EQ(account(settle_a).credits_posted, 0u) << "the ledger is unchanged";
  uint64_t overpaid = 0, overpaid_amount = 0, settled = 0;
  for (const auto& row : recon()) {
    if (row.k.gateway == number("alpha")) {
      overpaid += row.c.overpaid;
      overpaid_amount += row.c.overpaid_amount;
    }
    settled += row.c.settled;
  }
  EXPECT_EQ(overpaid, 1u);
  EXPECT_EQ(overpaid_amount, 500u);
  EXPECT_EQ(settled, 1u);

  // The same with alpha not having paid: its failed answer to the cancel forgets it.
  ASSERT_EQ(pay(61, 7, 300), result::ok);
  ASSERT_EQ(pays(take()).at(0).gateway, "alpha");
  lose("alpha");
  ASSERT_NO_FATAL_FAILURE(retried_past_a_silent_gateway({61}));
  ASSERT_EQ(pays(take()).at(0).gateway, "beta");
  EXPECT_EQ(answer("beta", 61, 2, 300, wire::payout_outcome::settled), result::ok);
  ASSERT_EQ(e().lookup_payouts(61, 1).watched_payouts.size(), 1u);
  EXPECT_EQ(answer("alpha", 61, 1, 300, wire::payout_outcome::failed), result::payout_already_resolved);
  EXPECT_TRUE(e().lookup_payouts(61, 1).watched_payouts.empty());
  EXPECT_EQ(answer("alpha", 61, 1, 300, wire::payout_outcome::settled), result::payout_already_resolved);

  // And with alpha never answering: kept 30 days, then forgotten.
  via_alpha_to_beta(62, 7, 200);
  EXPECT_EQ(answer("beta", 62, 1, 200, wire::payout_outcome::settled), result::payout_wrong_gateway);
  EXPECT_EQ(answer("beta", 62, 2, 200, wire::payout_outcome::settled), result::ok);
  ASSERT_EQ(e().lookup_payouts(62, 1).watched_payouts.size(), 1u);
  advance_ms(29ull * 86'400'000);
  EXPECT_EQ(e().lookup_payouts(62, 1).watched_payouts.size(), 1u);
  advance_ms(2ull * 86'400'000);
  EXPECT_TRUE(e().lookup_payouts(62, 1).watched_payouts.empty());
  EXPECT_EQ(answer("alpha", 62, 1, 200, wire::payout_outcome::settled), result::payout_already_resolved);
  expect_payout_account_consistent();

  // Each overpayment is an event.
  const auto over = closed_events(wire::event_type::payout_overpaid);
  ASSERT_EQ(over.size(), 1u);
  EXPECT_EQ(over[0].ref.lo, 60u);
  EXPECT_EQ(over[0].ref.hi, 1u);
  EXPECT_EQ(over[0].account_a, 7u);
  EXPECT_EQ(over[0].amount, 500u);
  EXPECT_EQ(over[0].code, 1u) << "it had settled";
}

// A dead letter waiting because an earlier gateway never answered is released as soon as
// that gateway answers the cancel failed. A dead letter an operator cancels is kept for
// the gateways that might still pay: one that does is an overpayment after a void.
TEST_F(payout_engine, cancels_answered_release_dead_letters_and_payments_after_a_void_are_overpayments) {
  up("alpha");
  up("beta");
  ASSERT_EQ(pay(70, 8, 400), result::ok);
  take();
  lose("alpha");
  ASSERT_NO_FATAL_FAILURE(retried_past_a_silent_gateway({70}));
  take();
  EXPECT_EQ(answer("beta", 70, 2, 400, wire::payout_outcome::failed), result::ok);
  ASSERT_EQ(payout(70).dead, actors::payouts::dead_reason::unsettled_elsewhere);
  EXPECT_EQ(available(8), starting - 400);
  EXPECT_EQ(answer("alpha", 70, 1, 400, wire::payout_outcome::failed), result::ok);  // the cancel's answer
  EXPECT_TRUE(resolved(70));
  EXPECT_TRUE(e().lookup_payouts(70, 1).watched_payouts.empty());
  EXPECT_EQ(available(8), starting) << "released";

  via_alpha_to_beta(71, 8, 100);
  EXPECT_EQ(answer("beta", 71, 2, 100, wire::payout_outcome::failed), result::ok);
  ASSERT_EQ(payout(71).st, state::dead);
  ASSERT_EQ(cancel_op(71), result::payout_may_be_paid) << "alpha never answered";
  ASSERT_EQ(cancel_op(71, true), result::ok);
  EXPECT_TRUE(resolved(71));
  EXPECT_EQ(available(8), starting);
  ASSERT_EQ(e().lookup_payouts(71, 1).watched_payouts.size(), 1u);
  EXPECT_EQ(answer("alpha", 71, 1, 100, wire::payout_outcome::settled), result::payout_overpaid);
  EXPECT_EQ(available(8), starting) << "the ledger is unchanged";
  EXPECT_TRUE(e().lookup_payouts(71, 1).watched_payouts.empty());
  expect_payout_account_consistent();
  const auto over = closed_events(wire::event_type::payout_overpaid);
  ASSERT_EQ(over.size(), 1u);
  EXPECT_EQ(over[0].code, 3u) << "it had been cancelled";
}

// A gateway disabled, or stripped of the payments role, while it may have paid a payout
// can no longer say whether it did (the server refuses its answers): the payout does not
// go on to the next gateway, where a second payment would never be seen; it becomes a
// dead letter for an operator, hold kept. Before (rules version 14 and older), beta got
// it one answer timeout later. Alpha enabled again and answering `settled` settles it.
TEST_F(payout_engine, a_payout_with_a_gateway_withdrawn_while_it_may_have_paid_waits_for_an_operator) {
  up("alpha");
  up("beta");
  ASSERT_EQ(pay(15, 1, 150), result::ok);
  ASSERT_EQ(pay(16, 2, 160), result::ok);
  auto s = pays(take());
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].gateway, "alpha");
  EXPECT_EQ(s[1].gateway, "alpha");
  wire::gateway_op off{};
  off.kind = wire::gateway_op_kind::disable;
  actors::gateways::set_op_id(off, "alpha");
  ASSERT_EQ(e().gateways({off}).results.at(0), result::ok);
  for (int i = 0; i < 20 && payout(15).st != state::dead; ++i) advance_ms(250);
  ASSERT_EQ(payout(15).st, state::dead);
  EXPECT_EQ(payout(15).dead, actors::payouts::dead_reason::withdrawn);
  EXPECT_EQ(payout(16).dead, actors::payouts::dead_reason::withdrawn);
  EXPECT_EQ(payout(15).attempts.size(), 1u);
  advance_ms(5000);
  EXPECT_TRUE(pays(take()).empty()) << "beta is never sent them";
  EXPECT_EQ(available(1), starting - 150) << "still held";
  // Alpha back: its settlement of 15 settles it; its failure of 16 (it did not pay) sends
  // 16 on to beta, as a cancel's answer would have.
  wire::gateway_op on = off;
  on.kind = wire::gateway_op_kind::enable;
  ASSERT_EQ(e().gateways({on}).results.at(0), result::ok);
  EXPECT_EQ(answer("alpha", 15, 1, 150, wire::payout_outcome::settled), result::ok);
  EXPECT_TRUE(resolved(15));
  EXPECT_EQ(account(settle_a).credits_posted, 150u);
  take();
  EXPECT_EQ(answer("alpha", 16, 1, 160, wire::payout_outcome::failed), result::ok);
  s = pays(take());
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "beta");
  EXPECT_EQ(s[0].in.payout_id, 16u);
  EXPECT_EQ(s[0].in.attempt, 2u);
  EXPECT_EQ(payout(16).st, state::in_flight);
  EXPECT_EQ(answer("beta", 16, 2, 160, wire::payout_outcome::settled), result::ok);
  EXPECT_TRUE(resolved(16));
  EXPECT_EQ(available(2), starting - 160);

  // The payments role taken from alpha (its session stays up): the same.
  ASSERT_EQ(pay(17, 3, 170), result::ok);
  s = pays(take());
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "alpha");
  ASSERT_EQ(e().gateways({broker_only("alpha", settle_a, 1)}).results.at(0), result::ok);
  for (int i = 0; i < 20 && payout(17).st != state::dead; ++i) advance_ms(250);
  ASSERT_EQ(payout(17).st, state::dead);
  EXPECT_EQ(payout(17).dead, actors::payouts::dead_reason::withdrawn);
  EXPECT_EQ(payout(17).attempts.size(), 1u) << "not tried there again either";
  EXPECT_TRUE(pays(take()).empty());
  expect_payout_account_consistent();
  const auto dead = closed_events(wire::event_type::payout_dead);
  ASSERT_EQ(dead.size(), 3u);
  for (const auto& ev : dead) EXPECT_EQ(ev.code, uint16_t(actors::payouts::dead_reason::withdrawn));
}

// A gateway stripped of the payments role keeps its sessions (it may still be a broker):
// one that reconnects while a payout sent to it waits for its answer deadline is told to
// cancel it, not sent it again. It can no longer answer for payouts, so the payout goes
// to an operator at the deadline; paid now, an operator's retry would pay it twice.
// Before, the reconnect sent the payment again (the first one, should that have been
// lost with the session).
TEST_F(payout_engine, a_gateway_without_the_payments_role_is_not_sent_a_payout_again_when_it_reconnects) {
  up("alpha");
  ASSERT_EQ(pay(18, 1, 180), result::ok);
  auto s = pays(take());
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "alpha");
  ASSERT_EQ(e().gateways({broker_only("alpha", settle_a, 1)}).results.at(0), result::ok);
  take();
  down("alpha");
  up("alpha");  // within the answer deadline
  const auto sent = take();
  EXPECT_TRUE(pays(sent).empty()) << "not sent the payment again";
  const auto c = cancels(sent);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].gateway, "alpha");
  EXPECT_EQ(c[0].in.payout_id, 18u);
  EXPECT_EQ(c[0].in.attempt, 1u);
  for (int i = 0; i < 20 && payout(18).st != state::dead; ++i) advance_ms(250);
  ASSERT_EQ(payout(18).st, state::dead);
  EXPECT_EQ(payout(18).dead, actors::payouts::dead_reason::withdrawn);
  EXPECT_EQ(available(1), starting - 180) << "still held";
  expect_payout_account_consistent();
}

// Payouts answered before their deadline leave their timers in the desk's heap. Past
// twice what the heap held at its last rebuild (4,096 at least) it is made again from the
// live ones; stale ones at its top go at once. Before, they stayed until due (a payout
// kept for a late answer and then answered: 30 days). A payout never answered keeps its
// timer through the rebuilds and still times out.
TEST_F(payout_engine, timers_of_payouts_answered_early_do_not_pile_up) {
  up("alpha");
  auto timers = [&] {
    uint64_t n = 0;
    for (const auto& r : e().shard_reports()) n += r.payout_timers;
    return n;
  };
  ASSERT_EQ(pay(1, 1, 10), result::ok);  // never answered: its deadline is the heap's first
  std::vector<uint64_t> wallets;  // of the same shard, so the same desk
  for (uint64_t w = 1; w <= 8; ++w)
    if (actors::shard_of(w, 2) == actors::shard_of(1, 2)) wallets.push_back(w);
  for (uint64_t first = 100; first < 100 + 6400; first += 64) {
    std::vector<wire::payout> ps;
    std::vector<wire::payout_answer> as;
    for (uint64_t id = first; id < first + 64; ++id) {
      ps.push_back(make_payout(id, wallets[id % wallets.size()], 1));
      as.push_back(etb_payout_answer(id, 1, 1));
    }
    for (auto r : e().payouts(ps).results) ASSERT_EQ(r, result::ok);
    for (auto r : e().payout_answers("alpha", as).results) ASSERT_EQ(r, result::ok);
  }
  swept();
  EXPECT_TRUE(resolved(6499));
  EXPECT_LT(timers(), 4096u) << "6,400 answered payouts' timers would be held until their deadlines";
  take();
  for (int i = 0; i < 20 && payout(1).attempts.size() < 2; ++i) advance_ms(500);
  EXPECT_EQ(payout(1).attempts.size(), 2u) << "the unanswered one timed out and went again";
  expect_payout_account_consistent();
}

TEST_F(payout_engine, dead_letters_keep_their_hold_until_retried_or_cancelled) {
  // Only alpha, and it never answers: 3 tries, then alpha is asked to cancel and says
  // nothing to that either, its session up: a dead letter (gateway_silent, rules version
  // 38; before, every gateway given up).
  up("alpha");
  wire::gateway_op off{};
  off.kind = wire::gateway_op_kind::disable;
  actors::gateways::set_op_id(off, "beta");
  ASSERT_EQ(e().gateways({off}).results.at(0), result::ok);
  ASSERT_EQ(pay(30, 4, 900), result::ok);
  ASSERT_EQ(pay(31, 5, 800), result::ok);
  for (int i = 0; i < 40 && !(payout(30).st == state::dead && payout(31).st == state::dead); ++i) advance_ms(500);
  ASSERT_EQ(payout(30).st, state::dead);
  EXPECT_EQ(payout(30).dead, actors::payouts::dead_reason::unanswered);
  EXPECT_EQ(available(4), starting - 900);  // still held
  take();
  // Alpha never answered either: it may have paid them. The desk refuses the operator's
  // cancel and retry, changing nothing, until the operator says it checked (force), as it
  // executes them (rules version 30; before, only the admin command looked, at what it had
  // read before sending them). An unknown flag is refused.
  EXPECT_EQ(cancel_op(30), result::payout_may_be_paid);
  EXPECT_EQ(payout(30).st, state::dead);
  EXPECT_EQ(available(4), starting - 900);
  EXPECT_EQ(e().payout_ops({{30, etb, wire::payout_op_kind::cancel, uint8_t(2), {}}}).results.at(0),
            result::reserved_field);
  // Cancel one: its hold is voided.
  EXPECT_EQ(cancel_op(30, true), result::ok);
  EXPECT_TRUE(resolved(30));
  EXPECT_EQ(available(4), starting);
  EXPECT_EQ(cancel_op(30, true), result::payout_already_resolved);
  // Retry the other once beta is back: routed afresh.
  wire::gateway_op on = off;
  on.kind = wire::gateway_op_kind::enable;
  ASSERT_EQ(e().gateways({on}).results.at(0), result::ok);
  up("beta");
  take();  // (alpha told to cancel 30)
  wire::payout_op retry{31, etb, wire::payout_op_kind::retry, 0, {}};
  EXPECT_EQ(e().payout_ops({retry}).results.at(0), result::payout_may_be_paid);
  sync();
  EXPECT_TRUE(take().empty()) << "sent nowhere";
  retry.flags = wire::payout_op_flags::force;
  EXPECT_EQ(e().payout_ops({retry}).results.at(0), result::ok);
  auto s = pays(take());
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "alpha");  // every gateway is a candidate again; alpha's priority wins
  EXPECT_EQ(s[0].in.attempt, 4u);
  EXPECT_EQ(e().payout_ops({retry}).results.at(0), result::payout_not_dead);
  EXPECT_EQ(answer("alpha", 31, 4, 800, wire::payout_outcome::settled), result::ok);
  EXPECT_EQ(account(5).debits_posted, 800u);
  expect_payout_account_consistent();
  // 30, a dead letter cancelled while alpha (timed out) might still pay, is kept: it is
  // written to a snapshot and loads from it.
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  restart();
  const auto kept = e().lookup_payouts(30, 1).watched_payouts;
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].dead, actors::payouts::dead_reason::none);
  EXPECT_TRUE(kept[0].cancelling);
  EXPECT_EQ(answer("alpha", 30, 3, 900, wire::payout_outcome::failed), result::payout_already_resolved);
  EXPECT_TRUE(e().lookup_payouts(30, 1).watched_payouts.empty()) << "alpha did not pay: forgotten";
  // Each payout becoming a dead letter is an event.
  const uint32_t alpha = number("alpha");
  fx_.close();
  std::map<uint64_t, wire::event> dead;
  for (const auto& ev : all_events(fx_.dir()))
    if (ev.type == wire::event_type::payout_dead) {
      EXPECT_TRUE(dead.emplace(ev.ref.lo, ev).second) << ev.ref.lo;
    }
  ASSERT_EQ(dead.size(), 2u);
  for (const auto& [id, wallet, amount] : {std::tuple{30u, 4u, 900u}, std::tuple{31u, 5u, 800u}}) {
    const auto& ev = dead.at(id);
    EXPECT_EQ(ev.account_a, wallet);
    EXPECT_EQ(ev.amount, amount);
    EXPECT_EQ(ev.ref.hi, 3u) << "its attempts";
    EXPECT_EQ(ev.code, uint16_t(actors::payouts::dead_reason::unanswered));
    EXPECT_EQ(ev.gateway, alpha);
  }
  // The operators' cancel and retry and alpha's answer name the wallet and the desk's
  // payout account, so a subscriber filtering on the wallet sees them (before, they
  // named no account and an account filter passed them by).
  std::vector<wire::event> moves;
  for (const auto& ev : all_events(fx_.dir()))
    if (ev.type == wire::event_type::payout_op || ev.type == wire::event_type::payout_answer) moves.push_back(ev);
  ASSERT_EQ(moves.size(), 3u) << "cancel 30, retry 31, 31 settled (30's late failure changed nothing)";
  const std::tuple<wire::event_type, uint64_t, uint64_t> want[] = {{wire::event_type::payout_op, 30, 4},
                                                                   {wire::event_type::payout_op, 31, 5},
                                                                   {wire::event_type::payout_answer, 31, 5}};
  for (size_t i = 0; i < moves.size(); ++i) {
    const auto& [type, id, wallet] = want[i];
    EXPECT_EQ(moves[i].type, type) << i;
    EXPECT_EQ(moves[i].ref.lo, id) << i;
    EXPECT_EQ(moves[i].account_a, wallet) << i;
    EXPECT_EQ(moves[i].account_b, dead.at(id).account_b) << i << ": the desk's payout account";
    EXPECT_NE(moves[i].account_b, 0u) << i;
    engine::subscription_request on_wallet, on_other;
    on_wallet.accounts = {wallet};
    on_other.accounts = {wallet + 100};
    EXPECT_TRUE(engine::event_hub::matches(on_wallet, moves[i])) << i;
    EXPECT_FALSE(engine::event_hub::matches(on_other, moves[i])) << i;
  }
}

// A payout waiting for any gateway keeps its wait across a restart, the downtime not
// counted (rules version 34), with no equb group running too: the start's resume marker,
// which moves the wait, was logged only when a group was active, so a payout that had
// waited 5 minutes, then 8 down, was a dead letter at the start.
TEST_F(payout_engine, a_payout_waiting_for_a_gateway_does_not_count_the_downtime) {
  ASSERT_EQ(pay(40, 4, 700), result::ok);  // no gateway up: it waits
  EXPECT_EQ(payout(40).st, state::waiting);
  advance_ms(300'000);
  fx_.close();
  fx_.advance_s(480);  // down
  fx_.open();
  attach();
  advance_ms(1000);
  EXPECT_EQ(payout(40).st, state::waiting) << "301 s of waiting up";
  advance_ms(300'000);  // 601 s up
  ASSERT_EQ(payout(40).st, state::dead);
  EXPECT_EQ(payout(40).dead, actors::payouts::dead_reason::no_route);
  EXPECT_EQ(available(4), starting - 700) << "its hold kept";
}

class payout_engine_replay : public payout_engine {
 protected:
  payout_engine_replay() : payout_engine(false) {}
};

// Reconciliation rows past the days the shards keep in memory are read from the
// snapshot; checkpoints write the days that changed and leave older rows as they are;
// restarts neither lose nor count twice a day's rows, in memory or out of it.
TEST_F(payout_engine_replay, reconciliation_days_past_memory_come_from_the_snapshot) {
  up("alpha");
  const auto settle = [&](uint64_t id, uint64_t wallet, uint64_t amount) {
    ASSERT_EQ(pay(id, wallet, amount), result::ok);
    ASSERT_EQ(pays(take()).size(), 1u);
    ASSERT_EQ(answer("alpha", id, 1, amount, wire::payout_outcome::settled), result::ok);
  };
  const auto day_now = [&] { return uint32_t(now_ns() / actors::payouts::ns_per_day); };
  const auto settled = [&](std::optional<uint32_t> day) {
    std::string err;
    const auto r = e().lookup_recon(number("alpha"), day, &err);
    EXPECT_EQ(err, "");
    std::vector<std::pair<uint32_t, uint64_t>> out;  // (day, amount settled)
    for (const auto& row : r.recon) out.emplace_back(row.k.day, row.c.settled_amount);
    return out;
  };
  settle(50, 1, 100);
  const uint32_t first = day_now();
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  settle(54, 5, 50);  // the first day after its checkpoint: the next cut must copy it
  advance_ms(uint64_t(actors::payouts::recon_days_kept) * 86'400'000);  // the first day past memory
  settle(51, 2, 200);
  const uint32_t later = day_now();
  ASSERT_EQ(later, first + actors::payouts::recon_days_kept);
  using rows = std::vector<std::pair<uint32_t, uint64_t>>;
  EXPECT_EQ(settled(std::nullopt), (rows{{first, 150}, {later, 200}}));
  // A checkpoint that fails drops nothing its committed day has not covered: the next
  // copies the first day again.
  storage::failure_probes::instance().snapshot_commit_errno = MDB_MAP_FULL;
  EXPECT_FALSE(e().checkpoint(&err));
  ASSERT_TRUE(e().checkpoint(&err)) << err;  // copies both days (from its committed day on), drops none
  ASSERT_TRUE(e().checkpoint(&err)) << err;  // drops the first day: written, and past the window
  EXPECT_EQ(settled(first), (rows{{first, 150}})) << "from the snapshot";
  EXPECT_EQ(settled(later), (rows{{later, 200}}));
  EXPECT_EQ(settled(first + 1), rows{});
  EXPECT_EQ(settled(first + (1u << 20)), rows{}) << "a day no row key holds is not another day";
  restart();  // from the snapshot: the first day stays in it
  EXPECT_EQ(settled(std::nullopt), (rows{{first, 150}, {later, 200}}));
  up("alpha");
  settle(52, 3, 300);  // counted beside the snapshot's total of the day
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  settle(53, 4, 400);  // in the log alone
  restart();
  up("alpha");
  EXPECT_EQ(settled(std::nullopt), (rows{{first, 150}, {later, 900}}));
  // Past midnight between two checkpoints: the day before is copied by the second.
  settle(55, 6, 70);
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  settle(56, 7, 80);
  advance_ms(86'400'000);
  settle(57, 8, 90);
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  restart();
  EXPECT_EQ(settled(std::nullopt), (rows{{first, 150}, {later, 1'050}, {later + 1, 90}}));
}

// Restarts with payouts in every state: from the log alone, then from a snapshot plus
// the log. Nothing held is lost; in-flight payouts stay at their gateway, are sent
// again when it opens a session, and past their deadline wait for it still (it may have
// paid them), until an operator sends them on; a gateway paying after another is an
// overpayment, not a second post.
TEST_F(payout_engine_replay, payouts_survive_restarts_and_are_sent_again) {
  up("alpha");
  up("beta");
  ASSERT_EQ(pay(40, 1, 100), result::ok);  // will be in flight
  ASSERT_EQ(pay(41, 2, 200), result::ok);  // settled before the restart
  ASSERT_EQ(pay(42, 3, 300), result::ok);  // failed before the restart
  take();
  ASSERT_EQ(answer("alpha", 41, 1, 200, wire::payout_outcome::settled), result::ok);
  ASSERT_EQ(answer("alpha", 42, 1, 300, wire::payout_outcome::failed), result::ok);
  const auto before = e().lookup_payouts(0, 100);
  const auto rows = recon();
  ASSERT_EQ(rows.size(), 1u);  // alpha, today, ETB: one settled, one failed
  EXPECT_EQ(rows[0].c.settled, 1u);
  EXPECT_EQ(rows[0].c.settled_amount, 200u);
  EXPECT_EQ(rows[0].c.failed, 1u);
  restart();  // the log alone
  EXPECT_EQ(e().recovery().payout_chains_reemitted, 0u);
  const auto after = e().lookup_payouts(0, 100);
  ASSERT_EQ(after.payouts.size(), 1u);
  EXPECT_EQ(after.payouts[0].id, 40u);
  // No session is up after a start: it stays in flight at alpha (which may have it),
  // with an answer deadline from the start.
  EXPECT_EQ(after.payouts[0].st, state::in_flight);
  EXPECT_EQ(before.breakers.size(), after.breakers.size());
  EXPECT_EQ(account(2).debits_posted, 200u);
  EXPECT_EQ(available(3), starting);
  EXPECT_EQ(available(1), starting - 100);
  expect_payout_account_consistent();
  // Duplicates of answers from before the restart are still recognised.
  EXPECT_EQ(answer("alpha", 41, 1, 200, wire::payout_outcome::settled), result::payout_already_resolved);
  EXPECT_EQ(answer("alpha", 42, 1, 300, wire::payout_outcome::failed), result::payout_already_resolved);
  up("beta");  // not alpha: 40 is not moved before its deadline
  EXPECT_TRUE(take().empty());
  advance_ms(1100);  // alpha did not come back in time: 40 waits for it
  EXPECT_EQ(payout(40).st, state::waiting);
  ASSERT_NO_FATAL_FAILURE(retried_past_a_silent_gateway({40}));  // then beta (a new attempt)
  auto s = pays(take());
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "beta");
  EXPECT_EQ(s[0].in.attempt, 2u);

  EXPECT_EQ(recon().at(0).c.settled, 1u);
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  ASSERT_EQ(pay(43, 4, 400), result::ok);  // after the snapshot: replayed
  take();
  restart();
  const auto again = e().lookup_payouts(0, 100);
  ASSERT_EQ(again.payouts.size(), 2u);
  EXPECT_EQ(again.payouts[0].id, 40u);
  EXPECT_EQ(again.payouts[1].id, 43u);
  up("beta");  // both were in flight at beta: sent again, the same attempts
  s = pays(take());
  ASSERT_EQ(s.size(), 2u);
  for (const auto& x : s) EXPECT_EQ(x.in.attempt, x.in.payout_id == 40 ? 2u : 1u) << x.in.payout_id;
  // Attempt 1 of 40 (alpha, before the first restart) settles it even now: once. beta,
  // told to cancel, paid too: an overpayment, counted, the ledger unchanged.
  EXPECT_EQ(answer("alpha", 40, 1, 100, wire::payout_outcome::settled), result::ok);
  EXPECT_EQ(answer("beta", 40, 2, 100, wire::payout_outcome::settled), result::payout_overpaid);
  EXPECT_EQ(answer("beta", 40, 2, 100, wire::payout_outcome::settled), result::payout_already_resolved);
  // (Desks on different shards hand their instructions over in no fixed order.)
  const auto to_43 = std::find_if(s.begin(), s.end(), [](const sent& x) { return x.in.payout_id == 43; });
  ASSERT_NE(to_43, s.end());
  EXPECT_EQ(answer("beta", 43, to_43->in.attempt, 400, wire::payout_outcome::settled), result::ok);
  EXPECT_EQ(account(1).debits_posted, 100u);
  EXPECT_EQ(account(4).debits_posted, 400u);
  EXPECT_EQ(account(settle_a).credits_posted, 300u);
  EXPECT_EQ(account(settle_b).credits_posted, 400u);
  // From the snapshot's reconciliation rows and the log after them.
  uint64_t settled = 0, failed = 0, overpaid = 0;
  for (const auto& row : recon()) {
    settled += row.c.settled;
    failed += row.c.failed;
    overpaid += row.c.overpaid;
    if (row.c.overpaid) {
      EXPECT_EQ(row.k.gateway, number("beta"));
    }
  }
  EXPECT_EQ(settled, 3u);
  EXPECT_EQ(failed, 1u);
  EXPECT_EQ(overpaid, 1u);
  expect_payout_account_consistent();
}

// A payout kept for a gateway's late answer is kept across restarts, from the log alone
// and from a snapshot, with its deadline; that gateway's payment is an overpayment after
// either, counted once.
TEST_F(payout_engine_replay, kept_payouts_survive_restarts) {
  up("alpha");
  up("beta");
  ASSERT_EQ(pay(80, 3, 250), result::ok);
  take();
  lose("alpha");
  ASSERT_NO_FATAL_FAILURE(retried_past_a_silent_gateway({80}));
  ASSERT_EQ(pays(take()).at(0).gateway, "beta");
  ASSERT_EQ(answer("beta", 80, 2, 250, wire::payout_outcome::settled), result::ok);
  take();
  const auto before = e().lookup_payouts(80, 1).watched_payouts;
  ASSERT_EQ(before.size(), 1u);
  restart();  // the log alone
  auto kept = e().lookup_payouts(80, 1).watched_payouts;
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].due, before[0].due);
  EXPECT_EQ(kept[0].settled_by, number("beta"));
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  restart();  // the snapshot
  kept = e().lookup_payouts(80, 1).watched_payouts;
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].due, before[0].due);
  EXPECT_EQ(kept[0].attempts.size(), 2u);
  EXPECT_TRUE(kept[0].attempts[1].settled);
  up("alpha");
  EXPECT_EQ(cancels(take()).size(), 1u) << "told again after the restart";
  EXPECT_EQ(answer("alpha", 80, 1, 250, wire::payout_outcome::settled), result::payout_overpaid);
  for (int round = 0; round < 2; ++round) {
    if (round == 1) {
      ASSERT_TRUE(e().checkpoint(&err)) << err;
      restart();
    }
    uint64_t overpaid = 0;
    for (const auto& row : recon()) overpaid += row.c.overpaid;
    EXPECT_EQ(overpaid, 1u) << round;
    EXPECT_TRUE(e().lookup_payouts(80, 1).watched_payouts.empty()) << round;
    EXPECT_EQ(answer("alpha", 80, 1, 250, wire::payout_outcome::settled), result::payout_already_resolved);
  }
  EXPECT_EQ(account(3).debits_posted, 250u);
  expect_payout_account_consistent();
}

// A hold goes to the payout account of its wallet's shard (its desk there). After a
// restart with another shard count, the old desks keep what they hold, wherever their
// accounts now live, and settle it; new payouts go to the new count's desks (their
// accounts made at the start); the money adds up throughout. From the log alone, then
// from a snapshot plus the log.
TEST_F(payout_engine_replay, desks_follow_the_shard_count_across_restarts) {
  using actors::payouts::desk_account_for;
  up("alpha");
  const auto w0 = wallets_on(0), w1 = wallets_on(1);
  ASSERT_FALSE(w0.empty());
  ASSERT_FALSE(w1.empty());
  ASSERT_EQ(pay(60, w0[0], 100), result::ok);
  ASSERT_EQ(pay(61, w1[0], 200), result::ok);
  ASSERT_EQ(take().size(), 2u);
  auto hold_account = [&](uint64_t id) {
    const auto r = e().lookup_transfers({actors::payouts::hold_id(id)});
    EXPECT_EQ(r.results.at(0), result::ok);
    return r.transfers.at(0).t.credit_account_id;
  };
  EXPECT_EQ(hold_account(60), desk_account_for(etb, 0, 2));
  EXPECT_EQ(hold_account(61), desk_account_for(etb, 1, 2));
  EXPECT_NE(hold_account(60), hold_account(61));
  // A wallet whose payouts three shards would hold on another desk's account.
  uint64_t moved = 0;
  for (uint64_t w = 1; w <= 8 && moved == 0; ++w)
    if (desk_account_for(etb, actors::shard_of(w, 2), 2) != desk_account_for(etb, actors::shard_of(w, 3), 3)) moved = w;
  ASSERT_NE(moved, 0u);
  ASSERT_EQ(pay(63, moved, 50), result::ok);
  ASSERT_EQ(take().size(), 1u);
  expect_payout_account_consistent();

  // Onto three shards from a snapshot (with records past it, another count is refused).
  fx_.close_snapshotted();
  fx_.set_shards(3);
  fx_.open();
  attach();
  for (const uint64_t id : actors::payouts::desk_accounts_for(etb, 3))
    EXPECT_EQ(e().lookup_accounts({id}).results.at(0), result::ok) << "payout account " << id;
  EXPECT_EQ(e().lookup_payouts(0, 100).payouts.size(), 3u);
  expect_payout_account_consistent();
  up("alpha");  // all three are sent again
  std::map<uint64_t, uint32_t> attempt;
  for (const auto& x : take()) attempt[x.in.payout_id] = x.in.attempt;
  ASSERT_EQ(attempt.size(), 3u);
  // Retries of payouts made under two shards are repeats, though three shards put a
  // new hold elsewhere; another amount is not.
  for (const auto& [id, wallet, amount] :
       {std::tuple{60, w0[0], 100}, std::tuple{61, w1[0], 200}, std::tuple{63, moved, 50}})
    EXPECT_EQ(pay(uint64_t(id), wallet, uint64_t(amount)), result::ok) << id;
  EXPECT_EQ(pay(63, moved, 51), result::exists_with_different_fields);
  EXPECT_EQ(answer("alpha", 63, attempt[63], 50, wire::payout_outcome::failed), result::ok);  // released
  const uint64_t w = 5;
  ASSERT_EQ(pay(62, w, 300), result::ok);
  EXPECT_EQ(hold_account(62), desk_account_for(etb, actors::shard_of(w, 3), 3));
  ASSERT_EQ(take().size(), 1u);
  EXPECT_EQ(answer("alpha", 60, attempt[60], 100, wire::payout_outcome::settled), result::ok);
  EXPECT_EQ(answer("alpha", 61, attempt[61], 200, wire::payout_outcome::failed), result::ok);
  EXPECT_EQ(answer("alpha", 60, attempt[60], 100, wire::payout_outcome::settled), result::payout_already_resolved);
  expect_payout_account_consistent();

  fx_.close_snapshotted();
  fx_.set_shards(1);
  fx_.open();  // the snapshot, onto one shard
  attach();
  ASSERT_EQ(e().lookup_payouts(0, 100).payouts.size(), 1u);
  expect_payout_account_consistent();
  EXPECT_EQ(answer("alpha", 61, attempt[61], 200, wire::payout_outcome::failed), result::payout_already_resolved);
  up("alpha");
  const auto s = take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(answer("alpha", 62, s[0].in.attempt, 300, wire::payout_outcome::settled), result::ok);
  EXPECT_TRUE(resolved(62));
  EXPECT_EQ(account(settle_a).credits_posted, 400u);
  EXPECT_EQ(account(w0[0]).debits_posted, 100u);
  EXPECT_EQ(available(w1[0]), starting);
  EXPECT_EQ(account(w).debits_posted, w == w0[0] ? 400u : 300u);
  expect_payout_account_consistent();
}

// A start whose shard count needs new payout accounts makes them in a batch of its own;
// the gateways' sessions are reset before it. Before, that batch ran the desks' timers
// against the sessions the log left (alpha up): a payout overdue while the engine was
// down timed out at alpha, counting against its breaker, and went to a second attempt.
// An active equb group makes the start log a resume marker first (rules version 12): it
// runs no desk timer either.
TEST_F(payout_engine_replay, a_start_resets_the_sessions_before_any_timer_runs) {
  constexpr uint64_t group = 660, fee = 661, due = 100;
  ASSERT_EQ(e().create_accounts({make_account(fee)}).results.at(0), result::ok);
  ASSERT_EQ(e().equb({make_equb_create(group, fee, due)}).results.at(0), result::ok);
  for (const uint64_t w : {5, 6}) {
    wire::transfer t = make_transfer(31'000 + w, w, group, due, wire::transfer_flags::equb);
    ASSERT_EQ(e().create_transfers({t}).results.at(0), result::ok);
  }
  wire::equb_op start;
  start.kind = wire::equb_op_kind::start;
  start.group_id = group;
  ASSERT_EQ(e().equb({start}).results.at(0), result::ok);
  up("alpha");
  ASSERT_EQ(pay(80, 1, 100), result::ok);
  auto s = take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].in.attempt, 1u);
  const uint64_t later = now_ns() + 10'000'000'000ull;  // alpha's answer deadline (1 s) long past
  // Everything snapshotted (its round 1 closed, the payout sent, alpha up): a start with
  // another count replays no record past the snapshot.
  fx_.close_snapshotted();
  fx_.set_clock_ns(later);
  fx_.set_shards(3);  // new payout accounts to make
  fx_.open();
  attach();
  EXPECT_EQ(payout(80).attempts.size(), 1u) << "no timeout while the sessions were stale";
  EXPECT_EQ(payout(80).st, actors::payouts::state::in_flight);
  up("alpha");  // the same instruction again
  s = take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].in.attempt, 1u);
  EXPECT_EQ(e().lookup_groups({group}).groups.at(0).g.round, 2u) << "the group ran on";
  EXPECT_EQ(answer("alpha", 80, 1, 100, wire::payout_outcome::settled), result::ok);
  EXPECT_TRUE(resolved(80));
}

// A start with another shard count refuses while the log holds any record past the
// snapshot, with the event log or without: a replay would time a payout out at other
// batches. The count that wrote the log is the data directory's `shards`; without that
// file (a directory from before it), the snapshot's. A damaged file is refused by name.
// Once a run with the old count has snapshotted, the new count starts and the payout in
// flight settles.
TEST_F(payout_engine_replay, another_count_waits_for_a_run_with_the_old_one) {
  fx_.set_events(false);
  restart();
  up("alpha");
  ASSERT_EQ(pay(90, 1, 100), result::ok);
  ASSERT_EQ(take().size(), 1u);  // in flight at alpha
  fx_.close();                   // no snapshot: every record is past it, as after a crash
  const std::string shards_file = fx_.dir() + "/shards";
  auto file_text = [&] {
    std::ifstream f(shards_file);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  EXPECT_EQ(file_text(), "shards 2\n");
  auto refused = [&](uint32_t n, const char* says, bool events = false) {
    auto cfg = fx_.config();
    cfg.shards = n;
    cfg.events = events;
    std::string err;
    EXPECT_FALSE(engine::engine::open(cfg, &err)) << n;
    EXPECT_NE(err.find(says), std::string::npos) << err;
  };
  refused(3, "--shards 2");
  refused(3, "the records past the snapshot were logged by 2 shards");
  refused(3, "the records past the snapshot were logged by 2 shards", true);  // with the event log too
  EXPECT_EQ(file_text(), "shards 2\n") << "a refused start writes nothing";
  fx_.open();  // two shards: the replay places every timer where it was
  attach();
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  up("beta");  // a record past the snapshot
  fx_.close();
  std::filesystem::remove(shards_file);
  refused(3, "--shards 2");  // the snapshot's count
  {
    std::ofstream(shards_file) << "shards two\n";
  }
  refused(2, "/shards is damaged");
  {
    std::ofstream(shards_file) << "shards 2\n";
  }
  {
    auto cfg = fx_.config();
    cfg.checkpoint_on_close = true;  // as mesobd stops
    auto two = engine::engine::open(cfg, &err);
    ASSERT_TRUE(two) << err;
    two->close();
  }
  fx_.set_shards(3);  // nothing past the snapshot
  fx_.open();
  attach();
  EXPECT_EQ(file_text(), "shards 3\n");
  EXPECT_EQ(payout(90).st, state::in_flight);
  up("alpha");
  ASSERT_EQ(take().size(), 1u);
  EXPECT_EQ(answer("alpha", 90, 1, 100, wire::payout_outcome::settled), result::ok);
  EXPECT_TRUE(resolved(90));
  expect_payout_account_consistent();
}

// A desk's timer decisions are events (payout_timer): an answer timeout, a backoff's end,
// a wait for the gateway that may have paid. After a clean stop without a final snapshot they are past the snapshot,
// and a start with another shard count, whose replay would fire those timers at other
// batches than the ones whose instructions the gateways got, is refused; a run with the
// old count snapshots them, and then the new count starts with the payout where it was.
TEST_F(payout_engine_replay, timer_decisions_past_the_snapshot_hold_the_shard_count) {
  const uint32_t alpha = number("alpha");
  up("alpha");
  up("beta");
  ASSERT_EQ(pay(95, 1, 100), result::ok);
  ASSERT_EQ(take().size(), 1u);  // at alpha
  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  advance_ms(1100);  // alpha's answer timeout: a backoff, to try alpha again
  EXPECT_EQ(payout(95).st, state::waiting);
  EXPECT_TRUE(take().empty());
  advance_ms(600);  // the backoff's end (a quarter of the timeout, +-25%): attempt 2 at alpha
  auto s = pays(take());
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "alpha");
  EXPECT_EQ(s[0].in.attempt, 2u);
  down("alpha");
  advance_ms(1100);  // no answer again, alpha gone: it waits for alpha (which may pay it)
  EXPECT_TRUE(take().empty());
  up("alpha");  // asked again (a session's opening, not a timer): attempt 3 at alpha
  s = pays(take());
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].gateway, "alpha");
  EXPECT_EQ(s[0].in.attempt, 3u);
  fx_.close();  // clean, with no final snapshot
  std::vector<wire::event> timers;
  for (const auto& ev : all_events(fx_.dir()))
    if (ev.type == wire::event_type::payout_timer) timers.push_back(ev);
  using actors::payouts::timer_due;
  using actors::payouts::timer_then;
  const std::tuple<timer_due, timer_then, uint32_t, uint64_t> want[] = {
      {timer_due::answer_timeout, timer_then::backoff, alpha, 1},
      {timer_due::backoff_end, timer_then::sent, alpha, 2},
      {timer_due::answer_timeout, timer_then::route_wait, alpha, 2}};
  ASSERT_EQ(timers.size(), std::size(want));
  for (size_t i = 0; i < timers.size(); ++i) {
    const auto& [why, then, gateway, attempts] = want[i];
    EXPECT_EQ(timers[i].code, uint16_t(why)) << i;
    EXPECT_EQ(timers[i].flags, uint16_t(then)) << i;
    EXPECT_EQ(timers[i].gateway, gateway) << i;
    EXPECT_EQ(timers[i].ref.lo, 95u) << i;
    EXPECT_EQ(timers[i].ref.hi, attempts) << i;
    EXPECT_EQ(timers[i].account_a, 1u) << i;
    EXPECT_EQ(timers[i].amount, 100u) << i;
  }
  auto cfg = fx_.config();
  cfg.shards = 3;
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("the records past the snapshot were logged by 2 shards"), std::string::npos) << err;
  EXPECT_NE(err.find("--shards 2"), std::string::npos) << err;
  fx_.open();  // two shards: the replay fires every timer where it fired
  attach();
  EXPECT_EQ(payout(95).attempts.size(), 3u);
  fx_.close_snapshotted();
  fx_.set_shards(3);
  fx_.open();
  attach();
  EXPECT_EQ(payout(95).attempts.size(), 3u);
  EXPECT_EQ(payout(95).st, state::in_flight);
  up("alpha");
  s = pays(take());
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].in.attempt, 3u);
  EXPECT_EQ(answer("alpha", 95, 3, 100, wire::payout_outcome::settled), result::ok);
  EXPECT_TRUE(resolved(95));
  expect_payout_account_consistent();
}

// An equb group whose seats take their payouts through a gateway: the round's chain ends
// with a hold on the recipient's wallet under a payout id the engine makes (the top bit,
// the group's number, the hold's step), and the desk sends it like any payout. Bad routes
// are refused and change nothing; clients cannot use the engine's ids. Across restarts
// (the log alone, then a snapshot and the log) each payout is held once under the same
// id and settles or fails once; a failed one leaves the money in the member's wallet.
TEST_F(payout_engine_replay, equb_payouts_go_out_through_a_gateway_once_across_restarts) {
  using actors::equb::group_payout_id;
  using actors::equb::number_of;
  up("alpha");
  constexpr uint64_t group = 600, fee = 601, other_group = 610;
  constexpr uint64_t due = 1000, pot = 3 * due, net = pot - pot / 100;  // 1% fee
  ASSERT_EQ(e().create_accounts({make_account(fee)}).results.at(0), result::ok);
  auto create = make_equb_create(group, fee, due);
  create.fee_bp = 100;
  auto create_other = make_equb_create(other_group, fee, due);
  auto numbered = make_equb_create(other_group + 1, fee, due);
  numbered.seed[0] = 7;  // the number is the engine's to give
  ASSERT_EQ(e().equb({create, create_other, numbered}).results,
            (std::vector<result>{result::ok, result::ok, result::equb_op_invalid}));
  uint64_t next_payment = 20'000;
  auto pay_in = [&](uint64_t wallet, uint32_t round, uint32_t seat) {
    wire::transfer t = make_transfer(next_payment++, wallet, group, due, wire::transfer_flags::equb);
    t.user_data = uint64_t(round) << 32 | seat;
    return e().create_transfers({t}).results.at(0);
  };
  for (uint64_t w = 1; w <= 3; ++w) ASSERT_EQ(pay_in(w, 0, 0), result::ok);  // seats 0, 1, 2
  auto route = [&](uint64_t g, uint32_t seat, uint64_t wallet, uint8_t rail, uint64_t destination) {
    wire::equb_op op;
    op.kind = wire::equb_op_kind::payout_to;
    op.group_id = g;
    op.seat = seat;
    op.wallet = wallet;
    op.rail = rail;
    op.amount = destination;
    return e().equb({op}).results.at(0);
  };
  const auto before = e().lookup_groups({group}).groups.at(0);
  EXPECT_EQ(route(group, 1, 3, 1, 251'900'000'002), result::not_a_member);
  EXPECT_EQ(route(group, 1, 2, 3, 251'900'000'002), result::payout_rail_unserved);  // no bank gateway
  EXPECT_EQ(route(group, 1, 2, 9, 251'900'000'002), result::rail_invalid);
  EXPECT_EQ(route(group, 1, 2, 1, 0), result::payout_destination_missing);
  EXPECT_EQ(route(group, 1, 2, 0, 5), result::equb_op_invalid);
  EXPECT_EQ(route(12'345, 1, 2, 1, 5), result::group_not_found);
  EXPECT_EQ(actors::equb::encode_entry(e().lookup_groups({group}).groups.at(0)), actors::equb::encode_entry(before));
  ASSERT_EQ(route(group, 1, 2, 1, 251'900'000'002), result::ok);
  ASSERT_EQ(route(group, 2, 3, 1, 251'900'000'003), result::ok);
  auto g = e().lookup_groups({group, other_group});
  const uint64_t number = g.groups.at(0).g.number;
  EXPECT_NE(number, 0u);
  EXPECT_NE(g.groups.at(1).g.number, number);  // numbers are unique
  EXPECT_EQ(number_of(actors::equb::to_item(g.groups.at(0)).config), number);
  EXPECT_EQ(g.groups.at(0).g.seats.at(1).payout_rail, 1);
  EXPECT_EQ(g.groups.at(0).g.seats.at(1).destination, 251'900'000'002u);
  // A client's payout id in the engine's range is refused.
  EXPECT_EQ(pay(group_payout_id(number, 3), 4, 10), result::payout_id_reserved);

  auto carried = [&] {  // the group's chains have run
    for (int i = 0; i < 2000; ++i) {
      const auto x = e().lookup_groups({group}).groups.at(0);
      if (x.owed.empty()) return x;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ADD_FAILURE() << "the group's payments are still in flight";
    return e().lookup_groups({group}).groups.at(0);
  };
  wire::equb_op start;
  start.kind = wire::equb_op_kind::start;
  start.group_id = group;
  ASSERT_EQ(e().equb({start}).results.at(0), result::ok);  // round 1 pays seat 0 to its wallet
  carried();
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(available(1), starting - due + net);

  // Round 2 pays seat 1 (wallet 2) on through alpha.
  for (uint32_t s = 0; s < 3; ++s) ASSERT_EQ(pay_in(s + 1, 2, s), result::ok);
  const auto after2 = carried();
  EXPECT_EQ(after2.g.round, 3u);
  auto s = take();
  ASSERT_EQ(s.size(), 1u);
  const uint64_t p2 = s[0].in.payout_id;
  EXPECT_TRUE(actors::payouts::engine_payout(p2));
  EXPECT_EQ(p2 >> 24, (actors::payouts::engine_payout_bit | number << 24) >> 24);  // its number
  EXPECT_EQ(s[0].gateway, "alpha");
  EXPECT_EQ(s[0].in.amount, net);
  EXPECT_EQ(s[0].in.destination, 251'900'000'002u);
  EXPECT_EQ(available(2), starting - 2 * due);  // received, and held on its way out
  EXPECT_EQ(payout(p2).wallet, 2u);
  expect_payout_account_consistent();

  restart();  // the log alone: the same payout, held once, sent again when a session opens
  EXPECT_EQ(e().recovery().groups_reemitted, 0u);
  // The create refused for its client-given number stays refused in replay (before, the
  // log carried the number and replay made the group).
  EXPECT_EQ(e().lookup_groups({other_group + 1}).results.at(0), result::group_not_found);
  auto held = e().lookup_payouts(0, 100).payouts;
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].id, p2);
  EXPECT_EQ(available(2), starting - 2 * due);
  up("alpha");
  s = take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].in.payout_id, p2);
  EXPECT_EQ(answer("alpha", p2, s[0].in.attempt, net, wire::payout_outcome::settled), result::ok);
  EXPECT_EQ(answer("alpha", p2, s[0].in.attempt, net, wire::payout_outcome::settled), result::payout_already_resolved);
  EXPECT_EQ(account(2).debits_posted, 2 * due + net);
  EXPECT_EQ(account(settle_a).credits_posted, net);

  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  // Round 3 pays seat 2 (wallet 3) on, after the snapshot; the gateway fails it.
  for (uint32_t k = 0; k < 3; ++k) ASSERT_EQ(pay_in(k + 1, 3, k), result::ok);
  const auto done = carried();
  EXPECT_EQ(done.g.ph, actors::equb::phase::completed);
  s = take();
  ASSERT_EQ(s.size(), 1u);
  const uint64_t p3 = s[0].in.payout_id;
  EXPECT_NE(p3, p2);
  restart();  // the snapshot and the log after it
  held = e().lookup_payouts(0, 100).payouts;
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].id, p3);
  up("alpha");
  s = take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(answer("alpha", p3, s[0].in.attempt, net, wire::payout_outcome::failed), result::ok);
  EXPECT_TRUE(resolved(p3));
  EXPECT_EQ(available(3), starting - 3 * due + net);  // the payout stays in the wallet
  EXPECT_EQ(account(settle_a).credits_posted, net);
  const auto final_group = e().lookup_groups({group}).groups.at(0);
  EXPECT_EQ(actors::equb::escrow_expected(final_group), 0u);
  expect_payout_account_consistent();
}

// A group whose routed seat's currency no gateway serves any more, after a restart with
// another shard count: the start makes that count's payout account for the currency
// anyway, so the round's chain (ending with the hold) is carried and the desk waits for
// a route, instead of the whole payout being refused.
TEST_F(payout_engine_replay, a_routed_groups_hold_finds_its_account_after_a_shard_change) {
  using actors::payouts::desk_account_for;
  const auto two = actors::payouts::desk_accounts_for(etb, 2);
  uint64_t wallet = 0;  // a wallet whose 3-shard payout account the 2-shard start did not make
  for (uint64_t w = 1; w <= 8 && wallet == 0; ++w) {
    const uint64_t a = desk_account_for(etb, actors::shard_of(w, 3), 3);
    if (std::find(two.begin(), two.end(), a) == two.end()) wallet = w;
  }
  ASSERT_NE(wallet, 0u);
  const uint64_t other = wallet == 1 ? 2 : 1;
  constexpr uint64_t group = 650, fee = 651, due = 500;
  ASSERT_EQ(e().create_accounts({make_account(fee)}).results.at(0), result::ok);
  ASSERT_EQ(e().equb({make_equb_create(group, fee, due)}).results.at(0), result::ok);
  uint64_t id = 30'000;
  auto pay_in = [&](uint64_t w, uint32_t round, uint32_t seat) {
    wire::transfer t = make_transfer(id++, w, group, due, wire::transfer_flags::equb);
    t.user_data = uint64_t(round) << 32 | seat;
    return e().create_transfers({t}).results.at(0);
  };
  ASSERT_EQ(pay_in(other, 0, 0), result::ok);
  ASSERT_EQ(pay_in(wallet, 0, 0), result::ok);
  wire::equb_op route;
  route.kind = wire::equb_op_kind::payout_to;
  route.group_id = group;
  route.seat = 1;
  route.wallet = wallet;
  route.rail = 1;
  route.amount = 251'900'000'777;
  ASSERT_EQ(e().equb({route}).results.at(0), result::ok);
  wire::equb_op start;
  start.kind = wire::equb_op_kind::start;
  start.group_id = group;
  ASSERT_EQ(e().equb({start}).results.at(0), result::ok);
  // Neither gateway serves ETB any more.
  const wire::currency_code usd = wire::currency("USD");
  std::vector<wire::gateway_op> updates;
  for (const auto& [name, acct] : {std::pair{"alpha", uint64_t(7101)}, std::pair{"beta", uint64_t(7102)}}) {
    auto u = registration(name, 0, 1);
    u.kind = wire::gateway_op_kind::update;
    u.secret_bytes = 0;
    std::fill(std::begin(u.secret), std::end(u.secret), 0);
    u.currencies[0] = {usd, 0, acct};
    updates.push_back(u);
  }
  ASSERT_EQ(e().gateways(updates).results, (std::vector<result>{result::ok, result::ok}));
  fx_.close_snapshotted();  // (the group's decisions were placed by 2 shards: snapshot first)
  fx_.set_shards(3);
  fx_.open();
  attach();
  ASSERT_EQ(pay_in(other, 2, 0), result::ok);
  ASSERT_EQ(pay_in(wallet, 2, 1), result::ok);  // round 2 pays seat 1 on
  for (int i = 0; i < 2000 && !e().lookup_groups({group}).groups.at(0).owed.empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const auto g = e().lookup_groups({group}).groups.at(0);
  EXPECT_TRUE(g.owed.empty()) << "the round's payout chain was not carried";
  EXPECT_EQ(g.g.ph, actors::equb::phase::completed);
  const auto held = e().lookup_payouts(0, 100).payouts;
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].wallet, wallet);
  EXPECT_EQ(held[0].desk, desk_account_for(etb, actors::shard_of(wallet, 3), 3));
  EXPECT_EQ(held[0].st, state::waiting);  // no route: the desk waits, as for any payout
  expect_payout_account_consistent();
}

// Records from before group numbers (version 2) replay as that build decided them: a
// create carrying seed bytes and a payout_to were refused then (equb_op_invalid) and are
// refused in replay; a plain create makes a group with no number, whose payouts go to
// wallets only; the next create gets a number.
TEST(payout_engine_upgrade, group_operations_of_an_older_build_replay_as_they_were_decided) {
  temp_dir dir;
  auto a = make_equb_create(801, 900, 100);
  a.seed[0] = 5;
  const auto b = make_equb_create(802, 900, 100);
  wire::equb_op route;
  route.kind = wire::equb_op_kind::payout_to;
  route.group_id = 802;
  std::vector<uint8_t> ops(3 * sizeof(wire::equb_op));
  std::memcpy(ops.data(), &a, sizeof a);
  std::memcpy(ops.data() + sizeof a, &b, sizeof b);
  std::memcpy(ops.data() + 2 * sizeof a, &route, sizeof route);
  write_batch_record(dir.path(), 2, uint16_t(actors::op_kind::equb_ops), 3, ops);
  std::string err;
  auto e = engine::engine::open(test_config(dir.path()), &err);
  ASSERT_TRUE(e) << err;
  const auto r = e->lookup_groups({801, 802});
  EXPECT_EQ(r.results, (std::vector<result>{result::group_not_found, result::ok}));
  EXPECT_EQ(r.groups.at(1).g.number, 0u);
  EXPECT_EQ(r.groups.at(1).g.seats.size(), 0u);
  // A payout route on the old group is refused; a new group is numbered.
  ASSERT_EQ(e->create_accounts({make_account(7), make_account(900)}).results,
            (std::vector<result>{result::ok, result::ok}));
  ASSERT_EQ(e->create_transfers({make_transfer(1, 900, 7, 1000)}).results.at(0), result::ok);
  wire::transfer join = make_transfer(2, 7, 802, 100, wire::transfer_flags::equb);
  ASSERT_EQ(e->create_transfers({join}).results.at(0), result::ok);
  route.seat = 0;
  route.wallet = 7;
  route.rail = 1;
  route.amount = 5;
  EXPECT_EQ(e->equb({route}).results.at(0), result::group_payouts_wallet_only);
  ASSERT_EQ(e->equb({make_equb_create(803, 900, 100)}).results.at(0), result::ok);
  EXPECT_EQ(e->lookup_groups({803}).groups.at(0).g.number, 1u);
}

// Groups are created with rounds and graces of at most 120 days (period_too_long); a
// create of an older build's record (version 4) with a longer one replays as it was
// taken, since that build acknowledged it.
TEST(payout_engine_upgrade, a_longer_period_is_refused_now_and_replayed_as_taken_before) {
  temp_dir dir;
  auto old = make_equb_create(811, 900, 100);
  old.period_ns = 200ull * 86'400 * 1'000'000'000;
  std::vector<uint8_t> ops(sizeof old);
  std::memcpy(ops.data(), &old, sizeof old);
  write_batch_record(dir.path(), 4, uint16_t(actors::op_kind::equb_ops), 1, ops);
  std::string err;
  auto e = engine::engine::open(test_config(dir.path()), &err);
  ASSERT_TRUE(e) << err;
  const auto r = e->lookup_groups({811});
  ASSERT_EQ(r.results.at(0), result::ok);
  EXPECT_EQ(r.groups.at(0).g.cfg.period_ns, old.period_ns);
  ASSERT_EQ(e->create_accounts({make_account(900)}).results.at(0), result::ok);  // the fee account
  auto now = make_equb_create(812, 900, 100);
  now.period_ns = actors::equb::period_max_ns + 1;
  EXPECT_EQ(e->equb({now}).results.at(0), result::period_too_long);
  now.period_ns = actors::equb::period_max_ns;
  now.grace_ns = actors::equb::period_max_ns + 1;
  EXPECT_EQ(e->equb({now}).results.at(0), result::period_too_long);
  now.grace_ns = actors::equb::period_max_ns;  // as long as the period: no payment could be on time
  EXPECT_EQ(e->equb({now}).results.at(0), result::grace_not_within_period);
  now.grace_ns = actors::equb::period_max_ns - 1;
  EXPECT_EQ(e->equb({now}).results.at(0), result::ok);
  EXPECT_EQ(e->lookup_groups({812}).results.at(0), result::ok);
  // A client's retry of the older create (the same config) is answered ok, as any repeat
  // of a create is; another config under the id is still refused.
  EXPECT_EQ(e->equb({old}).results.at(0), result::ok);
  auto other = old;
  other.fee_bp = 7;
  EXPECT_EQ(e->equb({other}).results.at(0), result::exists_with_different_fields);
  EXPECT_EQ(e->lookup_groups({811}).groups.at(0).g.cfg.fee_bp, old.fee_bp);
}

// replace_account arrived with batch records of version 7: in an older record it was
// refused (equb_op_invalid, an unknown kind then), and replays so.
TEST(payout_engine_upgrade, replace_account_in_an_older_record_replays_as_refused) {
  for (const uint16_t version : {uint16_t(6), uint16_t(7)}) {
    temp_dir dir;
    const auto create = make_equb_create(821, 900, 100);
    const wire::equb_op replace = make_equb_replace(821, 900, 901);
    write_batch_records(dir.path(), {{6, uint16_t(actors::op_kind::equb_ops), 1, ops_bytes(std::vector{create})},
                                     {version, uint16_t(actors::op_kind::equb_ops), 1, ops_bytes(std::vector{replace})}});
    std::string err;
    auto e = engine::engine::open(test_config(dir.path()), &err);
    ASSERT_TRUE(e) << err;
    EXPECT_EQ(e->lookup_groups({821}).groups.at(0).g.cfg.fee_account_id, version == 6 ? 900u : 901u)
        << "version " << version;
  }
}

// For logs written by hand: the payout accounts (one a shard, of two) and alpha's
// settlement account, as a registration makes them (system accounts, a settlement account).
struct registered_accounts {
  std::vector<wire::account> desks;
  wire::account settlement{};
};
registered_accounts accounts_as_registered() {
  registered_accounts r;
  for (uint32_t s = 0; s < 2; ++s) {
    wire::account a{};
    a.id = actors::payouts::desk_account_for(etb, s, 2);
    a.currency = etb;
    a.kind = wire::account_kind::system;
    r.desks.push_back(a);
  }
  r.settlement.id = settle_a;
  r.settlement.currency = etb;
  r.settlement.kind = wire::account_kind::gateway_settlement;
  return r;
}

// payout_answer.failure was a reserved byte before rules version 39: an answer of an
// older build's record with it set was refused (reserved_field) and replays so, its
// payout still held; the same answer in a record of version 39 is a decline that voids
// the hold. (The records before the answer are of version 15, a build before the records
// carried capacities.)
TEST(payout_engine_upgrade, a_declined_answer_in_an_older_record_replays_as_refused) {
  for (const uint16_t version : {uint16_t(38), uint16_t(39)}) {
    temp_dir dir;
    const uint16_t v = 15;
    const uint64_t wallet = 7;
    const auto gateway = make_gateway_registration("alpha", settle_a, 1, 1000);
    const std::vector<wire::account> accounts{make_account(wallet, wire::account_flags::debits_must_not_exceed_credits),
                                              make_account(funding)};
    const auto [desks, settlement] = accounts_as_registered();
    wire::transfer hold = make_transfer(1, wallet, desks[actors::shard_of(wallet, 2)].id, 10, wire::transfer_flags::pending);
    hold.id = actors::payouts::hold_id(5);
    hold.user_data = 251911000005;  // the destination
    hold.code = 1;                  // the rail
    wire::payout_answer declined = etb_payout_answer(5, 1, 10, wire::payout_outcome::failed, 1);
    declined.failure = wire::payout_failure::declined;
    write_batch_records(
        dir.path(),
        {{v, uint16_t(actors::op_kind::create_accounts), 2, ops_bytes(accounts)},
         {v, uint16_t(actors::op_kind::create_transfers), 1, ops_bytes(std::vector{make_transfer(2, funding, wallet, 1000)})},
         {v, uint16_t(actors::op_kind::create_accounts), 2, ops_bytes(desks), 2 /* batch_flag_gateway */},
         {v, uint16_t(actors::op_kind::create_accounts), 1, ops_bytes(std::vector{settlement}), 2 /* batch_flag_gateway */},
         {v, uint16_t(actors::op_kind::gateway_ops), 1, ops_bytes(std::vector{gateway})},
         {v, uint16_t(actors::op_kind::gateway_events), 1,
          ops_bytes(std::vector{wire::gateway_event{1, wire::gateway_event_kind::up, {}}})},
         {v, uint16_t(actors::op_kind::create_transfers), 1, ops_bytes(std::vector{hold}), 2 /* batch_flag_gateway */},
         {version, uint16_t(actors::op_kind::payout_answers), 1, ops_bytes(std::vector{declined})}});
    std::string err;
    auto e = engine::engine::open(test_config(dir.path()), &err);
    ASSERT_TRUE(e) << err;
    // The void a failing payout's replay leaves owed is sent again at the start: the
    // payout leaves the desk once it has run (the payouts first, then the wallet).
    auto held = e->lookup_payouts(5, 1).payouts;
    for (int i = 0; i < 1000 && !held.empty() && held[0].st == state::failing; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      held = e->lookup_payouts(5, 1).payouts;
    }
    const auto w = e->lookup_accounts({wallet}).accounts.at(0);
    ASSERT_EQ(w.credits_posted, 1000u) << "version " << version;
    if (version < actors::rules_payout_declines) {
      ASSERT_EQ(held.size(), 1u) << "refused then: the payout is still out";
      EXPECT_EQ(held[0].st, state::in_flight);
      EXPECT_EQ(w.debits_pending, 10u);
    } else {
      EXPECT_TRUE(held.empty()) << "declined: the hold is voided";
      EXPECT_EQ(w.debits_pending, 0u);
      EXPECT_EQ(w.debits_posted, 0u);
    }
  }
}

// A payout holding a gateway's settlement account, in a record of version 41, replays as
// it was taken (held, and the desk's); in a record of version 42 it is refused,
// customer_wallet_required, and nothing is held.
TEST(payout_engine_upgrade, a_payout_from_a_settlement_account_in_an_older_record_replays_as_held) {
  for (const uint16_t version : {uint16_t(actors::rules_payout_from_wallet - 1), actors::rules_payout_from_wallet}) {
    SCOPED_TRACE(version);
    temp_dir dir;
    const uint16_t v = 15;
    const auto gateway = make_gateway_registration("alpha", settle_a, 1, 1000);
    const auto [desks, settlement] = accounts_as_registered();
    // A transfer batch's record carries the pending_max and transfers_max it was decided by.
    auto with_capacities = [](std::vector<uint8_t> ops) {
      std::vector<uint8_t> body(2 * sizeof(uint64_t));
      const uint64_t caps[2] = {1u << 20, 1u << 20};
      std::memcpy(body.data(), caps, sizeof caps);
      body.insert(body.end(), ops.begin(), ops.end());
      return body;
    };
    wire::transfer hold =
        make_transfer(1, settle_a, desks[actors::shard_of(settle_a, 2)].id, 10, wire::transfer_flags::pending);
    hold.id = actors::payouts::hold_id(5);
    hold.user_data = 251911000005;  // the destination
    hold.code = 1;                  // the rail
    write_batch_records(
        dir.path(),
        {{v, uint16_t(actors::op_kind::create_accounts), 2, ops_bytes(desks), 2 /* batch_flag_gateway */},
         {v, uint16_t(actors::op_kind::create_accounts), 1, ops_bytes(std::vector{settlement}), 2 /* batch_flag_gateway */},
         {v, uint16_t(actors::op_kind::gateway_ops), 1, ops_bytes(std::vector{gateway})},
         {version, uint16_t(actors::op_kind::create_transfers), 1, with_capacities(ops_bytes(std::vector{hold})),
          2 /* batch_flag_gateway */}});
    std::string err;
    auto e = engine::engine::open(test_config(dir.path()), &err);
    ASSERT_TRUE(e) << err;
    const auto looked = e->lookup_transfers({hold.id});
    const auto s = e->lookup_accounts({settle_a}).accounts.at(0);
    const auto held = e->lookup_payouts(5, 1).payouts;
    if (version < actors::rules_payout_from_wallet) {
      EXPECT_EQ(s.debits_pending, 10u) << "held then";
      ASSERT_EQ(held.size(), 1u);
    } else {
      EXPECT_EQ(s.debits_pending, 0u);
      EXPECT_TRUE(held.empty());
      ASSERT_EQ(looked.transfers.size(), 1u);
      EXPECT_EQ(looked.transfers[0].result, uint32_t(result::customer_wallet_required));
    }
  }
}

// A log written by an older build (batch records of version 1) holding what payout desks
// decide from is refused with what to do, since this build's desks would replay it
// differently; a version 1 record of anything else replays. Version 5 records of answers
// and sessions' events replay (payout_desk_test shows their rules). The log is written
// with the engine's own log writer, as that build wrote it.
TEST(payout_engine_upgrade, an_older_builds_payout_records_are_refused_with_what_to_do) {
  auto write_log = [](const std::string& data, uint16_t kind, const std::vector<uint8_t>& op, uint16_t flags = 0) {
    write_batch_record(data, 1, kind, 1, op, flags);
  };
  // A batch of one answer: gateway 1 settled payout 5's attempt 1.
  auto answer_op = [] {
    wire::payout_answer a = etb_payout_answer(5, 1, 10);
    a.gateway = 1;
    std::vector<uint8_t> op(sizeof a);
    std::memcpy(op.data(), &a, sizeof a);
    return op;
  };
  {
    temp_dir dir;
    write_log(dir.path(), uint16_t(actors::op_kind::payout_answers), answer_op());
    std::string err;
    auto e = engine::engine::open(test_config(dir.path()), &err);
    EXPECT_FALSE(e);
    EXPECT_NE(err.find("record version 1"), std::string::npos) << err;
    EXPECT_NE(err.find("take a snapshot"), std::string::npos) << err;
  }
  {  // a payout's hold (a transfer batch flagged gateway)
    temp_dir dir;
    wire::transfer hold = make_transfer(1, 7, actors::payouts::desk_account(etb, 0), 10, wire::transfer_flags::pending);
    hold.id = actors::payouts::hold_id(9);
    std::vector<uint8_t> op(sizeof hold);
    std::memcpy(op.data(), &hold, sizeof hold);
    write_log(dir.path(), uint16_t(actors::op_kind::create_transfers), op, 2 /* batch_flag_gateway */);
    std::string err;
    auto e = engine::engine::open(test_config(dir.path()), &err);
    EXPECT_FALSE(e);
    EXPECT_NE(err.find("record version 1"), std::string::npos) << err;
  }
  // Version 5 (before cancels and overpayments): answers and sessions' events replay, by
  // the rules of the builds that wrote them (payout_desk_test shows the rules differ).
  for (const auto& [kind, ev_kind] : {std::pair{actors::op_kind::payout_answers, wire::gateway_event_kind::up},
                                      std::pair{actors::op_kind::gateway_events, wire::gateway_event_kind::down},
                                      std::pair{actors::op_kind::gateway_events, wire::gateway_event_kind::reset}}) {
    temp_dir dir;
    std::vector<uint8_t> op;
    if (kind == actors::op_kind::payout_answers) {
      op = answer_op();
    } else {
      const wire::gateway_event ev{1, ev_kind, {}};
      op.resize(sizeof ev);
      std::memcpy(op.data(), &ev, sizeof ev);
    }
    write_batch_record(dir.path(), 5, uint16_t(kind), 1, op);
    std::string err;
    auto e = engine::engine::open(test_config(dir.path()), &err);
    EXPECT_TRUE(e) << err;
  }
  {
    temp_dir dir;
    wire::account acc = make_account(42);
    std::vector<uint8_t> op(sizeof acc);
    std::memcpy(op.data(), &acc, sizeof acc);
    write_log(dir.path(), uint16_t(actors::op_kind::create_accounts), op);
    std::string err;
    auto e = engine::engine::open(test_config(dir.path()), &err);
    ASSERT_TRUE(e) << err;
    EXPECT_EQ(e->lookup_accounts({42}).results.at(0), result::ok);
  }
}

}  // namespace
}  // namespace mesob::test
