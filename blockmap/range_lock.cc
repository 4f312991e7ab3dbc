#include "blockmap/range_lock.h"

#include "base/assert.h"

namespace cairn::blockmap {
namespace {

bool conflict(const RangeLock::Entry& a, const RangeLock::Entry& b) noexcept {
  bool overlap = a.first <= b.last && b.first <= a.last;
  bool both_shared = a.mode == RangeLock::Mode::shared && b.mode == RangeLock::Mode::shared;
  return overlap && !both_shared;
}

}  // namespace

RangeLock::Guard& RangeLock::Guard::operator=(Guard&& o) noexcept {
  if (this != &o) {
    reset();
    lock_ = o.lock_;
    it_ = o.it_;
    o.lock_ = nullptr;
  }
  return *this;
}

void RangeLock::Guard::reset() noexcept {
  if (lock_ != nullptr) {
    lock_->release(it_);
    lock_ = nullptr;
  }
}

bool RangeLock::blocked(std::list<Entry>::const_iterator it) const noexcept {
  for (auto e = entries_.begin(); e != it; ++e) {
    if (conflict(*e, *it)) {
      return true;
    }
  }
  return false;
}

Task<RangeLock::Guard> RangeLock::lock(uint64_t first, uint64_t last, Mode mode) {
  CAIRN_ASSERT(first <= last);
  auto it = entries_.insert(entries_.end(), Entry{first, last, mode, false, nullptr});
  if (!blocked(it)) {
    it->granted = true;
    co_return Guard(this, it);
  }
  // Wait on a timer that never expires; release() cancels it once the range is free. If this
  // coroutine is destroyed while waiting (shutdown), the entry is withdrawn.
  struct Withdraw {
    RangeLock* self;
    std::list<Entry>::iterator it;
    bool armed = true;
    ~Withdraw() {
      if (armed) {
        self->release(it);
      }
    }
  } withdraw{this, it};
  asio::steady_timer timer(co_await asio::this_coro::executor,
                           asio::steady_timer::time_point::max());
  it->waiter = &timer;
  while (!it->granted) {
    co_await timer.async_wait(use_tuple);
  }
  it->waiter = nullptr;
  withdraw.armed = false;
  co_return Guard(this, it);
}

void RangeLock::release(std::list<Entry>::iterator it) noexcept {
  entries_.erase(it);
  for (auto e = entries_.begin(); e != entries_.end(); ++e) {
    if (!e->granted && !blocked(e)) {
      e->granted = true;
      if (e->waiter != nullptr) {
        e->waiter->cancel();
      }
    }
  }
}

}  // namespace cairn::blockmap
