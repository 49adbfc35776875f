// vif backend: moves frames between a guest's netif rings (xen/io/netif.h)
// and the NIC it was handed (an AF_PACKET socket bound to the passed-through
// device, which shadowd keeps open across driver incarnations). Frames span
// as many slots as they need (up to 64 KiB TCP segments, jumbo frames) when
// the frontend said it carries them (VifConfig.features); each tx slot is
// answered, a frame's slots all at once; an rx frame fills the buffers
// posted next, in ring order.
#pragma once

#include <array>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <sys/uio.h>

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
  struct TxFrame {  // a tx frame off the ring: its slots, its message for the NIC, its status
    netif_tx_request slot[netif::kMaxSlots];
    unsigned n = 0;
    int16_t status = 0;
    netif::VnetHdr hdr{};
    iovec iov[netif::kMaxSlots + 1];
    unsigned niov = 0;
  };
  static constexpr unsigned kBatch = 16;  // frames per sendmmsg
  int16_t prepare_frame(TxFrame& f);
  void send_batch(unsigned frames);
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
  // Tx frames as they come off the ring (a GSO extra included), sent
  // together; chain_n_ slots of the next one are in batch_[frames].
  std::array<TxFrame, kBatch + 1> batch_{};
  unsigned chain_n_ = 0;
  bool chain_done_ = false;
};

}  // namespace sd::drvdom
