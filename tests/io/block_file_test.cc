// Tests of the BlockFile implementations: the simulated disk's crash model and the io_uring
// file (O_DIRECT) on a temporary file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "io/aligned_buffer.h"
#include "io/disk_ring.h"
#include "io/errors.h"
#include "io/sim_block_file.h"
#include "io/uring_block_file.h"
#include "tests/test_util.h"

namespace cairn::io {
namespace {

AlignedBuffer filled(std::size_t n, uint64_t seed) {
  AlignedBuffer b(n);
  auto p = test::pattern(n, seed);
  std::memcpy(b.data(), p.data(), n);
  return b;
}

bool same(const AlignedBuffer& a, const AlignedBuffer& b, std::size_t off, std::size_t n) {
  return std::memcmp(a.data() + off, b.data() + off, n) == 0;
}

TEST(SimBlockFile, ReadsBackWritesAndLosesUnsyncedOnes) {
  asio::io_context ctx;
  SimBlockFile disk(64 * 1024);
  auto a = filled(8192, 1);
  auto b = filled(8192, 2);
  AlignedBuffer out(8192);
  ASSERT_TRUE(test::run(ctx, disk.write(0, a.span())));
  ASSERT_TRUE(test::run(ctx, disk.sync()));
  ASSERT_TRUE(test::run(ctx, disk.write(0, b.span())));
  ASSERT_TRUE(test::run(ctx, disk.read(0, out.span())));
  EXPECT_TRUE(same(out, b, 0, 8192));
  EXPECT_EQ(disk.unsynced_writes(), 1u);
  EXPECT_EQ(disk.power_cut(7, SimBlockFile::CutMode::drop_all), 1u);
  ASSERT_TRUE(test::run(ctx, disk.read(0, out.span())));
  EXPECT_TRUE(same(out, a, 0, 8192));
}

TEST(SimBlockFile, RandomCutsDropKeepAndTearAtSectorGranularity) {
  asio::io_context ctx;
  auto a = filled(4096, 1);
  auto b = filled(4096, 2);
  int dropped = 0, kept = 0, torn = 0;
  for (uint64_t seed = 0; seed < 64; ++seed) {
    SimBlockFile disk(4096);
    ASSERT_TRUE(test::run(ctx, disk.write(0, a.span())));
    ASSERT_TRUE(test::run(ctx, disk.sync()));
    ASSERT_TRUE(test::run(ctx, disk.write(0, b.span())));
    disk.power_cut(seed);
    AlignedBuffer out(4096);
    ASSERT_TRUE(test::run(ctx, disk.read(0, out.span())));
    int new_sectors = 0;
    for (std::size_t s = 0; s < 4096; s += 512) {
      bool is_new = same(out, b, s, 512);
      ASSERT_TRUE(is_new || same(out, a, s, 512)) << "sector holds neither old nor new bytes";
      new_sectors += is_new;
    }
    dropped += new_sectors == 0;
    kept += new_sectors == 8;
    torn += new_sectors > 0 && new_sectors < 8;
  }
  EXPECT_GT(dropped, 0);
  EXPECT_GT(kept, 0);
  EXPECT_GT(torn, 0);
}

TEST(SimBlockFile, RejectsMisalignedAndOutOfRangeIo) {
  asio::io_context ctx;
  SimBlockFile disk(8192);
  AlignedBuffer buf(8192);
  EXPECT_EQ(test::run(ctx, disk.write(512, buf.span().first(4096))).error(),
            errc::invalid_argument);
  EXPECT_EQ(test::run(ctx, disk.write(0, buf.span().first(1000))).error(), errc::invalid_argument);
  EXPECT_EQ(test::run(ctx, disk.read(4096, buf.span())).error(), errc::invalid_argument);
  EXPECT_EQ(test::run(ctx, disk.read(0, buf.span().subspan(8, 4096))).error(),
            errc::invalid_argument);
}

TEST(SimBlockFile, CorruptsSectorsAndInjectsErrors) {
  asio::io_context ctx;
  SimBlockFile disk(8192, 16384);
  auto a = filled(8192, 3);
  ASSERT_TRUE(test::run(ctx, disk.write(0, a.span())));
  ASSERT_TRUE(test::run(ctx, disk.sync()));
  disk.corrupt_sector(4096 + 700);
  AlignedBuffer out(8192);
  ASSERT_TRUE(test::run(ctx, disk.read(0, out.span())));
  EXPECT_TRUE(same(out, a, 0, 4096 + 512));
  EXPECT_FALSE(same(out, a, 4096 + 512, 512));
  EXPECT_TRUE(same(out, a, 4096 + 1024, 4096 - 1024));
  disk.fail_writes_after(1);
  EXPECT_TRUE(test::run(ctx, disk.write(0, a.span())));
  EXPECT_EQ(test::run(ctx, disk.write(0, a.span())).error(), errc::io_error);
  EXPECT_EQ(test::run(ctx, disk.sync()).error(), errc::io_error);
  EXPECT_EQ(test::run(ctx, disk.grow(32768)).error(), errc::no_space);
  EXPECT_TRUE(test::run(ctx, disk.grow(16384)));
  EXPECT_EQ(disk.size_bytes(), 16384u);
}

// write_all() issues its writes together (the simulated disk suspends each one, so they
// overlap): each lands where it was aimed, and when one fails the call returns that error
// after every write has finished.
TEST(WriteAll, LandsEveryWriteAndReportsAFailure) {
  asio::io_context ctx;
  constexpr std::size_t kWrites = 5;
  SimBlockFile disk(2 * kWrites * 4096, 2 * kWrites * 4096);
  disk.set_yield(true);
  std::vector<AlignedBuffer> data;
  std::vector<BlockWrite> writes;
  for (std::size_t i = 0; i < kWrites; ++i) {
    data.push_back(filled(4096, i + 1));
  }
  for (std::size_t i = 0; i < kWrites; ++i) {
    writes.push_back(BlockWrite{2 * i * 4096, data[i].span()});  // every other block
  }
  ASSERT_TRUE(test::run(ctx, write_all(disk, writes)));
  EXPECT_EQ(disk.writes(), kWrites);
  AlignedBuffer out(4096);
  for (std::size_t i = 0; i < kWrites; ++i) {
    ASSERT_TRUE(test::run(ctx, disk.read(2 * i * 4096, out.span())));
    EXPECT_TRUE(same(out, data[i], 0, 4096)) << "write " << i;
  }
  disk.fail_writes_after(2);
  EXPECT_EQ(test::run(ctx, write_all(disk, writes)).error(), errc::io_error);
  EXPECT_EQ(disk.writes(), kWrites + 2);  // the other three failed
}

class TempPath {
 public:
  TempPath() {
    std::string tmpl = "/tmp/cairn-blockfile-XXXXXX";
    int fd = ::mkstemp(tmpl.data());
    ::close(fd);
    ::unlink(tmpl.c_str());
    path_ = tmpl;
  }
  ~TempPath() { ::unlink(path_.c_str()); }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A file of `initial_bytes` (created, O_DIRECT) on a temporary path, on a ring of its own.
struct RingFile {
  explicit RingFile(uint64_t initial_bytes) : ring(ctx, 8) {
    UringBlockFile::Options options;
    options.initial_size_bytes = initial_bytes;
    auto opened = UringBlockFile::open(tmp.path(), options, &ring);
    if (opened) {
      file = std::move(*opened);
    } else {
      error = opened.error();
    }
  }
  asio::io_context ctx;
  DiskRing ring;
  TempPath tmp;
  std::unique_ptr<UringBlockFile> file;  // null if the open failed (error says why)
  std::error_code error;
};

TEST(UringBlockFile, CreatesGrowsWritesReadsAndSyncs) {
  RingFile f(64 * 1024);
  ASSERT_TRUE(f.file) << f.error.message();
  EXPECT_EQ(f.file->size_bytes(), 64u * 1024);
  EXPECT_TRUE(f.file->direct_io());
  EXPECT_FALSE(f.file->is_block_device());
  auto a = filled(3u << 20, 9);  // larger than one submission
  EXPECT_EQ(test::run(f.ctx, f.file->write(0, a.span())).error(), errc::invalid_argument);
  ASSERT_TRUE(test::run(f.ctx, f.file->grow(4u << 20)));  // IORING_OP_FALLOCATE
  ASSERT_TRUE(test::run(f.ctx, f.file->write(4096, a.span())));
  ASSERT_TRUE(test::run(f.ctx, f.file->sync()));
  f.file.reset();

  auto again = UringBlockFile::open(f.tmp.path(), UringBlockFile::Options{}, &f.ring);
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->size_bytes(), 4u << 20);
  AlignedBuffer out(3u << 20);
  ASSERT_TRUE(test::run(f.ctx, (*again)->read(4096, out.span())));
  EXPECT_TRUE(same(out, a, 0, out.size()));
}

TEST(UringBlockFile, WritesAndReadsThroughRegisteredBuffers) {
  RingFile f(1 << 20);
  ASSERT_TRUE(f.file) << f.error.message();
  auto& ctx = f.ctx;
  auto& ring = f.ring;
  auto& file = f.file;
  AlignedBuffer staging(256 * 1024);
  file->register_buffer(std::span<const std::byte>(staging.data(), staging.size()));
  ASSERT_GE(ring.fixed_slot(staging.data() + 8192, 4096), 0);
  EXPECT_EQ(ring.fixed_slot(staging.data() + 8192, staging.size()), -1);  // runs past it
  // Bytes put in the buffer after it was registered are the ones written: the kernel
  // pinned the buffer's pages, not a copy of them.
  auto a = filled(staging.size(), 21);
  std::memcpy(staging.data(), a.data(), staging.size());
  ASSERT_TRUE(test::run(ctx, file->write(0, staging.span().subspan(4096, 65536))));
  AlignedBuffer out(65536);
  ASSERT_TRUE(test::run(ctx, file->read(0, out.span())));
  EXPECT_TRUE(std::memcmp(out.data(), a.data() + 4096, 65536) == 0);
  // READ_FIXED into the registered buffer.
  std::memset(staging.data(), 0, staging.size());
  ASSERT_TRUE(test::run(ctx, file->read(0, staging.span().first(65536))));
  EXPECT_TRUE(std::memcmp(staging.data(), a.data() + 4096, 65536) == 0);

  file->unregister_buffer(staging.data());
  EXPECT_EQ(ring.fixed_slot(staging.data(), 4096), -1);
  file->register_buffer(std::span<const std::byte>(staging.data(), staging.size()));
  EXPECT_GE(ring.fixed_slot(staging.data(), 4096), 0);
  file.reset();  // a file releases what it registered
  EXPECT_EQ(ring.fixed_slot(staging.data(), 4096), -1);
}

// Disk completions are announced through an eventfd that Asio reads. Two ways that wake-up
// has gone missing (DiskRing::kWatchdogPeriod); in both the I/O must still complete. Without
// the watchdog and the re-armed read, test::run() would wait here forever.
// `lose_wake_ups` runs after the file is opened; then a write, a sync and a read (3
// completions) must complete and read back what was written.
template <class LoseWakeUps>
void round_trip_despite(LoseWakeUps lose_wake_ups, uint64_t unannounced) {
  RingFile f(64 * 1024);
  ASSERT_TRUE(f.file) << f.error.message();
  auto& ctx = f.ctx;
  auto& ring = f.ring;
  auto& file = f.file;
  lose_wake_ups(ring);
  auto a = filled(8192, 31);
  ASSERT_TRUE(test::run(ctx, file->write(0, a.span())));
  ASSERT_TRUE(test::run(ctx, file->sync()));
  AlignedBuffer out(8192);
  ASSERT_TRUE(test::run(ctx, file->read(0, out.span())));
  EXPECT_TRUE(same(out, a, 0, out.size()));
  EXPECT_EQ(ring.unannounced_completions(), unannounced);
  EXPECT_EQ(ring.in_flight(), 0u);
}

TEST(DiskRing, SurvivesACancelledEventfdRead) {
  // As Asio's stray ASYNC_CANCEL does; the re-armed read announces every completion.
  round_trip_despite([](DiskRing& ring) { ring.cancel_eventfd_read_for_test(); }, 0);
}

TEST(DiskRing, ReapsCompletionsThatNoWakeUpAnnounced) {
  // Completions now arrive silently; the watchdog finds all three.
  round_trip_despite([](DiskRing& ring) { ring.unregister_eventfd_for_test(); }, 3);
}

TEST(UringBlockFile, RejectsBadRequests) {
  RingFile f(8192);
  ASSERT_TRUE(f.file) << f.error.message();
  auto& ctx = f.ctx;
  auto& ring = f.ring;
  auto& file = f.file;
  AlignedBuffer buf(8192);
  EXPECT_EQ(test::run(ctx, file->read(100, buf.span().first(4096))).error(),
            errc::invalid_argument);
  EXPECT_EQ(test::run(ctx, file->read(0, buf.span().subspan(512, 4096))).error(),
            errc::invalid_argument);
  EXPECT_EQ(test::run(ctx, file->write(8192, buf.span())).error(), errc::invalid_argument);
  EXPECT_EQ(test::run(ctx, file->grow(5000)).error(), errc::invalid_argument);

  UringBlockFile::Options options;
  options.create = false;
  auto missing = UringBlockFile::open(f.tmp.path() + ".missing", options, &ring);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), std::errc::no_such_file_or_directory);
  auto dir = UringBlockFile::open("/tmp", options, &ring);
  EXPECT_FALSE(dir);
}

}  // namespace
}  // namespace cairn::io
