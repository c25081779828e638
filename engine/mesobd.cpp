// mesobd: the Mesob engine daemon. Starts on embedded defaults (data in ./var/mesob),
// recovers (snapshot + log replay), serves until SIGTERM or SIGINT, then drains,
// snapshots and exits 0. Every setting comes from the built-in default, a config file
// (--config, INI/TOML `key = value`) or a flag, later ones winning.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "engine/engine.hpp"

using namespace mesob;

int main(int argc, char** argv) {
  engine::config cfg;
  CLI::App app{"mesobd - Mesob transaction engine"};
  app.set_config("--config", "", "read settings from this file (key = value)");
  app.add_option("--data-dir", cfg.data_dir, "data directory (log, snapshots)")->capture_default_str();
  app.add_option("--shards", cfg.shards, "shards; 0 = one per core")->capture_default_str();
  app.add_option("--pin-shards", cfg.pin_shards, "pin shard threads to cores")->capture_default_str();
  app.add_option("--wal-segment-mib", cfg.wal_segment_mib, "log segment size, MiB")->capture_default_str();
  app.add_option("--wal-group-mib", cfg.wal_group_mib, "largest commit group, MiB")->capture_default_str();
  app.add_option("--snapshot-map-gib", cfg.snapshot_map_gib, "LMDB map ceiling, GiB")->capture_default_str();
  app.add_option("--checkpoint-interval-ms", cfg.checkpoint_interval_ms,
                 "snapshot period; 0 = on demand and at stop only")->capture_default_str();
  app.add_option("--tick-ms", cfg.tick_ms, "clock tick while timed pending transfers exist")->capture_default_str();
  app.add_option("--queue-requests-max", cfg.queue_requests_max, "requests queued before callers wait")->capture_default_str();
  app.add_option("--transfers-resident-max", cfg.transfers_resident_max,
                 "transfer records kept in memory (power of two); older ones are read from LMDB")
      ->capture_default_str();
  app.add_option("--accounts-hint", cfg.accounts_hint, "accounts to preallocate per shard")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  // Signals are taken synchronously by this thread; every other thread blocks them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::string error;
  auto e = engine::engine::open(cfg, &error);
  if (!e) {
    std::fprintf(stderr, "mesobd: cannot start: %s\n", error.c_str());
    return 1;
  }
  const auto& rec = e->recovery();
  std::printf("mesobd: data %s, %u shards\n", cfg.data_dir.c_str(), e->shards());
  std::printf("mesobd: recovered in %.3f s: snapshot lsn %llu, %llu accounts, %llu transfers, "
              "%llu log records replayed (%llu operations)\n",
              rec.seconds, static_cast<unsigned long long>(rec.snapshot_lsn),
              static_cast<unsigned long long>(rec.accounts_loaded),
              static_cast<unsigned long long>(rec.transfers_loaded),
              static_cast<unsigned long long>(rec.records_replayed),
              static_cast<unsigned long long>(rec.operations_replayed));
  if (!rec.torn_tail.empty()) std::printf("mesobd: torn log tail cut: %s\n", rec.torn_tail.c_str());
  std::printf("mesobd: ready (SIGTERM or Ctrl-C stops)\n");
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::printf("mesobd: %s received, stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  std::fflush(stdout);
  e->close();
  const auto st = e->stats();
  std::printf("mesobd: stopped cleanly at lsn %llu (snapshot lsn %llu)\n",
              static_cast<unsigned long long>(st.lsn_durable),
              static_cast<unsigned long long>(st.snapshot_lsn));
  return 0;
}
