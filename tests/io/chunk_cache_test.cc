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

TEST(ChunkCache, ReusesTheBuffersOfEntriesThatLeftWithinItsBudget) {
  ChunkCache cache(4 * 4096);
  for (uint64_t k = 1; k <= 4; ++k) {
    cache.insert(ChunkId{k, 0}, bytes(4096, static_cast<int>(k)));
  }
  const std::byte* buffer_of_1 = cache.find(ChunkId{1, 0})->data();
  cache.erase(ChunkId{1, 0});  // a dropped chunk: its buffer waits on the spare list
  EXPECT_EQ(cache.used_bytes(), 3u * 4096);
  EXPECT_EQ(cache.spare_bytes(), 4096u);
  cache.insert(ChunkId{9, 0}, bytes(4096, 9));  // takes it
  EXPECT_EQ(cache.find(ChunkId{9, 0})->data(), buffer_of_1);
  EXPECT_EQ(*cache.find(ChunkId{9, 0}), bytes(4096, 9));
  EXPECT_EQ(cache.spare_bytes(), 0u);

  // An eviction hands the evicted entry's buffer to the insert that caused it.
  const std::byte* lru_buffer = cache.find(ChunkId{2, 0})->data();
  for (uint64_t k : {3, 4, 9}) {
    ASSERT_NE(cache.find(ChunkId{k, 0}), nullptr);  // 2 is now the least recent
  }
  cache.insert(ChunkId{10, 0}, bytes(4096, 10));
  EXPECT_EQ(cache.find(ChunkId{2, 0}), nullptr);
  EXPECT_EQ(cache.find(ChunkId{10, 0})->data(), lru_buffer);
  EXPECT_LE(cache.used_bytes() + cache.spare_bytes(), 4u * 4096);

  // Spare buffers of another size give way: cached plus spare stays within the budget.
  cache.erase(ChunkId{3, 0});
  cache.erase(ChunkId{4, 0});
  EXPECT_EQ(cache.spare_bytes(), 2u * 4096);
  cache.insert(ChunkId{11, 0}, bytes(3 * 4096, 11));
  EXPECT_EQ(*cache.find(ChunkId{11, 0}), bytes(3 * 4096, 11));
  EXPECT_LE(cache.used_bytes() + cache.spare_bytes(), 4u * 4096);
}

}  // namespace
}  // namespace cairn::io
