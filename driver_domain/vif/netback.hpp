// vif backend: moves frames between a guest's netif rings (xen/io/netif.h)
// and the NIC it was handed (an AF_PACKET socket bound to the passed-through
// device, which shadowd keeps open across driver incarnations). Frames span
// as many slots as they need (up to 64 KiB TCP segments, jumbo frames) when
// the frontend said it carries them (VifConfig.features); each tx slot is
// answered, a frame's slots all at once; an rx frame fills the buffers
// posted next, in ring order.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "backend.hpp"
#include "granted_pages.hpp"
#include "sd/core/fd.hpp"
#include "sd/core/netif.hpp"
#include "sd/core/platform.hpp"
#include "sd/core/ring.hpp"

namespace sd::drvdom {

class Netback final : public Backend {
 public:
  // pages: the guest's granted pool, indexed by grant ref (ring pages first).
  // evt: the event channel to the frontend; nic: the NIC's packet socket.
  static Result<std::unique_ptr<Netback>> create(std::unique_ptr<GrantedPages> pages,
                                                 std::unique_ptr<platform::EventChannel> evt, UniqueFd nic,
                                                 const netif::VifConfig& cfg);
  // A NIC this domain owns (Xen: its interface): a packet socket on it,
  // promiscuous, receive coalescing off. Errors name the interface.
  static Result<UniqueFd> open_nic(const std::string& ifname);
  void poll_fds(std::vector<pollfd>& fds) override;
  Result<void> service() override;
  void set_config(const ctl::Msg& m) override;
  // Faults (inject): kBadId answers a tx request with an id never sent;
  // kBadProd publishes a tx rsp_prod beyond the requests; kBadGrant answers an
  // rx buffer with data beyond its page.

 private:
  Netback() = default;
  Result<void> do_tx(bool& notify);
  Result<void> do_rx(bool& notify);
  int16_t send_frame();
  bool receive_frame();
  uint8_t* buffer(grant_ref_t ref);
  void use_features(uint32_t features);

  std::unique_ptr<GrantedPages> pages_;
  std::unique_ptr<platform::EventChannel> evt_;
  UniqueFd nic_;
  netif::VifConfig cfg_{};
  std::optional<ring::BackRing<netif::TxTraits>> tx_;
  std::optional<ring::BackRing<netif::RxTraits>> rx_;
  std::deque<netif_rx_request> rx_posted_;  // buffers taken off the ring, waiting for frames
  // The frontend's side carries multi-slot frames, GSO and partial
  // checksums: the NIC's socket then speaks virtio-net headers.
  bool offloads_ = false;
  // A tx frame's slots as they come off the ring (its GSO extra included).
  netif_tx_request chain_[netif::kMaxSlots];
  unsigned chain_n_ = 0;
  bool chain_done_ = false;
};

}  // namespace sd::drvdom
