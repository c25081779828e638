// metrics: mesobd's figures in the Prometheus text exposition format (version 0.0.4),
// served over HTTP for a Prometheus server to scrape.
//
// render_metrics() reads what the engine and the servers already count (engine_stats,
// shard_reports, server_stats, the payouts held as the shards publish them) and, through
// the engine, two reads: the market's instruments and the breakers (not the payouts).
// Each read waits at most engine_reads::wait_ms; one not answered by then is given up
// (its families left out of that render, counted), and no other is sent until it is
// answered, so a stalled engine holds no scrape and gets no pile of reads. Labels are
// bounded: shard, port (client, admin), gateway id (the registry's, at most 1,024),
// currency, desk slot and payout state; no per-account label.
//
// metrics_http: one thread polling a listening socket and up to connections_max (16)
// connections at once, so a peer that connects and sends nothing delays no scrape. Each
// connection gets 2 s to send a request of at most 8 KiB; then it is answered: `GET
// /metrics` (200; the target in origin or absolute form), any other path (404), any
// other method (405), a request it cannot parse (400) or one too large (431), and closed
// once the answer is sent (2 s more at most). A client that sends nothing, trickles
// bytes or does not read the answer is cut off; a connection past the limit closes one
// whose answer is sent and that waits out its peer's close, else one still sending its
// request, else one whose answer is still being sent: of the address holding the most
// such, the oldest (a peer
// connecting in a loop pushes out its own connections, and a scraper from another
// address never goes while the peer holds more). Nothing a client sends reaches the
// engine, and
// a render starts at least render_gap_ms after the last one ended.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "engine/engine.hpp"
#include "engine/server.hpp"

namespace mesob::engine {

// The renders' reads through the engine (one caller at a time: the metrics thread).
class engine_reads {
 public:
  static constexpr int wait_ms = 1000;
  // r's reply; nothing when the engine does not answer it within wait_ms, or when one
  // given up earlier is still unanswered (then r is not sent).
  std::optional<reply> call(engine& e, request&& r);
  [[nodiscard]] uint64_t given_up() const { return given_up_; }

 private:
  std::shared_ptr<std::atomic<bool>> unanswered_;  // the last one given up: true once answered
  uint64_t given_up_ = 0;
};

// The exposition of everything mesobd counts; a server not (yet) serving may be null.
[[nodiscard]] std::string render_metrics(engine& e, const server* client, const server* admin, engine_reads& reads);

class metrics_http {
 public:
  // Listens on address:port (IPv4; port 0: any free one), or on `listen_fd` when given (a
  // non-blocking socket listening already: listen_on; owned from here), and serves
  // render() to scrapes.
  static std::unique_ptr<metrics_http> start(const std::string& address, uint16_t port,
                                             std::function<std::string()> render, std::string* error,
                                             int listen_fd = -1);
  static constexpr int listen_backlog = 16;
  ~metrics_http();  // stops: the listening socket closes, a scrape being answered finishes
  metrics_http(const metrics_http&) = delete;
  metrics_http& operator=(const metrics_http&) = delete;
  [[nodiscard]] uint16_t port() const { return port_; }

  static constexpr size_t request_bytes_max = 8192;
  static constexpr int request_timeout_ms = 2000;
  static constexpr size_t connections_max = 16;
  // Each render reads through the engine (every instrument, every breaker): a render
  // starts at least this long after the last one ended, a scrape sooner waiting its
  // turn, so that clients scraping in a loop cost the engine at most ten renders a
  // second however long each takes. The wait is in the
  // loop that accepts, which also paces a peer connecting in a loop: a loop that went on
  // accepting while scrapes waited for a shared render (tried: 2026-12-05) let such a
  // peer evict scrapers between their connect and their request more often (31 of 32
  // answered, against 18 of 18 in five local runs and 17 of 18 in one CI run of this
  // loop). Evicting by address (the one holding the most requests still coming in)
  // keeps such a peer from evicting scrapers of other addresses at all.
  static constexpr int render_gap_ms = 100;

 private:
  metrics_http() = default;
  void run();
  // The whole HTTP answer to a request whose head is complete (or too large).
  std::string answer(const std::string& request);
  int fd_ = -1;
  uint16_t port_ = 0;
  std::function<std::string()> render_;
  std::chrono::steady_clock::time_point last_render_{};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace mesob::engine
