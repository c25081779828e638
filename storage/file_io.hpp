// Whole-range positioned reads and writes (short transfers continued, EINTR retried).
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace mesob::storage {

// Runs `io(fd, p, len, off)` (pread or pwrite) until the whole range is done: short
// transfers continued, EINTR retried. False on an error or (reading) the end of the file
// before `len` bytes, EIO then); errno says why.
template <class Byte, class Io>
bool whole_range(int fd, Byte* p, size_t len, uint64_t off, Io io) {
  while (len > 0) {
    const ssize_t n = io(fd, p, len, off_t(off));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = EIO;  // (the end of the file, or a write taking nothing: no errno of its own)
    if (n <= 0) return false;
    p += n;
    len -= size_t(n);
    off += uint64_t(n);
  }
  return true;
}

inline bool pread_full(int fd, void* buf, size_t len, uint64_t off) {
  return whole_range(fd, static_cast<uint8_t*>(buf), len, off, ::pread);
}

inline bool pwrite_full(int fd, const void* buf, size_t len, uint64_t off) {
  return whole_range(fd, static_cast<const uint8_t*>(buf), len, off, ::pwrite);
}

}  // namespace mesob::storage
