#include "supervisor.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <map>

namespace sd::dom0 {

// How long a closed control channel may go without a death report before
// shadowd kills the domain itself (see on_control_readable).
constexpr auto kEofGrace = std::chrono::milliseconds(200);

namespace {
// A new standby starts this long after the devices serve again, so it does
// not compete with them for the CPU (or, on Xen, for shadowd's loop while
// libxl creates it).
constexpr auto kStandbyDelay = std::chrono::milliseconds(50);
}  // namespace

std::string_view state_name(DomainState s) {
  switch (s) {
    case DomainState::kStarting: return "starting";
    case DomainState::kRunning: return "running";
    case DomainState::kBackoff: return "backoff";
    case DomainState::kFenced: return "fenced";
    case DomainState::kStopped: return "stopped";
  }
  return "?";
}

Supervisor::Supervisor(boost::asio::io_context& io, platform::Platform& plat, config::DomainCfg cfg,
                       config::Policy policy, EventLog& log, DomainHooks hooks)
    : io_(io),
      plat_(plat),
      cfg_(std::move(cfg)),
      policy_(std::move(policy)),
      log_(log),
      hooks_(std::move(hooks)),
      heartbeat_timer_(io),
      restart_timer_(io),
      standby_timer_(io) {}

Supervisor::~Supervisor() { stop(); }

Result<void> Supervisor::start() {
  state_ = DomainState::kStarting;
  spawn();
  if (state_ == DomainState::kFenced)
    return fail(Code::kFence, "driver domain " + cfg_.name + " could not start: " + last_cause_);
  heartbeat_timer_.expires_after(policy_.heartbeat_interval);
  heartbeat_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) heartbeat_tick();
  });
  return {};
}

std::chrono::milliseconds Supervisor::check_period() const {
  auto p = std::min(policy_.heartbeat_interval, policy_.heartbeat_timeout / 10);
  return std::max(p, std::chrono::milliseconds(1));
}

Supervisor::Inc* Supervisor::find_inc(platform::DomId id) {
  if (active_ && active_->info.id == id) return active_.get();
  if (standby_ && standby_->info.id == id) return standby_.get();
  return nullptr;
}

// Creates one incarnation and starts listening to it. Chronological: create
// -> wait for Ready (on_inc_ready) -> heartbeats (heartbeat_tick).
std::unique_ptr<Supervisor::Inc> Supervisor::spawn_inc(bool standby) {
  platform::DomainSpec spec;
  spec.name = cfg_.name;
  spec.cfg_file = cfg_.file;
  spec.memory_mb = cfg_.memory_mb;
  spec.netns = "sd-" + cfg_.name;  // persistent: passed-through devices outlive the incarnation
  spec.vcpus = cfg_.vcpus;
  spec.type = cfg_.type.value_or("");
  spec.kernel = cfg_.kernel.value_or("");
  spec.ramdisk = cfg_.ramdisk.value_or("");
  spec.cmdline = cfg_.cmdline ? *cfg_.cmdline : cfg_.extra.value_or("");
  spec.driver_domain = cfg_.driver_domain;
  spec.background = standby;  // a spare must not slow the running one
  for (const auto& dev : cfg_.devices) {  // its own hardware, served by dom0 (not shadowed)
    if (dev.backend != config::kDom0Name) continue;
    if (dev.cls == config::DeviceClass::kVif) spec.nics.push_back(dev.params);
    if (dev.cls == config::DeviceClass::kVbd) spec.disks.push_back(dev.params);
  }
  auto inc = std::make_unique<Inc>();
  inc->spawned = Clock::now();
  inc->standby = standby;
  auto info = plat_.domains().create(spec, &inc->ch);
  if (!info) {
    last_cause_ = "create failed: " + info.error().message;
    log_.emit({{"type", "domain_create_failed"}, {"domain", cfg_.name}, {"error", info.error().message}});
    return nullptr;
  }
  inc->info = *info;
  inc->last_pong = Clock::now();
  ++incarnations_;
  if (!inc->ch.valid()) {
    // No control channel on this platform yet (Xen: libxenvchan is still to
    // come): the domain runs, but nothing can say Ready or answer heartbeats.
    log_.emit({{"type", "no_control_channel"}, {"domain", cfg_.name}, {"domid", inc->info.id}});
    return inc;
  }
  (void)inc->ch.set_nonblocking(true);
  inc->wait = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(inc->ch.fd()));
  arm_control_wait(*inc);
  return inc;
}

void Supervisor::spawn() {
  active_ = spawn_inc(false);
  if (!active_) {
    state_ = DomainState::kFenced;
    if (hooks_.on_fenced) hooks_.on_fenced();
    return;
  }
  state_ = DomainState::kStarting;
}

bool Supervisor::keeps_spare() const { return policy_.standby || policy_.zygote; }

void Supervisor::spawn_standby() {
  if (!keeps_spare() || standby_ || state_ == DomainState::kStopped || state_ == DomainState::kFenced) return;
  standby_ = spawn_inc(true);
}

void Supervisor::arm_control_wait(Inc& inc) {
  if (!inc.wait) return;
  inc.wait->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       [this, id = inc.info.id](const boost::system::error_code& ec) {
                         if (!ec) on_control_readable(id);
                       });
}

void Supervisor::on_control_readable(platform::DomId id) {
  for (;;) {
    Inc* inc = find_inc(id);
    if (!inc) return;  // died or was replaced meanwhile
    UniqueFd fd;       // a driver domain has no business sending fds; dropped
    auto m = inc->ch.recv(&fd);
    if (!m) {
      // EOF usually means the process is dying: its death report follows.
      // Anything else (wrong size) is protocol garbage from an untrusted peer.
      if (m.error().code == Code::kRestartReplay) {
        kill_inc(*inc, "bad control message: " + m.error().message);
      } else {
        // On Xen the runtime is a process inside the domain: it can exit
        // while the domain lives on. No death report within the grace
        // period = the domain is useless; kill it.
        inc->eof_timer = std::make_unique<boost::asio::steady_timer>(io_, kEofGrace);
        inc->eof_timer->async_wait([this, id](const boost::system::error_code& ec) {
          if (ec) return;
          if (Inc* i = find_inc(id); i && i->pending_cause.empty()) kill_inc(*i, "control channel closed (runtime exited)");
        });
      }
      inc->wait.reset();
      return;
    }
    if (!*m) break;
    const ctl::Msg& msg = **m;
    switch (msg.type) {
      case ctl::MsgType::kReady:
        if (inc->ready) {
          kill_inc(*inc, "Ready sent twice");
          return;
        }
        on_inc_ready(*inc);
        break;
      case ctl::MsgType::kPong:
        if (msg.b <= ping_seq_) inc->last_pong = Clock::now();
        break;
      case ctl::MsgType::kProbeResult:
        break;  // probes are for tests that hold the channel themselves
      case ctl::MsgType::kDevAttached:
      case ctl::MsgType::kDevFault:
        if (hooks_.on_device_msg) hooks_.on_device_msg(inc->info.id, msg);
        break;
      default:
        kill_inc(*inc, "unknown control message type " + std::to_string(static_cast<uint32_t>(msg.type)));
        return;
    }
  }
  if (Inc* inc = find_inc(id)) arm_control_wait(*inc);
}

void Supervisor::on_inc_ready(Inc& inc) {
  inc.ready = true;
  inc.last_pong = Clock::now();
  auto now = Clock::now();
  double start_ms = ms_between(inc.spawned, now);
  if (inc.standby) {
    log_.emit({{"type", "standby_ready"}, {"domain", cfg_.name}, {"domid", inc.info.id}, {"pid", inc.info.pid},
               {"start_ms", start_ms}, {"spare", policy_.standby ? "standby" : "zygote"}});
    if (policy_.standby && hooks_.on_standby_ready) hooks_.on_standby_ready(inc.ch, inc.info.id);
    return;
  }
  state_ = DomainState::kRunning;
  last_start_ms_ = start_ms;
  nlohmann::json ev{{"type", "domain_ready"},
                    {"domain", cfg_.name},
                    {"domid", inc.info.id},
                    {"pid", inc.info.pid},
                    {"incarnation", incarnations_},
                    {"start_ms", start_ms}};
  if (died_at_) {
    last_death_to_ready_ms_ = ms_between(*died_at_, now);
    ev["death_to_ready_ms"] = *last_death_to_ready_ms_;
    died_at_.reset();
  }
  if (recovering_since_) {
    // What the devices' users wait for: first sign of the fault -> serving again.
    last_fault_to_ready_ms_ = ms_between(*recovering_since_, now);
    ev["fault_to_ready_ms"] = *last_fault_to_ready_ms_;
    recovering_since_.reset();
  }
  log_.emit(ev);
  if (hooks_.on_ready) hooks_.on_ready();
}

void Supervisor::devices_serving() {
  if (!keeps_spare() || standby_) return;
  standby_timer_.expires_after(kStandbyDelay);
  standby_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) spawn_standby();
  });
}

// Heartbeat: ping every interval; no pong for heartbeat_timeout = hang.
// The standby is watched the same way: a hung standby is useless.
void Supervisor::heartbeat_tick() {
  auto now = Clock::now();
  // A tick far later than scheduled means shadowd's own loop was blocked
  // (a synchronous libxl create/destroy on Xen takes seconds): answers that
  // arrived meanwhile are still unread, so the silence proves nothing.
  // Restart the timeouts instead of declaring the domains hung.
  bool loop_stalled = last_tick_ != Clock::time_point{} && now - last_tick_ > 2 * check_period() + std::chrono::milliseconds(100);
  last_tick_ = now;
  if (loop_stalled)
    for (Inc* inc : {active_.get(), standby_.get()})
      if (inc && inc->ready) inc->last_pong = now;
  // Checks run ten times per timeout so a hang is seen within 10 % of it;
  // pings go out once per interval.
  bool ping_now = now - last_ping_ >= policy_.heartbeat_interval;
  if (ping_now) {
    last_ping_ = now;
    ++ping_seq_;
  }
  for (Inc* inc : {active_.get(), standby_.get()}) {
    if (!inc || !inc->pending_cause.empty()) continue;
    if (!inc->ready) {
      if (now - inc->spawned > plat_.domains().start_timeout()) kill_inc(*inc, "start timeout (no Ready)");
      continue;
    }
    if (now - inc->last_pong >= policy_.heartbeat_timeout) {
      if (inc == active_.get()) fault_at_ = fault_start(inc->info.id, inc->last_pong + policy_.heartbeat_interval);
      kill_inc(*inc, "hang (no heartbeat answer for " +
                         std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now - inc->last_pong).count()) +
                         " ms)");
      continue;
    }
    if (!ping_now) continue;
    // A full channel is itself a sign of a hang; the timeout catches it.
    (void)inc->ch.send(ctl::Msg{.type = ctl::MsgType::kPing, .b = ping_seq_});
  }
  if (state_ == DomainState::kStopped) return;
  heartbeat_timer_.expires_after(check_period());
  heartbeat_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) heartbeat_tick();
  });
}

void Supervisor::kill_inc(Inc& inc, const std::string& cause) {
  if (inc.pending_cause.empty()) inc.pending_cause = cause;
  if (&inc == active_.get()) {
    if (fault_at_ == Clock::time_point{}) fault_at_ = fault_start(inc.info.id, Clock::now());
    // The devices go to active mode now, not when the death report arrives.
    if (hooks_.on_fault) hooks_.on_fault(fault_at_);
  }
  (void)plat_.domains().kill(inc.info.id, SIGKILL);
}

// When the current fault began: an injection into this incarnation that is
// recent enough to be the cause, else what the detector says. An injected
// fault that never fired (no traffic) must not stretch a later, unrelated one.
Supervisor::Clock::time_point Supervisor::fault_start(platform::DomId id, Clock::time_point fallback) const {
  if (!injected_ || injected_->domid != id) return fallback;
  auto window = std::max({std::chrono::milliseconds(2000), 2 * policy_.heartbeat_timeout, 2 * policy_.progress_timeout});
  if (fallback - injected_->at > window || injected_->at > fallback) return fallback;
  return injected_->at;
}

void Supervisor::fault(const std::string& cause, std::optional<Clock::time_point> began) {
  if (!active_ || !active_->pending_cause.empty()) return;  // already being handled
  if (fault_at_ == Clock::time_point{}) fault_at_ = fault_start(active_->info.id, began.value_or(Clock::now()));
  log_.emit({{"type", "fault_detected"}, {"domain", cfg_.name}, {"domid", active_->info.id}, {"cause", cause}});
  kill_inc(*active_, cause);
}

void Supervisor::on_death(const platform::DeathInfo& d) {
  if (standby_ && standby_->info.id == d.id) {
    log_.emit({{"type", "standby_died"}, {"domain", cfg_.name}, {"domid", d.id},
               {"cause", standby_->pending_cause.empty() ? d.reason : standby_->pending_cause + "; " + d.reason}});
    standby_.reset();
    devices_serving();  // a new standby after the delay
    return;
  }
  if (!active_ || d.id != active_->info.id) return;  // an older incarnation: already handled
  std::string pending = active_->pending_cause;
  active_.reset();
  if (state_ == DomainState::kStopped) return;
  died_at_ = d.detected;
  if (fault_at_ == Clock::time_point{}) fault_at_ = fault_start(d.id, d.detected);
  last_detect_ms_ = ms_between(fault_at_, d.detected);
  last_cause_ = pending.empty() ? d.reason : pending + "; " + d.reason;
  log_.emit({{"type", "domain_died"},
             {"domain", cfg_.name},
             {"domid", d.id},
             {"cause", last_cause_},
             {"signal", d.signal},
             {"exit_code", d.exit_code},
             {"detect_ms", *last_detect_ms_}});
  // A recovery that needs more than one incarnation (one failed to start)
  // is still timed from its first fault.
  if (!recovering_since_) recovering_since_ = fault_at_;
  const auto fault_at = std::exchange(fault_at_, {});
  injected_.reset();
  // A cold start is the long pole of the recovery: it begins before the
  // devices go active, so that the new domain starts while shadowd answers
  // for the old one (on many devices that is milliseconds). A promotion or a
  // fence must find the devices active already.
  const Restart plan = plan_restart();
  if (plan == Restart::kSpawn) restart(plan);
  if (hooks_.on_fault) hooks_.on_fault(fault_at);
  if (hooks_.on_dead) hooks_.on_dead();
  if (plan != Restart::kSpawn) restart(plan);
}

Supervisor::Restart Supervisor::plan_restart() {
  auto now = Clock::now();
  while (!restart_times_.empty() && now - restart_times_.front() > policy_.restart_window) restart_times_.pop_front();
  if (restart_times_.size() >= policy_.restart_budget) return Restart::kFence;
  if (config::restart_backoff(policy_, static_cast<uint32_t>(restart_times_.size())).count() != 0)
    return Restart::kBackoff;
  return standby_ && standby_->ready && standby_->pending_cause.empty() ? Restart::kPromote : Restart::kSpawn;
}

void Supervisor::restart(Restart r) {
  if (r == Restart::kFence) {
    state_ = DomainState::kFenced;
    log_.emit({{"type", "domain_fenced"},
               {"domain", cfg_.name},
               {"reason", "restart budget spent (" + std::to_string(policy_.restart_budget) + " in " +
                              std::to_string(policy_.restart_window.count()) + " s)"}});
    if (standby_) (void)plat_.domains().kill(standby_->info.id, SIGKILL);
    if (hooks_.on_fenced) hooks_.on_fenced();
    return;
  }
  auto backoff = config::restart_backoff(policy_, static_cast<uint32_t>(restart_times_.size()));
  restart_times_.push_back(Clock::now());
  ++restarts_;
  if (r == Restart::kPromote) {
    // Hot backup: the standby (or zygote) is already Ready; promote it.
    ++promotions_;
    active_ = std::move(standby_);
    active_->standby = false;
    plat_.domains().set_background(active_->info.id, false);
    active_->ready = false;  // on_inc_ready treats it as the new active
    on_inc_ready(*active_);
    return;
  }
  state_ = DomainState::kBackoff;
  if (r == Restart::kSpawn) {
    spawn();
    return;
  }
  restart_timer_.expires_after(backoff);
  restart_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec && state_ == DomainState::kBackoff) spawn();
  });
}

Result<void> Supervisor::inject(const std::string& kind) {
  if (!active_ || !active_->ready)
    return fail(Code::kRetry, "driver domain " + cfg_.name + " is not running (" + std::string(state_name(state_)) + ")");
  log_.emit({{"type", "fault_injected"}, {"domain", cfg_.name}, {"domid", active_->info.id}, {"kind", kind}});
  injected_ = Injected{Clock::now(), active_->info.id};
  if (kind == "kill") return plat_.domains().kill(active_->info.id, SIGKILL);
  static const std::map<std::string, ctl::FaultKind> kKinds = {
      {"segv", ctl::FaultKind::kSegv},         {"hang", ctl::FaultKind::kHang},
      {"sigsys", ctl::FaultKind::kBadSyscall}, {"stall", ctl::FaultKind::kStall},
      {"bad-id", ctl::FaultKind::kBadId},      {"bad-prod", ctl::FaultKind::kBadProd},
      {"bad-grant", ctl::FaultKind::kBadGrant}};
  std::string k = kind;
  if (k == "garbage") {
    // One of the invalid-response faults, in turn.
    static const char* const kGarbage[] = {"bad-id", "bad-prod", "bad-grant"};
    k = kGarbage[garbage_turn_++ % 3];
  }
  auto it = kKinds.find(k);
  if (it == kKinds.end()) {
    injected_.reset();
    return fail(Code::kInvalidInput, "unknown fault kind '" + kind +
                                         "' (expected kill, segv, hang, sigsys, stall, bad-id, bad-prod, bad-grant or "
                                         "garbage)");
  }
  return active_->ch.send(ctl::Msg{.type = ctl::MsgType::kFault, .a = static_cast<uint32_t>(it->second)});
}

Result<void> Supervisor::restart_now() {
  if (state_ == DomainState::kStopped) return fail(Code::kInvalidInput, "driver domain " + cfg_.name + " is stopped");
  if (active_) {
    if (active_->pending_cause.empty()) active_->pending_cause = "operator restart";
    fault_at_ = Clock::now();
    return plat_.domains().kill(active_->info.id, SIGKILL);  // the death report restarts it
  }
  // Fenced or backing off: start now, with a fresh budget.
  restart_timer_.cancel();
  restart_times_.clear();
  log_.emit({{"type", "operator_restart"}, {"domain", cfg_.name}});
  died_at_ = Clock::now();
  spawn();  // the heartbeat timer runs until stop(), fenced or not
  return {};
}

void Supervisor::stop() {
  if (state_ == DomainState::kStopped) return;
  state_ = DomainState::kStopped;
  heartbeat_timer_.cancel();
  restart_timer_.cancel();
  standby_timer_.cancel();
  for (auto* inc : {active_.get(), standby_.get()}) {
    if (!inc) continue;
    (void)inc->ch.send(ctl::Msg{.type = ctl::MsgType::kShutdown});
    (void)plat_.domains().kill(inc->info.id, SIGKILL);
  }
  active_.reset();
  standby_.reset();
  plat_.domains().forget(cfg_.name);
}

nlohmann::json Supervisor::status() const {
  auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  nlohmann::json j{{"name", cfg_.name},
                   {"state", std::string(state_name(state_))},
                   {"domid", active_ ? nlohmann::json(active_->info.id) : nlohmann::json(nullptr)},
                   {"pid", active_ ? nlohmann::json(active_->info.pid) : nlohmann::json(nullptr)},
                   {"incarnations", incarnations_},
                   {"restarts", restarts_},
                   {"promotions", promotions_},
                   {"last_fault_to_ready_ms", opt(last_fault_to_ready_ms_)},
                   {"standby", !keeps_spare() ? "off" : standby_ && standby_->ready ? "ready" : standby_ ? "starting" : "none"},
                   {"spare", policy_.standby ? "standby" : policy_.zygote ? "zygote" : "off"},
                   {"standby_pid", standby_ ? nlohmann::json(standby_->info.pid) : nlohmann::json(nullptr)},
                   {"last_cause", last_cause_},
                   {"last_detect_ms", opt(last_detect_ms_)},
                   {"last_death_to_ready_ms", opt(last_death_to_ready_ms_)},
                   {"last_start_ms", opt(last_start_ms_)},
                   {"policy", std::string(config::class_name(policy_.cls))},
                   {"cfg", cfg_.file}};
  return j;
}

}  // namespace sd::dom0
