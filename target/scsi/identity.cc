#include "target/scsi/identity.h"

#include <sodium.h>

#include "base/assert.h"

namespace cairn::target::scsi {

Identity identity_for(std::string_view volume_name) {
  // A domain-separating key, so the identity never equals another hash of the same name.
  static constexpr std::string_view kKey = "cairn scsi identity v1";
  std::array<uint8_t, 16> hash{};
  int rc = crypto_generichash(
      hash.data(), hash.size(), reinterpret_cast<const unsigned char*>(volume_name.data()),
      volume_name.size(), reinterpret_cast<const unsigned char*>(kKey.data()), kKey.size());
  CAIRN_ASSERT(rc == 0);

  // SPC-5 7.7.6.6.5: NAA (4 bits) = 6, IEEE COMPANY_ID (24 bits), VENDOR SPECIFIC IDENTIFIER
  // (36 bits), VENDOR SPECIFIC IDENTIFIER EXTENSION (64 bits): the 100 vendor bits come from the
  // hash.
  Identity id;
  id.naa[0] = static_cast<uint8_t>(0x60 | (kNaaCompanyId >> 20));
  id.naa[1] = static_cast<uint8_t>(kNaaCompanyId >> 12);
  id.naa[2] = static_cast<uint8_t>(kNaaCompanyId >> 4);
  id.naa[3] = static_cast<uint8_t>((kNaaCompanyId & 0xF) << 4 | (hash[0] & 0xF));
  for (size_t i = 4; i < id.naa.size(); ++i) {
    id.naa[i] = hash[i - 3];
  }

  // The serial is the hex of the designator's vendor part (25 digits), so the two agree.
  static constexpr char kHex[] = "0123456789ABCDEF";
  id.serial.push_back(kHex[id.naa[3] & 0xF]);
  for (size_t i = 4; i < id.naa.size(); ++i) {
    id.serial.push_back(kHex[id.naa[i] >> 4]);
    id.serial.push_back(kHex[id.naa[i] & 0xF]);
  }
  return id;
}

}  // namespace cairn::target::scsi
