// The CmdSN window: ExpCmdSN/MaxCmdSN arithmetic, out-of-window commands, immediate commands
// and wrap-around at 2^32.
#include "target/iscsi/window.h"

#include <gtest/gtest.h>

namespace cairn::target::iscsi {
namespace {

TEST(CmdWindow, AcceptsInOrderAndClosesWhenFull) {
  CmdWindow w(100, 4);
  EXPECT_EQ(w.exp_cmd_sn(), 100u);
  EXPECT_EQ(w.max_cmd_sn(), 103u);
  for (uint32_t sn = 100; sn < 104; ++sn) {
    ASSERT_TRUE(w.accept(false, sn));
    w.hold();
    EXPECT_EQ(w.max_cmd_sn(), 103u) << "MaxCmdSN never moves while the window fills";
  }
  EXPECT_EQ(w.exp_cmd_sn(), 104u);
  EXPECT_EQ(w.max_cmd_sn(), 103u);  // closed: MaxCmdSN = ExpCmdSN - 1
  EXPECT_FALSE(w.accept(false, 104));
  w.release();
  EXPECT_EQ(w.max_cmd_sn(), 104u);
  EXPECT_TRUE(w.accept(false, 104));
}

TEST(CmdWindow, IgnoresTooLowAndTooHigh) {
  CmdWindow w(10, 8);
  EXPECT_FALSE(w.accept(false, 9));   // below ExpCmdSN: a duplicate
  EXPECT_FALSE(w.accept(false, 18));  // MaxCmdSN + 1
  EXPECT_EQ(w.exp_cmd_sn(), 10u);
  EXPECT_TRUE(w.accept(false, 17));  // the top of the window
  EXPECT_EQ(w.exp_cmd_sn(), 18u);
}

TEST(CmdWindow, ImmediateCommandsDoNotAdvance) {
  CmdWindow w(5, 2);
  EXPECT_TRUE(w.accept(true, 5));
  EXPECT_TRUE(w.accept(true, 1234));  // immediate PDUs are not window-checked
  EXPECT_EQ(w.exp_cmd_sn(), 5u);
}

TEST(CmdWindow, WrapsAround) {
  CmdWindow w(0xFFFFFFFEu, 4);
  EXPECT_EQ(w.max_cmd_sn(), 1u);
  EXPECT_TRUE(w.accept(false, 0xFFFFFFFEu));
  EXPECT_TRUE(w.accept(false, 0xFFFFFFFFu));
  EXPECT_TRUE(w.accept(false, 0));
  EXPECT_EQ(w.exp_cmd_sn(), 1u);
  EXPECT_FALSE(w.accept(false, 0xFFFFFFFFu));
  EXPECT_TRUE(sn_lt(0xFFFFFFFFu, 0));
  EXPECT_TRUE(sn_gt(0, 0xFFFFFFFFu));
}

}  // namespace
}  // namespace cairn::target::iscsi
