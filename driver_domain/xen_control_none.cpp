// drvdom built without libxen-dev: the Xen entry points explain why they cannot run.
#include "xen_control.hpp"

namespace sd::drvdom {

namespace {
constexpr const char* kWhy = "this drvdom was built without the Xen libraries (install libxen-dev and rebuild)";
}

Result<XenControl> open_xen_control() { return fail(Code::kUnavailable, kWhy); }
Result<XenDevice> attach_xen_pool(const ctl::XenPool&, size_t) { return fail(Code::kUnavailable, kWhy); }

}  // namespace sd::drvdom
