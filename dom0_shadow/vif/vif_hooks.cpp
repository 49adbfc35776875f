#include "vif/vif_hooks.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "sd/core/netns.hpp"
#include "netsetup.hpp"

namespace sd::dom0 {

using netif::kPoolPages;

namespace {

constexpr uint16_t kTxRing = 0;

// Guest address from the vif's ip= (first one), as CIDR; the wire side gets
// .1 of the same /24 (.254 if the guest is .1).
void addresses(const std::string& ip_param, unsigned vif_number, std::string* guest, std::string* wire) {
  std::string ip = ip_param.substr(0, ip_param.find_first_of(" /"));
  unsigned a, b, c, d;
  if (ip.empty() || std::sscanf(ip.c_str(), "%u.%u.%u.%u", &a, &b, &c, &d) != 4) {
    a = 10, b = 200, c = vif_number, d = 2;
  }
  char g[32], w[32];
  std::snprintf(g, sizeof(g), "%u.%u.%u.%u/24", a, b, c, d);
  std::snprintf(w, sizeof(w), "%u.%u.%u.%u/24", a, b, c, d == 1 ? 254u : 1u);
  *guest = g;
  *wire = w;
}

}  // namespace

VifHooks::VifHooks(const std::string& guest, const config::DeviceSpec& spec, unsigned vif_number, std::string wire_ns,
                   std::filesystem::path frontend_binary)
    : guest_(guest), vif_number_(vif_number), frontend_binary_(std::move(frontend_binary)) {
  topo_.guest_ns = guest_;
  topo_.wire_ns = std::move(wire_ns);
  topo_.driver_ns = "sd-" + spec.backend;
  topo_.wire_if = "wire" + std::to_string(vif_number);
  topo_.nic_if = "nic" + std::to_string(vif_number);
  auto ip = spec.params.count("ip") ? spec.params.at("ip") : std::string();
  addresses(ip, vif_number, &topo_.guest_addr, &topo_.wire_addr);
  if (!spec.params.count("mac") || !netif::parse_mac(spec.params.at("mac"), cfg_.mac)) {
    // xl's default: Xen's OUI with bytes from the guest and vif number.
    uint8_t def[6] = {0x00, 0x16, 0x3e, static_cast<uint8_t>(std::hash<std::string>{}(guest_) & 0x7f),
                      static_cast<uint8_t>(vif_number >> 8), static_cast<uint8_t>(vif_number)};
    std::memcpy(cfg_.mac, def, 6);
  }
  // mtu= (xl cfg, checked 68-65535 there): what the wire carries; the
  // guest's interface starts there and may not go above it.
  cfg_.mtu = 1500;
  if (auto m = spec.params.find("mtu"); m != spec.params.end()) cfg_.mtu = static_cast<uint16_t>(std::stoi(m->second));
  path_mtu_ = cfg_.mtu;
  cfg_.features = netif::kFeatureRxCopy;
}

VifHooks::~VifHooks() { teardown(); }

Result<std::optional<ctl::Channel>> VifHooks::setup() {
  if (engine().plumbing().frontend_in_guest()) {
    auto nic = engine().spec().params.find("nic");
    nic_name_ = nic == engine().spec().params.end() ? "eth0" : nic->second;
    return std::optional<ctl::Channel>();
  }
  topology_ = true;
  if (auto r = build_topology(); !r) return std::unexpected(r.error());
  auto ch = start_frontend();
  if (!ch) return std::unexpected(ch.error());
  return std::optional<ctl::Channel>(std::move(*ch));
}

// wire <-veth-> NIC (in the driver domain's persistent netns), both up,
// with the veth's offloads (TCP segments of up to 64 KiB, partial
// checksums): the guest's frontend and the backend carry them over netif.
Result<void> VifHooks::build_topology() {
  for (const auto& ns : {topo_.guest_ns, topo_.wire_ns, topo_.driver_ns})
    if (auto r = ensure_netns(ns); !r) return std::unexpected(r.error());
  (void)ip(topo_.wire_ns, {"link", "del", topo_.wire_if});  // left over from an unclean stop
  (void)ip(topo_.driver_ns, {"link", "del", topo_.nic_if});
  auto steps = std::vector<std::pair<std::string, std::vector<std::string>>>{
      {"", {"link", "add", topo_.wire_if, "netns", topo_.wire_ns, "type", "veth", "peer", "name", topo_.nic_if, "netns",
            topo_.driver_ns}},
      {topo_.wire_ns, {"addr", "add", topo_.wire_addr, "dev", topo_.wire_if}},
      {topo_.wire_ns, {"link", "set", topo_.wire_if, "up"}},
      // Guests may share a /24 (one wire address): each one's replies leave by its own NIC.
      {topo_.wire_ns, {"route", "replace", topo_.guest_addr.substr(0, topo_.guest_addr.find('/')) + "/32", "dev",
                       topo_.wire_if}},
      {topo_.wire_ns, {"link", "set", "lo", "up"}},
      {topo_.wire_ns, {"link", "set", topo_.wire_if, "mtu", std::to_string(path_mtu_)}},
      {topo_.driver_ns, {"link", "set", topo_.nic_if, "mtu", std::to_string(path_mtu_)}},
      {topo_.driver_ns, {"link", "set", topo_.nic_if, "up"}},
      {topo_.driver_ns, {"link", "set", "lo", "up"}},
  };
  for (auto& [ns, args] : steps)
    if (auto r = ip(ns, args); !r) return r;
  auto sock = open_packet_socket(topo_.driver_ns, topo_.nic_if);
  if (!sock) return std::unexpected(sock.error());
  nic_ = std::move(*sock);
  return {};
}

// The guest: sd-netfront in the guest's netns creates the TAP; the engine
// hands it the splitter log, its event-channel end and the whole pool (its
// own memory) over this channel.
Result<ctl::Channel> VifHooks::start_frontend() {
  auto chans = ctl::Channel::pair();
  if (!chans) return std::unexpected(chans.error());
  std::string nspath = "/run/netns/" + topo_.guest_ns;
  UniqueFd nsfd(::open(nspath.c_str(), O_RDONLY | O_CLOEXEC));
  if (!nsfd) return sys_fail("open " + nspath);
  std::string bin = frontend_binary_.string(), mac = netif::mac_string(cfg_.mac), mtu = std::to_string(cfg_.mtu);
  std::vector<std::string> argv_s{"sd-netfront", "--control-fd", "3", "--ifname", topo_.guest_if, "--mac", mac,
                                  "--mtu", mtu};
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  int child_fd = chans->second.fd();
  pid_t pid = ::fork();
  if (pid < 0) return sys_fail("fork frontend");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::setns(nsfd.get(), CLONE_NEWNET) != 0) _exit(126);
    if (::dup2(child_fd, 3) < 0) _exit(126);
    ::syscall(SYS_close_range, 4U, ~0U, 0U);
    ::execv(bin.c_str(), argv.data());
    _exit(127);
  }
  front_pid_ = pid;
  return std::move(chans->first);
}

platform::BackendResources VifHooks::backend_resources() const {
  if (!topology_) return {{}, nic_name_};
  return {{nic_.get()}, {}};
}

// The frontend mapped everything and posted its buffers: address its TAP.
Result<void> VifHooks::frontend_ready() {
  if (!topology_) {
    engine().events().emit({{"type", "vif_up"}, {"device", engine().id()}, {"nic", nic_name_},
                            {"mac", netif::mac_string(cfg_.mac)}});
    return {};
  }
  auto steps = std::vector<std::vector<std::string>>{
      {"addr", "add", topo_.guest_addr, "dev", topo_.guest_if},
      {"link", "set", topo_.guest_if, "up"},
      {"link", "set", "lo", "up"},
  };
  for (auto& args : steps)
    if (auto r = ip(topo_.guest_ns, args); !r) return r;
  auto up = topology_json();
  up.update({{"type", "vif_up"}, {"device", engine().id()}});
  engine().events().emit(up);
  return {};
}

nlohmann::json VifHooks::topology_json() const {
  return {{"guest_ns", topo_.guest_ns}, {"guest_addr", topo_.guest_addr},
          {"wire_ns", topo_.wire_ns},   {"wire_addr", topo_.wire_addr}, {"wire_if", topo_.wire_if},
          {"nic", topo_.driver_ns + "/" + topo_.nic_if}, {"mac", netif::mac_string(cfg_.mac)}};
}

// Config written by the guest (log or message) is checked before use.
// The config to replay: the newest state in the splitter log, else the last
// one shadowd accepted from the frontend.
netif::VifConfig VifHooks::replay_config() const {
  netif::VifConfig logged;
  const auto& log = engine().splitter_log();
  if (log.valid() && log.get_config(&logged, sizeof(logged)) == sizeof(logged) && netif::plausible(logged))
    return logged;
  return cfg_;
}

bool VifHooks::frontend_config(const ctl::Msg& m) {
  auto c = m.get_payload<netif::VifConfig>();
  if (!netif::plausible(c)) return false;  // not something a guest's stack sets
  if (topology_ && c.mtu > path_mtu_) return false;  // the frontend puts such an MTU back: never replayed
  cfg_ = c;
  return true;
}

// Active mode. "queue": nothing to do: tx requests wait in the ring (at most
// its 256 slots, then the guest's TAP queue pushes back on its stack) and
// received frames wait in the NIC's socket. "drop": shadowd takes the
// backend side of the tx ring and answers every request DROPPED, so the
// guest's stack sees loss (as on a cable pull) instead of back-pressure.
std::string VifHooks::active_mode() const {
  // Where the guest grants its own pool shadowd cannot serve its ring: queue.
  return topology_ && engine().policy().active_action == "drop" ? "drop" : "";
}

void VifHooks::start_active() {
  auto& pl = engine().plumbing();
  auto r = ring::BackRing<netif::TxTraits>::attach(pl.page(netif::kTxRingRef), netif::kPageSize, false);
  if (!r) return;
  drop_ring_.emplace(std::move(*r));
  drop_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(engine().io(), ::dup(pl.backend_end().wait_fd()));
  drop_pending();
  arm_drop();
}

void VifHooks::stop_active() {
  drop_wait_.reset();
  drop_ring_.reset();
  drop_extra_ = false;
}

void VifHooks::arm_drop() {
  if (!drop_wait_) return;
  drop_wait_->async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec || !drop_ring_) return;
    (void)engine().plumbing().backend_end().consume();
    drop_pending();
    arm_drop();
  });
}

void VifHooks::drop_pending() {
  bool notify = false;
  for (;;) {
    for (;;) {
      auto req = drop_ring_->get_request();
      if (!req) return;  // a hostile index from the guest: stop answering, it gets nothing more
      if (!*req) break;
      if (drop_extra_) {  // a GSO frame's extra slot (netif: answered NULL)
        (void)drop_ring_->put_response({0, NETIF_RSP_NULL});
        drop_extra_ = false;
        continue;
      }
      (void)drop_ring_->put_response({(**req).id, NETIF_RSP_DROPPED});
      drop_extra_ = (**req).flags & NETTXF_extra_info;
      ++dropped_;
    }
    if (drop_ring_->push_responses()) notify = true;
    // Re-arm req_event so the frontend kicks us for the next request.
    if (!drop_ring_->final_check_for_requests()) break;
  }
  if (notify) (void)engine().plumbing().backend_end().notify();
}

// The transmit ring's progress (the engine's watchdog of a ring of
// requests): a driver stuck on it is hung even if it answers heartbeats.
// The receive ring's buffers wait for the wire.
std::optional<Stall> VifHooks::progress(bool serving) {
  return serving ? engine().ring_progress(kTxRing, "tx") : std::nullopt;
}

void VifHooks::teardown() {
  stop_active();
  if (front_pid_ > 0) {
    ::kill(front_pid_, SIGKILL);
    ::waitpid(front_pid_, nullptr, 0);
    front_pid_ = -1;
  }
  nic_.reset();
  if (topology_) {
    topology_ = false;
    remove_netns(topo_.guest_ns);
    remove_netns(topo_.wire_ns);
    // Also made here (before its domain ever ran, if start-up failed early).
    remove_netns(topo_.driver_ns);
  }
}

nlohmann::json VifHooks::status() const {
  const auto& log = engine().splitter_log();
  if (!topology_)
    return {{"nic", nic_name_}, {"mac", netif::mac_string(cfg_.mac)}, {"mtu", cfg_.mtu},
            {"config_generation", cfg_.generation}};
  auto j = topology_json();
  j.update({{"tap", topo_.guest_if}, {"mtu", cfg_.mtu}, {"config_generation", cfg_.generation},
            {"tx_inflight", log.valid() ? log.count(0) : 0}, {"rx_posted", log.valid() ? log.count(1) : 0},
            {"tx_dropped_in_active_mode", dropped_}, {"frontend_pid", front_pid_}});
  return j;
}

}  // namespace sd::dom0
