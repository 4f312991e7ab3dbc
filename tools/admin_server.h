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
// Registry must outlive the server. Connections left when the reactor stops are abandoned
// with it; their coroutine frames never touch the server when destroyed.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
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
  Task<void> accept_loop();
  Task<void> serve(asio::ip::tcp::socket socket);

  io::Reactor& reactor_;
  AdminApi api_;
  AdminOptions options_;
  asio::ip::tcp::acceptor acceptor_;
  uint16_t bound_port_ = 0;
  unsigned connections_ = 0;  // touched on the reactor's thread only
  bool stopped_ = false;
  metrics::Gauge& open_connections_;
  metrics::Counter& rejected_connections_;
  metrics::Counter& bad_requests_;
};

}  // namespace cairn
