// Session: the full feature phase of one iSCSI connection (RFC 7143; one connection per
// session, ErrorRecoveryLevel 0).
//
// A reader coroutine decodes PDUs. SCSI commands gather their Data-Out bytes (immediate data,
// unsolicited Data-Out up to FirstBurstLength, then R2T-solicited bursts of MaxBurstLength,
// at most MaxOutstandingR2T at a time) straight into one buffer per command, then run
// concurrently through scsi::Device::execute. Each completion is answered with Data-In PDUs of
// at most the initiator's MaxRecvDataSegmentLength, the status collapsed into the last one when
// GOOD, or a SCSI Response (with sense and U/O residuals). A single writer gathers every ready
// PDU into one write. NOP-Out is answered and NOP-In sent as keepalive after an idle interval;
// Text (SendTargets), Logout, task management (ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL
// UNIT RESET, TARGET WARM RESET, TARGET COLD RESET) and Reject are handled here too. The CmdSN
// window is `queue_depth` commands: MaxCmdSN = ExpCmdSN + queue_depth - 1 - (commands in progress).
//
// A discovery session runs here with no Device: it serves Text, NOP and Logout; a SCSI command
// is rejected.
//
// Memory: command slots (with their data buffers) are reused, so a warmed-up session does not
// allocate per command.
//
// Threading: everything runs on `executor` (the volume's owner reactor for a normal session),
// which must be a single thread and the stream's executor. Device, Directory and TargetOptions
// are borrowed for the whole run().
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "target/iscsi/login.h"
#include "target/iscsi/pdu.h"
#include "target/iscsi/window.h"
#include "target/scsi/device.h"

namespace cairn::target::iscsi {

struct SessionOptions {
  uint32_t queue_depth = 128;
  std::chrono::seconds nop_interval{30};   // 0: no keepalive
  uint32_t max_command_bytes = 16u << 20;  // longest Data-Out transfer a command may carry
};

class Session {
 public:
  Session(ByteStream& stream, asio::any_io_executor executor, LoginResult login,
          scsi::Device* device, scsi::Nexus nexus, const TargetOptions& target,
          const Directory& directory, std::string portal, SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Serves PDUs until Logout, end of stream, a protocol error that ends the connection, or a
  // write error. Returns once every command it started has finished, after closing the stream.
  Task<void> run();

 private:
  struct Cmd;
  struct Out;

  enum class ReadOutcome : uint8_t { pdu, skip, end };
  Task<ReadOutcome> read_pdu();
  Task<bool> read_data(std::span<std::byte> dest, uint32_t length);
  bool dispatch();
  void on_command();
  void on_data_out();
  void on_nop_out();
  void on_text();
  void on_logout();
  void on_tmf();
  Task<void> tmf_after(std::vector<Cmd*> waiting, uint32_t itt, TmfResponse response, bool last);
  Task<void> execute(Cmd* cmd);
  Task<void> keepalive();
  Task<void> writer();
  Task<void> wait_progress();
  void notify();

  bool accept_cmd_sn(bool immediate, uint32_t cmd_sn);
  SnFields sn(bool advance_stat_sn);
  void solicit(Cmd& cmd);
  void maybe_execute(Cmd& cmd);
  void respond(Cmd& cmd);
  void respond_status(uint32_t itt, scsi::Status status, std::vector<uint8_t> sense, uint32_t edtl);
  void abort(Cmd& cmd);
  void fail_task(Cmd& cmd, const char* why);
  void send(Out* out);
  Out* control(const Bhs& h, std::span<const std::byte> data);
  void queue_reject(RejectReason reason);
  Cmd* take_cmd();
  void free_cmd(Cmd* cmd);
  void end(const char* why);

  ByteStream& stream_;
  asio::any_io_executor executor_;
  LoginResult login_;
  SessionParams params_;
  scsi::Device* device_;
  scsi::Nexus nexus_;
  const TargetOptions& target_;
  const Directory& directory_;
  std::string portal_;
  SessionOptions options_;

  // The PDU being read.
  Bhs h_;
  std::vector<uint8_t> ahs_;
  std::vector<std::byte> scratch_;  // payloads of PDUs other than commands and Data-Out
  Cmd* data_cmd_ = nullptr;         // the command the current payload went to

  uint32_t stat_sn_;
  CmdWindow window_;  // non-immediate commands hold a place until answered
  uint32_t next_ttt_ = 1;
  std::vector<std::unique_ptr<Cmd>> cmds_;
  std::vector<Cmd*> free_cmds_;
  std::unordered_map<uint32_t, Cmd*> active_;  // by ITT, until answered
  unsigned executing_ = 0;
  unsigned pending_ = 0;  // Logout and task management responses waiting for commands
  std::vector<std::unique_ptr<Out>> outs_;
  std::vector<Out*> free_outs_;
  std::deque<Out*> queue_;
  std::vector<asio::const_buffer> batch_;
  bool writing_ = false;
  bool failed_ = false;
  bool closing_ = false;  // logout answered or connection ending: read no more
  std::vector<asio::steady_timer*> waiters_;
  asio::steady_timer keepalive_timer_;
  std::chrono::steady_clock::time_point last_heard_;
  bool keepalive_running_ = false;
  uint32_t ping_ttt_ = kReservedTag;     // the NOP-In ping awaiting an answer
  std::vector<std::byte> text_pending_;  // the rest of a Text Response sent in parts
  uint32_t text_ttt_ = kReservedTag;
};

}  // namespace cairn::target::iscsi
