#include "process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace sd::tools::demo {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

Child::~Child() {
  if (out >= 0) ::close(out);
  if (err >= 0) ::close(err);
}

bool Child::start(const std::vector<std::string>& argv, std::string* why, const fs::path& file,
                  const std::string& alsa_config) {
  const bool capture = file.empty();
  int po[2] = {-1, -1}, pe[2] = {-1, -1};
  if (capture && (::pipe2(po, O_CLOEXEC) != 0 || ::pipe2(pe, O_CLOEXEC) != 0)) {
    *why = std::string("pipe: ") + std::strerror(errno);
    return false;
  }
  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  int fd_out = capture ? -1 : ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::fflush(nullptr);
  pid_t p = ::fork();
  if (p < 0) {
    *why = std::string("fork: ") + std::strerror(errno);
    for (int fd : {po[0], po[1], pe[0], pe[1], devnull, fd_out})
      if (fd >= 0) ::close(fd);
    return false;
  }
  if (p == 0) {
    ::setpgid(0, 0);
    ::signal(SIGPIPE, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    if (!alsa_config.empty()) ::setenv("ALSA_CONFIG_PATH", alsa_config.c_str(), 1);
    int to = fd_out >= 0 ? fd_out : devnull;
    ::dup2(devnull, 0);
    ::dup2(capture ? po[1] : to, 1);
    ::dup2(capture ? pe[1] : to, 2);
    ::execvp(cargv[0], cargv.data());
    std::fprintf(stderr, "cannot run %s: %s\n", cargv[0], std::strerror(errno));
    ::_exit(127);
  }
  ::setpgid(p, p);
  if (devnull >= 0) ::close(devnull);
  if (fd_out >= 0) ::close(fd_out);
  if (capture) {
    ::close(po[1]);
    ::close(pe[1]);
    out = po[0];
    err = pe[0];
    ::fcntl(out, F_SETFL, O_NONBLOCK);
    ::fcntl(err, F_SETFL, O_NONBLOCK);
  }
  pid = p;
  return true;
}

bool Child::poll_exit() {
  if (pid <= 0 || exited) return exited;
  int st = 0;
  if (::waitpid(pid, &st, WNOHANG) == pid) {
    exited = true;
    status = st;
  }
  return exited;
}

bool Child::wait_exit(double timeout_s) {
  auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  while (!poll_exit()) {
    if (Clock::now() >= end) return false;
    drain();
    ::usleep(20000);
  }
  drain();
  return true;
}

void Child::stop(double grace_s) {
  if (!running()) return;
  ::kill(pid, SIGTERM);
  if (wait_exit(grace_s)) return;
  ::kill(pid, SIGKILL);
  wait_exit(5);
}

namespace {
void drain_fd(int& fd, std::string& buf) {
  if (fd < 0) return;
  char tmp[16384];
  for (;;) {
    ssize_t n = ::read(fd, tmp, sizeof(tmp));
    if (n > 0) {
      buf.append(tmp, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    ::close(fd);  // EOF or error
    fd = -1;
    return;
  }
}
}  // namespace

void Child::drain() {
  drain_fd(out, out_buf);
  drain_fd(err, err_buf);
}

int Child::exit_code() const { return exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

int Child::rc() const { return exited && WIFSIGNALED(status) ? 128 + WTERMSIG(status) : exit_code(); }

std::string Child::exit_text() const {
  if (!exited) return "still running";
  if (WIFEXITED(status)) return std::to_string(WEXITSTATUS(status));
  return std::string("killed by SIG") + sigabbrev_np(WTERMSIG(status));
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string last_lines(const std::string& s, size_t n) {
  std::vector<std::string> lines;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);)
    if (!l.empty()) lines.push_back(l);
  std::string out;
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) out += "  " + lines[i] + "\n";
  return out;
}

fs::path self_dir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path(".") : p.parent_path();
}

std::optional<fs::path> first_existing(std::initializer_list<fs::path> cands) {
  for (auto& c : cands) {
    std::error_code ec;
    if (fs::is_regular_file(c, ec)) return fs::weakly_canonical(c, ec);
  }
  return std::nullopt;
}

std::optional<fs::path> find_built(const std::string& name, const std::string& build_dir) {
  auto dir = self_dir();
  return first_existing({dir / name, dir / ".." / ".." / build_dir / name});
}

std::optional<fs::path> find_frontend(const std::string& name) {
  auto p = find_built(name, "frontends");
  if (!p) std::fprintf(stderr, "shadowctl: demo: %s not found next to shadowctl\n", name.c_str());
  return p;
}

bool can_run(const char* root_for, std::initializer_list<const char*> progs, const char* pkg) {
  if (::geteuid() != 0) {
    std::fprintf(stderr, "shadowctl: demo: needs root (%s)\n", root_for);
    return false;
  }
  const char* path = std::getenv("PATH");
  for (const char* prog : progs) {
    bool found = false;
    std::stringstream ss(path ? path : "/usr/sbin:/usr/bin:/sbin:/bin");
    for (std::string dir; !found && std::getline(ss, dir, ':');)
      found = !dir.empty() && ::access((dir + "/" + prog).c_str(), X_OK) == 0;
    if (!found) {
      std::fprintf(stderr, "shadowctl: demo: %s not found in PATH (scripts/deps.sh installs %s)\n", prog, pkg);
      return false;
    }
  }
  return true;
}

}  // namespace sd::tools::demo
