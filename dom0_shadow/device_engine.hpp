// The one recovery engine: what every shadowed device does when its driver
// domain fails, whatever its class. A device class adds only hooks
// (ClassHooks: its resources, its active mode, its watchdog, its status);
// where the beam splitter sits is a strategy (Splitter: today the guest's
// frontend, tomorrow a dom0 ring proxy); how pages and event channels reach
// each end is the platform's (platform::DevicePlumbing).
//
// Recovery, in the order it runs (DeviceShadow holds the states):
//
//  step     | engine                                  | class hooks
//  ---------+-----------------------------------------+---------------------------------
//  fault    | stop the splitter taking responses      |
//           |   (kBackendGone); fail a recovery under |
//           |   way                                   |
//  dead     | active mode: the splitter repairs its   | backend_dead(); active_mode(),
//           |   ring for shadowd, which serves it     |   start_active() (vif drop,
//           |   (queue: nothing to serve)             |   vsnd paced by the DAC)
//  ready    | a new or promoted incarnation: the      | stop_active()
//           |   splitter repairs its ring and replays |
//           |   its in-flight requests (kReconnect)   |
//  replayed | grant the pool to the new domain, send  | backend_payload() (the state to
//           |   the replayed state and resources     |   replay), backend_resources()
//           |   (or kDevGo to a pre-attached standby) |
//  attached | kick both ends; the recovery is done    |
//
// A recovery waits for nothing that may never come: no frontend (nothing to
// replay) resumes at once; a frontend that leaves mid-recovery ends it; a
// backend that fails mid-recovery fails it (its death starts the next).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "device_impl.hpp"
#include "event_log.hpp"
#include "sd/config/policy.hpp"
#include "sd/config/xl_cfg.hpp"
#include "sd/core/platform.hpp"
#include "sd/core/splitter_log.hpp"

namespace sd::dom0 {

class DeviceEngine;

// A backend the progress watchdog found stuck.
struct Stall {
  std::string cause;
  platform::Clock::time_point began;
};

// What a device class adds to the engine (dom0_shadow/<class>/<class>_hooks.*).
class ClassHooks {
 public:
  virtual ~ClassHooks() = default;
  virtual config::DeviceClass cls() const = 0;
  virtual size_t pool_pages() const = 0;  // pages of one connection
  virtual size_t log_slots() const = 0;   // splitter-log slots
  // Called once by the engine it belongs to, before setup().
  void bind(DeviceEngine& e) { engine_ = &e; }

  // The class's resources, made before any driver domain starts (vif: the
  // network topology and NIC; vsnd: the DAC; vbd: the disk). A class whose
  // frontend shadowd starts itself (vif: sd-netfront) returns its channel;
  // otherwise frontends connect to socket_path().
  virtual Result<std::optional<ctl::Channel>> setup() = 0;
  virtual std::filesystem::path socket_path() const { return {}; }
  virtual void teardown() {}

  // The frontend's kDevAttach payload.
  virtual void frontend_payload(ctl::Msg&) const {}
  // A frontend connected (before it is offered anything), mapped everything,
  // went away.
  virtual void frontend_connected() {}
  virtual Result<void> frontend_ready() { return {}; }
  virtual void frontend_gone() {}
  // kDevConfig from the frontend (untrusted): true when it checks out and
  // goes on to a serving backend.
  virtual bool frontend_config(const ctl::Msg&) { return false; }

  // A backend's kDevAttach / kDevGo payload: the state to replay (from the
  // splitter log where it checks out), and the class's resources for it.
  virtual void backend_payload(ctl::Msg& m) const = 0;
  virtual platform::BackendResources backend_resources() const = 0;
  // Nodes published with the device where the platform publishes it (vif: mac).
  virtual std::map<std::string, std::string> published_nodes() const { return {}; }
  // Whether a warm standby is pre-attached (pages mapped, rings untouched
  // until kDevGo).
  virtual bool pre_attaches_standby() const { return false; }

  // The failed backend is dead for sure.
  virtual void backend_dead() {}
  // Active mode: empty for "queue" (requests wait in the ring, nothing to
  // answer); otherwise what the splitter is told when it repairs its ring
  // for shadowd ("drop", "active"), after which start_active() serves it.
  virtual std::string active_mode() const { return {}; }
  virtual void start_active() {}
  virtual void stop_active() {}

  // Whether `ring` has a request waiting that may take the device's own time
  // (vbd: a flush or barrier): ring_progress's fast rule then waits.
  virtual bool may_wait_long(uint16_t /*ring*/) const { return false; }
  // Progress watchdog, each watchdog interval: a stuck backend, if any.
  // `serving`: a backend serves the frontend's ring (with the splitter log
  // on). A ring of requests asks the engine's ring_progress().
  virtual std::optional<Stall> progress(bool serving) = 0;
  virtual nlohmann::json status() const = 0;

 protected:
  DeviceEngine& engine() const { return *engine_; }

 private:
  DeviceEngine* engine_ = nullptr;
};

// Where the beam splitter sits: the side that copies every request into
// the splitter log, stops taking responses from a failing backend, repairs
// its ring for a new one and replays what is in flight. FrontendSplitter
// (frontend_link.hpp) is the guest's own frontend over a control channel.
class Splitter {
 public:
  // What the splitter reports to its engine.
  class Events {
   public:
    virtual ~Events() = default;
    virtual ctl::Msg frontend_attach() = 0;         // kDevAttach for a new frontend
    virtual void on_frontend_connected() = 0;       // before it is offered anything
    virtual Result<void> on_frontend_ready() = 0;   // it mapped everything
    virtual void on_repaired(uint32_t replayed, const std::string& mode) = 0;
    virtual void on_repair_failed(const Error& e) = 0;  // the frontend could not give a backend its ring
    virtual void on_bad_response(const std::string& what) = 0;
    virtual void on_config(const ctl::Msg& m) = 0;
    virtual void on_frontend_gone(const std::string& why) = 0;
  };
  virtual ~Splitter() = default;
  // spawned: a frontend shadowd started itself, offered its end now and
  // waited for (bounded); otherwise frontends are awaited.
  virtual Result<void> start(Events& ev, std::optional<ctl::Channel> spawned) = 0;
  virtual void stop() = 0;
  // A frontend is connected and has mapped everything.
  virtual bool ready() const = 0;
  // Stop taking responses: the backend is failing.
  virtual void backend_gone() = 0;
  // Repair the ring (keep what the dead backend finished, reset, requeue
  // in-flight requests in order) for `mode`: "attach" (new backend `domid`)
  // or the class's active mode; on_repaired() or on_repair_failed() follows.
  virtual Result<void> repair(const std::string& mode, platform::DomId domid) = 0;
  virtual const shadow::SplitterLog& log() const = 0;
  // A new backend takes the ring at `since_ns` (requests posted before are
  // no sample of its service time).
  virtual void backend_serving(uint64_t since_ns) = 0;
};

class DeviceEngine final : public DeviceImpl, private Splitter::Events {
 public:
  DeviceEngine(boost::asio::io_context& io, std::string guest, const config::DeviceSpec& spec, uint64_t handle,
               config::Policy policy, EventLog& log, FaultReporter report,
               std::unique_ptr<platform::DevicePlumbing> plumbing, std::unique_ptr<Splitter> splitter,
               std::unique_ptr<ClassHooks> hooks);
  ~DeviceEngine() override;

  // DeviceImpl: what the daemon and the supervisor call.
  Result<void> setup() override;
  void on_fault() override;
  void on_backend_dead() override;
  void on_backend_ready(ctl::Channel& ch, platform::DomId domid, Done done) override;
  void on_backend_msg(platform::DomId from, const ctl::Msg& m) override;
  void on_standby_ready(ctl::Channel& ch, platform::DomId domid) override;
  void teardown() override;
  nlohmann::json status() const override;

  // For the class hooks.
  boost::asio::io_context& io() { return io_; }
  const std::string& id() const { return id_; }
  const config::DeviceSpec& spec() const { return spec_; }
  uint64_t handle() const { return handle_; }
  const config::Policy& policy() const { return policy_; }
  EventLog& events() { return log_; }
  platform::DevicePlumbing& plumbing() { return *plumbing_; }
  const shadow::SplitterLog& splitter_log() const { return splitter_->log(); }
  // The progress watchdog of a ring of requests (vif tx, vbd): stuck when
  // requests have waited with no response for max(no_progress_min,
  // no_progress_multiple x its recent service time), unless the class says
  // one that may take long waits, or when one request is older than
  // progress_timeout; ages count from when the backend started serving or
  // the last report (one report per stall). `what` names the ring.
  std::optional<Stall> ring_progress(uint16_t ring, const char* what);
  bool backend_up() const { return backend_up_; }
  uint64_t up_since_ns() const { return up_since_ns_; }  // when the current backend began serving
  bool frontend_ready() const { return splitter_->ready(); }
  ClassHooks& hooks() { return *hooks_; }

 private:
  // Splitter::Events
  ctl::Msg frontend_attach() override;
  void on_frontend_connected() override;
  Result<void> on_frontend_ready() override;
  void on_repaired(uint32_t replayed, const std::string& mode) override;
  void on_repair_failed(const Error& e) override;
  void on_bad_response(const std::string& what) override;
  void on_config(const ctl::Msg& m) override;
  void on_frontend_gone(const std::string& why) override;

  ctl::Msg backend_attach(bool standby) const;
  void attach_backend();
  void start_active();
  void arm_watchdog();
  void finish(Result<ResumeTimes> r);

  boost::asio::io_context& io_;
  std::string guest_;
  config::DeviceSpec spec_;
  uint64_t handle_;
  std::string id_;
  config::Policy policy_;
  EventLog& log_;
  FaultReporter report_;
  // Destroyed in reverse: the hooks and the splitter before the plumbing they use.
  std::unique_ptr<platform::DevicePlumbing> plumbing_;
  std::unique_ptr<Splitter> splitter_;
  std::unique_ptr<ClassHooks> hooks_;
  boost::asio::steady_timer watchdog_;

  ctl::Channel* backend_ = nullptr;  // the incarnation being attached or serving
  platform::DomId domid_ = 0;
  bool backend_up_ = false;      // it serves the ring
  bool backend_dead_ = false;    // the failed one is gone and no new one has taken over
  bool front_attached_ = false;  // some backend (or shadowd) took the frontend's ring
  bool active_ = false;          // shadowd serves the ring (active mode)
  uint64_t up_since_ns_ = 0;
  uint64_t stall_reported_ns_ = 0;  // ring_progress's last report
  std::optional<platform::DomId> standby_domid_;  // pre-attached warm standby
  bool standby_mapped_ = false;
  bool promoted_ = false;  // the backend being attached is a pre-attached standby
  Done done_;
  platform::Clock::time_point t_ready_{}, t_replayed_{};
  ResumeTimes times_{};
  uint64_t recoveries_ = 0, replayed_total_ = 0, bad_responses_ = 0, frontends_ = 0;
  size_t inflight_at_death_ = 0;
  std::string last_fault_;
  // Handlers posted to the io_context hold a weak reference: after
  // destruction they do nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// The engine for one guest device: the class's `hooks`, the platform's
// plumbing for it, the splitter in the guest's frontend. Errors name the
// device (a guest not running on Xen, a class the platform does not serve).
Result<std::unique_ptr<DeviceEngine>> make_device_engine(boost::asio::io_context& io, platform::Platform& plat,
                                                         const std::string& guest, const config::DeviceSpec& spec,
                                                         uint64_t handle, const config::Policy& policy, EventLog& log,
                                                         FaultReporter report, std::unique_ptr<ClassHooks> hooks);

}  // namespace sd::dom0
