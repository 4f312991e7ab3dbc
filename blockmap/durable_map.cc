#include "blockmap/durable_map.h"

#include <algorithm>

#include "base/assert.h"
#include "base/log.h"
#include "blockmap/errors.h"
#include "io/errors.h"

namespace cairn::blockmap {
namespace {

constexpr std::size_t kMaxUnrefBatch = 4096;

uint64_t chunks_for(uint64_t size_bytes, uint32_t chunk_size_bytes) noexcept {
  return size_bytes / chunk_size_bytes + (size_bytes % chunk_size_bytes != 0 ? 1 : 0);
}

}  // namespace

DurableMap::DurableMap(std::string root_key, std::string journal_name, uint64_t size_bytes,
                       uint32_t chunk_size_bytes, io::ChunkStore& store, io::MetaStore& meta,
                       io::LogFactory* logs, DurableMapOptions options)
    : root_key_(std::move(root_key)),
      journal_name_(std::move(journal_name)),
      size_bytes_(size_bytes),
      chunk_size_bytes_(chunk_size_bytes),
      store_(store),
      meta_(meta),
      logs_(logs),
      options_(options),
      map_(store, options.cache_bytes, chunks_for(size_bytes, chunk_size_bytes)) {}

DurableMap::~DurableMap() = default;

std::error_code DurableMap::fail(std::error_code ec, const char* what) {
  CAIRN_LOG(error, "volume-map", "{} ({}): {}", what, root_key_, ec.message());
  if (!failed_) {
    failed_ = make_error_code(errc::io_error);
  }
  return failed_;
}

Task<Result<std::unique_ptr<DurableMap>>> DurableMap::open(
    std::string root_key, std::string journal_name, uint64_t size_bytes, uint32_t chunk_size_bytes,
    io::ChunkStore& store, io::MetaStore& meta, io::LogFactory* logs, DurableMapOptions options) {
  std::unique_ptr<DurableMap> m(new DurableMap(std::move(root_key), std::move(journal_name),
                                               size_bytes, chunk_size_bytes, store, meta, logs,
                                               options));
  if (auto r = co_await m->load_or_create(); !r) {
    co_return r.error();
  }
  co_return m;
}

Task<Result<void>> DurableMap::load_or_create() {
  auto kv = co_await meta_.get(root_key_);
  if (!kv) {
    co_return fail(kv.error(), "cannot read the map root");
  }
  if (!kv->has_value()) {
    // A new volume. A journal left by a deleted volume of the same name is stale.
    if (logs_ != nullptr) {
      (void)co_await logs_->remove(journal_name_);
      auto log = co_await logs_->open(journal_name_);
      if (!log) {
        co_return fail(log.error(), "cannot create the map journal");
      }
      log_ = std::move(*log);
    }
    auto guard = co_await commit_lock_.lock(0, 0, RangeLock::Mode::exclusive);
    co_return co_await checkpoint_locked();
  }
  auto root = decode_root((*kv)->value);
  if (!root) {
    co_return fail(root.error(), "the map root is unreadable");
  }
  if (root->chunk_size_bytes != chunk_size_bytes_ ||
      root->chunk_count != chunks_for(root->size_bytes, chunk_size_bytes_)) {
    co_return fail(make_error_code(errc::invalid_argument), "the map root does not fit");
  }
  if (auto r = co_await map_.load(*root); !r) {
    co_return fail(r.error(), "cannot load the map directory");
  }
  size_bytes_ = root->size_bytes;
  root_revision_ = (*kv)->mod_revision;
  generation_ = root->generation;
  next_lsn_ = root->checkpoint_lsn;
  if (logs_ != nullptr) {
    auto log = co_await logs_->open(journal_name_);
    if (!log) {
      co_return fail(log.error(), "cannot open the map journal");
    }
    log_ = std::move(*log);
    co_return co_await replay(root->checkpoint_lsn);
  }
  co_return Result<void>{};
}

// Applies the journal records at or after `from_lsn`. The replayed entries' old ids are not
// released: they were released before the crash or are leaked (never freed twice).
Task<Result<void>> DurableMap::replay(uint64_t from_lsn) {
  std::vector<JournalEntry> entries;
  bool malformed = false;
  uint64_t records = 0;
  auto r = co_await log_->replay([&](uint64_t lsn, std::span<const std::byte> record) {
    next_lsn_ = std::max(next_lsn_, lsn + 1);
    if (lsn < from_lsn || malformed) {
      return;
    }
    records++;
    if (!decode_journal_record(record, entries)) {
      malformed = true;
    }
  });
  if (!r) {
    co_return fail(r.error(), "cannot replay the map journal");
  }
  if (malformed) {
    co_return fail(make_error_code(errc::io_error), "a map journal record is malformed");
  }
  for (const JournalEntry& e : entries) {
    if (e.index >= map_.chunk_count()) {
      co_return fail(make_error_code(errc::io_error), "a journal entry is past the end");
    }
    if (auto s = co_await map_.set(e.index, e.id); !s) {
      co_return fail(s.error(), "cannot apply the map journal");
    }
  }
  CAIRN_LOG(info, "volume-map", "{}: replayed {} journal records ({} entries) from lsn {}",
            root_key_, records, entries.size(), from_lsn);
  co_return Result<void>{};
}

Task<Result<io::ChunkId>> DurableMap::get(uint64_t index) {
  co_return co_await map_.get(index);
}

Task<Result<void>> DurableMap::set(uint64_t index, io::ChunkId id) {
  if (failed_) {
    if (!id.is_null()) {
      co_await unref(std::vector<io::ChunkId>(1, id));
    }
    co_return failed_;
  }
  auto old = co_await map_.set(index, id);
  if (!old) {
    if (!id.is_null()) {
      co_await unref(std::vector<io::ChunkId>(1, id));
    }
    co_return fail(old.error(), "cannot update the map");
  }
  pending_.push_back(JournalEntry{index, id});
  if (!old->is_null()) {
    pending_unrefs_.push_back(*old);
  }
  if (pending_.size() >= options_.max_pending_entries ||
      map_.released_count() >= options_.max_released_pages) {
    co_return co_await commit();  // back-pressure: bounded queues
  }
  co_return Result<void>{};
}

Task<Result<void>> DurableMap::commit() {
  auto guard = co_await commit_lock_.lock(0, 0, RangeLock::Mode::exclusive);
  co_return co_await commit_locked();
}

Task<Result<void>> DurableMap::checkpoint() {
  auto guard = co_await commit_lock_.lock(0, 0, RangeLock::Mode::exclusive);
  co_return co_await checkpoint_locked();
}

Task<Result<void>> DurableMap::commit_locked() {
  if (failed_) {
    co_return failed_;
  }
  if (log_ == nullptr) {
    co_return co_await checkpoint_locked();
  }
  if (pending_.empty()) {
    co_return Result<void>{};
  }
  std::vector<JournalEntry> entries = std::move(pending_);
  std::vector<io::ChunkId> unrefs = std::move(pending_unrefs_);
  pending_.clear();
  pending_unrefs_.clear();
  // The chunks the entries name must be durable before the records that name them.
  if (auto r = co_await store_.flush(); !r) {
    co_return fail(r.error(), "cannot flush the chunk store");
  }
  auto appended = co_await append_and_sync(entries);
  if (!appended && appended.error() == io::errc::no_space) {
    // The journal is full: a checkpoint covers these entries instead.
    pending_unrefs_.insert(pending_unrefs_.end(), unrefs.begin(), unrefs.end());
    co_return co_await checkpoint_locked();
  }
  if (!appended) {
    co_return fail(appended.error(), "cannot write the map journal");
  }
  // The records that replaced these ids are durable: dropping them is now safe.
  co_await unref(std::move(unrefs));
  if (log_->used_bytes() * 2 > log_->capacity_bytes() ||
      map_.released_count() >= options_.max_released_pages) {
    co_return co_await checkpoint_locked();
  }
  co_return Result<void>{};
}

Task<Result<void>> DurableMap::append_and_sync(std::span<const JournalEntry> entries) {
  for (std::size_t i = 0; i < entries.size(); i += kMaxEntriesPerRecord) {
    std::size_t n = std::min(kMaxEntriesPerRecord, entries.size() - i);
    auto lsn = log_->append(encode_journal_record(entries.subspan(i, n)));
    if (!lsn) {
      co_return lsn.error();
    }
    next_lsn_ = std::max(next_lsn_, *lsn + 1);
  }
  co_return co_await log_->sync();
}

Task<Result<void>> DurableMap::checkpoint_locked() {
  if (failed_) {
    co_return failed_;
  }
  // Every queued entry is in the map, so the new root covers it; its old ids may be dropped
  // once that root is durable.
  std::vector<io::ChunkId> unrefs = std::move(pending_unrefs_);
  pending_unrefs_.clear();
  pending_.clear();
  auto written = co_await map_.checkpoint();
  if (!written) {
    co_return fail(written.error(), "cannot write map pages");
  }
  if (auto r = co_await store_.flush(); !r) {
    co_return fail(r.error(), "cannot flush the chunk store");
  }
  MapRoot root;
  root.size_bytes = size_bytes_;
  root.chunk_size_bytes = chunk_size_bytes_;
  root.chunk_count = written->chunk_count;
  root.mapped_chunks = written->mapped_chunks;
  root.checkpoint_lsn = next_lsn_;
  root.generation = generation_ + 1;
  root.dir_chunks = std::move(written->dir_chunks);
  auto rev = co_await meta_.put_if(root_key_, encode_root(root), root_revision_);
  if (!rev) {
    // errc::conflict: another owner changed the root; this one is fenced off.
    co_return fail(rev.error(), "cannot store the map root");
  }
  root_revision_ = *rev;
  generation_ = root.generation;
  checkpoints_++;
  if (log_ != nullptr) {
    if (auto r = co_await log_->release_before(next_lsn_); !r) {
      CAIRN_LOG(warn, "volume-map", "{}: cannot release journal space: {}", root_key_,
                r.error().message());
    }
  }
  unrefs.insert(unrefs.end(), written->released.begin(), written->released.end());
  co_await unref(std::move(unrefs));
  co_return Result<void>{};
}

Task<void> DurableMap::unref(std::vector<io::ChunkId> ids) {
  for (std::size_t i = 0; i < ids.size(); i += kMaxUnrefBatch) {
    std::size_t n = std::min(kMaxUnrefBatch, ids.size() - i);
    auto r = co_await store_.unref(std::span<const io::ChunkId>(ids).subspan(i, n));
    if (!r) {
      // The references leak (a later GC reclaims them); data is never at risk.
      CAIRN_LOG(warn, "volume-map", "{}: cannot drop {} references: {}", root_key_, n,
                r.error().message());
    }
  }
}

Task<Result<void>> DurableMap::resize(uint64_t size_bytes) {
  auto guard = co_await commit_lock_.lock(0, 0, RangeLock::Mode::exclusive);
  if (failed_) {
    co_return failed_;
  }
  std::vector<io::ChunkId> dropped;
  if (auto r = co_await map_.resize(chunks_for(size_bytes, chunk_size_bytes_), dropped); !r) {
    co_return fail(r.error(), "cannot resize the map");
  }
  size_bytes_ = size_bytes;
  // The dropped chunks are released by the checkpoint, after the smaller root is durable.
  pending_unrefs_.insert(pending_unrefs_.end(), dropped.begin(), dropped.end());
  co_return co_await checkpoint_locked();
}

Task<Result<void>> DurableMap::destroy() {
  auto guard = co_await commit_lock_.lock(0, 0, RangeLock::Mode::exclusive);
  std::vector<io::ChunkId> ids = std::move(pending_unrefs_);
  pending_unrefs_.clear();
  pending_.clear();
  if (auto r = co_await map_.resize(0, ids); !r) {
    co_return fail(r.error(), "cannot read the map to delete it");
  }
  auto written = co_await map_.checkpoint();
  if (!written) {
    co_return fail(written.error(), "cannot read the map to delete it");
  }
  ids.insert(ids.end(), written->released.begin(), written->released.end());
  failed_ = make_error_code(errc::not_found);
  // Root first, journal next, references last: a crash in between only leaks space.
  if (root_revision_ != 0) {
    if (auto r = co_await meta_.erase_if(root_key_, root_revision_); !r) {
      co_return fail(r.error(), "cannot erase the map root");
    }
  }
  log_.reset();
  if (logs_ != nullptr) {
    if (auto r = co_await logs_->remove(journal_name_); !r) {
      CAIRN_LOG(warn, "volume-map", "{}: cannot remove the journal: {}", root_key_,
                r.error().message());
    }
  }
  co_await unref(std::move(ids));
  if (auto r = co_await store_.flush(); !r) {
    co_return make_error_code(errc::io_error);
  }
  co_return Result<void>{};
}

}  // namespace cairn::blockmap
