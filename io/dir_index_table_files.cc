#include "io/dir_index_table_files.h"

#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "base/log.h"
#include "io/paged_index.h"
#include "io/sync_directory.h"
#include "io/uring_block_file.h"

namespace cairn::io {

DirIndexTableFiles::DirIndexTableFiles(std::string dir, bool allow_buffered, DiskRing* ring)
    : dir_(std::move(dir)), allow_buffered_(allow_buffered), ring_(ring) {}

std::string DirIndexTableFiles::path_of(uint64_t generation) const {
  if (generation == 0) {
    return dir_ + "/chunks-index.tbl";
  }
  return dir_ + "/chunks-index." + std::to_string(generation) + ".tbl";
}

Result<BlockFile*> DirIndexTableFiles::open(uint64_t generation) {
  if (auto it = files_.find(generation); it != files_.end()) {
    return it->second.get();
  }
  std::string path = path_of(generation);
  bool existed = ::access(path.c_str(), F_OK) == 0;
  UringBlockFile::Options options;
  options.initial_size_bytes = PagedIndex::kTableStartBytes;
  options.allow_buffered = allow_buffered_;
  auto file = UringBlockFile::open(path, options, ring_);
  if (!file) {
    return file.error();
  }
  // The switch record that will name this file must never outlive its directory entry.
  if (!existed) {
    if (auto r = sync_directory(dir_); !r) {
      return r.error();
    }
  }
  BlockFile* raw = file->get();
  files_[generation] = std::move(*file);
  return raw;
}

Result<void> DirIndexTableFiles::remove(uint64_t generation) {
  files_.erase(generation);
  std::string path = path_of(generation);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) {
      return {};
    }
    std::error_code ec(errno, std::system_category());
    CAIRN_LOG(error, "io", "cannot delete index table {}: {}", path, ec.message());
    return ec;
  }
  CAIRN_LOG(info, "io", "deleted index table {}", path);
  return sync_directory(dir_);
}

}  // namespace cairn::io
