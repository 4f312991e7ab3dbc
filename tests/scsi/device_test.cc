// scsi::Device driven with CDBs over a Volume on the in-memory stores: data, status and the
// exact sense bytes for good and malformed commands.
#include "target/scsi/device.h"

#include <gtest/gtest.h>

#include "io/chunk_hash.h"
#include "io/mem_chunk_store.h"
#include "io/mem_meta_store.h"
#include "tests/test_util.h"

namespace cairn::target::scsi {
namespace {

const std::byte kKey[1] = {std::byte{5}};

class DeviceTest : public ::testing::Test {
 protected:
  void open(uint32_t block = 512, uint32_t chunk = 4096, bool read_only = false,
            uint64_t size = 1 << 20) {
    device.reset();
    volume.reset();
    blockmap::VolumeConfig c;
    c.name = "vol";
    c.size_bytes = size;
    c.block_size_bytes = block;
    c.chunk_size_bytes = chunk;
    c.read_only = read_only;
    auto v = test::run(ctx, blockmap::Volume::open(c, store, meta, ctx.get_executor()));
    ASSERT_TRUE(v);
    volume = std::move(*v);
    auto d = test::run(ctx, Device::open(*volume, meta));
    ASSERT_TRUE(d);
    device = std::move(*d);
    nexus.id = 1;
    nexus.initiator_name = "iqn.test:a";
    nexus.initiator_port = "iqn.test:a,i,0x000000000001";
    nexus.target_port = "iqn.2026-11.io.cairn:vol,t,0x0001";
    device->attach(nexus);
    // The first command sees POWER ON, RESET OCCURRED.
    auto r = run({0x00, 0, 0, 0, 0, 0});
    EXPECT_EQ(r.status, Status::check_condition);
    EXPECT_EQ(r.sense[2], 0x06);
    EXPECT_EQ(r.sense[12], 0x29);
    EXPECT_EQ(run({0x00, 0, 0, 0, 0, 0}).status, Status::good);
  }

  Response run(std::vector<uint8_t> cdb, std::span<const std::byte> out = {},
               uint32_t expected = 1 << 20) {
    cdb_ = std::move(cdb);
    Request req;
    req.cdb = cdb_;
    req.data_out = out;
    req.expected_transfer_bytes = out.empty() ? expected : static_cast<uint32_t>(out.size());
    return test::run(ctx, device->execute(nexus, req, data_in));
  }

  static void expect_sense(const Response& r, uint8_t key, uint16_t asc) {
    ASSERT_EQ(r.status, Status::check_condition);
    ASSERT_EQ(r.sense.size(), 18u);
    EXPECT_EQ(r.sense[0] & 0x7F, 0x70);
    EXPECT_EQ(r.sense[2] & 0x0F, key);
    EXPECT_EQ(r.sense[12] << 8 | r.sense[13], asc);
  }

  static std::vector<uint8_t> cdb16(uint8_t opcode, uint64_t lba, uint32_t count,
                                    uint8_t flags = 0) {
    std::vector<uint8_t> c(16, 0);
    c[0] = opcode;
    c[1] = flags;
    for (int i = 0; i < 8; ++i) {
      c[2 + i] = static_cast<uint8_t>(lba >> (56 - 8 * i));
    }
    for (int i = 0; i < 4; ++i) {
      c[10 + i] = static_cast<uint8_t>(count >> (24 - 8 * i));
    }
    return c;
  }

  asio::io_context ctx;
  io::ChunkHasher hasher{io::ChunkHasher::Kind::xxh3, kKey};
  io::MemChunkStore store{hasher};
  io::MemMetaStore meta;
  std::unique_ptr<blockmap::Volume> volume;
  std::unique_ptr<Device> device;
  Nexus nexus;
  std::vector<uint8_t> cdb_;
  std::vector<std::byte> data_in;
};

TEST_F(DeviceTest, UnknownOpcodeAndInvalidField) {
  open();
  auto r = run({0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  expect_sense(r, 0x5, 0x2000);
  // INQUIRY with EVPD=0 and a page code: INVALID FIELD IN CDB, SKSV pointing at byte 2.
  r = run({0x12, 0x00, 0x80, 0, 0xFF, 0});
  expect_sense(r, 0x5, 0x2400);
  EXPECT_EQ(r.sense[15], 0xC0);  // SKSV, C/D
  EXPECT_EQ(r.sense[16] << 8 | r.sense[17], 2);
  // RDPROTECT without protection information.
  expect_sense(run(cdb16(0x88, 0, 1, 0x20)), 0x5, 0x2400);
}

TEST_F(DeviceTest, WriteReadAndOutOfRange) {
  open();
  auto data = test::pattern(4 * 512, 3);
  EXPECT_EQ(run(cdb16(0x8A, 7, 4, 0x08), data).status, Status::good);
  auto r = run(cdb16(0x88, 7, 4));
  ASSERT_EQ(r.status, Status::good);
  EXPECT_EQ(r.transfer_bytes, 4u * 512);
  EXPECT_EQ(data_in, data);
  // READ(10) reaching past the last block.
  expect_sense(run({0x28, 0, 0, 0, 0x07, 0xFF, 0, 0, 2, 0}), 0x5, 0x2100);
  // A zero-length read at LBA == capacity + 1.
  expect_sense(run(cdb16(0x88, 2049, 0)), 0x5, 0x2100);
}

TEST_F(DeviceTest, ReadOnlyIsDataProtect) {
  open(512, 4096, true);
  auto data = test::pattern(512, 1);
  expect_sense(run(cdb16(0x8A, 0, 1), data), 0x7, 0x2700);
  std::vector<std::byte> block(512);
  expect_sense(run({0x41, 0x08, 0, 0, 0, 0, 0, 0, 1, 0}, block), 0x7, 0x2700);
  EXPECT_EQ(run(cdb16(0x88, 0, 1)).status, Status::good);
  // MODE SENSE(6) reports WP and DPOFUA.
  auto r = run({0x1A, 0x08, 0x3F, 0, 0xFF, 0});
  ASSERT_EQ(r.status, Status::good);
  EXPECT_EQ(static_cast<uint8_t>(data_in[2]), 0x90);
}

TEST_F(DeviceTest, CompareAndWriteMiscompareReportsOffset) {
  open();
  auto old_data = test::pattern(512, 1);
  auto new_data = test::pattern(512, 2);
  ASSERT_EQ(run(cdb16(0x8A, 3, 1), old_data).status, Status::good);
  std::vector<std::byte> both(old_data);
  both.insert(both.end(), new_data.begin(), new_data.end());
  std::vector<uint8_t> caw(16, 0);
  caw[0] = 0x89;
  caw[9] = 3;
  caw[13] = 1;
  EXPECT_EQ(run(caw, both).status, Status::good);
  auto r = run(caw, both);  // the blocks now hold new_data
  expect_sense(r, 0xE, 0x1D00);
  EXPECT_EQ(r.sense[0], 0xF0);  // VALID
  uint32_t info = r.sense[3] << 24 | r.sense[4] << 16 | r.sense[5] << 8 | r.sense[6];
  auto at = std::mismatch(old_data.begin(), old_data.end(), new_data.begin()).first;
  EXPECT_EQ(info, static_cast<uint32_t>(at - old_data.begin()));
}

TEST_F(DeviceTest, WriteSameOfOneBlockStoresOneExtent) {
  open(512, 4096, false, 4 << 20);
  auto block = test::pattern(512, 9);
  ASSERT_EQ(run(cdb16(0x93, 0, 8192), block).status, Status::good);
  EXPECT_EQ(store.stats().chunks, 1u);
  ASSERT_EQ(run(cdb16(0x88, 8000, 2)).status, Status::good);
  EXPECT_TRUE(std::equal(block.begin(), block.end(), data_in.begin() + 512));
  // WRITE SAME with UNMAP and zeroes deallocates: GET LBA STATUS says so.
  std::vector<std::byte> zero(512);
  ASSERT_EQ(run(cdb16(0x93, 0, 8192, 0x08), zero).status, Status::good);
  ASSERT_TRUE(test::run(ctx, volume->flush()));
  EXPECT_EQ(store.stats().chunks, 0u);
  auto r = run(cdb16(0x9E, 0, 64, 0x12));
  ASSERT_EQ(r.status, Status::good);
  ASSERT_GE(data_in.size(), 24u);
  EXPECT_EQ(static_cast<uint8_t>(data_in[20]), 1);  // deallocated
}

TEST_F(DeviceTest, UnmapChecksDescriptors) {
  open();
  std::vector<uint8_t> unmap = {0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0};
  std::vector<std::byte> p(24);
  p[1] = std::byte{22};
  p[3] = std::byte{16};
  p[14] = std::byte{0x08};  // LBA 0x800 = capacity: out of range with count 1
  p[19] = std::byte{1};
  expect_sense(run(unmap, p), 0x5, 0x2100);
  p[14] = std::byte{0};
  EXPECT_EQ(run(unmap, p).status, Status::good);
  unmap[1] = 0x01;  // ANCHOR
  expect_sense(run(unmap, p), 0x5, 0x2400);
}

TEST_F(DeviceTest, CapacityAndVpd) {
  open(512, 4096);
  auto r = run(cdb16(0x9E, 0, 32, 0x10));
  ASSERT_EQ(r.status, Status::good);
  ASSERT_EQ(data_in.size(), 32u);
  EXPECT_EQ(static_cast<uint8_t>(data_in[7]), 0xFF);   // last LBA 2047
  EXPECT_EQ(static_cast<uint8_t>(data_in[13]), 3);     // 8 logical blocks per chunk
  EXPECT_EQ(static_cast<uint8_t>(data_in[14]), 0xC0);  // LBPME, LBPRZ
  ASSERT_EQ(run({0x12, 0x01, 0xB2, 0, 0xFF, 0}).status, Status::good);
  EXPECT_EQ(static_cast<uint8_t>(data_in[5]), 0xE4);
  ASSERT_EQ(run({0x12, 0x01, 0x83, 0, 0xFF, 0}).status, Status::good);
  EXPECT_EQ(static_cast<uint8_t>(data_in[5]), 0x03);  // NAA designator first
  EXPECT_EQ(static_cast<uint8_t>(data_in[8]) >> 4, 6);
  // Standard INQUIRY truncated to the allocation length.
  r = run({0x12, 0, 0, 0, 5, 0});
  EXPECT_EQ(r.transfer_bytes, 5u);
  EXPECT_EQ(data_in.size(), 5u);
}

TEST_F(DeviceTest, ReportSupportedOpcodesOneCommand) {
  open();
  // READ(10), reporting option 1, RCTD: supported, usage has DPO and FUA, timeouts follow.
  auto r = run({0xA3, 0x0C, 0x81, 0x28, 0, 0, 0, 0, 1, 0, 0, 0});
  ASSERT_EQ(r.status, Status::good);
  EXPECT_EQ(static_cast<uint8_t>(data_in[1]), 0x83);
  EXPECT_EQ(static_cast<uint8_t>(data_in[5]) & 0x18, 0x18);
  EXPECT_EQ(data_in.size(), 4u + 10 + 12);
  // An opcode with service actions under option 1 is an invalid field.
  expect_sense(run({0xA3, 0x0C, 0x01, 0x9E, 0, 0, 0, 0, 1, 0, 0, 0}), 0x5, 0x2400);
}

TEST_F(DeviceTest, VerifyBytchkMiscompare) {
  open();
  auto data = test::pattern(1024, 4);
  ASSERT_EQ(run(cdb16(0x8A, 0, 2), data).status, Status::good);
  EXPECT_EQ(run(cdb16(0x8F, 0, 2, 0x02), data).status, Status::good);
  data[700] ^= std::byte{0xFF};
  auto r = run(cdb16(0x8F, 0, 2, 0x02), data);
  expect_sense(r, 0xE, 0x1D00);
  EXPECT_EQ(r.sense[6], 700 & 0xFF);
}

TEST_F(DeviceTest, LunResetPostsUnitAttentionToEveryNexus) {
  open();
  Nexus other = nexus;
  other.id = 2;
  device->attach(other);
  Nexus me = nexus;
  nexus = other;
  expect_sense(run({0x00, 0, 0, 0, 0, 0}), 0x6, 0x2900);  // its POWER ON
  device->lun_reset(me);
  expect_sense(run({0x00, 0, 0, 0, 0, 0}), 0x6, 0x2903);
  EXPECT_EQ(run({0x00, 0, 0, 0, 0, 0}).status, Status::good);
  // The nexus that sent the reset sees it too (libiscsi's MultipathIO.Reset checks this).
  nexus = me;
  expect_sense(run({0x00, 0, 0, 0, 0, 0}), 0x6, 0x2903);
  EXPECT_EQ(run({0x00, 0, 0, 0, 0, 0}).status, Status::good);
}

TEST_F(DeviceTest, TargetColdResetDropsTheOtherSessions) {
  open();
  int dropped_other = 0;
  int dropped_me = 0;
  Nexus other = nexus;
  other.id = 2;
  device->attach(other, [&] { dropped_other++; });
  Nexus me = nexus;
  me.id = 3;
  device->attach(me, [&] { dropped_me++; });
  device->target_cold_reset(me);
  EXPECT_EQ(dropped_other, 1);
  EXPECT_EQ(dropped_me, 0);  // its transport answers the TMF, then ends itself
  device->detach(other);
  device->target_cold_reset(me);
  EXPECT_EQ(dropped_other, 1);  // detached: no longer dropped
}

TEST_F(DeviceTest, SanitizeRunsInTheBackgroundAndReportsProgress) {
  open();
  auto data = test::pattern(4096, 3);
  ASSERT_EQ(run(cdb16(0x8A, 0, 8), data).status, Status::good);
  // OVERWRITE (service action 1) with IMMED: a 4-byte pattern, inverted: no.
  const std::vector<std::byte> params = {std::byte{0x01}, std::byte{0},    std::byte{0},
                                         std::byte{4},    std::byte{0xAA}, std::byte{0xBB},
                                         std::byte{0xCC}, std::byte{0xDD}};
  ASSERT_EQ(run({0x48, 0x81, 0, 0, 0, 0, 0, 0, 8, 0}, params).status, Status::good);
  ASSERT_TRUE(device->busy());
  auto tur = run({0x00, 0, 0, 0, 0, 0});
  expect_sense(tur, 0x2, 0x041B);
  EXPECT_EQ(tur.sense[15] & 0x80, 0x80);                        // SKSV: progress indication
  EXPECT_EQ(run({0x12, 0, 0, 0, 96, 0}).status, Status::good);  // INQUIRY still works
  ASSERT_EQ(run({0x03, 0, 0, 0, 18, 0}).status, Status::good);  // REQUEST SENSE
  EXPECT_EQ(static_cast<uint8_t>(data_in[2]) & 0x0F, 0x2);
  EXPECT_EQ(static_cast<uint8_t>(data_in[12]) << 8 | static_cast<uint8_t>(data_in[13]), 0x041B);
  // A second session that leaves does not stop it.
  Nexus other = nexus;
  other.id = 2;
  device->attach(other);
  device->detach(other);
  ctx.restart();
  while (device->busy() && ctx.run_one() > 0) {
  }
  ASSERT_FALSE(device->busy());
  EXPECT_EQ(run({0x00, 0, 0, 0, 0, 0}).status, Status::good);
  ASSERT_EQ(run(cdb16(0x88, 7, 1)).status, Status::good);
  ASSERT_EQ(data_in.size(), 512u);
  for (size_t i = 0; i < data_in.size(); ++i) {
    ASSERT_EQ(data_in[i], params[4 + i % 4]) << i;
  }
}

TEST_F(DeviceTest, AbandonedSanitizeCommandEndsButTheSanitizeGoesOn) {
  open();
  // BLOCK ERASE without IMMED waits; abandoning its nexus's commands ends the wait.
  cdb_ = {0x48, 0x02, 0, 0, 0, 0, 0, 0, 0, 0};
  Request req;
  req.cdb = cdb_;
  std::optional<Response> result;
  asio::co_spawn(ctx, device->execute(nexus, req, data_in),
                 [&](std::exception_ptr, Response r) { result = std::move(r); });
  ctx.restart();
  while (!device->busy() && ctx.run_one() > 0) {
  }
  ASSERT_TRUE(device->busy());
  device->abandon(nexus);
  while (!result && ctx.run_one() > 0) {
  }
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, Status::task_aborted);
  EXPECT_TRUE(device->busy());
  device->cancel_background();
  while (device->busy() && ctx.run_one() > 0) {
  }
  EXPECT_FALSE(device->busy());
}

// background_ended() wakes its waiter when the sanitize ends, whether it finishes or is
// cancelled, and returns at once when nothing runs in the background.
TEST_F(DeviceTest, BackgroundEndedWakesWhenTheSanitizeEnds) {
  open(512, 4096, false, 8 << 20);  // half a second of sanitize at the default pace
  bool ended = false;
  auto wait = [&] {
    ended = false;
    asio::co_spawn(ctx, device->background_ended(), [&](std::exception_ptr) { ended = true; });
  };
  wait();
  ctx.restart();
  ctx.poll();
  EXPECT_TRUE(ended);  // nothing ran
  const std::vector<std::byte> params = {std::byte{0x01}, std::byte{0},    std::byte{0},
                                         std::byte{4},    std::byte{0xAA}, std::byte{0xBB},
                                         std::byte{0xCC}, std::byte{0xDD}};
  for (bool cancel : {false, true}) {
    ASSERT_EQ(run({0x48, 0x81, 0, 0, 0, 0, 0, 0, 8, 0}, params).status, Status::good) << cancel;
    ASSERT_TRUE(device->busy());
    wait();
    ctx.restart();
    ctx.poll();
    EXPECT_FALSE(ended) << cancel;  // the sanitize still runs
    if (cancel) {
      device->cancel_background();
    }
    while (!ended && ctx.run_one() > 0) {
    }
    EXPECT_TRUE(ended) << cancel;
    EXPECT_FALSE(device->busy()) << cancel;
  }
}

TEST_F(DeviceTest, WriteAtomicCoversWholeChunks) {
  open();  // 512-byte blocks, 4 KiB chunks: 8 blocks per physical block
  ASSERT_EQ(run({0x12, 0x01, 0xB0, 0, 0xFF, 0}).status, Status::good);
  auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) {
      v = v << 8 | static_cast<uint8_t>(data_in[at + i]);
    }
    return v;
  };
  EXPECT_EQ(be32(48), 8u);  // ATOMIC ALIGNMENT
  EXPECT_EQ(be32(52), 8u);  // ATOMIC TRANSFER LENGTH GRANULARITY
  auto atomic = [](uint64_t lba, uint16_t count) {
    std::vector<uint8_t> c(16, 0);
    c[0] = 0x9C;
    for (int i = 0; i < 8; ++i) {
      c[2 + i] = static_cast<uint8_t>(lba >> (56 - 8 * i));
    }
    c[12] = static_cast<uint8_t>(count >> 8);
    c[13] = static_cast<uint8_t>(count);
    return c;
  };
  auto data = test::pattern(4096, 9);
  EXPECT_EQ(run(atomic(8, 8), data).status, Status::good);
  expect_sense(run(atomic(1, 8), data), 0x5, 0x2400);
  expect_sense(run(atomic(0, 1), std::span(data).first(512)), 0x5, 0x2400);
}

TEST_F(DeviceTest, SoftwareWriteProtectThroughModeSelect) {
  open();
  ASSERT_EQ(run({0x1A, 0x08, 0x0A, 0, 0xFF, 0}).status, Status::good);  // control page
  std::vector<std::byte> params(data_in);
  params[0] = std::byte{0};
  params[4 + 4] |= std::byte{0x08};  // SWP
  std::vector<uint8_t> select = {0x15, 0x10, 0, 0, static_cast<uint8_t>(params.size()), 0};
  ASSERT_EQ(run(select, params).status, Status::good);
  auto data = test::pattern(512, 1);
  expect_sense(run(cdb16(0x8A, 0, 1), data), 0x7, 0x2702);
  // A non-changeable bit (QAM) is an invalid field in the parameter list.
  params[4 + 3] = std::byte{0};
  expect_sense(run(select, params), 0x5, 0x2600);
  device->lun_reset(nexus);
  expect_sense(run(cdb16(0x8A, 0, 1), data), 0x6, 0x2903);
  EXPECT_EQ(run(cdb16(0x8A, 0, 1), data).status, Status::good);
}

}  // namespace
}  // namespace cairn::target::scsi
