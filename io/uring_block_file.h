// UringBlockFile: a BlockFile on a regular file or a raw block device, opened with O_DIRECT,
// whose reads, writes and syncs all go through a DiskRing (IORING_OP_FSYNC for sync(), so a
// flush never blocks the reactor).
//
// The ring is the calling reactor's (Reactor::current()->disk()) unless one is given to
// open(); either way every operation must come from the ring's thread. A file is grown with
// IORING_OP_FALLOCATE and IORING_OP_FSYNC (open() grows it with the blocking calls); a block
// device has a fixed size and cannot grow. If the file system refuses O_DIRECT, open() fails unless
// Options::allow_buffered is set, in which case the file is used through the page cache
// (sync() still makes writes durable).
//
// Threading: one thread (the ring's). The file descriptor is closed by the destructor; no
// operation may be in flight then.
#pragma once

#include <memory>
#include <string>

#include "io/block_file.h"

namespace cairn::io {

class DiskRing;

class UringBlockFile final : public BlockFile {
 public:
  struct Options {
    bool create = true;               // create a regular file if missing
    uint64_t initial_size_bytes = 0;  // grow a smaller regular file to this size
    bool allow_buffered = false;      // fall back to buffered I/O without O_DIRECT
  };

  // Opens `path`. Blocking syscalls (start-up only). `ring` may be null: see above.
  static Result<std::unique_ptr<UringBlockFile>> open(const std::string& path,
                                                      const Options& options,
                                                      DiskRing* ring = nullptr);
  ~UringBlockFile() override;
  UringBlockFile(const UringBlockFile&) = delete;
  UringBlockFile& operator=(const UringBlockFile&) = delete;

  Task<Result<void>> read(uint64_t offset_bytes, std::span<std::byte> out) override;
  Task<Result<void>> write(uint64_t offset_bytes, std::span<const std::byte> data) override;
  Task<Result<void>> sync() override;
  [[nodiscard]] uint64_t size_bytes() const override { return size_bytes_; }
  Task<Result<void>> grow(uint64_t new_size_bytes) override;
  void register_buffer(std::span<const std::byte> buffer) override;
  void unregister_buffer(const std::byte* base) override;

  [[nodiscard]] bool is_block_device() const noexcept { return block_device_; }
  [[nodiscard]] bool direct_io() const noexcept { return direct_; }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  UringBlockFile(std::string path, int fd, uint64_t size_bytes, bool block_device, bool direct,
                 DiskRing* ring);
  [[nodiscard]] DiskRing& ring() const noexcept;
  [[nodiscard]] Result<void> grow_now(uint64_t new_size_bytes) noexcept;
  // errc::invalid_argument for a size off the alignment, errc::no_space for a device asked
  // to grow.
  [[nodiscard]] Result<void> can_grow_to(uint64_t new_size_bytes) const noexcept;
  [[nodiscard]] Result<void> fallocate_failed(int error, uint64_t new_size_bytes) const noexcept;
  [[nodiscard]] bool aligned(uint64_t offset_bytes, std::size_t length,
                             const void* buffer) const noexcept;

  std::string path_;
  int fd_;
  uint64_t size_bytes_;
  bool block_device_;
  bool direct_;
  DiskRing* ring_;
  // Buffers registered as fixed, with the ring that holds each (the destructor releases
  // them, from whatever thread it runs on: the rings outlive their files).
  std::vector<std::pair<const std::byte*, DiskRing*>> fixed_;
};

}  // namespace cairn::io
