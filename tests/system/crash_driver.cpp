// crash_driver <data_dir> <run>: runs the engine under a concurrent transfer load
// until killed. Writes to stdout, binary, one {id.lo, result} record per transfer it
// got an acknowledgement for — only after the engine's reply, i.e. once durable.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/engine.hpp"
#include "system/crash_workload.hpp"

using namespace mesob;
using namespace mesob::test::crash;

struct ack {
  uint64_t id_lo;
  uint32_t result;
  uint32_t pad;
};

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: crash_driver <data_dir> <run>\n");
    return 2;
  }
  engine::config cfg;
  cfg.data_dir = argv[1];
  cfg.shards = 2;
  cfg.pin_shards = false;
  cfg.checkpoint_interval_ms = 150;  // kills land during checkpoints too
  cfg.wal_segment_mib = 4;           // and across segment switches
  cfg.wal_group_mib = 1;
  cfg.wal_flights = 4;  // kills land with several commit groups in flight
  const uint64_t run = std::strtoull(argv[2], nullptr, 10);
  std::string err;
  auto e = engine::engine::open(cfg, &err);
  if (!e) {
    std::fprintf(stderr, "crash_driver: %s\n", err.c_str());
    return 1;
  }
  std::vector<wire::account> accts;
  for (uint64_t id = 1; id <= accounts; ++id) {
    wire::account a;
    a.id = id;
    a.currency = wire::currency("ETB");
    a.kind = wire::account_kind::customer_wallet;
    accts.push_back(a);
  }
  e->create_accounts(accts);
  std::mutex out_mu;
  std::fprintf(stderr, "crash_driver: run %llu ready\n", static_cast<unsigned long long>(run));
  std::vector<std::thread> threads;
  for (uint32_t w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      uint64_t seq = 0;
      std::vector<ack> acks;
      for (;;) {
        const uint64_t n = 1 + actors::mix64(run * 1000 + w * 100000 + seq) % 64;
        std::vector<wire::transfer> batch;
        for (uint64_t i = 0; i < n; ++i) batch.push_back(transfer_for(transfer_id(run, w, seq++)));
        batch.back().flags &= uint16_t(~wire::transfer_flags::linked);
        auto r = e->create_transfers(batch);
        if (r.st != engine::status::ok) continue;
        acks.clear();
        for (size_t i = 0; i < batch.size(); ++i)
          acks.push_back({batch[i].id.lo, uint32_t(r.results[i]), 0});
        std::lock_guard lk(out_mu);
        if (::write(1, acks.data(), acks.size() * sizeof(ack)) < 0) std::_Exit(3);
      }
    });
  }
  for (auto& t : threads) t.join();
}
