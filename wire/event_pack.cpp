#include "wire/event_pack.hpp"

#include <nmmintrin.h>

#include <cstddef>
#include <cstring>

#include "wire/column_pack.hpp"

namespace mesob::wire {

// Events and the log's transfers, each a layout of wire/column_pack.hpp (which describes
// the packed form).
namespace {
using column_pack::field;
struct event_layout {
  using record = event;
  static constexpr const char* noun = "events";
  static constexpr std::array<field, 16> fields{{
    {"offset", offsetof(event, offset), 8},
    {"lsn", offsetof(event, lsn), 8},
    {"timestamp", offsetof(event, timestamp), 8},
    {"type", offsetof(event, type), 2},
    {"flags", offsetof(event, flags), 2},
    {"currency", offsetof(event, currency), 4},
    {"id.lo", offsetof(event, id), 8},
    {"id.hi", offsetof(event, id) + 8, 8},
    {"ref.lo", offsetof(event, ref), 8},
    {"ref.hi", offsetof(event, ref) + 8, 8},
    {"account_a", offsetof(event, account_a), 8},
    {"account_b", offsetof(event, account_b), 8},
    {"amount", offsetof(event, amount), 8},
    {"code", offsetof(event, code), 2},
    {"gateway", offsetof(event, gateway), 2},
    {"crc", offsetof(event, crc), 4},
  }};
};
struct transfer_layout {
  using record = transfer;
  static constexpr const char* noun = "transfers";
  static constexpr std::array<field, 14> fields = column_pack::transfer_fields(0);
};
static_assert(column_pack::fields_cover_record<event_layout>(), "the columns are the event's bytes, in order, without gaps");
static_assert(column_pack::fields_cover_record<transfer_layout>(), "the columns are the transfer's bytes, in order, without gaps");
static_assert(column_pack::block_overhead<event_layout>() == packed_block_overhead_max);
static_assert(column_pack::block_overhead<transfer_layout>() == packed_transfer_block_overhead_max);
using column_pack::block_plan;
using column_pack::block_plans;
using column_pack::pack;
using column_pack::plan_blocks;
using column_pack::unpack;
using column_pack::unpack_block;
}  // namespace

void pack_events(std::span<const event> events, std::vector<uint8_t>& out) { pack<event_layout>(events, out); }

bool unpack_events(std::span<const uint8_t> in, uint32_t count, std::vector<event>& out, std::string* why) {
  return unpack<event_layout>(in, count, out, why);
}

void pack_transfers(std::span<const transfer> transfers, std::vector<uint8_t>& out) {
  pack<transfer_layout>(transfers, out);
}

bool unpack_transfers(std::span<const uint8_t> in, uint32_t count, std::vector<transfer>& out, std::string* why) {
  return unpack<transfer_layout>(in, count, out, why);
}

bool unpack_events(std::span<const uint8_t> in, uint32_t count, const event_visitor& each, std::string* why) {
  block_plans<event_layout> plans;  // on the stack (about 57 KB): nothing is shared between calls
  size_t blocks = 0;
  if (!plan_blocks(in, count, plans, &blocks, why)) return false;
  // The buffer's first `filled` events hold the shared fields of `last`: a block with the
  // same ones (a log record's transfers: every block but the first) writes only its columns.
  std::array<event, packed_block_events> block;
  const block_plan<event_layout>* last = nullptr;
  size_t filled = 0;
  for (size_t i = 0; i < blocks; ++i) {
    const block_plan<event_layout>& b = plans[i];
    const bool same = last != nullptr && b.n <= filled && b.varying_fields == last->varying_fields &&
                      b.shared == last->shared;
    unpack_block(b, block.data(), !same);
    if (!same) {
      last = &b;
      filled = b.n;
    }
    each(std::span<const event>(block.data(), b.n));
  }
  return true;
}

// The CRC covers the event's first 92 bytes: eleven 8-byte steps and a 4-byte one.
static_assert(offsetof(event, crc) == 92 && sizeof(event) == 96);

namespace {
inline uint64_t word(const event& e, size_t at) {
  uint64_t v;
  std::memcpy(&v, reinterpret_cast<const uint8_t*>(&e) + at, 8);
  return v;
}
inline uint32_t last_word(const event& e) {
  uint32_t v;
  std::memcpy(&v, reinterpret_cast<const uint8_t*>(&e) + 88, 4);
  return v;
}
}  // namespace

uint32_t event_crc(const event& e) {
  uint64_t c = 0xffffffffu;
  for (size_t at = 0; at < 88; at += 8) c = _mm_crc32_u64(c, word(e, at));
  return ~_mm_crc32_u32(uint32_t(c), last_word(e));
}

size_t first_bad_crc(std::span<const event> events) {
  const size_t n = events.size();
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const event &a = events[i], &b = events[i + 1], &c = events[i + 2], &d = events[i + 3];
    uint64_t ca = 0xffffffffu, cb = ca, cc = ca, cd = ca;
    for (size_t at = 0; at < 88; at += 8) {
      ca = _mm_crc32_u64(ca, word(a, at));
      cb = _mm_crc32_u64(cb, word(b, at));
      cc = _mm_crc32_u64(cc, word(c, at));
      cd = _mm_crc32_u64(cd, word(d, at));
    }
    const bool bad_a = ~_mm_crc32_u32(uint32_t(ca), last_word(a)) != a.crc;
    const bool bad_b = ~_mm_crc32_u32(uint32_t(cb), last_word(b)) != b.crc;
    const bool bad_c = ~_mm_crc32_u32(uint32_t(cc), last_word(c)) != c.crc;
    const bool bad_d = ~_mm_crc32_u32(uint32_t(cd), last_word(d)) != d.crc;
    if (bad_a | bad_b | bad_c | bad_d) [[unlikely]]
      return i + (bad_a ? 0 : bad_b ? 1 : bad_c ? 2 : 3);
  }
  for (; i < n; ++i)
    if (event_crc(events[i]) != events[i].crc) return i;
  return n;
}

}  // namespace mesob::wire
