// shard: the accounts (lightweight actors) and pending transfers of one partition.
//
// Ownership: one shard per core; a shard's state is touched only by the thread running
// its CAF actor (actors/shard_actor.hpp), one batch at a time, in log order. Accounts
// are not CAF actors (about 1.2 KB each there); each account is an 80-byte record in
// `slots_`, reached by id through a flat hash index, and is only ever changed by
// messages (batches) addressed to its shard. Account i lives on shard_of(i, count).
//
// Lifecycle: constructed empty, loaded from a snapshot (load_*), then fed batches by
// execute() until the engine stops. Nothing here blocks except the cross-shard wait
// in a sync_slot, which needs every shard on its own thread (detached actors).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "actors/batch.hpp"
#include "actors/flat_map.hpp"
#include "actors/ledger_rules.hpp"
#include "actors/payout_desk.hpp"
#include "actors/placement.hpp"
#include "actors/record_store.hpp"
#include "actors/trading.hpp"

namespace mesob::actors {

// Read from any thread: the shard publishes these after every batch.
struct shard_stats {
  uint64_t accounts = 0;
  uint64_t pending_total = 0;  // pending transfers resident: live, and resolved not yet evicted
  uint64_t pending_open = 0;   // of them, still pending (what pending_max bounds)
  uint64_t expiry_entries = 0;  // the expiry heap's entries, stale ones included
  uint64_t sync_waits = 0;
  uint64_t memory_bytes = 0;
  uint64_t cut_us_last = 0;  // how long the last checkpoint cut paused this shard
  uint64_t cut_us_max = 0;
  uint64_t queue_depth = 0;       // dispatch messages sent to the shard and not handled yet
  uint64_t batches_executed = 0;  // batches this shard took part in
  uint64_t customers = 0;         // KYC records of wallets on this shard
  uint64_t groups = 0;            // equb groups hosted here, ended ones not yet retired included
  uint64_t orders_open = 0;       // orders open in this shard's portfolios
  uint64_t orders_ending = 0;     // of them, cancelled or expired here, their broker not yet confirmed
  uint64_t fills = 0;             // fills taken since the start
  uint64_t settle_refusals = 0;   // orders' settlements the ledger refused since the start
  uint64_t group_refusals = 0;    // equb groups' obligations refused, waiting for a retry
  uint64_t orders_dead = 0;       // open orders that are dead letters
  uint64_t orders_halted = 0;     // open orders a halt (or a stale price) holds from brokers
  uint64_t order_timeouts = 0;    // brokers' answer timeouts since the start
  uint64_t order_timers = 0;      // the orders' timers held (those of orders gone until compacted)
  uint64_t payout_timers = 0;     // the payout desks' timers held (stale ones until compacted)
};

class shard {
 public:
  shard(uint32_t index, uint32_t count, record_store& records, size_t accounts_hint);

  // Executes a batch. A batch's cross-shard transfers may be set aside past its end
  // (actors/README.md); `executed` hands the batch over, and its `done` runs (from the
  // last shard to finish it) once none of them is. `finish_all` settles and finishes
  // everything: call it before waiting for the next message.
  void execute(batch& b);
  void executed(batch& b);
  void finish_all();

  // Checkpoint cuts, copy-on-write: begin_cut() is O(1) in accounts; the shard then
  // copies `slice` owed accounts per continue_cut() call (true when all are copied) and
  // copies any owed account just before a batch changes it. Pauses stay short.
  // Expires pending transfers due by `now` (engine clock). Shards expire lazily, when a
  // batch reaches them; before a cut each one catches up to the cut's clock, so the two
  // copies of a cross-shard pending transfer agree in the snapshot.
  void expire_until(uint64_t now);
  // With the event log kept: the pending transfers whose record this shard owns that
  // expired since the last take_expired(), for the event group being handled.
  void keep_expired(bool on) {
    keep_expired_ = on;
    if (on) {
      auto decided = [this](wire::event&& e) {
        e.lsn = decision_lsn_;
        decided_.push_back({decision_slot_, std::move(e)});
      };
      groups_.set_events(decided);
      desks_.set_events(decided);
      if (index_ == 0) market_.set_events(decided);
      trading_.set_events(decided);
    }
  }
  void take_expired(std::vector<expired_pending>& out) { out.swap(expired_); expired_.clear(); }
  void take_decided(std::vector<decision>& out) { out.swap(decided_); decided_.clear(); }
  void begin_cut(std::shared_ptr<checkpoint_cut> c);
  bool continue_cut(size_t slice);
  std::shared_ptr<checkpoint_cut> end_cut();
  [[nodiscard]] bool cutting() const { return cut_ != nullptr; }

  // Recovery (before the first execute).
  void load_account(const account& a, uint64_t last_serial);
  void load_pending(const pending_info& p);

  // Resolved pending transfers (posted, voided, expired) leave memory once a committed
  // snapshot holds their final state; a later post or void of one reads it back through
  // this (from the snapshot's pending table; true when found and resolved). Set before
  // the first execute.
  using resolved_reader = std::function<bool(uint64_t serial, pending_info* out)>;
  void set_resolved_reader(resolved_reader r) { read_resolved_ = std::move(r); }

  [[nodiscard]] const account* find_account(uint64_t id) const;
  // The equb groups this shard hosts (actors/equb_group.hpp). The engine sets the
  // emission sink, loads groups at recovery and, idle, reads them.
  [[nodiscard]] equb::group_table& groups() { return groups_; }
  // Pending transfers still pending here (at recovery, after the snapshot's are loaded).
  [[nodiscard]] uint64_t pending_open() const { return pending_open_; }
  // The pending transfer of `serial` when it is resident here and still pending (idle:
  // the engine's checks at recovery).
  [[nodiscard]] const pending_info* open_pending(uint64_t serial) const;
  // The payout desks this shard hosts, and its copy of the gateway registry and sessions
  // (actors/payout_desk.hpp).
  [[nodiscard]] payouts::desk_table& desks() { return desks_; }
  // This shard's copy of the market (actors/market.hpp); shard 0's makes its events.
  [[nodiscard]] market::book& market() { return market_; }
  // The customers whose wallets this shard holds, and its copy of the policy
  // (actors/customers.hpp).
  [[nodiscard]] customers::table& customers() { return customers_; }
  [[nodiscard]] customers::policy& policy() { return policy_; }
  // The portfolios of wallets on this shard and their orders (actors/trading.hpp).
  [[nodiscard]] trading::table& trading() { return trading_; }
  // Publishes what the shard's loaded state says (its next deadline, counts) once
  // recovery has loaded and replayed it, before the sequencer starts: a shard no batch
  // reaches after a restart would otherwise publish nothing (its timed pending
  // transfers would not be ticked for). Shards idle.
  void publish_loaded() { publish_stats(); }
  // Earliest engine time at which a group's round may close on its deadline, a payout,
  // order or market timer fires, or a pending transfer expires (as of the last batch
  // executed).
  [[nodiscard]] uint64_t next_deadline() const { return pub_next_deadline_.load(std::memory_order_relaxed); }
  // Whether a group's round deadline or close is scheduled (a group is active; or one
  // ended whose entries have not come due yet).
  [[nodiscard]] bool groups_scheduled() const {
    return pub_groups_due_.load(std::memory_order_relaxed) != UINT64_MAX;
  }
  // Whether an order waits for a broker or is ending here (trading::orders_on_up_time).
  [[nodiscard]] bool orders_on_up_time() const { return pub_orders_on_up_time_.load(std::memory_order_relaxed); }
  [[nodiscard]] uint32_t index() const { return index_; }
  // This shard's share of a batch's capacity (accounts_max, groups_max or pending_max,
  // logged with it; 0 before rules_capacity, or rules_pending_capacity for pending_max:
  // none): rounded up, and within the 32-bit slot index.
  [[nodiscard]] uint64_t share(uint64_t capacity) const {
    constexpr uint64_t slots_max = UINT32_MAX;
    return capacity == 0 ? slots_max : std::min(slots_max, (capacity + count_ - 1) / count_);
  }
  // The first portfolio here whose open orders' holds differ from its wallet's pending
  // transfers to and from the trading accounts ("" when none): audit_trading at a start,
  // passing over wallets with a settlement the ledger refused (an operator's to see,
  // reported by the audit).
  [[nodiscard]] std::string portfolios_disagree() const;
  [[nodiscard]] shard_stats stats() const;
  // The payouts this shard's desks hold, by currency and state, as of its last batch:
  // from the desks' held figures, without a pass over the payouts.
  [[nodiscard]] std::vector<payouts::currency_held> payouts_held() const;
  // Queue depth for operators: the sequencer counts each dispatch message it sends, the
  // shard's actor each one it has handled (with the batches in it).
  void dispatch_sent() { dispatches_sent_.fetch_add(1, std::memory_order_relaxed); }
  void dispatch_handled(size_t batches) {
    batches_handled_.fetch_add(batches, std::memory_order_relaxed);
    dispatches_handled_.fetch_add(1, std::memory_order_relaxed);
  }
  template <class F>
  void for_each_account(F&& f) const {
    for (const auto& s : slots_) f(s.a);
  }

 private:
  struct op_inputs {
    const account* dr = nullptr;
    const account* cr = nullptr;
    pending_lookup lookup = pending_lookup::not_found;
    const pending_info* p = nullptr;
    // The groups' part: an equb payment's verdict, or a refusal of any other transfer
    // touching a group's escrow account (each from the shard owning that side).
    result verdict_debit = result::ok;
    result verdict_credit = result::ok;
    [[nodiscard]] result verdict() const { return verdict_debit != result::ok ? verdict_debit : verdict_credit; }
  };
  struct undo_entry {
    enum class what : uint8_t { account, pending_changed, pending_created, customer } kind;
    uint32_t index;
    account acct;
    pending_info pending;
    uint64_t last_serial;
    customers::customer cust{};  // what::customer: the record before
  };

  void execute_accounts(batch& b);
  void execute_status(batch& b);
  void execute_lookup_accounts(batch& b);
  void execute_account_queries(batch& b);
  void execute_equb(batch& b);
  void execute_lookup_groups(batch& b);
  void execute_payout_answers(batch& b);
  void chain_done(const transfer& first, result r, uint64_t ts);
  void execute_payout_ops(batch& b);
  void execute_market(batch& b);
  void execute_customers(batch& b);
  void execute_order_answers(batch& b);
  void order_verdict(const batch& b, uint32_t o, op_inputs& in) const;
  // The order's wallet is of another currency or not open (the ledger's to refuse).
  [[nodiscard]] bool order_wallet_unfit(const batch& b, uint32_t o, const op_inputs& in) const;
  void limit_verdicts(const batch& b, uint32_t o, op_inputs& in) const;
  void audit_groups(batch::group_audit& out) const;
  void audit_trading(batch::group_audit& out, bool starting = false) const;
  void group_verdicts(const batch& b, uint32_t o, op_inputs& in) const;
  void link_history(uint32_t idx, uint64_t serial, bool debit_side);
  void execute_transfers(batch& b);
  void prefetch_op(const batch& b, uint32_t o, bool data) const;
  void run_chain(batch& b, uint32_t first, uint32_t last);
  op_inputs gather(batch& b, uint32_t o, bool sync);
  void publish_part(batch& b, uint32_t o, const op_inputs& in);
  op_inputs read_slot(batch& b, uint32_t o);
  [[nodiscard]] bool deferrable(const batch& b, uint32_t o) const;
  void run_plain(batch& b, uint32_t o);
  void settle_oldest();
  void settle_ready();
  void settle_all();
  void finish_ready();
  pending_lookup lookup_pending(const op_route& r, const pending_info** out);
  void apply(batch& b, uint32_t o, const op_inputs& in, bool keep_undo);
  void write_result(batch& b, uint32_t o, result r);
  [[nodiscard]] uint32_t writer_of(const op_route& r) const;
  void sweep(uint64_t now);
  account* local_account(uint64_t id);
  void save_account(uint32_t idx, bool keep_undo);
  void mark_dirty(uint32_t idx);
  pending_info* local_pending(uint64_t serial);
  void note_pending_change(uint32_t idx);
  void add_pending(const pending_info& p, bool changed);
  void evict_resolved(uint64_t committed_cut);
  void remove_pending(uint32_t idx);
  // Every change of a resident entry's state goes through these, which keep pending_open_.
  void set_pending_state(pending_info& p, pending_state s);
  void restore_pending(uint32_t idx, const pending_info& before);
  void pending_room_verdict(const batch& b, uint32_t o, op_inputs& in) const;

  uint32_t index_;
  uint32_t count_;
  uint32_t bit_;
  record_store& records_;
  // Per account, everything a transfer touches in one 96-byte slot (two cache lines;
  // as three arrays it was four): the record, the head of its history (serial + 1 of
  // its newest applied transfer) and its dirty epoch. Big and read at random: on huge
  // pages (wire/huge_pages.hpp).
  struct alignas(32) account_slot {
    account a;
    uint64_t last_serial = 0;
    uint8_t dirty = 0;
  };
  static_assert(sizeof(account_slot) == 96);
  std::vector<account_slot, huge_page_allocator<account_slot>> slots_;
  [[nodiscard]] uint32_t slot_index(const account* a) const {
    return uint32_t(reinterpret_cast<const account_slot*>(a) - slots_.data());
  }
  flat_u64_map account_index_;
  // account_slot::dirty: the epoch in which it became dirty (0: clean since its copy).
  // Epochs advance at each cut, so starting a cut marks nothing: the accounts of the
  // previous epoch are the ones owed to it. Values in use are only 0, the cut's epoch
  // and the current one, so wrapping (skipping 0) is harmless.
  static constexpr uint8_t clean = 0;
  uint8_t epoch_ = 1;
  uint8_t cut_epoch_ = 0;  // epoch owed to the cut in progress
  std::vector<uint32_t> dirty_;
  std::shared_ptr<checkpoint_cut> cut_;
  std::vector<uint32_t> owed_;
  size_t owed_pos_ = 0;
  void note_pause(std::chrono::steady_clock::time_point t0);
  std::vector<pending_info> pendings_;
  flat_u64_map pending_index_;  // serial + 1 -> index in pendings_
  // Entries of pendings_ still pending: a new pending transfer needs this under the
  // shard's share of its batch's capacity (pending_max; engine/README.md "Capacity").
  // Changed only in batch order (creates, posts, voids, expiry, rollbacks), never by
  // evictions, so a replay counts the same whenever its checkpoints ran.
  uint64_t pending_open_ = 0;
  // Pending entries created or changed since the last cut (by serial; a flag per entry
  // keeps each listed once): a cut copies only these.
  std::vector<uint8_t> pending_changed_flag_;  // parallel to pendings_
  std::vector<uint64_t> pending_changed_;
  // Resolved entries handed to a cut, as (cut sequence, serial), in cut order: evicted
  // once that cut (or a later one, which carries it on failure) has committed.
  std::vector<std::pair<uint64_t, uint64_t>> evictable_;
  size_t evictable_pos_ = 0;
  resolved_reader read_resolved_;
  equb::group_table groups_;
  payouts::desk_table desks_;
  market::book market_;
  uint16_t rules_ = rules_newest;  // the batch's (its log record's version in replay)
  customers::table customers_;
  customers::policy policy_;
  trading::table trading_;
  std::atomic<uint64_t> pub_next_deadline_{UINT64_MAX};
  std::atomic<uint64_t> pub_groups_due_{UINT64_MAX};
  std::atomic<bool> pub_orders_on_up_time_{false};
  pending_info resolved_copy_;  // the evicted entry a lookup read back
  bool keep_expired_ = false;
  std::vector<expired_pending> expired_;
  std::vector<decision> decided_;  // groups' and desks' decisions, each with its batch and place
  // Where the next decision is made (set before each call to groups_ or desks_ that may
  // make one).
  void deciding(const batch& b, uint32_t slot) {
    decision_lsn_ = b.lsn;
    decision_slot_ = slot;
  }
  uint64_t decision_lsn_ = 0;
  uint32_t decision_slot_ = 0;
  std::vector<std::pair<uint64_t, uint64_t>> expiry_heap_;  // (expires_at, serial), min-heap
  static constexpr size_t expiry_heap_rebuild_min = 4096;
  std::atomic<uint64_t> pub_expiry_entries_{0};
  void tidy_expiry_heap();
  std::vector<undo_entry> undo_;
  // Cross-shard transfers published and set aside until the other part arrives, oldest
  // first from set_aside_pos_ (execute_transfers), with the local account each holds;
  // they may span the batches of one dispatch. Batches executed but not yet finished
  // (one of their transfers is still set aside), oldest first from executed_pos_.
  struct set_aside_op {
    batch* b;
    uint32_t op;
    uint64_t account_id;
  };
  static constexpr size_t set_aside_max = 64;
  std::vector<set_aside_op> set_aside_;
  size_t set_aside_pos_ = 0;
  std::vector<batch*> executed_;
  size_t executed_pos_ = 0;
  uint64_t sync_waits_ = 0;
  void publish_stats();
  void publish_held();  // the desks' held figures, when they moved (publish_stats does it too)
  // The groups', payout desks' and portfolios' memory walks every one: counted again
  // every 4,096 batches, not after each (with 100,000 groups that walk made every batch
  // cost milliseconds; with 300,000 payouts held it was 13% of a payout run's CPU).
  size_t group_bytes() {
    if (group_bytes_age_++ % 4096 == 0) group_bytes_ = groups_.memory_bytes() + desks_.memory_bytes() + trading_.memory_bytes();
    return group_bytes_;
  }
  size_t group_bytes_ = 0;
  uint64_t group_bytes_age_ = 0;
  std::atomic<uint64_t> pub_accounts_{0}, pub_pending_{0}, pub_pending_open_{0}, pub_sync_waits_{0}, pub_memory_{0}, pub_customers_{0}, pub_groups_{0};
  std::atomic<uint64_t> pub_orders_open_{0}, pub_orders_ending_{0}, pub_fills_{0}, pub_settle_refusals_{0}, pub_group_refusals_{0}, pub_orders_dead_{0}, pub_orders_halted_{0}, pub_order_timeouts_{0},
      pub_order_timers_{0}, pub_payout_timers_{0};
  mutable std::mutex pub_held_mu_;
  std::vector<payouts::currency_held> pub_held_;  // rebuilt when the desks' held_version moves
  std::vector<payouts::currency_held> held_scratch_;
  uint64_t pub_held_version_ = UINT64_MAX;
  alignas(64) std::atomic<uint64_t> dispatches_sent_{0};  // written by the sequencer
  alignas(64) std::atomic<uint64_t> dispatches_handled_{0};  // by the shard's actor
  std::atomic<uint64_t> batches_handled_{0};
  alignas(64) std::atomic<uint64_t> last_cut_us_{0};
  std::atomic<uint64_t> max_cut_us_{0};
};

}  // namespace mesob::actors
