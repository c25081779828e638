#include "actors/gateway_registry.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "actors/byte_codec.hpp"
#include "wire/protocol.hpp"

namespace mesob::actors::gateways {

using wire::result;

std::string_view rail_name(uint8_t r) {
  switch (r) {
    case uint8_t(rail::mobile_money): return "mobile_money";
    case uint8_t(rail::card): return "card";
    case uint8_t(rail::bank): return "bank";
  }
  return "?";
}

bool parse_rail(std::string_view text, uint8_t* out) {
  for (uint8_t r = 1; r <= rail_max; ++r)
    if (text == rail_name(r)) {
      *out = r;
      return true;
    }
  return false;
}

bool id_text_valid(std::string_view id) {
  if (id.empty() || id.size() > sizeof(wire::gateway_op::id)) return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-'))
      return false;
  return true;
}

namespace {

bool all_zero(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != 0) return false;
  return true;
}

result check_currencies(const wire::gateway_op& op) {
  if (op.currencies_n == 0 || op.currencies_n > wire::gateway_currencies_max) return result::currencies_invalid;
  for (uint32_t i = 0; i < op.currencies_n; ++i) {
    const auto& c = op.currencies[i];
    if (c.reserved != 0) return result::reserved_field;
    if (!wire::currency_valid(c.currency) || c.settlement_account_id == 0) return result::currencies_invalid;
    for (uint32_t j = 0; j < i; ++j)
      if (op.currencies[j].currency == c.currency || op.currencies[j].settlement_account_id == c.settlement_account_id)
        return result::currencies_invalid;
  }
  if (!all_zero(op.currencies + op.currencies_n,
                sizeof(wire::gateway_currency) * (wire::gateway_currencies_max - op.currencies_n)))
    return result::gateway_op_invalid;
  return result::ok;
}

// Registered gateways never hold the admin role: admin identities come from the engine's
// config file, so a command on the admin port cannot mint another admin. The ledger role
// exists from rules_registered_ledger_role.
result check_roles(uint32_t roles, uint16_t rules) {
  const uint32_t known = rules >= rules_registered_ledger_role ? wire::roles::all : wire::roles::all & ~wire::roles::ledger;
  if (roles == 0 || (roles & ~known) || (roles & wire::roles::admin)) return result::roles_invalid;
  return result::ok;
}

}  // namespace

std::string op_id(const wire::gateway_op& op) {
  const size_t n = strnlen(op.id, sizeof op.id);
  if (!all_zero(op.id + n, sizeof op.id - n)) return {};
  std::string id(op.id, n);
  return id_text_valid(id) ? id : std::string{};
}

bool set_op_id(wire::gateway_op& op, std::string_view id) {
  if (id.size() > sizeof op.id) return false;
  std::memset(op.id, 0, sizeof op.id);
  std::memcpy(op.id, id.data(), id.size());
  return true;
}

result check_op_fields(const wire::gateway_op& op, uint16_t rules) {
  const auto k = uint16_t(op.kind);
  if (k == 0 || k > wire::gateway_op_kind_max) return result::gateway_op_invalid;
  if (op_id(op).empty()) return result::gateway_id_invalid;
  const bool has_secret = op.secret_bytes != 0 || !all_zero(op.secret, sizeof op.secret);
  if (op.reserved != 0) return result::reserved_field;
  const bool has_config = op.rail != 0 || op.priority != 0 || op.roles != 0 || op.currencies_n != 0 ||
                          op.answer_timeout_ms != 0 || !all_zero(op.currencies, sizeof op.currencies);
  auto check_secret = [&] {
    if (op.secret_bytes < secret_bytes_min || op.secret_bytes > wire::gateway_secret_max) return result::secret_invalid;
    if (!all_zero(op.secret + op.secret_bytes, sizeof op.secret - op.secret_bytes)) return result::gateway_op_invalid;
    return result::ok;
  };
  auto check_config = [&] {
    if (op.rail == 0 || op.rail > rail_max) return result::rail_invalid;
    if (const result r = check_roles(op.roles, rules); r != result::ok) return r;
    if (op.answer_timeout_ms < answer_timeout_ms_min || op.answer_timeout_ms > answer_timeout_ms_max)
      return result::answer_timeout_invalid;
    return check_currencies(op);
  };
  switch (op.kind) {
    case wire::gateway_op_kind::register_gateway: {
      if (const result r = check_config(); r != result::ok) return r;
      return check_secret();
    }
    case wire::gateway_op_kind::update:
      if (has_secret) return result::gateway_op_invalid;
      return check_config();
    case wire::gateway_op_kind::rotate_secret:
      if (has_config) return result::gateway_op_invalid;
      return check_secret();
    case wire::gateway_op_kind::disable:
    case wire::gateway_op_kind::enable:
      if (has_secret || has_config) return result::gateway_op_invalid;
      return result::ok;
  }
  return result::gateway_op_invalid;
}

const gateway* registry::find(std::string_view id) const {
  const auto it = by_id_.find(std::string(id));
  return it == by_id_.end() ? nullptr : &by_number_[it->second - 1];
}

const gateway* registry::find(uint32_t number) const {
  return number == 0 || number > by_number_.size() ? nullptr : &by_number_[number - 1];
}

void registry::index(uint32_t number) { by_id_[by_number_[number - 1].id] = number; }

bool registry::account_taken(uint64_t account_id, uint32_t except_number, bool formers) const {
  for (const auto& g : by_number_) {
    if (g.number == except_number) continue;
    for (const auto& c : g.currencies)
      if (c.settlement_account_id == account_id) return true;
    if (formers && std::find(g.former_accounts.begin(), g.former_accounts.end(), account_id) != g.former_accounts.end())
      return true;
  }
  return false;
}

namespace {

bool names(const wire::gateway_op& op, uint64_t account_id) {
  for (uint32_t i = 0; i < op.currencies_n; ++i)
    if (op.currencies[i].settlement_account_id == account_id) return true;
  return false;
}

// g's former accounts after `op` replaced its currencies: those it had, less those op
// names again, then those op drops, oldest first.
std::vector<uint64_t> formers_after(const gateway& g, const wire::gateway_op& op) {
  std::vector<uint64_t> out;
  for (const uint64_t a : g.former_accounts)
    if (!names(op, a)) out.push_back(a);
  for (const auto& c : g.currencies)
    if (!names(op, c.settlement_account_id)) out.push_back(c.settlement_account_id);
  return out;
}

}  // namespace

result registry::apply(const wire::gateway_op& op, uint64_t ts, uint16_t rules) {
  if (const result r = check_op_fields(op, rules); r != result::ok) return r;
  const std::string id = op_id(op);
  const gateway* found = find(id);
  const bool kept = rules >= rules_settlement_accounts_kept;
  auto set_config = [&](gateway& g) {
    g.rail = op.rail;
    g.priority = op.priority;
    g.roles = op.roles;
    g.answer_timeout_ms = op.answer_timeout_ms;
    g.currencies.assign(op.currencies, op.currencies + op.currencies_n);
    // Under older rules a gateway may name another's former account: it is no longer
    // anyone's former one, so every account stays one gateway's (decode checks it).
    // (Under the newer, accounts_free refused that already.)
    if (!kept)
      for (auto& other : by_number_)
        std::erase_if(other.former_accounts, [&](uint64_t a) { return names(op, a); });
  };
  auto accounts_free = [&](uint32_t number) {
    for (uint32_t i = 0; i < op.currencies_n; ++i)
      if (account_taken(op.currencies[i].settlement_account_id, number, kept)) return false;
    return true;
  };
  if (op.kind == wire::gateway_op_kind::register_gateway) {
    if (found) return result::gateway_exists;
    if (by_number_.size() >= gateways_max) return result::gateways_full;
    if (!accounts_free(0)) return result::settlement_account_in_use;
    gateway g;
    g.number = uint32_t(by_number_.size() + 1);
    g.id = id;
    set_config(g);
    g.secret.assign(op.secret, op.secret + op.secret_bytes);
    g.registered_at = g.changed_at = ts;
    by_number_.push_back(std::move(g));
    index(uint32_t(by_number_.size()));
    return result::ok;
  }
  if (!found) return result::gateway_not_found;
  gateway& g = by_number_[found->number - 1];
  switch (op.kind) {
    case wire::gateway_op_kind::update: {
      if (!accounts_free(g.number)) return result::settlement_account_in_use;
      // The history starts with the rules that keep it: under older ones an account
      // could move to another gateway, so what they released is no one's to keep (and
      // the registry after them is the log's alone, whichever snapshot a start loads).
      std::vector<uint64_t> formers;
      if (kept) {
        formers = formers_after(g, op);
        if (formers.size() + op.currencies_n > settlement_accounts_named_max)
          return result::settlement_accounts_exhausted;
      }
      set_config(g);
      if (kept) g.former_accounts = std::move(formers);
      break;
    }
    case wire::gateway_op_kind::rotate_secret:
      g.secret.assign(op.secret, op.secret + op.secret_bytes);
      g.secret_rotated_at = ts;
      break;
    case wire::gateway_op_kind::disable:
      g.enabled = false;
      g.disabled_at = ts;
      break;
    case wire::gateway_op_kind::enable: g.enabled = true; break;
    default: return result::gateway_op_invalid;
  }
  g.changed_at = ts;
  return result::ok;
}

result registry::deposit_transfer(std::string_view gateway_id, const wire::deposit& d, wire::transfer* out) const {
  const gateway* g = find(gateway_id);
  if (!g) return result::gateway_not_registered;
  if (!g->enabled) return result::gateway_disabled;
  if (d.reference == 0) return result::id_must_not_be_zero;
  if (d.reserved != 0) return result::reserved_field;
  if (!wire::currency_valid(d.currency)) return result::currency_invalid;
  const wire::gateway_currency* gc = g->serves(d.currency);
  if (!gc) return result::gateway_currency_unserved;
  if (d.wallet == 0) return result::credit_account_id_must_not_be_zero;
  if (d.wallet == gc->settlement_account_id) return result::accounts_must_be_different;
  if (d.amount == 0) return result::amount_must_not_be_zero;
  *out = deposit_as_transfer(g->number, gc->settlement_account_id, d);
  return result::ok;
}

namespace {
// 2: each gateway's former settlement accounts after its currencies (format 1 had none).
constexpr uint32_t registry_format = 2;
}

std::vector<uint8_t> registry::encode() const {
  byte_writer w;
  w.put(registry_format);
  w.put(uint32_t(by_number_.size()));
  for (const auto& g : by_number_) {
    w.put(g.number);
    w.put(uint8_t(g.id.size()));
    w.put_bytes({reinterpret_cast<const uint8_t*>(g.id.data()), g.id.size()});
    w.put(g.rail);
    w.put(g.priority);
    w.put(g.roles);
    w.put(g.answer_timeout_ms);
    w.put(uint8_t(g.secret.size()));
    w.put_bytes(g.secret);
    w.put(uint8_t(g.currencies.size()));
    for (const auto& c : g.currencies) {
      w.put(c.currency);
      w.put(c.settlement_account_id);
    }
    w.put(uint8_t(g.former_accounts.size()));
    for (const uint64_t a : g.former_accounts) w.put(a);
    w.put(uint8_t(g.enabled));
    w.put(g.registered_at);
    w.put(g.changed_at);
  }
  return std::move(w.out);
}

bool registry::decode(std::span<const uint8_t> bytes, registry* out, std::string* why) {
  byte_reader r{bytes};
  registry reg;
  std::unordered_set<uint64_t> taken;
  auto fail = [&](const std::string& w) {
    *why = "gateway registry: " + w;
    return false;
  };
  const auto format = r.get<uint32_t>();
  if (format != 1 && format != registry_format) return fail("unknown format");
  const uint32_t n = r.get<uint32_t>();
  if (r.short_read || n > gateways_max) return fail("gateway count out of range");
  for (uint32_t i = 0; i < n; ++i) {
    gateway g;
    g.number = r.get<uint32_t>();
    const auto id = r.take(r.get<uint8_t>());
    g.id.assign(id.begin(), id.end());
    g.rail = r.get<uint8_t>();
    g.priority = r.get<uint32_t>();
    g.roles = r.get<uint32_t>();
    g.answer_timeout_ms = r.get<uint32_t>();
    const auto secret = r.take(r.get<uint8_t>());
    g.secret.assign(secret.begin(), secret.end());
    const uint8_t nc = r.get<uint8_t>();
    if (r.short_read || nc == 0 || nc > wire::gateway_currencies_max)
      return fail("gateway " + std::to_string(i + 1) + ": currency count out of range");
    for (uint8_t c = 0; c < nc; ++c) {
      wire::gateway_currency gc{};
      gc.currency = r.get<uint32_t>();
      gc.settlement_account_id = r.get<uint64_t>();
      g.currencies.push_back(gc);
    }
    const uint8_t nf = format >= 2 ? r.get<uint8_t>() : 0;
    if (r.short_read || nc + size_t(nf) > settlement_accounts_named_max)
      return fail("gateway " + std::to_string(i + 1) + ": former settlement account count out of range");
    for (uint8_t f = 0; f < nf; ++f) g.former_accounts.push_back(r.get<uint64_t>());
    const uint8_t enabled = r.get<uint8_t>();
    g.registered_at = r.get<uint64_t>();
    g.changed_at = r.get<uint64_t>();
    if (r.short_read) return fail("truncated");
    const std::string which = "gateway " + std::to_string(i + 1);
    if (g.number != i + 1) return fail(which + ": number out of sequence");
    if (!id_text_valid(g.id) || reg.find(g.id)) return fail(which + ": id invalid or repeated");
    if (g.rail == 0 || g.rail > rail_max) return fail(which + ": rail invalid");
    if (check_roles(g.roles, rules_newest) != result::ok) return fail(which + ": roles invalid");
    if (g.answer_timeout_ms < answer_timeout_ms_min || g.answer_timeout_ms > answer_timeout_ms_max)
      return fail(which + ": answer timeout out of range");
    if (g.secret.size() < secret_bytes_min || g.secret.size() > wire::gateway_secret_max)
      return fail(which + ": secret length invalid");
    if (enabled > 1) return fail(which + ": enabled flag invalid");
    g.enabled = enabled == 1;
    // Every account, current or former, is one gateway's (apply keeps it so: formers are
    // recorded only under the rules that refuse them to others). `taken` holds those of
    // the gateways before (up to 1,024 x 64: a set, not a scan of them each).
    for (size_t c = 0; c < g.currencies.size(); ++c) {
      const auto& gc = g.currencies[c];
      if (!wire::currency_valid(gc.currency) || gc.settlement_account_id == 0 ||
          taken.count(gc.settlement_account_id) != 0)
        return fail(which + ": currency or settlement account invalid");
      for (size_t d = 0; d < c; ++d)
        if (g.currencies[d].currency == gc.currency || g.currencies[d].settlement_account_id == gc.settlement_account_id)
          return fail(which + ": currency or settlement account repeated");
    }
    for (const auto& gc : g.currencies) taken.insert(gc.settlement_account_id);
    for (const uint64_t a : g.former_accounts)  // (not 0, not its own current one, not twice)
      if (a == 0 || !taken.insert(a).second) return fail(which + ": former settlement account invalid or repeated");
    reg.by_number_.push_back(std::move(g));
    reg.index(uint32_t(reg.by_number_.size()));
  }
  if (r.at != bytes.size()) return fail("trailing bytes");
  *out = std::move(reg);
  return true;
}

}  // namespace mesob::actors::gateways
