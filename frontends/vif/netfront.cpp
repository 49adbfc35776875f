#include "vif/netfront.hpp"

#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

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
      xen_(std::move(xen)) {}

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
    if (r == 0 && link_.attached()) check_config();
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
  for (uint16_t id = 0; id < kRingSize; ++id) post_rx(id);
}

void Netfront::kick() { (void)evt_->notify(); }

// Frames from the guest's stack go on the tx ring. While the backend is away
// they queue there (bounded by the ring); the guest's side holds the rest.
void Netfront::read_guest() {
  int posted = 0;
  while (tx_->free_requests() > 0 && posted < 64) {
    auto id = tx_ids_.allocate();
    if (!id) break;
    uint16_t i = static_cast<uint16_t>(*id);
    uint8_t* buf = pages_[netif::tx_buf_ref(i)];
    size_t n = port_->read(buf, kPageSize);
    if (n == 0) {
      (void)tx_ids_.complete(i);
      break;
    }
    netif_tx_request req{netif::tx_buf_ref(i), 0, 0, i, static_cast<uint16_t>(n)};
    log().record(tx_slot(i), kTxRing, &req, sizeof(req));  // the splitter: ring and shadow in one step
    (void)tx_->put_request(req);
    ++posted;
    ++frames_tx_;
  }
  if (posted && tx_->push_requests()) kick();
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
    auto rsp = ring::get_checked_response(*tx_, tx_ids_);
    if (!rsp) return std::unexpected(rsp.error());
    if (!*rsp) return {};
    const netif_tx_response& r = **rsp;
    log().complete(tx_slot(r.id));
    if (r.status != NETIF_RSP_OKAY && r.status != NETIF_RSP_DROPPED && r.status != NETIF_RSP_ERROR)
      return fail(Code::kRestartReplay, "tx response with bad status " + std::to_string(r.status));
  }
}

Result<void> Netfront::take_rx() {
  int reposted = 0;
  Result<void> out;
  for (;;) {
    auto rsp = ring::get_checked_response(*rx_, rx_ids_);
    if (!rsp) {
      out = std::unexpected(rsp.error());
      break;
    }
    if (!*rsp) break;
    const netif_rx_response& r = **rsp;
    log().complete(rx_slot(r.id));
    if (r.status > 0) {
      // A frame must lie inside the buffer page we granted for this id.
      if (r.status < static_cast<int>(netif::kEthHeader) || r.offset >= kPageSize ||
          r.status > static_cast<int>(kPageSize - r.offset)) {
        out = fail(Code::kRestartReplay, "rx response outside its granted page (offset " + std::to_string(r.offset) +
                                             ", size " + std::to_string(r.status) + ")");
        break;
      }
      port_->write(pages_[netif::rx_buf_ref(r.id)] + r.offset, static_cast<size_t>(r.status));
      ++frames_rx_;
    } else if (r.status != NETIF_RSP_DROPPED && r.status != NETIF_RSP_ERROR && r.status != 0) {
      out = fail(Code::kRestartReplay, "rx response with bad status " + std::to_string(r.status));
      break;
    }
    post_rx(r.id);
    ++reposted;
  }
  // The guest's side takes the frames before their buffers go back to the backend.
  if (reposted) port_->flush();
  if (reposted && rx_->push_requests()) kick();
  return out;
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
  uint32_t replayed = 0;
  std::vector<bool> replay(kRingSize, false);
  if (log().enabled()) {
    for (const auto& e : log().inflight(kTxRing)) {
      netif_tx_request req;
      if (e.len != sizeof(req)) continue;
      std::memcpy(&req, e.req, sizeof(req));
      if (req.id >= kRingSize || !tx_ids_.in_flight(req.id) || replay[req.id]) continue;
      if (!tx_->put_request(req)) break;
      replay[req.id] = true;
      ++replayed;
    }
  }
  // Without the shadow, frames the dead backend held are lost.
  for (uint16_t id = 0; id < kRingSize; ++id)
    if (tx_ids_.in_flight(id) && !replay[id]) {
      (void)tx_ids_.complete(id);
      log().complete(tx_slot(id));
    }
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
  if (c.mtu == cfg_.mtu && c.promisc == cfg_.promisc && c.allmulti == cfg_.allmulti && c.n_mcast == cfg_.n_mcast &&
      std::memcmp(c.mcast, cfg_.mcast, sizeof(c.mcast)) == 0)
    return;
  c.generation = cfg_.generation + 1;
  cfg_ = c;
  log().set_config(&cfg_, sizeof(cfg_));
  link_.config(cfg_);
}

}  // namespace sd::front
