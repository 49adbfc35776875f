#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "local/local_platform.hpp"

namespace sd::local {

namespace {
constexpr size_t kPage = 4096;
}

// One memfd per page: a peer receives fds only for the pages granted to it,
// so the kernel, not the peer's good will, limits what it can map.
Result<std::unique_ptr<LocalGrantPool>> LocalGrantPool::create(size_t pages) {
  if (pages == 0 || pages > 65536) return fail(Code::kInvalidInput, "grant pool size must be 1..65536 pages");
  auto pool = std::unique_ptr<LocalGrantPool>(new LocalGrantPool());
  pool->pages_.resize(pages);
  for (size_t i = 0; i < pages; ++i) {
    Page& p = pool->pages_[i];
    p.memfd.reset(::memfd_create("sd-grant", MFD_CLOEXEC));
    if (!p.memfd) return sys_fail("memfd_create");
    if (::ftruncate(p.memfd.get(), kPage) != 0) return sys_fail("ftruncate grant page");
    p.map = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, p.memfd.get(), 0);
    if (p.map == MAP_FAILED) {
      p.map = nullptr;
      return sys_fail("mmap grant page");
    }
  }
  return pool;
}

LocalGrantPool::~LocalGrantPool() {
  for (auto& p : pages_)
    if (p.map) ::munmap(p.map, kPage);
}

void* LocalGrantPool::page(platform::GrantRef ref) {
  return ref < pages_.size() ? pages_[ref].map : nullptr;
}

Result<void> LocalGrantPool::grant(platform::GrantRef ref, platform::DomId peer, bool readonly) {
  if (ref >= pages_.size()) return fail(Code::kInvalidInput, "grant ref " + std::to_string(ref) + " out of range");
  auto& peers = pages_[ref].peers;
  if (std::find(peers.begin(), peers.end(), peer) == peers.end()) peers.push_back(peer);
  pages_[ref].readonly = readonly;
  return {};
}

Result<void> LocalGrantPool::revoke(platform::GrantRef ref) {
  if (ref >= pages_.size()) return fail(Code::kInvalidInput, "grant ref " + std::to_string(ref) + " out of range");
  pages_[ref].peers.clear();
  return {};
}

Result<UniqueFd> LocalGrantPool::fd_for_peer(platform::GrantRef ref, platform::DomId peer) const {
  if (ref >= pages_.size())
    return fail(Code::kInvalidInput, "grant ref " + std::to_string(ref) + " out of range");
  const Page& p = pages_[ref];
  if (std::find(p.peers.begin(), p.peers.end(), peer) == p.peers.end())
    return fail(Code::kInvalidInput, "grant ref " + std::to_string(ref) + " is not granted to domain " +
                                         std::to_string(peer));
  // A read-only grant hands out a read-only open of the same memfd, so the
  // peer cannot map it writable.
  if (!p.readonly) {
    UniqueFd fd(::fcntl(p.memfd.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd) return sys_fail("dup grant page");
    return fd;
  }
  if (!p.ro_fd) {
    std::string self = "/proc/self/fd/" + std::to_string(p.memfd.get());
    p.ro_fd.reset(::open(self.c_str(), O_RDONLY | O_CLOEXEC));
    if (!p.ro_fd) return sys_fail("reopen grant page read-only");
  }
  UniqueFd fd(::fcntl(p.ro_fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!fd) return sys_fail("dup grant page");
  return fd;
}

}  // namespace sd::local
