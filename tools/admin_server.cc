#include "tools/admin_server.h"

#include <array>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "base/log.h"

namespace cairn {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// The status for a request the parser rejected, or 0 when the peer just went away (closed,
// reset or timed out), which needs no answer.
unsigned status_for_read_error(const boost::system::error_code& ec) {
  if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::eof ||
      ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
      ec == http::error::partial_message) {
    return 0;
  }
  if (ec == http::error::header_limit) {
    return 431;
  }
  if (ec == http::error::body_limit || ec == http::error::buffer_overflow) {
    return 413;
  }
  return 400;
}

http::response<http::string_body> make_response(const AdminResponse& answer, unsigned version,
                                                bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(answer.status), version};
  res.set(http::field::server, "cairnd");
  res.set(http::field::content_type, answer.content_type);
  res.keep_alive(keep_alive);
  res.body() = answer.body;
  res.prepare_payload();
  return res;
}

// A lingering close after an error answer: stop sending, then read and discard what the
// client still sends (bounded in bytes and time), so that closing with unread input does not
// reset the connection and destroy the answer before the client reads it.
Task<void> drain(beast::tcp_stream& stream) {
  constexpr std::size_t kDrainLimitBytes = 1u << 20;
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.expires_after(std::chrono::seconds(1));
  std::array<char, 16384> sink;
  for (std::size_t total = 0; total < kDrainLimitBytes;) {
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), use_tuple);
    if (ec) {
      break;
    }
    total += n;
  }
}

}  // namespace

AdminServer::AdminServer(io::Reactor& reactor, blockmap::VolumeManager& volumes,
                         io::ChunkStore& store, metrics::Registry& registry, AdminOptions options)
    : reactor_(reactor),
      api_(volumes, store, registry),
      options_(std::move(options)),
      acceptor_(std::make_shared<tcp::acceptor>(reactor.context())),
      open_connections_(registry.gauge("cairn_admin_connections", "Open admin API connections.")),
      rejected_connections_(registry.counter("cairn_admin_rejected_connections_total",
                                             "Admin connections closed at once: too many open.")),
      bad_requests_(registry.counter("cairn_admin_bad_requests_total",
                                     "Admin requests that were not valid HTTP or too large.")) {}

AdminServer::~AdminServer() = default;

void AdminServer::start() {
  tcp::endpoint endpoint(asio::ip::make_address(options_.address), options_.port);
  acceptor_->open(endpoint.protocol());
  acceptor_->set_option(asio::socket_base::reuse_address(true));
  acceptor_->bind(endpoint);
  acceptor_->listen(asio::socket_base::max_listen_connections);
  bound_port_ = acceptor_->local_endpoint().port();
  asio::co_spawn(reactor_.executor(), accept_loop(acceptor_), [](std::exception_ptr e) {
    if (e) {
      CAIRN_LOG(error, "admin", "accept loop ended by an exception");
    }
  });
  CAIRN_LOG(info, "admin", "admin API on http://{}:{}/", options_.address, bound_port_);
}

void AdminServer::stop() {
  stopped_ = true;
  boost::system::error_code ignored;
  if (acceptor_->is_open()) {
    acceptor_->cancel(ignored);  // the accept loop closes it
  }
  for (tcp::socket* socket : live_) {
    socket->cancel(ignored);
  }
}

Task<void> AdminServer::accept_loop(std::shared_ptr<tcp::acceptor> owned) {
  tcp::acceptor& acceptor = *owned;
  asio::steady_timer backoff(reactor_.context());
  for (;;) {
    // Accept into a socket of this frame (not Asio's move-accept, whose pending operation
    // cannot be destroyed safely once the reactor is gone).
    tcp::socket socket(reactor_.context());
    auto [ec] = co_await acceptor.async_accept(socket, use_tuple);
    if (stopped_ || ec == asio::error::operation_aborted) {
      boost::system::error_code ignored;
      acceptor.close(ignored);
      co_return;
    }
    if (ec) {
      // Out of descriptors or similar: wait instead of spinning.
      CAIRN_LOG(warn, "admin", "accept failed: {}", ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(use_tuple);
      continue;
    }
    if (connections_ >= options_.max_connections) {
      rejected_connections_.add();
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    ++connections_;
    open_connections_.add(1);
    asio::co_spawn(reactor_.executor(), serve(std::move(socket)), asio::detached);
  }
}

// One connection: read a request, answer it, repeat while the client keeps it alive. Never
// throws. Ends by giving its connection slot back (explicitly, so that a frame destroyed with
// a stopped reactor touches nothing of the server).
Task<void> AdminServer::serve(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  live_.insert(&stream.socket());
  try {
    beast::flat_buffer buffer;
    for (unsigned n = 0; n < options_.max_requests_per_connection && !stopped_; ++n) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(options_.header_limit_bytes);
      parser.body_limit(options_.body_limit_bytes);
      stream.expires_after(options_.io_timeout);
      auto [rec, nread] = co_await http::async_read(stream, buffer, parser, use_tuple);
      if (rec) {
        unsigned status = status_for_read_error(rec);
        if (status != 0) {
          bad_requests_.add();
          auto res = make_response(AdminApi::error(status, "bad HTTP request: " + rec.message()),
                                   11, false);
          stream.expires_after(options_.io_timeout);
          co_await http::async_write(stream, res, use_tuple);
          co_await drain(stream);
        }
        break;
      }
      http::request<http::string_body> req = parser.release();
      AdminResponse answer =
          co_await api_.handle(std::string_view(req.method_string()),
                               std::string_view(req.target()), std::string_view(req.body()));
      auto res = make_response(answer, req.version(), req.keep_alive());
      stream.expires_after(options_.io_timeout);
      auto [wec, nwritten] = co_await http::async_write(stream, res, use_tuple);
      if (wec || !res.keep_alive()) {
        break;
      }
    }
  } catch (const std::exception& e) {
    CAIRN_LOG(warn, "admin", "connection dropped: {}", e.what());
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream.socket().close(ignored);
  live_.erase(&stream.socket());
  --connections_;
  open_connections_.add(-1);
}

}  // namespace cairn
