// stale_heap: tidying a min-heap of timers whose entries go stale (the thing they time
// was rescheduled, answered or resolved early) and are skipped when they come due.
//
// Between batches, one pass: the heap is made again from the live entries when it has
// reached `rebuild_at` entries, then stale entries are popped off its top, so its first
// entry is a live deadline (what the shard publishes for the sequencer's ticks). What
// fires, and in what order, does not change: due live entries in the heap's total order,
// stale ones skipped. Used by the pending transfers' expiry heap (shard.cpp) and the
// payout desks' timers (payout_desk.cpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace mesob::actors {

// `live(entry)`: whether the entry still fires; `rebuild(heap)`: appends every live entry
// to the emptied heap. Returns whether the heap was made again.
template <class T, class Cmp, class Live, class Rebuild>
bool tidy_stale_heap(std::vector<T>& heap, size_t rebuild_at, Cmp cmp, Live&& live, Rebuild&& rebuild) {
  bool rebuilt = false;
  if (heap.size() >= rebuild_at) {
    heap.clear();
    rebuild(heap);
    std::make_heap(heap.begin(), heap.end(), cmp);
    heap.shrink_to_fit();
    rebuilt = true;
  }
  while (!heap.empty() && !live(heap.front())) {
    std::pop_heap(heap.begin(), heap.end(), cmp);
    heap.pop_back();
  }
  return rebuilt;
}

}  // namespace mesob::actors
