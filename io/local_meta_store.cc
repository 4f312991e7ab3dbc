#include "io/local_meta_store.h"

#include "base/log.h"
#include "io/byte_codec.h"
#include "io/errors.h"

namespace cairn::io {
namespace {

enum class Op : uint8_t { put = 1, erase = 2, snapshot = 3 };

std::vector<std::byte> encode(Op op, int64_t store_revision, int64_t mod_revision,
                              std::string_view key, std::string_view value) {
  ByteWriter w;
  w.put(static_cast<uint8_t>(op));
  w.put(store_revision);
  w.put(mod_revision);
  w.put_string(key);
  w.put_string(value);
  auto bytes = w.bytes();
  return {bytes.begin(), bytes.end()};
}

}  // namespace

LocalMetaStore::LocalMetaStore(std::unique_ptr<RecordLog> log, asio::any_io_executor owner)
    : log_(std::move(log)), owner_(std::move(owner)) {}

Task<Result<std::unique_ptr<LocalMetaStore>>> LocalMetaStore::open(std::unique_ptr<RecordLog> log,
                                                                   asio::any_io_executor owner) {
  std::unique_ptr<LocalMetaStore> store(new LocalMetaStore(std::move(log), std::move(owner)));
  Result<void> bad;
  auto replayed = co_await store->log_->replay([&](uint64_t, std::span<const std::byte> rec) {
    if (bad) {
      bad = store->apply(rec);
    }
  });
  if (!replayed) {
    co_return replayed.error();
  }
  if (!bad) {
    co_return bad.error();
  }
  co_return store;
}

Result<void> LocalMetaStore::apply(std::span<const std::byte> record) {
  ByteReader r(record);
  uint8_t op = 0;
  int64_t store_revision = 0;
  int64_t mod_revision = 0;
  std::string_view key;
  std::string_view value;
  if (!r.get(op) || !r.get(store_revision) || !r.get(mod_revision) || !r.get_string(key) ||
      !r.get_string(value) || !r.done()) {
    return make_error(errc::corrupt);
  }
  switch (static_cast<Op>(op)) {
    case Op::put:
      keys_[std::string(key)] = KeyValue{std::string(key), std::string(value), mod_revision};
      break;
    case Op::erase:
      keys_.erase(std::string(key));
      break;
    case Op::snapshot:
      break;
    default:
      return make_error(errc::corrupt);
  }
  revision_ = std::max(revision_, store_revision);
  return {};
}

Task<Result<std::optional<KeyValue>>> LocalMetaStore::get(std::string_view key) {
  co_return co_await asio::co_spawn(owner_, get_here(std::string(key)), asio::use_awaitable);
}

Task<Result<std::vector<KeyValue>>> LocalMetaStore::list(std::string_view prefix) {
  co_return co_await asio::co_spawn(owner_, list_here(std::string(prefix)), asio::use_awaitable);
}

Task<Result<int64_t>> LocalMetaStore::put_if(std::string_view key, std::string_view value,
                                             int64_t expected_revision) {
  co_return co_await asio::co_spawn(
      owner_, put_here(std::string(key), std::string(value), expected_revision),
      asio::use_awaitable);
}

Task<Result<void>> LocalMetaStore::erase_if(std::string_view key, int64_t expected_revision) {
  co_return co_await asio::co_spawn(owner_, erase_here(std::string(key), expected_revision),
                                    asio::use_awaitable);
}

Task<Result<std::optional<KeyValue>>> LocalMetaStore::get_here(std::string key) {
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    co_return std::optional<KeyValue>{};
  }
  co_return std::optional<KeyValue>{it->second};
}

Task<Result<std::vector<KeyValue>>> LocalMetaStore::list_here(std::string prefix) {
  std::vector<KeyValue> out;
  for (auto it = keys_.lower_bound(prefix); it != keys_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) {
      break;
    }
    out.push_back(it->second);
  }
  co_return out;
}

Task<Result<int64_t>> LocalMetaStore::put_here(std::string key, std::string value,
                                               int64_t expected) {
  if (key.empty() || key.size() > kMaxKeyBytes || value.size() > kMaxValueBytes) {
    co_return make_error(errc::invalid_argument);
  }
  auto guard = co_await mutex_.scoped();
  auto it = keys_.find(key);
  int64_t current = it == keys_.end() ? 0 : it->second.mod_revision;
  if (current != expected) {
    co_return make_error(errc::conflict);
  }
  int64_t next = revision_ + 1;
  auto record = encode(Op::put, next, next, key, value);
  if (auto r = co_await log_and_sync(record); !r) {
    co_return r.error();
  }
  keys_[key] = KeyValue{key, std::move(value), next};
  revision_ = next;
  co_return next;
}

Task<Result<void>> LocalMetaStore::erase_here(std::string key, int64_t expected) {
  auto guard = co_await mutex_.scoped();
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    co_return make_error(errc::not_found);
  }
  if (it->second.mod_revision != expected) {
    co_return make_error(errc::conflict);
  }
  int64_t next = revision_ + 1;
  auto record = encode(Op::erase, next, 0, key, {});
  if (auto r = co_await log_and_sync(record); !r) {
    co_return r;
  }
  keys_.erase(key);
  revision_ = next;
  co_return Result<void>{};
}

Task<Result<void>> LocalMetaStore::log_and_sync(std::span<const std::byte> record) {
  if (log_->used_bytes() > log_->capacity_bytes() / 2) {
    if (auto c = co_await compact(); !c) {
      CAIRN_LOG(warn, "meta", "compaction failed: {}", c.error().message());
    }
  }
  auto lsn = log_->append(record);
  if (!lsn) {
    co_return lsn.error();
  }
  co_return co_await log_->sync();
}

Task<Result<void>> LocalMetaStore::compact() {
  auto first = log_->append(encode(Op::snapshot, revision_, 0, {}, {}));
  if (!first) {
    co_return first.error();
  }
  for (const auto& [key, kv] : keys_) {
    if (auto lsn = log_->append(encode(Op::put, revision_, kv.mod_revision, key, kv.value)); !lsn) {
      co_return lsn.error();
    }
  }
  if (auto r = co_await log_->sync(); !r) {
    co_return r;
  }
  co_return co_await log_->release_before(*first);
}

}  // namespace cairn::io
