// DurableMap: a volume's ChunkMap made crash-safe by a journal and checkpoints
// (docs/volumes.md, "Durability").
//
// - set() changes the map at once (reads see it) and queues a journal entry.
// - commit() makes every set() completed before it durable: it flushes the store (so the new
//   chunks exist), then appends and syncs the journal records, and only then drops the
//   references the entries replaced. Commits are serialized; concurrent callers group.
// - checkpoint() writes dirty map pages as chunks, flushes the store, stores a new root by
//   compare-and-swap, releases the journal below the root's LSN, and only then drops the map
//   chunks the old root named. It runs when the journal is half full or refuses an append,
//   when too many replaced pages wait, and on resize.
// - open() loads the root and replays the journal records at or after its LSN.
// A crash may therefore leak references (space reclaimed by a later GC), never lose data.
//
// Without a LogFactory (unit tests, tools that open a volume briefly) every commit is a
// checkpoint: slower, equally durable.
//
// Ownership: a data id given to set() carries one store reference, which the map now owns.
// Threading: the volume's reactor thread only. The store, meta store and log factory must
// outlive the map.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "base/asio.h"
#include "base/result.h"
#include "blockmap/chunk_map.h"
#include "blockmap/map_journal.h"
#include "blockmap/range_lock.h"
#include "io/chunk_store.h"
#include "io/meta_store.h"
#include "io/record_log.h"

namespace cairn::blockmap {

struct DurableMapOptions {
  uint64_t cache_bytes = 64ull << 20;       // map page cache
  std::size_t max_pending_entries = 16384;  // journal entries queued before a commit
  std::size_t max_released_pages = 4096;    // replaced map chunks before a checkpoint
};

class DurableMap {
 public:
  // Opens the map whose root is at `root_key`, or creates an empty one of `size_bytes` if
  // there is none (first removing any stale journal named `journal_name`). `logs` may be null.
  static Task<Result<std::unique_ptr<DurableMap>>> open(
      std::string root_key, std::string journal_name, uint64_t size_bytes,
      uint32_t chunk_size_bytes, io::ChunkStore& store, io::MetaStore& meta, io::LogFactory* logs,
      DurableMapOptions options);

  DurableMap(const DurableMap&) = delete;
  DurableMap& operator=(const DurableMap&) = delete;
  ~DurableMap();

  [[nodiscard]] uint64_t size_bytes() const noexcept { return size_bytes_; }
  [[nodiscard]] uint64_t chunk_count() const noexcept { return map_.chunk_count(); }
  [[nodiscard]] uint64_t mapped_chunks() const noexcept { return map_.mapped_chunks(); }
  [[nodiscard]] ChunkMap::Stats cache_stats() const noexcept { return map_.stats(); }
  [[nodiscard]] uint64_t generation() const noexcept { return generation_; }
  [[nodiscard]] uint64_t checkpoints() const noexcept { return checkpoints_; }

  Task<Result<io::ChunkId>> get(uint64_t index);
  [[nodiscard]] uint64_t holes_from(uint64_t index) const noexcept {
    return map_.holes_from(index);
  }
  // Maps `index` to `id` (owning its reference). On failure the reference is dropped.
  Task<Result<void>> set(uint64_t index, io::ChunkId id);
  // Changes the size (the caller has zeroed the tail of a partial last chunk) and checkpoints.
  Task<Result<void>> resize(uint64_t size_bytes);
  Task<Result<void>> commit();
  Task<Result<void>> checkpoint();
  // Deletes the volume's map: erases the root and the journal, then drops every reference.
  Task<Result<void>> destroy();

 private:
  DurableMap(std::string root_key, std::string journal_name, uint64_t size_bytes,
             uint32_t chunk_size_bytes, io::ChunkStore& store, io::MetaStore& meta,
             io::LogFactory* logs, DurableMapOptions options);

  Task<Result<void>> load_or_create();
  Task<Result<void>> replay(uint64_t from_lsn);
  Task<Result<void>> commit_locked();
  Task<Result<void>> append_and_sync(std::span<const JournalEntry> entries);
  Task<Result<void>> checkpoint_locked();
  Task<void> unref(std::vector<io::ChunkId> ids);
  std::error_code fail(std::error_code ec, const char* what);

  std::string root_key_;
  std::string journal_name_;
  uint64_t size_bytes_;
  uint32_t chunk_size_bytes_;
  io::ChunkStore& store_;
  io::MetaStore& meta_;
  io::LogFactory* logs_;
  DurableMapOptions options_;
  ChunkMap map_;
  std::unique_ptr<io::RecordLog> log_;
  int64_t root_revision_ = 0;  // 0: no root stored yet
  uint64_t generation_ = 0;
  uint64_t next_lsn_ = 0;  // every record appended so far has a smaller LSN
  uint64_t checkpoints_ = 0;
  std::vector<JournalEntry> pending_;        // set() entries not yet in the journal
  std::vector<io::ChunkId> pending_unrefs_;  // ids those entries replaced
  RangeLock commit_lock_;                    // used as a mutex
  std::error_code failed_;                   // sticky: the map is no longer writable
};

}  // namespace cairn::blockmap
