// The workloads of mesob-load: transfers (plain or two-phase), shared by every target
// (Mesob, PostgreSQL, Redis) so that each system runs exactly the same accounts, amounts
// and batches; deposits through a payment gateway (Mesob only): item k credits the
// account a transfer k would credit, from the gateway's settlement account; and payouts
// (Mesob only): item k pays transfer k's amount out of the account transfer k would
// debit, through a gateway (mesob-load answers as that gateway); and equb rounds (Mesob
// only): groups of `equb_seats` wallets (setup makes, joins and starts them; round 1 pays
// out at the start), whose members pay rounds 2 .. seats, each round paying out to its
// seat when the last member paid. Item k is the payment of (round, group, seat); each
// group's payments travel on one connection (group g on connection g mod N), so a
// round's payments reach the engine before the next round's. Orders (Mesob only): item k
// is a market buy by the account transfer k would debit of transfer k's amount in units
// of one instrument (setup lists it at order_price ticks of 1 minor unit and makes every
// account a verified customer), held as transfer k: {order id, the trading hold id},
// pending, of amount x order_price; a broker (mesob-load answers as it) fills it at
// order_price in full, so the hold is posted whole.
//
// Transfer k of a run is a pure function of (seed, k): its accounts and amount are drawn
// from a generator seeded with (seed, k), and its id is (run, k). Verification therefore
// rebuilds any acknowledged transfer from its id alone, with no per-transfer memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "actors/gateway_registry.hpp"
#include "actors/payout_desk.hpp"
#include "actors/shard.hpp"
#include "actors/trading.hpp"
#include "wire/types.hpp"

namespace mesob::load {

enum class item_kind : uint8_t { transfers = 0, deposits = 1, payouts = 2, equb = 3, orders = 4 };

struct workload {
  item_kind kind = item_kind::transfers;
  uint32_t gateway_number = 0;          // deposits: the depositing gateway's (from its Welcome)
  uint64_t accounts = 100'000;          // the load's accounts
  uint64_t first_account = 1ull << 40;  // their ids: first_account .. first_account + accounts - 1
  uint64_t opening = 1'000'000'000'000;  // minor units each account starts with
  uint64_t amount_max = 1'000;          // amounts are 1 .. amount_max
  uint32_t batch = 8192;                // transfers per request
  uint32_t shards = 2;                  // the target's shard count (for the crossing share)
  uint32_t cross_pct = 10;              // share of transfers whose accounts are on two shards
  uint32_t hot_pct = 0;                 // share of transfers between hot accounts only
  uint32_t hot_accounts = 16;           // hot accounts per shard
  bool two_phase = false;               // pending transfers, each posted by a later request
  uint64_t seed = 1;
  uint64_t run = 0;                     // id128.hi of this run's transfers (0: from seed and clock)
  wire::currency_code currency = wire::currency("ETB");
  uint32_t equb_seats = 10;             // equb: seats per group (each contribution is amount_max)
  static constexpr uint32_t equb_fee_bp = 100;  // equb: 1% of each payout to the fee account
  // Orders: the instrument (a fund, tick 1 minor unit, lot 1) and its price in ticks.
  static constexpr uint64_t order_instrument = 0x4C4F4144;  // "LOAD"
  static constexpr uint64_t order_price = 100;
  // Items whose transfer is a hold that the target's answer (a gateway's, a broker's)
  // posts or voids later: payouts and orders.
  [[nodiscard]] bool held() const { return kind == item_kind::payouts || kind == item_kind::orders; }

  // Equb: groups (accounts / seats; wallets past the last whole group stay idle), their
  // ids (escrow accounts, after the load's accounts), the fee account after them.
  [[nodiscard]] uint64_t equb_groups() const { return kind == item_kind::equb ? accounts / equb_seats : 0; }
  [[nodiscard]] uint64_t group_id(uint64_t g) const { return first_account + accounts + g; }
  [[nodiscard]] uint64_t fee_account() const { return first_account + accounts + equb_groups(); }
  [[nodiscard]] uint64_t equb_pot() const { return uint64_t(equb_seats) * amount_max; }
  [[nodiscard]] uint64_t equb_fee() const { return equb_pot() * equb_fee_bp / 10'000; }
  // Accounts whose balances verification checks (index i: account first_account + i):
  // the load's, and with equb the escrows and the fee account.
  [[nodiscard]] uint64_t tracked_accounts() const {
    return kind == item_kind::equb ? accounts + equb_groups() + 1 : accounts;
  }
  // Items the workload has (0: no end): equb, every group's rounds 2 .. seats.
  [[nodiscard]] uint64_t items_total() const {
    return kind == item_kind::equb ? equb_groups() * equb_seats * (equb_seats - 1) : 0;
  }
  // The account that funds every load account's opening balance; it has no balance limit.
  [[nodiscard]] uint64_t funding_account() const { return first_account - 1; }
  // Checks the options; empty when they are valid, else what is wrong.
  [[nodiscard]] std::string check() const;
  // Checks that the generator can pick pairs on every shard (a load run's, not set-up's
  // concern): each shard holds at least two of the accounts. Empty when so.
  [[nodiscard]] std::string check_layout() const;
  [[nodiscard]] std::string describe() const;  // one line for reports
  // What an item is called in reports: transfers, deposits or payouts (JSON keys keep
  // "transfers" whatever the kind).
  [[nodiscard]] const char* item_name() const {
    return kind == item_kind::deposits ? "deposits"
           : kind == item_kind::payouts ? "payouts"
           : kind == item_kind::equb    ? "payments"
           : kind == item_kind::orders  ? "orders"
                                        : "transfers";
  }
};

// splitmix64: a tiny generator whose every state is a good seed.
struct splitmix {
  uint64_t s;
  uint64_t operator()() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

// Account ids grouped by the shard that holds them (actors::shard_of), for choosing
// pairs with a given share crossing shards and a hot set per shard.
class account_layout {
 public:
  explicit account_layout(const workload& w);
  [[nodiscard]] std::pair<uint64_t, uint64_t> pick(const workload& w, splitmix& rng) const;
  // Draws for an account of a shard before its list is read (pick).
  static constexpr int draw_limit = 64;

 private:
  std::vector<std::vector<uint64_t>> by_shard_;
};

// Id tags in id128.lo's top byte: fresh transfers and pending transfers carry their
// index k; the post of pending k carries post_tag | k.
constexpr uint64_t post_tag = 1ull << 63;

// Transfer k of the run (a plain transfer, or a pending one when two_phase), as the
// target records it. For deposits: the transfer deposit k becomes (its id from the
// gateway's number and the deposit's reference; debit_account_id 0: the gateway's
// settlement account, which the load does not know). For payouts: the hold payout k
// becomes (id {payout id, hold_hi}, pending; credit_account_id 0: a desk's payout
// account).
[[nodiscard]] wire::transfer make_transfer(const workload& w, const account_layout& l, uint64_t k);
// The deposit that becomes transfer t (a deposit workload's make_transfer).
[[nodiscard]] wire::deposit deposit_of(const wire::transfer& t);
// The payout whose hold is transfer t (a payout workload's make_transfer; rail 1).
[[nodiscard]] wire::payout payout_of(const wire::transfer& t);
// The order whose hold is transfer t (an orders workload's make_transfer).
[[nodiscard]] wire::order order_of(const workload& w, const wire::transfer& t);
// The post of pending transfer k (two-phase workload).
[[nodiscard]] wire::transfer make_post(const workload& w, uint64_t k);

// Equb: item k (1 .. items_total) is the payment of `round` (2 .. seats) by `seat` of
// group `group`; the join of (group, seat) is a payment of round 0 with its own id.
struct equb_item {
  uint64_t group = 0;
  uint32_t round = 0;
  uint32_t seat = 0;
};
[[nodiscard]] equb_item equb_item_of(const workload& w, uint64_t k);
[[nodiscard]] uint64_t equb_k(const workload& w, const equb_item& it);
[[nodiscard]] wire::transfer equb_payment(const workload& w, const equb_item& it, wire::id128 id);
[[nodiscard]] wire::transfer equb_join(const workload& w, uint64_t group, uint32_t seat);

}  // namespace mesob::load
