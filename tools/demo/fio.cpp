// `shadowctl demo --classes vbd`: an unmodified fio writes and verifies
// (crc32c) through the guest's disk (sd-blkfront: the vbd as a file in a
// FUSE file system) while faults are injected into the block driver domain;
// the report gives, per fault, shadowd's recovery phases and the requests
// replayed, and for the application fio's exit codes, I/O and verify errors,
// and whether every request completed exactly once.
#include <signal.h>
#include <unistd.h>

#include <atomic>
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
// and checked; iodepth 16 through libaio on the direct-I/O file.
FioPass fio_pass(const fs::path& disk, const fs::path& work, uint64_t bytes) {
  FioPass p;
  fs::path js = work / "fio.json", log = work / "fio.out";
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

}  // namespace

int run_fio(const std::string& sock, bool json_out, const Opts& o) {
  FILE* out = table_stream(json_out);
  Progress pr;
  if (!can_run("it runs shadowd and mounts the guest's disk", {"fio"})) return 1;
  auto blkfront = find_frontend("sd-blkfront");
  if (!blkfront) return 1;
  ScratchRun run;
  if (!run.begin("vbd", sock, o.config, pr)) return 1;
  const fs::path work = run.dir();
  fs::create_directories(work / "mnt");
  Child front;
  auto finish = [&](int rc) {
    front.stop(10);
    std::error_code ec;
    fs::remove(work / "mnt", ec);  // empty once sd-blkfront unmounted it
    return run.end(rc);
  };

  // ---- the vbd and its driver domain.
  auto vbd = wait_device(sock, "vbd", pr);
  if (!vbd) return finish(1);
  const std::string dom = vbd->value("backend", ""), dev = vbd->value("device", "");
  const std::string vbd_sock = (*vbd)["detail"].value("socket", "");
  const uint64_t sectors = (*vbd)["detail"].value("sectors", uint64_t{0});

  // ---- the guest's disk: sd-blkfront mounts it as a file.
  std::string why;
  if (!front.start({blkfront->string(), "--socket", vbd_sock, "--mount", (work / "mnt").string()},
                   {.file = work / "front.log"}, &why)) {
    pr.note("shadowctl: demo: cannot start sd-blkfront: " + why);
    return finish(1);
  }
  fs::path disk = work / "mnt" / "disk";
  auto connected = [](const json& detail) { return detail.value("frontend_connected", false); };
  auto ready_by = Clock::now() + std::chrono::seconds(10);
  while (!(find_device(sock, "vbd", connected) && fs::exists(disk))) {
    if (Clock::now() > ready_by || front.poll_exit()) {
      pr.note("shadowctl: demo: sd-blkfront did not come up: " + slurp(work / "front.log"));
      return finish(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const uint64_t pass_bytes = std::min<uint64_t>(256ULL << 20, sectors * 512 / 4096 * 4096);
  pr.note(strf("demo vbd: fio randwrite+verify (crc32c, 4k, iodepth 16) on %s (%s, driver domain %s) for %ld s; "
               "%ld fault(s)",
               disk.c_str(), dev.c_str(), dom.c_str(), o.duration, o.faults));

  // ---- fio passes for `duration` seconds on a thread; faults on this one.
  std::vector<FioPass> passes;
  std::atomic<bool> fio_done{false};
  auto t0 = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  std::thread runner([&] {
    do passes.push_back(fio_pass(disk, work, pass_bytes));
    while (elapsed() < static_cast<double>(o.duration) && passes.back().rc == 0);
    fio_done = true;
  });
  auto faults = run_polled_faults({.sock = sock,
                                   .domain = dom,
                                   .label = "demo vbd",
                                   .n = o.faults,
                                   .duration_s = o.duration,
                                   .kinds = o.kinds,
                                   .expand_garbage = true,
                                   .elapsed = elapsed,
                                   .app_done = [&] { return fio_done.load(); }},
                                  pr);
  runner.join();

  // ---- the frontend's own count: every request completed exactly once.
  ::kill(front.pid, SIGTERM);
  int front_rc = front.wait_exit(10) ? front.rc() : -1;
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
  std::fprintf(out, "%s  %8s  %s\n", phases_head().c_str(), "replayed", "cause as detected");
  for (size_t i = 0; i < faults.size(); ++i) {
    const auto& f = faults[i];
    std::fprintf(out, "%s  %8u  %s\n", phases_row(i + 1, f.kind, strf("%.2f", f.at_s), f.phases).c_str(),
                 f.event.is_object() ? f.event.value("replayed", 0u) : 0u, f.cause.empty() ? "-" : f.cause.c_str());
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
  print_verdict(out, recovered, injected, transparent,
                "every fio pass exited 0 with 0 verify errors, every fault recovered");
  if (json_out) {
    json jf = json::array(), jp = json::array();
    for (auto& f : faults)
      jf.push_back({{"kind", f.kind}, {"at_s", f.at_s}, {"recovered", f.recovered}, {"cause", f.cause},
                    {"phases_ms", f.phases}, {"replayed", f.event.is_object() ? f.event.value("replayed", 0u) : 0u}});
    for (auto& p : passes)
      jp.push_back({{"exit", p.rc}, {"error", p.error}, {"written", p.written}, {"verified", p.verified},
                    {"verify_clean", p.verify_clean}, {"write_iops", p.write_iops}});
    json s = summary(json::array({"vbd"}), o.duration, dev, dom, jf,
                     {{"name", "fio"}, {"passes", jp}, {"written", written}, {"verified", verified}}, recovered,
                     transparent);
    s["requests"] = {{"submitted", submitted}, {"completed", completed}};
    print_summary(s);
  }
  return finish(transparent ? 0 : 1);
}

}  // namespace sd::tools::demo
