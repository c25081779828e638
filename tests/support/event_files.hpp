// The event log of a closed engine's data directory, read and cut as a crash would leave it.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "storage/event_log.hpp"

namespace mesob::test {

// Every event in a data directory's event log, read with the engine closed.
inline std::vector<wire::event> all_events(const std::string& data) {
  storage::event_log_options o;
  o.dir = data + "/events";
  storage::event_log_recovery rec;
  std::string err;
  auto log = storage::event_log::open(o, &rec, &err);
  EXPECT_TRUE(log) << err;
  std::vector<wire::event> out, part;
  if (!log) return out;
  for (uint64_t at = rec.first_offset; at < rec.next_offset; at += part.size()) {
    EXPECT_EQ(log->read(at, 4096, &part, &err), storage::event_log::read_status::ok) << err;
    if (part.empty()) break;
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

inline bool same_events(const std::vector<wire::event>& a, const std::vector<wire::event>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(wire::event)) == 0;
}

// Cuts the event log back to offset `end` (exclusive) as a crash mid-append leaves it:
// `extra` bytes of the next event remain.
inline void cut_event_log(const std::string& data, uint64_t end, size_t extra) {
  const uint64_t seg = 1ull << 19, o = end - 1;  // the default segment size
  for (uint64_t i = o / seg + 1; std::filesystem::exists(storage::event_log::segment_path(data + "/events", i)); ++i)
    std::filesystem::remove(storage::event_log::segment_path(data + "/events", i));
  std::filesystem::resize_file(storage::event_log::segment_path(data + "/events", o / seg),
                               (o % seg) * sizeof(wire::event) + extra);
}

// The offset of the first event past the snapshot (its lsn, as events/covered records it),
// or 0 when there is none (a failure is recorded).
inline uint64_t first_past_snapshot(const std::string& data, const std::vector<wire::event>& events) {
  std::ifstream covered(data + "/events/covered");
  std::string word;
  uint64_t snap = 0;
  EXPECT_TRUE(covered >> word >> snap && word == "lsn") << data << "/events/covered";
  for (const auto& e : events)
    if (e.lsn > snap) return e.offset;
  ADD_FAILURE() << "no event past the snapshot at lsn " << snap;
  return 0;
}

}  // namespace mesob::test
