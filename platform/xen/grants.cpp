#include "sd/platform/xen/grants.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

extern "C" {
#include <xengnttab.h>
}

namespace sd::xen {

// ---- owner -----------------------------------------------------------------

Result<std::unique_ptr<SharedPool>> SharedPool::share(uint32_t peer, size_t pages) {
  if (pages == 0 || pages > PoolDirectory::kMaxRefs)
    return fail(Code::kInvalidInput, "xen: a shared pool has 1.." + std::to_string(PoolDirectory::kMaxRefs) + " pages");
  std::unique_ptr<SharedPool> p(new SharedPool());
  p->h_ = xengntshr_open(nullptr, 0);
  if (!p->h_)
    return fail(Code::kUnavailable,
                std::string("xen: xengntshr_open: ") + std::strerror(errno) + " (is xen-gntalloc loaded?)");
  std::vector<uint32_t> refs(pages);
  void* base = xengntshr_share_pages(p->h_, peer, static_cast<int>(pages), refs.data(), 1);
  if (!base)
    return fail(Code::kSystem, "xen: cannot share " + std::to_string(pages) + " pages with domain " +
                                   std::to_string(peer) + ": " + std::strerror(errno));
  p->base_ = static_cast<uint8_t*>(base);
  p->pages_ = pages;
  uint32_t dir_ref = 0;
  void* dir = xengntshr_share_pages(p->h_, peer, 1, &dir_ref, 0);  // the peer only reads it
  if (!dir)
    return fail(Code::kSystem, "xen: cannot share the pool directory with domain " + std::to_string(peer) + ": " +
                                   std::strerror(errno));
  p->dir_ = static_cast<uint8_t*>(dir);
  p->dir_ref_ = dir_ref;
  auto* d = reinterpret_cast<PoolDirectory*>(p->dir_);
  d->magic = PoolDirectory::kMagic;
  d->count = static_cast<uint32_t>(pages);
  std::memcpy(d->refs, refs.data(), pages * sizeof(uint32_t));
  return p;
}

SharedPool::~SharedPool() {
  if (dir_) (void)xengntshr_unshare(h_, dir_, 1);
  if (base_) (void)xengntshr_unshare(h_, base_, static_cast<uint32_t>(pages_));
  if (h_) xengntshr_close(h_);
}

// ---- peer ------------------------------------------------------------------

Result<std::unique_ptr<MappedPool>> MappedPool::map(uint32_t owner, uint32_t dir_ref, size_t pages) {
  if (pages == 0 || pages > PoolDirectory::kMaxRefs)
    return fail(Code::kInvalidInput, "xen: a pool has 1.." + std::to_string(PoolDirectory::kMaxRefs) + " pages");
  std::unique_ptr<MappedPool> p(new MappedPool());
  p->h_ = xengnttab_open(nullptr, 0);
  if (!p->h_)
    return fail(Code::kUnavailable,
                std::string("xen: xengnttab_open: ") + std::strerror(errno) + " (is xen-gntdev loaded?)");
  (void)xengnttab_set_max_grants(p->h_, static_cast<uint32_t>(pages + 1));
  void* dir = xengnttab_map_grant_ref(p->h_, owner, dir_ref, PROT_READ);
  if (!dir)
    return fail(Code::kInvalidInput, "xen: cannot map the pool directory (ref " + std::to_string(dir_ref) +
                                         ") of domain " + std::to_string(owner) + ": " + std::strerror(errno));
  // Copy it out before checking: the owner may change it under us.
  PoolDirectory d;
  std::memcpy(&d, dir, sizeof(d));
  (void)xengnttab_unmap(p->h_, dir, 1);
  if (d.magic != PoolDirectory::kMagic || d.count != pages)
    return fail(Code::kInvalidInput, "xen: domain " + std::to_string(owner) + "'s pool directory is not valid (magic " +
                                         std::to_string(d.magic) + ", " + std::to_string(d.count) + " pages, expected " +
                                         std::to_string(pages) + ")");
  void* base = xengnttab_map_domain_grant_refs(p->h_, static_cast<uint32_t>(pages), owner, d.refs,
                                               PROT_READ | PROT_WRITE);
  if (!base)
    return fail(Code::kInvalidInput, "xen: cannot map the " + std::to_string(pages) + " pages domain " +
                                         std::to_string(owner) + " granted: " + std::strerror(errno));
  p->base_ = static_cast<uint8_t*>(base);
  p->pages_ = pages;
  return p;
}

MappedPool::~MappedPool() {
  if (base_) (void)xengnttab_unmap(h_, base_, static_cast<uint32_t>(pages_));
  if (h_) xengnttab_close(h_);
}

}  // namespace sd::xen
