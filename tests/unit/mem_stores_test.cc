#include <gtest/gtest.h>

#include "io/chunk_hash.h"
#include "io/errors.h"
#include "io/mem_chunk_store.h"
#include "io/mem_meta_store.h"
#include "tests/test_util.h"

namespace cairn::io {
namespace {

const std::byte kKey[1] = {std::byte{7}};

TEST(MemChunkStore, DedupsAndCountsReferences) {
  asio::io_context ctx;
  ChunkHasher hasher(ChunkHasher::Kind::xxh3, kKey);
  MemChunkStore store(hasher);
  auto a = test::pattern(4096, 1);
  std::span<const std::byte> chunks[2] = {a, a};
  ChunkId ids[2];
  ASSERT_TRUE(test::run(ctx, store.put(chunks, ids)));
  EXPECT_EQ(ids[0], ids[1]);
  EXPECT_EQ(store.stats().chunks, 1u);
  EXPECT_EQ(store.stats().dedup_hits, 1u);
  EXPECT_EQ(store.stats().referenced_bytes, 8192u);
  ASSERT_TRUE(test::run(ctx, store.unref(std::span<const ChunkId>(ids, 1))));
  EXPECT_EQ(store.stats().chunks, 1u);
  ASSERT_TRUE(test::run(ctx, store.unref(std::span<const ChunkId>(ids, 1))));
  EXPECT_EQ(store.stats().chunks, 0u);
  std::vector<std::byte> out(4096);
  auto r = test::run(ctx, store.get(ids[0], out));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::not_found);
}

TEST(MemChunkStore, CollisionsAreConfirmedByBytes) {
  asio::io_context ctx;
  ChunkHasher hasher(ChunkHasher::Kind::xxh3, kKey, 8);
  MemChunkStore store(hasher);
  std::vector<std::vector<std::byte>> data;
  std::vector<ChunkId> ids(300);
  for (unsigned i = 0; i < 300; ++i) {
    data.push_back(test::pattern(4096, i));
    std::span<const std::byte> one[1] = {data.back()};
    ASSERT_TRUE(test::run(ctx, store.put(one, std::span<ChunkId>(&ids[i], 1))));
  }
  EXPECT_GT(store.stats().hash_collisions, 0u);
  EXPECT_EQ(store.stats().chunks, 300u);
  std::vector<std::byte> out(4096);
  for (unsigned i = 0; i < 300; ++i) {
    ASSERT_TRUE(test::run(ctx, store.get(ids[i], out)));
    EXPECT_EQ(out, data[i]) << "chunk " << i;
  }
}

TEST(MemMetaStore, CompareAndSwapOnRevisions) {
  asio::io_context ctx;
  MemMetaStore meta;
  auto r1 = test::run(ctx, meta.put_if("a", "1", 0));
  ASSERT_TRUE(r1);
  auto again = test::run(ctx, meta.put_if("a", "2", 0));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), errc::conflict);
  auto r2 = test::run(ctx, meta.put_if("a", "2", *r1));
  ASSERT_TRUE(r2);
  EXPECT_GT(*r2, *r1);
  auto got = test::run(ctx, meta.get("a"));
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->value, "2");
  EXPECT_FALSE(test::run(ctx, meta.erase_if("a", *r1)));
  EXPECT_TRUE(test::run(ctx, meta.erase_if("a", *r2)));
  auto gone = test::run(ctx, meta.get("a"));
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->has_value());
}

TEST(MemMetaStore, ListsByPrefixInOrder) {
  asio::io_context ctx;
  MemMetaStore meta;
  for (const char* k : {"v/b", "v/a", "w/a", "v/c"}) {
    ASSERT_TRUE(test::run(ctx, meta.put_if(k, "x", 0)));
  }
  auto all = test::run(ctx, meta.list("v/"));
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].key, "v/a");
  EXPECT_EQ((*all)[2].key, "v/c");
}

}  // namespace
}  // namespace cairn::io
