#include "base/config.h"

#include <gtest/gtest.h>

namespace cairn {
namespace {

TEST(Config, DefaultsNeedNoFile) {
  Config c;
  EXPECT_EQ(c.nbd_port, 10809);
  EXPECT_EQ(c.data_dir, "cairn-data");
  EXPECT_EQ(c.idle_poll_us, 200u);
}

TEST(Config, FileOverridesSettings) {
  Config c;
  c.load_text(
      "# comment\n[nbd]\nport = 10900 # trailing\n[cache]\nread_bytes = 4M\n"
      "[node]\nidle_poll_us = 0\n",
      "t");
  EXPECT_EQ(c.nbd_port, 10900);
  EXPECT_EQ(c.idle_poll_us, 0u);
  EXPECT_EQ(c.read_cache_bytes, 4u << 20);
}

TEST(Config, RejectsUnknownKeysWithLocation) {
  Config c;
  try {
    c.load_text("[nbd]\nprot = 1\n", "cairn.conf");
    FAIL() << "accepted an unknown key";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("cairn.conf:2"), std::string::npos) << e.what();
  }
}

TEST(Config, RejectsMalformedValues) {
  Config c;
  EXPECT_THROW(c.set("nbd.port", "65536"), ConfigError);
  EXPECT_THROW(c.set("nbd.port", "-1"), ConfigError);
  EXPECT_THROW(c.set("nbd.port", ""), ConfigError);
  EXPECT_THROW(c.set("cache.read_bytes", "12Q"), ConfigError);
  EXPECT_THROW(c.load_text("[nbd\n", "t"), ConfigError);
  EXPECT_THROW(c.load_text("port\n", "t"), ConfigError);
  EXPECT_THROW(c.set("store.address_hash", "md5"), ConfigError);
}

TEST(Config, ParsesSizes) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("1K"), 1024u);
  EXPECT_EQ(parse_size("3g"), 3ull << 30);
  EXPECT_THROW((void)parse_size("16777216T"), ConfigError);  // overflows 64 bits
}

}  // namespace
}  // namespace cairn
