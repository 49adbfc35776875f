// XenStore against the fake libxenstore (fakes.hpp): the Store contract
// (tests/platform/store_test.cpp checks the local one) and the error paths.
#include "xen/store.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <vector>

#include "fakes.hpp"
#include "run_until.hpp"

namespace sd::xen {
namespace {

using test::run_until;
using test::settle;

class XenStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake::xenstore_reset();
    auto s = XenStore::open(io_);
    ASSERT_TRUE(s) << s.error().to_string();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    settle(io_, std::chrono::milliseconds(5));
    fake::xenstore_reset();
  }
  // Records every path a watch reports.
  platform::Store::WatchId record_watch(const std::string& path) {
    return store_->watch(path, [this](const std::string& p) { fired_.push_back(p); });
  }

  boost::asio::io_context io_;
  std::unique_ptr<XenStore> store_;
  std::vector<std::string> fired_;
};

TEST(XenStoreOpen, XsOpenFails_ReturnsUnavailableWithErrno) {
  fake::xenstore_reset();
  fake::xenstore().open_errno = ENOENT;
  boost::asio::io_context io;

  auto s = XenStore::open(io);

  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kUnavailable);
  EXPECT_NE(s.error().message.find("xs_open"), std::string::npos);
  fake::xenstore_reset();
}

TEST_F(XenStoreTest, Destructor_Always_ClosesHandle) {
  store_.reset();

  EXPECT_EQ(fake::xenstore().closes, 1);
}

// ---- read / write / remove / list ---------------------------------------------

TEST_F(XenStoreTest, Write_ThenRead_ReturnsValue) {
  ASSERT_TRUE(store_->write("/local/domain/1/name", "netdd"));

  auto v = store_->read("/local/domain/1/name");

  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(*v, "netdd");
}

TEST_F(XenStoreTest, SetAccess_OwnerAndReaders_OwnerFirstThenReadOnly) {
  ASSERT_TRUE(store_->write("/local/domain/5/device/sd-vif/0/state", "1"));

  auto r = store_->set_access("/local/domain/5/device/sd-vif/0", 5, {7});

  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(fake::xenstore().perms["/local/domain/5/device/sd-vif/0"],
            (std::vector<std::pair<unsigned, unsigned>>{{5, XS_PERM_NONE}, {7, XS_PERM_READ}}));
}

TEST_F(XenStoreTest, SetAccess_AbsentPath_InvalidInputNamingPath) {
  auto r = store_->set_access("/nowhere", 5, {});

  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInvalidInput);
  EXPECT_NE(r.error().message.find("no such store path /nowhere"), std::string::npos) << r.error().message;
}

TEST_F(XenStoreTest, SetAccess_Refused_InvalidInputNamingCall) {
  ASSERT_TRUE(store_->write("/k", "v"));
  fake::xenstore().perms_errno = EACCES;

  auto r = store_->set_access("/k", 5, {});

  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInvalidInput);
  EXPECT_NE(r.error().message.find("xs_set_permissions /k"), std::string::npos) << r.error().message;
}

TEST_F(XenStoreTest, Write_ValueWithNul_ReadBackWhole) {
  std::string value("a\0b", 3);
  ASSERT_TRUE(store_->write("/k", value));

  auto v = store_->read("/k");

  ASSERT_TRUE(v);
  EXPECT_EQ(*v, value);
}

TEST_F(XenStoreTest, Read_Absent_ReturnsInvalidInputNamingPath) {
  auto v = store_->read("/nope");

  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, Code::kInvalidInput);
  EXPECT_NE(v.error().message.find("/nope"), std::string::npos);
}

TEST_F(XenStoreTest, Read_XsFailsWithEio_ReturnsSystemErrorWithCallAndPath) {
  fake::xenstore().read_errno = EIO;

  auto v = store_->read("/k");

  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, Code::kSystem);
  EXPECT_NE(v.error().message.find("xs_read /k"), std::string::npos) << v.error().message;
}

TEST_F(XenStoreTest, Read_XsBusy_ReturnsRetry) {
  fake::xenstore().read_errno = EAGAIN;

  auto v = store_->read("/k");

  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, Code::kRetry);
}

TEST_F(XenStoreTest, Write_PermissionDenied_ReturnsInvalidInputWithPath) {
  fake::xenstore().write_errno = EACCES;

  auto r = store_->write("/local/domain/0/x", "1");

  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInvalidInput);
  EXPECT_NE(r.error().message.find("xs_write /local/domain/0/x"), std::string::npos);
}

TEST_F(XenStoreTest, Remove_Subtree_RemovesChildren) {
  ASSERT_TRUE(store_->write("/a/b", "1"));
  ASSERT_TRUE(store_->write("/a/c/d", "2"));
  ASSERT_TRUE(store_->write("/ab", "3"));

  ASSERT_TRUE(store_->remove("/a"));

  EXPECT_FALSE(store_->read("/a/b"));
  EXPECT_FALSE(store_->read("/a/c/d"));
  EXPECT_TRUE(store_->read("/ab"));
}

TEST_F(XenStoreTest, Remove_Absent_Succeeds) {
  auto r = store_->remove("/nothing/here");

  EXPECT_TRUE(r);
}

TEST_F(XenStoreTest, Remove_XsFails_ReturnsError) {
  fake::xenstore().rm_errno = EIO;

  auto r = store_->remove("/a");

  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kSystem);
  EXPECT_NE(r.error().message.find("xs_rm /a"), std::string::npos);
}

TEST_F(XenStoreTest, List_Tree_ReturnsDirectChildren) {
  ASSERT_TRUE(store_->write("/vif/0/state", "4"));
  ASSERT_TRUE(store_->write("/vif/0/mac", "x"));
  ASSERT_TRUE(store_->write("/vif/1/state", "1"));

  auto children = store_->list("/vif");

  EXPECT_EQ(children, (std::vector<std::string>{"0", "1"}));
}

TEST_F(XenStoreTest, List_Absent_ReturnsEmpty) {
  EXPECT_TRUE(store_->list("/nothing").empty());
}

TEST_F(XenStoreTest, List_XsFails_ReturnsEmpty) {
  ASSERT_TRUE(store_->write("/vif/0", "x"));
  fake::xenstore().directory_errno = EIO;

  EXPECT_TRUE(store_->list("/vif").empty());
}

// ---- watches -----------------------------------------------------------------------

TEST_F(XenStoreTest, Watch_Registered_FiresOnceWithWatchedPath) {
  record_watch("/backend/vif");

  ASSERT_TRUE(run_until(io_, [&] { return !fired_.empty(); }));
  settle(io_);

  EXPECT_EQ(fired_, std::vector<std::string>{"/backend/vif"});
}

TEST_F(XenStoreTest, Watch_ChildWritten_FiresWithChangedPath) {
  record_watch("/backend/vif");
  ASSERT_TRUE(run_until(io_, [&] { return fired_.size() == 1; }));

  ASSERT_TRUE(store_->write("/backend/vif/1/0/state", "4"));
  ASSERT_TRUE(run_until(io_, [&] { return fired_.size() == 2; }));

  EXPECT_EQ(fired_[1], "/backend/vif/1/0/state");
}

TEST_F(XenStoreTest, Watch_SiblingWritten_DoesNotFire) {
  record_watch("/backend/vif");
  ASSERT_TRUE(run_until(io_, [&] { return fired_.size() == 1; }));

  ASSERT_TRUE(store_->write("/backend/vifx", "1"));
  settle(io_);

  EXPECT_EQ(fired_.size(), 1u);
}

TEST_F(XenStoreTest, Watch_ParentRemoved_FiresWithWatchedPath) {
  ASSERT_TRUE(store_->write("/backend/vif/1", "x"));
  record_watch("/backend/vif/1");
  ASSERT_TRUE(run_until(io_, [&] { return fired_.size() == 1; }));

  ASSERT_TRUE(store_->remove("/backend"));
  ASSERT_TRUE(run_until(io_, [&] { return fired_.size() == 2; }));

  EXPECT_EQ(fired_[1], "/backend/vif/1");
}

TEST_F(XenStoreTest, Watch_Registered_UsesDistinctTokens) {
  record_watch("/a");
  record_watch("/a");

  ASSERT_EQ(fake::xenstore().watches.size(), 2u);
  EXPECT_NE(fake::xenstore().watches[0].second, fake::xenstore().watches[1].second);
}

TEST_F(XenStoreTest, Unwatch_ThenWrite_DoesNotFire) {
  auto id = record_watch("/a");
  ASSERT_TRUE(run_until(io_, [&] { return fired_.size() == 1; }));

  store_->unwatch(id);
  ASSERT_TRUE(store_->write("/a/b", "1"));
  settle(io_);

  EXPECT_EQ(fired_.size(), 1u);
  EXPECT_EQ(fake::xenstore().unwatches, 1);
  EXPECT_TRUE(fake::xenstore().watches.empty());
}

// Events already queued in libxenstore for an unwatched token are dropped.
TEST_F(XenStoreTest, Unwatch_BeforeQueuedEventRuns_EventDropped) {
  auto id = record_watch("/a");  // its registration event is queued

  store_->unwatch(id);
  settle(io_);

  EXPECT_TRUE(fired_.empty());
}

TEST_F(XenStoreTest, Watch_XsWatchFails_ReturnsZeroAndRecordsError) {
  fake::xenstore().watch_errno = ENOSPC;

  auto id = record_watch("/a");
  settle(io_);

  EXPECT_EQ(id, 0u);
  EXPECT_NE(store_->last_error().message.find("xs_watch /a"), std::string::npos);
  EXPECT_TRUE(fired_.empty());
}

TEST_F(XenStoreTest, Watch_XsFilenoFails_ReturnsZero) {
  fake::xenstore().fileno_errno = EBADF;

  auto id = record_watch("/a");

  EXPECT_EQ(id, 0u);
  EXPECT_NE(store_->last_error().message.find("xs_fileno"), std::string::npos);
}

TEST_F(XenStoreTest, Watch_CheckWatchBroken_StopsWithoutFiring) {
  fake::xenstore().check_watch_errno = EIO;

  record_watch("/a");
  settle(io_);

  EXPECT_TRUE(fired_.empty());
}

TEST_F(XenStoreTest, Destructor_LiveWatch_Unwatches) {
  record_watch("/a");

  store_.reset();

  EXPECT_EQ(fake::xenstore().unwatches, 1);
}

}  // namespace
}  // namespace sd::xen
