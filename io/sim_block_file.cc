#include "io/sim_block_file.h"

#include <algorithm>
#include <cstring>
#include <random>

#include "base/assert.h"
#include "io/errors.h"

namespace cairn::io {

SimBlockFile::SimBlockFile(uint64_t size_bytes, uint64_t max_size_bytes)
    : current_(size_bytes), durable_(size_bytes), max_size_bytes_(max_size_bytes) {
  CAIRN_ASSERT(size_bytes % kAlignment == 0);
}

bool SimBlockFile::valid_range(uint64_t offset_bytes, std::size_t length,
                               const void* buffer) const noexcept {
  if (offset_bytes % kAlignment != 0 || length % kAlignment != 0) {
    return false;
  }
  if (check_buffer_alignment_ && reinterpret_cast<uintptr_t>(buffer) % kAlignment != 0) {
    return false;
  }
  return offset_bytes <= current_.size() && length <= current_.size() - offset_bytes;
}

bool SimBlockFile::take_write_budget() noexcept {
  if (!writes_before_failure_) {
    return true;
  }
  if (*writes_before_failure_ == 0) {
    return false;
  }
  --*writes_before_failure_;
  return true;
}

Task<Result<void>> SimBlockFile::read(uint64_t offset_bytes, std::span<std::byte> out) {
  if (yield_) {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  }
  if (!valid_range(offset_bytes, out.size(), out.data())) {
    co_return make_error(errc::invalid_argument);
  }
  std::memcpy(out.data(), current_.data() + offset_bytes, out.size());
  ++reads_;
  co_return Result<void>{};
}

Task<Result<void>> SimBlockFile::write(uint64_t offset_bytes, std::span<const std::byte> data) {
  if (yield_) {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  }
  if (!valid_range(offset_bytes, data.size(), data.data())) {
    co_return make_error(errc::invalid_argument);
  }
  if (!take_write_budget()) {
    co_return make_error(errc::io_error);
  }
  std::memcpy(current_.data() + offset_bytes, data.data(), data.size());
  pending_.push_back({offset_bytes, std::vector<std::byte>(data.begin(), data.end())});
  ++writes_;
  co_return Result<void>{};
}

Task<Result<void>> SimBlockFile::sync() {
  if (yield_) {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  }
  if (writes_before_failure_ && *writes_before_failure_ == 0) {
    co_return make_error(errc::io_error);
  }
  for (const PendingWrite& w : pending_) {
    std::memcpy(durable_.data() + w.offset_bytes, w.data.data(), w.data.size());
  }
  pending_.clear();
  ++syncs_;
  co_return Result<void>{};
}

Task<Result<void>> SimBlockFile::grow(uint64_t new_size_bytes) {
  if (new_size_bytes % kAlignment != 0) {
    co_return make_error(errc::invalid_argument);
  }
  if (max_size_bytes_ != 0 && new_size_bytes > max_size_bytes_) {
    co_return make_error(errc::no_space);
  }
  if (new_size_bytes > current_.size()) {
    current_.resize(new_size_bytes);
    durable_.resize(new_size_bytes);
  }
  co_return Result<void>{};
}

std::size_t SimBlockFile::power_cut(uint64_t seed, CutMode mode) {
  std::mt19937_64 rng(seed);
  std::size_t affected = pending_.size();
  for (const PendingWrite& w : pending_) {
    if (mode == CutMode::drop_all) {
      break;
    }
    // Thirds: dropped, kept whole, torn sector by sector.
    uint64_t fate = rng() % 3;
    if (fate == 0) {
      continue;
    }
    for (uint64_t s = 0; s < w.data.size(); s += kSectorBytes) {
      if (fate == 2 && rng() % 2 == 0) {
        continue;
      }
      std::memcpy(durable_.data() + w.offset_bytes + s, w.data.data() + s, kSectorBytes);
    }
  }
  pending_.clear();
  current_ = durable_;
  return affected;
}

void SimBlockFile::corrupt_sector(uint64_t offset_bytes) {
  CAIRN_ASSERT(offset_bytes < current_.size());
  uint64_t sector = offset_bytes / kSectorBytes * kSectorBytes;
  for (uint64_t i = 0; i < kSectorBytes; i += 37) {
    current_[sector + i] ^= std::byte{0x5a};
    durable_[sector + i] ^= std::byte{0x5a};
  }
}

}  // namespace cairn::io
