// Bounded RAM (issue 2, M3): a volume whose map (2^21 chunk entries, 8192 leaf pages, 32 MiB
// of ids) is eight times its 4 MiB map cache. Every chunk is written, the volume is closed
// and recovered from its root and journal, and every byte is read back and compared.
//
// The content is chunk i = distinct[i % 4093], so the store stays small (dedup) while the map
// is huge; 4093 is prime, so map pages do not repeat with a short period either.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <iostream>

#include "blockmap/volume.h"
#include "io/chunk_hash.h"
#include "io/mem_chunk_store.h"
#include "io/mem_meta_store.h"
#include "io/sim_log_factory.h"
#include "tests/test_util.h"

namespace cairn::blockmap {
namespace {

const std::byte kKey[1] = {std::byte{5}};
constexpr uint64_t kChunkBytes = 4096;
constexpr uint64_t kChunks = 1ull << 21;
constexpr uint64_t kDistinct = 4093;
constexpr uint64_t kRequestChunks = 256;  // 1 MiB per request
constexpr uint64_t kMapCacheBytes = 4ull << 20;

TEST(BoundedRam, MapFarLargerThanItsCacheReadsBackEveryByte) {
  auto started = std::chrono::steady_clock::now();
  asio::io_context ctx;
  io::ChunkHasher hasher{io::ChunkHasher::Kind::xxh3, kKey};
  io::MemChunkStore store{hasher};
  io::MemMetaStore meta;
  io::SimLogFactory logs{1 << 20};
  VolumeConfig config;
  config.name = "big";
  config.size_bytes = kChunks * kChunkBytes;
  VolumeStorage storage{store, meta, &logs, kMapCacheBytes};

  std::vector<std::vector<std::byte>> distinct;
  for (uint64_t i = 0; i < kDistinct; ++i) {
    distinct.push_back(test::pattern(kChunkBytes, i + 1));
  }
  std::vector<std::byte> buf(kRequestChunks * kChunkBytes);

  {
    auto v = test::run(ctx, Volume::open(config, storage, ctx.get_executor()));
    ASSERT_TRUE(v);
    Volume& volume = **v;
    for (uint64_t first = 0; first < kChunks; first += kRequestChunks) {
      for (uint64_t k = 0; k < kRequestChunks; ++k) {
        std::memcpy(buf.data() + k * kChunkBytes, distinct[(first + k) % kDistinct].data(),
                    kChunkBytes);
      }
      ASSERT_TRUE(test::run(ctx, volume.write(first * kChunkBytes, buf)));
      if ((first / kRequestChunks) % 256 == 255) {
        ASSERT_TRUE(test::run(ctx, volume.flush()));
      }
    }
    ASSERT_TRUE(test::run(ctx, volume.flush()));
    VolumeStats s = volume.stats();
    EXPECT_EQ(s.mapped_bytes, kChunks * kChunkBytes);
    EXPECT_LE(s.map_cache_pages, s.map_cache_max_pages);
    EXPECT_LT(s.map_cache_max_pages * 8, kChunks / 256 + 1);  // the cache is < 1/8 of the map
    EXPECT_GT(s.map_checkpoints, 1u);
    std::cout << "written: map cache " << s.map_cache_pages << "/" << s.map_cache_max_pages
              << " pages, " << s.map_page_writes << " page writes, " << s.map_checkpoints
              << " checkpoints, store " << store.stats().chunks << " chunks\n";
  }

  // Recover from the root and the journal, then verify every byte.
  auto v = test::run(ctx, Volume::open(config, storage, ctx.get_executor()));
  ASSERT_TRUE(v);
  Volume& volume = **v;
  uint64_t bad = 0;
  for (uint64_t first = 0; first < kChunks; first += kRequestChunks) {
    ASSERT_TRUE(test::run(ctx, volume.read(first * kChunkBytes, buf)));
    for (uint64_t k = 0; k < kRequestChunks; ++k) {
      if (std::memcmp(buf.data() + k * kChunkBytes, distinct[(first + k) % kDistinct].data(),
                      kChunkBytes) != 0) {
        if (bad++ < 5) {
          ADD_FAILURE() << "chunk " << first + k << " differs";
        }
      }
    }
  }
  EXPECT_EQ(bad, 0u);
  VolumeStats s = volume.stats();
  EXPECT_LE(s.map_cache_pages, s.map_cache_max_pages);
  EXPECT_GE(s.map_cache_misses, kChunks / 256);  // every leaf page came from the store
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started);
  std::cout << "verified " << kChunks << " chunks (" << (kChunks * kChunkBytes >> 20)
            << " MiB) through a " << (kMapCacheBytes >> 20) << " MiB map cache ("
            << s.map_cache_max_pages << " pages for " << kChunks / 256 << " map pages), "
            << s.map_cache_misses << " page loads, " << seconds.count() << " s\n";
}

}  // namespace
}  // namespace cairn::blockmap
