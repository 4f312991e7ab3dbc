// libFuzzer target for the iSCSI target's input: the bytes an initiator sends, fed through the
// real login phase (login()) and the real full feature phase (Session, on a real scsi::Device)
// over an in-memory stream, against in-memory volumes (one of them with CHAP). Whatever the
// input, nothing may crash, hang, leak or trip a sanitizer; the target's PDUs are discarded.
//
// Build: cmake --preset fuzz -B build/fuzz && ninja -C build/fuzz iscsi_fuzz
// Run:   tests/fuzz/run_iscsi_fuzz.sh build/fuzz 60
// The seed corpus (tests/fuzz/corpus/iscsi) is written by tests/fuzz/make_iscsi_corpus.py.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "base/assert.h"
#include "base/log.h"
#include "blockmap/volume_manager.h"
#include "io/chunk_hash.h"
#include "io/mem_chunk_store.h"
#include "io/mem_meta_store.h"
#include "io/reactor.h"
#include "target/iscsi/login.h"
#include "target/iscsi/session.h"
#include "target/scsi/device.h"

namespace cairn::fuzz {
namespace {

namespace iscsi = target::iscsi;
namespace scsi = target::scsi;

// Reads come from the fuzz input; running out is end of stream. Writes are dropped.
class MemStream final : public target::nbd::ByteStream {
 public:
  explicit MemStream(std::span<const std::byte> input) : input_(input) {}

  Task<std::error_code> read(std::span<std::byte> buffer) override {
    if (closed_ || input_.size() - pos_ < buffer.size()) {
      pos_ = input_.size();
      co_return make_error_code(asio::error::eof);
    }
    if (!buffer.empty()) {
      std::memcpy(buffer.data(), input_.data() + pos_, buffer.size());
      pos_ += buffer.size();
    }
    co_return std::error_code{};
  }

  Task<std::error_code> write(std::span<const asio::const_buffer> buffers) override {
    if (closed_) {
      co_return make_error_code(asio::error::broken_pipe);
    }
    for (const auto& b : buffers) {
      written_ += b.size();
    }
    co_return std::error_code{};
  }

  void close() noexcept override { closed_ = true; }
  [[nodiscard]] const std::string& peer() const noexcept override { return peer_; }

 private:
  std::span<const std::byte> input_;
  std::size_t pos_ = 0;
  uint64_t written_ = 0;
  bool closed_ = false;
  std::string peer_ = "fuzz";
};

struct World {
  std::vector<std::byte> key = std::vector<std::byte>(32, std::byte{1});
  io::ChunkHasher hasher{io::ChunkHasher::Kind::xxh3, key};
  io::ReactorPool reactors{1, 8};
  io::MemChunkStore store{hasher};
  io::MemMetaStore meta;
  blockmap::VolumeManager volumes{reactors, store, meta};
  iscsi::VolumeDirectory directory{volumes};
  iscsi::TargetOptions target;
  iscsi::SessionOptions session;

  World() {
    target.queue_depth = 8;
    target.limits.max_recv_data_segment = 16384;
    session.queue_depth = 8;
    session.nop_interval = std::chrono::seconds(0);
    session.max_command_bytes = 1 << 20;
    add("fuzz", 1 << 20, false, 512, 4096, {});
    add("ro", 64 << 10, true, 4096, 4096, {});
    blockmap::VolumeAccess chap;
    chap.chap_user = "user";
    chap.chap_secret = "secretsecret";
    chap.mutual_user = "target";
    chap.mutual_secret = "othersecret1";
    chap.initiators = {"iqn.2026-11.io.fuzz:init"};
    add("chap", 64 << 10, false, 4096, 4096, chap);
  }

  void add(const char* name, uint64_t size, bool read_only, uint32_t block, uint32_t chunk,
           const blockmap::VolumeAccess& access) {
    blockmap::VolumeConfig c;
    c.name = name;
    c.size_bytes = size;
    c.read_only = read_only;
    c.block_size_bytes = block;
    c.chunk_size_bytes = chunk;
    c.access = access;
    bool ok = false;
    run([&]() -> Task<void> { ok = static_cast<bool>(co_await volumes.create(c)); });
    CAIRN_ASSERT(ok);
  }

  template <class Make>
  void run(Make make) {
    bool done = false;
    asio::io_context& context = reactors.at(0).context();
    asio::co_spawn(context, make(), [&](std::exception_ptr e) {
      CAIRN_ASSERT(!e);
      done = true;
    });
    context.restart();
    while (!done && context.run_one() > 0) {
    }
    CAIRN_ASSERT(done);
  }
};

World& world() {
  static World* w = [] {
    log::set_level(log::Level::error);
    return new World();
  }();
  return *w;
}

Task<void> serve(MemStream& stream, World& w) {
  blockmap::Volume* volume = nullptr;
  std::function<bool(const iscsi::LoginResult&)> admit = [&](const iscsi::LoginResult& r) {
    if (r.discovery) {
      return true;
    }
    volume = w.volumes.acquire(r.volume);
    return volume != nullptr;
  };
  auto result = co_await iscsi::login(stream, w.target, w.directory, "127.0.0.1:3260", admit);
  auto executor = co_await asio::this_coro::executor;
  if (!result) {
    if (volume != nullptr) {
      w.volumes.release(volume);
    }
    co_return;
  }
  if (result->discovery) {
    iscsi::Session session(stream, executor, *result, nullptr, {}, w.target, w.directory,
                           "127.0.0.1:3260", w.session);
    co_await session.run();
    co_return;
  }
  scsi::DeviceOptions options;
  auto device = co_await scsi::Device::open(*volume, w.meta, options);
  if (device) {
    scsi::Nexus nexus;
    nexus.id = 1;
    nexus.initiator_name = result->initiator_name;
    nexus.initiator_port = result->initiator_name + ",i,0x000000000001";
    nexus.target_port = result->target_name + ",t,0x0001";
    (*device)->attach(nexus);
    {
      iscsi::Session session(stream, executor, *result, device->get(), nexus, w.target, w.directory,
                             "127.0.0.1:3260", w.session);
      co_await session.run();
    }
    (*device)->detach(nexus);
  }
  w.volumes.release(volume);
}

}  // namespace
}  // namespace cairn::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cairn::fuzz;
  World& w = world();
  MemStream stream(std::as_bytes(std::span<const uint8_t>(data, size)));
  w.run([&] { return serve(stream, w); });
  return 0;
}
