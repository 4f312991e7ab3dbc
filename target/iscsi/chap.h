// CHAP authentication for the iSCSI security stage (RFC 1994, RFC 7143 section 12.1.3), with
// CHAP_A=5 (MD5, from nettle) and optional mutual CHAP.
//
// The target side: ChapTarget answers the initiator's CHAP_A with a random identifier and
// challenge (libsodium's generator), then checks CHAP_N/CHAP_R against the volume's user and
// secret and, when the initiator sends its own CHAP_I/CHAP_C, proves the mutual secret. Binary
// values are accepted in hex (0x...) and base64 (0b...) and sent in hex.
//
// Threading: one ChapTarget per login; plain value otherwise.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "target/iscsi/text.h"

namespace cairn::target::iscsi {

// MD5(id || secret || challenge), the CHAP response.
[[nodiscard]] std::array<uint8_t, 16> chap_response(uint8_t id, std::string_view secret,
                                                    std::span<const uint8_t> challenge);
// "0x" + lowercase hex.
[[nodiscard]] std::string encode_hex(std::span<const uint8_t> bytes);
// Decodes a binary value: 0x/0X hex or 0b/0B base64 (RFC 7143 section 6.1). nullopt when
// malformed or empty.
[[nodiscard]] std::optional<std::vector<uint8_t>> decode_binary(std::string_view value);

struct ChapSecrets {
  std::string user, secret;                // the initiator must know these
  std::string mutual_user, mutual_secret;  // the target proves these (mutual CHAP)
};

class ChapTarget {
 public:
  enum class Step : uint8_t {
    more,     // send `out`, wait for the next login request
    success,  // authenticated; send `out` (the mutual answer, if any) and move on
    failure,  // authentication failure (login status 0x0201)
  };
  // `challenge_bytes` is the length of the random challenge (16 to 1024).
  explicit ChapTarget(ChapSecrets secrets, std::size_t challenge_bytes = 32);

  // Feeds the CHAP_* keys of one login request.
  Step step(const KeyValues& keys, std::vector<std::byte>& out);
  [[nodiscard]] const std::string& failure_reason() const noexcept { return why_; }

  // For known-answer tests: the next challenge and identifier instead of random ones.
  void set_challenge_for_testing(uint8_t id, std::vector<uint8_t> challenge);

 private:
  Step fail(std::string why);

  ChapSecrets secrets_;
  std::size_t challenge_bytes_;
  bool challenged_ = false;
  uint8_t id_ = 0;
  std::vector<uint8_t> challenge_;
  std::optional<std::pair<uint8_t, std::vector<uint8_t>>> fixed_;
  std::string why_;
};

}  // namespace cairn::target::iscsi
