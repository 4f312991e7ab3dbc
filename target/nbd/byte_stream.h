// ByteStream: the byte pipe an NBD connection runs over. The server uses a socket
// (SocketStream); the fuzz target feeds the same connection code from memory.
//
// Threading: a stream is used only on the executor its connection runs on. At most one read
// and one write may be outstanding at a time (the connection has one reader and one writer).
// Buffers are borrowed until the returned task completes.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <system_error>

#include "base/asio.h"

namespace cairn::target::nbd {

class ByteStream {
 public:
  virtual ~ByteStream() = default;

  // Reads exactly buffer.size() bytes; end of stream before that is an error.
  virtual Task<std::error_code> read(std::span<std::byte> buffer) = 0;
  // Writes every byte of every buffer, in order.
  virtual Task<std::error_code> write(std::span<const asio::const_buffer> buffers) = 0;
  // Closes the stream; pending and later operations fail. Idempotent.
  virtual void close() noexcept = 0;
  // The peer, for log lines.
  [[nodiscard]] virtual const std::string& peer() const noexcept = 0;
};

}  // namespace cairn::target::nbd
