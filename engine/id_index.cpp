#include "engine/id_index.hpp"

#include <pthread.h>

#include <algorithm>
#include <cstring>

#include "wire/protocol.hpp"

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
  const uint64_t at = offset(serial);
  // The log is written in order: back the next pages in one call rather than fault
  // them in one by one.
  if (at % populate_entries == 0)
    populate_pages(seg_[j] + at, std::min<size_t>(populate_entries, length(j) - at) * sizeof(uint64_t));
  seg_[j][at] = h;
}

id_hash_key id_hash_key::random() {
  const auto bytes = wire::random_bytes(2 * sizeof(uint64_t));
  id_hash_key k;
  std::memcpy(&k.k0, bytes.data(), sizeof k.k0);
  std::memcpy(&k.k1, bytes.data() + sizeof k.k0, sizeof k.k1);
  return k;
}

id_index::id_index(size_t capacity_hint, const id_hash_key& key)
    : hash_(key), lo_max_(new uint64_t[buckets]()) {
  slots_.assign(capacity_for(capacity_hint), 0);
  mask_ = slots_.size() - 1;
}

void id_index::set_key(const id_hash_key& key) {
  MESOB_ASSERT_MSG(size_ == 0, "the id index's key changes only while it is empty");
  hash_ = id_hasher(key);
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
  size_t b = slots_.size() * sizeof(uint64_t) + size_ * sizeof(uint64_t) + (size_ + 63) / 64 * sizeof(uint64_t) +
             ranges_.size() * range_bytes + buckets * sizeof(uint64_t) + sizeof ranges_in_;
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

int64_t id_index::find_range(const wire::id128& id) const {
  auto holds = [&](range_map::const_iterator it) {
    return it->first.first == id.hi && id.lo >= it->first.second && id.lo <= it->second.lo_last;
  };
  // Repeats come a batch at a time: the range that answered last answers again.
  if (last_hit_ != ranges_.end() && holds(last_hit_))
    return int64_t(last_hit_->second.serial_first + (id.lo - last_hit_->first.second));
  auto it = ranges_.upper_bound({id.hi, id.lo});
  if (it == ranges_.begin()) return -1;
  --it;
  if (!holds(it)) return -1;
  last_hit_ = it;
  return int64_t(it->second.serial_first + (id.lo - it->first.second));
}

bool id_index::in_table(uint64_t serial) const {
  const uint64_t w = std::atomic_ref<uint64_t>(table_bits_.ref(serial / 64)).load(std::memory_order_relaxed);
  return (w >> (serial % 64)) & 1;
}

// A run that stopped short is wholly in the table: its ids count in their bucket's lo_max.
void id_index::end_run() {
  if (run_.count != 0 && !run_.in_map) {
    uint64_t& m = lo_max_[run_.bucket];
    m = std::max(m, run_.lo_last);
  }
  run_ = open_run{};
}

void id_index::insert(const wire::id128& id, uint64_t serial, const uint64_t* h) {
  MESOB_ASSERT(serial <= serial_max && serial == size_);
  if (run_.count != 0 && id.hi == run_.hi && run_.lo_last != UINT64_MAX && id.lo == run_.lo_last + 1 &&
      id.lo < run_.next_first && serial == run_.serial_first + run_.count) {
    ++run_.count;
    run_.lo_last = id.lo;
    if (run_.count <= table_first) return record(h ? *h : hash_(id), serial, true);
    if (run_.in_map) {
      run_.node->second.lo_last = id.lo;
    } else {
      run_.node = ranges_.emplace(std::pair{run_.hi, run_.lo_first}, range_end{id.lo, run_.serial_first}).first;
      run_.in_map = true;
      ranges_in_[run_.bucket / 64] |= uint64_t(1) << (run_.bucket % 64);
    }
    return record(0, serial, false);  // in a range: no hash needed
  }
  end_run();
  run_.hi = id.hi;
  run_.lo_first = run_.lo_last = id.lo;
  run_.serial_first = serial;
  run_.count = 1;
  run_.next_first = UINT64_MAX;
  run_.bucket = bucket(id.hi);
  if (has_ranges(run_.bucket)) {
    const auto next = ranges_.lower_bound({id.hi, id.lo});
    if (next != ranges_.end() && next->first.first == id.hi) run_.next_first = next->first.second;
  }
  record(h ? *h : hash_(id), serial, true);
}

void id_index::insert_hashed(uint64_t h, uint64_t serial) {
  end_run();
  if (!lo_max_topped_) {
    std::fill_n(lo_max_.get(), buckets, UINT64_MAX);
    lo_max_topped_ = true;
  }
  record(h, serial, true);
  ++hashed_;
}

void id_index::set_lo_max(std::span<const uint64_t> by_bucket) {
  MESOB_ASSERT(by_bucket.size() == buckets && hashed_ == size_);
  std::copy(by_bucket.begin(), by_bucket.end(), lo_max_.get());
  lo_max_topped_ = false;  // a later insert_hashed tops them again
}

void id_index::record(uint64_t h, uint64_t serial, bool to_table) {
  MESOB_ASSERT(serial <= serial_max && serial == size_);
  if (build_) {
    if (build_->ready.load(std::memory_order_acquire)) finish_growth(false);
    else if (to_table && (table_size_ + 1) * 8 > slots_.size() * 7) finish_growth(true);
  }
  hashes_.push(serial, h);
  const uint64_t bit = uint64_t(to_table) << (serial % 64);
  if (serial % 64 == 0) table_bits_.push(serial / 64, bit);
  else if (bit != 0) {
    std::atomic_ref<uint64_t> w(table_bits_.ref(serial / 64));
    w.store(w.load(std::memory_order_relaxed) | bit, std::memory_order_relaxed);
  }
  if (to_table) {
    place(slots_, h, serial);
    ++table_size_;
  }
  ++size_;
  if (build_) build_->published.store(size_, std::memory_order_release);
  else if (table_size_ > next_growth_at()) start_growth();
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
  b->thread = std::thread([this, p, capacity, log = &hashes_, pause = build_pause_] {
    pthread_setname_np(pthread_self(), "mesob.idgrow");
    p->slots.assign(capacity, 0);
    batched_placer<table> placer(p->slots, &id_index::place);
    constexpr uint64_t chunk = 1u << 16;  // hashes between looks at the stop flag
    uint64_t done = 0;
    while (!p->stop.load(std::memory_order_relaxed)) {
      const uint64_t n = p->published.load(std::memory_order_acquire);
      if (n == done) break;
      const uint64_t end = std::min(n, done + chunk);
      for (; done < end; ++done)
        if (in_table(done)) placer.add(log->at(done), done);
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
  for (uint64_t s = build_->placed; s < size_; ++s)
    if (in_table(s)) place(build_->slots, hashes_.at(s), s);
  slots_.swap(build_->slots);
  mask_ = slots_.size() - 1;
  ++stats_.growths;
  build_.reset();
}

void id_index::finish_growth_now() {
  if (build_) finish_growth(false);
}

}  // namespace mesob::engine
