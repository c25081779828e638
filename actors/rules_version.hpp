// rules_version: which build's rules decide a batch (a log record's version).
#pragma once

#include <cstdint>

namespace mesob::actors {

// Rules versions. A batch replayed from a log record an older build wrote is decided by
// that build's rules: `batch::rules` is the record's version (engine.cpp,
// batch_record_version), rules_newest when live. Each constant is the first version of a
// change of rules.
constexpr uint16_t rules_period_cap = 5;  // group creates with a period over the cap refused
// Payout desks cancel the gateways a payout leaves, keep in-flight payouts past a session
// closing, take overpayments (payouts::desk_table::set_rules).
constexpr uint16_t rules_desk_cancels = 6;
// Ended equb groups take debt payments; dissolving turns past rounds into debts;
// replace_account; a create repeating an existing group's config is ok whatever its
// period, and one naming an engine account is refused (equb::group_table::set_rules).
constexpr uint16_t rules_ended_groups = 7;
// Orders: an ending order's grace waits for its brokers' sessions and restarts when one
// opens; a reject while another broker may have the order waits for the grace; fill ids
// are the order's per broker (trading::table::set_rules).
constexpr uint16_t rules_orders_wait_for_brokers = 7;
// Orders: nothing is routed to a broker while its instrument is halted or its price stale
// (route_state::halted); such orders are routed when it trades again.
constexpr uint16_t rules_halts_hold_orders = 8;
// An equb guarantor's cover counts in the guarantor wallet's daily outflow (not checked
// against it: the group's guarantee stands).
constexpr uint16_t rules_cover_counts_as_outflow = 8;
// Instruments: an operator's resequence of a price feed (instrument_op_kind::resequence);
// before, that kind was instrument_op_invalid.
constexpr uint16_t rules_instrument_resequence = 9;
// Customers: an operator's resequence of a customer's KYC records
// (customer_op_kind::resequence); before, that byte was reserved (reserved_field).
constexpr uint16_t rules_customer_resequence = 9;
// Payouts: only gateways with the payments role take them (a broker-only gateway of the
// rail was sent payouts it could not answer), and a retry after its backoff stays with
// its gateway, or asks it to cancel and waits before another gets it (it went by
// priority, to a gateway that had come up meanwhile, while the first might have paid).
constexpr uint16_t rules_payout_routes = 9;
// Equb: a group's id (its escrow's) may not be one the engine reserves for its own
// accounts (id_reserved), as for any account a client makes.
constexpr uint16_t rules_group_ids_reserved = 9;
// Equb: a seat whose dividend credit covers its next contribution (no debts) is paid when
// the round opens; before, it owed 0, a transfer that cannot be made, and a hold_round
// group's round never closed.
constexpr uint16_t rules_credits_pay = 9;
// Payouts: a restart leaves a payout waiting out its backoff with its gateway, which gets
// an answer timeout from the start to come back; before, it went by priority to whichever
// gateway opened a session first, while the first might have paid.
constexpr uint16_t rules_reset_keeps_backoff = 10;
// A customer wallet that holds securities, has orders open or settlements owed may not be
// closed (account_has_positions): closed, its units could never be sold. And a sell is
// not refused for the customer's risk profile (the asset class it forbids, or a profile
// the policy no longer defines): the profile limits what is bought, and a customer moved
// to a stricter one must be able to sell what it no longer allows (rebalancing plans such
// sells). And a broker's fill is banded around the last price taken outside a move halt
// (market::instrument::band_ticks), not the bad print that began one.
constexpr uint16_t rules_portfolio_close_and_sells = 11;
// Equb: the engine's downtime does not count against members. A tick logged first at each
// start (a *resume marker*, batch::resumed_after) names the last timestamp logged before
// it; a group whose contribution deadline or close fell between the two gets its schedule
// moved by that gap (equb::reschedule). Before, every round overdue after an outage closed
// at once at the first batch, with debts, covers and late penalties for members who could
// not pay while the engine was down.
constexpr uint16_t rules_resume_rebases = 12;
// Payouts: a `failed` answer to the latest attempt while its payout waits out the backoff
// after that attempt timed out is taken (the gateway did not pay: the payout is released,
// or a dead letter if another gateway may still pay). Before, it was payout_answer_late
// and the retry went to the gateway that had said no.
constexpr uint16_t rules_failed_in_backoff = 13;
// Equb: a new group's grace must be shorter than its period (grace_not_within_period):
// round k closes at its deadline + grace, so with a grace of a period or more round k+1
// could not be paid until its own deadline had passed, and every payment was late.
constexpr uint16_t rules_grace_within_period = 13;
// Orders: one of more lots than an order may take fills (portfolio::fills_max) is refused
// (order_lots_past_fills): a broker filling it a lot at a time would meet too_many_fills
// with units bought that never settle.
constexpr uint16_t rules_orders_within_fills = 13;
// Equb: a member leaves its last seat first (seat_not_last). Seats after the one left
// move down a place, so before, a leave sent again after a lost answer found the
// member's next seat where the first had been and took that one too; now the place holds
// another member's seat, or none, and the repeat is refused (not_a_member).
constexpr uint16_t rules_leave_last_seat = 14;
// Orders: a wallet of another currency than the order's, or not open, is the ledger's to
// refuse (transfer_currency_mismatch, debit_account_frozen, ...); before, the portfolio's
// checks came first and named what they saw of it (insufficient_cash, say).
constexpr uint16_t rules_order_wallet_first = 14;
// Payouts: a payout leaving a gateway that may have paid it and can no longer say so
// (disabled, gone from the registry, or without the payments role: its answers are
// refused) becomes a dead letter (`withdrawn`) for an operator, hold kept. Before, it
// went to the next gateway, and a second payment could never be seen.
constexpr uint16_t rules_withdrawn_gateway = 15;
// Orders: a wallet of another currency than the order's, or not open, is the ledger's to
// refuse before the KYC tier's limits too (version 14 put it before the portfolio's
// checks only): a frozen tier-1 wallet's order got exceeds_transfer_limit, and a USD
// order on an ETB wallet was measured against the ETB tier's limits.
constexpr uint16_t rules_order_limits_after_wallet = 15;
// Capacity: create_accounts and equb_ops records carry the engine's accounts_max and
// groups_max in force when they were sequenced (8 bytes before the operations); a shard
// holding its share of either (engine/README.md "Capacity") refuses a new account
// (accounts_full) or group (groups_full). Before, neither had a limit.
constexpr uint16_t rules_capacity = 16;
// Status changes are numbered (wire::account_status_change::seq, account::status_seq):
// a numbered change applies only as its account's next, and a repeat of the latest
// returns its outcome (invariant 3). Before, `seq` was reserved (reserved_field) and
// the accounts counted no changes.
constexpr uint16_t rules_status_seq = 17;
// Ended groups retire: one that ended (completed or dissolved) with nothing owed (no
// obligation, no seat's debt, escrow empty) is kept equb::retire_after_ns for look-ups,
// then leaves the shard's memory at the first batch past that time (its row in the
// snapshot becomes a tombstone keeping its number taken), its escrow account closed for
// good, with an equb_retired event; one with something owed is looked at again a period
// later. Before, ended groups stayed in memory and counted against groups_max for good.
constexpr uint16_t rules_groups_retire = 18;
// A resequence to the sequence already kept (an instrument's prices, a customer's KYC
// records) takes effect: the next must be greater, and it makes its event. Before, it was
// a repeat unless an earlier resequence had set that sequence, so a price or record at
// exactly it was still compared with the one kept instead of refused.
constexpr uint16_t rules_resequence_marks = 18;
// Capacity of pending transfers: create_transfers and orders records carry the engine's
// pending_max in force when they were sequenced (8 bytes before the operations, as
// creates do from version 16); a new pending transfer that a side's shard cannot hold
// within its share of open ones is refused (pending_full), except those the engine
// emits. Before, open pending transfers had no limit.
constexpr uint16_t rules_pending_capacity = 19;
// Orders: a gateway given the broker role while sessions of it are up (counted for its
// payments role) is a broker up from that registry change: orders waiting for a broker
// are offered to it, as when a session of it opens. Before, they waited for its next
// session, which a gateway that stays connected may never open.
constexpr uint16_t rules_broker_role_reaches_sessions = 19;
// Gateways: a settlement account a gateway named and no longer does (an update replaced
// or dropped it) stays that gateway's: another gateway naming it is refused
// (settlement_account_in_use), since its balance and the sweeps of the first gateway's
// payouts still arriving are the first gateway's; the first may name it again. A gateway
// names at most gateways::settlement_accounts_named_max accounts over its life, its
// current ones included (settlement_accounts_exhausted). Before, a released account
// could be taken by any other gateway.
constexpr uint16_t rules_settlement_accounts_kept = 20;
// Equb: a seat that did not pay by its round's close owes the late penalty with its due
// (one debt, to the same creditor: the recipient it short-changed, or the guarantor who
// covered it). Before, it owed the due alone, and skipping a round cost less than paying
// it late.
constexpr uint16_t rules_default_penalty = 20;
// Equb codes: a join (a payment for round 0) naming a seat, and a bid for round 0, are
// equb_op_invalid (a field the operation must not set, or a round no group has); a new
// bidding group with a commission but a cap of 0 (its commission would always be 0) is
// commission_cap_missing. Before, not_a_member, round_already_paid (or whatever the
// group's phase gave first), and ok.
constexpr uint16_t rules_equb_codes = 20;
// Orders: a gateway that loses the broker role while sessions of it stay up (counted for
// its payments role) is a broker down from that registry change: the orders sent to it
// and not acknowledged go on at once (it can no longer answer them), as when its last
// session closes. Before, they waited out their answer timeout.
constexpr uint16_t rules_broker_role_loss_hands_orders_on = 20;
// Orders: a gateway that stops being an enabled broker (the broker role taken, or
// disabled) makes the orders working there dead letters (broker_withdrawn): it can no
// longer report their fills, and a working order never moves by itself (it may have
// traded), so an operator retries or cancels each, as for a payout's withdrawn gateway.
// Its answers are still taken (the latest broker sent to, while nobody has the order):
// enabled again, or given the role back, it may still report them; until then an
// acknowledgement of its (sequenced after the change) takes no order to work there but
// makes it a dead letter too. The role taken from a broker disabled before counts. Before,
// they stayed working there until they expired or were cancelled.
constexpr uint16_t rules_withdrawn_broker_dead_letters = 21;
// Orders: a portfolio's open orders may together take at most portfolio::open_fills_max
// fills: a new order whose lots (up to fills_max an order) with theirs would pass it is
// refused (open_lots_past_fills). Before, 1,024 open orders of 1,024 lots each, filled a
// lot at a time, held a million fills in the portfolio's row.
constexpr uint16_t rules_open_lots_within_fills = 22;
// Equb: a hold_round group's round that closes past its close time (deadline + grace:
// it waited for a late seat) moves the schedule by how far past it closed (shift), so the
// next round opens with the time a round that closed on time leaves. Before, the next
// rounds' deadlines stayed where they were: held longer than a period, the group opened
// its next round already late, and every member paid the late penalty through no fault
// of its own.
constexpr uint16_t rules_held_round_moves_schedule = 23;
// Transfers: the engine holds at most transfers_max transfers (every id stays in memory,
// engine/id_index.hpp): past it a new one that is not the engine's own is refused
// (transfers_full) and not recorded. Transfer batches and orders carry the setting they
// were decided by after their pending_max. Before, transfers grew until memory ran out.
constexpr uint16_t rules_transfers_capacity = 24;
// Market: a price that comes when the move window holds none (the feed was quiet longer
// than move_window_ms) is measured against the last price, if that one was taken into
// the window (not a print that began a move halt or came during one) and is not stale.
// Before, such a price was never a move: a tenfold jump after a minute's quiet halted
// nothing, and fills were banded around it.
constexpr uint16_t rules_move_after_quiet = 24;
// Payout desks: a sweep the ledger refused again and again (its settlement account frozen
// or closed) waits twice as long before each retry, from a minute up to an hour
// (payouts::sweep_retry_max_ns). Before, it was tried every minute for as long as the
// refusal lasted, each time a new transfer recorded: 1,440 a day a desk, for good when
// the account was closed.
constexpr uint16_t rules_sweep_backoff = 25;
// Equb bidding: a winning bid's discount (nominal pot - bid) is withheld whole. What the
// pot cannot pay of it (members missed the round) is owed to the group from the round's
// new debts, their *group part* (equb_rules.hpp), the seats' dividend when repaid. Before,
// the discount was capped by the pot while the missed dues were owed to the winner
// whole: the winner got more than its bid (by the discount's shortfall) and the
// dividend was short by as much.
constexpr uint16_t rules_bid_discount_owed = 26;
// Equb schedule: round k of a group started from this version is due at the start plus
// k - 1 periods. Round 1 is paid by the deposits and pays out at the start, so round 2,
// the first the members pay after it, has one period; before, round k was due at the
// start plus k periods and round 2 had two. Kept per group (group_state::schedule_offset)
// so a group started before keeps its schedule.
constexpr uint16_t rules_round_two_one_period = 27;
// Orders: the order's broker's reject sent again after it ended the order rejected (its
// answer lost), while the order waits out another broker's grace, is a repeat (no second
// order_answer event). Before, it was taken as a fresh answer and its event written twice.
constexpr uint16_t rules_repeated_reject = 28;
// Orders, three of a broker's standing: (1) an ending order's grace waits for a broker it
// went to only while that broker is an enabled broker with no session open (whatever
// currencies it serves now: instructions reach its sessions all the same); before, a
// broker that stopped serving the order's currency, or lost the role, held the order
// the whole ending_max_ns though it had heard. (2) A reject from a broker withdrawn
// (sequenced after the change) that ends the order does not make it a dead letter
// first; before, an order_dead event came just ahead of its close. (3) A broker's
// session opening while the instrument is halted holds an order sent there and not yet
// acknowledged (as a halt holds one to route) instead of pushing it to the broker again.
constexpr uint16_t rules_grace_by_sessions = 29;
constexpr uint16_t rules_closing_answer_not_dead = 29;
constexpr uint16_t rules_halt_holds_resent = 29;
// Payout desks: an operator's retry or cancel of a dead letter that a gateway was sent
// and never answered (it may have paid it) is refused (payout_may_be_paid) unless the
// operation is forced (payout_op_flags::force: the operator checked with the gateway),
// decided by the desk as the operation executes. Before, only the admin command looked,
// at a state it had read before sending the operation: a payout that became a dead letter
// in between was cancelled or routed again unchecked.
constexpr uint16_t rules_payout_ops_checked = 30;
// Equb creates: a new group's escrow account counts against its shard's share of
// accounts_max, logged with the record (8 bytes after its groups_max): a create on a
// shard holding its share of accounts is refused (accounts_full) and makes nothing.
// Before, escrows were made whatever the shard held: bounded by groups_max while their
// groups lived, but a retired group's escrow account stays, so creates and retirements
// could grow the accounts past accounts_max.
constexpr uint16_t rules_escrow_capacity = 31;
// Equb codes: a member's payment for a round that closed without it is round_closed (it
// was round_already_paid, as for a seat that paid it), a bid for a closed round is
// round_closed (round_already_paid), and a payment into an ended group from a seat that
// owes nothing is nothing_owed (group_not_active). A refused payment is a transfer
// record, its code kept: older records keep theirs.
constexpr uint16_t rules_round_closed_codes = 31;
// Orders: a market order's limit is checked against the instrument's reference price
// (market::instrument::reference_ticks: the last price taken outside a move halt), the
// price its fills are banded around. Before, against the last price, which after a print
// that began a move halt (until the next price, once the halt ended or was lifted) is
// that print: sane orders were refused price_limit_exceeded. And an instrument whose
// smallest order (one lot at one tick) passes notional_max is refused lot_invalid: it
// could never trade, and its id and symbol were taken for good.
constexpr uint16_t rules_reference_price = 32;
constexpr uint16_t rules_instrument_tradable = 32;
// Deposits: a deposit credits a customer wallet (customer_wallet_required otherwise).
// Before, any account but the gateway's settlement account: another gateway's settlement
// account, its own former one, a fee or system account, each counted in the gateway's
// reconciliation as deposited.
constexpr uint16_t rules_deposit_to_wallet = 32;
// Brokers: a gateway given the broker role in the batch that rotates its secret is not a
// broker up for the sessions it has: those were opened with the old secret (perhaps a
// leaked one) and the server closes them; its orders wait for a session of the new
// secret, as after a disable and an enable in one batch. Before, the orders waiting for
// a broker were sent to those sessions.
constexpr uint16_t rules_rotation_ends_broker_sessions = 33;
// Gateways: the ledger role (wire::roles::ledger, 64) may be given to a registered
// gateway: the server lets a registered gateway's sessions make the ledger's operations
// (transfers, accounts, payouts, orders, look-ups) only with it, its payments role
// covering its deposits and payout answers. Before, roles past admin were roles_invalid.
constexpr uint16_t rules_registered_ledger_role = 33;
// Equb creates: a new group's round is a minute or longer (period_too_short), and a
// seat's round (contribution and late penalty) at most equb::seat_round_max
// (amounts_too_large), so that the escrow's lifetime sums cannot overflow. Before, a
// round of a nanosecond was taken, and contributions up to 2^63 / 4,000 each.
constexpr uint16_t rules_group_lifetime_sums = 34;
// Payouts and orders waiting for any gateway (or broker) keep their wait across a
// restart: the wait's start moves by the engine's downtime at the resume marker, and the
// reset keeps it, so ten minutes of the engine's up time make a dead letter (no_route),
// however often it restarts. Before, each restart began the wait again (an engine
// restarting every few minutes never made one), and a waiting payout was looked at only
// when the new wait had passed (a gateway given its currency meanwhile was not seen).
constexpr uint16_t rules_reset_keeps_route_wait = 34;
// Orders and the engine's downtime, as for waits (34): an ending order's day-long cap and
// its grace move by the downtime at the resume marker (before, a cap that passed while
// the engine was down closed the order at the start, its hold released before its
// brokers could say whether they filled it); the resume marker routes no order held by
// a halt that ended while down (before, it sent one to a broker by the sessions before
// the stop, an attempt spent on an instruction no session took; the reset comes first
// now, and the next batch routes it). And a restart leaves an order sent and not
// acknowledged, or backing off after a timeout, with its broker for an answer timeout
// from the start, as payouts in flight (rules_reset_keeps_backoff): before, the first
// broker to come up got it while the first might be working it.
constexpr uint16_t rules_orders_downtime = 35;
// Equb covers: a debt's forward to its creditor waits while the round it was missed in
// has a guarantor's cover the ledger has not carried (the round's close chain refused,
// or not yet executed): it is an obligation of its own, held back, and sent once that
// chain is carried. Before, a member's repayment reached the guarantor while the cover
// it repays waited for a retry (and a guarantor replaced before the retry kept it).
constexpr uint16_t rules_cover_forwards_wait = 36;
// A broker's fill is banded around the prices of the instrument's move window when the
// answer comes (its lowest and highest, with the reference price), not the reference
// price alone: a fill made at a price the feed printed within move_window_ms, answered
// after the price moved on within its band, is taken. Before, such a fill was refused
// fill_invalid though the broker had made it.
constexpr uint16_t rules_fill_band_window = 37;
// Payouts go to no further gateway while one with a session up may still pay them:
//  - a gateway asked to cancel that lets the wait for its answer pass with a session up
//    (it can hear, and says nothing) leaves the payout a dead letter (unanswered, named
//    gateway_silent; hold kept): a `settled` settles it, the last `failed` of the gateways
//    that may pay sends it on, or an operator forces a retry or cancel once they checked.
//    Before, the payout went on to the next gateway, which paid it while the silent one
//    might have too;
//  - a gateway asked to cancel that answers `failed` (it did not pay) sends the payout
//    on only if no other gateway it went to since the last operator's retry may still
//    pay it, else it becomes such a dead letter, waiting on that one. Before, a payout that had left
//    one gateway in an outage, timed out at a second and been cancelled there went to a
//    third while the first could still pay it.
// A gateway with no session up when the wait ends still hands the payout on at once
// (an outage: availability first, the overpayment counted if it comes).
constexpr uint16_t rules_payout_stays_while_may_pay = 38;
// A gateway's `failed` answer may say the payment was declined (payout_answer.failure 1:
// the destination unknown or closed, over the recipient's limits): the gateway's circuit
// breaker counts it a good outcome, as it counts a settlement: the gateway is well and
// answered. Before, every `failed` was a bad outcome, so one user's payouts to a closed
// account could open a gateway's breaker for every user. The byte was reserved before
// (an answer with it set was refused, reserved_field, as records of older builds replay).
constexpr uint16_t rules_payout_declines = 39;
// An order whose backoff after a timeout ends goes to the broker it timed out at again,
// if that broker may still take it (enabled, a session up, not given up, its breaker
// admitting it); else on by priority, that broker told to cancel. Before, it went to the
// first broker by priority: one whose session had opened meanwhile got it after a single
// timeout, while the first might be working it (payouts do so since rules_payout_routes).
// So does an order sent and then held by a halt (its broker's session opening during the
// halt) when the halt ends: before, the first broker by priority got it.
constexpr uint16_t rules_order_retry_same_broker = 40;
// A fill that completes an order, from a broker withdrawn since (its answer sequenced
// after the change), closes the order without first making it a dead letter, as a
// reject that ends one does since rules_closing_answer_not_dead: before, an order_dead
// event came just ahead of the fill's close.
constexpr uint16_t rules_completing_fill_not_dead = 40;
// Orders waiting for a broker look again when a registry change makes a broker with a
// session up serve a currency it did not: it takes them at once. Before, they
// waited for a broker's session to open (or the broker role given to one with sessions
// up), up to route_wait_max_ns (10 minutes) and then became dead letters, while a broker
// that could take them was up.
constexpr uint16_t rules_waiting_orders_look_again = 40;
// A bidding round's close whose guarantor's cover pays part of the dividend: the part of
// the dividend the money paid into escrow does not back (the dividend less the pot
// without the cover) is not a credit but a dividend paid to the seats once the ledger
// has carried that close's chain. Before, the whole dividend was credits: while the
// cover was refused (a guarantor without the money) the escrow held less than the
// credits, so the next round's payout or a dissolution's refunds were refused
// exceeds_credits on the escrow until an operator's retry.
constexpr uint16_t rules_cover_backs_credits = 41;
// Payouts: a client's payout holds a customer wallet (customer_wallet_required otherwise),
// as a deposit credits one (rules_deposit_to_wallet). Before, any account but the payout
// accounts (and, by the ledger's own checks, escrows and trading accounts): a gateway's
// settlement account, whose hold the post and the sweep then net to nothing while the
// gateway paid real money out, or a fee or system account, outside every tier's limits.
constexpr uint16_t rules_payout_from_wallet = 42;
// Payouts: an operator's retry of a payout whose void the ledger refused (failing, its
// hold kept) sends the void again under new ids. Before, it was payout_not_dead and
// nothing could send it again: the wallet's money stayed held for good.
constexpr uint16_t rules_refused_void_retry = 43;
// Equb: a member's payment of what its seat owes (a round's due, with a late penalty and
// its debts when it has them, or its debts after the group ended: any equb payment but a
// join) is not refused by its wallet's tier limits (exceeds_transfer_limit,
// exceeds_daily_outflow); it still counts in the day's outflow. The join is checked like
// any transfer: the member takes the group's obligation on under its tier. Before, a
// tier whose single limit was the contribution (or a day's outflow spent) refused a late
// payment, whose amount is the due, the penalty and every debt in one transfer and
// cannot be split: the seat stayed late for good, a held round never closed, and its
// creditors were never repaid.
constexpr uint16_t rules_equb_dues_past_limits = 44;
// Equb: money a group pays out that no other of its transfers needs (a dissolution's
// refunds, the forwards of debts paid after the group ended, group parts shared out to
// the seats) goes as one obligation a transfer, so that one the ledger refuses (a frozen
// or closed wallet) holds back only its own. Before, each went as one linked chain: one
// seat's frozen wallet held back every seat's refund until an operator unfroze it or
// sent that seat's money elsewhere (replace_account).
constexpr uint16_t rules_refunds_apart = 45;
// Equb: no seat owes its own wallet. A debt whose creditor is the wallet of the seat that
// owes it (one wallet holding two seats, one of them unpaid when the other receives, or
// an account replaced by the wallet of a seat that owed it) keeps only its part owed to
// the group, and goes if it has none: at each round's close and at a replace_account.
// Before, the seat owed its own wallet the missed due and the penalty: its next payment
// had to carry both, to be forwarded straight back, a wallet short of that sum could not
// pay its real due (and left another seat a real debt), and an ended group with such a
// debt unpaid never counted as settled.
constexpr uint16_t rules_no_debt_to_itself = 46;
// Equb: a new group's late penalty is at most its contribution
// (late_penalty_past_contribution). A member's dues pass its tier's limits
// (rules_equb_dues_past_limits), and only the join's contribution is checked against
// them: with a penalty of any size, a group of contribution 1 and a penalty of 10^10
// moved 10^10 out of a tier-1 wallet in one late payment. Groups made before keep
// their terms.
constexpr uint16_t rules_penalty_within_contribution = 47;
// Payouts: a payout about to be sent to a gateway while another it went to since the
// last operator's retry, with a session up, may still pay it (that one came back from an
// outage while the payout waited for a gateway, its breaker open or the payout given up
// there) goes back to that gateway if it alone may pay and takes it; else that gateway
// is asked to cancel first and the payout waits its answer, as when it leaves a gateway
// after a timeout. Before, routing went by priority: the cancel went out with the new
// instruction, and both gateways could pay.
constexpr uint16_t rules_payout_asks_before_routing = 48;
// Payouts: a payout leaving a gateway that may have paid it and has no session up (its
// answer deadline, or the wait on its answer to a cancel, passed in an outage or after a
// restart) goes to no other gateway until that one is heard: it waits for it as for a
// gateway, and that gateway's session opening asks it again (rules 48), its `failed`
// sending the payout on; at route_wait_max it becomes a dead letter (`gateway_silent`)
// for an operator. Before, it went to the next gateway at once, and both could pay.
constexpr uint16_t rules_payout_waits_for_payer = 49;
// Orders: an order sent to a broker and not acknowledged stays with that broker when its
// last session closes (to its answer deadline, as a payout in flight does with its
// gateway); past a deadline (or a backoff, or a halt) with that broker enabled and no
// session of it up, in an outage or after a restart, the order waits for it and goes to
// no other broker: its session opening sends the order to it again, and after
// route_wait_max it is a dead letter (`broker_silent`); one disabled meanwhile leaves it
// a dead letter (`broker_withdrawn`). Before, the order went to the next broker at once,
// and both could trade it.
constexpr uint16_t rules_order_waits_for_broker = 50;
// Equb: an operator writes off an ended group's seat's debts (equb_op_kind::write_off,
// with one equb_debt_written_off event per debt), so that a group with a member who
// will never pay retires. Before, the kind was unknown: an older record's refused it
// (equb_op_invalid), and such a group kept its place among groups_max for good.
constexpr uint16_t rules_equb_write_off = 51;
// Orders: an operator's retry of a dead letter that a broker was sent since its last
// retry and never answered, or that was working at a broker since withdrawn (any such
// broker may have it and trade it), is refused
// (order_may_be_traded) unless forced (op_kind::order_retries_forced: the operator
// checked with that broker), as a payout's retry is (payout_may_be_paid). Before, every
// retry routed afresh at once, and both brokers could trade the order.
constexpr uint16_t rules_order_retry_checks_broker = 52;
// Orders: a sell's hold counts toward its wallet's balance limit (balance_max) at what the
// sell may fetch at the highest price a fill may have then (the move band's top) when
// that is above its limit, with the wallet's open sells' the same way and the price
// improvements of its fills the ledger has not settled yet. The
// hold announces the least proceeds (at the limit), and a fill's price improvement is a
// transfer the engine makes, which no tier limit checks: before, a sell with a limit of 1
// tick passed the check with almost nothing and its fills took the wallet past the limit
// by the position's whole value.
constexpr uint16_t rules_sell_balance_at_reference = 53;
// Orders: an order sent to a broker and not acknowledged, whose broker then stops serving
// it (the broker role taken, or the order's currency), becomes a dead letter
// (broker_withdrawn) when next routed, as it does when that broker is disabled
// (rules_order_waits_for_broker): the broker may have the order and trade it, and can no
// longer report it. (The role taken with sessions counted routes its orders at that
// registry change; otherwise at the deadline, a backoff's or a halt's end.) An operator
// retries it (forced: rules_order_retry_checks_broker) or cancels it. Before, the order
// went on to the next broker (at once for the role, from rules version 20), and both
// could trade it.
constexpr uint16_t rules_order_role_loss_dead_letter = 54;
// Equb: the forwards of an active group's debts, paid with a seat's contribution, go as
// one obligation a transfer, and so does each dividend or forward held back for a cover
// (as rules_refunds_apart made a dissolution's refunds and an ended group's forwards):
// one the ledger refuses (a creditor's wallet frozen or closed) holds back only its
// own. Before, one chain carried them all, and one creditor's frozen wallet held back
// every other creditor's repayment (and every seat's held dividend) until an operator
// unfroze it or replaced the account and retried. And a cover carried re-points its
// round's debts to the account that paid it: a debt that then names the owing seat's
// own wallet keeps only its part owed to the group (rules_no_debt_to_itself at a close
// and a replace_account; before, the seat owed its own wallet, and an ended group never
// counted as settled until it paid itself or an operator wrote the debt off).
constexpr uint16_t rules_equb_forwards_apart = 55;
constexpr uint16_t rules_newest = 55;

}  // namespace mesob::actors
