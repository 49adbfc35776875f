// Xen's netif ABI (xen/io/netif.h) bound to the hardened rings, plus the
// compacted vif configuration the shadow keeps and replays.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "sd/core/xen_ring_compat.h"
extern "C" {
#include <xen/io/netif.h>
}

namespace sd::netif {

struct TxTraits {
  using Sring = netif_tx_sring;
  using Req = netif_tx_request;
  using Rsp = netif_tx_response;
  static uint64_t req_id(const Req& r) { return r.id; }
  static uint64_t rsp_id(const Rsp& r) { return r.id; }
};

struct RxTraits {
  using Sring = netif_rx_sring;
  using Req = netif_rx_request;
  using Rsp = netif_rx_response;
  static uint64_t req_id(const Req& r) { return r.id; }
  static uint64_t rsp_id(const Rsp& r) { return r.id; }
};

constexpr unsigned kPageSize = 4096;
constexpr unsigned kRingSize = 256;          // entries of a one-page tx or rx ring
constexpr unsigned kEthHeader = 14;
// A frame spans up to kMaxDataSlots granted pages (64 KiB of IP plus its
// link header: a GSO frame), one slot each, chained by NETTXF_more_data /
// NETRXF_more_data; a GSO frame has one more slot after its first, holding
// a netif_extra_info (type, MSS). The first tx request's size is the whole
// frame's; each rx response's status is its own slot's bytes.
constexpr unsigned kMaxDataSlots = 17;
constexpr unsigned kMaxSlots = kMaxDataSlots + 1;  // XEN_NETBK_LEGACY_SLOTS_MAX
constexpr unsigned kMaxFrame = kMaxDataSlots * kPageSize;

// Grant refs in a vif's pool: the two ring pages, then one buffer page per
// tx id and one per rx id.
constexpr uint32_t kTxRingRef = 0;
constexpr uint32_t kRxRingRef = 1;
constexpr uint32_t tx_buf_ref(uint16_t id) { return 2 + id; }
constexpr uint32_t rx_buf_ref(uint16_t id) { return 2 + kRingSize + id; }
constexpr uint32_t kPoolPages = 2 + 2 * kRingSize;

// The vif's configuration state, compacted: the newest value of every
// setting, so replaying it costs the same after one change or a million.
struct VifConfig {
  uint8_t mac[6];
  uint16_t mtu;
  uint8_t promisc;       // deliver frames for any destination
  uint8_t allmulti;      // deliver every multicast frame
  uint8_t n_mcast;       // entries used in mcast[]
  uint8_t pad;
  uint32_t features;     // kFeature* bits the frontend asked for
  uint8_t mcast[32][6];  // multicast addresses to deliver
  uint64_t generation;   // bumped on every change (how many changes were compacted)
};
static_assert(sizeof(VifConfig) <= 240, "must fit a control message payload");

constexpr uint32_t kFeatureRxCopy = 1;  // the only mode we implement: backend copies into rx pages
// What the frontend's side carries beyond one page per frame with whole
// checksums (feature-sg, feature-gso-tcpv4/tcpv6, feature-no-csum-offload=0
// in xenstore's words): the backend sends only these.
constexpr uint32_t kFeatureSg = 2;    // multi-slot frames (jumbo frames)
constexpr uint32_t kFeatureGso = 4;   // TCP segmentation offload (v4 and v6), with partial checksums
constexpr uint32_t kFeatureCsum = 8;  // partial checksums (NETTXF_csum_blank / NETRXF_csum_blank)
constexpr uint32_t kFeatureOffloads = kFeatureSg | kFeatureGso | kFeatureCsum;

// A frame's offloads as netif flags and its GSO extra say them.
struct Offload {
  bool csum_blank = false;      // the TCP/UDP checksum is left to fill in
  bool data_validated = false;  // the checksum was checked
  uint8_t gso_type = XEN_NETIF_GSO_TYPE_NONE;
  uint16_t gso_size = 0;  // MSS
};

// The GSO extra of a frame's second slot, in a request-sized ring slot
// (netif_extra_info is smaller than a tx request; the rest is zero).
template <class Slot>
Slot gso_extra(const Offload& o) {
  static_assert(sizeof(Slot) >= sizeof(netif_extra_info));
  Slot s{};
  netif_extra_info e{};
  e.type = XEN_NETIF_EXTRA_TYPE_GSO;
  e.u.gso.size = o.gso_size;
  e.u.gso.type = o.gso_type;
  std::memcpy(&s, &e, sizeof(e));
  return s;
}
// The offload an extra slot (untrusted) asks for; false if it is not a GSO
// extra we carry (a type or size no TCP stack sends).
template <class Slot>
bool read_gso_extra(const Slot& s, Offload& o) {
  netif_extra_info e;
  std::memcpy(&e, &s, sizeof(e));
  if (e.type != XEN_NETIF_EXTRA_TYPE_GSO || (e.flags & XEN_NETIF_EXTRA_FLAG_MORE)) return false;
  if (e.u.gso.type != XEN_NETIF_GSO_TYPE_TCPV4 && e.u.gso.type != XEN_NETIF_GSO_TYPE_TCPV6) return false;
  if (e.u.gso.size == 0 || e.u.gso.size > kMaxFrame) return false;
  o.gso_type = e.u.gso.type;
  o.gso_size = e.u.gso.size;
  return true;
}

// Where a frame's transport header sits (TCP or UDP over IPv4 or IPv6 with
// no extension headers, after an optional VLAN tag), from its first `len`
// bytes; nullopt for anything else or headers that do not fit.
struct L4 {
  uint8_t proto = 0;        // 6 TCP, 17 UDP
  bool v6 = false;
  uint16_t l3 = 0, l4 = 0;  // offsets of the IP and transport headers
  uint16_t csum = 0;        // offset of the checksum field
  uint16_t end = 0;         // end of the headers
};
inline uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline std::optional<L4> find_l4(const uint8_t* f, size_t len) {
  L4 h;
  h.l3 = kEthHeader;
  if (len < kEthHeader) return std::nullopt;
  uint16_t type = be16(f + 12);
  if (type == 0x8100 && len >= 18) {
    type = be16(f + 16);
    h.l3 = 18;
  }
  if (type == 0x0800) {
    if (len < h.l3 + 20u) return std::nullopt;
    unsigned ihl = (f[h.l3] & 0xfu) * 4;
    if (ihl < 20) return std::nullopt;
    h.proto = f[h.l3 + 9];
    h.l4 = static_cast<uint16_t>(h.l3 + ihl);
  } else if (type == 0x86dd) {
    if (len < h.l3 + 40u) return std::nullopt;
    h.proto = f[h.l3 + 6];
    h.l4 = static_cast<uint16_t>(h.l3 + 40);
    h.v6 = true;
  } else {
    return std::nullopt;
  }
  if (h.proto == 6 && len >= h.l4 + 20u) {
    h.csum = static_cast<uint16_t>(h.l4 + 16);
    h.end = static_cast<uint16_t>(h.l4 + (f[h.l4 + 12] >> 4) * 4);
  } else if (h.proto == 17 && len >= h.l4 + 8u) {
    h.csum = static_cast<uint16_t>(h.l4 + 6);
    h.end = static_cast<uint16_t>(h.l4 + 8);
  } else {
    return std::nullopt;
  }
  if (h.end < h.csum + 2 || h.end > len) return std::nullopt;
  return h;
}

// The virtio-net header TAP devices (IFF_VNET_HDR) and packet sockets
// (PACKET_VNET_HDR) put before each frame (struct virtio_net_hdr; its
// kernel header does not compile as C++), in this host's byte order.
struct VnetHdr {
  uint8_t flags, gso_type;
  uint16_t hdr_len, gso_size, csum_start, csum_offset;
};
static_assert(sizeof(VnetHdr) == 10);
constexpr uint8_t kVnetNeedsCsum = 1, kVnetDataValid = 2;
constexpr uint8_t kVnetGsoNone = 0, kVnetGsoTcp4 = 1, kVnetGsoTcp6 = 4, kVnetGsoEcn = 0x80;

// That header to and from netif's terms.
// from_vnet: false for what netif does not carry (UDP segmentation; the
// ECN bit is dropped, as netback does). to_vnet: `head` is the frame's
// first slot; false if its headers do not say where the checksum goes.
inline bool from_vnet(const VnetHdr& h, Offload& o) {
  o = {};
  o.csum_blank = (h.flags & kVnetNeedsCsum) != 0;
  o.data_validated = !o.csum_blank && (h.flags & kVnetDataValid) != 0;
  switch (h.gso_type & ~kVnetGsoEcn) {
    case kVnetGsoNone: return true;
    case kVnetGsoTcp4: o.gso_type = XEN_NETIF_GSO_TYPE_TCPV4; break;
    case kVnetGsoTcp6: o.gso_type = XEN_NETIF_GSO_TYPE_TCPV6; break;
    default: return false;
  }
  o.gso_size = h.gso_size;
  return o.gso_size != 0 && o.csum_blank;
}
inline bool to_vnet(const Offload& o, const uint8_t* head, size_t len, VnetHdr& h) {
  h = {};
  if (o.data_validated) h.flags = kVnetDataValid;
  if (!o.csum_blank && o.gso_type == XEN_NETIF_GSO_TYPE_NONE) return true;
  auto l4 = find_l4(head, len);
  if (!l4) return false;
  h.flags = kVnetNeedsCsum;
  h.csum_start = l4->l4;
  h.csum_offset = static_cast<uint16_t>(l4->csum - l4->l4);
  if (o.gso_type == XEN_NETIF_GSO_TYPE_NONE) return true;
  if (l4->proto != 6) return false;
  h.gso_type = o.gso_type == XEN_NETIF_GSO_TYPE_TCPV4 ? kVnetGsoTcp4 : kVnetGsoTcp6;
  h.gso_size = o.gso_size;
  h.hdr_len = l4->end;
  return true;
}

// "aa:bb:cc:dd:ee:ff" -> bytes; false if it is not six hex pairs.
inline bool parse_mac(const std::string& s, uint8_t out[6]) {
  unsigned v[6];
  char tail;
  if (std::sscanf(s.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
    return false;
  for (int i = 0; i < 6; ++i) out[i] = static_cast<uint8_t>(v[i]);
  return true;
}

inline std::string mac_string(const uint8_t m[6]) {
  char b[18];
  std::snprintf(b, sizeof(b), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return b;
}

// A config a guest's stack can actually set (MTU from 68, at most 32
// multicast addresses); anything else from an untrusted frontend is ignored.
inline bool plausible(const VifConfig& c) { return c.mtu >= 68 && c.n_mcast <= 32; }

// Whether a frame with this destination MAC is for the guest under `c`.
inline bool accepts(const VifConfig& c, const uint8_t* dst) {
  if (c.promisc) return true;
  if (std::memcmp(dst, c.mac, 6) == 0) return true;
  if (dst[0] & 1) {  // multicast or broadcast
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    if (c.allmulti || std::memcmp(dst, bcast, 6) == 0) return true;
    // IPv6 neighbour discovery and IPv4 multicast groups the guest joined
    // are in mcast[]; 33:33 (IPv6 multicast) is accepted so ND works even
    // before the frontend reports its list.
    if (dst[0] == 0x33 && dst[1] == 0x33) return true;
    for (unsigned i = 0; i < c.n_mcast && i < 32; ++i)
      if (std::memcmp(dst, c.mcast[i], 6) == 0) return true;
  }
  return false;
}

}  // namespace sd::netif
