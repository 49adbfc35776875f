// drvdom on Xen: the control channel to shadowd is a libxenvchan this domain
// offers to dom0 at /local/domain/<own domid>/data/sd-ctl (a thread pumps it
// into a socket pair, so the runtime's loop is the same on both platforms);
// a device's pool comes as grant refs (ctl::XenPool) and is mapped with
// gntdev, its event channel bound with evtchn, its NIC opened here.
#pragma once

#include <memory>
#include <string>

#include "granted_pages.hpp"
#include "sd/core/control_channel.hpp"
#include "sd/core/error.hpp"
#include "sd/core/platform.hpp"

namespace sd::drvdom {

struct XenControl {
  ctl::Channel channel;
  int domid = -1;
  std::string name;  // the domain's name in xenstore
};

// Reads this domain's id and name from xenstore, offers the vchan and
// starts the pump thread. kUnavailable with the reason when not on Xen.
Result<XenControl> open_xen_control();

// What a backend needs from a XenPool: the mapped pool, the bound event
// channel and the name of this domain's device for it (its class opens
// it). kInvalidInput when the pool cannot be mapped or the port bound (the
// guest's or shadowd's fault).
struct XenDevice {
  std::unique_ptr<GrantedPages> pages;
  std::unique_ptr<platform::EventChannel> evt;
  std::string device;
};
Result<XenDevice> attach_xen_pool(const ctl::XenPool& pool, size_t expected_pages);

}  // namespace sd::drvdom
