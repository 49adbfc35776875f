#include "xen/device_plumbing.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "sd/platform/xen/evtchn.hpp"
#include "sd/platform/xen/grants.hpp"
#include "sd/platform/xen/guest_backend.hpp"
#include "xen/vchan_link.hpp"

extern "C" {
#include <xen/io/xenbus.h>
}

namespace sd::xen {

Result<std::unique_ptr<XenDevicePlumbing>> XenDevicePlumbing::create(boost::asio::io_context& io,
                                                                     platform::Store& store,
                                                                     const platform::DeviceInfo& dev,
                                                                     const std::filesystem::path& proxy_binary) {
  if (dev.kernel_frontend && dev.type != "vif" && dev.type != "vbd" && dev.type != "vsnd")
    return fail(Code::kUnavailable, "guest_frontend: kernel is not served for " + dev.type + " on the xen platform");
  if (dev.kernel_frontend && dev.type == "vsnd" && dev.stream != 0)
    return fail(Code::kUnavailable, "a sound card with more than one playback stream is not served to an unmodified "
                                    "guest yet (its snd-xen-front has one backend per card): give it one stream");
  if (dev.kernel_frontend && proxy_binary.empty())
    return fail(Code::kUnavailable, "guest_frontend: kernel needs the " + dev.type + "'s ring proxy in dom0 (shadowd --" +
                                        (dev.type == "vif" ? "netfront" : dev.type == "vbd" ? "blkfront" : "sndfront") +
                                        " PATH)");
  // The guest is started by the operator (xl create); find it by name.
  for (const auto& id : store.list("/local/domain")) {
    auto name = store.read("/local/domain/" + id + "/name");
    if (name && *name == dev.guest)
      return std::unique_ptr<XenDevicePlumbing>(
          new XenDevicePlumbing(io, store, dev, std::atoi(id.c_str()), proxy_binary));
  }
  return fail(Code::kUnavailable,
              "guest '" + dev.guest + "' is not running (start it with xl create before shadowd)");
}

XenDevicePlumbing::~XenDevicePlumbing() {
  if (proxy_pid_ > 0) {
    ::kill(proxy_pid_, SIGKILL);
    ::waitpid(proxy_pid_, nullptr, 0);
  }
  if (kernel_published_) {  // the guest's kernel sees its device go, as on xl detach
    (void)store_.remove(kernel_front_dir());
    (void)store_.remove(kernel_back_dir());
  }
  if (backend_ != 0) (void)store_.remove(back_dir(backend_));
  if (front_published_) {
    (void)store_.remove(front_dir());
  }
  link_.reset();  // the frontend sees its channel close
}

std::optional<Result<ctl::Channel>> XenDevicePlumbing::connect_frontend() {
  if (dev_.kernel_frontend) return start_proxy();
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

std::string XenDevicePlumbing::kernel_front_dir() const {
  return "/local/domain/" + std::to_string(guest_domid_) + "/device/" + dev_.type + "/" + kernel_devid();
}

std::string XenDevicePlumbing::kernel_back_dir() const {
  return proxy_backend_dir(dev_.type, static_cast<uint32_t>(guest_domid_), std::stoull(kernel_devid()));
}

// As xl names them: a disk by its virtual-device (xvda: 51712), a vif by
// its position.
std::string XenDevicePlumbing::kernel_devid() const {
  auto vdev = dev_.nodes.find("virtual-device");
  return vdev != dev_.nodes.end() ? vdev->second : std::to_string(dev_.index);
}

// Keys first, each readable by the other end; xenstored gives nodes created
// later (the ends' own keys) the directory's permissions. A nested key's
// directories (a sound stream's 0/0/) are the owner's too: its end writes
// its own keys there (ring-ref).
void XenDevicePlumbing::publish(const std::string& dir, const std::map<std::string, std::string>& keys,
                                platform::DomId owner, platform::DomId reader) {
  for (const auto& [k, v] : keys) write(dir + "/" + k, v);
  (void)store_.set_access(dir, owner, {reader});
  for (const auto& [k, v] : keys) {
    for (auto slash = k.find('/'); slash != std::string::npos; slash = k.find('/', slash + 1))
      (void)store_.set_access(dir + "/" + k.substr(0, slash), owner, {reader});
    (void)store_.set_access(dir + "/" + k, owner, {reader});
  }
}

// As a toolstack adds a PV device to a running guest: the backend's
// directory, then the frontend's with its state last (the guest's kernel
// probes the device when state appears). Then the proxy, which answers the
// handshake from InitWait on.
Result<ctl::Channel> XenDevicePlumbing::start_proxy() {
  std::string front = kernel_front_dir(), back = kernel_back_dir(), handle = kernel_devid();
  auto mac = dev_.nodes.count("mac") ? dev_.nodes.at("mac") : std::string();
  (void)store_.remove(front);  // left by an unclean stop: the guest would see stale rings
  (void)store_.remove(back);
  auto guest = static_cast<platform::DomId>(guest_domid_);
  std::map<std::string, std::string> back_keys{{"frontend", front},       {"frontend-id", std::to_string(guest_domid_)},
                                               {"online", "1"},          {"handle", handle},
                                               {"state", std::to_string(XenbusStateInitialising)}};
  std::map<std::string, std::string> front_keys{{"backend", back}, {"backend-id", "0"}, {"handle", handle}};
  for (const auto& [k, v] : dev_.nodes) back_keys[k] = front_keys[k] = v;
  publish(back, back_keys, 0, guest);
  publish(front, front_keys, guest, 0);
  publish(front, {{"state", std::to_string(XenbusStateInitialising)}}, guest, 0);
  kernel_published_ = true;

  auto chans = ctl::Channel::pair();
  if (!chans) return std::unexpected(chans.error());
  std::string bin = proxy_binary_.string();
  std::vector<std::string> argv_s{proxy_binary_.filename().string(), "--xen-guest", std::to_string(guest_domid_),
                                  "--handle", handle, "--control-fd", "3"};
  if (!mac.empty()) argv_s.insert(argv_s.end(), {"--mac", mac});
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  int child_fd = chans->second.fd();
  pid_t pid = ::fork();
  if (pid < 0) return fail(Code::kSystem, std::string("fork the ring proxy: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::dup2(child_fd, 3) < 0) _exit(126);
    ::syscall(SYS_close_range, 4U, ~0U, 0U);
    ::execv(bin.c_str(), argv.data());
    std::fprintf(stderr, "shadowd: cannot run the ring proxy %s: %s\n", bin.c_str(), std::strerror(errno));
    _exit(127);
  }
  proxy_pid_ = pid;
  return std::move(chans->first);
}

// From the frontend (the guest's, or dom0's ring proxy): checked here for
// shape, by the backend when it maps.
Result<void> XenDevicePlumbing::frontend_repaired(const ctl::Msg& m) {
  auto pool = m.get_payload<ctl::XenPool>();
  uint32_t owner = dev_.kernel_frontend ? 0 : static_cast<uint32_t>(guest_domid_);
  if (pool.owner != owner || pool.pages != dev_.pages)
    return fail(Code::kRestartReplay, "frontend sent a pool that is not its own or of the wrong size");
  pool_ = pool;
  have_pool_ = true;
  return {};
}

// The attach, the guest's pool (kGrantRefs, a = ctl::kPoolGuest) and, for a
// device with lent memory, that memory moved into pages shared with `peer`
// and an interrupt offered to it (kGrantRefs, a = ctl::kPoolLent).
Result<void> XenDevicePlumbing::offer_backend(ctl::Channel& ch, platform::DomId peer, const ctl::Msg& attach,
                                              const platform::BackendResources& resources) {
  if (!have_pool_) return fail(Code::kRestartReplay, "no pool from the frontend to hand over");
  ctl::XenPool pool = pool_;
  if ((resources.device.empty() && !resources.memory) || resources.device.size() >= sizeof(pool.device))
    return fail(Code::kInvalidInput, "the driver domain's device name '" + resources.device + "' is empty or longer than " +
                                         std::to_string(sizeof(pool.device) - 1) + " characters");
  std::memset(pool.device, 0, sizeof(pool.device));
  std::memcpy(pool.device, resources.device.data(), resources.device.size());
  ctl::Msg refs{.type = ctl::MsgType::kGrantRefs, .a = ctl::kPoolGuest, .b = attach.b};
  refs.set_payload(pool);
  ctl::Msg lent{.type = ctl::MsgType::kGrantRefs, .a = ctl::kPoolLent, .b = attach.b};
  if (resources.memory) {
    auto l = lend(*resources.memory, peer);
    if (!l) return std::unexpected(l.error());
    lent.set_payload(*l);
  }
  if (auto r = ch.send(attach); !r) return r;
  if (auto r = ch.send(refs); !r) return r;
  return resources.memory ? ch.send(lent) : Result<void>{};
}

// The memory moves into pages shared with `peer` only (the previous
// domain's are let go), with a new interrupt port for it.
Result<ctl::XenPool> XenDevicePlumbing::lend(platform::LentMemory& memory, platform::DomId peer) {
  size_t pages = (memory.bytes() + 4095) / 4096;
  auto shared = SharedPool::share(peer, pages);
  if (!shared) return std::unexpected(shared.error());
  auto irq = XenEventChannel::offer(peer);
  if (!irq) return std::unexpected(irq.error());
  ctl::XenPool ref{.owner = 0, .dir_ref = (*shared)->directory_ref(), .pages = static_cast<uint32_t>(pages),
                   .port = (*irq)->port()};
  uint8_t* at = (*shared)->page(0);
  memory.move_to(at, std::shared_ptr<SharedPool>(std::move(*shared)), std::shared_ptr<XenEventChannel>(std::move(*irq)));
  return ref;
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
  // The driver domain's frontend: the guest's own, or for an unmodified
  // guest the ring proxy in dom0 (the guest's device stays where it is).
  auto front_dom = static_cast<platform::DomId>(dev_.kernel_frontend ? 0 : guest_domid_);
  std::string front = dev_.kernel_frontend ? kernel_back_dir() : front_dir(), back = back_dir(dd);
  write(back + "/frontend", front);
  write(back + "/frontend-id", std::to_string(front_dom));
  write(back + "/handle", std::to_string(dev_.index));
  for (const auto& [k, v] : dev_.nodes) write(back + "/" + k, v);
  write(back + "/state", std::to_string(XenbusStateInitWait));
  (void)store_.set_access(back, dd, {front_dom});
  if (dev_.kernel_frontend) return;
  if (!front_published_) {
    write(front + "/handle", std::to_string(dev_.index));
    for (const auto& [k, v] : dev_.nodes) write(front + "/" + k, v);
    write(front + "/state", std::to_string(XenbusStateInitialising));
    front_published_ = true;
  }
  write(front + "/backend", back);
  write(front + "/backend-id", std::to_string(dd));
  (void)store_.set_access(front, front_dom, {dd});
}

void XenDevicePlumbing::backend_serving(platform::DomId dd) {
  write(back_dir(dd) + "/state", std::to_string(XenbusStateConnected));
  if (!front_connected_ && !dev_.kernel_frontend) {  // from now on the guest's side stays Connected
    write(front_dir() + "/state", std::to_string(XenbusStateConnected));
    front_connected_ = true;
  }
}

std::map<std::string, std::string> XenDevicePlumbing::status() const {
  return {{"guest_domid", std::to_string(guest_domid_)},
          {"frontend_link", dev_.kernel_frontend ? "dom0 ring proxy, pid " + std::to_string(proxy_pid_)
                            : link_ && link_->connected() ? "connected" : "waiting"},
          {"backend_domid", std::to_string(backend_)},
          {"xenbus_frontend", kernel_published_ ? kernel_front_dir() : front_published_ ? front_dir() : ""},
          {"guest_frontend", dev_.kernel_frontend ? "kernel (dom0 ring proxy)" : "project"}};
}

}  // namespace sd::xen
