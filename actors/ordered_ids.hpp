// ordered_ids: a set of 64-bit ids kept in id order, for listings that page (the lowest
// ids from a given one on) without a pass over everything held.
// Sorted chunks of at most chunk_max ids in a std::map, each under a fence at most its
// first id and above the chunk before's last (erasing a chunk's first id leaves it).
// Insert and erase O(log chunks + chunk_max). Ids that count up (a load's, most
// clients') fill each chunk before starting the next; others split a full chunk in two
// halves. A chunk emptied below a quarter joins the chunk after or before when both fit
// in one, and a chunk's vector is cut back when it uses under a quarter of its room: no
// vector holds more than four times its ids' room (or 8), so 8 to 16 bytes an id as ids
// come and go about in order, at most 32 otherwise, and a map node a chunk (a std::set
// spends a 48-byte node an id).
// Single-threaded (owned by one shard), like the tables it indexes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <vector>

namespace mesob::actors {

class ordered_ids {
 public:
  static constexpr size_t chunk_max = 256;

  [[nodiscard]] size_t size() const { return size_; }
  [[nodiscard]] bool empty() const { return size_ == 0; }

  // False if it was there already.
  bool insert(uint64_t id) {
    if (chunks_.empty()) {
      chunks_.emplace(id, std::vector<uint64_t>{id});
      ++size_;
      return true;
    }
    auto it = chunks_.upper_bound(id);
    if (it != chunks_.begin()) --it;  // the chunk whose fence is at most id (or the first)
    std::vector<uint64_t>& v = it->second;
    auto at = std::lower_bound(v.begin(), v.end(), id);
    if (at != v.end() && *at == id) return false;
    if (v.size() == chunk_max) {  // full: split before inserting (so no vector grows past chunk_max)
      const bool appending = at == v.end() && std::next(it) == chunks_.end();
      if (appending) {
        chunks_.emplace_hint(chunks_.end(), id, std::vector<uint64_t>{id});
        ++size_;
        return true;
      }
      const auto half = v.begin() + ptrdiff_t(chunk_max / 2);
      std::vector<uint64_t> upper(half, v.end());
      v.erase(half, v.end());
      const uint64_t upper_first = upper.front();
      const auto up = chunks_.emplace_hint(std::next(it), upper_first, std::move(upper));
      if (id >= upper_first) it = up;
      std::vector<uint64_t>& w = it->second;
      w.insert(std::lower_bound(w.begin(), w.end(), id), id);
    } else {
      if (v.size() == v.capacity()) {  // (grown by hand: never past chunk_max)
        const size_t off = size_t(at - v.begin());
        v.reserve(std::min(chunk_max, std::max<size_t>(8, v.size() * 2)));
        at = v.begin() + ptrdiff_t(off);
      }
      v.insert(at, id);
    }
    if (id < it->first) rekey(it);  // a new lowest id, below the first chunk's fence
    ++size_;
    return true;
  }

  // False if it was not there.
  bool erase(uint64_t id) {
    auto it = chunks_.upper_bound(id);
    if (it == chunks_.begin()) return false;
    --it;
    std::vector<uint64_t>& v = it->second;
    const auto at = std::lower_bound(v.begin(), v.end(), id);
    if (at == v.end() || *at != id) return false;
    v.erase(at);
    --size_;
    if (v.empty()) {
      chunks_.erase(it);
      return true;
    }
    if (v.size() < chunk_max / 4) {  // into the chunk after, or the one before, when both fit in one
      if (const auto next = std::next(it); next != chunks_.end() && v.size() + next->second.size() <= chunk_max) {
        append(v, next->second);
        chunks_.erase(next);
      } else if (it != chunks_.begin()) {
        if (const auto prev = std::prev(it); prev->second.size() + v.size() <= chunk_max) {
          append(prev->second, v);
          chunks_.erase(it);
          return true;
        }
      }
    }
    if (v.capacity() > 8 && v.size() * 4 < v.capacity()) {  // gives back what it no longer uses
      std::vector<uint64_t> w;
      w.reserve(std::max<size_t>(8, v.size() * 2));
      w.assign(v.begin(), v.end());
      v.swap(w);
    }
    return true;
  }

  [[nodiscard]] bool contains(uint64_t id) const {
    auto it = chunks_.upper_bound(id);
    if (it == chunks_.begin()) return false;
    --it;
    return std::binary_search(it->second.begin(), it->second.end(), id);
  }

  // Up to n ids from `from` on, in order, appended to *out.
  void take_from(uint64_t from, size_t n, std::vector<uint64_t>* out) const {
    if (n == 0 || chunks_.empty()) return;
    auto it = chunks_.upper_bound(from);
    if (it != chunks_.begin()) --it;
    for (; it != chunks_.end() && n > 0; ++it) {
      const auto& v = it->second;
      for (auto at = std::lower_bound(v.begin(), v.end(), from); at != v.end() && n > 0; ++at, --n) out->push_back(*at);
    }
  }

  template <class F>
  void for_each(F&& f) const {
    for (const auto& [first, v] : chunks_)
      for (const uint64_t id : v) f(id);
  }

  [[nodiscard]] size_t chunks() const { return chunks_.size(); }
  // Heap bytes (a map node is about 64 with jemalloc's size classes).
  [[nodiscard]] size_t memory_bytes() const {
    size_t b = 0;
    for (const auto& [first, v] : chunks_) b += 64 + v.capacity() * sizeof(uint64_t);
    return b;
  }

 private:
  static void append(std::vector<uint64_t>& to, const std::vector<uint64_t>& from) {
    to.reserve(to.size() + from.size());
    to.insert(to.end(), from.begin(), from.end());
  }

  // The chunk at `it` under its first id.
  void rekey(std::map<uint64_t, std::vector<uint64_t>>::iterator it) {
    auto node = chunks_.extract(it);
    node.key() = node.mapped().front();
    chunks_.insert(std::move(node));
  }

  std::map<uint64_t, std::vector<uint64_t>> chunks_;  // sorted, disjoint; key: the chunk's fence
  size_t size_ = 0;
};

}  // namespace mesob::actors
