#include "target/scsi/reservations.h"

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <cstring>
#include <utility>
#include <variant>

#include "base/assert.h"
#include "base/log.h"
#include "io/errors.h"
#include "target/scsi/big_endian.h"
#include "target/scsi/check_condition.h"
#include "target/scsi/parameter_data.h"

namespace cairn::target::scsi {
namespace {

// Operation codes this unit looks at (SPC-5 and SBC-4 operation code tables).
constexpr uint8_t kTestUnitReady = 0x00;
constexpr uint8_t kRequestSense = 0x03;
constexpr uint8_t kRead6 = 0x08;
constexpr uint8_t kInquiry = 0x12;
constexpr uint8_t kReserve6 = 0x16;
constexpr uint8_t kRelease6 = 0x17;
constexpr uint8_t kModeSense6 = 0x1A;
constexpr uint8_t kStartStopUnit = 0x1B;
constexpr uint8_t kReceiveDiagnostic = 0x1C;
constexpr uint8_t kPreventAllow = 0x1E;
constexpr uint8_t kReadCapacity10 = 0x25;
constexpr uint8_t kRead10 = 0x28;
constexpr uint8_t kVerify10 = 0x2F;
constexpr uint8_t kPreFetch10 = 0x34;
constexpr uint8_t kReadDefectData10 = 0x37;
constexpr uint8_t kReadBuffer = 0x3C;
constexpr uint8_t kReadLong10 = 0x3E;
constexpr uint8_t kLogSense = 0x4D;
constexpr uint8_t kReserve10 = 0x56;
constexpr uint8_t kRelease10 = 0x57;
constexpr uint8_t kModeSense10 = 0x5A;
constexpr uint8_t kPrIn = 0x5E;
constexpr uint8_t kPrOut = 0x5F;
constexpr uint8_t kVariableLength = 0x7F;
constexpr uint8_t kReceiveCopyResults = 0x84;
constexpr uint8_t kRead16 = 0x88;
constexpr uint8_t kReadAttribute = 0x8C;
constexpr uint8_t kVerify16 = 0x8F;
constexpr uint8_t kPreFetch16 = 0x90;
constexpr uint8_t kServiceActionIn16 = 0x9E;
constexpr uint8_t kReportLuns = 0xA0;
constexpr uint8_t kMaintenanceIn = 0xA3;
constexpr uint8_t kRead12 = 0xA8;
constexpr uint8_t kServiceActionIn12 = 0xAB;
constexpr uint8_t kVerify12 = 0xAF;
constexpr uint8_t kReadDefectData12 = 0xB7;

// PERSISTENT RESERVE OUT service actions (SPC-5 6.16.2, Table 226).
constexpr uint8_t kRegister = 0x00;
constexpr uint8_t kReserve = 0x01;
constexpr uint8_t kRelease = 0x02;
constexpr uint8_t kClear = 0x03;
constexpr uint8_t kPreempt = 0x04;
constexpr uint8_t kPreemptAndAbort = 0x05;
constexpr uint8_t kRegisterAndIgnore = 0x06;
constexpr uint8_t kRegisterAndMove = 0x07;

// PERSISTENT RESERVE IN service actions (SPC-5 6.15.1, Table 215).
constexpr uint8_t kReadKeys = 0x00;
constexpr uint8_t kReadReservation = 0x01;
constexpr uint8_t kReportCapabilities = 0x02;
constexpr uint8_t kReadFullStatus = 0x03;

constexpr uint8_t kProtocolIscsi = 0x5;  // SPC-5 7.6.1, PROTOCOL IDENTIFIER
constexpr size_t kBasicParamBytes = 24;  // SPC-5 6.16.3, Table 227
constexpr std::string_view kPortSeparator = ",i,0x";

// How a command fares under a persistent reservation held by another I_T nexus: SPC-5
// 5.14.3 ("SPC commands that are allowed in the presence of various reservations") and SBC-4
// 4.17 (the same table for the block commands).
enum class Access {
  allowed,  // allowed under every type
  read,     // allowed under the write exclusive types, conflicts under exclusive access
  write,    // conflicts under both (allowed only for registrants of the RO/AR types)
};

Access classify(std::span<const uint8_t> cdb) {
  const uint8_t op = cdb[0];
  const uint8_t sa = cdb.size() > 1 ? (cdb[1] & 0x1F) : 0;
  switch (op) {
    case kTestUnitReady:
    case kRequestSense:
    case kInquiry:
    case kReadCapacity10:
    case kLogSense:
    case kPrIn:
    case kPrOut:  // PR OUT checks reservation keys itself (5.14.7)
    case kReportLuns:
      return Access::allowed;
    case kServiceActionIn16:
      return sa == 0x10 ? Access::allowed : Access::read;  // READ CAPACITY(16)
    case kMaintenanceIn:
      // REPORT IDENTIFYING INFORMATION, REPORT TARGET PORT GROUPS, REPORT PRIORITY and
      // REPORT TIMESTAMP are allowed; REPORT SUPPORTED OPERATION CODES and REPORT SUPPORTED
      // TASK MANAGEMENT FUNCTIONS are in the read class (the ALLOW COMMANDS list, 6.15.4).
      if (sa == 0x05 || sa == 0x0A || sa == 0x0E || sa == 0x0F) {
        return Access::allowed;
      }
      return Access::read;
    case kStartStopUnit:
      // Allowed when it only starts the unit (START = 1, POWER CONDITION = 0).
      if (cdb.size() > 4 && (cdb[4] & 0x01) != 0 && (cdb[4] & 0xF0) == 0) {
        return Access::allowed;
      }
      return Access::write;
    case kPreventAllow:
      return cdb.size() > 4 && (cdb[4] & 0x03) == 0 ? Access::allowed : Access::write;
    case kRead6:
    case kRead10:
    case kRead12:
    case kRead16:
    case kVerify10:
    case kVerify12:
    case kVerify16:
    case kPreFetch10:
    case kPreFetch16:
    case kModeSense6:
    case kModeSense10:
    case kReadDefectData10:
    case kReadDefectData12:
    case kReadBuffer:
    case kReadLong10:
    case kReceiveDiagnostic:
    case kReceiveCopyResults:
    case kReadAttribute:
    case kServiceActionIn12:
      return Access::read;
    case kVariableLength:
      // READ(32) and VERIFY(32) read; the rest of the 0x7F family writes.
      if (cdb.size() > 9 && (cdb[9] == 0x09 || cdb[9] == 0x0A)) {
        return Access::read;
      }
      return Access::write;
    default:
      return Access::write;
  }
}

// Commands another I_T nexus may still send while a RESERVE(6) is held (SPC-2 5.5.1): the
// ones that report state without touching the medium. RELEASE completes as a no-op.
bool allowed_under_reserve6(std::span<const uint8_t> cdb) {
  switch (cdb[0]) {
    case kInquiry:
    case kRequestSense:
    case kReportLuns:
    case kRelease6:
    case kRelease10:
    case kPrIn:
      return true;
    case kMaintenanceIn:
      return cdb.size() > 1 && (cdb[1] & 0x1F) == 0x0A;  // REPORT TARGET PORT GROUPS
    default:
      return false;
  }
}

bool valid_type(uint8_t type) {
  switch (static_cast<PrType>(type)) {
    case PrType::write_exclusive:
    case PrType::exclusive_access:
    case PrType::write_exclusive_registrants_only:
    case PrType::exclusive_access_registrants_only:
    case PrType::write_exclusive_all_registrants:
    case PrType::exclusive_access_all_registrants:
      return true;
    default:
      return false;
  }
}

bool all_registrants(PrType t) {
  return t == PrType::write_exclusive_all_registrants ||
         t == PrType::exclusive_access_all_registrants;
}

bool registrants_only(PrType t) {
  return t == PrType::write_exclusive_registrants_only ||
         t == PrType::exclusive_access_registrants_only;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool is_port_name(std::string_view initiator_port) {
  return initiator_port.find(kPortSeparator) != std::string_view::npos;
}

bool same_registration(const Reservations::Registration& a, const Reservations::Registration& b) {
  return iequals(a.initiator_port, b.initiator_port) && a.target_port == b.target_port;
}

// Does a registration cover this session? See Registration for the wildcards.
bool covers(const Reservations::Registration& reg, std::string_view initiator_name,
            std::string_view initiator_port, std::string_view target_port) {
  const bool initiator = is_port_name(reg.initiator_port)
                             ? iequals(reg.initiator_port, initiator_port)
                             : iequals(reg.initiator_port, initiator_name);
  return initiator && (reg.target_port.empty() || reg.target_port == target_port);
}

// Do two registrations name a common I_T nexus (given the wildcards)?
bool overlap(const Reservations::Registration& a, const Reservations::Registration& b) {
  auto name = [](std::string_view port) { return port.substr(0, port.find(kPortSeparator)); };
  const bool initiators = is_port_name(a.initiator_port) && is_port_name(b.initiator_port)
                              ? iequals(a.initiator_port, b.initiator_port)
                              : iequals(name(a.initiator_port), name(b.initiator_port));
  return initiators &&
         (a.target_port.empty() || b.target_port.empty() || a.target_port == b.target_port);
}

const Reservations::Registration* find(const Reservations::State& s, const Nexus& n) {
  for (const auto& reg : s.registrations) {
    if (covers(reg, n.initiator_name, n.initiator_port, n.target_port)) {
      return &reg;
    }
  }
  return nullptr;
}

bool holds(const Reservations::State& s, const Reservations::Registration& reg) {
  if (s.type == PrType::none) {
    return false;
  }
  if (all_registrants(s.type)) {
    return true;
  }
  return iequals(reg.initiator_port, s.holder_initiator_port) &&
         reg.target_port == s.holder_target_port;
}

bool holds(const Reservations::State& s, const Nexus& n) {
  const auto* reg = find(s, n);
  return reg != nullptr && holds(s, *reg);
}

void clear_reservation(Reservations::State& s) {
  s.type = PrType::none;
  s.holder_initiator_port.clear();
  s.holder_target_port.clear();
}

void take_reservation(Reservations::State& s, const Reservations::Registration& reg, PrType type) {
  s.type = type;
  if (all_registrants(type)) {
    s.holder_initiator_port.clear();
    s.holder_target_port.clear();
  } else {
    s.holder_initiator_port = reg.initiator_port;
    s.holder_target_port = reg.target_port;
  }
}

Response conflict(uint32_t transfer_bytes) {
  Response r;
  r.status = Status::reservation_conflict;
  r.transfer_bytes = transfer_bytes;
  return r;
}

Response invalid_param(uint16_t byte, std::optional<uint8_t> bit = std::nullopt) {
  return bad_param(Asc::invalid_field_in_parameter_list, byte, bit);
}

// An iSCSI TransportID (SPC-5 7.6.4.6) read from a parameter list: the initiator port name
// (format 01b) or the initiator name alone (format 00b).
struct TransportId {
  std::string initiator_port;
  size_t length = 0;  // bytes it occupies in the list
};

// Parses the TransportID at `p[0..n)`; `offset` is its position in the parameter list, for the
// field pointer of an error.
std::variant<TransportId, Response> parse_transport_id(const uint8_t* p, size_t n, size_t offset) {
  if (n < 4) {
    return param_length_error();
  }
  const uint8_t format = p[0] >> 6;
  if ((p[0] & 0x0F) != kProtocolIscsi || format > 1) {
    return invalid_param(static_cast<uint16_t>(offset));
  }
  const size_t additional = get16(p + 2);
  if (additional < 20 || additional % 4 != 0) {
    return invalid_param(static_cast<uint16_t>(offset + 2));
  }
  if (4 + additional > n) {
    return param_length_error();
  }
  const char* name = reinterpret_cast<const char*>(p + 4);
  const size_t len = strnlen(name, additional);
  if (len == 0 || len == additional) {  // empty or not null-terminated
    return invalid_param(static_cast<uint16_t>(offset + 4));
  }
  TransportId t;
  t.initiator_port.assign(name, len);
  t.length = 4 + additional;
  if ((format == 1) != is_port_name(t.initiator_port)) {
    return invalid_param(static_cast<uint16_t>(offset));
  }
  return t;
}

// The TransportID that names a registration in READ FULL STATUS.
std::vector<std::byte> transport_id(const Reservations::Registration& reg) {
  const size_t name = reg.initiator_port.size() + 1;  // with its null
  const size_t additional = std::max<size_t>(20, (name + 3) / 4 * 4);
  std::vector<std::byte> out(4 + additional, std::byte{0});
  out[0] = std::byte((is_port_name(reg.initiator_port) ? 0x40 : 0x00) | kProtocolIscsi);
  put16(out, 2, static_cast<uint16_t>(additional));
  std::memcpy(out.data() + 4, reg.initiator_port.data(), reg.initiator_port.size());
  return out;
}

std::string hex_key(uint64_t key) {
  std::array<char, 19> buf{'0', 'x'};
  auto [end, ec] = std::to_chars(buf.data() + 2, buf.data() + buf.size(), key, 16);
  CAIRN_ASSERT(ec == std::errc{});
  return {buf.data(), end};
}

std::optional<uint64_t> parse_hex_key(std::string_view s) {
  if (s.size() < 3 || s.substr(0, 2) != "0x") {
    return std::nullopt;
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data() + 2, s.data() + s.size(), v, 16);
  if (ec != std::errc{} || end != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

}  // namespace

// The fields of a PERSISTENT RESERVE OUT command, its CDB and its parameter list.
struct Reservations::ProutParams {
  uint8_t action = 0;
  PrType type = PrType::none;
  uint64_t key = 0;     // RESERVATION KEY
  uint64_t sa_key = 0;  // SERVICE ACTION RESERVATION KEY
  bool spec_i_pt = false;
  bool all_tg_pt = false;
  bool aptpl = false;
  bool unreg = false;                      // REGISTER AND MOVE
  uint16_t relative_target_port = 0;       // REGISTER AND MOVE
  std::vector<TransportId> transport_ids;  // SPEC_I_PT, or REGISTER AND MOVE's one
};

Reservations::Reservations(io::MetaStore& meta, std::string volume_name, UnitAttentionSink& ua)
    : meta_(meta),
      volume_name_(std::move(volume_name)),
      meta_key_("scsi-pr/" + volume_name_),
      ua_(ua) {}

Reservations::~Reservations() = default;

Task<Result<std::unique_ptr<Reservations>>> Reservations::load(io::MetaStore& meta,
                                                               std::string volume_name,
                                                               UnitAttentionSink& ua) {
  std::unique_ptr<Reservations> r(new Reservations(meta, std::move(volume_name), ua));
  auto kv = co_await meta.get(r->meta_key_);
  if (!kv) {
    CAIRN_LOG(error, "scsi", "{}: cannot read persistent reservations: {}", r->volume_name_,
              kv.error().message());
    co_return kv.error();
  }
  if (!*kv) {
    co_return r;
  }
  auto state = decode((*kv)->value);
  if (!state) {
    CAIRN_LOG(error, "scsi", "{}: stored persistent reservation state {} is malformed",
              r->volume_name_, r->meta_key_);
    co_return state.error();
  }
  r->revision_ = (*kv)->mod_revision;
  if (state->aptpl) {
    r->state_ = std::move(*state);
  } else {
    // SPC-5 5.14.5: without APTPL, a power loss drops registrations and the reservation.
    // The generation stays monotonic so initiators never see an old value again.
    r->state_.generation = state->generation;
  }
  CAIRN_LOG(info, "scsi", "{}: {} persistent registrations loaded (aptpl {}, generation {})",
            r->volume_name_, r->state_.registrations.size(), state->aptpl, r->state_.generation);
  co_return r;
}

std::string Reservations::encode(const State& s) {
  boost::json::object o;
  o["version"] = 1;
  o["generation"] = s.generation;
  o["aptpl"] = s.aptpl;
  boost::json::array regs;
  for (const auto& reg : s.registrations) {
    boost::json::object r;
    r["initiator_port"] = reg.initiator_port;
    r["target_port"] = reg.target_port;
    r["relative_target_port"] = reg.relative_target_port;
    r["key"] = hex_key(reg.key);
    regs.emplace_back(std::move(r));
  }
  o["registrations"] = std::move(regs);
  if (s.type != PrType::none) {
    boost::json::object res;
    res["type"] = static_cast<int>(s.type);
    res["holder_initiator_port"] = s.holder_initiator_port;
    res["holder_target_port"] = s.holder_target_port;
    o["reservation"] = std::move(res);
  }
  return boost::json::serialize(o);
}

Result<Reservations::State> Reservations::decode(std::string_view json) noexcept {
  try {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(json, ec);
    if (ec || !v.is_object()) {
      return make_error_code(io::errc::corrupt);
    }
    const auto& o = v.as_object();
    if (o.at("version").to_number<int>() != 1) {
      return make_error_code(io::errc::corrupt);
    }
    State s;
    s.generation = o.at("generation").to_number<uint32_t>();
    s.aptpl = o.at("aptpl").as_bool();
    for (const auto& rv : o.at("registrations").as_array()) {
      const auto& r = rv.as_object();
      Registration reg;
      reg.initiator_port = std::string(r.at("initiator_port").as_string());
      reg.target_port = std::string(r.at("target_port").as_string());
      reg.relative_target_port = r.at("relative_target_port").to_number<uint16_t>();
      auto key = parse_hex_key(r.at("key").as_string());
      if (!key || *key == 0 || reg.initiator_port.empty()) {
        return make_error_code(io::errc::corrupt);
      }
      reg.key = *key;
      s.registrations.push_back(std::move(reg));
    }
    if (const auto* res = o.if_contains("reservation")) {
      const auto& r = res->as_object();
      const int type = r.at("type").to_number<int>();
      if (type < 0 || type > 0xF || !valid_type(static_cast<uint8_t>(type))) {
        return make_error_code(io::errc::corrupt);
      }
      s.type = static_cast<PrType>(type);
      s.holder_initiator_port = std::string(r.at("holder_initiator_port").as_string());
      s.holder_target_port = std::string(r.at("holder_target_port").as_string());
      const bool held = std::any_of(s.registrations.begin(), s.registrations.end(),
                                    [&](const Registration& reg) { return holds(s, reg); });
      if (!held) {  // a reservation nobody holds
        return make_error_code(io::errc::corrupt);
      }
    }
    return s;
  } catch (...) {
    return make_error_code(io::errc::corrupt);
  }
}

void Reservations::remember(const Nexus& nexus) const {
  for (const auto& l : live_) {
    if (l.id == nexus.id) {
      return;
    }
  }
  live_.push_back({nexus.id, nexus.initiator_name, nexus.initiator_port, nexus.target_port});
}

void Reservations::attach(const Nexus& nexus) {
  remember(nexus);
}

void Reservations::detach(const Nexus& nexus) {
  std::erase_if(live_, [&](const Live& l) { return l.id == nexus.id; });
  if (reserve6_ && reserve6_->nexus_id == nexus.id) {
    reserve6_.reset();
  }
}

void Reservations::reset() {
  reserve6_.reset();
}

std::vector<uint64_t> Reservations::live_nexuses(const Registration& reg) const {
  std::vector<uint64_t> ids;
  for (const auto& l : live_) {
    if (covers(reg, l.initiator_name, l.initiator_port, l.target_port)) {
      ids.push_back(l.id);
    }
  }
  return ids;
}

void Reservations::notify(Change& change, const Registration& reg, uint64_t except_id,
                          Asc asc) const {
  for (uint64_t id : live_nexuses(reg)) {
    if (id == except_id) {
      continue;
    }
    const bool queued = std::any_of(change.attentions.begin(), change.attentions.end(),
                                    [&](const Pending& p) { return p.nexus_id == id; });
    if (!queued) {  // one unit attention per nexus and change
      change.attentions.push_back({id, asc});
    }
  }
}

bool Reservations::pr_state_exists() const noexcept {
  return !state_.registrations.empty() || state_.type != PrType::none;
}

bool Reservations::conflicts(const Nexus& nexus, std::span<const uint8_t> cdb) const {
  if (cdb.empty()) {
    return false;
  }
  remember(nexus);
  const uint8_t op = cdb[0];
  if (op == kReserve6 || op == kRelease6 || op == kReserve10 || op == kRelease10) {
    // SPC-3 5.6.3 with CRH = 1: under persistent reservation state only the holder may use
    // RESERVE/RELEASE (as no-ops). Otherwise RELEASE never conflicts and RESERVE does when
    // another nexus holds the unit.
    if (pr_state_exists()) {
      return !holds(state_, nexus);
    }
    const bool is_reserve = op == kReserve6 || op == kReserve10;
    return is_reserve && reserve6_ && reserve6_->nexus_id != nexus.id;
  }
  if (reserve6_ && reserve6_->nexus_id != nexus.id) {
    return !allowed_under_reserve6(cdb);
  }
  if (state_.type == PrType::none || holds(state_, nexus)) {
    return false;
  }
  const Access access = classify(cdb);
  const bool registered = find(state_, nexus) != nullptr;
  switch (state_.type) {
    case PrType::write_exclusive:
      return access == Access::write;
    case PrType::exclusive_access:
      return access != Access::allowed;
    case PrType::write_exclusive_registrants_only:
    case PrType::write_exclusive_all_registrants:
      return !registered && access == Access::write;
    case PrType::exclusive_access_registrants_only:
    case PrType::exclusive_access_all_registrants:
      return !registered && access != Access::allowed;
    case PrType::none:
      break;
  }
  return false;
}

Task<Response> Reservations::reserve6(const Nexus& nexus, std::span<const uint8_t> cdb) {
  remember(nexus);
  // SPC-2 7.21: the third-party (bit 4) and extent (bit 0) forms are not supported.
  if (cdb.size() > 1 && (cdb[1] & 0x11) != 0) {
    co_return invalid_cdb(1, (cdb[1] & 0x10) != 0 ? 4 : 0);
  }
  if (pr_state_exists()) {
    co_return holds(state_, nexus) ? Response{} : conflict(0);
  }
  if (reserve6_ && reserve6_->nexus_id != nexus.id) {
    co_return conflict(0);
  }
  reserve6_ = Reserve6Holder{nexus.id, nexus.initiator_port};
  co_return Response{};
}

Task<Response> Reservations::release6(const Nexus& nexus, std::span<const uint8_t> /*cdb*/) {
  remember(nexus);
  if (pr_state_exists()) {
    co_return holds(state_, nexus) ? Response{} : conflict(0);
  }
  // SPC-2 7.19: a RELEASE from a nexus that holds nothing completes with GOOD and no effect.
  if (reserve6_ && reserve6_->nexus_id == nexus.id) {
    reserve6_.reset();
  }
  co_return Response{};
}

// ---------------------------------------------------------------------------------------
// PERSISTENT RESERVE IN (SPC-5 6.15)

Task<Response> Reservations::persistent_reserve_in(const Nexus& nexus, std::span<const uint8_t> cdb,
                                                   std::vector<std::byte>& data_in) {
  remember(nexus);
  data_in.clear();
  if (cdb.size() < 10) {
    co_return invalid_cdb(0);
  }
  const uint8_t action = cdb[1] & 0x1F;
  const uint16_t allocation = get16(cdb.data() + 7);
  std::vector<std::byte> out(8, std::byte{0});
  put32(out, 0, state_.generation);
  switch (action) {
    case kReadKeys: {
      for (const auto& reg : state_.registrations) {
        out.resize(out.size() + 8);
        put64(out, out.size() - 8, reg.key);
      }
      put32(out, 4, static_cast<uint32_t>(out.size() - 8));
      break;
    }
    case kReadReservation: {
      if (state_.type != PrType::none) {
        out.resize(24, std::byte{0});
        put32(out, 4, 16);
        // SPC-5 6.15.3.2: the all-registrants types report a key of zero.
        uint64_t key = 0;
        if (!all_registrants(state_.type)) {
          for (const auto& reg : state_.registrations) {
            if (holds(state_, reg)) {
              key = reg.key;
            }
          }
        }
        put64(out, 8, key);
        out[21] = std::byte(static_cast<uint8_t>(state_.type));  // SCOPE 0h: logical unit
      }
      break;
    }
    case kReportCapabilities: {
      std::fill(out.begin(), out.end(), std::byte{0});  // no PRgeneration here (6.15.4)
      put16(out, 0, 8);
      // CRH (SPC-3 5.6.3), SIP_C, ATP_C, PTPL_C.
      out[2] = std::byte(0x10 | 0x08 | 0x04 | 0x01);
      // TMV, ALLOW COMMANDS 001b (TEST UNIT READY is allowed through the WE and EA types),
      // PTPL_A.
      out[3] = std::byte(0x80 | 0x10 | (state_.aptpl ? 0x01 : 0x00));
      // PERSISTENT RESERVATION TYPE MASK: WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX; EX_AC_AR.
      out[4] = std::byte(0x80 | 0x40 | 0x20 | 0x08 | 0x02);
      out[5] = std::byte(0x01);
      break;
    }
    case kReadFullStatus: {
      for (const auto& reg : state_.registrations) {
        const auto tid = transport_id(reg);
        const size_t at = out.size();
        out.resize(at + 24 + tid.size(), std::byte{0});
        put64(out, at, reg.key);
        const bool holder = holds(state_, reg);
        out[at + 12] = std::byte((reg.target_port.empty() ? 0x02 : 0x00) | (holder ? 0x01 : 0x00));
        if (holder) {
          out[at + 13] = std::byte(static_cast<uint8_t>(state_.type));
        }
        put16(out, at + 18, reg.relative_target_port);
        put32(out, at + 20, static_cast<uint32_t>(tid.size()));
        std::copy(tid.begin(), tid.end(), out.begin() + static_cast<ptrdiff_t>(at + 24));
      }
      put32(out, 4, static_cast<uint32_t>(out.size() - 8));
      break;
    }
    default:
      co_return invalid_cdb(1, 4);
  }
  co_return parameter_data(std::move(out), allocation, data_in);
}

// ---------------------------------------------------------------------------------------
// PERSISTENT RESERVE OUT (SPC-5 5.14.7 and 6.16)

Task<Response> Reservations::persistent_reserve_out(const Nexus& nexus,
                                                    std::span<const uint8_t> cdb,
                                                    std::span<const std::byte> data_out) {
  remember(nexus);
  const uint32_t transfer = cdb.size() >= 10 ? get32(cdb.data() + 5) : 0;
  ProutParams p;
  if (auto error = parse_prout(cdb, data_out, p)) {
    error->transfer_bytes = transfer;
    co_return *error;
  }
  if (reserve6_ && reserve6_->nexus_id != nexus.id) {
    co_return conflict(transfer);  // SPC-3 5.6.3: PR OUT conflicts with a RESERVE(6)
  }
  auto guard = co_await prout_mutex_.scoped();
  Change change;
  switch (p.action) {
    case kRegister:
    case kRegisterAndIgnore:
      change = pr_register(nexus, p, p.action == kRegisterAndIgnore);
      break;
    case kReserve:
      change = pr_reserve(nexus, p);
      break;
    case kRelease:
      change = pr_release(nexus, p);
      break;
    case kClear:
      change = pr_clear(nexus, p);
      break;
    case kPreempt:
    case kPreemptAndAbort:
      change = pr_preempt(nexus, p);
      break;
    case kRegisterAndMove:
      change = pr_register_and_move(nexus, p);
      break;
    default:
      CAIRN_ASSERT(false);
  }
  // Not a conditional expression around co_await: g++ 12 destroys the temporary early.
  Response r;
  if (change.done) {
    r = std::move(*change.done);
  } else {
    r = co_await commit(std::move(change));
  }
  r.transfer_bytes = transfer;
  co_return r;
}

Task<Response> Reservations::commit(Change change) {
  auto rev = co_await meta_.put_if(meta_key_, encode(change.next), revision_);
  if (!rev) {
    CAIRN_LOG(error, "scsi", "{}: cannot store persistent reservations under {}: {}", volume_name_,
              meta_key_, rev.error().message());
    // The change did not happen; the initiator may retry.
    co_return check(SenseKey::aborted_command, Asc::internal_target_failure);
  }
  revision_ = *rev;
  state_ = std::move(change.next);
  for (const auto& a : change.attentions) {
    ua_.post(a.nexus_id, a.asc);
  }
  co_return Response{};
}

std::optional<Response> Reservations::parse_prout(std::span<const uint8_t> cdb,
                                                  std::span<const std::byte> data_out,
                                                  ProutParams& p) {
  if (cdb.size() < 10) {
    return invalid_cdb(0);
  }
  p.action = cdb[1] & 0x1F;
  if (p.action > kRegisterAndMove) {
    return invalid_cdb(1, 4);
  }
  const uint8_t scope = cdb[2] >> 4;
  const uint8_t type = cdb[2] & 0x0F;
  // The type and scope matter to RESERVE, RELEASE, PREEMPT (and ABORT) and REGISTER AND MOVE
  // (6.16.2); the other service actions ignore them.
  const bool typed = p.action == kReserve || p.action == kRelease || p.action == kPreempt ||
                     p.action == kPreemptAndAbort || p.action == kRegisterAndMove;
  if (typed && scope != 0) {
    return invalid_cdb(2, 7);
  }
  if (typed && p.action != kRegisterAndMove && !valid_type(type)) {
    return invalid_cdb(2, 3);
  }
  p.type = static_cast<PrType>(type);
  const size_t length = get32(cdb.data() + 5);
  if (data_out.size() < length || length < kBasicParamBytes) {
    return param_length_error();
  }
  const auto* d = reinterpret_cast<const uint8_t*>(data_out.data());
  p.key = get64(d);
  p.sa_key = get64(d + 8);
  if (p.action == kRegisterAndMove) {
    p.unreg = (d[17] & 0x02) != 0;
    p.aptpl = (d[17] & 0x01) != 0;
    p.relative_target_port = get16(d + 18);
    const size_t tid_length = get32(d + 20);
    if (length < kBasicParamBytes + tid_length || tid_length == 0) {
      return param_length_error();
    }
    auto t = parse_transport_id(d + kBasicParamBytes, tid_length, kBasicParamBytes);
    if (auto* error = std::get_if<Response>(&t)) {
      return *error;
    }
    p.transport_ids.push_back(std::get<TransportId>(std::move(t)));
    return std::nullopt;
  }
  p.spec_i_pt = (d[20] & 0x08) != 0;
  p.all_tg_pt = (d[20] & 0x04) != 0;
  p.aptpl = (d[20] & 0x01) != 0;
  const bool registering = p.action == kRegister || p.action == kRegisterAndIgnore;
  if (!registering && (p.spec_i_pt || p.all_tg_pt)) {
    // 6.16.3: SPEC_I_PT and ALL_TG_PT are only for the register service actions.
    return invalid_param(20, p.spec_i_pt ? 3 : 2);
  }
  if (!p.spec_i_pt) {
    return length == kBasicParamBytes ? std::nullopt : std::optional(param_length_error());
  }
  if (p.action == kRegisterAndIgnore) {
    return invalid_param(20, 3);
  }
  if (length < kBasicParamBytes + 4) {
    return param_length_error();
  }
  const size_t tid_length = get32(d + kBasicParamBytes);
  if (length != kBasicParamBytes + 4 + tid_length) {
    return param_length_error();
  }
  size_t at = kBasicParamBytes + 4;
  while (at < length) {
    auto t = parse_transport_id(d + at, length - at, at);
    if (auto* error = std::get_if<Response>(&t)) {
      return *error;
    }
    at += std::get<TransportId>(t).length;
    p.transport_ids.push_back(std::get<TransportId>(std::move(t)));
  }
  return std::nullopt;
}

Reservations::Change Reservations::pr_register(const Nexus& nexus, const ProutParams& p,
                                               bool ignore_existing) const {
  Change c;
  c.next = state_;
  State& s = c.next;
  const Registration* mine = find(state_, nexus);
  if (mine == nullptr) {
    if (!ignore_existing && p.key != 0) {
      c.done = conflict(0);
      return c;
    }
    if (p.sa_key == 0) {
      c.done = Response{};  // nothing to register (5.14.7.2), generation unchanged
      return c;
    }
    Registration reg{nexus.initiator_port, p.all_tg_pt ? std::string() : nexus.target_port,
                     nexus.relative_target_port, p.sa_key};
    s.registrations.push_back(reg);
    for (const auto& t : p.transport_ids) {
      Registration other{t.initiator_port, reg.target_port, reg.relative_target_port, p.sa_key};
      const bool duplicate = std::any_of(s.registrations.begin(), s.registrations.end(),
                                         [&](const Registration& r) { return overlap(r, other); });
      if (duplicate) {  // 5.14.7.3: a SPEC_I_PT nexus that is already registered
        c.done = invalid_param(kBasicParamBytes + 4);
        return c;
      }
      s.registrations.push_back(std::move(other));
    }
    if (s.registrations.size() > kMaxRegistrations) {
      c.done = check(SenseKey::illegal_request, Asc::insufficient_registration_resources);
      return c;
    }
  } else {
    if (!ignore_existing && p.key != mine->key) {
      c.done = conflict(0);
      return c;
    }
    if (p.spec_i_pt) {  // 5.14.7.3: SPEC_I_PT from a registered nexus
      c.done = invalid_param(20, 3);
      return c;
    }
    auto it = std::find_if(s.registrations.begin(), s.registrations.end(),
                           [&](const Registration& r) { return same_registration(r, *mine); });
    CAIRN_ASSERT(it != s.registrations.end());
    if (p.sa_key != 0) {
      it->key = p.sa_key;
    } else {
      // Unregistering (5.14.10.2.2): the holder of a single-holder reservation releases it,
      // and for the registrants-only types the others learn that it was released.
      const bool holder = holds(state_, *mine);
      s.registrations.erase(it);
      if (holder && !all_registrants(s.type)) {
        if (registrants_only(s.type)) {
          for (const auto& reg : s.registrations) {
            notify(c, reg, nexus.id, Asc::reservations_released);
          }
        }
        clear_reservation(s);
      } else if (all_registrants(s.type) && s.registrations.empty()) {
        clear_reservation(s);  // the last registrant of an all-registrants reservation
      }
    }
  }
  s.aptpl = p.aptpl;
  ++s.generation;
  return c;
}

const Reservations::Registration* Reservations::start_change(Change& c, const Nexus& nexus,
                                                             const ProutParams& p) const {
  c.next = state_;
  const Registration* mine = find(state_, nexus);
  if (mine == nullptr || mine->key != p.key) {
    c.done = conflict(0);
    return nullptr;
  }
  return mine;
}

Reservations::Change Reservations::pr_reserve(const Nexus& nexus, const ProutParams& p) const {
  Change c;
  const Registration* mine = start_change(c, nexus, p);
  if (mine == nullptr) {
    return c;
  }
  if (state_.type != PrType::none) {
    // 5.14.9: the holder may repeat its own reservation; anything else conflicts.
    const bool same = holds(state_, *mine) && state_.type == p.type;
    c.done = same ? Response{} : conflict(0);
    return c;
  }
  take_reservation(c.next, *mine, p.type);
  return c;
}

Reservations::Change Reservations::pr_release(const Nexus& nexus, const ProutParams& p) const {
  Change c;
  const Registration* mine = start_change(c, nexus, p);
  if (mine == nullptr) {
    return c;
  }
  if (state_.type == PrType::none || !holds(state_, *mine)) {
    c.done = Response{};  // 5.14.11.2: nothing held by this nexus, no effect
    return c;
  }
  if (state_.type != p.type) {
    c.done = check(SenseKey::illegal_request, Asc::invalid_release_of_persistent_reservation);
    return c;
  }
  // 5.14.11.2: releasing a registrants-only or all-registrants reservation tells the other
  // registrants.
  if (registrants_only(state_.type) || all_registrants(state_.type)) {
    for (const auto& reg : state_.registrations) {
      notify(c, reg, nexus.id, Asc::reservations_released);
    }
  }
  clear_reservation(c.next);
  return c;
}

Reservations::Change Reservations::pr_clear(const Nexus& nexus, const ProutParams& p) const {
  Change c;
  const Registration* mine = start_change(c, nexus, p);
  if (mine == nullptr) {
    return c;
  }
  // 5.14.11.3: every other registered nexus gets RESERVATIONS PREEMPTED.
  for (const auto& reg : state_.registrations) {
    notify(c, reg, nexus.id, Asc::reservations_preempted);
  }
  c.next.registrations.clear();
  clear_reservation(c.next);
  ++c.next.generation;
  return c;
}

Reservations::Change Reservations::pr_preempt(const Nexus& nexus, const ProutParams& p) const {
  Change c;
  const Registration* mine = start_change(c, nexus, p);
  if (mine == nullptr) {
    return c;
  }
  State& s = c.next;
  const Registration self = *mine;
  // Removes the registrations matching `pred`, except the preempting nexus's own, and sends
  // them REGISTRATIONS PREEMPTED. Returns how many went.
  auto remove = [&](auto pred) {
    size_t removed = 0;
    std::erase_if(s.registrations, [&](const Registration& reg) {
      if (same_registration(reg, self) || !pred(reg)) {
        return false;
      }
      notify(c, reg, nexus.id, Asc::registrations_preempted);
      ++removed;
      return true;
    });
    return removed;
  };
  const bool reserved = state_.type != PrType::none;
  if (reserved && all_registrants(state_.type) && p.sa_key == 0) {
    // 5.14.11.4.3: preempting an all-registrants reservation with key zero removes every
    // other registration and makes the preempting nexus the holder of a new reservation.
    remove([](const Registration&) { return true; });
    take_reservation(s, self, p.type);
  } else if (reserved && !all_registrants(state_.type) && [&] {
               for (const auto& reg : state_.registrations) {
                 if (holds(state_, reg)) {
                   return reg.key == p.sa_key;
                 }
               }
               return false;
             }()) {
    // 5.14.11.4.3: preempting the holder's key moves the reservation to this nexus (with
    // the CDB's type) and removes the registrations with that key.
    const PrType old = state_.type;
    remove([&](const Registration& reg) { return reg.key == p.sa_key; });
    take_reservation(s, self, p.type);
    if (old != p.type) {
      for (const auto& reg : s.registrations) {
        notify(c, reg, nexus.id, Asc::reservations_released);
      }
    }
  } else {
    // 5.14.11.4.4: no reservation, or a key that does not hold it: only registrations go.
    if (p.sa_key == 0) {
      c.done = invalid_param(8);
      return c;
    }
    const bool matched = std::any_of(state_.registrations.begin(), state_.registrations.end(),
                                     [&](const Registration& reg) { return reg.key == p.sa_key; });
    if (!matched) {
      c.done = conflict(0);
      return c;
    }
    remove([&](const Registration& reg) { return reg.key == p.sa_key; });
    if (all_registrants(s.type) && s.registrations.empty()) {
      clear_reservation(s);
    }
  }
  ++s.generation;
  return c;
}

Reservations::Change Reservations::pr_register_and_move(const Nexus& nexus,
                                                        const ProutParams& p) const {
  Change c;
  const Registration* mine = start_change(c, nexus, p);
  if (mine == nullptr) {
    return c;
  }
  State& s = c.next;
  // 5.14.8: only the holder of a single-holder reservation can move it.
  if (state_.type == PrType::none || all_registrants(state_.type) || !holds(state_, *mine)) {
    c.done = conflict(0);
    return c;
  }
  if (p.sa_key == 0) {
    c.done = invalid_param(8);
    return c;
  }
  if (p.relative_target_port != nexus.relative_target_port) {
    c.done = invalid_param(18);  // no such target port on this logical unit
    return c;
  }
  const Registration self = *mine;
  Registration dest{p.transport_ids.front().initiator_port, nexus.target_port,
                    nexus.relative_target_port, p.sa_key};
  if (covers(self, dest.initiator_port, dest.initiator_port, dest.target_port)) {
    c.done = invalid_param(kBasicParamBytes);  // moving to itself
    return c;
  }
  auto it = std::find_if(s.registrations.begin(), s.registrations.end(),
                         [&](const Registration& r) { return same_registration(r, dest); });
  if (it == s.registrations.end()) {
    if (s.registrations.size() >= kMaxRegistrations) {
      c.done = check(SenseKey::illegal_request, Asc::insufficient_registration_resources);
      return c;
    }
    s.registrations.push_back(dest);
  } else {
    it->key = p.sa_key;
  }
  take_reservation(s, dest, state_.type);
  if (p.unreg) {
    std::erase_if(s.registrations,
                  [&](const Registration& r) { return same_registration(r, self); });
  }
  s.aptpl = p.aptpl;
  ++s.generation;
  return c;
}

}  // namespace cairn::target::scsi
