// IndexPage: one 4 KiB page of the chunk store's on-disk index table (PagedIndex), decoded.
// A page holds up to kCapacity entries (chunk id -> IndexEntry) of one hash bucket, plus a
// link to the bucket's next overflow page. Format: docs/on-disk-format.md, "Index table".
//
// encode() and decode() are pure functions of their arguments; decode() rejects a page whose
// checksum, magic, page number or any entry is wrong, so a torn or misdirected write is
// never taken for a page. Threading: a value type, no shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "io/chunk_id.h"

namespace cairn::io {

// Where a chunk is and how many references it has (the value of the store's index).
struct IndexEntry {
  uint64_t offset_bytes = 0;
  uint64_t checksum = 0;
  uint32_t length_bytes = 0;
  uint32_t refs = 0;
  bool operator==(const IndexEntry&) const = default;
};

struct IndexPage {
  static constexpr std::size_t kBytes = 4096;
  static constexpr std::size_t kHeaderBytes = 64;
  static constexpr std::size_t kEntryBytes = 40;
  static constexpr std::size_t kChecksumOffset = kBytes - 8;
  static constexpr std::size_t kCapacity = (kChecksumOffset - kHeaderBytes) / kEntryBytes;
  static constexpr uint32_t kMaxLengthBytes = 64 * 1024;  // LocalChunkStore::kMaxChunkBytes

  struct Item {
    ChunkId id;
    IndexEntry entry;
  };

  uint64_t page_no = 0;  // logical page: a bucket, or buckets + overflow ordinal
  uint64_t seq = 0;      // the checkpoint that wrote this version
  uint64_t next = 0;     // 0: end of the chain; else 1 + the next page's number
  std::vector<Item> items;

  enum class Decoded { ok, zero, invalid };

  // Writes the page into `out` (exactly kBytes). items.size() <= kCapacity.
  void encode(std::span<std::byte> out) const;
  // Reads a page stored for logical page `page_no`. `zero`: never written (all zero bytes).
  [[nodiscard]] static Decoded decode(std::span<const std::byte> in, uint64_t page_no,
                                      IndexPage& out);
};

}  // namespace cairn::io
