#include "io/uring_block_file.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/assert.h"
#include "base/log.h"
#include "io/disk_ring.h"
#include "io/errors.h"
#include "io/reactor.h"

namespace cairn::io {
namespace {

// One submission moves at most this much, so a length always fits the SQE's 32-bit field.
constexpr std::size_t kMaxIoBytes = 1u << 20;
// A kernel EAGAIN/EINTR on an SQE is retried this many times before it counts as an error.
constexpr int kMaxRetries = 8;

std::error_code errno_code(int e) {
  return {e, std::system_category()};
}

Result<uint64_t> device_or_file_size(int fd, bool& block_device) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return errno_code(errno);
  }
  block_device = S_ISBLK(st.st_mode);
  if (!block_device) {
    if (!S_ISREG(st.st_mode)) {
      return make_error(errc::invalid_argument);
    }
    return static_cast<uint64_t>(st.st_size);
  }
  uint64_t bytes = 0;
  if (::ioctl(fd, BLKGETSIZE64, &bytes) != 0) {
    return errno_code(errno);
  }
  return bytes;
}

bool retryable(const std::error_code& ec) {
  return ec == std::errc::resource_unavailable_try_again || ec == std::errc::interrupted;
}

}  // namespace

UringBlockFile::UringBlockFile(std::string path, int fd, uint64_t size_bytes, bool block_device,
                               bool direct, DiskRing* ring)
    : path_(std::move(path)),
      fd_(fd),
      size_bytes_(size_bytes),
      block_device_(block_device),
      direct_(direct),
      ring_(ring) {}

UringBlockFile::~UringBlockFile() {
  for (auto [base, ring] : fixed_) {
    ring->unregister_buffer(base);
  }
  ::close(fd_);
}

Result<std::unique_ptr<UringBlockFile>> UringBlockFile::open(const std::string& path,
                                                             const Options& options,
                                                             DiskRing* ring) {
  int flags = O_RDWR | O_CLOEXEC | (options.create ? O_CREAT : 0);
  bool direct = true;
  int fd = ::open(path.c_str(), flags | O_DIRECT, 0644);
  if (fd < 0 && errno == EINVAL && options.allow_buffered) {
    CAIRN_LOG(warn, "io", "{}: no O_DIRECT on this file system; using buffered I/O", path);
    direct = false;
    fd = ::open(path.c_str(), flags, 0644);
  }
  if (fd < 0) {
    return errno_code(errno);
  }
  bool block_device = false;
  auto size = device_or_file_size(fd, block_device);
  if (!size) {
    ::close(fd);
    return size.error();
  }
  std::unique_ptr<UringBlockFile> file(
      new UringBlockFile(path, fd, *size / kAlignment * kAlignment, block_device, direct, ring));
  if (!block_device && options.initial_size_bytes > file->size_bytes_) {
    if (auto grown = file->grow_now(options.initial_size_bytes); !grown) {
      return grown.error();
    }
  }
  return file;
}

DiskRing& UringBlockFile::ring() const noexcept {
  if (ring_ != nullptr) {
    return *ring_;
  }
  Reactor* reactor = Reactor::current();
  CAIRN_ASSERT(reactor != nullptr);
  return reactor->disk();
}

bool UringBlockFile::aligned(uint64_t offset_bytes, std::size_t length,
                             const void* buffer) const noexcept {
  if (offset_bytes % kAlignment != 0 || length % kAlignment != 0) {
    return false;
  }
  if (direct_ && reinterpret_cast<uintptr_t>(buffer) % kAlignment != 0) {
    return false;
  }
  return offset_bytes <= size_bytes_ && length <= size_bytes_ - offset_bytes;
}

Task<Result<void>> UringBlockFile::read(uint64_t offset_bytes, std::span<std::byte> out) {
  if (!aligned(offset_bytes, out.size(), out.data())) {
    co_return make_error(errc::invalid_argument);
  }
  std::size_t done = 0;
  int retries = 0;
  while (done < out.size()) {
    std::span<std::byte> part = out.subspan(done, std::min(kMaxIoBytes, out.size() - done));
    auto [ec, n] = co_await ring().async_read(fd_, part, offset_bytes + done, use_tuple);
    if (ec && retryable(ec) && ++retries <= kMaxRetries) {
      continue;
    }
    if (ec) {
      co_return ec;
    }
    if (n == 0) {
      co_return make_error(errc::io_error);  // end of file inside the range
    }
    done += n;
  }
  co_return Result<void>{};
}

Task<Result<void>> UringBlockFile::write(uint64_t offset_bytes, std::span<const std::byte> data) {
  if (!aligned(offset_bytes, data.size(), data.data())) {
    co_return make_error(errc::invalid_argument);
  }
  std::size_t done = 0;
  int retries = 0;
  while (done < data.size()) {
    auto part = data.subspan(done, std::min(kMaxIoBytes, data.size() - done));
    auto [ec, n] = co_await ring().async_write(fd_, part, offset_bytes + done, use_tuple);
    if (ec && retryable(ec) && ++retries <= kMaxRetries) {
      continue;
    }
    if (ec) {
      co_return ec;
    }
    if (n == 0) {
      co_return make_error(errc::io_error);
    }
    done += n;
  }
  co_return Result<void>{};
}

void UringBlockFile::register_buffer(std::span<const std::byte> buffer) {
  for (auto [base, ring] : fixed_) {
    if (base == buffer.data()) {
      return;  // already (the owner unregisters before it resizes)
    }
  }
  DiskRing& r = ring();
  if (r.register_buffer(buffer)) {
    fixed_.emplace_back(buffer.data(), &r);
  }
}

void UringBlockFile::unregister_buffer(const std::byte* base) {
  for (auto it = fixed_.begin(); it != fixed_.end(); ++it) {
    if (it->first == base) {
      it->second->unregister_buffer(base);
      fixed_.erase(it);
      return;
    }
  }
}

Task<Result<void>> UringBlockFile::sync() {
  // fdatasync semantics also persist a file-size change the data needs.
  for (int attempt = 0;; ++attempt) {
    auto [ec, n] = co_await ring().async_fsync(fd_, true, use_tuple);
    if (ec && retryable(ec) && attempt < kMaxRetries) {
      continue;
    }
    if (ec) {
      co_return ec;
    }
    co_return Result<void>{};
  }
}

// A full data file grows on the data path, so the fallocate and the fsync that makes the new
// size durable go through the ring: the reactor goes on serving other requests meanwhile.
Task<Result<void>> UringBlockFile::grow(uint64_t new_size_bytes) {
  if (auto ok = can_grow_to(new_size_bytes); !ok || new_size_bytes <= size_bytes_) {
    co_return ok;
  }
  auto [ec, n] =
      co_await ring().async_fallocate(fd_, 0, size_bytes_, new_size_bytes - size_bytes_, use_tuple);
  if (ec) {
    if (auto r = fallocate_failed(ec.value(), new_size_bytes); !r) {
      co_return r.error();
    }
  }
  // The new size must survive a crash before anything relies on it (sync(): fdatasync
  // semantics, which persist a size change).
  if (auto r = co_await sync(); !r) {
    co_return r;
  }
  size_bytes_ = std::max(size_bytes_, new_size_bytes);
  co_return Result<void>{};
}

Result<void> UringBlockFile::grow_now(uint64_t new_size_bytes) noexcept {
  if (auto ok = can_grow_to(new_size_bytes); !ok || new_size_bytes <= size_bytes_) {
    return ok;
  }
  auto length = static_cast<off_t>(new_size_bytes - size_bytes_);
  if (::fallocate(fd_, 0, static_cast<off_t>(size_bytes_), length) != 0) {
    if (auto r = fallocate_failed(errno, new_size_bytes); !r) {
      return r.error();
    }
  }
  // The new size must survive a crash before anything relies on it.
  if (::fsync(fd_) != 0) {
    return errno_code(errno);
  }
  size_bytes_ = new_size_bytes;
  return {};
}

Result<void> UringBlockFile::can_grow_to(uint64_t new_size_bytes) const noexcept {
  if (new_size_bytes % kAlignment != 0) {
    return make_error(errc::invalid_argument);
  }
  if (new_size_bytes > size_bytes_ && block_device_) {
    return make_error(errc::no_space);
  }
  return {};
}

// After fallocate failed with `error`: a full file system is errc::no_space; one that cannot
// preallocate (EOPNOTSUPP) gets the size by ftruncate instead (a short blocking call, only on
// such file systems).
Result<void> UringBlockFile::fallocate_failed(int error, uint64_t new_size_bytes) const noexcept {
  if (error == ENOSPC) {
    return make_error(errc::no_space);
  }
  if (error != EOPNOTSUPP) {
    return errno_code(error);
  }
  if (::ftruncate(fd_, static_cast<off_t>(new_size_bytes)) != 0) {
    return errno_code(errno);
  }
  return {};
}

}  // namespace cairn::io
