// record_store: the resident window of recorded transfers, by serial (0, 1, 2, ...).
//
// A ring of `capacity` records (a power of two), allocated at start-up. Serial s is
// resident while s >= resident_begin() = size() - capacity; older records live only in
// the LMDB snapshot (written there by checkpoints before the ring may reuse their slot),
// so resident memory does not grow with history. The ring's memory is allocated, not
// written, at start-up (a ring of 4 MiB or more is mapped: its pages come in as the
// records do); append() writes a slot whole before anything reads it. Before, the ring
// was built record by record: every start wrote 152 MiB (the default window) and
// faulted every page in, whatever the engine went on to hold.
//
// Concurrency contract: the sequencer thread appends a record's content before the batch
// holding it is dispatched (the dispatch message orders the write before any shard's
// read) and is the only reader of older records. A record's result is written once, by
// its owner shard, while its batch executes; within that batch the owner may read it back
// (a post of a pending transfer created earlier in the same batch). The checkpoint thread
// reads records of executed batches. The sequencer appends serial n only when
// n < capacity + min(checkpointed, executed), so a slot is never reused while anything
// may still read it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <type_traits>

#include "wire/assert.hpp"
#include "wire/huge_pages.hpp"
#include "wire/types.hpp"

namespace mesob::actors {

constexpr uint32_t result_unresolved = 0xffffffffu;

// A transfer as recorded: the request with its engine timestamp, the account whose
// shard owns the record (the debit account, or the pending transfer's for post/void),
// and the outcome. Applied transfers also link each account's history: `*_prev` is the
// serial + 1 of that account's previous applied transfer (0: none), `*_after` its posted
// balances after this one.
struct transfer_record {
  wire::transfer t;
  uint64_t owner_account_id = 0;
  uint32_t result = result_unresolved;
  uint32_t reserved = 0;
  uint64_t debit_prev = 0;
  uint64_t credit_prev = 0;
  uint64_t debit_after_debits_posted = 0;
  uint64_t debit_after_credits_posted = 0;
  uint64_t credit_after_debits_posted = 0;
  uint64_t credit_after_credits_posted = 0;
};
static_assert(sizeof(transfer_record) == 152);

class record_store {
 public:
  explicit record_store(uint64_t capacity)
      : capacity_(capacity), mask_(capacity - 1), ring_(ring_alloc().allocate(capacity), ring_free{capacity}) {
    MESOB_ASSERT(capacity >= 2 && (capacity & (capacity - 1)) == 0);
  }
  record_store(const record_store&) = delete;
  record_store& operator=(const record_store&) = delete;

  [[nodiscard]] uint64_t size() const { return size_.load(std::memory_order_relaxed); }
  [[nodiscard]] uint64_t capacity() const { return capacity_; }
  [[nodiscard]] uint64_t resident_begin() const {
    const uint64_t n = size();
    return n > capacity_ ? n - capacity_ : 0;
  }
  [[nodiscard]] uint64_t memory_bytes() const { return capacity_ * sizeof(transfer_record); }

  // Recovery: the next serial is `n`; nothing is resident yet.
  void start_at(uint64_t n) {
    size_.store(n, std::memory_order_relaxed);
    floor_ = n;
  }
  // Sequencer only; the caller has made room (see the contract above).
  transfer_record& append() {
    const uint64_t n = size();
    size_.store(n + 1, std::memory_order_relaxed);
    transfer_record& r = ring_[n & mask_];
    r = transfer_record{};
    return r;
  }
  [[nodiscard]] bool resident(uint64_t serial) const {
    return serial < size() && serial >= resident_begin() && serial >= floor_;
  }
  [[nodiscard]] transfer_record& at(uint64_t serial) {
    MESOB_DEBUG_ASSERT(resident(serial));
    return ring_[serial & mask_];
  }

 private:
  // Read by every shard on every operation (at()): never written after construction.
  uint64_t capacity_;
  uint64_t mask_;
  // transfer_record is an implicit-lifetime type (an aggregate, trivially destructible):
  // its storage holds records once append() assigns them; no constructor runs per slot.
  // It has no padding, so a slot's bytes are its fields' whatever the memory held before
  // (records are compared and stored as bytes).
  static_assert(std::is_aggregate_v<transfer_record> && std::is_trivially_destructible_v<transfer_record> &&
                std::is_trivially_copyable_v<transfer_record> &&
                std::has_unique_object_representations_v<transfer_record>);
  using ring_alloc = huge_page_allocator<transfer_record>;
  struct ring_free {
    uint64_t n;
    void operator()(transfer_record* p) const { ring_alloc().deallocate(p, n); }
  };
  std::unique_ptr<transfer_record[], ring_free> ring_;
  uint64_t floor_ = 0;  // serials below it were never loaded into the ring
  // Written by the sequencer at every append: on a cache line of its own, or each
  // append would take the line above away from the shards (and their reads would
  // make the next append miss: 13% of the sequencer's replay time, perf record).
  alignas(64) std::atomic<uint64_t> size_{0};
};

}  // namespace mesob::actors
