// The payout desk's ids and byte forms (actors/payout_desk.hpp): a payout account per
// currency and shard, the reserved id ranges, emitted ids naming their desk, rows of
// format 2 round-tripping and rows of format 1 (one desk per currency) read as slot 0's,
// and damage the decoders must refuse.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <vector>

#include "actors/byte_codec.hpp"
#include "actors/payout_desk.hpp"
#include "support/payouts.hpp"
#include "support/seed.hpp"
#include "wire/protocol.hpp"

namespace mesob::actors::payouts {
namespace {

const wire::currency_code etb = wire::currency("ETB");

TEST(payout_desk, each_shard_has_a_payout_account_that_lives_on_it) {
  for (const wire::currency_code c : {wire::currency("ETB"), wire::currency("USD"), wire::currency("KES")}) {
    const std::string cur = wire::currency_name(c);
    for (uint32_t shards = 1; shards <= 32; ++shards) {
      const auto ids = desk_accounts_for(c, shards);
      ASSERT_EQ(ids.size(), shards);
      EXPECT_EQ(std::set<uint64_t>(ids.begin(), ids.end()).size(), shards) << cur << " " << shards;
      for (uint32_t s = 0; s < shards; ++s) {
        EXPECT_EQ(shard_of(ids[s], shards), s) << cur << " shard " << s << " of " << shards;
        EXPECT_TRUE(payout_account(ids[s]));
        EXPECT_EQ(desk_currency(ids[s]), c);
        EXPECT_LT(desk_slot(ids[s]), desk_slots - 1);  // found, not the stand-in
      }
    }
  }
  // One shard: slot 0, the account of the days of one desk per currency.
  EXPECT_EQ(desk_account_for(etb, 0, 1), desk_account(etb, 0));
  EXPECT_EQ(desk_account(etb, 0), account_hi | etb);
}

TEST(payout_desk, reserved_ranges_and_emitted_ids_name_their_desk) {
  const uint64_t desk = desk_account(etb, 4095);
  EXPECT_TRUE(payout_account(desk));
  EXPECT_EQ(desk_slot(desk), 4095u);
  EXPECT_FALSE(payout_account(account_hi - 1));
  EXPECT_FALSE(payout_account(account_hi | (uint64_t(1) << 36)));  // the holds' range
  EXPECT_FALSE(payout_account(0x9A700C1000000000ull));
  const auto id = emitted_id(desk, 77);
  EXPECT_TRUE(emitted(id));
  EXPECT_TRUE(reserved_id(id));
  EXPECT_EQ(emitting_desk(id), desk);
  EXPECT_EQ(id.lo, 77u);
  EXPECT_TRUE(hold(hold_id(5)));
  EXPECT_TRUE(reserved_id(hold_id(5)));
  EXPECT_TRUE(reserved_id({1, hold_hi | 0xABCDEF}));       // the whole hold range
  EXPECT_FALSE(hold({1, hold_hi | 0xABCDEF}));             // but only hold_hi is a hold
  EXPECT_FALSE(reserved_id({1, account_hi}));              // account ids are not transfer ids
  EXPECT_FALSE(emitted({1, 0x9A700C3000000000ull}));
}

payout_entry sample_payout() {
  payout_entry p;
  p.id = 42;
  p.desk = desk_account(etb, 3);
  p.wallet = 9;
  p.amount = 1500;
  p.destination = 251911000000;
  p.currency = etb;
  p.rail = 1;
  p.st = state::in_flight;
  p.created_at = 1000;
  p.due = 2000;
  p.attempts = {{1, 1000, 7001, true}, {2, 1500, 7002, false}};
  p.given_up = {1};
  return p;
}

TEST(payout_desk, payout_rows_round_trip_and_damage_is_refused) {
  const payout_entry p = sample_payout();
  const auto bytes = encode_payout(p);
  payout_entry back;
  std::string why;
  ASSERT_TRUE(decode_payout(bytes, &back, &why)) << why;
  EXPECT_EQ(back.id, p.id);
  EXPECT_EQ(back.desk, p.desk);
  EXPECT_EQ(back.amount, p.amount);
  EXPECT_EQ(back.attempts.size(), 2u);
  EXPECT_TRUE(back.attempts[0].failed);
  EXPECT_EQ(back.given_up, p.given_up);
  // Every truncation is refused.
  for (size_t n = 0; n < bytes.size(); ++n) {
    payout_entry x;
    EXPECT_FALSE(decode_payout(std::span(bytes.data(), n), &x, &why)) << n;
  }
  // A desk that is not a payout account, or of another currency.
  for (const uint64_t desk : {uint64_t(12345), desk_account(wire::currency("USD"), 3)}) {
    auto q = p;
    q.desk = desk;
    payout_entry x;
    EXPECT_FALSE(decode_payout(encode_payout(q), &x, &why));
  }
  // Values no build writes: gateways given up twice or numbered 0, a refusal that is no
  // result, a settlement refused without one.
  auto refused = [&](const payout_entry& q, const char* what) {
    payout_entry x;
    std::string w;
    EXPECT_FALSE(decode_payout(encode_payout(q), &x, &w)) << what;
    EXPECT_NE(w.find("payout 42: "), std::string::npos) << what << ": " << w;
  };
  auto q = p;
  q.given_up = {1, 1};
  refused(q, "given up twice");
  q.given_up = {0};
  refused(q, "gateway 0 given up");
  q = p;
  q.refusal = wire::result(65000);
  refused(q, "no such result");
  q = p;
  q.st = state::settle_refused;
  q.settled_by = 2;
  q.settlement = 7002;
  q.chain_step = 5;
  refused(q, "settle_refused without a refusal");
  q.refusal = wire::result::debit_account_frozen;
  payout_entry x;
  EXPECT_TRUE(decode_payout(encode_payout(q), &x, &why)) << why;
  EXPECT_EQ(x.refusal, wire::result::debit_account_frozen);
}

// A payout kept resolved: its answers per attempt round-trip; one that no gateway may
// still pay, or with no deadline, is refused (it would be kept for nothing, or for ever).
TEST(payout_desk, resolved_rows_keep_each_attempts_answer) {
  payout_entry p = sample_payout();
  p.st = state::resolved;
  p.settled_by = 2;
  p.settlement = 7002;
  p.attempts = {{1, 1000, 7001, false, false}, {2, 1500, 7002, false, true}};
  EXPECT_TRUE(may_pay(p, 1));
  EXPECT_FALSE(may_pay(p, 2));
  EXPECT_FALSE(may_pay(p, 3));
  EXPECT_TRUE(another_may_pay(p, 2));
  EXPECT_FALSE(another_may_pay(p, 1));
  payout_entry back;
  std::string why;
  ASSERT_TRUE(decode_payout(encode_payout(p), &back, &why)) << why;
  EXPECT_EQ(back.st, state::resolved);
  EXPECT_FALSE(back.attempts[0].settled || back.attempts[0].failed);
  EXPECT_TRUE(back.attempts[1].settled);
  EXPECT_FALSE(back.attempts[1].failed);
  auto none_left = p;
  none_left.attempts[0].failed = true;
  EXPECT_FALSE(decode_payout(encode_payout(none_left), &back, &why));
  auto no_deadline = p;
  no_deadline.due = 0;
  EXPECT_FALSE(decode_payout(encode_payout(no_deadline), &back, &why));
  // Only the latest attempt a gateway got counts: an older one answered failed does not
  // close a later one.
  p.attempts = {{1, 1000, 7001, true, false}, {2, 1500, 7002, false, true}, {1, 1600, 7001, false, false}};
  EXPECT_TRUE(may_pay(p, 1));
}

TEST(payout_desk, reconciliation_rows_from_before_overpayments_read_with_none) {
  recon_counts c;
  c.settled = 3;
  c.settled_amount = 300;
  c.overpaid = 1;
  c.overpaid_amount = 100;
  const recon_key k{5, 20'000, etb};
  const auto bytes = encode_recon(c);
  ASSERT_EQ(bytes.size(), 80u);
  recon_row row;
  std::string why;
  ASSERT_TRUE(decode_recon(recon_row_key(k), bytes, &row, &why)) << why;
  EXPECT_EQ(row.c.overpaid, 1u);
  EXPECT_EQ(row.c.overpaid_amount, 100u);
  ASSERT_TRUE(decode_recon(recon_row_key(k), std::span(bytes.data(), 64), &row, &why)) << why;
  EXPECT_EQ(row.c.settled_amount, 300u);
  EXPECT_EQ(row.c.overpaid, 0u);
  for (const size_t n : {size_t(0), size_t(63), size_t(72), size_t(79), size_t(88)}) {
    std::vector<uint8_t> b(n, 0);
    EXPECT_FALSE(decode_recon(recon_row_key(k), b, &row, &why)) << n;
  }
}

TEST(payout_desk, format_1_rows_are_slot_0s) {
  // A format 1 payout row: the format 2 row without its desk field; format 2, the format 3
  // row without its cancel_wait (last).
  const payout_entry p = sample_payout();
  const auto v3 = encode_payout(p);
  std::vector<uint8_t> v2(v3.begin(), v3.end() - 4);
  v2[0] = 2;
  payout_entry back;
  std::string why;
  ASSERT_TRUE(decode_payout(v2, &back, &why)) << why;
  EXPECT_EQ(back.cancel_wait, 0u);
  EXPECT_EQ(back.attempts.size(), 2u);
  std::vector<uint8_t> v1;
  byte_writer w;
  w.put(uint32_t(1));
  v1 = w.out;
  v1.insert(v1.end(), v2.begin() + 4, v2.begin() + 12);  // id
  v1.insert(v1.end(), v2.begin() + 20, v2.end());        // past the desk
  ASSERT_TRUE(decode_payout(v1, &back, &why)) << why;
  EXPECT_EQ(back.id, 42u);
  EXPECT_EQ(back.desk, desk_account(etb, 0));
  EXPECT_EQ(back.wallet, 9u);
  EXPECT_EQ(back.attempts.size(), 2u);

  // A format 1 desk row: currency, step counter, breakers with 32-bit outcomes.
  byte_writer d;
  d.put(uint32_t(1));
  d.put(etb);
  d.put(uint64_t(9));  // next step
  d.put(uint32_t(1));  // one breaker
  d.put(uint32_t(2));  // gateway 2
  d.put(uint8_t(breaker::phase::closed));
  d.put(uint8_t(12));            // n
  d.put(uint32_t(0b101));        // outcomes
  for (int i = 0; i < 9; ++i) d.put(uint64_t(i));  // open_until .. failed_amount
  desk k;
  ASSERT_TRUE(decode_desk(d.out, &k, &why)) << why;
  EXPECT_EQ(k.account, desk_account(etb, 0));
  EXPECT_EQ(k.currency, etb);
  EXPECT_EQ(k.next_step, 9u);
  ASSERT_EQ(k.breakers.count(2), 1u);
  EXPECT_EQ(k.breakers[2].n, 12u);
  EXPECT_EQ(k.breakers[2].outcomes, 0b101u);
  EXPECT_EQ(k.breakers[2].failed_amount, 8u);

  // Format 2 round-trips, 64 outcomes kept.
  k.account = desk_account(etb, 17);
  k.breakers[2].outcomes = ~0ull;
  k.breakers[2].n = 64;
  desk again;
  ASSERT_TRUE(decode_desk(encode_desk(k), &again, &why)) << why;
  EXPECT_EQ(again.account, k.account);
  EXPECT_EQ(again.breakers[2].outcomes, ~0ull);
  // A window longer than 64, or a desk account of another currency, is damage.
  k.breakers[2].n = 65;
  EXPECT_FALSE(decode_desk(encode_desk(k), &again, &why));
  k.breakers[2].n = 64;
  k.account = desk_account(wire::currency("USD"), 17);
  EXPECT_FALSE(decode_desk(encode_desk(k), &again, &why));
  // Unknown formats.
  auto bad = encode_desk(again);
  bad[0] = 5;
  EXPECT_FALSE(decode_desk(bad, &again, &why));
  bad[0] = 0;
  EXPECT_FALSE(decode_desk(bad, &again, &why));
}

TEST(payout_desk, sweeps_round_trip_and_damage_is_refused) {
  desk d;
  d.account = desk_account(etb, 2);
  d.currency = etb;
  d.next_step = 10;
  d.sweeps[7001] = {50, 4, 20, wire::result::ok, 0};                    // in flight
  d.sweeps[7002] = {9, 0, 0, wire::result::credit_account_frozen, 777, 3};  // refused thrice, retry due at 777
  desk back;
  std::string why;
  ASSERT_TRUE(decode_desk(encode_desk(d), &back, &why)) << why;
  ASSERT_EQ(back.sweeps.size(), 2u);
  EXPECT_EQ(back.sweeps[7001].amount, 20u);
  EXPECT_EQ(back.sweeps[7002].refusal, wire::result::credit_account_frozen);
  EXPECT_EQ(back.sweeps[7002].refusals, 3u);
  EXPECT_EQ(back.owed(), 59u);
  auto damaged = [&](auto change) {
    desk x = d;
    change(x);
    desk y;
    return !decode_desk(encode_desk(x), &y, &why);
  };
  EXPECT_TRUE(damaged([](desk& x) { x.sweeps[7001].amount = 51; }));       // more than owed
  EXPECT_TRUE(damaged([](desk& x) { x.sweeps[7001].step = 10; }));         // a step not yet taken
  EXPECT_TRUE(damaged([](desk& x) { x.sweeps[7001].amount = 0; }));        // in flight with nothing
  EXPECT_TRUE(damaged([](desk& x) { x.sweeps[7001].owed = 0; x.sweeps[7001].amount = 0; x.sweeps[7001].step = 0; }));
  EXPECT_TRUE(damaged([](desk& x) { x.sweeps[7002].retry_at = 0; }));      // refused, never retried
  EXPECT_TRUE(damaged([](desk& x) { x.sweeps[7001].refusal = wire::result::credit_account_frozen; x.sweeps[7001].retry_at = 5; }));
  EXPECT_TRUE(damaged([](desk& x) { x.sweeps[7003] = {5, 4, 5, wire::result::ok, 0}; }));      // a step twice
  EXPECT_TRUE(damaged([](desk& x) { x.sweeps[7002].refusal = wire::result(9999); }));           // no such refusal
  EXPECT_TRUE(damaged([](desk& x) { x.sweeps[7002].refusals = sweep_refusals_max + 1; }));      // past the count kept
  EXPECT_TRUE(damaged([](desk& x) { x.sweeps[7002].refusal = wire::result::ok; x.sweeps[7002].retry_at = 0; }));  // refusals, none now
  EXPECT_FALSE(damaged([](desk& x) { x.sweeps[7001].refusals = 2; }));  // a retry in flight
  // A format 3 row (before rules version 25) has no refusals in a row: read as none.
  desk one = d;
  one.sweeps.erase(7001);
  auto v3 = encode_desk(one);
  ASSERT_EQ(v3[0], 4u);
  v3[0] = 3;
  v3.resize(v3.size() - sizeof(uint32_t));
  ASSERT_TRUE(decode_desk(v3, &back, &why)) << why;
  EXPECT_EQ(back.sweeps.at(7002).refusals, 0u);
  EXPECT_EQ(back.sweeps.at(7002).retry_at, 777u);
  EXPECT_TRUE(damaged([](desk& x) { x.breakers[3] = breaker{}; x.breakers[3].n = 2; x.breakers[3].outcomes = 0b100; }));
  EXPECT_FALSE(damaged([](desk&) {}));
}

}  // namespace
}  // namespace mesob::actors::payouts

namespace mesob::actors::payouts {
namespace {

// Every attempt is kept (a late answer names its attempt), and a snapshot row holds at
// most attempts_kept_max: an operator's retry that could pass it is refused, precisely.
TEST(payout_desk, a_retry_past_the_attempts_a_payout_keeps_is_refused) {
  const uint64_t account = desk_account(etb, 0);
  auto dead_payout = [&](uint64_t id, size_t attempts) {
    payout_entry p = sample_payout();
    p.id = id;
    p.desk = account;
    p.st = state::dead;
    p.dead = dead_reason::attempts;
    p.due = 0;
    p.given_up.clear();
    p.attempts.assign(attempts, attempt{1, 1000, 7001, false});
    p.routing_base = uint32_t(attempts - std::min<size_t>(attempts, attempts_max));
    return p;
  };
  desk_table t;
  desk d;
  d.account = account;
  d.currency = etb;
  t.load_desk(std::move(d));
  std::string why;
  ASSERT_TRUE(t.load_payout(dead_payout(1, attempts_kept_max - attempts_max + 1), &why)) << why;
  ASSERT_TRUE(t.load_payout(dead_payout(2, attempts_kept_max - attempts_max), &why)) << why;
  // (Its gateway never answered: the operator checked with it, force.)
  constexpr uint8_t force = wire::payout_op_flags::force;
  EXPECT_EQ(t.op({1, etb, wire::payout_op_kind::retry, 0, {}}, account, 5000), wire::result::payout_may_be_paid);
  const wire::payout_op retry1{1, etb, wire::payout_op_kind::retry, force, {}};
  const wire::payout_op retry2{2, etb, wire::payout_op_kind::retry, force, {}};
  EXPECT_EQ(t.op(retry1, account, 5000), wire::result::payout_retries_exhausted);
  EXPECT_EQ(t.op(retry2, account, 5000), wire::result::ok);  // its last routing fits
  // The refused one is still a dead letter an operator can cancel.
  const wire::payout_op cancel1{1, etb, wire::payout_op_kind::cancel, force, {}};
  EXPECT_EQ(t.op(cancel1, account, 5000), wire::result::ok);
  // A record from before rules version 30 (no force then) replays as it went: unchecked.
  ASSERT_TRUE(t.load_payout(dead_payout(3, 1), &why)) << why;
  t.set_rules(rules_payout_ops_checked - 1);
  EXPECT_EQ(t.op({3, etb, wire::payout_op_kind::cancel, 0, {}}, account, 5000), wire::result::ok);
}

// A registration (or, kind update, a change) of gateway `name`: one currency, ETB,
// answer timeout 1 s; roles 1 payments, 2 broker.
wire::gateway_op gateway_op_of(const char* name, uint8_t rail, uint32_t priority, uint32_t roles, uint64_t settlement,
                               wire::gateway_op_kind kind = wire::gateway_op_kind::register_gateway) {
  wire::gateway_op op{};
  op.kind = kind;
  (void)gateways::set_op_id(op, name);
  op.rail = rail;
  op.priority = priority;
  op.roles = roles;
  op.answer_timeout_ms = 1000;
  op.currencies_n = 1;
  op.currencies[0] = {etb, 0, settlement};
  if (kind == wire::gateway_op_kind::register_gateway) {
    op.secret_bytes = 32;
    for (int i = 0; i < 32; ++i) op.secret[i] = uint8_t(0x40 + i);
  }
  return op;
}

// A registry of alpha (priority 1) and beta (priority 2), payments by mobile money in
// ETB, answer timeout 1 s.
std::shared_ptr<gateways::registry> two_gateways() {
  auto reg = std::make_shared<gateways::registry>();
  for (const auto& [name, priority, settlement] : {std::tuple{"alpha", 1u, 7001ull}, std::tuple{"beta", 2u, 7002ull}})
    if (reg->apply(gateway_op_of(name, 1, priority, 1, settlement), 1) != wire::result::ok) return reg;
  return reg;
}

// A desk table on two_gateways() that keeps every instruction it hands out, with the
// gateway it went to.
struct recording_table {
  std::shared_ptr<gateways::registry> reg = two_gateways();
  uint32_t alpha = reg->find("alpha") ? reg->find("alpha")->number : 0;
  uint32_t beta = reg->find("beta") ? reg->find("beta")->number : 0;
  desk_table t;
  std::vector<std::pair<uint32_t, wire::payout_instruction>> sent;
  recording_table() {
    t.set_registry(reg);
    t.set_instruct([this](uint32_t g, std::vector<wire::payout_instruction>&& list) {
      for (const auto& in : list) sent.emplace_back(g, in);
    });
  }
};

// The hold of payout `id` (100 ETB from wallet 9, mobile money) on slot 0's desk.
wire::transfer hold_of(uint64_t id) {
  wire::transfer hold{};
  hold.id = hold_id(id);
  hold.debit_account_id = 9;
  hold.credit_account_id = desk_account(etb, 0);
  hold.amount = 100;
  hold.currency = etb;
  hold.code = 1;
  hold.user_data = 251911000000 + id;
  return hold;
}


// Payout 5 sent to alpha (up), its answer timeout passed: it waits out the backoff to be
// sent to alpha again.
void backing_off_at_alpha(recording_table& r) {
  r.t.event({r.alpha, wire::gateway_event_kind::up, {}}, 10);
  r.t.held(hold_of(5), 20);
  r.t.run_due(20 + 1'000'000'001);  // alpha's answer timeout: a backoff, then alpha again
  r.t.flush();
  ASSERT_EQ(r.sent.size(), 1u);
  ASSERT_EQ(r.sent[0].first, r.alpha);
}

// Answers and sessions' events from log records of version 5 and older are taken by the
// rules of the builds that wrote them, so that replay decides what they decided; later
// rules differ on the same inputs. (The first case compares with the rules before
// version 49, under which a deadline passing with alpha away sent the payout on at once.)
TEST(payout_desk, records_before_cancels_replay_by_their_rules) {
  const auto reg = two_gateways();
  ASSERT_EQ(reg->size(), 2u);
  const uint32_t alpha = reg->find("alpha")->number, beta = reg->find("beta")->number;
  const uint64_t account = desk_account(etb, 0);
  auto the_payout = [&](desk_table& t) {
    const payout_entry* out = nullptr;
    t.for_each_desk([&](const desk& d) {
      if (auto it = d.payouts.find(5); it != d.payouts.end()) out = &it->second;
    });
    return out;
  };
  auto answer = [&](desk_table& t, uint32_t g, uint32_t attempt, wire::payout_outcome o, uint64_t ts) {
    return t.answer(test::etb_payout_answer(5, attempt, 100, o, g), account, ts);
  };
  for (const bool before : {true, false}) {
    SCOPED_TRACE(before ? "rules before cancels" : "rules 6 to 48");
    desk_table t;
    t.set_registry(reg);
    t.event({alpha, wire::gateway_event_kind::up, {}}, 10);
    t.event({beta, wire::gateway_event_kind::up, {}}, 11);
    t.held(hold_of(5), 20);
    ASSERT_NE(the_payout(t), nullptr);
    ASSERT_EQ(the_payout(t)->attempts.size(), 1u);
    // As a record of that version sets it.
    t.set_rules(before ? rules_desk_cancels - 1 : rules_payout_waits_for_payer - 1);
    t.event({alpha, wire::gateway_event_kind::down, {}}, 30);  // alpha had it in flight
    if (!before) {
      EXPECT_EQ(the_payout(t)->attempts.size(), 1u) << "kept in flight at alpha";
      t.run_due(20 + 1'000'000'001);  // its deadline passes: beta
    }
    ASSERT_EQ(the_payout(t)->attempts.size(), 2u);
    EXPECT_EQ(the_payout(t)->attempts.back().gateway, beta);
    EXPECT_EQ(answer(t, beta, 2, wire::payout_outcome::failed, 2'000'000'000), wire::result::ok);
    EXPECT_EQ(the_payout(t)->st, state::dead);  // alpha never answered
    // alpha answers it did not pay: a late answer then; a release now.
    EXPECT_EQ(answer(t, alpha, 1, wire::payout_outcome::failed, 2'000'000'100),
              before ? wire::result::payout_answer_late : wire::result::ok);
    EXPECT_EQ(the_payout(t)->st, before ? state::dead : state::failing);
  }
  // A restart: in flight, it waited for any gateway then; it stays at its gateway now.
  for (const bool before : {true, false}) {
    SCOPED_TRACE(before ? "rules before cancels" : "this build's rules");
    desk_table t;
    t.set_registry(reg);
    t.event({alpha, wire::gateway_event_kind::up, {}}, 10);
    t.held(hold_of(5), 20);
    t.set_rules(before ? rules_desk_cancels - 1 : rules_newest);
    t.event({0, wire::gateway_event_kind::reset, {}}, 50);
    EXPECT_EQ(the_payout(t)->st, before ? state::waiting : state::in_flight);
    t.event({beta, wire::gateway_event_kind::up, {}}, 60);  // the first gateway back
    EXPECT_EQ(the_payout(t)->attempts.back().gateway, before ? beta : alpha);
  }
}

// Cancels re-sent when a gateway's first session opens come a page at a time, in payout
// id order: while a session of it stays up, the next page goes at the first batch a
// second or more after the last, until each went once; an opening after a run cut short
// goes on from past that run's last page. Before, the next page waited for the next opening: a gateway that
// stayed up never heard of the rest, and could pay them a second time.
TEST(payout_desk, cancels_on_a_session_opening_come_a_page_at_a_time) {
  recording_table r;
  ASSERT_EQ(r.reg->size(), 2u);
  const uint32_t alpha = r.alpha, beta = r.beta;
  desk_table& t = r.t;
  // Under the rules before version 49 a deadline passing with alpha away sent its payouts
  // on at once (below); this build's send payouts on past a gateway that may pay them
  // only when an operator's retry says so, and pages their cancels the same way.
  t.set_rules(rules_payout_waits_for_payer - 1);
  t.event({alpha, wire::gateway_event_kind::up, {}}, 10);
  t.event({beta, wire::gateway_event_kind::up, {}}, 11);
  const uint64_t n = 2 * cancels_on_open_max + 100;
  for (uint64_t id = 1; id <= n; ++id) {
    t.held(hold_of(id), 20);
  }
  // alpha goes down with all of them in flight; past the deadline they go to beta.
  t.event({alpha, wire::gateway_event_kind::down, {}}, 30);
  t.run_due(20 + 1'000'000'001);
  t.flush();
  r.sent.clear();
  auto cancels = [&] {
    t.flush();
    std::vector<uint64_t> ids;
    for (const auto& [g, in] : r.sent) {
      if (g != alpha) continue;
      EXPECT_EQ(in.kind, wire::payout_instruction_kind::cancel);
      EXPECT_EQ(in.attempt, 1u);
      ids.push_back(in.payout_id);
    }
    r.sent.clear();
    return ids;
  };
  auto expect_run = [&](const std::vector<uint64_t>& ids, uint64_t first, uint64_t count) {
    ASSERT_EQ(ids.size(), count);
    for (uint64_t k = 0; k < count; ++k) EXPECT_EQ(ids[k], (first - 1 + k) % n + 1) << k;
  };
  const uint64_t s = 1'000'000'000;
  t.event({alpha, wire::gateway_event_kind::up, {}}, 2 * s);
  expect_run(cancels(), 1, cancels_on_open_max);
  t.page_cancels(2 * s + s / 2);
  EXPECT_TRUE(cancels().empty()) << "a page a second at most";
  t.page_cancels(3 * s);
  expect_run(cancels(), cancels_on_open_max + 1, cancels_on_open_max);
  t.page_cancels(4 * s);
  expect_run(cancels(), 2 * cancels_on_open_max + 1, 100);
  t.page_cancels(5 * s);
  EXPECT_TRUE(cancels().empty()) << "each once a run";
  // Down mid-run: the next opening goes on from past its last page, around to where that
  // run began.
  t.event({alpha, wire::gateway_event_kind::down, {}}, 6 * s);
  t.event({alpha, wire::gateway_event_kind::up, {}}, 7 * s);
  expect_run(cancels(), 1, cancels_on_open_max);
  t.event({alpha, wire::gateway_event_kind::down, {}}, 7 * s + 1);
  t.page_cancels(9 * s);
  EXPECT_TRUE(cancels().empty()) << "no session up";
  t.event({alpha, wire::gateway_event_kind::up, {}}, 10 * s);
  expect_run(cancels(), cancels_on_open_max + 1, cancels_on_open_max);
  t.page_cancels(11 * s);
  expect_run(cancels(), 2 * cancels_on_open_max + 1, cancels_on_open_max);  // on from the lowest
  t.page_cancels(12 * s);
  expect_run(cancels(), cancels_on_open_max - 99, 100);
  t.page_cancels(13 * s);
  EXPECT_TRUE(cancels().empty()) << "the run began past 1,024 and came back to it";
}

// Slot 0's ETB desk, loaded into `t`.
void load_slot0_desk(desk_table& t) {
  desk d;
  d.account = desk_account(etb, 0);
  d.currency = etb;
  t.load_desk(std::move(d));
}

// Payout 42 (sample_payout's) on slot 0's desk, waiting on `gateway`'s answer to a
// cancel, with these attempts and gateways given up, and the attempts an operator's retry
// left behind.
payout_entry waiting_on_cancel(uint32_t gateway, std::vector<attempt> attempts, std::vector<uint32_t> given_up,
                               uint32_t routing_base = 0) {
  payout_entry p = sample_payout();
  p.desk = desk_account(etb, 0);
  p.st = state::waiting;
  p.cancel_wait = gateway;
  p.attempts = std::move(attempts);
  p.given_up = std::move(given_up);
  p.routing_base = routing_base;
  p.due = 5000;
  return p;
}

// That payout and its desk, loaded into `t`.
void load_waiting_on_cancel(desk_table& t, uint32_t gateway, std::vector<attempt> attempts,
                            std::vector<uint32_t> given_up, uint32_t routing_base = 0) {
  load_slot0_desk(t);
  std::string why;
  ASSERT_TRUE(t.load_payout(waiting_on_cancel(gateway, std::move(attempts), std::move(given_up), routing_base), &why))
      << why;
}

// A payout waiting on a gateway's answer to a cancel keeps waiting on it across a
// restart: the first other gateway back does not take it, the cancel goes again when
// that gateway's session opens, and its failed answer moves the payout on at once. Its
// row keeps the gateway it waits on, and only a waiting payout may.
TEST(payout_desk, a_cancel_wait_survives_a_restart_and_its_gateway_hears_it_again) {
  recording_table r;
  ASSERT_EQ(r.reg->size(), 2u);
  const uint32_t alpha = r.alpha, beta = r.beta;
  desk_table& t = r.t;
  auto& sent = r.sent;
  load_slot0_desk(t);
  payout_entry p = waiting_on_cancel(alpha, std::vector(3, attempt{alpha, 1000, 7001, false, false}), {alpha});
  payout_entry back;
  std::string why;
  ASSERT_TRUE(decode_payout(encode_payout(p), &back, &why)) << why;
  EXPECT_EQ(back.cancel_wait, alpha);
  auto in_flight = p;
  in_flight.st = state::in_flight;
  EXPECT_FALSE(decode_payout(encode_payout(in_flight), &back, &why));
  ASSERT_TRUE(t.load_payout(std::move(p), &why)) << why;
  t.event({0, wire::gateway_event_kind::reset, {}}, 10'000);
  t.event({beta, wire::gateway_event_kind::up, {}}, 10'001);
  t.flush();
  EXPECT_TRUE(sent.empty()) << "beta does not take it while alpha may answer";
  t.event({alpha, wire::gateway_event_kind::up, {}}, 10'002);
  t.flush();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].first, alpha);
  EXPECT_EQ(sent[0].second.kind, wire::payout_instruction_kind::cancel);
  EXPECT_EQ(sent[0].second.attempt, 3u);
  sent.clear();
  EXPECT_EQ(t.answer(test::etb_payout_answer(42, 3, 1500, wire::payout_outcome::failed, alpha), desk_account(etb, 0), 10'003),
            wire::result::ok);
  t.flush();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].first, beta);
  EXPECT_EQ(sent[0].second.kind, wire::payout_instruction_kind::pay);
  EXPECT_EQ(sent[0].second.attempt, 4u);
}


// The payout the table holds under `id`, or null.
const payout_entry* held_payout_of(desk_table& t, uint64_t id) {
  const payout_entry* held = nullptr;
  t.for_each_desk([&](const desk& dk) {
    if (auto it = dk.payouts.find(id); it != dk.payouts.end()) held = &it->second;
  });
  return held;
}

// A payout that left alpha in an outage (alpha may still pay its first attempt), then
// timed out at beta and waits on beta's answer to a cancel: beta's `failed` makes it a
// dead letter (gateway_silent, hold kept) rather than sending it to a third gateway while
// alpha may pay; alpha's own `failed` then sends it on to gamma. An operator's forced
// retry after alpha's attempt vouched for it: then beta's `failed` sends it on at once.
// Under the rules before version 38 (records of those builds replay so), it went on to
// gamma at once either way.
TEST(payout_desk, a_cancels_failed_sends_a_payout_on_only_if_no_other_gateway_may_pay) {
  for (const auto& [taken, vouched] : {std::pair{true, false}, std::pair{false, false}, std::pair{true, true}}) {
    SCOPED_TRACE(std::string(taken ? "this build's rules" : "rules before version 38") +
                 (vouched ? ", alpha's attempt before an operator's retry" : ""));
    recording_table r;
    ASSERT_EQ(r.reg->apply(gateway_op_of("gamma", 1, 3, 1, 7003), 1), wire::result::ok);
    const uint32_t gamma = r.reg->find("gamma")->number;
    desk_table& t = r.t;
    t.set_registry(r.reg);
    t.set_rules(taken ? rules_newest : rules_payout_stays_while_may_pay - 1);
    ASSERT_NO_FATAL_FAILURE(load_waiting_on_cancel(t, r.beta,
                                                   {attempt{r.alpha, 1000, 7001, false, false},
                                                    attempt{r.beta, 2000, 7002, false, false},
                                                    attempt{r.beta, 3000, 7002, false, false}},
                                                   {r.alpha, r.beta}, vouched ? 1 : 0));
    t.event({0, wire::gateway_event_kind::reset, {}}, 10'000);
    t.event({gamma, wire::gateway_event_kind::up, {}}, 10'001);
    t.event({r.beta, wire::gateway_event_kind::up, {}}, 10'002);
    t.flush();
    ASSERT_EQ(r.sent.size(), 1u);
    EXPECT_EQ(r.sent[0].first, r.beta);
    EXPECT_EQ(r.sent[0].second.kind, wire::payout_instruction_kind::cancel);
    r.sent.clear();
    EXPECT_EQ(t.answer(test::etb_payout_answer(42, 3, 1500, wire::payout_outcome::failed, r.beta),
                       desk_account(etb, 0), 10'003),
              wire::result::ok);
    t.flush();
    // What went out: a pay to gamma (the rules before), or only alpha's cancel (nobody
    // works the payout now: alpha hears it when a session of it opens).
    std::vector<std::pair<uint32_t, wire::payout_instruction_kind>> went;
    for (const auto& [g, in] : r.sent) went.emplace_back(g, in.kind);
    const payout_entry* held = held_payout_of(t, 42);
    ASSERT_NE(held, nullptr);
    if (!taken || vouched) {
      ASSERT_FALSE(went.empty());
      EXPECT_EQ(went[0], std::pair(gamma, wire::payout_instruction_kind::pay));
      EXPECT_EQ(held->st, state::in_flight);
      continue;
    }
    EXPECT_EQ(went, (std::vector{std::pair(r.alpha, wire::payout_instruction_kind::cancel)}))
        << "no third gateway while alpha may pay";
    EXPECT_EQ(held->st, state::dead);
    EXPECT_EQ(held->dead, dead_reason::unanswered);
    // Alpha says it did not pay either: nobody may pay it now, and it goes on to gamma.
    r.sent.clear();
    EXPECT_EQ(t.answer(test::etb_payout_answer(42, 1, 1500, wire::payout_outcome::failed, r.alpha),
                       desk_account(etb, 0), 10'004),
              wire::result::ok);
    t.flush();
    ASSERT_EQ(r.sent.size(), 1u);
    EXPECT_EQ(r.sent[0].first, gamma);
    EXPECT_EQ(r.sent[0].second.kind, wire::payout_instruction_kind::pay);
    EXPECT_EQ(r.sent[0].second.attempt, 4u);
  }
}

// A payout waiting on alpha's answer to a cancel when the wait passes: with alpha's
// session up (it can hear, said nothing) it becomes a dead letter (`unanswered`), hold
// kept, and beta never gets it; its `failed` then sends it on to beta. With no session of
// alpha up it waits for alpha (rules version 49), and is such a dead letter once
// route_wait_max passed; under the rules before, it went on to beta at once, as in an
// outage. Under the rules before version 38 beta got it either way.
TEST(payout_desk, a_gateway_silent_to_a_cancel_with_a_session_up_keeps_the_payout) {
  for (const uint16_t rules : {rules_newest, uint16_t(rules_payout_waits_for_payer - 1),
                               uint16_t(rules_payout_stays_while_may_pay - 1)})
    for (const bool alpha_up : {true, false}) {
      const bool taken = rules >= rules_payout_stays_while_may_pay;
      const bool waits = rules >= rules_payout_waits_for_payer;
      SCOPED_TRACE("rules " + std::to_string(rules) + (alpha_up ? ", alpha up" : ", alpha down"));
      recording_table r;
      desk_table& t = r.t;
      t.set_rules(rules);
      ASSERT_NO_FATAL_FAILURE(
          load_waiting_on_cancel(t, r.alpha, std::vector(3, attempt{r.alpha, 1000, 7001, false, false}), {r.alpha}));
      t.event({0, wire::gateway_event_kind::reset, {}}, 10'000);
      t.event({r.beta, wire::gateway_event_kind::up, {}}, 10'001);
      if (alpha_up) t.event({r.alpha, wire::gateway_event_kind::up, {}}, 10'002);
      t.flush();
      r.sent.clear();
      if (waits && !alpha_up) {
        t.run_due(2'000'000'000);  // past the cancel's wait: alpha, away, is waited for
        const payout_entry* waiting = held_payout_of(t, 42);
        ASSERT_NE(waiting, nullptr);
        EXPECT_EQ(waiting->st, state::waiting);
      }
      t.run_due(1'000'000'000'000);  // long past the cancel's wait (and route_wait_max)
      t.flush();
      const payout_entry* held = held_payout_of(t, 42);
      ASSERT_NE(held, nullptr);
      std::vector<std::pair<uint32_t, wire::payout_instruction_kind>> pays;
      for (const auto& [g, in] : r.sent)
        if (in.kind == wire::payout_instruction_kind::pay) pays.emplace_back(g, in.kind);
      if (!taken || (!alpha_up && !waits)) {
        EXPECT_EQ(pays, (std::vector{std::pair(r.beta, wire::payout_instruction_kind::pay)}));
        EXPECT_EQ(held->st, state::in_flight);
        continue;
      }
      EXPECT_TRUE(pays.empty()) << "beta does not pay it while alpha may have";
      EXPECT_EQ(held->st, state::dead);
      EXPECT_EQ(held->dead, dead_reason::unanswered);
      EXPECT_STREQ(dead_reason_name(held->dead), "gateway_silent");
      payout_entry back;
      std::string why;
      ASSERT_TRUE(decode_payout(encode_payout(*held), &back, &why)) << why;
      EXPECT_EQ(back.dead, dead_reason::unanswered);
      r.sent.clear();
      EXPECT_EQ(t.answer(test::etb_payout_answer(42, 3, 1500, wire::payout_outcome::failed, r.alpha),
                         desk_account(etb, 0), 1'000'000'000'001),
                wire::result::ok);
      t.flush();
      ASSERT_EQ(r.sent.size(), 1u);
      EXPECT_EQ(r.sent[0].first, r.beta);
      EXPECT_EQ(r.sent[0].second.kind, wire::payout_instruction_kind::pay);
      EXPECT_EQ(r.sent[0].second.attempt, 4u);
    }
}

// A payout in flight at alpha whose answer deadline passes with no session of alpha up
// (its sessions closed, or the engine restarted and alpha has not come back): alpha may
// have paid it, so beta does not get it (rules version 49). It waits for alpha: alpha
// back, it is sent to alpha again (the same payment: gateways key on the payout id);
// alpha's `failed` meanwhile sends it on to beta at once; alpha away past route_wait_max
// leaves it a dead letter (`gateway_silent`) that only a forced retry moves. Under the
// rules before, beta got it at the deadline.
TEST(payout_desk, a_payout_whose_gateway_is_away_at_its_deadline_waits_for_it) {
  enum class then { back, failed, away };
  for (const bool restart : {false, true})
    for (const then after : {then::back, then::failed, then::away})
      for (const bool waits : {true, false}) {
        SCOPED_TRACE(std::string(restart ? "a restart" : "alpha's session closes") +
                     (after == then::back ? ", alpha back" : after == then::failed ? ", alpha says failed" : ", alpha away") +
                     (waits ? ", this build's rules" : ", rules before version 49"));
        recording_table r;
        desk_table& t = r.t;
        t.set_rules(waits ? rules_newest : rules_payout_waits_for_payer - 1);
        t.event({r.alpha, wire::gateway_event_kind::up, {}}, 10);
        t.event({r.beta, wire::gateway_event_kind::up, {}}, 11);
        t.held(hold_of(5), 20);
        uint64_t deadline = 20 + 1'000'000'000;
        if (restart) {
          t.event({0, wire::gateway_event_kind::reset, {}}, 500'000'000);
          t.event({r.beta, wire::gateway_event_kind::up, {}}, 500'000'001);
          deadline = 500'000'000 + 1'000'000'000;
        } else {
          t.event({r.alpha, wire::gateway_event_kind::down, {}}, 500'000'000);
        }
        t.flush();
        r.sent.clear();
        t.run_due(deadline + 1);
        t.flush();
        std::vector<std::pair<uint32_t, uint32_t>> pays;  // (gateway, attempt)
        const auto pays_now = [&] {
          t.flush();
          pays.clear();
          for (const auto& [g, in] : r.sent)
            if (in.kind == wire::payout_instruction_kind::pay) pays.emplace_back(g, in.attempt);
        };
        pays_now();
        const payout_entry* p = held_payout_of(t, 5);
        ASSERT_NE(p, nullptr);
        if (!waits) {
          EXPECT_EQ(pays, (std::vector{std::pair(r.beta, 2u)})) << "on to beta at the deadline";
          continue;
        }
        EXPECT_TRUE(pays.empty()) << "beta does not pay it while alpha may have";
        EXPECT_EQ(p->st, state::waiting);
        t.run_due(deadline + 300'000'000'000);  // looked at again, still alpha's
        pays_now();
        EXPECT_TRUE(pays.empty());
        const uint64_t later = deadline + 300'000'000'001;
        if (after == then::back) {
          t.event({r.alpha, wire::gateway_event_kind::up, {}}, later);
          pays_now();
          EXPECT_EQ(pays, (std::vector{std::pair(r.alpha, 2u)})) << "sent to alpha again";
          EXPECT_EQ(p->st, state::in_flight);
        } else if (after == then::failed) {
          EXPECT_EQ(t.answer(test::etb_payout_answer(5, 1, 100, wire::payout_outcome::failed, r.alpha),
                             desk_account(etb, 0), later),
                    wire::result::ok);
          pays_now();
          EXPECT_EQ(pays, (std::vector{std::pair(r.beta, 2u)})) << "alpha did not pay: on to beta";
        } else {
          t.run_due(deadline + 1 + route_wait_max_ns);  // (its wait began at the deadline's look)
          pays_now();
          EXPECT_TRUE(pays.empty());
          EXPECT_EQ(p->st, state::dead);
          EXPECT_EQ(p->dead, dead_reason::unanswered);
          const uint64_t account = desk_account(etb, 0), end = deadline + route_wait_max_ns + 2;
          EXPECT_EQ(t.op({5, etb, wire::payout_op_kind::retry, 0, {}}, account, end), wire::result::payout_may_be_paid);
          EXPECT_EQ(t.op({5, etb, wire::payout_op_kind::retry, wire::payout_op_flags::force, {}}, account, end),
                    wire::result::ok);
          pays_now();
          EXPECT_EQ(pays, (std::vector{std::pair(r.beta, 2u)})) << "the operator checked with alpha";
        }
      }
}

// A payout whose retry waits out a backoff after a timeout at its gateway is tried there
// again, even if a gateway of higher priority came up meanwhile: the first may still pay
// it. Before (and in records before version 9), the retry went by priority, to the
// gateway that came up, while the first could still pay: two payments.
TEST(payout_desk, a_retry_after_its_backoff_stays_with_its_gateway) {
  for (const bool routes : {true, false}) {
    SCOPED_TRACE(routes ? "this build's rules" : "rules before version 9");
    recording_table r;
    ASSERT_EQ(r.reg->size(), 2u);
    desk_table& t = r.t;
    t.set_rules(routes ? rules_newest : rules_payout_routes - 1);
    t.event({r.beta, wire::gateway_event_kind::up, {}}, 10);  // alpha, the first choice, is down
    t.held(hold_of(5), 20);
    t.flush();
    ASSERT_EQ(r.sent.size(), 1u);
    EXPECT_EQ(r.sent[0].first, r.beta);
    t.run_due(20 + 1'000'000'001);  // beta's answer timeout: a backoff, then beta again
    t.flush();
    ASSERT_EQ(r.sent.size(), 1u) << "nothing sent during the backoff";
    t.event({r.alpha, wire::gateway_event_kind::up, {}}, 1'100'000'000);
    t.flush();
    t.run_due(600'000'000'000);  // the backoff is over
    t.flush();
    std::vector<uint32_t> pays;  // (the old rules also told beta to cancel)
    for (const auto& [g, in] : r.sent)
      if (in.kind == wire::payout_instruction_kind::pay) pays.push_back(g);
    ASSERT_EQ(pays.size(), 2u);
    EXPECT_EQ(pays[1], routes ? r.beta : r.alpha);
  }
  // Its gateway gone meanwhile (no session: it cannot hear a cancel): it waits for that
  // gateway, which may have paid, and is sent to it again when it is back (rules version
  // 49); before, the next one got it at once.
  for (const bool waits : {true, false}) {
    SCOPED_TRACE(waits ? "its gateway away, this build's rules" : "its gateway away, rules before version 49");
    recording_table r;
    desk_table& t = r.t;
    t.set_rules(waits ? rules_newest : rules_payout_waits_for_payer - 1);
    t.event({r.beta, wire::gateway_event_kind::up, {}}, 10);
    t.held(hold_of(5), 20);
    t.run_due(20 + 1'000'000'001);
    t.event({r.alpha, wire::gateway_event_kind::up, {}}, 1'100'000'000);
    t.event({r.beta, wire::gateway_event_kind::down, {}}, 1'200'000'000);
    t.flush();
    r.sent.clear();
    t.run_due(600'000'000'000);
    t.flush();
    std::vector<uint32_t> pays;  // (and beta is told to cancel, for when it comes back)
    const auto pays_now = [&] {
      t.flush();
      pays.clear();
      for (const auto& [g, in] : r.sent)
        if (in.kind == wire::payout_instruction_kind::pay) pays.push_back(g);
    };
    pays_now();
    if (!waits) {
      EXPECT_EQ(pays, std::vector<uint32_t>{r.alpha});
      continue;
    }
    EXPECT_TRUE(pays.empty()) << "alpha does not pay it while beta may have";
    t.event({r.beta, wire::gateway_event_kind::up, {}}, 601'000'000'000);
    pays_now();
    EXPECT_EQ(pays, std::vector<uint32_t>{r.beta});
  }
}

// Payout 5 sent to beta (up), its answer timeout passed (a backoff), then beta moved by
// an operator to rail 2.
void backing_off_at_beta_moved_off_its_rail(recording_table& r) {
  r.t.event({r.beta, wire::gateway_event_kind::up, {}}, 10);
  r.t.held(hold_of(5), 20);
  r.t.run_due(20 + 1'000'000'001);  // a timeout at beta: a backoff
  const auto move = gateway_op_of("beta", 2, 2, 1, 7002, wire::gateway_op_kind::update);  // to rail 2
  ASSERT_EQ(r.reg->apply(move, 1'050'000'000), wire::result::ok);
}

// A gateway an operator moved to another rail during the backoff is left as a timeout
// leaves one (asked to cancel: it may have paid), not sent the payout again (before,
// the retry took it whatever its rail, recording an attempt with no settlement account).
// Silent to the cancel with its session up, it leaves the payout a dead letter (rules
// version 38); its `failed` sends it on to alpha.
TEST(payout_desk, a_retry_after_its_backoff_leaves_a_gateway_moved_off_its_rail) {
  recording_table r;
  desk_table& t = r.t;
  ASSERT_NO_FATAL_FAILURE(backing_off_at_beta_moved_off_its_rail(r));
  t.event({r.alpha, wire::gateway_event_kind::up, {}}, 1'100'000'000);
  t.flush();
  r.sent.clear();
  t.run_due(600'000'000'000);  // the backoff is over
  t.flush();
  ASSERT_EQ(r.sent.size(), 1u);
  EXPECT_EQ(r.sent[0].first, r.beta);
  EXPECT_EQ(r.sent[0].second.kind, wire::payout_instruction_kind::cancel);
  r.sent.clear();
  t.run_due(602'000'000'000);  // no answer to the cancel, beta's session up
  t.flush();
  auto pays = [&] {
    std::vector<uint32_t> to;
    for (const auto& [g, in] : r.sent)
      if (in.kind == wire::payout_instruction_kind::pay) to.push_back(g);
    return to;
  };
  EXPECT_TRUE(pays().empty());
  EXPECT_EQ(t.answer(test::etb_payout_answer(5, 1, 100, wire::payout_outcome::failed, r.beta), desk_account(etb, 0),
                     602'000'000'001),
            wire::result::ok);
  t.flush();
  EXPECT_EQ(pays(), std::vector<uint32_t>{r.alpha});
}

// A payout waiting on a cancel's answer from a gateway disabled meanwhile becomes a dead
// letter when the wait ends; the row a checkpoint then writes reads back (before, it kept
// the gateway it waited on, which only a waiting payout may: the next start refused the
// snapshot), and a row so written by an older build reads as dead, waiting on nothing.
TEST(payout_desk, a_cancel_wait_ended_by_a_disable_writes_a_row_that_reads_back) {
  recording_table r;
  desk_table& t = r.t;
  ASSERT_NO_FATAL_FAILURE(backing_off_at_beta_moved_off_its_rail(r));
  t.run_due(600'000'000'000);  // the backoff is over: beta asked to cancel
  t.flush();
  ASSERT_EQ(r.sent.size(), 2u);
  EXPECT_EQ(r.sent[1].second.kind, wire::payout_instruction_kind::cancel);
  wire::gateway_op off{};
  off.kind = wire::gateway_op_kind::disable;
  (void)gateways::set_op_id(off, "beta");
  ASSERT_EQ(r.reg->apply(off, 601'000'000'000), wire::result::ok);
  t.run_due(602'000'000'000);  // the cancel's wait is over; beta can no longer say
  t.flush();
  desk_table::dirty_rows rows;
  t.take_dirty(&rows);
  const std::vector<uint8_t>* row = nullptr;
  for (const auto& [id, bytes] : rows.payouts)
    if (id == 5) row = &bytes;
  ASSERT_TRUE(row && !row->empty());
  payout_entry back;
  std::string why;
  ASSERT_TRUE(decode_payout(*row, &back, &why)) << why;
  EXPECT_EQ(back.st, state::dead);
  EXPECT_EQ(back.dead, dead_reason::withdrawn);
  EXPECT_EQ(back.cancel_wait, 0u);
  back.cancel_wait = r.beta;  // as an older build wrote it
  payout_entry older;
  ASSERT_TRUE(decode_payout(encode_payout(back), &older, &why)) << why;
  EXPECT_EQ(older.st, state::dead);
  EXPECT_EQ(older.cancel_wait, 0u);
  // Enabled again, beta's next session is asked to cancel it (it may still pay it).
  off.kind = wire::gateway_op_kind::enable;
  ASSERT_EQ(r.reg->apply(off, 603'000'000'000), wire::result::ok);
  t.event({r.beta, wire::gateway_event_kind::down, {}}, 603'000'000'001);
  r.sent.clear();
  t.event({r.beta, wire::gateway_event_kind::up, {}}, 603'000'000'002);
  t.flush();
  ASSERT_EQ(r.sent.size(), 1u);
  EXPECT_EQ(r.sent[0].first, r.beta);
  EXPECT_EQ(r.sent[0].second.kind, wire::payout_instruction_kind::cancel);
  EXPECT_EQ(r.sent[0].second.payout_id, 5u);
}

// A payout waiting for any gateway keeps its wait across restarts (rules version 34): the
// downtime does not count (resume moves the wait's start by it), the engine's up time
// does, however often it restarts, and after a restart it is looked at again within a
// second. Before, each restart began its wait again: an engine restarting every three
// minutes never made it a dead letter.
TEST(payout_desk, a_restart_keeps_a_payout_s_wait_for_a_gateway) {
  constexpr uint64_t minute = 60'000'000'000ull, second = 1'000'000'000ull;
  struct run {
    recording_table r;
    explicit run(bool rules_34) {
      r.t.set_rules(rules_34 ? rules_newest : rules_reset_keeps_route_wait - 1);
      r.t.held(hold_of(5), 20);  // no gateway up: waiting since 20
    }
    void restart(uint64_t last_before, uint64_t at) {
      r.t.resume(last_before, at);
      r.t.event({0, wire::gateway_event_kind::reset, {}}, at);
    }
    payout_entry row() {
      desk_table::dirty_rows rows;
      r.t.take_dirty(&rows);
      payout_entry back;
      bool found = false;
      for (const auto& [id, bytes] : rows.payouts) {
        std::string why;
        if (id == 5) {
          found = true;
          EXPECT_TRUE(decode_payout(bytes, &back, &why)) << why;
        }
      }
      EXPECT_TRUE(found) << "no row written for payout 5";
      return back;
    }
  };
  // Restarts a second after the last logged time (a crash loop), every three minutes: a
  // dead letter after ten minutes of up time (and the three seconds down).
  run loop(true);
  for (uint64_t at = 3; at <= 9; at += 3) {
    loop.restart(at * minute - second, at * minute);
    loop.r.t.run_due(at * minute + 2 * second);  // looked at again within a second
    EXPECT_EQ(loop.row().st, state::waiting) << at;
  }
  loop.r.t.run_due(20 + 10 * minute + 3 * second);
  auto p = loop.row();
  EXPECT_EQ(p.st, state::dead);
  EXPECT_EQ(p.dead, dead_reason::no_route);
  // Down for fifteen minutes after two of waiting: eight more minutes of up time.
  run down(true);
  down.restart(2 * minute, 17 * minute);
  down.r.t.run_due(17 * minute + 2 * second);
  EXPECT_EQ(down.row().st, state::waiting) << "the downtime counted";
  down.r.t.run_due(24 * minute);
  EXPECT_EQ(down.row().st, state::waiting);
  down.r.t.run_due(20 + 25 * minute);
  EXPECT_EQ(down.row().st, state::dead);
  // Older records' restarts began the wait again.
  run older(false);
  for (uint64_t at = 3; at <= 9; at += 3) older.restart(at * minute - second, at * minute);
  older.r.t.run_due(20 + 10 * minute);
  EXPECT_EQ(older.row().st, state::waiting);
}

// Each timer's decision on a payout is an event (payout_timer: what came due, what
// follows, the gateway, the attempts), after the dead letter's own; a look for a route
// that found none makes none.
TEST(payout_desk, timer_decisions_are_events) {
  recording_table r;
  desk_table& t = r.t;
  std::vector<wire::event> events;
  t.set_events([&](wire::event&& e) { events.push_back(e); });
  using enum timer_due;
  using enum timer_then;
  struct want {
    wire::event_type type;
    timer_due why;
    timer_then then;
    uint32_t gateway;
    uint64_t attempts;
  };
  auto expect = [&](std::vector<want> list) {
    ASSERT_EQ(events.size(), list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      SCOPED_TRACE(i);
      EXPECT_EQ(events[i].type, list[i].type);
      EXPECT_EQ(events[i].ref.lo, 5u);
      EXPECT_EQ(events[i].ref.hi, list[i].attempts);
      EXPECT_EQ(events[i].gateway, list[i].gateway);
      EXPECT_EQ(events[i].account_a, 9u);
      EXPECT_EQ(events[i].account_b, desk_account(etb, 0));
      EXPECT_EQ(events[i].amount, 100u);
      if (list[i].type != wire::event_type::payout_timer) continue;
      EXPECT_EQ(events[i].code, uint16_t(list[i].why));
      EXPECT_EQ(events[i].flags, uint16_t(list[i].then));
    }
    events.clear();
  };
  t.event({r.beta, wire::gateway_event_kind::up, {}}, 10);
  t.held(hold_of(5), 20);
  t.run_due(20 + 1'000'000'001);  // beta's answer timeout: a backoff
  ASSERT_NO_FATAL_FAILURE(expect({{wire::event_type::payout_timer, answer_timeout, backoff, r.beta, 1}}));
  const auto move = gateway_op_of("beta", 2, 2, 1, 7002, wire::gateway_op_kind::update);  // to rail 2
  ASSERT_EQ(r.reg->apply(move, 1'050'000'000), wire::result::ok);
  t.run_due(600'000'000'000);  // the backoff's end: beta, off the rail, is asked to cancel
  ASSERT_NO_FATAL_FAILURE(expect({{wire::event_type::payout_timer, backoff_end, cancel_asked, r.beta, 1}}));
  // Beta's session closes: no answer to the cancel with none of its sessions up (silent
  // with one up, it would leave a dead letter), and no gateway: a look each second.
  t.event({r.beta, wire::gateway_event_kind::down, {}}, 601'000'000'000);
  EXPECT_TRUE(events.empty());
  t.run_due(602'000'000'000);
  ASSERT_NO_FATAL_FAILURE(expect({{wire::event_type::payout_timer, cancel_wait, route_wait, r.beta, 1}}));
  for (uint64_t s = 1; s <= 5; ++s) t.run_due(602'000'000'000 + s * route_poll_ns);
  EXPECT_TRUE(events.empty()) << "looks that found no route";
  // Beta (which may have paid it: it is waited for) says it did not.
  EXPECT_EQ(t.answer(test::etb_payout_answer(5, 1, 100, wire::payout_outcome::failed, r.beta), desk_account(etb, 0),
                     607'500'000'000),
            wire::result::ok);
  EXPECT_TRUE(events.empty());
  t.event({r.alpha, wire::gateway_event_kind::up, {}}, 608'000'000'000);  // alpha takes it at once
  EXPECT_TRUE(events.empty()) << "a session's opening is its own record's";
  t.event({r.alpha, wire::gateway_event_kind::down, {}}, 608'000'000'001);
  t.run_due(609'000'000'002);  // alpha's answer timeout, alpha away: it is waited for
  ASSERT_NO_FATAL_FAILURE(expect({{wire::event_type::payout_timer, answer_timeout, route_wait, r.alpha, 2}}));
  t.run_due(609'000'000'002 + route_wait_max_ns);  // not back in time: a dead letter
  ASSERT_NO_FATAL_FAILURE(expect({{wire::event_type::payout_dead, route_poll, dead, r.alpha, 2},
                                  {wire::event_type::payout_timer, route_poll, dead, r.alpha, 2}}));
}

// Only gateways with the payments role take payouts: a broker of the rail and currency,
// first by priority, is passed over (it could not answer one). Records before version 9
// routed to it.
TEST(payout_desk, a_broker_only_gateway_gets_no_payouts) {
  for (const bool routes : {true, false}) {
    SCOPED_TRACE(routes ? "this build's rules" : "rules before version 9");
    recording_table r;
    ASSERT_EQ(r.reg->apply(gateway_op_of("broker", 1, 0, 2, 7003), 2), wire::result::ok);  // broker only, first
    const uint32_t broker = r.reg->find("broker")->number;
    EXPECT_EQ(r.reg->serves_rail(1, etb), true);
    desk_table& t = r.t;
    t.set_rules(routes ? rules_newest : rules_payout_routes - 1);
    t.event({broker, wire::gateway_event_kind::up, {}}, 10);
    t.event({r.alpha, wire::gateway_event_kind::up, {}}, 11);
    t.held(hold_of(5), 20);
    t.flush();
    ASSERT_EQ(r.sent.size(), 1u);
    EXPECT_EQ(r.sent[0].first, routes ? r.alpha : broker);
  }
  // A rail only a broker serves is not served: payouts there are refused at the start.
  auto reg = std::make_shared<gateways::registry>();
  ASSERT_EQ(reg->apply(gateway_op_of("broker", 2, 0, 2, 7003), 1), wire::result::ok);
  EXPECT_FALSE(reg->serves_rail(2, etb));
  EXPECT_TRUE(reg->serves_rail(2, etb, true)) << "as before version 9";
}

// Operators' sums of amounts (a breaker's settled, the reconciliation's deposits and
// settlements, and a snapshot's parts added up) stop at 2^64 - 1: before, two payouts of
// 2^63 settled at one gateway read as 0 settled.
TEST(payout_desk, amount_sums_stop_at_the_top_instead_of_wrapping) {
  constexpr uint64_t half = uint64_t(1) << 63;
  recording_table r;
  desk_table& t = r.t;
  std::vector<std::vector<wire::transfer>> chains;
  t.set_emit([&](std::vector<wire::transfer>&& group) { chains.push_back(std::move(group)); });
  t.event({r.alpha, wire::gateway_event_kind::up, {}}, 10);
  const uint64_t ts = 2 * ns_per_day + 100;  // every figure on one day
  for (const uint64_t id : {5, 6}) {
    wire::transfer hold = hold_of(id);
    hold.amount = half;
    t.held(hold, ts);
  }
  t.flush();
  ASSERT_EQ(r.sent.size(), 2u);
  for (const uint64_t id : {5, 6}) {
    ASSERT_EQ(t.answer(test::etb_payout_answer(id, 1, half, wire::payout_outcome::settled, r.alpha), desk_account(etb, 0), ts + 1),
              wire::result::ok);
  }
  t.flush();
  std::vector<wire::transfer> posts;
  for (const auto& group : chains)
    for (const auto& x : group)
      if (x.flags & wire::transfer_flags::post_pending) posts.push_back(x);
  ASSERT_EQ(posts.size(), 2u);
  for (const auto& x : posts) t.chain_done(x, wire::result::ok, ts + 2);
  uint64_t breaker_settled = 0;
  t.for_each_desk([&](const desk& d) {
    if (const auto it = d.breakers.find(r.alpha); it != d.breakers.end()) breaker_settled = it->second.settled_amount;
  });
  EXPECT_EQ(breaker_settled, UINT64_MAX);
  for (const uint64_t amount : {half, half}) {
    wire::transfer dep{};
    dep.amount = amount;
    dep.currency = etb;
    t.deposited(r.alpha, dep, ts);
  }
  auto rows = t.recon_rows_from(0);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].c.settled, 2u);
  EXPECT_EQ(rows[0].c.settled_amount, UINT64_MAX);
  EXPECT_EQ(rows[0].c.deposits_amount, UINT64_MAX);
  t.load_recon({rows[0].k, {1, 1}});  // a snapshot's part of the same row
  rows = t.recon_rows_from(0);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].c.deposits, 3u);
  EXPECT_EQ(rows[0].c.deposits_amount, UINT64_MAX);
}

// Reconciliation rows: a cut copies the days from the one it asks for and drops those
// before the one it names; one gateway's rows are found by day.
TEST(payout_desk, reconciliation_rows_are_copied_and_dropped_by_day) {
  recording_table r;
  desk_table& t = r.t;
  const auto deposit_on = [&](uint32_t gateway, uint64_t day, uint64_t amount) {
    wire::transfer dep{};
    dep.amount = amount;
    dep.currency = etb;
    t.deposited(gateway, dep, day * ns_per_day + 5);
  };
  const auto days = [](const std::vector<recon_row>& rows) {
    std::vector<uint32_t> out;
    for (const auto& row : rows) out.push_back(row.k.day);
    return out;
  };
  constexpr uint32_t first = 20'000;
  deposit_on(r.alpha, first, 10);
  deposit_on(r.beta, first, 20);
  deposit_on(r.alpha, first + 1, 30);
  deposit_on(r.alpha, first + 500, 40);
  EXPECT_EQ(days(t.recon_rows_from(0)), (std::vector<uint32_t>{first, first, first + 1, first + 500}));
  EXPECT_EQ(days(t.recon_rows_from(first + 1)), (std::vector<uint32_t>{first + 1, first + 500}));
  EXPECT_EQ(t.recon_rows_of(r.beta, 0).size(), 1u);
  ASSERT_EQ(t.recon_rows_of(r.alpha, first + 1 + 1).size(), 1u);
  EXPECT_EQ(t.recon_rows_of(r.alpha, first + 1 + 1)[0].c.deposits_amount, 30u);
  EXPECT_TRUE(t.recon_rows_of(r.alpha, first + 2 + 1).empty());
  // Counting a day far on drops nothing by itself: only a cut does.
  EXPECT_EQ(t.recon_rows_kept(), 4u);
  t.recon_drop_before(first + 1);
  EXPECT_EQ(days(t.recon_rows_from(0)), (std::vector<uint32_t>{first + 1, first + 500}));
  // A snapshot's total of a kept row adds to the part counted here.
  t.load_recon({{r.alpha, first + 1, etb}, {1, 5}});
  EXPECT_EQ(t.recon_rows_of(r.alpha, first + 1 + 1).at(0).c.deposits_amount, 35u);
  t.recon_drop_before(first + 501);
  EXPECT_EQ(t.recon_rows_kept(), 0u);
}

// A restart (reset) while a payout waits out its backoff after a timeout at alpha, which
// may have paid: it stays alpha's. Beta opening a session first does not take it (before
// version 10 it did, by priority); alpha gets an answer timeout from the start to come
// back and is sent it again; if alpha stays away, the payout waits for it (version 49;
// a_payout_whose_gateway_is_away_at_its_deadline_waits_for_it).
TEST(payout_desk, a_restart_leaves_a_payout_in_its_backoff_with_its_gateway) {
  for (const bool keeps : {true, false}) {
    for (const bool alpha_back : {true, false}) {
      SCOPED_TRACE(std::string(keeps ? "this build's rules" : "rules before version 10") +
                   (alpha_back ? ", alpha back" : ", alpha away"));
      recording_table r;
      desk_table& t = r.t;
      t.set_rules(keeps ? rules_newest : rules_reset_keeps_backoff - 1);
      ASSERT_NO_FATAL_FAILURE(backing_off_at_alpha(r));
      const uint64_t start = 1'100'000'000;
      t.event({0, wire::gateway_event_kind::reset, {}}, start);
      t.event({r.beta, wire::gateway_event_kind::up, {}}, start + 1);
      t.flush();
      std::vector<uint32_t> pays;
      const auto pays_now = [&] {
        pays.clear();
        for (const auto& [g, in] : r.sent)
          if (in.kind == wire::payout_instruction_kind::pay) pays.push_back(g);
      };
      pays_now();
      if (!keeps) {
        EXPECT_EQ(pays, (std::vector<uint32_t>{r.alpha, r.beta})) << "the old rule: by priority, at once";
        continue;
      }
      EXPECT_EQ(pays, std::vector<uint32_t>{r.alpha}) << "beta coming up takes nothing";
      if (alpha_back) t.event({r.alpha, wire::gateway_event_kind::up, {}}, start + 2);
      t.run_due(start + 1'000'000'000 - 1);  // alpha's window from the start, not yet over
      t.flush();
      pays_now();
      EXPECT_EQ(pays.size(), 1u);
      t.run_due(600'000'000'000);
      t.flush();
      pays_now();
      // Alpha away: still alpha's, which may have paid (rules version 49; before, beta's).
      EXPECT_EQ(pays, alpha_back ? (std::vector<uint32_t>{r.alpha, r.alpha}) : std::vector<uint32_t>{r.alpha});
    }
  }
}

// A gateway whose attempt timed out answers `failed` for it while the payout waits out
// its backoff to try that gateway again: it did not pay, so the payout is released then
// and not sent to it again. Before (and in records before version 13) the answer was
// payout_answer_late and the retry went to the gateway that had said no.
TEST(payout_desk, a_failed_answer_during_the_backoff_releases_the_payout) {
  for (const bool taken : {true, false}) {
    SCOPED_TRACE(taken ? "this build's rules" : "rules before version 13");
    recording_table r;
    desk_table& t = r.t;
    t.set_rules(taken ? rules_newest : rules_failed_in_backoff - 1);
    ASSERT_NO_FATAL_FAILURE(backing_off_at_alpha(r));
    desk_table::dirty_rows before;
    t.take_dirty(&before);
    EXPECT_EQ(t.answer(test::etb_payout_answer(5, 1, 100, wire::payout_outcome::failed, r.alpha), desk_account(etb, 0), 1'100'000'000),
              taken ? wire::result::ok : wire::result::payout_answer_late);
    if (taken) {
      // The desk's row carries the failure its breaker counted (not sampled: the timeout
      // was). (Here the release writes the desk's row anyway; where a dead letter follows,
      // nothing else did, and the snapshot kept the old counts.)
      desk_table::dirty_rows rows;
      t.take_dirty(&rows);
      ASSERT_EQ(rows.desks.size(), 1u);
      desk back;
      std::string why;
      ASSERT_TRUE(decode_desk(rows.desks[0].second, &back, &why)) << why;
      EXPECT_EQ(back.breakers[r.alpha].failed, 1u);
    }
    const payout_entry* p = nullptr;
    t.for_each_desk([&](const desk& d) {
      if (auto it = d.payouts.find(5); it != d.payouts.end()) p = &it->second;
    });
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->st, taken ? state::failing : state::waiting);
    t.run_due(600'000'000'000);  // when the backoff would have ended
    t.flush();
    EXPECT_EQ(r.sent.size(), taken ? 1u : 2u) << "sent again to the gateway that said it did not pay";
  }
}

// A gateway in a crash loop: its twenty payouts wait for it (their deadlines passed with
// it away, its breaker opened), and at each of its openings it is asked to cancel them and
// goes before it answers. The wait that began when it went away goes on through those
// asks, so route_wait_max still ends it: dead letters for an operator, beta never paying.
// Before, each ask and the wait after it began the wait anew, without end.
TEST(payout_desk, a_gateway_in_a_crash_loop_still_leaves_its_payouts_dead_letters) {
  recording_table r;
  desk_table& t = r.t;
  constexpr uint64_t s = 1'000'000'000;
  t.event({r.alpha, wire::gateway_event_kind::up, {}}, 10);
  t.event({r.beta, wire::gateway_event_kind::up, {}}, 11);
  for (uint64_t id = 1; id <= 20; ++id) t.held(hold_of(id), 20);
  t.event({r.alpha, wire::gateway_event_kind::down, {}}, 30);
  t.run_due(20 + s + 1);  // every deadline passes with alpha away: they wait for it
  for (uint64_t k = 0; k < 12; ++k) {  // a minute apart, each opening gone within a second
    const uint64_t at = 2 * s + k * 60 * s;
    t.event({r.alpha, wire::gateway_event_kind::up, {}}, at);
    t.event({r.alpha, wire::gateway_event_kind::down, {}}, at + s / 2);
    t.run_due(at + 3 * s);  // the cancels' waits end with alpha away
    t.run_due(at + 59 * s);
  }
  t.flush();
  for (const auto& [g, in] : r.sent) EXPECT_NE(g, r.beta) << "payout " << in.payout_id;
  // (Alpha's breaker, half open at an opening, takes one of them as its probe: sent again,
  // a new attempt, which attempts_max bounds. The others only waited.)
  size_t waited_only = 0;
  for (uint64_t id = 1; id <= 20; ++id) {
    const payout_entry* p = held_payout_of(t, id);
    ASSERT_NE(p, nullptr);
    if (p->attempts.size() != 1) continue;
    ++waited_only;
    EXPECT_EQ(p->st, state::dead) << "payout " << id << ", twelve minutes after alpha went away";
    EXPECT_EQ(p->dead, dead_reason::unanswered) << "payout " << id;
  }
  EXPECT_GE(waited_only, 10u);
}

// Twenty payouts in flight at alpha when its session closes: their deadlines pass with no
// gateway up (each counts a timeout, and alpha's breaker opens) and they wait for a
// gateway. Alpha comes back first, its breaker still open, then beta. Alpha may have paid
// any of them: it is asked to cancel each when it comes back, beta gets only one alpha
// says it did not pay, one alpha paid settles, and one alpha stays silent about (its
// session up) is a dead letter. Under the rules before version 48 beta got every one,
// alpha's cancel going out beside it: both could pay.
TEST(payout_desk, a_gateway_back_from_an_outage_is_asked_before_another_gets_its_payouts) {
  for (const bool taken : {true, false}) {
    SCOPED_TRACE(taken ? "this build's rules" : "rules before version 48");
    recording_table r;
    desk_table& t = r.t;
    t.set_rules(taken ? rules_newest : rules_payout_asks_before_routing - 1);
    constexpr uint64_t s = 1'000'000'000;
    const auto went = [&] {
      std::map<std::pair<uint32_t, wire::payout_instruction_kind>, size_t> n;
      for (const auto& [g, in] : r.sent) ++n[{g, in.kind}];
      r.sent.clear();
      return n;
    };
    using kind = wire::payout_instruction_kind;
    using counts = std::map<std::pair<uint32_t, kind>, size_t>;
    t.event({r.alpha, wire::gateway_event_kind::up, {}}, 10);
    for (uint64_t id = 1; id <= 20; ++id) t.held(hold_of(id), 20);
    t.flush();
    ASSERT_EQ(went(), (counts{{{r.alpha, kind::pay}, 20}}));
    t.event({r.alpha, wire::gateway_event_kind::down, {}}, 30);
    t.run_due(20 + s + 1);  // every deadline passes with no gateway up
    t.flush();
    EXPECT_TRUE(went().empty());
    bool open = false;
    t.for_each_desk([&](const desk& d) {
      if (auto it = d.breakers.find(r.alpha); it != d.breakers.end()) open = it->second.ph == breaker::phase::open;
    });
    ASSERT_TRUE(open) << "twenty timeouts open alpha's breaker";
    t.event({r.alpha, wire::gateway_event_kind::up, {}}, 2 * s);
    t.flush();
    EXPECT_EQ(went(), (taken ? counts{{{r.alpha, kind::cancel}, 20}} : counts{}));
    t.event({r.beta, wire::gateway_event_kind::up, {}}, 2 * s + 1);
    t.flush();
    if (!taken) {
      EXPECT_EQ(went(), (counts{{{r.alpha, kind::cancel}, 20}, {{r.beta, kind::pay}, 20}}));
      continue;
    }
    EXPECT_TRUE(went().empty()) << "beta gets none while alpha may pay them";
    const uint64_t account = desk_account(etb, 0);
    EXPECT_EQ(t.answer(test::etb_payout_answer(1, 1, 100, wire::payout_outcome::failed, r.alpha), account, 2 * s + 2),
              wire::result::ok);
    EXPECT_EQ(t.answer(test::etb_payout_answer(2, 1, 100, wire::payout_outcome::settled, r.alpha), account, 2 * s + 3),
              wire::result::ok);
    t.flush();
    ASSERT_EQ(r.sent.size(), 1u);
    EXPECT_EQ(r.sent[0].first, r.beta);
    EXPECT_EQ(r.sent[0].second.payout_id, 1u);
    EXPECT_EQ(r.sent[0].second.kind, kind::pay);
    EXPECT_EQ(r.sent[0].second.attempt, 2u);
    r.sent.clear();
    ASSERT_NE(held_payout_of(t, 2), nullptr);
    EXPECT_EQ(held_payout_of(t, 2)->st, state::settling);
    t.run_due(3 * s + 10);  // alpha's answer timeout on the rest: silent with a session up
    t.flush();
    for (const auto& [g, in] : r.sent) EXPECT_NE(in.kind, kind::pay) << "payout " << in.payout_id;
    for (uint64_t id = 3; id <= 20; ++id) {
      const payout_entry* p = held_payout_of(t, id);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(p->st, state::dead) << "payout " << id;
      EXPECT_EQ(p->dead, dead_reason::unanswered) << "payout " << id;
    }
  }
}

// A payout whose void the ledger refused stays failing with its hold (the wallet's
// money held): an operator's retry sends the void again under new ids (rules version 43),
// and once carried the payout resolves. Before, the retry was payout_not_dead and nothing
// could send the void again. A start does not send a refused void again (only one in
// flight): that is the operator's retry.
TEST(payout_desk, a_refused_void_is_sent_again_by_an_operators_retry) {
  for (const bool taken : {true, false}) {
    SCOPED_TRACE(taken ? "this build's rules" : "rules before version 43");
    recording_table r;
    desk_table& t = r.t;
    t.set_rules(taken ? rules_newest : rules_refused_void_retry - 1);
    std::vector<std::vector<wire::transfer>> chains;
    t.set_emit([&](std::vector<wire::transfer>&& c) { chains.push_back(std::move(c)); });
    t.event({r.alpha, wire::gateway_event_kind::up, {}}, 10);
    t.held(hold_of(5), 20);
    t.flush();
    ASSERT_EQ(r.sent.size(), 1u);
    ASSERT_EQ(t.answer(test::etb_payout_answer(5, 1, 100, wire::payout_outcome::failed, r.alpha), desk_account(etb, 0), 30),
              wire::result::ok);
    t.flush();  // (chains go out at the batch's end)
    ASSERT_EQ(chains.size(), 1u);
    const auto first_void = chains[0].at(0);
    EXPECT_EQ(first_void.pending_id, hold_id(5));
    EXPECT_EQ(first_void.code, code_void);
    ASSERT_EQ(t.chains_owed().size(), 1u) << "a start would send the void in flight again";
    t.chain_done(first_void, wire::result::exceeds_credits, 40);  // (say) the ledger refused it
    EXPECT_TRUE(t.chains_owed().empty()) << "refused: an operator's to retry, not every start's";
    auto payout = [&]() -> const payout_entry* {
      const payout_entry* p = nullptr;
      t.for_each_desk([&](const desk& d) {
        if (auto it = d.payouts.find(5); it != d.payouts.end()) p = &it->second;
      });
      return p;
    };
    ASSERT_NE(payout(), nullptr);
    EXPECT_EQ(payout()->st, state::failing);
    EXPECT_EQ(payout()->refusal, wire::result::exceeds_credits);
    const wire::payout_op retry{5, etb, wire::payout_op_kind::retry, 0, {}};
    const wire::payout_op cancel{5, etb, wire::payout_op_kind::cancel, 0, {}};
    EXPECT_EQ(t.op(cancel, desk_account(etb, 0), 50), wire::result::payout_not_dead) << "its void is a cancel already";
    if (!taken) {
      EXPECT_EQ(t.op(retry, desk_account(etb, 0), 50), wire::result::payout_not_dead);
      t.flush();
      EXPECT_EQ(chains.size(), 1u);
      continue;
    }
    ASSERT_EQ(t.op(retry, desk_account(etb, 0), 50), wire::result::ok);
    t.flush();
    ASSERT_EQ(chains.size(), 2u);
    const auto again = chains[1].at(0);
    EXPECT_EQ(again.pending_id, hold_id(5));
    EXPECT_EQ(again.code, code_void);
    EXPECT_NE(again.id, first_void.id) << "new ids";
    EXPECT_EQ(payout()->refusal, wire::result::ok);
    ASSERT_EQ(t.chains_owed().size(), 1u);
    EXPECT_EQ(t.chains_owed()[0].at(0).id, again.id) << "the retry's void is owed until carried";
    t.chain_done(first_void, wire::result::ok, 55);  // a late word of the old chain: nothing
    ASSERT_NE(payout(), nullptr);
    t.chain_done(again, wire::result::ok, 60);
    EXPECT_EQ(payout(), nullptr) << "voided: resolved";
    EXPECT_EQ(r.sent.size(), 1u) << "no gateway was asked to pay again";
  }
}

// A desk's figures by state, last attempt's gateway and day made, and its id sets (what
// the console's counts and pages read instead of every payout), follow each payout: here
// through a batch that moves payouts from alpha to beta in one state (records before
// rules version 6: a session closing sent its payouts in flight on at once), a dead
// letter and a settlement.
TEST(payout_desk, a_desks_counts_and_id_sets_follow_its_payouts) {
  recording_table r;
  const uint64_t account = desk_account(etb, 0);
  using key = desk::count_key;
  const auto in_flight = uint8_t(state::in_flight), dead = uint8_t(state::dead), settling = uint8_t(state::settling);
  struct seen {
    std::map<key, uint64_t> counts;
    std::vector<uint64_t> ids, problems;
  };
  const auto look = [&] {
    seen s;
    r.t.for_each_desk([&](const desk& d) {
      for (const auto& [k, f] : d.counts) s.counts[k] = f.n;
      d.held_ids.for_each([&](uint64_t id) { s.ids.push_back(id); });
      d.problem_ids.for_each([&](uint64_t id) { s.problems.push_back(id); });
    });
    return s;
  };
  r.t.event({r.alpha, wire::gateway_event_kind::up, {}}, 10);
  r.t.event({r.beta, wire::gateway_event_kind::up, {}}, 11);
  r.t.held(hold_of(5), 20);
  r.t.held(hold_of(3), 21);
  r.t.flush();
  seen now = look();
  EXPECT_EQ(now.counts, (std::map<key, uint64_t>{{{in_flight, r.alpha, 0}, 2}}));
  EXPECT_EQ(now.ids, (std::vector<uint64_t>{3, 5}));
  EXPECT_TRUE(now.problems.empty());
  r.t.set_rules(rules_desk_cancels - 1);
  r.t.event({r.alpha, wire::gateway_event_kind::down, {}}, 30);  // both on to beta, still in flight
  r.t.flush();
  now = look();
  EXPECT_EQ(now.counts, (std::map<key, uint64_t>{{{in_flight, r.beta, 0}, 2}}));
  EXPECT_EQ(now.ids, (std::vector<uint64_t>{3, 5}));
  EXPECT_EQ(r.t.answer(test::etb_payout_answer(5, 2, 100, wire::payout_outcome::failed, r.beta), account, 2'000'000'000),
            wire::result::ok);  // alpha never answered: a dead letter
  EXPECT_EQ(r.t.answer(test::etb_payout_answer(3, 2, 100, wire::payout_outcome::settled, r.beta), account, 2'000'000'001),
            wire::result::ok);
  r.t.flush();
  now = look();
  EXPECT_EQ(now.counts, (std::map<key, uint64_t>{{{dead, r.beta, 0}, 1}, {{settling, r.beta, 0}, 1}}));
  EXPECT_EQ(now.ids, (std::vector<uint64_t>{3, 5}));
  EXPECT_EQ(now.problems, (std::vector<uint64_t>{5}));
}

// The desks' ordered id sets (actors/ordered_ids.hpp): random inserts and erases (ids that
// count up, ids anywhere, ids repeated, runs erased) against a std::set, every page from
// a random id compared, and chunks kept within their limits.
TEST(ordered_ids, pages_are_those_of_a_sorted_set_through_random_inserts_and_erases) {
  const uint64_t seed = test::test_seed("ordered_ids");
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 20; ++round) {
    ordered_ids ids;
    std::set<uint64_t> model;
    uint64_t next = 1 + rng() % 1000;  // ids that count up, as a load's
    const uint64_t span = round % 2 ? 1'000'000 : 5'000;  // wide, or dense (repeats and neighbours)
    for (int step = 0; step < 40'000; ++step) {
      const uint64_t r = rng() % 100;
      if (r < 35) {
        const uint64_t id = next++;
        ASSERT_EQ(ids.insert(id), model.insert(id).second) << "seed " << seed << " insert " << id;
      } else if (r < 60) {
        const uint64_t id = 1 + rng() % span;
        ASSERT_EQ(ids.insert(id), model.insert(id).second) << "seed " << seed << " insert " << id;
      } else if (r < 90 || model.empty()) {
        const uint64_t id = 1 + rng() % std::max<uint64_t>(span, next);
        ASSERT_EQ(ids.erase(id), model.erase(id) == 1) << "seed " << seed << " erase " << id;
      } else {  // a run of the lowest gone (payouts resolved oldest first)
        for (int k = 0; k < 300 && !model.empty(); ++k) {
          const uint64_t id = *model.begin();
          model.erase(model.begin());
          ASSERT_TRUE(ids.erase(id)) << "seed " << seed << " erase " << id;
        }
      }
      ASSERT_EQ(ids.size(), model.size()) << "seed " << seed;
      if (step % 997 == 0) {
        const uint64_t from = rng() % (std::max<uint64_t>(span, next) + 10);
        const size_t n = 1 + rng() % 600;
        std::vector<uint64_t> got, want;
        ids.take_from(from, n, &got);
        for (auto it = model.lower_bound(from); it != model.end() && want.size() < n; ++it) want.push_back(*it);
        ASSERT_EQ(got, want) << "seed " << seed << " from " << from << " n " << n;
        const uint64_t probe = 1 + rng() % span;
        ASSERT_EQ(ids.contains(probe), model.count(probe) == 1) << "seed " << seed << " probe " << probe;
      }
    }
    std::vector<uint64_t> all;
    ids.for_each([&](uint64_t id) { all.push_back(id); });
    ASSERT_EQ(all, std::vector<uint64_t>(model.begin(), model.end())) << "seed " << seed;
    // Memory: no chunk's vector past four times its ids' room, or 8 (so at most 32 bytes
    // an id, and a node a chunk).
    EXPECT_LE(ids.memory_bytes(), model.size() * 32 + ids.chunks() * (64 + 64)) << "seed " << seed;
  }
  // Ids that count up fill each chunk before the next.
  ordered_ids up;
  for (uint64_t id = 1; id <= 100'000; ++id) up.insert(id);
  EXPECT_EQ(up.chunks(), (100'000 + ordered_ids::chunk_max - 1) / ordered_ids::chunk_max);
  EXPECT_LE(up.memory_bytes(), 100'000 * 8 + up.chunks() * 64 + ordered_ids::chunk_max * 8);  // (the last chunk part full)
  // Then all but one id in 256 gone (payouts settled in order, a dead letter left now and
  // then): the chunks left join, and give back their room.
  for (uint64_t id = 1; id <= 100'000; ++id)
    if (id % 256 != 0) {
      ASSERT_TRUE(up.erase(id)) << id;
    }
  ASSERT_EQ(up.size(), 100'000u / 256);
  EXPECT_LE(up.chunks(), 3u);
  EXPECT_LE(up.memory_bytes(), up.size() * 32 + up.chunks() * 128);
  std::vector<uint64_t> left;
  up.take_from(0, 1000, &left);
  ASSERT_EQ(left.size(), up.size());
  for (size_t k = 0; k < left.size(); ++k) EXPECT_EQ(left[k], (k + 1) * 256);
  // A chunk drained to one id between two full ones (none can join) gives back its room.
  ordered_ids three;
  for (uint64_t id = 1; id <= 3 * ordered_ids::chunk_max; ++id) three.insert(id);
  ASSERT_EQ(three.chunks(), 3u);
  for (uint64_t id = ordered_ids::chunk_max + 2; id <= 2 * ordered_ids::chunk_max; ++id) ASSERT_TRUE(three.erase(id));
  ASSERT_EQ(three.chunks(), 3u);
  EXPECT_LE(three.memory_bytes(), 2 * (64 + ordered_ids::chunk_max * 8) + 64 + 8 * 8);
}

}  // namespace
}  // namespace mesob::actors::payouts
