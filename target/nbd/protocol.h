// The NBD wire protocol as pure data and pure functions (NetworkBlockDevice/nbd doc/proto.md):
// constants, packed big-endian wire structs, option-payload parsing and request validation.
//
// Nothing here does I/O, allocates on the transmission path, or knows about sockets, so the
// fuzz target (tests/fuzz/nbd_fuzz.cc) and the unit tests exercise exactly what the server runs.
// Every struct is the exact on-the-wire layout: boost::endian's unaligned big-endian integers
// have alignment 1, so a struct can be memcpy'd to and from the stream as is.
#pragma once

#include <boost/endian/arithmetic.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <system_error>
#include <vector>

namespace cairn::target::nbd {

using boost::endian::big_uint16_t;
using boost::endian::big_uint32_t;
using boost::endian::big_uint64_t;

// --- Magic numbers ("Protocol phases", "Transmission phase") ---
inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943ull;       // "NBDMAGIC"
inline constexpr uint64_t kOptionMagic = 0x49484156454f5054ull;    // "IHAVEOPT"
inline constexpr uint64_t kOptionReplyMagic = 0x3e889045565a9ull;  // option replies
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;

// --- Handshake flags (server) and client flags ("Newstyle negotiation") ---
inline constexpr uint16_t kFlagFixedNewstyle = 1u << 0;
inline constexpr uint16_t kFlagNoZeroes = 1u << 1;
inline constexpr uint32_t kClientFixedNewstyle = 1u << 0;
inline constexpr uint32_t kClientNoZeroes = 1u << 1;
inline constexpr uint32_t kKnownClientFlags = kClientFixedNewstyle | kClientNoZeroes;

// --- Transmission flags ("Transmission flags") ---
inline constexpr uint16_t kFlagHasFlags = 1u << 0;
inline constexpr uint16_t kFlagReadOnly = 1u << 1;
inline constexpr uint16_t kFlagSendFlush = 1u << 2;
inline constexpr uint16_t kFlagSendFua = 1u << 3;
inline constexpr uint16_t kFlagRotational = 1u << 4;
inline constexpr uint16_t kFlagSendTrim = 1u << 5;
inline constexpr uint16_t kFlagSendWriteZeroes = 1u << 6;
inline constexpr uint16_t kFlagSendDf = 1u << 7;
inline constexpr uint16_t kFlagCanMultiConn = 1u << 8;
inline constexpr uint16_t kFlagSendResize = 1u << 9;
inline constexpr uint16_t kFlagSendCache = 1u << 10;
inline constexpr uint16_t kFlagSendFastZero = 1u << 11;

// --- Options ("Option types") ---
enum class Opt : uint32_t {
  export_name = 1,
  abort = 2,
  list = 3,
  peek_export = 4,
  starttls = 5,
  info = 6,
  go = 7,
  structured_reply = 8,
  list_meta_context = 9,
  set_meta_context = 10,
  extended_headers = 11,
};

// --- Option replies ("Option reply types") ---
enum class Rep : uint32_t {
  ack = 1,
  server = 2,
  info = 3,
  meta_context = 4,
  err_unsup = 0x80000001,
  err_policy = 0x80000002,
  err_invalid = 0x80000003,
  err_platform = 0x80000004,
  err_tls_reqd = 0x80000005,
  err_unknown = 0x80000006,
  err_shutdown = 0x80000007,
  err_block_size_reqd = 0x80000008,
  err_too_big = 0x80000009,
};

// --- NBD_REP_INFO types ---
enum class InfoType : uint16_t { export_info = 0, name = 1, description = 2, block_size = 3 };

// --- Commands and command flags ("Request types", "Command flags") ---
enum class Cmd : uint16_t {
  read = 0,
  write = 1,
  disc = 2,
  flush = 3,
  trim = 4,
  cache = 5,
  write_zeroes = 6,
  block_status = 7,
};
inline constexpr uint16_t kCmdFlagFua = 1u << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1u << 1;
inline constexpr uint16_t kCmdFlagDf = 1u << 2;
inline constexpr uint16_t kCmdFlagReqOne = 1u << 3;
inline constexpr uint16_t kCmdFlagFastZero = 1u << 4;

// --- Structured reply chunk types and flags ("Structured reply chunk message types") ---
inline constexpr uint16_t kReplyFlagDone = 1u << 0;
enum class ReplyType : uint16_t {
  none = 0,
  offset_data = 1,
  offset_hole = 2,
  block_status = 5,
  error = 0x8001,
  error_offset = 0x8002,
};

// --- Error values ("Error values"); not the host's errno ---
enum class Errno : uint32_t {
  ok = 0,
  perm = 1,
  io = 5,
  nomem = 12,
  inval = 22,
  nospc = 28,
  overflow = 75,
  notsup = 95,
  shutdown = 108,
};

// --- base:allocation ("Metadata querying") ---
inline constexpr std::string_view kBaseAllocation = "base:allocation";
inline constexpr uint32_t kBaseAllocationId = 1;  // our context id for base:allocation
inline constexpr uint32_t kStateHole = 1u << 0;
inline constexpr uint32_t kStateZero = 1u << 1;

// --- Limits we apply ---
inline constexpr uint32_t kMaxStringBytes = 4096;               // proto.md "Conventions"
inline constexpr uint32_t kMaxOptionBytes = 64 * 1024;          // larger options: ERR_TOO_BIG
inline constexpr uint32_t kMaxPayloadBytes = 32 * 1024 * 1024;  // 2^25: never deemed abuse
inline constexpr std::size_t kExportNamePadBytes = 124;         // zeroes after EXPORT_NAME reply

// --- Wire structs ---
struct ServerGreeting {
  big_uint64_t nbd_magic;
  big_uint64_t option_magic;
  big_uint16_t handshake_flags;
};
static_assert(sizeof(ServerGreeting) == 18);

struct OptionHeader {
  big_uint64_t magic;
  big_uint32_t option;
  big_uint32_t length;
};
static_assert(sizeof(OptionHeader) == 16);

struct OptionReplyHeader {
  big_uint64_t magic;
  big_uint32_t option;
  big_uint32_t type;
  big_uint32_t length;
};
static_assert(sizeof(OptionReplyHeader) == 20);

struct ExportNameReply {  // followed by 124 zero bytes unless the client set NO_ZEROES
  big_uint64_t size_bytes;
  big_uint16_t transmission_flags;
};
static_assert(sizeof(ExportNameReply) == 10);

struct InfoExport {
  big_uint16_t type;
  big_uint64_t size_bytes;
  big_uint16_t transmission_flags;
};
static_assert(sizeof(InfoExport) == 12);

struct InfoBlockSize {
  big_uint16_t type;
  big_uint32_t minimum_bytes;
  big_uint32_t preferred_bytes;
  big_uint32_t maximum_payload_bytes;
};
static_assert(sizeof(InfoBlockSize) == 14);

struct RequestHeader {
  big_uint32_t magic;
  big_uint16_t flags;
  big_uint16_t type;
  big_uint64_t cookie;
  big_uint64_t offset_bytes;
  big_uint32_t length_bytes;
};
static_assert(sizeof(RequestHeader) == 28);

struct SimpleReplyHeader {
  big_uint32_t magic;
  big_uint32_t error;
  big_uint64_t cookie;
};
static_assert(sizeof(SimpleReplyHeader) == 16);

struct StructuredReplyHeader {
  big_uint32_t magic;
  big_uint16_t flags;
  big_uint16_t type;
  big_uint64_t cookie;
  big_uint32_t length_bytes;  // payload bytes after this header
};
static_assert(sizeof(StructuredReplyHeader) == 20);

struct OffsetDataPrefix {  // followed by the data
  big_uint64_t offset_bytes;
};
static_assert(sizeof(OffsetDataPrefix) == 8);

struct OffsetHole {
  big_uint64_t offset_bytes;
  big_uint32_t length_bytes;
};
static_assert(sizeof(OffsetHole) == 12);

struct ErrorChunk {  // followed by message_length bytes of message
  big_uint32_t error;
  big_uint16_t message_length;
};
static_assert(sizeof(ErrorChunk) == 6);

struct BlockStatusDescriptor {
  big_uint32_t length_bytes;
  big_uint32_t status_flags;
};
static_assert(sizeof(BlockStatusDescriptor) == 8);

// Copies a wire struct out of `bytes` (which must hold at least sizeof(T)).
template <class T>
[[nodiscard]] T load_wire(std::span<const std::byte> bytes) noexcept {
  T out;
  std::memcpy(&out, bytes.data(), sizeof(T));
  return out;
}

// Appends a wire struct's bytes to `out`.
template <class T>
void append_wire(std::vector<std::byte>& out, const T& wire) {
  const auto* p = reinterpret_cast<const std::byte*>(&wire);
  out.insert(out.end(), p, p + sizeof(T));
}

// --- Option payloads ---

// NBD_OPT_INFO / NBD_OPT_GO: name length, name, count of info requests, the requests.
struct InfoRequest {
  std::string_view export_name;  // borrows the payload
  std::vector<uint16_t> info_types;
};
// nullopt when the payload is malformed (the reply is NBD_REP_ERR_INVALID).
[[nodiscard]] std::optional<InfoRequest> parse_info_request(std::span<const std::byte> payload);

// NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: export name and queries.
struct MetaContextRequest {
  std::string_view export_name;  // borrows the payload
  std::vector<std::string_view> queries;
};
[[nodiscard]] std::optional<MetaContextRequest> parse_meta_context_request(
    std::span<const std::byte> payload);

// What one query selects. `listing` allows the "base:" wildcard (NBD_OPT_LIST_META_CONTEXT
// only). Queries in unknown namespaces select nothing; a query without a namespace colon is
// invalid.
enum class QueryMatch { none, base_allocation, invalid };
[[nodiscard]] QueryMatch match_meta_query(std::string_view query, bool listing) noexcept;

// --- Transmission requests ---

struct Request {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset_bytes = 0;
  uint32_t length_bytes = 0;
};

// nullopt when the magic is wrong: the stream cannot be framed any more.
[[nodiscard]] std::optional<Request> decode_request(std::span<const std::byte> header) noexcept;
[[nodiscard]] RequestHeader encode_request(const Request& request) noexcept;

// What was negotiated for one connection's transmission phase; request checks depend on it.
struct Session {
  uint64_t size_bytes = 0;
  uint16_t transmission_flags = 0;
  bool structured_replies = false;
  bool base_allocation = false;      // base:allocation selected for this export
  uint32_t minimum_block_bytes = 1;  // enforced alignment (1 unless the client agreed)
  uint32_t maximum_payload_bytes = kMaxPayloadBytes;
};

// Transmission flags for an export with these capabilities.
struct ExportCapabilities {
  bool writable = true;
  bool trim = true;
  bool zero = true;
  bool fast_zero = true;
  bool fua = true;
  bool flush = true;
  bool multi_conn = true;
  bool cache = true;
};
[[nodiscard]] uint16_t transmission_flags(const ExportCapabilities& caps,
                                          bool structured_replies) noexcept;

// True when the request carries a payload (NBD_CMD_WRITE), which must be consumed even if
// the request is refused, to keep the stream framed.
[[nodiscard]] inline bool has_payload(const Request& r) noexcept {
  return r.type == static_cast<uint16_t>(Cmd::write);
}

// Checks a decoded request against the session ("Error values", "Block size constraints").
// Returns Errno::ok or the error to reply with.
[[nodiscard]] Errno check_request(const Request& r, const Session& s) noexcept;

// Maps an operating error from the volume layer to the NBD error for command `cmd`.
[[nodiscard]] Errno errno_for(std::error_code ec, Cmd cmd) noexcept;

[[nodiscard]] const char* command_name(uint16_t type) noexcept;

}  // namespace cairn::target::nbd
