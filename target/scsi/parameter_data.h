// Completing a command that returns parameter data (PERSISTENT RESERVE IN, RECEIVE COPY
// RESULTS, ...): the data is cut to the CDB's ALLOCATION LENGTH (SPC-5 4.2.5.6) and the
// Response reports the length the CDB asked for, from which the transport derives the residual.
//
// Header-only and stateless.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "target/scsi/device.h"

namespace cairn::target::scsi {

// Moves `out`, truncated to `allocation` bytes, into `data_in`; returns GOOD with
// transfer_bytes = `allocation`.
[[nodiscard]] inline Response parameter_data(std::vector<std::byte> out, uint32_t allocation,
                                             std::vector<std::byte>& data_in) {
  if (out.size() > allocation) {
    out.resize(allocation);
  }
  data_in = std::move(out);
  Response r;
  r.transfer_bytes = allocation;
  return r;
}

}  // namespace cairn::target::scsi
