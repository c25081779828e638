// mesob::engine — the embedded API: link the engine as a library, no network.
//
//   std::string err;
//   auto e = engine::open(cfg, &err);           // recovers: snapshot + log replay
//   auto r = e->create_transfers({t1, t2});     // durable before it returns
//   e->submit(request, [](reply&& r) { ... });  // asynchronous; many in flight
//   e->close();                                 // drain, flush, snapshot, stop
//
// Threads: the caller's threads submit; one sequencer thread stamps, checks, logs
// (group commit) and dispatches; one detached CAF actor per shard executes; one
// checkpoint thread writes LMDB snapshots. Callbacks run on a shard thread and must
// not block. submit() blocks its caller while `queue_requests_max` requests wait, unless
// the caller bounds what it has in flight itself (wait_for_space false: the server's
// network thread, which must never block).
// After a storage failure the engine refuses writes (status engine_failed) and keeps
// answering reads.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/batch.hpp"
#include "actors/gateway_registry.hpp"
#include "actors/record_store.hpp"
#include "engine/config.hpp"
#include "wire/types.hpp"

namespace caf {
class actor_system;
}

namespace mesob::engine {

inline constexpr const char* version = "0.1";

using actors::op_kind;
using actors::transfer_record;

// An account's applied transfers, newest first: up to `limit` (1..history_page_max)
// records before `cursor` (0: from the newest; else a page's next_cursor).
struct history_query {
  uint64_t account_id = 0;
  uint64_t cursor = 0;
  uint32_t limit = 100;
  uint32_t reserved = 0;  // the wire's HistoryQuery.reserved: not zero is reserved_field
};
struct history_page {
  wire::result result = wire::result::ok;
  std::vector<transfer_record> records;
  uint64_t next_cursor = 0;  // 0: no older records
};
// An account's posted balances as of `timestamp` (engine ns): those after its last
// applied transfer with a timestamp <= it.
struct balance_query {
  uint64_t account_id = 0;
  uint64_t timestamp = 0;
};
struct balance_as_of {
  uint64_t debits_posted = 0;
  uint64_t credits_posted = 0;
};

struct request {
  op_kind kind = op_kind::create_transfers;
  std::vector<wire::account> accounts;
  std::vector<wire::transfer> transfers;
  std::vector<wire::account_status_change> status_changes;
  std::vector<uint64_t> account_ids;
  std::vector<wire::id128> transfer_ids;
  std::vector<history_query> history_queries;
  std::vector<balance_query> balance_queries;
  std::vector<wire::equb_op> equb_ops;  // equb_ops; lookup_groups takes account_ids (group ids)
  // equb_ops: the accounts the operations name were looked up and found fit (the engine
  // sets it; a request naming accounts is looked at first, engine.cpp check_group_accounts)
  bool equb_accounts_checked = false;
  // deposits: the gateway (its registry id) that reports them
  std::string gateway;
  std::vector<wire::deposit> deposits;
  // gateway_ops: built by engine::gateways() only, which checks the settlement accounts
  // first and then sets `gateway_accounts_checked` (other requests of this kind are refused
  // with kind_invalid).
  std::vector<wire::gateway_op> gateway_ops;
  bool gateway_accounts_checked = false;
  // payouts: holds placed and routed by the desks (actors/payout_desk.hpp);
  // payout_answers: from `gateway`'s session; gateway_events and payout_ops: the engine's
  // and operators' (engine::gateway_event, engine::payout_ops)
  std::vector<wire::payout> payouts;
  std::vector<wire::payout_answer> payout_answers;
  std::vector<wire::gateway_event> gateway_events;
  std::vector<wire::payout_op> payout_ops;
  // Engine-internal: create_accounts of payout accounts (reserved ids; engine::gateways)
  bool gateway_internal = false;
  // instrument_ops and prices (actors/market.hpp); lookup_instruments takes account_ids
  // (instrument ids; none: every instrument)
  std::vector<wire::instrument_op> instrument_ops;
  std::vector<wire::price> prices;
  // customer_ops and policy_ops (actors/customers.hpp); lookup_customers takes account_ids
  std::vector<wire::customer_op> customer_ops;
  std::vector<wire::policy_op> policy_ops;
  // Trading (actors/trading.hpp): orders, brokers' answers (from `gateway`'s session),
  // clients' cancels; lookup_orders takes account_ids (order ids)
  std::vector<wire::order> orders;
  std::vector<wire::order_answer> order_answers;
  std::vector<wire::order_cancel> order_cancels;
  // rebalance: account_ids {wallet, first order id, drift_bp, slippage_bp, expires_s, reserved}
  // tick (the engine's own; clients' are kind_invalid): a resume marker's last timestamp
  // before the start (batch::resumed_after)
  uint64_t resumed_after = 0;
};

enum class status : uint8_t {
  ok = 0,
  batch_too_large = 1,  // more than batch_ops_max operations
  engine_failed = 2,    // storage failed: writes refused until restart
  stopping = 3,         // the engine is closing
  kind_invalid = 4,
};
[[nodiscard]] const char* status_name(status s);

struct reply {
  status st = status::ok;
  std::vector<wire::result> results;         // one per operation
  std::vector<wire::account> accounts;       // lookup_accounts: one per id (zeroed if absent)
  std::vector<transfer_record> transfers;    // lookup_transfers: one per id
  std::vector<history_page> pages;           // lookup_account_transfers: one per query
  std::vector<balance_as_of> balances;       // lookup_balances_as_of: one per query
  std::vector<actors::currency_total> totals;  // currency_totals: one per currency
  std::vector<actors::equb::group_entry> groups;  // lookup_groups: one per id (empty if absent)
                                                  // (and in `accounts`, its escrow account as read
                                                  // with it: id 0 if it is not there)
  std::vector<wire::instrument_state> instruments;  // lookup_instruments: one per id (zeroed if absent), or all
  std::vector<uint64_t> instrument_sequences;       // lookup_instruments: each one's price sequence last taken
  std::vector<wire::customer_state> customers;      // lookup_customers: one per id (zeroed if absent)
  std::vector<wire::position_view> positions;       // lookup_positions: every found wallet's, in request order
  std::vector<uint8_t> policy;                      // lookup_policy: actors::customers::policy::encode
  std::vector<wire::order_state_view> orders;       // lookup_orders: one per id (zeroed if absent)
  // rebalance: the orders placed (results: one per order), or none (results: one, why not)
  std::vector<wire::order> placed;
  std::vector<actors::payouts::payout_entry> payouts;  // lookup_payouts
  // lookup_payouts of one id: the payout if it was resolved while a gateway may still pay
  // it (kept for that gateway's answer)
  std::vector<actors::payouts::payout_entry> watched_payouts;
  std::vector<actors::payouts::breaker_row> breakers;  // lookup_payouts
  // lookup_payouts: each shard's breakers for brokers (orders; desk: the shard's index,
  // currency 0), by broker then shard
  std::vector<actors::payouts::breaker_row> order_breakers;
  std::vector<actors::payouts::recon_row> recon;       // lookup_recon: per day and currency, in key order
  std::vector<actors::payouts::payout_count> payout_counts;  // lookup_payouts (one row per shard and key)
  std::vector<actors::payouts::sweep_row> sweeps;      // lookup_payouts: what desks owe settlement accounts
  uint64_t groups_checked = 0;                // currency_totals: equb groups, payout desks and portfolios checked against their accounts
  std::vector<std::string> group_faults;      // currency_totals: what was wrong (at most 64 per shard)
  uint64_t timestamp_base = 0;               // operation i has timestamp_base + i
  uint64_t lsn = 0;                          // log record, 0 for look-ups
};

struct recovery_report {
  uint64_t snapshot_lsn = 0;
  uint64_t records_replayed = 0;
  uint64_t operations_replayed = 0;
  uint64_t accounts_loaded = 0;
  uint64_t groups_loaded = 0;    // equb groups read from the snapshot
  uint64_t groups_retired = 0;   // retired groups' rows (tombstones) read from it
  uint64_t groups_reemitted = 0;  // their payments no log record carried, sent again at start
  uint64_t payout_chains_reemitted = 0;  // payouts' posts and voids no log record carried (a refused one waits for a retry)
  uint64_t order_chains_reemitted = 0;   // orders' settlements no log record carried
  uint64_t portfolios_loaded = 0;
  uint64_t transfers_loaded = 0;
  uint64_t transfer_ids_filled_in = 0;  // id hashes written for a snapshot from before them
  // The snapshot had no bound on its ids' lo by bucket (record_rows::lo_max: written by an
  // older build), so recovery read every record for it and wrote it.
  bool id_lo_max_filled_in = false;
  // The store had no key for its ids' hashes (a new store, or one of format 12 or older):
  // one was made, and the hashes the store had were dropped (transfer_ids_filled_in
  // counts those written again).
  bool id_hash_key_made = false;
  uint64_t pending_loaded = 0;  // open pending transfers read from the snapshot
  std::string torn_tail;  // empty unless a torn tail was cut
  double seconds = 0;
  double replay_seconds = 0;
  // Where the replaying sequencer waited: for the log reader (reading, checksums, hash
  // chain, decoding), and for the shards (executing, and the records window moving).
  double replay_reader_wait_seconds = 0;
  double replay_shard_wait_seconds = 0;
  double replay_sequencer_cpu_seconds = 0;  // CPU time of the replaying sequencer
  double replay_process_cpu_seconds = 0;    // CPU time of every thread while replaying
};

struct engine_stats {
  uint64_t accounts = 0;
  uint64_t groups = 0;  // equb groups held, ended ones not yet retired included
  // Capacity (engine/README.md "Capacity"): the settings, and the fullest shard's share
  // used of each (0..1).
  uint64_t accounts_max = 0, groups_max = 0, pending_max = 0, transfers_max = 0;
  double accounts_share_used = 0, groups_share_used = 0, pending_share_used = 0;
  uint64_t transfers = 0;
  // Steps of the wall clock the engine clock did not follow (engine_clock.hpp), and while
  // one lasts, the wall clock minus the engine clock (else 0).
  uint64_t clock_steps = 0;
  int64_t clock_skew_ns = 0;
  uint64_t pending_tracked = 0;  // pending transfers held by shards: live, and resolved until a snapshot holds them
  uint64_t pending_open = 0;     // of them, still pending (one across two shards counted on each)
  uint64_t pending_expiry_entries = 0;  // the shards' expiry heaps' entries (stale ones included)
  uint64_t lsn_durable = 0;
  uint64_t snapshot_lsn = 0;
  uint64_t snapshot_unix_ns = 0;  // when this run last wrote a snapshot (0: not yet)
  uint64_t wal_groups = 0;
  uint64_t wal_records = 0;
  uint64_t wal_bytes = 0;
  uint64_t wal_flight_ns = 0;  // summed time groups spent between submit and durable
  uint64_t wal_segments_deleting = 0;  // covered by a snapshot, not yet deleted
  std::vector<uint64_t> wal_commit_buckets;  // groups per storage::wal_commit_buckets bucket, then +Inf
  uint64_t sync_waits = 0;
  uint64_t checkpoints = 0;
  // Checkpoints that failed since start (each is tried again at the next interval; until
  // one commits the log keeps every segment since the snapshot), and the latest's error.
  uint64_t checkpoint_failures = 0;
  std::string checkpoint_error_last;
  double checkpoint_seconds_last = 0;   // the last checkpoint's writing (LMDB commit included)
  double checkpoint_seconds_total = 0;  // every checkpoint's, this run (failed ones too)
  uint64_t transfers_in_snapshot = 0;  // records flushed to LMDB (older ones are not resident)
  // The snapshot store's map (--snapshot-map-gib) and its bytes up to the newest commit's
  // last page (storage::snapshot_store::usage): at the map, every write stops.
  uint64_t snapshot_map_bytes = 0, snapshot_used_bytes = 0;
  uint64_t records_flush_failures = 0;  // records flushes that failed (each is tried again)
  bool writes_refused = false;  // storage failed: writes get engine_failed until restart
  std::string writes_refused_why;  // the failure that refused them (the first)
  // The log's segments kept on the disk, and their limit (config::wal_kept_max_mib): over it
  // a checkpoint is waited for, and if it fails writes are refused until restart.
  uint64_t log_kept_bytes = 0, log_kept_max_bytes = 0;
  uint64_t snapshot_rows_unreadable = 0;  // rows requests needed that failed their check or were missing
  uint64_t checkpoint_pause_us_last = 0;  // longest shard pause of the last checkpoint cut
  uint64_t checkpoint_pause_us_max = 0;
  uint64_t memory_bytes_shards = 0;  // accounts, their indexes, pending transfers
  uint64_t memory_bytes_window = 0;  // the resident window of transfer records
  uint64_t memory_bytes_id_index = 0;  // every recorded transfer id (engine/id_index.hpp)
  uint64_t id_index_growths = 0;     // id index tables built in the background and swapped in
  uint64_t id_index_waits = 0;       // inserts that had to wait for a growth to finish
  uint64_t walks_deferred = 0;       // look-ups' walks left to a later sequencer pass (walk_pass_steps)
  // The id index table's size past which its next growth starts; while one is under way,
  // its size now (ids in the table: all but the ranges' of ids counting up, sequenced
  // ones, which may run ahead of `transfers` by the batches in flight).
  uint64_t id_index_next_growth_at = 0;
  uint64_t id_index_table_ids = 0;  // ids in the table (id_index_next_growth_at counts these)
  uint64_t id_index_ranges = 0;  // runs of ids counting up kept as ranges, not in the table
  uint64_t id_index_probes = 0;  // look-ups that probed the table (the others needed no probe)
};

// What engine::verify_log found: every record from the segment that holds the snapshot's
// next lsn (what recovery reads; older segments a drop left are not part of the log) to
// the lsn durable when the check began, with its checksum, lsn sequence and hash chain.
struct log_verification {
  bool intact = true;
  bool read_failed = false;  // not intact because a segment could not be read (not damage)
  std::string fault;        // when not intact: file, offset and what is wrong
  uint64_t segments = 0;
  uint64_t records = 0;
  uint64_t first_lsn = 0;   // 0: no record is kept (all of them are in the snapshot)
  uint64_t last_lsn = 0;
  uint64_t durable_lsn = 0;  // when the check began; every record up to it must be there
  std::string chain_head;    // hex SHA-256 after last_lsn
  double seconds = 0;
  bool stopped = false;      // the caller's cancel flag ended the check before it was done
  // The check gave way before it was done: the dropped segments it kept from being deleted
  // reached half the log's limit (config::wal_kept_max_mib).
  bool gave_way = false;
};

struct shard_report {
  uint32_t shard = 0;
  uint64_t accounts = 0;
  uint64_t pending = 0;           // pending transfers held (live, and resolved until snapshotted)
  uint64_t queue_depth = 0;       // dispatch messages waiting in the shard's mailbox
  uint64_t batches_executed = 0;  // batches the shard took part in
  uint64_t sync_waits = 0;        // cross-shard rendezvous that had to wait
  uint64_t memory_bytes = 0;
  uint64_t cut_us_max = 0;        // longest checkpoint pause
  uint64_t customers = 0;         // KYC records of wallets on this shard
  uint64_t orders_open = 0;       // orders open in its portfolios
  uint64_t orders_ending = 0;     // of them, cancelled or expired, their broker not yet confirmed
  uint64_t fills = 0;             // fills taken since the start
  uint64_t settle_refusals = 0;   // orders' settlements the ledger refused since the start
  uint64_t orders_dead = 0;       // open orders that are dead letters (an operator's to retry or cancel)
  uint64_t orders_halted = 0;     // open orders a halt (or a stale price) holds from brokers
  uint64_t order_timeouts = 0;    // brokers' answer timeouts since the start
  uint64_t order_timers = 0;      // the orders' timers held (those of orders gone until compacted)
  uint64_t payout_timers = 0;     // the payout desks' timers held (stale ones until compacted)
  uint64_t pending_open = 0;      // of `pending`, still pending (what pending_max bounds)
  uint64_t group_refusals = 0;    // equb groups' obligations the ledger refused, waiting for a retry
};

// The event stream as operators see it (engine/events.hpp).
struct event_stats {
  bool kept = false;          // the engine runs with an event log
  bool failed = false;        // the event log failed (events stop, checkpoints fail)
  std::string error;
  uint64_t first_offset = 0;  // oldest kept
  uint64_t end_offset = 0;    // next to be written (readers read below it)
  uint64_t bytes = 0;         // on disk
  uint64_t events_written = 0;  // by this run
  uint64_t syncs = 0;
  uint64_t sync_ns = 0;
  uint64_t backlog = 0;       // event groups waiting for the writer
  uint64_t lsn = 0;           // events durable for every batch up to this lsn
};

class engine_impl;
class event_hub;

// Why `dir` cannot be opened now because another engine holds it ("data directory ...
// is in use by another engine (pid N) ..."), or empty. Reads only (creates nothing): for
// a start stopped before opening, to name the cause (its port held by that engine).
[[nodiscard]] std::string data_dir_in_use(const std::string& dir);

class engine {
 public:
  static std::unique_ptr<engine> open(const config& cfg, std::string* error);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  void submit(request&& r, std::function<void(reply&&)> done, bool wait_for_space = true);
  reply call(request&& r);
  // r's reply if the engine answers within `wait`; else nothing (the reply is dropped
  // when it comes), and `answered`, when given, turns true only when it comes: a caller
  // that gave up can send no other until then. It does not wait for room in the queue
  // (the caller bounds what it has in flight).
  std::optional<reply> call_within(request&& r, std::chrono::milliseconds wait,
                                   std::shared_ptr<std::atomic<bool>> answered = nullptr);

  reply create_accounts(std::vector<wire::account> a);
  reply create_transfers(std::vector<wire::transfer> t);
  reply set_account_status(std::vector<wire::account_status_change> c);
  reply lookup_accounts(std::vector<uint64_t> ids);
  reply lookup_transfers(std::vector<wire::id128> ids);
  reply lookup_account_transfers(std::vector<history_query> q);
  reply lookup_balances_as_of(std::vector<balance_query> q);
  // Equb groups: operations without a member payment (members pay with transfers
  // flagged transfer_flags::equb), and look-ups by group id.
  reply equb(std::vector<wire::equb_op> ops);
  reply lookup_groups(std::vector<uint64_t> group_ids);
  // Payment gateways (actors/gateway_registry.hpp). Registry changes: the settlement
  // accounts of register and update are created (kind gateway_settlement, in their
  // currency) when absent, and must be settlement accounts of that currency when present
  // (else settlement_account_invalid); then the changes are logged and applied in order.
  // Blocks until durable; call from a thread that may wait (the admin actor).
  reply gateways(std::vector<wire::gateway_op> ops);
  // A gateway's deposits: each becomes a transfer from its settlement account to the
  // wallet, idempotent on (gateway, reference).
  reply deposit(const std::string& gateway, std::vector<wire::deposit> deposits);
  // The registry as of the last change made durable (immutable; from any thread).
  [[nodiscard]] std::shared_ptr<const actors::gateways::registry> gateway_registry() const;
  // Payouts (actors/payout_desk.hpp): each places its hold and is routed to a gateway.
  reply payouts(std::vector<wire::payout> p);
  // A gateway's answers to instructions (from its session).
  reply payout_answers(const std::string& gateway, std::vector<wire::payout_answer> a);
  // A registered gateway's session opened or closed (the server calls these; async).
  // A gateway session opening or closing; never waits for queue space (the server's
  // network thread bounds these with its requests). `done` (optional) when it executed.
  void gateway_event(wire::gateway_event e, std::function<void(reply&&)> done = {});
  // Operators: retry a dead letter (or a settlement the ledger refused), cancel one.
  reply payout_ops(std::vector<wire::payout_op> ops);
  // The payouts the desks hold (all of them, or those with `payout_id`), from a
  // consistent point of the request stream; at most `limit`.
  // Also every desk's breakers (per currency and gateway: phase and counters); the
  // reconciliation counts are lookup_recon's.
  // At most `limit` payouts are copied (problems_only: dead letters and refused
  // settlements); `payout_counts` counts every one held. Without `with_rows` the sweeps
  // are left out.
  // With a `payout_id` only that payout is looked up (held, or kept resolved: no
  // counts, breakers or rows), one hash look-up per desk instead of a pass over all.
  // Without, the payouts copied are those of the lowest ids from `from_id` on, in id
  // order (a listing pages with the id after its last).
  // `breakers_only`: the desks' and the brokers' breakers alone, no pass over the payouts
  // held (the console's `brokers`).
  reply lookup_payouts(uint64_t payout_id, size_t limit, bool problems_only = false, bool with_rows = true,
                       uint64_t from_id = 0, bool breakers_only = false);
  static request payouts_query(uint64_t payout_id, size_t limit, bool problems_only, bool with_rows, uint64_t from_id,
                               bool breakers_only);
  // One gateway's reconciliation rows (of one UTC day, or of every day), with the payout
  // counts (pending and dead letters per gateway and day): the days the shards keep in
  // memory (actors::payouts::recon_days_kept) from them, older ones from the snapshot.
  // A snapshot that cannot be read sets *error (the rows from memory are still given).
  reply lookup_recon(uint32_t gateway, std::optional<uint32_t> day, std::string* error);
  // Where instructions go: called on a shard thread with each batch's instructions for
  // one gateway (by id). mesobd pushes them to the gateway's sessions. Unset: dropped
  // (the payouts time out and are retried once a sink is set and a session is up).
  using instruction_sink = std::function<void(const std::string& gateway, std::vector<wire::payout_instruction>&&)>;
  void set_instruction_sink(instruction_sink s);

  // The market (actors/market.hpp): instrument definitions, halts and resumes; prices
  // (stamped with the engine clock); instruments by id (none: every one, by id).
  reply instruments(std::vector<wire::instrument_op> ops);
  reply prices(std::vector<wire::price> p);
  reply lookup_instruments(std::vector<uint64_t> ids);
  // Customers (actors/customers.hpp): KYC records (a kyc gateway's), the policy of tiers
  // and risk profiles (operators'), customers by wallet id, and the policy as it is.
  reply customers(std::vector<wire::customer_op> ops);
  reply policies(std::vector<wire::policy_op> ops);
  reply lookup_customers(std::vector<uint64_t> wallets);
  // Each wallet's positions (results: ok or account_not_found; at most
  // wire::lookup_positions_max wallets).
  reply lookup_positions(std::vector<uint64_t> wallets);
  reply lookup_policy();
  // Trading (actors/trading.hpp): orders (each placed with its hold, then sent to a
  // broker), a broker's fills and rejects (from its session), clients' cancels, orders
  // by id (open ones, and closed ones the portfolio still keeps).
  reply orders(std::vector<wire::order> o);
  reply order_answers(const std::string& broker, std::vector<wire::order_answer> a);
  reply cancel_orders(std::vector<wire::order_cancel> c);
  // Operators' retries of dead letters (order_not_dead for any other order): routed afresh.
  // `force`: dead letters a broker may have too (order_may_be_traded otherwise: the
  // operator checked with that broker; op_kind::order_retries_forced).
  reply retry_orders(std::vector<wire::order_cancel> c, bool force = false);
  reply lookup_orders(std::vector<uint64_t> order_ids);
  // Rebalancing (actors/portfolio.hpp, plan_rebalance): the orders that bring `wallet`'s
  // portfolio within drift_bp of its profile's model, planned on its shard and placed as
  // one orders batch (ids from first_order_id; the caller keeps 128 ids free there).
  reply rebalance(uint64_t wallet, uint64_t first_order_id, uint32_t drift_bp, uint32_t slippage_bp,
                  uint32_t expires_s = 0);
  // Where order instructions go (as for payouts: on a shard thread, per broker id).
  using order_sink = std::function<void(const std::string& broker, std::vector<wire::order_instruction>&&)>;
  void set_order_sink(order_sink s);

  // Takes a snapshot now (after every request submitted before it); false on failure.
  // Asked while the engine closes, it gets the final checkpoint's outcome; after close(),
  // false at once ("the engine is closed").
  bool checkpoint(std::string* error);
  // Stops accepting, finishes what was accepted, snapshots, stops. Idempotent. Returns
  // why the stop was not clean (writes had been refused until restart, or the final
  // checkpoint failed: the next start replays the log), or empty; the same each call.
  std::string close();

  [[nodiscard]] const recovery_report& recovery() const;
  [[nodiscard]] engine_stats stats();
  [[nodiscard]] uint32_t shards() const;
  // Per currency, debits must equal credits, posted and pending: the ledger's invariant,
  // checked from state alone. Runs in the request stream (a consistent point across
  // shards), so it may be called at any time.
  // Also checks every equb group against its escrow account (actors/equb_group.hpp).
  struct balance_check {
    bool balanced = true;
    std::string detail;
    uint64_t groups_checked = 0;
  };
  balance_check check_balances();
  // Reads the log on disk (read-only, while the engine runs) up to the lsn durable now.
  // Segments are not dropped while it runs. Takes seconds on a big log: call it from a
  // thread that may wait (the admin actor). `cancel`, when set (the admin endpoint
  // stopping), ends the check at the next record: `stopped`, neither intact nor damaged.
  log_verification verify_log(const std::atomic<bool>* cancel = nullptr);
  std::vector<shard_report> shard_reports();
  // The payouts the desks hold, by currency and state (gateway and day 0), as each shard
  // published after its last batch: no request, no pass over the payouts (lookup_payouts
  // counts them by gateway and day too, through the shards).
  std::vector<actors::payouts::payout_count> payouts_held();
  // Subscriptions to the event stream (nullptr when the engine keeps no event log).
  event_hub* events();
  event_stats events_stats();
  // The actor system the shards run in; the admin endpoint spawns its actor here.
  caf::actor_system& actor_system();

 private:
  explicit engine(std::unique_ptr<engine_impl> impl);
  std::unique_ptr<engine_impl> impl_;
};

}  // namespace mesob::engine
