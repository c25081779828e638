// Fault injection for the write-ahead log, the snapshot store, the event log and the server's ring. Tests arm a probe; the writer consumes it
// on its next operation of that kind. Disarmed probes cost one relaxed load.
#pragma once

#include <atomic>

namespace mesob::storage {

struct failure_probes {
  std::atomic<int> write_errno{0};      // next group write fails with this errno
  std::atomic<uint64_t> write_errno_last_lsn{0};  // if not 0: write_errno waits for the group ending at this lsn
  std::atomic<int> fsync_errno{0};      // next fdatasync fails with this errno
  std::atomic<bool> short_write{false};  // next group write is cut to its first block
  std::atomic<bool> zero_write{false};   // next group write reports no bytes written
  std::atomic<int> snapshot_commit_errno{0};  // next snapshot commit (with meta) fails: an LMDB code
  std::atomic<int> snapshot_commit_failures{0};  // the next this many snapshot commits (with meta) fail with EIO
  // The snapshot store's next reads (get) of resolved pending rows fail as a full reader
  // table does (MDB_READERS_FULL), or, with resolved_read_panic, as an unusable store
  // (MDB_PANIC).
  std::atomic<int> resolved_read_failures{0};
  std::atomic<bool> resolved_read_panic{false};
  // The next `rows_commit_failures` commits without meta (the engine's records flushes) fail
  // with rows_commit_errno, an LMDB code.
  std::atomic<int> rows_commit_errno{0};
  std::atomic<int> rows_commit_failures{0};
  std::atomic<int> drop_rename_failures{0};  // the next renames of dropped log segments fail (EIO)
  std::atomic<int> dir_sync_failures{0};     // the next directory syncs (fsync_dir) fail (EIO)
  std::atomic<int> event_unlink_failures{0};  // the event log's next removals of segments by retention fail (EIO)
  std::atomic<int> drop_sync_failures{0};    // the next directory syncs of dropped log segments' renames fail
  std::atomic<int> prezero_failures{0};      // the next pre-zeroings of log segments fail (ENOSPC)
  // While set, a pre-zeroing of a log segment fails (ENOSPC) whenever dropped segments wait
  // to be deleted: a disk whose free space is in them.
  std::atomic<bool> prezero_full_while_drops{false};
  std::atomic<bool> event_cut_stop{false};     // the next event log cut stops before it replaces its segment
  std::atomic<int> event_sync_errno{0};  // the event log's next sync fails with this errno
  std::atomic<int> verify_segment_stall_ms{0};  // while set, the engine's log verify waits this long as it reaches each segment
  std::atomic<int> event_reader_open_stall_ms{0};  // the event log's next reader opening a full segment first waits this long
  std::atomic<int> audit_sync_errno{0};    // the audit trail's next append fails its fdatasync with this errno
  std::atomic<int> audit_cut_failures{0};  // the audit trail's next cuts of a failed append fail (EIO)
  std::atomic<int> audit_rotation_fault{0};  // the audit trail's next rotation fails (EIO): 1 at its second rename, 2 at its directory sync
  std::atomic<int> hub_damage_frames{0};  // the event hub's next frames read from the log carry their last event changed (its CRC not)
  std::atomic<int> hub_stall_ms{0};  // the event hub's next pass first waits this long (one reading old segments)
  std::atomic<int> server_sq_full{0};  // the next servers' submission entries find the ring's queue full after a submit

  static failure_probes& instance();
};

}  // namespace mesob::storage
