// server: mesobd's network front end (the protocol is wire/README.md).
//
// One network thread runs an io_uring loop, Seastar-style: no thread per connection
// and no blocking call on it. Connections are accepted with one multishot ACCEPT and
// read with multishot RECV into a ring of provided buffers; the rest of a large frame is
// read with a plain RECV straight into the session's buffer (one copy fewer). Each connection is a
// session: a lightweight actor owned by the network thread (its own state, one event
// at a time, reached only through the loop), like accounts inside their shard.
// Requests go to the engine with engine::submit(); replies come back through a queue
// and an eventfd the loop reads.
//
// Limits and backpressure (server_config): connections, in-flight requests per session
// (over it: error too_many_in_flight), requests in the engine in all (at the limit the
// loop stops taking frames off sockets; they wait in the kernel), bytes queued to one
// session (a client that does not read its responses stops being read), frame size,
// idle and handshake timeouts. The same server serves the admin port (server_config::admin). stop() is graceful: no new connections, every request
// already taken is answered and flushed, then the sockets close.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "wire/codec.hpp"
#include "wire/protocol.hpp"

namespace mesob::engine {

struct gateway_config {
  std::string id;
  std::vector<uint8_t> secret;  // at least wire::secret_bytes_min bytes
  uint32_t roles = 0;           // wire::roles bits
};

// Who sent an admin command: the gateway its session authenticated as.
struct admin_identity {
  std::string gateway;
  uint64_t session_id = 0;
  std::string peer;  // "address:port"
};
using admin_reply = std::function<void(wire::admin_response_msg&&)>;
using admin_handler = std::function<void(const admin_identity&, wire::admin_request_msg&&, admin_reply)>;

struct server_config {
  std::string address = "127.0.0.1";
  uint16_t port = 7400;                  // 0: any free port (tests)
  uint32_t connections_max = 4096;
  uint32_t in_flight_max = 64;           // requests per session awaiting their response
  uint32_t engine_in_flight_max = 4096;  // requests in the engine from all sessions
  // The request bodies those requests came in, together: a request that would take them
  // past it waits in its session's buffer (that session stops being read) until answers
  // bring them down, as one past engine_in_flight_max does. A request counts by its body,
  // about what the engine holds for it: 4,096 full batches of 8,192 transfers were about
  // 3 GB in the engine's queue, from one client.
  uint64_t engine_in_flight_bytes_max = 256ull << 20;
  // Authenticated sessions of one gateway: past it the handshake gets too_many_sessions,
  // so one gateway cannot hold every connection.
  uint32_t gateway_sessions_max = 1024;
  // Sessions a registered payments or broker gateway may open a second, with a burst of
  // four seconds' worth: each opening and closing is logged (payout and order routing
  // follow them), so a gateway reconnecting in a tight loop would otherwise write two
  // records a loop into everyone's commits. Past it the handshake gets too_many_sessions.
  uint32_t registered_opens_per_s = 64;
  uint32_t frame_bytes_max = wire::frame_bytes_max_default;
  uint64_t out_bytes_max = 32ull << 20;  // queued to one session before it stops being read
  // Responses to what a session sent before it stopped being read are still queued: one
  // whose queue passes twice out_bytes_max and whose sends made no progress for
  // stall_timeout_ms (it does not read) gets slow_reader and is closed. All sessions
  // together: at out_bytes_total_max no session holding its share of it (over
  // connections_max, at least 64 KiB) is read, nor takes a request whose answer's bound
  // would take it past its share (engine/limits.hpp), and the sessions not reading that hold
  // the most are closed until the rest hold less, so that peers that do not read cannot
  // take the process's memory nor stop the others. One that reads is never closed for
  // its size.
  uint64_t out_bytes_total_max = 1ull << 30;
  // Bytes all sessions' frame buffers hold together (each grows to its largest frame, up
  // to frame_bytes_max and a little more, as the frame's bytes come). Past it the buffers
  // held with nothing in them go first, then the sessions holding the most of a frame not
  // yet whole get frame_buffers_full and are closed (their buffers go at once) until the
  // rest hold less: peers that each begin a large frame and never finish it cannot take
  // the process's memory. A session whose frames are whole (waiting to be taken) is
  // never closed for this.
  uint64_t in_bytes_total_max = 1ull << 30;
  // Pushed frames (a gateway's or broker's instructions, events) past out_bytes_max wait
  // in their session's backlog, in order, and go as its sends make room: a gateway that
  // comes back to a million instructions takes them at the pace it reads. One whose
  // backlog would pass this, or that holds one and reads nothing for stall_timeout_ms,
  // gets slow_reader and is closed. 0: no backlog (a push that does not fit closes it).
  // All sessions' backlogs together: a push that would take them past
  // push_backlog_total_max closes the session it was for instead.
  uint64_t push_backlog_bytes_max = 256ull << 20;
  uint64_t push_backlog_total_max = 1ull << 30;
  // Sessions that have not authenticated yet: at most this many (and connections_max in
  // all). A connection past either limit closes the oldest such session of the peer
  // address holding the most of them to get in, so
  // peers that connect and never authenticate cannot keep gateways out: a gateway
  // authenticates within a round trip, long before it is the oldest. Until it
  // authenticates a session is not read past handshake_out_bytes_max queued to it.
  uint32_t handshakes_max = 64;
  uint64_t handshake_out_bytes_max = 64u << 10;
  // No frame taken, nothing in flight and no byte sent for this long: an authenticated
  // session is closed (one that does not read what is queued to it included; not one with
  // nothing queued and a whole frame the server is not taking); one still in its handshake
  // has handshake_timeout_ms, whichever is shorter.
  uint64_t idle_timeout_ms = 300'000;
  // A session with bytes queued to it whose sends made no progress for this long does not
  // read (see out_bytes_max and push_backlog_bytes_max). One that reads, however large its
  // responses, makes progress far more often; 5 s also rides out TCP's retransmission
  // back-off (0.2, 0.4, 0.8, 1.6 s) on a lossy link. Until then what is queued may pass
  // the limits (the responses to up to in_flight_max requests a session).
  uint64_t stall_timeout_ms = 5'000;
  uint64_t handshake_timeout_ms = 10'000;
  uint64_t flush_timeout_ms = 10'000;    // a session closing after an error: its last frames' time
  uint64_t drain_timeout_ms = 10'000;    // stop(): longest wait for in-flight work
  std::vector<gateway_config> gateways;
  // Set: this server is an admin port. Only gateways with the admin role get through the
  // handshake (others: role_denied), and only admin commands (frame kind 10) are served,
  // each handed to `admin`, which answers through its callback from any thread. Unset:
  // a client port, where admin commands get wrong_port.
  admin_handler admin;
  // A socket listening on address:port already (listen_on; the server owns it from
  // start): mesobd takes its ports before opening the engine, so that a port it cannot
  // have stops it before recovery changes anything. -1: start binds address:port.
  int listen_fd = -1;

  [[nodiscard]] std::string validate() const;
};

// A TCP socket bound to address:port (IPv4; port 0: any free one) and listening, with
// SO_REUSEADDR; -1 and why (naming the address, the port and the error) if not. A port
// in use (EADDRINUSE) is asked for again every 10 ms for up to `busy_wait_ms`: a process
// killed while it listened (a crash, SIGKILL) holds its port a few milliseconds more,
// while the kernel tears down its io_uring rings, so a restart at once would fail.
constexpr int listen_busy_wait_ms = 1000;
[[nodiscard]] int listen_on(const std::string& address, uint16_t port, int backlog, bool nonblocking,
                            std::string* error, int busy_wait_ms = 0);

struct server_stats {
  uint64_t sessions_open = 0;
  uint64_t sessions_total = 0;
  uint64_t connections_refused = 0;  // over connections_max
  uint64_t accept_failures = 0;      // accepts the kernel failed (out of descriptors, ...)
  uint64_t handshakes_evicted = 0;   // sessions not yet authenticated closed to let a connection in
  uint64_t frames_in = 0;
  uint64_t direct_receives = 0;     // receives straight into a session's buffer (large frames)
  uint64_t frame_buffer_bytes = 0;  // held by the open sessions' frame buffers
  uint64_t frame_buffers_closed = 0;  // sessions closed at in_bytes_total_max (frame_buffers_full)
  uint64_t requests = 0;
  uint64_t protocol_errors = 0;
  uint64_t auth_failures = 0;
  uint64_t pushes = 0;              // push frames queued to sessions
  uint64_t push_backlog_bytes = 0;  // pushed frames waiting for room in their sessions' queues
  uint64_t pushes_backlogged = 0;   // pushed frames that waited in a backlog (since the start)
  uint64_t slow_readers_closed = 0;
  uint64_t submissions_spilled = 0;  // io_uring operations kept aside while the ring's queue was full
  uint64_t out_bytes_queued = 0;    // queued to all sessions (counted as against out_bytes_total_max)
};

// One open connection, as operators see it.
struct session_info {
  uint64_t session_id = 0;  // 0 until the handshake completes
  std::string gateway;      // empty until the handshake completes
  std::string peer;         // "address:port"
  uint64_t age_ms = 0;
  uint64_t requests = 0;    // requests (or admin commands) taken from it
};

// Request latency buckets (upper bounds, seconds) of the metrics' histogram.
inline constexpr std::array<double, 14> request_latency_buckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

// One operation's requests as the metrics show them: how long each took from being taken
// off the socket to its response being queued, and the results of their operations.
struct request_meter {
  std::string op;
  std::vector<uint64_t> buckets;  // per request_latency_buckets, then +Inf (not cumulative)
  double sum_seconds = 0;
  uint64_t count = 0;
  std::vector<std::pair<std::string, uint64_t>> results;  // result name -> operations
};

class server_impl;

class server {
 public:
  // Listens and starts the network thread; nullptr (with *error) if it cannot.
  static std::unique_ptr<server> start(engine& e, const server_config& cfg, std::string* error);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  [[nodiscard]] uint16_t port() const;
  [[nodiscard]] const server_config& config() const;
  [[nodiscard]] server_stats stats() const;
  // The open connections, oldest first (from any thread; updated when a connection
  // opens, authenticates or closes, and with each request it sends).
  [[nodiscard]] std::vector<session_info> sessions() const;
  [[nodiscard]] const std::vector<gateway_config>& gateways() const;
  // Per operation kind, from any thread (relaxed counters).
  [[nodiscard]] std::vector<request_meter> request_meters() const;
  // Authenticated sessions open, per role (a session counts once for each of its roles).
  [[nodiscard]] std::vector<std::pair<std::string, uint64_t>> sessions_by_role() const;
  // Pushes a frame (kind push) to every open session of `gateway_id`; from any thread.
  // A frame that would take a session's queue past `out_bytes_max` waits in its push
  // backlog (push_backlog_bytes_max), in order, until sends make room.
  void push(const std::string& gateway_id, const std::string& topic, std::vector<uint8_t> body);

  // Graceful stop (see above); idempotent. The engine stays open.
  void stop();

 private:
  explicit server(std::unique_ptr<server_impl> impl);
  std::unique_ptr<server_impl> impl_;
};

// Instructions pushed to a gateway's sessions go in frames of at most
// push_instructions_max and of at most a quarter of the server's frame and queue limits,
// in order, so that no single push passes a session's queue limit (which would close it
// as a slow reader) however many instructions one batch or one session's opening makes.
constexpr size_t push_instructions_max = 4096;  // 160-192 KiB of instructions a frame
// Payout instructions: pays under topic "payouts", cancels under "payout_cancels" (so
// that a gateway that knows only pays never takes a cancel for one), pays first.
void push_payout_instructions(server& s, const std::string& gateway, std::vector<wire::payout_instruction>&& list);
// Order instructions to a broker's sessions, under topic "orders".
void push_order_instructions(server& s, const std::string& broker, const std::vector<wire::order_instruction>& list);

}  // namespace mesob::engine
