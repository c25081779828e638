#include "engine/config.hpp"

#include <unistd.h>

#include <algorithm>
#include <thread>

#include "actors/flat_map.hpp"
#include "actors/record_store.hpp"
#include "engine/limits.hpp"
#include "storage/event_log.hpp"
#include "storage/wal.hpp"

namespace mesob::engine {

uint32_t config::shard_count() const {
  return shards != 0 ? shards : std::min(std::max(1u, std::thread::hardware_concurrency()), shards_max);
}

// A capacity (accounts_max, pending_max): 1..2^36, and each shard's share within the
// 32-bit index of its entries. "" when it holds.
std::string config::capacity_error(const char* name, uint64_t value) const {
  if (value < 1 || value > capacity_max) return std::string(name) + " must be 1..68719476736 (2^36)";
  if ((value + shard_count() - 1) / shard_count() > UINT32_MAX)
    return std::string(name) + " must be at most 4294967295 (2^32 - 1) a shard: " + std::to_string(shard_count()) +
           " shards hold at most " + std::to_string(uint64_t(UINT32_MAX) * shard_count());
  return {};
}

std::string config::validate() const {
  if (data_dir.empty()) return "data_dir must not be empty";
  if (shards > shards_max) return "shards must be at most " + std::to_string(shards_max);
  if (wal_segment_mib < 2 || wal_segment_mib > 4096) return "wal_segment_mib must be 2..4096";
  if (wal_group_mib < 1 || wal_group_mib > 256) return "wal_group_mib must be 1..256";
  if (wal_flights < 1 || wal_flights > storage::wal_flights_limit)
    return "wal_flights must be 1.." + std::to_string(storage::wal_flights_limit);
  if (wal_flush_gap_us > wal_flush_gap_us_max)
    return "wal_flush_gap_us must be 0.." + std::to_string(wal_flush_gap_us_max);
  if (wal_group_mib + 1 > wal_segment_mib) return "wal_segment_mib must exceed wal_group_mib";
  if ((wal_group_mib << 20) < batch_payload_bytes_max + 4096 + 80)
    return "wal_group_mib is too small for a full batch";
  if (snapshot_map_gib < 1 || snapshot_map_gib > 16384) return "snapshot_map_gib must be 1..16384";
  if (wal_kept_max_mib < 4 * wal_segment_mib || wal_kept_max_mib > (1ull << 30))
    return "wal_kept_max_mib must be at least four log segments (" + std::to_string(4 * wal_segment_mib) +
           " MiB with wal_segment_mib " + std::to_string(wal_segment_mib) + ") and at most 1073741824";
  if (tick_ms < 1 || tick_ms > 60'000) return "tick_ms must be 1..60000";
  if (events_segment_events < 128 || events_segment_events > storage::event_format::segment_events_max ||
      events_segment_events % 128 != 0)
    return "events_segment_events must be a multiple of 128 in 128.." +
           std::to_string(storage::event_format::segment_events_max);
  if (events_ring_events < 1024 || events_ring_events > (1ull << 24) || (events_ring_events & (events_ring_events - 1)) != 0)
    return "events_ring_events must be a power of two in 1024..16777216";
  if (events_retention_mib > (1ull << 30)) return "events_retention_mib must be at most 1073741824";
  if (events_retention_mib != 0 && (events_retention_mib << 20) < 2 * events_segment_events * 96)
    return "events_retention_mib must hold at least two event segments of 96-byte events (" +
           std::to_string((2 * events_segment_events * 96 + (1 << 20) - 1) >> 20) + " MiB with " +
           std::to_string(events_segment_events) + " events a segment)";
  if (events_retention_s > 100ull * 365 * 86400) return "events_retention_s must be at most 100 years";
  if (subscriptions_max < 1 || subscriptions_max > 1024) return "subscriptions_max must be 1..1024";
  if (events_windows_mib < 64 || events_windows_mib > (1ull << 20)) return "events_windows_mib must be 64..1048576";
  if (queue_requests_max < 1 || queue_requests_max > 1'000'000)
    return "queue_requests_max must be 1..1000000";
  if (transfers_resident_max < 2 * uint64_t(batch_ops_max) || transfers_resident_max > (1ull << 32) ||
      (transfers_resident_max & (transfers_resident_max - 1)) != 0)
    return "transfers_resident_max must be a power of two in 16384..2^32";
  if (transfers_flush_step > transfers_resident_max / 2)
    return "transfers_flush_step must be at most half of transfers_resident_max (0: a 32nd of it)";
  // Reserved up front per shard: past this a mistyped hint asks for more memory than any
  // machine here has, and the start would end in an allocation failure, not this message.
  if (accounts_hint > (1ull << 28)) return "accounts_hint must be at most 268435456 (2^28) per shard";
  // A shard's accounts and pending entries are indexed by 32 bits; a group holds up to
  // 1,000 seats.
  if (auto e = capacity_error("accounts_max", accounts_max); !e.empty()) return e;
  if (groups_max < 1 || groups_max > (1ull << 30)) return "groups_max must be 1..1073741824 (2^30)";
  if (auto e = capacity_error("pending_max", pending_max); !e.empty()) return e;
  if (transfers_max < 1 || transfers_max > transfers_max_limit)
    return "transfers_max must be 1.." + std::to_string(transfers_max_limit) + " (2^40 - 2)";
  // The resident window, each shard's account index and the log's group buffers are made,
  // zero-filled, at start, and the event ring fills as events come: settings that need
  // more than the machine's memory would end the start in an allocation failure or the
  // kernel's OOM killer, after the data directory was opened (and the log's torn tail
  // cut), or the engine later.
  {
    const uint64_t n_shards = shard_count();
    const uint64_t window = transfers_resident_max * sizeof(actors::transfer_record);
    const uint64_t index = n_shards * actors::flat_u64_map::bytes_for(size_t(accounts_hint));
    const uint64_t wal = uint64_t(wal_flights + 1) * (wal_group_mib << 20);
    const uint64_t ring = events ? storage::event_log::memory_bytes(events_ring_events) : 0;
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    const uint64_t memory = pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : 0;
    auto mib = [](uint64_t b) { return std::to_string((b + (1 << 20) - 1) >> 20); };
    const uint64_t total = window + index + wal + ring;
    if (memory != 0 && total > memory / 4 * 3)
      return "transfers_resident_max (" + mib(window) + " MiB of records), accounts_hint (" + mib(index) +
             " MiB of account index over " + std::to_string(n_shards) + " shards), wal_flights and wal_group_mib (" +
             mib(wal) + " MiB of log buffers) and events_ring_events (" + mib(ring) + " MiB of the event log's rings) take " +
             mib(total) + " MiB at start, more than three quarters of this machine's " + mib(memory) + " MiB";
  }
  if (resolved_pending_cut_at == 0) return "resolved_pending_cut_at must be at least 1";
  if (checkpoint_interval_ms > 7ull * 86'400'000)
    return "checkpoint_interval_ms must be at most 604800000 (a week; 0: on demand and at stop only)";
  return {};
}

}  // namespace mesob::engine
