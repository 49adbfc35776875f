// platform::Store over the real xenstore (libxenstore).
//
//   read / write / remove / list  xs_read / xs_write / xs_rm / xs_directory,
//                                 outside transactions (XBT_NULL)
//   watch / unwatch               xs_watch / xs_unwatch with token "sd:<id>";
//                                 xs_fileno watched on the io_context, events
//                                 drained with xs_check_watch and dispatched
//                                 by token
//
// Watches behave as the interface says because xenstored does it: an event
// right after registration (for the watched path), then one for every change
// at or below the path (the event carries the changed path).
//
// Errors (errno from libxenstore): ENOENT -> kInvalidInput "no such store
// path"; EACCES, EINVAL, E2BIG, ENOSPC -> kInvalidInput; EAGAIN, EBUSY ->
// kRetry; anything else -> kSystem. Each message names the call and path.
#pragma once

#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <string>

extern "C" {
#include <xenstore.h>
}

#include "sd/core/platform.hpp"
#include "xen/fd_watcher.hpp"

namespace sd::xen {

class XenStore final : public platform::Store {
 public:
  // xs_open(0); kUnavailable if xenstored cannot be reached.
  static Result<std::unique_ptr<XenStore>> open(boost::asio::io_context& io);
  // Removes its watches and closes the connection.
  ~XenStore() override;

  Result<std::string> read(const std::string& path) const override;
  Result<void> write(const std::string& path, const std::string& value) override;
  // Absent path: success (as on the local platform).
  Result<void> remove(const std::string& path) override;
  // Empty if the path is absent or cannot be listed.
  std::vector<std::string> list(const std::string& path) const override;
  // xs_set_permissions: owner first (its entry is also what others get:
  // nothing), then each reader with read access.
  Result<void> set_access(const std::string& path, platform::DomId owner,
                          const std::vector<platform::DomId>& readers) override;
  // 0 if xenstore refused the watch (see last_error()); the callback then
  // never runs.
  WatchId watch(const std::string& path, WatchFn fn) override;
  void unwatch(WatchId id) override;

  // Why the last watch() returned 0.
  const Error& last_error() const { return last_error_; }

 private:
  XenStore(boost::asio::io_context& io, struct xs_handle* xs) : io_(io), xs_(xs) {}
  Result<void> ensure_watch_fd();
  void drain_watch_events();

  struct Watch {
    std::string path;
    std::string token;
    std::shared_ptr<WatchFn> fn;
  };

  boost::asio::io_context& io_;
  struct xs_handle* xs_;
  std::unique_ptr<FdWatcher> watch_fd_;  // on xs_fileno, from the first watch on
  std::map<WatchId, Watch> watches_;
  std::map<std::string, WatchId> by_token_;
  WatchId next_watch_ = 1;
  Error last_error_{Code::kSystem, ""};
};

}  // namespace sd::xen
