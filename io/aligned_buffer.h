// AlignedBuffer: a heap buffer aligned for O_DIRECT I/O (BlockFile::kAlignment).
//
// Owns its memory; the contents start zeroed. Sizes are rounded up to the alignment so that a
// buffer can always be handed to an O_DIRECT read or write whole. Not thread-safe; move-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

#include "base/assert.h"

namespace cairn::io {

class AlignedBuffer {
 public:
  static constexpr std::size_t kAlignment = 4096;

  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t size_bytes) { resize(size_bytes); }

  // Discards the contents and makes the buffer at least `size_bytes` long, zeroed.
  void resize(std::size_t size_bytes) {
    std::size_t rounded = (size_bytes + kAlignment - 1) / kAlignment * kAlignment;
    data_.reset();
    size_ = 0;
    if (rounded == 0) {
      return;
    }
    void* p = std::aligned_alloc(kAlignment, rounded);
    CAIRN_ASSERT(p != nullptr);
    std::memset(p, 0, rounded);
    data_.reset(static_cast<std::byte*>(p));
    size_ = rounded;
  }

  [[nodiscard]] std::byte* data() noexcept { return data_.get(); }
  [[nodiscard]] const std::byte* data() const noexcept { return data_.get(); }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::span<std::byte> span() noexcept { return {data_.get(), size_}; }
  [[nodiscard]] std::span<const std::byte> span() const noexcept { return {data_.get(), size_}; }

 private:
  struct Free {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> data_;
  std::size_t size_ = 0;
};

}  // namespace cairn::io
