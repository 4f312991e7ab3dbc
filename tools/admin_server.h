// AdminServer: the HTTP/1.1 transport of cairnd's admin API (Boost.Beast), on
// Config::admin_address:admin_port (default 127.0.0.1:10819). Routes and JSON are AdminApi's.
//
// Hostile or broken clients cannot hurt the node: every read has a deadline, the parser caps
// the header and body sizes, a connection serves a bounded number of requests, and the number
// of open connections is capped (extra ones are closed at once). Input that is not HTTP gets
// a 400 (431 for oversized headers, 413 for oversized bodies) and the connection is closed.
//
// Threading: runs on one reactor (the one passed in). Construct, start() and stop() on that
// reactor's thread, or before it runs / after it stopped. The VolumeManager, ChunkStore and
// Registry must outlive the server. stop() cancels the accept and every connection's I/O;
// let the reactor run a little after it (cairnd flushes volumes then) so they complete.
// Frames of connections still left when the reactor stops never touch the server when they
// are destroyed.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "base/asio.h"
#include "io/reactor.h"
#include "tools/admin_api.h"

namespace cairn {

struct AdminOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 10819;
  unsigned max_connections = 32;
  unsigned max_requests_per_connection = 1000;
  uint32_t header_limit_bytes = 16 * 1024;
  uint32_t body_limit_bytes = 64 * 1024;
  std::chrono::milliseconds io_timeout{10'000};  // per request read and per response write
};

class AdminServer {
 public:
  AdminServer(io::Reactor& reactor, blockmap::VolumeManager& volumes, io::ChunkStore& store,
              metrics::Registry& registry, AdminOptions options);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds and starts accepting. Throws std::system_error when the address cannot be bound.
  void start();
  // Stops accepting. Connections in flight finish their current request.
  void stop();

  // The bound port (useful with port 0).
  [[nodiscard]] uint16_t port() const noexcept { return bound_port_; }

 private:
  Task<void> accept_loop(std::shared_ptr<asio::ip::tcp::acceptor> acceptor);
  Task<void> serve(asio::ip::tcp::socket socket);

  io::Reactor& reactor_;
  AdminApi api_;
  AdminOptions options_;
  // Shared with the accept loop, which closes it when it ends: Asio must not destroy an
  // acceptor whose cancelled accept has not completed yet.
  std::shared_ptr<asio::ip::tcp::acceptor> acceptor_;
  uint16_t bound_port_ = 0;
  // Touched on the reactor's thread only. `live_` lets stop() cancel every connection's
  // pending I/O, so that none is left pending when the reactor stops.
  unsigned connections_ = 0;
  std::set<asio::ip::tcp::socket*> live_;
  bool stopped_ = false;
  metrics::Gauge& open_connections_;
  metrics::Counter& rejected_connections_;
  metrics::Counter& bad_requests_;
};

}  // namespace cairn
