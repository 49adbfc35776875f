// sd-netfront on Xen (--xen): its control channel is a vchan offered to
// dom0 at /local/domain/<own domid>/data/sd-vif-<handle>, and its pools are
// granted with gntshr and event channels offered with evtchn, one pair per
// backend domain.
#pragma once

#include <memory>
#include <string>

#include "vif/netfront.hpp"

namespace sd::front {

struct XenFrontend {
  ctl::Channel channel;
  std::unique_ptr<PoolSource> pools;
  int domid = -1;
};

// kUnavailable when not on Xen (or built without the Xen libraries).
Result<XenFrontend> open_xen_frontend(uint64_t handle);

}  // namespace sd::front
