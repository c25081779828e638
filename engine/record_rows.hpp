// Transfer records in the snapshot's `transfers` table, several to a row: the key is the
// serial of the row's first record, the value up to records_per_row records back to back.
// One LMDB put per 26 records instead of one per record: 127 ns of CPU per record
// appended against 393 (perf/RESULTS.md, 2026-11-22). 26 x 152 = 3,952 bytes fills one
// 4 KiB overflow page. Rows are written by flushes and checkpoints, so a row may hold
// fewer; serials are contiguous across rows, which every read checks.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "actors/record_store.hpp"
#include "storage/snapshot.hpp"

namespace mesob::engine::record_rows {

constexpr uint32_t records_per_row = 26;
// 480 x 8 = 3,840 bytes: a full row of id hashes is one overflow page too.
constexpr uint32_t hashes_per_row = 480;
static_assert(hashes_per_row * sizeof(uint64_t) <= 4096 - 16 && hashes_per_row * sizeof(uint64_t) >= 2048,
              "a full row of hashes is one overflow page");

// Appends records [first, first + n), read by `at(serial)`, in rows starting at `first`,
// and their ids' hashes (below).
bool append(storage::snapshot_store::writer& w, uint64_t first, uint64_t n,
            const std::function<const actors::transfer_record&(uint64_t)>& at);

// Record `serial`; false when it is not stored (or on error, with *error set).
bool get(storage::snapshot_store& s, uint64_t serial, actors::transfer_record* out, std::string* error);

// Calls fn(serial, record) for every stored record with begin <= serial < end, in order;
// false with *error when fn refuses one or a row is malformed (size, gap in serials).
bool scan(storage::snapshot_store& s, uint64_t begin, uint64_t end,
          const std::function<bool(uint64_t, const actors::transfer_record&)>& fn, std::string* error);

// One past the last stored serial; 0 when the table is empty.
std::optional<uint64_t> end(storage::snapshot_store& s, std::string* error);

// Each stored record's id hash (id_index::hash_of), in `transfer_ids` rows of up to
// hashes_per_row keyed by their first serial: append writes them in the same
// transaction as the records, so a start rebuilds the id index reading 8 bytes per
// transfer instead of 152. Same checks as scan and end.
bool scan_hashes(storage::snapshot_store& s, uint64_t begin, uint64_t end,
                 const std::function<bool(uint64_t, uint64_t)>& fn, std::string* error);
std::optional<uint64_t> hashes_end(storage::snapshot_store& s, std::string* error);
// Writes the hashes of records [from, end) from the records themselves, for a snapshot
// written before `transfer_ids` existed (format version 9 and older), or one whose
// filling-in was cut short; a transaction per 2^20 records, so `from` is where the
// table ends.
bool fill_in_hashes(storage::snapshot_store& s, uint64_t from, uint64_t end, std::string* error);

}  // namespace mesob::engine::record_rows
