// The NBD server against a real client: libnbd drives the real cairnd binary through every
// option and command, error cases included (issue 2, M4).
#include <errno.h>
#include <gtest/gtest.h>
#include <libnbd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tests/nbd/cairnd_process.h"
#include "tests/test_util.h"

namespace cairn::test {
namespace {

constexpr uint64_t kVolumeBytes = 64ull << 20;
constexpr uint64_t kMiB = 1ull << 20;

struct NbdCloser {
  void operator()(nbd_handle* h) const noexcept { nbd_close(h); }
};
using Handle = std::unique_ptr<nbd_handle, NbdCloser>;

class LibnbdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { daemon_ = new CairndProcess(CAIRND_PATH, "vol:64M"); }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void TearDown() override { EXPECT_TRUE(daemon_->alive()) << "cairnd died"; }

  // A handle with structured replies and base:allocation requested (libnbd's defaults).
  static Handle open(bool structured = true, bool strict = true) {
    Handle h(nbd_create());
    EXPECT_NE(h, nullptr);
    EXPECT_EQ(nbd_set_request_structured_replies(h.get(), structured), 0);
    EXPECT_EQ(nbd_add_meta_context(h.get(), LIBNBD_CONTEXT_BASE_ALLOCATION), 0);
    if (!strict) {
      EXPECT_EQ(nbd_set_strict_mode(h.get(), 0), 0);
    }
    EXPECT_EQ(nbd_connect_uri(h.get(), daemon_->uri("vol").c_str()), 0) << nbd_get_error();
    return h;
  }

  static CairndProcess* daemon_;
};

CairndProcess* LibnbdTest::daemon_ = nullptr;

// --- Handshake ---

TEST_F(LibnbdTest, GoReportsSizeFlagsAndBlockSizes) {
  Handle h(nbd_create());
  ASSERT_EQ(nbd_set_full_info(h.get(), 1), 0);  // also ask for NBD_INFO_NAME and DESCRIPTION
  ASSERT_EQ(nbd_add_meta_context(h.get(), LIBNBD_CONTEXT_BASE_ALLOCATION), 0);
  ASSERT_EQ(nbd_connect_uri(h.get(), daemon_->uri("vol").c_str()), 0) << nbd_get_error();
  EXPECT_EQ(nbd_get_size(h.get()), static_cast<int64_t>(kVolumeBytes));
  EXPECT_EQ(nbd_is_read_only(h.get()), 0);
  EXPECT_EQ(nbd_can_flush(h.get()), 1);
  EXPECT_EQ(nbd_can_fua(h.get()), 1);
  EXPECT_EQ(nbd_can_trim(h.get()), 1);
  EXPECT_EQ(nbd_can_zero(h.get()), 1);
  EXPECT_EQ(nbd_can_fast_zero(h.get()), 1);
  EXPECT_EQ(nbd_can_cache(h.get()), 1);
  EXPECT_EQ(nbd_can_multi_conn(h.get()), 1);
  EXPECT_EQ(nbd_can_df(h.get()), 1);
  EXPECT_EQ(nbd_can_meta_context(h.get(), LIBNBD_CONTEXT_BASE_ALLOCATION), 1);
  EXPECT_EQ(nbd_get_structured_replies_negotiated(h.get()), 1);
  EXPECT_EQ(nbd_get_block_size(h.get(), LIBNBD_SIZE_MINIMUM), 4096);
  EXPECT_EQ(nbd_get_block_size(h.get(), LIBNBD_SIZE_PREFERRED), 4096);
  EXPECT_EQ(nbd_get_block_size(h.get(), LIBNBD_SIZE_MAXIMUM), 32 * 1024 * 1024);
  const char* name = nbd_get_canonical_export_name(h.get());
  ASSERT_NE(name, nullptr);
  EXPECT_STREQ(name, "vol");
  free(const_cast<char*>(name));
  const char* description = nbd_get_export_description(h.get());
  ASSERT_NE(description, nullptr) << nbd_get_error();
  EXPECT_STREQ(description, "cairn demo volume");
  free(const_cast<char*>(description));
}

TEST_F(LibnbdTest, DefaultExportIsTheFirstVolume) {
  Handle h(nbd_create());
  std::string uri = "nbd://127.0.0.1:" + std::to_string(daemon_->port());
  ASSERT_EQ(nbd_connect_uri(h.get(), uri.c_str()), 0) << nbd_get_error();
  EXPECT_EQ(nbd_get_size(h.get()), static_cast<int64_t>(kVolumeBytes));
}

TEST_F(LibnbdTest, UnknownExportIsRefused) {
  Handle h(nbd_create());
  EXPECT_EQ(nbd_connect_uri(h.get(), daemon_->uri("nope").c_str()), -1);
}

int collect_name(void* user, const char* name, const char* description) {
  static_cast<std::vector<std::string>*>(user)->push_back(name);
  return 0;
}

TEST_F(LibnbdTest, OptModeListInfoAndMetaContexts) {
  Handle h(nbd_create());
  ASSERT_EQ(nbd_set_opt_mode(h.get(), 1), 0);
  ASSERT_EQ(nbd_add_meta_context(h.get(), LIBNBD_CONTEXT_BASE_ALLOCATION), 0);
  ASSERT_EQ(nbd_connect_uri(h.get(), daemon_->uri("vol").c_str()), 0) << nbd_get_error();
  ASSERT_EQ(nbd_aio_is_negotiating(h.get()), 1);

  std::vector<std::string> names;
  ASSERT_EQ(nbd_opt_list(h.get(), nbd_list_callback{collect_name, &names, nullptr}), 1)
      << nbd_get_error();
  EXPECT_EQ(names, std::vector<std::string>{"vol"});

  // NBD_OPT_INFO on an unknown export fails (NBD_REP_ERR_UNKNOWN) and negotiation goes on.
  ASSERT_EQ(nbd_set_export_name(h.get(), "nope"), 0);
  EXPECT_EQ(nbd_opt_info(h.get()), -1);
  ASSERT_EQ(nbd_set_export_name(h.get(), "vol"), 0);
  ASSERT_EQ(nbd_opt_info(h.get()), 0) << nbd_get_error();
  EXPECT_EQ(nbd_get_size(h.get()), static_cast<int64_t>(kVolumeBytes));

  std::vector<std::string> contexts;
  int listed = nbd_opt_list_meta_context(
      h.get(), nbd_context_callback{[](void* user, const char* name) {
                                      static_cast<std::vector<std::string>*>(user)->push_back(name);
                                      return 0;
                                    },
                                    &contexts, nullptr});
  EXPECT_EQ(listed, 1) << nbd_get_error();
  EXPECT_EQ(contexts, std::vector<std::string>{"base:allocation"});

  ASSERT_EQ(nbd_opt_go(h.get()), 0) << nbd_get_error();
  EXPECT_EQ(nbd_can_meta_context(h.get(), LIBNBD_CONTEXT_BASE_ALLOCATION), 1);
  std::vector<char> buf(4096);
  EXPECT_EQ(nbd_pread(h.get(), buf.data(), buf.size(), 0, 0), 0) << nbd_get_error();
}

TEST_F(LibnbdTest, OptAbortEndsNegotiation) {
  Handle h(nbd_create());
  ASSERT_EQ(nbd_set_opt_mode(h.get(), 1), 0);
  ASSERT_EQ(nbd_connect_uri(h.get(), daemon_->uri("vol").c_str()), 0) << nbd_get_error();
  EXPECT_EQ(nbd_opt_abort(h.get()), 0) << nbd_get_error();
  EXPECT_EQ(nbd_aio_is_closed(h.get()), 1);
}

TEST_F(LibnbdTest, WithoutStructuredRepliesThereIsNoBlockStatus) {
  Handle h = open(/*structured=*/false);
  EXPECT_EQ(nbd_get_structured_replies_negotiated(h.get()), 0);
  EXPECT_EQ(nbd_can_meta_context(h.get(), LIBNBD_CONTEXT_BASE_ALLOCATION), 0);
  EXPECT_EQ(nbd_can_df(h.get()), 0);
  auto data = pattern(8192, 7);
  ASSERT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), 40 * kMiB, 0), 0) << nbd_get_error();
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(nbd_pread(h.get(), back.data(), back.size(), 40 * kMiB, 0), 0) << nbd_get_error();
  EXPECT_EQ(back, data);
}

// --- Commands ---

TEST_F(LibnbdTest, WriteReadRoundTripWithFuaAndFlush) {
  Handle h = open();
  auto data = pattern(1 * kMiB, 1);
  ASSERT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), 1 * kMiB, 0), 0) << nbd_get_error();
  auto fua = pattern(64 * 1024, 2);
  ASSERT_EQ(nbd_pwrite(h.get(), fua.data(), fua.size(), 3 * kMiB, LIBNBD_CMD_FLAG_FUA), 0)
      << nbd_get_error();
  ASSERT_EQ(nbd_flush(h.get(), 0), 0) << nbd_get_error();
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(nbd_pread(h.get(), back.data(), back.size(), 1 * kMiB, 0), 0) << nbd_get_error();
  EXPECT_EQ(back, data);
  back.resize(fua.size());
  ASSERT_EQ(nbd_pread(h.get(), back.data(), back.size(), 3 * kMiB, 0), 0) << nbd_get_error();
  EXPECT_EQ(back, fua);
}

struct ChunkLog {
  std::vector<std::pair<uint64_t, unsigned>> chunks;  // (offset, status)
  uint64_t data_bytes = 0, hole_bytes = 0;
};

int record_chunk(void* user, const void* buf, size_t count, uint64_t offset, unsigned status,
                 int* error) {
  auto* log = static_cast<ChunkLog*>(user);
  log->chunks.emplace_back(offset, status);
  if (status == LIBNBD_READ_DATA) {
    log->data_bytes += count;
  } else if (status == LIBNBD_READ_HOLE) {
    log->hole_bytes += count;
  }
  return 0;
}

TEST_F(LibnbdTest, StructuredReadSendsHolesAsHoles) {
  Handle h = open();
  const uint64_t base = 8 * kMiB;
  ASSERT_EQ(nbd_trim(h.get(), 3 * 4096, base, 0), 0) << nbd_get_error();
  auto data = pattern(4096, 3);
  ASSERT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), base + 4096, 0), 0);
  std::vector<std::byte> back(3 * 4096);
  ChunkLog log;
  ASSERT_EQ(nbd_pread_structured(h.get(), back.data(), back.size(), base,
                                 nbd_chunk_callback{record_chunk, &log, nullptr}, 0),
            0)
      << nbd_get_error();
  ASSERT_EQ(log.chunks.size(), 3u);
  EXPECT_EQ(log.chunks[0], std::make_pair(base, unsigned{LIBNBD_READ_HOLE}));
  EXPECT_EQ(log.chunks[1], std::make_pair(base + 4096, unsigned{LIBNBD_READ_DATA}));
  EXPECT_EQ(log.chunks[2], std::make_pair(base + 8192, unsigned{LIBNBD_READ_HOLE}));
  EXPECT_EQ(log.data_bytes, 4096u);
  EXPECT_EQ(log.hole_bytes, 8192u);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), back.begin() + 4096));
  EXPECT_TRUE(std::all_of(back.begin(), back.begin() + 4096,
                          [](std::byte b) { return b == std::byte{0}; }));

  // With DF the whole range comes back as one data chunk.
  ChunkLog one;
  ASSERT_EQ(
      nbd_pread_structured(h.get(), back.data(), back.size(), base,
                           nbd_chunk_callback{record_chunk, &one, nullptr}, LIBNBD_CMD_FLAG_DF),
      0);
  ASSERT_EQ(one.chunks.size(), 1u);
  EXPECT_EQ(one.data_bytes, back.size());
}

struct ExtentLog {
  std::vector<std::pair<uint32_t, uint32_t>> entries;  // (length, flags)
  std::string context;
};

int record_extents(void* user, const char* context, uint64_t offset, uint32_t* entries,
                   size_t count, int* error) {
  auto* log = static_cast<ExtentLog*>(user);
  log->context = context;
  for (size_t i = 0; i + 1 < count; i += 2) {
    log->entries.emplace_back(entries[i], entries[i + 1]);
  }
  return 0;
}

TEST_F(LibnbdTest, BlockStatusReportsHolesAndData) {
  Handle h = open();
  const uint64_t base = 12 * kMiB;
  ASSERT_EQ(nbd_trim(h.get(), 1 * kMiB, base, 0), 0);
  auto data = pattern(2 * 4096, 4);
  ASSERT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), base + 4096, 0), 0);
  ExtentLog log;
  ASSERT_EQ(nbd_block_status(h.get(), 16 * 4096, base,
                             nbd_extent_callback{record_extents, &log, nullptr}, 0),
            0)
      << nbd_get_error();
  EXPECT_EQ(log.context, "base:allocation");
  ASSERT_EQ(log.entries.size(), 3u);
  EXPECT_EQ(log.entries[0], std::make_pair(4096u, uint32_t{LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO}));
  EXPECT_EQ(log.entries[1], std::make_pair(8192u, 0u));
  EXPECT_EQ(log.entries[2].second, uint32_t{LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO});

  ExtentLog one;
  ASSERT_EQ(
      nbd_block_status(h.get(), 16 * 4096, base + 4096,
                       nbd_extent_callback{record_extents, &one, nullptr}, LIBNBD_CMD_FLAG_REQ_ONE),
      0);
  ASSERT_EQ(one.entries.size(), 1u);
  EXPECT_EQ(one.entries[0], std::make_pair(8192u, 0u));
}

bool all_zero(const std::vector<std::byte>& v) {
  return std::all_of(v.begin(), v.end(), [](std::byte b) { return b == std::byte{0}; });
}

TEST_F(LibnbdTest, TrimZeroAndCache) {
  Handle h = open();
  const uint64_t base = 20 * kMiB;
  auto data = pattern(256 * 1024, 5);
  ASSERT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), base, 0), 0);
  ASSERT_EQ(nbd_cache(h.get(), data.size(), base, 0), 0) << nbd_get_error();

  ASSERT_EQ(nbd_trim(h.get(), 64 * 1024, base, LIBNBD_CMD_FLAG_FUA), 0) << nbd_get_error();
  ASSERT_EQ(nbd_zero(h.get(), 64 * 1024, base + 64 * 1024, LIBNBD_CMD_FLAG_NO_HOLE), 0)
      << nbd_get_error();
  ASSERT_EQ(nbd_zero(h.get(), 64 * 1024, base + 128 * 1024, LIBNBD_CMD_FLAG_FAST_ZERO), 0)
      << nbd_get_error();
  std::vector<std::byte> back(192 * 1024);
  ASSERT_EQ(nbd_pread(h.get(), back.data(), back.size(), base, 0), 0);
  EXPECT_TRUE(all_zero(back));
  back.resize(64 * 1024);
  ASSERT_EQ(nbd_pread(h.get(), back.data(), back.size(), base + 192 * 1024, 0), 0);
  EXPECT_TRUE(std::equal(back.begin(), back.end(), data.begin() + 192 * 1024));

  ExtentLog log;
  ASSERT_EQ(nbd_block_status(h.get(), 64 * 1024, base,
                             nbd_extent_callback{record_extents, &log, nullptr}, 0),
            0);
  ASSERT_FALSE(log.entries.empty());
  EXPECT_EQ(log.entries[0].second, uint32_t{LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO});
}

TEST_F(LibnbdTest, MultiConnFlushCoversTheOtherConnection) {
  Handle a = open();
  Handle b = open();
  auto data = pattern(128 * 1024, 6);
  ASSERT_EQ(nbd_pwrite(a.get(), data.data(), data.size(), 30 * kMiB, 0), 0);
  ASSERT_EQ(nbd_flush(b.get(), 0), 0);
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(nbd_pread(b.get(), back.data(), back.size(), 30 * kMiB, 0), 0);
  EXPECT_EQ(back, data);
}

TEST_F(LibnbdTest, ManyRequestsInFlight) {
  Handle h = open();
  constexpr int kRequests = 300;  // more than max_inflight (128): exercises back-pressure
  std::vector<std::vector<std::byte>> blocks;
  for (int i = 0; i < kRequests; ++i) {
    blocks.push_back(pattern(4096, 100 + i));
    ASSERT_NE(nbd_aio_pwrite(h.get(), blocks.back().data(), 4096, 32 * kMiB + i * 4096ull,
                             NBD_NULL_COMPLETION, 0),
              -1)
        << nbd_get_error();
  }
  while (nbd_aio_in_flight(h.get()) > 0) {
    ASSERT_NE(nbd_poll(h.get(), -1), -1) << nbd_get_error();
  }
  std::vector<std::byte> back(kRequests * 4096ull);
  ASSERT_EQ(nbd_pread(h.get(), back.data(), back.size(), 32 * kMiB, 0), 0);
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(std::equal(blocks[i].begin(), blocks[i].end(), back.begin() + i * 4096)) << i;
  }
}

// --- Errors (strict mode off, so the server sees what libnbd would refuse itself) ---

TEST_F(LibnbdTest, OutOfRangeAndMisalignedRequests) {
  Handle h = open(true, /*strict=*/false);
  std::vector<std::byte> buf(8192);
  EXPECT_EQ(nbd_pread(h.get(), buf.data(), 4096, kVolumeBytes, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EINVAL);
  EXPECT_EQ(nbd_pwrite(h.get(), buf.data(), 8192, kVolumeBytes - 4096, 0), -1);
  EXPECT_EQ(nbd_get_errno(), ENOSPC);
  EXPECT_EQ(nbd_zero(h.get(), 8192, kVolumeBytes - 4096, 0), -1);
  EXPECT_EQ(nbd_get_errno(), ENOSPC);
  EXPECT_EQ(nbd_trim(h.get(), 8192, kVolumeBytes - 4096, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EINVAL);
  EXPECT_EQ(nbd_cache(h.get(), 8192, kVolumeBytes - 4096, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EINVAL);
  // The client asked for block sizes in NBD_OPT_GO, so the 4096-byte minimum is enforced.
  EXPECT_EQ(nbd_pread(h.get(), buf.data(), 512, 512, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EINVAL);
  EXPECT_EQ(nbd_pwrite(h.get(), buf.data(), 4096, 100, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EINVAL);
  // The connection still works.
  EXPECT_EQ(nbd_pread(h.get(), buf.data(), 4096, 0, 0), 0) << nbd_get_error();
}

TEST_F(LibnbdTest, BadFlagsAndOversizedReads) {
  Handle h = open(true, /*strict=*/false);
  std::vector<std::byte> buf(33 * kMiB);
  EXPECT_EQ(nbd_pread(h.get(), buf.data(), 4096, 0, LIBNBD_CMD_FLAG_REQ_ONE), -1);
  EXPECT_EQ(nbd_get_errno(), EINVAL);
  EXPECT_EQ(nbd_flush(h.get(), LIBNBD_CMD_FLAG_NO_HOLE), -1);
  EXPECT_EQ(nbd_get_errno(), EINVAL);
  // Structured: a read over the maximum payload is refused with EOVERFLOW.
  EXPECT_EQ(nbd_pread(h.get(), buf.data(), buf.size(), 0, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EOVERFLOW);
  EXPECT_EQ(nbd_pread(h.get(), buf.data(), 4096, 0, 0), 0) << nbd_get_error();

  Handle simple = open(/*structured=*/false, /*strict=*/false);
  EXPECT_EQ(nbd_pread(simple.get(), buf.data(), buf.size(), 0, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EINVAL);
  EXPECT_EQ(nbd_pread(simple.get(), buf.data(), 4096, 0, 0), 0) << nbd_get_error();
}

}  // namespace
}  // namespace cairn::test
