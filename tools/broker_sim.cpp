#include "tools/broker_sim.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <queue>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "actors/flat_map.hpp"
#include "wire/client.hpp"
#include "wire/codec.hpp"

namespace mesob::tools {

using clock_type = std::chrono::steady_clock;

struct broker_sim::counters {
  std::atomic<uint64_t> connects{0}, instructions{0}, cancels{0}, fills{0}, rejects{0}, accepts{0}, answers_ok{0},
      answers_refused{0}, errors{0}, working{0};
};

broker_sim::broker_sim(broker_sim_options o) : opt_(std::move(o)), c_(std::make_unique<counters>()) {}

broker_sim::~broker_sim() { stop(); }

broker_sim_stats broker_sim::stats() const {
  broker_sim_stats s;
  s.connects = c_->connects;
  s.instructions = c_->instructions;
  s.cancels = c_->cancels;
  s.fills_sent = c_->fills;
  s.rejects_sent = c_->rejects;
  s.accepts_sent = c_->accepts;
  s.answers_ok = c_->answers_ok;
  s.answers_refused = c_->answers_refused;
  s.errors = c_->errors;
  s.working = c_->working;
  return s;
}

namespace {

struct working_order {
  wire::order_instruction in;
  uint64_t remaining = 0;
  uint64_t next_fill = 1;
  uint32_t parts = 1;  // fills still to send, this one included
  uint64_t gen = 0;    // its due entries carry it (a cancelled order's stale ones are skipped)
};

struct due_order {
  clock_type::time_point at;
  uint64_t order_id;
  uint64_t gen;
  bool operator>(const due_order& o) const { return at > o.at; }
};

// Orders this broker finished or stopped, by (order id, sending): a work instruction of
// that sending again (pushed after a reconnect before the engine took the last answers)
// is not worked twice. A direct-mapped table of 2^20 keys (8 MiB, no allocation per
// order): a newer key may take an older one's slot, so it remembers recent ones (an
// entry survives N later ones with probability about e^(-N / 2^20)).
class done_set {
 public:
  done_set() : slots_(size_t(1) << 20, 0) {}
  bool has(uint64_t id, uint8_t attempt) const {
    const uint64_t k = key(id, attempt);
    return slots_[k & (slots_.size() - 1)] == k;
  }
  void add(uint64_t id, uint8_t attempt) {
    const uint64_t k = key(id, attempt);
    slots_[k & (slots_.size() - 1)] = k;
  }

 private:
  static uint64_t key(uint64_t id, uint8_t attempt) {
    const uint64_t k = actors::mix64(id ^ uint64_t(attempt) << 56);
    return k == 0 ? 1 : k;
  }
  std::vector<uint64_t> slots_;
};

}  // namespace

void broker_sim::run() {
  std::mt19937_64 rng(opt_.seed);
  std::uniform_real_distribution<double> unit(0, 1);
  std::exponential_distribution<double> latency(opt_.latency_ms > 0 ? 1.0 / opt_.latency_ms : 1e9);
  auto later = [&](clock_type::time_point from) {
    return from + std::chrono::microseconds(int64_t(std::min(latency(rng), opt_.latency_ms_max) * 1000));
  };
  // What the broker is working and the answers it owes survive its reconnects.
  std::unordered_map<uint64_t, working_order> orders;
  done_set done;
  uint64_t next_gen = 1;
  std::priority_queue<due_order, std::vector<due_order>, std::greater<>> due;
  std::deque<wire::order_answer> outbox;
  auto decide = [&](uint64_t id, double rate) {  // per order and seed: every session agrees
    return double(actors::mix64(id ^ opt_.seed) >> 11) * 0x1.0p-53 < rate;
  };
  auto finish = [&](std::unordered_map<uint64_t, working_order>::iterator it) {
    done.add(it->first, it->second.in.attempt);
    orders.erase(it);
  };
  auto work = [&](uint64_t id, uint64_t gen, clock_type::time_point now) {
    auto it = orders.find(id);
    if (it == orders.end() || it->second.gen != gen) return;  // cancelled (and perhaps sent again since)
    working_order& w = it->second;
    auto answer = [&](wire::order_answer_kind k, uint16_t reason, uint64_t qty, uint64_t price) {
      wire::order_answer a{};
      a.order_id = id;
      a.kind = k;
      a.reason = reason;
      a.attempt = w.in.attempt;
      if (k == wire::order_answer_kind::fill) {
        // Unique per order across its sendings: the sending's number above the count.
        a.fill_id = uint64_t(w.in.attempt) << 32 | w.next_fill++;
        a.quantity = qty;
        a.price_ticks = price;
      }
      outbox.push_back(a);
      (k == wire::order_answer_kind::fill ? c_->fills : c_->rejects).fetch_add(1);
    };
    if (w.next_fill == 1 && decide(id, opt_.reject_rate)) {
      answer(wire::order_answer_kind::reject, 1, 0, 0);
      finish(it);
      return;
    }
    const bool buy = w.in.side == wire::order_side::buy;
    const uint64_t p = opt_.price_of ? opt_.price_of(w.in.instrument_id) : w.in.limit_ticks;
    const bool within = p != 0 && (buy ? p <= w.in.limit_ticks : p >= w.in.limit_ticks);
    if (!within) {
      if (p != 0 && w.in.type == wire::order_type::market) {
        answer(wire::order_answer_kind::reject, 2, 0, 0);
        finish(it);
      } else {
        due.push({later(now), id, gen});
      }
      return;
    }
    // A part is whole lots (the order is: the engine took it so); the last takes the rest.
    const uint64_t lot = std::max<uint64_t>(1, opt_.lot_of ? opt_.lot_of(w.in.instrument_id) : 1);
    const uint64_t qty = w.parts > 1 ? std::min(w.remaining, std::max<uint64_t>(1, w.remaining / lot / w.parts) * lot)
                                     : w.remaining;
    answer(wire::order_answer_kind::fill, 0, qty, p);
    w.remaining -= qty;
    w.parts = w.parts > 1 ? w.parts - 1 : 1;
    if (w.remaining == 0) finish(it);
    else due.push({later(now), id, gen});
  };

  while (!stop_) {
    std::string err;
    auto cl = redial(opt_.host, opt_.port, opt_.gateway, opt_.secret);
    if (!cl) {
      c_->errors.fetch_add(1);
      continue;
    }
    c_->connects.fetch_add(1);
    connected_ = true;
    const uint32_t in_flight_max = std::max<uint32_t>(1, std::min(opt_.in_flight_max, cl->welcome().in_flight_max));
    std::unordered_map<uint64_t, std::vector<wire::order_answer>> in_flight;
    bool lost = false, refused_again = false;
    while (!stop_ && !lost) {
      if (take_disconnect(*cl)) {
        lost = true;
        break;
      }
      const auto now = clock_type::now();
      while (!due.empty() && due.top().at <= now) {
        const due_order d = due.top();
        due.pop();
        work(d.order_id, d.gen, now);
      }
      c_->working.store(orders.size());
      while (!outbox.empty() && in_flight.size() < in_flight_max) {
        const size_t n = std::min<size_t>(outbox.size(), opt_.batch_max);
        std::vector<wire::order_answer> batch(outbox.begin(), outbox.begin() + long(n));
        const uint64_t id = cl->send(wire::order_answers_body(batch));
        if (id == 0) {
          lost = true;
          break;
        }
        outbox.erase(outbox.begin(), outbox.begin() + long(n));
        in_flight[id] = std::move(batch);
      }
      if (lost) break;
      int wait_ms = 10;
      if (!due.empty())
        wait_ms = int(std::clamp<int64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(due.top().at - clock_type::now()).count(), 0, 10));
      const bool alive = take_frames(
          *cl, wait_ms, c_->errors,
          [&](const wire::push_msg& pm) {
            std::vector<wire::order_instruction> list;
            if (pm.topic != wire::orders_topic || !wire::parse_order_instructions(pm.body, &list, &err)) {
              c_->errors.fetch_add(1);
              return;
            }
            const auto at = clock_type::now();
            for (const auto& in : list) {
              if (opt_.on_instruction) opt_.on_instruction(in);
              if (opt_.silent) {  // counted, never answered
                (in.kind == wire::order_instruction_kind::cancel ? c_->cancels : c_->instructions).fetch_add(1);
                continue;
              }
              if (in.kind == wire::order_instruction_kind::cancel) {
                // Stops working it and confirms with a reject (reason 3, "cancelled"); one
                // already done (or unknown) has nothing to confirm.
                c_->cancels.fetch_add(1);
                if (const auto it = orders.find(in.order_id); it != orders.end()) {
                  finish(it);
                  wire::order_answer a{};
                  a.order_id = in.order_id;
                  a.kind = wire::order_answer_kind::reject;
                  a.reason = 3;
                  a.attempt = in.attempt;
                  outbox.push_back(a);
                  c_->rejects.fetch_add(1);
                }
                continue;
              }
              c_->instructions.fetch_add(1);
              if (in.quantity == 0 || done.has(in.order_id, in.attempt)) continue;  // this sending is done
              const auto known = orders.find(in.order_id);
              if (known != orders.end()) known->second.in.attempt = in.attempt;  // a re-send: its answers say so
              if (opt_.acknowledge) {
                wire::order_answer a{};
                a.order_id = in.order_id;
                a.kind = wire::order_answer_kind::accepted;
                a.attempt = in.attempt;
                outbox.push_back(a);
                c_->accepts.fetch_add(1);
              }
              if (known != orders.end()) continue;  // worked already
              working_order w;
              w.in = in;
              w.remaining = in.quantity;
              w.parts = decide(in.order_id * 31 + 7, opt_.partial_rate) ? 2 + uint32_t(rng() % 3) : 1;
              w.gen = next_gen++;
              orders.emplace(in.order_id, w);
              due.push({later(at), in.order_id, w.gen});
            }
          },
          [&](uint64_t request_id, const wire::client::outcome& o) {
            const auto it = in_flight.find(request_id);
            std::vector<wire::order_answer> answers;
            if (it != in_flight.end()) {
              answers = std::move(it->second);
              in_flight.erase(it);
            }
            if (!o.ok) {
              c_->errors.fetch_add(1);
              // Nothing was done (shutting_down, engine_failed, ...): the session ends and
              // its answers go again with the next, in order, as a lost connection's do.
              // Before, they were dropped: the orders' state here had moved on, and the
              // fills never reached the engine.
              if (!(o.server_error && wire::refused_for_good(o.error.code))) {
                in_flight[request_id] = std::move(answers);
                lost = refused_again = true;
              }
              return;
            }
            if (opt_.on_answered && answers.size() == o.reply.results.size())
              for (size_t i = 0; i < answers.size(); ++i) opt_.on_answered(answers[i], o.reply.results[i]);
            // A fill refused ends the order here: what is left is rejected, so the engine
            // closes it (a refusal that says the order is closed already needs nothing).
            if (answers.size() == o.reply.results.size())
              for (size_t i = 0; i < answers.size(); ++i) {
                const wire::result r = o.reply.results[i];
                if (answers[i].kind != wire::order_answer_kind::fill || r == wire::result::ok ||
                    r == wire::result::order_not_open || r == wire::result::order_not_found)
                  continue;
                if (const auto at = orders.find(answers[i].order_id); at != orders.end()) finish(at);
                wire::order_answer a{};
                a.order_id = answers[i].order_id;
                a.kind = wire::order_answer_kind::reject;
                a.reason = 4;
                a.attempt = 0;  // whichever sending the engine is at (the order may have come back since)
                outbox.push_back(a);
                c_->rejects.fetch_add(1);
              }
            uint64_t ok = 0, refused = 0;
            for (const auto r : o.reply.results) (r == wire::result::ok ? ok : refused) += 1;
            c_->answers_ok.fetch_add(ok);
            c_->answers_refused.fetch_add(refused);
          });
      if (!alive) lost = true;
    }
    // Answers sent without a reply go again with the next session (a repeat if taken).
    std::vector<uint64_t> ids;
    for (const auto& [id, batch] : in_flight) ids.push_back(id);
    std::sort(ids.rbegin(), ids.rend());
    for (const uint64_t id : ids) outbox.insert(outbox.begin(), in_flight[id].begin(), in_flight[id].end());
    connected_ = false;
    if (refused_again) pause(100);  // (an engine refusing writes: not a connection a millisecond)
  }
}

}  // namespace mesob::tools
