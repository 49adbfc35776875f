// The vif class in shadowd's engine (local platform): builds the topology
// (guest netns + TAP via sd-netfront, which shadowd starts; the NIC as a
// veth end in the driver domain's persistent netns, its peer in `wire`),
// owns the NIC's packet socket (the device that outlives every driver), and
// answers the tx ring in active mode "drop". The config to replay is the
// guest's MAC/MTU/features from the splitter log. Where the guest runs its
// own frontend in a domain of its own (Xen), there is no topology to build:
// the backend is told its NIC by name (spec key nic=, else eth0).
#pragma once

#include <boost/asio/posix/stream_descriptor.hpp>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "device_engine.hpp"
#include "sd/core/netif.hpp"
#include "sd/core/ring.hpp"

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

class VifHooks final : public ClassHooks {
 public:
  VifHooks(const std::string& guest, const config::DeviceSpec& spec, unsigned vif_number, std::string wire_ns,
           std::filesystem::path frontend_binary);
  ~VifHooks() override;

  config::DeviceClass cls() const override { return config::DeviceClass::kVif; }
  size_t pool_pages() const override { return netif::kPoolPages; }
  size_t log_slots() const override { return 2 * netif::kRingSize; }
  Result<std::optional<ctl::Channel>> setup() override;
  void teardown() override;
  void frontend_payload(ctl::Msg& m) const override { m.set_payload(cfg_); }
  Result<void> frontend_ready() override;
  bool frontend_config(const ctl::Msg& m) override;
  void backend_payload(ctl::Msg& m) const override { m.set_payload(replay_config()); }
  platform::BackendResources backend_resources() const override;
  std::map<std::string, std::string> published_nodes() const override { return {{"mac", netif::mac_string(cfg_.mac)}}; }
  bool pre_attaches_standby() const override { return true; }
  std::string active_mode() const override;
  void start_active() override;
  void stop_active() override;
  std::optional<Stall> progress(bool serving) override;
  nlohmann::json status() const override;
  nlohmann::json topology_json() const;  // where the guest's vif leads (vif_up event, status)

  const VifTopology& topology() const { return topo_; }

 private:
  Result<void> build_topology();
  Result<ctl::Channel> start_frontend();
  netif::VifConfig replay_config() const;
  void arm_drop();
  void drop_pending();

  std::string guest_;
  unsigned vif_number_;
  std::filesystem::path frontend_binary_;
  VifTopology topo_;
  netif::VifConfig cfg_{};
  UniqueFd nic_;             // local: the NIC's packet socket, shadowd's for good
  std::string nic_name_;     // where the guest runs its own frontend: the driver domain's NIC
  bool topology_ = false;    // shadowd built the guest's side (and tears it down)
  int front_pid_ = -1;
  // Active mode "drop": shadowd answers the tx ring itself while no backend runs.
  std::optional<ring::BackRing<netif::TxTraits>> drop_ring_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> drop_wait_;
  uint64_t dropped_ = 0;
  bool drop_extra_ = false;  // the next request is a GSO frame's extra slot
  uint16_t path_mtu_ = 1500;  // the vif's mtu=: what the wire and the NIC carry
};

}  // namespace sd::dom0
