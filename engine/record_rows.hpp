// Transfer records in the snapshot's `transfers` table, several to a row: the key is the
// serial of the row's first record, the value its records. Rows are written by flushes
// and checkpoints, so a row may hold fewer than a full one; serials are contiguous across
// rows, which every read checks.
//
// A row (snapshot format 11 on) is packed: an 8-byte header (magic "TRR1", u16 count
// 1..records_per_row, u8 pad 0 or 1, u8 zero), the records as one block of
// wire/column_pack.hpp (a column per field of transfer_record), then `pad` zero bytes.
// Rows of the first form (formats 3 to 10: 1 to 26 records of 152 bytes back to back,
// one LMDB put per 26 instead of one per record: perf/RESULTS.md, 2026-11-22) still read;
// a row is of that form exactly when its size is a multiple of 152 of at most 26, which a
// packed row never is (the pad byte sees to it). Why packed: at the engine's maximum rate
// the checkpoint thread wrote some 450 MB/s of rows and spent a quarter of a CPU in the
// kernel doing it (perf/RESULTS.md, twenty-fourth session). A record read alone takes its
// numbers from the row's columns without unpacking the others.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "actors/record_store.hpp"
#include "engine/id_hash.hpp"
#include "storage/snapshot.hpp"

namespace mesob::engine::record_rows {

constexpr uint32_t records_per_row = 128;       // packed rows
constexpr uint32_t plain_records_per_row = 26;  // rows of the first form
// 480 x 8 = 3,840 bytes and the row's check: a full row of id hashes is one overflow page too.
constexpr uint32_t hashes_per_row = 480;
static_assert(hashes_per_row * sizeof(uint64_t) + storage::snapshot_row_check_bytes <= 4096 - 16 &&
                  hashes_per_row * sizeof(uint64_t) >= 2048,
              "a full row of hashes is one overflow page");

// Appends records [first, first + n), read by `at(serial)`, in rows starting at `first`,
// and their ids' hashes under `hash` (the store's key: hash_key below) and lo_max (below).
bool append(storage::snapshot_store::writer& w, uint64_t first, uint64_t n,
            const std::function<const actors::transfer_record&(uint64_t)>& at, const id_hasher& hash);

// Record `serial`; false when it is not stored (or on error, with *error set).
bool get(storage::snapshot_store& s, uint64_t serial, actors::transfer_record* out, std::string* error);

// get, one record after another, keeping the last packed row it read: records of one row
// read in turn cost one look-up and one copy of the row (a start's checks of the open
// pending transfers older than the resident window, in serial order), not one each.
// Rows are never rewritten, so the kept row stays the store's.
class reader {
 public:
  explicit reader(storage::snapshot_store& s) : s_(s) {}
  bool get(uint64_t serial, actors::transfer_record* out, std::string* error);

 private:
  storage::snapshot_store& s_;
  uint64_t key_ = 0;
  uint32_t count_ = 0;  // records in the kept row (0: none kept)
  std::string bytes_;
};

// Calls fn(serial, record) for every stored record with begin <= serial < end, in order;
// false with *error when fn refuses one or a row is malformed (size, gap in serials).
bool scan(storage::snapshot_store& s, uint64_t begin, uint64_t end,
          const std::function<bool(uint64_t, const actors::transfer_record&)>& fn, std::string* error);

// One past the last stored serial; 0 when the table is empty.
std::optional<uint64_t> end(storage::snapshot_store& s, std::string* error);

// Each stored record's id hash (under the store's key), in `transfer_ids` rows of up to
// hashes_per_row keyed by their first serial: append writes them in the same
// transaction as the records, so a start rebuilds the id index reading 8 bytes per
// transfer instead of 152. Same checks as scan and end.
bool scan_hashes(storage::snapshot_store& s, uint64_t begin, uint64_t end,
                 const std::function<bool(uint64_t, uint64_t)>& fn, std::string* error);
std::optional<uint64_t> hashes_end(storage::snapshot_store& s, std::string* error);
// Writes the hashes of records [from, end) from the records themselves, for a snapshot
// written before `transfer_ids` existed (format version 9 and older), or hashed under
// no key or another (set_hash_key), or one whose filling-in was cut short; a
// transaction per 2^20 records, so `from` is where the table ends.
bool fill_in_hashes(storage::snapshot_store& s, uint64_t from, uint64_t end, const id_hasher& hash,
                    std::string* error);

// The key the store's ids are hashed under (engine/id_hash.hpp): the `id_hash_key` row
// (key 0), magic "IDK1", 4 zero bytes, k0 and k1 (u64 each). nullopt with *error empty
// when the store has none (a new store, or one of a build before keys: format 12 and
// older, whose hashes are of an unkeyed function); with *error set when the row is
// malformed (the start stops: a key made up anew would hide the damage).
std::optional<id_hash_key> hash_key(storage::snapshot_store& s, std::string* error);
// Makes `key` the store's and drops every stored hash (of no key or another), in one
// transaction: a crash after it leaves a store whose hashes the next start fills in.
// The store's snapshot row (`meta`, when it has one) is marked this build's format in
// the same transaction, position unchanged: a build before keys then refuses the store
// at once, instead of reading hashes it cannot make, or writing unkeyed ones beside
// keyed ones (as it would fill in hashes a crash left unwritten).
bool set_hash_key(storage::snapshot_store& s, const id_hash_key& key, const std::optional<storage::snapshot_meta>& meta,
                  std::string* error);

// The stored records' highest id.lo per bucket of id.hi (id_index::bucket_of): the id
// index's lo_max for ids loaded by hash (id_index::set_lo_max). One `id_lo_max` row (key
// 0): magic "IDL1" (the layout and the bucket function; a row of another reads as none),
// 4 zero bytes, the serial it counts records to (u64), then a (bucket u32, lo u64) pair
// for each bucket holding any record, buckets ascending. append keeps it in the same
// transaction when it counts to `first` (it starts it at serial 0) and erases it
// otherwise, so it is never behind the records: a row of a build that appended without
// keeping it no longer counts to the end.
// The row as a bucket-indexed vector when it counts records [0, end) (to `end` or past:
// records are never rewritten, so it bounds those); nullopt when it does not, or there
// is none, or it is of another magic (the engine then writes it: fill_in_lo_max), or on
// error (with *error set).
std::optional<std::vector<uint64_t>> lo_max(storage::snapshot_store& s, uint64_t end, std::string* error);
// Writes the row from records [0, end) themselves, for a snapshot without it (written
// before it existed, or past a build that did not keep it): one transaction.
bool fill_in_lo_max(storage::snapshot_store& s, uint64_t end, std::string* error);

}  // namespace mesob::engine::record_rows
