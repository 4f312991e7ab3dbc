// Endpoint: one side of `cairn import` or `cairn export`: a local file (or block device) or an
// NBD export reached through libnbd. The copier (copy.h) sees only this interface.
//
// Errors throw CliError with a sentence that names the endpoint. Offsets and lengths are
// bytes; NBD endpoints need them to be multiples of block_size_bytes(), except that the
// copier pads the last write of an unaligned source with zeroes.
//
// Threading: one thread. The object owns its file descriptor or libnbd handle.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace cairn::cli {

class Endpoint {
 public:
  virtual ~Endpoint() = default;

  [[nodiscard]] virtual uint64_t size_bytes() const = 0;
  // The alignment writes and reads need (1 for files).
  [[nodiscard]] virtual uint32_t block_size_bytes() const = 0;
  // The largest single read or write.
  [[nodiscard]] virtual uint32_t max_request_bytes() const = 0;
  // What to call it in messages: a path or a URI.
  [[nodiscard]] virtual std::string name() const = 0;

  // True when the range is known to read as zeroes without reading it (a hole). False when
  // unknown, so the copier reads it.
  virtual bool reads_as_zeroes(uint64_t offset_bytes, uint64_t length_bytes) = 0;
  virtual void read(uint64_t offset_bytes, std::span<std::byte> out) = 0;
  virtual void write(uint64_t offset_bytes, std::span<const std::byte> data) = 0;
  // Makes the range read as zeroes, as cheaply as the endpoint allows.
  virtual void zero(uint64_t offset_bytes, uint64_t length_bytes) = 0;
  // Makes everything written durable.
  virtual void flush() = 0;
};

// "nbd://", "nbds://", "nbd+unix://" or "nbds+unix://".
[[nodiscard]] bool is_nbd_uri(std::string_view text) noexcept;

// A file or block device to read from.
[[nodiscard]] std::unique_ptr<Endpoint> open_file_source(const std::string& path);
// A file to write `size_bytes` into: a regular file is created or truncated (so it starts as
// one hole), a block device is written in place and must be large enough.
[[nodiscard]] std::unique_ptr<Endpoint> open_file_destination(const std::string& path,
                                                              uint64_t size_bytes);

// An NBD export, by URI (nbd_connect_uri) or by TCP host, port and export name.
[[nodiscard]] std::unique_ptr<Endpoint> open_nbd_uri(const std::string& uri, bool writable);
[[nodiscard]] std::unique_ptr<Endpoint> open_nbd_tcp(const std::string& host, uint16_t port,
                                                     const std::string& export_name, bool writable);

}  // namespace cairn::cli
