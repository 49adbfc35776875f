// One copy between a page a guest granted (`ref`, at `offset`) and local
// memory, as dom0's user-space backends do it (grant copy: the guest's
// pages are never mapped); `ok` says whether the guest's grant allowed it.
// The same description from the frontends' guest ports down to the Xen
// platform's batch, so nothing is converted on the way.
#pragma once

#include <cstdint>

namespace sd {

struct GrantCopy {
  uint32_t ref;
  uint16_t offset, len;
  uint8_t* local;
  bool to_guest;
  bool ok;
};

}  // namespace sd
