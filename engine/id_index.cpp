#include "engine/id_index.hpp"

#include <pthread.h>

#include <algorithm>

namespace mesob::engine {

// A growth in progress. The owner writes `pending` (hashes of serials first_pending, ...)
// and publishes the count; the builder reads them after an acquire load of the count.
struct id_index::build {
  table slots;  // the new table, filled by the builder
  uint64_t first_pending = 0;
  size_t pending_cap = 0;
  std::unique_ptr<uint64_t[]> pending;
  std::atomic<size_t> pending_count{0};
  std::atomic<bool> ready{false};
  std::atomic<bool> stop{false};
  size_t placed_pending = 0;  // by the builder; read by the owner after `ready`
  bool failed = false;
  std::string error;
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
    mesob::prefetch(&slots_[h & mask_]);
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

id_index::id_index(source src, size_t capacity_hint) : src_(std::move(src)) {
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
  size_t b = slots_.size() * sizeof(uint64_t);
  if (build_) b += build_->slots.capacity() * sizeof(uint64_t) + build_->pending_cap * sizeof(uint64_t);
  return b;
}

size_t id_index::capacity_for(size_t n) {
  size_t c = 1024;
  while (c * 3 < n * 4 + 4) c *= 2;
  return c;
}

void id_index::place(table& slots, uint64_t h, uint64_t serial) {
  const size_t mask = slots.size() - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
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

void id_index::insert(const wire::id128& id, uint64_t serial) {
  MESOB_ASSERT(serial <= serial_max && serial == size_);
  if (build_) {
    if (build_->ready.load(std::memory_order_acquire)) finish_growth(false);
    else if ((size_ + 1) * 8 > slots_.size() * 7) finish_growth(true);
  }
  const uint64_t h = hash(id);
  place(slots_, h, serial);
  ++size_;
  if (build_) {
    const size_t k = serial - build_->first_pending;
    MESOB_ASSERT(k < build_->pending_cap);
    build_->pending[k] = h;
    build_->pending_count.store(k + 1, std::memory_order_release);
  } else if (size_ * 4 > slots_.size() * 3) {
    start_growth();
  }
}

void id_index::start_growth() {
  const uint64_t stable = src_.stable_end();
  MESOB_ASSERT(stable <= size_);
  auto b = std::make_unique<build>();
  b->first_pending = stable;
  // Hashes the owner hands over now, plus one per insert until the 7/8 wait.
  b->pending_cap = (size_ - stable) + slots_.size() / 8 + 2;
  b->pending = std::make_unique_for_overwrite<uint64_t[]>(b->pending_cap);
  for (uint64_t s = stable; s < size_; ++s) b->pending[s - stable] = hash(src_.read_recent(s));
  b->pending_count.store(size_ - stable, std::memory_order_release);
  stats_.handover_max = std::max<uint64_t>(stats_.handover_max, size_ - stable);
  const size_t capacity = slots_.size() * 2;
  build* p = b.get();
  b->thread = std::thread([p, capacity, stable, read = &src_.read_stable] {
    pthread_setname_np(pthread_self(), "mesob.idgrow");
    p->slots.assign(capacity, 0);
    batched_placer<table> placer(p->slots, &id_index::place);
    constexpr uint64_t chunk = 1u << 20;  // ids per read; the stop flag is seen between
    for (uint64_t begin = 0; begin < stable && !p->stop.load(); begin += chunk) {
      const uint64_t end = std::min(stable, begin + chunk);
      uint64_t expect = begin;
      bool in_order = true;
      const bool ok = (*read)(begin, end, [&](uint64_t serial, const wire::id128& id) {
        in_order = in_order && serial == expect;
        ++expect;
        placer.add(hash(id), serial);
      }, &p->error);
      if (!ok || !in_order || expect != end) {
        p->failed = true;
        if (p->error.empty())
          p->error = "id index growth: serials " + std::to_string(begin) + ".." + std::to_string(end) +
                     " could not be read in order";
        break;
      }
    }
    size_t done = 0;
    while (!p->failed && !p->stop.load()) {
      const size_t n = p->pending_count.load(std::memory_order_acquire);
      if (n == done) break;
      for (; done < n; ++done) placer.add(p->pending[done], p->first_pending + done);
    }
    placer.finish();
    p->placed_pending = done;
    p->ready.store(true, std::memory_order_release);
  });
  build_ = std::move(b);
}

void id_index::finish_growth(bool wait) {
  if (wait) ++stats_.waits;
  build_->thread.join();
  MESOB_ASSERT_MSG(!build_->failed, build_->error.c_str());
  const size_t n = build_->pending_count.load(std::memory_order_relaxed);
  for (size_t k = build_->placed_pending; k < n; ++k)
    place(build_->slots, build_->pending[k], build_->first_pending + k);
  slots_.swap(build_->slots);
  mask_ = slots_.size() - 1;
  ++stats_.growths;
  build_.reset();
}

void id_index::finish_growth_now() {
  if (build_) finish_growth(false);
}

}  // namespace mesob::engine
