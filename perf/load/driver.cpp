#include "perf/load/driver.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <thread>
#include <unordered_set>

#include "wire/json_text.hpp"

namespace mesob::load {
namespace {

using clk = std::chrono::steady_clock;
constexpr uint32_t window_limit = 1024;
constexpr size_t problems_max = 10;

uint64_t ns_between(clk::time_point a, clk::time_point b) {
  return uint64_t(std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count()));
}

// One connection: its sender thread (but for a pipelined open loop), and what its answers add up to.
struct connection_state {
  // Closing the connection first: its outstanding callbacks complete while the rest lives.
  ~connection_state() { c.reset(); }
  std::unique_ptr<target_connection> c;
  std::counting_semaphore<window_limit> slots{0};
  std::thread sender;
  std::mutex mu;  // everything below
  hdr_histogram all, interval;
  uint64_t requests = 0, transfers = 0, transfers_ok = 0, failed = 0;
  uint64_t warmup_requests = 0, warmup_ok = 0, warmup_failed = 0;  // answered (or failed) in the warm-up
  uint64_t pendings_ok = 0, posts_ok = 0;  // two-phase
  uint64_t interval_requests = 0, interval_transfers = 0;
  std::map<wire::result, uint64_t> results;
  std::map<std::string, uint64_t> failures;
  std::deque<uint64_t> posts_ready;       // two-phase: pendings acknowledged, to be posted
  std::vector<uint64_t> acked_ok;          // verify: id.lo of every transfer acknowledged ok
  std::vector<uint64_t> unknown;           // verify: id.lo of transfers of failed requests
  std::atomic<bool> failing_now{false};    // its latest answer was a failure
  uint32_t index = 0;                      // equb: this connection's groups are index mod N
  uint64_t next_j = 0;                     // equb: its next item in its own order
};

struct shared_run {
  shared_run(const workload& w_, const run_options& o_, const account_layout& l) : w(w_), o(o_), layout(l) {}
  const workload& w;
  const run_options& o;
  const account_layout& layout;
  std::atomic<uint64_t> next_k{1};
  clk::time_point measure_from;  // the warm-up's end: what is answered (or sent) before it is not measured
  std::atomic<bool> stop{false};
  // Open loop: every request due before the end is sent however late; past the drain
  // timeout the senders give up, and what is still unsent counts as failed.
  std::atomic<bool> abandon{false};
  std::atomic<uint32_t> open_senders{0};  // open-loop pacer or senders still sending
  std::atomic<uint32_t> senders_done{0};  // senders whose items ran out
  std::atomic<uint64_t> outstanding{0};
  std::mutex done_mu;
  std::condition_variable done_cv;
  clk::time_point last_answer;
  std::unique_ptr<std::atomic<int64_t>[]> expect;  // verify: posted balance change per account
  std::atomic<int64_t> from_outside{0};  // verify: deposits applied (from a settlement account)
  // One pair for the run, not per connection (a histogram is 336 KiB): requests failed
  // are few, and the open loop's sends come from one pacer or one sender a connection.
  std::mutex lag_mu;       // the two below
  hdr_histogram send_lag;  // open loop: how late each request left after its due time
  hdr_histogram failed_latency;  // from the due (or send) time to the failure
};

// Requests due at `dues` handed to their connection at `sent` (in the warm-up: not measured).
void note_send_lag(shared_run& s, std::span<const clk::time_point> dues, clk::time_point sent) {
  if (sent < s.measure_from) return;
  std::lock_guard lk(s.lag_mu);
  for (const auto due : dues) s.send_lag.record(ns_between(due, sent));
}

// What transfer t (applied, posted) moves: between load accounts, or from outside (a
// deposit: debit 0) or to outside (a payout: credit 0).
void add_expected(shared_run& s, const wire::transfer& t) {
  const auto a = int64_t(t.amount);
  if (t.debit_account_id == 0) s.from_outside.fetch_add(a, std::memory_order_relaxed);
  else s.expect[t.debit_account_id - s.w.first_account].fetch_sub(a, std::memory_order_relaxed);
  if (t.credit_account_id == 0) s.from_outside.fetch_sub(a, std::memory_order_relaxed);
  else s.expect[t.credit_account_id - s.w.first_account].fetch_add(a, std::memory_order_relaxed);
}

// What an item applied by the target moves, as far as known when it is applied: a
// transfer, a deposit, the post of a two-phase pending; nothing for a pending or a
// payout's hold (a payout moves money when its gateway settles it).
void expect_applied(shared_run& s, uint64_t k) {
  if (s.w.held()) return;
  if (!s.w.two_phase) add_expected(s, make_transfer(s.w, s.layout, k));
  else if (k & post_tag) add_expected(s, make_transfer(s.w, s.layout, k & ~post_tag));
}

void on_answer(shared_run& s, connection_state& st, const std::vector<uint64_t>& ks, clk::time_point intended,
               batch_outcome&& r) {
  const auto now = clk::now();
  const uint64_t lat = ns_between(intended, now);
  // The warm-up is what is answered before its end, whenever sent: a closed loop's window
  // still full of the warm-up's requests then is answered in the measured time, and its
  // answers count there (counting by send time left them out of the throughput while their
  // time was in it: a run with an answer's wait of L measured D / (D + L) of its rate).
  const bool measured = now >= s.measure_from;
  {
    std::lock_guard lk(st.mu);
    // Latency is of answered requests: a failed one may never have left (a broken
    // connection fails it at once), and its microseconds would pull every percentile down.
    if (r.failure.empty()) {
      if (measured) st.all.record(lat);
      st.interval.record(lat);
    }
    if (!r.failure.empty()) {
      {
        std::lock_guard lk2(s.lag_mu);
        s.failed_latency.record(lat);
      }
      ++st.failed;
      if (!measured) ++st.warmup_failed;
      ++st.failures[r.failure];
      st.failing_now = true;
      if (s.o.verify && r.maybe_applied) st.unknown.insert(st.unknown.end(), ks.begin(), ks.end());
    } else {
      st.failing_now = false;
      ++(measured ? st.requests : st.warmup_requests);
      ++st.interval_requests;
      if (measured) st.transfers += ks.size();
      for (size_t i = 0; i < ks.size(); ++i) {
        if (measured) ++st.results[r.results[i]];
        if (r.results[i] != wire::result::ok) continue;
        ++(measured ? st.transfers_ok : st.warmup_ok);
        ++st.interval_transfers;  // the timeline counts what the headline does (and the warm-up's)
        const bool post = ks[i] & post_tag;
        if (s.w.two_phase) {
          if (measured) ++(post ? st.posts_ok : st.pendings_ok);
          if (!post) st.posts_ready.push_back(ks[i]);
        }
        if (s.o.verify) st.acked_ok.push_back(ks[i]);  // (what it moved: verify() works it out)
      }
    }
  }
  st.slots.release();
  {
    std::lock_guard lk(s.done_mu);
    s.last_answer = std::max(s.last_answer, now);
    --s.outstanding;
  }
  s.done_cv.notify_all();
}

// A connection's equb groups: index, index + N, ... (N connections).
uint64_t equb_groups_of(const shared_run& s, const connection_state& st) {
  const uint64_t groups = s.w.equb_groups(), n = s.o.connections;
  return st.index < groups ? (groups - st.index + n - 1) / n : 0;
}
// Its equb payments in all: every seat of its groups, rounds 2 .. seats.
uint64_t equb_items_of(const shared_run& s, const connection_state& st) {
  return equb_groups_of(s, st) * s.w.equb_seats * (s.w.equb_seats - 1);
}

// The next request of a connection: posts of its acknowledged pendings first (at most
// half the batch, rounded up), then new transfers.
std::vector<wire::transfer> next_batch(shared_run& s, connection_state& st, std::vector<uint64_t>* ks) {
  std::vector<wire::transfer> b;
  b.reserve(s.w.batch);
  ks->clear();
  if (s.w.two_phase) {
    std::lock_guard lk(st.mu);
    // Up to half the batch rounded up: as many posts as new pendings, or more, so that
    // with an odd batch the pendings waiting for their posts do not grow.
    while (!st.posts_ready.empty() && b.size() < (s.w.batch + 1) / 2) {
      const uint64_t k = st.posts_ready.front();
      st.posts_ready.pop_front();
      b.push_back(make_post(s.w, k));
      ks->push_back(post_tag | k);
    }
  }
  if (s.w.kind == item_kind::equb) {
    // This connection's groups (index, index + N, ...), round after round: a round's
    // payments go out before the next round's on the same connection, so the engine
    // sequences them in that order. Within a round, blocks of a batch's worth of groups,
    // each seat by seat across the block, as a client batching contributions should:
    // consecutive payments go to different escrows, so a shard can set a cross-shard one
    // aside (perf/RESULTS.md, 2026-11-29), and a batch touches few groups.
    const uint64_t n = s.o.connections, seats = s.w.equb_seats, mine = equb_groups_of(s, st);
    const uint64_t per_round = mine * seats, total = equb_items_of(s, st);
    const uint64_t block = std::max<uint64_t>(1, s.w.batch / seats);  // groups
    for (; b.size() < s.w.batch && st.next_j < total; ++st.next_j) {
      const uint64_t in_round = st.next_j % per_round, first = in_round / (block * seats) * block;
      const uint64_t in_block = in_round - first * seats, size = std::min(block, mine - first);
      const equb_item it{st.index + (first + in_block % size) * n, uint32_t(2 + st.next_j / per_round),
                         uint32_t(in_block / size)};
      const uint64_t k = equb_k(s.w, it);
      b.push_back(make_transfer(s.w, s.layout, k));
      ks->push_back(k);
    }
    return b;
  }
  const uint64_t fresh = s.w.batch - b.size();
  const uint64_t k0 = s.next_k.fetch_add(fresh);
  for (uint64_t k = k0; k < k0 + fresh; ++k) {
    b.push_back(make_transfer(s.w, s.layout, k));
    ks->push_back(k);
  }
  return b;
}

// The connection's next request, its latency counted from `due` (open loop), or from when
// its batch is made (closed loop: the generator's making of it is not the target's
// time); none when its items ran out (its slot is given back).
std::optional<target_connection::submission> prepare(shared_run& s, connection_state& st,
                                                     std::optional<clk::time_point> due) {
  auto ks = std::make_shared<std::vector<uint64_t>>();
  auto b = next_batch(s, st, ks.get());
  if (b.empty()) {
    st.slots.release();
    s.senders_done.fetch_add(1);
    return std::nullopt;
  }
  const clk::time_point intended = due ? *due : clk::now();
  ++s.outstanding;
  return target_connection::submission{
      std::move(b), [&s, &st, ks, intended](batch_outcome&& r) { on_answer(s, st, *ks, intended, std::move(r)); }};
}

// False when the connection's items ran out (nothing sent; its slot is given back).
bool send_one(shared_run& s, connection_state& st, std::optional<clk::time_point> due) {
  auto sub = prepare(s, st, due);
  if (!sub) return false;
  st.c->submit(std::move(sub->batch), std::move(sub->done));
  return true;
}

bool take_slot(shared_run& s, connection_state& st) {
  while (!s.stop.load()) {
    if (st.slots.try_acquire_for(std::chrono::milliseconds(50))) {
      if (!s.stop.load()) return true;
      st.slots.release();
      return false;
    }
  }
  return false;
}

void sender_closed(shared_run& s, connection_state& st) {
  while (take_slot(s, st)) {
    // A connection failing its requests (broken, reconnecting) is not spun on: at most
    // 100 requests a second go to it until one is answered.
    if (st.failing_now.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!send_one(s, st, std::nullopt)) return;
  }
}

// The open loop's wait for a slot: past the end too (what was due before it still
// leaves), until the run gives up at the drain timeout.
bool take_slot_open(shared_run& s, connection_state& st) {
  while (!s.abandon.load())
    if (st.slots.try_acquire_for(std::chrono::milliseconds(50))) return true;
  return false;
}

// When request j of the open loop is due.
clk::time_point due_at(const shared_run& s, clk::time_point start, uint64_t j) {
  return start + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(double(s.w.batch) / s.o.rate) *
                                                           double(j));
}
// The open loop sends only requests due before this, however late the run's main thread
// wakes to stop it (a busy machine woke it 20 ms late: 304 requests of 300).
clk::time_point open_end(const shared_run& s, clk::time_point start) {
  return start + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(s.o.warmup_s + s.o.duration_s));
}

// The requests connection `st` would still send before its items run out: equb's
// (rounds of its groups, a batch at a time); no bound (UINT64_MAX) for workloads whose
// items do not run out.
uint64_t requests_left(const shared_run& s, const connection_state& st) {
  if (s.w.kind != item_kind::equb) return UINT64_MAX;
  const uint64_t total = equb_items_of(s, st);
  return total > st.next_j ? (total - st.next_j + s.w.batch - 1) / s.w.batch : 0;
}
uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

// Requests due before the end that never left by the drain timeout (the target's window
// stayed full, or a synchronous target's sender fell behind): failed, each counted once,
// its time to failure from its due time to now (requests j, j + step, ... due before
// the end; at most `left`, the requests the workload still had: equb's items run out).
void count_unsent(shared_run& s, connection_state& st, clk::time_point start, uint64_t j, uint64_t step,
                  uint64_t left = UINT64_MAX) {
  const auto end = open_end(s, start), now = clk::now();
  uint64_t n = 0;
  {
    std::lock_guard lk(s.lag_mu);
    for (; n < left && due_at(s, start, j) < end; j += step, ++n)
      s.failed_latency.record(ns_between(due_at(s, start, j), now));
  }
  if (n == 0) return;
  std::lock_guard lk(st.mu);
  st.failed += n;
  st.failures["not sent: still due at the drain timeout (the window full, or the sender behind)"] += n;
}

// Open loop: request j is due at start + j / rate (in requests); its latency counts from
// then, however late it leaves.
//
// Pipelined targets (mesob) get one pacing thread for every connection: at 35,000
// requests/s over 8 connections on two cores a sleeping sender per connection took
// CPU the engine under test needs (perf/RESULTS.md, 2026-12-01). Each time the pacer
// wakes, every request due by then (up to `coalesce_max`, and the window's room) leaves
// on the next connection in turn, in one write, as a client multiplexing its callers
// sends what is ready. A connection whose items ran out (equb) is passed over. A full
// window on one connection holds the requests due on the others too (they count from
// their due times all the same).
constexpr size_t coalesce_max = 64;

void pacer_open(shared_run& s, std::vector<std::unique_ptr<connection_state>>& cs, clk::time_point start) {
  const auto due_of = [&](uint64_t j) { return due_at(s, start, j); };
  const size_t n = cs.size();
  std::vector<bool> done(n);
  size_t left = n, next = 0;
  std::vector<target_connection::submission> ready;
  std::vector<clk::time_point> dues;
  const auto end = open_end(s, start);
  for (uint64_t j = 0; left > 0 && due_of(j) < end;) {
    std::this_thread::sleep_until(due_of(j));
    while (done[next % n]) ++next;  // left > 0: one is not done
    const size_t c = next++ % n;
    connection_state& st = *cs[c];
    if (s.abandon.load() || !take_slot_open(s, st)) {  // (a pacer behind with slots free too)
      uint64_t still = 0;  // equb: what the connections' items still make; else no bound
      for (size_t i = 0; i < n; ++i) still = done[i] ? still : sat_add(still, requests_left(s, *cs[i]));
      count_unsent(s, st, start, j, 1, still);
      break;
    }
    const auto now = clk::now();
    for (;;) {
      auto sub = prepare(s, st, due_of(j));
      if (!sub) {
        done[c] = true;
        --left;
        break;
      }
      ready.push_back(std::move(*sub));
      dues.push_back(due_of(j));
      ++j;
      if (ready.size() == coalesce_max || due_of(j) > now || due_of(j) >= end || !st.slots.try_acquire()) break;
    }
    // (Their lateness runs to the hand-over, after the batches were made: with 64 of
    // 8,192 transfers the making alone takes milliseconds.)
    if (!ready.empty()) st.c->submit_all(std::move(ready));
    note_send_lag(s, dues, clk::now());
    ready.clear();
    dues.clear();
  }
}

// Synchronous targets (PostgreSQL, Redis: a window of 1, the request runs inside
// submit) keep a sender per connection on the same schedule, so that N connections
// have N requests under way.
void sender_open(shared_run& s, connection_state& st, uint32_t index, clk::time_point start) {
  const uint32_t n = s.o.connections;
  const auto end = open_end(s, start);
  for (uint64_t j = index;; j += n) {
    const auto due = due_at(s, start, j);
    if (due >= end) break;
    std::this_thread::sleep_until(due);
    // Past the drain timeout what is still due is not sent: a synchronous target answers
    // inside submit, so its slot is always free again and only this look stops a sender
    // that fell behind (before, an overloaded run went on until it had sent everything).
    if (s.abandon.load() || !take_slot_open(s, st)) {
      count_unsent(s, st, start, j, n);
      break;
    }
    const auto now = clk::now();
    if (!send_one(s, st, due)) return;  // (a synchronous target answers inside)
    note_send_lag(s, {&due, 1}, now);
  }
}

std::string fmt_ns(uint64_t ns) {
  char b[32];
  if (ns < 10'000) std::snprintf(b, sizeof b, "%.2f us", double(ns) / 1e3);
  else if (ns < 10'000'000) std::snprintf(b, sizeof b, "%.1f us", double(ns) / 1e3);
  else std::snprintf(b, sizeof b, "%.1f ms", double(ns) / 1e6);
  return b;
}

// Collects the per-second figures of every connection.
interval_row take_interval(std::vector<std::unique_ptr<connection_state>>& cs, double t) {
  hdr_histogram h, took;
  interval_row row;
  row.t_s = t;
  for (auto& c : cs) {
    {
      // A clean histogram swapped in under the lock the answers take; the second's merged
      // outside it (merging under it held every answer of the connection a while).
      std::lock_guard lk(c->mu);
      c->interval.swap(took);
      row.transfers += c->interval_transfers;
      row.requests += c->interval_requests;
      c->interval_transfers = c->interval_requests = 0;
    }
    h.merge(took);
    took.reset();
  }
  row.p50_ns = h.percentile(50);
  row.p99_ns = h.percentile(99);
  row.max_ns = h.max();
  return row;
}

void verify(target& t, shared_run& s, std::vector<std::unique_ptr<connection_state>>& cs, verify_report* v) {
  const workload& w = s.w;
  v->ran = true;
  const auto problem = [&](std::string p) {
    if (v->problems.size() < problems_max) v->problems.push_back(std::move(p));
  };
  const auto id_of = [&](uint64_t k) {
    return k & post_tag ? make_post(w, k & ~post_tag).id : make_transfer(w, s.layout, k).id;
  };
  std::vector<uint64_t> acked, unknown;
  for (auto& c : cs) {
    acked.insert(acked.end(), c->acked_ok.begin(), c->acked_ok.end());
    unknown.insert(unknown.end(), c->unknown.begin(), c->unknown.end());
  }
  // What the acknowledged ones moved: worked out here, not as each answer came (the
  // answers' thread making every transfer again slowed the run --verify measured).
  for (const uint64_t k : acked) expect_applied(s, k);
  std::string err;
  // Looks the transfers of `ks` up, 65,536 at a time: fn(k, what the target holds).
  const auto look_up = [&](const std::vector<uint64_t>& ks, const auto& fn) {
    std::vector<found_transfer> found;
    for (size_t at = 0; at < ks.size(); at += 65536) {
      std::vector<wire::id128> ids;
      for (size_t i = at; i < std::min(ks.size(), at + 65536); ++i) ids.push_back(id_of(ks[i]));
      if (!t.find_transfers(ids, &found, &err)) return false;
      for (size_t i = 0; i < ids.size(); ++i) fn(ks[at + i], found[i]);
    }
    return true;
  };
  // Two-phase: the pendings and posts the target applied (acknowledged, or found after a
  // failed request), for what must stay pending at the end.
  std::vector<uint64_t> applied_two_phase;
  if (w.two_phase) applied_two_phase = acked;
  // Transfers of failed requests: applied or not, as the target says; count what it applied.
  if (!look_up(unknown, [&](uint64_t k, const found_transfer& f) {
        ++v->unknown_resolved;
        if (!f.found) return;
        expect_applied(s, k);
        if (w.two_phase) applied_two_phase.push_back(k);
        // held: its outcome counts; an equb payment: its round's count
        if (w.held() || w.kind == item_kind::equb) acked.push_back(k);
      }))
    return problem("looking up transfers of failed requests: " + err);
  // Every acknowledged transfer is there, with the fields it was sent with (deposits:
  // all from one account, the gateway's settlement account).
  uint64_t payer = 0;
  if (!look_up(acked, [&](uint64_t k, const found_transfer& f) {
        ++v->transfers_checked;
        if (!f.found) {
          problem("acknowledged transfer " + std::to_string(k) + " is missing");
          return;
        }
        if (w.kind == item_kind::deposits) {
          if (payer == 0) payer = f.debit_account_id;
          if (f.debit_account_id != payer)
            problem("deposit " + std::to_string(k) + " was paid by account " + std::to_string(f.debit_account_id) +
                    ", the others by " + std::to_string(payer));
        }
        if (k & post_tag) return;  // a post: found is all it promises
        const auto e = make_transfer(w, s.layout, k);
        // A deposit's debit is the gateway's settlement account and a payout hold's credit
        // a desk's payout account, which the load does not know.
        if ((e.debit_account_id != 0 && f.debit_account_id != e.debit_account_id) ||
            (e.credit_account_id != 0 && f.credit_account_id != e.credit_account_id) || f.amount != e.amount ||
            f.pending != bool(e.flags & wire::transfer_flags::pending))
          problem("transfer " + std::to_string(k) + " differs from what was sent");
      }))
    return problem("looking up acknowledged transfers: " + err);
  // Payouts and orders: every held item ends as its gateway or broker answered (settled or
  // filled: the amount left its account; failed or rejected: the hold was voided), within
  // the drain timeout.
  if (w.held()) {
    if (!s.o.held_outcome) return problem(std::string(w.item_name()) + ": no answers to verify against");
    const auto until = clk::now() + std::chrono::duration<double>(s.o.drain_timeout_s);
    std::vector<uint64_t> open = acked;
    while (!open.empty()) {
      std::vector<uint64_t> still;
      for (const uint64_t k : open) {
        const int out = s.o.held_outcome(make_transfer(w, s.layout, k).id.lo);
        if (out == 0) still.push_back(k);
        else if (out == 1) add_expected(s, make_transfer(w, s.layout, k));
      }
      open.swap(still);
      if (open.empty() || clk::now() > until) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!open.empty())
      return problem(std::to_string(open.size()) + " acknowledged " + w.item_name() + " were never answered (" +
                     std::to_string(make_transfer(w, s.layout, open[0]).id.lo) + " the first)");
  }
  // Equb: what setup moved (every seat's join into escrow; round 1 paid to seat 0 at the
  // start) and what each round the payments completed paid out (fixed order: round r to
  // seat r - 1, the pot less the fee; the fee to the fee account). A group's rounds
  // complete in order: a round paid before the one before it closed is a problem.
  if (w.kind == item_kind::equb) {
    const uint64_t groups = w.equb_groups(), seats = w.equb_seats, pot = w.equb_pot(), fee = w.equb_fee();
    const auto at = [&](uint64_t account) -> std::atomic<int64_t>& { return s.expect[account - w.first_account]; };
    std::vector<uint32_t> paid(groups * (seats + 1), 0);
    for (const uint64_t k : acked) {
      const auto it = equb_item_of(w, k);
      ++paid[it.group * (seats + 1) + it.round];
    }
    for (uint64_t g = 0; g < groups; ++g) {
      const auto close = [&](uint32_t round) {
        at(w.group_id(g)) -= int64_t(pot);
        at(w.first_account + g * seats + round - 1) += int64_t(pot - fee);
        at(w.fee_account()) += int64_t(fee);
      };
      for (uint32_t seat = 0; seat < seats; ++seat) {
        at(w.first_account + g * seats + seat) -= int64_t(w.amount_max);
        at(w.group_id(g)) += int64_t(w.amount_max);
      }
      close(1);
      bool open = false;  // a round before this one did not complete
      for (uint32_t r = 2; r <= seats; ++r) {
        const uint32_t n = paid[g * (seats + 1) + r];
        if (n > 0 && open) problem("group " + std::to_string(g) + " was paid round " + std::to_string(r) +
                                   " before the round before it completed");
        if (n == seats && !open) close(r);
        else open = true;
      }
    }
  }
  // Balances: each account holds its opening balance plus what the acknowledged (and
  // found) transfers moved; and money is conserved: the funding account's debit is
  // exactly what the accounts hold, less what deposits brought in and plus what payouts
  // took out. (A payout's post follows its answer at once, an equb round's payout its
  // last payment; a few reads allow for them.)
  const uint64_t tracked = w.tracked_accounts();
  const auto opening = [&](uint64_t i) { return i < w.accounts ? int64_t(w.opening) : 0; };
  // (Reading stops at a match, after 5 s, or when 1 s of reads saw nothing move.)
  int64_t funding = 0;
  std::vector<int64_t> net, before;
  for (int attempt = 0, still = 0;; ++attempt) {
    if (!t.read_balances(w, &funding, &net, &err)) return problem("reading balances: " + err);
    bool match = net.size() == tracked;
    for (uint64_t i = 0; match && i < tracked; ++i) match = net[i] == opening(i) + s.expect[i].load();
    still = net == before ? still + 1 : 0;
    if (match || w.kind == item_kind::transfers || w.kind == item_kind::deposits || attempt == 50 || still == 10)
      break;
    before = net;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // Payouts and orders: every hold was posted or voided (a failed answer's void, say, not lost).
  if (w.held()) {
    std::vector<uint64_t> pending;
    for (int attempt = 0;; ++attempt) {  // (a void follows its answer at once; a few reads allow for it)
      if (!t.read_pending_debits(w, &pending, &err)) return problem("reading pending debits: " + err);
      if (std::all_of(pending.begin(), pending.end(), [](uint64_t p) { return p == 0; }) || attempt == 50) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    for (uint64_t i = 0; i < pending.size(); ++i)
      if (pending[i] != 0) {
        problem("account " + std::to_string(w.first_account + i) + " still holds " + std::to_string(pending[i]) +
                " for " + w.item_name() + " after every one was answered");
        break;
      }
  }
  // Two-phase: each account's pending debits are exactly its pendings applied and not
  // posted. (A post that left its pending's amount held, or a pending held twice, leaves
  // every posted balance right and shows here only.)
  if (w.two_phase) {
    std::unordered_set<uint64_t> posted;
    for (const uint64_t k : applied_two_phase)
      if (k & post_tag) posted.insert(k & ~post_tag);
    std::vector<uint64_t> want(w.accounts, 0);
    for (const uint64_t k : applied_two_phase)
      if (!(k & post_tag) && !posted.count(k)) {
        const auto p = make_transfer(w, s.layout, k);
        want[p.debit_account_id - w.first_account] += p.amount;
      }
    std::vector<uint64_t> pending;
    if (!t.read_pending_debits(w, &pending, &err)) return problem("reading pending debits: " + err);
    if (pending.size() != want.size()) return problem("reading pending debits: wrong number of accounts");
    for (uint64_t i = 0; i < want.size(); ++i)
      if (pending[i] != want[i]) {
        problem("account " + std::to_string(w.first_account + i) + " holds " + std::to_string(pending[i]) +
                " pending, expected " + std::to_string(want[i]) + " (its pendings applied and not posted)");
        break;
      }
  }
  if (net.size() != tracked) return problem("reading balances: wrong number of accounts");
  int64_t sum = funding;  // (opening x accounts fits: workload::check)
  for (uint64_t i = 0; i < tracked; ++i) {
    ++v->accounts_checked;
    sum += net[i];
    const int64_t want = opening(i) + s.expect[i].load();
    if (net[i] != want)
      problem("account " + std::to_string(w.first_account + i) + " holds " + std::to_string(net[i]) +
              ", expected " + std::to_string(want));
  }
  if (sum != s.from_outside.load())
    problem("money is not conserved: the accounts and the funding account sum to " + std::to_string(sum) +
            ", deposits brought in " + std::to_string(s.from_outside.load()));
  const int64_t funding_want = -int64_t(w.opening * w.accounts);
  if (funding != funding_want)
    problem("the funding account holds " + std::to_string(funding) + ", expected " + std::to_string(funding_want));
  v->ok = v->problems.empty();
}

}  // namespace

std::string run_options_problem(const run_options& o, uint32_t batch) {
  if (o.connections == 0 || o.connections > 1024) return "connections: 1 .. 1,024";
  if (o.window == 0 || o.window > window_limit) return "window: 1 .. 1,024";
  // (Written so that NaN fails too.)
  if (!(o.rate >= 0 && o.rate <= 1e9)) return "rate must be 0 .. 1e9 a second";
  if (!(o.duration_s > 0 && o.duration_s <= 7 * 86400.0)) return "duration must be over 0 and at most a week";
  if (!(o.warmup_s >= 0 && o.warmup_s <= 3600)) return "warm-up must be 0 .. 3,600 s";
  // An open loop sends request j at j x batch / rate: fewer than two in the duration
  // measures one request, not a rate.
  if (o.rate > 0 && o.rate * o.duration_s < 2.0 * batch) {
    char why[160];
    std::snprintf(why, sizeof why, "rate %g a second for %g s sends fewer than two requests of %u: raise the rate or "
                  "the duration", o.rate, o.duration_s, batch);
    return why;
  }
  return {};
}

bool run_load(target& t, const workload& w, const run_options& o, run_report* out, std::string* error) {
  if (auto why = run_options_problem(o, w.batch); !why.empty() || !(why = w.check_layout()).empty()) {
    *error = why;
    return false;
  }
  if (const auto why = t.supports(w); !why.empty()) {
    *error = why;
    return false;
  }
  const account_layout layout(w);
  shared_run s(w, o, layout);
  if (o.verify) {
    s.expect = std::make_unique<std::atomic<int64_t>[]>(w.tracked_accounts());
    for (uint64_t i = 0; i < w.tracked_accounts(); ++i) s.expect[i] = 0;
  }
  std::vector<std::unique_ptr<connection_state>> cs;
  for (uint32_t i = 0; i < o.connections; ++i) {
    auto st = std::make_unique<connection_state>();
    st->c = t.connect(w, error);
    if (!st->c) {
      *error = "connection " + std::to_string(i + 1) + ": " + *error;
      return false;
    }
    const uint32_t window = std::min({o.rate > 0 ? window_limit : o.window, st->c->window_max(), window_limit});
    st->slots.release(std::max<uint32_t>(1, window));
    out->window = std::max(out->window, std::max<uint32_t>(1, window));
    st->index = i;
    cs.push_back(std::move(st));
  }
  out->target = t.name();
  out->workload = w.describe();
  out->mode = o.rate > 0 ? "open" : "closed";
  out->items = w.item_name();
  const auto start = clk::now();
  s.measure_from = start + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(o.warmup_s));
  s.last_answer = s.measure_from;
  const bool pipelined = std::all_of(cs.begin(), cs.end(), [](auto& c) { return c->c->window_max() > 1; });
  std::thread pacer;
  if (o.rate > 0 && pipelined) {
    s.open_senders = 1;
    pacer = std::thread([&s, &cs, start] {
      pacer_open(s, cs, start);
      --s.open_senders;
    });
  } else {
    if (o.rate > 0) s.open_senders = o.connections;
    for (uint32_t i = 0; i < o.connections; ++i)
      cs[i]->sender = std::thread([&s, &o, st = cs[i].get(), i, start] {
        if (o.rate > 0) {
          sender_open(s, *st, i, start);
          --s.open_senders;
        } else {
          sender_closed(s, *st);
        }
      });
  }
  // A row of the timeline (and a progress line) each second, the drain's seconds too:
  // an overloaded open loop sends and is answered long after the end, and one row for
  // all of it would hide how its latency grew.
  const auto row_now = [&] {
    const double t_s = std::chrono::duration<double>(clk::now() - start).count();
    const auto row = take_interval(cs, t_s);
    out->timeline.push_back(row);
    if (!o.progress) return;
    uint64_t failed = 0;
    for (auto& c : cs) {
      std::lock_guard lk(c->mu);
      failed += c->failed;
    }
    std::fprintf(stderr, "[%6.1fs] %12.0f %s/s %9llu requests  p50 %10s  p99 %10s  max %10s  failed %llu%s\n",
                 t_s, double(row.transfers) / std::max(1e-9, t_s - (out->timeline.size() > 1 ? out->timeline[out->timeline.size() - 2].t_s : 0)),
                 out->items.c_str(), (unsigned long long)row.requests, fmt_ns(row.p50_ns).c_str(),
                 fmt_ns(row.p99_ns).c_str(), fmt_ns(row.max_ns).c_str(), (unsigned long long)failed,
                 // (a row that began in the warm-up: its end comes a little after the tick)
                 (out->timeline.size() > 1 ? out->timeline[out->timeline.size() - 2].t_s : 0) < o.warmup_s
                     ? "  (warm-up)"
                     : "");
  };
  const auto end = s.measure_from + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(o.duration_s));
  // The drain's rows: at each whole second from the start after now (a late wake-up
  // skips the seconds it missed rather than writing them microseconds apart).
  const auto next_whole_second = [&] {
    return start + std::chrono::seconds(std::chrono::duration_cast<std::chrono::seconds>(clk::now() - start).count() + 1);
  };
  int sec = 1;
  for (;; ++sec) {
    const auto tick = start + std::chrono::seconds(sec);
    // (Looks every 50 ms whether every sender ran out of items.)
    while (s.senders_done.load() < o.connections && clk::now() < std::min(tick, end))
      std::this_thread::sleep_until(std::min({tick, end, clk::now() + std::chrono::milliseconds(50)}));
    row_now();
    if (tick >= end || s.senders_done.load() == o.connections) break;  // equb: every round sent
  }
  s.stop = true;  // the closed loop stops; the open loop sends on what was due before the end
  const auto drain = std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(o.drain_timeout_s));
  auto next_tick = next_whole_second();
  const auto drain_until = clk::now() + drain;
  while (s.open_senders.load() > 0 && clk::now() < drain_until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (clk::now() >= next_tick) {
      row_now();
      next_tick = next_whole_second();
    }
  }
  s.abandon = true;
  if (pacer.joinable()) pacer.join();
  for (auto& c : cs)
    if (c->sender.joinable()) c->sender.join();
  {
    // The answers get their own drain time after the last send: an overloaded open loop
    // sends until drain_until, and what it sent last is still in the window then.
    const auto answers_until = clk::now() + drain;
    std::unique_lock lk(s.done_mu);
    while (!s.done_cv.wait_until(lk, std::min(next_tick, answers_until), [&] { return s.outstanding == 0; })) {
      if (clk::now() >= answers_until) {
        // Given up on: the connections close, which fails each request still out (its
        // outcome unknown: verification looks its transfers up), and the report is made
        // with them, counted. Before, the run ended with no report at all, when a stalled
        // engine is what its report is most wanted for.
        // (The run's time ends at its last answer before the close, not at the failures
        // the close makes; those failures are what unanswered_at_drain counts.)
        const auto answered_until = s.last_answer;
        lk.unlock();
        const auto failed_now = [&] {
          uint64_t n = 0;
          for (auto& c : cs) {
            std::lock_guard clk_lk(c->mu);
            n += c->failed;
          }
          return n;
        };
        const uint64_t failed_before = failed_now();
        for (auto& c : cs) {
          out->reconnects += c->c->reconnects();
          out->resent += c->c->resent();
        }
        for (auto& c : cs) c->c.reset();
        lk.lock();
        if (!s.done_cv.wait_until(lk, clk::now() + drain, [&] { return s.outstanding == 0; })) {
          *error = std::to_string(s.outstanding.load()) + " requests still unanswered " +
                   std::to_string(int(o.drain_timeout_s)) + " s after the last was sent, and not failed by closing their connections";
          return false;
        }
        s.last_answer = answered_until;
        lk.unlock();
        out->unanswered_at_drain = failed_now() - failed_before;
        lk.lock();
        break;
      }
      if (clk::now() >= next_tick) {
        lk.unlock();  // (answers take done_mu)
        row_now();
        lk.lock();
        next_tick = next_whole_second();
      }
    }
  }
  out->seconds = std::chrono::duration<double>(s.last_answer - s.measure_from).count();
  out->warmup_s = o.warmup_s;
  // The answers that came after the last row (the drain: often the slowest), at the
  // time taken: one counted just after the last row's time is in it.
  if (const auto tail = take_interval(cs, std::chrono::duration<double>(clk::now() - start).count()); tail.requests > 0)
    out->timeline.push_back(tail);
  uint64_t warmup_failed = 0;
  for (auto& c : cs) {
    std::lock_guard lk(c->mu);
    out->latency.merge(c->all);
    out->requests += c->requests;
    out->transfers += c->transfers;
    out->transfers_ok += c->transfers_ok;
    out->pendings_ok += c->pendings_ok;
    out->pendings_left += c->posts_ready.size();
    out->posts_ok += c->posts_ok;
    out->requests_failed += c->failed;
    out->warmup_requests += c->warmup_requests;
    out->warmup_transfers_ok += c->warmup_ok;
    warmup_failed += c->warmup_failed;
    for (auto& [r, n] : c->results) out->results[std::string(wire::result_name(r))] += n;
    for (auto& [f, n] : c->failures) out->failures[f] += n;
  }
  // Each request an open loop sent stands for batch / rate seconds of the load it
  // offered (up to the duration): its rate is over those at least. Before, over the time
  // to the last answer, which at a low rate comes soon after the last send, a whole
  // interval before the load's end: with n requests, n / (n - 1) times the rate offered.
  // (The warm-up's requests are not the measured window's.)
  if (o.rate > 0)
    out->seconds = std::max(out->seconds, std::min(o.duration_s, double(out->requests + out->requests_failed -
                                                                        warmup_failed) *
                                                                     double(w.batch) / o.rate));
  out->send_lag.merge(s.send_lag);
  out->failed_latency.merge(s.failed_latency);
  for (auto& c : cs) {
    if (c->c) {  // (closed at the drain timeout: counted then)
      out->reconnects += c->c->reconnects();
      out->resent += c->c->resent();
    }
  }
  if (o.verify) verify(t, s, cs, &out->verify);
  cs.clear();  // connections close
  // Everything answered in the warm-up (an equb run's payments ran out in it): no figure
  // was measured, and a report of 0 a second would read as one.
  if (out->requests == 0 && out->warmup_requests > 0) {
    *error = "every answer came in the warm-up (" + std::to_string(out->warmup_requests) + " requests" +
             (out->verify.ran ? std::string(", verified ") + (out->verify.ok ? "ok" : "FAILED") : std::string()) +
             "): nothing was measured; shorten --warmup";
    return false;
  }
  return true;
}

void print_report(const run_report& r, FILE* f) {
  std::fprintf(f, "target %s, %s loop, %s\n", r.target.c_str(), r.mode.c_str(), r.workload.c_str());
  if (r.warmup_s > 0)
    std::fprintf(f, "warm-up %.2f s first: %llu requests answered, %llu %s ok (verified, not measured)\n", r.warmup_s,
                 (unsigned long long)r.warmup_requests, (unsigned long long)r.warmup_transfers_ok, r.items.c_str());
  std::fprintf(f, "%.2f s: %llu requests answered, %llu failed; %llu %s, %llu ok: %.0f %s/s (ok)\n", r.seconds,
               (unsigned long long)r.requests, (unsigned long long)r.requests_failed, (unsigned long long)r.transfers,
               r.items.c_str(), (unsigned long long)r.transfers_ok, r.transfers_per_s(), r.items.c_str());
  std::fprintf(f, "request latency: p50 %s  p90 %s  p99 %s  p99.9 %s  p99.99 %s  max %s\n",
               fmt_ns(r.latency.percentile(50)).c_str(), fmt_ns(r.latency.percentile(90)).c_str(),
               fmt_ns(r.latency.percentile(99)).c_str(), fmt_ns(r.latency.percentile(99.9)).c_str(),
               fmt_ns(r.latency.percentile(99.99)).c_str(), fmt_ns(r.latency.max()).c_str());
  if (r.send_lag.count() > 0)
    std::fprintf(f, "sent after their due time (open loop, within the latency): p50 %s  p99 %s  max %s\n",
                 fmt_ns(r.send_lag.percentile(50)).c_str(), fmt_ns(r.send_lag.percentile(99)).c_str(),
                 fmt_ns(r.send_lag.max()).c_str());
  if (r.failed_latency.count() > 0)
    std::fprintf(f, "failed requests' time to failure (not in the latency): p50 %s  p99 %s  max %s\n",
                 fmt_ns(r.failed_latency.percentile(50)).c_str(), fmt_ns(r.failed_latency.percentile(99)).c_str(),
                 fmt_ns(r.failed_latency.max()).c_str());
  if (r.unanswered_at_drain > 0)
    std::fprintf(f, "unanswered at the drain timeout: %llu requests, failed as their connections closed (outcome unknown)\n",
                 (unsigned long long)r.unanswered_at_drain);
  if (r.reconnects > 0 || r.resent > 0)
    std::fprintf(f, "connections made again: %llu; requests sent again on them: %llu\n",
                 (unsigned long long)r.reconnects, (unsigned long long)r.resent);
  if (r.pendings_ok > 0)
    std::fprintf(f, "two-phase: %llu pendings, %llu posted, %llu left pending at the end\n",
                 (unsigned long long)r.pendings_ok, (unsigned long long)r.posts_ok,
                 (unsigned long long)r.pendings_left);
  for (auto& [name, n] : r.results) std::fprintf(f, "  result %-40s %llu\n", name.c_str(), (unsigned long long)n);
  for (auto& [why, n] : r.failures) std::fprintf(f, "  failed request: %s (%llu)\n", why.c_str(), (unsigned long long)n);
  if (r.verify.ran) {
    std::fprintf(f, "verify: %s (%llu acknowledged transfers looked up, %llu of failed requests resolved, %llu accounts)\n",
                 r.verify.ok ? "ok" : "FAILED", (unsigned long long)r.verify.transfers_checked,
                 (unsigned long long)r.verify.unknown_resolved, (unsigned long long)r.verify.accounts_checked);
    for (auto& p : r.verify.problems) std::fprintf(f, "  %s\n", p.c_str());
  }
}

namespace {
// Closes a file written with stdio: false, and why, when any write or the close failed
// (a full disk shows at the flush).
bool close_written(FILE* f, const std::string& path, std::string* error) {
  const bool failed = std::ferror(f) != 0;
  if (std::fclose(f) != 0 || failed) {
    *error = path + ": write failed";
    return false;
  }
  return true;
}
}  // namespace

bool write_report_json(const run_report& r, const workload& w, const run_options& o, const std::string& path,
                       std::string* error) {
  if (const std::string problem = output_problem(std::filesystem::path(path).parent_path()); !problem.empty()) {
    *error = problem;
    return false;
  }
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    *error = path + ": cannot write";
    return false;
  }
  const auto us = [](uint64_t ns) { return double(ns) / 1e3; };
  std::fprintf(f, "{\n  \"target\": %s,\n  \"mode\": %s,\n  \"workload\": %s,\n",
               wire::json_string(r.target).c_str(), wire::json_string(r.mode).c_str(), wire::json_string(r.workload).c_str());
  std::fprintf(f,
               "  \"batch\": %u,\n  \"accounts\": %llu,\n  \"connections\": %u,\n  \"window\": %u,\n  \"rate\": %.1f,\n"
               "  \"warmup_s\": %.3f,\n  \"warmup_requests\": %llu,\n  \"warmup_transfers_ok\": %llu,\n"
               "  \"seconds\": %.3f,\n  \"requests\": %llu,\n  \"requests_failed\": %llu,\n  \"transfers\": %llu,\n"
               "  \"transfers_ok\": %llu,\n  \"transfers_per_s\": %.1f,\n",
               w.batch, (unsigned long long)w.accounts, o.connections, r.window, o.rate, r.warmup_s,
               (unsigned long long)r.warmup_requests, (unsigned long long)r.warmup_transfers_ok, r.seconds,
               (unsigned long long)r.requests, (unsigned long long)r.requests_failed, (unsigned long long)r.transfers,
               (unsigned long long)r.transfers_ok, r.transfers_per_s());
  if (w.two_phase)
    std::fprintf(f, "  \"pendings_ok\": %llu,\n  \"posts_ok\": %llu,\n  \"pendings_left\": %llu,\n",
                 (unsigned long long)r.pendings_ok, (unsigned long long)r.posts_ok,
                 (unsigned long long)r.pendings_left);
  std::fprintf(f,
               "  \"latency_us\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p99_9\": %.1f, \"p99_99\": %.1f, "
               "\"max\": %.1f, \"mean\": %.1f},\n",
               us(r.latency.percentile(50)), us(r.latency.percentile(90)), us(r.latency.percentile(99)),
               us(r.latency.percentile(99.9)), us(r.latency.percentile(99.99)), us(r.latency.max()),
               r.latency.mean() / 1e3);
  const auto three = [&](const char* name, const hdr_histogram& h) {
    std::fprintf(f, "  \"%s\": {\"count\": %llu, \"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f},\n", name,
                 (unsigned long long)h.count(), us(h.percentile(50)), us(h.percentile(99)), us(h.max()));
  };
  three("send_lag_us", r.send_lag);
  three("failed_latency_us", r.failed_latency);
  std::fprintf(f, "  \"reconnects\": %llu,\n  \"resent\": %llu,\n  \"unanswered_at_drain\": %llu,\n",
               (unsigned long long)r.reconnects, (unsigned long long)r.resent,
               (unsigned long long)r.unanswered_at_drain);
  std::fprintf(f, "  \"results\": {");
  size_t i = 0;
  for (auto& [name, n] : r.results)
    std::fprintf(f, "%s%s: %llu", i++ ? ", " : "", wire::json_string(name).c_str(), (unsigned long long)n);
  std::fprintf(f, "},\n  \"failures\": {");
  i = 0;
  for (auto& [why, n] : r.failures)
    std::fprintf(f, "%s%s: %llu", i++ ? ", " : "", wire::json_string(why).c_str(), (unsigned long long)n);
  std::fprintf(f, "},\n  \"timeline\": [");
  i = 0;
  for (auto& row : r.timeline)
    std::fprintf(f, "%s\n    {\"t_s\": %.3f, \"transfers\": %llu, \"requests\": %llu, \"p50_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f}",
                 i++ ? "," : "", row.t_s, (unsigned long long)row.transfers, (unsigned long long)row.requests,
                 us(row.p50_ns), us(row.p99_ns), us(row.max_ns));
  std::fprintf(f, "\n  ]");
  if (r.verify.ran) {
    std::fprintf(f, ",\n  \"verify\": {\"ok\": %s, \"transfers_checked\": %llu, \"unknown_resolved\": %llu, "
                    "\"accounts_checked\": %llu, \"problems\": [",
                 r.verify.ok ? "true" : "false", (unsigned long long)r.verify.transfers_checked,
                 (unsigned long long)r.verify.unknown_resolved, (unsigned long long)r.verify.accounts_checked);
    i = 0;
    for (auto& p : r.verify.problems) std::fprintf(f, "%s%s", i++ ? ", " : "", wire::json_string(p).c_str());
    std::fprintf(f, "]}");
  }
  std::fprintf(f, "\n}\n");
  return close_written(f, path, error);
}

std::string output_problem(const std::filesystem::path& dir) {
  const auto d = dir.empty() ? std::filesystem::path(".") : dir;
  std::error_code ec;
  std::filesystem::create_directories(d, ec);
  if (ec) return d.string() + ": cannot make the directory: " + ec.message();
  if (!std::filesystem::is_directory(d, ec)) return d.string() + ": not a directory";
  if (::access(d.c_str(), W_OK | X_OK) != 0) return d.string() + ": cannot write there: " + std::strerror(errno);
  return {};
}

bool write_plots(const run_report& r, const std::string& dir, const std::string& name, std::string* error) {
  if (const std::string problem = output_problem(dir); !problem.empty()) {
    *error = problem;
    return false;
  }
  const std::string base = dir + "/" + name;
  {
    FILE* f = std::fopen((base + "-timeline.dat").c_str(), "w");
    if (!f) {
      *error = base + "-timeline.dat: cannot write";
      return false;
    }
    std::fprintf(f, "# t_s transfers_per_s p50_us p99_us max_us\n");
    double prev = 0;
    for (auto& row : r.timeline) {
      std::fprintf(f, "%.3f %.1f %.1f %.1f %.1f\n", row.t_s, double(row.transfers) / std::max(1e-9, row.t_s - prev),
                   double(row.p50_ns) / 1e3, double(row.p99_ns) / 1e3, double(row.max_ns) / 1e3);
      prev = row.t_s;
    }
    if (!close_written(f, base + "-timeline.dat", error)) return false;
  }
  {
    // The percentile distribution, HdrHistogram style: x = 1 / (1 - p) on a log scale.
    FILE* f = std::fopen((base + "-distribution.dat").c_str(), "w");
    if (!f) {
      *error = base + "-distribution.dat: cannot write";
      return false;
    }
    std::fprintf(f, "# percentile latency_us one_over_one_minus_p\n");
    for (double nines = 0; nines <= 5.0; nines += 0.05) {
      const double p = 100.0 * (1.0 - std::pow(10.0, -nines));
      std::fprintf(f, "%.5f %.1f %.3f\n", p, double(r.latency.percentile(p)) / 1e3, std::pow(10.0, nines));
    }
    if (!close_written(f, base + "-distribution.dat", error)) return false;
  }
  const std::string gp = base + ".gp";
  FILE* f = std::fopen(gp.c_str(), "w");
  if (!f) {
    *error = gp + ": cannot write";
    return false;
  }
  const std::string title = r.target + ", " + r.mode + " loop: " + r.workload;
  // The warm-up's seconds are in the timeline, its end marked (they are not in the distribution).
  char warmup_mark[160] = "";
  if (r.warmup_s > 0)
    std::snprintf(warmup_mark, sizeof warmup_mark,
                  "set arrow from %.3f, graph 0 to %.3f, graph 1 nohead dt 2\n"
                  "set label 'warm-up ends' at %.3f, graph 0.04 offset 0.5, 0\n",
                  r.warmup_s, r.warmup_s, r.warmup_s);
  std::fprintf(f,
               "set terminal png size 1200,700\n"
               "set output '%s-latency-over-time.png'\n"
               "set title \"%s\" noenhanced\n"
               "set xlabel 'seconds'\nset ylabel 'request latency, us'\nset y2label 'transfers/s'\n"
               "set logscale y\nset y2tics\nset y2range [0:*]\nset ytics nomirror\nset grid\nset key top left\n%s"
               "plot '%s-timeline.dat' using 1:3 with lines title 'p50', '' using 1:4 with lines title 'p99', "
               "'' using 1:5 with lines title 'max', '' using 1:2 axes x1y2 with lines title 'transfers/s'\n"
               "set output '%s-latency-distribution.png'\n"
               "unset arrow\nunset label\nunset y2tics\nunset y2label\nset xlabel 'percentile'\nset logscale x\n"
               "set xtics ('0%%%%' 1, '90%%%%' 10, '99%%%%' 100, '99.9%%%%' 1000, '99.99%%%%' 10000, '99.999%%%%' 100000)\n"
               "plot '%s-distribution.dat' using 3:2 with lines title 'request latency'\n",
               base.c_str(), title.c_str(), warmup_mark, base.c_str(), base.c_str(), base.c_str());
  if (!close_written(f, gp, error)) return false;
  const std::string cmd = "gnuplot '" + gp + "' 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) {
    *error = "cannot run gnuplot";
    return false;
  }
  std::string said;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p)) said += buf;
  const int st = ::pclose(p);
  if (st != 0) {
    *error = "gnuplot failed" + (WIFEXITED(st) && WEXITSTATUS(st) == 127 ? std::string(" (not installed: apt-get install gnuplot-nox)") : ": " + said);
    return false;
  }
  return true;
}

}  // namespace mesob::load
