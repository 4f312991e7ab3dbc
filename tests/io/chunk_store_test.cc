// Tests of LocalChunkStore: dedup, reference counts and space reclaim; bad input; checksum
// failures; durability across reopen and power cuts (the crash harness); forced hash
// collisions (8-bit addresses); calls from another thread; a real O_DIRECT file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <thread>

#include "io/byte_codec.h"
#include "io/disk_ring.h"
#include "io/errors.h"
#include "io/local_chunk_store.h"
#include "io/paged_index.h"
#include "io/sim_block_file.h"
#include "io/sim_log_factory.h"
#include "tests/test_util.h"

namespace cairn::io {
namespace {

using Bytes = std::vector<std::byte>;
const std::byte kKey[4] = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};

// Index table files of every generation on simulated disks that survive the store (and
// power cuts, each losing its unsynced writes). remove() deletes at once and durably.
class SimTableFiles final : public IndexTableFiles {
 public:
  Result<BlockFile*> open(uint64_t generation) override {
    auto& file = files_[generation];
    if (file == nullptr) {
      file = std::make_unique<SimBlockFile>();
      file->fail_writes_after(fail_new_writes_after);
    }
    return file.get();
  }
  Result<void> remove(uint64_t generation) override {
    auto it = files_.find(generation);
    if (it == files_.end()) {
      return {};
    }
    if (fail_removes) {
      return make_error(errc::io_error);
    }
    files_.erase(it);
    return {};
  }
  void power_cut(uint64_t seed) {
    for (auto& [generation, file] : files_) {
      file->power_cut(seed + generation);
      file->fail_writes_after(std::nullopt);
    }
  }
  [[nodiscard]] std::set<uint64_t> generations() const {
    std::set<uint64_t> out;
    for (const auto& kv : files_) {
      out.insert(kv.first);
    }
    return out;
  }

  std::optional<uint64_t> fail_new_writes_after;  // for files created from now on
  bool fail_removes = false;                      // removing an existing file fails

 private:
  std::map<uint64_t, std::unique_ptr<SimBlockFile>> files_;
};

// A store on simulated disks that survive the store, so a test can cut power and reopen.
class SimStore {
 public:
  explicit SimStore(unsigned address_bits = 128, uint64_t data_bytes = 4u << 20,
                    uint64_t journal_bytes = 256 * 1024, uint64_t cache_bytes = 64 * 1024)
      : hasher_(ChunkHasher::Kind::xxh3, kKey, address_bits),
        data_(data_bytes),
        logs_(journal_bytes),
        cache_bytes_(cache_bytes) {}

  Result<void> open() {
    drain();
    store_.reset();
    auto journal = test::run(ctx_, logs_.open("index"));
    if (!journal) {
      return journal.error();
    }
    LocalChunkStore::Options options;
    options.owner = ctx_.get_executor();
    options.cache_bytes = cache_bytes_;
    if (growable_index) {
      options.index_files = &tables_;
    } else {
      options.index_file = &table_;
    }
    options.index_cache_bytes = index_cache_bytes;
    options.index_buckets = index_buckets;
    options.grow_step_bytes = grow_step_bytes;
    options.max_capacity_bytes = max_capacity_bytes;
    options.write_behind_puts = write_behind_puts;
    auto store =
        test::run(ctx_, LocalChunkStore::open(data_, std::move(*journal), hasher_, options));
    if (!store) {
      return store.error();
    }
    store_ = std::move(*store);
    return {};
  }

  // Runs what is queued (puts answered before their write completed) to the end.
  void drain() {
    ctx_.restart();
    while (ctx_.poll_one() > 0) {
    }
  }

  void power_cut(uint64_t seed) {
    drain();  // with the data writes of answered puts, unsynced, which the cut may lose
    store_.reset();
    data_.power_cut(seed);
    logs_.power_cut_all(seed + 1);
    table_.power_cut(seed + 2);
    tables_.power_cut(seed + 3);
  }

  Result<std::vector<ChunkId>> put(const std::vector<Bytes>& chunks) {
    std::vector<std::span<const std::byte>> spans(chunks.begin(), chunks.end());
    std::vector<ChunkId> ids(chunks.size());
    auto r = test::run(ctx_, store_->put(spans, ids));
    if (!r) {
      return r.error();
    }
    return ids;
  }
  Result<Bytes> get(const ChunkId& id, std::size_t size) {
    Bytes out(size);
    auto r = test::run(ctx_, store_->get(id, out));
    if (!r) {
      return r.error();
    }
    return out;
  }
  // get_many() into `outs` (each sized for its chunk); outs of failed chunks keep what they got.
  Result<void> get_many(const std::vector<ChunkId>& ids, std::vector<Bytes>& outs) {
    std::vector<std::span<std::byte>> spans(outs.begin(), outs.end());
    return test::run(ctx_, store_->get_many(ids, spans));
  }
  Result<void> unref(std::vector<ChunkId> ids) { return test::run(ctx_, store_->unref(ids)); }
  Result<void> ref(std::vector<ChunkId> ids) { return test::run(ctx_, store_->ref(ids)); }
  Result<void> flush() { return test::run(ctx_, store_->flush()); }

  uint64_t refs(const ChunkId& id) { return test::run(ctx_, store_->refs(id)); }
  std::optional<uint64_t> offset_of(const ChunkId& id) {
    return test::run(ctx_, store_->offset_of(id));
  }

  uint64_t grow_step_bytes = 0;
  uint64_t max_capacity_bytes = 0;
  uint64_t index_cache_bytes = 64ull << 20;
  uint64_t index_buckets = 0;
  bool growable_index = false;  // the table's files come from tables(), and it grows
  std::size_t write_behind_puts = 0;

  LocalChunkStore& store() { return *store_; }
  SimBlockFile& data() { return data_; }
  SimBlockFile& journal_disk() { return *logs_.disk("index"); }
  SimBlockFile& table() { return table_; }
  SimTableFiles& tables() { return tables_; }
  SimLogFactory& logs() { return logs_; }
  asio::io_context& ctx() { return ctx_; }

 private:
  asio::io_context ctx_;
  ChunkHasher hasher_;
  SimBlockFile data_;
  SimBlockFile table_;
  SimTableFiles tables_;
  SimLogFactory logs_;
  uint64_t cache_bytes_;
  std::unique_ptr<LocalChunkStore> store_;
};

TEST(LocalChunkStore, DeduplicatesCountsReferencesAndReclaimsSpace) {
  SimStore s;
  ASSERT_TRUE(s.open());
  Bytes a = test::pattern(4096, 1), b = test::pattern(4096, 2), c = test::pattern(10000, 3);
  auto ids = s.put({a, b, a, c});
  ASSERT_TRUE(ids);
  EXPECT_EQ((*ids)[0], (*ids)[2]);
  EXPECT_NE((*ids)[0], (*ids)[1]);
  EXPECT_EQ(s.refs((*ids)[0]), 2u);
  // a, b and c are new and laid out one after another.
  EXPECT_EQ(*s.offset_of((*ids)[1]), *s.offset_of((*ids)[0]) + 4096);
  EXPECT_EQ(*s.offset_of((*ids)[3]), *s.offset_of((*ids)[1]) + 4096);
  auto again = s.put({b});
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)[0], (*ids)[1]);
  ChunkStoreStats st = s.store().stats();
  EXPECT_EQ(st.chunks, 3u);
  EXPECT_EQ(st.dedup_hits, 2u);
  EXPECT_EQ(st.referenced_bytes, 4096u * 4 + 10000);
  EXPECT_EQ(st.physical_bytes, 4096u * 2 + 12288);
  EXPECT_EQ(s.get((*ids)[3], c.size()).value(), c);
  EXPECT_EQ(s.get((*ids)[0], 4096).value(), a);

  ASSERT_TRUE(s.unref({(*ids)[0], (*ids)[0], (*ids)[1], (*ids)[3]}));
  EXPECT_EQ(s.get((*ids)[0], 4096).error(), errc::not_found);
  EXPECT_EQ(s.refs((*ids)[1]), 1u);
  st = s.store().stats();
  EXPECT_EQ(st.chunks, 1u);
  EXPECT_EQ(st.referenced_bytes, 4096u);
  EXPECT_EQ(st.physical_bytes, 4096u);
}

TEST(LocalChunkStore, RejectsBadInput) {
  SimStore s;
  ASSERT_TRUE(s.open());
  EXPECT_EQ(s.put({Bytes{}}).error(), errc::invalid_argument);
  EXPECT_EQ(s.put({Bytes(LocalChunkStore::kMaxChunkBytes + 1)}).error(), errc::invalid_argument);
  EXPECT_TRUE(s.put({Bytes(LocalChunkStore::kMaxChunkBytes, std::byte{7})}));
  std::vector<std::span<const std::byte>> one{std::span<const std::byte>(kKey)};
  std::vector<ChunkId> two(2);
  EXPECT_EQ(test::run(s.ctx(), s.store().put(one, two)).error(), errc::invalid_argument);
  ChunkId unknown{123, 456};
  EXPECT_EQ(s.get(unknown, 4096).error(), errc::not_found);
  EXPECT_EQ(s.ref({unknown}).error(), errc::not_found);
  EXPECT_EQ(s.unref({unknown}).error(), errc::not_found);
  auto ids = s.put({test::pattern(4096, 1)});
  ASSERT_TRUE(ids);
  EXPECT_EQ(s.get((*ids)[0], 4095).error(), errc::invalid_argument);
  // Unref of more references than exist fails as a whole and changes nothing.
  EXPECT_EQ(s.unref({(*ids)[0], (*ids)[0]}).error(), errc::invalid_argument);
  EXPECT_EQ(s.refs((*ids)[0]), 1u);
  EXPECT_EQ(s.unref({(*ids)[0], unknown}).error(), errc::not_found);
  EXPECT_EQ(s.refs((*ids)[0]), 1u);
}

TEST(LocalChunkStore, FullStoreSaysNoSpaceAndRecovers) {
  SimStore s(128, 64 * 1024);  // 15 data blocks
  ASSERT_TRUE(s.open());
  std::vector<ChunkId> ids;
  Result<std::vector<ChunkId>> r;
  for (uint64_t i = 0; i < 100; ++i) {
    r = s.put({test::pattern(4096, i)});
    if (!r) {
      break;
    }
    ids.push_back((*r)[0]);
  }
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::no_space);
  EXPECT_EQ(ids.size(), 15u);
  ASSERT_TRUE(s.unref({ids[3]}));
  // The freed block is reused only once the drop is journalled by a flush.
  EXPECT_EQ(s.put({test::pattern(4096, 1000)}).error(), errc::no_space);
  ASSERT_TRUE(s.flush());
  auto reused = s.put({test::pattern(4096, 1000)});
  ASSERT_TRUE(reused);
  EXPECT_EQ(s.get((*reused)[0], 4096).value(), test::pattern(4096, 1000));
  EXPECT_EQ(s.get(ids[4], 4096).value(), test::pattern(4096, 4));
}

// A put into fragmented free space becomes one disk write per run, written concurrently;
// every chunk must land where the index says.
TEST(LocalChunkStore, PutIntoFragmentedSpaceWritesEveryRun) {
  SimStore s(128, 64 * 1024);  // 15 data blocks
  ASSERT_TRUE(s.open());
  std::vector<Bytes> first;
  for (uint64_t i = 0; i < 15; ++i) {
    first.push_back(test::pattern(4096, i));
  }
  auto ids = s.put(first);
  ASSERT_TRUE(ids);
  std::vector<ChunkId> every_other;
  for (std::size_t i = 0; i < ids->size(); i += 2) {
    every_other.push_back((*ids)[i]);
  }
  ASSERT_TRUE(s.unref(every_other));
  ASSERT_TRUE(s.flush());
  std::vector<Bytes> second;
  for (uint64_t i = 0; i < every_other.size(); ++i) {
    second.push_back(test::pattern(4096, 100 + i));
  }
  auto fresh = s.put(second);
  ASSERT_TRUE(fresh);
  // No two new chunks are neighbours: each is its own run.
  for (std::size_t i = 1; i < fresh->size(); ++i) {
    EXPECT_NE(*s.offset_of((*fresh)[i]), *s.offset_of((*fresh)[i - 1]) + 4096);
  }
  ASSERT_TRUE(s.flush());
  ASSERT_TRUE(s.open());  // an empty cache: the reads go to the disk
  for (std::size_t i = 0; i < fresh->size(); ++i) {
    EXPECT_EQ(s.get((*fresh)[i], 4096).value(), second[i]);
  }
  for (std::size_t i = 1; i < ids->size(); i += 2) {
    EXPECT_EQ(s.get((*ids)[i], 4096).value(), first[i]);
  }
}

// Fills a 1 MiB store (255 data blocks) with one chunk per block and drops every
// `stride`-th chunk (and those of `runs`, [first, last) index ranges), leaving holes.
// Returns the ids of all chunks put.
std::vector<ChunkId> fill_and_punch(SimStore& s, std::size_t stride,
                                    std::vector<std::pair<std::size_t, std::size_t>> runs = {}) {
  std::vector<ChunkId> ids;
  for (uint64_t i = 0; i < 255; ++i) {
    auto id = s.put({test::pattern(4096, i)});
    EXPECT_TRUE(id);
    ids.push_back((*id)[0]);
  }
  std::vector<ChunkId> drop;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    bool in_run =
        std::any_of(runs.begin(), runs.end(), [&](auto r) { return i >= r.first && i < r.second; });
    if (i % stride == 0 || in_run) {
      drop.push_back(ids[i]);
    }
  }
  EXPECT_TRUE(s.unref(drop));
  EXPECT_TRUE(s.flush());
  return ids;
}

std::vector<Bytes> patterns(std::size_t n, uint64_t seed) {
  std::vector<Bytes> out;
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(test::pattern(4096, seed + i));
  }
  return out;
}

// Puts patterns(count, 0) in batches of `batch` chunks, flushing after each; the ids in order.
Result<std::vector<ChunkId>> put_flushing(SimStore& s, uint64_t count, uint64_t batch) {
  std::vector<ChunkId> ids;
  for (uint64_t first = 0; first < count; first += batch) {
    auto got = s.put(patterns(batch, first));
    if (!got) {
      return got.error();
    }
    ids.insert(ids.end(), got->begin(), got->end());
    if (auto r = s.flush(); !r) {
      return r.error();
    }
  }
  return ids;
}

// Free space in 4 KiB holes, 20% of the file: a 128 KiB put grows the file and is one run of
// the new space; a 4 KiB put afterwards fills a hole, not the new space.
TEST(LocalChunkStore, LargePutIntoFragmentedSpaceGrowsForOneRun) {
  SimStore s(128, 1u << 20);
  s.grow_step_bytes = 1u << 20;
  ASSERT_TRUE(s.open());
  fill_and_punch(s, 5);  // 51 holes of 4 KiB
  ASSERT_EQ(s.store().stats().capacity_bytes, 255u * 4096);
  auto large = patterns(32, 1000);
  auto ids = s.put(large);
  ASSERT_TRUE(ids);
  EXPECT_EQ(s.data().size_bytes(), 2u << 20);
  EXPECT_EQ(s.store().stats().capacity_bytes, 511u * 4096);
  uint64_t first = *s.offset_of((*ids)[0]);
  EXPECT_GE(first, 1u << 20);
  for (std::size_t i = 1; i < ids->size(); ++i) {
    EXPECT_EQ(*s.offset_of((*ids)[i]), first + i * 4096);
  }
  auto small = s.put({test::pattern(4096, 2000)});
  ASSERT_TRUE(small);
  EXPECT_LT(*s.offset_of((*small)[0]), 1u << 20);
  ASSERT_TRUE(s.flush());
  s.power_cut(11);
  ASSERT_TRUE(s.open());
  for (std::size_t i = 0; i < ids->size(); ++i) {
    EXPECT_EQ(s.get((*ids)[i], 4096).value(), large[i]);
  }
  EXPECT_EQ(s.get((*small)[0], 4096).value(), test::pattern(4096, 2000));
}

// Free space 53% of the file, over max_fragmented_percent: a 96 KiB put does not grow the
// file; it fills the largest free run (17 blocks: 220 to 236) first, then one hole per chunk.
TEST(LocalChunkStore, LargePutOverTheFragmentationBoundFillsLargestRunsFirst) {
  SimStore s(128, 1u << 20);
  s.grow_step_bytes = 1u << 20;
  ASSERT_TRUE(s.open());
  auto old = fill_and_punch(s, 2, {{220, 236}});
  auto large = patterns(24, 1000);
  auto ids = s.put(large);
  ASSERT_TRUE(ids);
  EXPECT_EQ(s.data().size_bytes(), 1u << 20);  // not grown
  uint64_t run = *s.offset_of((*ids)[0]);
  EXPECT_EQ(run, 4096 + 220u * 4096);
  for (std::size_t i = 1; i < 17; ++i) {
    EXPECT_EQ(*s.offset_of((*ids)[i]), run + i * 4096);
  }
  ASSERT_TRUE(s.flush());
  s.power_cut(12);
  ASSERT_TRUE(s.open());
  for (std::size_t i = 0; i < ids->size(); ++i) {
    EXPECT_EQ(s.get((*ids)[i], 4096).value(), large[i]);
  }
  for (std::size_t i = 1; i < 200; i += 2) {
    EXPECT_EQ(s.get(old[i], 4096).value(), test::pattern(4096, i));
  }
}

// With growth off, the same fragmented space still takes a large put, scattered.
TEST(LocalChunkStore, LargePutWithoutGrowthScattersOverHoles) {
  SimStore s(128, 1u << 20);
  ASSERT_TRUE(s.open());
  fill_and_punch(s, 5);
  auto large = patterns(32, 1000);
  auto ids = s.put(large);
  ASSERT_TRUE(ids);
  EXPECT_EQ(s.data().size_bytes(), 1u << 20);
  ASSERT_TRUE(s.flush());
  ASSERT_TRUE(s.open());
  for (std::size_t i = 0; i < ids->size(); ++i) {
    EXPECT_EQ(s.get((*ids)[i], 4096).value(), large[i]);
  }
  // 19 holes are left; 20 chunks do not fit.
  EXPECT_EQ(s.put(patterns(20, 3000)).error(), errc::no_space);
  EXPECT_TRUE(s.put(patterns(19, 3000)));
}

TEST(LocalChunkStore, GrowsTheDataFileWhenFullUpToItsLimit) {
  SimStore s(128, 64 * 1024);
  s.grow_step_bytes = 64 * 1024;
  s.max_capacity_bytes = 256 * 1024;
  ASSERT_TRUE(s.open());
  EXPECT_EQ(s.store().stats().capacity_bytes, 60u * 1024);
  std::vector<ChunkId> ids;
  Result<std::vector<ChunkId>> r;
  for (uint64_t i = 0; i < 100; ++i) {
    r = s.put({test::pattern(4096, i)});
    if (!r) {
      break;
    }
    ids.push_back((*r)[0]);
  }
  EXPECT_EQ(r.error(), errc::no_space);
  EXPECT_EQ(ids.size(), 63u);  // 256 KiB less the reserved first block
  EXPECT_EQ(s.data().size_bytes(), 256u * 1024);
  EXPECT_EQ(s.store().stats().capacity_bytes, 252u * 1024);
  ASSERT_TRUE(s.flush());
  s.power_cut(3);
  ASSERT_TRUE(s.open());
  EXPECT_EQ(s.get(ids[62], 4096).value(), test::pattern(4096, 62));
}

TEST(LocalChunkStore, CorruptSectorIsAChecksumMismatchNeverBadData) {
  SimStore s;
  ASSERT_TRUE(s.open());
  Bytes a = test::pattern(8192, 1);
  auto ids = s.put({a, test::pattern(4096, 2)});
  ASSERT_TRUE(ids);
  ASSERT_TRUE(s.flush());
  uint64_t offset = *s.offset_of((*ids)[0]);
  ASSERT_TRUE(s.open());  // reopen: an empty cache, so the read goes to the disk
  s.data().corrupt_sector(offset + 4096 + 512);
  EXPECT_EQ(s.get((*ids)[0], a.size()).error(), errc::checksum_mismatch);
  EXPECT_EQ(s.store().stats().checksum_failures, 1u);
  EXPECT_EQ(s.get((*ids)[1], 4096).value(), test::pattern(4096, 2));
  // A put of the same bytes does not trust the damaged copy: it stores a good one.
  auto again = s.put({a});
  ASSERT_TRUE(again);
  EXPECT_NE((*again)[0], (*ids)[0]);
  EXPECT_EQ(s.get((*again)[0], a.size()).value(), a);
}

// A reader on another reactor copies cache hits out on its own thread: with the owner's
// context not running at all, a get of cached chunks still completes. Misses go to the owner.
TEST(LocalChunkStore, CacheHitsOffTheOwnersThreadNeedNoHop) {
  SimStore s;
  ASSERT_TRUE(s.open());
  std::vector<Bytes> chunks = {test::pattern(4096, 1), test::pattern(4096, 2)};
  auto ids = s.put(chunks);  // a put enters the cache
  ASSERT_TRUE(ids);
  asio::io_context other;
  std::vector<Bytes> outs(2, Bytes(4096));
  std::vector<std::span<std::byte>> spans(outs.begin(), outs.end());
  auto got = test::run(other, s.store().get_many(*ids, spans));
  ASSERT_TRUE(got);
  EXPECT_EQ(outs, chunks);
  EXPECT_EQ(s.store().stats().cache_hits, 2u);

  // One hit and one miss: the miss completes on the owner, run on a thread of its own.
  ASSERT_TRUE(s.flush());
  ASSERT_TRUE(s.open());                // an empty cache
  ASSERT_TRUE(s.get((*ids)[0], 4096));  // now cached
  std::atomic<bool> stop{false};
  s.ctx().restart();  // test::run may have left it stopped (out of work)
  std::thread owner([&] {
    auto work = asio::make_work_guard(s.ctx());
    while (!stop) {
      s.ctx().run_for(std::chrono::milliseconds(5));
    }
  });
  outs.assign(2, Bytes(4096));
  spans.assign(outs.begin(), outs.end());
  got = test::run(other, s.store().get_many(*ids, spans));
  stop = true;
  owner.join();
  ASSERT_TRUE(got);
  EXPECT_EQ(outs, chunks);
}

// A put of chunks already stored (the same data written again) confirms the dedup hits by
// reading the stored copies in one batch: adjacent copies cost one disk read, not one each.
// A damaged copy among them is still never trusted.
TEST(LocalChunkStore, RewritingStoredChunksReadsTheirCopiesInOneRequest) {
  SimStore s;
  ASSERT_TRUE(s.open());
  std::vector<Bytes> chunks;
  for (uint64_t i = 0; i < 16; ++i) {
    chunks.push_back(test::pattern(4096, 300 + i));
  }
  auto ids = s.put(chunks);
  ASSERT_TRUE(ids);
  ASSERT_TRUE(s.flush());
  ASSERT_TRUE(s.open());  // an empty cache: the copies are on disk only
  uint64_t reads = s.data().reads();
  uint64_t hits = s.store().stats().dedup_hits;
  auto again = s.put(chunks);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *ids);
  EXPECT_EQ(s.data().reads() - reads, 1u);
  EXPECT_EQ(s.store().stats().dedup_hits - hits, chunks.size());
  EXPECT_EQ(s.refs((*ids)[0]), 2u);
  EXPECT_EQ(s.refs((*ids)[15]), 2u);

  ASSERT_TRUE(s.flush());
  uint64_t offset = *s.offset_of((*ids)[5]);
  ASSERT_TRUE(s.open());
  s.data().corrupt_sector(offset + 512);
  auto third = s.put(chunks);
  ASSERT_TRUE(third);
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    if (i == 5) {
      EXPECT_NE((*third)[i], (*ids)[i]);  // a good copy stored under a disambiguated id
    } else {
      EXPECT_EQ((*third)[i], (*ids)[i]) << i;
    }
    EXPECT_EQ(s.get((*third)[i], 4096).value(), chunks[i]) << i;
  }
  EXPECT_EQ(s.refs((*ids)[0]), 3u);
}

// Outs sized for `chunks`, picked by `order`, filled with a byte no chunk ends in.
std::vector<Bytes> outs_for(const std::vector<Bytes>& chunks,
                            const std::vector<std::size_t>& order) {
  std::vector<Bytes> outs;
  for (std::size_t i : order) {
    outs.emplace_back(chunks[i].size(), std::byte{0xee});
  }
  return outs;
}

std::vector<ChunkId> ids_for(const std::vector<ChunkId>& ids,
                             const std::vector<std::size_t>& order) {
  std::vector<ChunkId> out;
  for (std::size_t i : order) {
    out.push_back(ids[i]);
  }
  return out;
}

// Each of `outs` holds the chunk `order` picked for it.
void expect_picked(const std::vector<Bytes>& outs, const std::vector<Bytes>& chunks,
                   const std::vector<std::size_t>& order) {
  for (std::size_t k = 0; k < order.size(); ++k) {
    EXPECT_EQ(outs[k], chunks[order[k]]) << k;
  }
}

// Puts `chunks` into the open store, flushes and reopens it, so reads start from an empty
// cache; the chunks' ids.
Result<std::vector<ChunkId>> put_and_reopen(SimStore& s, const std::vector<Bytes>& chunks) {
  auto ids = s.put(chunks);
  if (!ids) {
    return ids;
  }
  if (auto r = s.flush(); !r) {
    return r.error();
  }
  if (auto r = s.open(); !r) {
    return r.error();
  }
  return ids;
}

// Chunks of one put lie side by side on disk, so get_many() reads them with one request
// whatever order they are asked in; a gap in what is asked for splits the read.
TEST(LocalChunkStore, GetManyReadsAdjacentChunksWithOneDiskRead) {
  SimStore s;
  ASSERT_TRUE(s.open());
  std::vector<Bytes> chunks;
  for (uint64_t i = 0; i < 12; ++i) {
    chunks.push_back(test::pattern(i % 3 == 0 ? 8192 : (i % 3 == 1 ? 5000 : 4096), i));
  }
  auto ids = put_and_reopen(s, chunks);  // an empty cache: the reads go to the disk
  ASSERT_TRUE(ids);
  std::vector<std::size_t> all = {11, 0, 5, 3, 4, 1, 2, 10, 9, 8, 7, 6, 5};  // 5 twice
  auto outs = outs_for(chunks, all);
  uint64_t reads = s.data().reads();
  ASSERT_TRUE(s.get_many(ids_for(*ids, all), outs));
  EXPECT_EQ(s.data().reads() - reads, 1u);
  expect_picked(outs, chunks, all);
  EXPECT_EQ(s.store().stats().cache_misses, all.size());

  ASSERT_TRUE(s.open());
  std::vector<std::size_t> gaps = {0, 1, 2, 4, 5, 9, 11};  // runs 0-2, 4-5, 9, 11
  outs = outs_for(chunks, gaps);
  reads = s.data().reads();
  ASSERT_TRUE(s.get_many(ids_for(*ids, gaps), outs));
  EXPECT_EQ(s.data().reads() - reads, 4u);
  expect_picked(outs, chunks, gaps);
}

// A run stops at kMaxReadRunBytes even where the chunks go on side by side.
TEST(LocalChunkStore, GetManySplitsRunsAtTheirCap) {
  SimStore s(128, 8u << 20);
  ASSERT_TRUE(s.open());
  constexpr std::size_t kChunks = 2 * LocalChunkStore::kMaxReadRunBytes / 4096 + 3;
  std::vector<Bytes> chunks = patterns(kChunks, 0);
  auto ids = put_and_reopen(s, chunks);
  ASSERT_TRUE(ids);
  std::vector<std::size_t> all(kChunks);
  std::iota(all.begin(), all.end(), 0);
  auto outs = outs_for(chunks, all);
  uint64_t reads = s.data().reads();
  ASSERT_TRUE(s.get_many(*ids, outs));
  EXPECT_EQ(s.data().reads() - reads, 3u);
  EXPECT_EQ(outs, chunks);
}

// Cached chunks are copied out; only the misses are read, in runs around the hits.
TEST(LocalChunkStore, GetManyReadsOnlyTheCacheMisses) {
  SimStore s;
  ASSERT_TRUE(s.open());
  std::vector<Bytes> chunks = patterns(8, 0);
  auto ids = put_and_reopen(s, chunks);
  ASSERT_TRUE(ids);
  EXPECT_EQ(s.get((*ids)[2], 4096).value(), chunks[2]);
  EXPECT_EQ(s.get((*ids)[5], 4096).value(), chunks[5]);
  ChunkStoreStats before = s.store().stats();
  uint64_t reads = s.data().reads();
  std::vector<std::size_t> all = {0, 1, 2, 3, 4, 5, 6, 7};
  auto outs = outs_for(chunks, all);
  ASSERT_TRUE(s.get_many(*ids, outs));
  EXPECT_EQ(outs, chunks);
  EXPECT_EQ(s.data().reads() - reads, 3u);  // 0-1, 3-4, 6-7
  ChunkStoreStats after = s.store().stats();
  EXPECT_EQ(after.cache_hits - before.cache_hits, 2u);
  EXPECT_EQ(after.cache_misses - before.cache_misses, 6u);
  // What was read entered the cache: asking again touches no disk.
  outs = outs_for(chunks, all);
  ASSERT_TRUE(s.get_many(*ids, outs));
  EXPECT_EQ(outs, chunks);
  EXPECT_EQ(s.data().reads() - reads, 3u);
}

// A large put (a streaming 1M write) never enters the read cache, and once the cache is full a
// large batch read (a cold 1M read) passes it by too, instead of evicting the working set;
// while the cache has room, a large batch read fills it.
TEST(LocalChunkStore, LargeBatchesBypassAFullReadCache) {
  constexpr uint64_t kCache = 512 * 1024;
  SimStore s(128, 8u << 20, 256 * 1024, kCache);
  ASSERT_TRUE(s.open());
  std::vector<Bytes> big;
  for (uint64_t i = 0; i < 256; ++i) {
    big.push_back(test::pattern(4096, 1000 + i));  // 1 MiB: more than the cache holds
  }
  auto big_ids = s.put(big);
  ASSERT_TRUE(big_ids);
  std::vector<Bytes> hot;
  std::vector<ChunkId> hot_ids;
  for (uint64_t i = 0; i < kCache / 4096; ++i) {  // small puts fill the cache exactly
    hot.push_back(test::pattern(4096, i));
    auto id = s.put({hot.back()});
    ASSERT_TRUE(id);
    hot_ids.push_back(id->front());
  }
  auto hits_of_hot = [&] {
    uint64_t hits = s.store().stats().cache_hits;
    for (std::size_t i = 0; i < hot.size(); ++i) {
      auto got = s.get(hot_ids[i], 4096);
      EXPECT_TRUE(got && *got == hot[i]) << i;
    }
    return s.store().stats().cache_hits - hits;
  };
  EXPECT_EQ(hits_of_hot(), hot.size());

  // A 1 MiB put and a 1 MiB batch read, both into the full cache: the small chunks stay.
  std::vector<Bytes> more;
  for (uint64_t i = 0; i < 256; ++i) {
    more.push_back(test::pattern(4096, 5000 + i));
  }
  ASSERT_TRUE(s.put(more));
  EXPECT_EQ(hits_of_hot(), hot.size());
  std::vector<Bytes> outs(big.size(), Bytes(4096));
  uint64_t misses = s.store().stats().cache_misses;
  ASSERT_TRUE(s.get_many(*big_ids, outs));
  EXPECT_EQ(outs, big);
  EXPECT_EQ(s.store().stats().cache_misses - misses, big.size());
  EXPECT_EQ(hits_of_hot(), hot.size());

  // A small batch still enters the full cache (evicting the least recently used).
  std::vector<Bytes> few(big.begin(), big.begin() + 4);
  std::vector<ChunkId> few_ids(big_ids->begin(), big_ids->begin() + 4);
  std::vector<Bytes> few_outs(few.size(), Bytes(4096));
  ASSERT_TRUE(s.get_many(few_ids, few_outs));
  uint64_t hits = s.store().stats().cache_hits;
  ASSERT_TRUE(s.get_many(few_ids, few_outs));
  EXPECT_EQ(few_outs, few);
  EXPECT_EQ(s.store().stats().cache_hits - hits, few.size());

  // A cache with room still does not take a large put (writes go around it), but a large
  // batch read fills it.
  SimStore roomy(128, 8u << 20, 256 * 1024, 4u << 20);
  ASSERT_TRUE(roomy.open());
  auto ids = roomy.put(big);
  ASSERT_TRUE(ids);
  misses = roomy.store().stats().cache_misses;
  outs.assign(big.size(), Bytes(4096));
  ASSERT_TRUE(roomy.get_many(*ids, outs));
  EXPECT_EQ(outs, big);
  EXPECT_EQ(roomy.store().stats().cache_misses - misses, big.size());
  hits = roomy.store().stats().cache_hits;
  outs.assign(big.size(), Bytes(4096));
  ASSERT_TRUE(roomy.get_many(*ids, outs));
  EXPECT_EQ(outs, big);
  EXPECT_EQ(roomy.store().stats().cache_hits - hits, big.size());
}

// A damaged chunk in the middle of a run fails alone: the call reports the checksum mismatch,
// the run's other chunks arrive intact, and the damaged one is never cached.
// A read takes no lock: the chunk it is reading may be dropped meanwhile. It still returns
// the chunk's own bytes (its space is not reused before the drop is flushed), but it must not
// put the dropped chunk back into the read cache, or a later get() of an id nobody holds would
// be served from there. finish_reads() looks the pieces up again whenever a drop happened.
TEST(LocalChunkStore, AReadRacingADropDoesNotCacheTheDroppedChunk) {
  SimStore s(128, 4u << 20, 256 * 1024, /*cache_bytes=*/4096);  // the cache holds one chunk
  s.data().set_yield(true);  // the read suspends in its disk read; the drop runs then
  ASSERT_TRUE(s.open());
  Bytes a = test::pattern(4096, 81), c = test::pattern(4096, 82);
  auto ids = s.put({a});
  ASSERT_TRUE(ids);
  const ChunkId id = (*ids)[0];
  ASSERT_TRUE(s.put({c}));  // evicts a from the one-chunk cache: the next get reads the disk
  ASSERT_TRUE(s.flush());

  Bytes out(a.size());
  std::optional<Result<void>> read;
  bool dropped = false;
  asio::co_spawn(
      s.ctx(), [&]() -> Task<void> { read = co_await s.store().get(id, out); }, asio::detached);
  asio::co_spawn(
      s.ctx(),
      [&]() -> Task<void> {
        const ChunkId one[1] = {id};
        auto r = co_await s.store().unref(one);
        dropped = r.has_value();
      },
      asio::detached);
  s.ctx().restart();
  s.ctx().run();
  ASSERT_TRUE(dropped);
  ASSERT_TRUE(read.has_value());
  ASSERT_TRUE(*read) << "the read was planned before the drop: it finds the chunk";
  EXPECT_EQ(out, a);
  EXPECT_EQ(s.refs(id), 0u);
  EXPECT_EQ(s.get(id, a.size()).error(), errc::not_found);  // not from the cache
}

// A run whose outs lie back to back in an aligned buffer (a volume's chunk-aligned read) is
// read straight into them: one disk read, every chunk still verified on its own, and the
// chunk that fails its checksum holds the bytes read (not copied from a staging buffer, its
// out was overwritten) and reports the mismatch. (Outs that do not lie so, as the std::vector
// outs of the test below, are staged and copied.)
TEST(LocalChunkStore, GetManyReadsARunStraightIntoOutsThatLieAsItsChunksDo) {
  SimStore s;
  ASSERT_TRUE(s.open());
  std::vector<Bytes> chunks = patterns(8, 40);
  auto ids = put_and_reopen(s, chunks);
  ASSERT_TRUE(ids);
  s.data().corrupt_sector(*s.offset_of((*ids)[4]) + 1024);
  AlignedBuffer buffer(chunks.size() * 4096);
  std::memset(buffer.data(), 0xEE, buffer.size());
  std::vector<std::span<std::byte>> outs;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    outs.push_back(buffer.span().subspan(i * 4096, 4096));
  }
  const uint64_t reads = s.data().reads();
  EXPECT_EQ(test::run(s.ctx(), s.store().get_many(*ids, outs)).error(), errc::checksum_mismatch);
  EXPECT_EQ(s.data().reads() - reads, 1u);
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    Bytes got(outs[i].begin(), outs[i].end());
    if (i != 4) {
      EXPECT_EQ(got, chunks[i]) << i;
    } else {
      EXPECT_NE(got, chunks[i]);
      EXPECT_NE(got, Bytes(4096, std::byte{0xEE}));  // read into, then found bad
    }
  }
  EXPECT_EQ(s.store().stats().checksum_failures, 1u);
}

TEST(LocalChunkStore, GetManyReportsAChecksumFailureInsideARun) {
  SimStore s;
  ASSERT_TRUE(s.open());
  std::vector<Bytes> chunks = patterns(8, 0);
  auto ids = put_and_reopen(s, chunks);
  ASSERT_TRUE(ids);
  uint64_t bad = *s.offset_of((*ids)[4]);
  s.data().corrupt_sector(bad + 1024);
  std::vector<std::size_t> all = {0, 1, 2, 3, 4, 5, 6, 7};
  auto outs = outs_for(chunks, all);
  uint64_t reads = s.data().reads();
  EXPECT_EQ(s.get_many(*ids, outs).error(), errc::checksum_mismatch);
  EXPECT_EQ(s.data().reads() - reads, 1u);
  EXPECT_EQ(s.store().stats().checksum_failures, 1u);
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    if (i != 4) {
      EXPECT_EQ(outs[i], chunks[i]) << i;
    }
  }
  EXPECT_EQ(s.get((*ids)[4], 4096).error(), errc::checksum_mismatch);
  EXPECT_EQ(s.store().stats().checksum_failures, 2u);
  // The single get agrees, and the good chunks come from the cache now.
  std::vector<std::size_t> good = {0, 1, 2, 3, 5, 6, 7};
  outs = outs_for(chunks, good);
  reads = s.data().reads();
  ASSERT_TRUE(s.get_many(ids_for(*ids, good), outs));
  EXPECT_EQ(s.data().reads(), reads);
  expect_picked(outs, chunks, good);
}

// An id the store does not hold is not_found, a wrong size invalid_argument, the first failure
// in id order is the result, and the other chunks are read all the same.
TEST(LocalChunkStore, GetManyReportsMissingIdsAndBadSizes) {
  SimStore s;
  ASSERT_TRUE(s.open());
  std::vector<Bytes> chunks = {test::pattern(4096, 1), test::pattern(4096, 2),
                               test::pattern(4096, 3)};
  auto ids = put_and_reopen(s, chunks);
  ASSERT_TRUE(ids);
  ChunkId missing{0x1234, 0x5678};
  std::vector<ChunkId> asked = {(*ids)[0], missing, (*ids)[1], (*ids)[2]};
  std::vector<Bytes> outs = {Bytes(4096), Bytes(4096), Bytes(4096), Bytes(100)};
  EXPECT_EQ(s.get_many(asked, outs).error(), errc::not_found);
  EXPECT_EQ(outs[0], chunks[0]);
  EXPECT_EQ(outs[2], chunks[1]);
  asked = {(*ids)[2], (*ids)[0], missing};
  outs = {Bytes(100), Bytes(4096), Bytes(4096)};
  EXPECT_EQ(s.get_many(asked, outs).error(), errc::invalid_argument);
  EXPECT_EQ(outs[1], chunks[0]);
  // Mismatched spans, and an empty call.
  std::vector<std::span<std::byte>> one(1);
  EXPECT_EQ(test::run(s.ctx(), s.store().get_many(*ids, one)).error(), errc::invalid_argument);
  EXPECT_TRUE(test::run(s.ctx(), s.store().get_many({}, {})));
}

// Whatever the layout (several puts, freed space reused, dedup, sizes that are not whole
// blocks), get_many() returns exactly what single gets return, cold and warm.
TEST(LocalChunkStore, GetManyMatchesSingleGetsAfterReopen) {
  SimStore s(128, 8u << 20, 256 * 1024, 256 * 1024);
  ASSERT_TRUE(s.open());
  std::mt19937_64 rng(7);
  std::vector<Bytes> chunks;
  std::vector<ChunkId> ids;
  for (int round = 0; round < 6; ++round) {
    std::vector<Bytes> batch;
    for (int k = 0; k < 20; ++k) {
      std::size_t size = 1 + rng() % (16 * 1024);
      batch.push_back(rng() % 5 == 0 && !chunks.empty() ? chunks[rng() % chunks.size()]
                                                        : test::pattern(size, rng()));
    }
    auto got = s.put(batch);
    ASSERT_TRUE(got);
    chunks.insert(chunks.end(), batch.begin(), batch.end());
    ids.insert(ids.end(), got->begin(), got->end());
    // Drop every third chunk of the round: later puts reuse the space.
    std::vector<ChunkId> drop;
    for (std::size_t k = chunks.size() - batch.size(); k < chunks.size(); k += 3) {
      drop.push_back(ids[k]);
    }
    ASSERT_TRUE(s.unref(drop));
    for (std::size_t k = chunks.size() - batch.size(); k < chunks.size(); k += 3) {
      ids[k] = ChunkId{};
    }
    ASSERT_TRUE(s.flush());
  }
  std::vector<std::size_t> live;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    // A dropped chunk whose bytes another put also holds is still stored under that id.
    if (!ids[i].is_null()) {
      live.push_back(i);
    }
  }
  ASSERT_TRUE(s.open());
  std::vector<Bytes> single;
  for (std::size_t i : live) {
    auto got = s.get(ids[i], chunks[i].size());
    ASSERT_TRUE(got) << got.error().message();
    single.push_back(*got);
    EXPECT_EQ(single.back(), chunks[i]);
  }
  for (int pass = 0; pass < 2; ++pass) {  // cold, then with what the cache kept of pass 0
    if (pass == 0) {
      ASSERT_TRUE(s.open());
    }
    std::vector<std::size_t> order = live;
    std::shuffle(order.begin(), order.end(), rng);
    order.insert(order.end(), live.begin(), live.begin() + 10);  // repeats
    auto outs = outs_for(chunks, order);
    uint64_t reads = s.data().reads();
    ASSERT_TRUE(s.get_many(ids_for(ids, order), outs));
    expect_picked(outs, chunks, order);
    EXPECT_LT(s.data().reads() - reads, live.size() / 2);  // runs, not chunks
  }
}

TEST(LocalChunkStore, FlushedChunksSurviveAndUnflushedOnesVanish) {
  SimStore s;
  ASSERT_TRUE(s.open());
  auto kept = s.put({test::pattern(4096, 1), test::pattern(5000, 2)});
  ASSERT_TRUE(kept);
  ASSERT_TRUE(s.ref({(*kept)[0]}));
  ASSERT_TRUE(s.flush());
  auto lost = s.put({test::pattern(4096, 3)});
  ASSERT_TRUE(lost);
  ASSERT_TRUE(s.unref({(*kept)[0]}));
  s.power_cut(1);
  ASSERT_TRUE(s.open());
  EXPECT_EQ(s.refs((*kept)[0]), 2u);
  EXPECT_EQ(s.get((*kept)[1], 5000).value(), test::pattern(5000, 2));
  EXPECT_EQ(s.get((*lost)[0], 4096).error(), errc::not_found);
  EXPECT_EQ(s.store().stats().chunks, 2u);
}

TEST(LocalChunkStore, MalformedJournalRecordIsCorrupt) {
  SimStore s;
  {
    auto log = test::run(s.ctx(), s.logs().open("index"));
    ASSERT_TRUE(log);
    Bytes truncated_add{std::byte{1}, std::byte{2}, std::byte{3}};
    ASSERT_TRUE((*log)->append(truncated_add));
    ASSERT_TRUE(test::run(s.ctx(), (*log)->sync()));
  }
  EXPECT_EQ(s.open().error(), errc::corrupt);
}

// A data directory of the old format (index in RAM, whole-index checkpoints in the journal,
// no table) is converted at its first open: the journal is replayed into a new table.
TEST(LocalChunkStore, ConvertsAnOldFormatJournalAtFirstOpen) {
  SimStore s;
  s.index_cache_bytes = 2 * PagedIndex::kPageCostBytes;
  std::vector<Bytes> chunks;
  std::vector<ChunkId> ids;
  {
    auto log = test::run(s.ctx(), s.logs().open("index"));
    ASSERT_TRUE(log);
    ByteWriter w;
    w.put(uint8_t{3});  // an old in-journal checkpoint marker
    for (uint64_t i = 0; i < 300; ++i) {
      chunks.push_back(test::pattern(4096, 500 + i));
      ids.push_back(ChunkId{i + 1, 77});
      uint64_t offset = 4096 * (i + 1);
      AlignedBuffer block(4096);
      std::memcpy(block.data(), chunks.back().data(), 4096);
      ASSERT_TRUE(test::run(s.ctx(), s.data().write(offset, block.span())));
      w.put(uint8_t{1});
      w.put(ids.back().lo);
      w.put(ids.back().hi);
      w.put(offset);
      w.put(uint32_t{4096});
      w.put(ChunkHasher::checksum(chunks.back()));
      w.put(uint32_t{2});
    }
    w.put(uint8_t{2});  // ref -1 on the first chunk
    w.put(ids[0].lo);
    w.put(ids[0].hi);
    w.put(int32_t{-1});
    ASSERT_TRUE((*log)->append(w.bytes()));
    ASSERT_TRUE(test::run(s.ctx(), (*log)->sync()));
    ASSERT_TRUE(test::run(s.ctx(), s.data().sync()));
  }
  for (int life = 0; life < 2; ++life) {  // converted, then reopened from the table
    ASSERT_TRUE(s.open());
    EXPECT_EQ(s.store().stats().chunks, 300u);
    EXPECT_EQ(s.refs(ids[0]), 1u);
    EXPECT_EQ(s.refs(ids[299]), 2u);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      ASSERT_EQ(s.get(ids[i], 4096).value(), chunks[i]) << i;
    }
    EXPECT_GT(s.table().size_bytes(), PagedIndex::kTableStartBytes);  // checkpointed at open
    s.power_cut(life);
  }
}

// ---- the crash harness ----

// The model: every chunk's count and bytes as of the last completed flush (`durable`) and
// now (`live`). With truncated addresses an id freed and reused may name other bytes later,
// so each view keeps its own bytes.
struct Model {
  using View = std::map<ChunkId, std::pair<uint64_t, Bytes>>;
  View live;
  View durable;
};

void check_recovered(SimStore& s, const Model& m, bool flush_failed) {
  std::set<ChunkId> all;
  for (const auto& v : {m.durable, m.live}) {
    for (const auto& kv : v) {
      all.insert(kv.first);
    }
  }
  uint64_t chunks = 0;
  for (const ChunkId& id : all) {
    auto d = m.durable.find(id);
    auto l = m.live.find(id);
    uint64_t dn = d == m.durable.end() ? 0 : d->second.first;
    uint64_t ln = l == m.live.end() ? 0 : l->second.first;
    uint64_t got = s.refs(id);
    if (flush_failed) {  // the failed flush may or may not have reached the journal
      ASSERT_GE(got, std::min(dn, ln)) << id.to_hex();
      ASSERT_LE(got, std::max(dn, ln)) << id.to_hex();
    } else {
      ASSERT_EQ(got, dn) << "chunk " << id.to_hex();
    }
    if (got == 0) {
      continue;
    }
    ++chunks;
    const Bytes& want =
        (!flush_failed || d != m.durable.end()) && dn > 0 ? d->second.second : l->second.second;
    auto r = s.get(id, want.size());
    bool alt = flush_failed && d != m.durable.end() && l != m.live.end() && (!r || *r != want);
    if (alt) {  // recovered from the failed flush: the live bytes
      r = s.get(id, l->second.second.size());
      ASSERT_TRUE(r) << "chunk " << id.to_hex() << ": " << r.error().message();
      ASSERT_EQ(*r, l->second.second) << "wrong bytes for chunk " << id.to_hex();
      continue;
    }
    ASSERT_TRUE(r) << "chunk " << id.to_hex() << ": " << r.error().message();
    ASSERT_EQ(*r, want) << "wrong bytes for chunk " << id.to_hex();
  }
  ASSERT_EQ(s.store().stats().chunks, chunks) << "the store holds chunks nobody put";
}

// One step of the workload: a put of 1-6 chunks drawn from a small pool of contents (so
// puts deduplicate), a ref, an unref, or a flush. Returns false if the flush failed.
bool step(SimStore& s, Model& m, std::mt19937_64& rng, const std::vector<Bytes>& pool) {
  uint64_t op = rng() % 10;
  if (op < 5) {
    std::vector<Bytes> chunks(1 + rng() % 6);
    for (Bytes& c : chunks) {
      c = pool[rng() % pool.size()];
    }
    auto ids = s.put(chunks);
    if (!ids && ids.error() == errc::io_error) {
      return false;  // an index page write-back failed: the store failed, as a flush would
    }
    if (!ids) {
      EXPECT_EQ(ids.error(), errc::no_space);
      return true;
    }
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      auto& [n, bytes] = m.live[(*ids)[i]];
      EXPECT_TRUE(n == 0 || bytes == chunks[i]) << "one id, two contents";
      bytes = chunks[i];
      ++n;
    }
  } else if (op < 8 && !m.live.empty()) {
    auto it = m.live.begin();
    std::advance(it, static_cast<long>(rng() % m.live.size()));
    ChunkId id = it->first;
    auto r = op < 6 ? s.ref({id}) : s.unref({id});
    if (!r) {
      EXPECT_EQ(r.error(), errc::io_error);  // an index page write-back failed
      return false;
    }
    if (op < 6) {
      ++it->second.first;
    } else {
      if (--it->second.first == 0) {
        m.live.erase(it);
      }
    }
  } else if (op >= 8) {
    if (!s.flush()) {
      return false;
    }
    m.durable = m.live;
  }
  return true;
}

void chunk_crash_workload(uint64_t seed, unsigned address_bits, std::size_t write_behind = 0) {
  SCOPED_TRACE("replay with CAIRN_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  SimStore s(address_bits, 512 * 1024, 48 * 1024, 16 * 1024);
  s.write_behind_puts = write_behind;
  s.data().set_yield(write_behind > 0);  // answered puts' writes are still in flight
  // Three cached index pages, so pages are evicted and read back all the time; with 8-bit
  // addresses, one bucket, so every chunk shares one chain of pages.
  s.index_cache_bytes = 3 * PagedIndex::kPageCostBytes;
  s.index_buckets = address_bits == 8 ? 1 : 0;
  std::vector<Bytes> pool;
  for (int i = 0; i < 40; ++i) {
    pool.push_back(test::pattern(i % 3 == 0 ? 1 + rng() % 12000 : 4096, rng()));
  }
  Model m;
  ASSERT_TRUE(s.open());
  for (int round = 0; round < 8; ++round) {
    bool flush_failed = false;
    if (rng() % 3 == 0) {  // this round's power cut comes in the middle of a flush
      (rng() % 2 == 0 ? s.journal_disk() : s.table()).fail_writes_after(rng() % 3);
    }
    int steps = 5 + static_cast<int>(rng() % 40);
    for (int i = 0; i < steps && !flush_failed; ++i) {
      flush_failed = !step(s, m, rng, pool);
      if (::testing::Test::HasFailure()) {
        return;
      }
    }
    s.power_cut(rng());
    s.journal_disk().fail_writes_after(std::nullopt);
    s.table().fail_writes_after(std::nullopt);
    ASSERT_TRUE(s.open());
    check_recovered(s, m, flush_failed);
    if (::testing::Test::HasFatalFailure()) {
      return;
    }
    // Continue from what the store recovered.
    Model::View recovered;
    for (const auto* v : {&m.durable, &m.live}) {
      for (const auto& [id, entry] : *v) {
        uint64_t n = s.refs(id);
        if (n > 0 && !recovered.count(id)) {
          auto bytes = s.get(id, entry.second.size());
          if (bytes && *bytes == entry.second) {
            recovered[id] = {n, entry.second};
          }
        }
      }
    }
    m.live = m.durable = recovered;
  }
}

uint64_t seeds_from_env(uint64_t& only) {
  const char* env = std::getenv("CAIRN_SEED");
  only = env != nullptr ? std::strtoull(env, nullptr, 10) : 0;
  return env != nullptr;
}

TEST(LocalChunkStoreCrash, EveryFlushedChunkSurvivesPowerCuts) {
  uint64_t only = 0;
  if (seeds_from_env(only)) {
    chunk_crash_workload(only, 128);
    return;
  }
  for (uint64_t seed = 1; seed <= 200 && !HasFailure(); ++seed) {
    chunk_crash_workload(seed, 128);
  }
}

// The same workload with puts answered before their data write completes: a flush still
// makes every put answered before it durable.
TEST(LocalChunkStoreCrash, WriteBehindPutsSurvivePowerCutsOnceFlushed) {
  uint64_t only = 0;
  if (seeds_from_env(only)) {
    chunk_crash_workload(only, 128, 4);
    return;
  }
  for (uint64_t seed = 1; seed <= 120 && !HasFailure(); ++seed) {
    chunk_crash_workload(seed, seed % 2 == 0 ? 128 : 8, 4);
  }
}

// A put answered before its data write: its chunks read back at once (the read waits for the
// write), references taken and dropped on them count, and a flush makes them durable.
TEST(LocalChunkStore, WriteBehindPutsAreReadableCountedAndFlushed) {
  SimStore s;
  s.write_behind_puts = 2;
  s.data().set_yield(true);  // every data write suspends: the put is answered before it ends
  ASSERT_TRUE(s.open());
  Bytes a = test::pattern(4096, 71), b = test::pattern(8192, 72), c = test::pattern(4096, 73);
  auto ids = s.put({a, b});
  ASSERT_TRUE(ids);
  auto more = s.put({c, a});  // a: a chunk of the put in flight
  ASSERT_TRUE(more);
  EXPECT_EQ((*more)[1], (*ids)[0]);
  auto third = s.put({c});  // over the limit of 2: answered once written
  ASSERT_TRUE(third);
  EXPECT_EQ(s.get((*ids)[0], a.size()).value(), a);
  EXPECT_EQ(s.get((*ids)[1], b.size()).value(), b);
  ASSERT_TRUE(s.ref({(*more)[0]}));
  ASSERT_TRUE(s.unref({(*ids)[1]}));
  EXPECT_EQ(s.refs((*ids)[0]), 2u);
  EXPECT_EQ(s.refs((*more)[0]), 3u);
  EXPECT_EQ(s.refs((*ids)[1]), 0u);
  ASSERT_TRUE(s.flush());
  EXPECT_EQ(s.store().stats().chunks, 2u);
  s.power_cut(7);
  ASSERT_TRUE(s.open());
  EXPECT_EQ(s.refs((*ids)[0]), 2u);
  EXPECT_EQ(s.refs((*more)[0]), 3u);
  EXPECT_EQ(s.get((*more)[0], c.size()).value(), c);
  EXPECT_EQ(s.get((*ids)[1], b.size()).error(), errc::not_found);
}

// A data write that fails after its put was answered: the store fails, the next flush says
// so, and the chunk is never read back as other bytes.
TEST(LocalChunkStore, WriteBehindFailureFailsTheNextFlush) {
  SimStore s;
  s.write_behind_puts = 4;
  s.data().set_yield(true);
  ASSERT_TRUE(s.open());
  Bytes a = test::pattern(4096, 81);
  s.data().fail_writes_after(0);
  auto ids = s.put({a});
  ASSERT_TRUE(ids);  // answered before the write
  EXPECT_EQ(s.flush().error(), errc::io_error);
  EXPECT_FALSE(s.get((*ids)[0], a.size()));
  EXPECT_FALSE(s.put({test::pattern(4096, 82)}));
  s.data().fail_writes_after(std::nullopt);
  s.power_cut(9);
  ASSERT_TRUE(s.open());  // nothing was flushed: the store comes back empty and works
  EXPECT_EQ(s.store().stats().chunks, 0u);
  auto again = s.put({a});
  ASSERT_TRUE(again);
  ASSERT_TRUE(s.flush());
  EXPECT_EQ(s.get((*again)[0], a.size()).value(), a);
}

// put_from() of a large aligned put keeps the caller's buffer as its staging buffer (no copy)
// and hands back another: scribbling over the returned buffer while the answered put's write
// is still in flight changes nothing stored. The next such put gets the first one's buffer
// back once it was written (no allocation per put). Small or misaligned puts are copied.
TEST(LocalChunkStore, PutFromAdoptsALargeAlignedBufferAndHandsBackAnother) {
  SimStore s;
  s.write_behind_puts = 2;
  s.data().set_yield(true);  // the put is answered while its data write is in flight
  ASSERT_TRUE(s.open());
  constexpr std::size_t kChunks = 32;  // 128 KiB: over the 64 KiB threshold
  auto fill = [](AlignedBuffer& buffer, std::size_t offset, std::size_t count, uint64_t seed) {
    std::vector<Bytes> expected;
    std::vector<std::span<const std::byte>> spans;
    for (std::size_t i = 0; i < count; ++i) {
      expected.push_back(test::pattern(4096, seed + i));
      std::byte* at = buffer.data() + offset + i * 4096;
      std::memcpy(at, expected.back().data(), 4096);
      spans.emplace_back(at, 4096);
    }
    return std::pair(expected, spans);
  };
  auto put_from = [&](AlignedBuffer& buffer, const std::vector<std::span<const std::byte>>& spans) {
    std::vector<ChunkId> ids(spans.size());
    auto r = test::run(s.ctx(), s.store().put_from(buffer, spans, ids));
    EXPECT_TRUE(r);
    return ids;
  };
  auto check = [&](const std::vector<ChunkId>& ids, const std::vector<Bytes>& expected) {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      auto got = s.get(ids[i], 4096);
      ASSERT_TRUE(got) << i;
      EXPECT_EQ(*got, expected[i]) << i;
    }
  };

  AlignedBuffer buffer(kChunks * 4096);
  const std::byte* first = buffer.data();
  auto [expected, spans] = fill(buffer, 0, kChunks, 100);
  const uint64_t writes = s.data().writes();
  auto ids = put_from(buffer, spans);
  EXPECT_NE(buffer.data(), first);  // adopted
  EXPECT_GE(buffer.size(), kChunks * 4096);
  std::memset(buffer.data(), 0xAA, buffer.size());
  ASSERT_TRUE(s.flush());
  EXPECT_EQ(s.data().writes() - writes, 1u);  // one run, written from the adopted buffer
  check(ids, expected);

  auto [expected2, spans2] = fill(buffer, 0, kChunks, 200);
  auto ids2 = put_from(buffer, spans2);
  EXPECT_EQ(buffer.data(), first);  // the first put's buffer, written and spare again
  std::memset(buffer.data(), 0xBB, buffer.size());
  ASSERT_TRUE(s.flush());
  check(ids2, expected2);

  // Too small, or not 4 KiB aligned in the buffer: copied, the caller keeps its buffer.
  AlignedBuffer small(4 * 4096);
  const std::byte* small_at = small.data();
  auto [expected3, spans3] = fill(small, 0, 4, 300);
  auto ids3 = put_from(small, spans3);
  EXPECT_EQ(small.data(), small_at);
  std::memset(small.data(), 0xCC, small.size());
  AlignedBuffer odd((kChunks + 1) * 4096);
  const std::byte* odd_at = odd.data();
  auto [expected4, spans4] = fill(odd, 512, kChunks, 400);
  auto ids4 = put_from(odd, spans4);
  EXPECT_EQ(odd.data(), odd_at);
  std::memset(odd.data(), 0xDD, odd.size());
  ASSERT_TRUE(s.flush());
  check(ids3, expected3);
  check(ids4, expected4);

  s.power_cut(11);
  ASSERT_TRUE(s.open());
  check(ids, expected);
  check(ids2, expected2);
  check(ids4, expected4);
}

TEST(LocalChunkStoreCrash, EightBitAddressesCollideAndStayCorrect) {
  uint64_t only = 0;
  if (seeds_from_env(only)) {
    chunk_crash_workload(only, 8);
    return;
  }
  for (uint64_t seed = 1; seed <= 60 && !HasFailure(); ++seed) {
    chunk_crash_workload(seed, 8);
  }
}

TEST(LocalChunkStore, CollisionsGetDistinctIdsAndReclaimSpace) {
  SimStore s(8, 8u << 20, 1u << 20, 32 * 1024);
  s.index_cache_bytes = 4 * PagedIndex::kPageCostBytes;
  s.index_buckets = 2;  // 300 chunks a bucket: chains of overflow pages
  ASSERT_TRUE(s.open());
  std::vector<Bytes> chunks;
  for (uint64_t i = 0; i < 600; ++i) {
    chunks.push_back(test::pattern(4096, i));
  }
  std::vector<ChunkId> ids;
  for (std::size_t i = 0; i < chunks.size(); i += 50) {
    auto r = s.put(std::vector<Bytes>(chunks.begin() + static_cast<long>(i),
                                      chunks.begin() + static_cast<long>(i + 50)));
    ASSERT_TRUE(r);
    ids.insert(ids.end(), r->begin(), r->end());
  }
  ChunkStoreStats st = s.store().stats();
  EXPECT_EQ(st.chunks, 600u);  // 600 contents, only 256 primary addresses
  EXPECT_GT(st.hash_collisions, 300u);
  EXPECT_EQ(st.dedup_hits, 0u);
  EXPECT_EQ(std::set<ChunkId>(ids.begin(), ids.end()).size(), 600u);
  auto again = s.put({chunks[599], chunks[0]});  // true duplicates still deduplicate
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)[0], ids[599]);
  EXPECT_EQ((*again)[1], ids[0]);
  ASSERT_TRUE(s.flush());
  s.power_cut(9);
  ASSERT_TRUE(s.open());
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    ASSERT_EQ(s.get(ids[i], 4096).value(), chunks[i]) << i;
  }
  EXPECT_EQ(s.refs(ids[0]), 2u);
  ASSERT_TRUE(s.unref(ids));
  ASSERT_TRUE(s.unref({ids[0], ids[599]}));
  EXPECT_EQ(s.store().stats().chunks, 0u);
  EXPECT_EQ(s.store().stats().physical_bytes, 0u);
  ASSERT_TRUE(s.flush());
  s.power_cut(10);
  ASSERT_TRUE(s.open());
  EXPECT_EQ(s.store().stats().chunks, 0u);
  EXPECT_EQ(s.get(ids[5], 4096).error(), errc::not_found);
}

// Many puts in flight at once, on a disk that yields at every I/O, share chunks that are
// still being written by another put; some writes fail. Every completed put's references
// must be counted exactly once, before and after a crash.
void overlapping_puts(unsigned address_bits, uint64_t seed) {
  SCOPED_TRACE("replay with CAIRN_SEED=" + std::to_string(seed));
  SimStore s(address_bits, 8u << 20, 1u << 20, 16 * 1024);
  ASSERT_TRUE(s.open());
  s.data().set_yield(true);
  std::mt19937_64 rng(seed);
  std::vector<Bytes> pool;
  for (int i = 0; i < 12; ++i) {
    pool.push_back(test::pattern(4096 * (1 + i % 2), 1000 * seed + i));
  }
  if (seed % 2 == 0) {
    s.data().fail_writes_after(rng() % 4);  // some puts fail with io_error
  } else {
    s.journal_disk().set_yield(true);
  }
  std::map<std::size_t, uint64_t> expected;  // pool index -> references
  std::map<std::size_t, ChunkId> id_of;
  int done = 0;
  int failed = 0;
  constexpr int kPuts = 48;
  for (int p = 0; p < kPuts; ++p) {
    std::vector<std::size_t> picks(1 + rng() % 4);
    for (auto& k : picks) {
      k = rng() % pool.size();
    }
    asio::co_spawn(
        s.ctx(),
        [&, picks]() -> Task<void> {
          std::vector<std::span<const std::byte>> spans;
          for (auto k : picks) {
            spans.emplace_back(pool[k]);
          }
          std::vector<ChunkId> ids(picks.size());
          auto r = co_await s.store().put(spans, ids);
          if (!r) {
            EXPECT_EQ(r.error(), errc::io_error);
            ++failed;
            ++done;
            co_return;
          }
          for (std::size_t i = 0; i < picks.size(); ++i) {
            ++expected[picks[i]];
            auto [it, fresh] = id_of.emplace(picks[i], ids[i]);
            EXPECT_TRUE(fresh || it->second == ids[i]) << "one content, two ids";
          }
          if (seed % 2 == 1 && picks.size() % 2 == 0) {  // flushes overlap other puts
            EXPECT_TRUE(co_await s.store().flush());
          }
          ++done;
        },
        asio::detached);
  }
  s.ctx().restart();
  while (done < kPuts && s.ctx().run_one() > 0) {
  }
  ASSERT_EQ(done, kPuts);
  if (seed % 2 == 0) {
    EXPECT_GT(failed, 0);
  }
  s.data().fail_writes_after(std::nullopt);
  auto check = [&] {
    uint64_t referenced = 0;
    for (const auto& [k, n] : expected) {
      ASSERT_EQ(s.refs(id_of[k]), n) << "pool chunk " << k;
      ASSERT_EQ(s.get(id_of[k], pool[k].size()).value(), pool[k]);
      referenced += n * pool[k].size();
    }
    EXPECT_EQ(s.store().stats().chunks, expected.size());
    EXPECT_EQ(s.store().stats().referenced_bytes, referenced);
  };
  check();
  ASSERT_TRUE(s.flush());
  s.power_cut(seed);
  ASSERT_TRUE(s.open());
  check();
}

TEST(LocalChunkStore, OverlappingPutsShareChunksInFlight) {
  for (uint64_t seed = 1; seed <= 20 && !HasFailure(); ++seed) {
    overlapping_puts(128, seed);
    overlapping_puts(8, seed);
  }
}

TEST(LocalChunkStore, CallableFromAnotherThread) {
  SimStore s;
  ASSERT_TRUE(s.open());
  auto work = asio::make_work_guard(s.ctx());
  s.ctx().restart();
  std::thread owner([&] { s.ctx().run(); });
  asio::io_context caller;
  Bytes a = test::pattern(4096, 1);
  auto task = [&]() -> Task<bool> {
    auto thread = std::this_thread::get_id();
    std::vector<std::span<const std::byte>> chunks{a};
    std::vector<ChunkId> ids(1);
    auto put = co_await s.store().put(chunks, ids);
    bool same_thread = std::this_thread::get_id() == thread;
    Bytes out(4096);
    auto got = co_await s.store().get(ids[0], out);
    auto flushed = co_await s.store().flush();
    co_return put&& got&& flushed&& out == a&& same_thread;
  };
  EXPECT_TRUE(test::run(caller, task()));
  work.reset();
  owner.join();
}

// A store's files in a fresh temporary directory: O_DIRECT files through a DiskRing on `ctx`,
// a 1 MiB journal. Tests end with remove(), naming the files they expect, so that a file left
// behind fails the rmdir.
struct RealDir {
  explicit RealDir(uint64_t data_capacity_bytes) {
    char tmpl[] = "/tmp/cairn-store-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    options.owner = ctx.get_executor();
    dir_options.data_capacity_bytes = data_capacity_bytes;
    dir_options.journal_capacity_bytes = 1u << 20;
    dir_options.ring = &ring;
  }

  Result<std::unique_ptr<LocalChunkStore>> open() {
    return test::run(ctx, LocalChunkStore::open_dir(dir, hasher, options, dir_options));
  }

  // Opens the store, puts `chunks` in one call, flushes and closes it; the chunks' ids.
  Result<std::vector<ChunkId>> store_all(const std::vector<Bytes>& chunks) {
    auto store = open();
    if (!store) {
      return store.error();
    }
    std::vector<std::span<const std::byte>> spans(chunks.begin(), chunks.end());
    std::vector<ChunkId> ids(chunks.size());
    if (auto r = test::run(ctx, (*store)->put(spans, ids)); !r) {
      return r.error();
    }
    if (auto r = test::run(ctx, (*store)->flush()); !r) {
      return r.error();
    }
    return ids;
  }

  // Every chunk reads back from `store` under its id.
  void expect_stored(LocalChunkStore& store, const std::vector<Bytes>& chunks,
                     const std::vector<ChunkId>& ids) {
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      Bytes out(chunks[i].size());
      ASSERT_TRUE(test::run(ctx, store.get(ids[i], out))) << i;
      EXPECT_EQ(out, chunks[i]) << i;
    }
  }

  // Deletes the named files of the directory, then the directory, which must be empty by then.
  void remove(std::initializer_list<const char*> names) {
    for (const char* name : names) {
      ::unlink((dir + "/" + name).c_str());
    }
    EXPECT_EQ(::rmdir(dir.c_str()), 0);
  }

  asio::io_context ctx;
  DiskRing ring{ctx, 16};
  ChunkHasher hasher{ChunkHasher::Kind::xxh3, kKey};
  LocalChunkStore::Options options;
  LocalChunkStore::DirOptions dir_options;
  std::string dir;
};

TEST(LocalChunkStore, RunsOnARealDirectIoFile) {
  RealDir d(8u << 20);
  std::vector<Bytes> chunks;
  for (uint64_t i = 0; i < 64; ++i) {
    chunks.push_back(test::pattern(4096 * (1 + i % 4), i));
  }
  auto ids = d.store_all(chunks);
  ASSERT_TRUE(ids) << ids.error().message();
  auto store = d.open();
  ASSERT_TRUE(store);
  ASSERT_NO_FATAL_FAILURE(d.expect_stored(**store, chunks, *ids));
  EXPECT_EQ((*store)->stats().cache_misses, chunks.size());
  store->reset();
  d.remove({"chunks.data", "chunks-index.log", "chunks-index.tbl"});
}

// get_many() on an O_DIRECT file through the reactor's DiskRing: a 1 MiB batch reads into a
// pooled, registered staging buffer (READ_FIXED), in several runs when chunks are missing.
TEST(LocalChunkStore, GetManyOnARealDirectIoFile) {
  RealDir d(8u << 20);
  std::vector<Bytes> chunks = patterns(256, 0);
  auto ids = d.store_all(chunks);
  ASSERT_TRUE(ids) << ids.error().message();
  for (int pass = 0; pass < 2; ++pass) {
    auto store = d.open();
    ASSERT_TRUE(store);
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      if (pass == 0 || i % 5 != 0) {
        order.push_back(chunks.size() - 1 - i);
      }
    }
    auto outs = outs_for(chunks, order);
    std::vector<std::span<std::byte>> spans(outs.begin(), outs.end());
    auto asked = ids_for(*ids, order);
    ASSERT_TRUE(test::run(d.ctx, (*store)->get_many(asked, spans)));
    expect_picked(outs, chunks, order);
    EXPECT_EQ((*store)->stats().cache_misses, order.size());
  }
  d.remove({"chunks.data", "chunks-index.log", "chunks-index.tbl"});
}

// A data file grown past its initial size in one run is opened whole in the next, so the
// chunks stored past the initial size are found (not "outside the data file").
TEST(LocalChunkStore, ReopensADataFileThatGrewPastItsInitialSize) {
  RealDir d(1u << 20);
  d.options.grow_step_bytes = 1u << 20;
  std::vector<Bytes> chunks = patterns(1024, 0);  // 4 MiB: four times the initial size
  std::vector<ChunkId> ids(chunks.size());
  {
    auto store = d.open();
    ASSERT_TRUE(store) << store.error().message();
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      std::span<const std::byte> one[1] = {chunks[i]};
      ASSERT_TRUE(test::run(d.ctx, (*store)->put(one, std::span(&ids[i], 1))));
    }
    ASSERT_TRUE(test::run(d.ctx, (*store)->flush()));
    EXPECT_GT((*store)->stats().capacity_bytes, 4u << 20);
  }
  auto store = d.open();
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_GT((*store)->stats().capacity_bytes, 4u << 20);
  ASSERT_NO_FATAL_FAILURE(d.expect_stored(**store, chunks, ids));
  store->reset();
  d.remove({"chunks.data", "chunks-index.log", "chunks-index.tbl"});
}

bool file_exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

// Growth on real files: the table moves from chunks-index.tbl to chunks-index.1.tbl, the old
// file goes, and a leftover of an interrupted rebuild (chunks-index.2.tbl) is deleted at open.
TEST(LocalChunkStore, IndexTableGrowsIntoANewFileOfADataDirectory) {
  RealDir d(4u << 20);
  d.options.index_buckets = 2;
  d.options.index_cache_bytes = PagedIndex::kPageCostBytes;  // every flush checkpoints
  std::vector<Bytes> chunks = patterns(600, 0);
  std::vector<ChunkId> ids(chunks.size());
  {
    auto store = d.open();
    ASSERT_TRUE(store) << store.error().message();
    for (std::size_t first = 0; first < chunks.size(); first += 50) {
      std::vector<std::span<const std::byte>> batch(chunks.begin() + first,
                                                    chunks.begin() + first + 50);
      ASSERT_TRUE(test::run(d.ctx, (*store)->put(batch, std::span(ids).subspan(first, 50))));
      ASSERT_TRUE(test::run(d.ctx, (*store)->flush()));
    }
    EXPECT_EQ((*store)->index_generation(), 1u);
    EXPECT_EQ((*store)->index_buckets(), 8u);
  }
  EXPECT_FALSE(file_exists(d.dir + "/chunks-index.tbl"));
  EXPECT_TRUE(file_exists(d.dir + "/chunks-index.1.tbl"));
  {
    std::FILE* f = std::fopen((d.dir + "/chunks-index.2.tbl").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("half a table", f);
    std::fclose(f);
  }
  auto store = d.open();
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_FALSE(file_exists(d.dir + "/chunks-index.2.tbl"));
  EXPECT_EQ((*store)->index_buckets(), 8u);
  EXPECT_EQ((*store)->stats().chunks, chunks.size());
  ASSERT_NO_FATAL_FAILURE(d.expect_stored(**store, chunks, ids));
  store->reset();
  d.remove({"chunks.data", "chunks-index.log", "chunks-index.1.tbl"});
}

// Bounded RAM (issue 2, M3): the store holds about 40 times more chunks than its index cache
// has room for. Every byte is read back and every count checked, before and after a power cut
// and reopen, and at the end of every operation the index's RAM is within its budget, however
// rarely the caller flushes.
TEST(LocalChunkStore, IndexFarLargerThanItsCacheKeepsEveryChunk) {
  constexpr uint64_t kChunks = 6000;
  constexpr uint64_t kBatch = 16;
  constexpr uint64_t kBudget = 8 * PagedIndex::kPageCostBytes;
  SimStore s(128, 32u << 20, 1u << 20, 64 * 1024);
  s.index_cache_bytes = kBudget;
  ASSERT_TRUE(s.open());
  std::vector<ChunkId> ids;
  for (uint64_t first = 0; first < kChunks; first += kBatch) {
    std::vector<Bytes> batch;
    for (uint64_t i = first; i < first + kBatch; ++i) {
      batch.push_back(test::pattern(4096, i));
    }
    auto got = s.put(batch);
    ASSERT_TRUE(got);
    ids.insert(ids.end(), got->begin(), got->end());
    // Dirty pages beyond the budget are written back, flush or no flush.
    EXPECT_LE(s.store().stats().index_cache_bytes, kBudget);
    if (first % (64 * kBatch) == 0) {
      ASSERT_TRUE(s.flush());
    }
  }
  ASSERT_TRUE(s.flush());
  ASSERT_TRUE(s.ref({ids[0], ids[kChunks - 1]}));
  ASSERT_TRUE(s.flush());
  auto check = [&] {
    ChunkStoreStats st = s.store().stats();
    EXPECT_EQ(st.chunks, kChunks);
    EXPECT_EQ(st.referenced_bytes, 4096 * (kChunks + 2));
    for (uint64_t i = 0; i < kChunks; ++i) {
      auto bytes = s.get(ids[i], 4096);
      ASSERT_TRUE(bytes) << i;
      ASSERT_EQ(*bytes, test::pattern(4096, i)) << i;
    }
    EXPECT_EQ(s.refs(ids[0]), 2u);
    EXPECT_EQ(s.refs(ids[1]), 1u);
    EXPECT_EQ(s.refs(ids[kChunks - 1]), 2u);
    st = s.store().stats();
    EXPECT_LE(st.index_cache_bytes, kBudget);
    EXPECT_LE(st.index_cache_peak_bytes, kBudget);
    // 6000 entries need at least 60 full pages; the cache holds 8.
    EXPECT_GT(kChunks / IndexPage::kCapacity, 7 * (kBudget / PagedIndex::kPageCostBytes));
  };
  ASSERT_NO_FATAL_FAILURE(check());
  s.power_cut(11);
  ASSERT_TRUE(s.open());
  ASSERT_NO_FATAL_FAILURE(check());
}

// ---- index table growth ----

// Every chunk of `ids` (chunk i holds pattern(4096, i)) is readable with one reference, and
// the store holds nothing else.
void check_numbered(SimStore& s, const std::vector<ChunkId>& ids) {
  EXPECT_EQ(s.store().stats().chunks, ids.size());
  for (uint64_t i = 0; i < ids.size(); ++i) {
    auto bytes = s.get(ids[i], 4096);
    ASSERT_TRUE(bytes) << "chunk " << i << ": " << bytes.error().message();
    ASSERT_EQ(*bytes, test::pattern(4096, i)) << "chunk " << i;
    ASSERT_EQ(s.refs(ids[i]), 1u) << "chunk " << i;
  }
}

// A table created with 2 buckets receives 3000 chunks: each checkpoint past 128 entries per
// bucket grows it (2 -> 8 -> 32 buckets), under a cache budget of one page (so every flush
// checkpoints, and the rebuilds write pages back), and every chunk stays readable with its
// count, before and after a power cut.
TEST(LocalChunkStore, IndexTableGrowsAsChunksArrive) {
  constexpr uint64_t kChunks = 3000;
  constexpr uint64_t kBudget = PagedIndex::kPageCostBytes;
  SimStore s(128, 32u << 20, 1u << 20, 64 * 1024);
  s.growable_index = true;
  s.index_buckets = 2;
  s.index_cache_bytes = kBudget;
  ASSERT_TRUE(s.open());
  auto stored = put_flushing(s, kChunks, 16);
  ASSERT_TRUE(stored);
  const std::vector<ChunkId>& ids = *stored;
  EXPECT_EQ(s.store().index_buckets(), 32u);
  EXPECT_EQ(s.store().index_generation(), 2u);
  EXPECT_EQ(s.tables().generations(), std::set<uint64_t>{2});
  EXPECT_LE(s.store().stats().index_cache_peak_bytes, kBudget);
  ASSERT_TRUE(s.ref({ids[0], ids[kChunks - 1]}));
  ASSERT_TRUE(s.unref({ids[0], ids[kChunks - 1]}));
  ASSERT_TRUE(s.flush());
  ASSERT_NO_FATAL_FAILURE(check_numbered(s, ids));
  s.power_cut(21);
  ASSERT_TRUE(s.open());
  EXPECT_EQ(s.store().index_buckets(), 32u);
  EXPECT_EQ(s.store().index_generation(), 2u);
  ASSERT_NO_FATAL_FAILURE(check_numbered(s, ids));
}

// The table grows at the first flush past 128 entries per bucket even when neither the
// journal (16 MiB, barely used) nor the cache budget (64 pages, 4 used) asks for a
// checkpoint: lookups would otherwise walk ever longer chains until one of them did.
TEST(LocalChunkStore, OverfullTableGrowsAtTheNextFlush) {
  constexpr uint64_t kChunks = 300;  // 150 per bucket: chains of two pages
  SimStore s(128, 8u << 20, 16u << 20, 64 * 1024);
  s.growable_index = true;
  s.index_buckets = 2;
  s.index_cache_bytes = 64 * PagedIndex::kPageCostBytes;
  ASSERT_TRUE(s.open());
  auto stored = put_flushing(s, kChunks / 2, kChunks / 2);  // 75 per bucket: not yet
  ASSERT_TRUE(stored);
  EXPECT_EQ(s.store().index_buckets(), 2u);
  auto more = s.put(patterns(kChunks / 2, kChunks / 2));
  ASSERT_TRUE(more);
  stored->insert(stored->end(), more->begin(), more->end());
  EXPECT_EQ(s.store().index_buckets(), 2u);  // puts alone never rebuild the table
  ASSERT_TRUE(s.flush());
  EXPECT_EQ(s.store().index_buckets(), 8u);
  EXPECT_EQ(s.store().index_generation(), 1u);
  ASSERT_NO_FATAL_FAILURE(check_numbered(s, *stored));
}

// A store opened on one borrowed table file never grows it.
TEST(LocalChunkStore, SingleTableFileNeverGrows) {
  SimStore s(128, 8u << 20, 1u << 20, 64 * 1024);
  s.index_buckets = 1;
  s.index_cache_bytes = 3 * PagedIndex::kPageCostBytes;
  ASSERT_TRUE(s.open());
  auto ids = put_flushing(s, 400, 20);
  ASSERT_TRUE(ids);
  EXPECT_EQ(s.store().index_buckets(), 1u);
  EXPECT_EQ(s.store().index_generation(), 0u);
  ASSERT_NO_FATAL_FAILURE(check_numbered(s, *ids));
}

// Where the crash of TableGrowthSurvivesPowerCuts comes.
enum class GrowthFault {
  new_table_write,  // the n-th write to the new table fails (and it cannot be deleted)
  journal_write,    // the n-th journal write of the growing flush fails
  old_table_kept,   // the switch completes but the old table cannot be deleted
};

// One life: 1 bucket, 128 chunks flushed (no growth yet), then 40 more and a flush whose
// checkpoint grows the table to 4 buckets, with `fault` at write `n`; a power cut; reopen.
// Returns false once `n` is past every write of the growth.
bool growth_crash(GrowthFault fault, uint64_t n, uint64_t seed) {
  SCOPED_TRACE("fault " + std::to_string(static_cast<int>(fault)) + " at write " +
               std::to_string(n) + ", seed " + std::to_string(seed));
  SimStore s(128, 4u << 20, 256 * 1024, 16 * 1024);
  s.growable_index = true;
  s.index_buckets = 1;
  // One page: every flush checkpoints, and the rebuild writes pages back.
  s.index_cache_bytes = PagedIndex::kPageCostBytes;
  EXPECT_TRUE(s.open());
  std::vector<ChunkId> ids;
  for (uint64_t first = 0; first < 128; first += 16) {
    auto got = s.put(patterns(16, first));
    EXPECT_TRUE(got);
    ids.insert(ids.end(), got->begin(), got->end());
    EXPECT_TRUE(s.flush());
  }
  EXPECT_EQ(s.store().index_generation(), 0u);
  auto more = s.put(patterns(40, 128));
  EXPECT_TRUE(more);
  if (!more) {
    return false;
  }
  if (fault == GrowthFault::new_table_write) {
    s.tables().fail_new_writes_after = n;
    s.tables().fail_removes = true;
  } else if (fault == GrowthFault::journal_write) {
    s.journal_disk().fail_writes_after(n);
  } else {
    s.tables().fail_removes = true;
  }
  bool flushed = s.flush().has_value();
  bool grew = s.store().index_generation() == 1;
  bool fault_hit = s.tables().generations().count(1) > 0 && !grew;  // the rebuild failed
  if (fault == GrowthFault::journal_write) {
    fault_hit = !flushed;
  }
  if (fault == GrowthFault::new_table_write) {
    EXPECT_TRUE(flushed) << "a failed rebuild keeps the old table and the flush succeeds";
    EXPECT_EQ(grew, !fault_hit);
  }
  if (fault == GrowthFault::old_table_kept) {
    EXPECT_TRUE(flushed && grew);
    EXPECT_EQ(s.tables().generations(), (std::set<uint64_t>{0, 1}));
  }
  s.tables().fail_new_writes_after = std::nullopt;
  s.tables().fail_removes = false;
  s.power_cut(seed);
  s.journal_disk().fail_writes_after(std::nullopt);
  EXPECT_TRUE(s.open());
  if (::testing::Test::HasFailure()) {
    return false;
  }
  // The flushed chunks all survive; the 40 of a failed flush are each whole or absent.
  uint64_t present = 0;
  for (uint64_t i = 0; i < 168; ++i) {
    ChunkId id = i < 128 ? ids[i] : (*more)[i - 128];
    uint64_t refs = s.refs(id);
    if (i < 128 || flushed) {
      EXPECT_EQ(refs, 1u) << "chunk " << i;
    }
    if (refs > 0) {
      ++present;
      auto bytes = s.get(id, 4096);
      EXPECT_TRUE(bytes && *bytes == test::pattern(4096, i)) << "chunk " << i;
    }
  }
  EXPECT_EQ(s.store().stats().chunks, present);
  // Only the generation the journal names is left.
  uint64_t generation = s.store().index_generation();
  EXPECT_EQ(s.tables().generations(), std::set<uint64_t>{generation});
  EXPECT_EQ(s.store().index_buckets(), generation == 0 ? 1u : 4u);
  if (flushed && !fault_hit) {
    EXPECT_EQ(generation, 1u);
  }
  // Growth after recovery: a retry must not trust what a failed attempt left.
  for (uint64_t round = 0; round < 8 && s.store().index_generation() == 0; ++round) {
    EXPECT_TRUE(s.put(patterns(20, 1000 + round * 20)));
    EXPECT_TRUE(s.flush());
  }
  EXPECT_GE(s.store().index_generation(), 1u);
  return fault_hit;
}

TEST(LocalChunkStoreCrash, TableGrowthSurvivesPowerCutsAtEveryStep) {
  uint64_t lives = 0;
  for (GrowthFault fault : {GrowthFault::new_table_write, GrowthFault::journal_write}) {
    for (uint64_t n = 0; n < 2000 && !HasFailure(); ++n) {
      ++lives;
      if (!growth_crash(fault, n, 1000 + n)) {
        break;  // n is past the last write: the growth completed
      }
    }
  }
  for (uint64_t seed = 0; seed < 4 && !HasFailure(); ++seed) {
    growth_crash(GrowthFault::old_table_kept, 0, seed);
  }
  EXPECT_GT(lives, 10u);
}

}  // namespace
}  // namespace cairn::io