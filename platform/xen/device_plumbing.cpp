#include "xen/device_plumbing.hpp"

#include <cstdlib>
#include <cstring>

#include "xen/vchan_link.hpp"

extern "C" {
#include <xen/io/xenbus.h>
}

namespace sd::xen {

Result<std::unique_ptr<XenDevicePlumbing>> XenDevicePlumbing::create(boost::asio::io_context& io,
                                                                     platform::Store& store,
                                                                     const platform::DeviceInfo& dev) {
  // The guest is started by the operator (xl create); find it by name.
  for (const auto& id : store.list("/local/domain")) {
    auto name = store.read("/local/domain/" + id + "/name");
    if (name && *name == dev.guest)
      return std::unique_ptr<XenDevicePlumbing>(new XenDevicePlumbing(io, store, dev, std::atoi(id.c_str())));
  }
  return fail(Code::kUnavailable,
              "guest '" + dev.guest + "' is not running (start it with xl create before shadowd)");
}

XenDevicePlumbing::~XenDevicePlumbing() {
  if (front_published_) {
    (void)store_.remove(front_dir());
    if (backend_ != 0) (void)store_.remove(back_dir(backend_));
  }
  link_.reset();  // the frontend sees its channel close
}

std::optional<Result<ctl::Channel>> XenDevicePlumbing::connect_frontend() {
  // The channel works at once; what is sent waits until the guest's frontend offers its vchan.
  auto path = "/local/domain/" + std::to_string(guest_domid_) + "/data/sd-" + dev_.type + "-" +
              std::to_string(dev_.index);
  auto link = VchanLink::open(io_, store_, guest_domid_, path);
  if (!link) return Result<ctl::Channel>(std::unexpected(link.error()));
  link_ = std::move(link->second);
  return Result<ctl::Channel>(std::move(link->first));
}

// The frontend has its own memory and event channel: it gets only the
// attach (the config it starts from); there is no splitter log to share
// (it stays in the guest).
Result<void> XenDevicePlumbing::offer_frontend(ctl::Channel& ch, const ctl::Msg& attach, int) {
  return ch.send(attach);
}

// From the guest: checked here for shape, by the backend when it maps.
Result<void> XenDevicePlumbing::frontend_repaired(const ctl::Msg& m) {
  auto pool = m.get_payload<ctl::XenPool>();
  if (pool.owner != static_cast<uint32_t>(guest_domid_) || pool.pages != dev_.pages)
    return fail(Code::kRestartReplay, "frontend sent a pool that is not its own or of the wrong size");
  pool_ = pool;
  have_pool_ = true;
  return {};
}

Result<void> XenDevicePlumbing::offer_backend(ctl::Channel& ch, platform::DomId, const ctl::Msg& attach,
                                              const platform::BackendResources& resources) {
  if (!have_pool_) return fail(Code::kRestartReplay, "no pool from the frontend to hand over");
  ctl::XenPool pool = pool_;
  std::memset(pool.nic, 0, sizeof(pool.nic));
  std::strncpy(pool.nic, resources.nic.c_str(), sizeof(pool.nic) - 1);
  ctl::Msg refs;
  refs.type = ctl::MsgType::kGrantRefs;
  refs.b = attach.b;
  refs.set_payload(pool);
  if (auto r = ch.send(attach); !r) return r;
  return ch.send(refs);
}

std::string XenDevicePlumbing::front_dir() const {
  return "/local/domain/" + std::to_string(guest_domid_) + "/device/sd-" + dev_.type + "/" +
         std::to_string(dev_.index);
}

std::string XenDevicePlumbing::back_dir(platform::DomId dd) const {
  return "/local/domain/" + std::to_string(dd) + "/backend/sd-" + dev_.type + "/" + std::to_string(guest_domid_) +
         "/" + std::to_string(dev_.index);
}

void XenDevicePlumbing::write(const std::string& path, const std::string& value) {
  (void)store_.write(path, value);  // a store that refuses shows in `shadowctl devices`, not in the data path
}

void XenDevicePlumbing::backend_starting(platform::DomId dd) {
  if (backend_ != 0 && backend_ != dd) (void)store_.remove(back_dir(backend_));  // if its domain left it
  backend_ = dd;
  std::string front = front_dir(), back = back_dir(dd);
  write(back + "/frontend", front);
  write(back + "/frontend-id", std::to_string(guest_domid_));
  write(back + "/handle", std::to_string(dev_.index));
  for (const auto& [k, v] : dev_.nodes) write(back + "/" + k, v);
  write(back + "/state", std::to_string(XenbusStateInitWait));
  if (!front_published_) {
    write(front + "/handle", std::to_string(dev_.index));
    for (const auto& [k, v] : dev_.nodes) write(front + "/" + k, v);
    write(front + "/state", std::to_string(XenbusStateInitialising));
    front_published_ = true;
  }
  write(front + "/backend", back);
  write(front + "/backend-id", std::to_string(dd));
  (void)store_.set_access(back, dd, {static_cast<platform::DomId>(guest_domid_)});
  (void)store_.set_access(front, static_cast<platform::DomId>(guest_domid_), {dd});
}

void XenDevicePlumbing::backend_serving(platform::DomId dd) {
  write(back_dir(dd) + "/state", std::to_string(XenbusStateConnected));
  if (!front_connected_) {  // from now on the guest's side stays Connected
    write(front_dir() + "/state", std::to_string(XenbusStateConnected));
    front_connected_ = true;
  }
}

std::map<std::string, std::string> XenDevicePlumbing::status() const {
  return {{"guest_domid", std::to_string(guest_domid_)},
          {"frontend_link", link_ && link_->connected() ? "connected" : "waiting"},
          {"backend_domid", std::to_string(backend_)},
          {"xenbus_frontend", front_published_ ? front_dir() : ""}};
}

}  // namespace sd::xen
