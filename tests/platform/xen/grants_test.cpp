// The Xen pool sharing (gntshr owner / gnttab peer through a directory page)
// and interdomain event channels, against the fakes in fakes.hpp.
#include <gtest/gtest.h>
#include <poll.h>

#include <cstring>

#include "fakes.hpp"
#include "sd/platform/xen/evtchn.hpp"
#include "sd/platform/xen/grants.hpp"

extern "C" {
#include <xengnttab.h>
}

namespace sd::xen {
namespace {

class GrantsTest : public ::testing::Test {
 protected:
  void SetUp() override { fake::gnt_reset(); }
  void TearDown() override {
    EXPECT_EQ(fake::gnt().open_handles, 0);
    fake::gnt_reset();
  }
};

TEST_F(GrantsTest, ShareThenMap_PeerSeesOwnersWritesAndBack) {
  auto owner = SharedPool::share(7, 4);
  ASSERT_TRUE(owner) << owner.error().to_string();
  std::strcpy(reinterpret_cast<char*>((*owner)->page(3)), "from the guest");

  auto peer = MappedPool::map(3, (*owner)->directory_ref(), 4);

  ASSERT_TRUE(peer) << peer.error().to_string();
  EXPECT_STREQ(reinterpret_cast<char*>((*peer)->base() + 3 * 4096), "from the guest");
  std::strcpy(reinterpret_cast<char*>((*peer)->base()), "from the backend");
  EXPECT_STREQ(reinterpret_cast<char*>((*owner)->page(0)), "from the backend");
}

TEST_F(GrantsTest, Destroyed_UnsharesAndUnmapsEverything) {
  {
    auto owner = SharedPool::share(7, 4);
    ASSERT_TRUE(owner);
    auto peer = MappedPool::map(3, (*owner)->directory_ref(), 4);
    ASSERT_TRUE(peer);
    EXPECT_EQ(fake::gnt().shared_pages, 5);  // the pool and its directory
    EXPECT_EQ(fake::gnt().mapped_pages, 4);  // the directory was unmapped after reading
  }
  EXPECT_EQ(fake::gnt().shared_pages, 0);
  EXPECT_EQ(fake::gnt().mapped_pages, 0);
}

TEST_F(GrantsTest, PageOutOfRange_Null) {
  auto owner = SharedPool::share(7, 2);
  ASSERT_TRUE(owner);
  EXPECT_EQ((*owner)->page(2), nullptr);
}

TEST_F(GrantsTest, WrongPageCount_InvalidInputNamesBoth) {
  auto owner = SharedPool::share(7, 4);
  ASSERT_TRUE(owner);

  auto peer = MappedPool::map(3, (*owner)->directory_ref(), 5);

  ASSERT_FALSE(peer);
  EXPECT_EQ(peer.error().code, Code::kInvalidInput);
  EXPECT_NE(peer.error().message.find("4 pages, expected 5"), std::string::npos) << peer.error().message;
}

TEST_F(GrantsTest, DirectoryWithBadMagic_InvalidInput) {
  // A guest that shares a page that is not a directory.
  auto h = xengntshr_open(nullptr, 0);
  uint32_t ref = 0;
  void* p = xengntshr_share_pages(h, 3, 1, &ref, 0);
  ASSERT_NE(p, nullptr);
  std::memset(p, 0xab, 4096);

  auto peer = MappedPool::map(3, ref, 4);

  ASSERT_FALSE(peer);
  EXPECT_EQ(peer.error().code, Code::kInvalidInput);
  EXPECT_NE(peer.error().message.find("not valid"), std::string::npos);
  xengntshr_unshare(h, p, 1);
  xengntshr_close(h);
}

TEST_F(GrantsTest, UnknownDirectoryRef_InvalidInput) {
  auto peer = MappedPool::map(3, 12345, 4);

  ASSERT_FALSE(peer);
  EXPECT_EQ(peer.error().code, Code::kInvalidInput);
  EXPECT_NE(peer.error().message.find("12345"), std::string::npos);
}

TEST_F(GrantsTest, ShareFails_SystemErrorNamesPeer) {
  fake::gnt().share_errno = ENOSPC;

  auto owner = SharedPool::share(9, 4);

  ASSERT_FALSE(owner);
  EXPECT_NE(owner.error().message.find("domain 9"), std::string::npos);
}

TEST_F(GrantsTest, TooManyPages_InvalidInput) {
  EXPECT_FALSE(SharedPool::share(9, PoolDirectory::kMaxRefs + 1));
  EXPECT_FALSE(MappedPool::map(9, 1, 0));
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

TEST_F(GrantsTest, EventChannel_OfferBindNotifyBothWays) {
  auto front = XenEventChannel::offer(3);
  ASSERT_TRUE(front) << front.error().to_string();
  auto back = XenEventChannel::bind(7, (*front)->port());
  ASSERT_TRUE(back) << back.error().to_string();

  ASSERT_TRUE((*front)->notify());
  EXPECT_TRUE(readable((*back)->wait_fd()));
  EXPECT_EQ(*(*back)->consume(), 1u);
  EXPECT_FALSE(readable((*back)->wait_fd()));
  EXPECT_EQ(*(*back)->consume(), 0u);

  ASSERT_TRUE((*back)->notify());
  EXPECT_EQ(*(*front)->consume(), 1u);
}

TEST_F(GrantsTest, EventChannel_BindToUnofferedPort_InvalidInput) {
  auto back = XenEventChannel::bind(7, 999);

  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().code, Code::kInvalidInput);
  EXPECT_NE(back.error().message.find("999"), std::string::npos);
}

}  // namespace
}  // namespace sd::xen
