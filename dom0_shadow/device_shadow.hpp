// The per-device recovery state machine. One DeviceShadow per guest device
// (vif, vbd, vsnd); the device classes fill in what "answer", "replay" and
// "resume" mean for them, this class owns the states and their timing.
//
//  state       | event                        | action                              | next
//  ------------+------------------------------+-------------------------------------+-----------
//  Normal      | backend fault (death, hang,  | take the backend side of the ring,  | Active
//              |   bad response)              |   answer per policy (active mode)   |
//  Active      | new backend ready            | replay config log, resubmit inflight| Recovering
//  Recovering  | replay done                  | hand the ring back, leave active    | Normal
//  Recovering  | backend fault                | back to answering                   | Active
//  Active      | restart budget exhausted     | keep answering errors, no restarts  | Fenced
//  Normal      | restart budget exhausted     | (only if the fault came in Normal)  | Fenced
//  Fenced      | operator restart             | as "backend fault" then ready       | Active
//  any but     | this device could not be     | report it (event, `devices`); the   | Failed
//   Fenced     |   attached (refused, lost)   |   domain's other devices serve on   |
//  Failed      | backend fault / new backend  | try again with the next incarnation | Active /
//              |   ready                      |                                     | Recovering
//
// The guest's device never leaves Connected in any of these states.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "sd/config/xl_cfg.hpp"

namespace sd::dom0 {

enum class DeviceState { kNormal, kActive, kRecovering, kFenced, kFailed };
std::string_view state_name(DeviceState s);

class DeviceShadow {
 public:
  using Clock = std::chrono::steady_clock;
  DeviceShadow(std::string guest, const config::DeviceSpec& spec);

  const std::string& id() const { return id_; }  // "guest1/vif/0"
  const std::string& backend() const { return backend_; }
  config::DeviceClass cls() const { return cls_; }
  DeviceState state() const { return state_; }

  // Transitions; each returns false (and changes nothing) when the event is
  // not valid in the current state, so a late or duplicate event is harmless.
  bool on_backend_fault(Clock::time_point when);
  bool on_backend_ready();
  bool on_replayed();
  bool on_fenced();
  bool on_failed(const std::string& why);

  // Time spent in active mode by the last completed recovery, in ms.
  std::optional<double> last_outage_ms() const { return last_outage_ms_; }
  uint64_t recoveries() const { return recoveries_; }
  nlohmann::json to_json() const;

 private:
  std::string id_, backend_;
  config::DeviceClass cls_;
  DeviceState state_ = DeviceState::kNormal;
  Clock::time_point fault_at_{};
  std::optional<double> last_outage_ms_;
  uint64_t recoveries_ = 0;
  std::string error_;  // why the device failed (state Failed)
};

}  // namespace sd::dom0
