// libFuzzer target for the NBD server's input: the bytes a client sends, fed through the real
// handshake (negotiate()) and the real transmission loop (Transmission) over an in-memory
// stream, against in-memory volumes. Whatever the input, nothing may crash, hang, leak or
// trip a sanitizer; the server's replies are discarded.
//
// Build: cmake --preset fuzz -B build/fuzz && ninja -C build/fuzz nbd_fuzz
// Run:   UBSAN_OPTIONS=halt_on_error=1 build/fuzz/tests/fuzz/nbd_fuzz -max_total_time=60 \
//          -dict=tests/fuzz/nbd.dict build/fuzz/corpus-nbd tests/fuzz/corpus/nbd
// (tests/fuzz/run_nbd_fuzz.sh does exactly this and fails on any finding.)
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
#include "target/nbd/handshake.h"
#include "target/nbd/transmission.h"

namespace cairn::fuzz {
namespace {

namespace nbd = target::nbd;

// Reads come from the fuzz input; running out is end of stream. Writes are counted and
// dropped. Single-threaded, completes every operation without suspending.
class MemStream final : public nbd::ByteStream {
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

// The node the inputs talk to: one reactor (run by this thread), three volumes.
struct World {
  std::vector<std::byte> key = std::vector<std::byte>(32, std::byte{1});
  io::ChunkHasher hasher{io::ChunkHasher::Kind::xxh3, key};
  io::ReactorPool reactors{1, 8};
  io::MemChunkStore store{hasher};
  io::MemMetaStore meta;
  blockmap::VolumeManager volumes{reactors, store, meta};

  World() {
    add("fuzz", 1 << 20, false, 4096, 4096);
    add("ro", 64 << 10, true, 4096, 4096);
    add("small", 256 << 10, false, 512, 16384);
  }

  void add(const char* name, uint64_t size, bool read_only, uint32_t block, uint32_t chunk) {
    blockmap::VolumeConfig c;
    c.name = name;
    c.size_bytes = size;
    c.read_only = read_only;
    c.block_size_bytes = block;
    c.chunk_size_bytes = chunk;
    c.description = "fuzz volume";
    bool ok = false;
    run([&]() -> Task<void> { ok = static_cast<bool>(co_await volumes.create(c)); });
    CAIRN_ASSERT(ok);
  }

  // Runs `make()`'s task on the reactor's context until it completes.
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
    log::set_level(log::Level::error);  // bad input is logged at warn; keep the output readable
    return new World();
  }();
  return *w;
}

Task<void> serve(MemStream& stream, blockmap::VolumeManager& volumes) {
  auto negotiated = co_await nbd::negotiate(stream, volumes);
  if (!negotiated) {
    co_return;
  }
  blockmap::Volume& volume = *negotiated->volume;
  negotiated->session.size_bytes = volume.size_bytes();
  {
    nbd::Transmission transmission(stream, volume, negotiated->session, 8);
    co_await transmission.run();
  }
  volumes.release(&volume);
}

}  // namespace
}  // namespace cairn::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cairn::fuzz;
  World& w = world();
  MemStream stream(std::as_bytes(std::span<const uint8_t>(data, size)));
  w.run([&] { return serve(stream, w.volumes); });
  return 0;
}
