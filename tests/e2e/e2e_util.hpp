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
#include <sstream>
#include <string>
#include <thread>

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

}  // namespace sd::e2e
