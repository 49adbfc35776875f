// Host file: the shipped demo host, path resolution and defaults, and the
// checks across files (each error at the right file and line).
#include "sd/config/host.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace sd::config {
namespace test {
::testing::AssertionResult HasDiag(const Diagnostics& diags, std::string_view file, int line, std::string_view text);
}  // namespace test
namespace {

using test::HasDiag;
namespace fs = std::filesystem;

const fs::path kSource = SD_CONFIG_SOURCE_DIR;
const fs::path kHosts = fs::path(SD_CONFIG_TEST_DATA) / "host";
const fs::path kPolicies = fs::path(SD_CONFIG_TEST_DATA) / "policies";

// ------------------------------------------------------------ good input

TEST(Host, ShippedDemoHost_LoadsDomainsGuestsAndAllPolicies) {
  auto host = load_host(kSource / "examples/demo-host/host.yaml");

  ASSERT_TRUE(host) << to_string(host.error());
  EXPECT_EQ(host->platform, "auto");
  EXPECT_EQ(host->policy_dir, (kSource / "policies").lexically_normal());
  EXPECT_EQ(host->control_socket, "/run/shadowd/shadowd.sock");
  EXPECT_EQ(host->state_dir, "/run/shadowd");
  EXPECT_EQ(host->event_log, fs::path("/run/shadowd/events.jsonl"));
  ASSERT_EQ(host->driver_domains.size(), 3u);
  EXPECT_EQ(host->driver_domains[0].name, "netdd");
  EXPECT_EQ(host->driver_domains[1].name, "snddd");
  EXPECT_EQ(host->driver_domains[2].name, "blkdd");
  ASSERT_EQ(host->guests.size(), 2u);
  EXPECT_EQ(host->guests[0].name, "guest1");
  EXPECT_EQ(host->guests[1].name, "guest2");
  EXPECT_EQ(host->policies.size(), 3u);
  EXPECT_EQ(host->policies.at(DeviceClass::kVif).queue_limit, 1024u);
}

TEST(Host, RelativePaths_ResolveAgainstHostFileDirectory) {
  auto host = load_host(kHosts / "good.yaml");

  ASSERT_TRUE(host) << to_string(host.error());
  EXPECT_EQ(host->platform, "local");
  EXPECT_EQ(host->policy_dir, (kPolicies / "full").lexically_normal());
  EXPECT_EQ(host->control_socket, (kHosts / "run/sd.sock").lexically_normal());
  EXPECT_EQ(host->state_dir, (kHosts / "run").lexically_normal());
  EXPECT_EQ(host->event_log, (kHosts / "run/events.jsonl").lexically_normal());
  EXPECT_EQ(host->driver_domains.size(), 3u);
  EXPECT_EQ(host->guests[0].devices.size(), 3u);
}

TEST(Host, EveryClassInUse_LoadsItsPolicyFromPolicyDir) {
  auto host = load_host(kHosts / "good.yaml");

  ASSERT_TRUE(host) << to_string(host.error());
  ASSERT_EQ(host->policies.size(), 3u);
  EXPECT_TRUE(host->policies.at(DeviceClass::kVbd).standby);
  EXPECT_EQ(host->policies.at(DeviceClass::kVsnd).restart_budget, 5u);
  EXPECT_EQ(host->policies.at(DeviceClass::kVif).file, (kPolicies / "full/vif.yaml").string());
}

TEST(Host, OnlyRequiredKeys_TakesDefaults) {
  auto host = load_host(kHosts / "minimal.yaml");

  ASSERT_TRUE(host) << to_string(host.error());
  EXPECT_EQ(host->platform, "auto");
  EXPECT_EQ(host->control_socket, "/run/shadowd/shadowd.sock");
  EXPECT_EQ(host->state_dir, "/run/shadowd");
  EXPECT_FALSE(host->event_log.has_value());
  EXPECT_TRUE(host->guests.empty());
  EXPECT_EQ(host->policies.size(), 1u);
}

TEST(Host, DeviceServedByDom0_NeedsNoPolicy) {
  auto host = load_host(kHosts / "dom0_device.yaml");

  ASSERT_TRUE(host) << to_string(host.error());
  EXPECT_EQ(host->guests[0].devices.size(), 2u);
  EXPECT_FALSE(host->policies.contains(DeviceClass::kVbd));
}

// ------------------------------------------------------------ bad input

TEST(Host, BackendNamesUnlistedDomain_ReportsDeviceLineAndListsDriverDomains) {
  auto host = load_host(kHosts / "unknown_backend.yaml");

  ASSERT_FALSE(host);
  EXPECT_TRUE(HasDiag(host.error(), "host/guest_unknown_backend.cfg", 6, "disk[1]: backend 'nosuchdd'"));
  EXPECT_TRUE(HasDiag(host.error(), "host/guest_unknown_backend.cfg", 6, "driver domains: netdd, blkdd"));
  EXPECT_EQ(host.error().size(), 1u);
}

TEST(Host, ListedDomainWithoutDriverDomain_ReportsHostLine) {
  auto host = load_host(kHosts / "not_driver.yaml");

  ASSERT_FALSE(host);
  EXPECT_TRUE(HasDiag(host.error(), "host/not_driver.yaml", 5, "does not set driver_domain = 1"));
  EXPECT_TRUE(HasDiag(host.error(), "host/not_driver.yaml", 5, "add 'driver_domain = 1' to"));
}

TEST(Host, PolicyFileMissingForUsedClass_NamesExpectedPath) {
  auto host = load_host(kHosts / "missing_policy.yaml");

  ASSERT_FALSE(host);
  EXPECT_TRUE(HasDiag(host.error(), "host/missing_policy.yaml", 2,
                      "no vbd policy: " + (kPolicies / "vif_only/vbd.yaml").string() + " does not exist"));
}

TEST(Host, CfgFileMissing_ReportsHostLineListingIt) {
  auto host = load_host(kHosts / "missing_cfg.yaml");

  ASSERT_FALSE(host);
  EXPECT_TRUE(HasDiag(host.error(), "host/missing_cfg.yaml", 5, "cannot find cfg file 'nosuch.cfg'"));
}

TEST(Host, DuplicateDomainName_ReportsSecondCfgNameLine) {
  auto host = load_host(kHosts / "duplicate_name.yaml");

  ASSERT_FALSE(host);
  EXPECT_TRUE(HasDiag(host.error(), "host/guest_dup_name.cfg", 2, "domain name 'netdd' is already used by"));
}

TEST(Host, GuestsInOneSlash24_Load) {
  auto host = load_host(kHosts / "vif_same_net.yaml");

  ASSERT_TRUE(host) << (host ? "" : host.error().front().message);
  EXPECT_EQ(host->guests.size(), 2u);
}

TEST(Host, VifAddressTwiceOrTheWireAddress_ReportsEachAtItsLine) {
  auto host = load_host(kHosts / "vif_addresses.yaml");

  ASSERT_FALSE(host);
  EXPECT_TRUE(HasDiag(host.error(), "host/guest_vif_b.cfg", 3, "address 10.9.0.2 is already used by"));
  EXPECT_TRUE(HasDiag(host.error(), "host/guest_vif_c.cfg", 3, "address 10.9.0.1 is the wire address of the vif at"));
}

TEST(Host, UnknownKey_ReportsLineAndNearestKey) {
  auto host = load_host(kHosts / "unknown_key.yaml");

  ASSERT_FALSE(host);
  EXPECT_TRUE(HasDiag(host.error(), "host/unknown_key.yaml", 2, "did you mean 'policy_dir'?"));
}

TEST(Host, YamlSyntaxError_ReportsLine) {
  auto host = load_host(kHosts / "yaml_error.yaml");

  ASSERT_FALSE(host);
  EXPECT_TRUE(HasDiag(host.error(), "host/yaml_error.yaml", 3, "never closed"));
}

TEST(Host, BadPolicyInPolicyDir_ReportsPolicyFileLine) {
  auto host = load_host(kHosts / "bad_policy.yaml");

  ASSERT_FALSE(host);
  EXPECT_TRUE(HasDiag(host.error(), "policies/bad_vbd/vbd.yaml", 5, "queue_limit' = 0 is out of range"));
}

TEST(Host, PolicyDirMissing_ReportsItsLine) {
  auto host = load_host(kHosts / "no_policy_dir.yaml");

  ASSERT_FALSE(host);
  EXPECT_TRUE(HasDiag(host.error(), "host/no_policy_dir.yaml", 2, "is not a directory"));
}

TEST(Host, ErrorsInSeveralFiles_AreAllReported) {
  auto host = load_host(kHosts / "many_errors.yaml");

  ASSERT_FALSE(host);
  EXPECT_TRUE(HasDiag(host.error(), "host/many_errors.yaml", 2, "'platform' cannot be 'kvm'"));
  EXPECT_TRUE(HasDiag(host.error(), "host/many_errors.yaml", 4, "'plain.cfg' (domain plain)"));
  EXPECT_TRUE(HasDiag(host.error(), "host/guest_bad_mac.cfg", 4, "bad mac"));
  EXPECT_TRUE(HasDiag(host.error(), "host/guest_unknown_backend.cfg", 6, "backend 'nosuchdd'"));
  EXPECT_EQ(host.error().size(), 4u);
}

TEST(Host, MissingHostFile_ReportsPath) {
  auto host = load_host(kHosts / "nope.yaml");

  ASSERT_FALSE(host);
  EXPECT_TRUE(HasDiag(host.error(), "host/nope.yaml", 0, "cannot read the host file"));
}

}  // namespace
}  // namespace sd::config

namespace sd::config {
namespace {

const std::filesystem::path kWireHosts = std::filesystem::path(SD_CONFIG_TEST_DATA) / "host";

TEST(HostWire, Unset_DefaultsToWire) {
  auto host = load_host(kWireHosts / "minimal.yaml");

  ASSERT_TRUE(host) << to_string(host.error());
  EXPECT_EQ(host->wire_netns, "wire");
}

TEST(HostWire, Set_Kept) {
  auto host = load_host(kWireHosts / "wire.yaml");

  ASSERT_TRUE(host) << to_string(host.error());
  EXPECT_EQ(host->wire_netns, "lab-wire");
}

TEST(HostWire, PathLikeName_RejectedAtItsLine) {
  auto host = load_host(kWireHosts / "bad_wire.yaml");

  ASSERT_FALSE(host);
  EXPECT_NE(to_string(host.error()).find("bad_wire.yaml:4:"), std::string::npos) << to_string(host.error());
}

}  // namespace
}  // namespace sd::config

// ------------------------------------------------- driver domain capacity

namespace sd::config {
namespace {

// A host with one driver domain of `memory` MiB (none when 0) and `guests`
// guests, each with the device line `line` (%d: the guest's number).
class HostCapacity : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sd-capacity-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path write(int memory, int guests, const char* line) {
    std::ofstream(dir_ / "dd.cfg") << "name = \"dd\"\ndriver_domain = 1\n"
                                   << (memory ? "memory = " + std::to_string(memory) + "\n" : "");
    std::string list;
    for (int i = 0; i < guests; ++i) {
      char dev[256];
      std::snprintf(dev, sizeof dev, line, i / 200, 2 + i % 200);
      std::ofstream(dir_ / ("g" + std::to_string(i) + ".cfg")) << "name = \"g" << i << "\"\n" << dev << "\n";
      list += (i ? ", g" : "g") + std::to_string(i) + ".cfg";
    }
    std::ofstream(dir_ / "host.yaml") << "policy_dir: " << (kPolicies / "full").string()
                                      << "\ndomains: [dd.cfg]\nguests: [" << list << "]\n";
    return dir_ / "host.yaml";
  }
  std::filesystem::path dir_;
};

constexpr const char* kVif = "vif = [ 'backend=dd,ip=10.77.%d.%d' ]";
constexpr const char* kDisk = "disk = [ 'backend=dd,vdev=xvda,target=/tmp/sd-capacity-%d-%d.img' ]";

TEST_F(HostCapacity, SixtyFourVifsInTheDefaultMemory_Load) {
  auto host = load_host(write(256, 64, kVif));

  ASSERT_TRUE(host) << to_string(host.error());
}

TEST_F(HostCapacity, MoreVifsThanMemoryHolds_FirstOneOverReportedAtItsLineWithTheDomainsMemoryLine) {
  // 16 MiB + the runtime's room: 35 vifs of 2 MiB fit beside the runtime, the 36th does not.
  auto host = load_host(write(16, 40, kVif));

  ASSERT_FALSE(host);
  ASSERT_EQ(host.error().size(), 1u) << to_string(host.error());
  const std::string text = to_string(host.error());
  EXPECT_NE(text.find("g35.cfg:2:"), std::string::npos) << text;
  EXPECT_NE(text.find("vif[0] of g35: driver domain 'dd' cannot hold it"), std::string::npos) << text;
  EXPECT_NE(text.find("its memory is 16 MiB (" + (dir_ / "dd.cfg").string() + ":3)"), std::string::npos) << text;
  EXPECT_NE(text.find("raise memory"), std::string::npos) << text;
}

TEST_F(HostCapacity, DisksCountTheirIoThreadsStack) {
  // A disk takes 10.8 MiB (its pool 2.8, the I/O thread's stack 8): 128 +
  // 64 MiB hold 17 beside the runtime, not 18.
  EXPECT_TRUE(load_host(write(128, 17, kDisk)));
  auto host = load_host(write(128, 18, kDisk));
  ASSERT_FALSE(host);
  EXPECT_NE(to_string(host.error()).find("g17.cfg:2: disk[0] of g17"), std::string::npos) << to_string(host.error());
}

TEST_F(HostCapacity, NoMemorySet_FdLimitStillHolds) {
  // 3 fds per vif: (1024 - 16) / 3 = 336 vifs fit, the 337th does not.
  EXPECT_TRUE(load_host(write(0, 336, kVif)));
  auto host = load_host(write(0, 337, kVif));
  ASSERT_FALSE(host);
  const std::string text = to_string(host.error());
  EXPECT_NE(text.find("g336.cfg:2:"), std::string::npos) << text;
  EXPECT_NE(text.find("1024"), std::string::npos) << text;
}

}  // namespace
}  // namespace sd::config
