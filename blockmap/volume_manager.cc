#include "blockmap/volume_manager.h"

#include <xxhash.h>

#include "base/assert.h"
#include "base/log.h"
#include "blockmap/errors.h"
#include "io/errors.h"

namespace cairn::blockmap {
namespace {
constexpr std::string_view kPrefix = "volume/";

std::string key_of(std::string_view name) {
  return std::string(kPrefix) + std::string(name);
}
}  // namespace

VolumeManager::VolumeManager(io::ReactorPool& reactors, io::ChunkStore& store, io::MetaStore& meta,
                             io::LogFactory* logs, uint64_t map_cache_bytes)
    : reactors_(reactors),
      store_(store),
      meta_(meta),
      logs_(logs),
      map_cache_bytes_(map_cache_bytes) {}

VolumeManager::~VolumeManager() = default;

// Rendezvous (highest random weight) hashing of the name over reactor indexes: stable for a
// given reactor count and spreads volumes evenly.
unsigned VolumeManager::reactor_for(std::string_view name) const noexcept {
  unsigned best = 0;
  uint64_t best_weight = 0;
  for (unsigned i = 0; i < reactors_.size(); ++i) {
    uint64_t w = XXH3_64bits_withSeed(name.data(), name.size(), i + 1);
    if (i == 0 || w > best_weight) {
      best = i;
      best_weight = w;
    }
  }
  return best;
}

Task<Result<void>> VolumeManager::open_on_owner(VolumeConfig config, int64_t revision) {
  io::Reactor& owner = reactors_.at(reactor_for(config.name));
  VolumeStorage storage{store_, meta_, logs_, map_cache_bytes_};
  auto opened = co_await asio::co_spawn(
      owner.executor(), Volume::open(config, storage, owner.executor()), asio::use_awaitable);
  if (!opened) {
    co_return opened.error();
  }
  std::lock_guard lock(mutex_);
  Slot& slot = volumes_[config.name];
  // The size in the map's root wins over the record's (a resize may have crashed half-way).
  config.size_bytes = (*opened)->size_bytes();
  slot.volume = std::move(*opened);
  slot.record = std::move(config);
  slot.revision = revision;
  co_return Result<void>{};
}

Task<Result<void>> VolumeManager::load() {
  auto all = co_await meta_.list(kPrefix);
  if (!all) {
    co_return all.error();
  }
  for (const io::KeyValue& kv : *all) {
    auto config = volume_config_from_json(kv.value);
    if (!config) {
      CAIRN_LOG(error, "volumes", "skipping unreadable volume record '{}'", kv.key);
      continue;
    }
    if (auto r = co_await open_on_owner(*config, kv.mod_revision); !r) {
      CAIRN_LOG(error, "volumes", "cannot open volume '{}': {}", config->name, r.error().message());
      co_return r;
    }
  }
  co_return Result<void>{};
}

Task<Result<void>> VolumeManager::create(VolumeConfig config) {
  if (auto r = validate(config); !r) {
    co_return r;
  }
  auto rev = co_await meta_.put_if(key_of(config.name), to_json(config), 0);
  if (!rev) {
    if (rev.error() == io::errc::conflict) {
      co_return make_error_code(errc::already_exists);
    }
    co_return rev.error();
  }
  co_return co_await open_on_owner(std::move(config), *rev);
}

Task<Result<void>> VolumeManager::remove(std::string name) {
  std::unique_ptr<Volume> doomed;
  VolumeConfig record;
  int64_t revision = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = volumes_.find(name);
    if (it == volumes_.end()) {
      co_return make_error_code(errc::not_found);
    }
    if (it->second.users > 0) {
      co_return make_error_code(errc::busy);
    }
    revision = it->second.revision;
    record = it->second.record;
    doomed = std::move(it->second.volume);
    volumes_.erase(it);
  }
  // The record goes first: once it is gone the volume no longer exists, and a crash later in
  // the deletion only leaks space.
  auto erased = co_await meta_.erase_if(key_of(name), revision);
  if (!erased) {
    std::lock_guard lock(mutex_);
    volumes_[name] = Slot{std::move(doomed), std::move(record), revision, 0};
    co_return erased.error();
  }
  Volume* v = doomed.get();
  auto destroyed = co_await asio::co_spawn(v->executor(), v->destroy(), asio::use_awaitable);
  if (!destroyed) {
    CAIRN_LOG(warn, "volumes", "deleting '{}': could not release its chunks: {}", name,
              destroyed.error().message());
  }
  co_return Result<void>{};
}

Task<Result<void>> VolumeManager::resize(std::string name, uint64_t new_size_bytes) {
  Volume* v = acquire(name);
  if (v == nullptr) {
    co_return make_error_code(errc::not_found);
  }
  VolumeConfig next;
  int64_t revision = 0;
  {
    std::lock_guard lock(mutex_);
    const Slot& slot = volumes_.find(name)->second;
    next = slot.record;
    revision = slot.revision;
  }
  next.size_bytes = new_size_bytes;
  auto resized =
      co_await asio::co_spawn(v->executor(), v->resize(new_size_bytes), asio::use_awaitable);
  if (!resized) {
    release(v);
    co_return resized;
  }
  auto rev = co_await meta_.put_if(key_of(name), to_json(next), revision);
  if (rev) {
    std::lock_guard lock(mutex_);
    Slot& slot = volumes_.find(name)->second;
    slot.revision = *rev;
    slot.record = std::move(next);
  }
  release(v);
  if (!rev) {
    co_return rev.error();
  }
  co_return Result<void>{};
}

Task<Result<void>> VolumeManager::set_access(std::string name, VolumeAccess access) {
  if (!describe_invalid(access).empty()) {
    co_return make_error_code(errc::invalid_argument);
  }
  Volume* v = acquire(name);
  if (v == nullptr) {
    co_return make_error_code(errc::not_found);
  }
  VolumeConfig next;
  int64_t revision = 0;
  {
    std::lock_guard lock(mutex_);
    const Slot& slot = volumes_.find(name)->second;
    next = slot.record;
    revision = slot.revision;
  }
  next.access = std::move(access);
  auto rev = co_await meta_.put_if(key_of(name), to_json(next), revision);
  if (rev) {
    std::lock_guard lock(mutex_);
    Slot& slot = volumes_.find(name)->second;
    slot.revision = *rev;
    slot.record = std::move(next);
  }
  release(v);
  if (!rev) {
    co_return rev.error();
  }
  co_return Result<void>{};
}

std::optional<VolumeConfig> VolumeManager::config(std::string_view name) const {
  std::lock_guard lock(mutex_);
  auto it = volumes_.find(name);
  if (it == volumes_.end() || !it->second.volume) {
    return std::nullopt;
  }
  return it->second.record;
}

Volume* VolumeManager::acquire(std::string_view name) {
  std::lock_guard lock(mutex_);
  auto it = volumes_.find(name);
  if (it == volumes_.end() || !it->second.volume) {
    return nullptr;
  }
  it->second.users++;
  return it->second.volume.get();
}

void VolumeManager::release(Volume* volume) noexcept {
  CAIRN_ASSERT(volume != nullptr);
  std::lock_guard lock(mutex_);
  auto it = volumes_.find(volume->name());
  CAIRN_ASSERT(it != volumes_.end() && it->second.users > 0);
  it->second.users--;
}

std::vector<VolumeConfig> VolumeManager::list() const {
  std::lock_guard lock(mutex_);
  std::vector<VolumeConfig> out;
  for (const auto& [name, slot] : volumes_) {
    if (slot.volume) {
      out.push_back(slot.record);
    }
  }
  return out;
}

}  // namespace cairn::blockmap
