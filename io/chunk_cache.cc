#include "io/chunk_cache.h"

#include <algorithm>
#include <cstring>

#include "base/assert.h"

namespace cairn::io {

ChunkCache::ChunkCache(uint64_t budget_bytes) : budget_bytes_(budget_bytes) {
  // Room for a budget's worth of 4 KiB chunks up front (capped): no growth while it fills.
  const auto expected = static_cast<std::size_t>(std::min<uint64_t>(budget_bytes / 4096, 1u << 20));
  std::size_t buckets = 16;
  while (buckets < 2 * expected) {
    buckets *= 2;
  }
  table_.resize(buckets);
  mask_ = static_cast<uint32_t>(buckets - 1);
  slots_.reserve(expected);
}

const std::vector<std::byte>* ChunkCache::find(const ChunkId& id) {
  uint32_t b = locate(id);
  if (b == kNone) {
    return nullptr;
  }
  Slot& s = slots_[table_[b].slot];
  s.marked = true;
  return &s.data;
}

void ChunkCache::insert(const ChunkId& id, std::span<const std::byte> data) {
  if (data.size() > budget_bytes_) {
    return;
  }
  if (uint32_t b = locate(id); b != kNone) {
    Slot& s = slots_[table_[b].slot];
    if (s.data.size() == data.size()) {  // the same chunk again: refresh in place
      std::memcpy(s.data.data(), data.data(), data.size());
      s.marked = true;
      return;
    }
    retire(b);
  }
  evict_to(budget_bytes_ - data.size());
  uint32_t slot = take_slot(data.size());
  Slot& s = slots_[slot];
  std::memcpy(s.data.data(), data.data(), data.size());
  s.id = id;
  s.marked = false;
  if ((live_ + 1) * 2 > table_.size()) {
    grow_table();
  }
  s.live = true;
  ++live_;
  used_bytes_ += data.size();
  link(tag_of(id), slot);
}

void ChunkCache::erase(const ChunkId& id) {
  if (uint32_t b = locate(id); b != kNone) {
    retire(b);
  }
}

void ChunkCache::insert_many(std::span<const ChunkId> ids,
                             std::span<const std::span<const std::byte>> datas) {
  CAIRN_ASSERT(ids.size() == datas.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i + kPrefetchAhead < ids.size()) {
      prefetch_bucket(ids[i + kPrefetchAhead]);
    }
    insert(ids[i], datas[i]);
  }
}

void ChunkCache::erase_many(std::span<const ChunkId> ids) {
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i + kPrefetchAhead < ids.size()) {
      prefetch_bucket(ids[i + kPrefetchAhead]);
    }
    if (i + kPrefetchAhead / 2 < ids.size()) {
      prefetch_entry(ids[i + kPrefetchAhead / 2]);
    }
    erase(ids[i]);
  }
}

void ChunkCache::prefetch_bucket(const ChunkId& id) const noexcept {
  __builtin_prefetch(&table_[tag_of(id) & mask_]);
}

void ChunkCache::prefetch_entry(const ChunkId& id) const noexcept {
  const uint32_t tag = tag_of(id);
  const Bucket& b = table_[tag & mask_];
  if (b.slot != kNone && b.tag == tag) {
    __builtin_prefetch(&slots_[b.slot]);
  }
}

uint32_t ChunkCache::locate(const ChunkId& id) const noexcept {
  const uint32_t tag = tag_of(id);
  for (uint32_t i = tag & mask_;; i = (i + 1) & mask_) {
    const Bucket& b = table_[i];
    if (b.slot == kNone) {
      return kNone;  // the table is at most half full: a probe always ends
    }
    if (b.tag == tag && slots_[b.slot].id == id) {
      return i;
    }
  }
}

void ChunkCache::link(uint32_t tag, uint32_t slot) {
  uint32_t i = tag & mask_;
  while (table_[i].slot != kNone) {
    i = (i + 1) & mask_;
  }
  table_[i] = Bucket{tag, slot};
}

// Linear probing without tombstones: after emptying a bucket, each later entry of the same
// run moves back into the hole when its home bucket does not lie between the hole and it, so
// every entry stays reachable from its home by an unbroken probe.
void ChunkCache::unlink(uint32_t bucket) noexcept {
  uint32_t hole = bucket;
  for (uint32_t j = (bucket + 1) & mask_; table_[j].slot != kNone; j = (j + 1) & mask_) {
    uint32_t home = table_[j].tag & mask_;
    if (((j - home) & mask_) >= ((j - hole) & mask_)) {
      table_[hole] = table_[j];
      hole = j;
    }
  }
  table_[hole] = Bucket{};
}

void ChunkCache::grow_table() {
  table_.assign(table_.size() * 2, Bucket{});
  mask_ = static_cast<uint32_t>(table_.size() - 1);
  for (uint32_t slot = 0; slot < slots_.size(); ++slot) {
    if (slots_[slot].live) {
      link(tag_of(slots_[slot].id), slot);
    }
  }
}

void ChunkCache::retire(uint32_t bucket) noexcept {
  uint32_t slot = table_[bucket].slot;
  Slot& s = slots_[slot];
  used_bytes_ -= s.data.size();
  spare_bytes_ += s.data.size();
  s.live = false;
  s.marked = false;
  --live_;
  spare_.push_back(slot);
  unlink(bucket);
}

void ChunkCache::evict_to(uint64_t budget) noexcept {
  while (used_bytes_ > budget && live_ > 0) {
    if (hand_ >= slots_.size()) {
      hand_ = 0;
    }
    Slot& s = slots_[hand_++];
    if (!s.live) {
      continue;
    }
    if (s.marked) {
      s.marked = false;  // a second chance
      continue;
    }
    retire(locate(s.id));
  }
}

uint32_t ChunkCache::take_slot(std::size_t size) {
  uint32_t slot = 0;
  if (!spare_.empty() && slots_[spare_.back()].data.size() == size) {
    slot = spare_.back();
    spare_.pop_back();
    spare_bytes_ -= size;
    return slot;
  }
  while (!spare_.empty() && used_bytes_ + size + spare_bytes_ > budget_bytes_) {
    slot = spare_.back();
    spare_.pop_back();
    spare_bytes_ -= slots_[slot].data.size();
    std::vector<std::byte>().swap(slots_[slot].data);
    bufferless_.push_back(slot);
  }
  if (!spare_.empty()) {
    slot = spare_.back();
    spare_.pop_back();
    spare_bytes_ -= slots_[slot].data.size();
  } else if (!bufferless_.empty()) {
    slot = bufferless_.back();
    bufferless_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  slots_[slot].data.resize(size);
  return slot;
}

}  // namespace cairn::io
