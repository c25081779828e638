#include "wire/types.hpp"

#include <bit>

namespace mesob::wire {

static_assert(std::endian::native == std::endian::little,
              "Mesob's log and wire formats are little-endian");

bool currency_valid(currency_code c) {
  for (int i = 0; i < 3; ++i) {
    const auto ch = char((c >> (8 * i)) & 0xff);
    if (ch < 'A' || ch > 'Z') return false;
  }
  return (c >> 24) == 0;
}

bool parse_currency(std::string_view text, currency_code* out) {
  if (text.size() != 3) return false;
  const currency_code c = currency_code(uint8_t(text[0])) | currency_code(uint8_t(text[1])) << 8 |
                          currency_code(uint8_t(text[2])) << 16;
  if (!currency_valid(c)) return false;
  *out = c;
  return true;
}

std::string decimal_text(unsigned __int128 v) {
  char buf[40];
  size_t i = sizeof buf;
  do {
    buf[--i] = char('0' + int(v % 10));
    v /= 10;
  } while (v != 0);
  return {buf + i, sizeof buf - i};
}

std::string currency_name(currency_code c) {
  if (!currency_valid(c)) return "?";
  return {char(c & 0xff), char((c >> 8) & 0xff), char((c >> 16) & 0xff)};
}

std::string_view result_name(result r) {
  switch (r) {
#define MESOB_RESULT(x) \
  case result::x:       \
    return #x;
    MESOB_RESULT(ok)
    MESOB_RESULT(linked_event_failed)
    MESOB_RESULT(linked_event_chain_open)
    MESOB_RESULT(id_must_not_be_zero)
    MESOB_RESULT(timestamp_must_be_zero)
    MESOB_RESULT(reserved_field)
    MESOB_RESULT(flags_invalid)
    MESOB_RESULT(flags_are_mutually_exclusive)
    MESOB_RESULT(currency_invalid)
    MESOB_RESULT(kind_invalid)
    MESOB_RESULT(status_invalid)
    MESOB_RESULT(balances_must_be_zero)
    MESOB_RESULT(debit_account_id_must_not_be_zero)
    MESOB_RESULT(credit_account_id_must_not_be_zero)
    MESOB_RESULT(accounts_must_be_different)
    MESOB_RESULT(amount_must_not_be_zero)
    MESOB_RESULT(amount_must_be_zero)
    MESOB_RESULT(id_duplicated_in_batch)
    MESOB_RESULT(pending_id_must_be_zero)
    MESOB_RESULT(pending_id_must_not_be_zero)
    MESOB_RESULT(pending_id_must_be_different)
    MESOB_RESULT(timeout_reserved_for_pending_transfer)
    MESOB_RESULT(exists_with_different_fields)
    MESOB_RESULT(account_not_found)
    MESOB_RESULT(debit_account_not_found)
    MESOB_RESULT(credit_account_not_found)
    MESOB_RESULT(transfer_currency_mismatch)
    MESOB_RESULT(accounts_full)
    MESOB_RESULT(pending_full)
    MESOB_RESULT(transfers_full)
    MESOB_RESULT(debit_account_frozen)
    MESOB_RESULT(credit_account_frozen)
    MESOB_RESULT(debit_account_closed)
    MESOB_RESULT(credit_account_closed)
    MESOB_RESULT(account_closed)
    MESOB_RESULT(account_has_balance)
    MESOB_RESULT(account_has_positions)
    MESOB_RESULT(status_changed_since)
    MESOB_RESULT(status_seq_ahead)
    MESOB_RESULT(status_changes_exhausted)
    MESOB_RESULT(exceeds_credits)
    MESOB_RESULT(exceeds_debits)
    MESOB_RESULT(overflows_debits_pending)
    MESOB_RESULT(overflows_credits_pending)
    MESOB_RESULT(overflows_debits_posted)
    MESOB_RESULT(overflows_credits_posted)
    MESOB_RESULT(overflows_debits)
    MESOB_RESULT(overflows_credits)
    MESOB_RESULT(overflows_timeout)
    MESOB_RESULT(pending_transfer_not_found)
    MESOB_RESULT(pending_transfer_not_pending)
    MESOB_RESULT(pending_transfer_has_different_debit_account)
    MESOB_RESULT(pending_transfer_has_different_credit_account)
    MESOB_RESULT(pending_transfer_has_different_currency)
    MESOB_RESULT(exceeds_pending_transfer_amount)
    MESOB_RESULT(pending_transfer_already_posted)
    MESOB_RESULT(pending_transfer_already_voided)
    MESOB_RESULT(pending_transfer_expired)
    MESOB_RESULT(pending_transfer_unreadable)
    MESOB_RESULT(transfer_not_found)
    MESOB_RESULT(limit_invalid)
    MESOB_RESULT(history_walk_limit)
    MESOB_RESULT(history_cursor_invalid)
    MESOB_RESULT(contribution_must_not_be_zero)
    MESOB_RESULT(amounts_too_large)
    MESOB_RESULT(period_must_not_be_zero)
    MESOB_RESULT(period_too_long)
    MESOB_RESULT(basis_points_too_high)
    MESOB_RESULT(accounts_must_differ)
    MESOB_RESULT(guarantor_required)
    MESOB_RESULT(rotation_invalid)
    MESOB_RESULT(default_policy_invalid)
    MESOB_RESULT(organizer_required)
    MESOB_RESULT(group_not_forming)
    MESOB_RESULT(group_not_active)
    MESOB_RESULT(group_full)
    MESOB_RESULT(not_a_member)
    MESOB_RESULT(leaving_after_start)
    MESOB_RESULT(too_few_seats)
    MESOB_RESULT(fee_account_unfit)
    MESOB_RESULT(guarantor_account_unfit)
    MESOB_RESULT(organizer_account_unfit)
    MESOB_RESULT(replacement_account_unfit)
    MESOB_RESULT(wrong_currency)
    MESOB_RESULT(wrong_amount)
    MESOB_RESULT(round_already_paid)
    MESOB_RESULT(round_not_open)
    MESOB_RESULT(already_contributed)
    MESOB_RESULT(round_not_due)
    MESOB_RESULT(bidding_not_allowed)
    MESOB_RESULT(already_received)
    MESOB_RESULT(already_bid)
    MESOB_RESULT(bid_outside_limits)
    MESOB_RESULT(seed_mismatch)
    MESOB_RESULT(account_not_in_group)
    MESOB_RESULT(seat_not_last)
    MESOB_RESULT(groups_full)
    MESOB_RESULT(round_closed)
    MESOB_RESULT(nothing_owed)
    MESOB_RESULT(group_not_ended)
    MESOB_RESULT(group_not_found)
    MESOB_RESULT(group_account_exists)
    MESOB_RESULT(id_reserved)
    MESOB_RESULT(equb_transfer_must_stand_alone)
    MESOB_RESULT(equb_op_invalid)
    MESOB_RESULT(group_steps_exhausted)
    MESOB_RESULT(nothing_to_retry)
    MESOB_RESULT(group_account_reserved)
    MESOB_RESULT(group_payouts_wallet_only)
    MESOB_RESULT(group_numbers_exhausted)
    MESOB_RESULT(gateway_op_invalid)
    MESOB_RESULT(gateway_id_invalid)
    MESOB_RESULT(gateway_exists)
    MESOB_RESULT(gateway_not_found)
    MESOB_RESULT(rail_invalid)
    MESOB_RESULT(roles_invalid)
    MESOB_RESULT(secret_invalid)
    MESOB_RESULT(currencies_invalid)
    MESOB_RESULT(settlement_account_invalid)
    MESOB_RESULT(settlement_account_in_use)
    MESOB_RESULT(gateways_full)
    MESOB_RESULT(gateway_not_registered)
    MESOB_RESULT(gateway_disabled)
    MESOB_RESULT(gateway_currency_unserved)
    MESOB_RESULT(answer_timeout_invalid)
    MESOB_RESULT(settlement_accounts_exhausted)
    MESOB_RESULT(payout_rail_unserved)
    MESOB_RESULT(payout_account_reserved)
    MESOB_RESULT(payout_not_found)
    MESOB_RESULT(payout_instruction_unknown)
    MESOB_RESULT(payout_wrong_gateway)
    MESOB_RESULT(payout_amount_mismatch)
    MESOB_RESULT(payout_already_resolved)
    MESOB_RESULT(payout_answer_late)
    MESOB_RESULT(payout_answer_invalid)
    MESOB_RESULT(payout_not_dead)
    MESOB_RESULT(payout_settled_elsewhere)
    MESOB_RESULT(payout_retries_exhausted)
    MESOB_RESULT(payout_may_be_paid)
    MESOB_RESULT(payout_id_reserved)
    MESOB_RESULT(payout_destination_missing)
    MESOB_RESULT(payout_overpaid)
    MESOB_RESULT(events_truncated)
    MESOB_RESULT(events_offset_ahead)
    MESOB_RESULT(subscriber_busy)
    MESOB_RESULT(subscribers_full)
    MESOB_RESULT(subscriber_name_invalid)
    MESOB_RESULT(events_filter_invalid)
    MESOB_RESULT(events_unavailable)
    MESOB_RESULT(subscriber_name_owned)
    MESOB_RESULT(events_try_again)
    MESOB_RESULT(instrument_not_found)
    MESOB_RESULT(instrument_op_invalid)
    MESOB_RESULT(symbol_invalid)
    MESOB_RESULT(symbol_in_use)
    MESOB_RESULT(tick_invalid)
    MESOB_RESULT(lot_invalid)
    MESOB_RESULT(asset_class_invalid)
    MESOB_RESULT(halt_rule_invalid)
    MESOB_RESULT(instruments_full)
    MESOB_RESULT(price_invalid)
    MESOB_RESULT(instrument_halted)
    MESOB_RESULT(price_stale)
    MESOB_RESULT(instrument_not_halted)
    MESOB_RESULT(kyc_status_invalid)
    MESOB_RESULT(risk_profile_invalid)
    MESOB_RESULT(tier_undefined)
    MESOB_RESULT(customer_wallet_required)
    MESOB_RESULT(policy_op_invalid)
    MESOB_RESULT(exceeds_transfer_limit)
    MESOB_RESULT(exceeds_daily_outflow)
    MESOB_RESULT(exceeds_balance_limit)
    MESOB_RESULT(customer_not_found)
    MESOB_RESULT(sequence_out_of_order)
    MESOB_RESULT(order_invalid)
    MESOB_RESULT(lot_size_invalid)
    MESOB_RESULT(kyc_not_verified)
    MESOB_RESULT(risk_profile_undefined)
    MESOB_RESULT(risk_profile_forbids)
    MESOB_RESULT(price_limit_exceeded)
    MESOB_RESULT(exceeds_position_limit)
    MESOB_RESULT(insufficient_cash)
    MESOB_RESULT(insufficient_position)
    MESOB_RESULT(order_not_open)
    MESOB_RESULT(fill_invalid)
    MESOB_RESULT(too_many_orders)
    MESOB_RESULT(order_not_found)
    MESOB_RESULT(fill_id_reused)
    MESOB_RESULT(order_wrong_broker)
    MESOB_RESULT(trading_account_reserved)
    MESOB_RESULT(too_many_fills)
    MESOB_RESULT(order_answer_invalid)
    MESOB_RESULT(order_not_dead)
    MESOB_RESULT(order_retries_exhausted)
    MESOB_RESULT(customer_op_invalid)
    MESOB_RESULT(grace_not_within_period)
    MESOB_RESULT(period_too_short)
    MESOB_RESULT(late_penalty_past_contribution)
    MESOB_RESULT(order_may_be_traded)
    MESOB_RESULT(order_lots_past_fills)
    MESOB_RESULT(commission_cap_missing)
    MESOB_RESULT(open_lots_past_fills)
    MESOB_RESULT(lookup_reply_full)
#undef MESOB_RESULT
  }
  return "unknown_result";
}

std::string_view event_type_name(event_type t) {
  switch (t) {
    case event_type::account_opened: return "account_opened";
    case event_type::account_status: return "account_status";
    case event_type::transfer_posted: return "transfer_posted";
    case event_type::pending_created: return "pending_created";
    case event_type::pending_posted: return "pending_posted";
    case event_type::pending_voided: return "pending_voided";
    case event_type::pending_expired: return "pending_expired";
    case event_type::equb_op: return "equb_op";
    case event_type::gateway_session: return "gateway_session";
    case event_type::payout_answer: return "payout_answer";
    case event_type::payout_op: return "payout_op";
    case event_type::equb_missed: return "equb_missed";
    case event_type::equb_round_closed: return "equb_round_closed";
    case event_type::equb_completed: return "equb_completed";
    case event_type::equb_late: return "equb_late";
    case event_type::payout_dead: return "payout_dead";
    case event_type::payout_breaker: return "payout_breaker";
    case event_type::instrument_defined: return "instrument_defined";
    case event_type::price: return "price";
    case event_type::instrument_halted: return "instrument_halted";
    case event_type::instrument_resumed: return "instrument_resumed";
    case event_type::customer_kyc: return "customer_kyc";
    case event_type::policy_changed: return "policy_changed";
    case event_type::order_answer: return "order_answer";
    case event_type::order_cancelled: return "order_cancelled";
    case event_type::order_expired: return "order_expired";
    case event_type::order_timeout: return "order_timeout";
    case event_type::order_dead: return "order_dead";
    case event_type::order_breaker: return "order_breaker";
    case event_type::order_retried: return "order_retried";
    case event_type::payout_overpaid: return "payout_overpaid";
    case event_type::instrument_resequenced: return "instrument_resequenced";
    case event_type::customer_resequenced: return "customer_resequenced";
    case event_type::equb_rescheduled: return "equb_rescheduled";
    case event_type::equb_retired: return "equb_retired";
    case event_type::equb_debt_written_off: return "equb_debt_written_off";
    case event_type::payout_timer: return "payout_timer";
  }
  return "unknown_event";
}

std::string_view kyc_status_name(uint8_t s) {
  switch (s) {
    case uint8_t(kyc_status::none): return "none";
    case uint8_t(kyc_status::pending): return "pending";
    case uint8_t(kyc_status::verified): return "verified";
    case uint8_t(kyc_status::rejected): return "rejected";
  }
  return "unknown";
}

std::string_view risk_profile_name(uint8_t p) {
  switch (p) {
    case uint8_t(risk_profile::conservative): return "conservative";
    case uint8_t(risk_profile::moderate): return "moderate";
    case uint8_t(risk_profile::aggressive): return "aggressive";
  }
  return "unknown";
}

std::string_view asset_class_name(uint8_t c) {
  switch (c) {
    case uint8_t(asset_class::cash_like): return "cash_like";
    case uint8_t(asset_class::bond): return "bond";
    case uint8_t(asset_class::equity): return "equity";
    case uint8_t(asset_class::fund): return "fund";
  }
  return "unknown";
}

}  // namespace mesob::wire
