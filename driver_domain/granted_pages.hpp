// The pages a guest granted to this driver domain for one device, indexed by
// pool ref. Local platform: fds holding runs of pages (shadowd sends the
// whole pool as one fd), each mapped as soon as it arrives and closed at
// once, so attached devices hold no fds (drvdom's RLIMIT_NOFILE is 1024).
// Xen: one mapping of the whole pool made with gntdev
// (sd/platform/xen/grants.hpp), released through `unmap`.
//
// Limits left on the local platform: address space, 4 KiB per page against
// the domain's `memory` (RLIMIT_AS): a vif's pool is about 2 MiB, so
// `memory = 256` holds about 100 vifs beside the runtime.
#pragma once

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "sd/core/control_channel.hpp"
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
    for (auto [p, n] : runs_) ::munmap(p, n * kPage);
  }
  GrantedPages(const GrantedPages&) = delete;
  GrantedPages& operator=(const GrantedPages&) = delete;

  // Maps the pages `fd` holds (ctl::granted_pages) read-write from `ref` on
  // and closes `fd`; returns how many pages it took (the next fd's ref is
  // ref + that). 0 if they do not fit the pool or a page is already given;
  // an fd that cannot be mapped takes one page and sets map_error() (the
  // attach fails).
  size_t add(size_t ref, UniqueFd fd) {
    auto n = ctl::granted_pages(fd.get());
    size_t count = n ? *n : 1;
    if (base_ || ref >= maps_.size() || count > maps_.size() - ref) return 0;
    for (size_t i = ref; i < ref + count; ++i)
      if (given_[i]) return 0;
    for (size_t i = ref; i < ref + count; ++i) given_[i] = true;
    received_ += count;
    void* p = n ? ::mmap(nullptr, count * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0) : MAP_FAILED;
    if (p == MAP_FAILED) {
      if (!map_error_) map_error_ = n ? errno : EINVAL;
      return count;
    }
    runs_.emplace_back(static_cast<uint8_t*>(p), count);
    for (size_t i = 0; i < count; ++i) maps_[ref + i] = static_cast<uint8_t*>(p) + i * kPage;
    return count;
  }
  // Pages received so far (mapped or not).
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
  std::vector<std::pair<uint8_t*, size_t>> runs_;  // local: each fd's mapping, in pages
  size_t received_ = 0;
  int map_error_ = 0;
  uint8_t* base_ = nullptr;  // Xen: the whole pool in one mapping
  Unmap unmap_;
};

}  // namespace sd::drvdom
