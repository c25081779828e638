// The event log on real files: offsets, reads across segments, torn tails, damage,
// retention.
#include "storage/event_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

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

std::unique_ptr<event_log> open_log(const std::string& dir, event_log_recovery* rec, uint64_t seg = 128,
                                    uint64_t retention_bytes = 0) {
  event_log_options o;
  o.dir = dir;
  o.segment_events = seg;
  o.retention_bytes = retention_bytes;
  std::string err;
  auto log = event_log::open(o, rec, &err);
  EXPECT_TRUE(log) << err;
  return log;
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

TEST(EventLog, TornTailIsCutAfterTheLastWholeEvent) {
  test::temp_dir dir;
  event_log_recovery rec;
  {
    auto log = open_log(dir.path(), &rec);
    auto a = make(132, 3);
    std::string err;
    ASSERT_TRUE(log->append(a, &err) && log->sync(&err)) << err;
  }
  std::filesystem::resize_file(event_log::segment_path(dir.path(), 1), 4 * sizeof(wire::event));  // as written, unpadded
  // Half an event after the last whole one, as a crash mid-write leaves it.
  const std::string last = event_log::segment_path(dir.path(), 1);
  {
    std::ofstream f(last, std::ios::app | std::ios::binary);
    const std::string junk(40, '\x5a');
    f << junk;
  }
  auto log = open_log(dir.path(), &rec);
  EXPECT_EQ(rec.next_offset, 133u);
  EXPECT_NE(rec.torn_tail.find("events-0000000000000001.log"), std::string::npos) << rec.torn_tail;
  EXPECT_EQ(std::filesystem::file_size(last), 4u * sizeof(wire::event));
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

// A power cut after unsynced appends: the disk kept a later block of the last segment
// but not an earlier one. Opening cuts at the first damaged event, so nothing after the
// hole survives (the engine's replay writes those events again).
TEST(EventLog, AHoleInTheLastSegmentCutsEverythingAfterIt) {
  test::temp_dir dir;
  event_log_recovery rec;
  {
    auto log = open_log(dir.path(), &rec);
    auto a = make(128, 3), b = make(72, 4);  // segment 1: offsets 129..200 in two blocks
    std::string err;
    ASSERT_TRUE(log->append(a, &err) && log->append(b, &err)) << err;
    EXPECT_EQ(log->durable_end(), 129u);
  }
  const std::string last = event_log::segment_path(dir.path(), 1);
  ASSERT_GT(std::filesystem::file_size(last), 4096u);
  {
    std::fstream f(last, std::ios::in | std::ios::out | std::ios::binary);
    const std::string zeros(4096, '\0');
    f.write(zeros.data(), std::streamsize(zeros.size()));  // the first block never reached the disk
  }
  auto log = open_log(dir.path(), &rec);
  ASSERT_TRUE(log);
  EXPECT_EQ(rec.next_offset, 129u);
  EXPECT_EQ(rec.last_lsn, 3u);
  EXPECT_NE(rec.torn_tail.find("events-0000000000000001.log"), std::string::npos) << rec.torn_tail;
  EXPECT_EQ(std::filesystem::file_size(last), 0u);
  std::vector<wire::event> got;
  std::string err;
  ASSERT_EQ(log->read(1, 300, &got, &err), event_log::read_status::ok) << err;
  EXPECT_EQ(got.size(), 128u);
  auto c = make(2, 4);
  ASSERT_TRUE(log->append(c, &err) && log->sync(&err)) << err;
  ASSERT_EQ(log->read(129, 10, &got, &err), event_log::read_status::ok) << err;
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].offset, 129u);
}

TEST(EventLog, DamageBeforeTheLastSegmentRefusesToOpen) {
  test::temp_dir dir;
  event_log_recovery rec;
  {
    auto log = open_log(dir.path(), &rec);
    auto a = make(320, 3);
    std::string err;
    ASSERT_TRUE(log->append(a, &err) && log->sync(&err)) << err;
  }
  const std::string first = event_log::segment_path(dir.path(), 0);
  {
    const int fd = ::open(first.c_str(), O_WRONLY);
    const uint8_t bad = 0xff;
    ASSERT_EQ(::pwrite(fd, &bad, 1, 127 * 96 + 40), 1);  // inside the segment's last event
    ::close(fd);
  }
  event_log_options o;
  o.dir = dir.path();
  o.segment_events = 128;
  std::string err;
  EXPECT_FALSE(event_log::open(o, &rec, &err));
  EXPECT_NE(err.find("events-0000000000000000.log"), std::string::npos) << err;

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

TEST(EventLog, AnEmptyLastSegmentContinuesWhereTheFullOneEnded) {
  test::temp_dir dir;
  event_log_recovery rec;
  {
    auto log = open_log(dir.path(), &rec);
    auto a = make(256, 5);  // exactly two full segments
    std::string err;
    ASSERT_TRUE(log->append(a, &err) && log->sync(&err)) << err;
  }
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

TEST(EventLog, CutFromRemovesTheNewestRecordsEventsAcrossSegments) {
  test::temp_dir dir;
  event_log_recovery rec;
  auto log = open_log(dir.path(), &rec);
  auto a = make(100, 1), b = make(60, 2);  // lsn 2's events: offsets 101..160, segments 0 and 1
  std::string err;
  ASSERT_TRUE(log->append(a, &err) && log->append(b, &err) && log->sync(&err)) << err;
  uint64_t cut = 0;
  ASSERT_TRUE(log->cut_from(2, &cut, &err)) << err;
  EXPECT_EQ(cut, 60u);
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
  auto a = make(256, 9);                           // two full segments, nothing after
  std::string err;
  ASSERT_TRUE(log->append(a, &err) && log->sync(&err)) << err;
  EXPECT_EQ(log->apply_retention(0), 1u);
  EXPECT_EQ(log->first_offset(), 129u);
  EXPECT_EQ(log->apply_retention(0), 0u);
  log.reset();
  auto again = open_log(dir.path(), &rec, 128, 1);
  EXPECT_EQ(rec.first_offset, 129u);
  EXPECT_EQ(rec.next_offset, 257u) << "offsets continue after the newest event";
}

TEST(EventLog, RetentionDropsWholeOldSegmentsAndRefusesTheirOffsets) {
  test::temp_dir dir;
  event_log_recovery rec;
  // 128 events of 96 bytes a segment; keep at most 2 segments' worth.
  auto log = open_log(dir.path(), &rec, 128, 2 * 128 * 96);
  auto a = make(560, 9);
  std::string err;
  ASSERT_TRUE(log->append(a, &err) && log->sync(&err)) << err;
  EXPECT_EQ(log->apply_retention(0), 3u);  // 560 events: segments 0..4; 3 dropped, 2 left (the newest partly full)
  EXPECT_EQ(log->first_offset(), 385u);
  std::vector<wire::event> got;
  EXPECT_EQ(log->read(384, 5, &got, &err), event_log::read_status::truncated);
  ASSERT_EQ(log->read(385, 5, &got, &err), event_log::read_status::ok);
  EXPECT_EQ(got.front().offset, 385u);
  EXPECT_FALSE(std::filesystem::exists(event_log::segment_path(dir.path(), 2)));
  log.reset();
  auto again = open_log(dir.path(), &rec, 128, 2 * 128 * 96);
  EXPECT_EQ(rec.first_offset, 385u);
  EXPECT_EQ(rec.next_offset, 561u);
}

}  // namespace
}  // namespace mesob::storage
