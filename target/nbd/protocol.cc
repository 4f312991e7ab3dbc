#include "target/nbd/protocol.h"

#include "blockmap/errors.h"

namespace cairn::target::nbd {
namespace {

// Reads big-endian fields from an option payload without ever reading past its end.
class Cursor {
 public:
  explicit Cursor(std::span<const std::byte> bytes) noexcept : bytes_(bytes) {}

  [[nodiscard]] bool u32(uint32_t* out) noexcept {
    if (remaining() < 4) {
      return false;
    }
    *out = load_wire<big_uint32_t>(bytes_.subspan(pos_));
    pos_ += 4;
    return true;
  }
  [[nodiscard]] bool u16(uint16_t* out) noexcept {
    if (remaining() < 2) {
      return false;
    }
    *out = load_wire<big_uint16_t>(bytes_.subspan(pos_));
    pos_ += 2;
    return true;
  }
  // A string of `length` bytes; strings longer than kMaxStringBytes are malformed.
  [[nodiscard]] bool string(uint32_t length, std::string_view* out) noexcept {
    if (length > kMaxStringBytes || remaining() < length) {
      return false;
    }
    *out = std::string_view(reinterpret_cast<const char*>(bytes_.data() + pos_), length);
    pos_ += length;
    return true;
  }
  [[nodiscard]] std::size_t remaining() const noexcept { return bytes_.size() - pos_; }

 private:
  std::span<const std::byte> bytes_;
  std::size_t pos_ = 0;
};

bool valid_string(std::string_view s) noexcept {
  return s.find('\0') == std::string_view::npos;
}

bool is_write_command(Cmd cmd) noexcept {
  return cmd == Cmd::write || cmd == Cmd::trim || cmd == Cmd::write_zeroes;
}

// The command flags proto.md documents for each command, given what was negotiated.
uint16_t allowed_flags(Cmd cmd, const Session& s) noexcept {
  // FUA "is valid for all commands, provided NBD_FLAG_SEND_FUA has been negotiated".
  uint16_t flags = (s.transmission_flags & kFlagSendFua) != 0 ? kCmdFlagFua : 0;
  switch (cmd) {
    case Cmd::read:
      return static_cast<uint16_t>(flags | (s.structured_replies ? kCmdFlagDf : 0));
    case Cmd::write_zeroes:
      return static_cast<uint16_t>(
          flags | kCmdFlagNoHole |
          ((s.transmission_flags & kFlagSendFastZero) != 0 ? kCmdFlagFastZero : 0));
    case Cmd::block_status:
      return static_cast<uint16_t>(flags | kCmdFlagReqOne);
    default:
      return flags;
  }
}

bool known_command(uint16_t type) noexcept {
  return type <= static_cast<uint16_t>(Cmd::block_status);
}

}  // namespace

std::optional<InfoRequest> parse_info_request(std::span<const std::byte> payload) {
  Cursor in(payload);
  InfoRequest out;
  uint32_t name_length = 0;
  uint16_t count = 0;
  if (!in.u32(&name_length) || !in.string(name_length, &out.export_name) ||
      !valid_string(out.export_name) || !in.u16(&count)) {
    return std::nullopt;
  }
  // The count must describe the rest of the payload exactly.
  if (in.remaining() != std::size_t{count} * 2) {
    return std::nullopt;
  }
  out.info_types.resize(count);
  for (uint16_t& type : out.info_types) {
    if (!in.u16(&type)) {
      return std::nullopt;
    }
  }
  return out;
}

std::optional<MetaContextRequest> parse_meta_context_request(std::span<const std::byte> payload) {
  Cursor in(payload);
  MetaContextRequest out;
  uint32_t name_length = 0;
  uint32_t count = 0;
  if (!in.u32(&name_length) || !in.string(name_length, &out.export_name) ||
      !valid_string(out.export_name) || !in.u32(&count)) {
    return std::nullopt;
  }
  // Each query takes at least its 4-byte length, which bounds the loop by the payload.
  if (count > in.remaining() / 4) {
    return std::nullopt;
  }
  out.queries.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t length = 0;
    std::string_view query;
    if (!in.u32(&length) || !in.string(length, &query) || !valid_string(query)) {
      return std::nullopt;
    }
    out.queries.push_back(query);
  }
  if (in.remaining() != 0) {
    return std::nullopt;
  }
  return out;
}

QueryMatch match_meta_query(std::string_view query, bool listing) noexcept {
  auto colon = query.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return QueryMatch::invalid;
  }
  if (query.substr(0, colon) != "base") {
    return QueryMatch::none;  // unknown namespaces are ignored, never an error
  }
  if (query == kBaseAllocation || (listing && query == "base:")) {
    return QueryMatch::base_allocation;
  }
  return QueryMatch::none;
}

std::optional<Request> decode_request(std::span<const std::byte> header) noexcept {
  if (header.size() < sizeof(RequestHeader)) {
    return std::nullopt;
  }
  auto wire = load_wire<RequestHeader>(header);
  if (wire.magic != kRequestMagic) {
    return std::nullopt;
  }
  return Request{wire.flags, wire.type, wire.cookie, wire.offset_bytes, wire.length_bytes};
}

RequestHeader encode_request(const Request& r) noexcept {
  RequestHeader wire;
  wire.magic = kRequestMagic;
  wire.flags = r.flags;
  wire.type = r.type;
  wire.cookie = r.cookie;
  wire.offset_bytes = r.offset_bytes;
  wire.length_bytes = r.length_bytes;
  return wire;
}

uint16_t transmission_flags(const ExportCapabilities& caps, bool structured_replies) noexcept {
  uint16_t f = kFlagHasFlags;
  f |= caps.writable ? 0 : kFlagReadOnly;
  f |= caps.flush ? kFlagSendFlush : 0;
  f |= caps.fua ? kFlagSendFua : 0;
  f |= caps.writable && caps.trim ? kFlagSendTrim : 0;
  f |= caps.writable && caps.zero ? kFlagSendWriteZeroes : 0;
  f |= caps.writable && caps.zero && caps.fast_zero ? kFlagSendFastZero : 0;
  f |= caps.multi_conn ? kFlagCanMultiConn : 0;
  f |= caps.cache ? kFlagSendCache : 0;
  // DF only means something with structured replies ("NBD_FLAG_SEND_DF").
  f |= structured_replies ? kFlagSendDf : 0;
  return f;
}

Errno check_request(const Request& r, const Session& s) noexcept {
  if (!known_command(r.type)) {
    return Errno::inval;  // "The server SHOULD return NBD_EINVAL if it receives an unknown command"
  }
  const auto cmd = static_cast<Cmd>(r.type);
  if ((r.flags & ~allowed_flags(cmd, s)) != 0) {
    return Errno::inval;
  }
  if (cmd == Cmd::disc) {
    return Errno::ok;  // never answered; the connection closes after in-flight requests
  }
  if (is_write_command(cmd) && (s.transmission_flags & kFlagReadOnly) != 0) {
    return Errno::perm;
  }
  if (cmd == Cmd::block_status && !s.base_allocation) {
    return Errno::inval;  // no context was negotiated for this export
  }
  if (cmd == Cmd::flush) {
    return Errno::ok;  // offset and length are unused
  }
  const uint64_t end = r.offset_bytes + r.length_bytes;
  if (end < r.offset_bytes || end > s.size_bytes) {
    return cmd == Cmd::write || cmd == Cmd::write_zeroes ? Errno::nospc : Errno::inval;
  }
  if (r.offset_bytes % s.minimum_block_bytes != 0 || r.length_bytes % s.minimum_block_bytes != 0) {
    return Errno::inval;
  }
  if ((cmd == Cmd::read || cmd == Cmd::write) && r.length_bytes > s.maximum_payload_bytes) {
    // A structured read could be split, but we refuse it up front as proto.md permits.
    return s.structured_replies && cmd == Cmd::read ? Errno::overflow : Errno::inval;
  }
  if (cmd == Cmd::block_status && r.length_bytes == 0) {
    return Errno::inval;
  }
  return Errno::ok;
}

Errno errno_for(std::error_code ec, Cmd cmd) noexcept {
  if (!ec) {
    return Errno::ok;
  }
  if (ec.category() != blockmap::error_category()) {
    return Errno::io;
  }
  switch (static_cast<blockmap::errc>(ec.value())) {
    case blockmap::errc::out_of_range:
      return cmd == Cmd::write || cmd == Cmd::write_zeroes ? Errno::nospc : Errno::inval;
    case blockmap::errc::read_only:
      return Errno::perm;
    case blockmap::errc::invalid_argument:
      return Errno::inval;
    case blockmap::errc::no_space:
      return Errno::nospc;
    default:
      return Errno::io;
  }
}

const char* command_name(uint16_t type) noexcept {
  static constexpr const char* kNames[] = {"READ", "WRITE", "DISC",         "FLUSH",
                                           "TRIM", "CACHE", "WRITE_ZEROES", "BLOCK_STATUS"};
  return type < std::size(kNames) ? kNames[type] : "UNKNOWN";
}

}  // namespace cairn::target::nbd
