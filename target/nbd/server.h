// nbd::Server: the NBD front end (NetworkBlockDevice/nbd doc/proto.md).
//
// Listens on TCP (default 0.0.0.0:10809) and optionally a Unix socket, negotiates fixed
// newstyle handshakes, and serves transmission-phase requests against blockmap::Volume.
// A connection is accepted on one reactor; once the client picks an export, the socket is
// moved to the volume's owner reactor so every request runs on the thread that owns the
// volume (docs/architecture.md, "Threads").
//
// Threading: construct, start() and stop() from the main thread (reactor 0's thread).
// Lifetime: destroy the Server only after the reactors have stopped; connections still open
// then are abandoned with their io_contexts. While running, each connection holds its volume
// acquired (VolumeManager::acquire) from NBD_OPT_GO until it closes.
//
// Errors: a port already in use makes start() throw std::system_error saying so. Malformed
// client input never throws: it gets an NBD error, or closes that connection only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "blockmap/volume_manager.h"
#include "io/reactor.h"

namespace cairn::target::nbd {

struct ServerOptions {
  std::string address = "0.0.0.0";
  uint16_t port = 10809;
  std::string unix_path;        // empty: no Unix socket
  unsigned max_inflight = 128;  // requests in flight per connection
};

class Server {
 public:
  Server(io::ReactorPool& reactors, blockmap::VolumeManager& volumes, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listeners and starts accepting. Throws std::system_error when a listener
  // cannot be bound (for example, the port is taken by another cairnd).
  void start();
  // Stops accepting and closes every connection.
  void stop();
  // True when no connection is open or being served (any thread). After stop(), the node
  // waits for this before it stops the reactors, so that no connection is left suspended.
  [[nodiscard]] bool idle() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cairn::target::nbd
