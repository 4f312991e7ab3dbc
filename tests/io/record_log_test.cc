// Tests of FileRecordLog (on the simulated disk, with power cuts at every step), and of the
// two LogFactory implementations.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <random>
#include <string>

#include "io/dir_log_factory.h"
#include "io/disk_ring.h"
#include "io/errors.h"
#include "io/file_record_log.h"
#include "io/sim_block_file.h"
#include "io/sim_log_factory.h"
#include "tests/test_util.h"

namespace cairn::io {
namespace {

using Records = std::map<uint64_t, std::vector<std::byte>>;

std::unique_ptr<FileRecordLog> open_log(asio::io_context& ctx, BlockFile& disk) {
  auto log = test::run(ctx, FileRecordLog::open(disk));
  EXPECT_TRUE(log) << log.error().message();
  return log ? std::move(*log) : nullptr;
}

Records replay_all(asio::io_context& ctx, RecordLog& log) {
  Records out;
  uint64_t last = 0;
  auto r = test::run(ctx, log.replay([&](uint64_t lsn, std::span<const std::byte> rec) {
    EXPECT_TRUE(last == 0 || lsn == last + 1) << "LSNs not contiguous: " << last << " " << lsn;
    last = lsn;
    out.emplace(lsn, std::vector<std::byte>(rec.begin(), rec.end()));
  }));
  EXPECT_TRUE(r) << r.error().message();
  return out;
}

TEST(FileRecordLog, AppendsSyncsAndReplaysAfterReopen) {
  asio::io_context ctx;
  SimBlockFile disk(FileRecordLog::file_bytes_for(64 * 1024));
  Records expected;
  {
    auto log = open_log(ctx, disk);
    ASSERT_TRUE(log);
    EXPECT_TRUE(replay_all(ctx, *log).empty());
    for (uint64_t i = 0; i < 50; ++i) {
      auto rec = test::pattern(i * 13, i);  // includes a zero-length record
      auto lsn = log->append(rec);
      ASSERT_TRUE(lsn);
      EXPECT_EQ(*lsn, i + 1);
      expected[*lsn] = rec;
      if (i % 7 == 0) {
        ASSERT_TRUE(test::run(ctx, log->sync()));
      }
    }
    ASSERT_TRUE(test::run(ctx, log->sync()));
    EXPECT_EQ(log->durable_lsn(), 51u);
  }
  disk.power_cut(1, SimBlockFile::CutMode::drop_all);
  auto log = open_log(ctx, disk);
  ASSERT_TRUE(log);
  EXPECT_EQ(replay_all(ctx, *log), expected);
  EXPECT_EQ(log->next_lsn(), 51u);
}

TEST(FileRecordLog, LosesOnlyUnsyncedRecords) {
  asio::io_context ctx;
  SimBlockFile disk(FileRecordLog::file_bytes_for(64 * 1024));
  auto log = open_log(ctx, disk);
  ASSERT_TRUE(log->append(test::pattern(100, 1)));
  ASSERT_TRUE(test::run(ctx, log->sync()));
  ASSERT_TRUE(log->append(test::pattern(100, 2)));
  log.reset();
  disk.power_cut(3, SimBlockFile::CutMode::drop_all);
  log = open_log(ctx, disk);
  Records got = replay_all(ctx, *log);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[1], test::pattern(100, 1));
}

TEST(FileRecordLog, FullLogSaysNoSpaceAndReleaseMakesRoom) {
  asio::io_context ctx;
  SimBlockFile disk(FileRecordLog::file_bytes_for(16 * 1024));
  auto log = open_log(ctx, disk);
  EXPECT_EQ(log->capacity_bytes(), 16u * 1024);
  auto rec = test::pattern(1000, 5);
  uint64_t last = 0;
  for (int i = 0; i < 100; ++i) {
    auto lsn = log->append(rec);
    if (!lsn) {
      EXPECT_EQ(lsn.error(), errc::no_space);
      break;
    }
    last = *lsn;
    ASSERT_TRUE(test::run(ctx, log->sync()));
  }
  ASSERT_GT(last, 5u);
  ASSERT_LT(last, 17u);
  EXPECT_LE(log->used_bytes(), log->capacity_bytes());
  ASSERT_TRUE(test::run(ctx, log->release_before(last - 1)));
  ASSERT_TRUE(log->append(rec));
  ASSERT_TRUE(test::run(ctx, log->sync()));
  log.reset();
  log = open_log(ctx, disk);
  Records got = replay_all(ctx, *log);
  ASSERT_EQ(got.size(), 3u);  // last - 1, last and the new one
  EXPECT_EQ(got.begin()->first, last - 1);
}

TEST(FileRecordLog, RejectsRecordsThatCanNeverFit) {
  asio::io_context ctx;
  SimBlockFile disk(FileRecordLog::file_bytes_for(16 * 1024));
  auto log = open_log(ctx, disk);
  EXPECT_EQ(log->append(test::pattern(16 * 1024, 1)).error(), errc::invalid_argument);
  EXPECT_EQ(log->append(test::pattern(FileRecordLog::kMaxRecordBytes + 1, 1)).error(),
            errc::invalid_argument);
  SimBlockFile tiny(8192);
  EXPECT_EQ(test::run(ctx, FileRecordLog::open(tiny)).error(), errc::invalid_argument);
}

TEST(FileRecordLog, TornOrCorruptTailEndsTheLogAndIsOverwritten) {
  asio::io_context ctx;
  SimBlockFile disk(FileRecordLog::file_bytes_for(64 * 1024));
  auto log = open_log(ctx, disk);
  ASSERT_TRUE(log->append(test::pattern(300, 1)));
  ASSERT_TRUE(test::run(ctx, log->sync()));
  ASSERT_TRUE(log->append(test::pattern(6000, 2)));  // second frame spans blocks
  ASSERT_TRUE(test::run(ctx, log->sync()));
  log.reset();
  // Damage the second frame's payload (a truncated/torn record): replay ends before it.
  disk.corrupt_sector(FileRecordLog::kRingOffsetBytes + 4096 + 512);
  log = open_log(ctx, disk);
  Records got = replay_all(ctx, *log);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(log->next_lsn(), 2u);
  ASSERT_TRUE(log->append(test::pattern(50, 3)));
  ASSERT_TRUE(test::run(ctx, log->sync()));
  log.reset();
  log = open_log(ctx, disk);
  got = replay_all(ctx, *log);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[2], test::pattern(50, 3));
}

TEST(FileRecordLog, TornSuperblockFallsBackAndTwoBadOnesAreCorrupt) {
  asio::io_context ctx;
  SimBlockFile disk(FileRecordLog::file_bytes_for(16 * 1024));
  auto log = open_log(ctx, disk);  // formatting writes superblock sequence 1 (slot 1)
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(log->append(test::pattern(10, i)));
    ASSERT_TRUE(test::run(ctx, log->sync()));
  }
  ASSERT_TRUE(test::run(ctx, log->release_before(3)));  // sequence 2 (slot 0)
  log.reset();
  EXPECT_EQ(replay_all(ctx, *open_log(ctx, disk)).size(), 1u);
  disk.corrupt_sector(0);  // the newest superblock: fall back to the older one
  EXPECT_EQ(replay_all(ctx, *open_log(ctx, disk)).size(), 3u);
  disk.corrupt_sector(FileRecordLog::kSuperblockBytes);
  EXPECT_EQ(test::run(ctx, FileRecordLog::open(disk)).error(), errc::corrupt);
}

TEST(FileRecordLog, StaleFrameAfterRewrittenTailIsIgnored) {
  asio::io_context ctx;
  SimBlockFile disk(FileRecordLog::file_bytes_for(64 * 1024));
  auto log = open_log(ctx, disk);
  // Frames: [0, 192), [192, 8192) and [8192, ...): the middle one ends on a block boundary,
  // so rewriting it leaves the third frame's block alone.
  for (auto [size, seed] : {std::pair{100, 1}, {7932, 2}, {100, 3}}) {
    ASSERT_TRUE(log->append(test::pattern(size, seed)));
    ASSERT_TRUE(test::run(ctx, log->sync()));
  }
  log.reset();
  // The middle frame is damaged; the frame after it is intact but must not be replayed once
  // a new frame of the same size has taken the middle one's place.
  disk.corrupt_sector(FileRecordLog::kRingOffsetBytes + 4096 + 512);
  log = open_log(ctx, disk);
  EXPECT_EQ(replay_all(ctx, *log).size(), 1u);
  ASSERT_TRUE(log->append(test::pattern(7932, 4)));
  ASSERT_TRUE(test::run(ctx, log->sync()));
  log.reset();
  log = open_log(ctx, disk);
  Records got = replay_all(ctx, *log);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[2], test::pattern(7932, 4));
}

// Model of what a crashed log must give back. Releases that failed may or may not have
// reached the disk, so the release point is only known to lie in [released_lo, released_hi].
struct LogModel {
  Records history;  // every record appended in the current timeline
  uint64_t durable = 1;
  uint64_t released_lo = 1;
  uint64_t released_hi = 1;
};

void check_replay(const LogModel& m, const Records& got) {
  for (uint64_t lsn = m.released_hi; lsn < m.durable; ++lsn) {
    ASSERT_TRUE(got.count(lsn)) << "lost synced record " << lsn;
  }
  for (auto& [lsn, rec] : got) {
    ASSERT_GE(lsn, m.released_lo);
    ASSERT_TRUE(m.history.count(lsn)) << "record " << lsn << " was never appended";
    ASSERT_EQ(rec, m.history.at(lsn)) << "wrong bytes for record " << lsn;
  }
}

// Runs random appends, syncs and releases until a step fails (injected I/O error) or the
// round ends. Returns false on a failed step, after which the log is unusable.
bool run_round(asio::io_context& ctx, std::mt19937_64& rng, FileRecordLog& log, LogModel& m) {
  int steps = static_cast<int>(rng() % 60);
  for (int s = 0; s < steps; ++s) {
    uint64_t op = rng() % 10;
    uint64_t upto = 0;
    if (op < 6) {
      auto rec = test::pattern(rng() % 3000, rng());
      auto lsn = log.append(rec);
      if (lsn) {
        m.history[*lsn] = rec;
        continue;
      }
      if (lsn.error() != errc::no_space) {
        return false;
      }
      upto = m.durable - (m.durable - m.released_lo) / 4;
    } else if (op < 9) {
      if (!test::run(ctx, log.sync())) {
        return false;
      }
      m.durable = log.next_lsn();
      continue;
    } else {
      upto = m.released_lo + rng() % (m.durable - m.released_lo + 1);
    }
    bool ok = static_cast<bool>(test::run(ctx, log.release_before(upto)));
    m.released_hi = std::max(m.released_hi, upto);
    if (!ok) {
      return false;
    }
    m.released_lo = std::max(m.released_lo, upto);
  }
  return true;
}

// Replays a random workload with I/O errors and power cuts at random points (so frames and
// superblocks get torn mid-sync), many laps round the ring, and checks that every synced
// record comes back and nothing else but whole later records.
void crash_workload(uint64_t seed) {
  SCOPED_TRACE("replay with CAIRN_SEED=" + std::to_string(seed));
  asio::io_context ctx;
  std::mt19937_64 rng(seed);
  SimBlockFile disk(FileRecordLog::file_bytes_for(32 * 1024));
  LogModel m;
  for (int round = 0; round < 12; ++round) {
    disk.fail_writes_after(std::nullopt);
    auto log = open_log(ctx, disk);
    ASSERT_TRUE(log);
    Records got = replay_all(ctx, *log);
    check_replay(m, got);
    if (::testing::Test::HasFatalFailure()) {
      return;
    }
    uint64_t end = got.empty() ? std::max(m.durable, m.released_lo) : got.rbegin()->first + 1;
    ASSERT_EQ(log->next_lsn(), end);
    m.history.erase(m.history.lower_bound(end), m.history.end());
    m.durable = end;
    if (rng() % 2 == 0) {
      disk.fail_writes_after(rng() % 4);  // a crash in the middle of some later sync
    }
    run_round(ctx, rng, *log, m);
    log.reset();
    disk.power_cut(rng());
  }
}

TEST(FileRecordLog, SurvivesPowerCutsAtRandomPoints) {
  if (const char* env = std::getenv("CAIRN_SEED")) {
    crash_workload(std::strtoull(env, nullptr, 10));
    return;
  }
  for (uint64_t seed = 1; seed <= 200 && !HasFatalFailure(); ++seed) {
    crash_workload(seed);
  }
}

TEST(SimLogFactory, PowerCutsEveryLogAndReopens) {
  asio::io_context ctx;
  SimLogFactory factory(64 * 1024);
  auto a = test::run(ctx, factory.open("vol-a"));
  auto b = test::run(ctx, factory.open("vol-b"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE((*a)->append(test::pattern(10, 1)));
  ASSERT_TRUE(test::run(ctx, (*a)->sync()));
  ASSERT_TRUE((*b)->append(test::pattern(10, 2)));
  a->reset();
  b->reset();
  // b's record was never synced, so it never reached b's disk.
  EXPECT_EQ(factory.power_cut_all(4, SimBlockFile::CutMode::drop_all), 0u);
  a = test::run(ctx, factory.open("vol-a"));
  b = test::run(ctx, factory.open("vol-b"));
  EXPECT_EQ(replay_all(ctx, **a).size(), 1u);
  EXPECT_EQ(replay_all(ctx, **b).size(), 0u);
  b->reset();
  EXPECT_TRUE(test::run(ctx, factory.remove("vol-b")));
  EXPECT_EQ(test::run(ctx, factory.remove("vol-b")).error(), errc::not_found);
  EXPECT_EQ(factory.disk("vol-b"), nullptr);
}

TEST(DirLogFactory, KeepsLogsAsFilesInTheDirectory) {
  asio::io_context ctx;
  DiskRing ring(ctx, 8);
  char tmpl[] = "/tmp/cairn-logs-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  DirLogFactory factory(dir, {.capacity_bytes = 128 * 1024}, &ring);
  EXPECT_EQ(test::run(ctx, factory.open("../etc")).error(), errc::invalid_argument);
  EXPECT_EQ(test::run(ctx, factory.open("")).error(), errc::invalid_argument);
  EXPECT_EQ(test::run(ctx, factory.open(".hidden")).error(), errc::invalid_argument);
  {
    auto log = test::run(ctx, factory.open("index"));
    ASSERT_TRUE(log) << log.error().message();
    EXPECT_EQ((*log)->capacity_bytes(), 128u * 1024);
    for (int i = 0; i < 40; ++i) {
      ASSERT_TRUE((*log)->append(test::pattern(1000, i)));
      ASSERT_TRUE(test::run(ctx, (*log)->sync()));
    }
  }
  {
    auto log = test::run(ctx, factory.open("index"));
    ASSERT_TRUE(log);
    Records got = replay_all(ctx, **log);
    ASSERT_EQ(got.size(), 40u);
    EXPECT_EQ(got[40], test::pattern(1000, 39));
  }
  EXPECT_EQ(::access((dir + "/index.log").c_str(), F_OK), 0);
  // A log file left empty by a crash right after its creation is sized and formatted.
  int fd = ::open((dir + "/empty.log").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ::close(fd);
  {
    auto log = test::run(ctx, factory.open("empty"));
    ASSERT_TRUE(log) << log.error().message();
    EXPECT_EQ((*log)->capacity_bytes(), 128u * 1024);
  }
  EXPECT_TRUE(test::run(ctx, factory.remove("empty")));
  EXPECT_TRUE(test::run(ctx, factory.remove("index")));
  EXPECT_EQ(test::run(ctx, factory.remove("index")).error(), errc::not_found);
  EXPECT_EQ(::rmdir(dir.c_str()), 0);
}

}  // namespace
}  // namespace cairn::io
