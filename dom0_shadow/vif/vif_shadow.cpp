#include "vif/vif_shadow.hpp"

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

#include "frontend_link.hpp"
#include "local/local_platform.hpp"
#include "local/netns.hpp"
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

VifShadow::VifShadow(boost::asio::io_context& io, platform::Platform& plat, std::string guest,
                     const config::DeviceSpec& spec, uint64_t handle, unsigned vif_number, std::string wire_ns,
                     config::Policy policy,
                     std::filesystem::path frontend_binary, EventLog& log, FaultReporter report)
    : io_(io),
      plat_(plat),
      guest_(std::move(guest)),
      spec_(spec),
      handle_(handle),
      policy_(std::move(policy)),
      frontend_binary_(std::move(frontend_binary)),
      log_(log),
      report_(std::move(report)),
      watchdog_(io) {
  topo_.guest_ns = guest_;
  topo_.wire_ns = std::move(wire_ns);
  topo_.driver_ns = "sd-" + spec_.backend;
  topo_.wire_if = "wire" + std::to_string(vif_number);
  topo_.nic_if = "nic" + std::to_string(vif_number);
  auto ip = spec_.params.count("ip") ? spec_.params.at("ip") : std::string();
  addresses(ip, vif_number, &topo_.guest_addr, &topo_.wire_addr);
  if (!spec_.params.count("mac") || !netif::parse_mac(spec_.params.at("mac"), cfg_.mac)) {
    // xl's default: Xen's OUI with bytes from the guest and vif number.
    uint8_t def[6] = {0x00, 0x16, 0x3e, static_cast<uint8_t>(std::hash<std::string>{}(guest_) & 0x7f),
                      static_cast<uint8_t>(vif_number >> 8), static_cast<uint8_t>(vif_number)};
    std::memcpy(cfg_.mac, def, 6);
  }
  cfg_.mtu = 1500;
  cfg_.features = netif::kFeatureRxCopy;
}

VifShadow::~VifShadow() { teardown(); }

Result<void> VifShadow::setup() {
  if (plat_.name() != "local")
    return fail(Code::kUnavailable, "vif shadow: only the local platform is wired up so far");
  if (auto r = build_topology(); !r) return r;
  auto pool = plat_.make_grant_pool(kPoolPages);
  if (!pool) return std::unexpected(pool.error());
  pool_ = std::move(*pool);
  auto evt = plat_.make_event_channel();
  if (!evt) return std::unexpected(evt.error());
  front_evt_ = std::move(evt->first);
  back_evt_ = std::move(evt->second);
  auto sh = new_splitter_log(2 * netif::kRingSize);
  if (!sh) return std::unexpected(sh.error());
  shadow_ = std::move(*sh);
  if (auto r = start_frontend(); !r) return r;
  watchdog_.expires_after(policy_.heartbeat_interval);
  watchdog_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) watchdog_tick();
  });
  return {};
}

// wire <-veth-> NIC (in the driver domain's persistent netns), both up,
// offloads off so every frame fits one granted page.
Result<void> VifShadow::build_topology() {
  for (const auto& ns : {topo_.guest_ns, topo_.wire_ns, topo_.driver_ns})
    if (auto r = local::ensure_netns(ns); !r) return std::unexpected(r.error());
  (void)ip(topo_.wire_ns, {"link", "del", topo_.wire_if});  // left over from an unclean stop
  (void)ip(topo_.driver_ns, {"link", "del", topo_.nic_if});
  auto steps = std::vector<std::pair<std::string, std::vector<std::string>>>{
      {"", {"link", "add", topo_.wire_if, "netns", topo_.wire_ns, "type", "veth", "peer", "name", topo_.nic_if, "netns",
            topo_.driver_ns}},
      {topo_.wire_ns, {"addr", "add", topo_.wire_addr, "dev", topo_.wire_if}},
      {topo_.wire_ns, {"link", "set", topo_.wire_if, "up"}},
      // Guests in one /24 all get the same wire address, each on its own veth:
      // a host route sends each guest's replies down its own veth.
      {topo_.wire_ns, {"route", "replace", topo_.guest_addr.substr(0, topo_.guest_addr.find('/')) + "/32", "dev",
                       topo_.wire_if}},
      {topo_.wire_ns, {"link", "set", "lo", "up"}},
      {topo_.driver_ns, {"link", "set", topo_.nic_if, "up"}},
      {topo_.driver_ns, {"link", "set", "lo", "up"}},
  };
  for (auto& [ns, args] : steps)
    if (auto r = ip(ns, args); !r) return r;
  if (auto r = offloads_off(topo_.wire_ns, topo_.wire_if); !r) return r;
  if (auto r = offloads_off(topo_.driver_ns, topo_.nic_if); !r) return r;
  auto sock = open_packet_socket(topo_.driver_ns, topo_.nic_if);
  if (!sock) return std::unexpected(sock.error());
  nic_ = std::move(*sock);
  return {};
}

// The guest: sd-netfront in the guest's netns creates the TAP; it gets the
// splitter log, its event-channel ends and the whole pool (its own memory).
Result<void> VifShadow::start_frontend() {
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
  front_pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  front_ = std::move(chans->first);

  auto* fe = dynamic_cast<local::LocalEventChannel*>(front_evt_.get());
  ctl::Msg att;
  att.type = ctl::MsgType::kDevAttach;
  att.a = static_cast<uint32_t>(config::DeviceClass::kVif);
  att.b = handle_;
  att.set_payload(cfg_);
  int fds[3] = {shadow_.fd(), fe->notify_fd(), fe->wait_fd()};
  if (auto r = front_.send_fds(att, fds, 3); !r) return r;
  if (auto r = send_pool(front_, 0, true); !r) return r;
  // Wait (bounded) for the frontend to map everything and post its buffers.
  pollfd p{front_.fd(), POLLIN, 0};
  if (::poll(&p, 1, 5000) <= 0) return fail(Code::kEscalate, "vif frontend did not attach within 5 s");
  auto m = front_.recv();
  if (!m || !*m || (*m)->type != ctl::MsgType::kDevAttached || (*m)->a != 0)
    return fail(Code::kEscalate, "vif frontend attach failed" + (m && *m ? ": " + (*m)->get_text() : std::string()));
  (void)front_.set_nonblocking(true);
  auto steps = std::vector<std::vector<std::string>>{
      {"addr", "add", topo_.guest_addr, "dev", topo_.guest_if},
      {"link", "set", topo_.guest_if, "up"},
      {"link", "set", "lo", "up"},
  };
  for (auto& args : steps)
    if (auto r = ip(topo_.guest_ns, args); !r) return r;
  front_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(front_.fd()));
  arm_frontend_read();
  log_.emit({{"type", "vif_up"},
             {"device", guest_ + "/vif/" + std::to_string(spec_.index)},
             {"guest_ns", topo_.guest_ns},
             {"guest_addr", topo_.guest_addr},
             {"wire_ns", topo_.wire_ns},
             {"wire_addr", topo_.wire_addr},
             {"nic", topo_.driver_ns + "/" + topo_.nic_if},
             {"mac", mac}});
  return {};
}

// Hands every pool page over in batches. owner: the guest itself (all
// pages); otherwise grant each page to `peer` first and send what the
// grant table allows.
Result<void> VifShadow::send_pool(ctl::Channel& ch, platform::DomId peer, bool owner) {
  return send_pool_fds(ch, *pool_, handle_, owner ? std::nullopt : std::optional<platform::DomId>(peer));
}

// The pool's pages are granted to exactly these backends.
Result<void> VifShadow::regrant(std::initializer_list<platform::DomId> peers) {
  for (uint32_t ref = 0; ref < kPoolPages; ++ref) {
    if (auto r = pool_->revoke(ref); !r) return r;
    for (auto p : peers)
      if (auto r = pool_->grant(ref, p, false); !r) return r;
  }
  return {};
}

// Config written by the guest (log or message) is checked before use.
// The config to replay: the newest state in the splitter log, else the last
// one shadowd accepted from the frontend.
netif::VifConfig VifShadow::replay_config() const {
  netif::VifConfig logged;
  if (shadow_.get_config(&logged, sizeof(logged)) == sizeof(logged) && netif::plausible(logged)) return logged;
  return cfg_;
}

// kDevAttach (config replayed from the shadow, event channels, the NIC),
// then the granted pages.
Result<void> VifShadow::send_attach(ctl::Channel& ch, platform::DomId peer, bool standby) {
  netif::VifConfig c = replay_config();
  auto* be = dynamic_cast<local::LocalEventChannel*>(back_evt_.get());
  ctl::Msg att;
  att.type = ctl::MsgType::kDevAttach;
  att.a = static_cast<uint32_t>(config::DeviceClass::kVif) | (standby ? ctl::kAttachStandby : 0);
  att.b = handle_;
  att.set_payload(c);
  int fds[3] = {be->notify_fd(), be->wait_fd(), nic_.get()};
  if (auto r = ch.send_fds(att, fds, 3); !r) return r;
  return send_pool(ch, peer, false);
}

void VifShadow::on_standby_ready(ctl::Channel& ch, platform::DomId domid) {
  standby_domid_ = domid;
  standby_mapped_ = false;
  if (auto r = backend_up_ ? regrant({domid_, domid}) : regrant({domid}); !r) return;
  if (auto r = send_attach(ch, domid, true); !r)
    log_.emit({{"type", "standby_attach_failed"}, {"error", r.error().message}});
}

void VifShadow::arm_frontend_read() {
  read_frontend(front_wait_, front_, [this](const ctl::Msg& m) { on_frontend_msg(m); },
                [this](const std::string& why) {
                  log_.emit({{"type", "frontend_gone"}, {"device", guest_ + "/vif/" + std::to_string(spec_.index)},
                             {"error", why}});
                  front_wait_.reset();
                });
}

void VifShadow::on_frontend_msg(const ctl::Msg& m) {
  switch (m.type) {
    case ctl::MsgType::kReconnected:
      if (m.get_text() == "drop") {
        if (!backend_) start_drop();  // unless a new backend is already taking over
        return;
      }
      if (!done_ || !backend_) return;
      times_.replayed = m.a;
      t_replayed_ = platform::Clock::now();
      times_.replay_ms = ms_between(t_ready_, t_replayed_);
      attach_backend();
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

void VifShadow::on_fault() {
  bool was_up = backend_up_;
  backend_up_ = false;
  backend_ = nullptr;
  if (done_) finish(fail(Code::kRetry, "backend failed during recovery"));
  if (was_up || !first_attach_) {
    ctl::Msg m;
    m.type = ctl::MsgType::kBackendGone;
    m.b = handle_;
    (void)front_.send(m);
  }
}

// Active mode. "queue": nothing to do: tx requests wait in the ring (at most
// its 256 slots, then the guest's TAP queue pushes back on its stack) and
// received frames wait in the NIC's socket. "drop": shadowd takes the
// backend side of the tx ring and answers every request DROPPED, so the
// guest's stack sees loss (as on a cable pull) instead of back-pressure.
void VifShadow::on_backend_dead() {
  if (policy_.active_action != "drop" || !pool_) return;
  // The frontend first repairs its ring (as for a new backend), then
  // shadowd answers it: see start_drop().
  ctl::Msg m;
  m.type = ctl::MsgType::kReconnect;
  m.b = handle_;
  m.set_text("drop");
  (void)front_.send(m);
}

void VifShadow::start_drop() {
  auto r = ring::BackRing<netif::TxTraits>::attach(pool_->page(netif::kTxRingRef), netif::kPageSize, false);
  if (!r) return;
  drop_ring_.emplace(std::move(*r));
  auto* be = dynamic_cast<local::LocalEventChannel*>(back_evt_.get());
  drop_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(be->wait_fd()));
  drop_pending();
  arm_drop();
}

void VifShadow::arm_drop() {
  if (!drop_wait_) return;
  drop_wait_->async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec || !drop_ring_) return;
    (void)back_evt_->consume();
    drop_pending();
    arm_drop();
  });
}

void VifShadow::drop_pending() {
  bool notify = false;
  for (;;) {
    for (;;) {
      auto req = drop_ring_->get_request();
      if (!req) return;  // a hostile index from the guest: stop answering, it gets nothing more
      if (!*req) break;
      (void)drop_ring_->put_response({(**req).id, NETIF_RSP_DROPPED});
      ++dropped_;
    }
    if (drop_ring_->push_responses()) notify = true;
    // Re-arm req_event so the frontend kicks us for the next request.
    if (!drop_ring_->final_check_for_requests()) break;
  }
  if (notify) (void)back_evt_->notify();
}

void VifShadow::on_backend_ready(ctl::Channel& ch, platform::DomId domid, Done done) {
  // The new backend takes over: shadowd stops answering first.
  drop_wait_.reset();
  drop_ring_.reset();
  backend_ = &ch;
  domid_ = domid;
  promoted_ = standby_domid_ && *standby_domid_ == domid && standby_mapped_;
  if (standby_domid_ && *standby_domid_ == domid) standby_domid_.reset();
  done_ = std::move(done);
  times_ = {};
  t_ready_ = platform::Clock::now();
  if (first_attach_) {
    attach_backend();
    return;
  }
  // The old backend is dead for sure: the frontend takes what it finished,
  // resets its rings and replays its in-flight requests from the log.
  ctl::Msg m;
  m.type = ctl::MsgType::kReconnect;
  m.b = handle_;
  m.set_text("attach");
  if (auto r = front_.send(m); !r) finish(std::unexpected(r.error()));
}

// Replay the compacted config and give the new backend the ring. A
// pre-attached standby already has everything but the go.
void VifShadow::attach_backend() {
  if (!backend_) return;
  if (promoted_) {
    netif::VifConfig c = replay_config();
    ctl::Msg go;
    go.type = ctl::MsgType::kDevGo;
    go.b = handle_;
    go.set_payload(c);
    if (auto r = backend_->send(go); !r) finish(std::unexpected(r.error()));
    return;
  }
  if (auto r = regrant({domid_}); !r) return finish(std::unexpected(r.error()));
  if (auto r = send_attach(*backend_, domid_, false); !r) finish(std::unexpected(r.error()));
}

void VifShadow::on_backend_msg(platform::DomId from, const ctl::Msg& m) {
  if (m.b != handle_) return;
  if (m.type == ctl::MsgType::kDevAttached && standby_domid_ && from == *standby_domid_) {
    standby_mapped_ = m.a == 0 && m.get_text() == "standby";
    return;
  }
  if (m.type == ctl::MsgType::kDevAttached) {
    if (!done_ || from != domid_) return;
    if (m.a != 0) return finish(fail(Code::kRestartReplay, "backend refused the vif: " + m.get_text()));
    backend_up_ = true;
    first_attach_ = false;
    auto now = platform::Clock::now();
    up_since_ = now;
    times_.resume_ms = ms_between(t_replayed_ == platform::Clock::time_point{} ? t_ready_ : t_replayed_, now);
    // Kick both ends: requests replayed before the attach are waiting.
    (void)back_evt_->notify();
    (void)front_evt_->notify();
    t_replayed_ = {};
    ++recoveries_;
    finish(times_);
  } else if (m.type == ctl::MsgType::kDevFault) {
    log_.emit({{"type", "frontend_protocol_error"}, {"device", guest_ + "/vif/" + std::to_string(spec_.index)},
               {"error", m.get_text()}});
  }
}

void VifShadow::finish(Result<ResumeTimes> r) {
  if (!done_) return;
  auto d = std::move(done_);
  done_ = nullptr;
  d(std::move(r));
}

// Progress watchdog: a transmit request the backend sits on for longer than
// the policy allows means the driver is stuck, even if it answers heartbeats.
void VifShadow::watchdog_tick() {
  if (backend_up_ && shadow_.enabled()) {
    // Ages count from when the current backend started serving: requests
    // posted before it (during an outage, or while shadowd was still setting
    // up other guests' devices) are not held against it.
    auto now = platform::Clock::now();
    double age = std::min(shadow_.oldest_ms(kTxRing), ms_between(up_since_, now));
    if (age > static_cast<double>(policy_.progress_timeout.count())) {
      char b[64];
      std::snprintf(b, sizeof(b), "%.0f", age);
      auto began = now - std::chrono::microseconds(static_cast<int64_t>(age * 1000));
      report_(std::string("hang (tx request pending ") + b + " ms, progress watchdog)", began);
      up_since_ = now;  // one report per stall
    }
  }
  watchdog_.expires_after(policy_.heartbeat_interval);
  watchdog_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) watchdog_tick();
  });
}

void VifShadow::teardown() {
  watchdog_.cancel();
  front_wait_.reset();
  if (front_pid_ > 0) {
    ::kill(front_pid_, SIGKILL);
    ::waitpid(front_pid_, nullptr, 0);
    front_pid_ = -1;
  }
  front_ = ctl::Channel();
  nic_.reset();
  if (!topo_.guest_ns.empty()) {
    local::remove_netns(topo_.guest_ns);
    local::remove_netns(topo_.wire_ns);
    // Also made here (before its domain ever ran, if start-up failed early).
    local::remove_netns(topo_.driver_ns);
    topo_.guest_ns.clear();
  }
}

nlohmann::json VifShadow::status() const {
  return {{"guest_ns", topo_.guest_ns},
          {"tap", topo_.guest_if},
          {"guest_addr", topo_.guest_addr},
          {"wire_ns", topo_.wire_ns},
          {"wire_addr", topo_.wire_addr},
          {"nic", topo_.driver_ns + "/" + topo_.nic_if},
          {"mac", netif::mac_string(cfg_.mac)},
          {"mtu", cfg_.mtu},
          {"config_generation", cfg_.generation},
          {"splitter_log", shadow_.valid() && shadow_.enabled()},
          {"tx_inflight", shadow_.valid() ? shadow_.count(0) : 0},
          {"rx_posted", shadow_.valid() ? shadow_.count(1) : 0},
          {"backend_up", backend_up_},
          {"active_action", policy_.active_action},
          {"tx_dropped_in_active_mode", dropped_},
          {"standby_attached", standby_domid_.has_value() && standby_mapped_},
          {"frontend_pid", front_pid_},
          {"last_fault", last_fault_}};
}

}  // namespace sd::dom0
