// The ledger's rules, as pure functions: given an operation and the state it reads,
// which result it gets and what it changes. Shards call them for every operation; the
// order of checks below is the contract (it fixes which code a request with several
// faults gets) and is written out in actors/README.md.
#pragma once

#include <cstdint>

#include "actors/rules_version.hpp"
#include "wire/types.hpp"

namespace mesob::actors {

using wire::account;
using wire::result;
using wire::transfer;

enum class pending_state : uint8_t { pending = 1, posted = 2, voided = 3, expired = 4 };

// A successful pending transfer, as tracked by the shards of its two accounts.
struct pending_info {
  uint64_t serial = 0;
  uint64_t amount = 0;
  uint64_t debit_account_id = 0;
  uint64_t credit_account_id = 0;
  uint64_t expires_at = 0;  // engine ns; 0: never
  wire::currency_code currency = 0;
  pending_state state = pending_state::pending;
  uint8_t reserved[3] = {0, 0, 0};
};
static_assert(sizeof(pending_info) == 48);

// What a post or void finds when it looks up its pending_id.
// unreadable: resolved and evicted, and its row in the snapshot fails its check.
enum class pending_lookup : uint8_t { not_found = 0, not_pending = 1, found = 2, unreadable = 3 };

constexpr uint64_t ns_per_s = 1'000'000'000ull;

// Field checks that need no state. `ok` means "go on to the stateful checks".
[[nodiscard]] result check_transfer_fields(const transfer& t);
[[nodiscard]] result check_account_fields(const account& a);
// `rules`: the batch's (a status change's seq was reserved before rules_status_seq).
[[nodiscard]] result check_status_change_fields(const wire::account_status_change& c, uint16_t rules);

// A new single or pending transfer. dr/cr are null when the account does not exist.
[[nodiscard]] result decide_transfer(const transfer& t, uint64_t ts, const account* dr,
                                     const account* cr);
// A post or void of a pending transfer.
[[nodiscard]] result decide_post_or_void(const transfer& t, pending_lookup lookup,
                                         const pending_info* p, const account* dr,
                                         const account* cr);
// A create of an account whose id exists already.
[[nodiscard]] result decide_existing_account(const account& request, const account& existing);
// A status change of an existing account, by the batch's rules: from rules_status_seq a
// numbered change (seq != 0) is first held against the account's status_seq (the latest
// change repeated: ok with *repeat set, nothing to do); then the account's state.
[[nodiscard]] result decide_status_change(const wire::account_status_change& c, const account& a, uint16_t rules,
                                          bool* repeat);
// The original outcome of a transfer id seen before.
[[nodiscard]] result decide_duplicate(const transfer& t, const transfer& original,
                                      result original_result);

// Effects, applied after a decision of `ok`. Each touches one side only, so a shard
// applies exactly the sides it owns.
void apply_transfer_debit(account& dr, const transfer& t);
void apply_transfer_credit(account& cr, const transfer& t);
// Post (amount > 0) or void (post_amount == 0) of `p`, one side.
void apply_resolve_debit(account& dr, const pending_info& p, uint64_t post_amount);
void apply_resolve_credit(account& cr, const pending_info& p, uint64_t post_amount);
[[nodiscard]] uint64_t post_amount(const transfer& t, const pending_info& p);
[[nodiscard]] pending_info make_pending(const transfer& t, uint64_t serial, uint64_t ts);

}  // namespace mesob::actors
