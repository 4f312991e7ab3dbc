#include "target/scsi/xcopy.h"

#include <algorithm>
#include <bit>
#include <utility>

#include "base/log.h"
#include "blockmap/errors.h"
#include "target/scsi/big_endian.h"
#include "target/scsi/check_condition.h"
#include "target/scsi/parameter_data.h"
#include "target/scsi/sense.h"

namespace cairn::target::scsi {
namespace {

constexpr size_t kHeaderBytes = 16;  // SPC-4 6.4.3.1, Table 113 (LID1 parameter list)
constexpr size_t kCscdBytes = 32;    // every CSCD descriptor but the 64-byte ones
constexpr uint8_t kCscdIdentification = 0xE4;
constexpr uint8_t kSegmentBlockToBlock = 0x02;       // SPC-4 6.4.6.5
constexpr uint8_t kSegmentBlockToBlockBytes = 0x0A;  // SPC-4 6.4.6.8 (byte offsets)
constexpr uint16_t kBlockToBlockLength = 0x18;       // DESCRIPTOR LENGTH of 0x02
constexpr uint16_t kBlockToBlockBytesLength = 0x1C;  // DESCRIPTOR LENGTH of 0x0A

// LIST ID USAGE (SPC-4 6.4.3.2): 00b hold the status for RECEIVE COPY RESULTS, 01b reserved,
// 10b discard it when done, 11b no list identifier.
constexpr uint8_t kListIdHold = 0x0;
constexpr uint8_t kListIdReserved = 0x1;
constexpr uint8_t kListIdNone = 0x3;

// RECEIVE COPY RESULTS service actions (SPC-4 6.18.1, Table 194).
constexpr uint8_t kCopyStatus = 0x00;
constexpr uint8_t kOperatingParameters = 0x03;

// Copy manager status (SPC-4 6.18.3, Table 196).
constexpr uint8_t kInProgress = 0x00;
constexpr uint8_t kCompleted = 0x01;
constexpr uint8_t kCompletedWithErrors = 0x02;

constexpr auto kUnexpectedInexactSegment = static_cast<Asc>(0x260A);
constexpr auto kOperationInProgress = static_cast<Asc>(0x0016);

// COPY ABORTED for an error while processing segment `index` (SPC-4 6.4.5): the segment's
// number in COMMAND-SPECIFIC INFORMATION and a segment pointer (SD = 1: relative to the
// segment descriptor) at the field that failed.
Response copy_aborted(Asc asc, uint16_t index, uint16_t field_in_segment) {
  Response r = check(SenseKey::copy_aborted, asc, field_in_segment, false);
  r.sense[15] |= 0x20;  // SD
  r.sense[8] = 0;
  r.sense[9] = 0;
  r.sense[10] = static_cast<uint8_t>(index >> 8);
  r.sense[11] = static_cast<uint8_t>(index & 0xFF);
  return r;
}

// A CSCD descriptor of the list, reduced to what a segment needs of it.
struct Cscd {
  bool this_unit = false;  // an identification descriptor naming this logical unit
};

}  // namespace

// One block device to block device copy, in bytes of this volume.
struct CopyManager::Segment {
  size_t offset = 0;  // of its descriptor in the parameter list
  uint64_t src_bytes = 0;
  uint64_t dst_bytes = 0;
  uint64_t length_bytes = 0;
  uint16_t src_lba_field = 12;  // where the descriptor's LBAs are, for the segment pointer
  uint16_t dst_lba_field = 20;
};

CopyManager::CopyManager(blockmap::Volume& volume, const Identity& identity)
    : volume_(volume), naa_(identity.naa) {}

CopyManager::CopyResult* CopyManager::find(uint64_t nexus_id, uint8_t list_id) {
  for (auto& r : results_) {
    if (r.nexus_id == nexus_id && r.list_id == list_id) {
      return &r;
    }
  }
  return nullptr;
}

std::optional<Response> CopyManager::parse(std::span<const uint8_t> list,
                                           std::vector<Segment>& segments) {
  if (list.size() < kHeaderBytes) {
    return param_length_error();
  }
  const size_t cscd_bytes = get16(&list[2]);
  const size_t segment_bytes = get32(&list[8]);
  const size_t inline_bytes = get32(&list[12]);
  // SPC-4 6.4.3.1: descriptor lists longer than MAXIMUM DESCRIPTOR LIST LENGTH, or longer
  // than the parameter list that carries them, are a PARAMETER LIST LENGTH ERROR.
  if (cscd_bytes + segment_bytes > kMaxDescriptorListBytes ||
      kHeaderBytes + cscd_bytes + segment_bytes + inline_bytes > list.size()) {
    return param_length_error();
  }
  if (inline_bytes != 0) {  // MAXIMUM INLINE DATA LENGTH is zero
    return bad_param(Asc::invalid_field_in_parameter_list, 12);
  }
  const uint32_t block = volume_.block_size_bytes();
  std::vector<Cscd> cscds;
  size_t at = kHeaderBytes;
  const size_t cscd_end = kHeaderBytes + cscd_bytes;
  while (at < cscd_end) {
    if (cscds.size() == kMaxCscdDescriptors) {
      return bad_param(Asc::too_many_target_descriptors, 2);
    }
    const uint8_t type = list[at];
    if (type != kCscdIdentification) {
      return bad_param(Asc::unsupported_target_descriptor_type, at);
    }
    if (at + kCscdBytes > cscd_end) {
      return bad_param(Asc::invalid_field_in_parameter_list, 2);
    }
    const uint8_t* d = &list[at];
    // Designation descriptor at byte 4 (SPC-4 7.8.6.1): binary code set, association with
    // the logical unit, NAA type, 16 bytes; the LU ID TYPE field is ignored (SPC-4).
    const bool naa = (d[4] & 0x0F) == 0x1 && (d[5] & 0x3F) == 0x03 && d[7] == naa_.size() &&
                     std::equal(naa_.begin(), naa_.end(), d + 8);
    const bool block_device = (d[1] & 0x1F) == 0x00;
    const uint32_t disk_block = static_cast<uint32_t>(d[29]) << 16 | get16(d + 30);
    cscds.push_back({naa && block_device && disk_block == block});
    at += kCscdBytes;
  }
  const size_t segment_end = cscd_end + segment_bytes;
  while (at < segment_end) {
    if (segments.size() == kMaxSegmentDescriptors) {
      return bad_param(Asc::too_many_segment_descriptors, 8);
    }
    const uint8_t* d = &list[at];
    const uint8_t type = d[0];
    if (type != kSegmentBlockToBlock && type != kSegmentBlockToBlockBytes) {
      return bad_param(Asc::unsupported_segment_descriptor_type, at);
    }
    if (at + 4 > segment_end) {
      return bad_param(Asc::invalid_field_in_parameter_list, 8);
    }
    const uint16_t length = get16(d + 2);
    const uint16_t expected =
        type == kSegmentBlockToBlock ? kBlockToBlockLength : kBlockToBlockBytesLength;
    if (length != expected) {
      return bad_param(Asc::invalid_field_in_parameter_list, at + 2);
    }
    if (at + 4 + length > segment_end) {
      return bad_param(Asc::invalid_field_in_parameter_list, 8);
    }
    const auto index = static_cast<uint16_t>(segments.size());
    // SPC-4 6.4.5: a CSCD index naming no descriptor, or a descriptor that is not this
    // logical unit, is a copy target this copy manager cannot reach.
    for (uint16_t field : {uint16_t{4}, uint16_t{6}}) {
      const uint16_t cscd = get16(d + field);
      if (cscd >= cscds.size() || !cscds[cscd].this_unit) {
        return copy_aborted(Asc::copy_target_device_not_reachable, index, field);
      }
    }
    Segment s;
    s.offset = at;
    // An LBA past the end becomes an offset past the end (without overflowing), which run()
    // reports as the segment's error.
    const uint64_t blocks = volume_.size_bytes() / block;
    auto offset = [&](uint64_t lba, uint16_t byte) {
      return lba > blocks ? ~0ull : lba * block + byte;
    };
    if (type == kSegmentBlockToBlock) {
      // The DC bit picks whose block size counts; both are this volume's.
      s.length_bytes = static_cast<uint64_t>(get16(d + 10)) * block;
      s.src_bytes = offset(get64(d + 12), 0);
      s.dst_bytes = offset(get64(d + 20), 0);
    } else {
      s.length_bytes = get32(d + 8);
      s.src_bytes = offset(get64(d + 12), get16(d + 28));
      s.dst_bytes = offset(get64(d + 20), get16(d + 30));
      if (s.length_bytes > kMaxSegmentBytes) {
        return bad_param(Asc::invalid_field_in_parameter_list, at + 8);
      }
      // The destination is written in whole blocks; this copy manager pads nothing.
      if (s.dst_bytes != ~0ull && (s.dst_bytes % block != 0 || s.length_bytes % block != 0)) {
        return bad_param(kUnexpectedInexactSegment, at + 8);
      }
    }
    segments.push_back(s);
    at += 4 + length;
  }
  return std::nullopt;
}

Task<std::optional<Response>> CopyManager::run(const Segment& s, uint16_t index) {
  const uint64_t size = volume_.size_bytes();
  if (s.src_bytes > size || s.length_bytes > size - s.src_bytes) {
    co_return copy_aborted(Asc::no_additional_sense, index, s.src_lba_field);
  }
  if (s.dst_bytes > size || s.length_bytes > size - s.dst_bytes) {
    co_return copy_aborted(Asc::no_additional_sense, index, s.dst_lba_field);
  }
  if (s.length_bytes == 0) {
    co_return std::nullopt;
  }
  auto r = co_await volume_.copy_range(s.src_bytes, s.dst_bytes, s.length_bytes);
  if (!r) {
    CAIRN_LOG(warn, "scsi", "{}: EXTENDED COPY segment {} ({} bytes from {} to {}) failed: {}",
              volume_.name(), index, s.length_bytes, s.src_bytes, s.dst_bytes, r.error().message());
    if (r.error() == blockmap::errc::read_only) {
      co_return check(SenseKey::data_protect, Asc::write_protected);
    }
    co_return copy_aborted(Asc::write_error, index, s.dst_lba_field);
  }
  co_return std::nullopt;
}

Task<Response> CopyManager::extended_copy(const Nexus& nexus, std::span<const uint8_t> cdb,
                                          std::span<const std::byte> data_out) {
  if (cdb.size() < 16) {
    co_return invalid_cdb(0);
  }
  const uint32_t length = get32(&cdb[10]);
  Response done;
  done.transfer_bytes = length;
  if ((cdb[1] & 0x1F) != 0x00) {  // only LID1; LID4 (0x01) is not implemented
    Response r = invalid_cdb(1, 4);
    r.transfer_bytes = length;
    co_return r;
  }
  if (length == 0) {
    co_return done;  // SPC-4 6.4.1: no parameter list, nothing to copy
  }
  if (data_out.size() < length) {
    Response r = param_length_error();
    r.transfer_bytes = length;
    co_return r;
  }
  const std::span<const uint8_t> list(reinterpret_cast<const uint8_t*>(data_out.data()), length);
  auto fail = [&](Response r) {
    r.transfer_bytes = length;
    return r;
  };
  const uint8_t list_id = list.size() > 0 ? list[0] : 0;
  const uint8_t usage = list.size() > 1 ? ((list[1] >> 3) & 0x3) : 0;
  if (list.size() >= 2 && usage == kListIdReserved) {
    co_return fail(bad_param(Asc::invalid_field_in_parameter_list, 1, 4));
  }
  if (list.size() >= 2 && usage == kListIdNone && list_id != 0) {
    co_return fail(bad_param(Asc::invalid_field_in_parameter_list, 0));
  }
  std::vector<Segment> segments;
  if (auto error = parse(list, segments)) {
    co_return fail(std::move(*error));
  }
  if (!segments.empty() && !volume_.can_write()) {
    co_return fail(check(SenseKey::data_protect, Asc::write_protected));
  }
  const bool tracked = usage != kListIdNone;
  if (tracked) {
    if (CopyResult* old = find(nexus.id, list_id)) {
      if (!old->done) {  // SPC-4 6.4.3.2: the list identifier is in use
        co_return fail(check(SenseKey::illegal_request, kOperationInProgress));
      }
      std::erase_if(results_, [&](const CopyResult& r) {
        return r.nexus_id == nexus.id && r.list_id == list_id;
      });
    }
    results_.push_back({nexus.id, list_id, usage == kListIdHold});
    while (results_.size() > kMaxHeldResults && results_.front().done) {
      results_.pop_front();
    }
  }
  std::optional<Response> error;
  uint16_t processed = 0;
  uint64_t transferred = 0;
  for (const Segment& s : segments) {
    error = co_await run(s, processed);
    if (error) {
      break;
    }
    ++processed;
    transferred += s.length_bytes;
    if (CopyResult* r = tracked ? find(nexus.id, list_id) : nullptr) {
      r->segments_processed = processed;
      r->transferred_bytes = transferred;
    }
  }
  if (CopyResult* r = tracked ? find(nexus.id, list_id) : nullptr) {
    r->done = true;
    r->ok = !error;
    if (!r->hold) {
      std::erase_if(results_, [&](const CopyResult& c) {
        return c.nexus_id == nexus.id && c.list_id == list_id;
      });
    }
  }
  co_return error ? fail(std::move(*error)) : done;
}

Task<Response> CopyManager::receive_copy_results(const Nexus& nexus, std::span<const uint8_t> cdb,
                                                 std::vector<std::byte>& data_in) {
  data_in.clear();
  if (cdb.size() < 16) {
    co_return invalid_cdb(0);
  }
  const uint8_t action = cdb[1] & 0x1F;
  const uint8_t list_id = cdb[2];
  const uint32_t allocation = get32(&cdb[10]);
  std::vector<std::byte> out;
  if (action == kOperatingParameters) {
    // SPC-4 6.18.5, Table 201.
    const uint8_t codes[] = {kSegmentBlockToBlock, kSegmentBlockToBlockBytes, kCscdIdentification};
    out.assign(44 + sizeof codes, std::byte{0});
    put32(out, 0, static_cast<uint32_t>(out.size() - 4));
    put16(out, 8, kMaxCscdDescriptors);
    put16(out, 10, kMaxSegmentDescriptors);
    put32(out, 12, kMaxDescriptorListBytes);
    put32(out, 16, kMaxSegmentBytes);
    put32(out, 20, 0);  // MAXIMUM INLINE DATA LENGTH
    put32(out, 24, 0);  // HELD DATA LIMIT
    put32(out, 28, 0);  // MAXIMUM STREAM DEVICE TRANSFER SIZE
    put16(out, 34, kMaxConcurrentCopies);
    out[36] = std::byte(kMaxConcurrentCopies);
    out[37] = std::byte(std::countr_zero(volume_.block_size_bytes()));  // DATA SEGMENT GRANULARITY
    out[43] = std::byte(sizeof codes);
    for (size_t i = 0; i < sizeof codes; ++i) {
      out[44 + i] = std::byte(codes[i]);
    }
  } else if (action == kCopyStatus) {
    CopyResult* r = find(nexus.id, list_id);
    if (r == nullptr) {
      Response bad = invalid_cdb(2);
      bad.transfer_bytes = allocation;
      co_return bad;
    }
    // SPC-4 6.18.3, Table 195; the transfer count in bytes, or KiB units when that is too big.
    out.assign(12, std::byte{0});
    put32(out, 0, 8);
    out[4] = std::byte(!r->done ? kInProgress : r->ok ? kCompleted : kCompletedWithErrors);
    put16(out, 5, r->segments_processed);
    uint64_t count = r->transferred_bytes;
    uint8_t units = 0x00;
    while (count > 0xFFFFFFFFull) {
      count >>= 10;
      units = units == 0 ? 0xF1 : static_cast<uint8_t>(units + 1);
    }
    out[7] = std::byte(units);
    put32(out, 8, static_cast<uint32_t>(count));
    if (r->done) {  // reported once, then discarded
      std::erase_if(results_, [&](const CopyResult& c) {
        return c.nexus_id == nexus.id && c.list_id == list_id;
      });
    }
  } else {
    Response bad = invalid_cdb(1, 4);
    bad.transfer_bytes = allocation;
    co_return bad;
  }
  co_return parameter_data(std::move(out), allocation, data_in);
}

std::vector<uint8_t> CopyManager::third_party_copy_vpd(uint32_t block_size_bytes) {
  std::vector<uint8_t> page(4, 0);
  page[1] = 0x8F;
  auto descriptor = [&](uint16_t type, std::vector<uint8_t> body) {
    body.resize((body.size() + 4 + 3) / 4 * 4 - 4, 0);  // descriptors are 4-byte multiples
    const size_t at = page.size();
    page.resize(at + 4 + body.size(), 0);
    put16(page, at, type);
    put16(page, at + 2, static_cast<uint16_t>(body.size()));
    std::copy(body.begin(), body.end(), page.begin() + static_cast<ptrdiff_t>(at + 4));
  };
  // Supported Commands (0x0001, SPC-4 7.8.17.3): EXTENDED COPY (LID1) and RECEIVE COPY
  // RESULTS (COPY STATUS, OPERATING PARAMETERS).
  const std::vector<uint8_t> commands = {0x83, 1, 0x00, 0x84, 2, kCopyStatus, kOperatingParameters};
  std::vector<uint8_t> body = {static_cast<uint8_t>(commands.size())};
  body.insert(body.end(), commands.begin(), commands.end());
  descriptor(0x0001, body);
  // Parameter Data (0x0008, SPC-4 7.8.17.4).
  body.assign(0x1C, 0);
  put16(body, 4, kMaxCscdDescriptors);
  put16(body, 6, kMaxSegmentDescriptors);
  put32(body, 8, kMaxDescriptorListBytes);
  put32(body, 12, 0);  // MAXIMUM INLINE DATA LENGTH
  descriptor(0x0008, body);
  // Supported Descriptors (0x0009, SPC-4 7.8.17.5).
  descriptor(0x0009, {3, kSegmentBlockToBlock, kSegmentBlockToBlockBytes, kCscdIdentification});
  // General Copy Operations (0x8001, SPC-4 7.8.17.8).
  body.assign(0x20, 0);
  put32(body, 0, kMaxConcurrentCopies);  // TOTAL CONCURRENT COPIES
  put32(body, 4, kMaxConcurrentCopies);  // MAXIMUM IDENTIFIED CONCURRENT COPIES
  put32(body, 8, kMaxSegmentBytes);
  body[12] = static_cast<uint8_t>(std::countr_zero(block_size_bytes));  // DATA SEGMENT GRANULARITY
  descriptor(0x8001, body);
  put16(page, 2, static_cast<uint16_t>(page.size() - 4));
  return page;
}

}  // namespace cairn::target::scsi
