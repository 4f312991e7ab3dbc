// Micro-benchmarks of chunk addressing and checksumming per 4 KiB chunk (BRIEF, "Extent
// addresses"): the keyed XXH3-128 address, the BLAKE2b address, the XXH3-64 checksum every
// read verifies, and libsodium's plain BLAKE2b-256 for reference.
#include <benchmark/benchmark.h>
#include <sodium.h>

#include <array>
#include <cstddef>
#include <vector>

#include "io/chunk_hash.h"

namespace cairn::bench {
namespace {

constexpr std::size_t kChunkBytes = 4096;

// Deterministic non-repeating bytes, so no hash can shortcut on structure.
std::vector<std::byte> random_chunk(uint64_t seed) {
  std::vector<std::byte> chunk(kChunkBytes);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& b : chunk) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  return chunk;
}

const std::array<std::byte, 32> kClusterKey = [] {
  std::array<std::byte, 32> key{};
  for (std::size_t i = 0; i < key.size(); ++i) {
    key[i] = static_cast<std::byte>(i * 7 + 1);
  }
  return key;
}();

void address(benchmark::State& state, io::ChunkHasher::Kind kind) {
  io::ChunkHasher hasher(kind, kClusterKey);
  auto chunk = random_chunk(1);
  for (auto _ : state) {
    benchmark::DoNotOptimize(chunk.data());
    io::ChunkId id = hasher.address(chunk);
    benchmark::DoNotOptimize(id);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kChunkBytes));
}

void BM_AddressXxh3_4K(benchmark::State& state) {
  address(state, io::ChunkHasher::Kind::xxh3);
}
void BM_AddressBlake2b_4K(benchmark::State& state) {
  address(state, io::ChunkHasher::Kind::blake2b);
}

void BM_Checksum_4K(benchmark::State& state) {
  auto chunk = random_chunk(2);
  for (auto _ : state) {
    benchmark::DoNotOptimize(chunk.data());
    uint64_t sum = io::ChunkHasher::checksum(chunk);
    benchmark::DoNotOptimize(sum);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kChunkBytes));
}

// Unkeyed libsodium BLAKE2b-256: the BRIEF's reference figure for a cryptographic address.
void BM_SodiumBlake2b256_4K(benchmark::State& state) {
  if (sodium_init() < 0) {
    state.SkipWithError("sodium_init failed");
    return;
  }
  auto chunk = random_chunk(3);
  std::array<unsigned char, crypto_generichash_BYTES> out{};
  for (auto _ : state) {
    benchmark::DoNotOptimize(chunk.data());
    crypto_generichash(out.data(), out.size(), reinterpret_cast<const unsigned char*>(chunk.data()),
                       chunk.size(), nullptr, 0);
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kChunkBytes));
}

BENCHMARK(BM_AddressXxh3_4K);
BENCHMARK(BM_AddressBlake2b_4K);
BENCHMARK(BM_Checksum_4K);
BENCHMARK(BM_SodiumBlake2b256_4K);

}  // namespace
}  // namespace cairn::bench
