// The iSCSI login phase (RFC 7143 sections 6 and 11.12-11.13) on the target side: security
// negotiation (AuthMethod None or CHAP), operational negotiation (text.h), and the move to the
// full feature phase, for discovery and normal sessions.
//
// Naming: each volume is a target named `<iqn_prefix>:<volume>` with the volume as LUN 0
// (docs/iscsi.md). Access: a volume's rules (blockmap::VolumeAccess) decide who may log in;
// failures answer with the login status RFC 7143 prescribes (0x0201 authentication failure,
// 0x0202 authorization failure, 0x0203 target not found, 0x0207 missing parameter, ...).
//
// Threading: login() runs on the connection's executor; Directory must be safe to call from it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/asio.h"
#include "blockmap/volume_config.h"
#include "blockmap/volume_manager.h"
#include "target/iscsi/text.h"
#include "target/nbd/byte_stream.h"

namespace cairn::target::iscsi {

using ByteStream = nbd::ByteStream;

// The volumes a login can reach, and their access rules.
class Directory {
 public:
  virtual ~Directory() = default;
  [[nodiscard]] virtual std::vector<std::string> volumes() const = 0;
  [[nodiscard]] virtual std::optional<blockmap::VolumeAccess> access(
      std::string_view volume) const = 0;
};

// The Directory of a node: its VolumeManager's volumes (thread-safe calls).
class VolumeDirectory final : public Directory {
 public:
  explicit VolumeDirectory(const blockmap::VolumeManager& volumes) : volumes_(volumes) {}
  [[nodiscard]] std::vector<std::string> volumes() const override;
  [[nodiscard]] std::optional<blockmap::VolumeAccess> access(
      std::string_view volume) const override;

 private:
  const blockmap::VolumeManager& volumes_;
};

struct TargetOptions {
  std::string iqn_prefix = "iqn.2026-11.io.cairn";
  // Advertised in SendTargets as TargetAddress ("host:port"); empty: the address the
  // connection reached.
  std::string portal;
  uint16_t portal_group_tag = 1;
  TargetLimits limits;
  uint32_t queue_depth = 128;  // the CmdSN window of a session
};

struct LoginResult {
  bool discovery = false;
  std::string initiator_name;
  std::string initiator_alias;
  std::string target_name;  // empty for discovery
  std::string volume;       // empty for discovery
  uint64_t isid = 0;
  uint16_t tsih = 0;
  uint16_t cid = 0;
  SessionParams params;
  uint32_t stat_sn = 0;     // the StatSN of the next response
  uint32_t exp_cmd_sn = 0;  // the CmdSN the first command carries
};

// The target name of a volume, and the volume of a target name (nullopt when the name is not
// one of ours).
[[nodiscard]] std::string target_name(const TargetOptions& options, std::string_view volume);
[[nodiscard]] std::optional<std::string> volume_of(const TargetOptions& options,
                                                   std::string_view target);

// The SendTargets answer: `value` is "All", a target name, or empty (the session's target).
// Lists the targets `initiator` may log in to, each with the portal.
[[nodiscard]] std::vector<std::byte> send_targets(
    const TargetOptions& options, const Directory& directory, std::string_view value,
    std::string_view initiator, std::string_view session_target, std::string_view portal);

// Runs the login phase over `stream`. `local_portal` ("ip:port") is advertised when
// options.portal is empty. Returns the session's parameters after the final Login Response
// was sent, or nullopt when the login failed (the failure response was sent where possible
// and a log line written); the caller closes the stream then.
// `admit` runs once the target and initiator are known and authenticated, before the final
// response: returning false fails the login with "target error, out of resources" (the
// volume could not be opened).
Task<std::optional<LoginResult>> login(ByteStream& stream, const TargetOptions& options,
                                       const Directory& directory, std::string local_portal,
                                       const std::function<bool(const LoginResult&)>& admit);

}  // namespace cairn::target::iscsi
