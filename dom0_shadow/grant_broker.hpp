// Answers driver domains' requests to map granted pages (local platform):
// the pool decides whether the page is granted to that domain; only then does
// the domain receive an fd for it.
#pragma once

#include <cstdint>
#include <map>

#include "sd/core/control_channel.hpp"
#include "sd/core/platform.hpp"

namespace sd::dom0 {

class GrantBroker {
 public:
  // Registers a pool; returns its id (what the peer names in kMapGrant).
  uint32_t add(platform::GrantPool* pool);
  void remove(uint32_t id);
  // Replies to one kMapGrant message from domain `peer`. Every field of the
  // message is untrusted: unknown pool or ungranted ref gets a refusal.
  void answer(const ctl::Msg& m, platform::DomId peer, ctl::Channel& ch) const;

 private:
  std::map<uint32_t, platform::GrantPool*> pools_;
  uint32_t next_ = 1;
};

}  // namespace sd::dom0
