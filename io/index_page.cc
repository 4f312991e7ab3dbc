#include "io/index_page.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "base/assert.h"

namespace cairn::io {
namespace {

constexpr uint32_t kMagic = 0x50584943;  // "CIXP"
constexpr uint16_t kVersion = 1;
constexpr uint64_t kChecksumSeed = 0x636169726e2d6978ull;  // "cairn-ix"
constexpr uint64_t kBlock = 4096;

// The fixed header, little-endian like every on-disk struct here.
struct Header {
  uint32_t magic;
  uint16_t version;
  uint16_t count;
  uint64_t page_no;
  uint64_t seq;
  uint64_t next;
  uint8_t reserved[32];
};
static_assert(sizeof(Header) == IndexPage::kHeaderBytes);

struct RawEntry {
  uint64_t id_lo;
  uint64_t id_hi;
  uint64_t offset_bytes;
  uint64_t checksum;
  uint32_t length_bytes;
  uint32_t refs;
};
static_assert(sizeof(RawEntry) == IndexPage::kEntryBytes);
static_assert(IndexPage::kCapacity == 100);

uint64_t page_checksum(std::span<const std::byte> page) {
  return XXH3_64bits_withSeed(page.data(), IndexPage::kChecksumOffset, kChecksumSeed);
}

bool valid_entry(const RawEntry& e) {
  return e.length_bytes != 0 && e.length_bytes <= IndexPage::kMaxLengthBytes &&
         e.offset_bytes % kBlock == 0 && e.refs != 0;
}

}  // namespace

void IndexPage::encode(std::span<std::byte> out) const {
  CAIRN_ASSERT(out.size() == kBytes && items.size() <= kCapacity);
  std::memset(out.data(), 0, kBytes);
  Header h{};
  h.magic = kMagic;
  h.version = kVersion;
  h.count = static_cast<uint16_t>(items.size());
  h.page_no = page_no;
  h.seq = seq;
  h.next = next;
  std::memcpy(out.data(), &h, sizeof(h));
  std::byte* at = out.data() + kHeaderBytes;
  for (const Item& item : items) {
    RawEntry e{item.id.lo,
               item.id.hi,
               item.entry.offset_bytes,
               item.entry.checksum,
               item.entry.length_bytes,
               item.entry.refs};
    CAIRN_ASSERT(valid_entry(e));
    std::memcpy(at, &e, sizeof(e));
    at += sizeof(e);
  }
  uint64_t sum = page_checksum(out);
  std::memcpy(out.data() + kChecksumOffset, &sum, sizeof(sum));
}

IndexPage::Decoded IndexPage::decode(std::span<const std::byte> in, uint64_t page_no,
                                     IndexPage& out) {
  CAIRN_ASSERT(in.size() == kBytes);
  if (std::all_of(in.begin(), in.end(), [](std::byte b) { return b == std::byte{0}; })) {
    return Decoded::zero;
  }
  uint64_t sum = 0;
  std::memcpy(&sum, in.data() + kChecksumOffset, sizeof(sum));
  Header h{};
  std::memcpy(&h, in.data(), sizeof(h));
  if (sum != page_checksum(in) || h.magic != kMagic || h.version != kVersion ||
      h.page_no != page_no || h.count > kCapacity) {
    return Decoded::invalid;
  }
  IndexPage page;
  page.page_no = h.page_no;
  page.seq = h.seq;
  page.next = h.next;
  page.items.reserve(kCapacity);
  const std::byte* at = in.data() + kHeaderBytes;
  for (uint16_t i = 0; i < h.count; ++i, at += sizeof(RawEntry)) {
    RawEntry e{};
    std::memcpy(&e, at, sizeof(e));
    if (!valid_entry(e)) {
      return Decoded::invalid;
    }
    page.items.push_back(Item{ChunkId{e.id_lo, e.id_hi},
                              IndexEntry{e.offset_bytes, e.checksum, e.length_bytes, e.refs}});
  }
  out = std::move(page);
  return Decoded::ok;
}

}  // namespace cairn::io
