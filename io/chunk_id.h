// ChunkId: the address of an immutable chunk in the store.
//
// It is the chunk's keyed XXH3-128 hash (or BLAKE2b-256 truncated to 128 bits when the cluster
// chooses cryptographic addresses), except when two different chunks hash alike: the store then
// gives the later one a disambiguated id (docs/on-disk-format.md, "Collisions"). Callers treat
// ids as opaque. The all-zero id is reserved and never names a chunk: maps use it for holes.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

namespace cairn::io {

struct ChunkId {
  uint64_t lo = 0;
  uint64_t hi = 0;

  [[nodiscard]] bool is_null() const noexcept { return lo == 0 && hi == 0; }
  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads the defaulted <=>.
  friend auto operator<=>(const ChunkId&, const ChunkId&) = default;
  [[nodiscard]] std::string to_hex() const;
};
static_assert(sizeof(ChunkId) == 16);

struct ChunkIdHash {
  std::size_t operator()(const ChunkId& id) const noexcept {
    return static_cast<std::size_t>(id.lo ^ (id.hi * 0x9e3779b97f4a7c15ull));
  }
};

}  // namespace cairn::io
