// libxl's file descriptors and timeouts, driven by the caller's Boost.Asio
// io_context through libxl_osevent_register_hooks (libxl_event.h): no thread
// and no poll loop of our own.
//
//   fd_register / fd_modify / fd_deregister  -> one FdWatcher per registration
//                                               -> libxl_osevent_occurred_fd
//   timeout_register / timeout_modify        -> one steady_timer per registration
//                                               -> libxl_osevent_occurred_timeout
//
// libxl's rules, kept here: the occurred_* calls are only ever made from an
// Asio handler (never from inside a hook, i.e. never reentrantly); a timeout
// that occurred is deregistered implicitly; timeout_modify (always "now") may
// race with the timer firing and must then fire once.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <map>
#include <memory>

extern "C" {
#include <libxl.h>
#include <libxl_event.h>
}

#include "xen/fd_watcher.hpp"

namespace sd::xen {

class LibxlOsEvents {
 public:
  explicit LibxlOsEvents(boost::asio::io_context& io) : io_(io) {}
  // Drops whatever is still registered. Free the libxl_ctx first (it
  // deregisters its fds through the hooks).
  ~LibxlOsEvents();
  LibxlOsEvents(const LibxlOsEvents&) = delete;
  LibxlOsEvents& operator=(const LibxlOsEvents&) = delete;

  // Registers the hooks on `ctx`: once per ctx, right after libxl_ctx_alloc.
  void attach(libxl_ctx* ctx);
  // Stops calling into the ctx (call before libxl_ctx_free).
  void detach() { ctx_ = nullptr; }

  size_t fd_registrations() const { return fds_.size(); }
  size_t timeout_registrations() const { return timeouts_.size(); }

 private:
  struct FdReg {
    int fd = -1;
    short events = 0;
    void* for_libxl = nullptr;
    std::unique_ptr<FdWatcher> watcher;
  };
  struct TimeoutReg {
    void* for_libxl = nullptr;
    uint64_t gen = 0;  // of the pending wait; older completions are stale
    std::unique_ptr<boost::asio::steady_timer> timer;
  };

  static int fd_register(void* user, int fd, void** reg_out, short events, void* for_libxl);
  static int fd_modify(void* user, int fd, void** reg_update, short events);
  static void fd_deregister(void* user, int fd, void* reg);
  static int timeout_register(void* user, void** reg_out, struct timeval abs, void* for_libxl);
  static int timeout_modify(void* user, void** reg_update, struct timeval abs);
  static void timeout_deregister(void* user, void* reg);
  static const libxl_osevent_hooks kHooks;

  void arm_timeout(TimeoutReg* reg, struct timeval abs);
  void timeout_fired(TimeoutReg* reg, uint64_t gen);

  boost::asio::io_context& io_;
  libxl_ctx* ctx_ = nullptr;
  std::map<FdReg*, std::unique_ptr<FdReg>> fds_;
  std::map<TimeoutReg*, std::unique_ptr<TimeoutReg>> timeouts_;
  uint64_t next_gen_ = 1;
};

}  // namespace sd::xen
