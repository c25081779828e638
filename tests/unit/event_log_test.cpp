// The event log on real files: offsets, reads across segments, torn tails, damage,
// retention.
#include "storage/event_log.hpp"
#include "storage/failure_probes.hpp"
#include "wire/event_pack.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "storage/checksum.hpp"
#include "storage/failure_probes.hpp"
#include "support/event_files.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

namespace mesob::storage {
namespace {

std::vector<wire::event> make(size_t n, uint64_t lsn, uint64_t ts = 1000) {
  std::vector<wire::event> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i].lsn = lsn;
    out[i].timestamp = ts + i;
    out[i].type = wire::event_type::transfer_posted;
    out[i].id = {i + 1, lsn};
    out[i].account_a = 1;
    out[i].account_b = 2;
    out[i].amount = 100 + i;
  }
  return out;
}

// Segments of 1,024 events and a ring of as many: reads of older events go to the files.
event_log_options files_only(const std::string& dir) {
  event_log_options o;
  o.dir = dir;
  o.segment_events = 1024;
  o.ring_events = 1024;
  return o;
}

std::unique_ptr<event_log> open_log(const std::string& dir, event_log_recovery* rec, uint64_t seg = 128,
                                    uint64_t retention_bytes = 0, uint64_t retention_ns = 0) {
  event_log_options o;
  o.dir = dir;
  o.segment_events = seg;
  o.retention_bytes = retention_bytes;
  o.retention_ns = retention_ns;
  std::string err;
  auto log = event_log::open(o, rec, &err);
  EXPECT_TRUE(log) << err;
  return log;
}

// Writes `events` to the log in `dir` (segments of `seg` events), synced, and closes it.
void write_log(const std::string& dir, uint64_t seg, std::vector<wire::event> events) {
  event_log_recovery rec;
  std::string err;
  auto log = open_log(dir, &rec, seg);
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->append(events, &err) && log->sync(&err)) << err;
}

TEST(EventLog, OffsetsAreGapFreeReadableOnceWrittenAndSegmentsBeforeTheLastDurable) {
  test::temp_dir dir;
  event_log_recovery rec;
  auto log = open_log(dir.path(), &rec);
  EXPECT_EQ(rec.next_offset, 1u);
  auto a = make(320, 7);  // crosses two segment boundaries (128 per segment)
  std::string err;
  ASSERT_TRUE(log->append(a, &err)) << err;
  EXPECT_EQ(log->written_end(), 321u);
  EXPECT_EQ(log->durable_end(), 257u) << "each new segment begins after a sync of those before";
  std::vector<wire::event> got;
  ASSERT_EQ(log->read(1, 1000, &got, &err), event_log::read_status::ok) << err;
  EXPECT_EQ(got.size(), 320u) << "written events are readable before the sync";
  ASSERT_TRUE(log->sync(&err)) << err;
  EXPECT_EQ(log->durable_end(), 321u);
  ASSERT_EQ(log->read(1, 1000, &got, &err), event_log::read_status::ok) << err;
  ASSERT_EQ(got.size(), 320u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].offset, i + 1);
    EXPECT_EQ(got[i].amount, 100 + i);
    EXPECT_EQ(got[i].crc, event_log::event_crc(got[i]));
  }
  ASSERT_EQ(log->read(127, 3, &got, &err), event_log::read_status::ok);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].offset, 127u);
  EXPECT_EQ(got[2].offset, 129u);
  log.reset();
  auto again = open_log(dir.path(), &rec);
  EXPECT_EQ(rec.next_offset, 321u);
  EXPECT_EQ(rec.last_lsn, 7u);
  EXPECT_EQ(rec.segments, 3u);
  EXPECT_TRUE(rec.torn_tail.empty()) << rec.torn_tail;
}

TEST(EventLog, TornTailIsCutAfterTheLastWholeChunk) {
  test::temp_dir dir;
  event_log_recovery rec;
  write_log(dir.path(), 128, make(132, 3));
  const std::string last = event_log::segment_path(dir.path(), 1);
  const uint64_t whole = test::event_chunks_end(last);
  std::filesystem::resize_file(last, whole);  // as written, unpadded
  // Part of a chunk after the last whole one, as a crash mid-write leaves it.
  {
    std::ofstream f(last, std::ios::app | std::ios::binary);
    const std::string junk(40, '\x5a');
    f << junk;
  }
  auto log = open_log(dir.path(), &rec);
  EXPECT_EQ(rec.next_offset, 133u);
  EXPECT_NE(rec.torn_tail.find("events-0000000000000001.log"), std::string::npos) << rec.torn_tail;
  EXPECT_EQ(std::filesystem::file_size(last), whole);
  auto b = make(2, 4);
  std::string err;
  ASSERT_TRUE(log->append(b, &err) && log->sync(&err)) << err;
  std::vector<wire::event> got;
  ASSERT_EQ(log->read(132, 10, &got, &err), event_log::read_status::ok);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1].offset, 133u);
  EXPECT_EQ(got[1].lsn, 4u);
  log.reset();
  auto again = open_log(dir.path(), &rec);  // the appends after the cut, read from the files
  ASSERT_EQ(again->read(1, 200, &got, &err), event_log::read_status::ok) << err;
  ASSERT_EQ(got.size(), 134u);
  EXPECT_EQ(got[133].lsn, 4u);
}

// Events whose fields pack to several bytes each (amounts at random).
std::vector<wire::event> make_wide(size_t n, uint64_t lsn) {
  auto out = make(n, lsn);
  for (size_t i = 0; i < n; ++i) out[i].amount = (i + 1) * 0x9e3779b97f4a7c15ull >> 16;
  return out;
}

// A power cut after unsynced appends: the disk kept a later block of the last segment
// but not an earlier one. Opening cuts at the first damaged chunk, so nothing after the
// hole survives (the engine's replay writes those events again).
TEST(EventLog, AHoleInTheLastSegmentCutsEverythingAfterIt) {
  test::temp_dir dir;
  event_log_recovery rec;
  {
    auto log = open_log(dir.path(), &rec, 1024);
    auto a = make(1024, 3), b = make_wide(900, 4);  // segment 1: offsets 1025..1924, several blocks
    std::string err;
    ASSERT_TRUE(log->append(a, &err) && log->append(b, &err)) << err;
    EXPECT_EQ(log->durable_end(), 1025u);
  }
  const std::string last = event_log::segment_path(dir.path(), 1);
  ASSERT_GT(test::event_chunks_end(last), 2 * 4096u);
  {
    std::fstream f(last, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096);
    const std::string zeros(4096, '\0');
    f.write(zeros.data(), std::streamsize(zeros.size()));  // the second block never reached the disk
  }
  auto log = open_log(dir.path(), &rec, 1024);
  ASSERT_TRUE(log);
  EXPECT_GT(rec.next_offset, 1025u) << "the chunks before the hole stay";
  EXPECT_LT(rec.next_offset, 1925u);
  EXPECT_EQ(rec.last_lsn, 4u);
  EXPECT_NE(rec.torn_tail.find("events-0000000000000001.log"), std::string::npos) << rec.torn_tail;
  EXPECT_LE(std::filesystem::file_size(last), 4096u);
  const uint64_t kept = rec.next_offset;
  std::vector<wire::event> got;
  std::string err;
  ASSERT_EQ(log->read(1, 3000, &got, &err), event_log::read_status::ok) << err;
  EXPECT_EQ(got.size(), kept - 1);
  auto c = make(2, 5);
  ASSERT_TRUE(log->append(c, &err) && log->sync(&err)) << err;
  ASSERT_EQ(log->read(kept, 10, &got, &err), event_log::read_status::ok) << err;
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].offset, kept);

  // A hole in the first block takes the segment's header: the whole segment goes.
  log.reset();
  {
    std::fstream f(last, std::ios::in | std::ios::out | std::ios::binary);
    const std::string zeros(64, '\0');
    f.write(zeros.data(), std::streamsize(zeros.size()));
  }
  auto cut = open_log(dir.path(), &rec, 1024);
  EXPECT_EQ(rec.next_offset, 1025u);
  EXPECT_EQ(rec.last_lsn, 3u) << "from the segment before";
  EXPECT_EQ(std::filesystem::file_size(last), 0u);
}

TEST(EventLog, DamageBeforeTheLastSegmentRefusesToOpen) {
  test::temp_dir dir;
  event_log_recovery rec;
  write_log(dir.path(), 128, make(320, 3));
  const std::string first = event_log::segment_path(dir.path(), 0);
  event_log_options o;
  o.dir = dir.path();
  o.segment_events = 128;
  std::string err;
  const auto chunks = test::event_chunks(first);
  ASSERT_FALSE(chunks.empty());
  const uint64_t size = std::filesystem::file_size(first);
  // A flipped byte in the segment's last chunk, in its header, in its seal; a seal cut off.
  for (const uint64_t at : {chunks.back().pos + chunks.back().bytes - 3, uint64_t(5), size - 10}) {
    const int fd = ::open(first.c_str(), O_RDWR);
    uint8_t byte = 0;
    ASSERT_EQ(::pread(fd, &byte, 1, off_t(at)), 1);
    byte ^= 0x10;
    ASSERT_EQ(::pwrite(fd, &byte, 1, off_t(at)), 1);
    EXPECT_FALSE(event_log::open(o, &rec, &err)) << "byte " << at;
    EXPECT_NE(err.find("events-0000000000000000.log is damaged"), std::string::npos) << err;
    byte ^= 0x10;
    ASSERT_EQ(::pwrite(fd, &byte, 1, off_t(at)), 1);
    ::close(fd);
    EXPECT_TRUE(event_log::open(o, &rec, &err)) << err;
  }
  std::filesystem::resize_file(first, size - 4096);
  EXPECT_FALSE(event_log::open(o, &rec, &err));
  EXPECT_NE(err.find("events-0000000000000000.log is damaged"), std::string::npos) << err;

  // A missing segment between two present ones is refused too.
  std::filesystem::remove(first);
  {
    auto log = open_log(dir.path(), &rec);  // segments 1 and 2: the log starts at 129 (retention's way)
    EXPECT_EQ(rec.first_offset, 129u);
    EXPECT_EQ(rec.next_offset, 321u);
  }
  std::filesystem::remove(event_log::segment_path(dir.path(), 1));
  ASSERT_TRUE(std::filesystem::copy_file(event_log::segment_path(dir.path(), 2), event_log::segment_path(dir.path(), 3)));
  std::filesystem::resize_file(event_log::segment_path(dir.path(), 3), 0);
  std::filesystem::copy_file(event_log::segment_path(dir.path(), 2), first);  // segments 0, 2, 3: 1 is missing
  EXPECT_FALSE(event_log::open(o, &rec, &err));
  EXPECT_NE(err.find("events-0000000000000001.log is missing"), std::string::npos) << err;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void flip_byte(const std::string& path, uint64_t at) {
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t byte = 0;
  ASSERT_EQ(::pread(fd, &byte, 1, off_t(at)), 1);
  byte ^= 0x10;
  ASSERT_EQ(::pwrite(fd, &byte, 1, off_t(at)), 1);
  ::close(fd);
}

// The last segment's damage before `synced_end` (what the engine's last snapshot saw
// synced) is corruption: opening refuses, names the file and the byte, and cuts nothing.
// The same damage past it is a torn tail, cut as before.
TEST(EventLog, DamageBeforeTheSyncedEndRefusesToOpenAndChangesNothing) {
  test::temp_dir dir;
  event_log_recovery rec;
  {
    auto log = open_log(dir.path(), &rec, 1024);
    std::string err;
    for (uint64_t lsn = 3; lsn < 9; ++lsn) {
      auto ev = make_wide(100, lsn);
      ASSERT_TRUE(log->append(ev, &err)) << err;
    }
    ASSERT_TRUE(log->sync(&err)) << err;
  }
  const std::string path = event_log::segment_path(dir.path(), 0);
  const auto chunks = test::event_chunks(path);
  ASSERT_GE(chunks.size(), 6u);
  event_log_options o;
  o.dir = dir.path();
  o.segment_events = 1024;
  o.synced_end = 601;
  std::string err;
  const std::string intact = file_bytes(path);
  // A byte of the second chunk's body; of the segment index in the header.
  for (const uint64_t at : {chunks[1].pos + chunks[1].bytes - 5, uint64_t(20)}) {
    flip_byte(path, at);
    const std::string damaged = file_bytes(path);
    EXPECT_FALSE(event_log::open(o, &rec, &err)) << "byte " << at;
    EXPECT_NE(err.find("events-0000000000000000.log is damaged"), std::string::npos) << err;
    EXPECT_NE(err.find("600 were synced"), std::string::npos) << err;
    EXPECT_EQ(file_bytes(path), damaged) << "nothing is cut";
    flip_byte(path, at);
  }
  EXPECT_NE(err.find("segment"), std::string::npos) << "the header's damage is named: " << err;
  // Cut short after the third chunk: events synced are missing.
  std::filesystem::resize_file(path, chunks[3].pos);
  EXPECT_FALSE(event_log::open(o, &rec, &err));
  EXPECT_NE(err.find("at byte " + std::to_string(chunks[3].pos) + " (offset 201)"), std::string::npos) << err;
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(intact.data(), std::streamsize(intact.size()));
  }
  // The same byte past the synced end: a torn tail, cut after the first chunk.
  flip_byte(path, chunks[1].pos + chunks[1].bytes - 5);
  o.synced_end = 101;
  {
    auto log = event_log::open(o, &rec, &err);
    ASSERT_TRUE(log) << err;
    EXPECT_EQ(rec.next_offset, 101u);
    EXPECT_FALSE(rec.torn_tail.empty());
    auto rest = make(924, 9);  // the segment full and sealed
    ASSERT_TRUE(log->append(rest, &err) && log->sync(&err)) << err;
  }
  // Segments after the last one found, synced and gone.
  o.synced_end = 2000;
  EXPECT_FALSE(event_log::open(o, &rec, &err));
  EXPECT_NE(err.find("segments after it are missing"), std::string::npos) << err;
  o.synced_end = 1025;
  EXPECT_TRUE(event_log::open(o, &rec, &err)) << err;
  std::filesystem::remove(path);
  EXPECT_FALSE(event_log::open(o, &rec, &err));
  EXPECT_NE(err.find("holds no segment"), std::string::npos) << err;
}

TEST(EventLog, AnEmptyLastSegmentContinuesWhereTheFullOneEnded) {
  test::temp_dir dir;
  event_log_recovery rec;
  write_log(dir.path(), 128, make(256, 5));
  std::ofstream(event_log::segment_path(dir.path(), 2)).flush();  // created, never written
  auto log = open_log(dir.path(), &rec);
  EXPECT_EQ(rec.next_offset, 257u);
  EXPECT_EQ(rec.last_lsn, 5u);
  auto b = make(1, 6);
  std::string err;
  ASSERT_TRUE(log->append(b, &err) && log->sync(&err)) << err;
  std::vector<wire::event> got;
  ASSERT_EQ(log->read(257, 1, &got, &err), event_log::read_status::ok);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].lsn, 6u);
}

TEST(EventLog, TheNewestRecordsEventsAreFoundAndCutAcrossSegments) {
  test::temp_dir dir;
  event_log_recovery rec;
  auto log = open_log(dir.path(), &rec);
  auto a = make(100, 1), b = make(60, 2);  // lsn 2's events: offsets 101..160, segments 0 and 1
  std::string err;
  ASSERT_TRUE(log->append(a, &err) && log->append(b, &err) && log->sync(&err)) << err;
  uint64_t from = 0;
  ASSERT_TRUE(log->newest_run_from(3, &from, &err)) << err;
  EXPECT_EQ(from, 161u) << "no events of lsn 3 or later";
  ASSERT_TRUE(log->newest_run_from(2, &from, &err)) << err;
  EXPECT_EQ(from, 101u);
  ASSERT_TRUE(log->cut_back_to(from, &err)) << err;
  EXPECT_EQ(log->next_offset(), 101u);
  EXPECT_EQ(log->durable_end(), 101u);
  EXPECT_FALSE(std::filesystem::exists(event_log::segment_path(dir.path(), 1)));
  auto c = make(3, 2);
  ASSERT_TRUE(log->append(c, &err) && log->sync(&err)) << err;
  log.reset();
  auto again = open_log(dir.path(), &rec);
  EXPECT_EQ(rec.next_offset, 104u);
  EXPECT_EQ(rec.last_lsn, 2u);
  std::vector<wire::event> got;
  ASSERT_EQ(again->read(99, 10, &got, &err), event_log::read_status::ok) << err;
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[1].lsn, 1u);
  EXPECT_EQ(got[2].lsn, 2u);
}

TEST(EventLog, RetentionNeverDropsTheSegmentHoldingTheNewestEvent) {
  test::temp_dir dir;
  event_log_recovery rec;
  auto log = open_log(dir.path(), &rec, 128, 1);  // a size limit nothing fits in
  auto a = make(128, 8), b = make(128, 9);         // two full segments, nothing after
  std::string err;
  ASSERT_TRUE(log->append(a, &err) && log->append(b, &err) && log->sync(&err)) << err;
  EXPECT_EQ(log->apply_retention(), 1u);
  EXPECT_EQ(log->first_offset(), 129u);
  EXPECT_EQ(log->apply_retention(), 0u);
  log.reset();
  auto again = open_log(dir.path(), &rec, 128, 1);
  EXPECT_EQ(rec.first_offset, 129u);
  EXPECT_EQ(rec.next_offset, 257u) << "offsets continue after the newest event";
}

// The oldest segment damaged after the log opened: retention cannot read its last event,
// drops nothing, and says why on stderr, once (not at every look). Before, it stopped in
// silence and the log grew past its limit unseen until the next start refused the segment.
TEST(EventLog, RetentionThatCannotReadTheOldestSegmentSaysWhyOnce) {
  test::temp_dir dir;
  event_log_recovery rec;
  event_log_options o;
  o.dir = dir.path();
  o.segment_events = 128;
  o.retention_bytes = 1;  // a size limit nothing fits in
  o.ring_events = 1024;   // the least: the oldest segment's events are read from its file
  std::string err;
  auto log = event_log::open(o, &rec, &err);
  ASSERT_TRUE(log) << err;
  for (uint64_t lsn = 8; lsn < 18; ++lsn) {  // ten full segments, 1,280 events
    auto full = make(128, lsn);
    ASSERT_TRUE(log->append(full, &err)) << err;
  }
  auto last = make(1, 18);
  ASSERT_TRUE(log->append(last, &err) && log->sync(&err)) << err;
  const std::string oldest = dir.path() + "/events-0000000000000000.log";
  flip_byte(oldest, event_format::segment_header_bytes + event_format::chunk_header_bytes + 100);  // its chunk
  testing::internal::CaptureStderr();
  EXPECT_EQ(log->apply_retention(), 0u);
  EXPECT_EQ(log->apply_retention(), 0u);
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_EQ(log->first_offset(), 1u);
  const std::string what = "event log retention stopped";
  ASSERT_NE(said.find(what), std::string::npos) << said;
  EXPECT_EQ(said.find(what, said.find(what) + 1), std::string::npos) << "said once: " << said;
  EXPECT_NE(said.find("events-0000000000000000.log"), std::string::npos) << said;
}

// Retention by age measures in the events' own clock (engine time), the newest durable
// event's time as now: a step of the wall clock, which the engine clock does not follow,
// drops nothing early. Before, a segment's newest event was measured against the wall
// clock: a day's step ahead dropped a day's retention of events unread.
TEST(EventLog, RetentionByAgeCountsInTheEventsClock) {
  constexpr uint64_t s = 1'000'000'000ull, t0 = 1'700'000'000 * s;
  test::temp_dir dir;
  event_log_recovery rec;
  auto log = open_log(dir.path(), &rec, 128, 0, 3600 * s);
  ASSERT_TRUE(log);
  std::string err;
  auto a = make(128, 8, t0), b = make(128, 9, t0 + 1800 * s), c = make(1, 10, t0 + 3500 * s);
  ASSERT_TRUE(log->append(a, &err) && log->append(b, &err) && log->append(c, &err) && log->sync(&err)) << err;
  EXPECT_EQ(log->apply_retention(), 0u) << "the oldest events are 3,500 s old by the events' clock";
  auto d = make(1, 11, t0 + 3700 * s), e = make(1, 12, t0 + 3701 * s);
  ASSERT_TRUE(log->append(d, &err) && log->append(e, &err) && log->sync(&err)) << err;
  EXPECT_EQ(log->apply_retention(), 1u) << "the first segment's events are past the hour";
  EXPECT_EQ(log->first_offset(), 129u);
}

// A record whose events span two segments, the newest record: its first segment stays
// (after a crash, recovery cuts its events back to the first and replay writes them again
// there: with that segment gone they would come back at other offsets). Once a newer
// record is durable, the segment may go.
TEST(EventLog, RetentionKeepsTheNewestRecordsFirstEvents) {
  test::temp_dir dir;
  event_log_recovery rec;
  auto log = open_log(dir.path(), &rec, 128, 1);
  auto a = make(100, 7), b = make(100, 8);  // lsn 8: offsets 101..200, segments 0 and 1
  std::string err;
  ASSERT_TRUE(log->append(a, &err) && log->append(b, &err) && log->sync(&err)) << err;
  EXPECT_EQ(log->apply_retention(), 0u);
  EXPECT_EQ(log->first_offset(), 1u);
  auto c = make(20, 9);  // offsets 201..220: the newest record is lsn 9 now
  ASSERT_TRUE(log->append(c, &err)) << err;
  EXPECT_EQ(log->apply_retention(), 0u) << "lsn 9's events not durable yet";
  ASSERT_TRUE(log->sync(&err)) << err;
  EXPECT_EQ(log->apply_retention(), 1u);
  EXPECT_EQ(log->first_offset(), 129u);
  uint64_t from = 0;
  ASSERT_TRUE(log->newest_run_from(9, &from, &err)) << err;
  EXPECT_EQ(from, 201u);
}

namespace {
// Five segments of 128 events (lsns 5..9, the last one 48 events); returns a size the two
// newest segments' files fit in, and not the three newest.
uint64_t write_five_segments(const std::string& dir) {
  std::vector<wire::event> records;
  for (uint64_t lsn = 5; lsn <= 9; ++lsn) {
    const auto r = make(lsn == 9 ? 48 : 128, lsn);
    records.insert(records.end(), r.begin(), r.end());
  }
  write_log(dir, 128, records);
  return std::filesystem::file_size(event_log::segment_path(dir, 3)) +
         std::filesystem::file_size(event_log::segment_path(dir, 4));
}
}  // namespace

// A call drops at most the segments it is given, oldest first; the next goes on from there.
TEST(EventLog, RetentionDropsAtMostItsCountACall) {
  test::temp_dir dir;
  event_log_recovery rec;
  const uint64_t limit = write_five_segments(dir.path());
  auto log = open_log(dir.path(), &rec, 128, limit);
  EXPECT_EQ(log->apply_retention(2), 2u);
  EXPECT_EQ(log->first_offset(), 257u);
  EXPECT_FALSE(std::filesystem::exists(event_log::segment_path(dir.path(), 1)));
  EXPECT_TRUE(std::filesystem::exists(event_log::segment_path(dir.path(), 2)));
  EXPECT_EQ(log->apply_retention(2), 1u);
  EXPECT_EQ(log->first_offset(), 385u);
  EXPECT_EQ(log->apply_retention(2), 0u);
  EXPECT_LE(log->bytes(), limit);
}

TEST(EventLog, RetentionDropsWholeOldSegmentsAndRefusesTheirOffsets) {
  test::temp_dir dir;
  event_log_recovery rec;
  std::string err;
  const uint64_t limit = write_five_segments(dir.path());
  auto log = open_log(dir.path(), &rec, 128, limit);
  EXPECT_EQ(log->apply_retention(), 3u);
  EXPECT_EQ(log->first_offset(), 385u);
  EXPECT_LE(log->bytes(), limit);
  std::vector<wire::event> got;
  EXPECT_EQ(log->read(384, 5, &got, &err), event_log::read_status::truncated);
  ASSERT_EQ(log->read(385, 5, &got, &err), event_log::read_status::ok);
  EXPECT_EQ(got.front().offset, 385u);
  EXPECT_FALSE(std::filesystem::exists(event_log::segment_path(dir.path(), 2)));
  log.reset();
  auto again = open_log(dir.path(), &rec, 128, limit);
  EXPECT_EQ(rec.first_offset, 385u);
  EXPECT_EQ(rec.next_offset, 561u);
}

// Opening a log with segments syncs their directory before its end counts as durable: a
// run killed after making its newest segment, before a sync took the directory, left the
// name to the page cache. A sync that fails refuses the open.
TEST(EventLog, OpeningSyncsTheSegmentsDirectory) {
  test::temp_dir dir;
  event_log_recovery rec;
  write_five_segments(dir.path());
  event_log_options o;
  o.dir = dir.path();
  o.segment_events = 128;
  auto& probe = failure_probes::instance().dir_sync_failures;
  probe = 1;
  std::string err;
  EXPECT_FALSE(event_log::open(o, &rec, &err));
  EXPECT_NE(err.find("cannot sync the directory"), std::string::npos) << err;
  EXPECT_EQ(probe.load(), 0);
  EXPECT_TRUE(open_log(dir.path(), &rec, 128));
}

// A removal whose directory sync fails is the last of its call, and the next call
// syncs before it removes another: a power cut never leaves a gap (a segment gone while
// an older one comes back), which open refuses.
TEST(EventLog, RetentionStopsWhereARemovalIsNotDurable) {
  test::temp_dir dir;
  event_log_recovery rec;
  const uint64_t limit = write_five_segments(dir.path());
  auto log = open_log(dir.path(), &rec, 128, limit);
  auto& probe = failure_probes::instance().dir_sync_failures;
  probe = 2;  // the sync after the first removal, and the next call's first
  EXPECT_EQ(log->apply_retention(), 1u);
  EXPECT_FALSE(std::filesystem::exists(event_log::segment_path(dir.path(), 0)));
  EXPECT_TRUE(std::filesystem::exists(event_log::segment_path(dir.path(), 1)));
  EXPECT_EQ(log->first_offset(), 129u);
  EXPECT_EQ(log->apply_retention(), 0u);
  EXPECT_TRUE(std::filesystem::exists(event_log::segment_path(dir.path(), 1)));
  EXPECT_EQ(probe.load(), 0);
  EXPECT_EQ(log->apply_retention(), 2u);
  EXPECT_EQ(log->first_offset(), 385u);
  log.reset();
  auto again = open_log(dir.path(), &rec, 128, limit);
  EXPECT_EQ(rec.first_offset, 385u);
}

// A segment whose file retention could not remove stops the drops after it (its events
// are out of the log, its file still there) until a later call removes it, so the
// directory never holds a segment whose later neighbour is gone, and a start after the
// failure opens. Before, the failed removal went unseen and the next one went on: the
// start refused the log ("segment ... is missing").
TEST(EventLog, RetentionStopsWhereASegmentsFileCouldNotBeRemoved) {
  test::temp_dir dir;
  event_log_recovery rec;
  const uint64_t limit = write_five_segments(dir.path());
  {
    auto log = open_log(dir.path(), &rec, 128, limit);
    auto& probe = failure_probes::instance().event_unlink_failures;
    probe = 2;  // the first removal, and the next call's first try again
    EXPECT_EQ(log->apply_retention(), 1u);
    EXPECT_EQ(log->first_offset(), 129u) << "out of the log";
    EXPECT_TRUE(std::filesystem::exists(event_log::segment_path(dir.path(), 0))) << "its file is still there";
    EXPECT_TRUE(std::filesystem::exists(event_log::segment_path(dir.path(), 1))) << "none after it went";
    EXPECT_EQ(log->apply_retention(), 0u);
    EXPECT_EQ(probe.load(), 0);
    EXPECT_TRUE(std::filesystem::exists(event_log::segment_path(dir.path(), 1)));
  }
  {
    auto again = open_log(dir.path(), &rec, 128, limit);  // the start takes segment 0 back
    EXPECT_EQ(rec.first_offset, 1u);
    EXPECT_EQ(again->apply_retention(), 3u) << "removed this time, and the rest over the limit";
    EXPECT_EQ(again->first_offset(), 385u);
    EXPECT_FALSE(std::filesystem::exists(event_log::segment_path(dir.path(), 0)));
  }
}

TEST(EventLog, CutBackToTheMiddleOfAChunkKeepsTheEventsBeforeIt) {
  test::temp_dir dir;
  event_log_recovery rec;
  std::string err;
  auto a = make_wide(300, 1);
  {
    auto log = open_log(dir.path(), &rec, 256);
    ASSERT_TRUE(log->append(a, &err) && log->sync(&err)) << err;
    ASSERT_TRUE(log->cut_back_to(200, &err)) << err;  // inside the chunk of 129..256, segment 0 unsealed again
    EXPECT_EQ(log->next_offset(), 200u);
    EXPECT_EQ(log->durable_end(), 200u);
    EXPECT_FALSE(std::filesystem::exists(event_log::segment_path(dir.path(), 1)));
    std::vector<wire::event> got;
    ASSERT_EQ(log->read(1, 500, &got, &err), event_log::read_status::ok) << err;
    ASSERT_EQ(got.size(), 199u);
    EXPECT_EQ(std::memcmp(got.data(), a.data(), got.size() * sizeof(wire::event)), 0);
    auto b = make(100, 2);  // fills segment 0 again and goes on into 1
    ASSERT_TRUE(log->append(b, &err) && log->sync(&err)) << err;
  }
  auto log = open_log(dir.path(), &rec, 256);
  EXPECT_EQ(rec.next_offset, 300u);
  EXPECT_EQ(rec.last_lsn, 2u);
  EXPECT_TRUE(rec.torn_tail.empty()) << rec.torn_tail;
  std::vector<wire::event> got;
  ASSERT_EQ(log->read(195, 10, &got, &err), event_log::read_status::ok) << err;
  ASSERT_EQ(got.size(), 10u);
  EXPECT_EQ(got[4].lsn, 1u);
  EXPECT_EQ(got[4].amount, a[198].amount);
  EXPECT_EQ(got[5].lsn, 2u);
  EXPECT_EQ(got[5].offset, 200u);
}

// A crash between a segment's last chunk and its seal: opening seals it.
TEST(EventLog, AFullLastSegmentWithoutItsSealIsSealedOnOpening) {
  test::temp_dir dir;
  event_log_recovery rec;
  std::string err;
  write_log(dir.path(), 256, make_wide(256, 1));
  const std::string path = event_log::segment_path(dir.path(), 0);
  const uint64_t sealed = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, test::event_chunks_end(path));
  {
    auto log = open_log(dir.path(), &rec, 256);
    EXPECT_EQ(rec.next_offset, 257u);
    EXPECT_EQ(std::filesystem::file_size(path), sealed);
    auto b = make(3, 2);
    ASSERT_TRUE(log->append(b, &err) && log->sync(&err)) << err;
  }
  auto log = open_log(dir.path(), &rec, 256);  // segment 0 is now checked as a sealed one
  EXPECT_EQ(rec.next_offset, 260u);
  std::vector<wire::event> got;
  ASSERT_EQ(log->read(250, 20, &got, &err), event_log::read_status::ok) << err;
  EXPECT_EQ(got.size(), 10u);
}

TEST(EventLog, RefusesSegmentsOfTheFirstFormatAndOfAnotherSize) {
  test::temp_dir dir;
  event_log_recovery rec;
  std::string err;
  write_log(dir.path(), 256, make(10, 1));
  event_log_options o;
  o.dir = dir.path();
  o.segment_events = 512;
  EXPECT_FALSE(event_log::open(o, &rec, &err));
  EXPECT_NE(err.find("events_segment_events must not change"), std::string::npos) << err;
  // The first format: 96-byte events back to back.
  std::vector<wire::event> old = make(4, 1);
  for (size_t i = 0; i < old.size(); ++i) old[i].offset = i + 1, old[i].crc = event_log::event_crc(old[i]);
  {
    std::ofstream f(event_log::segment_path(dir.path(), 0), std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(old.data()), std::streamsize(old.size() * sizeof(wire::event)));
  }
  o.segment_events = 256;
  EXPECT_FALSE(event_log::open(o, &rec, &err));
  EXPECT_NE(err.find("first format"), std::string::npos) << err;
  EXPECT_EQ(std::filesystem::file_size(event_log::segment_path(dir.path(), 0)), 4 * sizeof(wire::event))
      << "nothing cut";
}

// The last segment is read whole at opening: one larger than a segment of the setting
// takes is refused before it is read (it was read into memory, up to about 1 GB, whatever
// the setting), naming the setting when its header is another's.
TEST(EventLog, ALastSegmentLargerThanItsSettingTakesIsRefusedUnread) {
  test::temp_dir dir;
  event_log_recovery rec;
  std::string err;
  write_log(dir.path(), 256, make(10, 1));
  const std::string seg0 = event_log::segment_path(dir.path(), 0);
  std::filesystem::resize_file(seg0, 64ull << 20);
  event_log_options o;
  o.dir = dir.path();
  o.segment_events = 256;
  EXPECT_FALSE(event_log::open(o, &rec, &err));
  EXPECT_NE(err.find(seg0 + " is 67108864 bytes, more than a segment of 256 events takes"), std::string::npos) << err;
  EXPECT_NE(err.find("damaged, or not a segment of this log"), std::string::npos) << err;
  o.segment_events = 128;
  EXPECT_FALSE(event_log::open(o, &rec, &err));
  EXPECT_NE(err.find("events_segment_events must not change"), std::string::npos) << err;
  EXPECT_EQ(std::filesystem::file_size(seg0), 64ull << 20) << "nothing cut";
}

// A randomized test: its seed (printed, MESOB_SEED replays it), a generator from it, a
// directory, and what opening and appending report.
class EventLogSeeded : public ::testing::Test {
 protected:
  const uint64_t seed = test::test_seed(::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::mt19937_64 rng{seed};
  test::temp_dir dir;
  event_log_recovery rec;
  std::string err;
};

// Appends of every size, fields of every width, read back from the files (the ring holds
// only the newest 1,024) in ranges of every length, before and after reopening.
TEST_F(EventLogSeeded, RandomAppendsReadBackFromTheFiles) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  const event_log_options o = files_only(dir.path());
  std::vector<wire::event> all;
  auto check = [&](event_log& log, int reads) {
    std::vector<wire::event> got;
    for (int r = 0; r < reads; ++r) {
      const uint64_t from = 1 + rng() % all.size(), max = 1 + rng() % 3000;
      ASSERT_EQ(log.read(from, max, &got, &err), event_log::read_status::ok) << err;
      ASSERT_EQ(got.size(), std::min<uint64_t>(max, all.size() + 1 - from));
      ASSERT_EQ(std::memcmp(got.data(), all.data() + from - 1, got.size() * sizeof(wire::event)), 0)
          << "from " << from << " max " << max;
    }
  };
  {
    auto log = event_log::open(o, &rec, &err);
    ASSERT_TRUE(log) << err;
    for (int round = 0; round < 60; ++round) {
      const size_t n = rng() % 4 == 0 ? 1 + rng() % 5 : 1 + rng() % 1500;
      std::vector<wire::event> batch(n);
      const int width = int(rng() % 64);
      for (auto& e : batch) {
        e.lsn = uint64_t(round + 1);
        e.timestamp = 1'000'000 + all.size() * 1000 + rng() % 1000;
        e.type = wire::event_type(1 + rng() % 3);
        e.account_a = rng() % 1000;
        e.account_b = rng() >> (64 - width);
        e.amount = rng() >> (rng() % 64);
        e.id = {rng(), all.size()};
      }
      ASSERT_TRUE(log->append(batch, &err)) << err;
      all.insert(all.end(), batch.begin(), batch.end());
      if (rng() % 3 == 0) {
        ASSERT_TRUE(log->sync(&err)) << err;
      }
      check(*log, 5);
    }
    ASSERT_TRUE(log->sync(&err)) << err;
  }
  auto log = event_log::open(o, &rec, &err);
  ASSERT_TRUE(log) << err;
  EXPECT_EQ(rec.next_offset, all.size() + 1);
  EXPECT_TRUE(rec.torn_tail.empty()) << rec.torn_tail;
  check(*log, 200);
  std::vector<wire::event> got;
  ASSERT_EQ(log->read(1, all.size(), &got, &err), event_log::read_status::ok) << err;
  ASSERT_EQ(got.size(), all.size());
  EXPECT_EQ(std::memcmp(got.data(), all.data(), all.size() * sizeof(wire::event)), 0);
  EXPECT_LT(log->bytes(), all.size() * sizeof(wire::event)) << "packed";
}

// A byte flipped anywhere in any segment: the log refuses to open (a segment before the
// last), cuts the last segment's tail, or reads back exactly what was written, or fails a
// read naming the damage; it never hands out an event that differs.
TEST_F(EventLogSeeded, AFlippedByteNeverComesBackAsADifferentEvent) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  const event_log_options o = files_only(dir.path());
  auto all = make_wide(2500, 1);  // segments 0 and 1 sealed, 2 open
  {
    auto log = event_log::open(o, &rec, &err);
    ASSERT_TRUE(log) << err;
    for (size_t at = 0; at < all.size(); at += 300) {
      std::span<wire::event> part(all.data() + at, std::min<size_t>(300, all.size() - at));
      ASSERT_TRUE(log->append(part, &err) && log->sync(&err)) << err;
    }
  }
  const std::string copy = dir.path() + "/pristine";
  std::filesystem::create_directory(copy);
  for (uint64_t i = 0; i < 3; ++i)
    std::filesystem::copy_file(event_log::segment_path(dir.path(), i), event_log::segment_path(copy, i));
  int refused = 0, cut = 0, intact = 0, failed_reads = 0;
  for (int round = 0; round < 300; ++round) {
    const uint64_t index = rng() % 3;
    const std::string path = event_log::segment_path(dir.path(), index);
    for (uint64_t i = 0; i < 3; ++i)
      std::filesystem::copy_file(event_log::segment_path(copy, i), event_log::segment_path(dir.path(), i),
                                 std::filesystem::copy_options::overwrite_existing);
    const uint64_t size = std::filesystem::file_size(path);
    const uint64_t at = rng() % size;
    {
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(std::streamoff(at));
      char c = 0;
      f.read(&c, 1);
      c = char(c ^ (1 << (rng() % 8)));
      f.seekp(std::streamoff(at));
      f.write(&c, 1);
    }
    auto log = event_log::open(o, &rec, &err);
    if (!log) {
      ++refused;
      EXPECT_LT(index, 2u) << "byte " << at << ": " << err;
      EXPECT_NE(err.find(event_log::segment_path(dir.path(), index)), std::string::npos) << err;
      continue;
    }
    if (rec.next_offset <= all.size()) ++cut;
    EXPECT_LE(rec.next_offset, all.size() + 1);
    std::vector<wire::event> got;
    const auto st = log->read(1, all.size(), &got, &err);
    if (st != event_log::read_status::ok) {
      ++failed_reads;
      EXPECT_EQ(st, event_log::read_status::failed);
      EXPECT_NE(err.find("event log"), std::string::npos) << err;
      continue;
    }
    ASSERT_EQ(got.size(), rec.next_offset - 1) << "segment " << index << " byte " << at;
    ASSERT_EQ(std::memcmp(got.data(), all.data(), got.size() * sizeof(wire::event)), 0)
        << "segment " << index << " byte " << at;
    if (got.size() == all.size()) ++intact;
  }
  std::printf("refused %d, cut %d, intact %d, reads failed %d\n", refused, cut, intact, failed_reads);
  EXPECT_GT(refused + cut + failed_reads, 0);
}

// A cut stopped after it removed the later segments and before it replaced the segment
// it cuts (a crash there): every event of that segment is still on the disk, and the next
// cut finishes the job.
TEST(EventLog, ACutStoppedHalfwayLosesNoEventBeforeIt) {
  test::temp_dir dir;
  event_log_recovery rec;
  std::string err;
  auto a = make_wide(700, 1);
  {
    auto log = open_log(dir.path(), &rec, 256);
    ASSERT_TRUE(log->append(a, &err) && log->sync(&err)) << err;  // segments 0, 1 sealed; 2 holds 513..700
    failure_probes::instance().event_cut_stop = true;
    EXPECT_FALSE(log->cut_back_to(300, &err));
    EXPECT_NE(err.find("failure probe"), std::string::npos) << err;
  }
  EXPECT_FALSE(std::filesystem::exists(event_log::segment_path(dir.path(), 2)));
  {
    auto log = open_log(dir.path(), &rec, 256);
    EXPECT_EQ(rec.next_offset, 513u) << "segment 1 whole, the last now";
    std::vector<wire::event> got;
    ASSERT_EQ(log->read(1, 1000, &got, &err), event_log::read_status::ok) << err;
    ASSERT_EQ(got.size(), 512u);
    EXPECT_EQ(std::memcmp(got.data(), a.data(), got.size() * sizeof(wire::event)), 0);
    ASSERT_TRUE(log->cut_back_to(300, &err)) << err;
  }
  std::ofstream(event_log::segment_path(dir.path(), 1) + ".cut") << "a replacement a crash left";
  auto log = open_log(dir.path(), &rec, 256);
  EXPECT_EQ(rec.next_offset, 300u);
  EXPECT_FALSE(std::filesystem::exists(event_log::segment_path(dir.path(), 1) + ".cut"));
  std::vector<wire::event> got;
  ASSERT_EQ(log->read(1, 1000, &got, &err), event_log::read_status::ok) << err;
  ASSERT_EQ(got.size(), 299u);
  EXPECT_EQ(std::memcmp(got.data(), a.data(), got.size() * sizeof(wire::event)), 0);
}

// A seal whose CRC holds but which places a group too early (a writer's bug, or a crafted
// file): reads fail and say where, rather than hand out events they did not read.
TEST(EventLog, ASealPlacingAGroupWrongFailsReads) {
  test::temp_dir dir;
  event_log_recovery rec;
  std::string err;
  auto a = make_wide(640, 1);
  {
    auto log = open_log(dir.path(), &rec, 512);
    for (size_t at = 0; at < a.size(); at += 64) {  // two chunks a group
      std::span<wire::event> part(a.data() + at, 64);
      ASSERT_TRUE(log->append(part, &err)) << err;
    }
    ASSERT_TRUE(log->sync(&err)) << err;
  }
  const std::string path = event_log::segment_path(dir.path(), 0);
  const auto chunks = test::event_chunks(path);
  ASSERT_EQ(chunks.size(), 8u);
  {
    // Group 2 said to start at group 1's second chunk; the seal's CRC made good again.
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    const uint64_t size = std::filesystem::file_size(path);
    std::vector<char> seal(4096);
    f.seekg(std::streamoff(size - 4096));
    f.read(seal.data(), 4096);
    const size_t fixed = 4096 - 16, first = fixed - 4 * 4;
    const uint32_t wrong = uint32_t(chunks[3].pos);
    std::memcpy(seal.data() + first + 2 * 4, &wrong, 4);
    const uint32_t crc = crc32c(seal.data() + first, 4 * 4 + 12);
    std::memcpy(seal.data() + fixed + 12, &crc, 4);
    f.seekp(std::streamoff(size - 4096));
    f.write(seal.data(), 4096);
  }
  auto log = open_log(dir.path(), &rec, 512);  // the first and last groups are whole
  ASSERT_TRUE(log);
  std::vector<wire::event> got;
  EXPECT_EQ(log->read(129, 100, &got, &err), event_log::read_status::failed);  // group 1 read short
  EXPECT_NE(err.find("events-0000000000000000.log"), std::string::npos) << err;
  EXPECT_EQ(log->read(257, 50, &got, &err), event_log::read_status::failed);  // group 2 from the wrong chunk
  EXPECT_NE(err.find("where 257 was due"), std::string::npos) << err;
  EXPECT_EQ(log->read(1, 128, &got, &err), event_log::read_status::ok) << err;
}

// The writer's packed groups, as the hub takes them: whole groups, from a group's first
// offset, those appended as one chunk and those split across appends once the last part
// is appended; nothing for a group not yet whole, one whose slot a newer group took, one
// whose bytes the ring wrote over, after a cut, or one begun before it.
TEST_F(EventLogSeeded, ReadPackedGivesTheWritersWholeGroups) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  event_log_options o;
  o.dir = dir.path();
  o.segment_events = 1ull << 16;
  o.ring_events = 1ull << 19;  // 4,096 slots (the default)
  auto log = event_log::open(o, &rec, &err);
  ASSERT_TRUE(log) << err;
  std::vector<wire::event> all;
  auto add = [&](size_t n) {
    std::vector<wire::event> batch(n);
    for (auto& e : batch) {
      e.lsn = all.size() / 1000 + 1;
      e.timestamp = rng();
      e.id = {rng(), rng()};
      e.account_a = rng();
      e.amount = rng();
    }
    ASSERT_TRUE(log->append(batch, &err)) << err;
    all.insert(all.end(), batch.begin(), batch.end());
  };
  auto check = [&](uint64_t from, size_t max, size_t expect) {
    std::vector<uint8_t> bytes;
    const size_t n = log->read_packed(from, max, bytes);
    EXPECT_EQ(n, expect) << "from " << from;
    std::vector<wire::event> got;
    std::string why;
    ASSERT_TRUE(wire::unpack_events(bytes, uint32_t(n), got, &why)) << why;
    if (n > 0) {
      ASSERT_EQ(std::memcmp(got.data(), all.data() + from - 1, n * sizeof(wire::event)), 0) << "from " << from;
    }
  };
  add(1000);                         // groups 0..6 whole, 7's first 104 events
  check(1, 8192, 7 * 128);           // up to the group not yet whole
  check(7 * 128 + 1, 8192, 0);
  add(10);                           // group 7 split across three appends
  check(7 * 128 + 1, 8192, 0);
  add(14);
  check(7 * 128 + 1, 8192, 128);     // packed whole when its last part came
  check(1, 8192, 8 * 128);
  check(2, 8192, 0);                 // not a group's first
  check(129, 256, 256);              // at most max, whole groups
  check(129, 200, 128);
  add(128);                          // group 8, whole; written_end covers it
  check(8 * 128 + 1, 8192, 128);
  // Some 45 bytes an event: 16 MiB of chunks holds under 3,000 groups, and the 4,096 slots
  // the newest 4,096. Recent groups come back whole, old ones as nothing.
  for (int round = 0; round < 300; ++round) {
    add(128 * (1 + rng() % 40));
    const uint64_t groups = all.size() / 128;
    const uint64_t back = 1 + rng() % std::min<uint64_t>(100, groups - 8);
    const size_t max = 128 * (1 + rng() % 64);
    check((groups - back) * 128 + 1, max, std::min<uint64_t>(max / 128, back) * 128);
    if (groups > 3000 + 8) check((8 + rng() % (groups - 3000 - 8)) * 128 + 1, 8192, 0);
  }
  ASSERT_GT(all.size() / 128, 4096u + 100);
  check(9 * 128 + 1, 8192, 0);  // its slot taken by a newer group
  ASSERT_TRUE(log->sync(&err)) << err;
  const uint64_t last_group = all.size() / 128 - 1;
  ASSERT_TRUE(log->cut_back_to(all.size() - 10, &err)) << err;
  all.resize(all.size() - 11);
  check(last_group * 128 - 127, 8192, 0);  // cut: nothing kept in memory is trusted
  // The cut group's rest and one more: the first began before the cut, so it is not kept
  // (its first part is not in the ring); the next is.
  ASSERT_EQ(all.size() % 128, 117u);
  add(11 + 128);
  check(last_group * 128 + 1, 8192, 0);
  check(last_group * 128 + 129, 8192, 128);
}

// A ring smaller than an append: the append's own events take the ring slots of the
// split group's first part before that group is completed, so it is not kept packed (and
// never packed from the wrong events); the whole groups after it are.
TEST(EventLog, ASplitGroupWhoseFirstPartTheRingLostIsNotKeptPacked) {
  test::temp_dir dir;
  event_log_options o = files_only(dir.path());
  o.segment_events = 1ull << 16;
  event_log_recovery rec;
  std::string err;
  auto log = event_log::open(o, &rec, &err);
  ASSERT_TRUE(log) << err;
  std::vector<wire::event> all(1100);
  for (size_t i = 0; i < all.size(); ++i) all[i].amount = 7 * i + 1;
  ASSERT_TRUE(log->append(std::span(all).first(100), &err)) << err;
  ASSERT_TRUE(log->append(std::span(all).subspan(100), &err)) << err;  // offsets 1025.. take slots 0..75
  std::vector<uint8_t> bytes;
  EXPECT_EQ(log->read_packed(1, 8192, bytes), 0u);
  EXPECT_EQ(log->read_packed(129, 8192, bytes), 7u * 128);
  std::vector<wire::event> got;
  ASSERT_TRUE(wire::unpack_events(bytes, 7 * 128, got, &err)) << err;
  EXPECT_EQ(std::memcmp(got.data(), all.data() + 128, got.size() * sizeof(wire::event)), 0);
}

// Readers on other threads while the writer appends, seals and opens segment after segment
// (the ring holds only the newest 1,024 events, so most reads go to the files): every read
// gets exactly the events written at its offsets, never past what was written.
TEST_F(EventLogSeeded, ReadersWhileTheWriterAppendsAndSeals) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto log = event_log::open(files_only(dir.path()), &rec, &err);
  ASSERT_TRUE(log) << err;
  // Each event's fields follow from its offset, so a reader can check it alone.
  auto expected = [](uint64_t offset) {
    wire::event e;
    e.offset = offset;
    e.lsn = offset / 500 + 1;
    e.timestamp = 1'000'000 + offset * 3;
    e.type = wire::event_type::transfer_posted;
    e.account_a = offset * 0x9e3779b97f4a7c15ull >> 40;
    e.amount = offset * 0xc2b2ae3d27d4eb4full;
    e.crc = event_log::event_crc(e);
    return e;
  };
  constexpr uint64_t total = 200'000;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> reads{0}, failures{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r)
    readers.emplace_back([&, r] {
      std::mt19937_64 reader_rng(seed + uint64_t(r));
      std::vector<wire::event> got;
      std::string why;
      while (!done.load()) {
        const uint64_t end = log->written_end();
        if (end < 2) continue;
        const uint64_t from = 1 + reader_rng() % (end - 1), max = 1 + reader_rng() % 3000;
        if (log->read(from, max, &got, &why) != event_log::read_status::ok || got.empty() ||
            got.size() > max) {
          if (failures.fetch_add(1) < 3) ADD_FAILURE() << "read " << from << "+" << max << ": " << why;
          continue;
        }
        for (const auto& e : got) {
          const wire::event want = expected(e.offset);
          if (e.offset != from + uint64_t(&e - got.data()) || std::memcmp(&e, &want, sizeof e) != 0) {
            if (failures.fetch_add(1) < 3) ADD_FAILURE() << "event " << e.offset << " read from " << from;
            break;
          }
        }
        reads.fetch_add(1);
      }
    });
  std::vector<wire::event> batch;
  while (log->next_offset() <= total) {
    batch.resize(1 + rng() % 700);
    for (size_t i = 0; i < batch.size(); ++i) batch[i] = expected(log->next_offset() + i);
    ASSERT_TRUE(log->append(batch, &err)) << err;
    if (rng() % 4 == 0) {
      ASSERT_TRUE(log->sync(&err)) << err;
    }
  }
  done.store(true);
  for (auto& t : readers) t.join();
  std::printf("%llu reads\n", static_cast<unsigned long long>(reads.load()));
  EXPECT_EQ(failures.load(), 0u);
  EXPECT_GT(reads.load(), 100u);
}

// Segments of 128 events, the ring the smallest (1,024): `segments` full segments and one
// more begun, so segments before the last 8 are read from their files.
std::unique_ptr<event_log> small_segments(const std::string& dir, uint64_t segments) {
  event_log_options o;
  o.dir = dir;
  o.segment_events = 128;
  o.ring_events = 1024;
  event_log_recovery rec;
  std::string err;
  auto log = event_log::open(o, &rec, &err);
  EXPECT_TRUE(log) << err;
  if (!log) return nullptr;
  auto ev = make(segments * 128 + 1, 3);
  EXPECT_TRUE(log->append(ev, &err) && log->sync(&err)) << err;
  return log;
}

// A reader opening a full segment reads its seal from the disk. It did so holding the
// log's mutex, which the writer takes to begin each new segment: the appends waited for a
// reader's disk. Now the segment is opened outside it.
// The memory an open log comes to hold is within event_log::memory_bytes, the figure a
// start's estimate takes (engine/config.cpp), and that figure is no overstatement: once
// its packed groups' ring has gone round, the log holds more than its event ring and half
// the packed ring. Before, the estimate counted the event ring alone and left out the 16
// MiB packed ring. Resident memory from /proc/self/statm; the events are made first.
TEST(EventLog, TheMemoryAnOpenLogHoldsIsWithinItsEstimate) {
  auto resident = [] {
    std::ifstream f("/proc/self/statm");
    uint64_t size = 0, pages = 0;
    f >> size >> pages;
    return pages * uint64_t(::sysconf(_SC_PAGESIZE));
  };
  test::temp_dir dir;
  event_log_options o;
  o.dir = dir.path();
  o.segment_events = 1u << 19;
  o.ring_events = 1u << 14;
  // Fields that pack to some 20 bytes an event, as a load's do: 1.2 million events go
  // round the 16 MiB packed ring.
  constexpr size_t n = 1'200'000;
  std::vector<wire::event> events = make(n, 9);
  std::mt19937_64 rng(1);
  for (auto& e : events) {
    e.account_a = (uint64_t(1) << 40) + rng() % 100'000;
    e.account_b = (uint64_t(1) << 40) + rng() % 100'000;
    e.amount = rng() % 1'000'000;
  }
  const uint64_t before = resident();
  event_log_recovery rec;
  std::string err;
  auto log = event_log::open(o, &rec, &err);
  ASSERT_TRUE(log) << err;
  for (size_t at = 0; at < n; at += 8192) {
    std::span<wire::event> part(events.data() + at, std::min<size_t>(8192, n - at));
    ASSERT_TRUE(log->append(part, &err)) << err;
  }
  ASSERT_TRUE(log->sync(&err)) << err;
  const uint64_t grew = resident() - before, estimate = event_log::memory_bytes(o.ring_events);
  EXPECT_LE(grew, estimate + (2u << 20)) << "grew " << grew << " bytes, estimated " << estimate;
  EXPECT_GT(grew, o.ring_events * sizeof(wire::event) + (8u << 20)) << "grew " << grew << " bytes";
}

TEST(EventLog, AReaderOpeningAnOldSegmentDoesNotHoldUpTheWriter) {
  test::temp_dir dir;
  auto log = small_segments(dir.path(), 20);
  ASSERT_TRUE(log);
  constexpr int stall_ms = 3000;
  failure_probes::instance().event_reader_open_stall_ms = stall_ms;  // the next opening waits
  std::atomic<bool> read_done{false};
  std::thread reader([&] {
    std::vector<wire::event> got;
    std::string why;
    EXPECT_EQ(log->read(1, 10, &got, &why), event_log::read_status::ok) << why;
    EXPECT_EQ(got.size(), 10u);
    read_done = true;
  });
  // Once the reader is in its opening (it took the probe)...
  for (int i = 0; i < 2000 && failure_probes::instance().event_reader_open_stall_ms.load() != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(failure_probes::instance().event_reader_open_stall_ms.load(), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // ... the writer fills the segment it is on and begins the next.
  const auto t0 = std::chrono::steady_clock::now();
  auto more = make(300, 4);
  std::string err;
  ASSERT_TRUE(log->append(more, &err) && log->sync(&err)) << err;
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  EXPECT_FALSE(read_done.load()) << "the append waited for the reader's opening";
  EXPECT_LT(took.count(), stall_ms / 2);
  reader.join();
  EXPECT_EQ(log->written_end(), 20u * 128 + 2 + 300);
}

// The segments readers opened are kept (8 at most), the least recently used going first.
// Before, the lowest-numbered went first: a subscriber catching up from the oldest segment
// lost it to each reader of another old one, and opened it again (its seal read from the
// disk) at its next read.
TEST(EventLog, ReadersKeepTheSegmentsTheyUseOpen) {
  test::temp_dir dir;
  auto log = small_segments(dir.path(), 30);
  ASSERT_TRUE(log);
  std::vector<wire::event> got;
  std::string why;
  auto read_segment = [&](uint64_t index) {
    ASSERT_EQ(log->read(index * 128 + 1, 4, &got, &why), event_log::read_status::ok) << why;
    ASSERT_EQ(got.size(), 4u);
    EXPECT_EQ(got[0].offset, index * 128 + 1);
  };
  const uint64_t opened = log->segments_opened();
  // Segment 0 read between reads of seven others, then an eighth, and 0 again: 0 stays.
  read_segment(0);
  for (uint64_t k = 1; k <= 7; ++k) {
    read_segment(k);
    read_segment(0);
  }
  read_segment(8);
  read_segment(0);
  EXPECT_EQ(log->segments_opened() - opened, 9u) << "segments 0..8 opened once each";
  // The least recently used (1) went for 8; reading it opens it again.
  read_segment(1);
  EXPECT_EQ(log->segments_opened() - opened, 10u);
  read_segment(0);
  EXPECT_EQ(log->segments_opened() - opened, 10u);
}

}  // namespace
}  // namespace mesob::storage
