#include "actors/trading.hpp"

#include <algorithm>
#include <cstring>

#include "actors/byte_codec.hpp"
#include "wire/assert.hpp"

namespace mesob::actors::trading {

using wire::result;
using portfolio::order_entry;
using portfolio::order_state;

namespace {
constexpr uint32_t row_magic = 0x54524144;  // "TRAD"
constexpr uint16_t row_version = 1;
constexpr uint32_t chain_max = 3;           // a fill's post, improvement and hold

bool buying(const wire::order& o) { return o.side == wire::order_side::buy; }

// What the order's current hold holds: a buy's `held`; a sell's least proceeds left.
uint64_t hold_amount(const order_entry& e) {
  return buying(e.o) ? e.held : portfolio::notional(e.open_quantity(), e.o.limit_ticks, e.tick);
}

wire::transfer engine_transfer(const order_entry& e, wire::id128 id, uint16_t code) {
  wire::transfer t{};
  t.id = id;
  t.currency = e.o.currency;
  t.user_data = e.o.wallet;  // routes the chain's outcome to the wallet's shard
  t.code = code;
  return t;
}
}  // namespace

result order_hold(const wire::order& o, const market::instrument* ins, uint32_t shards, wire::transfer* out) {
  if (const result r = portfolio::check_order(o, ins); r != result::ok) return r;
  if (trading_account(o.wallet)) return result::trading_account_reserved;
  if (payouts::payout_account(o.wallet)) return result::payout_account_reserved;
  const uint64_t desk = account_for(o.currency, shard_of(o.wallet, shards), shards);
  wire::transfer t{};
  t.id = hold_id(o.id, 0);
  t.debit_account_id = buying(o) ? o.wallet : desk;
  t.credit_account_id = buying(o) ? desk : o.wallet;
  t.amount = portfolio::notional(o.quantity, o.limit_ticks, ins->def.tick);
  t.user_data = o.instrument_id;
  t.currency = o.currency;
  t.code = hold_code(o);
  t.flags = wire::transfer_flags::pending;
  *out = t;
  return result::ok;
}

result check_answer_fields(const wire::order_answer& a) {
  if (a.order_id == 0) return result::id_must_not_be_zero;
  if (a.reserved != 0) return result::reserved_field;
  switch (a.kind) {
    case wire::order_answer_kind::fill:
      if (a.fill_id == 0) return result::id_must_not_be_zero;
      if (a.reason != 0) return result::order_answer_invalid;
      if (a.quantity == 0) return result::amount_must_not_be_zero;
      if (a.price_ticks == 0) return result::price_invalid;
      return result::ok;
    case wire::order_answer_kind::reject:
      if (a.fill_id != 0 || a.quantity != 0 || a.price_ticks != 0) return result::order_answer_invalid;
      return result::ok;
  }
  return result::order_answer_invalid;
}

table::wallet_entry* table::entry(uint64_t wallet) {
  auto it = wallets_.find(wallet);
  return it == wallets_.end() ? nullptr : &it->second;
}

const portfolio::book* table::book_of(uint64_t wallet) const {
  auto it = wallets_.find(wallet);
  return it == wallets_.end() ? nullptr : &it->second.b;
}

const order_entry* table::find(uint64_t wallet, uint64_t id) const {
  const auto* b = book_of(wallet);
  return b ? b->order(id) : nullptr;
}

void table::touch(uint64_t wallet, wallet_entry& w) {
  if (w.dirty) return;
  w.dirty = true;
  dirty_.push_back(wallet);
}

result table::check(const wire::order& o, const portfolio::order_inputs& in) const {
  static const portfolio::book empty;
  const auto* b = book_of(o.wallet);
  return (b ? *b : empty).check(o, in);
}

void table::placed(const wire::order& o, uint64_t tick, uint64_t ts) {
  wallet_entry& w = wallets_[o.wallet];
  w.b.accept(o, tick);
  ++open_;
  order_entry& e = *w.b.order_mut(o.id);
  e.placed_at = ts;
  e.expires_at = o.expires_s == 0 ? 0 : ts + uint64_t(o.expires_s) * 1'000'000'000ull;
  if (e.expires_at != 0) add_timer(e.expires_at, o.wallet);
  touch(o.wallet, w);
  route(e);
}

void table::route(order_entry& e) {
  const uint32_t g = route_ ? route_(e.o.currency) : 0;
  if (g == 0) {
    unrouted_[e.o.id] = e.o.wallet;
    return;
  }
  unrouted_.erase(e.o.id);
  e.broker = g;
  instruct(e, wire::order_instruction_kind::work);
}

void table::instruct(const order_entry& e, wire::order_instruction_kind kind) {
  if (e.broker == 0) return;
  wire::order_instruction in{};
  in.order_id = e.o.id;
  in.instrument_id = e.o.instrument_id;
  in.quantity = e.open_quantity();
  in.limit_ticks = e.o.limit_ticks;
  in.expires_at = e.expires_at;
  in.currency = e.o.currency;
  in.kind = kind;
  in.side = e.o.side;
  in.type = e.o.type;
  outbox_[e.broker].push_back(in);
}

void table::emit(wallet_entry& w, std::vector<wire::transfer>&& chain) {
  for (size_t i = 0; i + 1 < chain.size(); ++i) chain[i].flags |= wire::transfer_flags::linked;
  w.owed.push_back(chain);
  if (!emit_) return;  // replaying: the chain is owed until a later record carries it
  // Whole chains in groups of up to emit_group_max transfers: one queue entry (and one
  // batch) per group, not per chain.
  if (chains_out_.empty() || chains_out_.back().size() + chain.size() > emit_group_max) chains_out_.emplace_back();
  chains_out_.back().insert(chains_out_.back().end(), chain.begin(), chain.end());
}

result table::answer(const wire::order_answer& a, const market::book& market, uint64_t ts, bool* repeated) {
  (void)ts;
  *repeated = false;
  wallet_entry* w = entry(a.wallet);
  order_entry* e = w ? w->b.order_mut(a.order_id) : nullptr;
  // The sequencer found the order's hold. A closed order is answered the same whether or
  // not the book still keeps it (forget_closed), so every decision here reads open
  // orders only.
  if (!e || e->st != order_state::open) return result::order_not_open;
  if (e->broker != a.gateway) return result::order_wrong_broker;
  if (a.kind == wire::order_answer_kind::reject) {
    // Ending (cancelled or expired here): the broker confirms it stopped.
    close(a.wallet, *w, a.order_id, e->ending != order_state::open ? e->ending : order_state::rejected, a.reason);
    return result::ok;
  }
  for (const auto& f : e->fills)
    if (f.id == a.fill_id) {
      *repeated = f.quantity == a.quantity && f.price_ticks == a.price_ticks;
      return *repeated ? result::ok : result::fill_id_reused;
    }
  if (e->fills.size() >= portfolio::fills_max) return result::too_many_fills;
  // Whole lots, at a price within the instrument's move band of its last price (a
  // broker's answer is not trusted to name any price within the limit).
  const market::instrument* ins = market.find(e->o.instrument_id);
  MESOB_ASSERT(ins != nullptr);  // instruments are never removed
  if (a.quantity % ins->def.lot != 0) return result::lot_size_invalid;
  if (ins->last_ticks != 0) {
    const unsigned __int128 band = (unsigned __int128)ins->last_ticks * ins->def.move_bp / 10'000;
    const uint64_t lo = ins->last_ticks - uint64_t(std::min<unsigned __int128>(band, ins->last_ticks));
    const unsigned __int128 hi = (unsigned __int128)ins->last_ticks + band;
    if (a.price_ticks < lo || a.price_ticks > hi) return result::fill_invalid;
  }
  const uint64_t before = hold_amount(*e);
  const uint64_t k = e->fills.size() + 1;
  result r = result::ok;
  uint64_t released = 0;
  const uint64_t value = w->b.fill(a.order_id, a.quantity, a.price_ticks, &r, &released, a.fill_id);
  if (r != result::ok) return r;
  e = w->b.order_mut(a.order_id);
  MESOB_ASSERT(e != nullptr);
  const bool open = e->st == order_state::open;
  ++fills_;
  if (!open) {
    --open_;
    if (e->ending != order_state::open) --ending_;
  }
  std::vector<wire::transfer> chain;
  wire::transfer post = engine_transfer(*e, chain_id(e->o.id, k, 0), code_fill);
  post.pending_id = hold_id(e->o.id, k - 1);
  post.flags = wire::transfer_flags::post_pending;
  if (buying(e->o)) {
    post.amount = value;  // the rest of hold k-1 is released (held again below if open)
    chain.push_back(post);
  } else {
    const uint64_t least = portfolio::notional(a.quantity, e->o.limit_ticks, e->tick);
    MESOB_ASSERT(least <= value && least <= before);
    post.amount = least;
    chain.push_back(post);
    if (value > least) {
      wire::transfer up = engine_transfer(*e, chain_id(e->o.id, k, 1), code_improvement);
      up.debit_account_id = trading_account_of(*e);
      up.credit_account_id = e->o.wallet;
      up.amount = value - least;
      chain.push_back(up);
    }
  }
  if (open) {
    wire::transfer again = engine_transfer(*e, hold_id(e->o.id, k), hold_code(e->o));
    const bool buy = buying(e->o);
    again.debit_account_id = buy ? e->o.wallet : trading_account_of(*e);
    again.credit_account_id = buy ? trading_account_of(*e) : e->o.wallet;
    again.amount = hold_amount(*e);
    again.user_data = e->o.instrument_id;
    again.flags = wire::transfer_flags::pending;
    chain.push_back(again);
  }
  MESOB_ASSERT(chain.size() <= chain_max);
  emit(*w, std::move(chain));
  touch(a.wallet, *w);
  if (!open) {
    unrouted_.erase(a.order_id);
    note_closed(a.wallet);
  }
  return result::ok;
}

uint64_t table::trading_account_of(const order_entry& e) const {
  return account_for(e.o.currency, shard_, shards_);
}

void table::close(uint64_t wallet, wallet_entry& w, uint64_t order_id, order_state why, uint16_t reason) {
  order_entry* e = w.b.order_mut(order_id);
  MESOB_ASSERT(e != nullptr && e->st == order_state::open);
  const uint64_t k = e->fills.size();
  --open_;
  if (e->ending != order_state::open) --ending_;
  result r = result::ok;
  w.b.close(order_id, why, &r);
  MESOB_ASSERT(r == result::ok);
  e = w.b.order_mut(order_id);
  MESOB_ASSERT(e != nullptr);
  e->reason = reason;
  e->ending = order_state::open;
  e->ending_at = 0;
  wire::transfer v = engine_transfer(*e, chain_id(order_id, k, 2), code_close);
  v.pending_id = hold_id(order_id, k);
  v.flags = wire::transfer_flags::void_pending;
  emit(w, {v});
  unrouted_.erase(order_id);
  touch(wallet, w);
  note_closed(wallet);
}

// Between cuts the list stays within twice the wallets (and 4,096) entries.
void table::note_closed(uint64_t wallet) {
  closed_in_.push_back(wallet);
  if (closed_in_.size() > 2 * wallets_.size() + 4096) {
    std::sort(closed_in_.begin(), closed_in_.end());
    closed_in_.erase(std::unique(closed_in_.begin(), closed_in_.end()), closed_in_.end());
  }
}

result table::cancel(const wire::order_cancel& c, uint64_t ts, bool* repeated) {
  *repeated = false;
  wallet_entry* w = entry(c.wallet);
  order_entry* e = w ? w->b.order_mut(c.order_id) : nullptr;
  // The sequencer found the order's hold for this wallet: one not kept was closed.
  if (!e || e->st != order_state::open) return result::order_not_open;
  if (e->ending != order_state::open) {  // asked already (or expiring): nothing more to do
    *repeated = true;
    return result::ok;
  }
  end(c.wallet, *w, *e, order_state::cancelled, ts);
  return result::ok;
}

// A cancel or expiry here: an order no broker has closes at once; one a broker has keeps
// its hold (the broker may have filled it before it hears) until the broker confirms or
// the grace passes.
void table::end(uint64_t wallet, wallet_entry& w, order_entry& e, order_state why, uint64_t ts) {
  if (e.broker == 0) {
    close(wallet, w, e.o.id, why, 0);
    return;
  }
  e.ending = why;
  e.ending_at = ts;
  ++ending_;
  instruct(e, wire::order_instruction_kind::cancel);
  add_timer(ts + cancel_grace_ns, wallet);
  touch(wallet, w);
}

void table::broker_up(uint32_t gateway) {
  // Its open orders: pushed again (any of its sessions may be the new one); those ending,
  // with their cancel.
  for (auto& [wallet, w] : wallets_)
    w.b.for_each_order([&](const order_entry& e) {
      if (e.st != order_state::open || e.broker != gateway) return;
      instruct(e, wire::order_instruction_kind::work);
      if (e.ending != order_state::open) instruct(e, wire::order_instruction_kind::cancel);
    });
  std::vector<std::pair<uint64_t, uint64_t>> waiting(unrouted_.begin(), unrouted_.end());
  for (const auto& [id, wallet] : waiting) {
    wallet_entry* w = entry(wallet);
    order_entry* e = w ? w->b.order_mut(id) : nullptr;
    if (!e || e->st != order_state::open) {
      unrouted_.erase(id);
      continue;
    }
    route(*e);
    if (e->broker != 0) touch(wallet, *w);
  }
}

void table::add_timer(uint64_t at, uint64_t wallet) {
  timers_.emplace_back(at, wallet);
  std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
}

void table::run_due(uint64_t now) {
  // Every open order due by `now` (its expiry, or the grace of its ending) of the wallets
  // whose timers fired, in (time, wallet, order id) order: the same live and in replay,
  // whatever timers (some stale) the heap holds.
  struct due_order {
    uint64_t at, wallet, id;
    bool expiry;
    auto operator<=>(const due_order&) const = default;
  };
  std::vector<uint64_t> wallets;
  while (!timers_.empty() && timers_.front().first <= now) {
    std::pop_heap(timers_.begin(), timers_.end(), std::greater<>());
    wallets.push_back(timers_.back().second);
    timers_.pop_back();
  }
  std::sort(wallets.begin(), wallets.end());
  wallets.erase(std::unique(wallets.begin(), wallets.end()), wallets.end());
  std::vector<due_order> due;
  for (const uint64_t wallet : wallets) {
    wallet_entry* w = entry(wallet);
    if (!w) continue;
    w->b.for_each_order([&](const order_entry& e) {
      if (e.st != order_state::open) return;
      if (e.ending != order_state::open) {
        if (e.ending_at + cancel_grace_ns <= now) due.push_back({e.ending_at + cancel_grace_ns, wallet, e.o.id, false});
      } else if (e.expires_at != 0 && e.expires_at <= now) {
        due.push_back({e.expires_at, wallet, e.o.id, true});
      }
    });
  }
  std::sort(due.begin(), due.end());
  for (const auto& d : due) {
    wallet_entry& w = *entry(d.wallet);
    order_entry& e = *w.b.order_mut(d.id);
    if (!d.expiry) {  // the broker never confirmed: it closes as it was ending
      close(d.wallet, w, d.id, e.ending, 0);
      continue;
    }
    if (events_) {
      wire::event ev{};
      ev.timestamp = now;
      ev.type = wire::event_type::order_expired;
      ev.account_a = d.wallet;
      ev.ref.lo = d.id;
      ev.amount = e.open_quantity();
      events_(std::move(ev));
    }
    end(d.wallet, w, e, order_state::expired, now);
  }
}

void table::chain_done(const wire::transfer& first, result r) {
  wallet_entry* w = entry(first.user_data);
  if (!w) return;
  auto it = std::find_if(w->owed.begin(), w->owed.end(), [&](const auto& c) { return c.front().id == first.id; });
  if (it == w->owed.end()) return;  // emitted again after a restart: the first settled it
  w->owed.erase(it);
  if (r != result::ok) {
    ++settle_refusals_;
    if (order_entry* e = w->b.order_mut(first.id.lo)) e->settle_refused = true;
  }
  if (w->b.empty() && w->owed.empty()) {  // nothing left: its row goes at the next cut
    if (!w->dirty) dirty_.push_back(first.user_data);
    wallets_.erase(first.user_data);
    return;
  }
  touch(first.user_data, *w);
}

void table::flush() {
  if (instruct_)
    for (auto& [g, list] : outbox_)
      if (!list.empty()) instruct_(g, std::move(list));
  outbox_.clear();
  if (emit_)
    for (auto& c : chains_out_) emit_(std::move(c));
  chains_out_.clear();
}

std::vector<std::vector<wire::transfer>> table::chains_owed() const {
  std::vector<std::vector<wire::transfer>> out;
  // Wallets in id order, each wallet's chains oldest first (a wallet's chains depend on
  // each other in that order; different wallets' do not).
  std::vector<uint64_t> ids;
  for (const auto& [w, e] : wallets_)
    if (!e.owed.empty()) ids.push_back(w);
  std::sort(ids.begin(), ids.end());
  for (const uint64_t id : ids)
    for (const auto& c : wallets_.at(id).owed) out.push_back(c);
  return out;
}


wire::order_state_view table::view(const order_entry& e) {
  wire::order_state_view v{};
  v.o = e.o;
  v.filled = e.filled;
  v.held = e.held;
  v.paid = e.paid;
  v.placed_at = e.placed_at;
  v.broker = e.broker;
  v.fills = uint32_t(e.fills.size());
  v.state = uint8_t(e.st);
  v.settle_refused = e.settle_refused ? 1 : 0;
  v.cancelling = e.ending != order_state::open ? uint8_t(e.ending) : 0;
  v.reason = e.reason;
  return v;
}

std::vector<uint8_t> table::encode_row(uint64_t wallet) const {
  const auto it = wallets_.find(wallet);
  if (it == wallets_.end() || (it->second.b.empty() && it->second.owed.empty())) return {};
  byte_writer w;
  w.put(row_magic);
  w.put(row_version);
  const auto book = it->second.b.encode();
  w.put(uint32_t(book.size()));
  w.put_bytes(book);
  w.put(uint32_t(it->second.owed.size()));
  for (const auto& c : it->second.owed) {
    w.put(uint32_t(c.size()));
    for (const auto& t : c) w.put_bytes({reinterpret_cast<const uint8_t*>(&t), sizeof t});
  }
  return std::move(w.out);
}

bool table::load_row(uint64_t wallet, std::span<const uint8_t> bytes, std::string* why) {
  byte_reader r{bytes};
  const uint32_t magic = r.get<uint32_t>();
  const uint16_t version = r.get<uint16_t>();
  const uint32_t nb = r.get<uint32_t>();
  if (r.short_read || magic != row_magic || version != row_version || nb > bytes.size())
    return *why = "trading: wallet " + std::to_string(wallet) + ": not a row of version 1", false;
  wallet_entry w;
  if (!portfolio::book::decode(r.take(nb), &w.b, why)) return *why = "wallet " + std::to_string(wallet) + ": " + *why, false;
  const uint32_t nc = r.get<uint32_t>();
  if (r.short_read || nc > (bytes.size() - r.at) / sizeof(wire::transfer))
    return *why = "trading: wallet " + std::to_string(wallet) + ": bad chain count", false;
  for (uint32_t i = 0; i < nc; ++i) {
    const uint32_t n = r.get<uint32_t>();
    if (r.short_read || n == 0 || n > chain_max)
      return *why = "trading: wallet " + std::to_string(wallet) + ": chain " + std::to_string(i) + " is damaged", false;
    std::vector<wire::transfer> c(n);
    for (auto& t : c) {
      const auto raw = r.take(sizeof t);
      if (raw.size() != sizeof t) return *why = "trading: wallet " + std::to_string(wallet) + ": a chain is cut short", false;
      std::memcpy(&t, raw.data(), sizeof t);
      if (t.user_data != wallet && !hold(t.id)) return *why = "trading: wallet " + std::to_string(wallet) + ": a chain of another wallet", false;
      if (!reserved_id(t.id)) return *why = "trading: wallet " + std::to_string(wallet) + ": a chain with a client's id", false;
    }
    w.owed.push_back(std::move(c));
  }
  if (r.at != bytes.size()) return *why = "trading: wallet " + std::to_string(wallet) + ": bytes after the row", false;
  bool closed = false;
  w.b.for_each_order([&](const order_entry& e) {
    if (e.st != order_state::open) {
      closed = true;
      return;
    }
    ++open_;
    if (e.ending != order_state::open) ++ending_;
    if (e.expires_at != 0) add_timer(e.expires_at, wallet);
    if (e.ending != order_state::open) add_timer(e.ending_at + cancel_grace_ns, wallet);
    if (e.broker == 0) unrouted_[e.o.id] = wallet;
  });
  if (closed) note_closed(wallet);
  wallets_[wallet] = std::move(w);
  return true;
}

void table::take_dirty(std::vector<std::pair<uint64_t, std::vector<uint8_t>>>* out) {
  for (const uint64_t wallet : dirty_) {
    auto it = wallets_.find(wallet);
    if (it == wallets_.end()) {
      out->emplace_back(wallet, std::vector<uint8_t>{});  // gone: its row is erased
      continue;
    }
    it->second.dirty = false;
    out->emplace_back(wallet, encode_row(wallet));
  }
  dirty_.clear();
}

void table::forget_closed() {
  std::sort(closed_in_.begin(), closed_in_.end());
  closed_in_.erase(std::unique(closed_in_.begin(), closed_in_.end()), closed_in_.end());
  std::vector<uint64_t> later;
  for (const uint64_t wallet : closed_in_) {
    auto it = wallets_.find(wallet);
    if (it == wallets_.end()) continue;
    if (!it->second.owed.empty()) {  // a closing chain not yet carried: its outcome marks the order
      later.push_back(wallet);
      continue;
    }
    it->second.b.forget_closed();
    if (it->second.b.empty() && it->second.owed.empty()) {
      // Its row goes at the next cut (an empty row erases it).
      if (!it->second.dirty) dirty_.push_back(wallet);
      wallets_.erase(it);
      continue;
    }
    touch(wallet, it->second);
  }
  closed_in_ = std::move(later);
}

size_t table::memory_bytes() const {
  size_t n = sizeof *this + timers_.capacity() * 16 + unrouted_.size() * 64;
  for (const auto& [id, w] : wallets_) {
    n += 64 + w.b.memory_bytes();
    for (const auto& c : w.owed) n += 24 + c.capacity() * sizeof(wire::transfer);
  }
  return n;
}

}  // namespace mesob::actors::trading
