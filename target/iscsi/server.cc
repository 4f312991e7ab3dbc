// The iSCSI listener: accepts and logs in on reactor 0, then moves each normal session's socket
// to its volume's owner reactor (server.h).
#include "target/iscsi/server.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <optional>

#include "base/log.h"
#include "target/nbd/connection_registry.h"
#include "target/nbd/socket_stream.h"
#include "target/nbd/tcp_listener.h"

namespace cairn::target::iscsi {
namespace {

using nbd::ConnectionRegistry;
using nbd::GenericSocket;
using nbd::SocketStream;

std::string endpoint_text(const asio::ip::tcp::endpoint& ep) {
  if (ep.address().is_v6()) {
    return "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
  }
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

std::string hex(uint64_t v, int digits) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(static_cast<std::size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = kDigits[v & 15];
    v >>= 4;
  }
  return out;
}

}  // namespace

class Server::Impl : public std::enable_shared_from_this<Server::Impl> {
 public:
  Impl(io::ReactorPool& reactors, blockmap::VolumeManager& volumes, io::MetaStore& meta,
       ServerOptions options)
      : volumes_(volumes),
        meta_(meta),
        options_(std::move(options)),
        directory_(volumes),
        registry_(std::make_shared<ConnectionRegistry>("iscsi")),
        acceptor_(std::make_shared<asio::ip::tcp::acceptor>(reactors.at(0).context())) {}

  void start();
  void stop();
  [[nodiscard]] bool idle() const { return registry_->idle(); }

 private:
  struct DeviceSlot {
    std::unique_ptr<scsi::Device> device;
    unsigned users = 0;
    bool opening = false;
    // While `opening`: logins that arrive meanwhile wait on it, and the opener cancels it to
    // wake them once the device is open (or failed to open).
    std::optional<asio::steady_timer> opened;
    bool closing = false;  // the last user left and waits for the device's background work
  };

  Task<void> accept_loop();
  Task<void> connection(GenericSocket socket, std::string peer, ConnectionRegistry::Active active);
  Task<void> serve(LoginResult login, blockmap::Volume* volume, int fd, std::string peer,
                   std::string portal, ConnectionRegistry::Active active);
  Task<scsi::Device*> open_device(blockmap::Volume& volume, DeviceSlot*& slot);
  Task<void> close_device(blockmap::Volume& volume, DeviceSlot* slot);
  void cancel_closing(blockmap::Volume& volume);

  blockmap::VolumeManager& volumes_;
  io::MetaStore& meta_;
  ServerOptions options_;
  VolumeDirectory directory_;
  std::shared_ptr<ConnectionRegistry> registry_;
  std::shared_ptr<asio::ip::tcp::acceptor> acceptor_;
  bool started_ = false;
  std::mutex mutex_;  // guards devices_
  std::map<blockmap::Volume*, std::unique_ptr<DeviceSlot>> devices_;
  std::atomic<uint64_t> next_nexus_{1};
};

void Server::Impl::start() {
  nbd::listen_tcp(*acceptor_, options_.address, options_.port, "iSCSI");
  asio::co_spawn(acceptor_->get_executor(), accept_loop(), asio::detached);
  started_ = true;
}

void Server::Impl::stop() {
  // First, so that the accept loop and the connections registering from now on see it.
  registry_->stop();
  boost::system::error_code ignored;
  if (!started_) {
    acceptor_->close(ignored);
  }
  acceptor_->cancel(ignored);
  // A device whose last session ended waits for its background work (close_device()): stop
  // that work, on the device's thread.
  std::lock_guard lock(mutex_);
  for (const auto& [volume, slot] : devices_) {
    asio::post(volume->executor(),
               [self = shared_from_this(), volume = volume] { self->cancel_closing(*volume); });
  }
}

void Server::Impl::cancel_closing(blockmap::Volume& volume) {
  DeviceSlot* slot = nullptr;
  {
    std::lock_guard lock(mutex_);
    auto it = devices_.find(&volume);
    if (it == devices_.end()) {
      return;
    }
    slot = it->second.get();
  }
  // Only this reactor changes or erases the slot (close_device()).
  if (slot->closing && slot->device) {
    slot->device->cancel_background();
  }
}

Task<void> Server::Impl::accept_loop() {
  auto self = shared_from_this();
  std::shared_ptr<asio::ip::tcp::acceptor> acceptor = acceptor_;
  asio::steady_timer backoff(acceptor->get_executor());
  for (;;) {
    GenericSocket socket(acceptor->get_executor());
    auto [ec] = co_await acceptor->async_accept(socket, use_tuple);
    if (registry_->stopping() || ec == asio::error::operation_aborted) {
      boost::system::error_code ignored;
      acceptor->close(ignored);
      co_return;
    }
    if (ec) {
      CAIRN_LOG(warn, "iscsi", "accept failed: {}", ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(use_tuple);
      continue;
    }
    boost::system::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    asio::ip::tcp::endpoint remote;
    auto ep = socket.remote_endpoint(ignored);
    std::string peer = "iSCSI client";
    if (ep.size() <= remote.capacity()) {
      std::memcpy(remote.data(), ep.data(), ep.size());
      remote.resize(ep.size());
      peer = endpoint_text(remote);
    }
    asio::co_spawn(acceptor->get_executor(),
                   connection(std::move(socket), std::move(peer), registry_->active()),
                   asio::detached);
  }
}

Task<void> Server::Impl::connection(GenericSocket socket, std::string peer,
                                    ConnectionRegistry::Active active) {
  auto self = shared_from_this();
  boost::system::error_code ec;
  auto local = socket.local_endpoint(ec);
  if (ec) {
    co_return;
  }
  const int family = local.protocol().family();
  std::string portal = options_.target.portal;
  if (portal.empty()) {
    asio::ip::tcp::endpoint tcp;
    if (local.size() <= tcp.capacity()) {
      std::memcpy(tcp.data(), local.data(), local.size());
      tcp.resize(local.size());
      portal = endpoint_text(tcp);
    }
  }
  auto stream = std::make_unique<SocketStream>(std::move(socket), peer);
  auto executor = co_await asio::this_coro::executor;
  uint64_t id = registry_->add(executor, stream.get());
  if (id == 0) {
    stream->close();  // the server is stopping
    co_return;
  }
  blockmap::Volume* volume = nullptr;
  std::function<bool(const LoginResult&)> admit = [&](const LoginResult& r) {
    if (r.discovery) {
      return true;
    }
    volume = volumes_.acquire(r.volume);
    return volume != nullptr;
  };
  auto result = co_await login(*stream, options_.target, directory_, portal, admit);
  if (!result || registry_->stopping()) {
    registry_->remove(id);
    if (volume != nullptr) {
      volumes_.release(volume);
    }
    stream->close();
    co_return;
  }
  if (result->discovery) {
    CAIRN_LOG(debug, "iscsi", "{}: discovery session of '{}'", peer, result->initiator_name);
    {
      Session session(*stream, executor, *result, nullptr, {}, options_.target, directory_, portal,
                      options_.session);
      co_await session.run();
    }
    registry_->remove(id);
    co_return;
  }
  registry_->remove(id);
  CAIRN_LOG(info, "iscsi", "{}: '{}' logged in to '{}'", peer, result->initiator_name,
            result->target_name);
  int fd = stream->socket().release(ec);
  if (ec) {
    CAIRN_LOG(warn, "iscsi", "{}: cannot move connection: {}", peer, ec.message());
    volumes_.release(volume);
    co_return;
  }
  (void)family;
  asio::co_spawn(
      volume->executor(),
      serve(std::move(*result), volume, fd, std::move(peer), std::move(portal), std::move(active)),
      asio::detached);
}

Task<scsi::Device*> Server::Impl::open_device(blockmap::Volume& volume, DeviceSlot*& slot) {
  {
    std::lock_guard lock(mutex_);
    auto& p = devices_[&volume];
    if (!p) {
      p = std::make_unique<DeviceSlot>();
    }
    slot = p.get();
    slot->users++;
  }
  // Only this reactor touches the slot's fields: concurrent logins wait for the first open.
  while (slot->opening) {
    co_await slot->opened->async_wait(use_tuple);
  }
  if (!slot->device) {
    slot->opening = true;
    slot->opened.emplace(volume.executor(), asio::steady_timer::time_point::max());
    // An lvalue, not the default argument: GCC 12 destroys a defaulted by-value coroutine
    // argument twice.
    scsi::DeviceOptions device_options = options_.device;
    auto device = co_await scsi::Device::open(volume, meta_, device_options);
    slot->opening = false;
    slot->opened->cancel();
    if (!device) {
      CAIRN_LOG(error, "iscsi", "cannot open SCSI device for volume '{}': {}", volume.name(),
                device.error().message());
      co_return nullptr;
    }
    slot->device = std::move(*device);
  }
  co_return slot->device.get();
}

// The last session's end closes the device, but a SANITIZE it started runs on (SBC-4 4.32:
// it survives resets and I_T nexus loss), so the device and the volume (the caller releases
// it after this) stay until it ends, or until the server stops, which interrupts it: here if
// it already had, or else through cancel_closing().
Task<void> Server::Impl::close_device(blockmap::Volume& volume, DeviceSlot* slot) {
  if (--slot->users > 0 || slot->closing) {
    co_return;
  }
  if (slot->device && slot->device->busy()) {
    slot->closing = true;
    while (slot->device->busy()) {
      if (registry_->stopping()) {
        slot->device->cancel_background();
      }
      co_await slot->device->background_ended();
    }
    slot->closing = false;
    if (slot->users > 0) {
      co_return;  // a new session took the device over; its end closes it
    }
  }
  slot->device.reset();
  std::lock_guard lock(mutex_);
  devices_.erase(&volume);
}

Task<void> Server::Impl::serve(LoginResult login, blockmap::Volume* volume, int fd,
                               std::string peer, std::string portal,
                               ConnectionRegistry::Active active) {
  auto self = shared_from_this();
  auto executor = co_await asio::this_coro::executor;
  GenericSocket socket(executor);
  boost::system::error_code ec;
  const int family = portal.starts_with("[") ? AF_INET6 : AF_INET;
  socket.assign(asio::generic::stream_protocol(family, SOCK_STREAM), fd, ec);
  if (ec) {
    ::close(fd);
    volumes_.release(volume);
    co_return;
  }
  SocketStream stream(std::move(socket), peer);
  std::string key = login.initiator_name + "|" + hex(login.isid, 12) + "|" + login.target_name;
  uint64_t id = registry_->add(executor, &stream, key);
  DeviceSlot* slot = nullptr;
  scsi::Device* device = co_await open_device(*volume, slot);
  if (device != nullptr && !registry_->stopping()) {
    scsi::Nexus nexus;
    nexus.id = next_nexus_++;
    nexus.initiator_name = login.initiator_name;
    nexus.initiator_port = login.initiator_name + ",i,0x" + hex(login.isid, 12);
    nexus.target_port = login.target_name + ",t,0x" + hex(options_.target.portal_group_tag, 4);
    nexus.relative_target_port = options_.target.portal_group_tag;
    device->attach(nexus, [&stream] { stream.close(); });
    {
      Session session(stream, executor, std::move(login), device, nexus, options_.target,
                      directory_, std::move(portal), options_.session);
      co_await session.run();
    }
    device->detach(nexus);
    CAIRN_LOG(info, "iscsi", "{}: session of '{}' on '{}' ended", peer, nexus.initiator_name,
              volume->name());
  } else {
    stream.close();
  }
  co_await close_device(*volume, slot);
  registry_->remove(id);
  volumes_.release(volume);
}

Server::Server(io::ReactorPool& reactors, blockmap::VolumeManager& volumes, io::MetaStore& meta,
               ServerOptions options)
    : impl_(std::make_shared<Impl>(reactors, volumes, meta, std::move(options))) {}

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

}  // namespace cairn::target::iscsi
