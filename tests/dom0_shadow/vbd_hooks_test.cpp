// How shadowd opens a guest's disk (dom0_shadow/vbd/vbd_hooks.cpp,
// VbdHooks::open_disk): what it tells the guest about it, and what a bad
// target= gets as an error.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "vbd/vbd_hooks.hpp"

namespace {

namespace fs = std::filesystem;
using sd::dom0::VbdHooks;

class OpenDisk : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sd-vbdshadow-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path image(uint64_t bytes) {
    auto p = dir_ / "disk.img";
    std::ofstream(p).close();
    fs::resize_file(p, bytes);
    return p;
  }
  fs::path dir_;
};

TEST_F(OpenDisk, SparseImage_SizeInSectorsAndAllFeatures) {
  auto d = VbdHooks::open_disk(image(1 << 20).string(), false, 64, false);

  ASSERT_TRUE(d.has_value()) << d.error().message;
  EXPECT_EQ(d->second.sectors, 2048u);
  EXPECT_EQ(d->second.features, sd::blkif::kFeatureFlush | sd::blkif::kFeatureBarrier | sd::blkif::kFeatureDiscard);
  EXPECT_EQ(d->second.queue_limit, 64u);
  EXPECT_EQ(d->second.o_direct, 0u);
  EXPECT_TRUE(d->first);
}

TEST_F(OpenDisk, ReadOnly_NoDiscardAndMarkedReadOnly) {
  auto d = VbdHooks::open_disk(image(1 << 20).string(), true, 64, false);

  ASSERT_TRUE(d.has_value()) << d.error().message;
  EXPECT_EQ(d->second.readonly, 1u);
  EXPECT_EQ(d->second.features & sd::blkif::kFeatureDiscard, 0u);
}

TEST_F(OpenDisk, DirectIoSafe_OpenedODirectWhereTheFileSystemTakesIt) {
  auto d = VbdHooks::open_disk(image(1 << 20).string(), false, 64, true);

  ASSERT_TRUE(d.has_value()) << d.error().message;
  // ext4, xfs and tmpfs (6.6+) take it; a file system that refuses falls back.
  int flags = ::fcntl(d->first.get(), F_GETFL);
  EXPECT_EQ((flags & O_DIRECT) != 0, d->second.o_direct == 1);
}

TEST_F(OpenDisk, MissingTarget_ErrorNamesTheFileAndTheFix) {
  auto missing = (dir_ / "nope.img").string();
  auto d = VbdHooks::open_disk(missing, false, 64, false);

  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message.find(missing), std::string::npos);
  EXPECT_NE(d.error().message.find("truncate -s 1G"), std::string::npos);
}

TEST_F(OpenDisk, EmptyImage_Refused) {
  auto d = VbdHooks::open_disk(image(0).string(), false, 64, false);

  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message.find("is empty"), std::string::npos);
}

TEST_F(OpenDisk, Directory_RefusedAsNotADisk) {
  auto d = VbdHooks::open_disk(dir_.string(), false, 64, false);

  ASSERT_FALSE(d.has_value());
}

}  // namespace
