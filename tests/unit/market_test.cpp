// The market's rules (actors/market.hpp): definitions, prices, the three halt reasons,
// the events they make, and the snapshot byte form.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "actors/market.hpp"

using namespace mesob;
using actors::market::book;
using wire::result;

namespace {

constexpr uint64_t ms = 1'000'000ull;
constexpr uint64_t t0 = 1'700'000'000'000'000'000ull;

// 10% moves within 8 s (slices of 1 s), stale after 5 s, move halts of 2 s.
wire::instrument_op define(uint64_t id, const char* symbol) {
  return actors::market::definition(id, symbol, wire::asset_class::equity, wire::currency("ETB"), 5, 10,
                                    {1000, 8000, 5000, 2000});
}

wire::instrument_op simple(uint64_t id, wire::instrument_op_kind k) {
  wire::instrument_op op;
  op.instrument_id = id;
  op.kind = k;
  return op;
}

struct recorder {
  std::vector<wire::event> events;
  book b;
  recorder() {
    b.set_events([this](wire::event&& e) { events.push_back(e); });
  }
  result op(const wire::instrument_op& o, uint64_t t) {
    bool repeated = false;
    return b.apply(o, t, &repeated);
  }
  std::map<uint64_t, uint64_t> sequence;  // per instrument, the feed's last
  result price(uint64_t id, uint64_t ticks, uint64_t t) {
    const result r = b.apply(wire::price{id, ticks, sequence[id] + 1}, t);
    if (r == result::ok) ++sequence[id];
    return r;
  }
  std::vector<wire::event_type> types() const {
    std::vector<wire::event_type> out;
    for (const auto& e : events) out.push_back(e.type);
    return out;
  }
};

}  // namespace

TEST(Market, FieldChecks) {
  auto d = define(7, "ABC");
  EXPECT_EQ(actors::market::check_op_fields(d), result::ok);
  auto bad = d;
  bad.instrument_id = 0;
  EXPECT_EQ(actors::market::check_op_fields(bad), result::id_must_not_be_zero);
  bad = d;
  bad.symbol[0] = 'a';
  EXPECT_EQ(actors::market::check_op_fields(bad), result::symbol_invalid);
  bad = d;
  std::memset(bad.symbol, 'A', sizeof bad.symbol);
  EXPECT_EQ(actors::market::check_op_fields(bad), result::symbol_invalid);
  bad = d;
  bad.symbol[5] = 'X';  // a byte after the NUL
  EXPECT_EQ(actors::market::check_op_fields(bad), result::symbol_invalid);
  bad = d;
  bad.tick = 0;
  EXPECT_EQ(actors::market::check_op_fields(bad), result::tick_invalid);
  bad = d;
  bad.lot = actors::market::lot_max + 1;
  EXPECT_EQ(actors::market::check_op_fields(bad), result::lot_invalid);
  bad = d;
  bad.cls = wire::asset_class(9);
  EXPECT_EQ(actors::market::check_op_fields(bad), result::asset_class_invalid);
  bad = d;
  bad.currency = 0;
  EXPECT_EQ(actors::market::check_op_fields(bad), result::currency_invalid);
  for (int field = 0; field < 4; ++field) {
    bad = d;
    (field == 0 ? bad.move_bp : field == 1 ? bad.move_window_ms : field == 2 ? bad.stale_ms : bad.halt_ms) = 0;
    EXPECT_EQ(actors::market::check_op_fields(bad), result::halt_rule_invalid) << field;
  }
  bad = d;
  bad.move_bp = 10'001;
  EXPECT_EQ(actors::market::check_op_fields(bad), result::halt_rule_invalid);
  bad = d;
  bad.reserved = 1;
  EXPECT_EQ(actors::market::check_op_fields(bad), result::reserved_field);
  bad = d;
  bad.kind = wire::instrument_op_kind(5);
  EXPECT_EQ(actors::market::check_op_fields(bad), result::instrument_op_invalid);
  bad.kind = wire::instrument_op_kind::resequence;  // a definition's fields are not a resequence's
  EXPECT_EQ(actors::market::check_op_fields(bad), result::instrument_op_invalid);
  auto h = simple(7, wire::instrument_op_kind::halt);
  EXPECT_EQ(actors::market::check_op_fields(h), result::ok);
  h.tick = 1;  // a halt sets nothing but the id
  EXPECT_EQ(actors::market::check_op_fields(h), result::instrument_op_invalid);
  auto q = simple(7, wire::instrument_op_kind::resequence);
  EXPECT_EQ(actors::market::check_op_fields(q), result::ok);  // from 0: any sequence
  q.tick = UINT64_MAX;  // the sequence
  EXPECT_EQ(actors::market::check_op_fields(q), result::ok);
  q.lot = 1;
  EXPECT_EQ(actors::market::check_op_fields(q), result::instrument_op_invalid);
}

// A feed that started its count again (or sent one far ahead) has every price refused
// until an operator resequences: then prices count from the sequence given. The last
// price stays, and the snapshot form keeps a sequence below the last price's.
TEST(Market, AResequenceLetsAFeedCountAgain) {
  recorder m;
  ASSERT_EQ(m.op(define(1, "AAA"), t0), result::ok);
  ASSERT_EQ(m.b.apply(wire::price{1, 100, 1'000'000}, t0 + 1), result::ok);
  EXPECT_EQ(m.b.apply(wire::price{1, 101, 1}, t0 + 2), result::sequence_out_of_order);
  auto q = simple(1, wire::instrument_op_kind::resequence);
  EXPECT_EQ(m.op(simple(2, wire::instrument_op_kind::resequence), t0 + 3), result::instrument_not_found);
  m.events.clear();
  ASSERT_EQ(m.op(q, t0 + 3), result::ok);
  ASSERT_EQ(m.events.size(), 1u);
  EXPECT_EQ(m.events[0].type, wire::event_type::instrument_resequenced);
  EXPECT_EQ(m.events[0].account_a, 1u);
  EXPECT_EQ(m.events[0].ref.lo, 0u);
  EXPECT_EQ(m.events[0].ref.hi, 1'000'000u);
  EXPECT_EQ(m.b.find(1)->last_sequence, 0u);
  EXPECT_EQ(m.b.find(1)->last_ticks, 100u);  // the last price stays
  bool repeated = false;
  ASSERT_EQ(m.b.apply(q, t0 + 4, &repeated), result::ok);
  EXPECT_TRUE(repeated);
  EXPECT_EQ(m.events.size(), 1u);  // nothing changed, no event
  const auto bytes = m.b.encode();  // sequence 0 with a last price: a snapshot keeps it
  book back;
  std::string why;
  ASSERT_TRUE(book::decode(bytes, &back, &why)) << why;
  EXPECT_EQ(back.encode(), bytes);
  EXPECT_EQ(m.b.apply(wire::price{1, 101, 1}, t0 + 5), result::ok);
  EXPECT_EQ(m.b.find(1)->last_sequence, 1u);
  q.tick = 10;  // ahead of the feed: its next must be past 10
  ASSERT_EQ(m.op(q, t0 + 6), result::ok);
  EXPECT_EQ(m.b.apply(wire::price{1, 102, 2}, t0 + 7), result::sequence_out_of_order);
  // At 10 itself no price was taken: the last price's ticks there are no repeat (before,
  // an ok that took nothing, its time not moved).
  EXPECT_EQ(m.b.apply(wire::price{1, 101, 10}, t0 + 7), result::sequence_out_of_order);
  const auto flagged = m.b.encode();  // the snapshot form keeps that
  book again;
  ASSERT_TRUE(book::decode(flagged, &again, &why)) << why;
  EXPECT_EQ(again.apply(wire::price{1, 101, 10}, t0 + 7), result::sequence_out_of_order);
  EXPECT_EQ(m.b.apply(wire::price{1, 102, 11}, t0 + 8), result::ok);
  EXPECT_EQ(m.b.find(1)->last_price_at, t0 + 8);
  EXPECT_EQ(m.b.apply(wire::price{1, 102, 11}, t0 + 9), result::ok);  // a price taken there: a repeat
  EXPECT_EQ(m.b.find(1)->last_price_at, t0 + 8);
}

TEST(Market, DefineIsIdempotentAndSymbolsUnique) {
  recorder m;
  EXPECT_EQ(m.op(define(1, "AAA"), t0), result::ok);
  bool repeated = false;
  EXPECT_EQ(m.b.apply(define(1, "AAA"), t0 + 1, &repeated), result::ok);
  EXPECT_TRUE(repeated);
  auto other = define(1, "AAA");
  other.lot = 11;
  EXPECT_EQ(m.op(other, t0 + 2), result::exists_with_different_fields);
  EXPECT_EQ(m.op(define(2, "AAA"), t0 + 3), result::symbol_in_use);
  EXPECT_EQ(m.op(define(2, "BBB"), t0 + 4), result::ok);
  EXPECT_EQ(m.b.size(), 2u);
  ASSERT_EQ(m.events.size(), 2u);  // one per definition made, none for the repeat
  EXPECT_EQ(m.events[0].type, wire::event_type::instrument_defined);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(&m.events[0].id)), "AAA");
  EXPECT_EQ(m.events[0].amount, 5u);
  EXPECT_EQ(m.events[0].ref.lo, 10u);
}

// An instrument whose smallest order (one lot at one tick) passes notional_max could
// never trade: refused lot_invalid (rules_instrument_tradable), taking no id nor symbol.
// Before, it was defined, and its id and symbol were taken for good.
TEST(Market, AnInstrumentThatCouldNeverTradeIsRefused) {
  const auto big = [](uint64_t id, const char* symbol, uint64_t tick, uint64_t lot) {
    return actors::market::definition(id, symbol, wire::asset_class::equity, wire::currency("ETB"), tick, lot,
                                      {1000, 8000, 5000, 2000});
  };
  recorder m;
  EXPECT_EQ(m.op(big(1, "HUGE", 1'000'000'000, 1'000'000'000), t0), result::lot_invalid);
  EXPECT_EQ(m.b.find(1), nullptr);
  EXPECT_EQ(m.op(big(1, "HUGE", 1'000'000'000, 9'007'199), t0), result::ok) << "2^53 and under: it trades";
  EXPECT_EQ(m.op(big(2, "OVER", 1'000'000'000, 9'007'200), t0), result::lot_invalid);
  EXPECT_TRUE(m.events.size() == 1 && m.events[0].type == wire::event_type::instrument_defined);
  recorder older;
  older.b.set_rules(actors::rules_instrument_tradable - 1);
  EXPECT_EQ(older.op(big(1, "HUGE", 1'000'000'000, 1'000'000'000), t0), result::ok) << "as its record was decided";
}

TEST(Market, NoPriceIsStaleAndTheFirstPriceStartsTrading) {
  recorder m;
  ASSERT_EQ(m.op(define(1, "AAA"), t0), result::ok);
  EXPECT_EQ(m.b.find(1)->reasons(t0), wire::halt_reasons::stale);
  EXPECT_EQ(m.price(1, 0, t0 + 1), result::price_invalid);
  EXPECT_EQ(m.price(1, (1ull << 53) / 5 + 1, t0 + 1), result::price_invalid);
  EXPECT_EQ(m.price(9, 100, t0 + 1), result::instrument_not_found);
  EXPECT_EQ(m.price(1, 100, t0 + 2), result::ok);
  EXPECT_EQ(m.b.find(1)->reasons(t0 + 2), 0);
  EXPECT_EQ(m.types(), (std::vector{wire::event_type::instrument_defined, wire::event_type::price,
                                    wire::event_type::instrument_resumed}));
  EXPECT_EQ(m.events.back().code, wire::halt_reasons::stale);
}

TEST(Market, StaleHaltBeginsByTimeAndEndsWithAPrice) {
  recorder m;
  ASSERT_EQ(m.op(define(1, "AAA"), t0), result::ok);
  ASSERT_EQ(m.price(1, 100, t0 + 1), result::ok);
  const uint64_t stale_at = t0 + 1 + 5000 * ms + 1;
  EXPECT_EQ(m.b.find(1)->reasons(stale_at - 1), 0);
  EXPECT_EQ(m.b.find(1)->reasons(stale_at), wire::halt_reasons::stale);
  EXPECT_EQ(m.b.next_due(), stale_at);
  EXPECT_FALSE(m.b.due(stale_at - 1));
  m.events.clear();
  m.b.run_due(stale_at + 3 * ms);
  ASSERT_EQ(m.events.size(), 1u);
  EXPECT_EQ(m.events[0].type, wire::event_type::instrument_halted);
  EXPECT_EQ(m.events[0].timestamp, stale_at);  // when it happened, not when it was seen
  EXPECT_EQ(m.events[0].code, wire::halt_reasons::stale);
  EXPECT_EQ(m.b.next_due(), UINT64_MAX);  // only a price changes it now
  // An operator cannot resume a stale instrument; a price does. Halted by hand as well,
  // resuming lifts the operators' halt only: no resume event.
  EXPECT_EQ(m.op(simple(1, wire::instrument_op_kind::resume), stale_at + 4 * ms), result::price_stale);
  m.events.clear();
  ASSERT_EQ(m.op(simple(1, wire::instrument_op_kind::halt), stale_at + 4 * ms + 1), result::ok);
  ASSERT_EQ(m.op(simple(1, wire::instrument_op_kind::resume), stale_at + 4 * ms + 2), result::ok);
  EXPECT_EQ(m.b.find(1)->reasons(stale_at + 4 * ms + 2), wire::halt_reasons::stale);
  EXPECT_EQ(m.types(), (std::vector{wire::event_type::instrument_halted}));
  m.events.clear();
  ASSERT_EQ(m.price(1, 101, stale_at + 5 * ms), result::ok);
  EXPECT_EQ(m.types(), (std::vector{wire::event_type::price, wire::event_type::instrument_resumed}));
}

TEST(Market, PricesMovingThePriceOnKeepOneTimer) {
  recorder m;
  ASSERT_EQ(m.op(define(1, "AAA"), t0), result::ok);
  for (uint64_t i = 0; i < 10'000; ++i) ASSERT_EQ(m.price(1, 100 + i % 3, t0 + 1 + i * ms / 10), result::ok);
  const uint64_t last = t0 + 1 + 9'999 * ms / 10;
  m.events.clear();
  m.b.run_due(last + 5000 * ms);  // the first entry comes up, is not due yet, and moves on
  EXPECT_TRUE(m.events.empty());
  EXPECT_EQ(m.b.next_due(), last + 5000 * ms + 1);
  m.b.run_due(last + 5000 * ms + 1);
  ASSERT_EQ(m.events.size(), 1u);
  EXPECT_EQ(m.events[0].type, wire::event_type::instrument_halted);
}

TEST(Market, MoveHaltWithinTheWindowAndItsEnd) {
  recorder m;
  ASSERT_EQ(m.op(define(1, "AAA"), t0), result::ok);
  ASSERT_EQ(m.price(1, 1000, t0 + 1), result::ok);
  ASSERT_EQ(m.price(1, 1050, t0 + 1000 * ms), result::ok);  // +5%: trades
  ASSERT_EQ(m.price(1, 1100, t0 + 2000 * ms), result::ok);  // +10% of the lowest: not more
  EXPECT_EQ(m.b.find(1)->reasons(t0 + 2000 * ms), 0);
  EXPECT_EQ(m.b.find(1)->band_ticks, 1100u);
  m.events.clear();
  const uint64_t jump = t0 + 3000 * ms;
  ASSERT_EQ(m.price(1, 1101, jump), result::ok);  // more than 10% over 1000
  EXPECT_EQ(m.b.find(1)->reasons(jump), wire::halt_reasons::move);
  ASSERT_EQ(m.types(), (std::vector{wire::event_type::price, wire::event_type::instrument_halted}));
  EXPECT_EQ(m.events[1].flags, wire::halt_reasons::move);
  EXPECT_EQ(m.events[1].ref.lo, jump + 2000 * ms);
  // Prices during the halt are kept as the last price, halt nothing more and stay out of
  // the window, which starts again with the first price after the halt.
  ASSERT_EQ(m.price(1, 1500, jump + 1000 * ms), result::ok);
  EXPECT_EQ(m.b.find(1)->last_ticks, 1500u);
  // Fills are banded around the last price before the halt, not the print that began
  // it nor those during it.
  EXPECT_EQ(m.b.find(1)->band_ticks, 1100u);
  EXPECT_EQ(m.b.find(1)->halts, 1u);
  m.events.clear();
  m.b.run_due(jump + 2000 * ms);
  ASSERT_EQ(m.events.size(), 1u);
  EXPECT_EQ(m.events[0].type, wire::event_type::instrument_resumed);
  EXPECT_EQ(m.events[0].code, wire::halt_reasons::move);
  EXPECT_EQ(m.events[0].timestamp, jump + 2000 * ms);
  m.events.clear();
  ASSERT_EQ(m.price(1, 1400, jump + 2500 * ms), result::ok);
  EXPECT_EQ(m.b.find(1)->reasons(jump + 2500 * ms), 0);
  EXPECT_EQ(m.b.find(1)->band_ticks, 1400u) << "the first price after the halt";
  ASSERT_EQ(m.price(1, 1500, jump + 20'000 * ms), result::ok);  // 1400 is out of the window now
  ASSERT_EQ(m.price(1, 1360, jump + 20'001 * ms), result::ok);  // -9.3%
  EXPECT_EQ(m.b.find(1)->reasons(jump + 20'001 * ms), 0);
  ASSERT_EQ(m.price(1, 1349, jump + 20'002 * ms), result::ok);  // -10.07%
  EXPECT_EQ(m.b.find(1)->reasons(jump + 20'002 * ms), wire::halt_reasons::move);
}

// A price that finds the move window empty (the feed quiet longer than the window, the
// last price not yet stale) is measured against the last price taken (rules version 24).
// Before, it was never a move: a doubling after a quiet second halted nothing. Not
// against a stale price, the print that began a halt, or a price before a resume.
TEST(Market, AJumpAfterAQuietSpellIsAMove) {
  const uint64_t s = 1000 * ms;
  for (const uint16_t rules : {uint16_t(actors::rules_move_after_quiet - 1), actors::rules_newest}) {
    recorder m;
    m.b.set_rules(rules);
    // 10% within 1 s, stale after 60 s, move halts of 2 s.
    ASSERT_EQ(m.op(actors::market::definition(1, "AAA", wire::asset_class::equity, wire::currency("ETB"), 5, 10,
                                              {1000, 1000, 60'000, 2000}),
                   t0),
              result::ok);
    ASSERT_EQ(m.price(1, 1000, t0 + 1), result::ok);
    ASSERT_EQ(m.price(1, 2000, t0 + 5 * s), result::ok);  // the window (1 s) holds nothing
    if (rules < actors::rules_move_after_quiet) {
      EXPECT_EQ(m.b.find(1)->reasons(t0 + 5 * s), 0) << "older rules: no move";
      continue;
    }
    EXPECT_EQ(m.b.find(1)->reasons(t0 + 5 * s), wire::halt_reasons::move);
    EXPECT_EQ(m.b.find(1)->band_ticks, 1000u);
    // After the halt (7 s), quiet again: the last price is the print that began it.
    ASSERT_EQ(m.price(1, 2100, t0 + 9 * s), result::ok);
    EXPECT_EQ(m.b.find(1)->reasons(t0 + 9 * s), 0);
    EXPECT_EQ(m.b.find(1)->band_ticks, 2100u);
    // Quiet past stale: the next price starts afresh.
    ASSERT_EQ(m.price(1, 5000, t0 + 70 * s), result::ok);
    EXPECT_EQ(m.b.find(1)->reasons(t0 + 70 * s), 0);
    // Within the window the window decides, as before; a resume starts it again.
    ASSERT_EQ(m.price(1, 6000, t0 + 70 * s + 10 * ms), result::ok);
    EXPECT_EQ(m.b.find(1)->reasons(t0 + 70 * s + 10 * ms), wire::halt_reasons::move);
    ASSERT_EQ(m.op(simple(1, wire::instrument_op_kind::resume), t0 + 70 * s + 20 * ms), result::ok);
    ASSERT_EQ(m.price(1, 7000, t0 + 73 * s), result::ok);
    EXPECT_EQ(m.b.find(1)->reasons(t0 + 73 * s), 0) << "not against a price before the resume";
    // Quiet again, not stale: a 10.1% fall from 7000 is a move.
    ASSERT_EQ(m.price(1, 6290, t0 + 80 * s), result::ok);
    EXPECT_EQ(m.b.find(1)->reasons(t0 + 80 * s), wire::halt_reasons::move);
  }
}

TEST(Market, ManualHaltAndResume) {
  recorder m;
  ASSERT_EQ(m.op(define(1, "AAA"), t0), result::ok);
  ASSERT_EQ(m.price(1, 1000, t0 + 1), result::ok);
  EXPECT_EQ(m.op(simple(1, wire::instrument_op_kind::resume), t0 + 2), result::instrument_not_halted);
  EXPECT_EQ(m.op(simple(2, wire::instrument_op_kind::halt), t0 + 2), result::instrument_not_found);
  m.events.clear();
  ASSERT_EQ(m.op(simple(1, wire::instrument_op_kind::halt), t0 + 3), result::ok);
  bool repeated = false;
  ASSERT_EQ(m.b.apply(simple(1, wire::instrument_op_kind::halt), t0 + 4, &repeated), result::ok);
  EXPECT_TRUE(repeated);
  EXPECT_EQ(m.b.find(1)->reasons(t0 + 4), wire::halt_reasons::manual);
  // A move while halted by hand: a second reason, no second halt event.
  ASSERT_EQ(m.price(1, 2000, t0 + 5), result::ok);
  EXPECT_EQ(m.b.find(1)->reasons(t0 + 5), wire::halt_reasons::manual | wire::halt_reasons::move);
  ASSERT_EQ(m.op(simple(1, wire::instrument_op_kind::resume), t0 + 6), result::ok);  // lifts both
  EXPECT_EQ(m.b.find(1)->reasons(t0 + 6), 0);
  EXPECT_EQ(m.types(), (std::vector{wire::event_type::instrument_halted, wire::event_type::price,
                                    wire::event_type::instrument_halted, wire::event_type::instrument_resumed}));
  EXPECT_EQ(m.events[3].code, wire::halt_reasons::manual | wire::halt_reasons::move);
}

// A book's bytes (version 3) as version 2 wrote them: without each instrument's band.
std::vector<uint8_t> as_version_2(const std::vector<uint8_t>& bytes) {
  const size_t per = sizeof(wire::instrument_op) + 7 * 8 + 4 + 3 + 8 + actors::market::window_slices * 24;
  const size_t band_in = sizeof(wire::instrument_op) + 7 * 8 + 4 + 3;
  EXPECT_EQ((bytes.size() - 10) % per, 0u);
  std::vector<uint8_t> v2(bytes.begin(), bytes.begin() + 10);
  v2[4] = 2;
  for (size_t i = 0; i < (bytes.size() - 10) / per; ++i) {
    const auto at = bytes.begin() + std::ptrdiff_t(10 + i * per);
    v2.insert(v2.end(), at, at + std::ptrdiff_t(band_in));
    v2.insert(v2.end(), at + std::ptrdiff_t(band_in + 8), at + std::ptrdiff_t(per));
  }
  return v2;
}

TEST(Market, BytesRoundTripAndDamageIsRefused) {
  recorder m;
  ASSERT_EQ(m.op(define(1, "AAA"), t0), result::ok);
  ASSERT_EQ(m.op(define(2, "BB.B"), t0), result::ok);
  ASSERT_EQ(m.price(1, 1000, t0 + 1), result::ok);
  ASSERT_EQ(m.price(1, 2000, t0 + 2), result::ok);  // a move halt
  ASSERT_EQ(m.op(simple(2, wire::instrument_op_kind::halt), t0 + 3), result::ok);
  const auto bytes = m.b.encode();
  book back;
  std::string why;
  ASSERT_TRUE(book::decode(bytes, &back, &why)) << why;
  EXPECT_EQ(back.encode(), bytes);
  EXPECT_EQ(back.next_due(), m.b.next_due());
  for (uint64_t id : {1, 2})
    for (uint64_t t : {t0 + 3, t0 + 2001 * ms, t0 + 9000 * ms})
      EXPECT_EQ(back.find(id)->reasons(t), m.b.find(id)->reasons(t)) << id << " " << t;
  // Every single-byte change is refused or decodes to a book that is what the bytes say
  // (encodes back to them); cut short, refused.
  size_t refused = 0;
  for (size_t at = 0; at < bytes.size(); ++at)
    for (uint8_t flip : {0x01, 0x80, 0xff}) {
      auto damaged = bytes;
      damaged[at] ^= flip;
      book x;
      if (!book::decode(damaged, &x, &why)) ++refused;
      else EXPECT_EQ(x.encode(), damaged) << "byte " << at;
    }
  EXPECT_GT(refused, bytes.size());
  // Version 2 (before band_ticks): the band is the last price, or unknown (0: fills are
  // banded around the last price) for an instrument in a move halt.
  {
    book old;
    ASSERT_TRUE(book::decode(as_version_2(bytes), &old, &why)) << why;
    EXPECT_EQ(old.find(1)->band_ticks, 0u) << "in a move halt: its price before it unknown";
    EXPECT_EQ(m.b.find(1)->band_ticks, 1000u);
  }
  // A move halt that ended, then a price taken into the window: that price is the band.
  // Before, any move halt on record (its end is not cleared) left the band unknown.
  {
    recorder later;
    ASSERT_EQ(later.op(define(1, "AAA"), t0), result::ok);
    ASSERT_EQ(later.price(1, 1000, t0 + 1), result::ok);
    ASSERT_EQ(later.price(1, 2000, t0 + 2), result::ok);  // a move halt of 2 s
    ASSERT_EQ(later.price(1, 2100, t0 + 2001 * ms), result::ok);  // after it: taken
    ASSERT_EQ(later.b.find(1)->band_ticks, 2100u);
    ASSERT_NE(later.b.find(1)->move_halt_until, 0u);
    book old;
    ASSERT_TRUE(book::decode(as_version_2(later.b.encode()), &old, &why)) << why;
    EXPECT_EQ(old.find(1)->band_ticks, 2100u);
  }
  auto claimed = bytes;  // instrument 1's announced state claimed trading while it is halted
  const size_t announced_at = 10 + sizeof(wire::instrument_op) + 7 * 8 + 4 + 1;
  ASSERT_EQ(claimed[announced_at], wire::halt_reasons::move);
  claimed[announced_at] = 0;
  EXPECT_FALSE(book::decode(claimed, &back, &why));
  EXPECT_NE(why.find("announced"), std::string::npos) << why;
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    book x;
    EXPECT_FALSE(book::decode(std::span(bytes).first(cut), &x, &why)) << cut;
  }
  std::vector<uint8_t> more = bytes;
  more.push_back(0);
  EXPECT_FALSE(book::decode(more, &back, &why));
  auto twice = bytes;  // the second instrument's id made equal to the first's
  const size_t second = 10 + (bytes.size() - 10) / 2;
  std::memcpy(twice.data() + second, twice.data() + 10, 8);
  EXPECT_FALSE(book::decode(twice, &back, &why));
  EXPECT_NE(why.find("order"), std::string::npos) << why;
}

TEST(Market, RandomPricesRestartedFromBytesDecideTheSame) {
  const uint32_t seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mt19937_64 rng(seed);
  // Prices mostly; now and then an operator's halt or resume (whatever it answers).
  struct step {
    uint64_t t, id, ticks;  // ticks 0: an operator's op (kind in `op`)
    wire::instrument_op_kind op{};
  };
  std::vector<step> steps;
  uint64_t t = t0 + 1;
  std::vector<uint64_t> px(21, 1000);
  for (int i = 0; i < 50'000; ++i) {
    t += rng() % (200 * ms) + (rng() % 2000 == 0 ? 6000 * ms : 0);  // now and then a stale gap
    const uint64_t id = 1 + rng() % 20;
    if (rng() % 100 == 0) {
      steps.push_back({t, id, 0, rng() % 2 ? wire::instrument_op_kind::halt : wire::instrument_op_kind::resume});
      continue;
    }
    const int64_t move = int64_t(rng() % 41) - 20 + (rng() % 500 == 0 ? 300 : 0);
    px[id] = uint64_t(std::max<int64_t>(1, int64_t(px[id]) + move));
    steps.push_back({t, id, px[id]});
  }
  auto run = [&](recorder& m, size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
      m.b.run_due(steps[i].t);
      if (steps[i].ticks == 0) (void)m.op(simple(steps[i].id, steps[i].op), steps[i].t);
      else ASSERT_EQ(m.price(steps[i].id, steps[i].ticks, steps[i].t), result::ok);
    }
  };
  recorder a;
  for (uint64_t id = 1; id <= 20; ++id) ASSERT_EQ(a.op(define(id, ("S" + std::to_string(id)).c_str()), t0), result::ok);
  const size_t half = steps.size() / 2;
  run(a, 0, half);
  const size_t seen = a.events.size();
  recorder b;  // restarts from a's bytes at half, then takes the same steps
  std::string why;
  ASSERT_TRUE(book::decode(a.b.encode(), &b.b, &why)) << why;
  b.sequence = a.sequence;
  // Compared as they go (a restored book must not drift, not only end the same).
  for (size_t from = half; from < steps.size(); from += 997) {
    const size_t to = std::min(steps.size(), from + 997);
    run(a, from, to);
    run(b, from, to);
    ASSERT_EQ(b.b.encode(), a.b.encode()) << "after step " << to << " seed " << seed;
  }
  for (size_t i = 0; i < std::min(b.events.size(), a.events.size() - seen); ++i) {
    const auto& x = b.events[i];
    const auto& y = a.events[seen + i];
    ASSERT_TRUE(x.type == y.type && x.timestamp == y.timestamp && x.account_a == y.account_a && x.code == y.code)
        << "event " << i << " seed " << seed << ": " << wire::event_type_name(x.type) << " " << x.timestamp << " "
        << x.account_a << " " << x.code << " vs " << wire::event_type_name(y.type) << " " << y.timestamp << " "
        << y.account_a << " " << y.code;
  }
  ASSERT_EQ(b.events.size(), a.events.size() - seen) << "seed " << seed;
  for (size_t i = 0; i < b.events.size(); ++i)
    ASSERT_EQ(std::memcmp(&b.events[i], &a.events[seen + i], sizeof b.events[i]), 0) << "event " << i << " seed " << seed;
  uint32_t halts = 0;
  a.b.for_each([&](const actors::market::instrument& in) { halts += in.halts; });
  EXPECT_GT(halts, 0u) << "seed " << seed;
}

// The market holds at most instruments_max (65,536) instruments: with that many defined,
// one more is refused instruments_full and takes nothing (no id: it is still unknown and
// refused the same way again, not answered as a repeat; no symbol: its symbol stays
// free; no event), while a definition of one already held is still its repeat. Breaking
// it: without the bound the 65,537th is defined (ok, the size grows); a check made after
// the symbol is taken leaves the symbol taken by an instrument that does not exist.
TEST(Market, OneInstrumentPastInstrumentsMaxIsRefusedAndTakesNothing) {
  size_t defined = 0;
  book b;
  b.set_events([&](wire::event&& e) { defined += e.type == wire::event_type::instrument_defined; });
  bool repeated = false;
  const uint64_t most = actors::market::instruments_max;
  for (uint64_t id = 1; id <= most; ++id)
    ASSERT_EQ(b.apply(define(id, ("S" + std::to_string(id)).c_str()), t0, &repeated), result::ok) << id;
  ASSERT_EQ(b.size(), most);
  ASSERT_EQ(defined, most);
  const std::string sym = "S" + std::to_string(most + 1);
  ASSERT_FALSE(b.symbol_taken(sym));
  EXPECT_EQ(b.apply(define(most + 1, sym.c_str()), t0 + 1, &repeated), result::instruments_full);
  EXPECT_FALSE(repeated);
  EXPECT_EQ(b.size(), most);
  EXPECT_EQ(b.find(most + 1), nullptr) << "the refused id is not held";
  EXPECT_FALSE(b.symbol_taken(sym)) << "the refused symbol stays free";
  EXPECT_EQ(defined, most) << "no event for the refused one";
  // The same again: refused the same way, not a repeat of a definition made.
  EXPECT_EQ(b.apply(define(most + 1, sym.c_str()), t0 + 2, &repeated), result::instruments_full);
  EXPECT_FALSE(repeated);
  // Another new one under another symbol: refused too.
  EXPECT_EQ(b.apply(define(most + 2, "OTHER"), t0 + 2, &repeated), result::instruments_full);
  EXPECT_FALSE(b.symbol_taken("OTHER"));
  // One already held, defined again: its repeat, full or not.
  EXPECT_EQ(b.apply(define(1, "S1"), t0 + 3, &repeated), result::ok);
  EXPECT_TRUE(repeated);
  EXPECT_EQ(b.size(), most);
  EXPECT_EQ(defined, most);
}
