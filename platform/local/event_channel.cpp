#include <sys/eventfd.h>
#include <unistd.h>

#include "sd/platform/local/event_channel.hpp"

namespace sd::local {

Result<void> LocalEventChannel::notify() {
  uint64_t one = 1;
  if (::write(tx_.get(), &one, sizeof(one)) != sizeof(one)) return sys_fail("eventfd write");
  return {};
}

Result<uint64_t> LocalEventChannel::consume() {
  uint64_t n = 0;
  ssize_t r = ::read(rx_.get(), &n, sizeof(n));
  if (r == sizeof(n)) return n;
  if (r < 0 && errno == EAGAIN) return uint64_t{0};
  return sys_fail("eventfd read");
}

}  // namespace sd::local
