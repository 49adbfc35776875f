// libxl's fds and timeouts on an io_context (osevent.hpp), with the fake
// libxl registering an eventfd and a timeout through the hooks; and the
// level-triggered FdWatcher underneath.
#include "xen/osevent.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <thread>

#include "fakes.hpp"
#include "run_until.hpp"
#include "xen/fd_watcher.hpp"

namespace sd::xen {
namespace {

using namespace std::chrono_literals;
using test::run_until;
using test::settle;

class XenOsEventsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake::libxl_reset();
    ASSERT_EQ(libxl_ctx_alloc(&ctx_, LIBXL_VERSION, 0, nullptr), 0);
    events_ = std::make_unique<LibxlOsEvents>(io_);
    events_->attach(ctx_);  // the fake registers its eventfd here
  }
  void TearDown() override {
    events_->detach();
    libxl_ctx_free(ctx_);
    events_.reset();
    settle(io_, 5ms);
    fake::libxl_reset();
  }

  boost::asio::io_context io_;
  libxl_ctx* ctx_ = nullptr;
  std::unique_ptr<LibxlOsEvents> events_;
};

TEST_F(XenOsEventsTest, Attach_FakeRegistersFd_OneFdRegistration) {
  EXPECT_EQ(fake::libxl().fd_registrations, 1);
  EXPECT_EQ(events_->fd_registrations(), 1u);
}

TEST_F(XenOsEventsTest, FdReadable_CallsOccurredFdWithPollin) {
  fake::libxl_make_fd_readable();

  ASSERT_TRUE(run_until(io_, [] { return fake::libxl().occurred_fd > 0; }));

  EXPECT_EQ(fake::libxl().occurred_fd, 1);
  EXPECT_TRUE(fake::libxl().last_revents & POLLIN);
  EXPECT_EQ(fake::libxl().occurred_fd_bogus, 0);
}

TEST_F(XenOsEventsTest, FdPaused_Readable_NotDelivered) {
  fake::libxl_modify_fd(0);

  fake::libxl_make_fd_readable();
  settle(io_);

  EXPECT_EQ(fake::libxl().occurred_fd, 0);
}

// Readiness that arrived while nothing waited (an edge Asio never saw) is
// still delivered: the watcher polls when it re-arms.
TEST_F(XenOsEventsTest, FdResumedWhileAlreadyReadable_Delivered) {
  fake::libxl_modify_fd(0);
  fake::libxl_make_fd_readable();
  settle(io_);

  fake::libxl_modify_fd(POLLIN);

  EXPECT_TRUE(run_until(io_, [] { return fake::libxl().occurred_fd == 1; }));
}

TEST_F(XenOsEventsTest, FdDeregistered_Readable_NotDelivered) {
  fake::libxl_deregister_fd();

  fake::libxl_make_fd_readable();
  settle(io_);

  EXPECT_EQ(fake::libxl().occurred_fd, 0);
  EXPECT_EQ(events_->fd_registrations(), 0u);
}

TEST_F(XenOsEventsTest, Timeout_Registered_FiresOnceAndIsDeregistered) {
  fake::libxl_register_timeout(20);

  ASSERT_TRUE(run_until(io_, [] { return fake::libxl().occurred_timeout > 0; }));
  settle(io_);

  EXPECT_EQ(fake::libxl().occurred_timeout, 1);
  EXPECT_EQ(events_->timeout_registrations(), 0u);
}

TEST_F(XenOsEventsTest, Timeout_FarAway_DoesNotFireEarly) {
  fake::libxl_register_timeout(3600 * 1000);

  settle(io_);

  EXPECT_EQ(fake::libxl().occurred_timeout, 0);
  EXPECT_EQ(events_->timeout_registrations(), 1u);
}

TEST_F(XenOsEventsTest, Timeout_ModifiedToNow_FiresOnceAtOnce) {
  fake::libxl_register_timeout(3600 * 1000);

  fake::libxl_timeout_now();
  ASSERT_TRUE(run_until(io_, [] { return fake::libxl().occurred_timeout > 0; }, 1000ms));
  settle(io_);

  EXPECT_EQ(fake::libxl().occurred_timeout, 1);
}

// libxl_event.h: timeout_modify may race with the timeout occurring; it must
// then occur once.
TEST_F(XenOsEventsTest, Timeout_ExpiredThenModified_FiresOnce) {
  fake::libxl_register_timeout(0);
  std::this_thread::sleep_for(5ms);  // expired, not yet handled

  fake::libxl_timeout_now();
  settle(io_);

  EXPECT_EQ(fake::libxl().occurred_timeout, 1);
}

// ---- FdWatcher ------------------------------------------------------------------

class XenFdWatcherTest : public ::testing::Test {
 protected:
  void TearDown() override { ::close(efd_); }
  boost::asio::io_context io_;
  int efd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
};

TEST_F(XenFdWatcherTest, WritableFd_PolloutRequested_ReportsPollout) {
  short seen = 0;
  auto w = FdWatcher::create(io_, efd_, POLLOUT, [&](short revents) { seen = revents; });
  ASSERT_TRUE(w);

  ASSERT_TRUE(run_until(io_, [&] { return seen != 0; }));

  EXPECT_TRUE(seen & POLLOUT);
}

TEST_F(XenFdWatcherTest, ReadableNotConsumed_CalledAgain) {
  int calls = 0;
  auto w = FdWatcher::create(io_, efd_, POLLIN, [&](short) { ++calls; });
  ASSERT_TRUE(w);
  uint64_t one = 1;
  ASSERT_EQ(::write(efd_, &one, sizeof one), 8);

  EXPECT_TRUE(run_until(io_, [&] { return calls >= 2; }));
}

TEST_F(XenFdWatcherTest, DestroyedInsideCallback_NotCalledAgain) {
  int calls = 0;
  std::unique_ptr<FdWatcher> w;
  auto made = FdWatcher::create(io_, efd_, POLLIN, [&](short) {
    ++calls;
    w.reset();
  });
  ASSERT_TRUE(made);
  w = std::move(*made);
  uint64_t one = 1;
  ASSERT_EQ(::write(efd_, &one, sizeof one), 8);

  ASSERT_TRUE(run_until(io_, [&] { return calls > 0; }));
  settle(io_);

  EXPECT_EQ(calls, 1);
}

TEST_F(XenFdWatcherTest, BadFd_ReturnsSystemError) {
  auto w = FdWatcher::create(io_, -1, POLLIN, [](short) {});

  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Code::kSystem);
}

TEST_F(XenFdWatcherTest, Destroyed_LeavesCallersFdOpen) {
  auto w = FdWatcher::create(io_, efd_, POLLIN, [](short) {});
  ASSERT_TRUE(w);

  w->reset();

  uint64_t one = 1;
  EXPECT_EQ(::write(efd_, &one, sizeof one), 8);
}

}  // namespace
}  // namespace sd::xen
