// Text keys (RFC 7143 sections 6 and 13): "key=value\0" parsing with limits, and the
// negotiation of every operational key the target supports.
//
// The target's own preferences are TargetLimits; Negotiator answers an initiator's offers the
// way section 6 prescribes: list values pick the first of the initiator's choices the target
// supports, numerical values take the minimum or maximum, booleans AND or OR, unknown keys are
// NotUnderstood, keys meaningless in a discovery session are Irrelevant, and malformed or
// out-of-range values Reject. ErrorRecoveryLevel is 0 and MaxConnections 1.
//
// Threading: plain values; one Negotiator per login.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cairn::target::iscsi {

using KeyValues = std::vector<std::pair<std::string, std::string>>;

// Limits of a text parse: a key name is at most 63 bytes (section 6.1), a value at most 8192
// (the largest any key allows, the CHAP binary values), the whole text at most 64 KiB and 256
// keys.
inline constexpr std::size_t kMaxKeyBytes = 63;
inline constexpr std::size_t kMaxValueBytes = 8192;
inline constexpr std::size_t kMaxTextBytes = 64 * 1024;
inline constexpr std::size_t kMaxKeys = 256;

// Parses a data segment of NUL-terminated key=value pairs. A trailing pair without its NUL is
// accepted (some initiators omit it); an empty segment is an empty list. nullopt: malformed
// (no '=', empty or over-long key or value, bytes outside the iSCSI text character set in a key).
[[nodiscard]] std::optional<KeyValues> parse_text(std::span<const std::byte> text);
void append_text(std::vector<std::byte>& out, std::string_view key, std::string_view value);

// Parses a numerical value: decimal, or hex with 0x (section 6.1). nullopt when malformed or
// over 64 bits.
[[nodiscard]] std::optional<uint64_t> parse_number(std::string_view value);

// What the target offers for each negotiable key.
struct TargetLimits {
  uint32_t max_recv_data_segment = 256 * 1024;  // declared to the initiator
  uint32_t max_burst = 16 * 1024 * 1024 - 1024;
  uint32_t first_burst = 16 * 1024 * 1024 - 1024;
  uint32_t max_outstanding_r2t = 16;
  bool immediate_data = true;
  bool initial_r2t = false;
  bool data_pdu_in_order = true;
  bool data_sequence_in_order = true;
  uint32_t default_time2wait = 0;
  uint32_t default_time2retain = 0;
};

// The operational parameters of a session after login (defaults are RFC 7143's).
struct SessionParams {
  bool header_digest = false;
  bool data_digest = false;
  uint32_t initiator_max_recv = 8192;  // what the target may send per PDU
  uint32_t target_max_recv = 8192;     // what the target accepts per PDU
  uint32_t max_burst = 262144;
  uint32_t first_burst = 65536;
  uint32_t max_outstanding_r2t = 1;
  bool immediate_data = true;
  bool initial_r2t = true;
  bool data_pdu_in_order = true;
  bool data_sequence_in_order = true;
  uint32_t default_time2wait = 2;
  uint32_t default_time2retain = 20;
  uint32_t error_recovery_level = 0;
  uint32_t max_connections = 1;
};

class Negotiator {
 public:
  Negotiator(const TargetLimits& limits, bool discovery);

  // Answers one offered key, appending the response (if one is due) to `out`. Returns false
  // when the login must fail with an initiator error: the key was negotiated before.
  bool offer(const std::string& key, const std::string& value, std::vector<std::byte>& out);
  // Keys the target declares without being asked (its MaxRecvDataSegmentLength), sent once.
  void declare(std::vector<std::byte>& out);
  // The parameters, with FirstBurstLength clipped to MaxBurstLength.
  [[nodiscard]] SessionParams params() const;
  [[nodiscard]] bool knows(std::string_view key) const;

 private:
  TargetLimits limits_;
  bool discovery_;
  bool declared_ = false;
  SessionParams params_;
  std::set<std::string, std::less<>> seen_;
};

}  // namespace cairn::target::iscsi
