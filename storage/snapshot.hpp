// mesob::storage snapshot store: LMDB holding actor state and the log position it covers.
//
// Tables (each keyed by a 64-bit big-endian integer, so LMDB's order is numeric):
//   meta       key 0: snapshot_meta
//   accounts   account id -> the engine's account bytes
//   transfers  serial     -> transfer records from that serial on, several to a row
//                           (engine/record_rows.hpp; append-only)
//   pending    serial     -> an open pending transfer (the engine's bytes; overwritten as it
//                           changes, erased when it is resolved)
//   resolved   serial     -> a resolved pending transfer's final state (posted, voided, expired)
//   groups     group id   -> an equb group (actors/equb_group.hpp, encode_entry)
//   gateways   0          -> the gateway registry (actors/gateway_registry.hpp, encode)
//   payouts    payout id  -> a payout a desk holds (actors/payout_desk.hpp, encode_payout)
//   desks      currency   -> a payout desk without its payouts (encode_desk); key 0: the
//                            gateways' sessions up (desk_table::encode_sessions)
//   recon      gateway << 44 | day << 24 | currency -> reconciliation counts (the days a cut copied written
//                            over, older ones kept)
//   market     0          -> the instruments, prices and halts (actors/market.hpp, book::encode)
//   policy     0          -> KYC tiers and risk profiles (actors/customers.hpp, policy::encode)
//   customers  wallet id  -> a customer's KYC record (actors/customers.hpp, table::encode)
//   portfolios wallet id  -> a portfolio: positions, orders, settlements owed
//                            (actors/trading.hpp, table::encode_row)
//   transfer_ids serial   -> the stored transfers' id hashes, keyed (engine/record_rows.hpp)
//   id_lo_max  0          -> the stored transfers' highest id.lo by bucket of id.hi
//                            (engine/record_rows.hpp; optional: absent, as in an older
//                            build's snapshot, the engine writes it from the records at
//                            start, once)
//   id_hash_key 0         -> the key transfer_ids' hashes are under (engine/id_hash.hpp;
//                            absent, as in a store of format 12 or older, the engine
//                            makes one and hashes the ids again at start, once)
// One checkpoint is one write transaction: state and the lsn it covers commit together,
// so a snapshot is never half-written. Readers may run concurrently with the writer
// (LMDB MVCC); LMDB lets one write transaction run at a time (the engine's checkpoint
// thread's, and at start the recovery thread's filling in what an older build left out,
// record_rows.hpp: each waits for the other).
//
// Every row's bytes (meta's too) are followed on the disk by a 4-byte CRC-32C of the
// table, the key and the bytes (format 12), checked by every read: LMDB checks nothing of
// what it reads back, and a damaged row must stop a start (or fail its read) rather than
// become a balance. A store of an older format is converted when it is opened for writing
// (every row rewritten with its check, in one transaction); opened read-only it is read
// as it is.
//
// Caveats: the map size is a ceiling set at open (sparse file); a checkpoint that would
// pass it fails with MDB_MAP_FULL and leaves the previous snapshot intact.
#pragma once

#include <lmdb.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "storage/checksum.hpp"

namespace mesob::storage {

constexpr uint64_t snapshot_magic = 0x50414e53424f534dull;  // "MSOBSNAP"
// 3: transfer records in rows of many; 4: resolved pending transfers in their own table,
// so that recovery reads only the open ones; 5: equb groups; 6: the gateway registry,
// payouts and their desks; 7: the market; 8: the policy and customers; 9: portfolios;
// 10: each transfer's id hash in `transfer_ids`; 11: transfer records packed in rows of
// up to 128 (engine/record_rows.hpp). Versions 4 to 10 are read as well (they have none
// of what came after them; the engine fills `transfer_ids` in at start, and reads rows
// of the first form beside packed ones); 12: every row followed by its check (above;
// older stores are converted at open); 13: `transfer_ids` hashed under the store's own
// key (`id_hash_key`, engine/id_hash.hpp; a start with none makes one and hashes the ids
// again).
constexpr uint32_t snapshot_format_version = 13;
constexpr uint32_t snapshot_format_oldest = 4;
constexpr size_t snapshot_row_check_bytes = 4;  // each row's check, after its bytes
// In the error of a read that found the store's file damaged (a row failing its check,
// LMDB finding a page that is not one, the file cut short), not merely unreadable (no
// permission, out of memory): mesob-log tells them apart.
constexpr const char* snapshot_damaged = "the snapshot file is damaged";

struct snapshot_meta {
  uint64_t magic = snapshot_magic;
  uint32_t version = snapshot_format_version;
  uint32_t reserved = 0;
  uint64_t lsn = 0;          // every log record <= lsn is reflected in this snapshot
  chain_hash chain{};        // chain hash of record `lsn`
  uint64_t clock_ns = 0;     // engine clock after record `lsn`
  uint64_t next_serial = 0;  // first transfer serial not yet assigned
  uint64_t accounts = 0;     // rows in `accounts`, checked on load
  uint64_t transfers = 0;    // transfer records in `transfers` (the next serial), checked on load
};
static_assert(sizeof(snapshot_meta) == 88);

enum class table : int {
  accounts = 0,
  transfers = 1,
  pending = 2,
  resolved = 3,
  groups = 4,
  gateways = 5,
  payouts = 6,
  desks = 7,
  recon = 8,
  market = 9,
  policy = 10,
  customers = 11,
  portfolios = 12,
  transfer_ids = 13,
  id_lo_max = 14,
  id_hash_key = 15,
};
constexpr int tables = 16;
const char* table_name(table t);  // as LMDB names it

class snapshot_store {
 public:
  static std::unique_ptr<snapshot_store> open(const std::string& dir, uint64_t map_bytes,
                                              std::string* error);
  // For inspection (mesob-log): no directory, table or file is created and nothing is
  // written but LMDB's reader table (none when the store has no lock file: no process has
  // it open then, and it is read without one). A store without a snapshot yet (no tables) opens with
  // *error empty and returns nullptr.
  static std::unique_ptr<snapshot_store> open_read_only(const std::string& dir, std::string* error);
  ~snapshot_store();
  // Reader slots of dead processes cleared (they pin old pages): looked for at open,
  // before each checkpoint (begin) and when a read finds the reader table full.
  [[nodiscard]] uint32_t stale_readers_cleared() const {
    return stale_readers_cleared_.load(std::memory_order_relaxed);
  }
  snapshot_store(const snapshot_store&) = delete;
  snapshot_store& operator=(const snapshot_store&) = delete;

  // The map's size, and the bytes up to the newest commit's last page: LMDB reuses pages
  // freed below that first, and a commit that needs pages past the map fails
  // MDB_MAP_FULL (every checkpoint and records flush then fails until a restart with a
  // larger --snapshot-map-gib). From any thread.
  struct usage_bytes {
    uint64_t map = 0, used = 0;
    [[nodiscard]] bool nearly_full() const { return used >= map / 5 * 4; }  // 80% or more
  };
  [[nodiscard]] usage_bytes usage() const;

  // The newest snapshot's meta, or nullopt for an empty store. Read-only, the rows' format
  // is read again in the same transaction: an engine's start may have converted the store
  // since it was opened.
  std::optional<snapshot_meta> read_meta(std::string* error);

  // Calls fn(key, bytes) for every row of a table with begin_key <= key (< *end_key,
  // if given), in key order; fn returning false stops the scan with an error, as does a
  // row failing its check (named in *error). A scan of the whole table (no begin_key or
  // end_key) also fails when it walked fewer or more rows than LMDB counts in the table
  // (pages of its tree damaged or lost: rows gone without any row failing its check).
  // Safe from any thread (each scan is its own read transaction).
  bool scan(table t, const std::function<bool(uint64_t, std::span<const uint8_t>)>& fn,
            std::string* error, std::optional<uint64_t> end_key = std::nullopt,
            uint64_t begin_key = 0);
  // Walks the keys of `t` (its rows' bytes untouched: a large row's pages are not read)
  // and fails, as a whole-table scan does, when they are fewer or more than LMDB counts:
  // for a table a start reads only in part (`transfers`: the resident window's records).
  bool check_row_count(table t, std::string* error);
  // Checks every row of `t` (a scrub): counts them in *rows and calls damaged(key, why)
  // for each that fails its check, going on past it. False only when the table cannot be
  // read (*error), or when no commit came while it read and it walked fewer or more rows
  // than LMDB counts in the table (as scan). A table this store lacks (opened read-only) has no rows; rows of a
  // store of a format before checks are counted, not checked.
  // Each verify_rows_per_read rows are read in a transaction of their own.
  bool verify_rows(table t, const std::function<void(uint64_t key, const std::string& why)>& damaged, uint64_t* rows,
                   std::string* error);
  static constexpr uint64_t verify_rows_per_read = 4096;
  // Whether rows carry their check (a store opened read-only may be of an older format).
  [[nodiscard]] bool rows_checked() const { return rows_checked_; }
  // Drops this process's mapping of pages read so far (they stay in the page cache), so
  // a scan over history does not stay in resident memory.
  void release_pages();
  // Drops from the page cache the pages of rows of `t` with keys in [begin_key, end_key)
  // that fill pages of their own (rows of half a page or more: LMDB's overflow pages),
  // once a commit has made them durable. Such rows are written once and rarely read
  // again; dropped, their pages return to the kernel at once and serve the next commit's
  // writes, where fresh ones cost far more on this VM (perf/RESULTS.md, 2026-11-30
  // sixteenth session). Advisory, and never loses data (the kernel keeps dirty or mapped
  // pages); a failed scan may drop part of the range. Call release_pages first and
  // after (mapped pages are not dropped; the scan maps the tree's pages).
  void uncache_rows(table t, uint64_t begin_key, uint64_t end_key);
  // The row with the largest key <= `key` (the last row for UINT64_MAX): its key and a
  // copy of its bytes. False when there is none (or on error, with *error set).
  bool floor_row(table t, uint64_t key, uint64_t* row_key, std::string* bytes, std::string* error);
  // Why a get failed, when it was the store rather than the row (absent, failing its
  // check, or a damaged tree: those read the same every time).
  enum class store_failure : uint8_t {
    none,     // the row's doing, or no failure
    passing,  // LMDB's error other than damage (a full reader table, no memory): may read later
    lasting,  // MDB_PANIC: the store is unusable until the process ends
  };
  // One row, copied into `out`; false if absent (*error untouched) or unreadable (a row
  // failing its check, an LMDB error: *error says which; *failure, if given, which kind).
  bool get(table t, uint64_t key, std::string* out, std::string* error, store_failure* failure = nullptr);

  // A checkpoint: one write transaction.
  class writer {
   public:
    ~writer();
    bool put(table t, uint64_t key, std::span<const uint8_t> bytes);
    // One row as this transaction sees it, copied into `out`; false if absent (error()
    // empty) or on error.
    bool get(table t, uint64_t key, std::string* out);
    bool append(table t, uint64_t key, std::span<const uint8_t> bytes);  // key > last key
    bool clear(table t);
    bool erase_from(table t, uint64_t first_key);  // every row with key >= first_key
    bool erase(table t, uint64_t key);             // one row, if there is one
    bool commit_without_meta();  // rows only: the snapshot's position is unchanged
    bool commit(const snapshot_meta& meta);
    [[nodiscard]] const std::string& error() const { return error_; }

   private:
    friend class snapshot_store;
    snapshot_store* store_ = nullptr;
    MDB_txn* txn_ = nullptr;
    std::string error_;
  };
  std::unique_ptr<writer> begin(std::string* error);

 private:
  snapshot_store() = default;
  void find_map(const std::string& dir);
  // find_map, and its map registered with the SIGBUS guard (snapshot.cpp): a read that
  // faults (the file cut short, the disk failing) says which file and exits 1.
  void guard_map(const std::string& dir);
  int bus_slot_ = -1;
  bool read_row_format(MDB_txn* txn, bool* found, std::string* error);
  bool convert_rows(MDB_txn* txn, std::string* error);
  // Checks a row read from table number `table_no` (tables' own numbers; meta is
  // meta_table) and drops its check from *val; false with *error naming the row.
  bool unwrap(int table_no, uint64_t key, MDB_val* val, std::string* error) const;
  // LMDB's count of the rows of `t` in `txn` against the rows a walk in it found; false
  // with *error when they differ.
  bool rows_counted(MDB_txn* txn, table t, uint64_t walked, std::string* error) const;
  // mdb_put of a row with its check.
  int put_row(MDB_txn* txn, MDB_dbi dbi, int table_no, uint64_t key, std::span<const uint8_t> bytes,
              unsigned flags) const;
  // At most rows_max rows; when more follow, *next_key is the next one's key (else it is
  // reset).
  bool scan_rows(table t, const std::function<bool(uint64_t, std::span<const uint8_t>)>& fn, std::string* error,
                 std::optional<uint64_t> end_key, uint64_t begin_key, bool check, uint64_t rows_max = UINT64_MAX,
                 std::optional<uint64_t>* next_key = nullptr);
  bool rows_checked_ = false;
  std::atomic<uint32_t> stale_readers_cleared_{0};
  bool read_only_ = false;  // open_read_only: another process may convert the rows while open
  MDB_env* env_ = nullptr;
  void* map_addr_ = nullptr;
  size_t map_bytes_ = 0;
  MDB_dbi dbi_meta_ = 0;
  MDB_dbi dbi_[tables] = {};
  bool absent_[tables] = {};  // read-only: tables of a later build, not in this store
};

}  // namespace mesob::storage
