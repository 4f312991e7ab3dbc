#include "target/nbd/socket_stream.h"

namespace cairn::target::nbd {

SocketStream::SocketStream(GenericSocket socket, std::string peer)
    : socket_(std::move(socket)), peer_(std::move(peer)) {}

Task<std::error_code> SocketStream::read(std::span<std::byte> buffer) {
  auto [ec, n] =
      co_await asio::async_read(socket_, asio::buffer(buffer.data(), buffer.size()), use_tuple);
  co_return ec;
}

Task<std::error_code> SocketStream::write(std::span<const asio::const_buffer> buffers) {
  auto [ec, n] = co_await asio::async_write(socket_, buffers, use_tuple);
  co_return ec;
}

void SocketStream::close() noexcept {
  boost::system::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
  socket_.close(ignored);
}

}  // namespace cairn::target::nbd
