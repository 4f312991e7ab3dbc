// ChunkMap: paging under a tiny cache, overwrite and trim, resize, checkpoint and reload.
#include "blockmap/chunk_map.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "io/chunk_hash.h"
#include "io/mem_chunk_store.h"
#include "tests/test_util.h"

namespace cairn::blockmap {
namespace {

const std::byte kKey[1] = {std::byte{3}};

// A fake data id: the map never dereferences data ids, so any non-null value will do.
io::ChunkId fake(uint64_t i) {
  return io::ChunkId{i + 1, 0xabcdef};
}

class ChunkMapTest : public ::testing::Test {
 protected:
  template <class T>
  T run(Task<T> task) {
    return test::run(ctx, std::move(task));
  }

  MapRoot root_of(const ChunkMap::Checkpoint& c) {
    MapRoot root;
    root.chunk_count = c.chunk_count;
    root.mapped_chunks = c.mapped_chunks;
    root.dir_chunks = c.dir_chunks;
    return root;
  }

  void unref_all(const std::vector<io::ChunkId>& ids) {
    if (!ids.empty()) {
      ASSERT_TRUE(run(store.unref(ids)));
    }
  }

  asio::io_context ctx;
  io::ChunkHasher hasher{io::ChunkHasher::Kind::xxh3, kKey};
  io::MemChunkStore store{hasher};
};

TEST_F(ChunkMapTest, NewMapIsAllHolesAndStoresNothing) {
  ChunkMap map(store, 0, 1000);
  for (uint64_t i : {0ull, 1ull, 999ull}) {
    auto id = run(map.get(i));
    ASSERT_TRUE(id);
    EXPECT_TRUE(id->is_null());
  }
  auto c = run(map.checkpoint());
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->dir_chunks.empty());
  EXPECT_EQ(store.stats().chunks, 0u);
  EXPECT_EQ(map.mapped_chunks(), 0u);
}

TEST_F(ChunkMapTest, PagesInAndOutUnderATinyCache) {
  const uint64_t n = ChunkMap::kIdsPerPage * 40 + 17;
  ChunkMap map(store, 0, n);  // the minimum: kMinCachedPages pages
  ASSERT_EQ(map.max_cached_pages(), ChunkMap::kMinCachedPages);
  for (uint64_t i = 0; i < n; i += 3) {
    auto old = run(map.set(i, fake(i)));
    ASSERT_TRUE(old);
    EXPECT_TRUE(old->is_null());
  }
  // Visit in a scattered order so that pages leave and come back.
  for (uint64_t k = 0; k < n; ++k) {
    uint64_t i = (k * 7919) % n;
    auto id = run(map.get(i));
    ASSERT_TRUE(id);
    EXPECT_EQ(*id, i % 3 == 0 ? fake(i) : io::ChunkId{}) << i;
  }
  auto s = map.stats();
  EXPECT_LE(s.cached_pages, ChunkMap::kMinCachedPages);
  EXPECT_GT(s.evictions, 30u);
  EXPECT_GT(s.misses, 40u);
  EXPECT_GT(s.page_writes, 0u);
  EXPECT_EQ(map.mapped_chunks(), (n + 2) / 3);
}

TEST_F(ChunkMapTest, OverwriteReturnsTheOldIdAndReleasesOldPages) {
  ChunkMap map(store, 1 << 20, 4096);
  ASSERT_TRUE(run(map.set(5, fake(1))));
  auto old = run(map.set(5, fake(2)));
  ASSERT_TRUE(old);
  EXPECT_EQ(*old, fake(1));
  EXPECT_EQ(map.mapped_chunks(), 1u);

  auto first = run(map.checkpoint());
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->released.empty());
  EXPECT_EQ(first->dir_chunks.size(), 1u);
  EXPECT_EQ(store.stats().chunks, 2u);  // one leaf page, one directory chunk

  ASSERT_TRUE(run(map.set(6, fake(3))));
  auto second = run(map.checkpoint());
  ASSERT_TRUE(second);
  // The old leaf page and the old directory chunk are no longer named by the new root.
  ASSERT_EQ(second->released.size(), 2u);
  unref_all(second->released);
  EXPECT_EQ(store.stats().chunks, 2u);
}

TEST_F(ChunkMapTest, TrimmingEverythingStoresNothing) {
  ChunkMap map(store, 1 << 20, 2048);
  for (uint64_t i = 0; i < 2048; i += 100) {
    ASSERT_TRUE(run(map.set(i, fake(i))));
  }
  auto c = run(map.checkpoint());
  ASSERT_TRUE(c);
  EXPECT_GT(store.stats().chunks, 0u);
  for (uint64_t i = 0; i < 2048; i += 100) {
    auto old = run(map.set(i, io::ChunkId{}));
    ASSERT_TRUE(old);
    EXPECT_EQ(*old, fake(i));
  }
  EXPECT_EQ(map.mapped_chunks(), 0u);
  auto after = run(map.checkpoint());
  ASSERT_TRUE(after);
  EXPECT_TRUE(after->dir_chunks.empty());
  unref_all(after->released);
  EXPECT_EQ(store.stats().chunks, 0u);
}

TEST_F(ChunkMapTest, CheckpointThenLoadGivesTheSameMap) {
  const uint64_t n = ChunkMap::kIdsPerPage * ChunkMap::kRefsPerDirChunk * 2 + 5;  // 3 dir chunks
  ChunkMap map(store, 0, n);
  std::vector<uint64_t> written;
  for (uint64_t i = 0; i < n; i += 997) {
    ASSERT_TRUE(run(map.set(i, fake(i))));
    written.push_back(i);
  }
  ASSERT_TRUE(run(map.set(n - 1, fake(n - 1))));
  written.push_back(n - 1);
  auto c = run(map.checkpoint());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->dir_chunks.size(), 3u);

  ChunkMap again(store, 0, 0);
  ASSERT_TRUE(run(again.load(root_of(*c))));
  EXPECT_EQ(again.chunk_count(), n);
  EXPECT_EQ(again.mapped_chunks(), written.size());
  for (uint64_t i = 0; i < n; i += 331) {
    auto id = run(again.get(i));
    ASSERT_TRUE(id);
    bool mapped = std::find(written.begin(), written.end(), i) != written.end();
    EXPECT_EQ(*id, mapped ? fake(i) : io::ChunkId{}) << i;
  }
  for (uint64_t i : written) {
    auto id = run(again.get(i));
    ASSERT_TRUE(id);
    EXPECT_EQ(*id, fake(i));
  }
}

TEST_F(ChunkMapTest, ADamagedPageFailsItsHash) {
  ChunkMap map(store, 0, 1024);
  ASSERT_TRUE(run(map.set(1, fake(1))));
  auto c = run(map.checkpoint());
  ASSERT_TRUE(c);
  MapRoot root = root_of(*c);
  root.dir_chunks[0].ref.hash[0] ^= 1;
  ChunkMap again(store, 0, 0);
  EXPECT_FALSE(run(again.load(root)));
  MapRoot bad_index = root_of(*c);
  bad_index.dir_chunks[0].index = 1;  // past the end of a 1024-chunk map
  EXPECT_FALSE(run(again.load(bad_index)));
}

TEST_F(ChunkMapTest, ShrinkDropsIdsAndGrowReadsHoles) {
  const uint64_t n = ChunkMap::kIdsPerPage * 10;
  ChunkMap map(store, 0, n);
  for (uint64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(run(map.set(i, fake(i))));
  }
  ASSERT_TRUE(run(map.checkpoint()));
  std::vector<io::ChunkId> dropped;
  const uint64_t keep = ChunkMap::kIdsPerPage * 3 + 10;
  ASSERT_TRUE(run(map.resize(keep, dropped)));
  EXPECT_EQ(dropped.size(), n - keep);
  EXPECT_EQ(map.mapped_chunks(), keep);
  std::sort(dropped.begin(), dropped.end());
  EXPECT_EQ(dropped.front(), fake(keep));
  dropped.clear();
  ASSERT_TRUE(run(map.resize(n, dropped)));
  EXPECT_TRUE(dropped.empty());
  for (uint64_t i = keep - 2; i < n; i += 37) {
    auto id = run(map.get(i));
    ASSERT_TRUE(id);
    EXPECT_EQ(*id, i < keep ? fake(i) : io::ChunkId{}) << i;
  }
  auto c = run(map.checkpoint());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->mapped_chunks, keep);
  // Shrinking to nothing releases every map chunk.
  ASSERT_TRUE(run(map.resize(0, dropped)));
  auto empty = run(map.checkpoint());
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->dir_chunks.empty());
  unref_all(c->released);
  unref_all(empty->released);
  EXPECT_EQ(store.stats().chunks, 0u);
}

TEST_F(ChunkMapTest, HolesFromSkipsUnwrittenSpans) {
  const uint64_t n = 1ull << 40;  // 2^32 pages, 2^25 directory chunks
  const uint64_t page = ChunkMap::kIdsPerPage;
  const uint64_t last_page_start = n - page;
  ChunkMap map(store, 0, n);
  EXPECT_EQ(map.holes_from(0), n);
  EXPECT_EQ(map.holes_from(n - 1), 1u);
  ASSERT_TRUE(run(map.set(1000, fake(1))));  // page 3
  ASSERT_TRUE(run(map.set(n - 1, fake(2))));
  EXPECT_EQ(map.holes_from(0), 3 * page);   // up to the cached page 3
  EXPECT_EQ(map.holes_from(3 * page), 0u);  // page 3 itself: ask get()
  EXPECT_EQ(map.holes_from(4 * page), last_page_start - 4 * page);
  ASSERT_TRUE(run(map.checkpoint()));
  // Evict everything by touching other pages; the directory still knows pages 3 and last.
  for (uint64_t p = 100; p < 100 + 2 * ChunkMap::kMinCachedPages; ++p) {
    ASSERT_TRUE(run(map.set(p * page, fake(p))));
    ASSERT_TRUE(run(map.set(p * page, io::ChunkId{})));
  }
  EXPECT_EQ(map.holes_from(0), 3 * page);
  // Pages 100..103 left the cache as null refs; 104..107 are still cached (maybe mapped).
  EXPECT_EQ(map.holes_from(7 * page + 3),
            (100 + ChunkMap::kMinCachedPages) * page - (7 * page + 3));
  for (uint64_t i : std::vector<uint64_t>{0, 1000, n - 1}) {
    auto id = run(map.get(i));
    ASSERT_TRUE(id);
    EXPECT_EQ(id->is_null(), i == 0);
  }
}

TEST(MapRoot, EncodesAndRejectsDamage) {
  MapRoot root;
  root.size_bytes = 1 << 30;
  root.chunk_size_bytes = 4096;
  root.chunk_count = (1 << 30) / 4096;
  root.mapped_chunks = 7;
  root.checkpoint_lsn = 42;
  root.generation = 3;
  root.dir_chunks.push_back(DirChunkRef{2, 0, PageRef{io::ChunkId{1, 2}, {}}});
  std::string bytes = encode_root(root);
  auto back = decode_root(bytes);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->checkpoint_lsn, 42u);
  EXPECT_EQ(back->dir_chunks, root.dir_chunks);
  for (std::size_t i : {0ul, 10ul, bytes.size() - 1}) {
    std::string bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ 0x40);
    EXPECT_FALSE(decode_root(bad)) << i;
  }
  EXPECT_FALSE(decode_root(bytes.substr(0, bytes.size() - 1)));
  EXPECT_FALSE(decode_root(""));
}

}  // namespace
}  // namespace cairn::blockmap
