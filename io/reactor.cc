#include "io/reactor.h"

#include <sched.h>

#include "base/assert.h"

namespace cairn::io {
namespace {
thread_local Reactor* t_current = nullptr;
}

Reactor::Reactor(unsigned index, unsigned disk_queue_depth, std::chrono::microseconds idle_poll)
    : index_(index),
      idle_poll_(idle_poll),
      context_(1),
      disk_(std::make_unique<DiskRing>(context_, disk_queue_depth)) {}

Reactor* Reactor::current() noexcept {
  return t_current;
}

void Reactor::run() {
  CAIRN_ASSERT(t_current == nullptr);
  t_current = this;
  auto guard = asio::make_work_guard(context_);
  if (idle_poll_.count() == 0) {
    context_.run();
  } else {
    // poll() runs ready handlers and reaps Asio's ring without entering the kernel; the
    // disk ring's completions reach it through its eventfd, which is one of those
    // operations. Only run_one() sleeps.
    using Clock = std::chrono::steady_clock;
    auto last = Clock::now();
    while (!context_.stopped()) {
      if (context_.poll() != 0) {
        last = Clock::now();
      } else if (Clock::now() - last < idle_poll_) {
        sched_yield();
      } else if (context_.run_one() != 0) {
        last = Clock::now();
      }
    }
  }
  t_current = nullptr;
}

ReactorPool::ReactorPool(unsigned count, unsigned disk_queue_depth,
                         std::chrono::microseconds idle_poll) {
  if (count == 0) {
    count = std::max(1u, std::thread::hardware_concurrency());
  }
  reactors_.reserve(count);
  for (unsigned i = 0; i < count; ++i) {
    reactors_.push_back(std::make_unique<Reactor>(i, disk_queue_depth, idle_poll));
  }
}

ReactorPool::~ReactorPool() {
  stop();
  join();
  shutdown();
}

// Shutting a context down destroys its suspended coroutines, and destroying a coroutine can
// post work to another reactor: Asio unwinds a coroutine stack through that coroutine's own
// executor, so a frame awaiting a co_spawn on another reactor is unwound there. Work posted to
// a context after its shutdown would otherwise only be destroyed by its destructor, after
// another context's services are gone (a Session's steady_timer then cancels itself on a
// freed timer service). So the rounds repeat over every context until one posts nothing:
// restart() and poll() run what a round left queued (such handlers only unwind and cancel),
// and report whether there was any.
void ReactorPool::shutdown() {
  CAIRN_ASSERT(threads_.empty());
  for (unsigned round = 0;; ++round) {
    for (auto& r : reactors_) {
      r->context_.shutdown_services();
    }
    std::size_t left = 0;
    for (auto& r : reactors_) {
      r->context_.restart();
      left += r->context_.poll();
    }
    if (left == 0) {
      break;
    }
    // Each round goes one await deeper into chains of cross-reactor co_spawns.
    CAIRN_ASSERT(round < kMaxShutdownRounds);
  }
}

void ReactorPool::start() {
  CAIRN_ASSERT(threads_.empty());
  for (unsigned i = 1; i < reactors_.size(); ++i) {
    threads_.emplace_back([r = reactors_[i].get()] { r->run(); });
  }
}

void ReactorPool::run() {
  reactors_[0]->run();
}

void ReactorPool::stop() noexcept {
  for (auto& r : reactors_) {
    r->stop();
  }
}

void ReactorPool::join() {
  for (auto& t : threads_) {
    if (t.joinable()) {
      t.join();
    }
  }
  threads_.clear();
}

}  // namespace cairn::io
