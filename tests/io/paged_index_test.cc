// Tests of the paged chunk index: the page format (round trip, full page, torn, misdirected and
// damaged pages), the bounded page cache (evicts and re-reads, never above its budget once
// checkpointed), overflow chains, and crash safety: power cuts in the middle of a checkpoint and
// after a checkpoint the journal never recorded, against a model.
#include "io/paged_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>

#include "io/errors.h"
#include "io/index_page.h"
#include "io/sim_block_file.h"
#include "tests/test_util.h"

namespace cairn::io {
namespace {

using Model = std::map<ChunkId, IndexEntry>;

IndexEntry entry_for(uint64_t k, uint32_t refs = 1) {
  return IndexEntry{4096 * (k + 1), k * 31 + 7, static_cast<uint32_t>(1 + k % 65536), refs};
}

TEST(IndexPage, RoundTripsAFullPage) {
  IndexPage page;
  page.page_no = 77;
  page.seq = 5;
  page.next = 301;
  for (uint64_t k = 0; k < IndexPage::kCapacity; ++k) {
    page.items.push_back({ChunkId{k, ~k}, entry_for(k, static_cast<uint32_t>(k + 1))});
  }
  AlignedBuffer buf(IndexPage::kBytes);
  page.encode(buf.span());
  IndexPage out;
  ASSERT_EQ(IndexPage::decode(buf.span(), 77, out), IndexPage::Decoded::ok);
  EXPECT_EQ(out.seq, 5u);
  EXPECT_EQ(out.next, 301u);
  ASSERT_EQ(out.items.size(), IndexPage::kCapacity);
  for (uint64_t k = 0; k < IndexPage::kCapacity; ++k) {
    EXPECT_EQ(out.items[k].id, (ChunkId{k, ~k}));
    EXPECT_EQ(out.items[k].entry, entry_for(k, static_cast<uint32_t>(k + 1)));
  }
}

TEST(IndexPage, RejectsZeroTornMisdirectedAndDamagedPages) {
  AlignedBuffer buf(IndexPage::kBytes);
  IndexPage out;
  EXPECT_EQ(IndexPage::decode(buf.span(), 0, out), IndexPage::Decoded::zero);
  IndexPage page;
  page.page_no = 3;
  page.seq = 9;
  for (uint64_t k = 0; k < 60; ++k) {
    page.items.push_back({ChunkId{k + 1, k}, entry_for(k)});
  }
  page.encode(buf.span());
  EXPECT_EQ(IndexPage::decode(buf.span(), 4, out), IndexPage::Decoded::invalid);  // misdirected
  // Torn at a sector: the first 512 bytes of a newer version over the older one.
  AlignedBuffer newer(IndexPage::kBytes);
  page.seq = 10;
  page.items.pop_back();
  page.encode(newer.span());
  AlignedBuffer torn(IndexPage::kBytes);
  std::memcpy(torn.data(), buf.data(), IndexPage::kBytes);
  std::memcpy(torn.data(), newer.data(), 512);
  EXPECT_EQ(IndexPage::decode(torn.span(), 3, out), IndexPage::Decoded::invalid);
  // One flipped bit anywhere.
  for (std::size_t at : {std::size_t{0}, std::size_t{100}, std::size_t{4000}, std::size_t{4095}}) {
    AlignedBuffer bad(IndexPage::kBytes);
    std::memcpy(bad.data(), buf.data(), IndexPage::kBytes);
    bad.data()[at] ^= std::byte{0x10};
    EXPECT_EQ(IndexPage::decode(bad.span(), 3, out), IndexPage::Decoded::invalid) << at;
  }
  ASSERT_EQ(IndexPage::decode(buf.span(), 3, out), IndexPage::Decoded::ok);
  EXPECT_EQ(out.items.size(), 60u);
}

// The table on a simulated disk plus the test's stand-in for the store's journal: the
// checkpoint state it last recorded, and the model as of that checkpoint.
class SimIndex {
 public:
  explicit SimIndex(uint64_t buckets = 4, uint64_t cache_bytes = 3 * PagedIndex::kPageCostBytes)
      : options_{buckets, cache_bytes} {}

  void open() {
    index_.reset();
    auto r = test::run(ctx_, PagedIndex::open(disk_, options_, journalled_));
    ASSERT_TRUE(r) << r.error().message();
    index_ = std::move(*r);
    live_ = durable_;
  }
  void power_cut(uint64_t seed) {
    index_.reset();
    disk_.fail_writes_after(std::nullopt);
    disk_.power_cut(seed);
  }
  void put(const ChunkId& id, const IndexEntry& e) {
    ASSERT_TRUE(test::run(ctx_, index_->put(id, e)));
    live_[id] = e;
  }
  void erase(const ChunkId& id) {
    auto r = test::run(ctx_, index_->erase(id));
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, live_.erase(id) == 1);
  }
  Result<PagedIndex::Checkpoint> checkpoint() { return test::run(ctx_, index_->checkpoint()); }
  void journal(PagedIndex::Checkpoint c) {
    journalled_ = c;
    durable_ = live_;
  }
  // Every entry, by find() and by scan(), equals the model.
  void verify(const std::vector<ChunkId>& absent) {
    for (const auto& [id, e] : live_) {
      auto got = test::run(ctx_, index_->find(id));
      ASSERT_TRUE(got);
      ASSERT_TRUE(got->has_value()) << id.to_hex();
      ASSERT_EQ(**got, e) << id.to_hex();
    }
    for (const ChunkId& id : absent) {
      if (live_.count(id) == 0) {
        auto got = test::run(ctx_, index_->find(id));
        ASSERT_TRUE(got);
        ASSERT_FALSE(got->has_value()) << id.to_hex();
      }
    }
    Model scanned;
    ASSERT_TRUE(test::run(ctx_, index_->scan([&](const ChunkId& id, const IndexEntry& e) {
      ASSERT_TRUE(scanned.emplace(id, e).second) << "visited twice: " << id.to_hex();
    })));
    ASSERT_EQ(scanned, live_);
  }

  PagedIndex& index() { return *index_; }
  asio::io_context& ctx() { return ctx_; }
  SimBlockFile& disk() { return disk_; }
  const Model& live() const { return live_; }

 private:
  asio::io_context ctx_;
  SimBlockFile disk_;
  PagedIndex::Options options_;
  PagedIndex::Checkpoint journalled_;
  Model durable_;
  Model live_;
  std::unique_ptr<PagedIndex> index_;
};

TEST(PagedIndex, ChainsOverflowPagesAndStaysWithinItsCacheBudget) {
  SimIndex s(/*buckets=*/4, /*cache_bytes=*/3 * PagedIndex::kPageCostBytes);
  s.open();
  s.verify({ChunkId{1, 2}});  // a new table: every bucket empty, none written yet
  std::vector<ChunkId> ids;
  for (uint64_t k = 0; k < 2000; ++k) {
    ids.push_back(ChunkId{k % 256, k / 256});  // 8-bit addresses plus ordinals, as in tests
    s.put(ids.back(), entry_for(k));
    if (k % 150 == 149) {
      auto c = s.checkpoint();
      ASSERT_TRUE(c);
      s.journal(*c);
      EXPECT_LE(s.index().cached_bytes(), s.index().budget_bytes());
    }
  }
  for (uint64_t k = 0; k < 2000; k += 3) {
    s.erase(ids[k]);
  }
  auto c = s.checkpoint();
  ASSERT_TRUE(c);
  s.journal(*c);
  EXPECT_GE(c->overflow_pages, 2000 / IndexPage::kCapacity - 4);
  EXPECT_EQ(s.index().dirty_bytes(), 0u);
  EXPECT_LE(s.index().cached_bytes(), s.index().budget_bytes());
  uint64_t reads = s.index().page_reads();
  s.verify({ChunkId{1, 999}, ChunkId{0, 0}});
  EXPECT_GT(s.index().page_reads(), reads);  // evicted pages were read again
  EXPECT_LE(s.index().cached_bytes(), s.index().budget_bytes());
  s.open();  // a clean reopen reads the same
  s.verify({});
}

TEST(PagedIndex, FindsInACachedChainWithoutReadingTheDisk) {
  SimIndex s(/*buckets=*/4, /*cache_bytes=*/64 * PagedIndex::kPageCostBytes);
  s.open();
  for (uint64_t k = 0; k < 600; ++k) {
    s.put(ChunkId{k, k * 7}, entry_for(k));
  }
  auto c = s.checkpoint();
  ASSERT_TRUE(c);
  s.journal(*c);
  s.open();                     // nothing cached
  s.verify({ChunkId{1, 999}});  // loads every chain once
  uint64_t reads = s.index().page_reads();
  s.verify({ChunkId{1, 999}, ChunkId{5, 5}});
  EXPECT_EQ(s.index().page_reads(), reads);

  // A find() while a put() holds the lock (between two steps: it reads the page from disk)
  // waits for it and sees a consistent chain.
  s.open();
  bool put_done = false;
  std::optional<IndexEntry> seen;
  asio::co_spawn(
      s.ctx(),
      [&]() -> Task<void> {
        auto r = co_await s.index().put(ChunkId{3, 3}, entry_for(3000));
        put_done = r.has_value();
      },
      asio::detached);
  asio::co_spawn(
      s.ctx(),
      [&]() -> Task<void> {
        auto r = co_await s.index().find(ChunkId{3, 3});
        if (r) {
          seen = *r;
        }
      },
      asio::detached);
  s.ctx().restart();
  s.ctx().run();
  EXPECT_TRUE(put_done);
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(*seen, entry_for(3000));
}

// put_cached() and erase_cached() change a cached chain in place, and decline (changing
// nothing) when the chain is not cached, when it would need a new overflow page, or while an
// operation holds the lock.
TEST(PagedIndex, CachedPutAndEraseChangeOnlyWhatTheyCan) {
  SimIndex s(/*buckets=*/1, /*cache_bytes=*/64 * PagedIndex::kPageCostBytes);
  s.open();
  const ChunkId first{1, 1};
  EXPECT_FALSE(s.index().put_cached(first, entry_for(1)));  // bucket 0 is not cached yet
  EXPECT_FALSE(s.index().erase_cached(first).has_value());
  s.put(first, entry_for(1));  // loads the bucket
  // One bucket: fill its page through the fast path, then the next put needs an overflow page.
  for (uint64_t k = 2; k <= IndexPage::kCapacity; ++k) {
    ASSERT_TRUE(s.index().put_cached(ChunkId{k, k}, entry_for(k))) << k;
  }
  const ChunkId spill{999, 999};
  EXPECT_FALSE(s.index().put_cached(spill, entry_for(999)));
  EXPECT_EQ(s.index().overflow_pages(), 0u);
  s.put(spill, entry_for(999));  // put() links the overflow page
  EXPECT_EQ(s.index().overflow_pages(), 1u);
  // Replace in place, erase present and absent ids.
  EXPECT_TRUE(s.index().put_cached(first, entry_for(1, 5)));
  EXPECT_EQ(s.index().erase_cached(ChunkId{2, 2}), std::optional<bool>(true));
  EXPECT_EQ(s.index().erase_cached(ChunkId{2, 2}), std::optional<bool>(false));
  EXPECT_EQ(s.index().erase_cached(spill), std::optional<bool>(true));
  auto got = test::run(s.ctx(), s.index().find(first));
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ(**got, entry_for(1, 5));
  for (const ChunkId& gone : {ChunkId{2, 2}, spill}) {
    got = test::run(s.ctx(), s.index().find(gone));
    ASSERT_TRUE(got);
    EXPECT_FALSE(got->has_value());
  }
  // A checkpoint writes what the fast path changed, and a reopen reads it back.
  auto c = s.checkpoint();
  ASSERT_TRUE(c);
  s.journal(*c);
  s.open();
  got = test::run(s.ctx(), s.index().find(ChunkId{IndexPage::kCapacity, IndexPage::kCapacity}));
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ(**got, entry_for(IndexPage::kCapacity));

  // While a put() holds the lock (suspended reading a page), the fast paths decline.
  s.open();
  s.disk().set_yield(true);
  bool checked = false;
  asio::co_spawn(
      s.ctx(), [&]() -> Task<void> { (void)co_await s.index().put(first, entry_for(7)); },
      asio::detached);
  asio::co_spawn(
      s.ctx(),
      [&]() -> Task<void> {
        EXPECT_FALSE(s.index().put_cached(first, entry_for(8)));
        EXPECT_FALSE(s.index().erase_cached(first).has_value());
        checked = true;
        co_return;
      },
      asio::detached);
  s.ctx().restart();
  s.ctx().run();
  EXPECT_TRUE(checked);
  got = test::run(s.ctx(), s.index().find(first));
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ(**got, entry_for(7));
}

// Random operations; each round ends in one of: a journalled checkpoint; a checkpoint whose
// writes fail part way and then lose power (torn, dropped or kept writes); or a checkpoint that
// completes on disk but is never journalled before the power cut. After every cut the index
// must equal the model as of the last journalled checkpoint.
TEST(PagedIndex, SurvivesPowerCutsDuringAndAfterCheckpoints) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    // Few buckets (long chains) to many (most pages untouched by a round's checkpoint).
    SimIndex s(/*buckets=*/1 + seed % 24, /*cache_bytes=*/2 * PagedIndex::kPageCostBytes);
    s.open();
    std::mt19937_64 rng(seed);
    int ops = 5 + static_cast<int>(seed % 5) * 35;
    std::vector<ChunkId> universe;
    for (uint64_t k = 0; k < 700; ++k) {
      universe.push_back(ChunkId{k % 97, k / 97});
    }
    for (int round = 0; round < 12; ++round) {
      for (int op = 0; op < ops; ++op) {
        const ChunkId& id = universe[rng() % universe.size()];
        if (rng() % 4 == 0) {
          s.erase(id);
        } else {
          s.put(id, entry_for(rng() % 100000, static_cast<uint32_t>(1 + rng() % 9)));
        }
      }
      switch (rng() % 3) {
        case 0: {
          auto c = s.checkpoint();
          ASSERT_TRUE(c);
          s.journal(*c);
          break;
        }
        case 1:
          s.disk().fail_writes_after(rng() % 8);
          (void)s.checkpoint();
          s.power_cut(seed * 100 + round);
          s.open();
          break;
        default:
          ASSERT_TRUE(s.checkpoint());  // on disk, but the journal never says so
          s.power_cut(seed * 100 + round);
          s.open();
          break;
      }
      ASSERT_NO_FATAL_FAILURE(s.verify({universe[0], universe[1]}))
          << "seed " << seed << " round " << round;
    }
  }
}

// A checkpoint that reached the disk but not the journal leaves page versions stamped with a
// sequence number the next checkpoint reuses. Pages that next checkpoint does not rewrite must
// not come back: reopening erases those versions.
TEST(PagedIndex, AnUnjournalledCheckpointNeverResurfaces) {
  SimIndex s(/*buckets=*/8, /*cache_bytes=*/1 << 20);
  s.open();
  ChunkId a{1, 0};
  ChunkId b{2, 0};
  while (s.index().bucket_of(b) == s.index().bucket_of(a)) {
    ++b.lo;
  }
  s.put(a, entry_for(1));
  s.put(b, entry_for(2));
  auto c = s.checkpoint();
  ASSERT_TRUE(c);
  s.journal(*c);
  s.put(a, entry_for(3));
  ASSERT_TRUE(s.checkpoint());  // seq 2 on disk, never journalled
  s.power_cut(7);
  s.open();
  ASSERT_NO_FATAL_FAILURE(s.verify({}));
  s.put(b, entry_for(4));  // only b's page is dirty in the new seq 2
  c = s.checkpoint();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->seq, 2u);
  s.journal(*c);
  s.open();
  ASSERT_NO_FATAL_FAILURE(s.verify({}));
  auto got = test::run(s.ctx(), s.index().find(a));
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ(**got, entry_for(1));
}

TEST(PagedIndex, RefusesADamagedHeaderAndALostOverflowPage) {
  SimIndex s(/*buckets=*/1);
  s.open();
  for (uint64_t k = 0; k < 3 * IndexPage::kCapacity; ++k) {
    s.put(ChunkId{k, 1}, entry_for(k));
  }
  auto c = s.checkpoint();
  ASSERT_TRUE(c);
  s.journal(*c);
  EXPECT_EQ(c->overflow_pages, 2u);
  // Both slots of overflow page 1 (logical page 2) damaged: an error, not missing entries.
  s.disk().corrupt_sector(PagedIndex::kTableStartBytes + 2 * 2 * PagedIndex::kSlotBytes);
  s.disk().corrupt_sector(PagedIndex::kTableStartBytes + 2 * 2 * PagedIndex::kSlotBytes + 4096);
  asio::io_context ctx;
  auto reopened = test::run(ctx, PagedIndex::open(s.disk(), {1, 1 << 20}, *c));
  ASSERT_TRUE(reopened);
  bool corrupt = false;
  for (uint64_t k = 0; k < 3 * IndexPage::kCapacity && !corrupt; ++k) {
    auto r = test::run(ctx, (*reopened)->find(ChunkId{k, 1}));
    corrupt = !r && r.error() == errc::corrupt;
  }
  EXPECT_TRUE(corrupt);
  reopened->reset();
  s.disk().corrupt_sector(0);
  auto bad = test::run(ctx, PagedIndex::open(s.disk(), {1, 1 << 20}, *c));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), errc::corrupt);
}

// find_many() answers exactly as find() for every id, present or not, repeated or not, and
// keeps the page cache at its budget while it reads chains the budget cannot hold at once.
TEST(PagedIndex, FindManyAgreesWithFindAndKeepsTheBudget) {
  SimIndex s(/*buckets=*/4, /*cache_bytes=*/3 * PagedIndex::kPageCostBytes);
  s.open();
  std::vector<ChunkId> ids;
  for (uint64_t k = 0; k < 900; ++k) {
    ids.push_back(ChunkId{k * 13 + 1, k});
    s.put(ids.back(), entry_for(k));
  }
  auto c = s.checkpoint();
  ASSERT_TRUE(c);
  s.journal(*c);
  s.open();  // nothing cached
  for (uint64_t k = 0; k < 50; ++k) {
    ids.push_back(ChunkId{k * 13 + 2, k});  // absent
  }
  ids.push_back(ids[5]);
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(3));
  std::vector<std::optional<IndexEntry>> found(ids.size());
  ASSERT_TRUE(test::run(s.ctx(), s.index().find_many(ids, found)));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto it = s.live().find(ids[i]);
    if (it == s.live().end()) {
      EXPECT_FALSE(found[i].has_value()) << ids[i].to_hex();
    } else {
      ASSERT_TRUE(found[i].has_value()) << ids[i].to_hex();
      EXPECT_EQ(*found[i], it->second);
    }
  }
  EXPECT_LE(s.index().cached_bytes(), s.index().budget_bytes());
  EXPECT_TRUE(test::run(s.ctx(), s.index().find_many({}, {})));
}

// The page cache keeps a page used since it was loaded over one that was not (CLOCK's second
// chance; without the mark it would drop pages in load order), and prefetch() and the
// lock-free find_many() path, over more ids than one prefetch group, change nothing they
// should not.
TEST(PagedIndex, EvictionPassesOverAPageUsedSinceItWasLoaded) {
  SimIndex s(/*buckets=*/4, /*cache_bytes=*/3 * PagedIndex::kPageCostBytes);
  s.open();
  std::array<ChunkId, 4> in_bucket{};  // one id per bucket
  std::array<bool, 4> have{};
  for (uint64_t k = 1; !(have[0] && have[1] && have[2] && have[3]); ++k) {
    const ChunkId id{k, 0};
    const uint64_t b = s.index().bucket_of(id);
    if (!have.at(b)) {
      in_bucket.at(b) = id;
      have.at(b) = true;
      s.put(id, entry_for(k));
    }
  }
  auto c = s.checkpoint();
  ASSERT_TRUE(c);
  s.journal(*c);
  s.open();                       // nothing cached
  s.index().prefetch(in_bucket);  // buckets not cached (nor even slots for them): a no-op
  EXPECT_EQ(s.index().cached_bytes(), 0u);
  EXPECT_EQ(s.index().page_reads(), 0u);

  auto find = [&](const ChunkId& id) {
    auto r = test::run(s.ctx(), s.index().find(id));
    ASSERT_TRUE(r);
    ASSERT_EQ(*r, s.live().at(id));
  };
  find(in_bucket[0]);
  find(in_bucket[1]);
  find(in_bucket[2]);  // the cache is full: three pages
  ASSERT_EQ(s.index().page_reads(), 3u);
  find(in_bucket[0]);  // used again: marked
  ASSERT_EQ(s.index().page_reads(), 3u);
  find(in_bucket[3]);  // over budget: bucket 0 is the oldest but marked; bucket 1 goes
  ASSERT_EQ(s.index().page_reads(), 4u);
  EXPECT_LE(s.index().cached_bytes(), s.index().budget_bytes());
  find(in_bucket[0]);
  EXPECT_EQ(s.index().page_reads(), 4u);
  find(in_bucket[1]);
  EXPECT_EQ(s.index().page_reads(), 5u);

  // Every chain cached: find_many answers without reading, 3 prefetch groups and a part.
  SimIndex big(/*buckets=*/4, /*cache_bytes=*/64 * PagedIndex::kPageCostBytes);
  big.open();
  std::vector<ChunkId> ids;
  for (uint64_t k = 0; k < 3 * PagedIndex::kPrefetchBatch + 5; ++k) {
    ids.push_back(ChunkId{k * 7 + 1, k});
    if (k % 2 == 0) {
      big.put(ids.back(), entry_for(k));  // the odd ones are absent
    }
  }
  const uint64_t reads = big.index().page_reads();
  std::vector<std::optional<IndexEntry>> found(ids.size());
  ASSERT_TRUE(test::run(big.ctx(), big.index().find_many(ids, found)));
  EXPECT_EQ(big.index().page_reads(), reads);
  for (std::size_t k = 0; k < ids.size(); ++k) {
    if (k % 2 == 0) {
      ASSERT_TRUE(found[k].has_value()) << k;
      EXPECT_EQ(*found[k], entry_for(k));
    } else {
      EXPECT_FALSE(found[k].has_value()) << k;
    }
  }
}

// copy_to() (growing the table): every entry of a table with long chains arrives in a table
// with four times the buckets, under the new table's cache budget, and survives a reopen of
// the new table as of its one checkpoint. With CAIRN_GROWTH_ENTRIES set (e.g. 300000) it
// reports how long the rebuild takes, the stall docs/on-disk-format.md ("Growth") quotes.
TEST(PagedIndex, CopyToAGrownTableKeepsEveryEntry) {
  const char* env = std::getenv("CAIRN_GROWTH_ENTRIES");
  uint64_t entries = env != nullptr ? std::strtoull(env, nullptr, 10) : 20000;
  uint64_t buckets = std::max<uint64_t>(1, entries / 270);  // chains of ~3 pages
  uint64_t grown_buckets = buckets * 4;
  uint64_t budget = env != nullptr ? 64ull << 20 : 16 * PagedIndex::kPageCostBytes;
  SimIndex old(buckets, budget);
  old.open();
  // As the store does at open: pages over the budget may be written back from now on.
  ASSERT_TRUE(test::run(old.ctx(), old.index().scan([](const ChunkId&, const IndexEntry&) {})));
  for (uint64_t k = 0; k < entries; ++k) {
    old.put(ChunkId{k * 0x9e3779b97f4a7c15ull, k}, entry_for(k));
  }
  auto c = old.checkpoint();
  ASSERT_TRUE(c);
  old.journal(*c);

  SimBlockFile disk;
  auto start = std::chrono::steady_clock::now();
  auto grown = test::run(old.ctx(), PagedIndex::open(disk, {grown_buckets, budget}, {}));
  ASSERT_TRUE(grown);
  ASSERT_TRUE(test::run(old.ctx(), (*grown)->scan([](const ChunkId&, const IndexEntry&) {})));
  ASSERT_TRUE(test::run(old.ctx(), old.index().copy_to(**grown)));
  EXPECT_EQ(old.index().cached_bytes(), 0u);  // the old table's pages went first
  EXPECT_LE((*grown)->cached_bytes(), budget);
  auto at = test::run(old.ctx(), (*grown)->checkpoint());
  ASSERT_TRUE(at);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  std::printf("rebuilt %llu entries from %llu into %llu buckets in %lld ms\n",
              static_cast<unsigned long long>(entries), static_cast<unsigned long long>(buckets),
              static_cast<unsigned long long>(grown_buckets), static_cast<long long>(ms));
  EXPECT_EQ(at->seq, 1u);

  grown->reset();
  disk.power_cut(5);  // everything the copy wrote was synced by its checkpoint
  auto reopened = test::run(old.ctx(), PagedIndex::open(disk, {1, budget}, *at));
  ASSERT_TRUE(reopened);
  EXPECT_EQ((*reopened)->buckets(), grown_buckets);
  Model scanned;
  ASSERT_TRUE(test::run(old.ctx(), (*reopened)->scan([&](const ChunkId& id, const IndexEntry& e) {
    ASSERT_TRUE(scanned.emplace(id, e).second) << "copied twice: " << id.to_hex();
  })));
  ASSERT_EQ(scanned, old.live());
  for (uint64_t k = 0; k < entries; k += 97) {
    auto got = test::run(old.ctx(), (*reopened)->find(ChunkId{k * 0x9e3779b97f4a7c15ull, k}));
    ASSERT_TRUE(got && got->has_value());
    EXPECT_EQ(**got, entry_for(k));
  }
}

}  // namespace
}  // namespace cairn::io
