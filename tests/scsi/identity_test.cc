#include "target/scsi/identity.h"

#include <gtest/gtest.h>

namespace cairn::target::scsi {
namespace {

TEST(Identity, StableAndDerivedFromTheNameOnly) {
  Identity a = identity_for("vol1");
  Identity b = identity_for("vol1");
  EXPECT_EQ(a.naa, b.naa);
  EXPECT_EQ(a.serial, b.serial);
  Identity c = identity_for("vol2");
  EXPECT_NE(a.naa, c.naa);
  EXPECT_NE(a.serial, c.serial);
}

TEST(Identity, NaaType6WithCairnCompanyId) {
  Identity a = identity_for("some-volume");
  EXPECT_EQ(a.naa[0] >> 4, 6);
  uint32_t company = (uint32_t{a.naa[0]} & 0xF) << 20 | uint32_t{a.naa[1]} << 12 |
                     uint32_t{a.naa[2]} << 4 | uint32_t{a.naa[3]} >> 4;
  EXPECT_EQ(company, kNaaCompanyId);
}

TEST(Identity, SerialIsPrintableAsciiAtMost32) {
  Identity a = identity_for("");
  ASSERT_FALSE(a.serial.empty());
  EXPECT_LE(a.serial.size(), 32u);
  for (char ch : a.serial) {
    EXPECT_TRUE((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'F')) << ch;
  }
}

}  // namespace
}  // namespace cairn::target::scsi
