// ChunkStore: the extent-store interface (BRIEF, "Interfaces and folders").
//
// A chunk is an immutable byte string of 4 KiB to 64 KiB, addressed by its content hash
// (ChunkId). The store keeps a reference count per chunk: put() takes one reference on each
// chunk (deduplicating identical content, confirmed by comparing bytes), ref() takes another,
// unref() drops one; space is reclaimed when a count reaches zero.
//
// Implementations: io/LocalChunkStore (a data file or block device on this node) and later
// net/ (replicated across peers). blockmap/ sees only this interface.
//
// Threading: every method may be called from any reactor thread; the awaitable completes on
// the caller's executor. Buffers are borrowed until the awaitable completes.
//
// Durability (NBD proto.md, "Ordering of messages and writes"): when flush() completes,
// every put/ref/unref that completed before flush() was called is durable. Callers that need
// crash safety between their own metadata and these counts follow the rule in
// docs/architecture.md: flush new references before publishing metadata that points at them,
// and drop references only after the metadata that dropped them is durable. A crash can then
// leak space (reclaimed by GC) but never lose a referenced chunk.
#pragma once

#include <cstdint>
#include <span>

#include "base/asio.h"
#include "base/result.h"
#include "io/aligned_buffer.h"
#include "io/chunk_id.h"

namespace cairn::io {

struct ChunkStoreStats {
  uint64_t chunks = 0;            // distinct chunks stored
  uint64_t referenced_bytes = 0;  // sum over chunks of size * refcount
  uint64_t physical_bytes = 0;    // bytes the chunks occupy on disk (headers included)
  uint64_t capacity_bytes = 0;    // total space for chunks
  uint64_t dedup_hits = 0;        // puts that found identical content already stored
  uint64_t hash_collisions = 0;   // puts whose address matched different content
  uint64_t cache_hits = 0;        // chunk reads served from the read cache
  uint64_t cache_misses = 0;
  uint64_t checksum_failures = 0;
  uint64_t index_cache_bytes = 0;       // RAM of the index's page cache now (0: index not paged)
  uint64_t index_cache_peak_bytes = 0;  // its highest value since open
};

class ChunkStore {
 public:
  virtual ~ChunkStore() = default;

  // Stores chunks[i] and writes its id to ids[i], taking one reference on each. Chunks of one
  // call that are new are laid out contiguously on disk. ids.size() == chunks.size().
  virtual Task<Result<void>> put(std::span<const std::span<const std::byte>> chunks,
                                 std::span<ChunkId> ids) = 0;

  // put(), where every chunk lies in `buffer`, which the store may keep instead of copying the
  // new chunks out of it (LocalChunkStore does for a large put whose chunks sit as it writes
  // them: 4 KiB aligned). On return `buffer` is the same or another buffer of at least its
  // size, the caller's to reuse; its contents are unspecified.
  virtual Task<Result<void>> put_from(AlignedBuffer& /*buffer*/,
                                      std::span<const std::span<const std::byte>> chunks,
                                      std::span<ChunkId> ids) {
    co_return co_await put(chunks, ids);
  }

  // Reads a chunk into `out`, which must be exactly the chunk's size. The chunk's checksum is
  // verified; a mismatch is errc::checksum_mismatch, never bad data.
  virtual Task<Result<void>> get(const ChunkId& id, std::span<std::byte> out) = 0;

  // Reads chunk ids[i] into outs[i] for every i, each out exactly its chunk's size, as get()
  // would, in one call: a store may serve the chunks together (LocalChunkStore reads chunks
  // that lie side by side on disk with one request). ids.size() == outs.size(); an id may
  // appear more than once. Every chunk is attempted. The result is the error, with get()'s
  // meaning (not_found, checksum_mismatch, ...), of the first chunk in `ids` order that failed;
  // then the outs of failed chunks hold unspecified bytes, the others their chunk. Callers bound
  // the size of one call (Volume: a 1 MiB request at most).
  virtual Task<Result<void>> get_many(std::span<const ChunkId> ids,
                                      std::span<const std::span<std::byte>> outs) = 0;

  // Takes one more reference on each existing chunk (clones, copy offload).
  virtual Task<Result<void>> ref(std::span<const ChunkId> ids) = 0;

  // Drops one reference on each chunk.
  virtual Task<Result<void>> unref(std::span<const ChunkId> ids) = 0;

  // Makes everything completed before this call durable.
  virtual Task<Result<void>> flush() = 0;

  [[nodiscard]] virtual ChunkStoreStats stats() const = 0;
};

}  // namespace cairn::io
