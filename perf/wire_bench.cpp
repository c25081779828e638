// wire_bench: the network protocol's figures, beside the machine's own in the same run.
//
//   wire_bench [--quick] [--only single] [--out FILE] [--dir DIR] [--depth N]
//
// One engine (one shard per core, 1,000,000 accounts, durable) serves both an embedded
// load and the same load over TCP through the server on loopback, so the ratio of the
// two is measured in one run. Also: single-transfer round trips on an idle engine
// (p50, p99) beside the loopback TCP round trip and the disk's fdatasync latency.
// Writes FILE as one JSON object of metric name -> number.
#include <algorithm>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "engine/server.hpp"
#include "perf/bench_common.hpp"
#include "wire/client.hpp"

using namespace mesob;
using namespace mesob::bench;

namespace {

// TCP echo of 64-byte messages between two threads on loopback: the machine's RTT.
std::vector<double> loopback_rtts(int rounds) {
  std::vector<double> out;
  const int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(ls, 1) != 0) return out;
  ::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len);
  std::thread echo([ls] {
    const int c = ::accept(ls, nullptr, nullptr);
    int one = 1;
    ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[64];
    for (;;) {
      size_t got = 0;
      while (got < sizeof buf) {
        const ssize_t n = ::recv(c, buf + got, sizeof buf - got, 0);
        if (n <= 0) {
          ::close(c);
          return;
        }
        got += size_t(n);
      }
      if (::send(c, buf, sizeof buf, MSG_NOSIGNAL) != ssize_t(sizeof buf)) break;
    }
    ::close(c);
  });
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    char buf[64] = {};
    for (int i = 0; i < rounds; ++i) {
      const auto t0 = clk::now();
      if (::send(s, buf, sizeof buf, MSG_NOSIGNAL) != ssize_t(sizeof buf)) break;
      size_t got = 0;
      while (got < sizeof buf) {
        const ssize_t n = ::recv(s, buf + got, sizeof buf - got, 0);
        if (n <= 0) break;
        got += size_t(n);
      }
      out.push_back(since(t0) * 1e6);
    }
  }
  ::close(s);
  echo.join();
  ::close(ls);
  return out;
}

// `connections` clients, each keeping `depth` batches of `batch` transfers in flight.
double tcp_throughput(const wire::client::options& o, const pair_picker& p, uint32_t batch, uint32_t connections,
                      uint32_t depth, double seconds) {
  std::atomic<uint64_t> done{0};
  std::atomic<bool> stop{false}, failed{false};
  std::vector<std::thread> threads;
  const auto t0 = clk::now();
  for (uint32_t c = 0; c < connections; ++c) {
    threads.emplace_back([&, c] {
      std::string err;
      auto cl = wire::client::connect(o, &err);
      if (!cl) {
        std::fprintf(stderr, "wire_bench: %s\n", err.c_str());
        failed = true;
        return;
      }
      std::mt19937_64 rng(c * 104729 + batch);
      std::deque<uint64_t> in_flight;
      while (!stop.load(std::memory_order_relaxed) || !in_flight.empty()) {
        if (!stop.load(std::memory_order_relaxed) && in_flight.size() < depth) {
          const auto ts = make_batch(p, rng, batch);
          in_flight.push_back(cl->send(wire::create_transfers_body(ts)));
          continue;
        }
        auto r = cl->wait(in_flight.front());
        in_flight.pop_front();
        if (!r.ok) {
          std::fprintf(stderr, "wire_bench: %s%s\n", r.failure.c_str(), r.error.message.c_str());
          failed = true;
          return;
        }
        uint64_t ok = 0;
        for (auto x : r.reply.results) ok += x == wire::result::ok;
        done.fetch_add(ok, std::memory_order_relaxed);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true);
  for (auto& t : threads) t.join();
  return failed ? 0 : double(done.load()) / since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, single_only = false;
  uint32_t depth = 4;  // 8,192-transfer batches in flight per caller or connection
  std::string out = "perf/results/wire.json", dir = "/tmp/mesob-wire-bench";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--only" && i + 1 < argc && std::string(argv[i + 1]) == "single") single_only = (++i, true);
    else if (a == "--out" && i + 1 < argc) out = argv[++i];
    else if (a == "--dir" && i + 1 < argc) dir = argv[++i];
    else if (a == "--depth" && i + 1 < argc) depth = uint32_t(std::strtoul(argv[++i], nullptr, 10));
    else {
      std::fprintf(stderr, "usage: wire_bench [--quick] [--only single] [--out FILE] [--dir DIR] [--depth N]\n");
      return 2;
    }
  }
  const uint64_t accounts = quick ? 20'000 : 1'000'000;
  const double seconds = quick ? 0.5 : 1.5;  // each measured throughput round
  const int samples = quick ? 300 : 5000;
  std::printf("%-48s %16s\n", "metric", "value");
  record("quick_mode", quick ? 1 : 0);
  record("cores", std::thread::hardware_concurrency());

  const uint32_t shards = std::max(1u, std::thread::hardware_concurrency());
  auto e = open_engine(dir, shards, accounts, true);
  create_accounts(*e, accounts);
  {
    // The setup's million accounts go to LMDB now, so that the first checkpoint's large
    // write does not fall on the idle engine's measurements below.
    std::string err;
    if (!e->checkpoint(&err)) {
      std::fprintf(stderr, "wire_bench: checkpoint after setup: %s\n", err.c_str());
      return 1;
    }
  }
  // Lives to the end of the bench: its file's deletion must not fall on a measurement.
  fdatasync_prober probe(dir + "-probe", "wire_bench");
  auto server = start_loopback_server(*e, "wire_bench");
  auto& srv = server.srv;
  const wire::client::options o = server.client;

  // Single transfers on the idle engine, one at a time, embedded (the engine's share) and
  // over TCP, beside the disk's fdatasync and the loopback round trip. They are measured
  // in interleaved rounds, so a slow phase of the shared host falls on each of them alike
  // instead of on whichever ran during it. fdatasync is measured twice: back to back (the
  // issue's fdatasync_p99_us), and isolated, each write+fdatasync issued 100 us after the
  // last one completed, as a lone request on an idle engine issues its commit: the
  // virtual disk answers isolated flushes much more slowly in the tail. Each TCP
  // request's commit time (the log's write+fdatasync, from the engine's counters, read
  // outside the timed call) shows how much of its latency is the disk's.
  {
    std::string e2;
    auto c = wire::client::connect(o, &e2);
    if (!c) {
      std::fprintf(stderr, "wire_bench: %s\n", e2.c_str());
      return 1;
    }
    pair_picker p(accounts, shards, 10);
    std::mt19937_64 rng(11);
    std::vector<double> disk, isolated, rtt, emb_lat, tcp_lat, commit;
    double disk_s = 0, disk_n = 0;
    const int rounds = 5, per_round = samples / rounds;
    for (int round = 0; round < rounds; ++round) {
      const auto d = probe.run((quick ? 0.5 : 3.0) / rounds);
      const auto di = probe.run((quick ? 0.5 : 3.0) / rounds, 1, 100);
      isolated.insert(isolated.end(), di.latencies_us.begin(), di.latencies_us.end());
      disk.insert(disk.end(), d.latencies_us.begin(), d.latencies_us.end());
      disk_n += double(d.latencies_us.size());
      disk_s += d.per_s > 0 ? double(d.latencies_us.size()) / d.per_s : 0;
      const auto r = loopback_rtts(per_round * 4);
      rtt.insert(rtt.end(), r.begin(), r.end());
      for (int i = 0; i < per_round; ++i) {
        const auto t = make_batch(p, rng, 1);
        const auto t0 = clk::now();
        const auto rep = e->create_transfers(t);
        emb_lat.push_back(since(t0) * 1e6);
        if (rep.results.at(0) != wire::result::ok) {
          std::fprintf(stderr, "wire_bench: embedded single transfer failed\n");
          return 1;
        }
      }
      for (int i = 0; i < per_round; ++i) {
        const auto t = make_batch(p, rng, 1);
        const auto body = wire::create_transfers_body(t);
        const uint64_t f0 = e->stats().wal_flight_ns;
        const auto t0 = clk::now();
        auto rep = c->call(body);
        tcp_lat.push_back(since(t0) * 1e6);
        commit.push_back(double(e->stats().wal_flight_ns - f0) / 1e3);
        if (!rep.ok || rep.reply.results.at(0) != wire::result::ok) {
          std::fprintf(stderr, "wire_bench: single transfer failed: %s\n", rep.failure.c_str());
          return 1;
        }
      }
    }
    record("fdatasync_per_s", disk_s > 0 ? disk_n / disk_s : 0);
    const auto p50_p99 = [](const std::string& name, const std::vector<double>& v) {
      record(name + "_p50_us", percentile(v, 50));
      record(name + "_p99_us", percentile(v, 99));
    };
    p50_p99("fdatasync", disk);
    p50_p99("fdatasync_isolated", isolated);
    p50_p99("loopback_rtt", rtt);
    p50_p99("embedded_single_transfer", emb_lat);
    p50_p99("tcp_single_transfer", tcp_lat);
    record("tcp_single_transfer_p999_us", percentile(tcp_lat, 99.9));
    p50_p99("tcp_single_transfer_commit", commit);
    record("single_p99_target_us", 2 * (metrics["loopback_rtt_p99_us"] + metrics["fdatasync_p99_us"]));
    record("single_p99_target_isolated_us",
           2 * (metrics["loopback_rtt_p99_us"] + metrics["fdatasync_isolated_p99_us"]));
  }
  const auto finish = [&] {
    srv->stop();
    e->close();
    e.reset();
    std::filesystem::remove_all(dir);
    write_json(out);
    return 0;
  };
  if (single_only) return finish();

  // 8,192-transfer batches, 10% crossing shards: embedded and over TCP, alternating
  // (E T T E, twice over; the host's slow phases last seconds, so more pairs make the
  // ratio steadier than longer rounds would): the engine's own costs grow with its
  // history (records flushed to LMDB), so whichever ran second would pay more of them.
  // An id-index growth (a background thread building a table twice the size, a large
  // share of two cores for a second or more) comes at fixed counts of transfers, so it would fall on whichever kind ran
  // then: an unmeasured embedded warm-up first runs until the next growth is further away
  // than the measured rounds will need (past a growth, if one is that close), and the
  // JSON says whether one still came.
  // The table takes only some ids (those that count up go to ranges, engine/id_index.hpp):
  // headroom in transfers is the table's room over its share of the warm-up's ids.
  pair_picker p(accounts, shards, 10);
  const double warm_s = quick ? 0.3 : 1.0;
  const auto st0 = e->stats();
  const double rate = throughput(*e, p, 8192, 2, depth, warm_s);
  const int pairs = quick ? 2 : 4;  // rounds of each kind
  const double needed = rate * seconds * 2 * pairs * 1.2;
  const auto headroom = [&] {
    const auto st = e->stats();
    const double room = st.id_index_next_growth_at > st.id_index_table_ids
                            ? double(st.id_index_next_growth_at - st.id_index_table_ids)
                            : 0.0;
    const double share = st.transfers > st0.transfers ? double(st.id_index_table_ids - st0.id_index_table_ids) /
                                                            double(st.transfers - st0.transfers)
                                                      : 1.0;
    return share > 0 ? std::min(room / share, 1e15) : 1e15;
  };
  for (double warmed = warm_s; headroom() < needed && warmed < 120; warmed += warm_s)
    throughput(*e, p, 8192, 2, depth, warm_s);
  record("warmup_transfers", double(e->stats().transfers));
  record("warmup_needed_headroom_transfers", needed);  // more than id_index_headroom: the 120-s cap was hit
  record("id_index_headroom_transfers", headroom());
  const uint64_t growth_at0 = e->stats().id_index_next_growth_at;
  double emb = 0, tcp = 0, pair_min = 1e9, pair_max = 0;
  for (int round = 0; round < pairs; ++round) {
    const std::string r = std::to_string(round + 1);
    const bool embedded_first = round % 2 == 0;
    double pair[2] = {0, 0};  // embedded, TCP
    for (int k = 0; k < 2; ++k) {
      if ((k == 0) == embedded_first) {
        pair[0] = throughput(*e, p, 8192, 2, depth, seconds);
        record("embedded_transfers_per_s_batch8192_round" + r, pair[0]);
      } else {
        pair[1] = tcp_throughput(o, p, 8192, 2, depth, seconds);
        record("tcp_transfers_per_s_batch8192_round" + r, pair[1]);
      }
    }
    emb += pair[0] / pairs;
    tcp += pair[1] / pairs;
    pair_min = std::min(pair_min, pair[1] / std::max(1.0, pair[0]));
    pair_max = std::max(pair_max, pair[1] / std::max(1.0, pair[0]));
  }
  record("tcp_to_embedded_ratio_pair_min", pair_min);
  record("tcp_to_embedded_ratio_pair_max", pair_max);
  // A growth started during the rounds moves the point (swapped in or not).
  record("id_index_growth_during_rounds", e->stats().id_index_next_growth_at != growth_at0 ? 1 : 0);
  record("embedded_transfers_per_s_batch8192", emb);
  record("tcp_transfers_per_s_batch8192", tcp);
  record("tcp_to_embedded_ratio", tcp / std::max(1.0, emb));
  return finish();
}
