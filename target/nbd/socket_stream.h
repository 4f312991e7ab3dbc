// SocketStream: a ByteStream over a connected TCP or Unix stream socket (Asio's generic
// stream protocol, so one type covers both).
//
// Ownership: owns the socket. release() hands the file descriptor out (closing nothing) so a
// connection can move to the reactor that owns its volume.
// Threading: only on the socket's executor.
#pragma once

#include <string>

#include "target/nbd/byte_stream.h"

namespace cairn::target::nbd {

using GenericSocket = asio::generic::stream_protocol::socket;

class SocketStream final : public ByteStream {
 public:
  SocketStream(GenericSocket socket, std::string peer);

  Task<std::error_code> read(std::span<std::byte> buffer) override;
  Task<std::error_code> write(std::span<const asio::const_buffer> buffers) override;
  void close() noexcept override;
  [[nodiscard]] const std::string& peer() const noexcept override { return peer_; }

  [[nodiscard]] GenericSocket& socket() noexcept { return socket_; }

 private:
  GenericSocket socket_;
  std::string peer_;
};

}  // namespace cairn::target::nbd
