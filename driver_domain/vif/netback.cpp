#include "vif/netback.hpp"

#include <arpa/inet.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace sd::drvdom {

using netif::kPageSize;

// The NIC: every frame on the interface, in and out (the driver domain owns it).
Result<UniqueFd> Netback::open_nic(const std::string& ifname) {
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
    std::fprintf(stderr, "netback: cannot switch GRO off on %s: %s\n", ifname.c_str(), std::strerror(errno));
  return s;
}

Result<std::unique_ptr<Netback>> Netback::create(std::unique_ptr<GrantedPages> pages,
                                                 std::unique_ptr<platform::EventChannel> evt, UniqueFd nic,
                                                 const netif::VifConfig& cfg) {
  if (!evt || !nic) return fail(Code::kInvalidInput, "vif attach needs an event channel and the NIC");
  if (!pages || pages->size() < netif::kPoolPages) return fail(Code::kInvalidInput, "vif attach: pool too small");
  uint8_t* tx_page = pages->get(netif::kTxRingRef);
  uint8_t* rx_page = pages->get(netif::kRxRingRef);
  if (!tx_page || !rx_page) return fail(Code::kInvalidInput, "vif attach: ring pages not granted");
  auto nb = std::unique_ptr<Netback>(new Netback());
  nb->pages_ = std::move(pages);
  nb->evt_ = std::move(evt);
  nb->nic_ = std::move(nic);
  nb->cfg_ = cfg;
  // init=false: the frontend owns the ring; a new backend continues from the
  // shared rsp_prod (everything after it is ours to serve, replays included).
  auto tx = ring::BackRing<netif::TxTraits>::attach(tx_page, kPageSize, false);
  if (!tx) return std::unexpected(tx.error());
  auto rx = ring::BackRing<netif::RxTraits>::attach(rx_page, kPageSize, false);
  if (!rx) return std::unexpected(rx.error());
  nb->tx_.emplace(std::move(*tx));
  nb->rx_.emplace(std::move(*rx));
  return nb;
}

void Netback::poll_fds(std::vector<pollfd>& fds) {
  fds.push_back({evt_->wait_fd(), POLLIN, 0});
  // Only read the NIC when a guest buffer is ready for the frame: otherwise
  // frames wait in the socket, as they would in a NIC's ring.
  if (!rx_posted_.empty() && !stalled_) fds.push_back({nic_.get(), POLLIN, 0});
}

void Netback::set_config(const ctl::Msg& m) { cfg_ = m.get_payload<netif::VifConfig>(); }

uint8_t* Netback::buffer(grant_ref_t ref) {
  // Ring pages are not buffers; anything past the pool was never granted.
  if (ref < 2) return nullptr;
  return pages_->get(ref);
}

Result<void> Netback::service() {
  (void)evt_->consume();  // clears the kick; the rings say what to do
  if (stalled_) return {};
  bool notify = false;
  if (auto r = do_tx(notify); !r) return r;
  if (auto r = do_rx(notify); !r) return r;
  if (notify) (void)evt_->notify();
  return {};
}

Result<void> Netback::do_tx(bool& notify) {
  for (;;) {
    int budget = 64;
    while (budget-- > 0) {
      auto req = tx_->get_request();
      if (!req) return std::unexpected(req.error());
      if (!*req) break;
      const netif_tx_request& r = **req;
      netif_tx_response rsp{r.id, NETIF_RSP_OKAY};
      uint8_t* page = buffer(r.gref);
      // A frame must sit inside one granted page and hold an Ethernet header.
      if (!page || r.offset >= kPageSize || r.size < netif::kEthHeader || r.size > kPageSize - r.offset ||
          (r.flags & (NETTXF_more_data | NETTXF_extra_info))) {
        rsp.status = NETIF_RSP_ERROR;
      } else if (::send(nic_.get(), page + r.offset, r.size, 0) < 0) {
        rsp.status = NETIF_RSP_DROPPED;
      }
      if (garbage(ctl::FaultKind::kBadId)) rsp.id = static_cast<uint16_t>(r.id + netif::kRingSize + 7);  // never valid
      (void)tx_->put_response(rsp);
      // Publish each response at once: if this incarnation dies, the
      // frontend replays only what was not answered, so answering late
      // would make frames that already left go out twice.
      if (tx_->push_responses()) notify = true;
      if (garbage(ctl::FaultKind::kBadProd)) {
        // Publish more responses than there are requests.
        auto* s = reinterpret_cast<netif_tx_sring*>(pages_->get(netif::kTxRingRef));
        std::atomic_ref<RING_IDX>(s->rsp_prod).store(tx_->rsp_prod_pvt() + 100, std::memory_order_release);
        notify = true;
        return {};
      }
    }
    if (tx_->push_responses()) notify = true;
    if (!tx_->final_check_for_requests()) return {};
  }
}

Result<void> Netback::do_rx(bool& notify) {
  // Take every posted buffer off the ring, then fill as many as frames allow.
  for (;;) {
    auto req = rx_->get_request();
    if (!req) return std::unexpected(req.error());
    if (!*req) {
      if (!rx_->final_check_for_requests()) break;
      continue;
    }
    rx_posted_.push_back(**req);
  }
  bool produced = false;
  while (!rx_posted_.empty()) {
    const netif_rx_request r = rx_posted_.front();
    uint8_t* page = buffer(r.gref);
    if (!page) {
      rx_posted_.pop_front();
      (void)rx_->put_response({r.id, 0, 0, NETIF_RSP_ERROR});
      produced = true;
      continue;
    }
    ssize_t n = ::recv(nic_.get(), page, kPageSize, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) break;  // EAGAIN: no frame waiting
    if (n > static_cast<ssize_t>(kPageSize) || n < static_cast<ssize_t>(netif::kEthHeader) ||
        !netif::accepts(cfg_, page))
      continue;  // too big for one page, runt, or not for this guest: dropped, buffer reused
    rx_posted_.pop_front();
    netif_rx_response rsp{r.id, 0, NETRXF_data_validated, static_cast<int16_t>(n)};
    if (garbage(ctl::FaultKind::kBadGrant)) rsp.offset = kPageSize - 16;  // claims data beyond the granted page
    (void)rx_->put_response(rsp);
    // A frame taken from the NIC is published at once: a crash before this
    // point loses at most the one frame in hand.
    if (rx_->push_responses()) notify = true;
    produced = true;
  }
  if (produced && rx_->push_responses()) notify = true;
  return {};
}

}  // namespace sd::drvdom
