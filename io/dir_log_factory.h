// DirLogFactory: record logs as files `<dir>/<name>.log` in a directory, each a FileRecordLog
// on a UringBlockFile of a fixed capacity (chosen when the file is created; an existing file
// keeps its size).
//
// Names must match [A-Za-z0-9._-]{1,128} and not start with '.'; anything else is
// errc::invalid_argument, so a name never escapes the directory. Creating and removing files
// are blocking syscalls (volume creation and deletion, not the data path); the directory is
// fsynced afterwards so the change survives a crash.
//
// Threading: open() and remove() run on the calling reactor's thread; the logs returned use
// that reactor's DiskRing (or `ring` if given) and belong to that thread.
#pragma once

#include <string>

#include "io/record_log.h"

namespace cairn::io {

class DiskRing;

class DirLogFactory final : public LogFactory {
 public:
  struct Options {
    uint64_t capacity_bytes = 64ull << 20;  // ring size of each new log
    bool allow_buffered = false;            // see UringBlockFile::Options
  };

  DirLogFactory(std::string dir, Options options, DiskRing* ring = nullptr);

  Task<Result<std::unique_ptr<RecordLog>>> open(std::string_view name) override;
  Task<Result<void>> remove(std::string_view name) override;

  [[nodiscard]] static bool valid_name(std::string_view name) noexcept;
  [[nodiscard]] std::string path_of(std::string_view name) const;

 private:
  std::string dir_;
  Options options_;
  DiskRing* ring_;
};

}  // namespace cairn::io
