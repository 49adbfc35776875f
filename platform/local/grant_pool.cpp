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

Result<std::unique_ptr<LocalGrantPool>> LocalGrantPool::create(size_t pages) {
  if (pages == 0 || pages > 65536) return fail(Code::kInvalidInput, "grant pool size must be 1..65536 pages");
  auto pool = std::unique_ptr<LocalGrantPool>(new LocalGrantPool());
  pool->grants_.resize(pages);
  pool->memfd_.reset(::memfd_create("sd-grant-pool", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!pool->memfd_) return sys_fail("memfd_create");
  if (::ftruncate(pool->memfd_.get(), static_cast<off_t>(pages * kPage)) != 0) return sys_fail("ftruncate grant pool");
  if (::fcntl(pool->memfd_.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    return sys_fail("seal grant pool");
  void* m = ::mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, pool->memfd_.get(), 0);
  if (m == MAP_FAILED) return sys_fail("mmap grant pool");
  pool->map_ = static_cast<uint8_t*>(m);
  return pool;
}

LocalGrantPool::~LocalGrantPool() {
  if (map_) ::munmap(map_, grants_.size() * kPage);
}

void* LocalGrantPool::page(platform::GrantRef ref) {
  return ref < grants_.size() ? map_ + size_t{ref} * kPage : nullptr;
}

Result<void> LocalGrantPool::grant(platform::GrantRef ref, platform::DomId peer, bool readonly) {
  if (ref >= grants_.size()) return fail(Code::kInvalidInput, "grant ref " + std::to_string(ref) + " out of range");
  auto& peers = grants_[ref].peers;
  if (std::find(peers.begin(), peers.end(), peer) == peers.end()) peers.push_back(peer);
  grants_[ref].readonly = readonly;
  return {};
}

Result<void> LocalGrantPool::revoke(platform::GrantRef ref) {
  if (ref >= grants_.size()) return fail(Code::kInvalidInput, "grant ref " + std::to_string(ref) + " out of range");
  grants_[ref].peers.clear();
  return {};
}

Result<UniqueFd> LocalGrantPool::fd_for_peer(platform::DomId peer) const {
  bool readonly = false;
  for (size_t ref = 0; ref < grants_.size(); ++ref) {
    const auto& g = grants_[ref];
    if (std::find(g.peers.begin(), g.peers.end(), peer) == g.peers.end())
      return fail(Code::kInvalidInput,
                  "grant ref " + std::to_string(ref) + " is not granted to domain " + std::to_string(peer));
    readonly = readonly || g.readonly;
  }
  // A read-only grant hands out a read-only open of the same memfd, so the
  // peer cannot map it writable.
  if (readonly && !ro_fd_) {
    std::string self = "/proc/self/fd/" + std::to_string(memfd_.get());
    ro_fd_.reset(::open(self.c_str(), O_RDONLY | O_CLOEXEC));
    if (!ro_fd_) return sys_fail("reopen grant pool read-only");
  }
  UniqueFd fd(::fcntl(readonly ? ro_fd_.get() : memfd_.get(), F_DUPFD_CLOEXEC, 0));
  if (!fd) return sys_fail("dup grant pool");
  return fd;
}

}  // namespace sd::local
