#include "xen/vchan_link.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace sd::xen {

Result<std::pair<ctl::Channel, std::unique_ptr<VchanLink>>> VchanLink::open(boost::asio::io_context& io,
                                                                            platform::Store& store, int domid,
                                                                            std::string path) {
  auto pair = ctl::Channel::pair();
  if (!pair) return std::unexpected(pair.error());
  UniqueFd sock(::dup(pair->second.fd()));
  if (!sock) return fail(Code::kSystem, std::string("dup: ") + std::strerror(errno));
  std::unique_ptr<VchanLink> link(new VchanLink(io, store, domid, std::move(path), std::move(sock)));
  // Fires once now and on every change below the path (the runtime writes
  // ring-ref and event-channel there when it offers the vchan).
  VchanLink* self = link.get();
  link->watch_ = store.watch(link->path_, [self](const std::string&) { self->try_connect(); });
  if (link->watch_ == 0)
    return fail(Code::kSystem, "xen: cannot watch " + link->path_ + " for domain " + std::to_string(domid) +
                                   "'s control vchan");
  return std::pair{std::move(pair->first), std::move(link)};
}

VchanLink::~VchanLink() {
  retry_.cancel();
  if (watch_) store_.unwatch(watch_);
  vchan_wait_.reset();
  sock_wait_.reset();
}

void VchanLink::try_connect() {
  if (pump_) return;
  if (!store_.read(path_ + "/event-channel")) return;  // not offered yet
  auto v = vchan_client(domid_, path_);
  if (!v) {
    // Half-written nodes, or mapping the pages failed: no further xenstore
    // change may come, so try again shortly (the supervisor's start timeout
    // bounds how long).
    if (++failures_ == 1) std::fprintf(stderr, "shadowd: %s; retrying\n", v.error().message.c_str());
    retry_.expires_after(std::chrono::milliseconds(200));
    retry_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) try_connect();
    });
    return;
  }
  store_.unwatch(watch_);
  watch_ = 0;
  pump_ = std::make_unique<VchanPump>(*v, std::move(sock_));
  auto vw = FdWatcher::create(io_, pump_->vchan_fd(), POLLIN, [this](short) { service(true); });
  auto sw = FdWatcher::create(io_, pump_->sock_fd(), POLLIN, [this](short) { service(false); });
  if (!vw || !sw) {
    std::fprintf(stderr, "shadowd: xen: domain %d: cannot wait on its control vchan\n", domid_);
    pump_.reset();  // the Channel reads EOF
    return;
  }
  vchan_wait_ = std::move(*vw);
  sock_wait_ = std::move(*sw);
  service(false);  // what the Channel sent before the connection
}

void VchanLink::service(bool vchan_event) {
  if (!pump_) return;
  auto more = pump_->service(vchan_event);
  if (more && *more) {
    // Messages for a slow reader wait in the pump: wake when it drains.
    sock_wait_->set_events(POLLIN | (pump_->waiting_for_reader() ? POLLOUT : 0));
    return;
  }
  // Closed: stop waiting (the watchers may not be destroyed from their own
  // callback's frame before it returns; FdWatcher allows it).
  vchan_wait_.reset();
  sock_wait_.reset();
  pump_.reset();
}

}  // namespace sd::xen
