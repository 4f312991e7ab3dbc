// ConnectionRegistry: a front end's open connections, so that stop() can end them, and a count
// of the connections still being served, so that the node can wait for them (idle()) before it
// stops the reactors. The NBD and iSCSI servers each keep one.
//
// Threading: any thread. add(), remove() and stop() take a mutex; stop() ends each connection
// on the connection's own executor. Ownership: held by std::shared_ptr, by the server and by
// every connection coroutine (through Active and the posted ends), which may outlive the server
// while the reactors wind down. It borrows each stream from add() until remove().
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "target/nbd/socket_stream.h"

namespace cairn::target::nbd {

class ConnectionRegistry : public std::enable_shared_from_this<ConnectionRegistry> {
 public:
  // Counts one connection as active from its accept until the last coroutine serving it (the
  // handshake or login, then the phase it hands over to) ends or is destroyed.
  class Active {
   public:
    explicit Active(std::shared_ptr<ConnectionRegistry> registry);
    Active(Active&& other) noexcept = default;
    Active& operator=(Active&&) = delete;
    Active(const Active&) = delete;
    Active& operator=(const Active&) = delete;
    ~Active();

   private:
    std::shared_ptr<ConnectionRegistry> registry_;
  };

  // `component` names the front end in log lines ("nbd", "iscsi").
  explicit ConnectionRegistry(std::string component) : component_(std::move(component)) {}

  [[nodiscard]] Active active() { return Active(shared_from_this()); }

  // Registers `stream`, served on `executor`; 0 once stop() ran (the caller ends the
  // connection). A non-empty `key` ends every registered connection with the same key first
  // (iSCSI session reinstatement).
  [[nodiscard]] uint64_t add(asio::any_io_executor executor, SocketStream* stream,
                             std::string key = {});
  void remove(uint64_t id);
  // Refuses connections from now on and ends every registered one.
  void stop();

  [[nodiscard]] bool stopping() const noexcept { return stopping_; }
  [[nodiscard]] bool idle() const noexcept { return active_ == 0; }

 private:
  struct Entry {
    asio::any_io_executor executor;
    SocketStream* stream = nullptr;
    std::string key;
  };

  // Posts the end of connection `id` to its executor (it may have finished by then).
  void end_later(uint64_t id, const Entry& entry);

  const std::string component_;
  std::mutex mutex_;  // guards next_id_ and live_; stopping_ changes under it
  uint64_t next_id_ = 1;
  std::map<uint64_t, Entry> live_;
  std::atomic<bool> stopping_{false};
  std::atomic<unsigned> active_{0};
};

}  // namespace cairn::target::nbd
