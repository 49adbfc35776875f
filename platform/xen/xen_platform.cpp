#include "xen/xen_platform.hpp"

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

Result<std::unique_ptr<platform::Platform>> create(boost::asio::io_context&, const platform::Options&) {
  if (auto why = unavailable_reason(); !why.empty())
    return fail(Code::kUnavailable, "xen platform not available on this host: " + why);
  return fail(Code::kUnavailable,
              "xen platform: this host is a dom0, but the libxl/xenstore back ends are not built yet; use "
              "--platform local");
}

}  // namespace sd::xen
