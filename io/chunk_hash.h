// ChunkHasher: computes chunk addresses and chunk checksums (BRIEF, "Extent addresses").
//
// The address is XXH3-128 keyed with a per-cluster secret (or BLAKE2b-256 keyed with it,
// truncated to 128 bits, when the cluster chooses cryptographic addresses). The checksum that
// every chunk carries on disk and on the wire is XXH3-64 with a fixed seed: it is independent
// of the key, so a store can verify a chunk without knowing the cluster secret.
//
// Collisions: XXH3 is not collision-resistant, so a store confirms every dedup hit by
// comparing bytes and, if the bytes differ, asks for address(data, ordinal + 1) until it finds
// a free id. `address_bits` < 128 truncates the hash; tests use 8 to force collisions.
//
// Immutable after construction; safe to share between threads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "io/chunk_id.h"

namespace cairn::io {

class ChunkHasher {
 public:
  enum class Kind { xxh3, blake2b };

  static constexpr std::size_t kSecretBytes = 192;

  ChunkHasher(Kind kind, std::span<const std::byte> cluster_key, unsigned address_bits = 128);

  [[nodiscard]] Kind kind() const noexcept { return kind_; }
  [[nodiscard]] bool confirms_by_address() const noexcept { return kind_ == Kind::blake2b; }

  // The id of `data`; ordinal > 0 gives the disambiguated ids used after a collision.
  [[nodiscard]] ChunkId address(std::span<const std::byte> data,
                                uint32_t ordinal = 0) const noexcept;

  [[nodiscard]] static uint64_t checksum(std::span<const std::byte> data) noexcept;

 private:
  Kind kind_;
  unsigned address_bits_;
  std::array<std::byte, kSecretBytes> secret_{};
  std::array<unsigned char, 32> blake_key_{};
};

}  // namespace cairn::io
