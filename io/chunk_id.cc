#include "io/chunk_id.h"

#include <cstdio>

namespace cairn::io {

std::string ChunkId::to_hex() const {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(hi),
                static_cast<unsigned long long>(lo));
  return buf;
}

}  // namespace cairn::io
