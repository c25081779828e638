// record_store: every transfer the engine has recorded, by serial (0, 1, 2, ...).
//
// Concurrency contract: the sequencer thread appends a record's content before the
// batch holding it is dispatched (the dispatch message orders the write before any
// shard's read); the record's result is written once, by its owner shard, when the
// batch executes; readers after that are the owner shard itself and the checkpoint
// thread (after a barrier). Chunks are never moved, so readers need no lock. The chunk
// table is allocated at start-up: `records_max` is a hard limit.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "wire/assert.hpp"
#include "wire/types.hpp"

namespace mesob::actors {

constexpr uint32_t result_unresolved = 0xffffffffu;

// A transfer as recorded: the request with its engine timestamp, the account whose
// shard owns the record (the debit account, or the pending transfer's for post/void),
// and the outcome.
struct transfer_record {
  wire::transfer t;
  uint64_t owner_account_id = 0;
  uint32_t result = result_unresolved;
  uint32_t reserved = 0;
};
static_assert(sizeof(transfer_record) == 104);

class record_store {
 public:
  static constexpr uint64_t chunk_records = 1u << 16;

  explicit record_store(uint64_t records_max)
      : chunks_max_((records_max + chunk_records - 1) / chunk_records),
        chunks_(new std::atomic<transfer_record*>[chunks_max_]) {
    for (uint64_t i = 0; i < chunks_max_; ++i) chunks_[i].store(nullptr);
  }
  ~record_store() {
    for (uint64_t i = 0; i < chunks_max_; ++i) delete[] chunks_[i].load();
  }
  record_store(const record_store&) = delete;
  record_store& operator=(const record_store&) = delete;

  [[nodiscard]] uint64_t size() const { return size_; }
  [[nodiscard]] uint64_t capacity() const { return chunks_max_ * chunk_records; }

  // Sequencer only.
  transfer_record& append() {
    MESOB_ASSERT(size_ < capacity());
    const uint64_t c = size_ / chunk_records;
    if (chunks_[c].load(std::memory_order_relaxed) == nullptr)
      chunks_[c].store(new transfer_record[chunk_records], std::memory_order_release);
    return at(size_++);
  }
  [[nodiscard]] transfer_record& at(uint64_t serial) {
    MESOB_DEBUG_ASSERT(serial < capacity());
    return chunks_[serial / chunk_records].load(std::memory_order_acquire)[serial % chunk_records];
  }

 private:
  uint64_t chunks_max_;
  std::unique_ptr<std::atomic<transfer_record*>[]> chunks_;
  uint64_t size_ = 0;
};

}  // namespace mesob::actors
