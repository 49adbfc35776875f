#include "xen/xen_platform.hpp"

#include "xen/device_plumbing.hpp"

#include <fstream>
#include <sstream>

extern "C" {
#include <libxl.h>
#include <xentoollog.h>
}

namespace sd::xen {

std::string unavailable_reason() {
  std::ifstream caps("/proc/xen/capabilities");
  if (!caps) return "not running on Xen (/proc/xen/capabilities is missing)";
  std::stringstream ss;
  ss << caps.rdbuf();
  if (ss.str().find("control_d") == std::string::npos) return "this domain is not a Xen control domain (dom0)";
  // A libxl context proves the toolstack is reachable (privcmd, xenstored).
  xentoollog_logger_stdiostream* lg = xtl_createlogger_stdiostream(stderr, XTL_ERROR, 0);
  libxl_ctx* ctx = nullptr;
  int rc = libxl_ctx_alloc(&ctx, LIBXL_VERSION, 0, reinterpret_cast<xentoollog_logger*>(lg));
  if (ctx) libxl_ctx_free(ctx);
  xtl_logger_destroy(reinterpret_cast<xentoollog_logger*>(lg));
  if (rc != 0) return "libxl_ctx_alloc failed (is xenstored running?)";
  return {};
}

Result<std::unique_ptr<platform::DevicePlumbing>> XenPlatform::make_device_plumbing(const platform::DeviceInfo& dev) {
  // vbd and vsnd reach a guest's own kernel frontend (blkfront,
  // snd-xen-front) through the dom0 ring proxy; the project's own
  // frontends for them run on the local platform only.
  if (dev.type != "vif" && !dev.kernel_frontend)
    return fail(Code::kUnavailable, "a " + dev.type + " is served on the xen platform to unmodified guests only (set "
                                    "guest_frontend: kernel in the " + dev.type + " policy)");
  auto proxy = ring_proxies_.find(dev.type);
  auto p = XenDevicePlumbing::create(io_, *store_, dev, proxy == ring_proxies_.end() ? "" : proxy->second);
  if (!p) return std::unexpected(p.error());
  return std::unique_ptr<platform::DevicePlumbing>(std::move(*p));
}

Result<std::unique_ptr<platform::Platform>> open_platform(boost::asio::io_context& io,
                                                         std::map<std::string, std::filesystem::path> ring_proxies) {
  auto domains = XenDomainManager::open(io);
  if (!domains) return std::unexpected(domains.error());
  auto store = XenStore::open(io);
  if (!store) return std::unexpected(store.error());
  return std::unique_ptr<platform::Platform>(std::make_unique<XenPlatform>(io, std::move(*domains), std::move(*store),
                                                                                  std::move(ring_proxies)));
}

Result<std::unique_ptr<platform::Platform>> create(boost::asio::io_context& io, const platform::Options& opts) {
  if (auto why = unavailable_reason(); !why.empty())
    return fail(Code::kUnavailable, "xen platform not available on this host: " + why);
  return open_platform(io, opts.ring_proxies);
}

}  // namespace sd::xen
