#include "wire/client.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>

namespace mesob::wire {

std::unique_ptr<client> client::connect_raw(const options& o, std::string* error) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  if (int rc = ::getaddrinfo(o.host.c_str(), std::to_string(o.port).c_str(), &hints, &res); rc != 0) {
    *error = "client: cannot resolve " + o.host + ": " + gai_strerror(rc);
    return nullptr;
  }
  // The connect is bounded by the timeout too (a host that never answers would hold it
  // for the kernel's SYN retries, minutes), and ends when cancel_fd is readable:
  // non-blocking, then a poll.
  const bool nonblocking = o.timeout_ms > 0 || o.cancel_fd >= 0;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  int rc = fd < 0 ? -1 : ::connect(fd, res->ai_addr, res->ai_addrlen);
  int err = errno;
  ::freeaddrinfo(res);
  if (rc != 0 && fd >= 0 && err == EINPROGRESS) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.timeout_ms);
    int ready = 0;
    bool cancelled = false, interrupted = false;
    for (;;) {  // (a signal ends it only with the caller's interrupt flag set, as any wait)
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p[2] = {{fd, POLLOUT, 0}, {o.cancel_fd, POLLIN, 0}};
      ready = ::poll(p, o.cancel_fd >= 0 ? 2 : 1, o.timeout_ms > 0 ? int(std::max<int64_t>(left.count(), 0)) : -1);
      if (ready < 0 && errno == EINTR) {
        interrupted = o.interrupt && *o.interrupt;
        if (interrupted) break;
        continue;
      }
      cancelled = ready > 0 && (p[1].revents & POLLIN);
      break;
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (interrupted) err = EINTR;
    else if (cancelled) err = ECANCELED;
    else if (ready == 0) err = ETIMEDOUT;
    else if (ready < 0) err = errno;
    else if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) err = errno;
    else err = soerr;
    rc = err == 0 ? 0 : -1;
  }
  if (rc != 0) {
    *error = "client: cannot connect to " + o.host + ":" + std::to_string(o.port) + ": " + std::strerror(err);
    if (fd >= 0) ::close(fd);
    return nullptr;
  }
  if (nonblocking) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  if (o.timeout_ms > 0) {
    // A server that stops reading (its queue to this session full) fails a send after
    // this long instead of blocking it for good (the send then shuts the connection).
    const int ms = std::max(o.timeout_ms, send_timeout_min_ms);
    const timeval tv{ms / 1000, (ms % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::unique_ptr<client> c(new client());
  c->opt_ = o;
  c->fd_ = fd;
  c->reader_ = frame_reader(o.frame_bytes_max);
  return c;
}

std::unique_ptr<client> client::connect(const options& o, std::string* error, protocol_error* refusal) {
  if (refusal) *refusal = protocol_error(0);
  if (o.answers_held_max < 1 || o.answers_held_max > 1'000'000) {
    *error = "client: answers_held_max must be 1..1000000";
    return nullptr;
  }
  auto c = connect_raw(o, error);
  if (!c || !c->handshake(error, refusal)) return nullptr;
  return c;
}

client::~client() {
  if (fd_ >= 0) ::close(fd_);
}

bool read_secret(const std::string& hex, const std::string& file, std::vector<uint8_t>* out, std::string* error) {
  constexpr size_t file_bytes_max = 4096;
  if (!hex.empty() && !file.empty()) {  // (before, the file won silently)
    *error = "--secret and --secret-file are both given: give one";
    return false;
  }
  std::string text = hex;
  const std::string what = file.empty() ? "--secret" : file;
  if (!file.empty()) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
      *error = file + ": cannot be read (" + std::strerror(errno) + ")";
      return false;
    }
    if (S_ISDIR(st.st_mode)) {
      *error = file + ": is a directory, not a secret file";
      return false;
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      *error = file + ": cannot be read (" + std::strerror(errno) + ")";
      return false;
    }
    text.assign(file_bytes_max + 1, '\0');
    in.read(text.data(), std::streamsize(text.size()));
    text.resize(size_t(in.gcount()));
    if (text.size() > file_bytes_max) {
      *error = file + ": holds more than " + std::to_string(file_bytes_max) + " bytes, not a secret file";
      return false;
    }
  }
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!text.empty() && space(text.back())) text.pop_back();
  size_t from = 0;
  while (from < text.size() && space(text[from])) ++from;
  text.erase(0, from);
  if (text.empty()) {
    *error = file.empty() ? "no gateway secret: give --secret HEX or --secret-file FILE" : file + ": holds no secret";
    return false;
  }
  if (!from_hex(text, out)) {
    *error = what + ": the secret is not hex (two hex digits per byte)";
    return false;
  }
  if (out->size() < secret_bytes_min || out->size() > gateway_secret_max) {
    *error = what + ": the secret is " + std::to_string(out->size()) + " bytes; gateway secrets are " +
             std::to_string(secret_bytes_min) + " to " + std::to_string(gateway_secret_max) + " bytes";
    return false;
  }
  return true;
}

bool client::handshake(std::string* error, protocol_error* refusal) {
  // Bounded as a whole: a server trickling a byte now and then holds no connect longer.
  const wait_scope bounded(*this);
  frame_in f;
  if (!read_frame(&f, error)) return false;
  std::string why;
  if (f.header.kind != uint16_t(frame_kind::hello) || !parse_hello(f.body, &hello_, &why)) {
    *error = "client: the server's first frame is not a valid hello" + (why.empty() ? "" : ": " + why);
    return false;
  }
  if (hello_.protocol < protocol_version) {
    *error = "client: the server speaks protocol " + std::to_string(hello_.protocol);
    return false;
  }
  const auto body = auth_body({opt_.gateway, auth_mac(opt_.secret, hello_.nonce)});
  if (!send_bytes(encode_frame(frame_kind::auth, 0, body), error)) return false;
  if (!read_frame(&f, error)) return false;
  if (f.header.kind == uint16_t(frame_kind::error)) {
    error_msg e;
    const bool parsed = parse_error(f.body, &e, &why);
    *error = parsed ? "server refused the handshake: " + e.message : "server refused the handshake";
    if (parsed && refusal) *refusal = e.code;
    return false;
  }
  if (f.header.kind != uint16_t(frame_kind::welcome) || !parse_welcome(f.body, &welcome_, &why)) {
    *error = "client: expected welcome, got frame kind " + std::to_string(f.header.kind);
    return false;
  }
  return true;
}

bool client::send_bytes(std::span<const uint8_t> bytes, std::string* error) {
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      *error = std::string("client: send failed: ") + std::strerror(errno);
      shutdown();  // part of a frame may have gone: the stream is unusable from here
      return false;
    }
    off += size_t(n);
  }
  return true;
}

int64_t client::drop_received(size_t max_bytes) {
  std::array<uint8_t, 4096> sink;
  size_t got = 0;
  while (got < max_bytes) {
    const ssize_t n = ::recv(fd_, sink.data(), std::min(sink.size(), max_bytes - got), MSG_DONTWAIT);
    if (n > 0) {
      got += size_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return got != 0 ? int64_t(got) : -1;  // the end, or an error
  }
  return int64_t(got);
}

void client::shutdown() { ::shutdown(fd_, SHUT_RDWR); }
void client::shutdown_send() { ::shutdown(fd_, SHUT_WR); }

bool client::send_frame(frame_kind kind, uint64_t request_id, std::span<const uint8_t> body, std::string* error) {
  frame_header h;
  h.body_bytes = uint32_t(body.size());
  h.kind = uint16_t(kind);
  h.request_id = request_id;
  uint8_t head[frame_header_bytes];
  encode_header(h, head);
  iovec iov[2] = {{head, sizeof head}, {const_cast<uint8_t*>(body.data()), body.size()}};
  size_t total = sizeof head + body.size(), done = 0;
  while (done < total) {
    // Skip what is already sent.
    iovec cur[2];
    int n = 0;
    size_t skip = done;
    for (const auto& v : iov) {
      if (skip >= v.iov_len) {
        skip -= v.iov_len;
        continue;
      }
      cur[n++] = {static_cast<uint8_t*>(v.iov_base) + skip, v.iov_len - skip};
      skip = 0;
    }
    msghdr m{};
    m.msg_iov = cur;
    m.msg_iovlen = size_t(n);
    const ssize_t sent = ::sendmsg(fd_, &m, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      *error = std::string("client: send failed: ") + std::strerror(errno);
      shutdown();  // part of the frame may have gone: the stream is unusable from here
      return false;
    }
    done += size_t(sent);
  }
  return true;
}

bool client::fill(std::string* error) {
  // One system call per read: the wait is bounded by the socket's receive timeout (set
  // only when it changes), not by a poll before the receive. Timeout 0 takes only what
  // has come; a negative one waits without limit.
  timed_out_ = interrupted_ = false;
  if (wait_until_ && std::chrono::steady_clock::now() >= *wait_until_) {
    timed_out_ = true;
    *error = "client: no answer from the server within " + std::to_string(opt_.timeout_ms) + " ms";
    return false;
  }
  int wait_ms = opt_.timeout_ms;
  if (wait_until_) {  // late in a wait, this receive waits only for the time left
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*wait_until_ - std::chrono::steady_clock::now());
    if (wait_ms < 0 || left.count() + 50 < wait_ms) wait_ms = int(std::clamp<int64_t>(left.count(), 1, INT32_MAX));
  }
  // Where this receive's wait ends (a signal's restart waits the rest of it, not anew).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(wait_ms, 0));
  for (;;) {
    int flags = 0;
    if (wait_ms == 0) {
      flags = MSG_DONTWAIT;
    } else if (const int want = std::max(wait_ms, -1); want != rcvtimeo_ms_) {
      timeval tv{};
      if (want > 0) tv = {want / 1000, (want % 1000) * 1000};
      if (::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
        *error = std::string("client: cannot set the receive timeout: ") + std::strerror(errno);
        return false;
      }
      rcvtimeo_ms_ = want;
    }
    auto room = reader_.prepare(64 * 1024);
    const ssize_t n = ::recv(fd_, room.data(), room.size(), flags);
    if (n > 0) {
      reader_.commit(size_t(n));
      last_heard_ = std::chrono::steady_clock::now();
      return true;
    }
    if (n == 0) {
      *error = "client: the server closed the connection";
      return false;
    }
    if (errno == EINTR && !(opt_.interrupt && *opt_.interrupt)) {
      // A receive with a timeout is not restarted after a signal or a stop and continue
      // (signal(7)): wait on for the time left, unless the caller's flag says stop.
      if (wait_ms > 0) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        wait_ms = int(std::max<int64_t>(left.count(), 0));
      }
      continue;
    }
    timed_out_ = errno == EAGAIN || errno == EWOULDBLOCK;
    interrupted_ = errno == EINTR;
    if (timed_out_) *error = "client: no answer from the server within " + std::to_string(opt_.timeout_ms) + " ms";
    else if (interrupted_) *error = "client: interrupted";
    else *error = std::string("client: receive failed: ") + std::strerror(errno);
    return false;
  }
}

bool client::next_frame(frame_reader::frame* out, std::string* error) {
  for (;;) {
    const auto st = reader_.next(out);
    if (st == frame_reader::status::frame) return true;
    if (st == frame_reader::status::too_large) {
      *error = "client: the server sent a frame over " + std::to_string(reader_.body_max()) + " bytes";
      return false;
    }
    if (!fill(error)) return false;
  }
}

bool client::read_frame(frame_in* out, std::string* error) {
  frame_reader::frame f;
  if (!next_frame(&f, error)) return false;
  out->header = f.header;
  out->body.assign(f.body.begin(), f.body.end());
  return true;
}

bool client::closed_by_server() {
  std::string err;
  frame_in f;
  while (read_frame(&f, &err)) {
  }
  return err == "client: the server closed the connection" || err.find("reset") != std::string::npos;
}

uint64_t client::send(std::span<const uint8_t> request_body) {
  if (welcome_.frame_bytes_max != 0 && request_body.size() > welcome_.frame_bytes_max) {
    // Sent, the server would answer frame_too_large and close the session.
    send_failure_ = "client: a request body of " + std::to_string(request_body.size()) +
                    " bytes is past the server's frame limit of " + std::to_string(welcome_.frame_bytes_max) +
                    " bytes (not sent; send fewer items a request)";
    return 0;
  }
  const uint64_t id = next_id_++;
  if (send_frame(frame_kind::request, id, request_body, &send_failure_)) return id;
  return 0;
}

// The subscription's own frames: Events, and an Error for no request (events_truncated,
// events_failed, slow_reader) or for one of the latest acks (ack_refused).
bool client::stream_frame(const frame_header& h) const {
  if (h.kind == uint16_t(frame_kind::events)) return true;
  return h.kind == uint16_t(frame_kind::error) &&
         (h.request_id == 0 || std::find(ack_ids_.begin(), ack_ids_.end(), h.request_id) != ack_ids_.end());
}

void client::file_frame(const frame_header& h, std::span<const uint8_t> body) {
  if (stream_frame(h)) {
    if (h.kind == uint16_t(frame_kind::error) && h.request_id == 0) {
      error_msg e;
      std::string why;
      if (parse_error(body, &e, &why)) stream_error_ = std::string(protocol_error_name(e.code)) + ": " + e.message;
    }
    pending_events_.push_back({h, {body.begin(), body.end()}});
    return;
  }
  const bool answer = h.kind == uint16_t(frame_kind::response) || h.kind == uint16_t(frame_kind::error) ||
                      h.kind == uint16_t(frame_kind::admin_response);
  // Only answers to requests this client sent are kept (not a server's answers of its
  // own), and at most options::answers_held_max: past that the oldest goes.
  if (!answer || h.request_id == 0 || h.request_id >= next_id_) return;
  while (early_.size() >= opt_.answers_held_max) early_.erase(early_.begin());
  early_[h.request_id] = {h, {body.begin(), body.end()}};
  // pushes, pongs and a Subscribed nobody waits for are not requests' answers
}

// A wait's own deadline: each receive is bounded by the timeout, but frames for others
// (pushes, pongs, events, other answers) must not keep a wait going past it either.
// fill() looks at it before it would block, so frames already read are still taken.
client::wait_scope::wait_scope(client& c) : c_(c) {
  if (c.opt_.timeout_ms > 0)
    c.wait_until_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(c.opt_.timeout_ms);
}
client::wait_scope::~wait_scope() { c_.wait_until_.reset(); }

client::outcome client::wait(uint64_t request_id) {
  outcome o;
  if (request_id == 0) {
    o.failure = send_failure_.empty() ? "client: the request could not be sent" : send_failure_;
    return o;
  }
  if (auto it = early_.find(request_id); it != early_.end()) {
    const frame_in held = std::move(it->second);
    early_.erase(it);
    return to_outcome(held.header, held.body);
  }
  const wait_scope bounded(*this);
  for (;;) {
    frame_reader::frame f;  // the answer is parsed in place; others are kept as copies
    if (!next_frame(&f, &o.failure)) {
      // Sent, and no answer: it may have been applied, unless the wait merely timed out
      // (the connection may still bring it) or a signal ended it.
      o.unknown = !timed_out_ && !interrupted_;
      if (!stream_error_.empty()) o.failure += " (the server said " + stream_error_ + ")";
      return o;
    }
    const bool answer = f.header.kind == uint16_t(frame_kind::response) || f.header.kind == uint16_t(frame_kind::error);
    if (answer && f.header.request_id == request_id) return to_outcome(f.header, f.body);
    file_frame(f.header, f.body);
  }
}

bool client::subscribe(const subscribe_msg& m, subscribed_msg* out, std::string* error, protocol_error* refusal) {
  const uint64_t id = next_id_++;
  if (!send_frame(frame_kind::subscribe, id, subscribe_body(m), error)) return false;
  frame_in f;
  const wait_scope bounded(*this);
  for (;;) {
    if (!read_frame(&f, error)) return false;
    const bool mine = f.header.request_id == id && (f.header.kind == uint16_t(frame_kind::error) ||
                                                    f.header.kind == uint16_t(frame_kind::subscribed));
    if (!mine) {  // events may come right behind the answer; others' answers are kept
      file_frame(f.header, f.body);
      continue;
    }
    if (f.header.kind == uint16_t(frame_kind::error)) {
      error_msg e;
      std::string why;
      if (!parse_error(f.body, &e, &why)) {
        *error = "subscribe: " + why;
      } else {
        *error = "subscribe: " + std::string(protocol_error_name(e.code)) + ": " + e.message;
        if (refusal) *refusal = e.code;
      }
      return false;
    }
    std::string why;
    if (!parse_subscribed(f.body, out, &why)) {
      *error = "subscribe: " + why;
      return false;
    }
    if (out->code == result::ok) {
      // Every stream frame before the answer is an earlier subscription's (the server
      // refuses a subscribe while one stands, subscriber_busy): none is this one's.
      pending_events_.clear();
      ack_ids_.clear();
      stream_error_.clear();
    }
    return true;
  }
}

bool client::next_events(events_msg* out, std::string* error, protocol_error* refusal) {
  return next_events_frame([&](std::span<const uint8_t> body, std::string* why) { return parse_events(body, out, why); },
                           error, refusal);
}

bool client::next_events(events_msg* out, const event_visitor& each, std::string* error, protocol_error* refusal) {
  return next_events_frame(
      [&](std::span<const uint8_t> body, std::string* why) { return parse_events(body, out, each, why); }, error,
      refusal);
}

bool client::next_events_frame(const std::function<bool(std::span<const uint8_t>, std::string*)>& parse,
                               std::string* error, protocol_error* refusal) {
  frame_in held;  // a frame read earlier, while waiting for something else
  const wait_scope bounded(*this);
  for (;;) {
    frame_reader::frame f;  // parsed in place: the events are copied once, into *out
    if (!pending_events_.empty()) {
      held = std::move(pending_events_.front());
      pending_events_.pop_front();
      f = {held.header, held.body};
    } else if (!next_frame(&f, error)) {
      return false;
    }
    if (!stream_frame(f.header)) {  // another request's answer: kept for its wait
      file_frame(f.header, f.body);
      continue;
    }
    if (f.header.kind == uint16_t(frame_kind::error)) {
      if (f.header.request_id == 0) stream_error_.clear();  // told now
      error_msg e;
      std::string why;
      if (!parse_error(f.body, &e, &why)) {
        *error = "events: " + why;
        return false;
      }
      if (refusal) *refusal = e.code;
      *error = std::string(protocol_error_name(e.code)) + ": " + e.message;
      return false;
    }
    std::string why;
    if (!parse(f.body, &why)) {
      *error = "events: " + why;
      return false;
    }
    return true;
  }
}

bool client::ack(uint64_t offset, std::string* error) {
  const uint64_t id = next_id_++;
  ack_ids_.push_back(id);
  if (ack_ids_.size() > 1024) ack_ids_.pop_front();  // an ack's refusal comes within its round trip
  return send_frame(frame_kind::ack, id, ack_body(offset), error);
}

bool client::ping(std::string* error, bool unnumbered) {
  return send_frame(frame_kind::ping, unnumbered ? 0 : next_id_++, {}, error);
}

client::admin_outcome client::admin(const admin_request_msg& m) {
  admin_outcome o;
  const uint64_t id = next_id_++;
  if (!send_frame(frame_kind::admin_request, id, admin_request_body(m), &o.failure)) return o;
  frame_in f;
  const wait_scope bounded(*this);
  for (;;) {
    if (!read_frame(&f, &o.failure)) return o;
    const bool answer = f.header.kind == uint16_t(frame_kind::admin_response) ||
                        f.header.kind == uint16_t(frame_kind::error) ||
                        f.header.kind == uint16_t(frame_kind::response);
    if (answer && f.header.request_id == id) break;
    // An Error for no request (id 0: a slow reader or timeout cut-off) ends the wait.
    if (f.header.request_id == 0 && f.header.kind == uint16_t(frame_kind::error)) break;
    file_frame(f.header, f.body);
  }
  std::string why;
  if (f.header.kind == uint16_t(frame_kind::error)) {
    o.server_error = parse_error(f.body, &o.error, &why);
    if (!o.server_error) o.failure = "client: malformed error frame: " + why;
    return o;
  }
  if (f.header.kind != uint16_t(frame_kind::admin_response)) {
    o.failure = "client: the server answered an admin command with a ledger response";
    return o;
  }
  o.ok = parse_admin_response(f.body, &o.response, &why);
  if (!o.ok) o.failure = "client: malformed admin response: " + why;
  return o;
}

client::outcome client::to_outcome(const frame_header& h, std::span<const uint8_t> body) {
  outcome o;
  std::string why;
  if (h.kind == uint16_t(frame_kind::error)) {
    o.server_error = parse_error(body, &o.error, &why);
    if (!o.server_error) o.failure = "client: malformed error frame: " + why;
    o.unknown = !o.server_error;  // an answer that cannot be read says nothing of what was done
    return o;
  }
  o.ok = parse_response(body, &o.reply, &why);
  if (!o.ok) o.failure = "client: malformed response: " + why;
  o.unknown = !o.ok;
  return o;
}

}  // namespace mesob::wire
