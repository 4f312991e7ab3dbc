// sync_directory(): fsync a directory so that a file created in it or removed from it (the
// directory entry itself) survives a crash. A blocking syscall: for rare metadata changes (store
// open, index table growth, volume creation and deletion), never the data path.
//
// Threading: any thread; holds nothing after it returns.
#pragma once

#include <string>

#include "base/result.h"

namespace cairn::io {

// Opens `path` as a directory, fsyncs it and closes it. Errors are the errno of open() or
// fsync() as a system error_code, logged with the path.
[[nodiscard]] Result<void> sync_directory(const std::string& path);

}  // namespace cairn::io
