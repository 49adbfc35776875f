#include "host.hpp"

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <thread>

#include "control_client.hpp"

namespace sd::tools::demo {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

volatile sig_atomic_t g_interrupted = 0;

// The disk images of the demo host's guests (every `target=` in the xl cfg
// files beside `host_file`): each created sparse (1 GiB) if missing, so the
// demo host starts out of the box.
bool ensure_demo_disks(const fs::path& host_file, std::string* why) {
  static const std::regex target("target=([^,' \\]]+)");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(host_file.parent_path(), ec)) {
    if (e.path().extension() != ".cfg") continue;
    std::string cfg = slurp(e.path());
    for (std::sregex_iterator m(cfg.begin(), cfg.end(), target), end; m != end; ++m) {
      fs::path img = (*m)[1].str();
      if (fs::exists(img, ec)) continue;
      fs::create_directories(img.parent_path(), ec);
      std::ofstream{img};
      fs::resize_file(img, std::uintmax_t{1} << 30, ec);
      if (ec) {
        *why = "cannot create the demo disk " + img.string() + ": " + ec.message();
        return false;
      }
    }
  }
  return true;
}

}  // namespace

std::optional<json> ask(const std::string& sock, const json& req, std::string* why) {
  auto r = request(sock, req, nullptr, 10);
  if (r) return std::move(*r);
  if (why) *why = r.error().text;
  return std::nullopt;
}

bool interrupted() { return g_interrupted != 0; }

bool ScratchRun::begin(const std::string& cls, const std::string& sock, const std::string& config, Progress& pr) {
  struct sigaction sa{};
  sa.sa_handler = [](int) { g_interrupted = 1; };
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  std::string tmpl = "/tmp/shadowctl-demo-" + cls + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return false;
  dir_ = tmpl;
  sock_ = sock;
  pr_ = &pr;
  if (ask(sock, {{"cmd", "list"}})) {
    pr.note("demo: using the shadowd running at " + sock + " (left running)");
    if (!config.empty()) pr.note("demo: --config is ignored: a shadowd is already running");
    return true;
  }
  auto shadowd = find_built("shadowd", "dom0_shadow");
  if (!shadowd) {
    pr.note("shadowctl: demo: no shadowd answers at " + sock + " and no shadowd binary next to shadowctl (" +
            self_dir().string() + ") to start one");
    return false;
  }
  fs::path host = config;
  std::string why;
  if (host.empty()) {
    auto h = first_existing({self_dir() / ".." / ".." / ".." / "config" / "examples" / "demo-host" / "host.yaml"});
    if (!h) {
      pr.note("shadowctl: demo: no shadowd answers at " + sock +
              " and the demo host file was not found from the shadowctl binary; give --config HOST");
      return false;
    }
    host = *h;
    if (!ensure_demo_disks(host, &why)) {  // the guests' disks must exist for shadowd to start
      pr.note("shadowctl: demo: " + why);
      return false;
    }
  }
  pr.note("demo: starting " + shadowd->string() + " --config " + host.string() + " (log: " +
          (dir_ / "shadowd.log").string() + ")");
  if (!shadowd_.start({shadowd->string(), "--config", host.string(), "--socket", sock}, &why, dir_ / "shadowd.log")) {
    pr.note("shadowctl: demo: cannot start shadowd: " + why);
    return false;
  }
  return true;
}

bool ScratchRun::stop_shadowd() {
  if (!started() || stopped_) return true;
  stopped_ = true;
  const std::string log = (dir_ / "shadowd.log").string();
  if (shadowd_.poll_exit()) {
    pr_->note("demo: shadowd had already exited (" + shadowd_.exit_text() + "); its log (" + log + "):\n" +
              last_lines(slurp(log), 20));
    return false;
  }
  std::string why;
  bool asked = ask(sock_, {{"cmd", "shutdown"}}, &why).has_value();
  if (!asked || !shadowd_.wait_exit(15)) {
    pr_->note("demo: shadowd did not stop on request" + (asked ? std::string() : " (" + why + ")") +
              "; sending SIGTERM");
    shadowd_.stop(10);
  }
  bool clean = shadowd_.exit_code() == 0;
  pr_->note(clean ? "demo: stopped the shadowd it started"
                  : "demo: shadowd exited with " + shadowd_.exit_text() + "; its log: " + log);
  return clean;
}

int ScratchRun::end(int rc) {
  if (on_end) on_end();
  stop_shadowd();
  std::error_code ec;
  if (rc == 0) fs::remove_all(dir_, ec);
  return rc;
}

int ScratchRun::fail(const std::string& msg) {
  pr_->note("shadowctl: demo: " + msg);
  return end(1);
}

std::vector<json> wait_devices(const std::string& sock, const std::string& cls, Progress& pr) {
  auto ready_by = Clock::now() + std::chrono::seconds(30);
  for (;;) {
    std::vector<json> out;
    bool all_up = true;
    if (auto d = ask(sock, {{"cmd", "devices"}}))
      for (auto& x : (*d)["devices"]) {
        if (x.value("class", "") != cls || (!out.empty() && x.value("backend", "") != out[0].value("backend", "")))
          continue;
        all_up = all_up && x.contains("detail") && x["detail"].value("backend_up", false);
        out.push_back(x);
      }
    if (!out.empty() && all_up) return out;
    if (interrupted()) {
      pr.note("shadowctl: demo: interrupted");
      return {};
    }
    if (Clock::now() > ready_by) {
      pr.note("shadowctl: demo: " +
              (out.empty() ? "no " + cls + " device" : "not every " + cls + " device on " + out[0].value("backend", "")) +
              " with its driver domain up at " + sock + " after 30 s");
      return {};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace sd::tools::demo
