// The crash test's workload, shared by the driver (child) and the checker (parent):
// every transfer's content is a pure function of its id, so the checker can rebuild
// any transfer the driver may have submitted.
#pragma once

#include <cstdint>

#include "actors/flat_map.hpp"
#include "wire/types.hpp"

namespace mesob::test::crash {

constexpr uint64_t accounts = 512;
constexpr uint32_t workers = 4;

// id.lo = run << 40 | worker << 32 | seq
inline wire::id128 transfer_id(uint64_t run, uint64_t worker, uint64_t seq) {
  return {run << 40 | worker << 32 | seq, 0};
}

inline wire::transfer transfer_for(const wire::id128& id) {
  const uint64_t h = actors::mix64(id.lo);
  wire::transfer t;
  t.id = id;
  t.debit_account_id = 1 + h % accounts;
  t.credit_account_id = 1 + (h >> 20) % accounts;
  if (t.credit_account_id == t.debit_account_id)
    t.credit_account_id = 1 + t.credit_account_id % accounts;
  t.amount = 1 + (h >> 40) % 1000;
  t.currency = wire::currency("ETB");
  // Every 8th transfer opens a two-transfer linked chain with the next one.
  if ((id.lo & 0xffffffff) % 8 == 0) t.flags |= wire::transfer_flags::linked;
  return t;
}

// The KYC workload (crash_driver ... kyc): the same transfers, with the even accounts
// customers of one tier whose limits the load runs into, so refusals by the day's
// outflow, single transfers and balances come and go with every kill.
namespace kyc {
constexpr uint8_t tier = 1;
constexpr uint64_t single_max = 900;
// Reached after about 110 transfers out of an account (about 60,000 transfers in all):
// at 150,000 a slow run under ctest -j2 (157,000 transfers in ten runs) never got there.
constexpr uint64_t daily_outflow_max = 50'000;
constexpr uint64_t balance_max = 200'000;
[[nodiscard]] inline bool tiered(uint64_t account) { return account % 2 == 0; }
}  // namespace kyc

}  // namespace mesob::test::crash

// The equb workload (crash_driver ... equb): each run makes `groups` new groups of
// `seats` seats (groups (run - 1) * groups .. run * groups - 1), wallets of their own,
// paid round after round by the driver's workers, so every kill lands in groups under
// way. Each payment's
// id is a pure function of (group, round, seat), so a payment resent after a crash is
// a repeat, as a real client's idempotency key makes it.
namespace mesob::test::crash::equb {

constexpr uint64_t groups = 1024;  // per run
constexpr uint32_t seats = 6;
constexpr uint64_t contribution = 1000;
constexpr uint32_t fee_bp = 100;
constexpr uint64_t starting = 1'000'000;
constexpr uint64_t first_wallet = 10'000;   // wallets first_wallet .. + groups * seats - 1
constexpr uint64_t first_group = 100'000;   // groups first_group .. + groups - 1
constexpr uint64_t fee_account = 9'000;
constexpr uint64_t funding_account = 9'001;

constexpr uint64_t settlement_account = 9'002;  // the payout gateway's
// In every second group (the lottery ones) the last seat takes its payout on through a
// payment gateway (registered by the driver; no session ever answers, so each such
// payout stays held by its desk): after any crash it must be held exactly once.
constexpr uint32_t routed_seat = seats - 1;
inline bool routed(uint64_t g) { return g % 2 == 1; }
inline uint64_t destination(uint64_t g) { return 251'900'000'000ull + g; }

inline uint64_t group_id(uint64_t g) { return first_group + g; }
inline uint64_t wallet(uint64_t g, uint32_t seat) { return first_wallet + g * seats + seat; }
// round 0 is the join.
inline wire::id128 payment_id(uint64_t g, uint32_t round, uint32_t seat) {
  return {g << 20 | uint64_t(round) << 10 | seat, 0xE0B0};
}
inline wire::transfer payment(uint64_t g, uint32_t round, uint32_t seat) {
  wire::transfer t;
  t.id = payment_id(g, round, seat);
  t.debit_account_id = wallet(g, seat);
  t.credit_account_id = group_id(g);
  t.amount = contribution;
  t.currency = wire::currency("ETB");
  t.flags = wire::transfer_flags::equb;
  t.user_data = round == 0 ? 0 : uint64_t(round) << 32 | seat;  // a join names no seat
  return t;
}

}  // namespace mesob::test::crash::equb

// The orders workload (crash_driver ... orders): customers place market buys, a broker
// (the driver's own thread, answering the instructions the engine pushes) fills each in
// two parts or rejects it, so every kill lands with orders placed, partly filled, and
// settlements in flight. Everything about an order is a pure function of its id.
namespace mesob::test::crash::orders {

constexpr uint64_t wallets = 256;
constexpr uint64_t first_wallet = 20'000;  // wallets first_wallet .. + wallets - 1
constexpr uint64_t bank = 9'100;           // funds the wallets (may go below zero)
constexpr uint64_t settlement = 9'101;     // the broker's settlement account
constexpr uint64_t instruments = 8;        // ids 1 .. 8, tick 1, lot 1
constexpr uint64_t price = 100, limit = 150;
constexpr uint64_t starting = 1'000'000'000;
constexpr uint32_t batch_max = 32;  // orders per request (one request in flight per worker)
constexpr const char* broker = "crash-broker";

// id = run << 40 | worker << 32 | seq (seq from 1)
inline uint64_t order_id(uint64_t run, uint64_t worker, uint64_t seq) { return run << 40 | worker << 32 | seq; }
inline wire::order order_for(uint64_t id) {
  const uint64_t h = actors::mix64(id);
  wire::order o;
  o.id = id;
  o.wallet = first_wallet + h % wallets;
  o.instrument_id = 1 + (h >> 16) % instruments;
  o.quantity = 2 + (h >> 24) % 20;
  o.limit_ticks = limit;
  o.currency = wire::currency("ETB");
  o.side = wire::order_side::buy;
  o.type = wire::order_type::market;
  return o;
}
inline bool rejected(uint64_t id) { return actors::mix64(id ^ 0x5eed) % 10 == 0; }
// Fill k (1 or 2): half the order, then the rest, at the price.
inline uint64_t fill_quantity(uint64_t id, uint64_t k) {
  const uint64_t q = order_for(id).quantity;
  return k == 1 ? q / 2 : q - q / 2;
}

}  // namespace mesob::test::crash::orders
