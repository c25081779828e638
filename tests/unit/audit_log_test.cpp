// The admin audit trail's file (storage/audit_log.hpp) on real files: entries survive
// reopening in order; a torn last entry is cut and reported; damage before the tail,
// a broken hash chain or a foreign file refuses to open and changes nothing.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "storage/audit_log.hpp"
#include "storage/failure_probes.hpp"
#include "support/temp_dir.hpp"

using namespace mesob;
using mesob::storage::audit_log;

namespace {

std::string read_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_file(const std::string& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::string make_trail(const std::string& path, int n) {
  std::string err, rep;
  auto log = audit_log::open(path, &err, &rep);
  EXPECT_TRUE(log) << err;
  for (int i = 0; i < n; ++i) EXPECT_TRUE(log->append("entry " + std::to_string(i), &err)) << err;
  return read_file(path);
}

// A trail of `n` entries of some 210 bytes at `path`, rotated at `limit` bytes (at least
// twice for n = 100 and limit 8,192); how many rotated files it left.
size_t make_rotated_trail(const std::string& path, uint64_t limit, int n) {
  std::string err, rep;
  auto log = audit_log::open(path, &err, &rep, limit);
  EXPECT_TRUE(log) << err;
  if (!log) return 0;
  for (int i = 0; i < n; ++i) EXPECT_TRUE(log->append("entry " + std::to_string(i) + std::string(200, '.'), &err)) << err;
  return log->files_rotated();
}

}  // namespace

TEST(audit_log, entries_survive_reopening_in_order) {
  test::temp_dir dir;
  const std::string path = dir.path() + "/trail";
  make_trail(path, 5);
  std::string err, rep;
  auto log = audit_log::open(path, &err, &rep);
  ASSERT_TRUE(log) << err;
  EXPECT_TRUE(rep.empty()) << rep;
  EXPECT_EQ(log->entries(), 5u);
  const auto t = log->tail(3);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0], "entry 2");
  EXPECT_EQ(t[2], "entry 4");
  EXPECT_EQ(log->tail(100).size(), 5u);
  ASSERT_TRUE(log->append("entry 5", &err)) << err;
  log.reset();
  log = audit_log::open(path, &err, &rep);
  ASSERT_TRUE(log) << err;
  EXPECT_EQ(log->tail(1).at(0), "entry 5");
  std::string big(audit_log::payload_bytes_max + 1, 'x');
  EXPECT_FALSE(log->append(big, &err));
  EXPECT_NE(err.find("limit"), std::string::npos) << err;
  EXPECT_EQ(log->entries(), 6u);
}

// Every cut of the last entry (as an interrupted append leaves it), and zeros after the
// last whole entry, are a torn tail: cut, reported, and the earlier entries kept.
TEST(audit_log, a_torn_last_entry_is_cut_at_any_length) {
  test::temp_dir dir;
  const std::string path = dir.path() + "/trail";
  const std::string whole = make_trail(path, 3);
  const std::string two = make_trail(dir.path() + "/two", 2);
  for (size_t keep = two.size() + 1; keep < whole.size(); ++keep) {
    write_file(path, whole.substr(0, keep));
    std::string err, rep;
    auto log = audit_log::open(path, &err, &rep);
    ASSERT_TRUE(log) << "cut at " << keep << ": " << err;
    EXPECT_EQ(log->entries(), 2u) << keep;
    EXPECT_NE(rep.find("torn last entry"), std::string::npos) << rep;
    log.reset();
    EXPECT_EQ(read_file(path), two) << keep;
  }
  write_file(path, two + std::string(100, '\0'));
  std::string err, rep;
  auto log = audit_log::open(path, &err, &rep);
  ASSERT_TRUE(log) << err;
  EXPECT_EQ(log->entries(), 2u);
  EXPECT_FALSE(rep.empty());
  // The trail goes on after the cut.
  ASSERT_TRUE(log->append("entry 2 again", &err)) << err;
  log.reset();
  log = audit_log::open(path, &err, &rep);
  ASSERT_TRUE(log) << err;
  EXPECT_EQ(log->entries(), 3u);
  EXPECT_TRUE(rep.empty());
}

TEST(audit_log, damage_before_the_tail_or_a_broken_chain_refuses_to_open) {
  test::temp_dir dir;
  const std::string path = dir.path() + "/trail";
  const std::string whole = make_trail(path, 3);
  constexpr size_t first = 40;  // the header: magic and start chain
  std::string err, rep;
  auto refused = [&](const std::string& bytes, const std::string& why) {
    write_file(path, bytes);
    EXPECT_FALSE(audit_log::open(path, &err, &rep)) << why;
    EXPECT_NE(err.find(why), std::string::npos) << err;
    EXPECT_EQ(read_file(path), bytes) << "nothing changed: " << why;
  };
  // A flipped payload byte in the first entry: a valid entry follows it.
  std::string bad = whole;
  bad[first + 40 + 2] ^= 0x20;
  refused(bad, "entry 1 at offset 40 is damaged (a valid entry follows it");
  // A length beyond the limit in the first entry.
  bad = whole;
  bad[first + 3] = char(0x7f);
  refused(bad, "(impossible length)");
  // A length that runs past the end of the file, in an earlier entry: not torn, since
  // whole entries follow it.
  bad = whole;
  bad[first] = char(100);
  refused(bad, "entry 1 at offset 40 is damaged (a valid entry follows it");
  // The last entry whole, its length flipped upward (still under the limit): it looks like
  // an entry's prefix, but the rest of the file passes its checksum. Before, it was cut.
  bad = whole;
  const size_t last = make_trail(dir.path() + "/first-two", 2).size();  // where entry 3 begins
  bad[last + 1] ^= 0x02;  // + 512 bytes
  refused(bad, "entry 3 at offset " + std::to_string(last) + " is damaged (its length field says");
  // The last entry whole, with a flipped byte and no block left unwritten.
  bad = whole;
  bad[bad.size() - 2] ^= 0x01;
  refused(bad, "entry 3 at offset");
  EXPECT_NE(err.find("(checksum)"), std::string::npos) << err;
  // The second entry dropped: the third's chain no longer links.
  const std::string one = make_trail(dir.path() + "/one", 1), two = make_trail(dir.path() + "/two", 2);
  refused(one + whole.substr(two.size()), "breaks the hash chain");
  // More bytes after the last whole entry than one append writes.
  refused(whole + std::string(5000, 'x'), "more bytes follow than one entry holds");
  // Not a trail at all.
  refused("hello world, not a trail at all, no magic here", "bad magic");
}

// A whole-length last entry with a block that was never written (zeros) is what an
// interrupted append leaves: torn, cut.
TEST(audit_log, a_last_entry_with_an_unwritten_block_is_torn) {
  test::temp_dir dir;
  const std::string path = dir.path() + "/trail";
  std::string err, rep;
  {
    auto log = audit_log::open(path, &err, &rep);
    ASSERT_TRUE(log) << err;
    ASSERT_TRUE(log->append("small", &err)) << err;
    ASSERT_TRUE(log->append(std::string(4000, 'y'), &err)) << err;  // spans the 4 KiB boundary
  }
  std::string bytes = read_file(path);
  ASSERT_GT(bytes.size(), 4096u);
  for (size_t i = 4096; i < bytes.size(); ++i) bytes[i] = 0;  // its second block never reached the disk
  write_file(path, bytes);
  auto log = audit_log::open(path, &err, &rep);
  ASSERT_TRUE(log) << err;
  EXPECT_EQ(log->entries(), 1u);
  EXPECT_NE(rep.find("torn last entry"), std::string::npos) << rep;
}

// Past file_bytes_max the file rotates: the full one is kept under a new name, the
// chain runs on in the new file, and an interrupted rotation is finished at open.
TEST(audit_log, rotates_past_its_size_limit_and_the_chain_runs_on) {
  test::temp_dir dir;
  const std::string path = dir.path() + "/trail";
  constexpr uint64_t limit = 8192;
  std::string err, rep;
  storage::chain_hash head{};
  size_t rotations = 0;
  {
    auto log = audit_log::open(path, &err, &rep, limit);
    ASSERT_TRUE(log) << err;
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(log->append("entry " + std::to_string(i) + std::string(200, '.'), &err)) << err;
    EXPECT_LT(log->entries(), 100u);
    EXPECT_EQ(log->tail(1).at(0).substr(0, 9), "entry 99.");
    EXPECT_EQ(log->tail(100).size(), 100u);  // the tail spans the rotations
    head = log->head();
    rotations = log->files_rotated();
  }
  size_t archived = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir.path())) {
    const auto name = f.path().filename().string();
    if (name != "trail") {
      ++archived;
      EXPECT_EQ(name.rfind("trail.", 0), 0u) << name;
      EXPECT_LE(f.file_size(), limit) << name;
    }
  }
  EXPECT_GE(archived, 2u);
  EXPECT_EQ(rotations, archived);
  auto log = audit_log::open(path, &err, &rep, limit);
  ASSERT_TRUE(log) << err;
  EXPECT_TRUE(log->head() == head);
  EXPECT_EQ(log->files_rotated(), archived) << "found at open";
  log.reset();
  // A crash between the two renames of a rotation: only the new file is left.
  ASSERT_EQ(::rename(path.c_str(), (path + ".new").c_str()), 0);
  log = audit_log::open(path, &err, &rep, limit);
  ASSERT_TRUE(log) << err;
  EXPECT_NE(rep.find("interrupted rotation was finished"), std::string::npos) << rep;
  EXPECT_EQ(log->files_rotated(), archived);
  EXPECT_TRUE(log->head() == head);
  log.reset();
  // With rotated files beside it, a current file missing or cut to nothing is a trail
  // lost, refused by name. Before, a fresh trail started (or the cut header was
  // "completed") with its chain from zero, and the history was silently cut off.
  ASSERT_EQ(::rename(path.c_str(), (dir.path() + "/kept").c_str()), 0);
  EXPECT_FALSE(audit_log::open(path, &err, &rep, limit));
  EXPECT_NE(err.find("is missing while"), std::string::npos) << err;
  EXPECT_NE(err.find("rotated file(s) of it remain"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(path)) << "nothing created";
  { std::ofstream cut(path, std::ios::trunc); }
  EXPECT_FALSE(audit_log::open(path, &err, &rep, limit));
  EXPECT_NE(err.find("is cut short while"), std::string::npos) << err;
  ASSERT_EQ(::rename((dir.path() + "/kept").c_str(), path.c_str()), 0);
  log = audit_log::open(path, &err, &rep, limit);
  ASSERT_TRUE(log) << err;
  EXPECT_TRUE(log->head() == head);
}

// A rotation that fails part way is taken up where it stopped by the next append. Before,
// a failed second rename left no current file, and every later rotation failed at its
// first rename until a restart; a failed directory sync after both renames left the
// writer on the archived file, and the next append rotated again (an empty archived file).
TEST(audit_log, a_rotation_that_fails_part_way_is_finished_by_the_next_append) {
  for (const int step : {1, 2}) {
    SCOPED_TRACE(step == 1 ? "the second rename fails" : "the directory sync fails");
    test::temp_dir dir;
    const std::string path = dir.path() + "/trail";
    constexpr uint64_t limit = 8192;
    std::string err, rep;
    storage::chain_hash head{};
    size_t refused = 0, written = 0;
    {
      auto log = audit_log::open(path, &err, &rep, limit);
      ASSERT_TRUE(log) << err;
      storage::failure_probes::instance().audit_rotation_fault = step;
      for (int i = 0; i < 100; ++i) {
        if (log->append("entry " + std::to_string(i) + std::string(200, '.'), &err)) {
          ++written;
        } else {
          ++refused;
          EXPECT_NE(err.find(step == 1 ? "in place" : "directory fsync"), std::string::npos) << err;
        }
      }
      EXPECT_EQ(storage::failure_probes::instance().audit_rotation_fault.load(), 0) << "the fault was met";
      EXPECT_EQ(refused, 1u) << "only the append that met the fault";
      head = log->head();
      size_t archived = 0;
      for (const auto& f : std::filesystem::directory_iterator(dir.path())) {
        const auto name = f.path().filename().string();
        if (name == "trail") continue;
        ++archived;
        EXPECT_EQ(name.rfind("trail.", 0), 0u) << name;
        EXPECT_NE(name, "trail.new");
        EXPECT_GT(f.file_size(), limit / 2) << name << ": every archived file holds a full file's entries";
      }
      EXPECT_GE(archived, 2u);
      EXPECT_EQ(log->files_rotated(), archived);
    }
    // Every entry written is in the trail, its chain whole.
    auto log = audit_log::open(path, &err, &rep, limit);
    ASSERT_TRUE(log) << err;
    EXPECT_TRUE(rep.empty()) << rep;
    EXPECT_TRUE(log->head() == head);
    EXPECT_EQ(written, 99u);
  }
}

// An append that fails (its fdatasync) is cut back off the file; if that cut fails too,
// the next append cuts first. Before, the cut's failure was ignored: the next entry was
// written over the failed one's start, the rest left behind it, and the trail refused
// at the next open ("impossible length"): every admin command refused from then on.
TEST(audit_log, a_failed_append_is_cut_off_before_the_next) {
  test::temp_dir dir;
  const std::string path = dir.path() + "/trail";
  make_trail(path, 3);
  std::string err, rep;
  auto log = audit_log::open(path, &err, &rep);
  ASSERT_TRUE(log) << err;
  const auto whole = std::filesystem::file_size(path);
  auto& probes = storage::failure_probes::instance();
  probes.audit_sync_errno = EIO;
  probes.audit_cut_failures = 1;
  EXPECT_FALSE(log->append("a long entry that fails " + std::string(300, 'x'), &err));
  EXPECT_NE(err.find("cut again before the next entry"), std::string::npos) << err;
  EXPECT_GT(std::filesystem::file_size(path), whole + 300) << "its bytes are still there";
  EXPECT_EQ(log->entries(), 3u);
  // The next append cuts first; its own cut failing, it is refused, nothing written.
  probes.audit_cut_failures = 1;
  EXPECT_FALSE(log->append("short", &err));
  EXPECT_NE(err.find("cutting a failed entry off"), std::string::npos) << err;
  ASSERT_TRUE(log->append("short", &err)) << err;
  EXPECT_EQ(log->entries(), 4u);
  log.reset();
  log = audit_log::open(path, &err, &rep);
  ASSERT_TRUE(log) << err;
  EXPECT_TRUE(rep.empty()) << rep;
  EXPECT_EQ(log->entries(), 4u);
  EXPECT_EQ(log->tail(1).at(0), "short");
  EXPECT_EQ(probes.audit_cut_failures.load(), 0);
}

// The newest rotated file must end at the chain the current file starts from: the
// rotated file cut at an entry boundary, or the current file replaced by a first file's
// header, is refused by name, nothing changed. Before, both opened without a note (each
// file's own entries were whole).
TEST(audit_log, a_rotated_file_cut_or_a_current_file_replaced_is_refused) {
  test::temp_dir dir;
  const std::string path = dir.path() + "/trail";
  constexpr uint64_t limit = 8192;
  std::string err, rep;
  ASSERT_GE(make_rotated_trail(path, limit, 100), 2u);
  std::string newest;
  for (const auto& f : std::filesystem::directory_iterator(dir.path())) {
    const auto name = f.path().filename().string();
    if (name != "trail" && (name.size() > newest.size() || (name.size() == newest.size() && name > newest))) newest = name;
  }
  const std::string rotated = dir.path() + "/" + newest, rotated_bytes = read_file(rotated);
  const std::string current_bytes = read_file(path);
  // Its last entry dropped: 4 + 4 + 32 bytes of head and a 208-byte payload.
  const size_t entry = 40 + std::string("entry 00").size() + 200;
  ASSERT_GT(rotated_bytes.size(), 40 + entry);
  write_file(rotated, rotated_bytes.substr(0, rotated_bytes.size() - entry));
  EXPECT_FALSE(audit_log::open(path, &err, &rep, limit));
  EXPECT_NE(err.find("but its newest rotated file " + newest + " ends at"), std::string::npos) << err;
  EXPECT_EQ(read_file(path), current_bytes) << "nothing changed";
  write_file(rotated, rotated_bytes);
  // The current file replaced by a first file's header (chain zero).
  std::string fresh = "MSBAUD01" + std::string(32, '\0');
  write_file(path, fresh);
  EXPECT_FALSE(audit_log::open(path, &err, &rep, limit));
  EXPECT_NE(err.find("starts from chain 0000000000"), std::string::npos) << err;
  // A rotated file damaged is named.
  std::string damaged = rotated_bytes;
  damaged[damaged.size() - 3] ^= 1;
  write_file(path, current_bytes);
  write_file(rotated, damaged);
  EXPECT_FALSE(audit_log::open(path, &err, &rep, limit));
  EXPECT_NE(err.find("its newest rotated file " + newest + ": damaged at offset"), std::string::npos) << err;
  write_file(rotated, rotated_bytes);
  auto log = audit_log::open(path, &err, &rep, limit);
  ASSERT_TRUE(log) << err;
  EXPECT_TRUE(rep.empty()) << rep;
}

// A first file whose header a crash left as zeros (its size written, its bytes not) is a
// torn header, completed; a header cut short that names another chain than a first
// file's is refused as cut short, not as "bad magic".
TEST(audit_log, a_torn_first_header_of_zeros_is_completed) {
  for (const size_t n : {size_t(10), size_t(40)}) {
    test::temp_dir dir;
    const std::string path = dir.path() + "/trail";
    write_file(path, std::string(n, '\0'));
    std::string err, rep;
    auto log = audit_log::open(path, &err, &rep);
    ASSERT_TRUE(log) << n << ": " << err;
    EXPECT_NE(rep.find("a torn header was completed"), std::string::npos) << rep;
    ASSERT_TRUE(log->append("after", &err)) << err;
    log.reset();
    log = audit_log::open(path, &err, &rep);
    ASSERT_TRUE(log) << err;
    EXPECT_EQ(log->entries(), 1u);
  }
  test::temp_dir dir;
  const std::string path = dir.path() + "/trail";
  write_file(path, "MSBAUD01" + std::string(5, '\0') + "\x07" + std::string(6, '\0'));
  std::string err, rep;
  EXPECT_FALSE(audit_log::open(path, &err, &rep));
  EXPECT_NE(err.find("its header is cut short (20 of 40 bytes)"), std::string::npos) << err;
}

// Rotated files are named by the wall clock: one set back between two rotations makes an
// older file look newest. The current file following another rotated file still opens
// (the chain check finds the file it follows), and the next rotation is numbered past
// every file there.
TEST(audit_log, a_clock_set_back_between_rotations_is_no_damage) {
  test::temp_dir dir;
  const std::string path = dir.path() + "/trail";
  constexpr uint64_t limit = 8192;
  std::string err, rep;
  ASSERT_GE(make_rotated_trail(path, limit, 100), 2u);
  std::vector<std::string> names;
  for (const auto& f : std::filesystem::directory_iterator(dir.path()))
    if (f.path().filename() != "trail") names.push_back(f.path().filename().string());
  std::sort(names.begin(), names.end());
  // The newest renamed as if the clock had read one year before the oldest.
  const uint64_t oldest = std::stoull(names.front().substr(6));
  const std::string back = "trail." + std::to_string(oldest - 365ull * 86400 * 1'000'000'000);
  ASSERT_EQ(::rename((dir.path() + "/" + names.back()).c_str(), (dir.path() + "/" + back).c_str()), 0);
  auto log = audit_log::open(path, &err, &rep, limit);
  ASSERT_TRUE(log) << err;
  EXPECT_TRUE(rep.empty()) << rep;
  const auto rotated_before = log->files_rotated();
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(log->append("more " + std::to_string(i) + std::string(200, '.'), &err)) << err;
  ASSERT_GT(log->files_rotated(), rotated_before);
  log.reset();
  // The newest by number is now the file the current one follows.
  log = audit_log::open(path, &err, &rep, limit);
  ASSERT_TRUE(log) << err;
}
