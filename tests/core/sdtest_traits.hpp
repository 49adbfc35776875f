// Binds the C test ring type (interop_ring.h) to sd::ring.
#pragma once

#include <cstdint>

#include "interop_ring.h"
#include "sd/core/ring.hpp"

namespace sdtest {

struct Traits {
  using Sring = sdtest_sring;
  using Req = sdtest_request;
  using Rsp = sdtest_response;
  static uint64_t req_id(const Req& r) { return r.id; }
  static uint64_t rsp_id(const Rsp& r) { return r.id; }
};

using Front = sd::ring::FrontRing<Traits>;
using Back = sd::ring::BackRing<Traits>;

inline constexpr size_t kPage = 4096;
// Entries of this ring type in one page, computed by Xen's own macro.
inline constexpr unsigned kEntriesPerPage = __CONST_RING_SIZE(sdtest, kPage);

}  // namespace sdtest
