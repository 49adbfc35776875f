// vif frontend, the beam splitter: the guest's frames on one side (a
// PacketPort: its TAP device, so unmodified programs use ordinary sockets, or
// an unmodified Xen guest's own netfront rings), Xen netif rings to the
// backend on the other; every request it posts is also recorded in the
// shadow's splitter log, and the device's configuration is kept there
// compacted.
//
// Connection states (the guest's side stays up in every one of them):
//
//  state      | event                          | action                                  | next
//  -----------+--------------------------------+-----------------------------------------+----------
//  Connected  | invalid response from backend  | stop consuming, report kDevFault        | Paused
//  Connected  | kBackendGone                   | stop consuming responses                | Paused
//  Paused     | guest frame, tx slot free       | post it (queued in the ring)            | Paused
//  Paused     | kReconnect                     | take valid responses, reset the rings,  | Connected
//             |                                | replay in-flight requests from the log, |
//             |                                | repost rx buffers, answer kReconnected  |
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/frontend_link.hpp"
#include "common/pool_source.hpp"
#include "sd/core/control_channel.hpp"
#include "sd/core/netif.hpp"
#include "sd/core/platform.hpp"
#include "sd/core/ring.hpp"
#include "vif/packet_port.hpp"

namespace sd::front {

class Netfront final : private FrontendLink::Hooks {
 public:
  // port: the guest's side. With a PoolSource (Xen) the pool is granted
  // per backend domain and the splitter log is this process's own; without,
  // shadowd sends both as fds.
  Netfront(ctl::Channel ch, std::unique_ptr<PacketPort> port, netif::VifConfig cfg,
           std::unique_ptr<PoolSource> xen = nullptr);
  // The guest's TAP device: an open TAP fd (IFF_TAP | IFF_NO_PI) and its name.
  Netfront(ctl::Channel ch, UniqueFd tap, std::string ifname, netif::VifConfig cfg,
           std::unique_ptr<PoolSource> xen = nullptr)
      : Netfront(std::move(ch), std::make_unique<TapPort>(std::move(tap), std::move(ifname)), cfg, std::move(xen)) {}
  // Receives the attach from shadowd and serves until shadowd goes away.
  int run();

 private:
  // FrontendLink::Hooks
  Result<void> attached(FrontendLink& link) override;
  Result<FrontendLink::Repair> repair(const ctl::Msg& m) override;

  void post_all_rx();
  void post_rx(uint16_t id);
  void read_guest();
  void take_responses();
  Result<void> take_tx();
  Result<void> take_rx();
  Result<ctl::XenPool> regrant(uint32_t backend_domid);
  void check_config();
  void kick();
  shadow::SplitterLog& log() { return link_.log(); }

  FrontendLink link_;
  std::unique_ptr<PacketPort> port_;
  netif::VifConfig cfg_;

  std::vector<uint8_t*> pages_;
  std::unique_ptr<platform::EventChannel> evt_;
  std::unique_ptr<PoolSource> xen_;
  std::shared_ptr<void> pool_keep_;  // Xen: the current backend's grants
  std::optional<ring::FrontRing<netif::TxTraits>> tx_;
  std::optional<ring::FrontRing<netif::RxTraits>> rx_;
  ring::IdTable tx_ids_{netif::kRingSize};
  ring::IdTable rx_ids_{netif::kRingSize};
  uint64_t frames_tx_ = 0, frames_rx_ = 0;
};

}  // namespace sd::front
