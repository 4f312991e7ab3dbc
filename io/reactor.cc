#include "io/reactor.h"

#include "base/assert.h"

namespace cairn::io {
namespace {
thread_local Reactor* t_current = nullptr;
}

Reactor::Reactor(unsigned index, unsigned disk_queue_depth)
    : index_(index), context_(1), disk_(std::make_unique<DiskRing>(context_, disk_queue_depth)) {}

Reactor* Reactor::current() noexcept {
  return t_current;
}

void Reactor::run() {
  CAIRN_ASSERT(t_current == nullptr);
  t_current = this;
  auto guard = asio::make_work_guard(context_);
  context_.run();
  t_current = nullptr;
}

ReactorPool::ReactorPool(unsigned count, unsigned disk_queue_depth) {
  if (count == 0) {
    count = std::max(1u, std::thread::hardware_concurrency());
  }
  reactors_.reserve(count);
  for (unsigned i = 0; i < count; ++i) {
    reactors_.push_back(std::make_unique<Reactor>(i, disk_queue_depth));
  }
}

ReactorPool::~ReactorPool() {
  stop();
  join();
  shutdown();
}

void ReactorPool::shutdown() {
  CAIRN_ASSERT(threads_.empty());
  for (auto& r : reactors_) {
    r->context_.shutdown_services();
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
