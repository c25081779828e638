#include "engine/metrics.hpp"

#include "engine/events.hpp"
#include "engine/server.hpp"
#include "storage/wal.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string_view>
#include <tuple>
#include <vector>

#include "actors/payout_desk.hpp"

namespace mesob::engine {
namespace {

// One metric family: its HELP and TYPE lines, then its samples.
class exposition {
 public:
  void family(const char* name, const char* type, const char* help) {
    name_ = name;
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // A sample of the current family; labels as name="value" pairs, already escaped.
  void sample(double v, const std::string& labels = {}) {
    out_ += name_;
    if (!labels.empty()) out_ += "{" + labels + "}";
    char buf[64];
    std::snprintf(buf, sizeof buf, " %.17g\n", v);
    out_ += buf;
  }
  // A sample named the family's name plus `suffix` (a histogram's _bucket, _sum, _count).
  void sample_as(const char* suffix, double v, const std::string& labels) {
    const char* keep = name_;
    std::string named = std::string(name_) + suffix;
    name_ = named.c_str();
    sample(v, labels);
    name_ = keep;
  }
  void one(const char* name, const char* type, const char* help, double v) {
    family(name, type, help);
    sample(v);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
  const char* name_ = "";
};

// A label value escaped as the text format asks (backslash, double quote, newline).
std::string label(std::string_view key, std::string_view value) {
  std::string out(key);
  out += "=\"";
  for (const char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  out += '"';
  return out;
}

}  // namespace

std::optional<reply> engine_reads::call(engine& e, request&& r) {
  if (unanswered_ && !unanswered_->load()) {
    ++given_up_;
    return std::nullopt;
  }
  auto answered = std::make_shared<std::atomic<bool>>(false);
  std::optional<reply> got = e.call_within(std::move(r), std::chrono::milliseconds(wait_ms), answered);
  if (got) {
    unanswered_.reset();
  } else {
    unanswered_ = std::move(answered);
    ++given_up_;
  }
  return got;
}

std::string render_metrics(engine& e, const server* client, const server* admin, engine_reads& reads) {
  exposition x;
  const engine_stats st = e.stats();
  x.one("mesob_accounts", "gauge", "Accounts the engine holds.", double(st.accounts));
  x.one("mesob_accounts_max", "gauge", "Accounts the engine may hold (accounts_max; each shard its share).",
        double(st.accounts_max));
  x.one("mesob_equb_groups", "gauge", "Equb groups the engine holds, ended ones not yet retired included.", double(st.groups));
  x.one("mesob_equb_groups_max", "gauge", "Equb groups the engine may hold (groups_max; each shard its share).",
        double(st.groups_max));
  x.family("mesob_capacity_used_ratio", "gauge",
           "The fullest shard's use of its share of accounts_max, groups_max and pending_max, and the engine's of "
           "transfers_max; from 1 its creates are refused.");
  x.sample(st.accounts_share_used, label("what", "accounts"));
  x.sample(st.groups_share_used, label("what", "groups"));
  x.sample(st.pending_share_used, label("what", "pending"));
  x.sample(st.transfers_max ? double(st.transfers) / double(st.transfers_max) : 0.0, label("what", "transfers"));
  x.one("mesob_transfers_total", "counter", "Transfers recorded (any outcome).", double(st.transfers));
  x.one("mesob_transfers_max", "gauge",
        "Transfers the engine may record (transfers_max); past it new ones are refused, the engine's own excepted.",
        double(st.transfers_max));
  x.one("mesob_clock_steps_total", "counter",
        "Steps of the wall clock past a second the engine clock did not follow (it ran on by the steady clock).",
        double(st.clock_steps));
  x.one("mesob_clock_skew_seconds", "gauge",
        "The wall clock minus the engine clock while a step is not followed (0 when the engine clock follows it).",
        double(st.clock_skew_ns) * 1e-9);
  x.one("mesob_pending_transfers", "gauge", "Pending transfers the shards hold.", double(st.pending_tracked));
  x.one("mesob_pending_transfers_open", "gauge",
        "Of them, those still pending, on each of their shards (a transfer across two counts twice).", double(st.pending_open));
  x.one("mesob_pending_transfers_max", "gauge",
        "Pending transfers still pending the engine may hold (pending_max; each shard its share, which one across two shards takes on both).",
        double(st.pending_max));
  x.one("mesob_log_durable_lsn", "gauge", "Last log record made durable.", double(st.lsn_durable));
  x.one("mesob_log_groups_total", "counter", "Commit groups written (one write and fdatasync each).",
        double(st.wal_groups));
  x.one("mesob_log_records_total", "counter", "Log records written.", double(st.wal_records));
  x.one("mesob_log_bytes_total", "counter", "Log bytes written.", double(st.wal_bytes));
  x.one("mesob_log_segments_deleting", "gauge",
        "Log segments a snapshot covers that are still being deleted (in the background, a few MiB at a time).",
        double(st.wal_segments_deleting));
  x.one("mesob_log_flight_seconds_total", "counter",
        "Summed time commit groups spent between submit and durable (write + fdatasync).",
        double(st.wal_flight_ns) / 1e9);
  if (!st.wal_commit_buckets.empty()) {
    x.family("mesob_log_commit_seconds", "histogram",
             "Commit groups from submit to durable (one O_DIRECT write and fdatasync each).");
    uint64_t cumulative = 0;
    for (size_t b = 0; b < st.wal_commit_buckets.size(); ++b) {
      cumulative += st.wal_commit_buckets[b];
      char le[32];
      if (b < storage::wal_commit_buckets.size()) std::snprintf(le, sizeof le, "%g", storage::wal_commit_buckets[b]);
      else std::snprintf(le, sizeof le, "+Inf");
      x.sample_as("_bucket", double(cumulative), label("le", le));
    }
    x.sample_as("_sum", double(st.wal_flight_ns) / 1e9, "");
    x.sample_as("_count", double(cumulative), "");
  }
  x.one("mesob_snapshot_lsn", "gauge", "Log position the last snapshot covers.", double(st.snapshot_lsn));
  x.one("mesob_checkpoints_total", "counter", "Snapshots written since start.", double(st.checkpoints));
  x.one("mesob_checkpoint_failures_total", "counter",
        "Checkpoints that failed since start (each is tried again; until one commits the log keeps every segment).",
        double(st.checkpoint_failures));
  x.one("mesob_log_records_past_snapshot", "gauge",
        "Durable log records the snapshot does not cover (replayed at a start; their segments are kept).",
        double(st.lsn_durable > st.snapshot_lsn ? st.lsn_durable - st.snapshot_lsn : 0));
  x.one("mesob_records_flush_failures_total", "counter",
        "Flushes of transfer records to the snapshot that failed since start (each is tried again).",
        double(st.records_flush_failures));
  x.one("mesob_snapshot_rows_unreadable_total", "counter",
        "Snapshot rows requests needed that failed their check or were missing (damage on the disk) since start.",
        double(st.snapshot_rows_unreadable));
  x.one("mesob_writes_refused", "gauge", "1 when storage failed and writes are refused until restart.",
        st.writes_refused ? 1.0 : 0.0);
  x.one("mesob_log_kept_bytes", "gauge", "Log segments kept on the disk (those past the snapshot and the one appended to).",
        double(st.log_kept_bytes));
  x.one("mesob_log_kept_max_bytes", "gauge",
        "Limit of the log kept (--wal-kept-max-mib): past half a checkpoint is due; past it one is waited for, and if "
        "it fails writes are refused until restart.",
        double(st.log_kept_max_bytes));
  x.one("mesob_snapshot_duration_seconds_last", "gauge",
        "How long the last checkpoint took to write its snapshot (LMDB commit included).", st.checkpoint_seconds_last);
  x.one("mesob_snapshot_duration_seconds_total", "counter", "Time spent writing snapshots since start.",
        st.checkpoint_seconds_total);
  x.one("mesob_checkpoint_pause_seconds_max", "gauge", "Longest shard pause of a checkpoint cut since start.",
        double(st.checkpoint_pause_us_max) / 1e6);
  x.one("mesob_snapshot_map_bytes", "gauge", "The snapshot store's map (--snapshot-map-gib).",
        double(st.snapshot_map_bytes));
  x.one("mesob_snapshot_used_bytes", "gauge",
        "The snapshot store's bytes up to its newest commit's last page: at the map every write stops.",
        double(st.snapshot_used_bytes));
  x.family("mesob_memory_bytes", "gauge", "Memory the engine accounts for, by part.");
  x.sample(double(st.memory_bytes_shards), label("part", "shards"));
  x.sample(double(st.memory_bytes_window), label("part", "record_window"));
  x.sample(double(st.memory_bytes_id_index), label("part", "id_index"));

  const auto shards = e.shard_reports();
  auto per_shard = [&](const char* name, const char* type, const char* help, uint64_t shard_report::*field) {
    x.family(name, type, help);
    for (const auto& r : shards) x.sample(double(r.*field), label("shard", std::to_string(r.shard)));
  };
  per_shard("mesob_shard_accounts", "gauge", "Accounts per shard.", &shard_report::accounts);
  per_shard("mesob_shard_queue_depth", "gauge", "Dispatch messages waiting in a shard's mailbox.",
            &shard_report::queue_depth);
  per_shard("mesob_shard_batches_total", "counter", "Batches a shard took part in.", &shard_report::batches_executed);
  per_shard("mesob_shard_sync_waits_total", "counter", "Cross-shard rendezvous that had to wait.",
            &shard_report::sync_waits);
  per_shard("mesob_shard_customers", "gauge", "Customers (KYC records) whose wallets a shard holds.",
            &shard_report::customers);
  per_shard("mesob_orders_open", "gauge", "Orders open in a shard's portfolios (ending ones included).",
            &shard_report::orders_open);
  per_shard("mesob_orders_ending", "gauge", "Open orders cancelled or expired, their broker not yet confirmed.",
            &shard_report::orders_ending);
  per_shard("mesob_order_fills_total", "counter", "Brokers' fills taken since the engine started.", &shard_report::fills);
  per_shard("mesob_order_settle_refusals_total", "counter",
            "Orders' settlements the ledger refused since the engine started (an operator's to look at).",
            &shard_report::settle_refusals);
  per_shard("mesob_equb_obligations_refused", "gauge",
            "Equb groups' payments the ledger refused (a guarantor short of funds, a closed wallet), waiting for "
            "an operator's group retry.",
            &shard_report::group_refusals);
  per_shard("mesob_orders_dead", "gauge", "Open orders that are dead letters: no broker works them until an operator "
            "retries or cancels them.", &shard_report::orders_dead);
  per_shard("mesob_orders_halted", "gauge",
            "Open orders held from brokers while their instrument is halted or its price stale; routed when it "
            "trades again.", &shard_report::orders_halted);
  per_shard("mesob_order_timeouts_total", "counter", "Brokers' answer timeouts for orders since the engine started.",
            &shard_report::order_timeouts);
  per_shard("mesob_order_timers", "gauge",
            "Orders' timers a shard holds (those of orders closed early stay until the heap is compacted).",
            &shard_report::order_timers);
  per_shard("mesob_payout_timers", "gauge",
            "Payout desks' timers a shard holds (those of payouts answered or resolved early stay until the heap "
            "is compacted).",
            &shard_report::payout_timers);

  // The market (one read through the engine: every instrument's state as of now).
  request instruments;
  instruments.kind = op_kind::lookup_instruments;
  if (const auto got = reads.call(e, std::move(instruments)); got && got->st == status::ok) {
    const reply& m = *got;
    uint64_t prices = 0, halts = 0, by_reason[3] = {};
    for (const auto& s : m.instruments) {
      prices += s.prices;
      halts += s.halts;
      for (int b = 0; b < 3; ++b) by_reason[b] += (s.reasons >> b) & 1;
    }
    x.one("mesob_instruments", "gauge", "Instruments listed.", double(m.instruments.size()));
    x.family("mesob_instruments_halted", "gauge",
             "Instruments not trading now, by reason (one may count under several).");
    const char* reasons[] = {"manual", "move", "stale"};
    for (int b = 0; b < 3; ++b) x.sample(double(by_reason[b]), label("reason", reasons[b]));
    x.one("mesob_prices_total", "counter", "Prices taken, every instrument.", double(prices));
    x.one("mesob_instrument_halts_total", "counter", "Halts announced, every instrument.", double(halts));
  }

  // Requests on the client port by operation: latency histogram and results.
  if (client) {
    x.family("mesob_sessions_by_role", "gauge", "Authenticated client sessions open, per role (once per role held).");
    for (const auto& [role, n] : client->sessions_by_role()) x.sample(double(n), label("role", role));
    const auto meters = client->request_meters();
    x.family("mesob_request_duration_seconds", "histogram",
             "Client requests from being taken off the socket to their response being queued, by operation.");
    for (const auto& m : meters) {
      uint64_t cumulative = 0;
      for (size_t b = 0; b < m.buckets.size(); ++b) {
        cumulative += m.buckets[b];
        char le[32];
        if (b < request_latency_buckets.size()) std::snprintf(le, sizeof le, "%g", request_latency_buckets[b]);
        else std::snprintf(le, sizeof le, "+Inf");
        x.sample_as("_bucket", double(cumulative), label("op", m.op) + "," + label("le", le));
      }
      x.sample_as("_sum", m.sum_seconds, label("op", m.op));
      // The +Inf bucket's figure: the count is read apart from the buckets, which the
      // network thread moves meanwhile, and the format has them equal.
      x.sample_as("_count", double(cumulative), label("op", m.op));
    }
    x.family("mesob_operation_results_total", "counter", "Operations answered on the client port, by operation and result.");
    for (const auto& m : meters)
      for (const auto& [result, n] : m.results) x.sample(double(n), label("op", m.op) + "," + label("result", result));
  }

  // The event stream: its log, and how far behind the subscribers are.
  if (const event_stats ev = e.events_stats(); ev.kept) {
    x.one("mesob_events_end_offset", "gauge", "Offset the next event gets (events written below it).",
          double(ev.end_offset));
    x.one("mesob_events_first_offset", "gauge", "Oldest event kept (retention).", double(ev.first_offset));
    x.one("mesob_events_written_total", "counter", "Events written since start.", double(ev.events_written));
    x.one("mesob_event_log_bytes", "gauge", "Bytes the event log holds on disk.", double(ev.bytes));
    x.one("mesob_event_log_syncs_total", "counter", "Event log appends made durable (fdatasync).", double(ev.syncs));
    x.one("mesob_event_log_sync_seconds_total", "counter", "Summed time of event log appends and fdatasyncs.",
          double(ev.sync_ns) / 1e9);
    x.one("mesob_event_writer_backlog", "gauge", "Dispatches waiting for the event writer.", double(ev.backlog));
    x.one("mesob_event_log_failed", "gauge", "1 when the event log failed (events stop until restart).",
          ev.failed ? 1.0 : 0.0);
    if (event_hub* hub = e.events()) {
      const auto subs = hub->subscribers();
      uint64_t lag_max = 0;
      for (const auto& s : subs) lag_max = std::max(lag_max, s.lag);
      x.one("mesob_event_subscribers", "gauge", "Sessions subscribed to events.", double(subs.size()));
      x.one("mesob_event_subscriber_lag_max", "gauge",
            "Events the furthest-behind subscriber has not acknowledged.", double(lag_max));
      x.one("mesob_event_frames_sent_total", "counter", "Frames of events sent to subscribers.",
            double(hub->frames_sent()));
      x.one("mesob_event_hub_events_read_total", "counter",
            "Events the hub read from the event log to make frames (frames sent as written read none).",
            double(hub->events_read()));
      x.one("mesob_event_hub_file_events_read_total", "counter",
            "Of them, events read from the event log's files (subscribers behind what it keeps in memory).",
            double(hub->file_events_read()));
      x.one("mesob_event_frames_as_written_total", "counter",
            "Packed frames of events sent as the event writer packed them (not read and packed again).",
            double(hub->frames_as_written()));
    }
  }

  const std::pair<const char*, const server*> ports[] = {{"client", client}, {"admin", admin}};
  auto per_port = [&](const char* name, const char* type, const char* help, uint64_t server_stats::*field) {
    x.family(name, type, help);
    for (const auto& [port, s] : ports)
      if (s) x.sample(double(s->stats().*field), label("port", port));
  };
  per_port("mesob_sessions_open", "gauge", "Open connections.", &server_stats::sessions_open);
  per_port("mesob_requests_total", "counter", "Requests taken from sessions.", &server_stats::requests);
  per_port("mesob_protocol_errors_total", "counter", "Malformed or refused frames answered with an error.",
           &server_stats::protocol_errors);
  per_port("mesob_auth_failures_total", "counter", "Handshakes refused.", &server_stats::auth_failures);
  per_port("mesob_connections_refused_total", "counter", "Connections refused over the limit.",
           &server_stats::connections_refused);
  per_port("mesob_accept_failures_total", "counter",
           "Accepts the kernel failed (out of descriptors or memory: accepting waits a second).",
           &server_stats::accept_failures);
  per_port("mesob_handshakes_evicted_total", "counter",
           "Sessions not yet authenticated closed to let a new connection in (over handshakes_max or connections_max).",
           &server_stats::handshakes_evicted);
  per_port("mesob_slow_readers_closed_total", "counter",
           "Sessions closed for not reading what was queued to them (a push backlog past its limit or not read, "
           "responses past twice the session's limit, or the most held when all sessions reached "
           "out_bytes_total_max).",
           &server_stats::slow_readers_closed);
  per_port("mesob_out_bytes_queued", "gauge", "Bytes queued to the sessions, not yet sent.",
           &server_stats::out_bytes_queued);
  per_port("mesob_frame_buffer_bytes", "gauge", "Bytes the sessions' frame buffers hold (in_bytes_total_max).",
           &server_stats::frame_buffer_bytes);
  per_port("mesob_frame_buffers_closed_total", "counter",
           "Sessions closed holding the most of a frame not yet whole when all sessions' frame buffers passed "
           "in_bytes_total_max (frame_buffers_full).",
           &server_stats::frame_buffers_closed);
  per_port("mesob_pushes_backlogged_total", "counter",
           "Pushed frames that waited in their session's backlog (its queue past out_bytes_max).",
           &server_stats::pushes_backlogged);
  per_port("mesob_push_backlog_bytes", "gauge",
           "Pushed frames waiting for room in their sessions' queues (push_backlog_bytes_max each).",
           &server_stats::push_backlog_bytes);

  // The payouts held, as the shards published them.
  std::map<std::pair<std::string, std::string>, std::pair<uint64_t, uint64_t>> held;
  for (const auto& c : e.payouts_held()) {
    auto& v = held[{wire::currency_name(c.currency), actors::payouts::state_name(c.st)}];
    v.first += c.n;
    actors::gateways::add_amount(v.second, c.amount);
  }
  x.family("mesob_payouts_held", "gauge", "Payouts the desks hold, by currency and state.");
  for (const auto& [k, v] : held) x.sample(double(v.first), label("currency", k.first) + "," + label("state", k.second));
  x.family("mesob_payouts_held_amount", "gauge", "Minor units the desks hold, by currency and state.");
  for (const auto& [k, v] : held) x.sample(double(v.second), label("currency", k.first) + "," + label("state", k.second));

  // Breakers: payout desks' and brokers' (one read through the engine, no pass over the
  // payouts).
  if (const auto got = reads.call(e, engine::payouts_query(0, 0, false, false, 0, /*breakers_only=*/true));
      got && got->st == status::ok) {
    const reply& p = *got;
    const auto reg = e.gateway_registry();
    auto gateway = [&](uint32_t number) {
      const auto* g = reg->find(number);
      return g ? g->id : "#" + std::to_string(number);
    };
    const auto phase = [](const actors::gateways::breaker& b) {
      return b.ph == actors::gateways::breaker::phase::closed ? 0.0 : b.ph == actors::gateways::breaker::phase::open ? 1.0 : 2.0;
    };
    x.family("mesob_gateway_breaker_state", "gauge",
             "A payout desk's circuit breaker for a gateway: 0 closed, 1 open, 2 half-open.");
    for (const auto& b : p.breakers)
      x.sample(phase(b.b), label("gateway", gateway(b.gateway)) + "," + label("currency", wire::currency_name(b.currency)) +
                               "," + label("desk", std::to_string(actors::payouts::desk_slot(b.desk))));
    x.family("mesob_order_breaker_state", "gauge",
             "A shard's circuit breaker for a broker (orders): 0 closed, 1 open, 2 half-open.");
    for (const auto& b : p.order_breakers)
      x.sample(phase(b.b), label("gateway", gateway(b.gateway)) + "," + label("shard", std::to_string(b.desk)));
  }
  x.one("mesob_metrics_engine_reads_given_up_total", "counter",
        "Reads through the engine a render gave up (not answered within a second, or not sent while one given up "
        "was unanswered): the families of a read given up (the market's, the breakers') are left out of that render.",
        double(reads.given_up()));
  return x.take();
}

// ---- HTTP -------------------------------------------------------------------------------

namespace {

using clock_type = std::chrono::steady_clock;

// The request target's path: origin form ("/metrics?x") or absolute form
// ("http://host:port/metrics"), without its query.
std::string target_path(std::string t) {
  if (const auto q = t.find('?'); q != std::string::npos) t.resize(q);
  if (const auto scheme = t.find("://"); scheme != std::string::npos && t[0] != '/') {
    const auto path = t.find('/', scheme + 3);
    t = path == std::string::npos ? "/" : t.substr(path);
  }
  return t;
}

}  // namespace

std::unique_ptr<metrics_http> metrics_http::start(const std::string& address, uint16_t port,
                                                  std::function<std::string()> render, std::string* error,
                                                  int listen_fd) {
  std::unique_ptr<metrics_http> m(new metrics_http());
  m->render_ = std::move(render);
  // Non-blocking: a connection gone between poll and accept never blocks the thread.
  m->fd_ = listen_fd >= 0 ? listen_fd : listen_on(address, port, listen_backlog, true, error);
  if (m->fd_ < 0) {
    *error = "metrics " + *error;
    return nullptr;
  }
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  ::getsockname(m->fd_, reinterpret_cast<sockaddr*>(&sa), &len);
  m->port_ = ntohs(sa.sin_port);
  m->thread_ = std::thread([p = m.get()] { p->run(); });
  return m;
}

metrics_http::~metrics_http() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
}

namespace {
bool head_complete(const std::string& req) {
  return req.find("\n\r\n") != std::string::npos || req.find("\n\n") != std::string::npos;
}
}  // namespace

void metrics_http::run() {
  pthread_setname_np(pthread_self(), "mesob.metrics");
  // A connection: reading its request, then sending the answer, then (its side shut)
  // draining what it still sends for a moment, so that the close is no reset that could
  // overtake the answer.
  enum class phase { reading, sending, draining };
  struct conn {
    int fd;
    uint32_t peer = 0;  // its IPv4 address
    phase ph = phase::reading;
    std::string in, out;
    size_t sent = 0;
    clock_type::time_point until;  // the current phase's deadline
  };
  std::vector<conn> conns;  // in the order they came
  const auto limit = std::chrono::milliseconds(request_timeout_ms);
  const auto close_at = [&](size_t i) {
    ::close(conns[i].fd);
    conns.erase(conns.begin() + std::ptrdiff_t(i));
  };
  std::vector<pollfd> fds;
  while (!stop_) {
    fds.assign(1, pollfd{fd_, POLLIN, 0});
    auto wake = clock_type::now() + std::chrono::milliseconds(200);  // (stop_ at least every 200 ms)
    for (const conn& c : conns) {
      fds.push_back({c.fd, short(c.ph == phase::sending ? POLLOUT : POLLIN), 0});
      wake = std::min(wake, c.until);
    }
    const auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(wake - clock_type::now()).count();
    if (::poll(fds.data(), fds.size(), int(std::max<int64_t>(0, wait_ms) + 1)) < 0 && errno != EINTR) continue;
    const auto now = clock_type::now();
    // Connections first (the indexes of fds), then new ones.
    for (size_t i = conns.size(); i-- > 0;) {
      conn& c = conns[i];
      const short got = fds[i + 1].revents;
      bool done = false;
      if (c.ph == phase::reading && got) {
        char buf[2048];
        for (;;) {
          const ssize_t n = ::recv(c.fd, buf, std::min(sizeof buf, request_bytes_max - c.in.size()), 0);
          if (n > 0) {
            c.in.append(buf, size_t(n));
            if (head_complete(c.in) || c.in.size() >= request_bytes_max) break;
          } else {
            done = n == 0 || (errno != EAGAIN && errno != EINTR);  // gone, or nothing more now
            break;
          }
        }
        if (!done && (head_complete(c.in) || c.in.size() >= request_bytes_max)) {
          c.out = answer(c.in);
          c.ph = phase::sending;
          c.until = clock_type::now() + limit;
        }
      }
      if (!done && c.ph == phase::sending) {
        while (c.sent < c.out.size()) {
          const ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
          if (n > 0) {
            c.sent += size_t(n);
          } else {
            done = !(n < 0 && (errno == EAGAIN || errno == EINTR));  // gone
            break;
          }
        }
        if (!done && c.sent == c.out.size()) {
          ::shutdown(c.fd, SHUT_WR);
          c.ph = phase::draining;
          c.until = clock_type::now() + std::chrono::milliseconds(100);
        }
      } else if (!done && c.ph == phase::draining && got) {
        // At most 64 KiB a pass: a peer that keeps sending cannot keep this thread here
        // (its 100 ms then close it).
        char sink[4096];
        ssize_t n = 0;
        for (int k = 0; k < 16 && (n = ::recv(c.fd, sink, sizeof sink, 0)) > 0; ++k) {
        }
        done = n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
      }
      // Too slow to send its request or to read the answer: closed (without an answer).
      if (done || now >= c.until) close_at(i);
    }
    if (!(fds[0].revents & POLLIN)) continue;
    // At most connections_max a pass: a peer connecting in a loop cannot keep this thread
    // accepting while the answers already made wait to be sent.
    for (size_t accepted = 0; accepted < connections_max; ++accepted) {
      sockaddr_in from{};
      socklen_t from_len = sizeof from;
      const int c = ::accept4(fd_, reinterpret_cast<sockaddr*>(&from), &from_len, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c < 0) {
        // Out of descriptors or memory: the connection stays queued; wait rather than spin.
        if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        break;
      }
      if (conns.size() >= connections_max) {
        // Full: one whose request is still coming in makes room, whether it sent part of
        // one or nothing (a scraper sends its request at once: what each sent is read
        // first, so it is not taken for one). Of those, the address holding the most
        // makes room, its oldest first (the newest goes last): a peer connecting in a
        // loop pushes out its own connections, and a scraper from another address is
        // never the one to go while the peer holds more than it. From one address, the
        // oldest goes, so a loop pushes out its own older connections before a scraper
        // that has just connected, though one that connects many times between a
        // scraper's connect and its request can still push it out. (Before, the oldest
        // of any address went: a peer connecting in a loop from another address could
        // close a scraper between its connect and its request.) Before all that, one whose
        // answer is sent in full and that waits out its peer's close (draining) makes room:
        // of the address holding the most such, its oldest (the answer is delivered: a
        // scraper has it, and closing loses nothing). With every one answered and still
        // being sent (a peer reading none of the answers, each past its socket's buffers),
        // the oldest of the address holding the most such goes. Connections are in
        // arrival order. (Before, draining ones never made room: a peer whose requests
        // were whole and answered at once, 404s it never read, kept the endpoint full of
        // them and another address's scraper out; and with every one still being sent the
        // new one went, so a peer asking for the metrics 16 times and reading nothing kept
        // scrapes out for 2 s at a time.)
        for (conn& x : conns) {
          if (x.ph != phase::reading) continue;
          char buf[2048];
          const ssize_t n = ::recv(x.fd, buf, std::min(sizeof buf, request_bytes_max - x.in.size()), MSG_DONTWAIT);
          if (n > 0) x.in.append(buf, size_t(n));
          if (head_complete(x.in) || x.in.size() >= request_bytes_max) {
            // Answered from the next pass (no more bytes may come to wake it).
            x.out = answer(x.in);
            x.ph = phase::sending;
            x.until = clock_type::now() + limit;
          }
        }
        // The oldest connection in phase `ph` of the address holding the most in it.
        const auto oldest_of_most = [&](phase ph) {
          const auto in_from = [&](uint32_t peer) {
            return std::count_if(conns.begin(), conns.end(), [&](const conn& x) { return x.ph == ph && x.peer == peer; });
          };
          size_t at = conns.size();
          ptrdiff_t most = 0;
          for (size_t i = 0; i < conns.size(); ++i)
            if (conns[i].ph == ph)
              if (const ptrdiff_t n = in_from(conns[i].peer); n > most) {
                most = n;
                at = i;  // (the first of an address in arrival order: its oldest)
              }
          return at;
        };
        size_t room = oldest_of_most(phase::draining);
        if (room == conns.size()) room = oldest_of_most(phase::reading);
        if (room == conns.size()) room = oldest_of_most(phase::sending);
        close_at(room);  // (conns is full: one of the three phases has one)
      }
      conns.push_back(conn{c, from.sin_addr.s_addr, phase::reading, {}, {}, 0, clock_type::now() + limit});
    }
  }
  for (const conn& c : conns) ::close(c.fd);
}

std::string metrics_http::answer(const std::string& req) {
  auto respond = [](const char* status, const std::string& body, const char* extra = "") {
    return std::string("HTTP/1.1 ") + status + "\r\nContent-Type: " +
           (std::string_view(status).starts_with("200") ? "text/plain; version=0.0.4; charset=utf-8"
                                                        : "text/plain; charset=utf-8") +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n" + extra + "\r\n" +
           body;
  };
  if (!head_complete(req)) return respond("431 Request Header Fields Too Large", "a request is at most 8192 bytes\n");
  // The request line: METHOD SP TARGET SP HTTP/1.x (CRLF or LF)
  std::string line = req.substr(0, req.find('\n'));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const auto sp1 = line.find(' '), sp2 = line.rfind(' ');
  const std::string target = sp1 == std::string::npos || sp2 <= sp1 + 1 ? "" : line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (target.empty() || target.find(' ') != std::string::npos || !line.substr(sp2 + 1).starts_with("HTTP/1."))
    return respond("400 Bad Request", "not an HTTP/1 request line\n");
  if (line.substr(0, sp1) != "GET") return respond("405 Method Not Allowed", "only GET /metrics\n", "Allow: GET\r\n");
  if (target_path(target) != "/metrics") return respond("404 Not Found", "the metrics are at /metrics\n");
  const auto due = last_render_ + std::chrono::milliseconds(render_gap_ms);
  if (const auto now = std::chrono::steady_clock::now(); now < due) std::this_thread::sleep_for(due - now);
  std::string body = render_();
  last_render_ = std::chrono::steady_clock::now();  // (the gap is from its end)
  return respond("200 OK", body);
}

}  // namespace mesob::engine
