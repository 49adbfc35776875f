// What one driver domain can hold, stated once. The local sandbox applies
// the fd limit and caps the address space at the domain's `memory` plus
// kRuntimeMiB; `shadowd --check` (and shadowd at start) adds up the devices
// a host file puts on each driver domain against both, so an over-full
// domain is refused at the device's FILE:LINE instead of failing attaches
// in a crash loop. Message sizes need no check: every class's attach
// payload is a fixed struct checked against Msg::text at compile time.
#pragma once

#include <cstdint>

#include "sd/core/blkif.hpp"
#include "sd/core/device_class.hpp"
#include "sd/core/netif.hpp"
#include "sd/core/sndif.hpp"

namespace sd::limits {

inline constexpr unsigned kDomainFds = 1024;  // a driver domain's RLIMIT_NOFILE
inline constexpr unsigned kRuntimeFds = 16;   // stdio, log, control channel, timers
inline constexpr uint64_t kRuntimeMiB = 64;   // added to `memory`: the runtime itself
inline constexpr uint64_t kRuntimeUseKiB = 8 << 10;  // of which the runtime uses (measured ~5 MiB)

struct DeviceCost {
  uint64_t kib;  // address space in the driver domain
  unsigned fds;  // fds it keeps open
};

// One attached device in its driver domain: the guest's pool mapped, plus
// what the backend keeps; fds: the event channel's two, then the resources.
// (Measured with 1 and 16 devices: vif 2056 KiB and 3 fds, vbd 9608 KiB and
// 5 fds per device, the vbd's when its pool had 32 ids, 1.4 MiB; it has 64
// now, 2.8 MiB.)
constexpr DeviceCost device_cost(DeviceClass c) {
  constexpr uint64_t kPageKiB = 4;
  switch (c) {
    case DeviceClass::kVif:  // the rings and one buffer page per slot; NIC
      return {netif::kPoolPages * kPageKiB, 3};
    case DeviceClass::kVbd:  // the ring and 11 pages per request; the I/O thread's 8 MiB stack; disk, 2 eventfds
      return {blkif::kPoolPages * kPageKiB + (8 << 10) + 4, 5};
    case DeviceClass::kVsnd:  // ring, event page, directory and PCM buffer; the DAC's shared memory; DAC, interrupt
      return {sndif::kPoolPages * kPageKiB + (sndif::kDacBytes + 1023) / 1024, 4};
  }
  return {0, 0};
}

}  // namespace sd::limits
