// CAIRN_ASSERT: invariant checks that stay on in release builds.
//
// A failed assertion is a programmer error: it prints the condition and its location and
// aborts. Operating errors (bad client input, I/O errors) are values, never assertions.
#pragma once

namespace cairn::detail {
[[noreturn]] void assert_fail(const char* condition, const char* file, int line,
                              const char* function) noexcept;
}  // namespace cairn::detail

#define CAIRN_ASSERT(cond)                                                                         \
  do {                                                                                             \
    if (!(cond)) [[unlikely]] {                                                                    \
      ::cairn::detail::assert_fail(#cond, __FILE__, __LINE__, static_cast<const char*>(__func__)); \
    }                                                                                              \
  } while (false)

#define CAIRN_UNREACHABLE() \
  ::cairn::detail::assert_fail("unreachable", __FILE__, __LINE__, __func__)
