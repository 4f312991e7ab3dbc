#include "io/chunk_hash.h"

#include <gtest/gtest.h>

#include <vector>

namespace cairn::io {
namespace {

std::vector<std::byte> bytes(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i] = static_cast<std::byte>((i * 131 + seed * 7) & 0xff);
  }
  return v;
}

const std::byte kKey[4] = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
const std::byte kOtherKey[4] = {std::byte{9}, std::byte{2}, std::byte{3}, std::byte{4}};

TEST(ChunkHasher, SameContentSameAddress) {
  ChunkHasher h(ChunkHasher::Kind::xxh3, kKey);
  auto a = bytes(4096, 1);
  EXPECT_EQ(h.address(a), h.address(bytes(4096, 1)));
  EXPECT_NE(h.address(a), h.address(bytes(4096, 2)));
  EXPECT_FALSE(h.address(a).is_null());
}

TEST(ChunkHasher, AddressDependsOnClusterKey) {
  ChunkHasher h1(ChunkHasher::Kind::xxh3, kKey);
  ChunkHasher h2(ChunkHasher::Kind::xxh3, kOtherKey);
  auto a = bytes(4096, 1);
  EXPECT_NE(h1.address(a), h2.address(a));
  // The checksum is key-independent so any node can verify a chunk.
  EXPECT_EQ(ChunkHasher::checksum(a), ChunkHasher::checksum(bytes(4096, 1)));
}

TEST(ChunkHasher, OrdinalsGiveDistinctIds) {
  ChunkHasher h(ChunkHasher::Kind::xxh3, kKey, 8);
  auto a = bytes(4096, 1);
  EXPECT_NE(h.address(a, 0), h.address(a, 1));
  EXPECT_NE(h.address(a, 1), h.address(a, 2));
}

TEST(ChunkHasher, TruncatedAddressesCollide) {
  ChunkHasher h(ChunkHasher::Kind::xxh3, kKey, 8);
  std::vector<ChunkId> seen;
  bool collided = false;
  for (unsigned s = 0; s < 64 && !collided; ++s) {
    ChunkId id = h.address(bytes(4096, s));
    EXPECT_LT(id.lo, 256u);
    for (const ChunkId& other : seen) {
      collided = collided || other == id;
    }
    seen.push_back(id);
  }
  EXPECT_TRUE(collided) << "64 chunks into 256 addresses should collide (birthday bound)";
}

TEST(ChunkHasher, Blake2bAddresses) {
  ChunkHasher h(ChunkHasher::Kind::blake2b, kKey);
  auto a = bytes(4096, 1);
  EXPECT_EQ(h.address(a), h.address(bytes(4096, 1)));
  EXPECT_NE(h.address(a), ChunkHasher(ChunkHasher::Kind::xxh3, kKey).address(a));
  EXPECT_TRUE(h.confirms_by_address());
}

}  // namespace
}  // namespace cairn::io
