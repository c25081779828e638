// The gateway registry's rules (actors/gateway_registry.hpp): field checks, each change
// against the registry, deposits as the transfers they become, and the snapshot byte
// form, including damage the decoder must refuse.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "actors/gateway_registry.hpp"
#include "support/seed.hpp"
#include "wire/protocol.hpp"

namespace mesob::actors::gateways {
namespace {

using wire::result;

wire::gateway_op make_op(wire::gateway_op_kind k, const char* id) {
  wire::gateway_op op{};
  op.kind = k;
  EXPECT_TRUE(set_op_id(op, id));
  if (k == wire::gateway_op_kind::register_gateway || k == wire::gateway_op_kind::update) {
    op.rail = uint8_t(rail::mobile_money);
    op.priority = 10;
    op.roles = wire::roles::payments;
    op.answer_timeout_ms = 5000;
    op.currencies_n = 1;
    op.currencies[0] = {wire::currency("ETB"), 0, 5000};
  }
  if (k == wire::gateway_op_kind::register_gateway || k == wire::gateway_op_kind::rotate_secret) {
    op.secret_bytes = 32;
    for (int i = 0; i < 32; ++i) op.secret[i] = uint8_t(i + 1);
  }
  return op;
}

TEST(gateway_registry, field_checks_name_the_fault) {
  using K = wire::gateway_op_kind;
  EXPECT_EQ(check_op_fields(make_op(K::register_gateway, "telebirr")), result::ok);
  auto op = make_op(K::register_gateway, "tele birr");
  EXPECT_EQ(check_op_fields(op), result::gateway_id_invalid);
  op = make_op(K::register_gateway, "");
  EXPECT_EQ(check_op_fields(op), result::gateway_id_invalid);
  op = make_op(K::register_gateway, "g");
  op.kind = wire::gateway_op_kind(9);
  EXPECT_EQ(check_op_fields(op), result::gateway_op_invalid);
  op = make_op(K::register_gateway, "g");
  op.rail = 4;
  EXPECT_EQ(check_op_fields(op), result::rail_invalid);
  op = make_op(K::register_gateway, "g");
  op.roles = wire::roles::payments | wire::roles::admin;  // never through the registry
  EXPECT_EQ(check_op_fields(op), result::roles_invalid);
  op.roles = 0;
  EXPECT_EQ(check_op_fields(op), result::roles_invalid);
  op.roles = wire::roles::payments | wire::roles::ledger;  // from rules version 33
  EXPECT_EQ(check_op_fields(op), result::ok);
  EXPECT_EQ(check_op_fields(op, rules_registered_ledger_role - 1), result::roles_invalid);
  op.roles = wire::roles::ledger << 1;
  EXPECT_EQ(check_op_fields(op), result::roles_invalid);
  op = make_op(K::register_gateway, "g");
  op.answer_timeout_ms = 99;
  EXPECT_EQ(check_op_fields(op), result::answer_timeout_invalid);
  op.answer_timeout_ms = 3'600'001;
  EXPECT_EQ(check_op_fields(op), result::answer_timeout_invalid);
  op = make_op(K::disable, "g");
  op.answer_timeout_ms = 1000;
  EXPECT_EQ(check_op_fields(op), result::gateway_op_invalid);
  op = make_op(K::register_gateway, "g");
  op.secret_bytes = 15;
  EXPECT_EQ(check_op_fields(op), result::secret_invalid);
  op = make_op(K::register_gateway, "g");
  op.currencies_n = 0;
  op.currencies[0] = {};
  EXPECT_EQ(check_op_fields(op), result::currencies_invalid);
  op = make_op(K::register_gateway, "g");
  op.currencies_n = 2;
  op.currencies[1] = {wire::currency("ETB"), 0, 5001};  // the same currency twice
  EXPECT_EQ(check_op_fields(op), result::currencies_invalid);
  op.currencies[1] = {wire::currency("USD"), 0, 5000};  // the same account twice
  EXPECT_EQ(check_op_fields(op), result::currencies_invalid);
  op.currencies[1] = {wire::currency("USD"), 0, 5001};
  EXPECT_EQ(check_op_fields(op), result::ok);
  op = make_op(K::update, "g");
  op.secret_bytes = 32;  // an update never carries a secret
  EXPECT_EQ(check_op_fields(op), result::gateway_op_invalid);
  op = make_op(K::disable, "g");
  op.priority = 1;
  EXPECT_EQ(check_op_fields(op), result::gateway_op_invalid);
  op = make_op(K::rotate_secret, "g");
  op.rail = 1;
  EXPECT_EQ(check_op_fields(op), result::gateway_op_invalid);
  op = make_op(K::disable, "g");
  op.id[10] = 'x';  // bytes after the id's end must be zero
  EXPECT_EQ(check_op_fields(op), result::gateway_id_invalid);
}

TEST(gateway_registry, changes_apply_in_order) {
  using K = wire::gateway_op_kind;
  registry r;
  EXPECT_EQ(r.apply(make_op(K::update, "telebirr"), 1), result::gateway_not_found);
  EXPECT_EQ(r.apply(make_op(K::register_gateway, "telebirr"), 2), result::ok);
  EXPECT_EQ(r.apply(make_op(K::register_gateway, "telebirr"), 3), result::gateway_exists);
  auto other = make_op(K::register_gateway, "cbe");
  EXPECT_EQ(r.apply(other, 4), result::settlement_account_in_use);  // telebirr's account
  other.currencies[0].settlement_account_id = 5001;
  EXPECT_EQ(r.apply(other, 5), result::ok);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r.find("telebirr")->number, 1u);
  EXPECT_EQ(r.find("cbe")->number, 2u);
  EXPECT_EQ(r.find(2u)->id, "cbe");
  EXPECT_EQ(r.find(3u), nullptr);

  auto upd = make_op(K::update, "telebirr");
  upd.priority = 3;
  upd.rail = uint8_t(rail::bank);
  upd.currencies_n = 2;
  upd.currencies[1] = {wire::currency("USD"), 0, 5001};  // cbe's
  EXPECT_EQ(r.apply(upd, 6), result::settlement_account_in_use);
  upd.currencies[1].settlement_account_id = 5002;
  EXPECT_EQ(r.apply(upd, 7), result::ok);
  const gateway* g = r.find("telebirr");
  EXPECT_EQ(g->priority, 3u);
  EXPECT_EQ(g->rail, uint8_t(rail::bank));
  ASSERT_NE(g->serves(wire::currency("USD")), nullptr);
  EXPECT_EQ(g->serves(wire::currency("USD"))->settlement_account_id, 5002u);
  EXPECT_EQ(g->changed_at, 7u);
  EXPECT_EQ(g->registered_at, 2u);

  auto rot = make_op(K::rotate_secret, "telebirr");
  rot.secret[0] = 0xAA;
  EXPECT_EQ(r.apply(rot, 8), result::ok);
  EXPECT_EQ(r.find("telebirr")->secret[0], 0xAA);
  EXPECT_EQ(r.apply(make_op(K::disable, "telebirr"), 9), result::ok);
  EXPECT_FALSE(r.find("telebirr")->enabled);
  EXPECT_EQ(r.apply(make_op(K::enable, "telebirr"), 10), result::ok);
  EXPECT_TRUE(r.find("telebirr")->enabled);
}

// A settlement account a gateway stops naming stays its own (rules version 20): its
// balance and the sweeps of its payouts settled later are that gateway's money. Before,
// another gateway could take it, with both, and nothing was recorded.
TEST(gateway_registry, released_settlement_accounts_stay_their_gateways) {
  using K = wire::gateway_op_kind;
  for (const uint16_t rules : {uint16_t(rules_settlement_accounts_kept - 1), rules_newest}) {
    SCOPED_TRACE("rules " + std::to_string(rules));
    const bool kept = rules >= rules_settlement_accounts_kept;
    registry r;
    ASSERT_EQ(r.apply(make_op(K::register_gateway, "telebirr"), 1, rules), result::ok);  // ETB=5000
    auto moved = make_op(K::update, "telebirr");
    moved.currencies[0].settlement_account_id = 5005;
    ASSERT_EQ(r.apply(moved, 2, rules), result::ok);
    EXPECT_EQ(r.find("telebirr")->former_accounts, kept ? std::vector<uint64_t>{5000} : std::vector<uint64_t>{});
    // Another gateway naming the released account, at registration or by an update.
    auto cbe = make_op(K::register_gateway, "cbe");
    EXPECT_EQ(r.apply(cbe, 3, rules), kept ? result::settlement_account_in_use : result::ok);
    if (kept) {
      cbe.currencies[0].settlement_account_id = 6000;
      ASSERT_EQ(r.apply(cbe, 4, rules), result::ok);
      auto take = make_op(K::update, "cbe");
      take.currencies[0].settlement_account_id = 6000;
      take.currencies_n = 2;
      take.currencies[1] = {wire::currency("USD"), 0, 5000};
      EXPECT_EQ(r.apply(take, 5, rules), result::settlement_account_in_use);
      EXPECT_EQ(r.find("cbe")->currencies.size(), 1u) << "a refused update changes nothing";
      // The gateway itself may name it again: it leaves the former list, and the one it
      // replaces joins it.
      EXPECT_EQ(r.apply(make_op(K::update, "telebirr"), 6, rules), result::ok);
      EXPECT_EQ(r.find("telebirr")->serves(wire::currency("ETB"))->settlement_account_id, 5000u);
      EXPECT_EQ(r.find("telebirr")->former_accounts, std::vector<uint64_t>{5005});
      EXPECT_EQ(r.apply(take, 7, rules), result::settlement_account_in_use) << "its current account again";
      take.currencies[1].settlement_account_id = 5005;
      EXPECT_EQ(r.apply(take, 8, rules), result::settlement_account_in_use) << "its new former account";
    } else {
      EXPECT_EQ(r.find("cbe")->serves(wire::currency("ETB"))->settlement_account_id, 5000u);
    }

    // A gateway names at most settlement_accounts_named_max accounts over its life:
    // past it an update is refused (the older rules keep no history, and no bound).
    registry b;
    auto one = make_op(K::register_gateway, "mpesa");
    one.currencies[0].settlement_account_id = 9000;
    ASSERT_EQ(b.apply(one, 1, rules), result::ok);
    auto next = make_op(K::update, "mpesa");
    uint64_t account = 9000;
    for (size_t named = 1; named < settlement_accounts_named_max; ++named) {
      next.currencies[0].settlement_account_id = ++account;
      ASSERT_EQ(b.apply(next, 2 + named, rules), result::ok) << named;
    }
    EXPECT_EQ(b.find("mpesa")->former_accounts.size(), kept ? settlement_accounts_named_max - 1 : 0);
    next.currencies[0].settlement_account_id = 9000;  // a former one again: no new name
    EXPECT_EQ(b.apply(next, 100, rules), result::ok);
    next.currencies[0].settlement_account_id = 9999;
    EXPECT_EQ(b.apply(next, 101, rules), kept ? result::settlement_accounts_exhausted : result::ok);
    const gateway* g = b.find("mpesa");
    EXPECT_EQ(g->serves(wire::currency("ETB"))->settlement_account_id, kept ? 9000u : 9999u);
    if (kept) {
      EXPECT_EQ(g->former_accounts.size() + g->currencies.size(), settlement_accounts_named_max);
    }
  }
}

// Across the upgrade: what older rules released is no one's to keep (an account may have
// moved meanwhile), so a gateway holding a moved account keeps updating with it; and a
// registry is the log's alone, whatever a snapshot of an older build held.
TEST(gateway_registry, history_starts_with_the_rules_that_keep_it) {
  using K = wire::gateway_op_kind;
  constexpr uint16_t old_rules = rules_settlement_accounts_kept - 1;
  registry r;
  ASSERT_EQ(r.apply(make_op(K::register_gateway, "telebirr"), 1, old_rules), result::ok);  // ETB=5000
  auto away = make_op(K::update, "telebirr");
  away.currencies[0].settlement_account_id = 5005;
  ASSERT_EQ(r.apply(away, 2, old_rules), result::ok);
  ASSERT_EQ(r.apply(make_op(K::register_gateway, "cbe"), 3, old_rules), result::ok);  // takes 5000
  auto keep = make_op(K::update, "cbe");
  keep.priority = 1;
  EXPECT_EQ(r.apply(keep, 4), result::ok) << "its own current account, moved to it under older rules";
  EXPECT_TRUE(r.find("telebirr")->former_accounts.empty());
  EXPECT_EQ(r.apply(make_op(K::update, "telebirr"), 5), result::settlement_account_in_use) << "5000 is cbe's now";
  // Released under the newer rules, then (a record of an older build replayed after, as
  // the log never holds, but a registry must stay whole) named by another: it is that
  // one's now, and nobody's former account.
  auto mpesa = make_op(K::register_gateway, "mpesa");
  mpesa.currencies[0].settlement_account_id = 7000;
  ASSERT_EQ(r.apply(mpesa, 6), result::ok);
  auto drop = make_op(K::update, "mpesa");
  drop.currencies[0].settlement_account_id = 7001;
  ASSERT_EQ(r.apply(drop, 7), result::ok);
  EXPECT_EQ(r.find("mpesa")->former_accounts, std::vector<uint64_t>{7000});
  auto older = make_op(K::update, "telebirr");
  older.currencies[0].settlement_account_id = 7000;
  ASSERT_EQ(r.apply(older, 8, old_rules), result::ok);
  EXPECT_TRUE(r.find("mpesa")->former_accounts.empty());
  registry back;
  std::string why;
  EXPECT_TRUE(registry::decode(r.encode(), &back, &why)) << why;
}

TEST(gateway_registry, deposits_become_transfers_with_ids_in_the_reserved_space) {
  using K = wire::gateway_op_kind;
  registry r;
  ASSERT_EQ(r.apply(make_op(K::register_gateway, "telebirr"), 1), result::ok);
  wire::deposit d{};
  d.reference = 77;
  d.wallet = 42;
  d.amount = 1500;
  d.user_data = 9;
  d.code = 3;
  d.currency = wire::currency("ETB");
  wire::transfer t;
  ASSERT_EQ(r.deposit_transfer("telebirr", d, &t), result::ok);
  EXPECT_EQ(t.id, deposit_transfer_id(1, 77));
  EXPECT_TRUE(deposit_id(t.id));
  EXPECT_EQ(t.debit_account_id, 5000u);
  EXPECT_EQ(t.credit_account_id, 42u);
  EXPECT_EQ(t.amount, 1500u);
  EXPECT_EQ(t.user_data, 9u);
  EXPECT_EQ(t.code, 3u);
  EXPECT_EQ(t.flags, 0u);
  EXPECT_EQ(r.deposit_transfer("nobody", d, &t), result::gateway_not_registered);
  auto bad = d;
  bad.reference = 0;
  EXPECT_EQ(r.deposit_transfer("telebirr", bad, &t), result::id_must_not_be_zero);
  bad = d;
  bad.currency = wire::currency("USD");
  EXPECT_EQ(r.deposit_transfer("telebirr", bad, &t), result::gateway_currency_unserved);
  bad.currency = 0;
  EXPECT_EQ(r.deposit_transfer("telebirr", bad, &t), result::currency_invalid);
  bad = d;
  bad.amount = 0;
  EXPECT_EQ(r.deposit_transfer("telebirr", bad, &t), result::amount_must_not_be_zero);
  bad = d;
  bad.wallet = 5000;
  EXPECT_EQ(r.deposit_transfer("telebirr", bad, &t), result::accounts_must_be_different);
  bad = d;
  bad.reserved = 1;
  EXPECT_EQ(r.deposit_transfer("telebirr", bad, &t), result::reserved_field);
  ASSERT_EQ(r.apply(make_op(K::disable, "telebirr"), 2), result::ok);
  EXPECT_EQ(r.deposit_transfer("telebirr", d, &t), result::gateway_disabled);
}

TEST(gateway_registry, byte_form_round_trips_and_refuses_damage) {
  using K = wire::gateway_op_kind;
  registry r;
  ASSERT_EQ(r.apply(make_op(K::register_gateway, "telebirr"), 1), result::ok);
  auto two = make_op(K::register_gateway, "cbe-birr");
  two.rail = uint8_t(rail::bank);
  two.currencies_n = 2;
  two.currencies[0].settlement_account_id = 6000;
  two.currencies[1] = {wire::currency("USD"), 0, 6001};
  ASSERT_EQ(r.apply(two, 2), result::ok);
  ASSERT_EQ(r.apply(make_op(K::disable, "cbe-birr"), 3), result::ok);
  // Where the count of gateway k's former accounts lies in r's bytes (format 2).
  auto former_count_at = [](const registry& reg, size_t k) {
    size_t at = 8;
    for (size_t i = 0;; ++i) {
      const gateway& g = reg.all()[i];
      at += 4 + 1 + g.id.size() + 1 + 4 + 4 + 4 + 1 + g.secret.size() + 1 + 12 * g.currencies.size();
      if (i == k) return at;
      at += 1 + 8 * g.former_accounts.size() + 1 + 8 + 8;
    }
  };
  // A snapshot of format 1 (before former accounts) decodes with none: the same bytes
  // less each gateway's count of them.
  {
    auto v1 = r.encode();
    ASSERT_EQ(v1[0], 2);
    v1[0] = 1;
    for (size_t k = r.size(); k-- > 0;) {  // (from the last: erasing moves what follows)
      const size_t at = former_count_at(r, k);
      ASSERT_EQ(v1.at(at), 0) << k;
      v1.erase(v1.begin() + ptrdiff_t(at));
    }
    ASSERT_EQ(v1.size(), r.encode().size() - r.size());
    registry old;
    std::string why;
    ASSERT_TRUE(registry::decode(v1, &old, &why)) << why;
    EXPECT_EQ(old.encode(), r.encode());
  }
  auto moved = make_op(K::update, "cbe-birr");
  moved.rail = uint8_t(rail::bank);
  moved.currencies[0].settlement_account_id = 6002;
  ASSERT_EQ(r.apply(moved, 4), result::ok);  // 6000 and 6001 are former accounts now
  const auto bytes = r.encode();
  registry back;
  std::string why;
  ASSERT_TRUE(registry::decode(bytes, &back, &why)) << why;
  EXPECT_EQ(back.encode(), bytes);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_FALSE(back.find("cbe-birr")->enabled);
  EXPECT_EQ(back.find("cbe-birr")->currencies.size(), 1u);
  EXPECT_EQ(back.find("cbe-birr")->former_accounts, (std::vector<uint64_t>{6000, 6001}));
  // Former accounts that apply could never leave: each refused, naming the fault.
  {
    const size_t nf = former_count_at(r, 1);
    ASSERT_EQ(bytes.at(nf), 2);
    auto refused = [&](size_t at, uint64_t value, const char* says) {
      auto dmg = bytes;
      std::memcpy(dmg.data() + at, &value, sizeof value);
      registry x;
      std::string w;
      EXPECT_FALSE(registry::decode(dmg, &x, &w)) << says;
      EXPECT_NE(w.find(says), std::string::npos) << w;
    };
    refused(nf + 1, 0, "former settlement account invalid or repeated");
    refused(nf + 9, 6000, "former settlement account invalid or repeated");  // twice
    refused(nf + 1, 6002, "former settlement account invalid or repeated");  // its own current one
    refused(nf + 1, 5000, "former settlement account invalid or repeated");  // telebirr's
    auto many = bytes;
    many[nf] = uint8_t(settlement_accounts_named_max);  // with its current one, 65
    registry x;
    std::string w;
    EXPECT_FALSE(registry::decode(many, &x, &w));
    EXPECT_NE(w.find("former settlement account count out of range"), std::string::npos) << w;
  }

  // Every truncation is refused.
  for (size_t n = 0; n < bytes.size(); ++n) {
    registry x;
    EXPECT_FALSE(registry::decode({bytes.data(), n}, &x, &why)) << n;
  }
  // Random byte flips: refused, or decoded into a registry that encodes to those bytes.
  const uint64_t seed = test::test_seed("gateway_registry byte flips");
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 2000; ++i) {
    auto dmg = bytes;
    dmg[rng() % dmg.size()] ^= uint8_t(1 + rng() % 255);
    registry x;
    if (registry::decode(dmg, &x, &why)) {
      EXPECT_EQ(x.encode(), dmg) << "seed " << seed;
    }
  }
  auto trailing = bytes;
  trailing.push_back(0);
  registry x;
  EXPECT_FALSE(registry::decode(trailing, &x, &why));
  EXPECT_NE(why.find("trailing"), std::string::npos) << why;
}

}  // namespace
}  // namespace mesob::actors::gateways
