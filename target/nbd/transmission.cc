#include "target/nbd/transmission.h"

#include <algorithm>
#include <array>

#include "base/assert.h"
#include "base/log.h"
#include "base/request_metrics.h"
#include "io/aligned_buffer.h"

namespace cairn::target::nbd {
namespace {

// Buffers gathered into one write when several replies are ready.
constexpr std::size_t kMaxBatchBuffers = 256;
// BLOCK_STATUS answers at most this much of a request; proto.md lets the server return less.
constexpr uint64_t kMaxStatusQueryBytes = 256ull << 20;
// ... and at most this many descriptors ("SHOULD NOT send more than 2^20").
constexpr std::size_t kMaxDescriptors = 1u << 16;

// The cairn_nbd_* request metrics (docs/operations.md), indexed by NBD command type.
metrics::RequestMetrics& nbd_metrics() {
  static constexpr std::string_view kNames[] = {"read", "write", "disc",         "flush",
                                                "trim", "cache", "write_zeroes", "block_status"};
  static metrics::RequestMetrics m(metrics::Registry::global(), "cairn_nbd", kNames);
  return m;
}

// The ordinary ways a connection ends, which are not worth a log line.
bool is_eof(std::error_code ec) noexcept {
  using boost::system::error_code;
  for (error_code end :
       {error_code(asio::error::eof), error_code(asio::error::connection_reset),
        error_code(asio::error::operation_aborted), error_code(asio::error::bad_descriptor),
        error_code(asio::error::broken_pipe)}) {
    if (ec == std::error_code(end)) {
      return true;
    }
  }
  return false;
}

}  // namespace

struct Transmission::Job {
  Request request;
  Errno error = Errno::ok;
  // The write payload or the read result, in buffer[0, request.length_bytes). Page-aligned,
  // so that a chunk-aligned read's pieces are read from disk straight into it (O_DIRECT needs
  // no bounce buffer) and a write's payload can be handed to the store as it is
  // (Volume::write_from(), which may give the job another buffer in exchange).
  io::AlignedBuffer buffer;
  std::vector<blockmap::Extent> extents;
  std::vector<std::byte> headers;  // reply headers; sized before iov points into it
  std::vector<asio::const_buffer> iov;

  // The buffer's first `length_bytes`, grown to hold them if needed.
  std::span<std::byte> bytes(std::size_t length_bytes) {
    if (buffer.size() < length_bytes) {
      buffer.resize(length_bytes);
    }
    return buffer.span().first(length_bytes);
  }
};

Transmission::Transmission(ByteStream& stream, blockmap::Volume& volume, const Session& session,
                           unsigned max_inflight)
    : stream_(stream),
      volume_(volume),
      session_(session),
      max_inflight_(std::max(1u, max_inflight)),
      wake_(volume.executor()) {
  jobs_.reserve(max_inflight_);
  free_.reserve(max_inflight_);
}

Transmission::~Transmission() = default;

Task<void> Transmission::run() {
  std::array<std::byte, sizeof(RequestHeader)> header{};
  for (;;) {
    while (inflight_ >= max_inflight_ && !failed_) {
      co_await wait_for_progress();  // back-pressure: stop reading until a request finishes
    }
    if (failed_) {
      break;
    }
    if (auto ec = co_await stream_.read(header)) {
      if (!is_eof(ec)) {
        CAIRN_LOG(info, "nbd", "{}: read failed: {}", stream_.peer(), ec.message());
      }
      break;
    }
    auto request = decode_request(header);
    if (!request) {
      CAIRN_LOG(warn, "nbd", "{}: bad request magic, closing connection", stream_.peer());
      break;
    }
    if (request->type == static_cast<uint16_t>(Cmd::disc)) {
      break;  // NBD_CMD_DISC: answer what is in flight, then close
    }
    Job* job = take_job();
    job->request = *request;
    job->error = check_request(*request, session_);
    // No co_await inside && or ||: g++ 12 has evaluated such an operand out of turn.
    if (has_payload(*request)) {
      if (!co_await read_payload(*job)) {
        free_job(job);
        break;
      }
    }
    if (job->error != Errno::ok) {
      reply(job);
      continue;
    }
    asio::co_spawn(volume_.executor(), handle(job), asio::detached);
  }
  co_await drain();
}

// Reads a write payload even when the request will be refused, to stay framed.
Task<bool> Transmission::read_payload(Job& job) {
  const uint32_t length = job.request.length_bytes;
  if (length > session_.maximum_payload_bytes) {
    // proto.md "Block size constraints": a payload this large may be treated as abuse.
    CAIRN_LOG(warn, "nbd", "{}: write payload of {} bytes exceeds {}, closing connection",
              stream_.peer(), length, session_.maximum_payload_bytes);
    co_return false;
  }
  if (auto ec = co_await stream_.read(job.bytes(length))) {
    CAIRN_LOG(info, "nbd", "{}: truncated write payload: {}", stream_.peer(), ec.message());
    co_return false;
  }
  co_return true;
}

Task<void> Transmission::drain() {
  while (inflight_ > 0) {
    co_await wait_for_progress();
  }
  stream_.close();
}

Task<void> Transmission::wait_for_progress() {
  waiting_ = true;
  wake_.expires_at(asio::steady_timer::time_point::max());
  co_await wake_.async_wait(use_tuple);
  waiting_ = false;
}

void Transmission::notify() noexcept {
  if (waiting_) {
    wake_.cancel();
  }
}

Transmission::Job* Transmission::take_job() {
  CAIRN_ASSERT(inflight_ < max_inflight_);
  Job* job = nullptr;
  if (!free_.empty()) {
    job = free_.back();
    free_.pop_back();
  } else {
    jobs_.push_back(std::make_unique<Job>());
    job = jobs_.back().get();
  }
  inflight_++;
  return job;
}

void Transmission::free_job(Job* job) noexcept {
  CAIRN_ASSERT(inflight_ > 0);
  job->iov.clear();
  free_.push_back(job);
  inflight_--;
  notify();
}

Task<void> Transmission::handle(Job* job) {
  auto start = std::chrono::steady_clock::now();
  co_await execute(*job);
  const Request& r = job->request;
  const bool ok = job->error == Errno::ok;
  nbd_metrics().record(r.type, ok, metrics::elapsed_us(start),
                       ok && r.type == static_cast<uint16_t>(Cmd::read) ? r.length_bytes : 0,
                       ok && r.type == static_cast<uint16_t>(Cmd::write) ? r.length_bytes : 0);
  reply(job);
}

Task<void> Transmission::execute(Job& job) {
  const Request& r = job.request;
  const auto cmd = static_cast<Cmd>(r.type);
  blockmap::WriteFlags flags;
  flags.fua = (r.flags & kCmdFlagFua) != 0;
  flags.no_hole = (r.flags & kCmdFlagNoHole) != 0;
  Result<void> result;
  switch (cmd) {
    case Cmd::read:
      co_await read_command(job);
      co_return;
    case Cmd::block_status:
      co_await block_status_command(job);
      co_return;
    case Cmd::write:
      result = co_await volume_.write_from(r.offset_bytes, job.buffer, r.length_bytes, flags);
      break;
    case Cmd::flush:
      result = co_await volume_.flush();
      break;
    case Cmd::trim:
      result = co_await volume_.trim(r.offset_bytes, r.length_bytes, flags);
      break;
    case Cmd::write_zeroes:
      // Zeroing is always fast here (it unmaps), so NBD_CMD_FLAG_FAST_ZERO is honoured.
      result = co_await volume_.write_zeroes(r.offset_bytes, r.length_bytes, flags);
      break;
    case Cmd::cache:
      result = co_await volume_.cache(r.offset_bytes, r.length_bytes);
      break;
    default:
      CAIRN_UNREACHABLE();  // check_request() refused everything else
  }
  job.error = result ? Errno::ok : errno_for(result.error(), cmd);
}

Task<void> Transmission::read_command(Job& job) {
  const Request& r = job.request;
  std::span<std::byte> out = job.bytes(r.length_bytes);
  job.extents.clear();
  if (session_.structured_replies && (r.flags & kCmdFlagDf) == 0 && r.length_bytes > 0) {
    auto status = co_await volume_.block_status(r.offset_bytes, r.length_bytes, job.extents);
    if (!status) {
      job.error = errno_for(status.error(), Cmd::read);
      co_return;
    }
  }
  auto result = co_await volume_.read(r.offset_bytes, out);
  job.error = result ? Errno::ok : errno_for(result.error(), Cmd::read);
}

Task<void> Transmission::block_status_command(Job& job) {
  const Request& r = job.request;
  job.extents.clear();
  uint64_t length = std::min<uint64_t>(r.length_bytes, kMaxStatusQueryBytes);
  auto result = co_await volume_.block_status(r.offset_bytes, length, job.extents);
  job.error = result ? Errno::ok : errno_for(result.error(), Cmd::block_status);
}

void Transmission::reply(Job* job) {
  if (failed_) {
    free_job(job);
    return;
  }
  const auto cmd = static_cast<Cmd>(job->request.type);
  const bool structured =
      session_.structured_replies && (cmd == Cmd::read || cmd == Cmd::block_status);
  if (!structured) {
    build_simple_reply(*job);
  } else if (job->error != Errno::ok) {
    build_structured_error(*job);
  } else if (cmd == Cmd::read) {
    build_structured_read(*job);
  } else {
    build_block_status(*job);
  }
  replies_.push_back(job);
  if (!writing_) {
    writing_ = true;
    asio::co_spawn(volume_.executor(), writer(), asio::detached);
  }
}

Task<void> Transmission::writer() {
  std::vector<Job*> written;
  written.reserve(max_inflight_);
  while (!replies_.empty() && !failed_) {
    batch_.clear();
    written.clear();
    while (!replies_.empty() &&
           (written.empty() || batch_.size() + replies_.front()->iov.size() <= kMaxBatchBuffers)) {
      Job* job = replies_.front();
      replies_.pop_front();
      batch_.insert(batch_.end(), job->iov.begin(), job->iov.end());
      written.push_back(job);
    }
    auto ec = co_await stream_.write(batch_);
    for (Job* job : written) {
      free_job(job);
    }
    if (ec) {
      if (!is_eof(ec)) {
        CAIRN_LOG(info, "nbd", "{}: write failed: {}", stream_.peer(), ec.message());
      }
      failed_ = true;
      stream_.close();  // also wakes the reader
    }
  }
  while (!replies_.empty()) {
    free_job(replies_.front());
    replies_.pop_front();
  }
  writing_ = false;
}

void Transmission::build_simple_reply(Job& job) {
  SimpleReplyHeader header;
  header.magic = kSimpleReplyMagic;
  header.error = static_cast<uint32_t>(job.error);
  header.cookie = job.request.cookie;
  job.headers.clear();
  append_wire(job.headers, header);
  job.iov.assign(1, asio::buffer(job.headers));
  const bool read_ok =
      job.request.type == static_cast<uint16_t>(Cmd::read) && job.error == Errno::ok;
  if (read_ok && job.request.length_bytes > 0) {
    job.iov.push_back(asio::buffer(job.buffer.data(), job.request.length_bytes));
  }
}

void Transmission::build_structured_error(Job& job) {
  StructuredReplyHeader header;
  header.magic = kStructuredReplyMagic;
  header.flags = kReplyFlagDone;
  header.type = static_cast<uint16_t>(ReplyType::error);
  header.cookie = job.request.cookie;
  header.length_bytes = sizeof(ErrorChunk);
  ErrorChunk error;
  error.error = static_cast<uint32_t>(job.error);
  error.message_length = 0;
  job.headers.clear();
  append_wire(job.headers, header);
  append_wire(job.headers, error);
  job.iov.assign(1, asio::buffer(job.headers));
}

// Holes become NBD_REPLY_TYPE_OFFSET_HOLE chunks and data OFFSET_DATA chunks, in order; the
// last chunk carries NBD_REPLY_FLAG_DONE. All data was read before the first byte is sent, so
// no error can follow a content chunk ("Structured replies", NBD_CMD_READ).
void Transmission::build_structured_read(Job& job) {
  const Request& r = job.request;
  if (job.extents.empty() && r.length_bytes > 0) {
    job.extents.push_back({r.offset_bytes, r.length_bytes, true});  // DF: one data chunk
  }
  constexpr std::size_t kPerChunk = sizeof(StructuredReplyHeader) + sizeof(OffsetHole);
  job.headers.resize(std::max<std::size_t>(1, job.extents.size()) * kPerChunk);
  job.iov.clear();
  std::byte* at = job.headers.data();
  auto put = [&](const auto& wire) {
    std::memcpy(at, &wire, sizeof wire);
    job.iov.push_back(asio::buffer(at, sizeof wire));
    at += sizeof wire;
  };
  if (job.extents.empty()) {  // a zero-length read: one empty chunk ends the reply
    StructuredReplyHeader h;
    h.magic = kStructuredReplyMagic;
    h.flags = kReplyFlagDone;
    h.type = static_cast<uint16_t>(ReplyType::none);
    h.cookie = r.cookie;
    h.length_bytes = 0;
    put(h);
    return;
  }
  uint64_t covered = 0;
  for (std::size_t i = 0; i < job.extents.size(); ++i) {
    const blockmap::Extent& e = job.extents[i];
    CAIRN_ASSERT(e.offset_bytes == r.offset_bytes + covered);
    StructuredReplyHeader h;
    h.magic = kStructuredReplyMagic;
    h.flags = i + 1 == job.extents.size() ? kReplyFlagDone : 0;
    h.cookie = r.cookie;
    if (e.allocated) {
      h.type = static_cast<uint16_t>(ReplyType::offset_data);
      h.length_bytes = static_cast<uint32_t>(sizeof(OffsetDataPrefix) + e.length_bytes);
      OffsetDataPrefix prefix;
      prefix.offset_bytes = e.offset_bytes;
      put(h);
      put(prefix);
      job.iov.push_back(asio::buffer(job.buffer.data() + covered, e.length_bytes));
    } else {
      h.type = static_cast<uint16_t>(ReplyType::offset_hole);
      h.length_bytes = sizeof(OffsetHole);
      OffsetHole hole;
      hole.offset_bytes = e.offset_bytes;
      hole.length_bytes = static_cast<uint32_t>(e.length_bytes);
      put(h);
      put(hole);
    }
    covered += e.length_bytes;
  }
  CAIRN_ASSERT(covered == r.length_bytes);
}

void Transmission::build_block_status(Job& job) {
  const bool one = (job.request.flags & kCmdFlagReqOne) != 0;
  std::size_t count = std::min(job.extents.size(), one ? std::size_t{1} : kMaxDescriptors);
  CAIRN_ASSERT(count > 0);
  StructuredReplyHeader header;
  header.magic = kStructuredReplyMagic;
  header.flags = kReplyFlagDone;
  header.type = static_cast<uint16_t>(ReplyType::block_status);
  header.cookie = job.request.cookie;
  header.length_bytes = static_cast<uint32_t>(4 + count * sizeof(BlockStatusDescriptor));
  job.headers.clear();
  append_wire(job.headers, header);
  append_wire(job.headers, big_uint32_t(kBaseAllocationId));
  for (std::size_t i = 0; i < count; ++i) {
    const blockmap::Extent& e = job.extents[i];
    BlockStatusDescriptor d;
    d.length_bytes = static_cast<uint32_t>(e.length_bytes);
    d.status_flags = e.allocated ? 0 : (kStateHole | kStateZero);
    append_wire(job.headers, d);
  }
  job.iov.assign(1, asio::buffer(job.headers));
}

}  // namespace cairn::target::nbd
