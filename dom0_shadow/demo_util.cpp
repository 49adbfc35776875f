#include "demo_util.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "demo.hpp"

namespace sd::shadowctl::demo {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::optional<json> ask(const std::string& sock, const json& req, std::string* why) {
  Conn c;
  if (!c.open(sock) || !c.send(req)) {
    if (why) *why = "no shadowd answers at " + sock;
    return std::nullopt;
  }
  auto r = c.recv();
  if (!r || !r->value("ok", false)) {
    if (why) *why = r ? r->value("error", std::string("refused")) : "no answer";
    return std::nullopt;
  }
  return r;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

fs::path self_dir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path(".") : p.parent_path();
}

std::optional<fs::path> first_existing(std::initializer_list<fs::path> cands) {
  for (auto& c : cands)
    if (fs::exists(c)) return fs::weakly_canonical(c);
  return std::nullopt;
}

pid_t spawn(const std::vector<std::string>& argv, const fs::path& out, const std::string& alsa_conf) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    if (!alsa_conf.empty()) ::setenv("ALSA_CONFIG_PATH", alsa_conf.c_str(), 1);
    int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> a;
    for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    ::execvp(a[0], a.data());
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid, double timeout_s) {
  auto until = Clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (Clock::now() > until) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool ensure_demo_disk(std::string* why) {
  fs::path img = kDemoDiskImage;
  std::error_code ec;
  if (fs::exists(img, ec)) return true;
  fs::create_directories(img.parent_path(), ec);
  int fd = ::open(img.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || ::ftruncate(fd, off_t{1} << 30) != 0) {
    if (why) *why = "cannot create the demo disk " + img.string() + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return false;
  }
  ::close(fd);
  return true;
}

bool OwnShadowd::start(const std::string& sock, const std::string& config, const fs::path& log, std::string* why) {
  if (ask(sock, {{"cmd", "list"}})) return true;  // a running shadowd: used and left running
  auto dir = self_dir();
  auto shadowd = first_existing({dir / "shadowd", dir / ".." / "dom0_shadow" / "shadowd"});
  auto host = config.empty() ? first_existing({dir / ".." / ".." / "config" / "examples" / "demo-host" / "host.yaml"})
                             : std::optional<fs::path>(config);
  if (!shadowd || !host) {
    *why = "no shadowd at " + sock + " and none (or no demo host) to start; give --config";
    return false;
  }
  if (config.empty() && !ensure_demo_disk(why)) return false;
  std::fprintf(stderr, "demo: starting %s --config %s (log: %s)\n", shadowd->c_str(), host->c_str(), log.c_str());
  pid_ = spawn({shadowd->string(), "--config", host->string(), "--socket", sock}, log);
  return true;
}

void OwnShadowd::stop(const std::string& sock) {
  if (pid_ <= 0) return;
  (void)ask(sock, {{"cmd", "shutdown"}});
  if (wait_exit(pid_, 15) < 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_ = -1;
}

}  // namespace sd::shadowctl::demo
