// VolumeConfig: what a volume is (BRIEF, "Names"; issue M3). Stored as volume metadata.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace cairn::blockmap {

enum class Durability {
  write_back,     // a flush makes completed writes durable (a disk with a volatile cache)
  write_through,  // every acknowledged write is durable
};

struct VolumeConfig {
  std::string name;
  uint64_t size_bytes = 0;
  uint32_t block_size_bytes = 4096;  // logical block: 512 or 4096
  uint32_t chunk_size_bytes = 4096;  // 4 KiB to 64 KiB, a power of two
  Durability durability = Durability::write_back;
  bool read_only = false;
  std::string description;
};

// `[a-z0-9][a-z0-9.-]{0,62}`: the NBD export name and the suffix of the iSCSI IQN.
[[nodiscard]] bool valid_volume_name(std::string_view name) noexcept;

// Checks name, sizes and alignment; errc::invalid_argument with no detail on failure, so
// callers that want a sentence call describe_invalid().
[[nodiscard]] Result<void> validate(const VolumeConfig& config) noexcept;
[[nodiscard]] std::string describe_invalid(const VolumeConfig& config);

// JSON form used in the metadata store and the admin API.
[[nodiscard]] std::string to_json(const VolumeConfig& config);
[[nodiscard]] Result<VolumeConfig> volume_config_from_json(std::string_view json) noexcept;

}  // namespace cairn::blockmap
