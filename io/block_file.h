// BlockFile: a file or block device the local stores sit on. Everything the stores persist
// goes through this interface, so the crash harness can put a simulated disk underneath
// (FoundationDB's IAsyncFile; LevelDB's fault-injection Env).
//
// Implementations: UringBlockFile (O_DIRECT through the reactor's DiskRing) and SimBlockFile
// (in memory; drops unsynced writes and tears them at 512-byte granularity on a power cut).
//
// Writes are volatile until sync() completes, like a disk with a write cache. Offsets and
// lengths of O_DIRECT files must be multiples of kAlignment, and buffers aligned to it.
//
// Threading: owned by one thread, or as the implementation documents.
#pragma once

#include <cstdint>
#include <span>

#include "base/asio.h"
#include "base/result.h"

namespace cairn::io {

class BlockFile {
 public:
  static constexpr uint64_t kAlignment = 4096;

  virtual ~BlockFile() = default;

  virtual Task<Result<void>> read(uint64_t offset_bytes, std::span<std::byte> out) = 0;
  virtual Task<Result<void>> write(uint64_t offset_bytes, std::span<const std::byte> data) = 0;
  // Makes every completed write durable.
  virtual Task<Result<void>> sync() = 0;
  [[nodiscard]] virtual uint64_t size_bytes() const = 0;
  // Grows the file (a block device cannot grow; errc::no_space).
  virtual Task<Result<void>> grow(uint64_t new_size_bytes) = 0;
  // A buffer its owner writes from (or reads into) again and again: a file on io_uring pins
  // it once as a fixed buffer (DiskRing::register_buffer). Optional; the default does
  // nothing. The owner unregisters it before freeing or resizing it.
  virtual void register_buffer(std::span<const std::byte> buffer) { (void)buffer; }
  virtual void unregister_buffer(const std::byte* base) { (void)base; }
};

// One of the writes write_all() issues together.
struct BlockWrite {
  uint64_t offset_bytes = 0;
  std::span<const std::byte> data;
};

// Issues every write at once (on the calling coroutine's executor, which must be the file's
// thread) and waits for all of them, so N writes cost about one device round trip, not N in
// a row. The first error, if any; the buffers must stay valid until it returns.
Task<Result<void>> write_all(BlockFile& file, std::span<const BlockWrite> writes);

}  // namespace cairn::io
