// FileRecordLog: a RecordLog in a fixed-size BlockFile, used as a circular journal.
//
// Layout (docs/on-disk-format.md, "Record log"): two 4 KiB superblock slots, then a ring of
// the remaining bytes. sync() writes the records appended since the last sync as one frame
// (a 64-byte header and the records) at the log's tail and syncs the file. A frame carries
// the checksum of the frame before it, its stream position and its first LSN, so replay
// follows one unbroken chain from the head and stops at the first frame that is torn, stale
// (from an earlier lap or an earlier run) or missing. release_before() moves the head forward
// by writing the other superblock slot; the space behind the head is then reused.
//
// A frame starts 64-byte aligned and may share its first 4 KiB block with the frame before;
// that block is rewritten with identical leading bytes, so a torn write never damages a
// synced frame at 512-byte sector granularity.
//
// Threading: one thread (the one the BlockFile's I/O runs on). sync() and release_before()
// are serialized by an AsyncMutex, so callers may overlap them; append() never suspends.
// Lifetimes: the BlockFile is borrowed (or owned if passed as `owned`) and must outlive the
// log. After an I/O error the log is failed: every later call returns the error.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "io/aligned_buffer.h"
#include "io/async_mutex.h"
#include "io/block_file.h"
#include "io/record_log.h"

namespace cairn::io {

class FileRecordLog final : public RecordLog {
 public:
  static constexpr uint64_t kSuperblockBytes = 4096;
  static constexpr uint64_t kRingOffsetBytes = 2 * kSuperblockBytes;
  static constexpr uint64_t kFrameHeaderBytes = 64;
  static constexpr uint32_t kMaxRecordBytes = 16u << 20;

  struct Options {
    // Distinguishes this run's frames from an earlier run's; 0 picks a random one.
    uint64_t nonce = 0;
  };

  // Opens the log in `file` (formatting it if it holds no log) and scans it to find the tail.
  // The ring is the whole file after the superblocks: at least 8 KiB.
  static Task<Result<std::unique_ptr<FileRecordLog>>> open(BlockFile& file,
                                                           std::unique_ptr<BlockFile> owned,
                                                           Options options);
  static Task<Result<std::unique_ptr<FileRecordLog>>> open(BlockFile& file) {
    return open(file, nullptr, Options{});
  }

  // The file size that gives a ring of `capacity_bytes`.
  [[nodiscard]] static uint64_t file_bytes_for(uint64_t capacity_bytes) noexcept;

  Task<Result<void>> replay(const Visitor& visit) override;
  [[nodiscard]] Result<uint64_t> append(std::span<const std::byte> record) override;
  Task<Result<void>> sync() override;
  Task<Result<void>> release_before(uint64_t lsn) override;
  [[nodiscard]] uint64_t capacity_bytes() const override { return ring_bytes_; }
  [[nodiscard]] uint64_t used_bytes() const override;

  // The LSN the next append() gets.
  [[nodiscard]] uint64_t next_lsn() const noexcept { return next_lsn_; }
  // Every record below this LSN is durable.
  [[nodiscard]] uint64_t durable_lsn() const noexcept { return durable_lsn_; }

 private:
  struct Frame {
    uint64_t pos;        // stream position of the header
    uint64_t first_lsn;  // LSN of its first record
    uint32_t records;
    uint32_t payload_bytes;
    uint64_t checksum;  // the header checksum, which the next frame names
    [[nodiscard]] uint64_t end_lsn() const noexcept { return first_lsn + records; }
    [[nodiscard]] uint64_t bytes() const noexcept;
  };
  struct Head {
    uint64_t sequence = 0;
    uint64_t pos = 0;
    uint64_t lsn = 1;
    uint64_t prev_checksum = 0;
    uint64_t released_lsn = 1;
  };

  FileRecordLog(BlockFile& file, std::unique_ptr<BlockFile> owned, uint64_t ring_bytes,
                uint64_t nonce);

  Task<Result<void>> load_superblock();
  Task<Result<void>> write_superblock(const Head& head);
  Task<Result<void>> scan();
  enum class Scan { frame, end };
  Task<Result<Scan>> scan_frame(uint64_t pos, uint64_t lsn, uint64_t prev,
                                std::vector<std::byte>& payload);
  Task<Result<void>> read_stream(uint64_t pos, std::span<std::byte> out);
  Task<Result<void>> write_blocks(uint64_t block_pos, std::span<const std::byte> data);
  Task<Result<void>> write_frame();
  [[nodiscard]] bool fits(uint64_t payload_bytes) const noexcept;
  [[nodiscard]] uint64_t physical(uint64_t pos) const noexcept;

  BlockFile& file_;
  std::unique_ptr<BlockFile> owned_;
  uint64_t ring_bytes_;
  uint64_t nonce_;
  AsyncMutex mutex_;
  bool failed_ = false;
  std::error_code failure_;

  Head head_;
  std::deque<Frame> frames_;     // durable frames from the head on, in order
  uint64_t tail_pos_ = 0;        // where the next frame goes
  uint64_t reserved_bytes_ = 0;  // the frame being written, not yet at tail_pos_
  uint64_t tail_prev_checksum_ = 0;
  uint64_t durable_lsn_ = 1;  // first LSN not yet durable
  AlignedBuffer tail_block_;  // the ring block holding tail_pos_, as on disk

  std::vector<std::byte> staging_;  // appended records not yet in a frame
  uint32_t staging_records_ = 0;
  uint64_t next_lsn_ = 1;

  AlignedBuffer io_buffer_;  // reused for frame writes
  AlignedBuffer window_;     // read window for scans
  uint64_t window_pos_ = 0;
  uint64_t window_bytes_ = 0;
};

}  // namespace cairn::io
