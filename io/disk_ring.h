// DiskRing: one liburing ring per reactor thread for disk I/O (BRIEF, "Two rings").
//
// Asio's own io_uring ring runs sockets and timers but takes no custom submissions, so disk
// reads, writes and fsyncs go through this second ring. Its completion eventfd is registered
// with io_uring_register_eventfd and read through Asio, so completions are delivered on the
// owning reactor's thread like any other handler.
//
// Threading: a DiskRing belongs to one io_context and must only be used from the thread that
// runs it. Buffers passed to an operation are borrowed until its handler runs.
//
// Bounds: at most `depth` operations are in the kernel at once. Further operations wait in a
// FIFO (back-pressure, not an error); callers bound their own in-flight work.
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <system_error>

#include "base/asio.h"

namespace cairn::io {

class DiskRing {
 public:
  // Throws std::system_error if the ring cannot be created (start-up only).
  DiskRing(asio::io_context& context, unsigned depth);
  ~DiskRing();
  DiskRing(const DiskRing&) = delete;
  DiskRing& operator=(const DiskRing&) = delete;

  // Fixed buffers (io_uring_register_buffers_sparse, kFixedSlots slots). A buffer the owner
  // registers here is pinned once, so reads and writes into it are READ_FIXED/WRITE_FIXED
  // (async_read and async_write choose that themselves) and the kernel does not pin and
  // unpin its pages on every operation. False when the table is full or the kernel refuses
  // (the buffer then works as an ordinary one). The memory must stay valid until
  // unregister_buffer(), which the owner calls before freeing it.
  bool register_buffer(std::span<const std::byte> buffer) noexcept;
  void unregister_buffer(const std::byte* base) noexcept;
  // The slot of the registered buffer that holds all of [p, p + n), or -1.
  [[nodiscard]] int fixed_slot(const void* p, std::size_t n) const noexcept;
  static constexpr unsigned kFixedSlots = 64;

  // Completion signature for all operations: void(std::error_code, std::size_t bytes).
  // A short read or write is reported as success with the byte count; callers decide.
  // Both use the fixed-buffer opcode when the buffer lies in a registered one.
  template <class Token>
  auto async_read(int fd, std::span<std::byte> buffer, uint64_t offset_bytes, Token&& token) {
    const int slot = fixed_slot(buffer.data(), buffer.size());
    return initiate(std::forward<Token>(token), [=](io_uring_sqe* sqe) {
      if (slot >= 0) {
        io_uring_prep_read_fixed(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()),
                                 offset_bytes, slot);
      } else {
        io_uring_prep_read(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()),
                           offset_bytes);
      }
    });
  }

  template <class Token>
  auto async_write(int fd, std::span<const std::byte> buffer, uint64_t offset_bytes,
                   Token&& token) {
    const int slot = fixed_slot(buffer.data(), buffer.size());
    return initiate(std::forward<Token>(token), [=](io_uring_sqe* sqe) {
      if (slot >= 0) {
        io_uring_prep_write_fixed(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()),
                                  offset_bytes, slot);
      } else {
        io_uring_prep_write(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()),
                            offset_bytes);
      }
    });
  }

  // Vectored write of several buffers to one contiguous file range.
  template <class Token>
  auto async_writev(int fd, std::span<const iovec> iov, uint64_t offset_bytes, Token&& token) {
    return initiate(std::forward<Token>(token), [=](io_uring_sqe* sqe) {
      io_uring_prep_writev(sqe, fd, iov.data(), static_cast<unsigned>(iov.size()), offset_bytes);
    });
  }

  // IORING_OP_FALLOCATE: fallocate(fd, mode, offset, length) without blocking the thread.
  template <class Token>
  auto async_fallocate(int fd, int mode, uint64_t offset_bytes, uint64_t length_bytes,
                       Token&& token) {
    return initiate(std::forward<Token>(token), [=](io_uring_sqe* sqe) {
      io_uring_prep_fallocate(sqe, fd, mode, static_cast<off_t>(offset_bytes),
                              static_cast<off_t>(length_bytes));
    });
  }

  // IORING_OP_FSYNC; with `datasync`, IORING_FSYNC_DATASYNC (fdatasync semantics).
  template <class Token>
  auto async_fsync(int fd, bool datasync, Token&& token) {
    return initiate(std::forward<Token>(token), [=](io_uring_sqe* sqe) {
      io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
    });
  }

  [[nodiscard]] unsigned in_flight() const noexcept { return in_flight_; }

  // Completions the watchdog found that no eventfd wake-up announced (see kWatchdogPeriod).
  [[nodiscard]] uint64_t unannounced_completions() const noexcept { return unannounced_; }

  // For tests, the two ways a wake-up has been lost: Asio's stray cancel ending the eventfd
  // read, and completions that arrive with no eventfd signal at all.
  void cancel_eventfd_read_for_test() noexcept;
  void unregister_eventfd_for_test() noexcept;

  // While operations are in the kernel, the ring is also checked this often; completions
  // left unreaped for a whole period are reaped then, so that a lost
  // eventfd wake-up delays their completion instead of leaving them unseen for good. A
  // shutdown once hung so: one fsync's completion sat in the ring, the eventfd read, and
  // nothing ran again (cause not proven: a stray cancel, which the read now survives, or a
  // signal the kernel skipped).
  static constexpr auto kWatchdogPeriod = std::chrono::milliseconds(100);

 private:
  // An operation waiting for or in the kernel. Intrusive so the queue allocates nothing.
  struct Op {
    virtual void prepare(io_uring_sqe* sqe) noexcept = 0;
    virtual void complete(int res) noexcept = 0;
    Op* next = nullptr;

   protected:
    ~Op() = default;
  };

  template <class Prep, class Handler>
  struct OpImpl final : Op {
    OpImpl(Prep p, Handler h) : prep(std::move(p)), handler(std::move(h)) {}
    void prepare(io_uring_sqe* sqe) noexcept override { prep(sqe); }
    void complete(int res) noexcept override {
      std::error_code ec;
      std::size_t n = 0;
      if (res < 0) {
        ec = std::error_code(-res, std::system_category());
      } else {
        n = static_cast<std::size_t>(res);
      }
      Handler h = std::move(handler);
      delete this;
      std::move(h)(ec, n);
    }
    Prep prep;
    Handler handler;
  };

  template <class Token, class Prep>
  auto initiate(Token&& token, Prep prep) {
    return asio::async_initiate<Token, void(std::error_code, std::size_t)>(
        [this](auto handler, Prep p) {
          using H = decltype(handler);
          enqueue(new OpImpl<Prep, H>(std::move(p), std::move(handler)));
        },
        token, std::move(prep));
  }

  void enqueue(Op* op) noexcept;
  void submit_pending() noexcept;
  void schedule_submit() noexcept;
  void arm_eventfd() noexcept;
  void reap() noexcept;
  void arm_watchdog() noexcept;

  asio::io_context& context_;
  io_uring ring_{};
  int event_fd_ = -1;
  asio::posix::stream_descriptor event_stream_;
  uint64_t event_value_ = 0;
  std::shared_ptr<bool> closed_ = std::make_shared<bool>(false);  // set by the destructor
  static constexpr uint64_t kLoggedEventfdErrors = 10;
  uint64_t eventfd_errors_ = 0;
  asio::steady_timer watchdog_;
  bool watchdog_armed_ = false;
  bool stalled_ = false;  // completions were waiting at the last check, with this head
  unsigned stalled_head_ = 0;
  uint64_t unannounced_ = 0;
  unsigned depth_;
  unsigned in_flight_ = 0;
  unsigned prepared_ = 0;  // SQEs prepared but not yet submitted
  bool submit_scheduled_ = false;
  Op* pending_head_ = nullptr;  // FIFO of ops waiting for ring space
  Op* pending_tail_ = nullptr;
  struct Fixed {
    const std::byte* base = nullptr;  // null: a free slot
    std::size_t size = 0;
  };
  std::array<Fixed, kFixedSlots> fixed_{};
  unsigned fixed_used_ = 0;
  bool fixed_enabled_ = false;  // the sparse table is registered
};

}  // namespace cairn::io
