#include "target/nbd/handshake.h"

#include <algorithm>
#include <optional>

#include "base/log.h"

namespace cairn::target::nbd {
namespace {

// A client may send at most this many options before choosing an export.
constexpr unsigned kMaxOptions = 4096;

std::error_code aborted() {
  return std::make_error_code(std::errc::connection_aborted);
}

std::error_code unframed() {
  return std::make_error_code(std::errc::protocol_error);
}

std::span<const std::byte> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// The state of one negotiation. Lives in negotiate()'s coroutine frame.
class Handshake {
 public:
  Handshake(ByteStream& stream, blockmap::VolumeManager& volumes)
      : stream_(stream), volumes_(volumes) {}

  Task<Result<Negotiated>> run();

 private:
  // What the dispatch of one option decided.
  enum class Next { more_options, transmission, close };

  Task<std::error_code> greet();
  Task<Result<Next>> option(Opt opt, uint32_t length);
  Task<Result<Next>> export_name();
  Task<Result<Next>> info_or_go(Opt opt);
  Task<Result<Next>> list();
  Task<Result<Next>> meta_context(Opt opt);
  Task<Result<Next>> oversized(uint32_t opt, uint32_t length);

  Task<std::error_code> reply(uint32_t opt, Rep type, std::span<const std::byte> data = {});
  Task<Result<Next>> reply_then_continue(uint32_t opt, Rep type);
  std::optional<blockmap::VolumeConfig> find_export(std::string_view name) const;
  uint16_t flags_for(const blockmap::VolumeConfig& config) const noexcept;
  bool acquire(const blockmap::VolumeConfig& config, bool block_size_agreed);

  ByteStream& stream_;
  blockmap::VolumeManager& volumes_;
  uint32_t client_flags_ = 0;
  bool structured_ = false;
  std::optional<std::string> meta_export_;  // export named by the last SET_META_CONTEXT
  bool meta_selected_ = false;              // ... and whether it selected base:allocation
  std::vector<std::byte> payload_;
  std::vector<std::byte> out_;
  Negotiated result_;
};

Task<std::error_code> Handshake::greet() {
  ServerGreeting greeting;
  greeting.nbd_magic = kNbdMagic;
  greeting.option_magic = kOptionMagic;
  greeting.handshake_flags = kFlagFixedNewstyle | kFlagNoZeroes;
  asio::const_buffer buf(&greeting, sizeof greeting);
  if (auto ec = co_await stream_.write({&buf, 1})) {
    co_return ec;
  }
  big_uint32_t flags;
  if (auto ec = co_await stream_.read({reinterpret_cast<std::byte*>(&flags), sizeof flags})) {
    co_return ec;
  }
  client_flags_ = flags;
  if ((client_flags_ & ~kKnownClientFlags) != 0) {
    // "If the client sends unknown flags, the server MUST close the connection" (handshake).
    CAIRN_LOG(warn, "nbd", "{}: unknown client flags {}, closing", stream_.peer(), client_flags_);
    co_return unframed();
  }
  co_return std::error_code{};
}

Task<Result<Negotiated>> Handshake::run() {
  if (auto ec = co_await greet()) {
    co_return ec;
  }
  for (unsigned i = 0; i < kMaxOptions; ++i) {
    OptionHeader header;
    if (auto ec = co_await stream_.read({reinterpret_cast<std::byte*>(&header), sizeof header})) {
      co_return ec;
    }
    if (header.magic != kOptionMagic) {
      CAIRN_LOG(warn, "nbd", "{}: bad option magic, closing connection", stream_.peer());
      co_return unframed();
    }
    auto next = co_await option(static_cast<Opt>(uint32_t{header.option}), header.length);
    if (!next) {
      co_return next.error();
    }
    if (*next == Next::transmission) {
      co_return result_;
    }
    if (*next == Next::close) {
      co_return aborted();
    }
  }
  CAIRN_LOG(warn, "nbd", "{}: more than {} options, closing", stream_.peer(), kMaxOptions);
  co_return unframed();
}

Task<Result<Handshake::Next>> Handshake::option(Opt opt, uint32_t length) {
  if (length > kMaxOptionBytes) {
    co_return co_await oversized(static_cast<uint32_t>(opt), length);
  }
  payload_.resize(length);
  if (auto ec = co_await stream_.read(payload_)) {
    co_return ec;
  }
  const auto code = static_cast<uint32_t>(opt);
  switch (opt) {
    case Opt::export_name:
      co_return co_await export_name();
    case Opt::abort:
      // "The server MUST reply with NBD_REP_ACK"; the client may already be gone.
      co_await reply(code, Rep::ack);
      co_return Next::close;
    case Opt::list:
      co_return co_await list();
    case Opt::info:
    case Opt::go:
      co_return co_await info_or_go(opt);
    case Opt::structured_reply:
      if (!payload_.empty()) {
        co_return co_await reply_then_continue(code, Rep::err_invalid);
      }
      structured_ = true;
      co_return co_await reply_then_continue(code, Rep::ack);
    case Opt::list_meta_context:
    case Opt::set_meta_context:
      co_return co_await meta_context(opt);
    default:
      CAIRN_LOG(debug, "nbd", "{}: unsupported option {}", stream_.peer(), code);
      co_return co_await reply_then_continue(code, Rep::err_unsup);
  }
}

// An option longer than we accept: skip its payload in bounded pieces, then refuse it.
Task<Result<Handshake::Next>> Handshake::oversized(uint32_t opt, uint32_t length) {
  if (opt == static_cast<uint32_t>(Opt::export_name)) {
    // EXPORT_NAME has no error reply; an export name this long cannot name anything.
    CAIRN_LOG(warn, "nbd", "{}: export name of {} bytes, closing", stream_.peer(), length);
    co_return unframed();
  }
  payload_.resize(kMaxOptionBytes);
  uint64_t left = length;
  while (left > 0) {
    std::size_t n = std::min<uint64_t>(left, payload_.size());
    if (auto ec = co_await stream_.read({payload_.data(), n})) {
      co_return ec;
    }
    left -= n;
  }
  co_return co_await reply_then_continue(opt, Rep::err_too_big);
}

Task<std::error_code> Handshake::reply(uint32_t opt, Rep type, std::span<const std::byte> data) {
  OptionReplyHeader header;
  header.magic = kOptionReplyMagic;
  header.option = opt;
  header.type = static_cast<uint32_t>(type);
  header.length = static_cast<uint32_t>(data.size());
  out_.clear();
  append_wire(out_, header);
  out_.insert(out_.end(), data.begin(), data.end());
  asio::const_buffer buf(out_.data(), out_.size());
  co_return co_await stream_.write({&buf, 1});
}

Task<Result<Handshake::Next>> Handshake::reply_then_continue(uint32_t opt, Rep type) {
  if (auto ec = co_await reply(opt, type)) {
    co_return ec;
  }
  co_return Next::more_options;
}

// The empty name is the default export: the first volume in name order.
std::optional<blockmap::VolumeConfig> Handshake::find_export(std::string_view name) const {
  auto all = volumes_.list();
  for (auto& config : all) {
    if (name.empty() || config.name == name) {
      return std::move(config);
    }
  }
  return std::nullopt;
}

uint16_t Handshake::flags_for(const blockmap::VolumeConfig& config) const noexcept {
  // The Volume's capabilities depend only on its config (blockmap/volume.h can_*()).
  ExportCapabilities caps;
  caps.writable = !config.read_only;
  return transmission_flags(caps, structured_);
}

bool Handshake::acquire(const blockmap::VolumeConfig& config, bool block_size_agreed) {
  result_.volume = volumes_.acquire(config.name);
  if (result_.volume == nullptr) {
    return false;
  }
  Session& s = result_.session;
  s.size_bytes = config.size_bytes;
  s.transmission_flags = flags_for(config);
  s.structured_replies = structured_;
  s.base_allocation = structured_ && meta_selected_ && meta_export_ == config.name;
  s.minimum_block_bytes = block_size_agreed ? config.block_size_bytes : 1;
  s.maximum_payload_bytes = kMaxPayloadBytes;
  return true;
}

Task<Result<Handshake::Next>> Handshake::export_name() {
  std::string_view name(reinterpret_cast<const char*>(payload_.data()), payload_.size());
  auto config = find_export(name);
  if (!config || !acquire(*config, false)) {
    // NBD_OPT_EXPORT_NAME has no error reply: "the server MUST terminate the session".
    CAIRN_LOG(warn, "nbd", "{}: unknown export '{}', closing", stream_.peer(), name);
    co_return unframed();
  }
  ExportNameReply wire;
  wire.size_bytes = config->size_bytes;
  wire.transmission_flags = result_.session.transmission_flags;
  out_.clear();
  append_wire(out_, wire);
  if ((client_flags_ & kClientNoZeroes) == 0) {
    out_.resize(out_.size() + kExportNamePadBytes);
  }
  asio::const_buffer buf(out_.data(), out_.size());
  if (auto ec = co_await stream_.write({&buf, 1})) {
    volumes_.release(result_.volume);
    co_return ec;
  }
  co_return Next::transmission;
}

Task<Result<Handshake::Next>> Handshake::list() {
  const auto code = static_cast<uint32_t>(Opt::list);
  if (!payload_.empty()) {
    co_return co_await reply_then_continue(code, Rep::err_invalid);
  }
  for (const auto& config : volumes_.list()) {
    std::vector<std::byte> data;
    append_wire(data, big_uint32_t(static_cast<uint32_t>(config.name.size())));
    auto name = as_bytes(config.name);
    data.insert(data.end(), name.begin(), name.end());
    // "Remaining bytes: implementation-specific details": the description, as libnbd reads it.
    auto text = as_bytes(config.description);
    text = text.first(std::min<std::size_t>(text.size(), kMaxStringBytes));
    data.insert(data.end(), text.begin(), text.end());
    if (auto ec = co_await reply(code, Rep::server, data)) {
      co_return ec;
    }
  }
  co_return co_await reply_then_continue(code, Rep::ack);
}

Task<Result<Handshake::Next>> Handshake::info_or_go(Opt opt) {
  const auto code = static_cast<uint32_t>(opt);
  auto request = parse_info_request(payload_);
  if (!request) {
    co_return co_await reply_then_continue(code, Rep::err_invalid);
  }
  auto config = find_export(request->export_name);
  if (!config) {
    co_return co_await reply_then_continue(code, Rep::err_unknown);
  }
  const auto& types = request->info_types;
  auto wants = [&](InfoType t) {
    return std::find(types.begin(), types.end(), static_cast<uint16_t>(t)) != types.end();
  };
  std::vector<std::vector<std::byte>> infos(1);
  InfoExport export_info;
  export_info.type = static_cast<uint16_t>(InfoType::export_info);
  export_info.size_bytes = config->size_bytes;
  export_info.transmission_flags = flags_for(*config);
  append_wire(infos.back(), export_info);
  if (wants(InfoType::name)) {
    auto& data = infos.emplace_back();
    append_wire(data, big_uint16_t(static_cast<uint16_t>(InfoType::name)));
    auto name = as_bytes(config->name);
    data.insert(data.end(), name.begin(), name.end());
  }
  if (wants(InfoType::description) && !config->description.empty()) {
    auto& data = infos.emplace_back();
    append_wire(data, big_uint16_t(static_cast<uint16_t>(InfoType::description)));
    auto text = as_bytes(config->description);
    data.insert(data.end(), text.begin(), text.end());
  }
  // Our minimum block size is not the default of 1, so it is always advertised ("Block size
  // constraints"); it is enforced only for clients that asked for it in NBD_OPT_GO.
  InfoBlockSize sizes;
  sizes.type = static_cast<uint16_t>(InfoType::block_size);
  sizes.minimum_bytes = config->block_size_bytes;
  sizes.preferred_bytes = std::max(config->block_size_bytes, config->chunk_size_bytes);
  sizes.maximum_payload_bytes = kMaxPayloadBytes;
  append_wire(infos.emplace_back(), sizes);
  for (const auto& data : infos) {
    if (auto ec = co_await reply(code, Rep::info, data)) {
      co_return ec;
    }
  }
  if (opt == Opt::go && !acquire(*config, wants(InfoType::block_size))) {
    co_return co_await reply_then_continue(code, Rep::err_unknown);  // removed meanwhile
  }
  if (auto ec = co_await reply(code, Rep::ack)) {
    if (opt == Opt::go) {
      volumes_.release(result_.volume);
    }
    co_return ec;
  }
  co_return opt == Opt::go ? Next::transmission : Next::more_options;
}

Task<Result<Handshake::Next>> Handshake::meta_context(Opt opt) {
  const auto code = static_cast<uint32_t>(opt);
  const bool listing = opt == Opt::list_meta_context;
  if (!listing) {
    meta_export_.reset();  // SET replaces earlier selections, even when it fails
    meta_selected_ = false;
  }
  auto request = parse_meta_context_request(payload_);
  if (!request || (!listing && !structured_)) {
    co_return co_await reply_then_continue(code, Rep::err_invalid);
  }
  auto config = find_export(request->export_name);
  if (!config) {
    co_return co_await reply_then_continue(code, Rep::err_unknown);
  }
  bool selected = listing && request->queries.empty();  // LIST with no query: everything
  for (std::string_view query : request->queries) {
    QueryMatch m = match_meta_query(query, listing);
    if (m == QueryMatch::invalid) {
      co_return co_await reply_then_continue(code, Rep::err_invalid);
    }
    selected = selected || m == QueryMatch::base_allocation;
  }
  if (selected) {
    std::vector<std::byte> data;
    append_wire(data, big_uint32_t(listing ? 0 : kBaseAllocationId));
    auto name = as_bytes(kBaseAllocation);
    data.insert(data.end(), name.begin(), name.end());
    if (auto ec = co_await reply(code, Rep::meta_context, data)) {
      co_return ec;
    }
  }
  if (!listing) {
    meta_export_ = config->name;
    meta_selected_ = selected;
  }
  co_return co_await reply_then_continue(code, Rep::ack);
}

}  // namespace

Task<Result<Negotiated>> negotiate(ByteStream& stream, blockmap::VolumeManager& volumes) {
  Handshake handshake(stream, volumes);
  co_return co_await handshake.run();
}

}  // namespace cairn::target::nbd
