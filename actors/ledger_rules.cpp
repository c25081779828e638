#include "actors/ledger_rules.hpp"

#include <cstring>

#include "wire/assert.hpp"

namespace mesob::actors {

using namespace wire;

namespace {

bool add_overflows(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_add_overflow(a, b, &r);
}

bool add3_overflows(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t r;
  return __builtin_add_overflow(a, b, &r) || __builtin_add_overflow(r, c, &r);
}

int popcount(uint16_t x) { return __builtin_popcount(x); }

}  // namespace

result check_transfer_fields(const transfer& t) {
  if (t.timestamp != 0) return result::timestamp_must_be_zero;
  if (t.id.zero()) return result::id_must_not_be_zero;
  if (t.reserved != 0) return result::reserved_field;
  if (t.flags & ~transfer_flags::all) return result::flags_invalid;
  const uint16_t phase = t.flags & (transfer_flags::pending | transfer_flags::post_pending |
                                    transfer_flags::void_pending);
  if (popcount(phase) > 1) return result::flags_are_mutually_exclusive;
  if ((t.flags & transfer_flags::equb) && (t.flags & (phase | transfer_flags::linked)))
    return result::equb_transfer_must_stand_alone;
  if (t.flags & (transfer_flags::post_pending | transfer_flags::void_pending)) {
    if (t.pending_id.zero()) return result::pending_id_must_not_be_zero;
    if (t.pending_id == t.id) return result::pending_id_must_be_different;
    if (t.timeout_s != 0) return result::timeout_reserved_for_pending_transfer;
    if ((t.flags & transfer_flags::void_pending) && t.amount != 0)
      return result::amount_must_be_zero;
    if (t.currency != 0 && !currency_valid(t.currency)) return result::currency_invalid;
    if (t.debit_account_id != 0 && t.debit_account_id == t.credit_account_id)
      return result::accounts_must_be_different;
    return result::ok;
  }
  if (!t.pending_id.zero()) return result::pending_id_must_be_zero;
  if (t.timeout_s != 0 && !(t.flags & transfer_flags::pending))
    return result::timeout_reserved_for_pending_transfer;
  if (t.debit_account_id == 0) return result::debit_account_id_must_not_be_zero;
  if (t.credit_account_id == 0) return result::credit_account_id_must_not_be_zero;
  if (t.debit_account_id == t.credit_account_id) return result::accounts_must_be_different;
  if (t.amount == 0) return result::amount_must_not_be_zero;
  if (!currency_valid(t.currency)) return result::currency_invalid;
  return result::ok;
}

result check_account_fields(const account& a) {
  if (a.timestamp != 0) return result::timestamp_must_be_zero;
  if (a.id == 0) return result::id_must_not_be_zero;
  if (a.tier != 0 || a.status_seq != 0) return result::reserved_field;
  if (a.flags & ~account_flags::all) return result::flags_invalid;
  if ((a.flags & account_flags::debits_must_not_exceed_credits) &&
      (a.flags & account_flags::credits_must_not_exceed_debits))
    return result::flags_are_mutually_exclusive;
  if (!currency_valid(a.currency)) return result::currency_invalid;
  if (uint16_t(a.kind) == 0 || uint16_t(a.kind) > account_kind_max) return result::kind_invalid;
  if (a.status != account_status::open) return result::status_invalid;
  if (a.debits_pending || a.debits_posted || a.credits_pending || a.credits_posted)
    return result::balances_must_be_zero;
  return result::ok;
}

result check_status_change_fields(const account_status_change& c, uint16_t rules) {
  if (c.account_id == 0) return result::id_must_not_be_zero;
  if (c.reserved != 0 || (c.seq != 0 && rules < rules_status_seq)) return result::reserved_field;
  if (uint16_t(c.status) == 0 || uint16_t(c.status) > account_status_max)
    return result::status_invalid;
  return result::ok;
}

result decide_transfer(const transfer& t, uint64_t ts, const account* dr, const account* cr) {
  if (!dr) return result::debit_account_not_found;
  if (!cr) return result::credit_account_not_found;
  if (dr->currency != t.currency || cr->currency != t.currency)
    return result::transfer_currency_mismatch;
  if (dr->status == account_status::closed) return result::debit_account_closed;
  if (dr->status == account_status::frozen) return result::debit_account_frozen;
  if (cr->status == account_status::closed) return result::credit_account_closed;
  if (cr->status == account_status::frozen) return result::credit_account_frozen;
  const uint64_t amount = t.amount;
  if (t.flags & transfer_flags::pending) {
    if (t.timeout_s != 0) {
      uint64_t span, at;
      if (__builtin_mul_overflow(uint64_t(t.timeout_s), ns_per_s, &span) ||
          __builtin_add_overflow(ts, span, &at))
        return result::overflows_timeout;
    }
    if (add_overflows(dr->debits_pending, amount)) return result::overflows_debits_pending;
    if (add_overflows(cr->credits_pending, amount)) return result::overflows_credits_pending;
  } else {
    if (add_overflows(dr->debits_posted, amount)) return result::overflows_debits_posted;
    if (add_overflows(cr->credits_posted, amount)) return result::overflows_credits_posted;
  }
  if (add3_overflows(dr->debits_pending, dr->debits_posted, amount))
    return result::overflows_debits;
  if (add3_overflows(cr->credits_pending, cr->credits_posted, amount))
    return result::overflows_credits;
  if ((dr->flags & account_flags::debits_must_not_exceed_credits) &&
      dr->debits_pending + dr->debits_posted + amount > dr->credits_posted)
    return result::exceeds_credits;
  if ((cr->flags & account_flags::credits_must_not_exceed_debits) &&
      cr->credits_pending + cr->credits_posted + amount > cr->debits_posted)
    return result::exceeds_debits;
  return result::ok;
}

result decide_post_or_void(const transfer& t, pending_lookup lookup, const pending_info* p,
                           const account* dr, const account* cr) {
  if (lookup == pending_lookup::not_found) return result::pending_transfer_not_found;
  if (lookup == pending_lookup::not_pending) return result::pending_transfer_not_pending;
  if (lookup == pending_lookup::unreadable) return result::pending_transfer_unreadable;
  MESOB_ASSERT(p != nullptr && dr != nullptr && cr != nullptr);
  if (t.debit_account_id != 0 && t.debit_account_id != p->debit_account_id)
    return result::pending_transfer_has_different_debit_account;
  if (t.credit_account_id != 0 && t.credit_account_id != p->credit_account_id)
    return result::pending_transfer_has_different_credit_account;
  if (t.currency != 0 && t.currency != p->currency)
    return result::pending_transfer_has_different_currency;
  const bool post = t.flags & transfer_flags::post_pending;
  if (post && t.amount > p->amount) return result::exceeds_pending_transfer_amount;
  switch (p->state) {
    case pending_state::pending: break;
    case pending_state::posted: return result::pending_transfer_already_posted;
    case pending_state::voided: return result::pending_transfer_already_voided;
    case pending_state::expired: return result::pending_transfer_expired;
  }
  if (post) {
    if (dr->status == account_status::frozen) return result::debit_account_frozen;
    if (cr->status == account_status::frozen) return result::credit_account_frozen;
    const uint64_t amount = post_amount(t, *p);
    if (add_overflows(dr->debits_posted, amount)) return result::overflows_debits_posted;
    if (add_overflows(cr->credits_posted, amount)) return result::overflows_credits_posted;
  }
  return result::ok;
}

result decide_existing_account(const account& request, const account& existing) {
  const bool same = request.owner_id == existing.owner_id &&
                    request.user_data == existing.user_data &&
                    request.currency == existing.currency && request.kind == existing.kind &&
                    request.flags == existing.flags;
  return same ? result::ok : result::exists_with_different_fields;
}

result decide_status_change(const account_status_change& c, const account& a, uint16_t rules, bool* repeat) {
  *repeat = false;
  if (rules >= rules_status_seq) {
    if (c.seq != 0 && c.seq == a.status_seq) {  // the latest change again: its outcome, or another's number
      if (a.status != c.status) return result::exists_with_different_fields;
      *repeat = true;
      return result::ok;
    }
    if (a.status_seq == UINT32_MAX) return result::status_changes_exhausted;
    if (c.seq != 0 && c.seq < a.status_seq) return result::status_changed_since;
    if (c.seq != 0 && c.seq > a.status_seq + 1) return result::status_seq_ahead;
  }
  if (a.status == account_status::closed) return result::account_closed;
  if (c.status == account_status::closed &&
      (a.debits_pending != 0 || a.credits_pending != 0 || a.debits_posted != a.credits_posted))
    return result::account_has_balance;
  return result::ok;
}

result decide_duplicate(const transfer& t, const transfer& original, result original_result) {
  transfer o = original;
  o.timestamp = 0;
  return std::memcmp(&o, &t, sizeof t) == 0 ? original_result
                                             : result::exists_with_different_fields;
}

void apply_transfer_debit(account& dr, const transfer& t) {
  if (t.flags & transfer_flags::pending) dr.debits_pending += t.amount;
  else dr.debits_posted += t.amount;
}

void apply_transfer_credit(account& cr, const transfer& t) {
  if (t.flags & transfer_flags::pending) cr.credits_pending += t.amount;
  else cr.credits_posted += t.amount;
}

void apply_resolve_debit(account& dr, const pending_info& p, uint64_t amount) {
  MESOB_ASSERT(dr.debits_pending >= p.amount);
  dr.debits_pending -= p.amount;
  dr.debits_posted += amount;
}

void apply_resolve_credit(account& cr, const pending_info& p, uint64_t amount) {
  MESOB_ASSERT(cr.credits_pending >= p.amount);
  cr.credits_pending -= p.amount;
  cr.credits_posted += amount;
}

uint64_t post_amount(const transfer& t, const pending_info& p) {
  return t.amount == 0 ? p.amount : t.amount;
}

pending_info make_pending(const transfer& t, uint64_t serial, uint64_t ts) {
  pending_info p;
  p.serial = serial;
  p.amount = t.amount;
  p.debit_account_id = t.debit_account_id;
  p.credit_account_id = t.credit_account_id;
  p.expires_at = t.timeout_s == 0 ? 0 : ts + uint64_t(t.timeout_s) * ns_per_s;
  p.currency = t.currency;
  p.state = pending_state::pending;
  return p;
}

}  // namespace mesob::actors
