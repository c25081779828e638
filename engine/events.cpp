#include "engine/events.hpp"
#include "engine/limits.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>

#include "actors/gateway_registry.hpp"
#include "storage/checksum.hpp"
#include "storage/failure_probes.hpp"
#include "storage/wal.hpp"
#include "wire/assert.hpp"
#include "wire/codec.hpp"
#include "wire/event_pack.hpp"
#include "wire/protocol.hpp"
#include "wire/steady_ns.hpp"

namespace mesob::engine {

using actors::op_kind;
using wire::event;
using wire::event_type;
using wire::result;

namespace {


uint16_t deposit_gateway(const wire::id128& id) {
  return actors::gateways::deposit_id(id) ? uint16_t(id.hi & ~actors::gateways::deposit_hi_mask) : 0;
}

}  // namespace

void derive_events(const actors::batch& b, std::vector<event>& out) {
  auto add = [&](uint32_t i, event_type type) -> event& {
    event& e = out.emplace_back();
    e.lsn = b.lsn;
    e.timestamp = b.timestamp_base + i;
    e.type = type;
    return e;
  };
  auto ok = [&](uint32_t i) { return b.results[i] == result::ok && (b.repeated.empty() || b.repeated[i] == 0); };
  switch (b.kind) {
    case op_kind::create_accounts:
      for (uint32_t i = 0; i < b.count; ++i) {
        if (!ok(i)) continue;
        const wire::account& a = b.accounts[i];
        event& e = add(i, event_type::account_opened);
        e.account_a = a.id;
        e.currency = a.currency;
        e.code = uint16_t(a.kind);
        e.flags = a.flags;
      }
      break;
    case op_kind::set_account_status:
      for (uint32_t i = 0; i < b.count; ++i) {
        if (!ok(i)) continue;
        event& e = add(i, event_type::account_status);
        e.account_a = b.status_changes[i].account_id;
        e.code = uint16_t(b.status_changes[i].status);
        e.amount = b.status_seqs.empty() ? 0 : b.status_seqs[i];  // the change's number (rules version 17)
      }
      break;
    case op_kind::create_transfers:
    case op_kind::orders:  // their holds
      for (uint32_t i = 0; i < b.count; ++i) {
        if (!ok(i)) continue;
        const actors::op_route& r = b.routes[i];
        if (r.kind == actors::route_kind::duplicate || r.kind == actors::route_kind::static_failed) continue;
        const wire::transfer& t = b.transfers[i];
        const bool post = t.flags & wire::transfer_flags::post_pending;
        const bool voiding = t.flags & wire::transfer_flags::void_pending;
        event& e = add(i, post      ? event_type::pending_posted
                          : voiding ? event_type::pending_voided
                          : (t.flags & wire::transfer_flags::pending) ? event_type::pending_created
                                                                       : event_type::transfer_posted);
        e.id = t.id;
        e.flags = t.flags;
        e.code = t.code;
        e.currency = t.currency;
        if (post || voiding) {
          e.ref = t.pending_id;
          e.currency = r.ref_currency;  // (a post or void may give 0: the pending transfer's)
          e.account_a = r.ref_debit_account_id;
          e.account_b = r.ref_credit_account_id;
          e.amount = b.resolved_amounts.empty() ? t.amount : b.resolved_amounts[i];
        } else {
          e.account_a = t.debit_account_id;
          e.account_b = t.credit_account_id;
          e.amount = t.amount;
        }
        e.gateway = deposit_gateway(t.id);
      }
      break;
    case op_kind::equb_ops:
      for (uint32_t i = 0; i < b.count; ++i) {
        if (!ok(i)) continue;
        const wire::equb_op& op = b.equb_ops[i];
        event& e = add(i, event_type::equb_op);
        e.account_a = op.group_id;
        e.account_b = op.wallet;
        e.code = uint16_t(op.kind);
        e.amount = op.kind == wire::equb_op_kind::create ? op.contribution : op.amount;
        e.currency = op.currency;
        e.ref.lo = op.seat;
        e.ref.hi = op.kind == wire::equb_op_kind::payout_to ? op.rail : op.round;
      }
      break;
    case op_kind::payout_answers:
      for (uint32_t i = 0; i < b.count; ++i) {
        if (!ok(i)) continue;
        const wire::payout_answer& a = b.payout_answers[i];
        event& e = add(i, event_type::payout_answer);
        e.account_a = b.payout_wallets[i];
        e.account_b = b.payout_desks[i];
        e.ref.lo = a.payout_id;
        e.ref.hi = a.attempt;
        e.gateway = uint16_t(a.gateway);
        e.code = uint16_t(a.outcome);
        e.flags = uint16_t(a.failure);  // 1: declined (0 before rules_payout_declines)
        e.amount = a.amount;
        e.currency = a.currency;
      }
      break;
    case op_kind::gateway_events:
      for (uint32_t i = 0; i < b.count; ++i) {
        if (!ok(i)) continue;
        event& e = add(i, event_type::gateway_session);
        e.gateway = uint16_t(b.gateway_events[i].gateway);
        e.code = uint16_t(b.gateway_events[i].kind);
      }
      break;
    case op_kind::payout_ops:
      for (uint32_t i = 0; i < b.count; ++i) {
        if (!ok(i)) continue;
        event& e = add(i, event_type::payout_op);
        e.account_a = b.payout_wallets[i];
        e.account_b = b.payout_desks[i];
        e.ref.lo = b.payout_ops[i].payout_id;
        e.code = uint16_t(b.payout_ops[i].kind);
        e.currency = b.payout_ops[i].currency;
      }
      break;
    case op_kind::customer_ops:
      for (uint32_t i = 0; i < b.count; ++i) {
        if (!ok(i)) continue;
        const wire::customer_op& c = b.customer_ops[i];
        if (c.kind == wire::customer_op_kind::resequence) {
          event& e = add(i, event_type::customer_resequenced);
          e.account_a = c.wallet;
          e.ref.lo = c.sequence;
          continue;
        }
        event& e = add(i, event_type::customer_kyc);
        e.account_a = c.wallet;
        e.code = uint16_t(c.kyc);
        e.flags = c.tier;
        e.ref.lo = uint64_t(c.profile);
        e.ref.hi = c.reference;
      }
      break;
    case op_kind::policy_ops:
      for (uint32_t i = 0; i < b.count; ++i) {
        if (!ok(i)) continue;
        const wire::policy_op& p = b.policy_ops[i];
        event& e = add(i, event_type::policy_changed);
        e.code = uint16_t(p.kind);
        e.flags = p.number;
        e.currency = p.currency;
        const bool tier = p.kind == wire::policy_op_kind::tier, model = p.kind == wire::policy_op_kind::model;
        e.amount = tier ? p.single_max : model ? p.daily_outflow_max : p.position_max;
        e.ref.lo = tier ? p.daily_outflow_max : model ? p.single_max : p.classes;
        e.ref.hi = tier ? p.balance_max : 0;
      }
      break;
    case op_kind::order_answers:
      for (uint32_t i = 0; i < b.count; ++i) {
        if (!ok(i)) continue;
        const wire::order_answer& a = b.order_answers[i];
        event& e = add(i, event_type::order_answer);
        e.account_a = a.wallet;
        e.account_b = a.price_ticks;
        e.ref = {a.order_id, a.fill_id};
        e.code = uint16_t(a.kind);
        e.amount = a.quantity;
        e.flags = a.reason;
        e.gateway = uint16_t(a.gateway);
      }
      break;
    case op_kind::order_cancels:
      for (uint32_t i = 0; i < b.count; ++i) {
        if (!ok(i)) continue;
        event& e = add(i, event_type::order_cancelled);
        e.account_a = b.order_cancels[i].wallet;
        e.ref.lo = b.order_cancels[i].order_id;
      }
      break;
    case op_kind::order_retries:
    case op_kind::order_retries_forced:
      for (uint32_t i = 0; i < b.count; ++i) {
        if (!ok(i)) continue;
        event& e = add(i, event_type::order_retried);
        e.account_a = b.order_cancels[i].wallet;
        e.ref.lo = b.order_cancels[i].order_id;
      }
      break;
    default: break;  // ticks and registry changes: no event of their own
  }
}

// ---- writer ---------------------------------------------------------------------------

event_writer::event_writer(storage::event_log& log, uint64_t kept_lsn, id_reader read_id, uint64_t retention_check_ms)
    : log_(log), kept_lsn_(kept_lsn), read_id_(std::move(read_id)), retention_check_ns_(retention_check_ms * 1'000'000ull) {
  durable_lsn_.store(kept_lsn);
  written_lsn_ = kept_lsn;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "mesob.evwrite");
    run();
  });
}

event_writer::~event_writer() { stop(); }

void event_writer::post(std::shared_ptr<actors::event_group> g) {
  bool wake;
  {
    std::lock_guard lk(mu_);
    waiting_.emplace(g->seq, std::move(g));
    backlog_.store(waiting_.size(), std::memory_order_relaxed);
    wake = !gathering_ || waiting_.size() >= events_gather_groups_max || sync_wanted_lsn_ > durable_lsn_.load();
  }
  if (wake) cv_.notify_one();
}

void event_writer::set_listener(std::function<void()> on_written) {
  std::lock_guard lk(mu_);
  listener_ = std::move(on_written);
}

void event_writer::recovered(uint64_t kept, uint64_t snapshot) {
  std::lock_guard lk(mu_);
  kept_lsn_.store(kept);
  durable_lsn_.store(std::max(kept, snapshot));
  // Not the lsn the event log ended at when opened: recovery may have cut the newest
  // batch's events, which replay writes again.
  written_lsn_ = durable_lsn_.load();
  recovered_.store(true);  // recovery is done with the event log's files: retention may run
}

bool event_writer::wait_through(uint64_t lsn, std::string* error) {
  std::unique_lock lk(mu_);
  if (durable_lsn_.load() < lsn) {
    sync_wanted_lsn_ = std::max(sync_wanted_lsn_, lsn);
    cv_.notify_one();
  }
  done_cv_.wait(lk, [&] { return durable_lsn_.load() >= lsn || failed_.load() || stopped_; });
  if (failed_.load()) {
    *error = error_;
    return false;
  }
  if (durable_lsn_.load() < lsn) {
    *error = "event log: stopped before the events of lsn " + std::to_string(lsn) + " were written";
    return false;
  }
  return true;
}

void event_writer::wait_backlog(size_t max) {
  std::unique_lock lk(mu_);
  done_cv_.wait(lk, [&] { return waiting_.size() <= max || stopped_; });
}

uint64_t event_writer::wait_new(uint64_t seen, int timeout_ms) {
  std::unique_lock lk(mu_);
  done_cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return log_.written_end() > seen || stopped_; });
  return log_.written_end();
}

void event_writer::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopped_ && !thread_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string event_writer::error() const {
  std::lock_guard lk(mu_);
  return error_;
}

event_writer::stats event_writer::counters() const {
  return {events_.load(), syncs_.load(), sync_ns_.load(), backlog_.load(), durable_lsn_.load()};
}

void event_writer::write_group(actors::event_group& g, std::vector<event>& out) {
  // Expiries go before the operations of the first batch whose clock passed them (a
  // shard expires what is due before it executes a batch), whichever shard found them
  // and whenever: the same place live and in replay.
  std::vector<actors::expired_pending> exp;
  for (auto& list : g.expired) exp.insert(exp.end(), list.begin(), list.end());
  std::sort(exp.begin(), exp.end(), [](const auto& x, const auto& y) {
    return std::tie(x.expires_at, x.serial) < std::tie(y.expires_at, y.serial);
  });
  size_t k = 0;
  std::vector<size_t> decided_at(g.decided.size(), 0);
  for (auto& list : g.decided)
    std::stable_sort(list.begin(), list.end(), [](const actors::decision& x, const actors::decision& y) {
      return std::tie(x.ev.lsn, x.slot) < std::tie(y.ev.lsn, y.slot);
    });
  auto expiry = [&](const actors::expired_pending& p, uint64_t lsn) {
    event& e = out.emplace_back();
    e.lsn = lsn;
    e.timestamp = p.expires_at;
    e.type = event_type::pending_expired;
    if (auto it = timed_pending_.find(p.serial); it != timed_pending_.end()) {
      e.id = it->second;
      timed_pending_.erase(it);
    } else {
      e.id = read_id_(p.serial);
    }
    e.account_a = p.debit_account_id;
    e.account_b = p.credit_account_id;
    e.amount = p.amount;
    e.currency = p.currency;
  };
  for (size_t n = 0; n < g.batches.size(); ++n) {
    const actors::batch& b = *g.batches[n];
    const size_t first = out.size();
    const bool last = n + 1 == g.batches.size();
    while (k < exp.size() && (last || exp[k].expires_at <= b.sweep_to)) expiry(exp[k++], b.lsn);
    derive_events(b, out);
    // Then what groups decided while the shards executed it (shard by shard, in order).
    for (size_t sh = 0; sh < g.decided.size(); ++sh)
      for (; decided_at[sh] < g.decided[sh].size() && g.decided[sh][decided_at[sh]].ev.lsn == b.lsn; ++decided_at[sh])
        out.push_back(g.decided[sh][decided_at[sh]].ev);
    if (b.kind == op_kind::create_transfers || b.kind == op_kind::orders)
      for (uint32_t i = 0; i < b.count; ++i) {
        if (b.results[i] != result::ok) continue;
        const actors::op_route& r = b.routes[i];
        const wire::transfer& t = b.transfers[i];
        if (r.kind == actors::route_kind::fresh && (t.flags & wire::transfer_flags::pending) && t.timeout_s != 0)
          timed_pending_[r.serial] = t.id;
        else if (r.kind == actors::route_kind::resolve && r.has_ref)
          timed_pending_.erase(r.ref_serial);
      }
    if (b.lsn <= kept_lsn_.load(std::memory_order_relaxed)) out.resize(first);  // the event log has them (recovery)
  }
  // Every decision was made while one of these batches executed. Should one not match
  // (a bug), it still goes out, after them, rather than being lost.
  for (size_t sh = 0; sh < g.decided.size(); ++sh)
    for (; decided_at[sh] < g.decided[sh].size(); ++decided_at[sh]) {
      std::fprintf(stderr, "mesobd: events: a decision of log record %llu came with another dispatch\n",
                   static_cast<unsigned long long>(g.decided[sh][decided_at[sh]].ev.lsn));
      if (g.decided[sh][decided_at[sh]].ev.lsn > kept_lsn_.load(std::memory_order_relaxed))
        out.push_back(g.decided[sh][decided_at[sh]].ev);
    }
}

void event_writer::run() {
  std::vector<event> out;
  uint64_t next_retention = 0;
  bool retention_more = false;  // the last retention pass dropped its most: another at once
  bool unsynced = false;  // events appended since the last sync
  auto first_unsynced = std::chrono::steady_clock::now();  // when the oldest of them was appended
  const auto sync_every = std::chrono::milliseconds(events_sync_interval_ms);
  auto fail = [&](const std::string& err) {
    std::fprintf(stderr, "mesobd: %s; events stop, and checkpoints fail until restart (the log keeps what replay needs)\n",
                 err.c_str());
    unsynced = false;  // nothing is synced any more
    std::lock_guard lk(mu_);
    error_ = err;
    failed_.store(true);
  };
  bool wrote = false;  // the last pass took groups: gather the next ones for a while
  for (;;) {
    std::vector<std::shared_ptr<actors::event_group>> ready;
    bool stopping, sync_wanted;
    {
      std::unique_lock lk(mu_);
      const auto now = std::chrono::steady_clock::now();
      auto until = now + (wrote ? std::chrono::microseconds(events_gather_us) : std::chrono::milliseconds(200));
      if (unsynced) until = std::min(until, first_unsynced + sync_every);
      if (retention_more) until = now;  // (the groups waiting are taken all the same)
      gathering_ = wrote;
      cv_.wait_until(lk, until, [&] {
        const bool sync_asked = sync_wanted_lsn_ > durable_lsn_.load();
        return stop_ || (sync_asked && unsynced) ||
               (waiting_.count(next_seq_) > 0 && (!wrote || sync_asked || waiting_.size() >= events_gather_groups_max));
      });
      gathering_ = false;
      for (auto it = waiting_.find(next_seq_); it != waiting_.end(); it = waiting_.find(next_seq_)) {
        ready.push_back(std::move(it->second));
        waiting_.erase(it);
        ++next_seq_;
      }
      backlog_.store(waiting_.size(), std::memory_order_relaxed);
      stopping = stop_ && ready.empty();
      sync_wanted = sync_wanted_lsn_ > durable_lsn_.load();
    }
    wrote = !ready.empty();
    if (!ready.empty()) done_cv_.notify_all();  // room in the backlog
    out.clear();
    uint64_t last_lsn = 0;
    for (auto& g : ready) {
      write_group(*g, out);
      if (!g->batches.empty()) last_lsn = std::max(last_lsn, g->batches.back()->lsn);
    }
    ready.clear();  // the batches go
    if (!out.empty() && !failed_.load()) {
      std::string err;
      if (!log_.append(out, &err)) {
        fail(err);
      } else {
        events_.fetch_add(out.size(), std::memory_order_relaxed);
        if (!unsynced) first_unsynced = std::chrono::steady_clock::now();
        unsynced = true;
      }
    }
    // Durable on demand (a checkpoint waits), when stopping, and at most sync_every after
    // an append (decisions too: replay under the same shard count, the only one a start
    // with records past the snapshot takes, makes them again at the same offsets); not after every append: on a lone request's path that
    // was a second fdatasync beside the write-ahead log's.
    if (unsynced && !failed_.load() &&
        (stopping || sync_wanted || std::chrono::steady_clock::now() - first_unsynced >= sync_every)) {
      std::string err;
      const auto t0 = std::chrono::steady_clock::now();
      if (!log_.sync(&err)) {
        fail(err);
      } else {
        unsynced = false;
        syncs_.fetch_add(1, std::memory_order_relaxed);
        sync_ns_.fetch_add(uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now() - t0)
                                        .count()),
                           std::memory_order_relaxed);
      }
    }
    std::function<void()> listener;
    {
      std::lock_guard lk(mu_);
      written_lsn_ = std::max(written_lsn_, last_lsn);
      if (!unsynced && !failed_.load() && written_lsn_ > durable_lsn_.load()) durable_lsn_.store(written_lsn_);
      listener = listener_;
    }
    done_cv_.notify_all();
    if (listener && !out.empty()) listener();
    if (const uint64_t t = steady_ns(); recovered_.load() && t >= next_retention) {
      // A few segments a pass, between appends (the next pass goes on at once).
      retention_more = log_.apply_retention(retention_drops_per_pass) == retention_drops_per_pass;
      next_retention = retention_more ? t : t + retention_check_ns_;
    }
    if (stopping) break;
  }
  {
    std::lock_guard lk(mu_);
    stopped_ = true;
  }
  done_cv_.notify_all();
}

// ---- hub ------------------------------------------------------------------------------

event_hub::event_hub(storage::event_log& log, event_writer& writer, std::string state_path, uint32_t subscriptions_max,
                     uint64_t windows_bytes_max)
    : log_(log),
      writer_(writer),
      state_path_(std::move(state_path)),
      subscriptions_max_(subscriptions_max),
      windows_bytes_max_(windows_bytes_max) {}

event_hub::~event_hub() { stop(); }

namespace {
bool name_valid(const std::string& n) {
  if (n.size() > subscriber_name_bytes_max) return false;
  for (const char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  return true;
}
}  // namespace

// The state file: a line "mesob-subscribers 2", then "<name> <offset> <owner>" per name
// (the owning gateway's id in hex, "-" for none), then "end <crc32c of the lines before,
// hex>". Written whole to a temporary file and renamed. Version 1 files (before owners:
// "<name> <offset>") still load; their names go to the next gateway to subscribe.
bool event_hub::load(std::string* error) {
  std::ifstream in(state_path_);
  if (!in) {
    struct stat st {};
    if (::stat(state_path_.c_str(), &st) != 0 && errno == ENOENT) return true;  // none yet
    // There but unreadable: starting without it would restart every named subscriber,
    // and the next save would overwrite the positions for good.
    *error = "events: " + state_path_ + " cannot be read (" + std::strerror(errno) + ")";
    return false;
  }
  // At most subscriber_names_max lines of a name, an offset and an owner (64 bytes, 20
  // digits, 128 hex digits, and their separators): a larger file is not one this build
  // wrote, and is not read into memory whole.
  constexpr uint64_t state_bytes_max = 64 + subscriber_names_max * (64 + 20 + 128 + 3) + 64;
  in.seekg(0, std::ios::end);
  const auto size = in.tellg();
  in.seekg(0);
  if (size < 0 || uint64_t(size) > state_bytes_max) {
    *error = "events: " + state_path_ + " is " + std::to_string(int64_t(size)) + " bytes, more than a subscriber " +
             "state file of " + std::to_string(subscriber_names_max) + " names takes (" +
             std::to_string(state_bytes_max) + "); move it away to start without it";
    return false;
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t end_at = text.rfind("end ");
  const bool v1 = text.rfind("mesob-subscribers 1\n", 0) == 0;
  if ((!v1 && text.rfind("mesob-subscribers 2\n", 0) != 0) || end_at == std::string::npos) {
    *error = "events: " + state_path_ + " is not a subscriber state file (move it away to start without it)";
    return false;
  }
  const uint32_t crc = storage::crc32c(text.data(), end_at);
  unsigned long stored = 0;
  if (text[end_at - 1] != '\n' || std::sscanf(text.c_str() + end_at, "end %lx", &stored) != 1 ||
      uint32_t(stored) != crc) {
    *error = "events: " + state_path_ + " fails its checksum (move it away to start without it)";
    return false;
  }
  // The end line is the last, whole: anything else is not a file this build wrote.
  char end_line[32];
  std::snprintf(end_line, sizeof end_line, "end %08x\n", crc);
  if (text.compare(end_at, std::string::npos, end_line) != 0) {
    *error = "events: " + state_path_ + " does not end at its end line (move it away to start without it)";
    return false;
  }
  // The checksum holds, so a line that does not parse was written so: refuse the file
  // rather than guess.
  std::istringstream lines(text.substr(0, end_at));
  std::string line;
  std::getline(lines, line);
  std::map<std::string, name_state> loaded;
  for (size_t n = 2; std::getline(lines, line); ++n) {
    std::istringstream fields(line);
    std::string name, offset, owner, extra;
    fields >> name >> offset;
    if (!v1) fields >> owner;
    std::vector<uint8_t> owner_bytes;
    const bool owner_ok = v1 || owner == "-" ||
                          (wire::from_hex(owner, &owner_bytes) && !owner_bytes.empty() && owner_bytes.size() <= 64);
    const bool offset_ok = !offset.empty() && offset.size() <= 20 &&
                           offset.find_first_not_of("0123456789") == std::string::npos &&
                           (offset.size() < 20 || offset < "18446744073709551615");  // acked + 1 fits
    if (name.empty() || !name_valid(name) || !offset_ok || !owner_ok || (fields >> extra) || loaded.count(name) ||
        loaded.size() >= subscriber_names_max) {
      *error = "events: " + state_path_ + " line " + std::to_string(n) + " is not \"<name> <offset>" +
               (v1 ? "" : " <owner>") + "\" of a new name (move the file away to start without it)";
      return false;
    }
    loaded[name] = {std::stoull(offset), std::string(owner_bytes.begin(), owner_bytes.end())};
  }
  positions_ = std::move(loaded);
  return true;
}

bool event_hub::save(std::string* error) {
  std::string text = "mesob-subscribers 2\n";
  for (const auto& [name, st] : positions_) {
    const std::string owner =
        st.owner.empty() ? "-" : wire::to_hex({reinterpret_cast<const uint8_t*>(st.owner.data()), st.owner.size()});
    text += name + " " + std::to_string(st.acked) + " " + owner + "\n";
  }
  char tail[32];
  std::snprintf(tail, sizeof tail, "end %08x\n", storage::crc32c(text.data(), text.size()));
  text += tail;
  if (storage::replace_file(state_path_, text, error)) return true;
  *error = "events: " + *error;
  return false;
}

void event_hub::start(sender send, uint64_t session_bytes_max) {
  std::lock_guard lk(mu_);
  send_ = std::move(send);  // a later server on the same engine takes over
  session_bytes_max_ = session_bytes_max;
  if (thread_.joinable() || stop_) return;
  writer_.set_listener([this] {
    {
      std::lock_guard wl(mu_);
      wake_ = true;
    }
    cv_.notify_one();
  });
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "mesob.evhub");
    run();
  });
}

bool event_hub::subscribe(uint64_t session, uint64_t request_id, subscription_request&& r) {
  {
    std::lock_guard lk(mu_);
    if (!subscribes_queued_.insert(session).second) return false;
    commands_.push_back({command::kind::subscribe, session, request_id, 0, std::move(r), {}});
  }
  cv_.notify_one();
  return true;
}

std::string event_hub::ack(uint64_t session, uint64_t request_id, uint64_t offset) {
  bool wake;
  {
    std::lock_guard lk(mu_);
    if (!std::binary_search(live_sessions_.begin(), live_sessions_.end(), session))
      return "ack: this session has no subscription";
    uint32_t& mine = acks_queued_[session];
    if (mine >= acks_queued_max)
      return "ack: " + std::to_string(acks_queued_max) +
             " acks of this session wait for the event hub already (acknowledge less often: each covers "
             "every offset before it)";
    if (commands_.size() >= commands_queued_max)
      return "ack: the event hub's queue is full (" + std::to_string(commands_queued_max) +
             " commands wait): send it again later";
    ++mine;
    commands_.push_back({command::kind::ack, session, request_id, offset, {}, {}});
    wake = std::binary_search(window_full_.begin(), window_full_.end(), session) ||
           commands_.size() % commands_wake_every == 0;
  }
  // An ack matters at once only to a subscriber its window holds back; else the next pass
  // (new events, or at most ack_apply_ms) takes it, and a busy subscriber's ack per frame
  // does not cost the hub a wake-up each. A flood of acks wakes it every
  // commands_wake_every; while a pass holds the hub, acks past the limits are refused.
  if (wake) cv_.notify_one();
  return {};
}

void event_hub::closed(uint64_t session) {
  {
    std::lock_guard lk(mu_);
    commands_.push_back({command::kind::closed, session, 0, 0, {}, {}});
  }
  cv_.notify_one();
}

void event_hub::end(uint64_t session, wire::protocol_error code, std::string why) {
  {
    std::lock_guard lk(mu_);
    command c{command::kind::job, 0, 0, 0, {}, {}};
    c.job = [this, session, code, why = std::move(why)] {
      if (retire(session)) send(session, wire::encode_frame(wire::frame_kind::error, 0, wire::error_body({code, why})));
    };
    commands_.push_back(std::move(c));
  }
  cv_.notify_one();
}

void event_hub::stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  writer_.set_listener(nullptr);
}

std::vector<event_hub::subscriber_info> event_hub::subscribers() const {
  std::lock_guard lk(mu_);
  return listing_;
}

result event_hub::fields_refusal(const subscription_request& r, std::string* why) {
  if (!name_valid(r.name)) {
    *why = "a name is empty (anonymous) or 1..64 characters of A-Z a-z 0-9 . _ -";
    return result::subscriber_name_invalid;
  }
  static_assert(wire::event_type_max <= 63, "types: one bit each in a u64");
  if ((r.types & ~((2ull << wire::event_type_max) - 2)) != 0) {
    *why = "types: bits 1.." + std::to_string(wire::event_type_max) + " only";
    return result::events_filter_invalid;
  }
  if (r.accounts.size() > subscription_ids_max || r.gateways.size() > subscription_ids_max) {
    *why = "at most 1,024 accounts and 1,024 gateways";
    return result::events_filter_invalid;
  }
  // No account is 0 (it would match every event whose account field is unused), and
  // gateways are numbered 1..gateways_max (never reused).
  if (std::find(r.accounts.begin(), r.accounts.end(), 0) != r.accounts.end()) {
    *why = "accounts: 0 is no account";
    return result::events_filter_invalid;
  }
  for (const uint32_t g : r.gateways)
    if (g == 0 || g > actors::gateways::gateways_max) {
      *why = "gateways: " + std::to_string(g) + " is no gateway's number (1.." +
             std::to_string(actors::gateways::gateways_max) + ")";
      return result::events_filter_invalid;
    }
  if (r.window > subscription_window_max || r.batch_max > subscription_batch_max) {
    *why = "window is at most 1,048,576 and batch_max at most 8,192";
    return result::events_filter_invalid;
  }
  return result::ok;
}

bool event_hub::retire(uint64_t session) {
  auto it = subs_.find(session);
  if (it == subs_.end()) return false;
  // Added to what an earlier subscription of the session left reserved: its frames may be
  // queued still, behind this one's.
  ended_window& e = ended_[session];
  e.owner = it->second.req.owner;
  e.bytes += window_bytes(it->second.req);
  subs_.erase(it);
  return true;
}

uint64_t event_hub::window_bytes(const subscription_request& r) {
  return (uint64_t(r.window) + r.batch_max) * (wire::events_frame_event_bytes_max(r.packed) + session_frame_keep_bytes) +
         4096;
}

bool event_hub::matches(const subscription_request& r, const event& e) {
  if (r.types != 0 && (r.types & (1ull << uint16_t(e.type))) == 0) return false;
  if (!r.accounts.empty()) {
    // account_a and account_b hold accounts, except an instrument's id (instrument
    // events) and a fill's price (order_answer): those match no account filter.
    const bool a_account = e.type != event_type::instrument_defined && e.type != event_type::price &&
                           e.type != event_type::instrument_halted && e.type != event_type::instrument_resumed &&
                           e.type != event_type::instrument_resequenced;
    const bool b_account = e.type != event_type::order_answer;
    const auto listed = [&](uint64_t id) { return std::binary_search(r.accounts.begin(), r.accounts.end(), id); };
    // A member replaced: the new account is in `amount` (the one replaced in account_b).
    const bool replacement = e.type == event_type::equb_op && e.code == uint16_t(wire::equb_op_kind::replace_account);
    if (!(a_account && listed(e.account_a)) && !(b_account && listed(e.account_b)) &&
        !(replacement && listed(e.amount)))
      return false;
  }
  if (!r.gateways.empty() && !std::binary_search(r.gateways.begin(), r.gateways.end(), uint32_t(e.gateway)))
    return false;
  return true;
}

void event_hub::apply(command& c) {
  switch (c.what) {
    case command::kind::closed:
      subs_.erase(c.session);
      ended_.erase(c.session);
      return;
    case command::kind::job: c.job(); return;
    case command::kind::ack: {
      auto it = subs_.find(c.session);
      auto refuse = [&](const std::string& why) {
        send(c.session, wire::encode_frame(wire::frame_kind::error, c.request_id,
                                           wire::error_body({wire::protocol_error::ack_refused, why})));
      };
      if (it == subs_.end()) return refuse("ack: this session has no subscription");
      sub& s = it->second;
      if (c.offset < s.acked || c.offset >= s.cursor)
        return refuse("ack: offset " + std::to_string(c.offset) + " is outside what was sent (acknowledged through " +
                      std::to_string(s.acked) + ", sent through " + std::to_string(s.cursor - 1) + ")");
      if (c.offset == s.acked) return;  // nothing moved: nothing to save (a save is an fsync)
      s.acked = c.offset;
      if (!s.req.name.empty()) {
        positions_[s.req.name].acked = s.acked;
        positions_dirty_ = true;
      }
      return;
    }
    case command::kind::subscribe: break;
  }
  subscription_request& r = c.req;
  wire::subscribed_msg a;
  a.oldest = log_.first_offset();
  a.end = log_.written_end();
  auto answer = [&](result code, std::string message) {
    a.code = code;
    a.message = std::move(message);
    send(c.session, wire::encode_frame(wire::frame_kind::subscribed, c.request_id, wire::subscribed_body(a)));
  };
  if (subs_.count(c.session)) return answer(result::subscriber_busy, "this session is subscribed already");
  std::string why;
  if (const result code = fields_refusal(r, &why); code != result::ok) return answer(code, std::move(why));
  if (r.window == 0) r.window = 65'536;
  if (r.batch_max == 0) r.batch_max = 4'096;
  // What may be sent and not yet read must fit what the server queues to a session.
  const uint64_t event_bytes = wire::events_frame_event_bytes_max(r.packed) + session_frame_keep_bytes;
  // Window + batch_max events that fit `room` bytes (window_bytes).
  const auto events_fitting = [&](uint64_t room) -> uint64_t { return room > 4096 ? (room - 4096) / event_bytes : 0; };
  const uint64_t mine = window_bytes(r);
  if (mine > bytes_max_) {
    const uint64_t fits = events_fitting(bytes_max_);
    return answer(result::events_filter_invalid,
                  "window " + std::to_string(r.window) + " and batch_max " + std::to_string(r.batch_max) +
                      " pass what the server queues to a session (" + std::to_string(bytes_max_) +
                      " bytes: window + batch_max at most " + std::to_string(fits) + " events of up to " +
                      std::to_string(event_bytes) + " bytes" +
                      (fits > r.batch_max ? "): ask for a window of at most " + std::to_string(fits - r.batch_max)
                                          : ")"));
  }
  if (r.from_end && r.from != 0)
    return answer(result::events_filter_invalid, "from and from_end together: choose one");
  // A session of the same gateway holding the name loses it to this one once this one is
  // taken (below): the newest wins, so a subscriber whose old connection died unseen (a
  // dead peer, a cut network) resumes at once rather than after the idle timeout. It is
  // not counted against the limits it is about to leave.
  // (Another gateway's session may hold it only under a name kept from before names had
  // owners: it stays, and this one is refused, below.)
  std::optional<uint64_t> holder, foreign_holder;
  if (!r.name.empty())
    for (const auto& [sess, other] : subs_)
      if (other.req.name == r.name) (other.req.owner == r.owner ? holder : foreign_holder) = sess;
  const size_t leaving = holder ? 1 : 0;
  if (subs_.size() - leaving >= subscriptions_max_)
    return answer(result::subscribers_full, std::to_string(subscriptions_max_) + " sessions subscribe already");
  // One gateway may hold at most half of the sessions subscribed and half of the names
  // kept: the others keep room, whatever one does (many sessions, a new name each time).
  const size_t own_max = std::max<size_t>(1, subscriptions_max_ / 2);
  if (size_t(std::count_if(subs_.begin(), subs_.end(), [&](const auto& e) { return e.second.req.owner == r.owner; })) - leaving >=
      own_max)
    return answer(result::subscribers_full, "this gateway's sessions hold " + std::to_string(own_max) +
                                                " subscriptions already, the most one gateway may (half of " +
                                                std::to_string(subscriptions_max_) + ")");
  if (!r.name.empty()) {
    if (auto it = positions_.find(r.name); it != positions_.end() && !it->second.owner.empty() &&
                                           it->second.owner != r.owner)
      // Which gateway is not told: gateway ids are half of what authenticates.
      return answer(result::subscriber_name_owned, "'" + r.name + "' belongs to another gateway (an operator may free it: events forget " + r.name + ")");
    if (foreign_holder)
      return answer(result::subscriber_busy, "session " + std::to_string(*foreign_holder) + " of another gateway holds '" + r.name + "'");
    if (!positions_.count(r.name) && positions_.size() >= subscriber_names_max)
      return answer(result::subscribers_full, "4,096 named subscribers are kept already (an operator may free some: events, events forget)");
    if (!positions_.count(r.name) &&
        size_t(std::count_if(positions_.begin(), positions_.end(), [&](const auto& e) { return e.second.owner == r.owner; })) >=
            subscriber_names_max / 2)
      return answer(result::subscribers_full, "this gateway keeps 2,048 names already, the most one gateway may (an "
                                              "operator may free some: events, events forget)");
  }
  // Subscribers that read nothing keep their windows' frames queued: all of them together
  // reserve at most windows_bytes_max_, and one gateway's at most half of it, so that
  // neither many stalled subscribers nor one gateway's take the process's memory or every
  // other gateway's room (a subscriber is never cut for reading slowly: retention alone
  // ends a subscription that falls behind). A subscription that ended while its session
  // stays open (taken over, ended by the server, cut by retention) keeps its reservation
  // until the session closes, whatever it subscribes to since: its frames stay queued to it. (Checked after the names: a
  // refusal for good comes before one that passes.)
  {
    uint64_t all = 0, own = 0;
    const auto count = [&](const std::string& owner, uint64_t bytes) {
      all += bytes;
      if (owner == r.owner) own += bytes;
    };
    for (const auto& [sess, other] : subs_) count(other.req.owner, window_bytes(other.req));
    // (The session's own ended windows too: their frames may still be queued to it, ahead
    // of the new window's.)
    for (const auto& [sess, e] : ended_) count(e.owner, e.bytes);
    const uint64_t own_room = windows_bytes_max_ / 2;
    const bool gateways = own + mine > own_room;
    if (gateways || all + mine > windows_bytes_max_) {
      const uint64_t room =
          std::min(own_room - std::min(own, own_room), windows_bytes_max_ - std::min(all, windows_bytes_max_));
      const uint64_t fits = events_fitting(room), w = fits > r.batch_max ? fits - r.batch_max : 0;
      return answer(result::subscribers_full,
                    std::string(gateways ? "this gateway's subscriptions' windows reserve " : "the subscriptions' windows reserve ") +
                        std::to_string(gateways ? own : all) + " bytes of the " +
                        std::to_string(gateways ? own_room : windows_bytes_max_) +
                        (gateways ? " one gateway's may (half of --events-windows-mib)"
                                  : " all may (--events-windows-mib)") +
                        ", and window " + std::to_string(r.window) + " with batch_max " + std::to_string(r.batch_max) +
                        " reserves " + std::to_string(mine) +
                        (w > 0 ? ": ask for a window of at most " + std::to_string(w)
                               : ": wait for a subscribed session to close"));
    }
  }
  uint64_t start = r.from == 0 ? a.oldest : r.from;
  if (r.from_end) start = a.end;
  bool resumed = false, move_name = false;
  if (auto it = positions_.find(r.name); !r.name.empty() && it != positions_.end()) {
    // A name resumes where it left off; if retention passed that point, only an explicit
    // from or from_end moves it on (nothing is skipped silently). Right after a restart
    // that point may lie past the end until replay has written the events again (a power
    // cut can take the event log's unsynced tail): the subscription waits for them.
    if (it->second.acked + 1 >= a.oldest) {
      start = it->second.acked + 1;
      resumed = true;
    }
    else if (r.from == 0 && !r.from_end)
      return answer(result::events_truncated,
                    "'" + r.name + "' acknowledged up to " + std::to_string(it->second.acked) +
                        ", and retention dropped what follows; the oldest kept is " + std::to_string(a.oldest) +
                        ": subscribe with from or from_end to move it on");
    else if (start >= a.oldest)
      move_name = true;  // once the start is known good
  }
  if (start < a.oldest)
    return answer(result::events_truncated, "offset " + std::to_string(start) + " is gone; the oldest kept is " +
                                                std::to_string(a.oldest));
  if (start > a.end && !resumed)
    return answer(result::events_offset_ahead, "offset " + std::to_string(start) + " is past the newest event (" +
                                                   std::to_string(a.end - 1) + ")");
  // A failed writer writes nothing more (its end is final once it has failed): nothing to
  // subscribe to past it until a restart: refused as passing (clients back off).
  if (writer_.failed() && start >= log_.written_end())
    return answer(result::events_try_again, "the event writer failed (" + writer_.error() + "): no event after offset " +
                                                std::to_string(log_.written_end() - 1) +
                                                " comes until the engine restarts");
  uint64_t acked_before_move = 0;
  if (move_name) {
    acked_before_move = std::exchange(positions_[r.name].acked, start - 1);
    positions_dirty_ = true;
  }
  std::sort(r.accounts.begin(), r.accounts.end());
  std::sort(r.gateways.begin(), r.gateways.end());
  sub s;
  s.session = c.session;
  s.cursor = start;
  s.acked = start - 1;
  s.req = std::move(r);
  if (!s.req.name.empty()) {
    auto [it, fresh] = positions_.try_emplace(s.req.name);
    if (fresh) it->second.acked = s.acked;  // acknowledged up to before its start
    const bool claims = it->second.owner.empty() && !s.req.owner.empty();  // new, or from a file of before owners
    if (claims) it->second.owner = s.req.owner;
    if (fresh || claims) {
      // Saved before the answer: a claim lost to a crash would leave the name to
      // whichever gateway asked first after it. (Once per name: rare.)
      std::string err;
      if (!save(&err)) {
        if (fresh) positions_.erase(it);
        else it->second.owner.clear();
        if (move_name) it->second.acked = acked_before_move;  // a refused subscription moves nothing
        // The file may have the name all the same (its rename done, the directory's sync
        // failed): the next save writes it again without.
        positions_dirty_ = true;
        return answer(result::events_try_again, "the name could not be kept: " + err);
      }
    }
  }
  if (holder && retire(*holder))
    send(*holder, wire::encode_frame(wire::frame_kind::error, 0,
                                    wire::error_body({wire::protocol_error::subscription_taken,
                                                      "session " + std::to_string(c.session) + " subscribed as '" +
                                                          s.req.name + "': this subscription ends"})));
  a.start = start;
  subs_.emplace(c.session, std::move(s));
  {
    std::lock_guard lk(mu_);  // its acks are taken from the moment it is told
    live_sessions_.insert(std::upper_bound(live_sessions_.begin(), live_sessions_.end(), c.session), c.session);
  }
  answer(result::ok, "");
}

bool event_hub::serve(sub& s, std::vector<event>& buf, uint64_t end, bool hold_tail, bool* held,
                      uint64_t& file_budget, bool* deferred, bool* read_files) {
  std::vector<event> picked;
  constexpr size_t scan_max = 16'384;
  if (buf.size() < scan_max) buf.resize(scan_max);  // once: reads fill it without clearing
  // Sends a frame to s and moves its cursor to `next`; false when the session is gone.
  auto put = [&](frame_ptr frame, uint64_t next) {
    if (!out_(s.session, std::move(frame))) {
      s.dead = true;
      return false;
    }
    frames_.fetch_add(1, std::memory_order_relaxed);
    s.cursor = next;
    return true;
  };
  for (int frames = 0; frames < 4; ++frames) {
    const uint64_t open = s.cursor - 1 - s.acked;
    if (s.cursor >= end || open >= s.req.window) return frames > 0;
    const uint64_t room = std::min<uint64_t>(s.req.window - open, end - s.cursor);
    std::string err;
    const bool filtered = s.req.types != 0 || !s.req.accounts.empty() || !s.req.gateways.empty();
    uint64_t want = std::min<uint64_t>(room, filtered ? scan_max : s.req.batch_max);
    // Packed frames start and end at group boundaries (128 offsets) where they can: the
    // writer's packed groups then serve as they are (event_log::read_packed), not read and
    // packed again. A cursor inside a group gets that group's rest alone first; a frame
    // ends at the last boundary before `want`; and the newest group's first events, while
    // the writer is appending whole groups at a time, wait for the rest of their group
    // (at most events_tail_hold_ms).
    constexpr uint64_t group = storage::event_format::group_events;
    if (!filtered && s.req.packed) {
      const uint64_t in_group = (s.cursor - 1) % group;
      if (in_group != 0) {
        want = std::min<uint64_t>(want, group - in_group);
      } else if (end - s.cursor < group && hold_tail &&
                 std::min<uint64_t>(s.req.batch_max, s.req.window - open) >= group) {
        // (Only where a whole group could go as written: not to frames or a window that
        // have room for less.)
        *held = true;
        return frames > 0;
      } else if (const uint64_t past = (s.cursor - 1 + want) % group; want > past) {
        want -= past;
      }
    }
    if (!filtered) {
      // Another subscriber at this place was sent these very events in this pass.
      const auto it = frames_this_pass_.find({s.cursor, want, s.req.batch_max, s.req.packed});
      if (it != frames_this_pass_.end()) {
        if (!put(it->second, s.cursor + want)) return true;
        continue;
      }
    }
    // (A probe damaging the next frame takes the read below, where it can change an event.)
    if (!filtered && s.req.packed && storage::failure_probes::instance().hub_damage_frames.load(std::memory_order_relaxed) <= 0) {
      packed_.clear();
      const size_t n = log_.read_packed(s.cursor, size_t(want), packed_);
      if (n > 0) {
        auto frame = std::make_shared<const std::vector<uint8_t>>(
            wire::events_frame_packed(packed_, uint32_t(n), s.cursor + n, end));
        if (n == want) frames_this_pass_[{s.cursor, want, s.req.batch_max, true}] = frame;
        if (!put(std::move(frame), s.cursor + n)) return true;
        frames_as_written_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
    }
    // Reads n events from `at` into buf; false when that ended the subscription (gone to
    // retention, or the log failed: s is told why) or the pass's file budget is spent
    // (*deferred).
    size_t got = 0;
    auto read_at = [&](uint64_t at, uint64_t n) {
      if (!log_.in_memory(at)) {
        if (file_budget == 0) {
          *deferred = true;
          got = 0;
          return false;
        }
        n = std::min(n, file_budget);
      }
      // (A read the ring was to serve goes to the files if the writer overwrote its slots
      // meanwhile: counted and charged too, though it may pass the budget, by one read of
      // each subscriber at the ring's trailing edge.)
      bool from_files = false;
      const auto st = log_.read(at, size_t(n), buf.data(), &got, &err, &from_files);
      events_read_.fetch_add(got, std::memory_order_relaxed);
      if (from_files) {
        file_budget -= std::min<uint64_t>(file_budget, got);
        file_events_read_.fetch_add(got, std::memory_order_relaxed);
        *read_files = true;
      }
      if (st == storage::event_log::read_status::truncated) {
        send(s.session, wire::encode_frame(
                            wire::frame_kind::error, 0,
                            wire::error_body({wire::protocol_error::events_truncated,
                                              "events from " + std::to_string(at) +
                                                  " are gone (retention); the oldest kept is " +
                                                  std::to_string(log_.first_offset()) + ": subscribe again"})));
        s.dead = true;
      } else if (st == storage::event_log::read_status::failed) {
        std::fprintf(stderr, "mesobd: %s\n", err.c_str());
        send(s.session, wire::encode_frame(wire::frame_kind::error, 0,
                                           wire::error_body({wire::protocol_error::events_failed,
                                                             "the event log could not be read at offset " +
                                                                 std::to_string(at) + ": " + err})));
        s.dead = true;
      }
      return !s.dead;
    };
    uint64_t next = s.cursor;
    std::span<const event> batch_events;
    if (!filtered) {
      // A frame is the next batch_max events, as read (no copy).
      if (!read_at(s.cursor, want)) return s.dead || frames > 0;
      if (got == 0) return frames > 0;
      if (auto& probe = storage::failure_probes::instance().hub_damage_frames;
          probe.load(std::memory_order_relaxed) > 0 && probe.fetch_sub(1) > 0)
        buf[got - 1].amount ^= 1;
      batch_events = std::span<const event>(buf.data(), got);
      next = batch_events.back().offset + 1;
    } else {
      // Up to 16,384 offsets are scanned for batch_max matches, in reads that start at
      // batch_max (at least 64) and double while matches are sparse: what is read past
      // the frame's last match (read again for the next frame) stays within the last
      // read, not the whole scan. (One read of 16,384 for a frame of one event cost a
      // batch_max of 1 16,384 events read an event delivered.)
      picked.clear();
      uint64_t step = std::max<uint64_t>(s.req.batch_max, 64);
      while (next < s.cursor + want && picked.size() < s.req.batch_max) {
        if (!read_at(next, std::min(step, s.cursor + want - next))) {
          if (s.dead) return true;
          break;  // deferred: the matches found so far go now
        }
        if (got == 0) break;
        for (size_t i = 0; i < got; ++i) {
          const event& e = buf[i];
          next = e.offset + 1;
          if (matches(s.req, e)) {
            picked.push_back(e);
            if (picked.size() == s.req.batch_max) break;
          }
        }
        step = std::min<uint64_t>(step * 2, scan_max);
      }
      if (next == s.cursor) return frames > 0;
      batch_events = picked;
    }
    auto frame = std::make_shared<const std::vector<uint8_t>>(wire::events_frame(batch_events, next, end, s.req.packed));
    if (!filtered && got == want) frames_this_pass_[{s.cursor, want, s.req.batch_max, s.req.packed}] = frame;
    if (!put(std::move(frame), next)) return true;
  }
  return true;
}

bool event_hub::on_hub(std::function<void()> job, std::string* error) {
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  {
    std::lock_guard lk(mu_);
    if (stop_ || !thread_.joinable()) {  // (stop() joins outside mu_, after setting stop_)
      *error = "the event hub is not running";
      return false;
    }
    command c{command::kind::job, 0, 0, 0, {}, {}};
    c.job = [job = std::move(job), done] {
      job();
      done->set_value();
    };
    commands_.push_back(std::move(c));
  }
  cv_.notify_one();
  if (finished.wait_for(std::chrono::milliseconds(hub_answer_ms)) == std::future_status::ready) return true;
  *error = "the event hub did not answer within " + std::to_string(hub_answer_ms) + " ms (it may still do it)";
  return false;
}

bool event_hub::names(std::vector<name_info>* out, std::string* error) {
  auto list = std::make_shared<std::vector<name_info>>();  // the job may outlive a timed-out wait
  if (!on_hub([this, list] {
        for (const auto& [name, st] : positions_) list->push_back({name, st.owner, st.acked, 0});
        for (const auto& [sess, s] : subs_) {
          if (s.req.name.empty()) continue;
          auto it = std::lower_bound(list->begin(), list->end(), s.req.name,
                                     [](const name_info& n, const std::string& k) { return n.name < k; });
          if (it != list->end() && it->name == s.req.name) it->session = sess;
        }
      }, error))
    return false;
  *out = std::move(*list);
  return true;
}

event_hub::forgotten event_hub::forget(const std::string& name, std::string* error) {
  struct outcome {
    forgotten f = forgotten::yes;
    std::string why;
  };
  auto out = std::make_shared<outcome>();
  if (!on_hub([this, name, out] {
        auto it = positions_.find(name);
        if (it == positions_.end()) {
          *out = {forgotten::unknown, "no subscriber named '" + name + "' is kept"};
          return;
        }
        for (const auto& [sess, s] : subs_)
          if (s.req.name == name) {
            *out = {forgotten::held, "session " + std::to_string(sess) + " holds '" + name + "' now"};
            return;
          }
        // Saved before the answer, as claims are: a crash after "forgotten" must not bring
        // the name and its owner back. A failed save keeps it.
        auto kept = std::move(it->second);
        positions_.erase(it);
        std::string err;
        if (!save(&err)) {
          // (The file may have gone out without it, its directory not synced: saved again.)
          positions_.emplace(name, std::move(kept));
          positions_dirty_ = true;
          *out = {forgotten::not_saved, "'" + name + "' is kept: " + err};
        }
      }, error))
    return forgotten::no_answer;
  if (out->f != forgotten::yes) *error = out->why;
  return out->f;
}

void event_hub::publish_live() {
  std::vector<uint64_t> live;
  live.reserve(subs_.size());
  for (const auto& [sess, s] : subs_) live.push_back(sess);  // (subs_ is ordered by session)
  std::lock_guard lk(mu_);
  live_sessions_ = std::move(live);
}

void event_hub::run() {
  std::vector<event> buf;
  seen_end_ = log_.written_end();  // what was written before the hub started is no step
  auto last_save = std::chrono::steady_clock::now();
  for (;;) {
    std::vector<command> cmds;
    bool stopping;
    if (const int stall = storage::failure_probes::instance().hub_stall_ms.exchange(0); stall > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(stall));
    {
      std::lock_guard lk(mu_);
      cmds.swap(commands_);
      acks_queued_.clear();
      subscribes_queued_.clear();
      stopping = stop_;
      out_ = send_;
      bytes_max_ = session_bytes_max_;
    }
    for (auto& c : cmds) apply(c);
    if (!cmds.empty()) publish_live();
    bool busy = false, held = false;
    std::vector<uint64_t> window_full;  // sessions (subs_ is ordered by session)
    // Read before the end: every event written before the writer failed is under it.
    const bool writer_failed = writer_.failed();
    const uint64_t end = log_.written_end();
    auto now = std::chrono::steady_clock::now();
    const auto hold = std::chrono::milliseconds(events_tail_hold_ms);
    if (end != seen_end_) {  // (a recovery's cut moves it back)
      last_step_ = end > seen_end_ ? end - seen_end_ : 0;
      seen_end_ = end;
      busy_writer_ = now - advanced_at_ < std::chrono::milliseconds(events_busy_gap_ms);
      advanced_at_ = now;
    }
    // The writer appends many groups at a time, the last two appends close together (it
    // is busy): more follows soon, so a partial newest group can wait for it. A lone
    // append after a quiet spell is sent as it comes.
    const auto hold_until = advanced_at_ + hold;
    const bool hold_tail =
        !stopping && busy_writer_ && last_step_ >= storage::event_format::group_events && now < hold_until;
    frames_this_pass_.clear();
    // Subscribers catching up from the files take turns at going first, where the whole
    // budget is theirs: the pass starts after the first that read from the files last time.
    std::vector<uint64_t> order;
    order.reserve(subs_.size());
    for (auto it = subs_.lower_bound(first_turn_); it != subs_.end(); ++it) order.push_back(it->first);
    for (auto it = subs_.begin(); it != subs_.end() && it->first < first_turn_; ++it) order.push_back(it->first);
    uint64_t file_budget = hub_file_events_per_pass;
    const uint64_t file_events_before = file_events_read_.load(std::memory_order_relaxed);
    std::optional<uint64_t> first_reader;
    for (const uint64_t session : order) {
      auto it = subs_.find(session);
      sub& s = it->second;
      bool deferred = false, read_files = false;
      busy |= serve(s, buf, end, hold_tail, &held, file_budget, &deferred, &read_files);
      busy |= deferred;  // another pass at once
      if (read_files && !first_reader) first_reader = session;
      // Sent and acknowledged all there is (its last acks are taken first): no more will come.
      if (!s.dead && writer_failed && s.cursor >= end && s.acked + 1 >= end) {
        send(s.session, wire::encode_frame(wire::frame_kind::error, 0,
                                           wire::error_body({wire::protocol_error::events_failed,
                                                             "the event writer failed (" + writer_.error() +
                                                                 "): no event after offset " + std::to_string(end - 1) +
                                                                 " comes until the engine restarts"})));
        s.dead = true;
      }
      if (!s.dead && s.cursor < end && s.cursor - 1 - s.acked >= s.req.window) window_full.push_back(s.session);
      if (s.dead) retire(session);
    }
    if (first_reader) first_turn_ = *first_reader + 1;
    std::sort(window_full.begin(), window_full.end());
    {
      const uint64_t read = file_events_read_.load(std::memory_order_relaxed) - file_events_before;
      uint64_t most = file_events_pass_max_.load(std::memory_order_relaxed);
      if (read > most) file_events_pass_max_.store(read, std::memory_order_relaxed);
    }
    {
      std::vector<subscriber_info> list;
      uint64_t reserved = 0;
      for (const auto& [sess, s] : subs_) {
        list.push_back({s.req.name, sess, s.acked, s.cursor - 1, end - 1 > s.acked ? end - 1 - s.acked : 0});
        reserved += window_bytes(s.req);
      }
      for (const auto& [sess, e] : ended_) reserved += e.bytes;
      windows_reserved_.store(reserved, std::memory_order_relaxed);
      std::lock_guard lk(mu_);
      listing_ = std::move(list);
    }
    publish_live();
    now = std::chrono::steady_clock::now();
    if (positions_dirty_ && (stopping || now - last_save >= std::chrono::milliseconds(100))) {
      std::string err;
      if (save(&err)) positions_dirty_ = false;
      else std::fprintf(stderr, "mesobd: %s\n", err.c_str());
      last_save = now;
    }
    if (stopping) break;
    if (busy) continue;
    std::unique_lock lk(mu_);
    window_full_.swap(window_full);
    // Waking at least every ack_apply_ms takes the acks that did not wake it (and saves
    // the positions they moved).
    // (And when the hold of a partial group ends.)
    const auto until = held ? std::min(hold_until, now + std::chrono::milliseconds(ack_apply_ms))
                            : now + std::chrono::milliseconds(ack_apply_ms);
    cv_.wait_until(lk, until, [&] { return stop_ || wake_ || !commands_.empty(); });
    wake_ = false;
  }
}

}  // namespace mesob::engine
