// make_platform(): which platform `--platform auto|local|xen` gives.
#include <gtest/gtest.h>

#include <filesystem>

#include "sd/core/platform.hpp"

namespace sd::platform {
namespace {

TEST(SelectPlatform, Auto_NotAXenControlDomain_PicksLocal) {
  if (std::filesystem::exists("/proc/xen/capabilities")) GTEST_SKIP() << "this host runs on Xen";
  boost::asio::io_context io;

  auto p = make_platform("auto", io, Options{});

  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ((*p)->name(), "local");
}

TEST(SelectPlatform, Xen_NotAXenControlDomain_UnavailableWithReason) {
  if (std::filesystem::exists("/proc/xen/capabilities")) GTEST_SKIP() << "this host runs on Xen";
  boost::asio::io_context io;

  auto p = make_platform("xen", io, Options{});

  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Code::kUnavailable);
  EXPECT_NE(p.error().message.find("xen platform not available"), std::string::npos) << p.error().message;
}

TEST(SelectPlatform, UnknownName_InvalidInputListingChoices) {
  boost::asio::io_context io;

  auto p = make_platform("kvm", io, Options{});

  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Code::kInvalidInput);
  EXPECT_NE(p.error().message.find("expected auto, local or xen"), std::string::npos);
}

}  // namespace
}  // namespace sd::platform
