// payout_desk: payouts through payment gateways, as lightweight actors on the shard of
// their payout account: one desk per currency and shard.
//
// A payout request becomes a pending transfer, the *hold*: wallet -> a payout account of
// the currency (an engine-made system account), id {payout id, hold_hi}. Each currency
// has a payout account per shard (desk_account_for: the first desk slot whose account
// lives on that shard), and a hold goes to the one on its wallet's shard, so that holds
// and their posts and voids never wait for another shard. After a start with another
// shard count, the desks of the old slots keep the payouts they hold (wherever their
// accounts now live) and new payouts go to the new count's slots. When the payout
// account's shard applies the hold (`held`), its desk takes the payout and routes it: the best gateway (lowest priority, then number) that is enabled, of the payout's
// rail, serves the currency, has a session up, whose circuit breaker lets it through, and
// that the payout has not given up on. It records an *attempt* and hands an instruction
// (payout id, attempt, amount, destination) to the instruction sink, which pushes it to
// that gateway's sessions.
//
// Everything here runs in log order off logged inputs, so replay decides the same:
// answers (wire::payout_answer, the answering gateway filled in by the engine), session
// events (wire::gateway_event, logged by the engine), the engine clock (timeouts), and
// operators' retry and cancel. Instructions are side effects, handed to the sink only
// live (never while replaying); an instruction pushed twice is harmless, since gateways
// key on the payout id.
//
//  - settled (any attempt, even one superseded, even after a dead letter: the money went
//    out) -> the desk emits the post of the hold; once it is done the amount is owed to
//    the settlement account the attempt was sent with, and reaches it in a *sweep*
//    (below). failed
//    (the latest attempt) -> it emits a void of the hold, unless an earlier attempt went
//    to another gateway and was never answered failed (that gateway may still pay): then
//    the payout becomes a dead letter, hold kept, for an operator (a late settlement
//    from that gateway still settles it). A failure for an older attempt is late: it is
//    noted on that attempt and changes nothing else; an answer for a resolved payout is a
//    duplicate and changes nothing.
//  - cancels: a payout that leaves a gateway it may still be paid by (it falls back to
//    another, becomes a dead letter, settles through another, or an operator cancels it)
//    sends that gateway a cancel for its latest attempt there (wire::payout_instruction,
//    kind cancel), again when its first session opens (cancels_on_open_max a desk at a
//    time in payout id order, a page a second while it stays up). The gateway answers that
//    attempt failed if it did not pay, settled if it did. A failed answer from the last
//    gateway that might pay a dead letter `unsettled_elsewhere` releases its hold.
//  - overpayments: a payout that ends (settled, failed, cancelled) while a gateway may still
//    pay it is kept, state `resolved`, until every such gateway has answered or
//    watch_keep_ns passed. A settlement from a gateway that did not settle it, while its
//    post or void is in flight or while it is kept, is an overpayment: the money went out
//    twice (or after the wallet got it back). It is counted in the gateway's
//    reconciliation (overpaid), made an event (payout_overpaid) and answered
//    `payout_overpaid`; the ledger is not changed (recovering the money is an operator's
//    matter, outside the engine).
//  - no answer by the gateway's answer timeout -> the gateway's breaker counts a timeout;
//    after tries_per_gateway timeouts the payout gives that gateway up; it is retried
//    after an exponential backoff with jitter (deterministic: from the payout id and the
//    attempt), on the same gateway while it may, else on the next one: with no session
//    of the gateway up, once it is back and asked (below; before version 49, at once),
//    else after asking it to cancel (below) and waiting one
//    more answer timeout for that answer (a `failed` moves it on at once unless another
//    gateway it went to may still pay it: then it is a dead letter `unanswered`, rules
//    version 38; a `settled` settles it; no answer by then with a session of the gateway
//    up makes it such a dead letter too, from version 38: the gateway can hear and said
//    nothing, and may have paid; the last `failed` of those that may pay sends it on, as
//    for `withdrawn`; with no session up it waits for that gateway, below), so that a
//    gateway that paid and was slow to say so is asked before another pays. A gateway
//    left in an outage (before version 49 the payout went on at once then, to the next
//    gateway) that comes back while the payout waits
//    for a gateway is asked too (rules version 48): routing goes back to it if it is the
//    only gateway that may still pay and takes it (not given up, its breaker admits),
//    else asks it to cancel and waits its answer as above; before, routing went by
//    priority and the cancel went out with the new instruction. The same holds when the backoff ends: the retry goes to its gateway
//    if it may still take it, or leaves it that way (from batch records of version 9;
//    before, the retry went by priority, possibly to a gateway that came up meanwhile
//    while the first could still pay). Only gateways with the payments role take
//    payouts (version 9; before, a broker-only gateway of the rail got them too). At
//    attempts_max attempts, or with every gateway of its rail given up, or after
//    route_wait_max with no gateway to take it (none with a session, or each one's breaker
//    open or probing: a rail whose gateways shed load for ten minutes is an operator's to
//    hear of, so a breaker's wait counts, even one set by an answer timeout of over 150 s,
//    whose cool-down of 4 timeouts is longer), it becomes a dead letter: its hold stays,
//    operators retry it (routes afresh) or cancel it (void; a void the ledger refused,
//    the payout failing with its hold kept, a retry sends again: rules version 43); one a gateway was sent and
//    never answered (it may have paid it) only forced (payout_op_flags::force: the
//    operator checked with it), else payout_may_be_paid (rules version 30). A payout leaving a gateway
//    that may have paid it and whose answers are no longer taken (disabled, removed, or
//    without the payments role) becomes a dead letter at once, `withdrawn` (rules version
//    15; before, it went on to the next gateway): nobody could tell whether it paid, and
//    a second payment would never be seen. That gateway, enabled again, settles it with a
//    `settled`; its `failed` (it did not pay) sends the payout on to the next gateway, as
//    the answer to a cancel does, unless another gateway may still pay it.
//  - breakers, per desk and gateway: closed; open when at least breaker_min of the last
//    breaker_window outcomes are known and half or more are failures or timeouts (a
//    `failed` marked declined, the payment refused while the gateway is well, counts as
//    good from rules version 39: wire::payout_failure); after
//    4 answer timeouts it is half-open and lets one payout through as a probe, whose
//    outcome closes it (good) or opens it again (bad). Each desk (currency and shard)
//    judges from its own payouts, as each instance of a service keeps its own breaker.
//  - a gateway's last session closing leaves its payouts in flight to their answer
//    deadline (the instruction may have reached it, and may be paid: going elsewhere at
//    once would invite a second payment); a deadline passing with no session up counts a
//    timeout, and the payout waits for that gateway (rules version 49; before, it went to
//    the next gateway at once, and both could pay): no other gateway gets it while one
//    it went to since the last operator's retry may pay it and has no session up; that
//    gateway's session opening routes it (back to it, or through its answer to a cancel,
//    as above), its `failed` sends it on at once, and after route_wait_max it is a dead
//    letter `unanswered` (one an operator may retry only forced); the wait goes on
//    through that gateway's asks to cancel, so one that comes and goes without answering
//    does not begin it anew. A session opening re-sends the
//    instructions in flight to it (their deadline unchanged, so that a gateway whose
//    sessions come and go still times out) and routes the payouts that were waiting for
//    a gateway. After a restart (event reset) no gateway is up: payouts in flight stay in
//    flight at their gateway, and those waiting on a gateway's answer to a cancel keep
//    waiting on it, each with a deadline from the restart (the cancel goes again when
//    that gateway's session opens); those waiting out a backoff to try their gateway
//    again keep it, retried no sooner than an answer timeout from the restart (rules
//    version 10); the others wait for a gateway.
//
// Sweeps: per desk and settlement account, what settled payouts owe it moves in one
// transfer (payout account -> settlement account, code code_settle), one in flight at a
// time; the posts that finish meanwhile add to the next. So a payout costs its hold and
// its post, both on the wallet's shard, and the cross-shard move to the settlement
// account is shared by every payout a sweep carries. A refused sweep (say the settlement
// account was frozen) keeps what it owes and is tried again every sweep_retry.
//
// The emitted transfers use ids {step, emit_hi | slot << 24 | currency} from the desk's
// step counter; the engine sequences them like equb groups' (engine/README.md). Their
// outcome comes back through `chain_done`; a refused post (say the wallet was frozen)
// waits for an operator's retry. At every log position the payout account holds,
// pending, the holds of the payouts the desk has, and posted (credits less debits),
// what its sweeps owe.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "actors/breaker.hpp"
#include "actors/flat_map.hpp"
#include "actors/ordered_ids.hpp"
#include "actors/gateway_registry.hpp"
#include "actors/placement.hpp"
#include "actors/rules_version.hpp"
#include "wire/types.hpp"

namespace mesob::actors::payouts {

// Reserved ids (clients get id_reserved / payout_account_reserved): the top 28 bits say
// the kind; below them a desk's ids carry its slot (12 bits) and currency (24 bits).
constexpr uint64_t kind_mask = 0xFFFFFFF000000000ull;
constexpr uint64_t desk_bits = 0x0000000FFFFFFFFFull;   // slot << 24 | currency
constexpr uint64_t account_hi = 0x9A700C0000000000ull;  // payout account: account_hi | slot << 24 | currency
constexpr uint64_t hold_hi = 0x9A700C1000000000ull;     // hold: {payout id, hold_hi}
constexpr uint64_t emit_hi = 0x9A700C2000000000ull;     // emitted: {step, emit_hi | slot << 24 | currency}
constexpr uint32_t desk_slots = 4096;
[[nodiscard]] inline uint64_t desk_account(wire::currency_code c, uint32_t slot) {
  return account_hi | uint64_t(slot & (desk_slots - 1)) << 24 | (c & 0xFFFFFF);
}
[[nodiscard]] inline bool payout_account(uint64_t id) { return (id & kind_mask) == account_hi; }
[[nodiscard]] inline wire::currency_code desk_currency(uint64_t account) { return uint32_t(account & 0xFFFFFF); }
[[nodiscard]] inline uint32_t desk_slot(uint64_t account) { return uint32_t(account >> 24) & (desk_slots - 1); }
// The payout account of currency c for wallets on `shard` of `shards`: the first slot
// whose account lives there (placement.hpp).
[[nodiscard]] inline uint64_t desk_account_for(wire::currency_code c, uint32_t shard, uint32_t shards) {
  return slot_account_for([c](uint32_t k) { return desk_account(c, k); }, desk_slots, shard, shards);
}
// Every shard's payout account of currency c, for `shards` shards (distinct: one each).
[[nodiscard]] inline std::vector<uint64_t> desk_accounts_for(wire::currency_code c, uint32_t shards) {
  std::vector<uint64_t> out;
  for (uint32_t s = 0; s < shards; ++s) out.push_back(desk_account_for(c, s, shards));
  return out;
}
[[nodiscard]] inline wire::id128 hold_id(uint64_t payout_id) { return {payout_id, hold_hi}; }
// Payout ids with the top bit set are the engine's own (equb groups' payouts sent on
// through a gateway: equb_group.hpp, group_payout_id); clients' are refused
// (payout_id_reserved). (A client's from a build before that, should one exist, makes a
// group payout reusing its id a repeat with other fields: the chain is refused, and the
// group's retry sends it under new ids.)
constexpr uint64_t engine_payout_bit = uint64_t(1) << 63;
[[nodiscard]] inline bool engine_payout(uint64_t payout_id) { return (payout_id & engine_payout_bit) != 0; }
[[nodiscard]] inline bool hold(const wire::id128& id) { return id.hi == hold_hi; }
[[nodiscard]] inline bool reserved_id(const wire::id128& id) {
  return (id.hi & kind_mask) == hold_hi || (id.hi & kind_mask) == emit_hi;
}
[[nodiscard]] inline bool emitted(const wire::id128& id) { return (id.hi & kind_mask) == emit_hi; }
[[nodiscard]] inline wire::id128 emitted_id(uint64_t desk, uint64_t step) { return {step, emit_hi | (desk & desk_bits)}; }
[[nodiscard]] inline uint64_t emitting_desk(const wire::id128& id) { return account_hi | (id.hi & desk_bits); }
// Transfer codes the desks emit: the post, the sweep to a settlement account, the void.
constexpr uint16_t code_post = 0xE101, code_settle = 0xE102, code_void = 0xE103;

constexpr uint32_t attempts_max = 8;        // per routing (an operator's retry starts a new one)
// Attempts a payout keeps, over all its routings (every one: a late answer names its
// attempt); its snapshot row holds at most this many. A retry that could pass it is refused.
constexpr uint32_t attempts_kept_max = 1u << 16;
constexpr uint32_t tries_per_gateway = 3;   // timeouts before a payout gives a gateway up
constexpr uint64_t route_wait_max_ns = 600'000'000'000ull;  // 10 min with no gateway: dead letter
constexpr uint64_t route_poll_ns = 1'000'000'000ull;        // a payout with no route looks again
constexpr uint64_t sweep_retry_ns = 60'000'000'000ull;      // a refused sweep is tried again
// ... each retry refused waiting twice as long as the one before, up to an hour
// (rules_sweep_backoff): a settlement account closed for good costs a record an hour.
constexpr uint64_t sweep_retry_max_ns = 3'600'000'000'000ull;
constexpr uint32_t sweep_refusals_max = 16;  // counted up to (60 s << 6 passes the hour)
constexpr uint64_t watch_keep_ns = 30 * 86'400'000'000'000ull;  // a resolved payout waits for late answers
// Cancels a desk re-sends when a gateway's first session opens, a page at a time in
// payout id order (a gateway that never answers them would otherwise get them all in one
// burst, past the server's queue limit), the next page at the first batch at least
// cancel_page_gap_ns later while a session of it is up, until every one went once; an
// opening after a run its sessions' end cut short goes on from past that run's last page. (Before, the next page waited for
// the next opening: a gateway that stayed up never heard of the rest, and paid payouts
// that had moved to another gateway a second time.)
constexpr size_t cancels_on_open_max = 1024;
constexpr uint64_t cancel_page_gap_ns = 1'000'000'000ull;
// Breakers (per desk and gateway) and the retry backoff: actors/breaker.hpp.
using gateways::breaker;
using gateways::breaker_min;
using gateways::breaker_window;
using gateways::phase_name;

enum class state : uint8_t {
  waiting = 1,         // for its backoff, or for a gateway to take it
  in_flight = 2,       // instruction out, answer due
  settling = 3,        // a gateway settled it; the post is emitted
  failing = 4,         // failed or cancelled; the void is emitted
  dead = 5,            // a dead letter: no route; the hold stays
  settle_refused = 6,  // the ledger refused the post (reason); waits for a retry
  resolved = 7,        // ended (settled_by: settled; else failed or cancelled) while a gateway
                       // may still pay it: kept (desk::watched) for that gateway's answer
};
[[nodiscard]] const char* state_name(state s);
// unsettled_elsewhere: the latest attempt failed, but an earlier one went to another
// gateway and never got a definitive answer (it may still pay): an operator decides.
// withdrawn: the gateway it was with may have paid it and can no longer answer (disabled,
// removed, or without the payments role; rules_withdrawn_gateway): an operator decides.
// unanswered: a gateway it went to may have paid it and has not said, and it goes to no
// further gateway meanwhile (rules version 38): the gateway it was leaving, asked to
// cancel, let the wait for its answer pass with a session up (it can hear, and said
// nothing); or that one answered the cancel failed while another it went to since the
// last operator's retry (one left in an outage) still may pay. A `settled` settles it;
// each `failed` is taken, and the last one, nobody left who may pay, sends it on.
enum class dead_reason : uint8_t {
  none = 0,
  attempts = 1,
  routes = 2,
  no_route = 3,
  unsettled_elsewhere = 4,
  withdrawn = 5,
  unanswered = 6,
};
[[nodiscard]] const char* dead_reason_name(dead_reason r);
enum class resolution : uint8_t { settled = 1, failed = 2, cancelled = 3 };
// A timer's decision as an event (wire::event_type::payout_timer): what came due (code)
// and what follows (flags).
enum class timer_due : uint8_t { answer_timeout = 1, backoff_end = 2, cancel_wait = 3, route_poll = 4 };
enum class timer_then : uint8_t { sent = 1, backoff = 2, cancel_asked = 3, route_wait = 4, dead = 5 };

struct attempt {
  uint32_t gateway = 0;
  uint64_t sent_at = 0;
  uint64_t settlement = 0;  // the gateway's settlement account for the currency when sent
  bool failed = false;      // the gateway answered this attempt (or a later one of it) failed
  bool settled = false;     // the gateway answered this attempt settled
};

struct payout_entry {
  uint64_t id = 0;
  uint64_t desk = 0;  // the desk's payout account (the hold's credit account)
  uint64_t wallet = 0;
  uint64_t amount = 0;
  uint64_t destination = 0;
  wire::currency_code currency = 0;
  uint8_t rail = 0;
  state st = state::waiting;
  dead_reason dead = dead_reason::none;
  bool cancelling = false;       // failing because an operator cancelled it
  uint16_t gateway_reason = 0;   // a failed answer's reason
  wire::result refusal = wire::result::ok;  // the ledger's refusal of its chain
  uint64_t created_at = 0;
  uint64_t due = 0;              // in_flight: answer deadline; waiting: next look (0: none)
  uint64_t wait_since = 0;       // waiting with no gateway to take it, since (0: not)
  uint32_t settled_by = 0;       // settling, settle_refused: the gateway that paid it
  uint64_t settlement = 0;       // settling, settle_refused: its settlement account (as sent)
  uint32_t routing_base = 0;     // attempts before the current routing (operators' retries)
  uint64_t chain_step = 0;       // settling, failing: the chain's first step
  uint32_t cancel_wait = 0;      // waiting: for this gateway's answer to a cancel (0: not)
  std::vector<attempt> attempts;     // attempt k at k - 1
  std::vector<uint32_t> given_up;    // gateways this routing gave up on
  bool listed_dirty = false;         // not stored
  uint8_t counted_as = 0;            // not stored: the state desk::held counts it under (0: none)
  uint32_t counted_gateway = 0;      // not stored: the last attempt's gateway desk::counts counts it under
  bool recount_listed = false;       // not stored
};


// Reconciliation, per gateway, UTC day (engine time) and currency: what moved through the
// gateway, to check against its own report. Shards count additive parts (deposits on the
// settlement account's shard, payouts on the desk's); readers and checkpoints sum them.
constexpr uint64_t ns_per_day = 86'400'000'000'000ull;
struct recon_key {
  uint32_t gateway = 0;
  uint32_t day = 0;  // days since 1970-01-01
  wire::currency_code currency = 0;
  friend auto operator<=>(const recon_key&, const recon_key&) = default;
};
struct recon_counts {
  uint64_t deposits = 0, deposits_amount = 0;
  uint64_t settled = 0, settled_amount = 0;
  uint64_t failed = 0, failed_amount = 0;
  uint64_t cancelled = 0, cancelled_amount = 0;
  uint64_t overpaid = 0, overpaid_amount = 0;  // settlements after the payout had ended
  void add(const recon_counts& o) {
    deposits += o.deposits;
    gateways::add_amount(deposits_amount, o.deposits_amount);
    settled += o.settled;
    gateways::add_amount(settled_amount, o.settled_amount);
    failed += o.failed;
    gateways::add_amount(failed_amount, o.failed_amount);
    cancelled += o.cancelled;
    gateways::add_amount(cancelled_amount, o.cancelled_amount);
    overpaid += o.overpaid;
    gateways::add_amount(overpaid_amount, o.overpaid_amount);
  }
};
struct recon_row {
  recon_key k;
  recon_counts c;
};
// Days the shards keep reconciliation rows in memory, counted back from a checkpoint
// cut's day: a row changes only on its own day (engine time never moves back), so an
// older one is final in the snapshot once a cut from its day on has committed, and
// readers find it there (engine::lookup_recon). Every shard drops the same days at the
// same cut, never one a committed cut has not written since it last changed
// (recon_drop_before), so a key in memory holds every shard's part. Over a year, so the
// console lists a year without the snapshot.
constexpr uint32_t recon_days_kept = 400;
// Rows in memory ordered by day first: the days a cut copies, and those dropped, are
// each one range.
struct recon_by_day {
  bool operator()(const recon_key& x, const recon_key& y) const {
    return std::tie(x.day, x.gateway, x.currency) < std::tie(y.day, y.gateway, y.currency);
  }
};
// Snapshot rows: key gateway << 44 | day << 24 | currency; value the counts (10 x u64;
// rows of 8, from before overpayments were counted, read with none).
[[nodiscard]] uint64_t recon_row_key(const recon_key& k);
[[nodiscard]] std::vector<uint8_t> encode_recon(const recon_counts& c);
bool decode_recon(uint64_t key, std::span<const uint8_t> bytes, recon_row* out, std::string* why);

// Payouts held, counted per currency, state, gateway of the last attempt (0: none) and
// UTC day made: what operators see without copying every payout.
struct payout_count {
  wire::currency_code currency = 0;
  state st = state::waiting;
  uint32_t gateway = 0;
  uint32_t day = 0;
  uint64_t n = 0, amount = 0;
};

struct breaker_row {
  uint64_t desk = 0;  // its desk's payout account
  wire::currency_code currency = 0;
  uint32_t gateway = 0;
  breaker b;
};

// What a desk's settled payouts owe one settlement account.
struct sweep {
  uint64_t owed = 0;       // posted into the payout account, not yet moved out (in flight too)
  uint64_t step = 0;       // in flight: its transfer's step (0: none)
  uint64_t amount = 0;     // in flight: what it moves
  wire::result refusal = wire::result::ok;  // the last sweep's refusal (ok: none)
  uint64_t retry_at = 0;   // refused: when it is tried again
  uint32_t refusals = 0;   // refused in a row (up to sweep_refusals_max; 0 after one goes through)
};

struct sweep_row {
  uint64_t desk = 0, settlement = 0;
  sweep s;
};

struct desk {
  uint64_t account = 0;  // its payout account
  wire::currency_code currency = 0;
  uint64_t next_step = 1;
  std::unordered_map<uint64_t, payout_entry, seeded_u64_hash> payouts;  // by payout id
  std::unordered_map<uint64_t, payout_entry, seeded_u64_hash> watched;  // resolved, a gateway may still pay: by id
  std::unordered_map<uint32_t, breaker> breakers;      // by gateway number
  std::map<uint64_t, sweep> sweeps;                    // by settlement account (none owed: none)
  [[nodiscard]] uint64_t owed() const {
    uint64_t o = 0;
    for (const auto& [a, s] : sweeps) o += s.owed;
    return o;
  }
  bool listed_dirty = false;
  // The payouts held by state (index: the state's value): how many, and their amounts
  // (the desk account's pending credits in all, so no sum passes 2^64). Kept as payouts
  // change (desk_table::recount), so operators' figures need no pass over the payouts.
  struct held_figures {
    uint64_t n = 0, amount = 0;
  };
  std::array<held_figures, 8> held{};
  // The same payouts by state, gateway of the last attempt (0: none) and UTC day made
  // (keys with none left are dropped), and their ids in order: every held one, and the
  // problems (dead letters, refused settlements) apart. The console's counts and pages
  // read these instead of every payout (engine::lookup_payouts).
  struct count_key {
    uint8_t st = 0;
    uint32_t gateway = 0;
    uint32_t day = 0;
    friend auto operator<=>(const count_key&, const count_key&) = default;
  };
  std::map<count_key, held_figures> counts;
  ordered_ids held_ids;
  ordered_ids problem_ids;
};
// Whether the console lists p among the problems (`payouts` without `all`).
[[nodiscard]] inline bool is_problem(state st) { return st == state::dead || st == state::settle_refused; }

// The held figures of one currency's desks (a shard's, or the engine's).
struct currency_held {
  wire::currency_code currency = 0;
  std::array<desk::held_figures, 8> by_state{};  // amounts saturate (desks of a currency may pass 2^64)
};

// Whether payout account `a` holds what desk d says: pending, `held` (its payouts'
// holds) and nothing else; posted (credits less debits), what its sweeps owe.
[[nodiscard]] inline bool account_matches(const desk& d, uint64_t held, const wire::account& a) {
  return a.credits_pending == held && a.debits_pending == 0 && a.credits_posted >= a.debits_posted &&
         a.credits_posted - a.debits_posted == d.owed();
}

// Whether gateway g may still pay p: an attempt went to it, and the latest one it got
// was answered neither settled nor failed.
[[nodiscard]] bool may_pay(const payout_entry& p, uint32_t gateway);
// Whether a gateway other than `except` (0: none) may still pay p: by its attempts from
// the `from`th on (0: all; an operator's forced retry vouched for those before its
// routing_base).
[[nodiscard]] bool another_may_pay(const payout_entry& p, uint32_t except, size_t from = 0);
// The number (from 1) of the latest attempt p sent to `gateway`; 0 if none.
[[nodiscard]] uint32_t latest_attempt_at(const payout_entry& p, uint32_t gateway);

// Byte forms for snapshots (payout rows version 3, with cancel_wait; version 2 without;
// version 1 rows, from before desks per shard, are slot 0's); decoders refuse damage they
// can see.
[[nodiscard]] std::vector<uint8_t> encode_payout(const payout_entry& p);
bool decode_payout(std::span<const uint8_t> bytes, payout_entry* out, std::string* why);
[[nodiscard]] std::vector<uint8_t> encode_desk(const desk& d);  // without its payouts
bool decode_desk(std::span<const uint8_t> bytes, desk* out, std::string* why);

// The chain a settling or failing payout is carried by (ids from its chain_step).
[[nodiscard]] std::vector<wire::transfer> chain_of(const payout_entry& p);
// The transfer of desk d's sweep in flight to `settlement`.
[[nodiscard]] wire::transfer sweep_transfer(const desk& d, uint64_t settlement, const sweep& s);

class desk_table {
 public:
  using emit_fn = std::function<void(std::vector<wire::transfer>&&)>;
  using instruct_fn = std::function<void(uint32_t gateway, std::vector<wire::payout_instruction>&&)>;
  // Live sinks; unset while replaying (chains are recorded as owed, instructions dropped).
  void set_emit(emit_fn f) { emit_ = std::move(f); }
  void set_instruct(instruct_fn f) { instruct_ = std::move(f); }
  // The desks' own decisions as events (wire::event_type payout_dead, payout_breaker):
  // lsn and offset are the caller's to fill. Set by the shard when the engine keeps events.
  using event_fn = std::function<void(wire::event&&)>;
  void set_events(event_fn f) { events_ = std::move(f); }
  // What desks decide within a log record follows the rules of the build that wrote it
  // (its version: replay decides what they decided); this build's are rules_newest.
  //  - before version 6 (rules_desk_cancels): a session closing re-routes its payouts in
  //    flight at once, a restart makes them wait for any gateway, a gateway given up is
  //    left at once, a failed answer never releases a dead letter, and answers after a
  //    payout ended are duplicates (cancels and kept payouts make no difference then);
  //  - 9 on (rules_payout_routes): payments-role gateways only; a retry after its backoff
  //    stays with its gateway or asks it to cancel first;
  //  - 10 on (rules_reset_keeps_backoff): a reset leaves a payout waiting out its backoff
  //    with its gateway;
  //  - 13 on (rules_failed_in_backoff): a failed answer to the latest attempt in its
  //    backoff is taken, not late;
  //  - 15 on (rules_withdrawn_gateway): a payout leaving a gateway that may have paid it
  //    and can no longer answer becomes a dead letter (withdrawn);
  //  - 25 on (rules_sweep_backoff): a refused sweep's retries back off;
  //  - 30 on (rules_payout_ops_checked): op() refuses a dead letter a gateway may have
  //    paid unless forced;
  //  - 34 on (rules_reset_keeps_route_wait): a payout waiting for any gateway keeps its
  //    wait's start across a restart (moved by the downtime) and is looked at again
  //    within route_poll_ns;
  //  - 38 on (rules_payout_stays_while_may_pay): a cancel's wait that passes with its
  //    gateway's session up, or a cancel's `failed` while another gateway may still pay,
  //    makes the payout a dead letter instead of sending it on;
  //  - 43 on (rules_refused_void_retry): op()'s retry of a failing payout whose void the
  //    ledger refused sends the void again;
  //  - 48 on (rules_payout_asks_before_routing): routing a payout while another gateway it
  //    went to since the last operator's retry, with a session up, may still pay it goes
  //    back to that gateway (the only such one, if it takes it) or asks it to cancel first
  //    and waits its answer.
  void set_rules(uint16_t v) {
    before_cancels_ = v < rules_desk_cancels;
    payout_routes_ = v >= rules_payout_routes;
    reset_keeps_backoff_ = v >= rules_reset_keeps_backoff;
    failed_in_backoff_ = v >= rules_failed_in_backoff;
    withdrawn_dead_ = v >= rules_withdrawn_gateway;
    sweep_backoff_ = v >= rules_sweep_backoff;
    ops_checked_ = v >= rules_payout_ops_checked;
    reset_keeps_route_wait_ = v >= rules_reset_keeps_route_wait;
    stays_while_may_pay_ = v >= rules_payout_stays_while_may_pay;
    void_retry_ = v >= rules_refused_void_retry;
    asks_before_routing_ = v >= rules_payout_asks_before_routing;
    waits_for_payer_ = v >= rules_payout_waits_for_payer;
  }
  // The registry as of the batch being executed (every shard adopts each version).
  void set_registry(std::shared_ptr<const gateways::registry> r) { registry_ = std::move(r); }
  [[nodiscard]] const std::shared_ptr<const gateways::registry>& registry() const { return registry_; }

  // The hold of a payout was applied on this shard (it owns the payout account).
  void held(const wire::transfer& hold, uint64_t ts);
  // A gateway's answer for the desk of payout account `desk`, on this shard. The
  // sequencer has checked that the payout's hold was applied there, so a payout that
  // desk does not hold was resolved.
  wire::result answer(const wire::payout_answer& a, uint64_t desk, uint64_t ts);
  // A chain a desk here emitted executed fresh at `ts`, with outcome r.
  void chain_done(const wire::transfer& first, wire::result r, uint64_t ts);
  // A deposit was applied on this shard (it owns the gateway's settlement account).
  void deposited(uint32_t gateway, const wire::transfer& t, uint64_t ts);
  // This shard's part of the reconciliation counts of days from `first_day` on (a
  // cut's: rows of earlier days have not changed since the last committed snapshot).
  [[nodiscard]] std::vector<recon_row> recon_rows_from(uint32_t first_day) const;
  // This shard's part of one gateway's rows in memory (day_plus_one: that day alone,
  // 0: every day kept).
  [[nodiscard]] std::vector<recon_row> recon_rows_of(uint32_t gateway, uint64_t day_plus_one) const;
  // A snapshot's row (totals: any shard may hold a part).
  void load_recon(const recon_row& r) { recon_[r.k].add(r.c); }
  // Drops the rows of days before `day` (a cut's: see recon_days_kept).
  void recon_drop_before(uint32_t day);
  [[nodiscard]] size_t recon_rows_kept() const { return recon_.size(); }
  // Sessions opening and closing (every shard keeps the counts).
  void event(const wire::gateway_event& e, uint64_t ts);
  // The engine started again at `resumed`, its last logged time `last_before`: the waits
  // for any gateway move by the downtime (rules_reset_keeps_route_wait).
  void resume(uint64_t last_before, uint64_t resumed);
  // Whether a payout waits for any gateway (what resume moves). Walks every payout: for a start.
  [[nodiscard]] bool waiting_for_a_gateway() const;
  wire::result op(const wire::payout_op& o, uint64_t desk, uint64_t ts);
  [[nodiscard]] bool due(uint64_t now) const { return !timers_.empty() && timers_.front().at <= now; }
  void run_due(uint64_t now);
  // The next page of cancels for gateways whose sessions are up and whose pages remain,
  // once cancel_page_gap_ns passed since their last (each logged batch but a resume
  // marker; instructions only).
  void page_cancels(uint64_t now);
  // The next timer, or page of cancels (page_cancels), due: the engine ticks for it.
  [[nodiscard]] uint64_t next_deadline() const;
  // Between batches: drops stale timers from the heap's top (so next_deadline is a live
  // one), and makes the heap again from the live ones when it has grown to twice what
  // they were at the last rebuild (at least timers_compact_min). Stale timers are those a
  // rescheduled, answered or resolved payout left: an answer before its deadline leaves
  // one, a payout kept for a late answer and answered leaves one of 30 days. What fires,
  // and in what order, is the same either way.
  void compact_timers();
  [[nodiscard]] size_t timers_held() const { return timers_.size(); }
  // Hands the instructions and chains of the batch just executed to the sinks (drops
  // the instructions if unset); chains go out in groups of up to emit_group_max
  // transfers, whole chains each (one queue entry per group, not per chain).
  // (It also brings the desks' held figures up to the payouts changed since the last.)
  void flush();
  static constexpr size_t emit_group_max = 8192;  // the engine's batch_ops_max
  // Brings the desks' held figures (desk::held) up to the payouts touched since the last
  // time (flush does it too).
  void recount();
  // Bumped whenever a desk's held figures change (what a shard publishes is rebuilt then).
  [[nodiscard]] uint64_t held_version() const { return held_version_; }

  [[nodiscard]] uint32_t sessions(uint32_t gateway) const;
  template <class F>
  void for_each_desk(F&& f) const {
    for (const auto& [c, d] : desks_) f(d);
  }
  // The payouts whose chain no log record carried (after replay): emitted again.
  std::vector<std::vector<wire::transfer>> chains_owed() const;

  // Recovery and checkpoints.
  void load_desk(desk&& d);
  bool load_payout(payout_entry&& p, std::string* why);  // after its desk
  void load_sessions(std::span<const uint8_t> bytes, std::string* why, bool* ok);
  [[nodiscard]] std::vector<uint8_t> encode_sessions() const;
  struct dirty_rows {
    std::vector<std::pair<uint64_t, std::vector<uint8_t>>> payouts;  // empty bytes: erase
    std::vector<std::pair<uint64_t, std::vector<uint8_t>>> desks;    // by payout account
  };
  void take_dirty(dirty_rows* out);
  [[nodiscard]] size_t memory_bytes() const;

 private:
  struct timer {
    uint64_t at;
    uint64_t payout;  // 0: the desk's refused sweeps
    uint64_t desk;
    // A total order (payout ids are unique; a desk has one sweep timer per time): equal
    // times fire in payout id, then desk order, the same live and in replay.
    friend bool operator>(const timer& a, const timer& b) {
      return std::tie(a.at, a.payout, a.desk) > std::tie(b.at, b.payout, b.desk);
    }
  };
  desk& desk_of(uint64_t account);
  // A payout the desk of `account` holds, with its desk (nullptr, nullptr: none).
  using payout_map = std::unordered_map<uint64_t, payout_entry, seeded_u64_hash>;
  std::pair<desk*, payout_entry*> find_in(uint64_t account, uint64_t payout_id, payout_map desk::*which);
  std::pair<desk*, payout_entry*> held_payout(uint64_t account, uint64_t payout_id) {
    return find_in(account, payout_id, &desk::payouts);
  }
  // A resolved payout kept for a gateway's answer (desk::watched).
  std::pair<desk*, payout_entry*> watched_payout(uint64_t account, uint64_t payout_id) {
    return find_in(account, payout_id, &desk::watched);
  }
  // Lists p for the snapshot's next rows and for recount() (a change after the touch, in
  // the same batch, is counted too: recount runs at flush).
  void touch(desk& d, payout_entry& p);
  void touch(desk& d);
  // desk::held, counts and the id sets: p counted as it is now, or not at all (it leaves
  // d.payouts).
  void count_as(desk& d, payout_entry& p);
  void uncount(desk& d, payout_entry& p);
  // p's part of d's figures taken out (as counted: counted_as, counted_gateway).
  static void drop_figures(desk& d, const payout_entry& p);
  void schedule(payout_entry& p, uint64_t at);
  void add_timer(const timer& t);
  void route(desk& d, payout_entry& p, uint64_t now);
  // A new attempt, or the latest one again (a session opened): its deadline stays.
  void send(desk& d, payout_entry& p, const gateways::gateway& g, uint64_t now, bool new_attempt);
  wire::result answer_before_cancels(const wire::payout_answer& a, uint64_t desk, uint64_t ts);
  // A settled answer of a payout held (any attempt: the money went out), and a failed
  // answer of its current attempt: breaker counts, then the settlement.
  wire::result took_settled(desk& d, payout_entry& p, const wire::payout_answer& a, uint64_t ts);
  // `sample`: the outcome counts in the breaker's window (not when the attempt's timeout
  // already counted there).
  void took_failed(desk& d, payout_entry& p, const wire::payout_answer& a, uint64_t ts, bool sample = true);
  // Cancels to the gateways other than `except` (0: none) that may still pay p.
  void cancel_elsewhere(const payout_entry& p, uint32_t except);
  void cancel_at(const payout_entry& p, uint32_t gateway, uint32_t attempt);
  // A settlement of a payout whose post or void is under way, or that is kept resolved.
  wire::result settled_after_end(desk& d, payout_entry& p, const wire::payout_answer& a, uint64_t ts, bool kept);
  // The answer's gateway failed the payout: its attempts up to the one answered.
  void note_failed(desk& d, payout_entry& p, const wire::payout_answer& a);
  // The gateway paid the payout (it pays a payout id once): every attempt it got.
  void note_settled(desk& d, payout_entry& p, uint32_t gateway);
  void unwatch(desk& d, uint64_t id);
  void make_dead(desk& d, payout_entry& p, dead_reason why, uint64_t now);
  void breaker_moved(const desk& d, uint32_t gateway, const breaker& b, uint64_t now);
  // The event of a timer's decision on p (`tried`: its attempts before), unless a look
  // for a route found none.
  void timer_acted(const desk& d, const payout_entry& p, timer_due why, size_t tried, uint64_t now);
  void timed_out(desk& d, payout_entry& p, uint64_t now);
  void retry_after_backoff(desk& d, payout_entry& p, uint64_t now);
  // Waiting out a backoff after a timeout, to try its gateway again (retry_after_backoff).
  [[nodiscard]] bool in_backoff(const payout_entry& p) const {
    return p.st == state::waiting && payout_routes_ && p.cancel_wait == 0 && p.wait_since == 0 &&
           p.attempts.size() > p.routing_base;
  }
  // Whether gateway g's answers are taken: in the registry, enabled, and (rules version 9
  // on) with the payments role.
  [[nodiscard]] bool answers(uint32_t g) const;
  void leave_gateway(desk& d, payout_entry& p, uint32_t g, uint64_t now, bool may_have_paid);
  void settle(desk& d, payout_entry& p, uint32_t gateway, uint64_t settlement);
  void start_sweep(desk& d, uint64_t settlement, sweep& s);
  void sweep_done(const wire::transfer& t, wire::result r, uint64_t ts);
  void release(desk& d, payout_entry& p, bool cancel);
  // settling or failing: the payout's chain (post or void) under the desk's next step.
  void start_chain(desk& d, payout_entry& p, state st);
  void resolve(desk& d, payout_entry& p, resolution r, uint64_t ts);
  bool admits(desk& d, const gateways::gateway& g, uint64_t payout, uint64_t now);
  void record(desk& d, uint32_t gateway, uint64_t payout, bool bad, uint64_t now);
  [[nodiscard]] uint64_t timeout_ns(uint32_t gateway) const;

  std::shared_ptr<const gateways::registry> registry_ = std::make_shared<gateways::registry>();
  std::unordered_map<uint64_t, desk, seeded_u64_hash> desks_;  // by payout account
  std::unordered_map<uint32_t, uint32_t> sessions_;  // gateway number -> sessions up
  std::vector<timer> timers_;                        // a min-heap; stale entries skipped
  static constexpr size_t timers_compact_min = 4096;
  size_t timers_compact_at_ = timers_compact_min;
  [[nodiscard]] bool timer_live(const timer& t) const;
  std::unordered_map<uint32_t, std::vector<wire::payout_instruction>> outbox_;
  std::vector<std::vector<wire::transfer>> chains_out_;  // groups of whole chains
  void emit(std::vector<wire::transfer>&& chain);
  std::map<recon_key, recon_counts, recon_by_day> recon_;
  recon_counts& recon_at(uint32_t gateway, uint64_t ts, wire::currency_code currency);
  std::vector<std::pair<uint64_t, uint64_t>> dirty_payouts_;  // (desk, payout)
  std::vector<uint64_t> dirty_desks_;
  std::vector<std::pair<uint64_t, uint64_t>> erased_;
  std::vector<std::pair<uint64_t, uint64_t>> recount_;  // (desk, payout) touched since the last recount
  uint64_t held_version_ = 0;
  emit_fn emit_;
  instruct_fn instruct_;
  event_fn events_;
  bool before_cancels_ = false;
  bool payout_routes_ = true;
  bool reset_keeps_backoff_ = true;
  bool reset_keeps_route_wait_ = true;
  bool failed_in_backoff_ = true;
  bool withdrawn_dead_ = true;
  bool sweep_backoff_ = true;
  bool ops_checked_ = true;
  bool stays_while_may_pay_ = true;
  bool void_retry_ = true;
  bool asks_before_routing_ = true;
  bool waits_for_payer_ = true;
  // (desk, gateway) -> where its cancels re-sent since its first session opened are. It
  // shapes instructions only (not logged, not kept).
  struct cancel_pager {
    uint64_t after = 0;    // the last id sent in the run's order; the run's start once it ended
    uint64_t start = 0;    // `after` when this run began: the run ends on coming back to it
    bool wrapped = false;  // the run went past the highest id and goes on from the lowest
    bool active = false;   // pages remain for the gateway's sessions up now
    uint64_t sent_at = 0;  // engine time of the last page
  };
  std::map<std::pair<uint64_t, uint32_t>, cancel_pager> cancel_pages_;
  size_t pagers_active_ = 0;  // of them, active
  // Sends the next page of d's cancels to `gateway` (its sessions up) at engine time now.
  void send_cancel_page(desk& d, uint32_t gateway, cancel_pager& pg, uint64_t now);
};

}  // namespace mesob::actors::payouts
