// Volume semantics over the journaled map: durability of flush, FUA and write-through across
// power cuts, concurrent read-modify-write, trim and zeroes, resize, dedup stats, bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "blockmap/errors.h"
#include "blockmap/volume.h"
#include "io/chunk_hash.h"
#include "io/mem_meta_store.h"
#include "io/sim_log_factory.h"
#include "tests/blockmap/sim_chunk_store.h"
#include "tests/test_util.h"

namespace cairn::blockmap {
namespace {

const std::byte kKey[1] = {std::byte{9}};

class VolumeSemantics : public ::testing::Test {
 protected:
  template <class T>
  T run(Task<T> task) {
    return test::run(ctx, std::move(task));
  }

  // Runs every task concurrently until all complete; returns how many succeeded.
  std::size_t run_all(std::vector<Task<Result<void>>> tasks) {
    std::size_t done = 0, ok = 0;
    for (auto& t : tasks) {
      asio::co_spawn(ctx, std::move(t), [&](std::exception_ptr e, Result<void> r) {
        EXPECT_FALSE(e);
        done++;
        ok += r ? 1 : 0;
      });
    }
    ctx.restart();
    while (done < tasks.size() && ctx.run_one() > 0) {
    }
    EXPECT_EQ(done, tasks.size());
    return ok;
  }

  void open(uint64_t size = 1 << 20, uint32_t block = 4096, uint32_t chunk = 4096,
            Durability durability = Durability::write_back, bool read_only = false) {
    config.name = "vol";
    config.size_bytes = size;
    config.block_size_bytes = block;
    config.chunk_size_bytes = chunk;
    config.durability = durability;
    config.read_only = read_only;
    reopen();
  }

  void reopen() {
    volume.reset();
    VolumeStorage storage{store, meta, &logs, 1 << 20};
    auto v = run(Volume::open(config, storage, ctx.get_executor()));
    ASSERT_TRUE(v) << v.error().message();
    volume = std::move(*v);
  }

  // Loses power at a quiescent point and recovers.
  void power_cut(uint64_t seed) {
    volume.reset();
    store.power_cut(seed);
    logs.power_cut_all(seed);
    reopen();
  }

  std::vector<std::byte> read(uint64_t offset, std::size_t n) {
    std::vector<std::byte> out(n, std::byte{0xee});
    auto r = run(volume->read(offset, out));
    EXPECT_TRUE(r) << r.error().message();
    return out;
  }

  asio::io_context ctx;
  io::ChunkHasher hasher{io::ChunkHasher::Kind::xxh3, kKey};
  test::SimChunkStore store{hasher, 1};
  io::MemMetaStore meta;
  io::SimLogFactory logs{64 << 10};
  VolumeConfig config;
  std::unique_ptr<Volume> volume;
};

TEST_F(VolumeSemantics, FlushedWritesSurvivePowerCuts) {
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    open();
    auto a = test::pattern(12288, seed);
    auto b = test::pattern(8192, seed + 100);
    ASSERT_TRUE(run(volume->write(4096, a)));
    ASSERT_TRUE(run(volume->flush()));
    ASSERT_TRUE(run(volume->write(65536, b)));  // not flushed: may or may not survive
    power_cut(seed);
    EXPECT_EQ(read(4096, a.size()), a) << "seed " << seed;
    auto maybe = read(65536, b.size());
    EXPECT_TRUE(maybe == b || maybe == std::vector<std::byte>(b.size())) << "seed " << seed;
    ASSERT_TRUE(run(volume->destroy()));
    volume.reset();
  }
}

TEST_F(VolumeSemantics, FuaWriteIsDurableWithoutFlush) {
  open();
  auto a = test::pattern(4096, 1);
  ASSERT_TRUE(run(volume->write(8192, a, WriteFlags{.fua = true})));
  power_cut(7);
  EXPECT_EQ(read(8192, 4096), a);
}

TEST_F(VolumeSemantics, WriteThroughMakesEveryWriteDurable) {
  open(1 << 20, 512, 16384, Durability::write_through);
  std::vector<std::vector<std::byte>> data;
  for (uint64_t i = 0; i < 20; ++i) {
    data.push_back(test::pattern(1536, i));
    ASSERT_TRUE(run(volume->write(i * 5000 / 512 * 512, data.back())));
  }
  power_cut(3);
  // Later writes may overlap earlier ones; check each write's bytes not overwritten later.
  std::vector<std::byte> expect(1 << 17);
  for (uint64_t i = 0; i < 20; ++i) {
    std::copy(data[i].begin(), data[i].end(), expect.begin() + i * 5000 / 512 * 512);
  }
  EXPECT_EQ(read(0, expect.size()), expect);
}

TEST_F(VolumeSemantics, ConcurrentSubChunkWritesLoseNoUpdate) {
  open(1 << 20, 512, 65536);
  std::vector<Task<Result<void>>> tasks;
  std::vector<std::vector<std::byte>> blocks;
  for (uint64_t i = 0; i < 256; ++i) {  // two 64 KiB chunks, 128 blocks each
    blocks.push_back(test::pattern(512, 1000 + i));
  }
  for (uint64_t i = 0; i < 256; ++i) {
    tasks.push_back(volume->write(((i * 37) % 256) * 512, blocks[(i * 37) % 256]));
  }
  EXPECT_EQ(run_all(std::move(tasks)), 256u);
  auto all = read(0, 256 * 512);
  for (uint64_t i = 0; i < 256; ++i) {
    EXPECT_TRUE(std::equal(blocks[i].begin(), blocks[i].end(), all.begin() + i * 512)) << i;
  }
}

TEST_F(VolumeSemantics, OverlappingConcurrentWritesNeverMix) {
  open(1 << 20, 4096, 16384);
  auto x = test::pattern(20000, 1);
  auto y = test::pattern(20000, 2);
  std::vector<Task<Result<void>>> tasks;
  tasks.push_back(volume->write(1000, x));
  tasks.push_back(volume->write(1000, y));
  tasks.push_back(volume->flush());
  EXPECT_EQ(run_all(std::move(tasks)), 3u);
  auto got = read(1000, 20000);
  EXPECT_TRUE(got == x || got == y);
}

// write_from() hands its buffer to the store with the last store call only: a write of
// several store calls (over 1 MiB), unaligned at both ends, reads back whole although the
// store overwrites the buffer it takes (SimChunkStore::put_from), and the caller gets a
// buffer of at least its size back.
TEST_F(VolumeSemantics, WriteFromHandsTheBufferToTheStoreWithTheLastBatchOnly) {
  open(8 << 20);
  auto before = test::pattern(8 << 20, 5);
  ASSERT_TRUE(run(volume->write(0, before)));
  const std::size_t length = (2 << 20) + 6000;
  const uint64_t offset = 1000;
  auto payload = test::pattern(length, 6);
  io::AlignedBuffer buffer(length);
  std::memcpy(buffer.data(), payload.data(), length);
  const std::byte* given = buffer.data();
  ASSERT_TRUE(run(volume->write_from(offset, buffer, length)));
  EXPECT_NE(buffer.data(), given);
  EXPECT_GE(buffer.size(), length);
  std::copy(payload.begin(), payload.end(), before.begin() + offset);
  EXPECT_EQ(read(0, before.size()), before);
}

TEST_F(VolumeSemantics, TrimAndZeroesFreeWholeChunks) {
  open();
  ASSERT_TRUE(run(volume->write(0, test::pattern(65536, 5))));
  EXPECT_EQ(volume->stats().mapped_bytes, 65536u);
  ASSERT_TRUE(run(volume->trim(4096, 8192)));
  ASSERT_TRUE(run(volume->write_zeroes(16384, 4096 + 100)));
  EXPECT_EQ(volume->stats().mapped_bytes, 65536u - 3 * 4096);  // edge of the zeroes is RMW
  auto got = read(0, 65536);
  auto expect = test::pattern(65536, 5);
  std::fill(expect.begin() + 4096, expect.begin() + 12288, std::byte{0});
  std::fill(expect.begin() + 16384, expect.begin() + 16384 + 4196, std::byte{0});
  EXPECT_EQ(got, expect);
  std::vector<Extent> extents;
  ASSERT_TRUE(run(volume->block_status(0, 65536, extents)));
  ASSERT_GE(extents.size(), 3u);
  EXPECT_TRUE(extents[0].allocated);
  EXPECT_EQ(extents[1].offset_bytes, 4096u);
  EXPECT_FALSE(extents[1].allocated);
  EXPECT_EQ(extents[1].length_bytes, 8192u);
}

// A read longer than one store call (1 MiB), starting and ending inside chunks, over mapped
// chunks, trimmed holes, never-written space and repeated content, returns what was written.
TEST_F(VolumeSemantics, LargeReadsMixHolesAndChunksAcrossStoreCalls) {
  open(4 << 20);
  auto data = test::pattern(3 << 20, 11);
  auto same = test::pattern(4096, 12);
  for (uint64_t at = 0; at < data.size(); at += 37 * 4096) {  // the same chunk, many times
    std::copy(same.begin(), same.end(), data.begin() + static_cast<std::ptrdiff_t>(at));
  }
  ASSERT_TRUE(run(volume->write(0, data)));
  ASSERT_TRUE(run(volume->trim(200 * 4096, 60 * 4096)));
  ASSERT_TRUE(run(volume->write_zeroes(700 * 4096, 3 * 4096)));
  std::fill(data.begin() + 200 * 4096, data.begin() + 260 * 4096, std::byte{0});
  std::fill(data.begin() + 700 * 4096, data.begin() + 703 * 4096, std::byte{0});
  data.resize(4 << 20);  // the last MiB was never written
  for (auto [offset, length] : {std::pair<uint64_t, uint64_t>{0, 4 << 20},
                                {1000, (2 << 20) + 5000},
                                {(1 << 20) - 4096, (1 << 20) + 8192},
                                {(3 << 20) - 100, 200}}) {
    auto got = read(offset, length);
    ASSERT_TRUE(
        std::equal(got.begin(), got.end(), data.begin() + static_cast<std::ptrdiff_t>(offset)))
        << offset << "+" << length;
  }
  power_cut(5);  // nothing flushed: every chunk may be gone, and reads still succeed
  auto got = read(0, 4 << 20);
  EXPECT_EQ(got.size(), 4u << 20);
}

TEST_F(VolumeSemantics, ZeroesWithNoHoleStayAllocated) {
  open();
  ASSERT_TRUE(run(volume->write_zeroes(0, 32768, WriteFlags{.no_hole = true})));
  EXPECT_EQ(read(0, 32768), std::vector<std::byte>(32768));
  std::vector<Extent> extents;
  ASSERT_TRUE(run(volume->block_status(0, 65536, extents)));
  ASSERT_EQ(extents.size(), 2u);
  EXPECT_TRUE(extents[0].allocated);
  EXPECT_EQ(extents[0].length_bytes, 32768u);
  EXPECT_EQ(volume->stats().mapped_bytes, 32768u);
  // Eight references to one deduplicated zero chunk.
  ASSERT_TRUE(run(volume->flush()));
  io::ChunkId zero = hasher.address(std::vector<std::byte>(4096));
  EXPECT_EQ(store.refs_of(zero), 8u);
}

TEST_F(VolumeSemantics, ResizeShrinkZeroesTheTailAndSurvivesReopen) {
  open(1 << 20, 512, 16384);
  ASSERT_TRUE(run(volume->write(0, test::pattern(1 << 20, 4))));
  ASSERT_TRUE(run(volume->resize(100 * 512)));
  EXPECT_EQ(volume->size_bytes(), 100u * 512);
  std::vector<std::byte> past(512);
  EXPECT_EQ(run(volume->read(100 * 512, past)).error(), errc::out_of_range);
  ASSERT_TRUE(run(volume->resize(1 << 20)));
  auto expect = test::pattern(1 << 20, 4);
  std::fill(expect.begin() + 100 * 512, expect.end(), std::byte{0});
  EXPECT_EQ(read(0, 1 << 20), expect);
  ASSERT_TRUE(run(volume->resize(300 * 512)));
  config.size_bytes = 1 << 20;  // a stale config: the map root's size wins
  power_cut(9);
  EXPECT_EQ(volume->size_bytes(), 300u * 512);
  EXPECT_EQ(read(0, 300 * 512), std::vector<std::byte>(expect.begin(), expect.begin() + 300 * 512));
  EXPECT_EQ(volume->stats().mapped_bytes, 4u * 16384);  // 100 blocks fit in 4 chunks
}

TEST_F(VolumeSemantics, DedupIsVisibleInStats) {
  open(4 << 20);
  auto same = test::pattern(4096, 77);
  for (uint64_t i = 0; i < 100; ++i) {
    ASSERT_TRUE(run(volume->write(i * 8192, same)));
  }
  ASSERT_TRUE(run(volume->flush()));
  VolumeStats s = volume->stats();
  EXPECT_EQ(s.logical_bytes, 4u << 20);
  EXPECT_EQ(s.referenced_bytes, 100u * 4096);
  EXPECT_LT(s.store_physical_bytes, 10u * 4096);  // one data chunk plus a few map pages
  EXPECT_GE(s.store_physical_bytes, 4096u);
}

TEST_F(VolumeSemantics, JournalWrapsThroughCheckpoints) {
  open(16 << 20);
  uint64_t checkpoints_before = volume->stats().map_checkpoints;
  for (uint64_t round = 0; round < 40; ++round) {
    for (uint64_t i = 0; i < 64; ++i) {
      uint64_t chunk = (round * 64 + i) % 4096;
      ASSERT_TRUE(run(volume->write(chunk * 4096, test::pattern(4096, chunk + round))));
    }
    ASSERT_TRUE(run(volume->flush()));
  }
  EXPECT_GT(volume->stats().map_checkpoints, checkpoints_before);
  power_cut(5);
  for (uint64_t c = 0; c < 2560; c += 7) {
    uint64_t round = c / 64;
    EXPECT_EQ(read(c * 4096, 4096), test::pattern(4096, c + round)) << c;
  }
}

TEST_F(VolumeSemantics, DestroyRemovesRootJournalAndChunks) {
  open();
  ASSERT_TRUE(run(volume->write(0, test::pattern(65536, 1))));
  ASSERT_TRUE(run(volume->flush()));
  EXPECT_NE(logs.disk(Volume::journal_name("vol")), nullptr);
  ASSERT_TRUE(run(volume->destroy()));
  volume.reset();
  auto root = run(meta.get(Volume::root_key("vol")));
  ASSERT_TRUE(root);
  EXPECT_FALSE(root->has_value());
  EXPECT_EQ(logs.disk(Volume::journal_name("vol")), nullptr);
  EXPECT_EQ(store.stats().chunks, 0u);
}

TEST_F(VolumeSemantics, RejectsBadInput) {
  open(1 << 20);
  std::vector<std::byte> buf(4096);
  EXPECT_EQ(run(volume->read((1 << 20) - 4095, buf)).error(), errc::out_of_range);
  EXPECT_EQ(run(volume->write(1 << 20, std::span(buf).first(1))).error(), errc::out_of_range);
  EXPECT_EQ(run(volume->write(~0ull - 10, buf)).error(), errc::out_of_range);
  EXPECT_EQ(run(volume->trim(0, (1 << 20) + 1)).error(), errc::out_of_range);
  EXPECT_EQ(run(volume->write_zeroes(~0ull, 2)).error(), errc::out_of_range);
  EXPECT_EQ(run(volume->cache(1 << 20, 1)).error(), errc::out_of_range);
  std::vector<Extent> extents;
  EXPECT_EQ(run(volume->block_status(4096, 1 << 20, extents)).error(), errc::out_of_range);
  // Zero length: a no-op inside the volume (even at its very end), out of range past it.
  EXPECT_TRUE(run(volume->write(1 << 20, std::span(buf).first(0))));
  EXPECT_TRUE(run(volume->read(0, std::span(buf).first(0))));
  EXPECT_TRUE(run(volume->trim(4096, 0)));
  EXPECT_EQ(run(volume->read((1 << 20) + 1, std::span(buf).first(0))).error(), errc::out_of_range);
  // The last byte is writable, one past it is not.
  EXPECT_TRUE(run(volume->write((1 << 20) - 1, std::span(buf).first(1))));
  EXPECT_EQ(run(volume->write((1 << 20) - 1, std::span(buf).first(2))).error(), errc::out_of_range);
  // Resize: zero, unaligned to the block and past the maximum are refused.
  EXPECT_EQ(run(volume->resize(0)).error(), errc::invalid_argument);
  EXPECT_EQ(run(volume->resize(4097)).error(), errc::invalid_argument);
  EXPECT_EQ(run(volume->resize((1ull << 60) + 4096)).error(), errc::invalid_argument);
}

TEST_F(VolumeSemantics, ReadOnlyRefusesChanges) {
  open(1 << 20, 4096, 4096, Durability::write_back, true);
  std::vector<std::byte> buf(4096);
  EXPECT_EQ(run(volume->write(0, buf)).error(), errc::read_only);
  EXPECT_EQ(run(volume->trim(0, 4096)).error(), errc::read_only);
  EXPECT_EQ(run(volume->write_zeroes(0, 4096)).error(), errc::read_only);
  EXPECT_TRUE(run(volume->read(0, buf)));
  EXPECT_TRUE(run(volume->flush()));
  EXPECT_FALSE(volume->can_write());
  EXPECT_FALSE(volume->can_trim());
}

TEST_F(VolumeSemantics, MaximumSizeOpensAndWorksAtBothEnds) {
  const uint64_t max = 1ull << 60;
  open(max);
  auto data = test::pattern(4096, 8);
  ASSERT_TRUE(run(volume->write(max - 4096, data)));
  ASSERT_TRUE(run(volume->write(0, data)));
  ASSERT_TRUE(run(volume->flush()));
  power_cut(1);
  EXPECT_EQ(read(max - 4096, 4096), data);
  EXPECT_EQ(read(0, 4096), data);
  std::vector<Extent> extents;
  ASSERT_TRUE(run(volume->block_status(max - 8192, 8192, extents)));
  ASSERT_EQ(extents.size(), 2u);
  EXPECT_FALSE(extents[0].allocated);
  EXPECT_TRUE(extents[1].allocated);
  // The whole 1 EiB in one call: unwritten spans are skipped without visiting their chunks.
  extents.clear();
  ASSERT_TRUE(run(volume->block_status(0, max, extents)));
  ASSERT_EQ(extents.size(), 3u);
  EXPECT_TRUE(extents[0].allocated);
  EXPECT_EQ(extents[0].length_bytes, 4096u);
  EXPECT_FALSE(extents[1].allocated);
  EXPECT_EQ(extents[1].length_bytes, max - 8192);
  EXPECT_TRUE(extents[2].allocated);
  EXPECT_EQ(extents[2].offset_bytes, max - 4096);
  VolumeConfig too_big = config;
  too_big.name = "big";
  too_big.size_bytes = max + 4096;
  VolumeStorage storage{store, meta, &logs, 1 << 20};
  auto refused = run(Volume::open(too_big, storage, ctx.get_executor()));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::invalid_argument);
}

}  // namespace
}  // namespace cairn::blockmap
