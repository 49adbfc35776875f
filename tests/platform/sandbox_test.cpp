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

#include "grant_broker.hpp"
#include "local/local_platform.hpp"
#include "local/netns.hpp"

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

  // Next message from the domain, answering grant-map requests on the way
  // (as shadowd does).
  std::optional<ctl::Msg> next_msg(std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{ch_.fd(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      auto m = ch_.recv();
      if (!m || !*m) return std::nullopt;
      if ((*m)->type == ctl::MsgType::kMapGrant) {
        broker_.answer(**m, info_.id, ch_);
        continue;
      }
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
  dom0::GrantBroker broker_;
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

TEST_F(SandboxTest, GrantedPage_Mapped_SeesOwnerData) {
  auto pool = plat_->make_grant_pool(4);
  ASSERT_TRUE(pool.has_value());
  uint64_t pattern = 0x1122334455667788ULL;
  std::memcpy((*pool)->page(0), &pattern, sizeof(pattern));
  start();
  for (platform::GrantRef ref = 0; ref < 4; ++ref) ASSERT_TRUE((*pool)->grant(ref, info_.id, false).has_value());
  uint32_t pool_id = broker_.add(pool->get());

  auto r = probe(ctl::ProbeKind::kMapGrant, "ro", (uint64_t{pool_id} << 32) | 0);

  EXPECT_EQ(r.a, 0u) << r.get_text();
  EXPECT_EQ(r.get_text(), "1122334455667788");
}

TEST_F(SandboxTest, UngrantedPage_MapRequest_Refused) {
  auto pool = plat_->make_grant_pool(4);
  ASSERT_TRUE(pool.has_value());
  start();
  ASSERT_TRUE((*pool)->grant(1, info_.id, false).has_value());
  uint32_t pool_id = broker_.add(pool->get());

  auto r = probe(ctl::ProbeKind::kMapGrant, "ro", (uint64_t{pool_id} << 32) | 2);

  EXPECT_EQ(r.a, static_cast<uint32_t>(EPERM));
  EXPECT_NE(r.get_text().find("not granted"), std::string::npos) << r.get_text();
}

TEST_F(SandboxTest, PageGrantedToOtherDomain_MapRequest_Refused) {
  auto pool = plat_->make_grant_pool(2);
  ASSERT_TRUE(pool.has_value());
  start();
  ASSERT_TRUE((*pool)->grant(0, info_.id + 100, false).has_value());
  uint32_t pool_id = broker_.add(pool->get());

  auto r = probe(ctl::ProbeKind::kMapGrant, "ro", (uint64_t{pool_id} << 32) | 0);

  EXPECT_EQ(r.a, static_cast<uint32_t>(EPERM));
}

TEST_F(SandboxTest, ReadOnlyGrant_WritableMap_Refused) {
  auto pool = plat_->make_grant_pool(2);
  ASSERT_TRUE(pool.has_value());
  start();
  ASSERT_TRUE((*pool)->grant(0, info_.id, /*readonly=*/true).has_value());
  ASSERT_TRUE((*pool)->grant(1, info_.id, /*readonly=*/true).has_value());
  uint32_t pool_id = broker_.add(pool->get());

  auto r = probe(ctl::ProbeKind::kMapGrant, "rw", (uint64_t{pool_id} << 32) | 0);

  EXPECT_EQ(r.a, static_cast<uint32_t>(EPERM)) << r.get_text();
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
