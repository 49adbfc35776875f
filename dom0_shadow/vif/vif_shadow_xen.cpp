#include "vif/vif_shadow_xen.hpp"

#include <unistd.h>

#include <cstring>

#include "xen/vchan_link.hpp"

extern "C" {
#include <xen/io/xenbus.h>
}

namespace sd::dom0 {

VifShadowXen::VifShadowXen(boost::asio::io_context& io, platform::Platform& plat, std::string guest,
                           const config::DeviceSpec& spec, uint64_t handle, config::Policy policy, EventLog& log,
                           FaultReporter report)
    : io_(io), plat_(plat), guest_(std::move(guest)), spec_(spec), handle_(handle), policy_(std::move(policy)),
      log_(log), report_(std::move(report)) {
  if (!spec_.params.count("mac") || !netif::parse_mac(spec_.params.at("mac"), cfg_.mac)) {
    const uint8_t def[6] = {0x00, 0x16, 0x3e, 0x5d, 0x00, static_cast<uint8_t>(spec_.index + 1)};
    std::memcpy(cfg_.mac, def, 6);
  }
  cfg_.mtu = 1500;
  cfg_.features = netif::kFeatureRxCopy;
}

VifShadowXen::~VifShadowXen() { teardown(); }

// The guest is started by the operator (xl create); find it by name.
Result<int> VifShadowXen::guest_domid() const {
  auto& store = plat_.store();
  for (const auto& id : store.list("/local/domain")) {
    auto name = store.read("/local/domain/" + id + "/name");
    if (name && *name == guest_) return std::atoi(id.c_str());
  }
  return fail(Code::kUnavailable, "guest '" + guest_ + "' is not running (start it with xl create before shadowd)");
}

Result<void> VifShadowXen::setup() {
  auto g = guest_domid();
  if (!g) return std::unexpected(g.error());
  guest_domid_ = *g;
  auto link = xen::VchanLink::open(io_, plat_.store(), guest_domid_, xen::vif_channel_path(guest_domid_, static_cast<uint64_t>(spec_.index)));
  if (!link) return std::unexpected(link.error());
  front_ = std::move(link->first);
  link_ = std::move(link->second);
  (void)front_.set_nonblocking(true);
  front_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(front_.fd()));
  arm_frontend_read();
  // Waits in the channel until the guest's frontend offers its vchan.
  ctl::Msg att;
  att.type = ctl::MsgType::kDevAttach;
  att.a = static_cast<uint32_t>(config::DeviceClass::kVif);
  att.b = handle_;
  att.set_payload(cfg_);
  if (auto r = front_.send(att); !r) return r;
  log_.emit({{"type", "vif_up"}, {"device", id()}, {"guest_domid", guest_domid_},
             {"frontend", xen::vif_channel_path(guest_domid_, static_cast<uint64_t>(spec_.index))}, {"mac", netif::mac_string(cfg_.mac)}});
  return {};
}

void VifShadowXen::arm_frontend_read() {
  if (!front_wait_) return;
  front_wait_->async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec) return;
    for (;;) {
      auto m = front_.recv();
      if (!m) {
        log_.emit({{"type", "frontend_gone"}, {"device", id()}, {"error", m.error().message}});
        front_wait_.reset();
        return;
      }
      if (!*m) break;
      on_frontend_msg(**m);
    }
    arm_frontend_read();
  });
}

void VifShadowXen::on_fault() {
  backend_up_ = false;
  ctl::Msg m;
  m.type = ctl::MsgType::kBackendGone;
  m.b = handle_;
  (void)front_.send(m);
}

// The device in xenstore the way the toolstack lays out a PV device, under
// its own type (the kernels' netfront/netback drivers never bind it):
// frontend  /local/domain/<guest>/device/sd-vif/<n>        owned by the guest
// backend   /local/domain/<dd>/backend/sd-vif/<guest>/<n>  owned by the driver domain
// Both ends talk to shadowd over vchans, so shadowd writes the XenbusStates
// for them: the backend's per incarnation (InitWait, then Connected when it
// serves); the frontend's Connected once the first backend serves, and never
// anything else while the guest uses the device: a recovery only moves
// backend/backend-id to the new domain.
std::string VifShadowXen::front_dir() const {
  return "/local/domain/" + std::to_string(guest_domid_) + "/device/sd-vif/" + std::to_string(spec_.index);
}

std::string VifShadowXen::back_dir(platform::DomId dd) const {
  return "/local/domain/" + std::to_string(dd) + "/backend/sd-vif/" + std::to_string(guest_domid_) + "/" +
         std::to_string(spec_.index);
}

void VifShadowXen::xenbus_write(const std::string& path, const std::string& value) {
  if (auto r = plat_.store().write(path, value); !r)
    log_.emit({{"type", "xenstore_error"}, {"device", id()}, {"error", r.error().message}});
}

void VifShadowXen::xenbus_state(const std::string& dir, int state) {
  xenbus_write(dir + "/state", std::to_string(state));
}

void VifShadowXen::publish_backend(platform::DomId dd) {
  auto& store = plat_.store();
  std::string front = front_dir(), back = back_dir(dd);
  xenbus_write(back + "/frontend", front);
  xenbus_write(back + "/frontend-id", std::to_string(guest_domid_));
  xenbus_write(back + "/handle", std::to_string(spec_.index));
  xenbus_write(back + "/mac", netif::mac_string(cfg_.mac));
  xenbus_state(back, XenbusStateInitWait);
  if (!front_published_) {
    xenbus_write(front + "/handle", std::to_string(spec_.index));
    xenbus_write(front + "/mac", netif::mac_string(cfg_.mac));
    xenbus_state(front, XenbusStateInitialising);
    front_published_ = true;
  }
  xenbus_write(front + "/backend", back);
  xenbus_write(front + "/backend-id", std::to_string(dd));
  for (auto [dir, owner, reader] : {std::tuple{back, dd, static_cast<platform::DomId>(guest_domid_)},
                                    std::tuple{front, static_cast<platform::DomId>(guest_domid_), dd}})
    if (auto r = store.set_access(dir, owner, {reader}); !r)
      log_.emit({{"type", "xenstore_error"}, {"device", id()}, {"error", r.error().message}});
}

void VifShadowXen::on_backend_ready(ctl::Channel& ch, platform::DomId domid, Done done) {
  if (domid_ != 0 && domid_ != domid) (void)plat_.store().remove(back_dir(domid_));  // if its domain left it
  backend_ = &ch;
  domid_ = domid;
  publish_backend(domid);
  done_ = std::move(done);
  times_ = {};
  t_ready_ = platform::Clock::now();
  // The frontend grants a new pool to this domain and replays into it.
  ctl::Msg m;
  m.type = ctl::MsgType::kReconnect;
  m.a = domid;
  m.b = handle_;
  if (auto r = front_.send(m); !r) finish(std::unexpected(r.error()));
}

void VifShadowXen::on_frontend_msg(const ctl::Msg& m) {
  switch (m.type) {
    case ctl::MsgType::kReconnected: {
      if (!done_ || !backend_) return;
      // From the guest: checked here for shape, by the backend when it maps.
      auto pool = m.get_payload<ctl::XenPool>();
      if (pool.owner != static_cast<uint32_t>(guest_domid_) || pool.pages != netif::kPoolPages)
        return finish(fail(Code::kRestartReplay, "frontend sent a pool that is not its own or of the wrong size"));
      std::memset(pool.nic, 0, sizeof(pool.nic));
      std::strncpy(pool.nic, nic_.c_str(), sizeof(pool.nic) - 1);
      times_.replayed = m.a;
      t_replayed_ = platform::Clock::now();
      times_.replay_ms = ms_between(t_ready_, t_replayed_);
      ctl::Msg att;
      att.type = ctl::MsgType::kDevAttach;
      att.a = static_cast<uint32_t>(config::DeviceClass::kVif);
      att.b = handle_;
      att.set_payload(cfg_);
      ctl::Msg refs;
      refs.type = ctl::MsgType::kGrantRefs;
      refs.b = handle_;
      refs.set_payload(pool);
      if (auto r = backend_->send(att); !r) return finish(std::unexpected(r.error()));
      if (auto r = backend_->send(refs); !r) return finish(std::unexpected(r.error()));
      return;
    }
    case ctl::MsgType::kDevAttached:  // the frontend could not grant the pool
      if (m.a != 0) finish(fail(Code::kRestartReplay, "frontend: " + m.get_text()));
      return;
    case ctl::MsgType::kDevFault:
      last_fault_ = m.get_text();
      if (backend_up_) report_("bad response: " + last_fault_, std::nullopt);
      return;
    case ctl::MsgType::kDevConfig: {
      auto c = m.get_payload<netif::VifConfig>();
      if (!netif::plausible(c)) return;  // not something a guest's stack sets
      cfg_ = c;
      if (backend_up_ && backend_) {
        ctl::Msg fwd = m;
        fwd.b = handle_;
        (void)backend_->send(fwd);
      }
      return;
    }
    default:
      return;
  }
}

void VifShadowXen::on_backend_msg(platform::DomId from, const ctl::Msg& m) {
  if (m.b != handle_) return;
  if (m.type == ctl::MsgType::kDevAttached) {
    if (!done_ || from != domid_) return;
    if (m.a != 0) return finish(fail(Code::kRestartReplay, "backend refused the vif: " + m.get_text()));
    backend_up_ = true;
    xenbus_state(back_dir(domid_), XenbusStateConnected);
    if (!front_connected_) {  // from now on the guest's side stays Connected
      xenbus_state(front_dir(), XenbusStateConnected);
      front_connected_ = true;
    }
    times_.resume_ms = ms_between(t_replayed_ == platform::Clock::time_point{} ? t_ready_ : t_replayed_,
                                  platform::Clock::now());
    ++recoveries_;
    finish(times_);
  } else if (m.type == ctl::MsgType::kDevFault) {
    log_.emit({{"type", "frontend_protocol_error"}, {"device", id()}, {"error", m.get_text()}});
  }
}

void VifShadowXen::finish(Result<ResumeTimes> r) {
  if (!done_) return;
  auto d = std::move(done_);
  done_ = nullptr;
  d(std::move(r));
}

void VifShadowXen::teardown() {
  if (front_published_) {
    (void)plat_.store().remove(front_dir());
    if (domid_ != 0) (void)plat_.store().remove(back_dir(domid_));
    front_published_ = front_connected_ = false;
  }
  front_wait_.reset();
  link_.reset();  // the frontend sees its channel close
}

nlohmann::json VifShadowXen::status() const {
  return {{"guest_domid", guest_domid_},
          {"frontend_connected", link_ && link_->connected()},
          {"mac", netif::mac_string(cfg_.mac)},
          {"mtu", cfg_.mtu},
          {"config_generation", cfg_.generation},
          {"nic", nic_},
          {"backend_up", backend_up_},
          {"backend_domid", domid_},
          {"xenbus_frontend", front_published_ ? nlohmann::json(front_dir()) : nlohmann::json(nullptr)},
          {"recoveries", recoveries_},
          {"last_fault", last_fault_}};
}

}  // namespace sd::dom0
