#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "vif/packet_port.hpp"

namespace sd::front {

void parse_dev_mcast(const std::string& text, const std::string& ifname, netif::VifConfig& cfg) {
  cfg.n_mcast = 0;
  std::memset(cfg.mcast, 0, sizeof(cfg.mcast));
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string index, name, users, global, hex;
    if (!(f >> index >> name >> users >> global >> hex) || name != ifname || hex.size() != 12) continue;
    uint8_t mac[6];
    bool ok = true;
    for (int i = 0; i < 6 && ok; ++i) {
      char* end = nullptr;
      std::string byte = hex.substr(static_cast<size_t>(2 * i), 2);
      unsigned long v = std::strtoul(byte.c_str(), &end, 16);
      ok = end && *end == '\0';
      mac[i] = static_cast<uint8_t>(v);
    }
    if (!ok) continue;
    if (cfg.n_mcast == 32) {
      cfg.allmulti = 1;
      continue;
    }
    std::memcpy(cfg.mcast[cfg.n_mcast++], mac, 6);
  }
}

Result<UniqueFd> TapPort::open_tap(const std::string& name, const uint8_t mac[6], int mtu, bool offloads) {
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return sys_fail("open /dev/net/tun");
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (offloads ? IFF_VNET_HDR : 0);
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) return sys_fail("TUNSETIFF " + name);
  // The guest's stack may then hand over TCP segments of up to 64 KiB with
  // their checksums left to fill in (ECN-marked ones it segments itself).
  if (offloads && ::ioctl(fd.get(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) != 0)
    return sys_fail("TUNSETOFFLOAD " + name);
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq hw{};
  std::strncpy(hw.ifr_name, name.c_str(), IFNAMSIZ - 1);
  hw.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  std::memcpy(hw.ifr_hwaddr.sa_data, mac, 6);
  if (::ioctl(s, SIOCSIFHWADDR, &hw) != 0) {
    ::close(s);
    return sys_fail("set MAC of " + name);
  }
  ifreq m{};
  std::strncpy(m.ifr_name, name.c_str(), IFNAMSIZ - 1);
  m.ifr_mtu = mtu;
  (void)::ioctl(s, SIOCSIFMTU, &m);
  ::close(s);
  return fd;
}

size_t TapPort::read(std::span<uint8_t* const> bufs, netif::Offload& off) {
  netif::VnetHdr h{};
  iovec iov[netif::kMaxDataSlots + 1];
  size_t n = 0;
  if (vnet_) iov[n++] = {&h, sizeof(h)};
  for (size_t i = 0; i < bufs.size() && i < netif::kMaxDataSlots; ++i) iov[n++] = {bufs[i], netif::kPageSize};
  const size_t head = vnet_ ? sizeof(h) : 0;
  for (;;) {
    ssize_t got = ::readv(fd_.get(), iov, static_cast<int>(n));
    if (got <= 0) return 0;  // EAGAIN: nothing waits
    size_t len = static_cast<size_t>(got) - std::min(head, static_cast<size_t>(got));
    off = {};
    // A netif tx request says a frame's size in 16 bits.
    bool ok = len >= netif::kEthHeader && len <= 0xffff && (!vnet_ || netif::from_vnet(h, off));
    if (ok) return len;
    ++dropped_;
  }
}

void TapPort::write(std::span<const iovec> frame, const netif::Offload& off) {
  netif::VnetHdr h{};
  iovec iov[netif::kMaxDataSlots + 1];
  size_t n = 0;
  if (vnet_) {
    if (frame.empty() || !netif::to_vnet(off, static_cast<const uint8_t*>(frame[0].iov_base), frame[0].iov_len, h)) {
      ++dropped_;
      return;
    }
    iov[n++] = {&h, sizeof(h)};
  }
  for (size_t i = 0; i < frame.size() && n < std::size(iov); ++i) iov[n++] = frame[i];
  (void)!::writev(fd_.get(), iov, static_cast<int>(n));
}

bool TapPort::set_mtu(uint16_t mtu) {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname_.c_str(), IFNAMSIZ - 1);
  ifr.ifr_mtu = mtu;
  bool ok = ::ioctl(s, SIOCSIFMTU, &ifr) == 0;
  ::close(s);
  return ok;
}

void TapPort::read_config(netif::VifConfig& c) {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname_.c_str(), IFNAMSIZ - 1);
  if (::ioctl(s, SIOCGIFMTU, &ifr) == 0) c.mtu = static_cast<uint16_t>(ifr.ifr_mtu);
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
    c.promisc = (ifr.ifr_flags & IFF_PROMISC) ? 1 : 0;
    c.allmulti = (ifr.ifr_flags & IFF_ALLMULTI) ? 1 : 0;
  }
  ::close(s);
  std::ifstream mc("/proc/net/dev_mcast");  // this process lives in the guest's netns
  std::stringstream text;
  text << mc.rdbuf();
  parse_dev_mcast(text.str(), ifname_, c);
}

}  // namespace sd::front
