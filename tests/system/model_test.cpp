// Randomized differential test: one adversarial operation stream goes through the real
// sharded engine and through the reference model (tests/model/reference_ledger.hpp);
// every result, every account and every recorded transfer must agree, and the ledger
// must balance per currency. The stream is generated from a seed: std::random_device
// unless MESOB_SEED is set (decimal or 0x-hex). The seed is printed; a failure prints
// the seed, run, batch and operation, so it can be replayed exactly:
//   MESOB_SEED=<seed> ./build/test/tests/model_test --gtest_filter='*shards_4*'
// MESOB_MODEL_BATCHES overrides the number of batches per run; MESOB_MODEL_AVOID=dup_of_repeat
// leaves a generator case out (to look past a known deviation); MESOB_KEEP_DIR keeps the
// data directories. Each run: write batches (also several in flight at once), clock steps
// (some landing the sweep limit on a pending deadline), a checkpoint, a crash-image
// restart (log replay) and a clean restart, whole-state comparisons along the way and at
// the end (also after one more recovery).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "engine/limits.hpp"
#include "model/reference_ledger.hpp"
#include "storage/wal.hpp"
#include "support/engine_fixture.hpp"
#include "support/temp_dir.hpp"
#include "wire/types.hpp"

namespace {

using mesob::test::temp_dir;
using mesob::test::test_config;
using namespace mesob;
using wire::result;
using ref_ledger = test::reference_ledger;

// ---- seed, directories, printing -----------------------------------------------------

uint64_t master_seed() {
  static const uint64_t seed = [] {
    if (const char* s = std::getenv("MESOB_SEED"); s != nullptr && *s != '\0')
      return uint64_t(std::strtoull(s, nullptr, 0));
    std::random_device rd;
    return (uint64_t(rd()) << 32) ^ uint64_t(rd());
  }();
  return seed;
}

// MESOB_MODEL_AVOID: a comma-separated list of generator cases to leave out, to look
// past a known engine deviation while it is being fixed (see the report of the run).
bool avoid(const char* tag) {
  static const std::string list = [] {
    const char* s = std::getenv("MESOB_MODEL_AVOID");
    return "," + std::string(s ? s : "") + ",";
  }();
  return list.find("," + std::string(tag) + ",") != std::string::npos;
}

int batches_per_run() {
  if (const char* s = std::getenv("MESOB_MODEL_BATCHES"); s != nullptr && *s != '\0') return std::atoi(s);
  return 5000;
}

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%" PRIx64, v);
  return b;
}

std::string cur_str(wire::currency_code c) {
  if (ref_ledger::currency_valid(c)) return wire::currency_name(c);
  return c == 0 ? "0" : hex(c);
}

std::string id_str(const wire::id128& id) {
  return id.hi == 0 ? std::to_string(id.lo) : "{lo=" + std::to_string(id.lo) + ",hi=" + hex(id.hi) + "}";
}

std::string res_str(result r) { return std::string(wire::result_name(r)) + "(" + std::to_string(uint32_t(r)) + ")"; }
std::string res_str(uint32_t r) { return res_str(result(r)); }

std::string describe(const wire::transfer& t) {
  std::ostringstream o;
  o << "transfer{id=" << id_str(t.id) << " flags=" << hex(t.flags);
  if (!t.pending_id.zero()) o << " pending_id=" << id_str(t.pending_id);
  o << " dr=" << t.debit_account_id << " cr=" << t.credit_account_id << " amount=" << t.amount
    << " cur=" << cur_str(t.currency);
  if (t.timeout_s != 0) o << " timeout_s=" << t.timeout_s;
  if (t.user_data != 0) o << " user_data=" << t.user_data;
  if (t.code != 0) o << " code=" << t.code;
  if (t.reserved != 0) o << " reserved=" << t.reserved;
  if (t.timestamp != 0) o << " timestamp=" << t.timestamp;
  o << "}";
  return o.str();
}

std::string describe(const wire::account& a) {
  std::ostringstream o;
  o << "account{id=" << a.id << " owner=" << a.owner_id << " user_data=" << a.user_data
    << " cur=" << cur_str(a.currency) << " kind=" << uint16_t(a.kind) << " flags=" << hex(a.flags)
    << " status=" << uint16_t(a.status) << " dp=" << a.debits_pending << " dpo=" << a.debits_posted
    << " cp=" << a.credits_pending << " cpo=" << a.credits_posted << " ts=" << a.timestamp;
  if (a.tier != 0 || a.status_seq != 0) o << " tier=" << a.tier << " status_seq=" << a.status_seq;
  o << "}";
  return o.str();
}

std::string describe(const wire::account_status_change& c) {
  std::ostringstream o;
  o << "status_change{account=" << c.account_id << " status=" << uint16_t(c.status);
  if (c.reserved != 0) o << " reserved=" << c.reserved;
  if (c.seq != 0) o << " seq=" << c.seq;
  o << "}";
  return o.str();
}

bool same_account(const wire::account& a, const wire::account& b) {
  return a.id == b.id && a.owner_id == b.owner_id && a.user_data == b.user_data &&
         a.debits_pending == b.debits_pending && a.debits_posted == b.debits_posted &&
         a.credits_pending == b.credits_pending && a.credits_posted == b.credits_posted &&
         a.timestamp == b.timestamp && a.currency == b.currency && a.kind == b.kind && a.flags == b.flags &&
         a.status == b.status && a.tier == b.tier && a.status_seq == b.status_seq;
}

bool same_transfer(const wire::transfer& a, const wire::transfer& b) {
  return a.id == b.id && a.pending_id == b.pending_id && a.debit_account_id == b.debit_account_id &&
         a.credit_account_id == b.credit_account_id && a.amount == b.amount && a.user_data == b.user_data &&
         a.timestamp == b.timestamp && a.currency == b.currency && a.timeout_s == b.timeout_s &&
         a.code == b.code && a.flags == b.flags && a.reserved == b.reserved;
}

// ---- the run ---------------------------------------------------------------------------

struct run_params {
  uint32_t shards;
  bool high_clock;  // start the clock near 2^64 - 4e18 ns, so the largest timeouts overflow
  // The smallest resident window of transfer records, so most of the history lives in
  // LMDB (repeats, look-ups and post/void of evicted records). Evicting checkpoints run
  // in the background, so this run restarts cleanly only (no crash_copy()).
  bool small_window = false;
  // The engine's pending_max (0: its default, never met here): a few a shard, so that
  // pending transfers meet it often (pending_full) and room comes back by posts, voids,
  // expiry and failed chains.
  uint64_t pending_max = 0;
};

constexpr uint64_t ns_per_s = 1'000'000'000ull;
const wire::currency_code valid_currencies[] = {wire::currency("USD"), wire::currency("EUR"),
                                                wire::currency("ETB")};

class model_run {
 public:
  model_run(uint64_t seed, run_params p, std::string name)
      : seed_(seed), params_(p), name_(std::move(name)), rng_(seed), now_(std::make_shared<std::atomic<uint64_t>>()) {
    const uint64_t start = p.high_clock ? UINT64_MAX - 4'000'000'000'000'000'000ull
                                        : 1'700'000'000'000'000'000ull;
    now_->store(start + below(1'000'000'000'000ull));
    for (uint64_t id = 1; id <= 12; ++id) universe_.push_back(id);
    universe_.push_back(1ull << 32);
    universe_.push_back((1ull << 63) + 5);
    universe_.push_back(UINT64_MAX);
    universe_.push_back(0xdeadbeefull);
    model_.set_pending_capacity(p.pending_max, p.shards);
  }

  // Runs `batches` batches; false after the first mismatch (already reported).
  void run(int batches) {
    dirs_.push_back(std::make_unique<temp_dir>("mesob-model"));
    ASSERT_FALSE(dirs_.back()->path().empty()) << "mkdtemp failed";
    ASSERT_TRUE(open_engine());
    const int checkpoint_at = batches / 5;
    const int restart1 = batches * 2 / 5 + int(below(uint64_t(batches / 10 + 1)));
    const int restart2 = batches * 3 / 4;
    // Create most of the universe first, so transfers have something to work with.
    {
      std::vector<wire::account> first;
      for (size_t k = 0; k + 2 < universe_.size(); ++k) first.push_back(proto_account(universe_[k]));
      if (!do_accounts(first)) return;
    }
    for (batch_no_ = 1; batch_no_ <= batches; ++batch_no_) {
      if (batch_no_ % 100 == 0) universe_.push_back(1000 + uint64_t(batch_no_));  // fresh account ids
      const uint64_t k = below(100);
      // The clock moves only right before a write batch (see compare_state).
      bool ok;
      if (k < 70) {
        auto ops = gen_transfers(batch_size());
        position_clock(ops.size());
        ok = do_transfers(ops);
      } else if (k < 80) {
        auto ops = gen_accounts(1 + below(8));
        position_clock(ops.size());
        ok = do_accounts(ops);
      } else if (k < 90) {
        auto ops = gen_status(1 + below(6));
        position_clock(ops.size());
        ok = do_status(ops);
      } else if (k < 97) {
        ok = do_pipelined(2 + int(below(7)));
      } else if (k < 98) {
        ok = do_transfers({});  // an empty batch: nothing happens
      } else {
        ok = compare_state(false);
      }
      if (!ok) return;
      if (batch_no_ % 50 == 0 && !compare_state(false)) return;
      if (batch_no_ == checkpoint_at) {
        std::string err;
        ASSERT_TRUE(engine_->checkpoint(&err)) << err;
      }
      if (batch_no_ == restart1 && !params_.small_window) {  // as after a crash: recovery replays the log
        ASSERT_TRUE(crash_copy());
        ASSERT_TRUE(open_engine());
        ++restarts_;
        if (!settle(1)) return;
      }
      if (batch_no_ == restart2 || (batch_no_ == restart1 && params_.small_window)) {  // a clean restart: recovery loads the closing snapshot
        close_engine();
        ASSERT_TRUE(open_engine());
        ++restarts_;
        if (!settle(1)) return;
      }
    }
    if (!settle(1) || !compare_state(true)) return;
    close_engine();
    // Recovery must reproduce the same state once more.
    ASSERT_TRUE(open_engine());
    if (!settle(1) || !compare_state(true)) return;
    close_engine();
    print_summary();
  }

 private:
  uint64_t seed_;
  run_params params_;
  std::string name_;
  std::mt19937_64 rng_;
  std::shared_ptr<std::atomic<uint64_t>> now_;
  std::vector<std::unique_ptr<temp_dir>> dirs_;  // the last one is the engine's
  std::unique_ptr<engine::engine> engine_;
  ref_ledger model_;

  int batch_no_ = 0;
  int restarts_ = 0;
  int compares_ = 0;
  int compares_skipped_ = 0;
  uint64_t records_replayed_ = 0;  // by recoveries: log records replayed
  uint64_t transfers_loaded_ = 0;  // by recoveries: transfers loaded from snapshots
  uint64_t last_ts_ = 0;
  uint64_t ops_total_ = 0;
  std::map<uint32_t, uint64_t> result_counts_;

  std::vector<uint64_t> universe_;  // account ids the stream may create
  const std::vector<uint64_t> ghosts_ = {999, 1ull << 62};  // never created
  uint64_t next_transfer_ = 1;
  std::vector<wire::transfer> history_;              // operations of earlier batches (non-zero ids)
  std::vector<wire::id128> pending_ids_;             // ids of pending operations submitted
  std::set<std::pair<uint64_t, uint64_t>> used_ids_;  // every transfer id the stream used
  std::vector<wire::id128> used_list_;
  std::set<std::pair<uint64_t, uint64_t>> group_ids_;  // ids of the pipelined group being generated

  // ---- randomness ---------------------------------------------------------------------

  uint64_t below(uint64_t n) { return n == 0 ? 0 : std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  bool chance(unsigned percent) { return below(100) < percent; }
  template <class T>
  const T& pick(const std::vector<T>& v) { return v[below(v.size())]; }

  size_t batch_size() {
    const uint64_t k = below(100);
    if (k < 90) return 1 + below(64);
    if (k < 99) return 65 + below(448);
    return 513 + below(3000);
  }

  // Before a write batch of n operations: mostly a random step; sometimes the step that
  // puts the batch's last timestamp (the sweep's limit) right on, or one before, the
  // next deadline of a live pending transfer.
  void position_clock(size_t n) {
    if (chance(12)) {
      const uint64_t next_ts = std::max(now_->load(), last_ts_ + 1);
      const uint64_t d = model_.next_deadline_after(next_ts + n - 1);
      if (d != 0) {
        const uint64_t target = d - below(2) - (n - 1);
        if (target > now_->load() && target > last_ts_) {
          now_->store(target);
          return;
        }
      }
    }
    advance_clock();
  }

  void advance_clock() {
    const uint64_t k = below(100);
    uint64_t d = 0;
    if (k < 15) d = 0;
    else if (k < 70) d = below(2000);
    else if (k < 94) d = below(50'000'000);
    else d = 1 + below(6 * ns_per_s);
    now_->fetch_add(d);
  }

  // ---- engine ---------------------------------------------------------------------------

  bool open_engine() {
    auto cfg = test_config(dirs_.back()->path(), params_.shards);
    cfg.tick_ms = 1000;  // of the manual clock
    cfg.wal_segment_mib = 16;
    cfg.snapshot_map_gib = 1;
    cfg.accounts_hint = 1024;
    // Large enough that nothing is written to LMDB in the background (records flush once
    // 512K await it; a run makes ~375K): crash_copy() copies files, and a copy taken
    // during an LMDB commit is not a crash image.
    cfg.transfers_resident_max = params_.small_window ? 2 * uint64_t(engine::batch_ops_max) : 1ull << 21;
    cfg.transfers_flush_step = params_.small_window ? 0 : 1ull << 19;
    if (params_.pending_max != 0) cfg.pending_max = params_.pending_max;
    auto now = now_;
    cfg.clock = [now] { return now->load(); };
    std::string err;
    engine_ = engine::engine::open(cfg, &err);
    EXPECT_TRUE(engine_ != nullptr) << "engine::open: " << err;
    if (engine_) {
      records_replayed_ += engine_->recovery().records_replayed;
      transfers_loaded_ += engine_->recovery().transfers_loaded;
    }
    return engine_ != nullptr;
  }

  // A crash image: copies the data directory of the running engine between requests
  // (every acknowledged batch is durable in the log by then; a tick may be cut short,
  // as in a crash), then drops the engine. The next open_engine() uses the copy.
  bool crash_copy() {
    const std::string from = dirs_.back()->path();
    dirs_.push_back(std::make_unique<temp_dir>("mesob-model"));
    const std::string to = dirs_.back()->path();
    std::error_code ec;
    for (const char* sub : {"wal", "snapshot"}) {
      std::filesystem::create_directories(to + "/" + sub, ec);
      for (const auto& entry : std::filesystem::directory_iterator(from + "/" + sub, ec)) {
        const std::string name = entry.path().filename().string();
        // Segments a checkpoint covered are deleted in the background (renamed to
        // <segment>.dropped first): one may go between the listing and its copy.
        if (!entry.is_regular_file() || name == "lock.mdb" || name.ends_with(storage::wal_writer::dropped_suffix)) continue;
        std::filesystem::copy_file(entry.path(), to + "/" + sub + "/" + name, ec);
        if (ec == std::errc::no_such_file_or_directory && std::string(sub) == "wal") ec.clear();
        if (ec) break;
      }
      if (ec) break;
    }
    EXPECT_FALSE(ec) << "copying the data directory: " << ec.message();
    close_engine();
    return !ec;
  }

  void close_engine() {
    if (engine_) engine_->close();
    engine_.reset();
  }

  std::string where(int op) const {
    std::ostringstream o;
    o << "seed=" << seed_ << " (MESOB_SEED=" << master_seed() << ") run=" << name_ << " batch=" << batch_no_;
    if (op >= 0) o << " op=" << op;
    return o.str();
  }

  // ---- generators: accounts ---------------------------------------------------------------

  static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
  }

  // The fields the stream usually gives an account id (so repeats are mostly equal).
  static wire::account proto_account(uint64_t id) {
    const uint64_t h = mix(id);
    wire::account a;
    a.id = id;
    a.owner_id = id * 7;
    a.user_data = h & 0xffff;
    a.currency = valid_currencies[h % 3];
    a.kind = wire::account_kind(1 + (h >> 8) % 5);
    const uint64_t f = (h >> 16) % 10;
    a.flags = f < 6 ? 0 : f < 8 ? wire::account_flags::debits_must_not_exceed_credits
                                : wire::account_flags::credits_must_not_exceed_debits;
    return a;
  }

  std::vector<wire::account> gen_accounts(size_t n) {
    std::vector<wire::account> v;
    for (size_t i = 0; i < n; ++i) {
      if (!v.empty() && chance(8)) {  // the same id again in this batch
        wire::account a = pick(v);
        if (chance(50)) a.user_data ^= 1;
        v.push_back(a);
        continue;
      }
      wire::account a = proto_account(pick(universe_));
      if (chance(10)) {  // different fields
        switch (below(5)) {
          case 0: a.owner_id += 1; break;
          case 1: a.user_data += 1; break;
          case 2: a.currency = valid_currencies[(a.currency + 1) % 3]; break;
          case 3: a.kind = wire::account_kind(1 + uint16_t(a.kind) % 5); break;
          default: a.flags ^= wire::account_flags::debits_must_not_exceed_credits; break;
        }
        if ((a.flags & wire::account_flags::all) == wire::account_flags::all) a.flags = 0;
      }
      if (chance(4)) a.status = wire::account_status(0);  // zero status: open
      if (chance(15)) {  // invalid fields, sometimes several at once
        const int faults = chance(25) ? 2 : 1;
        for (int f = 0; f < faults; ++f) {
          switch (below(14)) {
            case 0: a.timestamp = 1 + below(100); break;
            case 1: a.id = 0; break;
            case 2: a.tier = 1; break;
            case 3: a.status_seq = 7; break;
            case 4: a.flags |= 0x4; break;
            case 5: a.flags = wire::account_flags::all; break;
            case 6: a.currency = wire::currency("usd"); break;
            case 7: a.currency = 0; break;
            case 8: a.currency = wire::currency("USD") | (uint32_t('X') << 24); break;
            case 9: a.kind = wire::account_kind(chance(50) ? 0 : 6); break;
            case 10: a.status = chance(50) ? wire::account_status::frozen : wire::account_status::closed; break;
            case 11: a.status = wire::account_status(4); break;
            case 12: a.credits_posted = 1; break;
            default: a.debits_pending = 5; break;
          }
        }
      }
      v.push_back(a);
    }
    return v;
  }

  std::vector<wire::account_status_change> gen_status(size_t n) {
    std::vector<wire::account_status_change> v;
    for (size_t i = 0; i < n; ++i) {
      wire::account_status_change c;
      const uint64_t s = below(100);
      if (s < 62) c.status = wire::account_status::open;
      else if (s < 85) c.status = wire::account_status::frozen;
      else if (s < 95) c.status = wire::account_status::closed;
      else c.status = wire::account_status(chance(50) ? 0 : 4);
      const uint64_t k = below(100);
      if (c.status == wire::account_status::closed && k < 60) c.account_id = closable_account();
      else if (k < 85) c.account_id = existing_account();
      else if (k < 93) c.account_id = pick(universe_);
      else if (k < 97) c.account_id = pick(ghosts_);
      else c.account_id = 0;
      if (chance(2)) c.reserved = 1;
      // Numbered changes: the account's next, a repeat of its latest, one before it, one
      // past the next, or (most) unnumbered.
      const auto& m = model_.accounts();
      const auto it = m.find(c.account_id);
      const uint32_t seq = it == m.end() ? 0 : it->second.status_seq;
      const uint64_t q = below(100);
      if (q < 30) c.seq = seq + 1;
      else if (q < 40) c.seq = seq;
      else if (q < 44 && seq > 1) c.seq = uint32_t(1 + below(seq - 1));
      else if (q < 48) c.seq = seq + 2 + uint32_t(below(3));
      v.push_back(c);
    }
    return v;
  }

  // ---- generators: transfers ----------------------------------------------------------------

  uint64_t existing_account() {
    const auto& m = model_.accounts();
    if (m.empty()) return pick(universe_);
    auto it = m.begin();
    std::advance(it, long(below(m.size())));
    return it->first;
  }

  // An account that could be closed now (no pending amounts, posted amounts equal), if any.
  uint64_t closable_account() {
    std::vector<uint64_t> c;
    for (const auto& [id, a] : model_.accounts())
      if (a.debits_pending == 0 && a.credits_pending == 0 && a.debits_posted == a.credits_posted) c.push_back(id);
    return c.empty() ? existing_account() : pick(c);
  }

  uint64_t any_account() {
    const uint64_t k = below(100);
    if (k < 88) return existing_account();
    if (k < 96) return pick(universe_);
    return pick(ghosts_);
  }

  wire::currency_code currency_for(uint64_t dr, uint64_t cr) {
    const uint64_t k = below(100);
    auto a = model_.lookup_account(k < 90 ? dr : cr);
    if (k < 95 && a) return a->currency;
    return pick(std::vector<wire::currency_code>(std::begin(valid_currencies), std::end(valid_currencies)));
  }

  uint64_t amount() {
    const uint64_t k = below(100);
    if (k < 60) return 1 + below(100);
    if (k < 90) return 1 + below(100'000);
    if (k < 93) return UINT64_MAX - below(3);
    if (k < 96) return (1ull << 63) + below(1000);
    return UINT64_MAX / 3 + below(1000);
  }

  wire::id128 fresh_id() {
    const uint64_t c = next_transfer_++;
    const uint64_t k = below(100);
    if (k < 75) return {c, 0};
    if (k < 88) return {c, UINT64_MAX};
    if (k < 90) return actors::equb::emitted_id(c, uint32_t(below(1000)));  // refused: id_reserved
    return {0, c};
  }

  // An existing account other than `other` with currency `cur`, or 0 if there is none.
  uint64_t account_with_currency(wire::currency_code cur, uint64_t other) {
    std::vector<uint64_t> c;
    for (const auto& [id, a] : model_.accounts())
      if (a.currency == cur && id != other && a.status != wire::account_status::closed) c.push_back(id);
    return c.empty() ? 0 : pick(c);
  }

  void fill_accounts(wire::transfer& t) {
    t.debit_account_id = any_account();
    t.credit_account_id = 0;
    if (chance(85)) {
      if (auto a = model_.lookup_account(t.debit_account_id))
        t.credit_account_id = account_with_currency(a->currency, t.debit_account_id);
    }
    if (t.credit_account_id == 0) t.credit_account_id = any_account();
    for (int k = 0; k < 4 && t.credit_account_id == t.debit_account_id; ++k) t.credit_account_id = any_account();
    if (t.credit_account_id == t.debit_account_id) t.credit_account_id = pick(universe_);
    if (t.credit_account_id == t.debit_account_id) t.credit_account_id = t.debit_account_id == 1 ? 2 : 1;
    t.currency = currency_for(t.debit_account_id, t.credit_account_id);
  }

  wire::transfer gen_single() {
    wire::transfer t;
    t.id = fresh_id();
    fill_accounts(t);
    t.amount = amount();
    if (chance(30)) t.user_data = below(1000);
    if (chance(20)) t.code = uint16_t(below(100));
    return t;
  }

  wire::transfer gen_pending() {
    wire::transfer t = gen_single();
    t.flags = wire::transfer_flags::pending;
    const uint64_t k = below(100);
    if (k < 45) t.timeout_s = 0;
    else if (k < 90) t.timeout_s = uint32_t(1 + below(5));
    else if (k < 96) t.timeout_s = uint32_t(10 + below(100));
    else t.timeout_s = UINT32_MAX - uint32_t(below(2));
    return t;
  }

  // The fields of a (possibly) pending transfer: recorded by the model, or earlier in this batch.
  const wire::transfer* target_fields(const wire::id128& id, const std::vector<wire::transfer>& batch) {
    if (const auto* rec = model_.lookup_transfer(id)) return &rec->t;
    for (const auto& t : batch)
      if (t.id == id) return &t;
    return nullptr;
  }

  wire::transfer gen_resolve(bool post, const std::vector<wire::transfer>& batch) {
    wire::transfer t;
    t.id = fresh_id();
    t.flags = post ? wire::transfer_flags::post_pending : wire::transfer_flags::void_pending;
    const uint64_t k = below(100);
    if (k < 87 && !pending_ids_.empty()) {
      const size_t n = pending_ids_.size();
      // Mostly one still pending (by the model), of the recent ones.
      const int tries = chance(70) ? 8 : 1;
      for (int a = 0; a < tries; ++a) {
        t.pending_id = chance(80) ? pending_ids_[n - 1 - below(std::min<size_t>(n, 64))] : pick(pending_ids_);
        const auto* rec = model_.lookup_transfer(t.pending_id);
        if (rec != nullptr && rec->res == result::ok && rec->state == ref_ledger::pending_state::pending) break;
      }
    } else if (k < 92 && !batch.empty()) {  // an operation earlier in this batch
      t.pending_id = pick(batch).id;
      for (int a = 0; a < 4 && !(pick(batch).flags & wire::transfer_flags::pending); ++a)
        t.pending_id = pick(batch).id;
    } else if (k < 96 && !used_list_.empty()) {
      t.pending_id = pick(used_list_);
    } else {
      t.pending_id = {next_transfer_ + 1'000'000 + below(1000), 0};  // unknown
    }
    const wire::transfer* p = target_fields(t.pending_id, batch);
    if (post) {
      const uint64_t pa = p ? p->amount : 100;
      const uint64_t a = below(100);
      if (a < 35) t.amount = 0;
      else if (a < 50) t.amount = pa;
      else if (a < 75) t.amount = pa > 1 ? 1 + below(pa - 1) : pa;
      else if (a < 87) t.amount = pa < UINT64_MAX - 10 ? pa + 1 + below(10) : pa;
      else if (a < 92) t.amount = UINT64_MAX;
      else t.amount = 1 + below(100);
    } else if (chance(3)) {
      t.amount = 1;  // amount_must_be_zero
    }
    const uint64_t acc = below(100);
    if (acc < 20 && p) {
      t.debit_account_id = p->debit_account_id;
      t.credit_account_id = p->credit_account_id;
    } else if (acc < 25 && p) {
      t.debit_account_id = chance(50) ? p->debit_account_id : 0;
      t.credit_account_id = chance(50) ? p->credit_account_id : 0;
    } else if (acc < 32) {
      t.debit_account_id = chance(50) ? any_account() : 0;
      t.credit_account_id = chance(50) ? any_account() : 0;
      if (t.debit_account_id == t.credit_account_id) t.credit_account_id = 0;
    }
    const uint64_t cur = below(100);
    if (cur < 30 && p) t.currency = p->currency;
    else if (cur < 38) t.currency = pick(std::vector<wire::currency_code>(std::begin(valid_currencies),
                                                                          std::end(valid_currencies)));
    if (chance(10)) t.user_data = below(1000);
    return t;
  }

  wire::transfer gen_invalid(const std::vector<wire::transfer>& batch) {
    const uint64_t base = below(4);
    wire::transfer t = base == 0 ? gen_single() : base == 1 ? gen_pending() : gen_resolve(base == 2, batch);
    const bool resolve = base >= 2;
    using namespace wire::transfer_flags;
    // One fault, or several (the first in the README's order must win).
    const int faults = chance(70) ? 1 : 2 + int(below(2));
    for (int f = 0; f < faults; ++f) mutate_invalid(t, resolve);
    return t;
  }

  void mutate_invalid(wire::transfer& t, bool resolve) {
    using namespace wire::transfer_flags;
    switch (below(resolve ? 12 : 14)) {
      case 0: t.timestamp = 1 + below(1000); break;
      case 1: t.id = {}; break;
      case 2: t.reserved = 1; break;
      case 3: t.flags |= 0x20u << below(11); break;  // past every defined flag
      case 4: t.flags |= chance(50) ? (pending | post_pending) : chance(50) ? (post_pending | void_pending)
                                                                         : (pending | void_pending); break;
      case 5: t.currency = chance(50) ? wire::currency("usd") : wire::currency("US "); break;
      case 6: t.flags |= linked; t.timestamp = 5; break;
      case 7:
        if (resolve) t.pending_id = {};
        else t.pending_id = chance(50) ? pick_any_id() : t.id;
        break;
      case 8:
        if (resolve) t.pending_id = t.id;
        else {
          t.timeout_s = 1 + uint32_t(below(5));
          t.flags &= uint16_t(~pending);
        }
        break;
      case 9: t.timeout_s = 1 + uint32_t(below(5)); break;
      case 10:
        if (resolve) {
          t.flags = void_pending;
          t.amount = 1 + below(10);
        } else {
          t.debit_account_id = 0;
        }
        break;
      case 11:
        t.debit_account_id = t.credit_account_id = t.debit_account_id == 0 ? 3 : t.debit_account_id;
        break;
      case 12: t.credit_account_id = 0; if (chance(50)) t.debit_account_id = 0; break;
      default: t.amount = 0; break;
    }
  }

  wire::id128 pick_any_id() {
    if (used_list_.empty()) return {1, 0};
    return pick(used_list_);
  }

  std::vector<wire::transfer> gen_transfers(size_t n) {
    std::vector<wire::transfer> v;
    v.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const uint64_t k = below(100);
      wire::transfer t;
      bool keep_flags = false;
      if (k < 8 && !history_.empty()) {  // a repeat of an earlier batch's operation
        t = chance(60) ? history_[history_.size() - 1 - below(std::min<size_t>(history_.size(), 200))]
                       : pick(history_);
        keep_flags = true;
        if (chance(35)) {
          switch (below(6)) {
            case 0: t.amount += 1; break;
            case 1: t.user_data += 1; break;
            case 2: t.code += 1; break;
            case 3: t.flags ^= wire::transfer_flags::linked; break;
            case 4: t.timeout_s += 1; break;
            default: t.credit_account_id ^= 1; break;
          }
        }
      } else if (k < 11 && !v.empty()) {  // the same id again in this batch
        t = pick(v);
        keep_flags = true;
        if (chance(50)) t.amount += 1;
      } else if (k < 13 && !v.empty()) {  // a valid operation with an id used earlier in this batch
        t = chance(50) ? gen_single() : gen_pending();
        t.id = pick(v).id;
      } else if (k < 17) {
        t = gen_invalid(v);
      } else if (k < 50) {
        t = gen_single();
      } else if (k < 73) {
        t = gen_pending();
      } else if (k < 89) {
        t = gen_resolve(true, v);
      } else {
        t = gen_resolve(false, v);
      }
      if (!keep_flags) {
        if (chance(14)) t.flags |= wire::transfer_flags::linked;
      }
      if (avoid("dup_of_repeat") && !t.id.zero() &&
          (model_.lookup_transfer(t.id) != nullptr || group_ids_.count({t.id.hi, t.id.lo}) != 0) &&
          std::any_of(v.begin(), v.end(), [&](const wire::transfer& e) { return e.id == t.id; }))
        t = gen_single();
      v.push_back(t);
    }
    // Sometimes close the batch inside a chain.
    if (!v.empty() && chance(6)) v.back().flags |= wire::transfer_flags::linked;
    // Candidates for later repeats and post/void targets (also within a pipelined group).
    for (const auto& t : v) {
      if (t.id.zero()) continue;
      history_.push_back(t);
      history_.back().timestamp = 0;
      if (t.flags & wire::transfer_flags::pending) pending_ids_.push_back(t.id);
      note_id(t.id);
    }
    return v;
  }

  // ---- batches ----------------------------------------------------------------------------

  template <class Op>
  bool check_reply(const engine::reply& r, const std::vector<Op>& ops, const std::vector<result>& expect) {
    for (size_t i = 0; i < ops.size(); ++i) {
      ++result_counts_[uint32_t(expect[i])];
      if (r.results[i] == expect[i]) continue;
      std::ostringstream o;
      o << "MISMATCH " << where(int(i)) << " timestamp_base=" << r.timestamp_base << "\n  op: " << describe(ops[i])
        << "\n  engine: " << res_str(r.results[i]) << "\n  model:  " << res_str(expect[i]) << "\n  batch ("
        << ops.size() << " ops), around the op:";
      const size_t from = i >= 6 ? i - 6 : 0;
      const size_t to = std::min(ops.size(), i + 4);
      for (size_t k = from; k < to; ++k)
        o << "\n    [" << k << "] " << describe(ops[k]) << " engine=" << res_str(r.results[k])
          << " model=" << res_str(expect[k]);
      ADD_FAILURE() << o.str();
      return false;
    }
    return true;
  }

  template <class Op>
  bool check_basic(const engine::reply& r, const std::vector<Op>& ops) {
    if (r.st != engine::status::ok) {
      ADD_FAILURE() << where(-1) << ": engine status " << engine::status_name(r.st);
      return false;
    }
    if (r.results.size() != ops.size()) {
      ADD_FAILURE() << where(-1) << ": " << r.results.size() << " results for " << ops.size() << " operations";
      return false;
    }
    if (ops.empty()) return true;
    if (r.timestamp_base <= last_ts_) {
      ADD_FAILURE() << where(-1) << ": timestamp_base " << r.timestamp_base << " not after " << last_ts_;
      return false;
    }
    if (r.timestamp_base < now_->load()) {
      // The clock does not move while a request is in flight: the stamp is at least "now".
      ADD_FAILURE() << where(-1) << ": timestamp_base " << r.timestamp_base << " before the clock " << now_->load();
      return false;
    }
    last_ts_ = r.timestamp_base + ops.size() - 1;
    ops_total_ += ops.size();
    return true;
  }

  bool do_accounts(const std::vector<wire::account>& ops) { return apply_accounts(engine_->create_accounts(ops), ops); }
  bool do_status(const std::vector<wire::account_status_change>& ops) {
    return apply_status(engine_->set_account_status(ops), ops);
  }
  bool do_transfers(const std::vector<wire::transfer>& ops) {
    return apply_transfers(engine_->create_transfers(ops), ops);
  }

  // Several write requests in flight at once (submitted from this thread, so sequenced
  // in this order): they share commit groups and shard dispatches.
  bool do_pipelined(int count) {
    struct queued {
      uint64_t kind = 0;
      std::vector<wire::account> accounts;
      std::vector<wire::transfer> transfers;
      std::vector<wire::account_status_change> status;
      std::future<engine::reply> reply;
    };
    std::vector<queued> q;
    q.resize(size_t(count));
    position_clock(1);
    group_ids_.clear();
    for (auto& b : q) {
      const uint64_t k = below(100);
      engine::request req;
      if (k < 80) {
        b.kind = 0;
        b.transfers = gen_transfers(chance(80) ? 1 + below(64) : batch_size());
        req.kind = engine::op_kind::create_transfers;
        req.transfers = b.transfers;
        for (const auto& t : b.transfers) group_ids_.emplace(t.id.hi, t.id.lo);
      } else if (k < 90) {
        b.kind = 1;
        b.accounts = gen_accounts(1 + below(8));
        req.kind = engine::op_kind::create_accounts;
        req.accounts = b.accounts;
      } else {
        b.kind = 2;
        b.status = gen_status(1 + below(6));
        req.kind = engine::op_kind::set_account_status;
        req.status_changes = b.status;
      }
      auto promise = std::make_shared<std::promise<engine::reply>>();
      b.reply = promise->get_future();
      engine_->submit(std::move(req), [promise](engine::reply&& r) { promise->set_value(std::move(r)); });
    }
    bool ok = true;
    for (auto& b : q) {
      engine::reply r = b.reply.get();  // wait for all, even after a mismatch
      if (!ok) continue;
      if (b.kind == 0) ok = apply_transfers(r, b.transfers);
      else if (b.kind == 1) ok = apply_accounts(r, b.accounts);
      else ok = apply_status(r, b.status);
    }
    group_ids_.clear();
    return ok;
  }

  bool apply_accounts(const engine::reply& r, const std::vector<wire::account>& ops) {
    if (!check_basic(r, ops)) return false;
    if (ops.empty()) return true;
    const auto expect = model_.apply_batch(ref_ledger::batch_kind::create_accounts, ops, r.timestamp_base);
    return check_reply(r, ops, expect);
  }

  bool apply_status(const engine::reply& r, const std::vector<wire::account_status_change>& ops) {
    if (!check_basic(r, ops)) return false;
    if (ops.empty()) return true;
    const auto expect = model_.apply_batch(ref_ledger::batch_kind::set_account_status, ops, r.timestamp_base);
    return check_reply(r, ops, expect);
  }

  bool apply_transfers(const engine::reply& r, const std::vector<wire::transfer>& ops) {
    if (!check_basic(r, ops)) return false;
    if (ops.empty()) return true;
    const auto expect = model_.apply_batch(ref_ledger::batch_kind::create_transfers, ops, r.timestamp_base);
    return check_reply(r, ops, expect);
  }

  void note_id(const wire::id128& id) {
    if (used_ids_.insert({id.hi, id.lo}).second) used_list_.push_back(id);
  }

  // ---- whole-state comparison -----------------------------------------------------------------

  // The engine ticks on its own (op_kind::tick, at max(clock, last timestamp + 1)) while
  // timed pending transfers exist, and a tick expires what is due. The model expires only
  // at write batches, which is equivalent for every later write (its sweep covers the
  // tick's), but a look-up could see the difference. The stream keeps the clock still
  // between a write and a look-up, so after a write at most one tick can come, at
  // `tick_horizon()`.
  [[nodiscard]] uint64_t tick_horizon() const { return std::max(now_->load(), last_ts_ + 1); }

  // Harmless write batches (a status change of account 0) until nothing is due at the
  // tick horizon; at least `min_writes` of them (after a restart, the recovered engine
  // may have ticked past our last timestamp: a write catches up with it).
  bool settle(int min_writes) {
    for (int k = 0; k < 100 && (k < min_writes || model_.has_pending_due_by(tick_horizon())); ++k)
      if (!do_status({wire::account_status_change{}})) return false;
    return true;
  }

  bool compare_state(bool all_transfers) {
    if (model_.has_pending_due_by(tick_horizon())) {
      if (all_transfers) {
        ADD_FAILURE() << where(-1) << ": could not reach a moment where no tick can expire anything";
        return false;
      }
      ++compares_skipped_;
      return true;
    }
    ++compares_;
    // Accounts: every id the stream knows, plus never-created ones and zero.
    std::vector<uint64_t> ids = universe_;
    ids.insert(ids.end(), ghosts_.begin(), ghosts_.end());
    ids.push_back(0);
    const engine::reply ra = engine_->lookup_accounts(ids);
    if (ra.st != engine::status::ok || ra.accounts.size() != ids.size() || ra.results.size() != ids.size()) {
      ADD_FAILURE() << where(-1) << ": lookup_accounts status " << engine::status_name(ra.st) << ", "
                    << ra.accounts.size() << " accounts, " << ra.results.size() << " results for " << ids.size();
      return false;
    }
    struct sums {
      unsigned __int128 dp = 0, dpo = 0, cp = 0, cpo = 0;
    };
    std::map<wire::currency_code, sums> per_currency;
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto want = model_.lookup_account(ids[i]);
      const result want_r = want ? result::ok : result::account_not_found;
      const wire::account want_a = want ? *want : wire::account{};
      if (ra.results[i] != want_r || !same_account(ra.accounts[i], want_a)) {
        ADD_FAILURE() << "MISMATCH " << where(-1) << " lookup_accounts id=" << ids[i] << "\n  engine: "
                      << res_str(ra.results[i]) << " " << describe(ra.accounts[i]) << "\n  model:  " << res_str(want_r)
                      << " " << describe(want_a);
        return false;
      }
      if (want) {
        auto& s = per_currency[ra.accounts[i].currency];
        s.dp += ra.accounts[i].debits_pending;
        s.dpo += ra.accounts[i].debits_posted;
        s.cp += ra.accounts[i].credits_pending;
        s.cpo += ra.accounts[i].credits_posted;
      }
    }
    if (model_.accounts().size() > universe_.size()) {
      ADD_FAILURE() << where(-1) << ": the model has accounts outside the universe";
      return false;
    }
    for (const auto& [cur, s] : per_currency) {
      if (s.dpo != s.cpo || s.dp != s.cp) {
        ADD_FAILURE() << where(-1) << ": currency " << cur_str(cur) << " does not balance (posted "
                      << uint64_t(s.dpo >> 64) << ":" << uint64_t(s.dpo) << " vs " << uint64_t(s.cpo >> 64) << ":"
                      << uint64_t(s.cpo) << ", pending " << uint64_t(s.dp) << " vs " << uint64_t(s.cp) << ")";
        return false;
      }
    }
    const auto bal = engine_->check_balances();
    if (!bal.balanced) {
      ADD_FAILURE() << where(-1) << ": engine check_balances: " << bal.detail;
      return false;
    }
    // Transfers: every id used (or a sample), plus some never used and zero.
    std::vector<wire::id128> tids;
    if (all_transfers) {
      tids = used_list_;
    } else {
      for (int k = 0; k < 256 && !used_list_.empty(); ++k) tids.push_back(pick(used_list_));
    }
    tids.push_back({});
    tids.push_back({next_transfer_ + 5'000'000, 0});
    tids.push_back({1, 1});
    for (size_t from = 0; from < tids.size(); from += 4096) {
      const size_t to = std::min(tids.size(), from + 4096);
      std::vector<wire::id128> chunk(tids.begin() + long(from), tids.begin() + long(to));
      const engine::reply rt = engine_->lookup_transfers(chunk);
      if (rt.st != engine::status::ok || rt.transfers.size() != chunk.size() || rt.results.size() != chunk.size()) {
        ADD_FAILURE() << where(-1) << ": lookup_transfers status " << engine::status_name(rt.st) << ", "
                      << rt.transfers.size() << " records, " << rt.results.size() << " results for " << chunk.size();
        return false;
      }
      for (size_t i = 0; i < chunk.size(); ++i) {
        const auto* want = model_.lookup_transfer(chunk[i]);
        const auto& got = rt.transfers[i];
        bool same;
        if (want) {
          same = rt.results[i] == result::ok && same_transfer(got.t, want->t) && got.result == uint32_t(want->res);
        } else {
          same = rt.results[i] == result::transfer_not_found && same_transfer(got.t, wire::transfer{});
        }
        if (!same) {
          ADD_FAILURE() << "MISMATCH " << where(-1) << " lookup_transfers id=" << id_str(chunk[i]) << "\n  engine: "
                        << res_str(rt.results[i]) << " " << describe(got.t) << " result=" << res_str(got.result)
                        << "\n  model:  "
                        << (want ? "ok " + describe(want->t) + " result=" + res_str(want->res)
                                 : std::string("transfer_not_found"));
          return false;
        }
      }
    }
    return true;
  }

  int count_status(wire::account_status st) const {
    int n = 0;
    for (const auto& [id, a] : model_.accounts()) n += a.status == st ? 1 : 0;
    return n;
  }

  void print_summary() {
    std::printf("[model_test] run=%s seed=%" PRIu64 " batches=%d operations=%" PRIu64
                " transfers_recorded=%zu accounts=%zu (frozen %d, closed %d) restarts=%d (replayed %" PRIu64
                " log records, loaded %" PRIu64 " transfers) compares=%d (skipped %d)\n",
                name_.c_str(), seed_, batch_no_ - 1, ops_total_, model_.transfers().size(), model_.accounts().size(),
                count_status(wire::account_status::frozen), count_status(wire::account_status::closed), restarts_,
                records_replayed_, transfers_loaded_, compares_, compares_skipped_);
    std::string line = "[model_test]   results:";
    for (const auto& [code, count] : result_counts_)
      line += " " + std::string(wire::result_name(result(code))) + "=" + std::to_string(count);
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }
};

// ---- the tests ----------------------------------------------------------------------------

class model_test : public ::testing::TestWithParam<run_params> {};

std::string param_name(const ::testing::TestParamInfo<run_params>& info) {
  return "shards_" + std::to_string(info.param.shards) + (info.param.high_clock ? "_high_clock" : "") +
         (info.param.small_window ? "_small_window" : "") + (info.param.pending_max != 0 ? "_pending_capped" : "");
}

TEST_P(model_test, engine_matches_reference_model) {
  const run_params p = GetParam();
  const uint64_t seed = master_seed() ^ (uint64_t(p.shards) * 0x9e3779b97f4a7c15ull) ^ (p.high_clock ? 0x5bd1e995ull : 0) ^
                        (p.small_window ? 0xa0761d6478bd642full : 0);
  const std::string name = param_name(::testing::TestParamInfo<run_params>(p, 0));
  std::printf("[model_test] MESOB_SEED=%" PRIu64 " run=%s run_seed=%" PRIu64 "\n", master_seed(), name.c_str(), seed);
  std::fflush(stdout);
  RecordProperty("mesob_seed", std::to_string(master_seed()));
  model_run run(seed, p, name);
  int batches = batches_per_run();
  if (p.high_clock) batches = std::max(1, batches / 2);
  run.run(batches);
}

INSTANTIATE_TEST_SUITE_P(runs, model_test,
                         ::testing::Values(run_params{1, false}, run_params{4, false, false, 16}, run_params{4, true},
                                           run_params{1, true}, run_params{4, false, true}),
                         param_name);

// Small fixed streams, each once through the engine (4 shards) and the model.
TEST(model_test_fixed, repeat_twice_in_one_batch) {
  temp_dir dir("mesob-model");
  auto now = std::make_shared<std::atomic<uint64_t>>(1'700'000'000'000'000'000ull);
  auto cfg = test_config(dir.path(), 4);
  cfg.snapshot_map_gib = 1;
  cfg.accounts_hint = 1024;
  cfg.clock = [now] { return now->load(); };
  std::string err;
  auto e = engine::engine::open(cfg, &err);
  ASSERT_TRUE(e) << err;
  ref_ledger m;
  wire::account a1, a2;
  a1.id = 1;
  a2.id = 2;
  a1.currency = a2.currency = wire::currency("USD");
  auto r = e->create_accounts({a1, a2});
  EXPECT_EQ(m.create_accounts({a1, a2}, r.timestamp_base), r.results);
  wire::transfer t;
  t.id = {7, 0};
  t.debit_account_id = 1;
  t.credit_account_id = 2;
  t.amount = 10;
  t.currency = wire::currency("USD");
  r = e->create_transfers({t});
  EXPECT_EQ(m.create_transfers({t}, r.timestamp_base), r.results);
  // Batch 3: the id recorded in batch 2, twice. README: the second occurrence "appears
  // earlier in the same batch" (and passed the field checks) -> id_duplicated_in_batch.
  r = e->create_transfers({t, t});
  const auto want = m.create_transfers({t, t}, r.timestamp_base);
  EXPECT_EQ(want, (std::vector<result>{result::ok, result::id_duplicated_in_batch}));
  ASSERT_EQ(r.results.size(), 2u);
  EXPECT_EQ(r.results[1], want[1]) << "engine: " << res_str(r.results[1]) << ", model: " << res_str(want[1]);
  e->close();
}

// The model itself, on a few hand-checked cases (so a model bug is not mistaken for an
// engine bug).
TEST(reference_ledger, hand_checked_cases) {
  ref_ledger m;
  auto acct = [](uint64_t id, uint16_t flags = 0) {
    wire::account a;
    a.id = id;
    a.currency = wire::currency("USD");
    a.flags = flags;
    return a;
  };
  auto xfer = [](uint64_t id, uint64_t dr, uint64_t cr, uint64_t amount, uint16_t flags = 0) {
    wire::transfer t;
    t.id = {id, 0};
    t.debit_account_id = dr;
    t.credit_account_id = cr;
    t.amount = amount;
    t.currency = wire::currency("USD");
    t.flags = flags;
    return t;
  };
  using enum wire::result;
  uint64_t ts = 1000;
  auto r = m.create_accounts({acct(1), acct(2), acct(3, wire::account_flags::debits_must_not_exceed_credits), acct(1)}, ts);
  EXPECT_EQ(r, (std::vector<result>{ok, ok, ok, id_duplicated_in_batch}));
  ts += 10;
  // A chain whose second operation fails: the first is undone.
  auto linked = wire::transfer_flags::linked;
  r = m.create_transfers({xfer(1, 1, 2, 10, linked), xfer(2, 3, 1, 5), xfer(3, 1, 2, 7)}, ts);
  EXPECT_EQ(r, (std::vector<result>{linked_event_failed, exceeds_credits, ok}));
  EXPECT_EQ(m.lookup_account(1)->debits_posted, 7u);
  EXPECT_EQ(m.lookup_transfer({1, 0})->res, linked_event_failed);
  ts += 10;
  // Repeats: recorded result; different fields; in-batch duplicate.
  r = m.create_transfers({xfer(1, 1, 2, 10, linked), xfer(3, 1, 2, 8), xfer(3, 1, 2, 7), xfer(4, 1, 2, 1)}, ts);
  EXPECT_EQ(r, (std::vector<result>{linked_event_failed, exists_with_different_fields, id_duplicated_in_batch, ok}));
  ts += 10;
  // Pending with a timeout; post partially; expiry of another.
  auto p5 = xfer(5, 1, 2, 50, wire::transfer_flags::pending);
  auto p6 = xfer(6, 1, 2, 40, wire::transfer_flags::pending);
  p6.timeout_s = 1;
  r = m.create_transfers({p5, p6}, ts);
  EXPECT_EQ(r, (std::vector<result>{ok, ok}));
  EXPECT_EQ(m.lookup_account(1)->debits_pending, 90u);
  auto post5 = xfer(7, 0, 0, 20, wire::transfer_flags::post_pending);
  post5.pending_id = {5, 0};
  post5.currency = 0;
  auto post6 = xfer(8, 0, 0, 0, wire::transfer_flags::post_pending);
  post6.pending_id = {6, 0};
  post6.currency = 0;
  const uint64_t t6 = ts + 1;
  r = m.create_transfers({post5, post6}, t6 + ns_per_s - 1);  // op 1 at the deadline: swept
  EXPECT_EQ(r, (std::vector<result>{ok, pending_transfer_expired}));
  EXPECT_EQ(m.lookup_account(1)->debits_pending, 0u);
  EXPECT_EQ(m.lookup_account(1)->debits_posted, 28u);
  // Open chain at the end of a batch.
  r = m.create_transfers({xfer(9, 1, 2, 1), xfer(10, 1, 2, 1, linked), xfer(11, 1, 2, 1, linked)}, t6 + 2 * ns_per_s);
  EXPECT_EQ(r, (std::vector<result>{ok, linked_event_failed, linked_event_chain_open}));
  EXPECT_EQ(m.lookup_transfer({10, 0}), nullptr);

  // Pending transfers past the share of pending_max (2, one shard): refused after the
  // ledger's own checks; a failed chain, a void and expiry give room back.
  ref_ledger c;
  c.set_pending_capacity(2, 1);
  ts = 1000;
  ASSERT_EQ(c.create_accounts({acct(1), acct(2), acct(3, wire::account_flags::debits_must_not_exceed_credits)}, ts),
            (std::vector<result>{ok, ok, ok}));
  const auto pending = wire::transfer_flags::pending;
  auto p22 = xfer(22, 2, 1, 5, pending);
  p22.timeout_s = 1;
  r = c.create_transfers({xfer(21, 1, 2, 5, pending), p22, xfer(23, 1, 2, 5, pending), xfer(24, 3, 1, 5, pending)}, ts += 10);
  EXPECT_EQ(r, (std::vector<result>{ok, ok, pending_full, exceeds_credits}));
  auto void21 = xfer(25, 0, 0, 0, wire::transfer_flags::void_pending);
  void21.pending_id = {21, 0};
  void21.currency = 0;
  r = c.create_transfers({void21, xfer(26, 1, 2, 5, pending | linked), xfer(27, 1, 9, 5)}, ts += 10);
  EXPECT_EQ(r, (std::vector<result>{ok, linked_event_failed, credit_account_not_found}));
  r = c.create_transfers({xfer(28, 1, 2, 5, pending), xfer(29, 1, 2, 5, pending)}, ts += 10);
  EXPECT_EQ(r, (std::vector<result>{ok, pending_full}));
  r = c.create_transfers({xfer(30, 1, 2, 5, pending)}, ts + ns_per_s);  // 22 expired first
  EXPECT_EQ(r, (std::vector<result>{ok}));
}

}  // namespace
