// event_pack: the packed form of events on the wire (wire/README.md, "Packed events").
//
// A subscriber that asks for it receives its events packed: in blocks of up to 128
// events, each field as a column of fixed-width numbers (a field every event of the block
// shares takes no bytes at all), the event's CRC-32C among them, so unpacking gives back
// the very 96 bytes the event log holds. A stream of transfers packs to about 12.5 bytes an
// event instead of 96, and every byte saved is one the engine's network thread, the
// kernel and the subscriber do not copy; fixed widths let the subscriber unpack without a
// chain of dependent loads (perf/RESULTS.md, twenty-second session).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "wire/types.hpp"

namespace mesob::wire {

// Events in one Events frame, at most (a subscription's batch_max).
constexpr uint32_t events_per_frame_max = 8'192;
// Events in one packed block: every block of a frame but its last holds exactly this many.
constexpr size_t packed_block_events = 128;
// The most bytes a block takes besides its numbers (which take at most an event's 96
// bytes an event): its count, and per field a descriptor and the widest varint of the
// field's width (a delta column is used only when it is smaller than the plain one).
constexpr size_t packed_block_overhead_max = 1 + 10 * (1 + 10) + 4 * (1 + 3) + 2 * (1 + 5);
// The most bytes an event takes packed, averaged over its block (a block of one event has
// no numbers: two is the worst case). What a subscription's window may hold is counted
// with this.
constexpr size_t packed_event_bytes_max = sizeof(event) + (packed_block_overhead_max + 1) / 2;

// Appends `events` (at most events_per_frame_max) to `out` as one frame's packed bytes.
void pack_events(std::span<const event> events, std::vector<uint8_t>& out);

// Unpacks exactly `count` events (at most events_per_frame_max) from `in` into `out`
// (replacing what it held). False, with where and why (`why` must not be null), if `in`
// is not `count` well-formed packed events and nothing more.
bool unpack_events(std::span<const uint8_t> in, uint32_t count, std::vector<event>& out, std::string* why);

// The same, handing the events to `each` a block (at most packed_block_events) at a time,
// from one buffer reused for every block: a consumer that takes events one by one never
// holds a frame's worth (which, eight subscribers at a time, pushed the engine's own data
// out of the caches). Nothing is handed out unless every block is well formed. Uses about
// 60 KB of stack.
using event_visitor = std::function<void(std::span<const event>)>;
bool unpack_events(std::span<const uint8_t> in, uint32_t count, const event_visitor& each, std::string* why);

// An event's CRC-32C (Castagnoli) of its bytes before `crc` (0..91): set by the event log
// as it appends the event and checked by every reader of it, the clients' included
// (parse_events), so that no fault between the disk and a subscriber (the hub's reads and
// packing, the network, a client's unpacking) hands out an event other than the one
// written.
[[nodiscard]] uint32_t event_crc(const event& e);
// The index of the first of `events` whose crc is not its event_crc, or events.size().
// Four events at a time: the crc32 instruction's latency is three cycles, and one event's
// chain alone would leave the unit idle two of them.
[[nodiscard]] size_t first_bad_crc(std::span<const event> events);

// Transfers packed the same way (blocks of up to 128, a column per field of `transfer` in
// its order: id low and high halves, pending_id low and high halves, debit_account_id,
// credit_account_id, amount, user_data, timestamp, currency, timeout_s, code, flags,
// reserved): the log's transfer batches (engine/README.md). At most events_per_frame_max
// at once; unpacking gives back the very 88 bytes of each.
constexpr size_t packed_transfer_block_overhead_max = 1 + 9 * (1 + 10) + 3 * (1 + 5) + 2 * (1 + 3);
void pack_transfers(std::span<const transfer> transfers, std::vector<uint8_t>& out);
bool unpack_transfers(std::span<const uint8_t> in, uint32_t count, std::vector<transfer>& out, std::string* why);

}  // namespace mesob::wire
