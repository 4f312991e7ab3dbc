// RangeLock: shared/exclusive locks on ranges of chunk indexes, for coroutines of ONE thread
// (a volume's reactor). Requests interleave at their suspension points; this is what orders
// overlapping writes so that a read-modify-write never loses an update, and what keeps a
// chunk id alive while a read fetches it (its old id is only released after the lock).
//
// Grants are FIFO among conflicting requests: a request waits for every earlier request that
// overlaps it, unless both are shared. The same class serves as a plain async mutex (lock one
// fixed range exclusively).
//
// Bounds: one entry per waiting or holding request, so the queue is bounded by the requests
// in flight (the front end's limit). Not thread-safe. The lock must outlive every Guard.
#pragma once

#include <cstdint>
#include <list>

#include "base/asio.h"

namespace cairn::blockmap {

class RangeLock {
 public:
  enum class Mode { shared, exclusive };

  struct Entry {
    uint64_t first = 0;
    uint64_t last = 0;  // inclusive
    Mode mode = Mode::exclusive;
    bool granted = false;
    asio::steady_timer* waiter = nullptr;  // set while the owner waits
  };

  // Holds one granted range; releases it on destruction.
  class Guard {
   public:
    Guard() = default;
    Guard(RangeLock* lock, std::list<Entry>::iterator it) noexcept : lock_(lock), it_(it) {}
    Guard(Guard&& o) noexcept : lock_(o.lock_), it_(o.it_) { o.lock_ = nullptr; }
    Guard& operator=(Guard&& o) noexcept;
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    ~Guard() { reset(); }
    void reset() noexcept;

   private:
    RangeLock* lock_ = nullptr;
    std::list<Entry>::iterator it_{};
  };

  RangeLock() = default;
  RangeLock(const RangeLock&) = delete;
  RangeLock& operator=(const RangeLock&) = delete;

  // Completes once [first, last] is held in `mode`.
  Task<Guard> lock(uint64_t first, uint64_t last, Mode mode);

  [[nodiscard]] std::size_t queued() const noexcept { return entries_.size(); }

 private:
  [[nodiscard]] bool blocked(std::list<Entry>::const_iterator it) const noexcept;
  void release(std::list<Entry>::iterator it) noexcept;

  std::list<Entry> entries_;  // in arrival order
};

}  // namespace cairn::blockmap
