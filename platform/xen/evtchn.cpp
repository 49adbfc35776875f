#include "sd/platform/xen/evtchn.hpp"

#include <poll.h>

#include <cerrno>
#include <cstring>
#include <string>

extern "C" {
#include <xenevtchn.h>
}

namespace sd::xen {

namespace {

Result<xenevtchn_handle*> open_handle() {
  xenevtchn_handle* h = xenevtchn_open(nullptr, 0);
  if (!h)
    return fail(Code::kUnavailable,
                std::string("xen: xenevtchn_open: ") + std::strerror(errno) + " (is xen-evtchn loaded?)");
  return h;
}

}  // namespace

Result<std::unique_ptr<XenEventChannel>> XenEventChannel::offer(uint32_t remote) {
  auto h = open_handle();
  if (!h) return std::unexpected(h.error());
  int port = xenevtchn_bind_unbound_port(*h, remote);
  if (port < 0) {
    int e = errno;
    xenevtchn_close(*h);
    return fail(Code::kSystem, "xen: cannot offer an event channel to domain " + std::to_string(remote) + ": " +
                                   std::strerror(e));
  }
  return std::unique_ptr<XenEventChannel>(new XenEventChannel(*h, static_cast<uint32_t>(port)));
}

Result<std::unique_ptr<XenEventChannel>> XenEventChannel::bind(uint32_t remote, uint32_t remote_port) {
  auto h = open_handle();
  if (!h) return std::unexpected(h.error());
  int port = xenevtchn_bind_interdomain(*h, remote, remote_port);
  if (port < 0) {
    int e = errno;
    xenevtchn_close(*h);
    // The peer names the port: a bad one is its fault, not ours.
    return fail(Code::kInvalidInput, "xen: cannot bind event channel " + std::to_string(remote_port) +
                                         " of domain " + std::to_string(remote) + ": " + std::strerror(e));
  }
  return std::unique_ptr<XenEventChannel>(new XenEventChannel(*h, static_cast<uint32_t>(port)));
}

XenEventChannel::~XenEventChannel() {
  (void)xenevtchn_unbind(h_, port_);
  xenevtchn_close(h_);
}

Result<void> XenEventChannel::notify() {
  if (xenevtchn_notify(h_, port_) != 0) return fail(Code::kSystem, std::string("xen: xenevtchn_notify: ") + std::strerror(errno));
  return {};
}

int XenEventChannel::wait_fd() const { return xenevtchn_fd(h_); }

Result<uint64_t> XenEventChannel::consume() {
  uint64_t n = 0;
  for (;;) {
    // xenevtchn_pending blocks when nothing is pending: look first.
    pollfd p{xenevtchn_fd(h_), POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) break;
    int port = xenevtchn_pending(h_);
    if (port < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      return fail(Code::kSystem, std::string("xen: xenevtchn_pending: ") + std::strerror(errno));
    }
    (void)xenevtchn_unmask(h_, static_cast<uint32_t>(port));
    ++n;
  }
  return n;
}

}  // namespace sd::xen
