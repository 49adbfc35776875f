// End-to-end for one block driver domain serving many disks: four guests
// with two disks each (xvda, xvdb; what an operator gives a guest that keeps
// its data apart from its system), all eight on the same driver domain, each
// reached through its own sd-blkfront. fio writes and verifies (crc32c) on
// all eight at once while the driver domain is killed again and again.
// Asserts what the user checks: every fio exits 0 with no verify error,
// every request completed exactly once (each frontend's own count), and no
// device was fenced.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "e2e_util.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using sd::e2e::Background;
using sd::e2e::run;
using sd::e2e::wait_until;

constexpr int kGuests = 4;
constexpr const char* kVdevs[] = {"xvda", "xvdb"};

// One guest disk as the test uses it: shadowd's device, its frontend and fio.
struct Disk {
  std::string device, socket;
  fs::path mnt;
  std::unique_ptr<Background> front, fio;
};

class VbdMultiDiskE2eTest : public sd::e2e::DriverDomainTest {
 protected:
  void SetUp() override {
    make_dir("vbdmulti", "mblk");
    if (HasFatalFailure()) return;
    std::vector<sd::e2e::GuestCfg> guests;
    for (int g = 0; g < kGuests; ++g) {
      std::string name = "mbg" + id_ + "x" + std::to_string(g), specs;
      for (const char* vdev : kVdevs) {
        fs::path image = dir_ / (name + "-" + vdev + ".img");
        ASSERT_EQ(run("truncate -s 64M " + image.string()).rc, 0);
        specs += std::string(specs.empty() ? "" : ", ") + "'backend=" + dom_ + ",vdev=" + vdev +
                 ",target=" + image.string() + "'";
      }
      guests.push_back({name, {"disk = [ " + specs + " ]"}});
    }
    sd::e2e::write_host(dir_, SD_SOURCE_DIR, {dom_}, guests);
    shadowd_ = std::make_unique<sd::e2e::Shadowd>(dir_, SD_SHADOWD, SD_SHADOWCTL);
  }

  void stop_programs() override {
    for (auto& d : disks_) {
      d.fio.reset();
      if (d.front && d.front->running()) {  // a failed test: let it unmount
        d.front->signal(SIGTERM);
        (void)d.front->wait_for(10s);
      }
      d.front.reset();
      (void)run("umount -l " + d.mnt.string() + " 2>/dev/null");
    }
  }

  // shadowd up with its eight disks, then one sd-blkfront per disk, each
  // mounting it at its own directory.
  void start() {
    json devs;
    start_shadowd({"--drvdom", SD_DRVDOM}, kGuests * std::size(kVdevs), &devs);
    if (HasFatalFailure()) return;
    for (auto& d : devs) {
      Disk disk;
      disk.device = d.value("device", "");
      disk.socket = d["detail"].value("socket", "");
      disk.mnt = dir_ / "mnt" / fs::path(disk.socket).stem();
      fs::create_directories(disk.mnt);
      disk.front = std::make_unique<Background>(
          std::vector<std::string>{SD_BLKFRONT, "--socket", disk.socket, "--mount", disk.mnt.string()},
          disk.mnt.string() + ".front");
      disks_.push_back(std::move(disk));
    }
    ASSERT_TRUE(wait_until(
        [&] {
          for (auto& d : disks_)
            if (!fs::exists(d.mnt / "disk")) return false;
          return all_serving(disks_.size(), 0, true);
        },
        30s))
        << shadowd_->devices().dump();
  }

  // fio on disk `d`: 4 KiB random writes with crc32c, then every block read
  // back and checked; paced (so the run spans the kills on a fast machine
  // too) and with its JSON report beside the mount point.
  static void start_fio(Disk& d, const std::string& size) {
    d.fio = std::make_unique<Background>(
        std::vector<std::string>{"fio", "--name=vbd", "--filename=" + (d.mnt / "disk").string(), "--ioengine=libaio",
                                 "--direct=1", "--bs=4k", "--iodepth=16", "--rw=randwrite", "--size=" + size,
                                 "--rate_iops=400", "--verify=crc32c", "--fallocate=none", "--output-format=json",
                                 "--output=" + d.mnt.string() + ".fio.json",
                                 // no verify-state file in the test's working directory
                                 "--verify_state_save=0"},
        d.mnt.string() + ".fio.out");
  }

  bool all_fio_running() {
    for (auto& d : disks_)
      if (!d.fio->running()) return false;
    return true;
  }

  std::vector<Disk> disks_;
};

TEST_F(VbdMultiDiskE2eTest, EightDisksOneBlkdd_FioVerifyOnEachAcrossFiveKills_AllExitZeroNoneFenced) {
  start();
  if (HasFatalFailure()) return;
  for (auto& d : disks_) start_fio(d, "4M");
  // Five kills while every fio runs, each once the previous recovery of all
  // eight devices is complete and fio has run 200 ms on the new incarnation.
  const int kKills = 5;
  int kills = 0;
  for (int k = 0; k < kKills; ++k) {
    std::this_thread::sleep_for(200ms);
    if (!all_fio_running()) break;
    ++kills;
    kill_and_recover(k + 1, disks_.size(), true);
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(kills, kKills) << "a fio finished before the last kill";

  for (auto& d : disks_) ASSERT_TRUE(d.fio->wait_for(240s)) << d.device << ": fio still running";
  for (auto& d : disks_) {
    auto v = sd::e2e::fio_verdict(d.fio->rc(), d.mnt.string() + ".fio.json", d.fio->out());
    std::printf("[ figure   ] %s: fio exit %d, error %d, %llu KiB written, %llu KiB read back and verified, "
                "%.0f write IOPS\n",
                d.device.c_str(), v.rc, v.error, static_cast<unsigned long long>(v.written >> 10),
                static_cast<unsigned long long>(v.read >> 10), v.write_iops);
    EXPECT_EQ(v.rc, 0) << d.device << ": " << d.fio->out();
    EXPECT_TRUE(v.report) << d.device << ": " << d.fio->out();
    EXPECT_EQ(v.error, 0) << d.device;
    EXPECT_FALSE(v.verify_errors) << d.device << ": " << d.fio->out();
    EXPECT_GE(v.written, 4ULL << 20) << d.device;
    EXPECT_GE(v.read, v.written) << d.device << ": not every block written was read back";
  }

  auto recs = shadowd_->events("recovery");
  sd::e2e::print_recoveries(recs);
  EXPECT_EQ(recs.size(), static_cast<size_t>(kKills));
  expect_none_fenced();
  EXPECT_TRUE(all_serving(disks_.size(), kKills, true)) << shadowd_->devices().dump();

  // Each frontend's own count: every request it submitted completed once.
  for (auto& d : disks_) {
    d.front->signal(SIGTERM);
    ASSERT_TRUE(d.front->wait_for(10s)) << d.device << ": sd-blkfront did not exit";
    EXPECT_EQ(d.front->rc(), 0) << d.device << ": " << d.front->out();
    auto c = sd::e2e::blkfront_counts(d.front->out());
    ASSERT_TRUE(c.has_value()) << d.device << ": no request counts from sd-blkfront: " << d.front->out();
    std::printf("[ figure   ] %s: frontend %llu requests submitted, %llu completed, %llu reconnects, %llu replayed\n",
                d.device.c_str(), static_cast<unsigned long long>(c->submitted),
                static_cast<unsigned long long>(c->completed), static_cast<unsigned long long>(c->reconnects),
                static_cast<unsigned long long>(c->replayed));
    EXPECT_EQ(c->completed, c->submitted) << d.device;
    EXPECT_EQ(c->reconnects, static_cast<uint64_t>(kKills)) << d.device;
  }
}

// A disk its driver domain cannot attach (its image shrunk under it, as an
// operator's mistaken truncate would do) is reported failed, with the driver
// domain's reason, in the events and in `shadowctl devices`, while the seven
// others recover and their fio runs on untouched; once the image is whole
// again the next incarnation serves it again.
TEST_F(VbdMultiDiskE2eTest, OneDiskShrunkUnderItsDriver_ReportedFailedOthersServeOn_ServedAgainOnceRestored) {
  start();
  if (HasFatalFailure()) return;
  Disk& victim = disks_.back();
  std::string image;
  for (auto& d : shadowd_->devices())
    if (d.value("device", "") == victim.device) image = d["detail"].value("target", "");
  ASSERT_FALSE(image.empty()) << shadowd_->devices().dump();
  for (size_t i = 0; i + 1 < disks_.size(); ++i) start_fio(disks_[i], "2M");
  std::this_thread::sleep_for(200ms);

  ASSERT_EQ(run("truncate -s 1M " + image).rc, 0);
  kill_and_recover(1, disks_.size(), true, victim.device);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_until([&] { return device_state(victim.device) == "failed"; }, 20s))
      << shadowd_->devices().dump();

  // What the operator sees: the event with the driver domain's reason, and
  // the device listed failed with it.
  bool evented = false;
  for (const auto& e : shadowd_->events("device_state"))
    if (e.value("device", "") == victim.device && e.value("state", "") == "failed") {
      evented = true;
      EXPECT_NE(e.value("error", "").find("smaller"), std::string::npos) << e.dump();
    }
  EXPECT_TRUE(evented);
  auto text = shadowd_->ctl("devices");
  EXPECT_EQ(text.rc, 0);
  EXPECT_NE(text.out.find("failed"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("error: "), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("smaller"), std::string::npos) << text.out;
  auto recs = shadowd_->events("recovery");
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0]["devices"].size(), disks_.size()) << recs[0].dump();

  for (size_t i = 0; i + 1 < disks_.size(); ++i) {
    ASSERT_TRUE(disks_[i].fio->wait_for(240s)) << disks_[i].device << ": fio still running";
    auto v = sd::e2e::fio_verdict(disks_[i].fio->rc(), disks_[i].mnt.string() + ".fio.json", disks_[i].fio->out());
    EXPECT_EQ(v.rc, 0) << disks_[i].device << ": " << disks_[i].fio->out();
    EXPECT_FALSE(v.verify_errors) << disks_[i].device;
  }
  EXPECT_TRUE(shadowd_->events("domain_fenced").empty());

  // Restored: the next incarnation attaches it again and it takes I/O.
  ASSERT_EQ(run("truncate -s 64M " + image).rc, 0);
  kill_and_recover(2, disks_.size(), true, victim.device);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_until([&] { return device_state(victim.device) == "normal"; }, 20s))
      << shadowd_->devices().dump();
  start_fio(victim, "1M");
  ASSERT_TRUE(victim.fio->wait_for(120s));
  auto v = sd::e2e::fio_verdict(victim.fio->rc(), victim.mnt.string() + ".fio.json", victim.fio->out());
  EXPECT_EQ(v.rc, 0) << victim.fio->out();
  EXPECT_FALSE(v.verify_errors);
}

}  // namespace
