// shadowd's side of one vif (local platform): builds the topology (guest
// netns + TAP via the frontend, the NIC as a veth end in the driver domain's
// netns, the peer end in `wire`), owns the guest's granted pool, the event
// channels, the NIC's packet socket and the splitter log, and runs recovery:
// pause the frontend, let it replay its in-flight requests from the log into
// a fresh ring, then attach the new backend with the compacted config.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <optional>
#include <string>

#include "device_impl.hpp"
#include "event_log.hpp"
#include "sd/config/policy.hpp"
#include "sd/config/xl_cfg.hpp"
#include "sd/core/netif.hpp"
#include "sd/core/ring.hpp"
#include "sd/core/splitter_log.hpp"

namespace sd::dom0 {

struct VifTopology {
  std::string guest_ns;     // guest's network namespace (the guest's name)
  std::string guest_if = "eth0";
  std::string guest_addr;   // CIDR, e.g. 10.200.0.2/24
  std::string wire_ns = "wire";
  std::string wire_if;      // peer end of the NIC, in wire_ns
  std::string wire_addr;    // CIDR, e.g. 10.200.0.1/24
  std::string driver_ns;    // the driver domain's persistent netns
  std::string nic_if;       // the NIC as the driver domain sees it
};

class VifShadow final : public DeviceImpl {
 public:
  VifShadow(boost::asio::io_context& io, platform::Platform& plat, std::string guest, const config::DeviceSpec& spec,
            uint64_t handle, unsigned vif_number, std::string wire_ns, config::Policy policy,
            std::filesystem::path frontend_binary, EventLog& log, FaultReporter report);
  ~VifShadow() override;

  Result<void> setup() override;
  void on_fault() override;
  void on_backend_dead() override;
  void on_backend_ready(ctl::Channel& ch, platform::DomId domid, Done done) override;
  void on_backend_msg(platform::DomId from, const ctl::Msg& m) override;
  void on_standby_ready(ctl::Channel& ch, platform::DomId domid) override;
  void teardown() override;
  nlohmann::json status() const override;

  const VifTopology& topology() const { return topo_; }

 private:
  Result<void> build_topology();
  Result<void> start_frontend();
  Result<void> send_pool(ctl::Channel& ch, platform::DomId peer, bool owner);
  netif::VifConfig replay_config() const;
  Result<void> regrant(std::initializer_list<platform::DomId> peers);
  Result<void> send_attach(ctl::Channel& ch, platform::DomId peer, bool standby);
  void arm_frontend_read();
  void on_frontend_msg(const ctl::Msg& m);
  void attach_backend();
  void watchdog_tick();
  void start_drop();
  void arm_drop();
  void drop_pending();
  void finish(Result<ResumeTimes> r);

  boost::asio::io_context& io_;
  platform::Platform& plat_;
  std::string guest_;
  config::DeviceSpec spec_;
  uint64_t handle_;
  config::Policy policy_;
  std::filesystem::path frontend_binary_;
  EventLog& log_;
  FaultReporter report_;
  VifTopology topo_;
  netif::VifConfig cfg_{};

  std::unique_ptr<platform::GrantPool> pool_;
  std::unique_ptr<platform::EventChannel> front_evt_, back_evt_;
  shadow::SplitterLog shadow_;
  UniqueFd nic_;
  int front_pid_ = -1;
  UniqueFd front_pidfd_;
  ctl::Channel front_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> front_wait_;
  boost::asio::steady_timer watchdog_;

  // Recovery in progress.
  ctl::Channel* backend_ = nullptr;
  platform::DomId domid_ = 0;
  bool first_attach_ = true;
  bool backend_up_ = false;
  platform::Clock::time_point up_since_;  // the progress watchdog ages requests from here
  std::optional<platform::DomId> standby_domid_;  // pre-attached warm standby
  bool standby_mapped_ = false;
  bool promoted_ = false;  // the backend being attached is a pre-attached standby
  Done done_;
  platform::Clock::time_point t_ready_{}, t_replayed_{};
  ResumeTimes times_{};
  uint64_t recoveries_ = 0;
  // Active mode "drop": shadowd answers the tx ring itself while no backend runs.
  std::optional<ring::BackRing<netif::TxTraits>> drop_ring_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> drop_wait_;
  uint64_t dropped_ = 0;
  std::string last_fault_;
};

}  // namespace sd::dom0
