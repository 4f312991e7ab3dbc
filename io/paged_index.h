// PagedIndex: the chunk store's index (chunk id -> IndexEntry) as an on-disk hash table of
// 4 KiB bucket pages, paged through a CLOCK cache whose size is bounded by a budget. Format and
// crash argument: docs/on-disk-format.md, "Index table".
//
// Every logical page (a bucket, or an overflow page chained from one) has two 4 KiB slots in
// the file. checkpoint() writes each dirty page, stamped with the next checkpoint sequence
// number, into the slot that does NOT hold its newest durable version, then syncs the file.
// The owner journals "checkpoint N complete" after that; until it does, recovery ignores the
// new versions (a page is read as the newest valid slot with seq <= the last complete
// checkpoint), so a torn page write or a crash in the middle of a checkpoint never destroys
// the previous checkpoint's version. Changes made between checkpoints are in dirty pages
// (cached, or written back as below), which count for nothing durable until the checkpoint
// completes; the owner's journal makes them durable, and replaying it after the last complete
// checkpoint restores them.
//
// RAM: cached_bytes() counts every cached page at a fixed cost (kPageCostBytes, the page's
// decoded size at full capacity plus bookkeeping). Whenever an operation ends above the
// budget, clean pages are evicted, least recently used first (CLOCK: the oldest page not used
// since eviction last passed it), and then dirty ones are written
// back: stamped with the coming checkpoint's number, into the slot that checkpoint would use
// (no sync). Recovery ignores them until the journal names that checkpoint complete; in
// memory, a page read back takes such a version as its contents. Before scan() has erased the
// versions of an unfinished checkpoint (while the owner replays its journal), dirty pages are
// pinned instead.
//
// Threading: one thread (the store's owner). Operations serialize on an internal AsyncMutex,
// so they may be called concurrently from coroutines of that thread. The BlockFile is
// borrowed and must outlive the index.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/asio.h"
#include "base/result.h"
#include "io/aligned_buffer.h"
#include "io/async_mutex.h"
#include "io/block_file.h"
#include "io/chunk_id.h"
#include "io/index_page.h"

namespace cairn::io {

class PagedIndex {
 public:
  static constexpr uint64_t kSlotBytes = IndexPage::kBytes;
  static constexpr uint64_t kTableStartBytes = 4096;  // block 0: the table header
  // Pages a checkpoint writes at once (256 KiB of buffer).
  static constexpr std::size_t kCheckpointBatchPages = 64;

  struct Options {
    uint64_t buckets = 1024;  // used when the file is new (all zero); else the header's
    uint64_t cache_bytes = 8ull << 20;
  };
  // The durable state named by the owner's journal at the last complete checkpoint.
  struct Checkpoint {
    uint64_t seq = 0;             // 0: none yet (every page reads as empty)
    uint64_t overflow_pages = 0;  // overflow pages allocated as of that checkpoint
  };
  using Visitor = std::function<void(const ChunkId&, const IndexEntry&)>;

  // Opens the table in `file` (formatting an all-zero file) as of checkpoint `last`.
  static Task<Result<std::unique_ptr<PagedIndex>>> open(BlockFile& file, Options options,
                                                        Checkpoint last);

  Task<Result<std::optional<IndexEntry>>> find(ChunkId id);
  // find() of every id (out[i] for ids[i], ids.size() == out.size()) under one acquisition
  // of the mutex, so a batch read waits for it once, not once per chunk.
  Task<Result<void>> find_many(std::span<const ChunkId> ids,
                               std::span<std::optional<IndexEntry>> out);
  // Inserts or replaces the entry of `id`.
  Task<Result<void>> put(ChunkId id, IndexEntry entry);
  // Removes `id`; false if it was not there.
  Task<Result<bool>> erase(ChunkId id);
  // put() and erase() without suspending, for the common case: no operation holds the mutex,
  // the id's whole chain is cached, the cache is within its budget, and (for a put) the id is
  // in the chain or a page of it has room. Return false (put) or std::nullopt (erase), having
  // changed nothing, when they cannot; put() and erase() try them first. A batch of changes
  // to cached pages then costs no coroutine frame per change.
  bool put_cached(const ChunkId& id, const IndexEntry& entry);
  std::optional<bool> erase_cached(const ChunkId& id);
  // Starts bringing the cached pages of the ids' buckets into the CPU's cache, without
  // waiting: the lookups that follow then take their memory latency together, not one id
  // after another (a lookup of a random bucket otherwise waits for DRAM two or three times).
  // At most kPrefetchBatch ids are used, so that the pages still fit in the L1 data cache;
  // batch loops call it once per group. Changes nothing.
  static constexpr std::size_t kPrefetchBatch = 32;
  void prefetch(std::span<const ChunkId> ids) const noexcept;
  // Writes every dirty page (new checkpoint sequence number) and syncs the file. The owner
  // journals the returned state; pages become evictable.
  Task<Result<Checkpoint>> checkpoint();
  // Visits every entry once (pages are streamed, not cached), and erases page versions left
  // by a checkpoint that never completed, so that a later checkpoint with the same sequence
  // number cannot make them current. Call after replaying the journal, before checkpoint().
  Task<Result<void>> scan(const Visitor& visit);
  // Puts every entry into `to` (a table being built to replace this one; growing the table),
  // bucket by bucket, each bucket's chain in order. When to.buckets() is a multiple of
  // buckets(), the entries of bucket b land in buckets b, b + buckets(), ..., so `to` fills
  // its pages in order and its eviction writes them back in order. Call after scan(), with no
  // dirty page (right after checkpoint()). This index's cached pages are dropped first, so
  // the copy holds `to`'s budget plus one page pair of RAM; this index stays usable.
  Task<Result<void>> copy_to(PagedIndex& to);

  [[nodiscard]] uint64_t buckets() const noexcept { return buckets_; }
  [[nodiscard]] uint64_t overflow_pages() const noexcept { return overflow_pages_; }
  [[nodiscard]] uint64_t cached_bytes() const noexcept { return cached_pages_ * kPageCostBytes; }
  [[nodiscard]] uint64_t dirty_bytes() const noexcept { return dirty_ * kPageCostBytes; }
  [[nodiscard]] uint64_t budget_bytes() const noexcept { return budget_bytes_; }
  [[nodiscard]] uint64_t page_reads() const noexcept { return page_reads_; }
  [[nodiscard]] uint64_t bucket_of(const ChunkId& id) const noexcept;

 private:
  struct Cached {
    IndexPage page;
    // tags[i] == tag_of(page.items[i].id), changed only with the items (add, remove_at,
    // reindex). A lookup compares 16 tags at a time and reads only the items whose tag
    // matches (1 in 256 of the others): a full page costs 2 cache lines of tags and about
    // one item, not a scan of 100 items (63 cache lines) or of 100 8-byte keys (13).
    static constexpr std::size_t kTagLanes = 16;
    static constexpr std::size_t kTagCapacity =
        (IndexPage::kCapacity + kTagLanes - 1) / kTagLanes * kTagLanes;
    alignas(kTagLanes) std::array<uint8_t, kTagCapacity> tags{};
    int current_slot = -1;  // the slot of the newest version of a complete checkpoint; -1: none
    bool dirty = false;
    // Used since eviction last passed it (CLOCK): a lookup sets it, eviction clears it, and
    // no lookup moves list nodes (splicing on every access cost two cache misses a lookup).
    bool referenced = false;
    std::list<uint64_t>::iterator lru;  // in lru_ when clean, in dirty_lru_ when dirty

    // The position of `id` in page.items, or -1.
    [[nodiscard]] std::ptrdiff_t index_of(const ChunkId& id) const noexcept;
    // The first position whose tag is `tag` and that accept(position) takes, or -1.
    template <class Visit>
    std::ptrdiff_t first_tag_match(uint8_t tag, Visit&& accept) const noexcept;
    [[nodiscard]] static uint8_t tag_of(const ChunkId& id) noexcept;
    void add(const ChunkId& id, const IndexEntry& entry);
    void remove_at(std::size_t i);  // moves the last item into i
    void reindex();                 // after page.items was replaced wholesale
  };

 public:
  static constexpr uint64_t kPageCostBytes =
      sizeof(Cached) + IndexPage::kCapacity * sizeof(IndexPage::Item) + 64;

 private:
  PagedIndex(BlockFile& file, uint64_t buckets, uint64_t cache_bytes, Checkpoint last);

  Task<Result<Cached*>> load(uint64_t page_no);
  struct Found {
    Cached* page = nullptr;  // holding the id, or null
    std::size_t at = 0;
    Cached* room = nullptr;  // first page of the chain with a free item
    Cached* last = nullptr;  // end of the chain
  };
  Task<Result<Found>> locate(const ChunkId& id);
  // locate() without suspending: when no operation holds the mutex (so no chain is half
  // changed) and the id's whole chain is cached; std::nullopt when it cannot.
  std::optional<Found> locate_cached(const ChunkId& id);
  // find() the same way.
  std::optional<std::optional<IndexEntry>> find_cached(const ChunkId& id);
  // Writes `entry` for `id` into the chain `f` found: over its item, or into the first page
  // with room. False, changing nothing, when the chain is full.
  bool place(const Found& f, const ChunkId& id, const IndexEntry& entry);
  void mark_dirty(Cached& c);
  Task<Result<void>> evict();
  // evict()'s CLOCK step on the back of `list`: true if that page was passed over.
  bool second_chance(std::list<uint64_t>& list);
  Task<Result<void>> write_back(Cached& c);
  [[nodiscard]] uint64_t slot_offset(uint64_t page_no, int slot) const noexcept;
  [[nodiscard]] uint64_t logical_pages() const noexcept { return buckets_ + overflow_pages_; }
  // Chooses the version of `page_no` in a pair of slots (2 * kSlotBytes).
  // `pending`: also take a version written back for the coming checkpoint as the contents.
  Result<void> choose(std::span<const std::byte> pair, uint64_t page_no, IndexPage& page, int& slot,
                      bool pending) const;

  BlockFile& file_;
  uint64_t buckets_;
  uint64_t budget_bytes_;
  uint64_t complete_seq_;
  uint64_t overflow_pages_;
  uint64_t dirty_ = 0;
  uint64_t page_reads_ = 0;
  AsyncMutex mutex_;
  // Cached pages by page number (null: not cached). Grown to the highest page loaded, so it
  // costs 8 bytes per table page outside the budget (0.003% of the data capacity); in
  // return a chain step is an array index, not a hash-table probe.
  std::vector<std::unique_ptr<Cached>> pages_;
  uint64_t cached_pages_ = 0;
  [[nodiscard]] Cached* cached(uint64_t page_no) const noexcept {
    return page_no < pages_.size() ? pages_[page_no].get() : nullptr;
  }
  void insert_cached(uint64_t page_no, std::unique_ptr<Cached> c);
  void drop_cached(uint64_t page_no);
  std::list<uint64_t> lru_;        // clean pages; front: most recently used
  std::list<uint64_t> dirty_lru_;  // dirty pages; front: most recently used
  bool repaired_ = false;          // scan() ran: pages may be written back before a checkpoint
  AlignedBuffer io_;               // one page pair
};

}  // namespace cairn::io
