// AsyncMutex: a mutual-exclusion lock for coroutines of ONE thread (one io_context run by one
// thread). lock() suspends the caller, without blocking the thread, until the lock is free;
// waiters get the lock in FIFO order (the lock is handed over, never stolen).
//
// Used to serialize multi-step disk operations (a journal sync, a store's flush) that may
// interleave at their suspension points. Not thread-safe: every call comes from the owning
// thread. The mutex must outlive its waiters.
#pragma once

#include <cstddef>
#include <deque>

#include "base/asio.h"

namespace cairn::io {

class AsyncMutex {
 public:
  AsyncMutex() = default;
  AsyncMutex(const AsyncMutex&) = delete;
  AsyncMutex& operator=(const AsyncMutex&) = delete;

  // Completes once the caller holds the lock.
  Task<void> lock();
  void unlock() noexcept;
  [[nodiscard]] bool locked() const noexcept { return locked_; }

  // RAII guard for a held lock: `auto guard = co_await mutex.scoped();`.
  class Guard {
   public:
    explicit Guard(AsyncMutex* m) noexcept : mutex_(m) {}
    Guard(Guard&& o) noexcept : mutex_(o.mutex_) { o.mutex_ = nullptr; }
    Guard& operator=(Guard&&) = delete;
    ~Guard() {
      if (mutex_ != nullptr) {
        mutex_->unlock();
      }
    }

   private:
    AsyncMutex* mutex_;
  };
  Task<Guard> scoped();

 private:
  bool locked_ = false;
  std::deque<asio::steady_timer*> waiters_;
};

}  // namespace cairn::io
