// vif frontend, the beam splitter: a TAP device in the guest's network
// namespace on one side (so unmodified programs use ordinary sockets), Xen
// netif rings to the backend on the other; every request it posts is also
// recorded in the shadow's splitter log, and the device's configuration is
// kept there compacted.
//
// Connection states (the guest's TAP stays up in every one of them):
//
//  state      | event                          | action                                  | next
//  -----------+--------------------------------+-----------------------------------------+----------
//  Connected  | invalid response from backend  | stop consuming, report kDevFault        | Paused
//  Connected  | kBackendGone                   | stop consuming responses                | Paused
//  Paused     | TAP frame, tx slot free        | post it (queued in the ring)            | Paused
//  Paused     | kReconnect                     | take valid responses, reset the rings,  | Connected
//             |                                | replay in-flight requests from the log, |
//             |                                | repost rx buffers, answer kReconnected  |
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sd/core/control_channel.hpp"
#include "sd/core/netif.hpp"
#include "sd/core/platform.hpp"
#include "sd/core/ring.hpp"
#include "sd/core/splitter_log.hpp"

namespace sd::front {

// The multicast addresses `ifname` has joined, from the text of
// /proc/net/dev_mcast ("index name users global hexaddr" per line), into
// cfg.mcast / cfg.n_mcast (at most 32; with more, all-multicast is set
// instead, as a NIC does when its filter overflows).
void parse_dev_mcast(const std::string& text, const std::string& ifname, netif::VifConfig& cfg);

// Xen: the frontend grants its pool itself, to one backend domain at a time
// (a grant names one domain), so every new backend incarnation gets a new
// pool, into which reconnect() replays what is in flight.
class PoolSource {
 public:
  struct Pool {
    std::vector<uint8_t*> pages;                 // kPoolPages, this domain's mapping
    std::unique_ptr<platform::EventChannel> evt; // offered to the backend's domain
    ctl::XenPool ref;                            // what the backend needs to map and bind them
    std::shared_ptr<void> keep;                  // the grants live as long as this
  };
  virtual ~PoolSource() = default;
  virtual Result<Pool> make(uint32_t backend_domid) = 0;
};

class Netfront {
 public:
  // tap: an open TAP fd (IFF_TAP | IFF_NO_PI); ifname: its name. With a
  // PoolSource (Xen) the pool is granted per backend domain and the
  // splitter log is this process's own; without, shadowd sends both as fds.
  Netfront(ctl::Channel ch, UniqueFd tap, std::string ifname, netif::VifConfig cfg,
           std::unique_ptr<PoolSource> xen = nullptr);
  // Receives the attach from shadowd and serves until shadowd goes away.
  int run();

 private:
  Result<void> attach(const ctl::Msg& m, std::vector<UniqueFd>& fds);
  Result<void> add_grants(const ctl::Msg& m, std::vector<UniqueFd>& fds);
  void post_all_rx();
  void post_rx(uint16_t id);
  void read_tap();
  void take_responses();
  Result<void> take_tx();
  Result<void> take_rx();
  void backend_fault(const std::string& why);
  void reconnect(const ctl::Msg& req);
  Result<ctl::XenPool> regrant(uint32_t backend_domid);
  void check_config();
  void kick();
  bool handle_ctl();

  ctl::Channel ch_;
  UniqueFd tap_;
  std::string ifname_;
  netif::VifConfig cfg_;
  uint64_t handle_ = 0;

  std::vector<uint8_t*> pages_;
  size_t mapped_ = 0;
  std::unique_ptr<platform::EventChannel> evt_;
  std::unique_ptr<PoolSource> xen_;
  std::shared_ptr<void> pool_keep_;  // Xen: the current backend's grants
  shadow::SplitterLog log_;
  std::optional<ring::FrontRing<netif::TxTraits>> tx_;
  std::optional<ring::FrontRing<netif::RxTraits>> rx_;
  ring::IdTable tx_ids_{netif::kRingSize};
  ring::IdTable rx_ids_{netif::kRingSize};
  bool connected_ = false;  // attached and consuming responses
  bool attached_ = false;
  uint64_t frames_tx_ = 0, frames_rx_ = 0;
};

}  // namespace sd::front
