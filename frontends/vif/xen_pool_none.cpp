// sd-netfront built without libxen-dev: --xen explains why it cannot run.
#include "vif/xen_pool.hpp"

namespace sd::front {

Result<XenFrontend> open_xen_frontend(uint64_t) {
  return fail(Code::kUnavailable, "this sd-netfront was built without the Xen libraries (install libxen-dev and rebuild)");
}

Result<XenProxy> open_xen_proxy(uint32_t, uint64_t, int) {
  return fail(Code::kUnavailable, "this sd-netfront was built without the Xen libraries (install libxen-dev and rebuild)");
}

}  // namespace sd::front
