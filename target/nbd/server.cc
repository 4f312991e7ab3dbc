// The NBD listener: accepts on reactor 0, negotiates there, then moves each connection's socket
// to its volume's owner reactor for the transmission phase (server.h).
#include "target/nbd/server.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>

#include "base/assert.h"
#include "base/log.h"
#include "target/nbd/connection_registry.h"
#include "target/nbd/handshake.h"
#include "target/nbd/socket_stream.h"
#include "target/nbd/tcp_listener.h"
#include "target/nbd/transmission.h"

namespace cairn::target::nbd {
namespace {

// The transmission phase's receive buffer (SocketStream read-ahead): about fifteen pipelined
// 4 KiB writes, or several hundred request headers, per receive.
constexpr std::size_t kReadAheadBytes = 64 * 1024;

std::string describe(const asio::generic::stream_protocol::endpoint& ep) {
  if (ep.protocol().family() == AF_INET || ep.protocol().family() == AF_INET6) {
    asio::ip::tcp::endpoint tcp;
    if (ep.size() <= tcp.capacity()) {
      std::memcpy(tcp.data(), ep.data(), ep.size());
      tcp.resize(ep.size());
      std::ostringstream out;
      out << tcp;
      return out.str();
    }
  }
  return "unix-socket client";
}

}  // namespace

class Server::Impl {
 public:
  Impl(io::ReactorPool& reactors, blockmap::VolumeManager& volumes, ServerOptions options)
      : reactors_(reactors),
        volumes_(volumes),
        options_(std::move(options)),
        registry_(std::make_shared<ConnectionRegistry>("nbd")),
        tcp_(std::make_shared<asio::ip::tcp::acceptor>(reactors.at(0).context())),
        unix_(std::make_shared<asio::local::stream_protocol::acceptor>(reactors.at(0).context())) {}

  void start();
  void stop();
  [[nodiscard]] bool idle() const { return registry_->idle(); }

 private:
  void listen_tcp();
  void listen_unix();
  template <class Acceptor>
  Task<void> accept_loop(std::shared_ptr<Acceptor> acceptor, bool tcp);
  Task<void> connection(GenericSocket socket, std::string peer, ConnectionRegistry::Active active);
  static Task<void> transmit(std::shared_ptr<ConnectionRegistry> registry,
                             blockmap::VolumeManager& volumes, Negotiated negotiated, int fd,
                             int family, std::string peer, unsigned max_inflight,
                             ConnectionRegistry::Active active);

  io::ReactorPool& reactors_;
  blockmap::VolumeManager& volumes_;
  ServerOptions options_;
  std::shared_ptr<ConnectionRegistry> registry_;
  bool started_ = false;
  // Shared with the accept loops, which close them when they end. Asio cannot destroy an
  // acceptor whose cancelled accept never completed (the reactors may already be stopped), so
  // stop() only cancels, and the loop (or the io_context's shutdown) releases the acceptor.
  std::shared_ptr<asio::ip::tcp::acceptor> tcp_;
  std::shared_ptr<asio::local::stream_protocol::acceptor> unix_;
};

void Server::Impl::listen_tcp() {
  nbd::listen_tcp(*tcp_, options_.address, options_.port, "NBD");
}

void Server::Impl::listen_unix() {
  const std::string& path = options_.unix_path;
  // A socket file that nobody answers on is stale (a crashed cairnd); one that answers is busy.
  if (std::filesystem::exists(path)) {
    asio::local::stream_protocol::socket probe(reactors_.at(0).context());
    boost::system::error_code ec;
    probe.connect(asio::local::stream_protocol::endpoint(path), ec);
    if (!ec) {
      throw std::system_error(std::make_error_code(std::errc::address_in_use),
                              "NBD socket " + path + " is already in use");
    }
    ::unlink(path.c_str());
  }
  asio::local::stream_protocol::endpoint endpoint(path);
  unix_->open(endpoint.protocol());
  unix_->bind(endpoint);
  unix_->listen(asio::socket_base::max_listen_connections);
}

void Server::Impl::start() {
  listen_tcp();
  if (!options_.unix_path.empty()) {
    listen_unix();
  }
  asio::co_spawn(tcp_->get_executor(), accept_loop(tcp_, true), asio::detached);
  if (unix_->is_open()) {
    asio::co_spawn(unix_->get_executor(), accept_loop(unix_, false), asio::detached);
  }
  started_ = true;
}

void Server::Impl::stop() {
  // First, so that the accept loops and the connections registering from now on see it.
  registry_->stop();
  boost::system::error_code ignored;
  if (!started_) {
    tcp_->close(ignored);  // nothing is pending on it
  }
  tcp_->cancel(ignored);
  if (unix_->is_open()) {
    unix_->cancel(ignored);
    ::unlink(options_.unix_path.c_str());
  }
}

template <class Acceptor>
Task<void> Server::Impl::accept_loop(std::shared_ptr<Acceptor> owned, bool tcp) {
  Acceptor& acceptor = *owned;
  std::shared_ptr<ConnectionRegistry> registry = registry_;
  asio::steady_timer backoff(acceptor.get_executor());
  for (;;) {
    GenericSocket socket(acceptor.get_executor());
    auto [ec] = co_await acceptor.async_accept(socket, use_tuple);
    if (registry->stopping() || ec == asio::error::operation_aborted) {
      boost::system::error_code ignored;
      acceptor.close(ignored);
      co_return;
    }
    if (ec) {
      // Out of file descriptors and the like: wait a little instead of spinning.
      CAIRN_LOG(warn, "nbd", "accept failed: {}", ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(use_tuple);
      continue;
    }
    boost::system::error_code ignored;
    if (tcp) {
      socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    }
    std::string peer = describe(socket.remote_endpoint(ignored));
    asio::co_spawn(acceptor.get_executor(),
                   connection(std::move(socket), std::move(peer), registry->active()),
                   asio::detached);
  }
}

Task<void> Server::Impl::connection(GenericSocket socket, std::string peer,
                                    ConnectionRegistry::Active active) {
  boost::system::error_code ec;
  const int family = socket.local_endpoint(ec).protocol().family();
  if (ec) {
    co_return;  // the client is already gone
  }
  auto stream = std::make_unique<SocketStream>(std::move(socket), peer);
  auto executor = co_await asio::this_coro::executor;
  uint64_t id = registry_->add(executor, stream.get());
  if (id == 0) {
    stream->close();  // the server is stopping
    co_return;
  }
  auto negotiated = co_await negotiate(*stream, volumes_);
  registry_->remove(id);
  if (!negotiated) {
    stream->close();
    co_return;
  }
  CAIRN_LOG(debug, "nbd", "{}: serving '{}'", peer, negotiated->volume->name());
  // Hand the socket to the volume's owner reactor (docs/architecture.md, "Threads").
  int fd = stream->socket().release(ec);
  if (ec) {
    CAIRN_LOG(warn, "nbd", "{}: cannot move connection: {}", peer, ec.message());
    volumes_.release(negotiated->volume);
    co_return;
  }
  auto owner = negotiated->volume->executor();
  asio::co_spawn(owner,
                 transmit(registry_, volumes_, *negotiated, fd, family, std::move(peer),
                          options_.max_inflight, std::move(active)),
                 asio::detached);
}

Task<void> Server::Impl::transmit(std::shared_ptr<ConnectionRegistry> registry,
                                  blockmap::VolumeManager& volumes, Negotiated negotiated, int fd,
                                  int family, std::string peer, unsigned max_inflight,
                                  ConnectionRegistry::Active active) {
  blockmap::Volume& volume = *negotiated.volume;
  auto executor = co_await asio::this_coro::executor;
  GenericSocket socket(executor);
  boost::system::error_code ec;
  socket.assign(asio::generic::stream_protocol(family, SOCK_STREAM), fd, ec);
  if (ec) {
    ::close(fd);
    volumes.release(&volume);
    co_return;
  }
  SocketStream stream(std::move(socket), std::move(peer), kReadAheadBytes);
  uint64_t id = registry->add(executor, &stream);
  if (id == 0) {
    stream.close();  // the server is stopping
    volumes.release(&volume);
    co_return;
  }
  // The size may have changed since the handshake read it; this thread owns the volume.
  negotiated.session.size_bytes = volume.size_bytes();
  {
    Transmission transmission(stream, volume, negotiated.session, max_inflight);
    co_await transmission.run();
  }
  registry->remove(id);
  volumes.release(&volume);
}

Server::Server(io::ReactorPool& reactors, blockmap::VolumeManager& volumes, ServerOptions options)
    : impl_(std::make_unique<Impl>(reactors, volumes, std::move(options))) {}

Server::~Server() = default;

void Server::start() {
  impl_->start();
}

void Server::stop() {
  impl_->stop();
}

bool Server::idle() const {
  return impl_->idle();
}

}  // namespace cairn::target::nbd
