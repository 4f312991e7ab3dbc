#include "io/mem_chunk_store.h"

#include <algorithm>
#include <cstring>

#include "base/assert.h"
#include "io/errors.h"

namespace cairn::io {

ChunkId MemChunkStore::put_one(std::span<const std::byte> chunk) {
  for (uint32_t ordinal = 0;; ++ordinal) {
    ChunkId id = hasher_.address(chunk, ordinal);
    auto [it, inserted] = chunks_.try_emplace(id);
    Entry& e = it->second;
    if (inserted) {
      e.data.assign(chunk.begin(), chunk.end());
      e.refs = 1;
      stats_.chunks++;
      stats_.physical_bytes += chunk.size();
      stats_.referenced_bytes += chunk.size();
      return id;
    }
    if (e.data.size() == chunk.size() &&
        std::memcmp(e.data.data(), chunk.data(), chunk.size()) == 0) {
      e.refs++;
      stats_.dedup_hits++;
      stats_.referenced_bytes += chunk.size();
      return id;
    }
    stats_.hash_collisions++;
  }
}

Task<Result<void>> MemChunkStore::put(std::span<const std::span<const std::byte>> chunks,
                                      std::span<ChunkId> ids) {
  CAIRN_ASSERT(chunks.size() == ids.size());
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    ids[i] = put_one(chunks[i]);
  }
  co_return Result<void>{};
}

std::error_code MemChunkStore::get_one(const ChunkId& id, std::span<std::byte> out) {
  auto it = chunks_.find(id);
  if (it == chunks_.end()) {
    return make_error_code(errc::not_found);
  }
  if (it->second.data.size() != out.size()) {
    return make_error_code(errc::invalid_argument);
  }
  std::memcpy(out.data(), it->second.data.data(), out.size());
  stats_.cache_hits++;
  return {};
}

Task<Result<void>> MemChunkStore::get(const ChunkId& id, std::span<std::byte> out) {
  std::lock_guard lock(mutex_);
  if (auto ec = get_one(id, out)) {
    co_return ec;
  }
  co_return Result<void>{};
}

Task<Result<void>> MemChunkStore::get_many(std::span<const ChunkId> ids,
                                           std::span<const std::span<std::byte>> outs) {
  if (ids.size() != outs.size()) {
    co_return make_error_code(errc::invalid_argument);
  }
  std::lock_guard lock(mutex_);
  std::error_code first;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto ec = get_one(ids[i], outs[i]);
    if (ec && !first) {
      first = ec;
    }
  }
  if (first) {
    co_return first;
  }
  co_return Result<void>{};
}

Task<Result<void>> MemChunkStore::ref(std::span<const ChunkId> ids) {
  std::lock_guard lock(mutex_);
  for (const ChunkId& id : ids) {
    if (!chunks_.contains(id)) {
      co_return make_error_code(errc::not_found);
    }
  }
  for (const ChunkId& id : ids) {
    Entry& e = chunks_.at(id);
    e.refs++;
    stats_.referenced_bytes += e.data.size();
  }
  co_return Result<void>{};
}

Task<Result<void>> MemChunkStore::unref(std::span<const ChunkId> ids) {
  std::lock_guard lock(mutex_);
  for (const ChunkId& id : ids) {
    auto it = chunks_.find(id);
    CAIRN_ASSERT(it != chunks_.end());  // dropping a reference nobody took is a caller bug
    CAIRN_ASSERT(it->second.refs > 0);
    stats_.referenced_bytes -= it->second.data.size();
    if (--it->second.refs == 0) {
      stats_.chunks--;
      stats_.physical_bytes -= it->second.data.size();
      chunks_.erase(it);
    }
  }
  co_return Result<void>{};
}

Task<Result<void>> MemChunkStore::flush() {
  co_return Result<void>{};
}

ChunkStoreStats MemChunkStore::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace cairn::io
