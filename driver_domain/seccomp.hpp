// The driver domain's system-call allow-list. Anything else kills the whole
// domain with SIGSYS, which shadowd reports as a fault and recovers from.
#pragma once

#include "sd/core/error.hpp"

namespace sd::drvdom {

// Installs the filter for the calling process (all threads). Called once the
// runtime has started and before it reads anything from a peer.
Result<void> install_seccomp();

}  // namespace sd::drvdom
