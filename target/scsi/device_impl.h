// The Device's internals, shared by its translation units: device.cc (dispatch, unit
// attentions, reads and writes, thin provisioning) and device_info.cc (INQUIRY and its VPD
// pages, READ CAPACITY, MODE SENSE/SELECT, REPORT LUNS, REPORT SUPPORTED OPERATION CODES).
// Not part of the interface: only target/scsi/ includes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "target/scsi/big_endian.h"
#include "target/scsi/device.h"
#include "target/scsi/identity.h"
#include "target/scsi/reservations.h"
#include "target/scsi/sense.h"
#include "target/scsi/xcopy.h"

namespace cairn::target::scsi {

[[nodiscard]] Response check_condition(SenseKey key, Asc asc);
// ILLEGAL REQUEST with a field pointer into the CDB (or the parameter list).
[[nodiscard]] Response invalid_field(uint16_t byte, std::optional<uint8_t> bit = {},
                                     bool in_cdb = true);
[[nodiscard]] Response invalid_opcode();
// MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION, INFORMATION = the first differing byte.
[[nodiscard]] Response miscompare(uint64_t offset_bytes, uint32_t transfer_bytes);

// Copies `data` to data_in, truncated to the allocation length and the initiator's
// expected length, and reports the bytes the command transfers.
[[nodiscard]] Response send_data(std::span<const uint8_t> data, uint32_t allocation_length,
                                 const Request& request, std::vector<std::byte>& data_in);

class Device::Impl final : public UnitAttentionSink {
 public:
  Impl(blockmap::Volume& volume, io::MetaStore& meta, DeviceOptions options);

  Task<Response> execute(const Nexus& nexus, const Request& request,
                         std::vector<std::byte>& data_in);
  void attach(const Nexus& nexus, std::function<void()> drop);
  void detach(const Nexus& nexus);
  void lun_reset(const Nexus& from);
  void clear_task_set(const Nexus& from);
  void target_cold_reset(const Nexus& from);
  void abandon(const Nexus& nexus);

  void post(uint64_t nexus_id, Asc asc) override;
  void post_all_except(uint64_t nexus_id, Asc asc) override;

  blockmap::Volume& volume_;
  io::MetaStore& meta_;
  DeviceOptions options_;
  Identity identity_;
  std::unique_ptr<Reservations> reservations_;
  std::unique_ptr<CopyManager> copies_;

 private:
  friend class Device;
  // Geometry, fixed at open (a resize is reported through CAPACITY DATA HAS CHANGED).
  [[nodiscard]] uint32_t block_bytes() const noexcept { return volume_.block_size_bytes(); }
  [[nodiscard]] uint64_t blocks() const noexcept {
    return volume_.size_bytes() / volume_.block_size_bytes();
  }
  // log2(logical blocks per physical block): a physical block is a chunk.
  [[nodiscard]] uint8_t lbppb_exponent() const noexcept;
  [[nodiscard]] uint32_t max_transfer_blocks() const noexcept {
    return options_.max_transfer_bytes / block_bytes();
  }

  Task<Response> dispatch(const Nexus& nexus, const Request& request,
                          std::vector<std::byte>& data_in);

  // device.cc: block commands.
  Task<Response> read(const Request& r, std::vector<std::byte>& data_in);
  Task<Response> write(const Request& r);
  Task<Response> verify(const Request& r);
  Task<Response> write_same(const Request& r);
  Task<Response> unmap(const Request& r);
  Task<Response> compare_and_write(const Request& r);
  Task<Response> orwrite(const Request& r);
  Task<Response> synchronize_cache(const Request& r);
  Task<Response> prefetch(const Request& r);
  Task<Response> get_lba_status(const Request& r, std::vector<std::byte>& data_in);
  Task<Response> sanitize(const Nexus& nexus, const Request& r);
  // The background pass of a SANITIZE over every LBA (sanitize_ holds its state).
  Task<void> run_sanitize();
  // NOT READY / SANITIZE IN PROGRESS with the progress indication.
  [[nodiscard]] Response sanitize_in_progress() const;
  Response request_sense(const Nexus& nexus, const Request& r, std::vector<std::byte>& data_in);
  Response start_stop_unit(const Request& r);
  Response read_defect_data(const Request& r, std::vector<std::byte>& data_in);
  // Fills a range with one repeated block (WRITE SAME, SANITIZE OVERWRITE); zeroes unmap
  // when `unmap` is set.
  Task<Result<void>> fill(uint64_t lba, uint64_t count, std::span<const std::byte> block,
                          bool unmap, bool fua);
  [[nodiscard]] std::optional<Response> check_range(uint64_t lba, uint64_t count, uint64_t limit,
                                                    uint16_t count_byte) const;
  // The volume error of a command as sense data.
  [[nodiscard]] Response volume_error(std::error_code ec, bool writing) const;

  // device_info.cc.
  Response inquiry(const Nexus& nexus, const Request& r, std::vector<std::byte>& data_in);
  Response read_capacity10(const Request& r, std::vector<std::byte>& data_in);
  Response read_capacity16(const Request& r, std::vector<std::byte>& data_in);
  Response mode_sense(const Request& r, std::vector<std::byte>& data_in);
  Response mode_select(const Nexus& nexus, const Request& r);
  Response report_luns(const Request& r, std::vector<std::byte>& data_in);
  Response report_supported_opcodes(const Request& r, std::vector<std::byte>& data_in);
  [[nodiscard]] static bool is_supported(uint8_t opcode) noexcept;
  [[nodiscard]] std::vector<uint8_t> vpd_page(const Nexus& nexus, uint8_t page) const;
  // Appends the mode page `page` (0x3F: all) for page control `pc` to `out`; false when the
  // page is not supported.
  bool mode_pages(uint8_t page, uint8_t pc, std::vector<uint8_t>& out) const;

  // Why the medium may not be written now: DATA PROTECT for a read-only volume or the
  // control mode page's SWP; nothing when writes are allowed.
  [[nodiscard]] std::optional<Response> write_protected() const;

  std::unordered_map<uint64_t, std::deque<Asc>> attentions_;  // per nexus, bounded below
  // Control mode page SWP (software write protect), set by MODE SELECT; a LUN reset clears it.
  bool software_write_protect_ = false;
  // Connections to drop on a TARGET COLD RESET, per nexus.
  std::unordered_map<uint64_t, std::function<void()>> drops_;

  // A running SANITIZE (SBC-4 4.32): every other command but INQUIRY, REPORT LUNS and
  // REQUEST SENSE is NOT READY / SANITIZE IN PROGRESS until it ends. It runs as its own
  // coroutine, paced by options_.sanitize_bytes_per_second; commands sent with IMMED 0 wait
  // for it as `waiters`, unless their nexus abandons them.
  struct SanitizeWaiter {
    uint64_t nexus_id = 0;
    asio::steady_timer* wake = nullptr;
    bool abandoned = false;
    Result<void> result;  // how the sanitize ended
  };
  struct Sanitize {
    uint8_t service_action = 0;
    std::vector<std::byte> block;  // the block every LBA gets (zeroes: unmapped)
    bool unmap = false;
    uint64_t next_lba = 0;
    uint64_t total = 0;
    bool cancel = false;
    std::vector<SanitizeWaiter*> waiters;
    std::vector<asio::steady_timer*> on_end;  // background_ended() waits, woken once it ends
  };
  std::unique_ptr<Sanitize> sanitize_;
};

// Block Limits VPD (0xB0) values the commands enforce.
inline constexpr uint32_t kMaxUnmapBlocks = 1u << 20;       // MAXIMUM UNMAP LBA COUNT
inline constexpr uint32_t kMaxUnmapDescriptors = 256;       // ... BLOCK DESCRIPTOR COUNT
inline constexpr uint32_t kMaxCompareAndWriteBlocks = 255;  // MAXIMUM COMPARE AND WRITE LENGTH

// At most this many unit attentions queue per nexus; older ones are dropped (SAM-5 allows
// reporting only the highest-priority condition when the queue overflows).
inline constexpr size_t kMaxAttentions = 16;

}  // namespace cairn::target::scsi
