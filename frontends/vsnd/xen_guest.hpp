// sd-sndfront --xen-guest: the dom0 ring proxy of an unmodified Xen guest's
// sound stream. shadowd lays out the guest's vsnd card (frontend
// device/vsnd/<n> with one PCM device of one playback stream, backend
// /local/domain/0/backend/vsnd-proxy/<guest>/<n>, which never moves) and
// starts this with its control channel. The proxy is the guest's kernel
// snd-xen-front's backend (GuestSound: the xenbus handshake, the stream's
// request ring and event page, grant copies of its buffer) and, towards the
// driver domain, the vsnd's beam splitter (Sndfront over a pool dom0 grants
// to each incarnation, replayed into the next after a crash).
#pragma once

#include <cstdint>

#include "sd/core/control_channel.hpp"

namespace sd::front {

// Serves until shadowd goes away (exit status 0), or returns 1 with the
// reason on stderr. The guest's side may connect, leave and come back at
// any time while the splitter serves shadowd.
int serve_xen_guest_sound(uint32_t guest, uint64_t handle, ctl::Channel shadowd);

}  // namespace sd::front
