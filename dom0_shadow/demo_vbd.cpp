// `shadowctl demo --classes vbd`: an unmodified fio writes and verifies
// (crc32c) through the guest's disk (sd-blkfront: the vbd as a file in a
// FUSE file system) while faults are injected into the block driver domain;
// the report gives, per fault, shadowd's recovery phases and the requests
// replayed, and for the application fio's exit codes, I/O and verify errors,
// and whether every request completed exactly once.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "demo.hpp"
#include "demo_util.hpp"

namespace sd::shadowctl {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace demo;

namespace {

struct VbdFault {
  std::string kind, cause;
  double at_s = -1;
  bool recovered = false;
  unsigned replayed = 0;
  json phases = nullptr;
};

struct FioPass {
  int rc = -1;
  int error = -1;
  uint64_t written = 0, verified = 0;
  double write_iops = 0;
  bool verify_clean = false;
};

// One fio pass: 4 KiB random writes with crc32c, then every block read back
// and checked; iodepth 16 through libaio on the direct-I/O file.
FioPass fio_pass(const fs::path& disk, const fs::path& work, uint64_t bytes) {
  FioPass p;
  fs::path js = work / "fio.json", log = work / "fio.out";
  pid_t pid = spawn({"fio", "--name=vbd", "--filename=" + disk.string(), "--ioengine=libaio", "--direct=1",
                     "--bs=4k", "--iodepth=16", "--rw=randwrite", "--size=" + std::to_string(bytes),
                     "--verify=crc32c", "--fallocate=none", "--output-format=json", "--output=" + js.string(),
                     // a pass stopped at the end of the demo would leave its verify state in the caller's directory
                     "--verify_state_save=0"},
                    log);
  p.rc = wait_exit(pid, 600);
  if (p.rc < 0) {
    ::kill(-pid, SIGKILL);
    p.rc = wait_exit(pid, 5);
  }
  auto j = json::parse(slurp(js), nullptr, false);
  std::string out = slurp(log);
  p.verify_clean = out.find("verify:") == std::string::npos && out.find("bad magic") == std::string::npos;
  if (!j.is_discarded() && j.contains("jobs") && !j["jobs"].empty()) {
    const auto& job = j["jobs"][0];
    p.error = job.value("error", -1);
    p.written = job["write"].value("io_bytes", uint64_t{0});
    p.verified = job["read"].value("io_bytes", uint64_t{0});
    p.write_iops = job["write"].value("iops", 0.0);
  }
  return p;
}

}  // namespace

int demo_vbd(const std::string& sock, bool json_out, long duration, long nfaults,
             const std::vector<std::string>& kinds, const std::string& config) {
  FILE* out = json_out ? stderr : stdout;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "shadowctl: demo: needs root (it runs shadowd and mounts the guest's disk)\n");
    return 1;
  }
  if (std::system("command -v fio >/dev/null 2>&1") != 0) {
    std::fprintf(stderr, "shadowctl: demo: fio not found in PATH (scripts/deps.sh installs it)\n");
    return 1;
  }
  auto dir = self_dir();
  auto blkfront = first_existing({dir / "sd-blkfront", dir / ".." / "frontends" / "sd-blkfront"});
  if (!blkfront) {
    std::fprintf(stderr, "shadowctl: demo: sd-blkfront not found next to shadowctl\n");
    return 1;
  }
  char tmpl[] = "/tmp/shadowctl-demo-vbd-XXXXXX";
  if (!::mkdtemp(tmpl)) return 1;
  fs::path work = tmpl;
  fs::create_directories(work / "mnt");

  OwnShadowd own;
  std::string why;
  if (!own.start(sock, config, work / "shadowd.log", &why)) {
    std::fprintf(stderr, "shadowctl: demo: %s\n", why.c_str());
    return 1;
  }
  pid_t front = -1;
  auto finish = [&](int rc) {
    if (front > 0) {
      ::kill(front, SIGTERM);
      if (wait_exit(front, 10) < 0) {
        ::kill(front, SIGKILL);
        (void)wait_exit(front, 5);
      }
    }
    std::error_code ec;
    fs::remove(work / "mnt", ec);  // empty once sd-blkfront unmounted it
    own.stop(sock);
    if (rc == 0) fs::remove_all(work, ec);
    return rc;
  };

  // ---- the vbd and its driver domain.
  std::string dom, dev, vbd_sock;
  uint64_t sectors = 0;
  auto find_vbd = [&](bool need_frontend) {
    auto d = ask(sock, {{"cmd", "devices"}});
    if (d)
      for (auto& x : (*d)["devices"])
        if (x.value("class", "") == "vbd" && x.contains("detail") && x["detail"].value("backend_up", false) &&
            (!need_frontend || x["detail"].value("frontend_connected", false))) {
          dom = x.value("backend", "");
          dev = x.value("device", "");
          vbd_sock = x["detail"].value("socket", "");
          sectors = x["detail"].value("sectors", uint64_t{0});
          return true;
        }
    return false;
  };
  auto ready_by = Clock::now() + std::chrono::seconds(30);
  while (!find_vbd(false)) {
    if (Clock::now() > ready_by) {
      std::fprintf(stderr, "shadowctl: demo: no vbd device with its driver domain up at %s after 30 s\n", sock.c_str());
      return finish(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // ---- the guest's disk: sd-blkfront mounts it as a file.
  front = spawn({blkfront->string(), "--socket", vbd_sock, "--mount", (work / "mnt").string()}, work / "front.log");
  fs::path disk = work / "mnt" / "disk";
  ready_by = Clock::now() + std::chrono::seconds(10);
  while (!(find_vbd(true) && fs::exists(disk))) {
    if (Clock::now() > ready_by || wait_exit(front, 0) >= 0) {
      std::fprintf(stderr, "shadowctl: demo: sd-blkfront did not come up: %s\n", slurp(work / "front.log").c_str());
      return finish(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const uint64_t pass_bytes = std::min<uint64_t>(256ULL << 20, sectors * 512 / 4096 * 4096);
  std::fprintf(stderr,
               "demo vbd: fio randwrite+verify (crc32c, 4k, iodepth 16) on %s (%s, driver domain %s) for %ld s; "
               "%ld fault(s)\n",
               disk.c_str(), dev.c_str(), dom.c_str(), duration, nfaults);

  // ---- fio passes for `duration` seconds on a thread; faults on this one.
  std::vector<FioPass> passes;
  std::atomic<bool> fio_done{false};
  auto t0 = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  std::thread runner([&] {
    do passes.push_back(fio_pass(disk, work, pass_bytes));
    while (elapsed() < static_cast<double>(duration) && passes.back().rc == 0);
    fio_done = true;
  });
  auto restarts = [&] {
    auto s = ask(sock, {{"cmd", "status"}, {"domain", dom}});
    return s ? (*s)["domains"][0].value("restarts", uint64_t{0}) : uint64_t{0};
  };
  uint64_t restarts0 = restarts();
  std::vector<VbdFault> faults(static_cast<size_t>(nfaults));
  for (size_t i = 0; i < faults.size(); ++i) {
    VbdFault& f = faults[i];
    f.kind = kinds[i % kinds.size()];
    if (f.kind == "garbage") {
      static const char* const kGarbage[] = {"bad-id", "bad-prod", "bad-grant"};
      f.kind = kGarbage[i % 3];
    }
    double when = static_cast<double>(i + 1) * static_cast<double>(duration) / static_cast<double>(nfaults + 1);
    while (elapsed() < when && !fio_done) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (fio_done) break;
    f.at_s = elapsed();
    if (!ask(sock, {{"cmd", "inject-fault"}, {"domain", dom}, {"kind", f.kind}}, &why)) {
      f.cause = "not injected: " + why;
      continue;
    }
    auto until = Clock::now() + std::chrono::seconds(20);
    while (restarts() < restarts0 + i + 1 && Clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the recovery event follows the restart
    if (auto ev = ask(sock, {{"cmd", "events"}, {"n", 200}}))
      for (auto& e : (*ev)["events"])
        if (e.value("type", "") == "recovery" && e.value("domain", "") == dom) {
          f.recovered = restarts() >= restarts0 + i + 1;
          f.cause = e.value("cause", "");
          f.phases = e["phases_ms"];
          f.replayed = e.value("replayed", 0u);
        }
    std::fprintf(stderr, "demo vbd: %.1f s: fault %zu (%s): %s\n", f.at_s, i + 1, f.kind.c_str(),
                 f.recovered ? f.cause.c_str() : "no recovery seen");
  }
  runner.join();

  // ---- the frontend's own count: every request completed exactly once.
  ::kill(front, SIGTERM);
  int front_rc = wait_exit(front, 10);
  front = front_rc < 0 ? front : -1;
  std::smatch m;
  std::string flog = slurp(work / "front.log");
  uint64_t submitted = 0, completed = 0;
  if (std::regex_search(flog, m, std::regex("submitted (\\d+) completed (\\d+)"))) {
    submitted = std::stoull(m[1]);
    completed = std::stoull(m[2]);
  }

  size_t recovered = 0, injected = 0;
  for (auto& f : faults) {
    recovered += f.recovered;
    injected += f.at_s >= 0;
  }
  bool fio_ok = !passes.empty();
  uint64_t written = 0, verified = 0;
  for (auto& p : passes) {
    fio_ok = fio_ok && p.rc == 0 && p.error == 0 && p.verify_clean && p.verified >= p.written;
    written += p.written;
    verified += p.verified;
  }
  bool exactly_once = front_rc == 0 && submitted > 0 && submitted == completed;
  bool transparent = fio_ok && exactly_once && recovered == injected;

  std::fprintf(out, "\ndemo vbd: fio 4k randwrite + crc32c verify, iodepth 16, through %s; driver domain %s\n\n",
               dev.c_str(), dom.c_str());
  std::fprintf(out, "%3s  %-9s %6s  %8s %8s %8s %8s %8s  %8s  %s\n", "#", "kind", "at s", "detect", "spawn", "replay",
               "resume", "total", "replayed", "cause as detected");
  auto ph = [](const json& p, const char* k) {
    char b[32];
    if (!p.is_object() || !p.contains(k) || !p[k].is_number()) return std::string("-");
    std::snprintf(b, sizeof(b), "%.2f", p[k].get<double>());
    return std::string(b);
  };
  for (size_t i = 0; i < faults.size(); ++i) {
    const auto& f = faults[i];
    std::fprintf(out, "%3zu  %-9s %6.2f  %8s %8s %8s %8s %8s  %8u  %s\n", i + 1, f.kind.c_str(), f.at_s,
                 ph(f.phases, "detect").c_str(), ph(f.phases, "spawn").c_str(), ph(f.phases, "replay").c_str(),
                 ph(f.phases, "resume").c_str(), ph(f.phases, "total").c_str(), f.replayed,
                 f.cause.empty() ? "-" : f.cause.c_str());
  }
  std::fprintf(out, "     replayed: requests in flight at the fault that the frontend resubmitted, in order\n\n");
  for (size_t i = 0; i < passes.size(); ++i)
    std::fprintf(out, "fio pass %zu: exit %d, error %d, %llu MiB written, %llu MiB read back and verified, %s, "
                 "%.0f write IOPS\n", i + 1, passes[i].rc, passes[i].error,
                 static_cast<unsigned long long>(passes[i].written >> 20),
                 static_cast<unsigned long long>(passes[i].verified >> 20),
                 passes[i].verify_clean ? "0 verify errors" : "VERIFY ERRORS", passes[i].write_iops);
  std::fprintf(out, "frontend: %llu requests submitted, %llu completed (each exactly once: %s)\n",
               static_cast<unsigned long long>(submitted), static_cast<unsigned long long>(completed),
               exactly_once ? "yes" : "NO");
  std::fprintf(out, "recovered %zu/%zu faults; transparent: %s\n", recovered, injected,
               transparent ? "yes (every fio pass exited 0 with 0 verify errors, every fault recovered)" : "NO");
  if (json_out) {
    json jf = json::array(), jp = json::array();
    for (auto& f : faults)
      jf.push_back({{"kind", f.kind}, {"at_s", f.at_s}, {"recovered", f.recovered}, {"cause", f.cause},
                    {"phases_ms", f.phases}, {"replayed", f.replayed}});
    for (auto& p : passes)
      jp.push_back({{"exit", p.rc}, {"error", p.error}, {"written", p.written}, {"verified", p.verified},
                    {"verify_clean", p.verify_clean}, {"write_iops", p.write_iops}});
    json summary{{"classes", {"vbd"}},
                 {"duration_s", duration},
                 {"device", dev},
                 {"domain", dom},
                 {"faults", jf},
                 {"app", {{"name", "fio"}, {"passes", jp}, {"written", written}, {"verified", verified}}},
                 {"requests", {{"submitted", submitted}, {"completed", completed}}},
                 {"recovered", recovered},
                 {"transparent", transparent}};
    std::printf("%s\n", summary.dump().c_str());
  }
  return finish(transparent ? 0 : 1);
}

}  // namespace sd::shadowctl
