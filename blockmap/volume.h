// Volume: a virtual disk. Maps byte ranges onto chunks (chunk index -> ChunkId) in a
// ChunkStore through a DurableMap: a paged ChunkMap, a journal of map updates (a RecordLog
// from the LogFactory) and checkpoints under a versioned root in the MetaStore
// (docs/volumes.md).
//
// Front ends (target/) see only this class: they ask its capabilities instead of knowing the
// backend, and never see placement.
//
// Threading: a Volume is owned by one reactor (executor()). Every method must be called on
// that reactor's thread; the VolumeManager hands connections to the right thread. Requests
// from all connections are therefore ordered by one thread, which is what makes multi-conn
// flush and NBD+iSCSI coherence simple. Requests interleave at suspension points: writes,
// trims and zeroes hold an exclusive lock on their chunk range (so a read-modify-write never
// loses a concurrent update), reads a shared one.
//
// Semantics (BRIEF, "Semantics that must be right"; NBD proto.md, "Ordering of messages and
// writes"): a write is acknowledged when the map holds it; flush() makes every write completed
// before it durable; a FUA write (or any write in write-through mode) is durable when it
// completes. Never-written and trimmed ranges read as zeroes and store nothing. A chunk is
// replaced whole, so a logical block is never a mix of two writes after a crash.
//
// Buffers passed to an operation are borrowed until its awaitable completes.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/asio.h"
#include "base/result.h"
#include "blockmap/durable_map.h"
#include "blockmap/range_lock.h"
#include "blockmap/volume_config.h"
#include "io/chunk_store.h"
#include "io/meta_store.h"
#include "io/record_log.h"

namespace cairn::blockmap {

// One run of a block-status answer: [offset_bytes, offset_bytes + length_bytes).
struct Extent {
  uint64_t offset_bytes = 0;
  uint64_t length_bytes = 0;
  bool allocated = false;  // false: a hole, which reads as zeroes
};

struct VolumeStats {
  uint64_t logical_bytes = 0;     // the volume's size
  uint64_t mapped_bytes = 0;      // bytes of chunks the map references (after zero detection)
  uint64_t referenced_bytes = 0;  // same as mapped_bytes: what this volume pins in the store
  // Store-wide, shared by every volume on the store: physical / referenced is the dedup ratio.
  uint64_t store_physical_bytes = 0;
  uint64_t store_referenced_bytes = 0;
  uint64_t map_cache_pages = 0, map_cache_max_pages = 0;
  uint64_t map_cache_hits = 0, map_cache_misses = 0, map_page_writes = 0;
  uint64_t map_checkpoints = 0;
  uint64_t reads = 0, writes = 0, flushes = 0, trims = 0, zeroes = 0;
  uint64_t compare_and_writes = 0, miscompares = 0, copies = 0;
  uint64_t copied_by_reference_bytes = 0;  // copy_range bytes that moved no data
  uint64_t read_bytes = 0, write_bytes = 0;
};

struct WriteFlags {
  bool fua = false;      // durable on completion
  bool no_hole = false;  // write_zeroes: keep the range allocated (NBD_CMD_FLAG_NO_HOLE)
};

// Where a volume keeps its chunks, its root and its journal. All must outlive the volume.
struct VolumeStorage {
  io::ChunkStore& store;
  io::MetaStore& meta;
  io::LogFactory* logs = nullptr;  // null: no journal, every flush checkpoints the map
  uint64_t map_cache_bytes = 64ull << 20;
};

class Volume {
 public:
  // Opens the volume's map, creating an empty one if it has none. The size recorded in the
  // map's root wins over config.size_bytes (a resize may have crashed half-way). Runs on the
  // owner's thread.
  static Task<Result<std::unique_ptr<Volume>>> open(VolumeConfig config,
                                                    const VolumeStorage& storage,
                                                    asio::any_io_executor owner);
  // Same, with no journal and the default map cache.
  static Task<Result<std::unique_ptr<Volume>>> open(VolumeConfig config, io::ChunkStore& store,
                                                    io::MetaStore& meta,
                                                    asio::any_io_executor owner);
  // The MetaStore key of a volume's map root, and the name of its journal.
  [[nodiscard]] static std::string root_key(std::string_view name);
  [[nodiscard]] static std::string journal_name(std::string_view name);
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

  // Any byte offset and length; out of range is errc::out_of_range. A zero length inside the
  // volume is a no-op that succeeds.
  Task<Result<void>> read(uint64_t offset_bytes, std::span<std::byte> out);
  Task<Result<void>> write(uint64_t offset_bytes, std::span<const std::byte> data,
                           WriteFlags flags = {});
  // write() of buffer[0, length_bytes), whose buffer the store may keep instead of copying it
  // (ChunkStore::put_from()): on return `buffer` is the same or another buffer of at least its
  // size, contents unspecified. The NBD server receives a write's payload into it.
  Task<Result<void>> write_from(uint64_t offset_bytes, io::AlignedBuffer& buffer,
                                std::size_t length_bytes, WriteFlags flags = {});
  // Unmaps whole chunks in the range; partial chunks at the edges are zeroed instead.
  Task<Result<void>> trim(uint64_t offset_bytes, uint64_t length_bytes, WriteFlags flags = {});
  // Makes the range read as zeroes. Whole chunks become holes (which free space).
  Task<Result<void>> write_zeroes(uint64_t offset_bytes, uint64_t length_bytes,
                                  WriteFlags flags = {});
  // Atomically against every other request (under one exclusive range lock): reads
  // [offset, offset + compare.size()) and, if it equals `compare`, writes `data` (the same
  // length) there. Returns false on a mismatch, with *miscompare_offset (if not null) set to
  // the offset of the first differing byte relative to offset_bytes; nothing is written then.
  // SCSI COMPARE AND WRITE (VMware ATS) and ORWRITE's read-modify-write run on it.
  Task<Result<bool>> compare_and_write(uint64_t offset_bytes, std::span<const std::byte> compare,
                                       std::span<const std::byte> data, uint64_t* miscompare_offset,
                                       WriteFlags flags = {});
  // Copies [src, src + length) to [dst, dst + length) within this volume, as if through a
  // buffer (overlapping ranges give memmove's result). When source and destination have the
  // same offset within a chunk, whole chunks are copied by reference: the map points at the
  // same chunk ids and the store's ref() counts them, so no data is read or stored. Partial
  // chunks at the edges, and every chunk of a misaligned copy, are read and written. Holds one
  // exclusive lock over both ranges (and what lies between) for the whole copy.
  Task<Result<void>> copy_range(uint64_t src_offset_bytes, uint64_t dst_offset_bytes,
                                uint64_t length_bytes, WriteFlags flags = {});
  Task<Result<void>> flush();
  // Loads the range into the read cache (NBD_CMD_CACHE, SCSI PRE-FETCH).
  Task<Result<void>> cache(uint64_t offset_bytes, uint64_t length_bytes);
  // Appends to `out` the allocation runs covering the range, in order, merged.
  Task<Result<void>> block_status(uint64_t offset_bytes, uint64_t length_bytes,
                                  std::vector<Extent>& out);
  // Grows or shrinks, durably; shrinking drops the chunks past the new end and zeroes the tail
  // of a partial last chunk, so a later grow reads zeroes there.
  Task<Result<void>> resize(uint64_t new_size_bytes);
  // Deletes the volume's data: erases its root and journal and drops every chunk reference.
  // The volume is unusable afterwards.
  Task<Result<void>> destroy();

  [[nodiscard]] VolumeStats stats() const noexcept;

 private:
  Volume(VolumeConfig config, io::ChunkStore& store, std::unique_ptr<DurableMap> map,
         asio::any_io_executor owner);

  Result<void> check_range(uint64_t offset_bytes, uint64_t length_bytes) const noexcept;
  Result<void> check_write(uint64_t offset_bytes, uint64_t length_bytes) const noexcept;
  Task<Result<RangeLock::Guard>> lock_range(uint64_t offset_bytes, uint64_t length_bytes,
                                            RangeLock::Mode mode);
  Task<Result<void>> read_chunk(uint64_t index, std::span<std::byte> out);
  Task<Result<void>> read_chunks(uint64_t first_index, std::span<std::byte> out);
  Task<Result<void>> read_locked(uint64_t offset_bytes, std::span<std::byte> out);
  Task<Result<void>> copy_piece(uint64_t src_offset_bytes, uint64_t dst_offset_bytes,
                                uint64_t length_bytes, bool by_reference,
                                std::vector<std::byte>& bounce);
  Task<Result<void>> map_chunks(uint64_t first_index, std::span<const io::ChunkId> ids);
  // `donor`: the buffer that holds `chunks` (or some of them) for put_from(), or null.
  Task<Result<void>> store_chunks(uint64_t first_index,
                                  std::span<const std::span<const std::byte>> chunks,
                                  io::AlignedBuffer* donor);
  Task<Result<void>> write_with(uint64_t offset_bytes, std::span<const std::byte> data,
                                io::AlignedBuffer* donor, WriteFlags flags);
  Task<Result<void>> write_locked(uint64_t offset_bytes, std::span<const std::byte> data,
                                  io::AlignedBuffer* donor = nullptr);
  Task<Result<void>> zero_locked(uint64_t offset_bytes, uint64_t length_bytes, bool keep_allocated);
  Task<Result<void>> after_write(WriteFlags flags);

  VolumeConfig config_;
  io::ChunkStore& store_;
  std::unique_ptr<DurableMap> map_;
  asio::any_io_executor owner_;
  RangeLock chunk_locks_;  // over chunk indexes
  VolumeStats stats_;
};

}  // namespace cairn::blockmap
