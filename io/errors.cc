#include "io/errors.h"

#include <string>

namespace cairn::io {
namespace {

class Category final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "cairn.io"; }
  [[nodiscard]] std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok:
        return "success";
      case errc::io_error:
        return "I/O error";
      case errc::checksum_mismatch:
        return "checksum mismatch";
      case errc::not_found:
        return "not found";
      case errc::no_space:
        return "no space left in the store";
      case errc::conflict:
        return "revision conflict";
      case errc::corrupt:
        return "on-disk structure is corrupt";
      case errc::invalid_argument:
        return "invalid argument";
      case errc::shutting_down:
        return "shutting down";
    }
    return "unknown io error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category kCategory;
  return kCategory;
}

}  // namespace cairn::io
