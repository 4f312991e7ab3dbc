// Builders for the CHECK CONDITION responses that command parsers return: fixed-format sense
// (sense.h) with an optional SENSE KEY SPECIFIC field pointer (SPC-5 4.4.3.2.2) at the CDB or
// parameter list byte (and bit) that is wrong.
//
// Header-only and stateless; used by the reservation and EXTENDED COPY parsers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "target/scsi/device.h"
#include "target/scsi/sense.h"

namespace cairn::target::scsi {

// CHECK CONDITION with `key`/`asc`; `field` (and `bit`) point into the CDB when `in_cdb`, else
// into the parameter list.
[[nodiscard]] inline Response check(SenseKey key, Asc asc,
                                    std::optional<uint16_t> field = std::nullopt,
                                    bool in_cdb = true, std::optional<uint8_t> bit = std::nullopt) {
  SenseData s;
  s.key = key;
  s.asc = asc;
  s.field_pointer = field;
  s.in_cdb = in_cdb;
  s.bit_pointer = bit;
  Response r;
  r.status = Status::check_condition;
  r.sense = encode_fixed(s);
  return r;
}

// ILLEGAL REQUEST / INVALID FIELD IN CDB at `byte` (and `bit`) of the CDB.
[[nodiscard]] inline Response invalid_cdb(uint16_t byte,
                                          std::optional<uint8_t> bit = std::nullopt) {
  return check(SenseKey::illegal_request, Asc::invalid_field_in_cdb, byte, true, bit);
}

// ILLEGAL REQUEST with `asc` and a field pointer at `byte` (and `bit`) of the parameter list.
[[nodiscard]] inline Response bad_param(Asc asc, size_t byte,
                                        std::optional<uint8_t> bit = std::nullopt) {
  return check(SenseKey::illegal_request, asc, static_cast<uint16_t>(byte), false, bit);
}

// ILLEGAL REQUEST / PARAMETER LIST LENGTH ERROR.
[[nodiscard]] inline Response param_length_error() {
  return check(SenseKey::illegal_request, Asc::parameter_list_length_error);
}

}  // namespace cairn::target::scsi
