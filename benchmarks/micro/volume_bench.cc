// Micro-benchmarks of the volume data path over the in-memory chunk store: one 4 KiB write
// (hash, dedup lookup, map update, unref of the old chunk) and one 4 KiB read (map lookup,
// store get). MemChunkStore keeps disk I/O out of the figure, so this measures the CPU cost
// the volume layer adds per request.
//
// The benchmark loop runs inside one coroutine on an io_context owned by the benchmark, so
// the figure excludes spawning but includes each operation's awaitable frames.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <vector>

#include "base/asio.h"
#include "blockmap/volume.h"
#include "io/chunk_hash.h"
#include "io/mem_chunk_store.h"
#include "io/mem_meta_store.h"

namespace cairn::bench {
namespace {

constexpr uint64_t kChunkBytes = 4096;
constexpr uint64_t kVolumeBytes = 64ull << 20;  // 16384 chunks: bounded memory
constexpr uint64_t kChunks = kVolumeBytes / kChunkBytes;
const std::byte kKey[1] = {std::byte{42}};

// A 4 KiB buffer whose first 8 bytes carry a counter: every write gets distinct content
// (no accidental dedup), and making it costs 8 bytes, not a 4 KiB refill.
class UniqueChunks {
 public:
  UniqueChunks() : buffer_(kChunkBytes) {
    uint64_t x = 0x243f6a8885a308d3ull;
    for (auto& b : buffer_) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      b = static_cast<std::byte>(x >> 56);
    }
  }
  std::span<const std::byte> next() {
    ++counter_;
    std::memcpy(buffer_.data(), &counter_, sizeof counter_);
    return buffer_;
  }

 private:
  std::vector<std::byte> buffer_;
  uint64_t counter_ = 0;
};

// Owns an io_context, the in-memory stores and one 64 MiB volume.
class VolumeFixture {
 public:
  VolumeFixture() { run(open()); }

  // Runs `task` to completion on this fixture's context.
  void run(Task<void> task) {
    asio::co_spawn(context_, std::move(task), [](std::exception_ptr e) {
      if (e) {
        std::rethrow_exception(e);
      }
    });
    context_.restart();
    context_.run();
  }

  blockmap::Volume& volume() { return *volume_; }
  io::MemChunkStore& store() { return store_; }

 private:
  Task<void> open() {
    blockmap::VolumeConfig config;
    config.name = "bench";
    config.size_bytes = kVolumeBytes;
    auto opened = co_await blockmap::Volume::open(config, store_, meta_, context_.get_executor());
    if (!opened) {
      throw std::runtime_error("cannot open the benchmark volume");
    }
    volume_ = std::move(*opened);
  }

  asio::io_context context_;
  io::ChunkHasher hasher_{io::ChunkHasher::Kind::xxh3, kKey};
  io::MemChunkStore store_{hasher_};
  io::MemMetaStore meta_;
  std::unique_ptr<blockmap::Volume> volume_;
};

// Visits chunk indexes in a fixed scattered order (odd stride covers every chunk).
uint64_t scattered_offset(uint64_t i) {
  return ((i * 7919) % kChunks) * kChunkBytes;
}

Task<void> write_loop(benchmark::State& state, blockmap::Volume& volume, bool unique) {
  UniqueChunks chunks;
  std::span<const std::byte> same = chunks.next();
  uint64_t i = 0;
  for (auto _ : state) {
    auto data = unique ? chunks.next() : same;
    auto r = co_await volume.write(scattered_offset(i++), data);
    if (!r) {
      state.SkipWithError("write failed");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kChunkBytes));
}

Task<void> fill(blockmap::Volume& volume) {
  UniqueChunks chunks;
  for (uint64_t i = 0; i < kChunks; ++i) {
    auto r = co_await volume.write(i * kChunkBytes, chunks.next());
    if (!r) {
      throw std::runtime_error("fill failed");
    }
  }
}

Task<void> read_loop(benchmark::State& state, blockmap::Volume& volume) {
  std::vector<std::byte> out(kChunkBytes);
  uint64_t i = 0;
  for (auto _ : state) {
    auto r = co_await volume.read(scattered_offset(i++), out);
    if (!r) {
      state.SkipWithError("read failed");
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kChunkBytes));
}

// Every write carries new content: hash, insert into the store, map update, old chunk freed.
void BM_VolumeWriteUnique_4K(benchmark::State& state) {
  VolumeFixture f;
  f.run(fill(f.volume()));
  f.run(write_loop(state, f.volume(), /*unique=*/true));
}

// Every write carries the same content: hash, dedup hit confirmed by comparing bytes.
void BM_VolumeWriteDedupHit_4K(benchmark::State& state) {
  VolumeFixture f;
  f.run(write_loop(state, f.volume(), /*unique=*/false));
}

void BM_VolumeRead_4K(benchmark::State& state) {
  VolumeFixture f;
  f.run(fill(f.volume()));
  f.run(read_loop(state, f.volume()));
}

BENCHMARK(BM_VolumeWriteUnique_4K);
BENCHMARK(BM_VolumeWriteDedupHit_4K);
BENCHMARK(BM_VolumeRead_4K);

}  // namespace
}  // namespace cairn::bench
