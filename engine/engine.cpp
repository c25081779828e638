#include "engine/engine.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <caf/all.hpp>
#include <chrono>
#include <condition_variable>
#include <unordered_set>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <sstream>
#include <set>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "actors/shard.hpp"
#include "actors/shard_actor.hpp"
#include "actors/trading.hpp"
#include "engine/engine_clock.hpp"
#include "engine/events.hpp"
#include "engine/id_index.hpp"
#include "engine/limits.hpp"
#include "engine/record_rows.hpp"
#include "storage/failure_probes.hpp"
#include "storage/snapshot.hpp"
#include "storage/wal.hpp"
#include "wire/assert.hpp"
#include "wire/event_pack.hpp"
#include "wire/steady_ns.hpp"

// jemalloc: return freed pages to the system within a second instead of ten, so
// resident memory follows the engine's bounded working set (checkpoint buffers, LMDB
// transaction pages) rather than its peaks. Read by jemalloc at start-up.
extern "C" {
const char* malloc_conf = "dirty_decay_ms:1000,muzzy_decay_ms:1000";
}

namespace mesob::engine {

using actors::batch;
using actors::checkpoint_cut;
using actors::op_route;
using actors::route_kind;
using actors::shard_of;
using wire::result;

const char* status_name(status s) {
  switch (s) {
    case status::ok: return "ok";
    case status::batch_too_large: return "batch_too_large";
    case status::engine_failed: return "engine_failed";
    case status::stopping: return "stopping";
    case status::kind_invalid: return "kind_invalid";
  }
  return "unknown";
}

namespace {

// Log payload of one batch (record_kind::batch, version 3): this header, then `count`
// fixed-width operations of the kind's struct. Version 2 (same layout) marks records of
// builds with a payout desk per shard, sweeps and 64-outcome breakers: the records
// payout desks decide from (answers, operators' actions, session events, the desks'
// chains) of version 1 were decided by other rules, and replaying them here would
// diverge; those are refused (take a snapshot with the old build first). Version 1
// records of anything else replay as before.
struct batch_record_header {
  uint16_t kind;
  uint16_t flags;  // batch_flag_*
  uint32_t count;
  uint64_t timestamp_base;
};
static_assert(sizeof(batch_record_header) == batch_record_header_bytes);
// Version 3: group creates carry the group's number (the engine's, in the seed); version
// 2 and older records replay a create carrying seed bytes, and a payout_to, as refused,
// as they were then. Version 4: a transfer batch may be packed (batch_flag_packed); its
// other rules are version 3's. Version 5: group creates with a period or grace over
// equb::period_max_ns are refused (period_too_long); older records replay them as taken.
// Version 6: payout desks cancel the gateways a payout leaves, keep a gateway's payouts in
// flight past its session closing, and take answers by newer rules (actors/payout_desk.hpp:
// overpayments, released dead letters, a cancel asked before another gateway pays); what
// desks decide within older records (answers, sessions' events, timers) follows the rules
// of the builds that wrote them. Version 7: ended equb groups take debt payments,
// dissolving turns past rounds into debts, the replace_account operation, a create
// repeating an existing group's config taken whatever its period, a create naming an
// engine account refused; an ending order's grace waits for its brokers' sessions, a
// reject waits for the brokers an order fell back from, fill ids are each broker's;
// older records replay with a replace_account refused and the rest as before. A replayed batch carries its record's version (batch::rules,
// actors/rules_version.hpp), which the shards decide by.
constexpr uint16_t batch_record_version = actors::rules_newest;
// The batch is a chain an equb group emitted (its ids are in the groups' reserved space).
constexpr uint16_t batch_flag_emitted = 1;
// The batch is gateways' deposits (its ids are in the deposits' reserved space).
constexpr uint16_t batch_flag_gateway = 2;
// The transfers follow packed (wire/event_pack.hpp), not as `count` 88-byte structs
// (version 4 on). Packed whenever that is smaller: a load's batch of 8,192 takes about
// 8 bytes a transfer instead of 88, and every byte saved is one the sequencer does not
// hash (SHA-256 chain, CRC-32C) and the disk does not write (perf/RESULTS.md,
// twenty-fourth session).
constexpr uint16_t batch_flag_packed = 4;
static_assert(batch_ops_max <= wire::events_per_frame_max, "a transfer batch packs in one call");
static_assert(transfers_max_limit == id_index::serial_max, "a transfer per serial");

double cpu_seconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

uint64_t clock_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

std::span<const uint8_t> ops_bytes(const batch& b) {
  switch (b.kind) {
    case op_kind::create_accounts:
      return {reinterpret_cast<const uint8_t*>(b.accounts.data()), b.accounts.size() * sizeof(wire::account)};
    case op_kind::create_transfers:
      return {reinterpret_cast<const uint8_t*>(b.transfers.data()), b.transfers.size() * sizeof(wire::transfer)};
    case op_kind::set_account_status:
      return {reinterpret_cast<const uint8_t*>(b.status_changes.data()),
              b.status_changes.size() * sizeof(wire::account_status_change)};
    case op_kind::equb_ops:
      return {reinterpret_cast<const uint8_t*>(b.equb_ops.data()), b.equb_ops.size() * sizeof(wire::equb_op)};
    case op_kind::gateway_ops:
      return {reinterpret_cast<const uint8_t*>(b.gateway_ops.data()), b.gateway_ops.size() * sizeof(wire::gateway_op)};
    case op_kind::payout_answers:
      return {reinterpret_cast<const uint8_t*>(b.payout_answers.data()),
              b.payout_answers.size() * sizeof(wire::payout_answer)};
    case op_kind::gateway_events:
      return {reinterpret_cast<const uint8_t*>(b.gateway_events.data()),
              b.gateway_events.size() * sizeof(wire::gateway_event)};
    case op_kind::payout_ops:
      return {reinterpret_cast<const uint8_t*>(b.payout_ops.data()), b.payout_ops.size() * sizeof(wire::payout_op)};
    case op_kind::instrument_ops:
      return {reinterpret_cast<const uint8_t*>(b.instrument_ops.data()),
              b.instrument_ops.size() * sizeof(wire::instrument_op)};
    case op_kind::prices:
      return {reinterpret_cast<const uint8_t*>(b.prices.data()), b.prices.size() * sizeof(wire::price)};
    case op_kind::customer_ops:
      return {reinterpret_cast<const uint8_t*>(b.customer_ops.data()), b.customer_ops.size() * sizeof(wire::customer_op)};
    case op_kind::policy_ops:
      return {reinterpret_cast<const uint8_t*>(b.policy_ops.data()), b.policy_ops.size() * sizeof(wire::policy_op)};
    case op_kind::orders:
      return {reinterpret_cast<const uint8_t*>(b.orders.data()), b.orders.size() * sizeof(wire::order)};
    case op_kind::order_answers:
      return {reinterpret_cast<const uint8_t*>(b.order_answers.data()), b.order_answers.size() * sizeof(wire::order_answer)};
    case op_kind::order_cancels:
    case op_kind::order_retries:
    case op_kind::order_retries_forced:
      return {reinterpret_cast<const uint8_t*>(b.order_cancels.data()), b.order_cancels.size() * sizeof(wire::order_cancel)};
    case op_kind::tick:
      if (b.resumed_after == 0) return {};
      return {reinterpret_cast<const uint8_t*>(&b.resumed_after), sizeof b.resumed_after};
    default: return {};
  }
}

// Whether a record of this kind and version carries the capacity it is decided by:
// creates of accounts and equb groups (rules_capacity), transfer batches and orders, which
// may make pending transfers (rules_pending_capacity).
bool carries_capacity(op_kind kind, uint16_t version) {
  return (version >= actors::rules_capacity && (kind == op_kind::create_accounts || kind == op_kind::equb_ops)) ||
         (version >= actors::rules_pending_capacity && (kind == op_kind::create_transfers || kind == op_kind::orders));
}

// Whether an equb_ops record carries, after its groups_max, the accounts_max its escrow
// accounts are decided by (rules_escrow_capacity).
bool carries_accounts_capacity(op_kind kind, uint16_t version) {
  return version >= actors::rules_escrow_capacity && kind == op_kind::equb_ops;
}

// Whether it carries, after that, the transfers_max it is decided by (rules_transfers_capacity).
bool carries_transfers_capacity(op_kind kind, uint16_t version) {
  return version >= actors::rules_transfers_capacity && (kind == op_kind::create_transfers || kind == op_kind::orders);
}

template <class T>
bool decode_ops(std::span<const uint8_t> body, uint32_t count, std::vector<T>& out) {
  if (body.size() != uint64_t(count) * sizeof(T)) return false;
  out.resize(count);
  std::memcpy(out.data(), body.data(), body.size());
  return true;
}

// Creates the directories of `path` that are missing, each made durable in its parent
// (a power cut must not take a directory whose files were synced); those already there
// are synced in their parents again.
bool mkdirs(const std::string& path, std::string* error) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty()) {
        const auto slash = cur.find_last_of('/');
        const std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : cur.substr(0, slash);
        if (::mkdir(cur.c_str(), 0755) == 0) {
          if (!storage::fsync_dir(parent)) {
            *error = "cannot sync directory " + parent + " after creating " + cur + ": " + std::strerror(errno);
            return false;
          }
        } else if (errno != EEXIST) {
          *error = "cannot create directory " + cur + ": " + std::strerror(errno);
          return false;
        } else {
          // There already, maybe from a start that ended between its mkdir and this sync:
          // synced again, best effort (an ancestor the process may not open is no reason
          // to refuse a start; the failure probes are for the syncs that must succeed).
          if (const int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
            (void)::fsync(fd);
            ::close(fd);
          }
        }
      }
    }
    if (i < path.size()) cur.push_back(path[i]);
  }
  if (::access(path.c_str(), W_OK) != 0) {
    *error = "directory " + path + " is not writable";
    return false;
  }
  return true;
}

// What the sequencer refuses of an account to create whatever the engine holds: a bad
// field, or an id in the engine's reserved ranges (payout and trading accounts) unless
// the engine makes it itself.
result account_refusal(const wire::account& a, bool engine_made) {
  if (const result r = actors::check_account_fields(a); r != result::ok) return r;
  if (!engine_made && (actors::payouts::payout_account(a.id) || actors::trading::reserved_key(a.id)))
    return result::id_reserved;
  return result::ok;
}

}  // namespace

// ---------------------------------------------------------------------------------

// A batch with the caller's reply callback (actors/ knows nothing of replies).
struct engine_batch : batch {
  std::function<void(reply&&)> user_done;
  std::vector<history_query> history_queries;
  std::vector<balance_query> balance_queries;
};

namespace {
uint64_t unix_ns_now() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
}
}  // namespace

// One engine at a time on a data directory. A second one (an operator's mistake, a
// restart while the old process still stops, a replacement container on the same
// volume) would cut the first's log tail as torn, pre-zero its next segment under it and
// checkpoint older state over the newer. An exclusive flock on <data>/LOCK, taken before
// anything in the directory is read or repaired and held for the engine's life (the
// kernel lets it go when the process ends, however it ends); the holder's pid is written
// in it for the message.
class data_dir_lock {
 public:
  // The refusal of a directory whose lock file (open as fd) another process holds.
  static std::string held_by(const std::string& dir, int fd) {
    char held[24] = {};
    const ssize_t n = ::pread(fd, held, sizeof held - 1, 0);
    std::string pid(held, size_t(std::max<ssize_t>(n, 0)));
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return "data directory " + dir + " is in use by another engine" + (pid.empty() ? std::string() : " (pid " + pid + ")") +
           " (" + dir + "/LOCK is locked): one process at a time may open it";
  }
  data_dir_lock() = default;
  data_dir_lock(const data_dir_lock&) = delete;
  data_dir_lock& operator=(const data_dir_lock&) = delete;
  ~data_dir_lock() { release(); }
  void release() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool take(const std::string& dir, std::string* error) {
    const std::string path = dir + "/LOCK";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      *error = "cannot open " + path + ": " + std::strerror(errno);
      return false;
    }
    // A few tries over 50 ms: another start looking at the lock to name its holder
    // (data_dir_in_use) holds it shared for a moment.
    int rc = 0;
    for (int tries = 1; (rc = ::flock(fd_, LOCK_EX | LOCK_NB)) != 0 && errno == EWOULDBLOCK && tries < 5; ++tries)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (rc != 0) {
      const int err = errno;
      *error = err == EWOULDBLOCK ? held_by(dir, fd_) : "cannot lock " + path + ": " + std::strerror(err);
      ::close(fd_);
      fd_ = -1;
      return false;
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
      // (The pid is for the message only: the lock holds without it.)
    }
    return true;
  }

 private:
  int fd_ = -1;
};

std::string data_dir_in_use(const std::string& dir) {
  const int fd = ::open((dir + "/LOCK").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string held;
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) held = data_dir_lock::held_by(dir, fd);
  ::close(fd);
  return held;
}

class engine_impl {
 public:
  // First: released last, or by close() once nothing more is written in the directory
  // (the event log stays open, idle, until destruction; the snapshot store is closed).
  data_dir_lock lock_;
  struct queued {
    request req;
    std::function<void(reply&&)> done;
    bool emitted = false;  // a chain an equb group emitted (no caller waits for it)
  };

  config cfg_;
  uint32_t shards_n_ = 1;
  std::unique_ptr<actors::record_store> records_;
  std::vector<std::unique_ptr<actors::shard>> shards_;
  id_index ids_;
  std::unique_ptr<caf::actor_system_config> caf_cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::vector<caf::actor> shard_actors_;
  std::unique_ptr<storage::snapshot_store> snap_;
  // Held shared by callers' threads reading snap_ (lookup_recon), alone by close() to drop it.
  std::shared_mutex snap_read_mu_;
  std::unique_ptr<storage::wal_writer> wal_;
  // The event stream (engine/events.hpp); unset when cfg_.events is off.
  std::unique_ptr<storage::event_log> event_log_;
  std::unique_ptr<event_writer> event_writer_;
  std::unique_ptr<event_hub> event_hub_;
  uint64_t event_seq_ = 0;  // event groups sent (the sequencer's)
  uint64_t event_log_last_lsn_ = 0;  // the newest log record the event log had events of, at open
  std::string events_covered_path() const { return cfg_.data_dir + "/events/covered"; }

  // Recovery of the event stream, once the snapshot is loaded (its lsn `snap`): the event
  // log must hold the events of every record the snapshot covers; the events of the
  // newest record it has past the snapshot may be cut short (a crash mid-append), so
  // they go, and replay writes them again with the records after them.
  bool recover_events(uint64_t snap, std::string* error) {
    // Every checkpoint with the event log writes events/covered before its snapshot: a
    // snapshot past what it records was made without the log. With no events/covered yet
    // (no checkpoint since the log began), one past the newest record the log holds
    // events of was too; an empty log begins a new stream after the snapshot.
    const bool covered_known = covered_.present || event_log_->next_offset() > 1;
    const uint64_t covered = covered_.present ? covered_.lsn : event_log_last_lsn_;
    std::string word;
    if (covered_known && covered < snap) {
      *error = "events: the event log covers log records up to " + std::to_string(covered) +
               " but the snapshot is at " + std::to_string(snap) +
               ": the records between have no events (did mesobd run with --no-events?). Start with --no-events, "
               "or move " + cfg_.data_dir + "/events away to begin a new stream after record " + std::to_string(snap);
      return false;
    }
    // The evidence of durable records the cut below takes away is kept first: a start that
    // refuses a damaged log under it (recover()) refuses again the next time.
    if (event_log_last_lsn_ > events_newest_) {
      if (!storage::replace_file(events_newest_path(), "lsn " + std::to_string(event_log_last_lsn_) + "\n", error)) {
        *error = "events: " + *error;
        return false;
      }
      events_newest_ = event_log_last_lsn_;
    }
    uint64_t kept = event_log_last_lsn_;
    // A start that cut the newest record's events and was then refused (damage in the
    // log under them, say) left the log whole through the record before: events/whole
    // says so, with the log's end then. Cut again at every refused start, the event log
    // would wear back to the snapshot, one record a start.
    events_whole whole;
    if (!read_events_whole(&whole, error)) return false;
    if (whole.present && whole.offset == event_log_->next_offset() && whole.lsn >= kept && kept > snap) {
      event_writer_->recovered(whole.lsn, snap);
      return true;
    }
    if (kept > snap) {
      uint64_t from = 0;
      if (!event_log_->newest_run_from(kept, &from, error)) return false;
      // Synced events past the snapshot may go with the cut (replay writes them again):
      // the recorded offset comes down first, so that a start after a crash in the cut
      // does not take their absence for damage.
      if (covered_.present && covered_.offset > from) {
        std::string err = write_events_covered(covered_.lsn, from);
        if (!err.empty()) {
          *error = err;
          return false;
        }
      }
      if (!event_log_->cut_back_to(from, error)) return false;
      kept -= 1;
      if (!storage::replace_file(events_whole_path(),
                                 "lsn " + std::to_string(kept) + " offset " + std::to_string(from) + "\n", error)) {
        *error = "events: " + *error;
        return false;
      }
    }
    event_writer_->recovered(kept, snap);
    return true;
  }
  // events/whole: "lsn L offset O": the latest start cut the event log back to O, whole
  // through record L; true of the log while its end is still O.
  std::string events_whole_path() const { return cfg_.data_dir + "/events/whole"; }
  struct events_whole {
    bool present = false;
    uint64_t lsn = 0;
    uint64_t offset = 0;
  };
  bool read_events_whole(events_whole* out, std::string* error) {
    *out = {};
    std::vector<std::string> w;
    bool present = false;
    if (!evidence_words(events_whole_path(), true, &w, &present, error)) return false;
    if (!present) return true;
    if (w.size() != 4 || w[0] != "lsn" || w[2] != "offset" || !evidence_u64(w[1], &out->lsn) ||
        !evidence_u64(w[3], &out->offset)) {
      *error = "events: " + events_whole_path() + " is damaged (move it away to start without it)";
      return false;
    }
    out->present = true;
    return true;
  }

  // Before a snapshot at `lsn` commits: the event log holds every event up to it, and
  // every offset before `offset` is synced (damage there is not a torn tail).
  std::string write_events_covered(uint64_t lsn, uint64_t offset) {
    std::string err;
    if (!storage::replace_file(events_covered_path(),
                               "lsn " + std::to_string(lsn) + " offset " + std::to_string(offset) + "\n", &err))
      return "events: " + err;
    covered_ = {true, lsn, offset};
    return {};
  }
  // events/covered: "lsn L offset O" ("lsn L" from builds before the offset), read before
  // the event log opens.
  struct events_covered {
    bool present = false;
    uint64_t lsn = 0;
    uint64_t offset = 1;  // 1: not known
  };
  events_covered covered_;
  // events/newest: "lsn L", the newest log record the event log has held events of (so a
  // durable one), as of the latest start; absent: none known.
  std::string events_newest_path() const { return cfg_.data_dir + "/events/newest"; }
  uint64_t events_newest_ = 0;
  // The words of a small evidence file's first line (`whole`: of the whole file): false
  // with *error when it exists and cannot be read (EACCES, EIO: read as absent, its
  // evidence would be dropped); *present false when it does not exist.
  static bool evidence_words(const std::string& path, bool whole, std::vector<std::string>* words, bool* present,
                             std::string* error) {
    words->clear();
    *present = false;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return true;
      *error = "events: cannot open " + path + ": " + std::strerror(errno);
      return false;
    }
    std::string text(4096, '\0');
    size_t got = 0;
    for (;;) {
      const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        *error = "events: cannot read " + path + ": " + std::strerror(errno);
        ::close(fd);
        return false;
      }
      if (n == 0 || (got += size_t(n)) == text.size()) break;
    }
    ::close(fd);
    text.resize(got);
    if (!whole) text = text.substr(0, text.find('\n'));
    std::istringstream ls(text);
    for (std::string w; ls >> w;) words->push_back(w);
    *present = true;
    return true;
  }
  // A decimal u64, digits only (">>" into an unsigned takes "-5" as 2^64 - 5).
  static bool evidence_u64(const std::string& w, uint64_t* out) {
    if (w.empty() || w.size() > 20 || w.find_first_not_of("0123456789") != std::string::npos) return false;
    errno = 0;
    const unsigned long long v = std::strtoull(w.c_str(), nullptr, 10);
    if (errno == ERANGE) return false;
    *out = v;
    return true;
  }
  bool read_events_newest(std::string* error) {
    std::vector<std::string> w;
    bool present = false;
    if (!evidence_words(events_newest_path(), true, &w, &present, error)) return false;
    if (!present) return true;
    uint64_t lsn = 0;
    if (w.size() != 2 || w[0] != "lsn" || !evidence_u64(w[1], &lsn)) {
      *error = "events: " + events_newest_path() + " is damaged (move it away to start without it)";
      return false;
    }
    events_newest_ = lsn;
    return true;
  }
  static bool read_events_covered(const std::string& path, events_covered* out, std::string* error) {
    *out = {};
    std::vector<std::string> w;
    bool present = false;
    if (!evidence_words(path, false, &w, &present, error)) return false;
    if (!present) return true;
    uint64_t lsn = 0, offset = 1;
    bool ok = (w.size() == 2 || w.size() == 4) && w[0] == "lsn" && evidence_u64(w[1], &lsn);
    if (ok && w.size() == 4) ok = w[2] == "offset" && evidence_u64(w[3], &offset) && offset >= 1;
    if (!ok) {
      *error = "events: " + path + " is damaged (move it away to start without it)";
      return false;
    }
    *out = {true, lsn, offset};
    return true;
  }
  static constexpr size_t event_backlog_max = 256;  // groups the writer may lag behind
  uint32_t other_count_ = 0;       // the shard count that wrote the snapshot's trading breakers, if not this one
  int wake_fd_ = -1;
  recovery_report rec_;

  // Request queue (callers -> sequencer).
  std::mutex q_mu_;
  std::condition_variable q_space_;
  std::vector<queued> q_;
  std::vector<std::shared_ptr<engine_batch>> walks_;  // account queries back from the shards
  std::atomic<uint64_t> walks_deferred_{0};           // for stats()
  bool accepting_ = true;
  std::atomic<bool> sleeping_{false};
  std::atomic<size_t> wake_at_{1};  // queue length whose request wakes a waiting sequencer
  std::atomic<bool> stop_{false};

  // Sequencer state (sequencer thread only, or recovery before it starts).
  // The gateway registry as of the last sequenced batch (copied on change: published
  // versions are immutable), and the one readers see: as of the last dispatched batch.
  std::shared_ptr<const actors::gateways::registry> registry_ = std::make_shared<actors::gateways::registry>();
  mutable std::mutex registry_mu_;
  std::shared_ptr<const actors::gateways::registry> registry_published_ = registry_;
  void publish_registry(std::shared_ptr<const actors::gateways::registry> r) {
    std::lock_guard lk(registry_mu_);
    registry_published_ = std::move(r);
  }
  std::shared_ptr<const actors::gateways::registry> published_registry() const {
    std::lock_guard lk(registry_mu_);
    return registry_published_;
  }
  uint64_t last_ts_ = 0;
  engine_clock clock_{clock_step_max_ns};  // the sequencer's (now())
  std::atomic<uint64_t> clock_steps_{0};   // its counters, for stats()
  std::atomic<int64_t> clock_skew_ns_{0};
  uint64_t next_tick_ns_ = 0;
  // Written by the sequencer only; atomics so stats() may read them from any thread.
  std::atomic<uint64_t> dispatched_lsn_{0};
  storage::chain_hash dispatched_chain_{};
  std::atomic<uint64_t> dispatched_serial_end_{0};
  uint64_t dispatched_ts_ = 0;  // timestamp of the last operation dispatched
  bool failed_ = false;
  std::string close_why_;  // set by close(): why the stop was not clean (empty: it was)
  uint64_t last_checkpoint_ns_ = 0;
  std::atomic<uint64_t> snapshot_unix_ns_{0};  // wall clock when the last snapshot this run was written
  bool checkpoint_running_ = false;
  // Callers of checkpoint() not yet served by a cut; each cut takes the ones before it.
  std::vector<std::promise<std::string>> checkpoint_waiters_;  // guarded by ck_mu_
  std::map<const checkpoint_cut*, std::vector<std::promise<std::string>>> cut_waiters_;
  std::thread seq_thread_;

  // Batches dispatched but not finished by every shard. Shards skip batches they have
  // no part in, so batches may finish out of dispatch order: `unfinished_` holds each
  // dispatched batch's serial_end and whether it finished, in dispatch order from
  // `unfinished_base_`, and executed_serial_end_ advances over the finished prefix.
  std::mutex out_mu_;
  std::condition_variable out_cv_;
  uint32_t outstanding_ = 0;
  std::deque<std::pair<uint64_t, bool>> unfinished_;
  uint64_t unfinished_base_ = 0;

  // Checkpoint thread.
  std::mutex ck_mu_;
  std::mutex verify_mu_;  // held by verify_log: wal_ stays (its deletions are held meanwhile)
  std::condition_variable ck_cv_;
  std::deque<std::shared_ptr<checkpoint_cut>> ck_queue_;
  bool ck_stop_ = false;
  bool checkpoint_requested_ = false;
  std::thread ck_thread_;
  std::atomic<uint64_t> flushed_serial_{0};     // records below it are in the snapshot
  std::atomic<uint64_t> executed_serial_end_{0};  // records below it have final outcomes
  uint64_t records_floor_ = 0;                    // first serial loaded into the window
  bool replaying_ = false;
  uint64_t next_group_number_ = 1;  // the next create's (sequencer; 0: groups made before numbers)
  std::vector<std::shared_ptr<engine_batch>> replay_pending_;
  std::atomic<uint64_t> snapshot_lsn_{0};
  // The snapshot's chain hash, set with snapshot_lsn_ under snapshot_pos_mu_ (verify_log
  // reads the two together).
  std::mutex snapshot_pos_mu_;
  storage::chain_hash snapshot_chain_{};
  void set_snapshot_position(uint64_t lsn, const storage::chain_hash& chain) {
    std::lock_guard lk(snapshot_pos_mu_);
    snapshot_chain_ = chain;
    snapshot_lsn_.store(lsn);
  }
  uint64_t records_flush_target_ = 0;  // guarded by ck_mu_
  bool flush_failed_ = false;          // guarded by ck_mu_: the last records flush failed
  std::string flush_error_;            // guarded by ck_mu_
  // Live (not while replaying), a failed records flush is tried again after a pause that
  // doubles from records_flush_retry_ms_first up to records_flush_retry_ms_max.
  bool flush_retry_ = false;                                  // guarded by ck_mu_
  std::chrono::steady_clock::time_point flush_retry_at_{};    // guarded by ck_mu_
  uint32_t flush_retry_ms_ = 0;                               // guarded by ck_mu_
  std::atomic<uint64_t> flush_failures_{0};
  // Set by the sequencer when it refuses writes until restart (a storage failure), with
  // the first reason (for stats: the console's `status`).
  std::atomic<bool> writes_refused_{false};
  mutable std::mutex refused_mu_;
  std::string refused_why_;  // guarded by refused_mu_
  void refuse_for(const std::string& why) {
    {
      std::lock_guard lk(refused_mu_);
      if (refused_why_.empty()) refused_why_ = why;
    }
    writes_refused_.store(true);
  }
  // The log kept on the disk (wal_writer::kept_bytes, for stats and the checkpoint trigger).
  std::atomic<uint64_t> log_kept_bytes_{0};
  bool checkpoints_closed_ = false;  // guarded by ck_mu_: checkpoint() answers at once
  std::condition_variable ck_done_cv_;
  std::atomic<uint64_t> checkpoints_{0};
  std::atomic<uint64_t> checkpoint_failures_{0};
  std::string checkpoint_error_last_;  // guarded by ck_mu_
  std::atomic<uint64_t> checkpoint_ns_last_{0}, checkpoint_ns_total_{0};  // write_checkpoint's time

  // The engine clock (engine_clock.hpp): the wall clock, its steps not followed. An
  // injected clock with no steady one is both (tests move time by it).
  uint64_t now() {
    const uint64_t wall = cfg_.clock ? cfg_.clock() : clock_ns(CLOCK_REALTIME);
    const uint64_t steady = cfg_.steady_clock ? cfg_.steady_clock() : cfg_.clock ? wall : clock_ns(CLOCK_BOOTTIME);
    const uint64_t t = clock_.read(wall, steady);
    const int64_t skew = clock_.skew_ns();
    if (clock_.steps() != clock_steps_.load(std::memory_order_relaxed)) {
      clock_steps_.store(clock_.steps(), std::memory_order_relaxed);
      std::fprintf(stderr,
                   "mesobd: the wall clock is %+.3f s from the engine clock: a step, not followed; the engine clock "
                   "runs on by the steady clock until the wall clock comes back within %.3f s of it\n",
                   double(skew) * 1e-9, double(clock_step_max_ns) * 1e-9);
    } else if (skew == 0 && clock_skew_ns_.load(std::memory_order_relaxed) != 0) {
      std::fprintf(stderr, "mesobd: the wall clock is back with the engine clock, which follows it again\n");
    }
    clock_skew_ns_.store(skew, std::memory_order_relaxed);
    return t;
  }

  // ---- sequencing ---------------------------------------------------------------

  void stamp(batch& b) {
    const uint64_t span = std::max<uint64_t>(b.count, 1);
    b.timestamp_base = std::max(now(), last_ts_ + 1);
    last_ts_ = b.timestamp_base + span - 1;
  }

  void sequence_accounts(batch& b) {
    b.results.assign(b.count, result::ok);
    if (event_writer_) b.repeated.assign(b.count, 0);
    actors::flat_u64_map seen(b.count);
    for (uint32_t i = 0; i < b.count; ++i) {
      // Payout accounts are the engine's (engine::gateways makes them, flag `gateway`).
      b.results[i] = account_refusal(b.accounts[i], b.gateway);
      if (b.results[i] != result::ok) continue;
      if (seen.find(b.accounts[i].id)) b.results[i] = result::id_duplicated_in_batch;
      else seen.put(b.accounts[i].id, i);
    }
  }

  void sequence_status(batch& b) {
    b.results.assign(b.count, result::ok);
    if (event_writer_) b.repeated.assign(b.count, 0);
    if (event_writer_) b.status_seqs.assign(b.count, 0);
    for (uint32_t i = 0; i < b.count; ++i) {
      b.results[i] = actors::check_status_change_fields(b.status_changes[i], b.rules);
      if (b.results[i] == result::ok && actors::payouts::payout_account(b.status_changes[i].account_id))
        b.results[i] = result::payout_account_reserved;
      if (b.results[i] == result::ok && actors::trading::trading_account(b.status_changes[i].account_id))
        b.results[i] = result::trading_account_reserved;
    }
  }

  // ---- records: the resident window, then the snapshot --------------------------

  // A record the snapshot cannot give (a row failing its check, or missing) comes back
  // as no record (an outcome that is not ok, zero ids), and row_damage_ says why: the
  // request that read it is answered engine_failed, a write's refusing every write from
  // then on (what it decided on may be wrong, and is never logged), a look-up's alone;
  // replay stops the start (take_row_damage, and replay below).
  actors::transfer_record record_copy(uint64_t serial) {
    if (records_->resident(serial)) return records_->at(serial);
    actors::transfer_record r;
    std::string err;
    if (record_rows::get(*snap_, serial, &r, &err)) return r;
    rows_unreadable_.fetch_add(1, std::memory_order_relaxed);
    if (row_damage_.empty())
      row_damage_ = "transfer record " + std::to_string(serial) + ": " +
                    (err.empty() ? std::string("older than the resident window and not in the snapshot") : err);
    r = actors::transfer_record{};
    r.result = uint32_t(result::transfer_not_found);
    return r;
  }
  std::string row_damage_;  // sequencer thread

  // Answers `done` engine_failed if a record read since the last call failed; `writes`:
  // and refuses writes until restart.
  bool take_row_damage(const std::function<void(reply&&)>& done, bool writes) {
    if (row_damage_.empty()) return false;
    const std::string why = std::move(row_damage_);
    row_damage_.clear();
    if (writes) refuse_writes("a write read a record the snapshot cannot give: " + why);
    else std::fprintf(stderr, "mesobd: a look-up read a record the snapshot cannot give: %s\n", why.c_str());
    if (done) {
      reply r;
      r.st = status::engine_failed;
      done(std::move(r));
    }
    return true;
  }
  // Only one field's bytes of a resident record (one the sequencer wrote): the index may
  // ask for a record of a batch executing now, whose shards write its other fields
  // (result, history links). A whole copy then would race with them.
  template <typename T>
  T record_field(uint64_t serial, T wire::transfer::*field) {
    if (records_->resident(serial)) return records_->at(serial).t.*field;
    return record_copy(serial).t.*field;
  }
  wire::id128 record_id(uint64_t serial) { return record_field(serial, &wire::transfer::id); }

  void index_id(const wire::id128& id, uint64_t serial) { ids_.insert(id, serial); }

  // For stats() from any thread.
  std::atomic<uint64_t> pub_index_growths_{0}, pub_index_waits_{0}, pub_index_bytes_{0}, pub_index_next_growth_{0},
      pub_index_ranges_{0}, pub_index_probes_{0}, pub_index_table_{0};
  void publish_index_stats() {
    constexpr auto r = std::memory_order_relaxed;
    pub_index_growths_.store(ids_.growth_stats().growths, r);
    pub_index_waits_.store(ids_.growth_stats().waits, r);
    pub_index_bytes_.store(ids_.memory_bytes(), r);
    pub_index_next_growth_.store(ids_.next_growth_at(), r);
    pub_index_ranges_.store(ids_.ranges(), r);
    pub_index_table_.store(ids_.table_size(), r);
    pub_index_probes_.store(ids_.probes(), r);
  }

  // ---- pipeline flushes (rare: they stall the sequencer) --------------------------

  // Commits, dispatches and executes everything sequenced so far.
  void flush_pipeline() {
    if (replaying_) {
      send(std::move(replay_pending_), nullptr);
      replay_pending_.clear();
    } else {
      complete_flight();
      if (!open_list_.empty() && !failed_) {
        submit_open(true);
        complete_flight();
      }
    }
    wait_idle();
  }

  // Makes record `serial`'s outcome final (its batch executed).
  void ensure_executed(uint64_t serial) {
    if (serial >= executed_serial_end_.load(std::memory_order_acquire)) flush_pipeline();
    MESOB_ASSERT(serial < executed_serial_end_.load(std::memory_order_acquire) || failed_);
  }

  // Before appending record `n`: the slot it reuses must be checkpointed and executed.
  // Waits until the window may take one more record. False when it cannot: while
  // replaying, flushing failed (the replay then stops with flush_error_); live, the log
  // failed meanwhile or flushing failed, and the engine refuses writes from here on (the
  // batch being sequenced among them: log_and_queue refuses it, so the records it
  // appended are never logged).
  [[nodiscard]] bool make_room() {
    const uint64_t n = records_->size();
    const uint64_t w = records_->capacity();
    auto room = [&] {
      return n < w + std::min(flushed_serial_.load(), executed_serial_end_.load());
    };
    // Batches the failed log did not commit never execute: the window cannot move.
    if (failed_) return false;
    if (room()) return true;
    if (n >= w + executed_serial_end_.load()) flush_pipeline();
    if (failed_) return false;
    request_records_flush();
    const auto t0 = std::chrono::steady_clock::now();
    bool moved = false;
    std::string why;
    {
      std::unique_lock lk(ck_mu_);
      ck_done_cv_.wait(lk, [&] { return room() || flush_failed_; });
      if (!room() && !replaying_) {
        // Refusing writes lasts until restart: first one more try, now, not at its pause's end.
        const uint64_t failures = flush_failures_.load();
        flush_retry_at_ = std::chrono::steady_clock::now();
        ck_cv_.notify_all();
        ck_done_cv_.wait(lk, [&] { return room() || flush_failures_.load() > failures; });
      }
      moved = room();
      why = flush_error_;
    }
    if (replaying_)
      rec_.replay_shard_wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (moved) return true;
    if (replaying_) return false;
    refuse_writes("flushing transfer records to the snapshot failed (" + why +
                  ") and the window of resident records is full");
    return false;
  }

  // Live: what is logged so far commits and executes; every later write is refused with
  // engine_failed until restart (recovery replays the log, flushing again).
  void refuse_writes(const std::string& why) {
    flush_pipeline();
    if (!failed_) std::fprintf(stderr, "mesobd: %s; refusing writes until restart\n", why.c_str());
    failed_ = true;
    refuse_for(why);
  }

  // ---- create_transfers ------------------------------------------------------------

  void route_resolve(batch& b, op_route& r, const wire::transfer& t, uint64_t batch_first_serial,
                     uint64_t* dr, uint64_t* cr) {
    using ref_state = op_route::ref_state;
    r.kind = route_kind::resolve;
    const int64_t p = ids_.find(t.pending_id, [this](uint64_t s) { return record_id(s); });
    if (p < 0) return;
    const uint64_t ps = uint64_t(p);
    if (ps < batch_first_serial) ensure_executed(ps);
    const actors::transfer_record pr = record_copy(ps);
    r.has_ref = true;
    r.ref_serial = ps;
    r.ref_shard = uint8_t(shard_of(pr.owner_account_id, shards_n_));
    r.ref_debit_account_id = *dr = pr.t.debit_account_id;
    r.ref_credit_account_id = *cr = pr.t.credit_account_id;
    r.ref_currency = pr.t.currency;
    if (ps >= batch_first_serial) r.ref = ref_state::in_batch;
    else if (pr.result != uint32_t(result::ok)) r.ref = ref_state::not_found;
    else if (!(pr.t.flags & wire::transfer_flags::pending)) r.ref = ref_state::not_pending;
    else r.ref = ref_state::found;
    (void)b;
  }

  // A retried hold or deposit as it compares with the recorded one. A deposit's
  // settlement account is the registry's when it was made (an operator may change it
  // since). The engine's own account of a
  // payout's or an order's hold (a desk's payout account, a trading account) follows the
  // shard count when it was made: a retry after a restart with another count names
  // another account of the same kind, and is the same hold. An order's hold recorded by
  // an older build has no terms (trading.hpp).
  static wire::transfer as_retried(const wire::transfer& t, const wire::transfer& orig) {
    if (actors::gateways::deposit_id(t.id)) {  // its settlement account is the registry's, then
      wire::transfer c = t;
      c.debit_account_id = orig.debit_account_id;
      return c;
    }
    if (!actors::payouts::hold(t.id) && !actors::trading::hold(t.id)) return t;
    wire::transfer c = t;
    auto engines = [](uint64_t a) { return actors::payouts::payout_account(a) || actors::trading::trading_account(a); };
    if (engines(c.debit_account_id) && engines(orig.debit_account_id)) c.debit_account_id = orig.debit_account_id;
    if (engines(c.credit_account_id) && engines(orig.credit_account_id)) c.credit_account_id = orig.credit_account_id;
    if (actors::trading::hold(t.id) && orig.pending_id.zero()) c.pending_id = {};
    return c;
  }

  void sequence_transfers(batch& b) {
    const uint32_t n = b.count;
    b.results.assign(n, result::ok);
    b.routes.assign(n, op_route{});
    for (const uint64_t k : batch_repeat_keys_) batch_repeats_.erase(k);
    batch_repeat_keys_.clear();
    auto id_of = [this](uint64_t s) { return record_id(s); };
    // Chains: a run of linked operations closed by one without the flag.
    for (uint32_t i = 0; i < n;) {
      uint32_t j = i;
      while (j < n && (b.transfers[j].flags & wire::transfer_flags::linked)) ++j;
      if (j == n) {  // the batch ends inside a chain: the whole chain fails
        for (uint32_t o = i; o < n; ++o) {
          b.routes[o].chain_end = n - 1;
          b.results[o] = o + 1 == n ? result::linked_event_chain_open : result::linked_event_failed;
        }
        break;
      }
      for (uint32_t o = i; o <= j; ++o) b.routes[o].chain_end = j;
      i = j + 1;
    }
    uint64_t batch_first_serial = UINT64_MAX;
    // Every transfer keeps its id in memory: past transfers_max (the one logged with the
    // batch) a new one is refused and not recorded, except the engine's own, whose state
    // machines expect no such refusal (and which clients' requests bound). A post or void
    // goes on up to pending_max past it (each pending transfer resolves once), so that
    // money held is not held for good; a chain is decided whole, by the links it would
    // record (a chain recorded in part would fail for good, its first links' ids taken).
    const bool capped = !b.emitted && b.transfers_capacity != 0;
    auto room_for = [&](uint64_t fresh, bool resolves_only) {
      return records_->size() + fresh <= b.transfers_capacity + (resolves_only ? b.capacity : 0);
    };
    // A post or void of a pending transfer recorded (one naming no such transfer gets no
    // more room than any other).
    constexpr uint16_t resolving = wire::transfer_flags::post_pending | wire::transfer_flags::void_pending;
    auto resolves_recorded = [&](const wire::transfer& x) {
      return (x.flags & resolving) && !x.pending_id.zero() && ids_.find(x.pending_id, id_of) >= 0;
    };
    uint32_t full_chain_end = UINT32_MAX;  // the last link of a chain refused whole
    // The ids whose look-up would probe the id index's table hashed once each, in a loop
    // of their own (engine/id_index.hpp: hash); any other is hashed where it needs it.
    batch_hashes_.resize(n);
    batch_hashed_.resize(n);
    for (uint32_t o = 0; o < n; ++o) {
      const bool probes = ids_.may_probe(b.transfers[o].id);
      batch_hashed_[o] = probes;
      if (probes) batch_hashes_[o] = ids_.hash(b.transfers[o].id);
    }
    auto id_hash = [this](uint32_t o) { return batch_hashed_[o] ? &batch_hashes_[o] : nullptr; };
    constexpr uint32_t index_ahead = 8;  // id index misses overlap (perf/RESULTS.md)
    for (uint32_t o = 0; o < std::min(n, index_ahead); ++o) ids_.prefetch(b.transfers[o].id, id_hash(o));
    for (uint32_t o = 0; o < n; ++o) {
      if (o + index_ahead < n) ids_.prefetch(b.transfers[o + index_ahead].id, id_hash(o + index_ahead));
      op_route& r = b.routes[o];
      const wire::transfer& t = b.transfers[o];
      if (b.results[o] != result::ok) continue;  // open chain
      // (Looked at only when the whole chain might not fit: its links are looked up
      // twice then.) A chain all of whose links are recorded is a repeat: it has room.
      if (capped && r.chain_end > o && (o == 0 || !(b.transfers[o - 1].flags & wire::transfer_flags::linked)) &&
          !room_for(r.chain_end - o + 1, false)) {
        uint64_t fresh = 0;
        bool resolves_only = true;
        for (uint32_t k = o; k <= r.chain_end; ++k)
          if (ids_.find(b.transfers[k].id, id_hash(k), id_of) < 0) {
            ++fresh;
            resolves_only = resolves_only && resolves_recorded(b.transfers[k]);
          }
        if (fresh != 0 && !room_for(fresh, resolves_only)) full_chain_end = r.chain_end;
      }
      // An order's hold carries the order's terms where a post or void names its pending
      // transfer (trading.hpp): checked as a creation, and not a reference.
      const bool order_hold = b.kind == op_kind::orders;
      const wire::id128 ref = order_hold ? wire::id128{} : t.pending_id;
      wire::transfer as_created;
      if (order_hold) {
        as_created = t;
        as_created.pending_id = {};
      }
      const result fields = actors::check_transfer_fields(order_hold ? as_created : t);
      if (fields != result::ok) {
        b.results[o] = fields;
        continue;
      }
      if ((t.flags & wire::transfer_flags::equb) && o > 0 && (b.transfers[o - 1].flags & wire::transfer_flags::linked)) {
        b.results[o] = result::equb_transfer_must_stand_alone;  // the last link of a chain
        continue;
      }
      // Reserved ids: groups' and desks' chains (flag emitted), deposits and payout holds
      // (flag gateway; a group's payout sent on through a gateway: flag emitted), and no
      // client post or void of a payout's hold.
      // Orders' holds come from orders batches, their settlements are emitted.
      if ((!b.emitted && (actors::equb::reserved_id(t.id) || actors::payouts::emitted(t.id))) ||
          (!b.gateway && actors::gateways::deposit_id(t.id)) ||
          (!b.gateway && !b.emitted && actors::payouts::hold(t.id)) ||
          (!b.emitted && actors::payouts::hold(ref)) ||
          (!b.emitted && (actors::trading::emitted(t.id) || actors::trading::hold(ref))) ||
          (!b.emitted && b.kind != op_kind::orders && actors::trading::hold(t.id))) {
        b.results[o] = result::id_reserved;
        continue;
      }
      if (!b.emitted && b.kind != op_kind::orders &&
          (actors::trading::trading_account(t.debit_account_id) || actors::trading::trading_account(t.credit_account_id))) {
        b.results[o] = result::trading_account_reserved;
        continue;
      }
      // Payout accounts move money for their desk only: its holds in, its chains out.
      if (!b.emitted && (actors::payouts::payout_account(t.debit_account_id) ||
                         (actors::payouts::payout_account(t.credit_account_id) && !actors::payouts::hold(t.id)))) {
        b.results[o] = result::payout_account_reserved;
        continue;
      }
      // One look-up answers both questions: an id recorded earlier in this batch (its
      // serial is the batch's) or repeated earlier in it is an in-batch duplicate,
      // which is checked before history.
      const int64_t found = ids_.find(t.id, id_hash(o), id_of);
      if (found >= 0 && (uint64_t(found) >= batch_first_serial || batch_repeats_.find(uint64_t(found) + 1))) {
        b.results[o] = result::id_duplicated_in_batch;
        continue;
      }
      if (found >= 0) {  // a repeat: its original outcome, once final
        batch_repeats_.put(uint64_t(found) + 1, 0);
        batch_repeat_keys_.push_back(uint64_t(found) + 1);
        ensure_executed(uint64_t(found));
        const actors::transfer_record orig = record_copy(uint64_t(found));
        r.kind = route_kind::duplicate;
        r.dup_result = actors::decide_duplicate(as_retried(t, orig.t), orig.t, result(orig.result));
        continue;
      }
      // A chain refused whole for room (above) refuses its new links here, after their
      // fields and look-ups, as a lone transfer is: a repeat among its links gets its
      // first outcome, and a link's field failure its own code (before, every link got
      // transfers_full). Nothing of such a chain is recorded either way.
      if ((full_chain_end != UINT32_MAX && o <= full_chain_end) ||
          (capped && !room_for(1, false) && !(room_for(1, true) && resolves_recorded(t)))) {
        b.results[o] = result::transfers_full;
        continue;
      }
      if (!make_room()) {  // replay only: recovery stops with the flush error
        b.results[o] = result::linked_event_failed;
        continue;
      }
      const uint64_t serial = records_->size();
      if (batch_first_serial == UINT64_MAX) batch_first_serial = serial;
      actors::transfer_record& rec = records_->append();
      rec.t = t;
      rec.t.timestamp = b.timestamp_base + o;
      rec.result = actors::result_unresolved;
      r.serial = serial;
      uint64_t dr = t.debit_account_id, cr = t.credit_account_id;
      if (t.flags & (wire::transfer_flags::post_pending | wire::transfer_flags::void_pending)) {
        route_resolve(b, r, t, batch_first_serial, &dr, &cr);
      } else {
        r.kind = route_kind::fresh;
      }
      records_->at(serial).owner_account_id = dr;
      r.debit_shard = uint8_t(shard_of(dr, shards_n_));
      r.credit_shard = uint8_t(shard_of(cr, shards_n_));
      ids_.insert(t.id, serial, id_hash(o));
    }
    // Chain masks, and sync slots for chains spanning several shards.
    uint32_t slots = 0;
    for (uint32_t i = 0; i < n;) {
      const uint32_t last = b.routes[i].chain_end;
      uint32_t mask = 0;
      for (uint32_t o = i; o <= last; ++o) {
        const op_route& r = b.routes[o];
        if (r.kind == route_kind::fresh || r.kind == route_kind::resolve)
          mask |= 1u << r.debit_shard | 1u << r.credit_shard | (r.has_ref ? 1u << r.ref_shard : 0);
      }
      // A group's own chain always reaches the group's shard, which learns its outcome
      // even when no operation of it is fresh (a repeat, a field failure).
      if (b.emitted) mask |= 1u << shard_of(b.transfers[i].user_data, shards_n_);
      const bool sync = __builtin_popcount(mask) > 1;
      const bool open_chain = b.transfers[last].flags & wire::transfer_flags::linked;
      bool failed = false;
      for (uint32_t o = i; o <= last; ++o) {
        op_route& r = b.routes[o];
        r.chain_mask = mask;
        if (sync && (r.kind == route_kind::fresh || r.kind == route_kind::resolve)) r.slot = slots++;
        if (mask != 0 || open_chain) continue;
        // No shard takes part: only field failures and repeats. Decide the chain here.
        if (r.kind == route_kind::duplicate) {
          b.results[o] = r.dup_result;
          failed = failed || r.dup_result != result::ok;
        } else if (failed) {
          b.results[o] = result::linked_event_failed;
        } else {
          failed = true;  // the first field failure keeps its code
        }
      }
      i = last + 1;
    }
    if (slots > 0) b.slots.reset(new actors::sync_slot[slots]);
    actors::list_shard_ops(b, shards_n_);
    if (event_writer_)
      for (uint32_t i = 0; i < n; ++i)
        if (b.routes[i].kind == route_kind::resolve) {
          b.resolved_amounts.assign(n, 0);  // the amounts posts and voids moved, for their events
          break;
        }
  }

  // Repeats of recorded transfers met so far in the batch being sequenced (by the
  // original's serial + 1): a second repeat of the same id in one batch is an in-batch
  // duplicate. Usually empty; emptied key by key, so a batch costs nothing here unless
  // it holds repeats.
  actors::flat_u64_map batch_repeats_;
  std::vector<uint64_t> batch_repeat_keys_;
  // The batch being sequenced: its transfer ids' hashes in the id index, where hashed.
  std::vector<uint64_t> batch_hashes_;
  std::vector<uint8_t> batch_hashed_;

  // Transfers by id are answered here: a record is final once its batch executed, and
  // older ones are read from the snapshot.
  void sequence_lookup_transfers(batch& b) {
    auto id_of = [this](uint64_t s) { return record_id(s); };
    b.results.assign(b.count, result::transfer_not_found);
    b.found_transfers.assign(b.count, transfer_record{});
    for (uint32_t i = 0; i < b.count; ++i) {
      const auto& id = b.transfer_ids[i];
      if (id.zero()) continue;
      const int64_t s = ids_.find(id, id_of);
      if (s < 0) continue;
      ensure_executed(uint64_t(s));
      const auto rec = record_copy(uint64_t(s));
      if (rec.result == actors::result_unresolved) continue;  // its commit failed
      b.found_transfers[i] = rec;
      b.results[i] = result::ok;
    }
  }

  // Group operations: field checks; a start gets the lottery's secret seed here, and a
  // create the group's number, before they are logged (replay reads them from the log,
  // and numbers given before resume after the highest it meets).
  void sequence_equb(batch& b) {
    b.results.assign(b.count, result::ok);
    if (event_writer_) b.repeated.assign(b.count, 0);
    for (uint32_t i = 0; i < b.count; ++i) {
      wire::equb_op& op = b.equb_ops[i];
      b.results[i] = actors::equb::check_op_fields(op);
      if (b.results[i] != result::ok) continue;
      if (op.kind == wire::equb_op_kind::create) {
        const uint64_t n = actors::equb::number_of(op);
        // A create the sequencer refuses whatever the shard would say is logged with the
        // number numbers_max, which replay refuses: logged with a client's number (or none
        // when numbers ran out), replay took that number and made a group the live run had
        // refused (records before this build still do).
        const auto refuse = [&](result r) {
          b.results[i] = r;
          actors::equb::set_number(op, actors::equb::numbers_max);
        };
        if (replaying_) {  // the number the engine gave it, or numbers_max: refused
          if (n >= actors::equb::numbers_max) b.results[i] = result::equb_op_invalid;
          else next_group_number_ = std::max(next_group_number_, n + 1);
        } else if (n != 0) {
          refuse(result::equb_op_invalid);  // the number is the engine's to give
        } else if (actors::equb::new_group_refusal(actors::equb::config_of(op), b.rules) != result::ok) {
          // Refused by its configuration alone (unless it repeats a group that exists,
          // which takes no number either): logged without a number and decided by the
          // shard, as replay decides it, with no number spent (numbers are never given
          // again). Before, only check_config's refusals spared one.
        } else if (next_group_number_ >= actors::equb::numbers_max) {
          refuse(result::group_numbers_exhausted);
        } else {
          actors::equb::set_number(op, next_group_number_++);  // a repeat leaves its number unused
        }
        continue;
      }
      if (op.kind != wire::equb_op_kind::start || replaying_) continue;
      // The seed is the engine's to draw: a client's is refused, as a create's number is
      // (before, it was replaced silently). Logged with kind 0, which replay's field checks
      // refuse alike (replay cannot tell a client's seed from the engine's).
      if (std::any_of(std::begin(op.seed), std::end(op.seed), [](uint8_t x) { return x != 0; })) {
        b.results[i] = result::equb_op_invalid;
        op.kind = wire::equb_op_kind(0);
        continue;
      }
      size_t got = 0;
      while (got < sizeof op.seed) {
        const ssize_t n = ::getrandom(op.seed + got, sizeof op.seed - got, 0);
        MESOB_ASSERT_MSG(n > 0 || errno == EINTR, "getrandom failed");
        if (n > 0) got += size_t(n);
      }
    }
  }

  // Registry changes are decided here, in log order, from the registry alone (the
  // settlement accounts were checked before: engine::gateways).
  void sequence_gateways(batch& b) {
    b.results.assign(b.count, result::ok);
    auto next = std::make_shared<actors::gateways::registry>(*registry_);
    for (uint32_t i = 0; i < b.count; ++i)
      b.results[i] = next->apply(b.gateway_ops[i], b.timestamp_base + i, b.rules);
    registry_ = next;
    b.registry_after = std::move(next);
  }

  // Answers: field checks; the answering gateway's number goes into each (logged: replay
  // and the desk see who answered). A gateway the registry lacks answers nothing.
  // Batches of answers come only from engine::payout_answers (its gateway set).
  void sequence_answers(batch& b) {
    b.results.assign(b.count, result::ok);
    b.payout_desks.assign(b.count, 0);
    b.payout_wallets.assign(b.count, 0);
    for (uint32_t i = 0; i < b.count; ++i) {
      auto& a = b.payout_answers[i];
      if (a.payout_id == 0) b.results[i] = result::id_must_not_be_zero;
      else if (a.failure != wire::payout_failure::unspecified && b.rules < actors::rules_payout_declines)
        b.results[i] = result::reserved_field;  // (the byte the builds before reserved)
      else if (a.attempt == 0 || (a.outcome != wire::payout_outcome::settled && a.outcome != wire::payout_outcome::failed))
        b.results[i] = result::payout_answer_invalid;
      else if (a.failure != wire::payout_failure::unspecified &&
               (a.failure != wire::payout_failure::declined || a.outcome != wire::payout_outcome::failed))
        b.results[i] = result::payout_answer_invalid;  // a failure kind unknown, or on a settlement
      else if (!wire::currency_valid(a.currency)) b.results[i] = result::currency_invalid;
      else if (a.amount == 0) b.results[i] = result::amount_must_not_be_zero;
      else b.results[i] = find_desk(a.payout_id, a.currency, &b.payout_desks[i], &b.payout_wallets[i]);
    }
  }

  // The desk of a payout's hold (hold_desk); payout_not_found without one, and
  // payout_amount_mismatch when its hold is of another currency than `c`.
  result find_desk(uint64_t payout_id, wire::currency_code c, uint64_t* desk, uint64_t* wallet) {
    wire::currency_code held = 0;
    *desk = hold_desk(payout_id, &held, wallet);
    if (*desk == 0) return result::payout_not_found;
    if (held != c) {
      *desk = 0;
      return result::payout_amount_mismatch;
    }
    return result::ok;
  }

  // The desk (payout account) of a payout whose hold was recorded and applied, its
  // currency in *currency and its wallet in *wallet; 0 if there is none. A desk took that
  // payout, and a desk that no longer holds it resolved it (payout_already_resolved, the
  // same after any restart: the id index and the records are the log's).
  uint64_t hold_desk(uint64_t payout_id, wire::currency_code* currency, uint64_t* wallet) {
    auto id_of = [this](uint64_t s) { return record_id(s); };
    const int64_t s = ids_.find(actors::payouts::hold_id(payout_id), id_of);
    if (s < 0) return 0;
    ensure_executed(uint64_t(s));
    const actors::transfer_record r = record_copy(uint64_t(s));
    if (r.result != uint32_t(result::ok)) return 0;
    *currency = r.t.currency;
    *wallet = r.t.debit_account_id;
    return r.t.credit_account_id;
  }

  void sequence_payout_ops(batch& b) {
    b.results.assign(b.count, result::ok);
    b.payout_desks.assign(b.count, 0);
    b.payout_wallets.assign(b.count, 0);
    for (uint32_t i = 0; i < b.count; ++i) {
      const auto& o = b.payout_ops[i];
      if (o.payout_id == 0) b.results[i] = result::id_must_not_be_zero;
      else if (o.reserved[0] || o.reserved[1] || (o.flags & ~wire::payout_op_flags::force))
        b.results[i] = result::reserved_field;
      else if (o.kind != wire::payout_op_kind::retry && o.kind != wire::payout_op_kind::cancel)
        b.results[i] = result::kind_invalid;
      else if (!wire::currency_valid(o.currency)) b.results[i] = result::currency_invalid;
      else b.results[i] = find_desk(o.payout_id, o.currency, &b.payout_desks[i], &b.payout_wallets[i]);
    }
  }

  // Orders become their holds (actors/trading.hpp), sequenced as transfers; an order
  // refused before any state is read keeps its reason.
  void sequence_orders(batch& b) {
    const uint32_t n = b.count;
    std::vector<result> refused(n, result::ok);
    b.transfers.assign(n, wire::transfer{});
    b.order_ticks.assign(n, 0);
    for (uint32_t i = 0; i < n; ++i) {
      // The shard count the order was first sequenced under (stamped before logging).
      const uint32_t shards = b.orders[i].reserved2;
      if (shards == 0 || shards > actors::shards_max) {
        refused[i] = result::reserved_field;  // a client's reserved2
        continue;
      }
      const auto* ins = seq_market_.find(b.orders[i].instrument_id);
      refused[i] = actors::trading::order_hold(actors::trading::as_sent(b.orders[i]), ins, shards, &b.transfers[i]);
      if (refused[i] == result::ok) b.order_ticks[i] = ins->def.tick;
    }
    sequence_transfers(b);
    for (uint32_t i = 0; i < n; ++i)
      if (refused[i] != result::ok) b.results[i] = refused[i];
  }

  // The wallet of the order with `id` whose hold was recorded and applied (0: none).
  uint64_t order_wallet(uint64_t order_id) {
    auto id_of = [this](uint64_t s) { return record_id(s); };
    const int64_t s = ids_.find(actors::trading::hold_id(order_id, 0), id_of);
    if (s < 0) return 0;
    ensure_executed(uint64_t(s));
    const actors::transfer_record r = record_copy(uint64_t(s));
    if (r.result != uint32_t(result::ok)) return 0;
    return actors::trading::trading_account(r.t.debit_account_id) ? r.t.credit_account_id : r.t.debit_account_id;
  }

  // Brokers' answers: field checks, and each one's wallet (logged: replay and the
  // portfolio see it). Batches of answers come only from engine::order_answers.
  void sequence_order_answers(batch& b) {
    b.results.assign(b.count, result::ok);
    for (uint32_t i = 0; i < b.count; ++i) {
      auto& a = b.order_answers[i];
      b.results[i] = actors::trading::check_answer_fields(a);
      if (b.results[i] != result::ok) continue;
      a.wallet = order_wallet(a.order_id);
      if (a.wallet == 0) b.results[i] = result::order_not_found;
    }
  }

  void sequence_events(batch& b) {
    b.results.assign(b.count, result::ok);
    for (uint32_t i = 0; i < b.count; ++i) {
      const auto& e = b.gateway_events[i];
      const bool reset = e.kind == wire::gateway_event_kind::reset;
      if ((reset && e.gateway != 0) || (!reset && !registry_->find(e.gateway)) ||
          (e.kind != wire::gateway_event_kind::up && e.kind != wire::gateway_event_kind::down && !reset))
        b.results[i] = result::gateway_not_found;
    }
  }

  // Fills the sequencer's annotations; for writes also the timestamps (unless replaying).
  void sequence(batch& b) {
    switch (b.kind) {
      case op_kind::create_accounts: sequence_accounts(b); break;
      case op_kind::create_transfers:
        sequence_transfers(b);
        publish_index_stats();
        break;
      case op_kind::set_account_status: sequence_status(b); break;
      case op_kind::lookup_accounts:
        b.results.assign(b.count, result::account_not_found);
        b.found_accounts.assign(b.count, wire::account{});
        break;
      case op_kind::lookup_transfers: sequence_lookup_transfers(b); break;
      case op_kind::lookup_account_transfers:
      case op_kind::lookup_balances_as_of:
        b.results.assign(b.count, result::account_not_found);
        b.found_accounts.assign(b.count, wire::account{});
        b.last_serials.assign(b.count, 0);
        break;
      case op_kind::currency_totals:
        b.totals.assign(shards_n_, {});
        b.group_audits.assign(shards_n_, {});
        break;
      case op_kind::tick: break;
      case op_kind::equb_ops: sequence_equb(b); break;
      case op_kind::lookup_groups:
        b.results.assign(b.count, result::group_not_found);
        b.found_groups.assign(b.count, actors::equb::group_entry{});
        b.found_accounts.assign(b.count, wire::account{});  // each group's escrow, read with it
        break;
      case op_kind::gateway_ops: sequence_gateways(b); break;
      case op_kind::deposits:
      case op_kind::payouts: MESOB_ASSERT_MSG(false, "deposits and payouts are sequenced as transfers"); break;
      case op_kind::payout_answers: sequence_answers(b); break;
      case op_kind::lookup_payouts:
        b.found_payouts.assign(shards_n_, {});
        b.found_breakers.assign(shards_n_, {});
        b.found_order_breakers.assign(shards_n_, {});
        b.found_recon.assign(shards_n_, {});
        b.found_counts.assign(shards_n_, {});
        b.found_sweeps.assign(shards_n_, {});
        break;
      case op_kind::payout_ops: sequence_payout_ops(b); break;
      case op_kind::gateway_events: sequence_events(b); break;
      // The market decides (actors/market.hpp): every shard's copy, shard 0's results.
      case op_kind::instrument_ops:
        // The sequencer's own copy of the instruments' definitions: orders' holds need
        // their ticks (nothing else of it is read). Decided by the batch's rules, as the
        // shards' copies are (a definition an older build took must be taken in replay).
        seq_market_.set_rules(b.rules);
        for (uint32_t i = 0; i < b.count; ++i) {
          bool repeated = false;
          if (b.instrument_ops[i].kind == wire::instrument_op_kind::define)
            (void)seq_market_.apply(b.instrument_ops[i], b.timestamp_base + i, &repeated);
        }
        seq_market_.set_rules(actors::rules_newest);
        b.results.assign(b.count, result::ok);
        break;
      case op_kind::prices: b.results.assign(b.count, result::ok); break;
      case op_kind::orders:
        sequence_orders(b);
        publish_index_stats();
        break;
      case op_kind::order_answers:
        sequence_order_answers(b);
        if (event_writer_) b.repeated.assign(b.count, 0);
        break;
      case op_kind::order_cancels:
      case op_kind::order_retries:
      case op_kind::order_retries_forced:
        // A cancel (or retry) names an order placed for that wallet (its hold's record says).
        b.results.assign(b.count, result::ok);
        if (event_writer_) b.repeated.assign(b.count, 0);
        for (uint32_t i = 0; i < b.count; ++i) {
          const auto& c = b.order_cancels[i];
          if (c.order_id == 0 || c.wallet == 0) b.results[i] = result::id_must_not_be_zero;
          else if (order_wallet(c.order_id) != c.wallet) b.results[i] = result::order_not_found;
        }
        break;
      case op_kind::plan_rebalance:  // not logged: the plan's clock (the day's outflow, halts, staleness)
        b.results.assign(1, result::ok);
        b.timestamp_base = now();
        break;
      case op_kind::rebalance: MESOB_ASSERT_MSG(false, "a rebalance is planned, then placed"); break;
      case op_kind::lookup_orders:
        b.results.assign(b.count, result::order_not_found);
        b.found_orders.assign(b.count, wire::order_state_view{});
        b.order_wallets.assign(b.count, 0);
        for (uint32_t i = 0; i < b.count; ++i)
          if (b.account_ids[i] != 0) b.order_wallets[i] = order_wallet(b.account_ids[i]);
        break;
      case op_kind::lookup_instruments:
        b.results.assign(b.count, result::instrument_not_found);
        b.found_instruments.assign(b.count, wire::instrument_state{});
        b.found_sequences.assign(b.count, 0);
        break;
      // Customers (actors/customers.hpp): field checks here, the rest on the wallets' shards.
      case op_kind::customer_ops:
        b.results.assign(b.count, result::ok);
        if (event_writer_) b.repeated.assign(b.count, 0);
        for (uint32_t i = 0; i < b.count; ++i)
          b.results[i] = actors::customers::check_customer_fields(b.customer_ops[i], b.rules);
        break;
      case op_kind::policy_ops:
        b.results.assign(b.count, result::ok);
        if (event_writer_) b.repeated.assign(b.count, 0);
        break;
      case op_kind::lookup_positions:
        b.results.assign(b.count, result::account_not_found);
        b.found_positions.assign(b.count, {});
        break;
      case op_kind::lookup_customers:
        b.results.assign(b.count, result::customer_not_found);
        b.found_customers.assign(b.count, wire::customer_state{});
        b.timestamp_base = now();  // not logged: only the day of the outflow it shows
        break;
      case op_kind::lookup_policy: break;
    }
    const uint32_t all = shards_n_ == 32 ? ~0u : (1u << shards_n_) - 1;
    b.shard_mask = all;
    // Answers and operators' actions go to the shards of their desks only.
    if (b.kind == op_kind::payout_answers || b.kind == op_kind::payout_ops) {
      uint32_t m = 0;
      for (uint32_t i = 0; i < b.count; ++i)
        if (b.results[i] == result::ok) m |= 1u << shard_of(b.payout_desks[i], shards_n_);
      b.shard_mask = m != 0 ? m : 1u;
    }
    if (b.kind == op_kind::lookup_instruments || b.kind == op_kind::lookup_policy) b.shard_mask = 1;  // shard 0's copy
    if (b.kind == op_kind::plan_rebalance) b.shard_mask = 1u << shard_of(b.account_ids.at(0), shards_n_);
    if (b.kind == op_kind::lookup_positions) {  // the wallets' shards
      uint32_t m = 0;
      for (uint32_t i = 0; i < b.count; ++i)
        if (b.account_ids[i] != 0) m |= 1u << shard_of(b.account_ids[i], shards_n_);
      b.shard_mask = m != 0 ? m : 1u;
    }
    if (b.kind == op_kind::customer_ops) {  // the wallets' shards
      uint32_t m = 0;
      for (uint32_t i = 0; i < b.count; ++i)
        if (b.results[i] == result::ok) m |= 1u << shard_of(b.customer_ops[i].wallet, shards_n_);
      b.shard_mask = m != 0 ? m : 1u;
    }
    if (b.kind == op_kind::order_answers || b.kind == op_kind::order_cancels || b.kind == op_kind::order_retries ||
        b.kind == op_kind::order_retries_forced ||
        b.kind == op_kind::lookup_orders) {
      uint32_t m = 0;
      for (uint32_t i = 0; i < b.count; ++i) {
        const uint64_t w = b.kind == op_kind::order_answers ? b.order_answers[i].wallet
                           : b.kind == op_kind::lookup_orders ? b.order_wallets[i]
                                                              : b.order_cancels[i].wallet;
        if (w != 0 && (b.kind == op_kind::lookup_orders || b.results[i] == result::ok)) m |= 1u << shard_of(w, shards_n_);
      }
      b.shard_mask = m != 0 ? m : 1u;
    }
    if (b.kind == op_kind::create_transfers || b.kind == op_kind::orders) {
      uint32_t m = 0;
      for (uint32_t s = 0; s < shards_n_; ++s)
        if (b.shard_ops_begin[s + 1] > b.shard_ops_begin[s]) m |= 1u << s;
      b.shard_mask = m != 0 ? m : 1u;
    }
  }

  std::shared_ptr<engine_batch> make_batch(request&& req) {
    auto b = std::make_shared<engine_batch>();
    b->kind = req.kind;
    switch (req.kind) {
      case op_kind::create_accounts:
        b->accounts = std::move(req.accounts);
        b->count = uint32_t(b->accounts.size());
        b->capacity = cfg_.accounts_max;
        break;
      case op_kind::create_transfers:
        b->transfers = std::move(req.transfers);
        b->count = uint32_t(b->transfers.size());
        b->capacity = cfg_.pending_max;
        b->transfers_capacity = cfg_.transfers_max;
        break;
      case op_kind::set_account_status: b->status_changes = std::move(req.status_changes); b->count = uint32_t(b->status_changes.size()); break;
      case op_kind::lookup_accounts: b->account_ids = std::move(req.account_ids); b->count = uint32_t(b->account_ids.size()); break;
      case op_kind::lookup_transfers: b->transfer_ids = std::move(req.transfer_ids); b->count = uint32_t(b->transfer_ids.size()); break;
      case op_kind::lookup_account_transfers:
        b->history_queries = std::move(req.history_queries);
        b->count = uint32_t(b->history_queries.size());
        for (const auto& q : b->history_queries) b->account_ids.push_back(q.account_id);
        break;
      case op_kind::lookup_balances_as_of:
        b->balance_queries = std::move(req.balance_queries);
        b->count = uint32_t(b->balance_queries.size());
        for (const auto& q : b->balance_queries) b->account_ids.push_back(q.account_id);
        break;
      case op_kind::equb_ops:
        b->equb_ops = std::move(req.equb_ops);
        b->count = uint32_t(b->equb_ops.size());
        b->capacity = cfg_.groups_max;
        b->accounts_capacity = cfg_.accounts_max;
        break;
      case op_kind::lookup_groups: b->account_ids = std::move(req.account_ids); b->count = uint32_t(b->account_ids.size()); break;
      case op_kind::gateway_ops: b->gateway_ops = std::move(req.gateway_ops); b->count = uint32_t(b->gateway_ops.size()); break;
      case op_kind::payout_answers:
        b->payout_answers = std::move(req.payout_answers);
        b->count = uint32_t(b->payout_answers.size());
        break;
      case op_kind::gateway_events:
        b->gateway_events = std::move(req.gateway_events);
        b->count = uint32_t(b->gateway_events.size());
        break;
      case op_kind::payout_ops: b->payout_ops = std::move(req.payout_ops); b->count = uint32_t(b->payout_ops.size()); break;
      case op_kind::lookup_payouts: b->account_ids = std::move(req.account_ids); break;
      case op_kind::instrument_ops:
        b->instrument_ops = std::move(req.instrument_ops);
        b->count = uint32_t(b->instrument_ops.size());
        break;
      case op_kind::prices: b->prices = std::move(req.prices); b->count = uint32_t(b->prices.size()); break;
      case op_kind::lookup_instruments:
      case op_kind::lookup_customers:
        b->account_ids = std::move(req.account_ids);
        b->count = uint32_t(b->account_ids.size());
        break;
      case op_kind::customer_ops:
        b->customer_ops = std::move(req.customer_ops);
        b->count = uint32_t(b->customer_ops.size());
        break;
      case op_kind::policy_ops: b->policy_ops = std::move(req.policy_ops); b->count = uint32_t(b->policy_ops.size()); break;
      case op_kind::orders:
        b->orders = std::move(req.orders);
        b->count = uint32_t(b->orders.size());
        b->capacity = cfg_.pending_max;
        b->transfers_capacity = cfg_.transfers_max;
        break;
      case op_kind::order_answers:
        b->order_answers = std::move(req.order_answers);
        b->count = uint32_t(b->order_answers.size());
        break;
      case op_kind::order_cancels:
      case op_kind::order_retries:
      case op_kind::order_retries_forced:
        b->order_cancels = std::move(req.order_cancels);
        b->count = uint32_t(b->order_cancels.size());
        break;
      case op_kind::lookup_orders:
      case op_kind::lookup_positions: b->account_ids = std::move(req.account_ids); b->count = uint32_t(b->account_ids.size()); break;
      case op_kind::plan_rebalance: b->account_ids = std::move(req.account_ids); b->count = 1; break;
      case op_kind::rebalance: MESOB_ASSERT_MSG(false, "a rebalance is planned, then placed"); break;
      case op_kind::lookup_policy:
      case op_kind::currency_totals:
      case op_kind::payouts:
      case op_kind::deposits: break;
      case op_kind::tick: b->resumed_after = req.resumed_after; break;
    }
    return b;
  }

  static std::optional<status> precheck(const request& req) {
    size_t n = 0;
    switch (req.kind) {
      case op_kind::create_accounts: n = req.accounts.size(); break;
      case op_kind::create_transfers: n = req.transfers.size(); break;
      case op_kind::set_account_status: n = req.status_changes.size(); break;
      case op_kind::lookup_accounts: n = req.account_ids.size(); break;
      case op_kind::lookup_transfers: n = req.transfer_ids.size(); break;
      case op_kind::lookup_account_transfers: {
        n = req.history_queries.size();
        uint64_t records = 0;  // pages over their own limit get limit_invalid, not counted
        for (const auto& q : req.history_queries) records += q.limit <= history_page_max ? q.limit : 0;
        if (records > history_request_records_max) return status::batch_too_large;
        break;
      }
      case op_kind::lookup_balances_as_of: n = req.balance_queries.size(); break;
      case op_kind::currency_totals: n = 0; break;
      case op_kind::equb_ops:
        if (req.equb_ops.size() > equb_ops_max) return status::batch_too_large;
        n = req.equb_ops.size();
        break;
      case op_kind::lookup_groups:
        if (req.account_ids.size() > groups_lookup_max) return status::batch_too_large;
        n = req.account_ids.size();
        break;
      case op_kind::gateway_ops:
        if (!req.gateway_accounts_checked) return status::kind_invalid;
        if (req.gateway_ops.size() > gateway_ops_max) return status::batch_too_large;
        n = req.gateway_ops.size();
        break;
      case op_kind::deposits: n = req.deposits.size(); break;
      case op_kind::payouts: n = req.payouts.size(); break;
      case op_kind::payout_answers: n = req.payout_answers.size(); break;
      case op_kind::gateway_events: n = req.gateway_events.size(); break;
      case op_kind::payout_ops: n = req.payout_ops.size(); break;
      case op_kind::lookup_payouts:
        if (req.account_ids.size() != 8) return status::kind_invalid;
        break;
      case op_kind::instrument_ops: n = req.instrument_ops.size(); break;
      case op_kind::prices: n = req.prices.size(); break;
      case op_kind::lookup_instruments: n = req.account_ids.size(); break;  // none: every instrument
      case op_kind::customer_ops: n = req.customer_ops.size(); break;
      case op_kind::policy_ops: n = req.policy_ops.size(); break;
      case op_kind::lookup_customers: n = req.account_ids.size(); break;
      case op_kind::lookup_policy: break;
      case op_kind::tick:  // the engine's resume marker only
        if (req.resumed_after == 0) return status::kind_invalid;
        break;
      case op_kind::orders: n = req.orders.size(); break;
      case op_kind::order_answers: n = req.order_answers.size(); break;
      case op_kind::order_cancels:
      case op_kind::order_retries:
      case op_kind::order_retries_forced: n = req.order_cancels.size(); break;
      case op_kind::lookup_orders: n = req.account_ids.size(); break;
      case op_kind::lookup_positions:
        if (req.account_ids.size() > wire::lookup_positions_max) return status::batch_too_large;
        n = req.account_ids.size();
        break;
      case op_kind::rebalance:
      case op_kind::plan_rebalance:
        if (req.account_ids.size() != 6) return status::kind_invalid;
        break;
      default: return status::kind_invalid;
    }
    if (n > batch_ops_max) return status::batch_too_large;
    return std::nullopt;
  }

  // ---- dispatch -----------------------------------------------------------------

  void send(std::vector<std::shared_ptr<engine_batch>> list, std::shared_ptr<checkpoint_cut> cut) {
    if (list.empty() && !cut) return;
    for (auto& b : list) {
      MESOB_ASSERT_MSG(b->shard_mask != 0, "a batch was not sequenced");
      b->shards_remaining.store(uint32_t(__builtin_popcount(b->shard_mask)), std::memory_order_relaxed);
      if (b->registry_after) publish_registry(b->registry_after);
      if (b->lsn != 0) {
        dispatched_lsn_ = b->lsn;
        dispatched_serial_end_ = b->serial_end;
        dispatched_ts_ = b->timestamp_last();
      } else {
        // A read sees the writes dispatched before it, and nothing newer: not writes
        // stamped after it, nor writes that failed to commit (their records never
        // become final, and their timestamps are in no log record).
        b->serial_end = dispatched_serial_end_;
      }
      b->sweep_to = dispatched_ts_;  // a write's own last timestamp; for a read, the last write's
    }
    // The logged batches go to the event writer once every shard has handled them (each
    // shard gets this dispatch, with or without batches of its own, and expires pending
    // transfers up to its clock).
    std::shared_ptr<actors::event_group> group;
    if (event_writer_) {
      for (auto& b : list) {
        if (b->lsn == 0) continue;
        if (!group) group = std::make_shared<actors::event_group>();
        group->batches.push_back(b);
      }
      if (group) {
        event_writer_->wait_backlog(event_backlog_max);
        group->seq = ++event_seq_;
        group->sweep_to = dispatched_ts_;
        group->expired.resize(shards_n_);
        group->decided.resize(shards_n_);
        group->shards_remaining.store(shards_n_, std::memory_order_relaxed);
        group->ready = [w = event_writer_.get()](std::shared_ptr<actors::event_group> g) { w->post(std::move(g)); };
      }
    }
    {
      std::unique_lock lk(out_mu_);
      auto room = [&] { return outstanding_ + list.size() <= batches_in_flight_max || outstanding_ == 0; };
      if (!room()) {
        const auto t0 = std::chrono::steady_clock::now();
        out_cv_.wait(lk, room);
        if (replaying_)
          rec_.replay_shard_wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      outstanding_ += uint32_t(list.size());
      for (auto& b : list) {
        b->dispatch_seq = unfinished_base_ + unfinished_.size();
        unfinished_.emplace_back(b->serial_end, false);
      }
    }
    // Each shard gets the batches it has a part in, in log order; a cut goes to all.
    for (uint32_t s = 0; s < shards_n_; ++s) {
      auto d = std::make_shared<actors::dispatch>();
      for (auto& b : list)
        if (b->shard_mask & (1u << s)) d->batches.push_back(b);
      d->cut = cut;
      d->events = group;
      if (!d->batches.empty() || d->cut || d->events) {
        shards_[s]->dispatch_sent();
        caf::anon_send(shard_actors_[s], std::move(d));
      }
    }
  }

  void batch_finished(const batch& b) {
    std::lock_guard lk(out_mu_);
    MESOB_ASSERT(b.dispatch_seq >= unfinished_base_ && b.dispatch_seq - unfinished_base_ < unfinished_.size());
    unfinished_[b.dispatch_seq - unfinished_base_].second = true;
    uint64_t end = 0;
    while (!unfinished_.empty() && unfinished_.front().second) {
      end = unfinished_.front().first;
      unfinished_.pop_front();
      ++unfinished_base_;
    }
    // serial_end does not decrease in dispatch order.
    if (end > executed_serial_end_.load(std::memory_order_relaxed))
      executed_serial_end_.store(end, std::memory_order_release);
    --outstanding_;
    out_cv_.notify_all();
  }

  void wait_idle() {
    std::unique_lock lk(out_mu_);
    out_cv_.wait(lk, [&] { return outstanding_ == 0; });
  }

  std::shared_ptr<checkpoint_cut> make_cut() {
    auto c = std::make_shared<checkpoint_cut>();
    c->seq = ++cut_seq_;
    c->committed_seq = committed_cut_seq_.load();
    c->lsn = dispatched_lsn_;
    c->next_serial = dispatched_serial_end_;
    c->clock_ns = dispatched_ts_;  // not last_ts_: later batches may be stamped already
    c->dirty_accounts.resize(shards_n_);
    c->pendings.resize(shards_n_);
    c->account_counts.resize(shards_n_);
    c->groups.resize(shards_n_);
    c->customers.resize(shards_n_);
    c->portfolios.resize(shards_n_);
    c->payouts.resize(shards_n_);
    c->recon.resize(shards_n_);
    c->recon_from_day = uint32_t(committed_clock_ns_.load() / actors::payouts::ns_per_day);
    c->recon_drop_before = std::min(c->recon_from_day, recon_window_start(c->clock_ns));
    if (const auto reg = published_registry(); reg->size() > 0) c->gateways = reg->encode();
    c->shards_remaining.store(shards_n_);
    c->done = [this](checkpoint_cut& cut) {
      std::lock_guard lk(ck_mu_);
      for (auto& q : pending_cuts_)
        if (q.get() == &cut) ck_queue_.push_back(q);
      ck_cv_.notify_all();
    };
    std::lock_guard lk(ck_mu_);  // the checkpoint thread takes an earlier cut's entry meanwhile
    chain_at_cut_[c.get()] = dispatched_chain_;
    pending_cuts_.push_back(c);
    return c;
  }
  uint64_t cut_seq_ = 0;                         // sequencer thread
  std::atomic<uint64_t> committed_cut_seq_{0};   // the newest cut whose checkpoint committed
  std::atomic<uint64_t> committed_clock_ns_{0};  // its engine clock (the snapshot's, after a start)
  std::map<const checkpoint_cut*, storage::chain_hash> chain_at_cut_;  // guarded by ck_mu_
  std::vector<std::shared_ptr<checkpoint_cut>> pending_cuts_;           // guarded by ck_mu_

  // ---- checkpoint thread --------------------------------------------------------

  // Rows of cuts whose checkpoint failed (checkpoint thread only). A cut holds only what
  // changed since the previous one, so a failed cut's rows are written with the next
  // cut's: otherwise a later snapshot would lack them while the log before it is dropped.
  std::vector<actors::stored_account> carried_accounts_;
  std::vector<actors::pending_info> carried_pendings_;
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> carried_groups_;
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> carried_customers_;
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> carried_portfolios_;
  // The sequencer's copy of the instruments (their ticks make orders' holds).
  actors::market::book seq_market_;
  actors::payouts::desk_table::dirty_rows carried_payouts_;

  // Sorts by key and keeps the last-appended row of each key.
  template <class T, class Key>
  static void keep_newest(std::vector<T>& rows, Key key) {
    std::stable_sort(rows.begin(), rows.end(), [&](const T& x, const T& y) { return key(x) < key(y); });
    size_t out = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (i + 1 < rows.size() && key(rows[i + 1]) == key(rows[i])) continue;  // a newer copy follows
      rows[out++] = rows[i];
    }
    rows.resize(out);
  }

  // One row per pending entry, in serial order: the newest copy, except that a resolved
  // copy wins over a pending one (an entry only moves from pending to resolved; the
  // copies its two shards hand to one cut agree, and this keeps it so regardless).
  static std::vector<actors::pending_info> final_pending_rows(std::vector<actors::pending_info> rows) {
    std::stable_sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) { return x.serial < y.serial; });
    size_t out = 0;
    for (size_t i = 0; i < rows.size();) {
      size_t pick = i, j = i;
      for (; j < rows.size() && rows[j].serial == rows[i].serial; ++j)
        if (rows[j].state != actors::pending_state::pending || rows[pick].state == actors::pending_state::pending)
          pick = j;
      rows[out++] = rows[pick];
      i = j;
    }
    rows.resize(out);
    return rows;
  }

  std::string write_checkpoint(checkpoint_cut& c, const storage::chain_hash& chain) {
    std::string err = write_cut(c, chain);
    if (!err.empty()) {
      for (auto& list : c.dirty_accounts) carried_accounts_.insert(carried_accounts_.end(), list.begin(), list.end());
      for (auto& list : c.pendings) carried_pendings_.insert(carried_pendings_.end(), list.begin(), list.end());
      for (auto& list : c.groups) carried_groups_.insert(carried_groups_.end(), list.begin(), list.end());
      for (auto& list : c.customers) carried_customers_.insert(carried_customers_.end(), list.begin(), list.end());
      keep_newest(carried_customers_, [](const auto& r) { return r.first; });
      for (auto& list : c.portfolios) carried_portfolios_.insert(carried_portfolios_.end(), list.begin(), list.end());
      keep_newest(carried_portfolios_, [](const auto& r) { return r.first; });
      for (auto& rows : c.payouts) {
        carried_payouts_.payouts.insert(carried_payouts_.payouts.end(), rows.payouts.begin(), rows.payouts.end());
        carried_payouts_.desks.insert(carried_payouts_.desks.end(), rows.desks.begin(), rows.desks.end());
      }
      keep_newest(carried_payouts_.payouts, [](const auto& r) { return r.first; });
      keep_newest(carried_payouts_.desks, [](const auto& r) { return r.first; });
      keep_newest(carried_groups_, [](const auto& g) { return g.first; });
      // One row per account and per pending entry, the newest: while checkpoints keep
      // failing, what is carried stays bounded by the state, not by the failures.
      keep_newest(carried_accounts_, [](const actors::stored_account& a) { return a.a.id; });
      carried_pendings_ = final_pending_rows(std::move(carried_pendings_));
      return err;
    }
    carried_accounts_.clear();
    carried_accounts_.shrink_to_fit();
    carried_pendings_.clear();
    carried_pendings_.shrink_to_fit();
    carried_groups_.clear();
    carried_groups_.shrink_to_fit();
    carried_customers_.clear();
    carried_customers_.shrink_to_fit();
    carried_portfolios_.clear();
    carried_portfolios_.shrink_to_fit();
    carried_payouts_ = {};
    committed_cut_seq_.store(c.seq);
    committed_clock_ns_.store(c.clock_ns);
    return {};
  }

  std::string write_cut(checkpoint_cut& c, const storage::chain_hash& chain) {
    std::string err;
    // Replay after this snapshot starts past c.lsn: the events of every batch up to it
    // must be in the event log first.
    if (event_writer_) {
      if (!event_writer_->wait_through(c.lsn, &err)) return "events: " + err;
      if (err = write_events_covered(c.lsn, event_log_->durable_end()); !err.empty()) return err;
    }
    err = verify_kept_records(c.next_serial);
    if (!err.empty()) return err;
    auto w = snap_->begin(&err);
    if (!w) return err;
    // Accounts in key order: LMDB then touches each leaf page once, in order, instead
    // of descending at random (measured: see perf/RESULTS.md). Carried rows come first
    // and a stable sort keeps them first: the cut's newer copy of an account wins.
    std::vector<const actors::stored_account*> dirty;
    for (const auto& a : carried_accounts_) dirty.push_back(&a);
    for (auto& list : c.dirty_accounts)
      for (const auto& a : list) dirty.push_back(&a);
    std::stable_sort(dirty.begin(), dirty.end(), [](auto* x, auto* y) { return x->a.id < y->a.id; });
    for (const auto* a : dirty)
      if (!w->put(storage::table::accounts, a->a.id, {reinterpret_cast<const uint8_t*>(a), sizeof *a}))
        return w->error();
    const uint64_t appended_from = flushed_serial_.load();
    if (auto e = append_records(*w, c.next_serial); !e.empty()) return e;
    // Pending entries changed since the last cut: open ones over their older rows,
    // resolved ones moved to `resolved` (they leave the shards once this commits, and
    // their rows answer for them after; recovery reads only the open ones).
    auto put_pending = [&](const actors::pending_info& p) {
      const std::span<const uint8_t> bytes{reinterpret_cast<const uint8_t*>(&p), sizeof p};
      if (p.state == actors::pending_state::pending) return w->put(storage::table::pending, p.serial, bytes);
      return w->erase(storage::table::pending, p.serial) && w->put(storage::table::resolved, p.serial, bytes);
    };
    std::vector<actors::pending_info> pendings = carried_pendings_;
    for (auto& list : c.pendings) pendings.insert(pendings.end(), list.begin(), list.end());
    for (const auto& p : final_pending_rows(std::move(pendings)))
      if (!put_pending(p)) return w->error();
    // Equb groups changed since the last cut (carried ones first: the cut's copy wins).
    for (const auto* rows : {&carried_groups_})
      for (const auto& [id, bytes] : *rows)
        if (!w->put(storage::table::groups, id, bytes)) return w->error();
    for (const auto& list : c.groups)
      for (const auto& [id, bytes] : list)
        if (!w->put(storage::table::groups, id, bytes)) return w->error();
    // The whole gateway registry (it is small), as of the cut.
    if (!c.gateways.empty() && !w->put(storage::table::gateways, 0, c.gateways)) return w->error();
    // Payouts and desks changed since the last cut (carried ones first), sessions up.
    auto put_payout_rows = [&](const actors::payouts::desk_table::dirty_rows& rows) {
      for (const auto& [id, bytes] : rows.payouts)
        if (bytes.empty() ? !w->erase(storage::table::payouts, id) : !w->put(storage::table::payouts, id, bytes))
          return false;
      for (const auto& [cur, bytes] : rows.desks)
        if (!w->put(storage::table::desks, cur, bytes)) return false;
      return true;
    };
    if (!put_payout_rows(carried_payouts_)) return w->error();
    for (const auto& rows : c.payouts)
      if (!put_payout_rows(rows)) return w->error();
    if (!c.gateway_sessions.empty() && !w->put(storage::table::desks, 0, c.gateway_sessions)) return w->error();
    // The market and the policy, whole (shard 0's copies at the cut); customers changed.
    if (!c.market.empty() && !w->put(storage::table::market, 0, c.market)) return w->error();
    if (!c.policy.empty() && !w->put(storage::table::policy, 0, c.policy)) return w->error();
    for (const auto& rows : {&carried_customers_})
      for (const auto& [id, bytes] : *rows)
        if (!w->put(storage::table::customers, id, bytes)) return w->error();
    for (const auto& list : c.customers)
      for (const auto& [id, bytes] : list)
        if (!w->put(storage::table::customers, id, bytes)) return w->error();
    // Portfolios changed (an empty row: the portfolio is gone).
    auto put_portfolio = [&](uint64_t id, const std::vector<uint8_t>& bytes) {
      return bytes.empty() ? w->erase(storage::table::portfolios, id) : w->put(storage::table::portfolios, id, bytes);
    };
    for (const auto& [id, bytes] : carried_portfolios_)
      if (!put_portfolio(id, bytes)) return w->error();
    for (const auto& list : c.portfolios)
      for (const auto& [id, bytes] : list)
        if (!put_portfolio(id, bytes)) return w->error();
    // Reconciliation counts of the days that may have changed since the last committed
    // cut (the shards keep every row of them in memory, whole: a snapshot's totals were
    // loaded into one shard): every shard's part summed, so that a later start with
    // another shard count reads totals. Rows of earlier days stay as they are.
    for (const auto& row : merged_recon(c.recon))
      if (!w->put(storage::table::recon, actors::payouts::recon_row_key(row.k), actors::payouts::encode_recon(row.c)))
        return w->error();
    storage::snapshot_meta m;
    m.lsn = c.lsn;
    m.chain = chain;
    m.clock_ns = c.clock_ns;
    m.next_serial = c.next_serial;
    for (auto n : c.account_counts) m.accounts += n;
    m.transfers = c.next_serial;
    if (!w->commit(m)) return w->error();
    snap_->release_pages();  // pages the commit read stay in the page cache, not in RSS
    note_appended_rows(appended_from, c.next_serial);
    // A records flush may have gone past the cut while its shards were still copying
    // accounts: those rows stay (kept rows of this snapshot), and the flushed position
    // never moves back, or the next flush would append rows that exist.
    if (flushed_serial_.load() < c.next_serial) flushed_serial_ = c.next_serial;
    set_snapshot_position(c.lsn, chain);
    snapshot_unix_ns_.store(unix_ns_now());
    checkpoints_.fetch_add(1);
    return {};
  }

  // Rows [snapshot next_serial, kept_end_) were flushed before the engine last stopped.
  // Only executed records of durable log records are ever flushed, and replay is
  // deterministic, so replay reproduces each of them: they are compared with the
  // replayed records, not erased and written again (perf/RESULTS.md: restart time).
  std::atomic<uint64_t> kept_end_{0};

  // Compares kept rows among [flushed_serial_, upto) with the records replay made, and
  // counts them as flushed. A difference means the snapshot and the log disagree.
  std::string verify_kept_records(uint64_t upto) {
    const uint64_t from = flushed_serial_.load();
    const uint64_t to = std::min(upto, kept_end_.load());
    if (from >= to) return {};
    std::string err;
    uint64_t expect = from;
    const bool ok = record_rows::scan(*snap_, from, to, [&](uint64_t serial, const actors::transfer_record& kept) {
      const auto& r = records_->at(expect);
      if (serial != expect) {
        err = "snapshot: transfer records " + std::to_string(expect) + ".." + std::to_string(serial) + " are missing";
        return false;
      }
      if (std::memcmp(&kept, &r, sizeof r) != 0) {
        err = "snapshot: transfer record " + std::to_string(expect) +
              " differs from the record the log replays: the snapshot and the log disagree";
        return false;
      }
      ++expect;
      return true;
    }, &err);
    snap_->release_pages();
    if (ok && expect != to)
      err = "snapshot: transfer records " + std::to_string(expect) + ".." + std::to_string(to) + " are missing";
    if (!err.empty()) return err;
    flushed_serial_.store(to);
    return {};
  }

  // Appends records [flushed_serial_, upto) to the transfers table (after
  // verify_kept_records has counted the kept ones).
  std::string append_records(storage::snapshot_store::writer& w, uint64_t upto) {
    const uint64_t from = flushed_serial_.load();
    if (from >= upto) return {};
    const bool ok = record_rows::append(w, from, upto - from, [this](uint64_t s) -> const actors::transfer_record& {
      const auto& r = records_->at(s);
      MESOB_ASSERT(r.result != actors::result_unresolved);
      return r;
    }, ids_.hasher());
    return ok ? std::string() : w.error();
  }

  // Appends final records to the snapshot's transfers table without moving the
  // snapshot's position: this is what lets the resident window advance between full
  // checkpoints.
  std::string flush_records(uint64_t upto) {
    std::string err = verify_kept_records(upto);
    if (!err.empty()) return err;
    if (flushed_serial_.load() >= upto) return {};
    auto w = snap_->begin(&err);
    if (!w) return err;
    const uint64_t appended_from = flushed_serial_.load();
    if (auto e = append_records(*w, upto); !e.empty()) return e;
    if (!w->commit_without_meta()) return w->error();
    release_pages_paced();
    note_appended_rows(appended_from, upto);
    flushed_serial_.store(upto);
    return {};
  }

  // The pages a records flush read through the map (the tables' branch pages and their
  // last leaves, which the next flush reads again) are dropped from the resident set at
  // most once a release_pace (checkpoint thread): each drop unmaps them all, and the next
  // commit faults them back in, which at the maximum rate (about 70 flushes a second) took
  // a tenth of the thread's CPU. Between drops the set grows by what one pace's flushes
  // read; a full checkpoint's commit still drops them at once.
  static constexpr auto release_pace = std::chrono::seconds(1);
  std::chrono::steady_clock::time_point released_at_{};
  void release_pages_paced() {
    const auto now = std::chrono::steady_clock::now();
    if (now - released_at_ < release_pace) return;
    released_at_ = now;
    snap_->release_pages();
  }

  // Transfer rows committed since the last uncache_appended_rows (checkpoint thread).
  uint64_t appended_begin_ = 0, appended_end_ = 0;
  void note_appended_rows(uint64_t begin, uint64_t end) {
    if (begin >= end) return;
    if (appended_end_ == appended_begin_) appended_begin_ = begin;
    appended_begin_ = std::min(appended_begin_, begin);
    appended_end_ = std::max(appended_end_, end);
  }
  // Drops the committed rows' pages from the page cache (storage::snapshot_store::
  // uncache_rows), after the waiters of the commit have been told.
  void uncache_appended_rows(std::unique_lock<std::mutex>& lk) {
    if (appended_end_ == appended_begin_) return;
    lk.unlock();
    snap_->uncache_rows(storage::table::transfers, appended_begin_, appended_end_);
    snap_->uncache_rows(storage::table::transfer_ids, appended_begin_, appended_end_);
    release_pages_paced();  // the scan mapped the tree's pages
    appended_begin_ = appended_end_ = 0;
    lk.lock();
  }

  void checkpoint_loop() {
    std::unique_lock lk(ck_mu_);
    for (;;) {
      // A failed flush is tried again only live, after its pause (while replaying,
      // recovery stops with the error instead).
      auto flush_owed = [&] {
        return records_flush_target_ > flushed_serial_.load() &&
               (!flush_failed_ || (flush_retry_ && std::chrono::steady_clock::now() >= flush_retry_at_));
      };
      while (!ck_stop_ && ck_queue_.empty() && !flush_owed()) {
        if (flush_failed_ && flush_retry_ && records_flush_target_ > flushed_serial_.load())
          ck_cv_.wait_until(lk, flush_retry_at_);
        else
          ck_cv_.wait(lk);
      }
      if (ck_queue_.empty() && flush_owed()) {
        const uint64_t upto = records_flush_target_;
        lk.unlock();
        const std::string err = flush_records(upto);
        lk.lock();
        note_flush(err);
        ck_done_cv_.notify_all();
        uncache_appended_rows(lk);
        continue;
      }
      if (ck_queue_.empty() && ck_stop_) return;
      auto c = ck_queue_.front();
      ck_queue_.pop_front();
      const auto chain = chain_at_cut_[c.get()];
      chain_at_cut_.erase(c.get());
      std::erase(pending_cuts_, c);
      lk.unlock();
      const auto t0 = std::chrono::steady_clock::now();
      const std::string err = write_checkpoint(*c, chain);
      const auto took = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now() - t0)
                                     .count());
      checkpoint_ns_last_.store(took, std::memory_order_relaxed);
      checkpoint_ns_total_.fetch_add(took, std::memory_order_relaxed);
      if (!err.empty()) std::fprintf(stderr, "mesobd: checkpoint at lsn %llu failed: %s\n",
                                     static_cast<unsigned long long>(c->lsn), err.c_str());
      lk.lock();
      checkpoint_running_ = false;
      if (!err.empty()) {
        checkpoint_failures_.fetch_add(1, std::memory_order_relaxed);
        checkpoint_error_last_ = err;
      }
      if (err.empty() && flush_failed_ && flush_retry_) note_flush({});  // the cut's commit wrote the records
      warn_map_use();
      for (auto& p : cut_waiters_[c.get()]) p.set_value(err);
      cut_waiters_.erase(c.get());
      ck_done_cv_.notify_all();
      uncache_appended_rows(lk);
    }
  }

  // After a checkpoint (checkpoint thread): the snapshot store's map 80% used or more is
  // said on stderr, once until it is under again. At the map every checkpoint and records
  // flush fails and writes stop once the resident window is full; the metrics show it
  // (mesob_snapshot_used_bytes against mesob_snapshot_map_bytes).
  void warn_map_use() {
    const auto u = snap_->usage();
    if (u.nearly_full() == map_warned_) return;
    map_warned_ = u.nearly_full();
    if (map_warned_)
      std::fprintf(stderr,
                   "mesobd: the snapshot store's pages reach %llu bytes of its %llu-byte map (80%% or more): raise "
                   "--snapshot-map-gib at the next start, before it fills (a full map stops every write)\n",
                   static_cast<unsigned long long>(u.used), static_cast<unsigned long long>(u.map));
  }
  bool map_warned_ = false;  // (checkpoint thread)

  // A records flush's outcome (checkpoint thread, ck_mu_ held): a failure sets the next
  // try's time; a success after failures says so.
  void note_flush(const std::string& err) {
    if (err.empty()) {
      if (flush_failed_) std::fprintf(stderr, "mesobd: flushing transfer records succeeded again\n");
      flush_failed_ = false;
      flush_retry_ms_ = 0;
      return;
    }
    flush_failures_.fetch_add(1, std::memory_order_relaxed);
    flush_failed_ = true;
    flush_error_ = err;
    flush_retry_ms_ = flush_retry_ms_ == 0 ? records_flush_retry_ms_first
                                           : std::min(flush_retry_ms_ * 2, records_flush_retry_ms_max);
    flush_retry_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(flush_retry_ms_);
    std::fprintf(stderr, "mesobd: flushing transfer records failed: %s%s\n", err.c_str(),
                 flush_retry_ ? ("; trying again in " + std::to_string(flush_retry_ms_) + " ms").c_str() : "");
  }

  // Keeps the resident window moving: flushes records once `transfers_flush_step` (by
  // default 1/32 of the window) await it beyond what is flushed or being flushed. Each
  // flush is an LMDB commit whose write-back the log's fdatasyncs queue behind: a
  // quarter of the window (262,144 records) at a time stalled single transfers for
  // 15-30 ms every 8 s at 33,000/s; 1/32 keeps the longest under 11 ms and leaves the
  // maximum rate as it was (engine/README.md). Replay, where nothing waits on the log,
  // keeps steps of at least a quarter of the window (fewer, larger commits).
  void maybe_flush_records() {
    uint64_t step = cfg_.transfers_flush_step ? cfg_.transfers_flush_step : records_->capacity() / 32;
    if (replaying_) step = std::max(step, records_->capacity() / 4);
    const uint64_t executed = executed_serial_end_.load();
    if (executed < flushed_serial_.load() + step) return;
    std::lock_guard lk(ck_mu_);
    if (executed < std::max(flushed_serial_.load(), records_flush_target_) + step) return;  // one under way
    records_flush_target_ = executed;
    ck_cv_.notify_all();
  }

  // Asks the checkpoint thread to flush every executed record (sequencer thread).
  void request_records_flush() {
    std::lock_guard lk(ck_mu_);
    const uint64_t upto = executed_serial_end_.load();
    if (upto > records_flush_target_) {
      records_flush_target_ = upto;
      ck_cv_.notify_all();
    }
  }

  // ---- the sequencer loop -------------------------------------------------------

  // Segments a snapshot covers go (deleted in the background, held while verify_log
  // scans), and the log kept is published. Called every pass, not only when the snapshot
  // moves: a segment goes only once the next one's first group is durable, which may come
  // after the checkpoint.
  void drop_covered_segments() {
    wal_->drop_segments_before(snapshot_lsn_.load() + 1);
    log_kept_bytes_.store(wal_->kept_bytes(), std::memory_order_relaxed);
  }

  // Before the sequencer logs anything (a request it takes, a tick): the log kept on the
  // disk within config::wal_kept_max_mib. Over it, the checkpoint under way is waited for,
  // then one taken now, up to log_limit_checkpoint_tries of them a pause apart
  // (backpressure, as for room in the window), until one commits. One that commits is
  // enough even if the log is still over (a segment goes only once the next one's first
  // group is durable: this write's). If all of them fail, checkpoints are failing, and
  // writes are refused until restart: checkpoints failing for good would otherwise grow
  // the log until the disk is full.
  void keep_log_within_limit() {
    const uint64_t limit = cfg_.wal_kept_max_mib << 20;
    if (failed_ || wal_->kept_bytes() <= limit) return;
    // Waits for the checkpoint under way, if any: whether one was, and committed.
    auto committed = [&] {
      std::unique_lock lk(ck_mu_);
      const bool running = checkpoint_running_;
      const uint64_t failures = checkpoint_failures_.load();
      ck_done_cv_.wait(lk, [&] { return !checkpoint_running_; });
      return running && checkpoint_failures_.load() == failures;
    };
    const bool ran = committed();
    drop_covered_segments();
    if (ran) return;
    std::string why;
    for (uint32_t tried = 0; wal_->kept_bytes() > limit; ++tried) {
      // Everything dispatched is in the snapshot: no checkpoint can free more, and the
      // segment still kept goes once the next group is durable.
      if (snapshot_lsn_.load() >= dispatched_lsn_) return;
      if (tried == log_limit_checkpoint_tries) {
        refuse_writes("the log kept on the disk past the snapshot at lsn " + std::to_string(snapshot_lsn_.load()) +
                      " holds " + std::to_string(wal_->kept_bytes() >> 20) + " MiB, over its limit of " +
                      std::to_string(cfg_.wal_kept_max_mib) + " MiB (--wal-kept-max-mib), and the " +
                      std::to_string(tried) + " checkpoints taken for it failed, the last: " + why);
        return;
      }
      if (tried > 0) std::this_thread::sleep_for(std::chrono::milliseconds(log_limit_checkpoint_pause_ms));
      maybe_checkpoint(true);
      const bool ok = committed();
      drop_covered_segments();
      if (ok) return;
      std::lock_guard lk(ck_mu_);
      why = checkpoint_error_last_;
    }
  }

  std::vector<std::shared_ptr<engine_batch>> open_list_;
  // One list per group in flight, oldest first: dispatched in log order as each
  // group becomes durable.
  std::deque<std::vector<std::shared_ptr<engine_batch>>> flight_lists_;
  bool open_has_writes_ = false;
  uint64_t last_submit_ns_ = 0;  // when the last group commit started
  uint64_t submit_due_ns_ = 0;   // the open group waits for the flush gap until then (0: not)

  void fail_list(std::vector<std::shared_ptr<engine_batch>>& list, bool writes_only) {
    std::vector<std::shared_ptr<engine_batch>> keep;
    for (auto& b : list) {
      if (writes_only && !actors::op_kind_writes(b->kind)) {
        keep.push_back(b);
        continue;
      }
      if (b->user_done) {
        reply r;
        r.st = status::engine_failed;
        b->user_done(std::move(r));
      }
    }
    list = std::move(keep);
  }

  // Dispatches the oldest group in flight, now durable.
  void dispatch_durable() {
    MESOB_ASSERT(!flight_lists_.empty());
    dispatched_chain_ = wal_->durable_chain();
    send(std::move(flight_lists_.front()), nullptr);
    flight_lists_.pop_front();
  }

  // Waits for the oldest group in flight (all of them if `all`); dispatches each.
  void complete_flight(bool all = true) {
    while (wal_->in_flight()) {
      const auto st = wal_->wait(-1);
      if (st == storage::wal_writer::wait_status::committed) {
        dispatch_durable();
        if (!all) return;
      } else if (st == storage::wal_writer::wait_status::failed) {
        on_wal_failed();
      }
    }
  }

  void on_wal_failed() {
    if (!failed_) std::fprintf(stderr, "mesobd: %s; refusing writes until restart\n", wal_->error().c_str());
    failed_ = true;
    refuse_for(wal_->error());
    for (auto& list : flight_lists_) fail_list(list, false);
    flight_lists_.clear();
    fail_list(open_list_, true);
    open_has_writes_ = false;
  }

  // Commits the open group if a flight is free. Look-ups without writes go out at
  // once, but only behind every group in flight (they must see those writes).
  // A group commit starts no sooner than wal_flush_gap_us after the one before
  // (engine/README.md, the flush gap): until then the open group is held, gathering more.
  // `force` (a full group, a pipeline flush) and stopping commit it at once.
  void submit_open(bool force = false) {
    if (open_has_writes_) {
      if (!wal_->can_submit()) return;
      if (cfg_.wal_flush_gap_us != 0 && !force && !stop_.load()) {
        const uint64_t due = last_submit_ns_ + uint64_t(cfg_.wal_flush_gap_us) * 1000;
        const uint64_t t = steady_ns();
        if (t < due) {
          submit_due_ns_ = due;
          return;
        }
      }
      submit_due_ns_ = 0;
      last_submit_ns_ = steady_ns();
      wal_->submit();
      flight_lists_.push_back(std::move(open_list_));
      open_list_.clear();
      open_has_writes_ = false;
    } else if (!open_list_.empty() && !wal_->in_flight()) {
      send(std::move(open_list_), nullptr);
      open_list_.clear();
    }
  }

  // The sequencer's buffer for a packed transfer batch (reused; at most ~730 KB).
  std::vector<uint8_t> packed_ops_;

  void log_and_queue(std::shared_ptr<engine_batch> b) {
    if (failed_) {  // the failure came while the batch was sequenced (make_room)
      std::vector<std::shared_ptr<engine_batch>> one{std::move(b)};
      fail_list(one, false);
      return;
    }
    uint16_t flags = uint16_t((b->emitted ? batch_flag_emitted : 0) | (b->gateway ? batch_flag_gateway : 0));
    std::span<const uint8_t> ops = ops_bytes(*b);
    if (b->kind == op_kind::create_transfers && b->count > 1) {
      MESOB_ASSERT(b->transfers.size() == b->count);
      packed_ops_.clear();
      wire::pack_transfers(b->transfers, packed_ops_);
      if (packed_ops_.size() < ops.size()) {
        ops = packed_ops_;
        flags |= batch_flag_packed;
      }
    }
    batch_record_header h{uint16_t(b->kind), flags, b->count, b->timestamp_base};
    // Creates of accounts and groups, transfer batches and orders carry the capacity they
    // are decided by first; transfer batches and orders then their transfers_max, equb
    // operations their accounts_max.
    const bool capped = carries_capacity(b->kind, batch_record_version);
    const bool transfers_capped = carries_transfers_capacity(b->kind, batch_record_version);
    const bool accounts_capped = carries_accounts_capacity(b->kind, batch_record_version);
    const std::span<const uint8_t> pieces[5] = {
        {reinterpret_cast<const uint8_t*>(&h), sizeof h},
        {reinterpret_cast<const uint8_t*>(&b->capacity), capped ? sizeof b->capacity : 0},
        {reinterpret_cast<const uint8_t*>(&b->transfers_capacity), transfers_capped ? sizeof b->transfers_capacity : 0},
        {reinterpret_cast<const uint8_t*>(&b->accounts_capacity), accounts_capped ? sizeof b->accounts_capacity : 0},
        ops};
    uint64_t lsn = wal_->stage(storage::record_kind::batch, batch_record_version, b->timestamp_base, pieces);
    if (lsn == 0 && !wal_->failed()) {
      // The open group is full: commit it (after the oldest flight, if none is free).
      if (!wal_->group_empty()) {
        if (!wal_->can_submit()) complete_flight(false);
        if (!failed_) submit_open(true);
      }
      if (!failed_) lsn = wal_->stage(storage::record_kind::batch, batch_record_version, b->timestamp_base, pieces);
      if (lsn == 0 && !failed_ && !wal_->failed()) {
        // A new segment starts only with nothing in flight.
        complete_flight();
        if (!failed_) lsn = wal_->stage(storage::record_kind::batch, batch_record_version, b->timestamp_base, pieces);
      }
    }
    if (lsn == 0) {
      if (wal_->failed()) on_wal_failed();
      std::vector<std::shared_ptr<engine_batch>> one{b};
      fail_list(one, false);
      return;
    }
    b->lsn = lsn;
    open_list_.push_back(std::move(b));
    open_has_writes_ = true;
  }

  // The payout accounts of currency c for this shard count: one per shard (the desks').
  std::vector<wire::account> desk_accounts(wire::currency_code c) const {
    return system_accounts(c, [c, this](uint32_t s) { return actors::payouts::desk_account_for(c, s, shards_n_); });
  }
  // The trading accounts of currency c for this shard count: one per shard.
  std::vector<wire::account> trading_accounts(wire::currency_code c) const {
    return system_accounts(c, [c, this](uint32_t s) { return actors::trading::account_for(c, s, shards_n_); });
  }
  template <class F>
  std::vector<wire::account> system_accounts(wire::currency_code c, F&& account_of_shard) const {
    std::vector<wire::account> out;
    for (uint32_t s = 0; s < shards_n_; ++s) {
      wire::account a{};
      a.id = account_of_shard(s);
      a.currency = c;
      a.kind = wire::account_kind::system;
      out.push_back(a);
    }
    return out;
  }

  // A payout's hold: a pending transfer from the wallet to the currency's payout account
  // on the wallet's shard (its desk's), so that the hold and its post or void stay local.
  // The serial of the transfer recorded (sequenced) with this id, or -1.
  int64_t find_recorded(const wire::id128& id) {
    return ids_.find(id, [this](uint64_t s) { return record_id(s); });
  }

  result payout_hold(const wire::payout& p, wire::transfer* out) {
    if (p.id == 0) return result::id_must_not_be_zero;
    if (p.reserved != 0 || p.reserved2 != 0) return result::reserved_field;
    if (!wire::currency_valid(p.currency)) return result::currency_invalid;
    if (p.rail == 0 || p.rail > actors::gateways::rail_max) return result::rail_invalid;
    if (p.wallet == 0) return result::debit_account_id_must_not_be_zero;
    if (actors::payouts::payout_account(p.wallet)) return result::payout_account_reserved;
    if (p.amount == 0) return result::amount_must_not_be_zero;
    if (actors::payouts::engine_payout(p.id)) return result::payout_id_reserved;
    // A retry of a recorded payout is a repeat (its first outcome), rail served or not now,
    // and one recorded before destinations were checked too.
    if (p.destination == 0 && find_recorded(actors::payouts::hold_id(p.id)) < 0)
      return result::payout_destination_missing;  // (before, a gateway was told to pay 0)
    if (!registry_->serves_rail(p.rail, p.currency) && find_recorded(actors::payouts::hold_id(p.id)) < 0)
      return result::payout_rail_unserved;
    wire::transfer t{};
    t.id = actors::payouts::hold_id(p.id);
    t.debit_account_id = p.wallet;
    t.credit_account_id = actors::payouts::desk_account_for(p.currency, shard_of(p.wallet, shards_n_), shards_n_);
    t.amount = p.amount;
    t.currency = p.currency;
    t.user_data = p.destination;
    t.code = p.rail;
    t.flags = wire::transfer_flags::pending;
    *out = t;
    return result::ok;
  }

  // A deposit the registry refuses now (its gateway disabled, the currency no longer
  // served) that was recorded before is a retry: it goes on as the recorded transfer's
  // repeat, to be answered with its first outcome; else `refused` stands.
  result retried_deposit(std::string_view gateway, const wire::deposit& d, result refused, wire::transfer* out) {
    const auto* g = registry_->find(gateway);
    if (!g || d.reference == 0) return refused;
    // Its own fields are checked as for any deposit (the registry stopped before them).
    if (d.reserved != 0) return result::reserved_field;
    if (!wire::currency_valid(d.currency)) return result::currency_invalid;
    if (d.wallet == 0) return result::credit_account_id_must_not_be_zero;
    if (d.amount == 0) return result::amount_must_not_be_zero;
    const int64_t found = find_recorded(actors::gateways::deposit_transfer_id(g->number, d.reference));
    if (found < 0) return refused;
    // Its settlement account then.
    *out = actors::gateways::deposit_as_transfer(g->number, record_field(uint64_t(found), &wire::transfer::debit_account_id), d);
    return result::ok;
  }

  // A gateway's deposits, or payouts, become a transfer batch (flag `gateway`) of those
  // the registry lets through; the reply puts the others' results back in their places.
  bool gateway_items_to_transfers(queued& q) {
    const bool deposits = q.req.kind == op_kind::deposits;
    const auto n = uint32_t(deposits ? q.req.deposits.size() : q.req.payouts.size());
    std::vector<result> results(n, result::ok);
    std::vector<uint32_t> placed;
    std::vector<wire::transfer> transfers;
    for (uint32_t i = 0; i < n; ++i) {
      wire::transfer t;
      results[i] = deposits ? registry_->deposit_transfer(q.req.gateway, q.req.deposits[i], &t)
                            : payout_hold(q.req.payouts[i], &t);
      if (deposits && (results[i] == result::gateway_disabled || results[i] == result::gateway_currency_unserved))
        results[i] = retried_deposit(q.req.gateway, q.req.deposits[i], results[i], &t);
      if (results[i] != result::ok) continue;
      placed.push_back(i);
      transfers.push_back(t);
    }
    if (transfers.empty()) {
      // A repeat looked for (find_recorded) may have read a record the snapshot cannot
      // give: answered here, not left for the next request to be failed by.
      if (take_row_damage(q.done, true)) return false;
      reply r;
      r.results = std::move(results);
      q.done(std::move(r));
      return false;
    }
    q.req = request{};
    q.req.kind = op_kind::create_transfers;
    q.req.transfers = std::move(transfers);
    q.done = [done = std::move(q.done), results = std::move(results), placed = std::move(placed)](reply&& r) mutable {
      if (r.st == status::ok)
        for (size_t k = 0; k < placed.size() && k < r.results.size(); ++k) results[placed[k]] = r.results[k];
      else
        results.clear();
      r.results = std::move(results);
      done(std::move(r));
    };
    return true;
  }

  // Answers carry the number of the gateway whose session sent them (and an order
  // answer, the wallet the sequencer finds).
  bool stamp_answering_gateway(queued& q) {
    const auto* g = registry_->find(q.req.gateway);
    if (!g) {
      reply r;
      r.results.assign(std::max(q.req.payout_answers.size(), q.req.order_answers.size()), result::gateway_not_registered);
      q.done(std::move(r));
      return false;
    }
    for (auto& a : q.req.payout_answers) {
      if (a.gateway != 0) a.outcome = wire::payout_outcome(0);  // a client's gateway field: payout_answer_invalid
      a.gateway = g->number;
    }
    for (auto& a : q.req.order_answers) {
      if (a.gateway != 0 || a.wallet != 0) a.kind = wire::order_answer_kind(0);  // order_answer_invalid
      a.gateway = g->number;
      a.wallet = 0;
    }
    return true;
  }

  void accept(queued&& q) {
    // (deposits, payouts and rebalances become writes)
    if (actors::op_kind_writes(q.req.kind) || q.req.kind == op_kind::deposits || q.req.kind == op_kind::payouts ||
        q.req.kind == op_kind::rebalance)
      keep_log_within_limit();
    if (auto bad = precheck(q.req)) {
      reply r;
      r.st = *bad;
      q.done(std::move(r));
      return;
    }
    if (q.req.kind == op_kind::instrument_ops && !failed_) make_trading_accounts(q.req.instrument_ops);
    if (q.req.kind == op_kind::rebalance) {
      plan_then_place(std::move(q));
      return;
    }
    if (q.req.kind == op_kind::equb_ops && !q.req.equb_accounts_checked && !replaying_) {
      check_group_accounts(std::move(q));
      return;
    }
    const bool gateway = q.req.kind == op_kind::deposits || q.req.kind == op_kind::payouts || q.req.gateway_internal;
    if ((q.req.kind == op_kind::deposits || q.req.kind == op_kind::payouts) && !gateway_items_to_transfers(q)) return;
    if ((q.req.kind == op_kind::payout_answers || q.req.kind == op_kind::order_answers) && !stamp_answering_gateway(q))
      return;
    // Orders are logged with the shard count they are sequenced under (their trading
    // accounts follow it); a client's reserved2 is refused (reserved_field).
    if (q.req.kind == op_kind::orders)
      for (auto& o : q.req.orders) o.reserved2 = o.reserved2 != 0 ? actors::shards_max + 1 : shards_n_;
    auto b = make_batch(std::move(q.req));
    b->user_done = std::move(q.done);
    b->emitted = q.emitted;
    b->gateway = gateway;
    if (actors::op_kind_writes(b->kind)) {
      // A record the gateway items read that the snapshot could not give: its answer,
      // before the answers that skip sequencing (the flag must not reach the next request).
      if (take_row_damage(b->user_done, true)) return;
      if (failed_) {
        reply r;
        r.st = status::engine_failed;
        b->user_done(std::move(r));
        return;
      }
      if (b->count == 0 && b->kind != op_kind::tick) {  // nothing to log or apply
        reply r;
        b->user_done(std::move(r));
        return;
      }
      stamp(*b);
    }
    sequence(*b);
    if (take_row_damage(b->user_done, actors::op_kind_writes(b->kind))) return;
    b->serial_end = records_->size();
    b->done = [this](batch& done_b) { finish(done_b); };
    if (actors::op_kind_writes(b->kind)) {
      log_and_queue(std::move(b));
    } else if (b->kind == op_kind::lookup_transfers) {
      reply r;
      r.results = std::move(b->results);
      r.transfers = std::move(b->found_transfers);
      b->user_done(std::move(r));
    } else {
      open_list_.push_back(std::move(b));
    }
  }

  // Each currency an instrument is defined in has its trading accounts, one per shard,
  // before the definition: made here, in a batch of their own ahead of it (engine-made,
  // in the reserved range), once per currency and run (a repeat if they exist). Only for
  // a definition the market will take (invariant 5: a refused one changes nothing), as the
  // sequencer's copy of the definitions (every instrument batch before this one) and the
  // request's earlier definitions tell: fields that pass, an id not defined, a symbol not
  // in use, room under instruments_max. (Before, a definition refused for its symbol or
  // id made another currency's accounts: a market-data gateway could make them for every
  // currency code.)
  void make_trading_accounts(const std::vector<wire::instrument_op>& ops) {
    std::vector<wire::account> accounts;
    std::unordered_set<uint64_t, actors::seeded_u64_hash> ids;  // defined earlier in this request
    std::unordered_set<std::string> symbols;
    for (const auto& op : ops) {
      if (op.kind != wire::instrument_op_kind::define || actors::market::check_op_fields(op) != result::ok ||
          !actors::market::tradable(op) || seq_market_.find(op.instrument_id) || ids.count(op.instrument_id))
        continue;
      const std::string sym = actors::market::symbol_of(op);
      if (seq_market_.symbol_taken(sym) || symbols.count(sym) ||
          seq_market_.size() + ids.size() >= actors::market::instruments_max)
        continue;
      ids.insert(op.instrument_id);
      symbols.insert(sym);
      if (trading_currencies_.insert(op.currency).second)
        for (auto& a : trading_accounts(op.currency)) accounts.push_back(a);
    }
    if (accounts.empty()) return;
    request r;
    r.kind = op_kind::create_accounts;
    r.accounts = std::move(accounts);
    auto b = make_batch(std::move(r));
    b->gateway = true;
    b->user_done = [](reply&& rep) {
      for (size_t i = 0; rep.st == status::ok && i < rep.results.size(); ++i)
        if (rep.results[i] != result::ok)
          std::fprintf(stderr, "mesobd: making a trading account: %s\n", std::string(wire::result_name(rep.results[i])).c_str());
    };
    stamp(*b);
    sequence(*b);
    b->serial_end = records_->size();
    b->done = [this](batch& done_b) { finish(done_b); };
    log_and_queue(std::move(b));
  }
  std::unordered_set<wire::currency_code> trading_currencies_;  // sequencer: trading accounts made

  // Shards' reconciliation parts, summed per (gateway, day, currency), in key order.
  // The first day the shards keep reconciliation rows of at engine time `clock_ns`.
  static uint32_t recon_window_start(uint64_t clock_ns) {
    const auto day = uint32_t(clock_ns / actors::payouts::ns_per_day);
    return day < actors::payouts::recon_days_kept ? 0 : day - (actors::payouts::recon_days_kept - 1);
  }

  static std::vector<actors::payouts::recon_row> merged_recon(const std::vector<std::vector<actors::payouts::recon_row>>& parts) {
    std::map<actors::payouts::recon_key, actors::payouts::recon_counts> sum;
    for (const auto& list : parts)
      for (const auto& row : list) sum[row.k].add(row.c);
    std::vector<actors::payouts::recon_row> out;
    for (const auto& [k, c] : sum) out.push_back({k, c});
    return out;
  }

  void finish(batch& base) {
    auto& b = static_cast<engine_batch&>(base);
    if (b.kind == op_kind::lookup_account_transfers || b.kind == op_kind::lookup_balances_as_of) {
      // The shards supplied the history heads; the sequencer walks the records.
      {
        std::lock_guard lk(q_mu_);
        walks_.push_back(std::static_pointer_cast<engine_batch>(b.shared_from_this()));
      }
      wake();
      batch_finished(b);
      return;
    }
    if (b.user_done) {
      reply r;
      // The event writer reads a logged batch's results after every shard handled it.
      if (event_writer_ && b.lsn != 0) r.results = b.results;
      else r.results = std::move(b.results);
      r.accounts = std::move(b.found_accounts);
      r.transfers = std::move(b.found_transfers);
      r.groups = std::move(b.found_groups);
      r.instruments = std::move(b.found_instruments);
      r.instrument_sequences = std::move(b.found_sequences);
      r.customers = std::move(b.found_customers);
      for (auto& list : b.found_positions) r.positions.insert(r.positions.end(), list.begin(), list.end());
      r.policy = std::move(b.found_policy);
      r.orders = std::move(b.found_orders);
      if (b.kind == op_kind::plan_rebalance) r.placed = std::move(b.orders);
      for (auto& list : b.found_payouts)
        for (auto& p : list)
          (p.st == actors::payouts::state::resolved ? r.watched_payouts : r.payouts).push_back(std::move(p));
      for (auto* list : {&r.payouts, &r.watched_payouts})
        std::sort(list->begin(), list->end(), [](const auto& x, const auto& y) { return x.id < y.id; });
      for (auto& list : b.found_breakers)
        for (auto& row : list) r.breakers.push_back(row);
      std::sort(r.breakers.begin(), r.breakers.end(), [](const auto& x, const auto& y) {
        return std::tie(x.currency, x.gateway, x.desk) < std::tie(y.currency, y.gateway, y.desk);
      });
      for (auto& list : b.found_order_breakers)
        for (auto& row : list) r.order_breakers.push_back(row);
      std::sort(r.order_breakers.begin(), r.order_breakers.end(),
                [](const auto& x, const auto& y) { return std::tie(x.gateway, x.desk) < std::tie(y.gateway, y.desk); });
      r.recon = merged_recon(b.found_recon);
      for (auto& list : b.found_sweeps)
        for (const auto& row : list) r.sweeps.push_back(row);
      std::sort(r.sweeps.begin(), r.sweeps.end(), [](const auto& x, const auto& y) {
        return std::tie(x.desk, x.settlement) < std::tie(y.desk, y.settlement);
      });
      for (auto& list : b.found_counts)
        for (const auto& c : list) r.payout_counts.push_back(c);
      for (auto& a : b.group_audits) {
        r.groups_checked += a.checked;
        for (auto& f : a.faults) r.group_faults.push_back(std::move(f));
      }
      for (auto& per_shard : b.totals)
        for (const auto& t : per_shard) {
          auto it = std::find_if(r.totals.begin(), r.totals.end(),
                                 [&](auto& x) { return x.currency == t.currency; });
          if (it == r.totals.end()) it = r.totals.insert(r.totals.end(), actors::currency_total{t.currency});
          it->debits_posted += t.debits_posted;
          it->credits_posted += t.credits_posted;
          it->debits_pending += t.debits_pending;
          it->credits_pending += t.credits_pending;
        }
      r.timestamp_base = b.timestamp_base;
      r.lsn = b.lsn;
      auto done = std::move(b.user_done);
      done(std::move(r));
    }
    batch_finished(b);
  }

  void maybe_tick() {
    const uint64_t t = now();
    if (failed_ || t < next_tick_ns_) return;
    // A pending transfer to expire, an equb round whose deadline + grace has passed, a
    // desk's, order's or market's timer, as of the shards' last batches. And while groups are
    // scheduled or orders wait on the engine's up time, a heartbeat: the last logged time
    // is where a restart's outage starts (resume_heartbeat_ns). (Payouts waiting for a
    // gateway look again each second: their ticks are logged. So does a desk's next page
    // of cancels for a gateway that came back.)
    uint64_t due = UINT64_MAX;
    bool up_time = false;
    for (const auto& sh : shards_) {
      due = std::min(due, sh->next_deadline());
      up_time |= sh->groups_scheduled() || sh->orders_on_up_time();
    }
    const bool heartbeat = up_time && t >= last_ts_ + resume_heartbeat_ns;
    if (due >= t && !heartbeat) return;
    keep_log_within_limit();
    if (failed_) return;
    next_tick_ns_ = t + cfg_.tick_ms * 1'000'000ull;
    auto b = std::make_shared<engine_batch>();
    b->kind = op_kind::tick;
    stamp(*b);
    sequence(*b);
    b->serial_end = records_->size();
    b->done = [this](batch& done_b) { finish(done_b); };
    log_and_queue(std::move(b));
  }

  // Resolved pending transfers the shards hold, as they last published (one across two
  // shards counted on each).
  uint64_t resolved_pending_resident() const {
    uint64_t n = 0;
    for (const auto& sh : shards_) {
      const auto st = sh->stats();
      n += st.pending_total - st.pending_open;
    }
    return n;
  }

  // A cut follows every batch dispatched so far and precedes every later one, so it may
  // be sent while groups are being committed.
  void maybe_checkpoint(bool force) {
    maybe_flush_records();
    const uint64_t t = now();
    bool due = force;
    {
      std::lock_guard lk(ck_mu_);
      if (checkpoint_running_) return;
      due = due || checkpoint_requested_;
      checkpoint_requested_ = false;
    }
    if (!due && cfg_.checkpoint_interval_ms != 0 && dispatched_lsn_ > snapshot_lsn_.load() &&
        t >= last_checkpoint_ns_ + cfg_.checkpoint_interval_ms * 1'000'000ull)
      due = true;
    // Resolved pending transfers leave memory only at a cut (they are the snapshot's then):
    // too many of them make one due, whatever the interval.
    if (!due && t >= last_checkpoint_ns_ + 1'000'000'000ull && resolved_pending_resident() > cfg_.resolved_pending_cut_at)
      due = true;
    // So does a log kept past half its limit (the interval may be long, or 0).
    if (!due && !failed_ && t >= last_checkpoint_ns_ + 1'000'000'000ull && dispatched_lsn_ > snapshot_lsn_.load() &&
        log_kept_bytes_.load(std::memory_order_relaxed) > (cfg_.wal_kept_max_mib << 20) / 2)
      due = true;
    if (!due) return;
    last_checkpoint_ns_ = t;
    auto c = make_cut();
    {
      std::lock_guard lk(ck_mu_);
      checkpoint_running_ = true;
      cut_waiters_[c.get()] = std::move(checkpoint_waiters_);  // requested before this cut
      checkpoint_waiters_.clear();
    }
    send({}, std::move(c));
  }

  void run() {
    std::vector<queued> incoming;
    for (;;) {
      std::vector<std::shared_ptr<engine_batch>> walks;
      {
        std::lock_guard lk(q_mu_);
        incoming.swap(q_);
        walks.swap(walks_);
      }
      q_space_.notify_all();
      // Look-ups' walks, about walk_pass_steps records a pass: the rest wait for the next
      // one, after the writes taken meanwhile.
      uint64_t walked = 0;
      size_t w = 0;
      while (w < walks.size() && walked < walk_pass_steps) walked += walk(*walks[w++]);
      if (w < walks.size()) {
        walks_deferred_.fetch_add(walks.size() - w, std::memory_order_relaxed);
        std::lock_guard lk(q_mu_);
        walks_.insert(walks_.begin(), std::make_move_iterator(walks.begin() + long(w)),
                      std::make_move_iterator(walks.end()));
      }
      // Chains groups emitted are independent of each other and of the requests around
      // them: they go in as few batches as fit (up to batch_ops_max operations, chains
      // whole), after the requests taken with them.
      std::vector<queued> emitted;
      for (auto& q : incoming) {
        if (!q.emitted) {
          accept(std::move(q));
          continue;
        }
        if (emitted.empty() || emitted.back().req.transfers.size() + q.req.transfers.size() > batch_ops_max) {
          emitted.push_back(std::move(q));
          continue;
        }
        auto& into = emitted.back().req.transfers;
        into.insert(into.end(), q.req.transfers.begin(), q.req.transfers.end());
      }
      for (auto& q : emitted) accept(std::move(q));
      incoming.clear();
      maybe_tick();
      submit_open();
      drop_covered_segments();  // first: the checkpoint trigger reads the log kept
      maybe_checkpoint(false);
      if (stop_.load() && !wal_->in_flight() && open_list_.empty()) {
        wait_idle();  // account queries come back as walks
        std::lock_guard lk(q_mu_);
        if (q_.empty() && walks_.empty()) break;
      }
      // Wait for the oldest group in flight, or for work. While a group is in flight, the
      // request that brings the queue to `sequencer_wake_in_flight` wakes the sequencer,
      // so it stages (and, with a flight free, commits) the next group during the
      // fdatasync instead of after it.
      // An open group held for the flush gap (submit_open) is staged into as a flight's
      // successor is: the 16th request wakes the sequencer, and the wait ends at the gap.
      const bool flying = wal_->in_flight();
      const bool held = open_has_writes_ && submit_due_ns_ != 0 && wal_->can_submit();
      wake_at_.store(flying || held ? sequencer_wake_in_flight : 1);
      sleeping_.store(true);
      bool ready;
      {
        std::lock_guard lk(q_mu_);
        ready = q_.size() >= wake_at_.load() || !walks_.empty();
      }
      int64_t hold_us = -1;  // until the held group's gap ends (-1: none held)
      if (held) {
        const uint64_t t = steady_ns();
        hold_us = t < submit_due_ns_ ? int64_t((submit_due_ns_ - t + 999) / 1000) : 0;
      }
      if (flying) {
        int64_t wait_us = ready ? 0 : int64_t(cfg_.tick_ms) * 1000;  // stopping too: the flight ends it
        if (hold_us >= 0) wait_us = std::min(wait_us, hold_us);
        const auto st = wal_->wait_us(wait_us);
        sleeping_.store(false);
        if (st == storage::wal_writer::wait_status::committed) {
          dispatch_durable();
        } else if (st == storage::wal_writer::wait_status::failed) {
          on_wal_failed();
        }
      } else {
        if (!ready && !stop_.load())
          wal_->wait_us(hold_us >= 0 ? hold_us : int64_t(std::min<uint64_t>(cfg_.tick_ms, 100)) * 1000);
        sleeping_.store(false);
      }
    }
    wal_->drain();
  }

  // ---- recovery ------------------------------------------------------------------

  bool load_snapshot(std::string* error) {
    auto meta = snap_->read_meta(error);
    if (!error->empty()) return false;
    // Without a snapshot row a store holds only what comes before the first checkpoint:
    // records flushed and their ids' hashes, bounds and key. Rows of any other table mean
    // the row was lost: a start from nothing would serve balances that ignore them.
    for (int t = 0; t < storage::tables && !meta; ++t) {
      const auto tb = storage::table(t);
      if (tb == storage::table::transfers || tb == storage::table::transfer_ids || tb == storage::table::id_lo_max ||
          tb == storage::table::id_hash_key)
        continue;
      uint64_t key = 0;
      std::string bytes;
      if (snap_->floor_row(tb, UINT64_MAX, &key, &bytes, error)) {
        *error = std::string("snapshot: the ") + storage::table_name(tb) + " table has rows (its last is " +
                 std::to_string(key) + ") but the store has no snapshot row: the snapshot is damaged";
        return false;
      }
      if (!error->empty()) return false;
    }
    // Records flushed after the snapshot was taken stay; replay checks them.
    const auto stored_end = record_rows::end(*snap_, error);
    if (!stored_end) return false;
    const uint64_t snapshot_records = meta ? meta->next_serial : 0;
    if (*stored_end > snapshot_records) kept_end_.store(*stored_end);
    // The id index is sized up front for every id the snapshot and the log can hold as
    // 88-byte transfers. A log of packed transfer batches (8 to 25 bytes a transfer) holds
    // more, and replay then grows the index beside it (the builder thread re-places the
    // hashes; the sequencer waits only if the old table fills to 7/8 first). Counting the
    // log's transfers exactly would mean reading it twice.
    uint64_t log_bytes = 0;
    for (const auto& seg : storage::list_segments(cfg_.data_dir + "/wal")) {
      std::error_code ec;
      const auto sz = std::filesystem::file_size(seg.second, ec);
      if (!ec) log_bytes += std::min<uint64_t>(sz, cfg_.wal_segment_mib << 20);  // a damaged size: a hint only
    }
    const uint64_t log_transfers_max = log_bytes / sizeof(wire::transfer);
    // The key ids are hashed under (engine/id_hash.hpp). A store without one (a new one,
    // or one of format 12 or older, whose hashes are of an unkeyed function) gets one
    // from the OS, and its hashes are dropped in the same transaction: the ids are
    // indexed from the records below and their hashes written again.
    auto id_key = record_rows::hash_key(*snap_, error);
    if (!id_key) {
      if (!error->empty()) return false;
      id_key = id_hash_key::random();
      if (!record_rows::set_hash_key(*snap_, *id_key, meta, error)) return false;
      rec_.id_hash_key_made = true;
    }
    ids_.set_key(*id_key);
    const auto ids_end = record_rows::hashes_end(*snap_, error);
    if (!ids_end) return false;
    // A snapshot from before `transfer_ids` (format 9 and older) has none, and one whose
    // filling-in was cut short has fewer: its ids come from the records, and the missing
    // hashes are written for the next start.
    const bool fill_in = *ids_end < *stored_end;
    if (*ids_end > *stored_end) {
      *error = "snapshot: transfer_ids ends at serial " + std::to_string(*ids_end) + " but transfers at " +
               std::to_string(*stored_end) + ": the snapshot is damaged";
      return false;
    }
    if (!meta) {  // rows flushed before the first checkpoint: kept, replay checks them
      ids_.reserve(log_transfers_max);
      if (fill_in) {
        if (!record_rows::fill_in_hashes(*snap_, *ids_end, *stored_end, ids_.hasher(), error)) return false;
        rec_.transfer_ids_filled_in = *stored_end - *ids_end;
      }
      return true;
    }
    rec_.snapshot_lsn = meta->lsn;
    last_ts_ = meta->clock_ns;
    dispatched_ts_ = meta->clock_ns;
    committed_clock_ns_ = meta->clock_ns;
    dispatched_lsn_ = meta->lsn;
    dispatched_chain_ = meta->chain;
    set_snapshot_position(meta->lsn, meta->chain);
    // Every id goes into the index (sized up front: no growth while loading); only the
    // newest `transfers_resident_max` records into the resident window.
    const uint64_t n = meta->transfers;
    const uint64_t first_resident = n > records_->capacity() ? n - records_->capacity() : 0;
    records_->start_at(first_resident);
    records_floor_ = first_resident;
    ids_.reserve(n + log_transfers_max);
    uint64_t expect = 0;
    bool ok = true;
    if (!fill_in) {
      // The index from the hashes (8 bytes per transfer), a run at a time.
      std::vector<uint64_t> run;  // their slots prefetched
      run.reserve(4096);
      auto insert_run = [&] {
        ids_.insert_hashed_run(run, expect - run.size());
        run.clear();
      };
      ok = record_rows::scan_hashes(*snap_, 0, n, [&](uint64_t serial, uint64_t h) {
        if (serial != expect) {
          *error = "snapshot: transfer id hashes " + std::to_string(expect) + ".." + std::to_string(serial) +
                   " are missing";
          return false;
        }
        run.push_back(h);
        ++expect;
        if (run.size() == run.capacity()) insert_run();
        return true;
      }, error);
      insert_run();
      if (ok && expect != n) {
        *error = "snapshot: " + std::to_string(expect) + " transfer id hashes but the snapshot meta says " +
                 std::to_string(n) + " transfers";
        return false;
      }
      // Hashes say nothing of id.lo: the snapshot's lo_max bounds them, so that new ids
      // counting up past them need not probe the table (engine/id_index.hpp).
      if (ok) {
        std::string why;
        auto lo_max = record_rows::lo_max(*snap_, n, &why);
        if (!lo_max && why.empty() && n > 0) {  // a snapshot without it: once, from the records
          if (!record_rows::fill_in_lo_max(*snap_, *stored_end, error)) return false;
          lo_max = record_rows::lo_max(*snap_, n, &why);
          rec_.id_lo_max_filled_in = true;
        }
        if (!why.empty()) {
          *error = why;
          return false;
        }
        if (lo_max) ids_.set_lo_max(*lo_max);
      }
    }
    // The records: all of them when they index the ids, else the window's, each checked
    // against its hash.
    const uint64_t from = fill_in ? 0 : first_resident;
    uint64_t next = from;
    ok = ok && record_rows::scan(*snap_, from, n, [&](uint64_t serial, const transfer_record& r) {
      if (serial != next) {
        *error = "snapshot: transfer record " + std::to_string(serial) + " is out of order";
        return false;
      }
      if (r.result == actors::result_unresolved) {
        *error = "snapshot: transfer record " + std::to_string(serial) + " has no result";
        return false;
      }
      if (fill_in) {
        index_id(r.t.id, serial);
      } else if (ids_.hasher()(r.t.id) != ids_.hash_at(serial)) {
        *error = "snapshot: transfer record " + std::to_string(serial) +
                 "'s id does not match its hash in transfer_ids: the snapshot is damaged";
        return false;
      }
      if (serial >= first_resident) records_->append() = r;
      ++next;
      return true;
    }, error);
    if (ok) expect = next;  // short of n: reported below as records missing
    snap_->release_pages();
    if (!ok) return false;
    if (expect != meta->next_serial || expect != meta->transfers) {
      *error = "snapshot: " + std::to_string(expect) + " transfer records but the snapshot meta says " +
               std::to_string(meta->transfers);
      return false;
    }
    // The rows before the window are not read: their keys are counted against LMDB's
    // count (a row lost from the tree showed only when a look-up needed it, and then
    // refused every write until a restart, which started again without a word).
    if (!snap_->check_row_count(storage::table::transfers, error)) return false;
    if (fill_in) {
      if (!record_rows::fill_in_hashes(*snap_, *ids_end, *stored_end, ids_.hasher(), error)) return false;
      rec_.transfer_ids_filled_in = *stored_end - *ids_end;
    }
    rec_.transfers_loaded = expect;
    // Every row checked as it loads, and the money summed per currency: LMDB keeps no
    // checksums, and a damaged balance must stop the start, not be served.
    struct money {
      unsigned __int128 debits_posted = 0, credits_posted = 0, debits_pending = 0, credits_pending = 0;
    };
    std::map<wire::currency_code, money> sums;
    // Each account's pending totals, less the open pending rows naming it: zero at the
    // end, or a pending row is missing (each row's check covers its own bytes, not a row
    // that is gone; the currencies' totals still balance without it).
    // (Flat, in the accounts table's order, ids ascending, with an open-addressing index:
    // a start with a million accounts holding pending money looks each up twice.)
    struct pending_left {
      uint64_t id = 0, debits = 0, credits = 0;
    };
    std::vector<pending_left> pending_of;
    actors::flat_u64_map pending_at;  // account id -> its place in pending_of
    std::string bad_row;
    ok = snap_->scan(storage::table::accounts, [&](uint64_t key, std::span<const uint8_t> v) {
      actors::stored_account sa;
      if (v.size() != sizeof sa) return false;
      std::memcpy(&sa, v.data(), sizeof sa);
      if (sa.a.id != key || sa.a.id == 0 || sa.last_serial > n) return false;
      const wire::account& a = sa.a;
      namespace af = wire::account_flags;
      if (!wire::currency_valid(a.currency) || uint16_t(a.kind) == 0 || uint16_t(a.kind) > wire::account_kind_max ||
          uint16_t(a.status) == 0 || uint16_t(a.status) > wire::account_status_max || (a.flags & ~af::all) != 0 ||
          (a.flags & af::all) == af::all) {
        bad_row = "snapshot: the row of account " + std::to_string(key) +
                  " is damaged (its currency, kind, status or flags are not ones the ledger makes)";
        return false;
      }
      money& m = sums[a.currency];
      m.debits_posted += a.debits_posted;
      m.credits_posted += a.credits_posted;
      m.debits_pending += a.debits_pending;
      m.credits_pending += a.credits_pending;
      if (a.debits_pending != 0 || a.credits_pending != 0) {
        if (pending_of.size() == UINT32_MAX) {
          bad_row = "snapshot: more than 2^32 - 1 accounts hold pending money (more than a start checks)";
          return false;
        }
        pending_at.put(a.id, uint32_t(pending_of.size()));
        pending_of.push_back({a.id, a.debits_pending, a.credits_pending});
      }
      shards_[shard_of(a.id, shards_n_)]->load_account(a, sa.last_serial);
      ++rec_.accounts_loaded;
      return true;
    }, error);
    if (!bad_row.empty()) *error = bad_row;
    if (!ok) return false;
    for (const auto& [currency, m] : sums)
      if (m.debits_posted != m.credits_posted || m.debits_pending != m.credits_pending) {
        auto text = [](unsigned __int128 x) {
          std::string t;
          do t.insert(t.begin(), char('0' + int(x % 10))); while ((x /= 10) != 0);
          return t;
        };
        *error = "snapshot: the accounts' money does not balance in " + wire::currency_name(currency) +
                 ": debits posted " + text(m.debits_posted) + ", credits posted " + text(m.credits_posted) +
                 ", debits pending " + text(m.debits_pending) + ", credits pending " + text(m.credits_pending) +
                 " (damaged account rows; nothing was started)";
        return false;
      }
    if (rec_.accounts_loaded != meta->accounts) {
      *error = "snapshot: " + std::to_string(rec_.accounts_loaded) +
               " account rows but the snapshot meta says " + std::to_string(meta->accounts);
      return false;
    }
    // Each open pending row is the transfer its record made (make_pending): a post or void
    // is routed by the record's accounts and applied to the row's, so rows that disagree
    // with their records, however well their totals add up, would move another
    // customer's money. (A record before the resident window is read from the snapshot:
    // one row's columns.)
    auto pending_disagrees = [](const actors::pending_info& p, const actors::transfer_record& r) -> std::string {
      const wire::transfer& t = r.t;
      if (r.result != uint32_t(result::ok))
        return "its transfer record's outcome is " + std::string(wire::result_name(result(r.result)));
      if (!(t.flags & wire::transfer_flags::pending)) return "its transfer record is not a pending transfer";
      const uint64_t expires = t.timeout_s == 0 ? 0 : t.timestamp + uint64_t(t.timeout_s) * actors::ns_per_s;
      if (t.debit_account_id == p.debit_account_id && t.credit_account_id == p.credit_account_id &&
          t.amount == p.amount && t.currency == p.currency && expires == p.expires_at)
        return {};
      auto terms = [](uint64_t amount, wire::currency_code c, uint64_t dr, uint64_t cr, uint64_t exp) {
        return std::to_string(amount) + " in " + wire::currency_name(c) + " from account " + std::to_string(dr) +
               " to " + std::to_string(cr) + (exp == 0 ? std::string(", never expiring") : ", expiring at " + std::to_string(exp));
      };
      return "it holds " + terms(p.amount, p.currency, p.debit_account_id, p.credit_account_id, p.expires_at) +
             " but its transfer record " + terms(t.amount, t.currency, t.debit_account_id, t.credit_account_id, expires);
    };
    auto pending_fault = [](uint64_t serial, const std::string& why) {
      return "snapshot: the open pending transfer of serial " + std::to_string(serial) + ": " + why +
             " (damaged rows; nothing was started)";
    };
    bool read_before_window = false;
    record_rows::reader older(*snap_);  // (pending rows come in serial order: a row read once)
    ok = snap_->scan(storage::table::pending, [&](uint64_t key, std::span<const uint8_t> v) {
      actors::pending_info p;
      if (v.size() != sizeof p) return false;
      std::memcpy(&p, v.data(), sizeof p);
      if (p.serial != key || p.serial >= expect || p.state != actors::pending_state::pending) return false;
      for (const bool debit : {true, false}) {
        const uint64_t id = debit ? p.debit_account_id : p.credit_account_id;
        const uint32_t* at = pending_at.find(id);
        uint64_t* left = at == nullptr ? nullptr : debit ? &pending_of[*at].debits : &pending_of[*at].credits;
        if (!left || *left < p.amount) {
          bad_row = "snapshot: the open pending transfer of serial " + std::to_string(p.serial) + " holds " +
                    std::to_string(p.amount) + " on account " + std::to_string(id) + ", whose pending " +
                    (debit ? "debits" : "credits") + " do not hold it (damaged rows; nothing was started)";
          return false;
        }
        *left -= p.amount;
      }
      actors::transfer_record before_window;
      if (!records_->resident(p.serial)) {
        std::string err;
        read_before_window = true;
        if (!older.get(p.serial, &before_window, &err)) {
          bad_row = pending_fault(p.serial, err.empty() ? "its transfer record is not in the snapshot"
                                                        : "its transfer record cannot be read: " + err);
          return false;
        }
      }
      if (const std::string why =
              pending_disagrees(p, records_->resident(p.serial) ? records_->at(p.serial) : before_window);
          !why.empty()) {
        bad_row = pending_fault(p.serial, why);
        return false;
      }
      ++rec_.pending_loaded;
      const uint32_t ds = shard_of(p.debit_account_id, shards_n_), cs = shard_of(p.credit_account_id, shards_n_);
      shards_[ds]->load_pending(p);
      if (cs != ds) shards_[cs]->load_pending(p);
      return true;
    }, error);
    if (!bad_row.empty()) *error = bad_row;
    if (!ok) return false;
    if (read_before_window) snap_->release_pages();
    // The lowest account named (the first in the table's order): the same message each start.
    if (const auto it = std::find_if(pending_of.begin(), pending_of.end(),
                                     [](const pending_left& l) { return l.debits != 0 || l.credits != 0; });
        it != pending_of.end()) {
      *error = "snapshot: account " + std::to_string(it->id) + " has " +
               (it->debits != 0 ? std::to_string(it->debits) + " of pending debits" : std::string()) +
               (it->debits != 0 && it->credits != 0 ? " and " : "") +
               (it->credits != 0 ? std::to_string(it->credits) + " of pending credits" : std::string()) +
               " that no open pending transfer in the snapshot holds (a pending row is missing; nothing was "
               "started)";
      return false;
    }
    std::string why;
    std::unordered_set<uint64_t> group_numbers;
    // Numbers are unique and below numbers_max (a retired group's row is checked here
    // alone: past it, every later create would be refused group_numbers_exhausted).
    auto number_taken = [&](uint64_t key, uint64_t number) {
      if (number == 0) return true;
      if (number >= actors::equb::numbers_max) {
        why = "group " + std::to_string(key) + ": number " + std::to_string(number) + " is past the last (" +
              std::to_string(actors::equb::numbers_max - 1) + ")";
        return false;
      }
      if (!group_numbers.insert(number).second) {
        why = "group " + std::to_string(key) + ": number " + std::to_string(number) + " is another group's";
        return false;
      }
      next_group_number_ = std::max(next_group_number_, number + 1);
      return true;
    };
    ok = snap_->scan(storage::table::groups, [&](uint64_t key, std::span<const uint8_t> v) {
      // A retired group's tombstone: its number stays taken, its escrow account closed.
      if (actors::equb::retired_group r; actors::equb::decode_retired(v, &r)) {
        const wire::account* a = shards_[shard_of(key, shards_n_)]->find_account(key);
        if (r.group_id != key || !a || a->kind != wire::account_kind::group_escrow ||
            a->status != wire::account_status::closed || a->debits_posted != a->credits_posted) {
          why = "row " + std::to_string(key) + ": a retired group's, but " +
                (r.group_id != key ? "it names group " + std::to_string(r.group_id)
                                   : std::string("its escrow account is not closed and empty"));
          return false;
        }
        ++rec_.groups_retired;
        return number_taken(key, r.number);
      }
      actors::equb::group_entry e;
      if (!actors::equb::decode_entry(v, &e, &why)) return false;
      if (e.g.cfg.group_id != key) {
        why = "row " + std::to_string(key) + " holds group " + std::to_string(e.g.cfg.group_id);
        return false;
      }
      // Its escrow account, from the same snapshot, holds what the group says it must.
      auto& sh = *shards_[shard_of(key, shards_n_)];
      const wire::account* a = sh.find_account(key);
      const uint64_t expected = actors::equb::escrow_expected(e);
      if (!a || a->kind != wire::account_kind::group_escrow || a->debits_pending || a->credits_pending ||
          a->debits_posted > a->credits_posted || a->credits_posted - a->debits_posted != expected) {
        why = "group " + std::to_string(key) + ": its escrow account " +
              (a ? "holds " + std::to_string(a->credits_posted - a->debits_posted) : std::string("is missing")) +
              " but the group says " + std::to_string(expected);
        return false;
      }
      // (A group's create makes its escrow in the group's currency.)
      if (a->currency != e.g.cfg.currency) {
        why = "group " + std::to_string(key) + ": its escrow account is in " + wire::currency_name(a->currency) +
              " but the group in " + wire::currency_name(e.g.cfg.currency);
        return false;
      }
      if (!number_taken(key, e.g.number)) return false;
      sh.groups().load(std::move(e));
      ++rec_.groups_loaded;
      return true;
    }, error);
    if (!ok) {
      if (!why.empty()) *error = "snapshot: equb group: " + why;
      return false;
    }
    ok = snap_->scan(storage::table::gateways, [&](uint64_t key, std::span<const uint8_t> v) {
      auto reg = std::make_shared<actors::gateways::registry>();
      if (key != 0) {
        why = "gateway registry: unexpected row " + std::to_string(key);
        return false;
      }
      if (!actors::gateways::registry::decode(v, reg.get(), &why)) return false;
      // Its accounts against the ledger, as a registration checks them: a row that passes
      // its check but names a customer's wallet would move every deposit out of it.
      if (why = registry_disagrees(*reg, meta->clock_ns); !why.empty()) return false;
      registry_ = reg;
      for (auto& sh : shards_) sh->desks().set_registry(reg);
      publish_registry(std::move(reg));
      return true;
    }, error);
    if (!ok) {
      if (!why.empty()) *error = "snapshot: " + why;
      return false;
    }
    // The market: every shard's copy from the one row.
    ok = snap_->scan(storage::table::market, [&](uint64_t key, std::span<const uint8_t> v) {
      if (key != 0) {
        why = "market: unexpected row " + std::to_string(key);
        return false;
      }
      for (auto& sh : shards_)
        if (!actors::market::book::decode(v, &sh->market(), &why)) return false;
      if (!actors::market::book::decode(v, &seq_market_, &why)) return false;
      if (shards_[0]->market().latest_time() > last_ts_) {
        why = "market: a time past the snapshot's clock";
        return false;
      }
      return true;
    }, error);
    if (!ok) {
      if (!why.empty()) *error = "snapshot: " + why;
      return false;
    }
    // The policy: every shard's copy from the one row. Then the customers, each on its
    // wallet's shard, checked against its wallet (the tier is on both).
    ok = snap_->scan(storage::table::policy, [&](uint64_t key, std::span<const uint8_t> v) {
      if (key != 0) {
        why = "policy: unexpected row " + std::to_string(key);
        return false;
      }
      for (auto& sh : shards_)
        if (!actors::customers::policy::decode(v, &sh->policy(), &why)) return false;
      return true;
    }, error);
    std::vector<uint64_t> tiered(shards_n_, 0);
    ok = ok && snap_->scan(storage::table::customers, [&](uint64_t key, std::span<const uint8_t> v) {
      actors::customers::customer c;
      if (!actors::customers::table::decode(v, last_ts_, &c, &why)) return false;
      auto& sh = *shards_[shard_of(key, shards_n_)];
      const wire::account* a = sh.find_account(key);
      if (c.wallet != key || !a || a->kind != wire::account_kind::customer_wallet || a->tier != c.tier ||
          !sh.policy().tier(c.tier, a->currency)) {
        why = "customer " + std::to_string(key) + ": its wallet, tier or the tier's limits do not match";
        return false;
      }
      sh.customers().load(c);
      ++tiered[shard_of(key, shards_n_)];
      return true;
    }, error);
    if (ok)
      for (uint32_t s = 0; s < shards_n_ && ok; ++s) {
        uint64_t with_tier = 0;
        shards_[s]->for_each_account([&](const wire::account& a) { with_tier += a.tier != 0; });
        if (with_tier != tiered[s]) {
          why = "shard " + std::to_string(s) + ": " + std::to_string(with_tier) + " wallets have a tier but " +
                std::to_string(tiered[s]) + " customer records";
          ok = false;
        }
      }
    // Portfolios, on their wallets' shards (actors/trading.hpp).
    ok = ok && snap_->scan(storage::table::portfolios, [&](uint64_t key, std::span<const uint8_t> v) {
      if (actors::trading::breakers_key(key)) {  // a shard's breakers for brokers (its count's only)
        const uint64_t s = key & ~actors::trading::kind_mask;
        bool taken = false, live = false;
        uint32_t wrote = 0;
        if (s < shards_n_ && !shards_[s]->trading().load_breakers(v, &taken, &live, &wrote, &why)) return false;
        if (s >= shards_n_ || !taken) {
          if (!actors::trading::table().load_breakers(v, &taken, &live, &wrote, &why)) return false;  // checked all the same
          other_count_ = std::max(other_count_, wrote);
          if (s >= shards_n_) carried_portfolios_.emplace_back(key, std::vector<uint8_t>{});  // gone at the next cut
        }
        return true;
      }
      auto& sh = *shards_[shard_of(key, shards_n_)];
      const wire::account* a = sh.find_account(key);
      if (!a) {
        why = "portfolio " + std::to_string(key) + ": no such wallet";
        return false;
      }
      if (!sh.trading().load_row(key, v, &why)) return false;
      ++rec_.portfolios_loaded;
      return true;
    }, error);
    if (!ok) {
      if (!why.empty()) *error = "snapshot: " + why;
      return false;
    }
    // Payout desks (key 0: the gateways' sessions, every shard's copy), then their payouts.
    ok = snap_->scan(storage::table::desks, [&](uint64_t key, std::span<const uint8_t> v) {
      if (key == 0) {
        bool loaded = true;
        for (auto& sh : shards_) {
          sh->desks().load_sessions(v, &why, &loaded);
          if (!loaded) return false;
        }
        return true;
      }
      actors::payouts::desk d;
      if (!actors::payouts::decode_desk(v, &d, &why)) return false;
      // Keyed by payout account; rows written before desks per shard, by currency.
      if (d.account != key && !(key == d.currency && actors::payouts::desk_slot(d.account) == 0)) {
        why = "desk row " + std::to_string(key) + " holds the desk of account " + std::to_string(d.account);
        return false;
      }
      shards_[shard_of(d.account, shards_n_)]->desks().load_desk(std::move(d));
      return true;
    }, error);
    if (ok) {
      // A desk's steps name its emitted chains (their transfer ids): two payouts on one
      // step would send two chains under one id, the second refused as a repeat for good.
      std::map<std::pair<uint64_t, uint64_t>, uint64_t> chain_steps;  // (desk, step) -> payout
      ok = snap_->scan(storage::table::payouts, [&](uint64_t key, std::span<const uint8_t> v) {
        actors::payouts::payout_entry p;
        if (!actors::payouts::decode_payout(v, &p, &why)) return false;
        if (p.id != key) {
          why = "payout row " + std::to_string(key) + " holds payout " + std::to_string(p.id);
          return false;
        }
        if (p.chain_step != 0)
          if (const auto [it, fresh] = chain_steps.try_emplace({p.desk, p.chain_step}, p.id); !fresh) {
            why = "payout " + std::to_string(p.id) + ": its chain's step " + std::to_string(p.chain_step) +
                  " is payout " + std::to_string(it->second) + "'s";
            return false;
          }
        // Its past times come before the snapshot's clock (the last operation the cut
        // follows): one past it is damage (the desk's timers measure from them: a wait
        // since a time to come wraps and ends at once).
        uint64_t latest = std::max(p.created_at, p.wait_since);
        for (const auto& a : p.attempts) latest = std::max(latest, a.sent_at);
        if (latest > meta->clock_ns) {
          why = "payout " + std::to_string(p.id) + ": a time (made, waiting since or an attempt sent) " +
                std::to_string(latest) + " past the snapshot's clock " + std::to_string(meta->clock_ns);
          return false;
        }
        ++snapshot_payouts_;
        return shards_[shard_of(p.desk, shards_n_)]->desks().load_payout(std::move(p), &why);
      }, error);
    }
    if (ok) {
      // Rows within recon_days_kept of the snapshot's day (older ones stay in the snapshot,
      // final: the snapshot's cut copied every day from its committed day on).
      const uint32_t first_day = recon_window_start(meta->clock_ns);
      ok = snap_->scan(storage::table::recon, [&](uint64_t key, std::span<const uint8_t> v) {
        actors::payouts::recon_row row;
        if (!actors::payouts::decode_recon(key, v, &row, &why)) return false;
        if (row.k.day >= first_day) shards_[0]->desks().load_recon(row);  // additive: any shard may hold a part
        return true;
      }, error);
    }
    if (ok) {
      why = desks_disagree();
      snap_->release_pages();  // (records older than the window its look-ups read)
      ok = why.empty();
    }
    if (!ok) {
      if (!why.empty()) *error = "snapshot: payouts: " + why;
      return false;
    }
    if (why = portfolios_disagree(); !why.empty()) {
      *error = "snapshot: orders: " + why;
      return false;
    }
    flushed_serial_ = expect;
    executed_serial_end_ = expect;
    dispatched_serial_end_ = expect;
    return ok;
  }

  // Whether a registry loaded from a snapshot names, for each gateway, settlement
  // accounts that are settlement accounts of their currency (and former ones settlement
  // accounts), with times no later than the snapshot's clock; "" when it holds, else the
  // first that does not.
  std::string registry_disagrees(const actors::gateways::registry& reg, uint64_t clock_ns) {
    for (const auto& g : reg.all()) {
      const std::string who = "gateway registry: gateway " + g.id + " (" + std::to_string(g.number) + ")";
      if (g.registered_at > g.changed_at || g.changed_at > clock_ns)
        return who + ": registered at " + std::to_string(g.registered_at) + ", changed at " +
               std::to_string(g.changed_at) + ", past the snapshot's clock " + std::to_string(clock_ns) +
               " or before its registration";
      auto account = [&](uint64_t id) { return shards_[shard_of(id, shards_n_)]->find_account(id); };
      for (const auto& gc : g.currencies) {
        const wire::account* a = account(gc.settlement_account_id);
        if (!a || a->kind != wire::account_kind::gateway_settlement || a->currency != gc.currency)
          return who + ": its " + wire::currency_name(gc.currency) + " settlement account " +
                 std::to_string(gc.settlement_account_id) +
                 (a ? " is not a " + wire::currency_name(gc.currency) + " settlement account" : std::string(" is missing"));
      }
      for (const uint64_t id : g.former_accounts) {
        const wire::account* a = account(id);
        if (!a || a->kind != wire::account_kind::gateway_settlement)
          return who + ": its former settlement account " + std::to_string(id) +
                 (a ? " is not a settlement account" : std::string(" is missing"));
      }
    }
    return {};
  }

  // What differs between a payout a desk holds and its hold (the open pending transfer
  // payouts::hold_id(id) from its wallet to its desk's payout account); "" when they agree.
  std::string payout_hold_disagrees(const actors::payouts::payout_entry& p) {
    const int64_t s = ids_.find(actors::payouts::hold_id(p.id), [this](uint64_t x) { return record_id(x); });
    if (s < 0 && !row_damage_.empty()) {  // a record the look-up compared could not be read
      std::string why = "its hold's look-up read a " + std::move(row_damage_);
      row_damage_.clear();
      return why;
    }
    if (s < 0) return "its hold is not among the transfers";
    // (Resident on its debit account's shard and its credit account's.)
    const actors::pending_info* h = shards_[shard_of(p.desk, shards_n_)]->open_pending(uint64_t(s));
    if (h == nullptr) h = shards_[shard_of(p.wallet, shards_n_)]->open_pending(uint64_t(s));
    if (h == nullptr) return "its hold (transfer serial " + std::to_string(s) + ") is not an open pending transfer";
    if (h->debit_account_id == p.wallet && h->credit_account_id == p.desk && h->amount == p.amount &&
        h->currency == p.currency)
      return {};
    return "it pays " + std::to_string(p.amount) + " in " + wire::currency_name(p.currency) + " from wallet " +
           std::to_string(p.wallet) + " through payout account " + std::to_string(p.desk) +
           " but its hold (transfer serial " + std::to_string(s) + ") holds " + std::to_string(h->amount) + " in " +
           wire::currency_name(h->currency) + " from account " + std::to_string(h->debit_account_id) + " to " +
           std::to_string(h->credit_account_id);
  }

  // Whether every settlement account a desk names (its sweeps' targets, its payouts'
  // gateways' accounts as sent) is a settlement account of the desk's currency, and every
  // gateway it names (breakers, payouts' attempts, waits and settlers) is registered: a
  // sweep is emitted without the checks a request gets, and would credit any account of
  // the currency (a customer's wallet); a payout waiting on a gateway that does not exist
  // waits for good. "" when they all hold, else the first that does not.
  std::string desk_names_disagree(const actors::payouts::desk& d) {
    const std::string cur = wire::currency_name(d.currency);
    auto unfit = [&](uint64_t id) -> std::string {
      const wire::account* a = shards_[shard_of(id, shards_n_)]->find_account(id);
      if (a && a->kind == wire::account_kind::gateway_settlement && a->currency == d.currency) return {};
      return "account " + std::to_string(id) + (a ? " is not a " + cur + " settlement account" : std::string(" is missing"));
    };
    for (const auto& [account, sw] : d.sweeps)
      if (std::string w = unfit(account); !w.empty())
        return "the " + cur + " payout account " + std::to_string(d.account) + " owes a sweep to " + w;
    uint32_t first_breaker = UINT32_MAX;
    for (const auto& [number, b] : d.breakers)
      if (!registry_->find(number)) first_breaker = std::min(first_breaker, number);
    if (first_breaker != UINT32_MAX)
      return "the " + cur + " payout account " + std::to_string(d.account) + " keeps a breaker for gateway " +
             std::to_string(first_breaker) + ", which is not registered";
    std::string why;
    uint64_t why_id = UINT64_MAX;  // the lowest payout: the same message at every start
    for (const auto* held : {&d.payouts, &d.watched})
      for (const auto& [id, p] : *held) {
        if (id >= why_id) continue;
        std::vector<uint64_t> named{p.settlement};
        for (const auto& a : p.attempts) named.push_back(a.settlement);
        for (const uint64_t s : named)
          if (s != 0)
            if (std::string w = unfit(s); !w.empty()) {
              why_id = id;
              why = "payout " + std::to_string(id) + ": its gateway's settlement " + w;
              break;
            }
        if (id >= why_id) continue;
        std::vector<uint32_t> gateways{p.settled_by, p.cancel_wait};
        for (const auto& a : p.attempts) gateways.push_back(a.gateway);
        gateways.insert(gateways.end(), p.given_up.begin(), p.given_up.end());
        for (const uint32_t g : gateways)
          if (g != 0 && !registry_->find(g)) {
            why_id = id;
            why = "payout " + std::to_string(id) + ": it names gateway " + std::to_string(g) + ", which is not registered";
            break;
          }
      }
    return why;
  }

  // Each payout account holds, pending, exactly its desk's payouts, and posted what its
  // sweeps owe; else what differs (the lowest such account: the same message at every
  // start, whatever order the desks' map keeps). Checked after loading a snapshot and
  // after replaying the log (shards idle).
  std::string desks_disagree() {
    std::string why;
    uint64_t why_account = 0;
    for (auto& sh : shards_) {
      sh->desks().for_each_desk([&](const actors::payouts::desk& d) {
        if (!why.empty() && why_account < d.account) return;
        uint64_t held = 0;
        for (const auto& [id, p] : d.payouts) held += p.amount;
        // And each payout its own hold: the sum alone passes payouts that swapped amounts
        // or wallets, one customer's hold then paying another's payout.
        uint64_t first_bad = UINT64_MAX;
        std::string bad;
        for (const auto& [id, p] : d.payouts)
          if (id < first_bad)
            if (std::string h = payout_hold_disagrees(p); !h.empty()) {
              first_bad = id;
              bad = std::move(h);
            }
        if (!bad.empty()) {
          why_account = d.account;
          why = "payout " + std::to_string(first_bad) + ": " + bad;
          return;
        }
        if (std::string w = desk_names_disagree(d); !w.empty()) {
          why_account = d.account;
          why = std::move(w);
          return;
        }
        const wire::account* a = sh->find_account(d.account);
        if (!a || !actors::payouts::account_matches(d, held, *a)) {
          why_account = d.account;
          why = "the " + wire::currency_name(d.currency) + " payout account " + std::to_string(d.account) + " " +
                (a ? "holds " + std::to_string(a->credits_pending) + " pending and " +
                         std::to_string(int64_t(a->credits_posted - a->debits_posted)) + " posted"
                   : std::string("is missing")) +
                " but its desk holds " + std::to_string(held) + " and owes " + std::to_string(d.owed());
        }
      });
      // And the other way: a payout account holding money has its desk (a desks row lost
      // from the snapshot left the account's money with nothing to pay it out or sweep it,
      // and the load passed: each desk was checked against its account, not each account
      // against a desk).
      std::unordered_set<uint64_t> with_desk;
      sh->desks().for_each_desk([&](const actors::payouts::desk& d) { with_desk.insert(d.account); });
      sh->for_each_account([&](const wire::account& a) {
        if (!actors::payouts::payout_account(a.id) || with_desk.count(a.id) ||
            (!why.empty() && why_account < a.id))
          return;
        if (a.credits_pending == 0 && a.debits_pending == 0 && a.credits_posted == a.debits_posted) return;
        why_account = a.id;
        why = "the " + wire::currency_name(a.currency) + " payout account " + std::to_string(a.id) + " holds " +
              std::to_string(a.credits_pending) + " pending and " +
              std::to_string(int64_t(a.credits_posted - a.debits_posted)) + " posted but has no desk (its desks row is lost)";
      });
    }
    return why;
  }

  // Each portfolio's open orders hold, pending, what its wallet's holds to and from the
  // trading accounts hold (shard::audit_trading); else the first that differs. An order's
  // hold has no timeout: one whose portfolio row is lost would hold the money for good,
  // and an order whose hold is lost would settle against nothing. Checked where
  // desks_disagree is.
  std::string portfolios_disagree() {
    for (auto& sh : shards_)
      if (std::string why = sh->portfolios_disagree(); !why.empty()) return why;
    return {};
  }

  // A resolved pending transfer evicted from its shards, from the snapshot (shard threads).
  // False, said on stderr and counted, when the snapshot cannot give it: the shard refuses
  // the post or void (pending_transfer_unreadable). That refusal is logged as the
  // operation's outcome, so it must be what replay decides too: only the row itself
  // (absent, failing its check, naming another state) makes it, which reads the same at
  // every start. When the store fails instead (a full reader table, no memory), the read
  // is tried again for up to resolved_read_retry_ms (MDB_PANIC, unusable until the
  // process ends, is not); a store still failing stops the engine, exit 1 as a failed
  // read of the map does: the batch is durable, its outcome not yet decided nor answered,
  // and a start whose read works decides it from the row (before, the refusal was logged,
  // and such a start decided otherwise and stopped at the kept row). In replay too.
  static constexpr int resolved_read_retry_ms = 2000;
  bool read_resolved_pending(uint64_t serial, actors::pending_info* out) {
    std::string bytes, err;
    using failure = storage::snapshot_store::store_failure;
    failure why = failure::none;
    bool found = false;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(resolved_read_retry_ms);
    for (auto pause = std::chrono::milliseconds(1);; pause = std::min(pause * 2, std::chrono::milliseconds(200))) {
      err.clear();
      found = snap_->get(storage::table::resolved, serial, &bytes, &err, &why);
      if (why == failure::none) break;
      if (why == failure::lasting || std::chrono::steady_clock::now() >= until) {
        std::fprintf(stderr, "mesobd: the snapshot store cannot be read (%s) for the final state of resolved pending "
                             "transfer %llu, which a post or void needs: stopping, the post or void undecided; a "
                             "start whose read works decides it (nothing acknowledged is lost)\n",
                     err.c_str(), static_cast<unsigned long long>(serial));
        std::fflush(stderr);
        ::_exit(1);
      }
      std::this_thread::sleep_for(pause);
    }
    if (!found && err.empty())
      err = "no row in the snapshot";
    else if (err.empty() && bytes.size() != sizeof *out)
      err = "its row has " + std::to_string(bytes.size()) + " bytes, not " + std::to_string(sizeof *out);
    if (err.empty()) {
      std::memcpy(out, bytes.data(), sizeof *out);
      const auto st = out->state;
      const bool resolved = st == actors::pending_state::posted || st == actors::pending_state::voided ||
                            st == actors::pending_state::expired;
      if (out->serial != serial || !resolved)
        err = "its row names serial " + std::to_string(out->serial) +
              (st == actors::pending_state::pending ? ", still pending"
               : !resolved ? ", in state " + std::to_string(unsigned(st)) + " (none such)" : "");
    }
    if (err.empty()) return true;
    rows_unreadable_.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "mesobd: the final state of resolved pending transfer %llu cannot be read (%s): its posts and voids are refused\n",
                 static_cast<unsigned long long>(serial), err.c_str());
    return false;
  }
  // Snapshot rows a request needed and could not read (damaged or missing), since start.
  std::atomic<uint64_t> rows_unreadable_{0};

  std::string flush_failure() {
    std::lock_guard lk(ck_mu_);
    return flush_failed_ ? flush_error_ : std::string();
  }

  // One log record decoded by the replay reader, for the sequencer.
  struct replay_item {
    std::shared_ptr<engine_batch> batch;
    storage::chain_hash chain{};
    std::string where;  // file and offset, for messages
    uint16_t version = batch_record_version;
  };

  // Stateless half of replaying a record (runs on the reader thread).
  static bool decode_record(const storage::wal_record_view& v, replay_item* out, std::string* error) {
    const auto& h = *v.header;
    auto where = [&] { return std::string(v.file) + " offset " + std::to_string(v.offset); };
    if (h.kind != uint16_t(storage::record_kind::batch) || h.version < 1 || h.version > batch_record_version) {
      *error = "wal: " + where() + ": unknown record kind/version " + std::to_string(h.kind) + "/" +
               std::to_string(h.version);
      return false;
    }
    batch_record_header bh;
    if (v.payload.size() < sizeof bh) {
      *error = "wal: " + where() + ": batch record shorter than its header";
      return false;
    }
    std::memcpy(&bh, v.payload.data(), sizeof bh);
    auto b = std::make_shared<engine_batch>();
    b->kind = op_kind(bh.kind);
    b->count = bh.count;
    b->timestamp_base = bh.timestamp_base;
    b->lsn = h.lsn;
    auto body = v.payload.subspan(sizeof bh);
    // A setting in force when the record was sequenced, 8 bytes before its operations.
    auto take = [&](const char* what, uint64_t* setting, uint64_t max) {
      if (body.size() < sizeof *setting) {
        *error = "wal: " + where() + ": batch record (kind " + std::to_string(bh.kind) + ") shorter than its " + what;
        return false;
      }
      std::memcpy(setting, body.data(), sizeof *setting);
      body = body.subspan(sizeof *setting);
      if (*setting == 0 || *setting > max) {
        *error = "wal: " + where() + ": batch record (kind " + std::to_string(bh.kind) + ") with " + what + " " +
                 std::to_string(*setting) + " (1.." + std::to_string(max) + ")";
        return false;
      }
      return true;
    };
    // The accounts_max, groups_max or pending_max; then a transfer batch's or orders'
    // transfers_max, or equb operations' accounts_max.
    if (carries_capacity(b->kind, h.version) && !take("capacity", &b->capacity, capacity_max)) return false;
    if (carries_transfers_capacity(b->kind, h.version) &&
        !take("transfers capacity", &b->transfers_capacity, transfers_max_limit))
      return false;
    if (carries_accounts_capacity(b->kind, h.version) && !take("accounts capacity", &b->accounts_capacity, capacity_max))
      return false;
    const uint16_t packed_flag = h.version >= 4 ? batch_flag_packed : 0;
    const bool packed = bh.flags & packed_flag;
    bool ok = bh.count <= batch_ops_max &&
              (bh.flags & ~(batch_flag_emitted | batch_flag_gateway | packed_flag)) == 0 &&
              (bh.flags & (batch_flag_emitted | batch_flag_gateway)) != (batch_flag_emitted | batch_flag_gateway) &&
              (bh.flags == 0 || b->kind == op_kind::create_transfers ||
               (bh.flags == batch_flag_gateway && b->kind == op_kind::create_accounts));
    b->emitted = bh.flags & batch_flag_emitted;
    b->gateway = bh.flags & batch_flag_gateway;
    std::string unpack_why;
    switch (b->kind) {
      case op_kind::create_accounts: ok = ok && decode_ops(body, bh.count, b->accounts); break;
      case op_kind::equb_ops: ok = ok && bh.count <= equb_ops_max && decode_ops(body, bh.count, b->equb_ops); break;
      case op_kind::gateway_ops:
        ok = ok && bh.count <= gateway_ops_max && decode_ops(body, bh.count, b->gateway_ops);
        break;
      case op_kind::payout_answers: ok = ok && decode_ops(body, bh.count, b->payout_answers); break;
      case op_kind::gateway_events: ok = ok && decode_ops(body, bh.count, b->gateway_events); break;
      case op_kind::payout_ops: ok = ok && decode_ops(body, bh.count, b->payout_ops); break;
      case op_kind::instrument_ops: ok = ok && decode_ops(body, bh.count, b->instrument_ops); break;
      case op_kind::prices: ok = ok && decode_ops(body, bh.count, b->prices); break;
      case op_kind::customer_ops: ok = ok && decode_ops(body, bh.count, b->customer_ops); break;
      case op_kind::policy_ops: ok = ok && decode_ops(body, bh.count, b->policy_ops); break;
      case op_kind::orders: ok = ok && decode_ops(body, bh.count, b->orders); break;
      case op_kind::order_answers: ok = ok && decode_ops(body, bh.count, b->order_answers); break;
      case op_kind::order_cancels:
      case op_kind::order_retries:
      case op_kind::order_retries_forced: ok = ok && decode_ops(body, bh.count, b->order_cancels); break;
      case op_kind::create_transfers:
        ok = ok && (packed ? wire::unpack_transfers(body, bh.count, b->transfers, &unpack_why)
                           : decode_ops(body, bh.count, b->transfers));
        break;
      case op_kind::set_account_status: ok = ok && decode_ops(body, bh.count, b->status_changes); break;
      case op_kind::tick:
        // A resume marker's body: the last timestamp before the start, below its own.
        ok = ok && bh.count == 0 &&
             (body.empty() || (h.version >= actors::rules_resume_rebases && body.size() == sizeof b->resumed_after));
        if (ok && !body.empty()) {
          std::memcpy(&b->resumed_after, body.data(), sizeof b->resumed_after);
          ok = b->resumed_after != 0 && b->resumed_after < bh.timestamp_base;
        }
        break;
      default: ok = false;
    }
    if (!ok) {
      *error = "wal: " + where() + ": malformed batch record (kind " + std::to_string(bh.kind) +
               ", " + std::to_string(bh.count) + " operations, " + std::to_string(body.size()) + " bytes" +
               (unpack_why.empty() ? "" : ": " + unpack_why) + ")";
      return false;
    }
    b->rules = h.version;
    if (h.version < actors::rules_ended_groups && b->kind == op_kind::equb_ops)
      for (auto& op : b->equb_ops)
        if (op.kind == wire::equb_op_kind::replace_account ||
            (h.version < 3 && (op.kind == wire::equb_op_kind::payout_to ||
                               (op.kind == wire::equb_op_kind::create && actors::equb::number_of(op) != 0))))
          op.reserved = 1;  // equb_op_invalid, the result the builds that wrote them gave
    // (payout_op.flags was a reserved byte: one set then was refused, reserved_field.)
    if (h.version < actors::rules_payout_ops_checked && b->kind == op_kind::payout_ops)
      for (auto& op : b->payout_ops)
        if (op.flags != 0) op.reserved[0] = 1;
    if (h.version == 1) {
      bool desks_decide = b->kind == op_kind::payout_answers || b->kind == op_kind::payout_ops ||
                          b->kind == op_kind::gateway_events;
      for (uint32_t i = 0; !desks_decide && (b->emitted || b->gateway) && i < b->count; ++i)
        desks_decide = actors::payouts::emitted(b->transfers[i].id) || actors::payouts::hold(b->transfers[i].id);
      if (desks_decide) {
        *error = "wal: " + where() + ": " + old_payout_record;
        return false;
      }
    }
    out->version = h.version;
    out->batch = std::move(b);
    out->chain = h.chain;
    out->where = where();
    return true;
  }

  static constexpr const char* old_payout_record =
      "a payout record of an older build (record version 1, before a desk per shard and sweeps) that this build "
      "would replay differently: start the build that wrote it, take a snapshot (mesob snapshot), stop it, then "
      "start this one";

  // The sequencer's half: the same path as a live request, without the log write.
  bool replay_record(replay_item&& item, std::string* error) {
    // Payouts the snapshot holds run on timers any logged batch may fire: after them,
    // an older build's record (any) would replay by other rules.
    if (item.version == 1 && snapshot_payouts_ > 0) {
      *error = "wal: " + item.where + ": " + old_payout_record;
      return false;
    }
    auto& pending = replay_pending_;
    auto b = std::move(item.batch);
    if (b->timestamp_base <= last_ts_) {
      *error = "wal: " + item.where + ": timestamp goes backwards";
      return false;
    }
    last_ts_ = b->timestamp_last();
    sequence(*b);
    if (!row_damage_.empty()) {
      *error = "replay: " + item.where + ": " + row_damage_;
      return false;
    }
    if (std::string e = flush_failure(); !e.empty()) {
      *error = e;
      return false;
    }
    b->serial_end = records_->size();
    b->done = [this](batch& done_b) { batch_finished(done_b); };
    dispatched_chain_ = item.chain;
    rec_.operations_replayed += b->count;
    pending.push_back(std::move(b));
    if (pending.size() >= 64) {
      send(std::move(pending), nullptr);
      pending.clear();
      maybe_flush_records();
    }
    return true;
  }

  // Once a start has recovered (every record replayed under this count, the payout desks
  // checked) and before it logs anything: from here the records past the snapshot are
  // this count's.
  bool note_shard_count(std::string* error) {
    if (logged_by_ != shards_n_ &&
        !storage::replace_file(cfg_.data_dir + "/shards", "shards " + std::to_string(shards_n_) + "\n", error)) {
      *error = "shards: " + *error;
      return false;
    }
    return true;
  }
  uint32_t logged_by_ = 0;  // recover(): the count that logged the records past the snapshot (0: unknown)

  // The shard count of the last start that may have logged records (the data directory's
  // `shards`), else the snapshot's when another count wrote it, else 0 (this one's).
  uint32_t read_logged_count(std::string* error) const {
    const std::string path = cfg_.data_dir + "/shards";
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return other_count_;
      *error = "shards: cannot read " + path + ": " + std::strerror(errno);
      return 0;
    }
    std::ifstream f(path);
    if (!f) {
      *error = "shards: cannot read " + path;
      return 0;
    }
    std::string word, rest;
    uint64_t n = 0;
    if (!(f >> word >> n) || word != "shards" || n == 0 || n > actors::shards_max || (f >> rest)) {
      *error = "shards: " + path + " is damaged (it should read \"shards N\", N from 1 to " +
               std::to_string(actors::shards_max) + "; write the shard count of the last run there)";
      return 0;
    }
    return uint32_t(n);
  }

  bool recover(std::string* error) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!load_snapshot(error)) return false;
    if (!read_events_newest(error)) return false;  // (with --no-events too: still evidence)
    const uint64_t snap_lsn = rec_.snapshot_lsn;
    const storage::chain_hash snap_chain = dispatched_chain_;  // the snapshot's (zeros without one)
    storage::wal_scan_options so;
    so.dir = cfg_.data_dir + "/wal";
    // Segments wholly before the snapshot that a drop left (a rename or unlink lost to a
    // crash or an error) are not read, so a gap among them is no damage.
    so.start_lsn = snap_lsn + 1;
    if (!storage::sync_segments(so.dir, error)) return false;
    // A torn tail is cut only after the checks below: damage under what is known durable
    // (the snapshot, the event log, the kept transfer rows) is corruption, and cutting it
    // would make the damage permanent.
    so.repair_tail = false;
    storage::wal_scan_result sr;
    // Before anything is changed (the event log's files included): a start with another
    // shard count replays no record past the snapshot. What those records decided by the
    // count would be decided anew: groups', desks', markets' and brokers' timers fire at
    // the batches their shard executes (a timer the old count had not fired yet may fire
    // at a record whose events readers have, its decision missing from the stream or put
    // among offsets they acknowledged), orders' routing is per shard, and creates are
    // decided against a shard's share of accounts_max, groups_max and pending_max. A run
    // with the old count replays them and snapshots when it stops (checkpoint_on_close),
    // and the next may change it. The count that wrote the log is the data directory's
    // `shards` (written once a start has recovered, before it logs anything:
    // note_shard_count), else the snapshot's (a directory from before that file). Read
    // only (no tail repair); damage is the main scan's to report.
    std::string count_err;
    const uint32_t logged_by = logged_by_ = read_logged_count(&count_err);
    if (!count_err.empty()) {
      *error = count_err;
      return false;
    }
    if (logged_by != 0 && logged_by != shards_n_) {
      bool past = false, first = true;
      std::string scan_err;
      storage::wal_scan_result pre;
      storage::wal_scan_options ro = so;
      ro.repair_tail = false;
      (void)storage::scan_wal(ro, [&](const storage::wal_record_view& v) {
        if (std::exchange(first, false) && v.header->lsn > snap_lsn + 1) return false;  // records missing: later
        past = v.header->lsn > snap_lsn;
        return !past;
      }, &pre, &scan_err);
      if (past) {
        *error = "log: the records past the snapshot were logged by " + std::to_string(logged_by) +
                 " shards, and what they decided by the count (groups', desks', markets' and brokers' timers, "
                 "routing, creates against a shard's share of the capacities) would be decided anew under " +
                 std::to_string(shards_n_) + "; start once with --shards " + std::to_string(logged_by) +
                 " (it replays them and snapshots when it stops), then with --shards " + std::to_string(shards_n_);
        return false;
      }
    }
    if (event_writer_ && !recover_events(snap_lsn, error)) return false;
    replaying_ = true;
    const auto t1 = std::chrono::steady_clock::now();
    const double cpu0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
    const double process_cpu0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
    // A reader thread scans the log (reads, checksums, hash chain) and decodes records
    // while this thread sequences the ones before: replay is a two-stage pipeline.
    std::mutex mu;
    std::condition_variable cv;
    std::deque<replay_item> queue;
    constexpr size_t queue_max = 32;  // decoded records waiting (each at most ~1 MiB)
    bool reader_done = false, stop = false, reader_ok = false;
    std::string reader_error;
    std::thread reader([&] {
      pthread_setname_np(pthread_self(), "mesob.replay");
      bool first = true;
      std::string err;
      const bool ok = storage::scan_wal(so, [&](const storage::wal_record_view& v) {
        if (first) {
          first = false;
          if (v.header->lsn > snap_lsn + 1) {
            err = "wal: the log starts at lsn " + std::to_string(v.header->lsn) +
                  " but the snapshot covers only up to lsn " + std::to_string(snap_lsn) +
                  ": records are missing";
            return false;
          }
        }
        // The log must continue this snapshot's history: the chain hash before the first
        // record after it is the one the snapshot recorded.
        if (v.header->lsn == snap_lsn + 1 && snap_lsn != 0 && *v.prev_chain != snap_chain) {
          err = "wal: " + std::string(v.file) + " offset " + std::to_string(v.offset) + ": the chain hash before lsn " +
                std::to_string(v.header->lsn) + " is not the one the snapshot recorded at lsn " +
                std::to_string(snap_lsn) + ": this log is not the snapshot's history";
          return false;
        }
        if (v.header->lsn <= snap_lsn) return true;
        replay_item item;
        if (!decode_record(v, &item, &err)) return false;
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return stop || queue.size() < queue_max; });
        if (stop) return false;
        queue.push_back(std::move(item));
        cv.notify_all();
        return true;
      }, &sr, &err);
      std::lock_guard lk(mu);
      reader_done = true;
      reader_ok = ok;
      reader_error = err;
      cv.notify_all();
    });
    bool ok = true;
    for (;;) {
      replay_item item;
      {
        std::unique_lock lk(mu);
        auto ready = [&] { return reader_done || !queue.empty(); };
        if (!ready()) {
          const auto w0 = std::chrono::steady_clock::now();
          cv.wait(lk, ready);
          rec_.replay_reader_wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
        }
        if (queue.empty()) break;  // and the reader is done
        item = std::move(queue.front());
        queue.pop_front();
        cv.notify_all();
      }
      ++rec_.records_replayed;
      if (!replay_record(std::move(item), error)) {
        ok = false;
        break;
      }
    }
    {
      std::lock_guard lk(mu);
      stop = true;
      cv.notify_all();
    }
    reader.join();
    if (ok && !reader_ok) {
      ok = false;
      *error = reader_error;
    }
    if (!ok) {
      if (error->empty()) *error = "wal: replay failed";
      send(std::move(replay_pending_), nullptr);
      replay_pending_.clear();
      wait_idle();
      return false;
    }
    send(std::move(replay_pending_), nullptr);
    replay_pending_.clear();
    wait_idle();
    // Every kept row is checked before the engine serves: flush past the last of them.
    if (kept_end_.load() > flushed_serial_.load() && records_->size() >= kept_end_.load()) {
      request_records_flush();
      std::unique_lock lk(ck_mu_);
      ck_done_cv_.wait(lk, [&] { return flushed_serial_.load() >= kept_end_.load() || flush_failed_; });
    }
    if (std::string e = flush_failure(); !e.empty()) {
      *error = e;
      return false;
    }
    replaying_ = false;
    rec_.replay_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    rec_.replay_sequencer_cpu_seconds = cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    rec_.replay_process_cpu_seconds = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) - process_cpu0;
    if (records_->size() < kept_end_.load()) {
      *error = "wal: the snapshot holds " + std::to_string(kept_end_.load()) + " transfer records (serials 0.." +
               std::to_string(kept_end_.load() - 1) + ") but the log replays only " +
               std::to_string(records_->size()) + ": log records are missing" + (sr.torn_tail.empty() ? "" : "; nothing was cut (the scan found " + sr.torn_tail + ")");
      return false;
    }
    storage::wal_position pos = sr.end;
    const std::string cut = sr.torn_tail.empty() ? "" : "; nothing was cut (the scan found " + sr.torn_tail + ")";
    if (sr.records == 0) {
      // No segment under a snapshot: the writer never drops the segment it appends to, nor
      // one whose next segment's first record is not durable, so one always continues the
      // snapshot. None is the log lost (its directory emptied, moved, or not mounted):
      // what was acknowledged after the snapshot cannot be checked, and a start would
      // write other records under its lsns.
      if (snap_lsn != 0 && sr.segments == 0) {
        *error = "wal: " + so.dir + " holds no log segment, but the snapshot is at lsn " + std::to_string(snap_lsn) +
                 ": the log that continues it is missing (its directory emptied, moved or not mounted); what was "
                 "acknowledged after the snapshot cannot be checked" + cut;
        return false;
      }
      // No record: any segment left must continue at the snapshot (it starts the log at
      // the snapshot's next lsn, with its chain).
      if (sr.segments > 0 && (sr.end.next_lsn != snap_lsn + 1 || sr.end.chain != snap_chain)) {
        *error = "wal: the log's segments continue at lsn " + std::to_string(sr.end.next_lsn) +
                 (sr.end.chain != snap_chain ? " with another chain hash" : "") + " but the snapshot is at lsn " +
                 std::to_string(snap_lsn) + ": the log is not the snapshot's history" + cut;
        return false;
      }
      pos.next_lsn = snap_lsn + 1;
      pos.chain = dispatched_chain_;
    } else if (pos.next_lsn <= snap_lsn) {
      *error = "wal: the log ends at lsn " + std::to_string(pos.next_lsn - 1) +
               " before the snapshot's lsn " + std::to_string(snap_lsn) + cut;
      return false;
    }
    // A log with records all at or before the snapshot ends with its chain.
    if (sr.records > 0 && pos.next_lsn == snap_lsn + 1 && snap_lsn != 0 && sr.end.chain != snap_chain) {
      *error = "wal: the log ends at the snapshot's lsn " + std::to_string(snap_lsn) +
               " with another chain hash: this log is not the snapshot's history" + cut;
      return false;
    }
    // Events exist only for records the log made durable: a log ending before the event
    // log's newest record (as kept in events/newest too) lost durable records (damage,
    // not a torn tail).
    if (const uint64_t known = std::max(event_log_last_lsn_, events_newest_); known >= pos.next_lsn) {
      *error = "wal: the log ends at lsn " + std::to_string(pos.next_lsn - 1) +
               " but the event log holds events of records up to lsn " + std::to_string(known) +
               ", which were durable: log records are missing or damaged" + cut;
      return false;
    }
    if (sr.needs_repair() && !storage::repair_wal_tail(so.dir, sr, error)) return false;
    // Groups a crash left written but not synced (never acknowledged) were replayed from
    // the page cache and are served from now on: they are synced before anything after
    // them is acknowledged (the writer goes on in a new segment, whose syncs need not
    // carry this file's pages). Only the last segment can hold such groups: a segment
    // starts with none in flight.
    if (pos.next_segment_index > 0) {
      const std::string last = storage::segment_path(so.dir, pos.next_segment_index - 1);
      const int fd = ::open(last.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 && errno != ENOENT) {
        *error = "wal: cannot open " + last + " to sync the records replayed from it: " + std::strerror(errno);
        return false;
      }
      if (fd >= 0) {
        const bool synced = ::fdatasync(fd) == 0;
        const int e = errno;
        ::close(fd);
        if (!synced) {
          *error = "wal: cannot sync " + last + " (records replayed from it): " + std::strerror(e);
          return false;
        }
      }
    }
    rec_.torn_tail = sr.torn_tail;
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0) {
      *error = "eventfd failed";
      return false;
    }
    storage::wal_options wo;
    wo.dir = so.dir;
    wo.segment_bytes = cfg_.wal_segment_mib << 20;
    wo.group_bytes_max = cfg_.wal_group_mib << 20;
    wo.flights_max = cfg_.wal_flights;
    wal_ = storage::wal_writer::open(wo, pos, wake_fd_, error);
    if (!wal_) return false;
    log_kept_bytes_.store(wal_->kept_bytes(), std::memory_order_relaxed);
    publish_index_stats();  // the index as loaded and replayed (before the sequencer starts)
    rec_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return true;
  }

  // Snapshot synchronously (recovery end and close), with the sequencer not running.
  std::string checkpoint_sync() {
    std::promise<std::string> p;
    auto f = p.get_future();
    auto c = make_cut();
    {
      std::unique_lock lk(ck_mu_);
      ck_done_cv_.wait(lk, [&] { return !checkpoint_running_; });  // one cut at a time
      checkpoint_running_ = true;
      cut_waiters_[c.get()].push_back(std::move(p));
    }
    send({}, std::move(c));
    return f.get();
  }

  void wake() {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }

  // ---- account queries: walk the history chains ------------------------------------

  // Follows `account`'s chain one step back from record `rec`.
  static uint64_t previous(const actors::transfer_record& rec, uint64_t account) {
    return rec.owner_account_id == account ? rec.debit_prev : rec.credit_prev;
  }

  // Whether record `serial` is an applied transfer of `account` (a post's or void's
  // accounts are its pending transfer's).
  bool in_history(uint64_t serial, uint64_t account) {
    const actors::transfer_record rec = record_copy(serial);
    if (rec.result != uint32_t(result::ok)) return false;
    if (rec.owner_account_id == account) return true;
    if (!(rec.t.flags & (wire::transfer_flags::post_pending | wire::transfer_flags::void_pending)))
      return rec.t.credit_account_id == account;
    const int64_t p = ids_.find(rec.t.pending_id, [this](uint64_t s) { return record_id(s); });
    return p >= 0 && record_copy(uint64_t(p)).t.credit_account_id == account;
  }

  // Answers a look-up from the records; the records it read.
  uint64_t walk(engine_batch& b) {
    reply r;
    uint64_t steps = 0;
    if (b.kind == op_kind::lookup_account_transfers) {
      r.pages.resize(b.count);
      for (uint32_t i = 0; i < b.count; ++i) {
        auto& page = r.pages[i];
        const auto& q = b.history_queries[i];
        page.result = b.results[i];
        if (page.result != result::ok) continue;
        if (q.reserved != 0) {
          page.result = result::reserved_field;
          continue;
        }
        if (q.limit == 0 || q.limit > history_page_max) {
          page.result = result::limit_invalid;
          continue;
        }
        uint64_t cursor = q.cursor != 0 ? q.cursor : b.last_serials[i];
        // A client's cursor names a record of this account's history (a page's
        // next_cursor): walking from another's would follow that account's chain.
        if (q.cursor != 0 && (cursor > b.last_serials[i] || !in_history(cursor - 1, q.account_id))) {
          page.result = result::history_cursor_invalid;
          continue;
        }
        while (cursor != 0 && page.records.size() < q.limit) {
          page.records.push_back(record_copy(cursor - 1));
          cursor = previous(page.records.back(), q.account_id);
        }
        steps += page.records.size();
        page.next_cursor = cursor;
      }
    } else {
      r.balances.resize(b.count);
      r.results.assign(b.results.begin(), b.results.end());
      for (uint32_t i = 0; i < b.count; ++i) {
        if (r.results[i] != result::ok) continue;
        const auto& q = b.balance_queries[i];
        if (q.timestamp < b.found_accounts[i].timestamp) {
          r.results[i] = result::account_not_found;  // it did not exist yet
          continue;
        }
        // The request's queries share one budget of history_walk_max records.
        uint64_t cursor = b.last_serials[i];
        bool found = cursor == 0;  // no transfer yet: zero balances
        for (; cursor != 0 && steps < history_walk_max; ++steps) {
          const auto rec = record_copy(cursor - 1);
          if (rec.t.timestamp <= q.timestamp) {
            const bool debit = rec.owner_account_id == q.account_id;
            r.balances[i] = {debit ? rec.debit_after_debits_posted : rec.credit_after_debits_posted,
                             debit ? rec.debit_after_credits_posted : rec.credit_after_credits_posted};
            found = true;
            ++steps;
            break;
          }
          cursor = previous(rec, q.account_id);
        }
        if (!found && cursor != 0) r.results[i] = result::history_walk_limit;
      }
    }
    if (b.kind == op_kind::lookup_account_transfers) {
      r.results.resize(b.count);
      for (uint32_t i = 0; i < b.count; ++i) r.results[i] = r.pages[i].result;
    }
    auto done = std::move(b.user_done);
    if (take_row_damage(done, false)) return steps;
    if (done) done(std::move(r));
    return steps;
  }

  void enqueue(queued&& q, bool wait_for_space = true) {
    size_t queued_now;
    {
      std::unique_lock lk(q_mu_);
      if (wait_for_space) q_space_.wait(lk, [&] { return !accepting_ || q_.size() < cfg_.queue_requests_max; });
      if (!accepting_) {
        lk.unlock();
        reply r;
        r.st = status::stopping;
        q.done(std::move(r));
        return;
      }
      queued_now = q_.size() + 1;
      q_.push_back(std::move(q));
    }
    // Only the request that brings the queue to the sequencer's threshold wakes it: it
    // takes the whole queue when it runs, so the others would only cost it wake-ups.
    if (sleeping_.load() && queued_now == wake_at_.load()) {
      const uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    }
  }

  // ---- equb groups' emissions ----------------------------------------------------

  // A chain a group owes (shard threads, live): sequenced like a request, without a
  // caller and without the queue limit (a shard must never block on the sequencer; the
  // chains in the queue are at most the groups' obligations). Refused while stopping:
  // the obligation stays in the group's state and is sent again at the next start.
  // A rebalance: its plan is read on the wallet's shard (a look-up in the request stream);
  // the orders it makes are then queued as one orders request, whose results (with the
  // orders) answer the caller. The orders are checked at their own place in the log.
  void plan_then_place(queued&& q) {
    queued plan;
    plan.req.kind = op_kind::plan_rebalance;
    plan.req.account_ids = q.req.account_ids;
    plan.done = [this, done = std::move(q.done)](reply&& r) mutable {
      if (r.st != status::ok || r.results.empty() || r.results[0] != result::ok || r.placed.empty()) {
        r.placed.clear();
        done(std::move(r));
        return;
      }
      queued place;
      place.req.kind = op_kind::orders;
      place.req.orders = r.placed;
      place.done = [orders = std::move(r.placed), done = std::move(done)](reply&& pr) mutable {
        pr.placed = std::move(orders);
        done(std::move(pr));
      };
      requeue(std::move(place));
    };
    accept(std::move(plan));
  }

  // The next step of a request made of steps, from the answer to the one before (any
  // thread): queued past the queue's limit (its caller waited for room once), or
  // answered `stopping`.
  void requeue(queued&& q) {
    {
      std::unique_lock lk(q_mu_);
      if (accepting_) {
        q_.push_back(std::move(q));
        lk.unlock();
        if (sleeping_.load()) wake();
        return;
      }
    }
    reply stop;
    stop.st = status::stopping;
    q.done(std::move(stop));
  }

  // ---- group operations' accounts ----------------------------------------------------
  // The accounts a group operation names for its payments: a create's fee account, its
  // guarantor (covering defaults) and organizer (a bidding group's commission), as its
  // rules use them; a replace_account's new account. Each must exist, be open, hold the
  // group's currency and be no group's escrow or gateway's settlement account: taken as
  // they were, every payment a round sent there was refused round after round (the
  // money stayed in escrow), and a guarantor that may go below zero minted its covers.
  // They are looked up first, with each group's escrow (whose id is the group's: its
  // currency is the group's, and a create of a group that exists is the sequencer's to
  // answer, a repeat or exists_with_different_fields, whatever its accounts are now), as
  // look-ups in the request stream of at most batch_ops_max ids each; an operation naming
  // an unfit one is refused here, precisely, and the rest go on. Accounts never change
  // currency or kind and are never removed, so what holds when looked at holds when the
  // operation is sequenced; a close in between is the ledger's to refuse later, as for
  // any account. Replay does not look (the log holds what was taken).
  struct named_account {
    uint64_t id;
    result unfit;
  };
  static std::vector<named_account> accounts_named(const wire::equb_op& op) {
    std::vector<named_account> out;
    if (actors::equb::check_op_fields(op) != result::ok) return out;  // the sequencer says why
    if (op.kind == wire::equb_op_kind::create) {
      out.push_back({op.fee_account_id, result::fee_account_unfit});
      if (op.default_policy == uint8_t(actors::equb::default_policy::cover_from_guarantor) && op.guarantor_account_id)
        out.push_back({op.guarantor_account_id, result::guarantor_account_unfit});
      if (op.rotation == uint8_t(actors::equb::rotation::bidding) && op.commission_bp > 0 && op.organizer_account_id)
        out.push_back({op.organizer_account_id, result::organizer_account_unfit});
    } else if (op.kind == wire::equb_op_kind::replace_account) {
      out.push_back({op.amount, result::replacement_account_unfit});
    }
    std::erase_if(out, [](const named_account& n) { return n.id == 0; });  // the sequencer says why
    return out;
  }

  using found_accounts = std::unordered_map<uint64_t, wire::account, actors::seeded_u64_hash>;

  void check_group_accounts(queued&& q) {
    std::vector<uint64_t> ids;
    for (const auto& op : q.req.equb_ops) {
      const auto named = accounts_named(op);
      for (const auto& n : named) ids.push_back(n.id);
      if (!named.empty()) ids.push_back(op.group_id);
    }
    q.req.equb_accounts_checked = true;
    if (ids.empty()) {
      accept(std::move(q));
      return;
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    look_up_accounts(std::move(q), std::move(ids), 0, std::make_shared<found_accounts>());
  }

  // Looks up ids[from, from + batch_ops_max) into *found, then the rest, then decides q.
  void look_up_accounts(queued&& q, std::vector<uint64_t> ids, size_t from, std::shared_ptr<found_accounts> found) {
    const size_t to = std::min<size_t>(ids.size(), from + batch_ops_max);
    queued look;
    look.req.kind = op_kind::lookup_accounts;
    look.req.account_ids.assign(ids.begin() + ptrdiff_t(from), ids.begin() + ptrdiff_t(to));
    look.done = [this, q = std::move(q), ids = std::move(ids), from, to, found](reply&& r) mutable {
      if (r.st != status::ok) {
        q.done(std::move(r));
        return;
      }
      for (size_t i = 0; i < to - from && i < r.results.size(); ++i)
        if (r.results[i] == result::ok) (*found)[ids[from + i]] = r.accounts[i];
      if (to < ids.size()) {
        look_up_accounts(std::move(q), std::move(ids), to, found);
        return;
      }
      decide_group_accounts(std::move(q), *found);
    };
    requeue(std::move(look));
  }

  // Queues q with the operations naming fit accounts, each refused one answered in its
  // place (or answers q, if none is left).
  void decide_group_accounts(queued&& q, const found_accounts& found) {
    std::vector<result> early(q.req.equb_ops.size(), result::ok);
    std::vector<wire::equb_op> go;
    std::unordered_map<uint64_t, wire::currency_code, actors::seeded_u64_hash> created;  // by a create earlier in q
    for (size_t i = 0; i < q.req.equb_ops.size(); ++i) {
      const wire::equb_op& op = q.req.equb_ops[i];
      const auto named = accounts_named(op);
      const auto escrow = found.find(op.group_id);
      const bool exists = escrow != found.end();  // a group, or an account that is not one
      wire::currency_code currency = op.currency;  // a create's own
      bool look = !named.empty();
      if (op.kind == wire::equb_op_kind::create && exists) look = false;  // the sequencer's to answer
      if (op.kind == wire::equb_op_kind::replace_account && look) {
        if (exists && escrow->second.kind == wire::account_kind::group_escrow) {
          currency = escrow->second.currency;
        } else if (const auto c = created.find(op.group_id); !exists && c != created.end()) {
          currency = c->second;
        } else {
          early[i] = result::group_not_found;
          continue;
        }
      }
      if (look)
        for (const auto& n : named) {
          const auto it = found.find(n.id);
          const wire::account* a = it == found.end() ? nullptr : &it->second;
          if (!a || a->status == wire::account_status::closed || a->kind == wire::account_kind::group_escrow ||
              a->kind == wire::account_kind::gateway_settlement || a->currency != currency) {
            early[i] = n.unfit;
            break;
          }
        }
      if (early[i] != result::ok) continue;
      if (op.kind == wire::equb_op_kind::create && !exists) created.emplace(op.group_id, op.currency);
      go.push_back(op);
    }
    auto merge = [early = std::move(early), done = std::move(q.done)](reply&& rr) mutable {
      if (rr.st != status::ok) {
        done(std::move(rr));
        return;
      }
      reply out = std::move(rr);
      std::vector<result> taken = std::move(out.results);
      out.results = std::move(early);
      size_t k = 0;
      for (auto& res : out.results)
        if (res == result::ok) res = k < taken.size() ? taken[k++] : result::ok;
      done(std::move(out));
    };
    if (go.empty()) {
      merge(reply{});
      return;
    }
    queued next;
    next.req = std::move(q.req);
    next.req.equb_ops = std::move(go);
    next.done = std::move(merge);
    requeue(std::move(next));
  }

  void enqueue_emitted(std::vector<wire::transfer>&& chain) {
    queued q;
    q.req.kind = op_kind::create_transfers;
    q.req.transfers = std::move(chain);
    q.done = [](reply&&) {};
    q.emitted = true;
    {
      std::lock_guard lk(q_mu_);
      if (!accepting_) return;
      q_.push_back(std::move(q));
    }
    if (sleeping_.load()) wake();
  }

  // After recovery, before the sequencer runs: every obligation that no log record
  // carried (replay settled the others) is sent again, and live emission starts. Refused
  // ones wait for a retry, and forwards or dividends held back for a cover the ledger has
  // not carried wait for it.
  void start_emissions() {
    // By group id, then step, not in the groups tables' order: which of two groups
    // sharing an underfunded guarantor is covered first must not rest on a hash table's
    // layout after a snapshot's load.
    std::vector<std::tuple<uint64_t, uint32_t, queued>> owed;
    for (auto& sh : shards_) {
      sh->groups().for_each([&](const actors::equb::group_entry& g) {
        for (const auto& o : g.owed) {
          if (!actors::equb::in_flight(o)) continue;
          queued q;
          q.req.kind = op_kind::create_transfers;
          q.req.transfers = actors::equb::chain_of(g, o, shards_n_);
          q.done = [](reply&&) {};
          q.emitted = true;
          owed.emplace_back(g.g.cfg.group_id, o.first_step, std::move(q));
        }
      });
      sh->groups().set_emit([this](std::vector<wire::transfer>&& chain) { enqueue_emitted(std::move(chain)); });
    }
    std::sort(owed.begin(), owed.end(), [](const auto& x, const auto& y) {
      return std::tie(std::get<0>(x), std::get<1>(x)) < std::tie(std::get<0>(y), std::get<1>(y));
    });
    std::vector<queued> again;
    for (auto& o : owed) again.push_back(std::move(std::get<2>(o)));
    rec_.groups_reemitted = again.size();
    // Payout desks: their chains no log record carried, then live sinks. No gateway has a
    // session after a start: a logged reset says so first (routing follows the log).
    std::vector<queued> desk_chains;
    for (auto& sh : shards_) {
      for (auto& chain : sh->desks().chains_owed()) {
        queued q;
        q.req.kind = op_kind::create_transfers;
        q.req.transfers = std::move(chain);
        q.done = [](reply&&) {};
        q.emitted = true;
        desk_chains.push_back(std::move(q));
      }
      sh->desks().set_emit([this](std::vector<wire::transfer>&& chain) { enqueue_emitted(std::move(chain)); });
      actors::shard* s = sh.get();
      sh->desks().set_instruct([this, s](uint32_t gateway, std::vector<wire::payout_instruction>&& list) {
        const auto* g = s->desks().registry()->find(gateway);
        engine::instruction_sink sink;
        {
          std::lock_guard lk(sink_mu_);
          sink = sink_;
        }
        if (g && sink) sink(g->id, std::move(list));
      });
    }
    rec_.payout_chains_reemitted = desk_chains.size();
    // Portfolios: their settlements no log record carried, then live sinks.
    std::vector<queued> order_chains;
    for (auto& sh : shards_) {
      for (auto& chain : sh->trading().chains_owed()) {
        queued q;
        q.req.kind = op_kind::create_transfers;
        q.req.transfers = std::move(chain);
        q.done = [](reply&&) {};
        q.emitted = true;
        order_chains.push_back(std::move(q));
      }
      sh->trading().set_emit([this](std::vector<wire::transfer>&& chain) { enqueue_emitted(std::move(chain)); });
      actors::shard* s = sh.get();
      sh->trading().set_instruct([this, s](uint32_t gateway, std::vector<wire::order_instruction>&& list) {
        const auto* g = s->desks().registry()->find(gateway);
        engine::order_sink sink;
        {
          std::lock_guard lk(sink_mu_);
          sink = order_sink_;
        }
        if (g && sink) sink(g->id, std::move(list));
      });
    }
    rec_.order_chains_reemitted = order_chains.size();
    // The payout accounts this shard count's desks need and an earlier start (with
    // another shard count) did not make; before any payout can ask for them.
    // The currencies served, and those of groups whose seats send payouts on (their holds
    // need this count's accounts even if no gateway serves the currency now: the desk
    // then waits for a route, as for any payout).
    std::vector<wire::currency_code> currencies;
    for (const auto& g : registry_->all())
      for (const auto& gc : g.currencies) currencies.push_back(gc.currency);
    for (auto& sh : shards_)
      sh->groups().for_each([&](const actors::equb::group_entry& e) {
        for (const auto& st : e.g.seats)
          if (st.payout_rail != 0) {
            currencies.push_back(e.g.cfg.currency);
            break;
          }
      });
    std::sort(currencies.begin(), currencies.end());
    currencies.erase(std::unique(currencies.begin(), currencies.end()), currencies.end());
    std::vector<wire::account> missing;
    for (const auto c : currencies)
      for (const auto& a : desk_accounts(c))
        if (!shards_[shard_of(a.id, shards_n_)]->find_account(a.id)) missing.push_back(a);
    // The trading accounts of the instruments' currencies for this shard count.
    std::vector<wire::currency_code> traded;
    seq_market_.for_each([&](const actors::market::instrument& in) { traded.push_back(in.def.currency); });
    std::sort(traded.begin(), traded.end());
    traded.erase(std::unique(traded.begin(), traded.end()), traded.end());
    for (const auto c : traded) {
      trading_currencies_.insert(c);
      for (const auto& a : trading_accounts(c))
        if (!shards_[shard_of(a.id, shards_n_)]->find_account(a.id)) missing.push_back(a);
    }
    std::lock_guard lk(q_mu_);
    // A resume marker before anything else, when anything runs on the engine's up time:
    // any logged batch closes the rounds due by its time, and those that fell due while
    // the engine was down are rescheduled first (actors/equb_rules.hpp, reschedule);
    // payouts and orders waiting for a gateway or a broker have their wait moved by the
    // downtime (rules_reset_keeps_route_wait), and ending orders their day
    // (rules_orders_downtime). It runs no desk, market or broker timer (shard::execute):
    // the reset below comes first for those. (Logged only when a group was active, a
    // start with none let the downtime count against the others: a payout waiting 3
    // minutes, 8 down, was a dead letter at the reset. Not at every start: a start that
    // logs a record where nothing needs one moves a --no-events run's snapshot past the
    // event log's covered mark.)
    bool up_time = false;
    for (auto& sh : shards_) {
      sh->groups().for_each([&](const actors::equb::group_entry& e) { up_time |= e.g.ph == actors::equb::phase::active; });
      up_time |= sh->trading().orders_on_up_time() || sh->desks().waiting_for_a_gateway();
    }
    if (up_time && last_ts_ != 0) {
      queued marker;
      marker.req.kind = op_kind::tick;
      marker.req.resumed_after = last_ts_;
      marker.done = [](reply&&) {};
      q_.push_back(std::move(marker));
    }
    // The reset next: a batch before it would run the desks' timers against the sessions
    // the snapshot held (every payout overdue while the engine was down timing out at
    // gateways that have no session, their breakers counting it).
    if (registry_->size() > 0) {
      queued reset;
      reset.req.kind = op_kind::gateway_events;
      reset.req.gateway_events = {wire::gateway_event{0, wire::gateway_event_kind::reset, {}}};
      reset.done = [](reply&&) {};
      q_.push_back(std::move(reset));
    }
    if (!missing.empty()) {
      queued q;
      q.req.kind = op_kind::create_accounts;
      q.req.accounts = std::move(missing);
      q.req.gateway_internal = true;
      q.done = [](reply&& r) {
        for (size_t i = 0; r.st == status::ok && i < r.results.size(); ++i)
          if (r.results[i] != result::ok)
            std::fprintf(stderr, "mesobd: making a payout account: %s\n", std::string(wire::result_name(r.results[i])).c_str());
      };
      q_.push_back(std::move(q));
    }
    for (auto& q : again) q_.push_back(std::move(q));
    for (auto& q : desk_chains) q_.push_back(std::move(q));
    for (auto& q : order_chains) q_.push_back(std::move(q));
  }
  std::mutex sink_mu_;
  engine::instruction_sink sink_;
  engine::order_sink order_sink_;
  uint64_t snapshot_payouts_ = 0;  // payouts the snapshot held (recovery)

  bool closed_ = false;

  void close() {
    if (closed_) return;
    closed_ = true;
    {
      std::lock_guard lk(q_mu_);
      accepting_ = false;
    }
    q_space_.notify_all();
    stop_.store(true);
    if (wake_fd_ >= 0) {
      const uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    }
    if (seq_thread_.joinable()) seq_thread_.join();
    wait_idle();
    if (event_hub_) event_hub_->stop();
    // Callers of checkpoint() no cut took (the sequencer's last pass found one running):
    // they get the final checkpoint's outcome, or why there is none; later ones are
    // answered at once.
    std::vector<std::promise<std::string>> unserved;
    {
      std::lock_guard lk(ck_mu_);
      checkpoints_closed_ = true;
      unserved.swap(checkpoint_waiters_);
    }
    std::string last = failed_ ? "storage failed: the engine closed without a checkpoint"
                               : "the engine closed without a checkpoint";
    if (writes_refused_.load()) {
      std::lock_guard lk(refused_mu_);
      close_why_ = "writes were refused until restart (" + refused_why_ + ")";
    }
    if (!failed_ && wal_ && !shard_actors_.empty() && cfg_.checkpoint_on_close) {
      last = checkpoint_sync();
      if (!last.empty()) {
        std::fprintf(stderr, "mesobd: final checkpoint failed: %s\n", last.c_str());
        if (close_why_.empty()) close_why_ = "the final checkpoint failed (" + last + ")";
      } else {
        wal_->drop_segments_before(snapshot_lsn_.load() + 1);
      }
    }
    for (auto& p : unserved) p.set_value(last);
    stop_threads();
    // Every thread that read or wrote the snapshot has stopped. LMDB must not have one
    // file open twice in a process (closing either drops the other's fcntl locks), so
    // the store closes here, not at destruction: an engine opened on this directory
    // after close() is then the only one holding it.
    {
      std::unique_lock lk(snap_read_mu_);  // a caller's lookup_recon reading it finishes first
      snap_.reset();
    }
    lock_.release();  // nothing in the directory is written after this: another engine may open it
  }

  void stop_threads() {
    ids_.abandon_growth();
    {
      std::lock_guard lk(ck_mu_);
      ck_stop_ = true;
    }
    ck_cv_.notify_all();
    if (ck_thread_.joinable()) ck_thread_.join();
    for (auto& a : shard_actors_) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    shard_actors_.clear();
    if (sys_) sys_->await_all_actors_done();
    {
      // A cut the shards were still copying when the checkpoint thread stopped (a close
      // without a final checkpoint) never reaches it: its callers are answered here, not
      // left waiting (or thrown a broken promise when the engine goes).
      std::lock_guard lk(ck_mu_);
      for (auto& [cut, waiters] : cut_waiters_)
        for (auto& p : waiters) p.set_value("the engine closed before this checkpoint was written");
      cut_waiters_.clear();
      checkpoint_running_ = false;
    }
    if (event_hub_) event_hub_->stop();
    if (event_writer_) {
      event_writer_->stop();  // after the shards: every group is posted, written and synced
    }
    {
      std::lock_guard vl(verify_mu_);  // verify_log holds the log's deletions while it scans
      wal_.reset();
    }
    if (wake_fd_ >= 0) ::close(wake_fd_);
    wake_fd_ = -1;
  }

  ~engine_impl() {
    if (!closed_) {
      closed_ = true;
      stop_.store(true);
      if (seq_thread_.joinable()) {
        const uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
        seq_thread_.join();
      }
      wait_idle();
      stop_threads();
    }
  }
};

// ---------------------------------------------------------------------------------

engine::engine(std::unique_ptr<engine_impl> impl) : impl_(std::move(impl)) {}
engine::~engine() { close(); }

std::unique_ptr<engine> engine::open(const config& cfg, std::string* error) {
  error->clear();  // failures below that add to a message must not add to a caller's old one
  if (auto problem = cfg.validate(); !problem.empty()) {
    *error = "config: " + problem;
    return nullptr;
  }
  auto impl = std::make_unique<engine_impl>();
  auto& e = *impl;
  e.cfg_ = cfg;
  e.shards_n_ = cfg.shard_count();
  if (!mkdirs(cfg.data_dir, error) || !e.lock_.take(cfg.data_dir, error) || !mkdirs(cfg.data_dir + "/wal", error) ||
      !mkdirs(cfg.data_dir + "/snapshot", error))
    return nullptr;
  e.records_ = std::make_unique<actors::record_store>(cfg.transfers_resident_max);
  for (uint32_t i = 0; i < e.shards_n_; ++i)
    e.shards_.push_back(std::make_unique<actors::shard>(i, e.shards_n_, *e.records_, cfg.accounts_hint));
  e.snap_ = storage::snapshot_store::open(cfg.data_dir + "/snapshot", cfg.snapshot_map_gib << 30, error);
  if (!e.snap_) return nullptr;
  for (auto& sh : e.shards_) sh->set_resolved_reader([&e](uint64_t serial, actors::pending_info* out) {
    return e.read_resolved_pending(serial, out);
  });

  if (cfg.events) {
    storage::event_log_options eo;
    eo.dir = cfg.data_dir + "/events";
    eo.segment_events = cfg.events_segment_events;
    eo.ring_events = cfg.events_ring_events;
    eo.retention_bytes = cfg.events_retention_mib << 20;
    eo.retention_ns = cfg.events_retention_s * 1'000'000'000ull;
    if (!engine_impl::read_events_covered(e.events_covered_path(), &e.covered_, error)) return nullptr;
    eo.synced_end = e.covered_.offset;
    storage::event_log_recovery er;
    e.event_log_ = storage::event_log::open(eo, &er, error);
    if (!e.event_log_) return nullptr;
    if (!er.torn_tail.empty()) std::fprintf(stderr, "mesobd: event log: torn tail cut: %s\n", er.torn_tail.c_str());
    e.event_log_last_lsn_ = er.last_lsn;
    e.event_writer_ = std::make_unique<event_writer>(
        *e.event_log_, er.last_lsn,
        [&e](uint64_t serial) {
          actors::transfer_record r;
          std::string err;
          // An expiry's event still goes out (the money moved), with a zero id; the
          // operator is told and the row counted.
          if (!record_rows::get(*e.snap_, serial, &r, &err)) {
            e.rows_unreadable_.fetch_add(1, std::memory_order_relaxed);
            std::fprintf(stderr, "mesobd: events: the id of transfer serial %llu is not in the snapshot (%s): its event has a zero id\n",
                         static_cast<unsigned long long>(serial), err.empty() ? "no row" : err.c_str());
            return wire::id128{};
          }
          return r.t.id;
        },
        1000);
    e.event_hub_ = std::make_unique<event_hub>(*e.event_log_, *e.event_writer_, eo.dir + "/subscribers.state",
                                               cfg.subscriptions_max, cfg.events_windows_mib << 20);
    if (!e.event_hub_->load(error)) return nullptr;
    for (auto& sh : e.shards_) sh->keep_expired(true);
  }

  e.caf_cfg_ = std::make_unique<caf::actor_system_config>();
  // Shards run detached (a thread each); the scheduler only hosts the short-lived
  // actors of later subsystems, so one worker suffices (engine/README.md).
  e.caf_cfg_->set("scheduler.max-threads", 1);
  e.caf_cfg_->set("logger.verbosity", caf::atom("quiet"));
  e.sys_ = std::make_unique<caf::actor_system>(*e.caf_cfg_);
  const bool pin = cfg.pin_shards && e.shards_n_ <= std::max(1u, std::thread::hardware_concurrency());
  for (uint32_t i = 0; i < e.shards_n_; ++i)
    e.shard_actors_.push_back(actors::spawn_shard_actor(*e.sys_, e.shards_[i].get(), pin ? int(i) : -1));
  e.ck_thread_ = std::thread([&e] {
    pthread_setname_np(pthread_self(), "mesob.checkpt");
    e.checkpoint_loop();
  });

  if (!e.recover(error)) {
    e.closed_ = true;
    e.stop_threads();
    return nullptr;
  }
  const std::string desks_why = e.desks_disagree();  // after the log's replay
  e.snap_->release_pages();
  if (const std::string& why = desks_why; !why.empty()) {
    *error = "recovery: payouts: " + why;
    e.closed_ = true;
    e.stop_threads();
    return nullptr;
  }
  if (const std::string why = e.portfolios_disagree(); !why.empty()) {
    *error = "recovery: orders: " + why;
    e.closed_ = true;
    e.stop_threads();
    return nullptr;
  }
  if (!e.note_shard_count(error)) {
    e.closed_ = true;
    e.stop_threads();
    return nullptr;
  }
  e.start_emissions();
  for (auto& sh : e.shards_) sh->publish_loaded();
  // Replayed records stay in the log until the next checkpoint covers them. The clock
  // from here on: not before the log's last time, whatever the wall clock says.
  e.clock_.hold_at_least(e.last_ts_ + 1);
  e.last_checkpoint_ns_ = e.now();
  {
    std::lock_guard lk(e.ck_mu_);
    e.flush_retry_ = true;  // live from here: a failed records flush is tried again
  }
  e.ck_cv_.notify_all();
  e.seq_thread_ = std::thread([&e] {
    pthread_setname_np(pthread_self(), "mesob.sequencer");
    e.run();
  });
  const bool count_changed = e.other_count_ != 0;
  auto out = std::unique_ptr<engine>(new engine(std::move(impl)));
  // A start with another shard count snapshots at once: a crash before its first
  // checkpoint must not leave records its routing decided to a replay under the old count.
  if (count_changed) {
    std::string err;
    if (!out->checkpoint(&err)) {
      *error = "recovery: the checkpoint after a start with another shard count failed: " + err;
      return nullptr;
    }
  }
  return out;
}

void engine::submit(request&& r, std::function<void(reply&&)> done, bool wait_for_space) {
  impl_->enqueue({std::move(r), std::move(done)}, wait_for_space);
}

reply engine::call(request&& r) {
  std::promise<reply> p;
  auto f = p.get_future();
  submit(std::move(r), [&p](reply&& rep) { p.set_value(std::move(rep)); });
  return f.get();
}

std::optional<reply> engine::call_within(request&& r, std::chrono::milliseconds wait,
                                         std::shared_ptr<std::atomic<bool>> answered) {
  struct slot {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<reply> r;
  };
  auto s = std::make_shared<slot>();
  submit(std::move(r), [s, answered = std::move(answered)](reply&& rep) {
    {
      std::lock_guard lk(s->mu);
      s->r = std::move(rep);
    }
    if (answered) answered->store(true);
    s->cv.notify_all();
  }, /*wait_for_space=*/false);
  std::unique_lock lk(s->mu);
  if (!s->cv.wait_for(lk, wait, [&] { return s->r.has_value(); })) return std::nullopt;
  return std::move(s->r);
}

namespace {
template <class T>
reply call_with(engine& e, op_kind kind, std::vector<T> request::*field, std::vector<T> ops) {
  request r;
  r.kind = kind;
  r.*field = std::move(ops);
  return e.call(std::move(r));
}
}  // namespace

reply engine::create_accounts(std::vector<wire::account> a) {
  return call_with(*this, op_kind::create_accounts, &request::accounts, std::move(a));
}
reply engine::create_transfers(std::vector<wire::transfer> t) {
  return call_with(*this, op_kind::create_transfers, &request::transfers, std::move(t));
}
reply engine::set_account_status(std::vector<wire::account_status_change> c) {
  return call_with(*this, op_kind::set_account_status, &request::status_changes, std::move(c));
}
reply engine::lookup_accounts(std::vector<uint64_t> ids) {
  return call_with(*this, op_kind::lookup_accounts, &request::account_ids, std::move(ids));
}
reply engine::lookup_transfers(std::vector<wire::id128> ids) {
  return call_with(*this, op_kind::lookup_transfers, &request::transfer_ids, std::move(ids));
}
reply engine::lookup_account_transfers(std::vector<history_query> q) {
  return call_with(*this, op_kind::lookup_account_transfers, &request::history_queries, std::move(q));
}
reply engine::lookup_balances_as_of(std::vector<balance_query> q) {
  return call_with(*this, op_kind::lookup_balances_as_of, &request::balance_queries, std::move(q));
}
reply engine::equb(std::vector<wire::equb_op> ops) {
  return call_with(*this, op_kind::equb_ops, &request::equb_ops, std::move(ops));
}
reply engine::lookup_groups(std::vector<uint64_t> group_ids) {
  return call_with(*this, op_kind::lookup_groups, &request::account_ids, std::move(group_ids));
}

reply engine::instruments(std::vector<wire::instrument_op> ops) {
  return call_with(*this, op_kind::instrument_ops, &request::instrument_ops, std::move(ops));
}

reply engine::prices(std::vector<wire::price> p) { return call_with(*this, op_kind::prices, &request::prices, std::move(p)); }

reply engine::lookup_instruments(std::vector<uint64_t> ids) {
  return call_with(*this, op_kind::lookup_instruments, &request::account_ids, std::move(ids));
}

reply engine::customers(std::vector<wire::customer_op> ops) {
  return call_with(*this, op_kind::customer_ops, &request::customer_ops, std::move(ops));
}

reply engine::policies(std::vector<wire::policy_op> ops) {
  return call_with(*this, op_kind::policy_ops, &request::policy_ops, std::move(ops));
}

reply engine::lookup_customers(std::vector<uint64_t> wallets) {
  return call_with(*this, op_kind::lookup_customers, &request::account_ids, std::move(wallets));
}

reply engine::lookup_policy() {
  request r;
  r.kind = op_kind::lookup_policy;
  return call(std::move(r));
}

reply engine::deposit(const std::string& gateway, std::vector<wire::deposit> deposits) {
  request r;
  r.kind = op_kind::deposits;
  r.gateway = gateway;
  r.deposits = std::move(deposits);
  return call(std::move(r));
}

event_hub* engine::events() { return impl_->event_hub_.get(); }

event_stats engine::events_stats() {
  event_stats st;
  auto& e = *impl_;
  if (!e.event_writer_) return st;
  st.kept = true;
  st.failed = e.event_writer_->failed();
  if (st.failed) st.error = e.event_writer_->error();
  st.first_offset = e.event_log_->first_offset();
  st.end_offset = e.event_log_->written_end();
  st.bytes = e.event_log_->bytes();
  const auto c = e.event_writer_->counters();
  st.events_written = c.events;
  st.syncs = c.syncs;
  st.sync_ns = c.sync_ns;
  st.backlog = c.backlog;
  st.lsn = c.lsn;
  return st;
}

std::shared_ptr<const actors::gateways::registry> engine::gateway_registry() const {
  return impl_->published_registry();
}

reply engine::payouts(std::vector<wire::payout> p) {
  return call_with(*this, op_kind::payouts, &request::payouts, std::move(p));
}

reply engine::payout_answers(const std::string& gateway, std::vector<wire::payout_answer> a) {
  request r;
  r.kind = op_kind::payout_answers;
  r.gateway = gateway;
  r.payout_answers = std::move(a);
  return call(std::move(r));
}

void engine::gateway_event(wire::gateway_event e, std::function<void(reply&&)> done) {
  request r;
  r.kind = op_kind::gateway_events;
  r.gateway_events = {e};
  submit(std::move(r), done ? std::move(done) : [](reply&&) {}, false);
}

reply engine::payout_ops(std::vector<wire::payout_op> ops) {
  return call_with(*this, op_kind::payout_ops, &request::payout_ops, std::move(ops));
}

request engine::payouts_query(uint64_t payout_id, size_t limit, bool problems_only, bool with_rows, uint64_t from_id,
                              bool breakers_only) {
  request r;
  r.kind = op_kind::lookup_payouts;
  r.account_ids = {payout_id, limit, problems_only ? 1u : 0u, with_rows ? 1u : 0u, from_id, breakers_only ? 1u : 0u, 0, 0};
  return r;
}

reply engine::lookup_payouts(uint64_t payout_id, size_t limit, bool problems_only, bool with_rows, uint64_t from_id,
                             bool breakers_only) {
  return call(payouts_query(payout_id, limit, problems_only, with_rows, from_id, breakers_only));
}

reply engine::lookup_recon(uint32_t gateway, std::optional<uint32_t> day, std::string* error) {
  using actors::payouts::recon_key;
  error->clear();
  request q;
  q.kind = op_kind::lookup_payouts;
  q.account_ids = {0, 0, 0, 0, 0, 0, gateway, day ? uint64_t(*day) + 1 : 0};
  reply r = call(std::move(q));
  // Rows' keys hold 20 bits of day (engine time reaches them in the year 4840).
  if (r.st != status::ok || (day && *day >= 0xFFFFF)) return r;
  // Days past what the shards keep in memory are final in the snapshot: its rows of keys
  // the shards do not have (a key in memory holds its whole total).
  std::set<recon_key> held;
  for (const auto& row : r.recon) held.insert(row.k);
  const uint64_t begin = actors::payouts::recon_row_key(recon_key{gateway, day.value_or(0), 0});
  const uint64_t end = day ? actors::payouts::recon_row_key(recon_key{gateway, *day + 1, 0})
                           : actors::payouts::recon_row_key(recon_key{gateway + 1, 0, 0});
  std::string why;
  std::shared_lock lk(impl_->snap_read_mu_);
  if (!impl_->snap_) {  // closed meanwhile
    r.st = status::stopping;
    return r;
  }
  const bool ok = impl_->snap_->scan(storage::table::recon, [&](uint64_t key, std::span<const uint8_t> v) {
    actors::payouts::recon_row row;
    if (!actors::payouts::decode_recon(key, v, &row, &why)) return false;
    if (!held.contains(row.k)) r.recon.push_back(row);
    return true;
  }, error, end, begin);
  if (!ok && !why.empty()) *error = "snapshot: " + why;
  std::sort(r.recon.begin(), r.recon.end(), [](const auto& x, const auto& y) { return x.k < y.k; });
  return r;
}

reply engine::orders(std::vector<wire::order> o) {
  return call_with(*this, op_kind::orders, &request::orders, std::move(o));
}

reply engine::order_answers(const std::string& broker, std::vector<wire::order_answer> a) {
  request r;
  r.kind = op_kind::order_answers;
  r.gateway = broker;
  r.order_answers = std::move(a);
  return call(std::move(r));
}

reply engine::rebalance(uint64_t wallet, uint64_t first_order_id, uint32_t drift_bp, uint32_t slippage_bp,
                        uint32_t expires_s) {
  request r;
  r.kind = op_kind::rebalance;
  r.account_ids = {wallet, first_order_id, drift_bp, slippage_bp, expires_s, 0};
  return call(std::move(r));
}

reply engine::cancel_orders(std::vector<wire::order_cancel> c) {
  return call_with(*this, op_kind::order_cancels, &request::order_cancels, std::move(c));
}

reply engine::retry_orders(std::vector<wire::order_cancel> c, bool force) {
  return call_with(*this, force ? op_kind::order_retries_forced : op_kind::order_retries, &request::order_cancels,
                   std::move(c));
}

reply engine::lookup_positions(std::vector<uint64_t> wallets) {
  return call_with(*this, op_kind::lookup_positions, &request::account_ids, std::move(wallets));
}

reply engine::lookup_orders(std::vector<uint64_t> ids) {
  return call_with(*this, op_kind::lookup_orders, &request::account_ids, std::move(ids));
}

void engine::set_order_sink(order_sink s) {
  std::lock_guard lk(impl_->sink_mu_);
  impl_->order_sink_ = std::move(s);
}

void engine::set_instruction_sink(instruction_sink s) {
  std::lock_guard lk(impl_->sink_mu_);
  impl_->sink_ = std::move(s);
}

// Settlement accounts first: each one an op names must be a gateway settlement account in
// its currency; absent ones are created so, for ops that pass every check. Accounts
// never change kind or currency and are never removed, so what holds here still holds
// when the change is sequenced.
reply engine::gateways(std::vector<wire::gateway_op> ops) {
  reply out;
  if (ops.size() > gateway_ops_max) {
    out.st = status::batch_too_large;
    return out;
  }
  out.results.assign(ops.size(), result::ok);
  auto names_accounts = [](const wire::gateway_op& op) {
    return (op.kind == wire::gateway_op_kind::register_gateway || op.kind == wire::gateway_op_kind::update) &&
           actors::gateways::check_op_fields(op) == result::ok;
  };
  std::vector<uint64_t> ids;
  for (const auto& op : ops)
    if (names_accounts(op))
      for (uint32_t c = 0; c < op.currencies_n; ++c) ids.push_back(op.currencies[c].settlement_account_id);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::unordered_map<uint64_t, wire::account, actors::seeded_u64_hash> found;
  if (!ids.empty()) {
    reply r = lookup_accounts(ids);
    if (r.st != status::ok) return r;
    for (size_t i = 0; i < ids.size(); ++i)
      if (r.results[i] == result::ok) found[ids[i]] = r.accounts[i];
  }
  // Each op in order: its settlement accounts checked (as found, or as made for an
  // earlier op of the call), then the registry's own checks on a copy holding the earlier
  // ops that passed (exists, not found, full, an account another gateway settles to),
  // and only then its accounts made: each currency's payout accounts (the desks',
  // engine-made, in the reserved range), then its new settlement accounts. Accounts are
  // never removed, so one made for a change then refused would stay for good; an op
  // whose accounts cannot be made is not applied to the copy, so later ops are judged
  // without it. The sequencer decides again; only an operator's change racing this one
  // can differ, and the admin port makes them one at a time.
  actors::gateways::registry ahead = *gateway_registry();
  std::unordered_map<uint64_t, wire::currency_code, actors::seeded_u64_hash> creating;
  for (size_t i = 0; i < ops.size(); ++i) {
    std::vector<wire::account> mine;
    if (names_accounts(ops[i])) {
      for (uint32_t c = 0; c < ops[i].currencies_n; ++c) {
        const auto& gc = ops[i].currencies[c];
        if (const auto it = found.find(gc.settlement_account_id); it != found.end()) {
          if (it->second.kind != wire::account_kind::gateway_settlement || it->second.currency != gc.currency)
            out.results[i] = result::settlement_account_invalid;
        } else if (const auto cr = creating.find(gc.settlement_account_id); cr != creating.end()) {
          if (cr->second != gc.currency) out.results[i] = result::settlement_account_invalid;
        } else if (std::none_of(mine.begin(), mine.end(), [&](const auto& m) { return m.id == gc.settlement_account_id; })) {
          wire::account a{};
          a.id = gc.settlement_account_id;
          a.currency = gc.currency;
          a.kind = wire::account_kind::gateway_settlement;
          // Refused here, before any account of the op is made: one made beside it would
          // stay for good.
          if (const result r = account_refusal(a, false); r != result::ok) out.results[i] = r;
          mine.push_back(a);
        }
      }
    }
    if (out.results[i] != result::ok) continue;
    actors::gateways::registry next = ahead;
    if (const result r = next.apply(ops[i], 0); r != result::ok) {
      out.results[i] = r;
      continue;
    }
    if (names_accounts(ops[i])) {
      std::vector<wire::account> payout_accounts;
      for (uint32_t c = 0; c < ops[i].currencies_n; ++c)
        for (const auto& a : impl_->desk_accounts(ops[i].currencies[c].currency))
          if (std::none_of(payout_accounts.begin(), payout_accounts.end(), [&](const auto& x) { return x.id == a.id; }))
            payout_accounts.push_back(a);
      request q;
      q.kind = op_kind::create_accounts;
      q.accounts = payout_accounts;
      q.gateway_internal = true;
      reply r = call(std::move(q));
      if (r.st != status::ok) return r;
      if (std::any_of(r.results.begin(), r.results.end(), [](result x) { return x != result::ok; })) {
        out.results[i] = result::currencies_invalid;
        continue;
      }
      if (!mine.empty()) {
        r = create_accounts(mine);
        if (r.st != status::ok) return r;
        if (std::any_of(r.results.begin(), r.results.end(), [](result x) { return x != result::ok; })) {
          // Say, an id in use since; or the engine holds all the accounts it may.
          const bool full = std::find(r.results.begin(), r.results.end(), result::accounts_full) != r.results.end();
          out.results[i] = full ? result::accounts_full : result::settlement_account_invalid;
          continue;
        }
      }
    }
    ahead = std::move(next);
    for (const auto& a : mine) creating[a.id] = a.currency;
  }
  request q;
  q.kind = op_kind::gateway_ops;
  q.gateway_accounts_checked = true;
  std::vector<size_t> placed;
  for (size_t i = 0; i < ops.size(); ++i)
    if (out.results[i] == result::ok) {
      placed.push_back(i);
      q.gateway_ops.push_back(ops[i]);
    }
  if (placed.empty()) return out;
  reply r = call(std::move(q));
  if (r.st != status::ok) return r;
  for (size_t k = 0; k < placed.size(); ++k) out.results[placed[k]] = r.results[k];
  out.timestamp_base = r.timestamp_base;
  out.lsn = r.lsn;
  return out;
}

bool engine::checkpoint(std::string* error) {
  std::promise<std::string> p;
  auto f = p.get_future();
  {
    std::lock_guard lk(impl_->ck_mu_);
    if (impl_->checkpoints_closed_) {
      *error = "the engine is closed";
      return false;
    }
    impl_->checkpoint_waiters_.push_back(std::move(p));
    impl_->checkpoint_requested_ = true;
  }
  if (impl_->sleeping_.load()) {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(impl_->wake_fd_, &one, sizeof one);
  }
  *error = f.get();
  return error->empty();
}

std::string engine::close() {
  if (!impl_) return {};
  impl_->close();
  return impl_->close_why_;
}

const recovery_report& engine::recovery() const { return impl_->rec_; }
uint32_t engine::shards() const { return impl_->shards_n_; }

engine_stats engine::stats() {
  engine_stats s;
  for (auto& sh : impl_->shards_) {
    const auto st = sh->stats();
    s.accounts += st.accounts;
    s.groups += st.groups;
    s.accounts_share_used = std::max(s.accounts_share_used, double(st.accounts) / double(sh->share(impl_->cfg_.accounts_max)));
    s.groups_share_used = std::max(s.groups_share_used, double(st.groups) / double(sh->share(impl_->cfg_.groups_max)));
    s.pending_share_used = std::max(s.pending_share_used, double(st.pending_open) / double(sh->share(impl_->cfg_.pending_max)));
    s.pending_open += st.pending_open;
    s.pending_tracked += st.pending_total;
    s.pending_expiry_entries += st.expiry_entries;
    s.sync_waits += st.sync_waits;
    s.checkpoint_pause_us_last = std::max(s.checkpoint_pause_us_last, st.cut_us_last);
    s.checkpoint_pause_us_max = std::max(s.checkpoint_pause_us_max, st.cut_us_max);
  }
  s.accounts_max = impl_->cfg_.accounts_max;
  s.groups_max = impl_->cfg_.groups_max;
  s.pending_max = impl_->cfg_.pending_max;
  s.transfers_max = impl_->cfg_.transfers_max;
  s.clock_steps = impl_->clock_steps_.load(std::memory_order_relaxed);
  s.clock_skew_ns = impl_->clock_skew_ns_.load(std::memory_order_relaxed);
  s.transfers = impl_->dispatched_serial_end_;
  s.lsn_durable = impl_->dispatched_lsn_;
  s.snapshot_lsn = impl_->snapshot_lsn_.load();
  s.snapshot_unix_ns = impl_->snapshot_unix_ns_.load();
  if (impl_->wal_) {
    const auto w = impl_->wal_->counters();
    s.wal_groups = w.groups;
    s.wal_records = w.records;
    s.wal_bytes = w.bytes;
    s.wal_flight_ns = w.flight_ns;
    s.wal_segments_deleting = w.segments_deleting;
    s.wal_commit_buckets.assign(w.commit_buckets.begin(), w.commit_buckets.end());
  }
  s.checkpoints = impl_->checkpoints_.load();
  s.checkpoint_failures = impl_->checkpoint_failures_.load(std::memory_order_relaxed);
  if (s.checkpoint_failures != 0) {
    std::lock_guard lk(impl_->ck_mu_);
    s.checkpoint_error_last = impl_->checkpoint_error_last_;
  }
  s.checkpoint_seconds_last = double(impl_->checkpoint_ns_last_.load()) / 1e9;
  s.checkpoint_seconds_total = double(impl_->checkpoint_ns_total_.load()) / 1e9;
  for (auto& sh : impl_->shards_) s.memory_bytes_shards += sh->stats().memory_bytes;
  s.memory_bytes_window = impl_->records_->memory_bytes();
  s.transfers_in_snapshot = impl_->flushed_serial_.load();
  {
    std::shared_lock lk(impl_->snap_read_mu_);
    if (impl_->snap_) {
      const auto u = impl_->snap_->usage();
      s.snapshot_map_bytes = u.map;
      s.snapshot_used_bytes = u.used;
    }
  }
  s.records_flush_failures = impl_->flush_failures_.load(std::memory_order_relaxed);
  s.writes_refused = impl_->writes_refused_.load();
  s.log_kept_bytes = impl_->log_kept_bytes_.load(std::memory_order_relaxed);
  s.log_kept_max_bytes = impl_->cfg_.wal_kept_max_mib << 20;
  s.snapshot_rows_unreadable = impl_->rows_unreadable_.load(std::memory_order_relaxed);
  if (s.writes_refused) {
    std::lock_guard lk(impl_->refused_mu_);
    s.writes_refused_why = impl_->refused_why_;
  }
  s.id_index_growths = impl_->pub_index_growths_.load(std::memory_order_relaxed);
  s.id_index_waits = impl_->pub_index_waits_.load(std::memory_order_relaxed);
  s.walks_deferred = impl_->walks_deferred_.load(std::memory_order_relaxed);
  s.id_index_next_growth_at = impl_->pub_index_next_growth_.load(std::memory_order_relaxed);
  s.id_index_ranges = impl_->pub_index_ranges_.load(std::memory_order_relaxed);
  s.id_index_table_ids = impl_->pub_index_table_.load(std::memory_order_relaxed);
  s.id_index_probes = impl_->pub_index_probes_.load(std::memory_order_relaxed);
  s.memory_bytes_id_index = impl_->pub_index_bytes_.load(std::memory_order_relaxed);
  return s;
}

engine::balance_check engine::check_balances() {
  request q;
  q.kind = op_kind::currency_totals;
  const reply r = call(std::move(q));
  balance_check out;
  if (r.st != status::ok) {
    out.balanced = false;
    out.detail = std::string("not checked: ") + status_name(r.st);
    return out;
  }
  const auto text = wire::decimal_text;
  for (const auto& t : r.totals) {
    if (t.debits_posted != t.credits_posted || t.debits_pending != t.credits_pending) {
      out.balanced = false;
      out.detail += wire::currency_name(t.currency) + ": posted debits " + text(t.debits_posted) +
                    " credits " + text(t.credits_posted) + ", pending debits " +
                    text(t.debits_pending) + " credits " + text(t.credits_pending) + "; ";
    }
  }
  out.groups_checked = r.groups_checked;
  for (const auto& f : r.group_faults) {
    out.balanced = false;
    out.detail += f + "; ";
  }
  return out;
}

log_verification engine::verify_log(const std::atomic<bool>* cancel) {
  const auto t0 = std::chrono::steady_clock::now();
  log_verification v;
  std::lock_guard vl(impl_->verify_mu_);
  // Segments dropped before this keep being deleted in the background: not while the
  // scan lists and reads the directory. They are not counted in the log's limit, so the
  // check gives way once they hold half of it (under a high write rate a check of a long
  // log would otherwise fill the disk): it looks as it reaches each segment, and every
  // verify_look_records records within one.
  struct drops_held {
    storage::wal_writer* w;
    explicit drops_held(storage::wal_writer* wal) : w(wal) {
      if (w) w->hold_drops();
    }
    ~drops_held() {
      if (w) w->release_drops();
    }
  } held(impl_->wal_.get());
  v.durable_lsn = impl_->dispatched_lsn_.load();
  uint64_t snap = 0;
  storage::chain_hash snap_chain{};
  {
    std::lock_guard lk(impl_->snapshot_pos_mu_);
    snap = impl_->snapshot_lsn_.load();
    snap_chain = impl_->snapshot_chain_;
  }
  storage::wal_scan_options so;
  so.dir = impl_->cfg_.data_dir + "/wal";
  so.repair_tail = false;  // read-only: the engine owns the tail
  so.direct_io = true;     // around the page cache the engine's appends bypass
  // What recovery reads: from the segment that holds the snapshot's next lsn (older ones a
  // drop left behind, whole or cut, are no part of the log).
  so.start_lsn = snap + 1;
  storage::wal_scan_result r;
  std::string error, unjoined;
  bool reached = v.durable_lsn == 0;
  constexpr uint64_t verify_look_records = 1 << 16;
  const uint64_t held_max = (impl_->cfg_.wal_kept_max_mib << 20) / 2;
  const char* segment = nullptr;
  uint64_t since_look = 0, held_bytes = 0;
  bool wanted = false;  // the log's writer needs their space now (a new segment failed)
  const bool ok = storage::scan_wal(so, [&](const storage::wal_record_view& rec) {
    if (cancel && cancel->load(std::memory_order_relaxed)) {
      v.stopped = true;
      return false;
    }
    if (rec.file != segment || ++since_look == verify_look_records) {
      const auto look = [&] {
        held_bytes = impl_->wal_ ? impl_->wal_->counters().deleting_bytes : 0;
        wanted = impl_->wal_ && impl_->wal_->drops_wanted();
        return held_bytes > held_max || wanted;
      };
      // A test's slow disk: the wait at each segment ends early when the check would give
      // way, or the test lifts the probe (so a loaded machine's slow writer still meets it).
      const auto& stall = storage::failure_probes::instance().verify_segment_stall_ms;
      if (const int stall_ms = stall.load(std::memory_order_relaxed); rec.file != segment && stall_ms > 0)
        for (const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(stall_ms);
             std::chrono::steady_clock::now() < until && stall.load(std::memory_order_relaxed) > 0 && !look();)
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
      segment = rec.file;
      since_look = 0;
      if (look()) {
        v.gave_way = true;
        return false;
      }
    }
    // As recovery checks: the log must begin at or before the snapshot's next record, and
    // continue the snapshot's history (the chain hash before that record).
    if (v.first_lsn == 0 && rec.header->lsn > snap + 1) {
      unjoined = "the log starts at lsn " + std::to_string(rec.header->lsn) + " but the snapshot covers only up to lsn " +
                 std::to_string(snap) + ": records are missing";
      return false;
    }
    if (rec.header->lsn == snap + 1 && snap != 0 && *rec.prev_chain != snap_chain) {
      unjoined = std::string(rec.file) + " offset " + std::to_string(rec.offset) + ": the chain hash before lsn " +
                 std::to_string(rec.header->lsn) + " is not the one the snapshot recorded at lsn " +
                 std::to_string(snap) + ": this log is not the snapshot's history";
      return false;
    }
    if (v.first_lsn == 0) v.first_lsn = rec.header->lsn;
    v.last_lsn = rec.header->lsn;
    v.chain_head = storage::to_hex(rec.header->chain);
    ++v.records;
    // Stop at the durable lsn: what follows may be a commit group being written now.
    if (rec.header->lsn >= v.durable_lsn) reached = true;
    return !reached;
  }, &r, &error);
  v.segments = r.segments;
  if (v.stopped) {
    v.intact = false;
    v.fault = "stopped before lsn " + std::to_string(v.durable_lsn) + " was reached (at lsn " +
              std::to_string(v.last_lsn) + ")";
  } else if (v.gave_way) {
    v.intact = false;
    v.fault = "gave way at lsn " + std::to_string(v.last_lsn) + " of " + std::to_string(v.durable_lsn) + ": " +
              std::to_string(held_bytes >> 20) + " MiB of dropped log segments waited for it to be deleted, " +
              (wanted ? std::string("and the log needed their disk space for its next segment (its pre-zeroing failed)")
                      : "over half of " + std::to_string(impl_->cfg_.wal_kept_max_mib) + " MiB (--wal-kept-max-mib)") +
              "; run it again when fewer writes come, or after a restart";
  } else if (!unjoined.empty()) {
    v.intact = false;
    v.fault = unjoined;
  } else if (!ok && !reached) {
    // A file that cannot be opened or read is a failure to check, not damage found.
    v.read_failed = storage::wal_error_is_read_failure(error);
    v.intact = false;
    v.fault = error;
  } else if (!reached && v.records > 0) {
    v.intact = false;
    v.fault = "the log ends at lsn " + std::to_string(v.last_lsn) + " but lsn " + std::to_string(v.durable_lsn) +
              " was acknowledged durable";
  } else if (!reached && v.durable_lsn > snap) {
    v.intact = false;
    v.fault = "no log record is kept, but lsn " + std::to_string(snap + 1) + ".." +
              std::to_string(v.durable_lsn) + " are durable and not in the snapshot";
  }
  v.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return v;
}

std::vector<shard_report> engine::shard_reports() {
  std::vector<shard_report> out;
  for (auto& sh : impl_->shards_) {
    const auto st = sh->stats();
    out.push_back({sh->index(), st.accounts, st.pending_total, st.queue_depth, st.batches_executed, st.sync_waits,
                   st.memory_bytes, st.cut_us_max, st.customers, st.orders_open, st.orders_ending, st.fills,
                   st.settle_refusals, st.orders_dead, st.orders_halted, st.order_timeouts, st.order_timers, st.payout_timers,
                   st.pending_open, st.group_refusals});
  }
  return out;
}

std::vector<actors::payouts::payout_count> engine::payouts_held() {
  std::map<std::pair<wire::currency_code, size_t>, actors::payouts::desk::held_figures> sum;
  for (auto& sh : impl_->shards_)
    for (const auto& c : sh->payouts_held())
      for (size_t k = 0; k < c.by_state.size(); ++k)
        if (c.by_state[k].n != 0) {
          auto& f = sum[{c.currency, k}];
          f.n += c.by_state[k].n;
          actors::gateways::add_amount(f.amount, c.by_state[k].amount);
        }
  std::vector<actors::payouts::payout_count> out;
  for (const auto& [k, f] : sum) out.push_back({k.first, actors::payouts::state(k.second), 0, 0, f.n, f.amount});
  return out;
}

caf::actor_system& engine::actor_system() { return *impl_->sys_; }

}  // namespace mesob::engine
