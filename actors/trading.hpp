// trading: customers' orders on the ledger, as lightweight actors on their wallets'
// shards (one portfolio per wallet), and their way to a broker gateway and back.
//
// An order is its hold. The sequencer turns each order (wire::order) of an `orders` batch
// into a pending transfer with an id in a reserved space, {order id, hold_hi}, between
// the wallet and the trading account of the currency on the wallet's shard (an
// engine-made system account, one per currency and shard, like a payout account): a
// buy holds its notional at the limit (wallet -> trading account), a sell announces its
// least proceeds (quantity x limit x tick, trading account -> wallet). Both accounts live
// on the wallet's shard, so the order's checks and its hold are decided there, together,
// at the order's place in the log: the portfolio's rules (actors/portfolio.hpp: KYC,
// profile, halts, position limit, cash) first, then the ledger's. A retried order is a
// repeat of its hold, answered with the first outcome, like any transfer (its expiry is
// not among the fields compared: an order retried with another expiry is the first one;
// its quantity and limit are: the hold carries them, terms() below). A retry after a
// restart with another shard count is a repeat too, though its trading account would
// be another (the engine compares holds without their engine-chosen account).
//
// A placed order is routed to a broker, with the machinery the payout desks use for
// payment gateways (payout_desk.hpp, breaker.hpp): candidates are the enabled gateways
// with the broker role that serve the currency, lowest priority then number; the first
// with a session up, not given up by this routing, whose breaker (this shard's, per
// broker) admits it, gets the order's instruction (wire::order_instruction, `work`),
// pushed to that broker's sessions. The order is then *sent*: the broker owes an
// acknowledgement (an `accepted` answer, or any fill or reject) within its answer timeout
// (the registry's answer_timeout_ms). Acknowledged, it is *working* there and stays: a
// broker working an order may trade it at any time, so it never moves to another one (its
// expiry, a cancel or the broker's reject ends it); it is pushed again whenever a session
// of that broker opens. Not acknowledged in time: the broker's breaker counts a timeout
// (an `order_timeout` event); the order is sent again after an exponential backoff with
// jitter, to the same broker while it may (tries_per_gateway timeouts), else at once to
// the next (the fallback broker), the first told to cancel. (The backoff's end goes to
// that broker again if it is still enabled, up, not given up and admitted by its
// breaker, else on by priority: rules version 40; before, by priority, so a broker whose
// session opened meanwhile got the order after a single timeout. An order sent and then
// held by a halt goes back to its broker the same way when the halt ends.) A broker
// whose last session closes keeps its unacknowledged orders to their answer deadline
// (pushed again, the deadline unchanged, when a session of it opens); a timeout, a
// backoff's end or a halt's end that finds the broker of the last attempt an enabled
// broker with no session up leaves the order waiting for that broker, which may have it:
// no other broker gets it; that broker's session opening sends it there again (while it
// may take it: not given up, its breaker admitting; its breaker refusing, as the
// outage's own timeouts may have made it, the order keeps waiting for it, looked at each
// route_poll_ns; given up, it goes on, that broker told to stop; an attempt that timed
// out with the broker up, a hung broker, goes on when its breaker refuses, as before);
// after route_wait_max it is a dead
// letter (`broker_silent`); that broker disabled meanwhile makes it one
// (`broker_withdrawn`) (rules version 50; before, a broker's last session closing handed
// its unacknowledged orders on at once, and a deadline with it away sent the order to the
// next broker, so both could trade it). One that loses the broker role while sessions of
// it are still counted makes them dead letters too (`broker_withdrawn`) at that registry
// change, and one that lost the role while away, or the order's currency, at the order's
// next look (its deadline, a backoff's or a halt's end), as one disabled does (rules
// version 54; before, they went on to the next broker, at once for the role with
// sessions counted, from rules version 20, and both could trade them). So is an order
// waiting for any broker after its last one was given up (a hung broker) when that one
// is disabled or loses the role or the currency: it may have it all the same; a restart (the engine's
// session reset) leaves an unacknowledged order, or one backing off after a timeout, with
// its broker for an answer timeout from the start, pushed again when that broker's
// session opens, then on as after a timeout (rules version 35; before, the first broker to
// come back got it, while the first might be working it; from version 50 it waits for
// that broker, as above). An order
// with no broker to take it waits (for a session to open, a broker up given its currency
// from rules version 40, or each route_poll_ns while breakers refuse it); after route_wait_max_ns, at attempts_max attempts in one routing,
// or with every broker of its currency given up, it becomes a *dead letter*
// (`order_dead`): open, its hold kept, answers still taken, until an operator retries it
// (routes afresh: `order_retries`) or anyone cancels it. A retry is the fallback an
// operator asks for: one of a dead letter that a broker was sent since the last retry
// and never answered, or that was working at a broker since withdrawn, is refused,
// order_may_be_traded, unless forced (`order_retries_forced`:
// the operator checked with those brokers), as a payout's is (payout_may_be_paid); one
// never sent needs no force (rules version 52; before, every retry routed at once, and
// both brokers could trade it). A broker the order leaves is told to stop, as after a
// timeout, and what it filled before it heard still settles: the book takes the fills of all its
// brokers together up to the order's quantity (one past it is fill_invalid). Breakers count a timeout as bad
// and the first answer to an attempt as good (a reject is an answer: the broker works).
// An answer is taken from any broker the order was sent to (order_wrong_broker from
// others): one that never acknowledged may still have it. The order moves to the broker
// answering only when nobody has it now (waiting after a timeout, a dead letter) and that
// broker is the latest it was sent to; any other broker answering (one the order moved on
// from) is told again to stop, and its fills still settle (both traded: the book takes
// fills up to the order's quantity). Routing is
// decided per shard (breakers, timers), so a start with another shard count that would
// replay orders or their answers past the snapshot, or any record while routing is under
// way, is refused (the engine names the count to start with once); breakers written by
// another count start closed.
//
// Answers (wire::order_answer, logged with the answering gateway and the wallet the
// sequencer found from the hold's record) are decided by the portfolio in log order,
// reading open orders only (a closed order is answered order_not_open whether or not the
// book still keeps it):
//   - a fill (fill id, whole lots, a price within the limit and within the instrument's
//     move_bp of its last price taken outside a move halt, or from rules 37 of a price of its move window;
//     rules 10 and older: its last price) moves the position and the money: the portfolio emits a chain that posts the fill out of the current hold and
//     holds the rest again under the next hold id {order id, hold_hi | k} (k fills so far):
//       buy:  post hold(k-1) of the fill's cost; hold(k) of what the order still holds;
//       sell: post hold(k-1) of the fill's least proceeds; the price improvement as a
//             transfer trading account -> wallet; hold(k) of the least proceeds left.
//     A fill id taken again with the same fields is a repeat (ok, nothing changes); with
//     other fields fill_id_reused.
//   - a client's cancel and the expiry (expires_s after placing, on the engine clock,
//     decided at the first logged batch at or after it) end the order: one never sent to
//     a broker closes at once; otherwise the brokers it was sent to are told (`cancel`)
//     and the order stays open, hold and all, taking the fills they made before they
//     heard, until the broker it is with confirms with a reject (when it went to no
//     other broker: otherwise one it left may still have it) or the grace passes
//     (cancel_grace_ns from the latest telling, with every broker's session up; at most
//     ending_max_ns); then it closes as cancelled or expired. A reject from the broker
//     it is with of an order not ending closes it as rejected, unless another broker it
//     went to may still have it: then it ends as rejected, the same way (a cancel then
//     is a repeat; it still closes as rejected). A fill id is the broker's (the same id
//     from another broker is another fill). A close voids the current hold (a chain).
// The chains' ids are derived from the order id and its fill count ({order id, emit_hi |
// k << 2 | j}: j 0 the post, 1 the improvement, 2 the void), so a chain emitted twice
// (after a restart) is a repeat. They are engine transfers: a trade the broker executed
// settles even if the wallet was frozen since (the ledger's frozen checks do not apply to
// them), and the tier limits never apply. Chains no log record carried are the table's
// state (in the snapshot) and are emitted again after recovery, like the payout desks'.
//
// At every log position, for every open order: its hold k (k its fills) is pending with
// the amount its book entry says (a buy: `held`; a sell: open quantity x limit x tick),
// once the chains emitted so far have executed; the trading account's balance is what
// the fills moved through it (the brokers' side of the trades; sweeping it to the
// brokers' settlement accounts is not built yet).
//
// Ownership: one table per shard, touched only by that shard's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/breaker.hpp"
#include "actors/market.hpp"
#include "actors/payout_desk.hpp"
#include "actors/portfolio.hpp"
#include "actors/placement.hpp"
#include "actors/rules_version.hpp"
#include "wire/types.hpp"

namespace mesob::actors::trading {

// Reserved ids (clients get id_reserved / trading_account_reserved): the kind in the top
// 28 bits, like the payout desks' (payouts::kind_mask).
constexpr uint64_t kind_mask = payouts::kind_mask;
constexpr uint64_t account_hi = 0x9A700D0000000000ull;  // trading account: account_hi | slot << 24 | currency
constexpr uint64_t hold_hi = 0x9A700D1000000000ull;     // holds: {order id, hold_hi | k}
constexpr uint64_t emit_hi = 0x9A700D2000000000ull;     // chains: {order id, emit_hi | k << 2 | j}
[[nodiscard]] inline uint64_t account(wire::currency_code c, uint32_t slot) {
  return account_hi | uint64_t(slot & (payouts::desk_slots - 1)) << 24 | (c & 0xFFFFFF);
}
[[nodiscard]] inline bool trading_account(uint64_t id) { return (id & kind_mask) == account_hi; }
// Account ids (and snapshot keys) 0x9A700D...: the engine's, never a client's account.
[[nodiscard]] inline bool reserved_key(uint64_t id) { return (id >> 40) == (account_hi >> 40); }
// The trading account of currency c for wallets on `shard` of `shards` (the first slot
// whose account lives there, as for payout accounts).
[[nodiscard]] inline uint64_t account_for(wire::currency_code c, uint32_t shard, uint32_t shards) {
  return slot_account_for([c](uint32_t k) { return account(c, k); }, payouts::desk_slots, shard, shards);
}
[[nodiscard]] inline wire::id128 hold_id(uint64_t order_id, uint64_t k) { return {order_id, hold_hi | k}; }
[[nodiscard]] inline bool hold(const wire::id128& id) { return (id.hi & kind_mask) == hold_hi; }
[[nodiscard]] inline bool emitted(const wire::id128& id) { return (id.hi & kind_mask) == emit_hi; }
[[nodiscard]] inline bool reserved_id(const wire::id128& id) { return hold(id) || emitted(id); }
[[nodiscard]] inline wire::id128 chain_id(uint64_t order_id, uint64_t k, uint32_t j) {
  return {order_id, emit_hi | k << 2 | j};
}
// Codes of the engine's trading transfers: a hold (| side << 2 | type), a fill's post, a
// sell's price improvement, a close's void.
constexpr uint16_t code_hold = 0xE200, code_fill = 0xE211, code_improvement = 0xE212, code_close = 0xE213;
// How long an order cancelled or expired here waits for its broker to confirm (a reject)
// before it closes anyway; fills the broker sends meanwhile still settle. The grace runs
// from the latest time its brokers were told (a broker's session opening tells it
// again), and ends only with every broker the order went to having a session up, so
// that each could hear; at most ending_max_ns after it began ending, it closes whatever
// its brokers' sessions (rules version 7 on, rules_version.hpp; before, the grace ran
// once from the cancel). A gateway that is no enabled broker now (its sessions' answers
// refused once the server sees the change) does not hold it up; one that is, whatever currencies it serves now, does while it has no
// session (rules version 29; before, the brokers serving the order's currency, so one
// that stopped serving it held the order the whole ending_max_ns).
constexpr uint64_t cancel_grace_ns = 60'000'000'000ull;
constexpr uint64_t ending_max_ns = 86'400'000'000'000ull;
// What an open order's current hold holds: a buy's `held`; a sell's least proceeds left
// (its open quantity x limit x tick).
[[nodiscard]] uint64_t hold_amount(const portfolio::order_entry& e);
[[nodiscard]] inline uint16_t hold_code(const wire::order& o) {
  return uint16_t(code_hold | uint8_t(o.side) << 2 | uint8_t(o.type));
}

// The order's first hold, as the sequencer makes it (`ins`: the instrument as of the
// order's place in the log, null if unknown; `shards`: the shard count its trading
// account is chosen by), or the result refusing the order before any state is read: its
// fields, the instrument, the lot, the notional.
[[nodiscard]] wire::result order_hold(const wire::order& o, const market::instrument* ins, uint32_t shards,
                                      wire::transfer* out);
// The first hold carries the order's quantity and limit in its pending_id (a pending
// transfer's creation has no other use for it): its amount is only their product, and a
// retry of the order id with another quantity and limit of the same notional must differ
// from the recorded hold (exists_with_different_fields), not repeat it. Holds recorded by
// builds before this carry zeros there, and a retry of one is compared without them.
[[nodiscard]] inline wire::id128 terms(const wire::order& o) { return {o.quantity, o.limit_ticks}; }
// An order as logged carries in `reserved2` the shard count it was sequenced under (so
// replay under another count makes the same hold); the client's order has it 0.
[[nodiscard]] inline wire::order as_sent(wire::order o) {
  o.reserved2 = 0;
  return o;
}
// Field checks of a broker's answer (no state).
[[nodiscard]] wire::result check_answer_fields(const wire::order_answer& a);

// Routing (order_entry::routing) and dead letters' reasons. `halted`: its instrument is
// halted or its price stale, so it goes to no broker; it is routed when the instrument
// trades again (market_changed), its wait for a broker counted from then.
enum class route_state : uint8_t { waiting = 0, sent = 1, working = 2, dead = 3, halted = 4 };
// (unanswered: its broker may have it and stayed away past route_wait_max, rules version 50)
enum class dead_reason : uint8_t { none = 0, attempts = 1, routes = 2, no_route = 3, withdrawn = 4, unanswered = 5 };
[[nodiscard]] const char* route_state_name(uint8_t s);
[[nodiscard]] const char* dead_reason_name(uint8_t r);
constexpr uint32_t attempts_max = payouts::attempts_max;          // per routing
constexpr uint32_t tries_per_gateway = payouts::tries_per_gateway;  // timeouts before a broker is given up
constexpr uint64_t route_wait_max_ns = payouts::route_wait_max_ns;  // with no broker: a dead letter
constexpr uint64_t route_poll_ns = payouts::route_poll_ns;          // breakers refusing: look again
// The snapshot row (table portfolios) of shard s's breakers: a key no wallet can have
// (reserved_key: clients' accounts are refused id_reserved there).
constexpr uint64_t breakers_hi = 0x9A700D3000000000ull;
[[nodiscard]] inline bool breakers_key(uint64_t key) { return (key & kind_mask) == breakers_hi; }

// A broker that may take an order of some currency, as of the batch: enabled, with the
// broker role, serving it; in priority then number order.
struct broker_info {
  uint32_t number = 0;
  bool enabled = false;
  bool up = false;          // a session open
  uint64_t timeout_ns = 0;  // its answer timeout
};

class table {
 public:
  using emit_fn = std::function<void(std::vector<wire::transfer>&&)>;
  using instruct_fn = std::function<void(uint32_t gateway, std::vector<wire::order_instruction>&&)>;
  // The brokers (every gateway with the broker role) serving currency c, in priority then
  // number order, enabled or not.
  using brokers_fn = std::function<void(wire::currency_code c, std::vector<broker_info>* out)>;
  // Live sinks; unset while replaying (chains are kept as owed, instructions dropped).
  void set_emit(emit_fn f) { emit_ = std::move(f); }
  void set_instruct(instruct_fn f) { instruct_ = std::move(f); }
  void set_brokers(brokers_fn f) { brokers_ = std::move(f); }
  // Gateway `number` as a broker whatever currencies it serves: enabled (an enabled gateway
  // with the broker role), up (a session open); neither if unknown.
  using broker_of_fn = std::function<broker_info(uint32_t number)>;
  void set_broker_of(broker_of_fn f) { broker_of_ = std::move(f); }
  // The shard's copy of the market: an order is routed only while its instrument trades.
  void set_market(const market::book* m) { market_ = m; }
  // Orders held by a halt whose instrument trades at `ts` are routed (but those whose
  // expiry has come: the next batch expires them). The shard calls it at the end of every
  // logged batch while holds_orders(), as of the batch's last time: whether an instrument
  // trades is a pure function of the market's state (the same on every shard's copy) and
  // the time, so this needs no market timer of the shard's own.
  void market_changed(uint64_t ts);
  [[nodiscard]] bool holds_orders() const { return !halted_.empty(); }
  // The rules a batch is decided by (its log record's version in replay; rules_newest
  // live): set by the shard around each batch.
  void set_rules(uint16_t version) { rules_ = version; }
  // The registry changed (a broker's role or currencies): an ending order whose brokers
  // now all count as up may close, so each is looked at again from `ts` (a timer).
  void registry_changed(uint64_t ts);
  // The table's own decisions (expiries) as events; lsn and offset are the caller's.
  using event_fn = std::function<void(wire::event&&)>;
  void set_events(event_fn f) { events_ = std::move(f); }
  // The shard this table lives on, of how many (its trading accounts').
  void set_place(uint32_t shard, uint32_t shards) {
    shard_ = shard;
    shards_ = shards;
  }

  // The portfolio's part of an order's decision (its wallet's book; none yet: empty).
  [[nodiscard]] wire::result check(const wire::order& o, const portfolio::order_inputs& in) const;
  // The order's hold was applied at `ts`: the book takes it, it is routed.
  void placed(const wire::order& o, uint64_t tick, uint64_t ts);
  // A broker's answer (wallet and gateway filled in by the engine), read against the
  // market as of the answer. *repeated: an ok that changes nothing (a fill again).
  wire::result answer(const wire::order_answer& a, const market::book& market, uint64_t ts, bool* repeated);
  // A client's cancel (the sequencer found the order's hold for that wallet).
  wire::result cancel(const wire::order_cancel& c, uint64_t ts, bool* repeated);
  // What a new sell `o` (its hold `hold`, its least proceeds) counts toward its wallet's
  // balance limit at `ts` (rules_sell_balance_at_reference): its fills' improvements are
  // the engine's transfers, which no tier limit checks, so the sell counts at the highest
  // price a fill may have now (fill_band), and the wallet's open sells too, past their
  // holds, with the improvements of its chains not yet executed. Saturating.
  [[nodiscard]] uint64_t sell_balance_credit(const wire::order& o, uint64_t hold, uint64_t ts) const;
  // Its part from the wallet's orders already in the book: the open sells past their
  // holds and the improvements not yet executed (a rebalance plans its sells within
  // the room left). Saturating.
  [[nodiscard]] uint64_t open_sells_credit(uint64_t wallet, uint64_t ts) const;
  // The prices a fill of the instrument may have at ts, by the table's rules (answer
  // checks fills against them); false when it has no price yet (any price is taken).
  bool fill_band(const market::instrument& ins, uint64_t ts, uint64_t* lo, uint64_t* hi) const;
  // An operator's retry of a dead letter: routed afresh. From
  // rules_order_retry_checks_broker one that a broker was sent since its last retry (its
  // routing_base; none answered it, or it would not be a dead letter), or one that was
  // working at a broker since withdrawn, is refused order_may_be_traded unless `force`d:
  // that broker may have it.
  wire::result retry(const wire::order_cancel& c, uint64_t ts, bool force = false);
  // A session of broker `gateway` opened: the orders it has are pushed to it again (those
  // unacknowledged with their answer due from now), those it had and does not are
  // cancelled there, and orders waiting for a broker are routed.
  void broker_up(uint32_t gateway, uint64_t ts);
  // Orders waiting for a broker look again now (in order id order): a registry change gave
  // a broker with a session up a currency (rules_waiting_orders_look_again; before, they
  // waited for a session to open or their wait's end, up to route_wait_max_ns).
  void route_waiting(uint64_t ts);
  // The last session of broker `gateway` closed (`closed`), or it lost the broker role:
  // its unacknowledged orders go on at once; from rules_order_waits_for_broker, on a
  // close, they stay to their answer deadline instead (the broker may have them), and
  // from rules_order_role_loss_dead_letter a role lost makes them dead letters.
  void broker_down(uint32_t gateway, uint64_t ts, bool closed);
  // Gateway `gateway` stopped being an enabled broker (its role taken, or disabled;
  // rules_withdrawn_broker_dead_letters): the orders working there, not ending, become
  // dead letters (broker_withdrawn), in order id order.
  void broker_withdrawn(uint32_t gateway, uint64_t ts);
  // The engine (re)started: no broker is up; orders waiting for one keep their wait's
  // start (rules_reset_keeps_route_wait); unacknowledged or backing-off ones stay with
  // their broker an answer timeout from now (rules_orders_downtime).
  void reset(uint64_t ts);
  // The engine started again at `resumed`, its last logged time `last_before`: the waits
  // for any broker move by the downtime (rules_reset_keeps_route_wait), and so do ending
  // orders' day and grace, with timers at their new ends (rules_orders_downtime).
  void resume(uint64_t last_before, uint64_t resumed);
  // A chain the table emitted executed fresh (or as a repeat) with outcome r.
  void chain_done(const wire::transfer& first, wire::result r);

  // (A held order's instrument trading again by time, a move halt ending, counts: the
  // engine then ticks, and the tick's batch routes it.)
  [[nodiscard]] bool due(uint64_t now) const {
    return (!timers_.empty() && timers_.front().first <= now) || halted_due_ <= now;
  }
  void run_due(uint64_t now);  // expiries
  // Drops the timers of orders gone (and repeats) once the heap has grown past twice what
  // the open orders needed at the last compaction. A timer only makes run_due look at its
  // wallet's orders, each by its own due times, so which stale timers the heap holds
  // changes no decision: live and replay may compact at different batches. Called
  // between batches (every order's fields and timers complete).
  void compact_timers();
  [[nodiscard]] uint64_t next_deadline() const {
    return std::min(timers_.empty() ? UINT64_MAX : timers_.front().first, halted_due_);
  }
  // Hands the batch's instructions and chains to the sinks (chains in groups of whole
  // chains, up to emit_group_max transfers each).
  void flush();
  static constexpr size_t emit_group_max = 8192;  // the engine's batch_ops_max

  [[nodiscard]] const portfolio::book* book_of(uint64_t wallet) const;
  // Every wallet with a book here: f(wallet, book, whether it owes chains: emitted, not
  // yet executed, so the ledger does not show their holds yet).
  template <class F>
  void for_each_wallet(F&& f) const {
    for (const auto& [w, e] : wallets_) f(w, e.b, !e.owed.empty());
  }
  // The wallet holds securities, has an order open, or settlement chains owed.
  [[nodiscard]] bool holds_anything(uint64_t wallet) const;
  // The order with `id` of `wallet` (nullptr: none kept).
  [[nodiscard]] const portfolio::order_entry* find(uint64_t wallet, uint64_t id) const;
  [[nodiscard]] static wire::order_state_view view(const portfolio::order_entry& e);
  template <class F>
  void for_each_book(F&& f) const {
    for (const auto& [w, e] : wallets_) f(w, e.b);
  }
  [[nodiscard]] uint64_t open_orders() const { return open_; }
  [[nodiscard]] uint64_t ending_orders() const { return ending_; }  // open, cancelled or expired here
  // Orders whose wait runs on the engine's up time (waiting for a broker, or ending): a
  // restart moves it by the downtime from the last logged time (resume), so the engine
  // logs a heartbeat while there are any (engine/limits.hpp, resume_heartbeat_ns).
  [[nodiscard]] bool orders_on_up_time() const { return ending_ > 0 || !unrouted_.empty(); }
  [[nodiscard]] uint64_t fills() const { return fills_; }            // taken since the start
  [[nodiscard]] uint64_t settle_refusals() const { return settle_refusals_; }
  [[nodiscard]] uint64_t dead_letters() const { return dead_; }       // open orders that are dead letters
  [[nodiscard]] uint64_t halted_orders() const;                       // open orders a halt holds from brokers
  [[nodiscard]] uint64_t timeouts() const { return timeouts_; }       // since the start
  [[nodiscard]] uint64_t timers_held() const { return timers_.size(); }  // stale ones included
  template <class F>
  void for_each_breaker(F&& f) const {
    for (const auto& [g, b] : breakers_) f(g, b.b);
  }
  // The chains no log record carried (after replay): emitted again, in order.
  [[nodiscard]] std::vector<std::vector<wire::transfer>> chains_owed() const;

  // Snapshot rows, one per wallet: its book and the chains it owes; and the breakers' row
  // (key breakers_hi | shard), loaded only under the shard count that wrote it.
  [[nodiscard]] std::vector<uint8_t> encode_row(uint64_t wallet) const;
  bool load_row(uint64_t wallet, std::span<const uint8_t> bytes, std::string* why);
  [[nodiscard]] std::vector<uint8_t> encode_breakers() const;
  // *taken: false when another shard count wrote the row (the breakers start closed);
  // *live: it holds a breaker that is not closed or has outcomes counted; *count: the
  // shard count that wrote it.
  bool load_breakers(std::span<const uint8_t> bytes, bool* taken, bool* live, uint32_t* count, std::string* why);
  // Wallets changed since the last call (empty bytes: the row is gone).
  void take_dirty(std::vector<std::pair<uint64_t, std::vector<uint8_t>>>* out);
  // Drops the closed orders the rows just taken hold (each such row is written again
  // without them at the next cut; a portfolio left with nothing goes). Their outcomes live
  // on in the ledger and the events; a look-up of one answers order_not_found, and a
  // broker's answer for one order_not_open. Call right after take_dirty, at a cut.
  void forget_closed();
  [[nodiscard]] size_t memory_bytes() const;

 private:
  struct wallet_entry {
    portfolio::book b;
    std::vector<std::vector<wire::transfer>> owed;  // emitted chains not yet executed, oldest first
    bool dirty = false;
  };
  wallet_entry* entry(uint64_t wallet);
  void touch(uint64_t wallet, wallet_entry& w);
  void emit(wallet_entry& w, std::vector<wire::transfer>&& chain);
  void instruct(const portfolio::order_entry& e, wire::order_instruction_kind kind, uint32_t to = 0);
  // Tells every broker the order went to, but `except`, to stop working it.
  void cancel_at_brokers(const portfolio::order_entry& e, uint32_t except);
  // The number (1, 2, ...) of the latest attempt that went to broker g (0: none).
  [[nodiscard]] static uint8_t latest_attempt(const portfolio::order_entry& e, uint32_t g);
  // Routing (the comment at the top): the next broker now, or wait, or a dead letter.
  void route(uint64_t wallet, wallet_entry& w, portfolio::order_entry& e, uint64_t now);
  void send(uint64_t wallet, wallet_entry& w, portfolio::order_entry& e, const broker_info& b, uint64_t now);
  void timed_out(uint64_t wallet, wallet_entry& w, portfolio::order_entry& e, uint64_t now);
  void route_to_last(uint64_t wallet, wallet_entry& w, portfolio::order_entry& e, uint64_t now);
  void make_dead(uint64_t wallet, wallet_entry& w, portfolio::order_entry& e, dead_reason why, uint64_t now);
  void set_routing(portfolio::order_entry& e, route_state s);
  [[nodiscard]] uint64_t sell_past_hold(uint64_t instrument, uint64_t quantity, uint64_t limit, uint64_t tick,
                                        uint64_t held, uint64_t ts) const;
  // A closed order leaves routing (its broker stays, for look-ups).
  void retire(portfolio::order_entry& e);
  template <class F>
  void each_open(F&& f);
  // An answer from broker g, which has the order: it is working there (or g is told to
  // cancel, another working it). `closing`: its reject, which ends the order (a broker
  // withdrawn does not make it a dead letter then, rules_closing_answer_not_dead).
  void acknowledged(uint64_t wallet, wallet_entry& w, portfolio::order_entry& e, uint32_t g, uint64_t now,
                    bool closing = false);
  // Holds the order while its instrument is halted or its price stale (rules_halts_hold_orders):
  // no broker gets it until the instrument trades. Whether it did.
  bool held_by_halt(uint64_t wallet, portfolio::order_entry& e, uint64_t now);
  void unhold(const portfolio::order_entry& e);  // it leaves the state: out of halted_
  struct broker_state {
    gateways::breaker b;
    uint64_t probe_wallet = 0;  // the probe order's wallet
  };
  bool admits(uint32_t g, uint64_t wallet, uint64_t order_id, uint64_t now);
  void record(uint32_t g, uint64_t order_id, bool bad, uint64_t timeout_ns, uint64_t now);
  void breaker_moved(uint32_t g, const gateways::breaker& b, uint64_t now);
  [[nodiscard]] std::vector<broker_info> brokers(wire::currency_code c) const;
  // Broker g's answer timeout among `cands` (the default when it is not one of them).
  [[nodiscard]] static uint64_t answer_timeout_ns(const std::vector<broker_info>& cands, uint32_t g);
  // Closes an open order (reject, cancel, expiry): voids its hold, tells its broker.
  void close(uint64_t wallet, wallet_entry& w, uint64_t order_id, portfolio::order_state why, uint16_t reason);
  // A cancel or expiry (or a reject while another broker may have it): closes an order no
  // broker has; otherwise tells the brokers (but `except`) and waits for the broker's
  // confirmation (a reject) or the grace.
  void end(uint64_t wallet, wallet_entry& w, portfolio::order_entry& e, portfolio::order_state why, uint64_t ts,
           uint32_t except = 0);
  // Whether every broker the order went to could hear a cancel: has a session up, or
  // (rules_grace_by_sessions) is no enabled broker now (its answers are refused).
  [[nodiscard]] bool brokers_up(const portfolio::order_entry& e) const;
  // When an ending order's grace ends (rules_newest: ending_max_ns after it began ending
  // while a broker it went to, an enabled broker, has no session up).
  [[nodiscard]] uint64_t grace_end(const portfolio::order_entry& e) const;
  void told_again(uint64_t wallet, wallet_entry& w, portfolio::order_entry& e, uint64_t ts);
  void add_timer(uint64_t at, uint64_t wallet);
  // Every timer an open order needs (its expiry, its grace's ends, its routing's due time):
  // what a snapshot's load adds, and what compact_timers keeps.
  void add_timers_of(const portfolio::order_entry& e, uint64_t wallet);
  void note_closed(uint64_t wallet);
  [[nodiscard]] uint64_t trading_account_of(const portfolio::order_entry& e) const;

  uint32_t shard_ = 0, shards_ = 1;
  uint16_t rules_ = rules_newest;

  std::unordered_map<uint64_t, wallet_entry, seeded_u64_hash> wallets_;
  // (expires_at, wallet): a wallet's open orders expire at or after its entries; each
  // firing closes what is due and adds the wallet's next.
  std::vector<std::pair<uint64_t, uint64_t>> timers_;  // a min-heap
  // Timers stay in the heap when their order closes early (an expiry up to a year out):
  // past this many, compact_timers rebuilds the heap from the open orders of the wallets
  // it names, and sets the next threshold at twice what is left.
  static constexpr size_t timers_compact_min = 4096;
  size_t timers_compact_at_ = timers_compact_min;
  std::map<uint64_t, uint64_t> unrouted_;  // order id -> wallet: open, no broker yet
  // Orders route_state::halted, by instrument: (order id, wallet). An order leaving the
  // state (routed, cancelled, expired, filled) leaves it (unhold).
  std::map<uint64_t, std::set<std::pair<uint64_t, uint64_t>>> halted_;
  uint64_t halted_due_ = UINT64_MAX;  // when a held order's instrument may trade again by time
  const market::book* market_ = nullptr;
  std::unordered_map<uint32_t, std::vector<wire::order_instruction>> outbox_;
  std::vector<std::vector<wire::transfer>> chains_out_;
  std::vector<uint64_t> dirty_;
  std::vector<uint64_t> closed_in_;  // wallets that closed an order since the last forget_closed
  uint64_t settle_refusals_ = 0;
  uint64_t open_ = 0, ending_ = 0, fills_ = 0, dead_ = 0, timeouts_ = 0;
  std::map<uint32_t, broker_state> breakers_;  // by broker number
  bool breakers_dirty_ = false;
  emit_fn emit_;
  instruct_fn instruct_;
  brokers_fn brokers_;
  broker_of_fn broker_of_;
  event_fn events_;
};

}  // namespace mesob::actors::trading
