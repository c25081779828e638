#include "engine/server.hpp"

#include "actors/equb_rules.hpp"
#include "actors/gateway_registry.hpp"
#include "actors/portfolio.hpp"
#include "engine/events.hpp"
#include "engine/limits.hpp"
#include "storage/failure_probes.hpp"

#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <linux/sockios.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <span>
#include <mutex>
#include <optional>
#include <utility>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "wire/codec.hpp"
#include "wire/steady_ns.hpp"

namespace mesob::engine {

using wire::frame_kind;
using wire::protocol_error;

int listen_on(const std::string& address, uint16_t port, int backlog, bool nonblocking, std::string* error,
              int busy_wait_ms) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    *error = address + " is not an IPv4 address";
    return -1;
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  const int one = 1;
  if (fd < 0 || ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    *error = address + ":" + std::to_string(port) + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return -1;
  }
  for (int waited = 0;; waited += 10) {
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    const int e = errno;
    if (e != EADDRINUSE || port == 0 || waited >= busy_wait_ms) {
      *error = address + ":" + std::to_string(port) + ": " + std::strerror(e);
      ::close(fd);
      return -1;
    }
    ::usleep(10'000);
  }
  if (::listen(fd, backlog) != 0) {
    *error = address + ":" + std::to_string(port) + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string server_config::validate() const {
  if (connections_max == 0 || connections_max > 1'000'000) return "connections_max must be 1..1000000";
  if (in_flight_max == 0 || in_flight_max > 65536) return "in_flight_max must be 1..65536";
  if (engine_in_flight_max == 0) return "engine_in_flight_max must be at least 1";
  if (engine_in_flight_bytes_max < frame_bytes_max || engine_in_flight_bytes_max > (1ull << 40))
    return "engine_in_flight_bytes_max must be frame_bytes_max (" + std::to_string(frame_bytes_max) + ")..1 TiB";
  if (gateway_sessions_max == 0) return "gateway_sessions_max must be at least 1";
  if (registered_opens_per_s == 0 || registered_opens_per_s > 1'000'000)
    return "registered_opens_per_s must be 1..1000000";
  if (frame_bytes_max < 4096 || frame_bytes_max > wire::frame_bytes_max_ceiling)
    return "frame_bytes_max must be 4096.." + std::to_string(wire::frame_bytes_max_ceiling);
  if (out_bytes_max < frame_bytes_max) return "out_bytes_max must be at least frame_bytes_max";
  if (out_bytes_max > (1ull << 40)) return "out_bytes_max must be at most 1 TiB";
  if (out_bytes_total_max / 2 < out_bytes_max || out_bytes_total_max > (2ull << 40))
    return "out_bytes_total_max must be twice out_bytes_max..2 TiB";
  if (const uint64_t least = 2 * wire::frame_reader::held_max(frame_bytes_max);
      in_bytes_total_max < least || in_bytes_total_max > (2ull << 40))
    return "in_bytes_total_max must be " + std::to_string(least) +
           "..2 TiB (at least two frame buffers for frames of frame_bytes_max " + std::to_string(frame_bytes_max) + ")";
  if (push_backlog_bytes_max > (1ull << 40)) return "push_backlog_bytes_max must be at most 1 TiB";
  if (push_backlog_total_max < push_backlog_bytes_max || push_backlog_total_max > (1ull << 40))
    return "push_backlog_total_max must be push_backlog_bytes_max..1 TiB";
  if (handshakes_max == 0) return "handshakes_max must be at least 1";
  if (handshake_out_bytes_max < 4096 || handshake_out_bytes_max > out_bytes_max)
    return "handshake_out_bytes_max must be 4096..out_bytes_max";
  if (idle_timeout_ms == 0 || handshake_timeout_ms == 0 || flush_timeout_ms == 0) return "timeouts must be positive";
  constexpr uint64_t day_ms = 86'400'000;
  if (idle_timeout_ms > day_ms || handshake_timeout_ms > day_ms || flush_timeout_ms > day_ms || drain_timeout_ms > day_ms)
    return "timeouts must be at most a day (86400000 ms)";
  // The timer looks once a second: a shorter stall would cut sessions that read between
  // two looks.
  if (stall_timeout_ms < 1000 || stall_timeout_ms > day_ms)
    return "stall_timeout_ms must be 1000..86400000 (the server looks at sessions once a second)";
  // An id as messages show it: not one that looks like a secret (32 hex digits or more: a
  // spec with its parts out of order), which would land in the logs.
  const auto shown = [](const std::string& id) {
    const bool secret_like =
        id.size() >= 32 && std::all_of(id.begin(), id.end(), [](char c) { return std::isxdigit(uint8_t(c)) != 0; });
    return secret_like ? "(an id of " + std::to_string(id.size()) + " hex digits, like a secret: not shown)" : id;
  };
  for (const auto& g : gateways) {
    // As the registry takes them: a console must be able to log in with what it was given.
    if (!actors::gateways::id_text_valid(g.id))
      return "a gateway id must be 1.." + std::to_string(wire::gateway_id_max) +
             " bytes of letters, digits, '.', '_' and '-'";
    if (g.secret.size() < wire::secret_bytes_min || g.secret.size() > wire::gateway_secret_max)
      return "gateway " + shown(g.id) + ": the secret must be " + std::to_string(wire::secret_bytes_min) + " to " +
             std::to_string(wire::gateway_secret_max) + " bytes";
    if (g.roles == 0 || (g.roles & ~wire::roles::all)) return "gateway " + shown(g.id) + ": roles invalid";
  }
  for (size_t i = 0; i < gateways.size(); ++i)
    for (size_t j = i + 1; j < gateways.size(); ++j)
      if (gateways[i].id == gateways[j].id) return "gateway " + shown(gateways[i].id) + " is configured twice";
  return {};
}

namespace {

// Closes a connection after dropping what its peer sent that was not read: a socket closed
// with input unread makes the kernel reset the connection (the peer is told ECONNRESET
// rather than the end, and what is still queued to it is thrown away) instead of ending
// it with a FIN behind what was sent. At most 64 reads of up to 1 MiB, discarded in the
// kernel (MSG_TRUNC); what comes after that (or after a shutdown of the socket) the
// kernel still answers with a reset.
void close_connection(int fd) {
  for (int k = 0; k < 64 && ::recv(fd, nullptr, 1 << 20, MSG_DONTWAIT | MSG_TRUNC) > 0; ++k) {
  }
  ::close(fd);
}

constexpr uint32_t buf_count = 1024;          // provided receive buffers (power of two)
constexpr uint32_t buf_bytes = 32 * 1024;
// A session with a frame begun that still lacks at least this much (and a provided
// buffer's worth of it come), or whose buffer has grown to it, is read straight into
// that buffer (plain RECVs) instead of through provided buffers, saving a copy of each
// large request (perf/RESULTS.md).
constexpr uint32_t direct_recv_min = 2 * buf_bytes;
constexpr uint16_t buf_group = 0;
constexpr size_t send_iov_max = 64;           // frames gathered into one sendmsg
// Refused log-ins one connection may make (a mistyped secret, a rate limit): the last
// one's error closes it. Each costs the server a MAC; a guesser needs new connections,
// which the handshake limits per address bound.
constexpr uint32_t auth_attempts_max = 3;

// Session ids are unique in the process, across the client and admin ports (the audit
// trail names sessions by id).
std::atomic<uint64_t> next_session_id{1};

enum op : uint64_t { op_accept = 1, op_recv, op_send, op_wake, op_timer, op_cancel };

uint64_t tag(op o, uint32_t slot = 0, uint32_t gen = 0) {
  return uint64_t(o) << 56 | uint64_t(gen & 0xffffff) << 32 | slot;
}
op tag_op(uint64_t t) { return op(t >> 56); }
uint32_t tag_slot(uint64_t t) { return uint32_t(t); }
uint32_t tag_gen(uint64_t t) { return uint32_t(t >> 32) & 0xffffff; }

uint64_t now_ms() {
  return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

// A frame queued to a session: its own bytes, or bytes shared with other sessions (the
// same Events frame sent to several subscribers is built once).
struct out_frame {
  std::vector<uint8_t> own;
  std::shared_ptr<const std::vector<uint8_t>> shared;
  bool pushed = false;  // a pushed frame (events, a gateway's instructions): not in the total that pauses reading
  [[nodiscard]] const std::vector<uint8_t>& bytes() const { return shared ? *shared : own; }
  [[nodiscard]] size_t size() const { return bytes().size(); }
  // What it holds counted against the session's out_bytes_max (limits.hpp).
  [[nodiscard]] size_t charge() const { return size() + session_frame_keep_bytes; }
};
static_assert(sizeof(out_frame) + 32 <= session_frame_keep_bytes, "its entry and a heap block's header");

// A session: one connection, owned by the network thread.
struct session {
  uint32_t slot = 0;
  uint32_t gen = 0;
  int fd = -1;
  bool authed = false;
  bool in_handshake = false;  // counted in handshakes_open_ (not authenticated, not closing)
  uint32_t peer_ip = 0;       // IPv4, network order (handshakes are counted per address)
  std::vector<uint8_t> nonce;
  uint32_t auth_failures = 0;  // refused Auth frames (auth_attempts_max)
  std::string gateway;
  uint64_t session_id = 0;
  std::string peer;
  std::shared_ptr<std::atomic<uint64_t>> requests = std::make_shared<std::atomic<uint64_t>>(0);
  uint32_t roles = 0;
  uint32_t registered = 0;  // a registry gateway's number (its session counts for payout routing)
  uint32_t gateway_number = 0;  // a registry gateway's number, whatever its roles (0: the config file's)
  uint64_t gateway_disabled_at = 0;  // its gateway's disabled_at at login (actors/gateway_registry.hpp)
  uint64_t gateway_secret_at = 0;    // and its secret_rotated_at
  std::shared_ptr<const actors::gateways::registry> seen_registry;  // as of its last frame
  // Its gateway's requests in the engine, all its sessions' (from authentication on;
  // server thread only): at most gateway_in_flight_max().
  std::shared_ptr<uint32_t> gateway_in_flight;
  bool subscriber = false;  // sent a Subscribe: the event hub hears when it closes
  wire::frame_reader reader;
  std::deque<out_frame> out;
  size_t out_offset = 0;  // bytes of out.front() already sent
  uint64_t out_bytes = 0;
  uint64_t pushed_bytes = 0;  // of out_bytes, pushed frames'
  // Pushed frames that did not fit under out_bytes_max, in order (push_backlog_bytes_max).
  std::deque<out_frame> backlog;
  uint64_t backlog_bytes = 0;  // as charged
  bool sending = false;
  bool recv_armed = false;
  bool recv_cancelling = false;
  bool listed_stopped = false;  // in server::stopped_ (it stopped taking frames)
  bool recv_direct = false;  // the armed receive is a plain RECV into reader.prepare()
  size_t reader_bytes = 0;   // reader.held_bytes() as last counted in server_stats
  uint32_t in_flight = 0;
  // Bytes set aside for the answers of its requests in the engine (reply_bytes_bound
  // each), counted with what is queued to it when deciding whether it is read.
  uint64_t owed_bytes = 0;
  // The bound of the next frame's answer (reply_bytes_bound, 0 for a frame that is no
  // request), once looked at while all sessions hold out_bytes_total_max; forgotten when
  // a frame is taken.
  std::optional<uint64_t> next_owed;
  bool closing = false;
  bool close_after_flush = false;
  bool peer_done = false;  // the peer shut its side (end of file): no more bytes will come
  uint64_t close_by_ms = 0;     // with close_after_flush: closed then, flushed or not
  uint64_t last_active_ms = 0;  // a frame taken, bytes sent, or session_recv_activity_bytes received
  uint64_t last_frame_ms = 0;   // a frame taken (or the session opened)
  bool release_reader = false;  // its direct receive is being cancelled to give its buffer back
  bool dropping_reader = false;  // closing: its direct receive is being cancelled to drop its buffer
  uint64_t recv_uncounted = 0;  // bytes received since the last counted as activity
  uint64_t out_since_ms = 0;    // out non-empty: since when it has waited for a send's progress
  int64_t kernel_queue_seen = -1;  // its socket's send queue (SIOCOUTQ) when last looked at
  uint64_t opened_ms = 0;
  // sendmsg state (must live until the send completes)
  struct msghdr msg {};
  struct iovec iov[send_iov_max]{};
  size_t iov_frames = 0;

  explicit session(uint32_t frame_max) : reader(frame_max) {}
};

struct completed {
  uint32_t slot, gen;
  uint64_t request_id;
  wire::operation op;
  reply r;
  bool is_admin = false;  // an admin command's answer (admin_reply) instead of r
  wire::admin_response_msg admin_reply;
  uint64_t taken_ns = 0;  // steady clock when the request was taken off the socket
  uint64_t owed = 0;      // the bytes set aside for its answer (session::owed_bytes)
  uint64_t body_bytes = 0;  // its request's body (server::engine_bytes_in_flight_)
  std::shared_ptr<uint32_t> gateway_in_flight;  // its gateway's requests in the engine (session::)
};

// Per operation: requests' time from being taken off the socket to their response being
// queued (a histogram), and the results of their operations. Written by the network
// thread, read by the metrics endpoint.
struct op_meter {
  std::array<std::atomic<uint64_t>, request_latency_buckets.size() + 1> buckets{};  // the last: +Inf
  std::atomic<uint64_t> sum_ns{0}, count{0};
  std::array<std::atomic<uint64_t>, 256> results{};  // by result code (codes are < 256)
};

// A frame to push to a gateway's sessions, from any thread.
struct outgoing_push {
  std::string gateway_id;
  std::vector<uint8_t> frame;
  uint64_t session_id = 0;  // set: to that session only (events), whatever its gateway
  std::shared_ptr<const std::vector<uint8_t>> shared;  // with session_id: the frame, shared
};

// Where engine callbacks (on shard threads) leave replies. Shared with the callbacks,
// so a reply that arrives after the server is gone (a drain that timed out) lands here
// harmlessly.
struct mailbox {
  std::mutex mu;
  std::vector<completed> q;
  std::vector<outgoing_push> pushes;
  int fd = -1;  // eventfd the network loop reads
  ~mailbox() {
    if (fd >= 0) ::close(fd);
  }
  // Only the post that finds the mailbox empty wakes the loop: the loop takes everything
  // in it at once, so a post to a non-empty mailbox is covered by the wake before it
  // (one eventfd write per burst of replies instead of one per reply).
  void post(completed&& c) {
    bool was_empty;
    {
      std::lock_guard lk(mu);
      was_empty = q.empty() && pushes.empty();
      q.push_back(std::move(c));
    }
    if (was_empty) wake();
  }
  void post(outgoing_push&& p) {
    bool was_empty;
    {
      std::lock_guard lk(mu);
      was_empty = q.empty() && pushes.empty();
      pushes.push_back(std::move(p));
    }
    if (was_empty) wake();
  }
  void wake() {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(fd, &one, sizeof one);
  }
};

}  // namespace

class server_impl {
 public:
  engine& eng_;
  server_config cfg_;
  io_uring ring_{};
  int listen_fd_ = -1;
  std::shared_ptr<mailbox> mail_ = std::make_shared<mailbox>();
  int wake_fd_ = -1;  // mail_->fd
  uint16_t port_ = 0;
  io_uring_buf_ring* br_ = nullptr;
  size_t br_bytes_ = 0;
  std::unique_ptr<uint8_t[]> bufs_;
  std::vector<std::unique_ptr<session>> sessions_;
  std::vector<uint32_t> free_slots_;
  std::unordered_map<uint64_t, uint32_t> by_session_;  // authenticated sessions: id -> slot
  uint64_t open_ = 0;
  uint64_t handshakes_open_ = 0;                     // sessions in_handshake
  uint64_t owed_total_ = 0;                          // every session's owed_bytes
  std::vector<uint64_t> peeked_;                     // next_owed's aligned copy of a body
  // Sessions in their handshake by peer address: how many, and (slot, gen, order opened)
  // oldest first (entries of sessions that authenticated or went are dropped as met at
  // the front). An address leaves the map when its last handshake ends.
  struct handshake_entry {
    uint32_t slot, gen;
    uint64_t seq;
  };
  struct peer_handshakes {
    uint32_t open = 0;
    std::deque<handshake_entry> q;
  };
  std::unordered_map<uint32_t, peer_handshakes> handshakes_;
  uint64_t handshake_seq_ = 0;
  uint64_t engine_in_flight_ = 0;
  uint64_t engine_bytes_in_flight_ = 0;  // their request bodies (engine_in_flight_bytes_max)
  // Sessions that stopped taking frames (process() found them unable to read: a limit on
  // what is queued to them, or a request with no place in the engine), as (slot, gen), in
  // the order they stopped: resume_all looks at these alone, so its cost is theirs, not
  // every open session's (before, each wake walked them all). One that took the engine's
  // last place goes to the back when it stops again: sessions take turns when it is full.
  std::vector<std::pair<uint32_t, uint32_t>> stopped_;
  // Each gateway's authenticated sessions, as their slots: a push to a gateway looks at
  // its own sessions alone (before, it walked every open session, up to connections_max).
  std::unordered_map<std::string, std::vector<uint32_t>> gateway_sessions_;
  // Each gateway's requests in the engine (session::gateway_in_flight), held by its
  // sessions and by the requests' completions: an entry goes when both are gone.
  std::unordered_map<std::string, std::weak_ptr<uint32_t>> gateway_in_flight_;
  std::unordered_set<std::string> warned_clashes_;  // config gateways also registered, told once each
  // Registered gateways' session openings (registered_opens_per_s): a token bucket each,
  // in thousandths of an opening, by gateway number. Full buckets are dropped at the
  // timer's tick, so the map holds the gateways that opened sessions lately.
  struct opens_bucket {
    uint64_t milli = 0;
    uint64_t at_ms = 0;
  };
  std::unordered_map<uint32_t, opens_bucket> opens_;
  [[nodiscard]] uint64_t opens_burst_milli() const { return uint64_t(cfg_.registered_opens_per_s) * 4000; }
  [[nodiscard]] uint64_t opens_now(const opens_bucket& b, uint64_t t) const {
    return std::min(opens_burst_milli(), b.milli + (t - b.at_ms) * cfg_.registered_opens_per_s);
  }
  // Takes one opening of the gateway's bucket; false (and nothing taken) when empty.
  bool take_open(uint32_t number) {
    const uint64_t t = now_ms();
    auto [it, fresh] = opens_.try_emplace(number, opens_bucket{opens_burst_milli(), t});
    opens_bucket& b = it->second;
    b.milli = opens_now(b, t);
    b.at_ms = t;
    if (b.milli < 1000) return false;
    b.milli -= 1000;
    return true;
  }
  std::unordered_map<std::string, const gateway_config*> gateways_;
  std::thread thread_;
  std::atomic<bool> stop_requested_{false};
  bool stopping_ = false;
  uint64_t stop_deadline_ms_ = 0;
  bool accept_armed_ = false;
  uint64_t wake_value_ = 0;
  __kernel_timespec timer_ts_{1, 0};
  // The open connections for sessions(): written by the network thread when one opens,
  // authenticates or closes; request counts are per-session atomics.
  struct listed {
    session_info info;
    uint64_t opened_ms = 0;
    std::shared_ptr<std::atomic<uint64_t>> requests;
  };
  mutable std::mutex list_mu_;
  std::map<uint64_t, listed> listed_;  // by slot << 32 | gen
  static uint64_t list_key(const session& s) { return uint64_t(s.slot) << 32 | s.gen; }
  // Stats (written by the network thread).
  std::atomic<uint64_t> st_accept_failures_{0}, st_backlogged_{0};
  // Accepts failed in a row; past accept_failures_in_row_max (or on a resource error:
  // out of descriptors or memory) accepting waits for the timer's next tick instead of
  // failing again at once, with a connection waiting in the backlog, in a loop.
  uint32_t accept_failed_in_row_ = 0;
  bool accept_waits_ = false;
  static constexpr uint32_t accept_failures_in_row_max = 16;
  std::atomic<uint64_t> st_total_{0}, st_refused_{0}, st_frames_{0}, st_direct_{0}, st_reader_bytes_{0},
      st_requests_{0}, st_errors_{0}, st_auth_fail_{0}, st_open_{0}, st_pushes_{0}, st_slow_{0}, st_evicted_{0},
      st_out_total_{0}, st_spilled_{0}, st_backlog_{0}, st_in_closed_{0};
  // Operations prepared while the ring's submission queue stayed full after a submit (the
  // kernel refused the submit: EBUSY with completions overflowing, EAGAIN): copied into
  // the ring in order at the next loop turn. Never more than one per operation in flight.
  std::deque<io_uring_sqe> spill_;
  uint64_t out_total_ = 0;      // queued to all sessions (network thread)
  uint64_t pushed_total_ = 0;   // of it, pushed frames'
  uint64_t backlog_total_ = 0;  // all sessions' push backlogs (network thread)
  // What counts against out_bytes_total_max: all but pushed frames (count_out).
  [[nodiscard]] uint64_t held_total() const { return out_total_ - pushed_total_; }
  [[nodiscard]] static uint64_t held(const session& s) { return s.out_bytes - s.pushed_bytes; }
  std::shared_ptr<const actors::gateways::registry> timer_registry_;  // as on_timer last looked
  bool total_paused_ = false;   // out_total_ reached out_bytes_total_max: resume_all when under it
  bool limits_due_ = false;     // enforce_out_limits after this round of completions
  uint64_t reader_total_ = 0;   // all sessions' frame buffers (network thread; st_reader_bytes_ shows it)
  bool in_limit_due_ = false;   // reader_total_ passed in_bytes_total_max: enforce_in_limit
  std::array<op_meter, 32> meters_;  // by wire::operation
  std::array<std::atomic<uint64_t>, 8> role_sessions_{};  // authenticated sessions open, per role bit

  server_impl(engine& e, const server_config& cfg) : eng_(e), cfg_(cfg) {
    for (const auto& g : cfg_.gateways) gateways_[g.id] = &g;
  }

  ~server_impl() {
    if (listen_fd_ >= 0) ::close(listen_fd_);
    for (auto& s : sessions_)
      if (s && s->fd >= 0) close_connection(s->fd);
    if (ring_.ring_fd > 0) io_uring_queue_exit(&ring_);
    if (br_) ::munmap(br_, br_bytes_);
  }

  bool setup(std::string* error) {
    listen_fd_ = std::exchange(cfg_.listen_fd, -1);
    if (listen_fd_ < 0) {
      std::string why;
      listen_fd_ = listen_on(cfg_.address, cfg_.port, listen_backlog, false, &why);
      if (listen_fd_ < 0) {
        *error = "server: " + why;
        return false;
      }
    }
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    wake_fd_ = mail_->fd = ::eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0) return fail(error, "eventfd");
    if (int rc = io_uring_queue_init(4096, &ring_, 0); rc < 0) {
      ring_.ring_fd = -1;
      *error = std::string("server: io_uring_queue_init: ") + std::strerror(-rc);
      return false;
    }
    // Provided receive buffers (liburing 2.3 has no setup helper: mmap and register).
    br_bytes_ = buf_count * sizeof(io_uring_buf);
    void* mem = ::mmap(nullptr, br_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) return fail(error, "mmap buffer ring");
    br_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(br_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(mem);
    reg.ring_entries = buf_count;
    reg.bgid = buf_group;
    if (int rc = io_uring_register_buf_ring(&ring_, &reg, 0); rc < 0) {
      *error = std::string("server: io_uring_register_buf_ring: ") + std::strerror(-rc);
      return false;
    }
    bufs_ = std::make_unique<uint8_t[]>(size_t(buf_count) * buf_bytes);
    for (uint32_t i = 0; i < buf_count; ++i)
      io_uring_buf_ring_add(br_, bufs_.get() + size_t(i) * buf_bytes, buf_bytes, uint16_t(i),
                            io_uring_buf_ring_mask(buf_count), int(i));
    io_uring_buf_ring_advance(br_, int(buf_count));
    return true;
  }

  static bool fail(std::string* error, const std::string& what) {
    *error = "server: " + what + ": " + std::strerror(errno);
    return false;
  }

  // The next submission entry to prepare: the ring's, or, while the ring's queue is full
  // even after a submit, one kept in spill_ (and, once any is kept, every later one, so
  // that operations reach the kernel in the order they were prepared).
  io_uring_sqe* sqe() {
    if (spill_.empty() && !probe_full()) {
      if (io_uring_sqe* s = io_uring_get_sqe(&ring_)) return s;
      io_uring_submit(&ring_);
      if (io_uring_sqe* s = io_uring_get_sqe(&ring_)) return s;
    }
    st_spilled_.fetch_add(1, std::memory_order_relaxed);
    return &spill_.emplace_back();  // zeroed; deque elements keep their addresses
  }
  static bool probe_full() {
    auto& p = storage::failure_probes::instance().server_sq_full;
    if (p.load(std::memory_order_relaxed) <= 0) return false;
    return p.fetch_sub(1, std::memory_order_relaxed) > 0;
  }
  // Spilled entries into the ring, as far as it has room.
  void unspill() {
    while (!spill_.empty()) {
      io_uring_sqe* s = io_uring_get_sqe(&ring_);
      if (!s && io_uring_submit(&ring_) >= 0) s = io_uring_get_sqe(&ring_);
      if (!s) return;  // the next turn, once completions are taken
      *s = spill_.front();
      spill_.pop_front();
    }
  }

  void arm_accept() {
    auto* s = sqe();
    io_uring_prep_multishot_accept(s, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, tag(op_accept));
    accept_armed_ = true;
  }
  void arm_wake() {
    auto* s = sqe();
    io_uring_prep_read(s, wake_fd_, &wake_value_, sizeof wake_value_, 0);
    io_uring_sqe_set_data64(s, tag(op_wake));
  }
  void arm_timer() {
    auto* s = sqe();
    io_uring_prep_timeout(s, &timer_ts_, 0, 0);
    io_uring_sqe_set_data64(s, tag(op_timer));
  }
  // Reads a session: a multishot receive into provided buffers (a session of small
  // frames holds no receive buffer of its own), or, for a session that sends large
  // frames, a plain receive straight into its frame buffer, as much as the socket holds
  // and the buffer's free space takes (at least the rest of the frame begun and
  // direct_recv_min more): a large frame is copied once instead of twice, and back-to-back
  // frames come in few completions.
  void arm_recv(session& ss) {
    if (ss.recv_armed || ss.closing || ss.close_after_flush || ss.peer_done) return;
    auto* s = sqe();
    if (const size_t want = direct_wanted(ss)) {
      const auto dst = ss.reader.prepare(want);
      count_reader(ss);
      io_uring_prep_recv(s, ss.fd, dst.data(), dst.size(), 0);
      ss.recv_direct = true;
    } else {
      io_uring_prep_recv_multishot(s, ss.fd, nullptr, 0, 0);
      s->flags |= IOSQE_BUFFER_SELECT;
      s->buf_group = buf_group;
      ss.recv_direct = false;
    }
    io_uring_sqe_set_data64(s, tag(op_recv, ss.slot, ss.gen));
    ss.recv_armed = true;
  }
  // A session sends large frames when its buffer has grown for one (kept until the session goes quiet: release_idle_readers),
  // or one is under way and a provided buffer's worth of it has come. The room asked
  // for grows with what was received, not with what a header claims: at most twice the
  // bytes buffered and direct_recv_min more, so a peer sending headers alone cannot
  // make the server hold more than before. Only authenticated sessions.
  size_t direct_wanted(const session& ss) const {
    if (!ss.authed) return 0;
    const size_t missing = ss.reader.missing(), have = ss.reader.buffered();
    if (ss.reader.capacity() < direct_recv_min && (missing < direct_recv_min || have < buf_bytes)) return 0;
    return std::min(missing, std::max<size_t>(direct_recv_min, have)) + direct_recv_min;
  }
  // Stops reading a session (backpressure, or to switch to a direct receive): cancels
  // its receive.
  void pause_recv(session& ss) {
    if (!ss.recv_armed || ss.recv_cancelling) return;
    auto* s = sqe();
    io_uring_prep_cancel64(s, tag(op_recv, ss.slot, ss.gen), 0);
    io_uring_sqe_set_data64(s, tag(op_cancel));
    ss.recv_cancelling = true;
  }
  // Whether the session may take more frames off its socket and its buffer now: not
  // while its limits on what is queued to it are reached, nor while the next frame it
  // holds (its header is enough) is a request that has no place in the engine. Frames that need no place
  // (pings, a log-in, subscriptions and acks) are taken while the engine is full; the
  // session stops at its first request that must wait (its frames are taken in order).
  bool may_read(session& ss) {
    return !ss.closing && !ss.close_after_flush && !stopping_ &&
           ss.out_bytes + ss.owed_bytes < (ss.authed ? cfg_.out_bytes_max : cfg_.handshake_out_bytes_max) &&
           !over_share(ss) && !waits_for_engine(ss);
  }
  // Room for one more request of `body_bytes` (engine_in_flight_bytes_max is at least a
  // frame: one always fits when none is in the engine).
  [[nodiscard]] bool engine_room(const session& ss, uint64_t body_bytes) const {
    return engine_in_flight_ < cfg_.engine_in_flight_max &&
           engine_bytes_in_flight_ + body_bytes <= cfg_.engine_in_flight_bytes_max &&
           (!ss.gateway_in_flight || *ss.gateway_in_flight < gateway_in_flight_max());
  }
  // The frame's header is enough: a session is not read past the header of a request
  // that has no room (before, its body came whole first, so sessions of a gateway that
  // filled its share could each hold a frame of frame_bytes_max, past in_bytes_total_max).
  [[nodiscard]] bool waits_for_engine(const session& ss) const {
    if (!ss.authed || engine_room(ss, cfg_.frame_bytes_max)) return false;  // room for any frame
    wire::frame_header h;
    return ss.reader.peek_header(&h) &&
           (frame_kind(h.kind) == frame_kind::request || frame_kind(h.kind) == frame_kind::admin_request) &&
           !engine_room(ss, h.body_bytes);
  }
  // One gateway's sessions together hold at most three quarters of the places in the
  // engine: a gateway pipelining on many sessions cannot take them all, and another's
  // requests still get in.
  [[nodiscard]] uint32_t gateway_in_flight_max() const {
    return cfg_.engine_in_flight_max - cfg_.engine_in_flight_max / 4;
  }
  // All sessions together hold out_bytes_total_max, and this one at least its share
  // (session_total_share_min): it is not read until the total comes down.
  [[nodiscard]] uint64_t total_share() const {
    return std::max<uint64_t>(session_total_share_min, cfg_.out_bytes_total_max / std::max<uint32_t>(1, cfg_.connections_max));
  }
  // (The answers owed count too: a session's requests taken while its queue was empty
  // would otherwise queue them all, past every limit, before it stops being read.) Nor
  // does it take a request whose answer's bound would take it past its share: what the
  // sessions add past the total is at most a share each. (Before, each could take one
  // more request of any bound up to out_bytes_max: 4,096 sessions of 32 MiB.) A request
  // whose bound is more than a share waits until the total comes down.
  [[nodiscard]] bool over_share(session& ss) {
    if (held_total() + owed_total_ < cfg_.out_bytes_total_max) return false;
    const uint64_t mine = held(ss) + ss.owed_bytes;
    return mine >= total_share() || mine + next_owed(ss) > total_share();
  }
  // The session's next frame off its buffer (what next_owed knew of it goes with it).
  static wire::frame_reader::status take_frame(session& ss, wire::frame_reader::frame* f) {
    ss.next_owed.reset();
    return ss.reader.next(f);
  }
  // The bound on the answer to the session's next frame, if it is a whole request (else 0:
  // a frame not yet whole is read on, and is looked at again when it is). A misaligned
  // body is parsed from a copy the server holds only meanwhile (at most aligned_kept_max
  // kept between frames).
  uint64_t next_owed(session& ss) {
    if (ss.next_owed) return *ss.next_owed;
    wire::frame_reader::frame f;
    if (!ss.authed || ss.reader.peek(&f) != wire::frame_reader::status::frame) return 0;
    ss.next_owed = 0;
    if (frame_kind(f.header.kind) != frame_kind::request) return 0;
    std::span<const uint8_t> body = f.body;
    if (reinterpret_cast<uintptr_t>(body.data()) % 8 != 0) {
      peeked_.resize((body.size() + 7) / 8);
      if (!body.empty()) std::memcpy(peeked_.data(), body.data(), body.size());
      body = {reinterpret_cast<const uint8_t*>(peeked_.data()), body.size()};
    }
    wire::parsed_request p;
    wire::error_msg err;
    if (wire::parse_request(body, &p, &err)) ss.next_owed = std::min(reply_bytes_bound(p), cfg_.out_bytes_max);
    if (peeked_.capacity() * sizeof(uint64_t) > wire::frame_reader::aligned_kept_max) std::vector<uint64_t>().swap(peeked_);
    return *ss.next_owed;
  }

  void run() {
    pthread_setname_np(pthread_self(), "mesob.net");
    arm_accept();
    arm_wake();
    arm_timer();
    for (;;) {
      unspill();
      // A kernel refusing submits (EAGAIN: no memory for them) with nothing to reap would
      // spin the loop: it waits a millisecond before trying again.
      if (io_uring_submit_and_wait(&ring_, 1) == -EAGAIN && io_uring_cq_ready(&ring_) == 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      io_uring_cqe* cqe;
      unsigned head, n = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++n;
        handle(cqe->user_data, cqe->res, cqe->flags);
      }
      io_uring_cq_advance(&ring_, n);
      if (limits_due_) {
        limits_due_ = false;
        enforce_out_limits();
      }
      if (std::exchange(in_limit_due_, false)) enforce_in_limit();
      if (total_paused_ && held_total() < cfg_.out_bytes_total_max) {
        total_paused_ = false;  // under the total again: every session may be read
        resume_all();
      }
      if (stopping_ && drained()) break;
    }
    // The sessions left at the end go with the server; their subscriptions too (the
    // engine may serve a later server, and their names must be free for it).
    for (auto& s : sessions_)
      if (s && s->fd >= 0) {
        close_connection(s->fd);
        s->fd = -1;
        session_ended(*s);
        subscription_closed(*s);
      }
    std::lock_guard lk(list_mu_);
    listed_.clear();
  }

  bool drained() const {
    if (engine_in_flight_ > 0 && now_ms() < stop_deadline_ms_) return false;
    for (const auto& s : sessions_)
      if (s && s->fd >= 0 && !s->out.empty() && now_ms() < stop_deadline_ms_) return false;
    return true;
  }

  void handle(uint64_t t, int res, uint32_t flags) {
    switch (tag_op(t)) {
      case op_accept: on_accept(res, flags); break;
      case op_recv: on_recv(t, res, flags); break;
      case op_send: on_send(t, res); break;
      case op_wake: on_wake(res); break;
      case op_timer: on_timer(); break;
      case op_cancel: break;
    }
  }

  session* lookup(uint64_t t) {
    const uint32_t slot = tag_slot(t);
    if (slot >= sessions_.size() || !sessions_[slot]) return nullptr;
    session* s = sessions_[slot].get();
    return (s->gen & 0xffffff) == tag_gen(t) && s->fd >= 0 ? s : nullptr;
  }

  // ---- connections -------------------------------------------------------------------

  void on_accept(int res, uint32_t flags) {
    if (!(flags & IORING_CQE_F_MORE)) accept_armed_ = false;
    if (res >= 0) {
      // Over a limit, the oldest session still in its handshake makes room (its fd goes
      // when its operations complete: until then connections_max is passed by the
      // sessions closing so).
      bool evicted = false;
      if (!stopping_ && (open_ >= cfg_.connections_max || handshakes_open_ >= cfg_.handshakes_max))
        evicted = evict_handshake();
      if (stopping_ || (open_ >= cfg_.connections_max && !evicted)) {
        st_refused_.fetch_add(1, std::memory_order_relaxed);  // counted before the peer can see it
        close_connection(res);  // over the limit: refused at once
      } else {
        open_session(res);
      }
      accept_failed_in_row_ = 0;
    } else if (!stopping_) {  // (a stop's close of the listening socket ends the accept: no failure)
      st_accept_failures_.fetch_add(1, std::memory_order_relaxed);
      const bool resources = res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM;
      if ((resources || ++accept_failed_in_row_ >= accept_failures_in_row_max) && !accept_waits_) {
        accept_waits_ = true;
        std::fprintf(stderr, "mesobd: accepting connections failed (%s); trying again in a second\n",
                     std::strerror(-res));
      }
    }
    if (!accept_armed_ && !stopping_ && !accept_waits_) arm_accept();
  }

  // A session still in its handshake, not closing, or nullptr.
  session* handshaking(const handshake_entry& e) {
    session* s = e.slot < sessions_.size() ? sessions_[e.slot].get() : nullptr;
    return s && s->gen == e.gen && s->fd >= 0 && s->in_handshake && !s->closing ? s : nullptr;
  }
  // Closes a session that has not authenticated: the oldest of the peer address holding
  // the most handshakes (the oldest of all among addresses holding as many), so a flood
  // of silent connections from one address pushes out its own, not a gateway's that is a
  // round trip from its auth. (Its slot and count go when its operations complete: open_
  // falls then, so a connection arriving meanwhile may still be refused.)
  bool evict_handshake() {
    peer_handshakes* most = nullptr;
    for (auto& [ip, p] : handshakes_) {
      while (!p.q.empty() && !handshaking(p.q.front())) p.q.pop_front();
      if (p.q.empty()) continue;
      if (!most || p.open > most->open || (p.open == most->open && p.q.front().seq < most->q.front().seq)) most = &p;
    }
    if (!most) return false;
    session* s = handshaking(most->q.front());
    most->q.pop_front();
    st_evicted_.fetch_add(1, std::memory_order_relaxed);
    close_session(*s);  // (may erase `most`: its last handshake)
    return true;
  }
  void left_handshake(session& s) {
    if (s.in_handshake) {
      s.in_handshake = false;
      --handshakes_open_;
      const auto it = handshakes_.find(s.peer_ip);
      if (it != handshakes_.end() && --it->second.open == 0) handshakes_.erase(it);
    }
  }

  void open_session(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint32_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      slot = uint32_t(sessions_.size());
      sessions_.emplace_back();
    }
    const uint32_t gen = sessions_[slot] ? sessions_[slot]->gen + 1 : 1;
    sessions_[slot] = std::make_unique<session>(std::min(handshake_frame_bytes_max, cfg_.frame_bytes_max));
    session& s = *sessions_[slot];
    s.slot = slot;
    s.gen = gen;
    s.fd = fd;
    s.opened_ms = s.last_active_ms = s.last_frame_ms = now_ms();
    s.nonce = wire::random_bytes(wire::nonce_bytes);
    sockaddr_in peer{};
    socklen_t plen = sizeof peer;
    char addr[INET_ADDRSTRLEN] = "?";
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) {
      ::inet_ntop(AF_INET, &peer.sin_addr, addr, sizeof addr);
      s.peer_ip = peer.sin_addr.s_addr;
    }
    s.peer = std::string(addr) + ":" + std::to_string(ntohs(peer.sin_port));
    {
      std::lock_guard lk(list_mu_);
      listed_[list_key(s)] = {session_info{0, {}, s.peer, 0, 0}, s.opened_ms, s.requests};
    }
    ++open_;
    st_open_.store(open_, std::memory_order_relaxed);
    st_total_.fetch_add(1, std::memory_order_relaxed);
    s.in_handshake = true;
    ++handshakes_open_;
    // Oldest first; entries of sessions that authenticated or went are dropped as met
    // (at the front, at each accept from the address), so a queue stays within its
    // address's handshakes of about one handshake timeout.
    peer_handshakes& ph = handshakes_[s.peer_ip];
    ++ph.open;
    while (!ph.q.empty() && !handshaking(ph.q.front())) ph.q.pop_front();
    ph.q.push_back({slot, gen, ++handshake_seq_});
    wire::hello_msg h{wire::protocol_version, s.nonce, std::string("mesobd ") + version};
    queue_frame(s, frame_kind::hello, 0, wire::hello_body(h));
    arm_recv(s);
  }

  // Closes at once: the socket is shut down so pending operations complete, and the
  // slot is freed when none is left.
  void close_session(session& s) {
    if (s.closing) return;
    s.closing = true;
    owed_total_ -= s.owed_bytes;  // its answers will not be queued
    s.owed_bytes = 0;
    count_backlog(s, -int64_t(s.backlog_bytes));  // never sent now: its bytes go at once
    s.backlog.clear();
    left_handshake(s);
    ::shutdown(s.fd, SHUT_RDWR);
    maybe_free(s);
  }
  // A registered gateway's session opening or closing, logged (payout and order routing
  // follow them): counted with the requests in the engine (engine_in_flight_max), so
  // that a gateway connecting and closing in a loop cannot grow the engine's queue.
  void session_event(uint32_t gateway, wire::gateway_event_kind kind) {
    ++engine_in_flight_;
    eng_.gateway_event({gateway, kind, {}}, [mail = mail_](reply&& r) {
      mail->post({no_session, 0, 0, wire::operation(0), std::move(r), false, {}, 0, 0, 0, nullptr});
    });
  }
  static constexpr uint32_t no_session = UINT32_MAX;  // a completion no session waits for
  // A registered gateway's session going away: payout routing learns it through the log.
  void session_ended(session& s) {
    if (s.registered == 0) return;
    session_event(s.registered, wire::gateway_event_kind::down);
    s.registered = 0;
  }
  // The hub ends the session's subscription (a named one's name is free again).
  void subscription_closed(session& s) {
    if (s.subscriber && eng_.events()) eng_.events()->closed(s.session_id);
    s.subscriber = false;
  }
  void maybe_free(session& s) {
    if (!s.closing || s.recv_armed || s.sending) return;
    close_connection(s.fd);
    s.fd = -1;
    session_ended(s);
    if (s.session_id != 0) {
      by_session_.erase(s.session_id);
      if (auto g = gateway_sessions_.find(s.gateway); g != gateway_sessions_.end()) {
        std::erase(g->second, s.slot);
        if (g->second.empty()) gateway_sessions_.erase(g);
      }
      s.gateway_in_flight.reset();
      for (uint32_t bit = 0; bit < role_sessions_.size(); ++bit)
        if (s.roles & (1u << bit)) role_sessions_[bit].fetch_sub(1, std::memory_order_relaxed);
    }
    subscription_closed(s);
    {
      std::lock_guard lk(list_mu_);
      listed_.erase(list_key(s));
    }
    --open_;
    st_open_.store(open_, std::memory_order_relaxed);
    s.reader = wire::frame_reader(s.reader.body_max());  // its buffer goes now, not at the slot's reuse
    count_out(s, -int64_t(held(s)));  // and what was queued to it
    count_out(s, -int64_t(s.pushed_bytes), true);
    s.out.clear();
    s.out_offset = 0;
    count_reader(s);
    free_slots_.push_back(s.slot);
  }
  // Keeps server_stats::frame_buffer_bytes (the sessions' frame buffers) current.
  void count_reader(session& s) {
    const size_t now = s.reader.held_bytes();
    if (now == s.reader_bytes) return;
    reader_total_ += now - s.reader_bytes;  // wraps down when smaller
    s.reader_bytes = now;
    st_reader_bytes_.store(reader_total_, std::memory_order_relaxed);
    if (reader_total_ > cfg_.in_bytes_total_max) in_limit_due_ = true;
  }
  // Gives back a session's frame buffer's room past what it holds (frame_reader::
  // release); the bytes still held until a direct receive writing into it is cancelled
  // (its completion frees them).
  uint64_t give_back_reader(session& s) {
    if (s.recv_armed && s.recv_direct) {
      s.release_reader = true;
      pause_recv(s);
      return s.reader_bytes;
    }
    if (s.reader.release()) count_reader(s);
    return 0;
  }
  // Drops a session's frame buffer, what it holds included (a session taking no more
  // frames); as give_back_reader.
  uint64_t drop_reader(session& s) {
    if (s.recv_armed && s.recv_direct) {
      s.dropping_reader = true;
      pause_recv(s);
      return s.reader_bytes;
    }
    s.reader = wire::frame_reader(s.reader.body_max());
    count_reader(s);
    return 0;
  }

  // All sessions' frame buffers past in_bytes_total_max (server_config): the buffers
  // held with nothing in them go, those of sessions not being read keep only what they
  // hold, and those of sessions closing go (they take no more frames); then the sessions holding the most of a frame not yet whole are closed
  // (frame_buffers_full) until the rest hold less. A session whose buffered frames are
  // whole, or that the server stopped reading (its limits, a stop: what it holds of its
  // next frame came with the last one's end), is waiting for the server, not the other
  // way round: never closed for this.
  // Called at the end of a round of completions (never while a frame is being handled:
  // its body lives in the buffer).
  void enforce_in_limit() {
    const uint64_t limit = cfg_.in_bytes_total_max;
    uint64_t going = 0;  // held until cancelled receives complete
    for (auto& sp : sessions_) {
      if (reader_total_ - going <= limit) return;
      if (!sp || sp->fd < 0 || sp->closing || sp->release_reader || sp->dropping_reader) continue;
      session& s = *sp;
      if (s.close_after_flush && s.reader_bytes > 0) {
        going += drop_reader(s);
      } else if (s.reader.capacity() > buf_bytes &&
                 (s.reader.buffered() == 0 || (!may_read(s) && s.reader.capacity() > 2 * s.reader.buffered()))) {
        going += give_back_reader(s);  // (one not read keeps what it holds, no more)
      }
    }
    while (reader_total_ - going > limit) {
      session* most = nullptr;
      for (auto& sp : sessions_) {
        if (!sp || sp->fd < 0 || sp->closing || sp->close_after_flush || sp->reader.buffered() == 0 ||
            sp->reader.has_frame() || !may_read(*sp))
          continue;
        if (!most || sp->reader_bytes > most->reader_bytes) most = sp.get();
      }
      if (!most) return;
      st_in_closed_.fetch_add(1, std::memory_order_relaxed);
      protocol_fault(*most, 0, protocol_error::frame_buffers_full,
                     "all sessions' frame buffers hold " + std::to_string(reader_total_ - going) +
                         " bytes, past the server's " + std::to_string(limit) + ", and this session held the most (" +
                         std::to_string(most->reader_bytes) + " bytes) of a frame not yet whole");
      going += drop_reader(*most);
    }
  }

  // ---- receiving ---------------------------------------------------------------------

  void on_recv(uint64_t t, int res, uint32_t flags) {
    session* s = lookup(t);
    const bool more = flags & IORING_CQE_F_MORE;
    if (flags & IORING_CQE_F_BUFFER) {
      const uint16_t bid = uint16_t(flags >> IORING_CQE_BUFFER_SHIFT);
      uint8_t* buf = bufs_.get() + size_t(bid) * buf_bytes;
      if (s && res > 0 && !s->closing && !s->close_after_flush) {  // (one closing takes no more frames)
        s->reader.append({buf, size_t(res)});
        count_reader(*s);
      }
      io_uring_buf_ring_add(br_, buf, buf_bytes, bid, io_uring_buf_ring_mask(buf_count), 0);
      io_uring_buf_ring_advance(br_, 1);
    } else if (s && s->recv_direct && res > 0 && !s->closing && !s->close_after_flush) {
      s->reader.commit(size_t(res));  // received into reader.prepare()'s span
      st_direct_.fetch_add(1, std::memory_order_relaxed);
    }
    if (!s) return;
    if (!more) {
      s->recv_armed = false;
      s->recv_cancelling = false;
      s->recv_direct = false;
      if (std::exchange(s->release_reader, false) && s->reader.release()) count_reader(*s);
      if (std::exchange(s->dropping_reader, false)) {
        s->reader = wire::frame_reader(s->reader.body_max());
        count_reader(*s);
      }
    }
    if (s->closing) {
      maybe_free(*s);
      return;
    }
    if (res < 0 && res != -ENOBUFS && res != -ECANCELED) {
      close_session(*s);  // the socket failed
      return;
    }
    if (res == 0) {
      // The peer shut its side (a client done sending, shutdown(SHUT_WR), or gone: a
      // send to a peer that is gone fails and closes the session). The frames it sent
      // before are still taken and answered, then the session goes (process). Before, it
      // was closed at once: requests already in the engine were applied unanswered, and
      // frames still buffered were dropped.
      s->peer_done = true;
      process(*s);
      return;
    }
    if (res > 0 && (s->recv_uncounted += uint64_t(res)) >= session_recv_activity_bytes) {
      s->recv_uncounted = 0;
      s->last_active_ms = now_ms();
    }
    process(*s);
    // A session found sending large frames: end its multishot receive; the last
    // completion arms a direct one.
    if (s->recv_armed && !s->recv_direct && direct_wanted(*s)) pause_recv(*s);
    if (!s->closing && !s->recv_armed && may_read(*s)) arm_recv(*s);
  }

  // A session's frame buffer grows to its largest frame. One that has taken no frame for
  // session_reader_idle_ms with nothing buffered gives it back: before, it kept it for
  // good (a frame's size, up to twice, for each session that ever sent a large one). A
  // direct receive writing into it is cancelled first; its completion frees the buffer
  // (on_recv) and the next receive goes through the provided buffers until a large
  // frame comes again.
  void release_idle_readers(uint64_t now) {
    for (auto& sp : sessions_) {
      if (!sp || sp->fd < 0 || sp->closing || sp->release_reader || sp->dropping_reader) continue;
      session& s = *sp;
      if (s.reader.capacity() <= buf_bytes || s.reader.buffered() != 0 || now - s.last_frame_ms < session_reader_idle_ms)
        continue;
      give_back_reader(s);
    }
  }

  // Takes whole frames off the session's buffer while it may.
  void process(session& s) {
    if (stopping_) refuse_buffered(s);
    while (!s.closing && !s.close_after_flush && may_read(s)) {
      wire::frame_reader::frame f;
      const auto st = take_frame(s, &f);
      if (st == wire::frame_reader::status::need_more) break;
      if (st == wire::frame_reader::status::too_large) {
        protocol_fault(s, f.header.request_id, protocol_error::frame_too_large,
                       "frame body of " + std::to_string(f.header.body_bytes) + " bytes; the limit is " +
                           std::to_string(s.reader.body_max()));
        break;
      }
      st_frames_.fetch_add(1, std::memory_order_relaxed);
      s.last_active_ms = s.last_frame_ms = now_ms();
      on_frame(s, f);
    }
    // Every whole frame of a peer that shut its side is taken: it goes once answered
    // (what is left is part of a frame that cannot come whole).
    if (s.peer_done && !s.closing && !s.close_after_flush && !s.reader.has_frame()) close_after_flush(s);
    if (!may_read(s)) {
      pause_recv(s);
      if (!s.listed_stopped && !s.closing) {
        s.listed_stopped = true;
        stopped_.emplace_back(s.slot, s.gen);
      }
    }
    count_reader(s);  // (taking a frame may copy a misaligned body into the reader)
  }

  void protocol_fault(session& s, uint64_t request_id, protocol_error code, const std::string& message) {
    st_errors_.fetch_add(1, std::memory_order_relaxed);
    queue_frame(s, frame_kind::error, request_id, wire::error_body({code, message}));
    if (wire::protocol_error_closes(code)) close_after_flush(s);
  }

  // The session takes no more frames; it goes once the answers to the requests it sent
  // before are queued and everything queued to it is sent, or at flush_timeout_ms if it
  // does not read it (or they do not come). Before, it went as soon as its queue was
  // sent: a write taken before the error was logged and never answered.
  void close_after_flush(session& s) {
    if (!s.close_after_flush) s.close_by_ms = now_ms() + cfg_.flush_timeout_ms;
    s.close_after_flush = true;
    // Its push backlog goes: nothing is pushed after the error that ends it.
    count_backlog(s, -int64_t(s.backlog_bytes));
    s.backlog.clear();
    pause_recv(s);
    close_if_flushed(s);
  }
  void close_if_flushed(session& s) {
    if (s.close_after_flush && !s.closing && s.out.empty() && s.in_flight == 0) close_session(s);
  }

  // A registry gateway's session follows the registry as it changes: disabled (or gone),
  // or its secret rotated, the session is closed; its roles are the registry's now.
  // Checked at each frame it sends, when the registry changed since the last one (one
  // pointer compare otherwise).
  bool still_registered(session& s, uint64_t request_id) {
    if (s.gateway_number == 0) return true;  // a config file's gateway
    auto reg = eng_.gateway_registry();
    if (reg == s.seen_registry) return true;
    s.seen_registry = reg;
    const auto* g = reg->find(s.gateway_number);
    std::string cut;
    if (!g || !g->enabled || g->disabled_at != s.gateway_disabled_at)  // disabled, if enabled again since
      cut = "gateway " + s.gateway + " was disabled since this session opened: it closes";
    else if (g->secret_rotated_at != s.gateway_secret_at)
      cut = "the secret of gateway " + s.gateway + " was changed since this session opened: it closes";
    if (!cut.empty()) {
      st_errors_.fetch_add(1, std::memory_order_relaxed);
      queue_frame(s, frame_kind::error, request_id, wire::error_body({protocol_error::gateway_cut_off, cut}));
      close_after_flush(s);
      return false;
    }
    if (s.subscriber && !(g->roles & (wire::roles::events_reader | wire::roles::admin))) {
      // Its subscription (if the hub took one) would go on delivering: the hub ends it and
      // tells the session on the stream (request id 0), after what it sent before; what
      // else its roles allow goes on.
      // `subscriber` stays set: the hub keeps the ended window reserved (its frames may be
      // queued still) until it hears that the session closed (subscription_closed).
      if (auto* hub = eng_.events())
        hub->end(s.session_id, protocol_error::role_denied,
                 "gateway " + s.gateway + " lost the events_reader role: its subscription ends");
    }
    if (g->roles != s.roles) {
      for (uint32_t bit = 0; bit < role_sessions_.size(); ++bit) {
        const uint32_t m = 1u << bit;
        if ((s.roles & m) && !(g->roles & m)) role_sessions_[bit].fetch_sub(1, std::memory_order_relaxed);
        if (!(s.roles & m) && (g->roles & m)) role_sessions_[bit].fetch_add(1, std::memory_order_relaxed);
      }
      s.roles = g->roles;
      // Payout and order routing count the sessions of gateways with the payments or
      // broker role (logged): a role gained or lost is the session up or down for them.
      const bool counted = !cfg_.admin && (g->roles & (wire::roles::payments | wire::roles::broker));
      if (counted && s.registered == 0) {
        s.registered = s.gateway_number;
        session_event(s.gateway_number, wire::gateway_event_kind::up);
      } else if (!counted) {
        session_ended(s);
      }
    }
    return true;
  }

  void on_frame(session& s, const wire::frame_reader::frame& f) {
    const auto& h = f.header;
    if (h.version != wire::protocol_version) {
      protocol_fault(s, h.request_id, protocol_error::version_unsupported,
                     "frame version " + std::to_string(h.version) + "; this server speaks version " +
                         std::to_string(wire::protocol_version));
      return;
    }
    // Request id 0 is the server's own (the errors that end a session or a subscription
    // carry it): a request, subscribe or ack under it is refused, after the checks every
    // frame of its kind meets (the handshake, the port, the gateway still registered).
    const auto numbered = [&] {
      if (h.request_id != 0) return true;
      protocol_fault(s, 0, protocol_error::request_id_zero,
                     "request id 0 is the server's own (the errors that end a session or a subscription carry it): "
                     "number requests from 1");
      return false;
    };
    switch (frame_kind(h.kind)) {
      case frame_kind::ping:
        if (s.authed && !still_registered(s, h.request_id)) return;
        queue_frame(s, frame_kind::pong, h.request_id, {});
        return;
      case frame_kind::pong: return;
      case frame_kind::auth: on_auth(s, f); return;
      case frame_kind::request:
      case frame_kind::admin_request:
        if (!s.authed) {
          protocol_fault(s, h.request_id, protocol_error::not_authenticated,
                         "a request before the handshake: send auth first");
          return;
        }
        if ((frame_kind(h.kind) == frame_kind::admin_request) != bool(cfg_.admin)) {
          protocol_fault(s, h.request_id, protocol_error::wrong_port,
                         cfg_.admin ? "this is the admin port: it serves admin commands only"
                                    : "admin commands are served on the admin port, not the client port");
          return;
        }
        if (!still_registered(s, h.request_id) || !numbered()) return;
        if (cfg_.admin) on_admin_request(s, f);
        else on_request(s, f);
        return;
      case frame_kind::subscribe:
      case frame_kind::ack:
        if (s.authed && !still_registered(s, h.request_id)) return;
        if (s.authed && !cfg_.admin && !numbered()) return;  // (on_events_frame refuses the others)
        on_events_frame(s, f);
        return;
      case frame_kind::hello:
      case frame_kind::welcome:
      case frame_kind::response:
      case frame_kind::admin_response:
      case frame_kind::error:
      case frame_kind::push:
      case frame_kind::subscribed:
      case frame_kind::events:
        protocol_fault(s, h.request_id, protocol_error::unexpected_frame,
                       "frame kind " + std::to_string(h.kind) + " is sent by servers, not clients");
        return;
    }
    protocol_fault(s, h.request_id, protocol_error::kind_unknown,
                   "frame kind " + std::to_string(h.kind) + " is unknown (1.." +
                       std::to_string(wire::frame_kind_max) + ")");
  }

  // Subscribe and Ack: checked here, then handed to the event hub, which answers.
  void on_events_frame(session& s, const wire::frame_reader::frame& f) {
    const uint64_t rid = f.header.request_id;
    if (!s.authed) {
      protocol_fault(s, rid, protocol_error::not_authenticated, "a request before the handshake: send auth first");
      return;
    }
    if (cfg_.admin) {
      protocol_fault(s, rid, protocol_error::wrong_port, "events are served on the client port, not the admin port");
      return;
    }
    if (!(s.roles & (wire::roles::events_reader | wire::roles::admin))) {
      protocol_fault(s, rid, protocol_error::role_denied,
                     "gateway '" + s.gateway + "' lacks the events_reader role");
      return;
    }
    std::string why;
    event_hub* hub = eng_.events();
    if (frame_kind(f.header.kind) == frame_kind::ack) {
      uint64_t offset = 0;
      if (!wire::parse_ack(f.body, &offset, &why)) {
        protocol_fault(s, rid, protocol_error::body_invalid, "ack: " + why);
        return;
      }
      if (!hub || !s.subscriber) {
        protocol_fault(s, rid, protocol_error::ack_refused, "ack: this session has no subscription");
        return;
      }
      if (std::string refused = hub->ack(s.session_id, rid, offset); !refused.empty())
        protocol_fault(s, rid, protocol_error::ack_refused, refused);
      return;
    }
    wire::subscribe_msg m;
    if (!wire::parse_subscribe(f.body, &m, &why)) {
      protocol_fault(s, rid, protocol_error::body_invalid, "subscribe: " + why);
      return;
    }
    if (!hub) {
      wire::subscribed_msg a;
      a.code = wire::result::events_unavailable;
      a.message = "this engine keeps no event log (started with --no-events)";
      queue_frame(s, frame_kind::subscribed, rid, wire::subscribed_body(a));
      return;
    }
    subscription_request r;
    r.owner = s.gateway;
    r.name = std::move(m.name);
    r.from = m.from;
    r.from_end = m.from_end;
    r.types = m.types;
    r.accounts = std::move(m.accounts);
    r.gateways = std::move(m.gateways);
    r.window = m.window;
    r.batch_max = m.batch_max;
    r.packed = m.packed;
    std::string refused;
    if (const wire::result code = event_hub::fields_refusal(r, &refused); code != wire::result::ok) {
      wire::subscribed_msg a;
      a.code = code;
      a.message = std::move(refused);
      queue_frame(s, frame_kind::subscribed, rid, wire::subscribed_body(a));
      return;
    }
    s.subscriber = true;
    if (!hub->subscribe(s.session_id, rid, std::move(r))) {
      wire::subscribed_msg a;
      a.code = wire::result::subscriber_busy;
      a.message = "a subscription of this session waits for the event hub already: wait for its answer";
      queue_frame(s, frame_kind::subscribed, rid, wire::subscribed_body(a));
    }
  }

  void on_auth(session& s, const wire::frame_reader::frame& f) {
    if (s.authed) {
      protocol_fault(s, f.header.request_id, protocol_error::unexpected_frame, "already authenticated");
      return;
    }
    // Each refusal counts; the last one allowed closes the session.
    const auto refuse = [&](protocol_error code, std::string message) {
      st_auth_fail_.fetch_add(1, std::memory_order_relaxed);
      const bool last = ++s.auth_failures >= auth_attempts_max;
      if (last)
        message += "; " + std::to_string(s.auth_failures) + " refused log-ins on this connection: it closes";
      protocol_fault(s, f.header.request_id, code, message);
      if (last) close_after_flush(s);
    };
    wire::auth_msg a;
    std::string why;
    if (!wire::parse_auth(f.body, &a, &why)) {
      refuse(protocol_error::auth_failed, why);
      return;
    }
    // The config file's gateways first, then the registry's enabled ones (engine state,
    // changed through the admin port; the admin role is never theirs).
    const std::vector<uint8_t>* secret = nullptr;
    uint32_t roles = 0;
    std::shared_ptr<const actors::gateways::registry> reg;
    uint32_t number = 0;
    uint64_t disabled_at = 0, secret_at = 0;
    if (const auto it = gateways_.find(a.gateway_id); it != gateways_.end()) {
      // A name both in the config file and in the registry (a config line added after
      // the registration) is two gateways under one name: on the client port neither may
      // log in, as its requests name it and would reach the registered one's accounts
      // and payouts. (The admin port admits the config's gateways alone: no clash there.)
      const auto registered = cfg_.admin ? nullptr : eng_.gateway_registry();  // held while read
      if (const auto* clash = registered ? registered->find(a.gateway_id) : nullptr) {
        if (warned_clashes_.insert(a.gateway_id).second)
          std::fprintf(stderr,
                       "mesobd: gateway %s is in the config file and registered (number %u): its client sessions "
                       "are refused until it is taken out of the config file (or given another name there)\n",
                       a.gateway_id.c_str(), unsigned(clash->number));
      } else {
        secret = &it->second->secret;
        roles = it->second->roles;
      }
    } else {
      reg = eng_.gateway_registry();
      if (const auto* g = reg->find(a.gateway_id); g && g->enabled) {
        secret = &g->secret;
        roles = g->roles;
        number = g->number;
        disabled_at = g->disabled_at;
        secret_at = g->secret_rotated_at;
      }
    }
    // The MAC is computed for an unknown id too, against a secret no gateway has, so that
    // the answer's timing does not tell which ids exist.
    static const std::vector<uint8_t> no_secret(wire::secret_bytes_min, 0);
    const bool mac_ok = wire::mac_equal(wire::auth_mac(secret ? *secret : no_secret, s.nonce), a.mac);
    const bool ok = secret && mac_ok;
    if (!ok) {
      // One message for both: which gateway ids exist is not told.
      refuse(protocol_error::auth_failed, "auth failed: unknown gateway or wrong secret");
      return;
    }
    if (cfg_.admin && !(roles & wire::roles::admin)) {
      refuse(protocol_error::role_denied,
             "gateway " + a.gateway_id + " lacks the admin role; the admin port admits admin gateways only");
      return;
    }
    const auto had = gateway_sessions_.find(a.gateway_id);
    const size_t open = had == gateway_sessions_.end() ? 0 : had->second.size();
    if (open >= cfg_.gateway_sessions_max) {
      refuse(protocol_error::too_many_sessions, "gateway " + a.gateway_id + " has " + std::to_string(open) +
                                                    " sessions open, the most one gateway may have (gateway_sessions_max)");
      return;
    }
    const bool logs_sessions = number != 0 && !cfg_.admin && (roles & (wire::roles::payments | wire::roles::broker));
    if (logs_sessions && !take_open(number)) {
      refuse(protocol_error::too_many_sessions,
             "gateway " + a.gateway_id + " opens sessions faster than " + std::to_string(cfg_.registered_opens_per_s) +
                 " a second (registered_opens_per_s, with a burst of four seconds' worth); try again later");
      return;
    }
    gateway_sessions_[a.gateway_id].push_back(s.slot);
    s.authed = true;
    s.reader.set_body_max(cfg_.frame_bytes_max);
    left_handshake(s);
    s.gateway = a.gateway_id;
    if (gateway_in_flight_.size() > 2 * gateway_sessions_.size() + 64)  // gateways gone: their entries
      std::erase_if(gateway_in_flight_, [](const auto& e) { return e.second.expired(); });
    auto& in_flight = gateway_in_flight_[a.gateway_id];
    s.gateway_in_flight = in_flight.lock();
    if (!s.gateway_in_flight) in_flight = s.gateway_in_flight = std::make_shared<uint32_t>(0);
    s.roles = roles;
    s.gateway_number = number;
    s.gateway_disabled_at = disabled_at;
    s.gateway_secret_at = secret_at;
    s.seen_registry = std::move(reg);
    if (logs_sessions) {
      s.registered = number;
      session_event(number, wire::gateway_event_kind::up);
    }
    s.session_id = next_session_id.fetch_add(1, std::memory_order_relaxed);
    by_session_[s.session_id] = s.slot;
    for (uint32_t bit = 0; bit < role_sessions_.size(); ++bit)
      if (roles & (1u << bit)) role_sessions_[bit].fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lk(list_mu_);
      auto& l = listed_[list_key(s)];
      l.info.session_id = s.session_id;
      l.info.gateway = s.gateway;
    }
    wire::welcome_msg w{s.gateway, s.roles, s.session_id, cfg_.frame_bytes_max, cfg_.in_flight_max, number,
                        eng_.shards()};
    queue_frame(s, frame_kind::welcome, f.header.request_id, wire::welcome_body(w));
  }

  // The roles of which any one lets a session make the request: the ledger's operations
  // payments or ledger (a registered gateway's also partner_may), deposits and payout
  // answers payments; market data market_data (an instrument's halt, resume and resequence, and a
  // customer's resequence: operators only; a kind of no operation is the item's own
  // refusal, instrument_op_invalid or customer_op_invalid, not the whole request's);
  // instrument look-ups every trading role; an equb group's debts written off: operators
  // only (the creditors lose them). Admin gateways may do everything.
  static uint32_t roles_needed(const wire::parsed_request& p) {
    using namespace wire::roles;
    switch (p.op) {
      case wire::operation::prices: return market_data | admin;
      case wire::operation::instrument_ops:
        for (uint32_t i = 0; i < p.count; ++i) {
          wire::instrument_op op;
          std::memcpy(&op, p.items.data() + size_t(i) * sizeof op, sizeof op);
          if (op.kind == wire::instrument_op_kind::halt || op.kind == wire::instrument_op_kind::resume ||
              op.kind == wire::instrument_op_kind::resequence)
            return admin;
        }
        return market_data | admin;
      case wire::operation::lookup_instruments: return payments | ledger | broker | market_data | admin;
      case wire::operation::customer_ops:  // a resequence is an operator's
        for (uint32_t i = 0; i < p.count; ++i) {
          wire::customer_op op;
          std::memcpy(&op, p.items.data() + size_t(i) * sizeof op, sizeof op);
          if (op.kind == wire::customer_op_kind::resequence) return admin;
        }
        return kyc | admin;
      case wire::operation::lookup_customers: return kyc | admin;  // KYC data stays with KYC
      case wire::operation::equb_ops:
        for (uint32_t i = 0; i < p.count; ++i) {
          wire::equb_op op;
          std::memcpy(&op, p.items.data() + size_t(i) * sizeof op, sizeof op);
          if (op.kind == wire::equb_op_kind::write_off) return admin;
        }
        return payments | ledger | admin;
      case wire::operation::order_answers: return broker;  // a registered broker's own answers
      case wire::operation::lookup_orders: return payments | ledger | broker | admin;
      case wire::operation::lookup_positions: return payments | ledger | admin;
      case wire::operation::deposits:
      case wire::operation::payout_answers: return payments | admin;  // a payment rail's own
      default: return payments | ledger | admin;
    }
  }

  // What a registry gateway (a partner: a payment rail, a broker, a price feed, a KYC
  // provider) may ask: its own part. Its payments role is for its deposits and its
  // payouts' answers, not for the ledger's other operations (transfers between any
  // accounts, their status, payouts, orders, look-ups of any wallet): those are the
  // platform's own clients' (the config file's gateways), or a registered gateway's an
  // operator gave the ledger role. Order look-ups are a broker's.
  static bool partner_may(wire::operation op, uint32_t roles) {
    using wire::operation;
    if (roles & wire::roles::ledger) return true;  // given them by an operator
    switch (op) {
      case operation::deposits:
      case operation::payout_answers:
      case operation::instrument_ops:
      case operation::prices:
      case operation::lookup_instruments:
      case operation::customer_ops:
      case operation::lookup_customers:
      case operation::order_answers: return true;
      case operation::lookup_orders: return roles & wire::roles::broker;
      default: return false;
    }
  }

  // A bound on the bytes of a request's answer, set aside while it is in the engine (capped
  // at out_bytes_max by the caller): look-ups by their items' records, history pages by
  // their limits, writes by their results.
  static uint64_t reply_bytes_bound(const wire::parsed_request& p) {
    using wire::operation;
    constexpr uint64_t frame = 256;  // header, tables, vectors' lengths
    uint64_t item = 16;              // a result, and its share of the tables
    switch (p.op) {
      case operation::lookup_accounts: item += sizeof(wire::account); break;
      case operation::lookup_transfers: item += sizeof(wire::transfer_record_item); break;
      case operation::lookup_balances: item += sizeof(wire::balance_item); break;
      case operation::lookup_instruments: item += sizeof(wire::instrument_state) + sizeof(uint64_t); break;
      case operation::lookup_customers: item += sizeof(wire::customer_state); break;
      case operation::lookup_orders: item += sizeof(wire::order_state_view); break;
      case operation::lookup_positions: item += uint64_t(actors::portfolio::positions_max) * sizeof(wire::position_view); break;
      // A group's seats, paid-out rounds, destinations and debts to the group (56 + 40 +
      // 8 + 8 bytes a seat) and the payments it owes (40 bytes each, a chain's 2,016 at
      // most).
      case operation::lookup_groups: item += uint64_t(actors::equb::seats_max) * 112 + 2016 * 40; break;
      case operation::rebalance: item += uint64_t(actors::portfolio::positions_max) * sizeof(wire::order); break;
      case operation::lookup_account_transfers: {
        // (A page over its limit is refused and carries no records: counted as none. Before,
        // one page of limit 2^32 - 1 reserved the session's whole out_bytes_max.)
        const uint64_t records = wire::history_records_asked(p.items.data(), p.count);
        return frame + uint64_t(p.count) * 64 + records * (sizeof(wire::transfer_record_item) + 16);
      }
      default: break;
    }
    return frame + uint64_t(p.count) * item;
  }

  void on_request(session& s, const wire::frame_reader::frame& f) {
    const uint64_t rid = f.header.request_id;
    wire::parsed_request p;
    wire::error_msg err;
    if (!wire::parse_request(f.body, &p, &err)) {
      protocol_fault(s, rid, err.code, err.message);
      return;
    }
    if (const uint32_t need = roles_needed(p); !(s.roles & need)) {
      std::string any = wire::roles_text(need);
      for (size_t at; (at = any.find(',')) != std::string::npos;) any.replace(at, 1, " or ");
      protocol_fault(s, rid, protocol_error::role_denied,
                     std::string(wire::operation_name(p.op)) + " needs the " + any + " role; gateway " + s.gateway +
                         " has " +
                         (s.roles ? wire::roles_text(s.roles) : std::string("none")));
      return;
    }
    if (s.gateway_number != 0 && !partner_may(p.op, s.roles)) {
      protocol_fault(s, rid, protocol_error::role_denied,
                     std::string(wire::operation_name(p.op)) + " needs the ledger role for a registered " +
                         "gateway; " + s.gateway + " has " + wire::roles_text(s.roles) +
                         " (payments covers its deposits and payout answers)");
      return;
    }
    if (s.in_flight >= cfg_.in_flight_max) {
      protocol_fault(s, rid, protocol_error::too_many_in_flight,
                     std::to_string(s.in_flight) + " requests in flight; the limit is " +
                         std::to_string(cfg_.in_flight_max));
      return;
    }
    request req;
    switch (p.op) {
      case wire::operation::create_accounts: req.kind = op_kind::create_accounts; p.copy_to(req.accounts); break;
      case wire::operation::create_transfers: req.kind = op_kind::create_transfers; p.copy_to(req.transfers); break;
      case wire::operation::set_account_status:
        req.kind = op_kind::set_account_status;
        p.copy_to(req.status_changes);
        break;
      case wire::operation::lookup_accounts: req.kind = op_kind::lookup_accounts; p.copy_to(req.account_ids); break;
      case wire::operation::lookup_transfers: req.kind = op_kind::lookup_transfers; p.copy_to(req.transfer_ids); break;
      case wire::operation::lookup_account_transfers: {
        req.kind = op_kind::lookup_account_transfers;
        std::vector<wire::history_query_item> qs;
        p.copy_to(qs);
        for (const auto& q : qs) req.history_queries.push_back({q.account_id, q.cursor, q.limit, q.reserved});
        break;
      }
      case wire::operation::lookup_balances: {
        req.kind = op_kind::lookup_balances_as_of;
        std::vector<wire::balance_query_item> qs;
        p.copy_to(qs);
        for (const auto& q : qs) req.balance_queries.push_back({q.account_id, q.timestamp});
        break;
      }
      case wire::operation::equb_ops: req.kind = op_kind::equb_ops; p.copy_to(req.equb_ops); break;
      case wire::operation::lookup_groups: req.kind = op_kind::lookup_groups; p.copy_to(req.account_ids); break;
      case wire::operation::deposits:
        req.kind = op_kind::deposits;
        req.gateway = s.gateway;
        p.copy_to(req.deposits);
        break;
      case wire::operation::payouts: req.kind = op_kind::payouts; p.copy_to(req.payouts); break;
      case wire::operation::payout_answers:
        req.kind = op_kind::payout_answers;
        req.gateway = s.gateway;
        p.copy_to(req.payout_answers);
        break;
      case wire::operation::instrument_ops: req.kind = op_kind::instrument_ops; p.copy_to(req.instrument_ops); break;
      case wire::operation::prices: req.kind = op_kind::prices; p.copy_to(req.prices); break;
      case wire::operation::lookup_instruments:
        req.kind = op_kind::lookup_instruments;
        p.copy_to(req.account_ids);
        break;
      case wire::operation::customer_ops: req.kind = op_kind::customer_ops; p.copy_to(req.customer_ops); break;
      case wire::operation::lookup_customers:
        req.kind = op_kind::lookup_customers;
        p.copy_to(req.account_ids);
        break;
      case wire::operation::orders: req.kind = op_kind::orders; p.copy_to(req.orders); break;
      case wire::operation::order_answers:
        req.kind = op_kind::order_answers;
        req.gateway = s.gateway;
        p.copy_to(req.order_answers);
        break;
      case wire::operation::cancel_orders: req.kind = op_kind::order_cancels; p.copy_to(req.order_cancels); break;
      case wire::operation::lookup_orders: req.kind = op_kind::lookup_orders; p.copy_to(req.account_ids); break;
      case wire::operation::lookup_positions: req.kind = op_kind::lookup_positions; p.copy_to(req.account_ids); break;
      case wire::operation::rebalance: {
        std::vector<wire::rebalance_request> rq;
        p.copy_to(rq);
        req.kind = op_kind::rebalance;
        req.account_ids = {rq[0].wallet, rq[0].first_order_id, rq[0].drift_bp, rq[0].slippage_bp, rq[0].expires_s,
                           rq[0].reserved};
        break;
      }
    }
    ++s.in_flight;
    ++engine_in_flight_;
    const uint64_t body = f.body.size();
    engine_bytes_in_flight_ += body;
    if (s.gateway_in_flight) ++*s.gateway_in_flight;
    const uint64_t owed = std::min(reply_bytes_bound(p), cfg_.out_bytes_max);
    s.owed_bytes += owed;
    owed_total_ += owed;
    st_requests_.fetch_add(1, std::memory_order_relaxed);
    s.requests->fetch_add(1, std::memory_order_relaxed);
    const uint32_t slot = s.slot, gen = s.gen;
    const wire::operation op = p.op;
    // Bounded here (engine_in_flight_max), never waiting: other producers (chains groups
    // and desks emit, the admin port) share the engine's queue, and a wait would stop
    // the whole loop.
    eng_.submit(std::move(req), [mail = mail_, slot, gen, rid, op, taken = steady_ns(), owed, body,
                                 gw = s.gateway_in_flight](reply&& r) {
      mail->post({slot, gen, rid, op, std::move(r), false, {}, taken, owed, body, gw});
    }, false);
  }

  // One admin command, handed to the admin handler; its answer comes back through the
  // mailbox like an engine reply (and counts as in flight until then, so a stop waits).
  void on_admin_request(session& s, const wire::frame_reader::frame& f) {
    const uint64_t rid = f.header.request_id;
    wire::admin_request_msg m;
    wire::error_msg err;
    if (!wire::parse_admin_request(f.body, &m, &err)) {
      protocol_fault(s, rid, err.code, err.message);
      return;
    }
    if (s.in_flight >= cfg_.in_flight_max) {
      protocol_fault(s, rid, protocol_error::too_many_in_flight,
                     std::to_string(s.in_flight) + " commands in flight; the limit is " +
                         std::to_string(cfg_.in_flight_max));
      return;
    }
    ++s.in_flight;
    ++engine_in_flight_;
    st_requests_.fetch_add(1, std::memory_order_relaxed);
    s.requests->fetch_add(1, std::memory_order_relaxed);
    const uint32_t slot = s.slot, gen = s.gen;
    cfg_.admin(admin_identity{s.gateway, s.session_id, s.peer}, std::move(m),
               [mail = mail_, slot, gen, rid](wire::admin_response_msg&& a) {
                 completed c{slot, gen, rid, wire::operation::create_accounts, reply{}, true, std::move(a), 0, 0, 0, nullptr};
                 mail->post(std::move(c));
               });
  }

  // ---- replies -----------------------------------------------------------------------

  void on_wake(int) {
    std::vector<completed> batch;
    std::vector<outgoing_push> pushes;
    {
      std::lock_guard lk(mail_->mu);
      batch.swap(mail_->q);
      pushes.swap(mail_->pushes);
    }
    for (auto& p : pushes) deliver_push(std::move(p));
    for (auto& c : batch) {
      --engine_in_flight_;
      engine_bytes_in_flight_ -= c.body_bytes;
      if (c.gateway_in_flight) --*c.gateway_in_flight;
      session* s = c.slot < sessions_.size() && sessions_[c.slot] ? sessions_[c.slot].get() : nullptr;
      if (!s || s->gen != c.gen || s->fd < 0) continue;  // the session is gone
      --s->in_flight;
      if (s->closing) continue;
      s->owed_bytes -= c.owed;  // (released at its close otherwise)
      owed_total_ -= c.owed;
      // A session closing after its flush gets its flush time from its last answer (an
      // engine slow to answer does not use it up).
      if (s->close_after_flush && s->in_flight == 0) s->close_by_ms = now_ms() + cfg_.flush_timeout_ms;
      if (c.is_admin) {
        const auto body = wire::admin_response_body(c.admin_reply);
        if (within_ceiling(*s, c.request_id, "the admin command", body.size()))
          queue_frame(*s, frame_kind::admin_response, c.request_id, body);
      } else {
        measure(c);
        send_reply(*s, c);
      }
      close_if_flushed(*s);  // (its last answer queued nothing)
    }
    if (!stop_requested_.load() || stopping_) {
      // Capacity came back: sessions that stopped taking frames may go on.
      resume_all();
    } else {
      begin_stop();
    }
    arm_wake();
  }

  void measure(const completed& c) {
    op_meter& m = meters_[size_t(c.op) % meters_.size()];
    const uint64_t ns = steady_ns() - c.taken_ns;
    size_t b = 0;
    while (b < request_latency_buckets.size() && double(ns) > request_latency_buckets[b] * 1e9) ++b;
    m.buckets[b].fetch_add(1, std::memory_order_relaxed);
    m.sum_ns.fetch_add(ns, std::memory_order_relaxed);
    m.count.fetch_add(1, std::memory_order_relaxed);
    // Results: nearly all alike, so counted in runs.
    const auto& rs = c.r.results;
    for (size_t i = 0; i < rs.size();) {
      size_t j = i + 1;
      while (j < rs.size() && rs[j] == rs[i]) ++j;
      m.results[uint32_t(rs[i]) & 0xff].fetch_add(j - i, std::memory_order_relaxed);
      i = j;
    }
  }

  void send_reply(session& s, completed& c) {
    reply& r = c.r;
    if (r.st != status::ok) {
      // (kind_invalid: a request whose shape the engine refuses, which parsing lets no
      // client send: the body's fault, not its size.)
      const protocol_error code = r.st == status::engine_failed    ? protocol_error::engine_failed
                                  : r.st == status::stopping       ? protocol_error::shutting_down
                                  : r.st == status::batch_too_large ? protocol_error::batch_too_large
                                                                    : protocol_error::body_invalid;
      protocol_fault(s, c.request_id, code, std::string("engine: ") + status_name(r.st));
      return;
    }
    std::vector<uint8_t> body;
    switch (c.op) {
      case wire::operation::create_accounts:
      case wire::operation::create_transfers:
      case wire::operation::set_account_status: body = wire::results_body(r.results); break;
      case wire::operation::lookup_accounts: body = wire::found_accounts_body(r.results, r.accounts); break;
      case wire::operation::lookup_transfers: {
        std::vector<wire::transfer_record_item> recs(r.transfers.size());
        for (size_t i = 0; i < recs.size(); ++i) recs[i] = record_item(r.transfers[i]);
        body = wire::found_transfers_body(r.results, recs);
        break;
      }
      case wire::operation::lookup_account_transfers: {
        std::vector<wire::history_page_item> pages(r.pages.size());
        for (size_t i = 0; i < pages.size(); ++i) {
          pages[i].code = r.pages[i].result;
          pages[i].next_cursor = r.pages[i].next_cursor;
          for (const auto& rec : r.pages[i].records) pages[i].records.push_back(record_item(rec));
        }
        body = wire::account_transfers_body(pages);
        break;
      }
      case wire::operation::lookup_balances: {
        std::vector<wire::balance_item> bs(r.balances.size());
        for (size_t i = 0; i < bs.size(); ++i)
          bs[i] = {r.balances[i].debits_posted, r.balances[i].credits_posted,
                   uint32_t(i < r.results.size() ? r.results[i] : wire::result::ok), 0};
        body = wire::balances_body(bs);
        break;
      }
      case wire::operation::equb_ops:
      case wire::operation::deposits:
      case wire::operation::payouts:
      case wire::operation::payout_answers: body = wire::results_body(r.results); break;
      case wire::operation::instrument_ops:
      case wire::operation::prices: body = wire::results_body(r.results); break;
      case wire::operation::lookup_instruments: body = wire::instruments_body(r.results, r.instruments, r.instrument_sequences); break;
      case wire::operation::customer_ops: body = wire::results_body(r.results); break;
      case wire::operation::lookup_customers: body = wire::customers_body(r.results, r.customers); break;
      case wire::operation::orders:
      case wire::operation::order_answers:
      case wire::operation::cancel_orders: body = wire::results_body(r.results); break;
      case wire::operation::lookup_orders: body = wire::orders_reply_body(r.results, r.orders); break;
      case wire::operation::lookup_positions: body = wire::positions_body(r.results, r.positions); break;
      case wire::operation::rebalance: body = wire::placed_orders_body(r.results, r.placed); break;
      case wire::operation::lookup_groups: {
        std::vector<wire::group_item> gs(r.groups.size());
        for (size_t i = 0; i < gs.size(); ++i)
          if (i < r.results.size() && r.results[i] == wire::result::ok) gs[i] = actors::equb::to_item(r.groups[i]);
          else gs[i].code = i < r.results.size() ? r.results[i] : wire::result::group_not_found;
        body = wire::groups_body(gs);
        break;
      }
    }
    if (within_ceiling(s, c.request_id, std::string(wire::operation_name(c.op)), body.size()))
      queue_frame(s, frame_kind::response, c.request_id, body);
  }

  // Whether a reply of `bytes` fits the protocol's frame ceiling (64 MiB), which every
  // client may refuse past: if not, the request gets reply_too_large instead.
  bool within_ceiling(session& s, uint64_t request_id, const std::string& what, size_t bytes) {
    if (bytes <= wire::frame_bytes_max_ceiling) return true;
    protocol_fault(s, request_id, protocol_error::reply_too_large,
                   what + ": the reply has " + std::to_string(bytes) + " bytes, over the protocol's frame ceiling of " +
                       std::to_string(wire::frame_bytes_max_ceiling) + "; ask for fewer items");
    return false;
  }

  void deliver_push(outgoing_push&& p) {
    if (p.session_id != 0) {  // one session: the frame moves into its queue
      const auto it = by_session_.find(p.session_id);
      if (it == by_session_.end() || it->second >= sessions_.size() || !sessions_[it->second]) return;
      session& s = *sessions_[it->second];
      if (s.fd < 0 || s.closing || s.close_after_flush || s.session_id != p.session_id) return;
      if (s.authed && !still_registered(s, 0)) return;  // cut off since its last frame
      if (p.shared) push_to(s, out_frame{{}, std::move(p.shared), true});
      else push_to(s, out_frame{std::move(p.frame), nullptr, true});
      return;
    }
    // Every session of the gateway gets the same bytes, built once: before, each got its
    // own copy, so a gateway's sessions that do not read (up to gateway_sessions_max) held
    // a copy each, up to out_bytes_max apiece.
    const auto g = gateway_sessions_.find(p.gateway_id);
    if (g == gateway_sessions_.end()) return;
    // A copy: a push that cuts a slow reader may free its session, which leaves the list.
    const std::vector<uint32_t> slots = g->second;
    std::shared_ptr<const std::vector<uint8_t>> shared;
    for (const uint32_t slot : slots) {
      const auto& sp = sessions_[slot];
      if (!sp || sp->fd < 0 || sp->closing || sp->close_after_flush || !sp->authed || sp->gateway != p.gateway_id)
        continue;
      // A session its gateway's disable or secret rotation cut off since its last frame
      // (the timer would close it within a second) gets no more instructions: before, a
      // session opened with a leaked secret still got them until then.
      if (!still_registered(*sp, 0)) continue;
      if (!shared) shared = std::make_shared<const std::vector<uint8_t>>(std::move(p.frame));
      push_to(*sp, out_frame{{}, shared, true});
    }
  }

  // A pushed frame goes to the session's queue if it fits under out_bytes_max (one always
  // fits an empty queue), else waits in its backlog behind those before it.
  void push_to(session& s, out_frame&& frame) {
    if (s.backlog.empty() && fits(s, frame)) {
      queue_push(s, std::move(frame));
      return;
    }
    // Past either limit: told (best effort: its buffers are full) and closed at once, not
    // after a flush that would never come.
    if (s.backlog_bytes + frame.charge() > cfg_.push_backlog_bytes_max) {
      cut_slow_reader(s, std::to_string(s.out_bytes) + " bytes queued unread and " + std::to_string(s.backlog_bytes) +
                             " bytes of pushes waiting behind them; a push of " + std::to_string(frame.size()) +
                             " bytes would pass the session's push backlog limit of " +
                             std::to_string(cfg_.push_backlog_bytes_max));
      return;
    }
    // All sessions' backlogs together: the sessions holding the most are closed until
    // this one fits (this one, if it holds the most): a reader behind by one burst is not
    // closed for the sessions that read nothing.
    while (backlog_total_ + frame.charge() > cfg_.push_backlog_total_max) {
      session* most = &s;
      for (auto& sp : sessions_)
        if (sp && sp->fd >= 0 && !sp->closing && sp->backlog_bytes > most->backlog_bytes) most = sp.get();
      const std::string why = std::to_string(most->out_bytes) + " bytes queued unread and " +
                              std::to_string(most->backlog_bytes) + " bytes of pushes waiting behind them, the most " +
                              "of any session, with all sessions' push backlogs at their limit of " +
                              std::to_string(cfg_.push_backlog_total_max);
      cut_slow_reader(*most, why);
      if (most == &s) return;
    }
    count_backlog(s, int64_t(frame.charge()));
    s.backlog.push_back(std::move(frame));
    st_backlogged_.fetch_add(1, std::memory_order_relaxed);
  }
  // (Strictly under the limit: at it the session's requests would not be read, and a
  // backlog refilling the queue to it at every send would keep them waiting.)
  [[nodiscard]] bool fits(const session& s, const out_frame& frame) const {
    return s.out_bytes == 0 || s.out_bytes + frame.charge() < cfg_.out_bytes_max;
  }
  // (start: send now if no send is under way; on_send starts its own after draining.)
  void queue_push(session& s, out_frame&& frame, bool start = true) {
    st_pushes_.fetch_add(1, std::memory_order_relaxed);
    count_out(s, int64_t(frame.charge()), true);
    s.out.push_back(std::move(frame));
    if (start && !s.sending) start_send(s);
  }
  // Sends made room: the backlog's frames follow, in order, while they fit (from on_send,
  // which starts the next send).
  void drain_backlog(session& s) {
    while (!s.backlog.empty() && fits(s, s.backlog.front())) {
      out_frame f = std::move(s.backlog.front());
      s.backlog.pop_front();
      count_backlog(s, -int64_t(f.charge()));
      queue_push(s, std::move(f), false);
    }
  }
  void count_backlog(session& s, int64_t delta) {
    s.backlog_bytes = uint64_t(int64_t(s.backlog_bytes) + delta);
    backlog_total_ = uint64_t(int64_t(backlog_total_) + delta);
    st_backlog_.fetch_add(uint64_t(delta), std::memory_order_relaxed);  // wraps down when negative
  }

  // What is queued to session s changed by `delta` bytes (as charged), and with it the
  // total over all sessions. Pushed frames count against their session's limit (where
  // push_to cuts it) but not in the total that pauses every session's reading: a frame
  // shared by many subscribers would count once per subscriber, and subscribers that
  // read slowly, within their windows, would stop every gateway's requests.
  void count_out(session& s, int64_t delta, bool pushed = false) {
    if (delta > 0 && s.out_bytes == 0) s.out_since_ms = now_ms();
    s.out_bytes = uint64_t(int64_t(s.out_bytes) + delta);
    out_total_ = uint64_t(int64_t(out_total_) + delta);
    st_out_total_.store(out_total_, std::memory_order_relaxed);
    if (pushed) {
      s.pushed_bytes = uint64_t(int64_t(s.pushed_bytes) + delta);
      pushed_total_ = uint64_t(int64_t(pushed_total_) + delta);
    }
    if (held_total() >= cfg_.out_bytes_total_max && !total_paused_) {
      total_paused_ = true;
      limits_due_ = true;  // looked at after this round of completions (enforce_out_limits)
    }
  }
  // Bytes queued and no send's progress for stall_timeout_ms: it does not read.
  bool stalled(const session& s, uint64_t now) const {
    return s.out_bytes != 0 && now - s.out_since_ms >= cfg_.stall_timeout_ms;
  }
  // A session that does not read what is queued to it: told (best effort: its buffers
  // are full, so the error rarely reaches it) and closed at once, not after a flush that
  // would never come.
  void cut_slow_reader(session& s, const std::string& why) {
    if (s.closing) return;
    queue_frame(s, frame_kind::error, 0, wire::error_body({protocol_error::slow_reader, why}));
    close_session(s);
    // Counted once it is closed (its backlog dropped): a reader of the stats never sees
    // the count without the drop.
    st_slow_.fetch_add(1, std::memory_order_relaxed);
    st_errors_.fetch_add(1, std::memory_order_relaxed);
  }
  // Sessions that do not read (stalled): one holding more than twice its out_bytes_max
  // (responses to what it sent before it stopped being read) is closed; and while all
  // sessions together hold out_bytes_total_max, the stalled ones holding the most are
  // closed until the rest hold less (none, if the sessions that read hold the limit
  // alone: closing the others would not bring it down). Sessions that read are never
  // closed here: with none stalled, the sessions holding their share of the total or more
  // are not read (may_read) until sends bring the total down or the timer finds some
  // stalled; the others are. Run after a round of
  // completions that crossed the total, and at every tick of the timer (a stall is a
  // matter of time). (A closed session's bytes count until its last send completes.)
  void enforce_out_limits() {
    const uint64_t now = now_ms();
    uint64_t live = 0, unread = 0;  // (unread: what the stalled ones hold)
    for (auto& sp : sessions_) {
      if (!sp || sp->fd < 0 || sp->closing) continue;
      session& s = *sp;
      if (s.out_bytes != 0) {
        // A send to a full socket completes only when a good part of its buffer is free:
        // a peer that reads slowly drains the kernel's queue long before. Its shrinking
        // since progress was last counted, by session_drain_min_bytes, or emptying, is
        // progress too; a segment read now and then is not.
        int queued = 0;
        if (::ioctl(s.fd, SIOCOUTQ, &queued) == 0) {
          if (s.kernel_queue_seen < 0 || queued > s.kernel_queue_seen) {
            s.kernel_queue_seen = queued;  // where its drain is counted from
          } else if (queued == 0 || uint64_t(s.kernel_queue_seen - queued) >= session_drain_min_bytes) {
            s.out_since_ms = now;
            s.kernel_queue_seen = queued;
          }
        }
      }
      if (s.authed && s.out_bytes > 2 * cfg_.out_bytes_max && stalled(s, now)) {
        cut_slow_reader(s, std::to_string(s.out_bytes) + " bytes queued unread for " +
                               std::to_string(now - s.out_since_ms) + " ms, past twice the session's limit");
        continue;
      }
      if (!s.backlog.empty() && stalled(s, now)) {  // its queue full of pushes, none read
        cut_slow_reader(s, std::to_string(s.out_bytes) + " bytes queued unread for " +
                               std::to_string(now - s.out_since_ms) + " ms, and " + std::to_string(s.backlog_bytes) +
                               " bytes of pushes waiting behind them");
        continue;
      }
      live += held(s);
      if (stalled(s, now)) unread += held(s);
    }
    // Closing sessions that do not read only helps if the others hold less than the
    // limit: else the readers' sends bring the total down, and no one is closed.
    if (live >= cfg_.out_bytes_total_max && live - unread >= cfg_.out_bytes_total_max) return;
    while (live >= cfg_.out_bytes_total_max) {
      session* worst = nullptr;
      for (auto& sp : sessions_)
        if (sp && sp->fd >= 0 && !sp->closing && stalled(*sp, now) && held(*sp) != 0 &&
            (!worst || held(*sp) > held(*worst)))
          worst = sp.get();
      if (!worst) return;
      live -= held(*worst);
      cut_slow_reader(*worst, std::to_string(worst->out_bytes) + " bytes queued unread for " +
                                  std::to_string(now - worst->out_since_ms) +
                                  " ms, the most of any session not reading, with " + std::to_string(held_total()) +
                                  " queued to all sessions");
    }
  }

  static wire::transfer_record_item record_item(const transfer_record& rec) {
    wire::transfer_record_item it;
    it.t = rec.t;
    it.result = rec.result;
    it.debit_after_debits_posted = rec.debit_after_debits_posted;
    it.debit_after_credits_posted = rec.debit_after_credits_posted;
    it.credit_after_debits_posted = rec.credit_after_debits_posted;
    it.credit_after_credits_posted = rec.credit_after_credits_posted;
    return it;
  }

  // Sessions take turns from where the last pass filled the engine: with frames waiting
  // in many sessions, none is starved by the lowest slots taking every place that comes
  // free (a turn takes what its session has buffered, up to the places free).
  void resume_all() {
    if (stopped_.empty()) return;
    auto resuming = std::exchange(stopped_, {});  // (process() lists again the ones that stop again)
    std::vector<std::pair<uint32_t, uint32_t>> still;  // stopped yet, ahead of those that stop again
    size_t k = 0;
    for (; k < resuming.size(); ++k) {
      const auto [slot, gen] = resuming[k];
      auto& sp = sessions_[slot];
      if (!sp || sp->gen != gen || sp->fd < 0 || sp->closing) continue;  // gone
      session& s = *sp;
      if (!may_read(s)) {
        still.push_back(resuming[k]);
        continue;
      }
      s.listed_stopped = false;
      const uint64_t before = engine_in_flight_;
      process(s);  // frames already buffered first
      if (may_read(s)) arm_recv(s);
      // It took the engine's last place: the rest keep their turn.
      if (engine_in_flight_ != before && engine_in_flight_ >= cfg_.engine_in_flight_max) {
        ++k;
        break;
      }
    }
    still.insert(still.end(), resuming.begin() + ptrdiff_t(k), resuming.end());
    still.insert(still.end(), stopped_.begin(), stopped_.end());
    stopped_.swap(still);
  }

  // ---- sending -----------------------------------------------------------------------

  void queue_frame(session& s, frame_kind k, uint64_t request_id, std::span<const uint8_t> body) {
    if (s.closing) return;
    s.out.push_back(out_frame{wire::encode_frame(k, request_id, body), nullptr});
    count_out(s, int64_t(s.out.back().charge()));
    if (!s.sending) start_send(s);
  }

  void start_send(session& s) {
    if (s.out.empty() || s.closing) return;
    s.iov_frames = std::min(s.out.size(), send_iov_max);
    for (size_t i = 0; i < s.iov_frames; ++i) {
      const auto& fr = s.out[i].bytes();
      const size_t skip = i == 0 ? s.out_offset : 0;
      s.iov[i] = {const_cast<uint8_t*>(fr.data()) + skip, fr.size() - skip};
    }
    s.msg = {};
    s.msg.msg_iov = s.iov;
    s.msg.msg_iovlen = s.iov_frames;
    auto* q = sqe();
    io_uring_prep_sendmsg(q, s.fd, &s.msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(q, tag(op_send, s.slot, s.gen));
    s.sending = true;
  }

  void on_send(uint64_t t, int res) {
    const uint32_t slot = tag_slot(t);
    if (slot >= sessions_.size() || !sessions_[slot]) return;
    session& s = *sessions_[slot];
    if ((s.gen & 0xffffff) != tag_gen(t) || s.fd < 0) return;
    s.sending = false;
    if (s.closing) {
      maybe_free(s);
      return;
    }
    if (res < 0) {
      close_session(s);
      return;
    }
    if (res > 0) {
      s.last_active_ms = s.out_since_ms = now_ms();
      s.kernel_queue_seen = -1;  // the timer's next look starts afresh
    }
    size_t sent = size_t(res);
    // (A session in its handshake past its small budget is not resumed by its own sends:
    // a client that sends 64 KiB of pings before authenticating waits for its timeout.)
    const bool was_over = s.out_bytes >= cfg_.out_bytes_max || over_share(s);
    while (sent > 0 && !s.out.empty()) {
      const size_t left = s.out.front().size() - s.out_offset;
      if (sent >= left) {
        sent -= left;
        count_out(s, -int64_t(s.out.front().charge()), s.out.front().pushed);
        s.out.pop_front();
        s.out_offset = 0;
      } else {
        s.out_offset += sent;
        sent = 0;
      }
    }
    drain_backlog(s);
    if (!s.out.empty()) {
      start_send(s);
    } else if (s.close_after_flush) {
      close_if_flushed(s);  // (else when its answers come, or at close_by_ms)
      return;
    }
    if (was_over && may_read(s)) {  // the client read its responses: read it again
      process(s);
      if (may_read(s)) arm_recv(s);
    }
  }

  // ---- time and stopping -------------------------------------------------------------

  void on_timer() {
    const uint64_t t = now_ms();
    release_idle_readers(t);
    if (accept_waits_) {
      accept_waits_ = false;
      accept_failed_in_row_ = 0;
      if (!accept_armed_ && !stopping_) arm_accept();
    }
    // An operator's change to the registry reaches every session within a tick, not only
    // at its next frame: a disabled gateway's sessions close (and a subscriber whose
    // gateway lost events_reader has its subscription ended) even if they only read, or
    // send nothing.
    const auto reg = eng_.gateway_registry();
    const bool registry_moved = reg != timer_registry_;
    timer_registry_ = reg;
    for (auto& sp : sessions_) {
      if (!sp || sp->fd < 0 || sp->closing) continue;
      session& s = *sp;
      if (registry_moved && s.authed && !s.close_after_flush && !still_registered(s, 0)) continue;
      if (s.close_after_flush) {
        // It did not read its last frames (its answers in the engine are waited for: the
        // flush time runs from the last one, on_wake).
        if (t >= s.close_by_ms && s.in_flight == 0) close_session(s);
      } else if (!s.authed && t - s.opened_ms > cfg_.handshake_timeout_ms) {
        protocol_fault(s, 0, protocol_error::handshake_timeout,
                       "no successful auth within the handshake timeout (" + std::to_string(cfg_.handshake_timeout_ms) +
                           " ms)");
        close_after_flush(s);  // a limit, not an input fault: the session goes
      } else if (s.authed && s.in_flight == 0 && t - s.last_active_ms > cfg_.idle_timeout_ms &&
                 !(s.out.empty() && s.reader.has_frame())) {
        // (A session still in its handshake has the handshake timeout: an idle timeout
        // set shorter closed it first, told `idle_timeout` though it had not yet begun.
        // One with nothing queued and a frame waiting is not idle: the server is not taking
        // it, the total reached or the engine full.)
        // Nothing from it, and nothing it read, for that long. One with nothing queued
        // is told why (a quiet subscriber that is still there learns to ping); one that
        // left frames unread would not read that either, and goes at once.
        if (!s.out.empty()) {
          close_session(s);
        } else {
          protocol_fault(s, 0, protocol_error::idle_timeout,
                         "nothing from this session and nothing sent to it for " +
                             std::to_string(cfg_.idle_timeout_ms) + " ms");
        }
      }
    }
    enforce_out_limits();
    std::erase_if(opens_, [&](const auto& kv) { return opens_now(kv.second, t) >= opens_burst_milli(); });
    if (stop_requested_.load() && !stopping_) begin_stop();
    arm_timer();
  }

  void begin_stop() {
    stopping_ = true;
    stop_deadline_ms_ = now_ms() + cfg_.drain_timeout_ms;
    if (listen_fd_ >= 0) {
      ::shutdown(listen_fd_, SHUT_RDWR);  // ends the multishot accept
      ::close(listen_fd_);
      listen_fd_ = -1;
    }
    for (auto& sp : sessions_)
      if (sp && sp->fd >= 0 && !sp->closing) {
        pause_recv(*sp);
        refuse_buffered(*sp);
      }
  }
  // A stop takes no more frames: the whole ones a session holds (taken off its socket
  // behind its limits before the stop, or by a receive that completed after it) are each
  // answered shutting_down, so that their senders know they were not applied and can
  // send them again once the server is back; pings and acks are dropped. Before, they
  // went unanswered with the session's close. Up to out_bytes_max queued to it.
  void refuse_buffered(session& s) {
    while (!s.closing && !s.close_after_flush && s.out_bytes < cfg_.out_bytes_max) {
      wire::frame_reader::frame f;
      if (take_frame(s, &f) != wire::frame_reader::status::frame) break;
      const auto k = frame_kind(f.header.kind);
      if ((k == frame_kind::request || k == frame_kind::admin_request || k == frame_kind::subscribe) &&
          f.header.request_id != 0)
        protocol_fault(s, f.header.request_id, protocol_error::shutting_down,
                       "the server is stopping: this frame was not taken (nothing of it applied); send it again "
                       "once the server is back");
    }
  }

  void request_stop() {
    stop_requested_.store(true);
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }
};

std::unique_ptr<server> server::start(engine& e, const server_config& cfg, std::string* error) {
  if (auto problem = cfg.validate(); !problem.empty()) {
    *error = "server config: " + problem;
    if (cfg.listen_fd >= 0) ::close(cfg.listen_fd);  // (the server's from here, as the config says)
    return nullptr;
  }
  auto impl = std::make_unique<server_impl>(e, cfg);
  if (!impl->setup(error)) return nullptr;
  server_impl* p = impl.get();
  if (!cfg.admin && e.events())
    e.events()->start(
        [mail = impl->mail_](uint64_t session, std::shared_ptr<const std::vector<uint8_t>> frame) {
          mail->post(outgoing_push{std::string(), {}, session, std::move(frame)});
          return true;
        },
        cfg.out_bytes_max);
  impl->thread_ = std::thread([p] { p->run(); });
  return std::unique_ptr<server>(new server(std::move(impl)));
}

server::server(std::unique_ptr<server_impl> impl) : impl_(std::move(impl)) {}
server::~server() { stop(); }

uint16_t server::port() const { return impl_->port_; }

const server_config& server::config() const { return impl_->cfg_; }

server_stats server::stats() const {
  constexpr auto r = std::memory_order_relaxed;
  server_stats s;
  s.sessions_open = impl_->st_open_.load(r);
  s.sessions_total = impl_->st_total_.load(r);
  s.connections_refused = impl_->st_refused_.load(r);
  s.accept_failures = impl_->st_accept_failures_.load(r);
  s.handshakes_evicted = impl_->st_evicted_.load(r);
  s.frames_in = impl_->st_frames_.load(r);
  s.direct_receives = impl_->st_direct_.load(r);
  s.frame_buffer_bytes = impl_->st_reader_bytes_.load(r);
  s.frame_buffers_closed = impl_->st_in_closed_.load(r);
  s.requests = impl_->st_requests_.load(r);
  s.protocol_errors = impl_->st_errors_.load(r);
  s.auth_failures = impl_->st_auth_fail_.load(r);
  s.pushes = impl_->st_pushes_.load(r);
  s.push_backlog_bytes = impl_->st_backlog_.load(r);
  s.pushes_backlogged = impl_->st_backlogged_.load(r);
  s.slow_readers_closed = impl_->st_slow_.load(r);
  s.submissions_spilled = impl_->st_spilled_.load(r);
  s.out_bytes_queued = impl_->st_out_total_.load(r);
  return s;
}

std::vector<std::pair<std::string, uint64_t>> server::sessions_by_role() const {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (uint32_t bit = 0; (1u << bit) & wire::roles::all; ++bit)
    out.emplace_back(wire::roles_text(1u << bit), impl_->role_sessions_[bit].load(std::memory_order_relaxed));
  return out;
}

std::vector<request_meter> server::request_meters() const {
  std::vector<request_meter> out;
  for (uint32_t op = 1; op <= wire::operation_max; ++op) {
    const op_meter& m = impl_->meters_[op];
    request_meter r;
    r.op = std::string(wire::operation_name(wire::operation(op)));
    r.count = m.count.load(std::memory_order_relaxed);
    r.sum_seconds = double(m.sum_ns.load(std::memory_order_relaxed)) / 1e9;
    for (const auto& b : m.buckets) r.buckets.push_back(b.load(std::memory_order_relaxed));
    for (uint32_t code = 0; code < m.results.size(); ++code)
      if (const uint64_t n = m.results[code].load(std::memory_order_relaxed); n != 0)
        r.results.emplace_back(std::string(wire::result_name(wire::result(code))), n);
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<session_info> server::sessions() const {
  std::vector<session_info> out;
  {
    // The network thread takes this lock at every accept, login and close: the copy
    // alone is made under it, the sort after. The time is read under it too: a session
    // listed after an earlier reading would have a negative age (wrapped).
    std::lock_guard lk(impl_->list_mu_);
    const uint64_t now = now_ms();
    out.reserve(impl_->listed_.size());
    for (const auto& [key, l] : impl_->listed_) {
      session_info i = l.info;
      i.age_ms = now - l.opened_ms;
      i.requests = l.requests->load(std::memory_order_relaxed);
      out.push_back(std::move(i));
    }
  }
  std::sort(out.begin(), out.end(), [](const session_info& a, const session_info& b) { return a.age_ms > b.age_ms; });
  return out;
}

const std::vector<gateway_config>& server::gateways() const { return impl_->cfg_.gateways; }

namespace {

// Instructions in frames of at most push_instructions_max and at most a quarter of the
// server's frame and queue limits, in order, under one topic.
template <class T, class Encode>
void push_in_frames(server& s, const std::string& gateway, const char* topic, std::span<const T> list, Encode encode) {
  const uint64_t limit = std::min<uint64_t>(s.config().frame_bytes_max, s.config().out_bytes_max) / 4;
  const size_t per_frame = std::clamp<uint64_t>(limit / sizeof(T), 1, push_instructions_max);
  for (size_t at = 0; at < list.size(); at += per_frame)
    s.push(gateway, topic, encode(list.subspan(at, std::min(per_frame, list.size() - at))));
}

}  // namespace

void push_payout_instructions(server& s, const std::string& gateway, std::vector<wire::payout_instruction>&& list) {
  const auto cancels = std::stable_partition(list.begin(), list.end(), [](const wire::payout_instruction& in) {
    return in.kind == wire::payout_instruction_kind::pay;
  });
  const std::span<const wire::payout_instruction> all(list);
  const auto pays = size_t(cancels - list.begin());
  push_in_frames(s, gateway, wire::payouts_topic, all.first(pays), wire::payout_instructions_body);
  push_in_frames(s, gateway, wire::payout_cancels_topic, all.subspan(pays), wire::payout_instructions_body);
}

void push_order_instructions(server& s, const std::string& broker, const std::vector<wire::order_instruction>& list) {
  push_in_frames(s, broker, wire::orders_topic, std::span<const wire::order_instruction>(list),
                 wire::order_instructions_body);
}

void server::push(const std::string& gateway_id, const std::string& topic, std::vector<uint8_t> body) {
  impl_->mail_->post(
      outgoing_push{gateway_id, wire::encode_frame(frame_kind::push, 0, wire::push_body({topic, std::move(body)})), 0, nullptr});
}

void server::stop() {
  if (!impl_ || !impl_->thread_.joinable()) return;
  impl_->request_stop();
  impl_->thread_.join();
}

}  // namespace mesob::engine
