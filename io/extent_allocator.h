// ExtentAllocator: free space of the chunk store's data file, as a set of free extents in
// units of BlockFile::kAlignment bytes (docs/on-disk-format.md, "Data file").
//
// Two indexes of the same extents, kept in step: by offset (to merge neighbours on free()
// and for next-fit) and by (length, offset) (for best-fit and the largest extent). Every
// operation is O(log n) in the number of free extents except allocate(), whose next-fit
// scan may visit extents too small for the request.
//
// - allocate(): next-fit from where the last allocation ended.
// - allocate_best_fit(): the smallest extent that holds the run, the lowest such offset on a
//   tie. Small puts use it to fill holes left by overwrites before touching large free runs,
//   so the large runs stay whole for large puts.
// - allocate_largest(): the start of the largest extent, for a put that no single extent
//   holds: it is placed in a few large runs instead of one hole per chunk.
//
// RAM: two tree nodes per free extent. Threading: one thread (the store's owner). Not
// durable: the store rebuilds it at open from the index (everything not referenced is free).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <utility>

namespace cairn::io {

class ExtentAllocator {
 public:
  // Manages [begin_bytes, end_bytes), all free at first. Both aligned.
  ExtentAllocator(uint64_t begin_bytes, uint64_t end_bytes);

  // A free run of `length_bytes` (aligned, > 0), or std::nullopt if there is none.
  [[nodiscard]] std::optional<uint64_t> allocate(uint64_t length_bytes);
  // The same, from the smallest free extent that holds it (best fit).
  [[nodiscard]] std::optional<uint64_t> allocate_best_fit(uint64_t length_bytes);
  // The first min(largest extent, max_bytes) bytes of the largest free extent, as (offset,
  // length); std::nullopt if nothing is free. max_bytes aligned, > 0.
  [[nodiscard]] std::optional<std::pair<uint64_t, uint64_t>> allocate_largest(uint64_t max_bytes);
  // Marks a run in use (at start-up, for extents the index references). False if any of it
  // is not free.
  [[nodiscard]] bool reserve(uint64_t offset_bytes, uint64_t length_bytes);
  void free(uint64_t offset_bytes, uint64_t length_bytes);
  // Frees every (offset, length) run, in any order: sorted first and merged where runs touch,
  // so the chunks of one overwritten put are one free() instead of one per chunk (each of
  // which would erase and re-insert the growing extent in both trees). Sorts `runs`.
  void free_many(std::span<std::pair<uint64_t, uint64_t>> runs);
  // Adds [end, new_end_bytes) as free space (the data file grew).
  void extend(uint64_t new_end_bytes);

  [[nodiscard]] uint64_t free_bytes() const noexcept { return free_bytes_; }
  [[nodiscard]] uint64_t capacity_bytes() const noexcept { return end_ - begin_; }
  [[nodiscard]] std::size_t extents() const noexcept { return free_.size(); }
  // The length of the largest free extent (0 when nothing is free).
  [[nodiscard]] uint64_t largest_extent_bytes() const noexcept {
    return by_length_.empty() ? 0 : by_length_.rbegin()->first;
  }

 private:
  using ByOffset = std::map<uint64_t, uint64_t>;  // offset -> length

  std::optional<uint64_t> take_from(ByOffset::iterator it, uint64_t length_bytes);
  void insert_extent(uint64_t offset_bytes, uint64_t length_bytes);
  ByOffset::iterator erase_extent(ByOffset::iterator it);

  uint64_t begin_;
  uint64_t end_;
  uint64_t cursor_;
  uint64_t free_bytes_;
  ByOffset free_;
  std::set<std::pair<uint64_t, uint64_t>> by_length_;  // (length, offset) of every free_ entry
};

}  // namespace cairn::io
