// Helpers shared by the end-to-end tests: run a command, read a file, wait
// (bounded) for a condition.
#pragma once

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <signal.h>
#include <vector>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

namespace sd::e2e {

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

// A host config in `dir` with one driver domain `dom` and one guest `guest`
// whose vif (address `guest_ip`) it backs, the wire netns `wire`, control
// socket, state and event log inside `dir`, and the shipped policies copied
// to `dir`/policies (so a test may edit them).
struct PrivateHost {
  std::string dom, guest, wire, guest_ip;
};

inline void write_private_host(const std::filesystem::path& dir, const std::filesystem::path& source_dir,
                               const PrivateHost& h) {
  namespace fs = std::filesystem;
  fs::create_directories(dir / "policies");
  for (auto cls : {"vif", "vsnd", "vbd"})
    fs::copy_file(source_dir / "config/policies" / (std::string(cls) + ".yaml"),
                  dir / "policies" / (std::string(cls) + ".yaml"));
  std::ofstream(dir / "dd.cfg") << "name = \"" << h.dom << "\"\ndriver_domain = 1\nmemory = 128\nvcpus = 1\n";
  std::ofstream(dir / "guest1.cfg") << "name = \"" << h.guest << "\"\nmemory = 256\nvcpus = 1\nvif = [ 'backend="
                                    << h.dom << ",mac=00:16:3e:5d:00:01,ip=" << h.guest_ip << "' ]\n";
  std::ofstream(dir / "host.yaml") << "platform: local\n"
                                   << "policy_dir: policies\n"
                                   << "control_socket: " << (dir / "sd.sock").string() << "\n"
                                   << "state_dir: " << (dir / "state").string() << "\n"
                                   << "event_log: " << (dir / "events.jsonl").string() << "\n"
                                   << "wire_netns: " << h.wire << "\n"
                                   << "domains: [dd.cfg]\n"
                                   << "guests: [guest1.cfg]\n";
}

// A host config in `dir` like write_private_host's, with one vif guest per
// entry of `guests` (name, address), every vif on the one driver domain `dom`.
struct MultiGuestHost {
  std::string dom, wire;
  std::vector<std::pair<std::string, std::string>> guests;  // name, vif ip=
};

inline void write_multi_guest_host(const std::filesystem::path& dir, const std::filesystem::path& source_dir,
                                   const MultiGuestHost& h) {
  namespace fs = std::filesystem;
  fs::create_directories(dir / "policies");
  for (auto cls : {"vif", "vsnd", "vbd"})
    fs::copy_file(source_dir / "config/policies" / (std::string(cls) + ".yaml"),
                  dir / "policies" / (std::string(cls) + ".yaml"));
  std::ofstream(dir / "dd.cfg") << "name = \"" << h.dom << "\"\ndriver_domain = 1\nmemory = 128\nvcpus = 1\n";
  std::string guests;
  for (size_t i = 0; i < h.guests.size(); ++i) {
    char mac[32];
    std::snprintf(mac, sizeof(mac), "00:16:3e:5d:%02zx:%02zx", (i + 1) >> 8, (i + 1) & 0xff);
    std::string file = "guest" + std::to_string(i + 1) + ".cfg";
    std::ofstream(dir / file) << "name = \"" << h.guests[i].first << "\"\nmemory = 256\nvcpus = 1\nvif = [ 'backend="
                              << h.dom << ",mac=" << mac << ",ip=" << h.guests[i].second << "' ]\n";
    guests += (i ? ", " : "") + file;
  }
  std::ofstream(dir / "host.yaml") << "platform: local\n"
                                   << "policy_dir: policies\n"
                                   << "control_socket: " << (dir / "sd.sock").string() << "\n"
                                   << "state_dir: " << (dir / "state").string() << "\n"
                                   << "event_log: " << (dir / "events.jsonl").string() << "\n"
                                   << "wire_netns: " << h.wire << "\n"
                                   << "domains: [dd.cfg]\n"
                                   << "guests: [" << guests << "]\n";
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
