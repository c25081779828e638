#include "actors/shard.hpp"

#include <immintrin.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <chrono>
#include <climits>
#include <functional>

#include "actors/stale_heap.hpp"
#include "wire/assert.hpp"
#include "wire/protocol.hpp"

namespace mesob::actors {

using namespace wire;

namespace {

using heap_cmp = std::greater<std::pair<uint64_t, uint64_t>>;

uint32_t bit(uint32_t shard) { return 1u << shard; }

uint32_t lowest_bit_index(uint32_t mask) { return uint32_t(__builtin_ctz(mask)); }

uint32_t required_mask(const op_route& r) {
  switch (r.kind) {
    case route_kind::static_failed:
    case route_kind::duplicate: return 0;
    case route_kind::fresh: return bit(r.debit_shard) | bit(r.credit_shard);
    case route_kind::resolve:
      return bit(r.debit_shard) | bit(r.credit_shard) | (r.has_ref ? bit(r.ref_shard) : 0);
  }
  return 0;
}

// The cross-shard rendezvous on a slot's `published` word. A waiter spins briefly, then
// yields, then sleeps on a futex; a publisher makes the wake-up system call only when
// someone sleeps. The sleeper count is per slot: std::atomic::notify_all would touch a
// process-wide waiter table on every publish, one cache line bounced between the shards
// (a quarter of the time spent in the rendezvous, perf record of a two-shard replay).
// Both sides use sequentially consistent operations, so either the publisher sees the
// sleeper or the sleeper sees the bit (and the futex re-checks the word in the kernel).
void publish(sync_slot& s, uint32_t bit) {
  s.published.fetch_or(bit, std::memory_order_seq_cst);
  if (s.sleepers.load(std::memory_order_seq_cst) != 0)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&s.published), FUTEX_WAKE_PRIVATE, INT_MAX,
            nullptr, nullptr, 0);
}

bool published(const sync_slot& s, uint32_t need) {
  return (s.published.load(std::memory_order_acquire) & need) == need;
}

void wait_for(sync_slot& s, uint32_t need) {
  uint32_t v = s.published.load(std::memory_order_acquire);
  for (uint32_t spins = 0; (v & need) != need; ++spins) {
    if (spins < 64) {
      _mm_pause();
    } else if (spins < 64 + 256) {
      sched_yield();
    } else {
      s.sleepers.fetch_add(1, std::memory_order_seq_cst);
      v = s.published.load(std::memory_order_seq_cst);
      if ((v & need) != need)
        syscall(SYS_futex, reinterpret_cast<uint32_t*>(&s.published), FUTEX_WAIT_PRIVATE, v,
                nullptr, nullptr, 0);
      s.sleepers.fetch_sub(1, std::memory_order_relaxed);
    }
    v = s.published.load(std::memory_order_acquire);
  }
}

}  // namespace

shard::shard(uint32_t index, uint32_t count, record_store& records, size_t accounts_hint)
    : index_(index), count_(count), bit_(bit(index)), records_(records),
      account_index_(accounts_hint) {
  MESOB_ASSERT(count >= 1 && count <= shards_max && index < count);
  slots_.reserve(accounts_hint);
  groups_.set_shards(count);
  // payout_to asks the registry as of the batch (the desks' copy follows the log).
  groups_.set_rail_check([this](uint8_t rail, wire::currency_code c) {
    const auto& reg = desks_.registry();
    return reg && reg->serves_rail(rail, c, rules_ < rules_payout_routes);
  });
  // A retired group's escrow account closes for good: no group answers for money paid
  // into it after (rules_groups_retire). One holding anything keeps its group.
  groups_.set_account_check([this](uint64_t id) { return find_account(id) != nullptr; });
  groups_.set_retire([this](const equb::group_entry& e) -> uint32_t {
    account* a = local_account(e.g.cfg.group_id);
    if (!a || a->kind != account_kind::group_escrow || a->debits_pending != 0 || a->credits_pending != 0 ||
        a->debits_posted != a->credits_posted || a->status_seq == UINT32_MAX)
      return 0;
    mark_dirty(slot_index(a));
    a->status = account_status::closed;
    return ++a->status_seq;  // a change made, as any counts (rules_status_seq)
  });
  // Orders' brokers as of the batch (the registry and the sessions follow the log).
  trading_.set_place(index, count);
  trading_.set_market(&market_);
  // A gateway as the orders see it: enabled (with the broker role), a session up, its timeout.
  const auto broker_of = [this](const gateways::gateway& g) {
    return trading::broker_info{g.number, g.enabled && (g.roles & wire::roles::broker) != 0,
                                desks_.sessions(g.number) > 0, uint64_t(g.answer_timeout_ms) * 1'000'000ull};
  };
  trading_.set_brokers([this, broker_of](wire::currency_code c, std::vector<trading::broker_info>* out) {
    out->clear();
    for (const auto& g : desks_.registry()->all())
      if ((g.roles & wire::roles::broker) && g.serves(c)) out->push_back(broker_of(g));
    std::stable_sort(out->begin(), out->end(), [&](const auto& a, const auto& b) {
      return desks_.registry()->find(a.number)->priority < desks_.registry()->find(b.number)->priority;
    });
  });
  trading_.set_broker_of([this, broker_of](uint32_t number) {
    const auto* g = desks_.registry() ? desks_.registry()->find(number) : nullptr;
    return g ? broker_of(*g) : trading::broker_info{number};
  });
}

account* shard::local_account(uint64_t id) {
  if (id == 0) return nullptr;
  const uint32_t* i = account_index_.find(id);
  return i ? &slots_[*i].a : nullptr;
}

const account* shard::find_account(uint64_t id) const {
  if (id == 0) return nullptr;
  const uint32_t* i = account_index_.find(id);
  return i ? &slots_[*i].a : nullptr;
}

pending_info* shard::local_pending(uint64_t serial) {
  const uint32_t* i = pending_index_.find(serial + 1);
  return i ? &pendings_[*i] : nullptr;
}

const pending_info* shard::open_pending(uint64_t serial) const {
  const uint32_t* i = pending_index_.find(serial + 1);
  return i && pendings_[*i].state == pending_state::pending ? &pendings_[*i] : nullptr;
}

// Called before an account changes. An account still owed to a checkpoint cut in
// progress is copied first (copy-on-write), so the cut sees it as it was.
void shard::mark_dirty(uint32_t idx) {
  uint8_t& f = slots_[idx].dirty;
  if (f == epoch_) return;
  if (cut_ && f == cut_epoch_)  // owed to the cut: copy it as it is, first
    cut_->dirty_accounts[index_].push_back({slots_[idx].a, slots_[idx].last_serial});
  f = epoch_;
  dirty_.push_back(idx);
}

void shard::save_account(uint32_t idx, bool keep_undo) {
  if (keep_undo) undo_.push_back({undo_entry::what::account, idx, slots_[idx].a, {}, slots_[idx].last_serial});
  mark_dirty(idx);
}

void shard::load_account(const account& a, uint64_t last_serial) {
  MESOB_ASSERT(shard_of(a.id, count_) == index_);
  MESOB_ASSERT(account_index_.find(a.id) == nullptr);
  account_index_.put(a.id, uint32_t(slots_.size()));
  slots_.push_back({a, last_serial, clean});
}

// Appends the record to the account's history chain and notes its balances after.
void shard::link_history(uint32_t idx, uint64_t serial, bool debit_side) {
  transfer_record& rec = records_.at(serial);
  const account& a = slots_[idx].a;
  if (debit_side) {
    rec.debit_prev = slots_[idx].last_serial;
    rec.debit_after_debits_posted = a.debits_posted;
    rec.debit_after_credits_posted = a.credits_posted;
  } else {
    rec.credit_prev = slots_[idx].last_serial;
    rec.credit_after_debits_posted = a.debits_posted;
    rec.credit_after_credits_posted = a.credits_posted;
  }
  slots_[idx].last_serial = serial + 1;
}

void shard::load_pending(const pending_info& p) {
  MESOB_ASSERT(local_pending(p.serial) == nullptr);
  add_pending(p, false);
  pub_pending_.store(pendings_.size(), std::memory_order_relaxed);
}

void shard::add_pending(const pending_info& p, bool changed) {
  const auto idx = uint32_t(pendings_.size());
  pending_index_.put(p.serial + 1, idx);
  pendings_.push_back(p);
  pending_changed_flag_.push_back(0);
  if (p.state == pending_state::pending) ++pending_open_;
  if (changed) note_pending_change(idx);
  if (p.state == pending_state::pending && p.expires_at != 0) {
    expiry_heap_.emplace_back(p.expires_at, p.serial);
    std::push_heap(expiry_heap_.begin(), expiry_heap_.end(), heap_cmp{});
  }
}

void shard::note_pending_change(uint32_t idx) {
  if (pending_changed_flag_[idx]) return;
  pending_changed_flag_[idx] = 1;
  pending_changed_.push_back(pendings_[idx].serial);
}

// Removes pending entry idx: the last entry takes its place (between batches only, as
// undo entries name entries by position).
void shard::remove_pending(uint32_t idx) {
  const uint64_t serial = pendings_[idx].serial;
  if (pendings_[idx].state == pending_state::pending) --pending_open_;
  const auto last = uint32_t(pendings_.size() - 1);
  if (idx != last) {
    pendings_[idx] = pendings_[last];
    pending_changed_flag_[idx] = pending_changed_flag_[last];
    pending_index_.put(pendings_[idx].serial + 1, idx);
  }
  pending_index_.erase(serial + 1);
  pendings_.pop_back();
  pending_changed_flag_.pop_back();
}

void shard::set_pending_state(pending_info& p, pending_state s) {
  pending_open_ += int(s == pending_state::pending) - int(p.state == pending_state::pending);
  p.state = s;
}

// A chain's rollback puts an entry back as it was before the chain changed it.
void shard::restore_pending(uint32_t idx, const pending_info& before) {
  set_pending_state(pendings_[idx], before.state);
  pendings_[idx] = before;
}

// Drops resolved entries whose final state a committed snapshot holds.
void shard::evict_resolved(uint64_t committed_cut) {
  for (; evictable_pos_ < evictable_.size() && evictable_[evictable_pos_].first <= committed_cut;
       ++evictable_pos_) {
    const uint64_t serial = evictable_[evictable_pos_].second;
    const uint32_t* found = pending_index_.find(serial + 1);
    if (!found) continue;
    const uint32_t idx = *found;
    MESOB_ASSERT(pendings_[idx].state != pending_state::pending);
    if (pending_changed_flag_[idx]) continue;  // cannot change again, but never drop unsaved state
    remove_pending(idx);
  }
  if (evictable_pos_ == evictable_.size()) {
    evictable_.clear();
    evictable_pos_ = 0;
  }
}

// Expiry entries of transfers no longer pending (posted, voided, rolled back, evicted)
// are skipped when they come due; until then they would hold memory (a 30-day hold
// posted at once: 30 days) and the published deadline. Between batches (no chain is
// half decided, so a transfer resolved now stays resolved) the top is cleared of them,
// and the heap is made again from the open pending transfers when it holds more than
// twice as many entries as there are pending transfers kept (at least
// expiry_heap_rebuild_min). Expiry decides the same either way: due entries in (time,
// serial) order, stale ones skipped.
void shard::tidy_expiry_heap() {
  tidy_stale_heap(
      expiry_heap_, std::max<size_t>(expiry_heap_rebuild_min, 2 * pendings_.size()) + 1, heap_cmp{},
      [&](const std::pair<uint64_t, uint64_t>& e) {
        const pending_info* p = local_pending(e.second);
        return p && p->state == pending_state::pending && p->expires_at == e.first;
      },
      [&](std::vector<std::pair<uint64_t, uint64_t>>& heap) {
        for (const pending_info& p : pendings_)
          if (p.state == pending_state::pending && p.expires_at != 0) heap.emplace_back(p.expires_at, p.serial);
      });
}

void shard::publish_stats() {
  constexpr auto r = std::memory_order_relaxed;
  tidy_expiry_heap();
  pub_accounts_.store(slots_.size(), r);
  pub_pending_.store(pendings_.size(), r);
  pub_pending_open_.store(pending_open_, r);
  pub_sync_waits_.store(sync_waits_, r);
  pub_customers_.store(customers_.size(), r);
  pub_groups_.store(groups_.size(), r);
  pub_orders_open_.store(trading_.open_orders(), r);
  pub_orders_ending_.store(trading_.ending_orders(), r);
  pub_fills_.store(trading_.fills(), r);
  pub_settle_refusals_.store(trading_.settle_refusals(), r);
  pub_group_refusals_.store(groups_.refused_obligations(), r);
  pub_orders_dead_.store(trading_.dead_letters(), r);
  pub_orders_halted_.store(trading_.halted_orders(), r);
  pub_order_timeouts_.store(trading_.timeouts(), r);
  pub_order_timers_.store(trading_.timers_held(), r);
  // Shard 0's market times the halts it announces (the others' copies announce nothing).
  const uint64_t market_due = index_ == 0 ? market_.next_due() : UINT64_MAX;
  groups_.drop_ended();
  desks_.compact_timers();
  pub_payout_timers_.store(desks_.timers_held(), r);
  publish_held();
  const uint64_t expiry_due = expiry_heap_.empty() ? UINT64_MAX : expiry_heap_.front().first;
  pub_next_deadline_.store(
      std::min({groups_.next_deadline(), desks_.next_deadline(), market_due, trading_.next_deadline(), expiry_due}), r);
  pub_expiry_entries_.store(expiry_heap_.size(), r);
  pub_groups_due_.store(groups_.next_round_deadline(), r);
  pub_orders_on_up_time_.store(trading_.orders_on_up_time(), r);
  pub_memory_.store(slots_.capacity() * sizeof(account_slot) + account_index_.memory_bytes() +
                        dirty_.capacity() * 4 + pendings_.capacity() * sizeof(pending_info) +
                        expiry_heap_.capacity() * sizeof(expiry_heap_[0]) +
                        pending_index_.memory_bytes() + group_bytes() + market_.memory_bytes() +
                        customers_.memory_bytes(),
                    r);
}

void shard::publish_held() {
  if (desks_.held_version() == pub_held_version_) return;
  pub_held_version_ = desks_.held_version();
  // One entry a currency (a few desks each): no allocation once the scratch has grown.
  held_scratch_.clear();
  desks_.for_each_desk([&](const payouts::desk& d) {
    auto it = std::find_if(held_scratch_.begin(), held_scratch_.end(), [&](const auto& c) { return c.currency == d.currency; });
    if (it == held_scratch_.end()) it = held_scratch_.insert(held_scratch_.end(), {d.currency, {}});
    for (size_t k = 0; k < d.held.size(); ++k) {
      it->by_state[k].n += d.held[k].n;
      gateways::add_amount(it->by_state[k].amount, d.held[k].amount);
    }
  });
  std::lock_guard lk(pub_held_mu_);
  pub_held_ = held_scratch_;
}

std::vector<payouts::currency_held> shard::payouts_held() const {
  std::lock_guard lk(pub_held_mu_);
  return pub_held_;
}

shard_stats shard::stats() const {
  constexpr auto r = std::memory_order_relaxed;
  shard_stats s;
  s.accounts = pub_accounts_.load(r);
  s.pending_total = pub_pending_.load(r);
  s.pending_open = pub_pending_open_.load(r);
  s.expiry_entries = pub_expiry_entries_.load(r);
  s.sync_waits = pub_sync_waits_.load(r);
  s.memory_bytes = pub_memory_.load(r);
  s.cut_us_last = last_cut_us_.load(r);
  s.cut_us_max = max_cut_us_.load(r);
  const uint64_t handled = dispatches_handled_.load(r), sent = dispatches_sent_.load(r);
  s.queue_depth = sent > handled ? sent - handled : 0;
  s.batches_executed = batches_handled_.load(r);
  s.customers = pub_customers_.load(r);
  s.groups = pub_groups_.load(r);
  s.orders_open = pub_orders_open_.load(r);
  s.orders_ending = pub_orders_ending_.load(r);
  s.fills = pub_fills_.load(r);
  s.settle_refusals = pub_settle_refusals_.load(r);
  s.group_refusals = pub_group_refusals_.load(r);
  s.orders_dead = pub_orders_dead_.load(r);
  s.orders_halted = pub_orders_halted_.load(r);
  s.order_timeouts = pub_order_timeouts_.load(r);
  s.order_timers = pub_order_timers_.load(r);
  s.payout_timers = pub_payout_timers_.load(r);
  return s;
}

void shard::execute(batch& b) {
  // What desks and groups decide within an older build's record (timers, events,
  // answers, payments, operations) follows that build's rules.
  struct rules_of {
    shard& s;
    rules_of(shard& sh, uint16_t v) : s(sh) {
      s.desks_.set_rules(v);
      s.rules_ = v;
      s.groups_.set_rules(v);
      s.trading_.set_rules(v);
      s.market_.set_rules(v);
    }
    ~rules_of() {
      s.desks_.set_rules(rules_newest);
      s.rules_ = rules_newest;
      s.groups_.set_rules(rules_newest);
      s.trading_.set_rules(rules_newest);
      s.market_.set_rules(rules_newest);
    }
  } rules(*this, b.rules);
  // Set-aside transfers of earlier batches settle before anything that is not a
  // transfer batch, or that expires pending transfers (expire_until: it changes accounts).
  if (b.kind != op_kind::create_transfers) settle_all();
  expire_until(b.sweep_to);
  // Rounds and payout timers fire only on logged batches: look-ups are not in the log, so
  // a timer they fired would fire later in replay, at another engine time (what those
  // timers decide keeps the time they fire at, unlike an expiry). Session events come
  // first: after a restart the reset must precede timers that fell due while down.
  const bool logged = b.lsn != 0;
  if (b.kind == op_kind::gateway_events)
    for (uint32_t i = 0; i < b.count; ++i)
      if (b.results[i] == result::ok) {
        deciding(b, i + 1);
        const auto& ev = b.gateway_events[i];
        desks_.event(ev, b.timestamp_base + i);
        const auto* g = desks_.registry()->find(ev.gateway);
        if (ev.kind == wire::gateway_event_kind::reset) trading_.reset(b.timestamp_base + i);
        else if (!g || !(g->roles & wire::roles::broker)) continue;
        else if (ev.kind == wire::gateway_event_kind::up) trading_.broker_up(g->number, b.timestamp_base + i);
        else if (desks_.sessions(g->number) == 0) trading_.broker_down(g->number, b.timestamp_base + i, true);
      }
  // The engine's first batch after a start: deadlines that fell while it was down move
  // (rules_resume_rebases), before any round closes. It runs no other timer: the gateways'
  // reset follows it, and the desks' and brokers' timers must see that first.
  const bool marker = b.kind == op_kind::tick && b.resumed_after != 0;
  if (logged && marker && b.rules >= rules_resume_rebases) {
    settle_all();
    deciding(b, 0);
    groups_.resume(b.resumed_after, b.timestamp_base);
    desks_.resume(b.resumed_after, b.timestamp_base);  // waits for a gateway or broker:
    trading_.resume(b.resumed_after, b.timestamp_base);  // the downtime does not count
  }
  if (logged && groups_.due(b.sweep_to)) {  // rounds whose deadline + grace passed close first
    settle_all();
    deciding(b, 0);  // deadlines passing: before the batch's operations
    groups_.close_due(b.sweep_to);
  }
  if (logged && !marker && desks_.due(b.sweep_to)) {  // payouts whose answer or backoff is due
    settle_all();
    deciding(b, 0);
    desks_.run_due(b.sweep_to);
  }
  // Halts and resumes time decided (a price gone stale, a move halt over) by the batch's
  // first timestamp: a price in the batch comes after them.
  if (logged && !marker && market_.due(b.timestamp_base)) {
    deciding(b, 0);
    market_.run_due(b.timestamp_base);
  }
  // Orders whose expiry has come by the batch's first timestamp.
  trading_.compact_timers();
  if (logged && !marker && trading_.due(b.timestamp_base)) {
    settle_all();
    deciding(b, 0);
    trading_.run_due(b.timestamp_base);
  }
  switch (b.kind) {
    case op_kind::tick: break;
    case op_kind::create_accounts: execute_accounts(b); break;
    case op_kind::set_account_status: execute_status(b); break;
    case op_kind::create_transfers:
    case op_kind::orders: execute_transfers(b); break;
    case op_kind::order_answers: execute_order_answers(b); break;
    case op_kind::order_cancels:
    case op_kind::order_retries:
    case op_kind::order_retries_forced:
      for (uint32_t i = 0; i < b.count; ++i)
        if (b.results[i] == result::ok && shard_of(b.order_cancels[i].wallet, count_) == index_) {
          deciding(b, i + 1);
          bool repeated = false;
          b.results[i] = b.kind != op_kind::order_cancels
                             ? trading_.retry(b.order_cancels[i], b.timestamp_base + i,
                                              b.kind == op_kind::order_retries_forced)
                             : trading_.cancel(b.order_cancels[i], b.timestamp_base + i, &repeated);
          if (!b.repeated.empty()) b.repeated[i] = repeated;
        }
      break;
    case op_kind::plan_rebalance: {  // the wallet's shard only
      const uint64_t wallet = b.account_ids.at(0);
      const customers::customer* c = customers_.find(wallet);
      const account* a = find_account(wallet);
      const auto& q = b.account_ids;
      if (q.at(5) != 0) b.results[0] = result::reserved_field;
      else if (wallet == 0 || q.at(1) == 0) b.results[0] = result::id_must_not_be_zero;
      else if (q.at(2) > 10'000 || q.at(3) > 10'000 || q.at(4) > portfolio::expires_s_max ||
               q.at(1) > UINT64_MAX - (portfolio::rebalance_orders_max - 1))  // its ids would wrap
        b.results[0] = result::order_invalid;
      else if (!a) b.results[0] = result::account_not_found;
      else if (!c) b.results[0] = result::customer_not_found;
      else if (policy_.model(uint8_t(c->profile)).empty()) b.results[0] = result::risk_profile_undefined;
      else {
        portfolio::rebalance_inputs in;
        in.model = &policy_.model(uint8_t(c->profile));
        // A profile with no classes set buys nothing (every buy would be refused
        // risk_profile_undefined); its sells go on, as the order check lets them.
        in.classes = 0;
        if (const customers::profile_rules* pr = policy_.profile(uint8_t(c->profile))) {
          in.position_max = pr->position_max;
          in.classes = pr->classes;
        }
        in.market = &market_;
        in.currency = a->currency;
        const uint64_t out = a->debits_posted + a->debits_pending;
        in.cash = a->credits_posted > out ? a->credits_posted - out : 0;
        in.t = std::max(b.sweep_to, b.timestamp_base);
        // The tier's limits as the orders' holds will be checked against them
        // (limit_verdicts): what is left of them now.
        if (const customers::tier_limits* l = a->tier != 0 ? policy_.tier(uint8_t(a->tier), a->currency) : nullptr) {
          in.single_max = l->single_max;
          const uint64_t today = c->outflow_on(in.t);
          in.outflow_left = l->daily_outflow_max > today ? l->daily_outflow_max - today : 0;
          using u128 = unsigned __int128;
          const u128 credits = u128(a->credits_posted) + a->credits_pending;
          const u128 counted = (credits > a->debits_posted ? credits - a->debits_posted : 0) +
                               trading_.open_sells_credit(wallet, in.t);
          in.balance_room = counted < l->balance_max ? uint64_t(l->balance_max - counted) : 0;
          in.sell_top = [&](const market::instrument& ins) {
            uint64_t lo = 0, hi = 0;
            return trading_.fill_band(ins, in.t, &lo, &hi) ? hi : uint64_t(0);
          };
        }
        in.drift_bp = uint32_t(b.account_ids.at(2));
        in.slippage_bp = uint32_t(b.account_ids.at(3));
        in.expires_s = uint32_t(b.account_ids.at(4));
        static const portfolio::book empty;
        const portfolio::book* bk = trading_.book_of(wallet);
        b.orders = portfolio::plan_rebalance(bk ? *bk : empty, wallet, b.account_ids.at(1), in);
        b.results[0] = result::ok;
      }
      break;
    }
    case op_kind::lookup_positions:
      for (uint32_t i = 0; i < b.count; ++i) {
        const uint64_t wallet = b.account_ids[i];
        if (wallet == 0 || shard_of(wallet, count_) != index_ || !find_account(wallet)) continue;
        b.results[i] = result::ok;
        if (const portfolio::book* bk = trading_.book_of(wallet))
          bk->for_each_position([&](uint64_t instrument, const portfolio::position& p) {
            b.found_positions[i].push_back({wallet, instrument, p.quantity, p.reserved, p.cost, p.buying});
          });
      }
      break;
    case op_kind::lookup_orders:
      for (uint32_t i = 0; i < b.count; ++i)
        if (b.order_wallets[i] != 0 && shard_of(b.order_wallets[i], count_) == index_)
          if (const auto* e = trading_.find(b.order_wallets[i], b.account_ids[i])) {
            b.found_orders[i] = trading::table::view(*e);
            b.results[i] = result::ok;
          }
      break;
    case op_kind::lookup_accounts: execute_lookup_accounts(b); break;
    case op_kind::lookup_transfers: break;  // answered by the sequencer
    case op_kind::gateway_ops: {  // decided by the sequencer
      const auto before = desks_.registry();
      desks_.set_registry(b.registry_after);
      // Which brokers serve a currency may have changed: ending orders look again.
      trading_.registry_changed(b.timestamp_base + b.count);
      // A gateway that became a broker with sessions up (counted for payments) is a
      // broker up now: no session event will say so (rules_broker_role_reaches_sessions).
      // Not one disabled in this batch (enabled again in it), nor one whose secret was
      // rotated in it (rules_rotation_ends_broker_sessions): the server closes the
      // sessions counted, and the next to open is a broker up. (disabled_at and
      // secret_rotated_at are not in snapshots, but a change in this batch sets them past
      // whatever `before` holds, live or in replay, and nothing else changes them.)
      // And one that lost the role with sessions still counted (for payments, or not yet
      // closed by the server for having no role left) is a broker down now
      // (rules_broker_role_loss_hands_orders_on): the server refuses its sessions'
      // answers once it sees the change. Its unacknowledged orders become dead letters
      // (rules_order_role_loss_dead_letter: it may have them); by the rules before, they
      // were handed on. (Their closing later moves nothing more: a session event of a
      // gateway that is no broker touches no order.) The ups go first, so an order handed
      // on in the same batch went to a new broker once.
      if (b.rules >= rules_broker_role_reaches_sessions && b.registry_after) {
        deciding(b, b.count);  // what routing decides (events) is this batch's
        const uint64_t ts = b.timestamp_base + b.count;
        auto was_of = [&](const gateways::gateway& g) { return before ? before->find(g.number) : nullptr; };
        auto broker_was = [&](const gateways::gateway& g) {
          const auto* was = was_of(g);
          return was && (was->roles & wire::roles::broker);
        };
        for (const auto& g : b.registry_after->all()) {
          const auto* was = was_of(g);
          const bool disabled_now = was && was->disabled_at != g.disabled_at;
          const bool rotated_now = b.rules >= rules_rotation_ends_broker_sessions && was &&
                                   was->secret_rotated_at != g.secret_rotated_at;
          if ((g.roles & wire::roles::broker) && g.enabled && !broker_was(g) && !disabled_now && !rotated_now &&
              desks_.sessions(g.number) > 0)
            trading_.broker_up(g.number, ts);
        }
        if (b.rules >= rules_broker_role_loss_hands_orders_on)
          for (const auto& g : b.registry_after->all())
            if (!(g.roles & wire::roles::broker) && broker_was(g) && desks_.sessions(g.number) > 0)
              trading_.broker_down(g.number, ts, false);
        // One that stopped being an enabled broker (the role taken, or disabled: as the
        // batch leaves it, so a disable and an enable in one batch is neither) can no
        // longer report fills: the orders working there become dead letters
        // (rules_withdrawn_broker_dead_letters). The role taken from one disabled before
        // counts too (its orders may be working there since before these rules).
        if (b.rules >= rules_withdrawn_broker_dead_letters)
          for (const auto& g : b.registry_after->all()) {
            const auto* was = was_of(g);
            const bool had_role = was && (was->roles & wire::roles::broker);
            const bool role_lost = had_role && !(g.roles & wire::roles::broker);
            const bool disabled = had_role && was->enabled && !g.enabled;
            if (role_lost || disabled) trading_.broker_withdrawn(g.number, ts);
          }
        // A broker already up (the role and sessions before and after, enabled, neither
        // disabled nor rotated in this batch: its sessions stay) that now serves a
        // currency it did not: the orders waiting for a broker look again
        // (rules_waiting_orders_look_again). A broker new to the role was broker_up above.
        if (b.rules >= rules_waiting_orders_look_again) {
          bool serves_more = false;
          for (const auto& g : b.registry_after->all()) {
            const auto* was = was_of(g);
            if (!was || !broker_was(g) || !(g.roles & wire::roles::broker) || !g.enabled || !was->enabled ||
                was->disabled_at != g.disabled_at || was->secret_rotated_at != g.secret_rotated_at ||
                desks_.sessions(g.number) == 0)
              continue;
            for (const auto& gc : g.currencies) serves_more = serves_more || !was->serves(gc.currency);
          }
          if (serves_more) trading_.route_waiting(ts);
        }
      }
      break;
    }
    case op_kind::deposits:
    case op_kind::payouts:
    case op_kind::rebalance: MESOB_ASSERT_MSG(false, "deposits, payouts and rebalances reach shards as other kinds"); break;
    case op_kind::payout_answers: execute_payout_answers(b); break;
    case op_kind::payout_ops: execute_payout_ops(b); break;
    case op_kind::instrument_ops:
    case op_kind::prices: execute_market(b); break;
    case op_kind::customer_ops:
    case op_kind::policy_ops: execute_customers(b); break;
    case op_kind::lookup_customers:
      for (uint32_t i = 0; i < b.count; ++i)
        if (shard_of(b.account_ids[i], count_) == index_)
          if (const auto* c = customers_.find(b.account_ids[i])) {
            b.found_customers[i] = c->view(std::max(b.sweep_to, b.timestamp_base));  // the engine clock now
            b.results[i] = result::ok;
          }
      break;
    case op_kind::lookup_policy: b.found_policy = policy_.encode(); break;  // shard 0 only
    case op_kind::lookup_instruments: {  // shard 0 only
      const uint64_t t = b.sweep_to;
      if (!b.account_ids.empty()) {
        for (uint32_t i = 0; i < b.count; ++i)
          if (const auto* in = market_.find(b.account_ids[i])) {
            b.found_instruments[i] = in->view(t);
            b.found_sequences[i] = in->last_sequence;
            b.results[i] = result::ok;
          }
        break;
      }
      std::vector<const market::instrument*> all;
      market_.for_each([&](const market::instrument& in) { all.push_back(&in); });
      std::sort(all.begin(), all.end(), [](const auto* x, const auto* y) { return x->def.instrument_id < y->def.instrument_id; });
      for (const auto* in : all) {
        b.found_instruments.push_back(in->view(t));
        b.found_sequences.push_back(in->last_sequence);
      }
      b.results.assign(b.found_instruments.size(), result::ok);
      break;
    }
    case op_kind::gateway_events: break;  // applied above, before the timers
    case op_kind::lookup_payouts: {
      const uint64_t id = b.account_ids.at(0), limit = b.account_ids.at(1);
      const bool problems = b.account_ids.at(2) != 0;  // dead letters and refused settlements only
      const bool rows = b.account_ids.at(3) != 0;      // sweeps too
      const uint64_t from = b.account_ids.at(4);        // listing: ids from this one on
      auto& out = b.found_payouts[index_];
      if (b.account_ids.at(5) != 0) {  // the breakers alone: no pass over the payouts held
        desks_.for_each_desk([&](const payouts::desk& d) {
          for (const auto& [g, br] : d.breakers) b.found_breakers[index_].push_back({d.account, d.currency, g, br});
        });
        trading_.for_each_breaker([&](uint32_t g, const gateways::breaker& br) {
          b.found_order_breakers[index_].push_back({index_, 0, g, br});
        });
        break;
      }
      if (id != 0) {  // one payout: looked up in each desk, nothing counted or listed
        desks_.for_each_desk([&](const payouts::desk& d) {
          if (const auto p = d.payouts.find(id); p != d.payouts.end()) {
            const bool problem = p->second.st == payouts::state::dead || p->second.st == payouts::state::settle_refused;
            if ((!problems || problem) && out.size() < limit) out.push_back(p->second);
          } else if (const auto w = d.watched.find(id); !problems && w != d.watched.end() && out.size() < limit) {
            // A resolved payout kept for a late answer (state resolved): not held.
            out.push_back(w->second);
          }
        });
        break;
      }
      // The desks' figures and id sets are kept as payouts change: counts cost a row per
      // key, a page `limit` ids from each desk.
      desks_.recount();  // (a no-op after a flush; a look-up runs no timers, but cheap to be sure)
      std::map<std::tuple<wire::currency_code, uint8_t, uint32_t, uint32_t>, std::pair<uint64_t, uint64_t>> counts;
      std::vector<std::pair<uint64_t, const payouts::desk*>> page;  // each desk's lowest ids from `from` on
      std::vector<uint64_t> ids;
      desks_.for_each_desk([&](const payouts::desk& d) {
        for (const auto& [k, f] : d.counts) {
          auto& c = counts[{d.currency, k.st, k.gateway, k.day}];
          c.first += f.n;
          gateways::add_amount(c.second, f.amount);  // (desks of one currency: their sum may pass 2^64)
        }
        ids.clear();
        (problems ? d.problem_ids : d.held_ids).take_from(from, limit, &ids);
        for (const uint64_t pid : ids) page.emplace_back(pid, &d);
        if (page.size() > 2 * limit) {  // the lowest `limit` so far: at most 2 x limit kept, whatever the desks
          std::nth_element(page.begin(), page.begin() + ptrdiff_t(limit), page.end(),
                           [](const auto& x, const auto& y) { return x.first < y.first; });
          page.resize(limit);
        }
        for (const auto& [g, br] : d.breakers) b.found_breakers[index_].push_back({d.account, d.currency, g, br});
        if (rows)
          for (const auto& [a, sw] : d.sweeps) b.found_sweeps[index_].push_back({d.account, a, sw});
      });
      trading_.for_each_breaker([&](uint32_t g, const gateways::breaker& br) {
        b.found_order_breakers[index_].push_back({index_, 0, g, br});
      });
      std::sort(page.begin(), page.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
      if (page.size() > limit) page.resize(limit);
      for (const auto& [pid, d] : page)
        if (const auto p = d->payouts.find(pid); p != d->payouts.end()) out.push_back(p->second);
      if (const uint64_t g = b.account_ids.at(6); g != 0)  // one gateway's reconciliation rows in memory
        b.found_recon[index_] = desks_.recon_rows_of(uint32_t(g), b.account_ids.at(7));
      for (const auto& [k, c] : counts)
        b.found_counts[index_].push_back({std::get<0>(k), payouts::state(std::get<1>(k)), std::get<2>(k),
                                          std::get<3>(k), c.first, c.second});
      break;
    }
    case op_kind::equb_ops: execute_equb(b); break;
    case op_kind::lookup_groups: execute_lookup_groups(b); break;
    case op_kind::lookup_account_transfers:
    case op_kind::lookup_balances_as_of: execute_account_queries(b); break;
    case op_kind::currency_totals: {
      auto& out = b.totals[index_];
      for (const auto& slot : slots_) {
        const account& a = slot.a;
        auto it = std::find_if(out.begin(), out.end(), [&](auto& t) { return t.currency == a.currency; });
        if (it == out.end()) it = out.insert(out.end(), currency_total{a.currency});
        it->debits_posted += a.debits_posted;
        it->credits_posted += a.credits_posted;
        it->debits_pending += a.debits_pending;
        it->credits_pending += a.credits_pending;
      }
      desks_.recount();  // (timers this batch ran may have moved payouts)
      audit_groups(b.group_audits[index_]);
      break;
    }
  }
  // Orders held by a halt whose instrument trades again (a resume, a fresh price, a move
  // halt's end) are routed as of the batch's last time, after everything it did; not by
  // a resume marker, whose sessions are those before the stop (rules_orders_downtime).
  if (logged && trading_.holds_orders() && !(marker && b.rules >= rules_orders_downtime)) {
    deciding(b, b.count);
    trading_.market_changed(b.timestamp_base + (b.count > 0 ? b.count - 1 : 0));
  }
  // Cancels still to page to a gateway that came back (instructions only: nothing decided).
  if (logged && !marker) desks_.page_cancels(b.sweep_to);
  desks_.flush();
  trading_.flush();
  publish_stats();
}

void shard::expire_until(uint64_t now) {
  if (expiry_heap_.empty() || expiry_heap_.front().first > now) return;
  settle_all();
  sweep(now);
}

void shard::sweep(uint64_t now) {
  while (!expiry_heap_.empty() && expiry_heap_.front().first <= now) {
    const auto [at, serial] = expiry_heap_.front();
    std::pop_heap(expiry_heap_.begin(), expiry_heap_.end(), heap_cmp{});
    expiry_heap_.pop_back();
    pending_info* p = local_pending(serial);
    if (!p || p->state != pending_state::pending || p->expires_at != at) continue;
    if (account* dr = local_account(p->debit_account_id)) {
      mark_dirty(slot_index(dr));
      apply_resolve_debit(*dr, *p, 0);
    }
    if (account* cr = local_account(p->credit_account_id)) {
      mark_dirty(slot_index(cr));
      apply_resolve_credit(*cr, *p, 0);
    }
    set_pending_state(*p, pending_state::expired);
    note_pending_change(uint32_t(p - pendings_.data()));
    if (keep_expired_ && shard_of(p->debit_account_id, count_) == index_)
      expired_.push_back({p->serial, at, p->debit_account_id, p->credit_account_id, p->amount, p->currency});
  }
}

void shard::execute_accounts(batch& b) {
  for (uint32_t i = 0; i < b.count; ++i) {
    if (b.results[i] != result::ok) continue;  // failed its field checks
    const account& req = b.accounts[i];
    if (shard_of(req.id, count_) != index_) continue;
    if (const account* existing = find_account(req.id)) {
      b.results[i] = decide_existing_account(req, *existing);
      if (!b.repeated.empty()) b.repeated[i] = 1;
      continue;
    }
    // The engine's own accounts (flag `gateway`: a few per currency and shard) are not
    // refused; they count among the shard's accounts.
    if (!b.gateway && slots_.size() >= share(b.capacity)) {
      b.results[i] = result::accounts_full;
      continue;
    }
    account a = req;
    a.timestamp = b.timestamp_base + i;
    a.status = account_status::open;
    const auto idx = uint32_t(slots_.size());
    account_index_.put(a.id, idx);
    slots_.push_back({a, 0, clean});
    mark_dirty(idx);
  }
}

void shard::execute_status(batch& b) {
  for (uint32_t i = 0; i < b.count; ++i) {
    if (b.results[i] != result::ok) continue;
    const auto& c = b.status_changes[i];
    if (shard_of(c.account_id, count_) != index_) continue;
    account* a = local_account(c.account_id);
    if (!a) {
      b.results[i] = result::account_not_found;
      continue;
    }
    bool repeat = false;
    b.results[i] = decide_status_change(c, *a, rules_, &repeat);
    if (repeat) {  // the account's latest change again: its outcome, nothing to do
      if (!b.repeated.empty()) b.repeated[i] = 1;
      continue;
    }
    if (b.results[i] == result::ok && a->kind == account_kind::group_escrow && groups_.find(a->id))
      b.results[i] = result::group_account_reserved;  // a group's escrow follows its group
    if (b.results[i] == result::ok && c.status == account_status::closed && rules_ >= rules_portfolio_close_and_sells &&
        trading_.holds_anything(a->id))
      b.results[i] = result::account_has_positions;  // closed, its units could never be sold
    if (b.results[i] == result::ok) {
      // Before version 17 a change to the status the account has changed nothing: no
      // event. Since, it counts (status_seq), and its event says so.
      if (!b.repeated.empty() && a->status == c.status && rules_ < rules_status_seq) b.repeated[i] = 1;
      mark_dirty(slot_index(a));
      a->status = c.status;
      if (rules_ >= rules_status_seq) ++a->status_seq;  // numbered or not, the account's next change
      if (!b.status_seqs.empty()) b.status_seqs[i] = a->status_seq;
    }
  }
}

void shard::execute_lookup_accounts(batch& b) {
  for (uint32_t i = 0; i < b.count; ++i) {
    const uint64_t id = b.account_ids[i];
    if (shard_of(id, count_) != index_) continue;
    if (const account* a = find_account(id)) {
      b.found_accounts[i] = *a;
      b.results[i] = result::ok;
    } else {
      b.results[i] = result::account_not_found;
    }
  }
}

// Account queries: the shard supplies the account and its history head; the sequencer
// then walks the records.
void shard::execute_account_queries(batch& b) {
  for (uint32_t i = 0; i < b.count; ++i) {
    const uint64_t id = b.account_ids[i];
    if (shard_of(id, count_) != index_) continue;
    const uint32_t* idx = id ? account_index_.find(id) : nullptr;
    if (!idx) continue;  // results[i] stays account_not_found
    b.found_accounts[i] = slots_[*idx].a;
    b.last_serials[i] = slots_[*idx].last_serial;
    b.results[i] = result::ok;
  }
}

void shard::execute_equb(batch& b) {
  auto make_escrow = [this](const account& a) {
    if (find_account(a.id)) return false;
    const auto idx = uint32_t(slots_.size());
    account_index_.put(a.id, idx);
    slots_.push_back({a, 0, clean});
    mark_dirty(idx);
    return true;
  };
  for (uint32_t i = 0; i < b.count; ++i) {
    if (b.results[i] != result::ok) continue;  // failed its field checks
    const wire::equb_op& op = b.equb_ops[i];
    if (shard_of(op.group_id, count_) != index_) continue;
    if (!b.repeated.empty() && op.kind == wire::equb_op_kind::create && groups_.find(op.group_id)) b.repeated[i] = 1;
    deciding(b, i + 1);
    // (Records before rules_escrow_capacity carry no accounts_max: no limit.)
    const bool escrow_room = b.accounts_capacity == 0 || slots_.size() < share(b.accounts_capacity);
    b.results[i] = groups_.execute(op, b.timestamp_base + i, make_escrow, share(b.capacity), escrow_room);
  }
}

// The equb invariant for each group this shard hosts: its escrow account holds what the
// group says (escrow plus what its obligations still move), with nothing pending; a
// completed group's escrow is empty and every seat received exactly once.
void shard::audit_groups(batch::group_audit& out) const {
  std::vector<std::pair<uint64_t, std::string>> faults;  // by group id: the same faults kept at every start
  groups_.for_each([&](const equb::group_entry& e) {
    ++out.checked;
    const uint64_t id = e.g.cfg.group_id;
    const account* a = find_account(id);
    const uint64_t expected = equb::escrow_expected(e);
    std::string fault;
    if (!a) {
      fault = "its escrow account is missing";
    } else if (a->debits_pending || a->credits_pending || a->debits_posted > a->credits_posted ||
               a->credits_posted - a->debits_posted != expected) {
      fault = "its escrow holds " + std::to_string(int64_t(a->credits_posted - a->debits_posted)) +
              " (pending " + std::to_string(a->debits_pending + a->credits_pending) + ") but the group says " +
              std::to_string(expected);
    } else if (e.g.ph == equb::phase::completed) {
      uint32_t received = 0;
      for (const auto& s : e.g.seats) received += s.received_round != 0;
      if (expected != 0 && e.owed.empty()) fault = "completed with money left in escrow";
      else if (received != e.g.seats.size()) fault = "completed with a seat that never received";
    }
    if (!fault.empty()) faults.emplace_back(id, std::move(fault));
  });
  std::sort(faults.begin(), faults.end());
  for (auto& [id, fault] : faults) {
    if (out.faults.size() >= batch::group_faults_max) break;
    out.faults.push_back("group " + std::to_string(id) + ": " + fault);
  }
  // Each payout account holds, pending, exactly the payouts its desk holds, and posted
  // what its sweeps owe.
  // Its held figures (what operators see) are those of the payouts it holds.
  desks_.for_each_desk([&](const payouts::desk& d) {
    ++out.checked;
    uint64_t held = 0;
    std::array<payouts::desk::held_figures, 8> by_state{};
    std::map<payouts::desk::count_key, payouts::desk::held_figures> by_key;
    std::vector<uint64_t> ids, problem_ids;
    for (const auto& [id, p] : d.payouts) {
      held += p.amount;
      auto& f = by_state[size_t(p.st) % by_state.size()];
      ++f.n;
      f.amount += p.amount;
      auto& k = by_key[{uint8_t(p.st), p.attempts.empty() ? 0 : p.attempts.back().gateway,
                        uint32_t(p.created_at / payouts::ns_per_day)}];
      ++k.n;
      k.amount += p.amount;
      ids.push_back(id);
      if (payouts::is_problem(p.st)) problem_ids.push_back(id);
    }
    std::sort(ids.begin(), ids.end());
    std::sort(problem_ids.begin(), problem_ids.end());
    const auto listed = [](const ordered_ids& set) {
      std::vector<uint64_t> v;
      set.for_each([&](uint64_t id) { v.push_back(id); });
      return v;
    };
    const bool keys_match = std::equal(by_key.begin(), by_key.end(), d.counts.begin(), d.counts.end(),
                                       [](const auto& x, const auto& y) {
                                         return x.first == y.first && x.second.n == y.second.n &&
                                                x.second.amount == y.second.amount;
                                       });
    if ((!keys_match || listed(d.held_ids) != ids || listed(d.problem_ids) != problem_ids) &&
        out.faults.size() < batch::group_faults_max)
      out.faults.push_back("payout desk " + wire::currency_name(d.currency) + " " +
                           std::to_string(payouts::desk_slot(d.account)) + ": its counts by gateway and day (" +
                           std::to_string(d.counts.size()) + " keys, " + std::to_string(d.held_ids.size()) + " ids, " +
                           std::to_string(d.problem_ids.size()) + " problems) are not those of the payouts it holds (" +
                           std::to_string(by_key.size()) + " keys, " + std::to_string(ids.size()) + " ids, " +
                           std::to_string(problem_ids.size()) + " problems)");
    for (size_t k = 0; k < by_state.size(); ++k)
      if ((by_state[k].n != d.held[k].n || by_state[k].amount != d.held[k].amount) &&
          out.faults.size() < batch::group_faults_max)
        out.faults.push_back("payout desk " + wire::currency_name(d.currency) + " " +
                             std::to_string(payouts::desk_slot(d.account)) + ": its figures count " +
                             std::to_string(d.held[k].n) + " payouts of " + std::to_string(d.held[k].amount) + " " +
                             payouts::state_name(payouts::state(k)) + " but it holds " + std::to_string(by_state[k].n) +
                             " of " + std::to_string(by_state[k].amount));
    const account* a = find_account(d.account);
    if ((!a || !payouts::account_matches(d, held, *a)) && out.faults.size() < batch::group_faults_max)
      out.faults.push_back("payout desk " + wire::currency_name(d.currency) + " " + std::to_string(payouts::desk_slot(d.account)) + ": its account " +
                           (a ? "holds " + std::to_string(a->credits_pending) + " pending, " +
                                    std::to_string(int64_t(a->credits_posted - a->debits_posted)) + " posted"
                              : std::string("is missing")) +
                           " but the desk holds " + std::to_string(held) + " and owes " +
                           std::to_string(d.owed()));
  });
  audit_trading(out);
}

// Each portfolio here: per wallet, the pending transfers between it and a trading account
// (its orders' holds: wallet -> trading account for buys, the reverse for sells) sum to
// what its open orders hold (trading::hold_amount). A wallet whose chains have not
// executed yet is passed over: their holds are in flight.
std::string shard::portfolios_disagree() const {
  batch::group_audit out;
  audit_trading(out, /*starting=*/true);
  return out.faults.empty() ? std::string() : out.faults.front();
}

void shard::audit_trading(batch::group_audit& out, bool starting) const {
  struct sums {
    uint64_t ledger[2] = {0, 0};  // pending: buys, sells
    uint64_t book[2] = {0, 0};
    uint32_t orders = 0;
    uint32_t refused = 0;  // of them, orders a settlement of which the ledger refused
    uint32_t refused_closed = 0;  // closed orders kept whose settlement the ledger refused
  };
  std::map<uint64_t, sums> by_wallet;
  for (const pending_info& p : pendings_) {
    if (p.state != pending_state::pending) continue;
    const bool buy = trading::trading_account(p.credit_account_id);
    if (!buy && !trading::trading_account(p.debit_account_id)) continue;
    const uint64_t wallet = buy ? p.debit_account_id : p.credit_account_id;
    if (shard_of(wallet, count_) == index_) by_wallet[wallet].ledger[buy ? 0 : 1] += p.amount;
  }
  std::set<uint64_t> in_flight;
  trading_.for_each_wallet([&](uint64_t wallet, const portfolio::book& book, bool owes) {
    if (owes) {
      in_flight.insert(wallet);
      return;
    }
    book.for_each_order([&](const portfolio::order_entry& e) {
      if (e.st != portfolio::order_state::open) {
        if (e.settle_refused) ++by_wallet[wallet].refused_closed;
        return;
      }
      sums& s = by_wallet[wallet];
      s.book[e.o.side == wire::order_side::buy ? 0 : 1] += trading::hold_amount(e);
      ++s.orders;
      s.refused += e.settle_refused;
    });
  });
  for (const auto& [wallet, s] : by_wallet) {
    if (in_flight.count(wallet)) continue;
    ++out.checked;
    if (s.ledger[0] == s.book[0] && s.ledger[1] == s.book[1]) continue;
    // A start passes over a wallet with a refused settlement, open or closed: the ledger
    // and the book part there by what was refused (the audit reports it for an operator).
    if (starting && s.refused + s.refused_closed != 0) continue;
    if (out.faults.size() < batch::group_faults_max)
      out.faults.push_back("portfolio " + std::to_string(wallet) + ": its " + std::to_string(s.orders) +
                           (s.orders == 1 ? " open order holds " : " open orders hold ") +
                           std::to_string(s.book[0]) + " for buys and " +
                           std::to_string(s.book[1]) + " for sells, but the ledger holds " +
                           std::to_string(s.ledger[0]) + " and " + std::to_string(s.ledger[1]) + " pending" +
                           (s.refused != 0 ? " (the ledger refused a settlement of " + std::to_string(s.refused) +
                                                 " of them: an operator's to see)"
                                           : std::string()));
  }
}

void shard::execute_lookup_groups(batch& b) {
  // A reply holds at most the protocol's frame ceiling: this shard copies its groups up to
  // its share of it (its first always); later ones are answered lookup_reply_full. Before,
  // a request naming a group with many refused payments 64 times copied it 64 times
  // before the server found the reply too large.
  const size_t share = wire::frame_bytes_max_ceiling / std::max<uint32_t>(1, count_);
  size_t bytes = 0;
  for (uint32_t i = 0; i < b.count; ++i) {
    const uint64_t id = b.account_ids[i];
    if (shard_of(id, count_) != index_) continue;
    if (const equb::group_entry* e = groups_.find(id)) {
      const size_t n = equb::item_bytes(*e);
      if (bytes != 0 && bytes + n > share) {
        b.results[i] = result::lookup_reply_full;
        continue;
      }
      bytes += n;
      b.found_groups[i] = *e;
      b.found_groups[i].g.secret = {};  // the lottery's future draws stay secret
      if (const account* escrow = find_account(id)) b.found_accounts[i] = *escrow;  // (same shard: same id)
      b.results[i] = result::ok;
    }
  }
}

// Answers and operators' actions for the desks here: the sequencer named each item's
// desk (its hold's payout account) and already refused malformed items.
void shard::execute_payout_answers(batch& b) {
  for (uint32_t i = 0; i < b.count; ++i) {
    if (shard_of(b.payout_desks[i], count_) != index_ || b.results[i] != result::ok) continue;  // the owner writes it
    deciding(b, i + 1);
    b.results[i] = desks_.answer(b.payout_answers[i], b.payout_desks[i], b.timestamp_base + i);
  }
}

void shard::execute_payout_ops(batch& b) {
  for (uint32_t i = 0; i < b.count; ++i) {
    if (shard_of(b.payout_desks[i], count_) != index_ || b.results[i] != result::ok) continue;  // the owner writes it
    deciding(b, i + 1);
    b.results[i] = desks_.op(b.payout_ops[i], b.payout_desks[i], b.timestamp_base + i);
  }
}

// Every shard applies the batch to its copy of the market, in log order; shard 0's copy
// writes the results (every copy reaches the same) and makes the events.
void shard::execute_market(batch& b) {
  for (uint32_t i = 0; i < b.count; ++i) {
    deciding(b, i + 1);
    // Halts and resumes time decided before this operation's time come first.
    if (market_.due(b.timestamp_base + i)) market_.run_due(b.timestamp_base + i);
    bool repeated = false;
    const result r =
        b.kind == op_kind::prices ? market_.apply(b.prices[i], b.timestamp_base + i)
        : b.instrument_ops[i].kind == wire::instrument_op_kind::resequence && b.rules < rules_instrument_resequence
            ? result::instrument_op_invalid  // an older build's log: that kind was not one
            : market_.apply(b.instrument_ops[i], b.timestamp_base + i, &repeated);
    if (index_ == 0) b.results[i] = r;
  }
}

// Policy changes: every shard's copy, shard 0's results. KYC records: the wallet's shard
// decides and writes (the sequencer made the field checks and sent each batch to the
// shards of its wallets).
void shard::execute_customers(batch& b) {
  for (uint32_t i = 0; i < b.count; ++i) {
    bool repeated = false;
    if (b.kind == op_kind::policy_ops) {
      const result r = policy_.apply(b.policy_ops[i], &repeated);
      if (index_ != 0) continue;
      b.results[i] = r;
      if (!b.repeated.empty()) b.repeated[i] = repeated;
      continue;
    }
    const wire::customer_op& op = b.customer_ops[i];
    if (shard_of(op.wallet, count_) != index_ || b.results[i] != result::ok) continue;  // the owner writes it
    if (op.kind == wire::customer_op_kind::resequence) {  // its fields passed: rules 9 on
      customers::customer* c = customers_.find(op.wallet);
      if (!c) {
        b.results[i] = result::customer_not_found;
        continue;
      }
      // Already counting from there by an earlier resequence (by older rules, whatever
      // set it: a record taken at it too).
      const bool same = c->sequence == op.sequence && (c->resequenced || rules_ < rules_resequence_marks);
      if (!b.repeated.empty()) b.repeated[i] = same;
      if (same) continue;
      c->sequence = op.sequence;
      c->resequenced = true;
      c->updated_at = b.timestamp_base + i;
      customers_.mark_dirty(op.wallet);
      continue;
    }
    account* a = local_account(op.wallet);
    result r = result::ok;
    if (!a) r = result::account_not_found;
    else if (a->kind != account_kind::customer_wallet) r = result::customer_wallet_required;
    else if (!policy_.tier(op.tier, a->currency)) r = result::tier_undefined;
    b.results[i] = r;
    if (r != result::ok) continue;
    customers::customer* had = customers_.find(op.wallet);
    if (had && (op.sequence < had->sequence || (op.sequence == had->sequence && had->resequenced)))
      r = result::sequence_out_of_order;
    else if (had && op.sequence == had->sequence)
      r = had->kyc == op.kyc && had->profile == op.profile && had->tier == op.tier && had->reference == op.reference
              ? result::ok
              : result::exists_with_different_fields;
    b.results[i] = r;
    if (r != result::ok) continue;
    repeated = had && op.sequence == had->sequence;
    if (!b.repeated.empty()) b.repeated[i] = repeated;
    if (repeated) continue;
    customers::customer& c = customers_.at(op.wallet);
    c.sequence = op.sequence;
    c.resequenced = false;
    c.kyc = op.kyc;
    c.profile = op.profile;
    c.tier = op.tier;
    c.reference = op.reference;
    c.updated_at = b.timestamp_base + i;
    customers_.mark_dirty(op.wallet);
    if (a->tier != op.tier) {
      save_account(slot_index(a), false);
      a->tier = op.tier;
    }
  }
}

// Brokers' answers for orders of wallets on this shard (the sequencer found each one's
// wallet from its hold).
void shard::execute_order_answers(batch& b) {
  for (uint32_t i = 0; i < b.count; ++i) {
    const auto& a = b.order_answers[i];
    if (b.results[i] != result::ok || shard_of(a.wallet, count_) != index_) continue;
    deciding(b, i + 1);
    bool repeated = false;
    b.results[i] = trading_.answer(a, market_, b.timestamp_base + i, &repeated);
    if (!b.repeated.empty()) b.repeated[i] = repeated;
  }
}

// The KYC tier's part of a fresh transfer's decision, from the sides this shard owns:
// the debit wallet's single and daily limits (its outflow lives here), the credit
// wallet's balance limit. A group's verdict on a side comes first.
void shard::limit_verdicts(const batch& b, uint32_t o, op_inputs& in) const {
  const op_route& r = b.routes[o];
  const transfer& t = b.transfers[o];
  const uint64_t ts = b.timestamp_base + o;
  if (b.emitted) return;  // the engine's own transfers (actors/customers.hpp)
  if (b.kind == op_kind::orders && rules_ >= rules_order_limits_after_wallet && order_wallet_unfit(b, o, in)) return;
  // A member's payment of what its seat owes (rules_equb_dues_past_limits): the group
  // decides its amount (exactly what is owed), and the join took the obligation on
  // under the tier; it counts in the day's outflow all the same (shard::apply).
  const bool owed_to_group = rules_ >= rules_equb_dues_past_limits && (t.flags & transfer_flags::equb) != 0 &&
                             (t.user_data >> 32) != 0;
  if (r.debit_shard == index_ && in.dr && in.dr->tier != 0 && in.verdict_debit == result::ok && !owed_to_group) {
    const auto* c = customers_.find(in.dr->id);
    const auto* l = policy_.tier(uint8_t(in.dr->tier), in.dr->currency);
    MESOB_ASSERT_MSG(c && l, "a wallet with a tier has a customer record and its tier's limits");
    in.verdict_debit = customers::check_debit(*c, *l, t.amount, ts);
  }
  if (r.credit_shard == index_ && in.cr && in.cr->tier != 0 && in.verdict_credit == result::ok) {
    const auto* l = policy_.tier(uint8_t(in.cr->tier), in.cr->currency);
    MESOB_ASSERT_MSG(l, "a wallet with a tier has its tier's limits");
    in.verdict_credit = customers::check_credit(*in.cr, *l, t.amount);
    // A sell (the credit of an orders batch) at the most its fills may fetch now, with
    // the wallet's open sells' (rules_sell_balance_at_reference): their improvements are
    // not checked. (The hold alone refused: no need to look further.)
    if (b.kind == op_kind::orders && rules_ >= rules_sell_balance_at_reference && in.verdict_credit == result::ok &&
        b.orders[o].side == wire::order_side::sell)
      in.verdict_credit =
          customers::check_credit(*in.cr, *l, trading_.sell_balance_credit(b.orders[o], t.amount, ts));
  }
}

// The groups' part of a fresh transfer's decision, from the sides this shard owns (whose
// accounts `in` holds): an equb payment is the group's to decide; any other transfer
// that touches a group's escrow account is refused, unless that group emitted it. Escrow
// accounts are looked up in the group table only when the account is of that kind.
void shard::group_verdicts(const batch& b, uint32_t o, op_inputs& in) const {
  const transfer& t = b.transfers[o];
  const op_route& r = b.routes[o];
  if (b.kind == op_kind::orders) order_verdict(b, o, in);
  auto escrow = [&](const account* a) {
    return a && a->kind == account_kind::group_escrow && !(b.emitted && t.user_data == a->id) &&
           groups_.find(a->id) != nullptr;
  };
  if (r.credit_shard == index_) {
    if ((t.flags & transfer_flags::equb) && !b.emitted) in.verdict_credit = groups_.verdict(t, b.timestamp_base + o);
    else if (escrow(in.cr)) in.verdict_credit = result::group_account_reserved;
  }
  if (r.debit_shard == index_ && escrow(in.dr)) in.verdict_debit = result::group_account_reserved;
  // A deposit credits a customer wallet (rules_deposit_to_wallet).
  if (r.credit_shard == index_ && b.gateway && rules_ >= rules_deposit_to_wallet && in.cr &&
      in.cr->kind != account_kind::customer_wallet && in.verdict_credit == result::ok && gateways::deposit_id(t.id))
    in.verdict_credit = result::customer_wallet_required;
  // A client's payout holds a customer wallet (rules_payout_from_wallet): not the holds
  // the engine makes itself (an equb group's payout sent on, from a seat's account).
  if (r.debit_shard == index_ && b.gateway && !b.emitted && rules_ >= rules_payout_from_wallet && in.dr &&
      in.dr->kind != account_kind::customer_wallet && in.verdict_debit == result::ok && payouts::hold(t.id) &&
      !payouts::engine_payout(t.id.lo))
    in.verdict_debit = result::customer_wallet_required;
  limit_verdicts(b, o, in);
  pending_room_verdict(b, o, in);
}

// A new pending transfer makes an entry on the shard of each side: one holding its share
// of the batch's pending_max refuses it (pending_full) through the side it owns, which
// the other side's shard reads as it reads the groups' verdicts. Transfers the engine
// emits (its desks', groups' and portfolios' holds) are not refused: their state
// machines bound them, and could not take a refusal they did not expect. An order's
// verdict comes before the ledger's checks (run_chain): a wallet missing, not open or of
// another currency is the ledger's to name, as for the tiers' limits.
void shard::pending_room_verdict(const batch& b, uint32_t o, op_inputs& in) const {
  const op_route& r = b.routes[o];
  if (!(b.transfers[o].flags & transfer_flags::pending) || b.emitted || pending_open_ < share(b.capacity)) return;
  if (r.debit_shard != index_ && r.credit_shard != index_) return;
  if (b.kind == op_kind::orders &&
      (!(b.orders[o].side == wire::order_side::buy ? in.dr : in.cr) || order_wallet_unfit(b, o, in)))
    return;
  result& v = r.debit_shard == index_ ? in.verdict_debit : in.verdict_credit;
  if (v == result::ok) v = result::pending_full;
}

// The portfolio's part of an order's decision: both of its hold's accounts are here (the
// trading account is the wallet's shard's), so the wallet's side carries it. Before the
// ledger's: an order the portfolio refuses gets the portfolio's reason (insufficient_cash,
// not exceeds_credits). But a wallet of another currency or not open is the ledger's to
// name (rules_order_wallet_first; and before the tier's limits, rules_order_limits_after_wallet):
// the portfolio would read its cash as if it were the order's.
void shard::order_verdict(const batch& b, uint32_t o, op_inputs& in) const {
  const wire::order ord = trading::as_sent(b.orders[o]);
  const bool buy = ord.side == wire::order_side::buy;
  const account* wallet = buy ? in.dr : in.cr;
  portfolio::order_inputs pin;
  pin.customer = customers_.find(ord.wallet);
  pin.policy = &policy_;
  pin.instrument = market_.find(ord.instrument_id);
  pin.t = b.timestamp_base + o;
  pin.rules = rules_;
  if (wallet) {
    const uint64_t out = wallet->debits_posted + wallet->debits_pending;
    pin.wallet_available = wallet->credits_posted > out ? wallet->credits_posted - out : 0;
  }
  const bool ledger_first = rules_ >= rules_order_wallet_first && order_wallet_unfit(b, o, in);
  // No wallet: the ledger says so.
  const result v = wallet && !ledger_first ? trading_.check(ord, pin) : result::ok;
  (buy ? in.verdict_debit : in.verdict_credit) = v;
}

bool shard::order_wallet_unfit(const batch& b, uint32_t o, const op_inputs& in) const {
  const wire::order& ord = b.orders[o];
  const account* wallet = ord.side == wire::order_side::buy ? in.dr : in.cr;
  return wallet && (wallet->currency != ord.currency || wallet->status != wire::account_status::open);
}

// Starts the cache misses of operation o's local accounts: first the index slots
// (`data` false), then, some operations later, the account records the slots point to.
void shard::prefetch_op(const batch& b, uint32_t o, bool data) const {
  const op_route& r = b.routes[o];
  if (!(r.chain_mask & bit_) || (r.kind != route_kind::fresh && r.kind != route_kind::resolve)) return;
  const transfer& t = b.transfers[o];
  const bool ref = r.kind == route_kind::resolve && r.has_ref;
  const uint64_t ids[2] = {ref ? r.ref_debit_account_id : t.debit_account_id,
                           ref ? r.ref_credit_account_id : t.credit_account_id};
  const uint8_t owners[2] = {r.debit_shard, r.credit_shard};
  if (data && (owners[0] == index_ || owners[1] == index_)) {
    // The record's history links, written by link_history; the sequencer wrote the
    // record last, on another core.
    const transfer_record& rec = records_.at(r.serial);
    mesob::prefetch_write(&rec.debit_prev);
    mesob::prefetch_write(&rec.credit_after_credits_posted);
  }
  for (int k = 0; k < 2; ++k) {
    if (owners[k] != index_ || ids[k] == 0) continue;
    if (!data) {
      account_index_.prefetch(ids[k]);
      continue;
    }
    const uint32_t* i = account_index_.find(ids[k]);
    if (!i) continue;
    const char* a = reinterpret_cast<const char*>(&slots_[*i]);
    mesob::prefetch(a);
    mesob::prefetch(a + sizeof(account_slot) - 1);
  }
}

void shard::execute_transfers(batch& b) {
  // Only this shard's operations, from the sequencer's list.
  const uint32_t* ops = b.shard_ops.data() + b.shard_ops_begin[index_];
  const uint32_t n = b.shard_ops_begin[index_ + 1] - b.shard_ops_begin[index_];
  // Accounts are scattered over memory far larger than the caches: look up each
  // operation's accounts ahead of executing it, so the misses overlap (perf/RESULTS.md).
  // The batch's own arrays were written by the sequencer on another core: their lines
  // are fetched further ahead still.
  constexpr uint32_t batch_ahead = 48, index_ahead = 16, data_ahead = 8;
  uint32_t next_index = 0, next_data = 0, next_batch = 0;
  for (uint32_t p = 0; p < n;) {
    const uint32_t first = ops[p];
    const uint32_t last = b.routes[first].chain_end;
    const uint32_t p_last = p + (last - first);  // a chain's operations are listed together
    MESOB_DEBUG_ASSERT(last >= first && last < b.count && p_last < n && ops[p_last] == last);
    for (; next_batch < std::min(n, p_last + 1 + batch_ahead); ++next_batch) {
      const char* t = reinterpret_cast<const char*>(&b.transfers[ops[next_batch]]);
      mesob::prefetch(&b.routes[ops[next_batch]]);
      mesob::prefetch(t);
      mesob::prefetch(t + sizeof(transfer) - 1);
    }
    for (; next_index < std::min(n, p_last + 1 + index_ahead); ++next_index) prefetch_op(b, ops[next_index], false);
    for (; next_data < std::min(n, p_last + 1 + data_ahead); ++next_data) prefetch_op(b, ops[next_data], true);
    settle_ready();
    if (first == last && deferrable(b, first)) {
      run_plain(b, first);
    } else {
      settle_all();
      run_chain(b, first, last);
    }
    p = p_last + 1;
  }
}

// Publish and continue. A shard that reaches a cross-shard transfer before the other
// shard has published its part does not wait for it: it publishes its own part, sets
// the operation aside and goes on with the next ones, settling the set-aside operation
// (decide, write the result, apply its own side) once the other part has arrived. This
// keeps the result the same as settling in batch order because nothing a set-aside
// operation reads changes before it is settled: its copy of the local account was
// published at its place in the batch, and a later operation that touches that account
// settles every set-aside one first. Only plain transfers are set aside (one operation,
// not linked, not pending, not a post or void, not emitted by a group or desk: their
// outcomes change the emitter's state, which must change at the operation's place in
// the log, before the timers of a later batch); anything else settles them all first.
// No deadlock: a shard that waits has published every cross-shard operation before its
// position, so the lowest operation anyone waits for is always published by the others.
bool shard::deferrable(const batch& b, uint32_t o) const {
  const op_route& r = b.routes[o];
  return r.kind == route_kind::fresh && !(b.transfers[o].flags & transfer_flags::pending) && !b.emitted;
}

void shard::run_plain(batch& b, uint32_t o) {
  const op_route& r = b.routes[o];
  const transfer& t = b.transfers[o];
  const uint64_t mine[2] = {r.debit_shard == index_ ? t.debit_account_id : 0,
                            r.credit_shard == index_ ? t.credit_account_id : 0};
  for (size_t k = set_aside_pos_; k < set_aside_.size(); ++k)
    if ((mine[0] != 0 && set_aside_[k].account_id == mine[0]) ||
        (mine[1] != 0 && set_aside_[k].account_id == mine[1])) {
      settle_all();
      break;
    }
  const bool sync = __builtin_popcount(r.chain_mask) > 1;
  if (!sync) {
    run_chain(b, o, o);
    return;
  }
  op_inputs in;
  in.dr = mine[0] != 0 ? local_account(mine[0]) : nullptr;
  in.cr = mine[1] != 0 ? local_account(mine[1]) : nullptr;
  group_verdicts(b, o, in);
  publish_part(b, o, in);
  if (set_aside_.size() - set_aside_pos_ == set_aside_max) settle_oldest();
  set_aside_.push_back({&b, o, mine[0] != 0 ? mine[0] : mine[1]});
  settle_ready();
}

void shard::settle_oldest() {
  const set_aside_op a = set_aside_[set_aside_pos_++];
  if (set_aside_pos_ == set_aside_.size()) {
    set_aside_.clear();
    set_aside_pos_ = 0;
  }
  batch& b = *a.b;
  const op_inputs in = read_slot(b, a.op);
  const transfer& t = b.transfers[a.op];
  result res = decide_transfer(t, b.timestamp_base + a.op, in.dr, in.cr);
  if (res == result::ok) res = in.verdict();
  write_result(b, a.op, res);
  if (res == result::ok) apply(b, a.op, in, false);
  if (b.emitted) {
    deciding(b, a.op + 1);
    chain_done(t, res, b.timestamp_base + a.op);
  }
}

void shard::settle_ready() {
  while (set_aside_pos_ < set_aside_.size()) {
    const set_aside_op& a = set_aside_[set_aside_pos_];
    const op_route& r = a.b->routes[a.op];
    if (!published(a.b->slots[r.slot], required_mask(r))) return;
    settle_oldest();
  }
}

void shard::settle_all() {
  while (set_aside_pos_ < set_aside_.size()) settle_oldest();
}

// A batch is finished on this shard once it has executed and none of its transfers is
// still set aside; batches finish in order. The last shard to finish one runs its
// `done`.
void shard::executed(batch& b) {
  executed_.push_back(&b);
  finish_ready();
}

void shard::finish_ready() {
  while (executed_pos_ < executed_.size()) {
    batch* b = executed_[executed_pos_];
    if (set_aside_pos_ < set_aside_.size() && set_aside_[set_aside_pos_].b == b) return;
    ++executed_pos_;
    if (b->shards_remaining.fetch_sub(1, std::memory_order_acq_rel) == 1 && b->done) b->done(*b);
  }
  executed_.clear();
  executed_pos_ = 0;
}

static_assert(payouts::desk_table::emit_group_max == batch_ops_max);
static_assert(trading::table::emit_group_max == batch_ops_max);

void shard::finish_all() {
  settle_all();
  // Payouts the holds settled here made are in the figures before their replies go.
  desks_.recount();
  publish_held();
  finish_ready();
  desks_.flush();  // instructions of holds settled after their batch's execute()
  trading_.flush();
}

uint32_t shard::writer_of(const op_route& r) const {
  switch (r.kind) {
    case route_kind::static_failed:
    case route_kind::duplicate: return lowest_bit_index(r.chain_mask);
    case route_kind::fresh:
    case route_kind::resolve: return r.debit_shard;
  }
  return 0;
}

void shard::write_result(batch& b, uint32_t o, result res) {
  const op_route& r = b.routes[o];
  if (writer_of(r) != index_) return;
  b.results[o] = res;
  if (r.kind == route_kind::fresh || r.kind == route_kind::resolve)
    records_.at(r.serial).result = uint32_t(res);
}

pending_lookup shard::lookup_pending(const op_route& r, const pending_info** out) {
  using ref_state = op_route::ref_state;
  if (r.ref == ref_state::none || r.ref == ref_state::not_found) return pending_lookup::not_found;
  if (r.ref == ref_state::not_pending) return pending_lookup::not_pending;
  if (r.ref == ref_state::in_batch) {
    // Recorded earlier in this batch by this shard: its outcome is final and resident.
    const transfer_record& rec = records_.at(r.ref_serial);
    MESOB_ASSERT(rec.result != result_unresolved);
    if (rec.result != uint32_t(result::ok)) return pending_lookup::not_found;
    if (!(rec.t.flags & transfer_flags::pending)) return pending_lookup::not_pending;
  }
  const pending_info* p = local_pending(r.ref_serial);
  if (p == nullptr) {
    // Resolved and evicted: its final state is in the snapshot. A row that cannot be read
    // (damage on the disk) still says it was resolved (only those leave memory), so the
    // post or void is refused whatever the row held: nothing changes, replay decides the
    // same, and the reader tells the operator.
    MESOB_ASSERT(read_resolved_);
    if (!read_resolved_(r.ref_serial, &resolved_copy_)) return pending_lookup::unreadable;
    p = &resolved_copy_;
  }
  *out = p;
  return pending_lookup::found;
}

shard::op_inputs shard::gather(batch& b, uint32_t o, bool sync) {
  const op_route& r = b.routes[o];
  const transfer& t = b.transfers[o];
  op_inputs in;
  // Local reads: the parts this shard owns.
  uint64_t dr_id = t.debit_account_id, cr_id = t.credit_account_id;
  if (r.kind == route_kind::resolve && r.ref_shard == index_ && r.has_ref)
    in.lookup = lookup_pending(r, &in.p);
  if (r.kind == route_kind::resolve && !sync && !in.p) return in;  // not found / not pending
  if (r.kind == route_kind::resolve && r.has_ref) {
    // A post or void touches the pending transfer's accounts (from the sequencer).
    dr_id = r.ref_debit_account_id;
    cr_id = r.ref_credit_account_id;
  }
  if (r.kind == route_kind::fresh || r.kind == route_kind::resolve) {
    if (r.debit_shard == index_) in.dr = local_account(dr_id);
    if (r.credit_shard == index_) in.cr = local_account(cr_id);
  }
  if (r.kind == route_kind::fresh) group_verdicts(b, o, in);
  if (!sync) return in;

  // Cross-shard: publish what this shard owns, wait for the rest, read it all back.
  publish_part(b, o, in);
  return read_slot(b, o);
}

void shard::publish_part(batch& b, uint32_t o, const op_inputs& in) {
  const op_route& r = b.routes[o];
  sync_slot& s = b.slots[r.slot];
  if (!(required_mask(r) & bit_)) return;
  if (r.kind == route_kind::resolve && r.has_ref && r.ref_shard == index_) {
    s.lookup = in.lookup;
    if (in.p) s.pending = *in.p;
  }
  if (r.kind == route_kind::fresh || r.kind == route_kind::resolve) {
    if (r.debit_shard == index_ && (s.debit_found = in.dr != nullptr)) s.debit = *in.dr;
    if (r.credit_shard == index_ && (s.credit_found = in.cr != nullptr)) s.credit = *in.cr;
    if (r.kind == route_kind::fresh && r.debit_shard == index_) s.verdict_debit = in.verdict_debit;
    if (r.kind == route_kind::fresh && r.credit_shard == index_) s.verdict_credit = in.verdict_credit;
  }
  publish(s, bit_);
}

shard::op_inputs shard::read_slot(batch& b, uint32_t o) {
  const op_route& r = b.routes[o];
  sync_slot& s = b.slots[r.slot];
  const uint32_t need = required_mask(r);
  if (!published(s, need)) {
    ++sync_waits_;
    wait_for(s, need);
  }
  op_inputs out;
  out.lookup = r.has_ref ? s.lookup : pending_lookup::not_found;
  out.p = out.lookup == pending_lookup::found ? &s.pending : nullptr;
  out.dr = s.debit_found ? &s.debit : nullptr;
  out.cr = s.credit_found ? &s.credit : nullptr;
  out.verdict_debit = s.verdict_debit;
  out.verdict_credit = s.verdict_credit;
  return out;
}

void shard::apply(batch& b, uint32_t o, const op_inputs& in, bool keep_undo) {
  const op_route& r = b.routes[o];
  const transfer& t = b.transfers[o];
  if (r.kind == route_kind::fresh) {
    account* dr = r.debit_shard == index_ ? local_account(t.debit_account_id) : nullptr;
    account* cr = r.credit_shard == index_ ? local_account(t.credit_account_id) : nullptr;
    if (dr) {
      const auto idx = slot_index(dr);
      save_account(idx, keep_undo);
      apply_transfer_debit(*dr, t);
      link_history(idx, r.serial, true);
      // The day's outflow (actors/customers.hpp): a client's transfers, and from version 8
      // an equb guarantor's cover (the engine emits it, unchecked, but the money leaves
      // the guarantor's wallet like its own payment would).
      const bool counted = !b.emitted || (b.rules >= rules_cover_counts_as_outflow &&
                                          t.code == equb::emitted_code_base + uint16_t(equb::purpose::cover));
      if (dr->tier != 0 && counted) {
        customers::customer* c = customers_.find(dr->id);
        MESOB_ASSERT(c != nullptr);
        if (keep_undo) undo_.push_back({undo_entry::what::customer, 0, {}, {}, 0, *c});
        customers::add_outflow(*c, t.amount, b.timestamp_base + o);
        customers_.mark_dirty(dr->id);
      }
      // A deposit (it stands alone: no undo): the gateway's reconciliation counts.
      if (b.gateway && gateways::deposit_id(t.id))
        desks_.deposited(uint32_t(t.id.hi & 0xFFFFFF), t, b.timestamp_base + o);
    }
    if (cr) {
      const auto idx = slot_index(cr);
      save_account(idx, keep_undo);
      apply_transfer_credit(*cr, t);
      link_history(idx, r.serial, false);
      if (t.flags & transfer_flags::equb) {  // stands alone: no undo
        deciding(b, o + 1);  // (a set-aside payment settles later, maybe in a later batch)
        // By the payment's own record's rules: a set-aside one settles in a later batch,
        // or outside any (finish_all), and the round it closes follows them.
        groups_.set_rules(b.rules);
        groups_.paid(t, b.timestamp_base + o);
        groups_.set_rules(rules_);
      }
      if (payouts::hold(t.id)) {  // stands alone too (or ends its chain)
        deciding(b, o + 1);
        desks_.held(t, b.timestamp_base + o);
      }
    }
    // An order's hold: the wallet's portfolio takes the order (a hold made under another
    // shard count may have its trading account on another shard).
    if (b.kind == op_kind::orders && (b.orders[o].side == wire::order_side::buy ? dr : cr)) {
      deciding(b, o + 1);
      trading_.placed(trading::as_sent(b.orders[o]), b.order_ticks[o], b.timestamp_base + o);
    }
    if ((t.flags & transfer_flags::pending) && (dr || cr)) {
      const pending_info p = make_pending(t, r.serial, b.timestamp_base + o);
      const auto idx = uint32_t(pendings_.size());
      add_pending(p, true);
      if (keep_undo) undo_.push_back({undo_entry::what::pending_created, idx, {}, p, 0});
    }
    return;
  }
  MESOB_ASSERT(r.kind == route_kind::resolve && in.p != nullptr);
  const pending_info p = *in.p;
  const bool post = t.flags & transfer_flags::post_pending;
  const uint64_t amount = post ? post_amount(t, p) : 0;
  if (!b.resolved_amounts.empty() && writer_of(r) == index_) b.resolved_amounts[o] = post ? amount : p.amount;
  account* dr = r.debit_shard == index_ ? local_account(p.debit_account_id) : nullptr;
  account* cr = r.credit_shard == index_ ? local_account(p.credit_account_id) : nullptr;
  if (dr) {
    const auto idx = slot_index(dr);
    save_account(idx, keep_undo);
    apply_resolve_debit(*dr, p, amount);
    link_history(idx, r.serial, true);
  }
  if (cr) {
    const auto idx = slot_index(cr);
    save_account(idx, keep_undo);
    apply_resolve_credit(*cr, p, amount);
    link_history(idx, r.serial, false);
  }
  if (pending_info* mine = local_pending(p.serial)) {
    if (keep_undo)
      undo_.push_back({undo_entry::what::pending_changed,
                       *pending_index_.find(p.serial + 1), {}, *mine, 0});
    set_pending_state(*mine, post ? pending_state::posted : pending_state::voided);
    note_pending_change(uint32_t(mine - pendings_.data()));
  }
}

void shard::run_chain(batch& b, uint32_t first, uint32_t last) {
  const bool sync = __builtin_popcount(b.routes[first].chain_mask) > 1;
  // A trade the broker executed settles even on a wallet frozen since (trading.hpp): its
  // chain is decided with the accounts' copies read as open.
  const bool settles_trade = b.emitted && trading::emitted(b.transfers[first].id);
  account thawed[2];
  auto thaw = [&](op_inputs& in) {
    if (in.dr && in.dr->status == account_status::frozen) {
      thawed[0] = *in.dr;
      thawed[0].status = account_status::open;
      in.dr = &thawed[0];
    }
    if (in.cr && in.cr->status == account_status::frozen) {
      thawed[1] = *in.cr;
      thawed[1].status = account_status::open;
      in.cr = &thawed[1];
    }
  };
  const bool keep_undo = last > first;
  undo_.clear();
  bool failed = false;
  result chain_code = result::ok;
  for (uint32_t o = first; o <= last; ++o) {
    const op_route& r = b.routes[o];
    if (failed) {
      // After a chain fails, repeats report their own first outcome; the rest fail.
      if (r.kind == route_kind::duplicate) write_result(b, o, r.dup_result);
      else write_result(b, o, result::linked_event_failed);
      continue;
    }
    result res = result::ok;
    op_inputs in;
    switch (r.kind) {
      case route_kind::static_failed: res = result(b.results[o]); break;
      case route_kind::duplicate: res = r.dup_result; break;
      case route_kind::fresh:
        in = gather(b, o, sync);
        if (b.kind == op_kind::orders && in.verdict() != result::ok) {
          res = in.verdict();
          break;
        }
        if (settles_trade) thaw(in);
        res = decide_transfer(b.transfers[o], b.timestamp_base + o, in.dr, in.cr);
        if (res == result::ok) res = in.verdict();
        break;
      case route_kind::resolve:
        in = gather(b, o, sync);
        if (settles_trade) thaw(in);
        res = decide_post_or_void(b.transfers[o], in.lookup, in.p, in.dr, in.cr);
        break;
    }
    if (r.kind == route_kind::static_failed) {
      // The sequencer wrote the static code; it stands unless an earlier op failed.
      failed = true;
      chain_code = res;
    } else {
      write_result(b, o, res);
      if (res != result::ok) {
        failed = true;
        chain_code = res;
      } else if (r.kind != route_kind::duplicate) {
        apply(b, o, in, keep_undo);
      }
    }
    if (failed && o > first) {
      // Roll back this chain's earlier effects on this shard, newest first.
      for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) {
        switch (it->kind) {
          case undo_entry::what::account:
            slots_[it->index].a = it->acct;
            slots_[it->index].last_serial = it->last_serial;
            break;
          case undo_entry::what::pending_changed: restore_pending(it->index, it->pending); break;
          case undo_entry::what::customer: *customers_.find(it->cust.wallet) = it->cust; break;
          case undo_entry::what::pending_created:
            MESOB_ASSERT(it->index + 1 == pendings_.size());
            remove_pending(it->index);  // its serial stays listed: the cut skips it
            break;
        }
      }
      undo_.clear();
      for (uint32_t e = first; e < o; ++e)
        if (b.routes[e].kind != route_kind::duplicate)
          write_result(b, e, result::linked_event_failed);
    }
  }
  // A chain an equb group emitted: the group (on the escrow's shard) learns its outcome,
  // whatever it was (the sequencer routes every emitted chain to that shard).
  if (b.emitted) {
    deciding(b, first + 1);
    chain_done(b.transfers[first], chain_code, b.timestamp_base + first);
  }
}

// An emitted chain's outcome goes to whoever emitted it: a payout desk or an equb group.
void shard::chain_done(const transfer& first, result r, uint64_t ts) {
  if (payouts::emitted(first.id)) desks_.chain_done(first, r, ts);
  else if (trading::emitted(first.id)) trading_.chain_done(first, r);
  else groups_.chain_done(first, r);
}

// Starts a cut: the accounts dirty since the last one become owed to it; they are
// copied a slice at a time between batches (continue_cut), or just before they change.
void shard::begin_cut(std::shared_ptr<checkpoint_cut> c) {
  MESOB_ASSERT(!cut_);
  const auto t0 = std::chrono::steady_clock::now();
  cut_ = std::move(c);
  owed_.swap(dirty_);
  dirty_.clear();
  owed_pos_ = 0;
  cut_epoch_ = epoch_;
  epoch_ = epoch_ == 255 ? 1 : uint8_t(epoch_ + 1);
  cut_->dirty_accounts[index_].reserve(owed_.size());
  evict_resolved(cut_->committed_seq);
  auto& changed = cut_->pendings[index_];
  changed.reserve(pending_changed_.size());
  for (const uint64_t serial : pending_changed_) {
    const uint32_t* idx = pending_index_.find(serial + 1);
    if (!idx || !pending_changed_flag_[*idx]) continue;  // rolled back, or listed twice
    pending_changed_flag_[*idx] = 0;
    changed.push_back(pendings_[*idx]);
    if (pendings_[*idx].state != pending_state::pending) evictable_.emplace_back(cut_->seq, serial);
  }
  pending_changed_.clear();
  publish_stats();
  cut_->account_counts[index_] = slots_.size();
  groups_.take_dirty(&cut_->groups[index_]);
  desks_.take_dirty(&cut_->payouts[index_]);
  if (index_ == 0) cut_->gateway_sessions = desks_.encode_sessions();
  if (index_ == 0 && market_.size() > 0) cut_->market = market_.encode();
  // The policy whole at every cut, empty too: a policy emptied (its last model weight
  // removed) must replace the row an earlier cut wrote, or recovery brings it back.
  if (index_ == 0) cut_->policy = policy_.encode();
  customers_.take_dirty(&cut_->customers[index_]);
  trading_.take_dirty(&cut_->portfolios[index_]);
  trading_.forget_closed();
  cut_->recon[index_] = desks_.recon_rows_from(cut_->recon_from_day);
  desks_.recon_drop_before(cut_->recon_drop_before);
  note_pause(t0);
}

bool shard::continue_cut(size_t slice) {
  MESOB_ASSERT(cut_);
  const auto t0 = std::chrono::steady_clock::now();
  auto& out = cut_->dirty_accounts[index_];
  const size_t end = std::min(owed_.size(), owed_pos_ + slice);
  for (; owed_pos_ < end; ++owed_pos_) {
    const uint32_t idx = owed_[owed_pos_];
    if (slots_[idx].dirty != cut_epoch_) continue;  // copied when it changed
    out.push_back({slots_[idx].a, slots_[idx].last_serial});
    slots_[idx].dirty = clean;
  }
  note_pause(t0);
  return owed_pos_ == owed_.size();
}

std::shared_ptr<checkpoint_cut> shard::end_cut() {
  MESOB_ASSERT(cut_ && owed_pos_ == owed_.size());
  owed_.clear();
  return std::move(cut_);
}

void shard::note_pause(std::chrono::steady_clock::time_point t0) {
  const auto us = uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::steady_clock::now() - t0).count());
  last_cut_us_.store(us, std::memory_order_relaxed);
  if (us > max_cut_us_.load(std::memory_order_relaxed)) max_cut_us_.store(us, std::memory_order_relaxed);
}

}  // namespace mesob::actors
