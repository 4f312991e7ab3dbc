// MetaStore: a small key-value store with compare-and-swap on revisions, which is etcd's
// contract (BRIEF, "Mutable blocks"). It holds opaque bytes; io/ knows nothing of volumes.
//
// Implementations: io/LocalMetaStore (embedded, one node) and later net/EtcdMetaStore.
//
// Revisions follow etcd: the store has one revision counter that every successful change
// increments; a key's `mod_revision` is the store revision of its last change. A CAS names
// the mod_revision it expects, with 0 meaning "the key must not exist".
//
// Threading: callable from any reactor thread; completes on the caller's executor.
// Durability: a put_if/erase_if is durable when it completes successfully.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/asio.h"
#include "base/result.h"

namespace cairn::io {

struct KeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
};

class MetaStore {
 public:
  virtual ~MetaStore() = default;

  // The key's value, or std::nullopt if it does not exist.
  virtual Task<Result<std::optional<KeyValue>>> get(std::string_view key) = 0;

  // Every key starting with `prefix`, in key order.
  virtual Task<Result<std::vector<KeyValue>>> list(std::string_view prefix) = 0;

  // Sets key = value if the key's mod_revision equals `expected_revision` (0: must not
  // exist). Returns the new mod_revision, or errc::conflict.
  virtual Task<Result<int64_t>> put_if(std::string_view key, std::string_view value,
                                       int64_t expected_revision) = 0;

  // Deletes the key if its mod_revision equals `expected_revision`; errc::conflict otherwise,
  // errc::not_found if it does not exist.
  virtual Task<Result<void>> erase_if(std::string_view key, int64_t expected_revision) = 0;
};

}  // namespace cairn::io
