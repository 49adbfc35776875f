// A PoolSource whose pools are plain memory (gntshr/evtchn on Xen), with
// every make and release recorded, and a kick per backend domain.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "common/pool_source.hpp"
#include "sd/platform/local/event_channel.hpp"

namespace sd::front {

struct PoolLog {
  std::vector<std::string> events;  // "make 7", "release 7", ...
};

class MemPools final : public PoolSource {
 public:
  explicit MemPools(PoolLog& log) : log_(log) {}
  Result<Pool> make(uint32_t domid, size_t pages) override {
    log_.events.push_back("make " + std::to_string(domid));
    auto* mem = static_cast<uint8_t*>(std::aligned_alloc(4096, pages * 4096));
    std::memset(mem, 0, pages * 4096);
    Pool p;
    for (size_t i = 0; i < pages; ++i) p.pages.push_back(mem + i * 4096);
    UniqueFd a(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)), b(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    kicks_[domid].reset(::dup(b.get()));
    p.evt = std::make_unique<local::LocalEventChannel>(std::move(a), std::move(b));
    p.ref.owner = 1;
    p.ref.dir_ref = domid * 100;
    p.ref.pages = static_cast<uint32_t>(pages);
    p.ref.port = domid;
    PoolLog* log = &log_;
    p.keep = std::shared_ptr<uint8_t>(mem, [log, domid](uint8_t* m) {
      log->events.push_back("release " + std::to_string(domid));
      std::free(m);
    });
    bases_[domid] = mem;
    return p;
  }
  // The backend of domain `domid` notifies the frontend.
  bool kick(uint32_t domid) {
    uint64_t one = 1;
    return ::write(kicks_.at(domid).get(), &one, sizeof(one)) == sizeof(one);
  }
  std::map<uint32_t, uint8_t*> bases_;  // valid until released
  std::map<uint32_t, UniqueFd> kicks_;

 private:
  PoolLog& log_;
};

}  // namespace sd::front
