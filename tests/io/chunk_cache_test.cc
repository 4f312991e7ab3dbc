// ChunkCache (io/chunk_cache.h): the store's read cache keyed by chunk id (open addressing,
// CLOCK eviction).
#include "io/chunk_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <map>
#include <random>
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

TEST(ChunkCache, EvictsWhatWasNotUsedSinceTheHandPassedWithinItsBudget) {
  ChunkCache cache(3 * 4096);
  for (uint64_t k = 1; k <= 3; ++k) {
    cache.insert(ChunkId{k, 0}, bytes(4096, static_cast<int>(k)));
  }
  ASSERT_NE(cache.find(ChunkId{1, 0}), nullptr);  // 1 was used; 2 was not
  cache.insert(ChunkId{3, 0}, bytes(4096, 33));   // a refresh (a use) evicts nothing
  EXPECT_EQ(cache.entries(), 3u);
  cache.insert(ChunkId{4, 0}, bytes(4096, 4));  // full: the unused entry (2) goes
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

  // An eviction hands the evicted entry's buffer to the insert that caused it: 3, 4 and 9
  // are used, so 2 goes, and the new entry's buffer is none of the others' (nor a new one:
  // 2's would then be spare, past the budget).
  std::vector<const std::byte*> kept;
  for (uint64_t k : {3, 4, 9}) {
    ASSERT_NE(cache.find(ChunkId{k, 0}), nullptr);
    kept.push_back(cache.find(ChunkId{k, 0})->data());
  }
  cache.insert(ChunkId{10, 0}, bytes(4096, 10));
  EXPECT_EQ(cache.find(ChunkId{2, 0}), nullptr);
  ASSERT_NE(cache.find(ChunkId{10, 0}), nullptr);
  EXPECT_EQ(std::count(kept.begin(), kept.end(), cache.find(ChunkId{10, 0})->data()), 0);
  EXPECT_EQ(cache.spare_bytes(), 0u);
  EXPECT_EQ(cache.used_bytes(), 4u * 4096);

  // Spare buffers of another size give way: cached plus spare stays within the budget.
  cache.erase(ChunkId{3, 0});
  cache.erase(ChunkId{4, 0});
  EXPECT_EQ(cache.spare_bytes(), 2u * 4096);
  cache.insert(ChunkId{11, 0}, bytes(3 * 4096, 11));
  EXPECT_EQ(*cache.find(ChunkId{11, 0}), bytes(3 * 4096, 11));
  EXPECT_LE(cache.used_bytes() + cache.spare_bytes(), 4u * 4096);
}

// The table against a plain map, under inserts, refreshes, erases and finds of ids whose
// hashes share their low bits (long probe runs through one home bucket, so erases shift
// entries back across the run) mixed with ordinary ones; the budget never evicts.
TEST(ChunkCache, MatchesAMapThroughCollidingInsertsAndErases) {
  ChunkCache cache(1u << 20);
  std::map<ChunkId, std::vector<std::byte>> model;
  std::mt19937_64 rng(7);
  std::vector<ChunkId> ids;
  for (uint64_t k = 1; k <= 300; ++k) {
    ids.push_back(k % 2 == 0 ? ChunkId{k << 40, 0} : ChunkId{rng(), rng()});  // even: tag 0
  }
  for (int step = 0; step < 20000; ++step) {
    const ChunkId& id = ids[rng() % ids.size()];
    switch (rng() % 4) {
      case 0: {
        auto data = bytes(64, static_cast<int>(step & 0xff));
        cache.insert(id, data);
        model[id] = data;
        break;
      }
      case 1:
        cache.erase(id);
        model.erase(id);
        break;
      case 2: {
        // The batch forms, over up to 20 ids (repeats included).
        std::vector<ChunkId> batch;
        for (uint64_t n = rng() % 21; n > 0; --n) {
          batch.push_back(ids[rng() % ids.size()]);
        }
        if (rng() % 2 == 0) {
          cache.erase_many(batch);
          for (const ChunkId& b : batch) {
            model.erase(b);
          }
          break;
        }
        std::vector<std::vector<std::byte>> datas;
        std::vector<std::span<const std::byte>> spans;
        for (std::size_t k = 0; k < batch.size(); ++k) {
          datas.push_back(bytes(64, static_cast<int>((step + k) & 0xff)));
        }
        for (const auto& d : datas) {
          spans.emplace_back(d);
        }
        cache.insert_many(batch, spans);
        for (std::size_t k = 0; k < batch.size(); ++k) {
          model[batch[k]] = datas[k];
        }
        break;
      }
      default: {
        const auto* got = cache.find(id);
        auto want = model.find(id);
        ASSERT_EQ(got != nullptr, want != model.end()) << "step " << step;
        if (got != nullptr) {
          ASSERT_EQ(*got, want->second) << "step " << step;
        }
      }
    }
    if (step % 1000 == 0) {
      ASSERT_EQ(cache.entries(), model.size());
      for (const auto& [k, v] : model) {
        ASSERT_NE(cache.find(k), nullptr) << "step " << step;
      }
    }
  }
  EXPECT_EQ(cache.used_bytes(), model.size() * 64);
}

}  // namespace
}  // namespace cairn::io
