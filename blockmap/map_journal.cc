#include "blockmap/map_journal.h"

#include <cstring>

#include "base/assert.h"
#include "blockmap/errors.h"

namespace cairn::blockmap {
namespace {
constexpr uint32_t kRecordMagic = 0x4d4a4e31;  // "1NJM"
}  // namespace

std::vector<std::byte> encode_journal_record(std::span<const JournalEntry> entries) {
  CAIRN_ASSERT(!entries.empty() && entries.size() <= kMaxEntriesPerRecord);
  JournalRecordHeader h{kRecordMagic, static_cast<uint32_t>(entries.size())};
  std::vector<std::byte> out(sizeof h + entries.size_bytes());
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + sizeof h, entries.data(), entries.size_bytes());
  return out;
}

Result<void> decode_journal_record(std::span<const std::byte> record,
                                   std::vector<JournalEntry>& out) {
  JournalRecordHeader h;
  if (record.size() < sizeof h) {
    return make_error_code(errc::invalid_argument);
  }
  std::memcpy(&h, record.data(), sizeof h);
  if (h.magic != kRecordMagic || h.count == 0 || h.count > kMaxEntriesPerRecord ||
      record.size() != sizeof h + h.count * sizeof(JournalEntry)) {
    return make_error_code(errc::invalid_argument);
  }
  std::size_t first = out.size();
  out.resize(first + h.count);
  std::memcpy(out.data() + first, record.data() + sizeof h, h.count * sizeof(JournalEntry));
  return {};
}

}  // namespace cairn::blockmap
