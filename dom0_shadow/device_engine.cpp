#include "device_engine.hpp"

#include <boost/asio/post.hpp>

#include "frontend_link.hpp"

namespace sd::dom0 {

namespace {
constexpr uint16_t kRequestRing = 0;  // every class's request (vif: tx) ring in the splitter log
}

DeviceEngine::DeviceEngine(boost::asio::io_context& io, std::string guest, const config::DeviceSpec& spec,
                           uint64_t handle, config::Policy policy, EventLog& log, FaultReporter report,
                           std::unique_ptr<platform::DevicePlumbing> plumbing, std::unique_ptr<Splitter> splitter,
                           std::unique_ptr<ClassHooks> hooks)
    : io_(io),
      guest_(std::move(guest)),
      spec_(spec),
      handle_(handle),
      id_(guest_ + "/" + config::device_name(spec)),
      policy_(std::move(policy)),
      log_(log),
      report_(std::move(report)),
      plumbing_(std::move(plumbing)),
      splitter_(std::move(splitter)),
      hooks_(std::move(hooks)),
      watchdog_(io) {
  hooks_->bind(*this);
}

DeviceEngine::~DeviceEngine() { teardown(); }

Result<void> DeviceEngine::setup() {
  auto spawned = hooks_->setup();
  if (!spawned) return std::unexpected(spawned.error());
  if (!*spawned)
    if (auto reached = plumbing_->connect_frontend()) {  // the platform reaches the guest's frontend itself
      if (!*reached) return std::unexpected(reached->error());
      spawned->emplace(std::move(**reached));
    }
  if (auto r = splitter_->start(*this, std::move(*spawned)); !r) return r;
  arm_watchdog();
  return {};
}

// --- the frontend side ------------------------------------------------------

ctl::Msg DeviceEngine::frontend_attach() {
  ctl::Msg att{.type = ctl::MsgType::kDevAttach, .a = static_cast<uint32_t>(hooks_->cls()), .b = handle_};
  hooks_->frontend_payload(att);
  return att;
}

void DeviceEngine::on_frontend_connected() {
  front_attached_ = false;
  ++frontends_;
  hooks_->frontend_connected();
}

// The frontend mapped everything: a serving backend takes its ring at once;
// with the backend dead, shadowd serves it (if the class has an active mode).
Result<void> DeviceEngine::on_frontend_ready() {
  log_.emit({{"type", "frontend_up"}, {"device", id_}, {"connection", frontends_}});
  if (auto r = hooks_->frontend_ready(); !r) return r;
  if (backend_up_ && backend_) {
    attach_backend();
  } else if (backend_dead_ && !hooks_->active_mode().empty()) {
    front_attached_ = true;
    start_active();
  }
  return {};
}

// The frontend went away (the player closed the PCM, the disk was unmounted,
// the process died): the backend forgets the device until the next one.
void DeviceEngine::on_frontend_gone(const std::string& why) {
  log_.emit({{"type", "frontend_gone"}, {"device", id_}, {"detail", why}});
  front_attached_ = false;
  active_ = false;
  hooks_->stop_active();
  hooks_->frontend_gone();
  if (done_ && backend_) {
    // A recovery was waiting for this frontend's replay: the backend is up,
    // with nothing to serve.
    backend_up_ = true;
    ++recoveries_;
    finish(times_);
  }
  if (backend_up_ && backend_) (void)backend_->send(ctl::Msg{.type = ctl::MsgType::kDevDetach, .b = handle_});
}

void DeviceEngine::on_repair_failed(const Error& e) {
  log_.emit({{"type", "repair_failed"}, {"device", id_}, {"error", e.message}});
  finish(std::unexpected(e));
}

void DeviceEngine::on_bad_response(const std::string& what) {
  last_fault_ = what;
  ++bad_responses_;
  log_.emit({{"type", "bad_response"}, {"device", id_}, {"error", what}});
  if (backend_up_) report_("bad response: " + what, std::nullopt);
}

void DeviceEngine::on_config(const ctl::Msg& m) {
  if (!hooks_->frontend_config(m) || !backend_up_ || !backend_) return;
  ctl::Msg fwd = m;
  fwd.b = handle_;
  (void)backend_->send(fwd);
}

void DeviceEngine::on_repaired(uint32_t replayed, const std::string& mode) {
  if (mode != "attach") {
    // Repaired for active mode: shadowd serves, unless a new backend is already taking over.
    if (!backend_ && mode == hooks_->active_mode()) start_active();
    return;
  }
  if (!done_ || !backend_) return;
  times_.replayed = replayed;
  replayed_total_ += replayed;
  t_replayed_ = platform::Clock::now();
  times_.replay_ms = ms_between(t_ready_, t_replayed_);
  attach_backend();
}

// --- the backend side -------------------------------------------------------

void DeviceEngine::on_fault() {
  backend_up_ = false;
  backend_ = nullptr;
  if (done_) finish(fail(Code::kRetry, "backend failed during recovery"));
  if (splitter_->ready() && front_attached_) splitter_->backend_gone();
}

void DeviceEngine::on_backend_dead() {
  backend_dead_ = true;
  const auto& log = splitter_->log();
  inflight_at_death_ = log.valid() ? log.count(kRequestRing) : 0;
  log_.emit({{"type", "device_active"},
             {"device", id_},
             {"action", policy_.active_action},
             {"inflight", inflight_at_death_}});
  hooks_->backend_dead();
  auto mode = hooks_->active_mode();
  if (mode.empty() || !splitter_->ready() || !front_attached_) return;
  (void)splitter_->repair(mode, 0);  // then on_repaired(mode) starts serving
}

void DeviceEngine::start_active() {
  active_ = true;
  hooks_->start_active();
}

void DeviceEngine::on_backend_ready(ctl::Channel& ch, platform::DomId domid, Done done) {
  // The new backend takes over: shadowd stops answering first.
  if (active_) {
    active_ = false;
    hooks_->stop_active();
  }
  backend_ = &ch;
  domid_ = domid;
  backend_dead_ = false;
  plumbing_->backend_starting(domid);
  promoted_ = standby_domid_ && *standby_domid_ == domid && standby_mapped_;
  if (standby_domid_ && *standby_domid_ == domid) standby_domid_.reset();
  done_ = std::move(done);
  times_ = {};
  t_ready_ = platform::Clock::now();
  // Until the new backend serves, no response is a sample of its service
  // time: what was posted before then waited through the outage or the
  // handover (it answers replayed requests before its attach is confirmed).
  splitter_->backend_serving(UINT64_MAX);
  if (!splitter_->ready()) {
    // No frontend: nothing to hand over; the next one is attached when it connects.
    backend_up_ = true;
    up_since_ns_ = shadow::now_ns();
    splitter_->backend_serving(up_since_ns_);
    ++recoveries_;
    // Answered after this returns, as always. The engine may be gone by
    // then (shadowd's teardown runs the io_context again while the platform
    // drains): then nothing.
    boost::asio::post(io_, [this, alive = std::weak_ptr<bool>(alive_)] {
      if (alive.lock()) finish(times_);
    });
    return;
  }
  if (!front_attached_ && !plumbing_->frontend_in_guest()) {
    attach_backend();
    return;
  }
  // The old backend (or shadowd) is done with the ring: the splitter keeps
  // what was finished, resets it and replays what is in flight (a guest
  // that grants its own pool grants it to the new domain first).
  if (auto r = splitter_->repair("attach", domid); !r) finish(std::unexpected(r.error()));
}

ctl::Msg DeviceEngine::backend_attach(bool standby) const {
  ctl::Msg m{.type = ctl::MsgType::kDevAttach,
             .a = static_cast<uint32_t>(hooks_->cls()) | (standby ? ctl::kAttachStandby : 0),
             .b = handle_};
  hooks_->backend_payload(m);
  return m;
}

// Replay the state and hand the ring to the backend. A pre-attached standby
// already has everything but the go.
void DeviceEngine::attach_backend() {
  if (!backend_ || !splitter_->ready()) return;
  front_attached_ = true;
  if (promoted_) {
    ctl::Msg go{.type = ctl::MsgType::kDevGo, .b = handle_};
    hooks_->backend_payload(go);
    if (auto r = backend_->send(go); !r) finish(std::unexpected(r.error()));
    return;
  }
  if (auto r = plumbing_->grant_to({domid_}); !r) return finish(std::unexpected(r.error()));
  if (auto r = plumbing_->offer_backend(*backend_, domid_, backend_attach(false), hooks_->backend_resources()); !r)
    finish(std::unexpected(r.error()));
}

void DeviceEngine::on_standby_ready(ctl::Channel& ch, platform::DomId domid) {
  if (!hooks_->pre_attaches_standby()) return;
  standby_domid_ = domid;
  standby_mapped_ = false;
  std::vector<platform::DomId> peers{domid};
  if (backend_up_) peers.push_back(domid_);
  if (auto r = plumbing_->grant_to(peers); !r) return;
  if (auto r = plumbing_->offer_backend(ch, domid, backend_attach(true), hooks_->backend_resources()); !r)
    log_.emit({{"type", "standby_attach_failed"}, {"device", id_}, {"error", r.error().message}});
}

void DeviceEngine::on_backend_msg(platform::DomId from, const ctl::Msg& m) {
  if (m.b != handle_) return;
  if (m.type == ctl::MsgType::kDevFault) {
    log_.emit({{"type", "frontend_protocol_error"}, {"device", id_}, {"error", m.get_text()}});
    return;
  }
  if (m.type != ctl::MsgType::kDevAttached) return;
  if (standby_domid_ && from == *standby_domid_) {
    standby_mapped_ = m.a == 0 && m.get_text() == "standby";
    return;
  }
  if (from != domid_ || !backend_) return;
  if (m.a != 0) {
    log_.emit({{"type", "attach_refused"}, {"device", id_}, {"error", m.get_text()}});
    return finish(fail(Code::kRestartReplay, "backend refused the " + std::string(config::class_name(hooks_->cls())) +
                                                 ": " + m.get_text()));
  }
  backend_up_ = true;
  up_since_ns_ = shadow::now_ns();
  splitter_->backend_serving(up_since_ns_);
  plumbing_->backend_serving(domid_);
  times_.resume_ms =
      ms_between(t_replayed_ == platform::Clock::time_point{} ? t_ready_ : t_replayed_, platform::Clock::now());
  // Kick both ends: requests replayed before the attach are waiting.
  (void)plumbing_->backend_end().notify();
  (void)plumbing_->frontend_end().notify();
  t_replayed_ = {};
  if (done_) {
    ++recoveries_;
    finish(times_);
  }
}

void DeviceEngine::finish(Result<ResumeTimes> r) {
  if (!done_) return;
  auto d = std::move(done_);
  done_ = nullptr;
  d(std::move(r));
}

// Progress watchdog: a backend that answers heartbeats but does not serve
// the ring is as dead as one that crashed. What "not serving" means is the
// class's (a write may wait as long as a player's buffer lasts).
void DeviceEngine::arm_watchdog() {
  watchdog_.expires_after(std::max(policy_.watchdog_interval, std::chrono::milliseconds(1)));
  watchdog_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    const auto& log = splitter_->log();
    bool serving = backend_up_ && front_attached_ && splitter_->ready() && log.valid() && log.enabled();
    if (auto s = hooks_->progress(serving)) report_(s->cause, s->began);
    arm_watchdog();
  });
}

std::optional<Stall> DeviceEngine::ring_progress(uint16_t ring, const char* what) {
  uint64_t now = shadow::now_ns();
  auto idle = splitter_log().idle(ring, std::max(up_since_ns_, stall_reported_ns_));
  auto timeout = static_cast<double>(policy_.progress_timeout.count());
  auto lo = static_cast<double>(policy_.no_progress_min.count());
  auto hi = std::min(static_cast<double>(policy_.no_progress_max.count()), timeout);
  double limit = std::min(std::max(policy_.no_progress_multiple * idle.service_ms, lo), hi);
  char b[200];
  double age = 0;
  if (policy_.no_progress_multiple != 0 && idle.waiting_ms > limit && !hooks_->may_wait_long(ring)) {
    age = idle.waiting_ms;
    std::snprintf(b, sizeof(b),
                  "hang (no %s response for %.0f ms, limit %.0f ms = max(%lld, %u x service %.2f ms), at most %.0f ms; "
                  "progress watchdog)",
                  what, age, limit, static_cast<long long>(policy_.no_progress_min.count()),
                  policy_.no_progress_multiple, idle.service_ms, hi);
  } else if (idle.oldest_ms > timeout) {
    age = idle.oldest_ms;
    std::snprintf(b, sizeof(b), "hang (%s request pending %.0f ms, progress watchdog)", what, age);
  } else {
    return std::nullopt;
  }
  stall_reported_ns_ = now;
  return Stall{b, platform::Clock::now() - std::chrono::microseconds(static_cast<int64_t>(age * 1000))};
}

void DeviceEngine::teardown() {
  watchdog_.cancel();
  if (splitter_) splitter_->stop();
  if (hooks_) hooks_->teardown();
}

nlohmann::json DeviceEngine::status() const {
  const auto& log = splitter_->log();
  nlohmann::json j{{"frontend_connected", splitter_->ready()},
                   {"backend_up", backend_up_},
                   {"active_action", policy_.active_action},
                   {"splitter_log", log.valid() && log.enabled()},
                   {"inflight", log.valid() ? log.count(kRequestRing) : 0},
                   {"inflight_at_last_death", inflight_at_death_},
                   {"replayed", replayed_total_},
                   {"bad_responses", bad_responses_},
                   {"recoveries", recoveries_},
                   {"standby_attached", standby_domid_.has_value() && standby_mapped_},
                   {"last_fault", last_fault_}};
  for (const auto& [k, v] : plumbing_->status()) j[k] = v;
  j.update(hooks_->status());
  return j;
}

Result<std::unique_ptr<DeviceEngine>> make_device_engine(boost::asio::io_context& io, platform::Platform& plat,
                                                         const std::string& guest, const config::DeviceSpec& spec,
                                                         uint64_t handle, const config::Policy& policy, EventLog& log,
                                                         FaultReporter report, std::unique_ptr<ClassHooks> hooks) {
  platform::DeviceInfo info{guest, std::string(config::class_name(spec.cls)), spec.index, hooks->pool_pages(),
                            hooks->published_nodes(), policy.guest_frontend == "kernel", spec.stream};
  std::string id = guest + "/" + config::device_name(spec);
  auto plumbing = plat.make_device_plumbing(info);
  if (!plumbing) return fail(plumbing.error().code, id + ": " + plumbing.error().message);
  auto splitter = std::make_unique<FrontendSplitter>(io, **plumbing, "the " + info.type + " " + id, handle,
                                                     hooks->log_slots(), hooks->socket_path());
  return std::make_unique<DeviceEngine>(io, guest, spec, handle, policy, log, std::move(report), std::move(*plumbing),
                                        std::move(splitter), std::move(hooks));
}

}  // namespace sd::dom0
