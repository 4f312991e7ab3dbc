#include "io/chunk_hash.h"

#define XXH_STATIC_LINKING_ONLY
#include <sodium.h>
#include <xxhash.h>

#include <cstring>

#include "base/assert.h"

namespace cairn::io {
namespace {
constexpr uint64_t kChecksumSeed = 0x636169726e2d636bull;  // "cairn-ck"
}

ChunkHasher::ChunkHasher(Kind kind, std::span<const std::byte> cluster_key, unsigned address_bits)
    : kind_(kind), address_bits_(address_bits) {
  CAIRN_ASSERT(address_bits >= 8 && address_bits <= 128);
  CAIRN_ASSERT(!cluster_key.empty());
  static_assert(kSecretBytes >= XXH3_SECRET_SIZE_MIN);
  XXH_errorcode rc =
      XXH3_generateSecret(secret_.data(), secret_.size(), cluster_key.data(), cluster_key.size());
  CAIRN_ASSERT(rc == XXH_OK);
  CAIRN_ASSERT(sodium_init() >= 0);
  crypto_generichash(blake_key_.data(), blake_key_.size(),
                     reinterpret_cast<const unsigned char*>(cluster_key.data()), cluster_key.size(),
                     nullptr, 0);
}

ChunkId ChunkHasher::address(std::span<const std::byte> data, uint32_t ordinal) const noexcept {
  ChunkId id;
  if (kind_ == Kind::xxh3) {
    XXH128_hash_t h =
        XXH3_128bits_withSecret(data.data(), data.size(), secret_.data(), secret_.size());
    id.lo = h.low64;
    id.hi = h.high64;
  } else {
    unsigned char out[32];
    crypto_generichash(out, sizeof out, reinterpret_cast<const unsigned char*>(data.data()),
                       data.size(), blake_key_.data(), blake_key_.size());
    std::memcpy(&id.lo, out, 8);
    std::memcpy(&id.hi, out + 8, 8);
  }
  if (address_bits_ < 128) {
    if (address_bits_ <= 64) {
      id.lo &= address_bits_ == 64 ? ~0ull : ((1ull << address_bits_) - 1);
      id.hi = 0;
    } else {
      id.hi &= (1ull << (address_bits_ - 64)) - 1;
    }
  }
  // The ordinal moves a colliding chunk to another id; in truncated test builds the high
  // word is otherwise zero, so these ids never meet a primary address.
  id.hi ^= static_cast<uint64_t>(ordinal) << 32;
  if (id.is_null()) {
    id.hi = 1ull << 63;  // the null id is reserved for holes
  }
  return id;
}

uint64_t ChunkHasher::checksum(std::span<const std::byte> data) noexcept {
  return XXH3_64bits_withSeed(data.data(), data.size(), kChecksumSeed);
}

}  // namespace cairn::io
