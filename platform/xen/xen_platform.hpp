// The Xen platform: libxl for domains, xenstore, grant tables and event
// channels. This build probes for a usable dom0; the domain, ring and store
// back ends follow in the real-Xen work (see docs/ARCHITECTURE.md).
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "sd/core/platform.hpp"

namespace sd::xen {

// Empty if this host is a Xen dom0 whose toolstack libxl can talk to;
// otherwise the reason it is not.
std::string unavailable_reason();

Result<std::unique_ptr<platform::Platform>> create(boost::asio::io_context& io, const platform::Options& opts);

}  // namespace sd::xen
