#include "io/paged_index.h"

#include <xxhash.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cstring>

#include "base/assert.h"
#include "base/log.h"
#include "io/errors.h"

namespace cairn::io {
namespace {

constexpr uint32_t kTableMagic = 0x54584943;  // "CIXT"
constexpr uint32_t kTableVersion = 1;
constexpr uint64_t kTableSeed = 0x636169726e2d7462ull;  // "cairn-tb"
constexpr uint64_t kScanBatchPages = 32;
constexpr std::size_t kCacheLineBytes = 64;

// Block 0 of the table file.
struct TableHeader {
  uint32_t magic;
  uint32_t version;
  uint64_t buckets;
  uint64_t page_bytes;
  uint64_t checksum;  // XXH3-64 of the 24 bytes before it
};
static_assert(sizeof(TableHeader) == 32);

uint64_t header_checksum(const TableHeader& h) {
  return XXH3_64bits_withSeed(&h, offsetof(TableHeader, checksum), kTableSeed);
}

uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

PagedIndex::PagedIndex(BlockFile& file, uint64_t buckets, uint64_t cache_bytes, Checkpoint last)
    : file_(file),
      buckets_(buckets),
      budget_bytes_(cache_bytes),
      complete_seq_(last.seq),
      overflow_pages_(last.overflow_pages),
      io_(2 * kSlotBytes) {}

uint64_t PagedIndex::bucket_of(const ChunkId& id) const noexcept {
  // Both words: truncated test addresses keep their entropy in lo, ordinals go into hi.
  return mix(id.lo ^ mix(id.hi + 0x9e3779b97f4a7c15ull)) % buckets_;
}

uint64_t PagedIndex::slot_offset(uint64_t page_no, int slot) const noexcept {
  return kTableStartBytes + page_no * 2 * kSlotBytes + static_cast<uint64_t>(slot) * kSlotBytes;
}

// Both words, mixed: test addresses carry their entropy in lo's low bits, ordinals in hi.
uint8_t PagedIndex::Cached::tag_of(const ChunkId& id) noexcept {
  return static_cast<uint8_t>(((id.lo ^ (id.hi * 0xc2b2ae3d27d4eb4full)) * 0x9e3779b97f4a7c15ull) >>
                              56);
}

template <class Visit>
std::ptrdiff_t PagedIndex::Cached::first_tag_match(uint8_t tag, Visit&& accept) const noexcept {
  const std::size_t n = page.items.size();
#if defined(__SSE2__)
  const __m128i want = _mm_set1_epi8(static_cast<char>(tag));
  for (std::size_t base = 0; base < n; base += kTagLanes) {
    const __m128i lanes = _mm_load_si128(reinterpret_cast<const __m128i*>(tags.data() + base));
    auto hits = static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(lanes, want)));
    if (n - base < kTagLanes) {
      hits &= (1u << (n - base)) - 1;  // lanes past the last item hold stale tags
    }
    while (hits != 0) {
      const std::size_t i = base + static_cast<std::size_t>(__builtin_ctz(hits));
      if (accept(i)) {
        return static_cast<std::ptrdiff_t>(i);
      }
      hits &= hits - 1;
    }
  }
#else
  for (std::size_t i = 0; i < n; ++i) {
    if (tags[i] == tag && accept(i)) {
      return static_cast<std::ptrdiff_t>(i);
    }
  }
#endif
  return -1;
}

std::ptrdiff_t PagedIndex::Cached::index_of(const ChunkId& id) const noexcept {
  return first_tag_match(tag_of(id), [&](std::size_t i) { return page.items[i].id == id; });
}

void PagedIndex::Cached::add(const ChunkId& id, const IndexEntry& entry) {
  CAIRN_ASSERT(page.items.size() < IndexPage::kCapacity);
  tags[page.items.size()] = tag_of(id);
  page.items.push_back({id, entry});
}

void PagedIndex::Cached::remove_at(std::size_t i) {
  page.items[i] = page.items.back();
  tags[i] = tags[page.items.size() - 1];
  page.items.pop_back();
}

void PagedIndex::Cached::reindex() {
  CAIRN_ASSERT(page.items.size() <= IndexPage::kCapacity);
  for (std::size_t i = 0; i < page.items.size(); ++i) {
    tags[i] = tag_of(page.items[i].id);
  }
}

void PagedIndex::insert_cached(uint64_t page_no, std::unique_ptr<Cached> c) {
  if (page_no >= pages_.size()) {
    pages_.resize(std::max<uint64_t>(page_no + 1, logical_pages()));
  }
  CAIRN_ASSERT(pages_[page_no] == nullptr);
  pages_[page_no] = std::move(c);
  ++cached_pages_;
}

void PagedIndex::drop_cached(uint64_t page_no) {
  CAIRN_ASSERT(cached(page_no) != nullptr);
  pages_[page_no].reset();
  --cached_pages_;
}

Task<Result<std::unique_ptr<PagedIndex>>> PagedIndex::open(BlockFile& file, Options options,
                                                           Checkpoint last) {
  if (options.buckets == 0) {
    co_return make_error(errc::invalid_argument);
  }
  if (file.size_bytes() < kTableStartBytes) {
    if (auto r = co_await file.grow(kTableStartBytes); !r) {
      co_return r.error();
    }
  }
  AlignedBuffer block(kTableStartBytes);
  if (auto r = co_await file.read(0, block.span()); !r) {
    co_return r.error();
  }
  TableHeader h{};
  std::memcpy(&h, block.data(), sizeof(h));
  bool zero = std::all_of(block.span().begin(), block.span().end(),
                          [](std::byte b) { return b == std::byte{0}; });
  if (zero) {
    if (last.seq != 0) {
      CAIRN_LOG(error, "io", "index table is empty but the journal names checkpoint {}", last.seq);
      co_return make_error(errc::corrupt);
    }
    h = TableHeader{kTableMagic, kTableVersion, options.buckets, kSlotBytes, 0};
    h.checksum = header_checksum(h);
    std::memcpy(block.data(), &h, sizeof(h));
    if (auto r = co_await file.write(0, block.span()); !r) {
      co_return r.error();
    }
    if (auto r = co_await file.sync(); !r) {
      co_return r.error();
    }
  } else if (h.magic != kTableMagic || h.version != kTableVersion || h.page_bytes != kSlotBytes ||
             h.buckets == 0 || h.checksum != header_checksum(h)) {
    CAIRN_LOG(error, "io", "index table header is not valid");
    co_return make_error(errc::corrupt);
  }
  std::unique_ptr<PagedIndex> index(new PagedIndex(file, h.buckets, options.cache_bytes, last));
  co_return index;
}

Result<void> PagedIndex::choose(std::span<const std::byte> pair, uint64_t page_no, IndexPage& page,
                                int& slot, bool pending) const {
  slot = -1;
  page = IndexPage{};
  page.page_no = page_no;
  bool found = false;
  uint64_t durable_seq = 0;
  uint64_t limit = complete_seq_ + (pending ? 1 : 0);
  for (int s = 0; s < 2; ++s) {
    IndexPage candidate;
    auto d = IndexPage::decode(pair.subspan(static_cast<std::size_t>(s) * kSlotBytes, kSlotBytes),
                               page_no, candidate);
    if (d != IndexPage::Decoded::ok || candidate.seq > limit) {
      continue;
    }
    if (candidate.seq <= complete_seq_ && (slot < 0 || candidate.seq > durable_seq)) {
      slot = s;  // the durable version: the next write goes to the other slot
      durable_seq = candidate.seq;
    }
    if (!found || candidate.seq > page.seq) {
      page = std::move(candidate);
      found = true;
    }
  }
  // An overflow page below the journalled count was linked, and so written, by a complete
  // checkpoint: having no version at all is damage, not an empty page.
  if (!found && page_no >= buckets_ && page_no < buckets_ + overflow_pages_) {
    CAIRN_LOG(error, "io", "index overflow page {} has no valid version", page_no);
    return make_error(errc::corrupt);
  }
  return {};
}

Task<Result<PagedIndex::Cached*>> PagedIndex::load(uint64_t page_no) {
  if (Cached* c = cached(page_no)) {
    c->referenced = true;
    co_return c;
  }
  auto c = std::make_unique<Cached>();
  c->page.page_no = page_no;
  if (slot_offset(page_no, 0) + 2 * kSlotBytes <= file_.size_bytes()) {
    if (auto r = co_await file_.read(slot_offset(page_no, 0), io_.span()); !r) {
      co_return r.error();
    }
    ++page_reads_;
    if (auto r = choose(io_.span(), page_no, c->page, c->current_slot, repaired_); !r) {
      co_return r.error();
    }
  } else if (page_no >= buckets_) {
    co_return make_error(errc::corrupt);  // a link past the end of the file
  }
  c->page.items.reserve(IndexPage::kCapacity);
  c->reindex();
  lru_.push_front(page_no);
  c->lru = lru_.begin();
  Cached* raw = c.get();
  insert_cached(page_no, std::move(c));
  if (raw->page.seq > complete_seq_) {
    // Written back for the coming checkpoint: that checkpoint must write it again (its slot
    // is not yet the durable one), so it is dirty.
    mark_dirty(*raw);
  }
  co_return raw;
}

void PagedIndex::mark_dirty(Cached& c) {
  if (!c.dirty) {
    c.dirty = true;
    lru_.erase(c.lru);
    dirty_lru_.push_front(c.page.page_no);
    c.lru = dirty_lru_.begin();
    ++dirty_;
  }
}

// A page used since it last reached the back of its list is passed over once: moved to the
// front with its mark cleared. Every page is passed over at most once per call, so a call
// moves at most as many pages as there are.
bool PagedIndex::second_chance(std::list<uint64_t>& list) {
  Cached* c = cached(list.back());
  if (!c->referenced) {
    return false;
  }
  c->referenced = false;
  list.splice(list.begin(), list, c->lru);
  return true;
}

Task<Result<void>> PagedIndex::evict() {
  while (cached_bytes() > budget_bytes_ && !lru_.empty()) {
    if (!second_chance(lru_)) {
      drop_cached(lru_.back());
      lru_.pop_back();
    }
  }
  while (cached_bytes() > budget_bytes_ && repaired_ && !dirty_lru_.empty()) {
    if (second_chance(dirty_lru_)) {
      continue;
    }
    uint64_t page_no = dirty_lru_.back();
    if (auto r = co_await write_back(*cached(page_no)); !r) {
      co_return r;
    }
    dirty_lru_.pop_back();
    drop_cached(page_no);
    --dirty_;
  }
  co_return Result<void>{};
}

// Writes a dirty page as part of the coming checkpoint, into the slot that checkpoint would
// use; its durable version stays untouched until the checkpoint completes.
Task<Result<void>> PagedIndex::write_back(Cached& c) {
  uint64_t end = slot_offset(logical_pages(), 0);
  if (end > file_.size_bytes()) {
    if (auto r = co_await file_.grow(end); !r) {
      co_return r;
    }
  }
  c.page.seq = complete_seq_ + 1;
  auto out = io_.span().first(kSlotBytes);
  c.page.encode(out);
  co_return co_await file_.write(slot_offset(c.page.page_no, c.current_slot == 0 ? 1 : 0), out);
}

Task<Result<PagedIndex::Found>> PagedIndex::locate(const ChunkId& id) {
  Found f;
  uint64_t page_no = bucket_of(id);
  for (uint64_t steps = 0;; ++steps) {
    if (steps > logical_pages()) {
      CAIRN_LOG(error, "io", "index chain of bucket {} loops", bucket_of(id));
      co_return make_error(errc::corrupt);
    }
    auto c = co_await load(page_no);
    if (!c) {
      co_return c.error();
    }
    if (std::ptrdiff_t at = (*c)->index_of(id); at >= 0) {
      f.page = *c;
      f.at = static_cast<std::size_t>(at);
      co_return f;
    }
    if (f.room == nullptr && (*c)->page.items.size() < IndexPage::kCapacity) {
      f.room = *c;
    }
    f.last = *c;
    if ((*c)->page.next == 0) {
      co_return f;
    }
    page_no = (*c)->page.next - 1;
    if (page_no < buckets_ || page_no >= logical_pages()) {
      CAIRN_LOG(error, "io", "index page {} links to page {}, not an overflow page",
                (*c)->page.page_no, page_no);
      co_return make_error(errc::corrupt);
    }
  }
}

std::optional<PagedIndex::Found> PagedIndex::locate_cached(const ChunkId& id) {
  if (mutex_.locked()) {
    return std::nullopt;
  }
  Found f;
  uint64_t page_no = bucket_of(id);
  for (uint64_t steps = 0; steps <= logical_pages(); ++steps) {
    Cached* c = cached(page_no);
    if (c == nullptr) {
      return std::nullopt;
    }
    c->referenced = true;
    if (std::ptrdiff_t at = c->index_of(id); at >= 0) {
      f.page = c;
      f.at = static_cast<std::size_t>(at);
      return f;
    }
    if (f.room == nullptr && c->page.items.size() < IndexPage::kCapacity) {
      f.room = c;
    }
    f.last = c;
    if (c->page.next == 0) {
      return f;
    }
    page_no = c->page.next - 1;
    if (page_no < buckets_ || page_no >= logical_pages()) {
      return std::nullopt;  // locate() reports the damage
    }
  }
  return std::nullopt;
}

// Three passes, each of whose loads are independent of each other and so overlap: the slots
// of pages_, then the pages those slots point to, then one item of each page.
void PagedIndex::prefetch(std::span<const ChunkId> ids) const noexcept {
  const std::size_t n = std::min(ids.size(), kPrefetchBatch);
  std::array<uint64_t, kPrefetchBatch> page_nos;
  for (std::size_t i = 0; i < n; ++i) {
    page_nos[i] = bucket_of(ids[i]);
    if (page_nos[i] < pages_.size()) {
      __builtin_prefetch(&pages_[page_nos[i]]);
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (const Cached* c = cached(page_nos[i])) {
      const auto* bytes = reinterpret_cast<const char*>(c);
      for (std::size_t at = 0; at < sizeof(Cached); at += kCacheLineBytes) {
        __builtin_prefetch(bytes + at);
      }
    }
  }
  // Then the item the id's tag points to, if any: the one a lookup will compare (a hit, or
  // for an absent id rarely a tag collision). This pass waits for the pages' lines once.
  for (std::size_t i = 0; i < n; ++i) {
    if (const Cached* c = cached(page_nos[i])) {
      const std::ptrdiff_t at =
          c->first_tag_match(Cached::tag_of(ids[i]), [](std::size_t) { return true; });
      if (at >= 0) {
        __builtin_prefetch(&c->page.items[static_cast<std::size_t>(at)]);
      }
    }
  }
}

std::optional<std::optional<IndexEntry>> PagedIndex::find_cached(const ChunkId& id) {
  auto f = locate_cached(id);
  if (!f) {
    return std::nullopt;
  }
  if (f->page == nullptr) {
    return std::optional<IndexEntry>();
  }
  return std::optional<IndexEntry>(f->page->page.items[f->at].entry);
}

// Neither adds a cached page, so the cache stays within its budget and needs no eviction.
bool PagedIndex::put_cached(const ChunkId& id, const IndexEntry& entry) {
  if (cached_bytes() > budget_bytes_) {
    return false;
  }
  auto f = locate_cached(id);
  return f && place(*f, id, entry);  // false: a new overflow page, which put() links
}

bool PagedIndex::place(const Found& f, const ChunkId& id, const IndexEntry& entry) {
  if (f.page != nullptr) {
    f.page->page.items[f.at].entry = entry;
    mark_dirty(*f.page);
  } else if (f.room != nullptr) {
    f.room->add(id, entry);
    mark_dirty(*f.room);
  } else {
    return false;
  }
  return true;
}

std::optional<bool> PagedIndex::erase_cached(const ChunkId& id) {
  if (cached_bytes() > budget_bytes_) {
    return std::nullopt;
  }
  auto f = locate_cached(id);
  if (!f) {
    return std::nullopt;
  }
  if (f->page == nullptr) {
    return false;
  }
  f->page->remove_at(f->at);
  mark_dirty(*f->page);
  return true;
}

Task<Result<std::optional<IndexEntry>>> PagedIndex::find(ChunkId id) {
  // The common case, a cached chain: no lock, no suspension, no coroutine frames below this.
  if (auto hit = find_cached(id)) {
    co_return *hit;
  }
  auto guard = co_await mutex_.scoped();
  auto f = co_await locate(id);
  std::optional<IndexEntry> out;
  if (f && f->page != nullptr) {
    out = f->page->page.items[f->at].entry;
  }
  auto evicted = co_await evict();
  if (!f) {
    co_return f.error();
  }
  if (!evicted) {
    co_return evicted.error();
  }
  co_return out;
}

Task<Result<void>> PagedIndex::put(ChunkId id, IndexEntry entry) {
  if (put_cached(id, entry)) {
    co_return Result<void>{};
  }
  auto guard = co_await mutex_.scoped();
  auto f = co_await locate(id);
  if (!f) {
    (void)co_await evict();
    co_return f.error();
  }
  if (!place(*f, id, entry)) {
    // The chain is full: link a new overflow page at its end.
    uint64_t page_no = logical_pages();
    ++overflow_pages_;
    auto c = std::make_unique<Cached>();
    c->page.page_no = page_no;
    c->page.items.reserve(IndexPage::kCapacity);
    c->add(id, entry);
    c->dirty = true;
    ++dirty_;
    f->last->page.next = page_no + 1;
    mark_dirty(*f->last);
    dirty_lru_.push_front(page_no);
    c->lru = dirty_lru_.begin();
    insert_cached(page_no, std::move(c));
  }
  co_return co_await evict();
}

Task<Result<bool>> PagedIndex::erase(ChunkId id) {
  if (auto erased = erase_cached(id)) {
    co_return *erased;
  }
  auto guard = co_await mutex_.scoped();
  auto f = co_await locate(id);
  bool erased = false;
  if (f && f->page != nullptr) {
    f->page->remove_at(f->at);
    mark_dirty(*f->page);
    erased = true;
  }
  auto evicted = co_await evict();
  if (!f) {
    co_return Result<bool>(boost::system::in_place_error, f.error());
  }
  if (!evicted) {
    co_return Result<bool>(boost::system::in_place_error, evicted.error());
  }
  co_return erased;
}

// Evicts between lookups whenever the cache is over its budget, so a batch holds it no further
// over than one find() does (by one chain).
Task<Result<void>> PagedIndex::find_many(std::span<const ChunkId> ids,
                                         std::span<std::optional<IndexEntry>> out) {
  CAIRN_ASSERT(ids.size() == out.size());
  // Every chain cached and no operation mid-way: answered without the lock (see find()).
  std::size_t answered = 0;
  while (answered < ids.size()) {
    if (answered % kPrefetchBatch == 0) {
      prefetch(ids.subspan(answered));
    }
    auto hit = find_cached(ids[answered]);
    if (!hit) {
      break;
    }
    out[answered++] = *hit;
  }
  if (answered == ids.size()) {
    co_return Result<void>{};
  }
  auto guard = co_await mutex_.scoped();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto f = co_await locate(ids[i]);
    if (!f) {
      (void)co_await evict();
      co_return f.error();
    }
    out[i] = f->page != nullptr ? std::optional<IndexEntry>(f->page->page.items[f->at].entry)
                                : std::nullopt;
    if (cached_bytes() > budget_bytes_) {
      if (auto evicted = co_await evict(); !evicted) {
        co_return evicted;
      }
    }
  }
  co_return Result<void>{};
}

Task<Result<PagedIndex::Checkpoint>> PagedIndex::checkpoint() {
  auto guard = co_await mutex_.scoped();
  uint64_t seq = complete_seq_ + 1;
  std::vector<Cached*> dirty;
  uint64_t end_bytes = slot_offset(logical_pages(), 0);
  dirty.reserve(dirty_);
  for (uint64_t page_no : dirty_lru_) {
    dirty.push_back(cached(page_no));
  }
  // In page order, so the writes of a checkpoint go to the file front to back.
  std::sort(dirty.begin(), dirty.end(),
            [](const Cached* a, const Cached* b) { return a->page.page_no < b->page.page_no; });
  if (end_bytes > file_.size_bytes()) {
    if (auto r = co_await file_.grow(end_bytes); !r) {
      co_return r.error();
    }
  }
  // A batch of pages is written at once: thousands of dirty pages one write at a time would
  // hold the index (and the store waiting on it) for one device round trip each.
  AlignedBuffer batch(std::min<uint64_t>(dirty.size(), kCheckpointBatchPages) * kSlotBytes);
  std::vector<BlockWrite> writes;
  writes.reserve(kCheckpointBatchPages);
  for (std::size_t first = 0; first < dirty.size(); first += kCheckpointBatchPages) {
    writes.clear();
    std::size_t n = std::min<std::size_t>(kCheckpointBatchPages, dirty.size() - first);
    for (std::size_t i = 0; i < n; ++i) {
      Cached* c = dirty[first + i];
      auto out = batch.span().subspan(i * kSlotBytes, kSlotBytes);
      c->page.seq = seq;
      c->page.encode(out);
      int slot = c->current_slot == 0 ? 1 : 0;  // never the newest durable version
      writes.push_back(BlockWrite{slot_offset(c->page.page_no, slot), out});
    }
    if (auto r = co_await write_all(file_, writes); !r) {
      co_return r.error();
    }
  }
  if (auto r = co_await file_.sync(); !r) {
    co_return r.error();
  }
  for (Cached* c : dirty) {
    c->current_slot = c->current_slot == 0 ? 1 : 0;
    c->dirty = false;
    dirty_lru_.erase(c->lru);
    lru_.push_front(c->page.page_no);
    c->lru = lru_.begin();
  }
  dirty_ = 0;
  complete_seq_ = seq;
  if (auto r = co_await evict(); !r) {
    co_return r.error();
  }
  co_return Checkpoint{seq, overflow_pages_};
}

Task<Result<void>> PagedIndex::scan(const Visitor& visit) {
  auto guard = co_await mutex_.scoped();
  uint64_t file_pages = file_.size_bytes() <= kTableStartBytes
                            ? 0
                            : (file_.size_bytes() - kTableStartBytes) / (2 * kSlotBytes);
  uint64_t pages = std::max(file_pages, logical_pages());
  AlignedBuffer batch(kScanBatchPages * 2 * kSlotBytes);
  AlignedBuffer zero(kSlotBytes);
  bool repaired = false;
  for (uint64_t first = 0; first < pages; first += kScanBatchPages) {
    uint64_t on_disk = first < file_pages ? std::min(kScanBatchPages, file_pages - first) : 0;
    if (on_disk > 0) {
      auto span = batch.span().first(on_disk * 2 * kSlotBytes);
      if (auto r = co_await file_.read(slot_offset(first, 0), span); !r) {
        co_return r.error();
      }
    }
    for (uint64_t p = first; p < std::min(pages, first + kScanBatchPages); ++p) {
      auto pair = batch.span().subspan((p - first) * 2 * kSlotBytes, 2 * kSlotBytes);
      // Versions of a checkpoint that never completed: erase them before a later checkpoint
      // reuses their sequence number.
      for (int s = 0; p < file_pages && s < 2; ++s) {
        IndexPage v;
        auto slot = pair.subspan(static_cast<std::size_t>(s) * kSlotBytes, kSlotBytes);
        if (!repaired_ && IndexPage::decode(slot, p, v) == IndexPage::Decoded::ok &&
            v.seq > complete_seq_) {
          if (auto r = co_await file_.write(slot_offset(p, s), zero.span()); !r) {
            co_return r.error();
          }
          repaired = true;
        }
      }
      if (p >= logical_pages()) {
        continue;
      }
      if (const Cached* c = cached(p)) {
        for (const auto& item : c->page.items) {
          visit(item.id, item.entry);
        }
        continue;
      }
      if (p >= file_pages) {
        if (p >= buckets_) {
          co_return make_error(errc::corrupt);  // a linked overflow page never written
        }
        continue;  // a bucket never written: empty
      }
      IndexPage page;
      int slot = -1;
      if (auto r = choose(pair, p, page, slot, repaired_); !r) {
        co_return r.error();
      }
      for (const auto& item : page.items) {
        visit(item.id, item.entry);
      }
    }
  }
  if (repaired) {
    CAIRN_LOG(info, "io", "index table: erased page versions of an unfinished checkpoint");
    if (auto r = co_await file_.sync(); !r) {
      co_return r.error();
    }
  }
  repaired_ = true;
  co_return co_await evict();
}

Task<Result<void>> PagedIndex::copy_to(PagedIndex& to) {
  auto guard = co_await mutex_.scoped();
  CAIRN_ASSERT(repaired_ && dirty_ == 0);
  // Every page is clean: dropping them all loses nothing, and leaves the RAM to `to`.
  while (!lru_.empty()) {
    drop_cached(lru_.back());
    lru_.pop_back();
  }
  for (uint64_t bucket = 0; bucket < buckets_; ++bucket) {
    uint64_t page_no = bucket;
    for (uint64_t steps = 0;; ++steps) {
      if (steps > logical_pages()) {
        CAIRN_LOG(error, "io", "index chain of bucket {} loops", bucket);
        co_return make_error(errc::corrupt);
      }
      IndexPage page;
      if (slot_offset(page_no, 0) + 2 * kSlotBytes <= file_.size_bytes()) {
        if (auto r = co_await file_.read(slot_offset(page_no, 0), io_.span()); !r) {
          co_return r;
        }
        ++page_reads_;
        int slot = -1;
        if (auto r = choose(io_.span(), page_no, page, slot, false); !r) {
          co_return r;
        }
      } else if (page_no >= buckets_) {
        co_return make_error(errc::corrupt);  // a link past the end of the file
      }
      for (const IndexPage::Item& item : page.items) {
        if (auto r = co_await to.put(item.id, item.entry); !r) {
          co_return r;
        }
      }
      if (page.next == 0) {
        break;
      }
      page_no = page.next - 1;
      if (page_no < buckets_ || page_no >= logical_pages()) {
        CAIRN_LOG(error, "io", "index page {} links to page {}, not an overflow page", page.page_no,
                  page_no);
        co_return make_error(errc::corrupt);
      }
    }
  }
  co_return Result<void>{};
}

}  // namespace cairn::io
