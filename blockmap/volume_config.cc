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

bool VolumeAccess::allows(std::string_view initiator) const noexcept {
  if (initiators.empty()) {
    return true;
  }
  // iSCSI names compare case-insensitively (RFC 3722 maps them to lower case).
  auto same = [initiator](const std::string& allowed) {
    if (allowed.size() != initiator.size()) {
      return false;
    }
    for (size_t i = 0; i < allowed.size(); ++i) {
      auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
      if (lower(allowed[i]) != lower(initiator[i])) {
        return false;
      }
    }
    return true;
  };
  for (const std::string& allowed : initiators) {
    if (same(allowed)) {
      return true;
    }
  }
  return false;
}

std::string describe_invalid(const VolumeAccess& a) {
  for (const std::string& name : a.initiators) {
    bool known_form =
        name.starts_with("iqn.") || name.starts_with("eui.") || name.starts_with("naa.");
    if (!known_form || name.size() > 223) {
      return "initiator name '" + name +
             "' must be an iqn., eui. or naa. name of at most 223 bytes";
    }
    for (char c : name) {
      if (c <= ' ' || c > '~' || c == ',') {
        return "initiator name '" + name + "' has a character iSCSI names cannot hold";
      }
    }
  }
  auto bad_secret = [](const std::string& user, const std::string& secret) {
    return user.size() > 255 || secret.size() < 12 || secret.size() > 255;
  };
  if (a.chap_user.empty() != a.chap_secret.empty()) {
    return "CHAP needs both a user name and a secret";
  }
  if (a.requires_chap() && bad_secret(a.chap_user, a.chap_secret)) {
    return "a CHAP secret must be 12 to 255 bytes and a user name at most 255";
  }
  if (a.mutual_user.empty() != a.mutual_secret.empty()) {
    return "mutual CHAP needs both a user name and a secret";
  }
  if (!a.mutual_user.empty()) {
    if (!a.requires_chap()) {
      return "mutual CHAP needs CHAP for the initiator as well";
    }
    if (bad_secret(a.mutual_user, a.mutual_secret)) {
      return "a mutual CHAP secret must be 12 to 255 bytes and a user name at most 255";
    }
    if (a.mutual_secret == a.chap_secret) {
      return "the mutual CHAP secret must differ from the initiator's (RFC 7143 12.1.3)";
    }
  }
  return {};
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
  return describe_invalid(c.access);
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
  if (c.access != VolumeAccess{}) {
    boost::json::object a;
    boost::json::array initiators;
    for (const std::string& name : c.access.initiators) {
      initiators.emplace_back(name);
    }
    a["initiators"] = std::move(initiators);
    a["chap_user"] = c.access.chap_user;
    a["chap_secret"] = c.access.chap_secret;
    a["mutual_user"] = c.access.mutual_user;
    a["mutual_secret"] = c.access.mutual_secret;
    o["access"] = std::move(a);
  }
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
    if (const auto* a = o.if_contains("access")) {
      const auto& ao = a->as_object();
      for (const auto& name : ao.at("initiators").as_array()) {
        c.access.initiators.emplace_back(name.as_string());
      }
      c.access.chap_user = std::string(ao.at("chap_user").as_string());
      c.access.chap_secret = std::string(ao.at("chap_secret").as_string());
      c.access.mutual_user = std::string(ao.at("mutual_user").as_string());
      c.access.mutual_secret = std::string(ao.at("mutual_secret").as_string());
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
