// Supervises one driver domain across its incarnations: starts it, watches
// it (death via the platform, hangs via heartbeats over the control channel,
// protocol garbage), restarts it per policy (budget + backoff) or fences it.
//
//  state       | event                              | action                         | next
//  ------------+------------------------------------+--------------------------------+-----------
//  Starting    | Ready on the control channel       | record death-to-ready time     | Running
//  Starting    | no Ready within the start timeout  | kill (cause: start timeout)    | Starting*
//  Running     | heartbeat answer missing too long  | kill (cause: hang)             | Running*
//  Running     | malformed control message          | kill (cause: bad message)      | Running*
//  Starting,   | death reported by the platform     | budget left: wait backoff      | Backoff
//   Running    |                                    | budget spent: stop restarting  | Fenced
//  Backoff     | backoff timer                      | create a new incarnation       | Starting
//  any         | operator restart                   | kill if alive, create now      | Starting
//  any         | stop                               | shut down, kill, forget        | Stopped
//  (* the death report that follows the kill moves the state on)
//
// With `standby: true` in the policy a second incarnation is kept started
// and Ready beside the running one (the seed's "hot backup"); the devices
// pre-attach it (pages mapped, rings not yet taken). When the running one
// dies, the standby is promoted at once instead of a cold start, and a new
// standby is started once the recovery is over. `zygote: true` keeps the
// same spare without the devices: promoted, it is attached as a new
// incarnation would be, but nothing is spawned on the recovery path. A spare
// runs behind all other work (lower priority) until it is promoted.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "event_log.hpp"
#include "sd/config/policy.hpp"
#include "sd/config/xl_cfg.hpp"
#include "sd/core/platform.hpp"

namespace sd::dom0 {

enum class DomainState { kStarting, kRunning, kBackoff, kFenced, kStopped };
std::string_view state_name(DomainState s);

// What the supervisor tells the devices it backs.
struct DomainHooks {
  std::function<void(platform::Clock::time_point fault_at)> on_fault;  // backend gone or misbehaving
  std::function<void()> on_dead;                                       // the failed incarnation is gone for sure
  std::function<void()> on_ready;                                      // a new incarnation is ready
  std::function<void()> on_fenced;                                     // no more restarts
  std::function<void(platform::DomId, const ctl::Msg&)> on_device_msg; // kDevAttached / kDevFault from drvdom
  // A warm standby incarnation is Ready: devices may pre-attach it.
  std::function<void(ctl::Channel&, platform::DomId)> on_standby_ready;
};

class Supervisor {
 public:
  using Clock = platform::Clock;
  Supervisor(boost::asio::io_context& io, platform::Platform& plat, config::DomainCfg cfg, config::Policy policy,
             EventLog& log, DomainHooks hooks);
  ~Supervisor();

  const std::string& name() const { return cfg_.name; }
  DomainState state() const { return state_; }
  std::optional<platform::DomId> domid() const { return active_ ? std::optional(active_->info.id) : std::nullopt; }

  Result<void> start();
  // Every device of the running incarnation serves (or gave up): only now
  // does a replacement warm standby start, so creating it never delays them.
  void devices_serving();
  // The control channel of the running incarnation (nullptr if none).
  ctl::Channel* channel() { return active_ ? &active_->ch : nullptr; }
  // A device detected that this backend is broken (bad response, stalled
  // ring): kill the incarnation; recovery follows its death.
  // `began`: when the fault started, if the detector knows (e.g. the age of
  // the oldest stuck request); detection time otherwise. An injected fault
  // keeps its injection time.
  void fault(const std::string& cause, std::optional<Clock::time_point> began = std::nullopt);
  // Injects a fault into the running incarnation: kill, segv, hang, sigsys,
  // stall, bad-id, bad-prod, bad-grant, garbage (one of the bad-* in turn).
  Result<void> inject(const std::string& kind);
  // Operator restart: kill if alive and start now, also out of Fenced.
  Result<void> restart_now();
  void stop();
  // Called by the daemon for every death report of this domain's incarnations.
  void on_death(const platform::DeathInfo& d);

  nlohmann::json status() const;

 private:
  // One driver-domain incarnation and its control channel.
  struct Inc {
    platform::DomainInfo info;
    ctl::Channel ch;
    std::unique_ptr<boost::asio::posix::stream_descriptor> wait;
    bool ready = false;
    bool standby = false;
    Clock::time_point spawned{}, last_pong{};
    std::string pending_cause;  // why shadowd killed it, if it did
    std::unique_ptr<boost::asio::steady_timer> eof_timer;  // control channel closed, death report pending
  };

  std::unique_ptr<Inc> spawn_inc(bool standby);
  void spawn();
  void spawn_standby();
  bool keeps_spare() const;  // standby or zygote: the standby_ slot is kept filled
  void arm_control_wait(Inc& inc);
  void on_control_readable(platform::DomId id);
  void on_inc_ready(Inc& inc);
  void heartbeat_tick();
  void kill_inc(Inc& inc, const std::string& cause);
  // After a death: fence (budget spent), promote the ready standby, spawn
  // now, or spawn after the backoff. Planned first, done by restart().
  enum class Restart { kFence, kPromote, kSpawn, kBackoff };
  Restart plan_restart();
  void restart(Restart r);
  Inc* find_inc(platform::DomId id);
  Clock::time_point fault_start(platform::DomId id, Clock::time_point fallback) const;

  boost::asio::io_context& io_;
  platform::Platform& plat_;
  config::DomainCfg cfg_;
  config::Policy policy_;
  EventLog& log_;
  DomainHooks hooks_;

  DomainState state_ = DomainState::kStopped;
  std::unique_ptr<Inc> active_;
  std::unique_ptr<Inc> standby_;
  boost::asio::steady_timer heartbeat_timer_;
  boost::asio::steady_timer restart_timer_;
  boost::asio::steady_timer standby_timer_;

  std::chrono::milliseconds check_period() const;
  uint64_t ping_seq_ = 0;
  Clock::time_point last_ping_{};
  Clock::time_point last_tick_{};  // when heartbeat_tick last ran
  Clock::time_point fault_at_{};  // first sign of the current fault (injection or detection)
  std::optional<Clock::time_point> died_at_;  // death detected, waiting for the next Ready

  struct Injected {
    Clock::time_point at;
    platform::DomId domid;
  };
  std::optional<Injected> injected_;  // the last fault injected, for the detect phase
  uint64_t garbage_turn_ = 0;
  uint64_t incarnations_ = 0;
  uint64_t restarts_ = 0;
  uint64_t promotions_ = 0;
  std::deque<Clock::time_point> restart_times_;  // inside the policy window
  std::string last_cause_;
  std::optional<double> last_death_to_ready_ms_;
  std::optional<Clock::time_point> recovering_since_;  // fault of the recovery in progress
  std::optional<double> last_fault_to_ready_ms_;
  std::optional<double> last_detect_ms_;
  std::optional<double> last_start_ms_;
};

}  // namespace sd::dom0
