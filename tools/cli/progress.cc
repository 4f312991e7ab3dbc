#include "tools/cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace cairn::cli {
namespace {

constexpr int kBarWidth = 30;

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

std::string human_bytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) {
    return std::to_string(bytes) + " B";
  }
  double v = static_cast<double>(bytes);
  unsigned unit = 0;
  while (v >= 1024 && unit + 1 < sizeof kUnits / sizeof kUnits[0]) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  return buf;
}

Progress::Progress(std::string label, uint64_t total_bytes, bool enabled)
    : label_(std::move(label)),
      total_bytes_(total_bytes),
      enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

void Progress::update(uint64_t done_bytes) {
  if (!enabled_) {
    return;
  }
  if (tty_) {
    if (seconds_since(last_draw_) >= 0.1) {
      draw_bar(done_bytes);
    }
    return;
  }
  unsigned decile = total_bytes_ == 0 ? 10 : static_cast<unsigned>(done_bytes * 10 / total_bytes_);
  if (decile > last_decile_ && decile < 10) {
    last_decile_ = decile;
    std::fprintf(stderr, "cairn: %s %u%% (%s of %s)\n", label_.c_str(), decile * 10,
                 human_bytes(done_bytes).c_str(), human_bytes(total_bytes_).c_str());
  }
}

void Progress::draw_bar(uint64_t done_bytes) {
  last_draw_ = std::chrono::steady_clock::now();
  double fraction =
      total_bytes_ == 0 ? 1.0 : static_cast<double>(done_bytes) / static_cast<double>(total_bytes_);
  int filled = static_cast<int>(fraction * kBarWidth);
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(kBarWidth, '.');
  double elapsed = seconds_since(start_);
  double rate = elapsed > 0 ? static_cast<double>(done_bytes) / elapsed : 0;
  std::fprintf(stderr, "\r%s [%s] %3d%% %s / %s  %s/s  ", label_.c_str(), bar.c_str(),
               static_cast<int>(fraction * 100), human_bytes(done_bytes).c_str(),
               human_bytes(total_bytes_).c_str(), human_bytes(static_cast<uint64_t>(rate)).c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (!enabled_) {
    return;
  }
  if (tty_) {
    draw_bar(total_bytes_);
    std::fprintf(stderr, "\n");
  } else {
    std::fprintf(stderr, "cairn: %s 100%% (%s)\n", label_.c_str(),
                 human_bytes(total_bytes_).c_str());
  }
}

}  // namespace cairn::cli
