#include "device_shadow.hpp"

#include "event_log.hpp"

namespace sd::dom0 {

std::string_view state_name(DeviceState s) {
  switch (s) {
    case DeviceState::kNormal: return "normal";
    case DeviceState::kActive: return "active";
    case DeviceState::kRecovering: return "recovering";
    case DeviceState::kFenced: return "fenced";
    case DeviceState::kFailed: return "failed";
  }
  return "?";
}

DeviceShadow::DeviceShadow(std::string guest, const config::DeviceSpec& spec)
    : id_(guest + "/" + config::device_name(spec)),
      backend_(spec.backend),
      cls_(spec.cls) {}

bool DeviceShadow::on_backend_fault(Clock::time_point when) {
  if (state_ == DeviceState::kNormal || state_ == DeviceState::kFailed) {
    fault_at_ = when;
    state_ = DeviceState::kActive;
    return true;
  }
  if (state_ == DeviceState::kRecovering) {
    state_ = DeviceState::kActive;  // keep the first fault time: the outage goes on
    return true;
  }
  return false;
}

bool DeviceShadow::on_backend_ready() {
  if (state_ == DeviceState::kFenced) {
    fault_at_ = Clock::now();
    state_ = DeviceState::kRecovering;
    return true;
  }
  if (state_ == DeviceState::kFailed) {
    state_ = DeviceState::kRecovering;  // keep the first fault time, if any
    return true;
  }
  if (state_ != DeviceState::kActive) return false;
  state_ = DeviceState::kRecovering;
  return true;
}

bool DeviceShadow::on_replayed() {
  if (state_ != DeviceState::kRecovering) return false;
  state_ = DeviceState::kNormal;
  last_outage_ms_ = ms_between(fault_at_, Clock::now());
  ++recoveries_;
  return true;
}

bool DeviceShadow::on_fenced() {
  if (state_ == DeviceState::kFenced) return false;
  state_ = DeviceState::kFenced;
  return true;
}

bool DeviceShadow::on_failed(const std::string& why) {
  if (state_ == DeviceState::kFenced) return false;
  state_ = DeviceState::kFailed;
  error_ = why;
  return true;
}

nlohmann::json DeviceShadow::to_json() const {
  nlohmann::json j{{"device", id_},
                   {"class", std::string(config::class_name(cls_))},
                   {"backend", backend_},
                   {"state", std::string(state_name(state_))},
                   {"recoveries", recoveries_}};
  if (state_ == DeviceState::kFailed) j["error"] = error_;
  j["last_outage_ms"] = last_outage_ms_ ? nlohmann::json(*last_outage_ms_) : nlohmann::json(nullptr);
  return j;
}

}  // namespace sd::dom0
