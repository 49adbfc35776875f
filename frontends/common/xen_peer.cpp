#include "common/xen_peer.hpp"

#include "sd/platform/xen/evtchn.hpp"
#include "sd/platform/xen/grants.hpp"
#include "sd/platform/xen/guest_backend.hpp"

namespace sd::front {

Result<PoolSource::Pool> XenPools::make(uint32_t backend_domid, size_t pages) {
  auto shared = xen::SharedPool::share(backend_domid, pages);
  if (!shared) return std::unexpected(shared.error());
  auto evt = xen::XenEventChannel::offer(backend_domid);
  if (!evt) return std::unexpected(evt.error());
  Pool p;
  for (size_t i = 0; i < pages; ++i) p.pages.push_back((*shared)->page(i));
  p.ref.owner = self_;
  p.ref.dir_ref = (*shared)->directory_ref();
  p.ref.pages = static_cast<uint32_t>(pages);
  p.ref.port = (*evt)->port();
  p.evt = std::move(*evt);
  p.keep = std::shared_ptr<xen::SharedPool>(std::move(*shared));
  return p;
}

GuestCopies::GuestCopies(std::unique_ptr<xen::GrantCopier> c) : c_(std::move(c)) {}
GuestCopies::~GuestCopies() = default;
void GuestCopies::copy(GrantCopy* ops, size_t n) { c_->copy(ops, n); }

}  // namespace sd::front
