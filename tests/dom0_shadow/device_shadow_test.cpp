#include <gtest/gtest.h>

#include "device_shadow.hpp"

namespace {

using namespace sd;
using dom0::DeviceShadow;
using dom0::DeviceState;

config::DeviceSpec vif0() {
  config::DeviceSpec s{};
  s.cls = config::DeviceClass::kVif;
  s.index = 0;
  s.backend = "netdd";
  return s;
}

TEST(DeviceShadow, New_IsNormalWithClassPath) {
  DeviceShadow d("guest1", vif0());

  EXPECT_EQ(d.state(), DeviceState::kNormal);
  EXPECT_EQ(d.id(), "guest1/vif/0");
}

TEST(DeviceShadow, FaultReadyReplayed_BackToNormalWithOutage) {
  DeviceShadow d("guest1", vif0());

  ASSERT_TRUE(d.on_backend_fault(DeviceShadow::Clock::now()));
  ASSERT_TRUE(d.on_backend_ready());
  ASSERT_TRUE(d.on_replayed());

  EXPECT_EQ(d.state(), DeviceState::kNormal);
  EXPECT_EQ(d.recoveries(), 1u);
  EXPECT_TRUE(d.last_outage_ms().has_value());
}

TEST(DeviceShadow, DuplicateFault_Ignored) {
  DeviceShadow d("guest1", vif0());
  ASSERT_TRUE(d.on_backend_fault(DeviceShadow::Clock::now()));

  bool again = d.on_backend_fault(DeviceShadow::Clock::now());

  EXPECT_FALSE(again);
  EXPECT_EQ(d.state(), DeviceState::kActive);
}

TEST(DeviceShadow, ReadyWithoutFault_Ignored) {
  DeviceShadow d("guest1", vif0());

  EXPECT_FALSE(d.on_backend_ready());
  EXPECT_EQ(d.state(), DeviceState::kNormal);
}

TEST(DeviceShadow, FaultDuringRecovery_BackToActive) {
  DeviceShadow d("guest1", vif0());
  d.on_backend_fault(DeviceShadow::Clock::now());
  d.on_backend_ready();

  ASSERT_TRUE(d.on_backend_fault(DeviceShadow::Clock::now()));

  EXPECT_EQ(d.state(), DeviceState::kActive);
}

TEST(DeviceShadow, Fenced_OperatorRestartReady_Recovers) {
  DeviceShadow d("guest1", vif0());
  d.on_backend_fault(DeviceShadow::Clock::now());
  ASSERT_TRUE(d.on_fenced());

  ASSERT_TRUE(d.on_backend_ready());
  ASSERT_TRUE(d.on_replayed());

  EXPECT_EQ(d.state(), DeviceState::kNormal);
}

}  // namespace

// A device its backend could not attach is reported failed; the next
// incarnation (after a fault, or just Ready) tries it again.
TEST(DeviceShadow, Failed_ReportedThenRetriedByTheNextIncarnation) {
  DeviceShadow d("guest1", vif0());
  EXPECT_TRUE(d.on_failed("backend refused the vbd: no such disk"));
  EXPECT_EQ(d.state(), DeviceState::kFailed);
  EXPECT_EQ(d.to_json()["state"], "failed");
  EXPECT_EQ(d.to_json()["error"], "backend refused the vbd: no such disk");

  EXPECT_TRUE(d.on_backend_fault(DeviceShadow::Clock::now()));
  EXPECT_EQ(d.state(), DeviceState::kActive);
  EXPECT_TRUE(d.on_backend_ready());
  EXPECT_TRUE(d.on_replayed());
  EXPECT_EQ(d.state(), DeviceState::kNormal);
  EXPECT_FALSE(d.to_json().contains("error"));

  EXPECT_TRUE(d.on_failed("lost"));
  EXPECT_TRUE(d.on_backend_ready());
  EXPECT_EQ(d.state(), DeviceState::kRecovering);
}

TEST(DeviceShadow, Fenced_NotMarkedFailed) {
  DeviceShadow d("guest1", vif0());
  ASSERT_TRUE(d.on_fenced());
  EXPECT_FALSE(d.on_failed("x"));
  EXPECT_EQ(d.state(), DeviceState::kFenced);
}
