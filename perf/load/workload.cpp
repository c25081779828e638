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

std::pair<uint64_t, uint64_t> account_layout::pick(const workload& w, splitmix& rng) const {
  const uint32_t sd = uint32_t(rng() % w.shards);
  uint32_t sc = sd;
  if (w.shards > 1 && rng() % 100 < w.cross_pct) sc = (sd + 1 + uint32_t(rng() % (w.shards - 1))) % w.shards;
  const bool hot = w.hot_pct > 0 && rng() % 100 < w.hot_pct;
  const auto span = [&](const std::vector<uint64_t>& v) {
    return hot ? std::min<size_t>(v.size(), w.hot_accounts) : v.size();
  };
  // An account of `shard`, uniform among them. Not hot: ids drawn until one lives there
  // (as many draws as shards on average), which reads no memory: reading the shard's
  // list missed the cache twice a transfer, half of the generator's CPU at the engine's
  // maximum with 2 shards (perf/RESULTS.md, twenty-fifth session). The list serves the
  // hot set, and any draw after draw_limit misses (with 32 shards, 13% of them).
  const auto account_on = [&](uint32_t shard) {
    const auto& v = by_shard_[shard];
    if (!hot)
      for (int i = 0; i < draw_limit; ++i) {
        const uint64_t id = w.first_account + uint64_t((static_cast<unsigned __int128>(rng()) * w.accounts) >> 64);
        if (actors::shard_of(id, w.shards) == shard) return id;
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
