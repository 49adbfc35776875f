// The shadowd the demo talks to and the devices it looks up there: the
// running one on the socket, or one the demo starts (by default on the demo
// host, config/examples/demo-host/) and stops at the end.
#pragma once

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "process.hpp"
#include "report.hpp"

namespace sd::tools::demo {

// One request on its own connection (10 s answer timeout); the answer when
// ok, else nullopt with the reason in *why.
std::optional<nlohmann::json> ask(const std::string& sock, const nlohmann::json& req, std::string* why = nullptr);

// The disk images of the demo host's guests (every `target=` in the xl cfg
// files beside `host_file`): each created sparse (1 GiB) if missing, so the
// demo host starts out of the box. False (and *why) if one cannot be.
bool ensure_demo_disks(const std::filesystem::path& host_file, std::string* why);

class OwnShadowd {
 public:
  ~OwnShadowd();
  // Uses the shadowd answering on `sock` (left running), else starts one
  // with `config` (default: the demo host) and its output in `log` (default:
  // a file in /tmp, removed when it stops cleanly). False (said on `pr`) if
  // none answers and none could be started.
  bool start(const std::string& sock, const std::string& config, Progress& pr, const std::filesystem::path& log = {});
  bool started() const { return proc_.pid > 0; }
  // The one it started ended by itself (never started: false).
  bool exited() { return started() && proc_.poll_exit(); }
  std::string exit_text() const { return proc_.exit_text(); }
  const std::string& log_path() const { return log_path_; }
  // Shuts down a shadowd it started: the shutdown request, then TERM, then
  // KILL. True if it exited 0 (or was not started here).
  bool stop(const std::string& sock, Progress& pr);

 private:
  Child proc_;
  std::string log_path_;
  int log_fd_ = -1;  // the /tmp log
  bool stopped_ = false;
};

// A run with its own files (/tmp/shadowctl-demo-CLASS-XXXXXX: shadowd's log,
// the application's input and output) and the shadowd it uses.
class ScratchRun {
 public:
  // Makes the directory and uses or starts shadowd (its log there). False if
  // either fails (said on `pr`).
  bool begin(const std::string& cls, const std::string& sock, const std::string& config, Progress& pr);
  const std::filesystem::path& dir() const { return dir_; }
  // Stops the shadowd started here; the directory goes when rc is 0 (kept
  // to look at otherwise). Returns rc.
  int end(int rc);

 private:
  std::filesystem::path dir_;
  std::string sock_;
  Progress* pr_ = nullptr;
  OwnShadowd shadowd_;
};

// The first device of class `cls` whose backend is up and whose detail
// passes `also` (if given).
std::optional<nlohmann::json> find_device(const std::string& sock, const std::string& cls,
                                          const std::function<bool(const nlohmann::json& detail)>& also = {});
// The devices the demo runs its workload on: every device of class `cls` on
// the driver domain of the first one (the domain its faults go into), one per
// guest device, in shadowd's order, once all of their backends are up; tried
// every 100 ms for 30 s. Empty (said on `pr`) when none comes.
std::vector<nlohmann::json> wait_devices(const std::string& sock, const std::string& cls, Progress& pr);
// The guest a device entry belongs to: "guest1" for "guest1/vif/0".
std::string guest_of(const nlohmann::json& device);

}  // namespace sd::tools::demo
