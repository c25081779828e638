// equb_group: the equb groups one shard hosts, as lightweight actors (a group is a
// record reached by id, like an account, changed only by the batches its shard
// executes, in log order). A group lives on the shard of its escrow account, whose id is
// the group's id.
//
// Money in: a member pays with an ordinary transfer, flagged transfer_flags::equb, from
// its wallet to the escrow account (user_data = round << 32 | seat; round 0 joins).
// The escrow's shard decides the group's part (`verdict`) from the group as it stands at
// that transfer's place in the log; for a transfer that crosses shards it publishes the
// verdict in the sync slot beside its account copy, so both shards reach the same
// result. The ledger's own checks come first, then the group's. On ok, `paid` applies
// the payment to the group.
//
// Money out (and a cover in): payouts, fees, debts forwarded, refunds are decided by the
// rules at a deterministic point (a payment that completes a round, a deadline passing,
// a group operation) and owed by the group from then on: an *obligation*, a chain of
// transfers with ids the group derives from its step counter (emitted_id), in a space
// clients may not use. The shard hands each new obligation to the engine (an emission),
// which sequences and logs it like any request. When the escrow's shard executes that
// chain, the group learns its outcome (`chain_done`; a repeat's too: it finds no
// obligation at a step already settled, and a refused one's keeps it refused): ok
// settles the obligation; a refusal (say a frozen wallet) keeps it, money still
// reserved, until a `retry` operation emits it again under new ids. A debt's forward to a
// guarantor whose cover for that round the ledger has not carried yet is an obligation
// held back (waits_for), sent to whoever paid that cover when it is carried; so is a
// dividend only a close's cover backs (waits_too, rules_cover_backs_credits), sent when
// that close's chain is carried. Obligations are part
// of the group's state (snapshots), so after a crash every one that no log record
// carries is emitted again at the end of recovery (a held one once its cover is carried,
// as live); one the log holds was settled by
// replay. A repeat of an emitted chain changes nothing.
//
// The group's `escrow` field is what its escrow account holds once every obligation is
// carried: the account's balance equals escrow_expected() at every log position.
//
// A closed account refuses every payment for good: replace_account (an operation) puts
// another account wherever the group names the old one, the refused obligations
// included, and a retry sends them again. An ended group takes one kind of payment: a
// seat's debts, all at once (equb_rules.hpp, repay). Once nothing is owed it retires
// retire_after_ns after it ended (close_due): out of the table, its escrow closed, a
// tombstone row keeping its number taken.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/equb_rules.hpp"
#include "actors/payout_desk.hpp"
#include "actors/rules_version.hpp"
#include "wire/codec.hpp"
#include "wire/types.hpp"

namespace mesob::actors::equb {

// Ids of transfers groups emit: hi's top 40 bits are 0xE9B05EED00, its low 24 bits the
// step; lo is the group id. A client's transfer with such an id is refused
// (id_reserved): a random 128-bit id lands there with probability 2^-40, and the
// boundary values clients like (0, all ones) are outside it.
constexpr uint64_t emitted_hi = 0xE9B05EED00000000ull;
constexpr uint64_t emitted_hi_mask = 0xFFFFFFFFFF000000ull;
constexpr uint32_t steps_max = 1u << 24;
[[nodiscard]] inline bool reserved_id(const wire::id128& id) { return (id.hi & emitted_hi_mask) == emitted_hi; }
[[nodiscard]] inline wire::id128 emitted_id(uint64_t group_id, uint32_t step) {
  return {group_id, emitted_hi | step};
}
// Transfer codes of emitted transfers: 0xE000 + purpose (a payout_out hold carries its
// rail instead, as every payout hold does).
constexpr uint16_t emitted_code_base = 0xE000;

// A group's payout sent on through a gateway is a payout the engine makes: its id is
// 1 << 63 | the group's number << 24 | the step of its hold, unique engine-wide (numbers
// are, and a group's steps are), the same whenever the obligation is sent again (after a
// crash: the log or the snapshot keeps its step), and new when a refused one is retried
// (new steps), so a refused hold's id is never asked to carry another.
static_assert(numbers_max <= (payouts::engine_payout_bit >> 24));
[[nodiscard]] inline uint64_t group_payout_id(uint64_t number, uint32_t step) {
  return payouts::engine_payout_bit | number << 24 | step;
}
// The number a create operation carries (the engine's, in its seed's first 8 bytes).
[[nodiscard]] uint64_t number_of(const wire::equb_op& op);
void set_number(wire::equb_op& op, uint64_t number);

struct obligation {
  uint32_t first_step = 0;  // its transfers have steps first_step, first_step + 1, ...
  bool refused = false;     // the ledger refused it; waits for a retry
  wire::result refusal = wire::result::ok;
  // A round's close that carries a guarantor's cover (rules_cover_forwards_wait): that
  // round (0: none). Forwards of debts missed in it wait until the ledger carries this.
  uint32_t covers_round = 0;
  // Debt forwards held back: not sent until the obligations covering rounds `waits_for`
  // (the debts' round) and `waits_too` (a close whose cover pays the payout they were
  // taken from) are carried; each becomes 0 as its cover is carried. When the debts'
  // round's is, its forwards go to the account that paid that cover (the guarantor then,
  // whatever replace_account did since). Both 0: sent. Dividends a close's cover funds
  // (rules_cover_backs_credits) are held back as well, waits_too that close alone.
  uint32_t waits_for = 0;
  uint32_t waits_too = 0;
  std::vector<money> transfers;
};
[[nodiscard]] inline bool held_back(const obligation& o) { return o.waits_for != 0 || o.waits_too != 0; }
// Sent to the ledger and not answered yet: neither refused nor held back.
[[nodiscard]] inline bool in_flight(const obligation& o) { return !o.refused && !held_back(o); }

// An ended group with nothing owed is kept this long for look-ups, then retired
// (rules_groups_retire); one with something owed is looked at again as long after.
constexpr uint64_t retire_after_ns = 30ull * 86'400 * 1'000'000'000;
// At most this many retire in one batch (an upgrade's first batch finds every group that
// ended before it due at once): the rest wait for the next batch, a tick later.
constexpr uint32_t retires_per_batch_max = 4'096;

// Obligations a group sends one transfer each (refunds, forwards, shared parts, held
// shares: rules_refunds_apart, rules_equb_forwards_apart) while it owes fewer than this;
// from rules_equb_forwards_apart the rest of a decision's go together, as before those
// rules. Settling an obligation looks it up and removes it from the group's list, a cost
// in the list's length: a guarantor short for many rounds of a 1,000-seat group would
// otherwise leave a million one-transfer obligations, each settled at a million's cost.
constexpr size_t owed_apart_max = 1'024;

struct group_entry {
  group_state g;
  uint32_t next_step = 0;
  std::vector<obligation> owed;  // oldest first
  uint64_t created_at = 0;
  // An ended group's next look at retiring (engine time; 0 while it has not ended).
  uint64_t retire_at = 0;
  // events so far: the lottery's revealed seeds and recipients, per round
  struct round_result {
    uint32_t round = 0;
    uint32_t seat = 0;
    seed revealed{};
  };
  std::vector<round_result> history;
  bool listed_dirty = false;  // in its table's dirty list (not part of the stored state)
};
// When a group that ended under rules older than rules_groups_retire (or in an entry of
// an older snapshot) is looked at first: its schedule's end (its last round's close; its
// creation if it never started) plus retire_after_ns. A function of what the group
// holds once ended, so a start from any snapshot or the log alone agrees on it.
[[nodiscard]] uint64_t legacy_retire_at(const group_entry& e);
// What the escrow account must hold: escrow plus what obligations still take out, less
// what they bring in.
[[nodiscard]] uint64_t escrow_expected(const group_entry& e);
// The chain an obligation is emitted as (linked, ids from its steps), with `shards`
// shards (a payout_out hold goes to the payout account of its wallet's shard).
[[nodiscard]] std::vector<wire::transfer> chain_of(const group_entry& e, const obligation& o, uint32_t shards);

// Byte form for snapshots (version 5: the same bytes, an obligation held back may pay
// dividends; version 4: each obligation's covers_round, waits_for and waits_too;
// version 3: retire_at at the end; version 2: a payout_out
// transfer carries its rail and destination; versions 1 and 2 are read too, an ended
// group's retire_at then its last round's close, or its creation, plus retire_after_ns).
// The group's own bytes are encode_group's. The reader refuses damage it can see, as
// decode_group does.
[[nodiscard]] std::vector<uint8_t> encode_entry(const group_entry& e);
bool decode_entry(std::span<const uint8_t> bytes, group_entry* out, std::string* why);

// A retired group's row (a tombstone): its id stays an escrow account's, and its number
// stays taken (payout ids carry it). decode_retired is false for any other row.
struct retired_group {
  uint64_t group_id = 0;
  uint64_t number = 0;
  uint64_t retired_at = 0;
};
[[nodiscard]] std::vector<uint8_t> encode_retired(const retired_group& r);
[[nodiscard]] bool decode_retired(std::span<const uint8_t> bytes, retired_group* out);

// The group as it travels (wire/mesob.fbs, Group), and about how many bytes a look-up of
// it copies and sends at most (its seats, paid-out rounds and the payments it owes on
// the wire, and its seats' debts, copied with it though only their sums travel; look-ups
// bound their copies by it).
[[nodiscard]] wire::group_item to_item(const group_entry& e);
[[nodiscard]] size_t item_bytes(const group_entry& e);

// The config a create operation asks for, and the create operation of a config (its
// inverse: the form a config travels and is compared in).
[[nodiscard]] group_config config_of(const wire::equb_op& op);
[[nodiscard]] wire::equb_op create_op_of(const group_config& c);
// Field checks of a group operation (no state): kind, group id, fields it must not set.
[[nodiscard]] wire::result check_op_fields(const wire::equb_op& op);
// What refuses a new group by its configuration alone under `rules` (check_config, the
// period cap, grace within the period, a bidding commission's cap, an id or account the
// engine reserves); ok if none does. A create of a group that exists is a repeat or
// exists_with_different_fields whatever this says (it is compared first). The sequencer
// gives no group number to a create this refuses.
[[nodiscard]] wire::result new_group_refusal(const group_config& c, uint16_t rules);

class group_table {
 public:
  using emit_fn = std::function<void(std::vector<wire::transfer>&&)>;
  // Live: obligations go to `emit` as they arise. Not set (recovery): they are only
  // recorded, and the engine emits what is left at the end of replay.
  void set_emit(emit_fn f) { emit_ = std::move(f); }
  // The engine's shard count (chain_of) and whether a gateway serves a rail in a
  // currency, as of the batch being executed (payout_to; the shard's registry).
  void set_shards(uint32_t n) { shards_ = n; }
  using rail_check_fn = std::function<bool(uint8_t rail, wire::currency_code c)>;
  void set_rail_check(rail_check_fn f) { rail_served_ = std::move(f); }
  // Whether an account has the id (a create's escrow), asked before the capacity check
  // from rules_groups_retire: a retired group's id is group_account_exists, full or not.
  void set_account_check(std::function<bool(uint64_t)> f) { account_taken_ = std::move(f); }
  // The group's own decisions as events (wire::event_type equb_*): lsn and offset are the
  // caller's to fill. Set by the shard when the engine keeps events.
  using event_fn = std::function<void(wire::event&&)>;
  void set_events(event_fn f) { events_ = std::move(f); }
  // The rules a batch is decided by (actors/rules_version.hpp): its log record's version
  // in replay, rules_newest live. Set by the shard around each batch.
  void set_rules(uint16_t version) { rules_ = version; }

  [[nodiscard]] group_entry* find(uint64_t id);
  [[nodiscard]] const group_entry* find(uint64_t id) const;

  // An equb payment whose escrow is on this shard: the group's part of the decision.
  [[nodiscard]] wire::result verdict(const wire::transfer& t, uint64_t ts) const;
  [[nodiscard]] wire::result as_decided(wire::result r) const;
  // It was applied by the ledger (ok).
  void paid(const wire::transfer& t, uint64_t ts);
  // An emitted chain (first transfer `t`) was executed fresh with outcome r.
  void chain_done(const wire::transfer& first, wire::result r);
  // Group operations. create needs the escrow account made: `make_escrow` returns false
  // when an account already has the id. A new group past `groups_max` groups here (ended
  // ones count until they retire) is refused, groups_full; one whose escrow account the
  // shard has no room for (`escrow_room` false: its share of accounts_max held) is
  // refused, accounts_full.
  wire::result execute(const wire::equb_op& op, uint64_t ts, const std::function<bool(const wire::account&)>& make_escrow,
                       uint64_t groups_max = UINT64_MAX, bool escrow_room = true);
  // Rounds whose deadline + grace passed by `now` close (not under hold_round). due() is
  // also true once a round's deadline passes (the engine ticks then: resume), and once an
  // ended group's look at retiring comes (rules_groups_retire).
  [[nodiscard]] bool due(uint64_t now) const {
    return (!deadlines_.empty() && deadlines_.front().first < now) ||
           (rules_ >= rules_groups_retire && !retires_.empty() && retires_.front().first < now);
  }
  // Then ended groups whose retire_at passed by `now` retire if nothing is owed and
  // `retire` agrees (the shard closes the escrow account, if it holds nothing: it
  // returns the account's status_seq after, 0 when it will not), at most
  // retires_per_batch_max a batch (the rest at the next), with an equb_retired event
  // and the escrow's account_status event; take_dirty gives the row's tombstone. Looked
  // at again a retire_after_ns later otherwise.
  using retire_fn = std::function<uint32_t(const group_entry&)>;
  void set_retire(retire_fn f) { retire_ = std::move(f); }
  void close_due(uint64_t now);
  // The engine resumed at `resumed` after an outage from `last_before` (the last timestamp
  // logged before it; a resume marker's, at rules_resume_rebases on): each active group
  // whose deadline or close fell in between is rescheduled (equb::reschedule), with an
  // equb_rescheduled event. Before close_due at that batch.
  void resume(uint64_t last_before, uint64_t resumed);
  // Earliest deadline or close of a round (UINT64_MAX: none): while there is one, the
  // engine logs a heartbeat (resume needs it; ended groups waiting to retire do not).
  [[nodiscard]] uint64_t next_round_deadline() const {
    return deadlines_.empty() ? UINT64_MAX : deadlines_.front().first;
  }
  // That, or an ended group's look at retiring, whichever comes first.
  [[nodiscard]] uint64_t next_deadline() const {
    return std::min(next_round_deadline(), retires_.empty() ? UINT64_MAX : retires_.front().first);
  }
  // Drops the earliest entries while their group is no longer active here (it ended, or
  // is gone): such an entry can never close a round, and left in place it would keep
  // next_deadline() set, and with it the engine's heartbeat, until its time came, a
  // period and grace after the last group ended. Entries of active groups stay (a
  // deadline's tick is logged on purpose: resume).
  void drop_ended();

  // Recovery and checkpoints.
  void load(group_entry&& e);
  // Groups changed since the last call, encoded; groups retired since, as tombstones.
  void take_dirty(std::vector<std::pair<uint64_t, std::vector<uint8_t>>>* out);
  [[nodiscard]] uint64_t retired() const { return retired_count_; }  // since the table was made
  // Obligations the ledger refused, waiting for an operator's retry (`group retry`, after
  // funding or replacing the account that refused): what operators are shown to act on.
  [[nodiscard]] uint64_t refused_obligations() const { return refused_; }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [id, e] : groups_) f(e);
  }
  [[nodiscard]] size_t size() const { return groups_.size(); }
  [[nodiscard]] size_t memory_bytes() const;
  [[nodiscard]] size_t deadline_entries() const { return deadlines_.size(); }  // stale ones included

 private:
  // A new obligation, sent at once (live) unless held back; covers_round: the round whose
  // cover it carries.
  void owe(group_entry& e, std::vector<money>&& m, uint32_t covers_round = 0);
  // Transfers none of which needs another (refunds, forwards of money the escrow holds,
  // dividends): an obligation each from rules_refunds_apart, one chain before.
  void owe_apart(group_entry& e, std::vector<money>&& m);
  // The outcome's forwards and dividends held back: one obligation a transfer from
  // rules_equb_forwards_apart, one per pair of rounds they wait for before.
  void owe_held(group_entry& e, std::vector<outcome::held_forward>&& held);
  // Rounds whose cover an obligation still carries (none before rules_cover_forwards_wait).
  [[nodiscard]] std::vector<uint32_t> uncovered(const group_entry& e) const;
  void after_round(group_entry& e, uint64_t now);
  void schedule(const group_entry& e);
  void schedule_all();  // the deadline heap made again from every group's current round
  void ended_now(group_entry& e, uint64_t now);  // it ended at `now`: its look at retiring
  [[nodiscard]] static bool settled(const group_entry& e);
  void touch(group_entry& e);

  std::unordered_map<uint64_t, group_entry, seeded_u64_hash> groups_;
  std::vector<uint64_t> dirty_;  // groups changed since the last take_dirty, each once
  uint64_t refused_ = 0;         // obligations refused, not retried yet (every group's)
  // (a round's deadline, or its deadline + grace; group id): a min-heap; deadlines and
  // stale entries are passed over by close_due.
  std::vector<std::pair<uint64_t, uint64_t>> deadlines_;
  // (retire_at, group id) of ended groups: a min-heap; entries whose group's retire_at
  // moved or that is gone are passed over.
  std::vector<std::pair<uint64_t, uint64_t>> retires_;
  std::vector<retired_group> retired_rows_;  // retired since the last take_dirty
  uint64_t retired_count_ = 0;
  retire_fn retire_;
  emit_fn emit_;
  event_fn events_;
  rail_check_fn rail_served_;
  std::function<bool(uint64_t)> account_taken_;
  uint32_t shards_ = 1;
  uint16_t rules_ = rules_newest;
};

}  // namespace mesob::actors::equb
