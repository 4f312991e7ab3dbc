#include "io/dir_log_factory.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "io/errors.h"
#include "io/file_record_log.h"
#include "io/sync_directory.h"
#include "io/uring_block_file.h"

namespace cairn::io {

DirLogFactory::DirLogFactory(std::string dir, Options options, DiskRing* ring)
    : dir_(std::move(dir)), options_(options), ring_(ring) {}

bool DirLogFactory::valid_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 128 || name.front() == '.') {
    return false;
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

std::string DirLogFactory::path_of(std::string_view name) const {
  return dir_ + "/" + std::string(name) + ".log";
}

Task<Result<std::unique_ptr<RecordLog>>> DirLogFactory::open(std::string_view name) {
  if (!valid_name(name)) {
    co_return make_error(errc::invalid_argument);
  }
  std::string path = path_of(name);
  struct stat st {};
  bool existed = ::stat(path.c_str(), &st) == 0;
  UringBlockFile::Options file_options;
  file_options.create = true;
  // Also for an existing file: one left empty by a crash right after its creation gets its
  // size (and is formatted by FileRecordLog); a formatted log keeps its ring size.
  file_options.initial_size_bytes = FileRecordLog::file_bytes_for(options_.capacity_bytes);
  file_options.allow_buffered = options_.allow_buffered;
  auto file = UringBlockFile::open(path, file_options, ring_);
  if (!file) {
    co_return file.error();
  }
  if (!existed) {
    if (auto r = sync_directory(dir_); !r) {
      co_return r.error();
    }
  }
  BlockFile& ref = **file;
  auto log = co_await FileRecordLog::open(ref, std::move(*file), FileRecordLog::Options{});
  if (!log) {
    co_return log.error();
  }
  co_return std::unique_ptr<RecordLog>(std::move(*log));
}

Task<Result<void>> DirLogFactory::remove(std::string_view name) {
  if (!valid_name(name)) {
    co_return make_error(errc::invalid_argument);
  }
  if (::unlink(path_of(name).c_str()) != 0) {
    if (errno == ENOENT) {
      co_return make_error(errc::not_found);
    }
    co_return std::error_code(errno, std::system_category());
  }
  co_return sync_directory(dir_);
}

}  // namespace cairn::io
