#include "wire/assert.hpp"

#include <execinfo.h>
#include <unistd.h>

#include <cstdio>

namespace mesob::detail {

void assert_fail(const char* expr, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "mesob: assertion failed: %s at %s:%d%s%s\n", expr, file, line,
               msg ? ": " : "", msg ? msg : "");
  void* frames[64];
  const int n = backtrace(frames, 64);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  std::fflush(stderr);
  __builtin_trap();
}

}  // namespace mesob::detail
