// What every backend in a driver domain looks like to the runtime's loop
// (one implementation per device class: vif/, vsnd/, vbd/).
#pragma once

#include <poll.h>

#include <cstdint>
#include <vector>

#include "sd/core/control_channel.hpp"
#include "sd/core/error.hpp"

namespace sd::drvdom {

class Backend {
 public:
  virtual ~Backend() = default;
  // Adds the fds this backend waits on.
  virtual void poll_fds(std::vector<pollfd>& fds) = 0;
  // Does all work that is ready without blocking. An error means the
  // frontend broke the protocol: the runtime reports it and drops the device.
  virtual Result<void> service() = 0;
  virtual void set_config(const ctl::Msg& m) = 0;
  // Test faults that only a backend can make (garbage on its rings, stall).
  virtual void inject(ctl::FaultKind k) = 0;
};

}  // namespace sd::drvdom
