// The result type for operating errors: boost::system::result<T>, with a per-module error enum
// mapped to std::error_code (Redpanda's errc pattern). Programmer errors use CAIRN_ASSERT.
#pragma once

#include <boost/system/result.hpp>
#include <system_error>

namespace cairn {

template <class T>
using Result = boost::system::result<T, std::error_code>;

// Shorthand for returning an error from a function that returns Result<T>.
template <class E>
[[nodiscard]] std::error_code make_error(E e) noexcept {
  return make_error_code(e);
}

}  // namespace cairn
