#include "target/nbd/socket_stream.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace cairn::target::nbd {

SocketStream::SocketStream(GenericSocket socket, std::string peer, std::size_t read_ahead_bytes)
    : socket_(std::move(socket)), peer_(std::move(peer)), ahead_size_(read_ahead_bytes) {
  if (ahead_size_ > 0) {
    ahead_ = std::make_unique_for_overwrite<std::byte[]>(ahead_size_);
  }
}

Task<std::error_code> SocketStream::read(std::span<std::byte> buffer) {
  std::size_t done = 0;
  while (done < buffer.size()) {
    if (begin_ < end_) {
      std::size_t n = std::min(end_ - begin_, buffer.size() - done);
      std::memcpy(buffer.data() + done, ahead_.get() + begin_, n);
      begin_ += n;
      done += n;
      continue;
    }
    std::size_t want = buffer.size() - done;
    if (want >= ahead_size_) {  // no read-ahead, or a large payload: no copy
      co_return co_await read_all(buffer.subspan(done));
    }
    begin_ = 0;
    end_ = 0;
    auto [ec, n] =
        co_await socket_.async_read_some(asio::buffer(ahead_.get(), ahead_size_), use_tuple);
    if (ec) {
      co_return ec;
    }
    end_ = n;
  }
  co_return std::error_code{};
}

// MSG_WAITALL: io_uring completes the receive only once the whole payload is in (it re-polls
// the socket itself after a partial read), so a 1 MiB payload costs one submission and one
// completion instead of one per burst of segments, each a trip through the reactor. A
// partial read can still end it (a signal, the peer closing); the loop carries on from there.
Task<std::error_code> SocketStream::read_all(std::span<std::byte> buffer) {
  std::size_t done = 0;
  while (done < buffer.size()) {
    auto [ec, n] = co_await socket_.async_receive(
        asio::buffer(buffer.data() + done, buffer.size() - done), MSG_WAITALL, use_tuple);
    if (ec) {
      co_return ec;
    }
    if (n == 0) {
      co_return boost::system::error_code(asio::error::eof);
    }
    done += n;
  }
  co_return std::error_code{};
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
