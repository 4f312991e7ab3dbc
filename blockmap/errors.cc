#include "blockmap/errors.h"

#include <string>

namespace cairn::blockmap {
namespace {

class Category final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "cairn.blockmap"; }
  [[nodiscard]] std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok:
        return "success";
      case errc::out_of_range:
        return "request reaches past the end of the volume";
      case errc::read_only:
        return "volume is read-only";
      case errc::invalid_argument:
        return "invalid argument";
      case errc::no_space:
        return "no space left in the store";
      case errc::io_error:
        return "I/O error in the store";
      case errc::not_found:
        return "no such volume";
      case errc::already_exists:
        return "a volume with that name already exists";
      case errc::busy:
        return "volume is busy";
    }
    return "unknown blockmap error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category kCategory;
  return kCategory;
}

}  // namespace cairn::blockmap
