#include "tools/node.h"

#include <sodium.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "base/log.h"
#include "blockmap/errors.h"
#include "blockmap/volume_manager.h"
#include "io/chunk_hash.h"
#include "io/mem_chunk_store.h"
#include "io/mem_meta_store.h"
#include "io/reactor.h"
#include "target/nbd/server.h"
#include "tools/admin_server.h"

namespace cairn {
namespace {

// The cluster secret that keys chunk addresses. Created once per data directory.
std::vector<std::byte> load_or_create_secret(const std::filesystem::path& dir) {
  std::filesystem::path path = dir / "cluster.key";
  std::vector<std::byte> key(32);
  if (std::ifstream in(path, std::ios::binary); in) {
    in.read(reinterpret_cast<char*>(key.data()), static_cast<std::streamsize>(key.size()));
    if (in.gcount() == static_cast<std::streamsize>(key.size())) {
      return key;
    }
    throw std::runtime_error("cluster key " + path.string() + " is truncated");
  }
  randombytes_buf(key.data(), key.size());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(key.data()), static_cast<std::streamsize>(key.size()));
  if (!out) {
    throw std::runtime_error("cannot write cluster key " + path.string());
  }
  return key;
}

Task<void> start_volumes(blockmap::VolumeManager& volumes, const NodeOptions& options, bool& ok) {
  auto loaded = co_await volumes.load();
  if (!loaded) {
    CAIRN_LOG(error, "node", "cannot load volumes: {}", loaded.error().message());
    ok = false;
    co_return;
  }
  if (!options.demo_volume.empty()) {
    blockmap::VolumeConfig demo;
    demo.name = options.demo_volume;
    demo.size_bytes = options.demo_size_bytes;
    demo.description = "cairn demo volume";
    auto created = co_await volumes.create(demo);
    if (!created && created.error() != blockmap::errc::already_exists) {
      CAIRN_LOG(error, "node", "cannot create demo volume '{}': {}", demo.name,
                created.error().message());
      ok = false;
      co_return;
    }
  }
  ok = true;
}

}  // namespace

int run_node(const Config& config, const NodeOptions& options) {
  try {
    if (sodium_init() < 0) {
      throw std::runtime_error("libsodium failed to initialize");
    }
    std::filesystem::create_directories(config.data_dir);
    auto secret = load_or_create_secret(config.data_dir);
    io::ChunkHasher hasher(config.address_hash == "blake2b" ? io::ChunkHasher::Kind::blake2b
                                                            : io::ChunkHasher::Kind::xxh3,
                           secret);
    io::ReactorPool reactors(config.reactors, config.disk_queue_depth);
    io::MemChunkStore store(hasher);
    io::MemMetaStore meta;
    blockmap::VolumeManager volumes(reactors, store, meta);

    target::nbd::ServerOptions nbd_options;
    nbd_options.address = config.nbd_address;
    nbd_options.port = config.nbd_port;
    nbd_options.unix_path = config.nbd_socket;
    nbd_options.max_inflight = config.nbd_max_inflight;
    target::nbd::Server nbd(reactors, volumes, nbd_options);
    AdminOptions admin_options;
    admin_options.address = config.admin_address;
    admin_options.port = config.admin_port;
    AdminServer admin(reactors.at(0), volumes, store, metrics::Registry::global(), admin_options);

    asio::io_context& main = reactors.at(0).context();
    asio::signal_set signals(main, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int signo) {
      if (ec) {
        return;
      }
      CAIRN_LOG(info, "node", "signal {}: stopping", signo);
      nbd.stop();
      admin.stop();
      reactors.stop();
    });

    bool volumes_ok = false;
    asio::co_spawn(main, start_volumes(volumes, options, volumes_ok), [&](std::exception_ptr e) {
      if (e || !volumes_ok) {
        reactors.stop();
        return;
      }
      try {
        nbd.start();
      } catch (const std::system_error& err) {
        CAIRN_LOG(error, "node", "cannot listen for NBD on {}:{}: {}", nbd_options.address,
                  nbd_options.port, err.what());
        volumes_ok = false;
        reactors.stop();
        return;
      }
      try {
        admin.start();
      } catch (const std::exception& err) {
        CAIRN_LOG(error, "node", "cannot listen for the admin API on {}:{}: {}",
                  admin_options.address, admin_options.port, err.what());
        volumes_ok = false;
        reactors.stop();
        return;
      }
      CAIRN_LOG(info, "node", "serving {} volume(s); NBD on {}:{}", volumes.list().size(),
                nbd_options.address, nbd_options.port);
    });
    reactors.start();
    reactors.run();
    reactors.stop();
    reactors.join();
    return volumes_ok ? 0 : 1;
  } catch (const std::exception& e) {
    CAIRN_LOG(error, "node", "start-up failed: {}", e.what());
    return 1;
  }
}

}  // namespace cairn
