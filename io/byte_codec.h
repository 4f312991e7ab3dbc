// ByteWriter / ByteReader: little-endian encoding of journal records (the store index and
// meta store journals). The reader never reads past its span: every get reports failure
// instead, so a malformed record is an error value, not a crash.
//
// Not thread-safe; the reader borrows its span for its lifetime.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

namespace cairn::io {

static_assert(std::endian::native == std::endian::little, "records are little-endian");

class ByteWriter {
 public:
  template <class T>
  requires std::is_trivially_copyable_v<T>
  void put(const T& v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out_.insert(out_.end(), p, p + sizeof v);
  }
  void put_bytes(std::span<const std::byte> bytes) {
    out_.insert(out_.end(), bytes.begin(), bytes.end());
  }
  // A u32 length followed by the bytes.
  void put_string(std::string_view s) {
    put(static_cast<uint32_t>(s.size()));
    put_bytes(std::as_bytes(std::span(s.data(), s.size())));
  }
  void clear() noexcept { out_.clear(); }
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return out_; }

 private:
  std::vector<std::byte> out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> in) noexcept : in_(in) {}

  template <class T>
  requires std::is_trivially_copyable_v<T>
  [[nodiscard]] bool get(T& v) noexcept {
    if (in_.size() - pos_ < sizeof v) {
      return false;
    }
    std::memcpy(&v, in_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return true;
  }
  [[nodiscard]] bool get_string(std::string_view& s) noexcept {
    uint32_t n = 0;
    if (!get(n) || in_.size() - pos_ < n) {
      return false;
    }
    s = std::string_view(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return true;
  }
  [[nodiscard]] bool done() const noexcept { return pos_ == in_.size(); }

 private:
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
};

}  // namespace cairn::io
