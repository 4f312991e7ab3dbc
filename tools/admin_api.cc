#include "tools/admin_api.h"

#include <boost/json.hpp>
#include <optional>

#include "base/config.h"
#include "base/log.h"
#include "blockmap/errors.h"

namespace cairn {
namespace {

namespace json = boost::json;

constexpr std::string_view kVolumesPath = "/v1/volumes";

AdminResponse json_answer(unsigned status, const json::value& v) {
  return AdminResponse{status, "application/json", json::serialize(v) + "\n"};
}

// The HTTP status for an operating error of the volume layer.
unsigned status_for(const std::error_code& ec) {
  if (ec == blockmap::errc::not_found) {
    return 404;
  }
  if (ec == blockmap::errc::already_exists || ec == blockmap::errc::busy) {
    return 409;
  }
  if (ec == blockmap::errc::invalid_argument || ec == blockmap::errc::out_of_range) {
    return 400;
  }
  if (ec == blockmap::errc::no_space) {
    return 507;
  }
  return 500;
}

json::object config_json(const blockmap::VolumeConfig& c) {
  json::object o;
  o["name"] = c.name;
  o["size_bytes"] = c.size_bytes;
  o["block_size_bytes"] = c.block_size_bytes;
  o["chunk_size_bytes"] = c.chunk_size_bytes;
  o["durability"] =
      c.durability == blockmap::Durability::write_back ? "write-back" : "write-through";
  o["read_only"] = c.read_only;
  o["description"] = c.description;
  // Secrets never leave the node through the API; only whether they are set.
  json::object a;
  json::array initiators;
  for (const std::string& name : c.access.initiators) {
    initiators.emplace_back(name);
  }
  a["initiators"] = std::move(initiators);
  a["chap"] = c.access.requires_chap();
  a["chap_user"] = c.access.chap_user;
  a["mutual_chap"] = !c.access.mutual_user.empty();
  a["mutual_user"] = c.access.mutual_user;
  o["access"] = std::move(a);
  return o;
}

// Applies an access request to `a`: fields present replace, fields absent stay, and
// "clear": true first removes every rule. Returns an error sentence or "".
std::string apply_access(blockmap::VolumeAccess& a, const json::object& fields) {
  if (const json::value* clear = fields.if_contains("clear")) {
    if (!clear->is_bool()) {
      return "\"clear\" must be true or false";
    }
    if (clear->get_bool()) {
      a = {};
    }
  }
  for (const auto& [key, v] : fields) {
    if (key == "clear") {
      continue;
    }
    if (key == "initiators") {
      if (!v.is_array()) {
        return "\"initiators\" must be an array of initiator names";
      }
      a.initiators.clear();
      for (const json::value& name : v.get_array()) {
        if (!name.is_string()) {
          return "\"initiators\" must be an array of initiator names";
        }
        a.initiators.emplace_back(name.get_string());
      }
      continue;
    }
    std::string* field = key == "chap_user"       ? &a.chap_user
                         : key == "chap_secret"   ? &a.chap_secret
                         : key == "mutual_user"   ? &a.mutual_user
                         : key == "mutual_secret" ? &a.mutual_secret
                                                  : nullptr;
    if (field == nullptr) {
      return "unknown field \"" + std::string(key) + "\"";
    }
    if (!v.is_string()) {
      return "\"" + std::string(key) + "\" must be a string";
    }
    *field = std::string(v.get_string());
  }
  return blockmap::describe_invalid(a);
}

double dedup_ratio(const io::ChunkStoreStats& s) {
  if (s.physical_bytes == 0) {
    return 1.0;
  }
  return static_cast<double>(s.referenced_bytes) / static_cast<double>(s.physical_bytes);
}

double hit_ratio(uint64_t hits, uint64_t misses) {
  uint64_t total = hits + misses;
  return total == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(total);
}

json::object store_json(const io::ChunkStoreStats& s) {
  json::object o;
  o["chunks"] = s.chunks;
  o["referenced_bytes"] = s.referenced_bytes;
  o["physical_bytes"] = s.physical_bytes;
  o["capacity_bytes"] = s.capacity_bytes;
  o["dedup_ratio"] = dedup_ratio(s);
  o["dedup_hits"] = s.dedup_hits;
  o["hash_collisions"] = s.hash_collisions;
  o["cache_hits"] = s.cache_hits;
  o["cache_misses"] = s.cache_misses;
  o["cache_hit_ratio"] = hit_ratio(s.cache_hits, s.cache_misses);
  o["checksum_failures"] = s.checksum_failures;
  o["index_cache_bytes"] = s.index_cache_bytes;
  o["index_cache_peak_bytes"] = s.index_cache_peak_bytes;
  return o;
}

json::object volume_stats_json(const blockmap::VolumeStats& s) {
  json::object o;
  o["logical_bytes"] = s.logical_bytes;
  o["mapped_bytes"] = s.mapped_bytes;
  o["referenced_bytes"] = s.referenced_bytes;
  o["map_cache_pages"] = s.map_cache_pages;
  o["map_cache_max_pages"] = s.map_cache_max_pages;
  o["map_cache_hits"] = s.map_cache_hits;
  o["map_cache_misses"] = s.map_cache_misses;
  o["map_cache_hit_ratio"] = hit_ratio(s.map_cache_hits, s.map_cache_misses);
  o["map_page_writes"] = s.map_page_writes;
  o["map_checkpoints"] = s.map_checkpoints;
  o["reads"] = s.reads;
  o["writes"] = s.writes;
  o["flushes"] = s.flushes;
  o["trims"] = s.trims;
  o["zeroes"] = s.zeroes;
  o["read_bytes"] = s.read_bytes;
  o["write_bytes"] = s.write_bytes;
  return o;
}

// Reads a volume's statistics on its owner thread; nullopt if it does not exist.
Task<std::optional<blockmap::VolumeStats>> stats_of(blockmap::VolumeManager& volumes,
                                                    std::string_view name) {
  blockmap::Volume* v = volumes.acquire(name);
  if (v == nullptr) {
    co_return std::nullopt;
  }
  auto stats = co_await asio::co_spawn(
      v->executor(), [v]() -> Task<blockmap::VolumeStats> { co_return v->stats(); },
      asio::use_awaitable);
  volumes.release(v);
  co_return stats;
}

// A size given as a JSON number of bytes or a string with a K/M/G/T suffix.
std::optional<uint64_t> size_value(const json::value& v) {
  if (v.is_uint64()) {
    return v.get_uint64();
  }
  if (v.is_int64() && v.get_int64() >= 0) {
    return static_cast<uint64_t>(v.get_int64());
  }
  if (v.is_string()) {
    try {
      return parse_size(std::string_view(v.get_string()));
    } catch (const ConfigError&) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// Parses a request body that must be a JSON object; on failure sets `sentence`.
std::optional<json::object> body_object(std::string_view body, std::string& sentence) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) {
    sentence = "request body is not valid JSON: " + ec.message();
    return std::nullopt;
  }
  if (!v.is_object()) {
    sentence = "request body must be a JSON object";
    return std::nullopt;
  }
  return std::move(v.as_object());
}

// Applies one field of a create request to `c`; returns an error sentence or "".
std::string apply_field(blockmap::VolumeConfig& c, std::string_view key, const json::value& v) {
  if (key == "name") {
    if (!v.is_string()) {
      return "\"name\" must be a string";
    }
    c.name = std::string(v.get_string());
  } else if (key == "size" || key == "block_size" || key == "chunk_size") {
    auto size = size_value(v);
    if (!size) {
      return "\"" + std::string(key) + "\" must be a byte count or a size such as \"10G\"";
    }
    if (key == "size") {
      c.size_bytes = *size;
    } else if (*size > UINT32_MAX) {
      return "\"" + std::string(key) + "\" is too large";
    } else {
      (key == "block_size" ? c.block_size_bytes : c.chunk_size_bytes) =
          static_cast<uint32_t>(*size);
    }
  } else if (key == "durability") {
    if (v.is_string() && v.get_string() == "write-back") {
      c.durability = blockmap::Durability::write_back;
    } else if (v.is_string() && v.get_string() == "write-through") {
      c.durability = blockmap::Durability::write_through;
    } else {
      return "\"durability\" must be \"write-back\" or \"write-through\"";
    }
  } else if (key == "read_only") {
    if (!v.is_bool()) {
      return "\"read_only\" must be true or false";
    }
    c.read_only = v.get_bool();
  } else if (key == "description") {
    if (!v.is_string()) {
      return "\"description\" must be a string";
    }
    c.description = std::string(v.get_string());
  } else {
    return "unknown field \"" + std::string(key) + "\"";
  }
  return {};
}

}  // namespace

AdminApi::AdminApi(blockmap::VolumeManager& volumes, io::ChunkStore& store,
                   metrics::Registry& registry)
    : volumes_(volumes),
      store_(store),
      registry_(registry),
      requests_ok_(registry.counter("cairn_admin_requests_total", "Admin API requests, by outcome.",
                                    {{"outcome", "ok"}})),
      requests_failed_(registry.counter("cairn_admin_requests_total",
                                        "Admin API requests, by outcome.",
                                        {{"outcome", "error"}})) {}

AdminResponse AdminApi::error(unsigned status, std::string_view sentence) {
  json::object o;
  o["error"] = sentence;
  return json_answer(status, o);
}

Task<AdminResponse> AdminApi::handle(std::string_view method, std::string_view target,
                                     std::string_view body) noexcept {
  AdminResponse answer;
  try {
    std::string_view path = target.substr(0, target.find('?'));
    answer = co_await route(method, path, body);
  } catch (const std::exception& e) {
    CAIRN_LOG(error, "admin", "{} {} failed: {}", method, target, e.what());
    answer = error(500, "internal error: " + std::string(e.what()));
  }
  (answer.status < 400 ? requests_ok_ : requests_failed_).add();
  co_return answer;
}

Task<AdminResponse> AdminApi::route(std::string_view method, std::string_view path,
                                    std::string_view body) {
  auto only = [&](std::string_view allowed) -> std::optional<AdminResponse> {
    if (method == allowed) {
      return std::nullopt;
    }
    return error(405, "method " + std::string(method) + " is not allowed on " + std::string(path) +
                          "; use " + std::string(allowed));
  };
  if (path == "/metrics") {
    if (auto bad = only("GET")) {
      co_return *bad;
    }
    co_return co_await render_metrics();
  }
  if (path == "/v1/stats") {
    if (auto bad = only("GET")) {
      co_return *bad;
    }
    co_return store_stats();
  }
  if (path == kVolumesPath) {
    if (method == "GET") {
      co_return list_volumes();
    }
    if (method == "POST") {
      co_return co_await create_volume(body);
    }
    co_return error(405, "method " + std::string(method) + " is not allowed on " +
                             std::string(path) + "; use GET or POST");
  }
  if (path.starts_with(kVolumesPath) && path.size() > kVolumesPath.size() &&
      path[kVolumesPath.size()] == '/') {
    co_return co_await volume_route(method, path.substr(kVolumesPath.size() + 1), body);
  }
  co_return error(404, "no such endpoint: " + std::string(path));
}

// `rest` is "NAME" or "NAME/resize".
Task<AdminResponse> AdminApi::volume_route(std::string_view method, std::string_view rest,
                                           std::string_view body) {
  auto slash = rest.find('/');
  std::string name(rest.substr(0, slash));
  std::string_view action = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  if (!blockmap::valid_volume_name(name)) {
    co_return error(400, "volume name '" + name + "' must match [a-z0-9][a-z0-9.-]{0,62}");
  }
  if (action.empty()) {
    if (method == "GET") {
      co_return co_await volume_info(std::move(name));
    }
    if (method == "DELETE") {
      co_return co_await delete_volume(std::move(name));
    }
    co_return error(405, "method " + std::string(method) + " is not allowed on a volume; " +
                             "use GET or DELETE");
  }
  if (action == "access") {
    if (method == "GET") {
      auto config = volumes_.config(name);
      if (!config) {
        co_return error(404, "no volume named '" + name + "'");
      }
      co_return json_answer(200, config_json(*config).at("access"));
    }
    if (method != "POST") {
      co_return error(405, "access takes GET or POST, not " + std::string(method));
    }
    co_return co_await set_access(std::move(name), body);
  }
  if (action == "resize") {
    if (method != "POST") {
      co_return error(405, "resize takes POST, not " + std::string(method));
    }
    co_return co_await resize_volume(std::move(name), body);
  }
  co_return error(404, "no such endpoint: /v1/volumes/" + std::string(rest));
}

AdminResponse AdminApi::list_volumes() const {
  json::array volumes;
  for (const blockmap::VolumeConfig& c : volumes_.list()) {
    volumes.push_back(config_json(c));
  }
  json::object o;
  o["volumes"] = std::move(volumes);
  return json_answer(200, o);
}

AdminResponse AdminApi::store_stats() const {
  json::object o;
  o["store"] = store_json(store_.stats());
  o["volumes"] = volumes_.list().size();
  return json_answer(200, o);
}

Task<AdminResponse> AdminApi::create_volume(std::string_view body) {
  std::string sentence;
  auto fields = body_object(body, sentence);
  if (!fields) {
    co_return error(400, sentence);
  }
  blockmap::VolumeConfig config;
  for (const auto& [key, value] : *fields) {
    if (std::string bad = apply_field(config, key, value); !bad.empty()) {
      co_return error(400, bad);
    }
  }
  if (!fields->contains("name") || !fields->contains("size")) {
    co_return error(400, "a new volume needs a \"name\" and a \"size\"");
  }
  if (std::string bad = blockmap::describe_invalid(config); !bad.empty()) {
    co_return error(400, bad);
  }
  auto created = co_await volumes_.create(config);
  if (!created) {
    std::string why =
        created.error() == blockmap::errc::already_exists
            ? "volume '" + config.name + "' already exists"
            : "cannot create volume '" + config.name + "': " + created.error().message();
    co_return error(status_for(created.error()), why);
  }
  CAIRN_LOG(info, "admin", "created volume '{}' ({} bytes)", config.name, config.size_bytes);
  co_return json_answer(201, config_json(config));
}

Task<AdminResponse> AdminApi::volume_info(std::string name) {
  std::optional<blockmap::VolumeConfig> config;
  for (blockmap::VolumeConfig& c : volumes_.list()) {
    if (c.name == name) {
      config = std::move(c);
    }
  }
  auto stats = co_await stats_of(volumes_, name);
  if (!config || !stats) {
    co_return error(404, "no volume named '" + name + "'");
  }
  json::object o = config_json(*config);
  o["stats"] = volume_stats_json(*stats);
  o["store"] = store_json(store_.stats());
  co_return json_answer(200, o);
}

Task<AdminResponse> AdminApi::resize_volume(std::string name, std::string_view body) {
  std::string sentence;
  auto fields = body_object(body, sentence);
  if (!fields) {
    co_return error(400, sentence);
  }
  const json::value* size_field = fields->if_contains("size");
  auto size = size_field == nullptr ? std::nullopt : size_value(*size_field);
  if (!size) {
    co_return error(400, "resize needs \"size\": a byte count or a size such as \"10G\"");
  }
  std::optional<blockmap::VolumeConfig> next;
  for (blockmap::VolumeConfig& c : volumes_.list()) {
    if (c.name == name) {
      next = std::move(c);
    }
  }
  if (!next) {
    co_return error(404, "no volume named '" + name + "'");
  }
  next->size_bytes = *size;
  if (std::string bad = blockmap::describe_invalid(*next); !bad.empty()) {
    co_return error(400, bad);
  }
  auto resized = co_await volumes_.resize(name, *size);
  if (!resized) {
    co_return error(status_for(resized.error()),
                    "cannot resize volume '" + name + "': " + resized.error().message());
  }
  CAIRN_LOG(info, "admin", "resized volume '{}' to {} bytes", name, *size);
  co_return json_answer(200, config_json(*next));
}

Task<AdminResponse> AdminApi::set_access(std::string name, std::string_view body) {
  std::string sentence;
  auto fields = body_object(body, sentence);
  if (!fields) {
    co_return error(400, sentence);
  }
  auto config = volumes_.config(name);
  if (!config) {
    co_return error(404, "no volume named '" + name + "'");
  }
  blockmap::VolumeAccess next = config->access;
  if (std::string bad = apply_access(next, *fields); !bad.empty()) {
    co_return error(400, bad);
  }
  auto set = co_await volumes_.set_access(name, next);
  if (!set) {
    co_return error(status_for(set.error()),
                    "cannot set the access rules of '" + name + "': " + set.error().message());
  }
  CAIRN_LOG(info, "admin", "volume '{}': access rules now {} initiator(s), CHAP {}, mutual CHAP {}",
            name, next.initiators.size(), next.requires_chap() ? "on" : "off",
            next.mutual_user.empty() ? "off" : "on");
  config->access = std::move(next);
  co_return json_answer(200, config_json(*config).at("access"));
}

Task<AdminResponse> AdminApi::delete_volume(std::string name) {
  auto removed = co_await volumes_.remove(name);
  if (!removed) {
    std::string why = removed.error() == blockmap::errc::not_found
                          ? "no volume named '" + name + "'"
                      : removed.error() == blockmap::errc::busy
                          ? "volume '" + name + "' is in use by a client; disconnect it first"
                          : "cannot delete volume '" + name + "': " + removed.error().message();
    co_return error(status_for(removed.error()), why);
  }
  CAIRN_LOG(info, "admin", "deleted volume '{}'", name);
  json::object o;
  o["deleted"] = name;
  co_return json_answer(200, o);
}

Task<AdminResponse> AdminApi::render_metrics() {
  metrics::Exposition out;
  registry_.collect(out);
  io::ChunkStoreStats s = store_.stats();
  out.gauge("cairn_store_chunks", "Distinct chunks stored.", {}, static_cast<double>(s.chunks));
  out.gauge("cairn_store_referenced_bytes", "Bytes referenced by volume maps (before dedup).", {},
            static_cast<double>(s.referenced_bytes));
  out.gauge("cairn_store_physical_bytes", "Bytes the chunks occupy on disk.", {},
            static_cast<double>(s.physical_bytes));
  out.gauge("cairn_store_capacity_bytes", "Space available for chunks.", {},
            static_cast<double>(s.capacity_bytes));
  out.gauge("cairn_store_dedup_ratio", "Referenced bytes per physical byte.", {}, dedup_ratio(s));
  out.counter("cairn_store_dedup_hits_total", "Chunk writes that found identical content.", {},
              s.dedup_hits);
  out.counter("cairn_store_hash_collisions_total", "Chunk addresses that matched other content.",
              {}, s.hash_collisions);
  out.counter("cairn_store_cache_hits_total", "Chunk reads served by the read cache.", {},
              s.cache_hits);
  out.counter("cairn_store_cache_misses_total", "Chunk reads that missed the read cache.", {},
              s.cache_misses);
  out.gauge("cairn_store_cache_hit_ratio", "Read cache hits per chunk read.", {},
            hit_ratio(s.cache_hits, s.cache_misses));
  out.counter("cairn_store_checksum_failures_total", "Chunk reads that failed their checksum.", {},
              s.checksum_failures);
  out.gauge("cairn_store_index_cache_bytes", "RAM of the chunk index's page cache.", {},
            static_cast<double>(s.index_cache_bytes));
  auto configs = volumes_.list();
  out.gauge("cairn_volumes", "Volumes on this node.", {}, static_cast<double>(configs.size()));
  for (const blockmap::VolumeConfig& c : configs) {
    auto v = co_await stats_of(volumes_, c.name);
    if (!v) {
      continue;  // deleted meanwhile
    }
    metrics::Labels vol{{"volume", c.name}};
    out.gauge("cairn_volume_size_bytes", "Volume size.", vol, static_cast<double>(c.size_bytes));
    out.gauge("cairn_volume_mapped_bytes", "Bytes of chunks the volume map references.", vol,
              static_cast<double>(v->mapped_bytes));
    out.counter("cairn_volume_map_cache_hits_total", "Map page lookups served by the cache.", vol,
                v->map_cache_hits);
    out.counter("cairn_volume_map_cache_misses_total", "Map page lookups that loaded a page.", vol,
                v->map_cache_misses);
    out.gauge("cairn_volume_map_cache_hit_ratio", "Map cache hits per map page lookup.", vol,
              hit_ratio(v->map_cache_hits, v->map_cache_misses));
    out.gauge("cairn_volume_map_cache_pages", "Map pages held in the cache.", vol,
              static_cast<double>(v->map_cache_pages));
    out.counter("cairn_volume_map_checkpoints_total", "Map checkpoints written.", vol,
                v->map_checkpoints);
    auto op = [&](const char* name, uint64_t n) {
      out.counter("cairn_volume_operations_total", "Volume operations, by kind.",
                  {{"volume", c.name}, {"op", name}}, n);
    };
    op("read", v->reads);
    op("write", v->writes);
    op("flush", v->flushes);
    op("trim", v->trims);
    op("write_zeroes", v->zeroes);
    out.counter("cairn_volume_bytes_total", "Bytes read and written, by direction.",
                {{"volume", c.name}, {"direction", "read"}}, v->read_bytes);
    out.counter("cairn_volume_bytes_total", "Bytes read and written, by direction.",
                {{"volume", c.name}, {"direction", "write"}}, v->write_bytes);
  }
  co_return AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8", out.render()};
}

}  // namespace cairn
