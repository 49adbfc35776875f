// A device connection on the local platform: the pool is one sealed memfd
// (a backend receives it only once every page is granted to it), the event
// channel is a pair of eventfds, and both travel over the control channel
// with SCM_RIGHTS.
#include <optional>
#include <vector>

#include "local/local_platform.hpp"

namespace sd::local {

namespace {

// The pool in one kGrantFds message (first ref 0, one fd for every page).
// owner: the guest's frontend (its own memory); otherwise `peer`, to whom
// every page must be granted.
Result<void> send_pool(ctl::Channel& ch, const LocalGrantPool& pool, uint64_t handle,
                       std::optional<platform::DomId> peer) {
  UniqueFd held;
  if (peer) {
    auto fd = pool.fd_for_peer(*peer);
    if (!fd) return std::unexpected(fd.error());
    held = std::move(*fd);
  }
  ctl::Msg m;
  m.type = ctl::MsgType::kGrantFds;
  m.a = 0;
  m.b = handle;
  return ch.send(m, peer ? held.get() : pool.owner_fd());
}

}  // namespace

LocalDevicePlumbing::LocalDevicePlumbing(std::unique_ptr<LocalGrantPool> pool, std::unique_ptr<LocalEventChannel> front,
                                         std::unique_ptr<LocalEventChannel> back)
    : pool_(std::move(pool)), front_(std::move(front)), back_(std::move(back)) {}

Result<void> LocalDevicePlumbing::offer_frontend(ctl::Channel& ch, const ctl::Msg& attach, int splitter_log_fd) {
  int fds[3] = {splitter_log_fd, front_->notify_fd(), front_->wait_fd()};
  if (auto r = ch.send_fds(attach, fds, 3); !r) return r;
  (void)front_->consume();  // a new frontend starts with no stale kicks
  (void)back_->consume();
  return send_pool(ch, *pool_, attach.b, std::nullopt);
}

Result<void> LocalDevicePlumbing::grant_to(const std::vector<platform::DomId>& peers) {
  for (uint32_t ref = 0; ref < pool_->pages(); ++ref) {
    if (auto r = pool_->revoke(ref); !r) return r;
    for (auto p : peers)
      if (auto r = pool_->grant(ref, p, false); !r) return r;
  }
  return {};
}

Result<void> LocalDevicePlumbing::offer_backend(ctl::Channel& ch, platform::DomId peer, const ctl::Msg& attach,
                                                const platform::BackendResources& resources) {
  // Order the runtime relies on: [0] notify the frontend, [1] its kicks, then the class's resources.
  std::vector<int> fds{back_->notify_fd(), back_->wait_fd()};
  fds.insert(fds.end(), resources.fds.begin(), resources.fds.end());
  if (auto r = ch.send_fds(attach, fds.data(), fds.size()); !r) return r;
  return send_pool(ch, *pool_, attach.b, peer);
}

Result<std::unique_ptr<platform::DevicePlumbing>> LocalPlatform::make_device_plumbing(const platform::DeviceInfo& dev) {
  auto pool = LocalGrantPool::create(dev.pages);
  if (!pool) return std::unexpected(pool.error());
  auto evt = make_local_event_channel();
  if (!evt) return std::unexpected(evt.error());
  return std::unique_ptr<platform::DevicePlumbing>(
      std::make_unique<LocalDevicePlumbing>(std::move(*pool), std::move(evt->first), std::move(evt->second)));
}

}  // namespace sd::local
