// VolumeConfig: what a volume is (BRIEF, "Names"; issue M3). Stored as volume metadata.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace cairn::blockmap {

enum class Durability {
  write_back,     // a flush makes completed writes durable (a disk with a volatile cache)
  write_through,  // every acknowledged write is durable
};

// Who may use a volume over iSCSI (BRIEF, "Names": access rules are volume metadata, so in a
// cluster they travel with the volume). NBD has no authentication of its own.
struct VolumeAccess {
  std::vector<std::string> initiators;  // initiator IQNs allowed to log in; empty: any
  // Non-empty: an initiator must prove it knows chap_secret under the name chap_user
  // (CHAP, RFC 1994 / RFC 7143 section 12.1.3).
  std::string chap_user, chap_secret;
  // Non-empty as well: mutual CHAP, the target proves it knows mutual_secret.
  std::string mutual_user, mutual_secret;

  [[nodiscard]] bool requires_chap() const noexcept { return !chap_user.empty(); }
  [[nodiscard]] bool allows(std::string_view initiator) const noexcept;
  friend bool operator==(const VolumeAccess&, const VolumeAccess&) = default;
};

// A sentence saying what is wrong with the rules, or empty when they are valid: names are
// iqn./eui./naa. forms up to 223 bytes, secrets 12 to 255 bytes (RFC 7143 asks for at least
// 96 bits), the mutual secret differs from the initiator's, and mutual CHAP needs CHAP.
[[nodiscard]] std::string describe_invalid(const VolumeAccess& access);

struct VolumeConfig {
  std::string name;
  uint64_t size_bytes = 0;
  uint32_t block_size_bytes = 4096;  // logical block: 512 or 4096
  uint32_t chunk_size_bytes = 4096;  // 4 KiB to 64 KiB, a power of two
  Durability durability = Durability::write_back;
  bool read_only = false;
  std::string description;
  VolumeAccess access;
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
