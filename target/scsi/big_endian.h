// Big-endian field access for CDBs, parameter lists and parameter data: SCSI puts every
// multi-byte field most significant byte first (SPC-5 3.6.2 "Numeric values").
//
// Header-only and stateless. Readers take a pointer to the field's first byte and writers a
// buffer and the field's offset; the caller has checked that the whole field is in bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace cairn::target::scsi {

[[nodiscard]] inline uint16_t get16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
[[nodiscard]] inline uint32_t get24(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 16 | static_cast<uint32_t>(p[1]) << 8 | p[2];
}
[[nodiscard]] inline uint32_t get32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}
[[nodiscard]] inline uint64_t get64(const uint8_t* p) {
  return static_cast<uint64_t>(get32(p)) << 32 | get32(p + 4);
}

// `Byte` is uint8_t or std::byte: data-in buffers are one or the other.
template <class Byte>
void put16(std::vector<Byte>& out, size_t at, uint16_t v) {
  out[at] = Byte(v >> 8);
  out[at + 1] = Byte(v & 0xFF);
}
template <class Byte>
void put24(std::vector<Byte>& out, size_t at, uint32_t v) {
  out[at] = Byte((v >> 16) & 0xFF);
  put16(out, at + 1, static_cast<uint16_t>(v & 0xFFFF));
}
template <class Byte>
void put32(std::vector<Byte>& out, size_t at, uint32_t v) {
  put16(out, at, static_cast<uint16_t>(v >> 16));
  put16(out, at + 2, static_cast<uint16_t>(v & 0xFFFF));
}
template <class Byte>
void put64(std::vector<Byte>& out, size_t at, uint64_t v) {
  put32(out, at, static_cast<uint32_t>(v >> 32));
  put32(out, at + 4, static_cast<uint32_t>(v & 0xFFFFFFFF));
}

}  // namespace cairn::target::scsi
