#include "tools/market_feed.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <random>

#include "actors/market.hpp"
#include "wire/client.hpp"
#include "wire/codec.hpp"

namespace mesob::tools {

using clock_type = std::chrono::steady_clock;

struct market_feed::counters {
  std::atomic<uint64_t> connects{0}, defined{0}, resent{0}, sent{0}, ok{0}, refused{0}, jumps{0}, errors{0};
  std::atomic<bool> done{false};
};

market_feed::market_feed(market_feed_options o)
    : opt_(std::move(o)), c_(std::make_unique<counters>()), last_(opt_.instruments.size(), 0) {}

market_feed::~market_feed() { stop(); }

market_feed_stats market_feed::stats() const {
  market_feed_stats s;
  s.connects = c_->connects;
  s.defined = c_->defined;
  s.resent = c_->resent;
  s.prices_sent = c_->sent;
  s.prices_ok = c_->ok;
  s.prices_refused = c_->refused;
  s.jumps = c_->jumps;
  s.errors = c_->errors;
  s.done = c_->done;
  return s;
}

uint64_t market_feed::last_ticks(size_t i) const {
  std::lock_guard lk(last_mu_);
  return i < last_.size() ? last_[i] : 0;
}


bool market_feed::catch_up(wire::client& c, std::vector<uint64_t>& sequence, std::vector<uint64_t>& px,
                           bool take_prices) {
  constexpr size_t per_call = 4096;
  for (size_t at = 0; at < opt_.instruments.size(); at += per_call) {
    const auto ids = std::span(opt_.instruments).subspan(at, std::min(per_call, opt_.instruments.size() - at));
    auto out = c.call(wire::lookup_instruments_body(ids));
    if (!out.ok || out.reply.results.size() != ids.size()) return false;
    std::lock_guard lk(last_mu_);
    for (size_t k = 0; k < ids.size(); ++k) {
      if (out.reply.results[k] != wire::result::ok || k >= out.reply.instruments.size()) continue;
      if (k < out.reply.instrument_sequences.size())
        sequence[at + k] = std::max(sequence[at + k], out.reply.instrument_sequences[k]);
      if (take_prices && out.reply.instruments[k].last_ticks != 0) {
        px[at + k] = out.reply.instruments[k].last_ticks;
        last_[at + k] = px[at + k];
      }
    }
  }
  return true;
}

void market_feed::run() {
  if (opt_.instruments.empty()) return;
  std::mt19937_64 rng(opt_.seed);
  // (A volatility of 0 is a flat walk: normal_distribution needs a spread above 0.)
  std::normal_distribution<double> step(0, std::max(opt_.volatility_bp, 1e-9));
  std::uniform_real_distribution<double> unit(0, 1);
  std::vector<uint64_t> px(opt_.instruments.size(), std::max<uint64_t>(1, opt_.start_ticks));
  std::vector<uint64_t> sequence(opt_.instruments.size(), 0);
  const uint64_t ticks_max = actors::market::notional_max / std::max<uint64_t>(1, opt_.definition.tick);
  size_t next = 0;
  bool defined = !opt_.define;
  // Requests sent and not answered (their prices, and whether they were sent before),
  // oldest first: sent again after a reconnect.
  std::deque<std::pair<std::vector<wire::price>, bool>> unanswered;
  uint64_t paced_from = 0;  // prices counted at the last (re)connect
  bool first = true, first_connect = true;
  while (!stop_) {
    if (!first) pause(disconnect_ ? disconnect_pause_ms_.load() : 100);  // (a stop ends it)
    first = false;
    disconnect_ = false;
    auto c = redial(opt_.host, opt_.port, opt_.gateway, opt_.secret);
    if (!c) {
      ++c_->errors;
      continue;
    }
    ++c_->connects;
    const uint32_t in_flight_max = std::max(1u, std::min(opt_.in_flight_max, c->welcome().in_flight_max));
    std::deque<uint64_t> in_flight;  // request ids, in the order of `unanswered`
    auto settle_oldest = [&]() {
      auto out = c->wait(in_flight.front());
      // Refused whole for good (the role missing, the body or a field refused): sending it
      // again would be refused again, forever: counted refused and dropped. What passes
      // (shutting_down, engine_failed, too_many_in_flight, ...) is sent again after a
      // reconnect, as a lost connection's requests are.
      if (!out.ok && out.server_error && wire::refused_for_good(out.error.code)) {
        ++c_->errors;
        c_->refused += unanswered.front().first.size();
        in_flight.pop_front();
        unanswered.pop_front();
        return true;
      }
      if (!out.ok) {
        ++c_->errors;
        return false;
      }
      in_flight.pop_front();
      // Sent again, a price the engine had is a repeat (ok) or, when a later one of the same
      // instrument had arrived too, older than its last: it arrived the first time.
      const bool again = unanswered.front().second;
      unanswered.pop_front();
      for (const auto r : out.reply.results)
        ++(r == wire::result::ok || (again && r == wire::result::sequence_out_of_order) ? c_->ok : c_->refused);
      return true;
    };
    if (!defined) {
      std::vector<wire::instrument_op> defs;
      for (uint64_t id : opt_.instruments) {
        wire::instrument_op op = opt_.definition;
        op.kind = wire::instrument_op_kind::define;
        op.instrument_id = id;
        actors::market::set_symbol(op, "S" + std::to_string(id));
        defs.push_back(op);
      }
      bool ok = true;
      for (size_t at = 0; at < defs.size() && ok; at += 4096) {
        const auto part = std::span(defs).subspan(at, std::min<size_t>(4096, defs.size() - at));
        auto out = c->call(wire::instrument_ops_body(part));
        ok = out.ok;
        if (ok)
          for (const auto r : out.reply.results) c_->defined += r == wire::result::ok;
      }
      if (!ok) {
        ++c_->errors;
        connected_ = false;
        continue;
      }
      defined = true;
    }
    // Each connect asks the engine where its instruments are: a feed started again (a new
    // process) counts on from the sequence the engine last took, and walks on from the
    // engine's last price (before, every price it sent was refused sequence_out_of_order,
    // and a walk restarted at start_ticks tripped a move halt); an engine restored to
    // another state is met the same way.
    if (!catch_up(*c, sequence, px, first_connect)) {
      ++c_->errors;
      continue;
    }
    first_connect = false;
    connected_ = true;  // (after the definitions: a script that trades at "ready" finds them)
    bool alive = true;
    // What was not answered goes again first, in order.
    for (auto& [batch, again] : unanswered) {
      const uint64_t rid = c->send(wire::prices_body(batch));
      if (rid == 0) {
        alive = false;
        break;
      }
      again = true;
      c_->resent += batch.size();
      in_flight.push_back(rid);
    }
    // Pacing starts again from now: prices not sent while away are not made up.
    const auto t0 = clock_type::now();
    paced_from = c_->sent;
    while (alive && !stop_ && !disconnect_) {
      const uint64_t sent = c_->sent;
      if (opt_.prices_max != 0 && sent >= opt_.prices_max) {
        while (alive && !in_flight.empty()) alive = settle_oldest();
        if (alive) c_->done = true;
        if (alive) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      // Prices due by now at the chosen rate.
      const double elapsed = std::chrono::duration<double>(clock_type::now() - t0).count();
      uint64_t due = paced_from + uint64_t(elapsed * opt_.prices_per_s);
      if (opt_.prices_max != 0) due = std::min(due, opt_.prices_max);
      if (due <= sent) {
        if (!in_flight.empty()) alive = settle_oldest();
        else std::this_thread::sleep_for(std::chrono::microseconds(500));
        continue;
      }
      if (in_flight.size() >= in_flight_max && !(alive = settle_oldest())) break;
      const uint32_t n = uint32_t(std::min<uint64_t>(due - sent, std::max(1u, opt_.batch_max)));
      std::vector<wire::price> batch;
      batch.reserve(n);
      {
        std::lock_guard lk(last_mu_);
        for (uint32_t k = 0; k < n; ++k, next = (next + 1) % px.size()) {
          double bp = step(rng);
          if (unit(rng) < opt_.jump_rate) {
            bp += unit(rng) < 0.5 ? -opt_.jump_bp : opt_.jump_bp;
            ++c_->jumps;
          }
          const double moved = double(px[next]) * (1.0 + bp / 10'000.0);
          px[next] = uint64_t(std::clamp(std::llround(moved), 1ll, (long long)std::min<uint64_t>(ticks_max, 1ull << 62)));
          batch.push_back({opt_.instruments[next], px[next], ++sequence[next]});
          last_[next] = px[next];
        }
      }
      unanswered.emplace_back(std::move(batch), false);
      c_->sent += n;
      const uint64_t rid = c->send(wire::prices_body(unanswered.back().first));
      if (rid == 0) break;
      in_flight.push_back(rid);
    }
    connected_ = false;
  }
}

}  // namespace mesob::tools
