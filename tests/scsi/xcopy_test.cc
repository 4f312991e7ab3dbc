// CopyManager: EXTENDED COPY (LID1) parameter list parsing, its errors, RECEIVE COPY RESULTS,
// and real copies over a Volume on the in-memory stores (whole chunks copied by reference).
#include "target/scsi/xcopy.h"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstring>
#include <vector>

#include "io/chunk_hash.h"
#include "io/mem_chunk_store.h"
#include "io/mem_meta_store.h"
#include "target/scsi/identity.h"
#include "tests/test_util.h"

namespace cairn::target::scsi {
namespace {

const std::byte kHashKey[1] = {std::byte{7}};

void put_be(std::vector<std::byte>& v, size_t at, uint64_t x, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    v[at + i] = std::byte(x >> (8 * (bytes - 1 - i)));
  }
}

uint64_t be(const std::vector<std::byte>& v, size_t at, int bytes) {
  uint64_t x = 0;
  for (int i = 0; i < bytes; ++i) {
    x = x << 8 | static_cast<uint8_t>(v[at + i]);
  }
  return x;
}

// Builds a LID1 parameter list the way an initiator does (SPC-4 6.4.3).
class ParamList {
 public:
  ParamList(uint8_t list_id, uint8_t list_id_usage) : header_(16, std::byte{0}) {
    header_[0] = std::byte(list_id);
    header_[1] = std::byte(list_id_usage << 3);
  }
  // An identification CSCD descriptor (0xE4) with an NAA designator.
  ParamList& cscd(const std::array<uint8_t, 16>& naa, uint32_t block_size, uint8_t type = 0xE4) {
    std::vector<std::byte> d(32, std::byte{0});
    d[0] = std::byte(type);
    d[4] = std::byte{0x01};  // binary
    d[5] = std::byte{0x03};  // LU association, NAA
    d[7] = std::byte{16};
    std::memcpy(d.data() + 8, naa.data(), 16);
    put_be(d, 29, block_size, 3);
    cscds_.insert(cscds_.end(), d.begin(), d.end());
    return *this;
  }
  ParamList& block_to_block(uint16_t src, uint16_t dst, uint16_t blocks, uint64_t src_lba,
                            uint64_t dst_lba, uint8_t type = 0x02) {
    std::vector<std::byte> d(28, std::byte{0});
    d[0] = std::byte(type);
    put_be(d, 2, 0x18, 2);
    put_be(d, 4, src, 2);
    put_be(d, 6, dst, 2);
    put_be(d, 10, blocks, 2);
    put_be(d, 12, src_lba, 8);
    put_be(d, 20, dst_lba, 8);
    segments_.insert(segments_.end(), d.begin(), d.end());
    return *this;
  }
  ParamList& block_to_block_bytes(uint32_t bytes, uint64_t src_lba, uint64_t dst_lba,
                                  uint16_t src_offset = 0, uint16_t dst_offset = 0) {
    std::vector<std::byte> d(32, std::byte{0});
    d[0] = std::byte{0x0A};
    put_be(d, 2, 0x1C, 2);
    put_be(d, 8, bytes, 4);
    put_be(d, 12, src_lba, 8);
    put_be(d, 20, dst_lba, 8);
    put_be(d, 28, src_offset, 2);
    put_be(d, 30, dst_offset, 2);
    segments_.insert(segments_.end(), d.begin(), d.end());
    return *this;
  }
  [[nodiscard]] std::vector<std::byte> bytes() const {
    std::vector<std::byte> out = header_;
    put_be(out, 2, cscds_.size(), 2);
    put_be(out, 8, segments_.size(), 4);
    out.insert(out.end(), cscds_.begin(), cscds_.end());
    out.insert(out.end(), segments_.begin(), segments_.end());
    return out;
  }

 private:
  std::vector<std::byte> header_, cscds_, segments_;
};

std::array<uint8_t, 16> xcopy_cdb(size_t length, uint8_t action = 0) {
  std::array<uint8_t, 16> cdb{};
  cdb[0] = 0x83;
  cdb[1] = action;
  for (int i = 0; i < 4; ++i) {
    cdb[10 + i] = static_cast<uint8_t>(length >> (24 - 8 * i));
  }
  return cdb;
}

std::array<uint8_t, 16> results_cdb(uint8_t action, uint8_t list_id, uint32_t allocation) {
  std::array<uint8_t, 16> cdb{};
  cdb[0] = 0x84;
  cdb[1] = action;
  cdb[2] = list_id;
  for (int i = 0; i < 4; ++i) {
    cdb[10 + i] = static_cast<uint8_t>(allocation >> (24 - 8 * i));
  }
  return cdb;
}

uint8_t key_of(const Response& r) {
  return r.sense.size() > 2 ? r.sense[2] & 0x0F : 0xFF;
}
uint16_t asc_of(const Response& r) {
  return r.sense.size() < 14 ? 0 : static_cast<uint16_t>(r.sense[12] << 8 | r.sense[13]);
}

class XcopyTest : public ::testing::Test {
 protected:
  void open(uint64_t size, uint32_t block, uint32_t chunk, bool read_only = false) {
    blockmap::VolumeConfig c;
    c.name = "vol";
    c.size_bytes = size;
    c.block_size_bytes = block;
    c.chunk_size_bytes = chunk;
    c.read_only = read_only;
    auto v = test::run(ctx, blockmap::Volume::open(c, store, meta, ctx.get_executor()));
    ASSERT_TRUE(v);
    volume = std::move(*v);
    copies = std::make_unique<CopyManager>(*volume, identity);
  }

  Response xcopy(const std::vector<std::byte>& list, const Nexus& n) {
    auto cdb = xcopy_cdb(list.size());
    return test::run(ctx, copies->extended_copy(n, cdb, list));
  }
  Response xcopy(const std::vector<std::byte>& list) { return xcopy(list, a); }

  Response results(uint8_t action, uint8_t list_id, std::vector<std::byte>& data, const Nexus& n) {
    auto cdb = results_cdb(action, list_id, 1024);
    return test::run(ctx, copies->receive_copy_results(n, cdb, data));
  }

  asio::io_context ctx;
  io::ChunkHasher hasher{io::ChunkHasher::Kind::xxh3, kHashKey};
  io::MemChunkStore store{hasher};
  io::MemMetaStore meta;
  Identity identity = identity_for("vol");
  std::unique_ptr<blockmap::Volume> volume;
  std::unique_ptr<CopyManager> copies;
  Nexus a{1, "iqn.2026-11.test:a", "iqn.2026-11.test:a,i,0x000000000001", "t,t,0x0001", 1};
  Nexus b{2, "iqn.2026-11.test:b", "iqn.2026-11.test:b,i,0x000000000001", "t,t,0x0001", 1};
};

TEST_F(XcopyTest, OperatingParameters) {
  open(1 << 20, 512, 4096);
  std::vector<std::byte> d;
  Response r = results(0x03, 0, d, a);
  ASSERT_EQ(r.status, Status::good);
  ASSERT_GE(d.size(), 44u);
  EXPECT_EQ(be(d, 0, 4), d.size() - 4);
  EXPECT_EQ(be(d, 8, 2), CopyManager::kMaxCscdDescriptors);
  EXPECT_EQ(be(d, 10, 2), CopyManager::kMaxSegmentDescriptors);
  EXPECT_EQ(be(d, 12, 4), CopyManager::kMaxDescriptorListBytes);
  EXPECT_EQ(be(d, 16, 4), CopyManager::kMaxSegmentBytes);
  EXPECT_EQ(static_cast<uint8_t>(d[37]), 9);  // 512-byte granularity
  ASSERT_EQ(static_cast<uint8_t>(d[43]), 3);
  EXPECT_EQ(static_cast<uint8_t>(d[44]), 0x02);
  EXPECT_EQ(static_cast<uint8_t>(d[45]), 0x0A);
  EXPECT_EQ(static_cast<uint8_t>(d[46]), 0xE4);
  // Unknown service actions are an invalid field at byte 1.
  r = results(0x01, 0, d, a);
  EXPECT_EQ(asc_of(r), 0x2400);
  EXPECT_EQ(r.sense[17], 1);
}

TEST_F(XcopyTest, WholeChunksAreCopiedByReference) {
  // 32 MiB written, then copied by one EXTENDED COPY: no new physical bytes.
  const uint64_t size = 128ull << 20, length = 32ull << 20;
  open(size, 4096, 4096);
  for (uint64_t off = 0; off < length; off += 8 << 20) {
    auto data = test::pattern(8 << 20, off + 1);
    ASSERT_TRUE(test::run(ctx, volume->write(off, data)));
  }
  ASSERT_TRUE(test::run(ctx, volume->flush()));
  const auto before = store.stats();
  const uint64_t dst_lba = (size - length) / 4096;
  ParamList list(1, 0);
  list.cscd(identity.naa, 4096);
  for (uint64_t done = 0; done < length; done += 1700ull * 4096) {  // several segments
    const uint64_t blocks = std::min<uint64_t>(1700, (length - done) / 4096);
    list.block_to_block(0, 0, static_cast<uint16_t>(blocks), done / 4096, dst_lba + done / 4096);
  }
  const auto start = std::chrono::steady_clock::now();
  Response r = xcopy(list.bytes());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.status, Status::good) << asc_of(r);
  ASSERT_TRUE(test::run(ctx, volume->flush()));
  const auto after = store.stats();
  // Only map pages may be new; the data chunks are referenced twice instead.
  EXPECT_LE(after.physical_bytes - before.physical_bytes, length / 256);
  EXPECT_GE(after.referenced_bytes - before.referenced_bytes, length);
  std::printf("EXTENDED COPY of %llu MiB: %lld ms, physical bytes %llu -> %llu\n",
              static_cast<unsigned long long>(length >> 20),
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()),
              static_cast<unsigned long long>(before.physical_bytes),
              static_cast<unsigned long long>(after.physical_bytes));
  for (uint64_t off : {uint64_t{0}, length / 2, length - (8 << 20)}) {
    std::vector<std::byte> got(8 << 20);
    ASSERT_TRUE(test::run(ctx, volume->read(size - length + off, got)));
    EXPECT_EQ(got, test::pattern(8 << 20, off + 1)) << off;
  }
  // COPY STATUS reports it once: completed, all segments, the bytes.
  std::vector<std::byte> d;
  ASSERT_EQ(results(0x00, 1, d, a).status, Status::good);
  ASSERT_EQ(d.size(), 12u);
  EXPECT_EQ(static_cast<uint8_t>(d[4]) & 0x7F, 0x01);
  EXPECT_EQ(be(d, 5, 2), 5u);  // ceil(8192 / 1700) segments
  EXPECT_EQ(static_cast<uint8_t>(d[7]), 0x00);
  EXPECT_EQ(be(d, 8, 4), length);
  EXPECT_EQ(asc_of(results(0x00, 1, d, a)), 0x2400);
}

TEST_F(XcopyTest, PartialChunksAndByteSegments) {
  // 512-byte blocks in 4 KiB chunks: a copy that starts and ends mid-chunk.
  open(4 << 20, 512, 4096);
  auto data = test::pattern(64 << 10, 3);
  ASSERT_TRUE(test::run(ctx, volume->write(0, data)));
  ParamList list(0, 3);  // no list identifier
  list.cscd(identity.naa, 512).block_to_block(0, 0, 100, 1, 2049);
  list.block_to_block_bytes(512 * 10, 0, 4000, 100, 0);
  Response r = xcopy(list.bytes());
  ASSERT_EQ(r.status, Status::good) << asc_of(r);
  std::vector<std::byte> got(512 * 100);
  ASSERT_TRUE(test::run(ctx, volume->read(2049 * 512, got)));
  EXPECT_TRUE(std::equal(got.begin(), got.end(), data.begin() + 512));
  std::vector<std::byte> got2(512 * 10);
  ASSERT_TRUE(test::run(ctx, volume->read(4000 * 512, got2)));
  EXPECT_TRUE(std::equal(got2.begin(), got2.end(), data.begin() + 100));
  // LIST ID USAGE 11b and 10b (libiscsi's "discard") hold nothing.
  std::vector<std::byte> d;
  EXPECT_EQ(asc_of(results(0x00, 0, d, a)), 0x2400);
  auto discard = ParamList(9, 2).cscd(identity.naa, 512).block_to_block(0, 0, 1, 0, 9).bytes();
  EXPECT_EQ(xcopy(discard).status, Status::good);
  EXPECT_EQ(asc_of(results(0x00, 9, d, a)), 0x2400);
  // With LIST ID USAGE 11b the list identifier must be zero.
  EXPECT_EQ(asc_of(xcopy(ParamList(7, 3).cscd(identity.naa, 512).bytes())), 0x2600);
  // A destination that is not whole blocks is an inexact segment.
  ParamList inexact(8, 0);
  inexact.cscd(identity.naa, 512).block_to_block_bytes(100, 0, 10, 0, 0);
  r = xcopy(inexact.bytes());
  EXPECT_EQ(key_of(r), 0x5);
  EXPECT_EQ(asc_of(r), 0x260A);
}

TEST_F(XcopyTest, ParameterListErrors) {
  open(16 << 20, 512, 4096);
  const auto naa = identity.naa;
  // No parameter list: nothing to do.
  EXPECT_EQ(xcopy({}).status, Status::good);
  // Truncated inside the CSCD descriptor and inside the segment descriptor.
  auto full = ParamList(1, 0).cscd(naa, 512).block_to_block(0, 0, 8, 0, 100).bytes();
  for (size_t cut : {size_t{16 + 32 - 1}, full.size() - 1, size_t{10}}) {
    std::vector<std::byte> part(full.begin(), full.begin() + static_cast<ptrdiff_t>(cut));
    Response r = xcopy(part);
    EXPECT_EQ(key_of(r), 0x5) << cut;
    EXPECT_EQ(asc_of(r), 0x1A00) << cut;
  }
  // One CSCD descriptor too many, one segment descriptor too many.
  ParamList cscds(2, 0);
  for (int i = 0; i <= CopyManager::kMaxCscdDescriptors; ++i) {
    cscds.cscd(naa, 512);
  }
  EXPECT_EQ(asc_of(xcopy(cscds.block_to_block(0, 0, 1, 0, 100).bytes())), 0x2606);
  ParamList segs(3, 0);
  segs.cscd(naa, 512);
  for (int i = 0; i <= CopyManager::kMaxSegmentDescriptors; ++i) {
    segs.block_to_block(0, 0, 1, 0, 100);
  }
  EXPECT_EQ(asc_of(xcopy(segs.bytes())), 0x2608);
  // More descriptor bytes than MAXIMUM DESCRIPTOR LIST LENGTH.
  ParamList big(4, 0);
  big.cscd(naa, 512);
  for (int i = 0; i < 150; ++i) {
    big.block_to_block(0, 0, 1, 0, 100);
  }
  EXPECT_EQ(asc_of(xcopy(big.bytes())), 0x1A00);
  // Unsupported CSCD type (Fibre Channel N_Port_Name) and segment type (stream to stream).
  Response r = xcopy(ParamList(5, 0).cscd(naa, 512, 0xE0).block_to_block(0, 0, 1, 0, 9).bytes());
  EXPECT_EQ(asc_of(r), 0x2607);
  EXPECT_EQ(r.sense[17], 16);  // the descriptor's offset in the parameter list
  r = xcopy(ParamList(5, 0).cscd(naa, 512).block_to_block(0, 0, 1, 0, 9, 0x03).bytes());
  EXPECT_EQ(asc_of(r), 0x2609);
  // LIST ID USAGE 01b is reserved; LID4 is not supported.
  auto reserved = ParamList(6, 1).cscd(naa, 512).block_to_block(0, 0, 1, 0, 9).bytes();
  EXPECT_EQ(asc_of(xcopy(reserved)), 0x2600);
  auto cdb = xcopy_cdb(full.size(), 0x01);
  r = test::run(ctx, copies->extended_copy(a, cdb, full));
  EXPECT_EQ(asc_of(r), 0x2400);
  EXPECT_EQ(r.transfer_bytes, full.size());
}

TEST_F(XcopyTest, UnreachableTargetsAndOutOfRangeAbortTheCopy) {
  open(16 << 20, 512, 4096);
  const uint64_t blocks = (16 << 20) / 512;
  // A destination CSCD index with no descriptor.
  Response r = xcopy(ParamList(1, 0).cscd(identity.naa, 512).block_to_block(0, 1, 8, 0, 9).bytes());
  EXPECT_EQ(key_of(r), 0xA);
  EXPECT_EQ(asc_of(r), 0x0D02);
  EXPECT_EQ(r.sense[15] & 0xA0, 0xA0);  // SKSV, SD: the pointer is in the segment descriptor
  EXPECT_EQ(r.sense[17], 6);
  // Another logical unit's designator, or another block size.
  r = xcopy(
      ParamList(1, 0).cscd(identity_for("other").naa, 512).block_to_block(0, 0, 8, 0, 9).bytes());
  EXPECT_EQ(asc_of(r), 0x0D02);
  r = xcopy(ParamList(1, 0).cscd(identity.naa, 4096).block_to_block(0, 0, 8, 0, 9).bytes());
  EXPECT_EQ(asc_of(r), 0x0D02);
  // Past the end of the volume: COPY ABORTED naming segment 1 and its destination LBA.
  auto list = ParamList(1, 0)
                  .cscd(identity.naa, 512)
                  .block_to_block(0, 0, 8, 0, 100)
                  .block_to_block(0, 0, 2048, 0, blocks - 1)
                  .bytes();
  r = xcopy(list);
  EXPECT_EQ(key_of(r), 0xA);
  EXPECT_EQ(asc_of(r), 0x0000);
  EXPECT_EQ(r.sense[11], 1);
  EXPECT_EQ(r.sense[17], 20);
  // The status says one segment was done, with errors.
  std::vector<std::byte> d;
  ASSERT_EQ(results(0x00, 1, d, a).status, Status::good);
  EXPECT_EQ(static_cast<uint8_t>(d[4]) & 0x7F, 0x02);
  EXPECT_EQ(be(d, 5, 2), 1u);
  r = xcopy(ParamList(1, 0).cscd(identity.naa, 512).block_to_block(0, 0, 1, ~0ull, 0).bytes());
  EXPECT_EQ(asc_of(r), 0x0000);
  EXPECT_EQ(r.sense[17], 12);
}

TEST_F(XcopyTest, CopyStatusBelongsToTheNexus) {
  open(4 << 20, 512, 4096);
  std::vector<std::byte> d;
  Response r = results(0x00, 1, d, a);
  EXPECT_EQ(asc_of(r), 0x2400);
  EXPECT_EQ(r.sense[17], 2);
  ASSERT_EQ(
      xcopy(ParamList(1, 0).cscd(identity.naa, 512).block_to_block(0, 0, 8, 0, 9).bytes()).status,
      Status::good);
  EXPECT_EQ(asc_of(results(0x00, 1, d, b)), 0x2400);
  EXPECT_EQ(results(0x00, 1, d, a).status, Status::good);
}

TEST_F(XcopyTest, ReadOnlyVolume) {
  open(4 << 20, 512, 4096, true);
  Response r = xcopy(ParamList(1, 0).cscd(identity.naa, 512).block_to_block(0, 0, 8, 0, 9).bytes());
  EXPECT_EQ(key_of(r), 0x7);
  EXPECT_EQ(asc_of(r), 0x2700);
}

TEST(XcopyVpd, ThirdPartyCopyPage) {
  auto page = CopyManager::third_party_copy_vpd(512);
  ASSERT_GE(page.size(), 4u);
  EXPECT_EQ(page[1], 0x8F);
  EXPECT_EQ(static_cast<size_t>(page[2] << 8 | page[3]), page.size() - 4);
  // Walk the descriptors as libiscsi does; find RECEIVE COPY RESULTS with COPY STATUS.
  bool copy_status = false;
  size_t at = 4;
  while (at + 4 <= page.size()) {
    const int type = page[at] << 8 | page[at + 1];
    const size_t length = static_cast<size_t>(page[at + 2] << 8 | page[at + 3]);
    EXPECT_EQ(length % 4, 0u);
    if (type == 0x0001) {
      size_t c = at + 5;
      const size_t end = c + page[at + 4];
      while (c < end) {
        for (int i = 0; i < page[c + 1]; ++i) {
          copy_status |= page[c] == 0x84 && page[c + 2 + i] == 0x00;
        }
        c += 2 + page[c + 1];
      }
    }
    at += 4 + length;
  }
  EXPECT_EQ(at, page.size());
  EXPECT_TRUE(copy_status);
}

}  // namespace
}  // namespace cairn::target::scsi
