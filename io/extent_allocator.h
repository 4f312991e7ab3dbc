// ExtentAllocator: free space of the chunk store's data file, as a set of free extents in
// units of BlockFile::kAlignment bytes (docs/on-disk-format.md, "Data file").
//
// allocate() is next-fit: it searches from where the last allocation ended, so chunks
// written one after another land one after another on disk, and a put's chunks get one
// contiguous run when there is one. free() merges neighbours. RAM: one map node per free
// extent.
//
// Threading: one thread (the store's owner). Not durable: the store rebuilds it at open from
// the index (everything not referenced is free).
#pragma once

#include <cstdint>
#include <map>
#include <optional>

namespace cairn::io {

class ExtentAllocator {
 public:
  // Manages [begin_bytes, end_bytes), all free at first. Both aligned.
  ExtentAllocator(uint64_t begin_bytes, uint64_t end_bytes);

  // A free run of `length_bytes` (aligned, > 0), or std::nullopt if there is none.
  [[nodiscard]] std::optional<uint64_t> allocate(uint64_t length_bytes);
  // Marks a run in use (at start-up, for extents the index references). False if any of it
  // is not free.
  [[nodiscard]] bool reserve(uint64_t offset_bytes, uint64_t length_bytes);
  void free(uint64_t offset_bytes, uint64_t length_bytes);
  // Adds [end, new_end_bytes) as free space (the data file grew).
  void extend(uint64_t new_end_bytes);

  [[nodiscard]] uint64_t free_bytes() const noexcept { return free_bytes_; }
  [[nodiscard]] uint64_t capacity_bytes() const noexcept { return end_ - begin_; }
  [[nodiscard]] std::size_t extents() const noexcept { return free_.size(); }

 private:
  std::optional<uint64_t> take_from(std::map<uint64_t, uint64_t>::iterator it,
                                    uint64_t length_bytes);

  uint64_t begin_;
  uint64_t end_;
  uint64_t cursor_;
  uint64_t free_bytes_;
  std::map<uint64_t, uint64_t> free_;  // offset -> length
};

}  // namespace cairn::io
