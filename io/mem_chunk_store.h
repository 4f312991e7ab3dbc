// MemChunkStore: a ChunkStore held in RAM. Nothing survives the process, so flush() is a
// no-op. It exists for unit tests of the layers above and as the reference model that the
// durable LocalChunkStore is checked against; it is never a node's store.
//
// Dedup and collisions follow the contract exactly: a hit is confirmed by comparing bytes,
// and a colliding chunk gets the next ordinal's id.
//
// Threading: all methods may be called from any thread (one mutex, never held across a
// suspension point).
#pragma once

#include <mutex>
#include <unordered_map>
#include <vector>

#include "io/chunk_hash.h"
#include "io/chunk_store.h"

namespace cairn::io {

class MemChunkStore final : public ChunkStore {
 public:
  explicit MemChunkStore(const ChunkHasher& hasher) : hasher_(hasher) {}

  Task<Result<void>> put(std::span<const std::span<const std::byte>> chunks,
                         std::span<ChunkId> ids) override;
  Task<Result<void>> get(const ChunkId& id, std::span<std::byte> out) override;
  Task<Result<void>> get_many(std::span<const ChunkId> ids,
                              std::span<const std::span<std::byte>> outs) override;
  Task<Result<void>> ref(std::span<const ChunkId> ids) override;
  Task<Result<void>> unref(std::span<const ChunkId> ids) override;
  Task<Result<void>> flush() override;
  [[nodiscard]] ChunkStoreStats stats() const override;

 private:
  struct Entry {
    std::vector<std::byte> data;
    uint64_t refs = 0;
  };

  ChunkId put_one(std::span<const std::byte> chunk);
  std::error_code get_one(const ChunkId& id, std::span<std::byte> out);

  const ChunkHasher& hasher_;
  mutable std::mutex mutex_;
  std::unordered_map<ChunkId, Entry, ChunkIdHash> chunks_;
  ChunkStoreStats stats_;
};

}  // namespace cairn::io
