#include "local/local_platform.hpp"

#include <sys/eventfd.h>

namespace sd::local {

LocalPlatform::LocalPlatform(boost::asio::io_context& io, platform::Options opts)
    : domains_(io, std::move(opts)), store_(io) {}

Result<std::pair<std::unique_ptr<LocalEventChannel>, std::unique_ptr<LocalEventChannel>>> make_local_event_channel() {
  // One eventfd per direction: a->b and b->a.
  UniqueFd ab(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), ba(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!ab || !ba) return sys_fail("eventfd");
  UniqueFd ab2(::dup(ab.get())), ba2(::dup(ba.get()));
  if (!ab2 || !ba2) return sys_fail("dup eventfd");
  return std::make_pair(std::make_unique<LocalEventChannel>(std::move(ab), std::move(ba)),
                        std::make_unique<LocalEventChannel>(std::move(ba2), std::move(ab2)));
}

Result<std::pair<std::unique_ptr<platform::EventChannel>, std::unique_ptr<platform::EventChannel>>>
LocalPlatform::make_event_channel() {
  auto p = make_local_event_channel();
  if (!p) return std::unexpected(p.error());
  return std::make_pair(std::unique_ptr<platform::EventChannel>(std::move(p->first)),
                        std::unique_ptr<platform::EventChannel>(std::move(p->second)));
}

Result<std::unique_ptr<platform::GrantPool>> LocalPlatform::make_grant_pool(size_t pages) {
  auto p = LocalGrantPool::create(pages);
  if (!p) return std::unexpected(p.error());
  return std::unique_ptr<platform::GrantPool>(std::move(*p));
}

}  // namespace sd::local
