// The identification and configuration commands of scsi::Device: INQUIRY (standard data and
// VPD pages 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2), READ CAPACITY 10/16, MODE SENSE/SELECT 6/10,
// REPORT LUNS and REPORT SUPPORTED OPERATION CODES. None of them touches the volume's data.
#include <algorithm>
#include <array>
#include <string_view>

#include "target/scsi/device.h"
#include "target/scsi/device_impl.h"
#include "target/scsi/opcodes.h"

namespace cairn::target::scsi {
namespace {

constexpr uint8_t kPageCaching = 0x08;
constexpr uint8_t kPageControl = 0x0A;
constexpr uint8_t kPageAll = 0x3F;

// Page control (SPC-5 6.13.2).
constexpr uint8_t kPcCurrent = 0;
constexpr uint8_t kPcChangeable = 1;

void put_ascii(std::vector<uint8_t>& out, size_t at, size_t width, std::string_view s) {
  if (out.size() < at + width) {
    out.resize(at + width);
  }
  for (size_t i = 0; i < width; ++i) {
    out[at + i] = i < s.size() && s[i] >= 0x20 && s[i] <= 0x7E ? static_cast<uint8_t>(s[i]) : ' ';
  }
}

// One designation descriptor (SPC-5 7.7.6.1).
void add_designator(std::vector<uint8_t>& out, uint8_t protocol_codeset, uint8_t piv_assoc_type,
                    std::span<const uint8_t> designator) {
  out.push_back(protocol_codeset);
  out.push_back(piv_assoc_type);
  out.push_back(0);
  out.push_back(static_cast<uint8_t>(designator.size()));
  out.insert(out.end(), designator.begin(), designator.end());
}

// A SCSI name string designator: UTF-8, null terminated, padded to a multiple of 4.
std::vector<uint8_t> name_string(std::string_view name) {
  std::vector<uint8_t> v(name.begin(), name.end());
  v.push_back(0);
  while (v.size() % 4 != 0) {
    v.push_back(0);
  }
  return v;
}

// A command in REPORT SUPPORTED OPERATION CODES: its CDB usage map (SPC-5 6.35.3).
struct Command {
  uint8_t opcode;
  int16_t service_action;  // -1: none
  std::array<uint8_t, 16> usage;
  uint8_t length;
};

// clang-format off
constexpr Command kCommands[] = {
  {op::kTestUnitReady, -1, {0x00, 0, 0, 0, 0, 0x04}, 6},
  {op::kRequestSense, -1, {0x03, 0x01, 0, 0, 0xFF, 0x04}, 6},
  {op::kRead6, -1, {0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0x04}, 6},
  {op::kWrite6, -1, {0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0x04}, 6},
  {op::kInquiry, -1, {0x12, 0x01, 0xFF, 0xFF, 0xFF, 0x04}, 6},
  {op::kModeSelect6, -1, {0x15, 0x11, 0, 0, 0xFF, 0x04}, 6},
  {op::kReserve6, -1, {0x16, 0, 0, 0, 0, 0x04}, 6},
  {op::kRelease6, -1, {0x17, 0, 0, 0, 0, 0x04}, 6},
  {op::kModeSense6, -1, {0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0x04}, 6},
  {op::kStartStopUnit, -1, {0x1B, 0x01, 0, 0x0F, 0xF7, 0x04}, 6},
  {op::kReadCapacity10, -1, {0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0x04}, 10},
  {op::kRead10, -1, {0x28, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x04}, 10},
  {op::kWrite10, -1, {0x2A, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x04}, 10},
  {op::kWriteAndVerify10, -1, {0x2E, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x04}, 10},
  {op::kVerify10, -1, {0x2F, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x04}, 10},
  {op::kPrefetch10, -1, {0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x04}, 10},
  {op::kSynchronizeCache10, -1, {0x35, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x04}, 10},
  {op::kReadDefectData10, -1, {0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0x04}, 10},
  {op::kWriteSame10, -1, {0x41, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x04}, 10},
  {op::kUnmap, -1, {0x42, 0x01, 0, 0, 0, 0, 0x3F, 0xFF, 0xFF, 0x04}, 10},
  {op::kSanitize, op::kSaOverwrite, {0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04}, 10},
  {op::kSanitize, op::kSaBlockErase, {0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04}, 10},
  {op::kSanitize, op::kSaCryptoErase, {0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04}, 10},
  {op::kSanitize, op::kSaExitFailureMode, {0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04}, 10},
  {op::kModeSelect10, -1, {0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04}, 10},
  {op::kModeSense10, -1, {0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0x04}, 10},
  {op::kPersistentReserveIn, 0x00, {0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04}, 10},
  {op::kPersistentReserveIn, 0x01, {0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04}, 10},
  {op::kPersistentReserveIn, 0x02, {0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04}, 10},
  {op::kPersistentReserveIn, 0x03, {0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04}, 10},
  {op::kPersistentReserveOut, 0x00, {0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x04}, 10},
  {op::kPersistentReserveOut, 0x01, {0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x04}, 10},
  {op::kPersistentReserveOut, 0x02, {0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x04}, 10},
  {op::kPersistentReserveOut, 0x03, {0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x04}, 10},
  {op::kPersistentReserveOut, 0x04, {0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x04}, 10},
  {op::kPersistentReserveOut, 0x05, {0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x04}, 10},
  {op::kPersistentReserveOut, 0x06, {0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x04}, 10},
  {op::kPersistentReserveOut, 0x07, {0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x04}, 10},
  {op::kExtendedCopy, 0x00, {0x83, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x04}, 16},
  {op::kReceiveCopyResults, 0x00, {0x84, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x04}, 16},
  {op::kReceiveCopyResults, 0x03, {0x84, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x04}, 16},
  {op::kRead16, -1, {0x88, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x04}, 16},
  {op::kCompareAndWrite, -1, {0x89, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x3F, 0x04}, 16},
  {op::kWrite16, -1, {0x8A, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x04}, 16},
  {op::kOrWrite, -1, {0x8B, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x04}, 16},
  {op::kWriteAndVerify16, -1, {0x8E, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x04}, 16},
  {op::kVerify16, -1, {0x8F, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x04}, 16},
  {op::kPrefetch16, -1, {0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x04}, 16},
  {op::kSynchronizeCache16, -1, {0x91, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x04}, 16},
  {op::kWriteSame16, -1, {0x93, 0xF9, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x04}, 16},
  {op::kWriteAtomic16, -1, {0x9C, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 0x3F, 0x04}, 16},
  {op::kServiceActionIn16, op::kSaReadCapacity16, {0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x04}, 16},
  {op::kServiceActionIn16, op::kSaGetLbaStatus, {0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x04}, 16},
  {op::kReportLuns, -1, {0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x04}, 12},
  {op::kMaintenanceIn, op::kSaReportSupportedOpcodes, {0xA3, 0x1F, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x04}, 12},
  {op::kRead12, -1, {0xA8, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x04}, 12},
  {op::kWrite12, -1, {0xAA, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x04}, 12},
  {op::kWriteAndVerify12, -1, {0xAE, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x04}, 12},
  {op::kVerify12, -1, {0xAF, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x04}, 12},
  {op::kReadDefectData12, -1, {0xB7, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x04}, 12},
};
// clang-format on

// Appends a command timeouts descriptor (SPC-5 6.35.4): nominal and recommended, seconds.
void add_timeouts(std::vector<uint8_t>& out) {
  size_t at = out.size();
  out.resize(at + 12, 0);
  put16(out, at, 0x0A);
  put16(out, at + 2, 0);
  put32(out, at + 4, 1);
  put32(out, at + 8, 30);
}

}  // namespace

Response Device::Impl::inquiry(const Nexus& nexus, const Request& r,
                               std::vector<std::byte>& data_in) {
  std::span<const uint8_t> cdb = r.cdb;
  const uint32_t alloc = get16(&cdb[3]);
  if ((cdb[1] & 0x02) != 0) {
    return invalid_field(1, 1);  // CMDDT (obsolete)
  }
  if ((cdb[1] & 0x01) == 0) {
    if (cdb[2] != 0) {
      return invalid_field(2);
    }
    std::vector<uint8_t> out(74, 0);
    out[0] = 0x00;  // connected direct-access block device
    out[2] = 0x06;  // SPC-4
    out[3] = 0x12;  // HISUP, response data format 2
    out[5] = 0x08;  // 3PC: EXTENDED COPY
    out[7] = 0x02;  // CMDQUE
    put_ascii(out, 8, 8, options_.vendor);
    put_ascii(out, 16, 16, options_.product);
    put_ascii(out, 32, 4, options_.revision);
    // Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
    put16(out, 58, 0x00A0);
    put16(out, 60, 0x0960);
    put16(out, 62, 0x0460);
    put16(out, 64, 0x04C0);
    out[4] = static_cast<uint8_t>(out.size() - 5);
    return send_data(out, alloc, r, data_in);
  }
  std::vector<uint8_t> page = vpd_page(nexus, cdb[2]);
  if (page.empty()) {
    return invalid_field(2);
  }
  put16(page, 2, static_cast<uint16_t>(page.size() - 4));
  return send_data(page, alloc, r, data_in);
}

std::vector<uint8_t> Device::Impl::vpd_page(const Nexus& nexus, uint8_t page) const {
  std::vector<uint8_t> out = {0x00, page, 0, 0};
  const uint32_t lbppb = uint32_t{1} << lbppb_exponent();
  switch (page) {
    case 0x00:  // supported VPD pages, ascending
      for (uint8_t p : {0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2}) {
        out.push_back(p);
      }
      return out;
    case 0x80:  // unit serial number
      out.insert(out.end(), identity_.serial.begin(), identity_.serial.end());
      return out;
    case 0x83: {                                       // device identification (SPC-5 7.7.6)
      add_designator(out, 0x01, 0x03, identity_.naa);  // binary, LU, NAA
      std::vector<uint8_t> t10;
      put_ascii(t10, 0, 8, options_.vendor);
      t10.insert(t10.end(), identity_.serial.begin(), identity_.serial.end());
      add_designator(out, 0x02, 0x01, t10);  // ASCII, LU, T10 vendor id
      if (!nexus.target_port.empty()) {
        // iSCSI, PIV: the target port's SCSI name string and its relative port.
        add_designator(out, 0x53, 0x98, name_string(nexus.target_port));
        std::vector<uint8_t> rel(4, 0);
        put16(rel, 2, nexus.relative_target_port);
        add_designator(out, 0x51, 0x94, rel);
        std::string_view target = nexus.target_port;
        target = target.substr(0, target.find(",t,0x"));
        add_designator(out, 0x53, 0xA8, name_string(target));  // the target device
      }
      return out;
    }
    case 0x8F:  // third-party copy, from the copy manager (whole page)
      return CopyManager::third_party_copy_vpd(block_bytes());
    case 0xB0: {  // block limits (SBC-4 6.6.4)
      out.resize(64, 0);
      out[5] = static_cast<uint8_t>(kMaxCompareAndWriteBlocks);
      put16(out, 6, static_cast<uint16_t>(lbppb));  // OPTIMAL TRANSFER LENGTH GRANULARITY
      put32(out, 8, max_transfer_blocks());         // MAXIMUM TRANSFER LENGTH
      put32(out, 12, max_transfer_blocks());        // OPTIMAL TRANSFER LENGTH
      put32(out, 16, max_transfer_blocks());        // MAXIMUM PREFETCH LENGTH
      put32(out, 20, kMaxUnmapBlocks);              // MAXIMUM UNMAP LBA COUNT
      put32(out, 24, kMaxUnmapDescriptors);         // ... BLOCK DESCRIPTOR COUNT
      put32(out, 28, lbppb);                        // OPTIMAL UNMAP GRANULARITY: a chunk
      put32(out, 32, 0x80000000);                   // UGAVALID, alignment 0
      put64(out, 36, 0);                            // MAXIMUM WRITE SAME LENGTH: no limit
      put32(out, 44, max_transfer_blocks());        // MAXIMUM ATOMIC TRANSFER LENGTH
      // An atomic write covers whole chunks (physical blocks), so that no chunk is half old,
      // half new: write() refuses others.
      put32(out, 48, lbppb);  // ATOMIC ALIGNMENT
      put32(out, 52, lbppb);  // ATOMIC TRANSFER LENGTH GRANULARITY
      return out;
    }
    case 0xB1:  // block device characteristics (SBC-4 6.6.2)
      out.resize(64, 0);
      put16(out, 4, 1);  // non-rotating medium
      out[7] = 0x50;     // WABEREQ 01b, WACEREQ 01b: reads after a sanitize succeed
      return out;
    case 0xB2:  // logical block provisioning (SBC-4 6.6.5)
      out.resize(8, 0);
      out[5] = 0xE4;  // LBPU, LBPWS, LBPWS10, LBPRZ 001b
      out[6] = 0x02;  // thin provisioned
      return out;
    default:
      return {};
  }
}

Response Device::Impl::read_capacity10(const Request& r, std::vector<std::byte>& data_in) {
  std::vector<uint8_t> out(8);
  put32(out, 0, static_cast<uint32_t>(std::min<uint64_t>(blocks() - 1, 0xFFFFFFFF)));
  put32(out, 4, block_bytes());
  return send_data(out, 8, r, data_in);
}

Response Device::Impl::read_capacity16(const Request& r, std::vector<std::byte>& data_in) {
  std::vector<uint8_t> out(32, 0);
  put64(out, 0, blocks() - 1);
  put32(out, 8, block_bytes());
  out[13] = lbppb_exponent();
  out[14] = 0xC0;  // LBPME, LBPRZ; the lowest aligned LBA is 0
  return send_data(out, get32(&r.cdb[10]), r, data_in);
}

bool Device::Impl::mode_pages(uint8_t page, uint8_t pc, std::vector<uint8_t>& out) const {
  bool any = false;
  if (page == kPageCaching || page == kPageAll) {
    size_t at = out.size();
    out.resize(at + 20, 0);
    out[at] = kPageCaching;
    out[at + 1] = 0x12;
    // WCE: writes are acknowledged before they are durable unless the volume is write-through.
    bool wce = volume_.config().durability == blockmap::Durability::write_back;
    if (pc != kPcChangeable && wce) {
      out[at + 2] = 0x04;
    }
    any = true;
  }
  if (page == kPageControl || page == kPageAll) {
    size_t at = out.size();
    out.resize(at + 12, 0);
    out[at] = kPageControl;
    out[at + 1] = 0x0A;
    if (pc == kPcChangeable) {
      out[at + 4] = 0x08;  // SWP
    } else {
      out[at + 2] = 0x02;  // GLTSD: no log parameters are saved
      out[at + 3] = 0x10;  // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
      if (pc == kPcCurrent && software_write_protect_) {
        out[at + 4] = 0x08;
      }
    }
    any = true;
  }
  return any;
}

Response Device::Impl::mode_sense(const Request& r, std::vector<std::byte>& data_in) {
  std::span<const uint8_t> cdb = r.cdb;
  const bool six = cdb[0] == op::kModeSense6;
  const bool dbd = (cdb[1] & 0x08) != 0;
  const bool llbaa = !six && (cdb[1] & 0x10) != 0;
  const uint8_t pc = cdb[2] >> 6;
  const uint8_t page = cdb[2] & 0x3F;
  const uint8_t subpage = cdb[3];
  const uint32_t alloc = static_cast<uint32_t>(six ? cdb[4] : get16(&cdb[7]));
  if (subpage != 0 && subpage != 0xFF) {
    return invalid_field(3);
  }
  std::vector<uint8_t> out(six ? 4 : 8, 0);
  uint8_t device_specific = 0x10;  // DPOFUA
  if (!volume_.can_write() || software_write_protect_) {
    device_specific |= 0x80;  // WP
  }
  out[six ? 2 : 3] = device_specific;
  if (!dbd) {
    size_t at = out.size();
    if (llbaa) {
      out[4] = 0x01;  // LONGLBA
      out.resize(at + 16, 0);
      put64(out, at, blocks());
      put32(out, at + 12, block_bytes());
    } else {
      out.resize(at + 8, 0);
      put32(out, at, static_cast<uint32_t>(std::min<uint64_t>(blocks(), 0xFFFFFFFF)));
      put24(out, at + 5, block_bytes());
    }
    const size_t descriptor_bytes = out.size() - at;
    if (six) {
      out[3] = static_cast<uint8_t>(descriptor_bytes);
    } else {
      put16(out, 6, static_cast<uint16_t>(descriptor_bytes));
    }
  }
  if (!mode_pages(page, pc, out)) {
    return invalid_field(2, 5);
  }
  if (six) {
    out[0] = static_cast<uint8_t>(std::min<size_t>(out.size() - 1, 0xFF));
  } else {
    put16(out, 0, static_cast<uint16_t>(out.size() - 2));
  }
  return send_data(out, alloc, r, data_in);
}

Response Device::Impl::mode_select(const Nexus& nexus, const Request& r) {
  std::span<const uint8_t> cdb = r.cdb;
  const bool six = cdb[0] == op::kModeSelect6;
  const uint32_t len = static_cast<uint32_t>(six ? cdb[4] : get16(&cdb[7]));
  Response ok;
  ok.transfer_bytes = len;
  if ((cdb[1] & 0x01) != 0) {
    return invalid_field(1, 0);  // SP: no saved pages
  }
  if (len == 0) {
    return ok;
  }
  const size_t header = six ? 4 : 8;
  if (len < header || r.data_out.size() < len) {
    return check_condition(SenseKey::illegal_request, Asc::parameter_list_length_error);
  }
  auto p = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(r.data_out.data()), len);
  const size_t bdl = six ? p[3] : get16(&p[6]);
  if (header + bdl > len) {
    return check_condition(SenseKey::illegal_request, Asc::parameter_list_length_error);
  }
  if (bdl >= 8) {  // the block length may not change
    // A long LBA descriptor is 16 bytes but bdl may be 8: bytes past the list read as 0.
    std::array<uint8_t, 16> descriptor{};
    auto given = p.subspan(header, std::min<size_t>(len - header, descriptor.size()));
    std::copy(given.begin(), given.end(), descriptor.begin());
    uint64_t bl = (!six && (p[4] & 0x01) != 0) ? get32(&descriptor[12]) : get24(&descriptor[5]);
    if (bl != block_bytes()) {
      return invalid_field(static_cast<uint16_t>(header + bdl - 3), {}, false);
    }
  }
  // Each page sent must equal the current one except in changeable bits (only SWP).
  bool swp = software_write_protect_;
  for (size_t at = header + bdl; at < len;) {
    if (at + 2 > len) {
      return check_condition(SenseKey::illegal_request, Asc::parameter_list_length_error);
    }
    const uint8_t page = p[at] & 0x3F;
    std::vector<uint8_t> current;
    if ((p[at] & 0x40) != 0 || page == kPageAll || !mode_pages(page, kPcCurrent, current)) {
      return invalid_field(static_cast<uint16_t>(at), 5, false);
    }
    if (p[at + 1] != current[1] || at + current.size() > len) {
      return invalid_field(static_cast<uint16_t>(at + 1), {}, false);
    }
    std::vector<uint8_t> changeable;
    mode_pages(page, kPcChangeable, changeable);
    for (size_t i = 2; i < current.size(); ++i) {
      if (((p[at + i] ^ current[i]) & ~changeable[i]) != 0) {
        return invalid_field(static_cast<uint16_t>(at + i), {}, false);
      }
    }
    if (page == kPageControl) {
      swp = (p[at + 4] & 0x08) != 0;
    }
    at += current.size();
  }
  if (swp != software_write_protect_) {
    software_write_protect_ = swp;
    post_all_except(nexus.id, Asc::mode_parameters_changed);
  }
  return ok;
}

Response Device::Impl::report_luns(const Request& r, std::vector<std::byte>& data_in) {
  std::span<const uint8_t> cdb = r.cdb;
  const uint8_t select = cdb[2];
  const uint32_t alloc = get32(&cdb[6]);
  if (select > 0x02 && select != 0x10 && select != 0x11 && select != 0x12) {
    return invalid_field(2);
  }
  if (alloc < 16) {
    return invalid_field(6);
  }
  // One logical unit, LUN 0; no administrative logical units (SELECT REPORT 10h).
  std::vector<uint8_t> out(select == 0x10 ? 8 : 16, 0);
  put32(out, 0, static_cast<uint32_t>(out.size() - 8));
  return send_data(out, alloc, r, data_in);
}

Response Device::Impl::report_supported_opcodes(const Request& r, std::vector<std::byte>& data_in) {
  std::span<const uint8_t> cdb = r.cdb;
  const bool rctd = (cdb[2] & 0x80) != 0;
  const uint8_t options = cdb[2] & 0x07;
  const uint8_t opcode = cdb[3];
  const uint16_t sa = get16(&cdb[4]);
  const uint32_t alloc = get32(&cdb[6]);
  std::vector<uint8_t> out;
  if (options == 0) {
    out.resize(4, 0);
    for (const Command& c : kCommands) {
      size_t at = out.size();
      out.resize(at + 8, 0);
      out[at] = c.opcode;
      put16(out, at + 2, static_cast<uint16_t>(c.service_action < 0 ? 0 : c.service_action));
      out[at + 5] = static_cast<uint8_t>((rctd ? 0x02 : 0) | (c.service_action >= 0 ? 0x01 : 0));
      put16(out, at + 6, c.length);
      if (rctd) {
        add_timeouts(out);
      }
    }
    put32(out, 0, static_cast<uint32_t>(out.size() - 4));
    return send_data(out, alloc, r, data_in);
  }
  if (options > 3) {
    return invalid_field(2, 2);
  }
  bool has_sa = std::any_of(std::begin(kCommands), std::end(kCommands), [&](const Command& c) {
    return c.opcode == opcode && c.service_action >= 0;
  });
  if ((options == 1 && has_sa) || (options == 2 && !has_sa && is_supported(opcode))) {
    return invalid_field(options == 1 ? 3 : 4);
  }
  const Command* found = nullptr;
  for (const Command& c : kCommands) {
    if (c.opcode == opcode && (c.service_action < 0 || (options != 1 && c.service_action == sa))) {
      found = &c;
      break;
    }
  }
  out.resize(4, 0);
  if (found == nullptr) {
    out[1] = 0x01;  // not supported
  } else {
    out[1] = static_cast<uint8_t>((rctd ? 0x80 : 0) | 0x03);
    put16(out, 2, found->length);
    out.insert(out.end(), found->usage.begin(), found->usage.begin() + found->length);
    if (found->service_action >= 0) {
      out[4 + 1] = static_cast<uint8_t>((found->usage[1] & 0xE0) | found->service_action);
    }
    if (rctd) {
      add_timeouts(out);
    }
  }
  return send_data(out, alloc, r, data_in);
}

bool Device::Impl::is_supported(uint8_t opcode) noexcept {
  return std::any_of(std::begin(kCommands), std::end(kCommands),
                     [&](const Command& c) { return c.opcode == opcode; });
}

}  // namespace cairn::target::scsi
