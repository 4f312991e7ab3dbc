#include "target/iscsi/pdu.h"

#include "target/iscsi/crc32c.h"

namespace cairn::target::iscsi {
namespace {

// Longest AHS the target accepts: an extended CDB of up to 260 bytes plus a bidirectional
// read length AHS fit well within this.
constexpr uint32_t kMaxAhsBytes = 512;
// Login and Text requests carry text; the login phase bounds a PDU's text at 8192 bytes
// (RFC 7143 section 6.1, MaxRecvDataSegmentLength's default during login).
constexpr uint32_t kMaxLoginData = 8192;

HeaderVerdict reject(RejectReason reason, const char* why) {
  return {HeaderCheck::reject, reason, why};
}
HeaderVerdict close(const char* why) {
  return {HeaderCheck::close, RejectReason::protocol_error, why};
}

void put_sn(Bhs& h, const SnFields& sn) {
  h.set32(24, sn.stat_sn);
  h.set32(28, sn.exp_cmd_sn);
  h.set32(32, sn.max_cmd_sn);
}

}  // namespace

HeaderVerdict check_request(const Bhs& h, bool login_phase, uint32_t max_data) {
  const Opcode op = h.opcode();
  if (h.ahs_bytes() > kMaxAhsBytes) {
    return close("additional header segments too long");
  }
  if (login_phase) {
    if (op != Opcode::login_request) {
      return close("non-login PDU during login");
    }
    if (h.data_length() > kMaxLoginData) {
      return close("login PDU text over 8192 bytes");
    }
    if (h.ahs_bytes() != 0) {
      return close("login PDU with an AHS");
    }
    return {};
  }
  if (h.data_length() > max_data) {
    return close("data segment longer than MaxRecvDataSegmentLength");
  }
  switch (op) {
    case Opcode::scsi_command:
      return {};
    case Opcode::nop_out:
      if (!h.final_bit()) {
        return reject(RejectReason::invalid_pdu_field, "NOP-Out without the F bit");
      }
      if (h.itt() == kReservedTag && !h.immediate()) {
        return reject(RejectReason::protocol_error, "NOP-Out with no ITT must be immediate");
      }
      break;
    case Opcode::task_mgmt_request:
      if (!h.final_bit()) {
        return reject(RejectReason::invalid_pdu_field, "task management request without F");
      }
      break;
    case Opcode::text_request:
      if (h.final_bit() && (h.b[1] & 0x40) != 0) {
        return reject(RejectReason::protocol_error, "Text request with both F and C");
      }
      break;
    case Opcode::data_out:
      break;
    case Opcode::logout_request:
      if (!h.final_bit()) {
        return reject(RejectReason::invalid_pdu_field, "Logout request without F");
      }
      break;
    case Opcode::login_request:
      return reject(RejectReason::protocol_error, "Login request in full feature phase");
    case Opcode::snack_request:
      return reject(RejectReason::snack_reject, "SNACK at ErrorRecoveryLevel 0");
    default:
      return reject(RejectReason::command_not_supported, "unknown opcode");
  }
  if (h.ahs_bytes() != 0) {
    return reject(RejectReason::invalid_pdu_field, "AHS on a PDU other than SCSI Command");
  }
  return {};
}

uint32_t header_digest(const Bhs& h, std::span<const uint8_t> ahs) noexcept {
  uint32_t crc = crc32c(std::as_bytes(std::span(h.b)));
  return crc32c(std::as_bytes(ahs), crc);
}

Decoded decode_pdu(std::span<const std::byte> in, bool hd, bool dd, uint32_t max_data) {
  Decoded out;
  if (in.size() < kBhsBytes) {
    return out;
  }
  Pdu pdu;
  std::memcpy(pdu.bhs.b.data(), in.data(), kBhsBytes);
  const uint32_t ahs = pdu.bhs.ahs_bytes();
  const uint32_t data = pdu.bhs.data_length();
  if (ahs > kMaxAhsBytes || data > max_data) {
    out.error = DecodeError::bad_header;
    return out;
  }
  std::size_t need = kBhsBytes + ahs + (hd ? kDigestBytes : 0);
  if (in.size() < need) {
    return out;
  }
  pdu.ahs.resize(ahs);
  if (ahs > 0) {
    std::memcpy(pdu.ahs.data(), in.data() + kBhsBytes, ahs);
  }
  if (hd) {
    uint32_t want = 0;
    std::memcpy(&want, in.data() + kBhsBytes + ahs, 4);  // digests are little-endian on the wire
    if (want != header_digest(pdu.bhs, pdu.ahs)) {
      out.error = DecodeError::header_digest;
      return out;
    }
  }
  const std::size_t data_at = need;
  need += padded(data) + (dd && data > 0 ? kDigestBytes : 0);
  if (in.size() < need) {
    return out;
  }
  pdu.data.assign(in.begin() + static_cast<std::ptrdiff_t>(data_at),
                  in.begin() + static_cast<std::ptrdiff_t>(data_at + data));
  if (dd && data > 0) {
    uint32_t want = 0;
    std::memcpy(&want, in.data() + data_at + padded(data), 4);
    if (want != crc32c(in.subspan(data_at, padded(data)))) {
      out.error = DecodeError::data_digest;
      return out;
    }
  }
  out.pdu = std::move(pdu);
  out.consumed = need;
  return out;
}

std::vector<std::byte> encode_pdu(const Pdu& pdu, bool hd, bool dd) {
  Bhs h = pdu.bhs;
  h.set_ahs_bytes(static_cast<uint32_t>(pdu.ahs.size()));
  h.set_data_length(static_cast<uint32_t>(pdu.data.size()));
  std::vector<std::byte> out;
  const auto* hb = reinterpret_cast<const std::byte*>(h.b.data());
  out.insert(out.end(), hb, hb + kBhsBytes);
  const auto* ab = reinterpret_cast<const std::byte*>(pdu.ahs.data());
  out.insert(out.end(), ab, ab + pdu.ahs.size());
  auto put_crc = [&](uint32_t crc) {
    std::byte raw[4];
    std::memcpy(raw, &crc, 4);
    out.insert(out.end(), raw, raw + 4);
  };
  if (hd) {
    put_crc(header_digest(h, pdu.ahs));
  }
  if (!pdu.data.empty()) {
    const std::size_t at = out.size();
    out.insert(out.end(), pdu.data.begin(), pdu.data.end());
    out.resize(at + padded(static_cast<uint32_t>(pdu.data.size())), std::byte{0});
    if (dd) {
      put_crc(crc32c(std::span(out).subspan(at)));
    }
  }
  return out;
}

Bhs make_nop_in(uint32_t itt, uint32_t ttt, uint64_t lun, const SnFields& sn) {
  Bhs h;
  h.set_opcode(Opcode::nop_in);
  h.b[1] = 0x80;
  h.set64(8, lun);
  h.set32(16, itt);
  h.set32(20, ttt);
  put_sn(h, sn);
  return h;
}

Bhs make_scsi_response(uint32_t itt, uint8_t status, uint8_t flags_residual, uint32_t residual,
                       const SnFields& sn, uint32_t exp_data_sn) {
  Bhs h;
  h.set_opcode(Opcode::scsi_response);
  h.b[1] = static_cast<uint8_t>(0x80 | (flags_residual & 0x06));
  h.b[2] = 0;  // command completed at target
  h.b[3] = status;
  h.set32(16, itt);
  put_sn(h, sn);
  h.set32(36, exp_data_sn);
  h.set32(44, residual);
  return h;
}

Bhs make_tmf_response(uint32_t itt, TmfResponse response, const SnFields& sn) {
  Bhs h;
  h.set_opcode(Opcode::task_mgmt_response);
  h.b[1] = 0x80;
  h.b[2] = static_cast<uint8_t>(response);
  h.set32(16, itt);
  put_sn(h, sn);
  return h;
}

Bhs make_login_response(const Bhs& request, bool transit, uint8_t csg, uint8_t nsg, uint16_t tsih,
                        uint8_t status_class, uint8_t status_detail, const SnFields& sn) {
  Bhs h;
  h.set_opcode(Opcode::login_response);
  h.b[1] = static_cast<uint8_t>((transit ? 0x80 : 0) | (csg & 3) << 2 | (transit ? nsg & 3 : 0));
  h.b[2] = 0;                                            // Version-max
  h.b[3] = 0;                                            // Version-active
  std::memcpy(h.b.data() + 8, request.b.data() + 8, 6);  // ISID
  h.set16(14, tsih);
  h.set32(16, request.itt());
  put_sn(h, sn);
  h.b[36] = status_class;
  h.b[37] = status_detail;
  return h;
}

Bhs make_text_response(uint32_t itt, uint32_t ttt, bool final, bool more, const SnFields& sn) {
  Bhs h;
  h.set_opcode(Opcode::text_response);
  h.b[1] = static_cast<uint8_t>((final ? 0x80 : 0) | (more ? 0x40 : 0));
  h.set32(16, itt);
  h.set32(20, ttt);
  put_sn(h, sn);
  return h;
}

Bhs make_logout_response(uint32_t itt, uint8_t response, const SnFields& sn) {
  Bhs h;
  h.set_opcode(Opcode::logout_response);
  h.b[1] = 0x80;
  h.b[2] = response;
  h.set32(16, itt);
  put_sn(h, sn);
  return h;
}

Bhs make_r2t(uint32_t itt, uint32_t ttt, uint64_t lun, uint32_t r2t_sn, uint32_t offset,
             uint32_t length, const SnFields& sn) {
  Bhs h;
  h.set_opcode(Opcode::r2t);
  h.b[1] = 0x80;
  h.set64(8, lun);
  h.set32(16, itt);
  h.set32(20, ttt);
  put_sn(h, sn);
  h.set32(36, r2t_sn);
  h.set32(40, offset);
  h.set32(44, length);
  return h;
}

Bhs make_reject(RejectReason reason, const SnFields& sn) {
  Bhs h;
  h.set_opcode(Opcode::reject);
  h.b[1] = 0x80;
  h.b[2] = static_cast<uint8_t>(reason);
  h.set32(16, kReservedTag);
  put_sn(h, sn);
  return h;
}

Bhs make_async(uint8_t event, uint16_t p1, uint16_t p2, uint16_t p3, const SnFields& sn) {
  Bhs h;
  h.set_opcode(Opcode::async_message);
  h.b[1] = 0x80;
  h.set32(16, kReservedTag);
  put_sn(h, sn);
  h.b[36] = event;
  h.set16(38, p1);
  h.set16(40, p2);
  h.set16(42, p3);
  return h;
}

Bhs make_data_in(uint32_t itt, uint64_t lun, uint8_t flags, uint8_t status, uint32_t data_sn,
                 uint32_t offset, uint32_t residual, const SnFields& sn) {
  Bhs h;
  h.set_opcode(Opcode::data_in);
  h.b[1] = flags;
  h.set64(8, lun);
  h.set32(16, itt);
  h.set32(20, kReservedTag);
  if ((flags & kDataStatus) != 0) {
    h.b[3] = status;
    h.set32(24, sn.stat_sn);
    h.set32(44, residual);
  }
  h.set32(28, sn.exp_cmd_sn);
  h.set32(32, sn.max_cmd_sn);
  h.set32(36, data_sn);
  h.set32(40, offset);
  return h;
}

Bhs make_login_request(bool transit, uint8_t csg, uint8_t nsg, uint64_t isid, uint16_t tsih,
                       uint32_t itt, uint32_t cmd_sn) {
  Bhs h;
  h.set_opcode(Opcode::login_request, true);
  h.b[1] = static_cast<uint8_t>((transit ? 0x80 : 0) | (csg & 3) << 2 | (transit ? nsg & 3 : 0));
  h.set64(8, isid << 16 | tsih);
  h.set32(16, itt);
  h.set32(24, cmd_sn);
  return h;
}

Bhs make_scsi_command(uint32_t itt, uint64_t lun, bool read, bool write, uint32_t expected_length,
                      uint32_t cmd_sn, std::span<const uint8_t> cdb, bool final) {
  Bhs h;
  h.set_opcode(Opcode::scsi_command);
  h.b[1] = static_cast<uint8_t>((final ? 0x80 : 0) | (read ? 0x40 : 0) | (write ? 0x20 : 0));
  h.set64(8, lun);
  h.set32(16, itt);
  h.set32(20, expected_length);
  h.set32(24, cmd_sn);
  std::memcpy(h.b.data() + 32, cdb.data(), std::min<std::size_t>(cdb.size(), 16));
  return h;
}

Bhs make_data_out(uint32_t itt, uint32_t ttt, uint64_t lun, bool final, uint32_t data_sn,
                  uint32_t offset) {
  Bhs h;
  h.set_opcode(Opcode::data_out);
  h.b[1] = final ? 0x80 : 0;
  h.set64(8, lun);
  h.set32(16, itt);
  h.set32(20, ttt);
  h.set32(36, data_sn);
  h.set32(40, offset);
  return h;
}

Bhs make_nop_out(uint32_t itt, uint32_t ttt, uint32_t cmd_sn, bool immediate) {
  Bhs h;
  h.set_opcode(Opcode::nop_out, immediate);
  h.b[1] = 0x80;
  h.set32(16, itt);
  h.set32(20, ttt);
  h.set32(24, cmd_sn);
  return h;
}

Bhs make_text_request(uint32_t itt, uint32_t cmd_sn, bool final) {
  Bhs h;
  h.set_opcode(Opcode::text_request, true);
  h.b[1] = final ? 0x80 : 0x40;
  h.set32(16, itt);
  h.set32(20, kReservedTag);
  h.set32(24, cmd_sn);
  return h;
}

Bhs make_logout_request(uint32_t itt, uint8_t reason, uint32_t cmd_sn) {
  Bhs h;
  h.set_opcode(Opcode::logout_request, true);
  h.b[1] = static_cast<uint8_t>(0x80 | (reason & 0x7F));
  h.set32(16, itt);
  h.set32(24, cmd_sn);
  return h;
}

Bhs make_tmf_request(uint32_t itt, TmfFunction function, uint64_t lun, uint32_t referenced_itt,
                     uint32_t cmd_sn, uint32_t ref_cmd_sn) {
  Bhs h;
  h.set_opcode(Opcode::task_mgmt_request, true);
  h.b[1] = static_cast<uint8_t>(0x80 | static_cast<uint8_t>(function));
  h.set64(8, lun);
  h.set32(16, itt);
  h.set32(20, referenced_itt);
  h.set32(24, cmd_sn);
  h.set32(32, ref_cmd_sn);
  return h;
}

}  // namespace cairn::target::iscsi
