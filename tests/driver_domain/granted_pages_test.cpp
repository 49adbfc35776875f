// GrantedPages on the local platform: every page mapped as its fd arrives,
// the fd closed at once, so a driver domain serving many devices holds no
// page fds (its RLIMIT_NOFILE is 1024; one vif's pool is 514 pages).
#include "granted_pages.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "sd/core/netif.hpp"

namespace sd {
namespace {

size_t open_fds() {
  size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) (void)e, ++n;
  return n;
}

UniqueFd page_with(uint8_t byte) {
  UniqueFd fd(::memfd_create("page", MFD_CLOEXEC));
  EXPECT_TRUE(fd);
  EXPECT_EQ(::ftruncate(fd.get(), 4096), 0);
  EXPECT_EQ(::pwrite(fd.get(), &byte, 1, 0), 1);
  return fd;
}

TEST(GrantedPagesTest, EachPageMappedOnArrival_FdClosedAtOnce) {
  const size_t before = open_fds();
  drvdom::GrantedPages pages(4);
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(pages.add(i, page_with(static_cast<uint8_t>(0x10 + i))));
  EXPECT_EQ(open_fds(), before);
  EXPECT_EQ(pages.received(), 4u);
  EXPECT_EQ(pages.map_error(), 0);
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_NE(pages.get(i), nullptr);
    EXPECT_EQ(pages.get(i)[0], 0x10 + i);
  }
  EXPECT_EQ(pages.get(4), nullptr);
}

TEST(GrantedPagesTest, OutOfRangeOrSecondFdForARef_Refused) {
  drvdom::GrantedPages pages(2);
  EXPECT_TRUE(pages.add(0, page_with(1)));
  EXPECT_FALSE(pages.add(0, page_with(2)));
  EXPECT_FALSE(pages.add(2, page_with(3)));
  EXPECT_EQ(pages.received(), 1u);
  EXPECT_EQ(pages.get(0)[0], 1);
  EXPECT_EQ(pages.get(1), nullptr);
}

// The local platform's pool: one fd holding every page, one mapping.
TEST(GrantedPagesTest, OneFdForARunOfPages_EachPageAtItsRef) {
  UniqueFd fd(::memfd_create("pool", MFD_CLOEXEC));
  ASSERT_TRUE(fd);
  ASSERT_EQ(::ftruncate(fd.get(), 3 * 4096), 0);
  for (uint8_t i = 0; i < 3; ++i) ASSERT_EQ(::pwrite(fd.get(), &i, 1, i * 4096), 1);
  const size_t before = open_fds();
  drvdom::GrantedPages pages(4);
  EXPECT_EQ(pages.add(1, UniqueFd(::dup(fd.get()))), 3u);
  EXPECT_EQ(open_fds(), before);
  EXPECT_EQ(pages.received(), 3u);
  EXPECT_EQ(pages.get(0), nullptr);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(pages.get(1 + i)[0], i);
  EXPECT_EQ(pages.add(0, UniqueFd(::dup(fd.get()))), 0u);  // would run past the pool
  EXPECT_EQ(pages.add(0, page_with(9)), 1u);
  EXPECT_EQ(pages.map_error(), 0);
}

TEST(GrantedPagesTest, UnmappableFd_CountsReceivedAndReportsError) {
  drvdom::GrantedPages pages(2);
  EXPECT_TRUE(pages.add(0, page_with(1)));
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ::close(p[1]);
  EXPECT_EQ(pages.add(1, UniqueFd(p[0])), 1u);  // a pipe cannot be mapped: one page taken, unmapped
  EXPECT_EQ(pages.received(), 2u);
  EXPECT_NE(pages.map_error(), 0);
  EXPECT_EQ(pages.get(1), nullptr);
}

// Many vif pools, more pages in all than the fd limit drvdom runs with.
TEST(GrantedPagesTest, ManyVifPools_PastTheFdLimit) {
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  rlimit low{256, old.rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<std::unique_ptr<drvdom::GrantedPages>> pools;
  for (int v = 0; v < 8; ++v) {
    pools.push_back(std::make_unique<drvdom::GrantedPages>(netif::kPoolPages));
    for (uint32_t i = 0; i < netif::kPoolPages; ++i) ASSERT_TRUE(pools.back()->add(i, page_with(static_cast<uint8_t>(v))));
    EXPECT_EQ(pools.back()->received(), netif::kPoolPages);
  }
  for (int v = 0; v < 8; ++v) EXPECT_EQ(pools[v]->get(netif::kPoolPages - 1)[0], v);
  pools.clear();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
}

}  // namespace
}  // namespace sd
