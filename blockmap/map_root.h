// MapRoot: the versioned root of a volume's chunk map, kept in the MetaStore under
// "volume-root/<name>" and changed only by compare-and-swap (docs/volumes.md, "Durability").
//
// The map is a two-level tree of 4 KiB pages stored as chunks: leaf pages hold 256 chunk ids,
// directory chunks hold 128 PageRefs (one per leaf page), and the root lists the directory
// chunks that are not null, by index (so an empty 1 EiB volume has an empty root). Every PageRef
// carries the BLAKE2b-128 of the page it names and the encoded root ends with a BLAKE2b-256 of
// itself, so the metadata is tamper-evident from the root down (BRIEF, "Metadata"). A null PageRef
// names a page of holes, which stores nothing.
//
// The root also records the journal position it covers: after a crash, recovery loads the
// root and replays journal records with lsn >= checkpoint_lsn.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "io/chunk_id.h"

namespace cairn::blockmap {

struct PageRef {
  io::ChunkId id;                  // null: a page of holes, stored nowhere
  std::array<uint8_t, 16> hash{};  // BLAKE2b-128 of the page bytes

  [[nodiscard]] bool is_null() const noexcept { return id.is_null(); }
  friend bool operator==(const PageRef&, const PageRef&) = default;
};
static_assert(sizeof(PageRef) == 32);

struct DirChunkRef {
  uint64_t index = 0;  // which directory chunk: it covers leaf pages [index*128, index*128+128)
  uint64_t reserved = 0;
  PageRef ref;
  friend bool operator==(const DirChunkRef&, const DirChunkRef&) = default;
};
static_assert(sizeof(DirChunkRef) == 48);

struct MapRoot {
  uint64_t size_bytes = 0;
  uint32_t chunk_size_bytes = 0;
  uint64_t chunk_count = 0;
  uint64_t mapped_chunks = 0;           // non-null entries, for stats without a scan
  uint64_t checkpoint_lsn = 0;          // replay journal records with lsn >= this
  uint64_t generation = 0;              // increments with every checkpoint
  std::vector<DirChunkRef> dir_chunks;  // non-null ones, in index order
};

// BLAKE2b-128 of a page, as stored in its PageRef.
[[nodiscard]] std::array<uint8_t, 16> page_hash(std::span<const std::byte> page) noexcept;

// Binary encoding (little-endian header, the refs, then a BLAKE2b-256 trailer).
[[nodiscard]] std::string encode_root(const MapRoot& root);
// errc::invalid_argument if the bytes are truncated, of another version or fail the hash.
[[nodiscard]] Result<MapRoot> decode_root(std::string_view bytes) noexcept;

}  // namespace cairn::blockmap
