// scsi::CopyManager: EXTENDED COPY (LID1, SPC-4 6.4) and RECEIVE COPY RESULTS (SPC-4 6.18) for
// one logical unit — VMware's clone offload (VAAI XCOPY).
//
// Supported: identification CSCD descriptors (0xE4) that name this logical unit by its NAA
// designator (scsi::identity_for(volume name)), and block device to block device segment
// descriptors (0x02) between them. A copy within the volume runs as Volume::copy_range, which
// copies whole chunks by reference: it costs map metadata and stores no new data. Copies to or
// from any other logical unit fail with COPY ABORTED / UNREACHABLE COPY TARGET, since a node
// only reaches its own volumes' data through this device.
//
// Copies run synchronously with the EXTENDED COPY command (it completes when the data is
// copied), so RECEIVE COPY RESULTS' COPY STATUS reports the last finished copy of each list
// identifier. The results of the last kMaxListIds list identifiers are kept, per initiator port.
//
// Threading: owned by the Device, used on the volume's owner reactor only. `volume` must
// outlive the CopyManager.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "base/asio.h"
#include "blockmap/volume.h"
#include "target/scsi/device.h"

namespace cairn::target::scsi {

struct Identity;

class CopyManager {
 public:
  // Operating parameters reported by RECEIVE COPY RESULTS / OPERATING PARAMETERS.
  static constexpr uint16_t kMaxCscdDescriptors = 2;         // MAXIMUM CSCD DESCRIPTOR COUNT
  static constexpr uint16_t kMaxSegmentDescriptors = 64;     // MAXIMUM SEGMENT DESCRIPTOR COUNT
  static constexpr uint32_t kMaxSegmentBytes = 256u << 20;   // MAXIMUM SEGMENT LENGTH
  static constexpr uint32_t kMaxDescriptorListBytes = 4096;  // MAXIMUM DESCRIPTOR LIST LENGTH
  static constexpr uint16_t kMaxConcurrentCopies = 1;        // copies are synchronous
  static constexpr size_t kMaxListIds = 64;                  // finished copy results kept

  CopyManager(blockmap::Volume& volume, const Identity& identity);

  Task<Response> extended_copy(const Nexus& nexus, std::span<const uint8_t> cdb,
                               std::span<const std::byte> data_out);
  Task<Response> receive_copy_results(const Nexus& nexus, std::span<const uint8_t> cdb,
                                      std::vector<std::byte>& data_in);

 private:
  // The outcome of one finished EXTENDED COPY, for RECEIVE COPY RESULTS / COPY STATUS.
  struct CopyResult {
    std::string initiator_port;
    uint8_t list_id = 0;
    uint8_t copy_status = 0;  // 0x01 completed, 0x02 completed with errors
    uint16_t segments_processed = 0;
    uint64_t transferred_blocks = 0;
  };

  blockmap::Volume& volume_;
  std::array<uint8_t, 16> naa_{};  // this LU's NAA designator, for matching CSCD 0xE4
  std::deque<CopyResult> results_;
};

}  // namespace cairn::target::scsi
