// What the PostgreSQL and Redis baselines of mesob-load share, so that both answer a batch
// as each other and as Mesob would where the load can tell the difference.
//
// A baseline stores only what a plain transfer needs: per account a signed balance, per
// transfer its id, accounts, amount and first result. The checks that need no stored state
// (Mesob's field checks, actors/README.md "create_transfers", and id_duplicated_in_batch)
// run here, in the client, before the batch is sent; the server side (a PL/pgSQL function,
// a Lua script) runs only the transfers that passed, in batch order, and records each one
// with its result, so that a repeat answers with the first outcome as Mesob does.
//
// Caveats (where a baseline answers differently from Mesob):
// - no currency on accounts (transfer_currency_mismatch never happens) and no account
//   status (frozen, closed); an idempotent repeat compares accounts and amount only;
// - any transfer flag (linked, pending, post, void) is refused with flags_invalid;
// - amounts above INT64_MAX (a balance is a signed 64-bit integer) are exceeds_credits.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "perf/load/target.hpp"
#include "perf/load/workload.hpp"
#include "wire/types.hpp"

namespace mesob::load {

// The largest batch a baseline accepts in one request (mesob-load's own limit too).
constexpr uint32_t baseline_batch_transfers_max = 8192;
// Ids looked up or balances read per round trip when verifying.
constexpr uint32_t baseline_lookup_chunk_max = 8192;
// How long one call to a baseline server may take before it is given up (a Redis
// command's timeout; a PostgreSQL load connection's statement_timeout, and its wait for a
// batch's answer, commit included).
constexpr uint32_t baseline_call_timeout_s = 60;

// The field checks of one batch. results gets one result per transfer (ok for those that
// passed) and pass the indexes of the transfers that passed, in batch order, which are the
// ones to send. scratch is working space (kept by the caller so nothing allocates per batch
// once the vectors have grown).
void check_fields(std::span<const wire::transfer> batch, std::vector<wire::result>* results,
                  std::vector<uint32_t>* pass, std::vector<uint32_t>* scratch);

// A baseline's load connection: synchronous (window 1; submit runs the batch and calls
// `done` before it returns), the field checks in the client, then run() for the
// transfers that passed. Owned and used by one driver thread at a time.
class baseline_connection : public target_connection {
 public:
  void submit(std::vector<wire::transfer> batch, std::function<void(batch_outcome&&)> done) final;
  [[nodiscard]] uint32_t window_max() const final { return 1; }

 protected:
  explicit baseline_connection(std::string system) : system_(std::move(system)) {}
  // Runs the transfers of `batch` listed in pass() and writes their results; empty, or
  // why the batch failed as a whole.
  virtual std::string run(const std::vector<wire::transfer>& batch, std::vector<wire::result>* results) = 0;
  [[nodiscard]] const std::vector<uint32_t>& pass() const { return pass_; }

 private:
  std::string system_;  // for messages
  std::vector<uint32_t> pass_, scratch_;
};

// After set-up: reads every balance back from `t`; empty when the funding account holds
// `funding` and every account its opening balance, else what differs.
[[nodiscard]] std::string check_after_setup(target& t, const workload& w, const std::string& system, int64_t funding);

// The server-side program (SQL or Lua) with every `@name@` replaced by the code of
// wire::result::name, for the results a baseline's server side produces: ok,
// exists_with_different_fields, debit_account_not_found, credit_account_not_found and
// exceeds_credits. Any other `@...@` left over is a bug (asserted).
[[nodiscard]] std::string with_result_codes(std::string_view program);

// The funding account's balance after set-up, -(accounts x opening); empty when it fits a
// signed 64-bit balance, else why not.
[[nodiscard]] std::string funding_balance(const workload& w, int64_t* out);

}  // namespace mesob::load
