// The beam splitter in the guest's frontend (today's placement on the
// local platform): sd-netfront, the ALSA plugin or sd-blkfront copies every
// request into the splitter log and talks to shadowd over a control
// channel. Either shadowd starts the frontend itself and hands it its end
// (vif), or frontends connect to the device's unix socket in shadowd's
// state_dir (vsnd, vbd), one at a time; a second is refused; or the
// platform reaches it (Xen: the guest runs it and offers a vchan).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "device_engine.hpp"
#include "sd/core/control_channel.hpp"
#include "sd/core/platform.hpp"
#include "sd/core/splitter_log.hpp"

namespace sd::dom0 {

class FrontendSplitter final : public Splitter {
 public:
  // `what` names the device in messages ("the vbd guest1/vbd/0");
  // `socket` is where frontends connect (unused for a spawned frontend).
  FrontendSplitter(boost::asio::io_context& io, platform::DevicePlumbing& plumbing, std::string what,
                   uint64_t handle, size_t log_slots, std::filesystem::path socket);
  ~FrontendSplitter() override;

  Result<void> start(Events& ev, std::optional<ctl::Channel> spawned) override;
  void stop() override;
  bool ready() const override { return ready_; }
  void backend_gone() override;
  Result<void> repair(const std::string& mode, platform::DomId domid) override;
  const shadow::SplitterLog& log() const override { return log_; }
  void backend_serving(uint64_t since_ns) override {
    if (log_.valid()) log_.set_serving_since(since_ns);
  }

 private:
  Result<void> offer(ctl::Channel ch);
  void arm_accept();
  void accept();
  void arm_read();
  void on_msg(const ctl::Msg& m);
  void gone(const std::string& why);

  boost::asio::io_context& io_;
  platform::DevicePlumbing& plumbing_;
  std::string what_;
  uint64_t handle_;
  size_t log_slots_;
  std::filesystem::path socket_;
  Events* ev_ = nullptr;
  shadow::SplitterLog log_;
  UniqueFd listen_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> listen_wait_;
  ctl::Channel front_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> front_wait_;
  bool ready_ = false;
};

// A nonblocking SOCK_SEQPACKET unix socket listening at `path` (mode 0660;
// a file left there by an unclean stop is replaced). `what` names the device
// in errors.
Result<UniqueFd> listen_frontend_socket(const std::filesystem::path& path, const std::string& what);

// A frontend's splitter log with `slots` in-flight slots; SD_SPLITTER_LOG=off
// disables it (benchmarks compare the log on and off in one run).
Result<shadow::SplitterLog> new_splitter_log(size_t slots);

}  // namespace sd::dom0
