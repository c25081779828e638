#include "perf/load/baseline_rules.hpp"

#include <algorithm>
#include <limits>

#include "wire/assert.hpp"

namespace mesob::load {
namespace {

// Mesob's field checks for a plain transfer, in Mesob's order (the first failing one is the
// result), with every flag refused: the baselines run plain transfers only.
wire::result field_check(const wire::transfer& t) {
  using wire::result;
  if (t.timestamp != 0) return result::timestamp_must_be_zero;
  if (t.id.zero()) return result::id_must_not_be_zero;
  if (t.reserved != 0) return result::reserved_field;
  if (t.flags != 0) return result::flags_invalid;
  if (!t.pending_id.zero()) return result::pending_id_must_be_zero;
  if (t.timeout_s != 0) return result::timeout_reserved_for_pending_transfer;
  if (t.debit_account_id == 0) return result::debit_account_id_must_not_be_zero;
  if (t.credit_account_id == 0) return result::credit_account_id_must_not_be_zero;
  if (t.debit_account_id == t.credit_account_id) return result::accounts_must_be_different;
  if (t.amount == 0) return result::amount_must_not_be_zero;
  if (!wire::currency_valid(t.currency)) return result::currency_invalid;
  // No balance can hold more than a signed 64-bit integer, so no debit of more can pass.
  if (t.amount > uint64_t(std::numeric_limits<int64_t>::max())) return result::exceeds_credits;
  return result::ok;
}

}  // namespace

void check_fields(std::span<const wire::transfer> batch, std::vector<wire::result>* results,
                  std::vector<uint32_t>* pass, std::vector<uint32_t>* scratch) {
  MESOB_ASSERT(batch.size() <= baseline_batch_transfers_max);
  results->assign(batch.size(), wire::result::ok);
  scratch->clear();
  for (uint32_t i = 0; i < batch.size(); ++i) {
    (*results)[i] = field_check(batch[i]);
    if ((*results)[i] == wire::result::ok) scratch->push_back(i);
  }
  // The same id earlier in the batch: sort the passing indexes by (id, index), and every
  // one but the first of a run of equal ids is a duplicate.
  const auto id_less = [&](uint32_t a, uint32_t b) {
    const auto& x = batch[a].id;
    const auto& y = batch[b].id;
    if (x.hi != y.hi) return x.hi < y.hi;
    if (x.lo != y.lo) return x.lo < y.lo;
    return a < b;
  };
  std::sort(scratch->begin(), scratch->end(), id_less);
  for (size_t j = 1; j < scratch->size(); ++j)
    if (batch[(*scratch)[j]].id == batch[(*scratch)[j - 1]].id)
      (*results)[(*scratch)[j]] = wire::result::id_duplicated_in_batch;
  pass->clear();
  for (uint32_t i = 0; i < batch.size(); ++i)
    if ((*results)[i] == wire::result::ok) pass->push_back(i);
  MESOB_ASSERT(pass->size() <= batch.size());
}

std::string with_result_codes(std::string_view program) {
  using wire::result;
  constexpr result codes[] = {result::ok, result::exists_with_different_fields,
                              result::debit_account_not_found, result::credit_account_not_found,
                              result::exceeds_credits};
  std::string out(program);
  for (const result r : codes) {
    const std::string token = "@" + std::string(wire::result_name(r)) + "@";
    const std::string value = std::to_string(uint32_t(r));
    for (size_t at = out.find(token); at != std::string::npos;
         at = out.find(token, at + value.size()))
      out.replace(at, token.size(), value);
  }
  MESOB_ASSERT_MSG(out.find('@') == std::string::npos, "a result code without a value");
  return out;
}

std::string funding_balance(const workload& w, int64_t* out) {
  // workload::check holds the rule that the funding balance fits a signed 64-bit figure.
  if (auto bad = w.check(); !bad.empty()) return bad;
  *out = -int64_t(w.opening * w.accounts);
  return {};
}

void baseline_connection::submit(std::vector<wire::transfer> batch, std::function<void(batch_outcome&&)> done) {
  batch_outcome out;
  if (batch.size() > baseline_batch_transfers_max) {
    out.failure = system_ + ": a batch of " + std::to_string(batch.size()) + " transfers exceeds " +
                  std::to_string(baseline_batch_transfers_max);
  } else {
    check_fields(batch, &out.results, &pass_, &scratch_);
    if (!pass_.empty()) out.failure = run(batch, &out.results);
  }
  if (!out.failure.empty()) out.results.clear();
  done(std::move(out));
}

std::string check_after_setup(target& t, const workload& w, const std::string& system, int64_t funding) {
  int64_t funding_read = 0;
  std::vector<int64_t> balances;
  std::string error;
  if (!t.read_balances(w, &funding_read, &balances, &error)) return error;
  if (funding_read != funding)
    return system + ": after setup the funding account holds " + std::to_string(funding_read) + ", not " +
           std::to_string(funding);
  for (uint64_t i = 0; i < w.accounts; ++i)
    if (balances[i] != int64_t(w.opening))
      return system + ": after setup account " + std::to_string(w.first_account + i) + " holds " +
             std::to_string(balances[i]) + ", not its opening balance";
  return {};
}

}  // namespace mesob::load
