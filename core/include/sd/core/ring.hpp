// Xen split-driver rings (xen/io/ring.h, DEFINE_RING_TYPES) for C++, hardened
// against an untrusted peer.
//
// The shared page has exactly Xen's layout (the type comes from
// DEFINE_RING_TYPES), so either end may be a C program using the RING_*
// macros or a real Xen PV driver. What differs from the macros is trust:
//
//   * every ring slot written by the other end is copied out exactly once
//     into a local value before anything looks at it (no double fetch);
//   * every producer index written by the other end is read once per call
//     and validated against what this end knows before it is used;
//   * slot addresses are always masked into [0, size), and size is derived
//     from the byte length of the shared area, so no access leaves it;
//   * our own indices live in this object, never re-read from the page.
//
// A misbehaving peer gets an error, never undefined behaviour: a backend that
// lies is kRestartReplay (restart the driver domain and replay); a frontend
// that lies (seen by shadowd when it plays the backend) is kInvalidInput.
//
// Binding a ring type:
//
//   DEFINE_RING_TYPES(mydev, struct mydev_request, struct mydev_response);
//   struct MyTraits {
//     using Sring = mydev_sring;
//     using Req = mydev_request;
//     using Rsp = mydev_response;
//     static uint64_t req_id(const Req& r) { return r.id; }
//     static uint64_t rsp_id(const Rsp& r) { return r.id; }
//   };
//   auto front = sd::ring::FrontRing<MyTraits>::attach(page, 4096, true);
//
// Memory ordering follows ring.h one for one: xen_wmb() is a release fence,
// xen_rmb() an acquire fence (folded into an acquire load of the producer
// index), xen_mb() a seq_cst fence. Shared indices are accessed through
// std::atomic_ref so that the compiler neither tears nor caches them.
//
// Not thread-safe: one FrontRing/BackRing object per end, used by one thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sd/core/error.hpp"
#include "sd/core/xen_ring_compat.h"

namespace sd::ring {

namespace detail {

static_assert(std::atomic_ref<RING_IDX>::is_always_lock_free,
              "ring indices are shared between processes: atomics must be lock-free");
static_assert(std::atomic_ref<RING_IDX>::required_alignment <= alignof(RING_IDX));

// One union entry of the shared ring (request or response).
template <class Sring>
using Entry = std::remove_cvref_t<decltype(std::declval<Sring&>().ring[0])>;

// Loads of shared indices. Every caller marks its use with SAFETY: the value
// is one aligned 32-bit atomic load (never torn), taken once into a local and
// validated (or only used in wrapping arithmetic) before it selects anything.
inline RING_IDX load_relaxed(RING_IDX& shared_field) {
  return std::atomic_ref<RING_IDX>(shared_field).load(std::memory_order_relaxed);
}

inline RING_IDX load_acquire(RING_IDX& shared_field) {
  return std::atomic_ref<RING_IDX>(shared_field).load(std::memory_order_acquire);
}

inline void store_relaxed(RING_IDX& shared_field, RING_IDX value) {
  std::atomic_ref<RING_IDX>(shared_field).store(value, std::memory_order_relaxed);
}

inline std::string idx(RING_IDX v) { return std::to_string(v); }

// Number of entries that fit in `bytes` of shared area, rounded down to a
// power of two: the same value as Xen's __RING_SIZE(sring, bytes).
template <class Sring>
Result<unsigned> entries_for(const void* shared, size_t bytes) {
  constexpr size_t kHeader = offsetof(Sring, ring);
  constexpr size_t kEntry = sizeof(Entry<Sring>);
  if (shared == nullptr) return fail(Code::kInvalidInput, "ring: shared area is null");
  if (reinterpret_cast<std::uintptr_t>(shared) % alignof(Sring) != 0) {
    return fail(Code::kInvalidInput, "ring: shared area is not aligned to " +
                                         std::to_string(alignof(Sring)) + " bytes");
  }
  if (bytes < kHeader + kEntry) {
    return fail(Code::kInvalidInput,
                "ring: shared area of " + std::to_string(bytes) + " bytes is too small (need " +
                    std::to_string(kHeader) + " header bytes + at least one " +
                    std::to_string(kEntry) + "-byte entry)");
  }
  const size_t n = std::bit_floor((bytes - kHeader) / kEntry);
  if (n > (size_t{1} << 31)) {
    return fail(Code::kInvalidInput, "ring: " + std::to_string(n) +
                                         " entries do not fit 32-bit ring indices");
  }
  return static_cast<unsigned>(n);
}

// SHARED_RING_INIT: both producer indices 0, both event indices 1, padding 0.
template <class Sring>
void init_shared_header(Sring* s) {
  store_relaxed(s->req_prod, 0);
  store_relaxed(s->rsp_prod, 0);
  store_relaxed(s->req_event, 1);
  store_relaxed(s->rsp_event, 1);
  std::memset(s->pvt.pvt_pad, 0, sizeof(s->pvt.pvt_pad));
  std::memset(s->__pad, 0, sizeof(s->__pad));
  // Publish the initialised header before whatever tells the peer about it.
  std::atomic_thread_fence(std::memory_order_release);
}

// Attaching an end: the entry count and where our indices start. init: the
// header is initialised and we start at 0; else at our own producer index on
// the page (`own_prod`), read once. SAFETY: untrusted index, read once; any
// value is a valid start (an impossible peer index relative to it is caught
// by the next get_response/get_request).
template <class Sring>
Result<std::pair<unsigned, RING_IDX>> attach_at(void* shared, size_t bytes, bool init, RING_IDX Sring::*own_prod) {
  auto n = entries_for<Sring>(shared, bytes);
  if (!n) return std::unexpected(n.error());
  auto* s = static_cast<Sring*>(shared);
  if (init) init_shared_header(s);
  return std::pair{*n, init ? RING_IDX{0} : load_acquire(s->*own_prod)};
}

// RING_PUSH_{REQUESTS,RESPONSES}_AND_CHECK_NOTIFY: publishes `pvt` in the
// shared producer index `prod` and returns true if the peer's `event` lies
// among the entries just published (send the event then). Unlike the macro,
// the old producer value is `pub`, our copy of what we last published, not a
// re-read of the shared page.
inline bool publish(RING_IDX& prod, RING_IDX& event, RING_IDX& pub, RING_IDX pvt) {
  const RING_IDX old_prod = pub;
  // xen_wmb: the peer sees the slots before the new producer index.
  std::atomic_thread_fence(std::memory_order_release);
  store_relaxed(prod, pvt);
  pub = pvt;
  // xen_mb: the peer sees the new producer index before we read its event index.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // SAFETY: untrusted index, read once; it only decides whether to notify.
  const RING_IDX ev = load_relaxed(event);
  return static_cast<RING_IDX>(pvt - ev) < static_cast<RING_IDX>(pvt - old_prod);
}

// Geometry shared by both ends: the header and the masked slot array.
template <class T>
class RingArea {
 public:
  using Sring = typename T::Sring;
  using Req = typename T::Req;
  using Rsp = typename T::Rsp;

  static_assert(std::is_trivially_copyable_v<Req> && std::is_trivially_copyable_v<Rsp>,
                "ring messages are copied with memcpy");
  static_assert(sizeof(Req) <= sizeof(Entry<Sring>) && sizeof(Rsp) <= sizeof(Entry<Sring>));
  static_assert(std::is_standard_layout_v<Sring>, "Sring must come from DEFINE_RING_TYPES");

  RingArea(Sring* s, unsigned size) : sring_(s), size_(size) {}

  unsigned size() const { return size_; }
  Sring* sring() const { return sring_; }

  // Address of the slot for index i. The mask keeps it inside [0, size), and
  // size entries after the header fit in the area (checked by entries_for).
  std::byte* slot(RING_IDX i) const {
    return reinterpret_cast<std::byte*>(sring_) + offsetof(Sring, ring) +
           static_cast<size_t>(i & (size_ - 1)) * sizeof(Entry<Sring>);
  }

 private:
  Sring* sring_;
  unsigned size_;
};

}  // namespace detail

// The frontend end: produces requests, consumes responses.
template <class T>
class FrontRing {
 public:
  using Sring = typename T::Sring;
  using Req = typename T::Req;
  using Rsp = typename T::Rsp;

  // Attaches to `bytes` bytes of shared memory at `shared` (one page, or more
  // for multi-page rings; aligned like Sring).
  //   init=true:  initialise the shared header (SHARED_RING_INIT +
  //               FRONT_RING_INIT); our indices start at 0.
  //   init=false: the ring was initialised by someone else
  //               (FRONT_RING_ATTACH); our indices start at the shared
  //               req_prod, read once. The ring is expected to be quiescent:
  //               responses already published for requests this object did
  //               not send make get_response() fail with kRestartReplay.
  // Errors: kInvalidInput if `shared` is null or misaligned, or `bytes`
  // cannot hold the header and one entry.
  static Result<FrontRing> attach(void* shared, size_t bytes, bool init) {
    auto at = detail::attach_at<Sring>(shared, bytes, init, &Sring::req_prod);
    if (!at) return std::unexpected(at.error());
    return FrontRing(static_cast<Sring*>(shared), at->first, at->second);
  }

  FrontRing(FrontRing&&) noexcept = default;
  FrontRing& operator=(FrontRing&&) noexcept = default;
  FrontRing(const FrontRing&) = delete;
  FrontRing& operator=(const FrontRing&) = delete;

  // Number of entries (a power of two; Xen's RING_SIZE).
  unsigned size() const { return area_.size(); }

  // Slots we may still fill before a response frees one (RING_FREE_REQUESTS).
  // Computed from our private indices only.
  unsigned free_requests() const { return area_.size() - (req_prod_pvt_ - rsp_cons_); }

  // Copies `req` into the next private slot; it becomes visible to the
  // backend at the next push_requests(). kRetry if the ring is full.
  Result<void> put_request(const Req& req) {
    if (free_requests() == 0) {
      return fail(Code::kRetry, "ring: no free request slot (" + std::to_string(size()) +
                                    " requests awaiting responses)");
    }
    std::memcpy(area_.slot(req_prod_pvt_), &req, sizeof(Req));
    ++req_prod_pvt_;
    return {};
  }

  // Publishes the requests put so far; true if the backend asked to be
  // notified: send the event then (detail::publish).
  bool push_requests() {
    return detail::publish(area_.sring()->req_prod, area_.sring()->req_event, req_prod_pub_, req_prod_pvt_);
  }

  // The next response, copied once out of the shared page.
  //   value:   a response (rsp_cons has advanced past it);
  //   nullopt: no new response;
  //   error kRestartReplay: the backend published an rsp_prod that is
  //     impossible (more responses than requests we published, or behind
  //     rsp_cons); the message says which values. Our state is unchanged.
  // The id is not checked here: use get_checked_response for that.
  Result<std::optional<Rsp>> get_response() {
    // SAFETY: untrusted index, read once into `prod` and validated below
    // before it is used. Read rsp_prod exactly once. The acquire load stands for ring.h's
    // "rp = rsp_prod; xen_rmb();": the slot read below cannot see data older
    // than the index that announced it.
    const RING_IDX prod = detail::load_acquire(area_.sring()->rsp_prod);
    const RING_IDX ready = prod - rsp_cons_;
    const RING_IDX outstanding = req_prod_pub_ - rsp_cons_;
    if (ready > outstanding) {
      return fail(Code::kRestartReplay,
                  "ring: backend rsp_prod=" + detail::idx(prod) + " is beyond the requests published (req_prod=" +
                      detail::idx(req_prod_pub_) + ", rsp_cons=" + detail::idx(rsp_cons_) + ": " +
                      detail::idx(outstanding) + " responses possible, " +
                      std::to_string(static_cast<int32_t>(ready)) +  // negative: rsp_prod went backwards
                      " claimed, ring size " + std::to_string(size()) + ")");
    }
    if (ready == 0) return std::optional<Rsp>{};
    Rsp rsp;
    // SAFETY: untrusted slot. slot() masks the index into [0, size) and the
    // area holds size entries, so the copy stays inside the shared area. It
    // is the only read of this slot for this response: everything after
    // works on the local copy, which the backend cannot change.
    std::memcpy(&rsp, area_.slot(rsp_cons_), sizeof(Rsp));
    ++rsp_cons_;
    return std::optional<Rsp>(rsp);
  }

  // RING_FINAL_CHECK_FOR_RESPONSES: call before going to sleep. Returns true
  // if responses (or an impossible rsp_prod, which get_response() will
  // report) are pending; otherwise sets rsp_event so that the backend
  // notifies us on the very next response, and checks once more.
  bool final_check_for_responses() {
    Sring* s = area_.sring();
    // SAFETY: the two rsp_prod reads only yield a yes/no hint; no slot is
    // read here, get_response() re-reads and validates the index.
    if (detail::load_relaxed(s->rsp_prod) != rsp_cons_) return true;
    detail::store_relaxed(s->rsp_event, rsp_cons_ + 1);
    // xen_mb: the backend sees rsp_event before we re-read rsp_prod.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return detail::load_relaxed(s->rsp_prod) != rsp_cons_;
  }

  RING_IDX req_prod_pvt() const { return req_prod_pvt_; }
  RING_IDX rsp_cons() const { return rsp_cons_; }
  // What we last published in the shared req_prod.
  RING_IDX req_prod_published() const { return req_prod_pub_; }

  // Recovery: hands the ring back empty. Re-initialises the shared header
  // (SHARED_RING_INIT) and our private indices to 0. Requests not yet
  // answered are forgotten here; the caller replays them.
  void reset() {
    detail::init_shared_header(area_.sring());
    req_prod_pvt_ = 0;
    rsp_cons_ = 0;
    req_prod_pub_ = 0;
  }

 private:
  FrontRing(Sring* s, unsigned size, RING_IDX start)
      : area_(s, size), req_prod_pvt_(start), rsp_cons_(start), req_prod_pub_(start) {}

  detail::RingArea<T> area_;
  RING_IDX req_prod_pvt_;
  RING_IDX rsp_cons_;
  RING_IDX req_prod_pub_;
};

// The backend end: consumes requests, produces responses. shadowd uses it in
// active mode, where the frontend is a guest: still untrusted input.
template <class T>
class BackRing {
 public:
  using Sring = typename T::Sring;
  using Req = typename T::Req;
  using Rsp = typename T::Rsp;

  // Attaches to `bytes` bytes of shared memory at `shared`.
  //   init=true:  initialise the shared header (SHARED_RING_INIT +
  //               BACK_RING_INIT); indices start at 0.
  //   init=false: BACK_RING_ATTACH at the shared rsp_prod, read once: the
  //               responses published so far count as done, requests after
  //               them are consumed by get_request() (this is how a new
  //               backend takes over a ring).
  // Errors: kInvalidInput as for FrontRing::attach.
  static Result<BackRing> attach(void* shared, size_t bytes, bool init) {
    auto at = detail::attach_at<Sring>(shared, bytes, init, &Sring::rsp_prod);
    if (!at) return std::unexpected(at.error());
    return BackRing(static_cast<Sring*>(shared), at->first, at->second);
  }

  BackRing(BackRing&&) noexcept = default;
  BackRing& operator=(BackRing&&) noexcept = default;
  BackRing(const BackRing&) = delete;
  BackRing& operator=(const BackRing&) = delete;

  unsigned size() const { return area_.size(); }

  // The next request, copied once out of the shared page.
  //   value:   a request (req_cons has advanced past it);
  //   nullopt: no new request (or every slot holds a request still awaiting
  //            its response);
  //   error kInvalidInput: the frontend published an impossible req_prod
  //     (more than `size` requests beyond rsp_prod_pvt, or behind req_cons:
  //     RING_REQUEST_PROD_OVERFLOW). Our state is unchanged.
  Result<std::optional<Req>> get_request() {
    // SAFETY: untrusted index, read once into `prod` and validated below
    // before it is used. Acquire = "rp = req_prod; xen_rmb();".
    const RING_IDX prod = detail::load_acquire(area_.sring()->req_prod);
    const RING_IDX unconsumed = prod - req_cons_;
    // Slots that can hold requests not consumed yet: the rest are owed a
    // response by us.
    const RING_IDX room = area_.size() - (req_cons_ - rsp_prod_pvt_);
    if (unconsumed > room) {
      return fail(Code::kInvalidInput,
                  "ring: frontend req_prod=" + detail::idx(prod) + " is impossible (rsp_prod_pvt=" +
                      detail::idx(rsp_prod_pvt_) + ", req_cons=" + detail::idx(req_cons_) +
                      ", ring size " + std::to_string(size()) + ": req_prod - rsp_prod_pvt = " +
                      detail::idx(prod - rsp_prod_pvt_) + ")");
    }
    if (unconsumed == 0) return std::optional<Req>{};
    Req req;
    // SAFETY: untrusted slot. slot() masks the index into [0, size) and the
    // area holds size entries, so the copy stays inside the shared area. It
    // is the only read of this slot for this request: everything after works
    // on the local copy, which the frontend cannot change.
    std::memcpy(&req, area_.slot(req_cons_), sizeof(Req));
    ++req_cons_;
    return std::optional<Req>(req);
  }

  // Copies `rsp` into the slot of the oldest request not yet answered; it
  // becomes visible at the next push_responses(). kRetry if every consumed
  // request already has its response (rsp_prod_pvt == req_cons).
  Result<void> put_response(const Rsp& rsp) {
    if (rsp_prod_pvt_ == req_cons_) {
      return fail(Code::kRetry, "ring: no consumed request is waiting for a response");
    }
    std::memcpy(area_.slot(rsp_prod_pvt_), &rsp, sizeof(Rsp));
    ++rsp_prod_pvt_;
    return {};
  }

  // Publishes the responses put so far; true if the frontend asked to be
  // notified (detail::publish).
  bool push_responses() {
    return detail::publish(area_.sring()->rsp_prod, area_.sring()->rsp_event, rsp_prod_pub_, rsp_prod_pvt_);
  }

  // RING_FINAL_CHECK_FOR_REQUESTS: returns true if requests (or an impossible
  // req_prod, which get_request() will report) are pending; otherwise sets
  // req_event so the frontend notifies us on its next request, and checks
  // once more.
  bool final_check_for_requests() {
    Sring* s = area_.sring();
    // SAFETY: the two req_prod reads only yield a yes/no hint; no slot is
    // read here, get_request() re-reads and validates the index.
    if (pending(detail::load_relaxed(s->req_prod))) return true;
    detail::store_relaxed(s->req_event, req_cons_ + 1);
    // xen_mb: the frontend sees req_event before we re-read req_prod.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return pending(detail::load_relaxed(s->req_prod));
  }
  // get_request() until the ring is empty for sure: a request published
  // between the last read and req_event being set brings no event, so the
  // final check takes it too. nullopt: nothing left.
  Result<std::optional<Req>> next_request() {
    for (;;) {
      auto r = get_request();
      if (!r || *r || !final_check_for_requests()) return r;
    }
  }

  RING_IDX req_cons() const { return req_cons_; }
  RING_IDX rsp_prod_pvt() const { return rsp_prod_pvt_; }

 private:
  BackRing(Sring* s, unsigned size, RING_IDX start)
      : area_(s, size), rsp_prod_pvt_(start), req_cons_(start), rsp_prod_pub_(start) {}

  // XEN_RING_NR_UNCONSUMED_REQUESTS != 0, for a given req_prod.
  bool pending(RING_IDX prod) const {
    const RING_IDX req = prod - req_cons_;
    const RING_IDX rsp = area_.size() - (req_cons_ - rsp_prod_pvt_);
    return std::min(req, rsp) != 0;
  }

  detail::RingArea<T> area_;
  RING_IDX rsp_prod_pvt_;
  RING_IDX req_cons_;
  RING_IDX rsp_prod_pub_;
};

// Ids in flight for one frontend. Ids are small integers below the capacity
// fixed at construction (usually the ring size), like xen-blkfront's shadow
// free list.
class IdTable {
 public:
  explicit IdTable(size_t capacity) : in_flight_(capacity, 0) {}

  // Marks `id` in flight. kEscalate if it is out of range or already in
  // flight: the frontend itself got its bookkeeping wrong.
  Result<void> claim(uint64_t id) {
    if (id >= in_flight_.size()) {
      return fail(Code::kEscalate, "ids: claim of id " + std::to_string(id) +
                                       " out of range (capacity " +
                                       std::to_string(in_flight_.size()) + ")");
    }
    if (in_flight_[id] != 0) {
      return fail(Code::kEscalate, "ids: id " + std::to_string(id) + " is already in flight");
    }
    in_flight_[id] = 1;
    ++count_;
    return {};
  }

  // Marks `id` answered. kRestartReplay if it is out of range or not in
  // flight (never sent, or a duplicate response): the backend lied.
  Result<void> complete(uint64_t id) {
    if (id >= in_flight_.size()) {
      return fail(Code::kRestartReplay, "ids: response for id " + std::to_string(id) +
                                            " out of range (capacity " +
                                            std::to_string(in_flight_.size()) + ")");
    }
    if (in_flight_[id] == 0) {
      return fail(Code::kRestartReplay,
                  "ids: response for id " + std::to_string(id) +
                      " which is not in flight (never sent, or a duplicate response)");
    }
    in_flight_[id] = 0;
    --count_;
    return {};
  }

  bool in_flight(uint64_t id) const { return id < in_flight_.size() && in_flight_[id] != 0; }
  size_t count() const { return count_; }
  size_t capacity() const { return in_flight_.size(); }

  // Forgets every id (after the ring was reset and the inflight requests
  // were handed to replay).
  void clear() {
    std::fill(in_flight_.begin(), in_flight_.end(), 0);
    count_ = 0;
  }

  // Finds a free id AND claims it (as blkfront's get_id_from_freelist does),
  // so two calls never return the same id. nullopt if all are in flight.
  // Ids are handed out round-robin, so a just-completed id is reused as late
  // as possible (a stale duplicate response is then more likely to be caught).
  std::optional<uint64_t> allocate() {
    const size_t cap = in_flight_.size();
    if (count_ == cap) return std::nullopt;
    size_t id = next_;
    while (in_flight_[id] != 0) id = (id + 1) % cap;
    in_flight_[id] = 1;
    ++count_;
    next_ = (id + 1) % cap;
    return id;
  }

 private:
  std::vector<uint8_t> in_flight_;
  size_t count_ = 0;
  size_t next_ = 0;
};

// The next response, with its id checked against `ids` (and completed there).
// Errors: those of get_response(), and kRestartReplay for an id that is out of
// range, unknown or already answered. The response is consumed from the ring
// either way.
template <class T>
Result<std::optional<typename T::Rsp>> get_checked_response(FrontRing<T>& ring, IdTable& ids) {
  auto rsp = ring.get_response();
  if (!rsp || !rsp->has_value()) return rsp;
  if (auto done = ids.complete(T::rsp_id(**rsp)); !done) return std::unexpected(done.error());
  return rsp;
}

// Puts a request after claiming its id (T::req_id) in `ids`. kRetry if the
// ring is full (nothing claimed), kEscalate if the id cannot be claimed.
template <class T>
Result<void> put_checked_request(FrontRing<T>& ring, IdTable& ids, const typename T::Req& req) {
  if (ring.free_requests() == 0) {
    return fail(Code::kRetry, "ring: no free request slot");
  }
  if (auto claimed = ids.claim(T::req_id(req)); !claimed) return claimed;
  return ring.put_request(req);
}

}  // namespace sd::ring
