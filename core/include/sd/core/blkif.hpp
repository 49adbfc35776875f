// Xen's blkif ABI (xen/io/blkif.h) bound to the hardened rings, plus what
// the vbd class shares between frontend, backend and shadow: the pool
// layout, the compacted disk state the shadow keeps and replays, checks for
// everything read from an untrusted peer, and the frontend's in-flight table
// in xen-blkfront's blk_shadow shape (a copy of each request and its order).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "sd/core/error.hpp"
#include "sd/core/ring.hpp"
#include "sd/core/splitter_log.hpp"
#include "sd/core/xen_ring_compat.h"
extern "C" {
#include <xen/io/blkif.h>
}

namespace sd::blkif {

struct Traits {
  using Sring = blkif_sring;
  using Req = blkif_request;
  using Rsp = blkif_response;
  static uint64_t req_id(const Req& r) { return r.id; }
  static uint64_t rsp_id(const Rsp& r) { return r.id; }
};

constexpr unsigned kPageSize = 4096;
constexpr unsigned kSectorSize = 512;  // blkif's unit for sector_number, first_sect, last_sect
constexpr unsigned kSectorsPerPage = kPageSize / kSectorSize;
constexpr unsigned kRingSize = 32;  // entries of a one-page blkif ring (112-byte requests)
constexpr unsigned kSegs = BLKIF_MAX_SEGMENTS_PER_REQUEST;
constexpr unsigned kMaxIoBytes = kSegs * kPageSize;  // one request moves at most 44 KiB

// Request ids: twice the ring's slots. blkif's id is the frontend's to
// choose; here an id owns its data pages from the request until the caller
// is done with them, while the ring slot comes free with the response. So a
// read can be replied to from its pages (no copy) without holding the ring.
constexpr unsigned kIds = 2 * kRingSize;

// Grant refs in a vbd pool: the ring page, then kSegs data pages per request
// id (xen-blkfront with persistent grants: each id owns its pages, so the
// data of a request in flight stays put until its response is taken).
constexpr uint32_t kRingRef = 0;
constexpr uint32_t kDataRef0 = 1;
constexpr uint32_t kPoolPages = kDataRef0 + kIds * kSegs;
constexpr uint32_t data_ref(uint64_t id, unsigned seg) {
  return kDataRef0 + static_cast<uint32_t>(id) * kSegs + seg;
}

// Disk features as negotiated (xenstore's feature-flush-cache,
// feature-barrier, feature-discard, the disk's size), compacted: replaying
// it costs the same however often it was read or changed. shadowd writes it
// when it opens the disk; the frontend keeps it in the splitter log's config
// area; shadowd replays it into every new backend (kDevAttach payload).
constexpr uint32_t kFeatureFlush = 1u << 0;
constexpr uint32_t kFeatureBarrier = 1u << 1;
constexpr uint32_t kFeatureDiscard = 1u << 2;
struct DiskState {
  uint64_t sectors;      // disk size in 512-byte sectors
  uint32_t features;     // kFeature*
  uint32_t queue_limit;  // requests the frontend keeps in flight at most (policy active_mode.queue_limit)
  uint32_t o_direct;     // 1: the disk fd bypasses the host's page cache
  uint32_t readonly;
  uint64_t generation;   // bumped on every change
};
static_assert(sizeof(DiskState) <= 200, "fits a control message payload and the splitter log config");

// The first bytes of a request are what the splitter log keeps: the header,
// the sector and two segments (every 4 KiB request in full).
constexpr size_t kLoggedReq = 40;

inline std::string op_name(uint8_t op) {
  switch (op) {
    case BLKIF_OP_READ: return "READ";
    case BLKIF_OP_WRITE: return "WRITE";
    case BLKIF_OP_WRITE_BARRIER: return "WRITE_BARRIER";
    case BLKIF_OP_FLUSH_DISKCACHE: return "FLUSH_DISKCACHE";
    case BLKIF_OP_DISCARD: return "DISCARD";
    case BLKIF_OP_INDIRECT: return "INDIRECT";
    default: return "op " + std::to_string(op);
  }
}

// The sectors a read or write's segments move (its first nr_segments, at
// most kSegs; each segment's own bounds are check_request's to verify).
inline uint64_t data_sectors(const blkif_request& r) {
  uint64_t n = 0;
  for (unsigned i = 0; i < r.nr_segments && i < kSegs; ++i) n += r.seg[i].last_sect - r.seg[i].first_sect + 1u;
  return n;
}

inline bool is_rw(uint8_t op) {
  return op == BLKIF_OP_READ || op == BLKIF_OP_WRITE || op == BLKIF_OP_WRITE_BARRIER;
}

// A request as the backend may execute it: its segments inside the pool and
// inside their pages, its sectors inside the disk. Returns an empty string
// or what is wrong (for the backend's log; the request is answered with
// BLKIF_RSP_ERROR, never executed). In the project's pool (in_pool) a
// segment must name a data page of the request's own id (the pool is laid
// out per id); an unmodified guest's blkfront grants pages of its own
// choosing and uses its ids as it likes (in_pool false).
inline std::string check_request(const blkif_request& r, uint64_t disk_sectors, bool in_pool = true) {
  if (r.operation == BLKIF_OP_DISCARD) {
    blkif_request_discard d;
    std::memcpy(&d, &r, sizeof(d));
    if (d.nr_sectors == 0 || d.sector_number > disk_sectors || d.nr_sectors > disk_sectors - d.sector_number)
      return "discard of sectors " + std::to_string(d.sector_number) + "+" + std::to_string(d.nr_sectors) +
             " outside the " + std::to_string(disk_sectors) + "-sector disk";
    return {};
  }
  // A flush carrying data (a FUA write, for a backend offering barriers) is
  // never offered here: refused, rather than flushed without its data.
  if (r.operation == BLKIF_OP_FLUSH_DISKCACHE)
    return r.nr_segments == 0 ? std::string() : "a flush with " + std::to_string(r.nr_segments) + " data segments";
  if (!is_rw(r.operation)) return "operation " + op_name(r.operation) + " not supported";
  if (r.operation == BLKIF_OP_WRITE_BARRIER && r.nr_segments == 0) return {};  // a bare barrier
  if (r.nr_segments == 0 || r.nr_segments > kSegs)
    return "nr_segments " + std::to_string(r.nr_segments) + " out of range (1.." + std::to_string(kSegs) + ")";
  if (in_pool && r.id >= kIds) return "id " + std::to_string(r.id) + " out of range";
  uint64_t sectors = 0;
  for (unsigned i = 0; i < r.nr_segments; ++i) {
    const auto& s = r.seg[i];
    if (in_pool && s.gref != data_ref(r.id, i))
      return "segment " + std::to_string(i) + " gref " + std::to_string(s.gref) + " is not a data page of id " +
             std::to_string(r.id);
    if (s.first_sect > s.last_sect || s.last_sect >= kSectorsPerPage)
      return "segment " + std::to_string(i) + " sectors " + std::to_string(s.first_sect) + ".." +
             std::to_string(s.last_sect) + " outside its page";
    sectors += s.last_sect - s.first_sect + 1u;
  }
  if (r.sector_number > disk_sectors || sectors > disk_sectors - r.sector_number)
    return "sectors " + std::to_string(r.sector_number) + "+" + std::to_string(sectors) + " outside the " +
           std::to_string(disk_sectors) + "-sector disk";
  return {};
}

// A response status is one of blkif's three.
inline bool plausible_status(int16_t s) {
  return s == BLKIF_RSP_OKAY || s == BLKIF_RSP_ERROR || s == BLKIF_RSP_EOPNOTSUPP;
}

// The frontend's in-flight table (xen-blkfront's blk_shadow): for every id a
// copy of the request as sent and its submission order. A response is taken
// once: a response for an id not in flight, or a second one for the same
// id, is refused (the backend lied) and leaves the table as it was, so the
// guest never sees a completion twice. Recovery takes the requests still in
// flight in submission order (blkif_recover), which keeps every flush,
// barrier and write in the order the guest issued them.
class InflightTable {
 public:
  explicit InflightTable(size_t capacity) : slots_(capacity) {}

  // Records `req` (its id must be free). Returns its order number.
  Result<uint64_t> add(const blkif_request& req) {
    if (req.id >= slots_.size() || slots_[req.id].in_flight)
      return fail(Code::kEscalate, "inflight: id " + std::to_string(req.id) + " is out of range or in flight");
    slots_[req.id] = {true, false, next_order_, req};
    ++count_;
    return next_order_++;
  }

  // Takes the response `rsp`: its request, or kRestartReplay for an unknown
  // id, a duplicate response, a response whose operation differs from the
  // request's or whose status is not a blkif status.
  Result<blkif_request> complete(const blkif_response& rsp) {
    if (rsp.id >= slots_.size() || (!slots_[rsp.id].in_flight && !slots_[rsp.id].answered))
      return fail(Code::kRestartReplay,
                  "response for id " + std::to_string(rsp.id) + " which is not in flight (unknown id)");
    if (!slots_[rsp.id].in_flight)
      return fail(Code::kRestartReplay, "second response for id " + std::to_string(rsp.id) +
                                            " which is not in flight any more (duplicate response)");
    const Slot& s = slots_[rsp.id];
    if (rsp.operation != s.req.operation)
      return fail(Code::kRestartReplay, "response of operation " + op_name(rsp.operation) + " to a " +
                                            op_name(s.req.operation) + " request (id " + std::to_string(rsp.id) + ")");
    if (!plausible_status(rsp.status))
      return fail(Code::kRestartReplay,
                  "wrong status " + std::to_string(rsp.status) + " for " + op_name(s.req.operation));
    blkif_request req = s.req;
    slots_[rsp.id].in_flight = false;
    slots_[rsp.id].answered = true;
    --count_;
    return req;
  }

  // Requests in flight, in submission order (what a recovery resubmits).
  std::vector<blkif_request> in_order() const {
    std::vector<const Slot*> v;
    for (const auto& s : slots_)
      if (s.in_flight) v.push_back(&s);
    std::sort(v.begin(), v.end(), [](const Slot* a, const Slot* b) { return a->order < b->order; });
    std::vector<blkif_request> out;
    for (auto* s : v) out.push_back(s->req);
    return out;
  }

  bool in_flight(uint64_t id) const { return id < slots_.size() && slots_[id].in_flight; }
  size_t count() const { return count_; }
  size_t capacity() const { return slots_.size(); }

 private:
  struct Slot {
    bool in_flight = false;
    bool answered = false;  // the last request with this id got its response
    uint64_t order = 0;
    blkif_request req{};
  };
  std::vector<Slot> slots_;
  uint64_t next_order_ = 0;
  size_t count_ = 0;
};

// Recovery's requeue (xen-blkfront's blkif_recover: copy the shadow, reset,
// requeue): hands `ring` back empty and puts every request still in flight
// in `table` on it again, in submission order, taking the content from the
// splitter log's copy (the shadow's) where the log holds the whole request
// and it agrees with the table, else the table's copy. Publishes them and
// returns how many were requeued. The ring holds them all: a frontend never
// has more requests in flight than the ring's slots (its ids may be more).
inline uint32_t requeue(ring::FrontRing<Traits>& ring, const InflightTable& table, const shadow::SplitterLog& log,
                        uint16_t log_ring = 0) {
  std::vector<std::optional<blkif_request>> logged(table.capacity());
  if (log.valid() && log.enabled())
    for (const auto& e : log.inflight(log_ring)) {
      if (e.slot >= logged.size() || e.len != kLoggedReq) continue;
      blkif_request q{};
      std::memcpy(&q, e.req, e.len);  // SAFETY: e is our copy; len checked
      logged[e.slot] = q;
    }
  ring.reset();
  uint32_t n = 0;
  for (blkif_request req : table.in_order()) {
    // The log keeps the header and two segments: the whole of a request of
    // at most two pages.
    if (const auto& l = logged[req.id];
        l && l->id == req.id && l->operation == req.operation && l->sector_number == req.sector_number &&
        l->nr_segments == req.nr_segments && req.nr_segments <= 2)
      req = *l;
    (void)ring.put_request(req);
    ++n;
  }
  (void)ring.push_requests();
  return n;
}

}  // namespace sd::blkif
