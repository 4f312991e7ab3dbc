// CliError: a failure the `cairn` CLI reports as one sentence on stderr, with exit status 1.
// The CLI is a short-lived tool, not the data path, so it unwinds to main() with this
// exception instead of threading results through every helper.
#pragma once

#include <stdexcept>
#include <string>

namespace cairn::cli {

class CliError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace cairn::cli
