#include "wire/assert.hpp"
#include "wire/codec.hpp"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>

#include "mesob_generated.h"
#include "wire/event_pack.hpp"

namespace mesob::wire {

namespace {

constexpr const char* ident = "MSB1";

// The schema's structs are the engine's records byte for byte.
static_assert(sizeof(fb::Account) == sizeof(account));
static_assert(sizeof(fb::Transfer) == sizeof(transfer));
static_assert(sizeof(fb::StatusChange) == sizeof(account_status_change));
static_assert(sizeof(fb::Id128) == sizeof(id128));
static_assert(sizeof(fb::HistoryQuery) == sizeof(history_query_item));
static_assert(sizeof(fb::BalanceQuery) == sizeof(balance_query_item));
static_assert(sizeof(fb::TransferRecord) == sizeof(transfer_record_item));
static_assert(sizeof(fb::Balance) == sizeof(balance_item));
static_assert(sizeof(fb::EqubOp) == sizeof(equb_op));
static_assert(sizeof(fb::Deposit) == sizeof(deposit));
static_assert(sizeof(fb::Payout) == sizeof(payout));
static_assert(sizeof(fb::PayoutAnswer) == sizeof(payout_answer));
static_assert(sizeof(fb::PayoutInstruction) == sizeof(payout_instruction));
static_assert(sizeof(fb::GroupSeat) == sizeof(group_seat_item));
static_assert(sizeof(fb::GroupRound) == sizeof(group_round_item));
static_assert(sizeof(fb::GroupPayment) == sizeof(group_payment_item));
static_assert(sizeof(fb::Event) == sizeof(event));
static_assert(sizeof(fb::InstrumentOp) == sizeof(instrument_op));
static_assert(sizeof(fb::Price) == sizeof(price));
static_assert(sizeof(fb::InstrumentState) == sizeof(instrument_state));
static_assert(sizeof(fb::CustomerOp) == sizeof(customer_op));
static_assert(sizeof(fb::CustomerState) == sizeof(customer_state));
static_assert(sizeof(fb::Order) == sizeof(order));
static_assert(sizeof(fb::OrderAnswer) == sizeof(order_answer));
static_assert(sizeof(fb::Position) == sizeof(position_view));
static_assert(sizeof(fb::OrderCancel) == sizeof(order_cancel));
static_assert(sizeof(fb::OrderInstruction) == sizeof(order_instruction));
static_assert(sizeof(fb::OrderState) == sizeof(order_state_view));
static_assert(sizeof(fb::RebalanceRequest) == sizeof(rebalance_request));

std::vector<uint8_t> finish(flatbuffers::FlatBufferBuilder& fbb, flatbuffers::Offset<void> root) {
  fbb.Finish(root, ident);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

// Requests and session frames hold at most a few tables; a response one per history page.
constexpr flatbuffers::uoffset_t tables_small = 16, tables_response = 2 * batch_operations_max + 16;

template <class Table>
bool verify(std::span<const uint8_t> body, std::string* why, flatbuffers::uoffset_t max_tables = tables_small) {
  if (body.size() < 8 || !flatbuffers::BufferHasIdentifier(body.data(), ident)) {
    *why = "body is not a Mesob flatbuffer (no \"MSB1\" identifier)";
    return false;
  }
  flatbuffers::Verifier v(body.data(), body.size(), 16, max_tables);
  if (!v.VerifyBuffer<Table>(ident)) {
    *why = "flatbuffer failed verification";
    return false;
  }
  return true;
}

template <class FbStruct, class T>
flatbuffers::Offset<flatbuffers::Vector<const FbStruct*>> structs(flatbuffers::FlatBufferBuilder& fbb,
                                                                  std::span<const T> items) {
  static_assert(sizeof(FbStruct) == sizeof(T));
  return fbb.CreateVectorOfStructs(reinterpret_cast<const FbStruct*>(items.data()), items.size());
}

template <class FbStruct, class T>
void copy_structs(const flatbuffers::Vector<const FbStruct*>* v, std::vector<T>& out) {
  static_assert(sizeof(FbStruct) == sizeof(T));
  out.resize(v ? v->size() : 0);
  if (!out.empty()) std::memcpy(out.data(), v->Data(), out.size() * sizeof(T));
}

template <typename T>
void copy_scalars(const flatbuffers::Vector<T>* v, std::vector<T>& out) {
  out.resize(v ? v->size() : 0);
  if (!out.empty()) std::memcpy(out.data(), v->Data(), out.size() * sizeof(T));
}

std::vector<result> to_results(const flatbuffers::Vector<uint32_t>* v) {
  std::vector<result> out(v ? v->size() : 0);
  if (!out.empty()) std::memcpy(out.data(), v->Data(), out.size() * sizeof(uint32_t));
  return out;
}

flatbuffers::Offset<flatbuffers::Vector<uint32_t>> results_vec(flatbuffers::FlatBufferBuilder& fbb,
                                                               std::span<const result> r) {
  static_assert(sizeof(result) == sizeof(uint32_t));
  return fbb.CreateVector(reinterpret_cast<const uint32_t*>(r.data()), r.size());
}

template <class Make>
std::vector<uint8_t> request(size_t bytes, fb::Operation type, Make&& make) {
  flatbuffers::FlatBufferBuilder fbb(bytes + 256);
  const auto table = make(fbb);
  return finish(fbb, fb::CreateRequest(fbb, type, table.Union()).Union());
}

template <class Make>
std::vector<uint8_t> response(size_t bytes, fb::Reply type, Make&& make) {
  flatbuffers::FlatBufferBuilder fbb(bytes + 256);
  const auto table = make(fbb);
  return finish(fbb, fb::CreateResponse(fbb, type, table.Union()).Union());
}

}  // namespace

std::vector<uint8_t> encode_frame(frame_kind kind, uint64_t request_id, std::span<const uint8_t> body) {
  std::vector<uint8_t> out(frame_header_bytes + body.size());
  frame_header h;
  h.body_bytes = uint32_t(body.size());
  h.kind = uint16_t(kind);
  h.request_id = request_id;
  encode_header(h, out.data());
  if (!body.empty()) std::memcpy(out.data() + frame_header_bytes, body.data(), body.size());
  return out;
}

// ---- session -------------------------------------------------------------------------

std::vector<uint8_t> hello_body(const hello_msg& m) {
  flatbuffers::FlatBufferBuilder fbb(256);
  const auto nonce = fbb.CreateVector(m.nonce);
  const auto server = fbb.CreateString(m.server);
  return finish(fbb, fb::CreateHello(fbb, m.protocol, nonce, server).Union());
}

std::vector<uint8_t> auth_body(const auth_msg& m) {
  flatbuffers::FlatBufferBuilder fbb(256);
  const auto id = fbb.CreateString(m.gateway_id);
  const auto mac = fbb.CreateVector(m.mac);
  return finish(fbb, fb::CreateAuth(fbb, id, mac).Union());
}

std::vector<uint8_t> welcome_body(const welcome_msg& m) {
  flatbuffers::FlatBufferBuilder fbb(256);
  const auto id = fbb.CreateString(m.gateway_id);
  return finish(fbb, fb::CreateWelcome(fbb, id, m.roles, m.session_id, m.frame_bytes_max, m.in_flight_max,
                                       m.gateway_number, m.shards)
                         .Union());
}

std::vector<uint8_t> error_body(const error_msg& m) {
  flatbuffers::FlatBufferBuilder fbb(256);
  const auto msg = fbb.CreateString(m.message);
  return finish(fbb, fb::CreateError(fbb, uint16_t(m.code), msg).Union());
}

std::vector<uint8_t> push_body(const push_msg& m) {
  flatbuffers::FlatBufferBuilder fbb(m.body.size() + m.topic.size() + 64);
  const auto topic = fbb.CreateString(m.topic);
  const auto body = fbb.CreateVector(m.body);
  return finish(fbb, fb::CreatePush(fbb, topic, body).Union());
}

bool parse_push(std::span<const uint8_t> body, push_msg* out, std::string* why) {
  if (!verify<fb::Push>(body, why)) return false;
  const auto* p = flatbuffers::GetRoot<fb::Push>(body.data());
  out->topic = p->topic() ? p->topic()->str() : std::string();
  out->body.clear();
  if (p->body()) out->body.assign(p->body()->begin(), p->body()->end());
  return true;
}

bool parse_hello(std::span<const uint8_t> body, hello_msg* out, std::string* why) {
  if (!verify<fb::Hello>(body, why)) return false;
  const auto* h = flatbuffers::GetRoot<fb::Hello>(body.data());
  if (!h->nonce() || h->nonce()->size() != nonce_bytes) {
    *why = "hello: nonce must be " + std::to_string(nonce_bytes) + " bytes";
    return false;
  }
  out->protocol = h->protocol();
  out->nonce.assign(h->nonce()->begin(), h->nonce()->end());
  out->server = h->server() ? h->server()->str() : std::string();
  return true;
}

bool parse_auth(std::span<const uint8_t> body, auth_msg* out, std::string* why) {
  if (!verify<fb::Auth>(body, why)) return false;
  const auto* a = flatbuffers::GetRoot<fb::Auth>(body.data());
  if (!a->gateway_id() || a->gateway_id()->size() == 0 || a->gateway_id()->size() > gateway_id_max) {
    *why = "auth: gateway id must be 1.." + std::to_string(gateway_id_max) + " bytes";
    return false;
  }
  if (!a->mac() || a->mac()->size() != mac_bytes) {
    *why = "auth: mac must be " + std::to_string(mac_bytes) + " bytes (HMAC-SHA256)";
    return false;
  }
  out->gateway_id = a->gateway_id()->str();
  out->mac.assign(a->mac()->begin(), a->mac()->end());
  return true;
}

bool parse_welcome(std::span<const uint8_t> body, welcome_msg* out, std::string* why) {
  if (!verify<fb::Welcome>(body, why)) return false;
  const auto* w = flatbuffers::GetRoot<fb::Welcome>(body.data());
  out->gateway_id = w->gateway_id() ? w->gateway_id()->str() : std::string();
  out->roles = w->roles();
  out->session_id = w->session_id();
  out->frame_bytes_max = w->frame_bytes_max();
  out->in_flight_max = w->in_flight_max();
  out->gateway_number = w->gateway_number();
  out->shards = w->shards();
  return true;
}

bool parse_error(std::span<const uint8_t> body, error_msg* out, std::string* why) {
  if (!verify<fb::Error>(body, why)) return false;
  const auto* e = flatbuffers::GetRoot<fb::Error>(body.data());
  out->code = protocol_error(e->code());
  out->message = e->message() ? e->message()->str() : std::string();
  return true;
}

// ---- events --------------------------------------------------------------------------

std::vector<uint8_t> subscribe_body(const subscribe_msg& m) {
  flatbuffers::FlatBufferBuilder fbb(256 + m.accounts.size() * 8 + m.gateways.size() * 4);
  const auto name = fbb.CreateString(m.name);
  const auto accounts = fbb.CreateVector(m.accounts);
  const auto gateways = fbb.CreateVector(m.gateways);
  // With types_high set, bit 0 (no type) set too: a server from before types_high reads
  // `types` alone, and refuses bit 0 instead of taking a low word of 0 for every type.
  const uint32_t high = uint32_t(m.types >> 32);
  const uint32_t low = uint32_t(m.types) | (high != 0 ? 1u : 0u);
  return finish(fbb, fb::CreateSubscribe(fbb, name, m.from, m.from_end, low, accounts, gateways, m.window,
                                         m.batch_max, m.packed, high)
                         .Union());
}

std::vector<uint8_t> subscribed_body(const subscribed_msg& m) {
  flatbuffers::FlatBufferBuilder fbb(256);
  const auto msg = fbb.CreateString(m.message);
  return finish(fbb, fb::CreateSubscribed(fbb, uint32_t(m.code), msg, m.start, m.oldest, m.end).Union());
}

namespace {
// The finished builder's buffer as an Events frame.
std::vector<uint8_t> framed(flatbuffers::FlatBufferBuilder& fbb) {
  std::vector<uint8_t> out;
  out.reserve(frame_header_bytes + fbb.GetSize());
  out.resize(frame_header_bytes);
  frame_header h;
  h.body_bytes = fbb.GetSize();
  h.kind = uint16_t(frame_kind::events);
  encode_header(h, out.data());
  out.insert(out.end(), fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  return out;
}
}  // namespace

std::vector<uint8_t> events_frame(std::span<const event> events, uint64_t next, uint64_t end, bool packed) {
  if (packed) {
    thread_local std::vector<uint8_t> bytes;
    bytes.clear();
    pack_events(events, bytes);
    return events_frame_packed(bytes, uint32_t(events.size()), next, end);
  }
  flatbuffers::FlatBufferBuilder fbb(events.size_bytes() + 128);
  const auto v = structs<fb::Event>(fbb, events);
  fbb.Finish(fb::CreateEvents(fbb, v, next, end), ident);
  return framed(fbb);
}

std::vector<uint8_t> events_frame_packed(std::span<const uint8_t> packed, uint32_t count, uint64_t next,
                                         uint64_t end) {
  MESOB_ASSERT(count <= events_per_frame_max);
  flatbuffers::FlatBufferBuilder fbb(packed.size() + 128);
  const auto v = fbb.CreateVector(packed.data(), packed.size());
  fbb.Finish(fb::CreateEvents(fbb, 0, next, end, v, count), ident);
  return framed(fbb);
}

std::vector<uint8_t> ack_body(uint64_t offset) {
  flatbuffers::FlatBufferBuilder fbb(64);
  return finish(fbb, fb::CreateAck(fbb, offset).Union());
}

bool parse_subscribe(std::span<const uint8_t> body, subscribe_msg* out, std::string* why) {
  if (!verify<fb::Subscribe>(body, why)) return false;
  const auto* m = flatbuffers::GetRoot<fb::Subscribe>(body.data());
  out->name = m->name() ? m->name()->str() : std::string();
  out->from = m->from();
  out->from_end = m->from_end();
  const uint32_t high = m->types_high();
  out->types = uint64_t(high) << 32 | (high != 0 ? m->types() & ~1u : m->types());  // bit 0: the marker above
  // Copied as bytes: the verifier checks the alignment of a vector's 4-byte length only,
  // so a [ulong]'s elements may sit at 4 mod 8, where the vector's own accessors load
  // each as a u64 (the fuzz target's UBSan refused one).
  copy_scalars(m->accounts(), out->accounts);
  copy_scalars(m->gateways(), out->gateways);
  out->window = m->window();
  out->batch_max = m->batch_max();
  out->packed = m->packed();
  return true;
}

bool parse_subscribed(std::span<const uint8_t> body, subscribed_msg* out, std::string* why) {
  if (!verify<fb::Subscribed>(body, why)) return false;
  const auto* m = flatbuffers::GetRoot<fb::Subscribed>(body.data());
  out->code = result(m->result());
  out->message = m->message() ? m->message()->str() : std::string();
  out->start = m->start();
  out->oldest = m->oldest();
  out->end = m->end();
  return true;
}

namespace {
// An Events body checked, its events either packed (`packed` set) or as they are.
const fb::Events* events_root(std::span<const uint8_t> body, const flatbuffers::Vector<uint8_t>** packed,
                              std::string* why) {
  if (!verify<fb::Events>(body, why)) return nullptr;
  const auto* m = flatbuffers::GetRoot<fb::Events>(body.data());
  *packed = m->packed();
  if (*packed != nullptr && m->events() != nullptr && m->events()->size() != 0) {
    *why = "events: both packed and unpacked events";
    return nullptr;
  }
  if (*packed == nullptr && m->count() != 0) {
    *why = "events: a count of " + std::to_string(m->count()) + " without packed events";
    return nullptr;
  }
  return m;
}

// Every event's CRC (wire::event_crc): a frame with one event that fails it is refused.
bool crcs_good(std::span<const event> events, events_msg* out, std::string* why) {
  const size_t bad = first_bad_crc(events);
  if (bad == events.size()) return true;
  out->damaged = events[bad].offset;
  char hex[48];
  std::snprintf(hex, sizeof hex, "%08x, its bytes give %08x", events[bad].crc, event_crc(events[bad]));
  *why = "events: event " + std::to_string(events[bad].offset) + " fails its CRC (it carries " + hex +
         "): damaged between the event log and here";
  return false;
}
}  // namespace

bool parse_events(std::span<const uint8_t> body, events_msg* out, std::string* why) {
  const flatbuffers::Vector<uint8_t>* packed = nullptr;
  out->damaged = 0;
  const auto* m = events_root(body, &packed, why);
  if (m == nullptr) return false;
  if (packed != nullptr) {
    if (!unpack_events({packed->data(), packed->size()}, m->count(), out->events, why)) return false;
  } else {
    copy_structs(m->events(), out->events);
  }
  if (!crcs_good(out->events, out, why)) {
    out->events.clear();  // (nothing of a refused frame is handed out)
    return false;
  }
  out->next = m->next();
  out->end = m->end();
  return true;
}

bool parse_events(std::span<const uint8_t> body, events_msg* out, const event_visitor& each, std::string* why) {
  const flatbuffers::Vector<uint8_t>* packed = nullptr;
  out->damaged = 0;
  const auto* m = events_root(body, &packed, why);
  if (m == nullptr) return false;
  // Each block is handed out once its CRCs are checked: a damaged event ends the frame
  // there (the blocks before it were handed out; the frame is not acknowledged).
  bool damaged = false;
  const auto checked = [&](std::span<const event> block) {
    if (damaged || !crcs_good(block, out, why)) {
      damaged = true;
      return;
    }
    each(block);
  };
  if (packed != nullptr) {
    if (!unpack_events({packed->data(), packed->size()}, m->count(), checked, why)) return false;
  } else if (const auto* v = m->events(); v != nullptr) {
    // The body need not be aligned for events: copied out a block at a time.
    std::array<event, packed_block_events> block;
    for (size_t at = 0; at < v->size() && !damaged; at += block.size()) {
      const size_t n = std::min(block.size(), size_t(v->size()) - at);
      std::memcpy(block.data(), v->Data() + at * sizeof(event), n * sizeof(event));
      checked(std::span<const event>(block.data(), n));
    }
  }
  if (damaged) return false;
  out->next = m->next();
  out->end = m->end();
  return true;
}

bool parse_ack(std::span<const uint8_t> body, uint64_t* offset, std::string* why) {
  if (!verify<fb::Ack>(body, why)) return false;
  *offset = flatbuffers::GetRoot<fb::Ack>(body.data())->offset();
  return true;
}

// ---- requests ------------------------------------------------------------------------

uint64_t history_records_asked(const uint8_t* items, uint32_t n) {
  uint64_t records = 0;
  for (uint32_t i = 0; i < n; ++i) {
    history_query_item q;
    std::memcpy(&q, items + size_t(i) * sizeof q, sizeof q);
    if (q.limit <= history_page_records_max) records += q.limit;
  }
  return records;
}

std::string_view operation_name(operation op) {
  switch (op) {
    case operation::create_accounts: return "create_accounts";
    case operation::create_transfers: return "create_transfers";
    case operation::set_account_status: return "set_account_status";
    case operation::lookup_accounts: return "lookup_accounts";
    case operation::lookup_transfers: return "lookup_transfers";
    case operation::lookup_account_transfers: return "lookup_account_transfers";
    case operation::lookup_balances: return "lookup_balances";
    case operation::equb_ops: return "equb_ops";
    case operation::lookup_groups: return "lookup_groups";
    case operation::deposits: return "deposits";
    case operation::payouts: return "payouts";
    case operation::payout_answers: return "payout_answers";
    case operation::instrument_ops: return "instrument_ops";
    case operation::prices: return "prices";
    case operation::lookup_instruments: return "lookup_instruments";
    case operation::customer_ops: return "customer_ops";
    case operation::lookup_customers: return "lookup_customers";
    case operation::orders: return "orders";
    case operation::order_answers: return "order_answers";
    case operation::cancel_orders: return "cancel_orders";
    case operation::lookup_orders: return "lookup_orders";
    case operation::lookup_positions: return "lookup_positions";
    case operation::rebalance: return "rebalance";
  }
  return "unknown";
}

bool operation_writes(operation op) {
  return op == operation::create_accounts || op == operation::create_transfers ||
         op == operation::set_account_status || op == operation::equb_ops || op == operation::deposits ||
         op == operation::payouts || op == operation::payout_answers || op == operation::instrument_ops ||
         op == operation::prices || op == operation::customer_ops || op == operation::orders ||
         op == operation::order_answers || op == operation::cancel_orders || op == operation::rebalance;
}

namespace {
// True when no item of r (items of type T) is one `unsafe` picks.
template <class T, class Unsafe>
bool no_item(const parsed_request& r, Unsafe unsafe) {
  for (uint32_t i = 0; i < r.count; ++i) {
    T item;
    std::memcpy(&item, r.items.data() + size_t(i) * sizeof(T), sizeof(T));
    if (unsafe(item)) return false;
  }
  return true;
}
}  // namespace

bool repeat_changes_nothing(const parsed_request& r) {
  switch (r.op) {
    case operation::set_account_status:
    case operation::rebalance: return false;
    case operation::equb_ops:
      return no_item<equb_op>(r, [](const equb_op& o) {
        return o.kind != equb_op_kind::create && o.kind != equb_op_kind::start && o.kind != equb_op_kind::bid &&
               o.kind != equb_op_kind::dissolve && o.kind != equb_op_kind::write_off;
      });
    case operation::instrument_ops:
      return no_item<instrument_op>(r, [](const instrument_op& o) { return o.kind != instrument_op_kind::define; });
    case operation::customer_ops:
      return no_item<customer_op>(r, [](const customer_op& o) { return o.kind != customer_op_kind::record; });
    default: return true;
  }
}

size_t operation_item_bytes(operation op) {
  switch (op) {
    case operation::create_accounts: return sizeof(account);
    case operation::create_transfers: return sizeof(transfer);
    case operation::set_account_status: return sizeof(account_status_change);
    case operation::lookup_accounts: return sizeof(uint64_t);
    case operation::lookup_transfers: return sizeof(id128);
    case operation::lookup_account_transfers: return sizeof(history_query_item);
    case operation::lookup_balances: return sizeof(balance_query_item);
    case operation::equb_ops: return sizeof(equb_op);
    case operation::lookup_groups: return sizeof(uint64_t);
    case operation::deposits: return sizeof(deposit);
    case operation::payouts: return sizeof(payout);
    case operation::payout_answers: return sizeof(payout_answer);
    case operation::instrument_ops: return sizeof(instrument_op);
    case operation::prices: return sizeof(price);
    case operation::lookup_instruments: return sizeof(uint64_t);
    case operation::customer_ops: return sizeof(customer_op);
    case operation::lookup_customers: return sizeof(uint64_t);
    case operation::orders: return sizeof(order);
    case operation::order_answers: return sizeof(order_answer);
    case operation::cancel_orders: return sizeof(order_cancel);
    case operation::lookup_orders: return sizeof(uint64_t);
    case operation::lookup_positions: return sizeof(uint64_t);
    case operation::rebalance: return sizeof(rebalance_request);
  }
  return 0;
}

std::vector<uint8_t> create_accounts_body(std::span<const account> items) {
  return request(items.size_bytes(), fb::Operation::CreateAccounts, [&](auto& fbb) {
    return fb::CreateCreateAccounts(fbb, structs<fb::Account>(fbb, items));
  });
}
std::vector<uint8_t> create_transfers_body(std::span<const transfer> items) {
  return request(items.size_bytes(), fb::Operation::CreateTransfers, [&](auto& fbb) {
    return fb::CreateCreateTransfers(fbb, structs<fb::Transfer>(fbb, items));
  });
}
std::vector<uint8_t> set_account_status_body(std::span<const account_status_change> items) {
  return request(items.size_bytes(), fb::Operation::SetAccountStatus, [&](auto& fbb) {
    return fb::CreateSetAccountStatus(fbb, structs<fb::StatusChange>(fbb, items));
  });
}
std::vector<uint8_t> lookup_accounts_body(std::span<const uint64_t> ids) {
  return request(ids.size_bytes(), fb::Operation::LookupAccounts, [&](auto& fbb) {
    return fb::CreateLookupAccounts(fbb, fbb.CreateVector(ids.data(), ids.size()));
  });
}
std::vector<uint8_t> lookup_transfers_body(std::span<const id128> ids) {
  return request(ids.size_bytes(), fb::Operation::LookupTransfers, [&](auto& fbb) {
    return fb::CreateLookupTransfers(fbb, structs<fb::Id128>(fbb, ids));
  });
}
std::vector<uint8_t> lookup_account_transfers_body(std::span<const history_query_item> items) {
  return request(items.size_bytes(), fb::Operation::LookupAccountTransfers, [&](auto& fbb) {
    return fb::CreateLookupAccountTransfers(fbb, structs<fb::HistoryQuery>(fbb, items));
  });
}
std::vector<uint8_t> lookup_balances_body(std::span<const balance_query_item> items) {
  return request(items.size_bytes(), fb::Operation::LookupBalances, [&](auto& fbb) {
    return fb::CreateLookupBalances(fbb, structs<fb::BalanceQuery>(fbb, items));
  });
}

std::vector<uint8_t> equb_ops_body(std::span<const equb_op> items) {
  return request(items.size_bytes(), fb::Operation::EqubOps, [&](auto& fbb) {
    return fb::CreateEqubOps(fbb, structs<fb::EqubOp>(fbb, items));
  });
}
std::vector<uint8_t> lookup_groups_body(std::span<const uint64_t> ids) {
  return request(ids.size_bytes(), fb::Operation::LookupGroups, [&](auto& fbb) {
    return fb::CreateLookupGroups(fbb, fbb.CreateVector(ids.data(), ids.size()));
  });
}

std::vector<uint8_t> deposits_body(std::span<const deposit> items) {
  return request(items.size_bytes(), fb::Operation::Deposits, [&](auto& fbb) {
    return fb::CreateDeposits(fbb, structs<fb::Deposit>(fbb, items));
  });
}

std::vector<uint8_t> payouts_body(std::span<const payout> items) {
  return request(items.size_bytes(), fb::Operation::Payouts, [&](auto& fbb) {
    return fb::CreatePayouts(fbb, structs<fb::Payout>(fbb, items));
  });
}
std::vector<uint8_t> payout_answers_body(std::span<const payout_answer> items) {
  return request(items.size_bytes(), fb::Operation::PayoutAnswers, [&](auto& fbb) {
    return fb::CreatePayoutAnswers(fbb, structs<fb::PayoutAnswer>(fbb, items));
  });
}

std::vector<uint8_t> instrument_ops_body(std::span<const instrument_op> items) {
  return request(items.size_bytes(), fb::Operation::InstrumentOps, [&](auto& fbb) {
    return fb::CreateInstrumentOps(fbb, structs<fb::InstrumentOp>(fbb, items));
  });
}
std::vector<uint8_t> prices_body(std::span<const price> items) {
  return request(items.size_bytes(), fb::Operation::Prices, [&](auto& fbb) {
    return fb::CreatePrices(fbb, structs<fb::Price>(fbb, items));
  });
}
std::vector<uint8_t> lookup_instruments_body(std::span<const uint64_t> ids) {
  return request(ids.size_bytes(), fb::Operation::LookupInstruments, [&](auto& fbb) {
    return fb::CreateLookupInstruments(fbb, fbb.CreateVector(ids.data(), ids.size()));
  });
}

std::vector<uint8_t> customer_ops_body(std::span<const customer_op> items) {
  return request(items.size_bytes(), fb::Operation::CustomerOps, [&](auto& fbb) {
    return fb::CreateCustomerOps(fbb, structs<fb::CustomerOp>(fbb, items));
  });
}
std::vector<uint8_t> lookup_customers_body(std::span<const uint64_t> wallets) {
  return request(wallets.size_bytes(), fb::Operation::LookupCustomers, [&](auto& fbb) {
    return fb::CreateLookupCustomers(fbb, fbb.CreateVector(wallets.data(), wallets.size()));
  });
}

std::vector<uint8_t> orders_body(std::span<const order> items) {
  return request(items.size_bytes(), fb::Operation::Orders, [&](auto& fbb) {
    return fb::CreateOrders(fbb, structs<fb::Order>(fbb, items));
  });
}
std::vector<uint8_t> order_answers_body(std::span<const order_answer> items) {
  return request(items.size_bytes(), fb::Operation::OrderAnswers, [&](auto& fbb) {
    return fb::CreateOrderAnswers(fbb, structs<fb::OrderAnswer>(fbb, items));
  });
}
std::vector<uint8_t> cancel_orders_body(std::span<const order_cancel> items) {
  return request(items.size_bytes(), fb::Operation::CancelOrders, [&](auto& fbb) {
    return fb::CreateCancelOrders(fbb, structs<fb::OrderCancel>(fbb, items));
  });
}
std::vector<uint8_t> lookup_orders_body(std::span<const uint64_t> ids) {
  return request(ids.size_bytes(), fb::Operation::LookupOrders, [&](auto& fbb) {
    return fb::CreateLookupOrders(fbb, fbb.CreateVector(ids.data(), ids.size()));
  });
}

std::vector<uint8_t> lookup_positions_body(std::span<const uint64_t> wallets) {
  return request(wallets.size_bytes(), fb::Operation::LookupPositions, [&](auto& fbb) {
    return fb::CreateLookupPositions(fbb, fbb.CreateVector(wallets.data(), wallets.size()));
  });
}

std::vector<uint8_t> rebalance_body(const rebalance_request& r) {
  return request(sizeof r, fb::Operation::Rebalance, [&](auto& fbb) {
    return fb::CreateRebalance(fbb, structs<fb::RebalanceRequest>(fbb, std::span<const rebalance_request>(&r, 1)));
  });
}

std::vector<uint8_t> order_instructions_body(std::span<const order_instruction> items) {
  flatbuffers::FlatBufferBuilder fbb(items.size_bytes() + 128);
  return finish(fbb, fb::CreateOrderInstructions(fbb, structs<fb::OrderInstruction>(fbb, items)).Union());
}

bool parse_order_instructions(std::span<const uint8_t> body, std::vector<order_instruction>* out, std::string* why) {
  if (!verify<fb::OrderInstructions>(body, why)) return false;
  copy_structs(flatbuffers::GetRoot<fb::OrderInstructions>(body.data())->instructions(), *out);
  return true;
}

std::vector<uint8_t> payout_instructions_body(std::span<const payout_instruction> items) {
  flatbuffers::FlatBufferBuilder fbb(items.size_bytes() + 128);
  return finish(fbb, fb::CreatePayoutInstructions(fbb, structs<fb::PayoutInstruction>(fbb, items)).Union());
}

bool parse_payout_instructions(std::span<const uint8_t> body, std::vector<payout_instruction>* out, std::string* why) {
  if (!verify<fb::PayoutInstructions>(body, why)) return false;
  copy_structs(flatbuffers::GetRoot<fb::PayoutInstructions>(body.data())->instructions(), *out);
  return true;
}

bool parse_request(std::span<const uint8_t> body, parsed_request* out, error_msg* err) {
  std::string why;
  if (!verify<fb::Request>(body, &why)) {
    *err = {protocol_error::body_invalid, "request: " + why};
    return false;
  }
  const auto* r = flatbuffers::GetRoot<fb::Request>(body.data());
  const auto type = r->operation_type();
  const void* table = r->operation();
  if (type == fb::Operation::NONE || type > fb::Operation::MAX) {
    *err = {protocol_error::operation_unknown,
            "request: unknown operation type " + std::to_string(unsigned(type)) + " (this server knows 1.." +
                std::to_string(unsigned(fb::Operation::MAX)) + ")"};
    return false;
  }
  if (table == nullptr) {
    *err = {protocol_error::body_invalid,
            "request: operation type " + std::to_string(unsigned(type)) + " without its table"};
    return false;
  }
  uint32_t n = 0;
  const uint8_t* data = nullptr;
  auto take = [&](const auto* v) {
    n = v ? v->size() : 0;
    data = v ? v->Data() : nullptr;
  };
  switch (type) {
    case fb::Operation::CreateAccounts: take(r->operation_as_CreateAccounts()->accounts()); break;
    case fb::Operation::CreateTransfers: take(r->operation_as_CreateTransfers()->transfers()); break;
    case fb::Operation::SetAccountStatus: take(r->operation_as_SetAccountStatus()->changes()); break;
    case fb::Operation::LookupAccounts: take(r->operation_as_LookupAccounts()->ids()); break;
    case fb::Operation::LookupTransfers: take(r->operation_as_LookupTransfers()->ids()); break;
    case fb::Operation::LookupAccountTransfers: take(r->operation_as_LookupAccountTransfers()->queries()); break;
    case fb::Operation::LookupBalances: take(r->operation_as_LookupBalances()->queries()); break;
    case fb::Operation::EqubOps: take(r->operation_as_EqubOps()->ops()); break;
    case fb::Operation::LookupGroups: take(r->operation_as_LookupGroups()->ids()); break;
    case fb::Operation::Deposits: take(r->operation_as_Deposits()->deposits()); break;
    case fb::Operation::Payouts: take(r->operation_as_Payouts()->payouts()); break;
    case fb::Operation::PayoutAnswers: take(r->operation_as_PayoutAnswers()->answers()); break;
    case fb::Operation::InstrumentOps: take(r->operation_as_InstrumentOps()->ops()); break;
    case fb::Operation::Prices: take(r->operation_as_Prices()->prices()); break;
    case fb::Operation::LookupInstruments: take(r->operation_as_LookupInstruments()->ids()); break;
    case fb::Operation::CustomerOps: take(r->operation_as_CustomerOps()->ops()); break;
    case fb::Operation::LookupCustomers: take(r->operation_as_LookupCustomers()->wallets()); break;
    case fb::Operation::Orders: take(r->operation_as_Orders()->orders()); break;
    case fb::Operation::OrderAnswers: take(r->operation_as_OrderAnswers()->answers()); break;
    case fb::Operation::CancelOrders: take(r->operation_as_CancelOrders()->cancels()); break;
    case fb::Operation::LookupOrders: take(r->operation_as_LookupOrders()->ids()); break;
    case fb::Operation::Rebalance: take(r->operation_as_Rebalance()->requests()); break;
    case fb::Operation::LookupPositions: take(r->operation_as_LookupPositions()->wallets()); break;
    default: break;
  }
  out->op = operation(uint8_t(type));
  if (n == 0) {
    *err = {protocol_error::batch_empty, std::string("request: ") + std::string(operation_name(out->op)) +
                                             " carries no operations"};
    return false;
  }
  if (n > batch_operations_max) {
    *err = {protocol_error::batch_too_large, "request: " + std::to_string(n) + " operations (at most " +
                                                 std::to_string(batch_operations_max) + ")"};
    return false;
  }
  if (out->op == operation::equb_ops && n > equb_ops_max) {
    *err = {protocol_error::batch_too_large, "request: " + std::to_string(n) + " group operations (at most " +
                                                 std::to_string(equb_ops_max) + ")"};
    return false;
  }
  if (out->op == operation::rebalance && n != 1) {
    *err = {protocol_error::batch_too_large, "request: a rebalance carries one wallet's request (" + std::to_string(n) + " given)"};
    return false;
  }
  if (out->op == operation::lookup_positions && n > lookup_positions_max) {
    *err = {protocol_error::batch_too_large, "request: lookup_positions of " + std::to_string(n) + " wallets (at most " +
                                                 std::to_string(lookup_positions_max) + ")"};
    return false;
  }
  if (out->op == operation::lookup_groups && n > lookup_groups_max) {
    *err = {protocol_error::batch_too_large, "request: lookup_groups of " + std::to_string(n) + " groups (at most " +
                                                 std::to_string(lookup_groups_max) + ")"};
    return false;
  }
  if (out->op == operation::lookup_account_transfers) {
    const uint64_t records = history_records_asked(data, n);
    if (records > history_request_records_max) {
      *err = {protocol_error::batch_too_large,
              "request: lookup_account_transfers pages ask for " + std::to_string(records) +
                  " records in all (at most " + std::to_string(history_request_records_max) +
                  " a request; ask for the rest in further requests)"};
      return false;
    }
  }
  out->count = n;
  out->items = {data, size_t(n) * operation_item_bytes(out->op)};
  return true;
}

// ---- responses -----------------------------------------------------------------------

std::vector<uint8_t> results_body(std::span<const result> results) {
  return response(results.size_bytes(), fb::Reply::Results, [&](auto& fbb) {
    return fb::CreateResults(fbb, results_vec(fbb, results));
  });
}

std::vector<uint8_t> found_accounts_body(std::span<const result> results, std::span<const account> accounts) {
  return response(results.size_bytes() + accounts.size_bytes(), fb::Reply::FoundAccounts, [&](auto& fbb) {
    const auto r = results_vec(fbb, results);
    const auto a = structs<fb::Account>(fbb, accounts);
    return fb::CreateFoundAccounts(fbb, r, a);
  });
}

std::vector<uint8_t> found_transfers_body(std::span<const result> results,
                                          std::span<const transfer_record_item> records) {
  return response(results.size_bytes() + records.size_bytes(), fb::Reply::FoundTransfers, [&](auto& fbb) {
    const auto r = results_vec(fbb, results);
    const auto t = structs<fb::TransferRecord>(fbb, records);
    return fb::CreateFoundTransfers(fbb, r, t);
  });
}

std::vector<uint8_t> account_transfers_body(std::span<const history_page_item> pages) {
  size_t bytes = 0;
  for (const auto& p : pages) bytes += p.records.size() * sizeof(transfer_record_item) + 32;
  return response(bytes, fb::Reply::AccountTransfers, [&](auto& fbb) {
    std::vector<flatbuffers::Offset<fb::HistoryPage>> offs;
    offs.reserve(pages.size());
    for (const auto& p : pages) {
      const auto recs = structs<fb::TransferRecord>(fbb, std::span<const transfer_record_item>(p.records));
      offs.push_back(fb::CreateHistoryPage(fbb, uint32_t(p.code), recs, p.next_cursor));
    }
    return fb::CreateAccountTransfers(fbb, fbb.CreateVector(offs));
  });
}

std::vector<uint8_t> balances_body(std::span<const balance_item> balances) {
  return response(balances.size_bytes(), fb::Reply::Balances, [&](auto& fbb) {
    return fb::CreateBalances(fbb, structs<fb::Balance>(fbb, balances));
  });
}

std::vector<uint8_t> instruments_body(std::span<const result> results, std::span<const instrument_state> instruments,
                                      std::span<const uint64_t> sequences) {
  return response(results.size_bytes() + instruments.size_bytes() + sequences.size_bytes(), fb::Reply::Instruments,
                  [&](auto& fbb) {
    const auto r = results_vec(fbb, results);
    const auto i = structs<fb::InstrumentState>(fbb, instruments);
    const auto q = fbb.CreateVector(sequences.data(), sequences.size());
    return fb::CreateInstruments(fbb, r, i, q);
  });
}

std::vector<uint8_t> customers_body(std::span<const result> results, std::span<const customer_state> customers) {
  return response(results.size_bytes() + customers.size_bytes(), fb::Reply::Customers, [&](auto& fbb) {
    const auto r = results_vec(fbb, results);
    const auto c = structs<fb::CustomerState>(fbb, customers);
    return fb::CreateCustomers(fbb, r, c);
  });
}

std::vector<uint8_t> orders_reply_body(std::span<const result> results, std::span<const order_state_view> orders) {
  return response(results.size_bytes() + orders.size_bytes(), fb::Reply::FoundOrders, [&](auto& fbb) {
    const auto r = results_vec(fbb, results);
    const auto o = structs<fb::OrderState>(fbb, orders);
    return fb::CreateFoundOrders(fbb, r, o);
  });
}

std::vector<uint8_t> placed_orders_body(std::span<const result> results, std::span<const order> orders) {
  return response(results.size_bytes() + orders.size_bytes(), fb::Reply::PlacedOrders, [&](auto& fbb) {
    const auto r = results_vec(fbb, results);
    const auto o = structs<fb::Order>(fbb, orders);
    return fb::CreatePlacedOrders(fbb, r, o);
  });
}

std::vector<uint8_t> positions_body(std::span<const result> results, std::span<const position_view> positions) {
  return response(results.size_bytes() + positions.size_bytes(), fb::Reply::FoundPositions, [&](auto& fbb) {
    const auto r = results_vec(fbb, results);
    const auto p = structs<fb::Position>(fbb, positions);
    return fb::CreateFoundPositions(fbb, r, p);
  });
}

std::vector<uint8_t> groups_body(std::span<const group_item> groups) {
  size_t bytes = 0;
  for (const auto& g : groups)
    bytes += 512 + g.seats.size() * (sizeof(group_seat_item) + 16) + g.history.size() * sizeof(group_round_item) +
             g.owed.size() * sizeof(group_payment_item);
  return response(bytes, fb::Reply::Groups, [&](auto& fbb) {
    std::vector<flatbuffers::Offset<fb::Group>> offs;
    offs.reserve(groups.size());
    for (const auto& g : groups) {
      const auto commitment = fbb.CreateVector(g.commitment);
      const auto revealed = fbb.CreateVector(g.last_revealed);
      const auto seats = structs<fb::GroupSeat>(fbb, std::span<const group_seat_item>(g.seats));
      const auto history = structs<fb::GroupRound>(fbb, std::span<const group_round_item>(g.history));
      const auto owed = structs<fb::GroupPayment>(fbb, std::span<const group_payment_item>(g.owed));
      const auto destinations = fbb.CreateVector(g.destinations);
      const auto to_group = fbb.CreateVector(g.debts_to_group);
      fb::GroupBuilder b(fbb);
      b.add_result(uint32_t(g.code));
      b.add_config(reinterpret_cast<const fb::EqubOp*>(&g.config));
      b.add_phase(g.phase);
      b.add_round(g.round);
      b.add_bids(g.bids);
      b.add_next_step(g.next_step);
      b.add_created_at(g.created_at);
      b.add_started_at(g.started_at);
      b.add_pot(g.pot);
      b.add_escrow(g.escrow);
      b.add_escrow_expected(g.escrow_expected);
      b.add_commitment(commitment);
      b.add_last_revealed(revealed);
      b.add_seats(seats);
      b.add_history(history);
      b.add_owed(owed);
      b.add_destinations(destinations);
      b.add_shift_ns(g.shift_ns);
      b.add_held(g.held);
      b.add_debts_to_group(to_group);
      b.add_round_deadline(g.round_deadline);
      b.add_round_close(g.round_close);
      offs.push_back(b.Finish());
    }
    return fb::CreateGroups(fbb, fbb.CreateVector(offs));
  });
}

bool parse_response(std::span<const uint8_t> body, reply_msg* out, std::string* why) {
  if (!verify<fb::Response>(body, why, tables_response)) return false;
  const auto* r = flatbuffers::GetRoot<fb::Response>(body.data());
  *out = reply_msg{};
  if (r->reply() == nullptr) {
    *why = "response: no reply";
    return false;
  }
  switch (r->reply_type()) {
    case fb::Reply::Results:
      out->kind = reply_kind::results;
      out->results = to_results(r->reply_as_Results()->results());
      return true;
    case fb::Reply::FoundAccounts: {
      const auto* f = r->reply_as_FoundAccounts();
      out->kind = reply_kind::found_accounts;
      out->results = to_results(f->results());
      copy_structs(f->accounts(), out->accounts);
      if (out->accounts.size() != out->results.size()) break;
      return true;
    }
    case fb::Reply::FoundTransfers: {
      const auto* f = r->reply_as_FoundTransfers();
      out->kind = reply_kind::found_transfers;
      out->results = to_results(f->results());
      copy_structs(f->records(), out->records);
      if (out->records.size() != out->results.size()) break;
      return true;
    }
    case fb::Reply::AccountTransfers: {
      out->kind = reply_kind::account_transfers;
      const auto* pages = r->reply_as_AccountTransfers()->pages();
      if (pages)
        for (const auto* p : *pages) {
          history_page_item item;
          item.code = result(p->result());
          item.next_cursor = p->next_cursor();
          copy_structs(p->records(), item.records);
          out->pages.push_back(std::move(item));
        }
      return true;
    }
    case fb::Reply::Instruments: {
      const auto* f = r->reply_as_Instruments();
      out->kind = reply_kind::instruments;
      out->results = to_results(f->results());
      copy_structs(f->instruments(), out->instruments);
      copy_scalars(f->sequences(), out->instrument_sequences);  // absent from an older server's
      if (out->instruments.size() != out->results.size()) break;
      if (!out->instrument_sequences.empty() && out->instrument_sequences.size() != out->results.size()) break;
      return true;
    }
    case fb::Reply::Customers: {
      const auto* f = r->reply_as_Customers();
      out->kind = reply_kind::customers;
      out->results = to_results(f->results());
      copy_structs(f->customers(), out->customers);
      if (out->customers.size() != out->results.size()) break;
      return true;
    }
    case fb::Reply::FoundOrders: {
      const auto* f = r->reply_as_FoundOrders();
      out->kind = reply_kind::orders;
      out->results = to_results(f->results());
      copy_structs(f->orders(), out->orders);
      if (out->orders.size() != out->results.size()) break;
      return true;
    }
    case fb::Reply::FoundPositions: {
      const auto* f = r->reply_as_FoundPositions();
      out->kind = reply_kind::positions;
      out->results = to_results(f->results());
      copy_structs(f->positions(), out->positions);
      return true;
    }
    case fb::Reply::PlacedOrders: {
      const auto* f = r->reply_as_PlacedOrders();
      out->kind = reply_kind::placed_orders;
      out->results = to_results(f->results());
      copy_structs(f->orders(), out->placed);
      if (!out->placed.empty() && out->placed.size() != out->results.size()) break;
      if (out->placed.empty() && out->results.size() != 1) break;
      return true;
    }
    case fb::Reply::Balances:
      out->kind = reply_kind::balances;
      copy_structs(r->reply_as_Balances()->balances(), out->balances);
      return true;
    case fb::Reply::Groups: {
      out->kind = reply_kind::groups;
      const auto* groups = r->reply_as_Groups()->groups();
      if (groups)
        for (const auto* g : *groups) {
          group_item item;
          item.code = result(g->result());
          if (g->config()) std::memcpy(static_cast<void*>(&item.config), g->config(), sizeof item.config);
          item.phase = g->phase();
          item.round = g->round();
          item.bids = g->bids();
          item.next_step = g->next_step();
          item.created_at = g->created_at();
          item.started_at = g->started_at();
          item.shift_ns = g->shift_ns();
          item.round_deadline = g->round_deadline();
          item.round_close = g->round_close();
          item.pot = g->pot();
          item.escrow = g->escrow();
          item.escrow_expected = g->escrow_expected();
          if (g->commitment()) item.commitment.assign(g->commitment()->begin(), g->commitment()->end());
          if (g->last_revealed()) item.last_revealed.assign(g->last_revealed()->begin(), g->last_revealed()->end());
          copy_structs(g->seats(), item.seats);
          copy_structs(g->history(), item.history);
          copy_structs(g->owed(), item.owed);
          // memcpy: the verifier checks a vector's 4-byte alignment, not its 8-byte elements'.
          if (const auto* d = g->destinations(); d && d->size() > 0) {
            item.destinations.resize(d->size());
            std::memcpy(item.destinations.data(), d->Data(), d->size() * sizeof(uint64_t));
          }
          item.held = g->held();
          if (const auto* d = g->debts_to_group(); d && d->size() > 0) {
            item.debts_to_group.resize(d->size());
            std::memcpy(item.debts_to_group.data(), d->Data(), d->size() * sizeof(uint64_t));
          }
          out->groups.push_back(std::move(item));
        }
      return true;
    }
    default: break;
  }
  *why = "response: unknown reply type " + std::to_string(unsigned(r->reply_type())) +
         " or vectors of different lengths";
  return false;
}

// ---- admin ---------------------------------------------------------------------------

std::string_view admin_code_name(admin_code c) {
  switch (c) {
    case admin_code::ok: return "ok";
    case admin_code::command_unknown: return "command_unknown";
    case admin_code::arguments_invalid: return "arguments_invalid";
    case admin_code::not_found: return "not_found";
    case admin_code::failed: return "failed";
    case admin_code::check_failed: return "check_failed";
    case admin_code::refused: return "refused";
  }
  return "unknown";
}

std::vector<uint8_t> admin_request_body(const admin_request_msg& m) {
  flatbuffers::FlatBufferBuilder fbb(256);
  const auto command = fbb.CreateString(m.command);
  const auto args = fbb.CreateVectorOfStrings(m.args);
  fbb.Finish(fb::CreateAdminRequest(fbb, command, args), ident);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

std::vector<uint8_t> admin_response_body(const admin_response_msg& m) {
  flatbuffers::FlatBufferBuilder fbb(1024);
  std::vector<flatbuffers::Offset<fb::AdminSection>> sections;
  for (const auto& sec : m.sections) {
    std::vector<flatbuffers::Offset<fb::AdminColumn>> cols;
    for (const auto& c : sec.columns) cols.push_back(fb::CreateAdminColumn(fbb, fbb.CreateString(c.name), c.numeric));
    std::vector<flatbuffers::Offset<fb::AdminRow>> rows;
    for (const auto& r : sec.rows) rows.push_back(fb::CreateAdminRow(fbb, fbb.CreateVectorOfStrings(r)));
    const auto title = fbb.CreateString(sec.title);
    const auto c = fbb.CreateVector(cols);
    const auto rs = fbb.CreateVector(rows);
    sections.push_back(fb::CreateAdminSection(fbb, title, c, rs));
  }
  const auto message = fbb.CreateString(m.message);
  const auto secs = fbb.CreateVector(sections);
  fbb.Finish(fb::CreateAdminResponse(fbb, uint16_t(m.code), message, secs), ident);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

namespace {
// Code points that show nothing yet change how the text around them reads: bidi marks,
// embeddings, overrides and isolates (a word that displays otherwise than it is stored),
// zero-width characters (two words that look the same and differ), line and paragraph
// separators (a viewer splits the line) and the tags block.
bool invisible_format(uint32_t cp) {
  return cp == 0x061c || cp == 0x180e || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
         (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb) ||
         (cp >= 0xe0000 && cp <= 0xe007f);
}
}  // namespace

// A lone byte such as 0x9b is a control sequence introducer on some terminals: invalid
// sequences are refused along with the control characters.
bool printable_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) return false;
      ++i;
      continue;
    }
    const size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = c & (n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
    for (size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3f);
    }
    const uint32_t least = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
    if (cp < least || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f) ||
        invisible_format(cp))
      return false;
    i += n;
  }
  return true;
}


bool parse_admin_request(std::span<const uint8_t> body, admin_request_msg* out, error_msg* err) {
  std::string* why = &err->message;
  err->code = protocol_error::body_invalid;
  if (!verify<fb::AdminRequest>(body, why, 2 * admin_args_max + 8)) return false;
  err->code = protocol_error::field_invalid;
  const auto* r = flatbuffers::GetRoot<fb::AdminRequest>(body.data());
  *out = admin_request_msg{};
  if (!r->command() || r->command()->size() == 0 || r->command()->size() > admin_command_bytes_max) {
    *why = "admin request: the command must be 1 to " + std::to_string(admin_command_bytes_max) + " bytes";
    return false;
  }
  out->command = r->command()->str();
  if (!printable_utf8(out->command)) {
    *why = "admin request: the command holds a control character, an invisible format character or invalid UTF-8";
    return false;
  }
  if (const auto* args = r->args()) {
    if (args->size() > admin_args_max) {
      *why = "admin request: more than " + std::to_string(admin_args_max) + " arguments";
      return false;
    }
    for (const auto* a : *args) {
      if (a->size() > admin_arg_bytes_max) {
        *why = "admin request: an argument is longer than " + std::to_string(admin_arg_bytes_max) + " bytes";
        return false;
      }
      out->args.push_back(a->str());
      if (!printable_utf8(out->args.back())) {
        *why = "admin request: argument " + std::to_string(out->args.size()) + " holds a control character, an invisible format character or invalid UTF-8";
        return false;
      }
    }
  }
  return true;
}

bool parse_admin_response(std::span<const uint8_t> body, admin_response_msg* out, std::string* why) {
  if (!verify<fb::AdminResponse>(body, why, tables_response)) return false;
  const auto* r = flatbuffers::GetRoot<fb::AdminResponse>(body.data());
  *out = admin_response_msg{};
  if (r->code() > admin_code_max) {
    *why = "admin response: unknown code " + std::to_string(r->code());
    return false;
  }
  out->code = admin_code(r->code());
  out->message = r->message() ? r->message()->str() : std::string();
  if (const auto* secs = r->sections())
    for (const auto* sec : *secs) {
      admin_section s;
      s.title = sec->title() ? sec->title()->str() : std::string();
      if (const auto* cols = sec->columns())
        for (const auto* c : *cols) s.columns.push_back({c->name() ? c->name()->str() : std::string(), c->numeric()});
      if (const auto* rows = sec->rows())
        for (const auto* row : *rows) {
          std::vector<std::string> cells;
          if (row->cells())
            for (const auto* c : *row->cells()) cells.push_back(c->str());
          if (cells.size() != s.columns.size()) {
            *why = "admin response: a row of section '" + s.title + "' has " + std::to_string(cells.size()) +
                   " cells for " + std::to_string(s.columns.size()) + " columns";
            return false;
          }
          s.rows.push_back(std::move(cells));
        }
      out->sections.push_back(std::move(s));
    }
  return true;
}

}  // namespace mesob::wire
