// A guest frontend's side of its control channel to shadowd, the one
// skeleton sd-netfront, the ALSA plugin and sd-blkfront are built on. A
// device class keeps its rings; the link does the rest of the protocol
// (sd/core/control_channel.hpp):
//
//  shadowd sends                  | the link                                  | answer
//  -------------------------------+-------------------------------------------+------------------------
//  kDevAttach (log, evtchn fds)   | maps the splitter log, keeps the ends     |
//  kGrantFds (pool pages)         | maps each page at its ref, side by side   |
//   ... attach whole              | Hooks::attached (the class's rings)       | kDevAttached (a = 0)
//   ... any step fails            |                                           | kDevAttached (a = errno)
//  kDevAttached a != 0 (busy)     | the blocking attach fails with the reason |
//  kBackendGone                   | paused: the class stops consuming         |
//  kReconnect (text = mode)       | Hooks::repair (keep what is done, reset,  | kReconnected (a = replayed,
//                                 |  requeue from the log), connected again,  |  text = mode echoed)
//                                 |  Hooks::resumed                           |
//  kShutdown, or the channel ends | gone: pump() fails from now on            |
//
// and the class says kDevFault (a backend broke the protocol; paused too)
// and kDevConfig (the guest changed the device's config) through it. Every
// class consumes responses only while connected().
//
// Xen (sd-netfront --xen, pool_pages = 0): the frontend grants its pool
// itself, one per backend domain, and keeps its own splitter log. The
// attach then carries nothing and is answered by the first kReconnected
// (kReconnect's a = the new backend's domid), whose payload is the new
// pool (Repair::xen_pool); a pool that cannot be granted is refused with
// kDevAttached (a = EIO).
//
// Not thread-safe: one owner (sd-blkfront calls it under its lock).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sd/core/control_channel.hpp"
#include "sd/core/error.hpp"
#include "sd/core/fd.hpp"
#include "sd/core/splitter_log.hpp"

namespace sd::front {

class FrontendLink {
 public:
  static constexpr size_t kPageSize = 4096;

  struct Spec {
    std::string what;         // "vif", "vsnd", "vbd": names the device in messages
    uint32_t log_slots = 0;   // in-flight slots of the splitter log
    uint32_t pool_pages = 0;  // pages shadowd sends; 0: the frontend grants its own pool (Xen)
  };

  // What a kReconnect repaired.
  struct Repair {
    uint32_t replayed = 0;                  // requests requeued for the next backend
    std::optional<ctl::XenPool> xen_pool;   // Xen: the pool granted to it (sent instead of the mode)
  };

  // The device class's part, called as shadowd's messages arrive.
  class Hooks {
   public:
    virtual ~Hooks() = default;
    // The attach is whole (pool mapped: page(); payload: attach_msg()): set
    // the rings up. An error refuses the attach.
    virtual Result<void> attached(FrontendLink& link) = 0;
    // kReconnect: the old backend is dead for sure. Keep what it finished,
    // then leave a clean ring holding exactly the requests still in flight,
    // in their order (xen-blkfront's blkif_recover). m.get_text() is the
    // mode ("attach", or the class's active mode); Xen: m.a = new domid.
    virtual Result<Repair> repair(const ctl::Msg& m) = 0;
    // After kReconnected went out (e.g. kick the next backend).
    virtual void resumed() {}
  };

  FrontendLink(ctl::Channel ch, Spec spec);
  ~FrontendLink();
  FrontendLink(const FrontendLink&) = delete;
  FrontendLink& operator=(const FrontendLink&) = delete;

  // Waits for the whole attach (vsnd, vbd: the program cannot run without
  // it), at most `limit`. Any other message meanwhile is dispatched.
  Result<void> wait_attached(Hooks& h, std::chrono::milliseconds limit);
  // Takes every message ready without blocking, attach included (vif
  // attaches while it serves). Fails when shadowd is gone (the channel
  // failed or closed, or kShutdown): nothing will answer any more.
  Result<void> pump(Hooks& h);

  int fd() const { return ch_.fd(); }
  bool attached() const { return attached_; }
  // Consuming responses: attached (Xen: repaired once) and neither paused
  // by kBackendGone nor by a fault since the last repair.
  bool connected() const { return connected_; }
  // shadowd is gone: nothing will answer any more.
  bool gone() const { return gone_; }
  uint64_t handle() const { return handle_; }
  const ctl::Msg& attach_msg() const { return attach_msg_; }
  shadow::SplitterLog& log() { return log_; }

  // The pool page at `ref`, mapped; pages lie side by side in ref order, so
  // a run of refs is one piece of memory. Valid while the link lives.
  uint8_t* page(uint32_t ref) const { return pool_ + size_t{ref} * kPageSize; }
  // The event channel's ends from the attach: notify the backend, and the
  // fd that is readable when it notified.
  void kick();
  void clear_kicks();  // consumes the backend's pending notifications
  int wait_fd() const { return from_back_.get(); }
  // Hands the ends over (sd-netfront keeps them as a platform EventChannel).
  UniqueFd take_notify_fd() { return std::move(to_back_); }
  UniqueFd take_wait_fd() { return std::move(from_back_); }

  // To shadowd.
  void fault(const std::string& why);  // kDevFault: the backend broke the protocol; pauses
  template <class P>
  void config(const P& payload) {      // kDevConfig: the guest changed the device
    ctl::Msg m{.type = ctl::MsgType::kDevConfig, .b = handle_};
    m.set_payload(payload);
    (void)ch_.send(m);
  }

 private:
  // Result: the attach failed (refused, the reason returned); otherwise handled.
  Result<void> dispatch(Hooks& h, const ctl::Msg& m, std::vector<UniqueFd>& fds);
  Result<void> on_attach(const ctl::Msg& m, std::vector<UniqueFd>& fds);
  Result<void> on_grants(const ctl::Msg& m, std::vector<UniqueFd>& fds);
  Result<void> finish_attach(Hooks& h);
  void reconnect(Hooks& h, const ctl::Msg& m);
  Result<void> refuse(int err, const Error& why);
  void answer(ctl::MsgType t, uint32_t a, const std::string& text);

  ctl::Channel ch_;
  Spec spec_;
  ctl::Msg attach_msg_{};
  uint64_t handle_ = 0;
  bool got_attach_ = false;
  bool attached_ = false;
  bool refused_ = false;
  bool connected_ = false;
  bool gone_ = false;
  shadow::SplitterLog log_;
  UniqueFd to_back_, from_back_;
  uint8_t* pool_ = nullptr;  // pool_pages pages, reserved at the attach
  std::vector<uint8_t> mapped_;
  size_t got_pages_ = 0;
};

// A frontend that reaches shadowd at the device's unix socket in its
// state_dir (vsnd, vbd): connects, then F::attach(channel). `what` names
// the device class in errors.
template <class F>
Result<std::unique_ptr<F>> connect_frontend(const std::string& socket_path, const std::string& what) {
  auto ch = ctl::Channel::connect(socket_path, what);
  if (!ch) return std::unexpected(ch.error());
  return F::attach(std::move(*ch));
}

}  // namespace sd::front
