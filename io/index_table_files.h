// IndexTableFiles: where the chunk store's index table files live, one per generation
// (docs/on-disk-format.md, "Index table"). Growing the table builds generation g + 1 in a new
// file and then switches to it; generation 0 is the table the store was created with.
#pragma once

#include <cstdint>

#include "base/result.h"
#include "io/block_file.h"

namespace cairn::io {

// The provider owns the files: a BlockFile from open() stays valid until remove() of its generation
// or the provider's end. Owner thread only.
class IndexTableFiles {
 public:
  virtual ~IndexTableFiles() = default;
  // The file of `generation`, created empty (and its name made durable) if missing.
  virtual Result<BlockFile*> open(uint64_t generation) = 0;
  // Deletes the file of `generation` durably; a missing file is success.
  virtual Result<void> remove(uint64_t generation) = 0;
};

}  // namespace cairn::io
