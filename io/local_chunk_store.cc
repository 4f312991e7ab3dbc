#include "io/local_chunk_store.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>

#include "base/assert.h"
#include "base/log.h"
#include "io/byte_codec.h"
#include "io/dir_index_table_files.h"
#include "io/dir_log_factory.h"
#include "io/errors.h"
#include "io/uring_block_file.h"

namespace cairn::io {
namespace {

constexpr uint64_t kBlock = BlockFile::kAlignment;
// A raw device smaller than this cannot hold a useful store.
constexpr uint64_t kMinDeviceBytes = 1u << 20;

// Journal operations (docs/on-disk-format.md, "Index journal"). `checkpoint` is the marker
// of the old format's in-journal checkpoints, still replayed when upgrading.
// `table_checkpoint` names a checkpoint of the generation-0 table; `table_switch` one of a
// grown table (generation > 0): written when the store switches to it and at every later
// checkpoint, so the last table record always says which file is current.
enum class Op : uint8_t {
  add = 1,
  ref = 2,
  checkpoint = 3,
  table_checkpoint = 4,
  table_switch = 5
};
// The two records a put or a reference change appends (one per chunk), as they lie in the
// journal: little-endian (ByteWriter's encoding), unpadded. Appended with one copy each:
// seven small vector inserts per record cost 3.5% of a 1M write.
struct [[gnu::packed]] AddRecord {
  Op op = Op::add;
  uint64_t id_lo, id_hi, offset_bytes;
  uint32_t length_bytes;
  uint64_t checksum;
  uint32_t refs;
};
static_assert(sizeof(AddRecord) == 1 + 8 + 8 + 8 + 4 + 8 + 4);
struct [[gnu::packed]] RefRecord {
  Op op = Op::ref;
  uint64_t id_lo, id_hi;
  int32_t delta;
};
static_assert(sizeof(RefRecord) == 1 + 8 + 8 + 4);
constexpr std::size_t kTableCheckpointBytes = 1 + 8 + 8;
constexpr std::size_t kTableSwitchBytes = 1 + 8 + 8 + 8 + 8;
// Index buckets per data-file block at creation: a file full of 4 KiB chunks fills the 100-entry
// pages to about 64%, so overflow chains are rare until the data file grows.
constexpr uint64_t kBlocksPerBucket = 64;
// A put of at least this many bytes never enters the read cache, and a batch read of as many
// enters it only while the cache has room (as bcache's sequential cutoff): a streaming 1M
// write or cold 1M read would otherwise evict the working set for data written or read once,
// and pay an eviction, a copy and two hash-table updates per chunk for it. Large writes skip
// the cache even when it has room (as BlueStore does not cache writes by default): their copy
// into scattered cache blocks cost about 14% of a 1M write (MB/s, median of 9: 1,018 with
// it, 1,179 without), and data a VM writes in large blocks is seldom read back at once.
constexpr uint64_t kCacheBypassBytes = 256 * 1024;
// put_from() keeps the caller's buffer for puts of this many new bytes or more. Smaller puts
// are still copied into a registered staging buffer: a few KiB copy cheaply, while a write
// from an unregistered buffer pins its pages every time. The threshold is a judgement, not a
// measured crossover (only 4 KiB and 1 MiB puts were measured, docs/performance.md).
constexpr uint64_t kAdoptBytes = 64 * 1024;
// At most this many bytes of adopted buffers wait in spare_ (a buffer is as large as the
// request it held, up to the NBD maximum payload); beyond it a written buffer is freed.
constexpr uint64_t kMaxSpareBytes = 64ull << 20;
constexpr uint64_t kMinBuckets = 64;

uint64_t align_down(uint64_t v) {
  return v / kBlock * kBlock;
}

}  // namespace

// What a put() will do, worked out before anything is written.
struct LocalChunkStore::Plan {
  struct Fresh {
    ChunkId id;
    std::span<const std::byte> data;
    uint64_t checksum = 0;
    uint32_t refs = 1;
    uint64_t offset_bytes = 0;
  };
  std::vector<Fresh> fresh;  // new chunks, in put order
  std::unordered_map<ChunkId, std::size_t, ChunkIdHash> fresh_at;
  Counts hits;                                // stored chunks: extra refs
  Counts inflight_hits;                       // chunks of other puts in flight: extra refs
  std::vector<std::shared_ptr<Batch>> waits;  // those puts
  std::shared_ptr<Batch> batch;               // this put, for others to wait on
  std::vector<std::pair<uint64_t, uint64_t>> extents;
  uint64_t dedup_hits = 0;
  uint64_t collisions = 0;
  bool adopted = false;  // the staging buffer is put_from()'s, to go to spare_ once written
  // Stored chunks that the put's chunks may duplicate, read before planning (read_candidates):
  // the entry they were read as, and their bytes (empty: not read).
  struct Stored {
    Entry entry;
    std::span<const std::byte> bytes;
  };
  std::unordered_map<ChunkId, Stored, ChunkIdHash> stored;
  std::vector<std::byte> stored_bytes;
};

// Completion of one put's data write: locked while it is in flight.
struct LocalChunkStore::Batch {
  AsyncMutex done;
  bool failed = false;
};

uint64_t LocalChunkStore::padded(uint64_t length_bytes) noexcept {
  return (length_bytes + kBlock - 1) / kBlock * kBlock;
}

LocalChunkStore::LocalChunkStore(BlockFile& data, std::unique_ptr<RecordLog> journal,
                                 const ChunkHasher& hasher, Options options)
    : data_(data),
      journal_(std::move(journal)),
      hasher_(hasher),
      options_(std::move(options)),
      allocator_(kDataStartBytes, options_.capacity_bytes),
      cache_(options_.cache_bytes) {
  staging_pool_.emplace_back(options_.max_put_bytes);
  stats_.capacity_bytes = allocator_.capacity_bytes();
}

LocalChunkStore::~LocalChunkStore() {
  for (AlignedBuffer& b : staging_pool_) {
    data_.unregister_buffer(b.data());
  }
}

Task<Result<std::unique_ptr<LocalChunkStore>>> LocalChunkStore::open(
    BlockFile& data, std::unique_ptr<RecordLog> journal, const ChunkHasher& hasher,
    Options options) {
  if (!options.owner || journal == nullptr ||
      (options.index_file == nullptr) == (options.index_files == nullptr)) {
    co_return make_error(errc::invalid_argument);
  }
  uint64_t capacity =
      align_down(options.capacity_bytes != 0 ? options.capacity_bytes : data.size_bytes());
  if (capacity < kDataStartBytes + kBlock) {
    co_return make_error(errc::invalid_argument);
  }
  if (capacity > data.size_bytes()) {
    if (auto r = co_await data.grow(capacity); !r) {
      co_return r.error();
    }
  }
  options.capacity_bytes = capacity;
  std::unique_ptr<LocalChunkStore> store(
      new LocalChunkStore(data, std::move(journal), hasher, std::move(options)));
  if (auto r = co_await store->load(); !r) {
    co_return r.error();
  }
  co_return store;
}

Task<Result<std::unique_ptr<LocalChunkStore>>> LocalChunkStore::open_dir(const std::string& dir,
                                                                         const ChunkHasher& hasher,
                                                                         Options options,
                                                                         DirOptions dir_options) {
  UringBlockFile::Options file_options;
  file_options.initial_size_bytes = dir_options.data_capacity_bytes;
  file_options.allow_buffered = dir_options.allow_buffered;
  std::string data_path =
      dir_options.data_path.empty() ? dir + "/chunks.data" : dir_options.data_path;
  auto data = UringBlockFile::open(data_path, file_options, dir_options.ring);
  if (!data) {
    co_return data.error();
  }
  if ((*data)->is_block_device()) {
    // A device cannot grow: its size is the capacity, and nothing past it exists.
    uint64_t device_bytes = (*data)->size_bytes();
    if (device_bytes < kMinDeviceBytes) {
      co_return make_error(errc::no_space);
    }
    dir_options.data_capacity_bytes = device_bytes;
    options.capacity_bytes = device_bytes;
    options.grow_step_bytes = 0;
    options.max_capacity_bytes = device_bytes;
  }
  DirLogFactory logs(dir, {dir_options.journal_capacity_bytes, dir_options.allow_buffered},
                     dir_options.ring);
  auto journal = co_await logs.open("chunks-index");
  if (!journal) {
    co_return journal.error();
  }
  auto tables =
      std::make_unique<DirIndexTableFiles>(dir, dir_options.allow_buffered, dir_options.ring);
  options.index_file = nullptr;
  options.index_files = tables.get();
  // A data file that grew in an earlier run keeps its size: chunks live up to its end.
  options.capacity_bytes =
      std::max({options.capacity_bytes, dir_options.data_capacity_bytes, (*data)->size_bytes()});
  auto store = co_await open(**data, std::move(*journal), hasher, std::move(options));
  if (!store) {
    co_return store.error();
  }
  (*store)->owned_data_ = std::move(*data);
  (*store)->owned_index_files_ = std::move(tables);
  co_return std::move(*store);
}

// Replays the journal after the last table checkpoint into the paged index, then scans the
// table once to rebuild free space and the counters (pages are streamed, not cached).
Task<Result<void>> LocalChunkStore::load() {
  PagedIndex::Checkpoint last;
  uint64_t generation = 0;
  uint64_t switched_buckets = 0;              // the table's buckets, from a table_switch
  std::vector<std::vector<std::byte>> after;  // records after the last table checkpoint
  bool bad = false;
  auto replayed = co_await journal_->replay([&](uint64_t, std::span<const std::byte> rec) {
    if (!rec.empty() && static_cast<Op>(rec[0]) == Op::table_checkpoint) {
      ByteReader r(rec.subspan(1));
      bad = bad || rec.size() != kTableCheckpointBytes || !r.get(last.seq) ||
            !r.get(last.overflow_pages);
      generation = 0;
      switched_buckets = 0;
      after.clear();
      return;
    }
    if (!rec.empty() && static_cast<Op>(rec[0]) == Op::table_switch) {
      ByteReader r(rec.subspan(1));
      bad = bad || rec.size() != kTableSwitchBytes || !r.get(generation) || !r.get(last.seq) ||
            !r.get(last.overflow_pages) || !r.get(switched_buckets) || generation == 0 ||
            switched_buckets == 0;
      after.clear();
      return;
    }
    after.emplace_back(rec.begin(), rec.end());
  });
  if (!replayed) {
    co_return replayed;
  }
  if (bad) {
    co_return make_error(errc::corrupt);
  }
  uint64_t buckets =
      options_.index_buckets != 0
          ? options_.index_buckets
          : std::max(kMinBuckets, options_.capacity_bytes / kBlock / kBlocksPerBucket);
  BlockFile* file = options_.index_file;
  if (options_.index_files != nullptr) {
    auto opened = options_.index_files->open(generation);
    if (!opened) {
      co_return opened.error();
    }
    file = *opened;
  } else if (generation != 0) {
    CAIRN_LOG(error, "io", "the journal names index table generation {}, not a single table file",
              generation);
    co_return make_error(errc::invalid_argument);
  }
  auto index = co_await PagedIndex::open(*file, {buckets, options_.index_cache_bytes}, last);
  if (!index) {
    co_return index.error();
  }
  if (switched_buckets != 0 && (*index)->buckets() != switched_buckets) {
    CAIRN_LOG(error, "io", "index table generation {} has {} buckets, the journal says {}",
              generation, (*index)->buckets(), switched_buckets);
    co_return make_error(errc::corrupt);
  }
  index_ = std::move(*index);
  generation_ = generation;
  if (auto r = remove_other_tables(); !r) {
    co_return r;
  }
  for (const auto& rec : after) {
    if (auto r = co_await apply_record(rec); !r) {
      co_return r;
    }
  }
  after = {};
  ChunkStoreStats s;
  bool overlap = false;
  auto scanned = co_await index_->scan([&](const ChunkId& id, const Entry& e) {
    if (!overlap && !allocator_.reserve(e.offset_bytes, padded(e.length_bytes))) {
      CAIRN_LOG(error, "io", "chunk {} overlaps another or lies outside the data file",
                id.to_hex());
      overlap = true;
    }
    ++s.chunks;
    s.referenced_bytes += uint64_t{e.length_bytes} * e.refs;
    s.physical_bytes += padded(e.length_bytes);
  });
  if (!scanned) {
    co_return scanned;
  }
  if (overlap) {
    co_return make_error(errc::corrupt);
  }
  update_stats([&](ChunkStoreStats& st) {
    st.chunks = s.chunks;
    st.referenced_bytes = s.referenced_bytes;
    st.physical_bytes = s.physical_bytes;
  });
  // A long journal (or an old-format one being converted) may have dirtied many pages.
  if (index_over_budget()) {
    if (auto r = co_await checkpoint_locked(); !r) {
      co_return r;
    }
  }
  note_index_ram();
  co_return Result<void>{};
}

Task<Result<std::optional<LocalChunkStore::Entry>>> LocalChunkStore::lookup(const ChunkId& id) {
  ++index_readers_;
  auto found = co_await index_->find(id);
  --index_readers_;
  co_return found;
}

Task<Result<void>> LocalChunkStore::apply_record(std::span<const std::byte> record) {
  ByteReader r(record);
  while (!r.done()) {
    uint8_t op = 0;
    ChunkId id;
    if (!r.get(op)) {
      co_return make_error(errc::corrupt);
    }
    if (static_cast<Op>(op) == Op::checkpoint) {
      continue;
    }
    if (!r.get(id.lo) || !r.get(id.hi)) {
      co_return make_error(errc::corrupt);
    }
    if (static_cast<Op>(op) == Op::add) {
      Entry e;
      if (!r.get(e.offset_bytes) || !r.get(e.length_bytes) || !r.get(e.checksum) ||
          !r.get(e.refs) || e.length_bytes == 0 || e.length_bytes > kMaxChunkBytes ||
          e.offset_bytes % kBlock != 0 || e.refs == 0) {
        co_return make_error(errc::corrupt);
      }
      if (auto p = co_await index_->put(id, e); !p) {
        co_return p;
      }
      continue;
    }
    int32_t delta = 0;
    if (static_cast<Op>(op) != Op::ref || !r.get(delta)) {
      co_return make_error(errc::corrupt);
    }
    auto found = co_await index_->find(id);
    if (!found) {
      co_return found.error();
    }
    if (!*found || int64_t{(*found)->refs} + delta < 0 ||
        int64_t{(*found)->refs} + delta > UINT32_MAX) {
      co_return make_error(errc::corrupt);
    }
    Entry e = **found;
    e.refs = static_cast<uint32_t>(int64_t{e.refs} + delta);
    if (e.refs == 0) {
      if (auto d = co_await index_->erase(id); !d) {
        co_return d.error();
      }
    } else if (auto p = co_await index_->put(id, e); !p) {
      co_return p;
    }
  }
  co_return Result<void>{};
}

template <class Record>
void LocalChunkStore::journal(const Record& r) {
  const auto* p = reinterpret_cast<const std::byte*>(&r);
  pending_ops_.insert(pending_ops_.end(), p, p + sizeof r);
}

void LocalChunkStore::journal_add(const ChunkId& id, const Entry& e) {
  journal(AddRecord{.id_lo = id.lo,
                    .id_hi = id.hi,
                    .offset_bytes = e.offset_bytes,
                    .length_bytes = e.length_bytes,
                    .checksum = e.checksum,
                    .refs = e.refs});
}

void LocalChunkStore::journal_ref(const ChunkId& id, int32_t delta) {
  journal(RefRecord{.id_lo = id.lo, .id_hi = id.hi, .delta = delta});
}

void LocalChunkStore::update_stats(const std::function<void(ChunkStoreStats&)>& f) const {
  std::lock_guard lock(stats_mutex_);
  f(stats_);
}

ChunkStoreStats LocalChunkStore::stats() const {
  std::lock_guard lock(stats_mutex_);
  return stats_;
}

Task<uint64_t> LocalChunkStore::refs(ChunkId id) {
  if (auto busy = inflight_batches(std::span<const ChunkId>(&id, 1)); !busy.empty()) {
    co_await wait_for(std::move(busy));
  }
  auto e = co_await lookup(id);
  if (!e || !*e) {
    co_return 0;
  }
  co_return (*e)->refs;
}

Task<std::optional<uint64_t>> LocalChunkStore::offset_of(ChunkId id) {
  if (auto busy = inflight_batches(std::span<const ChunkId>(&id, 1)); !busy.empty()) {
    co_await wait_for(std::move(busy));
  }
  auto e = co_await lookup(id);
  if (!e || !*e) {
    co_return std::nullopt;
  }
  co_return (*e)->offset_bytes;
}

bool LocalChunkStore::index_over_budget() const noexcept {
  return index_->dirty_bytes() > index_->budget_bytes() / 2;
}

// The table holds more entries per bucket than kGrowEntriesPerBucket and can grow. The next
// flush checkpoints (and so grows it) rather than waiting for the journal or the cache to
// fill: every lookup walks a chain of pages until it does.
bool LocalChunkStore::index_overfull() const {
  return options_.index_files != nullptr &&
         stats().chunks > index_->buckets() * kGrowEntriesPerBucket;
}

void LocalChunkStore::note_index_ram() {
  uint64_t now = index_->cached_bytes();
  update_stats([&](ChunkStoreStats& s) {
    s.index_cache_bytes = now;
    s.index_cache_peak_bytes = std::max(s.index_cache_peak_bytes, now);
  });
}

// ---- public methods: hop to the owner ----

// A caller already on the owner's thread runs the operation inline: a co_spawn to the same
// executor would still cost a coroutine frame and a trip through the reactor's queue per call.
bool LocalChunkStore::on_owner() const noexcept {
  const auto* ex = options_.owner.target<asio::io_context::executor_type>();
  return ex != nullptr && ex->running_in_this_thread();
}

Task<Result<void>> LocalChunkStore::put(std::span<const std::span<const std::byte>> chunks,
                                        std::span<ChunkId> ids) {
  if (on_owner()) {
    co_return co_await put_here(chunks, ids, nullptr);
  }
  co_return co_await asio::co_spawn(options_.owner, put_here(chunks, ids, nullptr),
                                    asio::use_awaitable);
}

Task<Result<void>> LocalChunkStore::put_from(AlignedBuffer& buffer,
                                             std::span<const std::span<const std::byte>> chunks,
                                             std::span<ChunkId> ids) {
  if (on_owner()) {
    co_return co_await put_here(chunks, ids, &buffer);
  }
  co_return co_await asio::co_spawn(options_.owner, put_here(chunks, ids, &buffer),
                                    asio::use_awaitable);
}

// One chunk is a batch of one: the same cache, index and staging path as get_many().
Task<Result<void>> LocalChunkStore::get(const ChunkId& id, std::span<std::byte> out) {
  std::span<const ChunkId> ids(&id, 1);
  std::span<const std::span<std::byte>> outs(&out, 1);
  co_return co_await get_many(ids, outs);
}

// Off the owner's thread, cache hits are served here, on the caller's reactor; only the misses
// go to the owner.
Task<Result<void>> LocalChunkStore::get_many(std::span<const ChunkId> ids,
                                             std::span<const std::span<std::byte>> outs) {
  if (on_owner()) {
    co_return co_await get_many_here(ids, outs);
  }
  if (ids.size() != outs.size()) {
    co_return make_error(errc::invalid_argument);
  }
  std::vector<std::size_t> misses = serve_cached(ids, outs);
  if (misses.empty()) {
    co_return Result<void>{};
  }
  co_return co_await asio::co_spawn(options_.owner, read_misses(ids, outs, std::move(misses)),
                                    asio::use_awaitable);
}

bool LocalChunkStore::cache_has_room(uint64_t bytes) const {
  std::lock_guard lock(cache_mutex_);
  return cache_.has_room(bytes);
}

Task<Result<void>> LocalChunkStore::ref(std::span<const ChunkId> ids) {
  if (on_owner()) {
    co_return co_await ref_here(ids, +1);
  }
  co_return co_await asio::co_spawn(options_.owner, ref_here(ids, +1), asio::use_awaitable);
}

Task<Result<void>> LocalChunkStore::unref(std::span<const ChunkId> ids) {
  if (on_owner()) {
    co_return co_await ref_here(ids, -1);
  }
  co_return co_await asio::co_spawn(options_.owner, ref_here(ids, -1), asio::use_awaitable);
}

Task<Result<void>> LocalChunkStore::flush() {
  if (on_owner()) {
    co_return co_await flush_here();
  }
  co_return co_await asio::co_spawn(options_.owner, flush_here(), asio::use_awaitable);
}

// ---- put ----

Task<Result<void>> LocalChunkStore::put_here(std::span<const std::span<const std::byte>> chunks,
                                             std::span<ChunkId> ids, AlignedBuffer* donor) {
  if (ids.size() != chunks.size()) {
    co_return make_error(errc::invalid_argument);
  }
  for (auto chunk : chunks) {
    if (chunk.empty() || chunk.size() > kMaxChunkBytes) {
      co_return make_error(errc::invalid_argument);
    }
  }
  auto plan = std::make_unique<Plan>();
  plan->batch = std::make_shared<Batch>();
  co_await plan->batch->done.lock();  // free: nobody else knows the batch yet
  if (auto begun = co_await begin_put(chunks, ids, *plan); !begun) {
    plan->batch->failed = true;
    plan->batch->done.unlock();
    co_return begun;
  }
  // No suspension from here to the spawn: the caller's chunks are copied (or its buffer taken)
  // before it resumes.
  AlignedBuffer staging =
      donor != nullptr && can_adopt(*plan, *donor) ? adopt(*plan, *donor) : stage(*plan);
  if (write_behind_.size() < options_.write_behind_puts) {
    // A disk with a volatile write cache (BRIEF, "Durability"): the put is answered now, its
    // chunks are readable (readers wait for the batch) and flush() waits for it.
    write_behind_.push_back(plan->batch);
    asio::co_spawn(options_.owner, complete_put(std::move(plan), std::move(staging), true),
                   asio::detached);
    co_return Result<void>{};
  }
  co_return co_await complete_put(std::move(plan), std::move(staging), false);
}

// Writes a staged put's new chunks, waits for the puts whose chunks it shares, and publishes
// them (or undoes the put). `behind`: the caller was already answered, so a failure fails
// the store, and the next flush() reports it.
Task<Result<void>> LocalChunkStore::complete_put(std::unique_ptr<Plan> plan, AlignedBuffer staging,
                                                 bool behind) {
  // A frame destroyed mid-write (at shutdown) frees the buffer: never leave it registered.
  struct Unregister {
    BlockFile& file;
    AlignedBuffer& buffer;
    ~Unregister() {
      if (buffer.data() != nullptr) {
        file.unregister_buffer(buffer.data());
      }
    }
  } unregister_on_destroy{data_, staging};
  Result<void> result = co_await write_staged(*plan);
  for (const auto& other : plan->waits) {
    co_await other->done.lock();
    other->done.unlock();
    if (other->failed && result) {
      result = make_error(errc::io_error);
    }
  }
  {
    auto guard = co_await mutex_.scoped();
    auto finished = co_await finish_put(*plan, static_cast<bool>(result));
    if (!finished && result) {
      result = finished;
    }
    if (!result && behind && !failure_) {
      CAIRN_LOG(error, "io", "a put already answered could not be stored: {}",
                result.error().message());
      fail(result.error());
    }
  }
  if (plan->adopted) {
    if (spare_bytes_ + staging.size() <= kMaxSpareBytes) {
      spare_bytes_ += staging.size();
      spare_.push_back(std::move(staging));
    }
  } else if (staging.data() != nullptr) {
    staging_pool_.push_back(std::move(staging));
  }
  plan->batch->done.unlock();
  if (behind) {
    std::erase(write_behind_, plan->batch);
  }
  note_index_ram();
  co_return result;
}

// Waits for the puts in flight that hold any of `ids` (answered before their chunks were
// published): a reader or a reference change then finds them in the index.
LocalChunkStore::Batches LocalChunkStore::inflight_batches(std::span<const ChunkId> ids) const {
  Batches batches;
  if (inflight_.empty()) {
    return batches;
  }
  for (const ChunkId& id : ids) {
    if (auto in = inflight_.find(id); in != inflight_.end()) {
      batches.push_back(in->second.plan->batch);
    }
  }
  return batches;
}

Task<void> LocalChunkStore::wait_for(Batches batches) {
  for (const auto& b : batches) {
    co_await b->done.lock();
    b->done.unlock();
  }
}

// Under the lock: decides every chunk's id, takes the references on stored chunks, allocates
// the new chunks' space and announces them as in flight.
Task<Result<void>> LocalChunkStore::begin_put(std::span<const std::span<const std::byte>> chunks,
                                              std::span<ChunkId> ids, Plan& plan) {
  auto guard = co_await mutex_.scoped();
  if (failure_) {
    co_return failure_;
  }
  std::vector<ChunkId> first(chunks.size());
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    first[i] = hasher_.address(chunks[i], 0);
  }
  std::vector<std::optional<Entry>> first_found(chunks.size());
  if (auto r = co_await index_->find_many(first, first_found); !r) {
    co_return r;
  }
  co_await read_candidates(chunks, first, first_found, plan);
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    auto id = co_await plan_chunk(chunks[i], plan, first[i], first_found[i]);
    if (!id) {
      co_return id.error();
    }
    ids[i] = *id;
  }
  if (auto a = co_await allocate(plan); !a) {
    co_return a;
  }
  uint64_t referenced = 0;
  for (const auto& [id, n] : plan.hits) {
    auto found = co_await index_->find(id);
    if (!found || !*found) {
      co_return fail(found ? make_error(errc::corrupt) : found.error());
    }
    Entry e = **found;
    e.refs += n;
    if (auto p = co_await index_->put(id, e); !p) {
      co_return fail(p.error());
    }
    journal_ref(id, static_cast<int32_t>(n));
    referenced += uint64_t{e.length_bytes} * n;
  }
  for (const auto& [id, n] : plan.inflight_hits) {
    const Inflight& in = inflight_.at(id);
    in.plan->fresh[in.fresh_index].refs += n;  // journalled with the chunk by its put
  }
  for (std::size_t k = 0; k < plan.fresh.size(); ++k) {
    inflight_.emplace(plan.fresh[k].id, Inflight{&plan, k});
  }
  update_stats([&](ChunkStoreStats& s) {
    s.referenced_bytes += referenced;
    s.dedup_hits += plan.dedup_hits;
    s.hash_collisions += plan.collisions;
  });
  co_return Result<void>{};
}

// Under the lock: publishes the new chunks, or on failure undoes what begin_put() did. An
// index error here leaves the index behind the journal's intent: the store fails.
Task<Result<void>> LocalChunkStore::finish_put(Plan& plan, bool ok) {
  for (const Plan::Fresh& f : plan.fresh) {
    inflight_.erase(f.id);
  }
  if (!ok) {
    plan.batch->failed = true;
    for (auto [off, len] : plan.extents) {
      allocator_.free(off, len);
    }
    if (auto r = co_await drop_refs(plan.hits); !r) {
      co_return r;
    }
    Counts published;  // references we added to other puts' chunks that did get stored
    for (const auto& [id, n] : plan.inflight_hits) {
      auto found = co_await index_->find(id);
      if (!found) {
        co_return fail(found.error());
      }
      if (*found) {
        published.emplace(id, n);
      }
    }
    co_return co_await drop_refs(published);
  }
  uint64_t referenced = 0;
  uint64_t physical = 0;
  uint64_t fresh_bytes = 0;
  for (const Plan::Fresh& f : plan.fresh) {
    fresh_bytes += f.data.size();
  }
  std::array<ChunkId, PagedIndex::kPrefetchBatch> next;
  for (std::size_t k = 0; k < plan.fresh.size(); ++k) {
    if (k % next.size() == 0) {
      const std::size_t n = std::min(next.size(), plan.fresh.size() - k);
      for (std::size_t j = 0; j < n; ++j) {
        next[j] = plan.fresh[k + j].id;
      }
      index_->prefetch(std::span(next).first(n));
    }
    const Plan::Fresh& f = plan.fresh[k];
    Entry e{f.offset_bytes, f.checksum, static_cast<uint32_t>(f.data.size()), f.refs};
    if (!index_->put_cached(f.id, e)) {
      if (auto p = co_await index_->put(f.id, e); !p) {
        co_return fail(p.error());
      }
    }
    journal_add(f.id, e);
    referenced += f.data.size() * f.refs;
    physical += padded(f.data.size());
  }
  // Once indexed.
  if (fresh_bytes < kCacheBypassBytes) {
    insert_fresh(plan);
  }
  update_stats([&](ChunkStoreStats& s) {
    s.chunks += plan.fresh.size();
    s.referenced_bytes += referenced;
    s.physical_bytes += physical;
  });
  co_return Result<void>{};
}

// In groups, each under its own hold of cache_mutex_: a reader on another reactor waits for
// one group, never for a whole 1 MiB put (ChunkCache::insert_many overlaps the group's cache
// misses).
void LocalChunkStore::insert_fresh(const Plan& plan) {
  constexpr std::size_t kGroup = 32;
  std::array<ChunkId, kGroup> ids;
  std::array<std::span<const std::byte>, kGroup> datas;
  for (std::size_t i = 0; i < plan.fresh.size(); i += kGroup) {
    const std::size_t n = std::min(kGroup, plan.fresh.size() - i);
    for (std::size_t k = 0; k < n; ++k) {
      ids[k] = plan.fresh[i + k].id;
      datas[k] = plan.fresh[i + k].data;
    }
    std::lock_guard lock(cache_mutex_);
    cache_.insert_many(std::span(ids.data(), n), std::span(datas.data(), n));
  }
}

// Under the lock: drops references (journalled), reclaiming chunks that reach zero.
Task<Result<void>> LocalChunkStore::drop_refs(const Counts& counts) {
  int64_t referenced = 0;
  Result<void> result;
  for (const auto& [id, n] : counts) {
    auto found = co_await index_->find(id);
    if (!found) {
      result = fail(found.error());
      break;
    }
    CAIRN_ASSERT(*found && (*found)->refs >= n);
    Entry e = **found;
    journal_ref(id, -static_cast<int32_t>(n));
    referenced += int64_t{n} * e.length_bytes;
    e.refs -= n;
    auto r = co_await set_refs(id, e);
    if (!r) {
      result = fail(r.error());
      break;
    }
  }
  forget_dropped();
  update_stats(
      [&](ChunkStoreStats& s) { s.referenced_bytes -= static_cast<uint64_t>(referenced); });
  co_return result;
}

// Under the lock (so the index cannot change between the batch lookup and this): the chunk's
// id, after its dedup candidates in this put, in puts in flight and in the index.
Task<Result<ChunkId>> LocalChunkStore::plan_chunk(std::span<const std::byte> chunk, Plan& plan,
                                                  const ChunkId& first,
                                                  const std::optional<Entry>& first_found) {
  for (uint32_t ordinal = 0; ordinal < kMaxOrdinal; ++ordinal) {
    ChunkId id = ordinal == 0 ? first : hasher_.address(chunk, ordinal);
    if (auto f = plan.fresh_at.find(id); f != plan.fresh_at.end()) {
      Plan::Fresh& fresh = plan.fresh[f->second];
      if (fresh.data.size() == chunk.size() &&
          std::memcmp(fresh.data.data(), chunk.data(), chunk.size()) == 0) {
        ++fresh.refs;
        ++plan.dedup_hits;
        co_return id;
      }
      ++plan.collisions;
      continue;
    }
    if (auto in = inflight_.find(id); in != inflight_.end()) {
      const Plan::Fresh& theirs = in->second.plan->fresh[in->second.fresh_index];
      if (theirs.data.size() == chunk.size() &&
          std::memcmp(theirs.data.data(), chunk.data(), chunk.size()) == 0) {
        if (plan.inflight_hits[id]++ == 0) {
          plan.waits.push_back(in->second.plan->batch);
        }
        ++plan.dedup_hits;
        co_return id;
      }
      ++plan.collisions;
      continue;
    }
    Result<std::optional<Entry>> found = first_found;
    if (ordinal != 0) {
      found = co_await index_->find(id);
    }
    if (!found) {
      co_return found.error();
    }
    if (!*found) {
      plan.fresh_at.emplace(id, plan.fresh.size());
      plan.fresh.push_back(Plan::Fresh{id, chunk, ChunkHasher::checksum(chunk)});
      co_return id;
    }
    Entry e = **found;
    bool same = false;
    if (hasher_.confirms_by_address()) {
      same = e.length_bytes == chunk.size();
    } else {
      auto cmp = co_await same_bytes(id, e, chunk, plan);
      if (!cmp) {
        co_return cmp.error();
      }
      same = *cmp == Match::same;
    }
    if (same) {
      uint32_t& extra = plan.hits[id];
      if (uint64_t{e.refs} + extra + 1 > UINT32_MAX) {
        co_return make_error(errc::no_space);  // the count cannot grow further
      }
      ++extra;
      ++plan.dedup_hits;
      co_return id;
    }
    ++plan.collisions;
  }
  CAIRN_LOG(error, "io", "{} chunks collide at one address; refusing another", kMaxOrdinal);
  co_return make_error(errc::no_space);
}

// Reads the stored chunks that the put's chunks' first addresses name, all in one batch
// (get_many: adjacent chunks in one request), so that confirming a run of dedup hits (the same
// data written again) costs one disk read, not one read per chunk awaited in turn under the
// lock. Best effort: if any of them fails to read, none is used and same_bytes() reads each
// on its own, as without this, and reports what it finds.
Task<void> LocalChunkStore::read_candidates(std::span<const std::span<const std::byte>> chunks,
                                            std::span<const ChunkId> first,
                                            std::span<const std::optional<Entry>> found,
                                            Plan& plan) {
  if (hasher_.confirms_by_address()) {
    co_return;
  }
  std::vector<ChunkId> ids;
  uint64_t total = 0;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    if (found[i] && found[i]->length_bytes == chunks[i].size() &&
        plan.stored.emplace(first[i], Plan::Stored{*found[i], {}}).second) {
      ids.push_back(first[i]);
      total += found[i]->length_bytes;
    }
  }
  if (ids.size() < 2) {
    plan.stored.clear();  // one chunk: same_bytes() reads it the same way
    co_return;
  }
  plan.stored_bytes.resize(total);
  std::vector<std::span<std::byte>> outs;
  outs.reserve(ids.size());
  std::size_t at = 0;
  for (const ChunkId& id : ids) {
    uint32_t length = plan.stored.at(id).entry.length_bytes;
    outs.emplace_back(plan.stored_bytes.data() + at, length);
    at += length;
  }
  if (auto r = co_await get_many_here(ids, outs); !r) {
    plan.stored.clear();
    co_return;
  }
  for (std::size_t k = 0; k < ids.size(); ++k) {
    plan.stored.at(ids[k]).bytes = outs[k];
  }
}

Task<Result<LocalChunkStore::Match>> LocalChunkStore::same_bytes(const ChunkId& id, const Entry& e,
                                                                 std::span<const std::byte> chunk,
                                                                 const Plan& plan) {
  if (e.length_bytes != chunk.size()) {
    co_return Match::different;
  }
  if (auto s = plan.stored.find(id); s != plan.stored.end() && !s->second.bytes.empty() &&
                                     s->second.entry.offset_bytes == e.offset_bytes &&
                                     s->second.entry.checksum == e.checksum) {
    co_return std::memcmp(s->second.bytes.data(), chunk.data(), chunk.size()) == 0
        ? Match::same
        : Match::different;
  }
  std::optional<bool> cached_same;
  {
    std::lock_guard lock(cache_mutex_);
    if (const auto* cached = cache_.find(id)) {
      cached_same = std::memcmp(cached->data(), chunk.data(), chunk.size()) == 0;
    }
  }
  if (cached_same) {
    update_stats([](ChunkStoreStats& s) { ++s.cache_hits; });
    co_return *cached_same ? Match::same : Match::different;
  }
  update_stats([](ChunkStoreStats& s) { ++s.cache_misses; });
  std::vector<std::byte> stored(e.length_bytes);
  auto r = co_await read_entry(id, e, stored);
  if (!r) {
    if (r.error() == errc::checksum_mismatch) {
      co_return Match::different;  // a damaged copy is never a match; the new chunk gets its own id
    }
    co_return r.error();
  }
  {
    std::lock_guard lock(cache_mutex_);
    cache_.insert(id, stored);
  }
  co_return std::memcmp(stored.data(), chunk.data(), chunk.size()) == 0 ? Match::same
                                                                        : Match::different;
}

// Copies the put's new chunks into a staging buffer, one run after another in disk order,
// and points their data there: the caller's buffers may go once the put is answered.
AlignedBuffer LocalChunkStore::stage(Plan& plan) {
  uint64_t total = 0;
  for (const Plan::Fresh& f : plan.fresh) {
    total += padded(f.data.size());
  }
  if (total == 0) {
    return {};
  }
  AlignedBuffer staging;
  if (!staging_pool_.empty()) {
    staging = std::move(staging_pool_.back());
    staging_pool_.pop_back();
  }
  if (staging.size() < total) {
    data_.unregister_buffer(staging.data());
    staging.resize(std::max(total, options_.max_put_bytes));
  }
  // Pinned once (WRITE_FIXED): the kernel does not map its pages again for every write.
  data_.register_buffer(std::span<const std::byte>(staging.data(), staging.size()));
  uint64_t staged = 0;
  for (Plan::Fresh& f : plan.fresh) {
    std::byte* to = staging.data() + staged;
    std::memcpy(to, f.data.data(), f.data.size());
    std::memset(to + f.data.size(), 0, padded(f.data.size()) - f.data.size());
    f.data = std::span<const std::byte>(to, f.data.size());
    staged += padded(f.data.size());
  }
  return staging;
}

// Whether the put's new chunks can be written from `donor` as they lie: enough of them to be
// worth it, and each 4 KiB aligned inside it (O_DIRECT, and no padding to add).
bool LocalChunkStore::can_adopt(const Plan& plan, const AlignedBuffer& donor) noexcept {
  uint64_t total = 0;
  const std::byte* begin = donor.data();
  const std::byte* end = begin + donor.size();
  for (const Plan::Fresh& f : plan.fresh) {
    const std::byte* p = f.data.data();
    if (p < begin || p + f.data.size() > end || (p - begin) % kBlock != 0 ||
        f.data.size() % kBlock != 0) {
      return false;
    }
    total += f.data.size();
  }
  return total >= kAdoptBytes;
}

// Takes `donor` as the put's staging buffer and gives the caller a spare one of at least its
// size: the chunks' spans stay valid, since moving a buffer does not move its bytes. The most
// recently written spare first: its lines are the likeliest still in the CPU's cache when the
// caller receives its next payload into it.
AlignedBuffer LocalChunkStore::adopt(Plan& plan, AlignedBuffer& donor) {
  AlignedBuffer exchange;
  for (auto it = spare_.rbegin(); it != spare_.rend(); ++it) {
    if (it->size() >= donor.size()) {
      spare_bytes_ -= it->size();
      exchange = std::move(*it);
      spare_.erase(std::next(it).base());
      break;
    }
  }
  if (exchange.data() == nullptr) {
    exchange.resize(donor.size());
  }
  plan.adopted = true;
  return std::exchange(donor, std::move(exchange));
}

// Writes the staged chunks: one write per run of chunks that lie side by side both on disk
// and in memory (stage() packs them in disk order; an adopted buffer holds them in put order).
// The runs are written concurrently: when free space is fragmented (after small random
// overwrites) a 1 MiB put can become hundreds of runs, and awaiting them one after another
// made such a put cost hundreds of disk round trips (1M writes fell from 420 to 47 MB/s after
// a 4K random-write phase).
Task<Result<void>> LocalChunkStore::write_staged(const Plan& plan) {
  std::vector<BlockWrite> runs;
  for (std::size_t i = 0; i < plan.fresh.size();) {
    const Plan::Fresh& first = plan.fresh[i];
    std::size_t j = i;
    uint64_t run_bytes = 0;
    while (j < plan.fresh.size() && plan.fresh[j].offset_bytes == first.offset_bytes + run_bytes &&
           plan.fresh[j].data.data() == first.data.data() + run_bytes) {
      run_bytes += padded(plan.fresh[j].data.size());
      ++j;
    }
    runs.push_back(BlockWrite{first.offset_bytes, std::span(first.data.data(), run_bytes)});
    i = j;
  }
  if (runs.empty()) {
    co_return Result<void>{};
  }
  co_return co_await write_all(data_, runs);
}

// Where a put's new chunks go (docs/on-disk-format.md, "Allocation"):
// - one contiguous run when one extent holds them: the smallest such extent (best fit), so
//   small puts fill the holes that overwrites leave and large free runs stay whole;
// - a large put (kLargePutBytes or more) that no extent holds grows the data file and takes a
//   run of the new space, while free space is at most max_fragmented_percent of capacity:
//   one large write instead of one per hole, for a bounded amount of stranded space;
// - otherwise the largest extents first, each holding as many chunks as fit, so the put is a
//   few large writes rather than one per chunk;
// - when nothing fits, the data file grows once if allowed and the put tries again.
Task<Result<void>> LocalChunkStore::allocate(Plan& plan) {
  uint64_t total = 0;
  for (const Plan::Fresh& f : plan.fresh) {
    total += padded(f.data.size());
  }
  if (total == 0) {
    co_return Result<void>{};
  }
  std::vector<std::pair<uint64_t, uint64_t>>& taken = plan.extents;
  auto contiguous = [&]() -> bool {
    auto run = allocator_.allocate_best_fit(total);
    if (!run) {
      return false;
    }
    uint64_t at = *run;
    for (Plan::Fresh& f : plan.fresh) {
      f.offset_bytes = at;
      at += padded(f.data.size());
    }
    taken.emplace_back(*run, total);
    return true;
  };
  if (contiguous()) {
    co_return Result<void>{};
  }
  // (No co_await inside && or ||: g++ 12 miscompiles some of those.)
  if (total >= kLargePutBytes && grow_instead_of_scattering()) {
    const bool grown = co_await grow_for(total);
    if (grown && contiguous()) {
      co_return Result<void>{};
    }
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (attempt > 0 && contiguous()) {
      co_return Result<void>{};
    }
    if (scatter(plan, total)) {
      co_return Result<void>{};
    }
    if (attempt > 0) {
      break;
    }
    const bool grown = co_await grow_for(total);
    if (!grown) {
      break;
    }
  }
  co_return make_error(errc::no_space);
}

// Fills the largest free extents in turn with the put's chunks, in order. False (and nothing
// taken) if they do not all fit.
bool LocalChunkStore::scatter(Plan& plan, uint64_t total) {
  std::vector<std::pair<uint64_t, uint64_t>>& taken = plan.extents;
  uint64_t left = total;
  std::size_t i = 0;
  while (i < plan.fresh.size()) {
    const uint64_t need = padded(plan.fresh[i].data.size());
    if (allocator_.largest_extent_bytes() < need) {
      break;
    }
    auto run = allocator_.allocate_largest(left);
    CAIRN_ASSERT(run.has_value());
    auto [offset, length] = *run;
    uint64_t used = 0;
    while (i < plan.fresh.size() && used + padded(plan.fresh[i].data.size()) <= length) {
      plan.fresh[i].offset_bytes = offset + used;
      used += padded(plan.fresh[i].data.size());
      ++i;
    }
    if (used < length) {
      allocator_.free(offset + used, length - used);  // a chunk that did not fit the end
    }
    taken.emplace_back(offset, used);
    left -= used;
  }
  if (i == plan.fresh.size()) {
    return true;
  }
  for (auto [off, len] : taken) {
    allocator_.free(off, len);
  }
  taken.clear();
  return false;
}

// Whether a large put that no free extent holds should grow the data file rather than be
// scattered: growth is allowed and the free space (all of it in runs too short for the put)
// is at most max_fragmented_percent of the capacity, which bounds the space left stranded
// in small holes.
bool LocalChunkStore::grow_instead_of_scattering() const {
  if (options_.grow_step_bytes == 0) {
    return false;
  }
  if (options_.max_capacity_bytes != 0 &&
      allocator_.capacity_bytes() + kDataStartBytes >= align_down(options_.max_capacity_bytes)) {
    return false;
  }
  return static_cast<double>(allocator_.free_bytes()) * 100 <=
         static_cast<double>(allocator_.capacity_bytes()) * options_.max_fragmented_percent;
}

Task<bool> LocalChunkStore::grow_for(uint64_t length_bytes) {
  if (options_.grow_step_bytes == 0) {
    co_return false;
  }
  uint64_t old_size = allocator_.capacity_bytes() + kDataStartBytes;
  uint64_t step = std::max(align_down(options_.grow_step_bytes), padded(length_bytes));
  uint64_t new_size = old_size + step;
  if (options_.max_capacity_bytes != 0) {
    new_size = std::min(new_size, align_down(options_.max_capacity_bytes));
  }
  if (new_size <= old_size) {
    co_return false;
  }
  if (auto r = co_await data_.grow(new_size); !r) {
    CAIRN_LOG(warn, "io", "cannot grow the chunk data file to {} bytes: {}", new_size,
              r.error().message());
    co_return false;
  }
  allocator_.extend(new_size);
  update_stats([&](ChunkStoreStats& s) { s.capacity_bytes = allocator_.capacity_bytes(); });
  CAIRN_LOG(info, "io", "chunk data file grown to {} bytes", new_size);
  co_return true;
}

// ---- get ----

// What one get_many() reads from disk. The outs that missed the cache are `wants`, grouped by
// chunk: a piece is one stored chunk (an id asked for twice is read once), and its outs are
// wants[begin, end). Pieces are in disk order; a run is pieces [first, last), adjacent on disk,
// read with one request into staging[staged_at, staged_at + length_bytes).
struct LocalChunkStore::ReadBatch {
  struct Piece {
    ChunkId id;
    Entry entry;
    std::size_t begin = 0;
    std::size_t end = 0;
    std::error_code error;  // of its read or its checksum
  };
  struct Run {
    uint64_t offset_bytes = 0;
    uint64_t length_bytes = 0;
    std::size_t first = 0;
    std::size_t last = 0;
    uint64_t staged_at = 0;       // where it is read in the staging buffer, unless...
    std::byte* direct = nullptr;  // ... it is read straight into its pieces' outs, from here
  };
  ReadBatch(std::span<const ChunkId> i, std::span<const std::span<std::byte>> o, BlockFile& f)
      : ids(i), outs(o), errors(i.size()), file(f) {}
  ReadBatch(const ReadBatch&) = delete;
  ReadBatch& operator=(const ReadBatch&) = delete;
  // A frame destroyed mid-read (at shutdown) frees the buffer: never leave it registered.
  ~ReadBatch() {
    if (pooled && staging.data() != nullptr) {
      file.unregister_buffer(staging.data());
    }
  }

  std::span<const ChunkId> ids;
  std::span<const std::span<std::byte>> outs;
  std::vector<std::error_code> errors;  // per id
  std::vector<std::size_t> wants;
  std::vector<Piece> pieces;
  std::vector<Run> runs;
  uint64_t staged_bytes = 0;
  AlignedBuffer staging;
  bool pooled = false;        // staging came from staging_pool_ and is registered
  uint64_t drops_before = 0;  // LocalChunkStore::drops_ when the pieces were looked up
  BlockFile& file;
};

// The cache first: it holds only indexed chunks (drop() erases), with their exact length, so a
// hit of the right size needs no index lookup. Returns the positions of the misses.
std::vector<std::size_t> LocalChunkStore::serve_cached(std::span<const ChunkId> ids,
                                                       std::span<const std::span<std::byte>> outs) {
  std::vector<std::size_t> misses;
  uint64_t hits = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    bool hit = false;
    {
      std::lock_guard lock(cache_mutex_);
      const auto* cached = cache_.find(ids[i]);
      if (cached != nullptr && cached->size() == outs[i].size()) {
        std::memcpy(outs[i].data(), cached->data(), outs[i].size());
        hit = true;
      }
    }
    if (hit) {
      ++hits;
    } else {
      misses.push_back(i);
    }
  }
  if (hits > 0) {
    update_stats([&](ChunkStoreStats& s) { s.cache_hits += hits; });
  }
  return misses;
}

Task<Result<void>> LocalChunkStore::get_many_here(std::span<const ChunkId> ids,
                                                  std::span<const std::span<std::byte>> outs) {
  if (ids.size() != outs.size()) {
    co_return make_error(errc::invalid_argument);
  }
  std::vector<std::size_t> misses = serve_cached(ids, outs);
  if (misses.empty()) {
    co_return Result<void>{};
  }
  co_return co_await read_misses(ids, outs, std::move(misses));
}

// Reads the chunks that missed the cache (ids[misses[k]] into outs[misses[k]]): one index
// pass, then the runs of adjacent chunks concurrently, then a second index pass to learn
// which chunks were dropped meanwhile.
Task<Result<void>> LocalChunkStore::read_misses(std::span<const ChunkId> ids,
                                                std::span<const std::span<std::byte>> outs,
                                                std::vector<std::size_t> misses) {
  if (auto busy = inflight_batches(ids); !busy.empty()) {
    co_await wait_for(std::move(busy));
  }
  ReadBatch batch(ids, outs, data_);
  if (auto r = co_await plan_pieces(batch, misses); !r) {
    co_return r;
  }
  plan_runs(batch);
  if (!batch.runs.empty()) {
    if (batch.staged_bytes > 0) {
      take_staging(batch);
    }
    co_await read_runs(batch);
    if (batch.pooled) {
      staging_pool_.push_back(std::move(batch.staging));
    }
  }
  auto finished = co_await finish_reads(batch);
  note_index_ram();
  if (!finished) {
    co_return finished;
  }
  for (std::error_code ec : batch.errors) {
    if (ec) {
      co_return ec;
    }
  }
  co_return Result<void>{};
}

// Looks the misses up (one pass over the index) and groups them into pieces in disk order.
Task<Result<void>> LocalChunkStore::plan_pieces(ReadBatch& batch,
                                                std::span<const std::size_t> misses) {
  std::vector<ChunkId> ids(misses.size());
  for (std::size_t k = 0; k < misses.size(); ++k) {
    ids[k] = batch.ids[misses[k]];
  }
  std::vector<std::optional<Entry>> found(misses.size());
  batch.drops_before = drops_;
  ++index_readers_;
  auto looked_up = co_await index_->find_many(ids, found);
  --index_readers_;
  if (!looked_up) {
    co_return looked_up;
  }
  std::vector<std::size_t> order;  // into misses
  order.reserve(misses.size());
  for (std::size_t k = 0; k < misses.size(); ++k) {
    if (!found[k]) {
      batch.errors[misses[k]] = make_error(errc::not_found);
    } else if (found[k]->length_bytes != batch.outs[misses[k]].size()) {
      batch.errors[misses[k]] = make_error(errc::invalid_argument);
    } else {
      order.push_back(k);
    }
  }
  update_stats([&](ChunkStoreStats& s) { s.cache_misses += order.size(); });
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::pair(found[a]->offset_bytes, misses[a]) <
           std::pair(found[b]->offset_bytes, misses[b]);
  });
  batch.wants.reserve(order.size());
  for (std::size_t k : order) {
    // Two indexed ids never share an offset (one index pass): the same offset is the same id.
    if (batch.pieces.empty() || batch.pieces.back().entry.offset_bytes != found[k]->offset_bytes) {
      batch.pieces.push_back({ids[k], *found[k], batch.wants.size(), batch.wants.size(), {}});
    }
    batch.wants.push_back(misses[k]);
    batch.pieces.back().end = batch.wants.size();
  }
  co_return Result<void>{};
}

// Merges pieces that lie back to back on disk (offset + padded length == next offset) into
// runs of at most kMaxReadRunBytes. A run whose outs lie side by side as its pieces do on disk
// (a volume's chunk-aligned read: its chunks were written together) is read straight into
// them; the others are placed in the staging buffer and copied out.
void LocalChunkStore::plan_runs(ReadBatch& batch) {
  for (std::size_t p = 0; p < batch.pieces.size();) {
    ReadBatch::Run run{batch.pieces[p].entry.offset_bytes, 0, p, p};
    while (run.last < batch.pieces.size()) {
      const Entry& e = batch.pieces[run.last].entry;
      uint64_t length = padded(e.length_bytes);
      if (run.last > run.first && (e.offset_bytes != run.offset_bytes + run.length_bytes ||
                                   run.length_bytes + length > kMaxReadRunBytes)) {
        break;
      }
      run.length_bytes += length;
      ++run.last;
    }
    run.direct = direct_out(batch, run.first, run.last);
    if (run.direct == nullptr) {
      run.staged_at = batch.staged_bytes;
      batch.staged_bytes += run.length_bytes;
    }
    batch.runs.push_back(run);
    p = run.last;
  }
}

// Where pieces [first, last) can be read as they lie: each wanted once, whole 4 KiB blocks (no
// padding to read past an out), and their outs back to back from a 4 KiB aligned address
// (O_DIRECT). Null otherwise. A piece that fails its checksum leaves its bytes in its out,
// which get_many() allows.
std::byte* LocalChunkStore::direct_out(const ReadBatch& batch, std::size_t first,
                                       std::size_t last) {
  std::byte* start = nullptr;
  uint64_t at = 0;
  for (std::size_t p = first; p < last; ++p) {
    const ReadBatch::Piece& piece = batch.pieces[p];
    if (piece.end - piece.begin != 1 || piece.entry.length_bytes % kBlock != 0) {
      return nullptr;
    }
    std::byte* out = batch.outs[batch.wants[piece.begin]].data();
    if (p == first) {
      start = out;
      if (reinterpret_cast<std::uintptr_t>(start) % kBlock != 0) {
        return nullptr;
      }
    } else if (out != start + at) {
      return nullptr;
    }
    at += piece.entry.length_bytes;
  }
  return start;
}

// The batch's staging buffer. A large read borrows a pooled one, which is registered
// (READ_FIXED: the kernel does not pin 256 pages for every 1 MiB read); a small one, a single
// 4 KiB get, gets its own, so that many small gets in flight do not each hold 1 MiB.
void LocalChunkStore::take_staging(ReadBatch& batch) {
  const uint64_t length = batch.staged_bytes;
  batch.pooled = length * 4 >= options_.max_put_bytes;
  if (!batch.pooled) {
    batch.staging.resize(length);
    return;
  }
  if (!staging_pool_.empty()) {
    batch.staging = std::move(staging_pool_.back());
    staging_pool_.pop_back();
  }
  if (batch.staging.size() < std::max(length, options_.max_put_bytes)) {
    data_.unregister_buffer(batch.staging.data());
    batch.staging.resize(std::max(length, options_.max_put_bytes));
  }
  data_.register_buffer(std::span<const std::byte>(batch.staging.data(), batch.staging.size()));
}

// Reads every run at once; they run on this (single-threaded) owner reactor and the last one
// to finish wakes the caller.
Task<void> LocalChunkStore::read_runs(ReadBatch& batch) {
  if (batch.runs.size() == 1) {
    co_await read_run(batch, 0);
    co_return;
  }
  struct Join {
    explicit Join(const asio::any_io_executor& ex)
        : done(ex, asio::steady_timer::time_point::max()) {}
    std::size_t pending = 0;
    asio::steady_timer done;
  };
  Join join(options_.owner);
  join.pending = batch.runs.size();
  for (std::size_t r = 0; r < batch.runs.size(); ++r) {
    asio::co_spawn(
        options_.owner,
        [this, &batch, &join, r]() -> Task<void> {
          co_await read_run(batch, r);
          if (--join.pending == 0) {
            join.done.cancel();
          }
        },
        asio::detached);
  }
  while (join.pending > 0) {
    co_await join.done.async_wait(use_tuple);
  }
}

// One disk read for the run, then each piece on its own: its checksum, and (unless read
// straight into its out) its bytes copied to every out that asked for it. A failure marks
// only the pieces it concerns.
Task<void> LocalChunkStore::read_run(ReadBatch& batch, std::size_t run_index) {
  const ReadBatch::Run& run = batch.runs[run_index];
  std::byte* into = run.direct != nullptr ? run.direct : batch.staging.data() + run.staged_at;
  std::span<std::byte> staged(into, run.length_bytes);
  auto read = co_await data_.read(run.offset_bytes, staged);
  for (std::size_t p = run.first; p < run.last; ++p) {
    ReadBatch::Piece& piece = batch.pieces[p];
    if (!read) {
      piece.error = read.error();
      continue;
    }
    auto bytes =
        staged.subspan(piece.entry.offset_bytes - run.offset_bytes, piece.entry.length_bytes);
    if (ChunkHasher::checksum(bytes) != piece.entry.checksum) {
      piece.error = make_error(errc::checksum_mismatch);
      continue;
    }
    if (run.direct != nullptr) {
      continue;
    }
    for (std::size_t w = piece.begin; w < piece.end; ++w) {
      std::memcpy(batch.outs[batch.wants[w]].data(), bytes.data(), bytes.size());
    }
  }
}

// Looks the pieces up again: a piece dropped while it was read (its space possibly reused) is
// not_found if its read failed, and is not cached. The others enter the read cache, as
// get() has always done with what it read (a large batch only while the cache has room),
// or report their error.
Task<Result<void>> LocalChunkStore::finish_reads(ReadBatch& batch) {
  // Whether each piece is still indexed where it was read from. Only a drop removes an entry
  // (and only after one can its space hold other bytes), so when no chunk was dropped since
  // the pieces were looked up, every one is; otherwise look them up again.
  std::vector<std::optional<Entry>> now;
  if (drops_ != batch.drops_before) {
    std::vector<ChunkId> ids(batch.pieces.size());
    for (std::size_t p = 0; p < batch.pieces.size(); ++p) {
      ids[p] = batch.pieces[p].id;
    }
    now.resize(ids.size());
    ++index_readers_;
    auto looked_up = co_await index_->find_many(ids, now);
    --index_readers_;
    if (!looked_up) {
      co_return looked_up;
    }
  }
  uint64_t read_bytes = 0;
  for (const ReadBatch::Piece& piece : batch.pieces) {
    read_bytes += piece.entry.length_bytes;
  }
  const bool cache = read_bytes < kCacheBypassBytes || cache_has_room(read_bytes);
  for (std::size_t p = 0; p < batch.pieces.size(); ++p) {
    const ReadBatch::Piece& piece = batch.pieces[p];
    const bool same = now.empty() || (now[p] && now[p]->offset_bytes == piece.entry.offset_bytes);
    std::error_code error = piece.error;
    if (error && !same) {
      error = make_error(errc::not_found);
    } else if (error == errc::checksum_mismatch) {
      update_stats([](ChunkStoreStats& s) { ++s.checksum_failures; });
      CAIRN_LOG(error, "io", "chunk {} at offset {} failed its checksum", piece.id.to_hex(),
                piece.entry.offset_bytes);
    } else if (!error && same && cache) {
      std::lock_guard lock(cache_mutex_);
      cache_.insert(piece.id, batch.outs[batch.wants[piece.begin]]);
    }
    for (std::size_t w = piece.begin; w < piece.end; ++w) {
      batch.errors[batch.wants[w]] = error;
    }
  }
  co_return Result<void>{};
}

Task<Result<void>> LocalChunkStore::read_entry(const ChunkId& id, const Entry& e,
                                               std::span<std::byte> out) {
  CAIRN_ASSERT(out.size() == e.length_bytes);
  uint64_t length = padded(e.length_bytes);
  bool direct = reinterpret_cast<uintptr_t>(out.data()) % kBlock == 0 && out.size() == length;
  AlignedBuffer bounce;
  std::span<std::byte> target = out;
  if (!direct) {
    bounce.resize(length);
    target = bounce.span().first(length);
  }
  if (auto r = co_await data_.read(e.offset_bytes, target); !r) {
    co_return r;
  }
  if (!direct) {
    std::memcpy(out.data(), bounce.data(), out.size());
  }
  if (ChunkHasher::checksum(out) != e.checksum) {
    update_stats([](ChunkStoreStats& s) { ++s.checksum_failures; });
    CAIRN_LOG(error, "io", "chunk {} at offset {} failed its checksum", id.to_hex(),
              e.offset_bytes);
    co_return make_error(errc::checksum_mismatch);
  }
  co_return Result<void>{};
}

// ---- ref / unref ----

Task<Result<void>> LocalChunkStore::ref_here(std::span<const ChunkId> ids, int sign) {
  if (auto busy = inflight_batches(ids); !busy.empty()) {
    co_await wait_for(std::move(busy));
  }
  auto result = co_await ref_locked(ids, sign);
  note_index_ram();
  co_return result;
}

Task<Result<void>> LocalChunkStore::ref_locked(std::span<const ChunkId> ids, int sign) {
  auto guard = co_await mutex_.scoped();
  if (failure_) {
    co_return failure_;
  }
  // Each id once, with how often the call names it (sorted: no node per id, as a hash map
  // would allocate).
  std::vector<ChunkId> unique(ids.begin(), ids.end());
  std::sort(unique.begin(), unique.end());
  std::vector<uint32_t> times;
  times.reserve(unique.size());
  std::size_t kept = 0;
  for (std::size_t i = 0; i < unique.size(); ++i) {
    if (kept != 0 && unique[kept - 1] == unique[i]) {
      ++times.back();
    } else {
      unique[kept++] = unique[i];
      times.push_back(1);
    }
  }
  unique.resize(kept);
  // Check the whole call first, so it applies entirely or not at all.
  std::vector<std::optional<Entry>> found(unique.size());
  if (auto r = co_await index_->find_many(unique, found); !r) {
    co_return r;
  }
  for (std::size_t i = 0; i < unique.size(); ++i) {
    if (!found[i]) {
      co_return make_error(errc::not_found);
    }
    if (sign < 0 ? times[i] > found[i]->refs : uint64_t{found[i]->refs} + times[i] > UINT32_MAX) {
      co_return make_error(errc::invalid_argument);
    }
  }
  int64_t referenced = 0;
  Result<void> result;
  for (std::size_t i = 0; i < unique.size(); ++i) {
    if (i % PagedIndex::kPrefetchBatch == 0) {
      index_->prefetch(std::span(unique).subspan(i));
    }
    const ChunkId& id = unique[i];
    Entry& e = *found[i];
    int64_t delta = sign * static_cast<int64_t>(times[i]);
    journal_ref(id, static_cast<int32_t>(delta));
    referenced += delta * e.length_bytes;
    e.refs = static_cast<uint32_t>(e.refs + delta);
    auto r = co_await set_refs(id, e);
    if (!r) {
      result = fail(r.error());
      break;
    }
  }
  forget_dropped();
  update_stats([&](ChunkStoreStats& s) {
    s.referenced_bytes =
        static_cast<uint64_t>(static_cast<int64_t>(s.referenced_bytes) + referenced);
  });
  co_return result;
}

void LocalChunkStore::forget_dropped() {
  if (dropped_.empty()) {
    return;
  }
  {
    std::lock_guard lock(cache_mutex_);
    cache_.erase_many(dropped_);
  }
  dropped_.clear();
}

Task<Result<void>> LocalChunkStore::drop(const ChunkId& id, const Entry& e) {
  auto erased = co_await index_->erase(id);
  if (!erased) {
    co_return erased.error();
  }
  note_dropped(id, e);
  co_return Result<void>{};
}

void LocalChunkStore::note_dropped(const ChunkId& id, const Entry& e) {
  const uint64_t length = padded(e.length_bytes);
  // The space is reused only once the drop is journalled (flush_here), after the caller has
  // erased the dropped chunks from the read cache (forget_dropped()).
  pending_frees_.emplace_back(e.offset_bytes, length);
  dropped_.push_back(id);
  ++drops_;
  update_stats([&](ChunkStoreStats& s) {
    --s.chunks;
    s.physical_bytes -= length;
  });
}

// A coroutine still, for the slow paths; but the common case completes before its first
// suspension point, and a batch of them (a 1 MiB overwrite drops 256 chunks) pays no
// PagedIndex coroutine frames, mutex or eviction pass per chunk.
Task<Result<void>> LocalChunkStore::set_refs(const ChunkId& id, const Entry& e) {
  if (e.refs != 0) {
    if (index_->put_cached(id, e)) {
      co_return Result<void>{};
    }
    co_return co_await index_->put(id, e);
  }
  if (index_->erase_cached(id)) {
    note_dropped(id, e);
    co_return Result<void>{};
  }
  co_return co_await drop(id, e);
}

// ---- flush ----

// Flushes run one at a time (flush_mutex_), so journal records stay in order. The index lock
// is held only to take the pending operations, so puts, refs and unrefs go on while the data
// file and the journal sync; operations that complete meanwhile go to the next flush.
Task<Result<void>> LocalChunkStore::flush_here() {
  // Puts answered before this call must be published first (their data written, their index
  // changes pending), so that this flush makes them durable.
  if (!write_behind_.empty()) {
    co_await wait_for(write_behind_);
  }
  auto flushing = co_await flush_mutex_.scoped();
  std::vector<std::byte> ops;
  std::vector<std::pair<uint64_t, uint64_t>> frees;
  {
    auto guard = co_await mutex_.scoped();
    if (failure_) {
      co_return failure_;
    }
    if (pending_ops_.empty()) {
      co_return Result<void>{};
    }
    if (journal_->used_bytes() + pending_ops_.size() > journal_->capacity_bytes() / 2 ||
        index_over_budget() || index_overfull()) {
      co_return co_await checkpoint_locked();
    }
    ops.swap(pending_ops_);
    frees.swap(pending_frees_);
  }
  // Data first: a journalled chunk's bytes must already be on stable storage.
  auto r = co_await data_.sync();
  bool full = false;
  if (r) {
    auto lsn = journal_->append(ops);
    full = !lsn && lsn.error() == errc::no_space;
    r = lsn ? Result<void>{} : Result<void>{lsn.error()};
  }
  if (r) {
    r = co_await journal_->sync();
  }
  auto guard = co_await mutex_.scoped();
  if (full) {
    // Put the operations back in front of newer ones and checkpoint instead.
    pending_ops_.insert(pending_ops_.begin(), ops.begin(), ops.end());
    pending_frees_.insert(pending_frees_.end(), frees.begin(), frees.end());
    co_return co_await checkpoint_locked();
  }
  if (!r) {
    co_return fail(r.error());
  }
  allocator_.free_many(frees);
  co_return Result<void>{};
}

// With the index lock held: syncs the data file, writes the whole index as a checkpoint and
// releases the journal before it.
Task<Result<void>> LocalChunkStore::checkpoint_locked() {
  auto r = co_await data_.sync();
  if (r) {
    r = co_await write_checkpoint();
  }
  if (!r) {
    co_return fail(r.error());
  }
  pending_ops_.clear();
  allocator_.free_many(pending_frees_);
  pending_frees_.clear();
  if (index_overfull()) {
    if (auto g = co_await grow_index(); !g) {
      co_return fail(g.error());
    }
  }
  note_index_ram();  // the checkpoint made every page evictable
  co_return Result<void>{};
}

Result<void> LocalChunkStore::fail(std::error_code error) {
  failure_ = error;
  CAIRN_LOG(error, "io", "chunk store flush failed, store is now read-only: {}", error.message());
  return error;
}

// The index's pages are exactly the journalled state plus pending_ops_, and the data file is
// synced: once the dirty pages are on disk and the journal names their checkpoint, everything
// journalled before it is redundant.
Task<Result<void>> LocalChunkStore::write_checkpoint() {
  auto written = co_await index_->checkpoint();
  if (!written) {
    co_return written.error();
  }
  co_return co_await commit_table_record(generation_, *written, index_->buckets());
}

// Journals the record that names table `generation` as of its checkpoint `at` (a
// table_checkpoint for generation 0, else a table_switch), syncs it and releases the journal
// before it: from then on that table alone holds the state the journal had before.
Task<Result<void>> LocalChunkStore::commit_table_record(uint64_t generation,
                                                        PagedIndex::Checkpoint at,
                                                        uint64_t buckets) {
  ByteWriter w;
  if (generation == 0) {
    w.put(static_cast<uint8_t>(Op::table_checkpoint));
    w.put(at.seq);
    w.put(at.overflow_pages);
    CAIRN_ASSERT(w.bytes().size() == kTableCheckpointBytes);
  } else {
    w.put(static_cast<uint8_t>(Op::table_switch));
    w.put(generation);
    w.put(at.seq);
    w.put(at.overflow_pages);
    w.put(buckets);
    CAIRN_ASSERT(w.bytes().size() == kTableSwitchBytes);
  }
  auto lsn = journal_->append(w.bytes());
  if (!lsn) {
    co_return lsn.error();
  }
  if (auto r = co_await journal_->sync(); !r) {
    co_return r;
  }
  co_return co_await journal_->release_before(*lsn);
}

// ---- table growth ----

// Table files of generations other than the current one are leftovers: the previous one if a
// crash came between the switch record and its deletion, the next one if a crash (or an
// error) interrupted a rebuild before its switch record was durable. Generations advance one
// at a time and open() deletes both, so no other can exist.
Result<void> LocalChunkStore::remove_other_tables() {
  if (options_.index_files == nullptr) {
    return {};
  }
  if (generation_ > 0) {
    if (auto r = options_.index_files->remove(generation_ - 1); !r) {
      return r;
    }
  }
  return options_.index_files->remove(generation_ + 1);
}

uint64_t LocalChunkStore::grown_buckets() const {
  uint64_t chunks = stats().chunks;
  uint64_t old = index_->buckets();
  uint64_t factor = 4;
  while (chunks / (old * factor) >= 64 && factor < (1ull << 16)) {
    factor *= 2;
  }
  return old * factor;
}

// With mutex_ held, right after a checkpoint: the old table alone holds the whole state, and
// nothing changes the index until this returns.
Task<Result<void>> LocalChunkStore::grow_index() {
  uint64_t buckets = grown_buckets();
  uint64_t old_buckets = index_->buckets();
  uint64_t next = generation_ + 1;
  auto start = std::chrono::steady_clock::now();
  auto built = co_await build_table(next, buckets);
  if (!built) {
    // The journal still names the old table, which is whole: keep it, retry at a later
    // checkpoint. Whatever the new file holds is never read.
    CAIRN_LOG(warn, "io", "index table: growing to {} buckets failed, keeping {}: {}", buckets,
              old_buckets, built.error().message());
    if (auto r = options_.index_files->remove(next); !r) {
      CAIRN_LOG(warn, "io", "index table generation {} stays until the next open", next);
    }
    co_return Result<void>{};
  }
  if (auto r = co_await switch_table(std::move(*built)); !r) {
    co_return r;
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  CAIRN_LOG(info, "io",
            "index table grew from {} to {} buckets ({} chunks) in {} ms: generation {}",
            old_buckets, buckets, stats().chunks, ms, generation_);
  co_return Result<void>{};
}

// Builds the table of `generation` from the current one and checkpoints it (its file synced);
// nothing names it yet.
Task<Result<LocalChunkStore::Table>> LocalChunkStore::build_table(uint64_t generation,
                                                                  uint64_t buckets) {
  // A file left by an earlier attempt must not be taken for a formatted table.
  if (auto r = options_.index_files->remove(generation); !r) {
    co_return r.error();
  }
  auto file = options_.index_files->open(generation);
  if (!file) {
    co_return file.error();
  }
  auto index = co_await PagedIndex::open(**file, {buckets, options_.index_cache_bytes},
                                         PagedIndex::Checkpoint{});
  if (!index) {
    co_return index.error();
  }
  // An empty table, nothing to visit: scanning it lets pages over its budget be written back.
  if (auto r = co_await (*index)->scan([](const ChunkId&, const Entry&) {}); !r) {
    co_return r.error();
  }
  if (auto r = co_await index_->copy_to(**index); !r) {
    co_return r.error();
  }
  auto at = co_await (*index)->checkpoint();
  if (!at) {
    co_return at.error();
  }
  co_return Table{generation, std::move(*index), *at};
}

// Journals the switch (the commit point), then drops the old table.
Task<Result<void>> LocalChunkStore::switch_table(Table table) {
  if (auto r = co_await commit_table_record(table.generation, table.at, table.index->buckets());
      !r) {
    co_return r;
  }
  // Lookups without mutex_ may be inside the old index: let them finish before it goes.
  while (index_readers_ > 0) {
    co_await asio::post(options_.owner, asio::use_awaitable);
  }
  uint64_t old = generation_;
  index_ = std::move(table.index);
  generation_ = table.generation;
  if (auto r = options_.index_files->remove(old); !r) {
    CAIRN_LOG(warn, "io", "old index table generation {} stays until the next open", old);
  }
  co_return Result<void>{};
}

}  // namespace cairn::io
