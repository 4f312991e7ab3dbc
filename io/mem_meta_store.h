// MemMetaStore: a MetaStore held in RAM with etcd's revision rules. For unit tests and as the
// reference model for LocalMetaStore and the etcd client; nothing survives the process.
//
// Threading: any thread (one mutex, never held across a suspension point).
#pragma once

#include <map>
#include <mutex>

#include "io/meta_store.h"

namespace cairn::io {

class MemMetaStore final : public MetaStore {
 public:
  Task<Result<std::optional<KeyValue>>> get(std::string_view key) override;
  Task<Result<std::vector<KeyValue>>> list(std::string_view prefix) override;
  Task<Result<int64_t>> put_if(std::string_view key, std::string_view value,
                               int64_t expected_revision) override;
  Task<Result<void>> erase_if(std::string_view key, int64_t expected_revision) override;

 private:
  std::mutex mutex_;
  int64_t revision_ = 0;
  std::map<std::string, KeyValue, std::less<>> keys_;
};

}  // namespace cairn::io
