#include <net/if.h>
#include <sys/ioctl.h>
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

size_t TapPort::read(uint8_t* buf, size_t cap) {
  for (;;) {
    ssize_t n = ::read(fd_.get(), buf, cap);
    if (n <= 0) return 0;  // EAGAIN: nothing waits
    if (n >= static_cast<ssize_t>(netif::kEthHeader)) return static_cast<size_t>(n);
  }
}

void TapPort::write(const uint8_t* frame, size_t len) { (void)!::write(fd_.get(), frame, len); }

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
