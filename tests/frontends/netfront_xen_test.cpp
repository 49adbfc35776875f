// sd-netfront's Xen mode without Xen: a socket pair stands in for the TAP,
// an in-memory PoolSource for gntshr/evtchn, and the test plays shadowd (the
// control channel) and each backend incarnation (the rings of its pool).
// What it checks: every backend domain gets its own pool, the old grants go
// before new ones are made, and a frame in flight when a backend dies is
// replayed into the next backend's pool, bytes and id intact.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>
#include <thread>

#include "sd/platform/local/event_channel.hpp"
#include "sd/core/ring.hpp"
#include "vif/netfront.hpp"
#include "fakes.hpp"
#include "fake_shadowd.hpp"

namespace sd::front {
namespace {

using netif::kPageSize;

class NetfrontXenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    tap_.reset(sv[0]);
    (void)::fcntl(sv[1], F_SETFL, O_NONBLOCK);
    auto ch = ctl::Channel::pair();
    ASSERT_TRUE(ch);
    shadowd_ = std::move(ch->first);
    auto pools = std::make_unique<MemPools>(log_);
    pools_ = pools.get();
    netif::VifConfig cfg{};
    cfg.mtu = 1500;
    nf_ = std::make_unique<Netfront>(std::move(ch->second), std::make_unique<TapPort>(UniqueFd(sv[1]), "sdtest0"), cfg,
                                     std::move(pools));
    thread_ = std::thread([this] { rc_ = nf_->run(); });
  }
  void TearDown() override {
    ctl::Msg bye;
    bye.type = ctl::MsgType::kShutdown;
    (void)shadowd_.send(bye);
    thread_.join();
    EXPECT_EQ(rc_, 0);
  }
  std::optional<ctl::XenPool> reconnect(uint32_t domid) {
    auto r = test::reconnect(shadowd_, domid);
    if (!r) return std::nullopt;
    return r->get_payload<ctl::XenPool>();
  }
  // The backend's view of a pool's tx ring: the next request, if any (waits up to 2 s).
  std::optional<netif_tx_request> backend_tx(uint32_t domid) {
    auto ring = ring::BackRing<netif::TxTraits>::attach(pools_->bases_.at(domid), kPageSize, false);
    if (!ring) return std::nullopt;
    for (int i = 0; i < 200; ++i) {
      auto r = ring->get_request();
      if (r && *r) return **r;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  }

  // shadowd attaches device 3 (the frontend waits for its first kReconnect).
  void attach() {
    ctl::Msg att;
    att.type = ctl::MsgType::kDevAttach;
    att.b = 3;
    ASSERT_TRUE(shadowd_.send(att));
  }

  PoolLog log_;
  MemPools* pools_ = nullptr;
  UniqueFd tap_;
  ctl::Channel shadowd_;
  std::unique_ptr<Netfront> nf_;
  std::thread thread_;
  int rc_ = -1;
};

TEST_F(NetfrontXenTest, Reconnect_GrantsPoolToTheNamedDomainAndReportsItsRefs) {
  ASSERT_NO_FATAL_FAILURE(attach());

  auto pool = reconnect(7);

  ASSERT_TRUE(pool);
  EXPECT_EQ(pool->dir_ref, 700u);
  EXPECT_EQ(pool->port, 7u);
  EXPECT_EQ(pool->pages, netif::kPoolPages);
  EXPECT_EQ(log_.events, std::vector<std::string>{"make 7"});
}

TEST_F(NetfrontXenTest, BackendDies_FrameInFlightReplayedIntoNextPoolAfterOldGrantsGo) {
  ASSERT_NO_FATAL_FAILURE(attach());
  ASSERT_TRUE(reconnect(7));
  // The guest sends a frame; backend 7 sees it and dies without answering.
  uint8_t frame[60];
  for (size_t i = 0; i < sizeof(frame); ++i) frame[i] = static_cast<uint8_t>(i * 7 + 1);
  ASSERT_EQ(::send(tap_.get(), frame, sizeof(frame), 0), static_cast<ssize_t>(sizeof(frame)));
  auto first = backend_tx(7);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->size, sizeof(frame));
  EXPECT_EQ(std::memcmp(pools_->bases_.at(7) + first->gref * kPageSize + first->offset, frame, sizeof(frame)), 0);
  pools_->bases_.erase(7);  // released below; the test must not touch it

  auto pool = reconnect(9);

  ASSERT_TRUE(pool);
  EXPECT_EQ(log_.events, (std::vector<std::string>{"make 7", "release 7", "make 9"}));
  auto replayed = backend_tx(9);
  ASSERT_TRUE(replayed);
  EXPECT_EQ(replayed->id, first->id);
  EXPECT_EQ(replayed->size, sizeof(frame));
  EXPECT_EQ(std::memcmp(pools_->bases_.at(9) + replayed->gref * kPageSize + replayed->offset, frame, sizeof(frame)), 0);
}

// A lying backend chains more rx slots than any frame has: a fault reported
// to shadowd, nothing written past the frontend's frame state, nothing
// handed to the guest.
TEST_F(NetfrontXenTest, RxFrameOfTooManySlots_FaultReportedNothingDelivered) {
  ASSERT_NO_FATAL_FAILURE(attach());
  ASSERT_TRUE(reconnect(7));
  auto rx = ring::BackRing<netif::RxTraits>::attach(pools_->bases_.at(7) + netif::kRxRingRef * kPageSize, kPageSize,
                                                    false);
  ASSERT_TRUE(rx);
  for (unsigned i = 0; i < netif::kMaxSlots + 2; ++i) {
    std::optional<netif_rx_request> req;
    for (int t = 0; t < 200 && !req; ++t) {
      auto r = rx->get_request();
      if (r && *r) req = **r;
      else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(req) << "buffer " << i << " not posted";
    ASSERT_TRUE(rx->put_response(netif_rx_response{req->id, 0, NETRXF_more_data, 100}));
  }
  rx->push_responses();
  ASSERT_TRUE(pools_->kick(7));

  auto fault = test::await_msg(shadowd_, ctl::MsgType::kDevFault);
  ASSERT_TRUE(fault) << "no fault reported to shadowd";
  EXPECT_NE(fault->get_text().find("more than"), std::string::npos) << fault->get_text();
  uint8_t buf[256];
  EXPECT_LT(::recv(tap_.get(), buf, sizeof(buf), MSG_DONTWAIT), 0) << "the guest got a frame";
}

}  // namespace
}  // namespace sd::front
