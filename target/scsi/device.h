// scsi::Device: one SCSI logical unit (SBC-4 direct-access block device) over a
// blockmap::Volume. It is the SCSI command layer of every SCSI transport cairn has (today
// iSCSI, target/iscsi/); it knows nothing of PDUs, and the transport knows nothing of CDBs
// beyond their length.
//
// A transport gathers a command's Data-Out bytes (immediate, unsolicited and solicited) into
// one buffer, calls execute(), then sends data_in and the status. Residuals are the
// transport's job: it compares the initiator's expected transfer length with
// Response::transfer_bytes (what the CDB asks to move).
//
// Shared state: one Device per volume per node, shared by every session (I_T nexus) logged in
// to it, so reservations, unit attentions and COMPARE AND WRITE atomicity hold across
// sessions. Persistent reservations are kept in the MetaStore under "scsi-pr/<volume>" and
// survive restarts.
//
// Threading: a Device lives on its volume's owner reactor (Volume::executor()); every method
// must be called there. Commands interleave at suspension points; the volume's range locks
// order overlapping writes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/asio.h"
#include "base/result.h"
#include "blockmap/volume.h"
#include "io/meta_store.h"

namespace cairn::target::scsi {

// SAM-5 status codes.
enum class Status : uint8_t {
  good = 0x00,
  check_condition = 0x02,
  condition_met = 0x04,
  busy = 0x08,
  reservation_conflict = 0x18,
  task_set_full = 0x28,
  task_aborted = 0x40,
};

// One I_T nexus, as SPC-5 names it for iSCSI (RFC 7143 section 4.4.2).
struct Nexus {
  uint64_t id = 0;             // unique per session within this process
  std::string initiator_name;  // "iqn.1994-05.com.redhat:host"
  std::string initiator_port;  // initiator_name + ",i,0x" + 12 hex digits of the ISID
  std::string target_port;     // target name + ",t,0x" + 4 hex digits of the TPGT
  uint16_t relative_target_port = 1;
};

enum class TaskAttribute : uint8_t { simple = 0, ordered = 1, head_of_queue = 2, aca = 3 };

struct Request {
  std::span<const uint8_t> cdb;          // 6 to 260 bytes (an extended CDB AHS appended)
  std::span<const std::byte> data_out;   // every Data-Out byte the initiator sent
  uint32_t expected_transfer_bytes = 0;  // the initiator's expected data transfer length
  bool read_expected = false;            // the initiator's R bit
  bool write_expected = false;           // the initiator's W bit
  TaskAttribute attribute = TaskAttribute::simple;
};

struct Response {
  Status status = Status::good;
  // Fixed-format sense data (SPC-5 4.4.3), empty unless status is check_condition.
  std::vector<uint8_t> sense;
  // Bytes the CDB asks to transfer in its direction (before any truncation to the
  // allocation length or the initiator's expected length). The transport derives the
  // residual from this and expected_transfer_bytes.
  uint32_t transfer_bytes = 0;
};

struct DeviceOptions {
  std::string vendor = "CAIRN";          // INQUIRY T10 vendor id, up to 8 characters
  std::string product = "cairn volume";  // up to 16 characters
  std::string revision = "0001";         // up to 4 characters
  // Block Limits VPD MAXIMUM TRANSFER LENGTH: longer READ/WRITE/VERIFY commands are INVALID
  // FIELD IN CDB. libiscsi's suite writes 65536 blocks of 512 bytes in one command.
  uint32_t max_transfer_bytes = 32u << 20;
  // SANITIZE runs in the background over the whole LBA space at most this fast, so a
  // sanitize does not starve the other volumes of its reactor and store (iscsi.sanitize_rate).
  uint64_t sanitize_bytes_per_second = 16u << 20;
};

class Device {
 public:
  // Loads the volume's persistent reservation state from `meta`. Runs on the volume's owner.
  // `volume` and `meta` must outlive the Device.
  static Task<Result<std::unique_ptr<Device>>> open(blockmap::Volume& volume, io::MetaStore& meta,
                                                    DeviceOptions options = {});
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  [[nodiscard]] blockmap::Volume& volume() noexcept;

  // A session logs in (it gets a POWER ON/RESET unit attention) or out (its RESERVE(6)
  // reservation is released; persistent registrations stay). `drop` ends the session's
  // connection; a TARGET COLD RESET calls it for every nexus but the one that asked.
  void attach(const Nexus& nexus, std::function<void()> drop = {});
  void detach(const Nexus& nexus);

  // Runs one command. data_in is resized to the bytes to send (already truncated to the
  // CDB's allocation length, never beyond expected_transfer_bytes). Never throws; any
  // malformed CDB is a CHECK CONDITION with the sense SPC-5 prescribes.
  Task<Response> execute(const Nexus& nexus, const Request& request,
                         std::vector<std::byte>& data_in);

  // Task management (SAM-5 7). The transport aborts its own queued tasks; these update the
  // logical unit's state: a LUN RESET or TARGET WARM RESET releases RESERVE(6) reservations,
  // resets mode pages to their saved values and queues a unit attention for every other nexus.
  void lun_reset(const Nexus& from);
  // ABORT TASK SET / CLEAR TASK SET from `from`: other nexuses see COMMANDS CLEARED BY
  // ANOTHER INITIATOR only for CLEAR TASK SET.
  void clear_task_set(const Nexus& from);
  // TARGET COLD RESET (SAM-5 6.3.2, RFC 7143 11.5.1): a LUN reset, then every other nexus's
  // connection is dropped. The caller answers the request and then ends its own session.
  void target_cold_reset(const Nexus& from);
  // The transport aborted `nexus`'s tasks (ABORT TASK, a reset, or the session ending): a
  // command of it that waits for a background operation (SANITIZE with IMMED 0) returns now,
  // TASK ABORTED, and the operation goes on.
  void abandon(const Nexus& nexus);

  // A background operation (SANITIZE) runs. It outlives the command and the session that
  // started it, so whoever owns the Device keeps it (and its volume) until !busy(), or
  // cancels it with cancel_background() and then waits for !busy().
  [[nodiscard]] bool busy() const noexcept;
  void cancel_background();
  // Completes when the background operation running now ends (at once if none runs); another
  // may have started by then. On the volume's thread; the Device must outlive the wait.
  Task<void> background_ended();

 private:
  class Impl;
  explicit Device(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cairn::target::scsi
