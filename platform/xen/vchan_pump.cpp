#include "xen/vchan_pump.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <thread>

#include <cerrno>
#include <cstdlib>
#include <cstring>

extern "C" {
#include <libxenvchan.h>
#include <xenstore.h>
}

namespace sd::xen {

VchanPump::VchanPump(libxenvchan* v, UniqueFd sock) : v_(v), sock_(std::move(sock)) {}

VchanPump::~VchanPump() {
  if (v_) libxenvchan_close(v_);
}

int VchanPump::vchan_fd() const { return libxenvchan_fd_for_select(v_); }

Result<bool> VchanPump::service(bool vchan_event) {
  if (closed_) return false;
  // Readable event fd: take the event (and unmask the port) first, so the
  // next notification wakes the owner again.
  if (vchan_event && libxenvchan_wait(v_) < 0) closed_ = true;

  // Channel end -> vchan. Our own process wrote these: whole messages only.
  for (;;) {
    ctl::Msg m;
    ssize_t n = ::recv(sock_.get(), &m, sizeof(m), MSG_DONTWAIT);
    if (n == static_cast<ssize_t>(sizeof(m))) {
      to_vchan_.push_back(m);
      continue;
    }
    if (n == 0) closed_ = true;  // the Channel end was closed
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) closed_ = true;
    break;
  }
  while (!to_vchan_.empty() && libxenvchan_buffer_space(v_) >= static_cast<int>(sizeof(ctl::Msg))) {
    if (libxenvchan_send(v_, &to_vchan_.front(), sizeof(ctl::Msg)) != static_cast<int>(sizeof(ctl::Msg))) {
      closed_ = true;
      break;
    }
    to_vchan_.pop_front();
  }

  // vchan -> Channel end, whole messages; the Channel's reader checks them.
  for (;;) {
    while (!to_sock_.empty()) {
      ssize_t n = ::send(sock_.get(), &to_sock_.front(), sizeof(ctl::Msg), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;  // reader is slow; keep it queued
      if (n < 0) {
        closed_ = true;
        break;
      }
      to_sock_.pop_front();
    }
    if (!to_sock_.empty() || closed_) break;  // deliver in order; wait for the reader
    if (libxenvchan_data_ready(v_) < static_cast<int>(sizeof(ctl::Msg))) break;
    ctl::Msg m;
    if (libxenvchan_recv(v_, &m, sizeof(m)) != static_cast<int>(sizeof(m))) {
      closed_ = true;
      break;
    }
    to_sock_.push_back(m);
  }

  // 0: the peer closed it or its domain is gone (2 = server still waiting).
  if (libxenvchan_is_open(v_) == 0 && libxenvchan_data_ready(v_) < static_cast<int>(sizeof(ctl::Msg)))
    closed_ = true;
  if (closed_) {
    sock_.reset();  // the Channel end reads EOF: "peer closed"
    return false;
  }
  return true;
}

Result<libxenvchan*> vchan_server(int peer, const std::string& xs_path) {
  errno = 0;
  libxenvchan* v = libxenvchan_server_init(nullptr, peer, xs_path.c_str(), kVchanRingBytes, kVchanRingBytes);
  if (!v)
    return fail(Code::kUnavailable, "xen: cannot offer a vchan at " + xs_path + ": " +
                                        (errno ? std::strerror(errno) : "libxenvchan_server_init failed") +
                                        " (are xen-gntalloc and xen-evtchn loaded?)");
  v->blocking = 0;
  return v;
}

Result<libxenvchan*> vchan_client(int domid, const std::string& xs_path) {
  errno = 0;
  libxenvchan* v = libxenvchan_client_init(nullptr, domid, xs_path.c_str());
  if (!v)
    return fail(Code::kRetry, "xen: no vchan from domain " + std::to_string(domid) + " at " + xs_path + " yet: " +
                                  (errno ? std::strerror(errno) : "libxenvchan_client_init failed"));
  v->blocking = 0;
  return v;
}

Result<std::pair<ctl::Channel, std::unique_ptr<VchanPump>>> channel_over(libxenvchan* v) {
  auto pair = ctl::Channel::pair();
  if (!pair) {
    libxenvchan_close(v);
    return std::unexpected(pair.error());
  }
  // The pump keeps the second end as a plain socket (a dup; the Channel
  // object holding it goes away with `pair`).
  UniqueFd sock(::dup(pair->second.fd()));
  if (!sock) {
    libxenvchan_close(v);
    return fail(Code::kSystem, std::string("dup: ") + std::strerror(errno));
  }
  return std::pair{std::move(pair->first), std::make_unique<VchanPump>(v, std::move(sock))};
}

Result<std::pair<int, std::string>> self_identity() {
  xs_handle* xs = xs_open(0);
  if (!xs) return fail(Code::kUnavailable, std::string("xenstore: xs_open: ") + std::strerror(errno) + " (not on Xen?)");
  auto get = [xs](const char* rel) -> Result<std::string> {
    unsigned len = 0;
    void* v = xs_read(xs, XBT_NULL, rel, &len);  // relative: this domain's home
    if (!v) return fail(Code::kUnavailable, std::string("xenstore: cannot read ") + rel + ": " + std::strerror(errno));
    std::string s(static_cast<char*>(v), len);
    std::free(v);
    return s;
  };
  auto id = get("domid");
  auto name = get("name");
  xs_close(xs);
  if (!id) return std::unexpected(id.error());
  if (!name) return std::unexpected(name.error());
  return std::pair{std::atoi(id->c_str()), *name};
}

Result<ctl::Channel> offer_channel(int peer, const std::string& xs_path) {
  auto v = vchan_server(peer, xs_path);
  if (!v) return std::unexpected(v.error());
  auto ch = channel_over(*v);
  if (!ch) return std::unexpected(ch.error());
  std::thread([pump = std::move(ch->second)] {
    for (;;) {
      short sock_events = POLLIN | (pump->waiting_for_reader() ? POLLOUT : 0);
      pollfd fds[2] = {{pump->vchan_fd(), POLLIN, 0}, {pump->sock_fd(), sock_events, 0}};
      int r = ::poll(fds, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return;
      auto more = pump->service(fds[0].revents != 0);
      if (!more || !*more) return;  // the Channel end reads EOF
    }
  }).detach();
  return std::move(ch->first);
}

}  // namespace sd::xen
