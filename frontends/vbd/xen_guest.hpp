// sd-blkfront --xen-guest: the dom0 ring proxy of an unmodified Xen guest's
// disk. shadowd lays out the guest's vbd (frontend device/vbd/<n>, backend
// /local/domain/0/backend/vbd-proxy/<guest>/<n>, which never moves) and
// starts this with its control channel. The proxy is the guest's kernel
// blkfront's backend (GuestDisk: the xenbus handshake, its ring, grant
// copies of its segments) and, towards the driver domain, the vbd's beam
// splitter (Blkfront over a pool dom0 grants to each incarnation, replayed
// into the next after a crash). The guest's ring never meets a driver
// domain.
#pragma once

#include <cstdint>

#include "sd/core/control_channel.hpp"

namespace sd::front {

// Serves until shadowd goes away (exit status 0), or returns 1 with the
// reason on stderr. The guest's blkfront may connect at any time: its
// handshake is awaited (retried) while the splitter already serves shadowd.
int serve_xen_guest_disk(uint32_t guest, uint64_t handle, ctl::Channel shadowd);

}  // namespace sd::front
