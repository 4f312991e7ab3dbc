// VolumeManager: the node's set of volumes. Creates, opens, resizes and deletes them, keeps
// their configs in the MetaStore under "volume/<name>", and assigns each volume to a reactor
// (rendezvous of the name over the reactors), which then owns it. Each volume gets its map
// journal from the LogFactory and its map root in the MetaStore (Volume::root_key), and a map
// cache of `map_cache_bytes` (per volume).
//
// Threading: every method may be called from any thread. Lookups take a mutex; operations on a
// volume run on its owner's thread (co_spawn onto Volume::executor()).
//
// Lifetime: a Volume* from find() stays valid until remove() of that name completes; remove()
// refuses (errc::busy) while a front end holds the volume open (acquire/release).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "blockmap/volume.h"
#include "io/reactor.h"

namespace cairn::blockmap {

class VolumeManager {
 public:
  // `logs` may be null (no journal: every flush checkpoints). All must outlive the manager.
  VolumeManager(io::ReactorPool& reactors, io::ChunkStore& store, io::MetaStore& meta,
                io::LogFactory* logs = nullptr, uint64_t map_cache_bytes = 64ull << 20);
  ~VolumeManager();

  // Opens every volume recorded in the metadata store. Call once at start-up.
  Task<Result<void>> load();

  Task<Result<void>> create(VolumeConfig config);
  // Deletes the volume's record, then its map root and journal, then drops its chunks.
  Task<Result<void>> remove(std::string name);
  Task<Result<void>> resize(std::string name, uint64_t new_size_bytes);
  // Replaces the volume's access rules (durably, in its record). Front ends read them at
  // each login, so a change applies to the next session, not to the ones logged in.
  Task<Result<void>> set_access(std::string name, VolumeAccess access);

  // The volume, or nullptr. Pair acquire() with release(); the volume cannot be removed
  // between them.
  [[nodiscard]] Volume* acquire(std::string_view name);
  void release(Volume* volume) noexcept;

  [[nodiscard]] std::vector<VolumeConfig> list() const;
  // A copy of the volume's configuration, including its access rules; nullopt if none.
  [[nodiscard]] std::optional<VolumeConfig> config(std::string_view name) const;
  [[nodiscard]] unsigned reactor_for(std::string_view name) const noexcept;
  [[nodiscard]] io::ReactorPool& reactors() noexcept { return reactors_; }

 private:
  struct Slot {
    std::unique_ptr<Volume> volume;
    VolumeConfig record;  // as stored under "volume/<name>"; guarded by mutex_
    int64_t revision = 0;
    unsigned users = 0;
  };

  Task<Result<void>> open_on_owner(VolumeConfig config, int64_t revision);

  io::ReactorPool& reactors_;
  io::ChunkStore& store_;
  io::MetaStore& meta_;
  io::LogFactory* logs_;
  uint64_t map_cache_bytes_;
  mutable std::mutex mutex_;
  std::map<std::string, Slot, std::less<>> volumes_;
};

}  // namespace cairn::blockmap
