// mesob::wire — the fixed-width encodings of Mesob's operations and results.
//
// These structs are the engine's vocabulary: the embedded API takes them, the
// write-ahead log stores them byte for byte, and the network protocol (flatbuffers,
// see wire/README.md) maps onto them field for field. Every struct is trivially
// copyable, has a fixed size asserted below, and uses little-endian integers (the
// only byte order Mesob runs on; asserted in wire/types.cpp). Money is an unsigned
// 64-bit count of minor units; there is no floating point anywhere.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace mesob::wire {

// A 128-bit client-chosen id. Zero is never valid.
struct id128 {
  uint64_t lo = 0;
  uint64_t hi = 0;
  [[nodiscard]] bool zero() const { return lo == 0 && hi == 0; }
  friend bool operator==(const id128&, const id128&) = default;
};
static_assert(sizeof(id128) == 16);

// ISO 4217 alphabetic code packed into 32 bits: 'E' | 'T' << 8 | 'B' << 16.
using currency_code = uint32_t;
[[nodiscard]] constexpr currency_code currency(const char (&code)[4]) {
  return uint32_t(uint8_t(code[0])) | uint32_t(uint8_t(code[1])) << 8 |
         uint32_t(uint8_t(code[2])) << 16;
}
[[nodiscard]] bool currency_valid(currency_code c);
// "ETB" -> its code; false unless exactly three letters A-Z.
[[nodiscard]] bool parse_currency(std::string_view text, currency_code* out);
[[nodiscard]] std::string currency_name(currency_code c);
// Decimal text of an unsigned 128-bit value (sums of balances).
[[nodiscard]] std::string decimal_text(unsigned __int128 v);

enum class account_kind : uint16_t {
  customer_wallet = 1,
  group_escrow = 2,
  gateway_settlement = 3,
  fee = 4,
  system = 5,
};
constexpr uint16_t account_kind_max = 5;

enum class account_status : uint16_t { open = 1, frozen = 2, closed = 3 };
constexpr uint16_t account_status_max = 3;

namespace account_flags {
constexpr uint16_t debits_must_not_exceed_credits = 1u << 0;
constexpr uint16_t credits_must_not_exceed_debits = 1u << 1;
constexpr uint16_t all = 0x3;
}  // namespace account_flags

// An account as created and as looked up. On create, the balance fields and timestamp
// must be zero and the status `open`; the engine fills the timestamp.
struct account {
  uint64_t id = 0;
  uint64_t owner_id = 0;
  uint64_t user_data = 0;
  uint64_t debits_pending = 0;
  uint64_t debits_posted = 0;
  uint64_t credits_pending = 0;
  uint64_t credits_posted = 0;
  uint64_t timestamp = 0;  // engine time of creation, ns
  currency_code currency = 0;
  account_kind kind = account_kind::customer_wallet;
  uint16_t flags = 0;
  account_status status = account_status::open;
  // The KYC tier whose limits the ledger enforces on this wallet (actors/customers.hpp):
  // set by customer operations, 0 for none. Zero on create, like the field after it.
  uint16_t tier = 0;
  // Status changes made to the account (rules version 17 on): a status change numbered
  // status_seq + 1 is the next one (account_status_change::seq).
  uint32_t status_seq = 0;
};
static_assert(sizeof(account) == 80);
static_assert(std::is_trivially_copyable_v<account>);

namespace transfer_flags {
constexpr uint16_t linked = 1u << 0;        // this and the next succeed or fail together
constexpr uint16_t pending = 1u << 1;       // first phase: reserve, post or void later
constexpr uint16_t post_pending = 1u << 2;  // second phase: post (all or part of) pending_id
constexpr uint16_t void_pending = 1u << 3;  // second phase: release pending_id
// An equb payment: a member's wallet (debit) paying its group's escrow account (credit,
// whose id is the group's). user_data = round << 32 | seat; round 0 is a join (the
// deposit, seat 0). The group decides it with the ledger (actors/equb_group.hpp).
constexpr uint16_t equb = 1u << 4;
constexpr uint16_t all = 0x1f;
}  // namespace transfer_flags

struct transfer {
  id128 id;
  id128 pending_id;            // post/void: the pending transfer; otherwise zero
  uint64_t debit_account_id = 0;
  uint64_t credit_account_id = 0;
  uint64_t amount = 0;         // post: 0 posts the full pending amount
  uint64_t user_data = 0;
  uint64_t timestamp = 0;      // set by the engine; must be zero on create
  currency_code currency = 0;
  uint32_t timeout_s = 0;      // pending only: expiry after this many seconds (0: never)
  uint16_t code = 0;           // the client's reason code, opaque to the engine
  uint16_t flags = 0;
  uint32_t reserved = 0;
};
static_assert(sizeof(transfer) == 88);
static_assert(std::is_trivially_copyable_v<transfer>);

// Status changes: freeze, unfreeze (to open) and close. `seq` is the change's number on
// its account (the client's id for it: actors/README.md "set_account_status"): n makes
// it the account's n-th status change, applied only after change n - 1; a repeat of
// change n while it is the latest returns its outcome. 0: unnumbered, applied whatever
// came before (a retry cannot be told from a new change).
struct account_status_change {
  uint64_t account_id = 0;
  account_status status = account_status::open;
  uint16_t reserved = 0;
  uint32_t seq = 0;
};
static_assert(sizeof(account_status_change) == 16);

// Operations on equb groups that carry no member payment (payments are transfers with
// transfer_flags::equb). group_id is the group's escrow account id, created with it.
enum class equb_op_kind : uint16_t {
  create = 1,    // config fields below; idempotent (same config: ok)
  start = 2,     // forming -> active, round 1
  leave = 3,     // seat, wallet: forming only; the deposit is returned
  bid = 4,       // seat, wallet, round, amount: bidding groups only
  dissolve = 5,  // refunds the current round's payments and forming deposits; past rounds become debts
  retry = 6,     // re-sends the group's payments the ledger refused (e.g. a frozen wallet)
  // seat, wallet, rail, amount = the destination: where the seat's payout goes. Rail 0
  // (destination 0): to the wallet (the default); rail 1..3: on to `destination` through
  // a payment gateway of that rail serving the group's currency, as a payout the engine
  // makes (actors/equb_group.hpp, group_payout_id). Only before the seat has received.
  payout_to = 7,
  // wallet = the account replaced, amount = the account that replaces it, everywhere the
  // group names it: its fee, guarantor or organizer account, a seat's wallet, a debt's
  // creditor, and the payments the ledger refused that wait for a retry (a closed
  // account never takes them; retry after this). Never the escrow. Any phase.
  replace_account = 8,
  // seat, wallet, amount = all the seat's debts: an ended group's seat's debts written off
  // (its creditors are never paid them); no money moves. An operator's, for a member who
  // will never pay, so that the group can retire (rules version 51).
  write_off = 9,
};
constexpr uint16_t equb_op_kind_max = 9;

struct equb_op {
  uint64_t group_id = 0;
  uint64_t wallet = 0;  // leave, bid, payout_to, write_off; replace_account: the account replaced
  uint64_t amount = 0;  // bid: the bid; payout_to: the destination; replace_account: the new account;
                        // write_off: the seat's debts
  // create only
  uint64_t fee_account_id = 0;
  uint64_t guarantor_account_id = 0;
  uint64_t organizer_account_id = 0;
  uint64_t contribution = 0;
  uint64_t period_ns = 0;
  uint64_t grace_ns = 0;
  uint64_t late_penalty = 0;
  uint64_t commission_cap = 0;
  currency_code currency = 0;
  uint32_t fee_bp = 0;
  uint32_t max_discount_bp = 0;
  uint32_t commission_bp = 0;
  uint8_t rotation = 0;        // equb::rotation
  uint8_t default_policy = 0;  // equb::default_policy
  equb_op_kind kind = equb_op_kind::create;
  uint32_t seat = 0;   // leave, bid, payout_to, write_off
  uint32_t round = 0;  // bid
  uint8_t rail = 0;    // payout_to
  uint8_t reserved = 0;
  uint16_t reserved2 = 0;
  // The engine's to fill, logged with the operation (clients send zeros). start: the
  // lottery's secret seed. create: the group's number (the first 8 bytes, little-endian;
  // the rest zero), unique engine-wide, which the ids of its gateway payouts carry.
  uint8_t seed[32] = {};
};
static_assert(sizeof(equb_op) == 152);
static_assert(std::is_trivially_copyable_v<equb_op>);

// A deposit a gateway reports: money it received for the customer's wallet. Mesob
// credits `wallet` from the gateway's settlement account for `currency`, as a transfer
// whose id is derived from the gateway and `reference` (actors/gateway_registry.hpp):
// a retry with the same reference returns the first outcome.
struct deposit {
  uint64_t reference = 0;  // the gateway's own reference, unique per gateway; not zero
  uint64_t wallet = 0;
  uint64_t amount = 0;
  uint64_t user_data = 0;  // carried into the transfer
  currency_code currency = 0;
  uint16_t code = 0;       // carried into the transfer
  uint16_t reserved = 0;
};
static_assert(sizeof(deposit) == 40);
static_assert(std::is_trivially_copyable_v<deposit>);

// A change to the gateway registry (actors/gateway_registry.hpp), as the log stores it.
// Operators make these through the admin port; they never travel on the client port.
enum class gateway_op_kind : uint16_t {
  register_gateway = 1,  // every field; the id must be new
  update = 2,            // rail, priority, roles, currencies (replaced); not the secret
  rotate_secret = 3,     // secret only
  disable = 4,           // no new sessions, deposits or routes
  enable = 5,
};
constexpr uint16_t gateway_op_kind_max = 5;
constexpr size_t gateway_currencies_max = 8;
constexpr size_t gateway_secret_max = 64;
struct gateway_currency {
  currency_code currency = 0;
  uint32_t reserved = 0;
  uint64_t settlement_account_id = 0;
};
struct gateway_op {
  gateway_op_kind kind = gateway_op_kind::register_gateway;
  uint8_t rail = 0;          // 1 mobile money, 2 card, 3 bank
  uint8_t secret_bytes = 0;  // register, rotate_secret: 16..64
  uint32_t priority = 0;     // lower is tried first
  uint32_t roles = 0;        // wire::roles bits
  uint32_t currencies_n = 0;
  // register, update: how long a payout instruction may wait for its answer (100 ms ..
  // 1 h); retries back off and its circuit breaker cools down in multiples of it
  uint32_t answer_timeout_ms = 0;
  uint32_t reserved = 0;
  char id[64] = {};          // the gateway id, NUL-padded
  uint8_t secret[gateway_secret_max] = {};
  gateway_currency currencies[gateway_currencies_max] = {};
};
static_assert(sizeof(gateway_op) == 280);
static_assert(std::is_trivially_copyable_v<gateway_op>);

// A payout request: hold `amount` on `wallet` and pay it out to `destination` (an
// opaque reference the gateway resolves: a phone number, card or bank account token)
// through a gateway of `rail` serving `currency` (actors/payout_desk.hpp). `id` is the
// client's payout id, unique engine-wide: a retry returns the first outcome.
struct payout {
  uint64_t id = 0;
  uint64_t wallet = 0;
  uint64_t amount = 0;
  uint64_t destination = 0;
  currency_code currency = 0;
  uint8_t rail = 0;  // 1 mobile money, 2 card, 3 bank
  uint8_t reserved = 0;
  uint16_t reserved2 = 0;
};
static_assert(sizeof(payout) == 40);
static_assert(std::is_trivially_copyable_v<payout>);

// What the engine pushes to a gateway: pay `amount` to `destination`. (payout_id,
// attempt) is the instruction's id; payout_id alone is the idempotency key, the same on
// every attempt and every gateway. A cancel (pushed under its own topic, so that a
// gateway that knows only pay instructions never takes one for a payment) asks the
// gateway not to pay the payout if it has not: it answers the attempt named failed if it
// did not pay, settled if it did. It covers the attempts up to the one it names: a pay
// instruction of a later attempt stands (it may come first).
enum class payout_instruction_kind : uint8_t { pay = 0, cancel = 1 };
struct payout_instruction {
  uint64_t payout_id = 0;
  uint64_t amount = 0;
  uint64_t destination = 0;
  currency_code currency = 0;
  uint32_t attempt = 0;  // 1, 2, ...
  uint8_t rail = 0;
  payout_instruction_kind kind = payout_instruction_kind::pay;
  uint8_t reserved[6] = {};
};
static_assert(sizeof(payout_instruction) == 40);
static_assert(std::is_trivially_copyable_v<payout_instruction>);

enum class payout_outcome : uint8_t { settled = 1, failed = 2 };
// What kind of failure a `failed` answer is (rules version 39; before, the byte was
// reserved and had to be 0). unspecified: the gateway's own (no float, its rail down,
// no reason given), a bad outcome for its circuit breaker. declined: the payment itself
// was refused (destination unknown or closed, over the recipient's limits): the gateway
// is well and answered, so its breaker counts a good outcome, and one user's bad
// destinations cannot open it for everyone. A settled answer carries 0.
enum class payout_failure : uint8_t { unspecified = 0, declined = 1 };
// A gateway's answer to an instruction. `gateway` is the engine's to fill (the
// answering session's gateway number); clients send 0.
struct payout_answer {
  uint64_t payout_id = 0;
  uint64_t amount = 0;  // must equal the instruction's
  currency_code currency = 0;
  uint32_t attempt = 0;
  payout_outcome outcome = payout_outcome::settled;
  payout_failure failure = payout_failure::unspecified;
  uint16_t reason = 0;  // failed: the gateway's own reason code, kept with the payout
  uint32_t gateway = 0;
};
static_assert(sizeof(payout_answer) == 32);
static_assert(std::is_trivially_copyable_v<payout_answer>);

// A gateway's sessions opening and closing, as the log records them (the engine makes
// these; routing follows them, so replay routes the same way).
enum class gateway_event_kind : uint8_t { up = 1, down = 2, reset = 3 /* the engine restarted: none is up */ };
struct gateway_event {
  uint32_t gateway = 0;  // number; 0 with reset
  gateway_event_kind kind = gateway_event_kind::up;
  uint8_t reserved[3] = {};
};
static_assert(sizeof(gateway_event) == 8);

// Operators' actions on a payout (admin port): a dead letter sent again from its first
// route, or cancelled (the hold voided); a payout whose settlement the ledger refused,
// posted again.
enum class payout_op_kind : uint8_t { retry = 1, cancel = 2 };
// payout_op.flags
namespace payout_op_flags {
// The operator checked with every gateway that was sent the payout and never answered
// that it did not pay it (without it, such a dead letter is refused: payout_may_be_paid).
constexpr uint8_t force = 1u << 0;
}  // namespace payout_op_flags
struct payout_op {
  uint64_t payout_id = 0;
  currency_code currency = 0;
  payout_op_kind kind = payout_op_kind::retry;
  uint8_t flags = 0;  // payout_op_flags
  uint8_t reserved[2] = {};
};
static_assert(sizeof(payout_op) == 16);

// ---- trading: instruments and prices (actors/market.hpp) --------------------------------
enum class asset_class : uint8_t { cash_like = 1, bond = 2, equity = 3, fund = 4 };
constexpr uint8_t asset_class_max = 4;
[[nodiscard]] std::string_view asset_class_name(uint8_t c);

// Why an instrument does not trade (bits; several may hold at once).
namespace halt_reasons {
constexpr uint8_t manual = 1u << 0;  // an operator halted it
constexpr uint8_t move = 1u << 1;    // its price moved more than move_bp within move_window_ms
constexpr uint8_t stale = 1u << 2;   // its last price is older than stale_ms
constexpr uint8_t all = 0x7;
}  // namespace halt_reasons

// Instrument changes, as the log stores them. `define` makes an instrument (every field
// below; idempotent: the same definition again is ok); `halt` and `resume` are
// operators' (instrument_id only). `resequence` is an operator's too: instrument_id, and
// `tick` holds the price sequence to count from (the feed's next price must be greater;
// 0: any), for a feed that started its sequence again or sent one far ahead. Prices are
// integer ticks: a price of p ticks is p x tick minor units of `currency` per unit of
// quantity; orders trade whole lots.
enum class instrument_op_kind : uint8_t { define = 1, halt = 2, resume = 3, resequence = 4 };
constexpr uint8_t instrument_op_kind_max = 4;
struct instrument_op {
  uint64_t instrument_id = 0;  // client-chosen, not zero
  char symbol[16] = {};        // define: 1..15 of [A-Z0-9.-], NUL-padded
  uint64_t tick = 0;           // define: minor units per tick per unit (1 .. 10^9)
  uint64_t lot = 0;            // define: units per lot (1 .. 10^9)
  currency_code currency = 0;
  uint32_t move_bp = 0;         // define: a price more than this many basis points (1 .. 10,000)
                                // from the window's lowest or highest halts trading
  uint32_t move_window_ms = 0;  // define: the window (1 ms .. 1 day)
  uint32_t stale_ms = 0;        // define: a last price older than this halts trading (1 ms .. 7 days)
  uint32_t halt_ms = 0;         // define: how long a move halt lasts (1 ms .. 1 day)
  instrument_op_kind kind = instrument_op_kind::define;
  asset_class cls{};            // define (halt, resume: 0)
  uint16_t reserved = 0;
};
static_assert(sizeof(instrument_op) == 64);
static_assert(std::is_trivially_copyable_v<instrument_op>);

// A price from a market-data gateway, stamped with the engine clock when sequenced.
// `sequence` counts up per instrument at the feed: the latest price sent again is a
// repeat (ok, nothing changes; other ticks: exists_with_different_fields), an older one
// is refused (sequence_out_of_order), so a feed may resend what it is not sure arrived.
struct price {
  uint64_t instrument_id = 0;
  uint64_t ticks = 0;     // not zero; ticks x tick at most 2^53 minor units
  uint64_t sequence = 0;  // not zero
};
static_assert(sizeof(price) == 24);

// An instrument as looked up: its definition and trading state.
struct instrument_state {
  instrument_op def;           // kind = define
  uint64_t last_ticks = 0;     // 0: no price yet
  uint64_t last_price_at = 0;  // engine time of the last price
  uint64_t move_halt_until = 0;  // a move halt's end (0: none)
  uint64_t defined_at = 0;
  uint64_t prices = 0;         // prices received
  uint32_t halts = 0;          // halts announced so far
  uint8_t reasons = 0;         // halt_reasons as of the look-up's clock (0: trading)
  uint8_t reserved[3] = {};
};
static_assert(sizeof(instrument_state) == 112);
static_assert(std::is_trivially_copyable_v<instrument_state>);

// ---- trading: customers, KYC tiers and risk profiles (actors/customers.hpp) -------------
enum class kyc_status : uint8_t { none = 1, pending = 2, verified = 3, rejected = 4 };
constexpr uint8_t kyc_status_max = 4;
enum class risk_profile : uint8_t { conservative = 1, moderate = 2, aggressive = 3 };
constexpr uint8_t risk_profile_max = 3;
[[nodiscard]] std::string_view kyc_status_name(uint8_t s);
[[nodiscard]] std::string_view risk_profile_name(uint8_t p);

// A KYC gateway's word on a customer, whose id is its cash wallet's (a customer wallet
// account): its KYC status, tier and risk profile, all three each time (a customer
// record is made by the first and replaced by later ones). `sequence` counts up per
// customer at the gateway: the latest again is a repeat (ok, nothing changes; with other
// fields exists_with_different_fields), an older one is refused (sequence_out_of_order),
// so a late retry never undoes a newer record.
// `resequence` is an operator's (admin), for a provider that started its count again or
// sent one far ahead: wallet and sequence only (every other field zero); the customer's
// next record must have a sequence greater than `sequence` (0: any).
enum class customer_op_kind : uint8_t { record = 0, resequence = 1 };
struct customer_op {
  uint64_t wallet = 0;
  uint64_t reference = 0;  // the KYC provider's own reference, kept with the customer
  kyc_status kyc{};
  risk_profile profile{};
  uint8_t tier = 0;        // 1 .. 16, defined (policy_op) for the wallet's currency
  customer_op_kind kind = customer_op_kind::record;
  uint32_t reserved2 = 0;
  uint64_t sequence = 0;   // record: not zero
};
static_assert(sizeof(customer_op) == 32);
static_assert(std::is_trivially_copyable_v<customer_op>);

// A customer as looked up.
struct customer_state {
  uint64_t wallet = 0;          // 0: not found
  uint64_t reference = 0;
  uint64_t updated_at = 0;      // engine time of the last change
  uint64_t outflow_today = 0;   // debited from the wallet on the look-up's (UTC) day
  uint64_t sequence = 0;        // the last KYC record's
  kyc_status kyc{};
  risk_profile profile{};
  uint8_t tier = 0;
  uint8_t reserved = 0;
  uint32_t reserved2 = 0;
};
static_assert(sizeof(customer_state) == 48);
static_assert(std::is_trivially_copyable_v<customer_state>);

// Operators' policy (admin port): a KYC tier's limits in one currency, or a risk
// profile's allowed asset classes (bit c - 1 for asset_class c) and largest position per
// instrument (minor units). Replaces what was there; every limit is at least 1.
// A model (kind 3): one instrument's target weight in a profile's model portfolio, for
// rebalancing: number = the profile, single_max = the instrument id, daily_outflow_max =
// its weight in basis points of the portfolio's value (0: out of the model); a profile's
// weights sum to at most 10,000 (the rest is cash), at most 64 instruments.
enum class policy_op_kind : uint8_t { tier = 1, profile = 2, model = 3 };
struct policy_op {
  policy_op_kind kind{};
  uint8_t number = 0;   // tier 1 .. 16, or the risk_profile
  uint8_t classes = 0;  // profile
  uint8_t reserved = 0;
  currency_code currency = 0;  // tier
  uint64_t single_max = 0;         // tier: the largest transfer out of the wallet
  uint64_t daily_outflow_max = 0;  // tier: out of the wallet per UTC day (holds count when made)
  uint64_t balance_max = 0;        // tier: the largest balance (incoming holds count)
  uint64_t position_max = 0;       // profile
  uint64_t reserved2 = 0;
};
static_assert(sizeof(policy_op) == 48);
static_assert(std::is_trivially_copyable_v<policy_op>);

// An order on a customer's portfolio (actors/portfolio.hpp): buy or sell `quantity`
// units (whole lots) of an instrument, at market with a protective limit or as a limit
// order, paid from (or to) the customer's wallet in the instrument's currency.
enum class order_side : uint8_t { buy = 1, sell = 2 };
enum class order_type : uint8_t { market = 1, limit = 2 };
struct order {
  uint64_t id = 0;            // the client's, unique engine-wide: a retry returns the first outcome
  uint64_t wallet = 0;        // the customer's
  uint64_t instrument_id = 0;
  uint64_t quantity = 0;      // units, a multiple of the instrument's lot
  uint64_t limit_ticks = 0;   // market: the worst price it may fill at; limit: the limit
  currency_code currency = 0;
  uint32_t expires_s = 0;     // open at most this long (0: until filled, rejected or cancelled)
  order_side side{};
  order_type type{};
  uint16_t reserved = 0;
  uint32_t reserved2 = 0;
  uint64_t reserved3 = 0;
};
static_assert(sizeof(order) == 64);
static_assert(std::is_trivially_copyable_v<order>);

// What the engine pushes to a broker gateway's session (actors/portfolio.hpp): an order
// to work (new; pushed again after the session reconnects: brokers key on the order id)
// or to stop (cancel: the order was cancelled or expired here; fills after it are
// refused).
enum class order_instruction_kind : uint8_t { work = 1, cancel = 2 };
struct order_instruction {
  uint64_t order_id = 0;
  uint64_t instrument_id = 0;
  uint64_t quantity = 0;      // units still open
  uint64_t limit_ticks = 0;
  uint64_t expires_at = 0;    // engine time (ns since 1970; 0: none)
  currency_code currency = 0;
  order_instruction_kind kind = order_instruction_kind::work;
  order_side side{};
  order_type type{};
  uint8_t attempt = 0;        // the sending's number among all the order's sendings (1, 2, ...): echo it
};
static_assert(sizeof(order_instruction) == 48);
static_assert(std::is_trivially_copyable_v<order_instruction>);

// A broker's answer: a fill (quantity at a price, under the broker's own fill id, unique
// per order: a fill sent again is a repeat), a reject of what is still open, or that it
// accepted the order and is working it (no other field: the acknowledgement the answer
// timeout waits for; a fill or reject acknowledges too). `wallet` and `gateway` are the
// engine's to fill; clients send 0.
enum class order_answer_kind : uint8_t { fill = 1, reject = 2, accepted = 3 };
struct order_answer {
  uint64_t order_id = 0;
  uint64_t fill_id = 0;       // fill: not zero; reject: zero
  uint64_t quantity = 0;      // fill: units
  uint64_t price_ticks = 0;   // fill: the price
  uint64_t wallet = 0;        // the engine's
  uint32_t gateway = 0;       // the engine's
  uint16_t reason = 0;        // reject: the broker's reason code
  order_answer_kind kind = order_answer_kind::fill;
  uint8_t attempt = 0;        // the instruction's attempt it answers (0: not said)
};
static_assert(sizeof(order_answer) == 48);
static_assert(std::is_trivially_copyable_v<order_answer>);

// A rebalance of one wallet's portfolio toward its profile's model (engine::rebalance):
// the orders it places take ids first_order_id, first_order_id + 1, ... (at most 128).
struct rebalance_request {
  uint64_t wallet = 0;
  uint64_t first_order_id = 0;
  uint32_t drift_bp = 0;     // leave an instrument within this much of its target
  uint32_t slippage_bp = 0;  // the orders' protective limit past the last price
  uint32_t expires_s = 0;    // the orders' (0: none)
  uint32_t reserved = 0;
};
static_assert(sizeof(rebalance_request) == 32);
static_assert(std::is_trivially_copyable_v<rebalance_request>);

// A client's cancel of an open order (its wallet's to name, as placed).
struct order_cancel {
  uint64_t order_id = 0;
  uint64_t wallet = 0;
};
static_assert(sizeof(order_cancel) == 16);
static_assert(std::is_trivially_copyable_v<order_cancel>);

// An order as a look-up reports it.
struct order_state_view {
  order o;
  uint64_t filled = 0;       // units
  uint64_t held = 0;         // a buy: minor units its hold still holds
  uint64_t paid = 0;         // a buy: spent; a sell: received
  uint64_t placed_at = 0;
  uint32_t broker = 0;       // the gateway number it went to (0: none yet)
  uint32_t fills = 0;
  uint8_t state = 0;         // portfolio::order_state (1 open, 2 filled, 3 rejected, 4 cancelled, 5 expired)
  uint8_t settle_refused = 0;  // 1: the ledger refused a settlement (an operator's to see)
  uint16_t reason = 0;       // rejected: the broker's reason
  uint8_t cancelling = 0;    // open, ending: 4 cancelled or 5 expired here (3 rejected while another broker may have it), not yet confirmed
  uint8_t routing = 0;       // open: 0 waiting for a broker, 1 sent (not yet acknowledged), 2 working, 3 a dead letter,
                             // 4 held: its instrument is halted or its price stale
  uint8_t dead_reason = 0;   // a dead letter: 1 attempts exhausted, 2 every broker given up, 3 no broker in time,
                             // 4 the broker working it withdrawn (its role taken, or disabled), 5 the broker it
                             // was sent to away past the route wait (broker_silent)
  uint8_t attempts = 0;      // times it was sent to a broker
};
static_assert(sizeof(order_state_view) == 112);
static_assert(std::is_trivially_copyable_v<order_state_view>);

// A position of a wallet's portfolio as a look-up reports it (actors/portfolio.hpp).
struct position_view {
  uint64_t wallet = 0;
  uint64_t instrument_id = 0;
  uint64_t quantity = 0;  // units held
  uint64_t reserved = 0;  // units open sells may still deliver
  uint64_t cost = 0;      // cost basis of `quantity`, minor units
  uint64_t buying = 0;    // units open buys may still add
};
static_assert(sizeof(position_view) == 48);
static_assert(std::is_trivially_copyable_v<position_view>);

// One result per operation, in batch order.
enum class result : uint32_t {
  ok = 0,
  // batch and chain
  linked_event_failed = 1,
  linked_event_chain_open = 2,
  // static field checks
  id_must_not_be_zero = 10,
  timestamp_must_be_zero = 11,
  reserved_field = 12,
  flags_invalid = 13,
  flags_are_mutually_exclusive = 14,
  currency_invalid = 15,
  kind_invalid = 16,
  status_invalid = 17,
  balances_must_be_zero = 18,
  debit_account_id_must_not_be_zero = 19,
  credit_account_id_must_not_be_zero = 20,
  accounts_must_be_different = 21,
  amount_must_not_be_zero = 22,
  amount_must_be_zero = 27,
  id_duplicated_in_batch = 28,
  pending_id_must_be_zero = 23,
  pending_id_must_not_be_zero = 24,
  pending_id_must_be_different = 25,
  timeout_reserved_for_pending_transfer = 26,
  // existence and idempotency
  exists_with_different_fields = 30,
  account_not_found = 31,
  debit_account_not_found = 32,
  credit_account_not_found = 33,
  transfer_currency_mismatch = 34,
  accounts_full = 35,  // create: the account's shard holds its share of accounts_max (engine/README.md "Capacity")
  pending_full = 36,   // a new pending transfer: a side's shard holds its share of pending_max open ones (the same)
  transfers_full = 37,  // a new transfer: the engine holds transfers_max transfers (the same)
  // account state
  debit_account_frozen = 40,
  credit_account_frozen = 41,
  debit_account_closed = 42,
  credit_account_closed = 43,
  account_closed = 44,
  account_has_balance = 45,
  account_has_positions = 46,  // close: a customer wallet holding securities, with orders open or settlements owed
  status_changed_since = 47,   // a status change numbered before the account's latest (it was made, and others after it)
  status_seq_ahead = 48,       // a status change numbered past the account's next (status_seq + 1)
  status_changes_exhausted = 49,  // the account has had 2^32 - 1 status changes
  // balances
  exceeds_credits = 50,
  exceeds_debits = 51,
  overflows_debits_pending = 52,
  overflows_credits_pending = 53,
  overflows_debits_posted = 54,
  overflows_credits_posted = 55,
  overflows_debits = 56,
  overflows_credits = 57,
  overflows_timeout = 58,
  // two-phase
  pending_transfer_not_found = 60,
  pending_transfer_not_pending = 61,
  pending_transfer_has_different_debit_account = 62,
  pending_transfer_has_different_credit_account = 63,
  pending_transfer_has_different_currency = 64,
  exceeds_pending_transfer_amount = 65,
  pending_transfer_already_posted = 66,
  pending_transfer_already_voided = 67,
  pending_transfer_expired = 68,
  pending_transfer_unreadable = 69,  // resolved before, but its final state's row in the snapshot fails its check
  // look-ups
  transfer_not_found = 70,
  limit_invalid = 71,         // a page limit outside 1..history_page_max
  history_walk_limit = 72,    // the balance as of a time lies past the request's walk (65,536 records)
  history_cursor_invalid = 73,  // a cursor that is not a page's next_cursor of that account's history
  // equb groups (actors/equb_rules.hpp states when each applies)
  contribution_must_not_be_zero = 100,
  amounts_too_large = 101,
  period_must_not_be_zero = 102,
  basis_points_too_high = 103,
  accounts_must_differ = 104,
  guarantor_required = 105,
  rotation_invalid = 106,
  default_policy_invalid = 107,
  organizer_required = 108,
  period_too_long = 109,  // a round or its grace longer than 120 days
  group_not_forming = 110,
  group_not_active = 111,
  group_full = 112,
  not_a_member = 113,
  leaving_after_start = 114,
  too_few_seats = 115,
  // create, replace_account: the account named is missing, closed, of another currency
  // than the group's, or a group's escrow or a gateway's settlement account
  fee_account_unfit = 116,
  guarantor_account_unfit = 117,
  organizer_account_unfit = 118,
  replacement_account_unfit = 119,
  wrong_currency = 120,
  wrong_amount = 121,
  round_already_paid = 122,
  round_not_open = 123,
  already_contributed = 124,
  round_not_due = 125,
  bidding_not_allowed = 126,
  already_received = 127,
  already_bid = 128,
  bid_outside_limits = 129,
  seed_mismatch = 130,
  account_not_in_group = 131,  // replace_account: the group names the account nowhere
  seat_not_last = 132,         // leave: the wallet holds a later seat of the group; leave that first
  groups_full = 133,           // create: the group's shard holds its share of groups_max (engine/README.md "Capacity")
  round_closed = 134,          // a payment or bid for a round that closed without the seat's payment or bid
                               // (what it missed is owed with the seat's next payment)
  nothing_owed = 135,          // a payment into an ended group from a seat that owes nothing
                               // (write_off: a seat that owes nothing)
  group_not_ended = 136,       // write_off: the group is forming or active
  group_not_found = 140,
  group_account_exists = 141,            // create: an account (not this group's) has the id
  id_reserved = 142,                     // a transfer id in the range groups emit from
  equb_transfer_must_stand_alone = 143,  // an equb payment that is linked, pending, post or void
  equb_op_invalid = 144,                 // unknown group operation, or a field it must not set
  group_steps_exhausted = 145,           // the group has emitted steps_max transfers
  nothing_to_retry = 146,                // retry: no failed payment is waiting
  group_account_reserved = 147,          // a transfer or status change on a group's escrow
                                         // account that is not the group's own
  group_payouts_wallet_only = 148,       // payout_to: the group was made by a build before
                                         // gateway payouts (it has no number)
  group_numbers_exhausted = 149,         // create: every group number is taken
  // gateways (actors/gateway_registry.hpp)
  gateway_op_invalid = 150,              // unknown kind, or a field the kind must not set
  gateway_id_invalid = 151,              // empty, over 64 bytes, or not [A-Za-z0-9._-]
  gateway_exists = 152,                  // register: the id is taken
  gateway_not_found = 153,
  rail_invalid = 154,
  roles_invalid = 155,
  secret_invalid = 156,                  // not 16..64 bytes
  currencies_invalid = 157,              // none, over 8, repeated, bad code or account 0
  settlement_account_invalid = 158,      // not a gateway settlement account of that currency
  settlement_account_in_use = 159,       // another gateway's settlement account
  gateways_full = 160,                   // the registry holds gateways_max gateways
  gateway_not_registered = 161,          // a deposit from a gateway the registry lacks
  gateway_disabled = 162,
  gateway_currency_unserved = 163,       // a deposit in a currency the gateway does not serve
  answer_timeout_invalid = 164,          // not 100 ms .. 1 h
  settlement_accounts_exhausted = 165,   // update: the gateway would have named more than
                                         // settlement_accounts_named_max (64) settlement
                                         // accounts over its life, former ones included
  // payouts (actors/payout_desk.hpp)
  payout_rail_unserved = 170,            // no registered gateway of the rail serves the currency
  payout_account_reserved = 171,         // a transfer or status change on a payout account
  payout_not_found = 172,
  payout_instruction_unknown = 173,      // no such attempt of the payout
  payout_wrong_gateway = 174,            // the attempt went to another gateway
  payout_amount_mismatch = 175,          // amount or currency differ from the instruction's
  payout_already_resolved = 176,         // settled, failed or cancelled already (a duplicate)
  payout_answer_late = 177,              // a failure for an attempt already superseded
  payout_answer_invalid = 178,           // outcome or failure kind unknown, a failure kind on a
                                         // settlement, attempt 0, or gateway set by a client
  payout_not_dead = 179,                 // retry, cancel: only dead letters (and refused settlements)
  payout_settled_elsewhere = 180,        // cancel: a gateway settled it; it can only be posted
  payout_retries_exhausted = 181,        // retry: the payout keeps as many attempts as it may; cancel it
  payout_id_reserved = 182,              // a client's payout id with the top bit set (the
                                         // engine's own payouts: equb groups')
  payout_destination_missing = 183,      // equb payout_to: a rail without a destination
  payout_overpaid = 184,                 // a settlement taken as an overpayment: the payout was
                                         // already settled through another gateway, or voided
  payout_may_be_paid = 185,              // retry, cancel: a gateway sent it never answered and may
                                         // have paid it (the operator checks, then forces)
  // event subscriptions (engine/events.hpp)
  events_truncated = 190,                // the offset is older than the oldest event kept (retention)
  events_offset_ahead = 191,             // the offset is past the newest event
  subscriber_busy = 192,                 // this session subscribes already, or another gateway's session holds the name
  subscribers_full = 193,                // subscriptions_max sessions subscribe already, or their windows fill events_windows_mib
  subscriber_name_invalid = 194,         // over 64 bytes or not [A-Za-z0-9._-]
  events_filter_invalid = 195,           // unknown event type bit, over 1,024 ids, window out of range
  events_unavailable = 196,              // the engine runs without an event log (--no-events)
  subscriber_name_owned = 197,           // the name belongs to another gateway
  events_try_again = 198,                // passing: the event writer failed (until a restart), or a
                                         // new name could not be saved
  // instruments and prices (actors/market.hpp)
  instrument_not_found = 200,
  instrument_op_invalid = 201,           // unknown kind, or a field the kind must not set
  symbol_invalid = 202,                  // empty, over 15 bytes, or not [A-Z0-9.-]
  symbol_in_use = 203,                   // define: another instrument has the symbol
  tick_invalid = 204,                    // not 1 .. 10^9
  lot_invalid = 205,                     // not 1 .. 10^9
  asset_class_invalid = 206,
  halt_rule_invalid = 207,               // move_bp, move_window_ms, stale_ms or halt_ms out of range
  instruments_full = 208,                // the market holds instruments_max instruments
  price_invalid = 209,                   // zero ticks, or ticks x tick over 2^53
  instrument_halted = 210,               // trading is halted (manual or move halt)
  price_stale = 211,                     // no price yet, or the last is older than stale_ms
  instrument_not_halted = 212,           // resume: no manual or move halt to lift
  // customers and their limits (actors/customers.hpp)
  kyc_status_invalid = 213,
  risk_profile_invalid = 214,
  tier_undefined = 215,                  // no such tier (1..16) for the wallet's currency
  customer_wallet_required = 216,        // a customer's id must be a customer wallet account's
  policy_op_invalid = 217,               // unknown kind, number or classes, a limit of 0, a stray field
  exceeds_transfer_limit = 218,          // more than the wallet's tier allows in one transfer
  exceeds_daily_outflow = 219,           // more than its tier allows out per UTC day
  exceeds_balance_limit = 220,           // the wallet would hold more than its tier allows
  customer_not_found = 221,
  sequence_out_of_order = 222,           // a price or KYC record older than the last one taken
  // orders (actors/portfolio.hpp)
  order_invalid = 223,                   // side or type unknown
  lot_size_invalid = 224,                // the quantity is not whole lots
  kyc_not_verified = 225,
  risk_profile_undefined = 226,          // the customer's profile has no rules in the policy
  risk_profile_forbids = 227,            // the profile does not allow the asset class
  price_limit_exceeded = 228,            // a market order whose limit the last price is past
  exceeds_position_limit = 229,          // the position could pass the profile's position_max
  insufficient_cash = 230,               // the wallet cannot hold the notional at the limit
  insufficient_position = 231,           // a sell of more than is held and not reserved
  order_not_open = 232,                  // a fill, reject or cancel of an order not open
  fill_invalid = 233,                    // zero, over the open quantity, past the limit, or outside the move band
  too_many_orders = 234,                 // the portfolio has open_orders_max open orders (or
                                         // positions_max positions)
  order_not_found = 235,                 // no order with the id (or not the wallet's)
  fill_id_reused = 236,                  // a fill id the order took with other fields
  order_wrong_broker = 237,              // an answer from a broker the order was not sent to
  trading_account_reserved = 238,        // a client's transfer touching a trading account
  too_many_fills = 239,                  // the order took fills_max fills
  order_answer_invalid = 240,            // kind unknown, fields the kind must not set
  order_not_dead = 241,                  // an operator's retry of an order that is not a dead letter
  order_retries_exhausted = 242,         // a retry that could pass the attempts an order keeps
  customer_op_invalid = 243,             // customers: unknown kind, or a field a resequence must not set
  grace_not_within_period = 244,         // equb: a create whose grace is its period or longer
  order_lots_past_fills = 245,           // orders: more lots than an order may take fills (1,024)
  commission_cap_missing = 246,          // equb: a new bidding group with a commission and a cap
                                         // of 0 (its commission would always be 0)
  open_lots_past_fills = 247,            // orders: the portfolio's open orders with this one past
                                         // the fills they may take together (65,536 lots)
  lookup_reply_full = 248,               // a group look-up: the groups before it on its shard fill
                                         // that shard's share of a reply (the frame ceiling)
  period_too_short = 249,                // equb: a new group whose round is under a minute
  late_penalty_past_contribution = 250,  // equb: a new group whose late penalty is over its contribution
  order_may_be_traded = 251,             // orders: a retry, not forced, of a dead letter a broker was
                                         // sent and never answered (it may have it)
};
[[nodiscard]] std::string_view result_name(result r);

// ---- events (engine/events.hpp) -------------------------------------------------------
// Every committed change, in the order of a global, gap-free offset (1, 2, 3, ...).
enum class event_type : uint16_t {
  account_opened = 1,   // account_a; currency; code: the account's kind; flags: its flags
  account_status = 2,   // account_a; code: the new status
  transfer_posted = 3,  // id; account_a debit, account_b credit; amount; flags; code: the client's code
  pending_created = 4,  // the same, for a pending (two-phase) transfer
  pending_posted = 5,   // id: the post; ref: the pending transfer; amount posted
  pending_voided = 6,   // id: the void; ref: the pending transfer; amount released
  pending_expired = 7,  // id: the pending transfer (its timeout passed); amount released
  equb_op = 8,          // account_a: the group; code: the operation (wire::equb_op_kind); amount, ref.lo: seat
  gateway_session = 9,  // gateway: the gateway's number; code: 1 up, 2 down
  payout_answer = 10,   // ref.lo: payout id; gateway; code: outcome (1 settled, 2 failed); amount;
                        // account_a: the wallet; account_b: the desk's payout account;
                        // flags: the failure (wire::payout_failure, 1 declined)
  payout_op = 11,       // ref.lo: payout id; code: the operator's action (wire::payout_op_kind);
                        // account_a: the wallet; account_b: the desk's payout account
  // What equb groups decide on their own (a round's close, when every seat paid or its
  // deadline and grace passed):
  equb_missed = 12,        // account_a: the group; account_b: the member's wallet; ref.lo: round,
                           // ref.hi: seat; amount: what the seat owes in all after the
                           // close (0 when its own payout of that round settled it)
  equb_round_closed = 13,  // account_a: the group; account_b: the recipient's wallet; code: round;
                           // flags: the recipient's seat; id || ref: the lottery seed the round
                           // revealed (zeros for other rotations)
  equb_completed = 14,     // account_a: the group; code: its rounds
  // A contribution paid after its round's deadline (its transfer event comes first):
  equb_late = 15,          // account_a: the group; account_b: the member's wallet; ref.lo:
                           // round, ref.hi: seat; amount: the late penalty it paid into the pot
  // What payout desks decide on their own:
  payout_dead = 16,        // a payout became a dead letter (held until an operator retries or
                           // cancels it): account_a: the wallet; account_b: the desk's payout
                           // account; ref.lo: payout id, ref.hi: its attempts; amount; code:
                           // why (1 attempts, 2 routes, 3 no route, 4 unsettled elsewhere,
                           // 5 its gateway withdrawn while it may have paid, 6 a gateway it
                           // went to may have paid and has not said);
                           // gateway: the last attempt's
  payout_breaker = 17,     // a desk's circuit breaker for a gateway changed: account_a: the
                           // desk's payout account; gateway; code: now 1 closed, 2 open,
                           // 3 half open; ref.lo: its trips so far, ref.hi: open until
  // Instruments (actors/market.hpp):
  instrument_defined = 18,  // account_a: the instrument; id: its symbol (16 bytes); currency;
                            // code: asset class; amount: tick; ref.lo: lot
  price = 19,               // account_a: the instrument; amount: the price in ticks; currency
  instrument_halted = 20,   // account_a: the instrument; code: the halt reasons now; flags: those
                            // that began; amount: the last price (ticks); ref.lo: a move halt's end
  instrument_resumed = 21,  // account_a: the instrument; code: the halt reasons that ended;
                            // amount: the last price (ticks)
  // Customers (actors/customers.hpp):
  customer_kyc = 22,        // account_a: the wallet; code: KYC status; flags: tier; ref.lo: risk
                            // profile; ref.hi: the provider's reference
  policy_changed = 23,      // code: 1 tier, 2 profile, 3 model; flags: its number (the profile);
                            // currency (tier); amount: single_max (tier), position_max
                            // (profile) or the weight (model); ref.lo: daily_outflow_max
                            // (tier), classes or the instrument (model); ref.hi: balance_max
  // Orders (actors/trading.hpp; an order's hold and settlements are transfer events):
  order_answer = 24,        // a broker's fill or reject taken: account_a: the wallet; ref.lo:
                            // order id, ref.hi: fill id; code: 1 fill, 2 reject; amount:
                            // quantity; account_b: price (ticks); flags: reject reason; gateway
  order_cancelled = 25,     // a client's cancel taken: account_a: the wallet; ref.lo: order id
  order_expired = 26,       // an order's expiry came (the portfolio's decision): account_a:
                            // the wallet; ref.lo: order id; amount: units left unfilled
  // What the trading tables decide on their own about brokers (like payout desks):
  order_timeout = 27,       // a broker did not acknowledge an order in its answer timeout:
                            // account_a: the wallet; ref.lo: order id, ref.hi: the attempt;
                            // gateway: the broker
  order_dead = 28,          // an order became a dead letter (open, its hold kept, no broker
                            // working it, until an operator retries or cancels it):
                            // account_a: the wallet; ref.lo: order id, ref.hi: its attempts;
                            // code: why (1 attempts, 2 every broker given up, 3 no broker in
                            // time); gateway: the last attempt's
  order_breaker = 29,       // a shard's circuit breaker for a broker changed: flags: the
                            // shard's index; gateway; code: now 1 closed, 2 open, 3 half
                            // open; ref.lo: trips, ref.hi: open until
  order_retried = 30,       // an operator's retry of a dead letter taken: account_a: the
                            // wallet; ref.lo: order id
  // A gateway paid a payout that was already settled through another gateway, voided or
  // cancelled (the money went out twice, or after the wallet got it back):
  payout_overpaid = 31,     // account_a: the wallet; account_b: the desk's payout account;
                            // ref.lo: payout id, ref.hi: the attempt; amount; gateway: the one
                            // that paid; code: how the payout had ended (1 settled, 2 failed,
                            // 3 cancelled)
  // An operator's resequence of an instrument's price feed:
  instrument_resequenced = 32,  // account_a: the instrument; ref.lo: the sequence counted from
                                // now (the next price must be greater), ref.hi: the last
                                // sequence taken before
  // An operator's resequence of a customer's KYC records:
  customer_resequenced = 33,    // account_a: the wallet; ref.lo: the sequence counted from now
                                // (the next record must be greater)
  // An equb group's schedule moved by the engine's downtime (actors/equb_rules.hpp,
  // reschedule), at the engine's first batch after it, or by a hold_round round that
  // closed past its close time (at that close, after its equb_round_closed):
  equb_rescheduled = 34,        // account_a: the group; code: its round; amount: the time
                                // added (ns); ref.lo: the round's deadline now, ref.hi: its
                                // close now (deadline + grace), engine time (ns)
  // A payout desk's timer acted on a payout. Where a timer fires depends on the shard
  // count (engine/README.md), so its decisions are events; a look for a route that found
  // none changes nothing but the next look, and makes no event.
  payout_timer = 35,            // account_a: the wallet; account_b: the desk's payout account;
                                // ref.lo: payout id, ref.hi: its attempts now; amount; gateway:
                                // the latest attempt's, or the one asked to cancel; code: what
                                // came due (1 an answer timeout, 2 a backoff's end, 3 a
                                // gateway's time to answer a cancel, 4 a look for a route);
                                // flags: what follows (1 sent to `gateway`, a new attempt; 2 a
                                // backoff, to try `gateway` again; 3 `gateway` asked to
                                // cancel, waiting for its word; 4 waiting for a route; 5 a
                                // dead letter, its payout_dead just before)
  // An ended equb group with nothing owed left the engine's memory (rules_groups_retire):
  // look-ups find it no more, its escrow account is closed, its id and number stay taken.
  equb_retired = 36,            // account_a: the group; ref.lo: its number, ref.hi: rounds paid out
  // A seat's debt written off (equb_op write_off), one event per debt, oldest first:
  // account_a: the group; account_b: the debt's creditor (0: owed to the group alone);
  // amount: the debt; code: the seat; ref.lo: the round it was missed in, ref.hi: its part
  // owed to the group (the seats' dividend, lost with it).
  equb_debt_written_off = 37,
};
constexpr uint16_t event_type_max = 37;
[[nodiscard]] std::string_view event_type_name(event_type t);

// One event, 96 bytes: as kept on disk and as sent (Event in the schema). Transfers
// carry their own fields; other kinds say above what each field holds (unused: zero).
// `gateway` is the number of the gateway involved (deposits, payouts, sessions; 0: none).
// `crc` is the CRC-32C of the 92 bytes before it, so a reader can check each event.
struct event {
  uint64_t offset = 0;
  uint64_t lsn = 0;        // the log record whose commit made it
  uint64_t timestamp = 0;  // engine clock (ns)
  event_type type{};
  uint16_t flags = 0;
  currency_code currency = 0;
  id128 id;
  id128 ref;
  uint64_t account_a = 0;
  uint64_t account_b = 0;
  uint64_t amount = 0;
  uint16_t code = 0;
  uint16_t gateway = 0;
  uint32_t crc = 0;
};
static_assert(sizeof(event) == 96);
static_assert(std::is_trivially_copyable_v<event>);

// An event a group or desk decides (lsn and offset: the caller's), with the fields every
// kind sets; the rest as its type says.
[[nodiscard]] inline event decided_event(event_type type, uint64_t timestamp, currency_code currency,
                                         uint64_t account_a, uint64_t account_b = 0) {
  event e;
  e.timestamp = timestamp;
  e.type = type;
  e.currency = currency;
  e.account_a = account_a;
  e.account_b = account_b;
  return e;
}

}  // namespace mesob::wire
