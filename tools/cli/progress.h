// Progress: reports how far a copy has come, on stderr. On a terminal it redraws one bar
// (at most ten times a second); otherwise it prints a plain line at every 10 %.
//
// Threading: one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace cairn::cli {

// "1.5 GiB", "512 B": sizes for people.
[[nodiscard]] std::string human_bytes(uint64_t bytes);

class Progress {
 public:
  // `enabled` false prints nothing (--quiet, --json).
  Progress(std::string label, uint64_t total_bytes, bool enabled);

  void update(uint64_t done_bytes);
  // Draws 100 % and ends the bar's line.
  void finish();

 private:
  void draw_bar(uint64_t done_bytes);

  std::string label_;
  uint64_t total_bytes_;
  bool enabled_;
  bool tty_;
  unsigned last_decile_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace cairn::cli
