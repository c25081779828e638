// metrics_render: the metrics exposition rendered in-process for tests, again while a
// read through the engine was given up (a slow host), so that the market's and the
// breakers' families are in it.
#pragma once

#include <chrono>
#include <string>
#include <thread>

#include "engine/metrics.hpp"

namespace mesob::test {

inline std::string render_answered(engine::engine& e, const engine::server* client = nullptr,
                                   const engine::server* admin = nullptr) {
  engine::engine_reads reads;
  std::string text;
  for (int i = 0; i < 50; ++i) {  // (a read given up is answered before another is sent)
    const uint64_t given_up = reads.given_up();
    text = engine::render_metrics(e, client, admin, reads);
    if (reads.given_up() == given_up) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return text;
}

}  // namespace mesob::test
