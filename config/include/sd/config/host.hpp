// The host file: which driver domains and guests shadowd runs, where the
// policies are, and where shadowd keeps its socket, state and event log.
//
//   platform: auto                 # auto|local|xen (default auto)
//   policy_dir: ../../policies     # relative paths resolve against this file's directory
//   control_socket: /run/shadowd/shadowd.sock   # default
//   state_dir: /run/shadowd        # default
//   event_log: /run/shadowd/events.jsonl        # optional
//   domains: [netdd.cfg]           # driver domain cfgs (driver_domain = 1)
//   guests: [guest1.cfg]           # optional: guests whose devices use them via backend=
//
// load_host() reads every file involved and checks them against each other;
// all errors of all files come back together.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sd/config/diagnostic.hpp"
#include "sd/config/policy.hpp"
#include "sd/config/xl_cfg.hpp"

namespace sd::config {

inline constexpr std::string_view kDefaultControlSocket = "/run/shadowd/shadowd.sock";
inline constexpr std::string_view kDefaultStateDir = "/run/shadowd";

struct HostConfig {
  std::filesystem::path file;
  std::string platform;  // "auto" | "local" | "xen"
  // Resolved: relative values are joined to the host file's directory.
  std::filesystem::path policy_dir, control_socket, state_dir;
  std::optional<std::filesystem::path> event_log;
  // Network namespace standing for the outside world that vifs' NICs are
  // wired to (local platform). Default "wire".
  std::string wire_netns = "wire";
  std::vector<DomainCfg> driver_domains, guests;
  // policy_dir/{vif,vsnd,vbd}.yaml: every file present, and required for each
  // class that some device served by a listed driver domain uses.
  std::map<DeviceClass, Policy> policies;
};

Parsed<HostConfig> load_host(const std::filesystem::path& path);

}  // namespace sd::config
