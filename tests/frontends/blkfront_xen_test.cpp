// The vbd beam splitter's Xen mode without Xen (the pool granted per
// backend domain by the frontend, as the dom0 ring proxy of an unmodified
// guest's disk will): an in-memory PoolSource, the test playing shadowd
// and each backend incarnation. What it checks: callers wait for the first
// pool, every backend domain gets its own pool (the old grants go first),
// and a write in flight when a backend dies is replayed into the next
// backend's pool with its data intact, its caller answered once.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <thread>

#include "fake_pools.hpp"
#include "fake_shadowd.hpp"
#include "sd/core/ring.hpp"
#include "vbd/blkfront.hpp"

namespace sd::front {
namespace {

using blkif::kPageSize;

class BlkfrontXenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ch = ctl::Channel::pair();
    ASSERT_TRUE(ch);
    shadowd_ = std::move(ch->first);
    ctl::Msg att;
    att.type = ctl::MsgType::kDevAttach;
    att.b = 3;
    blkif::DiskState d{};
    d.sectors = 2048;
    d.features = blkif::kFeatureFlush;
    d.queue_limit = 32;
    att.set_payload(d);
    ASSERT_TRUE(shadowd_.send(att));
    auto pools = std::make_unique<MemPools>(log_);
    pools_ = pools.get();
    auto f = Blkfront::attach(std::move(ch->second), std::move(pools));
    ASSERT_TRUE(f) << f.error().to_string();
    front_ = std::move(*f);
  }
  void TearDown() override {
    ctl::Msg bye;
    bye.type = ctl::MsgType::kShutdown;
    (void)shadowd_.send(bye);
    if (writer_.joinable()) writer_.join();
    front_.reset();
  }
  bool reconnect(uint32_t domid) { return test::reconnect(shadowd_, domid).has_value(); }
  // Backend `domid`'s next request (waits up to 2 s).
  std::optional<blkif_request> backend_req(ring::BackRing<blkif::Traits>& ring) {
    for (int i = 0; i < 200; ++i) {
      auto r = ring.get_request();
      if (r && *r) return **r;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  }

  PoolLog log_;
  MemPools* pools_ = nullptr;
  ctl::Channel shadowd_;
  std::unique_ptr<Blkfront> front_;
  std::thread writer_;
};

TEST_F(BlkfrontXenTest, WriteInFlightWhenBackendDies_ReplayedIntoNextPoolWithItsData_CallerAnsweredOnce) {
  std::vector<uint8_t> data(4096);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 13 + 5);
  std::atomic<int> rc{1};
  writer_ = std::thread([&] { rc = front_->write(8 * 512, data.size(), data.data()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(rc, 1) << "the write went nowhere before a pool existed";

  ASSERT_TRUE(reconnect(7));
  auto ring7 = ring::BackRing<blkif::Traits>::attach(pools_->bases_.at(7), kPageSize, false);
  ASSERT_TRUE(ring7);
  auto first = backend_req(*ring7);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->operation, BLKIF_OP_WRITE);
  EXPECT_EQ(first->sector_number, 8u);
  EXPECT_EQ(std::memcmp(pools_->bases_.at(7) + first->seg[0].gref * kPageSize, data.data(), data.size()), 0);
  pools_->bases_.erase(7);  // backend 7 dies without answering; its pool is released below

  ASSERT_TRUE(reconnect(9));

  EXPECT_EQ(log_.events, (std::vector<std::string>{"make 7", "release 7", "make 9"}));
  auto ring9 = ring::BackRing<blkif::Traits>::attach(pools_->bases_.at(9), kPageSize, false);
  ASSERT_TRUE(ring9);
  auto replayed = backend_req(*ring9);
  ASSERT_TRUE(replayed);
  EXPECT_EQ(replayed->id, first->id);
  EXPECT_EQ(replayed->sector_number, 8u);
  EXPECT_EQ(std::memcmp(pools_->bases_.at(9) + replayed->seg[0].gref * kPageSize, data.data(), data.size()), 0);
  EXPECT_EQ(rc, 1) << "answered before any backend answered";
  ASSERT_TRUE(ring9->put_response(blkif_response{replayed->id, BLKIF_OP_WRITE, BLKIF_RSP_OKAY}));
  ring9->push_responses();
  ASSERT_TRUE(pools_->kick(9));
  writer_.join();
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(front_->stats().completed, 1u);
}

}  // namespace
}  // namespace sd::front
