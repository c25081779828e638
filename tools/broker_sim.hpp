// broker_sim: a broker as the engine meets it, over the real protocol (the C++ client):
// it authenticates as a registered gateway with the broker role and works the order
// instructions pushed to it (topic "orders"). After a latency drawn from an exponential
// distribution it fills an order at the current price (`price_of`, say a market feed's
// last price; none: at the order's limit) when that price is within the order's limit:
// in one fill, or (a share `partial_rate` of orders) in two to four parts, each after its
// own latency. A share `reject_rate` of orders is rejected instead. A market order whose
// price is past its limit is rejected (reason 2, "price moved"); a limit order waits and
// looks again after another latency. A cancel instruction (the order cancelled or
// expired in the engine) stops the order's fills still to come, confirmed with a reject
// (reason 3). Parts are whole lots (`lot_of`). A fill the engine refuses (outside the
// price band, not in whole lots, ...) ends the order: the simulator rejects what is left
// (reason 4, "fill refused"), so the order closes and its hold is released instead of
// waiting for fills that will not come. A new order is acknowledged at once (an `accepted` answer) unless
// `acknowledge` is off (the first fill or reject acknowledges it then); a `silent` broker
// takes instructions and never answers (a broker that hangs: the engine's answer timeout,
// breaker and fallback meet it).
//
// Fill ids count 1, 2, ... per order, above the instruction's sending number (attempt <<
// 32), so a fill sent again (say after a reconnect, when the engine pushes the open
// orders again and the simulator works them from where it stood) is a repeat the engine
// answers ok without counting it twice, and an order sent to it again after a cancel
// takes fills of new ids. A sending it finished or stopped is not worked again (a
// direct-mapped table of 2^20 keys remembers the recent ones: an entry survives N later
// ones with probability about e^(-N / 2^20)). One thread, one
// session; randomness from `seed`, so a run repeats. `mesob-gatewaysim --broker` runs one;
// tests and the trading benchmark run them in threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tools/sim_thread.hpp"
#include "wire/types.hpp"

namespace mesob::tools {

struct broker_sim_options {
  std::string host = "127.0.0.1";
  uint16_t port = 7400;
  std::string gateway;
  std::vector<uint8_t> secret;
  double latency_ms = 1.0;  // mean (exponential), per fill
  double latency_ms_max = 10'000;
  double partial_rate = 0;  // orders filled in 2 to 4 parts
  double reject_rate = 0;   // orders rejected (reason 1, "not accepted")
  bool acknowledge = true;  // an `accepted` answer for each new order
  bool silent = false;      // never answer anything
  uint32_t in_flight_max = 32;  // capped by the server's limit (Welcome)
  uint32_t batch_max = 8192;    // answers per request
  uint64_t seed = 1;
  // The price to fill instrument i at now (0: none yet: the order waits); unset: the
  // order's limit. Called on the simulator's thread.
  std::function<uint64_t(uint64_t instrument)> price_of;
  // Units per lot of instrument i (unset, or 0: 1): a part fill is whole lots.
  std::function<uint64_t(uint64_t instrument)> lot_of;
  // Called (on the simulator's thread) with each answer the engine replied to, and its
  // result.
  std::function<void(const wire::order_answer&, wire::result)> on_answered;
  // Called when an instruction arrives (before it is worked).
  std::function<void(const wire::order_instruction&)> on_instruction;
};

struct broker_sim_stats {
  uint64_t connects = 0;
  uint64_t instructions = 0;   // work instructions received (a re-sent one counts again)
  uint64_t cancels = 0;        // cancel instructions received
  uint64_t fills_sent = 0;
  uint64_t rejects_sent = 0;
  uint64_t accepts_sent = 0;
  uint64_t answers_ok = 0;     // answers the engine took (ok)
  uint64_t answers_refused = 0;
  uint64_t errors = 0;         // Error frames and failed connections
  uint64_t working = 0;        // orders with fills still to come
};

// start(), stop(), disconnect(pause) (answers not yet sent wait for the next session),
// connected(): sim_thread's.
class broker_sim : public sim_thread {
 public:
  explicit broker_sim(broker_sim_options o);
  ~broker_sim() override;
  [[nodiscard]] broker_sim_stats stats() const;

 private:
  void run() override;
  broker_sim_options opt_;
  struct counters;
  std::unique_ptr<counters> c_;
};

}  // namespace mesob::tools
