// Level-triggered readiness of a file descriptor that a Xen library owns
// (libxl's event fds, libxenstore's watch fd), delivered on a Boost.Asio
// io_context with poll(2) semantics: the callback gets poll's revents and is
// called again while the fd stays ready.
//
// The fd is not ours, so the watcher waits on a dup of it and never closes
// the original. Asio's epoll reactor is edge-triggered; its wait operations
// re-arm with EPOLL_CTL_MOD, which reports a level that already holds, but
// the watcher does not rely on that: every (re)arm first polls the fd with a
// zero timeout and delivers at once if it is ready. Stopping (destruction) or
// changing the events from inside the callback is safe: a handler of an
// older arming never calls back.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>

#include "sd/core/error.hpp"

namespace sd::xen {

class FdWatcher {
 public:
  // revents as poll(2) reports them for the requested events (POLLHUP and
  // POLLERR included). Called on the io_context, never from inside create()
  // or set_events(); it may call set_events() or destroy the watcher.
  using ReadyFn = std::function<void(short revents)>;

  // Watches `fd` for `events` (POLLIN, POLLPRI, POLLOUT; 0 = paused). The fd
  // stays the caller's: the watcher waits on a dup of it. kSystem if dup or
  // the reactor registration fails.
  static Result<std::unique_ptr<FdWatcher>> create(boost::asio::io_context& io, int fd, short events,
                                                   ReadyFn on_ready);
  // Stops at once: a callback that was already queued never runs.
  ~FdWatcher();
  FdWatcher(const FdWatcher&) = delete;
  FdWatcher& operator=(const FdWatcher&) = delete;

  // Replaces the watched events; readiness of the new set that already holds
  // is delivered (asynchronously).
  void set_events(short events);

  struct State;  // shared with the pending Asio handlers

 private:
  explicit FdWatcher(std::shared_ptr<State> st) : st_(std::move(st)) {}
  std::shared_ptr<State> st_;
};

}  // namespace sd::xen
