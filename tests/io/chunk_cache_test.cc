// ChunkCache (io/chunk_cache.h): the store's LRU read cache keyed by chunk id.
#include "io/chunk_cache.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

namespace cairn::io {
namespace {

std::vector<std::byte> bytes(std::size_t n, int fill) {
  return std::vector<std::byte>(n, static_cast<std::byte>(fill));
}

TEST(ChunkCache, FindsWhatWasInsertedAndRefreshesInPlace) {
  ChunkCache cache(3 * 4096);
  ChunkId a{1, 1};
  EXPECT_EQ(cache.find(a), nullptr);
  cache.insert(a, bytes(4096, 1));
  ASSERT_NE(cache.find(a), nullptr);
  EXPECT_EQ(*cache.find(a), bytes(4096, 1));
  cache.insert(a, bytes(4096, 2));  // same id and size: replaced, still one entry
  EXPECT_EQ(*cache.find(a), bytes(4096, 2));
  EXPECT_EQ(cache.entries(), 1u);
  EXPECT_EQ(cache.used_bytes(), 4096u);
  cache.insert(a, bytes(512, 3));  // another size: replaced too
  EXPECT_EQ(*cache.find(a), bytes(512, 3));
  EXPECT_EQ(cache.entries(), 1u);
  EXPECT_EQ(cache.used_bytes(), 512u);
  cache.erase(a);
  EXPECT_EQ(cache.find(a), nullptr);
  EXPECT_EQ(cache.used_bytes(), 0u);
}

TEST(ChunkCache, EvictsTheLeastRecentlyUsedWithinItsBudget) {
  ChunkCache cache(3 * 4096);
  for (uint64_t k = 1; k <= 3; ++k) {
    cache.insert(ChunkId{k, 0}, bytes(4096, static_cast<int>(k)));
  }
  ASSERT_NE(cache.find(ChunkId{1, 0}), nullptr);  // 1 is now the most recent; 2 the least
  cache.insert(ChunkId{3, 0}, bytes(4096, 33));   // a refresh evicts nothing
  EXPECT_EQ(cache.entries(), 3u);
  cache.insert(ChunkId{4, 0}, bytes(4096, 4));  // full: the LRU entry (2) goes
  EXPECT_EQ(cache.find(ChunkId{2, 0}), nullptr);
  EXPECT_EQ(*cache.find(ChunkId{1, 0}), bytes(4096, 1));
  EXPECT_EQ(*cache.find(ChunkId{3, 0}), bytes(4096, 33));
  EXPECT_EQ(*cache.find(ChunkId{4, 0}), bytes(4096, 4));
  EXPECT_LE(cache.used_bytes(), 3u * 4096);
  cache.insert(ChunkId{5, 0}, bytes(8192, 5));  // a larger chunk evicts two
  EXPECT_EQ(cache.entries(), 2u);
  EXPECT_LE(cache.used_bytes(), 3u * 4096);
  cache.insert(ChunkId{6, 0}, bytes(5 * 4096, 6));  // over the whole budget: not cached
  EXPECT_EQ(cache.find(ChunkId{6, 0}), nullptr);
}

}  // namespace
}  // namespace cairn::io
