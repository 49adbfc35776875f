#include "vif/xen_pool.hpp"

#include "sd/platform/xen/evtchn.hpp"
#include "sd/platform/xen/grants.hpp"
#include "sd/platform/xen/vchan.hpp"

namespace sd::front {

namespace {

class XenPools final : public PoolSource {
 public:
  explicit XenPools(uint32_t self) : self_(self) {}
  Result<Pool> make(uint32_t backend_domid) override {
    auto shared = xen::SharedPool::share(backend_domid, netif::kPoolPages);
    if (!shared) return std::unexpected(shared.error());
    auto evt = xen::XenEventChannel::offer(backend_domid);
    if (!evt) return std::unexpected(evt.error());
    Pool p;
    for (size_t i = 0; i < netif::kPoolPages; ++i) p.pages.push_back((*shared)->page(i));
    p.ref.owner = self_;
    p.ref.dir_ref = (*shared)->directory_ref();
    p.ref.pages = static_cast<uint32_t>(netif::kPoolPages);
    p.ref.port = (*evt)->port();
    p.evt = std::move(*evt);
    p.keep = std::shared_ptr<xen::SharedPool>(std::move(*shared));
    return p;
  }

 private:
  uint32_t self_;
};

}  // namespace

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
