// sim_thread: what every simulated gateway session (tools/gateway_sim.hpp,
// tools/market_feed.hpp, tools/broker_sim.hpp) runs on: one thread, started and stopped
// from outside, connected with the handshake as a gateway, and a disconnect on command
// (the connection dropped now, as when a gateway crashes, and made again after a pause).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "wire/client.hpp"

namespace mesob::tools {

class sim_thread {
 public:
  sim_thread() = default;
  sim_thread(const sim_thread&) = delete;
  sim_thread& operator=(const sim_thread&) = delete;
  virtual ~sim_thread() { stop(); }  // a subclass stops first: its run() reads its members

  void start() {
    stop_ = false;
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Drops the connection now and connects again after `pause_ms`.
  void disconnect(uint64_t pause_ms) {
    disconnect_pause_ms_ = pause_ms;
    disconnect_ = true;
  }
  [[nodiscard]] bool connected() const { return connected_.load(); }

 protected:
  virtual void run() = 0;
  // Connects and authenticates as `gateway` (2 s for each answer). On a failure: says
  // why on stderr (once, until the reason changes or a connection is made), waits before
  // the next try (100 ms doubling to 5 s; a stop ends the wait), and returns nullptr.
  // Before, a wrong secret or a missing role was tried ten times a second, never said.
  std::unique_ptr<wire::client> redial(const std::string& host, uint16_t port, const std::string& gateway,
                                       const std::vector<uint8_t>& secret) {
    wire::client::options co;
    co.host = host;
    co.port = port;
    co.gateway = gateway;
    co.secret = secret;
    co.timeout_ms = 2000;
    std::string err;
    auto c = wire::client::connect(co, &err);
    if (c) {
      said_.clear();
      retry_ms_ = retry_first_ms;
      return c;
    }
    if (err != said_) {
      std::fprintf(stderr, "sim: %s: cannot connect (%s); trying again\n", gateway.c_str(), err.c_str());
      said_ = err;
    }
    pause(retry_ms_);
    retry_ms_ = std::min(retry_ms_ * 2, retry_max_ms);
    return nullptr;
  }
  // Sleeps `ms`, or until a stop.
  void pause(uint64_t ms) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!stop_ && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // A disconnect asked for: shuts the connection down and waits out the pause (or a stop).
  bool take_disconnect(wire::client& c) {
    if (!disconnect_.exchange(false)) return false;
    c.shutdown();
    connected_ = false;
    pause(disconnect_pause_ms_.load());
    return true;
  }

  // Waits up to `wait_ms` for a frame, then takes every frame already buffered: each
  // pushed frame to on_push(push_msg) (one that does not parse counts in `errors`), each
  // response or error to on_reply(request id, outcome). False when the connection is lost.
  template <class OnPush, class OnReply>
  static bool take_frames(wire::client& c, int wait_ms, std::atomic<uint64_t>& errors, OnPush&& on_push,
                          OnReply&& on_reply) {
    std::string err;
    c.set_timeout_ms(std::max(wait_ms, 0));
    wire::frame_reader::frame f;  // in place: each is handled before the next read
    if (!c.next_frame(&f, &err)) return c.timed_out();
    do {
      const auto kind = wire::frame_kind(f.header.kind);
      if (kind == wire::frame_kind::push) {
        wire::push_msg pm;
        if (wire::parse_push(f.body, &pm, &err)) on_push(pm);
        else errors.fetch_add(1);
      } else if (kind == wire::frame_kind::response || kind == wire::frame_kind::error) {
        on_reply(f.header.request_id, wire::client::to_outcome(f.header, f.body));
      }
      c.set_timeout_ms(0);  // frames already buffered are taken without waiting
    } while (c.next_frame(&f, &err));
    return c.timed_out();
  }

  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
  std::atomic<bool> disconnect_{false};
  std::atomic<uint64_t> disconnect_pause_ms_{0};

 private:
  static constexpr uint64_t retry_first_ms = 100, retry_max_ms = 5000;
  std::thread thread_;
  std::string said_;  // the connect failure last said (redial, on the thread)
  uint64_t retry_ms_ = retry_first_ms;
};

}  // namespace mesob::tools
