// drvdom: the runtime of one driver-domain incarnation.
//
// Started by the platform inside its sandbox with the control channel on fd 3.
// It locks itself down with seccomp, reports Ready, then serves the control
// channel: heartbeats, fault injection (for tests and `shadowctl
// inject-fault`), sandbox self-probes, and (with the device classes) the
// backends it hosts.
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "sd/platform/local/event_channel.hpp"
#include "vbd/blkback.hpp"
#include "vif/netback.hpp"
#include "vsnd/sndback.hpp"
#include <map>
#include <memory>
#include <sys/mman.h>
#include <vector>
#include "sd/core/control_channel.hpp"
#include "sd/core/device_class.hpp"
#include "seccomp.hpp"
#include "xen_control.hpp"

namespace {

using sd::ctl::Msg;
using sd::ctl::MsgType;

const char kUsage[] = "usage: drvdom --name NAME --control-fd FD | drvdom --xen\n";

void usage_help() {
  std::printf(
      "%s\n"
      "The driver-domain runtime. shadowd starts it inside a sandbox; it is not\n"
      "meant to be run by hand.\n\n"
      "  --name NAME         the driver domain's name (for logs)\n"
      "  --control-fd FD     the control channel to shadowd (a SOCK_SEQPACKET socket)\n"
      "  --xen               run in a Xen driver domain: the control channel is a vchan\n"
      "                      offered to dom0 at /local/domain/<domid>/data/sd-ctl; the\n"
      "                      name comes from xenstore; no seccomp (the domain is the sandbox)\n"
      "  --no-seccomp        do not install the system-call filter (debugging only)\n"
      "  -h, --help          this help\n",
      kUsage);
}

// Interfaces this domain can see: names from its own net namespace's /proc/net/dev.
std::string list_netdevs() {
  std::ifstream f("/proc/net/dev");
  if (!f) return std::string("error: ") + std::strerror(errno);
  std::string line, out;
  int n = 0;
  while (std::getline(f, line)) {
    if (++n <= 2) continue;  // two header lines
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    out += (out.empty() ? "" : ",") + name;
  }
  return out;
}

[[noreturn]] void do_fault(sd::ctl::FaultKind k) {
  switch (k) {
    case sd::ctl::FaultKind::kSegv:
      // A real invalid memory access, as a buggy driver makes.
    {
      volatile uintptr_t addr = 8;
      *reinterpret_cast<volatile int*>(addr) = 1;
      break;
    }
    case sd::ctl::FaultKind::kHang:
      // Stop serving anything (the backends were stalled first): no
      // heartbeat answers either.
      for (;;) ::sleep(1);
    case sd::ctl::FaultKind::kBadSyscall:
      // socket() is not on the allow-list: the kernel kills us with SIGSYS.
      ::syscall(SYS_socket, 2 /*AF_INET*/, 1 /*SOCK_STREAM*/, 0);
      break;
    default:  // kExit; ring faults are handled by the backends
      break;
  }
  std::_Exit(3);
}

class Runtime {
 public:
  // Control messages taken per loop turn at most: serving never starves.
  static constexpr size_t kMessagesPerTurn = 256;

  Runtime(std::string name, sd::ctl::Channel ch) : name_(std::move(name)), ch_(std::move(ch)) {}

  int run() {
    if (!say(MsgType::kReady, 0, sd::ctl::kProtocolVersion, name_)) return 1;
    std::vector<pollfd> fds;
    for (;;) {
      fds.clear();
      fds.push_back({ch_.fd(), POLLIN, 0});
      for (auto& [h, b] : backends_) b->poll_fds(fds);
      int r = ::poll(fds.data(), fds.size(), -1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return 1;
      // Every message waiting, before the backends: a recovery of many
      // devices arrives as a burst of attaches (one poll turn each would
      // service every backend once per message).
      for (size_t n = 0; fds[0].revents && n < kMessagesPerTurn; ++n) {
        std::vector<sd::UniqueFd> got;
        auto m = ch_.recv_fds(&got);
        if (!m) {
          // shadowd went away or sent garbage: nothing to serve.
          std::fprintf(stderr, "drvdom %s: control channel: %s\n", name_.c_str(), m.error().to_string().c_str());
          return 1;
        }
        if (!*m) break;
        if (!handle(**m, got)) return 0;
      }
      for (auto it = backends_.begin(); it != backends_.end();) {
        if (auto s = it->second->service(); !s) {
          // The frontend broke the protocol: report, stop serving it.
          say(MsgType::kDevFault, it->first, 0, s.error().message);
          it = backends_.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  // Returns false to exit cleanly.
  bool handle(const Msg& m, std::vector<sd::UniqueFd>& fds) {
    switch (m.type) {
      case MsgType::kDevAttach:
        begin_attach(m, fds);
        return true;
      case MsgType::kGrantFds:
        add_grants(m, fds);
        return true;
      case MsgType::kGrantRefs:
        add_xen_pool(m);
        return true;
      case MsgType::kDevConfig:
        if (auto it = backends_.find(m.b); it != backends_.end()) it->second->set_config(m);
        return true;
      case MsgType::kDevDetach:
        backends_.erase(m.b);
        return true;
      case MsgType::kDevGo:
        go(m);
        return true;
      case MsgType::kPing:
        say(MsgType::kPong, m.b);
        return true;
      case MsgType::kFault: {
        std::fprintf(stderr, "drvdom %s: injected fault %u\n", name_.c_str(), m.a);
        std::fflush(stderr);
        auto k = static_cast<sd::ctl::FaultKind>(m.a);
        if (k >= sd::ctl::FaultKind::kStall && k <= sd::ctl::FaultKind::kBadGrant) {
          for (auto& [h, b] : backends_) b->inject(k);
          return true;
        }
        // A hung domain serves nothing: its backends' own threads stop
        // too, then this one stops answering.
        if (k == sd::ctl::FaultKind::kHang)
          for (auto& [h, b] : backends_) b->inject(sd::ctl::FaultKind::kStall);
        do_fault(k);
      }
      case MsgType::kProbe:
        probe(m);
        return true;
      case MsgType::kShutdown:
        return false;
      default:
        std::fprintf(stderr, "drvdom %s: ignoring message type %u\n", name_.c_str(), static_cast<unsigned>(m.type));
        return true;
    }
  }

  void probe(const Msg& m) {
    Msg out;
    out.type = MsgType::kProbeResult;
    switch (static_cast<sd::ctl::ProbeKind>(m.a)) {
      case sd::ctl::ProbeKind::kOpenPath: {
        int fd = ::open(m.get_text().c_str(), O_RDONLY | O_CLOEXEC);
        out.a = fd >= 0 ? 0 : static_cast<uint32_t>(errno);
        if (fd >= 0) ::close(fd);
        out.set_text(fd >= 0 ? "opened" : std::strerror(static_cast<int>(out.a)));
        break;
      }
      case sd::ctl::ProbeKind::kNetDevs:
        out.set_text(list_netdevs());
        break;
      default:
        out.a = EINVAL;
        out.set_text("unknown probe");
    }
    (void)ch_.send(out);
  }

  // Attach = kDevAttach (class, config, event channels, device) followed by
  // kGrantFds with the guest's granted pages; serving starts when the last
  // page has arrived (mapped as they arrive).
  struct Pending {
    sd::DeviceClass cls{};
    Msg attach;  // the class's payload: the state to resume (kDevGo replaces it)
    std::vector<sd::UniqueFd> fds;  // [0] notify the frontend, [1] its kicks, then the class's resources
    std::unique_ptr<sd::drvdom::GrantedPages> pages;
    std::unique_ptr<sd::platform::EventChannel> evt;  // Xen: bound from the XenPool
    std::string device;                               // Xen: this domain's device for it, opened here
    // Xen: memory shadowd lends the backend (vsnd: the DAC) and its interrupt.
    std::unique_ptr<sd::drvdom::GrantedPages> lent;
    std::unique_ptr<sd::platform::EventChannel> irq;
    bool standby = false;
  };

  // The backends this runtime hosts, by class: the pool one connection
  // has, and how a backend is made from a complete attach.
  struct Kind {
    size_t pool_pages;
    size_t lent_pages;  // memory shadowd lends it (0: none)
    sd::Result<std::unique_ptr<sd::drvdom::Backend>> (*make)(Pending& p);
  };
  static const Kind* kind(sd::DeviceClass c) {
    static const std::map<sd::DeviceClass, Kind> kKinds = {
        {sd::DeviceClass::kVif, {sd::netif::kPoolPages, 0, &make_vif}},
        {sd::DeviceClass::kVsnd, {sd::sndif::kPoolPages, sd::sndif::kDacBytes / 4096, &make_vsnd}},
        {sd::DeviceClass::kVbd, {sd::blkif::kPoolPages, 0, &make_vbd}},
    };
    auto it = kKinds.find(c);
    return it == kKinds.end() ? nullptr : &it->second;
  }
  template <class B>
  static sd::Result<std::unique_ptr<sd::drvdom::Backend>> up(sd::Result<std::unique_ptr<B>> b) {
    if (!b) return std::unexpected(b.error());
    return std::unique_ptr<sd::drvdom::Backend>(std::move(*b));
  }
  // The event channel: on the local platform fds [0] [1] (shadowd's; the
  // class's `resources` fds follow), on Xen bound from the pool already.
  static sd::Result<void> take_evt(Pending& p, size_t resources) {
    if (p.evt) return {};
    if (p.fds.size() != 2 + resources)
      return sd::fail(sd::Code::kInvalidInput, "attach needs " + std::to_string(2 + resources) + " fds, got " +
                                                   std::to_string(p.fds.size()));
    p.evt = std::make_unique<sd::local::LocalEventChannel>(std::move(p.fds[0]), std::move(p.fds[1]));
    return {};
  }
  // The class's one device: fd [2] on the local platform, on Xen opened
  // here by name.
  template <class Open>
  static sd::Result<sd::UniqueFd> take_device(Pending& p, Open open) {
    bool local = !p.evt;
    if (auto r = take_evt(p, 1); !r) return std::unexpected(r.error());
    if (local) return std::move(p.fds[2]);
    if (p.device.empty()) return sd::fail(sd::Code::kInvalidInput, "no name of this domain's device for it");
    return open(p.device);
  }
  static sd::Result<std::unique_ptr<sd::drvdom::Backend>> make_vif(Pending& p) {
    auto nic = take_device(p, &sd::drvdom::Netback::open_nic);
    if (!nic) return std::unexpected(nic.error());
    return up(sd::drvdom::Netback::create(std::move(p.pages), std::move(p.evt), std::move(*nic),
                                          p.attach.get_payload<sd::netif::VifConfig>()));
  }
  // Resources: the DAC's memory and its interrupt (local: fds [2] [3]).
  static sd::Result<std::unique_ptr<sd::drvdom::Backend>> make_vsnd(Pending& p) {
    if (!p.lent) {
      if (auto r = take_evt(p, 2); !r) return std::unexpected(r.error());
      p.lent = std::make_unique<sd::drvdom::GrantedPages>(kind(p.cls)->lent_pages);
      if (p.lent->add(0, std::move(p.fds[2])) != p.lent->size() || p.lent->map_error())
        return sd::fail(sd::Code::kInvalidInput, "the DAC's memory cannot be mapped whole");
      p.irq = std::make_unique<sd::local::LocalEventChannel>(sd::UniqueFd(), std::move(p.fds[3]));  // only waited on
    }
    return up(sd::drvdom::Sndback::create(std::move(p.pages), std::move(p.evt), std::move(p.lent), std::move(p.irq),
                                          p.attach.get_payload<sd::sndif::StreamState>()));
  }
  static sd::Result<std::unique_ptr<sd::drvdom::Backend>> make_vbd(Pending& p) {  // resources: the disk
    auto state = p.attach.get_payload<sd::blkif::DiskState>();
    auto disk = take_device(p, [&](const std::string& path) {
      return sd::drvdom::Blkback::open_disk(path, state.readonly != 0);
    });
    if (!disk) return std::unexpected(disk.error());
    return up(sd::drvdom::Blkback::create(std::move(p.pages), std::move(p.evt), std::move(*disk), state));
  }

  // One message to shadowd: about device `b` (kDevAttached: a = 0 or an
  // errno, text = why), or the runtime's own. False if it could not be sent.
  bool say(MsgType type, uint64_t b, uint32_t a = 0, std::string_view text = {}) {
    Msg m{.type = type, .a = a, .b = b};
    m.set_text(text);
    return ch_.send(m).has_value();
  }

  void begin_attach(const Msg& m, std::vector<sd::UniqueFd>& fds) {
    backends_.erase(m.b);
    pending_.erase(m.b);
    auto cls = sd::device_class_from_wire(m.a & ~sd::ctl::kAttachStandby);
    const Kind* k = cls ? kind(*cls) : nullptr;
    if (!k) {
      say(MsgType::kDevAttached, m.b, EINVAL, "unknown device class " + std::to_string(m.a & ~sd::ctl::kAttachStandby));
      return;
    }
    Pending p;
    p.cls = *cls;
    p.standby = (m.a & sd::ctl::kAttachStandby) != 0;
    p.attach = m;
    p.fds = std::move(fds);
    p.pages = std::make_unique<sd::drvdom::GrantedPages>(k->pool_pages);
    pending_[m.b] = std::move(p);
  }

  void add_grants(const Msg& m, std::vector<sd::UniqueFd>& fds) {
    auto it = pending_.find(m.b);
    if (it == pending_.end()) return;
    Pending& p = it->second;
    // Mapped as they arrive, fds closed (see GrantedPages); each fd's pages
    // follow the previous one's. A run that does not fit ends the batch.
    size_t ref = m.a;
    for (auto& fd : fds) {
      size_t took = p.pages->add(ref, std::move(fd));
      if (took == 0) break;
      ref += took;
    }
    if (p.pages->received() < p.pages->size()) return;
    if (int e = p.pages->map_error()) {
      pending_.erase(it);
      say(MsgType::kDevAttached, m.b, static_cast<uint32_t>(e),
          std::string("mapping the granted pages: ") + std::strerror(e));
      return;
    }
    // Warm standby: every page is mapped already; rings untouched until kDevGo.
    if (p.standby) {
      say(MsgType::kDevAttached, m.b, 0, "standby");
      return;
    }
    start_backend(m.b, it);
  }

  // Xen: the pools arrive as grant refs instead of fds: the guest's (with
  // the event channel and this domain's device), then the memory shadowd
  // lends the class, if any (with its interrupt).
  void add_xen_pool(const Msg& m) {
    auto it = pending_.find(m.b);
    if (it == pending_.end()) return;
    Pending& p = it->second;
    const Kind* k = kind(p.cls);
    const auto pool = m.get_payload<sd::ctl::XenPool>();
    bool lent = m.a == sd::ctl::kPoolLent;
    auto dev = lent && k->lent_pages == 0 ? sd::fail(sd::Code::kInvalidInput, "memory lent to a class that takes none")
                                          : sd::drvdom::attach_xen_pool(pool, lent ? k->lent_pages : k->pool_pages);
    if (!dev) {
      pending_.erase(it);
      say(MsgType::kDevAttached, m.b, EINVAL, dev.error().message);
      return;
    }
    std::fprintf(stderr, "drvdom %s: device %" PRIu64 ": %s of domain %u mapped, event channel %u, device %s\n",
                 name_.c_str(), m.b, lent ? "lent memory" : "pool", pool.owner, pool.port, dev->device.c_str());
    if (lent) {
      p.lent = std::move(dev->pages);
      p.irq = std::move(dev->evt);
    } else {
      p.pages = std::move(dev->pages);
      p.evt = std::move(dev->evt);
      p.device = std::move(dev->device);
    }
    if (p.evt && (k->lent_pages == 0 || p.lent)) start_backend(m.b, it);
  }

  void go(const Msg& m) {
    auto it = pending_.find(m.b);
    if (it == pending_.end() || it->second.pages->received() < it->second.pages->size()) {
      say(MsgType::kDevAttached, m.b, ENOENT, "no standby attach to start");
      return;
    }
    std::memcpy(it->second.attach.text, m.text, sizeof(m.text));
    start_backend(m.b, it);
  }

  // Serves the device with the backend its class makes (or reports why
  // not), and tells shadowd either way.
  void start_backend(uint64_t handle, std::map<uint64_t, Pending>::iterator it) {
    auto b = kind(it->second.cls)->make(it->second);
    pending_.erase(it);
    if (!b) {
      say(MsgType::kDevAttached, handle, EINVAL, b.error().message);
      return;
    }
    backends_[handle] = std::move(*b);
    say(MsgType::kDevAttached, handle);
  }

  std::string name_;
  sd::ctl::Channel ch_;
  std::map<uint64_t, Pending> pending_;
  std::map<uint64_t, std::unique_ptr<sd::drvdom::Backend>> backends_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string name;
  int control_fd = -1;
  bool seccomp = true;
  bool xen = false;
  static const option kOpts[] = {{"name", required_argument, nullptr, 'n'},
                                 {"control-fd", required_argument, nullptr, 'c'},
                                 {"no-seccomp", no_argument, nullptr, 'S'},
                                 {"xen", no_argument, nullptr, 'X'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  for (int c; (c = getopt_long(argc, argv, "h", kOpts, nullptr)) != -1;) {
    switch (c) {
      case 'n': name = optarg; break;
      case 'c': control_fd = std::atoi(optarg); break;
      case 'S': seccomp = false; break;
      case 'X': xen = true; break;
      case 'h': usage_help(); return 0;
      default: std::fputs(kUsage, stderr); return 2;
    }
  }
  if (xen) {
    if (control_fd >= 0 || optind != argc) {
      std::fputs(kUsage, stderr);
      return 2;
    }
    auto x = sd::drvdom::open_xen_control();
    if (!x) {
      std::fprintf(stderr, "drvdom: %s\n", x.error().to_string().c_str());
      return 1;
    }
    std::fprintf(stderr, "drvdom %s: domain %d, control vchan offered to dom0\n", x->name.c_str(), x->domid);
    Runtime rt(name.empty() ? x->name : name, std::move(x->channel));
    return rt.run();
  }
  if (name.empty() || control_fd < 0 || optind != argc) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (seccomp) {
    if (auto s = sd::drvdom::install_seccomp(); !s) {
      std::fprintf(stderr, "drvdom %s: %s\n", name.c_str(), s.error().to_string().c_str());
      return 1;
    }
  }
  Runtime rt(name, sd::ctl::Channel(sd::UniqueFd(control_fd)));
  return rt.run();
}
