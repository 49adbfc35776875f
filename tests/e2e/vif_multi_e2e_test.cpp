// End-to-end for one net driver domain serving many guests: N guests, each
// with one vif on the same driver domain, every guest's address in the same
// /24 (as an operator copying guest1.cfg writes them). Every guest pings its
// wire address every 10 ms while the driver domain is killed again and
// again; each guest's losses must fit inside the outages, and the driver
// domain is never fenced.
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
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using sd::e2e::CmdResult;
using sd::e2e::run;
using sd::e2e::slurp;

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  return sd::e2e::wait_until(pred, timeout);
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
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

// "N packets transmitted, M received" from ping's summary; {-1, -1} if absent.
std::pair<int, int> ping_summary(const std::string& out) {
  static const std::regex summary(R"((\d+) packets transmitted, (\d+) received)");
  std::smatch m;
  if (!std::regex_search(out, m, summary)) return {-1, -1};
  return {std::stoi(m[1]), std::stoi(m[2])};
}

class VifMultiGuestE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sd-vifmulti-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    id_ = std::to_string(::getpid());
    dom_ = "mnet" + id_;
    wire_ = "mw" + id_;
  }

  void TearDown() override {
    pings_.clear();  // they live in our namespaces
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st = 0;
      bool exited = wait_until([&] { return ::waitpid(pid_, &st, WNOHANG) == pid_; }, 20s);
      if (!exited) {
        ADD_FAILURE() << "shadowd did not exit within 20 s of SIGTERM; killed";
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
      }
      pid_ = -1;
    }
    for (const auto& ns : netns_list()) {
      bool ours = ns == wire_ || ns == "sd-" + dom_ || std::find(guests_.begin(), guests_.end(), ns) != guests_.end();
      if (ours) {
        ADD_FAILURE() << "network namespace " << ns << " left behind";
        run("ip netns del " + ns);
      }
    }
    if (HasFailure()) {
      std::fprintf(stderr, "shadowd log (tail):\n%s\n", tail(slurp(dir_ / "shadowd.log")).c_str());
      std::fprintf(stderr, "driver domain log (tail):\n%s\n", tail(slurp(dir_ / "state" / (dom_ + ".log")), 3000).c_str());
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static std::string tail(const std::string& s, size_t n = 8000) { return s.size() > n ? s.substr(s.size() - n) : s; }

  // `n` guests, all in 10.234.0.0/24 (.2, .3, ...), one vif each on `dom_`.
  void write_host(int n) {
    sd::e2e::MultiGuestHost h{dom_, wire_, {}};
    for (int i = 0; i < n; ++i) {
      guests_.push_back("mg" + id_ + "x" + std::to_string(i));
      h.guests.emplace_back(guests_.back(), "10.234.0." + std::to_string(2 + i));
    }
    sd::e2e::write_multi_guest_host(dir_, SD_SOURCE_DIR, h);
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
  json devices() {
    auto j = json::parse(ctl("devices --json").out, nullptr, false);
    if (j.is_discarded() || !j.contains("devices")) return json::array();
    return j["devices"];
  }
  // Every device serving, after `n` recoveries each.
  bool all_serving(int recoveries) {
    auto ds = devices();
    if (ds.size() != guests_.size()) return false;
    for (auto& d : ds)
      if (d.value("state", "") != "normal" || d.value("recoveries", -1) != recoveries ||
          !d.value("detail", json::object()).value("backend_up", false))
        return false;
    return true;
  }
  // The wire address each guest reaches, by guest netns, from `devices`.
  std::map<std::string, std::string> wire_addrs() {
    std::map<std::string, std::string> out;
    for (auto& d : devices()) {
      auto det = d.value("detail", json::object());
      auto a = det.value("wire_addr", "");
      out[det.value("guest_ns", "")] = a.substr(0, a.find('/'));
    }
    return out;
  }
  std::vector<json> events(const std::string& type) {
    std::vector<json> out;
    std::istringstream in(slurp(dir_ / "events.jsonl"));
    for (std::string line; std::getline(in, line);) {
      auto j = json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.value("type", "") == type) out.push_back(j);
    }
    return out;
  }
  CmdResult guest_ping(const std::string& guest, const std::string& addr, int count) {
    return run("ip netns exec " + guest + " ping -n -q -c " + std::to_string(count) + " -i 0.2 -W 1 " + addr);
  }

  // shadowd up, the driver domain running, every device serving and every
  // guest reaching its wire address.
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
    ASSERT_TRUE(wait_until([&] { return status().value("state", "") == "running"; }, 30s))
        << "shadowd log:\n" << tail(slurp(dir_ / "shadowd.log"));
    ASSERT_TRUE(wait_until([&] { return all_serving(0); }, 30s))
        << devices().dump() << "\n" << status().dump();
    auto addrs = wire_addrs();
    for (auto& g : guests_)
      ASSERT_TRUE(wait_until([&] { return guest_ping(g, addrs[g], 1).rc == 0; }, 10s))
          << g << " cannot reach its wire address " << addrs[g];
    std::printf("[ figure   ] %zu guests: shadowd start to every guest reaching the wire: %.0f ms\n", guests_.size(),
                ms_since(t0));
  }

  // Every guest pings its wire address every 10 ms while the driver domain is
  // killed `kills` times, 1 s apart; then every guest still pings.
  void pings_across_kills(int n, int kills) {
    write_host(n);
    start_shadowd();
    if (HasFatalFailure()) return;
    const int count = 100 * (kills + 1);  // 10 ms apart, one second past the last kill
    auto addrs = wire_addrs();
    for (auto& g : guests_)
      pings_.push_back(std::make_unique<sd::e2e::Background>(
          std::vector<std::string>{"ip", "netns", "exec", g, "ping", "-n", "-q", "-i", "0.01", "-W", "1", "-c",
                                   std::to_string(count), addrs[g]},
          dir_ / (g + ".ping")));
    auto t0 = Clock::now();
    for (int i = 0; i < kills; ++i) {
      std::this_thread::sleep_until(t0 + std::chrono::milliseconds(500 + 1000 * i));
      auto r = ctl("inject-fault " + dom_ + " kill");
      ASSERT_EQ(r.rc, 0) << r.out << r.err;
      ASSERT_TRUE(wait_until(
          [&] {
            auto s = status();
            return s.value("restarts", -1) == i + 1 && s.value("state", "") == "running" && all_serving(i + 1);
          },
          10s))
          << "kill " << i + 1 << " not recovered: " << status().dump() << "\n" << devices().dump();
    }
    for (auto& p : pings_) ASSERT_TRUE(p->wait_for(30s)) << "ping did not finish";

    auto recs = events("recovery");
    double max_outage = 0;
    std::string outages;
    for (auto& ev : recs) {
      double total = ev["phases_ms"].value("total", 0.0);
      max_outage = std::max(max_outage, total);
      char b[96];
      std::snprintf(b, sizeof(b), " %.1f (spawn %.1f replay %.1f resume %.1f)", total, ev["phases_ms"].value("spawn", 0.0),
                    ev["phases_ms"].value("replay", 0.0), ev["phases_ms"].value("resume", 0.0));
      outages += b;
    }
    std::printf("[ figure   ] %d guests, per-kill recovery of the driver domain (phases_ms.total), ms:%s\n", n,
                outages.c_str());
    EXPECT_EQ(recs.size(), static_cast<size_t>(kills));
    EXPECT_TRUE(events("domain_fenced").empty()) << slurp(dir_ / "events.jsonl");
    auto s = status();
    EXPECT_EQ(s.value("state", ""), "running") << s.dump();
    EXPECT_EQ(s.value("restarts", -1), kills) << s.dump();

    // Each guest loses at most what the outages explain (every 10 ms ping inside one).
    int bound = kills * (static_cast<int>(std::ceil(max_outage / 10.0)) + 1);
    int worst = 0;
    for (size_t i = 0; i < guests_.size(); ++i) {
      auto [sent, received] = ping_summary(pings_[i]->out());
      int lost = count - received;
      worst = std::max(worst, lost);
      EXPECT_GT(received, 0) << guests_[i] << ": " << pings_[i]->out();
      EXPECT_LE(lost, bound) << guests_[i] << ": losses not explained by the outages (max outage " << max_outage
                             << " ms): " << pings_[i]->out();
    }
    std::printf("[ figure   ] %d guests, ping -i 0.01 x %d each: worst guest lost %d (bound %d)\n", n, count, worst,
                bound);
    // And afterwards every guest still reaches the wire.
    for (auto& g : guests_) {
      auto r = guest_ping(g, addrs[g], 3);
      EXPECT_EQ(r.rc, 0) << g << " -> " << addrs[g] << ": " << r.out << r.err;
    }
  }

  fs::path dir_;
  std::string id_, dom_, wire_;
  std::vector<std::string> guests_;
  std::vector<std::unique_ptr<sd::e2e::Background>> pings_;
  pid_t pid_ = -1;
};

TEST_F(VifMultiGuestE2eTest, TwoGuestsOneNetdd_FiveKills_EveryGuestPings) { pings_across_kills(2, 5); }

TEST_F(VifMultiGuestE2eTest, FourGuestsOneNetdd_FiveKills_EveryGuestPings) { pings_across_kills(4, 5); }

TEST_F(VifMultiGuestE2eTest, SixteenGuestsOneNetdd_FiveKills_EveryGuestPings) { pings_across_kills(16, 5); }

}  // namespace
