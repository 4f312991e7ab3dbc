#include "blockmap/volume.h"

#include <gtest/gtest.h>

#include "blockmap/errors.h"
#include "io/chunk_hash.h"
#include "io/mem_chunk_store.h"
#include "io/mem_meta_store.h"
#include "tests/test_util.h"

namespace cairn::blockmap {
namespace {

const std::byte kKey[1] = {std::byte{7}};

class VolumeTest : public ::testing::Test {
 protected:
  std::unique_ptr<Volume> open(uint64_t size, uint32_t block = 4096, uint32_t chunk = 4096,
                               bool read_only = false) {
    VolumeConfig c;
    c.name = "v";
    c.size_bytes = size;
    c.block_size_bytes = block;
    c.chunk_size_bytes = chunk;
    c.read_only = read_only;
    auto v = test::run(ctx, Volume::open(c, store, meta, ctx.get_executor()));
    EXPECT_TRUE(v);
    return v ? std::move(*v) : nullptr;
  }

  asio::io_context ctx;
  io::ChunkHasher hasher{io::ChunkHasher::Kind::xxh3, kKey};
  io::MemChunkStore store{hasher};
  io::MemMetaStore meta;
};

TEST_F(VolumeTest, UnwrittenReadsAsZeroes) {
  auto v = open(1 << 20);
  std::vector<std::byte> out(8192, std::byte{0xff});
  ASSERT_TRUE(test::run(ctx, v->read(4096, out)));
  EXPECT_EQ(out, std::vector<std::byte>(8192));
}

TEST_F(VolumeTest, UnalignedWritesReadBack) {
  auto v = open(1 << 20, 512, 16384);
  auto data = test::pattern(10000, 5);
  ASSERT_TRUE(test::run(ctx, v->write(1234, data)));
  std::vector<std::byte> out(10000);
  ASSERT_TRUE(test::run(ctx, v->read(1234, out)));
  EXPECT_EQ(out, data);
  std::vector<std::byte> before(1234);
  ASSERT_TRUE(test::run(ctx, v->read(0, before)));
  EXPECT_EQ(before, std::vector<std::byte>(1234));
}

TEST_F(VolumeTest, DuplicateDataIsStoredOnce) {
  auto v = open(1 << 20);
  auto data = test::pattern(4096, 9);
  for (uint64_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(test::run(ctx, v->write(i * 4096, data)));
  }
  EXPECT_EQ(store.stats().chunks, 1u);
  EXPECT_EQ(store.stats().referenced_bytes, 10u * 4096);
}

TEST_F(VolumeTest, TrimFreesAndReadsZero) {
  auto v = open(1 << 20);
  auto data = test::pattern(65536, 2);
  ASSERT_TRUE(test::run(ctx, v->write(0, data)));
  EXPECT_EQ(store.stats().chunks, 16u);
  ASSERT_TRUE(test::run(ctx, v->trim(0, 65536)));
  // References to replaced chunks are dropped once the change is durable.
  ASSERT_TRUE(test::run(ctx, v->flush()));
  EXPECT_EQ(store.stats().chunks, 0u);
  std::vector<Extent> extents;
  ASSERT_TRUE(test::run(ctx, v->block_status(0, 1 << 20, extents)));
  ASSERT_EQ(extents.size(), 1u);
  EXPECT_FALSE(extents[0].allocated);
}

TEST_F(VolumeTest, BlockStatusMergesRuns) {
  auto v = open(1 << 20);
  auto data = test::pattern(8192, 2);
  ASSERT_TRUE(test::run(ctx, v->write(8192, data)));
  std::vector<Extent> e;
  ASSERT_TRUE(test::run(ctx, v->block_status(0, 32768, e)));
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].length_bytes, 8192u);
  EXPECT_FALSE(e[0].allocated);
  EXPECT_TRUE(e[1].allocated);
  EXPECT_EQ(e[1].length_bytes, 8192u);
  EXPECT_EQ(e[2].offset_bytes, 16384u);
}

TEST_F(VolumeTest, RejectsOutOfRangeAndReadOnly) {
  auto v = open(1 << 20);
  std::vector<std::byte> buf(4096);
  auto past = test::run(ctx, v->read((1 << 20) - 4095, buf));
  ASSERT_FALSE(past);
  EXPECT_EQ(past.error(), errc::out_of_range);
  EXPECT_FALSE(test::run(ctx, v->write(~0ull - 10, buf)));
  auto ro = open(1 << 20, 4096, 4096, true);
  auto w = test::run(ctx, ro->write(0, buf));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error(), errc::read_only);
}

TEST(VolumeConfig, NamesFollowTheRule) {
  EXPECT_TRUE(valid_volume_name("a"));
  EXPECT_TRUE(valid_volume_name("vm-01.disk"));
  EXPECT_FALSE(valid_volume_name(""));
  EXPECT_FALSE(valid_volume_name("-a"));
  EXPECT_FALSE(valid_volume_name("A"));
  EXPECT_FALSE(valid_volume_name("a_b"));
  EXPECT_TRUE(valid_volume_name(std::string(63, 'a')));
  EXPECT_FALSE(valid_volume_name(std::string(64, 'a')));
}

TEST(VolumeConfig, JsonRoundTripAndValidation) {
  VolumeConfig c;
  c.name = "disk1";
  c.size_bytes = 1 << 30;
  c.block_size_bytes = 512;
  c.chunk_size_bytes = 65536;
  c.durability = Durability::write_through;
  auto back = volume_config_from_json(to_json(c));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->size_bytes, c.size_bytes);
  EXPECT_EQ(back->chunk_size_bytes, 65536u);
  EXPECT_EQ(back->durability, Durability::write_through);
  EXPECT_FALSE(volume_config_from_json("{"));
  EXPECT_FALSE(volume_config_from_json("[]"));
  c.chunk_size_bytes = 3000;
  EXPECT_FALSE(validate(c));
  c.chunk_size_bytes = 131072;
  EXPECT_FALSE(validate(c));
}

}  // namespace
}  // namespace cairn::blockmap
