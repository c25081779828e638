// market_feed: a market-data gateway as the engine meets it, over the real protocol (the
// C++ client): it authenticates as a gateway with the market_data role, lists its
// instruments if asked (`define`), and sends prices for them at a chosen rate. Each
// instrument's price is a random walk in integer ticks: every step moves it by a normal
// draw of `volatility_bp` basis points, and a share `jump_rate` of steps jumps by
// `jump_bp` up or down (what trips the engine's move halts). `mesob-gatewaysim --feed`
// runs one; tests run it in a thread.
//
// One thread: it sends Prices requests of up to `batch_max` prices, instruments in turn,
// paced to `prices_per_s`, with at most `in_flight_max` requests outstanding. Each price
// carries the instrument's next sequence number (at each connect it first looks its
// instruments up: a feed started again counts on from the sequence the engine last took,
// and walks on from the engine's last price), so when the connection drops the
// requests not answered are sent again after the reconnect (a price that did arrive is a
// repeat the engine answers ok and does not count twice); it waits a little before each
// reconnect and does not catch up on the prices it did not send while away. Randomness
// comes from `seed`, so a run repeats. The last price sent per instrument can be read at
// any time (a broker simulator fills at it).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tools/sim_thread.hpp"
#include "wire/types.hpp"

namespace mesob::wire {
class client;
}

namespace mesob::tools {

struct market_feed_options {
  std::string host = "127.0.0.1";
  uint16_t port = 7400;
  std::string gateway;
  std::vector<uint8_t> secret;
  std::vector<uint64_t> instruments;  // ids, priced in turn
  uint64_t start_ticks = 10'000;
  double prices_per_s = 1000;        // in all
  uint32_t batch_max = 1024;
  double volatility_bp = 10;         // standard deviation of a step
  double jump_rate = 0.0005;         // share of steps that jump
  double jump_bp = 2000;
  uint64_t prices_max = 0;           // stop after sending this many (0: no limit)
  uint32_t in_flight_max = 8;
  uint64_t seed = 1;
  // Define the instruments first (symbol "S<id>", this template's other fields).
  bool define = false;
  wire::instrument_op definition{};
};

struct market_feed_stats {
  uint64_t connects = 0;
  uint64_t defined = 0;          // definitions the engine took (ok)
  uint64_t resent = 0;           // prices sent again after a dropped connection
  uint64_t prices_sent = 0;
  uint64_t prices_ok = 0;
  uint64_t prices_refused = 0;   // any other result
  uint64_t jumps = 0;
  uint64_t errors = 0;           // Error frames and failed connections
  bool done = false;             // prices_max sent and answered
};

// start(), stop(), disconnect(pause) (as a crashed feed would), connected():
// sim_thread's.
class market_feed : public sim_thread {
 public:
  explicit market_feed(market_feed_options o);
  ~market_feed() override;
  [[nodiscard]] market_feed_stats stats() const;
  [[nodiscard]] const market_feed_options& options() const { return opt_; }
  // The last price sent for the i-th instrument (0 before the first).
  [[nodiscard]] uint64_t last_ticks(size_t i) const;

 private:
  void run() override;
  // Brings each instrument's sequence up to the one the engine last took, and (take_prices)
  // its walk to the engine's last price; false if the look-up failed.
  bool catch_up(wire::client& c, std::vector<uint64_t>& sequence, std::vector<uint64_t>& px, bool take_prices);
  market_feed_options opt_;
  struct counters;
  std::unique_ptr<counters> c_;
  mutable std::mutex last_mu_;
  std::vector<uint64_t> last_;
};

}  // namespace mesob::tools
