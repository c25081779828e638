#include "wire/protocol.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

#include "wire/assert.hpp"

namespace mesob::wire {

std::string_view protocol_error_name(protocol_error e) {
  switch (e) {
    case protocol_error::frame_too_large: return "frame_too_large";
    case protocol_error::version_unsupported: return "version_unsupported";
    case protocol_error::kind_unknown: return "kind_unknown";
    case protocol_error::body_invalid: return "body_invalid";
    case protocol_error::operation_unknown: return "operation_unknown";
    case protocol_error::not_authenticated: return "not_authenticated";
    case protocol_error::auth_failed: return "auth_failed";
    case protocol_error::role_denied: return "role_denied";
    case protocol_error::batch_empty: return "batch_empty";
    case protocol_error::batch_too_large: return "batch_too_large";
    case protocol_error::too_many_in_flight: return "too_many_in_flight";
    case protocol_error::unexpected_frame: return "unexpected_frame";
    case protocol_error::shutting_down: return "shutting_down";
    case protocol_error::field_invalid: return "field_invalid";
    case protocol_error::engine_failed: return "engine_failed";
    case protocol_error::slow_reader: return "slow_reader";
    case protocol_error::wrong_port: return "wrong_port";
    case protocol_error::reply_too_large: return "reply_too_large";
    case protocol_error::ack_refused: return "ack_refused";
    case protocol_error::events_truncated: return "events_truncated";
    case protocol_error::events_failed: return "events_failed";
    case protocol_error::too_many_sessions: return "too_many_sessions";
    case protocol_error::idle_timeout: return "idle_timeout";
    case protocol_error::subscription_taken: return "subscription_taken";
    case protocol_error::handshake_timeout: return "handshake_timeout";
    case protocol_error::request_id_zero: return "request_id_zero";
    case protocol_error::frame_buffers_full: return "frame_buffers_full";
    case protocol_error::gateway_cut_off: return "gateway_cut_off";
  }
  return "unknown";
}

namespace {
constexpr std::string_view role_names[] = {"payments", "broker", "market_data", "kyc", "events_reader", "admin", "ledger"};
}

bool parse_roles(std::string_view text, uint32_t* out) {
  uint32_t bits = 0;
  if (!text.empty() && text.back() == ',') return false;  // "payments," names a role it does not give
  while (!text.empty()) {
    const size_t comma = text.find(',');
    std::string_view name = text.substr(0, comma);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    bool known = false;
    for (size_t i = 0; i < std::size(role_names); ++i)
      if (name == role_names[i]) {
        bits |= 1u << i;
        known = true;
      }
    if (!known) return false;
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  *out = bits;
  return true;
}

std::string roles_text(uint32_t bits) {
  std::string s;
  for (size_t i = 0; i < std::size(role_names); ++i)
    if (bits & (1u << i)) {
      if (!s.empty()) s += ',';
      s += role_names[i];
    }
  return s;
}

void encode_header(const frame_header& h, uint8_t out[frame_header_bytes]) {
  std::memcpy(out, &h, frame_header_bytes);  // little-endian only (wire/types.cpp)
}

frame_header decode_header(const uint8_t in[frame_header_bytes]) {
  frame_header h;
  std::memcpy(&h, in, frame_header_bytes);
  return h;
}

void frame_reader::compact(size_t want) {
  if (begin_ > 0 && buf_.size() - end_ < want) {
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    moved_ += end_ - begin_;
    end_ -= begin_;
    begin_ = 0;
  }
  const size_t need = end_ + want;
  if (buf_.size() >= need) return;
  if (need > buf_.capacity()) {
    // Geometric growth, but not past a largest frame and its slack while that is room
    // enough: a buffer doubled a byte short of a frame would hold twice it.
    size_t cap = std::max(need, 2 * buf_.capacity());
    const size_t frame_room = frame_header_bytes + size_t(body_max_) + growth_slack;
    if (need <= frame_room) cap = std::min(cap, frame_room);
    buf_.reserve(cap);
  }
  buf_.resize(need);
}

size_t frame_reader::held_max(uint32_t body_max) {
  return frame_header_bytes + size_t(body_max) + growth_slack + aligned_kept_max;
}

bool frame_reader::release() {
  if (begin_ == end_) {
    if (buf_.empty()) return false;
    std::vector<uint8_t>().swap(buf_);
    std::vector<uint64_t>().swap(aligned_);
    begin_ = end_ = 0;
    return true;
  }
  if (buf_.capacity() <= end_ - begin_) return false;
  std::vector<uint8_t> kept(buf_.begin() + ptrdiff_t(begin_), buf_.begin() + ptrdiff_t(end_));
  moved_ += kept.size();
  buf_.swap(kept);
  end_ -= begin_;
  begin_ = 0;
  return true;
}

std::span<uint8_t> frame_reader::prepare(size_t want) {
  compact(want);
  return {buf_.data() + end_, buf_.size() - end_};
}

void frame_reader::append(std::span<const uint8_t> bytes) {
  compact(bytes.size());
  std::memcpy(buf_.data() + end_, bytes.data(), bytes.size());
  end_ += bytes.size();
}

size_t frame_reader::missing() const {
  if (lost_ || end_ - begin_ < frame_header_bytes) return 0;
  const uint32_t body = decode_header(buf_.data() + begin_).body_bytes;
  if (body > body_max_) return 0;
  const size_t whole = frame_header_bytes + body;
  return end_ - begin_ < whole ? whole - (end_ - begin_) : 0;
}

bool frame_reader::has_frame() const {
  frame f;
  const status st = peek(&f);
  return st == status::frame || (st == status::too_large && !lost_);
}

bool frame_reader::peek_header(frame_header* out) const {
  if (lost_ || end_ - begin_ < frame_header_bytes) return false;
  *out = decode_header(buf_.data() + begin_);
  return out->body_bytes <= body_max_;
}

frame_reader::status frame_reader::peek(frame* out) const {
  if (lost_) return status::too_large;
  if (end_ - begin_ < frame_header_bytes) return status::need_more;
  out->header = decode_header(buf_.data() + begin_);
  if (out->header.body_bytes > body_max_) return status::too_large;
  if (end_ - begin_ < frame_header_bytes + size_t(out->header.body_bytes)) return status::need_more;
  out->body = {buf_.data() + begin_ + frame_header_bytes, out->header.body_bytes};
  return status::frame;
}

frame_reader::status frame_reader::next(frame* out) {
  if (aligned_.capacity() > aligned_kept_max / sizeof(uint64_t)) std::vector<uint64_t>().swap(aligned_);  // the last body's
  const status st = peek(out);
  if (st == status::too_large) {
    lost_ = true;
    return st;
  }
  if (st == status::need_more) {
    if (begin_ == end_) begin_ = end_ = 0;
    return st;
  }
  if (reinterpret_cast<uintptr_t>(out->body.data()) % 8 != 0) {
    // Bodies are handed out 8-byte aligned (the flatbuffers Verifier checks alignment):
    // a body that is not (its sender's bodies are not multiples of 8 bytes) is copied
    // alone. Moving everything buffered behind it instead cost a stream of such frames
    // the square of its length.
    aligned_.resize((out->header.body_bytes + 7) / 8);
    if (out->header.body_bytes > 0) std::memcpy(aligned_.data(), out->body.data(), out->header.body_bytes);
    moved_ += out->header.body_bytes;
    out->body = {reinterpret_cast<const uint8_t*>(aligned_.data()), out->header.body_bytes};
  }
  begin_ += frame_header_bytes + out->header.body_bytes;
  return status::frame;
}

std::vector<uint8_t> auth_mac(std::span<const uint8_t> secret, std::span<const uint8_t> nonce) {
  std::vector<uint8_t> out(EVP_MAX_MD_SIZE);
  unsigned int n = 0;
  const unsigned char* r = HMAC(EVP_sha256(), secret.data(), int(secret.size()), nonce.data(), nonce.size(),
                                out.data(), &n);
  MESOB_ASSERT_MSG(r != nullptr && n == mac_bytes, "HMAC-SHA256 failed");
  out.resize(n);
  return out;
}

bool mac_equal(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::vector<uint8_t> random_bytes(size_t n) {
  std::vector<uint8_t> out(n);
  MESOB_ASSERT_MSG(RAND_bytes(out.data(), int(n)) == 1, "the random source failed");
  return out;
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

std::string decimal_error(std::string_view v) {
  const bool digits = !v.empty() && v.size() <= 20 && std::all_of(v.begin(), v.end(), [](char ch) {
    return ch >= '0' && ch <= '9';
  });
  if (!digits || (v.size() > 1 && v[0] == '0'))
    return "'" + std::string(v) + "' is not a decimal number (digits only: no sign, no leading zero, no 0x)";
  if (v.size() == 20 && v > std::string_view("18446744073709551615"))
    return "'" + std::string(v) + "' is not a decimal number up to 18446744073709551615 (2^64 - 1)";
  return {};
}

bool from_hex(std::string_view text, std::vector<uint8_t>* out) {
  if (text.size() % 2 != 0) return false;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::vector<uint8_t> bytes;
  bytes.reserve(text.size() / 2);
  for (size_t i = 0; i < text.size(); i += 2) {
    const int hi = val(text[i]), lo = val(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    bytes.push_back(uint8_t(hi << 4 | lo));
  }
  *out = std::move(bytes);
  return true;
}

}  // namespace mesob::wire
