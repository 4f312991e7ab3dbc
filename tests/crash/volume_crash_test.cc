// Crash harness for volumes (issue 2, M3 "Crash rule"; NBD proto.md, "Ordering of messages
// and writes"). A seeded workload of concurrent clients (writes of 512-byte blocks, so most
// are read-modify-write of larger chunks; FUA writes; trims; write-zeroes with and without
// NO_HOLE; flushes) runs against a volume on a SimChunkStore and journals on SimBlockFiles
// (io::SimLogFactory), and again on io's LocalChunkStore (data on a SimBlockFile) and
// LocalMetaStore, so that the whole storage stack loses power. Power is cut right after every
// flush completes, right before, and at random points between; the volume is recovered from
// what survived and every block is checked:
//
//   A write W is *required* once it is acknowledged and either carried FUA, the volume is
//   write-through, or a flush was sent after W's reply and answered before the cut. The
//   recovered content of a block must be the content of a write to that block that no
//   required write to the block superseded (was sent after its reply), or, if no write to
//   the block is required, possibly the block's initial zeroes. Nothing else: a block that
//   mixes two writes, or that holds data lost or resurrected, fails.
//
// A failure prints the seed; CAIRN_SEED=<n> replays just that seed, CAIRN_SEEDS=<n> runs
// seeds 1..n (default 40).
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <random>

#include "blockmap/volume.h"
#include "io/chunk_hash.h"
#include "io/local_chunk_store.h"
#include "io/local_meta_store.h"
#include "io/mem_meta_store.h"
#include "io/sim_block_file.h"
#include "io/sim_log_factory.h"
#include "tests/blockmap/sim_chunk_store.h"
#include "tests/test_util.h"

namespace cairn::blockmap {
namespace {

const std::byte kKey[1] = {std::byte{1}};
constexpr uint64_t kBlockBytes = 512;
constexpr uint64_t kZones = 6;        // hot zones, 1 MiB apart: several map pages
constexpr uint64_t kZoneBlocks = 24;  // hot blocks per zone
constexpr uint64_t kZoneStrideBlocks = 2048;
constexpr uint64_t kVolumeBytes = kZones * kZoneStrideBlocks * kBlockBytes;

enum class Kind { write, trim, zero, zero_no_hole, flush };

struct Op {
  Kind kind = Kind::write;
  bool fua = false;
  uint64_t first_block = 0;
  uint64_t blocks = 0;
  uint64_t content = 0;  // writes: seed of the data (repeats sometimes, for dedup)
  int64_t sent = -1;     // logical clock at send and at reply; -1: never
  int64_t done = -1;
  bool ok = false;
};

struct Plan {
  uint32_t chunk_bytes = 4096;
  bool write_through = false;
  std::vector<std::vector<Op>> clients;
};

Plan make_plan(uint64_t seed) {
  std::mt19937_64 rng(seed);
  Plan plan;
  plan.chunk_bytes = rng() % 2 == 0 ? 4096 : 16384;
  plan.write_through = rng() % 8 == 0;
  unsigned clients = 2 + static_cast<unsigned>(rng() % 3);
  plan.clients.resize(clients);
  for (auto& ops : plan.clients) {
    unsigned n = 20 + static_cast<unsigned>(rng() % 20);
    for (unsigned i = 0; i < n; ++i) {
      Op op;
      unsigned r = static_cast<unsigned>(rng() % 100);
      op.kind = r < 62   ? Kind::write
                : r < 70 ? Kind::trim
                : r < 76 ? Kind::zero
                : r < 80 ? Kind::zero_no_hole
                         : Kind::flush;
      op.fua = op.kind != Kind::flush && rng() % 8 == 0;
      uint64_t within = rng() % kZoneBlocks;
      op.first_block = (rng() % kZones) * kZoneStrideBlocks + within;
      op.blocks = 1 + rng() % std::min<uint64_t>(12, kZoneBlocks - within);
      op.content = rng() % 4 == 0 ? rng() % 3 : rng();
      ops.push_back(op);
    }
  }
  return plan;
}

std::vector<std::byte> block_content(const Op& op, uint64_t block) {
  if (op.kind != Kind::write) {
    return std::vector<std::byte>(kBlockBytes);
  }
  return test::pattern(kBlockBytes, op.content * 1000003 + (block - op.first_block));
}

// Log wrappers that may yield around sync(), so that power can be cut after a commit appended
// its records but before they were synced, and after the sync but before the commit went on.
class YieldingLog final : public io::RecordLog {
 public:
  YieldingLog(std::unique_ptr<io::RecordLog> inner, std::mt19937_64& rng)
      : inner_(std::move(inner)), rng_(rng) {}
  Task<Result<void>> replay(const Visitor& visit) override { return inner_->replay(visit); }
  Result<uint64_t> append(std::span<const std::byte> record) override {
    return inner_->append(record);
  }
  Task<Result<void>> sync() override {
    co_await maybe_yield();
    auto r = co_await inner_->sync();
    co_await maybe_yield();
    co_return r;
  }
  Task<Result<void>> release_before(uint64_t lsn) override {
    co_await maybe_yield();
    co_return co_await inner_->release_before(lsn);
  }
  uint64_t capacity_bytes() const override { return inner_->capacity_bytes(); }
  uint64_t used_bytes() const override { return inner_->used_bytes(); }

 private:
  Task<void> maybe_yield() {
    if (rng_() % 2 == 0) {
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    }
  }
  std::unique_ptr<io::RecordLog> inner_;
  std::mt19937_64& rng_;
};

class YieldingLogFactory final : public io::LogFactory {
 public:
  YieldingLogFactory(io::SimLogFactory& inner, uint64_t seed) : inner_(inner), rng_(seed) {}
  Task<Result<std::unique_ptr<io::RecordLog>>> open(std::string_view name) override {
    auto log = co_await inner_.open(name);
    if (!log) {
      co_return log.error();
    }
    co_return std::unique_ptr<io::RecordLog>(new YieldingLog(std::move(*log), rng_));
  }
  Task<Result<void>> remove(std::string_view name) override { return inner_.remove(name); }

 private:
  io::SimLogFactory& inner_;
  std::mt19937_64 rng_;
};

// The durable world: survives power cuts (the store and the logs lose what was not durable).
// Which chunk and metadata stores the volume runs on.
enum class Backend {
  sim,    // SimChunkStore and MemMetaStore: isolates the volume layer
  local,  // io's LocalChunkStore on a SimBlockFile and LocalMetaStore, journals on sim disks
};

struct World {
  World(uint64_t seed, Backend b)
      : backend(b), store(hasher, seed), yielding_logs(logs, seed + 1) {}
  Backend backend;
  io::ChunkHasher hasher{io::ChunkHasher::Kind::xxh3, kKey};
  test::SimChunkStore store;
  io::MemMetaStore meta;
  io::SimLogFactory logs{16 << 10};
  YieldingLogFactory yielding_logs;
  // Backend::local: the data disk and the logs of the chunk index and the meta store.
  io::SimBlockFile data{2 << 20, 256 << 20};
  io::SimBlockFile index_table;
  io::SimLogFactory system_logs{1 << 20};

  void power_cut(uint64_t seed) {
    store.power_cut(seed);
    logs.power_cut_all(seed);
    data.power_cut(seed ^ 0xda7a);
    index_table.power_cut(seed ^ 0x1dc5);
    system_logs.power_cut_all(seed ^ 0x5157);
  }
};

// One life of the node. The context is destroyed first so that suspended requests unwind
// while their volume still exists.
struct Life {
  std::unique_ptr<io::LocalChunkStore> local_store;
  std::unique_ptr<io::LocalMetaStore> local_meta;
  std::unique_ptr<Volume> volume;
  asio::io_context ctx;
  ~Life() { ctx.stop(); }
};

VolumeConfig config_of(const Plan& plan) {
  VolumeConfig c;
  c.name = "crash";
  c.size_bytes = kVolumeBytes;
  c.block_size_bytes = 512;
  c.chunk_size_bytes = plan.chunk_bytes;
  c.durability = plan.write_through ? Durability::write_through : Durability::write_back;
  return c;
}

Task<Result<void>> open_local_stores(World& world, Life& life) {
  auto journal = co_await world.system_logs.open("chunks-index");
  if (!journal) {
    co_return journal.error();
  }
  io::LocalChunkStore::Options options;
  options.owner = life.ctx.get_executor();
  options.grow_step_bytes = 2 << 20;
  options.max_capacity_bytes = 256 << 20;
  options.cache_bytes = 256 << 10;
  options.index_file = &world.index_table;
  // A few pages only, so index pages are evicted and read back between crashes.
  options.index_cache_bytes = 4 * io::PagedIndex::kPageCostBytes;
  auto store =
      co_await io::LocalChunkStore::open(world.data, std::move(*journal), world.hasher, options);
  if (!store) {
    co_return store.error();
  }
  life.local_store = std::move(*store);
  auto meta_log = co_await world.system_logs.open("meta");
  if (!meta_log) {
    co_return meta_log.error();
  }
  auto meta = co_await io::LocalMetaStore::open(std::move(*meta_log), life.ctx.get_executor());
  if (!meta) {
    co_return meta.error();
  }
  life.local_meta = std::move(*meta);
  co_return Result<void>{};
}

bool open_volume(World& world, const Plan& plan, Life& life) {
  io::ChunkStore* store = &world.store;
  io::MetaStore* meta = &world.meta;
  if (world.backend == Backend::local) {
    auto opened = test::run(life.ctx, open_local_stores(world, life));
    if (!opened) {
      ADD_FAILURE() << "cannot open the local stores: " << opened.error().message();
      return false;
    }
    store = life.local_store.get();
    meta = life.local_meta.get();
  }
  VolumeStorage storage{*store, *meta, &world.yielding_logs, 0};  // smallest map cache
  auto v = test::run(life.ctx, Volume::open(config_of(plan), storage, life.ctx.get_executor()));
  if (!v) {
    ADD_FAILURE() << "open failed: " << v.error().message();
    return false;
  }
  life.volume = std::move(*v);
  return true;
}

Task<Result<void>> issue(Volume& v, const Op& op) {
  uint64_t offset = op.first_block * kBlockBytes;
  uint64_t length = op.blocks * kBlockBytes;
  WriteFlags flags{.fua = op.fua, .no_hole = op.kind == Kind::zero_no_hole};
  switch (op.kind) {
    case Kind::write: {
      std::vector<std::byte> data;
      for (uint64_t b = op.first_block; b < op.first_block + op.blocks; ++b) {
        auto part = block_content(op, b);
        data.insert(data.end(), part.begin(), part.end());
      }
      co_return co_await v.write(offset, data, flags);
    }
    case Kind::trim:
      co_return co_await v.trim(offset, length, flags);
    case Kind::zero:
    case Kind::zero_no_hole:
      co_return co_await v.write_zeroes(offset, length, flags);
    case Kind::flush:
      co_return co_await v.flush();
  }
  co_return Result<void>{};
}

struct Clock {
  int64_t now = 0;
  uint64_t step = 0;  // handlers run so far
  std::vector<uint64_t> flush_steps;
};

Task<void> client(Volume& v, std::vector<Op>& ops, Clock& clock) {
  for (Op& op : ops) {
    op.sent = ++clock.now;
    auto r = co_await issue(v, op);
    op.done = ++clock.now;
    op.ok = static_cast<bool>(r);
    if (op.kind == Kind::flush && op.ok) {
      clock.flush_steps.push_back(clock.step + 1);  // the handler running now
    }
  }
}

// Runs the workload until `max_steps` handlers ran or every client finished.
void run_workload(Life& life, Plan& plan, Clock& clock, uint64_t max_steps) {
  std::size_t finished = 0;
  for (auto& ops : plan.clients) {
    asio::co_spawn(life.ctx, client(*life.volume, ops, clock),
                   [&](std::exception_ptr) { finished++; });
  }
  life.ctx.restart();
  while (clock.step < max_steps && finished < plan.clients.size() && life.ctx.run_one() > 0) {
    clock.step++;
  }
}

bool required(const Plan& plan, const Op& w, const std::vector<const Op*>& flushes) {
  if (w.done < 0 || !w.ok) {
    return false;
  }
  if (w.fua || plan.write_through) {
    return true;
  }
  for (const Op* f : flushes) {
    if (f->sent > w.done) {
      return true;
    }
  }
  return false;
}

// Checks every hot block of the recovered volume against the crash rule.
void check(uint64_t seed, const std::string& where, const Plan& plan, Life& life) {
  std::vector<const Op*> flushes, writes;
  for (const auto& ops : plan.clients) {
    for (const Op& op : ops) {
      if (op.sent < 0) {
        continue;
      }
      if (op.kind == Kind::flush) {
        if (op.done >= 0 && op.ok) {
          flushes.push_back(&op);
        }
      } else {
        writes.push_back(&op);
      }
    }
  }
  std::vector<std::byte> got(kBlockBytes);
  for (uint64_t zone = 0; zone < kZones; ++zone) {
    for (uint64_t k = 0; k < kZoneBlocks + 1; ++k) {
      uint64_t block = zone * kZoneStrideBlocks + k;
      auto r = test::run(life.ctx, life.volume->read(block * kBlockBytes, got));
      ASSERT_TRUE(r) << "seed " << seed << " " << where << ": read of block " << block
                     << " failed: " << r.error().message();
      std::vector<const Op*> on_block, req;
      for (const Op* w : writes) {
        if (block >= w->first_block && block < w->first_block + w->blocks) {
          on_block.push_back(w);
          if (required(plan, *w, flushes)) {
            req.push_back(w);
          }
        }
      }
      bool allowed = req.empty() && got == std::vector<std::byte>(kBlockBytes);
      for (const Op* w : on_block) {
        bool superseded = w->done >= 0 && std::any_of(req.begin(), req.end(), [&](const Op* q) {
                            return q->sent > w->done;
                          });
        if (!superseded && got == block_content(*w, block)) {
          allowed = true;
        }
      }
      ASSERT_TRUE(allowed) << "seed " << seed << " " << where << ": block " << block
                           << " holds content the crash rule does not allow (" << on_block.size()
                           << " writes, " << req.size() << " required)";
    }
  }
}

// Replays the plan from scratch up to `cut_step`, cuts power, recovers and checks.
void cut_and_check(Backend backend, uint64_t seed, uint64_t cut_step, uint64_t cut_seed) {
  Plan plan = make_plan(seed);
  World world(seed, backend);
  Clock clock;
  {
    Life life;
    if (!open_volume(world, plan, life)) {
      return;
    }
    run_workload(life, plan, clock, cut_step);
    world.power_cut(cut_seed);
  }
  Life after;
  std::string where = "cut at step " + std::to_string(cut_step);
  ASSERT_TRUE(open_volume(world, plan, after)) << "seed " << seed << " " << where;
  check(seed, where, plan, after);
  // The recovered volume keeps working.
  auto data = test::pattern(kBlockBytes, seed);
  ASSERT_TRUE(test::run(after.ctx, after.volume->write(0, data)));
  ASSERT_TRUE(test::run(after.ctx, after.volume->flush()));
  std::vector<std::byte> back(kBlockBytes);
  ASSERT_TRUE(test::run(after.ctx, after.volume->read(0, back)));
  ASSERT_EQ(back, data) << "seed " << seed;
}

void run_seed(Backend backend, uint64_t seed) {
  // A full run finds the flush points and the length of the run.
  Plan plan = make_plan(seed);
  World world(seed, backend);
  Clock clock;
  uint64_t total = 0;
  {
    Life life;
    ASSERT_TRUE(open_volume(world, plan, life));
    run_workload(life, plan, clock, UINT64_MAX);
    total = clock.step;
    for (const auto& ops : plan.clients) {
      for (const Op& op : ops) {
        ASSERT_TRUE(op.ok) << "seed " << seed << ": an operation failed without a crash";
      }
    }
  }
  std::mt19937_64 rng(seed ^ 0x5eed);
  std::vector<uint64_t> cuts;
  for (uint64_t s : clock.flush_steps) {
    cuts.push_back(s);
    cuts.push_back(s - 1);
  }
  for (int i = 0; i < 12; ++i) {
    cuts.push_back(1 + rng() % total);
  }
  cuts.push_back(total);
  for (uint64_t cut : cuts) {
    cut_and_check(backend, seed, cut, rng());
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "replay with CAIRN_SEED=" << seed;
      return;
    }
  }
}

void run_seeds(Backend backend, uint64_t default_seeds) {
  if (const char* one = std::getenv("CAIRN_SEED")) {
    run_seed(backend, std::strtoull(one, nullptr, 10));
    return;
  }
  uint64_t seeds = default_seeds;
  if (const char* n = std::getenv("CAIRN_SEEDS")) {
    seeds = std::strtoull(n, nullptr, 10);
  }
  for (uint64_t seed = 1; seed <= seeds && !::testing::Test::HasFailure(); ++seed) {
    run_seed(backend, seed);
  }
  if (!::testing::Test::HasFailure()) {
    std::cout << "crash harness: " << seeds << " seeds passed\n";
  }
}

TEST(VolumeCrash, EveryBlockFollowsTheCrashRule) {
  run_seeds(Backend::sim, 40);
}

// The same workloads on io's durable stores: the whole node's storage stack loses power.
TEST(VolumeCrash, EveryBlockFollowsTheCrashRuleOnLocalStores) {
  run_seeds(Backend::local, 20);
}

}  // namespace
}  // namespace cairn::blockmap
