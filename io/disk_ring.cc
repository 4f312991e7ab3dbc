#include "io/disk_ring.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/log.h"

namespace cairn::io {

DiskRing::DiskRing(asio::io_context& context, unsigned depth)
    : context_(context), event_stream_(context), watchdog_(context), depth_(depth) {
  CAIRN_ASSERT(depth > 0);
  int rc = io_uring_queue_init(depth, &ring_, 0);
  if (rc < 0) {
    throw std::system_error(-rc, std::system_category(), "io_uring_queue_init");
  }
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) {
    io_uring_queue_exit(&ring_);
    throw std::system_error(errno, std::system_category(), "eventfd");
  }
  rc = io_uring_register_eventfd(&ring_, event_fd_);
  if (rc < 0) {
    ::close(event_fd_);
    io_uring_queue_exit(&ring_);
    throw std::system_error(-rc, std::system_category(), "io_uring_register_eventfd");
  }
  event_stream_.assign(event_fd_);
  // Without it (an old kernel) every buffer is an ordinary one.
  rc = io_uring_register_buffers_sparse(&ring_, kFixedSlots);
  fixed_enabled_ = rc == 0;
  if (!fixed_enabled_) {
    CAIRN_LOG(info, "io", "no fixed buffers for disk I/O: {}",
              std::error_code(-rc, std::system_category()).message());
  }
  arm_eventfd();
}

DiskRing::~DiskRing() {
  // Operations still in the kernel would complete into freed memory; the owner must drain
  // (stop issuing I/O and run the context) before destroying the ring.
  CAIRN_ASSERT(in_flight_ == 0 || context_.stopped());
  *closed_ = true;  // the handlers may still run, after this object is gone
  watchdog_.cancel();
  boost::system::error_code ignored;
  event_stream_.close(ignored);
  io_uring_queue_exit(&ring_);
}

bool DiskRing::register_buffer(std::span<const std::byte> buffer) noexcept {
  if (!fixed_enabled_ || buffer.empty()) {
    return false;
  }
  Fixed* free_slot = nullptr;
  for (Fixed& f : fixed_) {
    if (f.base == buffer.data() && f.size == buffer.size()) {
      return true;
    }
    if (f.base == nullptr && free_slot == nullptr) {
      free_slot = &f;
    }
  }
  if (free_slot == nullptr) {
    return false;
  }
  const auto slot = static_cast<unsigned>(free_slot - fixed_.data());
  iovec iov{const_cast<std::byte*>(buffer.data()), buffer.size()};
  __u64 tag = 0;
  int rc = io_uring_register_buffers_update_tag(&ring_, slot, &iov, &tag, 1);
  if (rc < 0) {
    CAIRN_LOG(warn, "io", "cannot register a {}-byte disk buffer: {}", buffer.size(),
              std::error_code(-rc, std::system_category()).message());
    return false;
  }
  *free_slot = Fixed{buffer.data(), buffer.size()};
  ++fixed_used_;
  return true;
}

void DiskRing::unregister_buffer(const std::byte* base) noexcept {
  for (Fixed& f : fixed_) {
    if (f.base == base && base != nullptr) {
      const auto slot = static_cast<unsigned>(&f - fixed_.data());
      // An empty entry clears the slot; operations already submitted keep their pages.
      iovec iov{nullptr, 0};
      __u64 tag = 0;
      (void)io_uring_register_buffers_update_tag(&ring_, slot, &iov, &tag, 1);
      f = Fixed{};
      --fixed_used_;
      return;
    }
  }
}

int DiskRing::fixed_slot(const void* p, std::size_t n) const noexcept {
  if (fixed_used_ == 0) {
    return -1;
  }
  const auto* b = static_cast<const std::byte*>(p);
  for (std::size_t i = 0; i < fixed_.size(); ++i) {
    const Fixed& f = fixed_[i];
    if (f.base != nullptr && b >= f.base && b + n <= f.base + f.size) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

void DiskRing::enqueue(Op* op) noexcept {
  arm_watchdog();
  if (pending_head_ == nullptr && in_flight_ < depth_) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe != nullptr) {
      op->prepare(sqe);
      io_uring_sqe_set_data(sqe, op);
      ++in_flight_;
      ++prepared_;
      schedule_submit();
      return;
    }
  }
  op->next = nullptr;
  if (pending_tail_ != nullptr) {
    pending_tail_->next = op;
  } else {
    pending_head_ = op;
  }
  pending_tail_ = op;
}

// Submissions made in one pass of the event loop go to the kernel in one io_uring_enter.
void DiskRing::schedule_submit() noexcept {
  if (submit_scheduled_) {
    return;
  }
  submit_scheduled_ = true;
  asio::post(context_, [this] {
    submit_scheduled_ = false;
    if (prepared_ == 0) {
      return;
    }
    int rc = io_uring_submit(&ring_);
    if (rc < 0) {
      // The SQEs stay queued in the ring; the next pass retries. EBUSY/EAGAIN mean the
      // completion queue is full, which reaping fixes.
      CAIRN_LOG(warn, "disk", "io_uring_submit failed: {}",
                std::error_code(-rc, std::system_category()).message());
      schedule_submit();
      return;
    }
    prepared_ = 0;
  });
}

void DiskRing::submit_pending() noexcept {
  while (pending_head_ != nullptr && in_flight_ < depth_) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      break;
    }
    Op* op = pending_head_;
    pending_head_ = op->next;
    if (pending_head_ == nullptr) {
      pending_tail_ = nullptr;
    }
    op->prepare(sqe);
    io_uring_sqe_set_data(sqe, op);
    ++in_flight_;
    ++prepared_;
  }
  if (prepared_ > 0) {
    schedule_submit();
  }
}

// The read ends with operation_aborted when the destructor closes the stream, and also when
// an IORING_OP_ASYNC_CANCEL that Boost 1.81 submits for another descriptor's operation lands
// on it: Asio names the operation to cancel by its address, and the memory of a finished
// operation is reused for the next, so a cancel for a socket that is being closed can hit
// this read (seen at shutdown, when the NBD server closes its connections). Every ending but
// the destructor's re-arms and reaps; a read that stayed unarmed would leave this reactor's
// disk completions unseen and every disk operation on it waiting forever.
void DiskRing::arm_eventfd() noexcept {
  event_stream_.async_read_some(
      asio::buffer(&event_value_, sizeof event_value_),
      [this, closed = closed_](const boost::system::error_code& ec, std::size_t) {
        if (*closed) {
          return;
        }
        if (ec && eventfd_errors_++ < kLoggedEventfdErrors) {
          CAIRN_LOG(warn, "disk", "completion eventfd read ended early ({}); re-arming it",
                    ec.message());
        }
        reap();
        arm_eventfd();
      });
}

void DiskRing::arm_watchdog() noexcept {
  if (watchdog_armed_) {
    return;
  }
  watchdog_armed_ = true;
  watchdog_.expires_after(kWatchdogPeriod);
  watchdog_.async_wait([this, closed = closed_](const boost::system::error_code&) {
    if (*closed) {
      return;
    }
    watchdog_armed_ = false;
    // The eventfd's handler empties the ring whenever it runs: completions that sat here,
    // with the head unmoved, for a whole period were never announced.
    const unsigned ready = io_uring_cq_ready(&ring_);
    const unsigned head = *ring_.cq.khead;
    if (ready > 0 && stalled_ && head == stalled_head_) {
      unannounced_ += ready;
      CAIRN_LOG(warn, "disk", "{} disk completion(s) arrived without a wake-up; reaping them",
                ready);
      reap();
      stalled_ = false;
    } else {
      stalled_ = ready > 0;
      stalled_head_ = head;
    }
    if (in_flight_ > 0 || pending_head_ != nullptr) {
      arm_watchdog();
    }
  });
}

void DiskRing::cancel_eventfd_read_for_test() noexcept {
  boost::system::error_code ignored;
  event_stream_.cancel(ignored);
}

void DiskRing::unregister_eventfd_for_test() noexcept {
  (void)io_uring_unregister_eventfd(&ring_);
}

void DiskRing::reap() noexcept {
  io_uring_cqe* cqe = nullptr;
  // Bounded by the ring size: each pass consumes what the kernel has posted.
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    auto* op = static_cast<Op*>(io_uring_cqe_get_data(cqe));
    int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    CAIRN_ASSERT(op != nullptr);
    CAIRN_ASSERT(in_flight_ > 0);
    --in_flight_;
    op->complete(res);
  }
  submit_pending();
}

}  // namespace cairn::io
