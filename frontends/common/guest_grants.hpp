// The pages an unmodified Xen guest grants per request (a netfront's
// frame, a blkfront's segment), as the dom0 ring proxy reaches them: by
// grant copy, never mapped, a batch per call. The proxy's guest-facing
// ports of every class use this one interface (Xen: xen_pool.cpp's adapter
// over gntdev; tests: an in-memory map of refs).
#pragma once

#include <cstddef>
#include <cstdint>

#include "sd/core/grant_copy.hpp"

namespace sd::front {

using sd::GrantCopy;

// The guest's granted pages as dom0 reaches them (Xen: grant copy, a batch
// per call, so a frame's slots, or a flush's frames, cost one system call).
class GuestGrants {
 public:
  virtual ~GuestGrants() = default;
  virtual void copy(GrantCopy* ops, size_t n) = 0;
};

}  // namespace sd::front
