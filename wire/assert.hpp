// Always-on assertions, shared by every Mesob layer (wire/ is the lowest one).
//
// MESOB_ASSERT stays on in release builds: it prints the expression, file:line and
// a backtrace to stderr, then traps. MESOB_DEBUG_ASSERT is for the hottest loops and
// compiles away unless MESOB_DEBUG_ASSERTS is defined. Asserts are for bugs only;
// operational failures (bad input, disk errors) are values.
#pragma once

namespace mesob::detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const char* msg);
}  // namespace mesob::detail

#define MESOB_ASSERT(expr)                                                   \
  do {                                                                       \
    if (__builtin_expect(!(expr), 0))                                        \
      ::mesob::detail::assert_fail(#expr, __FILE__, __LINE__, nullptr);      \
  } while (0)

#define MESOB_ASSERT_MSG(expr, msg)                                          \
  do {                                                                       \
    if (__builtin_expect(!(expr), 0))                                        \
      ::mesob::detail::assert_fail(#expr, __FILE__, __LINE__, (msg));        \
  } while (0)

#ifdef MESOB_DEBUG_ASSERTS
#define MESOB_DEBUG_ASSERT(expr) MESOB_ASSERT(expr)
#else
#define MESOB_DEBUG_ASSERT(expr) \
  do {                           \
  } while (0)
#endif
