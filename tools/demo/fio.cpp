// `shadowctl demo --classes vbd`: an unmodified fio per guest writes and
// verifies (crc32c) through that guest's disk (sd-blkfront: the vbd as a
// file in a FUSE file system), every disk the block driver domain serves at
// once, while faults are injected into that driver domain; the report gives,
// per fault, shadowd's recovery phases and the requests replayed, and per
// guest fio's exit codes, I/O and verify errors, and whether every request
// completed exactly once.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <regex>
#include <thread>

#include "faults.hpp"
#include "host.hpp"

namespace sd::tools::demo {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct FioPass {
  int rc = -1, error = -1;
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
                &why, log) &&
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
struct Disk : GuestDevice {
  using GuestDevice::GuestDevice;
  std::string vbd_sock;
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
  Progress pr;
  if (!can_run("it runs shadowd and mounts the guests' disks", {"fio"})) return 1;
  auto blkfront = find_frontend("sd-blkfront");
  if (!blkfront) return 1;
  ScratchRun run;
  if (!run.begin("vbd", sock, o.config, pr)) return 1;
  const fs::path work = run.dir();
  std::deque<Disk> disks;  // a Child does not move
  run.on_end = [&] {
    for (auto& d : disks) {
      d.front.stop(10);
      std::error_code ec;
      fs::remove(d.mnt, ec);  // empty once sd-blkfront unmounted it
    }
  };

  // ---- the disks and their driver domain.
  auto vbds = wait_devices(sock, "vbd", pr);
  if (vbds.empty()) return run.end(1);
  const std::string dom = vbds.front().value("backend", "");
  for (auto& v : vbds) {
    Disk& d = disks.emplace_back(v);
    d.vbd_sock = d.detail.value("socket", "");
    d.sectors = d.detail.value("sectors", uint64_t{0});
    d.mnt = work / ("mnt-" + fs::path(d.vbd_sock).stem().string());
    fs::create_directories(d.mnt);
  }
  FaultSchedule sched(sock, dom, o, pr, /*expand_garbage=*/true);
  std::string why;
  if (!sched.follow(&why)) return run.fail(why);

  // ---- each guest's disk: its sd-blkfront mounts it as a file.
  for (auto& d : disks)
    if (!d.front.start({blkfront->string(), "--socket", d.vbd_sock, "--mount", d.mnt.string()}, &why,
                       d.mnt.string() + ".front.log"))
      return run.fail("cannot start sd-blkfront for " + d.device + ": " + why);
  for (auto& d : disks) {
    auto connected = [&] {
      if (auto r = ask(sock, {{"cmd", "devices"}}))
        for (auto& x : (*r)["devices"])
          if (x.contains("detail") && x["detail"].value("socket", "") == d.vbd_sock)
            return x["detail"].value("backend_up", false) && x["detail"].value("frontend_connected", false);
      return false;
    };
    auto ready_by = Clock::now() + std::chrono::seconds(10);
    while (!(connected() && fs::exists(d.mnt / "disk"))) {
      if (Clock::now() > ready_by || d.front.poll_exit())
        return run.fail("sd-blkfront for " + d.device + " did not come up: " +
                        slurp(d.mnt.string() + ".front.log"));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    pr.note(strf("demo vbd: %s: fio randwrite+verify (crc32c, 4k, iodepth 16) on %s (%s)", d.guest.c_str(),
                 (d.mnt / "disk").c_str(), d.device.c_str()));
  }
  pr.note(strf("demo vbd: %zu disk(s) of driver domain %s for %ld s; %ld fault(s)", disks.size(), dom.c_str(),
               o.duration, o.faults));

  // ---- fio passes for `duration` seconds, one thread per disk; faults on this one.
  std::atomic<size_t> fio_done{0};
  std::atomic<bool> stop{false};
  const auto t0 = Clock::now();
  for (auto& d : disks) {
    const uint64_t pass_bytes = std::min<uint64_t>(256ULL << 20, d.sectors * 512 / 4096 * 4096);
    d.runner = std::thread([&d, &fio_done, &stop, t0, pass_bytes, duration = o.duration] {
      do d.passes.push_back(fio_pass(d.mnt / "disk", d.mnt.string() + ".fio", pass_bytes));
      while (Clock::now() - t0 < std::chrono::seconds(duration) && d.passes.back().rc == 0 && !stop);
      ++fio_done;
    });
  }
  sched.run(t0, "fio", [&] { return fio_done.load() == disks.size(); }, [&] { stop = true; });
  for (auto& d : disks) d.runner.join();
  const auto& faults = sched.faults;

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
  const size_t injected = std::ranges::count_if(faults, [](const Fault& f) { return f.at_s >= 0; });
  bool transparent = apps_ok && sched.recovered == injected && !sched.interrupted;
  auto replayed = [&](size_t i) { return faults[i].event.is_object() ? faults[i].event.value("replayed", 0u) : 0u; };

  FILE* out = table_stream(json_out);
  std::fprintf(out, "\ndemo vbd: fio 4k randwrite + crc32c verify, iodepth 16; driver domain %s\n", dom.c_str());
  for (auto& d : disks) std::fprintf(out, "  %s: through %s\n", d.guest.c_str(), d.device.c_str());
  sched.print_table(out, strf("  %8s", "replayed"), [&](size_t i) { return strf("  %8u", replayed(i)); });
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
  sched.print_notes(out);
  print_verdict(out, sched.recovered, injected, transparent,
                "every guest's fio passes exited 0 with 0 verify errors, every fault recovered");
  if (json_out) {
    json apps = json::array();
    for (auto& d : disks) {
      json jp = json::array();
      for (auto& p : d.passes)
        jp.push_back({{"exit", p.rc}, {"error", p.error}, {"written", p.written}, {"verified", p.verified},
                      {"verify_clean", p.verify_clean}, {"write_iops", p.write_iops}});
      apps.push_back({{"guest", d.guest}, {"device", d.device}, {"name", "fio"}, {"passes", jp},
                      {"written", d.written}, {"verified", d.verified},
                      {"requests", {{"submitted", d.submitted}, {"completed", d.completed}}}});
    }
    print_summary(sched.summary(apps, transparent, [&](size_t i, json& j) { j["replayed"] = replayed(i); }));
  }
  return run.end(transparent ? 0 : 1);
}

}  // namespace sd::tools::demo
