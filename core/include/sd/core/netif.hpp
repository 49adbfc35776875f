// Xen's netif ABI (xen/io/netif.h) bound to the hardened rings, plus the
// compacted vif configuration the shadow keeps and replays.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
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
constexpr unsigned kMaxFrame = kPageSize;    // one frame per granted page, no fragments

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
