// End-to-end: the real shadowd and shadowctl binaries, real sandboxed driver
// domains, faults injected from outside (kill -9) and through shadowctl.
// Asserts what an operator checks: exit codes, states, restart counts.
#include <gtest/gtest.h>

#include "e2e_util.hpp"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

using sd::e2e::CmdResult;
using sd::e2e::run;
using sd::e2e::slurp;

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 20s) {
  return sd::e2e::wait_until(pred, timeout);
}

// A process's nice value; -100 if unreadable.
int nice_of(int pid) {
  std::string f = sd::e2e::proc_stat_field(pid, 19);
  return f.empty() ? -100 : std::stoi(f);
}

// One shadowd on a private host config in a temp dir.
class ShadowdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sd-e2e-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    dom_ = "tnet" + std::to_string(::getpid());
    auto id = std::to_string(::getpid());
    sd::e2e::write_private_host(dir_, SD_SOURCE_DIR, {dom_, "tg" + id, "tw" + id, "10.231.0.2"});
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st;
      ::waitpid(pid_, &st, 0);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void set_policy(const std::string& key, const std::string& value) {
    ASSERT_TRUE(sd::e2e::set_policy_key(dir_ / "policies" / "vif.yaml", key, value)) << key;
  }

  void start_shadowd() {
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      std::string log = (dir_ / "shadowd.log").string();
      std::freopen(log.c_str(), "w", stderr);
      std::freopen(log.c_str(), "a", stdout);
      ::execl(SD_SHADOWD, "shadowd", "--config", (dir_ / "host.yaml").c_str(), "--drvdom", SD_DRVDOM,
              static_cast<char*>(nullptr));
      _exit(127);
    }
    ASSERT_TRUE(wait_until([&] { return status().value("state", "") == "running"; }))
        << "shadowd log:\n" << slurp(dir_ / "shadowd.log");
  }

  CmdResult ctl(const std::string& args) {
    return run(std::string(SD_SHADOWCTL) + " --socket " + (dir_ / "sd.sock").string() + " " + args);
  }

  // Until status()[counter] is n, the domain runs and its spare is ready.
  bool settled(const char* counter, int n) {
    return wait_until([&] {
      auto s = status();
      return s.value(counter, 0) == n && s.value("state", "") == "running" && s.value("standby", "") == "ready";
    });
  }

  // Two kills back to back: `active`, then `spare` right after its promotion
  // (`promoted` checks it in between). Fills `s` with the status once both
  // are recovered and a new spare runs, at nice 10.
  void kill_promoted_spare_too(int active, int spare, const std::function<void()>& promoted, json& s) {
    ASSERT_EQ(::kill(active, SIGKILL), 0);
    ASSERT_TRUE(wait_until([&] { return status().value("promotions", 0) == 1; })) << status().dump();
    EXPECT_EQ(status()["pid"].get<int>(), spare);
    if (promoted) promoted();
    ASSERT_EQ(::kill(spare, SIGKILL), 0);

    ASSERT_TRUE(settled("restarts", 2)) << status().dump();
    s = status();
    EXPECT_NE(s["pid"].get<int>(), spare);
    EXPECT_NE(s["standby_pid"].get<int>(), s["pid"].get<int>());
    EXPECT_EQ(nice_of(s["standby_pid"].get<int>()), 10);
    std::printf("[ figure   ] promotions %d, restarts %d, incarnations %d\n", s["promotions"].get<int>(),
                s["restarts"].get<int>(), s["incarnations"].get<int>());
  }

  // The device serves again; with `pre_attached`, the spare holds it too.
  bool device_serves(bool pre_attached) {
    return wait_until([&] {
      auto d = json::parse(ctl("devices --json").out, nullptr, false);
      return !d.is_discarded() && d["devices"][0]["detail"].value("backend_up", false) &&
             (!pre_attached || d["devices"][0]["detail"].value("standby_attached", false));
    });
  }

  json status() {
    auto r = ctl("status " + dom_ + " --json");
    if (r.rc != 0) return json::object();
    auto j = json::parse(r.out, nullptr, false);
    if (j.is_discarded() || !j.contains("domains") || j["domains"].empty()) return json::object();
    return j["domains"][0];
  }

  fs::path dir_;
  std::string dom_;
  pid_t pid_ = -1;
};

TEST_F(ShadowdTest, KillDashNine_DriverDomain_RestartedAndDeathToReadyMeasured) {
  start_shadowd();
  int old_pid = status()["pid"].get<int>();

  ASSERT_EQ(::kill(old_pid, SIGKILL), 0);

  ASSERT_TRUE(wait_until([&] {
    auto s = status();
    return s.value("restarts", 0) == 1 && s.value("state", "") == "running";
  }));
  auto s = status();
  EXPECT_NE(s["pid"].get<int>(), old_pid);
  EXPECT_NE(s["last_cause"].get<std::string>().find("SIGKILL"), std::string::npos);
  ASSERT_TRUE(s["last_death_to_ready_ms"].is_number());
  std::printf("[ figure   ] death-to-ready after kill -9: %.2f ms\n", s["last_death_to_ready_ms"].get<double>());
  auto human = ctl("status " + dom_);
  EXPECT_EQ(human.rc, 0);
  EXPECT_NE(human.out.find("restarts:          1"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("death to ready:"), std::string::npos);
}

TEST_F(ShadowdTest, InjectSegv_Crash_DetectedAndRestarted) {
  start_shadowd();

  auto r = ctl("inject-fault " + dom_ + " segv");

  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_TRUE(wait_until([&] { return status().value("restarts", 0) == 1 && status().value("state", "") == "running"; }));
  EXPECT_NE(status()["last_cause"].get<std::string>().find("SIGSEGV"), std::string::npos);
}

TEST_F(ShadowdTest, InjectSigsys_SeccompKill_ReportedAsFault) {
  start_shadowd();

  auto r = ctl("inject-fault " + dom_ + " sigsys");

  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_TRUE(wait_until([&] { return status().value("restarts", 0) == 1 && status().value("state", "") == "running"; }));
  EXPECT_NE(status()["last_cause"].get<std::string>().find("seccomp"), std::string::npos);
}

TEST_F(ShadowdTest, InjectHang_HeartbeatTimeout_DetectedAndRestarted) {
  start_shadowd();

  auto r = ctl("inject-fault " + dom_ + " hang");

  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_TRUE(wait_until([&] { return status().value("restarts", 0) == 1 && status().value("state", "") == "running"; }));
  auto s = status();
  EXPECT_NE(s["last_cause"].get<std::string>().find("hang"), std::string::npos) << s.dump();
  std::printf("[ figure   ] hang detected after %.1f ms (policy heartbeat timeout 250 ms)\n",
              s["last_detect_ms"].get<double>());
}

TEST_F(ShadowdTest, Recovery_DeviceBackToNormal_EventWithPhases) {
  start_shadowd();

  ASSERT_EQ(ctl("inject-fault " + dom_ + " kill").rc, 0);

  ASSERT_TRUE(wait_until([&] {
    auto d = json::parse(ctl("devices --json").out, nullptr, false);
    return !d.is_discarded() && d["devices"][0].value("recoveries", 0) == 1;
  }));
  auto ev = ctl("events -n 50 --json");
  EXPECT_EQ(ev.rc, 0);
  bool found = false;
  std::istringstream lines(ev.out);
  for (std::string line; std::getline(lines, line);) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("type", "") == "recovery") {
      found = j["phases_ms"].contains("detect") && j["phases_ms"].contains("spawn") &&
              j["phases_ms"].contains("total");
    }
  }
  EXPECT_TRUE(found) << ev.out;
}

// Warm standby: a kill promotes the Ready standby (no new domain on the
// recovery path), and the replacement standby starts only once the devices
// serve again, so creating it never delays them.
TEST_F(ShadowdTest, WarmStandby_KillActive_StandbyPromotedReplacementAfterRecovery) {
  set_policy("standby", "true");
  start_shadowd();
  ASSERT_TRUE(settled("promotions", 0)) << status().dump();
  int active = status()["pid"].get<int>();
  int standby = status()["standby_pid"].get<int>();
  EXPECT_EQ(nice_of(standby), 10) << "the standby runs behind other work";

  ASSERT_EQ(::kill(active, SIGKILL), 0);

  ASSERT_TRUE(settled("promotions", 1)) << status().dump();
  auto s = status();
  EXPECT_EQ(s["pid"].get<int>(), standby);  // the standby took over
  EXPECT_NE(s["standby_pid"].get<int>(), standby);
  EXPECT_NE(s["standby_pid"].get<int>(), active);
  EXPECT_EQ(s["incarnations"].get<int>(), 3);
  // Event order: the recovery (devices serve again) before the replacement's Ready.
  std::vector<std::string> order;
  std::istringstream lines(slurp(dir_ / "events.jsonl"));
  for (std::string line; std::getline(lines, line);) {
    auto j = json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    auto type = j.value("type", "");
    if (type == "recovery" || type == "standby_ready") order.push_back(type);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"standby_ready", "recovery", "standby_ready"}));
  std::printf("[ figure   ] standby promotion: fault to ready %.2f ms\n", s["last_fault_to_ready_ms"].get<double>());
}

// Warm standby, two kills back to back: the promoted standby dies before
// or while its devices are handed over (no ready standby then: a cold
// start). Both are recovered, and a standby is made again, at nice 10 with
// the devices pre-attached.
TEST_F(ShadowdTest, WarmStandby_TwoKillsBackToBack_BothRecoveredStandbyMadeAgain) {
  set_policy("standby", "true");
  start_shadowd();
  ASSERT_TRUE(settled("promotions", 0)) << status().dump();
  int active = status()["pid"].get<int>();
  int standby = status()["standby_pid"].get<int>();

  json s;
  ASSERT_NO_FATAL_FAILURE(kill_promoted_spare_too(active, standby, {}, s));

  EXPECT_TRUE(device_serves(/*pre_attached=*/true)) << ctl("devices --json").out;
}

// Zygote: a spare driver domain, started behind all other work (nice 10)
// and with no device attached, is promoted at a kill (nothing spawned on
// the recovery path) and runs at normal priority from then on; the devices
// attach to it as to a new incarnation. A second kill right after the
// promotion (a new zygote is then rarely ready: a cold start) is recovered
// too, and a zygote is made again after each recovery.
TEST_F(ShadowdTest, Zygote_TwoKillsBackToBack_ZygotePromotedBothRecoveredZygoteMadeAgain) {
  set_policy("zygote", "true");
  start_shadowd();
  ASSERT_TRUE(settled("restarts", 0)) << status().dump();
  int active = status()["pid"].get<int>();
  int zygote = status()["standby_pid"].get<int>();
  EXPECT_EQ(status().value("spare", ""), "zygote");
  EXPECT_EQ(nice_of(zygote), 10);
  EXPECT_EQ(nice_of(active), 0);
  auto dev = json::parse(ctl("devices --json").out, nullptr, false);
  ASSERT_FALSE(dev.is_discarded());
  EXPECT_EQ(dev["devices"][0]["detail"].value("standby_attached", true), false) << "a zygote has no devices";

  json s;
  ASSERT_NO_FATAL_FAILURE(kill_promoted_spare_too(active, zygote, [&] {
    EXPECT_EQ(nice_of(zygote), 0) << "the promoted zygote still runs behind other work";
  }, s));

  EXPECT_TRUE(device_serves(/*pre_attached=*/false)) << ctl("devices --json").out;
}

TEST_F(ShadowdTest, RestartBudgetSpent_Fenced_OperatorRestartRevives) {
  set_policy("budget", "1");
  start_shadowd();
  ASSERT_EQ(ctl("inject-fault " + dom_ + " kill").rc, 0);
  ASSERT_TRUE(wait_until([&] { return status().value("restarts", 0) == 1 && status().value("state", "") == "running"; }));

  ASSERT_EQ(ctl("inject-fault " + dom_ + " kill").rc, 0);

  ASSERT_TRUE(wait_until([&] { return status().value("state", "") == "fenced"; }));
  auto dev = json::parse(ctl("devices --json").out, nullptr, false);
  EXPECT_EQ(dev["devices"][0]["state"], "fenced");
  ASSERT_EQ(ctl("restart " + dom_).rc, 0);
  EXPECT_TRUE(wait_until([&] { return status().value("state", "") == "running"; }));
}

TEST_F(ShadowdTest, Shutdown_CleanExitNothingLeftBehind) {
  start_shadowd();

  auto r = ctl("shutdown");

  ASSERT_EQ(r.rc, 0);
  int st = 0;
  ASSERT_EQ(::waitpid(pid_, &st, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  EXPECT_FALSE(fs::exists(dir_ / "sd.sock"));
  EXPECT_FALSE(fs::exists("/run/netns/sd-" + dom_));
}

TEST_F(ShadowdTest, List_Running_ShowsDomainTable) {
  start_shadowd();

  auto r = ctl("list");

  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find(dom_), std::string::npos);
  EXPECT_NE(r.out.find("running"), std::string::npos);
}

TEST_F(ShadowdTest, BadConfig_ErrorsNameFileAndLine_NothingStarted) {
  std::ofstream(dir_ / "guest1.cfg") << "name = \"guest1\"\nmemroy = 256\nvif = [ 'backend=" << dom_
                                     << ",mac=00:16:3e:zz:00:01' ]\n";

  auto r = run(std::string(SD_SHADOWD) + " --config " + (dir_ / "host.yaml").string());

  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("guest1.cfg:2:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("guest1.cfg:3:"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "sd.sock"));
  EXPECT_FALSE(fs::exists("/run/netns/sd-" + dom_));
}

TEST_F(ShadowdTest, UnknownBackend_ErrorNamesDeviceLine_NothingStarted) {
  std::ofstream(dir_ / "guest1.cfg") << "name = \"guest1\"\nmemory = 256\nvif = [ 'backend=nosuchdd' ]\n";

  auto r = run(std::string(SD_SHADOWD) + " --config " + (dir_ / "host.yaml").string());

  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("guest1.cfg:3:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nosuchdd"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "sd.sock"));
}

TEST_F(ShadowdTest, Check_GoodConfig_ExitsZero) {
  auto r = run(std::string(SD_SHADOWD) + " --check --config " + (dir_ / "host.yaml").string());

  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "sd.sock"));
}

TEST(Cli, ShadowdHelp_ExitsZeroAndDocumentsEveryOption) {
  auto r = run(std::string(SD_SHADOWD) + " --help");

  EXPECT_EQ(r.rc, 0);
  for (auto opt : {"--config", "--check", "--platform", "--socket", "--drvdom", "--verbose", "--version", "--help"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
}

TEST(Cli, ShadowdBadOption_ExitsTwoWithUsage) {
  auto r = run(std::string(SD_SHADOWD) + " --bogus");

  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("usage: shadowd"), std::string::npos) << r.err;
}

TEST(Cli, ShadowdBadPlatform_ExitsTwo) {
  auto r = run(std::string(SD_SHADOWD) + " --config x.yaml --platform vmware");

  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("usage: shadowd"), std::string::npos) << r.err;
}

TEST(Cli, ShadowctlHelp_ExitsZeroAndListsCommands) {
  auto r = run(std::string(SD_SHADOWCTL) + " --help");

  EXPECT_EQ(r.rc, 0);
  for (auto c : {"list", "status", "devices", "events", "inject-fault", "restart", "policy", "shutdown", "--socket",
                 "--json"})
    EXPECT_NE(r.out.find(c), std::string::npos) << c;
}

TEST(Cli, ShadowctlBadOption_ExitsTwoWithUsage) {
  auto r = run(std::string(SD_SHADOWCTL) + " --bogus list");

  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("usage: shadowctl"), std::string::npos) << r.err;
}

TEST(Cli, ShadowctlUnknownCommand_ExitsTwo) {
  auto r = run(std::string(SD_SHADOWCTL) + " frobnicate");

  EXPECT_EQ(r.rc, 2);
}

TEST(Cli, ShadowctlNoDaemon_ExitsOneWithReason) {
  auto r = run(std::string(SD_SHADOWCTL) + " --socket /tmp/sd-no-such.sock list");

  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("cannot reach shadowd"), std::string::npos) << r.err;
}

}  // namespace
