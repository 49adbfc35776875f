// A disk as the guest's side of a vbd sees it: Blkfront (the beam splitter,
// over the driver domain's blkif ring) implements it; the dom0 ring proxy of
// an unmodified guest (guest_disk.hpp) executes the guest's requests on it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sd::front {

// 0 or -errno; each blocks until the disk answered.
class BlockTarget {
 public:
  virtual ~BlockTarget() = default;
  virtual int read(uint64_t off, size_t len, uint8_t* out) = 0;
  virtual int write(uint64_t off, size_t len, const uint8_t* in) = 0;
  virtual int flush() = 0;
  virtual int discard(uint64_t off, uint64_t len) = 0;
};

}  // namespace sd::front
