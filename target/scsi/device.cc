#include "target/scsi/device.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "base/assert.h"
#include "base/log.h"
#include "blockmap/errors.h"
#include "target/scsi/check_condition.h"
#include "target/scsi/device_impl.h"
#include "target/scsi/opcodes.h"

namespace cairn::target::scsi {
namespace {

// Bytes of pattern WRITE SAME and SANITIZE OVERWRITE write per Volume::write call.
constexpr uint64_t kFillBytes = 1u << 20;
// A SANITIZE advances this much LBA space between pacing checks.
constexpr uint64_t kSanitizeStepBytes = 1u << 20;
// GET LBA STATUS looks at most this many bytes per Volume::block_status call.
constexpr uint64_t kLbaStatusWindowBytes = 64ull << 20;
// PRE-FETCH loads at most this much into the cache; more is not prefetched (still GOOD).
constexpr uint64_t kMaxPrefetchBytes = 64ull << 20;

bool all_zero(std::span<const std::byte> data) noexcept {
  return std::all_of(data.begin(), data.end(), [](std::byte b) { return b == std::byte{0}; });
}

// The CDB length of an opcode's group (SPC-5 4.2.5.1); 0 for groups cairn never accepts.
size_t cdb_length(uint8_t opcode) noexcept {
  switch (opcode >> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 4:
      return 16;
    case 5:
      return 12;
    default:
      return 0;
  }
}

// Commands a pending unit attention does not stop (SAM-5 5.14, SPC-5 7.7 / 6.39).
bool reports_no_attention(uint8_t opcode) noexcept {
  return opcode == op::kInquiry || opcode == op::kReportLuns || opcode == op::kRequestSense;
}

// LBA and block count of a read/write-family CDB.
struct Extent {
  uint64_t lba = 0;
  uint64_t count = 0;
};

Extent rw_extent(std::span<const uint8_t> cdb) noexcept {
  switch (cdb_length(cdb[0])) {
    case 6: {
      uint64_t count = cdb[4];
      return {get24(&cdb[1]) & 0x1FFFFF, count == 0 ? 256 : count};
    }
    case 10:
      return {get32(&cdb[2]), get16(&cdb[7])};
    case 12:
      return {get32(&cdb[2]), get32(&cdb[6])};
    default:
      return {get64(&cdb[2]), get32(&cdb[10])};
  }
}

}  // namespace

Response check_condition(SenseKey key, Asc asc) {
  return check(key, asc);
}

Response invalid_field(uint16_t byte, std::optional<uint8_t> bit, bool in_cdb) {
  return check(SenseKey::illegal_request,
               in_cdb ? Asc::invalid_field_in_cdb : Asc::invalid_field_in_parameter_list, byte,
               in_cdb, bit);
}

Response invalid_opcode() {
  return check(SenseKey::illegal_request, Asc::invalid_command_operation_code, 0);
}

Response miscompare(uint64_t offset_bytes, uint32_t transfer_bytes) {
  SenseData s;
  s.key = SenseKey::miscompare;
  s.asc = Asc::miscompare_during_verify;
  s.information = offset_bytes;
  Response r;
  r.status = Status::check_condition;
  r.sense = encode_fixed(s);
  r.transfer_bytes = transfer_bytes;
  return r;
}

Response send_data(std::span<const uint8_t> data, uint32_t allocation_length,
                   const Request& request, std::vector<std::byte>& data_in) {
  Response r;
  r.transfer_bytes = static_cast<uint32_t>(std::min<size_t>(data.size(), allocation_length));
  size_t n = std::min<size_t>(r.transfer_bytes, request.expected_transfer_bytes);
  data_in.resize(n);
  if (n > 0) {
    std::memcpy(data_in.data(), data.data(), n);
  }
  return r;
}

// ---- Device ----

Device::Device(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Device::~Device() {
  // run_sanitize() uses the Impl: its owner waits for !busy() first (device.h).
  CAIRN_ASSERT(!busy());
}

Task<Result<std::unique_ptr<Device>>> Device::open(blockmap::Volume& volume, io::MetaStore& meta,
                                                   DeviceOptions options) {
  auto impl = std::make_unique<Impl>(volume, meta, std::move(options));
  auto reservations = co_await Reservations::load(meta, volume.name(), *impl);
  if (!reservations) {
    co_return reservations.error();
  }
  impl->reservations_ = std::move(*reservations);
  co_return std::unique_ptr<Device>(new Device(std::move(impl)));
}

blockmap::Volume& Device::volume() noexcept {
  return impl_->volume_;
}
void Device::attach(const Nexus& nexus, std::function<void()> drop) {
  impl_->attach(nexus, std::move(drop));
}
void Device::detach(const Nexus& nexus) {
  impl_->detach(nexus);
}
Task<Response> Device::execute(const Nexus& nexus, const Request& request,
                               std::vector<std::byte>& data_in) {
  return impl_->execute(nexus, request, data_in);
}
void Device::lun_reset(const Nexus& from) {
  impl_->lun_reset(from);
}
void Device::clear_task_set(const Nexus& from) {
  impl_->clear_task_set(from);
}
void Device::target_cold_reset(const Nexus& from) {
  impl_->target_cold_reset(from);
}
void Device::abandon(const Nexus& nexus) {
  impl_->abandon(nexus);
}
bool Device::busy() const noexcept {
  return impl_->sanitize_ != nullptr;
}
void Device::cancel_background() {
  if (impl_->sanitize_) {
    impl_->sanitize_->cancel = true;
  }
}
Task<void> Device::background_ended() {
  if (!impl_->sanitize_) {
    co_return;
  }
  asio::steady_timer wake(impl_->volume_.executor(), asio::steady_timer::time_point::max());
  impl_->sanitize_->on_end.push_back(&wake);
  co_await wake.async_wait(use_tuple);  // run_sanitize() cancels it
}

// ---- Impl: state ----

Device::Impl::Impl(blockmap::Volume& volume, io::MetaStore& meta, DeviceOptions options)
    : volume_(volume),
      meta_(meta),
      options_(std::move(options)),
      identity_(identity_for(volume.name())) {
  copies_ = std::make_unique<CopyManager>(volume_, identity_);
}

uint8_t Device::Impl::lbppb_exponent() const noexcept {
  uint32_t per = volume_.chunk_size_bytes() / block_bytes();
  uint8_t e = 0;
  while (per > 1 && e < 15) {
    per >>= 1;
    ++e;
  }
  return e;
}

void Device::Impl::post(uint64_t nexus_id, Asc asc) {
  auto& q = attentions_[nexus_id];
  if (std::find(q.begin(), q.end(), asc) != q.end()) {
    return;
  }
  if (q.size() >= kMaxAttentions) {
    q.pop_front();
  }
  q.push_back(asc);
}

void Device::Impl::post_all_except(uint64_t nexus_id, Asc asc) {
  for (auto& [id, q] : attentions_) {
    if (id != nexus_id) {
      post(id, asc);
    }
  }
}

void Device::Impl::attach(const Nexus& nexus, std::function<void()> drop) {
  if (drop) {
    drops_[nexus.id] = std::move(drop);
  }
  attentions_[nexus.id].clear();
  post(nexus.id, Asc::power_on_reset);
  reservations_->attach(nexus);
}

void Device::Impl::detach(const Nexus& nexus) {
  abandon(nexus);
  attentions_.erase(nexus.id);
  drops_.erase(nexus.id);
  reservations_->detach(nexus);
}

void Device::Impl::lun_reset(const Nexus& from) {
  reservations_->reset();
  // Mode parameters return to their saved values (SPC-5 7.5.1); only SWP is changeable.
  software_write_protect_ = false;
  // Every nexus sees the reset, the one that asked for it included (SAM-5 6.3.3: the
  // logical unit reset establishes the unit attention for all I_T nexuses).
  for (auto& [id, q] : attentions_) {
    post(id, Asc::bus_device_reset);
  }
  CAIRN_LOG(info, "scsi", "{}: logical unit reset by {}", volume_.name(), from.initiator_port);
}

void Device::Impl::clear_task_set(const Nexus& from) {
  post_all_except(from.id, Asc::commands_cleared_by_another_initiator);
}

void Device::Impl::target_cold_reset(const Nexus& from) {
  lun_reset(from);
  // A drop ends another session, whose detach() edits drops_: collect first.
  std::vector<std::function<void()>> drops;
  for (auto& [id, drop] : drops_) {
    if (id != from.id) {
      drops.push_back(drop);
    }
  }
  CAIRN_LOG(info, "scsi", "{}: target cold reset by {}: dropping {} other session(s)",
            volume_.name(), from.initiator_port, drops.size());
  for (auto& drop : drops) {
    drop();
  }
}

void Device::Impl::abandon(const Nexus& nexus) {
  if (!sanitize_) {
    return;
  }
  for (SanitizeWaiter* w : sanitize_->waiters) {
    if (w->nexus_id == nexus.id && !w->abandoned) {
      w->abandoned = true;
      w->wake->cancel();
    }
  }
}

// ---- Impl: the command path ----

Task<Response> Device::Impl::execute(const Nexus& nexus, const Request& request,
                                     std::vector<std::byte>& data_in) {
  data_in.clear();
  if (request.cdb.empty()) {
    co_return invalid_opcode();
  }
  const uint8_t opcode = request.cdb[0];
  if (!reports_no_attention(opcode)) {
    auto it = attentions_.find(nexus.id);
    if (it != attentions_.end() && !it->second.empty()) {
      Asc asc = it->second.front();
      it->second.pop_front();
      co_return check_condition(SenseKey::unit_attention, asc);
    }
  }
  if (sanitize_ && !reports_no_attention(opcode)) {
    co_return sanitize_in_progress();
  }
  // Handlers read their CDB's fields without bounds checks (big_endian.h): this check covers
  // every field of the opcode's CDB.
  size_t length = cdb_length(opcode);
  if (length == 0 || request.cdb.size() < length) {
    co_return invalid_opcode();
  }
  // NACA (SAM-5 5.2): cairn does not support ACA (NormACA is 0 in INQUIRY).
  if ((request.cdb[length - 1] & 0x04) != 0) {
    co_return invalid_field(static_cast<uint16_t>(length - 1), 2);
  }
  if (reservations_->conflicts(nexus, request.cdb.first(length))) {
    Response r;
    r.status = Status::reservation_conflict;
    co_return r;
  }
  co_return co_await dispatch(nexus, request, data_in);
}

Task<Response> Device::Impl::dispatch(const Nexus& nexus, const Request& r,
                                      std::vector<std::byte>& data_in) {
  std::span<const uint8_t> cdb = r.cdb.first(cdb_length(r.cdb[0]));
  switch (cdb[0]) {
    case op::kTestUnitReady:
      co_return Response{};
    case op::kRequestSense:
      co_return request_sense(nexus, r, data_in);
    case op::kInquiry:
      co_return inquiry(nexus, r, data_in);
    case op::kReportLuns:
      co_return report_luns(r, data_in);
    case op::kReadCapacity10:
      co_return read_capacity10(r, data_in);
    case op::kServiceActionIn16:
      switch (cdb[1] & 0x1F) {
        case op::kSaReadCapacity16:
          co_return read_capacity16(r, data_in);
        case op::kSaGetLbaStatus:
          co_return co_await get_lba_status(r, data_in);
        default:
          co_return invalid_field(1, 4);
      }
    case op::kMaintenanceIn:
      if ((cdb[1] & 0x1F) == op::kSaReportSupportedOpcodes) {
        co_return report_supported_opcodes(r, data_in);
      }
      co_return invalid_field(1, 4);
    case op::kModeSense6:
    case op::kModeSense10:
      co_return mode_sense(r, data_in);
    case op::kModeSelect6:
    case op::kModeSelect10:
      co_return mode_select(nexus, r);
    case op::kRead6:
    case op::kRead10:
    case op::kRead12:
    case op::kRead16:
      co_return co_await read(r, data_in);
    case op::kWrite6:
    case op::kWrite10:
    case op::kWrite12:
    case op::kWrite16:
    case op::kWriteAndVerify10:
    case op::kWriteAndVerify12:
    case op::kWriteAndVerify16:
    case op::kWriteAtomic16:
      co_return co_await write(r);
    case op::kVerify10:
    case op::kVerify12:
    case op::kVerify16:
      co_return co_await verify(r);
    case op::kWriteSame10:
    case op::kWriteSame16:
      co_return co_await write_same(r);
    case op::kUnmap:
      co_return co_await unmap(r);
    case op::kCompareAndWrite:
      co_return co_await compare_and_write(r);
    case op::kOrWrite:
      co_return co_await orwrite(r);
    case op::kSynchronizeCache10:
    case op::kSynchronizeCache16:
      co_return co_await synchronize_cache(r);
    case op::kPrefetch10:
    case op::kPrefetch16:
      co_return co_await prefetch(r);
    case op::kSanitize:
      co_return co_await sanitize(nexus, r);
    case op::kStartStopUnit:
      co_return start_stop_unit(r);
    case op::kReadDefectData10:
    case op::kReadDefectData12:
      co_return read_defect_data(r, data_in);
    case op::kReserve6:
      co_return co_await reservations_->reserve6(nexus, cdb);
    case op::kRelease6:
      co_return co_await reservations_->release6(nexus, cdb);
    case op::kPersistentReserveIn:
      co_return co_await reservations_->persistent_reserve_in(nexus, cdb, data_in);
    case op::kPersistentReserveOut:
      co_return co_await reservations_->persistent_reserve_out(nexus, cdb, r.data_out);
    case op::kExtendedCopy:
      co_return co_await copies_->extended_copy(nexus, cdb, r.data_out);
    case op::kReceiveCopyResults:
      co_return co_await copies_->receive_copy_results(nexus, cdb, data_in);
    default:
      co_return invalid_opcode();
  }
}

std::optional<Response> Device::Impl::write_protected() const {
  if (!volume_.can_write()) {
    return check_condition(SenseKey::data_protect, Asc::write_protected);
  }
  if (software_write_protect_) {
    return check_condition(SenseKey::data_protect, Asc::software_write_protected);
  }
  return std::nullopt;
}

Response Device::Impl::volume_error(std::error_code ec, bool writing) const {
  if (ec == blockmap::errc::out_of_range) {
    // A resize shrank the volume while the command waited.
    return check_condition(SenseKey::illegal_request, Asc::lba_out_of_range);
  }
  if (ec == blockmap::errc::read_only) {
    return check_condition(SenseKey::data_protect, Asc::write_protected);
  }
  if (ec == blockmap::errc::no_space) {
    return check_condition(SenseKey::data_protect, Asc::space_allocation_failed_write_protect);
  }
  CAIRN_LOG(error, "scsi", "{}: {} failed: {}", volume_.name(), writing ? "write" : "read",
            ec.message());
  return writing ? check_condition(SenseKey::medium_error, Asc::write_error)
                 : check_condition(SenseKey::medium_error, Asc::unrecovered_read_error);
}

// LBA OUT OF RANGE past the capacity; INVALID FIELD IN CDB (at `count_byte`) beyond `limit`
// blocks (0: no limit).
std::optional<Response> Device::Impl::check_range(uint64_t lba, uint64_t count, uint64_t limit,
                                                  uint16_t count_byte) const {
  if (lba > blocks() || count > blocks() - lba) {
    return check_condition(SenseKey::illegal_request, Asc::lba_out_of_range);
  }
  if (limit != 0 && count > limit) {
    return invalid_field(count_byte);
  }
  return std::nullopt;
}

Task<Response> Device::Impl::read(const Request& r, std::vector<std::byte>& data_in) {
  std::span<const uint8_t> cdb = r.cdb;
  if (cdb[0] != op::kRead6 && (cdb[1] & 0xE0) != 0) {
    co_return invalid_field(1, 7);  // RDPROTECT: no protection information
  }
  Extent e = rw_extent(cdb);
  uint16_t count_byte = cdb[0] == op::kRead6 ? 4 : cdb[0] == op::kRead16 ? 10 : 7;
  if (auto bad = check_range(e.lba, e.count, max_transfer_blocks(), count_byte)) {
    co_return *bad;
  }
  Response resp;
  resp.transfer_bytes = static_cast<uint32_t>(e.count * block_bytes());
  // Reads go straight into data_in, cut to what the initiator will take.
  data_in.resize(std::min<uint64_t>(resp.transfer_bytes, r.expected_transfer_bytes));
  if (!data_in.empty()) {
    if (auto res = co_await volume_.read(e.lba * block_bytes(), data_in); !res) {
      data_in.clear();
      co_return volume_error(res.error(), false);
    }
  }
  co_return resp;
}

Task<Response> Device::Impl::write(const Request& r) {
  std::span<const uint8_t> cdb = r.cdb;
  const uint8_t opcode = cdb[0];
  const bool verify = opcode == op::kWriteAndVerify10 || opcode == op::kWriteAndVerify12 ||
                      opcode == op::kWriteAndVerify16;
  if (opcode != op::kWrite6 && (cdb[1] & 0xE0) != 0) {
    co_return invalid_field(1, 7);  // WRPROTECT: no protection information
  }
  if (verify && (cdb[1] & 0x06) > 0x02) {
    co_return invalid_field(1, 2);  // BYTCHK 10b and 11b are reserved for WRITE AND VERIFY
  }
  Extent e = rw_extent(cdb);
  uint16_t count_byte = 7;
  bool fua = opcode != op::kWrite6 && (cdb[1] & 0x08) != 0;
  if (opcode == op::kWrite6) {
    count_byte = 4;
  } else if (opcode == op::kWrite16 || opcode == op::kWriteAndVerify16) {
    count_byte = 10;
  } else if (opcode == op::kWrite12 || opcode == op::kWriteAndVerify12) {
    count_byte = 6;
  } else if (opcode == op::kWriteAtomic16) {
    e.count = get16(&cdb[12]);
    count_byte = 12;
    // Whole chunks only (Block Limits VPD ATOMIC ALIGNMENT and GRANULARITY: SBC-4 5.48).
    const uint64_t per = uint64_t{1} << lbppb_exponent();
    if (e.lba % per != 0) {
      co_return invalid_field(2);
    }
    if (e.count % per != 0) {
      co_return invalid_field(12);
    }
  }
  // WRITE AND VERIFY makes the data durable before it could verify it (SBC-4 5.36).
  fua = fua || verify;
  if (auto bad = check_range(e.lba, e.count, max_transfer_blocks(), count_byte)) {
    co_return *bad;
  }
  if (auto bad = write_protected()) {
    co_return *bad;
  }
  Response resp;
  resp.transfer_bytes = static_cast<uint32_t>(e.count * block_bytes());
  // Data beyond the initiator's expected length never arrives (a residual overflow): what
  // did arrive is written, as FCP-4 and RFC 7143 describe.
  auto data = r.data_out.first(std::min<size_t>(r.data_out.size(), resp.transfer_bytes));
  if (!data.empty()) {
    if (auto res = co_await volume_.write(e.lba * block_bytes(), data, {.fua = fua}); !res) {
      co_return volume_error(res.error(), true);
    }
  }
  co_return resp;
}

Task<Response> Device::Impl::verify(const Request& r) {
  std::span<const uint8_t> cdb = r.cdb;
  if ((cdb[1] & 0xE0) != 0) {
    co_return invalid_field(1, 7);  // VRPROTECT
  }
  const uint8_t bytchk = (cdb[1] >> 1) & 0x3;
  if (bytchk == 2) {
    co_return invalid_field(1, 2);
  }
  Extent e = rw_extent(cdb);
  uint16_t count_byte = cdb[0] == op::kVerify16 ? 10 : cdb[0] == op::kVerify12 ? 6 : 7;
  if (auto bad = check_range(e.lba, e.count, max_transfer_blocks(), count_byte)) {
    co_return *bad;
  }
  Response resp;
  if (bytchk == 0 || e.count == 0) {
    co_return resp;  // the medium is always readable
  }
  const uint64_t bytes = e.count * block_bytes();
  resp.transfer_bytes = static_cast<uint32_t>(bytchk == 1 ? bytes : block_bytes());
  std::vector<std::byte> current(bytes);
  if (auto res = co_await volume_.read(e.lba * block_bytes(), current); !res) {
    co_return volume_error(res.error(), false);
  }
  for (uint64_t i = 0; i < bytes; ++i) {
    uint64_t j = bytchk == 1 ? i : i % block_bytes();
    if (j >= r.data_out.size()) {
      break;  // the initiator sent less than the CDB asked: compare what arrived
    }
    if (current[i] != r.data_out[j]) {
      co_return miscompare(i, resp.transfer_bytes);
    }
  }
  co_return resp;
}

Task<Result<void>> Device::Impl::fill(uint64_t lba, uint64_t count,
                                      std::span<const std::byte> block, bool unmap, bool fua) {
  const uint64_t bs = block_bytes();
  const uint64_t offset = lba * bs;
  const uint64_t length = count * bs;
  if (all_zero(block)) {
    // Zeroes: a hole when unmapping is allowed (LBPRZ: holes read as zeroes), else one shared
    // zero chunk that keeps the blocks mapped.
    if (unmap) {
      co_return co_await volume_.trim(offset, length, {.fua = fua});
    }
    co_return co_await volume_.write_zeroes(offset, length, {.fua = fua, .no_hole = true});
  }
  // One repeated block: every whole chunk of the range has the same bytes, so the
  // content-addressed store keeps one extent for all of them.
  std::vector<std::byte> buffer(std::min(length, kFillBytes / bs * bs));
  for (uint64_t at = 0; at < buffer.size(); at += bs) {
    std::memcpy(buffer.data() + at, block.data(), bs);
  }
  for (uint64_t done = 0; done < length;) {
    uint64_t n = std::min<uint64_t>(buffer.size(), length - done);
    bool last = done + n == length;
    auto data = std::span<const std::byte>(buffer).first(n);
    if (auto r = co_await volume_.write(offset + done, data, {.fua = fua && last}); !r) {
      co_return r;
    }
    done += n;
  }
  co_return Result<void>{};
}

Task<Response> Device::Impl::write_same(const Request& r) {
  std::span<const uint8_t> cdb = r.cdb;
  const bool ws16 = cdb[0] == op::kWriteSame16;
  if ((cdb[1] & 0xE0) != 0) {
    co_return invalid_field(1, 7);  // WRPROTECT
  }
  if ((cdb[1] & 0x10) != 0) {
    co_return invalid_field(1, 4);  // ANCHOR: ANC_SUP is 0
  }
  const bool unmap = (cdb[1] & 0x08) != 0;
  const bool ndob = ws16 && (cdb[1] & 0x01) != 0;
  Extent e =
      ws16 ? Extent{get64(&cdb[2]), get32(&cdb[10])} : Extent{get32(&cdb[2]), get16(&cdb[7])};
  if (e.lba > blocks()) {
    co_return check_condition(SenseKey::illegal_request, Asc::lba_out_of_range);
  }
  if (e.count == 0) {
    e.count = blocks() - e.lba;  // WSNZ is 0: zero blocks means up to the end (SBC-4 5.48)
  }
  if (auto bad = check_range(e.lba, e.count, 0, ws16 ? 10 : 7)) {
    co_return *bad;
  }
  if (auto bad = write_protected()) {
    co_return *bad;
  }
  Response resp;
  resp.transfer_bytes = ndob ? 0 : block_bytes();
  std::vector<std::byte> zero;
  std::span<const std::byte> block = r.data_out;
  if (ndob) {
    zero.resize(block_bytes());
    block = zero;
  } else if (block.size() != block_bytes()) {
    // One logical block of data, no more and no less.
    co_return check_condition(SenseKey::illegal_request, Asc::parameter_list_length_error);
  }
  if (e.count == 0) {
    co_return resp;
  }
  if (unmap) {
    // UNMAP=1: the blocks are unmapped whatever the data (as LIO does); LBPRZ says they then
    // read as zeroes.
    if (auto res = co_await volume_.trim(e.lba * block_bytes(), e.count * block_bytes()); !res) {
      co_return volume_error(res.error(), true);
    }
    co_return resp;
  }
  if (auto res = co_await fill(e.lba, e.count, block, false, false); !res) {
    co_return volume_error(res.error(), true);
  }
  co_return resp;
}

Task<Response> Device::Impl::unmap(const Request& r) {
  std::span<const uint8_t> cdb = r.cdb;
  if ((cdb[1] & 0x01) != 0) {
    co_return invalid_field(1, 0);  // ANCHOR: ANC_SUP is 0
  }
  const uint32_t param_len = get16(&cdb[7]);
  Response resp;
  resp.transfer_bytes = param_len;
  if (param_len == 0) {
    co_return resp;
  }
  if (auto bad = write_protected()) {
    co_return *bad;
  }
  if (param_len < 8 || r.data_out.size() < 8) {
    co_return check_condition(SenseKey::illegal_request, Asc::parameter_list_length_error);
  }
  auto p = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(r.data_out.data()),
                                    std::min<size_t>(r.data_out.size(), param_len));
  const size_t desc_bytes = std::min<size_t>(get16(&p[2]), p.size() - 8);
  const size_t n = desc_bytes / 16;
  if (n > kMaxUnmapDescriptors) {
    co_return invalid_field(2, {}, false);
  }
  for (size_t i = 0; i < n; ++i) {
    Extent e{get64(&p[8 + 16 * i]), get32(&p[16 + 16 * i])};
    if (e.lba > blocks() || e.count > blocks() - e.lba) {
      co_return check_condition(SenseKey::illegal_request, Asc::lba_out_of_range);
    }
    if (e.count > kMaxUnmapBlocks) {
      co_return invalid_field(static_cast<uint16_t>(16 + 16 * i), {}, false);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    Extent e{get64(&p[8 + 16 * i]), get32(&p[16 + 16 * i])};
    if (e.count == 0) {
      continue;
    }
    if (auto res = co_await volume_.trim(e.lba * block_bytes(), e.count * block_bytes()); !res) {
      co_return volume_error(res.error(), true);
    }
  }
  co_return resp;
}

Task<Response> Device::Impl::compare_and_write(const Request& r) {
  std::span<const uint8_t> cdb = r.cdb;
  if ((cdb[1] & 0xE0) != 0) {
    co_return invalid_field(1, 7);  // WRPROTECT
  }
  Extent e{get64(&cdb[2]), cdb[13]};
  if (auto bad = check_range(e.lba, e.count, kMaxCompareAndWriteBlocks, 13)) {
    co_return *bad;
  }
  if (auto bad = write_protected()) {
    co_return *bad;
  }
  const uint64_t bytes = e.count * block_bytes();
  Response resp;
  resp.transfer_bytes = static_cast<uint32_t>(2 * bytes);
  if (e.count == 0) {
    if (!r.data_out.empty()) {
      // Data for zero blocks: the count cannot be what the initiator meant (an 8-bit
      // NUMBER OF LOGICAL BLOCKS wrapped around).
      co_return invalid_field(13);
    }
    co_return resp;
  }
  if (r.data_out.size() != 2 * bytes) {
    co_return check_condition(SenseKey::illegal_request, Asc::parameter_list_length_error);
  }
  uint64_t at = 0;
  auto res = co_await volume_.compare_and_write(e.lba * block_bytes(), r.data_out.first(bytes),
                                                r.data_out.subspan(bytes), &at,
                                                {.fua = (cdb[1] & 0x08) != 0});
  if (!res) {
    co_return volume_error(res.error(), true);
  }
  if (!*res) {
    // SBC-4 5.3: INFORMATION is the offset of the first differing byte in the Data-Out buffer.
    co_return miscompare(at, resp.transfer_bytes);
  }
  co_return resp;
}

Task<Response> Device::Impl::orwrite(const Request& r) {
  std::span<const uint8_t> cdb = r.cdb;
  if ((cdb[1] & 0xE0) != 0) {
    co_return invalid_field(1, 7);  // ORPROTECT
  }
  Extent e{get64(&cdb[2]), get32(&cdb[10])};
  if (auto bad = check_range(e.lba, e.count, max_transfer_blocks(), 10)) {
    co_return *bad;
  }
  if (auto bad = write_protected()) {
    co_return *bad;
  }
  Response resp;
  resp.transfer_bytes = static_cast<uint32_t>(e.count * block_bytes());
  auto data = r.data_out.first(std::min<size_t>(r.data_out.size(), resp.transfer_bytes));
  if (data.empty()) {
    co_return resp;
  }
  // The OR is a read-modify-write made atomic by compare-and-write: retried if another
  // writer changed the blocks between the read and the write.
  std::vector<std::byte> current(data.size()), next(data.size());
  for (int attempt = 0;; ++attempt) {
    if (auto res = co_await volume_.read(e.lba * block_bytes(), current); !res) {
      co_return volume_error(res.error(), false);
    }
    for (size_t i = 0; i < data.size(); ++i) {
      next[i] = current[i] | data[i];
    }
    auto res = co_await volume_.compare_and_write(e.lba * block_bytes(), current, next, nullptr,
                                                  {.fua = (cdb[1] & 0x08) != 0});
    if (!res) {
      co_return volume_error(res.error(), true);
    }
    if (*res) {
      co_return resp;
    }
    CAIRN_ASSERT(attempt < 1000000);
  }
}

Task<Response> Device::Impl::synchronize_cache(const Request& r) {
  std::span<const uint8_t> cdb = r.cdb;
  Extent e = cdb[0] == op::kSynchronizeCache16 ? Extent{get64(&cdb[2]), get32(&cdb[10])}
                                               : Extent{get32(&cdb[2]), get16(&cdb[7])};
  if (auto bad = check_range(e.lba, e.count, 0, 7)) {
    co_return *bad;
  }
  // Every write completed before this is made durable, whatever the range (SBC-4 5.24).
  if (auto res = co_await volume_.flush(); !res) {
    co_return volume_error(res.error(), true);
  }
  co_return Response{};
}

Task<Response> Device::Impl::prefetch(const Request& r) {
  std::span<const uint8_t> cdb = r.cdb;
  Extent e = cdb[0] == op::kPrefetch16 ? Extent{get64(&cdb[2]), get32(&cdb[10])}
                                       : Extent{get32(&cdb[2]), get16(&cdb[7])};
  if (auto bad = check_range(e.lba, e.count, 0, 7)) {
    co_return *bad;
  }
  uint64_t count = e.count == 0 ? blocks() - e.lba : e.count;
  uint64_t bytes = count * block_bytes();
  // GOOD, not CONDITION MET: the store's read cache is shared and may evict the blocks
  // before they are read (SBC-4 5.10: GOOD when the cache cannot promise to hold them).
  if (bytes > 0 && bytes <= kMaxPrefetchBytes) {
    if (auto res = co_await volume_.cache(e.lba * block_bytes(), bytes); !res) {
      co_return volume_error(res.error(), false);
    }
  }
  co_return Response{};
}

Task<Response> Device::Impl::get_lba_status(const Request& r, std::vector<std::byte>& data_in) {
  std::span<const uint8_t> cdb = r.cdb;
  const uint64_t lba = get64(&cdb[2]);
  const uint32_t alloc = get32(&cdb[10]);
  if (lba >= blocks()) {
    co_return check_condition(SenseKey::illegal_request, Asc::lba_out_of_range);
  }
  const uint64_t bs = block_bytes();
  const size_t max_desc = alloc < 24 ? 1 : (alloc - 8) / 16;
  std::vector<blockmap::Extent> runs;
  uint64_t pos = lba * bs;
  const uint64_t end = blocks() * bs;
  while (pos < end) {
    uint64_t n = std::min(kLbaStatusWindowBytes, end - pos);
    if (auto res = co_await volume_.block_status(pos, n, runs); !res) {
      co_return volume_error(res.error(), false);
    }
    pos += n;
    // The last run may continue in the next window, so stop only with one run to spare.
    if (runs.size() > max_desc) {
      break;
    }
  }
  std::vector<uint8_t> out(8);
  size_t n = std::min(runs.size(), max_desc);
  for (size_t i = 0; i < n; ++i) {
    size_t at = out.size();
    out.resize(at + 16);
    uint64_t first = runs[i].offset_bytes / bs;
    uint64_t last = (runs[i].offset_bytes + runs[i].length_bytes + bs - 1) / bs;
    put64(out, at, first);
    put32(out, at + 8, static_cast<uint32_t>(std::min<uint64_t>(last - first, 0xFFFFFFFF)));
    out[at + 12] = runs[i].allocated ? 0 : 1;  // mapped, or deallocated
  }
  put32(out, 0, static_cast<uint32_t>(out.size() - 4));
  co_return send_data(out, alloc, r, data_in);
}

Task<Response> Device::Impl::sanitize(const Nexus& nexus, const Request& r) {
  std::span<const uint8_t> cdb = r.cdb;
  const uint8_t sa = cdb[1] & 0x1F;
  const bool immediate = (cdb[1] & 0x80) != 0;
  const uint32_t param_len = get16(&cdb[7]);
  if (sa != op::kSaOverwrite && sa != op::kSaBlockErase && sa != op::kSaCryptoErase &&
      sa != op::kSaExitFailureMode) {
    co_return invalid_field(1, 4);
  }
  if ((cdb[1] & 0x40) != 0) {
    co_return invalid_field(1, 6);  // ZNR: there is no zoned medium
  }
  for (uint16_t i = 2; i <= 6; ++i) {
    if (cdb[i] != 0) {
      co_return invalid_field(i);  // reserved
    }
  }
  if (sa != op::kSaOverwrite && param_len != 0) {
    co_return invalid_field(7);
  }
  if (auto bad = write_protected()) {
    co_return *bad;
  }
  Response resp;
  resp.transfer_bytes = param_len;
  if (sa == op::kSaExitFailureMode) {
    // An interrupted sanitize is not resumed or remembered across a restart (docs/scsi.md),
    // so there is no failure mode to leave.
    co_return resp;
  }
  auto job = std::make_unique<Sanitize>();
  job->service_action = sa;
  job->block.resize(block_bytes());
  job->total = blocks();
  if (sa == op::kSaOverwrite) {
    // SBC-4 5.30.3: a 4-byte header, then the pattern (1 to block size bytes).
    if (param_len < 5 || r.data_out.size() < param_len) {
      co_return invalid_field(7);
    }
    auto p =
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(r.data_out.data()), param_len);
    const uint32_t pattern_len = get16(&p[2]);
    if ((p[0] & 0x1F) == 0) {
      co_return invalid_field(0, 4, false);  // OVERWRITE COUNT 0
    }
    if (pattern_len == 0 || pattern_len > block_bytes() || pattern_len + 4 != param_len) {
      co_return invalid_field(2, {}, false);
    }
    for (size_t i = 0; i < job->block.size(); ++i) {
      uint8_t v = p[4 + i % pattern_len];
      job->block[i] = static_cast<std::byte>((p[0] & 0x80) != 0 ? ~v : v);  // INVERT
    }
  } else {
    // Block and crypto erase unmap everything: a thin volume's unmapped blocks read as
    // zeroes and their chunks are dropped from the store once unreferenced.
    job->unmap = true;
  }
  sanitize_ = std::move(job);
  CAIRN_LOG(info, "scsi", "{}: sanitize (service action {}) of {} blocks started by {}",
            volume_.name(), unsigned{sa}, blocks(), nexus.initiator_port);
  asio::co_spawn(volume_.executor(), run_sanitize(), asio::detached);
  if (immediate) {
    co_return resp;  // progress shows in REQUEST SENSE and in every NOT READY
  }
  asio::steady_timer wake(volume_.executor(), asio::steady_timer::time_point::max());
  SanitizeWaiter waiter;
  waiter.nexus_id = nexus.id;
  waiter.wake = &wake;
  sanitize_->waiters.push_back(&waiter);
  co_await wake.async_wait(use_tuple);  // run_sanitize() or abandon() cancels it
  if (sanitize_) {                      // abandoned: the sanitize goes on without this frame
    std::erase(sanitize_->waiters, &waiter);
  }
  if (waiter.abandoned) {
    resp.status = Status::task_aborted;
    co_return resp;
  }
  if (!waiter.result) {
    co_return volume_error(waiter.result.error(), true);
  }
  co_return resp;
}

Task<void> Device::Impl::run_sanitize() {
  Sanitize& job = *sanitize_;
  const uint64_t bs = block_bytes();
  const uint64_t step = std::max<uint64_t>(1, kSanitizeStepBytes / bs);
  const uint64_t rate = std::max<uint64_t>(1, options_.sanitize_bytes_per_second);
  const auto start = std::chrono::steady_clock::now();
  asio::steady_timer pace(volume_.executor());
  Result<void> res;
  while (res && job.next_lba < job.total && !job.cancel) {
    const uint64_t n = std::min(step, job.total - job.next_lba);
    res = co_await fill(job.next_lba, n, job.block, job.unmap, false);
    job.next_lba += n;
    // Never ahead of the rate: the pass so far may take no less than bytes / rate.
    const auto due = start + std::chrono::microseconds(job.next_lba * bs * 1'000'000 / rate);
    if (due > std::chrono::steady_clock::now()) {
      pace.expires_at(due);
      co_await pace.async_wait(use_tuple);
    }
  }
  if (res && !job.cancel) {
    res = co_await volume_.flush();
  }
  if (!res) {
    CAIRN_LOG(error, "scsi", "{}: sanitize failed at block {}: {}", volume_.name(), job.next_lba,
              res.error().message());
  } else if (job.cancel) {
    CAIRN_LOG(warn, "scsi", "{}: sanitize interrupted at block {} of {} (node stopping)",
              volume_.name(), job.next_lba, job.total);
  } else {
    CAIRN_LOG(info, "scsi", "{}: sanitized (service action {})", volume_.name(),
              unsigned{job.service_action});
  }
  for (SanitizeWaiter* w : job.waiters) {
    if (!w->abandoned) {
      w->abandoned = job.cancel;  // the command ends as TASK ABORTED, like its session
      w->result = res;
      w->wake->cancel();
    }
  }
  std::vector<asio::steady_timer*> on_end = std::move(job.on_end);
  sanitize_.reset();
  for (asio::steady_timer* wake : on_end) {
    wake->cancel();  // the waiter resumes later, when busy() is false
  }
}

Response Device::Impl::sanitize_in_progress() const {
  SenseData s;
  s.key = SenseKey::not_ready;
  s.asc = Asc::logical_unit_not_ready_sanitize;
  if (sanitize_ && sanitize_->total > 0) {
    s.progress = static_cast<uint16_t>(sanitize_->next_lba * 65536 / sanitize_->total);
  }
  Response r;
  r.status = Status::check_condition;
  r.sense = encode_fixed(s);
  return r;
}

Response Device::Impl::request_sense(const Nexus& nexus, const Request& r,
                                     std::vector<std::byte>& data_in) {
  std::span<const uint8_t> cdb = r.cdb;
  if ((cdb[1] & 0x01) != 0) {
    return invalid_field(1, 0);  // DESC: only fixed-format sense data
  }
  SenseData s;
  auto it = attentions_.find(nexus.id);
  if (it != attentions_.end() && !it->second.empty()) {
    s.key = SenseKey::unit_attention;
    s.asc = it->second.front();
    it->second.pop_front();
  } else if (sanitize_) {
    // SBC-4 4.32: REQUEST SENSE reports the sanitize's progress.
    std::vector<uint8_t> sense = sanitize_in_progress().sense;
    return send_data(sense, cdb[4], r, data_in);
  }
  std::vector<uint8_t> sense = encode_fixed(s);
  return send_data(sense, cdb[4], r, data_in);
}

Response Device::Impl::start_stop_unit(const Request& r) {
  // The medium is not removable and always ready: START, STOP and power conditions
  // complete without changing anything.
  (void)r;
  return Response{};
}

Response Device::Impl::read_defect_data(const Request& r, std::vector<std::byte>& data_in) {
  std::span<const uint8_t> cdb = r.cdb;
  const bool ten = cdb[0] == op::kReadDefectData10;
  const uint8_t request_bits = (ten ? cdb[2] : cdb[1]) & 0x1F;
  // An empty list of the requested kind: header only, list length 0 (SBC-4 5.18, 5.19).
  std::vector<uint8_t> out(ten ? 4 : 8, 0);
  out[1] = request_bits;
  const uint32_t alloc = static_cast<uint32_t>(ten ? get16(&cdb[7]) : get32(&cdb[6]));
  return send_data(out, alloc, r, data_in);
}

}  // namespace cairn::target::scsi
