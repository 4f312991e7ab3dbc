#include "target/iscsi/session.h"

#include <algorithm>

#include "base/assert.h"
#include "base/log.h"
#include "target/iscsi/crc32c.h"
#include "target/iscsi/window.h"
#include "target/scsi/sense.h"

namespace cairn::target::iscsi {
namespace {

// Buffers gathered into one write (IOV_MAX is 1024).
constexpr std::size_t kMaxBatchBuffers = 1000;
// Command slots beyond the CmdSN window, for immediate commands.
constexpr uint32_t kImmediateSlots = 16;
// Longest extended CDB (AHS type 1): SPC's 260-byte variable-length CDBs.
constexpr std::size_t kMaxCdbBytes = 260;

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

void put_le32(std::byte* at, uint32_t v) {
  std::memcpy(at, &v, 4);
}

}  // namespace

struct Session::Out {
  std::vector<std::byte> bytes;  // headers, digests, padding and small payloads
  std::vector<asio::const_buffer> iov;
  Cmd* cmd = nullptr;  // a command answered by this Out, freed once written
  bool last = false;   // close the connection once written (Logout)
};

struct Session::Cmd {
  uint32_t itt = 0;
  uint64_t lun = 0;
  std::array<uint8_t, kMaxCdbBytes> cdb{};
  std::size_t cdb_bytes = 16;
  bool read = false;
  bool write = false;
  bool immediate = false;
  scsi::TaskAttribute attribute = scsi::TaskAttribute::simple;
  uint32_t edtl = 0;
  // Data-Out, gathered in place.
  std::unique_ptr<std::byte[]> buffer;
  std::size_t capacity = 0;
  uint32_t wanted = 0;    // bytes to collect (edtl, or 0 when refused up front)
  uint32_t received = 0;  // contiguous bytes collected
  bool oversize = false;  // refused: more data than max_command_bytes
  bool unsolicited_open = false;
  uint32_t unsolicited_data_sn = 0;
  uint32_t next_offset = 0;  // first byte not yet solicited
  uint32_t r2t_sn = 0;
  struct R2t {
    uint32_t ttt, offset, length, received, data_sn;
  };
  std::vector<R2t> r2ts;  // outstanding
  enum class State : uint8_t { collecting, executing, answered } state = State::collecting;
  bool aborted = false;
  std::vector<std::byte> data_in;
  scsi::Response response;
  Out out;
};

Session::Session(ByteStream& stream, asio::any_io_executor executor, LoginResult login,
                 scsi::Device* device, scsi::Nexus nexus, const TargetOptions& target,
                 const Directory& directory, std::string portal, SessionOptions options)
    : stream_(stream),
      executor_(std::move(executor)),
      login_(std::move(login)),
      params_(login_.params),
      device_(device),
      nexus_(std::move(nexus)),
      target_(target),
      directory_(directory),
      portal_(std::move(portal)),
      options_(options),
      stat_sn_(login_.stat_sn),
      window_(login_.exp_cmd_sn, options.queue_depth),
      keepalive_timer_(executor_) {
  options_.queue_depth = std::max(1u, options_.queue_depth);
}

Session::~Session() = default;

SnFields Session::sn(bool advance_stat_sn) {
  SnFields s;
  s.stat_sn = advance_stat_sn ? stat_sn_++ : stat_sn_;
  s.exp_cmd_sn = window_.exp_cmd_sn();
  s.max_cmd_sn = window_.max_cmd_sn();
  return s;
}

Session::Cmd* Session::take_cmd() {
  Cmd* c = nullptr;
  if (!free_cmds_.empty()) {
    c = free_cmds_.back();
    free_cmds_.pop_back();
  } else if (cmds_.size() < options_.queue_depth + kImmediateSlots) {
    cmds_.push_back(std::make_unique<Cmd>());
    c = cmds_.back().get();
  }
  return c;
}

void Session::free_cmd(Cmd* c) {
  c->r2ts.clear();
  c->out.iov.clear();
  free_cmds_.push_back(c);
  notify();
}

Session::Out* Session::control(const Bhs& h, std::span<const std::byte> data) {
  Out* o = nullptr;
  if (!free_outs_.empty()) {
    o = free_outs_.back();
    free_outs_.pop_back();
  } else {
    outs_.push_back(std::make_unique<Out>());
    o = outs_.back().get();
  }
  Pdu pdu;
  pdu.bhs = h;
  pdu.data.assign(data.begin(), data.end());
  o->bytes = encode_pdu(pdu, params_.header_digest, params_.data_digest);
  o->iov.assign(1, asio::buffer(o->bytes));
  o->cmd = nullptr;
  o->last = false;
  return o;
}

void Session::send(Out* out) {
  if (failed_) {
    if (out->cmd != nullptr) {
      free_cmd(out->cmd);
    } else {
      free_outs_.push_back(out);
    }
    return;
  }
  queue_.push_back(out);
  if (!writing_) {
    writing_ = true;
    asio::co_spawn(executor_, writer(), asio::detached);
  }
}

Task<void> Session::writer() {
  std::vector<Out*> written;
  bool last = false;
  while (!queue_.empty() && !failed_) {
    batch_.clear();
    written.clear();
    while (!queue_.empty() &&
           (written.empty() || batch_.size() + queue_.front()->iov.size() <= kMaxBatchBuffers)) {
      Out* o = queue_.front();
      queue_.pop_front();
      batch_.insert(batch_.end(), o->iov.begin(), o->iov.end());
      written.push_back(o);
      last = last || o->last;
    }
    auto ec = co_await stream_.write(batch_);
    for (Out* o : written) {
      if (o->cmd != nullptr) {
        free_cmd(o->cmd);
      } else {
        free_outs_.push_back(o);
      }
    }
    if (ec || last) {
      if (ec && !is_eof(ec)) {
        CAIRN_LOG(info, "iscsi", "{}: write failed: {}", stream_.peer(), ec.message());
      }
      failed_ = true;
      stream_.close();  // also wakes the reader
    }
  }
  while (!queue_.empty()) {
    Out* o = queue_.front();
    queue_.pop_front();
    if (o->cmd != nullptr) {
      free_cmd(o->cmd);
    } else {
      free_outs_.push_back(o);
    }
  }
  writing_ = false;
  notify();
}

Task<void> Session::wait_progress() {
  asio::steady_timer t(executor_, asio::steady_timer::time_point::max());
  waiters_.push_back(&t);
  co_await t.async_wait(use_tuple);
  std::erase(waiters_, &t);
}

void Session::notify() {
  for (asio::steady_timer* t : waiters_) {
    t->cancel();
  }
}

void Session::end(const char* why) {
  CAIRN_LOG(info, "iscsi", "{}: closing connection of '{}': {}", stream_.peer(),
            login_.initiator_name, why);
  closing_ = true;
}

Task<void> Session::run() {
  last_heard_ = std::chrono::steady_clock::now();
  if (options_.nop_interval.count() > 0) {
    keepalive_running_ = true;
    asio::co_spawn(executor_, keepalive(), asio::detached);
  }
  while (!closing_ && !failed_) {
    auto outcome = co_await read_pdu();
    if (outcome == ReadOutcome::end) {
      break;
    }
    last_heard_ = std::chrono::steady_clock::now();
    if (outcome == ReadOutcome::pdu && !dispatch()) {
      break;
    }
  }
  closing_ = true;
  keepalive_timer_.cancel();
  if (device_ != nullptr) {
    device_->abandon(nexus_);  // a SANITIZE goes on without its command
  }
  // Commands in collection will get no more data; executing ones finish (their answers are
  // written while the stream lasts), then the writer drains.
  for (auto it = active_.begin(); it != active_.end();) {
    Cmd* c = it->second;
    if (c->state == Cmd::State::collecting) {
      it = active_.erase(it);
      free_cmd(c);
    } else {
      ++it;
    }
  }
  while (executing_ > 0 || pending_ > 0 || writing_) {
    co_await wait_progress();
  }
  stream_.close();
  while (keepalive_running_) {
    co_await wait_progress();
  }
}

// Reads one PDU: the header into h_/ahs_, the payload into the command buffer it belongs to
// (immediate data, Data-Out) or scratch_. A PDU answered with Reject here is `skip`.
Task<Session::ReadOutcome> Session::read_pdu() {
  if (auto ec = co_await stream_.read(std::as_writable_bytes(std::span(h_.b)))) {
    if (!is_eof(ec)) {
      CAIRN_LOG(info, "iscsi", "{}: read failed: {}", stream_.peer(), ec.message());
    }
    co_return ReadOutcome::end;
  }
  auto verdict = check_request(h_, false, params_.target_max_recv);
  if (verdict.check == HeaderCheck::close) {
    end(verdict.why);
    co_return ReadOutcome::end;
  }
  ahs_.resize(h_.ahs_bytes());
  // No co_await inside && or ||: g++ 12 has evaluated such an operand out of turn.
  if (!ahs_.empty()) {
    if (co_await stream_.read(std::as_writable_bytes(std::span(ahs_)))) {
      co_return ReadOutcome::end;
    }
  }
  if (params_.header_digest) {
    std::array<std::byte, kDigestBytes> digest{};
    if (co_await stream_.read(digest)) {
      co_return ReadOutcome::end;
    }
    uint32_t got = 0;
    std::memcpy(&got, digest.data(), 4);
    if (got != header_digest(h_, ahs_)) {
      end("header digest error");
      co_return ReadOutcome::end;
    }
  }
  const uint32_t length = h_.data_length();
  data_cmd_ = nullptr;
  std::span<std::byte> dest;
  if (length > 0 && verdict.check == HeaderCheck::ok && device_ != nullptr) {
    if (h_.opcode() == Opcode::scsi_command && (h_.b[1] & 0x20) != 0) {
      // Immediate data lands in the slot the command will use.
      const uint32_t edtl = h_.expected_length();
      if (edtl <= options_.max_command_bytes && length <= edtl) {
        if (Cmd* c = take_cmd()) {
          if (c->capacity < edtl) {
            c->buffer = std::make_unique_for_overwrite<std::byte[]>(edtl);
            c->capacity = edtl;
          }
          dest = std::span(c->buffer.get(), length);
          data_cmd_ = c;
        }
      }
    } else if (h_.opcode() == Opcode::data_out) {
      auto it = active_.find(h_.itt());
      if (it != active_.end()) {
        Cmd& c = *it->second;
        const uint64_t end_at = uint64_t{h_.buffer_offset()} + length;
        if (c.state == Cmd::State::collecting && end_at <= c.wanted) {
          dest = std::span(c.buffer.get() + h_.buffer_offset(), length);
          data_cmd_ = &c;
        }
      }
    }
  }
  if (dest.empty() && length > 0) {
    scratch_.resize(length);
    dest = scratch_;
  }
  const bool ok = co_await read_data(dest, length);
  if (!ok || verdict.check == HeaderCheck::reject) {
    if (data_cmd_ != nullptr && h_.opcode() == Opcode::scsi_command) {
      free_cmd(data_cmd_);
    }
    data_cmd_ = nullptr;
    if (!ok) {
      co_return ReadOutcome::end;
    }
    CAIRN_LOG(info, "iscsi", "{}: rejecting PDU with opcode {}: {}", stream_.peer(),
              static_cast<unsigned>(h_.opcode()), verdict.why);
    queue_reject(verdict.reason);
    co_return ReadOutcome::skip;
  }
  co_return ReadOutcome::pdu;
}

// Reads a payload of `length` bytes into dest, then its padding and data digest.
Task<bool> Session::read_data(std::span<std::byte> dest, uint32_t length) {
  if (length == 0) {
    co_return true;
  }
  if (co_await stream_.read(dest)) {
    co_return false;
  }
  std::array<std::byte, 8> tail{};
  const uint32_t pad = padded(length) - length;
  const uint32_t extra = pad + (params_.data_digest ? kDigestBytes : 0);
  if (extra > 0) {
    if (co_await stream_.read(std::span(tail).first(extra))) {
      co_return false;
    }
  }
  if (params_.data_digest) {
    uint32_t crc = crc32c(dest);
    crc = crc32c(std::span(tail).first(pad), crc);
    uint32_t got = 0;
    std::memcpy(&got, tail.data() + pad, 4);
    if (got != crc) {
      // ErrorRecoveryLevel 0 cannot recover the data: reject it and end the session.
      queue_reject(RejectReason::data_digest_error);
      end("data digest error");
      co_return false;
    }
  }
  co_return true;
}

void Session::queue_reject(RejectReason reason) {
  auto header = std::as_bytes(std::span(h_.b));
  send(control(make_reject(reason, sn(true)), header));
}

bool Session::dispatch() {
  switch (h_.opcode()) {
    case Opcode::scsi_command:
      on_command();
      break;
    case Opcode::data_out:
      on_data_out();
      break;
    case Opcode::nop_out:
      on_nop_out();
      break;
    case Opcode::text_request:
      on_text();
      break;
    case Opcode::logout_request:
      on_logout();
      break;
    case Opcode::task_mgmt_request:
      on_tmf();
      break;
    default:
      CAIRN_UNREACHABLE();  // check_request() refused everything else
  }
  return !closing_ && !failed_;
}

// RFC 7143 section 4.2.2.1: a non-immediate command outside [ExpCmdSN, MaxCmdSN] is ignored.
bool Session::accept_cmd_sn(bool immediate, uint32_t cmd_sn) {
  if (window_.accept(immediate, cmd_sn)) {
    return true;
  }
  CAIRN_LOG(debug, "iscsi", "{}: CmdSN {} outside [{}, {}], ignored", stream_.peer(), cmd_sn,
            window_.exp_cmd_sn(), window_.max_cmd_sn());
  return false;
}

void Session::on_command() {
  Cmd* c = data_cmd_;
  const bool in_place = c != nullptr;
  data_cmd_ = nullptr;
  if (device_ == nullptr) {
    queue_reject(RejectReason::protocol_error);  // SCSI commands in a discovery session
    return;
  }
  const bool immediate = h_.immediate();
  if (!accept_cmd_sn(immediate, h_.cmd_sn())) {
    if (c != nullptr) {
      free_cmd(c);
    }
    return;
  }
  const uint32_t itt = h_.itt();
  if (active_.contains(itt) || itt == kReservedTag) {
    if (c != nullptr) {
      free_cmd(c);
    }
    queue_reject(RejectReason::task_in_progress);
    return;
  }
  if (c == nullptr) {
    c = take_cmd();
  }
  if (c == nullptr) {
    respond_status(itt, scsi::Status::task_set_full, {}, h_.expected_length());
    return;
  }
  c->itt = itt;
  c->lun = h_.lun();
  c->read = (h_.b[1] & 0x40) != 0;
  c->write = (h_.b[1] & 0x20) != 0;
  c->immediate = immediate;
  c->attribute = static_cast<scsi::TaskAttribute>(std::min(h_.b[1] & 7, 3));
  c->edtl = h_.expected_length();
  c->received = 0;
  c->wanted = 0;
  c->oversize = false;
  c->unsolicited_open = false;
  c->unsolicited_data_sn = 0;
  c->next_offset = 0;
  c->r2t_sn = 0;
  c->r2ts.clear();
  c->aborted = false;
  c->state = Cmd::State::collecting;
  std::memcpy(c->cdb.data(), h_.b.data() + 32, 16);
  c->cdb_bytes = 16;
  // An extended CDB AHS (type 1) carries the bytes beyond 16 (RFC 7143 section 11.3.5).
  for (std::size_t at = 0; at + 4 <= ahs_.size();) {
    const std::size_t len = std::size_t{ahs_[at]} << 8 | ahs_[at + 1];
    const uint8_t type = ahs_[at + 2];
    if (at + 3 + len > ahs_.size()) {
      break;
    }
    if (type == 1 && len > 1 && 16 + len - 1 <= kMaxCdbBytes) {
      std::memcpy(c->cdb.data() + 16, ahs_.data() + at + 4, len - 1);
      c->cdb_bytes = 16 + len - 1;
    }
    at += (3 + len + 3) & ~std::size_t{3};
  }
  if (!immediate) {
    window_.hold();
  }
  active_[itt] = c;
  const uint32_t immediate_bytes = h_.data_length();
  if (c->write && c->edtl > 0) {
    if (c->edtl > options_.max_command_bytes) {
      c->oversize = true;  // refused once any unsolicited data has gone by
    } else {
      if (c->capacity < c->edtl) {
        c->buffer = std::make_unique_for_overwrite<std::byte[]>(c->edtl);
        c->capacity = c->edtl;
      }
      c->wanted = c->edtl;
      c->received = std::min(immediate_bytes, c->edtl);
      if (!in_place && c->received > 0) {
        // Immediate data longer than the transfer went to scratch (a rare, odd initiator).
        std::memcpy(c->buffer.get(), scratch_.data(), c->received);
      }
    }
    c->unsolicited_open = !h_.final_bit();
    c->next_offset = c->received;
  }
  maybe_execute(*c);
}

// Sends R2Ts for the data not yet solicited, up to MaxOutstandingR2T at a time.
void Session::solicit(Cmd& c) {
  while (!c.unsolicited_open && c.next_offset < c.wanted &&
         c.r2ts.size() < params_.max_outstanding_r2t) {
    const uint32_t length = std::min(params_.max_burst, c.wanted - c.next_offset);
    Cmd::R2t r{next_ttt_++, c.next_offset, length, 0, 0};
    if (next_ttt_ == kReservedTag) {
      next_ttt_ = 1;
    }
    c.r2ts.push_back(r);
    c.next_offset += length;
    send(control(make_r2t(c.itt, r.ttt, c.lun, c.r2t_sn++, r.offset, r.length, sn(false)), {}));
  }
}

void Session::maybe_execute(Cmd& c) {
  if (c.unsolicited_open) {
    return;
  }
  if (c.received < c.wanted) {
    solicit(c);
    return;
  }
  if (!c.r2ts.empty()) {
    return;
  }
  c.state = Cmd::State::executing;
  executing_++;
  asio::co_spawn(executor_, execute(&c), asio::detached);
}

void Session::on_data_out() {
  Cmd* c = data_cmd_;
  data_cmd_ = nullptr;
  const uint32_t length = h_.data_length();
  auto it = active_.find(h_.itt());
  if (it == active_.end() || it->second->state != Cmd::State::collecting) {
    // An aborted or finished task: the data is dropped (RFC 7143 section 4.2.3.4).
    return;
  }
  Cmd& cmd = *it->second;
  if (c != &cmd && length > 0 && !cmd.oversize) {
    fail_task(cmd, "Data-Out beyond the expected transfer length");
    return;
  }
  const uint32_t offset = h_.buffer_offset();
  if (h_.ttt() == kReservedTag) {
    if (!cmd.unsolicited_open) {
      fail_task(cmd, "unsolicited Data-Out not allowed here");
      return;
    }
    if (h_.data_sn() != cmd.unsolicited_data_sn++) {
      fail_task(cmd, "Data-Out DataSN out of order");
      return;
    }
    if (!cmd.oversize) {
      if (offset != cmd.received || cmd.received + length > params_.first_burst) {
        fail_task(cmd, "unsolicited Data-Out at a wrong offset or beyond FirstBurstLength");
        return;
      }
      cmd.received += length;
      cmd.next_offset = cmd.received;
    }
    if (h_.final_bit()) {
      cmd.unsolicited_open = false;
    }
  } else {
    auto r = std::find_if(cmd.r2ts.begin(), cmd.r2ts.end(),
                          [&](const Cmd::R2t& x) { return x.ttt == h_.ttt(); });
    if (r == cmd.r2ts.end()) {
      fail_task(cmd, "Data-Out with an unknown Target Transfer Tag");
      return;
    }
    if (h_.data_sn() != r->data_sn++) {
      fail_task(cmd, "Data-Out DataSN out of order");
      return;
    }
    if (offset != r->offset + r->received || r->received + length > r->length) {
      fail_task(cmd, "Data-Out outside its R2T");
      return;
    }
    r->received += length;
    cmd.received += length;
    if (h_.final_bit()) {
      if (r->received != r->length) {
        fail_task(cmd, "Data-Out sequence ended early");
        return;
      }
      cmd.r2ts.erase(r);
    }
  }
  if (cmd.oversize) {
    if (!cmd.unsolicited_open) {
      active_.erase(cmd.itt);
      scsi::SenseData sense;
      sense.key = scsi::SenseKey::illegal_request;
      sense.asc = scsi::Asc::invalid_field_in_cdb;
      if (!cmd.immediate) {
        window_.release();
      }
      respond_status(cmd.itt, scsi::Status::check_condition, scsi::encode_fixed(sense), cmd.edtl);
      free_cmd(&cmd);
    }
    return;
  }
  maybe_execute(cmd);
}

// A Data-Out sequence error (RFC 7143 section 7.12.2): at ErrorRecoveryLevel 0 the task cannot
// be recovered, so it ends with CHECK CONDITION (ABORTED COMMAND, DATA PHASE ERROR) and any
// further Data-Out for it is dropped; the session lives on.
void Session::fail_task(Cmd& cmd, const char* why) {
  CAIRN_LOG(info, "iscsi", "{}: task {} failed: {}", stream_.peer(), cmd.itt, why);
  active_.erase(cmd.itt);
  if (!cmd.immediate) {
    window_.release();
  }
  scsi::SenseData sense;
  sense.key = scsi::SenseKey::aborted_command;
  sense.asc = scsi::Asc::data_phase_error;
  respond_status(cmd.itt, scsi::Status::check_condition, scsi::encode_fixed(sense), 0);
  free_cmd(&cmd);
}

Task<void> Session::execute(Cmd* c) {
  scsi::Request request;
  request.cdb = std::span<const uint8_t>(c->cdb.data(), c->cdb_bytes);
  request.data_out = std::span<const std::byte>(c->buffer.get(), c->write ? c->received : 0);
  request.expected_transfer_bytes = c->edtl;
  request.read_expected = c->read;
  request.write_expected = c->write;
  request.attribute = c->attribute;
  c->data_in.clear();
  if (c->lun != 0) {
    // Only LUN 0 exists: SPC-5 answers INQUIRY with "no device here" and everything but
    // REPORT LUNS and REQUEST SENSE with LOGICAL UNIT NOT SUPPORTED.
    const uint8_t op = c->cdb[0];
    if (op == 0x12) {
      c->data_in.assign(std::min<uint32_t>(36, c->edtl), std::byte{0});
      if (!c->data_in.empty()) {
        c->data_in[0] = std::byte{0x7F};
      }
      c->response = {};
      c->response.transfer_bytes = static_cast<uint32_t>(c->data_in.size());
    } else if (op == 0xA0) {
      c->response = co_await device_->execute(nexus_, request, c->data_in);
    } else {
      scsi::SenseData sense;
      sense.key = scsi::SenseKey::illegal_request;
      sense.asc = scsi::Asc::logical_unit_not_supported;
      c->response = {};
      c->response.status = scsi::Status::check_condition;
      c->response.sense = scsi::encode_fixed(sense);
    }
  } else {
    c->response = co_await device_->execute(nexus_, request, c->data_in);
  }
  executing_--;
  if (c->aborted || failed_) {
    // No answer for an aborted task (SAM-5 7.2), nor on a connection that failed.
    if (!c->aborted) {
      active_.erase(c->itt);
      if (!c->immediate) {
        window_.release();
      }
    }
    c->state = Cmd::State::answered;
    free_cmd(c);
    co_return;
  }
  respond(*c);
}

// Builds Data-In PDUs (status collapsed into the last when GOOD) or a SCSI Response.
void Session::respond(Cmd& c) {
  active_.erase(c.itt);
  c.state = Cmd::State::answered;
  if (!c.immediate) {
    window_.release();
  }
  const scsi::Response& r = c.response;
  const uint32_t edtl = c.edtl;
  const uint32_t sent =
      c.read ? static_cast<uint32_t>(std::min<std::size_t>(c.data_in.size(), edtl)) : 0;
  const uint32_t used = c.read ? std::min(sent, r.transfer_bytes) : r.transfer_bytes;
  uint8_t residual_flags = 0;
  uint32_t residual = 0;
  if (r.transfer_bytes > edtl) {
    residual_flags = kResidualOverflow;
    residual = r.transfer_bytes - edtl;
  } else if (used < edtl && (c.read || c.write)) {
    residual_flags = kResidualUnderflow;
    residual = edtl - used;
  } else if (!c.read && !c.write && r.transfer_bytes > 0) {
    residual_flags = kResidualOverflow;
    residual = r.transfer_bytes;
  }
  const bool collapse = r.status == scsi::Status::good && sent > 0;
  const uint32_t segment = std::max(512u, std::min(params_.initiator_max_recv, params_.max_burst));
  const uint32_t pdus = sent == 0 ? 0 : (sent + segment - 1) / segment;
  const std::size_t hd = params_.header_digest ? kDigestBytes : 0;
  const std::size_t per_pdu = kBhsBytes + hd + 3 + kDigestBytes;
  const std::size_t sense_bytes = r.sense.empty() ? 0 : 2 + r.sense.size();
  Out& o = c.out;
  o.bytes.resize(pdus * per_pdu + kBhsBytes + hd + padded(static_cast<uint32_t>(sense_bytes)) +
                 kDigestBytes);
  o.iov.clear();
  o.cmd = &c;
  o.last = false;
  std::byte* at = o.bytes.data();
  auto put_header = [&](const Bhs& h) {
    std::memcpy(at, h.b.data(), kBhsBytes);
    if (params_.header_digest) {
      put_le32(at + kBhsBytes, header_digest(h, {}));
    }
    o.iov.push_back(asio::buffer(at, kBhsBytes + hd));
    at += kBhsBytes + hd;
  };
  auto put_data = [&](const std::byte* data, uint32_t length) {
    o.iov.push_back(asio::buffer(data, length));
    const uint32_t pad = padded(length) - length;
    std::memset(at, 0, pad);
    std::size_t tail = pad;
    if (params_.data_digest) {
      uint32_t crc = crc32c(std::span(data, length));
      crc = crc32c(std::span<const std::byte>(at, pad), crc);
      put_le32(at + pad, crc);
      tail += kDigestBytes;
    }
    if (tail > 0) {
      o.iov.push_back(asio::buffer(at, tail));
      at += tail;
    }
  };
  uint32_t data_sn = 0;
  for (uint32_t offset = 0; offset < sent; offset += segment) {
    const uint32_t length = std::min(segment, sent - offset);
    const bool last = offset + length == sent;
    // A sequence ends at every MaxBurstLength boundary and at the end (F bit).
    const bool burst_end = last || (offset + length) % params_.max_burst == 0;
    uint8_t flags = burst_end ? kDataFinal : 0;
    SnFields s{};
    if (last && collapse) {
      flags |= kDataStatus | residual_flags;
      s = sn(true);
    } else {
      s = sn(false);
    }
    Bhs h = make_data_in(c.itt, c.lun, flags, static_cast<uint8_t>(r.status), data_sn++, offset,
                         residual, s);
    h.set_data_length(length);
    put_header(h);
    put_data(c.data_in.data() + offset, length);
  }
  if (!collapse) {
    Bhs h = make_scsi_response(c.itt, static_cast<uint8_t>(r.status), residual_flags, residual,
                               sn(true), data_sn);
    h.set_data_length(static_cast<uint32_t>(sense_bytes));
    put_header(h);
    if (sense_bytes > 0) {
      std::byte* sense_at = at;
      sense_at[0] = std::byte{static_cast<uint8_t>(r.sense.size() >> 8)};
      sense_at[1] = std::byte{static_cast<uint8_t>(r.sense.size())};
      std::memcpy(sense_at + 2, r.sense.data(), r.sense.size());
      at += sense_bytes;
      put_data(sense_at, static_cast<uint32_t>(sense_bytes));
    }
  }
  CAIRN_ASSERT(at <= o.bytes.data() + o.bytes.size());
  send(&o);
}

void Session::respond_status(uint32_t itt, scsi::Status status, std::vector<uint8_t> sense,
                             uint32_t edtl) {
  std::vector<std::byte> data;
  if (!sense.empty()) {
    data.push_back(std::byte{static_cast<uint8_t>(sense.size() >> 8)});
    data.push_back(std::byte{static_cast<uint8_t>(sense.size())});
    for (uint8_t b : sense) {
      data.push_back(std::byte{b});
    }
  }
  const uint8_t flags = edtl > 0 ? kResidualUnderflow : 0;
  send(control(make_scsi_response(itt, static_cast<uint8_t>(status), flags, edtl, sn(true), 0),
               data));
}

void Session::on_nop_out() {
  if (!accept_cmd_sn(h_.immediate(), h_.cmd_sn())) {
    return;
  }
  if (h_.itt() == kReservedTag) {
    if (h_.ttt() != kReservedTag && h_.ttt() == ping_ttt_) {
      ping_ttt_ = kReservedTag;  // the answer to our keepalive
    }
    return;
  }
  // A ping: echo its data (at most what the initiator accepts).
  const std::size_t echo = std::min<std::size_t>(h_.data_length(), params_.initiator_max_recv);
  send(control(make_nop_in(h_.itt(), kReservedTag, h_.lun(), sn(true)),
               std::span(scratch_).first(h_.data_length() > 0 ? echo : 0)));
}

void Session::on_text() {
  const bool immediate = h_.immediate();
  if (!accept_cmd_sn(immediate, h_.cmd_sn())) {
    return;
  }
  std::vector<std::byte> answer;
  if (h_.ttt() != kReservedTag) {
    if (h_.ttt() != text_ttt_) {
      queue_reject(RejectReason::invalid_pdu_field);
      return;
    }
    answer = std::move(text_pending_);  // the initiator asks for the rest
    text_pending_.clear();
  } else {
    if ((h_.b[1] & 0x40) != 0) {
      queue_reject(RejectReason::command_not_supported);  // multi-PDU Text requests
      return;
    }
    auto keys = parse_text(std::span(scratch_).first(h_.data_length()));
    if (!keys) {
      queue_reject(RejectReason::protocol_error);
      return;
    }
    for (const auto& [k, v] : *keys) {
      if (k == "SendTargets") {
        auto st = send_targets(target_, directory_, v, login_.initiator_name, login_.target_name,
                               portal_);
        answer.insert(answer.end(), st.begin(), st.end());
      } else {
        append_text(answer, k, "NotUnderstood");
      }
    }
  }
  const std::size_t max = params_.initiator_max_recv;
  bool more = answer.size() > max;
  uint32_t ttt = kReservedTag;
  if (more) {
    // Cut at a key boundary where possible, and send the rest when asked (C bit).
    std::size_t cut = max;
    while (cut > 0 && answer[cut - 1] != std::byte{0}) {
      --cut;
    }
    if (cut == 0) {
      cut = max;
    }
    text_pending_.assign(answer.begin() + static_cast<std::ptrdiff_t>(cut), answer.end());
    answer.resize(cut);
    text_ttt_ = next_ttt_++;
    ttt = text_ttt_;
  }
  send(control(make_text_response(h_.itt(), ttt, !more, more, sn(true)), answer));
}

void Session::on_logout() {
  if (!accept_cmd_sn(h_.immediate(), h_.cmd_sn())) {
    return;
  }
  const uint8_t reason = h_.b[1] & 0x7F;
  // 0: close the session, 1: close this connection (the only one), 2: remove it for
  // recovery, which ErrorRecoveryLevel 0 does not do.
  const uint8_t response = reason <= 1 ? 0 : 2;
  const uint32_t itt = h_.itt();
  closing_ = true;
  pending_++;  // run() waits for the response to be queued
  asio::co_spawn(
      executor_,
      [this, itt, response]() -> Task<void> {
        // Commands still running complete first (section 11.14.1).
        while (executing_ > 0) {
          co_await wait_progress();
        }
        Out* o = control(make_logout_response(itt, response, sn(true)), {});
        o->last = true;
        send(o);
        pending_--;
        notify();
      },
      asio::detached);
}

void Session::abort(Cmd& c) {
  active_.erase(c.itt);
  if (!c.immediate) {
    window_.release();
  }
  if (c.state == Cmd::State::collecting) {
    free_cmd(&c);
  } else {
    c.aborted = true;  // execute() frees it when the device returns
    if (device_ != nullptr) {
      device_->abandon(nexus_);  // a SANITIZE goes on without its command
    }
  }
}

void Session::on_tmf() {
  if (!accept_cmd_sn(h_.immediate(), h_.cmd_sn())) {
    return;
  }
  const auto function = static_cast<TmfFunction>(h_.b[1] & 0x7F);
  const uint32_t itt = h_.itt();
  std::vector<Cmd*> waiting;
  auto abort_all = [&] {
    std::vector<Cmd*> all;
    for (auto& [tag, c] : active_) {
      all.push_back(c);
    }
    for (Cmd* c : all) {
      if (c->state == Cmd::State::executing) {
        waiting.push_back(c);
      }
      abort(*c);
    }
  };
  if (device_ == nullptr) {
    send(control(make_tmf_response(itt, TmfResponse::not_supported, sn(true)), {}));
    return;
  }
  TmfResponse response = TmfResponse::complete;
  const bool lun_ok = h_.lun() == 0;
  switch (function) {
    case TmfFunction::abort_task: {
      if (!lun_ok) {
        response = TmfResponse::lun_does_not_exist;
        break;
      }
      auto it = active_.find(h_.ttt());  // Referenced Task Tag
      if (it == active_.end()) {
        response = TmfResponse::task_does_not_exist;
        break;
      }
      Cmd* c = it->second;
      if (c->state == Cmd::State::executing) {
        waiting.push_back(c);
      }
      abort(*c);
      break;
    }
    case TmfFunction::abort_task_set:
    case TmfFunction::clear_task_set:
      if (!lun_ok) {
        response = TmfResponse::lun_does_not_exist;
        break;
      }
      abort_all();
      if (function == TmfFunction::clear_task_set) {
        device_->clear_task_set(nexus_);
      }
      break;
    case TmfFunction::logical_unit_reset:
      if (!lun_ok) {
        response = TmfResponse::lun_does_not_exist;
        break;
      }
      abort_all();
      device_->lun_reset(nexus_);
      break;
    case TmfFunction::target_warm_reset:
      abort_all();
      device_->lun_reset(nexus_);
      break;
    case TmfFunction::target_cold_reset:
      // RFC 7143 11.5.1: answered, then every connection to the target ends, this one too.
      abort_all();
      device_->target_cold_reset(nexus_);
      closing_ = true;
      break;
    case TmfFunction::task_reassign:
      response = TmfResponse::reassignment_not_supported;
      break;
    default:
      response = TmfResponse::not_supported;
      break;
  }
  CAIRN_LOG(debug, "iscsi", "{}: task management function {} -> {}", stream_.peer(),
            static_cast<unsigned>(function), static_cast<unsigned>(response));
  const bool last = function == TmfFunction::target_cold_reset;
  if (waiting.empty()) {
    Out* o = control(make_tmf_response(itt, response, sn(true)), {});
    o->last = last;
    send(o);
    return;
  }
  pending_++;  // run() waits for the response to be queued
  asio::co_spawn(executor_, tmf_after(std::move(waiting), itt, response, last), asio::detached);
}

// The response to an abort follows the end of the aborted tasks (RFC 7143 section 4.2.3.3).
Task<void> Session::tmf_after(std::vector<Cmd*> waiting, uint32_t itt, TmfResponse response,
                              bool last) {
  for (;;) {
    bool busy = false;
    for (Cmd* c : waiting) {
      // A slot freed (and perhaps reused) is no longer the aborted task.
      busy = busy || (c->aborted && c->state == Cmd::State::executing);
    }
    if (!busy) {
      break;
    }
    co_await wait_progress();
  }
  Out* o = control(make_tmf_response(itt, response, sn(true)), {});
  o->last = last;
  send(o);
  pending_--;
  notify();
}

Task<void> Session::keepalive() {
  const auto interval = options_.nop_interval;
  while (!closing_ && !failed_) {
    keepalive_timer_.expires_after(interval);
    auto [ec] = co_await keepalive_timer_.async_wait(use_tuple);
    if (ec || closing_ || failed_) {
      break;
    }
    if (std::chrono::steady_clock::now() - last_heard_ < interval) {
      continue;
    }
    if (ping_ttt_ != kReservedTag) {
      // No answer for a whole interval: the initiator is gone.
      end("no answer to NOP-In");
      stream_.close();
      break;
    }
    ping_ttt_ = next_ttt_++;
    send(control(make_nop_in(kReservedTag, ping_ttt_, 0, sn(false)), {}));
  }
  keepalive_running_ = false;
  notify();
}

}  // namespace cairn::target::iscsi
