#include "xen/store.hpp"

#include <poll.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

namespace sd::xen {

namespace {

std::unexpected<Error> xs_fail(const char* call, const std::string& path, int err) {
  std::string msg = std::string("xenstore: ") + call + " " + path + ": " + std::strerror(err);
  switch (err) {
    case ENOENT: return fail(Code::kInvalidInput, "no such store path " + path);
    case EACCES:
    case EINVAL:
    case E2BIG:
    case ENOSPC: return fail(Code::kInvalidInput, msg);
    case EAGAIN:
    case EBUSY: return fail(Code::kRetry, msg);
    default: return fail(Code::kSystem, msg);
  }
}

}  // namespace

Result<std::unique_ptr<XenStore>> XenStore::open(boost::asio::io_context& io) {
  struct xs_handle* xs = xs_open(0);
  if (!xs)
    return fail(Code::kUnavailable,
                std::string("xenstore: xs_open: ") + std::strerror(errno) + " (is xenstored running?)");
  return std::unique_ptr<XenStore>(new XenStore(io, xs));
}

XenStore::~XenStore() {
  watch_fd_.reset();
  for (const auto& [id, w] : watches_) xs_unwatch(xs_, w.path.c_str(), w.token.c_str());
  xs_close(xs_);
}

Result<std::string> XenStore::read(const std::string& path) const {
  unsigned int len = 0;
  void* v = xs_read(xs_, XBT_NULL, path.c_str(), &len);
  if (!v) return xs_fail("xs_read", path, errno);
  std::string out(static_cast<const char*>(v), len);
  std::free(v);
  return out;
}

Result<void> XenStore::write(const std::string& path, const std::string& value) {
  if (!xs_write(xs_, XBT_NULL, path.c_str(), value.data(), static_cast<unsigned int>(value.size())))
    return xs_fail("xs_write", path, errno);
  return {};
}

Result<void> XenStore::set_access(const std::string& path, platform::DomId owner,
                                  const std::vector<platform::DomId>& readers) {
  std::vector<xs_permissions> perms;
  perms.push_back({owner, XS_PERM_NONE});
  for (auto r : readers) perms.push_back({r, XS_PERM_READ});
  if (!xs_set_permissions(xs_, XBT_NULL, path.c_str(), perms.data(), static_cast<unsigned int>(perms.size())))
    return xs_fail("xs_set_permissions", path, errno);
  return {};
}

Result<void> XenStore::remove(const std::string& path) {
  if (xs_rm(xs_, XBT_NULL, path.c_str())) return {};
  int err = errno;
  if (err == ENOENT) return {};  // nothing to remove
  return xs_fail("xs_rm", path, err);
}

std::vector<std::string> XenStore::list(const std::string& path) const {
  unsigned int n = 0;
  char** names = xs_directory(xs_, XBT_NULL, path.c_str(), &n);
  if (!names) return {};
  std::vector<std::string> out(names, names + n);
  std::free(names);  // one allocation holds the array and the strings
  return out;
}

// ---- watches ---------------------------------------------------------------

Result<void> XenStore::ensure_watch_fd() {
  if (watch_fd_) return {};
  int fd = xs_fileno(xs_);
  if (fd < 0) return xs_fail("xs_fileno", "", errno ? errno : EBADF);
  auto w = FdWatcher::create(io_, fd, POLLIN, [this](short) { drain_watch_events(); });
  if (!w) return std::unexpected(w.error());
  watch_fd_ = std::move(*w);
  return {};
}

platform::Store::WatchId XenStore::watch(const std::string& path, WatchFn fn) {
  if (auto ok = ensure_watch_fd(); !ok) {
    last_error_ = ok.error();
    return 0;
  }
  WatchId id = next_watch_++;
  std::string token = "sd:" + std::to_string(id);
  if (!xs_watch(xs_, path.c_str(), token.c_str())) {
    last_error_ = xs_fail("xs_watch", path, errno).error();
    return 0;
  }
  watches_[id] = Watch{path, token, std::make_shared<WatchFn>(std::move(fn))};
  by_token_[token] = id;
  return id;
}

void XenStore::unwatch(WatchId id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  if (!xs_unwatch(xs_, it->second.path.c_str(), it->second.token.c_str()))
    std::fprintf(stderr, "shadowd: xenstore: xs_unwatch %s: %s\n", it->second.path.c_str(), std::strerror(errno));
  by_token_.erase(it->second.token);
  watches_.erase(it);  // events still queued for its token are dropped
}

// The fd is readable: take every pending event first (xs_check_watch until
// EAGAIN, as xenstore.h asks), then run the callbacks, looking each token up
// again so a callback that unwatches suppresses that watch's later events.
void XenStore::drain_watch_events() {
  std::vector<std::pair<std::string, std::string>> events;  // (path, token)
  for (;;) {
    char** ev = xs_check_watch(xs_);
    if (!ev) {
      if (errno != EAGAIN) {
        // The connection is broken: stop waiting on a fd that stays readable.
        std::fprintf(stderr, "shadowd: xenstore: xs_check_watch: %s; watches stop\n", std::strerror(errno));
        watch_fd_.reset();
      }
      break;
    }
    events.emplace_back(ev[XS_WATCH_PATH], ev[XS_WATCH_TOKEN]);
    std::free(ev);
  }
  for (const auto& [path, token] : events) {
    auto t = by_token_.find(token);
    if (t == by_token_.end()) continue;  // not ours, or unwatched meanwhile
    auto fn = watches_.at(t->second).fn;  // the callback may unwatch itself
    (*fn)(path);
  }
}

}  // namespace sd::xen
