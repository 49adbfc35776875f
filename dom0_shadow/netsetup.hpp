// Host-side network plumbing for vifs on the local platform: named netns,
// veth "NICs", addresses, and the packet socket through which a
// driver domain drives its NIC. Uses iproute2 for link setup
// (what an operator would type), and system calls for the socket.
#pragma once

#include <string>
#include <vector>

#include "sd/core/error.hpp"
#include "sd/core/fd.hpp"

namespace sd::dom0 {

// Runs a program (no shell) and waits; kSystem with its stderr on failure.
Result<void> run_program(const std::vector<std::string>& argv);
// `ip -n NS ARGS...` (NS empty: the host namespace).
Result<void> ip(const std::string& ns, const std::vector<std::string>& args);
// An AF_PACKET socket bound to `ifname` inside netns `ns`, ignoring its own
// outgoing frames, with a large receive buffer so frames wait in it while no
// driver is reading.
Result<UniqueFd> open_packet_socket(const std::string& ns, const std::string& ifname);

}  // namespace sd::dom0
