// nbd::Server in-process, with volumes the demo flag cannot make: a read-only export, several
// exports with descriptions, a 512-byte-block volume, the Unix socket, and a taken port.
#include <errno.h>
#include <gtest/gtest.h>
#include <libnbd.h>

#include <future>
#include <string>
#include <thread>
#include <vector>

#include "blockmap/volume_manager.h"
#include "io/chunk_hash.h"
#include "io/mem_chunk_store.h"
#include "io/mem_meta_store.h"
#include "io/reactor.h"
#include "target/nbd/server.h"
#include "tests/nbd/cairnd_process.h"
#include "tests/test_util.h"

namespace cairn::test {
namespace {

namespace nbd = target::nbd;

const std::vector<std::byte> kKey(32, std::byte{7});

// A node without tools/: two reactors, in-memory stores, the volume manager and the server.
class InProcessNode {
 public:
  explicit InProcessNode(nbd::ServerOptions options)
      : hasher_(io::ChunkHasher::Kind::xxh3, kKey),
        reactors_(2, 64),
        store_(hasher_),
        volumes_(reactors_, store_, meta_) {
    reactors_.start();
    main_ = std::thread([this] { reactors_.run(); });
    create("alpha", 16 << 20, false, "the first volume");
    create("ro", 16 << 20, true, "read only");
    create("small", 8 << 20, false, "", 512, 65536);
    server_ = std::make_unique<nbd::Server>(reactors_, volumes_, std::move(options));
    on_main([this] { server_->start(); });
  }

  ~InProcessNode() {
    on_main([this] { server_->stop(); });
    reactors_.stop();
    main_.join();
    reactors_.join();
  }

  InProcessNode(const InProcessNode&) = delete;
  InProcessNode& operator=(const InProcessNode&) = delete;

  [[nodiscard]] io::ReactorPool& reactors() noexcept { return reactors_; }
  [[nodiscard]] blockmap::VolumeManager& volumes() noexcept { return volumes_; }

  // Runs `fn` on reactor 0 (the "main thread" of Server's contract) and rethrows its error.
  template <class Fn>
  void on_main(Fn fn) {
    std::promise<void> done;
    asio::post(reactors_.at(0).context(), [&] {
      try {
        fn();
        done.set_value();
      } catch (...) {
        done.set_exception(std::current_exception());
      }
    });
    done.get_future().get();
  }

 private:
  void create(std::string name, uint64_t size, bool read_only, std::string description,
              uint32_t block = 4096, uint32_t chunk = 4096) {
    blockmap::VolumeConfig c;
    c.name = std::move(name);
    c.size_bytes = size;
    c.read_only = read_only;
    c.description = std::move(description);
    c.block_size_bytes = block;
    c.chunk_size_bytes = chunk;
    auto f = asio::co_spawn(reactors_.at(0).context(), volumes_.create(c), asio::use_future);
    auto r = f.get();
    ASSERT_TRUE(r) << r.error().message();
  }

  io::ChunkHasher hasher_;
  io::ReactorPool reactors_;
  io::MemChunkStore store_;
  io::MemMetaStore meta_;
  blockmap::VolumeManager volumes_;
  std::unique_ptr<nbd::Server> server_;
  std::thread main_;
};

class InProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = free_port();
    unix_path_ = "/tmp/cairn-nbd-test-" + std::to_string(::getpid()) + ".sock";
    nbd::ServerOptions options;
    options.address = "127.0.0.1";
    options.port = port_;
    options.unix_path = unix_path_;
    options.max_inflight = 4;  // small, so back-pressure is exercised
    node_ = std::make_unique<InProcessNode>(options);
  }

  nbd_handle* connect(const std::string& name, bool strict = true) {
    nbd_handle* h = nbd_create();
    EXPECT_EQ(nbd_set_strict_mode(h, strict ? LIBNBD_STRICT_MASK : 0), 0);
    std::string uri = "nbd://127.0.0.1:" + std::to_string(port_) + "/" + name;
    EXPECT_EQ(nbd_connect_uri(h, uri.c_str()), 0) << nbd_get_error();
    return h;
  }

  uint16_t port_ = 0;
  std::string unix_path_;
  std::unique_ptr<InProcessNode> node_;
};

TEST_F(InProcessTest, ReadOnlyExportRefusesWritesWithEperm) {
  nbd_handle* h = connect("ro", /*strict=*/false);
  EXPECT_EQ(nbd_is_read_only(h), 1);
  EXPECT_EQ(nbd_can_trim(h), 0);
  EXPECT_EQ(nbd_can_zero(h), 0);
  std::vector<char> buf(4096, 'w');
  EXPECT_EQ(nbd_pwrite(h, buf.data(), buf.size(), 0, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EPERM);
  EXPECT_EQ(nbd_trim(h, 4096, 0, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EPERM);
  EXPECT_EQ(nbd_zero(h, 4096, 0, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EPERM);
  EXPECT_EQ(nbd_pread(h, buf.data(), buf.size(), 0, 0), 0) << nbd_get_error();
  EXPECT_EQ(buf, std::vector<char>(4096, 0));
  EXPECT_EQ(nbd_flush(h, 0), 0);
  nbd_close(h);
}

TEST_F(InProcessTest, ListsEveryExportWithDescriptions) {
  nbd_handle* h = nbd_create();
  ASSERT_EQ(nbd_set_opt_mode(h, 1), 0);
  std::string uri = "nbd://127.0.0.1:" + std::to_string(port_) + "/";
  ASSERT_EQ(nbd_connect_uri(h, uri.c_str()), 0) << nbd_get_error();
  std::vector<std::pair<std::string, std::string>> exports;
  auto cb = [](void* user, const char* name, const char* description) {
    static_cast<decltype(exports)*>(user)->emplace_back(name, description);
    return 0;
  };
  ASSERT_EQ(nbd_opt_list(h, nbd_list_callback{cb, &exports, nullptr}), 3) << nbd_get_error();
  ASSERT_EQ(exports.size(), 3u);
  EXPECT_EQ(exports[0], std::make_pair(std::string("alpha"), std::string("the first volume")));
  EXPECT_EQ(exports[1], std::make_pair(std::string("ro"), std::string("read only")));
  EXPECT_EQ(exports[2].first, "small");
  // The default export (empty name) is the first volume.
  ASSERT_EQ(nbd_opt_go(h), 0) << nbd_get_error();
  EXPECT_EQ(nbd_get_size(h), 16 << 20);
  EXPECT_EQ(nbd_is_read_only(h), 0);
  nbd_close(h);
}

TEST_F(InProcessTest, BlockSizesFollowTheVolume) {
  nbd_handle* h = connect("small");
  EXPECT_EQ(nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM), 512);
  EXPECT_EQ(nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED), 65536);
  auto data = pattern(1536, 9);
  ASSERT_EQ(nbd_pwrite(h, data.data(), data.size(), 512, 0), 0) << nbd_get_error();
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(nbd_pread(h, back.data(), back.size(), 512, 0), 0) << nbd_get_error();
  EXPECT_EQ(back, data);
  nbd_close(h);
}

TEST_F(InProcessTest, UnixSocketServesTheSameVolumes) {
  nbd_handle* h = nbd_create();
  ASSERT_EQ(nbd_set_export_name(h, "alpha"), 0);
  ASSERT_EQ(nbd_connect_unix(h, unix_path_.c_str()), 0) << nbd_get_error();
  auto data = pattern(8192, 10);
  ASSERT_EQ(nbd_pwrite(h, data.data(), data.size(), 4096, 0), 0) << nbd_get_error();
  nbd_close(h);
  // ... and TCP sees the write.
  h = connect("alpha");
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(nbd_pread(h, back.data(), back.size(), 4096, 0), 0);
  EXPECT_EQ(back, data);
  nbd_close(h);
}

TEST_F(InProcessTest, BackPressureWithManyRequests) {
  nbd_handle* h = connect("alpha");
  std::vector<std::vector<std::byte>> blocks;
  for (int i = 0; i < 64; ++i) {
    blocks.push_back(pattern(4096, 200 + i));
    ASSERT_NE(nbd_aio_pwrite(h, blocks.back().data(), 4096, i * 4096ull, NBD_NULL_COMPLETION, 0),
              -1);
  }
  while (nbd_aio_in_flight(h) > 0) {
    ASSERT_NE(nbd_poll(h, -1), -1) << nbd_get_error();
  }
  std::vector<std::byte> back(64 * 4096);
  ASSERT_EQ(nbd_pread(h, back.data(), back.size(), 0, 0), 0);
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(std::equal(blocks[i].begin(), blocks[i].end(), back.begin() + i * 4096)) << i;
  }
  nbd_close(h);
}

TEST_F(InProcessTest, TakenPortIsAClearError) {
  nbd::ServerOptions options;
  options.address = "127.0.0.1";
  options.port = port_;
  nbd::Server second(node_->reactors(), node_->volumes(), options);
  try {
    node_->on_main([&] { second.start(); });
    FAIL() << "start() on a taken port succeeded";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("already in use"), std::string::npos) << e.what();
  }
  node_->on_main([&] { second.stop(); });
}

}  // namespace
}  // namespace cairn::test
