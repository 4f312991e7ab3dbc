// Sense data (SPC-5 4.4): what a CHECK CONDITION carries. cairn returns fixed-format sense
// (response code 0x70), which every initiator understands; descriptor format is not used.
//
// Every error in target/scsi/ is built from these constants, so the sense key, ASC and ASCQ
// of each failure are named once, here, with SPC-5's words.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace cairn::target::scsi {

enum class SenseKey : uint8_t {
  no_sense = 0x0,
  recovered_error = 0x1,
  not_ready = 0x2,
  medium_error = 0x3,
  hardware_error = 0x4,
  illegal_request = 0x5,
  unit_attention = 0x6,
  data_protect = 0x7,
  blank_check = 0x8,
  copy_aborted = 0xA,
  aborted_command = 0xB,
  miscompare = 0xE,
};

// An additional sense code and qualifier, as one 16-bit value: ASC << 8 | ASCQ.
enum class Asc : uint16_t {
  no_additional_sense = 0x0000,
  logical_unit_not_ready_sanitize = 0x041B,
  write_error = 0x0C00,
  unrecovered_read_error = 0x1100,
  miscompare_during_verify = 0x1D00,
  parameter_list_length_error = 0x1A00,
  invalid_command_operation_code = 0x2000,
  lba_out_of_range = 0x2100,
  invalid_field_in_cdb = 0x2400,
  logical_unit_not_supported = 0x2500,
  invalid_field_in_parameter_list = 0x2600,
  parameter_not_supported = 0x2601,
  parameter_value_invalid = 0x2602,
  invalid_release_of_persistent_reservation = 0x2604,
  too_many_segment_descriptors = 0x2608,
  unsupported_segment_descriptor_type = 0x2609,
  too_many_target_descriptors = 0x2606,
  unsupported_target_descriptor_type = 0x2607,
  write_protected = 0x2700,
  software_write_protected = 0x2702,
  space_allocation_failed_write_protect = 0x2707,
  power_on_reset = 0x2900,
  bus_device_reset = 0x2903,  // BUS DEVICE RESET FUNCTION OCCURRED (a LUN reset)
  parameters_changed = 0x2A00,
  mode_parameters_changed = 0x2A01,
  reservations_preempted = 0x2A03,
  reservations_released = 0x2A04,
  registrations_preempted = 0x2A05,
  capacity_data_changed = 0x2A09,
  commands_cleared_by_another_initiator = 0x2F00,
  commands_cleared_by_device_server = 0x2F02,
  medium_not_present = 0x3A00,
  saving_parameters_not_supported = 0x3900,
  insufficient_registration_resources = 0x5504,
  invalid_message_error = 0x4900,
  copy_target_device_not_reachable = 0x0D02,
  unreachable_copy_target = 0x0804,
  data_phase_error = 0x4B00,
  too_much_write_data = 0x4B02,
  internal_target_failure = 0x4400,
  insufficient_resources = 0x5500,
};

struct SenseData {
  SenseKey key = SenseKey::no_sense;
  Asc asc = Asc::no_additional_sense;
  // SENSE KEY SPECIFIC field pointer (SPC-5 4.4.3.2.2) for ILLEGAL REQUEST: the byte (and
  // optionally bit) of the CDB or parameter list that is wrong.
  std::optional<uint16_t> field_pointer;
  std::optional<uint8_t> bit_pointer;
  bool in_cdb = true;  // C/D bit: the field pointer points into the CDB (else parameter data)
  // INFORMATION field (for example, the first miscompared byte's offset); VALID bit when set.
  std::optional<uint64_t> information;
  // SENSE KEY SPECIFIC progress indication (SPC-5 4.4.3.2.4) for NOT READY while a
  // background operation runs: the fraction done, in 65536ths.
  std::optional<uint16_t> progress;
};

// 18 bytes of fixed-format sense (response code 0x70, current error).
[[nodiscard]] inline std::vector<uint8_t> encode_fixed(const SenseData& s) {
  std::vector<uint8_t> out(18, 0);
  out[0] = 0x70;
  out[2] = static_cast<uint8_t>(s.key);
  if (s.information) {
    out[0] |= 0x80;  // VALID
    uint64_t v = *s.information;
    for (int i = 0; i < 4; ++i) {
      out[3 + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
    }
  }
  out[7] = 10;  // additional sense length
  out[12] = static_cast<uint8_t>(static_cast<uint16_t>(s.asc) >> 8);
  out[13] = static_cast<uint8_t>(static_cast<uint16_t>(s.asc) & 0xFF);
  if (s.field_pointer) {
    out[15] = 0x80;  // SKSV
    if (s.in_cdb) {
      out[15] |= 0x40;  // C/D
    }
    if (s.bit_pointer) {
      out[15] |= 0x08 | (*s.bit_pointer & 0x7);  // BPV and the bit
    }
    out[16] = static_cast<uint8_t>(*s.field_pointer >> 8);
    out[17] = static_cast<uint8_t>(*s.field_pointer & 0xFF);
  } else if (s.progress) {
    out[15] = 0x80;  // SKSV
    out[16] = static_cast<uint8_t>(*s.progress >> 8);
    out[17] = static_cast<uint8_t>(*s.progress & 0xFF);
  }
  return out;
}

}  // namespace cairn::target::scsi
