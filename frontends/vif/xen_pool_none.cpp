// sd-netfront built without libxen-dev: --xen explains why it cannot run.
#include "vif/xen_pool.hpp"

namespace sd::front {

std::string vif_channel_path(int guest_domid, uint64_t handle) {
  return "/local/domain/" + std::to_string(guest_domid) + "/data/sd-vif-" + std::to_string(handle);
}

Result<XenFrontend> open_xen_frontend(uint64_t) {
  return fail(Code::kUnavailable, "this sd-netfront was built without the Xen libraries (install libxen-dev and rebuild)");
}

}  // namespace sd::front
