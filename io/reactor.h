// Reactor: one thread with one io_context (Asio's io_uring backend for sockets and timers)
// and one DiskRing (liburing, for disk I/O). ReactorPool owns all of a node's reactors.
//
// This is Seastar's shard-per-core model: every volume is owned by one reactor, which orders
// all of its requests; work for a volume is carried to its reactor instead of being locked.
// Reactor::current() tells code which reactor's thread it is running on.
#pragma once

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "base/asio.h"
#include "io/disk_ring.h"

namespace cairn::io {

class Reactor {
 public:
  // idle_poll: how long the thread keeps polling for completions after its last handler
  // before it sleeps in io_uring_enter (zero: it sleeps at once). See run().
  Reactor(unsigned index, unsigned disk_queue_depth,
          std::chrono::microseconds idle_poll = std::chrono::microseconds(0));
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  [[nodiscard]] unsigned index() const noexcept { return index_; }
  [[nodiscard]] asio::io_context& context() noexcept { return context_; }
  [[nodiscard]] asio::any_io_executor executor() noexcept { return context_.get_executor(); }
  // Only from this reactor's thread.
  [[nodiscard]] DiskRing& disk() noexcept { return *disk_; }

  // The reactor whose thread is calling, or nullptr on any other thread.
  [[nodiscard]] static Reactor* current() noexcept;

  // Runs the event loop on the calling thread until stop().
  //
  // Waking a sleeping thread costs a cross-CPU interrupt, and on a virtual machine a halted
  // vCPU's wake-up through the hypervisor: about 25 us here, more than a hot 4 KiB read's own
  // work. So, as Seastar's reactor does (its --idle-poll-time-us), a reactor that has just run
  // handlers keeps polling its rings without blocking for up to idle_poll before it sleeps; a
  // request arriving in that window is picked up without a wake-up. While polling it yields
  // the CPU to any other runnable thread (sched_yield), so polling takes only idle time.
  void run();
  void stop() noexcept { context_.stop(); }

 private:
  friend class ReactorPool;

  // An io_context whose services can be shut down before it is destroyed. Coroutines
  // suspended on one reactor may own I/O objects of another, so a pool shuts every context
  // down (destroying the suspended frames while all services still exist) before destroying
  // any of them.
  class Context : public asio::io_context {
   public:
    using asio::io_context::io_context;
    void shutdown_services() { shutdown(); }
  };

  unsigned index_;
  std::chrono::microseconds idle_poll_;
  Context context_;
  std::unique_ptr<DiskRing> disk_;
};

class ReactorPool {
 public:
  // count == 0 means one reactor per core. idle_poll as for Reactor.
  ReactorPool(unsigned count, unsigned disk_queue_depth,
              std::chrono::microseconds idle_poll = std::chrono::microseconds(0));
  ~ReactorPool();
  ReactorPool(const ReactorPool&) = delete;
  ReactorPool& operator=(const ReactorPool&) = delete;

  [[nodiscard]] unsigned size() const noexcept { return static_cast<unsigned>(reactors_.size()); }
  [[nodiscard]] Reactor& at(unsigned i) noexcept { return *reactors_[i]; }

  // Starts reactors 1..n-1 on their own threads; reactor 0 runs on the caller in run().
  void start();
  void run();
  // Stops every reactor; safe from any thread and from signal-handling code on a reactor.
  void stop() noexcept;
  // Joins the threads started by start().
  void join();
  // After join(): destroys every suspended coroutine and pending handler on every reactor,
  // including those that destroying others posts to any reactor, while every reactor's
  // services still exist, so that objects they refer to can then be destroyed safely. The
  // pool cannot run again.
  void shutdown();

 private:
  // Bounds the shutdown rounds (a round per level of cross-reactor awaits still suspended).
  static constexpr unsigned kMaxShutdownRounds = 64;

  std::vector<std::unique_ptr<Reactor>> reactors_;
  std::vector<std::thread> threads_;
};

}  // namespace cairn::io
