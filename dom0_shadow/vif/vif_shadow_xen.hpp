// shadowd's side of one vif on Xen. The guest's frontend (sd-netfront --xen,
// in the guest domU) offers a control vchan at
// /local/domain/<guest>/data/sd-vif-<index>; shadowd connects to it and
// keeps the compacted config it reports. For every backend incarnation
// (first start, cold restart, promoted standby) shadowd tells the frontend
// the backend's domid (kReconnect): the frontend grants it a fresh pool and
// event channel, replays its in-flight requests from its splitter log into
// the new rings and answers with the pool's refs (kReconnected + XenPool);
// shadowd hands those and the config to the backend (kDevAttach +
// kGrantRefs), which maps them and serves. The guest's device never goes
// down: its TAP stays up and frames queue in the ring meanwhile; in
// xenstore it stays Connected (see publish_backend).
//
// Not yet on Xen: pre-attaching a warm standby (a promotion does the whole
// attach, which is fast because the standby is already booted), active mode
// "drop", and the progress watchdog (the in-flight log stays in the guest).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <memory>
#include <string>

#include "device_impl.hpp"
#include "event_log.hpp"
#include "sd/config/policy.hpp"
#include "sd/config/xl_cfg.hpp"
#include "sd/core/netif.hpp"

namespace sd::xen {
class VchanLink;
}

namespace sd::dom0 {

class VifShadowXen final : public DeviceImpl {
 public:
  VifShadowXen(boost::asio::io_context& io, platform::Platform& plat, std::string guest,
               const config::DeviceSpec& spec, uint64_t handle, config::Policy policy, EventLog& log,
               FaultReporter report);
  ~VifShadowXen() override;

  Result<void> setup() override;
  void on_fault() override;
  void on_backend_dead() override {}
  void on_backend_ready(ctl::Channel& ch, platform::DomId domid, Done done) override;
  void on_backend_msg(platform::DomId from, const ctl::Msg& m) override;
  void on_standby_ready(ctl::Channel&, platform::DomId) override {}
  void teardown() override;
  nlohmann::json status() const override;

 private:
  Result<int> guest_domid() const;
  void arm_frontend_read();
  void on_frontend_msg(const ctl::Msg& m);
  void finish(Result<ResumeTimes> r);
  std::string id() const { return guest_ + "/vif/" + std::to_string(spec_.index); }
  std::string front_dir() const;
  std::string back_dir(platform::DomId dd) const;
  void publish_backend(platform::DomId dd);
  void xenbus_write(const std::string& path, const std::string& value);
  void xenbus_state(const std::string& dir, int state);

  boost::asio::io_context& io_;
  platform::Platform& plat_;
  std::string guest_;
  config::DeviceSpec spec_;
  uint64_t handle_;
  config::Policy policy_;
  EventLog& log_;
  FaultReporter report_;
  netif::VifConfig cfg_{};
  std::string nic_ = "eth0";  // the driver domain's NIC (spec key "nic", else eth0)
  int guest_domid_ = -1;

  std::unique_ptr<xen::VchanLink> link_;
  ctl::Channel front_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> front_wait_;

  ctl::Channel* backend_ = nullptr;
  platform::DomId domid_ = 0;
  bool backend_up_ = false;
  bool front_published_ = false, front_connected_ = false;  // its xenstore nodes
  Done done_;
  platform::Clock::time_point t_ready_{}, t_replayed_{};
  ResumeTimes times_{};
  uint64_t recoveries_ = 0;
  std::string last_fault_;
};

}  // namespace sd::dom0
