// Placeholder replaced by the NBD implementation.
#include "target/nbd/server.h"
namespace cairn::target::nbd {
class Server::Impl {};
Server::Server(io::ReactorPool&, blockmap::VolumeManager&, ServerOptions) {}
Server::~Server() = default;
void Server::start() {
  throw std::system_error(ENOSYS, std::system_category(), "nbd");
}
void Server::stop() {}
}  // namespace cairn::target::nbd
