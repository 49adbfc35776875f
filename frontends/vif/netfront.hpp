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

#include <chrono>
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
  // port: the guest's side; cfg.mtu is also the most the vif's path
  // carries (the guest may lower its MTU, not raise it above). With a PoolSource (Xen) the pool is granted
  // per backend domain and the splitter log is this process's own; without,
  // shadowd sends both as fds.
  Netfront(ctl::Channel ch, std::unique_ptr<PacketPort> port, netif::VifConfig cfg,
           std::unique_ptr<PoolSource> xen = nullptr);
  // Receives the attach from shadowd and serves until shadowd goes away.
  int run();

 private:
  // FrontendLink::Hooks
  Result<void> attached(FrontendLink& link) override;
  Result<FrontendLink::Repair> repair(const ctl::Msg& m) override;

  void post_all_rx();
  void post_rx(uint16_t id);
  void read_guest();
  void post_frame(const uint16_t* ids, unsigned slots, size_t len, const netif::Offload& off);
  void frame_answered(uint16_t head);
  Result<void> rx_slot_taken(const netif_rx_response& r, uint16_t id);
  Result<void> deliver_rx();
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
  uint16_t max_mtu_;
  std::chrono::steady_clock::time_point checked_{};

  std::vector<uint8_t*> pages_;
  std::unique_ptr<platform::EventChannel> evt_;
  std::unique_ptr<PoolSource> xen_;
  std::shared_ptr<void> pool_keep_;  // Xen: the current backend's grants
  std::optional<ring::FrontRing<netif::TxTraits>> tx_;
  std::optional<ring::FrontRing<netif::RxTraits>> rx_;
  ring::IdTable tx_ids_{netif::kRingSize};
  ring::IdTable rx_ids_{netif::kRingSize};
  uint64_t frames_tx_ = 0, frames_rx_ = 0;

  // tx: a frame's slots stay in flight (ids and splitter log) until every
  // one of them is answered, so a crash replays frames whole.
  enum : uint8_t { kIdle = 0, kPosted = 1, kAnswered = 2 };
  std::vector<uint8_t> tx_state_ = std::vector<uint8_t>(netif::kRingSize, kIdle);
  std::vector<uint16_t> tx_head_ = std::vector<uint16_t>(netif::kRingSize, 0);  // each slot's first slot
  std::vector<uint16_t> tx_next_ = std::vector<uint16_t>(netif::kRingSize, 0);  // the frame's next slot, or itself
  std::vector<uint8_t> tx_left_ = std::vector<uint8_t>(netif::kRingSize, 0);    // by first slot: unanswered
  std::vector<uint16_t> tx_spare_;  // ids claimed for the next read, not posted
  // rx: the response at ring position p answers the buffer posted at p
  // (id p mod ring size, as netif's frontends post them); a frame's slots
  // are delivered together, then their buffers posted again.
  uint32_t rx_cons_ = 0;
  iovec rx_iov_[netif::kMaxDataSlots];
  unsigned rx_frags_ = 0;
  uint16_t rx_taken_[netif::kMaxSlots];
  unsigned rx_ntaken_ = 0;
  netif::Offload rx_off_;
  bool rx_extra_ = false;  // the next slot is the frame's GSO extra
  bool rx_more_ = false;   // the frame's last piece had more_data
};

}  // namespace sd::front
