// mesob-log: inspects a Mesob data directory's write-ahead log. Verifies every segment
// header, record checksum, lsn and the SHA-256 hash chain, prints the records (or just
// a summary) and the snapshot's position. Read-only: never cuts a torn tail. It reads
// with O_DIRECT, so it leaves no page in the cache that could hide a later append; but
// on a running engine the tail moves while it reads and may look damaged: there, use
// the admin command `log verify`, which stops at the durable lsn.
// It checks the log against the snapshot as recovery does (records from the snapshot's
// next lsn on, its chain hash) and opens the snapshot read-only (nothing is created).
// With --snapshot-rows it also checks every snapshot row (a scrub: a damaged row is found
// before a request needs it, while a copy may still be had).
// Exit status: 0 log intact (a torn tail is reported, not an error), 1 damaged (or not
// the snapshot's history, or a snapshot row failing its check), 2 usage, 3 cannot be read
// (no log there, a snapshot that does not open).
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "storage/snapshot.hpp"
#include "storage/wal.hpp"
#include "wire/cli_options.hpp"

using namespace mesob::storage;

namespace {

const char* kind_name(uint16_t k) {
  switch (k) {
    case 1: return "create_accounts";
    case 2: return "create_transfers";
    case 3: return "set_account_status";
    case 6: return "tick";
    case 10: return "equb_ops";
    case 12: return "gateway_ops";  // registry changes (the secrets in them are never printed)
    case 15: return "payout_answers";
    case 16: return "gateway_events";
    case 17: return "payout_ops";
    case 19: return "instrument_ops";
    case 20: return "prices";
    case 22: return "customer_ops";
    case 23: return "policy_ops";
    case 26: return "orders";
    case 27: return "order_answers";
    case 28: return "order_cancels";
    case 32: return "order_retries";
    case 34: return "order_retries_forced";
    default: return "?";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string data_dir = "./var/mesob";
  bool records = false, snapshot_rows = false;
  CLI::App app{"mesob-log - verify and print a Mesob write-ahead log"};
  app.add_option("--data-dir", data_dir, "data directory")->capture_default_str();
  app.add_flag("--records", records, "print every record");
  app.add_flag("--snapshot-rows", snapshot_rows,
               "also check every snapshot row against its checksum (reads the whole snapshot), naming each damaged one");
  if (const int status = mesob::wire::parse_options(app, argc, argv); status >= 0) return status;

  std::string error;
  uint64_t ops = 0;
  std::string last_file;
  wal_scan_options o{data_dir + "/wal", false, true};  // read-only, O_DIRECT (each segment's header gives its size)
  struct stat st {};
  if (::stat(o.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::printf("CANNOT READ: no log at %s (%s)\n", o.dir.c_str(),
                std::strerror(::stat(o.dir.c_str(), &st) != 0 ? errno : ENOTDIR));
    return 3;
  }
  // The snapshot first: the log must continue it.
  std::optional<snapshot_meta> meta;
  const std::string snap_dir = data_dir + "/snapshot";
  uint64_t rows_damaged = 0;
  const bool has_snapshot = ::stat((snap_dir + "/data.mdb").c_str(), &st) == 0;
  // No snapshot only when there is none: one that cannot be looked at (no permission, a
  // disk error) is not read as the log from its start, which would call the log damaged.
  if (!has_snapshot && errno != ENOENT) {
    std::printf("CANNOT READ: the snapshot in %s: %s/data.mdb: %s\n", snap_dir.c_str(), snap_dir.c_str(),
                std::strerror(errno));
    return 3;
  }
  if (has_snapshot) {
    auto snap = snapshot_store::open_read_only(snap_dir, &error);
    if (snap) meta = snap->read_meta(&error);
    if (!error.empty()) {
      const bool damaged = error.find(snapshot_damaged) != std::string::npos;
      std::printf("%s: the snapshot in %s: %s\n", damaged ? "DAMAGED" : "CANNOT READ", snap_dir.c_str(), error.c_str());
      return damaged ? 1 : 3;
    }
    // A scrub: every row of every table, on past damage (the first 100 named).
    if (snap && snapshot_rows) {
      constexpr uint64_t named_max = 100;
      uint64_t rows_all = 0;
      for (int t = 0; t < tables; ++t) {
        uint64_t rows = 0;
        const bool read = snap->verify_rows(table(t), [&](uint64_t, const std::string& why) {
          if (++rows_damaged <= named_max) std::printf("DAMAGED: %s\n", why.c_str());
        }, &rows, &error);
        if (!read) {
          std::printf("CANNOT READ: the snapshot in %s: %s\n", snap_dir.c_str(), error.c_str());
          return 3;
        }
        rows_all += rows;
      }
      if (rows_damaged > named_max)
        std::printf("DAMAGED: ... and %llu more rows\n", static_cast<unsigned long long>(rows_damaged - named_max));
      if (!snap->rows_checked())
        std::printf("snapshot rows: %llu, of a format before rows' checks: none checked\n",
                    static_cast<unsigned long long>(rows_all));
      else
        std::printf("snapshot rows: %llu checked, %llu failing their checks\n", static_cast<unsigned long long>(rows_all),
                    static_cast<unsigned long long>(rows_damaged));
    }
  }
  const uint64_t snap_lsn = meta ? meta->lsn : 0;
  // What recovery reads: from the segment that holds the snapshot's next lsn (older
  // segments a drop left behind are not part of the log).
  o.start_lsn = snap_lsn + 1;
  bool first = true;
  uint64_t first_lsn = 0;  // the first record read
  std::string history;  // why the log is not the snapshot's history
  wal_scan_result r;
  const bool ok = scan_wal(o, [&](const wal_record_view& v) {
    const auto& h = *v.header;
    if (first) first_lsn = h.lsn;
    if (std::exchange(first, false) && h.lsn > snap_lsn + 1) {
      history = "the log starts at lsn " + std::to_string(h.lsn) + " but the snapshot covers only up to lsn " +
                std::to_string(snap_lsn) + ": records are missing";
      return false;
    }
    if (meta && snap_lsn != 0 && h.lsn == snap_lsn + 1 && *v.prev_chain != meta->chain) {
      history = std::string(v.file) + " offset " + std::to_string(v.offset) + ": the chain hash before lsn " +
                std::to_string(h.lsn) + " is not the one the snapshot recorded: this log is not the snapshot's history";
      return false;
    }
    uint16_t kind = 0, flags = 0;
    uint32_t count = 0;
    if (v.payload.size() >= 8) {
      std::memcpy(&kind, v.payload.data(), 2);
      std::memcpy(&flags, v.payload.data() + 2, 2);
      std::memcpy(&count, v.payload.data() + 4, 4);
    }
    ops += count;
    // Creates of accounts and groups carry the capacity they were decided by (version 16),
    // transfer batches and orders theirs of pending transfers (version 19), then their
    // transfers_max (version 24); equb operations then their accounts_max (version 31).
    std::string capacity;
    if (((h.version >= 16 && (kind == 1 || kind == 10)) || (h.version >= 19 && (kind == 2 || kind == 26))) &&
        v.payload.size() >= 24) {
      uint64_t c = 0;
      std::memcpy(&c, v.payload.data() + 16, 8);
      capacity = "  capacity " + std::to_string(c);
      if (h.version >= 24 && (kind == 2 || kind == 26) && v.payload.size() >= 32) {
        std::memcpy(&c, v.payload.data() + 24, 8);
        capacity += "  transfers_max " + std::to_string(c);
      }
      if (h.version >= 31 && kind == 10 && v.payload.size() >= 32) {
        std::memcpy(&c, v.payload.data() + 24, 8);
        capacity += "  accounts_max " + std::to_string(c);
      }
    }
    if (v.file != last_file) {
      last_file = v.file;
      if (records) std::printf("segment %s\n", v.file);
    }
    // Flags (engine/engine.cpp): 1 an equb group's chain, 2 gateways' deposits, 4 packed.
    if (records)
      std::printf("  lsn %llu  offset %llu  ts %llu  group %llu  %s%s%s x%u%s  %u bytes  chain %.16s\n",
                  static_cast<unsigned long long>(h.lsn), static_cast<unsigned long long>(v.offset),
                  static_cast<unsigned long long>(h.timestamp),
                  static_cast<unsigned long long>(h.group_first_lsn), kind_name(kind),
                  flags & 1 ? " (equb emitted)" : flags & 2 ? " (gateway deposits)" : "",
                  h.version >= 4 && (flags & 4) ? " packed" : "", count, capacity.c_str(), h.payload_bytes,
                  to_hex(h.chain).c_str());
    return true;
  }, &r, &error);
  // The log could not be read (a permission, descriptors, memory): not damage, which an
  // operator would restore from a backup for (the engine's log verify tells them apart alike).
  if (!ok && history.empty() && wal_error_is_read_failure(error)) {
    std::printf("CANNOT READ: %s\n", error.c_str());
    return 3;
  }
  if (!ok || !history.empty()) {
    std::printf("DAMAGED: %s\n", history.empty() ? error.c_str() : history.c_str());
    return 1;
  }
  // No record past the snapshot: what recovery checks then. A snapshot with no segment
  // under it is a log lost (its directory emptied, moved, or a volume not mounted): the
  // writer never drops the segment it appends to. Segments left must start the log at
  // the snapshot's next lsn, with its chain. Before, both read as "no records" and exit 0,
  // for a directory the engine refuses to start from.
  if (r.records == 0) {
    if (snap_lsn != 0 && r.segments == 0) {
      std::printf("NO LOG: %s holds no log segment, but the snapshot is at lsn %llu: the log that continues it is "
                  "missing (its directory emptied, moved or not mounted)\n",
                  o.dir.c_str(), static_cast<unsigned long long>(snap_lsn));
      return 3;
    }
    const chain_hash want = meta ? meta->chain : chain_hash{};
    if (r.segments > 0 && (r.end.next_lsn != snap_lsn + 1 || r.end.chain != want)) {
      std::printf("DAMAGED: the log's segments continue at lsn %llu%s but the snapshot is at lsn %llu: this log is "
                  "not the snapshot's history\n",
                  static_cast<unsigned long long>(r.end.next_lsn),
                  r.end.chain != want ? " with another chain hash" : "", static_cast<unsigned long long>(snap_lsn));
      return 1;
    }
  }
  // Where recovery would continue: the snapshot's next lsn with its chain, unless records follow.
  const uint64_t end_lsn = r.records == 0 ? snap_lsn + 1 : r.end.next_lsn;
  if (meta && (end_lsn <= snap_lsn || (end_lsn == snap_lsn + 1 && r.records > 0 && r.end.chain != meta->chain))) {
    std::printf("DAMAGED: the log ends at lsn %llu, %s the snapshot's lsn %llu\n",
                static_cast<unsigned long long>(end_lsn - 1),
                end_lsn <= snap_lsn ? "before" : "with another chain hash than", static_cast<unsigned long long>(snap_lsn));
    return 1;
  }
  // The range read: older segments, before the one holding the snapshot's next lsn, are
  // not (recovery does not read them either).
  const std::string range = r.records == 0 ? "no records past lsn " + std::to_string(snap_lsn)
                                           : "lsn " + std::to_string(first_lsn) + ".." +
                                                 std::to_string(r.end.next_lsn - 1) + " verified";
  std::printf("log %s: %llu segments, %llu records, %llu operations, %s%s\n", o.dir.c_str(),
              static_cast<unsigned long long>(r.segments), static_cast<unsigned long long>(r.records),
              static_cast<unsigned long long>(ops), range.c_str(),
              r.segments_skipped ? (" (" + std::to_string(r.segments_skipped) + " older segments not read)").c_str() : "");
  std::printf("chain head: %s\n", to_hex(r.end.chain).c_str());
  if (!r.torn_tail.empty())
    std::printf("torn tail (the engine will cut it, unless the event log shows it was durable): %s\n",
                r.torn_tail.c_str());
  if (meta)
    std::printf("snapshot: lsn %llu, %llu accounts, %llu transfers, chain %s (the log continues it)\n",
                static_cast<unsigned long long>(meta->lsn), static_cast<unsigned long long>(meta->accounts),
                static_cast<unsigned long long>(meta->transfers), to_hex(meta->chain).c_str());
  else
    std::printf("snapshot: none\n");
  return rows_damaged == 0 ? 0 : 1;
}
