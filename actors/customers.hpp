// customers: who may hold what. A customer is a customer wallet account with a KYC
// record: its KYC status (none, pending, verified, rejected) and tier, set by a gateway
// with the kyc role, and its risk profile. The customer's id is its wallet's.
//
// The policy (operators', through the admin port) says what tiers and profiles mean:
//   - a tier (1..16) has, per currency, the largest single transfer out of a wallet, the
//     most it may send out per UTC day of the engine clock, and the largest balance it
//     may hold. The ledger enforces them on every transfer that debits or credits a
//     wallet with a tier (wire::account::tier, set with the customer): a transfer out
//     over single_max is refused (exceeds_transfer_limit), and so is one that would take
//     the day's outflow past daily_outflow_max (exceeds_daily_outflow); one in that
//     would take the balance (credits posted and pending less debits posted) past
//     balance_max is refused (exceeds_balance_limit). Holds count when they are made, in
//     both directions; a void or an expiry gives nothing back to the day's outflow (the
//     cautious reading: a hold made and voided many times still spends the day's room).
//     A sell order's hold (its least proceeds, at its limit) counts toward balance_max at
//     what the sell may fetch at the highest price a fill may have then (the move band's
//     top) when that is higher, with the wallet's open sells' the same way and the
//     improvements of its fills not settled yet (rules version 53,
//     trading::table::sell_balance_credit): its fills' price improvements are the
//     engine's transfers, unchecked, so a limit far below the market no longer passes the
//     check with almost nothing. Prices moving up while a sell is open can still take the
//     balance past it.
//     The checks come after the ledger's own: a transfer the ledger refuses keeps its code.
//     (An order's hold is the exception: the order's verdicts, the tier's among them,
//     come before the ledger's checks of its hold, so a hold both would refuse gets the
//     tier's code.)
//     A wallet with no KYC record has no tier and so no limit, and a record's status does
//     not change its tier's limits (only orders read the status): a platform that wants
//     every wallet limited gives each a record, pending with the lowest tier, when it
//     opens it. A hold made before the wallet had a tier is posted without a check.
//     Transfers the engine emits (an equb group's payouts, refunds, dividends and the
//     holds of its gateway payouts; a payout desk's posts, voids and sweeps) are not
//     checked: they carry what operations already taken decided (a member joined the
//     group under its tier), and refusing them would strand money in escrow. One of them
//     counts in the day's outflow all the same (from batch records of version 8): an
//     equb guarantor's cover, money that leaves a wallet the group only named, so that
//     wallet's own transfers meet its limit. Deposits from gateways are checked like any
//     transfer in. A member's payment of what its equb seat owes (any equb payment but a
//     join: a round's due, with a late penalty and its debts when it has them, or its
//     debts after the group ended) is not checked either, from rules version 44
//     (rules_equb_dues_past_limits), and counts in the day's outflow: the join took the
//     obligation on under the tier, and the payment is one exact amount that cannot be
//     split, so a refusal left the seat late for good (a late payment, due and penalty,
//     is past a single limit set at the contribution), a held round open, and the debts'
//     creditors unpaid;
//   - a profile (conservative, moderate, aggressive) has the asset classes it allows
//     and the largest position per instrument (minor units); orders read them. It may
//     have a model portfolio: target weights per instrument that rebalancing aims at.
// A change of policy applies from its place in the log on.
//
// Placement: customer records live on their wallet's shard (like accounts), so the
// debit side's outflow is read and changed where the wallet is; each side's verdict
// travels in the sync slot of a cross-shard transfer like an equb group's. Every shard
// keeps its own copy of the policy, applied in log order (every shard receives every
// policy batch), so each side's check reads the policy as of the transfer's place.
//
// Ownership: one table and one policy copy per shard, touched only by its thread.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "actors/flat_map.hpp"
#include "actors/rules_version.hpp"
#include "wire/types.hpp"

namespace mesob::actors::customers {

constexpr uint8_t tiers_max = 16;
constexpr size_t tier_rows_max = size_t(tiers_max) * 64;  // (tier, currency) rows in all, whatever the tiers
constexpr uint64_t ns_per_day = 86'400'000'000'000ull;

struct tier_limits {
  uint64_t single_max = 0;
  uint64_t daily_outflow_max = 0;
  uint64_t balance_max = 0;
};
struct profile_rules {
  uint8_t classes = 0;  // 0: not defined
  uint64_t position_max = 0;
};
constexpr size_t model_instruments_max = 64;  // per profile
constexpr uint32_t model_weight_total_max = 10'000;  // basis points
// A model portfolio: instrument id -> weight (basis points), in instrument order.
using model_weights = std::map<uint64_t, uint32_t>;

// Field checks (no state).
[[nodiscard]] wire::result check_policy_fields(const wire::policy_op& op);
// A tier's limits in a currency, as a policy operation.
[[nodiscard]] wire::policy_op tier_op(uint8_t number, wire::currency_code currency, uint64_t single_max,
                                      uint64_t daily_outflow_max, uint64_t balance_max);
// A profile's model weight of an instrument (basis points; 0 takes it out), as a policy
// operation (the instrument rides in single_max, the weight in daily_outflow_max).
[[nodiscard]] wire::policy_op model_op(uint8_t profile, uint64_t instrument, uint64_t weight_bp);
// A verified customer's KYC record of `wallet` at `tier`, as a kyc gateway sends it.
[[nodiscard]] wire::customer_op verified_op(uint64_t wallet, uint8_t tier, wire::risk_profile profile,
                                            uint64_t sequence = 1, uint64_t reference = 0);
// A customer op's own fields, by the rules of `rules` (a resequence from version 9).
[[nodiscard]] wire::result check_customer_fields(const wire::customer_op& op, uint16_t rules = rules_newest);

class policy {
 public:
  // Applies op; `repeated` when it changes nothing.
  wire::result apply(const wire::policy_op& op, bool* repeated);
  [[nodiscard]] const tier_limits* tier(uint8_t number, wire::currency_code c) const;
  [[nodiscard]] const profile_rules* profile(uint8_t p) const;
  // Profile p's model portfolio (empty: none).
  [[nodiscard]] const model_weights& model(uint8_t p) const;
  [[nodiscard]] bool empty() const { return tiers_.empty() && profiles_used_ == 0 && models_used_ == 0; }
  template <class F>
  void for_each_tier(F&& f) const {
    for (const auto& [k, l] : tiers_) f(k.first, k.second, l);
  }
  // Snapshot byte form (version 2, with the models; version 1 has none); decode refuses
  // damage it can see.
  [[nodiscard]] std::vector<uint8_t> encode() const;
  static bool decode(std::span<const uint8_t> bytes, policy* out, std::string* why);

 private:
  std::map<std::pair<uint8_t, wire::currency_code>, tier_limits> tiers_;
  profile_rules profiles_[wire::risk_profile_max + 1] = {};
  uint8_t profiles_used_ = 0;
  model_weights models_[wire::risk_profile_max + 1];
  size_t models_used_ = 0;  // weights set, over every profile
};

struct customer {
  uint64_t wallet = 0;
  uint64_t reference = 0;
  uint64_t updated_at = 0;
  uint64_t outflow = 0;  // sent out on `day`
  uint64_t sequence = 0;  // the last KYC record's (customer_op::sequence), or an operator's resequence
  uint32_t day = 0;      // engine time / ns_per_day
  wire::kyc_status kyc{};
  wire::risk_profile profile{};
  uint8_t tier = 0;
  // `sequence` is an operator's resequence: no record was taken at it (a record there is
  // out of order, not a repeat of the kept one).
  bool resequenced = false;
  [[nodiscard]] uint64_t outflow_on(uint64_t t) const { return day == t / ns_per_day ? outflow : 0; }
  [[nodiscard]] wire::customer_state view(uint64_t t) const;
};

// The limit checks (after the ledger's own) and the outflow they keep.
[[nodiscard]] wire::result check_debit(const customer& c, const tier_limits& l, uint64_t amount, uint64_t t);
[[nodiscard]] wire::result check_credit(const wire::account& a, const tier_limits& l, uint64_t amount);
void add_outflow(customer& c, uint64_t amount, uint64_t t);

// A shard's customers, by wallet id, and which changed since the last cut.
class table {
 public:
  [[nodiscard]] customer* find(uint64_t wallet);
  [[nodiscard]] const customer* find(uint64_t wallet) const;
  // The record for `wallet`, made empty if absent.
  customer& at(uint64_t wallet);
  void mark_dirty(uint64_t wallet);
  // The rows changed since the last call, encoded (wallet, bytes), for a cut.
  void take_dirty(std::vector<std::pair<uint64_t, std::vector<uint8_t>>>* out);
  void load(const customer& c) { by_wallet_[c.wallet] = c; }
  [[nodiscard]] size_t size() const { return by_wallet_.size(); }
  [[nodiscard]] size_t memory_bytes() const { return by_wallet_.size() * (sizeof(customer) + 32) + dirty_.capacity() * 8; }
  // Snapshot byte form of one customer (version 3; versions 1 and 2 are read too).
  [[nodiscard]] static std::vector<uint8_t> encode(const customer& c);
  // `clock`: the snapshot's engine clock, which no time in the record may pass.
  static bool decode(std::span<const uint8_t> bytes, uint64_t clock, customer* out, std::string* why);

 private:
  std::unordered_map<uint64_t, customer, seeded_u64_hash> by_wallet_;
  std::vector<uint64_t> dirty_;
  std::unordered_set<uint64_t, seeded_u64_hash> dirty_set_;
};

}  // namespace mesob::actors::customers
