// AdminApi: the routes and JSON of cairnd's admin API (docs/operations.md, "Admin API"),
// independent of HTTP framing, which AdminServer does. Each request is a method, a target and
// a body; each answer is a status, a content type and a body.
//
//   GET    /v1/volumes                 every volume's configuration
//   POST   /v1/volumes                 create: {"name", "size", "block_size", "chunk_size",
//                                      "durability", "read_only", "description"}
//   GET    /v1/volumes/NAME            configuration, statistics and store space
//   POST   /v1/volumes/NAME/resize     {"size": bytes or "10G"}
//   GET    /v1/volumes/NAME/access     iSCSI access rules (secrets are never returned)
//   POST   /v1/volumes/NAME/access     {"initiators": [IQN...], "chap_user", "chap_secret",
//                                      "mutual_user", "mutual_secret", "clear": bool}; fields
//                                      given replace, others stay; "clear" drops all first
//   DELETE /v1/volumes/NAME
//   GET    /v1/stats                   the chunk store's statistics
//   GET    /metrics                    Prometheus text exposition
//
// Errors are JSON `{"error": "sentence"}` with 400 (bad request), 404 (no such volume or
// endpoint), 405 (wrong method), 409 (exists or busy), 507 (store full) or 500.
//
// Threading: handle() may run on any reactor; volume operations go through the
// VolumeManager, which hops to each volume's owner thread. The referenced objects must
// outlive every handle() in flight.
#pragma once

#include <string>
#include <string_view>

#include "base/asio.h"
#include "base/metrics.h"
#include "blockmap/volume_manager.h"
#include "io/chunk_store.h"

namespace cairn {

struct AdminResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
};

class AdminApi {
 public:
  AdminApi(blockmap::VolumeManager& volumes, io::ChunkStore& store, metrics::Registry& registry);

  // Never throws: an unexpected exception becomes a 500 answer.
  Task<AdminResponse> handle(std::string_view method, std::string_view target,
                             std::string_view body) noexcept;

  // The answer for a request that could not be parsed as HTTP.
  [[nodiscard]] static AdminResponse error(unsigned status, std::string_view sentence);

 private:
  Task<AdminResponse> route(std::string_view method, std::string_view path, std::string_view body);
  Task<AdminResponse> volume_route(std::string_view method, std::string_view rest,
                                   std::string_view body);
  Task<AdminResponse> create_volume(std::string_view body);
  Task<AdminResponse> volume_info(std::string name);
  Task<AdminResponse> resize_volume(std::string name, std::string_view body);
  Task<AdminResponse> set_access(std::string name, std::string_view body);
  Task<AdminResponse> delete_volume(std::string name);
  AdminResponse list_volumes() const;
  AdminResponse store_stats() const;
  Task<AdminResponse> render_metrics();

  blockmap::VolumeManager& volumes_;
  io::ChunkStore& store_;
  metrics::Registry& registry_;
  metrics::Counter& requests_ok_;
  metrics::Counter& requests_failed_;
};

}  // namespace cairn
