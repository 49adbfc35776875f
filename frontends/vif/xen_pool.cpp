#include "vif/xen_pool.hpp"

#include <cstdio>

#include "sd/platform/xen/guest_backend.hpp"
#include "common/xen_peer.hpp"
#include "vif/guest_port.hpp"
#include "vif/late_port.hpp"
#include "sd/platform/xen/vchan.hpp"

namespace sd::front {

// The guest's kernel netfront, once it connects: the handshake as its
// backend, then its rings.
Result<std::unique_ptr<PacketPort>> connect_guest(uint32_t guest, uint64_t handle, int timeout_ms) {
  std::string back = xen::proxy_backend_dir("vif", guest, handle);
  // What this backend offers xen-netfront: copying receive (the only mode
  // netfront has), no offloads, one queue.
  auto g = xen::connect_guest_frontend(back, {{"feature-rx-copy", "1"}, {"feature-rx-flip", "0"}},
                                       {"tx-ring-ref", "rx-ring-ref"}, {"request-rx-copy"}, timeout_ms);
  if (!g) return std::unexpected(g.error());
  if (g->keys["request-rx-copy"] != "1")
    return fail(Code::kInvalidInput, "the guest's netfront at " + back + " did not ask for copying receive");
  auto port = GuestRingPort::attach(g->rings[0], g->rings[1], std::move(g->evts[0]),
                                    std::make_unique<GuestCopies>(std::move(g->grants)),
                                    "domain " + std::to_string(guest) + " vif " + std::to_string(handle), g->keep);
  if (!port) return std::unexpected(port.error());
  return std::unique_ptr<PacketPort>(std::move(*port));
}

Result<XenProxy> open_xen_proxy(uint32_t guest, uint64_t handle, int timeout_ms) {
  std::fprintf(stderr, "sd-netfront: serving domain %u's netfront (backend %s) from dom0\n", guest,
               xen::proxy_backend_dir("vif", guest, handle).c_str());
  XenProxy p;
  std::string back = xen::proxy_backend_dir("vif", guest, handle);
  p.port = std::make_unique<LatePort>(
      "domain " + std::to_string(guest) + " vif " + std::to_string(handle),
      [=] { return connect_guest(guest, handle, timeout_ms); }, [back] { return xen::guest_frontend_left(back); },
      [back] { xen::close_guest_backend(back); });
  p.pools = std::make_unique<XenPools>(0);  // granted by dom0
  return p;
}

Result<XenFrontend> open_xen_frontend(uint64_t handle) {
  auto self = xen::self_identity();
  if (!self) return std::unexpected(self.error());
  auto ch = xen::offer_channel(0, xen::vif_channel_path(self->first, handle));
  if (!ch) return std::unexpected(ch.error());
  XenFrontend f;
  f.channel = std::move(*ch);
  f.pools = std::make_unique<XenPools>(static_cast<uint32_t>(self->first));
  f.domid = self->first;
  return f;
}

}  // namespace sd::front
