#include "target/nbd/tcp_listener.h"

#include <system_error>

namespace cairn::target::nbd {

void listen_tcp(asio::ip::tcp::acceptor& acceptor, const std::string& address, uint16_t port,
                std::string_view what) {
  const std::string name(what);
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address, ec);
  if (ec) {
    throw std::system_error(ec, name + " address '" + address + "' is not an IP address");
  }
  asio::ip::tcp::endpoint endpoint(ip, port);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  acceptor.bind(endpoint, ec);
  if (ec == asio::error::address_in_use) {
    throw std::system_error(
        ec, name + " port " + std::to_string(port) + " on " + address + " is already in use");
  }
  if (ec) {
    throw std::system_error(ec, "cannot bind the " + name + " listener");
  }
  acceptor.listen(asio::socket_base::max_listen_connections);
}

}  // namespace cairn::target::nbd
