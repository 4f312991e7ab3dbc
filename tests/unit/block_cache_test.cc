// BlockCache (base/block_cache.h): per-thread recycling of small blocks.
#include "base/block_cache.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

namespace cairn::base {
namespace {

class BlockCacheTest : public ::testing::Test {
 protected:
  void SetUp() override { BlockCache::release_thread_cache(); }
  void TearDown() override { BlockCache::release_thread_cache(); }
};

TEST_F(BlockCacheTest, ReusesAFreedBlockOfTheSameClass) {
  void* a = BlockCache::allocate(100);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 16, 0u);
  std::memset(a, 0xAB, 100);
  BlockCache::deallocate(a);
  EXPECT_EQ(BlockCache::thread_stats().cached_bytes, 128u);  // class of 100 bytes: 128

  const uint64_t reuses = BlockCache::thread_stats().reuses;
  void* b = BlockCache::allocate(97);  // same 32-byte class
  EXPECT_EQ(b, a);
  EXPECT_EQ(BlockCache::thread_stats().reuses, reuses + 1);
  EXPECT_EQ(BlockCache::thread_stats().cached_bytes, 0u);
  BlockCache::deallocate(b);
}

TEST_F(BlockCacheTest, ClassesDoNotMix) {
  void* small = BlockCache::allocate(40);
  BlockCache::deallocate(small);
  const uint64_t mallocs = BlockCache::thread_stats().mallocs;
  void* big = BlockCache::allocate(1000);
  EXPECT_NE(big, small);
  EXPECT_EQ(BlockCache::thread_stats().mallocs, mallocs + 1);
  std::memset(big, 0x5A, 1000);  // the whole block is ours (ASan checks the bounds)
  BlockCache::deallocate(big);
}

TEST_F(BlockCacheTest, ZeroBytesIsAValidBlock) {
  void* a = BlockCache::allocate(0);
  ASSERT_NE(a, nullptr);
  void* b = BlockCache::allocate(0);
  EXPECT_NE(a, b);
  BlockCache::deallocate(a);
  BlockCache::deallocate(b);
  BlockCache::deallocate(nullptr);  // ignored
}

TEST_F(BlockCacheTest, LargeBlocksAreNeverCached) {
  void* a = BlockCache::allocate(BlockCache::kMaxSmallBytes + 1);
  ASSERT_NE(a, nullptr);
  std::memset(a, 1, BlockCache::kMaxSmallBytes + 1);
  BlockCache::deallocate(a);
  EXPECT_EQ(BlockCache::thread_stats().cached_bytes, 0u);
}

TEST_F(BlockCacheTest, AChunkSizedBufferIsRecycled) {
  void* a = BlockCache::allocate(4096);
  BlockCache::deallocate(a);
  EXPECT_EQ(BlockCache::allocate(4096), a);
  BlockCache::deallocate(a);
}

TEST_F(BlockCacheTest, ListsStayWithinTheirCaps) {
  // One class: at most kListCapBytes cached.
  std::vector<void*> blocks;
  const std::size_t per_class = BlockCache::kListCapBytes / 64;
  for (std::size_t i = 0; i < per_class + 10; ++i) {
    blocks.push_back(BlockCache::allocate(64));
  }
  for (void* b : blocks) {
    BlockCache::deallocate(b);
  }
  EXPECT_EQ(BlockCache::thread_stats().cached_bytes, BlockCache::kListCapBytes);
  blocks.clear();
  BlockCache::release_thread_cache();

  // All classes together: at most kThreadCapBytes.
  for (std::size_t bytes = 32; bytes <= BlockCache::kMaxSmallBytes; bytes += 32) {
    for (std::size_t i = 0; i < BlockCache::kListCapBytes / bytes; ++i) {
      blocks.push_back(BlockCache::allocate(bytes));
    }
  }
  for (void* b : blocks) {
    BlockCache::deallocate(b);
  }
  EXPECT_LE(BlockCache::thread_stats().cached_bytes, BlockCache::kThreadCapBytes);
  EXPECT_GT(BlockCache::thread_stats().cached_bytes, BlockCache::kThreadCapBytes / 2);
}

TEST_F(BlockCacheTest, ABlockFreedOnAnotherThreadJoinsThatThreadsLists) {
  void* a = BlockCache::allocate(200);
  uint64_t cached_there = 0;
  std::thread t([&] {
    BlockCache::deallocate(a);
    cached_there = BlockCache::thread_stats().cached_bytes;
    // The thread ends with the block cached: its exit hook frees it (LeakSanitizer would
    // report it otherwise).
  });
  t.join();
  EXPECT_EQ(cached_there, 224u);
  EXPECT_EQ(BlockCache::thread_stats().cached_bytes, 0u);
}

TEST_F(BlockCacheTest, RandomUseNeverHandsOutALiveBlock) {
  std::mt19937_64 rng(42);
  struct Live {
    unsigned char* p;
    std::size_t n;
    unsigned char tag;
  };
  std::vector<Live> live;
  for (int step = 0; step < 200000; ++step) {
    if (live.empty() || rng() % 3 != 0) {
      std::size_t n = rng() % 5000;
      auto* p = static_cast<unsigned char*>(BlockCache::allocate(n));
      ASSERT_NE(p, nullptr);
      auto tag = static_cast<unsigned char>(rng());
      std::memset(p, tag, n);
      live.push_back({p, n, tag});
      if (live.size() < 2000) {
        continue;
      }
    }
    std::size_t i = rng() % live.size();
    Live l = live[i];
    for (std::size_t k = 0; k < l.n; ++k) {
      ASSERT_EQ(l.p[k], l.tag) << "block overwritten while live, size " << l.n;
    }
    BlockCache::deallocate(l.p);
    live[i] = live.back();
    live.pop_back();
  }
  for (const Live& l : live) {
    BlockCache::deallocate(l.p);
  }
  EXPECT_GT(BlockCache::thread_stats().reuses, 10000u);
}

}  // namespace
}  // namespace cairn::base
