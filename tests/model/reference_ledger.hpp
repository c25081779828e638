// reference_ledger: a deliberately simple, single-threaded model of Mesob's ledger
// rules, written from the contract in actors/README.md ("The rules") and nothing else.
// It is the oracle of the randomized differential test (tests/system/model_test.cpp):
// the same operation stream goes through the sharded engine and through this model,
// and every result, account and recorded transfer must agree.
//
// Plain std::map containers, no cleverness: every rule is spelled out in README order,
// sums are computed in 128 bits, and a failed chain is undone from a journal of
// before-images. Nothing here is shared with actors/ledger_rules.* or actors/shard.*.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include "actors/equb_group.hpp"
#include "actors/placement.hpp"
#include "wire/types.hpp"

namespace mesob::test {

class reference_ledger {
 public:
  using account = wire::account;
  using transfer = wire::transfer;
  using status_change = wire::account_status_change;
  using result = wire::result;
  using id128 = wire::id128;

  static constexpr uint64_t ns_per_s = 1'000'000'000ull;

  enum class batch_kind { create_accounts, create_transfers, set_account_status };

  enum class pending_state : uint8_t { pending, posted, voided, expired };

  // A transfer as recorded: the operation with its timestamp, and its final result.
  struct recorded_transfer {
    transfer t;
    result res = result::ok;
    // Meaningful only for a pending transfer recorded ok.
    pending_state state = pending_state::pending;
    uint64_t expires_at = 0;  // 0: never
  };

  // ---- write batches ----------------------------------------------------------------

  // `kind` must match the operations' type (it is checked); `timestamp_base` is the one
  // the engine stamped on the same batch (its reply's timestamp_base).
  std::vector<result> apply_batch(batch_kind kind, const std::vector<account>& ops, uint64_t timestamp_base) {
    if (kind != batch_kind::create_accounts) throw std::invalid_argument("apply_batch: kind/ops mismatch");
    return create_accounts(ops, timestamp_base);
  }
  std::vector<result> apply_batch(batch_kind kind, const std::vector<transfer>& ops, uint64_t timestamp_base) {
    if (kind != batch_kind::create_transfers) throw std::invalid_argument("apply_batch: kind/ops mismatch");
    return create_transfers(ops, timestamp_base);
  }
  std::vector<result> apply_batch(batch_kind kind, const std::vector<status_change>& ops,
                                  uint64_t timestamp_base) {
    if (kind != batch_kind::set_account_status) throw std::invalid_argument("apply_batch: kind/ops mismatch");
    return set_account_status(ops, timestamp_base);
  }

  // README "create_transfers": a pending transfer takes room on the shard of each of its
  // accounts; past each shard's share of pending_max (rounded up) new ones are refused
  // pending_full. 0: no limit (the default; the model then never counts).
  void set_pending_capacity(uint64_t pending_max, uint32_t shards) {
    pending_share_ = pending_max == 0 ? 0 : (pending_max + shards - 1) / shards;
    shards_ = shards;
    open_on_.assign(shards, 0);
  }

  // A tick: a write batch of no operations (expires what is due at timestamp_base).
  void tick(uint64_t timestamp_base) { expire_until(timestamp_base); }

  std::vector<result> create_accounts(const std::vector<account>& ops, uint64_t timestamp_base) {
    std::vector<result> out(ops.size(), result::ok);
    if (ops.empty()) return out;
    sweep(timestamp_base, ops.size());
    std::set<uint64_t> seen;
    for (size_t i = 0; i < ops.size(); ++i) {
      const account& a = ops[i];
      result r = account_fields(a);
      if (r == result::ok) {
        if (seen.count(a.id) != 0) {
          r = result::id_duplicated_in_batch;
        } else {
          seen.insert(a.id);
          auto it = accounts_.find(a.id);
          if (it != accounts_.end()) {
            const account& e = it->second;
            const bool same = e.owner_id == a.owner_id && e.user_data == a.user_data &&
                              e.currency == a.currency && e.kind == a.kind && e.flags == a.flags;
            r = same ? result::ok : result::exists_with_different_fields;
          } else {
            account n = a;
            n.debits_pending = n.debits_posted = n.credits_pending = n.credits_posted = 0;
            n.status = wire::account_status::open;
            n.timestamp = timestamp_base + i;
            accounts_.emplace(a.id, n);
          }
        }
      }
      out[i] = r;
    }
    return out;
  }

  std::vector<result> set_account_status(const std::vector<status_change>& ops, uint64_t timestamp_base) {
    std::vector<result> out(ops.size(), result::ok);
    if (ops.empty()) return out;
    sweep(timestamp_base, ops.size());
    for (size_t i = 0; i < ops.size(); ++i) out[i] = status_one(ops[i]);
    return out;
  }

  std::vector<result> create_transfers(const std::vector<transfer>& ops, uint64_t timestamp_base) {
    const size_t n = ops.size();
    std::vector<result> out(n, result::ok);
    if (n == 0) return out;
    sweep(timestamp_base, n);

    // The batch ending inside a chain: that whole chain fails and is not executed.
    size_t runnable = n;
    if (ops[n - 1].flags & wire::transfer_flags::linked) {
      size_t s = n - 1;
      while (s > 0 && (ops[s - 1].flags & wire::transfer_flags::linked)) --s;
      for (size_t o = s; o < n; ++o)
        out[o] = o + 1 == n ? result::linked_event_chain_open : result::linked_event_failed;
      runnable = s;
    }

    std::set<std::pair<uint64_t, uint64_t>> seen;  // ids earlier in this batch that passed field checks
    size_t i = 0;
    while (i < runnable) {
      size_t j = i;
      while (j < runnable && (ops[j].flags & wire::transfer_flags::linked)) ++j;
      // ops[i..j] is a chain (j < runnable because the trailing open chain was cut off).
      run_chain(ops, i, j, timestamp_base, seen, out);
      i = j + 1;
    }
    return out;
  }

  // ---- look-ups ---------------------------------------------------------------------

  [[nodiscard]] std::optional<account> lookup_account(uint64_t id) const {
    auto it = accounts_.find(id);
    if (it == accounts_.end()) return std::nullopt;
    return it->second;
  }
  [[nodiscard]] const recorded_transfer* lookup_transfer(const id128& id) const {
    auto it = transfers_.find(key(id));
    return it == transfers_.end() ? nullptr : &it->second;
  }
  [[nodiscard]] const std::map<uint64_t, account>& accounts() const { return accounts_; }
  [[nodiscard]] const std::map<std::pair<uint64_t, uint64_t>, recorded_transfer>& transfers() const {
    return transfers_;
  }
  // Live pending transfers (ok, still pending) whose deadline is <= t.
  [[nodiscard]] bool has_pending_due_by(uint64_t t) const {
    for (auto it = deadlines_.begin(); it != deadlines_.end() && it->first <= t; ++it) {
      const auto& rec = transfers_.at(it->second);
      if (rec.res == result::ok && rec.state == pending_state::pending) return true;
    }
    return false;
  }

  // The earliest deadline after t of a live pending transfer, or 0 if there is none.
  [[nodiscard]] uint64_t next_deadline_after(uint64_t t) const {
    for (auto it = deadlines_.upper_bound({t, {UINT64_MAX, UINT64_MAX}}); it != deadlines_.end(); ++it) {
      const auto& rec = transfers_.at(it->second);
      if (rec.res == result::ok && rec.state == pending_state::pending) return it->first;
    }
    return 0;
  }

  static bool currency_valid(wire::currency_code c) {
    for (int k = 0; k < 3; ++k) {
      const unsigned ch = (c >> (8 * k)) & 0xffu;
      if (ch < unsigned('A') || ch > unsigned('Z')) return false;
    }
    return (c >> 24) == 0;
  }

 private:
  using key_t = std::pair<uint64_t, uint64_t>;
  static key_t key(const id128& id) { return {id.hi, id.lo}; }

  // Before-images for undoing a chain.
  struct journal {
    std::vector<std::pair<uint64_t, account>> accounts;
    std::vector<std::pair<key_t, pending_state>> pendings;
    std::vector<uint64_t> open_on;  // the shards' open pending counts when the chain began
  };

  std::map<uint64_t, account> accounts_;
  std::map<key_t, recorded_transfer> transfers_;
  // (expires_at, id) of pending transfers with a deadline; entries that are no longer
  // live (undone, posted, voided) are skipped and dropped by the sweep.
  std::set<std::pair<uint64_t, key_t>> deadlines_;
  // Pending transfers still pending on each shard (one across two counts on both).
  uint64_t pending_share_ = 0;
  uint32_t shards_ = 1;
  std::vector<uint64_t> open_on_;

  // +1 or -1 on the shards of a pending transfer's accounts (each once).
  void count_open(const transfer& t, int delta) {
    if (pending_share_ == 0) return;
    const uint32_t d = actors::shard_of(t.debit_account_id, shards_), c = actors::shard_of(t.credit_account_id, shards_);
    open_on_[d] += uint64_t(int64_t(delta));
    if (c != d) open_on_[c] += uint64_t(int64_t(delta));
  }

  static constexpr unsigned __int128 u64_max = UINT64_MAX;

  // ---- expiry -------------------------------------------------------------------------

  void sweep(uint64_t timestamp_base, size_t n) { expire_until(timestamp_base + (n - 1)); }

  void expire_until(uint64_t limit) {
    while (!deadlines_.empty() && deadlines_.begin()->first <= limit) {
      const key_t k = deadlines_.begin()->second;
      deadlines_.erase(deadlines_.begin());
      recorded_transfer& rec = transfers_.at(k);
      if (rec.res != result::ok || rec.state != pending_state::pending) continue;
      rec.state = pending_state::expired;
      count_open(rec.t, -1);
      accounts_.at(rec.t.debit_account_id).debits_pending -= rec.t.amount;
      accounts_.at(rec.t.credit_account_id).credits_pending -= rec.t.amount;
    }
  }

  // ---- accounts -----------------------------------------------------------------------

  static result account_fields(const account& a) {
    if (a.timestamp != 0) return result::timestamp_must_be_zero;
    if (a.id == 0) return result::id_must_not_be_zero;
    if (a.tier != 0 || a.status_seq != 0) return result::reserved_field;
    if (a.flags & ~wire::account_flags::all) return result::flags_invalid;
    if ((a.flags & wire::account_flags::debits_must_not_exceed_credits) &&
        (a.flags & wire::account_flags::credits_must_not_exceed_debits))
      return result::flags_are_mutually_exclusive;
    if (!currency_valid(a.currency)) return result::currency_invalid;
    const auto kind = uint16_t(a.kind);
    if (kind < 1 || kind > 5) return result::kind_invalid;
    // README: "status not open". (wire/types.hpp's comment on `account` says a zero
    // status means open; the README contract is what is modelled: zero is not open.)
    if (a.status != wire::account_status::open) return result::status_invalid;
    if (a.debits_pending != 0 || a.debits_posted != 0 || a.credits_pending != 0 || a.credits_posted != 0)
      return result::balances_must_be_zero;
    return result::ok;
  }

  // README "set_account_status": a numbered change (seq) is the account's next, or a
  // repeat of its latest; every change made counts (status_seq).
  result status_one(const status_change& c) {
    if (c.account_id == 0) return result::id_must_not_be_zero;
    if (c.reserved != 0) return result::reserved_field;
    const auto st = uint16_t(c.status);
    if (st < 1 || st > 3) return result::status_invalid;
    auto it = accounts_.find(c.account_id);
    if (it == accounts_.end()) return result::account_not_found;
    account& a = it->second;
    if (c.seq != 0 && c.seq == a.status_seq)
      return a.status == c.status ? result::ok : result::exists_with_different_fields;
    if (a.status_seq == UINT32_MAX) return result::status_changes_exhausted;
    if (c.seq != 0 && c.seq < a.status_seq) return result::status_changed_since;
    if (c.seq != 0 && c.seq > uint64_t(a.status_seq) + 1) return result::status_seq_ahead;
    if (a.status == wire::account_status::closed) return result::account_closed;
    if (c.status == wire::account_status::closed &&
        (a.debits_pending != 0 || a.credits_pending != 0 || a.debits_posted != a.credits_posted))
      return result::account_has_balance;
    a.status = c.status;
    ++a.status_seq;
    return result::ok;
  }

  // ---- transfers: field checks ----------------------------------------------------------

  static result transfer_fields(const transfer& t) {
    using namespace wire::transfer_flags;
    if (t.timestamp != 0) return result::timestamp_must_be_zero;
    if (t.id.zero()) return result::id_must_not_be_zero;
    if (t.reserved != 0) return result::reserved_field;
    if (t.flags & ~all) return result::flags_invalid;
    const int phases = int((t.flags & pending) != 0) + int((t.flags & post_pending) != 0) +
                       int((t.flags & void_pending) != 0);
    if (phases > 1) return result::flags_are_mutually_exclusive;
    // Equb payments are decided with their group, which this model does not hold; it
    // checks only their field rule (tests/unit/equb_engine_test.cpp covers the rest).
    if ((t.flags & equb) && (phases > 0 || (t.flags & linked))) return result::equb_transfer_must_stand_alone;
    if (t.flags & (post_pending | void_pending)) {
      if (t.pending_id.zero()) return result::pending_id_must_not_be_zero;
      if (t.pending_id == t.id) return result::pending_id_must_be_different;
      if (t.timeout_s != 0) return result::timeout_reserved_for_pending_transfer;
      if ((t.flags & void_pending) && t.amount != 0) return result::amount_must_be_zero;
      if (t.currency != 0 && !currency_valid(t.currency)) return result::currency_invalid;
      if (t.debit_account_id != 0 && t.credit_account_id != 0 && t.debit_account_id == t.credit_account_id)
        return result::accounts_must_be_different;
      return result::ok;
    }
    if (!t.pending_id.zero()) return result::pending_id_must_be_zero;
    if (t.timeout_s != 0 && !(t.flags & pending)) return result::timeout_reserved_for_pending_transfer;
    if (t.debit_account_id == 0) return result::debit_account_id_must_not_be_zero;
    if (t.credit_account_id == 0) return result::credit_account_id_must_not_be_zero;
    if (t.debit_account_id == t.credit_account_id) return result::accounts_must_be_different;
    if (t.amount == 0) return result::amount_must_not_be_zero;
    if (!currency_valid(t.currency)) return result::currency_invalid;
    return result::ok;
  }

  static bool same_fields(const transfer& a, const transfer& b) {
    return a.id == b.id && a.pending_id == b.pending_id && a.debit_account_id == b.debit_account_id &&
           a.credit_account_id == b.credit_account_id && a.amount == b.amount && a.user_data == b.user_data &&
           a.currency == b.currency && a.timeout_s == b.timeout_s && a.code == b.code && a.flags == b.flags &&
           a.reserved == b.reserved;
  }

  // ---- transfers: decisions -------------------------------------------------------------

  account& touch(journal& j, uint64_t id) {
    account& a = accounts_.at(id);
    j.accounts.emplace_back(id, a);
    return a;
  }

  result decide_fresh(const transfer& t, uint64_t ts, journal& j, uint64_t* expires_at) {
    const bool is_pending = (t.flags & wire::transfer_flags::pending) != 0;
    auto dit = accounts_.find(t.debit_account_id);
    if (dit == accounts_.end()) return result::debit_account_not_found;
    auto cit = accounts_.find(t.credit_account_id);
    if (cit == accounts_.end()) return result::credit_account_not_found;
    const account& dr = dit->second;
    const account& cr = cit->second;
    if (dr.currency != t.currency || cr.currency != t.currency) return result::transfer_currency_mismatch;
    if (dr.status == wire::account_status::closed) return result::debit_account_closed;
    if (dr.status == wire::account_status::frozen) return result::debit_account_frozen;
    if (cr.status == wire::account_status::closed) return result::credit_account_closed;
    if (cr.status == wire::account_status::frozen) return result::credit_account_frozen;
    const unsigned __int128 amount = t.amount;
    *expires_at = 0;
    if (is_pending && t.timeout_s != 0) {
      const unsigned __int128 deadline = (unsigned __int128)ts + (unsigned __int128)t.timeout_s * ns_per_s;
      if (deadline > u64_max) return result::overflows_timeout;
      *expires_at = uint64_t(deadline);
    }
    if (is_pending) {
      if (dr.debits_pending + amount > u64_max) return result::overflows_debits_pending;
      if (cr.credits_pending + amount > u64_max) return result::overflows_credits_pending;
    } else {
      if (dr.debits_posted + amount > u64_max) return result::overflows_debits_posted;
      if (cr.credits_posted + amount > u64_max) return result::overflows_credits_posted;
    }
    const unsigned __int128 dr_total = (unsigned __int128)dr.debits_pending + dr.debits_posted + amount;
    const unsigned __int128 cr_total = (unsigned __int128)cr.credits_pending + cr.credits_posted + amount;
    if (dr_total > u64_max) return result::overflows_debits;
    if (cr_total > u64_max) return result::overflows_credits;
    if ((dr.flags & wire::account_flags::debits_must_not_exceed_credits) && dr_total > dr.credits_posted)
      return result::exceeds_credits;
    if ((cr.flags & wire::account_flags::credits_must_not_exceed_debits) && cr_total > cr.debits_posted)
      return result::exceeds_debits;
    if (is_pending && pending_share_ != 0 &&
        (open_on_[actors::shard_of(t.debit_account_id, shards_)] >= pending_share_ ||
         open_on_[actors::shard_of(t.credit_account_id, shards_)] >= pending_share_))
      return result::pending_full;
    if (is_pending) count_open(t, +1);
    account& d = touch(j, t.debit_account_id);
    account& c = touch(j, t.credit_account_id);
    if (is_pending) {
      d.debits_pending += t.amount;
      c.credits_pending += t.amount;
    } else {
      d.debits_posted += t.amount;
      c.credits_posted += t.amount;
    }
    return result::ok;
  }

  result decide_resolve(const transfer& t, journal& j) {
    const bool post = (t.flags & wire::transfer_flags::post_pending) != 0;
    auto pit = transfers_.find(key(t.pending_id));
    if (pit == transfers_.end() || pit->second.res != result::ok) return result::pending_transfer_not_found;
    recorded_transfer& p = pit->second;
    if (!(p.t.flags & wire::transfer_flags::pending)) return result::pending_transfer_not_pending;
    if (t.debit_account_id != 0 && t.debit_account_id != p.t.debit_account_id)
      return result::pending_transfer_has_different_debit_account;
    if (t.credit_account_id != 0 && t.credit_account_id != p.t.credit_account_id)
      return result::pending_transfer_has_different_credit_account;
    if (t.currency != 0 && t.currency != p.t.currency) return result::pending_transfer_has_different_currency;
    if (post && t.amount > p.t.amount) return result::exceeds_pending_transfer_amount;
    switch (p.state) {
      case pending_state::posted: return result::pending_transfer_already_posted;
      case pending_state::voided: return result::pending_transfer_already_voided;
      case pending_state::expired: return result::pending_transfer_expired;
      case pending_state::pending: break;
    }
    const account& dr = accounts_.at(p.t.debit_account_id);
    const account& cr = accounts_.at(p.t.credit_account_id);
    const uint64_t amount = t.amount == 0 ? p.t.amount : t.amount;
    if (post) {
      if (dr.status == wire::account_status::frozen) return result::debit_account_frozen;
      if (cr.status == wire::account_status::frozen) return result::credit_account_frozen;
      if ((unsigned __int128)dr.debits_posted + amount > u64_max) return result::overflows_debits_posted;
      if ((unsigned __int128)cr.credits_posted + amount > u64_max) return result::overflows_credits_posted;
    }
    account& d = touch(j, p.t.debit_account_id);
    account& c = touch(j, p.t.credit_account_id);
    d.debits_pending -= p.t.amount;
    c.credits_pending -= p.t.amount;
    if (post) {
      d.debits_posted += amount;
      c.credits_posted += amount;
    }
    j.pendings.emplace_back(key(t.pending_id), p.state);
    p.state = post ? pending_state::posted : pending_state::voided;
    count_open(p.t, -1);
    return result::ok;
  }

  void undo(journal& j) {
    for (auto it = j.accounts.rbegin(); it != j.accounts.rend(); ++it) accounts_.at(it->first) = it->second;
    for (auto it = j.pendings.rbegin(); it != j.pendings.rend(); ++it) transfers_.at(it->first).state = it->second;
    open_on_ = j.open_on;
    j.accounts.clear();
    j.pendings.clear();
  }

  // ---- transfers: chains -----------------------------------------------------------------

  void run_chain(const std::vector<transfer>& ops, size_t first, size_t last, uint64_t timestamp_base,
                 std::set<key_t>& seen, std::vector<result>& out) {
    journal j;
    j.open_on = open_on_;
    std::vector<bool> is_repeat(last - first + 1, false);
    bool failed = false;
    for (size_t o = first; o <= last; ++o) {
      const transfer& t = ops[o];
      const uint64_t ts = timestamp_base + o;
      // Ids: field checks, then duplicates in this batch, then repeats of earlier batches.
      result r = transfer_fields(t);
      if (r == result::ok && (t.flags & wire::transfer_flags::equb) && o > first)
        r = result::equb_transfer_must_stand_alone;  // the last link of a chain
      if (r == result::ok && actors::equb::reserved_id(t.id)) r = result::id_reserved;  // groups' ids
      bool repeat = false;
      if (r == result::ok) {
        if (seen.count(key(t.id)) != 0) {
          r = result::id_duplicated_in_batch;
        } else {
          seen.insert(key(t.id));
          auto it = transfers_.find(key(t.id));
          if (it != transfers_.end()) {
            repeat = true;
            r = same_fields(it->second.t, t) ? it->second.res : result::exists_with_different_fields;
          }
        }
      }
      is_repeat[o - first] = repeat;
      if (failed) {
        // After the chain failed: repeats report their own result; everything else fails,
        // and a new id that passed the field checks is still recorded (and taken).
        if (repeat) {
          out[o] = r;
        } else {
          out[o] = result::linked_event_failed;
          if (r == result::ok) record(t, ts, result::linked_event_failed, 0);
        }
        continue;
      }
      if (r != result::ok) {  // a field failure, a duplicate, or a repeat that did not succeed
        out[o] = r;
        failed = true;
        fail_earlier(ops, first, o, is_repeat, out, j);
        continue;
      }
      if (repeat) {
        out[o] = result::ok;
        continue;
      }
      // A new operation: decide, record.
      uint64_t expires_at = 0;
      const bool resolve = (t.flags & (wire::transfer_flags::post_pending | wire::transfer_flags::void_pending)) != 0;
      r = resolve ? decide_resolve(t, j) : decide_fresh(t, ts, j, &expires_at);
      record(t, ts, r, expires_at);
      out[o] = r;
      if (r != result::ok) {
        failed = true;
        fail_earlier(ops, first, o, is_repeat, out, j);
      }
    }
  }

  void record(const transfer& t, uint64_t ts, result r, uint64_t expires_at) {
    recorded_transfer rec;
    rec.t = t;
    rec.t.timestamp = ts;
    rec.res = r;
    rec.state = pending_state::pending;
    rec.expires_at = expires_at;
    transfers_.emplace(key(t.id), rec);
    if (r == result::ok && (t.flags & wire::transfer_flags::pending) && expires_at != 0)
      deadlines_.emplace(expires_at, key(t.id));
  }

  // The operation at `failing` failed: undo the chain's effects so far and fail its
  // earlier operations (repeats keep their own result).
  void fail_earlier(const std::vector<transfer>& ops, size_t first, size_t failing, const std::vector<bool>& is_repeat,
                    std::vector<result>& out, journal& j) {
    undo(j);
    for (size_t k = first; k < failing; ++k) {
      if (is_repeat[k - first]) continue;
      out[k] = result::linked_event_failed;
      transfers_.at(key(ops[k].id)).res = result::linked_event_failed;
    }
  }
};

}  // namespace mesob::test
