// run_node: builds a node from its Config and runs it until SIGINT or SIGTERM. Kept apart
// from main() so tests can start a node in-process.
#pragma once

#include <cstdint>
#include <string>

#include "base/config.h"

namespace cairn {

struct NodeOptions {
  std::string demo_volume;  // created on start if missing (quick start)
  uint64_t demo_size_bytes = 0;
};

// Returns the process exit code: 0 after a clean stop, 1 if start-up failed.
int run_node(const Config& config, const NodeOptions& options);

}  // namespace cairn
