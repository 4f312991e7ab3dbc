#include "blockmap/volume_config.h"

#include <boost/json.hpp>

#include "blockmap/errors.h"

namespace cairn::blockmap {

bool valid_volume_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 63) {
    return false;
  }
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_or_digit(name.front())) {
    return false;
  }
  for (char c : name) {
    if (!lower_or_digit(c) && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

std::string describe_invalid(const VolumeConfig& c) {
  if (!valid_volume_name(c.name)) {
    return "volume name '" + c.name + "' must match [a-z0-9][a-z0-9.-]{0,62}";
  }
  if (c.block_size_bytes != 512 && c.block_size_bytes != 4096) {
    return "block size must be 512 or 4096 bytes";
  }
  uint32_t cs = c.chunk_size_bytes;
  if (cs < 4096 || cs > 65536 || (cs & (cs - 1)) != 0) {
    return "chunk size must be a power of two from 4 KiB to 64 KiB";
  }
  if (c.size_bytes == 0 || c.size_bytes % c.block_size_bytes != 0) {
    return "size must be a positive multiple of the block size";
  }
  if (c.size_bytes > (1ull << 60)) {
    return "size must be at most 1 EiB";
  }
  if (c.description.size() > 4096) {
    return "description must be at most 4096 bytes";
  }
  return {};
}

Result<void> validate(const VolumeConfig& config) noexcept {
  try {
    if (!describe_invalid(config).empty()) {
      return make_error_code(errc::invalid_argument);
    }
  } catch (...) {
    return make_error_code(errc::invalid_argument);
  }
  return {};
}

std::string to_json(const VolumeConfig& c) {
  boost::json::object o;
  o["name"] = c.name;
  o["size_bytes"] = c.size_bytes;
  o["block_size_bytes"] = c.block_size_bytes;
  o["chunk_size_bytes"] = c.chunk_size_bytes;
  o["durability"] = c.durability == Durability::write_back ? "write-back" : "write-through";
  o["read_only"] = c.read_only;
  o["description"] = c.description;
  return boost::json::serialize(o);
}

Result<VolumeConfig> volume_config_from_json(std::string_view json) noexcept {
  try {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(json, ec);
    if (ec || !v.is_object()) {
      return make_error_code(errc::invalid_argument);
    }
    const auto& o = v.as_object();
    VolumeConfig c;
    c.name = std::string(o.at("name").as_string());
    c.size_bytes = o.at("size_bytes").to_number<uint64_t>();
    c.block_size_bytes = o.at("block_size_bytes").to_number<uint32_t>();
    c.chunk_size_bytes = o.at("chunk_size_bytes").to_number<uint32_t>();
    c.durability = o.at("durability").as_string() == "write-through" ? Durability::write_through
                                                                     : Durability::write_back;
    c.read_only = o.at("read_only").as_bool();
    if (const auto* d = o.if_contains("description")) {
      c.description = std::string(d->as_string());
    }
    if (auto r = validate(c); !r) {
      return r.error();
    }
    return c;
  } catch (...) {
    return make_error_code(errc::invalid_argument);
  }
}

}  // namespace cairn::blockmap
