// The pages an unmodified Xen guest grants per request (a netfront's
// frame, a blkfront's segment), as the dom0 ring proxy reaches them: by
// grant copy, never mapped, a batch per call. The proxy's guest-facing
// ports of every class use this one interface (Xen: xen_pool.cpp's adapter
// over gntdev; tests: an in-memory map of refs).
#pragma once

#include <cstddef>
#include <cstdint>

namespace sd::front {

// One copy between a page the guest granted (`ref`, at `offset`) and local
// memory; `ok` says whether the guest's grant allowed it.
struct GrantCopy {
  uint32_t ref;
  uint16_t offset, len;
  uint8_t* local;
  bool to_guest;
  bool ok;
};

// The guest's granted pages as dom0 reaches them (Xen: grant copy, a batch
// per call, so a frame's slots, or a flush's frames, cost one system call).
class GuestGrants {
 public:
  virtual ~GuestGrants() = default;
  virtual void copy(GrantCopy* ops, size_t n) = 0;
};

}  // namespace sd::front
