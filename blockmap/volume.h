// Volume: a virtual disk. Maps byte ranges onto chunks (chunk index -> ChunkId) in a
// ChunkStore, and persists that map through the MetaStore (docs/architecture.md).
//
// Front ends (target/) see only this class: they ask its capabilities instead of knowing the
// backend, and never see placement.
//
// Threading: a Volume is owned by one reactor (executor()). Every method must be called on
// that reactor's thread; the VolumeManager hands connections to the right thread. Requests
// from all connections are therefore ordered by one thread, which is what makes multi-conn
// flush and NBD+iSCSI coherence simple.
//
// Semantics (BRIEF, "Semantics that must be right"): a write is acknowledged when the map
// holds it; flush() makes every write completed before it durable; a FUA write (or any write
// in write-through mode) is durable when it completes. Never-written and trimmed ranges read
// as zeroes and store nothing.
//
// Buffers passed to an operation are borrowed until its awaitable completes.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/asio.h"
#include "base/result.h"
#include "blockmap/volume_config.h"
#include "io/chunk_store.h"
#include "io/meta_store.h"

namespace cairn::blockmap {

// One run of a block-status answer: [offset_bytes, offset_bytes + length_bytes).
struct Extent {
  uint64_t offset_bytes = 0;
  uint64_t length_bytes = 0;
  bool allocated = false;  // false: a hole, which reads as zeroes
};

struct VolumeStats {
  uint64_t logical_bytes = 0;  // the volume's size
  uint64_t mapped_bytes = 0;   // bytes of chunks the map references (after zero detection)
  uint64_t reads = 0, writes = 0, flushes = 0, trims = 0, zeroes = 0;
  uint64_t read_bytes = 0, write_bytes = 0;
};

struct WriteFlags {
  bool fua = false;      // durable on completion
  bool no_hole = false;  // write_zeroes: keep the range allocated (NBD_CMD_FLAG_NO_HOLE)
};

class Volume {
 public:
  // Opens (or, with `create`, initializes) the volume's map. Runs on the owner's thread.
  static Task<Result<std::unique_ptr<Volume>>> open(VolumeConfig config, io::ChunkStore& store,
                                                    io::MetaStore& meta,
                                                    asio::any_io_executor owner);
  ~Volume();
  Volume(const Volume&) = delete;
  Volume& operator=(const Volume&) = delete;

  [[nodiscard]] const VolumeConfig& config() const noexcept { return config_; }
  [[nodiscard]] const std::string& name() const noexcept { return config_.name; }
  [[nodiscard]] uint64_t size_bytes() const noexcept { return config_.size_bytes; }
  [[nodiscard]] uint32_t block_size_bytes() const noexcept { return config_.block_size_bytes; }
  [[nodiscard]] uint32_t chunk_size_bytes() const noexcept { return config_.chunk_size_bytes; }
  [[nodiscard]] asio::any_io_executor executor() const noexcept { return owner_; }

  // Capabilities (nbdkit's can_* callbacks).
  [[nodiscard]] bool can_write() const noexcept { return !config_.read_only; }
  [[nodiscard]] bool can_trim() const noexcept { return can_write(); }
  [[nodiscard]] bool can_zero() const noexcept { return can_write(); }
  [[nodiscard]] bool can_fast_zero() const noexcept { return can_write(); }
  [[nodiscard]] bool can_fua() const noexcept { return true; }
  [[nodiscard]] bool can_flush() const noexcept { return true; }
  [[nodiscard]] bool can_multi_conn() const noexcept { return true; }
  [[nodiscard]] bool can_cache() const noexcept { return true; }
  [[nodiscard]] bool can_extents() const noexcept { return true; }

  // Any byte offset and length; out of range is errc::out_of_range.
  Task<Result<void>> read(uint64_t offset_bytes, std::span<std::byte> out);
  Task<Result<void>> write(uint64_t offset_bytes, std::span<const std::byte> data,
                           WriteFlags flags = {});
  // Unmaps whole chunks in the range; partial chunks at the edges are zeroed instead.
  Task<Result<void>> trim(uint64_t offset_bytes, uint64_t length_bytes, WriteFlags flags = {});
  // Makes the range read as zeroes. Whole chunks become holes (which free space).
  Task<Result<void>> write_zeroes(uint64_t offset_bytes, uint64_t length_bytes,
                                  WriteFlags flags = {});
  Task<Result<void>> flush();
  // Loads the range into the read cache (NBD_CMD_CACHE, SCSI PRE-FETCH).
  Task<Result<void>> cache(uint64_t offset_bytes, uint64_t length_bytes);
  // Appends to `out` the allocation runs covering the range, in order, merged.
  Task<Result<void>> block_status(uint64_t offset_bytes, uint64_t length_bytes,
                                  std::vector<Extent>& out);
  // Grows or shrinks; shrinking drops the chunks past the new end.
  Task<Result<void>> resize(uint64_t new_size_bytes);

  [[nodiscard]] VolumeStats stats() const noexcept { return stats_; }

 private:
  Volume(VolumeConfig config, io::ChunkStore& store, io::MetaStore& meta,
         asio::any_io_executor owner);

  Result<void> check_range(uint64_t offset_bytes, uint64_t length_bytes) const noexcept;
  Task<Result<void>> read_chunk(uint64_t index, std::span<std::byte> out);
  Task<Result<void>> set_chunks(uint64_t first_index, std::span<const io::ChunkId> ids);
  Task<Result<void>> write_zero_range(uint64_t offset_bytes, uint64_t length_bytes);
  Task<Result<void>> after_write(WriteFlags flags);

  VolumeConfig config_;
  io::ChunkStore& store_;
  io::MetaStore& meta_;
  asio::any_io_executor owner_;
  // First implementation: the whole map in RAM. Replaced by the paged, journaled ChunkMap.
  std::vector<io::ChunkId> map_;
  VolumeStats stats_;
};

}  // namespace cairn::blockmap
