// What the device classes share to reach a guest's frontend and hand pools
// over on the local platform.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>

#include <string>

#include "sd/core/control_channel.hpp"
#include "sd/core/platform.hpp"

namespace sd::dom0 {

// Sends the pool: one kGrantFds message per batch of up to
// ctl::Channel::kMaxFds pages, in ref order.
// peer = nullopt: to the guest's frontend (the owner: every page, its own
// memory); otherwise to a backend domain, each page as the grant table
// allows (a page not granted to `peer` is an error).
Result<void> send_pool_fds(ctl::Channel& ch, platform::GrantPool& pool, uint64_t handle,
                           std::optional<platform::DomId> peer);

// A nonblocking SOCK_SEQPACKET unix socket listening at `path` (mode 0660;
// a file left there by an unclean stop is replaced), where a guest's
// frontend connects. `what` names the device in errors.
Result<UniqueFd> listen_frontend_socket(const std::filesystem::path& path, const std::string& what);

}  // namespace sd::dom0
