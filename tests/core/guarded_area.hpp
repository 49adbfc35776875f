// Anonymous memory of whole pages followed by a PROT_NONE guard page: any
// access past the end faults, so a test that passes read nothing beyond it.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstring>

namespace sdtest {

class GuardedArea {
 public:
  static constexpr size_t kPageSize = 4096;

  explicit GuardedArea(size_t pages) : bytes_(pages * kPageSize) {
    void* p = ::mmap(nullptr, bytes_ + kPageSize, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    if (::mprotect(static_cast<std::byte*>(p) + bytes_, kPageSize, PROT_NONE) != 0) {
      ::munmap(p, bytes_ + kPageSize);
      return;
    }
    base_ = static_cast<std::byte*>(p);
  }
  ~GuardedArea() {
    if (base_ != nullptr) ::munmap(base_, bytes_ + kPageSize);
  }
  GuardedArea(const GuardedArea&) = delete;
  GuardedArea& operator=(const GuardedArea&) = delete;

  bool ok() const { return base_ != nullptr; }
  size_t bytes() const { return bytes_; }
  // Start of the accessible pages.
  void* begin() const { return base_; }
  // Start of the last `n` accessible bytes: an area that ends at the guard.
  void* tail(size_t n) const { return base_ + bytes_ - n; }
  void fill(unsigned char byte) const { std::memset(base_, byte, bytes_); }

 private:
  size_t bytes_;
  std::byte* base_ = nullptr;
};

}  // namespace sdtest
