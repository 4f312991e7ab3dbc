#include "target/iscsi/login.h"

#include <atomic>

#include "base/log.h"
#include "target/iscsi/chap.h"
#include "target/iscsi/pdu.h"

namespace cairn::target::iscsi {
namespace {

// Login status classes and details (RFC 7143 section 11.13.5).
constexpr uint16_t kStatusInitiatorError = 0x0200;
constexpr uint16_t kStatusAuthFailure = 0x0201;
constexpr uint16_t kStatusForbidden = 0x0202;
constexpr uint16_t kStatusNotFound = 0x0203;
constexpr uint16_t kStatusUnsupportedVersion = 0x0205;
constexpr uint16_t kStatusMissingParameter = 0x0207;
constexpr uint16_t kStatusSessionDoesNotExist = 0x020A;
constexpr uint16_t kStatusOutOfResources = 0x0302;

// Keys the login code itself handles; everything else goes to the Negotiator.
bool is_login_key(std::string_view k) {
  return k == "InitiatorName" || k == "InitiatorAlias" || k == "TargetName" || k == "SessionType" ||
         k == "AuthMethod" || k.starts_with("CHAP_");
}

const std::string* find(const KeyValues& keys, std::string_view key) {
  for (const auto& [k, v] : keys) {
    if (k == key) {
      return &v;
    }
  }
  return nullptr;
}

bool list_has(std::string_view list, std::string_view item) {
  while (!list.empty()) {
    auto comma = list.find(',');
    if (list.substr(0, comma) == item) {
      return true;
    }
    list.remove_prefix(comma == std::string_view::npos ? list.size() : comma + 1);
  }
  return false;
}

std::string hex4(uint16_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(4, '0');
  for (int i = 3; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = kDigits[v & 15];
    v = static_cast<uint16_t>(v >> 4);
  }
  return out;
}

uint16_t next_tsih() {
  static std::atomic<uint16_t> counter{0};
  for (;;) {
    uint16_t t = ++counter;
    if (t != 0) {
      return t;
    }
  }
}

}  // namespace

std::vector<std::string> VolumeDirectory::volumes() const {
  std::vector<std::string> out;
  for (const auto& c : volumes_.list()) {
    out.push_back(c.name);
  }
  return out;
}

std::optional<blockmap::VolumeAccess> VolumeDirectory::access(std::string_view volume) const {
  auto c = volumes_.config(volume);
  if (!c) {
    return std::nullopt;
  }
  return c->access;
}

std::string target_name(const TargetOptions& options, std::string_view volume) {
  return options.iqn_prefix + ":" + std::string(volume);
}

std::optional<std::string> volume_of(const TargetOptions& options, std::string_view target) {
  // iSCSI names compare case-insensitively after stringprep; cairn's are lowercase already,
  // so a lowercase comparison of the prefix is enough.
  std::string lowered(target);
  for (char& c : lowered) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  std::string prefix = options.iqn_prefix + ":";
  for (char& c : prefix) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  if (!lowered.starts_with(prefix) || lowered.size() == prefix.size()) {
    return std::nullopt;
  }
  return lowered.substr(prefix.size());
}

std::vector<std::byte> send_targets(const TargetOptions& options, const Directory& directory,
                                    std::string_view value, std::string_view initiator,
                                    std::string_view session_target, std::string_view portal) {
  std::vector<std::byte> out;
  std::string address = std::string(portal) + "," + std::to_string(options.portal_group_tag);
  auto add = [&](const std::string& volume) {
    auto access = directory.access(volume);
    if (!access || !access->allows(initiator)) {
      return;
    }
    append_text(out, "TargetName", target_name(options, volume));
    append_text(out, "TargetAddress", address);
  };
  if (value == "All") {
    for (const std::string& v : directory.volumes()) {
      add(v);
    }
  } else {
    std::string_view name = value.empty() ? session_target : value;
    if (auto volume = volume_of(options, name)) {
      add(*volume);
    }
  }
  return out;
}

namespace {

class Login {
 public:
  Login(ByteStream& stream, const TargetOptions& options, const Directory& directory,
        std::string portal, const std::function<bool(const LoginResult&)>& admit)
      : stream_(stream),
        options_(options),
        directory_(directory),
        portal_(std::move(portal)),
        admit_(admit),
        negotiator_(options.limits, false) {}

  Task<std::optional<LoginResult>> run();

 private:
  // Sends a failure response and ends the login.
  Task<void> fail(uint16_t status, std::string why);
  Task<bool> send(bool transit, uint8_t csg, uint8_t nsg, uint16_t tsih,
                  std::vector<std::byte> text);
  // Handles the first request's declarations; returns a login status or 0.
  uint16_t first_request(const KeyValues& keys);
  // The security stage's keys; returns a status, or 0 (authenticated_ says whether done).
  uint16_t security(const KeyValues& keys, std::vector<std::byte>& out);

  ByteStream& stream_;
  const TargetOptions& options_;
  const Directory& directory_;
  std::string portal_;
  const std::function<bool(const LoginResult&)>& admit_;
  Negotiator negotiator_;
  LoginResult result_;
  Bhs request_;
  bool first_ = true;
  std::optional<blockmap::VolumeAccess> access_;
  enum class Auth { none_yet, none, chap, done } auth_ = Auth::none_yet;
  std::optional<ChapTarget> chap_;
  uint8_t stage_ = 0;
  bool tpgt_sent_ = false;
};

Task<bool> Login::send(bool transit, uint8_t csg, uint8_t nsg, uint16_t tsih,
                       std::vector<std::byte> text) {
  SnFields sn;
  sn.stat_sn = result_.stat_sn++;
  sn.exp_cmd_sn = result_.exp_cmd_sn;
  sn.max_cmd_sn = result_.exp_cmd_sn + options_.queue_depth - 1;
  Pdu pdu;
  pdu.bhs = make_login_response(request_, transit, csg, nsg, tsih, 0, 0, sn);
  pdu.data = std::move(text);
  auto bytes = encode_pdu(pdu, false, false);
  asio::const_buffer buf(bytes.data(), bytes.size());
  auto ec = co_await stream_.write(std::span(&buf, 1));
  co_return !ec;
}

Task<void> Login::fail(uint16_t status, std::string why) {
  CAIRN_LOG(info, "iscsi", "{}: login of '{}' to '{}' refused (status 0x{}): {}", stream_.peer(),
            result_.initiator_name, result_.target_name, hex4(status), why);
  SnFields sn;
  sn.stat_sn = result_.stat_sn++;
  sn.exp_cmd_sn = result_.exp_cmd_sn;
  sn.max_cmd_sn = result_.exp_cmd_sn;
  Pdu pdu;
  pdu.bhs = make_login_response(request_, false, login_csg(request_), 0, 0,
                                static_cast<uint8_t>(status >> 8),
                                static_cast<uint8_t>(status & 0xFF), sn);
  auto bytes = encode_pdu(pdu, false, false);
  asio::const_buffer buf(bytes.data(), bytes.size());
  co_await stream_.write(std::span(&buf, 1));
}

uint16_t Login::first_request(const KeyValues& keys) {
  const std::string* initiator = find(keys, "InitiatorName");
  if (initiator == nullptr || initiator->empty()) {
    return kStatusMissingParameter;
  }
  result_.initiator_name = *initiator;
  if (const std::string* alias = find(keys, "InitiatorAlias")) {
    result_.initiator_alias = *alias;
  }
  const std::string* type = find(keys, "SessionType");
  if (type != nullptr && *type != "Normal" && *type != "Discovery") {
    return kStatusInitiatorError;
  }
  result_.discovery = type != nullptr && *type == "Discovery";
  negotiator_ = Negotiator(options_.limits, result_.discovery);
  if (result_.discovery) {
    return 0;
  }
  const std::string* target = find(keys, "TargetName");
  if (target == nullptr || target->empty()) {
    return kStatusMissingParameter;
  }
  result_.target_name = *target;
  auto volume = volume_of(options_, *target);
  if (volume) {
    access_ = directory_.access(*volume);
  }
  if (!access_) {
    return kStatusNotFound;
  }
  result_.volume = *volume;
  result_.target_name = target_name(options_, *volume);
  if (!access_->allows(result_.initiator_name)) {
    return kStatusForbidden;
  }
  return 0;
}

uint16_t Login::security(const KeyValues& keys, std::vector<std::byte>& out) {
  const bool needs_chap = access_ && access_->requires_chap();
  if (const std::string* methods = find(keys, "AuthMethod")) {
    if (auth_ != Auth::none_yet) {
      return kStatusInitiatorError;  // negotiated twice
    }
    if (needs_chap) {
      if (!list_has(*methods, "CHAP")) {
        append_text(out, "AuthMethod", "Reject");
        return kStatusAuthFailure;
      }
      auth_ = Auth::chap;
      chap_.emplace(ChapSecrets{access_->chap_user, access_->chap_secret, access_->mutual_user,
                                access_->mutual_secret});
      append_text(out, "AuthMethod", "CHAP");
    } else if (list_has(*methods, "None")) {
      auth_ = Auth::none;
      append_text(out, "AuthMethod", "None");
    } else {
      append_text(out, "AuthMethod", "Reject");
      return kStatusAuthFailure;
    }
    return 0;
  }
  bool has_chap_keys = false;
  for (const auto& [k, v] : keys) {
    has_chap_keys = has_chap_keys || k.starts_with("CHAP_");
  }
  if (has_chap_keys) {
    if (auth_ != Auth::chap) {
      return kStatusInitiatorError;
    }
    auto step = chap_->step(keys, out);
    if (step == ChapTarget::Step::failure) {
      CAIRN_LOG(info, "iscsi", "{}: CHAP failed: {}", stream_.peer(), chap_->failure_reason());
      return kStatusAuthFailure;
    }
    if (step == ChapTarget::Step::success) {
      auth_ = Auth::done;
    }
  }
  return 0;
}

Task<std::optional<LoginResult>> Login::run() {
  std::vector<std::byte> text;  // accumulates continued (C bit) text
  for (;;) {
    Bhs h;
    if (auto ec = co_await stream_.read(std::as_writable_bytes(std::span(h.b)))) {
      co_return std::nullopt;
    }
    auto verdict = check_request(h, true, 8192);
    if (verdict.check != HeaderCheck::ok) {
      CAIRN_LOG(info, "iscsi", "{}: bad login PDU: {}", stream_.peer(), verdict.why);
      co_return std::nullopt;
    }
    const std::size_t at = text.size();
    const uint32_t length = h.data_length();
    if (at + length > kMaxTextBytes) {
      CAIRN_LOG(info, "iscsi", "{}: login text over {} bytes", stream_.peer(), kMaxTextBytes);
      co_return std::nullopt;
    }
    text.resize(at + padded(length));
    if (auto ec = co_await stream_.read(std::span(text).subspan(at))) {
      co_return std::nullopt;
    }
    text.resize(at + length);
    request_ = h;
    if (first_) {
      result_.isid = login_isid(h);
      result_.cid = login_cid(h);
      result_.exp_cmd_sn = h.cmd_sn();
      result_.stat_sn = h.exp_stat_sn();  // any value will do; continuing the initiator's is kind
      stage_ = login_csg(h);
      if (h.b[3] > 0) {  // Version-min
        co_await fail(kStatusUnsupportedVersion, "version-min above 0");
        co_return std::nullopt;
      }
      if (login_tsih(h) != 0) {
        // Adding a connection to a session: MaxConnections is 1.
        co_await fail(kStatusSessionDoesNotExist, "TSIH set: connections cannot join sessions");
        co_return std::nullopt;
      }
    } else if (login_isid(h) != result_.isid || login_tsih(h) != 0) {
      co_await fail(kStatusInitiatorError, "ISID or TSIH changed during login");
      co_return std::nullopt;
    }
    if (login_continue(h)) {
      if (login_transit(h)) {
        co_await fail(kStatusInitiatorError, "both T and C set");
        co_return std::nullopt;
      }
      // More text follows: acknowledge with an empty response (section 11.12.3).
      if (!co_await send(false, login_csg(h), 0, 0, {})) {
        co_return std::nullopt;
      }
      continue;
    }
    auto keys = parse_text(text);
    text.clear();
    if (!keys) {
      co_await fail(kStatusInitiatorError, "malformed login text");
      co_return std::nullopt;
    }
    const uint8_t csg = login_csg(h);
    const uint8_t nsg = login_nsg(h);
    const bool transit = login_transit(h);
    if (csg != stage_ || csg == 2 || csg == 3 || (transit && (nsg <= csg || nsg == 2))) {
      co_await fail(kStatusInitiatorError, "invalid stage transition");
      co_return std::nullopt;
    }
    std::vector<std::byte> out;
    if (first_) {
      first_ = false;
      if (uint16_t status = first_request(*keys)) {
        co_await fail(status, "first login request refused");
        co_return std::nullopt;
      }
    }
    const bool needs_chap = access_ && access_->requires_chap();
    if (csg == 0) {
      if (uint16_t status = security(*keys, out)) {
        co_await fail(status, "security negotiation failed");
        co_return std::nullopt;
      }
    } else if (needs_chap && auth_ != Auth::done) {
      co_await fail(kStatusAuthFailure, "CHAP is required and the initiator skipped it");
      co_return std::nullopt;
    }
    for (const auto& [k, v] : *keys) {
      if (is_login_key(k)) {
        if (k.starts_with("CHAP_") && csg != 0) {
          co_await fail(kStatusInitiatorError, "CHAP keys outside the security stage");
          co_return std::nullopt;
        }
        continue;
      }
      if (!negotiator_.offer(k, v, out)) {
        co_await fail(kStatusInitiatorError, "key '" + k + "' negotiated twice");
        co_return std::nullopt;
      }
    }
    if (csg == 1) {
      negotiator_.declare(out);
    }
    if (!result_.discovery && !tpgt_sent_) {
      tpgt_sent_ = true;
      append_text(out, "TargetPortalGroupTag", std::to_string(options_.portal_group_tag));
    }
    // The target agrees to move on once authentication (if any) is complete.
    bool go = transit;
    if (csg == 0) {
      if (needs_chap) {
        go = go && auth_ == Auth::done;
      } else if (auth_ == Auth::chap) {
        go = false;
      }
    }
    if (!go) {
      if (!co_await send(false, csg, 0, 0, std::move(out))) {
        co_return std::nullopt;
      }
      continue;
    }
    if (nsg != 3) {
      stage_ = nsg;
      if (!co_await send(true, csg, nsg, 0, std::move(out))) {
        co_return std::nullopt;
      }
      continue;
    }
    result_.params = negotiator_.params();
    if (admit_ && !admit_(result_)) {
      co_await fail(kStatusOutOfResources, "volume unavailable");
      co_return std::nullopt;
    }
    result_.tsih = next_tsih();
    if (!co_await send(true, csg, nsg, result_.tsih, std::move(out))) {
      co_return std::nullopt;
    }
    co_return result_;
  }
}

}  // namespace

Task<std::optional<LoginResult>> login(ByteStream& stream, const TargetOptions& options,
                                       const Directory& directory, std::string local_portal,
                                       const std::function<bool(const LoginResult&)>& admit) {
  Login l(stream, options, directory, std::move(local_portal), admit);
  co_return co_await l.run();
}

}  // namespace cairn::target::iscsi
