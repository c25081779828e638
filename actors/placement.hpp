// placement: which shard an account lives on. A pure function of the account id and the
// shard count, so the sequencer, every shard and recovery agree without asking anyone;
// a different shard count at the next start places the accounts afresh.
#pragma once

#include <cstdint>

#include "actors/flat_map.hpp"

namespace mesob::actors {

[[nodiscard]] inline uint32_t shard_of(uint64_t account_id, uint32_t shards) {
  return uint32_t((static_cast<unsigned __int128>(mix64(account_id)) * shards) >> 64);
}

// The first of `slots` per-shard account ids (account_of(k), k = 0, 1, ...) that lives on
// `shard` of `shards`: each shard's own account of a kind (payout desks, trading). With
// 32 shards or fewer, 4,096 slots miss one with probability below 2^-180; the last slot
// stands in.
template <class F>
[[nodiscard]] uint64_t slot_account_for(F&& account_of, uint32_t slots, uint32_t shard, uint32_t shards) {
  for (uint32_t k = 0; k + 1 < slots; ++k)
    if (shard_of(account_of(k), shards) == shard) return account_of(k);
  return account_of(slots - 1);
}

}  // namespace mesob::actors
