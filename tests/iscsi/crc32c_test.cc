// CRC32C against known vectors (RFC 7143 appendix B.4 and the standard check value), on both
// the SSE4.2 and the table implementation.
#include "target/iscsi/crc32c.h"

#include <gtest/gtest.h>

#include <numeric>
#include <string_view>
#include <vector>

namespace cairn::target::iscsi {
namespace {

std::vector<std::byte> bytes(std::size_t n, uint8_t fill) {
  return std::vector<std::byte>(n, std::byte{fill});
}

template <class F>
void check_vectors(F crc) {
  std::string_view check = "123456789";
  EXPECT_EQ(crc(std::as_bytes(std::span(check.data(), check.size())), 0), 0xE3069283u);
  EXPECT_EQ(crc(bytes(32, 0), 0), 0x8A9136AAu);     // B.4: 32 bytes of zeros
  EXPECT_EQ(crc(bytes(32, 0xFF), 0), 0x62A8AB43u);  // B.4: 32 bytes of ones
  std::vector<std::byte> inc(32);
  for (std::size_t i = 0; i < inc.size(); ++i) {
    inc[i] = std::byte{static_cast<uint8_t>(i)};
  }
  EXPECT_EQ(crc(inc, 0), 0x46DD794Eu);  // B.4: incrementing bytes
  // Chaining equals one pass, at every split (covers the 8-byte and tail loops).
  uint32_t whole = crc(inc, 0);
  for (std::size_t cut = 0; cut <= inc.size(); ++cut) {
    auto a = std::span(inc).first(cut);
    auto b = std::span(inc).subspan(cut);
    EXPECT_EQ(crc(b, crc(a, 0)), whole) << cut;
  }
  EXPECT_EQ(crc({}, 0), 0u);
}

TEST(Crc32c, TableKnownVectors) {
  check_vectors(crc32c_table);
}

TEST(Crc32c, HardwareKnownVectors) {
  if (!crc32c_hardware_available()) {
    GTEST_SKIP() << "CPU has no SSE4.2";
  }
  check_vectors(crc32c_sse42);
}

TEST(Crc32c, ImplementationsAgreeOnOddLengths) {
  std::vector<std::byte> data(1000);
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = std::byte{static_cast<uint8_t>(i * 31 + 7)};
  }
  for (std::size_t n : {1u, 3u, 7u, 8u, 9u, 63u, 64u, 65u, 999u, 1000u}) {
    auto s = std::span(data).first(n);
    EXPECT_EQ(crc32c(s), crc32c_table(s)) << n;
  }
}

}  // namespace
}  // namespace cairn::target::iscsi
