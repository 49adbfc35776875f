// The Xen pieces every class's frontend shares: a pool this domain grants to
// one backend domain at a time (gntshr, and an event channel offered with
// evtchn), and an unmodified guest's granted pages reached by grant copy
// (the dom0 ring proxy's side). Built only with the Xen libraries.
#pragma once

#include <cstdint>
#include <memory>

#include "common/guest_grants.hpp"
#include "common/pool_source.hpp"

namespace sd::xen {
class GrantCopier;
}

namespace sd::front {

class XenPools final : public PoolSource {
 public:
  explicit XenPools(uint32_t self) : self_(self) {}  // self: this domain's id (0 in dom0)
  Result<Pool> make(uint32_t backend_domid, size_t pages) override;

 private:
  uint32_t self_;
};

class GuestCopies final : public GuestGrants {
 public:
  explicit GuestCopies(std::unique_ptr<xen::GrantCopier> c);
  ~GuestCopies() override;
  void copy(GrantCopy* ops, size_t n) override;

 private:
  std::unique_ptr<xen::GrantCopier> c_;
};

}  // namespace sd::front
