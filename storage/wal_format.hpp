// The write-ahead log's on-disk format (format version 2). See storage/README.md.
//
// A log is a directory of segment files `wal-<index:016x>.log`, each exactly
// `segment_bytes` long, pre-zeroed before use. Block 0 (4 KiB) holds a segment_header.
// Records follow from offset 4096. The writer appends records in groups; every group
// starts on a 4 KiB boundary and is followed by zero bytes up to the next boundary,
// so each group is one aligned O_DIRECT write linked to one fdatasync. Several groups
// may be in flight at once (segment_header::flights_max); they are acknowledged in order.
//
// Each record (header and payload) is followed by zero bytes up to a multiple of
// record_align (8), so the next record's header, or the padding's zero magic, starts
// inside the block it belongs to: a reader that looked for the magic in the last bytes
// of a block would read the next group's first bytes instead. Payloads of 8-byte
// multiples (every record before packed transfer batches) need no padding.
//
// Caveats:
// - A zero `magic` at a 4 KiB boundary means "no more data in this segment".
// - A zero `magic` inside a block means "padding: continue at the next boundary".
// - All integers are little-endian.
#pragma once

#include <cstddef>
#include <cstdint>

#include "storage/checksum.hpp"

namespace mesob::storage {

constexpr uint64_t segment_magic = 0x314c4157424f5345ull;  // "ESOBWAL1"
constexpr uint32_t record_magic = 0x4345524dU;             // "MREC"
// Version 2: records padded to record_align. Version 1 segments (whose records all were
// 8-byte multiples) read the same; a build that reads only version 1 refuses version 2
// segments by name rather than misread a padded record.
constexpr uint32_t wal_format_version = 2;
constexpr size_t wal_block_bytes = 4096;

struct segment_header {
  uint64_t magic;           // segment_magic
  uint32_t version;         // wal_format_version
  uint32_t header_crc;      // crc32c of this struct with header_crc = 0
  uint64_t segment_index;   // equals the index in the file name
  uint64_t first_lsn;       // lsn of the first record in this segment
  chain_hash prev_chain;    // chain hash of the record before first_lsn (zeros at lsn 1)
  uint64_t created_ns;      // reserved: written 0 (segments are told apart by their first lsn)
  uint64_t flights_max;     // groups the writer kept in flight at once (0 in older segments: 1)
  // The file's size as made (pre-zeroed) by the writer; 0 in older segments (unknown).
  // A scan refuses a segment of another size: a copy or repair that cut it short at a
  // group boundary would otherwise lose the acknowledged records past the cut unseen.
  uint64_t segment_bytes;
  uint64_t reserved;        // zero
};
static_assert(sizeof(segment_header) == 96);

enum class record_kind : uint16_t {
  batch = 1,  // one engine batch (payload defined by mesob::engine)
};

struct record_header {
  uint32_t magic;            // record_magic
  uint32_t header_crc;       // crc32c of bytes [8, sizeof(record_header))
  uint32_t payload_crc;      // crc32c of the payload
  uint32_t payload_bytes;    // length of the payload that follows this header
  uint64_t lsn;              // log sequence number, 1, 2, 3, ... without gaps
  uint64_t group_first_lsn;  // lsn of the first record of the group it was committed in
  uint64_t timestamp;        // engine clock (ns) of the record
  uint16_t kind;             // record_kind
  uint16_t version;          // payload format version
  // How far back the oldest group not yet reported durable was when this record's
  // group was submitted: group_first_lsn minus that group's first lsn (0: none was in
  // flight). Set at submit, after the chain hash, so it is hashed as zero; the header
  // checksum covers it. Recovery uses it to tell a torn tail from damage to a group
  // that was already acknowledged (scan_wal).
  uint32_t unacked_back;
  chain_hash chain;          // SHA-256(prev chain || bytes [8, 48) of this header with unacked_back 0 || payload)
};
static_assert(sizeof(record_header) == 80);
constexpr uint64_t record_align = 8;
constexpr size_t record_chained_bytes_begin = 8;
constexpr size_t record_chained_bytes_end = 48;

}  // namespace mesob::storage
