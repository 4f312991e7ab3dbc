#include "io/extent_allocator.h"

#include <algorithm>

#include "base/assert.h"
#include "io/block_file.h"

namespace cairn::io {

ExtentAllocator::ExtentAllocator(uint64_t begin_bytes, uint64_t end_bytes)
    : begin_(begin_bytes), end_(end_bytes), cursor_(begin_bytes), free_bytes_(0) {
  CAIRN_ASSERT(begin_bytes % BlockFile::kAlignment == 0);
  CAIRN_ASSERT(end_bytes % BlockFile::kAlignment == 0);
  CAIRN_ASSERT(begin_bytes <= end_bytes);
  if (end_bytes > begin_bytes) {
    insert_extent(begin_bytes, end_bytes - begin_bytes);
    free_bytes_ = end_bytes - begin_bytes;
  }
}

void ExtentAllocator::insert_extent(uint64_t offset_bytes, uint64_t length_bytes) {
  free_.emplace(offset_bytes, length_bytes);
  by_length_.emplace(length_bytes, offset_bytes);
}

ExtentAllocator::ByOffset::iterator ExtentAllocator::erase_extent(ByOffset::iterator it) {
  by_length_.erase({it->second, it->first});
  return free_.erase(it);
}

std::optional<uint64_t> ExtentAllocator::take_from(ByOffset::iterator it, uint64_t length_bytes) {
  uint64_t offset = it->first;
  uint64_t length = it->second;
  erase_extent(it);
  if (length > length_bytes) {
    insert_extent(offset + length_bytes, length - length_bytes);
  }
  free_bytes_ -= length_bytes;
  cursor_ = offset + length_bytes;
  return offset;
}

std::optional<uint64_t> ExtentAllocator::allocate(uint64_t length_bytes) {
  CAIRN_ASSERT(length_bytes > 0 && length_bytes % BlockFile::kAlignment == 0);
  if (length_bytes > largest_extent_bytes()) {
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

std::optional<uint64_t> ExtentAllocator::allocate_best_fit(uint64_t length_bytes) {
  CAIRN_ASSERT(length_bytes > 0 && length_bytes % BlockFile::kAlignment == 0);
  auto fit = by_length_.lower_bound({length_bytes, 0});
  if (fit == by_length_.end()) {
    return std::nullopt;
  }
  return take_from(free_.find(fit->second), length_bytes);
}

std::optional<std::pair<uint64_t, uint64_t>> ExtentAllocator::allocate_largest(uint64_t max_bytes) {
  CAIRN_ASSERT(max_bytes > 0 && max_bytes % BlockFile::kAlignment == 0);
  if (by_length_.empty()) {
    return std::nullopt;
  }
  // The largest length, the lowest offset among extents of that length.
  auto largest = by_length_.lower_bound({by_length_.rbegin()->first, 0});
  uint64_t length = std::min(largest->first, max_bytes);
  auto offset = take_from(free_.find(largest->second), length);
  return std::pair{*offset, length};
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
  erase_extent(it);
  if (offset_bytes > start) {
    insert_extent(start, offset_bytes - start);
  }
  if (start + length > offset_bytes + length_bytes) {
    insert_extent(offset_bytes + length_bytes, start + length - offset_bytes - length_bytes);
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
      erase_extent(prev);
    }
  }
  if (next != free_.end() && next->first == offset_bytes + length_bytes) {
    length_bytes += next->second;
    erase_extent(next);
  }
  insert_extent(offset_bytes, length_bytes);
  free_bytes_ += freed;
}

void ExtentAllocator::free_many(std::span<std::pair<uint64_t, uint64_t>> runs) {
  std::sort(runs.begin(), runs.end());
  for (std::size_t i = 0; i < runs.size();) {
    auto [offset, length] = runs[i];
    for (++i; i < runs.size() && runs[i].first == offset + length; ++i) {
      length += runs[i].second;
    }
    free(offset, length);
  }
}

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
