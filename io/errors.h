// Operating errors of the io/ layer, mapped to std::error_code.
#pragma once

#include <system_error>
#include <type_traits>

namespace cairn::io {

enum class errc {
  ok = 0,
  io_error = 1,       // the device returned an error or a short transfer
  checksum_mismatch,  // a chunk or record failed its checksum on read
  not_found,          // no such chunk or key
  no_space,           // the store is full
  conflict,           // compare-and-swap lost: the revision changed
  corrupt,            // on-disk structure is inconsistent beyond repair
  invalid_argument,   // a caller passed a bad size or range
  shutting_down,      // the store is closing
};

[[nodiscard]] const std::error_category& error_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace cairn::io

template <>
struct std::is_error_code_enum<cairn::io::errc> : std::true_type {};
