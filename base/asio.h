// The project's single include for Boost.Asio. The build defines BOOST_ASIO_HAS_IO_URING and
// BOOST_ASIO_DISABLE_EPOLL, so sockets and timers run on io_uring (BRIEF, "Two rings").
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

namespace cairn {
namespace asio = boost::asio;

// Completion token that returns errors as values: `auto [ec, n] = co_await op(..., use_tuple);`
// NOLINTNEXTLINE(readability-identifier-naming): named like asio::use_awaitable.
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

template <class T>
using Task = asio::awaitable<T>;
}  // namespace cairn

#if !defined(BOOST_ASIO_HAS_IO_URING) || !defined(BOOST_ASIO_DISABLE_EPOLL)
#error "cairn builds Asio with its io_uring backend; see CMakeLists.txt"
#endif
