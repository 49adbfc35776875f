// One device connection on Xen. The guest's own frontend (sd-netfront
// --xen in the guest domU) grants its pool to each backend domain and binds
// the event channel itself; shadowd reaches it over the vchan it offers at
// /local/domain/<guest>/data/sd-<type>-<index>, checks the pool it reports
// after each repair (kReconnected + XenPool) and relays it to the backend
// (kDevAttach + kGrantRefs). The device is laid out in xenstore as a
// toolstack lays out a PV device, under its own type so the kernels'
// drivers never bind it:
//   frontend  /local/domain/<guest>/device/sd-<type>/<n>        owned by the guest
//   backend   /local/domain/<dd>/backend/sd-<type>/<guest>/<n>  owned by the driver domain
// An unmodified guest (policy guest_frontend: kernel) runs its kernel's own
// frontend instead (xen-netfront), which cannot follow a backend to another
// domain; it gets a device of the real type whose backend is in dom0 and
// never moves, the dom0 ring proxy (sd-netfront --xen-guest, started here):
//   frontend  /local/domain/<guest>/device/<type>/<n>           the guest's kernel
//   backend   /local/domain/0/backend/<type>-proxy/<guest>/<n>  the proxy (a type dom0's
//                                                              kernel backends never bind)
// The proxy answers the guest's xenbus handshake itself and is, to shadowd,
// the device's frontend (over a socket pair): it grants its pool to each
// backend incarnation as sd-netfront --xen does from a guest.
// Both ends talk to shadowd, so shadowd writes their XenbusStates: the
// backend's per incarnation (InitWait, then Connected when it serves), the
// frontend's Connected once the first backend serves and never anything
// else while the guest uses the device: a recovery only moves
// backend/backend-id to the new domain.
#pragma once

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <memory>
#include <string>

#include "sd/core/platform.hpp"

namespace sd::xen {

class VchanLink;

class XenDevicePlumbing final : public platform::DevicePlumbing {
 public:
  // kUnavailable naming the guest if it is not running.
  // proxy_binary: the dom0 ring proxy (sd-netfront, sd-blkfront) of a
  // device with kernel_frontend.
  static Result<std::unique_ptr<XenDevicePlumbing>> create(boost::asio::io_context& io, platform::Store& store,
                                                           const platform::DeviceInfo& dev,
                                                           const std::filesystem::path& proxy_binary = {});
  ~XenDevicePlumbing() override;

  size_t pages() const override { return dev_.pages; }
  void* page(platform::GrantRef) override { return nullptr; }  // the guest's pages; shadowd maps none
  platform::EventChannel& frontend_end() override { return none_; }
  platform::EventChannel& backend_end() override { return none_; }
  bool frontend_in_guest() const override { return true; }
  std::optional<Result<ctl::Channel>> connect_frontend() override;
  Result<void> offer_frontend(ctl::Channel& ch, const ctl::Msg& attach, int splitter_log_fd) override;
  Result<void> frontend_repaired(const ctl::Msg& m) override;
  Result<void> grant_to(const std::vector<platform::DomId>&) override { return {}; }  // the guest grants
  Result<void> offer_backend(ctl::Channel& ch, platform::DomId peer, const ctl::Msg& attach,
                             const platform::BackendResources& resources) override;
  void backend_starting(platform::DomId dd) override;
  void backend_serving(platform::DomId dd) override;
  std::map<std::string, std::string> status() const override;

 private:
  // The ends bind their own event channels on Xen: shadowd's ends do nothing.
  class NoEvent final : public platform::EventChannel {
   public:
    Result<void> notify() override { return {}; }
    int wait_fd() const override { return -1; }
    Result<uint64_t> consume() override { return uint64_t{0}; }
  };
  XenDevicePlumbing(boost::asio::io_context& io, platform::Store& store, platform::DeviceInfo dev, int guest_domid,
                    std::filesystem::path proxy_binary)
      : io_(io), store_(store), dev_(std::move(dev)), guest_domid_(guest_domid), proxy_binary_(std::move(proxy_binary)) {}
  // The unmodified guest's device (kernel_frontend): both directories, then the proxy.
  Result<ctl::Channel> start_proxy();
  std::string kernel_front_dir() const;
  std::string kernel_back_dir() const;
  std::string kernel_devid() const;
  void publish(const std::string& dir, const std::map<std::string, std::string>& keys, platform::DomId owner,
               platform::DomId reader);
  Result<ctl::XenPool> lend(platform::LentMemory& memory, platform::DomId peer);
  std::string front_dir() const;
  std::string back_dir(platform::DomId dd) const;
  void write(const std::string& path, const std::string& value);

  boost::asio::io_context& io_;
  platform::Store& store_;
  platform::DeviceInfo dev_;
  int guest_domid_;
  std::filesystem::path proxy_binary_;
  int proxy_pid_ = -1;
  bool kernel_published_ = false;
  NoEvent none_;
  std::unique_ptr<VchanLink> link_;
  ctl::XenPool pool_{};  // as the frontend last reported it
  bool have_pool_ = false;
  platform::DomId backend_ = 0;
  bool front_published_ = false, front_connected_ = false;
};

}  // namespace sd::xen
