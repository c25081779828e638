// mesob-log: inspects a Mesob data directory's write-ahead log. Verifies every segment
// header, record checksum, lsn and the SHA-256 hash chain, prints the records (or just
// a summary) and the snapshot's position. Read-only: never cuts a torn tail. It reads
// with O_DIRECT, so it leaves no page in the cache that could hide a later append; but
// on a running engine the tail moves while it reads and may look damaged: there, use
// the admin command `log verify`, which stops at the durable lsn.
// Exit status: 0 log intact (a torn tail is reported, not an error), 1 damaged, 2 usage.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>

#include "storage/snapshot.hpp"
#include "storage/wal.hpp"

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
    default: return "?";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string data_dir = "./var/mesob";
  uint64_t segment_mib = 64;
  bool records = false;
  CLI::App app{"mesob-log - verify and print a Mesob write-ahead log"};
  app.add_option("--data-dir", data_dir, "data directory")->capture_default_str();
  app.add_option("--wal-segment-mib", segment_mib, "segment size the engine used")->capture_default_str();
  app.add_flag("--records", records, "print every record");
  CLI11_PARSE(app, argc, argv);

  std::string error;
  uint64_t ops = 0;
  std::string last_file;
  wal_scan_options o{data_dir + "/wal", segment_mib << 20, false, true};  // read-only, O_DIRECT
  wal_scan_result r;
  const bool ok = scan_wal(o, [&](const wal_record_view& v) {
    const auto& h = *v.header;
    uint16_t kind = 0, flags = 0;
    uint32_t count = 0;
    if (v.payload.size() >= 8) {
      std::memcpy(&kind, v.payload.data(), 2);
      std::memcpy(&flags, v.payload.data() + 2, 2);
      std::memcpy(&count, v.payload.data() + 4, 4);
    }
    ops += count;
    if (v.file != last_file) {
      last_file = v.file;
      if (records) std::printf("segment %s\n", v.file);
    }
    // Flags (engine/engine.cpp): 1 an equb group's chain, 2 gateways' deposits, 4 packed.
    if (records)
      std::printf("  lsn %llu  offset %llu  ts %llu  group %llu  %s%s%s x%u  %u bytes  chain %.16s\n",
                  static_cast<unsigned long long>(h.lsn), static_cast<unsigned long long>(v.offset),
                  static_cast<unsigned long long>(h.timestamp),
                  static_cast<unsigned long long>(h.group_first_lsn), kind_name(kind),
                  flags & 1 ? " (equb emitted)" : flags & 2 ? " (gateway deposits)" : "",
                  h.version >= 4 && (flags & 4) ? " packed" : "", count, h.payload_bytes, to_hex(h.chain).c_str());
    return true;
  }, &r, &error);
  if (!ok) {
    std::printf("DAMAGED: %s\n", error.c_str());
    return 1;
  }
  std::printf("log %s: %llu segments, %llu records, %llu operations, lsn 1..%llu verified\n",
              o.dir.c_str(), static_cast<unsigned long long>(r.segments),
              static_cast<unsigned long long>(r.records), static_cast<unsigned long long>(ops),
              static_cast<unsigned long long>(r.end.next_lsn - 1));
  std::printf("chain head: %s\n", to_hex(r.end.chain).c_str());
  if (!r.torn_tail.empty()) std::printf("torn tail (the engine will cut it): %s\n", r.torn_tail.c_str());
  auto snap = snapshot_store::open(data_dir + "/snapshot", 1ull << 36, &error);
  if (snap) {
    if (auto m = snap->read_meta(&error))
      std::printf("snapshot: lsn %llu, %llu accounts, %llu transfers, chain %s\n",
                  static_cast<unsigned long long>(m->lsn), static_cast<unsigned long long>(m->accounts),
                  static_cast<unsigned long long>(m->transfers), to_hex(m->chain).c_str());
    else
      std::printf("snapshot: none%s%s\n", error.empty() ? "" : ": ", error.c_str());
  }
  return 0;
}
