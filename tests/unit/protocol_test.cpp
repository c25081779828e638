// The wire protocol's pieces that need no server: framing, the handshake's MAC, roles,
// every body built and parsed back, and every malformed body refused with its code.
#include <gtest/gtest.h>

#include <flatbuffers/flatbuffers.h>

#include <random>

#include "mesob_generated.h"
#include "storage/checksum.hpp"
#include "support/seed.hpp"
#include "wire/codec.hpp"
#include "wire/event_pack.hpp"
#include "wire/json_text.hpp"
#include "wire/protocol.hpp"

using namespace mesob;
using namespace mesob::wire;

namespace {

std::vector<uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

transfer sample_transfer(uint64_t i) {
  transfer t;
  t.id = {i, i * 3};
  t.pending_id = {i + 7, 0};
  t.debit_account_id = i + 1;
  t.credit_account_id = i + 2;
  t.amount = 1000 + i;
  t.user_data = 0xabcdef00 + i;
  t.currency = currency("ETB");
  t.timeout_s = uint32_t(i % 60);
  t.code = uint16_t(i);
  t.flags = uint16_t(i % 16);
  return t;
}

account sample_account(uint64_t i) {
  account a;
  a.id = i;
  a.owner_id = i * 10;
  a.user_data = i * 100;
  a.debits_posted = i + 5;
  a.credits_pending = i + 6;
  a.currency = currency("KES");
  a.kind = account_kind::group_escrow;
  a.flags = account_flags::debits_must_not_exceed_credits;
  a.status = account_status::frozen;
  return a;
}

template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace

// ---- framing -------------------------------------------------------------------------

// Settings' numbers: decimal digits only, up to 2^64 - 1 (command-line parsers take a
// leading 0 as octal, 0x as hex, -1 as 2^64 - 1, and saturate past the top).
TEST(settings, decimal_numbers_only) {
  for (const char* ok : {"0", "1", "7401", "18446744073709551615"}) EXPECT_EQ(wire::decimal_error(ok), "") << ok;
  for (const char* bad : {"", "07401", "0x1cf1", "-1", "+1", "1e3", "1 ", "18446744073709551616",
                          "99999999999999999999", "123456789012345678901"})
    EXPECT_NE(wire::decimal_error(bad), "") << bad;
}

// The tools' JSON: integers exact or as strings, negatives as numbers, any bytes valid.
TEST(json_text, integers_stay_exact_and_strings_stay_valid) {
  const auto integer = [](std::string_view text) {
    std::string out;
    wire::append_json_integer(out, text);
    return out;
  };
  EXPECT_EQ(integer("0"), "0");
  EXPECT_EQ(integer("000120"), "120");
  EXPECT_EQ(integer("9007199254740991"), "9007199254740991");
  EXPECT_EQ(integer("9007199254740992"), "\"9007199254740992\"");
  EXPECT_EQ(integer("18446744073709551615"), "\"18446744073709551615\"");
  // A difference below zero (the console's escrow_account_holds) is a number too.
  EXPECT_EQ(integer("-250"), "-250");
  EXPECT_EQ(integer("-0007"), "-7");
  EXPECT_EQ(integer("-0"), "0");
  EXPECT_EQ(integer("-9007199254740991"), "-9007199254740991");
  EXPECT_EQ(integer("-9007199254740992"), "\"-9007199254740992\"");
  // Not an integer: a string of it.
  for (std::string_view text : {"", "-", "--5", "1-2", "+5", "1.5", "12 ", "x"})
    EXPECT_EQ(integer(text), wire::json_string(text)) << text;
  EXPECT_EQ(wire::json_string("a\"b\\c\n\x01\x7f"), "\"a\\\"b\\\\c\\n\\u0001\\u007f\"");
  EXPECT_EQ(wire::json_string("birr \xe1\x89\xa5"), "\"birr \xe1\x89\xa5\"");  // UTF-8 kept
  EXPECT_EQ(wire::json_string("\xff\xc0\x80\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"");
}

TEST(frame, header_is_sixteen_little_endian_bytes) {
  frame_header h;
  h.body_bytes = 0x01020304;
  h.kind = uint16_t(frame_kind::request);
  h.request_id = 0x1122334455667788ull;
  uint8_t b[frame_header_bytes];
  encode_header(h, b);
  EXPECT_EQ(b[0], 0x04);
  EXPECT_EQ(b[3], 0x01);
  EXPECT_EQ(b[4], protocol_version);
  EXPECT_EQ(b[6], uint8_t(frame_kind::request));
  EXPECT_EQ(b[8], 0x88);
  EXPECT_EQ(b[15], 0x11);
  const frame_header back = decode_header(b);
  EXPECT_EQ(back.body_bytes, h.body_bytes);
  EXPECT_EQ(back.request_id, h.request_id);
}

TEST(frame, reader_reassembles_frames_from_any_split) {
  const uint64_t seed = std::random_device{}();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> stream;
  std::vector<std::vector<uint8_t>> bodies;
  for (int i = 0; i < 200; ++i) {
    std::vector<uint8_t> body(rng() % 300);  // lengths not multiples of 8 on purpose
    for (auto& b : body) b = uint8_t(rng());
    const auto f = encode_frame(frame_kind::ping, uint64_t(i), body);
    stream.insert(stream.end(), f.begin(), f.end());
    bodies.push_back(std::move(body));
  }
  frame_reader r;
  size_t pos = 0, got = 0;
  while (pos < stream.size() || got < bodies.size()) {
    const size_t n = std::min<size_t>(stream.size() - pos, rng() % 700);
    if (rng() % 2) {
      r.append({stream.data() + pos, n});
    } else {
      auto dst = r.prepare(n);
      std::memcpy(dst.data(), stream.data() + pos, n);
      r.commit(n);
    }
    pos += n;
    frame_reader::frame f;
    while (r.next(&f) == frame_reader::status::frame) {
      ASSERT_LT(got, bodies.size());
      EXPECT_EQ(f.header.request_id, got);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(f.body.data()) % 8, 0u) << "bodies are 8-byte aligned";
      ASSERT_EQ(std::vector<uint8_t>(f.body.begin(), f.body.end()), bodies[got]);
      ++got;
    }
    if (pos == stream.size() && got < bodies.size()) FAIL() << "frames lost";
  }
  EXPECT_EQ(r.buffered(), 0u);
}

// A body that is not 8-byte aligned in the buffer is copied alone: a stream of 17-byte
// frames buffered together used to move everything behind each of them (the square of
// the stream's length, on the network thread every session shares).
// What a client may send again after a lost answer: every item must be one a repeat
// leaves as it is; one that is not makes the whole request not so.
TEST(codec, repeat_changes_nothing_by_operation_and_item_kind) {
  const auto safe = [](const std::vector<uint8_t>& body) {
    parsed_request p;
    error_msg err;
    EXPECT_TRUE(parse_request(body, &p, &err)) << err.message;
    return repeat_changes_nothing(p);
  };
  EXPECT_TRUE(safe(create_accounts_body(std::vector<account>(2))));
  EXPECT_TRUE(safe(create_transfers_body(std::vector<transfer>(3))));
  EXPECT_TRUE(safe(lookup_accounts_body(std::vector<uint64_t>{1, 2})));
  EXPECT_TRUE(safe(deposits_body(std::vector<deposit>(1))));
  EXPECT_FALSE(safe(set_account_status_body(std::vector<account_status_change>{{1, account_status::frozen}})));
  std::vector<equb_op> eq(3);
  for (auto& o : eq) o.kind = equb_op_kind::create;
  for (auto k : {equb_op_kind::create, equb_op_kind::start, equb_op_kind::bid, equb_op_kind::dissolve,
                 equb_op_kind::write_off}) {
    eq[1].kind = k;
    EXPECT_TRUE(safe(equb_ops_body(eq))) << unsigned(k);
  }
  for (auto k : {equb_op_kind::leave, equb_op_kind::retry, equb_op_kind::payout_to, equb_op_kind::replace_account}) {
    eq[1].kind = k;
    EXPECT_FALSE(safe(equb_ops_body(eq))) << unsigned(k);
  }
  std::vector<instrument_op> ins(2);
  EXPECT_TRUE(safe(instrument_ops_body(ins)));  // define
  for (auto k : {instrument_op_kind::halt, instrument_op_kind::resume, instrument_op_kind::resequence}) {
    ins[1].kind = k;
    EXPECT_FALSE(safe(instrument_ops_body(ins))) << unsigned(k);
  }
  std::vector<customer_op> cus(2);
  EXPECT_TRUE(safe(customer_ops_body(cus)));  // record
  cus[0].kind = customer_op_kind::resequence;
  EXPECT_FALSE(safe(customer_ops_body(cus)));
  rebalance_request rb{};
  EXPECT_FALSE(safe(rebalance_body(rb)));
}

// peek yields what next will without taking it (its body where it lies, next's aligned);
// a frame not whole is need_more to both.
TEST(frame, peek_shows_the_next_frame_without_taking_it) {
  frame_reader r;
  const uint8_t odd[3] = {1, 2, 3};
  const uint8_t even[8] = {4, 5, 6, 7, 8, 9, 10, 11};
  const auto a = encode_frame(frame_kind::pong, 10, odd), b = encode_frame(frame_kind::pong, 11, even);
  frame_reader::frame f;
  r.append(std::span<const uint8_t>(a).first(a.size() - 1));
  EXPECT_EQ(r.peek(&f), frame_reader::status::need_more);
  r.append(std::span<const uint8_t>(a).last(1));
  r.append(b);
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(r.peek(&f), frame_reader::status::frame);
    EXPECT_EQ(f.header.request_id, 10u);
    ASSERT_EQ(f.body.size(), 3u);
    EXPECT_EQ(f.body[2], 3);
  }
  ASSERT_EQ(r.next(&f), frame_reader::status::frame);
  EXPECT_EQ(f.header.request_id, 10u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.body.data()) % 8, 0u);
  EXPECT_EQ(f.body[2], 3);
  ASSERT_EQ(r.peek(&f), frame_reader::status::frame);  // b's body follows a 3-byte one: misaligned in the buffer
  EXPECT_EQ(f.header.request_id, 11u);
  ASSERT_EQ(f.body.size(), 8u);
  EXPECT_EQ(f.body[7], 11);
  EXPECT_TRUE(r.has_frame());
  const uint64_t moved = r.bytes_moved();
  ASSERT_EQ(r.next(&f), frame_reader::status::frame);
  EXPECT_EQ(f.header.request_id, 11u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.body.data()) % 8, 0u);
  ASSERT_EQ(f.body.size(), 8u);
  EXPECT_EQ(f.body[0], 4);
  EXPECT_EQ(f.body[7], 11);
  EXPECT_EQ(r.bytes_moved(), moved + 8) << "copied once, by next";
  EXPECT_FALSE(r.has_frame());
  EXPECT_EQ(r.peek(&f), frame_reader::status::need_more);
  EXPECT_EQ(r.next(&f), frame_reader::status::need_more);
}

// peek_header shows the header of the frame begun once its 16 bytes are in, whole or
// not; release() gives back the room past what the buffer holds, keeping those bytes
// (a session not read keeps what it holds, no more), and all of it with nothing held.
TEST(frame, peek_header_and_release_keep_the_frame_begun) {
  frame_reader r;
  std::vector<uint8_t> big(600'000, 7);
  const auto first = encode_frame(frame_kind::request, 1, big);
  r.append(first);
  frame_reader::frame f;
  ASSERT_EQ(r.next(&f), frame_reader::status::frame);
  const size_t grown = r.held_bytes();
  ASSERT_GE(grown, big.size());
  const uint8_t body[5] = {1, 2, 3, 4, 5};
  const auto second = encode_frame(frame_kind::request, 2, body);
  frame_header h;
  r.append(std::span<const uint8_t>(second).first(frame_header_bytes - 1));
  EXPECT_FALSE(r.peek_header(&h)) << "15 bytes are not a header";
  r.append(std::span<const uint8_t>(second).subspan(frame_header_bytes - 1, 3));
  ASSERT_TRUE(r.peek_header(&h));
  EXPECT_EQ(h.request_id, 2u);
  EXPECT_EQ(h.body_bytes, 5u);
  EXPECT_FALSE(r.has_frame());
  EXPECT_TRUE(r.release());
  EXPECT_LT(r.held_bytes(), grown - big.size() + 1024) << "the room past the 18 bytes held went";
  EXPECT_FALSE(r.release()) << "nothing more to give";
  r.append(std::span<const uint8_t>(second).subspan(frame_header_bytes + 2));
  ASSERT_EQ(r.next(&f), frame_reader::status::frame);
  EXPECT_EQ(f.header.request_id, 2u);
  ASSERT_EQ(f.body.size(), 5u);
  EXPECT_EQ(f.body[4], 5);
  EXPECT_TRUE(r.release());
  EXPECT_EQ(r.held_bytes(), 0u);
  frame_reader over(4);  // a body over the limit: no header to act on
  over.append(std::span<const uint8_t>(second).first(frame_header_bytes));
  EXPECT_FALSE(over.peek_header(&h));
}

TEST(frame, misaligned_bodies_cost_what_they_hold) {
  std::vector<uint8_t> stream;
  constexpr int frames = 4096;
  for (int i = 0; i < frames; ++i) {
    const uint8_t body[1] = {uint8_t(i)};
    const auto f = encode_frame(frame_kind::pong, uint64_t(i), body);
    stream.insert(stream.end(), f.begin(), f.end());
  }
  frame_reader r;
  r.append(stream);
  frame_reader::frame f;
  int got = 0;
  while (r.next(&f) == frame_reader::status::frame) {
    ASSERT_EQ(f.body.size(), 1u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f.body.data()) % 8, 0u);
    EXPECT_EQ(f.body[0], uint8_t(got));
    EXPECT_EQ(f.header.request_id, uint64_t(got));
    ++got;
  }
  EXPECT_EQ(got, frames);
  EXPECT_LE(r.bytes_moved(), stream.size()) << "copies grow with the bytes, not their square";

  // A large misaligned body's copy is counted while held and released at the next frame.
  frame_reader big(1u << 20);
  const uint8_t one[1] = {7};
  const std::vector<uint8_t> large(200'001, 9), small(3, 1);
  for (const auto& body : {std::span<const uint8_t>(one), std::span<const uint8_t>(large), std::span<const uint8_t>(small)}) {
    const auto bytes = encode_frame(frame_kind::pong, 1, body);
    big.append(bytes);
  }
  ASSERT_EQ(big.next(&f), frame_reader::status::frame);
  ASSERT_EQ(big.next(&f), frame_reader::status::frame);
  ASSERT_EQ(f.body.size(), large.size());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.body.data()) % 8, 0u);
  const size_t with_copy = big.held_bytes();
  EXPECT_GE(with_copy, big.capacity() + large.size());
  ASSERT_EQ(big.next(&f), frame_reader::status::frame);
  EXPECT_EQ(std::vector<uint8_t>(f.body.begin(), f.body.end()), small);
  EXPECT_GE(with_copy - big.held_bytes(), large.size() - (64u << 10)) << "the copy released";

  // The buffer's allocation is counted, not its size: grown a byte past a large
  // buffer, it may take twice the bytes, and holds them.
  frame_reader grown(1u << 21);
  const auto first = encode_frame(frame_kind::pong, 1, std::vector<uint8_t>(1u << 20, 5));
  grown.append(std::span<const uint8_t>(first).first(first.size() - 1));  // all but a byte: no frame yet
  const size_t before = grown.held_bytes();
  EXPECT_GE(before, first.size() - 1);
  const auto second = encode_frame(frame_kind::pong, 2, std::vector<uint8_t>(100, 6));
  std::vector<uint8_t> rest(first.end() - 1, first.end());
  rest.insert(rest.end(), second.begin(), second.end());
  grown.append(rest);
  EXPECT_GE(grown.held_bytes(), grown.capacity());
  EXPECT_GT(grown.held_bytes(), first.size() + second.size()) << "the allocation, grown geometrically";

  // But not past a frame of the reader's limit and its slack: a frame of the largest
  // size, its last byte coming apart, leaves the buffer at most that (it held twice the
  // frame, the server's limit on all buffers counting a session's one frame double).
  for (const size_t chunk : {size_t(32u << 10), size_t(1000), size_t(1u << 20)}) {
    frame_reader at_max(1u << 20);
    const auto whole = encode_frame(frame_kind::pong, 3, std::vector<uint8_t>(1u << 20, 7));
    size_t at = 0;
    for (; at + 1 < whole.size(); at += std::min(chunk, whole.size() - 1 - at))
      at_max.append(std::span<const uint8_t>(whole).subspan(at, std::min(chunk, whole.size() - 1 - at)));
    EXPECT_FALSE(at_max.has_frame());
    at_max.append(std::span<const uint8_t>(whole).subspan(at));
    EXPECT_LE(at_max.held_bytes(), frame_reader::held_max(1u << 20)) << "chunks of " << chunk;
    ASSERT_EQ(at_max.next(&f), frame_reader::status::frame);
    EXPECT_EQ(f.body.size(), size_t(1u << 20));
    EXPECT_EQ(f.body[12345], 7);
    EXPECT_EQ(at_max.next(&f), frame_reader::status::need_more);
    EXPECT_LE(at_max.held_bytes(), frame_reader::held_max(1u << 20)) << "chunks of " << chunk;
  }
  // Frames buffered whole behind one another (a reader not drained) still fit.
  frame_reader undrained(1u << 20);
  const auto one_frame = encode_frame(frame_kind::pong, 4, std::vector<uint8_t>((1u << 20) - 7, 8));
  for (int i = 0; i < 5; ++i) undrained.append(one_frame);
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(undrained.next(&f), frame_reader::status::frame);
    ASSERT_EQ(f.body.size(), one_frame.size() - frame_header_bytes);
    EXPECT_EQ(f.body.back(), 8);
  }
  EXPECT_EQ(undrained.next(&f), frame_reader::status::need_more);
}

TEST(frame, a_body_over_the_limit_loses_the_framing) {
  frame_reader r(1024);
  frame_header h;
  h.body_bytes = 1025;
  h.request_id = 9;
  uint8_t b[frame_header_bytes];
  encode_header(h, b);
  r.append({b, sizeof b});
  frame_reader::frame f;
  EXPECT_EQ(r.next(&f), frame_reader::status::too_large);
  EXPECT_EQ(f.header.request_id, 9u);
  const auto ok = encode_frame(frame_kind::ping, 1, {});
  r.append(ok);
  EXPECT_EQ(r.next(&f), frame_reader::status::too_large) << "nothing after a framing loss";
}

TEST(frame, missing_counts_what_the_begun_frame_lacks) {
  frame_reader r(1000);
  EXPECT_EQ(r.missing(), 0u) << "nothing begun";
  const auto a = encode_frame(frame_kind::request, 1, std::vector<uint8_t>(600, 7));
  const auto b = encode_frame(frame_kind::ping, 2, {});
  r.append({a.data(), frame_header_bytes - 1});
  EXPECT_EQ(r.missing(), 0u) << "no whole header yet";
  r.append({a.data() + frame_header_bytes - 1, 1});
  EXPECT_EQ(r.missing(), 600u);
  // The server receives exactly the missing bytes into prepare()'s span.
  auto dst = r.prepare(r.missing());
  ASSERT_GE(dst.size(), 600u);
  std::memcpy(dst.data(), a.data() + frame_header_bytes, 400);
  r.commit(400);
  EXPECT_EQ(r.missing(), 200u);
  std::memcpy(r.prepare(200).data(), a.data() + frame_header_bytes + 400, 200);
  r.commit(200);
  EXPECT_EQ(r.missing(), 0u) << "whole";
  r.append(b);
  frame_reader::frame f;
  ASSERT_EQ(r.next(&f), frame_reader::status::frame);
  EXPECT_EQ(f.body.size(), 600u);
  EXPECT_EQ(f.body[599], 7);
  EXPECT_EQ(r.missing(), 0u) << "the next frame is whole";
  ASSERT_EQ(r.next(&f), frame_reader::status::frame);
  EXPECT_EQ(f.header.request_id, 2u);
  frame_header h;
  h.body_bytes = 1001;
  uint8_t over[frame_header_bytes];
  encode_header(h, over);
  r.append({over, sizeof over});
  EXPECT_EQ(r.missing(), 0u) << "a header over the limit asks for nothing";
  EXPECT_EQ(r.next(&f), frame_reader::status::too_large);
}

TEST(frame, a_truncated_frame_waits_for_the_rest) {
  frame_reader r;
  const auto f = encode_frame(frame_kind::request, 5, std::vector<uint8_t>(100, 1));
  EXPECT_FALSE(r.has_frame());
  r.append({f.data(), 50});
  frame_reader::frame out;
  EXPECT_FALSE(r.has_frame());
  EXPECT_EQ(r.next(&out), frame_reader::status::need_more);
  r.append({f.data() + 50, f.size() - 50});
  EXPECT_TRUE(r.has_frame());
  EXPECT_EQ(r.next(&out), frame_reader::status::frame);
  EXPECT_EQ(out.body.size(), 100u);
  EXPECT_FALSE(r.has_frame());
  frame_reader small(64);  // a header over the limit is something next() yields
  small.append({f.data(), frame_header_bytes});
  EXPECT_TRUE(small.has_frame());
  EXPECT_EQ(small.next(&out), frame_reader::status::too_large);
  EXPECT_FALSE(small.has_frame());
}

// ---- handshake -----------------------------------------------------------------------

TEST(handshake, hmac_sha256_matches_rfc_4231) {
  const auto mac = auth_mac(bytes_of("Jefe"), bytes_of("what do ya want for nothing?"));
  EXPECT_EQ(to_hex(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  auto other = mac;
  other[31] ^= 1;
  EXPECT_TRUE(mac_equal(mac, mac));
  EXPECT_FALSE(mac_equal(mac, other));
  EXPECT_FALSE(mac_equal(mac, std::span<const uint8_t>(mac).first(31)));
}

TEST(handshake, nonces_are_random) {
  const auto a = random_bytes(nonce_bytes), b = random_bytes(nonce_bytes);
  EXPECT_EQ(a.size(), nonce_bytes);
  EXPECT_NE(a, b);
}

TEST(handshake, hex_round_trip_and_refusals) {
  std::vector<uint8_t> out;
  ASSERT_TRUE(from_hex("00ff10Ab", &out));
  EXPECT_EQ(to_hex(out), "00ff10ab");
  EXPECT_FALSE(from_hex("abc", &out));
  EXPECT_FALSE(from_hex("zz", &out));
}

TEST(handshake, roles_by_name) {
  uint32_t bits = 0;
  ASSERT_TRUE(parse_roles("payments, admin", &bits));
  EXPECT_EQ(bits, roles::payments | roles::admin);
  EXPECT_EQ(roles_text(bits), "payments,admin");
  ASSERT_TRUE(parse_roles("broker,market_data,kyc,events_reader", &bits));
  EXPECT_EQ(bits, roles::broker | roles::market_data | roles::kyc | roles::events_reader);
  EXPECT_FALSE(parse_roles("payments,root", &bits));
  EXPECT_FALSE(parse_roles("payments,", &bits)) << "a trailing comma names nothing";
  EXPECT_FALSE(parse_roles("payments,,kyc", &bits));
}

TEST(handshake, session_bodies_round_trip) {
  hello_msg h{protocol_version, random_bytes(nonce_bytes), "mesobd test"};
  hello_msg h2;
  std::string why;
  ASSERT_TRUE(parse_hello(hello_body(h), &h2, &why)) << why;
  EXPECT_EQ(h2.nonce, h.nonce);
  EXPECT_EQ(h2.server, "mesobd test");

  auth_msg a{"gw-mpesa", auth_mac(bytes_of("secret-secret-16"), h.nonce)};
  auth_msg a2;
  ASSERT_TRUE(parse_auth(auth_body(a), &a2, &why)) << why;
  EXPECT_EQ(a2.gateway_id, "gw-mpesa");
  EXPECT_EQ(a2.mac, a.mac);

  welcome_msg w{"gw-mpesa", roles::payments, 42, 1u << 20, 1024, 7, 12};
  welcome_msg w2;
  ASSERT_TRUE(parse_welcome(welcome_body(w), &w2, &why)) << why;
  EXPECT_EQ(w2.session_id, 42u);
  EXPECT_EQ(w2.roles, roles::payments);
  EXPECT_EQ(w2.gateway_number, 7u);
  EXPECT_EQ(w2.shards, 12u);

  error_msg e{protocol_error::role_denied, "no"};
  error_msg e2;
  ASSERT_TRUE(parse_error(error_body(e), &e2, &why)) << why;
  EXPECT_EQ(e2.code, protocol_error::role_denied);
  EXPECT_EQ(e2.message, "no");
}

TEST(handshake, malformed_session_bodies_are_refused) {
  std::string why;
  auth_msg a;
  EXPECT_FALSE(parse_auth(auth_body({"gw", std::vector<uint8_t>(31, 1)}), &a, &why));
  EXPECT_NE(why.find("mac must be 32 bytes"), std::string::npos) << why;
  EXPECT_FALSE(parse_auth(auth_body({"", std::vector<uint8_t>(32, 1)}), &a, &why));
  EXPECT_NE(why.find("gateway id"), std::string::npos) << why;
  EXPECT_FALSE(parse_auth(auth_body({std::string(65, 'g'), std::vector<uint8_t>(32, 1)}), &a, &why));
  hello_msg h;
  EXPECT_FALSE(parse_hello(hello_body({1, std::vector<uint8_t>(8, 1), "x"}), &h, &why));
  // A body of another kind (a Hello sent as Auth) fails verification or its limits.
  EXPECT_FALSE(parse_auth(hello_body({1, random_bytes(nonce_bytes), "x"}), &a, &why));
}

// ---- requests ------------------------------------------------------------------------

TEST(requests, every_operation_round_trips_byte_for_byte) {
  std::vector<transfer> ts;
  std::vector<account> as;
  for (uint64_t i = 1; i <= 100; ++i) {
    ts.push_back(sample_transfer(i));
    as.push_back(sample_account(i));
  }
  parsed_request p;
  error_msg err;
  {
    const auto body = create_transfers_body(ts);
    ASSERT_TRUE(parse_request(body, &p, &err)) << err.message;
    EXPECT_EQ(p.op, operation::create_transfers);
    std::vector<transfer> back;
    p.copy_to(back);
    EXPECT_TRUE(same_bytes(back, ts));
  }
  {
    const auto ab = create_accounts_body(as);
    ASSERT_TRUE(parse_request(ab, &p, &err)) << err.message;
    std::vector<account> back;
    p.copy_to(back);
    EXPECT_TRUE(same_bytes(back, as));
    // Field by field through the schema's own accessors: the layouts agree.
    const auto body = create_accounts_body(as);
    const auto* r = flatbuffers::GetRoot<fb::Request>(body.data());
    const auto* a = r->operation_as_CreateAccounts()->accounts()->Get(3);
    EXPECT_EQ(a->id(), as[3].id);
    EXPECT_EQ(a->owner_id(), as[3].owner_id);
    EXPECT_EQ(a->credits_pending(), as[3].credits_pending);
    EXPECT_EQ(a->currency(), as[3].currency);
    EXPECT_EQ(a->kind(), uint16_t(as[3].kind));
    EXPECT_EQ(a->status(), uint16_t(as[3].status));
    const auto tb = create_transfers_body(ts);
    const auto* t = flatbuffers::GetRoot<fb::Request>(tb.data())->operation_as_CreateTransfers()->transfers()->Get(5);
    EXPECT_EQ(t->id().hi(), ts[5].id.hi);
    EXPECT_EQ(t->pending_id().lo(), ts[5].pending_id.lo);
    EXPECT_EQ(t->amount(), ts[5].amount);
    EXPECT_EQ(t->timeout_s(), ts[5].timeout_s);
    EXPECT_EQ(t->flags(), ts[5].flags);
  }
  {
    std::vector<account_status_change> cs = {{7, account_status::frozen, 0, 0}, {8, account_status::closed, 0, 0}};
    const auto body = set_account_status_body(cs);
    ASSERT_TRUE(parse_request(body, &p, &err)) << err.message;
    std::vector<account_status_change> back;
    p.copy_to(back);
    EXPECT_TRUE(same_bytes(back, cs));
  }
  {
    std::vector<uint64_t> ids = {1, 2, 3};
    const auto body = lookup_accounts_body(ids);
    ASSERT_TRUE(parse_request(body, &p, &err)) << err.message;
    EXPECT_EQ(p.op, operation::lookup_accounts);
    std::vector<uint64_t> back;
    p.copy_to(back);
    EXPECT_EQ(back, ids);
  }
  {
    std::vector<id128> ids = {{1, 2}, {3, 4}};
    const auto body = lookup_transfers_body(ids);
    ASSERT_TRUE(parse_request(body, &p, &err)) << err.message;
    std::vector<id128> back;
    p.copy_to(back);
    EXPECT_TRUE(same_bytes(back, ids));
  }
  {
    std::vector<history_query_item> qs = {{5, 0, 10, 0}, {6, 99, 1024, 0}};
    const auto body = lookup_account_transfers_body(qs);
    ASSERT_TRUE(parse_request(body, &p, &err)) << err.message;
    std::vector<history_query_item> back;
    p.copy_to(back);
    EXPECT_TRUE(same_bytes(back, qs));
  }
  {
    std::vector<balance_query_item> qs = {{5, 123456}};
    const auto body = lookup_balances_body(qs);
    ASSERT_TRUE(parse_request(body, &p, &err)) << err.message;
    EXPECT_EQ(p.op, operation::lookup_balances);
    EXPECT_EQ(p.count, 1u);
  }
}

// Group operations and look-ups: byte for byte, and field by field through the schema's
// accessors (the EqubOp struct has the engine's layout, seed array included).
TEST(requests, equb_operations_round_trip) {
  parsed_request p;
  error_msg err;
  equb_op c;
  c.kind = equb_op_kind::create;
  c.group_id = 700;
  c.fee_account_id = 90;
  c.guarantor_account_id = 91;
  c.organizer_account_id = 92;
  c.contribution = 1000;
  c.period_ns = 7;
  c.grace_ns = 8;
  c.late_penalty = 9;
  c.commission_cap = 10;
  c.currency = currency("ETB");
  c.fee_bp = 11;
  c.max_discount_bp = 12;
  c.commission_bp = 13;
  c.rotation = 3;
  c.default_policy = 2;
  c.seat = 14;
  c.round = 15;
  c.seed[31] = 0xAB;
  const std::vector<equb_op> ops{c, equb_op{}};
  const auto body = equb_ops_body(ops);
  ASSERT_TRUE(parse_request(body, &p, &err)) << err.message;
  EXPECT_EQ(p.op, operation::equb_ops);
  std::vector<equb_op> back;
  p.copy_to(back);
  EXPECT_TRUE(same_bytes(back, ops));
  const auto* o = flatbuffers::GetRoot<fb::Request>(body.data())->operation_as_EqubOps()->ops()->Get(0);
  EXPECT_EQ(o->group_id(), 700u);
  EXPECT_EQ(o->organizer_account_id(), 92u);
  EXPECT_EQ(o->commission_cap(), 10u);
  EXPECT_EQ(o->commission_bp(), 13u);
  EXPECT_EQ(o->rotation(), 3);
  EXPECT_EQ(o->default_policy(), 2);
  EXPECT_EQ(o->kind(), uint16_t(equb_op_kind::create));
  EXPECT_EQ(o->round(), 15u);
  EXPECT_EQ(o->seed()->Get(31), 0xAB);
  const std::vector<equb_op> too_many(equb_ops_max + 1, c);
  EXPECT_FALSE(parse_request(equb_ops_body(too_many), &p, &err));
  EXPECT_EQ(err.code, protocol_error::batch_too_large);

  const std::vector<uint64_t> ids{700, 701};
  ASSERT_TRUE(parse_request(lookup_groups_body(ids), &p, &err)) << err.message;
  EXPECT_EQ(p.op, operation::lookup_groups);
  const std::vector<uint64_t> many(lookup_groups_max + 1, 700);
  EXPECT_FALSE(parse_request(lookup_groups_body(many), &p, &err));
  EXPECT_EQ(err.code, protocol_error::batch_too_large);

  // Deposits: the schema's struct is wire::deposit byte for byte.
  deposit dep{};
  dep.reference = 0x1122334455667788ull;
  dep.wallet = 9;
  dep.amount = 1234;
  dep.user_data = 77;
  dep.currency = currency("ETB");
  dep.code = 3;
  const std::vector<deposit> deps{dep, deposit{}};
  const auto dep_body = deposits_body(deps);
  ASSERT_TRUE(parse_request(dep_body, &p, &err)) << err.message;
  EXPECT_EQ(p.op, operation::deposits);
  EXPECT_TRUE(operation_writes(p.op));
  std::vector<deposit> dep_back;
  p.copy_to(dep_back);
  EXPECT_TRUE(same_bytes(dep_back, deps));
  const auto* d0 = flatbuffers::GetRoot<fb::Request>(dep_body.data())->operation_as_Deposits()->deposits()->Get(0);
  EXPECT_EQ(d0->reference(), 0x1122334455667788ull);
  EXPECT_EQ(d0->user_data(), 77u);
  EXPECT_EQ(d0->code(), 3u);
  EXPECT_FALSE(parse_request(deposits_body(std::vector<deposit>(batch_operations_max + 1)), &p, &err));
  EXPECT_EQ(err.code, protocol_error::batch_too_large);

  group_item g;
  g.config = c;
  g.phase = 2;
  g.round = 3;
  g.escrow_expected = 44;
  g.commitment.assign(32, 7);
  g.seats.push_back({5, 1000, 3, 0, 200, 2, 1, 1, {}});
  g.history.push_back({1, 0, {9}});
  g.owed.push_back({700, 5, 1980, 6, uint32_t(result::credit_account_frozen), 5, 1, 0, 0});
  g.destinations = {0};
  g.shift_ns = 1234;
  g.round_deadline = 5678;
  g.round_close = 9012;
  g.held = 55;
  g.debts_to_group = {150};
  group_item missing;
  missing.code = result::group_not_found;
  reply_msg r;
  std::string why;
  ASSERT_TRUE(parse_response(groups_body(std::vector{g, missing}), &r, &why)) << why;
  ASSERT_EQ(r.kind, reply_kind::groups);
  ASSERT_EQ(r.groups.size(), 2u);
  const auto& b = r.groups[0];
  EXPECT_TRUE(same_bytes(std::vector{b.config}, std::vector{c}));
  EXPECT_EQ(b.round, 3u);
  EXPECT_EQ(b.escrow_expected, 44u);
  EXPECT_EQ(b.commitment, g.commitment);
  EXPECT_TRUE(same_bytes(b.seats, g.seats));
  EXPECT_TRUE(same_bytes(b.history, g.history));
  EXPECT_TRUE(same_bytes(b.owed, g.owed));
  EXPECT_EQ(b.destinations, g.destinations);
  EXPECT_EQ(b.shift_ns, 1234u);
  EXPECT_EQ(b.round_deadline, 5678u);
  EXPECT_EQ(b.round_close, 9012u);
  EXPECT_EQ(b.held, 55u);
  EXPECT_EQ(b.debts_to_group, g.debts_to_group);
  EXPECT_EQ(r.groups[1].code, result::group_not_found);
  EXPECT_EQ(r.groups[1].held, 0u);
  EXPECT_TRUE(r.groups[1].debts_to_group.empty());
}

TEST(requests, batch_limits) {
  parsed_request p;
  error_msg err;
  EXPECT_FALSE(parse_request(create_transfers_body({}), &p, &err));
  EXPECT_EQ(err.code, protocol_error::batch_empty);
  std::vector<transfer> ts(batch_operations_max, sample_transfer(1));
  EXPECT_TRUE(parse_request(create_transfers_body(ts), &p, &err)) << err.message;
  ts.push_back(sample_transfer(2));
  EXPECT_FALSE(parse_request(create_transfers_body(ts), &p, &err));
  EXPECT_EQ(err.code, protocol_error::batch_too_large);
  EXPECT_NE(err.message.find("8193 operations"), std::string::npos) << err.message;
  // History pages: their limits summed, pages over a page's own limit not counted (each
  // gets limit_invalid from the engine).
  std::vector<history_query_item> pages(history_request_records_max / history_page_records_max,
                                        {7, 0, history_page_records_max, 0});
  pages.push_back({7, 0, history_page_records_max + 1, 0});
  EXPECT_TRUE(parse_request(lookup_account_transfers_body(pages), &p, &err)) << err.message;
  // What they ask for, as the request's limit and the server's bound on the reply count it
  // (a page of 2^32 - 1 records, refused, is none: it reserved the session's whole queue).
  pages.push_back({7, 0, UINT32_MAX, 0});
  EXPECT_EQ(history_records_asked(reinterpret_cast<const uint8_t*>(pages.data()), uint32_t(pages.size())),
            history_request_records_max);
  pages.pop_back();
  pages.back().limit = 1;
  EXPECT_FALSE(parse_request(lookup_account_transfers_body(pages), &p, &err));
  EXPECT_EQ(err.code, protocol_error::batch_too_large);
  EXPECT_NE(err.message.find("16385 records in all (at most 16384"), std::string::npos) << err.message;
}

TEST(requests, unknown_or_missing_operation) {
  parsed_request p;
  error_msg err;
  for (uint8_t type : {uint8_t(0), uint8_t(uint8_t(fb::Operation::MAX) + 1), uint8_t(200)}) {
    flatbuffers::FlatBufferBuilder fbb;
    const auto ids = fbb.CreateVector(std::vector<uint64_t>{1});
    const auto table = fb::CreateLookupAccounts(fbb, ids);
    fbb.Finish(fb::CreateRequest(fbb, fb::Operation(type), table.Union()), "MSB1");
    EXPECT_FALSE(parse_request({fbb.GetBufferPointer(), fbb.GetSize()}, &p, &err)) << int(type);
    EXPECT_EQ(err.code, protocol_error::operation_unknown) << int(type);
  }
}

TEST(requests, bodies_that_are_not_requests) {
  parsed_request p;
  error_msg err;
  EXPECT_FALSE(parse_request({}, &p, &err));
  EXPECT_EQ(err.code, protocol_error::body_invalid);
  const auto garbage = random_bytes(64);
  EXPECT_FALSE(parse_request(garbage, &p, &err));
  EXPECT_EQ(err.code, protocol_error::body_invalid);
  // The right identifier, a body cut short.
  auto body = create_transfers_body(std::vector<transfer>(10, sample_transfer(1)));
  body.resize(body.size() / 2);
  EXPECT_FALSE(parse_request(body, &p, &err));
  EXPECT_EQ(err.code, protocol_error::body_invalid);
  // Another identifier.
  body = lookup_accounts_body(std::vector<uint64_t>{1});
  std::memcpy(body.data() + 4, "XXXX", 4);
  EXPECT_FALSE(parse_request(body, &p, &err));
  EXPECT_EQ(err.code, protocol_error::body_invalid);
}

TEST(requests, random_corruption_never_passes_a_bad_body) {
  const uint64_t seed = std::random_device{}();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const auto good = create_transfers_body(std::vector<transfer>(16, sample_transfer(3)));
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    auto body = good;
    for (int k = 0, n = 1 + int(rng() % 4); k < n; ++k) body[rng() % body.size()] ^= uint8_t(1 + rng() % 255);
    if (rng() % 4 == 0) body.resize(rng() % body.size());
    parsed_request p;
    error_msg err;
    if (parse_request(body, &p, &err)) {
      ++accepted;  // flipped bits inside the transfers themselves: still well formed
      ASSERT_LE(p.count, batch_operations_max);
      ASSERT_EQ(p.items.size(), p.count * operation_item_bytes(p.op));
      ASSERT_GE(p.items.data(), body.data());
      ASSERT_LE(p.items.data() + p.items.size(), body.data() + body.size());
    } else {
      ASSERT_NE(err.code, protocol_error{});
      ASSERT_FALSE(err.message.empty());
    }
  }
  EXPECT_GT(accepted, 0);
}

// ---- events, packed ------------------------------------------------------------------

namespace {
// Events whose every field follows one of several patterns (fixed, counting up, small,
// anything at all, stepping back, the field's whole width, fixed for stretches that
// blocks of 128 straddle or not), each with its CRC-32C.
std::vector<event> random_events(std::mt19937_64& rng, size_t n) {
  std::vector<event> v(n);
  // A pattern per field for this run: 0 fixed, 1 counting, 2 small, 3 any, 4 up and down,
  // 5 fixed for 200 events at a time.
  std::array<int, 16> pattern;
  for (int& p : pattern) p = int(rng() % 6);
  auto value = [&](int field, size_t i, uint64_t width_mask) -> uint64_t {
    switch (pattern[size_t(field)]) {
      case 0: return (0x1234567890abcdefull * uint64_t(field + 1)) & width_mask;
      case 1: return (1'000'000 + i * (1 + uint64_t(field))) & width_mask;
      case 2: return (rng() % 300) & width_mask;
      case 3: return rng() & width_mask;
      case 5: return (0x9e3779b97f4a7c15ull * (i / 200 + 1)) & width_mask;
      default: return (i % 2 ? ~uint64_t(0) - rng() % 1000 : rng() % 1000) & width_mask;
    }
  };
  uint64_t offset = rng() % 1000 + 1;
  for (size_t i = 0; i < n; ++i) {
    event& e = v[i];
    e.offset = offset;
    offset += 1 + (rng() % 3 == 0 ? rng() % 50 : 0);  // filters skip some
    if (pattern[0] == 3) e.offset = rng();            // or any order at all: packing does not care
    e.lsn = value(1, i, ~0ull);
    e.timestamp = value(2, i, ~0ull);
    e.type = event_type(value(3, i, 0xffff));
    e.flags = uint16_t(value(4, i, 0xffff));
    e.currency = uint32_t(value(5, i, 0xffffffff));
    e.id = {value(6, i, ~0ull), value(7, i, ~0ull)};
    e.ref = {value(8, i, ~0ull), value(9, i, ~0ull)};
    e.account_a = value(10, i, ~0ull);
    e.account_b = value(11, i, ~0ull);
    e.amount = value(12, i, ~0ull);
    e.code = uint16_t(value(13, i, 0xffff));
    e.gateway = uint16_t(value(14, i, 0xffff));
    e.crc = storage::crc32c(&e, 92);
  }
  return v;
}

// Unpacks through the block visitor, checking each block's size.
bool unpack_by_blocks(std::span<const uint8_t> in, uint32_t count, std::vector<event>& out, std::string* why) {
  out.clear();
  return unpack_events(in, count, [&](std::span<const event> block) {
    EXPECT_GE(block.size(), 1u);
    EXPECT_LE(block.size(), packed_block_events);
    out.insert(out.end(), block.begin(), block.end());
  }, why);
}
}  // namespace

// Event types past 31 travel in types_high; with it set, bit 0 of `types` is set too, so
// that a server from before types_high (reading `types` alone) refuses the filter
// instead of taking it for every type. Parsed, bit 0 is dropped again.
TEST(events_subscribe, types_past_31_round_trip_and_mark_the_low_word) {
  for (const uint64_t types : {uint64_t(0), uint64_t(1) << 3, (uint64_t(1) << 32) | (uint64_t(1) << 3), uint64_t(1) << 33}) {
    wire::subscribe_msg m;
    m.types = types;
    const auto body = wire::subscribe_body(m);
    wire::subscribe_msg back;
    std::string why;
    ASSERT_TRUE(wire::parse_subscribe(body, &back, &why)) << why;
    EXPECT_EQ(back.types, types);
    const auto* raw = flatbuffers::GetRoot<fb::Subscribe>(body.data());
    EXPECT_EQ(raw->types_high(), uint32_t(types >> 32));
    EXPECT_EQ(raw->types(), uint32_t(types) | (types >> 32 != 0 ? 1u : 0u)) << types;
  }
}

TEST(events_packed, any_events_unpack_to_the_same_bytes) {
  std::mt19937_64 rng(test::test_seed("events_packed"));
  for (const size_t n : {size_t(0), size_t(1), size_t(2), size_t(127), size_t(128), size_t(129), size_t(1000),
                         size_t(events_per_frame_max)}) {
    for (int round = 0; round < 20; ++round) {
      const auto events = random_events(rng, n);
      std::vector<uint8_t> packed;
      pack_events(events, packed);
      ASSERT_LE(packed.size(), n * packed_event_bytes_max);
      std::vector<event> out(3);  // replaced, not appended to
      std::string why;
      ASSERT_TRUE(unpack_events(packed, uint32_t(n), out, &why)) << n << " events: " << why;
      ASSERT_TRUE(same_bytes(events, out)) << n << " events, round " << round;
      ASSERT_TRUE(unpack_by_blocks(packed, uint32_t(n), out, &why)) << why;
      ASSERT_TRUE(same_bytes(events, out));
      for (const event& e : out) ASSERT_EQ(e.crc, storage::crc32c(&e, 92));
      // Through a whole Events frame, packed and not, and both parsers.
      for (const bool as_packed : {true, false}) {
        const auto frame = events_frame(events, 77, 99, as_packed);
        const frame_header h = decode_header(frame.data());
        ASSERT_EQ(h.kind, uint16_t(frame_kind::events));
        ASSERT_EQ(frame.size(), frame_header_bytes + h.body_bytes);
        ASSERT_LE(frame.size(), events_frame_overhead_max + (as_packed ? packed.size() : n * sizeof(event)));
        const std::span<const uint8_t> body(frame.data() + frame_header_bytes, h.body_bytes);
        events_msg m;
        ASSERT_TRUE(parse_events(body, &m, &why)) << why;
        EXPECT_EQ(m.next, 77u);
        EXPECT_EQ(m.end, 99u);
        ASSERT_TRUE(same_bytes(events, m.events));
        std::vector<event> seen;
        events_msg m2;
        ASSERT_TRUE(parse_events(body, &m2, [&](std::span<const event> b) { seen.insert(seen.end(), b.begin(), b.end()); },
                                 &why))
            << why;
        EXPECT_EQ(m2.next, 77u);
        ASSERT_TRUE(same_bytes(events, seen));
      }
    }
  }
}

TEST(events_packed, a_stream_of_transfers_packs_small) {
  // One log record's transfers, ids counted up, accounts among 100,000: as the engine's
  // busiest stream looks.
  std::mt19937_64 rng(5);
  std::vector<event> events(4096);
  for (size_t i = 0; i < events.size(); ++i) {
    event& e = events[i];
    e.offset = 500 + i;
    e.lsn = 9;
    e.timestamp = 1'790'000'000'123'456'789;
    e.type = event_type::transfer_posted;
    e.currency = currency("ETB");
    e.id = {7'000'000 + i, 42};
    e.account_a = rng() % 100'000 + 1;
    e.account_b = rng() % 100'000 + 1;
    e.amount = rng() % 1000 + 1;
    e.crc = storage::crc32c(&e, 92);
  }
  std::vector<uint8_t> packed;
  pack_events(events, packed);
  EXPECT_LT(packed.size(), events.size() * 14);  // against 96 bytes each unpacked
  std::vector<event> out;
  std::string why;
  ASSERT_TRUE(unpack_events(packed, uint32_t(events.size()), out, &why)) << why;
  EXPECT_TRUE(same_bytes(events, out));
}

TEST(events_packed, malformed_bytes_are_refused_and_hand_out_nothing) {
  std::mt19937_64 rng(test::test_seed("events_packed corruption"));
  const auto events = random_events(rng, 300);
  std::vector<uint8_t> good;
  pack_events(events, good);
  std::string why;
  std::vector<event> out;
  size_t handed = 0;
  const event_visitor count_blocks = [&](std::span<const event> b) { handed += b.size(); };
  // Every shorter cut, a byte more, and a wrong count.
  for (size_t cut = 0; cut < good.size(); ++cut) {
    const std::span<const uint8_t> part(good.data(), cut);
    ASSERT_FALSE(unpack_events(part, 300, out, &why)) << "cut at " << cut;
    ASSERT_FALSE(why.empty());
    ASSERT_FALSE(unpack_events(part, 300, count_blocks, &why));
    ASSERT_EQ(handed, 0u) << "cut at " << cut;
  }
  auto longer = good;
  longer.push_back(0);
  EXPECT_FALSE(unpack_events(longer, 300, out, &why));
  EXPECT_NE(why.find("bytes after"), std::string::npos) << why;
  EXPECT_FALSE(unpack_events(good, 299, out, &why));
  EXPECT_FALSE(unpack_events(good, 301, out, &why));
  EXPECT_FALSE(unpack_events({}, events_per_frame_max + 1, out, &why));
  EXPECT_NE(why.find("at most"), std::string::npos) << why;
  // A block claiming no events, and an unknown descriptor.
  auto bad = good;
  bad[0] = 0;
  EXPECT_FALSE(unpack_events(bad, 300, out, &why));
  EXPECT_NE(why.find("holds 0 events"), std::string::npos) << why;
  bad = good;
  bad[1] = 0x20;  // the first column's descriptor: bit 5 is not defined
  EXPECT_FALSE(unpack_events(bad, 300, out, &why));
  EXPECT_NE(why.find("offset: unknown column descriptor 32"), std::string::npos) << why;
  bad[1] = 9;  // a width over 8 bytes
  EXPECT_FALSE(unpack_events(bad, 300, out, &why));
  // Random damage: refused with a reason and nothing handed out, or (damage inside the
  // numbers) 300 events.
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    auto body = good;
    for (int k = 0, n = 1 + int(rng() % 4); k < n; ++k) body[rng() % body.size()] ^= uint8_t(1 + rng() % 255);
    if (rng() % 4 == 0) body.resize(rng() % body.size());
    handed = 0;
    if (unpack_events(body, 300, count_blocks, &why)) {
      ++accepted;
      ASSERT_EQ(handed, 300u);
    } else {
      ASSERT_EQ(handed, 0u);
      ASSERT_FALSE(why.empty());
    }
  }
  EXPECT_GT(accepted, 0);
}

// Every event's CRC is checked as a frame is parsed: one damaged anywhere between the
// event log and the client (a field changed, its CRC not) refuses the frame, naming it.
// Before, a client took whatever the frame held.
TEST(events_packed, a_damaged_event_refuses_its_frame) {
  std::mt19937_64 rng(test::test_seed("events_crc"));
  // 1,002 events: four at a time, then two alone.
  const auto events = random_events(rng, 1002);
  for (const event& e : events) ASSERT_EQ(event_crc(e), storage::crc32c(&e, 92)) << "the event log's CRC";
  EXPECT_EQ(first_bad_crc(events), events.size());
  {
    auto two = events;  // two in one group of four: the first is named
    two[502].amount ^= 1;
    two[501].code ^= 1;
    EXPECT_EQ(first_bad_crc(two), 501u);
  }
  for (const size_t k : {size_t(0), size_t(1), size_t(2), size_t(3), size_t(4), size_t(127), size_t(128), size_t(502),
                         size_t(999), size_t(1000), size_t(1001)}) {
    for (const bool crc_itself : {false, true}) {
      auto bad = events;
      if (crc_itself) bad[k].crc ^= 0x100;
      else bad[k].amount ^= 1;
      ASSERT_EQ(first_bad_crc(bad), k);
      for (const bool as_packed : {true, false}) {
        SCOPED_TRACE("event " + std::to_string(k) + (crc_itself ? ", its CRC" : ", its amount") +
                     (as_packed ? ", packed" : ", unpacked"));
        const auto frame = events_frame(bad, 77, 99, as_packed);
        const std::span<const uint8_t> body(frame.data() + frame_header_bytes, decode_header(frame.data()).body_bytes);
        events_msg m;
        std::string why;
        EXPECT_FALSE(parse_events(body, &m, &why));
        EXPECT_NE(why.find("event " + std::to_string(bad[k].offset) + " fails its CRC"), std::string::npos) << why;
        EXPECT_TRUE(m.events.empty());
        size_t seen = 0;
        why.clear();
        EXPECT_FALSE(parse_events(body, &m, [&](std::span<const event> b) { seen += b.size(); }, &why));
        EXPECT_NE(why.find("fails its CRC"), std::string::npos) << why;
        EXPECT_EQ(seen, k / packed_block_events * packed_block_events) << "the blocks before the damaged one";
      }
    }
  }
}

TEST(events_packed, a_frame_with_both_forms_is_refused) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<event> one(1);
  const auto v = fbb.CreateVectorOfStructs(reinterpret_cast<const fb::Event*>(one.data()), 1);
  std::vector<uint8_t> packed;
  pack_events(one, packed);
  const auto p = fbb.CreateVector(packed);
  fbb.Finish(fb::CreateEvents(fbb, v, 2, 2, p, 1), "MSB1");
  events_msg m;
  std::string why;
  EXPECT_FALSE(parse_events({fbb.GetBufferPointer(), fbb.GetSize()}, &m, &why));
  EXPECT_NE(why.find("both packed and unpacked"), std::string::npos) << why;
  flatbuffers::FlatBufferBuilder b2;
  const auto v2 = b2.CreateVectorOfStructs(reinterpret_cast<const fb::Event*>(one.data()), 1);
  b2.Finish(fb::CreateEvents(b2, v2, 2, 2, 0, 1), "MSB1");
  EXPECT_FALSE(parse_events({b2.GetBufferPointer(), b2.GetSize()}, &m, &why));
  EXPECT_NE(why.find("without packed events"), std::string::npos) << why;
}

TEST(events_packed, blocks_must_be_full_but_the_last) {
  // Blocks of one event each, every field a shared zero: 33 bytes a block. Past the
  // first, the count says a full block is due; 65 of them (more than a frame of 8,192
  // can hold) are refused the same way, before anything is planned past the first.
  std::vector<uint8_t> tiny;
  for (int b = 0; b < 65; ++b) {
    tiny.push_back(1);
    for (int f = 0; f < 16; ++f) tiny.insert(tiny.end(), {0, 0});
  }
  std::vector<event> out;
  std::string why;
  EXPECT_FALSE(unpack_events(tiny, 65, out, &why));
  EXPECT_NE(why.find("holds 1 events where 65 are due"), std::string::npos) << why;
  EXPECT_TRUE(unpack_events(std::span(tiny).first(33), 1, out, &why)) << why;
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].offset, 0u);
  // A short block before the last: 127 then 3.
  std::mt19937_64 rng(9);
  const auto events = random_events(rng, 130);
  std::vector<uint8_t> a, b;
  pack_events(std::span(events).first(127), a);
  pack_events(std::span(events).subspan(127), b);
  a.insert(a.end(), b.begin(), b.end());
  EXPECT_FALSE(unpack_events(a, 130, out, &why));
  EXPECT_NE(why.find("holds 127 events where 128 are due"), std::string::npos) << why;
  // The most one event takes packed, averaged over its block, is what the header says.
  for (const size_t n : {size_t(1), size_t(2), size_t(3), size_t(128), size_t(129)}) {
    std::vector<event> worst(n);
    for (size_t i = 0; i < n; ++i) {
      std::memset(static_cast<void*>(&worst[i]), i % 2 ? 0xff : 0x00, sizeof(event));  // every column at its widest
      if (i % 2) worst[i].offset = 0x8000000000000000ull;
    }
    std::vector<uint8_t> p;
    pack_events(worst, p);
    EXPECT_LE(p.size(), n * packed_event_bytes_max) << n;
    for (const bool as_packed : {true, false})
      EXPECT_LE(events_frame(worst, ~0ull, ~0ull, as_packed).size(), n * events_frame_event_bytes_max(as_packed))
          << n << (as_packed ? " packed" : " as they are");
    EXPECT_LE(p.size(), (n + packed_block_events - 1) / packed_block_events * packed_block_overhead_max + n * sizeof(event))
        << n;
  }
}

// ---- packed transfers (the log's transfer batches) ------------------------------------

namespace {
std::vector<transfer> random_transfers(std::mt19937_64& rng, size_t n) {
  // Fields at random, or shared by every transfer, or counted up, or in a narrow range.
  std::vector<transfer> v(n);
  uint64_t pattern[14];
  for (auto& p : pattern) p = rng() % 4;
  auto value = [&](int f, size_t i, uint64_t mask) -> uint64_t {
    switch (pattern[f]) {
      case 0: return rng() & mask;
      case 1: return 0x1234567890abcdefull & mask;
      case 2: return (1000 + i * 3) & mask;
      default: return (uint64_t(1) << 40 | rng() % 300) & mask;
    }
  };
  for (size_t i = 0; i < n; ++i) {
    transfer& t = v[i];
    t.id = {value(0, i, ~0ull), value(1, i, ~0ull)};
    t.pending_id = {value(2, i, ~0ull), value(3, i, ~0ull)};
    t.debit_account_id = value(4, i, ~0ull);
    t.credit_account_id = value(5, i, ~0ull);
    t.amount = value(6, i, ~0ull);
    t.user_data = value(7, i, ~0ull);
    t.timestamp = value(8, i, ~0ull);
    t.currency = uint32_t(value(9, i, 0xffffffff));
    t.timeout_s = uint32_t(value(10, i, 0xffffffff));
    t.code = uint16_t(value(11, i, 0xffff));
    t.flags = uint16_t(value(12, i, 0xffff));
    t.reserved = uint32_t(value(13, i, 0xffffffff));
  }
  return v;
}
bool same_transfers(const std::vector<transfer>& a, const std::vector<transfer>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(transfer)) == 0);
}
}  // namespace

TEST(transfers_packed, any_transfers_unpack_to_the_same_bytes) {
  std::mt19937_64 rng(test::test_seed("transfers_packed"));
  for (const size_t n : {size_t(0), size_t(1), size_t(2), size_t(127), size_t(128), size_t(129), size_t(1000),
                         size_t(events_per_frame_max)}) {
    for (int round = 0; round < 20; ++round) {
      const auto transfers = random_transfers(rng, n);
      std::vector<uint8_t> packed{1, 2, 3};  // appended to
      pack_transfers(transfers, packed);
      ASSERT_LE(packed.size(), 3 + (n + packed_block_events - 1) / packed_block_events *
                                       packed_transfer_block_overhead_max + n * sizeof(transfer));
      std::vector<transfer> out(3);  // replaced, not appended to
      std::string why;
      ASSERT_TRUE(unpack_transfers(std::span(packed).subspan(3), uint32_t(n), out, &why)) << n << ": " << why;
      ASSERT_TRUE(same_transfers(transfers, out)) << n << " transfers, round " << round;
    }
  }
}

TEST(transfers_packed, a_batch_as_the_load_sends_it_packs_small) {
  // A request of 8,192 transfers: ids counted up, accounts among 100,000, one currency.
  std::mt19937_64 rng(6);
  std::vector<transfer> transfers(8192);
  for (size_t i = 0; i < transfers.size(); ++i) {
    transfer& t = transfers[i];
    t.id = {7'000'000 + i, 0xa49536d9639188deull};
    t.debit_account_id = (uint64_t(1) << 40) + rng() % 100'000;
    t.credit_account_id = (uint64_t(1) << 40) + rng() % 100'000;
    t.amount = rng() % 1000 + 1;
    t.currency = currency("ETB");
  }
  std::vector<uint8_t> packed;
  pack_transfers(transfers, packed);
  EXPECT_LT(packed.size(), transfers.size() * 10);  // against 88 bytes each as they are
  std::vector<transfer> out;
  std::string why;
  ASSERT_TRUE(unpack_transfers(packed, uint32_t(transfers.size()), out, &why)) << why;
  EXPECT_TRUE(same_transfers(transfers, out));
}

TEST(transfers_packed, malformed_bytes_are_refused_with_the_field) {
  std::mt19937_64 rng(test::test_seed("transfers_packed corruption"));
  const auto transfers = random_transfers(rng, 300);
  std::vector<uint8_t> good;
  pack_transfers(transfers, good);
  std::vector<transfer> out;
  std::string why;
  for (size_t cut = 0; cut < good.size(); ++cut)
    ASSERT_FALSE(unpack_transfers(std::span(good).first(cut), 300, out, &why)) << "cut at " << cut;
  EXPECT_FALSE(unpack_transfers(good, 299, out, &why));
  EXPECT_NE(why.find("packed transfers"), std::string::npos) << why;
  EXPECT_FALSE(unpack_transfers({}, events_per_frame_max + 1, out, &why));
  EXPECT_NE(why.find("8193 transfers at once; at most 8192"), std::string::npos) << why;
  auto bad = good;
  bad[1] = 0x20;  // the first column's descriptor
  EXPECT_FALSE(unpack_transfers(bad, 300, out, &why));
  EXPECT_NE(why.find("id.lo: unknown column descriptor 32"), std::string::npos) << why;
  // Random damage: refused with a reason, or (damage inside the numbers) 300 transfers.
  for (int i = 0; i < 5000; ++i) {
    auto body = good;
    for (int k = 0, n = 1 + int(rng() % 4); k < n; ++k) body[rng() % body.size()] ^= uint8_t(1 + rng() % 255);
    why.clear();
    if (!unpack_transfers(body, 300, out, &why)) {  // (damage to the numbers passes)
      ASSERT_FALSE(why.empty());
    }
  }
}

// ---- responses -----------------------------------------------------------------------

TEST(responses, every_reply_round_trips) {
  std::string why;
  reply_msg r;
  std::vector<result> codes = {result::ok, result::exceeds_credits, result::linked_event_failed};
  ASSERT_TRUE(parse_response(results_body(codes), &r, &why)) << why;
  EXPECT_EQ(r.kind, reply_kind::results);
  EXPECT_EQ(r.results, codes);

  std::vector<account> as = {sample_account(1), account{}};
  std::vector<result> found = {result::ok, result::account_not_found};
  ASSERT_TRUE(parse_response(found_accounts_body(found, as), &r, &why)) << why;
  EXPECT_EQ(r.kind, reply_kind::found_accounts);
  EXPECT_TRUE(same_bytes(r.accounts, as));
  EXPECT_EQ(r.results, found);

  transfer_record_item rec;
  rec.t = sample_transfer(4);
  rec.result = uint32_t(result::ok);
  rec.credit_after_credits_posted = 77;
  ASSERT_TRUE(parse_response(found_transfers_body(std::vector<result>{result::ok}, std::vector{rec}), &r, &why)) << why;
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].credit_after_credits_posted, 77u);
  EXPECT_EQ(r.records[0].t.amount, rec.t.amount);

  std::vector<history_page_item> pages(2);
  pages[0].records = {rec, rec};
  pages[0].next_cursor = 12;
  pages[1].code = result::limit_invalid;
  ASSERT_TRUE(parse_response(account_transfers_body(pages), &r, &why)) << why;
  ASSERT_EQ(r.pages.size(), 2u);
  EXPECT_EQ(r.pages[0].records.size(), 2u);
  EXPECT_EQ(r.pages[0].next_cursor, 12u);
  EXPECT_EQ(r.pages[1].code, result::limit_invalid);

  std::vector<balance_item> bs = {{10, 20, 0, 0}, {0, 0, uint32_t(result::account_not_found), 0}};
  ASSERT_TRUE(parse_response(balances_body(bs), &r, &why)) << why;
  EXPECT_TRUE(same_bytes(r.balances, bs));

  EXPECT_FALSE(parse_response(create_transfers_body(std::vector<transfer>{sample_transfer(1)}), &r, &why));
}

// Found by tools/fuzz: a Response naming a reply type but holding no reply table.
TEST(responses, a_reply_type_without_its_table_is_refused) {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(fb::CreateResponse(fbb, fb::Reply::Results, 0), "MSB1");
  reply_msg r;
  std::string why;
  EXPECT_FALSE(parse_response({fbb.GetBufferPointer(), fbb.GetSize()}, &r, &why));
  EXPECT_EQ(why, "response: no reply");
  fbb.Clear();
  fbb.Finish(fb::CreateRequest(fbb, fb::Operation::CreateTransfers, 0), "MSB1");
  parsed_request p;
  error_msg err;
  EXPECT_FALSE(parse_request({fbb.GetBufferPointer(), fbb.GetSize()}, &p, &err));
  // A known operation without its table: the body is wrong, not the operation.
  EXPECT_EQ(err.code, protocol_error::body_invalid);
  EXPECT_NE(err.message.find("operation type 2 without its table"), std::string::npos) << err.message;
}

TEST(admin, request_and_response_round_trip) {
  admin_request_msg q{"account show", {"42", "0x2a"}};
  admin_request_msg q2;
  error_msg e;
  ASSERT_TRUE(parse_admin_request(admin_request_body(q), &q2, &e)) << e.message;
  EXPECT_EQ(q2.command, "account show");
  EXPECT_EQ(q2.args, q.args);

  admin_response_msg r;
  r.code = admin_code::check_failed;
  r.message = "debits and credits differ in: ETB";
  r.sections.push_back({"money by currency", {{"currency", false}, {"debits_posted", true}}, {{"ETB", "5"}, {"USD", "7"}}});
  r.sections.push_back({"empty", {{"a", false}}, {}});
  admin_response_msg r2;
  std::string why;
  ASSERT_TRUE(parse_admin_response(admin_response_body(r), &r2, &why)) << why;
  EXPECT_EQ(r2.code, admin_code::check_failed);
  EXPECT_EQ(r2.message, r.message);
  ASSERT_EQ(r2.sections.size(), 2u);
  EXPECT_EQ(r2.sections[0].title, "money by currency");
  EXPECT_TRUE(r2.sections[0].columns[1].numeric);
  EXPECT_FALSE(r2.sections[0].columns[0].numeric);
  EXPECT_EQ(r2.sections[0].rows[1][1], "7");
  EXPECT_TRUE(r2.sections[1].rows.empty());
  EXPECT_EQ(admin_code_name(admin_code::not_found), "not_found");
}

TEST(admin, requests_over_the_limits_are_refused_with_field_invalid) {
  admin_request_msg out;
  error_msg e;
  auto refused = [&](const admin_request_msg& q, const char* needle) {
    EXPECT_FALSE(parse_admin_request(admin_request_body(q), &out, &e)) << needle;
    EXPECT_EQ(e.code, protocol_error::field_invalid) << needle;
    EXPECT_NE(e.message.find(needle), std::string::npos) << e.message;
  };
  refused({"", {}}, "1 to 64 bytes");
  refused({std::string(admin_command_bytes_max + 1, 'a'), {}}, "1 to 64 bytes");
  refused({"status\n", {}}, "control character");
  refused({"status", std::vector<std::string>(admin_args_max + 1, "1")}, "more than 16 arguments");
  refused({"account show", {std::string(admin_arg_bytes_max + 1, '1')}}, "longer than 256");
  refused({"account show", {"4\t2"}}, "argument 1 holds a control character");
  refused({"account show", {"\x9b" "31m"}}, "invalid UTF-8");       // a lone C1 byte
  refused({"account show", {"\xc2\x9b" "31m"}}, "control character");  // C1 as UTF-8
  refused({"account show", {"\xc0\xaf"}}, "invalid UTF-8");        // overlong
  // Invisible format characters: a right-to-left override, a zero-width space, a line
  // separator, U+FEFF, a tag.
  for (const char* bad : {"ab\xe2\x80\xae" "cd", "a\xe2\x80\x8b" "b", "a\xe2\x80\xa8" "b", "\xef\xbb\xbf" "1",
                          "\xf3\xa0\x80\x81"})
    refused({"account show", {bad}}, "invisible format character");
  // Bytes that never lead a sequence, however many continuation bytes follow.
  for (const char* bad : {"\xf5\x80\x80\x80", "\xf8\x80\x80", "\xfe\x80\x80", "\xff\x80\x80", "\xc1\xbf"})
    refused({"account show", {bad}}, "invalid UTF-8");
  for (const char* good : {"\xc2\xa0", "\xe1\x88\x80", "\xef\xbf\xbd", "\xf0\x9f\x92\xb0", "\xf4\x8f\xbf\xbf"}) {
    EXPECT_TRUE(parse_admin_request(admin_request_body({"account show", {good}}), &out, &e)) << e.message;
  }
  // Printable UTF-8 passes.
  EXPECT_TRUE(parse_admin_request(admin_request_body({"account show", {"\xe1\x8a\xa5\xe1\x89\xa1"}}), &out, &e))
      << e.message;
  // Not an AdminRequest at all.
  EXPECT_FALSE(parse_admin_request(bytes_of("not a flatbuffer at all"), &out, &e));
  EXPECT_EQ(e.code, protocol_error::body_invalid);
}

TEST(admin, malformed_responses_are_refused) {
  std::string why;
  admin_response_msg out;
  // A row with fewer cells than columns, built by hand.
  {
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<fb::AdminColumn>> cols = {fb::CreateAdminColumn(fbb, fbb.CreateString("a")),
                                                             fb::CreateAdminColumn(fbb, fbb.CreateString("b"))};
    std::vector<std::string> cells = {"only one"};
    std::vector<flatbuffers::Offset<fb::AdminRow>> rows = {fb::CreateAdminRow(fbb, fbb.CreateVectorOfStrings(cells))};
    auto sec = fb::CreateAdminSection(fbb, fbb.CreateString("s"), fbb.CreateVector(cols), fbb.CreateVector(rows));
    std::vector<flatbuffers::Offset<fb::AdminSection>> secs = {sec};
    fbb.Finish(fb::CreateAdminResponse(fbb, 0, 0, fbb.CreateVector(secs)), "MSB1");
    std::vector<uint8_t> body(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    EXPECT_FALSE(parse_admin_response(body, &out, &why));
    EXPECT_NE(why.find("1 cells for 2 columns"), std::string::npos) << why;
  }
  // An unknown code.
  {
    flatbuffers::FlatBufferBuilder fbb;
    fbb.Finish(fb::CreateAdminResponse(fbb, admin_code_max + 1), "MSB1");
    std::vector<uint8_t> body(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    EXPECT_FALSE(parse_admin_response(body, &out, &why));
    EXPECT_NE(why.find("unknown code"), std::string::npos) << why;
  }
}
