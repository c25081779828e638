// Customers' rules (actors/customers.hpp): the limit arithmetic, the day's outflow, and
// the byte forms of the policy and of a customer, with damage refused.
#include <gtest/gtest.h>

#include <algorithm>

#include "actors/customers.hpp"

using namespace mesob;
using namespace mesob::actors::customers;
using wire::result;

namespace {
constexpr uint64_t day = ns_per_day;
constexpr uint64_t t0 = 20'000 * day + 5;

wire::policy_op tier_op(uint8_t n, uint64_t single, uint64_t daily, uint64_t balance) {
  return actors::customers::tier_op(n, wire::currency("ETB"), single, daily, balance);
}
}  // namespace

TEST(Customers, DebitLimitsAndTheDaysOutflow) {
  customer c;
  c.wallet = 1;
  const tier_limits l{100, 250, 1000};
  EXPECT_EQ(check_debit(c, l, 101, t0), result::exceeds_transfer_limit);
  EXPECT_EQ(check_debit(c, l, 100, t0), result::ok);
  add_outflow(c, 100, t0);
  add_outflow(c, 100, t0 + 1);
  EXPECT_EQ(check_debit(c, l, 51, t0 + 2), result::exceeds_daily_outflow);
  EXPECT_EQ(check_debit(c, l, 50, t0 + 2), result::ok);
  EXPECT_EQ(c.outflow_on(t0 + 2), 200u);
  EXPECT_EQ(c.outflow_on(t0 + day), 0u) << "a new UTC day";
  EXPECT_EQ(check_debit(c, l, 100, t0 + day), result::ok);
  add_outflow(c, 100, t0 + day);
  EXPECT_EQ(c.outflow, 100u);
  add_outflow(c, UINT64_MAX, t0 + day);  // saturates, never wraps
  EXPECT_EQ(c.outflow, UINT64_MAX);
  EXPECT_EQ(check_debit(c, l, 1, t0 + day), result::exceeds_daily_outflow);
}

TEST(Customers, CreditLimitCountsHoldsIn) {
  wire::account a;
  a.credits_posted = 900;
  a.debits_posted = 100;
  a.credits_pending = 150;
  const tier_limits l{1, 1, 1000};
  EXPECT_EQ(check_credit(a, l, 50), result::ok);  // 900 + 150 + 50 - 100 = 1,000
  EXPECT_EQ(check_credit(a, l, 51), result::exceeds_balance_limit);
  a.credits_posted = UINT64_MAX;
  a.credits_pending = UINT64_MAX;
  EXPECT_EQ(check_credit(a, l, UINT64_MAX), result::exceeds_balance_limit) << "no overflow";
}

TEST(Customers, PolicyRulesAndBytes) {
  policy p;
  bool repeated = false;
  EXPECT_EQ(p.apply(tier_op(0, 1, 1, 1), &repeated), result::policy_op_invalid);
  EXPECT_EQ(p.apply(tier_op(17, 1, 1, 1), &repeated), result::policy_op_invalid);
  EXPECT_EQ(p.apply(tier_op(1, 1, 0, 1), &repeated), result::policy_op_invalid);
  auto bad_currency = tier_op(1, 1, 1, 1);
  bad_currency.currency = 7;
  EXPECT_EQ(p.apply(bad_currency, &repeated), result::currency_invalid);
  EXPECT_EQ(p.apply(tier_op(1, 10, 20, 30), &repeated), result::ok);
  EXPECT_FALSE(repeated);
  EXPECT_EQ(p.apply(tier_op(1, 10, 20, 30), &repeated), result::ok);
  EXPECT_TRUE(repeated);
  EXPECT_EQ(p.apply(tier_op(1, 10, 20, 31), &repeated), result::ok);
  EXPECT_FALSE(repeated);
  EXPECT_EQ(p.tier(1, wire::currency("ETB"))->balance_max, 31u);
  EXPECT_EQ(p.tier(1, wire::currency("USD")), nullptr);
  wire::policy_op prof;
  prof.kind = wire::policy_op_kind::profile;
  prof.number = 3;
  prof.classes = 0xf;
  prof.position_max = 99;
  EXPECT_EQ(p.apply(prof, &repeated), result::ok);
  prof.currency = wire::currency("ETB");
  EXPECT_EQ(p.apply(prof, &repeated), result::policy_op_invalid) << "a profile has no currency";
  EXPECT_EQ(p.profile(2), nullptr);
  ASSERT_NE(p.profile(3), nullptr);
  // Models: weights per instrument, at most 100% in all; 0 takes one out.
  const auto model = actors::customers::model_op;
  EXPECT_EQ(p.apply(model(3, 5, 6000), &repeated), result::ok);
  EXPECT_EQ(p.apply(model(3, 6, 4000), &repeated), result::ok);
  EXPECT_EQ(p.apply(model(3, 7, 1), &repeated), result::policy_op_invalid) << "over 100%";
  EXPECT_EQ(p.apply(model(3, 0, 1), &repeated), result::policy_op_invalid) << "no instrument";
  EXPECT_EQ(p.apply(model(3, 7, 10'001), &repeated), result::policy_op_invalid);
  EXPECT_EQ(p.apply(model(3, 6, 3000), &repeated), result::ok);
  EXPECT_EQ(p.apply(model(3, 7, 1000), &repeated), result::ok);
  EXPECT_EQ(p.apply(model(3, 7, 0), &repeated), result::ok);
  EXPECT_EQ(p.apply(model(3, 7, 0), &repeated), result::ok);
  EXPECT_TRUE(repeated);
  EXPECT_EQ(p.model(3), (actors::customers::model_weights{{5, 6000}, {6, 3000}}));
  EXPECT_TRUE(p.model(1).empty());
  const auto bytes = p.encode();
  policy back;
  std::string why;
  ASSERT_TRUE(policy::decode(bytes, &back, &why)) << why;
  EXPECT_EQ(back.encode(), bytes);
  EXPECT_EQ(back.model(3), p.model(3));
  // One weight an instrument, in order: instrument 6's weight made instrument 5's again,
  // or 4's, is refused (before, the second replaced the first).
  for (const uint64_t other : {5, 4}) {
    auto bad = bytes;
    const uint8_t six[12] = {6, 0, 0, 0, 0, 0, 0, 0, 0xB8, 0x0B, 0, 0};  // 6, then 3000
    const auto at = std::search(bad.begin(), bad.end(), std::begin(six), std::end(six));
    ASSERT_NE(at, bad.end());
    *at = uint8_t(other);
    EXPECT_FALSE(policy::decode(bad, &back, &why)) << other;
    EXPECT_NE(why.find("model weight 1 is damaged"), std::string::npos) << why;
  }
  for (size_t cut = 0; cut < bytes.size(); ++cut) EXPECT_FALSE(policy::decode(std::span(bytes).first(cut), &back, &why));
  auto twice = p;
  EXPECT_EQ(twice.apply(tier_op(2, 1, 1, 1), &repeated), result::ok);
  auto b2 = twice.encode();
  std::memcpy(b2.data() + 10 + 29, b2.data() + 10, 5);  // the second row's key made the first's
  EXPECT_FALSE(policy::decode(b2, &back, &why));
}

TEST(Customers, CustomerBytesAndTheClock) {
  customer c;
  c.wallet = 77;
  c.reference = 5;
  c.updated_at = t0;
  c.outflow = 40;
  c.day = uint32_t(t0 / day);
  c.sequence = 3;
  c.kyc = wire::kyc_status::verified;
  c.profile = wire::risk_profile::moderate;
  c.tier = 4;
  const auto bytes = table::encode(c);
  customer back;
  std::string why;
  ASSERT_TRUE(table::decode(bytes, t0, &back, &why)) << why;
  EXPECT_EQ(table::encode(back), bytes);
  // Rows of versions 1 and 2 (one layout, before the resequenced byte) still read: a
  // snapshot holding version 1 rows used to stop start-up. Versions 0 and 4 do not.
  for (const uint16_t v : {uint16_t(1), uint16_t(2), uint16_t(0), uint16_t(4)}) {
    auto old = bytes;
    std::memcpy(old.data() + 4, &v, sizeof v);
    if (v == 1 || v == 2) old.pop_back();  // no resequenced byte
    customer got;
    EXPECT_EQ(table::decode(old, t0, &got, &why), v == 1 || v == 2) << v << ": " << why;
    if (v == 1 || v == 2) {
      EXPECT_EQ(table::encode(got), bytes);
    }
  }
  auto flagged = c;
  flagged.resequenced = true;
  ASSERT_TRUE(table::decode(table::encode(flagged), t0, &back, &why)) << why;
  EXPECT_TRUE(back.resequenced);
  auto two = table::encode(flagged);
  two.back() = 2;  // a flag is 0 or 1
  EXPECT_FALSE(table::decode(two, t0, &back, &why));
  EXPECT_FALSE(table::decode(bytes, t0 - 1, &back, &why)) << "a time past the snapshot's clock";
  // Day 0 is a day like any other (a clock that starts at the epoch): its outflow reads.
  auto first_day = c;
  first_day.updated_at = 5 * 1'000'000'000ull;
  first_day.day = 0;
  ASSERT_TRUE(table::decode(table::encode(first_day), first_day.updated_at, &back, &why)) << why;
  EXPECT_EQ(back.outflow, 40u);
  for (size_t cut = 0; cut < bytes.size(); ++cut)
    EXPECT_FALSE(table::decode(std::span(bytes).first(cut), t0, &back, &why));
  auto bad = c;
  bad.tier = 0;
  EXPECT_FALSE(table::decode(table::encode(bad), t0, &back, &why));
  bad = c;
  bad.kyc = wire::kyc_status(9);
  EXPECT_FALSE(table::decode(table::encode(bad), t0, &back, &why));
  auto resequenced = c;  // an operator's resequence to 0 (any record next) is a valid state
  resequenced.sequence = 0;
  ASSERT_TRUE(table::decode(table::encode(resequenced), t0, &back, &why)) << why;
  EXPECT_EQ(table::encode(back), table::encode(resequenced));
}

TEST(Customers, DirtyRowsOncePerCut) {
  table t;
  t.at(1).tier = 1;
  t.at(1).kyc = wire::kyc_status::none;
  t.at(1).profile = wire::risk_profile::conservative;
  t.at(1).sequence = 1;
  t.at(1).updated_at = t0;
  t.mark_dirty(1);
  t.mark_dirty(1);
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> rows;
  t.take_dirty(&rows);
  ASSERT_EQ(rows.size(), 1u);
  rows.clear();
  t.take_dirty(&rows);
  EXPECT_TRUE(rows.empty());
}
