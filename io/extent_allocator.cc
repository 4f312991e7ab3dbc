#include "io/extent_allocator.h"

#include "base/assert.h"
#include "io/block_file.h"

namespace cairn::io {

ExtentAllocator::ExtentAllocator(uint64_t begin_bytes, uint64_t end_bytes)
    : begin_(begin_bytes), end_(end_bytes), cursor_(begin_bytes), free_bytes_(0) {
  CAIRN_ASSERT(begin_bytes % BlockFile::kAlignment == 0);
  CAIRN_ASSERT(end_bytes % BlockFile::kAlignment == 0);
  CAIRN_ASSERT(begin_bytes <= end_bytes);
  if (end_bytes > begin_bytes) {
    free_.emplace(begin_bytes, end_bytes - begin_bytes);
    free_bytes_ = end_bytes - begin_bytes;
  }
}

std::optional<uint64_t> ExtentAllocator::take_from(std::map<uint64_t, uint64_t>::iterator it,
                                                   uint64_t length_bytes) {
  uint64_t offset = it->first;
  uint64_t length = it->second;
  free_.erase(it);
  if (length > length_bytes) {
    free_.emplace(offset + length_bytes, length - length_bytes);
  }
  free_bytes_ -= length_bytes;
  cursor_ = offset + length_bytes;
  return offset;
}

std::optional<uint64_t> ExtentAllocator::allocate(uint64_t length_bytes) {
  CAIRN_ASSERT(length_bytes > 0 && length_bytes % BlockFile::kAlignment == 0);
  if (length_bytes > free_bytes_) {
    return std::nullopt;
  }
  // Next fit: the first extent at or after the cursor, then from the start.
  for (auto it = free_.lower_bound(cursor_); it != free_.end(); ++it) {
    if (it->second >= length_bytes) {
      return take_from(it, length_bytes);
    }
  }
  for (auto it = free_.begin(); it != free_.end() && it->first < cursor_; ++it) {
    if (it->second >= length_bytes) {
      return take_from(it, length_bytes);
    }
  }
  return std::nullopt;
}

bool ExtentAllocator::reserve(uint64_t offset_bytes, uint64_t length_bytes) {
  auto it = free_.upper_bound(offset_bytes);
  if (it == free_.begin()) {
    return false;
  }
  --it;
  uint64_t start = it->first;
  uint64_t length = it->second;
  if (offset_bytes + length_bytes > start + length) {
    return false;
  }
  free_.erase(it);
  if (offset_bytes > start) {
    free_.emplace(start, offset_bytes - start);
  }
  if (start + length > offset_bytes + length_bytes) {
    free_.emplace(offset_bytes + length_bytes, start + length - offset_bytes - length_bytes);
  }
  free_bytes_ -= length_bytes;
  return true;
}

void ExtentAllocator::free(uint64_t offset_bytes, uint64_t length_bytes) {
  CAIRN_ASSERT(offset_bytes >= begin_ && offset_bytes + length_bytes <= end_);
  CAIRN_ASSERT(length_bytes > 0);
  const uint64_t freed = length_bytes;
  auto next = free_.lower_bound(offset_bytes);
  CAIRN_ASSERT(next == free_.end() || next->first >= offset_bytes + length_bytes);
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    CAIRN_ASSERT(prev->first + prev->second <= offset_bytes);  // no double free
    if (prev->first + prev->second == offset_bytes) {
      offset_bytes = prev->first;
      length_bytes += prev->second;
      free_.erase(prev);
    }
  }
  if (next != free_.end() && next->first == offset_bytes + length_bytes) {
    length_bytes += next->second;
    free_.erase(next);
  }
  free_.emplace(offset_bytes, length_bytes);
  free_bytes_ += freed;
}

}  // namespace cairn::io

namespace cairn::io {

void ExtentAllocator::extend(uint64_t new_end_bytes) {
  CAIRN_ASSERT(new_end_bytes % BlockFile::kAlignment == 0);
  if (new_end_bytes <= end_) {
    return;
  }
  uint64_t old_end = end_;
  end_ = new_end_bytes;
  free(old_end, new_end_bytes - old_end);
}

}  // namespace cairn::io
