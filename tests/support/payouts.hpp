// Payout values the payout tests (the desks alone and in the engine) share.
#pragma once

#include <cstdint>

#include "wire/types.hpp"

namespace mesob::test {

// A gateway's answer to attempt `attempt` of an ETB payout (`gateway` 0: the server sets it).
inline wire::payout_answer etb_payout_answer(uint64_t payout_id, uint32_t attempt, uint64_t amount,
                                             wire::payout_outcome outcome = wire::payout_outcome::settled,
                                             uint32_t gateway = 0) {
  wire::payout_answer a{};
  a.payout_id = payout_id;
  a.attempt = attempt;
  a.amount = amount;
  a.currency = wire::currency("ETB");
  a.outcome = outcome;
  a.gateway = gateway;
  return a;
}

}  // namespace mesob::test
