// In-memory stand-ins for the frontends' Xen parts, shared by the vif tests.
#pragma once

#include "fake_guest_grants.hpp"
#include "fake_pools.hpp"
#include "vif/guest_port.hpp"
#include "vif/netfront.hpp"

namespace sd::front {

using netif::kPageSize;

}  // namespace sd::front
