// What a device class implements in shadowd (vif/, vsnd/, vbd/, same shape
// each). DeviceShadow owns the states; the class owns what happens in them.
#pragma once

#include <functional>
#include <optional>
#include <nlohmann/json.hpp>
#include <vector>

#include "sd/core/control_channel.hpp"
#include "sd/core/platform.hpp"

namespace sd::dom0 {

struct ResumeTimes {
  double replay_ms = 0;  // config log replayed + inflight requests requeued
  double resume_ms = 0;  // ring handed to the new backend, serving again
  uint32_t replayed = 0;  // requests replayed
};

class DeviceImpl {
 public:
  using Done = std::function<void(Result<ResumeTimes>)>;
  virtual ~DeviceImpl() = default;
  // Builds the device's plumbing before any driver domain starts.
  virtual Result<void> setup() = 0;
  // The backend failed: enter active mode (answer per policy).
  virtual void on_fault() = 0;
  // The failed backend is dead for sure (nothing else touches the rings):
  // shadowd may now play the backend itself until a new one is ready.
  virtual void on_backend_dead() = 0;
  // A backend incarnation is ready: replay the shadow into it and hand the
  // ring back; `done` runs once (on the io_context) when it serves again.
  virtual void on_backend_ready(ctl::Channel& ch, platform::DomId domid, Done done) = 0;
  // A device message from driver-domain incarnation `from` (kDevAttached, kDevFault).
  virtual void on_backend_msg(platform::DomId from, const ctl::Msg& m) = 0;
  // A warm standby incarnation is Ready: pre-attach it (grant and map the
  // pages, leave the rings alone) so a promotion only has to say go.
  virtual void on_standby_ready(ctl::Channel& ch, platform::DomId domid) = 0;
  virtual void teardown() = 0;
  virtual nlohmann::json status() const = 0;
};

// How a device class reports a backend fault it detected (bad response,
// stalled ring) to the supervisor of its driver domain.
// `began` is when the fault started, if the detector can tell.
using FaultReporter =
    std::function<void(const std::string& cause, std::optional<platform::Clock::time_point> began)>;

}  // namespace sd::dom0
