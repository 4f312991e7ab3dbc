// SimBlockFile: an in-memory disk with a volatile write cache, for the crash harness
// (FoundationDB's AsyncFileNonDurable; LevelDB's fault-injection Env).
//
// Two images are kept: what a reader sees now (every completed write) and what survives a
// power cut (the durable image). write() changes only the first and remembers the write;
// sync() makes every remembered write durable. power_cut() throws the volatile state away
// the way a real disk might: each unsynced write is dropped, kept, or torn (a random subset
// of its 512-byte sectors reaches the platter), in a pattern chosen by the seed, and writes
// are applied in the order they were issued. corrupt_sector() flips bytes of one sector in
// both images, for checksum tests. fail_writes_after() injects I/O errors.
//
// Like an O_DIRECT file, offsets and lengths must be multiples of kAlignment and buffers
// aligned to it (checked, so callers' O_DIRECT bugs show up in simulation). Size changes by
// grow() are durable at once.
//
// Operations complete immediately (no suspension) unless set_yield(true). Threading: one thread at
// a time; the test calls power_cut() while no operation is in flight. After a cut, users of the
// file must be reopened (their in-memory state is from before the cut).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "io/block_file.h"

namespace cairn::io {

class SimBlockFile final : public BlockFile {
 public:
  static constexpr uint64_t kSectorBytes = 512;

  enum class CutMode {
    drop_all,  // every unsynced write is lost
    random,    // each unsynced write is dropped, kept whole or torn, by the seed
  };

  // `max_size_bytes`: grow() beyond it fails with errc::no_space (0 = unbounded).
  explicit SimBlockFile(uint64_t size_bytes = 0, uint64_t max_size_bytes = 0);

  Task<Result<void>> read(uint64_t offset_bytes, std::span<std::byte> out) override;
  Task<Result<void>> write(uint64_t offset_bytes, std::span<const std::byte> data) override;
  Task<Result<void>> sync() override;
  [[nodiscard]] uint64_t size_bytes() const override { return current_.size(); }
  Task<Result<void>> grow(uint64_t new_size_bytes) override;

  // Simulates losing power; returns how many unsynced writes were affected.
  std::size_t power_cut(uint64_t seed, CutMode mode = CutMode::random);
  // Damages the sector that holds `offset_bytes` in both images.
  void corrupt_sector(uint64_t offset_bytes);
  // After `writes` more successful writes, every write and sync fails with errc::io_error
  // (std::nullopt: never).
  void fail_writes_after(std::optional<uint64_t> writes) { writes_before_failure_ = writes; }

  // Counters for tests.
  [[nodiscard]] uint64_t reads() const noexcept { return reads_; }
  [[nodiscard]] uint64_t writes() const noexcept { return writes_; }
  [[nodiscard]] uint64_t syncs() const noexcept { return syncs_; }
  [[nodiscard]] std::size_t unsynced_writes() const noexcept { return pending_.size(); }
  // When on, every operation first yields to the executor (asio::post), so concurrent
  // callers interleave at each I/O like they do on a real disk.
  void set_yield(bool on) noexcept { yield_ = on; }
  // When false, buffer addresses are not checked (for tests that use unaligned vectors).
  void set_check_buffer_alignment(bool on) noexcept { check_buffer_alignment_ = on; }

 private:
  struct PendingWrite {
    uint64_t offset_bytes;
    std::vector<std::byte> data;
  };

  [[nodiscard]] bool valid_range(uint64_t offset_bytes, std::size_t length,
                                 const void* buffer) const noexcept;
  [[nodiscard]] bool take_write_budget() noexcept;

  std::vector<std::byte> current_;
  std::vector<std::byte> durable_;
  std::vector<PendingWrite> pending_;
  uint64_t max_size_bytes_;
  std::optional<uint64_t> writes_before_failure_;
  uint64_t reads_ = 0;
  uint64_t writes_ = 0;
  uint64_t syncs_ = 0;
  bool check_buffer_alignment_ = true;
  bool yield_ = false;
};

}  // namespace cairn::io
