// Transmission: the transmission phase of one NBD connection (proto.md "Transmission phase").
//
// One reader coroutine decodes requests and starts a handler per request; up to
// `max_inflight` requests run at once, and when that many are in flight the reader stops
// reading (back-pressure through TCP). Handlers finish in any order and hand their replies to
// a single writer coroutine, so reply bytes never interleave. A request whose header cannot be
// framed (bad magic, a write payload over the maximum) closes the connection with a log line;
// every other bad request gets its proper NBD error.
//
// Memory: request buffers come from a per-connection pool of `max_inflight` jobs that keep
// their capacity, so a warmed-up connection does not allocate per request.
//
// Threading: everything runs on the volume's owner executor, which must be the executor of
// `stream` and a single thread (a reactor). The Volume is borrowed for the whole run().
#pragma once

#include <deque>
#include <memory>
#include <vector>

#include "blockmap/volume.h"
#include "target/nbd/byte_stream.h"
#include "target/nbd/protocol.h"

namespace cairn::target::nbd {

class Transmission {
 public:
  Transmission(ByteStream& stream, blockmap::Volume& volume, const Session& session,
               unsigned max_inflight);
  ~Transmission();
  Transmission(const Transmission&) = delete;
  Transmission& operator=(const Transmission&) = delete;

  // Serves requests until NBD_CMD_DISC, end of stream, a framing error or a write error;
  // returns once every request it started has finished, after closing the stream.
  Task<void> run();

 private:
  struct Job;

  Task<void> handle(Job* job);
  Task<void> execute(Job& job);
  Task<void> read_command(Job& job);
  Task<void> block_status_command(Job& job);
  Task<void> writer();
  Task<void> wait_for_progress();
  Task<bool> read_payload(Job& job);
  Task<void> drain();

  void reply(Job* job);
  void build_simple_reply(Job& job);
  void build_structured_read(Job& job);
  void build_structured_error(Job& job);
  void build_block_status(Job& job);
  Job* take_job();
  void free_job(Job* job) noexcept;
  void notify() noexcept;

  ByteStream& stream_;
  blockmap::Volume& volume_;
  Session session_;
  const unsigned max_inflight_;
  std::vector<std::unique_ptr<Job>> jobs_;  // every job ever made; at most max_inflight_
  std::vector<Job*> free_;
  std::deque<Job*> replies_;  // at most max_inflight_ entries
  std::vector<asio::const_buffer> batch_;
  unsigned inflight_ = 0;
  bool writing_ = false;
  bool failed_ = false;  // the stream failed; replies are dropped
  bool waiting_ = false;
  asio::steady_timer wake_;
};

}  // namespace cairn::target::nbd
