// Payment gateways in the engine: the registry changed through engine::gateways (its
// settlement accounts checked or created), deposits as ledger transfers idempotent on
// the gateway's reference, precise refusals, and the registry and deposits surviving
// restarts from a snapshot and from the log alone.
#include <gtest/gtest.h>

#include "actors/gateway_registry.hpp"
#include "actors/trading.hpp"
#include "storage/snapshot.hpp"
#include "support/engine_fixture.hpp"
#include "wire/protocol.hpp"

namespace mesob::test {
namespace {

using actors::gateways::deposit_transfer_id;
using wire::result;

constexpr uint64_t settlement_etb = 7001, settlement_usd = 7002, other_settlement = 7003;

wire::gateway_op registration(const char* id, uint64_t etb_account, uint32_t priority = 10) {
  return make_gateway_registration(id, etb_account, priority);
}

wire::deposit make_deposit(uint64_t reference, uint64_t wallet, uint64_t amount, const char (&cur)[4] = "ETB") {
  wire::deposit d{};
  d.reference = reference;
  d.wallet = wallet;
  d.amount = amount;
  d.currency = wire::currency(cur);
  return d;
}

class gateway_engine : public ::testing::Test {
 protected:
  explicit gateway_engine(bool checkpoint_on_close = true) : fx_(2, checkpoint_on_close) {}
  engine::engine& e() { return fx_.e(); }

  void register_telebirr() {
    auto r = e().gateways({registration("telebirr", settlement_etb)});
    ASSERT_EQ(r.st, engine::status::ok);
    ASSERT_EQ(r.results.at(0), result::ok);
  }
  void open_wallets(uint64_t n) {
    std::vector<wire::account> a;
    for (uint64_t id = 1; id <= n; ++id) a.push_back(make_account(id, wire::account_flags::debits_must_not_exceed_credits));
    for (auto r : e().create_accounts(a).results) ASSERT_EQ(r, result::ok);
  }
  wire::account account(uint64_t id) {
    auto r = e().lookup_accounts({id});
    EXPECT_EQ(r.results.at(0), result::ok) << id;
    return r.accounts.at(0);
  }
  uint64_t balance(uint64_t id) {
    const auto a = account(id);
    return a.credits_posted - a.debits_posted;
  }

  engine_fixture fx_;
};

TEST_F(gateway_engine, registration_creates_settlement_accounts_and_publishes_the_gateway) {
  register_telebirr();
  const auto a = account(settlement_etb);
  EXPECT_EQ(a.kind, wire::account_kind::gateway_settlement);
  EXPECT_EQ(a.currency, wire::currency("ETB"));
  const auto reg = e().gateway_registry();
  const auto* g = reg->find("telebirr");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->number, 1u);
  EXPECT_EQ(g->secret.size(), 32u);
  EXPECT_TRUE(g->enabled);

  // A wallet (kind customer_wallet) or an account in another currency cannot settle.
  open_wallets(1);
  auto r = e().gateways({registration("cbe", 1)});
  EXPECT_EQ(r.results.at(0), result::settlement_account_invalid);
  auto usd = registration("cbe", settlement_etb);
  usd.currencies[0].currency = wire::currency("USD");
  EXPECT_EQ(e().gateways({usd}).results.at(0), result::settlement_account_invalid);
  // Another gateway's settlement account.
  EXPECT_EQ(e().gateways({registration("cbe", settlement_etb)}).results.at(0), result::settlement_account_in_use);
  // Field faults come back without touching accounts; a good op in the same call applies.
  auto bad = registration("cbe", other_settlement);
  bad.rail = 0;
  r = e().gateways({bad, registration("cbe", other_settlement, 5)});
  EXPECT_EQ(r.results.at(0), result::rail_invalid);
  EXPECT_EQ(r.results.at(1), result::ok);
  EXPECT_EQ(e().gateway_registry()->find("cbe")->number, 2u);
  EXPECT_EQ(e().gateway_registry()->size(), 2u);

  // Requests of kind gateway_ops that skip the account check are refused.
  engine::request raw;
  raw.kind = actors::op_kind::gateway_ops;
  raw.gateway_ops = {registration("sneaky", 1)};
  EXPECT_EQ(e().call(std::move(raw)).st, engine::status::kind_invalid);
  EXPECT_EQ(e().gateway_registry()->find("sneaky"), nullptr);
}

// A change the registry refuses makes no account: accounts are never removed, so one
// made for an update of an unknown gateway, or for the good currency of a registration
// whose other currency is refused, stayed for good (its id never a wallet's). Before,
// every account an op named was made before the registry decided.
TEST_F(gateway_engine, a_refused_change_makes_no_account) {
  register_telebirr();
  open_wallets(1);
  auto absent = [&](uint64_t id) { return e().lookup_accounts({id}).results.at(0) == result::account_not_found; };
  auto update = registration("nobody", 7101);
  update.kind = wire::gateway_op_kind::update;
  update.secret_bytes = 0;
  std::memset(update.secret, 0, sizeof update.secret);
  EXPECT_EQ(e().gateways({update}).results.at(0), result::gateway_not_found);
  EXPECT_TRUE(absent(7101)) << "made for an update of an unknown gateway";
  auto again = registration("telebirr", 7102);  // exists
  EXPECT_EQ(e().gateways({again}).results.at(0), result::gateway_exists);
  EXPECT_TRUE(absent(7102));
  auto two = registration("cbe", 7103);  // ETB new; KES settles to a customer wallet
  two.currencies_n = 2;
  two.currencies[1] = {wire::currency("KES"), 0, 1};
  EXPECT_EQ(e().gateways({two}).results.at(0), result::settlement_account_invalid);
  EXPECT_TRUE(absent(7103)) << "made for the good currency of a refused registration";
  // In one call, a later op sees the earlier ones: a register then its update both pass,
  // and a second register of the same id is refused without making its account.
  auto up = registration("awash", 7105);
  up.kind = wire::gateway_op_kind::update;
  up.secret_bytes = 0;
  std::memset(up.secret, 0, sizeof up.secret);
  const auto r = e().gateways({registration("awash", 7104), up, registration("awash", 7106)});
  EXPECT_EQ(r.results, (std::vector<result>{result::ok, result::ok, result::gateway_exists}));
  EXPECT_FALSE(absent(7104));
  EXPECT_FALSE(absent(7105));
  EXPECT_TRUE(absent(7106));
  EXPECT_EQ(e().gateway_registry()->find("awash")->currencies.at(0).settlement_account_id, 7105u);
  // A register whose settlement account cannot be made (an id in the engine's reserved
  // range) is refused id_reserved before any of its accounts is made (its other
  // currency's, new, included), and is not counted when the call's later ops are
  // judged: an update of it is refused before its account is made.
  const uint64_t reserved = actors::trading::account_hi | 5;
  auto first = registration("dashen", 7108);
  first.currencies_n = 2;
  first.currencies[1] = {wire::currency("KES"), 0, reserved};
  auto later = registration("dashen", 7107);
  later.kind = wire::gateway_op_kind::update;
  later.secret_bytes = 0;
  std::memset(later.secret, 0, sizeof later.secret);
  const auto r2 = e().gateways({first, later});
  EXPECT_EQ(r2.results, (std::vector<result>{result::id_reserved, result::gateway_not_found}));
  EXPECT_TRUE(absent(7108)) << "made beside a settlement account in the reserved range";
  EXPECT_TRUE(absent(7107)) << "made for an update of a gateway the call did not register";
}

TEST_F(gateway_engine, deposits_credit_wallets_once_per_reference) {
  register_telebirr();
  open_wallets(3);
  auto r = e().deposit("telebirr", {make_deposit(1001, 1, 500), make_deposit(1002, 2, 700)});
  ASSERT_EQ(r.st, engine::status::ok);
  EXPECT_EQ(r.results, (std::vector<result>{result::ok, result::ok}));
  EXPECT_EQ(balance(1), 500u);
  EXPECT_EQ(balance(2), 700u);
  const auto s = account(settlement_etb);
  EXPECT_EQ(s.debits_posted - s.credits_posted, 1200u);  // the gateway's float: money it holds for us

  // A retry of the same reference returns the first outcome and moves nothing.
  r = e().deposit("telebirr", {make_deposit(1001, 1, 500)});
  EXPECT_EQ(r.results.at(0), result::ok);
  EXPECT_EQ(balance(1), 500u);
  // The same reference with other content is an error, and moves nothing.
  r = e().deposit("telebirr", {make_deposit(1001, 1, 501)});
  EXPECT_EQ(r.results.at(0), result::exists_with_different_fields);
  EXPECT_EQ(balance(1), 500u);
  // Twice in one batch.
  r = e().deposit("telebirr", {make_deposit(1003, 3, 5), make_deposit(1003, 3, 5)});
  EXPECT_EQ(r.results.at(0), result::ok);
  EXPECT_EQ(r.results.at(1), result::id_duplicated_in_batch);
  EXPECT_EQ(balance(3), 5u);

  // The deposit is a recorded transfer: a look-up by its derived id finds it.
  const auto found = e().lookup_transfers({deposit_transfer_id(1, 1002)});
  ASSERT_EQ(found.results.at(0), result::ok);
  EXPECT_EQ(found.transfers.at(0).t.debit_account_id, settlement_etb);
  EXPECT_EQ(found.transfers.at(0).t.credit_account_id, 2u);
  EXPECT_TRUE(e().check_balances().balanced);
}

TEST_F(gateway_engine, bad_deposits_get_precise_errors_and_change_nothing) {
  register_telebirr();
  open_wallets(3);
  ASSERT_EQ(e().set_account_status({{2, wire::account_status::frozen}}).results.at(0), result::ok);
  ASSERT_EQ(e().set_account_status({{3, wire::account_status::closed}}).results.at(0), result::ok);
  auto mixed = e().deposit("telebirr", {make_deposit(1, 1, 100), make_deposit(2, 2, 100), make_deposit(3, 3, 100),
                                        make_deposit(4, 99, 100), make_deposit(5, 1, 100, "USD"),
                                        make_deposit(0, 1, 100), make_deposit(6, 1, 0),
                                        make_deposit(7, settlement_etb, 100)});
  ASSERT_EQ(mixed.st, engine::status::ok);
  EXPECT_EQ(mixed.results,
            (std::vector<result>{result::ok, result::credit_account_frozen, result::credit_account_closed,
                                 result::credit_account_not_found, result::gateway_currency_unserved,
                                 result::id_must_not_be_zero, result::amount_must_not_be_zero,
                                 result::accounts_must_be_different}));
  EXPECT_EQ(balance(1), 100u);
  EXPECT_EQ(balance(2), 0u);
  EXPECT_EQ(balance(3), 0u);
  EXPECT_EQ(e().deposit("nobody", {make_deposit(8, 1, 100)}).results.at(0), result::gateway_not_registered);
  wire::gateway_op off{};
  off.kind = wire::gateway_op_kind::disable;
  actors::gateways::set_op_id(off, "telebirr");
  ASSERT_EQ(e().gateways({off}).results.at(0), result::ok);
  EXPECT_EQ(e().deposit("telebirr", {make_deposit(9, 1, 100)}).results.at(0), result::gateway_disabled);
  EXPECT_EQ(balance(1), 100u);
  // A retry of a deposit made before is answered with its first outcome whatever the
  // registry says now (a client told "disabled" might take it as never made).
  EXPECT_EQ(e().deposit("telebirr", {make_deposit(1, 1, 100)}).results.at(0), result::ok);
  EXPECT_EQ(e().deposit("telebirr", {make_deposit(1, 1, 101)}).results.at(0), result::exists_with_different_fields);
  auto reserved = make_deposit(1, 1, 100);
  reserved.reserved = 1;
  EXPECT_EQ(e().deposit("telebirr", {reserved}).results.at(0), result::reserved_field);
  EXPECT_EQ(e().deposit("telebirr", {make_deposit(2, 2, 100)}).results.at(0), result::credit_account_frozen);
  off.kind = wire::gateway_op_kind::enable;
  ASSERT_EQ(e().gateways({off}).results.at(0), result::ok);
  auto moved = registration("telebirr", other_settlement);  // its settlement account changes
  moved.kind = wire::gateway_op_kind::update;
  moved.secret_bytes = 0;
  std::fill(std::begin(moved.secret), std::end(moved.secret), 0);
  ASSERT_EQ(e().gateways({moved}).results.at(0), result::ok);
  EXPECT_EQ(e().deposit("telebirr", {make_deposit(1, 1, 100)}).results.at(0), result::ok);
  EXPECT_EQ(balance(1), 100u);
  // A deposit credits a customer wallet: not the gateway's former settlement account, nor
  // a fee or system account (before, any account but its settlement account, each
  // counted in the gateway's reconciliation as deposited).
  auto fee = make_account(50);
  fee.kind = wire::account_kind::fee;
  auto sys = make_account(51);
  sys.kind = wire::account_kind::system;
  for (auto r : e().create_accounts({fee, sys}).results) ASSERT_EQ(r, result::ok);
  EXPECT_EQ(e().deposit("telebirr", {make_deposit(20, settlement_etb, 100), make_deposit(21, 50, 100),
                                     make_deposit(22, 51, 100), make_deposit(23, 1, 100)})
                .results,
            (std::vector<result>{result::customer_wallet_required, result::customer_wallet_required,
                                 result::customer_wallet_required, result::ok}));
  EXPECT_EQ(balance(50), 0u);
  EXPECT_EQ(balance(51), 0u);
  EXPECT_EQ(balance(1), 200u);
  // A client may not write into the deposits' id space, nor fake a deposit.
  wire::transfer fake = make_transfer(0, settlement_etb, 1, 1000);
  fake.id = deposit_transfer_id(1, 12345);
  EXPECT_EQ(e().create_transfers({fake}).results.at(0), result::id_reserved);
  EXPECT_EQ(balance(1), 200u);
  EXPECT_TRUE(e().check_balances().balanced);
}

// A deposit repeated while its gateway is disabled is looked for among the recorded
// deposits (its first outcome answers it). When that record's snapshot row is damaged
// on the disk, the deposit is answered engine_failed there and then, and writes are
// refused (the look-up's answer may be wrong). Before, it was answered gateway_disabled
// and the damage was left for the next request, whatever it was, to be failed by.
TEST_F(gateway_engine, a_repeated_deposit_whose_record_is_damaged_is_answered_there) {
  fx_.close();
  fx_.set_resident_max(1 << 14);
  fx_.open();
  register_telebirr();
  open_wallets(1);
  ASSERT_EQ(e().deposit("telebirr", {make_deposit(1, 1, 100)}).results.at(0), result::ok);  // serial 0
  ASSERT_EQ(e().create_accounts({make_account(100), make_account(101)}).results.at(0), result::ok);
  for (uint64_t base = 1; base <= 20'000; base += 4'000) {  // past the resident window
    std::vector<wire::transfer> b;
    for (uint64_t i = base; i < base + 4'000; ++i) b.push_back(make_transfer(i, 100, 101, 1));
    for (auto r : e().create_transfers(b).results) ASSERT_EQ(r, result::ok);
  }
  fx_.close();  // with a snapshot
  ASSERT_GE(damage_snapshot_row(fx_.dir(), storage::table::transfers, 0, 0x04), 1);
  fx_.open();
  wire::gateway_op off{};
  off.kind = wire::gateway_op_kind::disable;
  actors::gateways::set_op_id(off, "telebirr");
  ASSERT_EQ(e().gateways({off}).results.at(0), result::ok);
  EXPECT_EQ(e().deposit("telebirr", {make_deposit(1, 1, 100)}).st, engine::status::engine_failed);
  EXPECT_TRUE(e().stats().writes_refused);
  EXPECT_EQ(balance(1), 100u) << "reads are served";
}

// A registry row that passes its check but names a customer's wallet as a settlement
// account (no build writes one: a registration refuses it) would move every deposit out
// of that wallet. A start checks the registry's accounts against the ledger, as a
// registration does, and refuses it by name; a registration time past the snapshot's
// clock too.
TEST_F(gateway_engine, a_snapshot_registry_naming_a_wallet_refuses_the_start) {
  register_telebirr();
  open_wallets(1);
  fx_.close();  // with a snapshot
  auto rewrite = [&](const std::function<void(actors::gateways::registry&)>& change) {
    rewrite_snapshot_row(fx_.dir(), storage::table::gateways, 0, [&](std::span<const uint8_t> row) {
      actors::gateways::registry reg;
      std::string why;
      if (!actors::gateways::registry::decode(row, &reg, &why)) {
        ADD_FAILURE() << "the registry row: " << why;
        return std::vector<uint8_t>{};
      }
      change(reg);
      return reg.encode();
    });
  };
  const uint64_t now = fx_.now_ns();
  rewrite([&](actors::gateways::registry& reg) {
    ASSERT_EQ(reg.apply(registration("mallory", 1), now), result::ok);  // wallet 1: the caller checks kinds
  });
  std::string err;
  EXPECT_FALSE(engine::engine::open(fx_.config(), &err));
  EXPECT_NE(err.find("snapshot: gateway registry: gateway mallory (2): its ETB settlement account 1 is not a ETB "
                     "settlement account"),
            std::string::npos)
      << err;
  rewrite([&](actors::gateways::registry& reg) { reg = {}; ASSERT_EQ(reg.apply(registration("telebirr", settlement_etb), now + 1'000'000'000'000ull), result::ok); });
  EXPECT_FALSE(engine::engine::open(fx_.config(), &err));
  EXPECT_NE(err.find("gateway telebirr (1): registered at"), std::string::npos) << err;
  EXPECT_NE(err.find("past the snapshot's clock"), std::string::npos) << err;
  rewrite([&](actors::gateways::registry& reg) { reg = {}; ASSERT_EQ(reg.apply(registration("telebirr", settlement_etb), now), result::ok); });
  fx_.open();
  EXPECT_EQ(e().deposit("telebirr", {make_deposit(1, 1, 100)}).results.at(0), result::ok);
}

class gateway_engine_replay : public gateway_engine {
 protected:
  gateway_engine_replay() : gateway_engine(false) {}
};

// From the log alone (no snapshot at close) and then from a snapshot: the registry, the
// deposits and their idempotency come back the same.
TEST_F(gateway_engine_replay, registry_and_deposits_survive_restarts) {
  register_telebirr();
  open_wallets(2);
  auto two = registration("cbe", settlement_usd, 3);
  two.currencies[0].currency = wire::currency("USD");
  ASSERT_EQ(e().gateways({two}).results.at(0), result::ok);
  wire::gateway_op rot{};
  rot.kind = wire::gateway_op_kind::rotate_secret;
  actors::gateways::set_op_id(rot, "telebirr");
  rot.secret_bytes = 20;
  for (int i = 0; i < 20; ++i) rot.secret[i] = uint8_t(0xA0 + i);
  ASSERT_EQ(e().gateways({rot}).results.at(0), result::ok);
  ASSERT_EQ(e().deposit("telebirr", {make_deposit(1, 1, 300)}).results.at(0), result::ok);
  const auto before = e().gateway_registry()->encode();

  fx_.restart();  // replay only
  EXPECT_EQ(e().gateway_registry()->encode(), before);
  EXPECT_EQ(e().gateway_registry()->find("telebirr")->secret.size(), 20u);
  EXPECT_EQ(balance(1), 300u);
  EXPECT_EQ(e().deposit("telebirr", {make_deposit(1, 1, 300)}).results.at(0), result::ok);  // a repeat
  EXPECT_EQ(balance(1), 300u);

  std::string err;
  ASSERT_TRUE(e().checkpoint(&err)) << err;
  wire::gateway_op off{};
  off.kind = wire::gateway_op_kind::disable;
  actors::gateways::set_op_id(off, "cbe");
  ASSERT_EQ(e().gateways({off}).results.at(0), result::ok);  // after the snapshot: replayed
  fx_.restart();  // the snapshot, then the log after it
  const auto reg = e().gateway_registry();
  ASSERT_EQ(reg->size(), 2u);
  EXPECT_FALSE(reg->find("cbe")->enabled);
  EXPECT_TRUE(reg->find("telebirr")->enabled);
  EXPECT_EQ(e().deposit("telebirr", {make_deposit(1, 1, 300), make_deposit(2, 2, 40)}).results,
            (std::vector<result>{result::ok, result::ok}));
  EXPECT_EQ(balance(1), 300u);
  EXPECT_EQ(balance(2), 40u);
  EXPECT_TRUE(e().check_balances().balanced);
}

}  // namespace
}  // namespace mesob::test
