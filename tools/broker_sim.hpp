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
// (reason 3).
//
// Fill ids count 1, 2, ... per order, so a fill sent again (say after a reconnect, when
// the engine pushes the open orders again and the simulator works them from where it
// stood) is a repeat the engine answers ok without counting it twice. One thread, one
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
  uint32_t in_flight_max = 32;  // capped by the server's limit (Welcome)
  uint32_t batch_max = 8192;    // answers per request
  uint64_t seed = 1;
  // The price to fill instrument i at now (0: none yet: the order waits); unset: the
  // order's limit. Called on the simulator's thread.
  std::function<uint64_t(uint64_t instrument)> price_of;
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
  uint64_t answers_ok = 0;     // answers the engine took (ok)
  uint64_t answers_refused = 0;
  uint64_t errors = 0;         // Error frames and failed connections
  uint64_t working = 0;        // orders with fills still to come
};

class broker_sim {
 public:
  explicit broker_sim(broker_sim_options o);
  ~broker_sim();
  broker_sim(const broker_sim&) = delete;
  broker_sim& operator=(const broker_sim&) = delete;

  void start();
  void stop();
  // Drops the connection now (answers not yet sent wait for the next session) and
  // connects again after `pause_ms`.
  void disconnect(uint64_t pause_ms);
  [[nodiscard]] broker_sim_stats stats() const;
  [[nodiscard]] bool connected() const { return connected_.load(); }

 private:
  void run();
  broker_sim_options opt_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> disconnect_pause_ms_{0};
  std::atomic<bool> disconnect_{false};
  struct counters;
  std::unique_ptr<counters> c_;
};

}  // namespace mesob::tools
