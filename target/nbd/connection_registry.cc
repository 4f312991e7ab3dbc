#include "target/nbd/connection_registry.h"

#include "base/log.h"

namespace cairn::target::nbd {
namespace {

// Ends a connection: cancels what it waits for, and shuts the socket down so that a read it
// starts afterwards ends too. Cancelling rather than closing keeps the socket registered with
// Asio, so a read still pending if the reactors stop first is abandoned cleanly when the
// io_context is destroyed; the connection closes the socket itself.
void end_connection(SocketStream& stream) {
  boost::system::error_code ignored;
  stream.socket().cancel(ignored);
  stream.socket().shutdown(asio::socket_base::shutdown_both, ignored);
}

}  // namespace

ConnectionRegistry::Active::Active(std::shared_ptr<ConnectionRegistry> registry)
    : registry_(std::move(registry)) {
  registry_->active_++;
}

ConnectionRegistry::Active::~Active() {
  if (registry_) {
    registry_->active_--;
  }
}

uint64_t ConnectionRegistry::add(asio::any_io_executor executor, SocketStream* stream,
                                 std::string key) {
  std::lock_guard lock(mutex_);
  if (stopping_) {
    return 0;
  }
  if (!key.empty()) {
    for (const auto& [id, entry] : live_) {
      if (entry.key == key) {
        CAIRN_LOG(info, component_, "{}: reinstating session {}", stream->peer(), key);
        end_later(id, entry);
      }
    }
  }
  live_[next_id_] = Entry{std::move(executor), stream, std::move(key)};
  return next_id_++;
}

void ConnectionRegistry::remove(uint64_t id) {
  std::lock_guard lock(mutex_);
  live_.erase(id);
}

void ConnectionRegistry::stop() {
  std::lock_guard lock(mutex_);
  // Under the mutex: a connection that registers after this sees it (add()).
  stopping_ = true;
  for (const auto& [id, entry] : live_) {
    end_later(id, entry);
  }
}

void ConnectionRegistry::end_later(uint64_t id, const Entry& entry) {
  asio::post(entry.executor, [self = shared_from_this(), id] {
    std::lock_guard lock(self->mutex_);
    if (auto it = self->live_.find(id); it != self->live_.end()) {
      end_connection(*it->second.stream);
    }
  });
}

}  // namespace cairn::target::nbd
