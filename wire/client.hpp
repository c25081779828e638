// client: the C++ client library's connection (blocking sockets, one thread).
//
//   wire::client::options o;  o.port = 7400;  o.gateway = "dev";  o.secret = ...;
//   std::string err;
//   auto c = wire::client::connect(o, &err);            // TCP + handshake
//   auto r = c->call(wire::create_transfers_body(ts));  // one request, its response
//   uint64_t a = c->send(body1), b = c->send(body2);    // pipelined: many in flight
//   auto ra = c->wait(a), rb = c->wait(b);              // responses by request id
//
// A response to another request that arrives first is kept until waited for, whichever
// call reads it (wait, subscribe, next_events, admin). Every failure is a value:
// `outcome::failure` names what went wrong on the connection, `outcome::error` carries
// an Error frame the server sent for that request. A request sent whose connection failed
// before its answer has `unknown` set: it may have been applied; send it again with the
// same ids to learn its outcome if it is a create keyed by client ids (a repeat returns
// the first outcome), else look its state up first (wire::repeat_changes_nothing).
#pragma once

#include <chrono>
#include <csignal>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wire/codec.hpp"
#include "wire/protocol.hpp"

namespace mesob::wire {

// A gateway's secret for options::secret: from `hex`, or (file not empty) from the file
// holding it in hex (mesobd's <data>/dev-gateway.secret), surrounding whitespace ignored.
// Refused with *error naming the source: both given; a file that cannot be read, is a
// directory, is empty or is larger than 4 KiB; text that is not hex; a secret outside
// 16..64 bytes.
bool read_secret(const std::string& hex, const std::string& file, std::vector<uint8_t>* out, std::string* error);

class client {
 public:
  struct options {
    std::string host = "127.0.0.1";
    uint16_t port = 7400;
    std::string gateway;
    std::vector<uint8_t> secret;
    int timeout_ms = 30'000;  // per wait for the server (0: take what has come; < 0: no limit);
                              // a connect waits as long, a send at least send_timeout_min_ms
    uint32_t frame_bytes_max = frame_bytes_max_ceiling;
    // Set (non-zero) by the caller's signal handler: a wait a signal interrupts while it
    // is set ends (interrupted()). Any other interruption (a stop and continue, a signal
    // whose handler leaves it clear, or with no flag) resumes the wait for its time left.
    const volatile std::sig_atomic_t* interrupt = nullptr;
    // A descriptor (an eventfd, a pipe's read end) that, once readable, ends a connect still
    // waiting for the server with ECANCELED (the async client's close); -1: none.
    int cancel_fd = -1;
    // Answers read while waiting for another request's, kept for their own wait: at most
    // this many (1..1000000); past it the oldest is dropped (its wait then times out). A
    // caller that never waits for some answers cannot grow the client without bound.
    uint32_t answers_held_max = 65'536;
  };
  struct outcome {
    bool ok = false;          // a response arrived (reply is set)
    reply_msg reply;
    bool server_error = false;  // an Error frame arrived for this request (error is set)
    error_msg error;
    std::string failure;      // the connection failed (neither of the above)
    bool unknown = false;     // with failure: the request was sent, so it may have been applied
  };
  static constexpr int send_timeout_min_ms = 30'000;
  struct frame_in {
    frame_header header;
    std::vector<uint8_t> body;
  };

  // Connects and completes the handshake; nullptr with *error on failure (refused
  // connection, bad credentials: the server's message is passed on).
  // `refusal`, if given, gets the server's error code when it refused the handshake
  // (auth_failed, role_denied), and stays 0 for any other failure.
  static std::unique_ptr<client> connect(const options& o, std::string* error, protocol_error* refusal = nullptr);
  // Connects without the handshake (tests of the handshake itself).
  static std::unique_ptr<client> connect_raw(const options& o, std::string* error);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  [[nodiscard]] const welcome_msg& welcome() const { return welcome_; }
  [[nodiscard]] const hello_msg& hello() const { return hello_; }

  // Sends a request frame; returns its request id, or 0 if it was not sent (the
  // connection failed, or the body is past the server's frame limit): wait(0) says why.
  uint64_t send(std::span<const uint8_t> request_body);
  outcome wait(uint64_t request_id);
  outcome call(std::span<const uint8_t> request_body) { return wait(send(request_body)); }

  // One admin command on the admin port (frame kinds 10 and 11), waiting for its answer.
  struct admin_outcome {
    bool ok = false;  // an AdminResponse arrived (response is set; its code may still be a failure)
    admin_response_msg response;
    bool server_error = false;  // an Error frame arrived instead (error is set)
    error_msg error;
    std::string failure;  // the connection failed
  };
  admin_outcome admin(const admin_request_msg& m);

  // Events (the events_reader role). subscribe() waits for the Subscribed answer (its
  // code says whether the subscription stands). next_events() waits for the next Events
  // frame; an Error for no request (events_truncated, slow_reader) ends it with *error set
  // and *refusal its code. ack() acknowledges everything up to `offset` (no answer unless
  // refused: a later call sees the Error). A subscribe the server refused with an Error
  // (role_denied, field_invalid, ...) sets *refusal to its code. A subscription that
  // stands drops what an earlier one of this session left unread (its Events and its
  // end's Error): the server takes one only once the earlier one ended, and events of the
  // earlier one handed out after it, then acknowledged, would acknowledge the new one's.
  bool subscribe(const subscribe_msg& m, subscribed_msg* out, std::string* error, protocol_error* refusal = nullptr);
  bool next_events(events_msg* out, std::string* error, protocol_error* refusal = nullptr);
  // The same, handing the frame's events to `each` a block at a time from one reused
  // buffer (a consumer that takes events one by one): out's next and end are set. The
  // frame is unpacked from the client's receive buffer: `each` must not read from this
  // client (ack() only sends, and may be called).
  bool next_events(events_msg* out, const event_visitor& each, std::string* error,
                   protocol_error* refusal = nullptr);
  bool ack(uint64_t offset, std::string* error);
  // A ping (the pong is skipped by whatever reads next): keeps a quiet session from the
  // server's idle timeout, and shows the server is there (last_heard() moves). Numbered
  // as this client's next request, or 0 when `unnumbered`: an owner that numbers its
  // requests itself (async_client) pings with 0, so that neither the pong nor an Error
  // answering the ping (its gateway cut off) carries the number of one of its requests.
  bool ping(std::string* error, bool unnumbered = false);
  // Answers read while waiting for another, kept for their own wait.
  [[nodiscard]] size_t answers_held() const { return early_.size(); }
  // When bytes last came from the server (the connect, before any).
  [[nodiscard]] std::chrono::steady_clock::time_point last_heard() const { return last_heard_; }
  // A deadline for the reads from now on (none: each read waits timeout_ms): a read
  // past it fails timed_out(), however many frames have come meanwhile; frames already
  // received are still handed out. For a reader that waits on several things at once
  // (async_client: the oldest answer due, a keepalive ping).
  void set_wait_until(std::optional<std::chrono::steady_clock::time_point> t) { wait_until_ = t; }

  // Raw access for protocol tests.
  bool send_bytes(std::span<const uint8_t> bytes, std::string* error);
  // A frame straight from its parts (header and body gathered by the kernel: the body
  // is not copied into a frame first).
  bool send_frame(frame_kind kind, uint64_t request_id, std::span<const uint8_t> body, std::string* error);
  bool read_frame(frame_in* out, std::string* error);  // the next frame, whatever it is
  // Reads up to max_bytes off the socket, without waiting, and drops them, frames or not
  // (tests of peers that read slowly; the stream's framing is lost): the bytes read, -1
  // at the connection's end or on an error with none read.
  int64_t drop_received(size_t max_bytes);
  // The same in place, in the client's buffer (no copy): valid until the next read or
  // next_frame() (either may move the buffer's bytes).
  bool next_frame(frame_reader::frame* out, std::string* error);
  // True when the server has closed the connection (reads end), within the timeout.
  bool closed_by_server();
  bool handshake(std::string* error, protocol_error* refusal = nullptr);
  // Whether the last failed read was a timeout (the connection may still be fine), or
  // was interrupted by a signal (EINTR: the caller decides what an interrupt means).
  [[nodiscard]] bool timed_out() const { return timed_out_; }
  [[nodiscard]] bool interrupted() const { return interrupted_; }
  // The wait for the server from now on (options::timeout_ms until changed).
  void set_timeout_ms(int ms) { opt_.timeout_ms = ms; }
  // Shuts the socket down both ways: a blocked read returns at once (another thread).
  void shutdown();
  // Shuts the sending side only (done sending): the server answers every whole request
  // it was sent, then closes; reads go on until it does.
  void shutdown_send();
  // The outcome a Response or Error frame carries.
  static outcome to_outcome(const frame_header& h, std::span<const uint8_t> body);

 private:
  client() = default;
  bool fill(std::string* error);
  // The next Events frame's body to `parse` (an Error frame ends the wait).
  bool next_events_frame(const std::function<bool(std::span<const uint8_t>, std::string*)>& parse,
                         std::string* error, protocol_error* refusal);
  options opt_;
  int fd_ = -1;
  uint64_t next_id_ = 1;
  bool timed_out_ = false;
  std::chrono::steady_clock::time_point last_heard_ = std::chrono::steady_clock::now();
  bool interrupted_ = false;
  int rcvtimeo_ms_ = -1;  // the socket's receive timeout as set (-1: none, the default)
  frame_reader reader_{frame_bytes_max_ceiling};
  std::map<uint64_t, frame_in> early_;  // frames for requests not waited for yet
  std::string send_failure_;            // why the last send() that returned 0 failed
  // Events frames, and Errors of the subscription (request id 0, or an ack's id), read
  // while waiting for something else: next_events() takes them.
  std::deque<frame_in> pending_events_;
  std::deque<uint64_t> ack_ids_;  // the latest acks' request ids (an ack_refused carries one)
  std::string stream_error_;      // an Error for no request (id 0) seen: why the server may close
  // Keeps a frame that answers none of the current call's own: answers by request id,
  // the subscription's frames for next_events().
  void file_frame(const frame_header& h, std::span<const uint8_t> body);
  // For the length of one call that waits (wait, subscribe, next_events, admin).
  struct wait_scope {
    explicit wait_scope(client& c);
    ~wait_scope();
    client& c_;
  };
  std::optional<std::chrono::steady_clock::time_point> wait_until_;
  [[nodiscard]] bool stream_frame(const frame_header& h) const;
  hello_msg hello_;
  welcome_msg welcome_;
};

}  // namespace mesob::wire
