// xl cfg parser: good files, and for each kind of bad input the file, the
// line and a hint.
#include "sd/config/xl_cfg.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace sd::config {
namespace test {
::testing::AssertionResult HasDiag(const Diagnostics& diags, std::string_view file, int line, std::string_view text);
}  // namespace test
namespace {

using test::HasDiag;

const std::filesystem::path kSource = SD_CONFIG_SOURCE_DIR;
const std::filesystem::path kData = SD_CONFIG_TEST_DATA;

// ------------------------------------------------------------ good input

TEST(XlCfg, ShippedGuest1_ParsesNameSizesVifVsndAndDisk) {
  auto cfg = parse_domain_cfg(kSource / "examples/demo-host/guest1.cfg");

  ASSERT_TRUE(cfg) << to_string(cfg.error());
  EXPECT_EQ(cfg->name, "guest1");
  EXPECT_FALSE(cfg->driver_domain);
  EXPECT_EQ(cfg->memory_mb, 512);
  EXPECT_EQ(cfg->vcpus, 1);
  ASSERT_EQ(cfg->devices.size(), 4u);  // the sound card has two playback streams
  EXPECT_EQ(cfg->devices[0].cls, DeviceClass::kVif);
  EXPECT_EQ(cfg->devices[0].backend, "netdd");
  EXPECT_EQ(cfg->devices[0].params.at("mac"), "00:16:3e:5d:00:01");
  EXPECT_EQ(cfg->devices[0].params.at("ip"), "10.200.0.2");
  EXPECT_EQ(cfg->devices[0].line, 10);
  for (int k : {1, 2}) {
    EXPECT_EQ(cfg->devices[k].cls, DeviceClass::kVsnd);
    EXPECT_EQ(cfg->devices[k].backend, "snddd");
    EXPECT_EQ(cfg->devices[k].stream, k - 1);
  }
  EXPECT_EQ(cfg->devices[3].cls, DeviceClass::kVbd);
  EXPECT_EQ(cfg->devices[3].backend, "blkdd");
  EXPECT_EQ(cfg->devices[3].params.at("target"), "/var/lib/shadowd/guest1-xvda.img");
}

TEST(XlCfg, ShippedNetdd_IsDriverDomainWithKernel) {
  auto cfg = parse_domain_cfg(kSource / "examples/demo-host/netdd.cfg");

  ASSERT_TRUE(cfg) << to_string(cfg.error());
  EXPECT_EQ(cfg->name, "netdd");
  EXPECT_EQ(cfg->name_line, 4);
  EXPECT_TRUE(cfg->driver_domain);
  EXPECT_EQ(cfg->memory_mb, 256);
  EXPECT_TRUE(cfg->kernel.has_value());
  EXPECT_TRUE(cfg->devices.empty());
}

TEST(XlCfg, AllScalarKeys_AreStored) {
  auto cfg = parse_domain_cfg_text(
      "name = 'dd-1.a_b'\ndriver_domain = 0\nmemory = 0x100\nvcpus = 2\nkernel = \"/k\"\nramdisk = '/r'\n"
      "extra = \"console=hvc0\"\ncmdline = 'root=/dev/xvda'\ntype = \"pvh\"\non_crash = 'coredump-restart'\n"
      "on_poweroff = 'destroy'; on_reboot = 'restart'\n",
      "all.cfg");

  ASSERT_TRUE(cfg) << to_string(cfg.error());
  EXPECT_EQ(cfg->name, "dd-1.a_b");
  EXPECT_EQ(cfg->memory_mb, 256);
  EXPECT_EQ(cfg->vcpus, 2);
  EXPECT_EQ(cfg->kernel, "/k");
  EXPECT_EQ(cfg->ramdisk, "/r");
  EXPECT_EQ(cfg->extra, "console=hvc0");
  EXPECT_EQ(cfg->cmdline, "root=/dev/xvda");
  EXPECT_EQ(cfg->type, "pvh");
  EXPECT_EQ(cfg->on_crash, "coredump-restart");
  EXPECT_EQ(cfg->on_poweroff, "destroy");
  EXPECT_EQ(cfg->on_reboot, "restart");
}

TEST(XlCfg, MultiLineListWithCommentsAndTrailingComma_KeepsEveryItemAndItsLine) {
  auto cfg = parse_domain_cfg_text(R"(name = "g"
vif = [ # first NIC
  'backend=netdd,mac=00:16:3e:00:00:01',
  "backend=netdd,bridge=xenbr1,mtu=9000",   # second NIC
]
)",
                                   "g.cfg");

  ASSERT_TRUE(cfg) << to_string(cfg.error());
  ASSERT_EQ(cfg->devices.size(), 2u);
  EXPECT_EQ(cfg->devices[0].index, 0);
  EXPECT_EQ(cfg->devices[0].line, 3);
  EXPECT_EQ(cfg->devices[1].index, 1);
  EXPECT_EQ(cfg->devices[1].line, 4);
  EXPECT_EQ(cfg->devices[1].params.at("mtu"), "9000");
}

TEST(XlCfg, NoBackendKey_DefaultsToDomain0) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nvif = [ 'mac=00:16:3e:00:00:02' ]\n", "g.cfg");

  ASSERT_TRUE(cfg) << to_string(cfg.error());
  ASSERT_EQ(cfg->devices.size(), 1u);
  EXPECT_EQ(cfg->devices[0].backend, "Domain-0");
}

TEST(XlCfg, DiskTargetKey_TakesRestOfSpecIncludingCommas) {
  auto cfg = parse_domain_cfg_text(
      "name = 'g'\ndisk = [ 'backend=blkdd, vdev=xvda, format=qcow2, access=ro, target=/img/a,b=c.qcow2' ]\n", "g.cfg");

  ASSERT_TRUE(cfg) << to_string(cfg.error());
  ASSERT_EQ(cfg->devices.size(), 1u);
  EXPECT_EQ(cfg->devices[0].cls, DeviceClass::kVbd);
  EXPECT_EQ(cfg->devices[0].backend, "blkdd");
  EXPECT_EQ(cfg->devices[0].params.at("target"), "/img/a,b=c.qcow2");
  EXPECT_EQ(cfg->devices[0].params.at("format"), "qcow2");
  EXPECT_EQ(cfg->devices[0].params.at("access"), "ro");
}

TEST(XlCfg, DiskPositionalForm_FillsTargetFormatVdevAccess) {
  auto cfg = parse_domain_cfg_text("name = 'g'\ndisk = [ '/dev/vg/guest,raw,xvdb,rw', '/img/x.iso,,hdc' ]\n", "g.cfg");

  ASSERT_TRUE(cfg) << to_string(cfg.error());
  ASSERT_EQ(cfg->devices.size(), 2u);
  EXPECT_EQ(cfg->devices[0].params.at("target"), "/dev/vg/guest");
  EXPECT_EQ(cfg->devices[0].params.at("format"), "raw");
  EXPECT_EQ(cfg->devices[0].params.at("vdev"), "xvdb");
  EXPECT_EQ(cfg->devices[0].params.at("access"), "rw");
  EXPECT_EQ(cfg->devices[1].params.at("vdev"), "hdc");
  EXPECT_FALSE(cfg->devices[1].params.contains("format"));
}

TEST(XlCfg, DiskDirectIoSafeFlag_StoredBesideThePositionalItems) {
  auto cfg = parse_domain_cfg_text("name = 'g'\ndisk = [ '/img/d.img,raw,xvda,rw,direct-io-safe' ]\n", "g.cfg");

  ASSERT_TRUE(cfg) << to_string(cfg.error());
  ASSERT_EQ(cfg->devices.size(), 1u);
  EXPECT_EQ(cfg->devices[0].params.at("direct-io-safe"), "1");
  EXPECT_EQ(cfg->devices[0].params.at("access"), "rw");
}

TEST(XlCfg, VsndNestedForm_BuildsCardWithPcmAndStreamChildren) {
  auto cfg = parse_domain_cfg_text(R"(name = "g"
vsnd = [[ 'card, backend=snddd, short-name=c0, sample-rates=44100;48000, channels-max=2',
          'pcm, name=p0', 'stream, unique-id=s0, type=p', 'stream, unique-id=s1, type=c' ]]
)",
                                   "g.cfg");

  ASSERT_TRUE(cfg) << to_string(cfg.error());
  ASSERT_EQ(cfg->devices.size(), 1u);
  const DeviceSpec& card = cfg->devices[0];
  EXPECT_EQ(card.cls, DeviceClass::kVsnd);
  EXPECT_EQ(card.backend, "snddd");
  EXPECT_EQ(card.params.at("short-name"), "c0");
  EXPECT_EQ(card.params.at("sample-rates"), "44100;48000");
  ASSERT_EQ(card.children.size(), 3u);
  EXPECT_EQ(card.children[0].at("kind"), "pcm");
  EXPECT_EQ(card.children[0].at("name"), "p0");
  EXPECT_EQ(card.children[1].at("kind"), "stream");
  EXPECT_EQ(card.children[2].at("unique-id"), "s1");
  EXPECT_EQ(card.children[2].at("type"), "c");
}

TEST(XlCfg, VsndFlatForm_MakesOneCardPerString) {
  auto cfg =
      parse_domain_cfg_text("name = 'g'\nvsnd = [ 'backend=snddd,short-name=c0', 'card,backend=snddd' ]\n", "g.cfg");

  ASSERT_TRUE(cfg) << to_string(cfg.error());
  ASSERT_EQ(cfg->devices.size(), 2u);
  EXPECT_EQ(cfg->devices[0].backend, "snddd");
  EXPECT_EQ(cfg->devices[1].index, 1);
  EXPECT_TRUE(cfg->devices[1].children.empty());
}

TEST(XlCfg, VsndCardWithTwoPlaybackStreams_IsOneDevicePerStream) {
  auto cfg = parse_domain_cfg_text(R"(name = "g"
vsnd = [[ 'card, backend=snddd', 'pcm, name=p0', 'stream, unique-id=s0, type=p',
          'stream, unique-id=s1, type=c', 'stream, unique-id=s2, type=p' ]]
disk = [ 'vdev=xvda,target=/a' ]
)",
                                   "g.cfg");

  ASSERT_TRUE(cfg) << to_string(cfg.error());
  ASSERT_EQ(cfg->devices.size(), 3u);  // two playback streams (the capture one is not served), then the disk
  EXPECT_EQ(cfg->devices[0].index, 0);
  EXPECT_EQ(cfg->devices[0].stream, 0);
  EXPECT_EQ(cfg->devices[1].index, 0);
  EXPECT_EQ(cfg->devices[1].stream, 1);
  EXPECT_EQ(cfg->devices[1].backend, "snddd");
  EXPECT_EQ(device_name(cfg->devices[0]), "vsnd/0");
  EXPECT_EQ(device_name(cfg->devices[1]), "vsnd/0.1");
  EXPECT_EQ(device_name(cfg->devices[2]), "vbd/0");
}

TEST(XlCfg, VsndCardWithNinePlaybackStreams_IsRefusedAtItsLine) {
  std::string card = "[ 'card, backend=snddd', 'pcm, name=p0'";
  for (int k = 0; k < 9; ++k) card += ", 'stream, unique-id=s" + std::to_string(k) + ", type=p'";
  auto cfg = parse_domain_cfg_text("name = 'g'\nvsnd = [ " + card + " ] ]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "9 playback streams, at most 8 per card"));
}

TEST(XlCfg, DevicesOfSeveralKeys_AreListedInFileOrder) {
  auto cfg =
      parse_domain_cfg_text("name = 'g'\ndisk = [ 'vdev=xvda,target=/a' ]\nvif = [ 'backend=netdd' ]\n", "g.cfg");

  ASSERT_TRUE(cfg) << to_string(cfg.error());
  ASSERT_EQ(cfg->devices.size(), 2u);
  EXPECT_EQ(cfg->devices[0].cls, DeviceClass::kVbd);
  EXPECT_EQ(cfg->devices[1].cls, DeviceClass::kVif);
}

TEST(DeviceClass, Names_RoundTrip) {
  EXPECT_EQ(class_name(DeviceClass::kVbd), "vbd");
  EXPECT_EQ(parse_class_name("vsnd"), DeviceClass::kVsnd);
  EXPECT_EQ(parse_class_name("disk"), std::nullopt);
  EXPECT_EQ(cfg_key(DeviceClass::kVbd), "disk");
}

TEST(Diagnostic, ToString_IsFileLineMessageHint) {
  Diagnostic d{"a.cfg", 3, "bad thing", "fix it"};

  EXPECT_EQ(d.to_string(), "a.cfg:3: bad thing (hint: fix it)");
}

TEST(Diagnostic, ToStringWithoutLineOrHint_LeavesThemOut) {
  Diagnostic d{"a.cfg", 0, "missing thing", ""};

  EXPECT_EQ(d.to_string(), "a.cfg: missing thing");
}

TEST(Diagnostic, ToError_IsInvalidInputWithAllLines) {
  Diagnostics diags{{"a", 1, "x", "h"}, {"b", 2, "y", "h"}};

  sd::Error e = to_error(diags);

  EXPECT_EQ(e.code, sd::Code::kInvalidInput);
  EXPECT_EQ(e.message, "a:1: x (hint: h)\nb:2: y (hint: h)");
}

// ------------------------------------------------------------ bad input

TEST(XlCfg, UnknownKey_ReportsFileLineAndNearestKey) {
  auto cfg = parse_domain_cfg_text("name = 'g'\n\nmemroy = 256\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 3, "unknown key 'memroy'"));
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 3, "did you mean 'memory'?"));
}

TEST(XlCfg, UnknownKeyFarFromAll_HintListsKnownKeys) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nserial = 'pty'\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "known keys: name, driver_domain, memory"));
}

TEST(XlCfg, DuplicateKey_ReportsSecondLineAndFirst) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nmemory = 256\n# more\nmemory = 512\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 4, "'memory' is set twice (first on line 2)"));
}

TEST(XlCfg, UnterminatedString_ReportsItsLine) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nkernel = \"/boot/vmlinuz\nmemory = 256\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "unterminated string"));
  EXPECT_EQ(cfg.error().size(), 1u);
}

TEST(XlCfg, UnterminatedListBeforeNextSetting_ReportsOpeningLine) {
  auto cfg =
      parse_domain_cfg_text("name = 'g'\nvif = [ 'backend=netdd',\n  'backend=netdd'\nmemory = 256\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "opened on line 2 is not closed before 'memory =' on line 4"));
  EXPECT_EQ(cfg.error().size(), 1u);
}

TEST(XlCfg, UnterminatedListAtEndOfFile_ReportsOpeningLine) {
  auto cfg = parse_domain_cfg_text("name = 'g'\n\ndisk = [ 'vdev=xvda,target=/a',\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 3, "not closed before the end of the file"));
}

TEST(XlCfg, MissingEquals_ReportsSyntaxErrorAtLine) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nmemory 256\nvcpus = 1\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "expected '=' after 'memory'"));
}

TEST(XlCfg, ListItemsWithoutComma_ReportsLineOfSecondItem) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nvif = [ 'backend=a'\n        'backend=b' ]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 3, "expected ',' or ']'"));
}

TEST(XlCfg, UnquotedString_HintsQuotes) {
  auto cfg = parse_domain_cfg_text("name = guest1\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 1, "name = \"guest1\""));
}

TEST(XlCfg, UnexpectedCharacter_ReportsLine) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nmemory = @256\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "unexpected character '@'"));
}

TEST(XlCfg, NumberWithUnitSuffix_ReportsNotANumber) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nmemory = 256M\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "'256M' is not a number"));
}

TEST(XlCfg, QuotedMemory_ReportsWrongType) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nmemory = \"256\"\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "'memory' must be an integer"));
}

TEST(XlCfg, ListForName_ReportsWrongType) {
  auto cfg = parse_domain_cfg_text("name = [ 'g' ]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 1, "'name' must be a quoted string"));
}

TEST(XlCfg, StringForVif_ReportsMustBeList) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nvif = 'backend=netdd'\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "'vif' must be a list"));
}

TEST(XlCfg, ZeroVcpus_ReportsOutOfRange) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nvcpus = 0\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "'vcpus' must be positive"));
}

TEST(XlCfg, DriverDomainTwo_ReportsZeroOrOne) {
  auto cfg = parse_domain_cfg_text("name = 'g'\ndriver_domain = 2\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "'driver_domain' must be 0 or 1"));
}

TEST(XlCfg, UnknownType_ListsAllowedTypes) {
  auto cfg = parse_domain_cfg_text("name = 'g'\ntype = 'kvm'\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "use one of: pv, pvh, hvm"));
}

TEST(XlCfg, UnknownOnCrashAction_ListsAllowedActions) {
  auto cfg = parse_domain_cfg_text("name = 'g'\non_crash = 'explode'\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "coredump-restart"));
}

TEST(XlCfg, MissingName_ReportsFileWithoutLine) {
  auto cfg = parse_domain_cfg_text("memory = 256\n", "noname.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "noname.cfg", 0, "missing required key 'name'"));
}

TEST(XlCfg, NameWithSpace_ReportsBadName) {
  auto cfg = parse_domain_cfg_text("\nname = 'my guest'\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "bad domain name"));
}

TEST(XlCfg, BadMacOnThirdLineOfList_ReportsThatLine) {
  auto cfg = parse_domain_cfg_text(R"(name = "g"
vif = [ 'backend=netdd',
        'backend=netdd,mac=00:16:3e:5d:00',
      ]
)",
                                   "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 3, "vif[1]: bad mac '00:16:3e:5d:00'"));
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 3, "e.g. 00:16:3e:5d:00:01"));
}

TEST(XlCfg, MulticastMac_IsRejected) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nvif = [ 'mac=01:16:3e:5d:00:01' ]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "multicast"));
}

TEST(XlCfg, UnknownVifKey_ReportsLineAndNearestKey) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nvif = [ 'backend=netdd,brigde=xenbr0' ]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "unknown vif key 'brigde'"));
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "did you mean 'bridge'?"));
}

TEST(XlCfg, VifMtuTooSmall_ReportsOutOfRange) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nvif = [ 'mtu=67' ]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "mtu '67' is out of range"));
}

TEST(XlCfg, VifBadIp_ReportsAddress) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nvif = [ 'ip=10.0.0.2 10.0.0.300' ]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "bad ip address '10.0.0.300'"));
}

TEST(XlCfg, VifKeyGivenTwice_ReportsDuplicate) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nvif = [ 'mtu=1500,mtu=9000' ]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "'mtu' given twice"));
}

TEST(XlCfg, DiskWithoutVdev_ReportsMissingVdev) {
  auto cfg = parse_domain_cfg_text("name = 'g'\ndisk = [ 'backend=blkdd,target=/a.img' ]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "disk[0]: no vdev"));
}

TEST(XlCfg, DiskWithoutTarget_ReportsMissingTarget) {
  auto cfg = parse_domain_cfg_text("name = 'g'\ndisk = [ 'vdev=xvda' ]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "disk[0]: no target"));
}

TEST(XlCfg, DiskBadVdevAndFormat_ReportsBoth) {
  auto cfg = parse_domain_cfg_text("name = 'g'\ndisk = [ 'vdev=nvme0n1,format=vmdk,target=/a' ]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "bad vdev 'nvme0n1'"));
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "format 'vmdk' is not raw or qcow2"));
}

TEST(XlCfg, DiskUnknownKey_ReportsLine) {
  auto cfg = parse_domain_cfg_text("name = 'g'\ndisk = [ 'vdev=xvda,acess=rw,target=/a' ]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "did you mean 'access'?"));
}

TEST(XlCfg, DiskSizeInTheDriverDomain_KeptAsWritten) {
  auto cfg = parse_domain_cfg_text("name = 'g'\ndisk = [ 'backend=blkdd,vdev=xvda,size=64M,target=/dev/xvdb' ]\n", "g.cfg");

  ASSERT_TRUE(cfg) << cfg.error()[0].to_string();
  EXPECT_EQ(cfg->devices[0].params.at("size"), "64M");
  EXPECT_EQ(cfg->devices[0].params.at("target"), "/dev/xvdb");
}

TEST(XlCfg, DiskBadSize_ReportsLineAndHint) {
  auto cfg = parse_domain_cfg_text("name = 'g'\ndisk = [ 'vdev=xvda,size=1000,target=/a' ]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "disk[0]: bad size '1000'"));
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "multiple of 512"));
}

TEST(XlCfg, DiskSizeBytes_SuffixesAndWholeSectors) {
  EXPECT_EQ(disk_size_bytes("512"), 512u);
  EXPECT_EQ(disk_size_bytes("64M"), 64ull << 20);
  EXPECT_EQ(disk_size_bytes("2g"), 2ull << 30);
  EXPECT_EQ(disk_size_bytes("1T"), 1ull << 40);
  EXPECT_EQ(disk_size_bytes("1000"), std::nullopt);  // not whole sectors
  EXPECT_EQ(disk_size_bytes("0"), std::nullopt);
  EXPECT_EQ(disk_size_bytes("M"), std::nullopt);
  EXPECT_EQ(disk_size_bytes("64MB"), std::nullopt);
  EXPECT_EQ(disk_size_bytes("-1"), std::nullopt);
  EXPECT_EQ(disk_size_bytes("99999999999999999999"), std::nullopt);
  EXPECT_EQ(disk_size_bytes("99999999999T"), std::nullopt);  // overflows
}

// As Xen's vbd-interface.txt numbers them (what blkfront reads from
// virtual-device to name the guest's device).
TEST(XlCfg, VdevNumber_AsXenNumbersThem) {
  EXPECT_EQ(vdev_number("xvda"), 51712u);
  EXPECT_EQ(vdev_number("xvdb"), 51728u);
  EXPECT_EQ(vdev_number("xvda1"), 51713u);
  EXPECT_EQ(vdev_number("xvdp15"), (202u << 8) | (15u << 4) | 15u);
  EXPECT_EQ(vdev_number("xvdq"), (1u << 28) | (16u << 8));
  EXPECT_EQ(vdev_number("xvdaa"), (1u << 28) | (26u << 8));
  EXPECT_EQ(vdev_number("xvda16"), (1u << 28) | 16u);
  EXPECT_EQ(vdev_number("sda"), 2048u);
  EXPECT_EQ(vdev_number("sdb2"), 2066u);
  EXPECT_EQ(vdev_number("hda"), 768u);
  EXPECT_EQ(vdev_number("hdd"), (22u << 8) | 64u);
  EXPECT_EQ(vdev_number("hde"), std::nullopt);
  EXPECT_EQ(vdev_number("sdq"), std::nullopt);
  EXPECT_EQ(vdev_number("nvme0n1"), std::nullopt);
  EXPECT_EQ(vdev_number("xvd"), std::nullopt);
}

TEST(XlCfg, VsndStreamWithoutType_ReportsItsLine) {
  auto cfg = parse_domain_cfg_text(R"(name = "g"
vsnd = [[ 'card, backend=snddd',
          'pcm, name=p0',
          'stream, unique-id=s0' ]]
)",
                                   "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 4, "stream has no type"));
}

TEST(XlCfg, VsndFirstItemNotCard_ReportsLine) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nvsnd = [[ 'pcm, name=p0' ]]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "the first string must describe the card"));
}

TEST(XlCfg, VsndStreamBeforePcm_ReportsOrder) {
  auto cfg = parse_domain_cfg_text("name = 'g'\nvsnd = [[ 'card', 'stream, unique-id=s0, type=p' ]]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "stream before any pcm"));
}

TEST(XlCfg, VsndUnknownStreamKey_ReportsNearestKey) {
  auto cfg =
      parse_domain_cfg_text("name = 'g'\nvsnd = [[ 'card', 'pcm', 'stream, uniqueid=s0, type=p' ]]\n", "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "unknown stream key 'uniqueid'"));
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "did you mean 'unique-id'?"));
}

TEST(XlCfg, VsndDuplicateUniqueId_IsRejected) {
  auto cfg = parse_domain_cfg_text(
      "name = 'g'\nvsnd = [[ 'card', 'pcm', 'stream, unique-id=s0, type=p', 'stream, unique-id=s0, type=c' ]]\n",
      "bad.cfg");

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), "bad.cfg", 2, "unique-id 's0' is used twice"));
}

TEST(XlCfg, ErrorsOnSeveralLines_AreAllReportedInLineOrder) {
  auto cfg = parse_domain_cfg_text(R"(name = "g"
memroy = 256
vcpus = 0
vif = [ 'mac=zz' ]
kernel = "/k
)",
                                   "bad.cfg");

  ASSERT_FALSE(cfg);
  ASSERT_EQ(cfg.error().size(), 4u);
  EXPECT_EQ(cfg.error()[0].line, 2);
  EXPECT_EQ(cfg.error()[1].line, 3);
  EXPECT_EQ(cfg.error()[2].line, 4);
  EXPECT_EQ(cfg.error()[3].line, 5);
}

TEST(XlCfg, FixtureFileWithBadMac_ReportsRealPathAndLine) {
  auto path = kData / "host/guest_bad_mac.cfg";

  auto cfg = parse_domain_cfg(path);

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), path.string(), 4, "bad mac '00:16:3e:zz:00:01'"));
}

TEST(XlCfg, MissingFile_ReportsPath) {
  auto path = kData / "host/does-not-exist.cfg";

  auto cfg = parse_domain_cfg(path);

  ASSERT_FALSE(cfg);
  EXPECT_TRUE(HasDiag(cfg.error(), path.string(), 0, "cannot read the file"));
}

}  // namespace
}  // namespace sd::config
