// The part of a libFuzzer target for a front end that does not depend on the protocol: an
// in-memory byte stream fed from the fuzz input, and a node (one reactor, in-memory chunk and
// meta stores, a volume manager) that the input's connection is served against.
//
// Threading: everything runs on the fuzzer's thread, which drives the single reactor's context
// itself (FuzzNode::run); no other thread touches a FuzzNode or a MemStream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "base/asio.h"
#include "base/assert.h"
#include "base/log.h"
#include "blockmap/volume_manager.h"
#include "io/chunk_hash.h"
#include "io/mem_chunk_store.h"
#include "io/mem_meta_store.h"
#include "io/reactor.h"
#include "target/nbd/byte_stream.h"

namespace cairn::fuzz {

// Reads come from the fuzz input; running out is end of stream. Writes are counted and
// dropped. Single-threaded, completes every operation without suspending. The input is
// borrowed for the stream's lifetime.
class MemStream final : public target::nbd::ByteStream {
 public:
  explicit MemStream(std::span<const std::byte> input) : input_(input) {}

  Task<std::error_code> read(std::span<std::byte> buffer) override;
  Task<std::error_code> write(std::span<const asio::const_buffer> buffers) override;
  void close() noexcept override { closed_ = true; }
  [[nodiscard]] const std::string& peer() const noexcept override { return peer_; }

 private:
  std::span<const std::byte> input_;
  std::size_t pos_ = 0;
  uint64_t written_ = 0;
  bool closed_ = false;
  std::string peer_ = "fuzz";
};

// The node the inputs talk to: one reactor (run by the fuzzer's thread) over in-memory stores.
// Owns everything it holds; volumes live until the process exits.
struct FuzzNode {
  std::vector<std::byte> key = std::vector<std::byte>(32, std::byte{1});
  io::ChunkHasher hasher{io::ChunkHasher::Kind::xxh3, key};
  io::ReactorPool reactors{1, 8};
  io::MemChunkStore store{hasher};
  io::MemMetaStore meta;
  blockmap::VolumeManager volumes{reactors, store, meta};

  // A volume config with the fields every fuzz volume sets; the caller adds the rest.
  static blockmap::VolumeConfig config(const char* name, uint64_t size_bytes, bool read_only,
                                       uint32_t block_size_bytes, uint32_t chunk_size_bytes);
  // Creates a volume; failing to is a broken harness, so it asserts.
  void create(const blockmap::VolumeConfig& config);

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

// The one World of a fuzz target, built on first use and never destroyed (libFuzzer exits
// without running it down). Bad input is logged at warn; the level is raised to keep the
// fuzzer's output readable.
template <class World>
World& world() {
  static World* w = [] {
    log::set_level(log::Level::error);
    return new World();
  }();
  return *w;
}

}  // namespace cairn::fuzz
