// Text keys: parsing limits and RFC 7143 section 6 negotiation of every supported key.
#include "target/iscsi/text.h"

#include <gtest/gtest.h>

#include <string>

namespace cairn::target::iscsi {
namespace {

std::vector<std::byte> raw(std::string_view s) {
  auto b = std::as_bytes(std::span(s.data(), s.size()));
  return {b.begin(), b.end()};
}

std::string answer(Negotiator& n, const std::string& key, const std::string& value) {
  std::vector<std::byte> out;
  EXPECT_TRUE(n.offer(key, value, out));
  auto kv = parse_text(out);
  if (!kv || kv->empty()) {
    return "<none>";
  }
  EXPECT_EQ(kv->front().first, key);
  return kv->front().second;
}

TEST(Text, ParsesPairs) {
  using namespace std::string_literals;
  auto kv = parse_text(raw("InitiatorName=iqn.x\0SessionType=Normal\0"s));
  ASSERT_TRUE(kv);
  ASSERT_EQ(kv->size(), 2u);
  EXPECT_EQ((*kv)[0].first, "InitiatorName");
  EXPECT_EQ((*kv)[1].second, "Normal");
  EXPECT_EQ(parse_text(raw("A=1"))->size(), 1u);         // no trailing NUL
  EXPECT_EQ(parse_text(raw("A=1\0\0\0"s))->size(), 1u);  // padding
  EXPECT_EQ(parse_text({})->size(), 0u);
  EXPECT_EQ((*parse_text(raw("Empty=\0"s)))[0].second, "");
}

TEST(Text, RefusesMalformedText) {
  using namespace std::string_literals;
  EXPECT_FALSE(parse_text(raw("NoEquals\0"s)));
  EXPECT_FALSE(parse_text(raw("=value\0"s)));
  EXPECT_FALSE(parse_text(raw("Bad Key=1\0"s)));
  EXPECT_FALSE(parse_text(raw("A=1\0\0B=2\0"s)));  // an empty pair in the middle
  EXPECT_FALSE(parse_text(raw(std::string(64, 'K') + "=1")));
  EXPECT_TRUE(parse_text(raw(std::string(63, 'K') + "=1")));
  EXPECT_FALSE(parse_text(raw("K=" + std::string(kMaxValueBytes + 1, 'v'))));
  std::string many;
  for (std::size_t i = 0; i <= kMaxKeys; ++i) {
    many += "K" + std::to_string(i) + "=1" + '\0';
  }
  EXPECT_FALSE(parse_text(raw(many)));
}

TEST(Text, Numbers) {
  EXPECT_EQ(*parse_number("8192"), 8192u);
  EXPECT_EQ(*parse_number("0x2000"), 8192u);
  EXPECT_FALSE(parse_number(""));
  EXPECT_FALSE(parse_number("12a"));
  EXPECT_FALSE(parse_number("-1"));
  EXPECT_FALSE(parse_number("99999999999999999999999"));
}

TEST(Negotiation, Digests) {
  Negotiator n({}, false);
  EXPECT_EQ(answer(n, "HeaderDigest", "CRC32C,None"), "CRC32C");
  EXPECT_EQ(answer(n, "DataDigest", "None,CRC32C"), "None");
  EXPECT_TRUE(n.params().header_digest);
  EXPECT_FALSE(n.params().data_digest);
  Negotiator m({}, false);
  EXPECT_EQ(answer(m, "HeaderDigest", "MD5"), "Reject");
}

TEST(Negotiation, NumbersTakeMinimumOrMaximum) {
  TargetLimits limits;
  limits.max_burst = 1 << 20;
  limits.max_outstanding_r2t = 16;
  limits.default_time2wait = 2;
  Negotiator n(limits, false);
  EXPECT_EQ(answer(n, "MaxBurstLength", "16776192"), std::to_string(1 << 20));
  EXPECT_EQ(answer(n, "FirstBurstLength", "65536"), "65536");
  EXPECT_EQ(answer(n, "MaxOutstandingR2T", "64"), "16");
  EXPECT_EQ(answer(n, "DefaultTime2Wait", "0"), "2");     // maximum
  EXPECT_EQ(answer(n, "DefaultTime2Retain", "20"), "0");  // minimum
  EXPECT_EQ(answer(n, "ErrorRecoveryLevel", "2"), "0");
  EXPECT_EQ(answer(n, "MaxConnections", "8"), "1");
  SessionParams p = n.params();
  EXPECT_EQ(p.max_burst, 1u << 20);
  EXPECT_EQ(p.first_burst, 65536u);
  EXPECT_EQ(p.max_outstanding_r2t, 16u);
  EXPECT_EQ(p.error_recovery_level, 0u);
}

TEST(Negotiation, FirstBurstIsClippedToMaxBurst) {
  Negotiator n({}, false);
  answer(n, "MaxBurstLength", "65536");
  answer(n, "FirstBurstLength", "262144");
  EXPECT_EQ(n.params().first_burst, 65536u);
}

TEST(Negotiation, Booleans) {
  TargetLimits limits;  // ImmediateData=Yes, InitialR2T=No
  Negotiator n(limits, false);
  EXPECT_EQ(answer(n, "ImmediateData", "Yes"), "Yes");
  EXPECT_EQ(answer(n, "InitialR2T", "No"), "No");
  EXPECT_EQ(answer(n, "DataPDUInOrder", "No"), "Yes");  // OR with the target's Yes
  EXPECT_EQ(answer(n, "DataSequenceInOrder", "Yes"), "Yes");
  EXPECT_FALSE(n.params().initial_r2t);
  Negotiator m(limits, false);
  EXPECT_EQ(answer(m, "ImmediateData", "No"), "No");  // AND
  EXPECT_EQ(answer(m, "InitialR2T", "Yes"), "Yes");   // OR
  EXPECT_EQ(answer(m, "DataPDUInOrder", "maybe"), "Reject");
}

TEST(Negotiation, BadValuesAreRejected) {
  Negotiator n({}, false);
  EXPECT_EQ(answer(n, "MaxBurstLength", "511"), "Reject");
  EXPECT_EQ(answer(n, "FirstBurstLength", "abc"), "Reject");
  EXPECT_EQ(answer(n, "MaxOutstandingR2T", "0"), "Reject");
  EXPECT_EQ(answer(n, "DefaultTime2Wait", "3601"), "Reject");
}

TEST(Negotiation, UnknownKeysAreNotUnderstood) {
  Negotiator n({}, false);
  EXPECT_EQ(answer(n, "X-com.example.Foo", "1"), "NotUnderstood");
  EXPECT_EQ(answer(n, "Bogus", "1"), "NotUnderstood");
  EXPECT_EQ(answer(n, "IFMarker", "No"), "No");
}

TEST(Negotiation, DiscoveryMakesSessionKeysIrrelevant) {
  Negotiator n({}, true);
  EXPECT_EQ(answer(n, "MaxBurstLength", "65536"), "Irrelevant");
  EXPECT_EQ(answer(n, "InitialR2T", "No"), "Irrelevant");
  EXPECT_EQ(answer(n, "HeaderDigest", "None"), "None");
}

TEST(Negotiation, DeclarativeAndRepeatedKeys) {
  Negotiator n({}, false);
  EXPECT_EQ(answer(n, "MaxRecvDataSegmentLength", "65536"), "<none>");  // declarative
  EXPECT_EQ(n.params().initiator_max_recv, 65536u);
  EXPECT_EQ(n.params().target_max_recv, 8192u);  // not declared yet: the default
  std::vector<std::byte> out;
  n.declare(out);
  EXPECT_EQ(parse_text(out)->front().first, "MaxRecvDataSegmentLength");
  EXPECT_EQ(n.params().target_max_recv, TargetLimits{}.max_recv_data_segment);
  EXPECT_FALSE(n.offer("MaxRecvDataSegmentLength", "8192", out));  // negotiated twice
}

}  // namespace
}  // namespace cairn::target::iscsi
