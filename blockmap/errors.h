// Operating errors of the blockmap/ layer, mapped to std::error_code. Front ends translate
// them to protocol errors (NBD errno values, SCSI sense data).
#pragma once

#include <system_error>
#include <type_traits>

namespace cairn::blockmap {

enum class errc {
  ok = 0,
  out_of_range = 1,  // the request reaches past the end of the volume
  read_only,         // a write to a read-only volume
  invalid_argument,  // bad size, alignment or configuration
  no_space,          // the store is full
  io_error,          // the store failed (after any repair it could do)
  not_found,         // no such volume
  already_exists,    // a volume with that name exists
  busy,              // the volume is in use and cannot be deleted or shrunk now
};

[[nodiscard]] const std::error_category& error_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace cairn::blockmap

template <>
struct std::is_error_code_enum<cairn::blockmap::errc> : std::true_type {};
