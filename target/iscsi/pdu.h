// iSCSI PDUs (RFC 7143 section 11): the 48-byte Basic Header Segment, additional header
// segments, the optional CRC32C header digest, the data segment padded to 4 bytes, and the
// optional data digest.
//
// Bhs is the raw header with named accessors for every field of every opcode; the make_*
// functions build the header of each PDU a target (or, for tests, an initiator) sends. The
// decoder is strict: check_request() validates an initiator PDU's header before its payload is
// read, and decode_pdu() parses a whole PDU from memory (unit tests, the fuzz target). A
// malformed PDU never throws: the caller learns whether to Reject it (RejectReason) or drop the
// connection.
//
// Threading: plain values and pure functions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace cairn::target::iscsi {

inline constexpr std::size_t kBhsBytes = 48;
inline constexpr std::size_t kDigestBytes = 4;
inline constexpr uint32_t kReservedTag = 0xFFFFFFFF;  // "no task" ITT/TTT value
// Longest data segment a PDU may carry (DataSegmentLength is 24 bits).
inline constexpr uint32_t kMaxDataSegment = (1u << 24) - 1;

enum class Opcode : uint8_t {
  // Initiator to target.
  nop_out = 0x00,
  scsi_command = 0x01,
  task_mgmt_request = 0x02,
  login_request = 0x03,
  text_request = 0x04,
  data_out = 0x05,
  logout_request = 0x06,
  snack_request = 0x10,
  // Target to initiator.
  nop_in = 0x20,
  scsi_response = 0x21,
  task_mgmt_response = 0x22,
  login_response = 0x23,
  text_response = 0x24,
  data_in = 0x25,
  logout_response = 0x26,
  r2t = 0x31,
  async_message = 0x32,
  reject = 0x3F,
};

// Reject reasons (RFC 7143 section 11.17.1).
enum class RejectReason : uint8_t {
  data_digest_error = 0x02,
  snack_reject = 0x03,
  protocol_error = 0x04,
  command_not_supported = 0x05,
  immediate_command_reject = 0x06,
  task_in_progress = 0x07,
  invalid_data_ack = 0x08,
  invalid_pdu_field = 0x09,
  long_operation_reject = 0x0A,
  negotiation_reset = 0x0B,
  waiting_for_logout = 0x0C,
};

// Task management functions and responses (RFC 7143 sections 11.5.1, 11.6.1).
enum class TmfFunction : uint8_t {
  abort_task = 1,
  abort_task_set = 2,
  clear_aca = 3,
  clear_task_set = 4,
  logical_unit_reset = 5,
  target_warm_reset = 6,
  target_cold_reset = 7,
  task_reassign = 8,
};
enum class TmfResponse : uint8_t {
  complete = 0,
  task_does_not_exist = 1,
  lun_does_not_exist = 2,
  task_still_allegiant = 3,
  reassignment_not_supported = 4,
  not_supported = 5,
  authorization_failed = 6,
  rejected = 255,
};

// Login stages (CSG/NSG).
enum class Stage : uint8_t { security = 0, operational = 1, full_feature = 3 };

// The raw Basic Header Segment. Multi-byte fields are big-endian on the wire.
struct Bhs {
  std::array<uint8_t, kBhsBytes> b{};

  [[nodiscard]] uint8_t u8(std::size_t at) const noexcept { return b[at]; }
  [[nodiscard]] uint16_t u16(std::size_t at) const noexcept {
    return static_cast<uint16_t>(b[at] << 8 | b[at + 1]);
  }
  [[nodiscard]] uint32_t u24(std::size_t at) const noexcept {
    return uint32_t{b[at]} << 16 | uint32_t{b[at + 1]} << 8 | b[at + 2];
  }
  [[nodiscard]] uint32_t u32(std::size_t at) const noexcept {
    return uint32_t{b[at]} << 24 | uint32_t{b[at + 1]} << 16 | uint32_t{b[at + 2]} << 8 | b[at + 3];
  }
  [[nodiscard]] uint64_t u64(std::size_t at) const noexcept {
    return uint64_t{u32(at)} << 32 | u32(at + 4);
  }
  void set8(std::size_t at, uint8_t v) noexcept { b[at] = v; }
  void set16(std::size_t at, uint16_t v) noexcept {
    b[at] = static_cast<uint8_t>(v >> 8);
    b[at + 1] = static_cast<uint8_t>(v);
  }
  void set24(std::size_t at, uint32_t v) noexcept {
    b[at] = static_cast<uint8_t>(v >> 16);
    b[at + 1] = static_cast<uint8_t>(v >> 8);
    b[at + 2] = static_cast<uint8_t>(v);
  }
  void set32(std::size_t at, uint32_t v) noexcept {
    set16(at, static_cast<uint16_t>(v >> 16));
    set16(at + 2, static_cast<uint16_t>(v));
  }
  void set64(std::size_t at, uint64_t v) noexcept {
    set32(at, static_cast<uint32_t>(v >> 32));
    set32(at + 4, static_cast<uint32_t>(v));
  }

  // Fields common to every PDU.
  [[nodiscard]] Opcode opcode() const noexcept { return static_cast<Opcode>(b[0] & 0x3F); }
  [[nodiscard]] bool immediate() const noexcept { return (b[0] & 0x40) != 0; }
  [[nodiscard]] bool final_bit() const noexcept { return (b[1] & 0x80) != 0; }
  [[nodiscard]] uint32_t ahs_bytes() const noexcept { return uint32_t{b[4]} * 4; }
  [[nodiscard]] uint32_t data_length() const noexcept { return u24(5); }
  [[nodiscard]] uint64_t lun() const noexcept { return u64(8); }
  [[nodiscard]] uint32_t itt() const noexcept { return u32(16); }
  void set_opcode(Opcode op, bool immediate = false) noexcept {
    b[0] = static_cast<uint8_t>(static_cast<uint8_t>(op) | (immediate ? 0x40 : 0));
  }
  void set_data_length(uint32_t n) noexcept { set24(5, n); }
  void set_ahs_bytes(uint32_t n) noexcept { b[4] = static_cast<uint8_t>(n / 4); }

  // Offsets 20..47 whose meaning depends on the opcode (RFC 7143 section 11).
  [[nodiscard]] uint32_t ttt() const noexcept { return u32(20); }  // NOP, Data, Text, R2T
  [[nodiscard]] uint32_t expected_length() const noexcept { return u32(20); }  // SCSI Command
  [[nodiscard]] uint32_t cmd_sn() const noexcept { return u32(24); }           // requests
  [[nodiscard]] uint32_t exp_stat_sn() const noexcept { return u32(28); }      // requests
  [[nodiscard]] uint32_t data_sn() const noexcept { return u32(36); }          // Data-Out/In
  [[nodiscard]] uint32_t buffer_offset() const noexcept { return u32(40); }    // Data, R2T
  [[nodiscard]] std::span<const uint8_t> cdb() const noexcept { return {b.data() + 32, 16}; }
};

// Login request/response byte 1.
[[nodiscard]] inline bool login_transit(const Bhs& h) noexcept {
  return (h.b[1] & 0x80) != 0;
}
[[nodiscard]] inline bool login_continue(const Bhs& h) noexcept {
  return (h.b[1] & 0x40) != 0;
}
[[nodiscard]] inline uint8_t login_csg(const Bhs& h) noexcept {
  return (h.b[1] >> 2) & 3;
}
[[nodiscard]] inline uint8_t login_nsg(const Bhs& h) noexcept {
  return h.b[1] & 3;
}
[[nodiscard]] inline uint64_t login_isid(const Bhs& h) noexcept {
  return h.u64(8) >> 16;  // 6 bytes
}
[[nodiscard]] inline uint16_t login_tsih(const Bhs& h) noexcept {
  return h.u16(14);
}
[[nodiscard]] inline uint16_t login_cid(const Bhs& h) noexcept {
  return h.u16(20);
}

// What the decoder makes of a request header before reading the rest of the PDU.
enum class HeaderCheck : uint8_t {
  ok,
  reject,  // read and discard the rest, then answer with a Reject PDU (reason set)
  close,   // framing cannot be trusted: drop the connection
};
struct HeaderVerdict {
  HeaderCheck check = HeaderCheck::ok;
  RejectReason reason = RejectReason::protocol_error;
  const char* why = "";  // for the log line
};

// Validates an initiator PDU header in the given phase. `max_data` is the data segment length
// the target declared (MaxRecvDataSegmentLength); a Login or Text request is allowed
// `max_text` (login PDUs are bounded by 8192 bytes in the login phase).
[[nodiscard]] HeaderVerdict check_request(const Bhs& h, bool login_phase, uint32_t max_data);

// Total bytes of the data segment with its padding.
[[nodiscard]] constexpr uint32_t padded(uint32_t n) noexcept {
  return (n + 3) & ~3u;
}

// A whole PDU held in memory.
struct Pdu {
  Bhs bhs;
  std::vector<uint8_t> ahs;
  std::vector<std::byte> data;  // without padding
};

enum class DecodeError : uint8_t {
  truncated,
  header_digest,
  data_digest,
  bad_header,
};
struct Decoded {
  std::optional<Pdu> pdu;
  DecodeError error = DecodeError::truncated;
  std::size_t consumed = 0;  // bytes the PDU took, when decoded
};
// Parses one PDU from the front of `in` (the digests as negotiated).
[[nodiscard]] Decoded decode_pdu(std::span<const std::byte> in, bool header_digest,
                                 bool data_digest, uint32_t max_data);

// Serializes a PDU (sets DataSegmentLength and TotalAHSLength from its parts).
[[nodiscard]] std::vector<std::byte> encode_pdu(const Pdu& pdu, bool header_digest,
                                                bool data_digest);

// Header builders for what a target sends. Sequence numbers the caller fills in at send time
// are passed as arguments where the opcode has them.
struct SnFields {
  uint32_t stat_sn = 0;
  uint32_t exp_cmd_sn = 0;
  uint32_t max_cmd_sn = 0;
};
[[nodiscard]] Bhs make_nop_in(uint32_t itt, uint32_t ttt, uint64_t lun, const SnFields& sn);
[[nodiscard]] Bhs make_scsi_response(uint32_t itt, uint8_t status, uint8_t flags_residual,
                                     uint32_t residual, const SnFields& sn, uint32_t exp_data_sn);
[[nodiscard]] Bhs make_tmf_response(uint32_t itt, TmfResponse response, const SnFields& sn);
[[nodiscard]] Bhs make_login_response(const Bhs& request, bool transit, uint8_t csg, uint8_t nsg,
                                      uint16_t tsih, uint8_t status_class, uint8_t status_detail,
                                      const SnFields& sn);
[[nodiscard]] Bhs make_text_response(uint32_t itt, uint32_t ttt, bool final, bool more,
                                     const SnFields& sn);
[[nodiscard]] Bhs make_logout_response(uint32_t itt, uint8_t response, const SnFields& sn);
[[nodiscard]] Bhs make_r2t(uint32_t itt, uint32_t ttt, uint64_t lun, uint32_t r2t_sn,
                           uint32_t offset, uint32_t length, const SnFields& sn);
[[nodiscard]] Bhs make_reject(RejectReason reason, const SnFields& sn);
[[nodiscard]] Bhs make_async(uint8_t event, uint16_t p1, uint16_t p2, uint16_t p3,
                             const SnFields& sn);
// Data-In: `flags` is F/A/O/U/S (byte 1); status and StatSN count only with S.
inline constexpr uint8_t kDataFinal = 0x80;
inline constexpr uint8_t kDataStatus = 0x01;
inline constexpr uint8_t kResidualOverflow = 0x04;   // O, in Data-In and SCSI Response
inline constexpr uint8_t kResidualUnderflow = 0x02;  // U
[[nodiscard]] Bhs make_data_in(uint32_t itt, uint64_t lun, uint8_t flags, uint8_t status,
                               uint32_t data_sn, uint32_t offset, uint32_t residual,
                               const SnFields& sn);

// Header builders for what an initiator sends (tests, fuzz corpus).
[[nodiscard]] Bhs make_login_request(bool transit, uint8_t csg, uint8_t nsg, uint64_t isid,
                                     uint16_t tsih, uint32_t itt, uint32_t cmd_sn);
[[nodiscard]] Bhs make_scsi_command(uint32_t itt, uint64_t lun, bool read, bool write,
                                    uint32_t expected_length, uint32_t cmd_sn,
                                    std::span<const uint8_t> cdb, bool final = true);
[[nodiscard]] Bhs make_data_out(uint32_t itt, uint32_t ttt, uint64_t lun, bool final,
                                uint32_t data_sn, uint32_t offset);
[[nodiscard]] Bhs make_nop_out(uint32_t itt, uint32_t ttt, uint32_t cmd_sn, bool immediate);
[[nodiscard]] Bhs make_text_request(uint32_t itt, uint32_t cmd_sn, bool final = true);
[[nodiscard]] Bhs make_logout_request(uint32_t itt, uint8_t reason, uint32_t cmd_sn);
[[nodiscard]] Bhs make_tmf_request(uint32_t itt, TmfFunction function, uint64_t lun,
                                   uint32_t referenced_itt, uint32_t cmd_sn, uint32_t ref_cmd_sn);

// The digest of a header (BHS plus AHS) or a padded data segment.
[[nodiscard]] uint32_t header_digest(const Bhs& h, std::span<const uint8_t> ahs) noexcept;

// SCSI LUN field (SAM-5 4.7) for a flat/peripheral LUN below 256 and back.
[[nodiscard]] constexpr uint64_t encode_lun(uint16_t lun) noexcept {
  return lun < 256 ? uint64_t{lun} << 48 : (uint64_t{0x4000u | lun} << 48);
}
[[nodiscard]] constexpr uint16_t decode_lun(uint64_t field) noexcept {
  return static_cast<uint16_t>((field >> 48) & 0x3FFF);
}

}  // namespace cairn::target::iscsi
