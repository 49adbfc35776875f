// sd-sndfront built without libxen-dev: --xen-guest explains why it cannot run.
#include <cstdio>

#include "vsnd/xen_guest.hpp"

namespace sd::front {

int serve_xen_guest_sound(uint32_t, uint64_t, ctl::Channel) {
  std::fputs("sd-sndfront: this sd-sndfront was built without the Xen libraries (install libxen-dev and rebuild)\n",
             stderr);
  return 1;
}

}  // namespace sd::front
