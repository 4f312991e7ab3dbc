#include "blockmap/map_root.h"

#include <sodium.h>

#include <bit>
#include <cstring>

#include "blockmap/errors.h"

namespace cairn::blockmap {
namespace {

static_assert(std::endian::native == std::endian::little, "map formats are little-endian");

constexpr uint64_t kMagic = 0x3150414d4e524941ull;  // "AIRNMAP1"
constexpr uint32_t kVersion = 1;
constexpr std::size_t kTrailerBytes = 32;

struct RootHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t chunk_size_bytes;
  uint64_t size_bytes;
  uint64_t chunk_count;
  uint64_t mapped_chunks;
  uint64_t checkpoint_lsn;
  uint64_t generation;
  uint64_t dir_count;
};
static_assert(sizeof(RootHeader) == 64);

void blake2b(const void* data, std::size_t n, unsigned char* out, std::size_t out_bytes) {
  crypto_generichash(out, out_bytes, static_cast<const unsigned char*>(data), n, nullptr, 0);
}

}  // namespace

std::array<uint8_t, 16> page_hash(std::span<const std::byte> page) noexcept {
  std::array<uint8_t, 16> out{};
  blake2b(page.data(), page.size(), out.data(), out.size());
  return out;
}

std::string encode_root(const MapRoot& root) {
  RootHeader h{kMagic,
               kVersion,
               root.chunk_size_bytes,
               root.size_bytes,
               root.chunk_count,
               root.mapped_chunks,
               root.checkpoint_lsn,
               root.generation,
               root.dir_chunks.size()};
  std::string out(sizeof h + root.dir_chunks.size() * sizeof(DirChunkRef) + kTrailerBytes, '\0');
  std::memcpy(out.data(), &h, sizeof h);
  if (!root.dir_chunks.empty()) {
    std::memcpy(out.data() + sizeof h, root.dir_chunks.data(),
                root.dir_chunks.size() * sizeof(DirChunkRef));
  }
  std::size_t body = out.size() - kTrailerBytes;
  blake2b(out.data(), body, reinterpret_cast<unsigned char*>(out.data() + body), kTrailerBytes);
  return out;
}

Result<MapRoot> decode_root(std::string_view bytes) noexcept {
  auto bad = make_error_code(errc::invalid_argument);
  if (bytes.size() < sizeof(RootHeader) + kTrailerBytes) {
    return bad;
  }
  RootHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  if (h.magic != kMagic || h.version != kVersion) {
    return bad;
  }
  std::size_t body = bytes.size() - kTrailerBytes;
  if (h.dir_count > (body - sizeof h) / sizeof(DirChunkRef) ||
      sizeof h + h.dir_count * sizeof(DirChunkRef) != body) {
    return bad;
  }
  unsigned char digest[kTrailerBytes];
  blake2b(bytes.data(), body, digest, sizeof digest);
  if (std::memcmp(digest, bytes.data() + body, kTrailerBytes) != 0) {
    return bad;
  }
  MapRoot root;
  root.size_bytes = h.size_bytes;
  root.chunk_size_bytes = h.chunk_size_bytes;
  root.chunk_count = h.chunk_count;
  root.mapped_chunks = h.mapped_chunks;
  root.checkpoint_lsn = h.checkpoint_lsn;
  root.generation = h.generation;
  root.dir_chunks.resize(h.dir_count);
  if (h.dir_count > 0) {
    std::memcpy(root.dir_chunks.data(), bytes.data() + sizeof h, h.dir_count * sizeof(DirChunkRef));
  }
  return root;
}

}  // namespace cairn::blockmap
