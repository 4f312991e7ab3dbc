// ChunkCache: the chunk store's bounded read cache, keyed by chunk id, least recently used
// out first. Because it is keyed by id, a deduplicated chunk is cached once however many
// volumes refer to it. The budget counts chunk bytes (not the per-entry bookkeeping).
//
// Memory: an entry that leaves (evicted or erased) keeps its list node and buffer on a spare
// list, and the next insert of the same size takes them, so a cache in steady state (inserts
// balanced by evictions or by erases of dropped chunks) allocates no chunk buffers. Cached
// plus spare bytes stay within the budget; spare ones go first.
//
// Threading: one thread (the store's owner). Lookups copy out, so no reference into the
// cache outlives a call.
#pragma once

#include <algorithm>
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

#include "io/chunk_id.h"

namespace cairn::io {

class ChunkCache {
 public:
  explicit ChunkCache(uint64_t budget_bytes) : budget_bytes_(budget_bytes) {
    // Buckets for a budget's worth of 4 KiB chunks up front (capped): no rehash while the
    // cache fills.
    map_.reserve(static_cast<std::size_t>(std::min<uint64_t>(budget_bytes / 4096, 1u << 20)));
  }

  // The cached bytes of `id`, or nullptr. Marks the entry recently used. The pointer is
  // valid until the next non-const call.
  [[nodiscard]] const std::vector<std::byte>* find(const ChunkId& id);
  void insert(const ChunkId& id, std::span<const std::byte> data);
  void erase(const ChunkId& id);

  // Whether `bytes` more fit without evicting anything.
  [[nodiscard]] bool has_room(uint64_t bytes) const noexcept {
    return used_bytes_ + bytes <= budget_bytes_;
  }
  [[nodiscard]] uint64_t used_bytes() const noexcept { return used_bytes_; }
  [[nodiscard]] uint64_t spare_bytes() const noexcept { return spare_bytes_; }
  [[nodiscard]] std::size_t entries() const noexcept { return map_.size(); }

 private:
  struct Item {
    ChunkId id;
    std::vector<std::byte> data;
  };
  using Map = std::unordered_map<ChunkId, std::list<Item>::iterator, ChunkIdHash>;
  void retire(Map::iterator it);  // moves the entry to spare_
  void evict_to(uint64_t budget);

  uint64_t budget_bytes_;
  uint64_t used_bytes_ = 0;
  uint64_t spare_bytes_ = 0;
  std::list<Item> lru_;    // front: most recent
  std::list<Item> spare_;  // retired entries, buffers kept; front: most recently retired
  Map map_;
};

}  // namespace cairn::io
