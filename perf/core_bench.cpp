// core_bench: the engine core's figures, embedded (no network), durable (fdatasync on).
//
//   core_bench [--quick] [--out FILE] [--dir DIR]
//
// Prints a table and writes FILE as one JSON object of metric name -> number.
// Measures: transfers/s for batch sizes 1 (64 callers), 128 and 8,192 on 1 and 2 shards
// with 10% and 50% of transfers crossing shards, over 1,000,000 accounts; the disk's
// fdatasync rate; log replay rate and restart time with 1M accounts and 10M logged
// transfers; resident memory per account and after 50M transfers; what two-phase history
// (4M pending transfers, each posted) leaves resident; restart time with 1M open pending
// transfers older than the resident window. --quick shrinks every
// size (for a smoke run), and the JSON then says so.
#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "actors/shard.hpp"
#include "engine/engine.hpp"
#include "perf/bench_common.hpp"

using namespace mesob;
using namespace mesob::bench;

namespace {

struct options {
  bool quick = false;
  std::string out = "perf/results/core.json";
  std::string dir = "/tmp/mesob-bench";
  uint64_t accounts = 1'000'000;
  double seconds = 3.0;
  uint64_t replay_transfers = 10'000'000;
  uint64_t memory_transfers = 50'000'000;
  std::string only;  // run one section: fsync, accounts, throughput, callers, replay, memory, twophase, holds
  bool append = false;  // keep the metrics already in `out` (sections run one per process)
  uint32_t shards_only = 0;  // throughput: run only this shard count (0: 1 and 2)
  bool keep = false;    // leave the data directory behind (to profile `--only restart` on it)
  bool run(const char* section) const { return only.empty() || only == section; }
};

std::unique_ptr<engine::engine> open_engine(const options& o, uint32_t shards, bool fresh,
                                            bool checkpoint_on_close = true) {
  return bench::open_engine(o.dir, shards, o.accounts, fresh, checkpoint_on_close);
}

// `callers` logical callers, each with one single-transfer request outstanding: a caller
// submits its next request from the previous one's completion. Two threads start them.
// Measures the engine, not the OS scheduler juggling 64 blocked threads on 2 cores.
double throughput_callers(engine::engine& e, const pair_picker& p, uint32_t callers, double seconds) {
  std::atomic<uint64_t> done{0};
  std::atomic<bool> stop{false};
  std::atomic<uint32_t> live{0};
  std::mutex mu;
  std::condition_variable cv;
  struct caller {
    std::mt19937_64 rng;
  };
  std::vector<caller> cs(callers);
  for (uint32_t i = 0; i < callers; ++i) cs[i].rng.seed(i * 31 + 5);
  std::function<void(uint32_t)> go = [&](uint32_t i) {
    engine::request r;
    r.kind = engine::op_kind::create_transfers;
    r.transfers = make_batch(p, cs[i].rng, 1);
    e.submit(std::move(r), [&, i](engine::reply&& rep) {
      if (!rep.results.empty() && rep.results[0] == wire::result::ok)
        done.fetch_add(1, std::memory_order_relaxed);
      if (!stop.load(std::memory_order_relaxed)) {
        go(i);
        return;
      }
      std::lock_guard lk(mu);
      if (--live == 0) cv.notify_all();
    });
  };
  const auto t0 = clk::now();
  live = callers;
  for (uint32_t i = 0; i < callers; ++i) go(i);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true);
  const double rate = double(done.load()) / since(t0);
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return live.load() == 0; });
  return rate;
}


}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") o.quick = true;
    else if (a == "--out" && i + 1 < argc) o.out = argv[++i];
    else if (a == "--dir" && i + 1 < argc) o.dir = argv[++i];
    else if (a == "--only" && i + 1 < argc) o.only = argv[++i];
    else if (a == "--append") o.append = true;
    else if (a == "--keep") o.keep = true;
    else if (a == "--wal-flights" && i + 1 < argc) bench::wal_flights = uint32_t(std::strtoul(argv[++i], nullptr, 10));
    else if (a == "--shards" && i + 1 < argc) o.shards_only = uint32_t(std::strtoul(argv[++i], nullptr, 10));
    else if (a == "--memory-transfers" && i + 1 < argc) o.memory_transfers = std::strtoull(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: core_bench [--quick] [--out FILE] [--dir DIR] [--only SECTION] [--append] [--keep] [--shards N] [--wal-flights N]\n");
      return 2;
    }
  }
  if (o.quick) {
    o.accounts = 20'000;
    o.seconds = 0.5;
    o.replay_transfers = 200'000;
    o.memory_transfers = 500'000;
  }
  if (o.append) read_json(o.out);
  std::printf("%-48s %16s\n", "metric", "value");
  record("quick_mode", o.quick ? 1 : 0);
  record("cores", std::thread::hardware_concurrency());
  if (o.run("fsync")) {
    fdatasync_prober probe(o.dir + "-probe", "core_bench");
    const auto f = probe.run(o.quick ? 0.5 : 3.0);
    record("fdatasync_per_s", f.per_s);
    record("fdatasync_p99_us", percentile(f.latencies_us, 99));
    // The machine beside sustained commits: stops of a core the one-at-a-time latency
    // above does not show (a stop holds one commit of thousands). Each of the first and
    // the last core watched in turn; the worst is the headline.
    std::vector<int> watch = usable_cores();
    if (watch.size() < 2) watch.clear();  // no core of its own for the watcher
    if (watch.size() > 2) watch.erase(watch.begin() + 1, watch.end() - 1);
    double worst_stalls = 0, worst_ms = 0;
    for (const int c : watch) {
      const auto fs = probe.run(o.quick ? 0.5 : 3.0, 1, 0, c);
      record("fdatasync_vm_stalls_over_3ms_per_s_cpu" + std::to_string(c), fs.stalls_over_3ms_per_s);
      record("fdatasync_vm_stalled_ms_per_s_cpu" + std::to_string(c), fs.stalled_ms_per_s);
      worst_stalls = std::max(worst_stalls, fs.stalls_over_3ms_per_s);
      worst_ms = std::max(worst_ms, fs.stalled_ms_per_s);
    }
    record("fdatasync_vm_cores_watched", double(watch.size()));  // 0 on one core: the two below mean nothing
    record("fdatasync_vm_stalls_over_3ms_per_s", worst_stalls);
    record("fdatasync_vm_stalled_ms_per_s", worst_ms);
    // With several commits in flight at once (the log keeps one group in flight today):
    // what pipelining commit groups could gain on this disk.
    for (const uint32_t depth : {2u, 4u}) {
      const auto fd = probe.run(o.quick ? 0.5 : 3.0, depth);
      record("fdatasync_per_s_depth" + std::to_string(depth), fd.per_s);
      record("fdatasync_p99_us_depth" + std::to_string(depth), percentile(fd.latencies_us, 99));
    }
  }

  // Memory per account: 1M accounts, RSS growth over the empty engine.
  if (o.run("accounts")) {
    const uint64_t base = rss_bytes();
    auto e = open_engine(o, 2, true);
    const uint64_t opened = rss_bytes();
    create_accounts(*e, o.accounts);
    const uint64_t after = rss_bytes();
    record("rss_bytes_per_account_1m", double(after - opened) / double(o.accounts));
    record("rss_bytes_engine_empty", double(opened - base));
  }

  for (uint32_t shards : {1u, 2u}) {
    if (!o.run("throughput") && o.only != "callers") break;
    if (o.shards_only != 0 && shards != o.shards_only) continue;
    auto e = open_engine(o, shards, true);
    create_accounts(*e, o.accounts);
    for (uint32_t cross : shards == 1 ? std::vector<uint32_t>{0} : std::vector<uint32_t>{10, 50}) {
      pair_picker p(o.accounts, shards, cross);
      const std::string tag = "_shards" + std::to_string(shards) + "_cross" + std::to_string(cross);
      if (o.only != "callers") {
        record("transfers_per_s_batch8192" + tag, throughput(*e, p, 8192, 2, 4, o.seconds));
        record("batch_latency_p99_ms_batch8192" + tag, percentile(batch_latencies_ms, 99));
        record("transfers_per_s_batch128" + tag, throughput(*e, p, 128, 4, 16, o.seconds));
      }
      const auto s0 = e->stats();
      const auto t0 = clk::now();
      const double cpu0 = process_cpu_s();
      const double rate = throughput_callers(*e, p, 64, o.seconds);
      record("transfers_per_s_batch1_callers64" + tag, rate);
      const auto s1 = e->stats();
      const double secs = since(t0);
      // CPU of every thread per transfer: on 2 cores, 2 s / this is the engine's ceiling.
      record("cpu_us_per_transfer_batch1_callers64" + tag, (process_cpu_s() - cpu0) * 1e6 / (rate * secs));
      record("commit_groups_per_s_batch1_callers64" + tag, double(s1.wal_groups - s0.wal_groups) / secs);
      // Share of the time a group was in flight (write + fdatasync): 1.0 means the log
      // device never waited for the engine.
      record("log_busy_share_batch1_callers64" + tag, double(s1.wal_flight_ns - s0.wal_flight_ns) / 1e9 / secs);
    }
    if (o.only == "callers") continue;
    // A full checkpoint after the runs: every account dirty, 1M accounts.
    std::string err;
    const auto c0 = clk::now();
    e->checkpoint(&err);
    record("checkpoint_s_1m_accounts_shards" + std::to_string(shards), since(c0));
    record("checkpoint_pause_ms_max_1m_accounts_shards" + std::to_string(shards),
           double(e->stats().checkpoint_pause_us_max) / 1000.0);
  }
  if (o.run("throughput")) {
    metrics["transfers_per_s_batch8192_shards1"] = metrics["transfers_per_s_batch8192_shards1_cross0"];
    metrics["transfers_per_s_batch8192_shards2"] = metrics["transfers_per_s_batch8192_shards2_cross10"];
    metrics["transfers_per_s_batch1_callers64"] = metrics["transfers_per_s_batch1_callers64_shards2_cross10"];
  }

  // Replay and restart: 1M accounts in a snapshot, then N transfers only in the log.
  if (o.run("replay")) {
    auto e = open_engine(o, 2, true, false);
    create_accounts(*e, o.accounts);
    std::string err;
    e->checkpoint(&err);
    pair_picker p(o.accounts, 2, 10);
    std::mt19937_64 rng(42);
    const uint64_t start = next_id.load();
    while (next_id.load() - start < o.replay_transfers) {
      std::vector<std::thread> ts;
      for (int c = 0; c < 2; ++c)
        ts.emplace_back([&, c] {
          std::mt19937_64 r2(rng() + uint64_t(c));
          for (int k = 0; k < 8; ++k) e->create_transfers(make_batch(p, r2, 8192));
        });
      for (auto& t : ts) t.join();
    }
    e->close();  // no final snapshot: the transfers stay in the log
    e.reset();
    if (o.keep) {  // the restart below snapshots; keep the logged state for `--only restart`
      std::filesystem::remove_all(o.dir + "-logged");
      std::filesystem::copy(o.dir, o.dir + "-logged", std::filesystem::copy_options::recursive);
    }
    const auto t0 = clk::now();
    e = open_engine(o, 2, false);
    const double restart = since(t0);
    const auto& rec = e->recovery();
    record("restart_s_1m_accounts_10m_transfers", restart);
    record("replay_records_per_s", double(rec.operations_replayed) / rec.replay_seconds);
    record("replay_log_records", double(rec.records_replayed));
    record("replay_operations", double(rec.operations_replayed));
  }

  // Restart alone, on a directory left by `--only replay --keep` (for profiling recovery).
  if (o.only == "restart") {
    const auto t0 = clk::now();
    auto e = open_engine(o, o.shards_only != 0 ? o.shards_only : 2, false, false);
    const auto& rec = e->recovery();
    record("restart_s", since(t0));
    record("replay_records_per_s", double(rec.operations_replayed) / rec.replay_seconds);
    record("replay_s", rec.replay_seconds);
    record("replay_reader_wait_s", rec.replay_reader_wait_seconds);
    record("replay_shard_wait_s", rec.replay_shard_wait_seconds);
    record("replay_sequencer_cpu_ns_per_op", rec.replay_sequencer_cpu_seconds * 1e9 / double(rec.operations_replayed));
    record("replay_cpu_ns_per_op", rec.replay_process_cpu_seconds * 1e9 / double(rec.operations_replayed));
    e->close();
    return 0;
  }

  // Resident memory after many logged transfers, with 1M accounts.
  if (o.run("memory")) {
    auto e = open_engine(o, 2, true);
    create_accounts(*e, o.accounts);
    pair_picker p(o.accounts, 2, 10);
    const uint64_t start = next_id.load();
    std::mt19937_64 rng(7);
    std::vector<std::thread> ts;
    std::atomic<uint64_t> made{0};
    for (int c = 0; c < 2; ++c)
      ts.emplace_back([&, c] {
        std::mt19937_64 r2(uint64_t(c) + 99);
        while (made.fetch_add(8192) < o.memory_transfers) e->create_transfers(make_batch(p, r2, 8192));
      });
    for (auto& t : ts) t.join();
    record("rss_bytes_50m_transfers", double(rss_bytes()));
    record("transfers_logged_for_rss", double(next_id.load() - start));
  }
  // Two-phase history: every pending transfer posted by the next batch, checkpoints
  // along the way. Resolved entries leave memory once a snapshot holds them, so what
  // stays resident is the unresolved ones, not the history.
  if (o.run("twophase")) {
    auto e = open_engine(o, 2, true);
    create_accounts(*e, o.accounts);
    pair_picker p(o.accounts, 2, 10);
    std::mt19937_64 rng(11);
    const uint64_t pairs = o.quick ? 200'000 : 4'000'000;
    const double rss0 = double(rss_bytes());
    uint64_t made = 0, ok = 0;
    std::string err;
    const auto t0 = clk::now();
    while (made < pairs) {
      auto pend = make_batch(p, rng, 4096);
      for (auto& t : pend) t.flags = wire::transfer_flags::pending;
      std::vector<wire::transfer> post(pend.size());
      const uint64_t first = next_id.fetch_add(post.size());
      for (size_t i = 0; i < post.size(); ++i) {
        post[i].id = {first + i, 0x6d65736f62};
        post[i].pending_id = pend[i].id;
        post[i].flags = wire::transfer_flags::post_pending;
      }
      for (auto r : e->create_transfers(pend).results) ok += r == wire::result::ok;
      for (auto r : e->create_transfers(post).results) ok += r == wire::result::ok;
      made += pend.size();
      if (made % (pairs / 8) < 4096 && !e->checkpoint(&err)) {
        std::fprintf(stderr, "core_bench: checkpoint failed: %s\n", err.c_str());
        return 1;
      }
    }
    const double secs = since(t0);
    if (!e->checkpoint(&err) || !e->checkpoint(&err)) {
      std::fprintf(stderr, "core_bench: checkpoint failed: %s\n", err.c_str());
      return 1;
    }
    record("twophase_pairs", double(made));
    record("twophase_ok_share", double(ok) / double(2 * made));
    record("twophase_transfers_per_s", double(2 * made) / secs);
    record("twophase_pending_resident_after", double(e->stats().pending_tracked));
    record("twophase_rss_growth_bytes", double(rss_bytes()) - rss0);
  }
  // Open pending transfers older than the resident window: a start checks each against
  // its transfer record, which it reads from the snapshot (engine/README.md, Recovery).
  // 1M holds that never expire, then more transfers than the window keeps, a snapshot
  // at close, and the start after it.
  if (o.run("holds")) {
    auto e = open_engine(o, 2, true);
    create_accounts(*e, o.accounts);
    pair_picker p(o.accounts, 2, 10);
    std::mt19937_64 rng(13);
    const uint64_t holds = o.quick ? 100'000 : 1'000'000;
    const uint64_t window = engine::config{}.transfers_resident_max;
    uint64_t held = 0;
    for (uint64_t made = 0; made < holds; made += 8192) {
      auto pend = make_batch(p, rng, 8192);
      for (auto& t : pend) t.flags = wire::transfer_flags::pending;
      for (auto r : e->create_transfers(pend).results) held += r == wire::result::ok;
    }
    for (uint64_t made = 0; made < window + 65'536; made += 8192) e->create_transfers(make_batch(p, rng, 8192));
    e->close();
    e.reset();
    const auto t0 = clk::now();
    e = open_engine(o, 2, false);
    record("restart_s_1m_old_holds", since(t0));
    record("old_holds_loaded", double(e->recovery().pending_loaded));
    record("old_holds_made", double(held));
  }
  write_json(o.out);
  if (!o.keep) std::filesystem::remove_all(o.dir);
  return 0;
}
