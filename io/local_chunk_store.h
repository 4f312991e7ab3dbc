// LocalChunkStore: the durable ChunkStore of one node, on a data BlockFile (a file or a raw
// block device) and an index journal (a RecordLog). Format and argument:
// docs/on-disk-format.md.
//
// Data: each chunk is stored padded to 4 KiB blocks, written with O_DIRECT from an aligned
// staging buffer (a registered one the put copies into, or put_from()'s own buffer, kept until
// written); the new chunks of one put() are one contiguous run when free space allows.
// Chunks carry no inline header (with O_DIRECT that would cost a whole block per 4 KiB chunk);
// instead, as ZFS block pointers do, the index entry holds the chunk's XXH3-64 checksum and
// length, and every read is verified against it (a mismatch is errc::checksum_mismatch and
// counts in stats; wrong bytes are never returned). get_many() reads chunks that lie side by
// side on disk (a put's chunks do) with one request per run of up to kMaxReadRunBytes, straight
// into the caller's outs when they lie back to back as the run's chunks do (4 KiB aligned),
// else into a registered staging buffer, and verifies each chunk of the run on its own.
//
// Index: chunk id -> (offset, length, checksum, refcount), a PagedIndex (an on-disk hash table
// of 4 KiB pages behind an LRU page cache of Options::index_cache_bytes), made durable by the
// journal: flush() syncs the data file first and then appends the changes since the last
// flush as one journal record and syncs the journal, so a journalled chunk's bytes are always
// on disk. When the journal passes half full or the index's dirty pages pass half their
// budget, flush() checkpoints: it writes the dirty pages (PagedIndex::checkpoint), journals
// "table checkpoint N" and releases what came before. Space of a chunk whose count reaches
// zero is reused only after the flush that journalled the drop.
//
// Dedup: a put whose address is already in the index is confirmed by comparing bytes (from
// the read cache or the disk) unless the hasher is cryptographic; different bytes are a
// collision, and the chunk is tried under address(data, 1), (data, 2), ...
//
// Threading: the store belongs to an owner executor (one reactor; the BlockFile and the
// journal do their I/O on its thread). Every public method may be called from any thread: it
// hops to the owner with co_spawn and completes on the caller's executor (a caller already on
// the owner's thread runs it inline, with no hop). On the owner, one
// AsyncMutex serializes changes to the index and the journal (ref, unref, flush, and the
// planning and finishing steps of put); a put's data write runs outside it, so puts overlap.
// A put that finds its bytes in another put's write in flight adds its reference to that
// chunk and completes only after that put does. get() takes no lock. stats() may be called
// from any thread.
//
// Write-behind (Options::write_behind_puts): a put copies its new chunks into a staging buffer (or
// keeps put_from()'s) and is answered there, while its data write and publication run on in a
// detached coroutine (the volatile write cache of BRIEF, "Durability"). flush() first waits for
// every such put answered before it; get_many(), ref(), unref() and refs() of a chunk still in
// flight wait for its put; stats() counts a put's chunks once it is published.
//
// Growth: at a checkpoint that leaves too many chunks per bucket, the store rebuilds the index
// into a table file of the next generation with more buckets and journals the switch (stop
// the world: mutex_ is held throughout; see docs/on-disk-format.md for the crash argument).
//
// Lifetimes: the data file, the index table's files and the hasher are borrowed and must
// outlive the store (or the data file and the table files are owned, from open_dir()); the
// journal is owned. Caller buffers are borrowed until the call completes. After a journal or
// data-sync failure the store is failed: every later mutation returns the error.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/aligned_buffer.h"
#include "io/async_mutex.h"
#include "io/block_file.h"
#include "io/chunk_cache.h"
#include "io/chunk_hash.h"
#include "io/chunk_store.h"
#include "io/extent_allocator.h"
#include "io/index_table_files.h"
#include "io/paged_index.h"
#include "io/record_log.h"

namespace cairn::io {

class DiskRing;

class LocalChunkStore final : public ChunkStore {
 public:
  static constexpr uint64_t kMaxChunkBytes = 64 * 1024;
  static constexpr uint64_t kDataStartBytes = 4096;         // the first block is reserved
  static constexpr uint32_t kMaxOrdinal = 64;               // colliding chunks tried per address
  static constexpr uint64_t kLargePutBytes = 64 * 1024;     // see Options::max_fragmented_percent
  static constexpr uint64_t kMaxReadRunBytes = 1ull << 20;  // one disk read of get_many()
  // A flush that finds more chunks than this many per index bucket (twice the 64 the table
  // is sized for at creation) checkpoints, and the checkpoint grows the table (needs
  // Options::index_files): the new bucket count is the old times the smallest power of two >= 4
  // that brings the fill to at most 64, so it lands between 32 and 64 entries per bucket (one page
  // per chain).
  static constexpr uint64_t kGrowEntriesPerBucket = 128;

  struct Options {
    asio::any_io_executor owner;  // required
    uint64_t capacity_bytes = 0;  // data file size to use (grown at open); 0: its size now
    // When full, grow the data file by this much (IORING_OP_FALLOCATE), up to
    // max_capacity_bytes (0: no limit but the file system). grow_step_bytes 0: never grow.
    uint64_t grow_step_bytes = 0;
    uint64_t max_capacity_bytes = 0;
    // A put of kLargePutBytes or more that no free extent holds grows the data file (when
    // growth is allowed) instead of being scattered over small holes, while free space is at
    // most this percentage of capacity. Bounds the space stranded in holes too small for
    // large puts; 0: grow only when full.
    uint32_t max_fragmented_percent = 25;
    uint64_t cache_bytes = 64ull << 20;
    uint64_t max_put_bytes = 1ull << 20;  // staging buffer allocated at open (grows if needed)
    // The index table: either index_files (borrowed; the table grows when it fills, see
    // kGrowEntriesPerBucket), or index_file (borrowed; one file, generation 0 only, never grown).
    IndexTableFiles* index_files = nullptr;
    BlockFile* index_file = nullptr;
    uint64_t index_cache_bytes = 64ull << 20;
    uint64_t index_buckets = 0;  // when the table is created; 0: from capacity_bytes
    // Up to this many puts are answered as soon as their chunks are staged in memory, before
    // their data write completes (a disk's volatile write cache: flush() waits for them, a
    // reader of their chunks waits for its put, and a failed write fails the store so that
    // the next flush() reports it). Each holds a staging buffer of max_put_bytes or more.
    // 0: a put is answered once its chunks are written and indexed.
    std::size_t write_behind_puts = 0;
  };

  // Replays the journal and rebuilds the index and free space. Run on the owner's thread.
  static Task<Result<std::unique_ptr<LocalChunkStore>>> open(BlockFile& data,
                                                             std::unique_ptr<RecordLog> journal,
                                                             const ChunkHasher& hasher,
                                                             Options options);

  // Opens (creating) `<dir>/chunks.data`, `<dir>/chunks-index.log` and the index table,
  // `<dir>/chunks-index.tbl` or, once grown, `<dir>/chunks-index.<g>.tbl` (DirIndexTableFiles),
  // with O_DIRECT files.
  // With data_path set, chunk data lives there instead: a file, or a raw block device whose
  // whole size is the store's fixed capacity (it is never grown).
  struct DirOptions {
    std::string data_path;  // empty: <dir>/chunks.data
    uint64_t data_capacity_bytes = 1ull << 30;
    uint64_t journal_capacity_bytes = 256ull << 20;
    bool allow_buffered = false;
    DiskRing* ring = nullptr;  // null: the calling reactor's
  };
  static Task<Result<std::unique_ptr<LocalChunkStore>>> open_dir(const std::string& dir,
                                                                 const ChunkHasher& hasher,
                                                                 Options options,
                                                                 DirOptions dir_options);

  ~LocalChunkStore() override;

  Task<Result<void>> put(std::span<const std::span<const std::byte>> chunks,
                         std::span<ChunkId> ids) override;
  // Keeps `buffer` as the put's staging buffer (no copy) when the new chunks total 64 KiB or
  // more and each lies in it 4 KiB aligned; the caller gets a spare buffer in exchange.
  Task<Result<void>> put_from(AlignedBuffer& buffer,
                              std::span<const std::span<const std::byte>> chunks,
                              std::span<ChunkId> ids) override;
  Task<Result<void>> get(const ChunkId& id, std::span<std::byte> out) override;
  Task<Result<void>> get_many(std::span<const ChunkId> ids,
                              std::span<const std::span<std::byte>> outs) override;
  Task<Result<void>> ref(std::span<const ChunkId> ids) override;
  Task<Result<void>> unref(std::span<const ChunkId> ids) override;
  Task<Result<void>> flush() override;
  [[nodiscard]] ChunkStoreStats stats() const override;

  // The chunk's reference count, or 0 if it is not stored (owner thread; for tests).
  Task<uint64_t> refs(ChunkId id);
  // Where a chunk's bytes are (owner thread; for corruption tests).
  Task<std::optional<uint64_t>> offset_of(ChunkId id);
  // The index table's generation (0 until it first grows; owner thread).
  [[nodiscard]] uint64_t index_generation() const noexcept { return generation_; }
  // The index table's bucket count (owner thread).
  [[nodiscard]] uint64_t index_buckets() const noexcept { return index_->buckets(); }

 private:
  using Entry = IndexEntry;
  struct Plan;
  struct Batch;
  // A new chunk of a put whose data write is in flight: other puts of the same bytes add
  // their references to it and wait for its batch.
  struct Inflight {
    Plan* plan;
    std::size_t fresh_index;
  };
  using Counts = std::unordered_map<ChunkId, uint32_t, ChunkIdHash>;
  struct ReadBatch;

  LocalChunkStore(BlockFile& data, std::unique_ptr<RecordLog> journal, const ChunkHasher& hasher,
                  Options options);

  [[nodiscard]] bool on_owner() const noexcept;
  Task<Result<void>> load();
  Task<Result<void>> apply_record(std::span<const std::byte> record);
  Task<Result<std::optional<Entry>>> lookup(const ChunkId& id);
  // `donor`: put_from()'s buffer, or null.
  Task<Result<void>> put_here(std::span<const std::span<const std::byte>> chunks,
                              std::span<ChunkId> ids, AlignedBuffer* donor);
  // `first` is the chunk's ordinal-0 address and `first_found` its index entry, looked up for
  // the whole put at once.
  Task<Result<ChunkId>> plan_chunk(std::span<const std::byte> chunk, Plan& plan,
                                   const ChunkId& first, const std::optional<Entry>& first_found);
  Task<void> read_candidates(std::span<const std::span<const std::byte>> chunks,
                             std::span<const ChunkId> first,
                             std::span<const std::optional<Entry>> found, Plan& plan);
  enum class Match { same, different };
  Task<Result<Match>> same_bytes(const ChunkId& id, const Entry& e,
                                 std::span<const std::byte> chunk, const Plan& plan);
  Task<Result<void>> begin_put(std::span<const std::span<const std::byte>> chunks,
                               std::span<ChunkId> ids, Plan& plan);
  AlignedBuffer stage(Plan& plan);
  [[nodiscard]] static bool can_adopt(const Plan& plan, const AlignedBuffer& donor) noexcept;
  AlignedBuffer adopt(Plan& plan, AlignedBuffer& donor);
  Task<Result<void>> write_staged(const Plan& plan);
  Task<Result<void>> complete_put(std::unique_ptr<Plan> plan, AlignedBuffer staging, bool behind);
  using Batches = std::vector<std::shared_ptr<Batch>>;
  // The batches of the puts in flight that hold any of `ids`: empty, with nothing allocated,
  // when none does (the common case), so callers suspend in wait_for() only when one does.
  [[nodiscard]] Batches inflight_batches(std::span<const ChunkId> ids) const;
  static Task<void> wait_for(Batches batches);
  Task<Result<void>> finish_put(Plan& plan, bool ok);
  Task<Result<void>> drop_refs(const Counts& counts);
  Task<Result<void>> allocate(Plan& plan);
  bool scatter(Plan& plan, uint64_t total);
  [[nodiscard]] bool grow_instead_of_scattering() const;
  Task<bool> grow_for(uint64_t length_bytes);
  Task<Result<void>> get_many_here(std::span<const ChunkId> ids,
                                   std::span<const std::span<std::byte>> outs);
  Task<Result<void>> read_misses(std::span<const ChunkId> ids,
                                 std::span<const std::span<std::byte>> outs,
                                 std::vector<std::size_t> misses);
  std::vector<std::size_t> serve_cached(std::span<const ChunkId> ids,
                                        std::span<const std::span<std::byte>> outs);
  Task<Result<void>> plan_pieces(ReadBatch& batch, std::span<const std::size_t> misses);
  static void plan_runs(ReadBatch& batch);
  static std::byte* direct_out(const ReadBatch& batch, std::size_t first, std::size_t last);
  Task<void> read_runs(ReadBatch& batch);
  Task<void> read_run(ReadBatch& batch, std::size_t run);
  Task<Result<void>> finish_reads(ReadBatch& batch);
  void take_staging(ReadBatch& batch);
  Task<Result<void>> read_entry(const ChunkId& id, const Entry& e, std::span<std::byte> out);
  Task<Result<void>> ref_here(std::span<const ChunkId> ids, int sign);
  Task<Result<void>> ref_locked(std::span<const ChunkId> ids, int sign);
  Task<Result<void>> flush_here();
  Task<Result<void>> write_checkpoint();
  Task<Result<void>> commit_table_record(uint64_t generation, PagedIndex::Checkpoint at,
                                         uint64_t buckets);
  Task<Result<void>> checkpoint_locked();
  struct Table {
    uint64_t generation = 0;
    std::unique_ptr<PagedIndex> index;
    PagedIndex::Checkpoint at;
  };
  [[nodiscard]] uint64_t grown_buckets() const;
  Task<Result<void>> grow_index();
  Task<Result<Table>> build_table(uint64_t generation, uint64_t buckets);
  Task<Result<void>> switch_table(Table table);
  Result<void> remove_other_tables();
  [[nodiscard]] bool index_over_budget() const noexcept;
  [[nodiscard]] bool index_overfull() const;
  void note_index_ram();
  Result<void> fail(std::error_code error);
  // Appends one journal record (AddRecord, RefRecord) to pending_ops_.
  template <class Record>
  void journal(const Record& r);
  void journal_add(const ChunkId& id, const Entry& e);
  void journal_ref(const ChunkId& id, int32_t delta);
  // Under the lock, for a chunk whose last reference went: erases its index entry and queues
  // its space (pending_frees_) and its cache entry (dropped_).
  Task<Result<void>> drop(const ChunkId& id, const Entry& e);
  // After drop()'s index erase: queues the chunk's space and its cache entry for release.
  void note_dropped(const ChunkId& id, const Entry& e);
  // Writes back a changed reference count (`e.refs`; a chunk at zero is dropped), without
  // suspending when the index pages are cached (PagedIndex::put_cached, erase_cached).
  Task<Result<void>> set_refs(const ChunkId& id, const Entry& e);
  // Erases the chunks drop() queued from the read cache, in one pass; before the lock is
  // released, so that their space is never reused while they are cached.
  void forget_dropped();
  // Copies a published put's new chunks into the read cache, a group at a time under
  // cache_mutex_, with nothing allocated.
  void insert_fresh(const Plan& plan);
  void update_stats(const std::function<void(ChunkStoreStats&)>& f) const;
  [[nodiscard]] static uint64_t padded(uint64_t length_bytes) noexcept;
  [[nodiscard]] bool cache_has_room(uint64_t bytes) const;

  BlockFile& data_;
  std::unique_ptr<BlockFile> owned_data_;
  std::unique_ptr<IndexTableFiles> owned_index_files_;
  std::unique_ptr<RecordLog> journal_;
  const ChunkHasher& hasher_;
  Options options_;
  AsyncMutex mutex_;        // the index, allocator and pending journal operations
  AsyncMutex flush_mutex_;  // one flush at a time; taken before mutex_
  std::error_code failure_;

  std::unique_ptr<PagedIndex> index_;
  uint64_t generation_ = 0;  // of index_'s table file
  // Coroutines in a PagedIndex call without mutex_ (get_many's lookups): a table switch waits
  // for them to leave the old index before destroying it.
  uint64_t index_readers_ = 0;
  ExtentAllocator allocator_;
  // The read cache is the one part of the store used off the owner's thread: a reader on
  // another reactor copies its hits out under cache_mutex_ and hops to the owner only for
  // misses (a hop is two cross-thread wake-ups, most of a hot QD1 read's latency). Never held
  // across a suspension.
  mutable std::mutex cache_mutex_;
  ChunkCache cache_;
  std::vector<std::byte> pending_ops_;                        // journal ops since the last flush
  std::vector<std::pair<uint64_t, uint64_t>> pending_frees_;  // reusable after the flush
  std::vector<ChunkId> dropped_;  // by drop(), to leave the read cache (forget_dropped())
  // Chunks dropped since open: a batch read that saw no drop while it read needs no second
  // index lookup to know its pieces are still where it read them (finish_reads()).
  uint64_t drops_ = 0;
  std::unordered_map<ChunkId, Inflight, ChunkIdHash> inflight_;
  std::vector<AlignedBuffer> staging_pool_;  // one per put (and large get) in flight
  // Buffers that put_from() adopted, once written: never registered with the ring, so that a
  // caller may be handed one in exchange and free it (a registered buffer must not be freed).
  std::vector<AlignedBuffer> spare_;
  uint64_t spare_bytes_ = 0;
  // Puts answered before their chunks were published, oldest first (Options::write_behind_puts).
  Batches write_behind_;

  mutable std::mutex stats_mutex_;
  mutable ChunkStoreStats stats_;
};

}  // namespace cairn::io
