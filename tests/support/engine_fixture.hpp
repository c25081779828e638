// An engine on a fresh data directory with a manual clock, for tests.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iterator>
#include <span>
#include <vector>
#include <memory>
#include <optional>
#include <ostream>
#include <thread>

#include "actors/placement.hpp"
#include "engine/engine.hpp"
#include "storage/failure_probes.hpp"
#include "storage/snapshot.hpp"
#include "storage/wal.hpp"
#include "support/temp_dir.hpp"

namespace mesob::test {

inline wire::account make_account(uint64_t id, uint16_t flags = 0, const char (&cur)[4] = "ETB") {
  wire::account a;
  a.id = id;
  a.owner_id = id * 10;
  a.currency = wire::currency(cur);
  a.kind = wire::account_kind::customer_wallet;
  a.flags = flags;
  return a;
}

inline wire::transfer make_transfer(uint64_t id, uint64_t dr, uint64_t cr, uint64_t amount,
                                    uint16_t flags = 0, const char (&cur)[4] = "ETB") {
  wire::transfer t;
  t.id = {id, 0};
  t.debit_account_id = dr;
  t.credit_account_id = cr;
  t.amount = amount;
  t.flags = flags;
  t.currency = wire::currency(cur);
  return t;
}

// An equb group's create operation: ETB, a day's period, the given rotation (1 fixed
// order, 2 lottery, 3 bidding) and pay-what-is-there; callers set the rest.
inline wire::equb_op make_equb_create(uint64_t group, uint64_t fee_account, uint64_t contribution,
                                      uint8_t rotation = 1) {
  wire::equb_op op;
  op.kind = wire::equb_op_kind::create;
  op.group_id = group;
  op.fee_account_id = fee_account;
  op.currency = wire::currency("ETB");
  op.contribution = contribution;
  op.period_ns = 86'400'000'000'000ull;
  op.rotation = rotation;
  op.default_policy = 1;
  return op;
}

// An equb group's replace_account operation: `to` wherever the group names `from`.
inline wire::equb_op make_equb_replace(uint64_t group, uint64_t from, uint64_t to) {
  wire::equb_op op;
  op.kind = wire::equb_op_kind::replace_account;
  op.group_id = group;
  op.wallet = from;
  op.amount = to;
  return op;
}

// An equb group's write_off operation: all of seat `seat`'s debts (`amount`), its wallet `wallet`.
inline wire::equb_op make_equb_write_off(uint64_t group, uint32_t seat, uint64_t wallet, uint64_t amount) {
  wire::equb_op op;
  op.kind = wire::equb_op_kind::write_off;
  op.group_id = group;
  op.seat = seat;
  op.wallet = wallet;
  op.amount = amount;
  return op;
}

// A gateway's registration: mobile money, payments, ETB settled through `etb_account`,
// a 32-byte secret (0x40, 0x41, ...).
inline wire::gateway_op make_gateway_registration(const char* id, uint64_t etb_account, uint32_t priority = 10,
                                                  uint32_t answer_timeout_ms = 5000) {
  wire::gateway_op op{};
  op.kind = wire::gateway_op_kind::register_gateway;
  std::memcpy(op.id, id, std::min(std::strlen(id), sizeof op.id));
  op.rail = 1;
  op.priority = priority;
  op.roles = 1;  // wire::roles::payments
  op.answer_timeout_ms = answer_timeout_ms;
  op.currencies_n = 1;
  op.currencies[0] = {wire::currency("ETB"), 0, etb_account};
  op.secret_bytes = 32;
  for (int i = 0; i < 32; ++i) op.secret[i] = uint8_t(0x40 + i);
  return op;
}

// Creates of ids first..last in one batch over two shards that hold `held` each already
// and at most `share` (engine/README.md "Capacity"): checks `results` (one per id, in
// order) say ok until a shard holds its share and `full` after, and returns the ids made
// and refused.
struct capacity_split {
  std::vector<uint64_t> made, refused;
};
inline capacity_split expect_capacity_split(uint64_t first, uint64_t last, uint32_t held[2], uint32_t share,
                                            const std::vector<wire::result>& results, wire::result full) {
  capacity_split out;
  for (uint64_t id = first; id <= last; ++id) {
    uint32_t& n = held[actors::shard_of(id, 2)];
    const bool room = n < share;
    n += room;
    EXPECT_EQ(results.at(id - first), room ? wire::result::ok : full) << "id " << id;
    (room ? out.made : out.refused).push_back(id);
  }
  return out;
}

// A test engine's configuration: real files, no pinning, checkpoints only on demand.
// Small log segments (test_wal_segment_mib): every open writes a fresh segment's zeros
// and the next one's behind it, which at 16 MiB (64 MiB: mesobd's default) took much of a
// quick test's time.
inline constexpr uint64_t test_wal_segment_mib = 4, test_wal_group_mib = 1;
inline engine::config test_config(const std::string& dir, uint32_t shards = 2) {
  engine::config cfg;
  cfg.data_dir = dir;
  cfg.shards = shards;
  cfg.pin_shards = false;
  cfg.checkpoint_interval_ms = 0;
  cfg.wal_segment_mib = test_wal_segment_mib;
  cfg.wal_group_mib = test_wal_group_mib;
  return cfg;
}

// Flips bits `mask` of byte `at` of every copy of `bytes` in `file` (a snapshot's pages of
// older checkpoints may hold a row too): damage on the disk. Returns how many copies.
inline int flip_every_copy(const std::string& file, const std::string& bytes, size_t at, char mask) {
  std::ifstream in(file, std::ios::binary);
  const std::string all{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::fstream f(file, std::ios::binary | std::ios::in | std::ios::out);
  int copies = 0;
  for (size_t pos = all.find(bytes); pos != std::string::npos; pos = all.find(bytes, pos + 1), ++copies) {
    const char c = char(all[pos + at] ^ mask);
    f.seekp(std::streamoff(pos + at));
    f.write(&c, 1);
  }
  return copies;
}

// Rewrites row `key` of table `t` in the snapshot of a closed engine's data directory:
// `change` gets its bytes and returns the new ones (empty: it failed, and said so).
// Committed without meta, as a checkpoint's records flush is.
inline void rewrite_snapshot_row(const std::string& data_dir, storage::table t, uint64_t key,
                                 const std::function<std::vector<uint8_t>(std::span<const uint8_t>)>& change) {
  std::string row, err;
  auto s = storage::snapshot_store::open(data_dir + "/snapshot", 1ull << 30, &err);
  ASSERT_TRUE(s) << err;
  ASSERT_TRUE(s->get(t, key, &row, &err)) << "row " << key << " of table " << storage::table_name(t) << ": " << err;
  const std::vector<uint8_t> next = change({reinterpret_cast<const uint8_t*>(row.data()), row.size()});
  ASSERT_FALSE(next.empty());
  auto w = s->begin(&err);
  ASSERT_TRUE(w) << err;
  ASSERT_TRUE(w->put(t, key, next)) << w->error();
  ASSERT_TRUE(w->commit_without_meta()) << w->error();
}

// Damages row `key` of table `t` in the snapshot of a closed engine's data directory:
// bits `mask` of its byte `at` (npos: the middle one), every copy. Returns the copies
// flipped (0, with a failure, if the row cannot be read).
inline int damage_snapshot_row(const std::string& data_dir, storage::table t, uint64_t key, char mask,
                               size_t at = std::string::npos) {
  const std::string snap_dir = data_dir + "/snapshot";
  std::string row, err;
  {
    auto s = storage::snapshot_store::open(snap_dir, 1ull << 30, &err);
    if (!s || !s->get(t, key, &row, &err)) {
      ADD_FAILURE() << "row " << key << " of table " << storage::table_name(t) << ": " << (err.empty() ? "absent" : err);
      return 0;
    }
  }
  return flip_every_copy(snap_dir + "/data.mdb", row, at == std::string::npos ? row.size() / 2 : at, mask);
}

// test_config with 2 MiB log segments and a limit of four of them on the log kept
// (wal_kept_max_mib 8): the limit a few bulky batches reach.
inline engine::config log_limit_config(const std::string& dir) {
  auto cfg = test_config(dir, 2);
  cfg.wal_segment_mib = 2;
  cfg.wal_kept_max_mib = 8;
  return cfg;
}

inline std::unique_ptr<engine::engine> open_engine(const engine::config& cfg) {
  std::string err;
  auto e = engine::engine::open(cfg, &err);
  EXPECT_TRUE(e) << err;
  return e;
}

// Accounts 1..n in ETB, in batches of 8,192.
inline void create_accounts(engine::engine& e, uint64_t n) {
  for (uint64_t first = 1; first <= n; first += 8192) {
    std::vector<wire::account> batch;
    for (uint64_t id = first; id < std::min(n + 1, first + 8192); ++id) batch.push_back(make_account(id));
    e.create_accounts(batch);
  }
}

// Polls `done` every 10 ms for up to 20 s: whether it came true.
template <class F>
bool eventually(F done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// Checkpoints (snapshot commits with meta) fail with EIO `n` times while it lives.
struct failing_checkpoints {
  explicit failing_checkpoints(int n) { storage::failure_probes::instance().snapshot_commit_failures = n; }
  ~failing_checkpoints() { storage::failure_probes::instance().snapshot_commit_failures = 0; }
  failing_checkpoints(const failing_checkpoints&) = delete;
  failing_checkpoints& operator=(const failing_checkpoints&) = delete;
};

// 8,192 transfers from id `*next` on (which moves past them when they are taken), each of
// 1 from accounts 1..50 to 51..100, their user_data a hash: 8 bytes a transfer the log
// cannot pack, so batches fill log segments quickly. Returns the engine's status.
inline engine::status bulky_batch(engine::engine& e, uint64_t* next) {
  std::vector<wire::transfer> b;
  for (uint64_t i = 0; i < 8192; ++i) {
    wire::transfer t = make_transfer(*next + i, 1 + i % 50, 51 + i % 50, 1);
    const uint64_t z = t.id.lo * 0x9e3779b97f4a7c15ull;
    t.user_data = z ^ (z >> 29) ^ (z << 17);
    b.push_back(t);
  }
  const auto st = e.create_transfers(b).st;
  if (st == engine::status::ok) *next += 8192;
  return st;
}

// Bulky batches until the engine refuses one (at most 400): its status.
inline engine::status write_until_refused(engine::engine& e, uint64_t* next) {
  engine::status st = engine::status::ok;
  for (int i = 0; i < 400 && st == engine::status::ok; ++i) st = bulky_batch(e, next);
  return st;
}

// A batch record (engine/engine.cpp's batch record header and `ops` as its body).
struct batch_record_spec {
  uint16_t version;
  uint16_t kind;
  uint32_t count;
  std::vector<uint8_t> ops;
  uint16_t flags = 0;
};

// A fresh log (under `data`) of these records, written with the engine's own log writer
// (timestamps 1 ms apart): as an older build wrote them, or bytes no build writes.
inline void write_batch_records(const std::string& data, const std::vector<batch_record_spec>& records) {
  ASSERT_TRUE(std::filesystem::create_directories(data + "/wal"));
  storage::wal_options o;
  o.dir = data + "/wal";
  o.segment_bytes = test_wal_segment_mib << 20;
  o.group_bytes_max = test_wal_group_mib << 20;
  std::string err;
  auto w = storage::wal_writer::open(o, {}, -1, &err);
  ASSERT_TRUE(w) << err;
  uint64_t ts = 1'700'000'000'000'000'000ull;
  for (const auto& r : records) {
    struct {
      uint16_t kind, flags;
      uint32_t count;
      uint64_t timestamp_base;
    } header{r.kind, r.flags, r.count, ts += 1'000'000};
    static_assert(sizeof header == 16);
    std::vector<uint8_t> h(sizeof header);
    std::memcpy(h.data(), &header, sizeof header);
    const std::span<const uint8_t> pieces[] = {h, r.ops};
    ASSERT_NE(w->stage(storage::record_kind::batch, r.version, header.timestamp_base, pieces), 0u);
  }
  w->submit();
  ASSERT_EQ(w->wait(-1), storage::wal_writer::wait_status::committed);
}

inline void write_batch_record(const std::string& data, uint16_t version, uint16_t kind, uint32_t count,
                               const std::vector<uint8_t>& ops, uint16_t flags = 0) {
  write_batch_records(data, {{version, kind, count, ops, flags}});
}

// A batch record's body: the operations as they are, byte for byte.
template <class T>
std::vector<uint8_t> ops_bytes(const std::vector<T>& ops) {
  std::vector<uint8_t> b(ops.size() * sizeof(T));
  if (!ops.empty()) std::memcpy(b.data(), ops.data(), b.size());
  return b;
}

class engine_fixture {
 public:
  // checkpoint_on_close false: every restart recovers by replaying the log.
  explicit engine_fixture(uint32_t shards, bool checkpoint_on_close = true)
      : shards_(shards), checkpoint_on_close_(checkpoint_on_close) {
    open();
  }
  ~engine_fixture() { engine_.reset(); }

  void open() {
    std::string err;
    engine_ = engine::engine::open(config(), &err);
    ASSERT_TRUE(engine_) << err;
  }
  // The configuration open() uses (its data directory, clock and settings).
  engine::config config() {
    engine::config cfg;
    cfg.data_dir = dir_.path();
    cfg.shards = shards_;
    cfg.pin_shards = false;
    cfg.checkpoint_interval_ms = 0;
    cfg.tick_ms = 5;
    cfg.wal_segment_mib = test_wal_segment_mib;
    cfg.wal_group_mib = test_wal_group_mib;
    cfg.accounts_hint = 1024;
    cfg.checkpoint_on_close = checkpoint_on_close_;
    cfg.events = events_;
    cfg.clock = [this] { return clock_.load(); };
    if (resident_max_ != 0) cfg.transfers_resident_max = resident_max_;
    if (accounts_max_ != 0) cfg.accounts_max = accounts_max_;
    if (groups_max_ != 0) cfg.groups_max = groups_max_;
    if (pending_max_ != 0) cfg.pending_max = pending_max_;
    if (transfers_max_ != 0) cfg.transfers_max = transfers_max_;
    if (flush_gap_us_) cfg.wal_flush_gap_us = *flush_gap_us_;
    return cfg;
  }
  // The resident window of transfer records of the next open() (0: the default).
  void set_resident_max(uint64_t n) { resident_max_ = n; }
  // The accounts_max, groups_max and pending_max of the next open() (0: the default).
  void set_capacity(uint64_t accounts_max, uint64_t groups_max, uint64_t pending_max = 0) {
    accounts_max_ = accounts_max;
    groups_max_ = groups_max;
    pending_max_ = pending_max;
  }
  // The transfers_max of the next open() (0: the default).
  void set_transfers_max(uint64_t n) { transfers_max_ = n; }
  // The log's flush gap of the next open(), us (unset: the default).
  void set_flush_gap_us(uint32_t us) { flush_gap_us_ = us; }
  // Closes the engine (as restart() does) without opening it again.
  void close() { engine_.reset(); }
  // Checkpoints until the snapshot holds every durable record, then closes: the next
  // start replays nothing (so it may take another shard count). The engine logs records
  // of its own after a request (accounts it makes, ticks): the snapshot must hold them
  // too, twice in a row 10 ms apart.
  void close_snapshotted() {
    int same = 0;
    for (int i = 0; i < 200 && same < 2; ++i) {
      std::string err;
      ASSERT_TRUE(engine_->checkpoint(&err)) << err;
      const auto st = engine_->stats();
      same = st.snapshot_lsn == st.lsn_durable ? same + 1 : 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(same, 2) << "the engine kept logging records of its own";
    close();
  }
  void restart() {
    engine_.reset();
    open();
  }
  // The shard count of the next open() (a restart may change it, as operators may).
  void set_shards(uint32_t n) { shards_ = n; }
  [[nodiscard]] uint32_t shards() const { return shards_; }
  // Whether the next open() keeps the event log (--no-events when false).
  void set_events(bool on) { events_ = on; }
  void advance_s(uint64_t s) { clock_ += s * 1'000'000'000ull; }
  void set_clock_ns(uint64_t ns) { clock_ = ns; }
  [[nodiscard]] uint64_t now_ns() const { return clock_.load(); }
  engine::engine& e() { return *engine_; }
  const std::string& dir() const { return dir_.path(); }

 private:
  temp_dir dir_;
  uint32_t shards_;
  bool checkpoint_on_close_ = true;
  uint64_t resident_max_ = 0;
  uint64_t accounts_max_ = 0, groups_max_ = 0, pending_max_ = 0, transfers_max_ = 0;
  std::optional<uint32_t> flush_gap_us_;
  bool events_ = true;
  std::atomic<uint64_t> clock_{1'700'000'000'000'000'000ull};
  std::unique_ptr<engine::engine> engine_;
};

}  // namespace mesob::test

namespace mesob::wire {
inline std::ostream& operator<<(std::ostream& os, result r) { return os << result_name(r); }
}  // namespace mesob::wire
