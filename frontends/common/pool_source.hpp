// Where a frontend's pool comes from on Xen, for every class: the frontend
// grants its pool itself, to one backend domain at a time (a grant names one
// domain), so every new backend incarnation gets a new pool, into which the
// frontend replays what is in flight. Xen: gntshr and evtchn
// (vif/xen_pool.cpp); tests: plain memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sd/core/control_channel.hpp"
#include "sd/core/error.hpp"
#include "sd/core/platform.hpp"

namespace sd::front {

class PoolSource {
 public:
  struct Pool {
    std::vector<uint8_t*> pages;                 // this domain's mapping, one after another
    std::unique_ptr<platform::EventChannel> evt; // offered to the backend's domain
    ctl::XenPool ref;                            // what the backend needs to map and bind them
    std::shared_ptr<void> keep;                  // the grants live as long as this
  };
  virtual ~PoolSource() = default;
  // A pool of `pages` pages (the class's pool layout) for `backend_domid`.
  virtual Result<Pool> make(uint32_t backend_domid, size_t pages) = 0;
  // make() as a frontend's repair uses it: the pool's size checked, the
  // error naming the domain (kReconnect's answer to shadowd).
  Result<Pool> next(uint32_t backend_domid, size_t pages) {
    auto p = make(backend_domid, pages);
    if (!p)
      return fail(p.error().code, "cannot grant the pool to domain " + std::to_string(backend_domid) + ": " +
                                      p.error().message);
    if (p->pages.size() != pages)
      return fail(Code::kEscalate, "pool source gave " + std::to_string(p->pages.size()) + " pages, not " +
                                       std::to_string(pages));
    return p;
  }
};

}  // namespace sd::front
