// Helpers shared by the tests: run a coroutine to completion on a fresh io_context, and make
// deterministic test data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/asio.h"

namespace cairn::test {

// Runs `task` on `context` until it completes and returns its value. The context may hold
// other long-lived work (a DiskRing's eventfd wait), so this runs handlers one at a time until
// the task is done rather than until the context runs dry.
template <class T>
T run(asio::io_context& context, Task<T> task) {
  std::optional<T> out;
  std::exception_ptr error;
  bool done = false;
  asio::co_spawn(context, std::move(task), [&](std::exception_ptr e, T value) {
    error = e;
    out.emplace(std::move(value));
    done = true;
  });
  context.restart();
  while (!done && context.run_one() > 0) {
  }
  if (error) {
    std::rethrow_exception(error);
  }
  return std::move(*out);
}

// Deterministic pseudo-random bytes (splitmix64 of seed and position).
inline std::vector<std::byte> pattern(std::size_t n, uint64_t seed) {
  std::vector<std::byte> v(n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (std::size_t i = 0; i < n; i += 8) {
    x += 0x9e3779b97f4a7c15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    for (std::size_t j = 0; j < 8 && i + j < n; ++j) {
      v[i + j] = static_cast<std::byte>(z >> (8 * j));
    }
  }
  return v;
}

}  // namespace cairn::test
