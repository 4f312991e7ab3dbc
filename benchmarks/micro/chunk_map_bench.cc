// Micro-benchmarks of the volume map (blockmap::ChunkMap): lookups and inserts of one chunk
// index, with the map cache holding every page ("cached") and with a cache of 1/16 of the
// pages, so most operations page a 4 KiB map page in from the store and evict another
// ("paged"). The store is MemChunkStore, so the paged figure is the map's CPU cost of a miss
// (hash, checksum, copy) without disk latency.
#include <benchmark/benchmark.h>

#include <memory>
#include <stdexcept>

#include "base/asio.h"
#include "blockmap/chunk_map.h"
#include "io/chunk_hash.h"
#include "io/mem_chunk_store.h"

namespace cairn::bench {
namespace {

using blockmap::ChunkMap;

constexpr uint64_t kChunks = 1ull << 18;  // a 1 GiB volume of 4 KiB chunks
constexpr uint64_t kPages = kChunks / ChunkMap::kIdsPerPage;
constexpr uint64_t kPageCostBytes = ChunkMap::kPageBytes + ChunkMap::kPageOverheadBytes;
const std::byte kKey[1] = {std::byte{9}};

// An arbitrary non-null id for index i (the map takes no references on data ids).
io::ChunkId id_for(uint64_t i) {
  return io::ChunkId{i * 0x9e3779b97f4a7c15ull | 1, i};
}

// Scattered indexes: an odd stride visits every chunk before repeating.
uint64_t scattered(uint64_t i) {
  return (i * 104729) % kChunks;
}

class MapFixture {
 public:
  explicit MapFixture(uint64_t cache_pages) : map_(store_, cache_pages * kPageCostBytes, kChunks) {}

  void run(Task<void> task) {
    asio::co_spawn(context_, std::move(task), [](std::exception_ptr e) {
      if (e) {
        std::rethrow_exception(e);
      }
    });
    context_.restart();
    context_.run();
  }

  ChunkMap& map() { return map_; }

 private:
  asio::io_context context_;
  io::ChunkHasher hasher_{io::ChunkHasher::Kind::xxh3, kKey};
  io::MemChunkStore store_{hasher_};
  ChunkMap map_;
};

Task<void> fill(ChunkMap& map) {
  for (uint64_t i = 0; i < kChunks; ++i) {
    if (!co_await map.set(i, id_for(i))) {
      throw std::runtime_error("fill failed");
    }
  }
}

Task<void> get_loop(benchmark::State& state, ChunkMap& map) {
  uint64_t i = 0;
  for (auto _ : state) {
    uint64_t index = scattered(i++);
    auto r = co_await map.get(index);
    if (!r || *r != id_for(index)) {
      state.SkipWithError("lookup returned the wrong id");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

Task<void> set_loop(benchmark::State& state, ChunkMap& map) {
  uint64_t i = 0;
  for (auto _ : state) {
    uint64_t index = scattered(i++);
    auto r = co_await map.set(index, id_for(index + i));
    if (!r) {
      state.SkipWithError("insert failed");
      break;
    }
    benchmark::DoNotOptimize(*r);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_ChunkMapGetCached(benchmark::State& state) {
  MapFixture f(kPages);
  f.run(fill(f.map()));
  f.run(get_loop(state, f.map()));
}

void BM_ChunkMapSetCached(benchmark::State& state) {
  MapFixture f(kPages);
  f.run(fill(f.map()));
  f.run(set_loop(state, f.map()));
}

void BM_ChunkMapGetPaged(benchmark::State& state) {
  MapFixture f(kPages / 16);
  f.run(fill(f.map()));
  f.run(get_loop(state, f.map()));
}

void BM_ChunkMapSetPaged(benchmark::State& state) {
  MapFixture f(kPages / 16);
  f.run(fill(f.map()));
  f.run(set_loop(state, f.map()));
}

BENCHMARK(BM_ChunkMapGetCached);
BENCHMARK(BM_ChunkMapSetCached);
BENCHMARK(BM_ChunkMapGetPaged);
BENCHMARK(BM_ChunkMapSetPaged);

}  // namespace
}  // namespace cairn::bench
