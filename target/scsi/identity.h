// The logical unit's stable identity: the NAA designator (VPD page 0x83, EXTENDED COPY's CSCD
// descriptors) and the unit serial number (VPD page 0x80). Both are derived from the volume name
// only, so a volume keeps its identity across restarts and on every node that serves it, which
// multipath and VMware rely on to recognise the same disk on another path.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace cairn::target::scsi {

struct Identity {
  std::array<uint8_t, 16> naa{};  // NAA type 6 (IEEE Registered Extended) designator
  std::string serial;             // unit serial number (VPD 0x80), ASCII, <= 32 chars
};

// The IEEE COMPANY_ID field of every cairn NAA designator: a CID (company identifier, the X bit
// set and the M bit clear in its first octet), chosen for cairn; docs/scsi.md "Identity".
inline constexpr uint32_t kNaaCompanyId = 0xCA129E;

// Pure: the same name gives the same identity, different names differ with overwhelming
// probability (100 bits of BLAKE2b of the name).
[[nodiscard]] Identity identity_for(std::string_view volume_name);

}  // namespace cairn::target::scsi
