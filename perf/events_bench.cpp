// events_bench: the event stream under the engine's maximum transfer rate.
//
//   events_bench [--seconds S] [--accounts N] [--rounds R] [--prefill S] [--out FILE] [--dir DIR]
//
// One engine (one shard per core, durable) with its server on loopback. Each run: a fresh
// data directory, N accounts (default 100,000), then transfers at the engine's maximum
// rate for S seconds (default 5; batches of 8,192, 2 callers with 4 in flight each, 10%
// crossing shards, as core_bench's pipelined run) in one of six settings:
//   - off: the engine keeps no event log (--no-events);
//   - on: the event log is kept, nobody subscribes;
//   - 1 and 8 subscribers: that many sessions subscribe from the end of the log before
//     the load starts (packed frames, the client's default, of up to 8,192 events: the most
//     a subscription may ask for, as a consumer after throughput would), each reading every event
//     (unpacked a block at a time, as a consumer that takes events one by one; it checks
//     that the offsets run without a gap) and acknowledging every frame;
//   - live alone, and live with 4 catching up: the engine first runs the load for
//     --prefill seconds (default 4: about ten million events, twenty times the log's
//     in-memory ring) with nobody subscribed; then one subscriber from the end, as above,
//     and in the second setting four more from the first event, each filtered on 8
//     accounts (a service reading its customers' history: the hub scans every event from
//     the files for them). The figure is the live subscriber's delivery lag (its clock
//     when a block arrives less the block's oldest event's engine time; blocks of events
//     stamped during the load) during the load: what subscribers catching up from the
//     files cost one reading at the end.
// The settings run in turn, R rounds (default 3); each figure is the median of its runs.
// Events per second: the events a subscriber received during the load window over its
// length (with 8, the slowest subscriber's). Throughput loss: 1 - transfers/s with the
// setting / transfers/s off, as a percentage, from the medians of the same sitting. CPU
// per transfer is given for the whole process, the engine's threads and the subscribers'
// threads, which share the machine's cores here; and by thread for the event stream: the
// writer's CPU per event appended, the hub's and network thread's per event delivered to
// one subscriber, a subscriber's per event it received (the sums of a setting's threads
// over the load window, from /proc: steadier than throughput on a shared machine).
// Writes FILE as one JSON object of metric name -> number.
#include "engine/events.hpp"
#include "engine/server.hpp"
#include "perf/bench_common.hpp"
#include "wire/client.hpp"

using namespace mesob;
using namespace mesob::bench;

namespace {

struct run_result {
  double transfers_per_s = 0;
  double events_per_s_min = 0;   // the slowest subscriber's, during the load
  double events_per_s_sum = 0;
  double lag_at_end = 0;         // events the slowest subscriber had not received when the load stopped
  double group_ms = 0;           // mean commit group latency of the log (write + fdatasync) under the load
  double cpu_us_per_transfer = 0;  // CPU time of the whole process (engine, load, subscribers) per transfer
  double engine_cpu_us_per_transfer = 0;      // the engine's alone (the process's but the callers' and subscribers')
  double subscribers_cpu_us_per_transfer = 0;  // the subscribers' threads' alone
  // The event stream's own threads, per event appended (the writer) and per event
  // delivered to one subscriber (the hub and the network thread; the subscriber's thread):
  // CPU time by thread, steadier than the throughput on a shared machine.
  double writer_cpu_ns_per_event = 0;
  double delivery_cpu_ns_per_event = 0;
  double subscriber_cpu_ns_per_event = 0;
  double events_per_frame = 0;     // delivered events over frames sent
  double frames_as_written = 0;    // share of the frames sent as the writer packed them
  // The first subscriber's delivery lag, ms (a sample a block received, of the blocks of
  // events stamped during the load, however late they came): over the whole load, and
  // (with subscribers catching up) over the blocks that came before they had all caught up.
  double live_lag_p50_ms = 0, live_lag_p99_ms = 0, live_lag_max_ms = 0;
  double live_lag_p99_ms_catching_up = -1;  // -1: no block came before they had caught up
  double catch_up_s = 0;           // until the last subscriber from the first event reached the end of the prefill
  double file_events_pass_max = 0;  // the hub's most events read from the files in a pass
};

struct setting {
  const char* name;
  bool events;
  int subscribers;      // from the end
  int catching_up = 0;  // from the first event, filtered (after the prefill)
  double prefill_s = 0;
};

uint64_t wall_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
}

// A subscriber's connection, subscribed as `m` asks (the process ends if it cannot be).
std::unique_ptr<wire::client> subscribed(const wire::client::options& co, const wire::subscribe_msg& m,
                                         wire::subscribed_msg* a) {
  std::string why;
  auto c = wire::client::connect(co, &why);
  if (!c) {
    std::fprintf(stderr, "events_bench: subscriber: %s\n", why.c_str());
    std::exit(1);
  }
  if (!c->subscribe(m, a, &why) || a->code != wire::result::ok) {
    std::fprintf(stderr, "events_bench: subscribe: %s %s\n", why.c_str(), a->message.c_str());
    std::exit(1);
  }
  return c;
}

// Reads frames until `stop`, handing their events to `each` a block at a time and
// acknowledging every frame; `after` is given each frame's next offset.
void read_until(wire::client& c, const std::atomic<bool>& stop, const wire::event_visitor& each,
                const std::function<void(uint64_t)>& after) {
  wire::events_msg em;
  std::string why;
  while (!stop.load()) {
    if (!c.next_events(&em, each, &why)) {
      if (c.timed_out()) continue;
      std::fprintf(stderr, "events_bench: subscriber: %s\n", why.c_str());
      std::exit(1);
    }
    after(em.next);
    if (em.next > 1 && !c.ack(em.next - 1, &why)) {
      std::fprintf(stderr, "events_bench: ack: %s\n", why.c_str());
      std::exit(1);
    }
  }
}

run_result run(const std::string& dir, uint64_t accounts, double seconds, const setting& st) {
  const bool events = st.events;
  const int subscribers = st.subscribers;
  std::filesystem::remove_all(dir);
  engine::config cfg;
  cfg.data_dir = dir;
  cfg.shards = 0;
  cfg.pin_shards = std::getenv("MESOB_BENCH_PIN") != nullptr;
  cfg.checkpoint_interval_ms = 0;
  cfg.checkpoint_on_close = false;
  cfg.accounts_hint = accounts / 2 + 1024;
  cfg.events = events;
  std::string err;
  auto e = engine::engine::open(cfg, &err);
  if (!e) {
    std::fprintf(stderr, "events_bench: %s\n", err.c_str());
    std::exit(1);
  }
  create_accounts(*e, accounts);
  engine::server_config sc;
  sc.port = 0;
  sc.gateways = {{"reader", std::vector<uint8_t>(32, 0x5b), wire::roles::events_reader}};
  auto srv = engine::server::start(*e, sc, &err);
  if (!srv) {
    std::fprintf(stderr, "events_bench: %s\n", err.c_str());
    std::exit(1);
  }
  wire::client::options co;
  co.port = srv->port();
  co.gateway = "reader";
  co.secret = sc.gateways[0].secret;
  co.timeout_ms = 200;

  const pair_picker picker(accounts, e->shards(), 10);
  // Waits (10 s and twice the prefill at most: catching up takes about as long as the
  // prefill) until `done` holds; false if it did not.
  const int wait_ms = 10'000 + int(2'000 * st.prefill_s);
  const auto wait_for = [wait_ms](const std::function<bool()>& done) {
    for (int i = 0; i < wait_ms; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return done();
  };
  // The event writer has written every event of the requests answered so far: no group
  // waits for it and its end stayed put for 20 ms (a group it has taken may still be
  // being written while none waits).
  const auto events_settled = [&] {
    if (!events) return true;
    uint64_t seen = 0;
    int still = 0;
    return wait_for([&] {
      const auto es = e->events_stats();
      still = es.backlog == 0 && es.end_offset == seen ? still + 1 : 0;
      seen = es.end_offset;
      return still >= 20;
    });
  };
  if (st.prefill_s > 0) {
    double prefill_cpu = 0;
    throughput(*e, picker, 8192, 2, 4, st.prefill_s, &prefill_cpu);
    events_settled();
  }
  const uint64_t prefill_end = events ? e->events_stats().end_offset : 0;
  std::atomic<bool> stop{false};
  // Blocks of events stamped in [measure_from_ns, measure_to_ns] are sampled, whenever they
  // come (the subscriber reads on after the load until it has them all).
  std::atomic<uint64_t> measure_from_ns{UINT64_MAX}, measure_to_ns{UINT64_MAX};
  std::atomic<uint64_t> live_next{0};  // the first subscriber's next offset
  // The first subscriber's thread's (read after it is joined): each block's lag, and when it
  // came (s from the start of the load).
  std::vector<std::pair<double, double>> lag_ms;
  clk::time_point load_t0{};
  std::vector<std::atomic<uint64_t>> got(size_t(std::max(subscribers, 1)));
  std::vector<uint64_t> at_start(got.size()), at_end(got.size());
  std::vector<std::thread> subs;
  std::atomic<int> ready{0};
  for (int i = 0; i < subscribers; ++i)
    subs.emplace_back([&, i] {
      pthread_setname_np(pthread_self(), "bench.sub");
      wire::subscribe_msg m;
      m.from_end = true;
      m.batch_max = engine::subscription_batch_max;
      wire::subscribed_msg a;
      auto c = subscribed(co, m, &a);
      ready.fetch_add(1);
      uint64_t expect = a.start;  // the next offset: every event is read, in order
      const wire::event_visitor each = [&](std::span<const wire::event> block) {
        // (Events stamped before the load, such as the accounts' still on their way when it
        // subscribed, would count the time before it as lag.)
        if (i == 0 && !block.empty() && block.front().timestamp >= measure_from_ns.load(std::memory_order_acquire) &&
            block.front().timestamp <= measure_to_ns.load(std::memory_order_acquire))
          lag_ms.emplace_back(since(load_t0), double(int64_t(wall_ns() - block.front().timestamp)) / 1e6);
        for (const wire::event& ev : block) {
          if (ev.offset != expect) {
            std::fprintf(stderr, "events_bench: subscriber: offset %llu where %llu was due\n",
                         (unsigned long long)ev.offset, (unsigned long long)expect);
            std::exit(1);
          }
          ++expect;
        }
        got[size_t(i)].fetch_add(block.size(), std::memory_order_relaxed);
        if (i == 0) live_next.store(expect, std::memory_order_release);
      };
      read_until(*c, stop, each, [](uint64_t) {});
    });
  while (ready.load() < subscribers) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // Subscribers from the first event, filtered: each reads until it has reached the end of
  // the prefill's events, then on as the others.
  std::atomic<int> catching_ready{0};
  std::vector<std::atomic<double>> caught_up_s(size_t(st.catching_up));  // s from catch_t0; -1: not yet
  for (auto& t : caught_up_s) t.store(-1);
  const auto catch_t0 = clk::now();
  for (int i = 0; i < st.catching_up; ++i)
    subs.emplace_back([&, i] {
      pthread_setname_np(pthread_self(), "bench.catch");
      wire::subscribe_msg m;
      m.from = 1;
      for (uint64_t acct = 1; acct <= 8; ++acct) m.accounts.push_back(acct);
      m.batch_max = engine::subscription_batch_max;
      wire::subscribed_msg a;
      auto c = subscribed(co, m, &a);
      catching_ready.fetch_add(1);
      read_until(*c, stop, [](std::span<const wire::event>) {}, [&](uint64_t next) {
        if (caught_up_s[size_t(i)].load() < 0 && next >= prefill_end) caught_up_s[size_t(i)].store(since(catch_t0));
      });
    });
  while (catching_ready.load() < st.catching_up) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (size_t i = 0; i < got.size(); ++i) at_start[i] = got[i].load();
  const auto s0 = e->stats();
  // The engine's share: the process's CPU but the load's callers' and the subscribers'
  // (threads of the engine come and go, such as the id index's builder, so they are not
  // counted one by one; the subscribers live through the window).
  const double cpu0 = process_cpu_s(), subs0 = threads_cpu_s("bench.sub") + threads_cpu_s("bench.catch");
  engine::event_hub* hub = e->events();
  const uint64_t frames0 = hub ? hub->frames_sent() : 0, written0 = hub ? hub->frames_as_written() : 0;
  const uint64_t appended0 = e->events_stats().events_written;
  const double writer0 = threads_cpu_s("mesob.evwrite"), delivery0 = threads_cpu_s("mesob.evhub") + threads_cpu_s("mesob.net");
  const auto t0 = clk::now();
  double callers_cpu = 0;
  load_t0 = clk::now();
  measure_from_ns.store(wall_ns(), std::memory_order_release);
  const double tps = throughput(*e, picker, 8192, 2, 4, seconds, &callers_cpu);
  measure_to_ns.store(wall_ns(), std::memory_order_release);
  const double took = since(t0);
  const double cpu = process_cpu_s() - cpu0;
  const double subs_cpu = threads_cpu_s("bench.sub") + threads_cpu_s("bench.catch") - subs0;
  const double writer_cpu = threads_cpu_s("mesob.evwrite") - writer0;
  const uint64_t appended = e->events_stats().events_written - appended0;
  const double delivery_cpu = threads_cpu_s("mesob.evhub") + threads_cpu_s("mesob.net") - delivery0;
  const double engine_cpu = std::max(0.0, cpu - callers_cpu - subs_cpu);
  const auto s1 = e->stats();
  const uint64_t frames = hub ? hub->frames_sent() - frames0 : 0, written = hub ? hub->frames_as_written() - written0 : 0;
  for (size_t i = 0; i < got.size(); ++i) at_end[i] = got[i].load();
  const uint64_t produced = uint64_t(tps * took + 0.5);
  // The first subscriber gets every event of the load, and those catching up reach the end
  // of the prefill, before the run ends (10 s at most more).
  events_settled();
  const uint64_t load_end = events ? e->events_stats().end_offset : 0;
  const bool live_done = subscribers == 0 || wait_for([&] { return live_next.load() >= load_end; });
  const bool caught_up = wait_for([&] {
    return std::all_of(caught_up_s.begin(), caught_up_s.end(), [](const std::atomic<double>& t) { return t.load() >= 0; });
  });
  stop.store(true);
  for (auto& t : subs) t.join();
  if (!live_done || !caught_up || (subscribers > 0 && lag_ms.empty())) {
    std::fprintf(stderr, "events_bench: %s: %s\n", st.name,
                 !live_done ? "the first subscriber did not get the load's events in time after its end"
                 : !caught_up ? "a subscriber from the first event did not reach the prefill's end in time after the load's end"
                              : "no block of the load's events reached the first subscriber");
    std::exit(1);
  }
  run_result r;
  if (hub) r.file_events_pass_max = double(hub->file_events_pass_max());
  srv->stop();
  e->close();
  for (const auto& t : caught_up_s) r.catch_up_s = std::max(r.catch_up_s, t.load());
  if (!lag_ms.empty()) {
    std::vector<double> all, while_catching;
    // (catch_t0 came before load_t0 by the subscribes: the catch-up's end on the load's clock.)
    const double catching_until = r.catch_up_s - std::chrono::duration<double>(load_t0 - catch_t0).count();
    for (const auto& [at, lag] : lag_ms) {
      all.push_back(lag);
      if (at <= catching_until) while_catching.push_back(lag);
    }
    r.live_lag_p50_ms = percentile(all, 50);
    r.live_lag_p99_ms = percentile(all, 99);
    r.live_lag_max_ms = *std::max_element(all.begin(), all.end());
    if (!while_catching.empty()) r.live_lag_p99_ms_catching_up = percentile(while_catching, 99);
  }
  r.transfers_per_s = tps;
  if (s1.wal_groups > s0.wal_groups)
    r.group_ms = double(s1.wal_flight_ns - s0.wal_flight_ns) / double(s1.wal_groups - s0.wal_groups) / 1e6;
  r.cpu_us_per_transfer = tps > 0 ? cpu / (tps * took) * 1e6 : 0;
  r.engine_cpu_us_per_transfer = tps > 0 ? engine_cpu / (tps * took) * 1e6 : 0;
  r.subscribers_cpu_us_per_transfer = tps > 0 ? subs_cpu / (tps * took) * 1e6 : 0;
  if (subscribers > 0) {
    double lo = 1e300;
    uint64_t lag = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double eps = double(at_end[i] - at_start[i]) / took;
      lo = std::min(lo, eps);
      r.events_per_s_sum += eps;
      lag = std::max<uint64_t>(lag, produced > at_end[i] - at_start[i] ? produced - (at_end[i] - at_start[i]) : 0);
    }
    r.events_per_s_min = lo;
    r.lag_at_end = double(lag);
    const double delivered = r.events_per_s_sum * took;
    if (delivered > 0) {
      r.delivery_cpu_ns_per_event = delivery_cpu / delivered * 1e9;
      r.subscriber_cpu_ns_per_event = subs_cpu / delivered * 1e9;
      if (frames > 0) {
        r.events_per_frame = delivered / double(frames);
        r.frames_as_written = double(written) / double(frames);
      }
    }
  }
  if (appended > 0) r.writer_cpu_ns_per_event = writer_cpu / double(appended) * 1e9;
  std::filesystem::remove_all(dir);
  return r;
}

double median(std::vector<double> v) { return percentile(std::move(v), 50); }

}  // namespace

int main(int argc, char** argv) {
  std::string out = "perf/results/events.json", dir = "/tmp/mesob-events-bench";
  double seconds = 5, prefill_s = 4;
  uint64_t accounts = 100'000;
  int rounds = 3;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--out" && i + 1 < argc) out = argv[++i];
    else if (a == "--dir" && i + 1 < argc) dir = argv[++i];
    else if (a == "--seconds" && i + 1 < argc) seconds = std::strtod(argv[++i], nullptr);
    else if (a == "--accounts" && i + 1 < argc) accounts = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--rounds" && i + 1 < argc) rounds = std::atoi(argv[++i]);
    else if (a == "--prefill" && i + 1 < argc) prefill_s = std::strtod(argv[++i], nullptr);
    else if (a == "--only" && i + 1 < argc) only = argv[++i];  // one setting (profiling); no JSON
    else {
      std::fprintf(stderr, "usage: events_bench [--seconds S] [--accounts N] [--rounds R] [--prefill S] [--out FILE] [--dir DIR] [--only SETTING]\n");
      return 2;
    }
  }
  const setting settings[] = {{"off", false, 0},
                              {"on", true, 0},
                              {"1_subscriber", true, 1},
                              {"8_subscribers", true, 8},
                              {"live_alone", true, 1, 0, prefill_s},
                              {"live_4_catching_up", true, 1, 4, prefill_s}};
  std::map<std::string, std::vector<run_result>> results;
  for (int r = 0; r < rounds; ++r)
    for (const auto& s : settings) {
      if (!only.empty() && only != s.name) continue;
      const run_result x = run(dir, accounts, seconds, s);
      std::printf("round %d, %-14s %12.0f transfers/s (commit group %.2f ms, CPU %.2f us/transfer: engine %.2f, "
                  "subscribers %.2f)",
                  r + 1, s.name, x.transfers_per_s, x.group_ms, x.cpu_us_per_transfer, x.engine_cpu_us_per_transfer,
                  x.subscribers_cpu_us_per_transfer);
      if (s.events) std::printf(", writer %.1f ns/event", x.writer_cpu_ns_per_event);
      if (s.subscribers > 0)
        std::printf(", %10.0f events/s per subscriber (slowest), %10.0f in all, behind at the end %.0f", x.events_per_s_min,
                    x.events_per_s_sum, x.lag_at_end);
      // (Beside subscribers catching up, the hub's and subscribers' CPU and the frames are
      // theirs too: per event delivered to the live one they would mislead.)
      if (s.subscribers > 0 && s.catching_up == 0)
        std::printf("; a delivered event: hub and network %.1f ns, subscriber %.1f ns; %.0f events a frame, %.0f%% of "
                    "frames as written",
                    x.delivery_cpu_ns_per_event, x.subscriber_cpu_ns_per_event, x.events_per_frame,
                    100 * x.frames_as_written);
      if (s.subscribers > 0)
        std::printf("; the first subscriber's delivery lag p50 %.2f ms, p99 %.2f ms, max %.2f ms", x.live_lag_p50_ms,
                    x.live_lag_p99_ms, x.live_lag_max_ms);
      if (s.catching_up > 0)
        std::printf("; %d from the first event caught up in %.2f s (the first subscriber's p99 until then %.2f ms); the hub "
                    "read at most %.0f events from the files in a pass",
                    s.catching_up, x.catch_up_s, x.live_lag_p99_ms_catching_up, x.file_events_pass_max);
      std::printf("\n");
      std::fflush(stdout);
      results[s.name].push_back(x);
    }
  if (!only.empty()) return 0;
  auto med = [&](const char* name, double run_result::*f) {
    std::vector<double> v;
    for (const auto& x : results[name]) v.push_back(x.*f);
    return median(v);
  };
  const double off = med("off", &run_result::transfers_per_s);
  record("transfers_per_s_events_off", off);
  record("transfers_per_s_events_on", med("on", &run_result::transfers_per_s));
  record("transfers_per_s_1_subscriber", med("1_subscriber", &run_result::transfers_per_s));
  record("transfers_per_s_8_subscribers", med("8_subscribers", &run_result::transfers_per_s));
  record("events_per_s_1_subscriber", med("1_subscriber", &run_result::events_per_s_min));
  record("events_per_s_8_subscribers", med("8_subscribers", &run_result::events_per_s_min));
  record("events_per_s_8_subscribers_total", med("8_subscribers", &run_result::events_per_s_sum));
  record("throughput_loss_pct_events_on", 100.0 * (1.0 - med("on", &run_result::transfers_per_s) / off));
  record("throughput_loss_pct_1_subscriber", 100.0 * (1.0 - med("1_subscriber", &run_result::transfers_per_s) / off));
  record("throughput_loss_pct_8_subscribers", 100.0 * (1.0 - med("8_subscribers", &run_result::transfers_per_s) / off));
  record("subscriber_behind_at_end_8_subscribers", med("8_subscribers", &run_result::lag_at_end));
  // Where the CPU goes: the engine's threads, and the subscribers' (in this process, on
  // the same two cores) per transfer.
  for (const char* s : {"off", "on", "1_subscriber", "8_subscribers"})
    record(std::string("engine_cpu_us_per_transfer_") + (std::strcmp(s, "off") == 0 ? "events_off"
                                                         : std::strcmp(s, "on") == 0 ? "events_on" : s),
           med(s, &run_result::engine_cpu_us_per_transfer));
  record("subscribers_cpu_us_per_transfer_8_subscribers", med("8_subscribers", &run_result::subscribers_cpu_us_per_transfer));
  record("writer_cpu_ns_per_event", med("on", &run_result::writer_cpu_ns_per_event));
  for (const char* s : {"1_subscriber", "8_subscribers"}) {
    record(std::string("delivery_cpu_ns_per_event_") + s, med(s, &run_result::delivery_cpu_ns_per_event));
    record(std::string("subscriber_cpu_ns_per_event_") + s, med(s, &run_result::subscriber_cpu_ns_per_event));
  }
  for (const char* s : {"1_subscriber", "live_alone", "live_4_catching_up"}) {
    record(std::string("live_lag_p50_ms_") + s, med(s, &run_result::live_lag_p50_ms));
    record(std::string("live_lag_p99_ms_") + s, med(s, &run_result::live_lag_p99_ms));
    record(std::string("live_lag_max_ms_") + s, med(s, &run_result::live_lag_max_ms));
  }
  // Only where every run had blocks before the four caught up (else the figure is not there).
  if (std::all_of(results["live_4_catching_up"].begin(), results["live_4_catching_up"].end(),
                  [](const run_result& x) { return x.live_lag_p99_ms_catching_up >= 0; }))
    record("live_lag_p99_ms_while_4_catch_up", med("live_4_catching_up", &run_result::live_lag_p99_ms_catching_up));
  record("transfers_per_s_live_alone", med("live_alone", &run_result::transfers_per_s));
  record("transfers_per_s_live_4_catching_up", med("live_4_catching_up", &run_result::transfers_per_s));
  record("catch_up_s_4_catching_up", med("live_4_catching_up", &run_result::catch_up_s));
  record("hub_file_events_pass_max_4_catching_up", med("live_4_catching_up", &run_result::file_events_pass_max));
  write_json(out);
  return 0;
}
