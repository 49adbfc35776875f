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

// Set by SIGINT, SIGTERM or SIGHUP once a ScratchRun has begun.
bool interrupted();

// A run with its own files (/tmp/shadowctl-demo-CLASS-XXXXXX: shadowd's log,
// the application's input and output) and the shadowd it uses.
class ScratchRun {
 public:
  // Makes the directory; uses the shadowd answering on `sock` (left
  // running), else starts one with `config` (default: the demo host). False
  // if either fails (said on `pr`). From here on a signal only sets
  // interrupted(), so that the demo stops its children and shadowd in order.
  bool begin(const std::string& cls, const std::string& sock, const std::string& config, Progress& pr);
  const std::filesystem::path& dir() const { return dir_; }
  bool started() const { return shadowd_.pid > 0; }
  // Shuts down a shadowd started here: the shutdown request, then TERM, then
  // KILL. True if it exited 0 (or was not started here).
  bool stop_shadowd();
  // on_end(), then stop_shadowd(); the directory goes when rc is 0 (kept
  // to look at otherwise). Returns rc.
  int end(int rc);
  int fail(const std::string& msg);  // says msg, then end(1)
  std::function<void()> on_end;      // stops the workload's children

 private:
  std::filesystem::path dir_;
  std::string sock_;
  Progress* pr_ = nullptr;
  Child shadowd_;
  bool stopped_ = false;
};

// The devices the demo runs its workload on: every device of class `cls` on
// the driver domain of the first one (the domain its faults go into), one per
// guest device, in shadowd's order, once all of their backends are up; tried
// every 100 ms for 30 s. Empty (said on `pr`) when none comes.
std::vector<nlohmann::json> wait_devices(const std::string& sock, const std::string& cls, Progress& pr);
// A workload's device: its id ("guest1/vif/0"), the guest it belongs to
// ("guest1") and shadowd's class-specific detail, from a devices entry.
struct GuestDevice {
  std::string guest, device;
  nlohmann::json detail;
  explicit GuestDevice(const nlohmann::json& entry)
      : device(entry.value("device", "")), detail(entry.value("detail", nlohmann::json::object())) {
    guest = device.substr(0, device.find('/'));
  }
};

}  // namespace sd::tools::demo
