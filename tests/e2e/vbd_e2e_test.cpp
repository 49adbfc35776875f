// End-to-end for vbd: the real shadowd, drvdom (blkback) and sd-blkfront
// (the guest's disk as a FUSE file), and an unmodified fio writing and
// verifying through it while the block driver domain is killed, crashes,
// hangs or answers with garbage. Asserts what the user checks: fio's exit
// code, its I/O and verify errors, and that every request completed exactly
// once (the frontend's own count).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
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
using sd::e2e::slurp;
using sd::e2e::wait_until;

class VbdE2eTest : public ::testing::Test {
 protected:
  void SetUp() override { make_host(""); }

  // The host: one block driver domain, one guest whose disk (`disk_flags`
  // appended to its spec) it backs.
  void make_host(const std::string& disk_flags) {
    char tmpl[] = "/tmp/sd-vbde2e-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    if (!dir_.empty()) fs::remove_all(dir_);
    dir_ = tmpl;
    auto id = std::to_string(::getpid());
    dom_ = "blk" + id;
    guest_ = "bg" + id;
    fs::create_directories(dir_ / "mnt");
    // The disk: a sparse image on the host's file system, a little larger than fio's 256 MiB.
    image_ = dir_ / "xvda.img";
    ASSERT_EQ(run("truncate -s 272M " + image_.string()).rc, 0);
    sd::e2e::write_host(dir_, SD_SOURCE_DIR, {dom_},
                        {{guest_, {"disk = [ 'backend=" + dom_ + ",vdev=xvda," + disk_flags + "target=" +
                                   image_.string() + "' ]"}}});
    socket_ = dir_ / "state" / (guest_ + "-vbd-0.sock");
    disk_ = dir_ / "mnt" / "disk";
  }

  void TearDown() override {
    (void)run("umount -l " + (dir_ / "fs").string() + " 2>/dev/null");
    if (front_ && front_->running()) {  // a failed test: let it detach its loop device and unmount
      front_->signal(SIGTERM);
      (void)front_->wait_for(10s);
    }
    front_.reset();  // SIGKILLed if still up; the mount is lazily removed below
    (void)run("umount -l " + (dir_ / "mnt").string());
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st = 0;
      if (!wait_until([&] { return ::waitpid(pid_, &st, WNOHANG) == pid_; }, 10s)) {
        ADD_FAILURE() << "shadowd did not exit within 10 s of SIGTERM; killed";
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
      }
    }
    if (HasFailure())
      std::fprintf(stderr, "shadowd log:\n%s\nevents:\n%s\n", slurp(dir_ / "shadowd.log").c_str(),
                   slurp(dir_ / "events.jsonl").c_str());
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // shadowd, then sd-blkfront (with a loop device over the disk if `loop`;
  // its name is the first line of front.out).
  void start(bool loop = false) {
    std::fflush(nullptr);
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      std::string log = (dir_ / "shadowd.log").string();
      if (!std::freopen(log.c_str(), "w", stderr) || !std::freopen(log.c_str(), "a", stdout)) _exit(126);
      ::execl(SD_SHADOWD, "shadowd", "--config", (dir_ / "host.yaml").c_str(), "--drvdom", SD_DRVDOM,
              static_cast<char*>(nullptr));
      _exit(127);
    }
    ASSERT_TRUE(wait_until([&] { return detail().value("backend_up", false) && fs::exists(socket_); }, 10s))
        << slurp(dir_ / "shadowd.log");
    std::vector<std::string> argv{SD_BLKFRONT, "--socket", socket_.string(), "--mount", (dir_ / "mnt").string()};
    if (loop) argv.push_back("--loop");
    front_ = std::make_unique<Background>(argv, dir_ / "front.log", dir_ / "front.out");
    ASSERT_TRUE(wait_until([&] { return detail().value("frontend_connected", false) && fs::exists(disk_); }, 10s))
        << front_->out();
    if (loop) {
      ASSERT_TRUE(wait_until([&] { return slurp(dir_ / "front.out").find('\n') != std::string::npos; }, 10s))
          << front_->out();
    }
  }

  sd::e2e::CmdResult ctl(const std::string& args) {
    return run(std::string(SD_SHADOWCTL) + " --socket " + (dir_ / "sd.sock").string() + " " + args);
  }
  json detail() {
    auto j = json::parse(ctl("devices --json").out, nullptr, false);
    if (j.is_discarded() || !j.contains("devices") || j["devices"].empty()) return json::object();
    return j["devices"][0].value("detail", json::object());
  }
  std::vector<json> events(const std::string& type) { return sd::e2e::read_events(dir_ / "events.jsonl", type); }

  // fio with crc32c verification on the guest's disk; json report in fio.json.
  std::unique_ptr<Background> fio(const std::vector<std::string>& job) {
    std::vector<std::string> argv{"fio", "--name=vbd", "--filename=" + disk_.string(), "--ioengine=libaio",
                                  "--direct=1", "--bs=4k", "--verify=crc32c", "--fallocate=none",
                                  "--output-format=json", "--output=" + (dir_ / "fio.json").string(),
                                  // no verify-state file in the test's working directory
                                  "--verify_state_save=0"};
    argv.insert(argv.end(), job.begin(), job.end());
    return std::make_unique<Background>(argv, dir_ / "fio.out");
  }

  // Injects `kind` once the previous recovery is complete and fio has run
  // `gap` under the new incarnation; false if fio was no longer running.
  bool inject_while(Background& fio, const std::string& kind, size_t recoveries_before,
                    std::chrono::milliseconds gap = 300ms) {
    if (!fio.running()) return false;
    EXPECT_TRUE(wait_until([&] { return events("recovery").size() >= recoveries_before; }, 10s));
    std::this_thread::sleep_for(gap);
    if (!fio.running()) return false;
    auto r = ctl("inject-fault " + dom_ + " " + kind);
    EXPECT_EQ(r.rc, 0) << r.out << r.err;
    return r.rc == 0;
  }

  // `n` kills while fio runs, `gap` apart under each new incarnation; all
  // must land before fio ends.
  void kill_while(Background& fio, size_t n, std::chrono::milliseconds gap) {
    size_t kills = 0;
    for (size_t k = 0; k < n; ++k)
      if (inject_while(fio, "kill", k, gap)) ++kills;
    std::printf("[ figure   ] %zu kill -9 of the block driver domain while fio ran\n", kills);
    EXPECT_EQ(kills, n) << "fio finished before the last kill";
  }

  // fio's verdict: exit code, I/O and verify errors, bytes moved.
  void expect_clean_fio(Background& fio, uint64_t bytes_written) {
    ASSERT_TRUE(fio.wait_for(240s)) << "fio still running";
    std::string out = fio.out();
    auto v = sd::e2e::fio_verdict(fio.rc(), dir_ / "fio.json", out);
    std::printf("[ figure   ] fio exit code %d\n", v.rc);
    EXPECT_EQ(v.rc, 0) << out;
    ASSERT_TRUE(v.report) << out;
    std::printf("[ figure   ] fio: error %d, written %llu bytes, read (verify) %llu bytes, write IOPS %.0f, "
                "read IOPS %.0f\n",
                v.error, static_cast<unsigned long long>(v.written), static_cast<unsigned long long>(v.read),
                v.write_iops, v.read_iops);
    EXPECT_EQ(v.error, 0);
    EXPECT_GE(v.written, bytes_written);
    // Verify reads back every block written: a verify error fails the job
    // and prints "verify:" lines.
    EXPECT_FALSE(v.verify_errors) << out;
  }

  // The frontend's own count when it exits: every request submitted was
  // completed once (a second completion would make completed > submitted).
  sd::e2e::BlkfrontCounts stop_frontend() {
    front_->signal(SIGTERM);
    EXPECT_TRUE(front_->wait_for(10s)) << "sd-blkfront did not exit";
    EXPECT_EQ(front_->rc(), 0) << front_->out();
    auto c = sd::e2e::blkfront_counts(front_->out());
    if (!c) {
      ADD_FAILURE() << "no request counts from sd-blkfront: " << front_->out();
      return {};
    }
    std::printf("[ figure   ] frontend: %llu requests submitted, %llu completed, %llu flushes, %llu bad responses "
                "seen, %llu reconnects, %llu requests replayed, up to %llu in flight\n",
                static_cast<unsigned long long>(c->submitted), static_cast<unsigned long long>(c->completed),
                static_cast<unsigned long long>(c->flushes), static_cast<unsigned long long>(c->faults),
                static_cast<unsigned long long>(c->reconnects), static_cast<unsigned long long>(c->replayed),
                static_cast<unsigned long long>(c->max_inflight));
    return *c;
  }

  void print_recoveries() { sd::e2e::print_recoveries(events("recovery")); }

  fs::path dir_, image_, socket_, disk_;
  std::string dom_, guest_;
  pid_t pid_ = -1;
  std::unique_ptr<Background> front_;
};

TEST_F(VbdE2eTest, FioVerify256MiB_TwentyKillsOfTheBlockDomain_ExitsZeroWithNoVerifyErrors) {
  start();
  // Writes at most 12k IOPS: the write phase lasts 5 s or more however
  // fast the disk, and the 20 kills, 100 ms apart, land in it.
  auto f = fio({"--rw=randwrite", "--size=256M", "--iodepth=16", "--rate_iops=,12000"});
  kill_while(*f, 20, 100ms);
  expect_clean_fio(*f, 256ULL << 20);
  print_recoveries();
  EXPECT_GE(events("recovery").size(), 20u);
  auto c = stop_frontend();
  EXPECT_EQ(c.completed, c.submitted);
  EXPECT_GT(c.max_inflight, 1u) << "fio's iodepth never reached the ring";
  EXPECT_EQ(c.reconnects, events("recovery").size());
}

// Many requests of every size in flight at once (4 KiB to 1 MiB: a big one
// is many ring requests the backend runs side by side), flushes among them,
// across 20 kills: what was answered stays, what was in flight is replayed
// once, and every flush still follows the writes before it.
TEST_F(VbdE2eTest, MixedBlocks4kTo1MiB_Iodepth32WithFsync_TwentyKills_NoVerifyErrors) {
  start();
  // Six loops of write + verify: each loop checks what it wrote, across the kills that hit it.
  auto f = fio({"--rw=randwrite", "--bsrange=4k-1m", "--size=256M", "--iodepth=32", "--fsync=16", "--loops=6"});
  kill_while(*f, 20, 100ms);
  expect_clean_fio(*f, 256ULL << 20);
  print_recoveries();
  size_t replayed = 0;
  for (const auto& e : events("recovery")) replayed += e.value("replayed", 0);
  std::printf("[ figure   ] requests replayed over the kills: %zu\n", replayed);
  auto c = stop_frontend();
  EXPECT_EQ(c.completed, c.submitted);
  EXPECT_GT(c.flushes, 0u) << "fio's fsync never reached the ring";
  EXPECT_GT(c.max_inflight, 16u) << "the ring never held many requests at once";
  EXPECT_GT(c.replayed, 0u) << "no kill found a request in flight";
}

TEST_F(VbdE2eTest, FioRandRwWithFsync_SegvAndHangFaults_ExitsZeroWithNoVerifyErrors) {
  start();
  // At most 3000 IOPS each way: fio runs 8 s or more however fast the
  // disk, and the five faults (each after 300 ms under the last recovery, a
  // hang found by the 250 ms heartbeat) all land in it.
  auto f = fio({"--rw=randrw", "--rwmixread=50", "--fsync=8", "--size=96M", "--iodepth=8", "--rate_iops=3000"});
  const char* kinds[] = {"segv", "hang", "segv", "hang", "segv"};
  int faults = 0;
  for (size_t k = 0; k < 5; ++k)
    if (inject_while(*f, kinds[k], k)) ++faults;
  EXPECT_EQ(faults, 5) << "fio finished before the last fault";
  expect_clean_fio(*f, 40ULL << 20);  // about half of 96 MiB is written
  print_recoveries();
  std::string causes;
  for (const auto& e : events("recovery")) causes += e.value("cause", "") + "\n";
  EXPECT_NE(causes.find("SIGSEGV"), std::string::npos) << causes;
  EXPECT_NE(causes.find("hang"), std::string::npos) << causes;
  auto c = stop_frontend();
  EXPECT_EQ(c.completed, c.submitted);
  EXPECT_GT(c.flushes, 0u) << "fio's fsync never reached the ring as FLUSH_DISKCACHE";
}

// Under fio, a stalled (heartbeats answered) or hung (not answered) driver
// domain is found by the fast rule of the progress watchdog: requests
// waiting with no response for max(20 ms, 4 x the ring's service time),
// well before the heartbeat's 250 ms. fio sees nothing of it.
TEST_F(VbdE2eTest, FioRandRw_StallsAndHangs_FoundByNoProgress_ExitsZeroWithNoVerifyErrors) {
  start();
  auto f = fio({"--rw=randrw", "--rwmixread=50", "--size=64M", "--iodepth=8", "--rate_iops=3000"});
  const char* kinds[] = {"stall", "hang", "stall", "hang"};
  int faults = 0;
  for (size_t k = 0; k < 4; ++k)
    if (inject_while(*f, kinds[k], k)) ++faults;
  EXPECT_EQ(faults, 4) << "fio finished before the last fault";
  ASSERT_TRUE(wait_until([&] { return events("recovery").size() >= 4; }, 10s));
  expect_clean_fio(*f, 20ULL << 20);
  print_recoveries();
  for (const auto& e : events("recovery")) {
    std::string cause = e.value("cause", "");
    EXPECT_NE(cause.find("no block response"), std::string::npos) << cause;
    EXPECT_GE(e["phases_ms"].value("detect", 0.0), 20.0) << "the rule cannot fire before no_progress_min_ms: " << cause;
  }
  auto c = stop_frontend();
  EXPECT_EQ(c.completed, c.submitted);
}

TEST_F(VbdE2eTest, HostileReplies_UnknownIdAndDuplicateResponse_DetectedRecoveredNoDoubleCompletion) {
  start();
  auto f = fio({"--rw=randwrite", "--size=128M", "--iodepth=16"});
  // bad-id: a response whose id was never in flight; bad-prod: a second
  // response for one id in place of another request's (vbd's meaning of the
  // garbage faults, driver_domain/vbd/blkback.hpp).
  const char* kinds[] = {"bad-id", "bad-prod", "bad-id", "bad-prod"};
  int injected = 0;
  for (size_t k = 0; k < 4; ++k)
    if (inject_while(*f, kinds[k], k, 100ms)) ++injected;
  EXPECT_EQ(injected, 4);
  expect_clean_fio(*f, 128ULL << 20);
  print_recoveries();
  std::string causes;
  for (const auto& e : events("fault_detected")) causes += e.value("cause", "") + "\n";
  std::printf("[ figure   ] causes:\n%s", causes.c_str());
  EXPECT_NE(causes.find("(unknown id)"), std::string::npos) << causes;
  EXPECT_NE(causes.find("(duplicate response)"), std::string::npos) << causes;
  auto c = stop_frontend();
  EXPECT_EQ(c.completed, c.submitted) << "a request completed twice, or never";
  EXPECT_EQ(c.faults, 4u);
}

TEST_F(VbdE2eTest, Ext4OnALoopDevice_KillsDuringASynchronousCopy_FsckCleanAndTheFileIntact) {
  start(/*loop=*/true);
  fs::path loopdev = slurp(dir_ / "front.out").substr(0, slurp(dir_ / "front.out").find('\n'));
  ASSERT_EQ(loopdev.string().rfind("/dev/loop", 0), 0u) << slurp(dir_ / "front.out") << front_->out();
  fs::create_directories(dir_ / "fs");
  auto mk = run("mkfs.ext4 -q -F " + loopdev.string());
  ASSERT_EQ(mk.rc, 0) << mk.err;
  ASSERT_EQ(run("mount " + loopdev.string() + " " + (dir_ / "fs").string()).rc, 0);
  ASSERT_EQ(run("head -c 192M /dev/urandom > " + (dir_ / "src.bin").string()).rc, 0);
  Background copy({"dd", "if=" + (dir_ / "src.bin").string(), "of=" + (dir_ / "fs" / "dst.bin").string(), "bs=1M",
                   "oflag=dsync", "conv=fsync", "status=none"},
                  dir_ / "dd.out");
  int kills = 0;
  for (size_t k = 0; k < 5; ++k)
    if (inject_while(copy, "kill", k, 100ms)) ++kills;
  ASSERT_TRUE(copy.wait_for(120s));
  EXPECT_EQ(copy.rc(), 0) << copy.out();  // 192 MiB fit in ext4 on the 272 MiB disk
  std::printf("[ figure   ] %d kills during the copy; dd exit %d\n", kills, copy.rc());
  EXPECT_GE(kills, 3) << "the copy ended before the third kill";
  auto same = run("cmp " + (dir_ / "src.bin").string() + " " + (dir_ / "fs" / "dst.bin").string());
  EXPECT_EQ(same.rc, 0) << same.out << same.err;
  ASSERT_EQ(run("umount " + (dir_ / "fs").string()).rc, 0);
  auto fsck = run("fsck.ext4 -fn " + loopdev.string());
  EXPECT_EQ(fsck.rc, 0) << fsck.out << fsck.err;
  // And after a fresh mount (what is on the disk, not in the page cache).
  ASSERT_EQ(run("mount " + loopdev.string() + " " + (dir_ / "fs").string()).rc, 0);
  EXPECT_EQ(run("cmp " + (dir_ / "src.bin").string() + " " + (dir_ / "fs" / "dst.bin").string()).rc, 0);
  EXPECT_EQ(run("umount " + (dir_ / "fs").string()).rc, 0);
  auto c = stop_frontend();
  EXPECT_EQ(c.completed, c.submitted);
  EXPECT_GT(c.flushes, 0u);
}

TEST_F(VbdE2eTest, DirectIoSafeDisk_OpenedODirectAndFioVerifyAcrossKills) {
  make_host("direct-io-safe,");
  start();
  EXPECT_TRUE(detail().value("o_direct", false)) << "the host file system refused O_DIRECT";
  // On an O_DIRECT disk the backend's workers run requests side by side:
  // blocks of every size and flushes among them, across the kills.
  auto f = fio({"--rw=randwrite", "--bsrange=4k-1m", "--size=64M", "--iodepth=32", "--fsync=16", "--loops=3"});
  int kills = 0;
  for (size_t k = 0; k < 5; ++k)
    if (inject_while(*f, "kill", k)) ++kills;
  EXPECT_GE(kills, 3);
  expect_clean_fio(*f, 64ULL << 20);
  auto c = stop_frontend();
  EXPECT_EQ(c.completed, c.submitted);
  EXPECT_GT(c.max_inflight, 16u) << "the ring never held many requests at once";
}

// What fsync(1) and fallocate(1) do to the disk file: an fsync is a
// FLUSH_DISKCACHE, a punched hole a DISCARD of the whole sectors inside it
// (reads back as zeros), and both survive a kill of the block domain.
TEST_F(VbdE2eTest, FsyncAndPunchedHoles_FlushAndDiscardTheDisk_KeptAcrossAKill) {
  start();
  const std::string src = (dir_ / "src.bin").string(), want = (dir_ / "want.bin").string();
  ASSERT_EQ(run("head -c 8M /dev/urandom > " + src + " && cp " + src + " " + want).rc, 0);
  auto w = run("dd if=" + src + " of=" + disk_.string() + " bs=1M oflag=direct conv=notrunc,fsync status=none");
  ASSERT_EQ(w.rc, 0) << w.err;
  // A whole MiB, and a range with partial sectors at both ends (3000..12999:
  // sectors 3072..12799 are discarded, the bytes around them kept).
  for (auto [off, len] : {std::pair{1048576, 1048576}, std::pair{3000, 10000}}) {
    auto p = run("fallocate --punch-hole --offset " + std::to_string(off) + " --length " + std::to_string(len) + " " +
                 disk_.string());
    ASSERT_EQ(p.rc, 0) << p.err;
  }
  ASSERT_EQ(run("dd if=/dev/zero of=" + want + " bs=1024 seek=1024 count=1024 conv=notrunc status=none && "
                "dd if=/dev/zero of=" + want + " bs=512 seek=6 count=19 conv=notrunc status=none").rc,
            0);
  auto k = ctl("inject-fault " + dom_ + " kill");
  ASSERT_EQ(k.rc, 0) << k.out << k.err;
  ASSERT_TRUE(wait_until([&] { return events("recovery").size() >= 1; }, 10s));
  auto same = run("dd if=" + disk_.string() + " bs=1M count=8 iflag=direct status=none | cmp - " + want);
  EXPECT_EQ(same.rc, 0) << same.out << same.err;
  auto c = stop_frontend();
  EXPECT_EQ(c.completed, c.submitted);
  EXPECT_GE(c.flushes, 1u);
  EXPECT_GE(c.discards, 2u);
}

TEST_F(VbdE2eTest, MissingDiskImage_ShadowdRefusesToStartAndNamesTheFile) {
  fs::remove(image_);
  auto r = run(std::string(SD_SHADOWD) + " --config " + (dir_ / "host.yaml").string() + " --drvdom " + SD_DRVDOM);
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find(image_.string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("truncate -s"), std::string::npos) << r.err;
}

}  // namespace
