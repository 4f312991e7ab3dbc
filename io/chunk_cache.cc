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
    used_bytes_ -= it->second->data.size();
    lru_.erase(it->second);
    map_.erase(it);
  }
  if (!lru_.empty() && used_bytes_ + data.size() > budget_bytes_ &&
      lru_.back().data.size() == data.size()) {
    // The least recently used entry must go anyway: reuse its list node, index node and
    // buffer, so a full cache allocates nothing per insert.
    auto item = std::prev(lru_.end());
    auto node = map_.extract(item->id);
    used_bytes_ -= item->data.size();
    lru_.splice(lru_.begin(), lru_, item);
    evict_to(budget_bytes_ - data.size());
    item->id = id;
    std::memcpy(item->data.data(), data.data(), data.size());
    node.key() = id;
    node.mapped() = item;
    map_.insert(std::move(node));
    used_bytes_ += data.size();
    return;
  }
  evict_to(budget_bytes_ - data.size());
  lru_.push_front(Item{id, std::vector<std::byte>(data.begin(), data.end())});
  map_.emplace(id, lru_.begin());
  used_bytes_ += data.size();
}

void ChunkCache::erase(const ChunkId& id) {
  auto it = map_.find(id);
  if (it == map_.end()) {
    return;
  }
  used_bytes_ -= it->second->data.size();
  lru_.erase(it->second);
  map_.erase(it);
}

void ChunkCache::evict_to(uint64_t budget) {
  while (used_bytes_ > budget && !lru_.empty()) {
    Item& last = lru_.back();
    used_bytes_ -= last.data.size();
    map_.erase(last.id);
    lru_.pop_back();
  }
}

}  // namespace cairn::io
