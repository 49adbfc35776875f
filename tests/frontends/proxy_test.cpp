// The dom0 ring proxy end to end without Xen: Netfront with its guest's side
// on an unmodified guest's netfront rings (played here in memory, as
// xen-netfront lays them out), the pools of each backend incarnation in
// memory, the test playing shadowd and the backends. What a user of the
// guest would see: a frame it sends reaches the driver domain, still does
// after that driver domain dies holding it (replayed into the next one's
// pool, bytes intact), and a frame from the driver domain lands in the
// guest's rx buffer.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <thread>

#include "fakes.hpp"
#include "fake_shadowd.hpp"
#include "sd/core/ring.hpp"

namespace sd::front {
namespace {

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto port = guest_.open("guest5/vif/0");
    ASSERT_TRUE(port);
    port_ = port->get();
    gtx_ = &*guest_.tx;
    grx_ = &*guest_.rx;
    pages_ = guest_.pages;
    auto ch = ctl::Channel::pair();
    ASSERT_TRUE(ch);
    shadowd_ = std::move(ch->first);
    auto pools = std::make_unique<MemPools>(log_);
    pools_ = pools.get();
    netif::VifConfig cfg{};
    cfg.mtu = 1500;
    nf_ = std::make_unique<Netfront>(std::move(ch->second), std::move(*port), cfg, std::move(pools));
    ctl::Msg att;
    att.type = ctl::MsgType::kDevAttach;
    att.b = 3;
    ASSERT_TRUE(shadowd_.send(att));
    thread_ = std::thread([this] { rc_ = nf_->run(); });
  }
  void TearDown() override {
    ctl::Msg bye;
    bye.type = ctl::MsgType::kShutdown;
    (void)shadowd_.send(bye);
    thread_.join();
    EXPECT_EQ(rc_, 0);
    nf_.reset();
  }
  bool reconnect(uint32_t domid) { return test::reconnect(shadowd_, domid).has_value(); }
  // The guest posts rx buffer 500 (request id 6); backend 7 comes and takes
  // one of the rx buffers the proxy posted to it in turn.
  std::optional<std::pair<ring::BackRing<netif::RxTraits>, netif_rx_request>> guest_buffer_then_backend_7() {
    pages_->pages[500].assign(kPageSize, 0);
    if (!grx_->put_request(netif_rx_request{6, 0, 500})) return std::nullopt;
    grx_->push_requests();
    if (!reconnect(7)) return std::nullopt;
    auto rx = ring::BackRing<netif::RxTraits>::attach(pools_->bases_.at(7) + kPageSize, kPageSize, false);
    if (!rx) return std::nullopt;
    auto req = rx->get_request();
    if (!req || !*req) return std::nullopt;
    return std::pair{std::move(*rx), **req};
  }
  void guest_send(uint16_t id, uint32_t ref, const std::vector<uint8_t>& f) {
    pages_->pages[ref].assign(kPageSize, 0);
    std::memcpy(pages_->pages[ref].data(), f.data(), f.size());
    ASSERT_TRUE(gtx_->put_request(netif_tx_request{ref, 0, 0, id, static_cast<uint16_t>(f.size())}));
    gtx_->push_requests();
    uint64_t one = 1;
    ASSERT_EQ(::write(guest_.kick.get(), &one, sizeof(one)), 8);
  }
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

  KernelNetfront guest_;  // outlives Netfront, which owns the port
  ring::FrontRing<netif::TxTraits>* gtx_ = nullptr;
  ring::FrontRing<netif::RxTraits>* grx_ = nullptr;
  GuestPages* pages_ = nullptr;
  GuestRingPort* port_ = nullptr;
  PoolLog log_;
  MemPools* pools_ = nullptr;
  ctl::Channel shadowd_;
  std::unique_ptr<Netfront> nf_;
  std::thread thread_;
  int rc_ = -1;
};

TEST_F(ProxyTest, GuestFrame_ReachesDriverDomain_AndIsReplayedWholeIntoTheNextOneAfterItDies) {
  ASSERT_TRUE(reconnect(7));
  std::vector<uint8_t> frame(200);
  for (size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<uint8_t>(i * 3 + 1);
  guest_send(4, 900, frame);

  auto first = backend_tx(7);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->size, frame.size());
  EXPECT_EQ(std::memcmp(pools_->bases_.at(7) + first->gref * kPageSize + first->offset, frame.data(), frame.size()), 0);
  pools_->bases_.erase(7);  // driver domain 7 dies without answering

  ASSERT_TRUE(reconnect(9));

  auto replayed = backend_tx(9);
  ASSERT_TRUE(replayed);
  EXPECT_EQ(replayed->id, first->id);
  EXPECT_EQ(std::memcmp(pools_->bases_.at(9) + replayed->gref * kPageSize + replayed->offset, frame.data(),
                        frame.size()), 0);
  // The guest had its answer at once: its ring never waited for a driver domain.
  auto rsp = gtx_->get_response();
  ASSERT_TRUE(rsp && *rsp);
  EXPECT_EQ((*rsp)->id, 4);
  EXPECT_EQ((*rsp)->status, NETIF_RSP_OKAY);
}

TEST_F(ProxyTest, DriverDomainFrame_LandsInTheGuestsRxBuffer) {
  auto b = guest_buffer_then_backend_7();
  ASSERT_TRUE(b);
  auto& [rx, req] = *b;
  uint8_t* base = pools_->bases_.at(7);
  // Backend 7 answers one of the rx buffers the proxy posted with a frame.
  std::vector<uint8_t> frame(300);
  for (size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<uint8_t>(i ^ 0x5a);
  std::memcpy(base + req.gref * kPageSize, frame.data(), frame.size());
  ASSERT_TRUE(rx.put_response(netif_rx_response{req.id, 0, 0, static_cast<int16_t>(frame.size())}));
  rx.push_responses();
  ASSERT_TRUE(pools_->kick(7));

  std::optional<netif_rx_response> got;
  for (int i = 0; i < 200 && !got; ++i) {
    auto r = grx_->get_response();
    if (r && *r) got = **r;
    else std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(got);
  EXPECT_EQ(got->id, 6);
  EXPECT_EQ(got->status, static_cast<int16_t>(frame.size()));
  EXPECT_EQ(std::memcmp(pages_->pages[500].data(), frame.data(), frame.size()), 0);
}

// A lying driver domain never reaches the guest's ring: an rx response
// index beyond what the proxy posted, or a frame outside its page, is a
// fault reported to shadowd, and the guest's rx ring gets nothing.
TEST_F(ProxyTest, DriverDomainLies_FaultReportedGuestRingUntouched) {
  auto b = guest_buffer_then_backend_7();
  ASSERT_TRUE(b);
  auto& [rx, req] = *b;
  // A frame claimed to run past the end of its granted page.
  ASSERT_TRUE(rx.put_response(netif_rx_response{req.id, 4000, 0, 300}));
  rx.push_responses();
  ASSERT_TRUE(pools_->kick(7));

  auto fault = test::await_msg(shadowd_, ctl::MsgType::kDevFault);
  ASSERT_TRUE(fault) << "no fault reported to shadowd";
  EXPECT_NE(fault->get_text().find("outside its granted page"), std::string::npos) << fault->get_text();
  auto got = grx_->get_response();
  ASSERT_TRUE(got);
  EXPECT_FALSE(*got) << "the guest's rx ring got a response";
  EXPECT_EQ(pages_->pages[500][0], 0);
}

}  // namespace
}  // namespace sd::front
