// Maps pages that a guest granted to this driver domain. The local platform
// asks shadowd's grant broker over the control channel and receives one fd
// per page, only for pages actually granted to this domain.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <utility>

#include "sd/core/control_channel.hpp"
#include "sd/core/error.hpp"

namespace sd::drvdom {

class GrantMapper {
 public:
  explicit GrantMapper(ctl::Channel& ch) : ch_(ch) {}
  ~GrantMapper();
  // Returns the mapping of (pool, ref). kInvalidInput if the broker refused
  // (not granted), kSystem if mmap failed (e.g. writable map of a read-only grant).
  Result<void*> map(uint32_t pool, uint32_t ref, bool writable);
  // Messages that arrived while waiting for a broker reply, for the main loop.
  std::deque<ctl::Msg>& deferred() { return deferred_; }

 private:
  ctl::Channel& ch_;
  std::map<std::pair<uint32_t, uint32_t>, void*> maps_;
  std::deque<ctl::Msg> deferred_;
};

}  // namespace sd::drvdom
