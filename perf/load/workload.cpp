#include "perf/load/workload.hpp"

#include "actors/portfolio.hpp"

#include <cstdio>
#include <vector>

namespace mesob::load {

std::string workload::check() const {
  if (accounts < 2) return "accounts: at least 2";
  if (accounts > 10'000'000) return "accounts: at most 10,000,000";
  if (first_account < 2 || first_account + accounts < first_account) return "first account id out of range";
  if (batch == 0 || batch > 8192) return "batch: 1 .. 8,192 transfers";
  if (two_phase && batch < 2) return "batch: at least 2 for the two-phase workload (pendings and posts)";
  if (two_phase && kind != item_kind::transfers) return "deposits, payouts, equb and orders are not two-phase";
  // The instrument's lot is 1, and an order may take at most portfolio::fills_max fills
  // (the engine refuses one of more lots: order_lots_past_fills).
  if (kind == item_kind::orders && amount_max > actors::portfolio::fills_max)
    return "amount max (units an order buys, lots of 1): at most " + std::to_string(actors::portfolio::fills_max);
  if (shards == 0 || shards > 32) return "shards: 1 .. 32";
  if (cross_pct > 100) return "cross: 0 .. 100 percent";
  if (hot_pct > 100) return "hot: 0 .. 100 percent";
  if (hot_pct > 0 && hot_accounts < 2) return "hot accounts: at least 2 per shard";
  if (amount_max == 0) return "amount max: at least 1";
  if (opening / 2 < amount_max) return "opening balance: must exceed twice the largest amount";
  // The funding account pays every opening balance: its balance must fit a signed 64-bit
  // figure (verification and the baselines read it so).
  if (opening > uint64_t(INT64_MAX) / accounts)
    return "accounts x opening balance exceeds a signed 64-bit balance (the funding account's): "
           "use fewer accounts or a smaller opening balance";
  if (accounts / shards < 2) return "accounts: at least 2 per shard";
  if (kind == item_kind::equb) {
    if (equb_seats < 2 || equb_seats > 1000) return "equb seats: 2 .. 1,000 per group";
    if (accounts < equb_seats) return "accounts: at least one group's seats";
    if (first_account + accounts + equb_groups() + 1 < first_account) return "first account id out of range";
    if (amount_max > (uint64_t(1) << 40)) return "amount max (the equb contribution): at most 2^40";
    if (opening / equb_seats < amount_max) return "opening balance: must cover every equb contribution";
    if (equb_fee() == 0) return "equb: seats x amount max must be at least 100 (setup waits for round 1's 1% fees)";
  }
  return {};
}

std::string workload::check_layout() const {
  if (kind == item_kind::equb || shards <= 1) return {};
  // Ids fall on shards by hash: two a shard on average is not enough, a transfer within a
  // shard needs two accounts there (account_layout::pick).
  std::vector<uint64_t> per(shards);
  for (uint64_t i = 0; i < accounts; ++i) ++per[actors::shard_of(first_account + i, shards)];
  for (uint32_t sh = 0; sh < shards; ++sh)
    if (per[sh] < 2)
      return "accounts: ids " + std::to_string(first_account) + ".." + std::to_string(first_account + accounts - 1) +
             " put " + std::to_string(per[sh]) + " on shard " + std::to_string(sh) +
             "; every shard needs at least 2 (use more accounts)";
  return {};
}

std::string workload::describe() const {
  char buf[320];
  if (kind == item_kind::equb) {
    std::snprintf(buf, sizeof buf,
                  "equb payments, batch %u, %llu groups of %u seats (%llu accounts), contribution %llu, %u shards",
                  batch, (unsigned long long)equb_groups(), equb_seats, (unsigned long long)accounts,
                  (unsigned long long)amount_max, shards);
    return buf;
  }
  std::snprintf(buf, sizeof buf,
                "%s, batch %u, %llu accounts, %u shards, %u%% cross-shard, %u%% hot (%u per shard), amounts 1..%llu",
                two_phase ? "two-phase transfers" : item_name(), batch, (unsigned long long)accounts, shards,
                cross_pct, hot_pct, hot_accounts, (unsigned long long)amount_max);
  return buf;
}

account_layout::account_layout(const workload& w) : by_shard_(w.shards) {
  for (uint64_t i = 0; i < w.accounts; ++i) {
    const uint64_t id = w.first_account + i;
    by_shard_[actors::shard_of(id, w.shards)].push_back(id);
  }
}

namespace {

// An account of `shard` drawn uniformly from the range, `n` candidates at a time: each a
// 32-bit half of a generator output scaled to the range (no account is drawn more than
// 1 + accounts / 2^32 times as often as another: 0.25% at the limit of 10 million), all
// hashed to their shards independently, so the CPU works them in parallel, and the first
// on `shard` taken: the first success of independent uniform draws is uniform over the
// shard's accounts. One branch a round, not one a draw (each draw's test, a coin toss
// with two shards, was a mispredicted branch every other time). 0 when `rounds` rounds
// find none.
template <int n>
uint64_t draw_on(const workload& w, splitmix& rng, uint32_t shard, int rounds) {
  static_assert(n % 2 == 0 && n <= 32);
  for (int round = 0; round < rounds; ++round) {
    uint64_t ids[n];
    for (int i = 0; i < n; i += 2) {
      const uint64_t r = rng();
      ids[i] = w.first_account + ((r & 0xffffffffull) * w.accounts >> 32);
      ids[i + 1] = w.first_account + ((r >> 32) * w.accounts >> 32);
    }
    uint32_t on = 0;
    for (int i = 0; i < n; ++i) on |= uint32_t(actors::shard_of(ids[i], w.shards) == shard) << i;
    if (on != 0) return ids[__builtin_ctz(on)];
  }
  return 0;
}

}  // namespace

std::pair<uint64_t, uint64_t> account_layout::pick(const workload& w, splitmix& rng) const {
  // The choices, from 16-bit parts of one output: the debit's shard, whether the pair
  // crosses, to which other shard, whether it is between hot accounts.
  const uint64_t r = rng();
  const auto part = [r](int k, uint32_t range) { return uint32_t((((r >> (16 * k)) & 0xffff) * range) >> 16); };
  const uint32_t sd = part(0, w.shards);
  uint32_t sc = sd;
  if (w.shards > 1 && part(1, 100) < w.cross_pct) sc = (sd + 1 + part(2, w.shards - 1)) % w.shards;
  const bool hot = w.hot_pct > 0 && part(3, 100) < w.hot_pct;
  const auto span = [&](const std::vector<uint64_t>& v) {
    return hot ? std::min<size_t>(v.size(), w.hot_accounts) : v.size();
  };
  // An account of `shard`, uniform among them. Not hot: ids drawn until one lives there
  // (draw_on: as many draws as shards on average), which reads no memory: reading the
  // shard's list missed the cache twice a transfer, half of the generator's CPU at the
  // engine's maximum with 2 shards (perf/RESULTS.md, twenty-fifth session). The list
  // serves the hot set, and any draw after draw_limit misses (with 32 shards, 13% of
  // them).
  const auto account_on = [&](uint32_t shard) {
    const auto& v = by_shard_[shard];
    if (!hot) {
      const uint64_t id = w.shards == 1   ? draw_on<2>(w, rng, shard, 1)
                          : w.shards == 2 ? draw_on<4>(w, rng, shard, draw_limit / 4)
                                          : draw_on<8>(w, rng, shard, draw_limit / 8);
      if (id != 0) return id;
    }
    return v[rng() % span(v)];
  };
  const uint64_t dr = account_on(sd);
  uint64_t cr = account_on(sc);
  while (cr == dr) cr = account_on(sc);
  return {dr, cr};
}

equb_item equb_item_of(const workload& w, uint64_t k) {
  const uint64_t per_round = w.equb_groups() * w.equb_seats, i = k - 1;
  return {(i % per_round) / w.equb_seats, uint32_t(2 + i / per_round), uint32_t(i % w.equb_seats)};
}

uint64_t equb_k(const workload& w, const equb_item& it) {
  return 1 + (uint64_t(it.round - 2) * w.equb_groups() + it.group) * w.equb_seats + it.seat;
}

wire::transfer equb_payment(const workload& w, const equb_item& it, wire::id128 id) {
  wire::transfer t;
  t.id = id;
  t.debit_account_id = w.first_account + it.group * w.equb_seats + it.seat;
  t.credit_account_id = w.group_id(it.group);
  t.amount = w.amount_max;
  t.currency = w.currency;
  t.flags = wire::transfer_flags::equb;
  t.user_data = it.round == 0 ? 0 : uint64_t(it.round) << 32 | it.seat;  // a join names no seat
  return t;
}

wire::transfer equb_join(const workload& w, uint64_t group, uint32_t seat) {
  // Ids apart from the items' ({k, run}): the wallet, and the run tagged "join".
  const uint64_t wallet = w.first_account + group * w.equb_seats + seat;
  return equb_payment(w, {group, 0, seat}, wire::id128{wallet, w.run ^ 0x6a6f696e6a6f696eull});
}

wire::transfer make_transfer(const workload& w, const account_layout& l, uint64_t k) {
  if (w.kind == item_kind::equb) return equb_payment(w, equb_item_of(w, k), wire::id128{k, w.run});
  splitmix rng{w.seed * 0x2545f4914f6cdd1dull ^ k};
  wire::transfer t;
  t.id = wire::id128{k, w.run};
  const auto [dr, cr] = l.pick(w, rng);
  t.debit_account_id = dr;
  t.credit_account_id = cr;
  t.amount = 1 + rng() % w.amount_max;
  t.currency = w.currency;
  t.code = 1;
  if (w.two_phase) t.flags = wire::transfer_flags::pending;
  if (w.kind == item_kind::deposits) {
    t.id = actors::gateways::deposit_transfer_id(w.gateway_number, splitmix{w.run}() + k);
    t.debit_account_id = 0;
  } else if (w.kind == item_kind::payouts) {
    // Payout ids with the top bit are the engine's own (payout_id_reserved).
    t.id = actors::payouts::hold_id((splitmix{w.run}() + k) & ~actors::payouts::engine_payout_bit);
    t.credit_account_id = 0;
    t.flags = wire::transfer_flags::pending;
    t.code = 1;  // the rail
  } else if (w.kind == item_kind::orders) {
    // Order ids: a run's base + k (any but 0).
    const uint64_t id = splitmix{w.run ^ 0x6f72646572730000ull}() + k;
    t.id = actors::trading::hold_id(id == 0 ? 1 : id, 0);
    t.credit_account_id = 0;  // the trading account of the wallet's shard
    t.amount *= workload::order_price;
    t.flags = wire::transfer_flags::pending;
    t.code = 0;
  }
  return t;
}

wire::order order_of(const workload& w, const wire::transfer& t) {
  wire::order o;
  o.id = t.id.lo;
  o.wallet = t.debit_account_id;
  o.instrument_id = workload::order_instrument;
  o.quantity = t.amount / workload::order_price;
  o.limit_ticks = workload::order_price;
  o.currency = w.currency;
  o.side = wire::order_side::buy;
  o.type = wire::order_type::market;
  return o;
}

wire::payout payout_of(const wire::transfer& t) {
  wire::payout p;
  p.id = t.id.lo;
  p.wallet = t.debit_account_id;
  p.amount = t.amount;
  p.destination = 251900000000 + t.id.lo % 100'000'000;
  p.currency = t.currency;
  p.rail = uint8_t(t.code);
  return p;
}

wire::deposit deposit_of(const wire::transfer& t) {
  wire::deposit d;
  d.reference = t.id.lo;
  d.wallet = t.credit_account_id;
  d.amount = t.amount;
  d.currency = t.currency;
  d.code = 1;
  return d;
}

wire::transfer make_post(const workload& w, uint64_t k) {
  wire::transfer t;
  t.id = wire::id128{post_tag | k, w.run};
  t.pending_id = wire::id128{k, w.run};
  t.flags = wire::transfer_flags::post_pending;
  t.code = 2;
  return t;
}

}  // namespace mesob::load
