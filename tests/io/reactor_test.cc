// Tests of the reactor layer: Asio's io_uring backend as cairn builds it (base/asio.h,
// base/asio_uring_fix.h) and ReactorPool's shutdown (io/reactor.h).
#include "io/reactor.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <thread>

#include "base/asio.h"

namespace cairn::io {
namespace {

using Stream = asio::local::stream_protocol::socket;

// Asio's io_uring ring has this many submission slots (boost/asio/detail/io_uring_service.hpp).
constexpr int kAsioRingEntries = 16384;

// Runs handlers until done() or about a second has passed.
template <class Done>
void run_until(asio::io_context& context, Done done) {
  for (int i = 0; i < 200 && !done(); ++i) {
    if (context.stopped()) {
      context.restart();
    }
    context.run_one_for(std::chrono::milliseconds(5));
  }
}

// Closing a socket with a pending read makes Asio submit an IORING_OP_ASYNC_CANCEL. Boost 1.81
// prepared that submission without setting its user data, so its completion carried whatever
// an earlier submission in the same slot had carried and was delivered to that operation's
// queue: an unrelated read completed early (with "0 bytes", that is end of stream, or with the
// cancel's own -ENOENT), and its real completion later went to the next operation. cairnd saw
// this as iSCSI sessions failing with "write failed: No such file or directory", or hanging,
// when another session's socket was closed on the same reactor.
TEST(AsioIoUring, CancelDoesNotCompleteAnotherSocketsOperation) {
  asio::io_context context(1);
  Stream victim(context);
  Stream victim_peer(context);
  asio::local::connect_pair(victim, victim_peer);
  // Fill every submission slot with the victim's read queue as its user data: read one byte at
  // a time, written by plain write(2) so that only the reads go through the ring.
  std::array<char, 1> byte{};
  for (int i = 0; i < kAsioRingEntries + 8; ++i) {
    bool done = false;
    boost::system::error_code read_error;
    victim.async_read_some(asio::buffer(byte), [&](boost::system::error_code ec, std::size_t) {
      read_error = ec;
      done = true;
    });
    // Submitted before the byte is there, so that it does go through the ring.
    context.poll();
    ASSERT_EQ(::write(victim_peer.native_handle(), "x", 1), 1);
    // run_one() without a time limit: a limit would add timeout submissions to the ring.
    while (!done) {
      if (context.stopped()) {
        context.restart();
      }
      context.run_one();
    }
    ASSERT_FALSE(read_error) << read_error.message();
  }

  // The victim now waits for data that never comes.
  std::optional<boost::system::error_code> victim_result;
  victim.async_read_some(asio::buffer(byte),
                         [&](boost::system::error_code ec, std::size_t) { victim_result = ec; });
  // Another socket with a pending read is closed: its cancel takes the next slot.
  Stream other(context);
  Stream other_peer(context);
  asio::local::connect_pair(other, other_peer);
  std::optional<boost::system::error_code> other_result;
  other.async_read_some(asio::buffer(byte),
                        [&](boost::system::error_code ec, std::size_t) { other_result = ec; });
  context.poll();
  other.close();
  run_until(context, [&] { return other_result.has_value(); });
  ASSERT_TRUE(other_result.has_value());
  EXPECT_EQ(*other_result, asio::error::operation_aborted);
  // Give a misdelivered completion every chance to arrive.
  int turns = 0;
  run_until(context, [&] { return ++turns > 20; });
  EXPECT_FALSE(victim_result.has_value())
      << "the victim's read completed without data: " << victim_result->message();

  // And it still gets its data.
  ASSERT_EQ(::write(victim_peer.native_handle(), "y", 1), 1);
  run_until(context, [&] { return victim_result.has_value(); });
  ASSERT_TRUE(victim_result.has_value());
  EXPECT_FALSE(*victim_result) << victim_result->message();
  EXPECT_EQ(byte[0], 'y');
}

// Suspends forever on a timer of its own reactor.
Task<void> wait_forever(asio::any_io_executor executor) {
  asio::steady_timer timer(executor, asio::steady_timer::time_point::max());
  co_await timer.async_wait(use_tuple);
}

// A chain of `depth` coroutines alternating between the pool's two reactors, each awaiting a
// co_spawn of the next on the other reactor and holding a timer of each reactor; the last
// waits forever.
Task<void> chain(ReactorPool& pool, unsigned depth, unsigned on) {
  asio::steady_timer timer0(pool.at(0).context(), asio::steady_timer::time_point::max());
  asio::steady_timer timer1(pool.at(1).context(), asio::steady_timer::time_point::max());
  if (depth == 0) {
    co_await wait_forever(pool.at(on).executor());
    co_return;
  }
  co_await asio::co_spawn(pool.at(1 - on).executor(), chain(pool, depth - 1, 1 - on),
                          asio::use_awaitable);
}

// Coroutines await each other across reactors. Shutting one reactor down destroys the frames
// suspended there, and each destroyed frame posts the unwinding of the one awaiting it to that
// one's reactor, perhaps already shut down. With one shutdown pass per reactor (and one more
// from the pool's destructor), frames deeper in the chain were destroyed by a reactor's
// destructor after the other reactor's services were freed, and their timers' destructors used
// a freed timer service (ASan: heap-use-after-free), which is what cairnd did at SIGTERM with
// a live iSCSI session.
TEST(ReactorPool, ShutdownDestroysFramesThatCrossReactors) {
  constexpr unsigned kDepth = 8;
  ReactorPool pool(2, 8);
  std::atomic<unsigned> spawned{0};
  for (unsigned on = 0; on < 2; ++on) {
    asio::co_spawn(
        pool.at(on).executor(),
        [&pool, &spawned, on]() -> Task<void> {
          spawned++;
          co_await chain(pool, kDepth, on);
        },
        asio::detached);
  }
  pool.start();
  asio::steady_timer tick(pool.at(0).context());
  asio::co_spawn(
      pool.at(0).executor(),
      [&]() -> Task<void> {
        while (spawned < 2) {
          tick.expires_after(std::chrono::milliseconds(1));
          co_await tick.async_wait(use_tuple);
        }
        // Let the chains reach their ends.
        tick.expires_after(std::chrono::milliseconds(50));
        co_await tick.async_wait(use_tuple);
        pool.stop();
      },
      asio::detached);
  pool.run();
  pool.stop();
  pool.join();
  pool.shutdown();
}

std::chrono::nanoseconds thread_cpu_time() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

// Posts fn to the reactor and waits (at most 10 s) until it has run.
template <class Fn>
bool run_on(Reactor& reactor, Fn fn) {
  std::atomic<bool> done{false};
  asio::post(reactor.executor(), [&] {
    fn();
    done = true;
  });
  for (int i = 0; i < 10'000 && !done; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done;
}

// A reactor that keeps polling after its handlers (Reactor::run) runs work posted from other
// threads, whether it arrives while the reactor polls or after it went to sleep; once the
// window has passed it sleeps (its thread takes no CPU while idle); and stop() ends run()
// while it polls.
TEST(Reactor, IdlePollingRunsWorkThenSleeps) {
  constexpr auto kWindow = std::chrono::milliseconds(20);
  ReactorPool pool(2, 8, kWindow);
  Reactor& reactor = pool.at(1);
  pool.start();

  std::atomic<unsigned> ran{0};
  std::atomic<unsigned> on_reactor{0};
  constexpr unsigned kPosts = 60;
  for (unsigned i = 0; i < kPosts; ++i) {
    asio::post(reactor.executor(), [&] {
      on_reactor += Reactor::current() == &reactor ? 1 : 0;
      ran++;
    });
    // Most arrive inside the window, every tenth after the reactor went back to sleep.
    std::this_thread::sleep_for(i % 10 == 9 ? 2 * kWindow : std::chrono::microseconds(100));
  }
  for (int i = 0; i < 10'000 && ran < kPosts; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(ran, kPosts);
  EXPECT_EQ(on_reactor, kPosts);

  // Idle for 15 windows: a reactor that kept polling would take most of that time in CPU
  // (yielding only to other runnable threads); one that sleeps takes about one window.
  std::chrono::nanoseconds before{};
  std::chrono::nanoseconds after{};
  ASSERT_TRUE(run_on(reactor, [&] { before = thread_cpu_time(); }));
  std::this_thread::sleep_for(15 * kWindow);
  ASSERT_TRUE(run_on(reactor, [&] { after = thread_cpu_time(); }));
  EXPECT_LT(after - before, 5 * kWindow);

  // Stopped while it polls (it has just run a handler).
  asio::post(reactor.executor(), [] {});
  pool.stop();
  pool.join();
  pool.shutdown();
}

}  // namespace
}  // namespace cairn::io
