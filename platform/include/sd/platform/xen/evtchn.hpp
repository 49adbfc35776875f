// An interdomain event channel through libxenevtchn (/dev/xen/evtchn), as
// platform::EventChannel: the frontend offers an unbound port to the
// backend's domain, the backend binds to it; either end notifies the other.
#pragma once

#include <cstdint>
#include <memory>

#include "sd/core/platform.hpp"

struct xenevtchn_handle;

namespace sd::xen {

class XenEventChannel final : public platform::EventChannel {
 public:
  // Frontend: a new port that domain `remote` may bind (port() says which).
  static Result<std::unique_ptr<XenEventChannel>> offer(uint32_t remote);
  // Backend: binds to `remote_port` that domain `remote` offered.
  static Result<std::unique_ptr<XenEventChannel>> bind(uint32_t remote, uint32_t remote_port);
  ~XenEventChannel() override;

  Result<void> notify() override;
  int wait_fd() const override;
  // Takes every pending event of this handle and unmasks the port again.
  Result<uint64_t> consume() override;
  uint32_t port() const { return port_; }

 private:
  XenEventChannel(xenevtchn_handle* h, uint32_t port) : h_(h), port_(port) {}
  xenevtchn_handle* h_;
  uint32_t port_;
};

}  // namespace sd::xen
