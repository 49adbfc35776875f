// shadowd's side of one vsnd (local platform): owns the virtual DAC (the
// sound hardware, which outlives driver domains), the guest's granted pool,
// the event channels and the splitter log, and listens on a unix socket for
// the guest's frontend (the ALSA plugin in the player's process). It runs
// recovery: pause the frontend, answer the ring itself in active mode
// (writes acknowledged at the DAC's real-time pace, position events
// synthesised) while no backend runs, let the frontend replay its in-flight
// requests into a fresh ring, then attach the new backend with the stream
// state from the log (OPEN parameters, volume, mute, trigger, position).
//
// Active mode acknowledges a write only once the DAC has played as much
// silence as the write holds audio: the DAC first plays out what the dead
// backend left in its FIFO, so an outage shorter than that FIFO (two or
// three periods, sndif::dac_fifo) is not heard at all, and a longer one
// costs no more than its length.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "device_impl.hpp"
#include "event_log.hpp"
#include "sd/config/policy.hpp"
#include "sd/config/xl_cfg.hpp"
#include "sd/core/ring.hpp"
#include "sd/core/sndif.hpp"
#include "sd/core/splitter_log.hpp"
#include "vsnd/dac.hpp"

namespace sd::dom0 {

class VsndShadow final : public DeviceImpl {
 public:
  VsndShadow(boost::asio::io_context& io, platform::Platform& plat, std::string guest, const config::DeviceSpec& spec,
             uint64_t handle, std::filesystem::path state_dir, config::Policy policy, EventLog& log,
             FaultReporter report);
  ~VsndShadow() override;

  Result<void> setup() override;
  void on_fault() override;
  void on_backend_dead() override;
  void on_backend_ready(ctl::Channel& ch, platform::DomId domid, Done done) override;
  void on_backend_msg(platform::DomId from, const ctl::Msg& m) override;
  void on_standby_ready(ctl::Channel&, platform::DomId) override {}  // a cold attach is all vsnd needs
  void teardown() override;
  nlohmann::json status() const override;

  const std::filesystem::path& socket_path() const { return socket_; }

 private:
  std::string id() const;
  void arm_accept();
  void accept_frontend();
  void arm_frontend_read();
  void on_frontend_msg(const ctl::Msg& m);
  void frontend_gone(const std::string& why);
  Result<void> send_pool(ctl::Channel& ch, platform::DomId peer, bool owner);
  sndif::StreamState replay_state() const;
  void attach_backend();
  void watchdog_tick();
  // Active mode.
  void start_active();
  void stop_active();
  void arm_active();
  void active_tick();
  void active_position();
  void active_respond(const xensnd_req& r, int32_t status);
  int32_t active_control(const xensnd_req& r);
  void finish(Result<ResumeTimes> r);

  boost::asio::io_context& io_;
  platform::Platform& plat_;
  std::string guest_;
  config::DeviceSpec spec_;
  uint64_t handle_;
  std::filesystem::path state_dir_, socket_, wav_;
  config::Policy policy_;
  EventLog& log_;
  FaultReporter report_;

  std::unique_ptr<Dac> dac_;
  std::unique_ptr<platform::GrantPool> pool_;
  std::unique_ptr<platform::EventChannel> front_evt_, back_evt_;
  shadow::SplitterLog shadow_;
  UniqueFd listen_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> listen_wait_;
  ctl::Channel front_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> front_wait_;
  bool front_ready_ = false;     // the frontend mapped everything
  bool front_attached_ = false;  // some backend (or active mode) took this frontend's ring
  uint64_t streams_ = 0;
  boost::asio::steady_timer watchdog_;
  uint64_t last_starved_ = 0;
  int64_t starving_ms_ = 0;

  ctl::Channel* backend_ = nullptr;
  platform::DomId domid_ = 0;
  bool backend_up_ = false;
  bool backend_dead_ = false;
  Done done_;
  platform::Clock::time_point t_ready_{}, t_replayed_{};
  ResumeTimes times_{};
  uint64_t recoveries_ = 0;
  std::string last_fault_;

  // Active mode: shadowd serves the ring.
  std::optional<ring::BackRing<sndif::Traits>> active_ring_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> active_wait_;
  std::deque<xensnd_req> active_queue_;
  sndif::StreamState ast_{};
  uint64_t starved0_ = 0, discarded_ = 0, active_last_pos_ = 0;
  uint64_t active_writes_ = 0, active_bytes_ = 0;
  uint16_t evt_id_ = 0;
  bool active_last_pos_changed_ = false;
};

}  // namespace sd::dom0
