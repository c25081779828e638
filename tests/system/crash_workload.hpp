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

}  // namespace mesob::test::crash
