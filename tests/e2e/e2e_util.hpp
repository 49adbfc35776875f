// Helpers shared by the end-to-end tests: run a command, read a file, wait
// (bounded) for a condition, programs in the background, host files, shadowd
// and what it and the applications report (events, fio, sd-blkfront, the
// virtual DAC's recording).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <signal.h>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sd/core/pcm_marks.hpp"

namespace sd::e2e {

// Every e2e test starts shadowd, which sandboxes its driver domains
// (namespaces, mounts, netns): without root they are skipped with the
// reason, not failed one by one.
class NeedsRoot : public ::testing::Environment {
 public:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the end-to-end tests need root (shadowd's sandboxes and netns)";
  }
};
inline ::testing::Environment* const kNeedsRoot = ::testing::AddGlobalTestEnvironment(new NeedsRoot);

struct CmdResult {
  int rc = -1;
  std::string out, err;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Field `n` of /proc/PID/stat as proc(5) numbers them (3 = state, 19 =
// nice), read after the command name (which may hold spaces); "" if absent.
inline std::string proc_stat_field(int pid, int n) {
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return {};
  std::istringstream fields(stat.substr(close + 2));  // from field 3 on
  std::string f;
  for (int i = 3; i <= n; ++i)
    if (!(fields >> f)) return {};
  return f;
}

// Runs a short command through the shell, killed after 20 s so no test hangs.
inline CmdResult run(const std::string& cmd) {
  char errf[] = "/tmp/sd-e2e-err-XXXXXX";
  int efd = ::mkstemp(errf);
  if (efd >= 0) ::close(efd);
  CmdResult r;
  FILE* p = ::popen(("timeout -s KILL 20 " + cmd + " 2>" + errf).c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) r.out.append(buf, n);
  int st = ::pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.err = slurp(errf);
  ::unlink(errf);
  return r;
}

// Polls `pred` every 20 ms until it holds or `timeout` passes.
inline bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// A program running in the background (argv, no shell), stderr to `out`
// and stdout too unless `stdout_to` names another file. Killed (SIGKILL) and
// reaped by the destructor if still running.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const std::filesystem::path& out,
             const std::filesystem::path& stdout_to = {})
      : out_(out) {
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      if (!std::freopen(out.c_str(), "w", stderr)) _exit(126);
      if (!std::freopen(stdout_to.empty() ? out.c_str() : stdout_to.c_str(), stdout_to.empty() ? "a" : "w", stdout))
        _exit(126);
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      ::execvp(a[0], a.data());
      _exit(127);
    }
  }
  ~Background() {
    if (pid_ > 0 && !done_) {
      ::kill(pid_, SIGKILL);
      reap(0);
    }
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  bool running() {
    if (!done_ && pid_ > 0) reap(WNOHANG);
    return !done_ && pid_ > 0;
  }
  bool wait_for(std::chrono::milliseconds t) {
    return wait_until([&] { return !running(); }, t);
  }
  void signal(int sig) {
    if (running()) ::kill(pid_, sig);
  }
  int rc() const { return rc_; }  // exit code, or 128 + signal
  std::string out() const { return slurp(out_); }

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
  std::filesystem::path out_;
};

// One guest of a host file: its name and its device lines, as an operator
// writes them in its xl cfg (`vif = [ ... ]`, `disk = [ ... ]`, `vsnd = [[ ... ]]`).
struct GuestCfg {
  std::string name;
  std::vector<std::string> devices;
};

// A host file in `dir` (host.yaml) on the local platform: the driver domains
// named `domains` (dd1.cfg, dd2.cfg, ...), the guests (guest1.cfg, ...), the
// control socket `dir`/sd.sock, state in `dir`/state, the event log
// `dir`/events.jsonl, `extra` appended as host.yaml lines, and the shipped
// policies copied to `dir`/policies (so a test may edit them).
inline void write_host(const std::filesystem::path& dir, const std::filesystem::path& source_dir,
                       const std::vector<std::string>& domains, const std::vector<GuestCfg>& guests,
                       const std::string& extra = "") {
  namespace fs = std::filesystem;
  fs::create_directories(dir / "policies");
  for (auto cls : {"vif", "vsnd", "vbd"})
    fs::copy_file(source_dir / "config/policies" / (std::string(cls) + ".yaml"),
                  dir / "policies" / (std::string(cls) + ".yaml"), fs::copy_options::overwrite_existing);
  std::string dom_files, guest_files;
  for (size_t i = 0; i < domains.size(); ++i) {
    std::string file = "dd" + std::to_string(i + 1) + ".cfg";
    std::ofstream(dir / file) << "name = \"" << domains[i] << "\"\ndriver_domain = 1\nmemory = 128\nvcpus = 1\n";
    dom_files += (i ? ", " : "") + file;
  }
  for (size_t i = 0; i < guests.size(); ++i) {
    std::string file = "guest" + std::to_string(i + 1) + ".cfg";
    std::ofstream cfg(dir / file);
    cfg << "name = \"" << guests[i].name << "\"\nmemory = 256\nvcpus = 1\n";
    for (const auto& d : guests[i].devices) cfg << d << "\n";
    guest_files += (i ? ", " : "") + file;
  }
  std::ofstream(dir / "host.yaml") << "platform: local\n"
                                   << "policy_dir: policies\n"
                                   << "control_socket: " << (dir / "sd.sock").string() << "\n"
                                   << "state_dir: " << (dir / "state").string() << "\n"
                                   << "event_log: " << (dir / "events.jsonl").string() << "\n"
                                   << extra << "domains: [" << dom_files << "]\n"
                                   << "guests: [" << guest_files << "]\n";
}

// The vif line of a guest's cfg: on driver domain `dom`, the n-th MAC of
// Xen's range (00:16:3e:5d:00:01 for 1), address `ip`.
inline std::string vif_line(const std::string& dom, size_t n, const std::string& ip) {
  char mac[32];
  std::snprintf(mac, sizeof(mac), "00:16:3e:5d:%02zx:%02zx", n >> 8, n & 0xff);
  return "vif = [ 'backend=" + dom + ",mac=" + mac + ",ip=" + ip + "' ]";
}

// A host config in `dir` with one driver domain `dom` and one guest `guest`
// whose vif (address `guest_ip`) it backs, and the wire netns `wire`
// (write_host's files and paths).
struct PrivateHost {
  std::string dom, guest, wire, guest_ip;
};

inline void write_private_host(const std::filesystem::path& dir, const std::filesystem::path& source_dir,
                               const PrivateHost& h) {
  write_host(dir, source_dir, {h.dom}, {{h.guest, {vif_line(h.dom, 1, h.guest_ip)}}}, "wire_netns: " + h.wire + "\n");
}

// A host config in `dir` like write_private_host's, with one vif guest per
// entry of `guests` (name, address), every vif on the one driver domain `dom`.
struct MultiGuestHost {
  std::string dom, wire;
  std::vector<std::pair<std::string, std::string>> guests;  // name, vif ip=
};

inline void write_multi_guest_host(const std::filesystem::path& dir, const std::filesystem::path& source_dir,
                                   const MultiGuestHost& h) {
  std::vector<GuestCfg> guests;
  for (size_t i = 0; i < h.guests.size(); ++i)
    guests.push_back({h.guests[i].first, {vif_line(h.dom, i + 1, h.guests[i].second)}});
  write_host(dir, source_dir, {h.dom}, guests, "wire_netns: " + h.wire + "\n");
}

// Every line of the JSON event log `log` whose "type" is `type` (every
// line if `type` is empty).
inline std::vector<nlohmann::json> read_events(const std::filesystem::path& log, const std::string& type = "") {
  std::vector<nlohmann::json> out;
  std::istringstream in(slurp(log));
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && (type.empty() || j.value("type", "") == type)) out.push_back(j);
  }
  return out;
}

// shadowd on the host file `dir`/host.yaml (write_host's layout): its output
// in `dir`/shadowd.log, asked through `shadowctl` on `dir`/sd.sock, its
// events read from `dir`/events.jsonl. SIGKILLed by the destructor if still
// running (stop() first to see it exit).
class Shadowd {
 public:
  Shadowd(std::filesystem::path dir, std::string shadowd, std::string shadowctl)
      : dir_(std::move(dir)), shadowd_(std::move(shadowd)), shadowctl_(std::move(shadowctl)) {}
  // Starts it: --config HOST then `args` (--drvdom PATH, ...).
  void start(const std::vector<std::string>& args) {
    std::vector<std::string> argv{shadowd_, "--config", (dir_ / "host.yaml").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    proc_ = std::make_unique<Background>(argv, dir_ / "shadowd.log");
  }
  bool running() { return proc_ && proc_->running(); }
  // SIGTERM, then waits up to `t` for it to exit; its exit code (-1: still
  // running, or never started).
  int stop(std::chrono::milliseconds t = std::chrono::seconds(20)) {
    if (!proc_) return -1;
    proc_->signal(SIGTERM);
    return proc_->wait_for(t) ? proc_->rc() : -1;
  }
  std::string log() const { return slurp(dir_ / "shadowd.log"); }

  CmdResult ctl(const std::string& args) const {
    return run(shadowctl_ + " --socket " + (dir_ / "sd.sock").string() + " " + args);
  }
  // `shadowctl devices --json`'s devices; [] while none answers.
  nlohmann::json devices() const {
    auto j = nlohmann::json::parse(ctl("devices --json").out, nullptr, false);
    if (j.is_discarded() || !j.contains("devices")) return nlohmann::json::array();
    return j["devices"];
  }
  // The driver domain's entry of `shadowctl status DOM --json`; {} while none answers.
  nlohmann::json status(const std::string& dom) const {
    auto r = ctl("status " + dom + " --json");
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    if (r.rc != 0 || j.is_discarded() || !j.contains("domains") || j["domains"].empty()) return nlohmann::json::object();
    return j["domains"][0];
  }
  std::vector<nlohmann::json> events(const std::string& type = "") const {
    return read_events(dir_ / "events.jsonl", type);
  }

 private:
  std::filesystem::path dir_;
  std::string shadowd_, shadowctl_;
  std::unique_ptr<Background> proc_;
};

// One "[ figure ]" line per recovery event: its cause, phases (devices:
// Ready to the last device serving) and the requests replayed.
inline void print_recoveries(const std::vector<nlohmann::json>& recoveries) {
  for (const auto& e : recoveries) {
    auto ph = e.value("phases_ms", nlohmann::json::object());
    std::printf("[ figure   ] recovery (%s): total %.2f ms (detect %.2f spawn %.2f, then all devices %.2f: "
                "slowest replay %.2f resume %.2f), %u requests replayed\n",
                e.value("cause", "").c_str(), ph.value("total", -1.0), ph.value("detect", -1.0),
                ph.value("spawn", -1.0), ph.value("devices", -1.0), ph.value("replay", -1.0), ph.value("resume", -1.0),
                e.value("replayed", 0u));
  }
}

inline std::string tail(const std::string& s, size_t n = 8000) { return s.size() > n ? s.substr(s.size() - n) : s; }

// A fixture for one driver domain serving many guests' devices: a scratch
// directory, the driver domain's name, and the shadowd of write_host's files
// (the derived SetUp calls make_dir, writes the host and sets shadowd_).
// TearDown stops the test's own programs first (stop_programs), then shadowd
// (a failure unless it exits 0 on SIGTERM; its log printed after any
// failure), then removes the directory.
class DriverDomainTest : public ::testing::Test {
 protected:
  // /tmp/sd-`what`-XXXXXX; the driver domain is `dom_prefix` + our pid.
  void make_dir(const std::string& what, const std::string& dom_prefix) {
    std::string tmpl = "/tmp/sd-" + what + "-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    id_ = std::to_string(::getpid());
    dom_ = dom_prefix + id_;
  }
  virtual void stop_programs() {}
  void TearDown() override {
    stop_programs();
    if (shadowd_) {
      int rc = shadowd_->stop();
      if (rc != 0) ADD_FAILURE() << "shadowd did not exit 0 within 20 s of SIGTERM (rc " << rc << ")";
      if (HasFailure()) std::fprintf(stderr, "shadowd log (tail):\n%s\n", tail(shadowd_->log()).c_str());
      shadowd_.reset();
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Starts shadowd (`args` after the host file) and waits until it has `n`
  // devices, each with its backend up and its frontend socket there; they
  // go to *devices.
  void start_shadowd(const std::vector<std::string>& args, size_t n, nlohmann::json* devices) {
    shadowd_->start(args);
    ASSERT_TRUE(wait_until(
        [&] {
          *devices = shadowd_->devices();
          if (devices->size() != n) return false;
          for (auto& d : *devices)
            if (!d["detail"].value("backend_up", false) || !std::filesystem::exists(d["detail"].value("socket", "")))
              return false;
          return true;
        },
        std::chrono::seconds(30)))
        << devices->dump() << "\n" << shadowd_->log();
  }
  // Every one of the `n` devices serving after `recoveries` recoveries each:
  // state normal, backend up, and its frontend connected if `frontends`;
  // the device `except`, if named, is counted but not checked.
  bool all_serving(size_t n, int recoveries, bool frontends, const std::string& except = "") {
    auto ds = shadowd_->devices();
    if (ds.size() != n) return false;
    for (auto& d : ds) {
      auto det = d.value("detail", nlohmann::json::object());
      if (d.value("device", "") == except) continue;
      if (d.value("state", "") != "normal" || d.value("recoveries", -1) != recoveries ||
          !det.value("backend_up", false) || (frontends && !det.value("frontend_connected", false)))
        return false;
    }
    return true;
  }
  // The state of device `id` in `shadowctl devices` ("" if not listed).
  std::string device_state(const std::string& id) {
    for (auto& d : shadowd_->devices())
      if (d.value("device", "") == id) return d.value("state", "");
    return "";
  }
  // Kills the driver domain (its `kill`-th kill, counting from 1) and waits
  // for it to run again with every one of the `n` devices serving
  // (all_serving, `except` apart) after `kill` recoveries.
  void kill_and_recover(int kill, size_t n, bool frontends, const std::string& except = "") {
    auto r = shadowd_->ctl("inject-fault " + dom_ + " kill");
    ASSERT_EQ(r.rc, 0) << r.out << r.err;
    ASSERT_TRUE(wait_until(
        [&] {
          auto s = shadowd_->status(dom_);
          return s.value("restarts", -1) == kill && s.value("state", "") == "running" &&
                 all_serving(n, kill, frontends, except);
        },
        std::chrono::seconds(20)))
        << "kill " << kill << " not recovered: " << shadowd_->status(dom_).dump() << "\n"
        << shadowd_->devices().dump();
  }
  // Neither the driver domain nor any device fenced, and no device failed.
  void expect_none_fenced() {
    EXPECT_TRUE(shadowd_->events("domain_fenced").empty());
    for (const auto& e : shadowd_->events("device_state")) {
      EXPECT_NE(e.value("state", ""), "fenced") << e.dump();
      EXPECT_NE(e.value("state", ""), "failed") << e.dump();
    }
  }

  std::filesystem::path dir_;
  std::string id_, dom_;
  std::unique_ptr<Shadowd> shadowd_;
};

// What fio said about one job (its --output-format=json report and its
// messages): exit code, the job's error, bytes written and read back, and
// whether any verify error was printed.
struct FioVerdict {
  int rc = -1, error = -1;
  uint64_t written = 0, read = 0;
  double write_iops = 0, read_iops = 0;
  bool report = false;         // the JSON report was there
  bool verify_errors = false;  // "verify:" or "bad magic" in its messages
};

inline FioVerdict fio_verdict(int rc, const std::filesystem::path& json_report, const std::string& messages) {
  FioVerdict v;
  v.rc = rc;
  auto r = nlohmann::json::parse(slurp(json_report), nullptr, false);
  if (!r.is_discarded() && r.contains("jobs") && !r["jobs"].empty()) {
    const auto& job = r["jobs"][0];
    v.report = true;
    v.error = job.value("error", -1);
    v.written = job["write"].value("io_bytes", uint64_t{0});
    v.read = job["read"].value("io_bytes", uint64_t{0});
    v.write_iops = job["write"].value("iops", 0.0);
    v.read_iops = job["read"].value("iops", 0.0);
  }
  v.verify_errors = messages.find("verify:") != std::string::npos || messages.find("bad magic") != std::string::npos;
  return v;
}

// sd-blkfront's count when it exits ("submitted N completed N (...) faults N
// reconnects N replayed N max_inflight N"); nullopt if it printed none.
struct BlkfrontCounts {
  uint64_t submitted = 0, completed = 0, flushes = 0, faults = 0, reconnects = 0, replayed = 0, max_inflight = 0;
  uint64_t discards = 0;
};

inline std::optional<BlkfrontCounts> blkfront_counts(const std::string& out) {
  static const std::regex counts(
      "submitted (\\d+) completed (\\d+) \\(reads \\d+ writes \\d+ flushes (\\d+) barriers \\d+ discards (\\d+)\\) "
      "faults (\\d+) reconnects (\\d+) replayed (\\d+) max_inflight (\\d+)");
  std::smatch m;
  if (!std::regex_search(out, m, counts)) return std::nullopt;
  return BlkfrontCounts{std::stoull(m[1]), std::stoull(m[2]), std::stoull(m[3]), std::stoull(m[5]),
                        std::stoull(m[6]), std::stoull(m[7]), std::stoull(m[8]), std::stoull(m[4])};
}

// The virtual DAC's recording at `wav` against the marked input of
// `input_frames` (sd/core/pcm_marks.hpp); prints every gap, prefixed with
// `label`. nullopt if there is no WAV there.
inline std::optional<sd::pcm::Analysis> analyze_recording(const std::filesystem::path& wav, uint64_t input_frames,
                                                          const std::string& label = "") {
  auto a = sd::pcm::analyze(slurp(wav));
  if (!a) return a;
  std::string p = label.empty() ? "" : label + ": ";
  for (size_t i = 0; i < a->gaps.size(); ++i)
    std::printf("[ figure   ] %sgap %zu at %.3f s of output: %llu frames of silence (%.2f ms), input %s %lld frames\n",
                p.c_str(), i + 1, static_cast<double>(a->gaps[i].at) / sd::pcm::kRate,
                static_cast<unsigned long long>(a->gaps[i].silent), a->gaps[i].ms(),
                a->gaps[i].skipped >= 0 ? "skipped" : "repeated", static_cast<long long>(std::llabs(a->gaps[i].skipped)));
  std::printf("[ figure   ] %srecording: %llu frames, %llu of the %llu input frames, %zu gap(s), %llu foreign\n",
              p.c_str(), static_cast<unsigned long long>(a->frames), static_cast<unsigned long long>(a->marked),
              static_cast<unsigned long long>(input_frames), a->gaps.size(),
              static_cast<unsigned long long>(a->foreign));
  return a;
}

// The asoundrc a guest's user writes (README: "Sound") for the vsnd at
// `socket`, at `path`; returns the ALSA_CONFIG_PATH that reads it.
inline std::string write_asoundrc(const std::filesystem::path& path, const std::string& plugin,
                                  const std::filesystem::path& socket) {
  std::ofstream(path) << "pcm_type.shadow { lib \"" << plugin << "\" }\n"
                      << "pcm.shadow {\n  type shadow\n  socket \"" << socket.string() << "\"\n}\n";
  return "/usr/share/alsa/alsa.conf:" + path.string();
}

// Sets `key: value` in a policy file, keeping the rest of the file; false if
// the key is not there.
inline bool set_policy_key(const std::filesystem::path& file, const std::string& key, const std::string& value) {
  std::string y = slurp(file);
  auto at = y.find(key + ":");
  if (at == std::string::npos) return false;
  auto eol = y.find('\n', at);
  auto comment = y.find('#', at);
  auto end = (comment != std::string::npos && comment < eol) ? comment : eol;
  y.replace(at, end - at, key + ": " + value + " ");
  std::ofstream(file) << y;
  return true;
}

}  // namespace sd::e2e
