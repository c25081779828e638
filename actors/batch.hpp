// batch: what the sequencer hands to the shards. One batch is one client request (or
// an internal tick), already logged durably when shards see it. Every shard receives
// every batch, in log order, inside a `dispatch` message (one message per shard per
// commit group: work crosses cores in batches).
//
// Cross-shard protocol (see engine/README.md): an operation whose state lives on more
// than one shard has a sync_slot. Each shard owning part of that state publishes a copy
// of it into the slot and sets its bit; every participating shard waits for all bits,
// then runs the same pure rule on the same inputs, so all reach the same decision, and
// each applies the effects on the state it owns.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "actors/equb_group.hpp"
#include "actors/rules_version.hpp"
#include "actors/gateway_registry.hpp"
#include "actors/payout_desk.hpp"
#include "actors/customers.hpp"
#include "actors/ledger_rules.hpp"
#include "actors/market.hpp"
#include "actors/record_store.hpp"
#include "wire/types.hpp"

namespace mesob::actors {

enum class op_kind : uint16_t {
  create_accounts = 1,
  create_transfers = 2,
  set_account_status = 3,
  lookup_accounts = 4,
  lookup_transfers = 5,
  tick = 6,  // no operations: advances the clock (expires pending transfers)
  lookup_account_transfers = 7,  // an account's applied transfers, newest first, paged
  lookup_balances_as_of = 8,     // an account's posted balances at a timestamp
  currency_totals = 9,           // sums of every balance field per currency, all shards
  equb_ops = 10,                 // group operations without a member payment (wire::equb_op)
  lookup_groups = 11,            // equb groups by id (their escrow account's)
  gateway_ops = 12,              // changes to the gateway registry (wire::gateway_op); the
                                 // sequencer decides them, shard 0 only finishes the batch
  deposits = 13,                 // requests only: a gateway's deposits, which the sequencer
                                 // turns into a create_transfers batch (flag `gateway`)
  payouts = 14,                  // requests only: payouts, which become their holds (pending
                                 // transfers, a create_transfers batch flagged `gateway`)
  payout_answers = 15,           // gateways' answers to payout instructions (the desks' shards)
  gateway_events = 16,           // gateway sessions up and down (every shard)
  payout_ops = 17,               // operators' retry and cancel of payouts (the desks' shards)
  lookup_payouts = 18,           // the desks' payouts (account_ids: {payout id or 0, limit, problems
                                 // only, with sweeps, from id, breakers only, reconciliation of gateway
                                 // or 0, its day + 1 or 0}), their counts, breakers, reconciliation
  instrument_ops = 19,           // instrument definitions, halts, resumes (every shard's market)
  prices = 20,                   // market-data prices (every shard's market)
  lookup_instruments = 21,       // instruments by id (account_ids; none: every one), shard 0's market
  customer_ops = 22,             // KYC records (wire::customer_op), on their wallets' shards
  policy_ops = 23,               // tiers and risk profiles (wire::policy_op), every shard's copy
  lookup_customers = 24,         // customers by wallet id (account_ids), their shards
  lookup_policy = 25,            // shard 0's policy, encoded (found_policy)
  // Trading (actors/trading.hpp):
  orders = 26,                   // wire::order; the sequencer makes each one's hold (b.transfers),
                                 // executed as a transfer batch with the portfolios' verdicts
  order_answers = 27,            // brokers' fills and rejects (the wallets' shards)
  order_cancels = 28,            // clients' cancels (the wallets' shards)
  lookup_orders = 29,            // orders by id (account_ids), from their wallets' shards
  rebalance = 30,                // requests only: plan on the wallet's shard (plan_rebalance), then
                                 // place the orders as one orders batch
  plan_rebalance = 31,           // account_ids {wallet, first order id, drift_bp, slippage_bp,
                                 // expires_s, reserved}: the orders (b.orders) rebalancing would place
  order_retries = 32,            // operators' retries of dead letters (wire::order_cancel, in
                                 // order_cancels), on the wallets' shards
  lookup_positions = 33,         // portfolios' positions by wallet id (account_ids), their shards
  order_retries_forced = 34,     // operators' retries, as order_retries, of dead letters a broker may
                                 // have: the operator checked with it (rules_order_retry_checks_broker)
};

// One currency's sums over every account: in a double-entry ledger debits equal credits.
struct currency_total {
  wire::currency_code currency = 0;
  unsigned __int128 debits_posted = 0;
  unsigned __int128 credits_posted = 0;
  unsigned __int128 debits_pending = 0;
  unsigned __int128 credits_pending = 0;
};
[[nodiscard]] inline bool op_kind_writes(op_kind k) {
  return k == op_kind::create_accounts || k == op_kind::create_transfers ||
         k == op_kind::set_account_status || k == op_kind::tick || k == op_kind::equb_ops ||
         k == op_kind::gateway_ops || k == op_kind::payout_answers || k == op_kind::gateway_events ||
         k == op_kind::payout_ops || k == op_kind::instrument_ops || k == op_kind::prices ||
         k == op_kind::customer_ops || k == op_kind::policy_ops || k == op_kind::orders ||
         k == op_kind::order_answers || k == op_kind::order_cancels || k == op_kind::order_retries ||
         k == op_kind::order_retries_forced;
}

constexpr uint32_t shards_max = 32;
constexpr uint32_t batch_ops_max = 8192;
constexpr uint32_t no_slot = 0xffffffffu;

// How one transfer operation is routed; filled by the sequencer.
enum class route_kind : uint8_t {
  static_failed = 0,  // result decided by field checks; nothing to do
  fresh = 1,          // a new single or pending transfer
  resolve = 2,        // a new post or void
  duplicate = 3,      // id recorded by an earlier batch: dup_result is its outcome
};

struct op_route {
  uint64_t serial = 0;      // fresh/resolve: the new record's serial
  uint64_t ref_serial = 0;  // resolve: the pending transfer's serial (if has_ref)
  uint32_t chain_end = 0;   // index of the last operation of this one's chain
  uint32_t slot = no_slot;  // sync slot, for operations of multi-shard chains
  uint32_t chain_mask = 0;  // shards taking part in this operation's chain
  route_kind kind = route_kind::static_failed;
  uint8_t debit_shard = 0;
  uint8_t credit_shard = 0;
  uint8_t ref_shard = 0;    // resolve: owner of the pending transfer's record and state
  bool has_ref = false;
  wire::currency_code ref_currency = 0;  // resolve: the pending transfer's currency (its events')
  uint64_t ref_debit_account_id = 0;   // resolve: the pending transfer's accounts
  uint64_t ref_credit_account_id = 0;
  // resolve: what the pending_id refers to, when the sequencer could tell (its batch
  // has executed); `in_batch` means it was recorded earlier in this same batch and its
  // owner shard reads the outcome from the record store.
  enum class ref_state : uint8_t { none, not_found, not_pending, found, in_batch };
  ref_state ref = ref_state::none;
  wire::result dup_result = wire::result::ok;  // duplicate: the original outcome
};

// Inputs of one cross-shard decision. Written by the shards owning each part, then
// read by all participants once `published` holds every required bit.
struct sync_slot {
  account debit{};
  account credit{};
  pending_info pending{};
  bool debit_found = false;
  bool credit_found = false;
  pending_lookup lookup = pending_lookup::not_found;
  // Groups' parts of the decision, from the shard of each side (actors/equb_group.hpp).
  wire::result verdict_debit = wire::result::ok;
  wire::result verdict_credit = wire::result::ok;
  std::atomic<uint32_t> published{0};  // one bit per shard that has written its part
  std::atomic<uint32_t> sleepers{0};   // shards asleep on `published` (a futex)
};

struct batch;
using batch_done = std::function<void(batch&)>;

struct batch : std::enable_shared_from_this<batch> {
  op_kind kind = op_kind::tick;
  uint64_t lsn = 0;           // log record (0 for look-ups, which are not logged)
  uint64_t timestamp_base = 0;  // operation i has timestamp_base + i
  uint32_t count = 0;

  // Request payload (exactly one is used, per kind).
  std::vector<wire::account> accounts;
  std::vector<wire::transfer> transfers;
  std::vector<wire::account_status_change> status_changes;
  std::vector<uint64_t> account_ids;
  std::vector<wire::id128> transfer_ids;
  std::vector<wire::equb_op> equb_ops;
  // tick: a resume marker (rules_resume_rebases), logged first at a start: the last
  // timestamp logged before it (0: an ordinary tick). Its record's body is these 8 bytes.
  uint64_t resumed_after = 0;
  bool emitted = false;  // transfers an equb group emitted (ids in its reserved space)
  bool gateway = false;  // gateways' deposits (ids in the deposits' reserved space)
  // The rules it is decided by (above): its log record's version in replay.
  uint16_t rules = rules_newest;
  // create_accounts, equb_ops: the engine's accounts_max or groups_max in force when it
  // was sequenced, logged with it (rules_capacity); create_transfers and orders: its
  // pending_max (rules_pending_capacity). 0 for older records (no limit).
  uint64_t capacity = 0;
  // create_transfers and orders: the engine's transfers_max in force when it was
  // sequenced (rules_transfers_capacity; 0 for older records: no limit).
  uint64_t transfers_capacity = 0;
  // equb_ops: the engine's accounts_max in force when it was sequenced, which a new
  // group's escrow account counts against (rules_escrow_capacity; 0 for older records:
  // no limit).
  uint64_t accounts_capacity = 0;
  std::vector<wire::gateway_op> gateway_ops;
  std::vector<wire::payout_answer> payout_answers;
  std::vector<wire::gateway_event> gateway_events;
  std::vector<wire::payout_op> payout_ops;
  std::vector<wire::instrument_op> instrument_ops;
  std::vector<wire::price> prices;
  std::vector<wire::customer_op> customer_ops;
  std::vector<wire::policy_op> policy_ops;
  std::vector<wire::order> orders;                // orders (b.transfers: their holds)
  std::vector<wire::order_answer> order_answers;  // wallet and gateway filled in by the engine
  std::vector<wire::order_cancel> order_cancels;
  // orders: each order's tick (its instrument's, as the sequencer read it; 0: refused)
  std::vector<uint64_t> order_ticks;
  // lookup_orders: each order's wallet (from its hold's record; 0: none)
  std::vector<uint64_t> order_wallets;
  // gateway_ops: the registry after this batch; every shard adopts it when it executes
  // the batch, and the engine publishes it when it dispatches it (durable).
  std::shared_ptr<const gateways::registry> registry_after;

  // Sequencer's annotations.
  std::vector<op_route> routes;                 // create_transfers
  std::unique_ptr<sync_slot[]> slots;
  // create_transfers: each shard's operations (those of the chains it takes part in),
  // in order; shard s's are shard_ops[shard_ops_begin[s], shard_ops_begin[s + 1]).
  // A shard walks only its own, not every operation of the batch.
  std::vector<uint32_t> shard_ops;
  std::array<uint32_t, shards_max + 1> shard_ops_begin{};
  // payout_answers, payout_ops: each item's desk (its hold's payout account; 0: refused)
  // and wallet (its hold's debit account; the events name both).
  std::vector<uint64_t> payout_desks;
  std::vector<uint64_t> payout_wallets;
  // create_transfers with posts or voids (sized by the sequencer when events are kept):
  // the amount each one moved, written by the shard that writes its result.
  std::vector<uint64_t> resolved_amounts;
  // create_accounts, set_account_status, equb_ops, customer_ops, policy_ops (sized by the
  // sequencer when events are kept): 1 where an `ok` repeats what an earlier operation did
  // (the same account, the same group created, a status it has already before rules
  // version 17 or the account's latest numbered change again, the same KYC
  // record or policy again).
  std::vector<uint8_t> repeated;
  // set_account_status with the event log kept: each change's number on its account once
  // made (the account's status_seq after it; 0 before rules_status_seq), for its event.
  std::vector<uint32_t> status_seqs;

  // Outputs: results[i] is written by exactly one shard (or the sequencer).
  std::vector<wire::result> results;
  std::vector<wire::account> found_accounts;    // lookup_accounts
  std::vector<transfer_record> found_transfers;  // lookup_transfers
  std::vector<uint64_t> last_serials;            // account queries: history heads
  std::vector<std::vector<currency_total>> totals;  // currency_totals: per shard
  std::vector<equb::group_entry> found_groups;       // lookup_groups (ids in account_ids)
  std::vector<std::vector<payouts::payout_entry>> found_payouts;   // lookup_payouts: per shard
  std::vector<std::vector<payouts::breaker_row>> found_breakers;   // lookup_payouts: per shard
  std::vector<std::vector<payouts::breaker_row>> found_order_breakers;  // lookup_payouts: per shard, its trading table's
  std::vector<std::vector<payouts::recon_row>> found_recon;        // lookup_payouts: per shard
  std::vector<std::vector<payouts::payout_count>> found_counts;    // lookup_payouts: per shard
  std::vector<std::vector<payouts::sweep_row>> found_sweeps;       // lookup_payouts: per shard
  std::vector<wire::instrument_state> found_instruments;            // lookup_instruments
  std::vector<uint64_t> found_sequences;                            // lookup_instruments: price sequences
  std::vector<wire::customer_state> found_customers;                // lookup_customers
  std::vector<std::vector<wire::position_view>> found_positions;    // lookup_positions: per wallet
  std::vector<uint8_t> found_policy;                                // lookup_policy (policy::encode)
  std::vector<wire::order_state_view> found_orders;                 // lookup_orders
  // currency_totals: per shard, its equb groups checked against their escrow accounts.
  struct group_audit {
    uint64_t checked = 0;
    std::vector<std::string> faults;  // at most group_faults_max per shard
  };
  static constexpr size_t group_faults_max = 64;
  std::vector<group_audit> group_audits;

  // The shards that execute this batch: for transfers, those with operations in it
  // (shard 0 if none has); for every other kind, all. A shard skips batches it has no
  // part in; before executing anything it expires pending transfers up to `sweep_to`
  // (set at dispatch: the batch's last timestamp; for reads, the last write's), so
  // skipped batches change nothing it could show.
  uint32_t shard_mask = 0;
  uint64_t sweep_to = 0;
  std::atomic<uint32_t> shards_remaining{0};
  batch_done done;                                  // run by the last shard to finish
  uint64_t serial_end = 0;  // records_.size() after sequencing this batch
  uint64_t dispatch_seq = 0;  // its place in dispatch order (set by the engine's send)

  [[nodiscard]] uint64_t timestamp_last() const {
    return count == 0 ? timestamp_base : timestamp_base + count - 1;
  }
};

// Fills shard_ops from the routes' chains and chain masks (after the sequencer set them).
inline void list_shard_ops(batch& b, uint32_t shards) {
  std::array<uint32_t, shards_max> at{};
  for (uint32_t i = 0; i < b.count; i = b.routes[i].chain_end + 1) {
    const op_route& r = b.routes[i];
    for (uint32_t m = r.chain_mask; m != 0; m &= m - 1) at[__builtin_ctz(m)] += r.chain_end - i + 1;
  }
  b.shard_ops_begin[0] = 0;
  for (uint32_t s = 0; s < shards_max; ++s) {
    const uint32_t n = s < shards ? at[s] : 0;
    b.shard_ops_begin[s + 1] = b.shard_ops_begin[s] + n;
    at[s] = b.shard_ops_begin[s];
  }
  b.shard_ops.resize(b.shard_ops_begin[shards_max]);
  for (uint32_t i = 0; i < b.count; i = b.routes[i].chain_end + 1) {
    const op_route& r = b.routes[i];
    for (uint32_t m = r.chain_mask; m != 0; m &= m - 1)
      for (uint32_t o = i, s = uint32_t(__builtin_ctz(m)); o <= r.chain_end; ++o) b.shard_ops[at[s]++] = o;
  }
}

// An account as snapshotted: its state and the head of its history.
struct stored_account {
  account a;
  uint64_t last_serial = 0;  // serial + 1 of its newest applied transfer (0: none)
};
static_assert(sizeof(stored_account) == 88);

// A checkpoint cut: every shard copies the state it owns, after every batch before it.
struct checkpoint_cut {
  uint64_t seq = 0;            // cuts are numbered 1, 2, ... in the order they start
  uint64_t committed_seq = 0;  // the newest cut committed when this one started
  uint64_t lsn = 0;
  uint64_t next_serial = 0;
  uint64_t clock_ns = 0;
  std::vector<std::vector<stored_account>> dirty_accounts;  // per shard
  std::vector<std::vector<pending_info>> pendings;     // per shard, entries changed since its last cut
  std::vector<uint64_t> account_counts;                // per shard
  // per shard, equb groups changed since its last cut: (id, encode_entry bytes)
  std::vector<std::vector<std::pair<uint64_t, std::vector<uint8_t>>>> groups;
  std::vector<uint8_t> gateways;  // the gateway registry at the cut (registry::encode)
  std::vector<uint8_t> gateway_sessions;  // sessions up per gateway at the cut (shard 0's)
  std::vector<payouts::desk_table::dirty_rows> payouts;  // per shard, rows changed since its last cut
  // per shard, its part of the reconciliation counts of days from recon_from_day on (the
  // day of the newest committed cut's clock: engine time never moves back, so no row of
  // an earlier day has changed since)
  std::vector<std::vector<payouts::recon_row>> recon;
  uint32_t recon_from_day = 0;
  // Every shard drops its rows of days before this one after copying (the same day on
  // every shard; at most recon_from_day: payouts::recon_days_kept).
  uint32_t recon_drop_before = 0;
  std::vector<uint8_t> market;  // shard 0's market at the cut (book::encode; empty: no instrument)
  std::vector<uint8_t> policy;  // shard 0's policy at the cut (policy::encode; empty: none)
  // per shard, customers changed since its last cut: (wallet, table::encode bytes)
  std::vector<std::vector<std::pair<uint64_t, std::vector<uint8_t>>>> customers;
  // per shard, portfolios changed since its last cut: (wallet, trading::table row; empty: gone)
  std::vector<std::vector<std::pair<uint64_t, std::vector<uint8_t>>>> portfolios;
  std::atomic<uint32_t> shards_remaining{0};
  std::function<void(checkpoint_cut&)> done;
};

// A pending transfer the owner of its record (its debit account's shard) expired.
struct expired_pending {
  uint64_t serial = 0;
  uint64_t expires_at = 0;
  uint64_t debit_account_id = 0;
  uint64_t credit_account_id = 0;
  uint64_t amount = 0;
  wire::currency_code currency = 0;
};

// The logged batches of one dispatch, for the event log (engine/events.hpp): every shard
// receives the dispatch (with or without batches of its own), expires pending transfers
// up to `sweep_to` and adds what it expired; the last shard hands the group on.
// Expiries are thus reported in the dispatch whose batches' clock passed them.
// A group's decision as an event (lsn: the batch it belongs to), and where in that batch
// it was made: 0 before its operations (deadlines passing), i + 1 by its operation i.
// A shard may make it later than that place (a set-aside payment settles when the other
// shard has published), so the event writer orders each shard's decisions by (lsn,
// slot), which live and replay share, keeping the order of those one place made.
struct decision {
  uint32_t slot = 0;
  wire::event ev;
};

struct event_group {
  uint64_t seq = 0;  // 1, 2, ... in dispatch order
  std::vector<std::shared_ptr<batch>> batches;  // in log order
  uint64_t sweep_to = 0;                        // the last batch's last timestamp
  std::vector<std::vector<expired_pending>> expired;  // per shard
  // per shard, what its groups decided while it executed these batches
  std::vector<std::vector<decision>> decided;
  std::atomic<uint32_t> shards_remaining{0};
  std::function<void(std::shared_ptr<event_group>)> ready;
};

// What one shard receives per commit group.
struct dispatch {
  std::vector<std::shared_ptr<batch>> batches;
  std::shared_ptr<checkpoint_cut> cut;  // after the batches, if set
  std::shared_ptr<event_group> events;  // set when the event log is kept and batches are logged
};

}  // namespace mesob::actors
