#include "host.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <regex>
#include <thread>

#include "control_client.hpp"

namespace sd::tools::demo {

using nlohmann::json;
namespace fs = std::filesystem;

std::optional<json> ask(const std::string& sock, const json& req, std::string* why) {
  auto r = request(sock, req, nullptr, 10);
  if (r) return std::move(*r);
  if (why) *why = r.error().text;
  return std::nullopt;
}

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
      int fd = ::open(img.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd < 0 || ::ftruncate(fd, off_t{1} << 30) != 0) {
        if (why) *why = "cannot create the demo disk " + img.string() + ": " + std::strerror(errno);
        if (fd >= 0) ::close(fd);
        return false;
      }
      ::close(fd);
    }
  }
  return true;
}

OwnShadowd::~OwnShadowd() {
  if (log_fd_ >= 0) ::close(log_fd_);
}

bool OwnShadowd::start(const std::string& sock, const std::string& config, Progress& pr, const fs::path& log) {
  if (ask(sock, {{"cmd", "list"}})) {
    pr.note("demo: using the shadowd running at " + sock + " (left running)");
    if (!config.empty()) pr.note("demo: --config is ignored: a shadowd is already running");
    return true;
  }
  auto dir = self_dir();
  auto shadowd = find_built("shadowd", "dom0_shadow");
  if (!shadowd) {
    pr.note("shadowctl: demo: no shadowd answers at " + sock + " and no shadowd binary next to shadowctl (" +
            dir.string() + ") to start one");
    return false;
  }
  fs::path host;
  if (!config.empty()) {
    host = config;
  } else if (auto h = first_existing({dir / ".." / ".." / ".." / "config" / "examples" / "demo-host" / "host.yaml"})) {
    host = *h;
    std::string why;
    if (!ensure_demo_disks(host, &why)) {  // the guests' disks must exist for shadowd to start
      pr.note("shadowctl: demo: " + why);
      return false;
    }
  } else {
    pr.note("shadowctl: demo: no shadowd answers at " + sock +
            " and the demo host file was not found from the shadowctl binary; give --config HOST");
    return false;
  }
  Output out;
  if (!log.empty()) {
    out.file = log;
    log_path_ = log.string();
  } else {
    char tmpl[] = "/tmp/shadowctl-demo-shadowd-XXXXXX.log";
    log_fd_ = ::mkstemps(tmpl, 4);
    if (log_fd_ >= 0) {
      ::fcntl(log_fd_, F_SETFD, FD_CLOEXEC);
      log_path_ = tmpl;
      out.fd = log_fd_;
    }
  }
  pr.note("demo: starting " + shadowd->string() + " --config " + host.string() +
          (log_path_.empty() ? "" : " (log: " + log_path_ + ")"));
  std::string why;
  if (!proc_.start({shadowd->string(), "--config", host.string(), "--socket", sock}, out, &why)) {
    pr.note("shadowctl: demo: cannot start shadowd: " + why);
    return false;
  }
  return true;
}

bool OwnShadowd::stop(const std::string& sock, Progress& pr) {
  if (!started() || stopped_) return true;
  stopped_ = true;
  if (!proc_.running() && proc_.poll_exit()) {
    pr.note("demo: shadowd had already exited (" + proc_.exit_text() + ")");
    return false;
  }
  std::string why;
  bool asked = ask(sock, {{"cmd", "shutdown"}}, &why).has_value();
  if (!asked || !proc_.wait_exit(15)) {
    pr.note("demo: shadowd did not stop on request" + (asked ? std::string() : " (" + why + ")") +
            "; sending SIGTERM");
    proc_.stop(10);
  }
  bool clean = proc_.exited && proc_.exit_code() == 0;
  if (clean) {
    if (log_fd_ >= 0) ::unlink(log_path_.c_str());
    pr.note("demo: stopped the shadowd it started");
  } else {
    pr.note("demo: shadowd exited with " + proc_.exit_text() + "; its log: " + log_path_);
  }
  return clean;
}

bool ScratchRun::begin(const std::string& cls, const std::string& sock, const std::string& config, Progress& pr) {
  std::string tmpl = "/tmp/shadowctl-demo-" + cls + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return false;
  dir_ = tmpl;
  sock_ = sock;
  pr_ = &pr;
  return shadowd_.start(sock, config, pr, dir_ / "shadowd.log");
}

int ScratchRun::end(int rc) {
  shadowd_.stop(sock_, *pr_);
  std::error_code ec;
  if (rc == 0) fs::remove_all(dir_, ec);
  return rc;
}

std::optional<json> find_device(const std::string& sock, const std::string& cls,
                                const std::function<bool(const json&)>& also) {
  auto d = ask(sock, {{"cmd", "devices"}});
  if (d)
    for (auto& x : (*d)["devices"])
      if (x.value("class", "") == cls && x.contains("detail") && x["detail"].value("backend_up", false) &&
          (!also || also(x["detail"])))
        return x;
  return std::nullopt;
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
    if (Clock::now() > ready_by) {
      pr.note("shadowctl: demo: " +
              (out.empty() ? "no " + cls + " device" : "not every " + cls + " device on " + out[0].value("backend", "")) +
              " with its driver domain up at " + sock + " after 30 s");
      return {};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::string guest_of(const json& device) {
  std::string id = device.value("device", "");
  return id.substr(0, id.find('/'));
}

}  // namespace sd::tools::demo
