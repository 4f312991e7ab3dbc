// libFuzzer target for the iSCSI target's input: the bytes an initiator sends, fed through the
// real login phase (login()) and the real full feature phase (Session, on a real scsi::Device)
// over an in-memory stream, against in-memory volumes (one of them with CHAP). Whatever the
// input, nothing may crash, hang, leak or trip a sanitizer; the target's PDUs are discarded.
//
// Build: cmake --preset fuzz -B build/fuzz && ninja -C build/fuzz iscsi_fuzz
// Run:   tests/fuzz/run_iscsi_fuzz.sh build/fuzz 60
// The seed corpus (tests/fuzz/corpus/iscsi) is written by tests/fuzz/make_iscsi_corpus.py.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "target/iscsi/login.h"
#include "target/iscsi/session.h"
#include "target/scsi/device.h"
#include "tests/fuzz/harness.h"

namespace cairn::fuzz {
namespace {

namespace iscsi = target::iscsi;
namespace scsi = target::scsi;

// The node the inputs talk to: three volumes (one of them with CHAP) and the iSCSI target's
// settings.
struct World {
  FuzzNode node;
  iscsi::VolumeDirectory directory{node.volumes};
  iscsi::TargetOptions target;
  iscsi::SessionOptions session;

  World() {
    target.queue_depth = 8;
    target.limits.max_recv_data_segment = 16384;
    session.queue_depth = 8;
    session.nop_interval = std::chrono::seconds(0);
    session.max_command_bytes = 1 << 20;
    node.create(FuzzNode::config("fuzz", 1 << 20, false, 512, 4096));
    node.create(FuzzNode::config("ro", 64 << 10, true, 4096, 4096));
    blockmap::VolumeConfig chap = FuzzNode::config("chap", 64 << 10, false, 4096, 4096);
    chap.access.chap_user = "user";
    chap.access.chap_secret = "secretsecret";
    chap.access.mutual_user = "target";
    chap.access.mutual_secret = "othersecret1";
    chap.access.initiators = {"iqn.2026-11.io.fuzz:init"};
    node.create(chap);
  }
};

Task<void> serve(MemStream& stream, World& w) {
  blockmap::Volume* volume = nullptr;
  std::function<bool(const iscsi::LoginResult&)> admit = [&](const iscsi::LoginResult& r) {
    if (r.discovery) {
      return true;
    }
    volume = w.node.volumes.acquire(r.volume);
    return volume != nullptr;
  };
  auto result = co_await iscsi::login(stream, w.target, w.directory, "127.0.0.1:3260", admit);
  auto executor = co_await asio::this_coro::executor;
  if (!result) {
    if (volume != nullptr) {
      w.node.volumes.release(volume);
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
  auto device = co_await scsi::Device::open(*volume, w.node.meta, options);
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
  w.node.volumes.release(volume);
}

}  // namespace
}  // namespace cairn::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cairn::fuzz;
  World& w = world<World>();
  MemStream stream(std::as_bytes(std::span<const uint8_t>(data, size)));
  w.node.run([&] { return serve(stream, w); });
  return 0;
}
