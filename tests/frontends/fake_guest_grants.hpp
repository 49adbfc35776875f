// A guest's granted pages as a map of refs, for the dom0 ring proxy's
// guest-facing ports (GuestGrants), with the copy calls counted.
#pragma once

#include <cstring>
#include <map>
#include <vector>

#include "common/guest_grants.hpp"

namespace sd::front {

struct GuestPages final : GuestGrants {
  std::map<uint32_t, std::vector<uint8_t>> pages;  // ref -> page the guest granted
  int calls = 0;  // copy() calls: one per frame out, one per flush in
  void copy(GrantCopy* ops, size_t n) override {
    ++calls;
    for (size_t i = 0; i < n; ++i) {
      GrantCopy& o = ops[i];
      auto it = pages.find(o.ref);
      o.ok = it != pages.end() && o.offset + size_t{o.len} <= 4096;
      if (!o.ok) continue;
      if (o.to_guest) std::memcpy(it->second.data() + o.offset, o.local, o.len);
      else std::memcpy(o.local, it->second.data() + o.offset, o.len);
    }
  }
};

}  // namespace sd::front
