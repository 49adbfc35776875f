#include "vif/netback.hpp"

#include <arpa/inet.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <algorithm>
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
  nb->use_features(cfg.features);
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
  size_t need = offloads_ ? netif::kMaxSlots : 1;
  if (rx_posted_.size() >= need && !stalled_) fds.push_back({nic_.get(), POLLIN, 0});
}

void Netback::set_config(const ctl::Msg& m) {
  auto c = m.get_payload<netif::VifConfig>();
  use_features(c.features);
  cfg_ = c;
}

void Netback::use_features(uint32_t features) {
  bool want = (features & netif::kFeatureOffloads) == netif::kFeatureOffloads;
  if (want == offloads_) return;
  int on = want ? 1 : 0;
  if (::setsockopt(nic_.get(), SOL_PACKET, PACKET_VNET_HDR, &on, sizeof(on)) != 0) {
    std::fprintf(stderr, "netback: NIC socket without virtio-net headers (%s): one page per frame\n",
                 std::strerror(errno));
    want = false;
  }
  offloads_ = want;
}

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

// A frame's slots come off the ring together (the frontend publishes them
// so). Up to kBatch frames go to the NIC in one sendmmsg; then each slot is
// answered (a GSO extra NETIF_RSP_NULL) and the answers published at once.
Result<void> Netback::do_tx(bool& notify) {
  for (;;) {
    unsigned frames = 0;
    while (frames < kBatch) {
      TxFrame& f = batch_[frames];
      while (!chain_done_) {
        auto req = tx_->get_request();
        if (!req) return std::unexpected(req.error());
        if (!*req) break;
        f.slot[chain_n_++] = **req;
        // The extra comes right after the first slot; more_data chains data
        // slots; a chain too long for any frame is ended here (refused).
        const uint16_t first = f.slot[0].flags;
        bool extra_next = chain_n_ == 1 && (first & NETTXF_extra_info);
        bool is_extra = chain_n_ == 2 && (first & NETTXF_extra_info);
        uint16_t more = is_extra ? first : f.slot[chain_n_ - 1].flags;
        chain_done_ = chain_n_ == netif::kMaxSlots || (!extra_next && !(more & NETTXF_more_data));
      }
      if (!chain_done_) break;  // the ring is empty (a frame's first slots wait in batch_[frames])
      f.n = chain_n_;
      chain_n_ = 0;
      chain_done_ = false;
      f.status = prepare_frame(f);
      ++frames;
    }
    if (frames == 0) {
      if (!tx_->final_check_for_requests()) return {};
      continue;
    }
    send_batch(frames);
    for (unsigned k = 0; k < frames; ++k) {
      const TxFrame& f = batch_[k];
      bool extra = f.slot[0].flags & NETTXF_extra_info;
      for (unsigned i = 0; i < f.n; ++i) {
        netif_tx_response rsp{f.slot[i].id, f.status};
        if (extra && i == 1) rsp = {0, NETIF_RSP_NULL};
        else if (i == 0 && garbage(ctl::FaultKind::kBadId))
          rsp.id = static_cast<uint16_t>(f.slot[i].id + netif::kRingSize + 7);  // never valid
        (void)tx_->put_response(rsp);
      }
    }
    // The first slots of a frame not yet all on the ring move to the front.
    if (chain_n_ > 0 && frames > 0) std::copy_n(batch_[frames].slot, chain_n_, batch_[0].slot);
    // Published at once: if this incarnation dies, the frontend replays
    // only frames not answered, so answering late would make frames that
    // already left go out twice.
    if (tx_->push_responses()) notify = true;
    if (garbage(ctl::FaultKind::kBadProd)) {
      // Publish more responses than there are requests.
      auto* s = reinterpret_cast<netif_tx_sring*>(pages_->get(netif::kTxRingRef));
      std::atomic_ref<RING_IDX>(s->rsp_prod).store(tx_->rsp_prod_pvt() + 100, std::memory_order_release);
      notify = true;
      return {};
    }
  }
}

// The frame's message for the NIC: each slot inside its granted page, the
// slots' sizes adding up to the first one's, offloads only where the
// frontend said it carries them. Its status: NETIF_RSP_OKAY until sent,
// NETIF_RSP_ERROR if it is refused here.
int16_t Netback::prepare_frame(TxFrame& f) {
  const netif_tx_request& first = f.slot[0];
  const bool gso = first.flags & NETTXF_extra_info;
  f.niov = 0;
  if (f.slot[f.n - 1].flags & NETTXF_more_data && f.n == netif::kMaxSlots) return NETIF_RSP_ERROR;
  if ((gso || (first.flags & NETTXF_csum_blank) || f.n > 1) && !offloads_) return NETIF_RSP_ERROR;
  netif::Offload off;
  off.csum_blank = first.flags & NETTXF_csum_blank;
  off.data_validated = first.flags & NETTXF_data_validated;
  if (gso && (f.n < 2 || !netif::read_gso_extra(f.slot[1], off))) return NETIF_RSP_ERROR;
  unsigned n = offloads_ ? 1 : 0;
  size_t rest = 0;
  for (unsigned i = gso ? 2 : 1; i < f.n; ++i) rest += f.slot[i].size;
  if (first.size < rest + netif::kEthHeader) return NETIF_RSP_ERROR;
  for (unsigned i = 0; i < f.n; ++i) {
    if (gso && i == 1) continue;
    const netif_tx_request& r = f.slot[i];
    size_t len = i == 0 ? first.size - rest : r.size;
    uint8_t* page = buffer(r.gref);
    if (!page || r.offset >= kPageSize || len > kPageSize - r.offset) return NETIF_RSP_ERROR;
    f.iov[n++] = {page + r.offset, len};
  }
  if (offloads_) {
    if (!netif::to_vnet(off, static_cast<const uint8_t*>(f.iov[1].iov_base), f.iov[1].iov_len, f.hdr))
      return NETIF_RSP_ERROR;
    f.iov[0] = {&f.hdr, sizeof(f.hdr)};
  }
  f.niov = n;
  return NETIF_RSP_OKAY;
}

// The prepared frames of batch_[0, frames) to the NIC in as few calls as
// the socket allows; a frame it refuses is DROPPED, as a full NIC drops.
void Netback::send_batch(unsigned frames) {
  mmsghdr msgs[kBatch];
  unsigned of[kBatch], n = 0;
  for (unsigned k = 0; k < frames; ++k) {
    if (batch_[k].status != NETIF_RSP_OKAY) continue;
    msgs[n] = {};
    msgs[n].msg_hdr.msg_iov = batch_[k].iov;
    msgs[n].msg_hdr.msg_iovlen = batch_[k].niov;
    of[n++] = k;
  }
  for (unsigned i = 0; i < n;) {
    int sent = ::sendmmsg(nic_.get(), msgs + i, n - i, 0);
    if (sent <= 0) {
      batch_[of[i++]].status = NETIF_RSP_DROPPED;  // this one failed; the rest are tried again
      continue;
    }
    i += static_cast<unsigned>(sent);
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
  while (!rx_posted_.empty() && !stalled_) {
    if (!buffer(rx_posted_.front().gref)) {
      const netif_rx_request r = rx_posted_.front();
      rx_posted_.pop_front();
      (void)rx_->put_response({r.id, 0, 0, NETIF_RSP_ERROR});
      produced = true;
      continue;
    }
    if (rx_posted_.size() < (offloads_ ? netif::kMaxSlots : 1u) || !receive_frame()) break;
    // A frame taken from the NIC is published at once: a crash before this
    // point loses at most the one frame in hand.
    if (rx_->push_responses()) notify = true;
    produced = true;
  }
  if (produced && rx_->push_responses()) notify = true;
  return {};
}

// The NIC's next frame for the guest into the buffers posted next, in ring
// order (netif: the slot at position p fills the buffer posted at p; a
// GSO frame's second slot holds its extra). Frames not for this guest,
// runts and frames larger than the buffers are dropped. False: nothing
// waits (or the buffers ahead are not all granted).
bool Netback::receive_frame() {
  const unsigned slots = offloads_ ? netif::kMaxSlots : 1;
  uint8_t* page[netif::kMaxSlots];
  for (unsigned i = 0; i < slots; ++i)
    if (!(page[i] = buffer(rx_posted_[i].gref))) return false;
  netif::VnetHdr h{};
  iovec iov[netif::kMaxSlots + 1];
  unsigned n = 0;
  if (offloads_) iov[n++] = {&h, sizeof(h)};
  // Page 1 is skipped: the extra's slot if this is a GSO frame (else the
  // frame's pieces move up one below).
  for (unsigned i = 0; i < slots; ++i)
    if (i != 1) iov[n++] = {page[i], kPageSize};
  const size_t head = offloads_ ? sizeof(h) : 0, cap = offloads_ ? netif::kMaxDataSlots * kPageSize : kPageSize;
  for (;;) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    ssize_t got = ::recvmsg(nic_.get(), &msg, MSG_DONTWAIT | MSG_TRUNC);
    if (got < 0) return false;  // EAGAIN: no frame waiting
    size_t len = static_cast<size_t>(got) - std::min(head, static_cast<size_t>(got));
    netif::Offload off;
    if (len > cap || len < netif::kEthHeader || !netif::accepts(cfg_, page[0]) || (offloads_ && !netif::from_vnet(h, off)))
      continue;  // too big, runt, not for this guest, or an offload netif lacks: dropped, buffers reused
    const bool gso = off.gso_type != XEN_NETIF_GSO_TYPE_NONE;
    unsigned data = static_cast<unsigned>((len + kPageSize - 1) / kPageSize);
    if (!gso)  // no extra: the pieces after the first move up into page 1 on
      for (unsigned i = 1; i < data; ++i)
        std::memcpy(page[i], page[i + 1], std::min<size_t>(kPageSize, len - i * kPageSize));
    unsigned used = data + (gso ? 1 : 0);
    for (unsigned i = 0, piece = 0; i < used; ++i) {
      const netif_rx_request r = rx_posted_.front();
      rx_posted_.pop_front();
      if (gso && i == 1) {
        (void)rx_->put_response(netif::gso_extra<netif_rx_response>(off));
        continue;
      }
      size_t bytes = std::min<size_t>(kPageSize, len - piece * kPageSize);
      uint16_t flags = piece + 1 < data ? NETRXF_more_data : 0;
      if (piece == 0) {
        flags |= off.csum_blank ? NETRXF_csum_blank | NETRXF_data_validated : NETRXF_data_validated;
        if (gso) flags |= NETRXF_extra_info;
      }
      netif_rx_response rsp{r.id, 0, flags, static_cast<int16_t>(bytes)};
      if (piece == 0 && garbage(ctl::FaultKind::kBadGrant)) rsp.offset = kPageSize - 16;  // data beyond the page
      (void)rx_->put_response(rsp);
      ++piece;
    }
    return true;
  }
}

}  // namespace sd::drvdom
