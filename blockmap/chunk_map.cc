#include "blockmap/chunk_map.h"

#include <algorithm>
#include <cstring>

#include "base/assert.h"
#include "base/log.h"
#include "blockmap/errors.h"

namespace cairn::blockmap {
namespace {

constexpr std::size_t kMaxPagesPerPut = 64;

uint64_t div_up(uint64_t a, uint64_t b) noexcept {
  return a / b + (a % b != 0 ? 1 : 0);
}

std::error_code store_failed(std::error_code ec, const char* what) {
  CAIRN_LOG(error, "chunk-map", "{}: {}", what, ec.message());
  return make_error_code(errc::io_error);
}

template <class T, std::size_t N>
bool all_null(const std::array<T, N>& items) noexcept {
  return std::all_of(items.begin(), items.end(), [](const T& x) { return x.is_null(); });
}

}  // namespace

ChunkMap::ChunkMap(io::ChunkStore& store, uint64_t cache_bytes, uint64_t chunk_count)
    : store_(store),
      max_pages_(
          std::max<std::size_t>(kMinCachedPages, cache_bytes / (kPageBytes + kPageOverheadBytes))),
      chunk_count_(chunk_count) {
  stats_.max_cached_pages = max_pages_;
}

uint64_t ChunkMap::page_count() const noexcept {
  return div_up(chunk_count_, kIdsPerPage);
}

PageRef ChunkMap::page_ref(uint64_t page_no) const noexcept {
  auto it = dir_.find(page_no / kRefsPerDirChunk);
  if (it == dir_.end()) {
    return PageRef{};
  }
  return (*it->second.refs)[page_no % kRefsPerDirChunk];
}

ChunkMap::Stats ChunkMap::stats() const noexcept {
  Stats s = stats_;
  s.cached_pages = pages_.size();
  return s;
}

Task<Result<void>> ChunkMap::read_page(const PageRef& ref, std::span<std::byte, kPageBytes> out) {
  CAIRN_ASSERT(!ref.is_null());
  if (auto r = co_await store_.get(ref.id, out); !r) {
    co_return store_failed(r.error(), "cannot read a map page");
  }
  if (page_hash(out) != ref.hash) {
    CAIRN_LOG(error, "chunk-map", "map page {} fails its BLAKE2b hash", ref.id.to_hex());
    co_return make_error_code(errc::io_error);
  }
  co_return Result<void>{};
}

Task<Result<void>> ChunkMap::load(const MapRoot& root) {
  auto guard = co_await lock_.lock(0, 0, RangeLock::Mode::exclusive);
  uint64_t dir_count = div_up(div_up(root.chunk_count, kIdsPerPage), kRefsPerDirChunk);
  pages_.clear();
  lru_.clear();
  released_.clear();
  dir_.clear();
  chunk_count_ = root.chunk_count;
  mapped_ = root.mapped_chunks;
  for (const DirChunkRef& d : root.dir_chunks) {
    if (d.index >= dir_count || d.ref.is_null() || dir_.contains(d.index)) {
      CAIRN_LOG(error, "chunk-map", "the root names a bad directory chunk {}", d.index);
      co_return make_error_code(errc::io_error);
    }
    auto refs = std::make_unique<std::array<PageRef, kRefsPerDirChunk>>();
    auto bytes = std::as_writable_bytes(std::span(*refs));
    if (auto r = co_await read_page(d.ref, bytes.first<kPageBytes>()); !r) {
      co_return r;
    }
    dir_.emplace(d.index, DirChunk{d.ref, std::move(refs), false});
  }
  co_return Result<void>{};
}

// Holds lock_. The page stays valid until the caller's next suspension point.
Task<Result<ChunkMap::Page*>> ChunkMap::page(uint64_t page_no) {
  CAIRN_ASSERT(page_no < page_count());
  if (auto it = pages_.find(page_no); it != pages_.end()) {
    stats_.hits++;
    lru_.splice(lru_.begin(), lru_, it->second->lru);
    co_return it->second.get();
  }
  stats_.misses++;
  auto fresh = std::make_unique<Page>();
  if (PageRef ref = page_ref(page_no); !ref.is_null()) {
    auto bytes = std::as_writable_bytes(std::span(fresh->ids));
    if (auto r = co_await read_page(ref, bytes.first<kPageBytes>()); !r) {
      co_return r.error();
    }
  }
  lru_.push_front(page_no);
  fresh->lru = lru_.begin();
  Page* p = fresh.get();
  pages_.emplace(page_no, std::move(fresh));
  if (auto r = co_await evict_to_bound(); !r) {
    co_return r.error();
  }
  CAIRN_ASSERT(pages_.contains(page_no));  // the newest page is never the LRU victim
  co_return p;
}

Task<Result<void>> ChunkMap::evict_to_bound() {
  while (pages_.size() > max_pages_) {
    uint64_t victim = lru_.back();
    if (pages_.at(victim)->dirty) {
      const uint64_t one[1] = {victim};
      if (auto r = co_await write_pages(one); !r) {
        co_return r;
      }
    }
    // A get() during the write may have touched the victim; it is clean now either way.
    auto it = pages_.find(victim);
    lru_.erase(it->second->lru);
    pages_.erase(it);
    stats_.evictions++;
  }
  co_return Result<void>{};
}

void ChunkMap::replace(PageRef& slot, const PageRef& ref) {
  if (!slot.is_null()) {
    released_.push_back(slot.id);
  }
  slot = ref;
}

void ChunkMap::set_ref(uint64_t page_no, const PageRef& ref) {
  uint64_t index = page_no / kRefsPerDirChunk;
  auto it = dir_.find(index);
  if (it == dir_.end()) {
    if (ref.is_null()) {
      return;  // already null
    }
    auto refs = std::make_unique<std::array<PageRef, kRefsPerDirChunk>>();
    it = dir_.emplace(index, DirChunk{PageRef{}, std::move(refs), false}).first;
  }
  DirChunk& d = it->second;
  replace((*d.refs)[page_no % kRefsPerDirChunk], ref);
  d.dirty = true;
}

// Holds lock_. Writes the named cached pages (all null pages become null refs) in batches.
Task<Result<void>> ChunkMap::write_pages(std::span<const uint64_t> page_nos) {
  std::vector<uint64_t> batch;
  std::vector<std::span<const std::byte>> spans;
  std::vector<io::ChunkId> ids;
  for (std::size_t start = 0; start < page_nos.size(); start += kMaxPagesPerPut) {
    batch.clear();
    spans.clear();
    for (std::size_t i = start; i < std::min(page_nos.size(), start + kMaxPagesPerPut); ++i) {
      Page& p = *pages_.at(page_nos[i]);
      if (all_null(p.ids)) {
        set_ref(page_nos[i], PageRef{});
        p.dirty = false;
        continue;
      }
      batch.push_back(page_nos[i]);
      spans.push_back(std::as_bytes(std::span(p.ids)));
    }
    ids.assign(batch.size(), io::ChunkId{});
    if (!batch.empty()) {
      if (auto r = co_await store_.put(spans, ids); !r) {
        co_return store_failed(r.error(), "cannot write a map page");
      }
    }
    // Pages cannot change while lock_ is held, so the bytes written are the bytes cached.
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Page& p = *pages_.at(batch[i]);
      set_ref(batch[i], PageRef{ids[i], page_hash(std::as_bytes(std::span(p.ids)))});
      p.dirty = false;
      stats_.page_writes++;
    }
  }
  co_return Result<void>{};
}

// Holds lock_. Directory chunks that became all null are dropped from the directory.
Task<Result<void>> ChunkMap::write_dir_chunks() {
  std::vector<uint64_t> batch;
  for (auto it = dir_.begin(); it != dir_.end();) {
    DirChunk& d = it->second;
    if (d.dirty && all_null(*d.refs)) {
      replace(d.stored, PageRef{});
      it = dir_.erase(it);
      continue;
    }
    if (d.dirty) {
      batch.push_back(it->first);
    }
    ++it;
  }
  for (std::size_t start = 0; start < batch.size(); start += kMaxPagesPerPut) {
    std::size_t n = std::min(kMaxPagesPerPut, batch.size() - start);
    std::vector<std::span<const std::byte>> spans;
    for (std::size_t i = start; i < start + n; ++i) {
      spans.push_back(std::as_bytes(std::span(*dir_.at(batch[i]).refs)));
    }
    std::vector<io::ChunkId> ids(n);
    if (auto r = co_await store_.put(spans, ids); !r) {
      co_return store_failed(r.error(), "cannot write a map directory chunk");
    }
    for (std::size_t i = 0; i < n; ++i) {
      DirChunk& d = dir_.at(batch[start + i]);
      replace(d.stored, PageRef{ids[i], page_hash(spans[i])});
      d.dirty = false;
      stats_.page_writes++;
    }
  }
  co_return Result<void>{};
}

uint64_t ChunkMap::holes_from(uint64_t index) const noexcept {
  CAIRN_ASSERT(index < chunk_count_);
  uint64_t page_no = index / kIdsPerPage;
  if (pages_.contains(page_no) || !page_ref(page_no).is_null()) {
    return 0;
  }
  uint64_t next = page_count();  // the next page that may hold something
  if (auto c = pages_.upper_bound(page_no); c != pages_.end()) {
    next = std::min(next, c->first);
  }
  for (auto d = dir_.lower_bound(page_no / kRefsPerDirChunk); d != dir_.end(); ++d) {
    uint64_t base = d->first * kRefsPerDirChunk;
    if (base >= next) {
      break;
    }
    uint64_t k = d->first == page_no / kRefsPerDirChunk ? page_no % kRefsPerDirChunk + 1 : 0;
    for (; k < kRefsPerDirChunk && (*d->second.refs)[k].is_null(); ++k) {
    }
    if (k < kRefsPerDirChunk) {
      next = std::min(next, base + k);
      break;
    }
  }
  return std::min(chunk_count_, next * kIdsPerPage) - index;
}

Task<Result<io::ChunkId>> ChunkMap::get(uint64_t index) {
  CAIRN_ASSERT(index < chunk_count_);
  uint64_t page_no = index / kIdsPerPage;
  if (auto it = pages_.find(page_no); it != pages_.end()) {
    stats_.hits++;
    lru_.splice(lru_.begin(), lru_, it->second->lru);
    co_return it->second->ids[index % kIdsPerPage];
  }
  if (page_ref(page_no).is_null()) {
    co_return io::ChunkId{};  // a page of holes: nothing to load
  }
  auto guard = co_await lock_.lock(0, 0, RangeLock::Mode::exclusive);
  auto p = co_await page(page_no);
  if (!p) {
    co_return p.error();
  }
  co_return (*p)->ids[index % kIdsPerPage];
}

Task<Result<io::ChunkId>> ChunkMap::set(uint64_t index, io::ChunkId id) {
  auto guard = co_await lock_.lock(0, 0, RangeLock::Mode::exclusive);
  CAIRN_ASSERT(index < chunk_count_);
  auto p = co_await page(index / kIdsPerPage);
  if (!p) {
    co_return p.error();
  }
  io::ChunkId& slot = (*p)->ids[index % kIdsPerPage];
  io::ChunkId old = slot;
  slot = id;
  (*p)->dirty = true;
  mapped_ = mapped_ - (old.is_null() ? 0 : 1) + (id.is_null() ? 0 : 1);
  co_return old;
}

// Holds lock_. Drops a whole page past the new end, collecting its ids.
Task<Result<void>> ChunkMap::drop_page(uint64_t page_no, std::vector<io::ChunkId>& dropped) {
  auto ids = std::make_unique<std::array<io::ChunkId, kIdsPerPage>>();
  if (auto it = pages_.find(page_no); it != pages_.end()) {
    *ids = it->second->ids;
    lru_.erase(it->second->lru);
    pages_.erase(it);
  } else if (PageRef ref = page_ref(page_no); !ref.is_null()) {
    auto bytes = std::as_writable_bytes(std::span(*ids));
    if (auto r = co_await read_page(ref, bytes.first<kPageBytes>()); !r) {
      co_return r;
    }
  }
  for (const io::ChunkId& id : *ids) {
    if (!id.is_null()) {
      dropped.push_back(id);
      mapped_--;
    }
  }
  set_ref(page_no, PageRef{});
  co_return Result<void>{};
}

Task<Result<void>> ChunkMap::resize(uint64_t chunk_count, std::vector<io::ChunkId>& dropped) {
  auto guard = co_await lock_.lock(0, 0, RangeLock::Mode::exclusive);
  uint64_t new_pages = div_up(chunk_count, kIdsPerPage);
  // Whole pages past the new end: every cached one and every one the directory names.
  std::vector<uint64_t> doomed;
  for (const auto& [page_no, p] : pages_) {
    if (page_no >= new_pages) {
      doomed.push_back(page_no);
    }
  }
  for (auto it = dir_.lower_bound(new_pages / kRefsPerDirChunk); it != dir_.end(); ++it) {
    for (uint64_t k = 0; k < kRefsPerDirChunk; ++k) {
      uint64_t page_no = it->first * kRefsPerDirChunk + k;
      if (page_no >= new_pages && !(*it->second.refs)[k].is_null() && !pages_.contains(page_no)) {
        doomed.push_back(page_no);
      }
    }
  }
  for (uint64_t page_no : doomed) {
    if (auto r = co_await drop_page(page_no, dropped); !r) {
      co_return r;
    }
  }
  if (chunk_count < chunk_count_ && chunk_count % kIdsPerPage != 0) {
    auto p = co_await page(new_pages - 1);
    if (!p) {
      co_return p.error();
    }
    for (std::size_t i = chunk_count % kIdsPerPage; i < kIdsPerPage; ++i) {
      io::ChunkId& slot = (*p)->ids[i];
      if (!slot.is_null()) {
        dropped.push_back(slot);
        slot = io::ChunkId{};
        mapped_--;
        (*p)->dirty = true;
      }
    }
  }
  // Directory chunks wholly past the end go; the next checkpoint drops their stored copies.
  for (auto it = dir_.lower_bound(div_up(new_pages, kRefsPerDirChunk)); it != dir_.end();) {
    replace(it->second.stored, PageRef{});
    it = dir_.erase(it);
  }
  chunk_count_ = chunk_count;
  co_return Result<void>{};
}

Task<Result<ChunkMap::Checkpoint>> ChunkMap::checkpoint() {
  auto guard = co_await lock_.lock(0, 0, RangeLock::Mode::exclusive);
  std::vector<uint64_t> dirty;
  for (const auto& [page_no, p] : pages_) {
    if (p->dirty) {
      dirty.push_back(page_no);
    }
  }
  std::sort(dirty.begin(), dirty.end());  // neighbouring pages land together on disk
  if (auto r = co_await write_pages(dirty); !r) {
    co_return r.error();
  }
  if (auto r = co_await write_dir_chunks(); !r) {
    co_return r.error();
  }
  Checkpoint c;
  for (const auto& [index, d] : dir_) {
    CAIRN_ASSERT(!d.stored.is_null() && !d.dirty);
    c.dir_chunks.push_back(DirChunkRef{index, 0, d.stored});
  }
  c.chunk_count = chunk_count_;
  c.mapped_chunks = mapped_;
  c.released = std::move(released_);
  released_.clear();
  co_return c;
}

}  // namespace cairn::blockmap
