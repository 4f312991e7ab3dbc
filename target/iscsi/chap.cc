#include "target/iscsi/chap.h"

#include <nettle/md5.h>
#include <sodium.h>

#include <algorithm>

namespace cairn::target::iscsi {
namespace {

const std::string* find(const KeyValues& keys, std::string_view key) {
  for (const auto& [k, v] : keys) {
    if (k == key) {
      return &v;
    }
  }
  return nullptr;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

int base64_digit(char c) {
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= 'a' && c <= 'z') {
    return c - 'a' + 26;
  }
  if (c >= '0' && c <= '9') {
    return c - '0' + 52;
  }
  if (c == '+') {
    return 62;
  }
  if (c == '/') {
    return 63;
  }
  return -1;
}

}  // namespace

std::array<uint8_t, 16> chap_response(uint8_t id, std::string_view secret,
                                      std::span<const uint8_t> challenge) {
  md5_ctx ctx;
  md5_init(&ctx);
  md5_update(&ctx, 1, &id);
  md5_update(&ctx, secret.size(), reinterpret_cast<const uint8_t*>(secret.data()));
  md5_update(&ctx, challenge.size(), challenge.data());
  std::array<uint8_t, 16> out{};
  md5_digest(&ctx, out.size(), out.data());
  return out;
}

std::string encode_hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "0x";
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::optional<std::vector<uint8_t>> decode_binary(std::string_view v) {
  if (v.size() < 3 || v[0] != '0') {
    return std::nullopt;
  }
  const char form = v[1];
  v.remove_prefix(2);
  std::vector<uint8_t> out;
  if (form == 'x' || form == 'X') {
    if (v.size() % 2 != 0) {
      // An odd count has an implied leading zero nibble.
      int lo = hex_digit(v[0]);
      if (lo < 0) {
        return std::nullopt;
      }
      out.push_back(static_cast<uint8_t>(lo));
      v.remove_prefix(1);
    }
    for (std::size_t i = 0; i < v.size(); i += 2) {
      int hi = hex_digit(v[i]);
      int lo = hex_digit(v[i + 1]);
      if (hi < 0 || lo < 0) {
        return std::nullopt;
      }
      out.push_back(static_cast<uint8_t>(hi << 4 | lo));
    }
    return out;
  }
  if (form == 'b' || form == 'B') {
    uint32_t acc = 0;
    int bits = 0;
    std::size_t pad = 0;
    for (char c : v) {
      if (c == '=') {
        ++pad;
        continue;
      }
      int d = base64_digit(c);
      if (d < 0 || pad > 0) {
        return std::nullopt;
      }
      acc = acc << 6 | static_cast<uint32_t>(d);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out.push_back(static_cast<uint8_t>(acc >> bits));
        acc &= (1u << bits) - 1;
      }
    }
    if (pad > 2 || out.empty()) {
      return std::nullopt;
    }
    return out;
  }
  return std::nullopt;
}

ChapTarget::ChapTarget(ChapSecrets secrets, std::size_t challenge_bytes)
    : secrets_(std::move(secrets)),
      challenge_bytes_(std::clamp<std::size_t>(challenge_bytes, 16, 1024)) {}

void ChapTarget::set_challenge_for_testing(uint8_t id, std::vector<uint8_t> challenge) {
  fixed_.emplace(id, std::move(challenge));
}

ChapTarget::Step ChapTarget::fail(std::string why) {
  why_ = std::move(why);
  return Step::failure;
}

ChapTarget::Step ChapTarget::step(const KeyValues& keys, std::vector<std::byte>& out) {
  if (!challenged_) {
    const std::string* algorithms = find(keys, "CHAP_A");
    if (algorithms == nullptr) {
      return fail("no CHAP_A offered");
    }
    bool md5 = false;
    std::string_view list = *algorithms;
    while (!list.empty()) {
      auto comma = list.find(',');
      if (list.substr(0, comma) == "5") {
        md5 = true;
      }
      list.remove_prefix(comma == std::string_view::npos ? list.size() : comma + 1);
    }
    if (!md5) {
      append_text(out, "CHAP_A", "Reject");
      return fail("initiator does not offer CHAP_A=5 (MD5)");
    }
    if (fixed_) {
      id_ = fixed_->first;
      challenge_ = fixed_->second;
    } else {
      challenge_.resize(challenge_bytes_);
      randombytes_buf(challenge_.data(), challenge_.size());
      randombytes_buf(&id_, 1);
    }
    challenged_ = true;
    append_text(out, "CHAP_A", "5");
    append_text(out, "CHAP_I", std::to_string(id_));
    append_text(out, "CHAP_C", encode_hex(challenge_));
    return Step::more;
  }
  const std::string* name = find(keys, "CHAP_N");
  const std::string* response = find(keys, "CHAP_R");
  if (name == nullptr || response == nullptr) {
    return fail("CHAP_N or CHAP_R missing");
  }
  auto r = decode_binary(*response);
  if (!r || r->size() != 16) {
    return fail("CHAP_R is not a 16-byte MD5 digest");
  }
  auto want = chap_response(id_, secrets_.secret, challenge_);
  // Compare everything in constant time, the name too, so timing tells nothing.
  bool name_ok = *name == secrets_.user;
  bool response_ok = sodium_memcmp(want.data(), r->data(), want.size()) == 0;
  if (!name_ok || !response_ok) {
    return fail("CHAP response for user '" + *name + "' does not match");
  }
  const std::string* mutual_id = find(keys, "CHAP_I");
  const std::string* mutual_challenge = find(keys, "CHAP_C");
  if (mutual_id == nullptr && mutual_challenge == nullptr) {
    return Step::success;
  }
  if (mutual_id == nullptr || mutual_challenge == nullptr) {
    return fail("mutual CHAP needs both CHAP_I and CHAP_C");
  }
  if (secrets_.mutual_secret.empty()) {
    return fail("initiator asks for mutual CHAP, which this volume does not configure");
  }
  auto id = parse_number(*mutual_id);
  auto c = decode_binary(*mutual_challenge);
  if (!id || *id > 255 || !c || c->size() > 1024) {
    return fail("malformed mutual CHAP_I or CHAP_C");
  }
  if (*c == challenge_) {
    return fail("initiator reflected the target's challenge");
  }
  auto answer = chap_response(static_cast<uint8_t>(*id), secrets_.mutual_secret, *c);
  append_text(out, "CHAP_N", secrets_.mutual_user);
  append_text(out, "CHAP_R", encode_hex(answer));
  return Step::success;
}

}  // namespace cairn::target::iscsi
