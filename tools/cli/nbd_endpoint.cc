// The NBD side of import and export, through libnbd's synchronous API. Holes are found with
// BLOCK_STATUS (base:allocation) when the server offers it; zeroes are written with
// WRITE_ZEROES when the server can, which a cairn volume turns into holes.
#include <libnbd.h>

#include <algorithm>
#include <vector>

#include "tools/cli/cli_error.h"
#include "tools/cli/endpoint.h"

namespace cairn::cli {
namespace {

constexpr uint32_t kDefaultMaxRequestBytes = 32u << 20;  // the NBD spec's common limit
constexpr uint64_t kZeroChunkBytes = 1u << 20;

class NbdEndpoint final : public Endpoint {
 public:
  NbdEndpoint(nbd_handle* h, std::string name) : h_(h), name_(std::move(name)) {
    int64_t size = nbd_get_size(h_);
    if (size < 0) {
      fail("cannot get the size of");
    }
    size_bytes_ = static_cast<uint64_t>(size);
    int64_t min = nbd_get_block_size(h_, LIBNBD_SIZE_MINIMUM);
    block_size_bytes_ = min > 0 ? static_cast<uint32_t>(min) : 1;
    int64_t max = nbd_get_block_size(h_, LIBNBD_SIZE_MAXIMUM);
    max_request_bytes_ =
        max > 0 ? static_cast<uint32_t>(std::min<int64_t>(max, 1u << 30)) : kDefaultMaxRequestBytes;
    can_zero_ = nbd_can_zero(h_) == 1;
    has_allocation_ = nbd_can_meta_context(h_, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  }
  ~NbdEndpoint() override {
    nbd_shutdown(h_, 0);
    nbd_close(h_);
  }
  NbdEndpoint(const NbdEndpoint&) = delete;
  NbdEndpoint& operator=(const NbdEndpoint&) = delete;

  uint64_t size_bytes() const override { return size_bytes_; }
  uint32_t block_size_bytes() const override { return block_size_bytes_; }
  uint32_t max_request_bytes() const override { return max_request_bytes_; }
  std::string name() const override { return name_; }

  bool reads_as_zeroes(uint64_t offset_bytes, uint64_t length_bytes) override;

  void read(uint64_t offset_bytes, std::span<std::byte> out) override {
    if (nbd_pread(h_, out.data(), out.size(), offset_bytes, 0) != 0) {
      fail("cannot read");
    }
  }

  void write(uint64_t offset_bytes, std::span<const std::byte> data) override {
    if (nbd_pwrite(h_, data.data(), data.size(), offset_bytes, 0) != 0) {
      fail("cannot write");
    }
  }

  void zero(uint64_t offset_bytes, uint64_t length_bytes) override {
    if (can_zero_) {
      if (nbd_zero(h_, length_bytes, offset_bytes, 0) != 0) {
        fail("cannot zero");
      }
      return;
    }
    std::vector<std::byte> zeroes(std::min(length_bytes, kZeroChunkBytes));
    for (uint64_t done = 0; done < length_bytes; done += zeroes.size()) {
      uint64_t n = std::min<uint64_t>(zeroes.size(), length_bytes - done);
      write(offset_bytes + done, std::span(zeroes).first(n));
    }
  }

  void flush() override {
    if (nbd_can_flush(h_) == 1 && nbd_flush(h_, 0) != 0) {
      fail("cannot flush");
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw CliError(what + " " + name_ + ": " + nbd_get_error());
  }

  nbd_handle* h_;
  std::string name_;
  uint64_t size_bytes_ = 0;
  uint32_t block_size_bytes_ = 1;
  uint32_t max_request_bytes_ = kDefaultMaxRequestBytes;
  bool can_zero_ = false;
  bool has_allocation_ = false;
};

// Walks base:allocation extents from the start of the asked range; the range reads as
// zeroes when extents flagged ZERO cover all of it.
struct ZeroScan {
  uint64_t next_offset = 0;
  uint64_t end_offset = 0;
  bool all_zero = true;
};

int on_extents(void* user, const char* context, uint64_t offset, uint32_t* entries, size_t count,
               int* error) {
  auto* scan = static_cast<ZeroScan*>(user);
  if (std::string_view(context) != LIBNBD_CONTEXT_BASE_ALLOCATION) {
    return 0;
  }
  scan->next_offset = offset;
  for (size_t i = 0; i + 1 < count && scan->next_offset < scan->end_offset; i += 2) {
    if ((entries[i + 1] & LIBNBD_STATE_ZERO) == 0) {
      scan->all_zero = false;
      return 0;
    }
    scan->next_offset += entries[i];
  }
  return 0;
}

bool NbdEndpoint::reads_as_zeroes(uint64_t offset_bytes, uint64_t length_bytes) {
  if (!has_allocation_) {
    return false;
  }
  ZeroScan scan{offset_bytes, offset_bytes + length_bytes, true};
  // The server may answer a prefix only; ask again from where it stopped (bounded by the
  // range, since every answer covers at least one byte or we stop).
  while (scan.all_zero && scan.next_offset < scan.end_offset) {
    uint64_t asked = scan.next_offset;
    nbd_extent_callback cb{on_extents, &scan, nullptr};
    if (nbd_block_status(h_, scan.end_offset - asked, asked, cb, 0) != 0) {
      return false;  // unknown: read it
    }
    if (scan.next_offset <= asked) {
      return false;
    }
  }
  return scan.all_zero;
}

nbd_handle* new_handle() {
  nbd_handle* h = nbd_create();
  if (h == nullptr) {
    throw CliError(std::string("cannot create an NBD handle: ") + nbd_get_error());
  }
  nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
  return h;
}

std::unique_ptr<Endpoint> connected(nbd_handle* h, int rc, const std::string& name, bool writable) {
  if (rc != 0) {
    std::string why = nbd_get_error();
    nbd_close(h);
    throw CliError("cannot connect to " + name + ": " + why);
  }
  auto endpoint = std::make_unique<NbdEndpoint>(h, name);
  if (writable && nbd_is_read_only(h) == 1) {
    throw CliError(name + " is read-only");
  }
  return endpoint;
}

}  // namespace

bool is_nbd_uri(std::string_view text) noexcept {
  for (std::string_view scheme : {"nbd://", "nbds://", "nbd+unix://", "nbds+unix://"}) {
    if (text.starts_with(scheme)) {
      return true;
    }
  }
  return false;
}

std::unique_ptr<Endpoint> open_nbd_uri(const std::string& uri, bool writable) {
  nbd_handle* h = new_handle();
  return connected(h, nbd_connect_uri(h, uri.c_str()), uri, writable);
}

std::unique_ptr<Endpoint> open_nbd_tcp(const std::string& host, uint16_t port,
                                       const std::string& export_name, bool writable) {
  nbd_handle* h = new_handle();
  std::string name = "nbd://" + host + ":" + std::to_string(port) + "/" + export_name;
  if (nbd_set_export_name(h, export_name.c_str()) != 0) {
    nbd_close(h);
    throw CliError(std::string("bad export name: ") + nbd_get_error());
  }
  std::string port_text = std::to_string(port);
  return connected(h, nbd_connect_tcp(h, host.c_str(), port_text.c_str()), name, writable);
}

}  // namespace cairn::cli
