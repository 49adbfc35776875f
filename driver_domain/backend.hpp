// What every backend in a driver domain looks like to the runtime's loop
// (one implementation per device class: vif/, vsnd/, vbd/).
#pragma once

#include <poll.h>

#include <atomic>
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
  virtual void set_config(const ctl::Msg&) {}
  // Test faults that only a backend can make: kStall stops serving; a bad-*
  // kind is played once on the rings (each backend's header says how).
  void inject(ctl::FaultKind k) {
    if (k == ctl::FaultKind::kStall)
      stalled_ = true;
    else
      garbage_ = static_cast<uint32_t>(k);
  }

 protected:
  // True if bad-* fault k is pending; `take` also clears it (it is played now).
  bool garbage(ctl::FaultKind k, bool take = true) {
    auto want = static_cast<uint32_t>(k);
    return take ? garbage_.compare_exchange_strong(want, 0) : garbage_.load() == want;
  }
  // Atomic: blkback's I/O thread reads them while the loop injects.
  std::atomic<bool> stalled_{false};
  std::atomic<uint32_t> garbage_{0};  // a ctl::FaultKind, 0 = none
};

}  // namespace sd::drvdom
