// column_pack: the packed column form, one template over a record's layout.
//
// A layout names a trivially copyable record type and its fields (name, byte offset,
// size 2, 4 or 8), which cover the record's bytes in order without gaps. Events on the
// wire (wire/event_pack.hpp), the log's transfer batches and the snapshot's transfer
// records (engine/record_rows.hpp) are each such a layout.
//
// Packed records are blocks. A block: its record count n (1 byte, 1..128), then for each
// of the layout's fields in order a column:
//   - a descriptor byte: the width w in bytes (0..8) in bits 0-3, bit 4 set for a delta
//     column; the other bits are zero;
//   - a base (varint); a delta column then its step (varint);
//   - the numbers, w bytes each, little-endian: n of them for a plain column, where record
//     i's field is base + number i; n - 1 for a delta column, where the first record's field
//     is base and each next one the one before plus step plus its number.
// Sums are modulo 2^64, and a field narrower than 8 bytes keeps their low bytes. A field
// every record of the block shares is a plain column of width 0: its base alone. Every
// block but a frame's last holds 128 records. A frame's blocks are all checked before any
// is unpacked, so a malformed one hands out nothing.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <emmintrin.h>

#include "wire/assert.hpp"
#include "wire/event_pack.hpp"

namespace mesob::wire::column_pack {

struct field {
  const char* name;
  uint8_t at;    // byte offset in the record
  uint8_t size;  // bytes
};
// A transfer's 14 columns, for a record holding a `transfer` at byte `at`: the log's
// transfer batches (at 0) and the snapshot's transfer records share them.
constexpr std::array<field, 14> transfer_fields(size_t at) {
  auto f = [at](const char* name, size_t off, uint8_t size) { return field{name, uint8_t(at + off), size}; };
  return {{
      f("id.lo", offsetof(transfer, id), 8),
      f("id.hi", offsetof(transfer, id) + 8, 8),
      f("pending_id.lo", offsetof(transfer, pending_id), 8),
      f("pending_id.hi", offsetof(transfer, pending_id) + 8, 8),
      f("debit_account_id", offsetof(transfer, debit_account_id), 8),
      f("credit_account_id", offsetof(transfer, credit_account_id), 8),
      f("amount", offsetof(transfer, amount), 8),
      f("user_data", offsetof(transfer, user_data), 8),
      f("timestamp", offsetof(transfer, timestamp), 8),
      f("currency", offsetof(transfer, currency), 4),
      f("timeout_s", offsetof(transfer, timeout_s), 4),
      f("code", offsetof(transfer, code), 2),
      f("flags", offsetof(transfer, flags), 2),
      f("reserved", offsetof(transfer, reserved), 4),
  }};
}

template <class L>
constexpr bool fields_cover_record() {
  size_t at = 0;
  for (const field& f : L::fields) {
    if (f.at != at) return false;
    at += f.size;
  }
  return at == sizeof(typename L::record);
}
constexpr size_t varint_bytes_max(size_t size) { return (size * 8 + 6) / 7; }
template <class L>
constexpr size_t block_overhead() {
  size_t n = 1;
  for (const field& f : L::fields) n += 1 + varint_bytes_max(f.size);
  return n;
}
constexpr uint8_t delta_bit = 0x10;

template <unsigned Size, class R>
inline uint64_t get(const R& e, size_t at) {
  uint64_t v = 0;
  std::memcpy(&v, reinterpret_cast<const uint8_t*>(&e) + at, Size);  // little-endian: the low bytes
  return v;
}
inline unsigned width_of(uint64_t range) { return range == 0 ? 0 : (64 - unsigned(__builtin_clzll(range)) + 7) / 8; }
inline unsigned varint_bytes(uint64_t v) { return v < 0x80 ? 1 : (64 - unsigned(__builtin_clzll(v)) + 6) / 7; }
inline uint8_t* put_varint(uint8_t* p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = uint8_t(v) | 0x80;
    v >>= 7;
  }
  *p++ = uint8_t(v);
  return p;
}

// One block's column of a Size-byte field at byte `at` of the record, written at p (which
// has room for the widest column and 8 bytes more); returns its end.
template <unsigned Size, class R>
uint8_t* pack_column(std::span<const R> block, size_t at, uint8_t* p) {
  const size_t n = block.size();
  const uint64_t first = get<Size>(block[0], at);
  uint64_t lo = first, hi = first, step_lo = ~0ull, step_hi = 0, prev = first;
  for (size_t i = 1; i < n; ++i) {
    const uint64_t v = get<Size>(block[i], at);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    step_lo = std::min(step_lo, v - prev);
    step_hi = std::max(step_hi, v - prev);
    prev = v;
  }
  const unsigned w_plain = width_of(hi - lo);
  const size_t plain_bytes = varint_bytes(lo) + n * w_plain;
  const unsigned w_delta = n > 1 ? width_of(step_hi - step_lo) : 0;
  const bool delta = n > 1 && varint_bytes(first) + varint_bytes(step_lo) + (n - 1) * w_delta < plain_bytes;
  const unsigned w = delta ? w_delta : w_plain;
  *p++ = uint8_t(w | (delta ? delta_bit : 0));
  p = put_varint(p, delta ? first : lo);
  if (delta) p = put_varint(p, step_lo);
  if (w == 0) return p;
  // Each number is written as 8 bytes and the next one overwrites all but its low w.
  prev = first;
  for (size_t i = delta ? 1 : 0; i < n; ++i) {
    const uint64_t v = get<Size>(block[i], at);
    const uint64_t number = delta ? v - prev - step_lo : v - lo;
    std::memcpy(p, &number, 8);
    p += w;
    prev = v;
  }
  return p;
}

// A W-byte number, read as loads of 4, 2 and 1 bytes joined in registers: one memcpy of W
// bytes into a zeroed 8-byte variable went through the stack, and the 8-byte load after
// the narrower stores stalled on store forwarding (most of the time unpacking took).
template <typename T>
inline uint64_t load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <unsigned W>
inline uint64_t number(const uint8_t* p) {
  if constexpr (W == 0) return 0;
  else if constexpr (W == 8) return load<uint64_t>(p);
  else if constexpr (W >= 4) return load<uint32_t>(p) | (number<W - 4>(p + 4) << 32);
  else if constexpr (W >= 2) return load<uint16_t>(p) | (number<W - 2>(p + 2) << 16);
  else return p[0];
}

// Unpacking one column: W-byte numbers into a Size-byte field of n records (the field's
// first byte at `o`, the next record's Stride bytes on; a field keeps the low Size bytes).
template <unsigned W, bool Delta, unsigned Size, size_t Stride>
void unpack_column(const uint8_t* d, uint64_t base, uint64_t step, uint8_t* o, size_t n) {
  if constexpr (Delta) {
    uint64_t v = base;
    std::memcpy(o, &v, Size);
    for (size_t i = 1; i < n; ++i) {
      v += step + number<W>(d + (i - 1) * W);
      std::memcpy(o + i * Stride, &v, Size);
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      const uint64_t v = base + number<W>(d + i * W);
      std::memcpy(o + i * Stride, &v, Size);
    }
  }
}
using column_fn = void (*)(const uint8_t*, uint64_t, uint64_t, uint8_t*, size_t);
template <bool Delta, unsigned Size, size_t Stride, size_t... W>
constexpr std::array<column_fn, 9> columns_by_width(std::index_sequence<W...>) {
  return {&unpack_column<unsigned(W), Delta, Size, Stride>...};
}
template <bool Delta, unsigned Size, size_t Stride>
constexpr std::array<column_fn, 9> by_width = columns_by_width<Delta, Size, Stride>(std::make_index_sequence<9>());
template <size_t Stride>
inline column_fn column_for(unsigned size, bool delta, unsigned w) {
  switch (size) {
    case 2: return delta ? by_width<true, 2, Stride>[w] : by_width<false, 2, Stride>[w];
    case 4: return delta ? by_width<true, 4, Stride>[w] : by_width<false, 4, Stride>[w];
    default: return delta ? by_width<true, 8, Stride>[w] : by_width<false, 8, Stride>[w];
  }
}

inline bool read_varint(const uint8_t*& p, const uint8_t* end, uint64_t* out) {
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 64 && p != end; shift += 7) {
    const uint8_t b = *p++;
    v |= uint64_t(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      if (shift == 63 && b > 1) return false;  // the tenth byte holds the top bit only
      *out = v;
      return true;
    }
  }
  return false;
}

template <class L>
void pack(std::span<const typename L::record> events, std::vector<uint8_t>& out) {
  using record = typename L::record;
  // Written into a scratch buffer with room for the widest blocks (and the 8 bytes a
  // column's last number is written as), then appended: growing `out` by that room would
  // zero about as many bytes as the records hold.
  MESOB_ASSERT(events.size() <= events_per_frame_max);  // so the scratch stays under 800 KB
  thread_local std::unique_ptr<uint8_t[]> scratch;
  thread_local size_t scratch_bytes = 0;
  const size_t blocks = (events.size() + packed_block_events - 1) / packed_block_events;
  const size_t room = blocks * (block_overhead<L>() + 8) + events.size() * sizeof(record);
  if (room > scratch_bytes) {
    scratch = std::make_unique<uint8_t[]>(room);
    scratch_bytes = room;
  }
  uint8_t* p = scratch.get();
  for (size_t at = 0; at < events.size(); at += packed_block_events) {
    const auto block = events.subspan(at, std::min(packed_block_events, events.size() - at));
    *p++ = uint8_t(block.size());
    // Which bytes differ anywhere in the block from its first record (a few wide XORs a
    // record): a field whose bytes never do is its base alone, without a pass over it.
    // (16-byte registers: a loop over an array of words kept it in memory, and each
    // record's OR waited on the last one's store: most of the time packing took.) A
    // record's last 8 bytes, when its size is not a multiple of 16, are one more lane
    // loaded 8 bytes wide.
    const auto* first = reinterpret_cast<const uint8_t*>(&block[0]);
    static_assert(sizeof(record) % 8 == 0);
    constexpr size_t lanes = (sizeof(record) + 15) / 16;
    constexpr bool half_last = sizeof(record) % 16 != 0;
    auto lane = [](const uint8_t* b, size_t k) {
      return half_last && k + 1 == lanes ? _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 16 * k))
                                         : _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * k));
    };
    __m128i base[lanes], acc[lanes];
    for (size_t k = 0; k < lanes; ++k) {
      base[k] = lane(first, k);
      acc[k] = _mm_setzero_si128();
    }
    for (const record& e : block) {
      const auto* b = reinterpret_cast<const uint8_t*>(&e);
      [&]<size_t... k>(std::index_sequence<k...>) {  // unrolled, so acc stays in registers
        ((acc[k] = _mm_or_si128(acc[k], _mm_xor_si128(base[k], lane(b, k)))), ...);
      }(std::make_index_sequence<lanes>());
    }
    std::array<uint8_t, lanes * 16> differ;
    for (size_t k = 0; k < lanes; ++k) _mm_storeu_si128(reinterpret_cast<__m128i*>(differ.data() + 16 * k), acc[k]);
    for (const field& f : L::fields) {
      uint64_t bits = 0;
      std::memcpy(&bits, differ.data() + f.at, f.size);
      if (bits == 0) {
        *p++ = 0;
        uint64_t v = 0;
        std::memcpy(&v, first + f.at, f.size);
        p = put_varint(p, v);
      } else if (f.size == 2) p = pack_column<2>(block, f.at, p);
      else if (f.size == 4) p = pack_column<4>(block, f.at, p);
      else p = pack_column<8>(block, f.at, p);
    }
  }
  out.insert(out.end(), scratch.get(), p);
}

// One block as its columns say: the fields every record shares (as one record) and the
// columns of the others.
template <class L>
struct block_plan {
  static_assert(L::fields.size() <= 32, "varying_fields has a bit per field");
  using record = typename L::record;
  size_t n = 0;
  // The shared fields' bytes, as a record's (a varying field's bytes zero).
  std::array<uint8_t, sizeof(record)> shared;
  uint32_t varying_fields = 0;  // bit i: fields[i] has a column
  struct column {
    const field* f;
    column_fn fn;
    const uint8_t* data;
    uint64_t base, step;
    unsigned w;  // bytes a number
    bool delta;
  };
  std::array<column, L::fields.size()> varying;
  size_t varying_n = 0;
};

// Reads the block at p (at most `left` records to go), moving p past it. False, with why,
// if it is malformed.
template <class L>
bool plan_block(const uint8_t*& p, const uint8_t* begin, const uint8_t* end, size_t done, size_t left,
                block_plan<L>& b, std::string* why) {
  const size_t block_at = size_t(p - begin);
  const std::string noun = L::noun;
  auto fail = [&](const std::string& what) {
    *why = "packed " + noun + ": the block at byte " + std::to_string(block_at) + " (" + noun + " " +
           std::to_string(done) + "..): " + what;
    return false;
  };
  if (p == end) return fail("missing (" + std::to_string(left) + " " + noun + " to go)");
  b.n = *p++;
  // Every block but the last is full (so a frame has at most blocks_max).
  const size_t want = std::min(left, packed_block_events);
  if (b.n != want)
    return fail("holds " + std::to_string(b.n) + " " + noun + " where " + std::to_string(want) + " are due (" +
                std::to_string(left) + " to go, " + std::to_string(packed_block_events) + " a block)");
  b.varying_n = 0;
  b.varying_fields = 0;
  b.shared.fill(0);
  for (const field& f : L::fields) {
    if (p == end) return fail(std::string(f.name) + ": cut short");
    const uint8_t desc = *p++;
    const unsigned w = desc & 0x0f;
    const bool delta = (desc & delta_bit) != 0;
    if ((desc & ~(0x0f | delta_bit)) != 0 || w > 8)
      return fail(std::string(f.name) + ": unknown column descriptor " + std::to_string(desc));
    uint64_t base = 0, step = 0;
    if (!read_varint(p, end, &base) || (delta && !read_varint(p, end, &step)))
      return fail(std::string(f.name) + ": a varint cut short or over 10 bytes");
    const size_t bytes = (delta ? b.n - 1 : b.n) * w;
    if (size_t(end - p) < bytes) return fail(std::string(f.name) + ": cut short");
    if (!delta && w == 0) std::memcpy(b.shared.data() + f.at, &base, f.size);
    else {
      b.varying[b.varying_n++] = {&f, column_for<sizeof(typename L::record)>(f.size, delta, w), p, base, step, w, delta};
      b.varying_fields |= 1u << (&f - L::fields.data());
    }
    p += bytes;
  }
  return true;
}

// The block's records into dest; `fill`: its shared fields too (else dest holds them).
template <class L>
void unpack_block(const block_plan<L>& b, typename L::record* dest, bool fill = true) {
  if (fill) {
    typename L::record shared;
    std::memcpy(&shared, b.shared.data(), sizeof shared);
    std::fill(dest, dest + b.n, shared);
  }
  for (size_t c = 0; c < b.varying_n; ++c) {
    const auto& col = b.varying[c];
    col.fn(col.data, col.base, col.step, reinterpret_cast<uint8_t*>(dest) + col.f->at, b.n);
  }
}

// Plans every block of `in`, which must be exactly `count` records, before any is
// unpacked (into the first of `plans`; returns how many).
constexpr size_t blocks_max = (events_per_frame_max + packed_block_events - 1) / packed_block_events;
template <class L, size_t MaxBlocks = blocks_max>
using block_plans = std::array<block_plan<L>, MaxBlocks>;
template <class L, size_t MaxBlocks>
bool plan_blocks(std::span<const uint8_t> in, uint32_t count, block_plans<L, MaxBlocks>& plans, size_t* blocks,
                 std::string* why) {
  const std::string noun = L::noun;
  constexpr size_t most = MaxBlocks * packed_block_events;
  if (count > most) {
    *why = "packed " + noun + ": " + std::to_string(count) + " " + noun + " at once; at most " + std::to_string(most);
    return false;
  }
  const uint8_t* p = in.data();
  *blocks = 0;
  for (size_t done = 0; done < count; done += plans[(*blocks)++].n) {
    MESOB_ASSERT(*blocks < plans.size());  // full blocks: count / 128 rounded up, at most MaxBlocks
    if (!plan_block(p, in.data(), in.data() + in.size(), done, count - done, plans[*blocks], why)) return false;
  }
  if (p != in.data() + in.size()) {
    *why = "packed " + noun + ": " + std::to_string(in.data() + in.size() - p) + " bytes after the " +
           std::to_string(count) + " " + noun;
    return false;
  }
  return true;
}

// Unpacks exactly `count` records (at most MaxBlocks blocks' worth) from `in` into `out`.
// The plans live on the stack: 64 of them (a frame's) take about 57 KB for events; a
// caller that reads one block at a time (the snapshot's rows) asks for one.
template <class L, size_t MaxBlocks = blocks_max>
bool unpack(std::span<const uint8_t> in, uint32_t count, std::vector<typename L::record>& out, std::string* why) {
  block_plans<L, MaxBlocks> plans;
  size_t blocks = 0;
  if (!plan_blocks(in, count, plans, &blocks, why)) return false;
  out.resize(count);
  auto* dest = out.data();
  for (size_t i = 0; i < blocks; ++i) {
    unpack_block(plans[i], dest);
    dest += plans[i].n;
  }
  return true;
}

// Record `index` of one block of `count` records (`in` exactly that block): its shared
// fields and, from each column, its number alone (a delta column's first `index` summed),
// without unpacking the others. False, with why, as unpack.
template <class L>
bool unpack_one(std::span<const uint8_t> in, uint32_t count, uint32_t index, typename L::record* out,
                std::string* why) {
  const std::string noun = L::noun;
  if (count == 0 || count > packed_block_events || index >= count) {
    *why = "packed " + noun + ": record " + std::to_string(index) + " of a block of " + std::to_string(count);
    return false;
  }
  block_plan<L> b;  // one block's plan on the stack (about 1 KB)
  const uint8_t* p = in.data();
  const uint8_t* end = in.data() + in.size();
  if (!plan_block(p, in.data(), end, 0, count, b, why)) return false;
  if (p != end) {
    *why = "packed " + noun + ": " + std::to_string(end - p) + " bytes after the " + std::to_string(count) + " " + noun;
    return false;
  }
  std::memcpy(static_cast<void*>(out), b.shared.data(), sizeof *out);
  auto number_at = [](const uint8_t* d, unsigned w) {
    uint64_t v = 0;
    std::memcpy(&v, d, w);  // little-endian: the low w bytes
    return v;
  };
  for (size_t c = 0; c < b.varying_n; ++c) {
    const auto& col = b.varying[c];
    uint64_t v = col.base;
    if (col.delta && col.w == 0)
      v += uint64_t(index) * col.step;  // counted up by a constant step: no numbers
    else if (col.delta)
      for (uint32_t k = 1; k <= index; ++k) v += col.step + number_at(col.data + (k - 1) * col.w, col.w);
    else if (col.w != 0)
      v += number_at(col.data + size_t(index) * col.w, col.w);
    std::memcpy(reinterpret_cast<uint8_t*>(out) + col.f->at, &v, col.f->size);
  }
  return true;
}

}  // namespace mesob::wire::column_pack
