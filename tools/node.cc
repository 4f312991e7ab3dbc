#include "tools/node.h"

#include <sodium.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "base/log.h"
#include "blockmap/errors.h"
#include "blockmap/volume_manager.h"
#include "io/chunk_hash.h"
#include "io/dir_log_factory.h"
#include "io/local_chunk_store.h"
#include "io/local_meta_store.h"
#include "io/reactor.h"
#include "target/iscsi/server.h"
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

// Everything a running node owns, built on reactor 0 by start_node() and torn down in
// reverse order by run_node().
struct NodeParts {
  std::unique_ptr<io::LocalMetaStore> meta;
  std::unique_ptr<io::LocalChunkStore> store;
  std::unique_ptr<io::DirLogFactory> volume_logs;
  std::unique_ptr<blockmap::VolumeManager> volumes;
  std::unique_ptr<target::nbd::Server> nbd;
  std::unique_ptr<target::iscsi::Server> iscsi;
  std::unique_ptr<AdminServer> admin;
};

// Opens the durable stores under config.data_dir on reactor 0:
//   meta.log            the metadata store (volume configs, map roots)
//   chunks.data         chunk data (O_DIRECT; or store.data_path, which may be a raw
//                       block device), chunks-index.tbl its index table and
//                       chunks-index.log the index journal
//   volumes/<name>.log  each volume's map journal
Task<Result<void>> open_stores(const Config& config, const io::ChunkHasher& hasher,
                               io::Reactor& reactor, NodeParts& parts) {
  std::filesystem::path dir(config.data_dir);
  io::DirLogFactory::Options log_options;
  log_options.capacity_bytes = config.volume_journal_bytes;  // the metadata store is small
  log_options.allow_buffered = config.allow_buffered_io;
  io::DirLogFactory meta_logs(dir.string(), log_options, &reactor.disk());
  auto meta_log = co_await meta_logs.open("meta");
  if (!meta_log) {
    CAIRN_LOG(error, "node", "cannot open {}/meta.log: {}", dir.string(),
              meta_log.error().message());
    co_return meta_log.error();
  }
  auto meta = co_await io::LocalMetaStore::open(std::move(*meta_log), reactor.executor());
  if (!meta) {
    CAIRN_LOG(error, "node", "cannot open the metadata store: {}", meta.error().message());
    co_return meta.error();
  }
  parts.meta = std::move(*meta);

  io::LocalChunkStore::Options store_options;
  store_options.owner = reactor.executor();
  store_options.grow_step_bytes = config.data_grow_bytes;
  store_options.max_capacity_bytes = config.data_max_bytes;
  store_options.max_fragmented_percent = config.max_fragmented_percent;
  store_options.write_behind_puts = config.write_behind_puts;
  store_options.cache_bytes = config.read_cache_bytes;
  store_options.index_cache_bytes = config.index_cache_bytes;
  io::LocalChunkStore::DirOptions dir_options;
  dir_options.data_path = config.data_path;
  dir_options.data_capacity_bytes = config.data_initial_bytes;
  dir_options.journal_capacity_bytes = config.journal_bytes;
  dir_options.allow_buffered = config.allow_buffered_io;
  dir_options.ring = &reactor.disk();
  auto store =
      co_await io::LocalChunkStore::open_dir(dir.string(), hasher, store_options, dir_options);
  if (!store) {
    CAIRN_LOG(error, "node", "cannot open the chunk store in {}: {}", dir.string(),
              store.error().message());
    co_return store.error();
  }
  parts.store = std::move(*store);

  std::filesystem::create_directories(dir / "volumes");
  io::DirLogFactory::Options volume_log_options;
  volume_log_options.capacity_bytes = config.volume_journal_bytes;
  volume_log_options.allow_buffered = config.allow_buffered_io;
  // No ring: each volume's journal uses the ring of the reactor that owns the volume.
  parts.volume_logs =
      std::make_unique<io::DirLogFactory>((dir / "volumes").string(), volume_log_options);
  co_return Result<void>{};
}

Task<bool> start_node(const Config& config, const NodeOptions& options,
                      const io::ChunkHasher& hasher, io::ReactorPool& reactors, NodeParts& parts) {
  if (auto opened = co_await open_stores(config, hasher, reactors.at(0), parts); !opened) {
    co_return false;
  }
  parts.volumes = std::make_unique<blockmap::VolumeManager>(
      reactors, *parts.store, *parts.meta, parts.volume_logs.get(), config.map_cache_bytes);
  bool ok = false;
  co_await start_volumes(*parts.volumes, options, ok);
  if (!ok) {
    co_return false;
  }
  target::nbd::ServerOptions nbd_options;
  nbd_options.address = config.nbd_address;
  nbd_options.port = config.nbd_port;
  nbd_options.unix_path = config.nbd_socket;
  nbd_options.max_inflight = config.nbd_max_inflight;
  parts.nbd = std::make_unique<target::nbd::Server>(reactors, *parts.volumes, nbd_options);
  try {
    parts.nbd->start();
  } catch (const std::system_error& err) {
    CAIRN_LOG(error, "node", "cannot listen for NBD on {}:{}: {}", nbd_options.address,
              nbd_options.port, err.what());
    co_return false;
  }
  std::string iscsi_listen = "off";
  if (config.iscsi_enabled) {
    target::iscsi::ServerOptions iscsi_options;
    iscsi_options.address = config.iscsi_address;
    iscsi_options.port = config.iscsi_port;
    iscsi_options.target.iqn_prefix = config.iscsi_iqn_prefix;
    iscsi_options.target.portal = config.iscsi_portal;
    iscsi_options.target.queue_depth = config.iscsi_queue_depth;
    iscsi_options.session.queue_depth = config.iscsi_queue_depth;
    iscsi_options.session.nop_interval = std::chrono::seconds(config.iscsi_nop_interval_s);
    iscsi_options.device.sanitize_bytes_per_second = config.iscsi_sanitize_rate;
    parts.iscsi = std::make_unique<target::iscsi::Server>(reactors, *parts.volumes, *parts.meta,
                                                          iscsi_options);
    try {
      parts.iscsi->start();
    } catch (const std::system_error& err) {
      CAIRN_LOG(error, "node", "cannot listen for iSCSI on {}:{}: {}", iscsi_options.address,
                iscsi_options.port, err.what());
      co_return false;
    }
    iscsi_listen = iscsi_options.address + ":" + std::to_string(iscsi_options.port);
  }
  AdminOptions admin_options;
  admin_options.address = config.admin_address;
  admin_options.port = config.admin_port;
  parts.admin = std::make_unique<AdminServer>(reactors.at(0), *parts.volumes, *parts.store,
                                              metrics::Registry::global(), admin_options);
  try {
    parts.admin->start();
  } catch (const std::exception& err) {
    CAIRN_LOG(error, "node", "cannot listen for the admin API on {}:{}: {}", admin_options.address,
              admin_options.port, err.what());
    co_return false;
  }
  CAIRN_LOG(info, "node", "serving {} volume(s) from {}; NBD on {}:{}, iSCSI on {}, admin on {}:{}",
            parts.volumes->list().size(), config.data_dir, nbd_options.address, nbd_options.port,
            iscsi_listen, admin_options.address, admin_options.port);
  co_return true;
}

// How long a stopping node waits for its NBD connections and iSCSI sessions to end.
constexpr auto kConnectionDrainTime = std::chrono::seconds(10);

// After the servers' stop(): waits until every connection and session has ended on its own
// reactor (they were told to end), so that the reactors stop with none of them suspended, as
// nbdkit and tgt close their clients before they exit. Bounded: a connection that does not end
// in time is destroyed with the reactors (ReactorPool::shutdown).
Task<void> wait_for_connections(const NodeParts& parts) {
  auto idle = [&] {
    return (!parts.nbd || parts.nbd->idle()) && (!parts.iscsi || parts.iscsi->idle());
  };
  asio::steady_timer tick(co_await asio::this_coro::executor);
  const auto deadline = std::chrono::steady_clock::now() + kConnectionDrainTime;
  while (!idle() && std::chrono::steady_clock::now() < deadline) {
    tick.expires_after(std::chrono::milliseconds(5));
    co_await tick.async_wait(use_tuple);
  }
  if (!idle()) {
    CAIRN_LOG(warn, "node", "connections still open {} s after stopping; closing them anyway",
              kConnectionDrainTime.count());
  }
}

// Makes every volume's acknowledged writes durable before the process exits.
Task<void> flush_all(blockmap::VolumeManager& volumes) {
  for (const blockmap::VolumeConfig& c : volumes.list()) {
    blockmap::Volume* v = volumes.acquire(c.name);
    if (v == nullptr) {
      continue;
    }
    auto r = co_await asio::co_spawn(v->executor(), v->flush(), asio::use_awaitable);
    if (!r) {
      CAIRN_LOG(error, "node", "flushing volume '{}' at shutdown failed: {}", c.name,
                r.error().message());
    }
    volumes.release(v);
  }
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
    io::ReactorPool reactors(config.reactors, config.disk_queue_depth,
                             std::chrono::microseconds(config.idle_poll_us));
    NodeParts parts;
    asio::io_context& main = reactors.at(0).context();
    bool started = false;
    bool stopping = false;

    auto stop = [&] {
      if (stopping) {
        return;
      }
      stopping = true;
      if (parts.nbd) {
        parts.nbd->stop();
      }
      if (parts.iscsi) {
        parts.iscsi->stop();
      }
      if (parts.admin) {
        parts.admin->stop();
      }
      if (!parts.volumes) {
        reactors.stop();
        return;
      }
      asio::co_spawn(
          main,
          [&]() -> Task<void> {
            co_await wait_for_connections(parts);
            co_await flush_all(*parts.volumes);
          },
          [&](std::exception_ptr) { reactors.stop(); });
    };

    asio::signal_set signals(main, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int signo) {
      if (!ec) {
        CAIRN_LOG(info, "node", "signal {}: flushing volumes and stopping", signo);
        stop();
      }
    });
    asio::co_spawn(main, start_node(config, options, hasher, reactors, parts),
                   [&](std::exception_ptr e, bool ok) {
                     started = ok && !e;
                     if (!started) {
                       signals.cancel();
                       stop();
                     }
                   });
    reactors.start();
    reactors.run();
    reactors.stop();
    reactors.join();
    // Suspended connection coroutines refer to the volumes and servers: end them first.
    reactors.shutdown();
    parts.admin.reset();
    parts.iscsi.reset();
    parts.nbd.reset();
    parts.volumes.reset();
    return started ? 0 : 1;
  } catch (const std::exception& e) {
    CAIRN_LOG(error, "node", "start-up failed: {}", e.what());
    return 1;
  }
}

}  // namespace cairn
