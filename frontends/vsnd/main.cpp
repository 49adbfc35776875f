// sd-sndfront: the dom0 ring proxy of an unmodified Xen guest's sound
// stream (its kernel's snd-xen-front), started by shadowd. Guests running
// the project's own frontend use the ALSA plugin (pcm_shadow.cpp) instead.
#include <getopt.h>

#include <cstdio>
#include <cstdlib>

#include "vsnd/xen_guest.hpp"

namespace {
const char kUsage[] = "usage: sd-sndfront --xen-guest DOMID --handle N --control-fd FD\n";
}

int main(int argc, char** argv) {
  long guest = -1, handle = -1, control_fd = -1;
  static const option kOpts[] = {{"xen-guest", required_argument, nullptr, 'G'},
                                 {"handle", required_argument, nullptr, 'H'},
                                 {"control-fd", required_argument, nullptr, 'c'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  for (int c; (c = getopt_long(argc, argv, "h", kOpts, nullptr)) != -1;) {
    switch (c) {
      case 'G': guest = std::strtol(optarg, nullptr, 10); break;
      case 'H': handle = std::strtol(optarg, nullptr, 10); break;
      case 'c': control_fd = std::strtol(optarg, nullptr, 10); break;
      case 'h':
        std::printf("%s\nXen, unmodified guest: shadowd runs it in dom0; it is the backend of the\n"
                    "guest's own snd-xen-front and relays to the sound driver domain.\n",
                    kUsage);
        return 0;
      default: std::fputs(kUsage, stderr); return 2;
    }
  }
  if (guest <= 0 || guest >= 0x7ff0 || handle < 0 || handle > 0x7fffffff || control_fd < 0 || optind != argc) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  sd::ctl::Channel ch{sd::UniqueFd(static_cast<int>(control_fd))};
  return sd::front::serve_xen_guest_sound(static_cast<uint32_t>(guest), static_cast<uint64_t>(handle), std::move(ch));
}
