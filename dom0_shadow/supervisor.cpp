#include "supervisor.hpp"

#include <signal.h>
#include <unistd.h>

#include <map>

namespace sd::dom0 {

namespace {
// A new incarnation that has not said Ready after this long is broken.
constexpr auto kStartTimeout = std::chrono::seconds(10);
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
                       config::Policy policy, EventLog& log, GrantBroker& broker, DomainHooks hooks)
    : io_(io),
      plat_(plat),
      cfg_(std::move(cfg)),
      policy_(std::move(policy)),
      log_(log),
      broker_(broker),
      hooks_(std::move(hooks)),
      heartbeat_timer_(io),
      restart_timer_(io) {}

Supervisor::~Supervisor() { stop(); }

Result<void> Supervisor::start() {
  state_ = DomainState::kStarting;
  spawn();
  if (state_ == DomainState::kFenced) return fail(Code::kFence, "driver domain " + cfg_.name + " could not start: " + last_cause_);
  return {};
}

// Starts one incarnation. Chronological: create -> wait for Ready -> heartbeats.
void Supervisor::spawn() {
  platform::DomainSpec spec;
  spec.name = cfg_.name;
  spec.cfg_file = cfg_.file;
  spec.memory_mb = cfg_.memory_mb;
  spec.netns = "sd-" + cfg_.name;  // persistent: passed-through devices outlive the incarnation
  spawned_at_ = Clock::now();
  auto info = plat_.domains().create(spec, &ctl_);
  if (!info) {
    last_cause_ = "create failed: " + info.error().message;
    log_.emit({{"type", "domain_create_failed"}, {"domain", cfg_.name}, {"error", info.error().message}});
    state_ = DomainState::kFenced;
    if (hooks_.on_fenced) hooks_.on_fenced();
    return;
  }
  live_ = *info;
  ++incarnations_;
  state_ = DomainState::kStarting;
  (void)ctl_.set_nonblocking(true);
  ctl_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(ctl_.fd()));
  arm_control_wait();
  last_pong_ = Clock::now();
  heartbeat_timer_.expires_after(policy_.heartbeat_interval);
  heartbeat_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) heartbeat_tick();
  });
}

void Supervisor::arm_control_wait() {
  if (!ctl_wait_) return;
  ctl_wait_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                        [this, id = live_ ? live_->id : 0](const boost::system::error_code& ec) {
                          if (ec || !live_ || live_->id != id) return;
                          on_control_readable();
                        });
}

void Supervisor::on_control_readable() {
  for (;;) {
    UniqueFd fd;  // a driver domain has no business sending fds; dropped
    auto m = ctl_.recv(&fd);
    if (!m) {
      // EOF usually means the process is dying: its death report follows.
      // Anything else (wrong size) is protocol garbage from an untrusted peer.
      if (m.error().code == Code::kRestartReplay) kill_for("bad control message: " + m.error().message);
      ctl_wait_.reset();
      return;
    }
    if (!*m) break;
    const ctl::Msg& msg = **m;
    switch (msg.type) {
      case ctl::MsgType::kReady: {
        if (state_ != DomainState::kStarting) {
          kill_for("Ready sent twice");
          return;
        }
        state_ = DomainState::kRunning;
        auto now = Clock::now();
        last_start_ms_ = ms_between(spawned_at_, now);
        nlohmann::json ev{{"type", "domain_ready"},
                          {"domain", cfg_.name},
                          {"domid", live_->id},
                          {"pid", live_->pid},
                          {"incarnation", incarnations_},
                          {"start_ms", *last_start_ms_}};
        if (died_at_) {
          last_death_to_ready_ms_ = ms_between(*died_at_, now);
          ev["death_to_ready_ms"] = *last_death_to_ready_ms_;
          died_at_.reset();
        }
        log_.emit(ev);
        if (hooks_.on_ready) hooks_.on_ready();
        break;
      }
      case ctl::MsgType::kPong:
        if (msg.b <= ping_seq_) last_pong_ = Clock::now();
        break;
      case ctl::MsgType::kMapGrant:
        broker_.answer(msg, live_->id, ctl_);
        break;
      case ctl::MsgType::kProbeResult:
        break;  // probes are for tests that hold the channel themselves
      case ctl::MsgType::kDevAttached:
      case ctl::MsgType::kDevFault:
        if (hooks_.on_device_msg) hooks_.on_device_msg(msg);
        break;
      default:
        kill_for("unknown control message type " + std::to_string(static_cast<uint32_t>(msg.type)));
        return;
    }
  }
  arm_control_wait();
}

// Heartbeat: ping every interval; no pong for heartbeat_timeout = hang.
void Supervisor::heartbeat_tick() {
  if (!live_) return;
  auto now = Clock::now();
  if (state_ == DomainState::kStarting && now - spawned_at_ > kStartTimeout) {
    kill_for("start timeout (no Ready)");
    return;
  }
  if (state_ == DomainState::kRunning && now - last_pong_ > policy_.heartbeat_timeout) {
    fault_at_ = last_pong_ + policy_.heartbeat_interval;
    kill_for("hang (no heartbeat answer for " +
             std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now - last_pong_).count()) + " ms)");
    return;
  }
  if (state_ == DomainState::kRunning) {
    ctl::Msg ping;
    ping.type = ctl::MsgType::kPing;
    ping.b = ++ping_seq_;
    (void)ctl_.send(ping);  // a full channel is itself a sign of a hang; the timeout catches it
  }
  heartbeat_timer_.expires_after(policy_.heartbeat_interval);
  heartbeat_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) heartbeat_tick();
  });
}

void Supervisor::fault(const std::string& cause) {
  if (!live_ || !pending_cause_.empty()) return;  // already being handled
  fault_at_ = Clock::now();
  log_.emit({{"type", "fault_detected"}, {"domain", cfg_.name}, {"domid", live_->id}, {"cause", cause}});
  kill_for(cause);
}

void Supervisor::kill_for(const std::string& cause) {
  if (!live_) return;
  if (pending_cause_.empty()) pending_cause_ = cause;
  if (fault_at_ == Clock::time_point{}) fault_at_ = Clock::now();
  // The devices go to active mode now, not when the death report arrives.
  if (hooks_.on_fault) hooks_.on_fault(fault_at_);
  (void)plat_.domains().kill(live_->id, SIGKILL);
}

void Supervisor::on_death(const platform::DeathInfo& d) {
  if (!live_ || d.id != live_->id) return;  // an older incarnation: already handled
  live_.reset();
  ctl_wait_.reset();
  ctl_ = ctl::Channel();
  heartbeat_timer_.cancel();
  if (state_ == DomainState::kStopped) return;
  died_at_ = d.detected;
  if (fault_at_ == Clock::time_point{}) fault_at_ = d.detected;
  last_detect_ms_ = ms_between(fault_at_, d.detected);
  last_cause_ = pending_cause_.empty() ? d.reason : pending_cause_ + "; " + d.reason;
  pending_cause_.clear();
  log_.emit({{"type", "domain_died"},
             {"domain", cfg_.name},
             {"domid", d.id},
             {"cause", last_cause_},
             {"signal", d.signal},
             {"exit_code", d.exit_code},
             {"detect_ms", *last_detect_ms_}});
  if (hooks_.on_fault) hooks_.on_fault(fault_at_);
  fault_at_ = {};
  schedule_restart();
}

void Supervisor::schedule_restart() {
  auto now = Clock::now();
  while (!restart_times_.empty() && now - restart_times_.front() > policy_.restart_window) restart_times_.pop_front();
  if (restart_times_.size() >= policy_.restart_budget) {
    state_ = DomainState::kFenced;
    log_.emit({{"type", "domain_fenced"},
               {"domain", cfg_.name},
               {"reason", "restart budget spent (" + std::to_string(policy_.restart_budget) + " in " +
                              std::to_string(policy_.restart_window.count()) + " s)"}});
    if (hooks_.on_fenced) hooks_.on_fenced();
    return;
  }
  auto backoff = config::restart_backoff(policy_, static_cast<uint32_t>(restart_times_.size()));
  restart_times_.push_back(now);
  ++restarts_;
  state_ = DomainState::kBackoff;
  if (backoff.count() == 0) {
    spawn();
    return;
  }
  restart_timer_.expires_after(backoff);
  restart_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec && state_ == DomainState::kBackoff) spawn();
  });
}

Result<void> Supervisor::inject(const std::string& kind) {
  if (!live_) return fail(Code::kRetry, "driver domain " + cfg_.name + " is not running (" +
                                            std::string(state_name(state_)) + ")");
  log_.emit({{"type", "fault_injected"}, {"domain", cfg_.name}, {"domid", live_->id}, {"kind", kind}});
  fault_at_ = Clock::now();
  if (kind == "kill") return plat_.domains().kill(live_->id, SIGKILL);
  static const std::map<std::string, ctl::FaultKind> kKinds = {
      {"segv", ctl::FaultKind::kSegv},       {"hang", ctl::FaultKind::kHang},
      {"sigsys", ctl::FaultKind::kBadSyscall}, {"stall", ctl::FaultKind::kStall},
      {"bad-id", ctl::FaultKind::kBadId},    {"bad-prod", ctl::FaultKind::kBadProd},
      {"bad-grant", ctl::FaultKind::kBadGrant}};
  std::string k = kind;
  if (k == "garbage") {
    // One of the invalid-response faults, in turn.
    static const char* const kGarbage[] = {"bad-id", "bad-prod", "bad-grant"};
    k = kGarbage[garbage_turn_++ % 3];
  }
  auto it = kKinds.find(k);
  if (it == kKinds.end()) {
    fault_at_ = {};
    return fail(Code::kInvalidInput, "unknown fault kind '" + kind +
                                         "' (expected kill, segv, hang, sigsys, stall, bad-id, bad-prod, bad-grant or garbage)");
  }
  ctl::Msg m;
  m.type = ctl::MsgType::kFault;
  m.a = static_cast<uint32_t>(it->second);
  return ctl_.send(m);
}

Result<void> Supervisor::restart_now() {
  if (state_ == DomainState::kStopped) return fail(Code::kInvalidInput, "driver domain " + cfg_.name + " is stopped");
  if (live_) {
    pending_cause_ = "operator restart";
    fault_at_ = Clock::now();
    return plat_.domains().kill(live_->id, SIGKILL);  // the death report restarts it
  }
  // Fenced or backing off: start now, with a fresh budget.
  restart_timer_.cancel();
  restart_times_.clear();
  log_.emit({{"type", "operator_restart"}, {"domain", cfg_.name}});
  died_at_ = Clock::now();
  spawn();
  return {};
}

void Supervisor::stop() {
  if (state_ == DomainState::kStopped) return;
  state_ = DomainState::kStopped;
  heartbeat_timer_.cancel();
  restart_timer_.cancel();
  if (live_) {
    ctl::Msg m;
    m.type = ctl::MsgType::kShutdown;
    (void)ctl_.send(m);
    (void)plat_.domains().kill(live_->id, SIGKILL);
  }
  ctl_wait_.reset();
  plat_.domains().forget(cfg_.name);
}

nlohmann::json Supervisor::status() const {
  auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  nlohmann::json j{{"name", cfg_.name},
                   {"state", std::string(state_name(state_))},
                   {"domid", live_ ? nlohmann::json(live_->id) : nlohmann::json(nullptr)},
                   {"pid", live_ ? nlohmann::json(live_->pid) : nlohmann::json(nullptr)},
                   {"incarnations", incarnations_},
                   {"restarts", restarts_},
                   {"last_cause", last_cause_},
                   {"last_detect_ms", opt(last_detect_ms_)},
                   {"last_death_to_ready_ms", opt(last_death_to_ready_ms_)},
                   {"last_start_ms", opt(last_start_ms_)},
                   {"policy", std::string(config::class_name(policy_.cls))},
                   {"cfg", cfg_.file}};
  return j;
}

}  // namespace sd::dom0
