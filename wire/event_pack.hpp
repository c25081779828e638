// event_pack: the packed form of events on the wire (wire/README.md, "Packed events").
//
// A subscriber that asks for it receives its events packed: in blocks of up to 128
// events, each field as a column of fixed-width numbers (a field every event of the block
// shares takes no bytes at all), the event's CRC-32C among them, so unpacking gives back
// the very 96 bytes the event log holds. A stream of transfers packs to about 13 bytes an
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
// Events in one packed block, at most.
constexpr size_t packed_block_events = 128;
// The most bytes one event can take packed: a block of its own, every column at its
// widest (the count; per field a descriptor and two 10-byte bases; the event's 96 bytes).
constexpr size_t packed_event_bytes_max = 1 + 16 * (1 + 10 + 10) + sizeof(event);

// Appends `events` to `out`.
void pack_events(std::span<const event> events, std::vector<uint8_t>& out);

// Unpacks exactly `count` events (at most events_per_frame_max) from `in` into `out`
// (replacing what it held). False, with where and why, if `in` is not `count` well-formed
// packed events and nothing more.
bool unpack_events(std::span<const uint8_t> in, uint32_t count, std::vector<event>& out, std::string* why);

// The same, handing the events to `each` a block (at most packed_block_events) at a time,
// from one buffer reused for every block: a consumer that takes events one by one never
// holds a frame's worth (which, eight subscribers at a time, pushed the engine's own data
// out of the caches). Nothing is handed out unless every block is well formed.
using event_visitor = std::function<void(std::span<const event>)>;
bool unpack_events(std::span<const uint8_t> in, uint32_t count, const event_visitor& each, std::string* why);

}  // namespace mesob::wire
