// A correction to Boost.Asio 1.81's io_uring backend, included before every C++ source by the
// build (CMakeLists.txt, cairn_options), so that every translation unit compiles Asio's
// header-only io_uring_service the same way.
//
// The bug: io_uring_service::get_sqe() hands out submission queue entries without clearing
// their user data, and Asio prepares some submissions without setting it: IORING_OP_ASYNC_CANCEL
// when a socket with a pending operation is closed or cancelled, and TIMEOUT_REMOVE. liburing's
// io_uring_prep_*() leave user_data alone, so such a submission carries whatever the previous
// submission in the same ring slot carried, and its completion is delivered to that operation's
// queue: an unrelated socket's read or write "completes" with the cancel's result (0 bytes,
// read as end of stream, or -ENOENT), and its real completion later goes to the next operation
// on that socket. In cairnd this ended or hung iSCSI sessions on a reactor whenever another
// session's socket there was closed (a TARGET COLD RESET dropping sessions, a logout).
// Asio fixed it upstream after 1.81 by clearing the user data in get_sqe(); this does the same
// by routing Asio's only io_uring_get_sqe() call through a wrapper that clears it.
//
// tests/io/reactor_test.cc (AsioIoUring) fails without this.
#pragma once

#if defined(__cplusplus) && defined(BOOST_ASIO_HAS_IO_URING)
#include <liburing.h>

#include <boost/version.hpp>

#if BOOST_VERSION < 108200
// NOLINTNEXTLINE(readability-identifier-naming): stands in for liburing's C function.
inline io_uring_sqe* cairn_io_uring_get_sqe_cleared(io_uring* ring) noexcept {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe != nullptr) {
    io_uring_sqe_set_data(sqe, nullptr);
  }
  return sqe;
}
// Asio calls ::io_uring_get_sqe(&ring_); every caller gets an entry with no user data.
// NOLINTNEXTLINE(cppcoreguidelines-macro-usage)
#define io_uring_get_sqe cairn_io_uring_get_sqe_cleared
#endif

#endif
