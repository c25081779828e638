#include "actors/customers.hpp"

#include "actors/byte_codec.hpp"

#include <algorithm>
#include <cstring>

namespace mesob::actors::customers {

using wire::result;

namespace {
constexpr uint32_t policy_magic = 0x504F4C31;    // "POL1"
constexpr uint32_t customer_magic = 0x43555331;  // "CUS1"
constexpr uint16_t format_version = 2;  // the policy's; 2: the models
// Customer rows: versions 1 and 2 have one layout (builds since the policy's version 2
// wrote them as version 2, the constant was shared; older ones as 1); version 3 adds the
// `resequenced` byte. All three read.
constexpr uint16_t customer_version = 3;
constexpr uint8_t classes_all = (1u << wire::asset_class_max) - 1;
}  // namespace

wire::policy_op tier_op(uint8_t number, wire::currency_code currency, uint64_t single_max, uint64_t daily_outflow_max,
                        uint64_t balance_max) {
  wire::policy_op p;
  p.kind = wire::policy_op_kind::tier;
  p.number = number;
  p.currency = currency;
  p.single_max = single_max;
  p.daily_outflow_max = daily_outflow_max;
  p.balance_max = balance_max;
  return p;
}

wire::policy_op model_op(uint8_t profile, uint64_t instrument, uint64_t weight_bp) {
  wire::policy_op p;
  p.kind = wire::policy_op_kind::model;
  p.number = profile;
  p.single_max = instrument;
  p.daily_outflow_max = weight_bp;
  return p;
}

wire::customer_op verified_op(uint64_t wallet, uint8_t tier, wire::risk_profile profile, uint64_t sequence,
                              uint64_t reference) {
  wire::customer_op c;
  c.wallet = wallet;
  c.sequence = sequence;
  c.kyc = wire::kyc_status::verified;
  c.profile = profile;
  c.tier = tier;
  c.reference = reference;
  return c;
}

result check_policy_fields(const wire::policy_op& op) {
  if (op.reserved != 0 || op.reserved2 != 0) return result::reserved_field;
  if (op.kind == wire::policy_op_kind::tier) {
    if (op.number == 0 || op.number > tiers_max || op.classes != 0 || op.position_max != 0 ||
        op.single_max == 0 || op.daily_outflow_max == 0 || op.balance_max == 0)
      return result::policy_op_invalid;
    if (!wire::currency_valid(op.currency)) return result::currency_invalid;
    return result::ok;
  }
  if (op.kind == wire::policy_op_kind::profile) {
    if (op.number == 0 || op.number > wire::risk_profile_max || op.classes == 0 || (op.classes & ~classes_all) ||
        op.position_max == 0 || op.currency != 0 || op.single_max != 0 || op.daily_outflow_max != 0 ||
        op.balance_max != 0)
      return result::policy_op_invalid;
    return result::ok;
  }
  if (op.kind == wire::policy_op_kind::model) {
    if (op.number == 0 || op.number > wire::risk_profile_max || op.classes != 0 || op.currency != 0 ||
        op.single_max == 0 || op.daily_outflow_max > model_weight_total_max || op.balance_max != 0 ||
        op.position_max != 0)
      return result::policy_op_invalid;
    return result::ok;
  }
  return result::policy_op_invalid;
}

result check_customer_fields(const wire::customer_op& op, uint16_t rules) {
  if (op.wallet == 0) return result::id_must_not_be_zero;
  if (op.kind == wire::customer_op_kind::resequence && rules >= rules_customer_resequence) {
    wire::customer_op bare;
    bare.wallet = op.wallet;
    bare.kind = op.kind;
    bare.sequence = op.sequence;
    return std::memcmp(&bare, &op, sizeof op) == 0 ? result::ok : result::customer_op_invalid;
  }
  if (op.kind != wire::customer_op_kind::record)  // before rules 9 the byte was reserved
    return rules >= rules_customer_resequence ? result::customer_op_invalid : result::reserved_field;
  if (op.reserved2 != 0) return result::reserved_field;
  if (op.sequence == 0) return result::id_must_not_be_zero;
  if (uint8_t(op.kyc) == 0 || uint8_t(op.kyc) > wire::kyc_status_max) return result::kyc_status_invalid;
  if (uint8_t(op.profile) == 0 || uint8_t(op.profile) > wire::risk_profile_max) return result::risk_profile_invalid;
  if (op.tier == 0 || op.tier > tiers_max) return result::tier_undefined;
  return result::ok;
}

result policy::apply(const wire::policy_op& op, bool* repeated) {
  *repeated = false;
  if (const result r = check_policy_fields(op); r != result::ok) return r;
  if (op.kind == wire::policy_op_kind::tier) {
    const auto key = std::make_pair(op.number, op.currency);
    const tier_limits l{op.single_max, op.daily_outflow_max, op.balance_max};
    auto it = tiers_.find(key);
    if (it != tiers_.end()) {
      *repeated = it->second.single_max == l.single_max && it->second.daily_outflow_max == l.daily_outflow_max &&
                  it->second.balance_max == l.balance_max;
      it->second = l;
      return result::ok;
    }
    if (tiers_.size() >= tier_rows_max) return result::policy_op_invalid;
    tiers_.emplace(key, l);
    return result::ok;
  }
  if (op.kind == wire::policy_op_kind::model) {
    model_weights& m = models_[op.number];
    const uint64_t instrument = op.single_max;
    const auto weight = uint32_t(op.daily_outflow_max);
    const auto it = m.find(instrument);
    const uint32_t before = it == m.end() ? 0 : it->second;
    *repeated = before == weight;
    if (*repeated) return result::ok;
    uint64_t total = 0;
    for (const auto& [i, w] : m) total += w;
    if (total - before + weight > model_weight_total_max) return result::policy_op_invalid;  // over 100%
    if (weight == 0) {
      m.erase(it);
      --models_used_;
      return result::ok;
    }
    if (it == m.end()) {
      if (m.size() >= model_instruments_max) return result::policy_op_invalid;
      m.emplace(instrument, weight);
      ++models_used_;
      return result::ok;
    }
    it->second = weight;
    return result::ok;
  }
  profile_rules& p = profiles_[op.number];
  *repeated = p.classes == op.classes && p.position_max == op.position_max;
  if (p.classes == 0) ++profiles_used_;
  p = {op.classes, op.position_max};
  return result::ok;
}

const tier_limits* policy::tier(uint8_t number, wire::currency_code c) const {
  auto it = tiers_.find({number, c});
  return it == tiers_.end() ? nullptr : &it->second;
}

const model_weights& policy::model(uint8_t p) const {
  static const model_weights none;
  return p >= 1 && p <= wire::risk_profile_max ? models_[p] : none;
}

const profile_rules* policy::profile(uint8_t p) const {
  return p >= 1 && p <= wire::risk_profile_max && profiles_[p].classes != 0 ? &profiles_[p] : nullptr;
}

std::vector<uint8_t> policy::encode() const {
  byte_writer w;
  w.put(policy_magic);
  w.put(format_version);
  w.put(uint32_t(tiers_.size()));
  for (const auto& [k, l] : tiers_) {
    w.put(k.first);
    w.put(k.second);
    w.put(l.single_max);
    w.put(l.daily_outflow_max);
    w.put(l.balance_max);
  }
  for (uint8_t p = 1; p <= wire::risk_profile_max; ++p) {
    w.put(profiles_[p].classes);
    w.put(profiles_[p].position_max);
  }
  for (uint8_t p = 1; p <= wire::risk_profile_max; ++p) {
    w.put(uint32_t(models_[p].size()));
    for (const auto& [i, weight] : models_[p]) {
      w.put(i);
      w.put(weight);
    }
  }
  return std::move(w.out);
}

bool policy::decode(std::span<const uint8_t> bytes, policy* out, std::string* why) {
  byte_reader r{bytes};
  const uint32_t magic = r.get<uint32_t>();
  const uint16_t version = r.get<uint16_t>();
  const uint32_t n = r.get<uint32_t>();
  if (r.short_read || magic != policy_magic || version < 1 || version > format_version)
    return *why = "policy: not a policy record of version 1 or 2", false;
  if (n > tier_rows_max) return *why = "policy: " + std::to_string(n) + " tier rows, over the limit", false;
  policy p;
  for (uint32_t i = 0; i < n; ++i) {
    wire::policy_op op;
    op.kind = wire::policy_op_kind::tier;
    op.number = r.get<uint8_t>();
    op.currency = r.get<wire::currency_code>();
    op.single_max = r.get<uint64_t>();
    op.daily_outflow_max = r.get<uint64_t>();
    op.balance_max = r.get<uint64_t>();
    bool repeated = false;
    if (r.short_read || p.apply(op, &repeated) != result::ok || p.tiers_.size() != i + 1)
      return *why = "policy: tier row " + std::to_string(i) + " is damaged or repeated", false;
  }
  for (uint8_t k = 1; k <= wire::risk_profile_max; ++k) {
    wire::policy_op op;
    op.kind = wire::policy_op_kind::profile;
    op.number = k;
    op.classes = r.get<uint8_t>();
    op.position_max = r.get<uint64_t>();
    if (r.short_read) return *why = "policy: the record is cut short", false;
    if (op.classes == 0 && op.position_max == 0) continue;
    bool repeated = false;
    if (p.apply(op, &repeated) != result::ok) return *why = "policy: profile " + std::to_string(k) + " is damaged", false;
  }
  for (uint8_t k = 1; version >= 2 && k <= wire::risk_profile_max; ++k) {
    const uint32_t weights = r.get<uint32_t>();
    if (r.short_read || weights > model_instruments_max)
      return *why = "policy: profile " + std::to_string(k) + "'s model is damaged", false;
    uint64_t last = 0;  // written in instrument order: one weight an instrument
    for (uint32_t i = 0; i < weights; ++i) {
      wire::policy_op op;
      op.kind = wire::policy_op_kind::model;
      op.number = k;
      op.single_max = r.get<uint64_t>();
      op.daily_outflow_max = r.get<uint32_t>();
      const bool in_order = op.single_max > last;
      last = op.single_max;
      bool repeated = false;
      if (r.short_read || !in_order || op.daily_outflow_max == 0 || p.apply(op, &repeated) != result::ok || repeated)
        return *why = "policy: profile " + std::to_string(k) + "'s model weight " + std::to_string(i) + " is damaged", false;
    }
  }
  if (r.at != bytes.size()) return *why = "policy: bytes after the record", false;
  *out = std::move(p);
  return true;
}

wire::customer_state customer::view(uint64_t t) const {
  wire::customer_state v;
  v.wallet = wallet;
  v.reference = reference;
  v.updated_at = updated_at;
  v.outflow_today = outflow_on(t);
  v.sequence = sequence;
  v.kyc = kyc;
  v.profile = profile;
  v.tier = tier;
  return v;
}

result check_debit(const customer& c, const tier_limits& l, uint64_t amount, uint64_t t) {
  if (amount > l.single_max) return result::exceeds_transfer_limit;
  const uint64_t today = c.outflow_on(t);
  if (today > l.daily_outflow_max || amount > l.daily_outflow_max - today) return result::exceeds_daily_outflow;
  return result::ok;
}

result check_credit(const wire::account& a, const tier_limits& l, uint64_t amount) {
  using u128 = unsigned __int128;
  const u128 in = u128(a.credits_posted) + a.credits_pending + amount;
  const u128 balance = in > a.debits_posted ? in - a.debits_posted : 0;
  return balance > l.balance_max ? result::exceeds_balance_limit : result::ok;
}

void add_outflow(customer& c, uint64_t amount, uint64_t t) {
  const uint32_t d = uint32_t(t / ns_per_day);
  if (c.day != d) {
    c.day = d;
    c.outflow = 0;
  }
  c.outflow = amount > UINT64_MAX - c.outflow ? UINT64_MAX : c.outflow + amount;
}

customer* table::find(uint64_t wallet) {
  auto it = by_wallet_.find(wallet);
  return it == by_wallet_.end() ? nullptr : &it->second;
}

const customer* table::find(uint64_t wallet) const {
  auto it = by_wallet_.find(wallet);
  return it == by_wallet_.end() ? nullptr : &it->second;
}

customer& table::at(uint64_t wallet) {
  customer& c = by_wallet_[wallet];
  c.wallet = wallet;
  return c;
}

void table::mark_dirty(uint64_t wallet) {
  if (dirty_set_.insert(wallet).second) dirty_.push_back(wallet);
}

void table::take_dirty(std::vector<std::pair<uint64_t, std::vector<uint8_t>>>* out) {
  for (const uint64_t w : dirty_)
    if (const customer* c = find(w)) out->emplace_back(w, encode(*c));
  dirty_.clear();
  dirty_set_.clear();
}

std::vector<uint8_t> table::encode(const customer& c) {
  byte_writer w;
  w.put(customer_magic);
  w.put(customer_version);
  for (uint64_t v : {c.wallet, c.reference, c.updated_at, c.outflow, c.sequence}) w.put(v);
  w.put(c.day);
  w.put(uint8_t(c.kyc));
  w.put(uint8_t(c.profile));
  w.put(c.tier);
  w.put(uint8_t(c.resequenced));
  return std::move(w.out);
}

bool table::decode(std::span<const uint8_t> bytes, uint64_t clock, customer* out, std::string* why) {
  byte_reader r{bytes};
  const uint32_t magic = r.get<uint32_t>();
  const uint16_t version = r.get<uint16_t>();
  customer c;
  c.wallet = r.get<uint64_t>();
  c.reference = r.get<uint64_t>();
  c.updated_at = r.get<uint64_t>();
  c.outflow = r.get<uint64_t>();
  c.sequence = r.get<uint64_t>();
  c.day = r.get<uint32_t>();
  c.kyc = wire::kyc_status(r.get<uint8_t>());
  c.profile = wire::risk_profile(r.get<uint8_t>());
  c.tier = r.get<uint8_t>();
  const uint8_t resequenced = version >= 3 ? r.get<uint8_t>() : 0;
  if (r.short_read || magic != customer_magic || version < 1 || version > customer_version || r.at != bytes.size() ||
      resequenced > 1)
    return *why = "customer: not a customer record of version 1, 2 or 3", false;
  c.resequenced = resequenced == 1;
  wire::customer_op op;
  op.wallet = c.wallet;
  op.kyc = c.kyc;
  op.profile = c.profile;
  op.tier = c.tier;
  op.sequence = std::max<uint64_t>(c.sequence, 1);  // 0 after an operator's resequence
  if (check_customer_fields(op) != result::ok) return *why = "customer " + std::to_string(c.wallet) + ": bad fields", false;
  if (c.updated_at == 0 || c.updated_at > clock || uint64_t(c.day) > clock / ns_per_day)
    return *why = "customer " + std::to_string(c.wallet) + ": a time past the snapshot's clock", false;
  *out = c;
  return true;
}

}  // namespace mesob::actors::customers
