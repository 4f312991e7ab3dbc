// SocketStream: a ByteStream over a connected TCP or Unix stream socket (Asio's generic
// stream protocol, so one type covers both).
//
// Read-ahead: with a read-ahead size (the transmission phase), read() fills a connection
// buffer with whatever the socket has and serves requests from it, so a client that pipelines
// many requests costs one receive for all of them instead of one per header and one per
// payload. Reads at least as large as the buffer go straight into the caller's memory. The
// handshake runs without read-ahead: release() must not leave received bytes behind.
//
// Ownership: owns the socket and the read-ahead buffer. release() hands the file descriptor
// out (closing nothing) so a connection can move to the reactor that owns its volume.
// Threading: only on the socket's executor.
#pragma once

#include <memory>
#include <string>

#include "target/nbd/byte_stream.h"

namespace cairn::target::nbd {

using GenericSocket = asio::generic::stream_protocol::socket;

class SocketStream final : public ByteStream {
 public:
  SocketStream(GenericSocket socket, std::string peer, std::size_t read_ahead_bytes = 0);

  Task<std::error_code> read(std::span<std::byte> buffer) override;
  Task<std::error_code> write(std::span<const asio::const_buffer> buffers) override;
  void close() noexcept override;
  [[nodiscard]] const std::string& peer() const noexcept override { return peer_; }

  [[nodiscard]] GenericSocket& socket() noexcept { return socket_; }

 private:
  // Reads exactly buffer.size() bytes straight into `buffer`.
  Task<std::error_code> read_all(std::span<std::byte> buffer);

  GenericSocket socket_;
  std::string peer_;
  std::unique_ptr<std::byte[]> ahead_;  // null: no read-ahead
  std::size_t ahead_size_ = 0;
  std::size_t begin_ = 0;  // unread bytes are ahead_[begin_, end_)
  std::size_t end_ = 0;
};

}  // namespace cairn::target::nbd
