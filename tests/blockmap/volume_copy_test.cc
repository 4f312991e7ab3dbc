// Volume::compare_and_write (SCSI COMPARE AND WRITE) and Volume::copy_range (EXTENDED COPY):
// atomicity against concurrent writers, miscompare offsets, copy by reference (no new data in
// the store), memmove semantics of overlapping copies, FUA durability, bad input.
#include <gtest/gtest.h>

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

const std::byte kKey[1] = {std::byte{3}};

class VolumeCopy : public ::testing::Test {
 protected:
  template <class T>
  T run(Task<T> task) {
    return test::run(ctx, std::move(task));
  }

  void open(uint64_t size = 1 << 20, uint32_t block = 512, uint32_t chunk = 4096,
            bool read_only = false) {
    config.name = "vol";
    config.size_bytes = size;
    config.block_size_bytes = block;
    config.chunk_size_bytes = chunk;
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

TEST_F(VolumeCopy, CompareAndWriteWritesOnlyOnMatch) {
  open();
  auto old_data = test::pattern(1024, 1);
  auto new_data = test::pattern(1024, 2);
  ASSERT_TRUE(run(volume->write(1536, old_data)));

  uint64_t at = 99;
  auto ok = run(volume->compare_and_write(1536, old_data, new_data, &at));
  ASSERT_TRUE(ok);
  EXPECT_TRUE(*ok);
  EXPECT_EQ(at, 99u);
  EXPECT_EQ(read(1536, 1024), new_data);

  // Mismatch at byte 700 of the range: reported, nothing written.
  auto wrong = new_data;
  wrong[700] ^= std::byte{1};
  auto third = test::pattern(1024, 3);
  auto miss = run(volume->compare_and_write(1536, wrong, third, &at));
  ASSERT_TRUE(miss);
  EXPECT_FALSE(*miss);
  EXPECT_EQ(at, 700u);
  EXPECT_EQ(read(1536, 1024), new_data);
  EXPECT_EQ(volume->stats().miscompares, 1u);
}

TEST_F(VolumeCopy, CompareAndWriteIsAtomicAgainstAnother) {
  open();
  auto zero = std::vector<std::byte>(512);
  auto a = test::pattern(512, 10);
  auto b = test::pattern(512, 11);
  int matched = 0, done = 0;
  for (const auto* data : {&a, &b}) {
    asio::co_spawn(ctx, volume->compare_and_write(4096 - 256, zero, *data, nullptr),
                   [&](std::exception_ptr e, Result<bool> r) {
                     EXPECT_FALSE(e);
                     ASSERT_TRUE(r);
                     matched += *r ? 1 : 0;
                     done++;
                   });
  }
  ctx.restart();
  while (done < 2 && ctx.run_one() > 0) {
  }
  ASSERT_EQ(done, 2);
  EXPECT_EQ(matched, 1);
  auto now = read(4096 - 256, 512);
  EXPECT_TRUE(now == a || now == b);
}

TEST_F(VolumeCopy, CompareAndWriteBadInput) {
  open(1 << 20, 512, 4096, true);
  std::vector<std::byte> x(512);
  auto r = run(volume->compare_and_write(0, x, x, nullptr));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), make_error_code(errc::read_only));
  open();
  r = run(volume->compare_and_write((1 << 20) - 256, x, x, nullptr));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), make_error_code(errc::out_of_range));
}

TEST_F(VolumeCopy, AlignedCopyReferencesChunksAndStoresNoData) {
  open();
  auto data = test::pattern(64 * 1024, 5);
  ASSERT_TRUE(run(volume->write(0, data)));
  ASSERT_TRUE(run(volume->flush()));
  auto before = store.stats();
  ASSERT_TRUE(run(volume->copy_range(0, 512 * 1024, data.size())));
  auto after = store.stats();
  EXPECT_EQ(after.chunks, before.chunks);
  EXPECT_EQ(after.physical_bytes, before.physical_bytes);
  EXPECT_EQ(after.referenced_bytes, 2 * before.referenced_bytes);
  EXPECT_EQ(volume->stats().copied_by_reference_bytes, data.size());
  EXPECT_EQ(read(512 * 1024, data.size()), data);

  // The copy is independent of its source.
  ASSERT_TRUE(run(volume->write(0, test::pattern(8192, 6))));
  EXPECT_EQ(read(512 * 1024, data.size()), data);
}

TEST_F(VolumeCopy, SameOffsetWithinChunkCopiesEdgesAndReferencesMiddle) {
  open();
  auto data = test::pattern(40000, 8);
  ASSERT_TRUE(run(volume->write(1000, data)));
  ASSERT_TRUE(run(volume->copy_range(1000, 1000 + 16 * 4096, data.size())));
  EXPECT_EQ(read(1000 + 16 * 4096, data.size()), data);
  EXPECT_EQ(volume->stats().copied_by_reference_bytes, 9u * 4096);
}

// Random copies, aligned or not, overlapping in both directions, against a memmove model.
TEST_F(VolumeCopy, CopiesMatchMemmoveModel) {
  open(256 * 1024, 512, 4096);
  std::vector<std::byte> model = test::pattern(256 * 1024, 42);
  ASSERT_TRUE(run(volume->write(0, model)));
  uint64_t x = 12345;
  auto next = [&x](uint64_t bound) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    return (x >> 33) % bound;
  };
  for (int i = 0; i < 60; ++i) {
    uint64_t len = 1 + next(70000);
    uint64_t src = next(model.size() - len + 1);
    uint64_t dst = i % 3 == 0 ? src + next(9000) - 4500 : next(model.size() - len + 1);
    if (i % 4 == 0) {  // chunk aligned
      src &= ~uint64_t{4095};
      dst &= ~uint64_t{4095};
    }
    if (dst > model.size() - len) {
      dst = model.size() - len;
    }
    ASSERT_TRUE(run(volume->copy_range(src, dst, len))) << i;
    std::memmove(model.data() + dst, model.data() + src, len);
    ASSERT_EQ(read(0, model.size()), model)
        << "copy " << i << " " << src << "->" << dst << " " << len;
  }
}

TEST_F(VolumeCopy, FuaCopyIsDurable) {
  open();
  auto data = test::pattern(5 * 4096 + 100, 9);
  ASSERT_TRUE(run(volume->write(0, data)));
  ASSERT_TRUE(run(volume->flush()));
  ASSERT_TRUE(run(volume->copy_range(0, 40960, data.size(), WriteFlags{.fua = true})));
  volume.reset();
  store.power_cut(4);
  logs.power_cut_all(4);
  reopen();
  EXPECT_EQ(read(40960, data.size()), data);
}

TEST_F(VolumeCopy, CopyBadInput) {
  open();
  auto r = run(volume->copy_range(0, (1 << 20) - 100, 200));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), make_error_code(errc::out_of_range));
  r = run(volume->copy_range((1 << 20) - 100, 0, 200));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), make_error_code(errc::out_of_range));
  EXPECT_TRUE(run(volume->copy_range(1 << 20, 0, 0)));
  open(1 << 20, 512, 4096, true);
  r = run(volume->copy_range(0, 4096, 4096));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), make_error_code(errc::read_only));
}

}  // namespace
}  // namespace cairn::blockmap
