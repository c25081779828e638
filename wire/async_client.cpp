#include "wire/async_client.hpp"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <span>
#include <vector>

namespace mesob::wire {

namespace {
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
  auto conn = client::connect(o, error);
  if (!conn) return nullptr;
  std::unique_ptr<async_client> c(new async_client());
  c->opt_ = o;
  c->in_flight_max_ = std::max<uint32_t>(1, conn->welcome().in_flight_max);
  c->conn_ = std::move(conn);
  c->reader_ = std::thread([p = c.get()] { p->reader_loop(); });
  return c;
}

async_client::~async_client() {
  {
    std::lock_guard lk(mu_);
    closing_ = true;
  }
  room_.notify_all();
  {
    std::lock_guard sl(send_mu_);
    conn_->shutdown();
  }
  reader_.join();
  fail_all("client closed");
}

void async_client::submit(std::vector<uint8_t> request_body, callback done) {
  std::vector<request> one;
  one.push_back({std::move(request_body), std::move(done)});
  submit(std::move(one));
}

void async_client::submit(std::vector<request> requests) {
  std::vector<std::shared_ptr<const std::vector<uint8_t>>> unsent;  // registered, not yet written
  uint64_t gen = 0;  // the connection they were registered on
  std::vector<uint8_t> joined;
  const auto write = [&] {
    if (unsent.empty()) return;
    std::span<const uint8_t> bytes = *unsent.front();
    if (unsent.size() > 1) {  // one write for all
      joined.clear();
      for (const auto& f : unsent) joined.insert(joined.end(), f->begin(), f->end());
      bytes = joined;
    }
    std::lock_guard sl(send_mu_);
    std::string err;
    // A reconnect since registering sent them with every unanswered request: a second
    // copy could meet a full window and answer the request with an error.
    if (conn_gen_ == gen) (void)conn_->send_bytes(bytes, &err);  // on failure the reader reconnects and resends
    unsent.clear();
  };
  std::unique_lock lk(mu_);
  for (size_t i = 0; i < requests.size(); ++i) {
    if (!closing_ && broken_.empty() && pending_.size() >= in_flight_max_) {
      // No room: what is registered goes out first (its answers make the room).
      lk.unlock();
      write();
      lk.lock();
      room_.wait(lk, [&] { return closing_ || !broken_.empty() || pending_.size() < in_flight_max_; });
    }
    if (closing_ || !broken_.empty()) {
      const std::string why = closing_ ? "client closed" : broken_;
      lk.unlock();
      write();
      for (size_t k = i; k < requests.size(); ++k) requests[k].done(failed(why, false));
      return;
    }
    const uint64_t id = next_id_++;
    auto frame = std::make_shared<const std::vector<uint8_t>>(encode_frame(frame_kind::request, id, requests[i].body));
    if (unsent.empty()) gen = conn_gen_;
    unsent.push_back(frame);
    pending_[id] = {std::move(frame), std::move(requests[i].done)};  // the reader may erase it before the write
  }
  lk.unlock();
  write();
}

std::future<client::outcome> async_client::submit(std::vector<uint8_t> request_body) {
  auto promise = std::make_shared<std::promise<client::outcome>>();
  auto f = promise->get_future();
  submit(std::move(request_body), [promise](client::outcome&& o) { promise->set_value(std::move(o)); });
  return f;
}

void async_client::reader_loop() {
  pthread_setname_np(pthread_self(), "mesob.client");
  for (;;) {
    frame_reader::frame f;  // in place: handled before the next read
    std::string err;
    if (conn_->next_frame(&f, &err)) {
      if (f.header.kind == uint16_t(frame_kind::push)) {
        push_msg m;
        std::string why;
        if (opt_.on_push && parse_push(f.body, &m, &why)) opt_.on_push(std::move(m));
        continue;
      }
      if (f.header.kind != uint16_t(frame_kind::response) && f.header.kind != uint16_t(frame_kind::error)) continue;
      callback done;
      std::shared_ptr<const std::vector<uint8_t>> next;  // a resend this answer makes room for
      {
        std::lock_guard lk(mu_);
        auto it = pending_.find(f.header.request_id);
        if (it == pending_.end()) continue;  // answered before (a resend's second answer)
        done = std::move(it->second.done);
        pending_.erase(it);
        while (!resend_later_.empty() && !next) {
          const auto later = pending_.find(resend_later_.front());
          resend_later_.pop_front();
          if (later != pending_.end()) next = later->second.frame;
        }
        if (next) ++resent_;
      }
      if (next) {  // this thread alone reconnects: the connection is the one answering
        std::lock_guard sl(send_mu_);
        std::string why;
        (void)conn_->send_bytes(*next, &why);  // on failure the next read fails: reconnect, resend
      }
      room_.notify_all();
      done(client::to_outcome(f.header, f.body));
      continue;
    }
    {
      std::lock_guard lk(mu_);
      if (closing_) return;
      if (conn_->timed_out() && pending_.empty()) continue;  // idle, not broken
    }
    last_error_ = err;
    if (!reconnect()) {
      {
        std::lock_guard lk(mu_);
        if (closing_) return;
        broken_ = "client: the connection failed (" + err + ") and " +
                  (reconnect_refused_ ? std::string("the server refused the reconnect")
                                      : std::to_string(opt_.reconnect_attempts) + " reconnects failed") +
                  " (last: " + last_error_ + ")";
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
  for (int attempt = 0; attempt < opt_.reconnect_attempts; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
    backoff = std::min(backoff * 2, 1000);
    {
      std::lock_guard lk(mu_);
      if (closing_) return false;
    }
    std::string err;
    protocol_error refusal{};
    auto fresh = client::connect(opt_, &err, &refusal);
    if (!fresh) {
      last_error_ = err;
      // Credentials refused, or a role taken away: another attempt meets the same answer.
      // (Three in a row: a handshake that timed out is refused as auth_failed too, once.)
      refused_in_a_row = refusal == protocol_error::auth_failed || refusal == protocol_error::role_denied
                             ? refused_in_a_row + 1
                             : 0;
      if (refused_in_a_row >= 3) {
        reconnect_refused_ = true;
        return false;
      }
      continue;
    }
    std::lock_guard sl(send_mu_);
    {
      std::lock_guard lk(mu_);
      if (closing_) return false;  // closed meanwhile: the destructor shut down the old one only
    }
    conn_ = std::move(fresh);
    std::vector<std::shared_ptr<const std::vector<uint8_t>>> again;
    {
      std::lock_guard lk(mu_);
      ++reconnects_;
      ++conn_gen_;  // with the snapshot below: what was registered before goes out here
      in_flight_max_ = std::max<uint32_t>(1, conn_->welcome().in_flight_max);
      // In request-id order, as many as the new session's window takes; the rest one per
      // answer (sent past the window, they would be answered too_many_in_flight, which
      // says nothing of whether the first send was applied).
      resend_later_.clear();
      for (const auto& [id, p] : pending_) {
        if (again.size() < in_flight_max_) again.push_back(p.frame);
        else resend_later_.push_back(id);
      }
      resent_ += again.size();
    }
    bool ok = true;
    for (const auto& frame : again) ok = ok && conn_->send_bytes(*frame, &err);
    if (ok) return true;
    last_error_ = err;
  }
  return false;
}

void async_client::fail_all(const std::string& why) {
  std::map<uint64_t, pending> left;
  {
    std::lock_guard lk(mu_);
    left.swap(pending_);
    resend_later_.clear();
  }
  room_.notify_all();
  for (auto& [id, p] : left) p.done(failed(why, true));
}

uint64_t async_client::reconnects() const {
  std::lock_guard lk(mu_);
  return reconnects_;
}

uint64_t async_client::resent() const {
  std::lock_guard lk(mu_);
  return resent_;
}

}  // namespace mesob::wire
