// The Xen control-channel transport against the fake libxenvchan (fakes.hpp):
// the pump (whole messages both ways, full rings, closes), the link that
// connects when a domain offers its vchan in xenstore, and the domain
// manager handing out a working Channel per incarnation.
#include <gtest/gtest.h>

#include <cstring>

#include "fakes.hpp"
#include "run_until.hpp"
#include "xen/domain_manager.hpp"
#include "xen/store.hpp"
#include "xen/vchan_link.hpp"
#include "xen/vchan_pump.hpp"

extern "C" {
#include <libxenvchan.h>
}

namespace sd::xen {
namespace {

using test::run_until;

constexpr int kMsg = sizeof(ctl::Msg);

ctl::Msg msg(ctl::MsgType t, uint64_t b) {
  ctl::Msg m;
  m.type = t;
  m.b = b;
  return m;
}

// Reads one whole message the way the domain's runtime would (nullopt if none).
std::optional<ctl::Msg> domain_recv(libxenvchan* v) {
  ctl::Msg m;
  if (libxenvchan_recv(v, &m, kMsg) != kMsg) return std::nullopt;
  return m;
}

std::optional<ctl::Msg> channel_recv(ctl::Channel& ch) {
  auto m = ch.recv();
  if (!m || !*m) return std::nullopt;
  return **m;
}

class VchanPumpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake::vchan_reset();
    auto s = vchan_server(0, "/local/domain/3/data/sd-ctl");
    ASSERT_TRUE(s) << s.error().to_string();
    server_ = *s;
    auto c = vchan_client(3, "/local/domain/3/data/sd-ctl");
    ASSERT_TRUE(c) << c.error().to_string();
    auto ch = channel_over(*c);
    ASSERT_TRUE(ch) << ch.error().to_string();
    ch_ = std::move(ch->first);
    pump_ = std::move(ch->second);
    ASSERT_TRUE(ch_.set_nonblocking(true));
  }
  void TearDown() override {
    pump_.reset();
    if (server_) libxenvchan_close(server_);
    fake::vchan_reset();
  }
  libxenvchan* server_ = nullptr;
  ctl::Channel ch_;
  std::unique_ptr<VchanPump> pump_;
};

TEST_F(VchanPumpTest, ChannelSend_ReachesDomainAsOneWholeMessage) {
  ASSERT_TRUE(ch_.send(msg(ctl::MsgType::kPing, 7)));

  ASSERT_TRUE(*pump_->service(false));

  auto got = domain_recv(server_);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->type, ctl::MsgType::kPing);
  EXPECT_EQ(got->b, 7u);
  EXPECT_EQ(libxenvchan_data_ready(server_), 0);
}

TEST_F(VchanPumpTest, DomainSend_ReachesChannelInOrder) {
  for (uint64_t i = 1; i <= 3; ++i) {
    auto m = msg(ctl::MsgType::kPong, i);
    ASSERT_EQ(libxenvchan_send(server_, &m, kMsg), kMsg);
  }

  ASSERT_TRUE(*pump_->service(true));

  for (uint64_t i = 1; i <= 3; ++i) {
    auto got = channel_recv(ch_);
    ASSERT_TRUE(got) << i;
    EXPECT_EQ(got->b, i);
  }
}

TEST_F(VchanPumpTest, DomainSendsPartialMessage_NothingDeliveredUntilWhole) {
  auto m = msg(ctl::MsgType::kReady, 1);
  ASSERT_EQ(libxenvchan_send(server_, &m, 100), 100);

  ASSERT_TRUE(*pump_->service(true));
  EXPECT_FALSE(channel_recv(ch_));

  ASSERT_EQ(libxenvchan_send(server_, reinterpret_cast<char*>(&m) + 100, kMsg - 100), kMsg - 100);
  ASSERT_TRUE(*pump_->service(true));
  auto got = channel_recv(ch_);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->type, ctl::MsgType::kReady);
}

TEST_F(VchanPumpTest, RingFull_QueuesThenDeliversWhenDomainReads) {
  fake::vchan().ring_bytes = kMsg;  // room for one message
  for (uint64_t i = 1; i <= 3; ++i) ASSERT_TRUE(ch_.send(msg(ctl::MsgType::kPing, i)));

  ASSERT_TRUE(*pump_->service(false));
  EXPECT_EQ(pump_->queued(), 2u);

  for (uint64_t i = 1; i <= 3; ++i) {
    auto got = domain_recv(server_);
    ASSERT_TRUE(got) << i;
    EXPECT_EQ(got->b, i);
    ASSERT_TRUE(*pump_->service(true));
  }
  EXPECT_EQ(pump_->queued(), 0u);
}

TEST_F(VchanPumpTest, DomainClosesVchan_ChannelReadsPeerClosed) {
  libxenvchan_close(server_);
  server_ = nullptr;

  EXPECT_FALSE(*pump_->service(true));

  auto r = ch_.recv();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("peer closed"), std::string::npos) << r.error().message;
}

TEST_F(VchanPumpTest, DomainClosesAfterSending_MessagesStillDelivered) {
  auto m = msg(ctl::MsgType::kDevFault, 9);
  ASSERT_EQ(libxenvchan_send(server_, &m, kMsg), kMsg);
  libxenvchan_close(server_);
  server_ = nullptr;

  (void)pump_->service(true);
  (void)pump_->service(true);

  auto got = channel_recv(ch_);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->b, 9u);
}

TEST_F(VchanPumpTest, ChannelClosed_VchanClosedForDomain) {
  ch_ = ctl::Channel();

  EXPECT_FALSE(*pump_->service(false));
  pump_.reset();

  EXPECT_EQ(libxenvchan_is_open(server_), 0);
}

TEST_F(VchanPumpTest, SendFails_PumpReportsClosed) {
  fake::vchan().send_fails = true;
  ASSERT_TRUE(ch_.send(msg(ctl::MsgType::kPing, 1)));

  EXPECT_FALSE(*pump_->service(false));
}

TEST(VchanSetup, ServerInitFails_UnavailableNamesPathAndModules) {
  fake::vchan_reset();
  fake::vchan().server_errno = ENOENT;

  auto s = vchan_server(0, "/local/domain/5/data/sd-ctl");

  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kUnavailable);
  EXPECT_NE(s.error().message.find("/local/domain/5/data/sd-ctl"), std::string::npos);
  EXPECT_NE(s.error().message.find("xen-gntalloc"), std::string::npos);
}

TEST(VchanSetup, ClientBeforeServer_Retry) {
  fake::vchan_reset();

  auto c = vchan_client(5, "/local/domain/5/data/sd-ctl");

  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Code::kRetry);
}

TEST(VchanSetup, ControlAndVifPaths_AreInTheDomainsDataDir) {
  EXPECT_EQ(control_path(12), "/local/domain/12/data/sd-ctl");
  EXPECT_EQ(vif_channel_path(5, 0), "/local/domain/5/data/sd-vif-0");
}

// ---- the link: connects when the domain offers the vchan -------------------

class VchanLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake::vchan_reset();
    fake::xenstore_reset();
    auto s = XenStore::open(io_);
    ASSERT_TRUE(s);
    store_ = std::move(*s);
  }
  void TearDown() override {
    link_.reset();
    if (server_) libxenvchan_close(server_);
    store_.reset();
    fake::vchan_reset();
    fake::xenstore_reset();
  }
  // What drvdom --xen does: offer the vchan, then xenstore has its nodes.
  void domain_offers(const std::string& path) {
    auto s = vchan_server(0, path);
    ASSERT_TRUE(s);
    server_ = *s;
    ASSERT_TRUE(store_->write(path + "/ring-ref", "8"));
    ASSERT_TRUE(store_->write(path + "/event-channel", "5"));
  }
  boost::asio::io_context io_;
  std::unique_ptr<XenStore> store_;
  std::unique_ptr<VchanLink> link_;
  libxenvchan* server_ = nullptr;
};

TEST_F(VchanLinkTest, SentBeforeDomainOffers_DeliveredAfterConnect) {
  auto l = VchanLink::open(io_, *store_, 4, control_path(4));
  ASSERT_TRUE(l) << l.error().to_string();
  link_ = std::move(l->second);
  ctl::Channel ch = std::move(l->first);
  ASSERT_TRUE(ch.send(msg(ctl::MsgType::kPing, 1)));
  run_until(io_, [] { return false; }, std::chrono::milliseconds(30));
  EXPECT_FALSE(link_->connected());

  domain_offers(control_path(4));

  ASSERT_TRUE(run_until(io_, [&] { return libxenvchan_data_ready(server_) >= kMsg; }));
  EXPECT_TRUE(link_->connected());
  auto got = domain_recv(server_);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->type, ctl::MsgType::kPing);
}

TEST_F(VchanLinkTest, DomainSendsReady_ChannelReceivesIt) {
  auto l = VchanLink::open(io_, *store_, 4, control_path(4));
  ASSERT_TRUE(l);
  link_ = std::move(l->second);
  ctl::Channel ch = std::move(l->first);
  ASSERT_TRUE(ch.set_nonblocking(true));
  domain_offers(control_path(4));
  ASSERT_TRUE(run_until(io_, [&] { return link_->connected(); }));

  auto m = msg(ctl::MsgType::kReady, 0);
  ASSERT_EQ(libxenvchan_send(server_, &m, kMsg), kMsg);

  std::optional<ctl::Msg> got;
  ASSERT_TRUE(run_until(io_, [&] {
    if (!got) got = channel_recv(ch);
    return got.has_value();
  }));
  EXPECT_EQ(got->type, ctl::MsgType::kReady);
}

TEST_F(VchanLinkTest, ConnectFailsOnceNodesAreThere_RetriedWithoutFurtherStoreChanges) {
  fake::vchan().client_errno = EIO;  // e.g. mapping the domain's pages failed
  auto l = VchanLink::open(io_, *store_, 4, control_path(4));
  ASSERT_TRUE(l);
  link_ = std::move(l->second);
  domain_offers(control_path(4));
  run_until(io_, [] { return false; }, std::chrono::milliseconds(100));
  ASSERT_FALSE(link_->connected());

  fake::vchan().client_errno = 0;  // nothing changes in xenstore from here on

  EXPECT_TRUE(run_until(io_, [&] { return link_->connected(); }));
}

TEST_F(VchanLinkTest, LinkDestroyed_ChannelReadsEofAndDomainSeesClose) {
  auto l = VchanLink::open(io_, *store_, 4, control_path(4));
  ASSERT_TRUE(l);
  link_ = std::move(l->second);
  ctl::Channel ch = std::move(l->first);
  domain_offers(control_path(4));
  ASSERT_TRUE(run_until(io_, [&] { return link_->connected(); }));

  link_.reset();

  auto r = ch.recv();
  EXPECT_FALSE(r);
  EXPECT_EQ(libxenvchan_is_open(server_), 0);
  EXPECT_EQ(fake::xenstore().unwatches, 1);
}

// ---- the domain manager hands out a Channel per incarnation ----------------

TEST(XenDomainManagerVchan, CreateWithStore_ChannelCarriesTheRuntimesReady) {
  fake::libxl_reset();
  fake::xenstore_reset();
  fake::vchan_reset();
  boost::asio::io_context io;
  auto store = XenStore::open(io);
  ASSERT_TRUE(store);
  auto mgr = XenDomainManager::open(io);
  ASSERT_TRUE(mgr);
  (*mgr)->set_store(store->get());
  platform::DomainSpec spec;
  spec.name = "netdd";
  spec.kernel = "/boot/vmlinuz";
  ctl::Channel ch;

  auto info = (*mgr)->create(spec, &ch);

  ASSERT_TRUE(info) << info.error().to_string();
  ASSERT_TRUE(ch.valid());
  ASSERT_TRUE(ch.set_nonblocking(true));
  // The domain boots and its runtime offers the vchan and says Ready.
  std::string path = control_path(static_cast<int>(info->id));
  auto s = vchan_server(0, path);
  ASSERT_TRUE(s);
  ASSERT_TRUE((*store)->write(path + "/event-channel", "5"));
  auto ready = msg(ctl::MsgType::kReady, 0);
  ASSERT_EQ(libxenvchan_send(*s, &ready, kMsg), kMsg);
  std::optional<ctl::Msg> got;
  EXPECT_TRUE(run_until(io, [&] {
    if (!got) got = channel_recv(ch);
    return got.has_value();
  }));
  EXPECT_EQ(got ? got->type : ctl::MsgType{}, ctl::MsgType::kReady);
  EXPECT_EQ((*mgr)->start_timeout(), std::chrono::seconds(120));

  libxenvchan_close(*s);
  mgr->reset();
  store->reset();
  fake::libxl_reset();
  fake::xenstore_reset();
  fake::vchan_reset();
}

}  // namespace
}  // namespace sd::xen
