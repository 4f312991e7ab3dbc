#include "io/disk_ring.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "tests/test_util.h"

namespace cairn::io {
namespace {

class TempFile {
 public:
  TempFile() {
    std::string tmpl = "/tmp/cairn-ring-XXXXXX";
    fd_ = ::mkstemp(tmpl.data());
    path_ = tmpl;
  }
  ~TempFile() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  [[nodiscard]] int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string path_;
};

Task<std::error_code> write_read_fsync(DiskRing& ring, int fd, std::vector<std::byte>& in,
                                       std::vector<std::byte>& out) {
  auto [ec1, n1] = co_await ring.async_write(fd, in, 8192, use_tuple);
  if (ec1 || n1 != in.size()) {
    co_return ec1 ? ec1 : std::make_error_code(std::errc::io_error);
  }
  auto [ec2, n2] = co_await ring.async_fsync(fd, true, use_tuple);
  if (ec2) {
    co_return ec2;
  }
  auto [ec3, n3] = co_await ring.async_read(fd, out, 8192, use_tuple);
  if (ec3 || n3 != out.size()) {
    co_return ec3 ? ec3 : std::make_error_code(std::errc::io_error);
  }
  co_return std::error_code{};
}

TEST(DiskRing, WritesReadsAndFsyncs) {
  asio::io_context ctx;
  DiskRing ring(ctx, 8);
  TempFile f;
  auto in = test::pattern(4096, 3);
  std::vector<std::byte> out(4096);
  EXPECT_FALSE(test::run(ctx, write_read_fsync(ring, f.fd(), in, out)));
  EXPECT_EQ(in, out);
  EXPECT_EQ(ring.in_flight(), 0u);
}

TEST(DiskRing, ReportsErrorsAsValues) {
  asio::io_context ctx;
  DiskRing ring(ctx, 4);
  std::vector<std::byte> buf(512);
  auto task = [&]() -> Task<std::error_code> {
    auto [ec, n] = co_await ring.async_read(-1, buf, 0, use_tuple);
    co_return ec;
  };
  EXPECT_EQ(test::run(ctx, task()), std::error_code(EBADF, std::system_category()));
}

TEST(DiskRing, QueuesBeyondDepth) {
  asio::io_context ctx;
  DiskRing ring(ctx, 2);
  TempFile f;
  std::vector<std::byte> block = test::pattern(512, 1);
  int done = 0;
  for (int i = 0; i < 32; ++i) {
    ring.async_write(f.fd(), block, static_cast<uint64_t>(i) * 512,
                     [&](std::error_code ec, std::size_t n) { done += (!ec && n == 512); });
  }
  EXPECT_LE(ring.in_flight(), 2u);
  while (done < 32 && ctx.run_one() > 0) {
  }
  EXPECT_EQ(done, 32);
}

}  // namespace
}  // namespace cairn::io
