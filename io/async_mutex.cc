#include "io/async_mutex.h"

#include "base/assert.h"

namespace cairn::io {

Task<void> AsyncMutex::lock() {
  if (!locked_) {
    locked_ = true;
    co_return;
  }
  // Wait on a timer that never expires; unlock() cancels it to hand the lock over.
  asio::steady_timer timer(co_await asio::this_coro::executor,
                           asio::steady_timer::time_point::max());
  waiters_.push_back(&timer);
  co_await timer.async_wait(use_tuple);
  CAIRN_ASSERT(locked_);
}

void AsyncMutex::unlock() noexcept {
  CAIRN_ASSERT(locked_);
  if (waiters_.empty()) {
    locked_ = false;
    return;
  }
  asio::steady_timer* next = waiters_.front();
  waiters_.pop_front();
  next->cancel();  // stays locked: ownership passes to `next`
}

Task<AsyncMutex::Guard> AsyncMutex::scoped() {
  co_await lock();
  co_return Guard(this);
}

}  // namespace cairn::io
