// shadowd's side of one vbd (local platform): owns the disk (the image or
// block device named by the guest's `disk = [ '...target=...' ]`, opened
// here once and handed to every backend incarnation: the device outlives its
// driver), the guest's granted
// pool, the event channels and the splitter log, and listens on
// <state_dir>/<guest>-vbd-<n>.sock for the guest's frontend (sd-blkfront).
//
// Active mode is `queue`: while no backend runs, the guest's requests wait
// in the ring (the frontend keeps at most the policy's queue_limit in flight,
// and never more than the ring holds; past that its callers block, they never
// fail). Recovery: the frontend repairs its ring and resubmits its in-flight
// requests in submission order (blk_shadow), then the new backend is attached
// with the disk state from the log and the same disk fd.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <filesystem>
#include <memory>
#include <string>

#include "device_impl.hpp"
#include "event_log.hpp"
#include "sd/config/policy.hpp"
#include "sd/config/xl_cfg.hpp"
#include "sd/core/blkif.hpp"
#include "sd/core/fd.hpp"
#include "sd/core/splitter_log.hpp"

namespace sd::dom0 {

class VbdShadow final : public DeviceImpl {
 public:
  VbdShadow(boost::asio::io_context& io, platform::Platform& plat, std::string guest, const config::DeviceSpec& spec,
            uint64_t handle, std::filesystem::path state_dir, config::Policy policy, EventLog& log,
            FaultReporter report);
  ~VbdShadow() override;

  Result<void> setup() override;
  void on_fault() override;
  void on_backend_dead() override;
  void on_backend_ready(ctl::Channel& ch, platform::DomId domid, Done done) override;
  void on_backend_msg(platform::DomId from, const ctl::Msg& m) override;
  void on_standby_ready(ctl::Channel&, platform::DomId) override {}  // a cold attach is all vbd needs
  void teardown() override;
  nlohmann::json status() const override;

  const std::filesystem::path& socket_path() const { return socket_; }

  // Opens the disk named by `target` as shadowd does and describes it.
  // As xl: through the host's page cache (a disk with a volatile write
  // cache: the guest's FLUSH_DISKCACHE makes it durable, and it survives any
  // driver crash, being the host's), or with `direct_io` (the disk spec's
  // `direct-io-safe` flag) O_DIRECT where the file system takes it.
  // Errors name the file and the fix.
  static Result<std::pair<UniqueFd, blkif::DiskState>> open_disk(const std::string& target, bool readonly,
                                                                 uint32_t queue_limit, bool direct_io);

 private:
  std::string id() const;
  void arm_accept();
  void accept_frontend();
  void arm_frontend_read();
  void on_frontend_msg(const ctl::Msg& m);
  void frontend_gone(const std::string& why);
  blkif::DiskState replay_state() const;
  void attach_backend();
  void watchdog_tick();
  void finish(Result<ResumeTimes> r);

  boost::asio::io_context& io_;
  platform::Platform& plat_;
  std::string guest_;
  config::DeviceSpec spec_;
  uint64_t handle_;
  std::filesystem::path state_dir_, socket_;
  config::Policy policy_;
  EventLog& log_;
  FaultReporter report_;

  UniqueFd disk_;
  blkif::DiskState disk_state_{};
  std::string target_;
  std::unique_ptr<platform::GrantPool> pool_;
  std::unique_ptr<platform::EventChannel> front_evt_, back_evt_;
  shadow::SplitterLog shadow_;
  UniqueFd listen_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> listen_wait_;
  ctl::Channel front_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> front_wait_;
  bool front_ready_ = false;     // the frontend mapped everything
  bool front_attached_ = false;  // some backend took this frontend's ring
  uint64_t connections_ = 0;
  boost::asio::steady_timer watchdog_;

  ctl::Channel* backend_ = nullptr;
  platform::DomId domid_ = 0;
  bool backend_up_ = false;
  uint64_t up_since_ns_ = 0;  // when the current backend started serving (watchdog ages count from here)
  Done done_;
  platform::Clock::time_point t_ready_{}, t_replayed_{};
  ResumeTimes times_{};
  uint64_t recoveries_ = 0, replayed_total_ = 0, bad_responses_ = 0;
  size_t queued_at_death_ = 0;
  std::string last_fault_;
};

}  // namespace sd::dom0
