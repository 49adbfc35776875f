// shadowd's end of a control vchan to a domain (dom0 is the vchan client).
//
// open() returns the Channel at once, as the local platform does; the link
// watches xenstore until the domain's runtime offers its vchan at `path`,
// connects, and from then on pumps messages on the io_context. What the
// Channel sends before that waits in the socket. When the vchan closes (the
// runtime exited, the domain died) or the link is destroyed, the Channel
// reads EOF ("peer closed").
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>
#include <utility>

#include "sd/core/platform.hpp"
#include "xen/fd_watcher.hpp"
#include "xen/vchan_pump.hpp"

namespace sd::xen {

class VchanLink {
 public:
  static Result<std::pair<ctl::Channel, std::unique_ptr<VchanLink>>> open(boost::asio::io_context& io,
                                                                          platform::Store& store, int domid,
                                                                          std::string path);
  ~VchanLink();
  VchanLink(const VchanLink&) = delete;
  VchanLink& operator=(const VchanLink&) = delete;

  bool connected() const { return bool(pump_); }

 private:
  VchanLink(boost::asio::io_context& io, platform::Store& store, int domid, std::string path, UniqueFd sock)
      : io_(io), store_(store), domid_(domid), path_(std::move(path)), sock_(std::move(sock)), retry_(io) {}
  void try_connect();
  void service(bool vchan_event);

  boost::asio::io_context& io_;
  platform::Store& store_;
  int domid_;
  std::string path_;
  UniqueFd sock_;  // until connected; then the pump owns it
  platform::Store::WatchId watch_ = 0;
  std::unique_ptr<VchanPump> pump_;
  std::unique_ptr<FdWatcher> vchan_wait_, sock_wait_;
  boost::asio::steady_timer retry_;  // the nodes are there but connecting failed: try again
  int failures_ = 0;
};

}  // namespace sd::xen
