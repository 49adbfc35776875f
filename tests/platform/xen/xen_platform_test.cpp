// The Xen platform assembled from the fake libxl and libxenstore.
#include "xen/xen_platform.hpp"

#include <gtest/gtest.h>

#include <cerrno>

#include "fakes.hpp"

namespace sd::xen {
namespace {

class XenPlatformTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake::libxl_reset();
    fake::xenstore_reset();
  }
  void TearDown() override {
    fake::libxl_reset();
    fake::xenstore_reset();
  }
  boost::asio::io_context io_;
};

TEST_F(XenPlatformTest, Open_FakesAvailable_IsNamedXen) {
  auto p = open_platform(io_);

  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ((*p)->name(), "xen");
}

TEST_F(XenPlatformTest, Open_FakesAvailable_StoreIsXenstore) {
  auto p = open_platform(io_);
  ASSERT_TRUE(p);

  ASSERT_TRUE((*p)->store().write("/x", "1"));

  EXPECT_EQ(fake::xenstore().kv.at("/x"), "1");
}

TEST_F(XenPlatformTest, Open_XenstoreUnreachable_ReturnsUnavailableAndFreesCtx) {
  fake::xenstore().open_errno = ECONNREFUSED;

  auto p = open_platform(io_);

  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Code::kUnavailable);
  EXPECT_EQ(fake::libxl().ctx_frees, 1);
}

TEST_F(XenPlatformTest, Open_LibxlUnavailable_ReturnsUnavailable) {
  fake::libxl().ctx_alloc_rc = ERROR_FAIL;

  auto p = open_platform(io_);

  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Code::kUnavailable);
}

}  // namespace
}  // namespace sd::xen
