// A system under load: Mesob over its binary protocol, or a baseline (PostgreSQL, Redis)
// running the same workload. mesob-load drives every target through this interface.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "perf/load/workload.hpp"
#include "wire/types.hpp"

namespace mesob::load {

// The outcome of one request (one batch): one result per transfer, or, when the request
// failed as a whole (connection lost, server error), `failure` and no results. A failed
// request's transfers have an unknown outcome: verification looks them up.
struct batch_outcome {
  std::vector<wire::result> results;
  std::string failure;
  bool maybe_applied = true;  // with failure: it may have been applied (false: it never left)
};

class target_connection {
 public:
  virtual ~target_connection() = default;
  // Sends one batch. `done` runs exactly once, on any thread, when the outcome is durable
  // (or the request failed). Blocks while window_max() requests are outstanding; a
  // synchronous driver runs the request inside submit() and has a window of 1.
  virtual void submit(std::vector<wire::transfer> batch, std::function<void(batch_outcome&&)> done) = 0;
  // Several requests ready at once: one write where the target pipelines (mesob), else
  // one submit after another.
  struct submission {
    std::vector<wire::transfer> batch;
    std::function<void(batch_outcome&&)> done;
  };
  virtual void submit_all(std::vector<submission> all) {
    for (auto& s : all) submit(std::move(s.batch), std::move(s.done));
  }
  [[nodiscard]] virtual uint32_t window_max() const = 0;
  // Connections made again after one broke, and requests sent again on them (a target
  // whose client reconnects by itself; others fail the request instead).
  [[nodiscard]] virtual uint64_t reconnects() const { return 0; }
  [[nodiscard]] virtual uint64_t resent() const { return 0; }
};

// A transfer as read back for verification.
struct found_transfer {
  bool found = false;
  uint64_t debit_account_id = 0;
  uint64_t credit_account_id = 0;
  uint64_t amount = 0;
  bool pending = false;  // a pending transfer (two-phase): moves no posted balance
};

class target {
 public:
  virtual ~target() = default;
  [[nodiscard]] virtual std::string name() const = 0;
  // Whether the target runs this workload (baselines run plain transfers only).
  [[nodiscard]] virtual std::string supports(const workload& w) const = 0;  // empty: yes
  // Creates the funding account and the load's accounts, each with `opening` moved to it
  // from the funding account; an account that already exists must hold its opening
  // balance untouched, or setup fails (a previous run's accounts: use another range).
  virtual bool setup(const workload& w, std::string* error) = 0;
  // A connection that sends the workload's items (transfers, or deposits).
  virtual std::unique_ptr<target_connection> connect(const workload& w, std::string* error) = 0;
  // The registered gateway number the target knows this client as (Mesob: from Welcome;
  // 0: none). A deposit's transfer id carries it.
  [[nodiscard]] virtual uint32_t gateway_number() const { return 0; }
  // The target's shard count (Mesob: from Welcome), which places accounts; 0: it does not
  // say (the baselines have none; an older mesobd).
  [[nodiscard]] virtual uint32_t shards() const { return 0; }
  // Posted balance (credits minus debits) of the funding account and of each load account
  // (index i: account first_account + i), read after the load stopped.
  virtual bool read_balances(const workload& w, int64_t* funding, std::vector<int64_t>* accounts,
                             std::string* error) = 0;
  // Each load account's debits pending (payouts: every hold must be posted or voided by
  // the end). False with *error when the target cannot tell.
  virtual bool read_pending_debits(const workload& w, std::vector<uint64_t>* accounts, std::string* error) {
    (void)w;
    (void)accounts;
    *error = name() + " does not report pending debits";
    return false;
  }
  // Looks transfers up by id, one answer per id.
  virtual bool find_transfers(std::span<const wire::id128> ids, std::vector<found_transfer>* out,
                              std::string* error) = 0;
};

}  // namespace mesob::load
