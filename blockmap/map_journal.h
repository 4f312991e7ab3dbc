// The record format of a volume's map journal (docs/volumes.md, "Durability"): each RecordLog
// record is a header and a run of entries "chunk index := chunk id", applied in order on
// recovery. Entries are idempotent, so replaying a record that a checkpoint already covers is
// harmless; recovery still skips records below the root's checkpoint_lsn.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "io/chunk_id.h"

namespace cairn::blockmap {

struct JournalEntry {
  uint64_t index = 0;  // chunk index
  io::ChunkId id;      // null: the chunk became a hole
};
static_assert(sizeof(JournalEntry) == 24);

struct JournalRecordHeader {
  uint32_t magic;
  uint32_t count;  // entries that follow
};
static_assert(sizeof(JournalRecordHeader) == 8);

// Entries per record; a commit writes as many records as it needs.
inline constexpr std::size_t kMaxEntriesPerRecord = 2048;

// Encodes entries.size() <= kMaxEntriesPerRecord entries as one record.
[[nodiscard]] std::vector<std::byte> encode_journal_record(std::span<const JournalEntry> entries);
// Appends the record's entries to `out`; errc::invalid_argument if it is malformed.
[[nodiscard]] Result<void> decode_journal_record(std::span<const std::byte> record,
                                                 std::vector<JournalEntry>& out);

}  // namespace cairn::blockmap
