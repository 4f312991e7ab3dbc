// listen_tcp(): opens, binds and listens a front end's TCP acceptor, with errors a user can act
// on. Shared by the NBD and iSCSI servers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/asio.h"

namespace cairn::target::nbd {

// Listens on `address`:`port`. `what` names the front end in the errors ("NBD", "iSCSI"):
// an address that is not an IP address, a port already in use, or any other failure to bind
// throws std::system_error saying which.
void listen_tcp(asio::ip::tcp::acceptor& acceptor, const std::string& address, uint16_t port,
                std::string_view what);

}  // namespace cairn::target::nbd
