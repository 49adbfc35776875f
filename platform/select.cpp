// Picks the platform at run time (the Seastar reactor_backend_selector shape):
// probe what is available, then build the one asked for.
#include <memory>

#include "local/local_platform.hpp"
#ifdef SD_WITH_XEN
#include "xen/xen_platform.hpp"
#endif

namespace sd::platform {

namespace {
std::string xen_reason() {
#ifdef SD_WITH_XEN
  return xen::unavailable_reason();
#else
  return "this build has no Xen support (libxen-dev was not found at build time)";
#endif
}
}  // namespace

Result<std::unique_ptr<Platform>> make_platform(const std::string& name, boost::asio::io_context& io,
                                                const Options& opts) {
  std::string chosen = name;
  // auto: Xen when this is a Xen control domain whose toolstack answers,
  // else the local platform (any Linux host).
  if (name == "auto") chosen = xen_reason().empty() ? "xen" : "local";
  if (chosen == "local") return std::unique_ptr<Platform>(std::make_unique<local::LocalPlatform>(io, opts));
  if (chosen == "xen") {
#ifdef SD_WITH_XEN
    return xen::create(io, opts);
#else
    return fail(Code::kUnavailable, "xen platform not available: " + xen_reason());
#endif
  }
  return fail(Code::kInvalidInput, "unknown platform '" + name + "' (expected auto, local or xen)");
}

}  // namespace sd::platform
