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
#include <span>

#include "target/nbd/handshake.h"
#include "target/nbd/transmission.h"
#include "tests/fuzz/harness.h"

namespace cairn::fuzz {
namespace {

namespace nbd = target::nbd;

// The node the inputs talk to: three volumes of different geometry, one read-only.
struct World {
  FuzzNode node;

  World() {
    add("fuzz", 1 << 20, false, 4096, 4096);
    add("ro", 64 << 10, true, 4096, 4096);
    add("small", 256 << 10, false, 512, 16384);
  }

  void add(const char* name, uint64_t size, bool read_only, uint32_t block, uint32_t chunk) {
    blockmap::VolumeConfig c = FuzzNode::config(name, size, read_only, block, chunk);
    c.description = "fuzz volume";
    node.create(c);
  }
};

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
  World& w = world<World>();
  MemStream stream(std::as_bytes(std::span<const uint8_t>(data, size)));
  w.node.run([&] { return serve(stream, w.node.volumes); });
  return 0;
}
