// RecordLog: an append-only log of checksummed records, the building block of every journal
// (the chunk store's index journal, each volume's map journal). Records are opaque bytes.
//
// append() buffers a record in memory and gives it a log sequence number (LSN); sync() writes
// the buffered records and makes them durable. After a crash, replay() returns exactly the
// records that a completed sync() covered, plus possibly some later ones whole; a torn or
// partial record ends the log. Once the owner has persisted its state up to some LSN elsewhere
// (a checkpoint), release_before() lets the log reuse that space.
//
// Bounds: the log has a fixed capacity; append() returns errc::no_space when it is full, which
// tells the owner to checkpoint (back-pressure, not failure).
//
// Threading: a RecordLog is owned by one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>

#include "base/asio.h"
#include "base/result.h"

namespace cairn::io {

class RecordLog {
 public:
  using Visitor = std::function<void(uint64_t lsn, std::span<const std::byte> record)>;

  virtual ~RecordLog() = default;

  // Reads the durable log in LSN order. Call once, right after opening, before appending.
  virtual Task<Result<void>> replay(const Visitor& visit) = 0;
  [[nodiscard]] virtual Result<uint64_t> append(std::span<const std::byte> record) = 0;
  virtual Task<Result<void>> sync() = 0;
  // Records with lsn < `lsn` are no longer needed.
  virtual Task<Result<void>> release_before(uint64_t lsn) = 0;

  [[nodiscard]] virtual uint64_t capacity_bytes() const = 0;
  [[nodiscard]] virtual uint64_t used_bytes() const = 0;
};

// Opens named logs (one per volume, one for the store index). The node wiring in tools/
// decides where they live; blockmap/ only sees this interface.
class LogFactory {
 public:
  virtual ~LogFactory() = default;
  virtual Task<Result<std::unique_ptr<RecordLog>>> open(std::string_view name) = 0;
  virtual Task<Result<void>> remove(std::string_view name) = 0;
};

}  // namespace cairn::io
