// Helpers the per-class demos share (demo_vsnd.cpp, demo_vbd.cpp): ask
// shadowd one question, find the binaries next to shadowctl, run and reap
// the application, bring a shadowd up for the run and down after it.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace sd::shadowctl::demo {

// One request on shadowd's control socket; nullopt (and *why) unless it answered ok.
std::optional<nlohmann::json> ask(const std::string& sock, const nlohmann::json& req, std::string* why = nullptr);
std::string slurp(const std::filesystem::path& p);
std::filesystem::path self_dir();  // where the shadowctl binary is
std::optional<std::filesystem::path> first_existing(std::initializer_list<std::filesystem::path> cands);
// Starts argv in its own process group, stdin /dev/null, stdout+stderr to
// `out`, ALSA_CONFIG_PATH set if `alsa_conf` is not empty. Returns the pid.
pid_t spawn(const std::vector<std::string>& argv, const std::filesystem::path& out, const std::string& alsa_conf = "");
// Exit status (128 + signal if killed), or -1 if still running after `timeout_s`.
int wait_exit(pid_t pid, double timeout_s);

// The demo host's disk image (config/examples/demo-host/guest1.cfg's target):
// created sparse (1 GiB) if missing, so the demo host starts out of the box.
constexpr const char* kDemoDiskImage = "/var/lib/shadowd/guest1-xvda.img";
bool ensure_demo_disk(std::string* why);

// The shadowd the demo talks to: the running one on `sock`, or one started
// with `config` (default: the demo host) and shut down by stop().
class OwnShadowd {
 public:
  // False (and *why) if none answers and none could be started.
  bool start(const std::string& sock, const std::string& config, const std::filesystem::path& log, std::string* why);
  void stop(const std::string& sock);
  bool started() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

}  // namespace sd::shadowctl::demo
