// Starts one driver-domain process in its sandbox (local platform).
//
// The child gets new mount, pid, ipc and uts namespaces, joins the domain's
// persistent net namespace (or a fresh one), sees a read-only root that holds
// only /usr (system libraries), a few /dev nodes, its own /proc and /tmp and
// the runtime binary; it runs as nobody with no capabilities, no_new_privs
// and rlimits, and holds only the control channel (fd 3) and its log (fd 1, 2).
// The runtime itself installs the seccomp allow-list at start (drvdom/main).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "sd/core/error.hpp"
#include "sd/core/fd.hpp"

namespace sd::local {

struct SandboxSpec {
  std::string name;                 // hostname inside, and for messages
  std::filesystem::path binary;     // the driver-domain runtime (drvdom)
  std::filesystem::path root_dir;   // empty host directory used as the mount point of the new root
  std::filesystem::path log_file;   // stdout/stderr of the domain (appended)
  int netns_fd = -1;                // join this net namespace; -1 = a fresh one
  int control_fd = -1;              // becomes fd 3
  uint64_t memory_bytes = 0;        // RLIMIT_AS; 0 = no limit
  int nice = 0;                     // its priority from the start (a spare's: behind all other work)
};

struct Spawned {
  int pid = -1;
  UniqueFd pidfd;
};

Result<Spawned> spawn_sandboxed(const SandboxSpec& spec);

// The uid/gid a driver domain runs as.
constexpr unsigned kSandboxUid = 65534;

}  // namespace sd::local
