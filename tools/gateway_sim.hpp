// gateway_sim: a payment gateway as the engine meets it, over the real protocol (the
// C++ client): it authenticates as a registered gateway, reports deposits at a chosen
// rate, and answers the payout instructions pushed to it after a latency drawn from an
// exponential distribution, failing a share of them, never answering a share (they time
// out in the engine), declining a share (a failure that is the payment's, not the
// gateway's), paying a share without ever answering (the answer lost), and
// answering a share twice. It takes cancels (topic "payout_cancels") as a gateway should:
// a payout it paid is answered settled, any other is answered failed and not paid, and a
// pay instruction for an attempt a cancel covered (re-sent after a reconnect) is answered
// failed too, never paid. It remembers the newest 2^20 payout ids only. It can
// drop its connection on command and comes back after a pause. `mesob-gatewaysim` runs one or more of these; tests and
// the gateway benchmark run them in threads.
//
// One thread per gateway session: it waits on its socket until the next answer or
// deposit is due, sends due answers as one PayoutAnswers request, keeps at most
// `in_flight_max` requests outstanding (further answers wait and go in bigger batches),
// and reconnects when the connection drops. Randomness comes from `seed` (printed by the
// program), so a run can be repeated.
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

struct gateway_sim_options {
  std::string host = "127.0.0.1";
  uint16_t port = 7400;
  std::string gateway;
  std::vector<uint8_t> secret;
  // Answers to payout instructions.
  double latency_ms = 1.0;       // mean (exponential)
  double latency_ms_max = 10'000;
  double fail_rate = 0;          // answered failed (decided per payout id and seed: every answer agrees)
  double decline_rate = 0;       // of the others, answered failed and declined (the payment refused,
                                 // wire::payout_failure): decided per payout id and seed as well
  double timeout_rate = 0;       // never answered (and not paid)
  double lost_rate = 0;          // paid, the answer never sent (a cancel learns it was paid)
  double duplicate_rate = 0;     // answered twice
  // Deposits.
  double deposits_per_s = 0;
  uint32_t deposit_batch_max = 1024;
  uint64_t wallet_first = 1, wallet_count = 1;  // deposits go to them in turn
  uint64_t deposit_amount = 100;
  wire::currency_code currency = wire::currency("ETB");
  uint64_t reference_first = 1;  // references count up from here
  uint64_t deposits_max = 0;     // stop depositing after this many (0: no limit)
  uint32_t in_flight_max = 32;   // capped by the server's limit (Welcome)
  uint64_t seed = 1;
  // Called (on the session's thread) with each answer the engine replied to, and its
  // result: a load generator learns from it how each payout ended.
  std::function<void(const wire::payout_answer&, wire::result)> on_answered;
};

struct gateway_sim_stats {
  uint64_t connects = 0;
  uint64_t instructions = 0;       // received (a re-sent one counts again)
  uint64_t answered_settled = 0;
  uint64_t answered_failed = 0;    // declines included
  uint64_t answered_declined = 0;
  uint64_t dropped = 0;            // left unanswered (timeout_rate)
  uint64_t lost = 0;               // paid, left unanswered (lost_rate)
  uint64_t cancels = 0;            // cancels received (a re-sent one counts again)
  uint64_t cancels_paid = 0;       // of them answered settled: the payout was paid already
  uint64_t pays_cancelled = 0;     // pay instructions for an attempt a cancel covered: answered failed, not paid
  uint64_t duplicates = 0;         // second answers sent
  uint64_t answers_ok = 0;         // answers the engine took (result ok)
  uint64_t answers_refused = 0;    // duplicates, late ones, ... (another result)
  uint64_t deposits_sent = 0;
  uint64_t deposits_ok = 0;
  uint64_t deposits_refused = 0;
  uint64_t errors = 0;             // Error frames
};

// start(), stop(), disconnect(pause) (answers not yet sent are lost, as when a gateway
// crashes), connected(): sim_thread's.
class gateway_sim : public sim_thread {
 public:
  explicit gateway_sim(gateway_sim_options o);
  ~gateway_sim() override;
  [[nodiscard]] gateway_sim_stats stats() const;
  [[nodiscard]] const gateway_sim_options& options() const { return opt_; }

 private:
  void run() override;
  gateway_sim_options opt_;
  struct counters;
  std::unique_ptr<counters> c_;
};

}  // namespace mesob::tools
