// End-to-end for vif: the real shadowd, drvdom and sd-netfront, a real guest
// network namespace with its TAP, real traffic (iperf3, ping) from the guest
// to the wire while the driver domain is killed, crashes, hangs, stalls or
// answers with garbage. Asserts what a guest's programs see (exit codes,
// received bytes, lost pings) and what an operator sees (events, status).
#include <gtest/gtest.h>

#include "e2e_util.hpp"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kGuestAddr = "10.233.0.2";
constexpr const char* kWireAddr = "10.233.0.1";

using sd::e2e::CmdResult;
using sd::e2e::run;
using sd::e2e::slurp;

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  return sd::e2e::wait_until(pred, timeout);
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A long-running program (ping, iperf3) in the background, stdout and stderr
// to files. Always killed and reaped by the destructor.
class Proc {
 public:
  Proc(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err) : out_(out), err_(err) {
    std::fflush(nullptr);  // or the child's freopen flushes our buffered figures a second time
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      std::freopen("/dev/null", "r", stdin);
      std::freopen(out.c_str(), "w", stdout);
      std::freopen(err.c_str(), "w", stderr);
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      ::execvp(a[0], a.data());
      _exit(127);
    }
  }
  Proc(const Proc&) = delete;
  Proc& operator=(const Proc&) = delete;
  ~Proc() { stop(); }

  bool started() const { return pid_ > 0; }
  bool running() {
    if (done_ || pid_ <= 0) return false;
    reap(WNOHANG);
    return !done_;
  }
  // Waits for the exit; false (still running) after `timeout`.
  bool wait_for(std::chrono::milliseconds timeout) {
    return wait_until([&] { return !running(); }, timeout);
  }
  void stop(int sig = SIGKILL) {
    if (pid_ <= 0 || done_) return;
    ::kill(-pid_, sig);
    ::kill(pid_, sig);
    if (!wait_for(5s)) {
      ::kill(-pid_, SIGKILL);
      reap(0);
    }
  }
  int rc() const { return rc_; }
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }

 private:
  void reap(int flags) {
    int st = 0;
    if (::waitpid(pid_, &st, flags) == pid_) {
      done_ = true;
      rc_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
  }
  pid_t pid_ = -1;
  bool done_ = false;
  int rc_ = -1;
  fs::path out_, err_;
};

// Alive and not a zombie (a dead child of shadowd stays a zombie until reaped,
// and kill(pid, 0) succeeds on a zombie).
bool process_alive(int pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  std::string st = sd::e2e::proc_stat_field(pid, 3);
  return !st.empty() && st != "Z" && st != "X";
}

std::vector<std::string> netns_list() {
  std::vector<std::string> out;
  std::istringstream in(run("ip netns list").out);
  for (std::string line; std::getline(in, line);) {
    auto name = line.substr(0, line.find(' '));
    if (!name.empty()) out.push_back(name);
  }
  return out;
}

struct PingStats {
  int transmitted = 0, received = 0;
  std::set<int> seqs;  // unique sequence numbers answered
  double rtt_max = 0;
};

PingStats parse_ping(const std::string& out) {
  PingStats s;
  static const std::regex reply(R"(icmp_seq=(\d+) .*time=([0-9.]+) ms)");
  static const std::regex summary(R"((\d+) packets transmitted, (\d+) received)");
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, reply)) {
      s.seqs.insert(std::stoi(m[1]));
      s.rtt_max = std::max(s.rtt_max, std::stod(m[2]));
    } else if (std::regex_search(line, m, summary)) {
      s.transmitted = std::stoi(m[1]);
      s.received = std::stoi(m[2]);
    }
  }
  return s;
}

// One shadowd with one net driver domain and one guest with a vif, on a
// private host config and private namespace names.
class VifE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sd-vife2e-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto id = std::to_string(::getpid());
    dom_ = "vnet" + id;
    guest_ = "vg" + id;
    wire_ = "vw" + id;
    sd::e2e::write_private_host(dir_, SD_SOURCE_DIR, {dom_, guest_, wire_, kGuestAddr});
  }

  void TearDown() override {
    procs_.clear();  // ping / iperf3 first: they live in our namespaces
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st = 0;
      bool exited = wait_until([&] { return ::waitpid(pid_, &st, WNOHANG) == pid_; }, 10s);
      if (!exited) {
        ADD_FAILURE() << "shadowd did not exit within 10 s of SIGTERM; killed";
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
      }
      pid_ = -1;
    }
    // Nothing of ours may be left behind; remove leftovers so the next test runs clean.
    for (const auto& ns : netns_list())
      if (ns == guest_ || ns == wire_ || ns == "sd-" + dom_) {
        ADD_FAILURE() << "network namespace " << ns << " left behind";
        run("ip netns del " + ns);
      }
    if (HasFailure()) std::fprintf(stderr, "shadowd log:\n%s\n", slurp(dir_ / "shadowd.log").c_str());
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void set_policy(const std::string& key, const std::string& value) {
    ASSERT_TRUE(sd::e2e::set_policy_key(dir_ / "policies" / "vif.yaml", key, value)) << key;
  }

  // shadowd up, the driver domain running and the guest reaching the wire.
  void start_shadowd() {
    std::fflush(nullptr);
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      std::string log = (dir_ / "shadowd.log").string();
      std::freopen(log.c_str(), "w", stderr);
      std::freopen(log.c_str(), "a", stdout);
      ::execl(SD_SHADOWD, "shadowd", "--config", (dir_ / "host.yaml").c_str(), "--drvdom", SD_DRVDOM, "--netfront",
              SD_NETFRONT, static_cast<char*>(nullptr));
      _exit(127);
    }
    auto t0 = Clock::now();
    ASSERT_TRUE(wait_until([&] { return status().value("state", "") == "running"; }))
        << "shadowd log:\n" << slurp(dir_ / "shadowd.log");
    ASSERT_TRUE(wait_until([&] { return device().value("state", "") == "normal" && detail().value("backend_up", false); }))
        << devices_json().dump();
    ASSERT_TRUE(wait_until([&] { return guest_ping(1).rc == 0; }, 10s)) << "guest cannot reach the wire";
    std::printf("[ figure   ] shadowd start to guest reaching the wire: %.0f ms\n", ms_since(t0));
  }

  bool shadowd_alive() {
    int st;
    return pid_ > 0 && ::waitpid(pid_, &st, WNOHANG) == 0;
  }

  CmdResult ctl(const std::string& args) {
    return run(std::string(SD_SHADOWCTL) + " --socket " + (dir_ / "sd.sock").string() + " " + args);
  }

  json status() {
    auto r = ctl("status " + dom_ + " --json");
    if (r.rc != 0) return json::object();
    auto j = json::parse(r.out, nullptr, false);
    if (j.is_discarded() || !j.contains("domains") || j["domains"].empty()) return json::object();
    return j["domains"][0];
  }

  json devices_json() {
    auto r = ctl("devices --json");
    auto j = json::parse(r.out, nullptr, false);
    return j.is_discarded() ? json::object() : j;
  }
  json device() {
    auto j = devices_json();
    if (!j.contains("devices") || j["devices"].empty()) return json::object();
    return j["devices"][0];
  }
  json detail() { return device().value("detail", json::object()); }

  // Every event so far, from the event log file (not capped like `events -n`).
  std::vector<json> events(const std::string& type = "") {
    std::vector<json> out;
    std::istringstream in(slurp(dir_ / "events.jsonl"));
    for (std::string line; std::getline(in, line);) {
      auto j = json::parse(line, nullptr, false);
      if (j.is_discarded()) continue;
      if (type.empty() || j.value("type", "") == type) out.push_back(j);
    }
    return out;
  }

  // kill -9 of the driver domain once it runs again (a pid other than
  // `last_pid`, which becomes the one killed).
  void kill_next_driver(int& last_pid) {
    int pid = -1;
    ASSERT_TRUE(wait_until([&] {
      auto s = status();
      if (s.value("state", "") != "running" || !s["pid"].is_number()) return false;
      pid = s["pid"].get<int>();
      return pid != last_pid;
    }, 5s)) << "driver domain not back after its last kill";
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    last_pid = pid;
  }

  bool restarted(int n) {
    auto s = status();
    return s.value("restarts", 0) == n && s.value("state", "") == "running";
  }
  bool recovered(int n) {
    auto d = device();
    return d.value("recoveries", 0) == n && d.value("state", "") == "normal";
  }

  CmdResult guest_ping(int count) {
    return run("ip netns exec " + guest_ + " ping -n -q -c " + std::to_string(count) + " -i 0.2 -W 1 " + kWireAddr);
  }

  Proc& spawn(const std::vector<std::string>& argv, const std::string& tag) {
    procs_.push_back(std::make_unique<Proc>(argv, dir_ / (tag + ".out"), dir_ / (tag + ".err")));
    return *procs_.back();
  }
  Proc& spawn_in(const std::string& ns, std::vector<std::string> argv, const std::string& tag) {
    argv.insert(argv.begin(), {"ip", "netns", "exec", ns});
    return spawn(argv, tag);
  }

  // A fast ping from the guest to the wire, in the background.
  Proc& flood_ping(int count, const std::string& tag = "ping") {
    return spawn_in(guest_, {"ping", "-n", "-D", "-i", "0.01", "-W", "1", "-c", std::to_string(count), kWireAddr}, tag);
  }

  void print_recoveries() {
    for (auto& ev : events("recovery")) {
      auto& p = ev["phases_ms"];
      std::printf("[ figure   ] recovery (%s): detect %.2f spawn %.2f replay %.2f resume %.2f total %.2f ms, %d replayed\n",
                  ev.value("cause", "").c_str(), p.value("detect", 0.0), p.value("spawn", 0.0), p.value("replay", 0.0),
                  p.value("resume", 0.0), p.value("total", 0.0), ev.value("replayed", 0));
    }
  }

  // The garbage / crash faults: inject with a ping running, then check the
  // cause, one restart, and that the guest's side never noticed.
  void inject_during_ping_and_recover(const std::string& kind, const std::string& cause_part) {
    start_shadowd();
    int front_pid = detail().value("frontend_pid", -1);
    ASSERT_TRUE(process_alive(front_pid)) << devices_json().dump();
    auto& ping = flood_ping(200);
    std::this_thread::sleep_for(300ms);
    auto t_inject = wall_ms();

    auto r = ctl("inject-fault " + dom_ + " " + kind);

    ASSERT_EQ(r.rc, 0) << r.err;
    ASSERT_TRUE(wait_until([&] { return restarted(1) && recovered(1); }, 10s))
        << status().dump() << "\n" << devices_json().dump();
    json hit;
    for (auto& ev : events())
      if ((ev.value("type", "") == "fault_detected" || ev.value("type", "") == "domain_died") &&
          ev.value("cause", "").find(cause_part) != std::string::npos) {
        hit = ev;
        break;
      }
    ASSERT_FALSE(hit.is_null()) << "no event with cause '" << cause_part << "':\n" << slurp(dir_ / "events.jsonl");
    auto s = status();
    EXPECT_EQ(s.value("restarts", 0), 1);
    EXPECT_EQ(s.value("state", ""), "running");
    EXPECT_NE(s.value("last_cause", "").find(cause_part), std::string::npos) << s.dump();
    EXPECT_TRUE(shadowd_alive());
    EXPECT_EQ(detail().value("frontend_pid", -1), front_pid) << "the guest's frontend was replaced";
    EXPECT_TRUE(process_alive(front_pid)) << "frontend pid " << front_pid << " is gone";
    ping.wait_for(5s);
    auto st = parse_ping(ping.out());
    auto after = guest_ping(3);
    EXPECT_EQ(after.rc, 0) << after.out << after.err;
    std::printf("[ figure   ] %s: %s event %lld ms after inject; cause \"%s\"\n", kind.c_str(),
                hit.value("type", "").c_str(), static_cast<long long>(hit.value("ts", int64_t{0}) - t_inject),
                hit.value("cause", "").c_str());
    std::printf("[ figure   ] %s: last_detect_ms %s, death-to-ready %s ms, ping during fault %d/%d received\n",
                kind.c_str(), s["last_detect_ms"].dump().c_str(), s["last_death_to_ready_ms"].dump().c_str(),
                st.received, st.transmitted);
    print_recoveries();
  }

  fs::path dir_;
  std::string dom_, guest_, wire_;
  pid_t pid_ = -1;
  std::vector<std::unique_ptr<Proc>> procs_;
};

TEST_F(VifE2eTest, Iperf3Tcp_TenKillsIn20s_ExitsZeroNoReset) {
  start_shadowd();
  const std::string port = "5201";
  auto& server = spawn_in(wire_, {"iperf3", "-s", "-1", "-p", port}, "iperf3-server");
  ASSERT_TRUE(wait_until([&] { return !run("ip netns exec " + wire_ + " ss -Hltn sport = :" + port).out.empty(); }, 5s))
      << server.err();
  // Ten kill times over 2..18 s: one in each 1.6 s slot, random inside it.
  std::random_device rd;
  unsigned seed = rd();
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> jitter(0.0, 1.2);
  std::vector<double> at_s;
  for (int i = 0; i < 10; ++i) at_s.push_back(2.0 + 1.6 * i + jitter(rng));
  std::string schedule;
  for (double t : at_s) schedule += " " + std::to_string(t).substr(0, 5);
  std::printf("[ figure   ] kill -9 schedule (seed %u), s:%s\n", seed, schedule.c_str());
  auto t0 = Clock::now();
  auto& client = spawn_in(guest_, {"iperf3", "-c", kWireAddr, "-p", port, "-t", "20", "-J"}, "iperf3-client");

  int last_pid = -1, kills = 0;
  for (double t : at_s) {
    std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(t)));
    ASSERT_NO_FATAL_FAILURE(kill_next_driver(last_pid));
    ++kills;
  }
  ASSERT_TRUE(client.wait_for(40s)) << "iperf3 client did not finish";
  server.wait_for(5s);

  EXPECT_EQ(client.rc(), 0) << client.out() << client.err();
  auto j = json::parse(client.out(), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << client.out();
  EXPECT_FALSE(j.contains("error")) << j.value("error", "");
  auto bytes = j["end"]["sum_received"].value("bytes", uint64_t{0});
  EXPECT_GT(bytes, 0u);
  ASSERT_TRUE(wait_until([&] { return restarted(10); }, 10s)) << status().dump();
  EXPECT_EQ(status().value("restarts", 0), 10);
  EXPECT_EQ(events("recovery").size(), 10u) << "every kill must end in a completed recovery";
  EXPECT_TRUE(shadowd_alive());
  std::printf("[ figure   ] iperf3 TCP with 10 x kill -9: %.1f Mbit/s received, %llu bytes, %lld retransmits, rc %d\n",
              j["end"]["sum_received"].value("bits_per_second", 0.0) / 1e6, static_cast<unsigned long long>(bytes),
              static_cast<long long>(j["end"]["sum_sent"].value("retransmits", int64_t{-1})), client.rc());
  print_recoveries();
}

// TCP segmentation offload end to end: the guest's TAP takes 64 KiB TCP
// segments, which cross the rings as multi-slot frames with a GSO extra and
// leave through the NIC's packet socket whole (the wire's veth segments
// them), and the same the other way. A file sent each way over TCP (socat)
// while the driver domain is killed every 60 ms arrives byte for byte:
// frames in flight at a kill, many slots each, are replayed whole, never
// split, repeated or lost.
TEST_F(VifE2eTest, GsoFramesBothWays_KillsDuringTransfer_FilesByteIdentical) {
  start_shadowd();
  const std::string tap = detail().value("tap", std::string("eth0"));
  auto features = run("ip netns exec " + guest_ + " ethtool -k " + tap);
  ASSERT_NE(features.out.find("tcp-segmentation-offload: on"), std::string::npos) << features.out << features.err;
  const fs::path in = dir_ / "in.bin";
  ASSERT_EQ(run("head -c 256M /dev/urandom > " + in.string()).rc, 0);
  const std::string sum_in = run("sha256sum < " + in.string()).out;
  struct Way {
    std::string from, to, to_addr, tag;
  };
  const Way ways[] = {{guest_, wire_, kWireAddr, "guest-to-wire"}, {wire_, guest_, kGuestAddr, "wire-to-guest"}};
  int kills = 0, last_pid = -1;
  for (const auto& w : ways) {
    const fs::path out = dir_ / (w.tag + ".bin");
    const std::string port = "5301";
    auto& server = spawn_in(w.to, {"socat", "-u", "TCP-LISTEN:" + port + ",reuseaddr", "CREATE:" + out.string()},
                            w.tag + "-server");
    ASSERT_TRUE(wait_until([&] { return !run("ip netns exec " + w.to + " ss -Hltn sport = :" + port).out.empty(); }, 5s))
        << server.err();
    auto t0 = Clock::now();
    auto& client = spawn_in(w.from, {"socat", "-u", "OPEN:" + in.string(), "TCP:" + w.to_addr + ":" + port},
                            w.tag + "-client");
    int kills_here = 0;
    for (; kills_here < 10 && client.running(); ++kills_here) {
      std::this_thread::sleep_for(60ms);
      ASSERT_NO_FATAL_FAILURE(kill_next_driver(last_pid));
      ++kills;
    }
    ASSERT_TRUE(client.wait_for(60s)) << w.tag << ": the sender did not finish";
    ASSERT_TRUE(server.wait_for(10s)) << w.tag << ": the receiver did not finish";
    EXPECT_EQ(client.rc(), 0) << client.err();
    EXPECT_EQ(server.rc(), 0) << server.err();
    EXPECT_EQ(run("sha256sum < " + out.string()).out, sum_in) << w.tag << ": the file arrived changed";
    EXPECT_GE(kills_here, 2) << w.tag << ": the transfer ended before the driver domain was killed twice";
    std::printf("[ figure   ] %s: 256 MiB in %.2f s across %d kills\n", w.tag.c_str(), ms_since(t0) / 1000, kills_here);
  }
  ASSERT_TRUE(wait_until([&] { return restarted(kills); }, 10s)) << status().dump();
  EXPECT_EQ(events("recovery").size(), static_cast<size_t>(kills));
  print_recoveries();
}

// Jumbo frames: a vif with mtu=9000 (the wire and the NIC carry it, the
// guest's interface starts there). 8000-byte pings that may not be
// fragmented (three slots a frame) get through, and TCP runs across kills;
// an MTU above the path's set on the guest's interface is put back at once
// (it would black-hole every larger frame) and the log says why.
TEST_F(VifE2eTest, JumboFrames_Mtu9000_PingsAndTcpAcrossKills_HigherMtuPutBack) {
  auto vif = sd::e2e::vif_line(dom_, 1, kGuestAddr);
  vif.insert(vif.rfind('\''), ",mtu=9000");
  sd::e2e::write_host(dir_, SD_SOURCE_DIR, {dom_}, {{guest_, {vif}}}, "wire_netns: " + wire_ + "\n");
  start_shadowd();
  const std::string tap = detail().value("tap", std::string("eth0"));
  auto mtu_of = [&](const std::string& ns, const std::string& dev) {
    return std::atoi(run("ip netns exec " + ns + " cat /sys/class/net/" + dev + "/mtu").out.c_str());
  };
  EXPECT_EQ(mtu_of(guest_, tap), 9000);
  EXPECT_EQ(mtu_of(wire_, detail().value("wire_if", std::string("wire0"))), 9000);
  auto big_ping = [&] {
    return run("ip netns exec " + guest_ + " ping -n -q -c 3 -i 0.2 -W 1 -s 8000 -M do " + kWireAddr);
  };
  auto before = big_ping();
  EXPECT_EQ(before.rc, 0) << before.out << before.err;

  const std::string port = "5302";
  auto& server = spawn_in(wire_, {"iperf3", "-s", "-1", "-p", port}, "jumbo-server");
  ASSERT_TRUE(wait_until([&] { return !run("ip netns exec " + wire_ + " ss -Hltn sport = :" + port).out.empty(); }, 5s));
  auto& client = spawn_in(guest_, {"iperf3", "-c", kWireAddr, "-p", port, "-t", "4", "-J", "-M", "8900"}, "jumbo-client");
  int last_pid = -1;
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(800ms);
    ASSERT_NO_FATAL_FAILURE(kill_next_driver(last_pid));
  }
  ASSERT_TRUE(client.wait_for(30s));
  server.wait_for(5s);
  EXPECT_EQ(client.rc(), 0) << client.out() << client.err();
  auto j = json::parse(client.out(), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_GT(j["end"]["sum_received"].value("bytes", uint64_t{0}), 0u);
  ASSERT_TRUE(wait_until([&] { return restarted(3); }, 10s)) << status().dump();
  auto after = big_ping();
  EXPECT_EQ(after.rc, 0) << after.out << after.err;

  ASSERT_EQ(run("ip netns exec " + guest_ + " ip link set " + tap + " mtu 9500").rc, 0);
  EXPECT_TRUE(wait_until([&] { return mtu_of(guest_, tap) == 9000; }, 2s)) << "the MTU above the path's stayed";
  EXPECT_TRUE(wait_until([&] { return slurp(dir_ / "shadowd.log").find("MTU 9500 refused") != std::string::npos; }, 2s));
  EXPECT_EQ(big_ping().rc, 0);
  std::printf("[ figure   ] jumbo: iperf3 TCP (MSS 8900) across 3 kills: %.2f Gbit/s, %lld retransmits\n",
              j["end"]["sum_received"].value("bits_per_second", 0.0) / 1e9,
              static_cast<long long>(j["end"]["sum_sent"].value("retransmits", int64_t{-1})));
}

TEST_F(VifE2eTest, Ping_FiveKills_LossOnlyInsideOutages) {
  start_shadowd();
  const int count = 600;  // 6 s at 10 ms
  auto& ping = flood_ping(count);
  auto t0 = Clock::now();

  int last_pid = -1;
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_until(t0 + std::chrono::milliseconds(500 + 1000 * i));
    ASSERT_NO_FATAL_FAILURE(kill_next_driver(last_pid));
  }
  ASSERT_TRUE(ping.wait_for(20s)) << "ping did not finish";
  ASSERT_TRUE(wait_until([&] { return restarted(5) && recovered(5); }, 10s)) << status().dump();

  auto st = parse_ping(ping.out());
  int lost = count - static_cast<int>(st.seqs.size());
  std::string lost_seqs;
  for (int seq = 1; seq <= count; ++seq)
    if (!st.seqs.count(seq)) lost_seqs += " " + std::to_string(seq);
  auto recs = events("recovery");
  double max_outage = 0;
  std::string outages;
  for (auto& ev : recs) {
    double total = ev["phases_ms"].value("total", 0.0);
    max_outage = std::max(max_outage, total);
    outages += " " + std::to_string(total).substr(0, 6);
  }
  std::printf("[ figure   ] per-kill outage (recovery phases_ms.total), ms:%s\n", outages.c_str());
  std::printf("[ figure   ] ping -i 0.01: %d sent, %d received, %d lost (seq:%s), max rtt %.1f ms, rc %d\n",
              st.transmitted, st.received, lost, lost_seqs.empty() ? " none" : lost_seqs.c_str(), st.rtt_max,
              ping.rc());
  EXPECT_EQ(recs.size(), 5u);
  EXPECT_GT(st.received, 0);
  EXPECT_TRUE(ping.rc() == 0 || (ping.rc() == 1 && st.received > 0)) << ping.rc() << ping.err();
  int bound = 5 * (static_cast<int>(std::ceil(max_outage / 10.0)) + 1);
  EXPECT_LE(lost, bound) << "losses not explained by the outages (max outage " << max_outage << " ms)";
}

TEST_F(VifE2eTest, BadId_GarbageResponse_DetectedRecoveredNoCrash) {
  inject_during_ping_and_recover("bad-id", "bad response");
}

TEST_F(VifE2eTest, BadProd_GarbageResponse_DetectedRecoveredNoCrash) {
  inject_during_ping_and_recover("bad-prod", "bad response");
}

TEST_F(VifE2eTest, BadGrant_GarbageResponse_DetectedRecoveredNoCrash) {
  inject_during_ping_and_recover("bad-grant", "bad response");
}

TEST_F(VifE2eTest, Segv_DuringTraffic_Recovered) { inject_during_ping_and_recover("segv", "SIGSEGV"); }

// The slow rule alone (the fast one off): one request older than
// progress_timeout_ms.
TEST_F(VifE2eTest, Stall_ProgressWatchdog_DetectsWithinPolicy) {
  set_policy("progress_timeout_ms", "300");
  set_policy("no_progress_multiple", "0");
  start_shadowd();
  auto& ping = flood_ping(200);
  std::this_thread::sleep_for(300ms);
  auto t_inject = wall_ms();

  auto r = ctl("inject-fault " + dom_ + " stall");

  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_TRUE(wait_until([&] { return restarted(1) && recovered(1); }, 10s)) << status().dump();
  auto s = status();
  EXPECT_NE(s.value("last_cause", "").find("progress watchdog"), std::string::npos) << s.dump();
  json detected;
  for (auto& ev : events("fault_detected")) detected = ev;
  ASSERT_FALSE(detected.is_null()) << slurp(dir_ / "events.jsonl");
  ASSERT_TRUE(s["last_detect_ms"].is_number()) << s.dump();
  double detect = s["last_detect_ms"].get<double>();
  std::printf("[ figure   ] stall: last_detect_ms %.2f ms, inject -> fault_detected event %lld ms "
              "(policy watchdog.progress_timeout_ms 300); cause \"%s\"\n",
              detect, static_cast<long long>(detected.value("ts", int64_t{0}) - t_inject),
              s.value("last_cause", "").c_str());
  EXPECT_GE(detected.value("ts", int64_t{0}) - t_inject, 300) << "detected before the policy allows";
  EXPECT_GE(detect, 300.0) << "last_detect_ms must count from the stall, and the watchdog cannot fire before 300 ms";
  ping.wait_for(5s);
  EXPECT_EQ(guest_ping(3).rc, 0);
  print_recoveries();
}

// Under traffic, a stalled (heartbeats answered) or hung (heartbeats not
// answered) driver domain is found by the fast rule of the progress
// watchdog: transmit requests waiting with no response for max(20 ms, 4 x
// the ring's service time), well before the heartbeat's 250 ms; the guest
// keeps its ping going across it.
TEST_F(VifE2eTest, StallAndHang_UnderTraffic_FoundByNoProgress) {
  start_shadowd();
  auto& ping = flood_ping(400);
  std::this_thread::sleep_for(300ms);
  int n = 0;
  for (const char* kind : {"stall", "hang"}) {
    SCOPED_TRACE(kind);
    auto t_inject = wall_ms();

    auto r = ctl(std::string("inject-fault ") + dom_ + " " + kind);

    ASSERT_EQ(r.rc, 0) << r.err;
    ++n;
    ASSERT_TRUE(wait_until([&] { return restarted(n) && recovered(n); }, 10s)) << status().dump();
    auto s = status();
    EXPECT_NE(s.value("last_cause", "").find("no tx response"), std::string::npos) << s.dump();
    EXPECT_EQ(s.value("last_cause", "").find("heartbeat"), std::string::npos) << s.dump();
    json detected;
    for (auto& ev : events("fault_detected")) detected = ev;
    ASSERT_FALSE(detected.is_null()) << slurp(dir_ / "events.jsonl");
    double detect = s["last_detect_ms"].get<double>();
    std::printf("[ figure   ] %s under ping -i 0.01: last_detect_ms %.2f ms, inject -> fault_detected %lld ms; "
                "cause \"%s\"\n",
                kind, detect, static_cast<long long>(detected.value("ts", int64_t{0}) - t_inject),
                s.value("last_cause", "").c_str());
    EXPECT_GE(detect, 20.0) << "the rule cannot fire before no_progress_min_ms";
    std::this_thread::sleep_for(300ms);
  }
  ASSERT_TRUE(ping.wait_for(15s));
  EXPECT_EQ(ping.rc(), 0) << ping.out();
  print_recoveries();
}

// The heartbeat alone (the fast progress rule off: the guest's own
// background frames could otherwise be found waiting first).
TEST_F(VifE2eTest, Hang_HeartbeatTimeout_Detected) {
  set_policy("no_progress_multiple", "0");
  start_shadowd();
  auto t_inject = wall_ms();

  auto r = ctl("inject-fault " + dom_ + " hang");

  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_TRUE(wait_until([&] { return restarted(1) && recovered(1); }, 10s)) << status().dump();
  auto s = status();
  EXPECT_NE(s.value("last_cause", "").find("hang"), std::string::npos) << s.dump();
  EXPECT_NE(s.value("last_cause", "").find("heartbeat"), std::string::npos) << s.dump();
  ASSERT_TRUE(s["last_detect_ms"].is_number()) << s.dump();
  json died;
  for (auto& ev : events("domain_died")) died = ev;
  std::printf("[ figure   ] hang: last_detect_ms %.2f ms, inject -> domain_died event %lld ms "
              "(policy heartbeat.timeout_ms 250, interval 50); cause \"%s\"\n",
              s["last_detect_ms"].get<double>(), static_cast<long long>(died.value("ts", int64_t{0}) - t_inject),
              s.value("last_cause", "").c_str());
  EXPECT_EQ(guest_ping(3).rc, 0);
}

TEST_F(VifE2eTest, Shutdown_RemovesTopology) {
  start_shadowd();
  auto before = netns_list();
  for (const auto& ns : {guest_, wire_, "sd-" + dom_})
    EXPECT_NE(std::find(before.begin(), before.end(), ns), before.end()) << ns << " missing while running";

  auto r = ctl("shutdown");

  ASSERT_EQ(r.rc, 0) << r.err;
  int st = 0;
  ASSERT_TRUE(wait_until([&] { return ::waitpid(pid_, &st, WNOHANG) == pid_; }, 10s)) << "shadowd still running";
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  auto after = netns_list();
  for (const auto& ns : {guest_, wire_, "sd-" + dom_})
    EXPECT_EQ(std::find(after.begin(), after.end(), ns), after.end()) << ns << " left behind";
}

}  // namespace

namespace {

// Active mode "drop" with no restart budget: the driver domain stays down
// (fenced) and shadowd answers the guest's transmit ring itself, so the
// guest's stack sees loss instead of a blocked device; an operator restart
// brings the network back.
TEST_F(VifE2eTest, DropModeFenced_ShadowdAnswersTx_OperatorRestartRecovers) {
  set_policy("action", "drop");
  set_policy("budget", "0");
  start_shadowd();
  int pid = status()["pid"].get<int>();

  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(wait_until([&] { return status().value("state", "") == "fenced"; }, 10s)) << status().dump();
  auto down = run("ip netns exec " + guest_ + " ping -n -q -c 20 -i 0.05 -W 1 " + kWireAddr);
  int dropped = detail().value("tx_dropped_in_active_mode", 0);
  ASSERT_EQ(ctl("restart " + dom_).rc, 0);
  ASSERT_TRUE(wait_until([&] { return device().value("state", "") == "normal"; }, 10s)) << devices_json().dump();
  auto up = guest_ping(3);

  EXPECT_NE(down.rc, 0) << "no driver domain: the pings cannot be answered";
  EXPECT_GE(dropped, 20) << devices_json().dump();
  EXPECT_EQ(up.rc, 0) << up.out << up.err;
  EXPECT_TRUE(shadowd_alive());
  std::printf("[ figure   ] drop mode while fenced: %d tx requests answered DROPPED by shadowd\n", dropped);
}

}  // namespace
