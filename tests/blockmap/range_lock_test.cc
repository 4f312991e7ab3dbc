// RangeLock: overlapping exclusive requests wait in FIFO order; shared ones overlap; a
// request withdrawn by destroying its coroutine frees its place.
#include "blockmap/range_lock.h"

#include <gtest/gtest.h>

#include <string>

namespace cairn::blockmap {
namespace {

using Mode = RangeLock::Mode;

// Takes the lock, records the entry, yields `hold` times, records the exit.
Task<void> hold(RangeLock& lock, uint64_t first, uint64_t last, Mode mode, std::string name,
                std::string& log, int hold_yields) {
  auto guard = co_await lock.lock(first, last, mode);
  log += "+" + name;
  for (int i = 0; i < hold_yields; ++i) {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  }
  log += "-" + name;
}

void spawn(asio::io_context& ctx, Task<void> t) {
  asio::co_spawn(ctx, std::move(t), asio::detached);
}

TEST(RangeLock, OverlappingExclusiveRequestsRunOneAtATimeInOrder) {
  asio::io_context ctx;
  RangeLock lock;
  std::string log;
  spawn(ctx, hold(lock, 0, 3, Mode::exclusive, "a", log, 3));
  spawn(ctx, hold(lock, 3, 5, Mode::exclusive, "b", log, 1));
  spawn(ctx, hold(lock, 2, 4, Mode::exclusive, "c", log, 1));    // overlaps a and b
  spawn(ctx, hold(lock, 10, 12, Mode::exclusive, "d", log, 1));  // disjoint: runs at once
  ctx.run();
  EXPECT_EQ(log, "+a+d-d-a+b-b+c-c");
  EXPECT_EQ(lock.queued(), 0u);
}

TEST(RangeLock, DisjointWaitersStartTogether) {
  asio::io_context ctx;
  RangeLock lock;
  std::string log;
  spawn(ctx, hold(lock, 0, 5, Mode::exclusive, "a", log, 3));
  spawn(ctx, hold(lock, 3, 5, Mode::exclusive, "b", log, 1));
  spawn(ctx, hold(lock, 2, 2, Mode::exclusive, "c", log, 1));  // waits for a only
  ctx.run();
  EXPECT_EQ(log, "+a-a+b+c-b-c");
}

TEST(RangeLock, SharedRequestsOverlapButNotWithExclusive) {
  asio::io_context ctx;
  RangeLock lock;
  std::string log;
  spawn(ctx, hold(lock, 0, 9, Mode::shared, "r1", log, 2));
  spawn(ctx, hold(lock, 5, 5, Mode::shared, "r2", log, 2));
  spawn(ctx, hold(lock, 5, 6, Mode::exclusive, "w", log, 1));
  spawn(ctx, hold(lock, 6, 6, Mode::shared, "r3", log, 1));  // behind w (FIFO)
  ctx.run();
  EXPECT_EQ(log, "+r1+r2-r1-r2+w-w+r3-r3");
}

TEST(RangeLock, AWaiterDestroyedWhileWaitingLeavesTheQueue) {
  RangeLock lock;
  std::string log;
  {
    asio::io_context ctx;
    spawn(ctx, hold(lock, 0, 0, Mode::exclusive, "a", log, 100));
    spawn(ctx, hold(lock, 0, 0, Mode::exclusive, "b", log, 1));
    for (int i = 0; i < 5; ++i) {
      ctx.run_one();
    }
    EXPECT_EQ(lock.queued(), 2u);
  }  // destroys both coroutines: the holder releases, the waiter withdraws
  EXPECT_EQ(lock.queued(), 0u);
  EXPECT_EQ(log, "+a");
}

}  // namespace
}  // namespace cairn::blockmap
