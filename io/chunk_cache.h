// ChunkCache: the chunk store's bounded read cache, keyed by chunk id. Because it is keyed by
// id, a deduplicated chunk is cached once however many volumes refer to it. The budget counts
// chunk bytes (not the per-entry bookkeeping).
//
// Layout: entries live in one array of slots. An open-addressing table (linear probing; an
// erase shifts the entries after it back, so there are no tombstones) maps an id to its slot
// and keeps 32 bits of the id's hash beside the slot number, so a probe reads an entry only on
// a likely match: a lookup costs about one cache line of table and one entry, and a miss
// (every dropped chunk that was not cached) usually the table line alone. Node-based maps and
// an LRU list cost two or three dependent cache misses per lookup plus a list splice per hit.
//
// Eviction is CLOCK (second chance), an approximation of least recently used: find() marks
// the entry; the hand sweeps the slots, clearing marks, and evicts the first unmarked entry.
//
// Memory: a slot whose entry leaves (evicted or erased) keeps its buffer as a spare, and the
// next insert of the same size takes it, so a cache in steady state (inserts balanced by
// evictions or by erases of dropped chunks) allocates nothing. Cached plus spare bytes stay
// within the budget; spare buffers are freed first. The table grows (doubling) only while the
// number of entries reaches a new high.
//
// Threading: one thread at a time (the store serializes calls with its own mutex). Lookups
// return a pointer valid until the next non-const call.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "io/chunk_id.h"

namespace cairn::io {

class ChunkCache {
 public:
  explicit ChunkCache(uint64_t budget_bytes);

  // The cached bytes of `id`, or nullptr. Marks the entry recently used.
  [[nodiscard]] const std::vector<std::byte>* find(const ChunkId& id);
  void insert(const ChunkId& id, std::span<const std::byte> data);
  void erase(const ChunkId& id);
  // The same as insert() of each (ids[i], datas[i]) and erase() of each id in turn, with the
  // table bucket (and, for an erase, the entry) of the ids a few places ahead prefetched: a
  // large put's or drop's chunks are scattered over a table of megabytes, and overlapping
  // their cache misses beats taking them one after another.
  void insert_many(std::span<const ChunkId> ids, std::span<const std::span<const std::byte>> datas);
  void erase_many(std::span<const ChunkId> ids);

  // Whether `bytes` more fit without evicting anything.
  [[nodiscard]] bool has_room(uint64_t bytes) const noexcept {
    return used_bytes_ + bytes <= budget_bytes_;
  }
  [[nodiscard]] uint64_t used_bytes() const noexcept { return used_bytes_; }
  [[nodiscard]] uint64_t spare_bytes() const noexcept { return spare_bytes_; }
  [[nodiscard]] std::size_t entries() const noexcept { return live_; }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Bucket {
    uint32_t tag = 0;  // the low 32 bits of the id's hash; its home bucket is tag & mask_
    uint32_t slot = kNone;
  };
  struct Slot {
    ChunkId id;
    std::vector<std::byte> data;  // the entry's bytes, or a spare buffer when !live
    bool live = false;
    bool marked = false;  // found since the hand last passed
  };

  [[nodiscard]] static uint32_t tag_of(const ChunkId& id) noexcept {
    return static_cast<uint32_t>(ChunkIdHash{}(id));
  }
  // How many ids ahead the batch forms prefetch a bucket; entries are prefetched half as far.
  static constexpr std::size_t kPrefetchAhead = 8;

  // The bucket holding `id`, or kNone.
  [[nodiscard]] uint32_t locate(const ChunkId& id) const noexcept;
  void prefetch_bucket(const ChunkId& id) const noexcept;
  // The entry in `id`'s home bucket, when its tag matches (the common case for a cached id).
  void prefetch_entry(const ChunkId& id) const noexcept;
  void link(uint32_t tag, uint32_t slot);
  void unlink(uint32_t bucket) noexcept;  // backward-shift deletion
  void grow_table();
  // Removes the entry of `bucket`; its slot keeps the buffer as a spare.
  void retire(uint32_t bucket) noexcept;
  void evict_to(uint64_t budget) noexcept;
  // A slot with a buffer of `size` bytes for a new entry, freeing spare buffers of other
  // sizes while cached plus spare bytes would pass the budget.
  uint32_t take_slot(std::size_t size);

  uint64_t budget_bytes_;
  uint64_t used_bytes_ = 0;
  uint64_t spare_bytes_ = 0;
  std::size_t live_ = 0;
  std::vector<Bucket> table_;  // a power of two long, at most half full
  uint32_t mask_ = 0;
  std::vector<Slot> slots_;
  std::vector<uint32_t> spare_;       // free slots with a buffer; back: most recently freed
  std::vector<uint32_t> bufferless_;  // free slots whose buffer was freed
  std::size_t hand_ = 0;
};

}  // namespace cairn::io
