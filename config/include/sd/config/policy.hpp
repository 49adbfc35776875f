// Per-device-class recovery policy: one YAML file per class (vif.yaml,
// vsnd.yaml, vbd.yaml in the host's policy_dir). Every key is checked: unknown
// keys, wrong types and out-of-range values are errors with file:line + hint.
//
//   class: vif
//   active_mode: { action: queue, queue_limit: 1024 }
//   heartbeat:   { interval_ms: 50, timeout_ms: 250 }
//   watchdog:    { progress_timeout_ms: 500,
//                  interval_ms: 5, no_progress_multiple: 4,    # optional: heartbeat
//                  no_progress_min_ms: 20,                     #   interval, 0 (off), 50,
//                  no_progress_max_ms: 30 }                    #   progress_timeout_ms
//   restart:     { budget: 20, window_s: 60, backoff_initial_ms: 0,
//                  backoff_max_ms: 2000, backoff_multiplier: 2.0 }
//   standby: false                                  # optional, default false
//   zygote: false                                   # optional, default false
//   guest_frontend: project                         # optional: project | kernel (Xen)
//   log:         { max_inflight: 256, max_state_bytes: 65536 }  # optional, these defaults
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "sd/config/diagnostic.hpp"
#include "sd/config/xl_cfg.hpp"

namespace sd::config {

struct Policy {
  DeviceClass cls;
  std::string file;
  std::string active_action;  // vif: "drop" | "queue"; vsnd: "silence"; vbd: "queue"
  uint32_t queue_limit;       // frames / requests / periods held while the driver is down
  std::chrono::milliseconds heartbeat_interval, heartbeat_timeout, progress_timeout;
  // Progress watchdog: how often it looks, and the fast rule (a ring with
  // requests waiting and no response for max(no_progress_min,
  // no_progress_multiple x recent service time), at most no_progress_max;
  // multiple 0 = off).
  std::chrono::milliseconds watchdog_interval{50}, no_progress_min{50};
  std::chrono::milliseconds no_progress_max{500};  // the fast rule's limit at most (default progress_timeout)
  uint32_t no_progress_multiple = 0;
  uint32_t restart_budget;  // restarts allowed within restart_window; 0 = fence at first fault
  std::chrono::seconds restart_window;
  std::chrono::milliseconds backoff_initial, backoff_max;
  double backoff_multiplier;
  bool standby;  // keep a warm standby driver domain (Ready, the devices attached)
  bool zygote;   // keep a spare driver domain (Ready, no devices): a crash costs no spawn
  // Who speaks the class's protocol in the guest: "project" (the project's
  // own frontend, e.g. sd-netfront --xen) or "kernel" (an unmodified guest's
  // own driver, e.g. xen-netfront, served by a ring proxy in dom0; Xen).
  std::string guest_frontend;
  uint32_t log_max_inflight;
  uint64_t log_max_state_bytes;
};

Parsed<Policy> load_policy(const std::filesystem::path& path, DeviceClass expected);
Parsed<Policy> parse_policy_text(std::string_view yaml, std::string file_label, DeviceClass expected);

// The policy as YAML in the schema above (for `shadowctl policy show`);
// parse_policy_text() of the output gives the same Policy back.
std::string policy_to_yaml(const Policy& policy);

// Backoff before the n-th restart inside the window (n = 0 is the first):
// backoff_initial * backoff_multiplier^n, capped at backoff_max. Note that a
// backoff_initial of 0 makes every restart immediate.
std::chrono::milliseconds restart_backoff(const Policy& policy, uint32_t n);

}  // namespace sd::config
