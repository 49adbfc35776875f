// sd-netfront built without libxen-dev: --xen explains why it cannot run.
#include "vif/xen_pool.hpp"

namespace sd::front {

Result<XenFrontend> open_xen_frontend(uint64_t) {
  return fail(Code::kUnavailable, "this sd-netfront was built without the Xen libraries (install libxen-dev and rebuild)");
}

}  // namespace sd::front
