// RequestMetrics: the standard metrics of a protocol front end (NBD now, iSCSI next), so that
// a front end instruments itself with one call per request:
//
//   <prefix>_requests_total{command}           requests completed
//   <prefix>_request_errors_total{command}     of those, answered with an error
//   <prefix>_request_duration_seconds{command} latency histogram (log2 buckets, base/metrics.h)
//   <prefix>_bytes_total{direction}            payload bytes read and written
//
// Commands are indexed by the protocol's own opcode; `command_names[i]` names opcode i, and an
// opcode without a name (or past the table) counts as "other".
//
// Threading: record() from any thread (lock-free; see base/metrics.h). Construct once, at
// start-up or as a function-local static; the series live in the registry.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/metrics.h"

namespace cairn::metrics {

class RequestMetrics {
 public:
  RequestMetrics(Registry& registry, std::string_view prefix,
                 std::span<const std::string_view> command_names);

  void record(unsigned opcode, bool ok, uint64_t latency_us, uint64_t read_bytes,
              uint64_t written_bytes) noexcept;

 private:
  struct Command {
    Counter* requests;
    Counter* errors;
    Histogram* latency;
  };
  std::vector<Command> commands_;  // by opcode; the last entry is "other"
  Counter* read_bytes_;
  Counter* written_bytes_;
};

}  // namespace cairn::metrics
