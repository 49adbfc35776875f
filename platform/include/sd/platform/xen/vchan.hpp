// The control channel on Xen, as the domain that offers it uses it (drvdom in
// a driver domain, sd-netfront in a guest): a libxenvchan to dom0 carrying
// the same fixed-size ctl::Msg as the local platform's socket, pumped by a
// thread into a ctl::Channel, so their loops stay the same on both platforms.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "sd/core/control_channel.hpp"
#include "sd/core/error.hpp"

namespace sd::xen {

// Where a driver domain's runtime offers its control vchan to dom0 (its own
// xenstore home, writable by it and readable by dom0).
inline std::string control_path(int domid) { return "/local/domain/" + std::to_string(domid) + "/data/sd-ctl"; }

// Where a guest's vif frontend (sd-netfront --xen) offers its control vchan.
inline std::string vif_channel_path(int guest_domid, uint64_t index) {
  return "/local/domain/" + std::to_string(guest_domid) + "/data/sd-vif-" + std::to_string(index);
}

// In a domU: this domain's id and name, from its own xenstore home.
// kUnavailable when not on Xen.
Result<std::pair<int, std::string>> self_identity();

// Offers the vchan to `peer` at `xs_path` and returns the Channel end; the
// pump thread ends when the vchan or the Channel closes. kUnavailable with
// the reason if it cannot (no gntalloc/evtchn device, no xenstore).
Result<ctl::Channel> offer_channel(int peer, const std::string& xs_path);

}  // namespace sd::xen
