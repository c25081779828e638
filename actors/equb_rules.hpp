// Equb groups' rules as pure functions over a group's state: which result an operation
// gets, how the state changes, and which ledger transfers carry the money. Every money
// movement is a ledger transfer; these functions only decide them (the group actor
// submits each list as one linked chain, all or nothing, except where the rules say
// otherwise: a dividend only a cover backs waits for the cover, rules version 41; a
// refund, an ended group's forwards and shared parts go apart, rules version 45, and so
// do an active group's forwards and the held shares, rules version 55, each up to
// equb_group.hpp's owed_apart_max). Like ledger_rules, they read nothing but their
// arguments, so replay decides every operation the same way.
//
// A group: N seats ("numbers"), each held by a member wallet (a member may hold several
// seats, each receiving its own payout). Lifecycle:
//   forming   seats join (paying the first contribution as a deposit into escrow) and
//             leave (the deposit is returned); start needs at least 2 seats.
//   active    round k of N (1-based). Round k's deadline is started_at + shift + (k - 1) *
//             period (shift: the engine's downtime that fell on its deadlines, below, and
//             how far past their close hold_round rounds closed). Round 1 is paid by
//             the deposits and pays out at the start; round 2 so has one period (rules
//             version 27: a group started before has k periods, schedule_offset 0);
//             contributions after it pay the late penalty, into the pot. A round
//             closes when every seat has paid, or when deadline + grace has passed
//             (unless the default policy holds the round): seats that did not pay owe
//             their due and (from rules version 20) the late penalty as a debt, and the
//             pot is paid out to the round's recipient.
//   completed every seat has received once; escrow is empty.
//   dissolved the current round's payments (and forming deposits) are refunded to
//             their payers, to the minor unit, with the dividend credits held for
//             seats and the shares of what the escrow held; escrow is empty. Past rounds are settled
//             as debts: every seat that received owes every seat that did not one
//             contribution (its dues for the rounds it will not pay; each non-recipient
//             is owed back its contributions to the pots others took). Nominal amounts:
//             fees, penalties, discounts and dividends are not reversed; a member holding
//             both seats owes itself nothing.
// An ended group (completed or dissolved) keeps its seats' debts, and takes one payment:
// a seat that owes pays all its debts at once, naming the group's last round (g.round),
// forwarded to their creditors oldest first (can_repay, repay). A seat's debts that will
// never be paid are written off by an operator, all at once (can_write_off, write_off:
// rules version 51), so that the group can retire.
//
// Accounts: replace_account puts another account wherever the group names one (its fee,
// guarantor or organizer account, a seat's wallet, a debt's creditor): a closed account
// never takes a payment again, and this is how a group gets past one. A create repeated
// after it is compared with the group's accounts as they are now: the first create's
// fields get exists_with_different_fields (the group as created is not kept).
//
// Contributions name their round and must pay exactly what the seat owes: its due,
// the late penalty if past the deadline, and its outstanding debts, oldest first (each
// debt forwarded from escrow to its creditor: in the same chain, from rules version 55
// in a chain of its own). A payout pays the pot
// less the fee (basis points, to the fee account) less the recipient's own debts
// (settled to their creditors, oldest first, as far as the payout goes).
//
// Default policies when deadline + grace passes with seats unpaid:
//   pay_what_is_there  the recipient gets the pot as collected; each missing due, with
//                      the late penalty, is a debt whose creditor is that recipient's
//                      wallet (repaid later; the recipient's own missing due leaves its
//                      pot short, with no debt);
//   cover_from_guarantor the guarantor account pays the gap (the dues) into escrow and
//                      the pot is whole; the debts' creditor is the guarantor (the
//                      penalty pays for its cover), repaid only once the ledger has
//                      carried the cover (rules version 36: a repayment before that
//                      waits in escrow);
//   hold_round         the round waits for every seat (late penalties still apply);
//                      closed past its close time, it moves the schedule (shift) by
//                      how far past, so the next round opens with the time a round
//                      closed on time leaves (rules version 23).
// A missed round so never costs less than a late payment, which puts the penalty in the
// pot (rules version 20 on; before, a debt was the due alone). A seat whose dividend
// credit covered its due but that still owed older debts owes the penalty alone; the
// recipient's own missed due under pay_what_is_there makes no debt (its pot is short).
//
// Engine downtime: members cannot pay while the engine is down. When it starts again, a
// group whose round deadline or close (deadline + grace) fell in the outage, from the
// last timestamp logged before it up to the first after, has its schedule moved by the
// outage's length (`shift`, every later round's too): each member gets the time to the
// deadline it had when the engine stopped (reschedule). Rounds that were already due
// when it stopped close as they would have. The outage is measured from the last logged
// batch; the engine ticks when a round's deadline passes, so a deadline that passed while
// it was up is not in the gap (the grace the outage took is given back, with the penalty
// still owed).
//
// Recipients: fixed order (seat k receives in round k); bidding: seats that have not
// received bid the amount they will take from the nominal pot (N x contribution), the
// lowest bid wins (the earliest among equal ones; no bid: the first seat in order),
// within max_discount_bp of the nominal pot. The discount (nominal pot - bid) is
// withheld from the winner: the organizer's commission (commission_bp of it, at most
// commission_cap, and at most the pot) goes to the organizer account, and the rest is a
// dividend shared by every seat (equal shares; the remainder's minor units to the first
// seats in order) that lowers each seat's next contribution, or is paid to the seats at
// once after the last round. When members missed the round, the pot may hold less than
// the discount: the rest of it is taken from the round's new debts (their dues, seat
// order; then, if the winner missed too, a debt of the winner's owed to the group
// alone), as each debt's *group part*, owed to the group instead of the winner. Repaid,
// a group part is the seats' dividend: kept in escrow (`held`) and paid to the seats at
// the next close, or at once once the group has ended, or at a dissolution (in a chain
// of their own: outcome::shared). The winner
// so gets its bid, less its own missed due, and no more (rules version 26; before, the
// discount was capped by the pot and the missed dues owed to the winner whole). Or a lottery drawn from a seed chain: at start the group holds a secret s_N (random, logged with the start) and
// publishes the commitment s_0 = H^N(s_N) (H = SHA-256). Round k reveals s_k, which
// anyone checks against the previous value (H(s_k) = s_{k-1}) before it is revealed no
// one can compute it. The winner is the seat at index H(s_k || group id || k) mod R
// among the R seats that have not received, in seat order.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wire/types.hpp"

namespace mesob::actors::equb {

using seed = std::array<uint8_t, 32>;

constexpr uint32_t seats_max = 1000;
// The longest round, and the longest grace after it, of a group created now (the group
// table refuses longer ones: period_too_long): a group's every deadline (started_at +
// seats x period + grace) stays below 2^64 ns for groups started before 2^62 ns (the year
// 2116). Groups created before the cap keep theirs (snapshots and replay take them), and
// their deadlines saturate at 2^64 - 1 (deadline_after).
constexpr uint64_t period_max_ns = 120ull * 86'400 * 1'000'000'000;
static_assert(uint64_t(seats_max + 1) * period_max_ns <= UINT64_MAX - (uint64_t(1) << 62),
              "deadlines stay below 2^64 ns");
// The shortest round of a group created now (period_too_short): shorter, a round could
// close before its members can pay (a nanosecond's closed every round at the first batch
// after the start, each seat defaulting).
constexpr uint64_t period_min_ns = 60ull * 1'000'000'000;
// The most a seat's round may cost (contribution and late penalty) in a group created now
// (amounts_too_large): the escrow's lifetime sums (every seat paying every round, debts
// and covers paid in too) stay far below 2^64. Before, only a round's sums were bounded,
// and a large group of large contributions overflowed its escrow's credits part-way,
// refusing every payment after.
constexpr uint64_t seat_round_max = (uint64_t(1) << 63) / (uint64_t(seats_max) * seats_max * 4);
constexpr uint32_t bp_max = 10'000;  // basis points in 100%
// Group numbers are below this: a gateway payout's id is 1 << 63 | number << 24 | step
// (equb_group.hpp, group_payout_id).
constexpr uint64_t numbers_max = uint64_t(1) << 39;

enum class rotation : uint8_t { fixed_order = 1, lottery = 2, bidding = 3 };
enum class default_policy : uint8_t { pay_what_is_there = 1, cover_from_guarantor = 2, hold_round = 3 };
enum class phase : uint8_t { forming = 1, active = 2, completed = 3, dissolved = 4 };

// Results are the engine's (wire::result), the codes from contribution_must_not_be_zero
// on; currency_invalid is shared with the ledger's field checks.
using result = wire::result;
using wire::result_name;

struct group_config {
  uint64_t group_id = 0;
  uint64_t escrow_account_id = 0;
  uint64_t fee_account_id = 0;
  uint64_t guarantor_account_id = 0;  // cover_from_guarantor only
  wire::currency_code currency = 0;
  uint64_t contribution = 0;  // per seat per round, minor units
  uint64_t period_ns = 0;     // round length on the engine clock
  uint64_t grace_ns = 0;
  uint64_t late_penalty = 0;  // minor units: paid late, into the pot; missed, in the debt
  uint32_t fee_bp = 0;        // of each payout, to the fee account
  rotation policy = rotation::fixed_order;
  // bidding only
  uint32_t max_discount_bp = 0;   // largest discount a bid may offer, of the nominal pot
  uint32_t commission_bp = 0;     // the organizer's share of the discount
  uint64_t commission_cap = 0;    // at most this much commission per round
  uint64_t organizer_account_id = 0;
  default_policy on_default = default_policy::pay_what_is_there;
};

struct debt {
  uint32_t round = 0;  // the round it was missed in
  uint64_t amount = 0;
  uint64_t creditor_account_id = 0;  // 0: the whole debt is the group's (group_part == amount)
  // Of amount, what is owed to the group (a winning bid's discount the pot could not pay):
  // repaid, the seats' dividend. Paid first when a payout settles part of a debt.
  uint64_t group_part = 0;
};

struct seat {
  uint64_t wallet = 0;
  // Where its payout goes: rail 0, the wallet; 1..3, on to `destination` through a
  // payment gateway of that rail (a hold on the wallet, the chain's last transfer).
  uint8_t payout_rail = 0;
  uint64_t destination = 0;
  uint32_t received_round = 0;  // 0: not yet
  bool paid = false;            // this round
  uint64_t paid_amount = 0;     // paid into escrow this round (due and penalty; debts go on)
  uint64_t credit = 0;          // bidding: dividend held in escrow, off its next contribution
  uint64_t bid = 0;             // bidding: this round's bid (0: none)
  uint32_t bid_order = 0;       // bidding: which bid of the round it was (ties: earliest wins)
  std::vector<debt> debts;      // oldest first
};

struct group_state {
  group_config cfg;
  // Unique engine-wide, given by the engine at create (0: a group made before numbers;
  // its payouts go to wallets only). The ids of its gateway payouts carry it.
  uint64_t number = 0;
  phase ph = phase::forming;
  uint32_t round = 0;  // 1..N while active
  uint64_t started_at = 0;
  uint64_t shift_ns = 0;  // added to every deadline: engine downtime (reschedule), held rounds' overrun
  // Periods taken off every round's deadline: 1 for a group started from rules version 27
  // (round k due at the start + k - 1 periods), 0 for one started before (k periods).
  uint8_t schedule_offset = 0;
  std::vector<seat> seats;
  uint64_t pot = 0;          // this round: dues and penalties paid, credits used, any cover
  uint64_t escrow = 0;       // what escrow must hold: pot + every seat's credit + held (the audit's invariant)
  uint64_t held = 0;         // active: debts' group parts repaid since the last close, the seats' at the next
  uint32_t bids = 0;         // bids this round
  seed secret{};             // lottery: s_N, never shown until its rounds reveal it
  seed commitment{};         // lottery: s_0, published at start
  seed last_revealed{};      // lottery: s_{round-1} (s_0 before round 1 is drawn)
};

// A ledger transfer these rules ask for. The list one operation returns is one linked
// chain.
enum class purpose : uint8_t {
  deposit, deposit_refund, contribution, debt_forward, cover, payout, fee, refund, commission, dividend,
  // The recipient's payout sent on through a gateway: a payout hold on its wallet, to the
  // payout account of the wallet's shard (credit_account_id 0 here: chosen when the
  // chain is sent, by the shard count then). Always a chain's last transfer.
  payout_out
};
struct money {
  uint64_t debit_account_id = 0;
  uint64_t credit_account_id = 0;
  uint64_t amount = 0;
  purpose why = purpose::contribution;
  uint8_t rail = 0;          // payout_out
  uint64_t destination = 0;  // payout_out
};

struct outcome {
  result code = result::ok;
  std::vector<money> transfers;  // empty when code != ok
  // Repaid group parts shared out to the seats (dividends): a chain of its own, so that a
  // seat's closed wallet holds back only these, not a payout or a creditor's forward.
  std::vector<money> shared;
  // Debt forwards held back: each with the round its debt was missed in, whose cover the
  // ledger has not carried yet (`uncovered` below), and, taken from a payout that a cover
  // of this close pays into, this close's round (`funded_by`; 0: none). Sent once the
  // ledger has carried both (the group table), to whoever paid the first. Also dividends
  // a close's cover pays (round 0, funded_by that close: close_round's
  // `cover_backs_credits`), sent once the ledger has carried that close's chain.
  struct held_forward {
    uint32_t round = 0;
    uint32_t funded_by = 0;
    money m;
  };
  std::vector<held_forward> held;
  uint32_t recipient_seat = UINT32_MAX;  // a payout: which seat received
  seed revealed{};                       // a lottery payout: the seed of that round
};

[[nodiscard]] result check_config(const group_config& c);
// started_at + rounds x period + grace, or 2^64 - 1 past it.
[[nodiscard]] uint64_t deadline_after(uint64_t started_at, uint64_t rounds, uint64_t period_ns, uint64_t grace_ns);
[[nodiscard]] group_state make_group(const group_config& c);

// Forming. Joining pays the first contribution into escrow as a deposit.
[[nodiscard]] result can_join(const group_state& g, uint64_t wallet);
outcome join(group_state& g, uint64_t wallet);
// last_seat_only (rules_leave_last_seat): a wallet holding a later seat is refused
// (seat_not_last), so a leave repeated after it was taken cannot take another seat.
outcome leave(group_state& g, uint32_t seat_index, uint64_t wallet, bool last_seat_only = true);
// Starts round 1 at `now` (the deposits are its contributions). `secret` is the lottery
// seed s_N (random, chosen by the engine and logged); ignored for fixed order.
// `round_two_one_period`: round k is due at the start + k - 1 periods (schedule_offset 1);
// false: the rules before version 27 (k periods).
outcome start(group_state& g, uint64_t now, const seed& secret, bool round_two_one_period = true);

// Round g.round's deadline: a contribution after it is late.
[[nodiscard]] uint64_t round_deadline(const group_state& g);
// Round g.round's deadline + grace: once past it the round closes (not under hold_round).
[[nodiscard]] uint64_t round_close(const group_state& g);
// The engine was down from `last_before` (the last timestamp logged) to `resumed` (the
// first after): an active group whose round deadline or close (not under hold_round)
// fell in [last_before, resumed] has `resumed - last_before` added to its shift
// (saturating). Returns what was added (0: the group is not moved).
uint64_t reschedule(group_state& g, uint64_t last_before, uint64_t resumed);
// What `seat_index` owes at `now` to pay round g.round: due, penalty if late, debts.
[[nodiscard]] uint64_t owed(const group_state& g, uint32_t seat_index, uint64_t now);
[[nodiscard]] result can_contribute(const group_state& g, uint32_t seat_index, uint64_t wallet, uint32_t round,
                                    uint64_t amount, wire::currency_code currency, uint64_t now);
// `uncovered` (here, in repay and in close_round): rounds whose guarantor's cover the
// ledger has not carried yet; a forward of a debt missed in one of them is held
// (outcome::held), not in the chain, so a guarantor is never repaid a cover it has not
// made (rules_cover_forwards_wait; empty: the rules before).
outcome contribute(group_state& g, uint32_t seat_index, uint64_t wallet, uint32_t round, uint64_t amount,
                   wire::currency_code currency, uint64_t now, std::span<const uint32_t> uncovered = {});
// An ended group: what seat_index owes (its debts), and the payment of all of it.
[[nodiscard]] bool ended(const group_state& g);
[[nodiscard]] uint64_t debts_of(const seat& s);
[[nodiscard]] result can_repay(const group_state& g, uint32_t seat_index, uint64_t wallet, uint32_t round,
                               uint64_t amount, wire::currency_code currency);
outcome repay(group_state& g, uint32_t seat_index, uint64_t wallet, uint32_t round, uint64_t amount,
              wire::currency_code currency, std::span<const uint32_t> uncovered = {});
// An ended group: seat_index's debts written off by an operator (a member who will never
// pay): its creditors, and the group for the debts' group parts (the seats' dividend),
// are never paid them; no money moves (a debt is owed money, nothing the escrow holds).
// `amount` must be all the seat owes (debts_of), as the operator saw it: a repayment in
// between leaves nothing_owed, never a write-off of what was not seen. Returns the debts
// written off, oldest first. Then the group may retire (nothing else owed).
[[nodiscard]] result can_write_off(const group_state& g, uint32_t seat_index, uint64_t wallet, uint64_t amount);
std::vector<debt> write_off(group_state& g, uint32_t seat_index, uint64_t wallet, uint64_t amount);
// Whether the group names `a` (config, seats' wallets, debts' creditors; not the escrow).
[[nodiscard]] bool names_account(const group_state& g, uint64_t a);
// Whether `from` may be replaced by `to`: neither is the escrow, they differ, and the
// config stays valid (check_config: the group's accounts still differ). Whether the group
// names `from` is the caller's (its obligations count too).
[[nodiscard]] result can_replace_account(const group_state& g, uint64_t from, uint64_t to);
void replace_account(group_state& g, uint64_t from, uint64_t to);
// Where seat_index's payout goes (rail 0 and destination 0: its wallet). The rail's
// range and the destination were checked with the operation's fields; whether a gateway
// serves the rail is the caller's (the registry).
[[nodiscard]] result can_payout_to(const group_state& g, uint32_t seat_index, uint64_t wallet, uint8_t rail);
[[nodiscard]] result payout_to(group_state& g, uint32_t seat_index, uint64_t wallet, uint8_t rail,
                               uint64_t destination);
// A bid for round g.round: the amount the seat will take from the nominal pot.
outcome bid(group_state& g, uint32_t seat_index, uint64_t wallet, uint32_t round, uint64_t amount);
// The nominal pot: seats x contribution.
[[nodiscard]] uint64_t nominal_pot(const group_state& g);
// Whether round g.round closes now: every seat paid, or deadline + grace passed (not
// under hold_round).
[[nodiscard]] bool round_due(const group_state& g, uint64_t now);
// Closes the round: debts for the unpaid, cover, the recipient, the payout chain; then
// the next round, or completion. `credits_pay`: a seat whose dividend credit covers the
// next contribution, with no debts, owes nothing and is paid at once (a transfer of 0
// cannot be made: under hold_round its round never closed); false: the rules before
// version 9. `default_penalty`: a missing due's debt carries the late penalty; false: the
// rules before version 20. `held_moves`: a hold_round round closing past its close time
// moves the schedule (shift) by how far past, so the next round is not late from its
// start; false: the rules before version 23. `discount_owed`: a winning bid's discount
// the pot cannot pay is owed to the group from the round's new debts (group parts);
// false: the rules before version 26, which capped the discount by the pot.
// `cover_backs_credits`: with a guarantor's cover in this close, the dividend's part past
// what the pot holds without the cover is paid to the seats as dividends held for this
// close's chain (outcome::held, round 0), so the credits never exceed what the escrow
// holds while that chain is refused; false: the rules before version 41 (the whole
// dividend credits).
// `no_debt_to_itself`: forgive_debts_to_itself before the payout (rules version 46); false:
// the rules before, under which a seat could owe its own wallet.
outcome close_round(group_state& g, uint64_t now, bool credits_pay = true, bool default_penalty = true,
                    bool held_moves = true, bool discount_owed = true, bool cover_backs_credits = true,
                    std::span<const uint32_t> uncovered = {}, bool no_debt_to_itself = true);
// Every debt whose creditor is the wallet of the seat that owes it keeps only its part
// owed to the group (creditor 0), and goes if it has none. One wallet holding two seats,
// the other receiving while this one is unpaid, or a replace_account naming the wallet
// of a seat that owed the replaced account, makes one.
void forgive_debts_to_itself(group_state& g);
// settle_received false: the rules before version 7 (actors/rules_version.hpp), which
// refunded the current round only.
outcome dissolve(group_state& g, bool settle_received = true);

// A group's state as bytes (snapshots), little-endian, version 5 (version 4, without the
// schedule offset, version 3, also without `held` and debts' group parts, version 2, also
// without the shift, and version 1, also without the number and the seats' payout
// routes, are read too): the config, the state, then each seat with its debts. decode_group refuses, naming the fault, any
// input that is cut short or too long, an unknown version or enum, a config that
// check_config refuses, counts over their limits, or state that breaks the escrow
// invariant (escrow = pot + credits + held): a damaged snapshot must stop recovery, not seed
// a group with made-up money.
[[nodiscard]] std::vector<uint8_t> encode_group(const group_state& g);
bool decode_group(std::span<const uint8_t> bytes, group_state* out, std::string* why);

// Lottery: s_k from s_N (N - k hashes), the check of a revealed seed, and the draw.
[[nodiscard]] seed seed_at(const seed& secret, uint32_t n, uint32_t k);
[[nodiscard]] bool seed_follows(const seed& revealed, const seed& previous);
[[nodiscard]] uint32_t draw(const seed& revealed, uint64_t group_id, uint32_t round,
                            const std::vector<uint32_t>& candidates);

}  // namespace mesob::actors::equb
