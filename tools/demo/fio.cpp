// `shadowctl demo --classes vbd`: an unmodified fio per guest writes and
// verifies (crc32c) through that guest's disk (sd-blkfront: the vbd as a
// file in a FUSE file system), every disk the block driver domain serves at
// once, while faults are injected into that driver domain; the report gives,
// per fault, shadowd's recovery phases and the requests replayed, and per
// guest fio's exit codes, I/O and verify errors, and whether every request
// completed exactly once.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <regex>
#include <thread>

#include "faults.hpp"
#include "host.hpp"
#include "process.hpp"
#include "report.hpp"
#include "workloads.hpp"

namespace sd::tools::demo {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct FioPass {
  int rc = -1;
  int error = -1;
  uint64_t written = 0, verified = 0;
  double write_iops = 0;
  bool verify_clean = false;
};

// One fio pass: 4 KiB random writes with crc32c, then every block read back
// and checked; iodepth 16 through libaio on the direct-I/O file. Its report
// and messages go to `files`.json and `files`.out.
FioPass fio_pass(const fs::path& disk, const fs::path& files, uint64_t bytes) {
  FioPass p;
  fs::path js = files.string() + ".json", log = files.string() + ".out";
  Child fio;
  std::string why;
  if (fio.start({"fio", "--name=vbd", "--filename=" + disk.string(), "--ioengine=libaio", "--direct=1", "--bs=4k",
                 "--iodepth=16", "--rw=randwrite", "--size=" + std::to_string(bytes), "--verify=crc32c",
                 "--fallocate=none", "--output-format=json", "--output=" + js.string(),
                 // a pass stopped at the end of the demo would leave its verify state in the caller's directory
                 "--verify_state_save=0"},
                {.file = log}, &why) &&
      !fio.wait_exit(600)) {
    ::kill(-fio.pid, SIGKILL);
    fio.wait_exit(5);
  }
  p.rc = fio.rc();
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

// One guest's disk: its frontend, the mounted file and fio's passes on it.
struct Disk {
  std::string guest, device, vbd_sock;
  uint64_t sectors = 0;
  fs::path mnt;
  Child front;
  std::vector<FioPass> passes;
  std::thread runner;
  uint64_t submitted = 0, completed = 0, written = 0, verified = 0;
  bool fio_ok = false, exactly_once = false;
};

}  // namespace

int run_fio(const std::string& sock, bool json_out, const Opts& o) {
  FILE* out = table_stream(json_out);
  Progress pr;
  if (!can_run("it runs shadowd and mounts the guests' disks", {"fio"})) return 1;
  auto blkfront = find_frontend("sd-blkfront");
  if (!blkfront) return 1;
  ScratchRun run;
  if (!run.begin("vbd", sock, o.config, pr)) return 1;
  const fs::path work = run.dir();
  std::deque<Disk> disks;  // a Child does not move
  auto finish = [&](int rc) {
    for (auto& d : disks) {
      d.front.stop(10);
      std::error_code ec;
      fs::remove(d.mnt, ec);  // empty once sd-blkfront unmounted it
    }
    return run.end(rc);
  };

  // ---- the disks and their driver domain.
  auto vbds = wait_devices(sock, "vbd", pr);
  if (vbds.empty()) return finish(1);
  const std::string dom = vbds.front().value("backend", "");
  for (auto& v : vbds) {
    Disk& d = disks.emplace_back();
    d.guest = guest_of(v);
    d.device = v.value("device", "");
    d.vbd_sock = v["detail"].value("socket", "");
    d.sectors = v["detail"].value("sectors", uint64_t{0});
    d.mnt = work / ("mnt-" + fs::path(d.vbd_sock).stem().string());
    fs::create_directories(d.mnt);
  }

  // ---- each guest's disk: its sd-blkfront mounts it as a file.
  for (auto& d : disks) {
    std::string why;
    if (!d.front.start({blkfront->string(), "--socket", d.vbd_sock, "--mount", d.mnt.string()},
                       {.file = d.mnt.string() + ".front.log"}, &why)) {
      pr.note("shadowctl: demo: cannot start sd-blkfront for " + d.device + ": " + why);
      return finish(1);
    }
  }
  for (auto& d : disks) {
    auto connected = [&](const json& detail) {
      return detail.value("frontend_connected", false) && detail.value("socket", "") == d.vbd_sock;
    };
    auto ready_by = Clock::now() + std::chrono::seconds(10);
    while (!(find_device(sock, "vbd", connected) && fs::exists(d.mnt / "disk"))) {
      if (Clock::now() > ready_by || d.front.poll_exit()) {
        pr.note("shadowctl: demo: sd-blkfront for " + d.device + " did not come up: " +
                slurp(d.mnt.string() + ".front.log"));
        return finish(1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    pr.note(strf("demo vbd: %s: fio randwrite+verify (crc32c, 4k, iodepth 16) on %s (%s)", d.guest.c_str(),
                 (d.mnt / "disk").c_str(), d.device.c_str()));
  }
  pr.note(strf("demo vbd: %zu disk(s) of driver domain %s for %ld s; %ld fault(s)", disks.size(), dom.c_str(),
               o.duration, o.faults));

  // ---- fio passes for `duration` seconds, one thread per disk; faults on this one.
  std::atomic<size_t> fio_done{0};
  auto t0 = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  for (auto& d : disks) {
    const uint64_t pass_bytes = std::min<uint64_t>(256ULL << 20, d.sectors * 512 / 4096 * 4096);
    d.runner = std::thread([&d, &fio_done, &elapsed, pass_bytes, duration = o.duration] {
      do d.passes.push_back(fio_pass(d.mnt / "disk", d.mnt.string() + ".fio", pass_bytes));
      while (elapsed() < static_cast<double>(duration) && d.passes.back().rc == 0);
      ++fio_done;
    });
  }
  PolledSchedule schedule = polled_schedule(sock, dom, o);
  schedule.expand_garbage = true;
  schedule.elapsed = elapsed;
  schedule.app_done = [&] { return fio_done.load() == disks.size(); };
  auto faults = run_polled_faults(schedule, pr);
  for (auto& d : disks) d.runner.join();

  // ---- each frontend's own count: every request completed exactly once.
  bool apps_ok = true;
  for (auto& d : disks) {
    ::kill(d.front.pid, SIGTERM);
    int front_rc = d.front.wait_exit(10) ? d.front.rc() : -1;
    std::smatch m;
    std::string flog = slurp(d.mnt.string() + ".front.log");
    if (std::regex_search(flog, m, std::regex("submitted (\\d+) completed (\\d+)"))) {
      d.submitted = std::stoull(m[1]);
      d.completed = std::stoull(m[2]);
    }
    d.fio_ok = !d.passes.empty();
    for (auto& p : d.passes) {
      d.fio_ok = d.fio_ok && p.rc == 0 && p.error == 0 && p.verify_clean && p.verified >= p.written;
      d.written += p.written;
      d.verified += p.verified;
    }
    d.exactly_once = front_rc == 0 && d.submitted > 0 && d.submitted == d.completed;
    apps_ok = apps_ok && d.fio_ok && d.exactly_once;
  }

  size_t recovered = 0, injected = 0;
  for (auto& f : faults) {
    recovered += f.recovered;
    injected += f.at_s >= 0;
  }
  bool transparent = apps_ok && recovered == injected;

  std::fprintf(out, "\ndemo vbd: fio 4k randwrite + crc32c verify, iodepth 16; driver domain %s\n", dom.c_str());
  for (auto& d : disks) std::fprintf(out, "  %s: through %s\n", d.guest.c_str(), d.device.c_str());
  std::fprintf(out, "\n%s  %8s  %s\n", phases_head().c_str(), "replayed", "cause as detected");
  for (size_t i = 0; i < faults.size(); ++i) {
    const auto& f = faults[i];
    std::fprintf(out, "%s  %8u  %s\n", phases_row(i + 1, f.kind, strf("%.2f", f.at_s), f.phases).c_str(),
                 f.event.is_object() ? f.event.value("replayed", 0u) : 0u, f.cause.empty() ? "-" : f.cause.c_str());
  }
  std::fprintf(out,
               "     replayed: requests in flight at the fault that the frontends resubmitted, in order (all disks)\n\n");
  for (auto& d : disks) {
    for (size_t i = 0; i < d.passes.size(); ++i) {
      const FioPass& p = d.passes[i];
      std::fprintf(out, "fio %s pass %zu: exit %d, error %d, %llu MiB written, %llu MiB read back and verified, %s, "
                   "%.0f write IOPS\n", d.guest.c_str(), i + 1, p.rc, p.error,
                   static_cast<unsigned long long>(p.written >> 20), static_cast<unsigned long long>(p.verified >> 20),
                   p.verify_clean ? "0 verify errors" : "VERIFY ERRORS", p.write_iops);
    }
    std::fprintf(out, "frontend %s: %llu requests submitted, %llu completed (each exactly once: %s)\n",
                 d.guest.c_str(), static_cast<unsigned long long>(d.submitted),
                 static_cast<unsigned long long>(d.completed), d.exactly_once ? "yes" : "NO");
  }
  print_verdict(out, recovered, injected, transparent,
                "every guest's fio passes exited 0 with 0 verify errors, every fault recovered");
  if (json_out) {
    json jf = json::array(), apps = json::array();
    for (auto& f : faults)
      jf.push_back({{"kind", f.kind}, {"at_s", f.at_s}, {"recovered", f.recovered}, {"cause", f.cause},
                    {"phases_ms", f.phases}, {"replayed", f.event.is_object() ? f.event.value("replayed", 0u) : 0u}});
    for (auto& d : disks) {
      json jp = json::array();
      for (auto& p : d.passes)
        jp.push_back({{"exit", p.rc}, {"error", p.error}, {"written", p.written}, {"verified", p.verified},
                      {"verify_clean", p.verify_clean}, {"write_iops", p.write_iops}});
      apps.push_back({{"guest", d.guest},
                      {"device", d.device},
                      {"name", "fio"},
                      {"passes", jp},
                      {"written", d.written},
                      {"verified", d.verified},
                      {"requests", {{"submitted", d.submitted}, {"completed", d.completed}}}});
    }
    print_summary(summary(json::array({"vbd"}), o.duration, dom, jf, apps, recovered, transparent));
  }
  return finish(transparent ? 0 : 1);
}

}  // namespace sd::tools::demo
