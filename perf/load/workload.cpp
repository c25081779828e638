#include "perf/load/workload.hpp"

#include <cstdio>

namespace mesob::load {

std::string workload::check() const {
  if (accounts < 2) return "accounts: at least 2";
  if (accounts > 10'000'000) return "accounts: at most 10,000,000";
  if (first_account < 2 || first_account + accounts < first_account) return "first account id out of range";
  if (batch == 0 || batch > 8192) return "batch: 1 .. 8,192 transfers";
  if (two_phase && batch < 2) return "batch: at least 2 for the two-phase workload (pendings and posts)";
  if (two_phase && kind != item_kind::transfers) return "deposits and payouts are not two-phase";
  if (shards == 0 || shards > 32) return "shards: 1 .. 32";
  if (cross_pct > 100) return "cross: 0 .. 100 percent";
  if (hot_pct > 100) return "hot: 0 .. 100 percent";
  if (hot_pct > 0 && hot_accounts < 2) return "hot accounts: at least 2 per shard";
  if (amount_max == 0) return "amount max: at least 1";
  if (opening / 2 < amount_max) return "opening balance: must exceed twice the largest amount";
  if (accounts / shards < 2) return "accounts: at least 2 per shard";
  return {};
}

std::string workload::describe() const {
  char buf[320];
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
  const auto& a = by_shard_[sd];
  const auto& b = by_shard_[sc];
  const auto span = [&](const std::vector<uint64_t>& v) {
    return hot ? std::min<size_t>(v.size(), w.hot_accounts) : v.size();
  };
  const uint64_t dr = a[rng() % span(a)];
  uint64_t cr = b[rng() % span(b)];
  while (cr == dr) cr = b[rng() % span(b)];
  return {dr, cr};
}

wire::transfer make_transfer(const workload& w, const account_layout& l, uint64_t k) {
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
    t.id = actors::payouts::hold_id(splitmix{w.run}() + k);
    t.credit_account_id = 0;
    t.flags = wire::transfer_flags::pending;
    t.code = 1;  // the rail
  }
  return t;
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
