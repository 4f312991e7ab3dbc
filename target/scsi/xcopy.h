// scsi::CopyManager: EXTENDED COPY (LID1, SPC-4 6.4) and RECEIVE COPY RESULTS (SPC-4 6.18) for
// one logical unit — VMware's clone offload (VAAI XCOPY).
//
// Supported: identification CSCD descriptors (0xE4) that name this logical unit by its NAA
// designator (scsi::identity_for(volume name)), and block device to block device segment
// descriptors between them, by blocks (0x02) or by bytes (0x0A). A copy within the volume runs as
// Volume::copy_range, which copies whole chunks by reference: it costs map metadata and stores no
// new data. Copies to or from any other logical unit fail with COPY ABORTED / UNREACHABLE COPY
// TARGET, since a node only reaches its own volumes' data through this device.
//
// Copies run synchronously with the EXTENDED COPY command (it completes when the data is
// copied), so RECEIVE COPY RESULTS' COPY STATUS reports a finished copy of the asking I_T
// nexus. The results of the last kMaxHeldResults copies are kept.
//
// Threading: owned by the Device, used on the volume's owner reactor only. `volume` must
// outlive the CopyManager.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/asio.h"
#include "blockmap/volume.h"
#include "target/scsi/device.h"
#include "target/scsi/identity.h"

namespace cairn::target::scsi {

class CopyManager {
 public:
  // Operating parameters, reported by RECEIVE COPY RESULTS / OPERATING PARAMETERS and the
  // Third-party Copy VPD page.
  static constexpr uint16_t kMaxCscdDescriptors = 2;
  static constexpr uint16_t kMaxSegmentDescriptors = 64;
  static constexpr uint32_t kMaxDescriptorListBytes = 4096;  // CSCD + segment descriptor lists
  // MAXIMUM SEGMENT LENGTH, enforced for byte segments (0x0A); a block segment (0x02) may
  // name up to 65535 blocks whatever the block size, as initiators expect.
  static constexpr uint32_t kMaxSegmentBytes = 32u << 20;
  static constexpr uint16_t kMaxConcurrentCopies = 1;  // copies run with the command
  static constexpr size_t kMaxHeldResults = 64;        // COPY STATUS results kept, oldest dropped

  // `volume` must outlive the CopyManager; `identity` is copied.
  CopyManager(blockmap::Volume& volume, const Identity& identity);

  // EXTENDED COPY (LID1): runs every segment, then completes. Errors in the parameter list
  // are ILLEGAL REQUEST with a field pointer; errors while copying a segment are COPY ABORTED
  // with the segment's number in COMMAND-SPECIFIC INFORMATION (SPC-4 6.4.5).
  Task<Response> extended_copy(const Nexus& nexus, std::span<const uint8_t> cdb,
                               std::span<const std::byte> data_out);
  // RECEIVE COPY RESULTS: COPY STATUS (0x00) and OPERATING PARAMETERS (0x03).
  Task<Response> receive_copy_results(const Nexus& nexus, std::span<const uint8_t> cdb,
                                      std::vector<std::byte>& data_in);

  // The Third-party Copy VPD page (0x8F, SPC-4 7.8.17) describing this copy manager, whole
  // (header included), for the Device's INQUIRY.
  [[nodiscard]] static std::vector<uint8_t> third_party_copy_vpd(uint32_t block_size_bytes);

 private:
  // A running EXTENDED COPY with a list identifier, or a finished one whose LIST ID USAGE
  // asked to hold its status.
  struct CopyResult {
    uint64_t nexus_id = 0;  // results belong to the I_T nexus that ran the copy
    uint8_t list_id = 0;
    bool hold = true;  // LIST ID USAGE 00b: kept for COPY STATUS after the copy ends
    bool done = false;
    bool ok = true;
    uint16_t segments_processed = 0;
    uint64_t transferred_bytes = 0;
  };
  struct Segment;

  // Parses the parameter list; on success `segments` holds the copies to run.
  std::optional<Response> parse(std::span<const uint8_t> list, std::vector<Segment>& segments);
  Task<std::optional<Response>> run(const Segment& segment, uint16_t index);
  CopyResult* find(uint64_t nexus_id, uint8_t list_id);

  blockmap::Volume& volume_;
  std::array<uint8_t, 16> naa_{};  // this LU's NAA designator, for matching CSCD 0xE4
  std::deque<CopyResult> results_;
};

}  // namespace cairn::target::scsi
