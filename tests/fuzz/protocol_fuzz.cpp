// libFuzzer target: the frame decoder and every body parser, on arbitrary bytes.
//
// The input is a byte stream as a client could send it. The first byte picks how the
// stream is cut into reads (as TCP may cut it); every frame that comes out is parsed as
// the body its kind names, and every body parser also gets the raw input. Nothing may
// crash, hang, read out of bounds or hand out items outside the body (ASan, UBSan).
// Built and run by tools/fuzz (clang from Debian); seeds in tests/fuzz/corpus.
#include <cstdint>
#include <cstring>
#include <vector>

#include "wire/codec.hpp"
#include "wire/protocol.hpp"

using namespace mesob::wire;

namespace {

void parse_body(uint16_t kind, std::span<const uint8_t> body) {
  std::string why;
  switch (frame_kind(kind)) {
    case frame_kind::hello: {
      hello_msg m;
      (void)parse_hello(body, &m, &why);
      break;
    }
    case frame_kind::auth: {
      auth_msg m;
      (void)parse_auth(body, &m, &why);
      break;
    }
    case frame_kind::welcome: {
      welcome_msg m;
      (void)parse_welcome(body, &m, &why);
      break;
    }
    case frame_kind::request: {
      parsed_request p;
      error_msg e;
      if (parse_request(body, &p, &e)) {
        if (p.count == 0 || p.count > batch_operations_max) __builtin_trap();
        if (p.items.data() < body.data() || p.items.data() + p.items.size() > body.data() + body.size())
          __builtin_trap();
        std::vector<uint8_t> copy(p.items.begin(), p.items.end());  // touch every item byte
      } else if (e.message.empty()) {
        __builtin_trap();
      }
      break;
    }
    case frame_kind::response: {
      reply_msg m;
      (void)parse_response(body, &m, &why);
      break;
    }
    case frame_kind::error: {
      error_msg m;
      (void)parse_error(body, &m, &why);
      break;
    }
    case frame_kind::push: {
      push_msg m;
      std::vector<payout_instruction> list;
      std::vector<order_instruction> orders;
      if (parse_push(body, &m, &why)) {
        (void)parse_payout_instructions(m.body, &list, &why);
        (void)parse_order_instructions(m.body, &orders, &why);
      }
      (void)parse_payout_instructions(body, &list, &why);  // the raw input too
      (void)parse_order_instructions(body, &orders, &why);
      break;
    }
    case frame_kind::admin_request: {
      admin_request_msg m;
      error_msg e;
      if (parse_admin_request(body, &m, &e)) {
        if (m.command.empty() || m.command.size() > admin_command_bytes_max || m.args.size() > admin_args_max)
          __builtin_trap();
      } else if (e.message.empty()) {
        __builtin_trap();
      }
      break;
    }
    case frame_kind::subscribe: {
      subscribe_msg m;
      (void)parse_subscribe(body, &m, &why);
      break;
    }
    case frame_kind::events: {
      // Both parsers agree to the byte, and the visitor is handed blocks only of a frame
      // well formed, each block's CRCs checked: of a frame refused, only whole blocks
      // before an event that fails its CRC.
      events_msg m, m2;
      const bool whole = parse_events(body, &m, &why);
      std::vector<event> handed;
      std::string why_blocks;
      const bool by_blocks = parse_events(body, &m2, [&](std::span<const event> b) {
        if (b.empty() || b.size() > packed_block_events) __builtin_trap();
        handed.insert(handed.end(), b.begin(), b.end());
      }, &why_blocks);
      if (whole != by_blocks) __builtin_trap();
      if (!whole && !handed.empty() &&
          (why_blocks.find("fails its CRC") == std::string::npos || handed.size() % packed_block_events != 0 ||
           first_bad_crc(handed) != handed.size()))
        __builtin_trap();
      if (whole && (handed.size() != m.events.size() ||
                    (!handed.empty() && std::memcmp(handed.data(), m.events.data(), handed.size() * sizeof(event)) != 0)))
        __builtin_trap();
      break;
    }
    case frame_kind::ack: {
      uint64_t offset = 0;
      (void)parse_ack(body, &offset, &why);
      break;
    }
    case frame_kind::admin_response: {
      admin_response_msg m;
      if (parse_admin_response(body, &m, &why))
        for (const auto& s : m.sections)
          for (const auto& r : s.rows)
            if (r.size() != s.columns.size()) __builtin_trap();
      break;
    }
    default: break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = 1 + data[0] % 64;
  const bool direct = data[0] & 0x40;  // the rest of a frame begun read as the server does
  const std::span<const uint8_t> stream(data + 1, size - 1);
  frame_reader reader(4096);
  for (size_t pos = 0; pos < stream.size();) {
    const size_t missing = reader.missing();
    if (missing > reader.body_max() + frame_header_bytes) __builtin_trap();
    if (direct && missing > 0) {
      // Straight into the buffer: the frame's rest and a chunk past it.
      const size_t n = std::min(missing + chunk, stream.size() - pos);
      const auto dst = reader.prepare(n);
      if (dst.size() < n) __builtin_trap();
      std::memcpy(dst.data(), stream.data() + pos, n);
      reader.commit(n);
      pos += n;
    } else {
      const size_t n = std::min(chunk, stream.size() - pos);
      reader.append(stream.subspan(pos, n));
      pos += n;
    }
    frame_reader::frame f;
    frame_reader::status s;
    while ((s = reader.next(&f)) == frame_reader::status::frame) {
      if (f.body.size() != f.header.body_bytes) __builtin_trap();
      parse_body(f.header.kind, f.body);
    }
    if (s == frame_reader::status::too_large) break;
  }
  // The raw input as every kind of body, copied to an aligned buffer as the reader would.
  std::vector<uint64_t> aligned((stream.size() + 7) / 8);
  if (!stream.empty()) std::memcpy(aligned.data(), stream.data(), stream.size());
  const std::span<const uint8_t> body(reinterpret_cast<const uint8_t*>(aligned.data()), stream.size());
  for (uint16_t k = 1; k <= frame_kind_max; ++k) parse_body(k, body);
  return 0;
}
