#include "io/chunk_cache.h"

#include <cstring>

namespace cairn::io {

const std::vector<std::byte>* ChunkCache::find(const ChunkId& id) {
  auto it = map_.find(id);
  if (it == map_.end()) {
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  return &it->second->data;
}

void ChunkCache::insert(const ChunkId& id, std::span<const std::byte> data) {
  if (data.size() > budget_bytes_) {
    return;
  }
  if (auto it = map_.find(id); it != map_.end()) {
    if (it->second->data.size() == data.size()) {  // the same chunk again: refresh in place
      std::memcpy(it->second->data.data(), data.data(), data.size());
      lru_.splice(lru_.begin(), lru_, it->second);
      return;
    }
    retire(it);
  }
  evict_to(budget_bytes_ - data.size());
  // A retired entry of the same size gives its list node and buffer; otherwise a new one,
  // after spare buffers have made room for it (cached plus spare stay within the budget).
  const bool reuse = !spare_.empty() && spare_.front().data.size() == data.size();
  if (reuse) {
    spare_bytes_ -= data.size();
    lru_.splice(lru_.begin(), spare_, spare_.begin());
  }
  while (!spare_.empty() && used_bytes_ + data.size() + spare_bytes_ > budget_bytes_) {
    spare_bytes_ -= spare_.back().data.size();
    spare_.pop_back();
  }
  if (reuse) {
    std::memcpy(lru_.front().data.data(), data.data(), data.size());
    lru_.front().id = id;
  } else {
    lru_.push_front(Item{id, std::vector<std::byte>(data.begin(), data.end())});
  }
  used_bytes_ += data.size();
  map_.emplace(id, lru_.begin());
}

void ChunkCache::erase(const ChunkId& id) {
  if (auto it = map_.find(id); it != map_.end()) {
    retire(it);
  }
}

void ChunkCache::retire(Map::iterator it) {
  used_bytes_ -= it->second->data.size();
  spare_bytes_ += it->second->data.size();
  spare_.splice(spare_.begin(), lru_, it->second);
  map_.erase(it);
}

void ChunkCache::evict_to(uint64_t budget) {
  while (used_bytes_ > budget && !lru_.empty()) {
    retire(map_.find(lru_.back().id));
  }
}

}  // namespace cairn::io
