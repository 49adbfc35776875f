#include "xen/osevent.hpp"

#include <sys/time.h>

#include <chrono>
#include <cstdio>

namespace sd::xen {

const libxl_osevent_hooks LibxlOsEvents::kHooks = {
    &LibxlOsEvents::fd_register,      &LibxlOsEvents::fd_modify,      &LibxlOsEvents::fd_deregister,
    &LibxlOsEvents::timeout_register, &LibxlOsEvents::timeout_modify, &LibxlOsEvents::timeout_deregister,
};

LibxlOsEvents::~LibxlOsEvents() {
  ctx_ = nullptr;
  fds_.clear();
  timeouts_.clear();  // destroying a timer cancels its wait
}

void LibxlOsEvents::attach(libxl_ctx* ctx) {
  ctx_ = ctx;
  libxl_osevent_register_hooks(ctx, &kHooks, this);
}

// ---- file descriptors ----------------------------------------------------

int LibxlOsEvents::fd_register(void* user, int fd, void** reg_out, short events, void* for_libxl) {
  auto* self = static_cast<LibxlOsEvents*>(user);
  auto reg = std::make_unique<FdReg>();
  FdReg* raw = reg.get();
  raw->fd = fd;
  raw->events = events;
  raw->for_libxl = for_libxl;
  auto w = FdWatcher::create(self->io_, fd, events, [self, raw](short revents) {
    if (!self->ctx_) return;
    // libxl may deregister (free) this registration inside the call.
    int fd = raw->fd;
    short events = raw->events;
    void* for_libxl = raw->for_libxl;
    libxl_osevent_occurred_fd(self->ctx_, for_libxl, fd, events, revents);
  });
  if (!w) {
    std::fprintf(stderr, "shadowd: xen: cannot watch libxl fd %d: %s\n", fd, w.error().message.c_str());
    return ERROR_OSEVENT_REG_FAIL;
  }
  raw->watcher = std::move(*w);
  self->fds_.emplace(raw, std::move(reg));
  *reg_out = raw;
  return 0;
}

int LibxlOsEvents::fd_modify(void* user, int, void** reg_update, short events) {
  auto* self = static_cast<LibxlOsEvents*>(user);
  auto it = self->fds_.find(static_cast<FdReg*>(*reg_update));
  if (it == self->fds_.end()) return ERROR_OSEVENT_REG_FAIL;
  it->second->events = events;
  it->second->watcher->set_events(events);
  return 0;
}

void LibxlOsEvents::fd_deregister(void* user, int, void* reg) {
  auto* self = static_cast<LibxlOsEvents*>(user);
  self->fds_.erase(static_cast<FdReg*>(reg));
}

// ---- timeouts ------------------------------------------------------------

int LibxlOsEvents::timeout_register(void* user, void** reg_out, struct timeval abs, void* for_libxl) {
  auto* self = static_cast<LibxlOsEvents*>(user);
  auto reg = std::make_unique<TimeoutReg>();
  TimeoutReg* raw = reg.get();
  raw->for_libxl = for_libxl;
  raw->timer = std::make_unique<boost::asio::steady_timer>(self->io_);
  self->timeouts_.emplace(raw, std::move(reg));
  self->arm_timeout(raw, abs);
  *reg_out = raw;
  return 0;
}

int LibxlOsEvents::timeout_modify(void* user, void** reg_update, struct timeval abs) {
  auto* self = static_cast<LibxlOsEvents*>(user);
  auto* reg = static_cast<TimeoutReg*>(*reg_update);
  if (!self->timeouts_.count(reg)) return ERROR_OSEVENT_REG_FAIL;
  self->arm_timeout(reg, abs);
  return 0;
}

void LibxlOsEvents::timeout_deregister(void* user, void* reg) {
  // libxl documents that it never calls this; handled anyway.
  static_cast<LibxlOsEvents*>(user)->timeouts_.erase(static_cast<TimeoutReg*>(reg));
}

// abs is wall-clock time (gettimeofday); {0,0} means "as soon as possible".
// A steady timer keeps the delay right if the wall clock jumps meanwhile.
void LibxlOsEvents::arm_timeout(TimeoutReg* reg, struct timeval abs) {
  timeval now{};
  ::gettimeofday(&now, nullptr);
  auto delay = std::chrono::seconds(abs.tv_sec - now.tv_sec) + std::chrono::microseconds(abs.tv_usec - now.tv_usec);
  if (delay < decltype(delay)::zero()) delay = decltype(delay)::zero();
  // A new generation: a completion of the previous arming that is already
  // queued (the race libxl_event.h warns about) is ignored, so it fires once.
  uint64_t gen = reg->gen = next_gen_++;
  reg->timer->expires_after(delay);
  reg->timer->async_wait([this, reg, gen](const boost::system::error_code& ec) {
    if (!ec) timeout_fired(reg, gen);
  });
}

void LibxlOsEvents::timeout_fired(TimeoutReg* reg, uint64_t gen) {
  auto it = timeouts_.find(reg);
  if (it == timeouts_.end() || it->second->gen != gen) return;
  void* for_libxl = reg->for_libxl;
  timeouts_.erase(it);  // occurred = deregistered (libxl_event.h)
  if (ctx_) libxl_osevent_occurred_timeout(ctx_, for_libxl);
}

}  // namespace sd::xen
