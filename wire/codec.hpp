// Frame bodies: building them and checking them (wire/mesob.fbs, wire/README.md).
//
// Operations and outcomes are moved as whole arrays: the schema's structs have exactly
// the bytes of the engine's records (asserted in codec.cpp), so a batch of 8,192
// transfers is one copy each way. Parsing runs the flatbuffers Verifier first and never
// reads a field of an unverified body; item arrays are handed out as raw bytes to be
// memcpy'd, since a frame body need not sit at an aligned address.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wire/event_pack.hpp"
#include "wire/protocol.hpp"
#include "wire/types.hpp"

namespace mesob::wire {

constexpr uint32_t batch_operations_max = 8192;

// A frame: header and body, ready to write to a socket.
[[nodiscard]] std::vector<uint8_t> encode_frame(frame_kind kind, uint64_t request_id,
                                                std::span<const uint8_t> body);

// ---- session bodies ------------------------------------------------------------------
struct hello_msg {
  uint16_t protocol = 0;
  std::vector<uint8_t> nonce;
  std::string server;
};
struct auth_msg {
  std::string gateway_id;
  std::vector<uint8_t> mac;
};
struct welcome_msg {
  std::string gateway_id;
  uint32_t roles = 0;
  uint64_t session_id = 0;
  uint32_t frame_bytes_max = 0;
  uint32_t in_flight_max = 0;
  uint32_t gateway_number = 0;  // a registered gateway's number; 0: a config file gateway
  uint32_t shards = 0;          // the engine's shard count; 0: not said (an older server)
};
struct error_msg {
  protocol_error code{};
  std::string message;
};
[[nodiscard]] std::vector<uint8_t> hello_body(const hello_msg& m);
[[nodiscard]] std::vector<uint8_t> auth_body(const auth_msg& m);
[[nodiscard]] std::vector<uint8_t> welcome_body(const welcome_msg& m);
[[nodiscard]] std::vector<uint8_t> error_body(const error_msg& m);
struct push_msg {
  std::string topic;
  std::vector<uint8_t> body;
};
[[nodiscard]] std::vector<uint8_t> push_body(const push_msg& m);
// Each parse_* verifies the body; false (with *why) when it is not a valid body of
// that kind or breaks a stated limit (nonce and MAC lengths, gateway id length).
bool parse_hello(std::span<const uint8_t> body, hello_msg* out, std::string* why);
bool parse_auth(std::span<const uint8_t> body, auth_msg* out, std::string* why);
bool parse_welcome(std::span<const uint8_t> body, welcome_msg* out, std::string* why);
bool parse_error(std::span<const uint8_t> body, error_msg* out, std::string* why);
bool parse_push(std::span<const uint8_t> body, push_msg* out, std::string* why);

// ---- requests ------------------------------------------------------------------------
enum class operation : uint8_t {
  create_accounts = 1,
  create_transfers = 2,
  set_account_status = 3,
  lookup_accounts = 4,
  lookup_transfers = 5,
  lookup_account_transfers = 6,
  lookup_balances = 7,
  equb_ops = 8,       // wire::equb_op items
  lookup_groups = 9,  // group ids (u64), at most lookup_groups_max
  deposits = 10,      // wire::deposit items, from a registered gateway
  payouts = 11,       // wire::payout items
  payout_answers = 12,  // wire::payout_answer items, from a registered gateway
  instrument_ops = 13,  // wire::instrument_op items (define: market_data; halt, resume: admin)
  prices = 14,          // wire::price items (market_data)
  lookup_instruments = 15,  // instrument ids (u64)
  customer_ops = 16,        // wire::customer_op items (kyc)
  lookup_customers = 17,    // wallet ids (u64)
  orders = 18,              // wire::order items (payments)
  order_answers = 19,       // wire::order_answer items, from a registered broker
  cancel_orders = 20,       // wire::order_cancel items (payments)
  lookup_orders = 21,       // order ids (u64)
  rebalance = 22,           // one wire::rebalance_request (payments)
  lookup_positions = 23,    // wallet ids (u64), at most lookup_positions_max
};
constexpr uint8_t operation_max = 23;
constexpr uint32_t lookup_groups_max = 64;
constexpr uint32_t lookup_positions_max = 16;  // x 1,024 positions x 48 bytes: within a 1 MiB frame
constexpr uint32_t equb_ops_max = 4096;  // group operations in one request
// lookup_account_transfers: records in one page (its limit, 1..this), and the pages'
// limits of one request summed (at most this: about 2 MB of reply, and a bounded walk on
// the engine's sequencer; more pages go in more requests).
constexpr uint32_t history_page_records_max = 1024;
constexpr uint32_t history_request_records_max = 16'384;
// The records `n` history pages (history_query_item, at `items`) ask for: pages over
// history_page_records_max are refused page by page (limit_invalid) and count none. The
// request's limit and the server's bound on its reply both count so.
[[nodiscard]] uint64_t history_records_asked(const uint8_t* items, uint32_t n);
[[nodiscard]] std::string_view operation_name(operation op);
[[nodiscard]] bool operation_writes(operation op);

// Query items as they travel (HistoryQuery and BalanceQuery in the schema).
struct history_query_item {
  uint64_t account_id = 0;
  uint64_t cursor = 0;
  uint32_t limit = 0;
  uint32_t reserved = 0;
};
static_assert(sizeof(history_query_item) == 24);
struct balance_query_item {
  uint64_t account_id = 0;
  uint64_t timestamp = 0;
};
static_assert(sizeof(balance_query_item) == 16);

[[nodiscard]] std::vector<uint8_t> create_accounts_body(std::span<const account> items);
[[nodiscard]] std::vector<uint8_t> create_transfers_body(std::span<const transfer> items);
[[nodiscard]] std::vector<uint8_t> set_account_status_body(std::span<const account_status_change> items);
[[nodiscard]] std::vector<uint8_t> lookup_accounts_body(std::span<const uint64_t> ids);
[[nodiscard]] std::vector<uint8_t> lookup_transfers_body(std::span<const id128> ids);
[[nodiscard]] std::vector<uint8_t> lookup_account_transfers_body(std::span<const history_query_item> items);
[[nodiscard]] std::vector<uint8_t> lookup_balances_body(std::span<const balance_query_item> items);
[[nodiscard]] std::vector<uint8_t> equb_ops_body(std::span<const equb_op> items);
[[nodiscard]] std::vector<uint8_t> lookup_groups_body(std::span<const uint64_t> ids);
[[nodiscard]] std::vector<uint8_t> deposits_body(std::span<const deposit> items);
[[nodiscard]] std::vector<uint8_t> payouts_body(std::span<const payout> items);
[[nodiscard]] std::vector<uint8_t> payout_answers_body(std::span<const payout_answer> items);
[[nodiscard]] std::vector<uint8_t> instrument_ops_body(std::span<const instrument_op> items);
[[nodiscard]] std::vector<uint8_t> prices_body(std::span<const price> items);
[[nodiscard]] std::vector<uint8_t> lookup_instruments_body(std::span<const uint64_t> ids);
[[nodiscard]] std::vector<uint8_t> customer_ops_body(std::span<const customer_op> items);
[[nodiscard]] std::vector<uint8_t> lookup_customers_body(std::span<const uint64_t> wallets);
[[nodiscard]] std::vector<uint8_t> orders_body(std::span<const order> items);
[[nodiscard]] std::vector<uint8_t> order_answers_body(std::span<const order_answer> items);
[[nodiscard]] std::vector<uint8_t> cancel_orders_body(std::span<const order_cancel> items);
[[nodiscard]] std::vector<uint8_t> lookup_orders_body(std::span<const uint64_t> ids);
[[nodiscard]] std::vector<uint8_t> lookup_positions_body(std::span<const uint64_t> wallets);
[[nodiscard]] std::vector<uint8_t> rebalance_body(const rebalance_request& r);
// The body of a pushed frame with topic "orders" (OrderInstructions), and its parser.
constexpr const char* orders_topic = "orders";
[[nodiscard]] std::vector<uint8_t> order_instructions_body(std::span<const order_instruction> items);
bool parse_order_instructions(std::span<const uint8_t> body, std::vector<order_instruction>* out, std::string* why);
// The body of a pushed frame with topic "payouts" (PayoutInstructions), and its parser.
// Cancels (payout_instruction_kind::cancel) go under their own topic, with the same body.
constexpr const char* payouts_topic = "payouts";
constexpr const char* payout_cancels_topic = "payout_cancels";
[[nodiscard]] std::vector<uint8_t> payout_instructions_body(std::span<const payout_instruction> items);
bool parse_payout_instructions(std::span<const uint8_t> body, std::vector<payout_instruction>* out, std::string* why);

struct parsed_request {
  operation op{};
  uint32_t count = 0;
  std::span<const uint8_t> items;  // count items in the engine's layout, inside the body (copy them out)
  // Copies the items into `out` (resized); T must be the operation's item type.
  template <class T>
  void copy_to(std::vector<T>& out) const {
    out.resize(count);
    if (count) std::memcpy(out.data(), items.data(), size_t(count) * sizeof(T));
  }
};
[[nodiscard]] size_t operation_item_bytes(operation op);
// Verifies a Request body: a flatbuffer with identifier "MSB1", a known operation,
// 1 .. 8,192 items. On failure *err names the fault.
bool parse_request(std::span<const uint8_t> body, parsed_request* out, error_msg* err);
// Whether the request, applied once already, changes nothing if it is applied again,
// whatever happened in between: creates keyed by client ids (accounts, transfers,
// deposits, payouts, orders, groups, instruments), answers to the engine, prices and
// KYC records (sequenced), look-ups, and the equb operations a group's phase makes
// final (start, bid, dissolve, write_off: an ended group takes no new debts). Not so: account status changes (an unfreeze in between
// would be undone), the equb operations leave, retry, payout_to and replace_account,
// instrument halt, resume and resequence, KYC resequence, and rebalance (planned again
// from the positions then). A repeat that changes nothing may still be answered with
// another code (already_bid, payout_already_resolved, ...).
[[nodiscard]] bool repeat_changes_nothing(const parsed_request& r);

// ---- responses -----------------------------------------------------------------------
// A looked-up transfer (TransferRecord in the schema).
struct transfer_record_item {
  transfer t;
  uint32_t result = 0;
  uint32_t reserved = 0;
  uint64_t debit_after_debits_posted = 0;
  uint64_t debit_after_credits_posted = 0;
  uint64_t credit_after_debits_posted = 0;
  uint64_t credit_after_credits_posted = 0;
};
static_assert(sizeof(transfer_record_item) == 128);
struct balance_item {
  uint64_t debits_posted = 0;
  uint64_t credits_posted = 0;
  uint32_t result = 0;
  uint32_t reserved = 0;
};
static_assert(sizeof(balance_item) == 24);
struct history_page_item {
  result code = result::ok;
  std::vector<transfer_record_item> records;
  uint64_t next_cursor = 0;
};

// An equb group as it travels (Group in the schema; actors/equb_group.hpp has the state).
struct group_seat_item {
  uint64_t wallet = 0;
  uint64_t paid_amount = 0;
  uint64_t credit = 0;
  uint64_t bid = 0;
  uint64_t debt_total = 0;
  uint32_t received_round = 0;
  uint32_t debts = 0;
  uint8_t paid = 0;
  uint8_t payout_rail = 0;
  uint8_t reserved[6] = {};
};
static_assert(sizeof(group_seat_item) == 56);
struct group_round_item {
  uint32_t round = 0;
  uint32_t seat = 0;
  uint8_t revealed[32] = {};
};
static_assert(sizeof(group_round_item) == 40);
struct group_payment_item {
  uint64_t debit_account_id = 0;
  uint64_t credit_account_id = 0;
  uint64_t amount = 0;
  uint32_t step = 0;
  uint32_t refusal = 0;
  uint8_t purpose = 0;
  uint8_t refused = 0;
  uint16_t reserved = 0;
  uint32_t waits_for_cover = 0;  // a forward or dividend held back until round R's cover is carried (0: none)
};
static_assert(sizeof(group_payment_item) == 40);
struct group_item {
  result code = result::ok;
  equb_op config{};
  uint8_t phase = 0;
  uint32_t round = 0;
  uint32_t bids = 0;
  uint32_t next_step = 0;
  uint64_t created_at = 0;
  uint64_t started_at = 0;
  uint64_t shift_ns = 0;  // added to every deadline (the engine's downtime, held rounds' overrun)
  uint64_t pot = 0;
  uint64_t escrow = 0;
  uint64_t escrow_expected = 0;
  std::vector<uint8_t> commitment;
  std::vector<uint8_t> last_revealed;
  std::vector<group_seat_item> seats;
  std::vector<group_round_item> history;
  std::vector<group_payment_item> owed;
  std::vector<uint64_t> destinations;  // per seat
  uint64_t held = 0;                   // of escrow: repaid group parts, the seats' at the next close
  std::vector<uint64_t> debts_to_group;  // per seat: of its debt_total, the part owed to the group
  uint64_t round_deadline = 0;           // active: the round's deadline (0: not active)
  uint64_t round_close = 0;              // active: its deadline + grace (0: not active)
};

enum class reply_kind : uint8_t {
  results = 1,
  found_accounts = 2,
  found_transfers = 3,
  account_transfers = 4,
  balances = 5,
  groups = 6,
  instruments = 7,
  customers = 8,
  orders = 9,
  placed_orders = 10,
  positions = 11,
};
struct reply_msg {
  reply_kind kind{};
  std::vector<result> results;                  // results, found_accounts, found_transfers
  std::vector<account> accounts;                // found_accounts
  std::vector<transfer_record_item> records;    // found_transfers
  std::vector<history_page_item> pages;         // account_transfers
  std::vector<balance_item> balances;           // balances
  std::vector<group_item> groups;               // groups
  std::vector<instrument_state> instruments;    // instruments (with results)
  std::vector<uint64_t> instrument_sequences;   // instruments: each one's price sequence last taken
  std::vector<customer_state> customers;        // customers (with results)
  std::vector<order_state_view> orders;         // orders (with results)
  std::vector<order> placed;                    // placed_orders (with results)
  std::vector<position_view> positions;         // positions (with results: one per wallet)
};
[[nodiscard]] std::vector<uint8_t> results_body(std::span<const result> results);
[[nodiscard]] std::vector<uint8_t> found_accounts_body(std::span<const result> results, std::span<const account> accounts);
[[nodiscard]] std::vector<uint8_t> found_transfers_body(std::span<const result> results,
                                                        std::span<const transfer_record_item> records);
[[nodiscard]] std::vector<uint8_t> account_transfers_body(std::span<const history_page_item> pages);
[[nodiscard]] std::vector<uint8_t> balances_body(std::span<const balance_item> balances);
[[nodiscard]] std::vector<uint8_t> groups_body(std::span<const group_item> groups);
[[nodiscard]] std::vector<uint8_t> instruments_body(std::span<const result> results,
                                                    std::span<const instrument_state> instruments,
                                                    std::span<const uint64_t> sequences);
[[nodiscard]] std::vector<uint8_t> customers_body(std::span<const result> results,
                                                  std::span<const customer_state> customers);
[[nodiscard]] std::vector<uint8_t> orders_reply_body(std::span<const result> results,
                                                     std::span<const order_state_view> orders);
[[nodiscard]] std::vector<uint8_t> placed_orders_body(std::span<const result> results, std::span<const order> orders);
[[nodiscard]] std::vector<uint8_t> positions_body(std::span<const result> results, std::span<const position_view> positions);
bool parse_response(std::span<const uint8_t> body, reply_msg* out, std::string* why);

// ---- events (frame kinds 12 to 15) ---------------------------------------------------
struct subscribe_msg {
  std::string name;
  uint64_t from = 0;
  bool from_end = false;
  uint64_t types = 0;  // bit (1 << type) per event type wanted (0: all); Subscribe's types and types_high
  std::vector<uint64_t> accounts;
  std::vector<uint32_t> gateways;
  uint32_t window = 0;
  uint32_t batch_max = 0;
  // Events frames packed (wire/README.md, "Packed events"): a fifth to a third of the
  // bytes of a stream of transfers. Unpacked for the caller either way.
  bool packed = true;
};
struct subscribed_msg {
  result code = result::ok;
  std::string message;
  uint64_t start = 0, oldest = 0, end = 0;
};
struct events_msg {
  std::vector<event> events;
  uint64_t next = 0;
  uint64_t end = 0;
  uint64_t damaged = 0;  // parse_events refused the frame for this event's CRC (0: it did not)
};
[[nodiscard]] std::vector<uint8_t> subscribe_body(const subscribe_msg& m);
[[nodiscard]] std::vector<uint8_t> subscribed_body(const subscribed_msg& m);
[[nodiscard]] std::vector<uint8_t> ack_body(uint64_t offset);
// The most bytes an Events frame takes besides its events' (the frame header and the
// flatbuffers wrapper; protocol_test checks it), and so the most one event can take in a
// frame: a frame of its own (a packed block of one event has no numbers). What a
// subscription's window may hold is counted with this.
constexpr size_t events_frame_overhead_max = 128;
constexpr size_t events_frame_event_bytes_max(bool packed) {
  return events_frame_overhead_max + (packed ? packed_block_overhead_max : sizeof(event));
}
// A whole Events frame (header and body, request id 0), the events packed or as they are.
[[nodiscard]] std::vector<uint8_t> events_frame(std::span<const event> events, uint64_t next, uint64_t end,
                                                bool packed);
// The same from events packed already (pack_events' bytes for `count` events; the event
// log keeps the newest so): copied in, not checked.
[[nodiscard]] std::vector<uint8_t> events_frame_packed(std::span<const uint8_t> packed, uint32_t count, uint64_t next,
                                                       uint64_t end);
bool parse_subscribe(std::span<const uint8_t> body, subscribe_msg* out, std::string* why);
bool parse_subscribed(std::span<const uint8_t> body, subscribed_msg* out, std::string* why);
// Every event's CRC is checked (event_crc): a frame holding one that fails it is refused,
// naming its offset (and out->damaged set to it).
bool parse_events(std::span<const uint8_t> body, events_msg* out, std::string* why);
// The same, handing the events to `each` a block at a time (wire/event_pack.hpp): out's
// next and end are set, its events left as they were. A block is handed out once its
// CRCs are checked: a damaged event refuses the frame after the blocks before it.
bool parse_events(std::span<const uint8_t> body, events_msg* out, const event_visitor& each, std::string* why);
bool parse_ack(std::span<const uint8_t> body, uint64_t* offset, std::string* why);

// ---- admin (frame kinds 10 and 11, admin port) ---------------------------------------
constexpr size_t admin_command_bytes_max = 64;
constexpr size_t admin_args_max = 16;
constexpr size_t admin_arg_bytes_max = 256;
constexpr size_t admin_rows_max = 4096;  // per response, all sections together

// An admin command's outcome (AdminResponse.code).
enum class admin_code : uint16_t {
  ok = 0,
  command_unknown = 1,    // no such command
  arguments_invalid = 2,  // wrong number of arguments, or one of the wrong type
  not_found = 3,          // the account, transfer, ... does not exist
  failed = 4,             // the command ran and failed (message says why)
  check_failed = 5,       // a verification ran and found a fault (sections say where)
  refused = 6,            // not allowed now (for example: the engine is stopping)
};
constexpr uint16_t admin_code_max = 6;
[[nodiscard]] std::string_view admin_code_name(admin_code c);

struct admin_request_msg {
  std::string command;
  std::vector<std::string> args;
};
struct admin_column {
  std::string name;
  bool numeric = false;
};
struct admin_section {
  std::string title;
  std::vector<admin_column> columns;
  std::vector<std::vector<std::string>> rows;  // each has one cell per column
};
struct admin_response_msg {
  admin_code code = admin_code::ok;
  std::string message;
  std::vector<admin_section> sections;
};
[[nodiscard]] std::vector<uint8_t> admin_request_body(const admin_request_msg& m);
[[nodiscard]] std::vector<uint8_t> admin_response_body(const admin_response_msg& m);
// Printable UTF-8: no control character (C0, DEL, C1), no invisible format character
// (bidi marks, embeddings, overrides and isolates; zero-width characters; line and
// paragraph separators; U+FEFF; tags) and no invalid sequence. Admin words must be,
// since they reach the audit trail and operators' terminals.
[[nodiscard]] bool printable_utf8(std::string_view s);
// Verifies and checks the limits above (command 1..64 bytes, at most 16 arguments of at
// most 256 bytes; printable_utf8 both).
// *err: body_invalid when the flatbuffer does not verify, field_invalid for a limit.
bool parse_admin_request(std::span<const uint8_t> body, admin_request_msg* out, error_msg* err);
// Verifies, checks the code is known and every row has one cell per column.
bool parse_admin_response(std::span<const uint8_t> body, admin_response_msg* out, std::string* why);

}  // namespace mesob::wire
