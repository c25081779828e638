#include "engine/id_index.hpp"

#include <pthread.h>

#include <algorithm>

namespace mesob::engine {

// A growth in progress. The owner appends to the hash log and publishes its count; the
// builder reads hashes below the count after an acquire load of it.
struct id_index::build {
  size_t capacity = 0;  // of the new table (the owner reads this, never `slots`)
  table slots;          // the new table, filled by the builder
  std::atomic<uint64_t> published{0};
  std::atomic<bool> ready{false};
  std::atomic<bool> stop{false};
  uint64_t placed = 0;  // by the builder: serials [0, placed); read by the owner after `ready`
  std::thread thread;
};

namespace {

// Places hashes into a table a few at a time: each slot is prefetched when queued and
// written `depth` entries later, so the cache misses of a random fill overlap.
template <class Table>
class batched_placer {
 public:
  batched_placer(Table& slots, void (*place)(Table&, uint64_t, uint64_t))
      : slots_(slots), place_(place), mask_(slots.size() - 1) {}
  void add(uint64_t h, uint64_t serial) {
    if (n_ == depth) drain_one();
    mesob::prefetch(&slots_[id_index::home(h, mask_)]);
    q_[(head_ + n_) % depth] = {h, serial};
    ++n_;
  }
  void finish() {
    while (n_ > 0) drain_one();
  }

 private:
  static constexpr size_t depth = 16;
  void drain_one() {
    place_(slots_, q_[head_].first, q_[head_].second);
    head_ = (head_ + 1) % depth;
    --n_;
  }
  Table& slots_;
  void (*place_)(Table&, uint64_t, uint64_t);
  size_t mask_;
  std::pair<uint64_t, uint64_t> q_[depth];
  size_t head_ = 0, n_ = 0;
};

}  // namespace

id_index::hash_log::~hash_log() {
  for (size_t j = 0; j < segments; ++j)
    if (seg_[j] != nullptr) std::allocator<uint64_t>().deallocate(seg_[j], length(j));
}

void id_index::hash_log::push(uint64_t serial, uint64_t h) {
  static_assert(segment((1u << 16) - 1) == 0 && segment(1u << 16) == 1);
  static_assert(offset(1u << 16) == 0 && offset((1u << 17) - 1) == (1u << 16) - 1);
  static_assert(segment(1u << 17) == 2 && length(2) == 1u << 17);
  static_assert(segment(id_index::serial_max) == segments - 1 &&
                offset(id_index::serial_max) <
                    length(segments - 1));
  const size_t j = segment(serial);
  if (seg_[j] == nullptr) seg_[j] = std::allocator<uint64_t>().allocate(length(j));
  seg_[j][offset(serial)] = h;
}

id_index::id_index(size_t capacity_hint) {
  slots_.assign(capacity_for(capacity_hint), 0);
  mask_ = slots_.size() - 1;
}

id_index::~id_index() { abandon_growth(); }

void id_index::abandon_growth() {
  if (!build_) return;
  build_->stop.store(true);
  build_->thread.join();
  build_.reset();
}

size_t id_index::memory_bytes() const {
  // The hash log by what is written: the rest of its newest segment is not backed yet.
  size_t b = slots_.size() * sizeof(uint64_t) + size_ * sizeof(uint64_t);
  if (build_) b += build_->capacity * sizeof(uint64_t);
  return b;
}

size_t id_index::capacity_for(size_t n) {
  size_t c = 1024;
  while (c * 3 < n * 4 + 4) c *= 2;
  return c;
}

void id_index::place(table& slots, uint64_t h, uint64_t serial) {
  const size_t mask = slots.size() - 1;
  for (size_t i = home(h, mask);; i = (i + 1) & mask) {
    if (slots[i] == 0) {
      slots[i] = fingerprint(h) << 40 | (serial + 1);
      return;
    }
  }
}

void id_index::reserve(size_t n) {
  MESOB_ASSERT(size_ == 0 && !build_);
  if (capacity_for(n) > slots_.size()) {
    slots_.assign(capacity_for(n), 0);
    mask_ = slots_.size() - 1;
  }
}

void id_index::insert_hashed(uint64_t h, uint64_t serial) {
  MESOB_ASSERT(serial <= serial_max && serial == size_);
  if (build_) {
    if (build_->ready.load(std::memory_order_acquire)) finish_growth(false);
    else if ((size_ + 1) * 8 > slots_.size() * 7) finish_growth(true);
  }
  hashes_.push(serial, h);
  place(slots_, h, serial);
  ++size_;
  if (build_) build_->published.store(size_, std::memory_order_release);
  else if (size_ > next_growth_at()) start_growth();
}

void id_index::insert_hashed_run(std::span<const uint64_t> hashes, uint64_t first) {
  constexpr size_t ahead = 16;
  for (size_t i = 0; i < std::min(ahead, hashes.size()); ++i) mesob::prefetch(&slots_[home(hashes[i], mask_)]);
  for (size_t i = 0; i < hashes.size(); ++i) {
    if (i + ahead < hashes.size()) mesob::prefetch(&slots_[home(hashes[i + ahead], mask_)]);
    insert_hashed(hashes[i], first + i);
  }
}

void id_index::start_growth() {
  auto b = std::make_unique<build>();
  b->published.store(size_, std::memory_order_relaxed);  // the thread's start orders it
  const size_t capacity = slots_.size() * 2;
  b->capacity = capacity;
  build* p = b.get();
  b->thread = std::thread([p, capacity, log = &hashes_, pause = build_pause_] {
    pthread_setname_np(pthread_self(), "mesob.idgrow");
    p->slots.assign(capacity, 0);
    batched_placer<table> placer(p->slots, &id_index::place);
    constexpr uint64_t chunk = 1u << 16;  // hashes between looks at the stop flag
    uint64_t done = 0;
    while (!p->stop.load(std::memory_order_relaxed)) {
      const uint64_t n = p->published.load(std::memory_order_acquire);
      if (n == done) break;
      const uint64_t end = std::min(n, done + chunk);
      for (; done < end; ++done) placer.add(log->at(done), done);
      if (pause.count() > 0) std::this_thread::sleep_for(pause);
    }
    placer.finish();
    p->placed = done;
    p->ready.store(true, std::memory_order_release);
  });
  build_ = std::move(b);
}

void id_index::finish_growth(bool wait) {
  if (wait) ++stats_.waits;
  build_->thread.join();
  for (uint64_t s = build_->placed; s < size_; ++s) place(build_->slots, hashes_.at(s), s);
  slots_.swap(build_->slots);
  mask_ = slots_.size() - 1;
  ++stats_.growths;
  build_.reset();
}

void id_index::finish_growth_now() {
  if (build_) finish_growth(false);
}

}  // namespace mesob::engine
