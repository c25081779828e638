#include "tools/gateway_sim.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <queue>
#include <random>
#include <unordered_map>

#include "actors/flat_map.hpp"
#include "wire/client.hpp"
#include "wire/codec.hpp"

namespace mesob::tools {

using clock_type = std::chrono::steady_clock;

struct gateway_sim::counters {
  std::atomic<uint64_t> connects{0}, instructions{0}, settled{0}, failed{0}, declined{0}, dropped{0}, lost{0}, cancels{0},
      cancels_paid{0}, pays_cancelled{0}, duplicates{0}, answers_ok{0}, answers_refused{0}, deposits_sent{0}, deposits_ok{0},
      deposits_refused{0}, errors{0};
};

gateway_sim::gateway_sim(gateway_sim_options o) : opt_(std::move(o)), c_(std::make_unique<counters>()) {}

gateway_sim::~gateway_sim() { stop(); }

gateway_sim_stats gateway_sim::stats() const {
  gateway_sim_stats s;
  s.connects = c_->connects;
  s.instructions = c_->instructions;
  s.answered_settled = c_->settled;
  s.answered_failed = c_->failed;
  s.answered_declined = c_->declined;
  s.dropped = c_->dropped;
  s.lost = c_->lost;
  s.cancels = c_->cancels;
  s.cancels_paid = c_->cancels_paid;
  s.pays_cancelled = c_->pays_cancelled;
  s.duplicates = c_->duplicates;
  s.answers_ok = c_->answers_ok;
  s.answers_refused = c_->answers_refused;
  s.deposits_sent = c_->deposits_sent;
  s.deposits_ok = c_->deposits_ok;
  s.deposits_refused = c_->deposits_refused;
  s.errors = c_->errors;
  return s;
}

namespace {

struct due_answer {
  clock_type::time_point at;
  wire::payout_answer a;
  bool operator>(const due_answer& o) const { return at > o.at; }
};

// What the simulated gateway did with a payout id (its idempotency key): its latest
// instruction's attempt, whether it paid, and the latest attempt a cancel covered (it
// answered that it did not pay, and will not: a pay instruction for that attempt or an
// earlier one, re-sent after a reconnect, is answered failed, never paid).
struct payout_seen {
  uint32_t attempt = 0;
  uint32_t cancelled_upto = 0;
  bool paid = false;
};
constexpr size_t payouts_seen_max = size_t(1) << 20;  // the oldest are forgotten past this

}  // namespace

namespace {

}  // namespace

void gateway_sim::run() {
  std::mt19937_64 rng(opt_.seed);
  std::uniform_real_distribution<double> unit(0, 1);
  std::exponential_distribution<double> latency(opt_.latency_ms > 0 ? 1.0 / opt_.latency_ms : 1e9);
  uint64_t next_reference = opt_.reference_first, deposits_made = 0;
  std::unordered_map<uint64_t, payout_seen> seen;  // kept across reconnects, as a gateway's records are
  std::deque<uint64_t> seen_order;
  const auto remember = [&](uint64_t id) -> payout_seen& {
    auto [it, fresh] = seen.try_emplace(id);
    if (fresh) {
      seen_order.push_back(id);
      if (seen_order.size() > payouts_seen_max) {
        seen.erase(seen_order.front());
        seen_order.pop_front();
      }
    }
    return seen[id];
  };
  while (!stop_) {
    std::string err;
    auto cl = redial(opt_.host, opt_.port, opt_.gateway, opt_.secret);
    if (!cl) continue;
    c_->connects.fetch_add(1);
    connected_ = true;
    // No more requests in flight than the server admits (its limit comes in Welcome).
    const uint32_t in_flight_max = std::max<uint32_t>(1, std::min(opt_.in_flight_max, cl->welcome().in_flight_max));
    std::priority_queue<due_answer, std::vector<due_answer>, std::greater<>> due;
    // request id -> what it carried (true: deposits), for counting the results
    struct sent {
      bool deposits = false;
      std::vector<wire::payout_answer> answers;  // kept for on_answered only
    };
    std::unordered_map<uint64_t, sent> in_flight;
    auto deposit_clock = clock_type::now();
    double deposit_credit = 0;
    bool lost = false;
    while (!stop_ && !lost) {
      if (take_disconnect(*cl)) {
        lost = true;
        break;
      }
      const auto now = clock_type::now();
      // Answers that are due, as one request (if a slot is free).
      if (!due.empty() && due.top().at <= now && in_flight.size() < in_flight_max) {
        std::vector<wire::payout_answer> batch;
        while (!due.empty() && due.top().at <= now && batch.size() < wire::batch_operations_max) {
          batch.push_back(due.top().a);
          due.pop();
        }
        const uint64_t id = cl->send(wire::payout_answers_body(batch));
        if (id == 0) {
          lost = true;
          break;
        }
        in_flight[id] = {false, opt_.on_answered ? std::move(batch) : std::vector<wire::payout_answer>{}};
      }
      // Deposits at the chosen rate.
      if (opt_.deposits_per_s > 0 && (opt_.deposits_max == 0 || deposits_made < opt_.deposits_max)) {
        deposit_credit += std::chrono::duration<double>(now - deposit_clock).count() * opt_.deposits_per_s;
        deposit_clock = now;
        if (deposit_credit >= 1 && in_flight.size() < in_flight_max) {
          uint64_t n = std::min<uint64_t>(uint64_t(deposit_credit), opt_.deposit_batch_max);
          if (opt_.deposits_max) n = std::min(n, opt_.deposits_max - deposits_made);
          std::vector<wire::deposit> batch(n);
          for (auto& d : batch) {
            d.reference = next_reference++;
            d.wallet = opt_.wallet_first + (d.reference - 1) % std::max<uint64_t>(opt_.wallet_count, 1);  // in turn
            d.amount = opt_.deposit_amount;
            d.currency = opt_.currency;
          }
          const uint64_t id = cl->send(wire::deposits_body(batch));
          if (id == 0) {
            lost = true;
            break;
          }
          in_flight[id] = {true, {}};
          deposit_credit -= double(n);
          deposits_made += n;
          c_->deposits_sent.fetch_add(n);
        }
      }
      // Wait for frames until the next thing is due (at most 10 ms).
      int wait_ms = 10;
      if (!due.empty() && in_flight.size() < in_flight_max)
        wait_ms = int(std::clamp<int64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(due.top().at - clock_type::now()).count(), 0, 10));
      if (opt_.deposits_per_s > 0) wait_ms = std::min(wait_ms, 1);
      const bool alive = take_frames(
          *cl, wait_ms, c_->errors,
          [&](const wire::push_msg& pm) {
            std::vector<wire::payout_instruction> list;
            const bool cancels = pm.topic == wire::payout_cancels_topic;
            if ((pm.topic != wire::payouts_topic && !cancels) ||
                !wire::parse_payout_instructions(pm.body, &list, &err)) {
              c_->errors.fetch_add(1);
              return;
            }
            const auto at = clock_type::now();
            for (const auto& in : list) {
              wire::payout_answer a{};
              a.payout_id = in.payout_id;
              a.amount = in.amount;
              a.currency = in.currency;
              a.attempt = in.attempt;
              payout_seen& s = remember(in.payout_id);
              if (cancels) {
                c_->cancels.fetch_add(1);
                if (in.attempt < s.attempt) continue;  // a later instruction to pay stands
                // Paid: say so. Otherwise it is not paid now, nor for this attempt later.
                a.outcome = s.paid ? wire::payout_outcome::settled : wire::payout_outcome::failed;
                a.reason = s.paid ? 0 : 52;  // "cancelled" in this simulator's codes
                if (s.paid) c_->cancels_paid.fetch_add(1);
                else s.cancelled_upto = std::max(s.cancelled_upto, in.attempt);
                due.push({at, a});
                continue;
              }
              c_->instructions.fetch_add(1);
              if (!s.paid && in.attempt <= s.cancelled_upto) {  // cancelled: it said it will not pay this one
                c_->pays_cancelled.fetch_add(1);
                a.outcome = wire::payout_outcome::failed;
                a.reason = 52;
                due.push({at, a});
                continue;
              }
              s.attempt = std::max(s.attempt, in.attempt);
              // A payout's outcome is the payout's (from its id and the seed): every answer
              // to it, on any attempt or after a reconnect, says the same.
              const auto drawn = [&](uint64_t salt, double rate) {
                return double(actors::mix64(in.payout_id ^ opt_.seed ^ salt) >> 11) * 0x1.0p-53 < rate;
              };
              const bool declined = !drawn(0, opt_.fail_rate) && drawn(0x6465636c696e6500ull, opt_.decline_rate);
              const bool fail = declined || drawn(0, opt_.fail_rate);
              if (!s.paid && unit(rng) < opt_.timeout_rate) {
                c_->dropped.fetch_add(1);
                continue;
              }
              if (!fail && !s.paid && unit(rng) < opt_.lost_rate) {
                s.paid = true;
                c_->lost.fetch_add(1);
                continue;
              }
              s.paid = s.paid || !fail;
              a.outcome = fail ? wire::payout_outcome::failed : wire::payout_outcome::settled;
              // "insufficient float", "destination closed" in this simulator's codes
              a.reason = declined ? 53 : fail ? 51 : 0;
              if (declined) a.failure = wire::payout_failure::declined;
              (fail ? c_->failed : c_->settled).fetch_add(1);
              if (declined) c_->declined.fetch_add(1);
              const double ms = std::min(latency(rng), opt_.latency_ms_max);
              const auto when = at + std::chrono::microseconds(int64_t(ms * 1000));
              due.push({when, a});
              if (unit(rng) < opt_.duplicate_rate) {
                c_->duplicates.fetch_add(1);
                due.push({when + std::chrono::microseconds(int64_t(std::min(latency(rng), opt_.latency_ms_max) * 1000)), a});
              }
            }
          },
          [&](uint64_t request_id, const wire::client::outcome& o) {
            const auto it = in_flight.find(request_id);
            const bool deposits = it != in_flight.end() && it->second.deposits;
            std::vector<wire::payout_answer> answers;
            if (it != in_flight.end()) {
              answers = std::move(it->second.answers);
              in_flight.erase(it);
            }
            if (!o.ok) {
              c_->errors.fetch_add(1);
              return;
            }
            if (opt_.on_answered && answers.size() == o.reply.results.size())
              for (size_t i = 0; i < answers.size(); ++i) opt_.on_answered(answers[i], o.reply.results[i]);
            uint64_t ok = 0, refused = 0;
            for (const auto r : o.reply.results) (r == wire::result::ok ? ok : refused) += 1;
            (deposits ? c_->deposits_ok : c_->answers_ok).fetch_add(ok);
            (deposits ? c_->deposits_refused : c_->answers_refused).fetch_add(refused);
          });
      if (!alive) lost = true;
    }
    connected_ = false;
  }
}

}  // namespace mesob::tools
