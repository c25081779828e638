// portfolio: a customer's positions and orders, and the rules that decide an order and
// apply its fills. Pure functions over the portfolio's state and what the order reads
// (its customer, the policy, the instrument as of the order's time, the wallet's money;
// the open orders' lots, counted as they opened):
// the portfolio actor on the wallet's shard runs them in log order, so replay decides
// the same.
//
// An order (wire::order) buys or sells `quantity` units (whole lots) of an instrument,
// either at market with a protective price limit (`limit_ticks`: a buy fills at no more,
// a sell at no less) or as a limit order at `limit_ticks`. The checks, in order (the
// first failing is the result):
//   1. fields: ids not zero, side and type known, expires_s at most a year, nothing in
//      the reserved fields, quantity and limit not zero (id_must_not_be_zero,
//      order_invalid, reserved_field, amount_must_not_be_zero, price_invalid);
//   2. the instrument: listed (instrument_not_found), the order's currency its currency
//      (wrong_currency), the quantity whole lots (lot_size_invalid), the notional
//      (quantity x limit x tick) at most 2^53 minor units (amounts_too_large); then the
//      order id new to the portfolio (exists_with_different_fields), and at most
//      fills_max lots (order_lots_past_fills, rules version 13: a lot a fill);
//   3. the customer: a KYC record (customer_not_found), verified (kyc_not_verified); a
//      buy: a risk profile the policy defines (risk_profile_undefined) that allows the
//      asset class (risk_profile_forbids). A sell is not held to the profile (rules
//      version 11; before, it was): the profile limits what is bought, and a customer
//      moved to a stricter one sells what it no longer allows;
//   4. the market at the order's time: not halted by hand or on a move
//      (instrument_halted), a price not stale (price_stale); a market order whose limit
//      the last price is already past (a buy below it, a sell above it) is refused
//      (price_limit_exceeded); a limit order may wait;
//   5. room: at most open_orders_max open orders and positions_max positions
//      (too_many_orders); the open orders' lots with this order's, each order's counted
//      up to fills_max, at most open_fills_max (open_lots_past_fills, rules version 22:
//      the fills they may take); a buy: the position it could reach (held, plus open buys, plus
//      this order, at the limit) at most the profile's position_max
//      (exceeds_position_limit), and the notional at the limit available in the wallet
//      (insufficient_cash: what the ledger would refuse as exceeds_credits); a sell: the
//      quantity at most what is held and not already reserved by open sells
//      (insufficient_position).
// A position that is empty (nothing held, nothing open on it) is dropped; closed orders
// are kept for look-ups only (until forget_closed), never read by the checks, so a
// decision does not depend on which of them are still kept.
// An accepted buy holds its notional in the wallet (a pending transfer); an accepted sell
// reserves its quantity. A fill (quantity and price, price within the limit, quantity at
// most what is open) posts its cost out of the hold (a buy) or credits the proceeds (a
// sell), and moves the position: a buy adds quantity and cost; a sell removes quantity
// and the cost basis in proportion (rounded down, the remainder staying with what is
// left, so nothing is left of a position sold to zero). An order fully filled, rejected
// by the broker, cancelled or expired releases what it still holds.
//
// Ownership: one portfolio per customer wallet, on the wallet's shard; touched only by
// that shard's thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "actors/customers.hpp"
#include "actors/market.hpp"
#include "actors/rules_version.hpp"
#include "wire/types.hpp"

namespace mesob::actors::portfolio {

constexpr uint32_t open_orders_max = 1024;  // per portfolio
constexpr uint32_t positions_max = 1024;    // per portfolio
constexpr uint32_t closed_kept_max = 4096;  // closed orders kept until forget_closed
// ... and their fills at most this many (the newest closed order's whatever its count):
// a wallet filled a lot at a time would otherwise keep 4,096 x 1,024 fills (128 MiB) in
// its row, written whole at each snapshot it changed before.
constexpr uint32_t closed_fills_kept_max = 65'536;
constexpr uint32_t fills_max = 1024;        // fills one order may take (too_many_fills)
// ... and the open orders together at most this many lots, each counted up to fills_max
// (open_lots_past_fills, rules version 22): a broker filling them a lot at a time puts at
// most this many fills in the row. Before, 1,024 open orders of 1,024 lots could hold a
// million fills (32 MiB), written whole at each snapshot the row changed before.
constexpr uint32_t open_fills_max = 65'536;
constexpr uint32_t attempts_kept_max = 64;  // brokers an order is sent to over its life
constexpr uint32_t expires_s_max = 366 * 86'400;  // an order's life at most (order_invalid)

struct position {
  uint64_t quantity = 0;
  uint64_t reserved = 0;   // units open sells may still deliver
  uint64_t cost = 0;       // cost basis of `quantity`, minor units
  uint64_t buying = 0;     // units open buys may still add
};

enum class order_state : uint8_t { open = 1, filled = 2, rejected = 3, cancelled = 4, expired = 5 };

struct fill_record {
  uint64_t id = 0, quantity = 0, price_ticks = 0;
  uint32_t gateway = 0;  // the broker that made it (0: kept by a build before it was)
};

struct order_entry {
  wire::order o;
  uint64_t tick = 0;    // the instrument's, when the order was taken
  uint64_t filled = 0;  // units
  uint64_t held = 0;    // a buy: minor units still held for it
  uint64_t paid = 0;    // a buy: spent on fills; a sell: received
  order_state st = order_state::open;
  // Kept for the engine (actors/trading.hpp), not read by the rules here:
  uint64_t placed_at = 0;
  uint64_t expires_at = 0;  // engine time (0: never)
  uint32_t broker = 0;      // the gateway number it was sent to (0: none yet)
  uint16_t reason = 0;      // rejected: the broker's reason code
  bool settle_refused = false;  // the ledger refused one of its settlements (kept until an operator sees it)
  // Its settlement chains emitted and not yet executed (the engine's count, not in the
  // book's bytes: trading::table counts it again from the row's chains): kept until
  // their outcome, which may mark it settle_refused.
  uint32_t chains_owed = 0;
  // Open, but ending: cancelled or expired here (or rejected by its broker while another
  // may still have it), its brokers told; it closes as `ending` when the broker confirms
  // (a reject) or the grace after `ending_at` passes (trading.hpp), and takes the fills
  // the brokers made meanwhile. `ending_at` is when the brokers were last told;
  // `ending_since` when it began ending.
  order_state ending = order_state::open;
  uint64_t ending_at = 0;
  uint64_t ending_since = 0;
  std::vector<fill_record> fills;  // in the order taken (at most fills_max)
  // Its lots, up to fills_max: the fills it may take (open_lots_past_fills). Not in the
  // row's bytes: set by accept and, after a load, by book::count_lots.
  uint32_t lots = 0;
  // Its way to a broker (trading.hpp): `broker` is the one it is with (sent or working),
  // 0 while it waits or is a dead letter.
  uint8_t routing = 0;          // trading::route_state
  uint8_t dead = 0;             // a dead letter: trading::dead_reason
  uint64_t route_due = 0;       // sent: the answer deadline; waiting: the next look (0: none)
  uint64_t wait_since = 0;      // waiting for a broker since (0: not)
  uint32_t routing_base = 0;    // attempts before the current routing (operators' retries)
  std::vector<uint32_t> attempts;  // the brokers it was sent to, in order (attempts_kept_max at most)
  std::vector<uint32_t> given_up;  // brokers this routing gave up on
  [[nodiscard]] uint64_t open_quantity() const { return o.quantity - filled; }
};

// What an order check reads besides the portfolio.
struct order_inputs {
  const customers::customer* customer = nullptr;
  const customers::policy* policy = nullptr;
  const market::instrument* instrument = nullptr;
  uint64_t t = 0;                 // the order's engine time
  uint64_t wallet_available = 0;  // credits posted less debits posted and pending
  uint16_t rules = rules_newest;  // the batch's (rules_portfolio_close_and_sells: sells past the profile)
};

class book {
 public:
  [[nodiscard]] const position* find(uint64_t instrument) const;
  template <class F>
  void for_each_position(F&& f) const {
    for (const auto& [id, p] : positions_) f(id, p);
  }
  [[nodiscard]] const order_entry* order(uint64_t id) const;
  [[nodiscard]] size_t open_orders() const { return open_; }
  [[nodiscard]] order_entry* order_mut(uint64_t id);
  template <class F>
  void for_each_order(F&& f) const {
    for (const auto& [id, e] : orders_) f(e);
  }
  [[nodiscard]] bool empty() const { return orders_.empty() && positions_.empty(); }
  // Units held, or an open order (which keeps its instrument's position entry).
  [[nodiscard]] bool holds_anything() const { return !positions_.empty() || open_ != 0; }
  [[nodiscard]] size_t memory_bytes() const;

  // The checks above; ok or the first failing. Changes nothing.
  [[nodiscard]] wire::result check(const wire::order& o, const order_inputs& in) const;
  // Takes an order `check` accepted: a buy holds `notional(o, in)`, a sell reserves.
  // `lot`: its instrument's (1 counts its units as lots: a bound).
  void accept(const wire::order& o, uint64_t tick, uint64_t lot = 1);
  // The open orders' lots, up to fills_max each (open_lots_past_fills reads them).
  [[nodiscard]] uint64_t open_lots() const { return open_lots_; }
  // After decode, which counts each open order's units as its lots (a bound): counts
  // them by their instruments' lots (an instrument not listed keeps the bound).
  void count_lots(const market::book& market);
  // A fill of an open order: `quantity` units at `price_ticks`. Returns the minor units
  // it moves (a buy: posted out of its hold; a sell: credited), or 0 with *r set when
  // refused (order_not_open; fill_invalid: zero, over the open quantity, past the limit,
  // or a sell's proceeds past 2^53 minor units). A buy filled in full below its limit has
  // hold left over: *released (to release).
  // The fill is kept under `fill_id` (0: the next number).
  uint64_t fill(uint64_t order_id, uint64_t quantity, uint64_t price_ticks, wire::result* r, uint64_t* released,
                uint64_t fill_id = 0, uint32_t gateway = 0);
  // Ends an open order (a broker's reject, a cancel, an expiry): returns what its hold
  // still holds (a buy; to release), and frees what a sell reserved.
  uint64_t close(uint64_t order_id, order_state why, wire::result* r);
  // Drops closed orders (their outcomes live on in the ledger and the events; the engine
  // calls it once a snapshot holds them). At most closed_kept_max are kept meanwhile,
  // with at most closed_fills_kept_max fills among them: the
  // oldest go first.
  void forget_closed();

  [[nodiscard]] std::vector<uint8_t> encode() const;
  static bool decode(std::span<const uint8_t> bytes, book* out, std::string* why);

 private:
  std::map<uint64_t, position> positions_;  // by instrument
  std::map<uint64_t, order_entry> orders_;  // by order id: open, and closed until forget_closed()
  std::vector<uint64_t> closed_;             // closed order ids, oldest first
  size_t closed_fills_ = 0;                  // fills of the closed orders kept
  size_t open_ = 0;
  uint64_t open_lots_ = 0;  // the open orders' order_entry::lots
  void closed(order_entry& e, order_state why);
  void drop_if_empty(uint64_t instrument);
};

// Steps 1 and 2 of the checks (the order's fields and its instrument; null: unknown),
// which read no portfolio: the sequencer's too, before it makes the order's hold.
[[nodiscard]] wire::result check_order(const wire::order& o, const market::instrument* ins);

// Rebalancing: the orders that bring a portfolio back within `drift_bp` of its profile's
// model. The portfolio's value is the wallet's available cash plus every position at the
// reference price (quantity x reference x tick, instruments of the wallet's currency),
// plus what its open buys of those instruments still hold (out of the available cash;
// before, a rebalance while a buy was open sold lines at their targets toward a share
// of too little, and then valued a resting bid's units at the reference price). Each
// instrument of the model or held (target weight 0 when not in the model) whose value is
// more than drift_bp of the portfolio's value away from its target gets a market order
// for the difference, in whole lots (a sell at most the units not reserved), with a
// protective limit `slippage_bp` past the last price. Instruments with an order open,
// without a price, halted or stale are left as they are. Sells come first (in instrument
// order), then buys; ids count up from first_id. Each is then checked like any order
// (a buy may find the cash its sells will bring not yet there: insufficient_cash).
// The plan keeps within what those checks will allow: no buy of a class the profile
// forbids; the buys' holds within the cash
// and the day's outflow left, each within the profile's position limit and the tier's
// single-transfer limit; the sells within the room the tier's balance limit leaves,
// each counted at the highest price it may fill at (rules_sell_balance_at_reference).
struct rebalance_inputs {
  const std::map<uint64_t, uint32_t>* model = nullptr;  // instrument -> weight (bp)
  const market::book* market = nullptr;
  wire::currency_code currency = 0;  // the wallet's
  uint64_t cash = 0;                 // the wallet's available money
  uint64_t position_max = UINT64_MAX;  // the customer's profile's, as an order is checked against it
  // The asset classes the profile lets the customer buy (bit cls - 1): a line of another
  // class is not bought (risk_profile_forbids), though it counts in the value.
  uint8_t classes = 0xFF;  // (the shard passes the profile's; none set: 0)
  // The wallet's tier's limits, as an order's hold is checked against them (no tier: none).
  uint64_t single_max = UINT64_MAX;    // a buy's hold
  uint64_t outflow_left = UINT64_MAX;  // the buys' holds together: the day's outflow left
  uint64_t balance_room = UINT64_MAX;  // the sells' credits together: the balance limit's room
  // The highest price (ticks) a sell of the instrument may fill at now (0: none known;
  // a sell then counts at its limit).
  std::function<uint64_t(const market::instrument&)> sell_top;
  uint64_t t = 0;                    // engine time (halts)
  uint32_t drift_bp = 0;
  uint32_t slippage_bp = 0;
  uint32_t expires_s = 0;
};
constexpr uint32_t rebalance_orders_max = 128;  // ids first_id .. first_id + 127 at most
[[nodiscard]] std::vector<wire::order> plan_rebalance(const book& b, uint64_t wallet, uint64_t first_id,
                                                      const rebalance_inputs& in);

// quantity x limit x tick, or UINT64_MAX past 2^53.
[[nodiscard]] uint64_t notional(uint64_t quantity, uint64_t price_ticks, uint64_t tick);

}  // namespace mesob::actors::portfolio
