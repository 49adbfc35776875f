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
#include "device_shadow.hpp"
#include "event_log.hpp"
#include "grant_broker.hpp"
#include "sd/config/host.hpp"
#include "sd/core/platform.hpp"
#include "supervisor.hpp"

namespace sd::dom0 {

struct DaemonOptions {
  std::string platform;                 // overrides the host file's when set
  std::filesystem::path control_socket;  // overrides the host file's when set
  std::filesystem::path drvdom_binary;
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
  void shutdown();
  Supervisor* find(const std::string& name);
  std::vector<DeviceShadow*> devices_of(const std::string& backend);

  config::HostConfig cfg_;
  DaemonOptions opts_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  std::unique_ptr<platform::Platform> platform_;
  std::unique_ptr<EventLog> log_;
  GrantBroker broker_;
  std::map<std::string, std::unique_ptr<Supervisor>> supervisors_;
  std::vector<std::unique_ptr<DeviceShadow>> devices_;
  std::unique_ptr<ControlServer> server_;
  bool stopping_ = false;
};

}  // namespace sd::dom0
