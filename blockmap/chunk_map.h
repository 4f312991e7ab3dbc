// ChunkMap: a volume's map from chunk index to ChunkId, paged through a bounded cache.
//
// Layout (docs/volumes.md, "The chunk map"): leaf pages of 4 KiB hold 256 ids each; the
// directory holds one PageRef per leaf page and is stored as 4 KiB directory chunks of 128
// refs, which a MapRoot lists. Pages and directory chunks are ordinary chunks in the
// ChunkStore, so map pages dedup like data and snapshots later share them. A page or
// directory chunk with nothing mapped is a null ref and stores nothing.
//
// RAM: at most max_cached_pages() leaf pages (4 KiB plus ~128 bytes of bookkeeping each) are
// held, chosen LRU. The directory stays in RAM but is sparse: a directory chunk exists only
// where something was mapped (4 KiB per 128 leaf pages, i.e. 1/8 byte per chunk of the
// written span of the volume). A dirty page leaving the cache is written to the store first.
//
// Reference counts: the map takes no references on data ids: set() hands back the id it
// replaced and the caller decides when to drop it. Page and directory chunks are the map's own:
// each write of one takes a reference (store put), and every ref it replaces is collected in
// released(), to be dropped by the caller only once a root that no longer names it is durable.
//
// Threading: one thread (the volume's reactor). Operations interleave at suspension points;
// get() on a cached page never suspends, and everything that changes pages or the directory
// is serialized by an internal lock. The store must outlive the map.
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <vector>

#include "base/asio.h"
#include "base/result.h"
#include "blockmap/map_root.h"
#include "blockmap/range_lock.h"
#include "io/chunk_store.h"

namespace cairn::blockmap {

class ChunkMap {
 public:
  static constexpr std::size_t kPageBytes = 4096;
  static constexpr std::size_t kIdsPerPage = kPageBytes / sizeof(io::ChunkId);
  static constexpr std::size_t kRefsPerDirChunk = kPageBytes / sizeof(PageRef);
  // Bookkeeping per cached page beyond its 4 KiB: hash node, LRU node, allocation headers.
  static constexpr std::size_t kPageOverheadBytes = 128;
  static constexpr std::size_t kMinCachedPages = 4;

  struct Stats {
    uint64_t cached_pages = 0;
    uint64_t max_cached_pages = 0;
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t evictions = 0;
    uint64_t page_writes = 0;  // leaf pages and directory chunks written to the store
  };

  // The state a new root records, and the map chunks that root no longer names.
  struct Checkpoint {
    std::vector<DirChunkRef> dir_chunks;
    uint64_t chunk_count = 0;
    uint64_t mapped_chunks = 0;
    std::vector<io::ChunkId> released;
  };

  // An empty map of `chunk_count` holes whose cache holds about `cache_bytes`.
  ChunkMap(io::ChunkStore& store, uint64_t cache_bytes, uint64_t chunk_count);
  ChunkMap(const ChunkMap&) = delete;
  ChunkMap& operator=(const ChunkMap&) = delete;

  // Replaces the map's state with the one `root` names (reads its directory chunks).
  Task<Result<void>> load(const MapRoot& root);

  [[nodiscard]] uint64_t chunk_count() const noexcept { return chunk_count_; }
  [[nodiscard]] uint64_t mapped_chunks() const noexcept { return mapped_; }
  [[nodiscard]] std::size_t max_cached_pages() const noexcept { return max_pages_; }
  [[nodiscard]] std::size_t released_count() const noexcept { return released_.size(); }
  [[nodiscard]] Stats stats() const noexcept;

  // The id at `index` (null: a hole). index < chunk_count().
  Task<Result<io::ChunkId>> get(uint64_t index);
  // How many chunks from `index` on are certainly holes, known without I/O (0: unknown or
  // mapped; ask get()). Lets block_status skip unwritten spans of a huge volume at once.
  [[nodiscard]] uint64_t holes_from(uint64_t index) const noexcept;
  // Sets the id at `index` and returns the one it replaced.
  Task<Result<io::ChunkId>> set(uint64_t index, io::ChunkId id);
  // Grows with holes or shrinks; appends the non-null ids dropped past the new end to `dropped`.
  Task<Result<void>> resize(uint64_t chunk_count, std::vector<io::ChunkId>& dropped);
  // Writes every dirty page and directory chunk to the store (not flushed) and returns the
  // state for a new root, handing over released().
  Task<Result<Checkpoint>> checkpoint();

 private:
  struct Page {
    std::array<io::ChunkId, kIdsPerPage> ids{};
    bool dirty = false;
    std::list<uint64_t>::iterator lru;
  };

  struct DirChunk {
    PageRef stored;  // where this directory chunk is in the store (null: not yet written)
    std::unique_ptr<std::array<PageRef, kRefsPerDirChunk>> refs;
    bool dirty = false;
  };

  [[nodiscard]] uint64_t page_count() const noexcept;
  [[nodiscard]] PageRef page_ref(uint64_t page_no) const noexcept;
  Task<Result<Page*>> page(uint64_t page_no);
  Task<Result<void>> read_page(const PageRef& ref, std::span<std::byte, kPageBytes> out);
  Task<Result<void>> evict_to_bound();
  Task<Result<void>> write_pages(std::span<const uint64_t> page_nos);
  Task<Result<void>> write_dir_chunks();
  Task<Result<void>> drop_page(uint64_t page_no, std::vector<io::ChunkId>& dropped);
  void set_ref(uint64_t page_no, const PageRef& ref);
  void replace(PageRef& slot, const PageRef& ref);

  io::ChunkStore& store_;
  std::size_t max_pages_;
  uint64_t chunk_count_ = 0;
  uint64_t mapped_ = 0;
  std::map<uint64_t, DirChunk> dir_;                 // directory chunks by index; absent: all null
  std::map<uint64_t, std::unique_ptr<Page>> pages_;  // ordered, for holes_from()
  std::list<uint64_t> lru_;                          // most recently used first
  std::vector<io::ChunkId> released_;
  RangeLock lock_;  // used as a mutex: serializes changes to pages and directory
  Stats stats_;
};

}  // namespace cairn::blockmap
