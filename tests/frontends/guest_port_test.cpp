// The dom0 proxy's side facing an unmodified guest's kernel netfront,
// without Xen: the test plays the guest (its tx and rx rings in memory, as
// xen-netfront lays them out, and the pages it grants as a map of refs) and
// checks what a user of the guest would see: frames out whole, frames in
// whole and in order, and every kind of hostile request answered or
// contained without a crash.
#include <gtest/gtest.h>
#include <sys/eventfd.h>

#include <cstdlib>
#include <cstring>
#include <map>

#include "sd/core/ring.hpp"
#include "sd/platform/local/event_channel.hpp"
#include "vif/guest_port.hpp"
#include "fakes.hpp"
#include "vif/late_port.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>

namespace sd::front {
namespace {

using netif::kPageSize;

// A port as Netfront uses one without kFeatureSg: one page per frame, no offloads.
size_t read_frame(PacketPort& port, uint8_t* page) {
  uint8_t* b[1] = {page};
  netif::Offload off;
  size_t n = port.read(b, off);
  EXPECT_FALSE(off.csum_blank || off.gso_type) << "offloads from a port that carries none";
  return n;
}
void write_frame(PacketPort& port, const uint8_t* frame, size_t len) {
  iovec v{const_cast<uint8_t*>(frame), len};
  port.write({&v, 1}, netif::Offload{});
}

class GuestPortTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto port = guest_.open("guest7/vif/0");
    ASSERT_TRUE(port) << port.error().to_string();
    port_ = std::move(*port);
    gtx_ = &*guest_.tx;
    grx_ = &*guest_.rx;
    pages_ = guest_.pages;
    tx_mem_ = guest_.tx_mem;
  }
  std::vector<uint8_t> frame(size_t n, uint8_t seed) {
    std::vector<uint8_t> f(n);
    for (size_t i = 0; i < n; ++i) f[i] = static_cast<uint8_t>(seed + i * 13);
    return f;
  }
  // The guest sends `f` from page `ref` at `off` with request id `id`.
  void guest_send(uint16_t id, uint32_t ref, uint16_t off, const std::vector<uint8_t>& f, uint16_t flags = 0) {
    pages_->pages[ref].resize(kPageSize);
    std::memcpy(pages_->pages[ref].data() + off, f.data(), std::min<size_t>(f.size(), kPageSize - off));
    netif_tx_request req{ref, off, flags, id, static_cast<uint16_t>(f.size())};
    ASSERT_TRUE(gtx_->put_request(req));
    gtx_->push_requests();
  }
  void guest_post_rx(uint16_t id, uint32_t ref) {
    pages_->pages[ref].assign(kPageSize, 0);
    ASSERT_TRUE(grx_->put_request(netif_rx_request{id, 0, ref}));
    grx_->push_requests();
  }
  std::vector<netif_tx_response> guest_tx_responses() {
    std::vector<netif_tx_response> out;
    for (;;) {
      auto r = gtx_->get_response();
      if (!r || !*r) return out;
      out.push_back(**r);
    }
  }
  std::vector<netif_rx_response> guest_rx_responses() {
    std::vector<netif_rx_response> out;
    for (;;) {
      auto r = grx_->get_response();
      if (!r || !*r) return out;
      out.push_back(**r);
    }
  }

  KernelNetfront guest_;  // outlives the port (members go in reverse order)
  uint8_t* tx_mem_ = nullptr;
  ring::FrontRing<netif::TxTraits>* gtx_ = nullptr;
  ring::FrontRing<netif::RxTraits>* grx_ = nullptr;
  GuestPages* pages_ = nullptr;
  std::unique_ptr<GuestRingPort> port_;
  uint8_t buf_[kPageSize];
  size_t read_one() { return read_frame(*port_, buf_); }
  void write_one(const uint8_t* frame, size_t len) { write_frame(*port_, frame, len); }
};

TEST_F(GuestPortTest, GuestFrames_ReadWholeInOrderAndAnsweredOkay) {
  auto a = frame(60, 1), b = frame(1514, 2);
  guest_send(3, 100, 0, a);
  guest_send(4, 101, 2048, b);

  ASSERT_EQ(read_one(), a.size());
  EXPECT_EQ(std::memcmp(buf_, a.data(), a.size()), 0);
  ASSERT_EQ(read_one(), b.size());
  EXPECT_EQ(std::memcmp(buf_, b.data(), b.size()), 0);
  EXPECT_EQ(read_one(), 0u);
  port_->flush();

  auto rsp = guest_tx_responses();
  ASSERT_EQ(rsp.size(), 2u);
  EXPECT_EQ(rsp[0].id, 3);
  EXPECT_EQ(rsp[0].status, NETIF_RSP_OKAY);
  EXPECT_EQ(rsp[1].id, 4);
  EXPECT_EQ(rsp[1].status, NETIF_RSP_OKAY);
  EXPECT_EQ(port_->counters().tx_frames, 2u);
}

TEST_F(GuestPortTest, HostileTxRequests_AnsweredErrorAndTheNextFrameStillPasses) {
  guest_send(1, 100, 0, frame(10, 1));                // shorter than an Ethernet header
  guest_send(2, 101, 4000, frame(200, 2));            // beyond its page
  ASSERT_TRUE(gtx_->put_request(netif_tx_request{999, 0, 0, 3, 60}));  // a ref the guest never granted
  guest_send(4, 102, 0, frame(30, 4), NETTXF_more_data);  // two slots whose sizes do not add up:
  guest_send(5, 103, 0, frame(40, 5));                    // the second is longer than the frame
  auto good = frame(64, 6);
  guest_send(6, 104, 0, good);

  ASSERT_EQ(read_one(), good.size());
  EXPECT_EQ(std::memcmp(buf_, good.data(), good.size()), 0);
  port_->flush();
  auto rsp = guest_tx_responses();
  ASSERT_EQ(rsp.size(), 6u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(rsp[i].id, i + 1);
    EXPECT_EQ(rsp[i].status, NETIF_RSP_ERROR) << "request " << i + 1;
  }
  EXPECT_EQ(rsp[5].status, NETIF_RSP_OKAY);
  EXPECT_EQ(port_->counters().tx_refused, 4u);  // frames: the two-slot one once
  EXPECT_FALSE(port_->broken());
}

// xen-netfront splits a frame whose data crosses a page boundary into slots,
// even without scatter-gather: the first slot's size is the frame's.
TEST_F(GuestPortTest, FrameOverTwoSlots_ReadWholeBothSlotsAnsweredOkay) {
  auto f = frame(1514, 9);
  std::vector<uint8_t> head(f.begin(), f.begin() + 1000), tail(f.begin() + 1000, f.end());
  pages_->pages[300].assign(kPageSize, 0);
  pages_->pages[301].assign(kPageSize, 0);
  std::memcpy(pages_->pages[300].data() + 3096, head.data(), head.size());
  std::memcpy(pages_->pages[301].data(), tail.data(), tail.size());
  ASSERT_TRUE(gtx_->put_request(netif_tx_request{300, 3096, NETTXF_more_data, 11, 1514}));
  ASSERT_TRUE(gtx_->put_request(netif_tx_request{301, 0, 0, 12, static_cast<uint16_t>(tail.size())}));
  gtx_->push_requests();

  ASSERT_EQ(read_one(), f.size());
  EXPECT_EQ(std::memcmp(buf_, f.data(), f.size()), 0);
  port_->flush();
  auto rsp = guest_tx_responses();
  ASSERT_EQ(rsp.size(), 2u);
  EXPECT_EQ(rsp[0].id, 11);
  EXPECT_EQ(rsp[0].status, NETIF_RSP_OKAY);
  EXPECT_EQ(rsp[1].id, 12);
  EXPECT_EQ(rsp[1].status, NETIF_RSP_OKAY);
}

// Copies are batched: a frame's slots in one call, a flush's frames for the
// guest in one call (each a system call on Xen).
TEST_F(GuestPortTest, Copies_OneCallPerFrameOutAndOnePerFlushIn) {
  auto f = frame(1514, 9);
  pages_->pages[300].assign(kPageSize, 0);
  pages_->pages[301].assign(kPageSize, 0);
  std::memcpy(pages_->pages[300].data() + 3096, f.data(), 1000);
  std::memcpy(pages_->pages[301].data(), f.data() + 1000, 514);
  ASSERT_TRUE(gtx_->put_request(netif_tx_request{300, 3096, NETTXF_more_data, 11, 1514}));
  ASSERT_TRUE(gtx_->put_request(netif_tx_request{301, 0, 0, 12, 514}));
  gtx_->push_requests();
  ASSERT_EQ(read_one(), f.size());
  EXPECT_EQ(pages_->calls, 1);

  for (uint16_t id = 0; id < 3; ++id) guest_post_rx(id, 400 + id);
  for (int i = 0; i < 3; ++i) write_one(f.data(), 100 + i);
  EXPECT_EQ(pages_->calls, 1);  // nothing copied before the flush
  port_->flush();
  EXPECT_EQ(pages_->calls, 2);
  auto rsp = guest_rx_responses();
  ASSERT_EQ(rsp.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(rsp[i].status, 100 + i);
}

TEST_F(GuestPortTest, ExtraInfoSlots_AnsweredNullAndSkipped) {
  guest_send(1, 100, 0, frame(60, 1), NETTXF_extra_info);
  netif_extra_info extra{};
  extra.type = XEN_NETIF_EXTRA_TYPE_GSO;
  netif_tx_request slot;
  std::memcpy(&slot, &extra, sizeof(extra));
  ASSERT_TRUE(gtx_->put_request(slot));
  gtx_->push_requests();
  auto good = frame(80, 2);
  guest_send(2, 101, 0, good);

  ASSERT_EQ(read_one(), good.size());
  port_->flush();
  auto rsp = guest_tx_responses();
  ASSERT_EQ(rsp.size(), 3u);
  EXPECT_EQ(rsp[0].status, NETIF_RSP_ERROR);
  EXPECT_EQ(rsp[1].status, NETIF_RSP_NULL);
  EXPECT_EQ(rsp[2].status, NETIF_RSP_OKAY);
}

TEST_F(GuestPortTest, ImpossibleReqProd_PortStopsForGoodWithoutReadingTheRing) {
  auto* s = reinterpret_cast<netif_tx_sring*>(tx_mem_);
  s->req_prod = 5000;  // more requests than the ring holds

  EXPECT_EQ(read_one(), 0u);
  EXPECT_TRUE(port_->broken());
  EXPECT_NE(port_->why_broken().find("impossible"), std::string::npos) << port_->why_broken();
  write_one(frame(60, 1).data(), 60);  // frames for a broken guest are dropped, nothing else
  EXPECT_EQ(port_->counters().rx_dropped, 1u);
}

TEST_F(GuestPortTest, FramesForTheGuest_CopiedIntoItsBuffersInOrder_HeldWhileNoBuffer) {
  auto a = frame(60, 1), b = frame(1514, 2), c = frame(300, 3);
  guest_post_rx(7, 200);
  write_one(a.data(), a.size());
  write_one(b.data(), b.size());  // no buffer yet: held
  write_one(c.data(), c.size());
  port_->flush();
  EXPECT_TRUE(port_->holding());
  auto rsp = guest_rx_responses();
  ASSERT_EQ(rsp.size(), 1u);
  EXPECT_EQ(rsp[0].id, 7);
  EXPECT_EQ(rsp[0].status, static_cast<int16_t>(a.size()));
  EXPECT_EQ(std::memcmp(pages_->pages[200].data(), a.data(), a.size()), 0);

  guest_post_rx(8, 201);
  guest_post_rx(9, 202);
  port_->woken();
  EXPECT_FALSE(port_->holding());
  rsp = guest_rx_responses();
  ASSERT_EQ(rsp.size(), 2u);
  EXPECT_EQ(rsp[0].id, 8);
  EXPECT_EQ(rsp[0].status, static_cast<int16_t>(b.size()));
  EXPECT_EQ(std::memcmp(pages_->pages[201].data(), b.data(), b.size()), 0);
  EXPECT_EQ(rsp[1].id, 9);
  EXPECT_EQ(std::memcmp(pages_->pages[202].data(), c.data(), c.size()), 0);
  EXPECT_EQ(port_->counters().rx_frames, 3u);
  EXPECT_EQ(port_->counters().rx_dropped, 0u);
}

TEST_F(GuestPortTest, GuestNeverPostsBuffers_HeldQueueBoundedRestDropped) {
  auto f = frame(100, 1);
  for (size_t i = 0; i < GuestRingPort::kHeldFrames + 10; ++i) write_one(f.data(), f.size());
  EXPECT_EQ(port_->counters().rx_dropped, 10u);
  EXPECT_EQ(port_->counters().rx_frames, 0u);
}

TEST_F(GuestPortTest, RxBufferRefNotGranted_AnsweredErrorNotCopied) {
  ASSERT_TRUE(grx_->put_request(netif_rx_request{4, 0, 777}));  // never granted
  grx_->push_requests();
  auto f = frame(60, 1);
  write_one(f.data(), f.size());
  port_->flush();
  auto rsp = guest_rx_responses();
  ASSERT_EQ(rsp.size(), 1u);
  EXPECT_EQ(rsp[0].id, 4);
  EXPECT_EQ(rsp[0].status, NETIF_RSP_ERROR);
}

// A UDP/IPv4 frame with a known correct checksum (computed by hand from
// RFC 768's rule): blanked, it is completed to the same value; a frame of
// another type is untouched.
TEST(CompleteL4Checksum, UdpOverIpv4_BlankFieldCompletedToTheRightValue) {
  std::vector<uint8_t> f = {
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00,                       // Ethernet, IPv4
      0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 4, 10, 0, 0, 1,    // IPv4, 20 + 12 bytes, UDP
      0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 'a', 'b', 'c', 'd'};  // UDP 12345 -> 53, "abcd"
  // pseudo: 0a00+0004+0a00+0001+0011+000c; UDP: 3039+0035+000c+6162+6364
  uint32_t sum = 0x0a00 + 0x0004 + 0x0a00 + 0x0001 + 0x0011 + 0x000c + 0x3039 + 0x0035 + 0x000c + 0x6162 + 0x6364;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  uint16_t want = static_cast<uint16_t>(~sum);
  f[40] = 0x12;  // whatever the sender left there (the pseudo-header sum)
  f[41] = 0x34;

  complete_l4_checksum(f.data(), f.size());

  EXPECT_EQ(f[40] << 8 | f[41], want);
  std::vector<uint8_t> arp(f);
  arp[12] = 0x08;
  arp[13] = 0x06;
  arp[40] = arp[41] = 0x77;
  complete_l4_checksum(arp.data(), arp.size());
  EXPECT_EQ(arp[40], 0x77);
}

TEST(CompleteL4Checksum, TruncatedHeaders_LeftAlone) {
  std::vector<uint8_t> f = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00, 0x45, 0, 0x05, 0xdc, 0, 0, 0, 0, 64, 6};
  auto copy = f;
  complete_l4_checksum(f.data(), f.size());  // claims 1500 bytes, has 10
  EXPECT_EQ(f, copy);
}

// The proxy serves shadowd before the guest's netfront connects: until the
// connect succeeds nothing is read and frames for the guest are dropped;
// then the connected port takes over at the next wakeup. A failed connect
// is retried.
TEST(LatePort, GuestComesLater_DropsUntilConnectedThenTheRealPortServes) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
  UniqueFd guest(sv[0]);
  std::atomic<int> attempts{0};
  std::atomic<bool> guest_up{false};
  LatePort port("guest7 vif 0", [&]() -> Result<std::unique_ptr<PacketPort>> {
    ++attempts;
    while (!guest_up) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (attempts == 1) return fail(Code::kUnavailable, "the guest's netfront did not publish its rings");
    return std::unique_ptr<PacketPort>(std::make_unique<TapPort>(UniqueFd(sv[1]), "tap"));
  });
  uint8_t buf[kPageSize];
  EXPECT_EQ(read_frame(port, buf), 0u);
  write_frame(port, buf, 60);
  EXPECT_EQ(port.dropped_before(), 1u);
  EXPECT_FALSE(port.connected());

  guest_up = true;
  pollfd p{port.wait_fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);  // after the retry (1 s)
  port.woken();

  ASSERT_TRUE(port.connected());
  EXPECT_EQ(attempts, 2);
  uint8_t frame[60] = {1, 2, 3};
  ASSERT_EQ(::send(guest.get(), frame, sizeof(frame), 0), 60);
  EXPECT_EQ(read_frame(port, buf), 60u);
  write_frame(port, frame, sizeof(frame));
  EXPECT_EQ(::recv(guest.get(), buf, sizeof(buf), 0), 60);
}

// The guest's side leaves (its netfront closed, its domain gone) and comes
// back: the port in use is dropped at the next wakeup (the rings unmapped),
// then the backend is released (Closed) and the connect runs again; the
// new port serves. One fd to poll throughout.
TEST(LatePort, GuestLeavesAndComesBack_PortDroppedReleasedReconnected) {
  int a[2], b[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, a), 0);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, b), 0);
  UniqueFd guest_a(a[0]), guest_b(b[0]);
  std::atomic<int> attempts{0}, released{0};
  std::atomic<bool> left{false};
  LatePort port(
      "guest7 vif 0",
      [&]() -> Result<std::unique_ptr<PacketPort>> {
        int n = ++attempts;
        return std::unique_ptr<PacketPort>(std::make_unique<TapPort>(UniqueFd(n == 1 ? a[1] : b[1]), "tap"));
      },
      [&] { return left.load(); }, [&] { ++released; left = false; });
  const int fd = port.wait_fd();
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  port.woken();
  ASSERT_TRUE(port.connected());
  uint8_t frame[60] = {7}, buf[kPageSize];
  ASSERT_EQ(::send(guest_a.get(), frame, sizeof(frame), 0), 60);
  ASSERT_EQ(::poll(&p, 1, 5000), 1);  // the port's own fd, through the same fd
  port.woken();
  EXPECT_EQ(read_frame(port, buf), 60u);

  left = true;
  ASSERT_EQ(::poll(&p, 1, 5000), 1);  // within the half-second check
  port.woken();
  EXPECT_FALSE(port.connected());
  EXPECT_EQ(port.departures(), 1u);
  write_frame(port, frame, sizeof(frame));  // nobody to take it: dropped
  EXPECT_EQ(port.dropped_before(), 1u);

  ASSERT_EQ(::poll(&p, 1, 5000), 1);  // released, connected again
  port.woken();
  ASSERT_TRUE(port.connected());
  EXPECT_EQ(released, 1);
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(port.wait_fd(), fd);
  write_frame(port, frame, sizeof(frame));
  EXPECT_EQ(::recv(guest_b.get(), buf, sizeof(buf), 0), 60);
}

}  // namespace
}  // namespace sd::front
