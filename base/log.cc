#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace cairn::log {
namespace {
std::atomic<Level> g_level{Level::info};

const char* level_name(Level level) noexcept {
  switch (level) {
    case Level::debug:
      return "DEBUG";
    case Level::info:
      return "INFO ";
    case Level::warn:
      return "WARN ";
    case Level::error:
      return "ERROR";
  }
  return "?";
}
}  // namespace

void set_level(Level level) noexcept {
  g_level.store(level, std::memory_order_relaxed);
}

Level level() noexcept {
  return g_level.load(std::memory_order_relaxed);
}

bool parse_level(std::string_view text, Level* out) noexcept {
  if (text == "debug") {
    *out = Level::debug;
  } else if (text == "info") {
    *out = Level::info;
  } else if (text == "warn") {
    *out = Level::warn;
  } else if (text == "error") {
    *out = Level::error;
  } else {
    return false;
  }
  return true;
}

void write(Level level, std::string_view module, const std::string& message) noexcept {
  try {
    auto now = std::chrono::system_clock::now();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
    std::time_t secs = static_cast<std::time_t>(ms.count() / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char stamp[32];
    std::snprintf(stamp, sizeof stamp, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms.count() % 1000));
    std::string line;
    line.reserve(message.size() + module.size() + 32);
    line.append(stamp).append(" ").append(level_name(level)).append(" ");
    line.append(module).append(": ").append(message).append("\n");
    // One write per line keeps lines whole across threads.
    ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
    (void)ignored;
  } catch (...) {
    // Logging must never take a node down; a line lost to bad_alloc is acceptable.
  }
}

}  // namespace cairn::log
