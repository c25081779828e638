// async_client: the C++ client library's asynchronous, pipelined API.
//
//   wire::async_client::options o;  o.port = 7400;  o.gateway = "dev";  o.secret = ...;
//   auto c = wire::async_client::connect(o, &err);
//   c->submit(wire::create_transfers_body(ts), [](wire::client::outcome&& r) { ... });
//   auto f = c->submit(wire::lookup_accounts_body(ids));   // std::future<outcome>
//
// Any number of threads may submit; one reader thread completes callbacks (they must
// not block). The reader never writes: what it sends (a request a callback submits, one
// an answer makes room for, a reconnect's resends, a keepalive ping) goes to a queue
// that a sender thread writes, or any thread's write ahead of its own, in order. A
// reader waiting on a write would deadlock with a server that stops reading a session
// until its answers are read (mesobd does, past out_bytes_max). At most the server's in-flight limit (from Welcome) is outstanding:
// submit() waits for room, except on the reader thread (a callback or on_push), where
// it cannot wait for the answers that make room: what does not fit is sent one per
// answer. A request past the server's frame limit (from Welcome) is refused at once,
// never sent. If the connection fails, or a request has waited timeout_ms for its answer
// with nothing heard, the reader reconnects (backoff doubling up to 1 s) and sends the
// unanswered requests again (as many at once as the new session's in-flight limit
// takes, the rest one per answer). Sending again is safe for what a repeat leaves as it
// is (wire::repeat_changes_nothing: creates keyed by client-chosen ids return the first
// outcome, look-ups change nothing); the others (an account status change, equb leave,
// instrument halt, rebalance, ...) could undo what happened in between, and complete
// with `failure` and `unknown` set instead, if they were written before the connection
// failed (one still waiting for a free window then is sent like any other).
// After `reconnect_attempts` failed connects in a row the client is down: every
// outstanding request completes with `failure` and `unknown` set (it may have been
// applied: look it up, or submit a create again, same ids, to learn its outcome), and
// every request submitted while it is down fails at once with `failure` alone (never
// sent). The reader goes on trying, once a second, for as long as the client lives: the
// first connect that succeeds ends the down time (a gateway's listener of pushes outlives
// an engine's restart however long it takes). Reconnects that connect but bring no
// answer count in a row too: after `reconnect_attempts` of them the outstanding requests
// complete the same way, and the client reconnects for a session with a free window.
// Only a refusal of the credentials or role (three in a row) ends the client for good, as
// does closing it. While it is down a refused submit's callback runs on the submitting
// thread, at once: a callback that submits again on failure must not loop.
// A response may overtake a push the server queued earlier for the session (pushes past
// the server's queue limit wait in its backlog; responses do not).
// A request's timeout runs from when it was written, whatever else comes meanwhile
// (pushes, pongs): an answer that does not come is a lost connection even while the
// server pushes. With nothing outstanding and nothing heard for keepalive_ms, the reader
// pings (the server closes sessions idle for its idle timeout, 5 minutes by default).
// Callbacks and on_push must not throw (what they throw is reported on stderr and
// dropped) and must not destroy the client (that stops the process with a message).
// Destroying it while other threads are inside submit() is safe: they return, their
// requests failed "client closed"; calling submit() after the destructor began is not.
// The caller's `interrupt` flag applies to the first connect only: the reader thread's
// reads go on through signals.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "wire/client.hpp"

namespace mesob::wire {

class async_client {
 public:
  using callback = std::function<void(client::outcome&&)>;
  struct options : client::options {
    int reconnect_attempts = 20;    // failed in a row before the client is down (1..1000000)
    int reconnect_backoff_ms = 20;  // doubled per failed attempt, at most 1 s (1..1000)
    int keepalive_ms = 60'000;      // a ping after this long idle and unheard (0: none; else 100..3600000)
    // Frames the server pushes (instructions, events), on the reader thread.
    std::function<void(push_msg&&)> on_push;
  };

  static std::unique_ptr<async_client> connect(const options& o, std::string* error);
  // Outstanding requests complete with failure "client closed"; a reconnect under way is
  // cut short (its backoff, its handshake).
  ~async_client();
  async_client(const async_client&) = delete;
  async_client& operator=(const async_client&) = delete;

  void submit(std::vector<uint8_t> request_body, callback done);
  std::future<client::outcome> submit(std::vector<uint8_t> request_body);
  // Several requests in one write (as many as the in-flight limit leaves room for; the
  // rest follow in further writes): requests ready together leave together, one system
  // call and one wake-up of the server for all of them. Each completes on its own.
  struct request {
    std::vector<uint8_t> body;
    callback done;
  };
  void submit(std::vector<request> requests);

  [[nodiscard]] uint64_t reconnects() const;
  // Requests written before a connection failed and sent again on the next (one never
  // written that goes after a reconnect is not counted).
  [[nodiscard]] uint64_t resent() const;
  // Why the client is down (empty while connected or still within its reconnect attempts).
  [[nodiscard]] std::string down() const;

 private:
  struct pending {
    std::shared_ptr<const std::vector<uint8_t>> frame;  // kept for a resend
    callback done;
    // Last queued to write; time_point::max() while it waits for room in the window
    // (its timeout runs from its write, so waiting for room does not count).
    std::chrono::steady_clock::time_point sent;
    bool resend = false;  // written before a reconnect, to be sent again
    // Handed to a send at least once (it may have reached the server). One never written
    // is sent after a reconnect whatever it is, and fails without `unknown`.
    bool written = false;
  };
  async_client() = default;
  void reader_loop();
  void sender_loop();
  // Writes what is queued, in order, marking each request written as it goes (under
  // send_mu_; takes mu_).
  void send_queued();
  // Queues request `id`'s frame (null and 0: a ping) for the current connection, for the
  // sender thread (under mu_).
  void queue_locked(std::shared_ptr<const std::vector<uint8_t>> frame, uint64_t id);
  // Under no lock, the connection given up (conn_down_): true when connected again, false
  // when closing or refused for good.
  bool reconnect();
  // A reconnect's `attempt` (counted from 1) failed: past reconnect_attempts, down.
  void attempt_failed(int attempt);
  void fail_all(const std::string& why);
  // Why a request frame is not sent again after a reconnect (empty: it is; see
  // repeat_changes_nothing).
  static std::string not_sent_again(const std::vector<uint8_t>& frame);
  // Whether the oldest unanswered request has waited timeout_ms (under mu_).
  [[nodiscard]] bool overdue() const;
  // The reader's deadline for its next read: the oldest answer's due time, or the next
  // keepalive ping's when nothing is outstanding (the reader thread's).
  void plan_read();
  // The limits a session's Welcome sets, kept within what this client takes (mu_).
  void take_limits(const welcome_msg& w);

  options opt_;
  mutable std::mutex mu_;  // pending_, next_id_, state
  std::condition_variable room_;
  std::mutex send_mu_;     // writes to the socket, and swapping the connection
  std::unique_ptr<client> conn_;
  std::map<uint64_t, pending> pending_;
  uint64_t next_id_ = 1;
  uint32_t in_flight_max_ = 1;
  uint32_t frame_bytes_max_ = frame_bytes_max_ceiling;  // the session's request body limit
  bool closing_ = false;
  std::string broken_;     // set when the server refused the credentials: for good
  std::string down_;       // set while reconnects fail past reconnect_attempts
  std::condition_variable wake_;  // the reconnect's backoff, cut short by closing (mu_)
  client* connecting_ = nullptr;  // a reconnect's handshake under way (mu_): shut down by closing
  uint64_t reconnects_ = 0, resent_ = 0;
  // Connections so far; changed under mu_ and send_mu_ together (read under either). A
  // request registered under one generation is written only if it is still current.
  uint64_t conn_gen_ = 0;
  // Registered requests not written yet, by id: what a reconnect could not resend at once
  // (the new session's window is smaller than what was unanswered), and what the reader
  // thread submitted into a full window. Each answer sends the next (mu_).
  std::deque<uint64_t> send_later_;
  // Frames to write, in order, each for the connection of its generation (a ping: no
  // frame, id 0): the reader thread's, which the sender thread writes, and a submit's,
  // which it writes itself after what is queued before (mu_). At most the requests the
  // window holds and a ping. A request is marked written when it is handed to a send,
  // not when queued: one a reconnect drops from the queue was never written.
  struct queued {
    std::shared_ptr<const std::vector<uint8_t>> frame;
    uint64_t id = 0;
    uint64_t gen = 0;
  };
  std::vector<queued> out_q_;
  std::vector<queued> sending_;     // send_queued's (send_mu_)
  std::vector<uint8_t> joined_;     // send_queued's (send_mu_)
  std::condition_variable out_cv_;  // out_q_ filled by the reader thread, or closing (mu_)
  // The connection was given up (a reconnect under way): nothing more is written to it,
  // and what waits goes to the next as never written (mu_).
  bool conn_down_ = false;
  std::string last_error_;  // the reader thread's latest connection error
  // Threads inside submit() (mu_): the destructor waits for them to leave.
  int submitters_ = 0;
  std::condition_variable submitters_left_;
  std::atomic<std::thread::id> reader_id_{};  // set by the reader thread itself, first
  // The reader thread's: the oldest answer's due time as last computed (earlier than or
  // equal to the true one: recomputed when reached), and the last keepalive ping.
  std::optional<std::chrono::steady_clock::time_point> answer_due_;
  std::chrono::steady_clock::time_point pinged_{};
  int reconnects_unanswered_ = 0;   // (the reader thread's) reconnects in a row without an answer
  std::thread sender_;
  std::thread reader_;
};

}  // namespace mesob::wire
