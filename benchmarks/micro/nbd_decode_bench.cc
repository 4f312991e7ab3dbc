// Micro-benchmark of NBD transmission-request decoding (NetworkBlockDevice/nbd doc/proto.md,
// "Request message"): what the server does with every 28-byte request header before it
// touches the volume. decode_request() checks the magic and byte-swaps the fields;
// check_request() validates the command, flags, range and alignment against the session.
#include <benchmark/benchmark.h>

#include <array>
#include <cstring>
#include <vector>

#include "target/nbd/protocol.h"

namespace cairn::bench {
namespace {

namespace nbd = target::nbd;

constexpr uint64_t kExportBytes = 1ull << 30;
constexpr std::size_t kHeaders = 1024;  // a mix of commands, cycled through

// kHeaders encoded request headers: 4 KiB reads and writes (some FUA), flushes and block
// status queries at scattered aligned offsets, as a QD32 random workload sends them.
std::vector<std::array<std::byte, sizeof(nbd::RequestHeader)>> make_headers() {
  std::vector<std::array<std::byte, sizeof(nbd::RequestHeader)>> out(kHeaders);
  for (std::size_t i = 0; i < kHeaders; ++i) {
    nbd::Request r;
    r.cookie = i + 1;
    r.offset_bytes = ((i * 7919) % (kExportBytes / 4096)) * 4096;
    r.length_bytes = 4096;
    switch (i % 8) {
      case 0:
      case 1:
      case 2:
        r.type = static_cast<uint16_t>(nbd::Cmd::read);
        break;
      case 3:
      case 4:
        r.type = static_cast<uint16_t>(nbd::Cmd::write);
        break;
      case 5:
        r.type = static_cast<uint16_t>(nbd::Cmd::write);
        r.flags = nbd::kCmdFlagFua;
        break;
      case 6:
        r.type = static_cast<uint16_t>(nbd::Cmd::block_status);
        r.length_bytes = 1u << 20;
        r.offset_bytes = 0;
        break;
      default:
        r.type = static_cast<uint16_t>(nbd::Cmd::flush);
        r.offset_bytes = 0;
        r.length_bytes = 0;
        break;
    }
    nbd::RequestHeader wire = nbd::encode_request(r);
    std::memcpy(out[i].data(), &wire, sizeof wire);
  }
  return out;
}

nbd::Session make_session() {
  nbd::ExportCapabilities caps;
  nbd::Session s;
  s.size_bytes = kExportBytes;
  s.structured_replies = true;
  s.base_allocation = true;
  s.transmission_flags = nbd::transmission_flags(caps, /*structured_replies=*/true);
  return s;
}

void BM_NbdDecodeRequest(benchmark::State& state) {
  const auto headers = make_headers();
  std::size_t i = 0;
  for (auto _ : state) {
    auto r = nbd::decode_request(headers[i]);
    benchmark::DoNotOptimize(r);
    i = (i + 1) % kHeaders;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_NbdDecodeAndCheckRequest(benchmark::State& state) {
  const auto headers = make_headers();
  const nbd::Session session = make_session();
  std::size_t i = 0;
  uint64_t refused = 0;
  for (auto _ : state) {
    auto r = nbd::decode_request(headers[i]);
    if (!r || nbd::check_request(*r, session) != nbd::Errno::ok) {
      ++refused;
    }
    i = (i + 1) % kHeaders;
  }
  benchmark::DoNotOptimize(refused);
  if (refused != 0) {
    state.SkipWithError("a valid request was refused");  // the figure would not mean much
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

BENCHMARK(BM_NbdDecodeRequest);
BENCHMARK(BM_NbdDecodeAndCheckRequest);

}  // namespace
}  // namespace cairn::bench
