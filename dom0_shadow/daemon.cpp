#include "daemon.hpp"

#include <boost/asio/steady_timer.hpp>
#include <cstdio>

#include "device_engine.hpp"
#include "vbd/vbd_hooks.hpp"
#include "vif/vif_hooks.hpp"
#include "vsnd/vsnd_hooks.hpp"

namespace sd::dom0 {

namespace {

nlohmann::json ok(nlohmann::json body = nlohmann::json::object()) {
  body["ok"] = true;
  return body;
}
nlohmann::json err(const std::string& msg) { return {{"ok", false}, {"error", msg}}; }

// The policy that governs a driver domain: that of the first device class
// it backs (vif, then vbd, then vsnd), else any loaded policy.
std::optional<config::Policy> policy_for(const config::HostConfig& cfg, const std::string& domain) {
  for (auto cls : {config::DeviceClass::kVif, config::DeviceClass::kVbd, config::DeviceClass::kVsnd})
    for (const auto& g : cfg.guests)
      for (const auto& d : g.devices)
        if (d.backend == domain && d.cls == cls && cfg.policies.count(cls)) return cfg.policies.at(cls);
  if (!cfg.policies.empty()) return cfg.policies.begin()->second;
  return std::nullopt;
}

}  // namespace

Daemon::Daemon(config::HostConfig cfg, DaemonOptions opts)
    : cfg_(std::move(cfg)), opts_(std::move(opts)), signals_(io_, SIGINT, SIGTERM) {}

Daemon::~Daemon() {
  shutdown();
  // Supervisors before the platform: they hold its domains.
  supervisors_.clear();
  // The device engines before the platform too: they own its device
  // plumbing, whose destructor uses the platform's store (on Xen,
  // XenDevicePlumbing removes its xenstore nodes and its VchanLink unwatches).
  // Left to the member destructors they ran after platform_.reset(), on a
  // freed XenStore: shadowd segfaulted after shadowd_stopped on Xen.
  impls_.clear();
  platform_.reset();
}

Supervisor* Daemon::find(const std::string& name) {
  auto it = supervisors_.find(name);
  return it == supervisors_.end() ? nullptr : it->second.get();
}

std::vector<DeviceShadow*> Daemon::devices_of(const std::string& backend) {
  std::vector<DeviceShadow*> out;
  for (auto& d : devices_)
    if (d->backend() == backend) out.push_back(d.get());
  return out;
}

// One guest device: the engine with its class's hooks and the platform's
// plumbing.
Result<std::unique_ptr<DeviceImpl>> Daemon::make_device(const std::string& guest, const config::DeviceSpec& spec,
                                                        uint64_t handle, unsigned& vif_number, FaultReporter report) {
  const auto& policy = cfg_.policies.at(spec.cls);
  std::unique_ptr<ClassHooks> hooks;
  switch (spec.cls) {
    case config::DeviceClass::kVif:
      hooks = std::make_unique<VifHooks>(guest, spec, vif_number++, cfg_.wire_netns, opts_.netfront_binary);
      break;
    case config::DeviceClass::kVsnd:
      hooks = std::make_unique<VsndHooks>(guest, spec, cfg_.state_dir);
      break;
    case config::DeviceClass::kVbd:
      hooks = std::make_unique<VbdHooks>(guest, spec, cfg_.state_dir);
      break;
  }
  auto engine = make_device_engine(io_, *platform_, guest, spec, handle, policy, *log_, std::move(report),
                                   std::move(hooks));
  if (!engine) return std::unexpected(engine.error());
  return std::unique_ptr<DeviceImpl>(std::move(*engine));
}

Result<void> Daemon::start() {
  platform::Options popts;
  popts.state_dir = cfg_.state_dir;
  popts.drvdom_binary = opts_.drvdom_binary;
  popts.ring_proxies = {
      {"vif", opts_.netfront_binary}, {"vbd", opts_.blkfront_binary}, {"vsnd", opts_.sndfront_binary}};
  std::string which = opts_.platform.empty() ? cfg_.platform : opts_.platform;
  auto plat = platform::make_platform(which, io_, popts);
  if (!plat) return std::unexpected(plat.error());
  platform_ = std::move(*plat);
  log_ = std::make_unique<EventLog>(cfg_.event_log);

  // Guest devices: the recovery state machine for each, plus the class
  // implementation where one exists on this platform.
  unsigned vif_number = 0;
  // A device class reports the faults it detects to its driver domain's supervisor.
  auto reporter = [this](std::string backend) -> FaultReporter {
    return [this, backend](const std::string& cause, std::optional<platform::Clock::time_point> began) {
      if (auto* s = find(backend)) s->fault(cause, began);
    };
  };
  for (const auto& g : cfg_.guests)
    for (const auto& spec : g.devices) {
      size_t handle = devices_.size();
      devices_.push_back(std::make_unique<DeviceShadow>(g.name, spec));
      std::unique_ptr<DeviceImpl> impl;
      if (cfg_.policies.count(spec.cls)) {
        auto made = make_device(g.name, spec, handle, vif_number, reporter(spec.backend));
        if (!made) return std::unexpected(made.error());
        impl = std::move(*made);
      }
      impls_.push_back(std::move(impl));
    }

  platform_->domains().on_death([this](const platform::DeathInfo& d) {
    if (auto* s = find(d.name)) s->on_death(d);
  });

  for (const auto& dom : cfg_.driver_domains) {
    auto pol = policy_for(cfg_, dom.name);
    if (!pol) return fail(Code::kInvalidInput, "no policy loaded for driver domain " + dom.name);
    std::string name = dom.name;
    DomainHooks hooks;
    hooks.on_fault = [this, name](platform::Clock::time_point at) {
      for (size_t i = 0; i < devices_.size(); ++i) {
        auto* dev = devices_[i].get();
        if (dev->backend() != name || !dev->on_backend_fault(at)) continue;
        if (impls_[i]) impls_[i]->on_fault();
        log_->emit({{"type", "device_state"}, {"device", dev->id()}, {"state", "active"}});
      }
    };
    hooks.on_dead = [this, name] {
      for (size_t i = 0; i < devices_.size(); ++i)
        if (devices_[i]->backend() == name && impls_[i]) impls_[i]->on_backend_dead();
    };
    hooks.on_ready = [this, name] { on_domain_ready(name); };
    hooks.on_fenced = [this, name] {
      for (auto* dev : devices_of(name))
        if (dev->on_fenced()) log_->emit({{"type", "device_state"}, {"device", dev->id()}, {"state", "fenced"}});
    };
    hooks.on_device_msg = [this](platform::DomId from, const ctl::Msg& m) {
      if (m.b < impls_.size() && impls_[m.b]) impls_[m.b]->on_backend_msg(from, m);
    };
    hooks.on_standby_ready = [this, name](ctl::Channel& ch, platform::DomId domid) {
      for (size_t i = 0; i < devices_.size(); ++i)
        if (devices_[i]->backend() == name && impls_[i]) impls_[i]->on_standby_ready(ch, domid);
    };
    supervisors_[name] = std::make_unique<Supervisor>(io_, *platform_, dom, *pol, *log_, std::move(hooks));
  }

  for (size_t i = 0; i < impls_.size(); ++i)
    if (impls_[i])
      if (auto r = impls_[i]->setup(); !r)
        return fail(r.error().code, devices_[i]->id() + ": " + r.error().message);

  auto sock = opts_.control_socket.empty() ? cfg_.control_socket : opts_.control_socket;
  auto srv = ControlServer::listen(io_, sock, [this](const nlohmann::json& req, ControlServer::Session& s) {
    return handle(req, s);
  });
  if (!srv) return std::unexpected(srv.error());
  server_ = std::move(*srv);

  log_->emit({{"type", "shadowd_started"}, {"platform", platform_->name()}, {"config", cfg_.file}});
  for (auto& [name, sup] : supervisors_)
    if (auto s = sup->start(); !s) return std::unexpected(s.error());
  std::fprintf(stderr, "shadowd: platform %s, %zu driver domain(s), %zu device(s), control socket %s\n",
               platform_->name().c_str(), supervisors_.size(), devices_.size(), sock.c_str());
  return {};
}

void Daemon::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  if (server_) server_->close();
  for (auto& [name, sup] : supervisors_) sup->stop();
  for (auto& impl : impls_)
    if (impl) impl->teardown();
  if (log_) log_->emit({{"type", "shadowd_stopped"}});
  io_.stop();
}

// A new incarnation of `name` is ready: every device it backs replays its
// shadow into it; the recovery event goes out when the last one resumed.
void Daemon::on_domain_ready(const std::string& name) {
  auto* sup = find(name);
  if (!sup || !sup->channel() || !sup->domid()) return;
  Recovery& rec = recovering_[name];
  rec = Recovery{};
  rec.ready = platform::Clock::now();
  for (size_t i = 0; i < devices_.size(); ++i) {
    if (devices_[i]->backend() != name) continue;
    devices_[i]->on_backend_ready();  // Active -> Recovering (no-op at first start)
    if (!impls_[i]) {
      device_resumed(name, i, ResumeTimes{});
      continue;
    }
    ++rec.pending;
    impls_[i]->on_backend_ready(*sup->channel(), *sup->domid(),
                                [this, name, i](Result<ResumeTimes> r) { device_resumed(name, i, std::move(r)); });
  }
  if (rec.pending == 0) {
    emit_recovery(name);
    sup->devices_serving();
  }
}

void Daemon::device_resumed(const std::string& name, size_t idx, Result<ResumeTimes> r) {
  Recovery& rec = recovering_[name];
  auto* dev = devices_[idx].get();
  nlohmann::json figures;  // this device's own, for its line in the recovery event
  if (!r) {
    // This device is not served (the backend refused or lost it, or died:
    // its death then starts the next round). The others serve on, and the
    // recovery event lists it with its error.
    log_->emit({{"type", "resume_failed"}, {"device", dev->id()}, {"error", r.error().message}});
    if (dev->on_failed(r.error().message))
      log_->emit({{"type", "device_state"}, {"device", dev->id()}, {"state", "failed"}, {"error", r.error().message}});
    figures["error"] = r.error().message;
  } else {
    dev->on_replayed();
    // The devices recover side by side: each one's phases, and the time from
    // Ready to the last one serving.
    double serving_ms = ms_between(rec.ready, platform::Clock::now());
    rec.replay_ms = std::max(rec.replay_ms, r->replay_ms);
    rec.resume_ms = std::max(rec.resume_ms, r->resume_ms);
    rec.devices_ms = std::max(rec.devices_ms, serving_ms);
    rec.replayed += r->replayed;
    figures = {{"replay_ms", r->replay_ms},
               {"resume_ms", r->resume_ms},
               {"serving_ms", serving_ms},
               {"replayed", r->replayed}};
  }
  if (!impls_[idx] || rec.pending == 0) return;  // not part of a recovery round
  auto j = dev->to_json();
  j.update(figures);
  rec.devices.push_back(std::move(j));
  if (--rec.pending == 0) {
    emit_recovery(name);
    if (auto* sup = find(name)) sup->devices_serving();
  }
}

void Daemon::emit_recovery(const std::string& name) {
  auto* sup = find(name);
  if (!sup) return;
  auto st = sup->status();
  Recovery& rec = recovering_[name];
  if (st["restarts"].get<uint64_t>() == 0 && st["last_cause"].get<std::string>().empty()) return;  // first start
  // replay and resume: the slowest device's; devices: Ready to the last
  // device serving (they overlap, so it is not their sum).
  nlohmann::json phases{{"detect", st["last_detect_ms"]},   {"spawn", st["last_death_to_ready_ms"]},
                        {"replay", rec.replay_ms},           {"resume", rec.resume_ms},
                        {"devices", rec.devices_ms}};
  double total = rec.devices_ms;
  for (const char* k : {"detect", "spawn"})
    if (phases[k].is_number()) total += phases[k].get<double>();
  phases["total"] = total;
  // When the last device served again, on CLOCK_MONOTONIC: a benchmark
  // places shadowd's phases between its fault and its first I/O after it.
  auto served_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
      platform::Clock::now().time_since_epoch()).count();
  log_->emit({{"type", "recovery"},
              {"domain", name},
              {"cause", st["last_cause"]},
              {"phases_ms", phases},
              {"served_mono_ns", served_ns},
              {"replayed", rec.replayed},
              {"devices", rec.devices}});
}

int Daemon::run() {
  signals_.async_wait([this](const boost::system::error_code& ec, int) {
    if (!ec) shutdown();
  });
  if (auto s = start(); !s) {
    std::fprintf(stderr, "shadowd: %s\n", s.error().to_string().c_str());
    shutdown();
    return 1;
  }
  io_.run();
  return 0;
}

nlohmann::json Daemon::handle(const nlohmann::json& req, ControlServer::Session& session) {
  const std::string cmd = req["cmd"];
  auto str_arg = [&](const char* key) -> std::optional<std::string> {
    if (!req.contains(key) || !req[key].is_string()) return std::nullopt;
    return req[key].get<std::string>();
  };

  if (cmd == "list") {
    nlohmann::json doms = nlohmann::json::array();
    for (auto& [name, sup] : supervisors_) {
      auto st = sup->status();
      size_t n = devices_of(name).size();
      doms.push_back({{"name", name},
                      {"domid", st["domid"]},
                      {"state", st["state"]},
                      {"restarts", st["restarts"]},
                      {"devices", n}});
    }
    return ok({{"platform", platform_->name()}, {"domains", doms}});
  }
  if (cmd == "status") {
    auto name = str_arg("domain");
    if (name) {
      auto* s = find(*name);
      if (!s) return err("no driver domain named '" + *name + "'");
      return ok({{"domains", nlohmann::json::array({s->status()})}});
    }
    nlohmann::json all = nlohmann::json::array();
    for (auto& [n, s] : supervisors_) all.push_back(s->status());
    return ok({{"domains", all}});
  }
  if (cmd == "devices") {
    nlohmann::json all = nlohmann::json::array();
    for (size_t i = 0; i < devices_.size(); ++i) {
      auto j = devices_[i]->to_json();
      if (impls_[i]) j["detail"] = impls_[i]->status();
      all.push_back(j);
    }
    return ok({{"devices", all}});
  }
  if (cmd == "events") {
    size_t n = 20;
    if (req.contains("n") && req["n"].is_number_unsigned()) n = req["n"].get<size_t>();
    bool follow = req.contains("follow") && req["follow"].is_boolean() && req["follow"].get<bool>();
    auto body = ok({{"events", log_->recent(n)}});
    if (follow) {
      session.send(body);
      auto self = &session;
      uint64_t id = log_->subscribe([self](const nlohmann::json& ev) { self->send({{"event", ev}}); });
      session.on_close = [this, id] { log_->unsubscribe(id); };
      return nullptr;  // answered already; the stream follows
    }
    return body;
  }
  if (cmd == "inject-fault") {
    auto name = str_arg("domain");
    auto kind = str_arg("kind");
    if (!name || !kind) return err("inject-fault needs \"domain\" and \"kind\"");
    auto* s = find(*name);
    if (!s) return err("no driver domain named '" + *name + "'");
    if (auto r = s->inject(*kind); !r) return err(r.error().message);
    return ok();
  }
  if (cmd == "restart") {
    auto name = str_arg("domain");
    if (!name) return err("restart needs \"domain\"");
    auto* s = find(*name);
    if (!s) return err("no driver domain named '" + *name + "'");
    if (auto r = s->restart_now(); !r) return err(r.error().message);
    return ok();
  }
  if (cmd == "policy-show") {
    auto cls = str_arg("class");
    if (!cls) return err("policy-show needs \"class\" (vif, vsnd or vbd)");
    for (auto& [c, p] : cfg_.policies)
      if (config::class_name(c) == *cls) return ok({{"class", *cls}, {"file", p.file}, {"yaml", config::policy_to_yaml(p)}});
    return err("no policy loaded for class '" + *cls + "' (loaded: " + [&] {
      std::string s;
      for (auto& [c, p] : cfg_.policies) s += (s.empty() ? "" : ", ") + std::string(config::class_name(c));
      return s.empty() ? std::string("none") : s;
    }() + ")");
  }
  if (cmd == "shutdown") {
    // Answer first, then stop once the answer is on its way.
    auto t = std::make_shared<boost::asio::steady_timer>(io_, std::chrono::milliseconds(50));
    t->async_wait([this, t](const boost::system::error_code&) { shutdown(); });
    return ok();
  }
  return err("unknown command '" + cmd + "'");
}

}  // namespace sd::dom0
