// sequencer_gate: an engine clock that can hold the sequencer where it reads the time, so
// that a test can queue requests it will then take in one pass (or find the queue full).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "support/engine_fixture.hpp"

namespace mesob::test {

class sequencer_gate {
 public:
  // The clock to put in engine::config::clock (wall time; held while the gate is shut).
  [[nodiscard]] std::function<uint64_t()> clock() const {
    return [s = s_] {
      std::unique_lock lk(s->mu);
      if (s->armed) {
        s->armed = false;
        s->held = true;
        s->cv.notify_all();
        s->cv.wait(lk, [&] { return s->released; });
      }
      return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count());
    };
  }
  // Holds the sequencer at its next reading of the clock; false (released) if it did not
  // read it within 10 s.
  [[nodiscard]] bool hold() {
    std::unique_lock lk(s_->mu);
    s_->armed = true;
    const bool held = s_->cv.wait_for(lk, std::chrono::seconds(10), [&] { return s_->held; });
    lk.unlock();
    if (!held) release();
    return held;
  }
  // A test engine (test_config) on this gate's clock.
  [[nodiscard]] std::unique_ptr<engine::engine> open_engine_on(const std::string& dir, uint32_t shards = 2) const {
    auto cfg = test_config(dir, shards);
    cfg.clock = clock();
    return open_engine(cfg);
  }
  // Lets it go when the guard goes (whatever fails in between, the sequencer goes on);
  // reset() lets it go at once.
  using releaser = std::unique_ptr<sequencer_gate, void (*)(sequencer_gate*)>;
  [[nodiscard]] releaser release_at_exit() {
    return releaser(this, [](sequencer_gate* g) { g->release(); });
  }
  // Lets it go (and every later reading through).
  void release() {
    {
      std::lock_guard lk(s_->mu);
      s_->armed = false;
      s_->released = true;
    }
    s_->cv.notify_all();
  }

 private:
  struct state {
    std::mutex mu;
    std::condition_variable cv;
    bool armed = false, held = false, released = false;
  };
  std::shared_ptr<state> s_ = std::make_shared<state>();
};

}  // namespace mesob::test
