// copy(): moves every byte of a source endpoint into a destination endpoint, for
// `cairn import` and `cairn export`. Ranges the source reports as holes, and 4 KiB blocks
// that read as all zeroes, become zero() calls on the destination (a hole in a file,
// WRITE_ZEROES on a volume) instead of writes. The destination is flushed at the end.
#pragma once

#include <cstdint>

#include "tools/cli/endpoint.h"
#include "tools/cli/progress.h"

namespace cairn::cli {

struct CopyStats {
  uint64_t total_bytes = 0;  // the source's size
  uint64_t data_bytes = 0;   // written as data
  uint64_t zero_bytes = 0;   // skipped: holes and all-zero blocks
  double seconds = 0;
};

// Throws CliError when the destination is too small or either side fails.
CopyStats copy(Endpoint& source, Endpoint& destination, Progress& progress);

}  // namespace cairn::cli
