// huge_page_allocator: a std allocator for the few big arrays read at random (account
// records and their index, the id index, the window of transfer records).
//
// At 1M accounts and tens of millions of transfer ids these arrays span hundreds of
// MiB; with 4 KiB pages nearly every random access also misses the TLB, and under a
// hypervisor each page walk is itself several memory reads. Allocations of 4 MiB or
// more are mapped 2 MiB-aligned and advised MADV_HUGEPAGE, so transparent huge pages
// back them where the kernel allows it (THP "madvise" or "always"; with "never" this
// is plain anonymous memory). Smaller ones go to the ordinary allocator. Measured
// effect: perf/RESULTS.md.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

namespace mesob {

inline constexpr size_t huge_page_bytes = size_t(2) << 20;
inline constexpr size_t huge_alloc_min = size_t(4) << 20;

// Null when the memory cannot be mapped.
inline void* huge_map_or_null(size_t bytes) noexcept {
  const size_t len = (bytes + huge_page_bytes - 1) & ~(huge_page_bytes - 1);
  void* raw = ::mmap(nullptr, len + huge_page_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + huge_page_bytes - 1) & ~uintptr_t(huge_page_bytes - 1);
  if (aligned > start) ::munmap(raw, aligned - start);
  const uintptr_t end = start + len + huge_page_bytes;
  if (end > aligned + len) ::munmap(reinterpret_cast<void*>(aligned + len), end - (aligned + len));
  ::madvise(reinterpret_cast<void*>(aligned), len, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(aligned);
}
inline void* huge_map(size_t bytes) {
  void* p = huge_map_or_null(bytes);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

// Backs every page holding a byte of [p, p + bytes) now, in one system call
// (MADV_POPULATE_WRITE), for fresh memory about to be written in order: a thread filling
// it otherwise takes one page fault per 4 KiB. On this machine's hypervisor a fresh page
// costs 7-12 us either way, but one call backing 16 pages costs 0.6 of the 16 faults
// (micro_perf BM_fill_fresh_pages; perf/RESULTS.md, seventy-first session). Not for
// memory mostly backed already: the call walks every page of the range. Pages already
// backed keep their bytes. A kernel without it (before 5.14) refuses the call and the
// pages fault in on first touch as before.
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14 (headers older than the kernel)
#endif
// False when the kernel refused.
inline bool populate_pages(void* p, size_t bytes) {
  constexpr uintptr_t page = 4096;
  if (bytes == 0) return true;
  // Pages holding some of the range are mapped (the range is the caller's memory);
  // backing a page also part of another allocation changes nothing in it.
  const auto start = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const auto end = (reinterpret_cast<uintptr_t>(p) + bytes + page - 1) & ~(page - 1);
  return ::madvise(reinterpret_cast<void*>(start), end - start, MADV_POPULATE_WRITE) == 0;
}

inline void huge_unmap(void* p, size_t bytes) {
  if (p != nullptr) ::munmap(p, (bytes + huge_page_bytes - 1) & ~(huge_page_bytes - 1));
}

// A buffer written and read in order through megabytes, again and again (the event
// log's rings): from huge_map when it is `huge_alloc_min` or more (a 4 KiB page's TLB
// miss, a page walk of several memory reads under a hypervisor, was paid again on every
// pass: perf/RESULTS.md, seventy-fourth session), else aligned to `align` (a power of
// two, at most 4096) from the ordinary allocator. Null when out of memory.
// big_buffer_bytes: the memory it may come to hold. (The write-ahead log's group
// buffers, tried the same way, showed no change in the engine's CPU a transfer.)
inline size_t big_buffer_bytes(size_t bytes) {
  return bytes >= huge_alloc_min ? (bytes + huge_page_bytes - 1) & ~(huge_page_bytes - 1) : bytes;
}
inline void* big_buffer(size_t bytes, size_t align) noexcept {
  if (bytes >= huge_alloc_min) return huge_map_or_null(bytes);
  return std::aligned_alloc(align, (bytes + align - 1) & ~(align - 1));
}
inline void big_buffer_free(void* p, size_t bytes) noexcept {
  if (bytes >= huge_alloc_min) huge_unmap(p, bytes);
  else std::free(p);
}

template <class T>
struct huge_page_allocator {
  using value_type = T;
  huge_page_allocator() noexcept = default;
  template <class U>
  huge_page_allocator(const huge_page_allocator<U>&) noexcept {}

  T* allocate(size_t n) {
    if (n * sizeof(T) < huge_alloc_min) return std::allocator<T>().allocate(n);
    return static_cast<T*>(huge_map(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) noexcept {
    if (n * sizeof(T) < huge_alloc_min) std::allocator<T>().deallocate(p, n);
    else huge_unmap(p, n * sizeof(T));
  }
  template <class U>
  bool operator==(const huge_page_allocator<U>&) const noexcept { return true; }
};

}  // namespace mesob
