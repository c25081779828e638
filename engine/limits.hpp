// Every limit of the engine, in one place, with the relations between them asserted.
#pragma once

#include <cstdint>

#include "actors/batch.hpp"
#include "wire/codec.hpp"
#include "wire/types.hpp"

namespace mesob::engine {

// Operations in one request (and one log record).
constexpr uint32_t batch_ops_max = actors::batch_ops_max;
// Shards (one per core by default).
constexpr uint32_t shards_max = actors::shards_max;
// A difference between the wall clock and the engine clock past this is a step of the
// wall clock, which the engine clock does not follow (engine_clock.hpp). NTP steps from
// 128 ms (ntpd) or a second (chrony's usual makestep); a slew moves both clocks alike.
constexpr uint64_t clock_step_max_ns = 1'000'000'000;
// Connections a listening port queues before they are accepted (client and admin ports).
constexpr int listen_backlog = 1024;
// Requests waiting for the sequencer before submit() blocks its caller.
constexpr uint32_t queue_requests_max_default = 4096;
// Batches sequenced but not yet executed by every shard (bounds memory and replay).
constexpr uint32_t batches_in_flight_max = 8192;
// While a commit group is in flight, the request that brings the sequencer's queue to
// this length wakes it to stage the next group during the fdatasync. Waking at the first
// request costs too many wake-ups when shards share the cores; never waking leaves all
// staging until after the fdatasync. 16 measured best of 1, 8, 16 and never
// (perf/RESULTS.md, 2026-11-22, third session).
constexpr uint32_t sequencer_wake_in_flight = 16;
// The longest flush gap (config::wal_flush_gap_us) a configuration may set: a second.
constexpr uint32_t wal_flush_gap_us_max = 1'000'000;
// What a frame queued to a session costs besides its bytes (its entry and allocation),
// counted against the session's out_bytes_max with them: a flood of 16-byte pongs held
// about four bytes of memory for each byte counted.
constexpr uint64_t session_frame_keep_bytes = 80;
// A session that has not authenticated sends an Auth (its gateway id, up to 64 bytes, and
// a 32-byte MAC: a few hundred bytes) or pings: a larger frame before the handshake is a
// framing loss, so that peers without credentials cannot each have the server buffer a
// frame of frame_bytes_max.
constexpr uint32_t handshake_frame_bytes_max = 4096;
// Progress is a send completing, or the socket's send queue in the kernel shrinking by
// this many bytes since progress was last counted: a peer that reads a segment now and
// then (13 KB/s or less over the default server_config::stall_timeout_ms of 5 s) is not reading, and cannot keep bytes
// queued to it for ever.
constexpr uint64_t session_drain_min_bytes = 64u << 10;
// A session that has taken no frame for this long, with nothing buffered, gives its
// frame buffer back (it grew for a large frame): a client that sends large batches more
// often keeps it, and one that went quiet holds none.
constexpr uint64_t session_reader_idle_ms = 2000;
// While all sessions together hold out_bytes_total_max, a session holding less than its
// share (out_bytes_total_max / connections_max, at least this) is still read: sessions
// holding many responses unread cannot stop every other gateway's requests (nor new
// connections' handshakes). A session under its share takes no request whose answer's
// bound (reserved while the request is in the engine) would take it past its share: such
// a request waits, unread, until the total comes down. So what the sessions under their
// share add past the total is at most a share each (and the one request that crossed it,
// at most out_bytes_max): about twice the total in all. (Before, each took one more
// request of any bound, up to out_bytes_max apiece.)
constexpr uint64_t session_total_share_min = 64u << 10;

// Bytes received count as activity (against idle_timeout_ms) in steps of this many, or a
// frame taken: a frame trickled in slower than this per idle timeout (13 bytes a second
// at the default 300 s) does not keep its session, while a slow upload of a large frame
// does.
constexpr uint64_t session_recv_activity_bytes = 4096;
// A failed flush of transfer records to the snapshot is tried again after this pause,
// doubling up to the maximum; writes go on meanwhile until the resident window is full
// (then they are refused until restart).
constexpr uint32_t records_flush_retry_ms_first = 250;
constexpr uint32_t records_flush_retry_ms_max = 16000;
// The log kept over its limit (config::wal_kept_max_mib): checkpoints the sequencer takes,
// a pause apart, before it refuses writes until restart (engine.cpp, keep_log_within_limit).
constexpr uint32_t log_limit_checkpoint_tries = 3;
constexpr uint32_t log_limit_checkpoint_pause_ms = 250;
// Records in one page of an account's history, and in one request's pages summed.
constexpr uint32_t history_page_max = wire::history_page_records_max;
constexpr uint32_t history_request_records_max = wire::history_request_records_max;
// Equb groups in one look-up (a group with 1,000 seats is ~100 KB as it travels).
constexpr uint32_t groups_lookup_max = 64;
// Records walked back for the balance-as-of queries of one request before giving up (the
// queries past it get history_walk_limit).
constexpr uint32_t history_walk_max = 65536;
// Records the sequencer walks for look-ups between two passes over its queue: writes
// wait behind at most about this many (a request's walk is not split).
constexpr uint32_t walk_pass_steps = 65536;
// Creates of accounts and groups, transfer batches and orders carry 8 bytes of capacity
// before their operations: the engine's accounts_max, groups_max or pending_max, at most
// capacity_max; transfer batches and orders then 8 more, its transfers_max (rules version
// 24), at most transfers_max_limit (the id index's serials, engine/id_index.hpp); equb
// operations 8 more, the accounts_max their escrows count against (rules version 31).
constexpr uint64_t record_capacity_bytes = 16;
constexpr uint64_t capacity_max = 1ull << 36;
constexpr uint64_t transfers_max_limit = (1ull << 40) - 2;
// The largest log payload: a batch header, its capacity and 8,192 of the largest operation.
constexpr uint64_t batch_record_header_bytes = 16;
constexpr uint64_t operation_bytes_max = sizeof(wire::transfer);
constexpr uint64_t batch_payload_bytes_max =
    batch_record_header_bytes + record_capacity_bytes + uint64_t(batch_ops_max) * operation_bytes_max;

static_assert(operation_bytes_max >= sizeof(wire::account));
static_assert(operation_bytes_max >= sizeof(wire::order));
// Group operations are larger (152 bytes): fewer of them make a batch, so that a batch
// of them is no larger than a full transfer batch.
constexpr uint32_t equb_ops_max = 4096;
static_assert(record_capacity_bytes + uint64_t(equb_ops_max) * sizeof(wire::equb_op) <= uint64_t(batch_ops_max) * operation_bytes_max);
// While equb groups are scheduled, or orders wait for a broker or are ending, the engine
// logs a tick after this long without a logged batch: a restart measures the outage
// their schedules and waits move by from the last logged time (the resume marker), and
// without it a quiet spell before a crash counted as outage (a 5-hour outage after 27
// quiet days moved a schedule 27 days; an ending order's day, cancelled 23 hours before a
// ten-minute stop, moved 23 hours).
constexpr uint64_t resume_heartbeat_ns = 60'000'000'000ull;
static_assert(operation_bytes_max >= sizeof(wire::account_status_change));
// Gateway registry changes in one request (280 bytes each; operators make a few at a time).
constexpr uint32_t gateway_ops_max = 64;
static_assert(sizeof(wire::deposit) <= operation_bytes_max);
static_assert(shards_max <= 32, "sync masks are 32-bit");
static_assert(batch_payload_bytes_max < (8u << 20) - 4096 - 80,
              "a full batch must fit one default commit group");

}  // namespace mesob::engine
