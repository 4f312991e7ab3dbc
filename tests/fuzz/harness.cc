#include "tests/fuzz/harness.h"

#include <cstring>

namespace cairn::fuzz {

Task<std::error_code> MemStream::read(std::span<std::byte> buffer) {
  if (closed_ || input_.size() - pos_ < buffer.size()) {
    pos_ = input_.size();
    co_return make_error_code(asio::error::eof);
  }
  if (!buffer.empty()) {
    std::memcpy(buffer.data(), input_.data() + pos_, buffer.size());
    pos_ += buffer.size();
  }
  co_return std::error_code{};
}

Task<std::error_code> MemStream::write(std::span<const asio::const_buffer> buffers) {
  if (closed_) {
    co_return make_error_code(asio::error::broken_pipe);
  }
  for (const auto& b : buffers) {
    written_ += b.size();
  }
  co_return std::error_code{};
}

blockmap::VolumeConfig FuzzNode::config(const char* name, uint64_t size_bytes, bool read_only,
                                        uint32_t block_size_bytes, uint32_t chunk_size_bytes) {
  blockmap::VolumeConfig c;
  c.name = name;
  c.size_bytes = size_bytes;
  c.read_only = read_only;
  c.block_size_bytes = block_size_bytes;
  c.chunk_size_bytes = chunk_size_bytes;
  return c;
}

void FuzzNode::create(const blockmap::VolumeConfig& config) {
  bool ok = false;
  run([&]() -> Task<void> { ok = static_cast<bool>(co_await volumes.create(config)); });
  CAIRN_ASSERT(ok);
}

}  // namespace cairn::fuzz
