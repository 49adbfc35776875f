#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "local/local_platform.hpp"
#include "sd/core/control_channel.hpp"
#include "sd/core/netns.hpp"
#include <unistd.h>
#include <cstring>

namespace {

using namespace sd;

TEST(LocalStore, WriteThenRead_ReturnsValue) {
  boost::asio::io_context io;
  local::LocalStore s(io);

  ASSERT_TRUE(s.write("/local/domain/1/device/vif/0/state", "4").has_value());

  EXPECT_EQ(s.read("/local/domain/1/device/vif/0/state").value_or(""), "4");
}

TEST(LocalStore, ReadMissing_InvalidInput) {
  boost::asio::io_context io;
  local::LocalStore s(io);

  auto r = s.read("/nope");

  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Code::kInvalidInput);
}

TEST(LocalStore, BadPath_Rejected) {
  boost::asio::io_context io;
  local::LocalStore s(io);

  EXPECT_FALSE(s.write("relative/path", "x").has_value());
  EXPECT_FALSE(s.write("/double//slash", "x").has_value());
  EXPECT_FALSE(s.write("/trailing/", "x").has_value());
}

TEST(LocalStore, List_DirectChildrenOnce) {
  boost::asio::io_context io;
  local::LocalStore s(io);
  (void)s.write("/d/a/x", "1");
  (void)s.write("/d/a/y", "2");
  (void)s.write("/d/b", "3");
  (void)s.write("/dd", "4");

  auto l = s.list("/d");

  EXPECT_EQ(l, (std::vector<std::string>{"a", "b"}));
}

TEST(LocalStore, RemoveSubtree_RemovesChildrenNotSiblings) {
  boost::asio::io_context io;
  local::LocalStore s(io);
  (void)s.write("/d/a/x", "1");
  (void)s.write("/d/ab", "2");

  ASSERT_TRUE(s.remove("/d/a").has_value());

  EXPECT_FALSE(s.read("/d/a/x").has_value());
  EXPECT_TRUE(s.read("/d/ab").has_value());
}

TEST(LocalStore, Watch_FiresOnRegistrationAndOnChangeBelow) {
  boost::asio::io_context io;
  local::LocalStore s(io);
  std::vector<std::string> seen;
  s.watch("/be/1", [&](const std::string& p) { seen.push_back(p); });
  (void)s.write("/be/1/state", "3");
  (void)s.write("/be/10/state", "3");  // not below /be/1

  io.run();

  EXPECT_EQ(seen, (std::vector<std::string>{"/be/1", "/be/1/state"}));
}

TEST(LocalStore, Unwatch_NoMoreEvents) {
  boost::asio::io_context io;
  local::LocalStore s(io);
  int fired = 0;
  auto id = s.watch("/x", [&](const std::string&) { ++fired; });
  io.run();
  io.restart();
  s.unwatch(id);

  (void)s.write("/x/y", "1");
  io.run();

  EXPECT_EQ(fired, 1);
}

TEST(LocalEventChannel, Notify_OtherEndSeesOneEvent) {
  auto pair = local::make_local_event_channel();
  ASSERT_TRUE(pair.has_value());

  ASSERT_TRUE(pair->first->notify().has_value());

  EXPECT_EQ(pair->second->consume().value_or(0), 1u);
  EXPECT_EQ(pair->first->consume().value_or(99), 0u);
}

TEST(LocalDevicePlumbing, OutOfRangeRef_NoPage) {
  auto dev = local::LocalDevicePlumbing::create(2);
  ASSERT_TRUE(dev.has_value());

  EXPECT_NE((*dev)->page(1), nullptr);
  EXPECT_EQ((*dev)->page(2), nullptr);
}

TEST(LocalDevicePlumbing, GrantWithdrawn_PoolNoLongerHandedOut) {
  auto dev = local::LocalDevicePlumbing::create(2);
  ASSERT_TRUE(dev.has_value());
  EXPECT_FALSE((*dev)->pool_fd_for(5).has_value());  // not granted to 5 yet
  ASSERT_TRUE((*dev)->grant_to({5, 6}).has_value());
  ASSERT_TRUE((*dev)->pool_fd_for(5).has_value());

  ASSERT_TRUE((*dev)->grant_to({6}).has_value());

  EXPECT_FALSE((*dev)->pool_fd_for(5).has_value());
  EXPECT_TRUE((*dev)->pool_fd_for(6).has_value());
}

TEST(LocalDevicePlumbing, WholePoolInOneSealedFd_PagesAtTheirOffsets) {
  auto dev = local::LocalDevicePlumbing::create(3);
  ASSERT_TRUE(dev.has_value());
  std::memset((*dev)->page(2), 0x5a, 4096);
  ASSERT_TRUE((*dev)->grant_to({5}).has_value());
  auto fd = (*dev)->pool_fd_for(5);
  ASSERT_TRUE(fd.has_value());
  EXPECT_EQ(ctl::granted_pages(fd->get()).value_or(0), 3u);
  uint8_t b = 0;
  EXPECT_EQ(::pread(fd->get(), &b, 1, 2 * 4096 + 17), 1);
  EXPECT_EQ(b, 0x5a);
  // A peer cannot shrink the pool under its owner's mapping.
  EXPECT_NE(::ftruncate(fd->get(), 4096), 0);
}

TEST(Netns, BadName_Rejected) {
  EXPECT_FALSE(valid_netns_name("../etc"));
  EXPECT_FALSE(valid_netns_name(""));
  EXPECT_TRUE(valid_netns_name("sd-netdd"));
}

}  // namespace
