#include "io/file_record_log.h"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <random>

#include "base/assert.h"
#include "io/errors.h"

namespace cairn::io {
namespace {

static_assert(std::endian::native == std::endian::little, "on-disk integers are little-endian");

constexpr uint32_t kFrameMagic = 0x474c5243;  // "CRLG"
constexpr uint32_t kSuperMagic = 0x534c5243;  // "CRLS"
constexpr uint16_t kVersion = 1;
constexpr uint64_t kBlock = BlockFile::kAlignment;
constexpr uint64_t kFrameAlign = 64;
constexpr uint64_t kWindowBytes = 256 * 1024;
constexpr uint64_t kChecksumSeed = 0x636169726e2d6c67ull;  // "cairn-lg"

struct FrameHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t flags;
  uint32_t records;
  uint32_t payload_bytes;
  uint64_t first_lsn;
  uint64_t stream_pos;
  uint64_t prev_checksum;
  uint64_t nonce;
  uint64_t payload_checksum;
  uint64_t header_checksum;  // of every byte before this field
};
static_assert(sizeof(FrameHeader) == FileRecordLog::kFrameHeaderBytes);

struct SuperblockDisk {
  uint32_t magic;
  uint16_t version;
  uint16_t reserved;
  uint64_t sequence;
  uint64_t ring_bytes;
  uint64_t head_pos;
  uint64_t head_lsn;
  uint64_t head_prev_checksum;
  uint64_t released_lsn;
  uint64_t checksum;  // of every byte before this field
};
static_assert(sizeof(SuperblockDisk) == 64);

uint64_t hash(const void* data, std::size_t n) {
  return XXH3_64bits_withSeed(data, n, kChecksumSeed);
}

uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) / a * a;
}

uint64_t align_down(uint64_t v, uint64_t a) {
  return v / a * a;
}

uint64_t checksum_of(const FrameHeader& h) {
  return hash(&h, offsetof(FrameHeader, header_checksum));
}

uint64_t checksum_of(const SuperblockDisk& s) {
  return hash(&s, offsetof(SuperblockDisk, checksum));
}

uint64_t random_nonzero() {
  std::random_device rd;
  uint64_t v = 0;
  while (v == 0) {
    v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  return v;
}

// Walks the records of a payload; false if they do not fill it exactly.
template <class F>
bool parse_records(std::span<const std::byte> payload, uint32_t records, F&& each) {
  std::size_t off = 0;
  for (uint32_t i = 0; i < records; ++i) {
    uint32_t len = 0;
    if (payload.size() - off < sizeof len) {
      return false;
    }
    std::memcpy(&len, payload.data() + off, sizeof len);
    off += sizeof len;
    if (payload.size() - off < len) {
      return false;
    }
    each(i, payload.subspan(off, len));
    off += len;
  }
  return off == payload.size();
}

}  // namespace

uint64_t FileRecordLog::Frame::bytes() const noexcept {
  return align_up(kFrameHeaderBytes + payload_bytes, kFrameAlign);
}

uint64_t FileRecordLog::file_bytes_for(uint64_t capacity_bytes) noexcept {
  return kRingOffsetBytes + std::max<uint64_t>(align_up(capacity_bytes, kBlock), 2 * kBlock);
}

FileRecordLog::FileRecordLog(BlockFile& file, std::unique_ptr<BlockFile> owned, uint64_t ring_bytes,
                             uint64_t nonce)
    : file_(file), owned_(std::move(owned)), ring_bytes_(ring_bytes), nonce_(nonce) {
  tail_block_.resize(kBlock);
}

Task<Result<std::unique_ptr<FileRecordLog>>> FileRecordLog::open(BlockFile& file,
                                                                 std::unique_ptr<BlockFile> owned,
                                                                 Options options) {
  uint64_t size = align_down(file.size_bytes(), kBlock);
  if (size < kRingOffsetBytes + 2 * kBlock) {
    co_return make_error(errc::invalid_argument);
  }
  uint64_t nonce = options.nonce != 0 ? options.nonce : random_nonzero();
  std::unique_ptr<FileRecordLog> log(
      new FileRecordLog(file, std::move(owned), size - kRingOffsetBytes, nonce));
  if (auto r = co_await log->load_superblock(); !r) {
    co_return r.error();
  }
  if (auto r = co_await log->scan(); !r) {
    co_return r.error();
  }
  co_return log;
}

Task<Result<void>> FileRecordLog::load_superblock() {
  AlignedBuffer buf(kRingOffsetBytes);
  if (auto r = co_await file_.read(0, buf.span()); !r) {
    co_return r;
  }
  const SuperblockDisk* best = nullptr;
  bool blank = std::all_of(buf.data(), buf.data() + buf.size(),
                           [](std::byte b) { return b == std::byte{0}; });
  SuperblockDisk slots[2];
  for (int i = 0; i < 2; ++i) {
    std::memcpy(&slots[i], buf.data() + i * kSuperblockBytes, sizeof(SuperblockDisk));
    const SuperblockDisk& s = slots[i];
    if (s.magic != kSuperMagic || s.version != kVersion || s.checksum != checksum_of(s)) {
      continue;
    }
    if (best == nullptr || s.sequence > best->sequence) {
      best = &s;
    }
  }
  if (best == nullptr) {
    if (!blank) {
      co_return make_error(errc::corrupt);  // never format over bytes we cannot read
    }
    // A fresh (all-zero) file: format it. The chain starts from a random value, so frames of an
    // earlier log that lived in this file never join it.
    Head fresh;
    fresh.prev_checksum = random_nonzero();
    co_return co_await write_superblock(fresh);
  }
  if (best->ring_bytes % kBlock != 0 || best->ring_bytes < 2 * kBlock ||
      best->ring_bytes > ring_bytes_ || best->released_lsn < 1 || best->head_lsn < 1) {
    co_return make_error(errc::corrupt);
  }
  ring_bytes_ = best->ring_bytes;
  head_ = Head{best->sequence, best->head_pos, best->head_lsn, best->head_prev_checksum,
               best->released_lsn};
  co_return Result<void>{};
}

Task<Result<void>> FileRecordLog::write_superblock(const Head& head) {
  SuperblockDisk s{};
  s.magic = kSuperMagic;
  s.version = kVersion;
  s.sequence = head_.sequence + 1;
  s.ring_bytes = ring_bytes_;
  s.head_pos = head.pos;
  s.head_lsn = head.lsn;
  s.head_prev_checksum = head.prev_checksum;
  s.released_lsn = head.released_lsn;
  s.checksum = checksum_of(s);
  AlignedBuffer buf(kSuperblockBytes);
  std::memcpy(buf.data(), &s, sizeof s);
  // Alternate slots: a torn write leaves the previous superblock intact in the other.
  uint64_t offset = (s.sequence % 2) * kSuperblockBytes;
  if (auto r = co_await file_.write(offset, buf.span()); !r) {
    co_return r;
  }
  if (auto r = co_await file_.sync(); !r) {
    co_return r;
  }
  head_ = head;
  head_.sequence = s.sequence;
  co_return Result<void>{};
}

Task<Result<void>> FileRecordLog::scan() {
  frames_.clear();
  uint64_t pos = head_.pos;
  uint64_t lsn = head_.lsn;
  uint64_t prev = head_.prev_checksum;
  std::vector<std::byte> payload;
  for (;;) {
    auto accepted = co_await scan_frame(pos, lsn, prev, payload);
    if (!accepted) {
      co_return accepted.error();
    }
    if (*accepted == Scan::end) {
      break;
    }
    const Frame& f = frames_.back();
    pos += f.bytes();
    lsn = f.end_lsn();
    prev = f.checksum;
  }
  tail_pos_ = pos;
  tail_prev_checksum_ = prev;
  next_lsn_ = durable_lsn_ = lsn;
  std::memset(tail_block_.data(), 0, kBlock);
  if (pos % kBlock != 0) {
    auto prefix = tail_block_.span().first(pos % kBlock);
    if (auto r = co_await read_stream(align_down(pos, kBlock), prefix); !r) {
      co_return r;
    }
  }
  co_return Result<void>{};
}

Task<Result<FileRecordLog::Scan>> FileRecordLog::scan_frame(uint64_t pos, uint64_t lsn,
                                                            uint64_t prev,
                                                            std::vector<std::byte>& payload) {
  uint64_t limit = head_.pos + ring_bytes_;
  if (pos + kFrameHeaderBytes > limit) {
    co_return Scan::end;
  }
  FrameHeader h{};
  if (auto r = co_await read_stream(pos, std::as_writable_bytes(std::span(&h, 1))); !r) {
    co_return r.error();
  }
  if (h.magic != kFrameMagic || h.version != kVersion || h.header_checksum != checksum_of(h)) {
    co_return Scan::end;  // torn, never written, or not a frame: the log ends here
  }
  if (h.stream_pos != pos || h.first_lsn != lsn || h.prev_checksum != prev) {
    co_return Scan::end;  // a stale frame from an earlier lap or run
  }
  if (pos + align_up(kFrameHeaderBytes + h.payload_bytes, kFrameAlign) > limit) {
    co_return Scan::end;
  }
  payload.resize(h.payload_bytes);
  if (auto r = co_await read_stream(pos + kFrameHeaderBytes, payload); !r) {
    co_return r.error();
  }
  if (hash(payload.data(), payload.size()) != h.payload_checksum) {
    co_return Scan::end;  // the header made it to disk but not all of the records
  }
  if (!parse_records(payload, h.records, [](uint32_t, std::span<const std::byte>) {})) {
    co_return make_error(errc::corrupt);  // checksummed yet malformed: not a torn write
  }
  frames_.push_back(Frame{pos, lsn, h.records, h.payload_bytes, h.header_checksum});
  co_return Scan::frame;
}

Task<Result<void>> FileRecordLog::read_stream(uint64_t pos, std::span<std::byte> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    uint64_t p = pos + done;
    if (window_bytes_ == 0 || p < window_pos_ || p >= window_pos_ + window_bytes_) {
      uint64_t start = align_down(p, kBlock);
      uint64_t phys = physical(start);
      uint64_t n = std::min(kWindowBytes, ring_bytes_ - phys);
      if (window_.size() < kWindowBytes) {
        window_.resize(kWindowBytes);
      }
      window_bytes_ = 0;
      if (auto r = co_await file_.read(kRingOffsetBytes + phys, window_.span().first(n)); !r) {
        co_return r;
      }
      window_pos_ = start;
      window_bytes_ = n;
    }
    uint64_t k = std::min<uint64_t>(out.size() - done, window_pos_ + window_bytes_ - p);
    std::memcpy(out.data() + done, window_.data() + (p - window_pos_), k);
    done += k;
  }
  co_return Result<void>{};
}

uint64_t FileRecordLog::physical(uint64_t pos) const noexcept {
  return pos % ring_bytes_;
}

Task<Result<void>> FileRecordLog::replay(const Visitor& visit) {
  auto guard = co_await mutex_.scoped();
  CAIRN_ASSERT(staging_records_ == 0);
  if (failed_) {
    co_return failure_;
  }
  std::vector<std::byte> payload;
  for (const Frame& f : frames_) {
    payload.resize(f.payload_bytes);
    if (auto r = co_await read_stream(f.pos + kFrameHeaderBytes, payload); !r) {
      co_return r;
    }
    FrameHeader h{};
    if (auto r = co_await read_stream(f.pos, std::as_writable_bytes(std::span(&h, 1))); !r) {
      co_return r;
    }
    if (hash(payload.data(), payload.size()) != h.payload_checksum) {
      co_return make_error(errc::checksum_mismatch);  // changed since open(): a bad disk
    }
    parse_records(payload, f.records, [&](uint32_t i, std::span<const std::byte> record) {
      uint64_t lsn = f.first_lsn + i;
      if (lsn >= head_.released_lsn) {
        visit(lsn, record);
      }
    });
  }
  co_return Result<void>{};
}

bool FileRecordLog::fits(uint64_t payload_bytes) const noexcept {
  uint64_t end =
      tail_pos_ + reserved_bytes_ + align_up(kFrameHeaderBytes + payload_bytes, kFrameAlign);
  // The last block written is padded with zeros, so it must not reach the head's block.
  return align_up(end, kBlock) <= align_down(head_.pos, kBlock) + ring_bytes_;
}

Result<uint64_t> FileRecordLog::append(std::span<const std::byte> record) {
  if (failed_) {
    return failure_;
  }
  if (record.size() > kMaxRecordBytes ||
      align_up(kFrameHeaderBytes + 4 + record.size(), kFrameAlign) + kBlock > ring_bytes_) {
    return make_error(errc::invalid_argument);  // could never fit, even in an empty log
  }
  uint64_t payload_bytes = staging_.size() + sizeof(uint32_t) + record.size();
  if (payload_bytes > UINT32_MAX || !fits(payload_bytes)) {
    return make_error(errc::no_space);
  }
  auto len = static_cast<uint32_t>(record.size());
  const auto* len_bytes = reinterpret_cast<const std::byte*>(&len);
  staging_.insert(staging_.end(), len_bytes, len_bytes + sizeof len);
  staging_.insert(staging_.end(), record.begin(), record.end());
  ++staging_records_;
  return next_lsn_++;
}

uint64_t FileRecordLog::used_bytes() const {
  uint64_t used = tail_pos_ + reserved_bytes_ - head_.pos;
  if (staging_records_ > 0) {
    used += align_up(kFrameHeaderBytes + staging_.size(), kFrameAlign);
  }
  return used;
}

Task<Result<void>> FileRecordLog::sync() {
  auto guard = co_await mutex_.scoped();
  if (failed_) {
    co_return failure_;
  }
  if (staging_records_ == 0) {
    co_return Result<void>{};  // earlier syncs, which held the lock before us, covered it all
  }
  auto r = co_await write_frame();
  if (!r) {
    failed_ = true;
    failure_ = r.error();
  }
  co_return r;
}

Task<Result<void>> FileRecordLog::write_frame() {
  std::vector<std::byte> payload = std::move(staging_);
  staging_ = {};
  uint32_t records = staging_records_;
  staging_records_ = 0;
  uint64_t first_lsn = durable_lsn_;
  CAIRN_ASSERT(first_lsn + records == next_lsn_);

  uint64_t frame_bytes = align_up(kFrameHeaderBytes + payload.size(), kFrameAlign);
  uint64_t start = align_down(tail_pos_, kBlock);
  uint64_t end = tail_pos_ + frame_bytes;
  uint64_t buf_bytes = align_up(end, kBlock) - start;
  if (io_buffer_.size() < buf_bytes) {
    io_buffer_.resize(buf_bytes);
  }
  std::memset(io_buffer_.data(), 0, buf_bytes);
  std::memcpy(io_buffer_.data(), tail_block_.data(), tail_pos_ - start);

  FrameHeader h{};
  h.magic = kFrameMagic;
  h.version = kVersion;
  h.records = records;
  h.payload_bytes = static_cast<uint32_t>(payload.size());
  h.first_lsn = first_lsn;
  h.stream_pos = tail_pos_;
  h.prev_checksum = tail_prev_checksum_;
  h.nonce = nonce_;
  h.payload_checksum = hash(payload.data(), payload.size());
  h.header_checksum = checksum_of(h);
  std::byte* at = io_buffer_.data() + (tail_pos_ - start);
  std::memcpy(at, &h, sizeof h);
  std::memcpy(at + sizeof h, payload.data(), payload.size());

  reserved_bytes_ = frame_bytes;
  window_bytes_ = 0;  // the read window may hold blocks this write replaces
  auto r = co_await write_blocks(start, std::span<const std::byte>(io_buffer_.data(), buf_bytes));
  if (r) {
    r = co_await file_.sync();
  }
  reserved_bytes_ = 0;
  if (!r) {
    co_return r;
  }
  frames_.push_back(Frame{tail_pos_, first_lsn, records, h.payload_bytes, h.header_checksum});
  tail_pos_ = end;
  tail_prev_checksum_ = h.header_checksum;
  durable_lsn_ = first_lsn + records;
  std::memset(tail_block_.data(), 0, kBlock);
  if (end % kBlock != 0) {
    std::memcpy(tail_block_.data(), io_buffer_.data() + (align_down(end, kBlock) - start),
                end % kBlock);
  }
  co_return Result<void>{};
}

Task<Result<void>> FileRecordLog::write_blocks(uint64_t block_pos,
                                               std::span<const std::byte> data) {
  std::size_t done = 0;
  while (done < data.size()) {
    uint64_t phys = physical(block_pos + done);
    uint64_t n = std::min<uint64_t>(data.size() - done, ring_bytes_ - phys);
    if (auto r = co_await file_.write(kRingOffsetBytes + phys, data.subspan(done, n)); !r) {
      co_return r;
    }
    done += n;
  }
  co_return Result<void>{};
}

Task<Result<void>> FileRecordLog::release_before(uint64_t lsn) {
  auto guard = co_await mutex_.scoped();
  if (failed_) {
    co_return failure_;
  }
  std::size_t drop = 0;
  while (drop < frames_.size() && frames_[drop].end_lsn() <= lsn) {
    ++drop;
  }
  Head h = head_;
  if (drop == frames_.size()) {
    h.pos = tail_pos_;
    h.lsn = durable_lsn_;
    h.prev_checksum = tail_prev_checksum_;
  } else if (drop > 0) {
    h.pos = frames_[drop].pos;
    h.lsn = frames_[drop].first_lsn;
    h.prev_checksum = frames_[drop - 1].checksum;
  }
  h.released_lsn = std::max(head_.released_lsn, std::min(lsn, next_lsn_));
  if (h.pos == head_.pos && h.released_lsn == head_.released_lsn) {
    co_return Result<void>{};
  }
  if (auto r = co_await write_superblock(h); !r) {
    failed_ = true;
    failure_ = r.error();
    co_return r;
  }
  frames_.erase(frames_.begin(), frames_.begin() + static_cast<std::ptrdiff_t>(drop));
  co_return Result<void>{};
}

}  // namespace cairn::io
