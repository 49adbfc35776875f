// sd-netfront: the guest side of one vif. Local platform: shadowd starts it
// inside the guest's network namespace with its control channel on fd 3.
// Xen (--xen): the guest's init starts it; it offers its control channel to
// dom0 as a vchan and waits for shadowd. Either way it creates the guest's
// TAP device and serves it until shadowd goes away. Xen, as the dom0 ring
// proxy of an unmodified guest (--xen-guest, started by shadowd in dom0):
// no TAP; the guest's own kernel netfront is served instead.
#include <getopt.h>
#include <net/if.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "vif/netfront.hpp"
#include "vif/xen_pool.hpp"

namespace {

const char kUsage[] =
    "usage: sd-netfront --control-fd FD --ifname NAME --mac MAC [--mtu N]\n"
    "       sd-netfront --xen [--handle N] --ifname NAME --mac MAC [--mtu N]\n"
    "       sd-netfront --xen-guest DOMID [--handle N] --control-fd FD --mac MAC\n"
    "--mtu: the vif's MTU and the most its path carries (1500 by default); a higher one set on the\n"
    "interface is put back\n";

}  // namespace

int main(int argc, char** argv) {
  int control_fd = -1, mtu = 1500;
  bool xen = false;
  long handle = 0, guest = -1;
  std::string ifname, mac;
  static const option kOpts[] = {{"control-fd", required_argument, nullptr, 'c'},
                                 {"ifname", required_argument, nullptr, 'i'},
                                 {"mac", required_argument, nullptr, 'm'},
                                 {"mtu", required_argument, nullptr, 'M'},
                                 {"xen", no_argument, nullptr, 'X'},
                                 {"handle", required_argument, nullptr, 'H'},
                                 {"xen-guest", required_argument, nullptr, 'G'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  for (int c; (c = getopt_long(argc, argv, "h", kOpts, nullptr)) != -1;) {
    switch (c) {
      case 'c': control_fd = std::atoi(optarg); break;
      case 'i': ifname = optarg; break;
      case 'm': mac = optarg; break;
      case 'M': mtu = std::atoi(optarg); break;
      case 'X': xen = true; break;
      case 'H': handle = std::strtol(optarg, nullptr, 10); break;
      case 'G': guest = std::strtol(optarg, nullptr, 10); break;
      case 'h':
        std::printf("%s\nThe guest side of a vif: a TAP device fed by Xen netif rings.\n"
                    "Local platform: shadowd starts it in the guest's network namespace.\n"
                    "Xen: the guest runs it with --xen; it offers its control channel to dom0 at\n"
                    "/local/domain/<domid>/data/sd-vif-<handle> and waits for shadowd.\n"
                    "Xen, unmodified guest: shadowd runs it in dom0 with --xen-guest; it is the\n"
                    "backend of the guest's own xen-netfront and relays to the driver domain.\n",
                    kUsage);
        return 0;
      default: std::fputs(kUsage, stderr); return 2;
    }
  }
  sd::netif::VifConfig cfg{};
  if (guest >= 0) {
    if (guest == 0 || guest >= 0x7ff0 || control_fd < 0 || handle < 0 || handle > 65535 ||
        !sd::netif::parse_mac(mac, cfg.mac)) {
      std::fputs(kUsage, stderr);
      return 2;
    }
    cfg.mtu = 1500;
    cfg.features = sd::netif::kFeatureRxCopy;
    auto x = sd::front::open_xen_proxy(static_cast<uint32_t>(guest), static_cast<uint64_t>(handle), 60000);
    if (!x) {
      std::fprintf(stderr, "sd-netfront: %s\n", x.error().to_string().c_str());
      return 1;
    }
    sd::ctl::Channel ch{sd::UniqueFd(control_fd)};
    (void)ch.set_nonblocking(true);
    sd::front::Netfront nf(std::move(ch), std::move(x->port), cfg, std::move(x->pools));
    return nf.run();
  }
  if ((xen ? (control_fd >= 0 || handle < 0 || handle > 65535) : control_fd < 0) || ifname.empty() || ifname.size() >= IFNAMSIZ || !sd::netif::parse_mac(mac, cfg.mac) || mtu < 68 ||
      mtu > 65535) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  cfg.mtu = static_cast<uint16_t>(mtu);
  cfg.features = sd::netif::kFeatureRxCopy;
  // Offloads (64 KiB TCP segments, partial checksums) where the driver
  // domain's NIC is the local platform's veth; a Xen driver domain's NIC
  // gets one frame per page, as before.
  const bool offloads = !xen;
  if (!offloads && mtu > static_cast<int>(sd::netif::kPageSize - sd::netif::kEthHeader)) {
    std::fprintf(stderr, "sd-netfront: --mtu %d: this vif carries one page per frame (an MTU of at most %u)\n", mtu,
                 sd::netif::kPageSize - sd::netif::kEthHeader);
    return 2;
  }
  auto fd = sd::front::TapPort::open_tap(ifname, cfg.mac, mtu, offloads);
  if (!fd) {
    std::fprintf(stderr, "sd-netfront: %s\n", fd.error().to_string().c_str());
    return 1;
  }
  auto tap = std::make_unique<sd::front::TapPort>(std::move(*fd), ifname, offloads);
  if (xen) {
    auto x = sd::front::open_xen_frontend(static_cast<uint64_t>(handle));
    if (!x) {
      std::fprintf(stderr, "sd-netfront: %s\n", x.error().to_string().c_str());
      return 1;
    }
    std::fprintf(stderr, "sd-netfront: %s in domain %d, control vchan offered to dom0\n", ifname.c_str(), x->domid);
    (void)x->channel.set_nonblocking(true);
    sd::front::Netfront nf(std::move(x->channel), std::move(tap), cfg, std::move(x->pools));
    return nf.run();
  }
  sd::ctl::Channel ch{sd::UniqueFd(control_fd)};
  (void)ch.set_nonblocking(true);
  sd::front::Netfront nf(std::move(ch), std::move(tap), cfg);
  return nf.run();
}
