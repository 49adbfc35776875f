// What the device classes share to reach a guest's frontend and hand pools
// over on the local platform.
#pragma once

#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "sd/core/control_channel.hpp"
#include "sd/core/platform.hpp"
#include "sd/core/splitter_log.hpp"

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

// Takes the next connection waiting on `listen_fd`; nullopt if none. While
// `busy` (a frontend is connected already) it is refused with kDevAttached
// EBUSY and `refusal` and closed.
std::optional<ctl::Channel> accept_frontend(int listen_fd, bool busy, const std::string& refusal);

// A frontend's splitter log with `slots` in-flight slots; SD_SPLITTER_LOG=off
// disables it (benchmarks compare the log on and off in one run).
Result<shadow::SplitterLog> new_splitter_log(size_t slots);

// Reads `ch` whenever `wait` (a descriptor on it) is readable: every whole
// message to `on_msg`, then waits again; a failed or closed channel goes to
// `on_closed` once. Either callback may reset `wait`, which ends the reading.
void read_frontend(std::unique_ptr<boost::asio::posix::stream_descriptor>& wait, ctl::Channel& ch,
                   std::function<void(const ctl::Msg&)> on_msg, std::function<void(const std::string&)> on_closed);

}  // namespace sd::dom0
