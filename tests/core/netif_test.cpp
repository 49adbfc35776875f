// netif's offload helpers (sd/core/netif.hpp): where a frame's transport
// checksum sits, the virtio-net header that TAP and packet sockets use
// turned into netif's flags and GSO extra and back, and GSO extras read
// from untrusted ring slots.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "sd/core/netif.hpp"

namespace sd::netif {
namespace {

// An Ethernet frame with IPv4 (or IPv6) and TCP (or UDP) headers, after an
// optional VLAN tag.
std::vector<uint8_t> frame(bool v6, uint8_t proto, bool vlan = false, unsigned tcp_words = 5) {
  std::vector<uint8_t> f(14, 0);
  if (vlan) {
    f[12] = 0x81, f[13] = 0x00;
    f.insert(f.end(), {0, 1, 0, 0});
  }
  size_t type_at = f.size() - 2;
  f[type_at] = v6 ? 0x86 : 0x08;
  f[type_at + 1] = v6 ? 0xdd : 0x00;
  if (v6) {
    std::vector<uint8_t> ip(40, 0);
    ip[0] = 0x60, ip[6] = proto;
    f.insert(f.end(), ip.begin(), ip.end());
  } else {
    std::vector<uint8_t> ip(20, 0);
    ip[0] = 0x45, ip[9] = proto;
    f.insert(f.end(), ip.begin(), ip.end());
  }
  std::vector<uint8_t> l4(proto == 6 ? std::max(tcp_words, 5u) * 4 : 8, 0);
  if (proto == 6) l4[12] = static_cast<uint8_t>(tcp_words << 4);
  f.insert(f.end(), l4.begin(), l4.end());
  f.resize(f.size() + 100, 0xab);  // payload
  return f;
}

TEST(NetifFindL4, TcpAndUdpOverIpv4AndIpv6_OffsetsOfHeadersAndChecksum) {
  auto tcp4 = frame(false, 6);
  auto h = find_l4(tcp4.data(), tcp4.size());
  ASSERT_TRUE(h);
  EXPECT_EQ(h->l4, 34);
  EXPECT_EQ(h->csum, 34 + 16);
  EXPECT_EQ(h->end, 34 + 20);
  EXPECT_FALSE(h->v6);
  auto udp6 = frame(true, 17, /*vlan=*/true);
  h = find_l4(udp6.data(), udp6.size());
  ASSERT_TRUE(h);
  EXPECT_EQ(h->l3, 18);
  EXPECT_EQ(h->l4, 58);
  EXPECT_EQ(h->csum, 58 + 6);
  EXPECT_TRUE(h->v6);
  auto opts = frame(false, 6, false, 8);  // TCP with 12 bytes of options
  EXPECT_EQ(find_l4(opts.data(), opts.size())->end, 34 + 32);
}

TEST(NetifFindL4, OtherProtocolsOrCutHeaders_Nothing) {
  auto icmp = frame(false, 1);
  EXPECT_FALSE(find_l4(icmp.data(), icmp.size()));
  auto tcp = frame(false, 6);
  EXPECT_FALSE(find_l4(tcp.data(), 40));  // cut inside the TCP header
  tcp[14] = 0x41;                          // IHL 4: shorter than an IPv4 header
  EXPECT_FALSE(find_l4(tcp.data(), tcp.size()));
  auto bad = frame(false, 6, false, 2);  // TCP data offset 2 words: before the checksum
  EXPECT_FALSE(find_l4(bad.data(), bad.size()));
  uint8_t arp[60] = {};
  arp[12] = 0x08, arp[13] = 0x06;
  EXPECT_FALSE(find_l4(arp, sizeof(arp)));
}

// A 64 KiB TCP segment from a TAP device: netif says it as csum_blank and
// a GSO extra; the backend's header for its packet socket says the same.
TEST(NetifVnet, TcpSegment_ThereAndBack) {
  auto f = frame(false, 6);
  VnetHdr tap{kVnetNeedsCsum, kVnetGsoTcp4 | kVnetGsoEcn, 54, 1448, 34, 16};
  Offload off;
  ASSERT_TRUE(from_vnet(tap, off));
  EXPECT_TRUE(off.csum_blank);
  EXPECT_EQ(off.gso_type, XEN_NETIF_GSO_TYPE_TCPV4);
  EXPECT_EQ(off.gso_size, 1448);
  auto extra = gso_extra<netif_tx_request>(off);
  Offload back;
  ASSERT_TRUE(read_gso_extra(extra, back));
  back.csum_blank = off.csum_blank;
  VnetHdr out{};
  ASSERT_TRUE(to_vnet(back, f.data(), f.size(), out));
  EXPECT_EQ(out.flags, kVnetNeedsCsum);
  EXPECT_EQ(out.gso_type, kVnetGsoTcp4);
  EXPECT_EQ(out.gso_size, 1448);
  EXPECT_EQ(out.csum_start, 34);
  EXPECT_EQ(out.csum_offset, 16);
  EXPECT_EQ(out.hdr_len, 54);
}

TEST(NetifVnet, WhatNetifDoesNotCarry_Refused) {
  Offload off;
  VnetHdr udp_gso{kVnetNeedsCsum, 3, 42, 1472, 34, 6};  // UDP fragmentation offload
  EXPECT_FALSE(from_vnet(udp_gso, off));
  VnetHdr no_mss{kVnetNeedsCsum, kVnetGsoTcp6, 74, 0, 54, 16};
  EXPECT_FALSE(from_vnet(no_mss, off));
  VnetHdr plain{kVnetDataValid, kVnetGsoNone, 0, 0, 0, 0};
  ASSERT_TRUE(from_vnet(plain, off));
  EXPECT_TRUE(off.data_validated);
  EXPECT_FALSE(off.csum_blank);
  // A partial checksum on a frame whose headers do not say where it goes.
  auto icmp = frame(false, 1);
  Offload blank;
  blank.csum_blank = true;
  VnetHdr h{};
  EXPECT_FALSE(to_vnet(blank, icmp.data(), icmp.size(), h));
  // GSO of a UDP frame: never from netif's TCP-only GSO.
  auto udp = frame(false, 17);
  blank.gso_type = XEN_NETIF_GSO_TYPE_TCPV4;
  blank.gso_size = 1400;
  EXPECT_FALSE(to_vnet(blank, udp.data(), udp.size(), h));
}

// Extras come from the other end of a ring: anything but a single GSO
// extra for TCP with an MSS is refused.
TEST(NetifGsoExtra, UntrustedSlots_OnlyTcpGsoWithAnMss) {
  Offload off;
  netif_rx_response slot{};
  EXPECT_FALSE(read_gso_extra(slot, off));  // type 0
  Offload good;
  good.gso_type = XEN_NETIF_GSO_TYPE_TCPV6;
  good.gso_size = 1440;
  slot = gso_extra<netif_rx_response>(good);
  ASSERT_TRUE(read_gso_extra(slot, off));
  EXPECT_EQ(off.gso_type, XEN_NETIF_GSO_TYPE_TCPV6);
  netif_extra_info e;
  std::memcpy(&e, &slot, sizeof(e));
  e.flags = XEN_NETIF_EXTRA_FLAG_MORE;  // another extra would follow: not offered
  std::memcpy(&slot, &e, sizeof(e));
  EXPECT_FALSE(read_gso_extra(slot, off));
  good.gso_size = 0;
  slot = gso_extra<netif_rx_response>(good);
  EXPECT_FALSE(read_gso_extra(slot, off));
  good.gso_size = 1440;
  good.gso_type = 9;
  slot = gso_extra<netif_rx_response>(good);
  EXPECT_FALSE(read_gso_extra(slot, off));
}

}  // namespace
}  // namespace sd::netif
