// CRC32C (Castagnoli, polynomial 0x1EDC6F41): the iSCSI header and data digest (RFC 7143
// section 13.1 and appendix B.4).
//
// crc32c() uses the SSE4.2 CRC32 instruction when the CPU has it (checked once, at first use)
// and a Boost.CRC table otherwise. Both are exposed so tests can check each against known
// vectors. Thread-safe, no state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace cairn::target::iscsi {

// Continues a CRC32C: pass the previous result as `crc` (0 to start). The value returned is
// the finished CRC (already complemented), so chaining calls equals one call over the
// concatenation.
[[nodiscard]] uint32_t crc32c(std::span<const std::byte> data, uint32_t crc = 0) noexcept;
[[nodiscard]] uint32_t crc32c_table(std::span<const std::byte> data, uint32_t crc = 0) noexcept;
// Only valid when crc32c_hardware_available().
[[nodiscard]] uint32_t crc32c_sse42(std::span<const std::byte> data, uint32_t crc = 0) noexcept;
[[nodiscard]] bool crc32c_hardware_available() noexcept;

}  // namespace cairn::target::iscsi
