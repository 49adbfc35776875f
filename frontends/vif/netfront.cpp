#include "vif/netfront.hpp"

#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "sd/platform/local/event_channel.hpp"

namespace sd::front {

using netif::kPageSize;
using netif::kRingSize;

namespace {
constexpr uint16_t kTxRing = 0, kRxRing = 1;
uint32_t tx_slot(uint16_t id) { return id; }
uint32_t rx_slot(uint16_t id) { return kRingSize + id; }
}  // namespace

Netfront::Netfront(ctl::Channel ch, std::unique_ptr<PacketPort> port, netif::VifConfig cfg,
                   std::unique_ptr<PoolSource> xen)
    : link_(std::move(ch), {"vif", 2 * kRingSize, xen ? 0u : static_cast<uint32_t>(netif::kPoolPages)}),
      port_(std::move(port)),
      cfg_(cfg),
      max_mtu_(cfg.mtu),
      xen_(std::move(xen)) {
  cfg_.features |= port_->features();  // the backend sends the guest only what its side carries
}

int Netfront::run() {
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({link_.fd(), POLLIN, 0});
    bool want_guest = (link_.attached() && tx_ && tx_->free_requests() > 0) || port_->holding();
    fds.push_back({want_guest ? port_->wait_fd() : -1, POLLIN, 0});
    fds.push_back({evt_ ? evt_->wait_fd() : -1, POLLIN, 0});
    int r = ::poll(fds.data(), fds.size(), 200);
    if (r < 0 && errno != EINTR) return 1;
    if (fds[0].revents) {
      // shadowd gone: the guest's device has no one left.
      if (auto p = link_.pump(*this); !p) {
        std::fprintf(stderr, "netfront %s: %s\n", port_->name().c_str(), p.error().to_string().c_str());
        return 0;
      }
    }
    if (fds[2].revents && evt_) (void)evt_->consume();
    if (link_.connected()) take_responses();
    if (fds[1].revents) {
      port_->woken();
      if (link_.attached() && tx_) read_guest();
      port_->flush();
    }
    // The guest's settings, looked at five times a second, traffic or not.
    auto now = std::chrono::steady_clock::now();
    if (link_.attached() && now - checked_ >= std::chrono::milliseconds(200)) {
      checked_ = now;
      check_config();
    }
  }
}

// The whole pool is here (local): set the rings up and post every receive
// buffer. Xen: nothing yet; the first pool comes with the first kReconnect,
// which names the backend's domain.
Result<void> Netfront::attached(FrontendLink& link) {
  if (xen_) {
    log().set_config(&cfg_, sizeof(cfg_));
    return {};
  }
  pages_.clear();
  for (uint32_t ref = 0; ref < netif::kPoolPages; ++ref) pages_.push_back(link.page(ref));
  evt_ = std::make_unique<local::LocalEventChannel>(link.take_notify_fd(), link.take_wait_fd());
  auto tx = ring::FrontRing<netif::TxTraits>::attach(pages_[netif::kTxRingRef], kPageSize, true);
  auto rx = ring::FrontRing<netif::RxTraits>::attach(pages_[netif::kRxRingRef], kPageSize, true);
  if (!tx || !rx) return fail(Code::kEscalate, "ring attach failed");
  tx_.emplace(std::move(*tx));
  rx_.emplace(std::move(*rx));
  post_all_rx();
  rx_->push_requests();
  log().set_config(&cfg_, sizeof(cfg_));
  return {};
}

void Netfront::post_rx(uint16_t id) {
  if (!rx_ids_.in_flight(id) && !rx_ids_.claim(id)) return;
  netif_rx_request req{id, 0, netif::rx_buf_ref(id)};
  log().record(rx_slot(id), kRxRing, &req, sizeof(req));
  (void)rx_->put_request(req);
}

void Netfront::post_all_rx() {
  rx_ids_.clear();
  rx_cons_ = 0;  // fresh rings: buffer p at position p
  rx_frags_ = rx_ntaken_ = 0;
  rx_extra_ = rx_more_ = false;
  for (uint16_t id = 0; id < kRingSize; ++id) post_rx(id);
}

void Netfront::kick() { (void)evt_->notify(); }

// Frames from the guest's stack go on the tx ring, one slot per page they
// fill (and a GSO extra after the first). While the backend is away they
// queue there (bounded by the ring); the guest's side holds the rest.
void Netfront::read_guest() {
  const unsigned want = (port_->features() & netif::kFeatureSg) ? netif::kMaxDataSlots : 1;
  int posted = 0;
  while (posted < 64 && tx_->free_requests() >= want + 1) {
    while (tx_spare_.size() < want) {  // ids for the largest frame, kept for the next read if unused
      auto id = tx_ids_.allocate();
      if (!id) break;
      tx_spare_.push_back(static_cast<uint16_t>(*id));
    }
    if (tx_spare_.size() < want) break;
    uint16_t ids[netif::kMaxDataSlots];
    uint8_t* bufs[netif::kMaxDataSlots];
    for (unsigned i = 0; i < want; ++i) {
      ids[i] = tx_spare_[tx_spare_.size() - 1 - i];
      bufs[i] = pages_[netif::tx_buf_ref(ids[i])];
    }
    netif::Offload off;
    size_t n = port_->read({bufs, want}, off);
    if (n == 0) break;
    unsigned slots = static_cast<unsigned>((n + kPageSize - 1) / kPageSize);
    tx_spare_.resize(tx_spare_.size() - slots);
    post_frame(ids, slots, n, off);
    ++posted;
    ++frames_tx_;
  }
  if (posted && tx_->push_requests()) kick();
}

// netif's layout: the first slot's size is the frame's, each next slot's
// its own bytes; a GSO frame's extra follows the first slot. The first
// slot's log entry holds the extra too: the splitter replays them together.
void Netfront::post_frame(const uint16_t* ids, unsigned slots, size_t len, const netif::Offload& off) {
  const bool gso = off.gso_type != XEN_NETIF_GSO_TYPE_NONE;
  for (unsigned i = 0; i < slots; ++i) {
    uint16_t id = ids[i];
    netif_tx_request req[2]{};
    req[0].gref = netif::tx_buf_ref(id);
    req[0].id = id;
    req[0].size = static_cast<uint16_t>(i == 0 ? len : std::min<size_t>(kPageSize, len - i * kPageSize));
    req[0].flags = i + 1 < slots ? NETTXF_more_data : 0;
    if (i == 0) {
      if (off.csum_blank) req[0].flags |= NETTXF_csum_blank;
      if (off.data_validated) req[0].flags |= NETTXF_data_validated;
      if (gso) {
        req[0].flags |= NETTXF_extra_info;
        req[1] = netif::gso_extra<netif_tx_request>(off);
      }
    }
    size_t n = i == 0 && gso ? 2 : 1;
    log().record(tx_slot(id), kTxRing, req, n * sizeof(req[0]));  // the splitter: ring and shadow in one step
    for (size_t k = 0; k < n; ++k) (void)tx_->put_request(req[k]);
    tx_state_[id] = kPosted;
    tx_head_[id] = ids[0];
    tx_next_[id] = i + 1 < slots ? ids[i + 1] : id;
  }
  tx_left_[ids[0]] = static_cast<uint8_t>(slots);
}

void Netfront::take_responses() {
  for (int round = 0; round < 4 && link_.connected(); ++round) {
    if (auto r = take_tx(); !r) return link_.fault(r.error().message);
    if (auto r = take_rx(); !r) return link_.fault(r.error().message);
    bool more = tx_->final_check_for_responses();
    more = rx_->final_check_for_responses() || more;
    if (!more) return;
  }
}

Result<void> Netfront::take_tx() {
  for (;;) {
    auto rsp = tx_->get_response();
    if (!rsp) return std::unexpected(rsp.error());
    if (!*rsp) return {};
    const netif_tx_response& r = **rsp;
    if (r.status == NETIF_RSP_NULL) continue;  // a GSO extra's slot
    if (r.id >= kRingSize || tx_state_[r.id] != kPosted)
      return fail(Code::kRestartReplay, "tx response for id " + std::to_string(r.id) +
                                            " which is not in flight (never sent, or a duplicate response)");
    if (r.status != NETIF_RSP_OKAY && r.status != NETIF_RSP_DROPPED && r.status != NETIF_RSP_ERROR)
      return fail(Code::kRestartReplay, "tx response with bad status " + std::to_string(r.status));
    tx_state_[r.id] = kAnswered;
    uint16_t head = tx_head_[r.id];
    if (--tx_left_[head] == 0) frame_answered(head);
  }
}

void Netfront::frame_answered(uint16_t head) {
  for (uint16_t id = head;; id = tx_next_[id]) {
    tx_state_[id] = kIdle;
    (void)tx_ids_.complete(id);
    log().complete(tx_slot(id));
    if (tx_next_[id] == id) break;
  }
}

Result<void> Netfront::take_rx() {
  Result<void> out;
  int reposted = 0;
  for (;;) {
    auto rsp = rx_->get_response();
    if (!rsp) {
      out = std::unexpected(rsp.error());
      break;
    }
    if (!*rsp) break;
    uint16_t id = static_cast<uint16_t>(rx_cons_++ % kRingSize);
    if (out = rx_slot_taken(**rsp, id); !out) break;
    if (rx_ntaken_ > 0 && rx_frags_ == 0) {  // a whole frame delivered, or a slot dropped
      for (unsigned i = 0; i < rx_ntaken_; ++i) post_rx(rx_taken_[i]);
      reposted += static_cast<int>(rx_ntaken_);
      rx_ntaken_ = 0;
    }
  }
  // The guest's side takes the frames before their buffers go back to the backend.
  if (reposted) port_->flush();
  if (reposted && rx_->push_requests()) kick();
  return out;
}

// One rx response slot (untrusted): the buffer posted at its position,
// answered with a piece of a frame inside that page, the frame's GSO extra,
// or nothing (dropped). A frame is passed to the guest with its last piece.
Result<void> Netfront::rx_slot_taken(const netif_rx_response& r, uint16_t id) {
  if (!rx_ids_.in_flight(id))
    return fail(Code::kRestartReplay, "rx response at a position whose buffer is not posted (id " + std::to_string(id) + ")");
  if (rx_ntaken_ == std::size(rx_taken_))
    return fail(Code::kRestartReplay, "rx frame of more than " + std::to_string(netif::kMaxSlots) + " slots");
  (void)rx_ids_.complete(id);
  log().complete(rx_slot(id));
  rx_taken_[rx_ntaken_++] = id;
  if (rx_extra_) {  // netif: right after the frame's first slot
    rx_extra_ = false;
    if (!netif::read_gso_extra(r, rx_off_)) return fail(Code::kRestartReplay, "rx frame with a bad GSO extra");
    return deliver_rx();
  }
  if (r.id != id)
    return fail(Code::kRestartReplay, "rx response with id " + std::to_string(r.id) + " for the buffer of id " +
                                          std::to_string(id));
  if (r.status <= 0 && rx_frags_ == 0) {
    if (r.status != NETIF_RSP_DROPPED && r.status != NETIF_RSP_ERROR && r.status != 0)
      return fail(Code::kRestartReplay, "rx response with bad status " + std::to_string(r.status));
    return {};  // nothing in it: its buffer goes back
  }
  // A frame's piece must lie inside the buffer page we granted for this id.
  if (r.status <= 0 || r.offset >= kPageSize || r.status > static_cast<int>(kPageSize - r.offset))
    return fail(Code::kRestartReplay, "rx response outside its granted page (offset " + std::to_string(r.offset) +
                                          ", size " + std::to_string(r.status) + ")");
  if (rx_frags_ == 0) {
    rx_off_ = {};
    rx_off_.csum_blank = (r.flags & NETRXF_csum_blank) != 0;
    rx_off_.data_validated = !rx_off_.csum_blank && (r.flags & NETRXF_data_validated) != 0;
    rx_extra_ = (r.flags & NETRXF_extra_info) != 0;
  }
  if (rx_frags_ == netif::kMaxDataSlots)
    return fail(Code::kRestartReplay, "rx frame of more than " + std::to_string(netif::kMaxDataSlots) + " slots");
  rx_iov_[rx_frags_++] = {pages_[netif::rx_buf_ref(id)] + r.offset, static_cast<size_t>(r.status)};
  rx_more_ = (r.flags & NETRXF_more_data) != 0;
  return deliver_rx();
}

// The frame, once its last piece and its extra are in (a runt is dropped).
Result<void> Netfront::deliver_rx() {
  if (rx_frags_ == 0 || rx_extra_ || rx_more_) return {};
  if (rx_iov_[0].iov_len >= netif::kEthHeader) {
    port_->write({rx_iov_, rx_frags_}, rx_off_);
    ++frames_rx_;
  }
  rx_frags_ = 0;
  return {};
}

// The old backend is dead. Keep what it finished, then hand the new one a
// clean ring holding exactly the requests still in flight, in their order
// (xen-blkfront's blkif_recover: copy the shadow, reset, requeue).
Result<FrontendLink::Repair> Netfront::repair(const ctl::Msg& m) {
  if (tx_) {
    (void)take_tx();  // stops at the first invalid response
    (void)take_rx();
  }
  FrontendLink::Repair done;
  if (xen_) {
    auto g = regrant(m.a);
    if (!g) return std::unexpected(g.error());
    done.xen_pool = *g;  // shadowd passes it on to the new backend
  } else {
    tx_->reset();
    rx_->reset();
  }
  // Every slot of a frame not wholly answered is still in the log, in the
  // order it was posted: replayed as it was (with its GSO extra).
  uint32_t replayed = 0;
  std::vector<bool> replay(kRingSize, false);
  std::fill(tx_left_.begin(), tx_left_.end(), 0);
  if (log().enabled()) {
    for (const auto& e : log().inflight(kTxRing)) {
      netif_tx_request req[2];
      if (e.len != sizeof(req[0]) && e.len != sizeof(req)) continue;
      std::memcpy(req, e.req, e.len);
      uint16_t id = req[0].id;
      if (id >= kRingSize || tx_state_[id] == kIdle || replay[id]) continue;
      if (tx_->free_requests() < e.len / sizeof(req[0])) break;
      for (size_t k = 0; k < e.len / sizeof(req[0]); ++k) (void)tx_->put_request(req[k]);
      replay[id] = true;
      tx_state_[id] = kPosted;
      ++tx_left_[tx_head_[id]];
      ++replayed;
    }
  }
  // Without the shadow, frames the dead backend held are lost (and the
  // ids kept for the next read are simply free again).
  for (uint16_t id = 0; id < kRingSize; ++id)
    if (tx_ids_.in_flight(id) && !replay[id]) {
      tx_state_[id] = kIdle;
      (void)tx_ids_.complete(id);
      log().complete(tx_slot(id));
    }
  tx_spare_.clear();
  post_all_rx();
  tx_->push_requests();
  rx_->push_requests();
  done.replayed = replayed;
  return done;
}

// Xen: a new pool granted to the new backend's domain, with fresh rings; the
// tx buffers still in flight move over (their frames are replayed from it).
Result<ctl::XenPool> Netfront::regrant(uint32_t backend_domid) {
  // The frames still in flight wait here while the old grants go first: the
  // guest's grant allocator is bounded (gntalloc: 1024 by default), and a
  // pool is 515 grants.
  std::vector<std::pair<uint16_t, std::vector<uint8_t>>> held;
  if (tx_)
    for (uint16_t id = 0; id < kRingSize; ++id)
      if (tx_ids_.in_flight(id)) {
        const uint8_t* b = pages_[netif::tx_buf_ref(id)];
        held.emplace_back(id, std::vector<uint8_t>(b, b + kPageSize));
      }
  tx_.reset();
  rx_.reset();
  pages_.clear();
  evt_.reset();
  pool_keep_.reset();
  auto pool = xen_->next(backend_domid, netif::kPoolPages);
  if (!pool) return std::unexpected(pool.error());
  for (const auto& [id, frame] : held) std::memcpy(pool->pages[netif::tx_buf_ref(id)], frame.data(), kPageSize);
  auto tx = ring::FrontRing<netif::TxTraits>::attach(pool->pages[netif::kTxRingRef], kPageSize, true);
  auto rx = ring::FrontRing<netif::RxTraits>::attach(pool->pages[netif::kRxRingRef], kPageSize, true);
  if (!tx || !rx) return fail(Code::kEscalate, "ring attach failed");
  tx_.emplace(std::move(*tx));
  rx_.emplace(std::move(*rx));
  pages_ = std::move(pool->pages);
  evt_ = std::move(pool->evt);
  pool_keep_ = std::move(pool->keep);
  return pool->ref;
}

// Guest-side configuration (MTU, promiscuous, all-multicast) as the guest's
// own tools set it; changes go to the shadow, compacted.
void Netfront::check_config() {
  netif::VifConfig c = cfg_;
  port_->read_config(c);
  // An MTU above what the vif's path carries would black-hole every larger
  // frame: it is put back at once, and never reaches the shadow.
  if (c.mtu > max_mtu_ && port_->set_mtu(max_mtu_)) {
    std::fprintf(stderr, "netfront %s: MTU %u refused: this vif carries at most %u (its mtu= in the guest's config)\n",
                 port_->name().c_str(), c.mtu, max_mtu_);
    c.mtu = cfg_.mtu;
  }
  if (c.mtu == cfg_.mtu && c.promisc == cfg_.promisc && c.allmulti == cfg_.allmulti && c.n_mcast == cfg_.n_mcast &&
      std::memcmp(c.mcast, cfg_.mcast, sizeof(c.mcast)) == 0)
    return;
  c.generation = cfg_.generation + 1;
  cfg_ = c;
  log().set_config(&cfg_, sizeof(cfg_));
  link_.config(cfg_);
}

}  // namespace sd::front
