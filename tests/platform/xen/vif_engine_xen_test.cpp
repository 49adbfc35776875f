// shadowd's engine with the vif hooks and the Xen platform's plumbing,
// against the fake xenstore and libxenvchan: the test plays the guest's
// frontend (a vchan server at the guest's data/sd-vif-0) and the backend
// (the other end of a Channel pair).
#include "device_engine.hpp"
#include "vif/vif_hooks.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "fakes.hpp"
#include "run_until.hpp"
#include "xen/xen_platform.hpp"

extern "C" {
#include <libxenvchan.h>
}

namespace sd::dom0 {
namespace {

using xen::test::run_until;
constexpr int kMsg = sizeof(ctl::Msg);
constexpr const char* kFront = "/local/domain/5/data/sd-vif-0";

class VifEngineXenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake::libxl_reset();
    fake::xenstore_reset();
    fake::vchan_reset();
    auto p = xen::open_platform(io_);
    ASSERT_TRUE(p) << p.error().to_string();
    plat_ = std::move(*p);
    ASSERT_TRUE(plat_->store().write("/local/domain/5/name", "guest1"));
    spec_.cls = config::DeviceClass::kVif;
    spec_.index = 0;
    spec_.backend = "netdd";
    spec_.params = {{"backend", "netdd"}, {"mac", "00:16:3e:5d:00:01"}};
    policy_.cls = config::DeviceClass::kVif;
    auto e = make("guest1");
    ASSERT_TRUE(e) << e.error().to_string();
    vif_ = std::move(*e);
    auto pair = ctl::Channel::pair();
    ASSERT_TRUE(pair);
    backend_ = std::move(pair->first);
    shadow_end_ = std::move(pair->second);
    ASSERT_TRUE(backend_.set_nonblocking(true));
  }
  Result<std::unique_ptr<DeviceEngine>> make(const std::string& guest) {
    return make_device_engine(io_, *plat_, guest, spec_, 2, policy_, log_,
                              [this](const std::string& cause, auto) { faults_.push_back(cause); },
                              std::make_unique<VifHooks>(guest, spec_, 0, "wire", ""));
  }
  void TearDown() override {
    vif_.reset();
    if (front_) libxenvchan_close(front_);
    plat_.reset();
    fake::vchan_reset();
    fake::xenstore_reset();
    fake::libxl_reset();
  }
  // The guest's sd-netfront --xen offers its vchan.
  void frontend_offers() {
    auto s = xen::vchan_server(0, kFront);
    ASSERT_TRUE(s);
    front_ = *s;
    ASSERT_TRUE(plat_->store().write(std::string(kFront) + "/event-channel", "3"));
  }
  std::optional<ctl::Msg> front_recv() {
    std::optional<ctl::Msg> got;
    run_until(io_, [&] {
      ctl::Msg m;
      if (!got && libxenvchan_data_ready(front_) >= kMsg && libxenvchan_recv(front_, &m, kMsg) == kMsg) got = m;
      return got.has_value();
    });
    return got;
  }
  void front_send(const ctl::Msg& m) { ASSERT_EQ(libxenvchan_send(front_, &m, kMsg), kMsg); }
  std::optional<ctl::Msg> backend_recv() {
    std::optional<ctl::Msg> got;
    run_until(io_, [&] {
      if (got) return true;  // run_until asks once more at the end
      auto m = backend_.recv();
      if (m && *m) got = **m;
      return got.has_value();
    });
    return got;
  }
  ctl::Msg reconnected(uint32_t owner, uint32_t pages) {
    ctl::Msg r;
    r.type = ctl::MsgType::kReconnected;
    r.b = 2;
    ctl::XenPool pool;
    pool.owner = owner;
    pool.dir_ref = 77;
    pool.pages = pages;
    pool.port = 9;
    r.set_payload(pool);
    return r;
  }

  // Frontend connected, backend 7 ready, the frontend's pool relayed to it
  // (kDevAttach + kGrantRefs read off the backend's channel).
  void attach_backend_7(std::optional<Result<ResumeTimes>>& done) {
    ASSERT_TRUE(vif_->setup());
    frontend_offers();
    ASSERT_TRUE(front_recv());
    vif_->on_backend_ready(shadow_end_, 7, [&](Result<ResumeTimes> r) { done = std::move(r); });
    ASSERT_TRUE(front_recv());
    front_send(reconnected(5, netif::kPoolPages));
    ASSERT_TRUE(backend_recv());
    ASSERT_TRUE(backend_recv());
  }

  boost::asio::io_context io_;
  std::unique_ptr<platform::Platform> plat_;
  config::DeviceSpec spec_{};
  config::Policy policy_{};
  EventLog log_{std::nullopt};
  std::vector<std::string> faults_;
  std::unique_ptr<DeviceEngine> vif_;
  ctl::Channel backend_, shadow_end_;
  libxenvchan* front_ = nullptr;
};

TEST_F(VifEngineXenTest, GuestNotRunning_FailsNamingIt) {
  auto r = make("guest9");

  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("guest9"), std::string::npos);
}

TEST_F(VifEngineXenTest, ClassNotServedOnXen_RefusedNamingClassAndPlatform) {
  auto r = plat_->make_device_plumbing({"guest1", "vsnd", 0, 11, {}});

  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("vsnd"), std::string::npos);
  EXPECT_NE(r.error().message.find("xen"), std::string::npos);
}

TEST_F(VifEngineXenTest, BackendReady_FrontendRegrantsAndBackendGetsPoolWithNic) {
  ASSERT_TRUE(vif_->setup());
  frontend_offers();
  auto att = front_recv();
  ASSERT_TRUE(att);
  EXPECT_EQ(att->type, ctl::MsgType::kDevAttach);
  std::optional<Result<ResumeTimes>> done;
  vif_->on_backend_ready(shadow_end_, 7, [&](Result<ResumeTimes> r) { done = std::move(r); });

  auto rc = front_recv();
  ASSERT_TRUE(rc);
  EXPECT_EQ(rc->type, ctl::MsgType::kReconnect);
  EXPECT_EQ(rc->a, 7u);  // grant the new pool to the new backend's domain
  front_send(reconnected(5, netif::kPoolPages));

  auto b1 = backend_recv();
  auto b2 = backend_recv();
  ASSERT_TRUE(b1 && b2);
  EXPECT_EQ(b1->type, ctl::MsgType::kDevAttach);
  EXPECT_EQ(b2->type, ctl::MsgType::kGrantRefs);
  auto pool = b2->get_payload<ctl::XenPool>();
  EXPECT_EQ(pool.owner, 5u);
  EXPECT_EQ(pool.dir_ref, 77u);
  EXPECT_STREQ(pool.device, "eth0");
  EXPECT_FALSE(done);

  ctl::Msg ok;
  ok.type = ctl::MsgType::kDevAttached;
  ok.b = 2;
  vif_->on_backend_msg(7, ok);
  ASSERT_TRUE(done);
  EXPECT_TRUE(*done);
  EXPECT_EQ(vif_->status()["backend_up"], true);
}

TEST_F(VifEngineXenTest, FrontendSendsForeignPool_RecoveryFailsNothingSentToBackend) {
  ASSERT_TRUE(vif_->setup());
  frontend_offers();
  ASSERT_TRUE(front_recv());
  std::optional<Result<ResumeTimes>> done;
  vif_->on_backend_ready(shadow_end_, 7, [&](Result<ResumeTimes> r) { done = std::move(r); });
  ASSERT_TRUE(front_recv());

  front_send(reconnected(6, netif::kPoolPages));  // another domain's pages

  ASSERT_TRUE(run_until(io_, [&] { return done.has_value(); }));
  EXPECT_FALSE(*done);
  auto m = backend_.recv();
  EXPECT_TRUE(m && !*m);  // nothing for the backend
}

TEST_F(VifEngineXenTest, BackendRefuses_RecoveryFailsWithItsReason) {
  std::optional<Result<ResumeTimes>> done;
  attach_backend_7(done);

  ctl::Msg no;
  no.type = ctl::MsgType::kDevAttached;
  no.b = 2;
  no.a = 22;
  no.set_text("cannot map the pool");
  vif_->on_backend_msg(7, no);

  ASSERT_TRUE(done);
  ASSERT_FALSE(*done);
  EXPECT_NE(done->error().message.find("cannot map the pool"), std::string::npos);
}

TEST_F(VifEngineXenTest, FrontendReportsBadResponseWhileUp_FaultReported) {
  std::optional<Result<ResumeTimes>> done;
  attach_backend_7(done);
  ctl::Msg ok;
  ok.type = ctl::MsgType::kDevAttached;
  ok.b = 2;
  vif_->on_backend_msg(7, ok);

  ctl::Msg f;
  f.type = ctl::MsgType::kDevFault;
  f.b = 2;
  f.set_text("tx response for id 999 not in flight");
  front_send(f);

  ASSERT_TRUE(run_until(io_, [&] { return !faults_.empty(); }));
  EXPECT_NE(faults_[0].find("id 999"), std::string::npos);
}

// The device's xenstore nodes, as a toolstack lays out a PV device: across a
// recovery to another backend domain the guest's side never leaves
// Connected; only backend/backend-id move.
TEST_F(VifEngineXenTest, Recovery_XenbusFrontendStaysConnectedBackendMovesToNewDomain) {
  const std::string front = "/local/domain/5/device/sd-vif/0";
  const std::string back7 = "/local/domain/7/backend/sd-vif/5/0", back9 = "/local/domain/9/backend/sd-vif/5/0";
  std::optional<Result<ResumeTimes>> done;
  attach_backend_7(done);
  ctl::Msg ok;
  ok.type = ctl::MsgType::kDevAttached;
  ok.b = 2;
  vif_->on_backend_msg(7, ok);
  auto& xs = fake::xenstore();
  EXPECT_EQ(xs.kv[front + "/state"], "4");
  EXPECT_EQ(xs.kv[back7 + "/state"], "4");
  EXPECT_EQ(xs.kv[back7 + "/frontend-id"], "5");
  EXPECT_EQ(xs.kv[front + "/backend"], back7);
  EXPECT_EQ(xs.perms[front], (std::vector<std::pair<unsigned, unsigned>>{{5, XS_PERM_NONE}, {7, XS_PERM_READ}}));
  EXPECT_EQ(xs.perms[back7], (std::vector<std::pair<unsigned, unsigned>>{{7, XS_PERM_NONE}, {5, XS_PERM_READ}}));

  vif_->on_fault();
  std::optional<Result<ResumeTimes>> done9;
  vif_->on_backend_ready(shadow_end_, 9, [&](Result<ResumeTimes> r) { done9 = std::move(r); });
  EXPECT_EQ(xs.kv[front + "/backend-id"], "9");
  EXPECT_EQ(xs.kv[back9 + "/state"], "2");  // InitWait until it serves
  EXPECT_FALSE(xs.kv.count(back7 + "/state"));
  ASSERT_TRUE(front_recv());  // kBackendGone
  ASSERT_TRUE(front_recv());  // kReconnect to 9
  front_send(reconnected(5, netif::kPoolPages));
  ASSERT_TRUE(backend_recv());
  ASSERT_TRUE(backend_recv());
  vif_->on_backend_msg(9, ok);

  ASSERT_TRUE(done9 && *done9);
  EXPECT_EQ(xs.kv[back9 + "/state"], "4");
  std::vector<std::string> front_states;
  for (auto& [path, value] : xs.writes)
    if (path == front + "/state") front_states.push_back(value);
  EXPECT_EQ(front_states, (std::vector<std::string>{"1", "4"}));  // Initialising, Connected, nothing else
}

// The engine's plumbing uses the platform's store until it is destroyed
// (it removes the device's nodes): shadowd must destroy its engines before
// the platform (Daemon::~Daemon), or this runs on a freed XenStore.
TEST_F(VifEngineXenTest, EngineDestroyedBeforePlatform_RemovesItsNodesFromTheStore) {
  const std::string front = "/local/domain/5/device/sd-vif/0", back7 = "/local/domain/7/backend/sd-vif/5/0";
  std::optional<Result<ResumeTimes>> done;
  attach_backend_7(done);
  auto& xs = fake::xenstore();
  ASSERT_TRUE(xs.kv.count(front + "/state"));
  ASSERT_TRUE(xs.kv.count(back7 + "/state"));

  vif_.reset();  // as shadowd's teardown: engines, then the platform (TearDown)

  EXPECT_FALSE(xs.kv.count(front + "/state"));
  EXPECT_FALSE(xs.kv.count(back7 + "/state"));
}

// An unmodified guest (guest_frontend: kernel): its device is laid out with
// the real type and a dom0 backend, the frontend's state written last, and
// the dom0 ring proxy is started as the device's frontend (here a script
// that records its arguments and keeps the channel open); destroying the
// engine removes both directories and stops the proxy.
TEST_F(VifEngineXenTest, KernelFrontend_DeviceLaidOutForXenNetfrontAndProxyStarted) {
  char dir[] = "/tmp/sd-proxy-XXXXXX";
  ASSERT_TRUE(::mkdtemp(dir));
  std::string script = std::string(dir) + "/proxy", args = std::string(dir) + "/args";
  std::ofstream(script) << "#!/bin/sh\necho \"$@\" > " << args << "\nexec sleep 30\n";
  ::chmod(script.c_str(), 0755);
  auto p = xen::open_platform(io_, {{"vif", script}});
  ASSERT_TRUE(p);
  policy_.guest_frontend = "kernel";
  auto e = make_device_engine(io_, **p, "guest1", spec_, 3, policy_, log_, [](const std::string&, auto) {},
                              std::make_unique<VifHooks>("guest1", spec_, 0, "wire", ""));
  ASSERT_TRUE(e) << e.error().to_string();
  ASSERT_TRUE((*e)->setup());
  const std::string front = "/local/domain/5/device/vif/0", back = "/local/domain/0/backend/vif-proxy/5/0";
  auto& xs = fake::xenstore();
  EXPECT_EQ(xs.kv[front + "/backend"], back);
  EXPECT_EQ(xs.kv[front + "/backend-id"], "0");
  EXPECT_EQ(xs.kv[front + "/mac"], "00:16:3e:5d:00:01");
  EXPECT_EQ(xs.kv[back + "/frontend"], front);
  EXPECT_EQ(xs.kv[back + "/frontend-id"], "5");
  EXPECT_EQ(xs.kv[back + "/online"], "1");
  std::string last_front_write;
  for (auto& [path, value] : xs.writes)
    if (path.rfind(front, 0) == 0) last_front_write = path + "=" + value;
  EXPECT_EQ(last_front_write, front + "/state=1");  // the guest's kernel probes when state appears
  EXPECT_EQ(xs.perms[front], (std::vector<std::pair<unsigned, unsigned>>{{5, XS_PERM_NONE}, {0, XS_PERM_READ}}));
  EXPECT_EQ(xs.perms[back], (std::vector<std::pair<unsigned, unsigned>>{{0, XS_PERM_NONE}, {5, XS_PERM_READ}}));
  std::string got;
  for (int i = 0; i < 200 && got.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ifstream in(args);
    std::getline(in, got);
  }
  EXPECT_EQ(got, "--xen-guest 5 --handle 0 --control-fd 3 --mac 00:16:3e:5d:00:01");
  auto status = (*e)->status();
  EXPECT_EQ(status.value("guest_frontend", ""), "kernel (dom0 ring proxy)");

  e->reset();

  EXPECT_FALSE(xs.kv.count(front + "/state"));
  EXPECT_FALSE(xs.kv.count(back + "/state"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sd::dom0
