// The pages a guest granted to this driver domain for one device, indexed by
// pool ref. Local platform: one fd per page (what the grant broker sent),
// mapped on first use, so a fresh backend can start serving before it has
// touched all of them. Xen: one mapping of the whole pool made with gntdev
// (xen_grants.hpp), released through `unmap`.
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "sd/core/fd.hpp"

namespace sd::drvdom {

class GrantedPages {
 public:
  explicit GrantedPages(size_t n) : fds_(n), maps_(n, nullptr) {}
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

  // Keeps the fd for `ref`; false if out of range or already given.
  bool add(size_t ref, UniqueFd fd) {
    if (ref >= fds_.size() || fds_[ref]) return false;
    fds_[ref] = std::move(fd);
    ++received_;
    return true;
  }
  size_t received() const { return received_; }
  size_t size() const { return maps_.size(); }

  // The page for `ref`, mapped read-write on first use; nullptr if it was
  // never granted or cannot be mapped.
  uint8_t* get(size_t ref) {
    if (ref >= maps_.size()) return nullptr;
    if (maps_[ref]) return maps_[ref];
    if (ref >= fds_.size() || !fds_[ref]) return nullptr;
    void* p = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fds_[ref].get(), 0);
    if (p == MAP_FAILED) return nullptr;
    fds_[ref].reset();
    maps_[ref] = static_cast<uint8_t*>(p);
    return maps_[ref];
  }
  // Maps everything now (a warm standby does its work before it is needed).
  void map_all() {
    for (size_t i = 0; i < maps_.size(); ++i) (void)get(i);
  }

 private:
  static constexpr size_t kPage = 4096;
  std::vector<UniqueFd> fds_;
  std::vector<uint8_t*> maps_;
  size_t received_ = 0;
  uint8_t* base_ = nullptr;  // Xen: the whole pool in one mapping
  Unmap unmap_;
};

}  // namespace sd::drvdom
