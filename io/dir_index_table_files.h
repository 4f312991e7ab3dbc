// DirIndexTableFiles: the index table's generation files in a directory: generation 0 is
// `<dir>/chunks-index.tbl` (the name every store had before the table could grow), generation
// g > 0 is `<dir>/chunks-index.<g>.tbl`. Files are O_DIRECT UringBlockFiles. Creating and
// removing a file are blocking syscalls (rare: store open and table growth); the directory is
// fsynced after either, so the change survives a crash.
//
// Threading: the owner reactor's thread; files use `ring` (null: that reactor's DiskRing).
// Owns the files it opened until remove() or its destruction.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "io/index_table_files.h"

namespace cairn::io {

class DiskRing;

class DirIndexTableFiles final : public IndexTableFiles {
 public:
  DirIndexTableFiles(std::string dir, bool allow_buffered, DiskRing* ring);

  Result<BlockFile*> open(uint64_t generation) override;
  Result<void> remove(uint64_t generation) override;

  [[nodiscard]] std::string path_of(uint64_t generation) const;

 private:
  std::string dir_;
  bool allow_buffered_;
  DiskRing* ring_;
  std::map<uint64_t, std::unique_ptr<BlockFile>> files_;
};

}  // namespace cairn::io
