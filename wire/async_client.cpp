#include "wire/async_client.hpp"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <exception>
#include <span>
#include <tuple>
#include <vector>

#include "wire/assert.hpp"

namespace mesob::wire {

namespace {
// The most requests a session may have in flight (the server's own bound): a Welcome
// asking for more is taken as this.
constexpr uint32_t in_flight_ceiling = 65'536;

// A caller's callback, on a thread of the client's (the reader, or a destructor's
// fail_all): what it throws is reported and dropped, not left to end the process.
template <class F>
void guarded(const char* what, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "async_client: %s threw (%s): dropped\n", what, e.what());
  } catch (...) {
    std::fprintf(stderr, "async_client: %s threw: dropped\n", what);
  }
}

// `sent`: the request may have reached the server (it was registered and written, or
// about to be): its outcome is unknown.
client::outcome failed(const std::string& why, bool sent) {
  client::outcome o;
  o.failure = why;
  o.unknown = sent;
  return o;
}
}  // namespace

std::unique_ptr<async_client> async_client::connect(const options& o, std::string* error) {
  if (o.timeout_ms == 0) {  // the reader would spin, and take every wait for a lost connection
    *error = "async_client: timeout_ms must not be 0 (give a wait in ms, or < 0 for none)";
    return nullptr;
  }
  if (o.reconnect_attempts < 1 || o.reconnect_attempts > 1'000'000) {
    *error = "async_client: reconnect_attempts must be 1..1000000";
    return nullptr;
  }
  if (o.reconnect_backoff_ms < 1 || o.reconnect_backoff_ms > 1000) {
    *error = "async_client: reconnect_backoff_ms must be 1..1000";
    return nullptr;
  }
  if (o.keepalive_ms != 0 && (o.keepalive_ms < 100 || o.keepalive_ms > 3'600'000)) {
    *error = "async_client: keepalive_ms must be 0 (no pings) or 100..3600000";
    return nullptr;
  }
  auto conn = client::connect(o, error);
  if (!conn) return nullptr;
  std::unique_ptr<async_client> c(new async_client());
  c->opt_ = o;
  c->opt_.interrupt = nullptr;  // the caller's flag ends its own connect: the reconnects go on
  c->take_limits(conn->welcome());
  c->conn_ = std::move(conn);
  // The reconnects' connects end when the client closes (a caller's own cancel_fd is
  // for its first connect only).
  c->opt_.cancel_fd = ::eventfd(0, EFD_CLOEXEC);
  if (c->opt_.cancel_fd < 0) {
    *error = "async_client: eventfd: " + std::string(std::strerror(errno));
    return nullptr;
  }
  c->sender_ = std::thread([p = c.get()] { p->sender_loop(); });
  c->reader_ = std::thread([p = c.get()] { p->reader_loop(); });
  return c;
}

async_client::~async_client() {
  // The reader thread cannot join itself: a callback destroying its own client is a bug
  // in the caller, stopped here with a message (join would throw in a destructor).
  MESOB_ASSERT_MSG(std::this_thread::get_id() != reader_id_.load(),
                   "async_client destroyed from its own callback or on_push (the reader thread)");
  {
    std::lock_guard lk(mu_);
    closing_ = true;
    if (connecting_) connecting_->shutdown();  // a reconnect's handshake ends at once
    // The connection is replaced under mu_ too, so this is the current one: a send blocked
    // on it (a resend, a submit's write, both holding send_mu_) fails at once, not after
    // the socket's send timeout.
    conn_->shutdown();
  }
  const uint64_t one = 1;
  if (opt_.cancel_fd >= 0) (void)!::write(opt_.cancel_fd, &one, sizeof one);  // and its connect
  room_.notify_all();
  wake_.notify_all();
  out_cv_.notify_all();
  {
    // Threads inside submit() see closing_ and leave (a waiting one fails what is left
    // "client closed"): only then may the members they use go.
    std::unique_lock lk(mu_);
    submitters_left_.wait(lk, [&] { return submitters_ == 0; });
  }
  if (reader_.joinable()) reader_.join();  // (not started: its thread could not be made)
  if (sender_.joinable()) sender_.join();
  if (opt_.cancel_fd >= 0) ::close(opt_.cancel_fd);
  fail_all("client closed");
}

void async_client::submit(std::vector<uint8_t> request_body, callback done) {
  std::vector<request> one;
  one.push_back({std::move(request_body), std::move(done)});
  submit(std::move(one));
}

void async_client::submit(std::vector<request> requests) {
  std::vector<std::shared_ptr<const std::vector<uint8_t>>> unsent;  // registered, not yet written
  std::vector<uint64_t> unsent_ids;
  uint64_t gen = 0;  // the connection they were registered on
  // On the reader thread (a callback, on_push) a full window is not waited out: only
  // this thread reads the answers that would make room. Nor is a write: it queues.
  const bool on_reader = std::this_thread::get_id() == reader_id_.load(std::memory_order_relaxed);
  // Queued under the generation they were registered in, and written, with what was
  // queued before, in one send (the reader thread's by the sender thread).
  const auto write = [&] {
    if (unsent.empty()) return;
    {
      std::lock_guard lk(mu_);
      for (size_t k = 0; k < unsent.size(); ++k) out_q_.push_back({std::move(unsent[k]), unsent_ids[k], gen});
      if (on_reader) out_cv_.notify_one();
    }
    unsent.clear();
    unsent_ids.clear();
    if (on_reader) return;
    std::lock_guard sl(send_mu_);
    send_queued();
  };
  std::vector<std::pair<callback, std::string>> refused;  // completed after the lock
  // Counted inside submit() while it uses the client (the destructor waits), left before
  // the refused requests' callbacks run (one may destroy the client). Declared before
  // the lock: an exception leaves with the lock released first.
  struct inside_t {
    async_client& c;
    bool in = false;
    void leave() {
      if (!in) return;
      in = false;
      std::lock_guard g(c.mu_);
      if (--c.submitters_ == 0 && c.closing_) c.submitters_left_.notify_all();
    }
    ~inside_t() { leave(); }
  } inside{*this};
  std::unique_lock lk(mu_);
  ++submitters_;
  inside.in = true;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (!requests[i].done) requests[i].done = [](client::outcome&&) {};  // (no one waits for it)
    if (requests[i].body.size() > frame_bytes_max_) {
      // Sent, the server would answer frame_too_large and close the session, and every
      // unanswered request would go again.
      refused.emplace_back(std::move(requests[i].done),
                           "client: a request body of " + std::to_string(requests[i].body.size()) +
                               " bytes is past the server's frame limit of " + std::to_string(frame_bytes_max_) +
                               " bytes (not sent; send fewer items a request)");
      continue;
    }
    if (!on_reader && !closing_ && broken_.empty() && down_.empty() && pending_.size() >= in_flight_max_) {
      // No room: what is registered goes out first (its answers make the room).
      lk.unlock();
      write();
      lk.lock();
      room_.wait(lk, [&] {
        return closing_ || !broken_.empty() || !down_.empty() || pending_.size() < in_flight_max_;
      });
    }
    if (closing_ || !broken_.empty() || !down_.empty()) {
      const std::string why = closing_ ? "client closed" : !broken_.empty() ? broken_ : down_;
      lk.unlock();
      write();
      inside.leave();
      for (auto& [done, what] : refused) done(failed(what, false));
      for (size_t k = i; k < requests.size(); ++k)
        if (requests[k].done) requests[k].done(failed(why, false));
      return;
    }
    const uint64_t id = next_id_++;
    auto frame = std::make_shared<const std::vector<uint8_t>>(encode_frame(frame_kind::request, id, requests[i].body));
    const auto now = std::chrono::steady_clock::now();
    if (pending_.size() >= in_flight_max_) {  // the reader thread, the window full: after an answer
      pending_[id] = {std::move(frame), std::move(requests[i].done), std::chrono::steady_clock::time_point::max()};
      send_later_.push_back(id);
      continue;
    }
    if (unsent.empty()) gen = conn_gen_;
    unsent.push_back(frame);
    unsent_ids.push_back(id);
    pending_[id] = {std::move(frame), std::move(requests[i].done), now};  // the reader may erase it before the write
  }
  lk.unlock();
  write();
  inside.leave();
  for (auto& [done, what] : refused) done(failed(what, false));
}

std::future<client::outcome> async_client::submit(std::vector<uint8_t> request_body) {
  auto promise = std::make_shared<std::promise<client::outcome>>();
  auto f = promise->get_future();
  submit(std::move(request_body), [promise](client::outcome&& o) { promise->set_value(std::move(o)); });
  return f;
}

void async_client::reader_loop() {
  reader_id_.store(std::this_thread::get_id());  // before any callback of this thread's submits
  pthread_setname_np(pthread_self(), "mesob.client");
  for (;;) {
    plan_read();
    frame_reader::frame f;  // in place: handled before the next read
    std::string err;
    if (conn_->next_frame(&f, &err)) {
      if (f.header.kind == uint16_t(frame_kind::push)) {
        push_msg m;
        std::string why;
        if (opt_.on_push && parse_push(f.body, &m, &why)) guarded("on_push", [&] { opt_.on_push(std::move(m)); });
        continue;
      }
      if (f.header.kind != uint16_t(frame_kind::response) && f.header.kind != uint16_t(frame_kind::error)) continue;
      callback done;
      {
        std::lock_guard lk(mu_);
        auto it = pending_.find(f.header.request_id);
        if (it == pending_.end()) continue;  // answered before (a resend's second answer)
        done = std::move(it->second.done);
        pending_.erase(it);
        reconnects_unanswered_ = 0;
        // The next request waiting for room (queued: on a failed write the next read
        // fails, and the reconnect sends it again).
        while (!send_later_.empty()) {
          const auto later = pending_.find(send_later_.front());
          send_later_.pop_front();
          if (later == pending_.end()) continue;
          later->second.sent = std::chrono::steady_clock::now();
          if (later->second.resend) ++resent_;
          queue_locked(later->second.frame, later->first);
          break;
        }
      }
      room_.notify_all();
      guarded("a request's callback", [&] { done(client::to_outcome(f.header, f.body)); });
      continue;
    }
    // A signal: the caller's interrupt flag is for its own connect (connect() dropped it
    // for this thread), so this read goes on.
    if (conn_->interrupted()) continue;
    bool waiting = false, ping = false;
    {
      std::lock_guard lk(mu_);
      if (closing_) return;
      // A receive's timeout counts from the start of a wait that may have begun, idle,
      // just before the oldest request was sent: broken only when a request has waited
      // timeout_ms for its answer. Idle and unheard for keepalive_ms: a ping.
      if (conn_->timed_out()) {
        if (pending_.empty()) {
          ping = opt_.keepalive_ms > 0 && std::chrono::steady_clock::now() - std::max(conn_->last_heard(), pinged_) >=
                                              std::chrono::milliseconds(opt_.keepalive_ms);
          if (!ping) continue;
        } else if (!overdue()) {
          continue;
        }
      }
      waiting = !pending_.empty();
    }
    if (ping) {
      pinged_ = std::chrono::steady_clock::now();
      std::lock_guard lk(mu_);
      queue_locked(nullptr, 0);  // the pong is skipped above; on a failed write the next read fails: reconnect
      continue;
    }
    last_error_ = err;
    {
      // Given up, before any callback below runs (one may submit again): a write blocked
      // on it (holding send_mu_, which the reconnect's swap takes) fails at once, not at
      // the socket's send timeout, and nothing more is written to it.
      std::lock_guard lk(mu_);
      conn_->shutdown();
      conn_down_ = true;
    }
    // Reconnects that each meet the same end (no answer in time, or the server closing
    // the session) before any answer arrives are attempts too: past the limit, what is
    // outstanding completes unknown, and one more reconnect gives what comes next a
    // session with a free window (the old one's still holds what was failed here).
    if (waiting && ++reconnects_unanswered_ > opt_.reconnect_attempts) {
      reconnects_unanswered_ = 0;
      fail_all("client: " + std::to_string(opt_.reconnect_attempts) +
               " reconnects in a row brought no answer (last: " + err + ")");
    }
    if (!reconnect()) {
      {
        std::lock_guard lk(mu_);
        if (closing_) return;
        broken_ = "client: the connection failed (" + err + ") and the server refused the reconnect (last: " +
                  last_error_ + ")";
        down_.clear();
      }
      room_.notify_all();
      fail_all(broken_);
      return;
    }
  }
}

bool async_client::reconnect() {
  int backoff = opt_.reconnect_backoff_ms;
  int refused_in_a_row = 0;
  for (int attempt = 1;; ++attempt) {
    {
      std::unique_lock lk(mu_);
      if (wake_.wait_for(lk, std::chrono::milliseconds(backoff), [&] { return closing_; })) return false;
    }
    backoff = std::min(backoff * 2, 1000);
    std::string err;
    protocol_error refusal{};
    auto fresh = client::connect_raw(opt_, &err);
    if (fresh) {
      {
        std::lock_guard lk(mu_);
        if (closing_) return false;
        connecting_ = fresh.get();  // the destructor may shut it down from here
      }
      const bool shook = fresh->handshake(&err, &refusal);
      {
        std::lock_guard lk(mu_);
        connecting_ = nullptr;
        if (closing_) return false;
      }
      if (!shook) fresh.reset();
    }
    if (!fresh) {
      last_error_ = err;
      // Credentials refused, or a role taken away: another attempt meets the same answer.
      // (Three in a row: a refusal on a congested link may not be the credentials' fault.)
      refused_in_a_row = refusal == protocol_error::auth_failed || refusal == protocol_error::role_denied
                             ? refused_in_a_row + 1
                             : 0;
      if (refused_in_a_row >= 3) return false;
      attempt_failed(attempt);
      continue;
    }
    std::unique_lock sl(send_mu_);
    uint64_t again = 0;
    std::vector<std::tuple<callback, std::string, bool>> not_again;  // completed after the locks
    {
      std::lock_guard lk(mu_);
      if (closing_) return false;  // closed meanwhile: the destructor shut down the old one only
      conn_ = std::move(fresh);  // under mu_ too: the destructor shuts down the current one
      ++reconnects_;
      ++conn_gen_;  // with the snapshot below: what was registered before goes out here
      conn_down_ = false;
      down_.clear();
      take_limits(conn_->welcome());
      // In request-id order, as many as the new session's window takes; the rest one per
      // answer (sent past the window, they would be answered too_many_in_flight, which
      // says nothing of whether the first send was applied). Queued, ahead of any write
      // that follows: the old connection's queue goes.
      send_later_.clear();
      out_q_.clear();
      const auto now = std::chrono::steady_clock::now();
      for (auto it = pending_.begin(); it != pending_.end();) {
        auto& [id, p] = *it;
        // Never written (it waited for a free window): nothing of it reached the server.
        std::string why = p.written ? not_sent_again(*p.frame) : std::string();
        if (const size_t body = p.frame->size() - frame_header_bytes; why.empty() && body > frame_bytes_max_)
          // Sent, the new session would answer frame_too_large and close (an engine
          // started again with a smaller limit), failing every request behind it.
          why = "client: this request's body of " + std::to_string(body) + " bytes is past the new session's frame limit of " +
                std::to_string(frame_bytes_max_) + " bytes: not sent again" +
                (p.written ? " (it may have been applied before the connection failed)" : "");
        if (!why.empty()) {
          not_again.emplace_back(std::move(p.done), std::move(why), p.written);
          it = pending_.erase(it);
          continue;
        }
        p.resend = p.written;  // (one never written goes for the first time)
        if (again < in_flight_max_) {
          ++again;
          if (p.resend) ++resent_;
          p.sent = now;
          queue_locked(p.frame, id);
        } else {
          p.sent = std::chrono::steady_clock::time_point::max();  // not timed while it waits for room
          send_later_.push_back(id);
        }
        ++it;
      }
    }
    sl.unlock();
    if (!not_again.empty()) {
      room_.notify_all();
      for (auto& [done, why, written] : not_again) guarded("a request's callback", [&] { done(failed(why, written)); });
    }
    return true;
  }
}

void async_client::queue_locked(std::shared_ptr<const std::vector<uint8_t>> frame, uint64_t id) {
  out_q_.push_back({std::move(frame), id, conn_gen_});
  out_cv_.notify_one();
}

void async_client::send_queued() {
  sending_.clear();
  {
    std::lock_guard lk(mu_);
    // Marked written here, under send_mu_ (which a reconnect's swap takes): what a
    // reconnect dropped from the queue, or what finds the connection given up, was never
    // written and goes to the next connection as such. What was registered before a
    // reconnect, the reconnect sent; what failed meanwhile (down, closing) goes nowhere.
    for (auto& e : out_q_) {
      if (conn_down_ || e.gen != conn_gen_) continue;
      if (e.id != 0) {
        const auto it = pending_.find(e.id);
        if (it == pending_.end()) continue;
        it->second.written = true;
      }
      sending_.push_back(std::move(e));
    }
    out_q_.clear();
  }
  // Frames in one write, a ping between them in its place; on failure the reader's next
  // read fails and the reconnect sends what is unanswered again.
  std::string err;
  if (sending_.size() == 1 && sending_.front().frame) {  // (no copy)
    (void)conn_->send_bytes(*sending_.front().frame, &err);
  } else {
    const auto flush = [&] {
      if (!joined_.empty()) (void)conn_->send_bytes(joined_, &err);
      joined_.clear();
    };
    for (const auto& e : sending_) {
      if (!e.frame) {
        flush();
        // Request id 0: the inner client's own count restarts at every connection and
        // would meet this client's numbers (an Error answering the ping, its gateway cut
        // off, failed the request that had the ping's number, done or not).
        (void)conn_->ping(&err, /*unnumbered=*/true);
      } else {
        joined_.insert(joined_.end(), e.frame->begin(), e.frame->end());
      }
    }
    flush();
    if (joined_.capacity() > (4u << 20)) std::vector<uint8_t>().swap(joined_);  // (a big write's buffer goes)
  }
  sending_.clear();  // (the frames stay with their requests for a resend)
}

void async_client::sender_loop() {
  pthread_setname_np(pthread_self(), "mesob.client.tx");
  for (;;) {
    {
      std::unique_lock lk(mu_);
      out_cv_.wait(lk, [&] { return closing_ || !out_q_.empty(); });
      if (closing_) return;
    }
    // send_mu_ before taking the queue: a submit's write then either comes first and
    // sends the queue ahead of its own, or after what this sends.
    std::lock_guard sl(send_mu_);
    send_queued();
  }
}

void async_client::attempt_failed(int attempt) {
  if (attempt < opt_.reconnect_attempts) return;
  {
    std::lock_guard lk(mu_);
    if (!down_.empty()) return;
    down_ = "client: the connection failed and " + std::to_string(opt_.reconnect_attempts) +
            " reconnects failed; still trying once a second (last: " + last_error_ + ")";
  }
  // Down: what waits completes now, and what comes is refused at once, until a connect
  // succeeds (the attempts go on).
  room_.notify_all();
  fail_all(down());
}

std::string async_client::not_sent_again(const std::vector<uint8_t>& frame) {
  parsed_request r;
  error_msg e;
  const auto body = std::span<const uint8_t>(frame).subspan(std::min(frame.size(), frame_header_bytes));
  // A body the server refuses changes nothing, however often it is sent.
  if (!parse_request(body, &r, &e) || repeat_changes_nothing(r)) return {};
  return "client: the connection failed before the answer to this " + std::string(operation_name(r.op)) +
         " request, which is not sent again: applied twice it could undo what happened in between (look the "
         "state up, then decide)";
}

void async_client::fail_all(const std::string& why) {
  std::map<uint64_t, pending> left;
  {
    std::lock_guard lk(mu_);
    left.swap(pending_);
    send_later_.clear();
  }
  room_.notify_all();
  for (auto& [id, p] : left) guarded("a request's callback", [&] { p.done(failed(why, p.written)); });
}

void async_client::take_limits(const welcome_msg& w) {
  // 0 says no limit (as the sync client takes it); nothing past the protocol's bounds.
  in_flight_max_ = std::clamp<uint32_t>(w.in_flight_max, 1, in_flight_ceiling);
  frame_bytes_max_ = w.frame_bytes_max == 0 ? frame_bytes_max_ceiling : std::min(w.frame_bytes_max, frame_bytes_max_ceiling);
}

void async_client::plan_read() {
  using clock = std::chrono::steady_clock;
  std::optional<clock::time_point> until;
  bool idle = false;
  {
    std::lock_guard lk(mu_);
    idle = pending_.empty();
    if (idle) {
      answer_due_.reset();
    } else if (opt_.timeout_ms > 0 && (!answer_due_ || clock::now() >= *answer_due_)) {
      // Computed when due (an older answer may have come since: then it is later now).
      auto oldest = clock::time_point::max();
      for (const auto& [id, p] : pending_) oldest = std::min(oldest, p.sent);
      if (oldest != clock::time_point::max()) answer_due_ = oldest + std::chrono::milliseconds(opt_.timeout_ms);
      else answer_due_.reset();  // (only requests waiting for room: none is out)
    }
    if (!idle) until = answer_due_;
  }
  if (idle && opt_.keepalive_ms > 0)
    until = std::max(conn_->last_heard(), pinged_) + std::chrono::milliseconds(opt_.keepalive_ms);
  conn_->set_wait_until(until);
}

bool async_client::overdue() const {
  if (opt_.timeout_ms < 0) return false;
  auto oldest = std::chrono::steady_clock::time_point::max();
  for (const auto& [id, p] : pending_) oldest = std::min(oldest, p.sent);
  return std::chrono::steady_clock::now() - oldest >= std::chrono::milliseconds(opt_.timeout_ms);
}

uint64_t async_client::reconnects() const {
  std::lock_guard lk(mu_);
  return reconnects_;
}

std::string async_client::down() const {
  std::lock_guard lk(mu_);
  return down_;
}

uint64_t async_client::resent() const {
  std::lock_guard lk(mu_);
  return resent_;
}

}  // namespace mesob::wire
