// Node configuration. With no file at all, cairnd runs on these defaults: one node, data in
// ./cairn-data, NBD on port 10809. A config file (docs/configuration.md) overrides any field:
//
//   # comment
//   [nbd]
//   port = 10809
//   [cache]
//   read_bytes = 256M
//
// Keys are "section.name"; sizes accept K/M/G/T suffixes (powers of 1024). Parsing happens at
// start-up only, so it reports errors by throwing ConfigError with the file and line.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cairn {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Config {
  // [node]
  std::string data_dir = "cairn-data";
  unsigned reactors = 0;        // 0: one per core
  unsigned idle_poll_us = 200;  // 0: a reactor sleeps as soon as it has nothing to run
  std::string log_level = "info";

  // [nbd]
  std::string nbd_address = "0.0.0.0";
  uint16_t nbd_port = 10809;
  std::string nbd_socket;           // empty: no Unix socket
  unsigned nbd_max_inflight = 128;  // requests in flight per connection

  // [iscsi]
  bool iscsi_enabled = true;
  std::string iscsi_address = "0.0.0.0";
  uint16_t iscsi_port = 3260;
  std::string iscsi_portal;  // advertised in SendTargets; empty: the address the client reached
  std::string iscsi_iqn_prefix = "iqn.2026-11.io.cairn";  // target name = prefix + ":" + volume
  unsigned iscsi_queue_depth = 128;          // commands in flight per session (MaxCmdSN window)
  unsigned iscsi_nop_interval_s = 30;        // NOP-In keepalive after this much idle; 0: never
  uint64_t iscsi_sanitize_rate = 16u << 20;  // SANITIZE pace, bytes of LBA space per second

  // [admin]
  std::string admin_address = "127.0.0.1";
  uint16_t admin_port = 10819;

  // [cache]
  uint64_t read_cache_bytes = 256ull << 20;
  uint64_t map_cache_bytes = 64ull << 20;
  uint64_t index_cache_bytes = 64ull << 20;

  // [store]
  unsigned disk_queue_depth = 256;
  uint64_t journal_bytes = 256ull << 20;        // chunk index journal (~82 bytes a chunk)
  uint64_t volume_journal_bytes = 16ull << 20;  // each volume's map journal
  std::string data_path;  // chunk data file or raw block device; empty: <data_dir>/chunks.data
  uint64_t data_initial_bytes = 256ull << 20;  // chunk data file size at creation
  uint64_t data_grow_bytes = 256ull << 20;     // growth step when the data file is full
  uint64_t data_max_bytes = 0;                 // 0: limited only by the file system
  unsigned max_fragmented_percent = 25;        // free space that may be stranded before growing
  unsigned write_behind_puts = 32;             // puts answered before their data is written
  bool allow_buffered_io = false;     // fall back to buffered I/O where O_DIRECT is refused
  std::string address_hash = "xxh3";  // or "blake2b"

  // Applies one "section.name = value" setting; throws ConfigError on an unknown key or a
  // malformed value.
  void set(std::string_view key, std::string_view value);

  // Parses a whole file's text; `origin` names it in error messages.
  void load_text(std::string_view text, std::string_view origin);
  void load_file(const std::string& path);
};

// "64M" -> 67108864. Throws ConfigError on anything else.
[[nodiscard]] uint64_t parse_size(std::string_view text);

}  // namespace cairn
