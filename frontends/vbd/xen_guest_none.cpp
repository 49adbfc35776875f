// sd-blkfront built without libxen-dev: --xen-guest explains why it cannot run.
#include <cstdio>

#include "vbd/xen_guest.hpp"

namespace sd::front {

int serve_xen_guest_disk(uint32_t, uint64_t, ctl::Channel) {
  std::fputs("sd-blkfront: this sd-blkfront was built without the Xen libraries (install libxen-dev and rebuild)\n",
             stderr);
  return 1;
}

}  // namespace sd::front
