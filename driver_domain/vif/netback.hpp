// vif backend: moves frames between a guest's netif rings (xen/io/netif.h)
// and the NIC it was handed (an AF_PACKET socket bound to the passed-through
// device, which shadowd keeps open across driver incarnations).
#pragma once

#include <deque>
#include <memory>
#include <vector>

#include "backend.hpp"
#include "granted_pages.hpp"
#include "sd/core/fd.hpp"
#include "sd/core/netif.hpp"
#include "sd/core/ring.hpp"

namespace sd::drvdom {

class Netback final : public Backend {
 public:
  // pages: the guest's granted pool, indexed by grant ref (ring pages first).
  // fds: [0] eventfd to notify the frontend, [1] eventfd the frontend kicks,
  // [2] the NIC socket.
  static Result<std::unique_ptr<Netback>> create(std::unique_ptr<GrantedPages> pages, std::vector<UniqueFd> fds,
                                                 const netif::VifConfig& cfg);
  void poll_fds(std::vector<pollfd>& fds) override;
  Result<void> service() override;
  void set_config(const ctl::Msg& m) override;
  void inject(ctl::FaultKind k) override;

 private:
  Netback() = default;
  Result<void> do_tx(bool& notify);
  Result<void> do_rx(bool& notify);
  uint8_t* buffer(grant_ref_t ref);

  std::unique_ptr<GrantedPages> pages_;
  UniqueFd to_front_, from_front_, nic_;
  netif::VifConfig cfg_{};
  std::optional<ring::BackRing<netif::TxTraits>> tx_;
  std::optional<ring::BackRing<netif::RxTraits>> rx_;
  std::deque<netif_rx_request> rx_posted_;  // buffers taken off the ring, waiting for frames
  bool stalled_ = false;
  std::optional<ctl::FaultKind> garbage_;
};

}  // namespace sd::drvdom
