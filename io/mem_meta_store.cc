#include "io/mem_meta_store.h"

#include "io/errors.h"

namespace cairn::io {

Task<Result<std::optional<KeyValue>>> MemMetaStore::get(std::string_view key) {
  std::lock_guard lock(mutex_);
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    co_return std::optional<KeyValue>{};
  }
  co_return std::optional<KeyValue>{it->second};
}

Task<Result<std::vector<KeyValue>>> MemMetaStore::list(std::string_view prefix) {
  std::lock_guard lock(mutex_);
  std::vector<KeyValue> out;
  for (auto it = keys_.lower_bound(prefix); it != keys_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) {
      break;
    }
    out.push_back(it->second);
  }
  co_return out;
}

Task<Result<int64_t>> MemMetaStore::put_if(std::string_view key, std::string_view value,
                                           int64_t expected_revision) {
  std::lock_guard lock(mutex_);
  auto it = keys_.find(key);
  int64_t current = it == keys_.end() ? 0 : it->second.mod_revision;
  if (current != expected_revision) {
    co_return make_error_code(errc::conflict);
  }
  ++revision_;
  KeyValue kv{std::string(key), std::string(value), revision_};
  if (it == keys_.end()) {
    keys_.emplace(kv.key, std::move(kv));
  } else {
    it->second = std::move(kv);
  }
  co_return revision_;
}

Task<Result<void>> MemMetaStore::erase_if(std::string_view key, int64_t expected_revision) {
  std::lock_guard lock(mutex_);
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    co_return make_error_code(errc::not_found);
  }
  if (it->second.mod_revision != expected_revision) {
    co_return make_error_code(errc::conflict);
  }
  ++revision_;
  keys_.erase(it);
  co_return Result<void>{};
}

}  // namespace cairn::io
