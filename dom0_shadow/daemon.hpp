// shadowd's core: one io_context runs the control plane. It owns the platform,
// one Supervisor per driver domain, one DeviceShadow per guest device, the
// event log and the control socket.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "control_server.hpp"
#include "device_impl.hpp"
#include "device_shadow.hpp"
#include "event_log.hpp"
#include "sd/config/host.hpp"
#include "sd/core/platform.hpp"
#include "supervisor.hpp"

namespace sd::dom0 {

struct DaemonOptions {
  std::string platform;                 // overrides the host file's when set
  std::filesystem::path control_socket;  // overrides the host file's when set
  std::filesystem::path drvdom_binary;
  std::filesystem::path netfront_binary;  // guest side of vifs (local); a vif's dom0 ring proxy (xen)
  std::filesystem::path blkfront_binary;  // a vbd's dom0 ring proxy (xen)
  std::filesystem::path sndfront_binary;  // a vsnd's dom0 ring proxy (xen)
  bool verbose = false;
};

class Daemon {
 public:
  Daemon(config::HostConfig cfg, DaemonOptions opts);
  ~Daemon();

  // Starts everything and runs until shutdown (SIGTERM, SIGINT or `shadowctl
  // shutdown`). Returns the process exit code.
  int run();

  // The control API, one entry per action (see control_server.hpp).
  nlohmann::json handle(const nlohmann::json& req, ControlServer::Session& session);

 private:
  Result<void> start();
  Result<std::unique_ptr<DeviceImpl>> make_device(const std::string& guest, const config::DeviceSpec& spec,
                                                  uint64_t handle, unsigned& vif_number, FaultReporter report);
  void shutdown();
  Supervisor* find(const std::string& name);
  std::vector<DeviceShadow*> devices_of(const std::string& backend);

  config::HostConfig cfg_;
  DaemonOptions opts_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  std::unique_ptr<platform::Platform> platform_;
  std::unique_ptr<EventLog> log_;
  std::map<std::string, std::unique_ptr<Supervisor>> supervisors_;
  std::vector<std::unique_ptr<DeviceShadow>> devices_;
  std::vector<std::unique_ptr<DeviceImpl>> impls_;  // same index as devices_ (= device handle); may be null
  // A recovery in progress per driver domain: devices still resuming.
  struct Recovery {
    size_t pending = 0;
    platform::Clock::time_point ready{};  // the new incarnation was Ready: every device's recovery starts
    double replay_ms = 0, resume_ms = 0, devices_ms = 0;
    uint32_t replayed = 0;
    nlohmann::json devices = nlohmann::json::array();
  };
  std::map<std::string, Recovery> recovering_;
  void on_domain_ready(const std::string& name);
  void device_resumed(const std::string& name, size_t idx, Result<ResumeTimes> r);
  void emit_recovery(const std::string& name);
  std::unique_ptr<ControlServer> server_;
  bool stopping_ = false;
};

}  // namespace sd::dom0
