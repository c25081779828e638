// The admin audit trail's file (storage/audit_log.hpp) on real files: entries survive
// reopening in order; a torn last entry is cut and reported; damage before the tail,
// a broken hash chain or a foreign file refuses to open and changes nothing.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "storage/audit_log.hpp"
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
  std::string err, rep;
  // A flipped payload byte in the first entry (8 magic + 40 head bytes before it).
  std::string bad = whole;
  bad[8 + 40 + 2] ^= 0x20;
  write_file(path, bad);
  EXPECT_FALSE(audit_log::open(path, &err, &rep));
  EXPECT_NE(err.find("entry 1 at offset 8 is damaged"), std::string::npos) << err;
  EXPECT_EQ(read_file(path), bad);  // nothing changed
  // A length beyond the limit in the first entry.
  bad = whole;
  bad[8 + 3] = char(0x7f);
  write_file(path, bad);
  EXPECT_FALSE(audit_log::open(path, &err, &rep));
  EXPECT_NE(err.find("(length)"), std::string::npos) << err;
  // The second entry dropped: the third's chain no longer links.
  const std::string one = make_trail(dir.path() + "/one", 1), two = make_trail(dir.path() + "/two", 2);
  write_file(path, one + whole.substr(two.size()));
  EXPECT_FALSE(audit_log::open(path, &err, &rep));
  EXPECT_NE(err.find("breaks the hash chain"), std::string::npos) << err;
  // Not a trail at all.
  write_file(path, "hello world, not a trail");
  EXPECT_FALSE(audit_log::open(path, &err, &rep));
  EXPECT_NE(err.find("bad magic"), std::string::npos) << err;
}
