#include "io/sync_directory.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "base/log.h"

namespace cairn::io {

Result<void> sync_directory(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    std::error_code ec(errno, std::system_category());
    CAIRN_LOG(error, "io", "cannot open directory {} to sync it: {}", path, ec.message());
    return ec;
  }
  int rc = ::fsync(fd);
  int fsync_errno = errno;
  ::close(fd);
  if (rc != 0) {
    std::error_code ec(fsync_errno, std::system_category());
    CAIRN_LOG(error, "io", "cannot fsync directory {}: {}", path, ec.message());
    return ec;
  }
  return {};
}

}  // namespace cairn::io
