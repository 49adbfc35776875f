// A device's page pool shared between two domains with Xen grant tables.
//
// The owner (the guest's frontend) shares `pages` pages with one peer domain
// through gntshr (/dev/xen/gntalloc), plus one directory page that lists
// their grant refs; the peer (the backend in the driver domain) is told the
// directory's ref, maps it read-only, checks it, and maps the whole pool in
// one contiguous mapping through gntdev. Pool ref i is page i, as on the
// local platform. A grant is to one domain: a new backend incarnation (new
// domid) gets a new pool, into which the frontend replays what is in flight.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "sd/core/error.hpp"

struct xengntdev_handle;  // libxengnttab's handle type for gnttab and gntshr alike

namespace sd::xen {

// Directory page: magic, count, then `count` grant refs.
struct PoolDirectory {
  static constexpr uint32_t kMagic = 0x53445031;  // "SDP1"
  static constexpr uint32_t kMaxRefs = (4096 - 8) / 4;
  uint32_t magic;
  uint32_t count;
  uint32_t refs[kMaxRefs];
};
static_assert(sizeof(PoolDirectory) == 4096);

// Owner side.
class SharedPool {
 public:
  static Result<std::unique_ptr<SharedPool>> share(uint32_t peer, size_t pages);
  ~SharedPool();
  uint8_t* page(size_t i) const { return i < pages_ ? base_ + i * 4096 : nullptr; }
  size_t pages() const { return pages_; }
  uint32_t directory_ref() const { return dir_ref_; }

 private:
  SharedPool() = default;
  xengntdev_handle* h_ = nullptr;  // gntshr
  uint8_t* base_ = nullptr;
  uint8_t* dir_ = nullptr;
  size_t pages_ = 0;
  uint32_t dir_ref_ = 0;
};

// Peer side: maps the pool `owner` shares, given its directory ref. The
// directory comes from an untrusted domain: a wrong magic or count, or refs
// that do not map, are kInvalidInput.
class MappedPool {
 public:
  static Result<std::unique_ptr<MappedPool>> map(uint32_t owner, uint32_t dir_ref, size_t pages);
  ~MappedPool();
  uint8_t* base() const { return base_; }
  size_t pages() const { return pages_; }

 private:
  MappedPool() = default;
  xengntdev_handle* h_ = nullptr;  // gnttab
  uint8_t* base_ = nullptr;
  size_t pages_ = 0;
};

}  // namespace sd::xen
