// The splitter log: the shadow's copy of one device connection, in shared
// memory (a memfd) that the guest's frontend writes and shadowd reads. The
// driver domain never sees it, so whatever the driver does to the ring, the
// copy of every request in flight and of the device's configuration stays
// intact (xen-blkfront's blk_shadow, vhost-user's inflight region).
//
//   header | config state (compacted, seqlock) | slot[0..nslots)
//   header = { ..., per ring: last response, recent service time }
//   slot   = { state, ring, len, order, posted_ns, copy of the request }
//
// The frontend records a request in the same step as it puts it on the ring
// and clears the slot when the response arrives, stamping the ring's
// progress (what the progress watchdog reads). Replay order is the order
// counter. Both sides treat the other's writes as untrusted: every read is
// bounds-checked and copied once.
#pragma once

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "sd/core/error.hpp"
#include "sd/core/fd.hpp"

namespace sd::shadow {

constexpr uint32_t kLogMagic = 0x53444c47;  // "SDLG"
constexpr uint32_t kLogVersion = 2;
constexpr uint16_t kLogRings = 2;  // rings a device has at most (vif: tx, rx)
// The recent service time is a peak that halves every this long.
constexpr uint64_t kServiceHalfLifeNs = 2000000000ULL;
constexpr size_t kMaxConfig = 240;
constexpr size_t kMaxReq = 40;

struct LogSlot {
  std::atomic<uint32_t> state;  // 0 free, 1 in flight
  uint16_t ring;                // which ring of the device (vif: 0 tx, 1 rx)
  uint16_t len;                 // bytes used in req
  uint64_t order;               // position in submission order
  uint64_t posted_ns;           // CLOCK_MONOTONIC when posted
  uint8_t req[kMaxReq];         // the request as put on the ring
};
static_assert(sizeof(LogSlot) == 64, "one cache line per slot");

struct LogHeader {
  uint32_t magic;
  uint32_t version;
  uint32_t nslots;
  std::atomic<uint32_t> enabled;     // 0: the frontend does not log (benchmark "shadow off")
  std::atomic<uint64_t> order;       // next order number
  std::atomic<uint64_t> config_seq;  // seqlock: odd while the frontend writes config
  uint32_t config_len;
  uint8_t config[kMaxConfig];
  // Per ring, written by the frontend at each response: when the last one
  // arrived, and the slowest recent service time (posted -> response) and
  // when it was seen (the peak decays with kServiceHalfLifeNs).
  struct Progress {
    std::atomic<uint64_t> done_ns;
    std::atomic<uint64_t> peak_ns;
    std::atomic<uint64_t> peak_at_ns;
  } progress[kLogRings];
  // Written by shadowd: when the current backend took the ring. Requests
  // posted before (they waited through an outage, then were replayed) are
  // no sample of the device's service time.
  std::atomic<uint64_t> serving_since_ns;
};

inline uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// One in-flight entry, copied out of the log.
struct Inflight {
  uint32_t slot;
  uint16_t ring;
  uint64_t order;
  uint64_t posted_ns;
  uint16_t len;
  uint8_t req[kMaxReq];
};

class SplitterLog {
 public:
  static size_t bytes_for(uint32_t nslots) { return sizeof(LogHeader) + size_t{nslots} * sizeof(LogSlot); }

  // shadowd: creates the memfd and initialises it.
  static Result<SplitterLog> create(uint32_t nslots) {
    UniqueFd fd(::memfd_create("sd-splitter-log", MFD_CLOEXEC));
    if (!fd) return sys_fail("memfd_create splitter log");
    if (::ftruncate(fd.get(), static_cast<off_t>(bytes_for(nslots))) != 0) return sys_fail("ftruncate splitter log");
    auto log = map(std::move(fd), nslots);
    if (!log) return log;
    LogHeader* h = log->header();
    h->magic = kLogMagic;
    h->version = kLogVersion;
    h->nslots = nslots;
    h->enabled.store(1);
    return log;
  }

  // Either side: maps an existing log of `nslots` slots (the count comes from
  // our own configuration, never from the shared header).
  static Result<SplitterLog> map(UniqueFd fd, uint32_t nslots) {
    size_t bytes = bytes_for(nslots);
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED) return sys_fail("mmap splitter log");
    SplitterLog log;
    log.fd_ = std::move(fd);
    log.base_ = static_cast<uint8_t*>(p);
    log.bytes_ = bytes;
    log.nslots_ = nslots;
    return log;
  }

  SplitterLog() = default;
  SplitterLog(SplitterLog&& o) noexcept { *this = std::move(o); }
  SplitterLog& operator=(SplitterLog&& o) noexcept {
    if (this != &o) {
      unmap();
      fd_ = std::move(o.fd_);
      base_ = std::exchange(o.base_, nullptr);
      bytes_ = o.bytes_;
      nslots_ = o.nslots_;
    }
    return *this;
  }
  ~SplitterLog() { unmap(); }

  int fd() const { return fd_.get(); }
  uint32_t nslots() const { return nslots_; }
  bool valid() const { return base_ != nullptr; }
  bool enabled() const { return header()->enabled.load(std::memory_order_relaxed) != 0; }
  void set_enabled(bool on) { header()->enabled.store(on ? 1 : 0); }

  // ---- frontend side -------------------------------------------------------

  // Records request `req` in slot `slot` (the request id's slot). Call in the
  // same step as putting it on the ring.
  void record(uint32_t slot, uint16_t ring, const void* req, size_t len) {
    if (slot >= nslots_ || len > kMaxReq || !enabled()) return;
    LogSlot* s = slots() + slot;
    s->ring = ring;
    s->len = static_cast<uint16_t>(len);
    s->order = header()->order.fetch_add(1, std::memory_order_relaxed);
    s->posted_ns = now_ns();
    std::memcpy(s->req, req, len);
    s->state.store(1, std::memory_order_release);
  }
  void complete(uint32_t slot) {
    if (slot >= nslots_) return;
    LogSlot* s = slots() + slot;
    if (s->state.load(std::memory_order_relaxed) == 1 && s->ring < kLogRings) {
      auto& p = header()->progress[s->ring];
      uint64_t now = now_ns(), took = now > s->posted_ns ? now - s->posted_ns : 0;
      bool timed = s->posted_ns >= header()->serving_since_ns.load(std::memory_order_relaxed);
      uint64_t peak =
          decayed(p.peak_ns.load(std::memory_order_relaxed), p.peak_at_ns.load(std::memory_order_relaxed), now);
      if (timed && took >= peak) {
        p.peak_ns.store(took, std::memory_order_relaxed);
        p.peak_at_ns.store(now, std::memory_order_relaxed);
      }
      p.done_ns.store(now, std::memory_order_release);
    }
    s->state.store(0, std::memory_order_release);
  }
  void set_config(const void* cfg, size_t len) {
    LogHeader* h = header();
    len = std::min(len, kMaxConfig);
    h->config_seq.fetch_add(1, std::memory_order_acq_rel);  // odd: writing
    std::memcpy(h->config, cfg, len);
    h->config_len = static_cast<uint32_t>(len);
    h->config_seq.fetch_add(1, std::memory_order_acq_rel);  // even: stable
  }

  // ---- shadowd side --------------------------------------------------------

  void set_serving_since(uint64_t ns) { header()->serving_since_ns.store(ns, std::memory_order_relaxed); }

  // ---- either side ---------------------------------------------------------

  // Copies the config state out (seqlock read; gives up after a few tries
  // if the writer keeps it busy). Returns the bytes copied.
  size_t get_config(void* out, size_t cap) const {
    const LogHeader* h = header();
    for (int tries = 0; tries < 100; ++tries) {
      uint64_t s1 = h->config_seq.load(std::memory_order_acquire);
      if (s1 & 1) continue;
      // SAFETY: length clamped to both buffers before the copy.
      size_t n = std::min<size_t>({h->config_len, kMaxConfig, cap});
      std::memcpy(out, h->config, n);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (h->config_seq.load(std::memory_order_relaxed) == s1) return n;
    }
    return 0;
  }

  // In-flight entries of `ring`, copied once, in submission order.
  std::vector<Inflight> inflight(uint16_t ring) const {
    std::vector<Inflight> out;
    for (uint32_t i = 0; i < nslots_; ++i) {
      const LogSlot* s = slots() + i;
      if (s->state.load(std::memory_order_acquire) != 1) continue;
      Inflight e;
      e.slot = i;
      e.ring = s->ring;
      e.order = s->order;
      e.posted_ns = s->posted_ns;
      // SAFETY: len is clamped before use; the copy is what we act on.
      e.len = std::min<uint16_t>(s->len, kMaxReq);
      std::memcpy(e.req, s->req, e.len);
      if (e.ring == ring) out.push_back(e);
    }
    std::sort(out.begin(), out.end(), [](const Inflight& a, const Inflight& b) { return a.order < b.order; });
    return out;
  }

  // What the progress watchdog reads of `ring`, in ms (0 if nothing
  // waits), counting from no earlier than `since`: the oldest waiting
  // request's age; how long requests have waited with no response from the
  // backend (since the later of the last response and the oldest request);
  // and the ring's recent service time. All from the frontend's stamps
  // (untrusted: a lying guest only misleads the watchdog of its own device).
  struct Idle {
    double oldest_ms = 0;
    double waiting_ms = 0;
    double service_ms = 0;
  };
  Idle idle(uint16_t ring, uint64_t since) const {
    Idle r;
    if (ring >= kLogRings) return r;
    uint64_t now = now_ns(), oldest = UINT64_MAX;
    for (uint32_t i = 0; i < nslots_; ++i) {
      const LogSlot* s = slots() + i;
      if (s->state.load(std::memory_order_acquire) == 1 && s->ring == ring) oldest = std::min(oldest, s->posted_ns);
    }
    const auto& p = header()->progress[ring];
    r.service_ms = static_cast<double>(decayed(p.peak_ns.load(std::memory_order_relaxed),
                                               p.peak_at_ns.load(std::memory_order_relaxed), now)) / 1e6;
    if (oldest == UINT64_MAX) return r;
    auto ms_since = [now](uint64_t t) { return t < now ? static_cast<double>(now - t) / 1e6 : 0.0; };
    r.oldest_ms = ms_since(std::max(oldest, since));
    r.waiting_ms = ms_since(std::max({oldest, since, p.done_ns.load(std::memory_order_acquire)}));
    return r;
  }

  size_t count(uint16_t ring) const {
    size_t n = 0;
    for (uint32_t i = 0; i < nslots_; ++i)
      if (slots()[i].state.load(std::memory_order_relaxed) == 1 && slots()[i].ring == ring) ++n;
    return n;
  }

 private:
  static uint64_t decayed(uint64_t peak, uint64_t at, uint64_t now) {
    uint64_t halvings = now > at ? (now - at) / kServiceHalfLifeNs : 0;
    return halvings >= 64 ? 0 : peak >> halvings;
  }
  LogHeader* header() const { return reinterpret_cast<LogHeader*>(base_); }
  LogSlot* slots() const { return reinterpret_cast<LogSlot*>(base_ + sizeof(LogHeader)); }
  void unmap() {
    if (base_) ::munmap(base_, bytes_);
    base_ = nullptr;
  }

  UniqueFd fd_;
  uint8_t* base_ = nullptr;
  size_t bytes_ = 0;
  uint32_t nslots_ = 0;
};

}  // namespace sd::shadow
