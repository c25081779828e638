// gateway_registry: the payment gateways Mesob knows (mobile money, card, bank), as
// durable engine state.
//
// A gateway has an id (the name it authenticates with), a number (1, 2, ... in
// registration order, never reused: deposit ids carry it), a rail, a priority (lower is
// tried first among gateways of one rail and currency), roles, its HMAC secret, and per
// currency it serves the settlement account its money moves through. Operators change
// the registry through the admin port; each change is a wire::gateway_op in the log,
// applied by the sequencer in log order (`apply`: checks, then the change), so replay
// rebuilds the same registry. Readers (the server's handshake, the admin endpoint) get
// immutable versions: the engine publishes a new one when a change is durable.
//
// Deposits: a gateway reports money received; the deposit becomes an ordinary transfer
// (settlement account -> wallet) with an id in the deposits' reserved space, derived
// from the gateway's number and its reference, so a retry of the same reference is a
// repeat the ledger answers with the first outcome, and the same reference with other
// content gets exists_with_different_fields.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "actors/rules_version.hpp"
#include "wire/protocol.hpp"
#include "wire/types.hpp"

namespace mesob::actors::gateways {

enum class rail : uint8_t { mobile_money = 1, card = 2, bank = 3 };
constexpr uint8_t rail_max = 3;
[[nodiscard]] std::string_view rail_name(uint8_t r);
[[nodiscard]] bool parse_rail(std::string_view text, uint8_t* out);

constexpr uint32_t gateways_max = 1024;
constexpr size_t secret_bytes_min = 16;
constexpr uint32_t answer_timeout_ms_min = 100, answer_timeout_ms_max = 3'600'000;
constexpr uint32_t answer_timeout_ms_default = 30'000;  // the admin port's when not given
// Settlement accounts one gateway may name over its life, its current ones and those it
// named before (rules_settlement_accounts_kept).
constexpr size_t settlement_accounts_named_max = 64;

// Deposit transfer ids: hi's top 40 bits are 0xDE9051D000, its low 24 bits the gateway's
// number; lo is the gateway's reference. Clients may not use the space (id_reserved).
constexpr uint64_t deposit_hi = 0xDE9051D000000000ull;
constexpr uint64_t deposit_hi_mask = 0xFFFFFFFFFF000000ull;
[[nodiscard]] inline bool deposit_id(const wire::id128& id) { return (id.hi & deposit_hi_mask) == deposit_hi; }
[[nodiscard]] inline wire::id128 deposit_transfer_id(uint32_t number, uint64_t reference) {
  return {reference, deposit_hi | number};
}
// The transfer a deposit of gateway `number` is: from its settlement account to the wallet.
[[nodiscard]] inline wire::transfer deposit_as_transfer(uint32_t number, uint64_t settlement, const wire::deposit& d) {
  wire::transfer t{};
  t.id = deposit_transfer_id(number, d.reference);
  t.debit_account_id = settlement;
  t.credit_account_id = d.wallet;
  t.amount = d.amount;
  t.user_data = d.user_data;
  t.currency = d.currency;
  t.code = d.code;
  return t;
}

struct gateway {
  uint32_t number = 0;
  std::string id;
  uint8_t rail = 0;
  uint32_t priority = 0;
  uint32_t roles = 0;
  uint32_t answer_timeout_ms = answer_timeout_ms_default;
  std::vector<uint8_t> secret;
  std::vector<wire::gateway_currency> currencies;  // in the order registered
  // Settlement accounts it named before and no longer does, oldest first: its own for
  // good (rules_settlement_accounts_kept), since their balances and the sweeps of its
  // payouts still arriving are its. With `currencies`, at most
  // settlement_accounts_named_max.
  std::vector<uint64_t> former_accounts;
  bool enabled = true;
  uint64_t registered_at = 0;  // engine time
  uint64_t changed_at = 0;
  // Engine time of its latest disable (0: none since the start). A session remembers it
  // from its login and closes once it differs: a disable and an enable between two of
  // its frames, or within one of the server's ticks, cut it off too. Not in snapshots:
  // no session outlives the process. (A shard compares it only before and after one
  // batch of changes, which a snapshot's 0 does not disturb.)
  uint64_t disabled_at = 0;
  // Engine time of its latest secret rotation (0: none since the start), likewise: a
  // session logged in with the secret before closes once it differs, so that rotating a
  // secret that leaked ends the sessions opened with it.
  uint64_t secret_rotated_at = 0;

  [[nodiscard]] const wire::gateway_currency* serves(wire::currency_code c) const {
    for (const auto& gc : currencies)
      if (gc.currency == c) return &gc;
    return nullptr;
  }
};

// A gateway id: 1 to 64 bytes of [A-Za-z0-9._-] (registered gateways and those a
// server is started with alike).
[[nodiscard]] bool id_text_valid(std::string_view id);
// The gateway id an operation names ("" when it is not a valid id).
[[nodiscard]] std::string op_id(const wire::gateway_op& op);
// A gateway_op's id field from text (false when over 64 bytes).
bool set_op_id(wire::gateway_op& op, std::string_view id);
// Field checks (no registry): kind, id, rail, roles, secret, currencies, fields the kind
// must not set; roles by `rules` (a batch's, actors/rules_version.hpp).
[[nodiscard]] wire::result check_op_fields(const wire::gateway_op& op, uint16_t rules = rules_newest);

class registry {
 public:
  // Checks `op` against the registry and applies it (ts: the operation's engine time;
  // `rules`: the batch's, actors/rules_version.hpp). The settlement accounts' kind and
  // currency are the caller's to check first (they live in the shards; accounts never
  // change kind or currency, so a check before the op is sequenced still holds when it
  // applies).
  wire::result apply(const wire::gateway_op& op, uint64_t ts, uint16_t rules = rules_newest);

  [[nodiscard]] const gateway* find(std::string_view id) const;
  [[nodiscard]] const gateway* find(uint32_t number) const;
  [[nodiscard]] const std::vector<gateway>& all() const { return by_number_; }  // by number
  [[nodiscard]] size_t size() const { return by_number_.size(); }
  // Whether an enabled gateway of `rail` serves currency c (a payout can be routed): one
  // with the payments role (`any_role`: as before rules version 9, any gateway).
  [[nodiscard]] bool serves_rail(uint8_t rail, wire::currency_code c, bool any_role = false) const {
    for (const auto& g : by_number_)
      if (g.enabled && g.rail == rail && g.serves(c) && (any_role || takes_payouts(g))) return true;
    return false;
  }
  [[nodiscard]] static bool takes_payouts(const gateway& g) { return (g.roles & wire::roles::payments) != 0; }

  // A deposit as the transfer it becomes, or the result refusing it.
  wire::result deposit_transfer(std::string_view gateway_id, const wire::deposit& d, wire::transfer* out) const;

  // Byte form for snapshots (version 1). decode refuses damage it can see.
  [[nodiscard]] std::vector<uint8_t> encode() const;
  static bool decode(std::span<const uint8_t> bytes, registry* out, std::string* why);

 private:
  void index(uint32_t number);
  // Whether a gateway other than `except_number` names the account now, or (`formers`)
  // named it before.
  [[nodiscard]] bool account_taken(uint64_t account_id, uint32_t except_number, bool formers) const;
  std::vector<gateway> by_number_;  // number n at n - 1
  std::unordered_map<std::string, uint32_t> by_id_;
};

}  // namespace mesob::actors::gateways
