// LocalMetaStore: the embedded, durable MetaStore of a single node (etcd's contract: one
// revision counter, a mod_revision per key, compare-and-swap; BRIEF "Mutable blocks").
//
// State lives in RAM (a sorted map) and every change is a record in a RecordLog, synced
// before put_if/erase_if return, so a completed CAS survives a crash. When the log passes
// half its capacity, the store compacts: it appends a snapshot (every live key, plus the
// revision) and releases the log before it. The whole state must therefore fit in half the
// log (the store is for small mutable blocks: volume roots, leases). Format:
// docs/on-disk-format.md, "Meta store".
//
// Threading: the store belongs to an owner executor (a reactor), on whose thread the log's
// I/O runs. Public methods may be called from any thread: they hop to the owner with
// co_spawn and complete on the caller's executor. Changes are serialized by an AsyncMutex on
// the owner. Lifetimes: the store owns its log; open() must run on the owner's thread.
#pragma once

#include <map>
#include <memory>

#include "io/async_mutex.h"
#include "io/meta_store.h"
#include "io/record_log.h"

namespace cairn::io {

class LocalMetaStore final : public MetaStore {
 public:
  static constexpr std::size_t kMaxKeyBytes = 1024;
  static constexpr std::size_t kMaxValueBytes = 1u << 20;

  // Replays `log` and returns the store. Run on `owner`'s thread.
  static Task<Result<std::unique_ptr<LocalMetaStore>>> open(std::unique_ptr<RecordLog> log,
                                                            asio::any_io_executor owner);

  Task<Result<std::optional<KeyValue>>> get(std::string_view key) override;
  Task<Result<std::vector<KeyValue>>> list(std::string_view prefix) override;
  Task<Result<int64_t>> put_if(std::string_view key, std::string_view value,
                               int64_t expected_revision) override;
  Task<Result<void>> erase_if(std::string_view key, int64_t expected_revision) override;

  // The store's revision (owner thread only; for tests).
  [[nodiscard]] int64_t revision() const noexcept { return revision_; }

 private:
  LocalMetaStore(std::unique_ptr<RecordLog> log, asio::any_io_executor owner);

  Task<Result<std::optional<KeyValue>>> get_here(std::string key);
  Task<Result<std::vector<KeyValue>>> list_here(std::string prefix);
  Task<Result<int64_t>> put_here(std::string key, std::string value, int64_t expected);
  Task<Result<void>> erase_here(std::string key, int64_t expected);
  Task<Result<void>> log_and_sync(std::span<const std::byte> record);
  Task<Result<void>> compact();
  [[nodiscard]] Result<void> apply(std::span<const std::byte> record);

  std::unique_ptr<RecordLog> log_;
  asio::any_io_executor owner_;
  AsyncMutex mutex_;
  std::map<std::string, KeyValue, std::less<>> keys_;
  int64_t revision_ = 0;
};

}  // namespace cairn::io
