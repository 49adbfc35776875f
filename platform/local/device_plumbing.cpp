// A device connection on the local platform: the pool and the event
// channel's ends travel over the control channel with SCM_RIGHTS.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "local/local_platform.hpp"

namespace sd::local {

Result<std::pair<std::unique_ptr<LocalEventChannel>, std::unique_ptr<LocalEventChannel>>> make_local_event_channel() {
  // One eventfd per direction: a->b and b->a.
  UniqueFd ab(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), ba(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!ab || !ba) return sys_fail("eventfd");
  UniqueFd ab2(::dup(ab.get())), ba2(::dup(ba.get()));
  if (!ab2 || !ba2) return sys_fail("dup eventfd");
  return std::make_pair(std::make_unique<LocalEventChannel>(std::move(ab), std::move(ba)),
                        std::make_unique<LocalEventChannel>(std::move(ba2), std::move(ab2)));
}

Result<std::unique_ptr<LocalDevicePlumbing>> LocalDevicePlumbing::create(size_t pages) {
  if (pages == 0 || pages > 65536) return fail(Code::kInvalidInput, "grant pool size must be 1..65536 pages");
  std::unique_ptr<LocalDevicePlumbing> p(new LocalDevicePlumbing());
  p->memfd_.reset(::memfd_create("sd-grant-pool", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!p->memfd_) return sys_fail("memfd_create");
  if (::ftruncate(p->memfd_.get(), static_cast<off_t>(pages * 4096)) != 0) return sys_fail("ftruncate grant pool");
  if (::fcntl(p->memfd_.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    return sys_fail("seal grant pool");
  void* m = ::mmap(nullptr, pages * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, p->memfd_.get(), 0);
  if (m == MAP_FAILED) return sys_fail("mmap grant pool");
  p->map_ = static_cast<uint8_t*>(m);
  p->pages_ = pages;
  auto evt = make_local_event_channel();
  if (!evt) return std::unexpected(evt.error());
  p->front_ = std::move(evt->first);
  p->back_ = std::move(evt->second);
  return p;
}

LocalDevicePlumbing::~LocalDevicePlumbing() {
  if (map_) ::munmap(map_, pages_ * 4096);
}

Result<UniqueFd> LocalDevicePlumbing::pool_fd_for(platform::DomId peer) const {
  if (std::find(peers_.begin(), peers_.end(), peer) == peers_.end())
    return fail(Code::kInvalidInput, "the pool is not granted to domain " + std::to_string(peer));
  UniqueFd fd(::fcntl(memfd_.get(), F_DUPFD_CLOEXEC, 0));
  if (!fd) return sys_fail("dup grant pool");
  return fd;
}

// The pool goes in one kGrantFds message (first ref 0, one fd holding every page).
Result<void> LocalDevicePlumbing::offer_frontend(ctl::Channel& ch, const ctl::Msg& attach, int splitter_log_fd) {
  int fds[3] = {splitter_log_fd, front_->notify_fd(), front_->wait_fd()};
  if (auto r = ch.send_fds(attach, fds, 3); !r) return r;
  (void)front_->consume();  // a new frontend starts with no stale kicks
  (void)back_->consume();
  ctl::Msg m{.type = ctl::MsgType::kGrantFds, .a = 0, .b = attach.b};
  return ch.send(m, memfd_.get());  // the guest's own memory
}

Result<void> LocalDevicePlumbing::offer_backend(ctl::Channel& ch, platform::DomId peer, const ctl::Msg& attach,
                                                const platform::BackendResources& resources) {
  // Order the runtime relies on: [0] notify the frontend, [1] its kicks, then the class's resources.
  std::vector<int> fds{back_->notify_fd(), back_->wait_fd()};
  fds.insert(fds.end(), resources.fds.begin(), resources.fds.end());
  if (auto r = ch.send_fds(attach, fds.data(), fds.size()); !r) return r;
  auto pool = pool_fd_for(peer);
  if (!pool) return std::unexpected(pool.error());
  ctl::Msg m{.type = ctl::MsgType::kGrantFds, .a = 0, .b = attach.b};
  return ch.send(m, pool->get());
}

Result<std::unique_ptr<platform::DevicePlumbing>> LocalPlatform::make_device_plumbing(const platform::DeviceInfo& dev) {
  if (dev.kernel_frontend)
    return fail(Code::kUnavailable, "guest_frontend: kernel (an unmodified guest's own driver) needs the xen "
                                    "platform; on the local platform the guest's frontend is the project's");
  auto p = LocalDevicePlumbing::create(dev.pages);
  if (!p) return std::unexpected(p.error());
  return std::unique_ptr<platform::DevicePlumbing>(std::move(*p));
}

}  // namespace sd::local
