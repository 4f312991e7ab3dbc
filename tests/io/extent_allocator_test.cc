// Tests of ExtentAllocator: the three placement policies (next fit, best fit, largest
// extent) and its bookkeeping (free bytes, extent count, largest extent) against a model of
// one flag per block under random allocate, free, reserve and extend.
#include "io/extent_allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace cairn::io {
namespace {

constexpr uint64_t kBlock = 4096;

TEST(ExtentAllocator, BestFitFillsTheSmallestHoleAndSparesLargeRuns) {
  ExtentAllocator a(0, 64 * kBlock);
  ASSERT_EQ(a.allocate(64 * kBlock), 0u);
  a.free(10 * kBlock, kBlock);       // a 1-block hole
  a.free(20 * kBlock, 3 * kBlock);   // a 3-block hole
  a.free(40 * kBlock, 24 * kBlock);  // the tail
  EXPECT_EQ(a.largest_extent_bytes(), 24 * kBlock);
  EXPECT_EQ(a.allocate_best_fit(kBlock), 10 * kBlock);
  EXPECT_EQ(a.allocate_best_fit(2 * kBlock), 20 * kBlock);
  EXPECT_EQ(a.allocate_best_fit(kBlock), 22 * kBlock);
  EXPECT_EQ(a.allocate_best_fit(kBlock), 40 * kBlock);  // only the tail is left
  EXPECT_EQ(a.largest_extent_bytes(), 23 * kBlock);
  EXPECT_FALSE(a.allocate_best_fit(24 * kBlock));
}

TEST(ExtentAllocator, LargestTakesTheBiggestExtentUpToTheLimit) {
  ExtentAllocator a(0, 32 * kBlock);
  ASSERT_EQ(a.allocate(32 * kBlock), 0u);
  a.free(2 * kBlock, 2 * kBlock);
  a.free(8 * kBlock, 5 * kBlock);
  a.free(20 * kBlock, 5 * kBlock);
  auto first = a.allocate_largest(16 * kBlock);
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, std::pair(8 * kBlock, 5 * kBlock));  // the lower of two equal extents
  auto second = a.allocate_largest(3 * kBlock);
  ASSERT_TRUE(second);
  EXPECT_EQ(*second, std::pair(20 * kBlock, 3 * kBlock));
  EXPECT_EQ(a.largest_extent_bytes(), 2 * kBlock);
  EXPECT_EQ(a.free_bytes(), 4 * kBlock);
  a.free(8 * kBlock, 5 * kBlock);
  a.free(20 * kBlock, 3 * kBlock);
  EXPECT_EQ(a.largest_extent_bytes(), 5 * kBlock);
  EXPECT_EQ(a.extents(), 3u);
}

// A model: one flag per block. Checks every counter the allocator keeps against it.
class Model {
 public:
  explicit Model(uint64_t blocks) : free_(blocks, true) {}

  void take(uint64_t offset, uint64_t length) { set(offset, length, false); }
  void give(uint64_t offset, uint64_t length) { set(offset, length, true); }
  void grow(uint64_t blocks) { free_.resize(blocks, true); }
  [[nodiscard]] bool all_free(uint64_t offset, uint64_t length) const {
    return std::all_of(free_.begin() + static_cast<std::ptrdiff_t>(offset / kBlock),
                       free_.begin() + static_cast<std::ptrdiff_t>((offset + length) / kBlock),
                       [](bool f) { return f; });
  }
  [[nodiscard]] bool all_used(uint64_t offset, uint64_t length) const {
    return std::none_of(free_.begin() + static_cast<std::ptrdiff_t>(offset / kBlock),
                        free_.begin() + static_cast<std::ptrdiff_t>((offset + length) / kBlock),
                        [](bool f) { return f; });
  }

  void expect_matches(const ExtentAllocator& a) const {
    uint64_t free_blocks = 0;
    uint64_t runs = 0;
    uint64_t longest = 0;
    uint64_t run = 0;
    for (bool f : free_) {
      if (f) {
        ++free_blocks;
        run = run + 1;
        runs += run == 1 ? 1 : 0;
        longest = std::max(longest, run);
      } else {
        run = 0;
      }
    }
    ASSERT_EQ(a.free_bytes(), free_blocks * kBlock);
    ASSERT_EQ(a.extents(), runs);
    ASSERT_EQ(a.largest_extent_bytes(), longest * kBlock);
  }

 private:
  void set(uint64_t offset, uint64_t length, bool value) {
    for (uint64_t b = offset / kBlock; b < (offset + length) / kBlock; ++b) {
      ASSERT_NE(free_[b], value);
      free_[b] = value;
    }
  }
  std::vector<bool> free_;
};

// The chunks of an overwritten 1 MiB put come back one 4 KiB run each, in any order: they
// merge into one extent, with the free space around them.
TEST(ExtentAllocator, FreeManyMergesTouchingRuns) {
  ExtentAllocator a(0, 1024 * kBlock);
  auto big = a.allocate(256 * kBlock);
  auto other = a.allocate(8 * kBlock);
  ASSERT_EQ(big, 0u);
  ASSERT_EQ(other, 256 * kBlock);
  std::vector<std::pair<uint64_t, uint64_t>> pieces;
  for (uint64_t b = 0; b < 256; ++b) {
    pieces.emplace_back(b * kBlock, kBlock);
  }
  std::shuffle(pieces.begin(), pieces.end(), std::mt19937_64(3));
  a.free_many(pieces);
  EXPECT_EQ(a.extents(), 2u);
  EXPECT_EQ(a.largest_extent_bytes(), (1024 - 264) * kBlock);
  EXPECT_EQ(a.free_bytes(), (1024 - 8) * kBlock);
  EXPECT_EQ(a.allocate_best_fit(256 * kBlock), 0u);
}

TEST(ExtentAllocator, BookkeepingMatchesAModelUnderRandomUse) {
  std::mt19937_64 rng(7);
  uint64_t blocks = 512;
  ExtentAllocator a(0, blocks * kBlock);
  Model model(blocks);
  std::vector<std::pair<uint64_t, uint64_t>> used;
  auto length = [&] { return (1 + rng() % (rng() % 4 == 0 ? 40 : 4)) * kBlock; };
  for (int step = 0; step < 20000; ++step) {
    uint64_t op = rng() % 10;
    std::optional<uint64_t> got;
    uint64_t want = length();
    if (op < 2) {
      got = a.allocate(want);
    } else if (op < 4) {
      got = a.allocate_best_fit(want);
    } else if (op < 5) {
      if (auto run = a.allocate_largest(want)) {
        got = run->first;
        want = run->second;
      }
    } else if (op < 9 && !used.empty() && rng() % 4 == 0) {
      // free_many() of a few runs cut into blocks, in random order.
      std::vector<std::pair<uint64_t, uint64_t>> pieces;
      for (int k = 0; k < 3 && !used.empty(); ++k) {
        std::size_t i = rng() % used.size();
        auto [off, len] = used[i];
        used[i] = used.back();
        used.pop_back();
        for (uint64_t b = 0; b < len; b += kBlock) {
          pieces.emplace_back(off + b, kBlock);
        }
        model.give(off, len);
      }
      std::shuffle(pieces.begin(), pieces.end(), rng);
      a.free_many(pieces);
    } else if (op < 9 && !used.empty()) {
      std::size_t i = rng() % used.size();
      auto [off, len] = used[i];
      used[i] = used.back();
      used.pop_back();
      // Free a random part of it sometimes, the rest stays in use.
      if (len > kBlock && rng() % 2 == 0) {
        uint64_t cut = (1 + rng() % (len / kBlock - 1)) * kBlock;
        a.free(off, cut);
        model.give(off, cut);
        used.emplace_back(off + cut, len - cut);
      } else {
        a.free(off, len);
        model.give(off, len);
      }
    } else if (op == 9 && rng() % 50 == 0) {
      blocks += 16;
      a.extend(blocks * kBlock);
      model.grow(blocks);
    } else if (op == 9) {
      // reserve() of a random run succeeds exactly when the model has it all free.
      uint64_t off = (rng() % blocks) * kBlock;
      uint64_t len = std::min(length(), blocks * kBlock - off);
      bool expect = model.all_free(off, len);
      ASSERT_EQ(a.reserve(off, len), expect);
      if (expect) {
        model.take(off, len);
        used.emplace_back(off, len);
      }
    }
    if (got) {
      ASSERT_TRUE(model.all_free(*got, want)) << "step " << step;
      model.take(*got, want);
      used.emplace_back(*got, want);
    } else if (op < 4) {
      // No run was found: the model agrees no free run is that long.
      model.expect_matches(a);
      ASSERT_LT(a.largest_extent_bytes(), want);
    }
    model.expect_matches(a);
    if (HasFatalFailure()) {
      FAIL() << "step " << step;
    }
  }
  for (auto [off, len] : used) {
    ASSERT_TRUE(model.all_used(off, len));
    a.free(off, len);
  }
  EXPECT_EQ(a.extents(), 1u);
  EXPECT_EQ(a.largest_extent_bytes(), blocks * kBlock);
}

}  // namespace
}  // namespace cairn::io
