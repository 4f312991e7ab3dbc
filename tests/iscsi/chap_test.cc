// CHAP: known-answer MD5 responses, binary encodings, and the target's exchange (success,
// wrong secret, mutual CHAP, reflection).
#include "target/iscsi/chap.h"

#include <gtest/gtest.h>

namespace cairn::target::iscsi {
namespace {

std::vector<uint8_t> iota16() {
  std::vector<uint8_t> v(16);
  for (std::size_t i = 0; i < v.size(); ++i) {
    v[i] = static_cast<uint8_t>(i);
  }
  return v;
}

KeyValues parse(const std::vector<std::byte>& text) {
  return *parse_text(text);
}

std::string value(const KeyValues& kv, std::string_view key) {
  for (const auto& [k, v] : kv) {
    if (k == key) {
      return v;
    }
  }
  return "<missing>";
}

TEST(Chap, KnownAnswer) {
  // MD5(0x2a || "verysecretpass" || 00 01 .. 0f), computed independently.
  auto r = chap_response(0x2a, "verysecretpass", iota16());
  EXPECT_EQ(encode_hex(r), "0x8ca31ee06d4018998184bfd411f7fe5b");
}

TEST(Chap, BinaryEncodings) {
  EXPECT_EQ(*decode_binary("0x000102"), (std::vector<uint8_t>{0, 1, 2}));
  EXPECT_EQ(*decode_binary("0X0aFf"), (std::vector<uint8_t>{0x0a, 0xff}));
  EXPECT_EQ(*decode_binary("0x102"), (std::vector<uint8_t>{1, 2}));  // odd: leading nibble
  EXPECT_EQ(*decode_binary("0bAAECAwQFBgcICQoLDA0ODw=="), iota16());
  EXPECT_FALSE(decode_binary("0x"));
  EXPECT_FALSE(decode_binary("0xzz"));
  EXPECT_FALSE(decode_binary("1234"));
  EXPECT_FALSE(decode_binary("0b!!!!"));
  EXPECT_FALSE(decode_binary("0bAA=A"));
}

ChapTarget challenged(const ChapSecrets& secrets, std::vector<std::byte>& out) {
  ChapTarget t(secrets);
  t.set_challenge_for_testing(0x2a, iota16());
  KeyValues a{{"CHAP_A", "7,5"}};
  EXPECT_EQ(t.step(a, out), ChapTarget::Step::more);
  return t;
}

TEST(Chap, TargetAcceptsTheRightSecret) {
  std::vector<std::byte> out;
  ChapTarget t = challenged({"alice", "verysecretpass", "", ""}, out);
  auto sent = parse(out);
  EXPECT_EQ(value(sent, "CHAP_A"), "5");
  EXPECT_EQ(value(sent, "CHAP_I"), "42");
  EXPECT_EQ(value(sent, "CHAP_C"), "0x000102030405060708090a0b0c0d0e0f");
  out.clear();
  KeyValues reply{{"CHAP_N", "alice"}, {"CHAP_R", "0x8ca31ee06d4018998184bfd411f7fe5b"}};
  EXPECT_EQ(t.step(reply, out), ChapTarget::Step::success);
  EXPECT_TRUE(out.empty());
}

TEST(Chap, TargetRefusesAWrongSecretOrUser) {
  std::vector<std::byte> out;
  ChapTarget t = challenged({"alice", "verysecretpass", "", ""}, out);
  auto wrong = chap_response(0x2a, "notthesecret!", iota16());
  KeyValues reply{{"CHAP_N", "alice"}, {"CHAP_R", encode_hex(wrong)}};
  EXPECT_EQ(t.step(reply, out), ChapTarget::Step::failure);

  ChapTarget u = challenged({"alice", "verysecretpass", "", ""}, out);
  KeyValues other{{"CHAP_N", "bob"}, {"CHAP_R", "0x8ca31ee06d4018998184bfd411f7fe5b"}};
  EXPECT_EQ(u.step(other, out), ChapTarget::Step::failure);

  ChapTarget v = challenged({"alice", "verysecretpass", "", ""}, out);
  KeyValues malformed{{"CHAP_N", "alice"}, {"CHAP_R", "0x1234"}};
  EXPECT_EQ(v.step(malformed, out), ChapTarget::Step::failure);
}

TEST(Chap, TargetNeedsMd5) {
  ChapTarget t({"alice", "verysecretpass", "", ""});
  std::vector<std::byte> out;
  KeyValues a{{"CHAP_A", "6,7"}};
  EXPECT_EQ(t.step(a, out), ChapTarget::Step::failure);
  EXPECT_EQ(value(parse(out), "CHAP_A"), "Reject");
}

TEST(Chap, MutualChapAnswersTheInitiatorsChallenge) {
  std::vector<std::byte> out;
  ChapTarget t = challenged({"alice", "verysecretpass", "target", "targetsecret12"}, out);
  out.clear();
  KeyValues reply{{"CHAP_N", "alice"},
                  {"CHAP_R", "0x8ca31ee06d4018998184bfd411f7fe5b"},
                  {"CHAP_I", "7"},
                  {"CHAP_C", "0x00112233445566778899aabbccddeeff"}};
  EXPECT_EQ(t.step(reply, out), ChapTarget::Step::success);
  auto sent = parse(out);
  EXPECT_EQ(value(sent, "CHAP_N"), "target");
  EXPECT_EQ(value(sent, "CHAP_R"), "0xd4ae429e836e7b46bce4e5269cf0e88e");
}

TEST(Chap, MutualChapRefusesReflectionAndMissingSecret) {
  std::vector<std::byte> out;
  ChapTarget t = challenged({"alice", "verysecretpass", "target", "targetsecret12"}, out);
  KeyValues reflected{{"CHAP_N", "alice"},
                      {"CHAP_R", "0x8ca31ee06d4018998184bfd411f7fe5b"},
                      {"CHAP_I", "42"},
                      {"CHAP_C", "0x000102030405060708090a0b0c0d0e0f"}};
  EXPECT_EQ(t.step(reflected, out), ChapTarget::Step::failure);

  ChapTarget u = challenged({"alice", "verysecretpass", "", ""}, out);
  KeyValues asks{{"CHAP_N", "alice"},
                 {"CHAP_R", "0x8ca31ee06d4018998184bfd411f7fe5b"},
                 {"CHAP_I", "7"},
                 {"CHAP_C", "0x00112233445566778899aabbccddeeff"}};
  EXPECT_EQ(u.step(asks, out), ChapTarget::Step::failure);
}

TEST(Chap, RandomChallengesDiffer) {
  ChapTarget a({"alice", "verysecretpass", "", ""});
  ChapTarget b({"alice", "verysecretpass", "", ""});
  std::vector<std::byte> oa, ob;
  KeyValues req{{"CHAP_A", "5"}};
  ASSERT_EQ(a.step(req, oa), ChapTarget::Step::more);
  ASSERT_EQ(b.step(req, ob), ChapTarget::Step::more);
  EXPECT_NE(value(parse(oa), "CHAP_C"), value(parse(ob), "CHAP_C"));
  EXPECT_EQ(value(parse(oa), "CHAP_C").size(), 2u + 64u);  // 32 random bytes in hex
}

}  // namespace
}  // namespace cairn::target::iscsi
