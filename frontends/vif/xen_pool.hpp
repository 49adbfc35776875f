// sd-netfront on Xen. In a guest (--xen): its control channel is a vchan
// offered to dom0 at /local/domain/<own domid>/data/sd-vif-<handle>, and its
// pools are granted with gntshr and event channels offered with evtchn, one
// pair per backend domain. In dom0 as the ring proxy of an unmodified guest
// (--xen-guest): the guest's side is its kernel netfront's rings (the vif's
// backend at /local/domain/0/backend/vif-proxy/<guest>/<handle>, which
// never moves), the pools are granted by dom0 the same way.
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

struct XenProxy {
  std::unique_ptr<PacketPort> port;
  std::unique_ptr<PoolSource> pools;
};

// The guest's side is the guest's kernel netfront on the backend shadowd
// laid out for it, served from here once it connects and until it leaves,
// then again when it comes back (a LatePort: each connect waits up to
// timeout_ms and is retried); the pools are dom0's.
Result<XenProxy> open_xen_proxy(uint32_t guest, uint64_t handle, int timeout_ms);

}  // namespace sd::front
