// The file side of import and export: pread/pwrite on a file or block device, holes found
// with lseek(SEEK_DATA), zeroes left as holes in a freshly truncated regular file.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "tools/cli/cli_error.h"
#include "tools/cli/endpoint.h"

namespace cairn::cli {
namespace {

constexpr uint32_t kMaxRequestBytes = 4u << 20;

std::string errno_text() {
  return std::strerror(errno);
}

class FileEndpoint final : public Endpoint {
 public:
  FileEndpoint(std::string path, int fd, uint64_t size_bytes, bool fresh)
      : path_(std::move(path)), fd_(fd), size_bytes_(size_bytes), fresh_(fresh) {}
  ~FileEndpoint() override { ::close(fd_); }
  FileEndpoint(const FileEndpoint&) = delete;
  FileEndpoint& operator=(const FileEndpoint&) = delete;

  uint64_t size_bytes() const override { return size_bytes_; }
  uint32_t block_size_bytes() const override { return 1; }
  uint32_t max_request_bytes() const override { return kMaxRequestBytes; }
  std::string name() const override { return path_; }

  bool reads_as_zeroes(uint64_t offset_bytes, uint64_t length_bytes) override {
    off_t data = ::lseek(fd_, static_cast<off_t>(offset_bytes), SEEK_DATA);
    if (data < 0) {
      return errno == ENXIO;  // no data past offset; other errors: unknown, so read it
    }
    return static_cast<uint64_t>(data) >= offset_bytes + length_bytes;
  }

  void read(uint64_t offset_bytes, std::span<std::byte> out) override {
    std::size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::pread(fd_, out.data() + done, out.size() - done,
                          static_cast<off_t>(offset_bytes + done));
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        throw CliError("cannot read " + path_ + ": " + (n == 0 ? "unexpected end" : errno_text()));
      }
      done += static_cast<std::size_t>(n);
    }
  }

  void write(uint64_t offset_bytes, std::span<const std::byte> data) override {
    std::size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done,
                           static_cast<off_t>(offset_bytes + done));
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        throw CliError("cannot write " + path_ + ": " + errno_text());
      }
      done += static_cast<std::size_t>(n);
    }
  }

  void zero(uint64_t offset_bytes, uint64_t length_bytes) override {
    if (fresh_) {
      return;  // a truncated regular file already reads as zeroes here
    }
    std::vector<std::byte> zeroes(std::min<uint64_t>(length_bytes, kMaxRequestBytes));
    for (uint64_t done = 0; done < length_bytes; done += zeroes.size()) {
      uint64_t n = std::min<uint64_t>(zeroes.size(), length_bytes - done);
      write(offset_bytes + done, std::span(zeroes).first(n));
    }
  }

  void flush() override {
    if (::fsync(fd_) != 0) {
      throw CliError("cannot flush " + path_ + ": " + errno_text());
    }
  }

 private:
  std::string path_;
  int fd_;
  uint64_t size_bytes_;
  bool fresh_;
};

uint64_t size_of(const std::string& path, int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    throw CliError("cannot stat " + path + ": " + errno_text());
  }
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    if (::ioctl(fd, BLKGETSIZE64, &bytes) != 0) {
      throw CliError("cannot get the size of " + path + ": " + errno_text());
    }
    return bytes;
  }
  if (!S_ISREG(st.st_mode)) {
    throw CliError(path + " is neither a regular file nor a block device");
  }
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

std::unique_ptr<Endpoint> open_file_source(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw CliError("cannot open " + path + ": " + errno_text());
  }
  uint64_t size = 0;
  try {
    size = size_of(path, fd);
  } catch (...) {
    ::close(fd);
    throw;
  }
  return std::make_unique<FileEndpoint>(path, fd, size, false);
}

std::unique_ptr<Endpoint> open_file_destination(const std::string& path, uint64_t size_bytes) {
  struct stat st {};
  bool block_device = ::stat(path.c_str(), &st) == 0 && S_ISBLK(st.st_mode);
  int flags = O_WRONLY | O_CLOEXEC | (block_device ? 0 : O_CREAT | O_TRUNC);
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) {
    throw CliError("cannot open " + path + " for writing: " + errno_text());
  }
  if (block_device) {
    uint64_t have = 0;
    if (::ioctl(fd, BLKGETSIZE64, &have) != 0 || have < size_bytes) {
      ::close(fd);
      throw CliError(path + " is smaller than the " + std::to_string(size_bytes) +
                     " bytes to export");
    }
  } else if (::ftruncate(fd, static_cast<off_t>(size_bytes)) != 0) {
    std::string why = errno_text();
    ::close(fd);
    throw CliError("cannot size " + path + ": " + why);
  }
  return std::make_unique<FileEndpoint>(path, fd, size_bytes, !block_device);
}

}  // namespace cairn::cli
