// Sandbox tests with real processes: a real drvdom is started by the local
// platform and probed from outside over its control channel.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "local/local_platform.hpp"
#include "sd/core/device_class.hpp"
#include "sd/core/sndif.hpp"

namespace {

using namespace sd;
using namespace std::chrono_literals;

std::string host_netdevs() {
  std::ifstream f("/proc/net/dev");
  std::string line, out;
  int n = 0;
  while (std::getline(f, line)) {
    if (++n <= 2) continue;
    auto c = line.find(':');
    std::string name = line.substr(0, c);
    name.erase(0, name.find_first_not_of(' '));
    out += (out.empty() ? "" : ",") + name;
  }
  return out;
}

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sd-sandbox-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    platform::Options o;
    o.state_dir = dir_ / "state";
    o.drvdom_binary = SD_DRVDOM_PATH;
    plat_ = std::make_unique<local::LocalPlatform>(io_, o);
    plat_->domains().on_death([this](const platform::DeathInfo& d) { death_ = d; });
  }
  void TearDown() override {
    plat_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Starts a domain and waits for its Ready message.
  void start(const std::string& netns = "") {
    platform::DomainSpec spec;
    spec.name = "sbx";
    spec.netns = netns;
    auto info = plat_->domains().create(spec, &ch_);
    ASSERT_TRUE(info.has_value()) << info.error().to_string();
    info_ = *info;
    auto m = next_msg();
    ASSERT_TRUE(m.has_value()) << "no Ready from the driver domain; log: " << log();
    ASSERT_EQ(m->type, ctl::MsgType::kReady);
  }

  // Next message from the domain.
  std::optional<ctl::Msg> next_msg(std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{ch_.fd(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      auto m = ch_.recv();
      if (!m || !*m) return std::nullopt;
      return **m;
    }
    return std::nullopt;
  }

  ctl::Msg probe(ctl::ProbeKind k, const std::string& text = "", uint64_t b = 0) {
    ctl::Msg m;
    m.type = ctl::MsgType::kProbe;
    m.a = static_cast<uint32_t>(k);
    m.b = b;
    m.set_text(text);
    EXPECT_TRUE(ch_.send(m).has_value());
    auto r = next_msg();
    EXPECT_TRUE(r.has_value());
    EXPECT_EQ(r->type, ctl::MsgType::kProbeResult);
    return r.value_or(ctl::Msg{});
  }

  // A vsnd connection's pool and event channel, as shadowd's engine gets them.
  std::unique_ptr<platform::DevicePlumbing> vsnd_plumbing() {
    platform::DeviceInfo d;
    d.guest = "g";
    d.type = "vsnd";
    d.pages = sndif::kPoolPages;
    auto p = plat_->make_device_plumbing(d);
    EXPECT_TRUE(p.has_value());
    return p ? std::move(*p) : nullptr;
  }

  // Hands the domain the backend's end of `dev` as a warm standby (it maps
  // every page, answers, and waits for kDevGo), the way shadowd does.
  Result<void> offer_standby(platform::DevicePlumbing& dev) {
    ctl::Msg attach;
    attach.type = ctl::MsgType::kDevAttach;
    attach.a = static_cast<uint32_t>(DeviceClass::kVsnd) | ctl::kAttachStandby;
    attach.b = kHandle;
    return dev.offer_backend(ch_, info_.id, attach, {});
  }

  ctl::Msg go() {
    ctl::Msg m;
    m.type = ctl::MsgType::kDevGo;
    m.b = kHandle;
    EXPECT_TRUE(ch_.send(m).has_value());
    return next_msg().value_or(ctl::Msg{});
  }

  void fault(ctl::FaultKind k) {
    ctl::Msg m;
    m.type = ctl::MsgType::kFault;
    m.a = static_cast<uint32_t>(k);
    ASSERT_TRUE(ch_.send(m).has_value());
  }

  // Runs the io_context until the death report arrives.
  bool wait_death(std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!death_ && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(50ms);
    }
    return death_.has_value();
  }

  std::string log() {
    std::ifstream f(dir_ / "state" / "sbx.log");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  std::filesystem::path dir_;
  boost::asio::io_context io_;
  std::unique_ptr<local::LocalPlatform> plat_;
  ctl::Channel ch_;
  platform::DomainInfo info_;
  std::optional<platform::DeathInfo> death_;
  static constexpr uint64_t kHandle = 7;
};

TEST_F(SandboxTest, OpenHostFile_OutsideView_NotFound) {
  auto secret = dir_ / "secret.txt";
  std::ofstream(secret) << "host data";
  start();

  auto r = probe(ctl::ProbeKind::kOpenPath, secret.string());

  EXPECT_EQ(r.a, static_cast<uint32_t>(ENOENT)) << r.get_text();
}

TEST_F(SandboxTest, OpenEtcShadow_OutsideView_NotFound) {
  start();

  auto r = probe(ctl::ProbeKind::kOpenPath, "/etc/shadow");

  EXPECT_EQ(r.a, static_cast<uint32_t>(ENOENT)) << r.get_text();
}

TEST_F(SandboxTest, OpenSystemLibrary_InsideView_Opens) {
  start();

  auto r = probe(ctl::ProbeKind::kOpenPath, "/usr/lib/os-release");

  EXPECT_EQ(r.a, 0u) << r.get_text();
}

TEST_F(SandboxTest, NetDevs_FreshNetns_OnlyLoopbackVisible) {
  start();

  auto r = probe(ctl::ProbeKind::kNetDevs);

  EXPECT_EQ(r.get_text(), "lo") << "host has: " << host_netdevs();
}

TEST_F(SandboxTest, DeniedSyscall_Socket_KilledWithSigsys) {
  start();

  fault(ctl::FaultKind::kBadSyscall);

  ASSERT_TRUE(wait_death());
  EXPECT_EQ(death_->signal, SIGSYS);
  EXPECT_NE(death_->reason.find("seccomp"), std::string::npos) << death_->reason;
}

TEST_F(SandboxTest, Segv_InvalidAccess_ReportedAsCrash) {
  start();

  fault(ctl::FaultKind::kSegv);

  ASSERT_TRUE(wait_death());
  EXPECT_EQ(death_->signal, SIGSEGV);
  EXPECT_NE(death_->reason.find("crashed"), std::string::npos) << death_->reason;
}

TEST_F(SandboxTest, Kill_Sigkill_ReportedAsKilled) {
  start();

  ASSERT_TRUE(plat_->domains().kill(info_.id, SIGKILL).has_value());

  ASSERT_TRUE(wait_death());
  EXPECT_EQ(death_->signal, SIGKILL);
  EXPECT_EQ(death_->id, info_.id);
}

// The pages of a device reach a sandboxed driver domain only through the
// platform's device plumbing (kDevAttach, then kGrantFds: one fd holding the
// pool, sent only if every page is granted to that domain). That the backend
// then sees the guest's data through them is what the e2e tests check (fio
// --verify, the DAC's recording).
TEST_F(SandboxTest, PoolGrantedToDomain_StandbyAttach_EveryPageMapped) {
  auto dev = vsnd_plumbing();
  start();
  ASSERT_TRUE(dev->grant_to({info_.id}).has_value());

  ASSERT_TRUE(offer_standby(*dev).has_value());
  auto r = next_msg();

  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->type, ctl::MsgType::kDevAttached);
  EXPECT_EQ(r->a, 0u) << r->get_text();
  EXPECT_EQ(r->get_text(), "standby");
}

TEST_F(SandboxTest, PoolGrantedToOtherDomain_Offer_RefusedAndNoPageSent) {
  auto dev = vsnd_plumbing();
  start();
  ASSERT_TRUE(dev->grant_to({info_.id + 100}).has_value());

  auto offered = offer_standby(*dev);
  auto r = go();

  ASSERT_FALSE(offered.has_value());
  EXPECT_NE(offered.error().message.find("not granted"), std::string::npos) << offered.error().message;
  EXPECT_EQ(r.type, ctl::MsgType::kDevAttached);
  EXPECT_EQ(r.a, static_cast<uint32_t>(ENOENT)) << r.get_text();
}

TEST_F(SandboxTest, PersistentNetns_DomainKilled_NetnsSurvives) {
  std::string ns = "sd-test-" + std::to_string(::getpid());
  start(ns);
  ASSERT_TRUE(plat_->domains().kill(info_.id, SIGKILL).has_value());
  ASSERT_TRUE(wait_death());

  bool exists_after_death = std::filesystem::exists("/run/netns/" + ns);
  plat_->domains().forget("sbx");
  bool exists_after_forget = std::filesystem::exists("/run/netns/" + ns);

  EXPECT_TRUE(exists_after_death);
  EXPECT_FALSE(exists_after_forget);
}

}  // namespace
