#include "base/config.h"

#include <charconv>
#include <fstream>
#include <limits>
#include <sstream>

namespace cairn {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

uint64_t parse_uint(std::string_view key, std::string_view text, uint64_t max) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || v > max) {
    throw ConfigError("invalid value '" + std::string(text) + "' for " + std::string(key));
  }
  return v;
}

std::string unquote(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
    v = v.substr(1, v.size() - 2);
  }
  return std::string(v);
}

}  // namespace

uint64_t parse_size(std::string_view text) {
  text = trim(text);
  uint64_t mult = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K':
      case 'k':
        mult = 1ull << 10;
        break;
      case 'M':
      case 'm':
        mult = 1ull << 20;
        break;
      case 'G':
      case 'g':
        mult = 1ull << 30;
        break;
      case 'T':
      case 't':
        mult = 1ull << 40;
        break;
      default:
        break;
    }
    if (mult != 1) {
      text.remove_suffix(1);
    }
  }
  uint64_t v = parse_uint("size", text, std::numeric_limits<uint64_t>::max() / mult);
  return v * mult;
}

void Config::set(std::string_view key, std::string_view raw) {
  std::string value = unquote(trim(raw));
  auto u16 = [&] { return static_cast<uint16_t>(parse_uint(key, value, 65535)); };
  auto u32 = [&] { return static_cast<unsigned>(parse_uint(key, value, 1u << 20)); };
  if (key == "node.data_dir") {
    data_dir = value;
  } else if (key == "node.reactors") {
    reactors = u32();
  } else if (key == "node.idle_poll_us") {
    idle_poll_us = u32();
  } else if (key == "node.log_level") {
    log_level = value;
  } else if (key == "nbd.address") {
    nbd_address = value;
  } else if (key == "nbd.port") {
    nbd_port = u16();
  } else if (key == "nbd.socket") {
    nbd_socket = value;
  } else if (key == "nbd.max_inflight") {
    nbd_max_inflight = u32();
  } else if (key == "iscsi.enabled") {
    if (value != "true" && value != "false") {
      throw ConfigError("iscsi.enabled must be true or false");
    }
    iscsi_enabled = value == "true";
  } else if (key == "iscsi.address") {
    iscsi_address = value;
  } else if (key == "iscsi.port") {
    iscsi_port = u16();
  } else if (key == "iscsi.portal") {
    iscsi_portal = value;
  } else if (key == "iscsi.iqn_prefix") {
    iscsi_iqn_prefix = value;
  } else if (key == "iscsi.queue_depth") {
    iscsi_queue_depth = u32();
    if (iscsi_queue_depth == 0) {
      throw ConfigError("iscsi.queue_depth must be at least 1");
    }
  } else if (key == "iscsi.nop_interval_s") {
    iscsi_nop_interval_s = u32();
  } else if (key == "iscsi.sanitize_rate") {
    iscsi_sanitize_rate = parse_size(value);
    if (iscsi_sanitize_rate == 0) {
      throw ConfigError("iscsi.sanitize_rate must be at least 1 byte per second");
    }
  } else if (key == "admin.address") {
    admin_address = value;
  } else if (key == "admin.port") {
    admin_port = u16();
  } else if (key == "cache.read_bytes") {
    read_cache_bytes = parse_size(value);
  } else if (key == "cache.map_bytes") {
    map_cache_bytes = parse_size(value);
  } else if (key == "cache.index_bytes") {
    index_cache_bytes = parse_size(value);
  } else if (key == "store.disk_queue_depth") {
    disk_queue_depth = u32();
  } else if (key == "store.journal_bytes") {
    journal_bytes = parse_size(value);
  } else if (key == "store.volume_journal_bytes") {
    volume_journal_bytes = parse_size(value);
  } else if (key == "store.data_path") {
    data_path = value;
  } else if (key == "store.data_initial_bytes") {
    data_initial_bytes = parse_size(value);
  } else if (key == "store.data_grow_bytes") {
    data_grow_bytes = parse_size(value);
  } else if (key == "store.data_max_bytes") {
    data_max_bytes = parse_size(value);
  } else if (key == "store.write_behind_puts") {
    write_behind_puts = static_cast<unsigned>(parse_uint(key, value, 1024));
  } else if (key == "store.max_fragmented_percent") {
    max_fragmented_percent = static_cast<unsigned>(parse_uint(key, value, 100));
  } else if (key == "store.allow_buffered_io") {
    if (value != "true" && value != "false") {
      throw ConfigError("store.allow_buffered_io must be true or false");
    }
    allow_buffered_io = value == "true";
  } else if (key == "store.address_hash") {
    if (value != "xxh3" && value != "blake2b") {
      throw ConfigError("store.address_hash must be xxh3 or blake2b, not '" + value + "'");
    }
    address_hash = value;
  } else {
    throw ConfigError("unknown setting '" + std::string(key) + "'");
  }
}

void Config::load_text(std::string_view text, std::string_view origin) {
  std::string section;
  int line_no = 0;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (auto hash = line.find('#'); hash != std::string_view::npos) {
      line = line.substr(0, hash);
    }
    line = trim(line);
    if (line.empty()) {
      continue;
    }
    auto where = std::string(origin) + ":" + std::to_string(line_no) + ": ";
    if (line.front() == '[') {
      if (line.back() != ']') {
        throw ConfigError(where + "unterminated section header");
      }
      section = std::string(trim(line.substr(1, line.size() - 2)));
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string_view::npos) {
      throw ConfigError(where + "expected 'name = value'");
    }
    std::string key = section.empty() ? "" : section + ".";
    key += trim(line.substr(0, eq));
    try {
      set(key, line.substr(eq + 1));
    } catch (const ConfigError& e) {
      throw ConfigError(where + e.what());
    }
  }
}

void Config::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw ConfigError("cannot open config file '" + path + "'");
  }
  std::stringstream buf;
  buf << in.rdbuf();
  load_text(buf.str(), path);
}

}  // namespace cairn
