// shadowd's engine with the vbd hooks on the Xen plumbing, for an unmodified
// guest (guest_frontend: kernel), against the fake xenstore: the disk is
// laid out for the guest's xen-blkfront with a dom0 backend, the ring proxy
// (sd-blkfront --xen-guest; here a script that records its arguments) is
// started, and each backend incarnation is told its own disk by name.
#include "device_engine.hpp"
#include "vbd/vbd_hooks.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "fakes.hpp"
#include "sd/core/sndif.hpp"
#include "sd/platform/xen/grants.hpp"
#include "sd/platform/xen/evtchn.hpp"
#include "xen/device_plumbing.hpp"
#include "xen/xen_platform.hpp"

namespace sd::dom0 {
namespace {

class VbdEngineXenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake::libxl_reset();
    fake::xenstore_reset();
    fake::vchan_reset();
    ASSERT_TRUE(::mkdtemp(dir_));
    script_ = std::string(dir_) + "/proxy";
    args_ = std::string(dir_) + "/args";
    std::ofstream(script_) << "#!/bin/sh\necho \"$@\" > " << args_ << "\nexec sleep 30\n";
    ::chmod(script_.c_str(), 0755);
    auto p = xen::open_platform(io_, {{"vbd", script_}});
    ASSERT_TRUE(p) << p.error().to_string();
    plat_ = std::move(*p);
    ASSERT_TRUE(plat_->store().write("/local/domain/5/name", "guest1"));
    spec_.cls = config::DeviceClass::kVbd;
    spec_.index = 0;
    spec_.backend = "blkdd";
    spec_.params = {{"backend", "blkdd"}, {"vdev", "xvda"}, {"size", "64M"}, {"target", "/dev/xvdb"}};
    policy_.cls = config::DeviceClass::kVbd;
    policy_.guest_frontend = "kernel";
  }
  void TearDown() override {
    plat_.reset();
    fake::vchan_reset();
    fake::xenstore_reset();
    fake::libxl_reset();
    std::filesystem::remove_all(dir_);
  }
  Result<std::unique_ptr<DeviceEngine>> make() {
    return make_device_engine(io_, *plat_, "guest1", spec_, 2, policy_, log_, [](const std::string&, auto) {},
                              std::make_unique<VbdHooks>("guest1", spec_, dir_));
  }
  std::string proxy_args() {
    std::string got;
    for (int i = 0; i < 200 && got.empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      std::ifstream in(args_);
      std::getline(in, got);
    }
    return got;
  }

  char dir_[32] = "/tmp/sd-vbd-proxy-XXXXXX";
  std::string script_, args_;
  boost::asio::io_context io_;
  std::unique_ptr<platform::Platform> plat_;
  config::DeviceSpec spec_{};
  config::Policy policy_{};
  EventLog log_{std::nullopt};
};

TEST_F(VbdEngineXenTest, KernelFrontend_DiskLaidOutForXenBlkfrontAndProxyStarted) {
  auto e = make();
  ASSERT_TRUE(e) << e.error().to_string();
  ASSERT_TRUE((*e)->setup());

  // Named by its vdev as xl names a disk (xvda = 51712).
  const std::string front = "/local/domain/5/device/vbd/51712", back = "/local/domain/0/backend/vbd-proxy/5/51712";
  auto& xs = fake::xenstore();
  EXPECT_EQ(xs.kv[front + "/backend"], back);
  EXPECT_EQ(xs.kv[front + "/backend-id"], "0");
  EXPECT_EQ(xs.kv[front + "/virtual-device"], "51712");  // xvda, as blkfront names it
  EXPECT_EQ(xs.kv[front + "/device-type"], "disk");
  EXPECT_EQ(xs.kv[back + "/frontend"], front);
  EXPECT_EQ(xs.kv[back + "/frontend-id"], "5");
  std::string last_front_write;
  for (auto& [path, value] : xs.writes)
    if (path.rfind(front, 0) == 0) last_front_write = path + "=" + value;
  EXPECT_EQ(last_front_write, front + "/state=1");
  EXPECT_EQ(xs.kv[front + "/handle"], "51712");
  EXPECT_EQ(proxy_args(), "--xen-guest 5 --handle 51712 --control-fd 3");
  auto status = (*e)->status();
  EXPECT_EQ(status.value("guest_frontend", ""), "kernel (dom0 ring proxy)");
  EXPECT_EQ(status.value("sectors", uint64_t{0}), 64u * 1024 * 1024 / 512);

  e->reset();
  EXPECT_FALSE(xs.kv.count(front + "/state"));
  EXPECT_FALSE(xs.kv.count(back + "/state"));
}

TEST_F(VbdEngineXenTest, DiskInTheDriverDomainWithoutSize_RefusedNamingSize) {
  spec_.params.erase("size");
  auto e = make();
  ASSERT_TRUE(e) << e.error().to_string();

  auto r = (*e)->setup();

  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("size="), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("blkdd"), std::string::npos) << r.error().message;
}

// The proxy's pool (owner dom0) goes to each incarnation with the name of
// the disk it owns; a name that does not fit the message is refused, not cut.
TEST_F(VbdEngineXenTest, BackendGetsTheProxysPoolAndItsOwnDiskByName) {
  platform::DeviceInfo info{"guest1", "vbd", 0, blkif::kPoolPages, {}, true};
  auto p = plat_->make_device_plumbing(info);
  ASSERT_TRUE(p) << p.error().to_string();
  auto& plumbing = **p;
  ASSERT_TRUE(plumbing.connect_frontend().value());
  ctl::Msg repaired;
  repaired.type = ctl::MsgType::kReconnected;
  ctl::XenPool pool;
  pool.owner = 0;
  pool.dir_ref = 12;
  pool.pages = blkif::kPoolPages;
  pool.port = 4;
  repaired.set_payload(pool);
  ASSERT_TRUE(plumbing.frontend_repaired(repaired));
  auto pair = ctl::Channel::pair();
  ASSERT_TRUE(pair);
  ctl::Msg attach;
  attach.type = ctl::MsgType::kDevAttach;
  attach.b = 2;

  ASSERT_TRUE(plumbing.offer_backend(pair->first, 7, attach, {{}, "/dev/xvdb"}));
  auto a = pair->second.recv();
  auto refs = pair->second.recv();

  ASSERT_TRUE(a && *a && refs && *refs);
  EXPECT_EQ((*refs)->type, ctl::MsgType::kGrantRefs);
  auto got = (*refs)->get_payload<ctl::XenPool>();
  EXPECT_EQ(got.owner, 0u);
  EXPECT_EQ(got.dir_ref, 12u);
  EXPECT_STREQ(got.device, "/dev/xvdb");
  EXPECT_FALSE(plumbing.offer_backend(pair->first, 7, attach, {{}, std::string(80, 'x')}));
}

TEST_F(VbdEngineXenTest, VbdOfAGuestWithTheProjectsFrontend_RefusedNamingThePolicyKey) {
  platform::DeviceInfo info{"guest1", "vbd", 0, blkif::kPoolPages, {}, false};
  auto r = plat_->make_device_plumbing(info);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("guest_frontend: kernel"), std::string::npos) << r.error().message;
}

// The plumbing of an unmodified guest's sound card: the card laid out for snd-xen-front with the stream under 0/0, owned by
// the guest (it writes its ring refs there), the proxy started; a card's
// second stream refused.
TEST_F(VbdEngineXenTest, KernelSoundCard_LaidOutForSndXenFrontProxyStarted) {
  std::map<std::string, std::string> nodes{{"sample-rates", "48000"}, {"0/0/type", "p"}, {"0/name", "Music"}};
  platform::DeviceInfo info{"guest1", "vsnd", 0, sndif::kPoolPages, nodes, true, 0};
  auto p = xen::XenDevicePlumbing::create(io_, plat_->store(), info, script_);
  ASSERT_TRUE(p) << p.error().to_string();
  ASSERT_TRUE((*p)->connect_frontend().value());

  const std::string front = "/local/domain/5/device/vsnd/0", back = "/local/domain/0/backend/vsnd-proxy/5/0";
  auto& xs = fake::xenstore();
  EXPECT_EQ(xs.kv[front + "/backend"], back);
  EXPECT_EQ(xs.kv[front + "/0/0/type"], "p");
  EXPECT_EQ(xs.kv[front + "/sample-rates"], "48000");
  for (const char* node : {"/0", "/0/0", "/0/0/type"})  // the guest writes its ring refs into 0/0
    EXPECT_EQ(xs.perms[front + node], (std::vector<std::pair<unsigned, unsigned>>{{5, XS_PERM_NONE}, {0, XS_PERM_READ}}))
        << node;
  EXPECT_EQ(proxy_args(), "--xen-guest 5 --handle 0 --control-fd 3");

  info.stream = 1;
  auto second = xen::XenDevicePlumbing::create(io_, plat_->store(), info, script_);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("one playback stream"), std::string::npos);
  auto refused = plat_->make_device_plumbing(info);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("one playback stream"), std::string::npos);
  info.stream = 0;
  info.kernel_frontend = false;
  auto own = plat_->make_device_plumbing(info);
  ASSERT_FALSE(own);
  EXPECT_NE(own.error().message.find("guest_frontend: kernel"), std::string::npos) << own.error().message;
}

// The DAC on Xen: each incarnation gets, after the proxy's pool, the DAC's
// memory moved into pages shared with it alone (what was in it goes along)
// and an interrupt port offered to it; the next incarnation's move lets the
// previous pages go.
TEST_F(VbdEngineXenTest, KernelSoundCard_EachBackendGetsTheDacMovedIntoPagesSharedWithItAlone) {
  struct Memory final : platform::LentMemory {
    std::vector<uint8_t> own = std::vector<uint8_t>(sndif::kDacBytes, 0);
    uint8_t* at = own.data();
    std::shared_ptr<void> keep;
    std::shared_ptr<platform::EventChannel> irq;
    size_t bytes() const override { return sndif::kDacBytes; }
    void move_to(uint8_t* to, std::shared_ptr<void> k, std::shared_ptr<platform::EventChannel> i) override {
      std::memcpy(to, at, sndif::kDacBytes);
      at = to;
      keep = std::move(k);
      irq = std::move(i);
    }
  } dac;
  std::memcpy(dac.own.data(), "regs", 4);
  dac.own[sndif::kDacBytes - 1] = 0x5a;  // the ring's last byte
  platform::DeviceInfo info{"guest1", "vsnd", 0, sndif::kPoolPages, {{"0/0/type", "p"}}, true, 0};
  auto p = xen::XenDevicePlumbing::create(io_, plat_->store(), info, script_);
  ASSERT_TRUE(p) << p.error().to_string();
  auto& plumbing = **p;
  ASSERT_TRUE(plumbing.connect_frontend().value());
  ctl::Msg repaired{.type = ctl::MsgType::kReconnected};
  repaired.set_payload(ctl::XenPool{.owner = 0, .dir_ref = 12, .pages = sndif::kPoolPages, .port = 4});
  ASSERT_TRUE(plumbing.frontend_repaired(repaired));
  auto pair = ctl::Channel::pair();
  ASSERT_TRUE(pair);
  ctl::Msg attach{.type = ctl::MsgType::kDevAttach, .b = 2};
  constexpr uint32_t kDacPages = sndif::kDacBytes / 4096;

  ASSERT_TRUE(plumbing.offer_backend(pair->first, 7, attach, {{}, {}, &dac}));
  auto a = pair->second.recv();
  auto guest = pair->second.recv();
  auto lent = pair->second.recv();

  ASSERT_TRUE(a && *a && guest && *guest && lent && *lent);
  EXPECT_EQ((*guest)->a, ctl::kPoolGuest);
  EXPECT_EQ((*guest)->get_payload<ctl::XenPool>().dir_ref, 12u);
  ASSERT_EQ((*lent)->type, ctl::MsgType::kGrantRefs);
  EXPECT_EQ((*lent)->a, ctl::kPoolLent);
  auto ref = (*lent)->get_payload<ctl::XenPool>();
  EXPECT_EQ(ref.owner, 0u);
  EXPECT_EQ(ref.pages, kDacPages);
  EXPECT_EQ(fake::gnt().shared_pages, static_cast<int>(kDacPages) + 1);  // and its directory
  {
    auto mapped = xen::MappedPool::map(0, ref.dir_ref, kDacPages);  // as the driver domain does
    ASSERT_TRUE(mapped) << mapped.error().to_string();
    EXPECT_EQ(std::memcmp((*mapped)->base(), "regs", 4), 0);
    EXPECT_EQ((*mapped)->base()[sndif::kDacBytes - 1], 0x5a);
    (*mapped)->base()[4] = 0x77;  // the driver writes; the DAC reads it where it now is
    EXPECT_EQ(dac.at[4], 0x77);
  }
  auto bound = xen::XenEventChannel::bind(0, ref.port);
  ASSERT_TRUE(bound) << bound.error().to_string();
  int before = fake::gnt().notifies;
  ASSERT_TRUE(dac.irq->notify());
  EXPECT_EQ(fake::gnt().notifies, before + 1);

  ASSERT_TRUE(plumbing.offer_backend(pair->first, 8, attach, {{}, {}, &dac}));
  EXPECT_EQ(fake::gnt().shared_pages, static_cast<int>(kDacPages) + 1);  // domain 7's pages let go
  EXPECT_EQ(dac.at[4], 0x77);
}

}  // namespace
}  // namespace sd::dom0
