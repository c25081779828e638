// Pieces shared by the benchmark programs (core_bench, wire_bench): timing, resident
// memory, the metrics table and its JSON file, an engine on a scratch directory,
// accounts, account pairs crossing shards, transfer batches, the disk probe.
#pragma once

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "actors/shard.hpp"
#include "engine/engine.hpp"
#include "engine/server.hpp"
#include "wire/client.hpp"

namespace mesob::bench {

using clk = std::chrono::steady_clock;

inline uint64_t rss_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long long pages = 0, resident = 0;
  if (f) {
    if (std::fscanf(f, "%llu %llu", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * uint64_t(sysconf(_SC_PAGESIZE));
}

inline double since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

inline std::map<std::string, double> metrics;
inline void record(const std::string& name, double v) {
  metrics[name] = v;
  std::printf("%-48s %16.1f\n", name.c_str(), v);
  std::fflush(stdout);
}

// Reads back a file written by write_json (one "name": number per line).
inline void read_json(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return;
  char line[512];
  while (std::fgets(line, sizeof line, f)) {
    char name[256];
    double v = 0;
    if (std::sscanf(line, " \"%255[^\"]\": %lf", name, &v) == 2) metrics[name] = v;
  }
  std::fclose(f);
}

inline void write_json(const std::string& out) {
  std::filesystem::create_directories(std::filesystem::path(out).parent_path());
  FILE* f = std::fopen(out.c_str(), "w");
  if (!f) return;
  std::fprintf(f, "{\n");
  size_t i = 0;
  for (auto& [k, v] : metrics)
    std::fprintf(f, "  \"%s\": %.3f%s\n", k.c_str(), v, ++i < metrics.size() ? "," : "");
  std::fprintf(f, "}\n");
  std::fclose(f);
  std::printf("wrote %s\n", out.c_str());
}

// Percentile (0..100) of a set of samples.
inline double percentile(std::vector<double> v, double pct) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, size_t(pct / 100.0 * double(v.size())));
  return v[i];
}

// An engine on a scratch directory (wiped when `fresh`), durable, no periodic snapshots.
// Commit groups in flight for engines the benchmarks open (0: the engine's default).
inline uint32_t wal_flights = 0;

inline std::unique_ptr<engine::engine> open_engine(const std::string& dir, uint32_t shards, uint64_t accounts,
                                                   bool fresh, bool checkpoint_on_close = true) {
  if (fresh) std::filesystem::remove_all(dir);
  engine::config cfg;
  cfg.data_dir = dir;
  cfg.shards = shards;
  // The load generator shares the two cores; MESOB_BENCH_PIN=1 pins shards anyway.
  cfg.pin_shards = std::getenv("MESOB_BENCH_PIN") != nullptr;
  if (wal_flights != 0) cfg.wal_flights = wal_flights;
  cfg.checkpoint_interval_ms = 0;
  cfg.accounts_hint = accounts / shards + 1024;
  cfg.checkpoint_on_close = checkpoint_on_close;
  std::string err;
  auto e = engine::engine::open(cfg, &err);
  if (!e) {
    std::fprintf(stderr, "bench: %s\n", err.c_str());
    std::exit(1);
  }
  return e;
}

inline void create_accounts(engine::engine& e, uint64_t n) {
  for (uint64_t first = 1; first <= n; first += 8192) {
    std::vector<wire::account> batch;
    for (uint64_t id = first; id < std::min(n + 1, first + 8192); ++id) {
      wire::account a;
      a.id = id;
      a.currency = wire::currency("ETB");
      a.kind = wire::account_kind::customer_wallet;
      batch.push_back(a);
    }
    e.create_accounts(std::move(batch));
  }
}

// Chooses account pairs with a given share crossing shards.
struct pair_picker {
  std::vector<std::vector<uint64_t>> by_shard;
  uint32_t shards;
  uint32_t cross_pct;
  pair_picker(uint64_t accounts, uint32_t s, uint32_t pct) : by_shard(s), shards(s), cross_pct(pct) {
    for (uint64_t id = 1; id <= accounts; ++id) by_shard[actors::shard_of(id, s)].push_back(id);
  }
  std::pair<uint64_t, uint64_t> pick(std::mt19937_64& rng) const {
    const uint32_t sd = uint32_t(rng() % shards);
    uint32_t sc = sd;
    if (shards > 1 && rng() % 100 < cross_pct) sc = (sd + 1 + uint32_t(rng() % (shards - 1))) % shards;
    const auto& a = by_shard[sd];
    const auto& b = by_shard[sc];
    uint64_t dr = a[rng() % a.size()], cr = b[rng() % b.size()];
    while (cr == dr) cr = b[rng() % b.size()];
    return {dr, cr};
  }
};

inline std::atomic<uint64_t> next_id{1};

inline std::vector<wire::transfer> make_batch(const pair_picker& p, std::mt19937_64& rng, uint32_t n) {
  std::vector<wire::transfer> b(n);
  const uint64_t first = next_id.fetch_add(n);
  for (uint32_t i = 0; i < n; ++i) {
    auto [dr, cr] = p.pick(rng);
    b[i].id = {first + i, 0x6d65736f62};
    b[i].debit_account_id = dr;
    b[i].credit_account_id = cr;
    b[i].amount = 1 + rng() % 1000;
    b[i].currency = wire::currency("ETB");
  }
  return b;
}

// Pipelined: `callers` threads each keep `depth` batches in flight for `seconds`.
// Each batch's time from submit to reply, ms (the last throughput() run's).
inline std::vector<double> batch_latencies_ms;

// `callers_cpu_s`: if given, the CPU seconds the callers' threads took.
inline double throughput(engine::engine& e, const pair_picker& p, uint32_t batch, uint32_t callers,
                  uint32_t depth, double seconds, double* callers_cpu_s = nullptr) {
  std::atomic<uint64_t> callers_cpu_us{0};
  std::mutex lat_mu;
  batch_latencies_ms.clear();
  std::atomic<uint64_t> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  const auto t0 = clk::now();
  for (uint32_t c = 0; c < callers; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937_64 rng(c * 7919 + batch);
      std::mutex mu;
      std::condition_variable cv;
      uint32_t in_flight = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        {
          std::unique_lock lk(mu);
          cv.wait(lk, [&] { return in_flight < depth; });
          ++in_flight;
        }
        engine::request r;
        r.kind = engine::op_kind::create_transfers;
        r.transfers = make_batch(p, rng, batch);
        const auto sent = clk::now();
        e.submit(std::move(r), [&, sent](engine::reply&& rep) {
          {
            std::lock_guard lk(lat_mu);
            batch_latencies_ms.push_back(since(sent) * 1e3);
          }
          uint64_t ok = 0;
          for (auto x : rep.results) ok += x == wire::result::ok;
          done.fetch_add(ok, std::memory_order_relaxed);
          std::lock_guard lk(mu);
          --in_flight;
          cv.notify_all();
        });
      }
      std::unique_lock lk(mu);
      cv.wait(lk, [&] { return in_flight == 0; });
      rusage u{};
      ::getrusage(RUSAGE_THREAD, &u);
      callers_cpu_us.fetch_add(uint64_t(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1'000'000 +
                               uint64_t(u.ru_utime.tv_usec + u.ru_stime.tv_usec));
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true);
  for (auto& t : threads) t.join();
  if (callers_cpu_s) *callers_cpu_s = double(callers_cpu_us.load()) / 1e6;
  return double(done.load()) / since(t0);
}

// The disk's durable-commit figures (fdatasync_prober below).
struct fdatasync_figures {
  double per_s = 0;
  std::vector<double> latencies_us;  // one per commit
  // With run(..., watch_cpu): a thread spinning on the clock on that core beside the
  // commits saw it stop this often without being switched out (the core stopped:
  // perf/RESULTS.md, 2026-12-06, seventieth session), a second; and for how long, ms a
  // second.
  double stalls_over_3ms_per_s = 0;
  double stalled_ms_per_s = 0;  // the stops over 1 ms, summed
};
// The cores this thread may run on, in order (its affinity; empty if it cannot be read).
inline std::vector<int> usable_cores() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  std::vector<int> out;
  if (::sched_getaffinity(0, sizeof allowed, &allowed) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &allowed)) out.push_back(c);
  return out;
}
// CPU time used by the whole process so far (every thread, user and system), seconds.
inline double process_cpu_s() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// CPU seconds of this process's live threads whose names start with `prefix`
// (/proc/self/task/*: comm and stat's utime + stime). Threads gone are not counted.
inline double threads_cpu_s(const std::string& prefix) {
  const double tick = double(::sysconf(_SC_CLK_TCK));
  double sum = 0;
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    char comm[64] = {};
    if (FILE* f = std::fopen((t.path() / "comm").c_str(), "r")) {
      if (!std::fgets(comm, sizeof comm, f)) comm[0] = 0;
      std::fclose(f);
    }
    if (std::strncmp(comm, prefix.c_str(), prefix.size()) != 0) continue;
    char stat[1024] = {};
    if (FILE* f = std::fopen((t.path() / "stat").c_str(), "r")) {
      if (!std::fgets(stat, sizeof stat, f)) stat[0] = 0;
      std::fclose(f);
    }
    // Fields after the name (which ends at the last ')'): state is the 3rd, utime the 14th.
    const char* p = std::strrchr(stat, ')');
    unsigned long long ut = 0, st = 0;
    if (p && std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
      sum += double(ut + st) / tick;
  }
  return sum;
}

// The disk's commit latency: a 4 KiB O_DIRECT pwrite then fdatasync, one at a time on
// each of `depth` threads (each on its own blocks, as the log with that many commit
// groups in flight). One 64 MiB file, written in full first, serves every probe of a
// bench (the timed writes never grow it) and is deleted only with the prober: deleting
// one between rounds freed 64 MiB, which ext4 mounted with `discard` hands to the device
// at its next journal commit, and the flushes measured then (the engine's too) waited
// behind it for 100-150 ms. A failed write or fdatasync ends the bench with a message
// naming `bench` (a figure of zero would read as a measurement).
class fdatasync_prober {
 public:
  fdatasync_prober(const std::string& dir, std::string bench)
      : path_(dir + "/fdatasync.probe"), bench_(std::move(bench)) {
    std::filesystem::create_directories(dir);
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0644);
    if (fd_ < 0 || posix_memalign(&buf_, 4096, 4096) != 0) return;
    std::memset(buf_, 0xab, 4096);
    for (uint64_t off = 0; off < blocks * 4096; off += 4096)
      if (::pwrite(fd_, buf_, 4096, off_t(off)) != 4096) return;
    ok_ = ::fsync(fd_) == 0;
  }
  fdatasync_prober(const fdatasync_prober&) = delete;
  fdatasync_prober& operator=(const fdatasync_prober&) = delete;
  ~fdatasync_prober() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
    std::free(buf_);
  }

  // Commits for `seconds`; `gap_us` > 0: each issued that long after its thread's last
  // one completed (an isolated commit, as a lone request on an idle engine makes).
  // `watch_cpu` >= 0 (one of two or more cores this process may use): a thread spins on
  // the clock on that core meanwhile, the commits on the others, and counts
  // the gaps in which it ran on without a context switch (figures of such a run are for
  // the stalls, not the latency). On this project's VM the cores do not stop alike
  // (RESULTS.md, 2026-12-06), so callers watch each in turn.
  fdatasync_figures run(double seconds, uint32_t depth = 1, double gap_us = 0, int watch_cpu = -1) {
    fdatasync_figures out;
    if (!ok_) fail("the probe's file could not be prepared: " + path_);
    std::vector<std::vector<double>> lat(depth);
    std::vector<std::string> errors(depth);
    std::atomic<bool> failed{false};
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    const bool watch_stalls = watch_cpu >= 0;
    const bool pin = watch_stalls && ::sched_getaffinity(0, sizeof allowed, &allowed) == 0 &&
                     CPU_COUNT(&allowed) >= 2 && watch_cpu < CPU_SETSIZE && CPU_ISSET(watch_cpu, &allowed);
    if (watch_stalls && !pin) fail("core " + std::to_string(watch_cpu) + " is not one of two or more this process may use");
    const auto cpus = [&](bool watcher_side) {
      cpu_set_t set;
      CPU_ZERO(&set);
      for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &allowed) && (c == watch_cpu) == watcher_side) CPU_SET(c, &set);
      return set;
    };
    uint64_t stalls_over_3ms = 0, stalled_us = 0;
    std::atomic<bool> unpinned{false};  // a core could not be set: the figures would mislead
    std::thread watcher;
    if (watch_stalls)
      watcher = std::thread([&, mine = cpus(true)] {
        if (::pthread_setaffinity_np(::pthread_self(), sizeof mine, &mine) != 0) {
          unpinned = true;
          return;
        }
        const auto switches = [] {
          rusage u{};
          ::getrusage(RUSAGE_THREAD, &u);
          return u.ru_nvcsw + u.ru_nivcsw;
        };
        auto last_switches = switches();
        const auto until = clk::now() + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(seconds));
        for (auto prev = clk::now(); prev < until;) {
          const auto us = std::chrono::duration_cast<std::chrono::microseconds>(clk::now() - prev).count();
          if (us > 1000) {
            const auto sw = switches();
            if (sw == last_switches) {  // not the scheduler's doing
              stalled_us += uint64_t(us);
              stalls_over_3ms += us > 3000;
            }
            last_switches = sw;
          }
          prev = clk::now();
        }
      });
    if (pin) {
      const cpu_set_t theirs = cpus(false);
      if (::pthread_setaffinity_np(::pthread_self(), sizeof theirs, &theirs) != 0)  // the commit threads inherit it
        unpinned = true;
    }
    const auto t0 = clk::now();
    std::vector<std::thread> threads;
    for (uint32_t t = 0; t < depth; ++t)
      threads.emplace_back([&, t] {
        for (uint64_t n = 0; since(t0) < seconds && !failed.load(std::memory_order_relaxed); ++n) {
          const off_t off = off_t(((next_ + n * depth + t) % blocks) * 4096);
          const auto s = clk::now();
          const bool written = ::pwrite(fd_, buf_, 4096, off) == 4096;
          if (!written || ::fdatasync(fd_) != 0) {
            errors[t] = std::string(written ? "fdatasync " : "pwrite ") + path_ + ": " + std::strerror(errno);
            failed = true;
            return;
          }
          lat[t].push_back(since(s) * 1e6);
          if (gap_us > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::micro>(gap_us));
        }
      });
    for (auto& th : threads) th.join();
    const double took = since(t0);
    if (pin) ::pthread_setaffinity_np(::pthread_self(), sizeof allowed, &allowed);
    if (watcher.joinable()) {
      watcher.join();
      if (unpinned) fail("the stall watcher and the commits could not be put on cores of their own");
      out.stalls_over_3ms_per_s = double(stalls_over_3ms) / took;
      out.stalled_ms_per_s = double(stalled_us) / 1000.0 / took;
    }
    for (auto& e : errors)
      if (!e.empty()) fail(e);
    size_t most = 0;
    for (auto& l : lat) {
      out.latencies_us.insert(out.latencies_us.end(), l.begin(), l.end());
      most = std::max(most, l.size());
    }
    next_ += (most + 1) * depth;  // the next run starts past every block this one wrote
    out.per_s = double(out.latencies_us.size()) / took;
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "%s: fdatasync probe: %s\n", bench_.c_str(), what.c_str());
    ::unlink(path_.c_str());
    std::exit(1);
  }

  static constexpr uint64_t blocks = 16384;  // 64 MiB
  std::string path_, bench_;
  int fd_ = -1;
  void* buf_ = nullptr;
  bool ok_ = false;
  uint64_t next_ = 0;  // where the next run's writes start
};

// The engine's server on a loopback port with one payments gateway ("bench"), and the
// options its clients connect with. Exits with a message when it cannot start.
struct loopback_server {
  std::unique_ptr<engine::server> srv;
  wire::client::options client;
};
inline loopback_server start_loopback_server(engine::engine& e, const char* program) {
  engine::server_config sc;
  sc.port = 0;
  sc.gateways = {{"bench", std::vector<uint8_t>(32, 0x5a), wire::roles::payments}};
  std::string err;
  loopback_server out;
  out.srv = engine::server::start(e, sc, &err);
  if (!out.srv) {
    std::fprintf(stderr, "%s: %s\n", program, err.c_str());
    std::exit(1);
  }
  out.client.port = out.srv->port();
  out.client.gateway = "bench";
  out.client.secret = sc.gateways[0].secret;
  return out;
}

}  // namespace mesob::bench
