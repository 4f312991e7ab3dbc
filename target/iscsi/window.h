// CmdWindow: the CmdSN window of a session (RFC 7143 section 4.2.2.1), in serial number
// arithmetic (RFC 1982).
//
// ExpCmdSN is the next CmdSN expected; MaxCmdSN = ExpCmdSN + depth - 1 - held, where `held`
// counts non-immediate commands still in progress, so the window closes while `depth` commands
// are outstanding and MaxCmdSN never decreases. Non-immediate PDUs outside [ExpCmdSN, MaxCmdSN]
// are ignored; immediate ones do not advance ExpCmdSN.
//
// Threading: plain value, used on the session's executor.
#pragma once

#include <cstdint>

namespace cairn::target::iscsi {

[[nodiscard]] constexpr bool sn_lt(uint32_t a, uint32_t b) noexcept {
  return a != b && static_cast<int32_t>(a - b) < 0;
}
[[nodiscard]] constexpr bool sn_gt(uint32_t a, uint32_t b) noexcept {
  return a != b && static_cast<int32_t>(a - b) > 0;
}

class CmdWindow {
 public:
  CmdWindow(uint32_t exp_cmd_sn, uint32_t depth) noexcept
      : exp_(exp_cmd_sn), depth_(depth == 0 ? 1 : depth) {}

  // True when a PDU with this CmdSN is to be processed; advances ExpCmdSN for non-immediate
  // PDUs. A CmdSN past ExpCmdSN but within the window skips the gap (one connection per
  // session: the skipped numbers cannot arrive later).
  bool accept(bool immediate, uint32_t cmd_sn) noexcept {
    if (immediate) {
      return true;
    }
    if (sn_lt(cmd_sn, exp_) || sn_gt(cmd_sn, max_cmd_sn())) {
      return false;
    }
    exp_ = cmd_sn + 1;
    return true;
  }
  // A non-immediate command starts or finishes occupying a place in the window.
  void hold() noexcept { ++held_; }
  void release() noexcept {
    if (held_ > 0) {
      --held_;
    }
  }

  [[nodiscard]] uint32_t exp_cmd_sn() const noexcept { return exp_; }
  [[nodiscard]] uint32_t max_cmd_sn() const noexcept {
    return exp_ + (held_ >= depth_ ? 0 : depth_ - held_) - 1;
  }
  [[nodiscard]] uint32_t held() const noexcept { return held_; }

 private:
  uint32_t exp_;
  uint32_t depth_;
  uint32_t held_ = 0;
};

}  // namespace cairn::target::iscsi
