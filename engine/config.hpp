// Engine configuration: embedded defaults, overridable from a config file (INI/TOML
// key = value, via --config) and from command-line flags. `mesobd --help` lists them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace mesob::engine {

struct config {
  std::string data_dir = "./var/mesob";
  uint32_t shards = 0;               // 0: one per core
  bool pin_shards = false;           // pin shard threads to cores (when shards <= cores)
  uint64_t wal_segment_mib = 64;     // log segment size
  uint64_t wal_group_mib = 8;        // largest commit group (one write + fdatasync)
  uint32_t wal_flights = 1;          // commit groups in flight at once (engine/README.md)
  // Least time between the starts of two group commits, us (0: none; engine/README.md,
  // the flush gap): under steady load the log's flushes come at most 1e6 / gap a second.
  uint32_t wal_flush_gap_us = 500;
  uint64_t snapshot_map_gib = 64;    // LMDB map ceiling (sparse)
  // 0: only on demand, at close, and for the limits below (resolved_pending_cut_at,
  // wal_kept_max_mib)
  uint64_t checkpoint_interval_ms = 10'000;
  // The log's segments kept on the disk (not yet dropped, the one appended to included),
  // MiB: past half of it a checkpoint is due (at most one a second); past it one is taken
  // and waited for, and if three fail, writes are refused until restart (engine/README.md,
  // "Decisions", the resident window).
  uint64_t wal_kept_max_mib = 16384;
  // Resolved pending transfers the shards hold until a snapshot has them (about 100 bytes
  // each): past this many a checkpoint is taken whatever the interval (0 included), at
  // most one a second, so they cannot fill memory when checkpoints run only on demand.
  uint64_t resolved_pending_cut_at = 1ull << 20;
  uint64_t tick_ms = 100;            // clock ticks while timed pending transfers exist
  uint32_t queue_requests_max = 4096;
  uint64_t transfers_resident_max = 1ull << 20;  // resident window of transfer records
                                                 // (power of two); older ones live in LMDB
  uint64_t transfers_flush_step = 0;  // executed records that start a records flush
                                      // (0: the window / 32; engine/README.md)
  uint64_t accounts_hint = 1 << 16;     // preallocation per shard
  // Capacity (engine/README.md "Capacity"): accounts, equb groups and pending transfers
  // still pending the engine holds, each shard its share (rounded up); past it creates are
  // refused (accounts_full, groups_full, pending_full). Logged with each record that may
  // create them, so a replay decides as the live run did.
  uint64_t accounts_max = 1ull << 25;
  uint64_t groups_max = 1ull << 20;
  uint64_t pending_max = 1ull << 24;
  // Transfers recorded, any outcome, the engine's own included (each keeps its id in
  // memory: 8 to 30 bytes, engine/id_index.hpp); past it a new one a client, gateway or
  // order asks for is refused (transfers_full). Not shared out among shards.
  uint64_t transfers_max = 1ull << 28;
  bool checkpoint_on_close = true;      // benchmarks turn it off to measure log replay
  // The event stream (engine/events.hpp): kept in <data_dir>/events.
  bool events = true;
  uint64_t events_segment_events = 1ull << 19;  // events per segment file (stored packed)
  uint64_t events_ring_events = 1ull << 19;     // newest events kept in memory for subscribers (96 bytes each)
  uint64_t events_retention_mib = 0;            // drop the oldest segments past this size (0: no limit)
  uint64_t events_retention_s = 0;              // ... or older than this (0: no limit)
  uint32_t subscriptions_max = 64;              // sessions subscribed at once
  // What all subscriptions' windows may hold queued unread together, each reserved at its
  // bound (event_hub::window_bytes: about 23 MiB for the default window packed) until its
  // session closes, one gateway's at most half: a Subscribe past it is refused
  // (subscribers_full).
  uint64_t events_windows_mib = 1024;
  // Engine clock sources (engine_clock.hpp), ns: the wall clock (since the epoch) and a
  // steady clock. Tests inject a manual clock; with no steady one it serves as both.
  std::function<uint64_t()> clock;
  std::function<uint64_t()> steady_clock;

  [[nodiscard]] std::string validate() const;  // empty if valid, else the problem
  [[nodiscard]] std::string capacity_error(const char* name, uint64_t value) const;
  [[nodiscard]] uint32_t shard_count() const;  // `shards`, or one per core (at most shards_max) for 0
};

}  // namespace mesob::engine
