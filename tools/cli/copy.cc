#include "tools/cli/copy.h"

#include <algorithm>
#include <vector>

#include "tools/cli/cli_error.h"

namespace cairn::cli {
namespace {

constexpr uint64_t kPieceBytes = 1u << 20;
constexpr uint64_t kZeroGrainBytes = 4096;

uint64_t round_up(uint64_t v, uint64_t align) {
  return (v + align - 1) / align * align;
}

bool all_zero(std::span<const std::byte> data) {
  return std::all_of(data.begin(), data.end(), [](std::byte b) { return b == std::byte{0}; });
}

// Copies one piece held in `buf` (`padded` bytes, of which the first `real` came from the
// source) to `dst` at `offset`: runs of all-zero grains become zero(), the rest write().
void put_piece(Endpoint& dst, uint64_t offset, std::span<const std::byte> buf, uint64_t real,
               uint64_t grain, CopyStats& stats) {
  uint64_t run_start = 0;
  while (run_start < buf.size()) {
    bool zero = all_zero(buf.subspan(run_start, std::min(grain, buf.size() - run_start)));
    uint64_t run_end = run_start;
    while (run_end < buf.size()) {
      uint64_t n = std::min(grain, buf.size() - run_end);
      if (all_zero(buf.subspan(run_end, n)) != zero) {
        break;
      }
      run_end += n;
    }
    if (zero) {
      dst.zero(offset + run_start, run_end - run_start);
    } else {
      dst.write(offset + run_start, buf.subspan(run_start, run_end - run_start));
    }
    uint64_t counted = std::min(run_end, real) - std::min(run_start, real);
    (zero ? stats.zero_bytes : stats.data_bytes) += counted;
    run_start = run_end;
  }
}

}  // namespace

CopyStats copy(Endpoint& src, Endpoint& dst, Progress& progress) {
  auto start = std::chrono::steady_clock::now();
  CopyStats stats;
  stats.total_bytes = src.size_bytes();
  uint64_t dst_block = dst.block_size_bytes();
  uint64_t grain = std::max<uint64_t>(kZeroGrainBytes, dst_block);
  uint64_t needed = round_up(stats.total_bytes, dst_block);
  if (dst.size_bytes() < needed) {
    throw CliError(src.name() + " is " + std::to_string(stats.total_bytes) + " bytes but " +
                   dst.name() + " holds only " + std::to_string(dst.size_bytes()) +
                   "; make it larger first (cairn volume resize)");
  }
  uint64_t piece =
      std::min<uint64_t>({kPieceBytes, src.max_request_bytes(), dst.max_request_bytes()});
  piece = std::max(grain, piece / grain * grain);
  std::vector<std::byte> buf(piece + dst_block);
  for (uint64_t offset = 0; offset < stats.total_bytes; offset += piece) {
    uint64_t real = std::min(piece, stats.total_bytes - offset);
    uint64_t padded = round_up(real, dst_block);
    if (src.reads_as_zeroes(offset, real)) {
      dst.zero(offset, padded);
      stats.zero_bytes += real;
    } else {
      src.read(offset, std::span(buf).first(real));
      std::fill(buf.begin() + static_cast<std::ptrdiff_t>(real),
                buf.begin() + static_cast<std::ptrdiff_t>(padded), std::byte{0});
      put_piece(dst, offset, std::span(buf).first(padded), real, grain, stats);
    }
    progress.update(offset + real);
  }
  dst.flush();
  progress.finish();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace cairn::cli
