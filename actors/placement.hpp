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

}  // namespace mesob::actors
