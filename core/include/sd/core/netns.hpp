// Persistent named network namespaces (/run/netns/NAME, as `ip netns` makes
// them): host plumbing, not a platform. The local platform keeps a driver
// domain's passed-through NIC in one across incarnations; shadowd builds a
// vif's guest and wire namespaces with them.
#pragma once

#include <string>

#include "sd/core/error.hpp"
#include "sd/core/fd.hpp"

namespace sd {

// Opens /run/netns/NAME, creating the namespace first if it does not exist.
Result<UniqueFd> ensure_netns(const std::string& name);
// Removes /run/netns/NAME (the namespace goes once nothing uses it). Idempotent.
void remove_netns(const std::string& name);
// Name check: what `ip netns` accepts and a path component allows.
bool valid_netns_name(const std::string& name);

}  // namespace sd
