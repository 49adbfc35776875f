// XenDomainManager against the fake libxl (fakes.hpp): the config it builds,
// its error paths, kill/restart, and death events through the osevent hooks.
#include "xen/domain_manager.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <vector>

#include "fakes.hpp"
#include "run_until.hpp"

namespace sd::xen {
namespace {

using test::run_until;
using test::settle;

platform::DomainSpec pv_spec(const std::string& name = "netdd") {
  platform::DomainSpec s;
  s.name = name;
  s.kernel = "/boot/vmlinuz-drvdom";
  return s;
}

class XenDomainManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake::libxl_reset();
    auto m = XenDomainManager::open(io_);
    ASSERT_TRUE(m) << m.error().to_string();
    mgr_ = std::move(*m);
    mgr_->on_death([this](const platform::DeathInfo& d) { deaths_.push_back(d); });
  }
  void TearDown() override {
    mgr_.reset();
    settle(io_, std::chrono::milliseconds(5));
    fake::libxl_reset();
  }
  // Creates and lets the background build finish (death events on, unpaused).
  platform::DomId create(const platform::DomainSpec& s) {
    auto info = mgr_->create(s, nullptr);
    EXPECT_TRUE(info) << info.error().to_string();
    settle(io_);
    return info ? info->id : 0;
  }

  boost::asio::io_context io_;
  std::unique_ptr<XenDomainManager> mgr_;
  std::vector<platform::DeathInfo> deaths_;
};

// ---- open ------------------------------------------------------------------

TEST(XenDomainManagerOpen, CtxAllocFails_ReturnsUnavailableWithLibxlError) {
  fake::libxl_reset();
  fake::libxl().ctx_alloc_rc = ERROR_FAIL;
  boost::asio::io_context io;

  auto m = XenDomainManager::open(io);

  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, Code::kUnavailable);
  EXPECT_NE(m.error().message.find("libxl_ctx_alloc returned ERROR_FAIL (-3)"), std::string::npos);
  EXPECT_EQ(fake::libxl().loggers, 0);  // the logger is not leaked
  fake::libxl_reset();
}

TEST_F(XenDomainManagerTest, Open_Always_LetsLibxlReapOnlyItsOwnChildren) {
  EXPECT_EQ(fake::libxl().childproc_mode, libxl_sigchld_owner_libxl_always_selective_reap);
}

TEST_F(XenDomainManagerTest, Destructor_Always_FreesCtxAndDeregistersFd) {
  mgr_.reset();

  EXPECT_EQ(fake::libxl().ctx_frees, 1);
  EXPECT_EQ(fake::libxl().fd_deregistrations, 1);
  EXPECT_EQ(fake::libxl().loggers, 0);
}

// ---- create: the config ------------------------------------------------------

TEST_F(XenDomainManagerTest, Create_PvSpec_BuildsPvConfigWithNameAndDriverDomain) {
  auto spec = pv_spec("netdd");
  spec.driver_domain = true;

  create(spec);

  ASSERT_EQ(fake::libxl().created.size(), 1u);
  const auto& c = fake::libxl().created[0];
  EXPECT_EQ(c.name, "netdd");
  EXPECT_EQ(c.c_type, LIBXL_DOMAIN_TYPE_PV);
  EXPECT_EQ(c.b_type, LIBXL_DOMAIN_TYPE_PV);
  EXPECT_EQ(c.driver_domain, 1);
}

TEST_F(XenDomainManagerTest, Create_NotDriverDomain_SetsDriverDomainFalse) {
  create(pv_spec());

  ASSERT_EQ(fake::libxl().created.size(), 1u);
  EXPECT_EQ(fake::libxl().created[0].driver_domain, -1);
}

TEST_F(XenDomainManagerTest, Create_MemoryAndVcpus_SetsMemkbAndAllVcpusOnline) {
  auto spec = pv_spec();
  spec.memory_mb = 256;
  spec.vcpus = 3;

  create(spec);

  ASSERT_EQ(fake::libxl().created.size(), 1u);
  const auto& c = fake::libxl().created[0];
  EXPECT_EQ(c.max_memkb, 256u * 1024);
  EXPECT_EQ(c.target_memkb, 256u * 1024);
  EXPECT_EQ(c.max_vcpus, 3);
  EXPECT_EQ(c.avail_vcpus, 3);
}

TEST_F(XenDomainManagerTest, Create_NoMemoryNoVcpus_LeavesLibxlDefaults) {
  create(pv_spec());

  ASSERT_EQ(fake::libxl().created.size(), 1u);
  const auto& c = fake::libxl().created[0];
  EXPECT_EQ(c.max_memkb, LIBXL_MEMKB_DEFAULT);
  EXPECT_EQ(c.target_memkb, LIBXL_MEMKB_DEFAULT);
  EXPECT_EQ(c.max_vcpus, 0);
  EXPECT_EQ(c.avail_vcpus, 0);
}

TEST_F(XenDomainManagerTest, Create_KernelRamdiskCmdline_CopiedToBuildInfo) {
  auto spec = pv_spec();
  spec.ramdisk = "/boot/initrd-drvdom";
  spec.cmdline = "console=hvc0 quiet";

  create(spec);

  ASSERT_EQ(fake::libxl().created.size(), 1u);
  const auto& c = fake::libxl().created[0];
  EXPECT_EQ(c.kernel, "/boot/vmlinuz-drvdom");
  EXPECT_EQ(c.ramdisk, "/boot/initrd-drvdom");
  EXPECT_EQ(c.cmdline, "console=hvc0 quiet");
}

TEST_F(XenDomainManagerTest, Create_PvhType_BuildsPvhConfig) {
  auto spec = pv_spec();
  spec.type = "pvh";

  create(spec);

  ASSERT_EQ(fake::libxl().created.size(), 1u);
  EXPECT_EQ(fake::libxl().created[0].c_type, LIBXL_DOMAIN_TYPE_PVH);
  EXPECT_EQ(fake::libxl().created[0].b_type, LIBXL_DOMAIN_TYPE_PVH);
}

TEST_F(XenDomainManagerTest, Create_Nics_BridgeScriptMacServedByDom0) {
  auto spec = pv_spec();
  spec.nics.push_back({{"bridge", "wire0"}, {"mac", "00:16:3e:00:00:0a"}, {"script", "vif-bridge"}});
  spec.nics.push_back({{"bridge", "xenbr1"}});

  create(spec);

  ASSERT_EQ(fake::libxl().created.size(), 1u);
  const auto& nics = fake::libxl().created[0].nics;
  ASSERT_EQ(nics.size(), 2u);
  EXPECT_EQ(nics[0].bridge, "wire0");
  EXPECT_EQ(nics[0].script, "vif-bridge");
  EXPECT_EQ(nics[0].mac[5], 0x0a);
  EXPECT_EQ(nics[0].backend_domid, 0);
  EXPECT_EQ(nics[1].bridge, "xenbr1");
  EXPECT_EQ(nics[1].script, "");
}

TEST_F(XenDomainManagerTest, Create_Disks_TargetVdevAccessScriptServedByDom0) {
  auto spec = pv_spec();
  spec.disks.push_back({{"target", "/srv/dd.img"}, {"vdev", "xvdb"}, {"access", "rw"}, {"script", "/lab/block-shared"}});
  spec.disks.push_back({{"target", "/srv/ro.qcow2"}, {"vdev", "xvdc"}, {"access", "ro"}, {"format", "qcow2"}});

  create(spec);

  ASSERT_EQ(fake::libxl().created.size(), 1u);
  const auto& disks = fake::libxl().created[0].disks;
  ASSERT_EQ(disks.size(), 2u);
  EXPECT_EQ(disks[0].target, "/srv/dd.img");
  EXPECT_EQ(disks[0].vdev, "xvdb");
  EXPECT_EQ(disks[0].script, "/lab/block-shared");
  EXPECT_EQ(disks[0].format, LIBXL_DISK_FORMAT_RAW);
  EXPECT_EQ(disks[0].readwrite, 1);
  EXPECT_EQ(disks[0].backend_domid, 0);
  EXPECT_EQ(disks[1].format, LIBXL_DISK_FORMAT_QCOW2);
  EXPECT_EQ(disks[1].readwrite, 0);
  EXPECT_EQ(disks[1].script, "");
}

TEST_F(XenDomainManagerTest, Create_NicWithBadMac_InvalidInputNothingCreated) {
  auto spec = pv_spec();
  spec.nics.push_back({{"mac", "00:16:3e:zz"}});

  auto info = mgr_->create(spec, nullptr);

  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, Code::kInvalidInput);
  EXPECT_NE(info.error().message.find("00:16:3e:zz"), std::string::npos);
  EXPECT_TRUE(fake::libxl().created.empty());
}

TEST_F(XenDomainManagerTest, Create_Success_DisposesConfig) {
  create(pv_spec());

  EXPECT_EQ(fake::libxl().config_disposes, 1);
}

// ---- create: what it returns and starts ---------------------------------------

TEST_F(XenDomainManagerTest, Create_Success_ReturnsDomidNameAndNoPid) {
  auto info = mgr_->create(pv_spec("netdd"), nullptr);

  ASSERT_TRUE(info) << info.error().to_string();
  EXPECT_EQ(info->id, fake::libxl().created[0].domid);
  EXPECT_EQ(info->name, "netdd");
  EXPECT_EQ(info->pid, -1);
}

TEST_F(XenDomainManagerTest, Create_Success_EnablesDeathEventsAndUnpauses) {
  auto id = create(pv_spec());

  EXPECT_EQ(fake::libxl().death_watches, 1);
  EXPECT_EQ(fake::libxl().unpaused, std::vector<uint32_t>{id});
}

TEST_F(XenDomainManagerTest, Create_Success_LeavesControlChannelUntouched) {
  ctl::Channel ch;

  auto info = mgr_->create(pv_spec(), &ch);

  ASSERT_TRUE(info);
  EXPECT_FALSE(ch.valid());
}

TEST_F(XenDomainManagerTest, Create_SameNameWhileFirstLives_SecondGetsDistinctXenName) {
  auto first = create(pv_spec("netdd"));

  auto second = create(pv_spec("netdd"));

  EXPECT_EQ(mgr_->xen_name(first), "netdd");
  ASSERT_TRUE(mgr_->xen_name(second));
  EXPECT_NE(*mgr_->xen_name(second), "netdd");
  EXPECT_EQ(fake::libxl().created[1].name, *mgr_->xen_name(second));
}

// ---- create: errors --------------------------------------------------------------

TEST_F(XenDomainManagerTest, Create_LibxlFails_ReturnsErrorNamingDomainCallAndCode) {
  fake::libxl().create_rc = ERROR_FAIL;

  auto info = mgr_->create(pv_spec("netdd"), nullptr);

  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, Code::kSystem);
  EXPECT_NE(info.error().message.find("'netdd'"), std::string::npos) << info.error().message;
  EXPECT_NE(info.error().message.find("libxl_domain_create_new returned ERROR_FAIL (-3)"), std::string::npos)
      << info.error().message;
  EXPECT_EQ(fake::libxl().config_disposes, 1);
}

TEST_F(XenDomainManagerTest, Create_LibxlSaysInval_ReturnsInvalidInput) {
  fake::libxl().create_rc = ERROR_INVAL;

  auto info = mgr_->create(pv_spec(), nullptr);

  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, Code::kInvalidInput);
}

TEST_F(XenDomainManagerTest, Create_LibxlOutOfMemory_ReturnsRetry) {
  fake::libxl().create_rc = ERROR_NOMEM;

  auto info = mgr_->create(pv_spec(), nullptr);

  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, Code::kRetry);
}

TEST_F(XenDomainManagerTest, Create_EvenableFails_DestroysDomainAndReportsItsDeath) {
  fake::libxl().evenable_rc = ERROR_FAIL;

  auto info = mgr_->create(pv_spec(), nullptr);
  ASSERT_TRUE(info);
  ASSERT_TRUE(run_until(io_, [&] { return !deaths_.empty(); }));

  EXPECT_EQ(deaths_[0].id, info->id);
  EXPECT_NE(deaths_[0].reason.find("create failed (libxl_evenable_domain_death returned ERROR_FAIL"),
            std::string::npos)
      << deaths_[0].reason;
  EXPECT_EQ(fake::libxl().destroyed.size(), 1u);
  EXPECT_TRUE(fake::libxl().domains.empty());
}

TEST_F(XenDomainManagerTest, Create_UnpauseFails_DestroysDomainAndDisablesDeathEvents) {
  fake::libxl().unpause_rc = ERROR_FAIL;

  auto info = mgr_->create(pv_spec(), nullptr);
  ASSERT_TRUE(info);
  ASSERT_TRUE(run_until(io_, [&] { return !deaths_.empty(); }));

  EXPECT_NE(deaths_[0].reason.find("libxl_domain_unpause returned ERROR_FAIL"), std::string::npos);
  EXPECT_TRUE(fake::libxl().domains.empty());
  EXPECT_EQ(fake::libxl().death_watches, 0);
}

// ---- create in the background ---------------------------------------------------

TEST_F(XenDomainManagerTest, Create_BuildStillRunning_ReturnsAtOnceWithChosenDomid) {
  fake::libxl().hold_creates = true;

  auto info = mgr_->create(pv_spec(), nullptr);
  settle(io_);

  ASSERT_TRUE(info) << info.error().to_string();
  EXPECT_TRUE(fake::libxl().unpaused.empty());  // not built yet
  EXPECT_EQ(fake::libxl().creates_in_flight, 1);
  fake::libxl_finish_creates();
  settle(io_);
  ASSERT_EQ(fake::libxl().created.size(), 1u);
  EXPECT_EQ(fake::libxl().created[0].domid, info->id);  // libxl used the domid create() returned
  EXPECT_EQ(fake::libxl().unpaused, std::vector<uint32_t>{info->id});
  EXPECT_EQ(fake::libxl().death_watches, 1);
}

TEST_F(XenDomainManagerTest, Create_DomidsInUse_Skipped) {
  fake::libxl().domains = {1, 2};  // someone else's domains

  auto id = create(pv_spec());

  EXPECT_EQ(id, 3u);
}

TEST_F(XenDomainManagerTest, Create_AfterOthersDestroyed_DomidsKeepCountingUp) {
  fake::libxl().domains = {0, 7};  // dom0 and someone's domain 7; 1-6 may be "recently used"
  auto first = create(pv_spec());
  fake::libxl().domains.erase(7);

  auto second = create(pv_spec("other"));
  ASSERT_TRUE(mgr_->kill(first, SIGKILL));
  settle(io_);
  auto third = create(pv_spec("third"));

  EXPECT_EQ(first, 8u);
  EXPECT_EQ(second, 9u);
  EXPECT_EQ(third, 10u);  // not 8 again, just destroyed
}

TEST_F(XenDomainManagerTest, Create_BuildFails_ReportedAsTheIncarnationsDeath) {
  fake::libxl().async_create_rc = ERROR_FAIL;

  auto info = mgr_->create(pv_spec("netdd"), nullptr);
  ASSERT_TRUE(info);
  ASSERT_TRUE(run_until(io_, [&] { return !deaths_.empty(); }));

  EXPECT_EQ(deaths_[0].id, info->id);
  EXPECT_EQ(deaths_[0].name, "netdd");
  EXPECT_NE(deaths_[0].reason.find("create failed (libxl_domain_create_new returned ERROR_FAIL"), std::string::npos)
      << deaths_[0].reason;
  EXPECT_FALSE(mgr_->xen_name(info->id));
}

TEST_F(XenDomainManagerTest, Kill_WhileBuilding_DeathAtOnceDomainDestroyedWhenBuilt) {
  fake::libxl().hold_creates = true;
  auto info = mgr_->create(pv_spec("netdd"), nullptr);
  ASSERT_TRUE(info);

  ASSERT_TRUE(mgr_->kill(info->id, SIGKILL));
  ASSERT_TRUE(run_until(io_, [&] { return !deaths_.empty(); }));
  EXPECT_EQ(deaths_[0].reason, "killed (destroyed by shadowd)");
  fake::libxl_finish_creates();
  settle(io_);

  EXPECT_EQ(deaths_.size(), 1u);
  EXPECT_TRUE(fake::libxl().unpaused.empty());  // it never ran
  EXPECT_FALSE(fake::libxl().domains.count(info->id));
  EXPECT_EQ(fake::libxl().destroys_in_flight, 0);
}

TEST_F(XenDomainManagerTest, Create_PvWithoutKernel_ReturnsInvalidInputWithoutCallingLibxl) {
  platform::DomainSpec spec;
  spec.name = "netdd";

  auto info = mgr_->create(spec, nullptr);

  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, Code::kInvalidInput);
  EXPECT_NE(info.error().message.find("kernel="), std::string::npos);
  EXPECT_TRUE(fake::libxl().created.empty());
}

TEST_F(XenDomainManagerTest, Create_UnknownType_ReturnsInvalidInput) {
  auto spec = pv_spec();
  spec.type = "qemu";

  auto info = mgr_->create(spec, nullptr);

  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, Code::kInvalidInput);
  EXPECT_NE(info.error().message.find("unknown type 'qemu'"), std::string::npos);
}

TEST_F(XenDomainManagerTest, Create_ZeroVcpus_ReturnsInvalidInput) {
  auto spec = pv_spec();
  spec.vcpus = 0;

  auto info = mgr_->create(spec, nullptr);

  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, Code::kInvalidInput);
}

TEST_F(XenDomainManagerTest, Create_AfterDisaster_ReturnsEscalate) {
  fake::libxl_disaster("xenstore watch fd broke");

  auto info = mgr_->create(pv_spec(), nullptr);

  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, Code::kEscalate);
  EXPECT_NE(info.error().message.find("xenstore watch fd broke"), std::string::npos);
}

// ---- kill --------------------------------------------------------------------------

TEST_F(XenDomainManagerTest, Kill_LiveDomain_DestroysIt) {
  auto id = create(pv_spec());

  auto r = mgr_->kill(id, SIGKILL);

  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(fake::libxl().destroyed, std::vector<uint32_t>{id});
  EXPECT_FALSE(fake::libxl().domains.count(id));
}

TEST_F(XenDomainManagerTest, Kill_LiveDomain_PausedFirstThenDestroyedAsynchronously) {
  auto id = create(pv_spec());
  fake::libxl().calls.clear();

  ASSERT_TRUE(mgr_->kill(id, SIGKILL));

  auto n = std::to_string(id);
  EXPECT_EQ(fake::libxl().calls, (std::vector<std::string>{"pause " + n, "destroy-async " + n}));
}

TEST_F(XenDomainManagerTest, Kill_DestroyStillRunning_DeathReportedAtOnceNameNotReused) {
  auto id = create(pv_spec("netdd"));
  fake::libxl().hold_destroys = true;

  ASSERT_TRUE(mgr_->kill(id, SIGKILL));
  ASSERT_TRUE(run_until(io_, [&] { return !deaths_.empty(); }));
  auto during = create(pv_spec("netdd"));
  fake::libxl().hold_destroys = false;
  fake::libxl_finish_destroys();
  settle(io_);
  auto after = create(pv_spec("netdd"));

  EXPECT_EQ(deaths_.size(), 1u);
  EXPECT_EQ(deaths_[0].reason, "killed (destroyed by shadowd)");
  EXPECT_NE(mgr_->xen_name(during), "netdd");  // the dying domain still holds the name in Xen
  EXPECT_EQ(mgr_->xen_name(after), "netdd");
  EXPECT_EQ(fake::libxl().destroys_in_flight, 0);
}

TEST_F(XenDomainManagerTest, Kill_BackgroundDestroyFails_SaidOnStderrDomainLeftPaused) {
  auto id = create(pv_spec("netdd"));
  fake::libxl().async_destroy_rc = ERROR_FAIL;

  testing::internal::CaptureStderr();
  auto r = mgr_->kill(id, SIGKILL);
  settle(io_);
  std::string err = testing::internal::GetCapturedStderr();

  EXPECT_TRUE(r);  // the domain is paused: dead to its peers
  EXPECT_EQ(fake::libxl().paused, std::vector<uint32_t>{id});
  EXPECT_TRUE(fake::libxl().domains.count(id));
  EXPECT_NE(err.find("libxl_domain_destroy returned ERROR_FAIL"), std::string::npos) << err;
  EXPECT_NE(err.find("stays paused"), std::string::npos) << err;
}

TEST_F(XenDomainManagerTest, Kill_PauseFailsDomainStillThere_ReturnsErrorNotReported) {
  auto id = create(pv_spec("netdd"));
  fake::libxl().pause_rc = ERROR_FAIL;

  auto r = mgr_->kill(id, SIGKILL);
  settle(io_);

  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("libxl_domain_pause returned ERROR_FAIL"), std::string::npos);
  EXPECT_TRUE(deaths_.empty());
}

TEST_F(XenDomainManagerTest, Destructor_DestroyInFlight_DrivesLibxlUntilDoneThenFrees) {
  auto id = create(pv_spec("netdd"));
  fake::libxl().hold_destroys = true;
  ASSERT_TRUE(mgr_->kill(id, SIGKILL));
  fake::libxl_finish_when_driven();

  mgr_.reset();

  EXPECT_EQ(fake::libxl().destroys_in_flight, 0);
  EXPECT_FALSE(fake::libxl().domains.count(id));
  EXPECT_EQ(fake::libxl().ctx_frees, 1);
}

TEST_F(XenDomainManagerTest, Destructor_LiveAndBuildingDomains_AllDestroyedBeforeLibxlIsFreed) {
  auto live = create(pv_spec("netdd"));
  fake::libxl().hold_creates = true;
  auto building = mgr_->create(pv_spec("standby"), nullptr);
  ASSERT_TRUE(building);
  fake::libxl_finish_when_driven();

  mgr_.reset();

  EXPECT_FALSE(fake::libxl().domains.count(live));
  EXPECT_FALSE(fake::libxl().domains.count(building->id));
  EXPECT_EQ(fake::libxl().creates_in_flight, 0);
  EXPECT_EQ(fake::libxl().destroys_in_flight, 0);
  EXPECT_EQ(fake::libxl().ctx_frees, 1);
}

TEST_F(XenDomainManagerTest, Kill_Twice_DestroysOnceAndSucceedsTwice) {
  auto id = create(pv_spec());

  auto first = mgr_->kill(id, SIGKILL);
  auto second = mgr_->kill(id, SIGKILL);

  EXPECT_TRUE(first);
  EXPECT_TRUE(second);
  EXPECT_EQ(fake::libxl().destroyed.size(), 1u);
}

TEST_F(XenDomainManagerTest, Kill_DomainAlreadyGoneInXen_SucceedsWithoutDestroy) {
  auto id = create(pv_spec());
  fake::libxl_vanish(id);  // libxl_domain_pause now says ERROR_INVAL

  auto r = mgr_->kill(id, SIGKILL);

  EXPECT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(fake::libxl().destroyed.empty());
}

TEST_F(XenDomainManagerTest, Kill_UnknownId_SucceedsWithoutCallingLibxl) {
  auto r = mgr_->kill(4242, SIGKILL);

  EXPECT_TRUE(r);
  EXPECT_TRUE(fake::libxl().destroyed.empty());
}

TEST_F(XenDomainManagerTest, Kill_DestroyFailsDomainStillThere_ReturnsError) {
  auto id = create(pv_spec("netdd"));
  fake::libxl().destroy_rc = ERROR_FAIL;

  auto r = mgr_->kill(id, SIGKILL);

  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kSystem);
  EXPECT_NE(r.error().message.find("libxl_domain_destroy returned ERROR_FAIL"), std::string::npos);
  EXPECT_NE(r.error().message.find("'netdd'"), std::string::npos);
}

TEST_F(XenDomainManagerTest, Kill_LiveDomain_ReportsDeathOnceAsKilled) {
  auto id = create(pv_spec("netdd"));

  ASSERT_TRUE(mgr_->kill(id, SIGKILL));
  ASSERT_TRUE(run_until(io_, [&] { return !deaths_.empty(); }));
  settle(io_);  // libxl's own DOMAIN_DEATH for it arrives too

  ASSERT_EQ(deaths_.size(), 1u);
  EXPECT_EQ(deaths_[0].id, id);
  EXPECT_EQ(deaths_[0].name, "netdd");
  EXPECT_EQ(deaths_[0].reason, "killed (destroyed by shadowd)");
  EXPECT_EQ(deaths_[0].signal, SIGKILL);
}

// ---- death events ---------------------------------------------------------------------

TEST_F(XenDomainManagerTest, DeathEvent_DomainDestroyedElsewhere_ReportsDestroyedOnce) {
  auto id = create(pv_spec("netdd"));

  fake::libxl_deliver_death(id);
  fake::libxl_deliver_death(id);
  ASSERT_TRUE(run_until(io_, [&] { return !deaths_.empty(); }));
  settle(io_);

  ASSERT_EQ(deaths_.size(), 1u);
  EXPECT_EQ(deaths_[0].id, id);
  EXPECT_EQ(deaths_[0].name, "netdd");
  EXPECT_EQ(deaths_[0].reason, "destroyed");
  EXPECT_EQ(fake::libxl().death_watches, 0);
}

TEST_F(XenDomainManagerTest, DeathEvent_Delivered_CameThroughOseventFd) {
  auto id = create(pv_spec());

  fake::libxl_deliver_death(id);
  ASSERT_TRUE(run_until(io_, [&] { return !deaths_.empty(); }));

  EXPECT_GE(fake::libxl().occurred_fd, 1);
  EXPECT_EQ(fake::libxl().occurred_fd_bogus, 0);
  EXPECT_EQ(fake::libxl().events_freed, 1);
}

TEST_F(XenDomainManagerTest, ShutdownCrash_ReportsCrashedOnceAndDestroysDomain) {
  auto id = create(pv_spec());

  fake::libxl_deliver_shutdown(id, LIBXL_SHUTDOWN_REASON_CRASH);
  ASSERT_TRUE(run_until(io_, [&] { return !deaths_.empty(); }));
  settle(io_);  // the DOMAIN_DEATH that destroying it causes is not reported again

  ASSERT_EQ(deaths_.size(), 1u);
  EXPECT_EQ(deaths_[0].reason, "crashed (domain crash)");
  EXPECT_EQ(deaths_[0].signal, 0);
  EXPECT_EQ(fake::libxl().destroyed, std::vector<uint32_t>{id});
  EXPECT_FALSE(fake::libxl().domains.count(id));
}

TEST_F(XenDomainManagerTest, ShutdownPoweroff_ReportsShutDownPoweroff) {
  auto id = create(pv_spec());

  fake::libxl_deliver_shutdown(id, LIBXL_SHUTDOWN_REASON_POWEROFF);
  ASSERT_TRUE(run_until(io_, [&] { return !deaths_.empty(); }));

  EXPECT_EQ(deaths_[0].reason, "shut down (poweroff)");
}

TEST_F(XenDomainManagerTest, ShutdownWatchdog_ReportsHang) {
  auto id = create(pv_spec());

  fake::libxl_deliver_shutdown(id, LIBXL_SHUTDOWN_REASON_WATCHDOG);
  ASSERT_TRUE(run_until(io_, [&] { return !deaths_.empty(); }));

  EXPECT_EQ(deaths_[0].reason, "hang (watchdog)");
}

TEST_F(XenDomainManagerTest, ShutdownCrash_NameFreedForNextIncarnation) {
  auto id = create(pv_spec("netdd"));
  fake::libxl_deliver_shutdown(id, LIBXL_SHUTDOWN_REASON_CRASH);
  ASSERT_TRUE(run_until(io_, [&] { return !deaths_.empty(); }));

  auto next = create(pv_spec("netdd"));

  EXPECT_EQ(mgr_->xen_name(next), "netdd");
}

TEST_F(XenDomainManagerTest, DeathEvent_OtherDomain_NotReported) {
  create(pv_spec());

  fake::libxl_deliver_death(999);
  settle(io_);

  EXPECT_TRUE(deaths_.empty());
}

TEST_F(XenDomainManagerTest, DeathEvent_AfterManagerDestroyed_NotReported) {
  auto id = create(pv_spec());
  fake::libxl_deliver_death(id);

  mgr_.reset();
  settle(io_);

  EXPECT_TRUE(deaths_.empty());
}

// ---- destruction --------------------------------------------------------------------------

TEST_F(XenDomainManagerTest, Destructor_LiveDomains_DestroysThem) {
  auto id = create(pv_spec());

  mgr_.reset();

  EXPECT_EQ(fake::libxl().destroyed, std::vector<uint32_t>{id});
  EXPECT_EQ(fake::libxl().death_watches, 0);
}

TEST(XenLibxlErrorName, KnownAndUnknownCodes_NameAndNumber) {
  EXPECT_EQ(libxl_error_name(ERROR_DOMAIN_NOTFOUND), "ERROR_DOMAIN_NOTFOUND (-21)");
  EXPECT_EQ(libxl_error_name(-999), "libxl error -999");
}

}  // namespace
}  // namespace sd::xen
