// The demo's child processes (shadowd, the application, sd-blkfront) and the
// small file and path helpers around them.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace sd::tools::demo {

struct Child {
  pid_t pid = -1;
  int out = -1, err = -1;  // our ends of its stdout/stderr pipes (-1: not captured)
  std::string out_buf, err_buf;
  bool exited = false;
  int status = 0;

  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();
  // Starts argv in its own process group (a Ctrl-C at the terminal reaches
  // only shadowctl, which then stops its children in order), stdin
  // /dev/null, stdout and stderr to `file` (created or truncated) or, with
  // none, to pipes read with drain(); ALSA_CONFIG_PATH set when alsa_config
  // is not empty. False (and *why) if it could not.
  bool start(const std::vector<std::string>& argv, std::string* why, const std::filesystem::path& file = {},
             const std::string& alsa_config = "");
  bool running() const { return pid > 0 && !exited; }
  // Reaps without blocking; true once it has exited.
  bool poll_exit();
  // Waits up to timeout_s (reading the pipes meanwhile); true once it has exited.
  bool wait_exit(double timeout_s);
  // TERM, then KILL if it does not go.
  void stop(double grace_s = 3);
  void drain();
  // Its exit code, or for rc() 128 + the signal that ended it; -1 while
  // running (and for exit_code() when a signal ended it).
  int exit_code() const;
  int rc() const;
  // "0", "1", "killed by SIGKILL", "still running".
  std::string exit_text() const;
};

std::string slurp(const std::filesystem::path& p);
// The last n non-empty lines, each indented by two spaces.
std::string last_lines(const std::string& s, size_t n);
std::filesystem::path self_dir();  // where the shadowctl binary is
std::optional<std::filesystem::path> first_existing(std::initializer_list<std::filesystem::path> cands);
// A program of the project: next to shadowctl (installed), or where the
// build tree puts it (`build_dir`: dom0_shadow, frontends).
std::optional<std::filesystem::path> find_built(const std::string& name, const std::string& build_dir);
// find_built(name, "frontends"); says so on stderr when it is not there.
std::optional<std::filesystem::path> find_frontend(const std::string& name);

// What every workload needs: root (`root_for` says why) and `progs` in PATH
// (`pkg`: what scripts/deps.sh installs for them). Says what is missing on
// stderr.
bool can_run(const char* root_for, std::initializer_list<const char*> progs, const char* pkg = "it");

}  // namespace sd::tools::demo
