// Logging: one line per event on stderr, "LEVEL module: message". Thread-safe; each line is
// written with a single write so lines from reactor threads never interleave.
//
// Usage: CAIRN_LOG(warn, "nbd", "client {} sent unknown option {}", peer, opt);
// Formatting is std::format-like but implemented with a small "{}" substitution so that
// g++ 12 and clang 14 (which lack <format>) build it.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace cairn::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

// The minimum level that is printed; set once at start-up (not thread-safe to change later).
void set_level(Level level) noexcept;
[[nodiscard]] Level level() noexcept;
[[nodiscard]] bool parse_level(std::string_view text, Level* out) noexcept;

void write(Level level, std::string_view module, const std::string& message) noexcept;

namespace detail {
inline void format_to(std::ostringstream& out, std::string_view fmt) {
  out << fmt;
}

template <class Arg, class... Args>
void format_to(std::ostringstream& out, std::string_view fmt, const Arg& arg, const Args&... args) {
  auto pos = fmt.find("{}");
  if (pos == std::string_view::npos) {
    out << fmt;
    return;
  }
  out << fmt.substr(0, pos) << arg;
  format_to(out, fmt.substr(pos + 2), args...);
}
}  // namespace detail

template <class... Args>
[[nodiscard]] std::string format(std::string_view fmt, const Args&... args) {
  std::ostringstream out;
  detail::format_to(out, fmt, args...);
  return out.str();
}

}  // namespace cairn::log

#define CAIRN_LOG(lvl, module, ...)                                                             \
  do {                                                                                          \
    if (::cairn::log::Level::lvl >= ::cairn::log::level()) {                                    \
      ::cairn::log::write(::cairn::log::Level::lvl, module, ::cairn::log::format(__VA_ARGS__)); \
    }                                                                                           \
  } while (false)
