#include "xen_control.hpp"

#include <arpa/inet.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "sd/platform/xen/evtchn.hpp"
#include "sd/platform/xen/grants.hpp"
#include "sd/platform/xen/vchan.hpp"

namespace sd::drvdom {

Result<XenControl> open_xen_control() {
  auto self = xen::self_identity();
  if (!self) return std::unexpected(self.error());
  XenControl out;
  out.domid = self->first;
  out.name = self->second;
  auto ch = xen::offer_channel(0, xen::control_path(out.domid));
  if (!ch) return std::unexpected(ch.error());
  out.channel = std::move(*ch);
  return out;
}

namespace {

// The NIC: every frame on the interface, in and out (the driver domain owns it).
Result<UniqueFd> open_nic(const std::string& ifname) {
  unsigned idx = ::if_nametoindex(ifname.c_str());
  if (idx == 0) return fail(Code::kInvalidInput, "NIC '" + ifname + "' not found in this driver domain");
  UniqueFd s(::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  if (!s) return sys_fail("packet socket on " + ifname);
  sockaddr_ll a{};
  a.sll_family = AF_PACKET;
  a.sll_protocol = htons(ETH_P_ALL);
  a.sll_ifindex = static_cast<int>(idx);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return sys_fail("bind to " + ifname);
  // Frames for the guest's MAC are not for this domain's own stack.
  packet_mreq m{};
  m.mr_ifindex = static_cast<int>(idx);
  m.mr_type = PACKET_MR_PROMISC;
  (void)::setsockopt(s.get(), SOL_PACKET, PACKET_ADD_MEMBERSHIP, &m, sizeof(m));
  // No receive coalescing: a packet socket would see GRO's merged frames,
  // larger than a guest's page-sized buffer. One wire frame per buffer.
  ethtool_value gro{ETHTOOL_SGRO, 0};
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&gro);
  if (::ioctl(s.get(), SIOCETHTOOL, &ifr) != 0)
    std::fprintf(stderr, "drvdom: cannot switch GRO off on %s: %s\n", ifname.c_str(), std::strerror(errno));
  return s;
}

}  // namespace

Result<XenDevice> attach_xen_pool(const ctl::XenPool& pool, size_t expected_pages) {
  if (pool.pages != expected_pages)
    return fail(Code::kInvalidInput, "pool of " + std::to_string(pool.pages) + " pages, expected " +
                                         std::to_string(expected_pages));
  std::string nic(pool.nic, strnlen(pool.nic, sizeof(pool.nic)));
  if (nic.empty() || nic.size() >= IFNAMSIZ) return fail(Code::kInvalidInput, "no NIC name for the device");
  // Timed, on the console: under emulation an attach has taken seconds.
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  auto t0 = Clock::now();
  auto mapped = xen::MappedPool::map(pool.owner, pool.dir_ref, pool.pages);
  if (!mapped) return std::unexpected(mapped.error());
  auto t1 = Clock::now();
  auto evt = xen::XenEventChannel::bind(pool.owner, pool.port);
  if (!evt) return std::unexpected(evt.error());
  auto t2 = Clock::now();
  auto s = open_nic(nic);
  if (!s) return std::unexpected(s.error());
  std::fprintf(stderr, "drvdom: attached %u pages of domain %u: map %.1f ms, event channel %.1f ms, NIC %.1f ms\n",
               pool.pages, pool.owner, ms(t0, t1), ms(t1, t2), ms(t2, Clock::now()));
  XenDevice d;
  std::shared_ptr<xen::MappedPool> keep(std::move(*mapped));
  // The mapping lives as long as the GrantedPages (which holds `keep`).
  d.pages = std::make_unique<GrantedPages>(keep->base(), keep->pages(), [keep](uint8_t*, size_t) {});
  d.evt = std::move(*evt);
  d.nic = std::move(*s);
  return d;
}

}  // namespace sd::drvdom
