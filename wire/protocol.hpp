// The network protocol's framing, handshake and request-level errors (wire/README.md
// is the document; wire/mesob.fbs the bodies). Independent of the engine: the server
// (engine/), the C++ client (wire/client) and the fuzz target all use it.
//
// A frame is a 16-byte little-endian header and a flatbuffer body:
//   u32 body_bytes | u16 version | u16 kind | u64 request_id | body
// The body is a flatbuffer with file identifier "MSB1" whose root table is fixed by the
// kind. A header whose length exceeds the limit loses the framing (the connection is
// closed after an error frame); every other fault is answered with an error frame and
// the connection goes on. (A session that leaves pushed frames unread past its limit,
// or does not authenticate within the handshake timeout, is closed too: limits, not
// input faults.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mesob::wire {

constexpr uint16_t protocol_version = 1;
constexpr size_t frame_header_bytes = 16;
constexpr uint32_t frame_bytes_max_default = 1u << 20;  // body limit, configurable
constexpr uint32_t frame_bytes_max_ceiling = 64u << 20;
constexpr size_t nonce_bytes = 32;
constexpr size_t mac_bytes = 32;
constexpr size_t gateway_id_max = 64;
constexpr size_t secret_bytes_min = 16;

enum class frame_kind : uint16_t {
  hello = 1,     // server -> client: Hello
  auth = 2,      // client -> server: Auth
  welcome = 3,   // server -> client: Welcome
  request = 4,   // client -> server: Request
  response = 5,  // server -> client: Response (same request id)
  error = 6,     // server -> client: Error (request id of the offending frame, or 0)
  push = 7,      // server -> client: Push
  ping = 8,      // either way, empty body; answered with pong (same request id)
  pong = 9,
  admin_request = 10,   // client -> server, admin port only: AdminRequest
  admin_response = 11,  // server -> client: AdminResponse (same request id)
  subscribe = 12,       // client -> server: Subscribe
  subscribed = 13,      // server -> client: Subscribed (same request id)
  events = 14,          // server -> client: Events (request id 0)
  ack = 15,             // client -> server: Ack
};
constexpr uint16_t frame_kind_max = 15;

// Request-level errors (an Error frame). Per-operation outcomes are wire::result codes
// inside a Response, never these.
enum class protocol_error : uint16_t {
  frame_too_large = 1,     // header length over the limit: framing lost, connection closed
  version_unsupported = 2,
  kind_unknown = 3,
  body_invalid = 4,        // not a verifiable flatbuffer of the kind's table, or wrong identifier
  operation_unknown = 5,   // union type this server does not know (or none)
  not_authenticated = 6,   // a request before the handshake completed
  auth_failed = 7,         // unknown gateway or wrong MAC; the session stays unauthenticated
  role_denied = 8,         // the gateway lacks the role the operation needs
  batch_empty = 9,
  batch_too_large = 10,    // more than 8,192 operations
  too_many_in_flight = 11, // over the session's in-flight limit
  unexpected_frame = 12,   // a kind the client may not send now (auth twice, a response, ...)
  shutting_down = 13,
  field_invalid = 14,      // a query field out of range (for example a page limit of 0)
  engine_failed = 15,      // the engine stopped accepting writes (disk failure)
  slow_reader = 16,        // pushed frames piled up unread past the limit; the connection is closed
  wrong_port = 17,         // an admin command on the client port, or a ledger request on the admin port
  reply_too_large = 18,    // the reply would pass the frame ceiling (64 MiB): ask for fewer items
  ack_refused = 19,        // an Ack without a subscription, or outside what was sent (message says which)
  events_truncated = 20,   // the subscriber fell behind retention: its subscription ends (request id 0)
  events_failed = 21,      // the event log could not be read: the subscription ends (request id 0)
  too_many_sessions = 22,  // the gateway has gateway_sessions_max sessions open, or opens them too fast; the session stays unauthenticated
  idle_timeout = 23,       // (request id 0) nothing from the session and nothing sent to it for the idle timeout: closed
  subscription_taken = 24, // (request id 0) another session of the same gateway subscribed under this
                           // subscription's name: it ends here (the session stays open)
  handshake_timeout = 25,  // (request id 0) no successful auth within the handshake timeout: closed
  request_id_zero = 26,    // a request, admin request, subscribe or ack numbered 0, the id of the
                           // server's own errors (a session's or subscription's end): refused
  frame_buffers_full = 27, // (request id 0) all sessions' frame buffers reached the server's limit and
                           // this session held the most of a frame not yet whole: closed
  gateway_cut_off = 28,    // the session's registered gateway was disabled, or its secret changed,
                           // since it logged in: closed (to the request that found it, or id 0)
};
[[nodiscard]] std::string_view protocol_error_name(protocol_error e);
// True when an Error refuses the request for good: sent again it is refused again (the
// role, the body or a field). After any other (shutting_down, engine_failed,
// too_many_in_flight, a lost connection) nothing was done, and it may go again.
[[nodiscard]] inline bool refused_for_good(protocol_error e) {
  using pe = protocol_error;
  return e == pe::role_denied || e == pe::body_invalid || e == pe::operation_unknown || e == pe::batch_empty ||
         e == pe::batch_too_large || e == pe::field_invalid || e == pe::wrong_port || e == pe::request_id_zero ||
         e == pe::reply_too_large;
}
// True when the server closes the connection after sending this error.
[[nodiscard]] inline bool protocol_error_closes(protocol_error e) {
  return e == protocol_error::frame_too_large || e == protocol_error::slow_reader || e == protocol_error::idle_timeout ||
         e == protocol_error::handshake_timeout || e == protocol_error::frame_buffers_full ||
         e == protocol_error::gateway_cut_off;
}

// Gateway roles (bit set). Ledger operations need `payments`, `ledger` or `admin`; a
// registered gateway's `payments` covers its deposits and payout answers only, its
// `ledger` the rest (engine/server.cpp, partner_may).
namespace roles {
constexpr uint32_t payments = 1u << 0;
constexpr uint32_t broker = 1u << 1;
constexpr uint32_t market_data = 1u << 2;
constexpr uint32_t kyc = 1u << 3;
constexpr uint32_t events_reader = 1u << 4;
constexpr uint32_t admin = 1u << 5;
constexpr uint32_t ledger = 1u << 6;
constexpr uint32_t all = (1u << 7) - 1;
}  // namespace roles
// "payments,admin" <-> bits. Parsing fails (returns false) on an unknown name.
[[nodiscard]] bool parse_roles(std::string_view text, uint32_t* out);
[[nodiscard]] std::string roles_text(uint32_t bits);

struct frame_header {
  uint32_t body_bytes = 0;
  uint16_t version = protocol_version;
  uint16_t kind = 0;
  uint64_t request_id = 0;
};
static_assert(sizeof(frame_header) == frame_header_bytes);

void encode_header(const frame_header& h, uint8_t out[frame_header_bytes]);
[[nodiscard]] frame_header decode_header(const uint8_t in[frame_header_bytes]);

// Splits a byte stream into frames. Bytes go in with append(); next() yields whole
// frames in order. A body over `body_max` is a framing loss (status::too_large), after
// which the reader yields nothing more.
class frame_reader {
 public:
  explicit frame_reader(uint32_t body_max = frame_bytes_max_default) : body_max_(body_max) {}
  enum class status { frame, need_more, too_large };
  struct frame {
    frame_header header;
    std::span<const uint8_t> body;  // valid until the next append(), prepare() or next()
  };
  void append(std::span<const uint8_t> bytes);
  // Where the next bytes can be received directly (at least `want` bytes long); call
  // commit(n) after writing n of them. Saves a copy on the receive path.
  std::span<uint8_t> prepare(size_t want);
  void commit(size_t n) { end_ += n; }
  status next(frame* out);
  // What next() would yield, without taking it (the same frame comes again), its body
  // where it lies in the buffer: not necessarily 8-byte aligned, valid until the next
  // append(), prepare() or next().
  status peek(frame* out) const;
  [[nodiscard]] size_t buffered() const { return end_ - begin_; }
  // Bytes the frame begun in the buffer still lacks: 0 with no frame begun (fewer bytes
  // than a header), a whole frame buffered, or a header over body_max. A receiver can
  // read that many straight into prepare()'s span.
  [[nodiscard]] size_t missing() const;
  // Whether next() would yield something other than need_more (a whole frame, or a
  // header over body_max): false with nothing or only part of a frame buffered.
  [[nodiscard]] bool has_frame() const;
  // The header of the frame begun, once the header is buffered (and within body_max),
  // whole or not.
  [[nodiscard]] bool peek_header(frame_header* out) const;
  [[nodiscard]] uint32_t body_max() const { return body_max_; }
  // A new limit for the frames not yet begun (a session's, once authenticated).
  void set_body_max(uint32_t body_max) { body_max_ = body_max; }
  // Bytes the buffer holds room for (it grows for the largest frame until release()).
  [[nodiscard]] size_t capacity() const { return buf_.size(); }
  // Gives back the buffer's room past what it holds: all of it, the aligned copy too,
  // with nothing buffered (a session that sent one large frame and went quiet), else
  // down to the bytes buffered (a session not being read); true if it gave any. Not
  // while a receive writes into prepare()'s span.
  bool release();
  // Bytes the reader holds: its buffer and its copy of a misaligned body (kept up to
  // 64 KiB, a larger one released at the next frame). The buffer's allocation, not its
  // size: the server's limit on all frame buffers is a limit on memory. The buffer grows
  // geometrically (to twice its size when it needs a byte more) but not past a frame of
  // body_max and growth_slack while that is room enough; it grows further only for
  // frames buffered whole behind one another (a reader not being drained).
  [[nodiscard]] size_t held_bytes() const { return buf_.capacity() + aligned_.capacity() * sizeof(uint64_t); }
  static constexpr size_t growth_slack = 128u << 10;
  static constexpr size_t aligned_kept_max = 64u << 10;
  // The most a reader with frames of up to `body_max` holds between frames (next()
  // returned need_more) with at most one frame begun and room asked for at most
  // growth_slack past it: its buffer and a kept aligned copy.
  [[nodiscard]] static size_t held_max(uint32_t body_max);
  // Bytes copied within the reader (to make room, to align a body): never more than
  // about twice what went in, whatever the frames' sizes.
  [[nodiscard]] uint64_t bytes_moved() const { return moved_; }

 private:
  void compact(size_t want);
  uint32_t body_max_;
  std::vector<uint8_t> buf_;
  std::vector<uint64_t> aligned_;  // a misaligned body's copy
  uint64_t moved_ = 0;
  size_t begin_ = 0, end_ = 0;
  bool lost_ = false;
};

// HMAC-SHA256(secret, nonce) (OpenSSL); the handshake's proof of the secret.
[[nodiscard]] std::vector<uint8_t> auth_mac(std::span<const uint8_t> secret, std::span<const uint8_t> nonce);
// Constant-time comparison of two MACs.
[[nodiscard]] bool mac_equal(std::span<const uint8_t> a, std::span<const uint8_t> b);
// `n` bytes from the operating system's random source.
[[nodiscard]] std::vector<uint8_t> random_bytes(size_t n);

// Hex text <-> bytes (secrets in config files). from_hex fails on odd length or a
// non-hex character.
[[nodiscard]] std::string to_hex(std::span<const uint8_t> bytes);
[[nodiscard]] bool from_hex(std::string_view text, std::vector<uint8_t>* out);
// An unsigned setting's text (flags, config files, the environment): empty if it is a
// decimal number (digits only, no sign, no leading zero, no 0x, at most 2^64 - 1), else
// why not. Command-line parsers take -1 as 2^64 - 1, a leading 0 as octal and 0x as hex.
[[nodiscard]] std::string decimal_error(std::string_view text);

}  // namespace mesob::wire
