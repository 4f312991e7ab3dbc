#include "target/iscsi/crc32c.h"

#include <boost/crc.hpp>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#endif

namespace cairn::target::iscsi {

uint32_t crc32c_table(std::span<const std::byte> data, uint32_t crc) noexcept {
  // Reflected CRC-32C. Boost takes the initial remainder unreflected, so resuming from a
  // finished CRC undoes the final XOR and reflects the register back.
  uint32_t rem = crc ^ 0xFFFFFFFFu;
  uint32_t unreflected = 0;
  for (int i = 0; i < 32; ++i) {
    unreflected = unreflected << 1 | ((rem >> i) & 1);
  }
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> c(unreflected);
  c.process_bytes(data.data(), data.size());
  return c.checksum();
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(std::span<const std::byte> data,
                                                        uint32_t crc) noexcept {
  uint64_t c = crc ^ 0xFFFFFFFFu;
  const std::byte* p = data.data();
  std::size_t n = data.size();
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<uint32_t>(c);
  while (n > 0) {
    c32 = _mm_crc32_u8(c32, static_cast<uint8_t>(*p));
    ++p;
    --n;
  }
  return c32 ^ 0xFFFFFFFFu;
}

bool crc32c_hardware_available() noexcept {
  static const bool kAvailable = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &c, &d) == 0) {
      return false;
    }
    return (c & bit_SSE4_2) != 0;
  }();
  return kAvailable;
}
#else
uint32_t crc32c_sse42(std::span<const std::byte> data, uint32_t crc) noexcept {
  return crc32c_table(data, crc);
}
bool crc32c_hardware_available() noexcept {
  return false;
}
#endif

uint32_t crc32c(std::span<const std::byte> data, uint32_t crc) noexcept {
  return crc32c_hardware_available() ? crc32c_sse42(data, crc) : crc32c_table(data, crc);
}

}  // namespace cairn::target::iscsi
