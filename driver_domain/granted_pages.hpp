// The pages a guest granted to this driver domain for one device, indexed by
// pool ref. Local platform: one fd per page (what the grant broker sent),
// mapped as soon as it arrives and its fd closed at once, so attached devices
// hold no fds (drvdom's RLIMIT_NOFILE is 1024 and one vif's pool alone is 514
// pages). Xen: one mapping of the whole pool made with gntdev
// (xen_grants.hpp), released through `unmap`.
//
// Limits left on the local platform: one mapping per page per device (vif
// 514, vbd 353, vsnd 35: the classes' kPoolPages) against vm.max_map_count
// (65530 by default, less the runtime's own), so about 120 vifs per driver
// domain; and 4 KiB of address space per page against the domain's `memory`
// (RLIMIT_AS): a vif takes about 2 MiB, so `memory = 128` holds about 50.
#pragma once

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <vector>

#include "sd/core/fd.hpp"

namespace sd::drvdom {

class GrantedPages {
 public:
  explicit GrantedPages(size_t n) : maps_(n, nullptr) {}
  using Unmap = std::function<void(uint8_t* base, size_t pages)>;
  GrantedPages(uint8_t* base, size_t n, Unmap unmap) : maps_(n, nullptr), received_(n), base_(base), unmap_(std::move(unmap)) {
    for (size_t i = 0; i < n; ++i) maps_[i] = base + i * kPage;
  }
  ~GrantedPages() {
    if (base_) {
      unmap_(base_, maps_.size());
      return;
    }
    for (auto* p : maps_)
      if (p) ::munmap(p, kPage);
  }
  GrantedPages(const GrantedPages&) = delete;
  GrantedPages& operator=(const GrantedPages&) = delete;

  // Maps the page for `ref` read-write and closes `fd`. False if `ref` is out
  // of range or already given (not counted as received); a page that cannot
  // be mapped counts as received and sets map_error() (the attach fails).
  bool add(size_t ref, UniqueFd fd) {
    if (base_ || ref >= maps_.size() || maps_[ref] || given_[ref]) return false;
    given_[ref] = true;
    ++received_;
    void* p = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED) {
      if (!map_error_) map_error_ = errno;
      return false;
    }
    maps_[ref] = static_cast<uint8_t*>(p);
    return true;
  }
  size_t received() const { return received_; }
  size_t size() const { return maps_.size(); }
  // errno of the first page that could not be mapped, 0 if none.
  int map_error() const { return map_error_; }

  // The page for `ref`; nullptr if it was never granted or could not be mapped.
  // Only reads, so a backend's I/O thread may call it once the pages are in.
  uint8_t* get(size_t ref) const { return ref < maps_.size() ? maps_[ref] : nullptr; }

 private:
  static constexpr size_t kPage = 4096;
  std::vector<uint8_t*> maps_;
  std::vector<bool> given_ = std::vector<bool>(maps_.size(), false);
  size_t received_ = 0;
  int map_error_ = 0;
  uint8_t* base_ = nullptr;  // Xen: the whole pool in one mapping
  Unmap unmap_;
};

}  // namespace sd::drvdom
