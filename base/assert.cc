#include "base/assert.h"

#include <cstdio>
#include <cstdlib>

namespace cairn::detail {

void assert_fail(const char* condition, const char* file, int line, const char* function) noexcept {
  std::fprintf(stderr, "cairn: assertion failed: %s (%s:%d in %s)\n", condition, file, line,
               function);
  std::fflush(stderr);
  std::abort();
}

}  // namespace cairn::detail
