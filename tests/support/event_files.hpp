// The event log of a closed engine's data directory, read and cut as a crash would leave it.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
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

// The chunks of an event log segment file (storage/event_log.hpp, event_format), walked by
// their headers alone: each one's byte position and size, up to the first that is not one.
struct chunk_place {
  uint64_t pos = 0, bytes = 0;
};
inline std::vector<chunk_place> event_chunks(const std::string& path) {
  namespace fmt = storage::event_format;
  std::ifstream in(path, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<chunk_place> out;
  if (file.size() < fmt::segment_header_bytes || std::memcmp(file.data(), fmt::segment_magic, 8) != 0) return out;
  for (uint64_t pos = fmt::segment_header_bytes; pos + fmt::chunk_header_bytes <= file.size();) {
    uint32_t magic = 0, body = 0;
    std::memcpy(&magic, file.data() + pos, 4);
    std::memcpy(&body, file.data() + pos + 8, 4);
    if (magic != fmt::chunk_magic || pos + fmt::chunk_header_bytes + body > file.size()) break;
    out.push_back({pos, fmt::chunk_header_bytes + body});
    pos += fmt::chunk_header_bytes + body;
  }
  return out;
}

// Where a segment file's chunks end (the segment header's end if it has none).
inline uint64_t event_chunks_end(const std::string& path) {
  const auto chunks = event_chunks(path);
  return chunks.empty() ? storage::event_format::segment_header_bytes : chunks.back().pos + chunks.back().bytes;
}

// Cuts the event log back to offset `end` (exclusive) as a crash mid-append leaves it:
// `extra` bytes of the next chunk remain (its header's magic, then junk).
inline void cut_event_log(const std::string& data, uint64_t end, size_t extra) {
  storage::event_log_options o;  // the engine's default segment size
  o.dir = data + "/events";
  {
    storage::event_log_recovery rec;
    std::string err;
    auto log = storage::event_log::open(o, &rec, &err);
    ASSERT_TRUE(log) << err;
    ASSERT_TRUE(log->cut_back_to(end, &err)) << err;
  }
  if (extra == 0) return;
  const std::string path = storage::event_log::segment_path(o.dir, (end - 1) / o.segment_events);
  std::filesystem::resize_file(path, event_chunks_end(path));
  std::string junk(extra, '\x5a');
  const uint32_t magic = storage::event_format::chunk_magic;
  std::memcpy(junk.data(), &magic, std::min<size_t>(4, extra));
  std::ofstream(path, std::ios::app | std::ios::binary) << junk;
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
