#include "io/block_file.h"

namespace cairn::io {

Task<Result<void>> write_all(BlockFile& file, std::span<const BlockWrite> writes) {
  if (writes.size() == 1) {
    co_return co_await file.write(writes[0].offset_bytes, writes[0].data);
  }
  // Each write runs in its own coroutine on this (single-threaded) executor; the last one to
  // finish wakes the caller, whose frame holds `fan` until every write has finished.
  struct Fanout {
    explicit Fanout(const asio::any_io_executor& ex)
        : done(ex, asio::steady_timer::time_point::max()) {}
    std::size_t pending = 0;
    Result<void> result;
    asio::steady_timer done;
  };
  auto ex = co_await asio::this_coro::executor;
  Fanout fan(ex);
  fan.pending = writes.size();
  for (const BlockWrite& w : writes) {
    asio::co_spawn(
        ex,
        [&file, &fan, w]() -> Task<void> {
          auto r = co_await file.write(w.offset_bytes, w.data);
          if (!r && fan.result) {
            fan.result = r;
          }
          if (--fan.pending == 0) {
            fan.done.cancel();
          }
        },
        asio::detached);
  }
  while (fan.pending > 0) {
    co_await fan.done.async_wait(use_tuple);
  }
  co_return fan.result;
}

}  // namespace cairn::io
