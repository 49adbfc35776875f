// vbd frontend, the beam splitter, as a library the FUSE program
// (main.cpp, sd-blkfront) drives from many threads at once: blkif rings to
// the backend on one side, the guest's programs' reads, writes, flushes and
// discards on the other. Every request it posts is also recorded in the
// shadow's splitter log in the same step, and kept in its in-flight table
// (blkif::InflightTable, xen-blkfront's blk_shadow: a copy of the request
// and its submission order); the negotiated disk state is kept in the log's
// config area.
//
// It reaches shadowd by connecting to the vbd's unix socket; shadowd hands it
// the splitter log, its event-channel ends, the disk state and the guest's
// pool (ring page, kSegs data pages per request id).
//
// Callers block while no slot is free (the ring is full, the queue limit is
// reached, or no backend serves): a request is never failed for an outage.
// A service thread takes responses and control messages, and may serve the
// guest's requests too (serve_also: sd-blkfront's FUSE device), so one
// thread posts and answers.
//
// Ids outnumber the ring's slots (blkif::kIds): an id's pages are the
// caller's from the request until its data is used, while the slot comes
// free with the response. A lent read (Io::lend) is replied to from those
// pages, with no copy, and gives its ids back after (return_lent).
//
// Connection states (the disk stays usable in every one of them):
//
//  state      | event                          | action                                  | next
//  -----------+--------------------------------+-----------------------------------------+----------
//  Connected  | invalid response (unknown id,  | stop consuming, report kDevFault; the   | Paused
//             |  duplicate, wrong operation or | request stays in flight (no completion) |
//             |  status, rsp_prod beyond req)  |                                         |
//  Connected  | kBackendGone                   | stop consuming responses                | Paused
//  Paused     | request, ring slot free        | post (it waits in the ring)             | Paused
//  Paused     | kReconnect                     | take valid responses, reset the ring,   | Connected
//             |                                | replay in-flight requests in submission |
//             |                                | order, kReconnected                     |
//  any        | shadowd closes the socket      | every request fails with EIO            | Dead
#pragma once

#include <sys/uio.h>

#include <array>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/frontend_link.hpp"
#include "common/pool_source.hpp"
#include "vbd/block_target.hpp"
#include "sd/core/blkif.hpp"
#include "sd/core/control_channel.hpp"
#include "sd/core/fd.hpp"
#include "sd/core/ring.hpp"

namespace sd::front {

class Blkfront final : public BlockTarget, private FrontendLink::Hooks {
 public:
  // Attaches over a channel to shadowd (bounded: 5 s); connect_frontend()
  // reaches it at the vbd's socket. With a PoolSource (Xen) the pool is
  // granted per backend domain (the first with the first kReconnect, which
  // callers wait for) and the splitter log is this process's own.
  static Result<std::unique_ptr<Blkfront>> attach(ctl::Channel ch, std::unique_ptr<PoolSource> xen = nullptr);
  ~Blkfront() override;  // stop(), then the pages go
  // Stops the service thread (no more answers, no more served source); the
  // pages stay until the destructor, so lent reads can still be replied to
  // and returned. Idempotent.
  void stop();
  Blkfront(const Blkfront&) = delete;
  Blkfront& operator=(const Blkfront&) = delete;

  uint64_t size_bytes() const { return disk_.sectors * blkif::kSectorSize; }
  const blkif::DiskState& disk() const { return disk_; }
  // shadowd is gone: every request fails from now on.
  bool gone() const {
    std::lock_guard lk(m_);
    return link_.gone();
  }

  // Disk I/O at any byte offset and length inside the disk (edges that are
  // not whole sectors are read, patched and written). Thread-safe; each
  // blocks until the backend (this or a later incarnation) answered.
  // Return 0, -EIO (the backend answered BLKIF_RSP_ERROR, or shadowd is
  // gone), -EOPNOTSUPP (the disk lacks the feature), -EINVAL (outside the disk).
  int read(uint64_t off, size_t len, uint8_t* out) override;
  int write(uint64_t off, size_t len, const uint8_t* in) override;
  int flush() override;                              // FLUSH_DISKCACHE (fsync)
  int discard(uint64_t off, uint64_t len) override;  // DISCARD (whole sectors only)

  // The same without waiting: start() returns once every part of the I/O is
  // on the ring (it blocks only while no id is free), and done(ctx, rc)
  // runs once, on the service thread, when all were answered (a read's data
  // is in rdata by then), or at once on the caller's thread if shadowd is
  // gone. Whole sectors inside the disk (the caller checks); rc as above.
  struct Io {
    void (*done)(void* ctx, int rc) = nullptr;
    void* ctx = nullptr;
    uint8_t* rdata = nullptr;  // READ: where the data goes (unless lent)
    bool lend = false;         // READ: the data stays in the ring's pages, see return_lent
    uint32_t parts_left = 0;   // Blkfront's
    int rc = 0;                // Blkfront's
    std::vector<uint32_t> lent;  // Blkfront's: a lent read's ids, part by part
  };
  void start(Io& io, uint8_t op, uint64_t sector, uint64_t sectors, const uint8_t* wdata);
  // flush() and discard() without waiting (done at once when there is
  // nothing to send, or with the error the waiting call would return).
  void start_flush(Io& io);
  void start_discard(Io& io, uint64_t off, uint64_t len);

  // After a lent read's done(), whatever its rc: calls use(iov, n) with its
  // data, part by part in order, straight from the ring's pages (a Xen
  // regrant waits meanwhile), then gives its ids back. Once per lent read,
  // on any thread; until then its ids are held (a read of 1 MiB holds 24 of
  // blkif::kIds).
  template <class Use>
  void return_lent(Io& io, Use use);

  // A source of requests the service thread serves beside the ring, so one
  // thread takes the guest's requests and answers them (sd-blkfront's
  // /dev/fuse): when `fd` is readable it calls take(ctx), which may start()
  // I/O; on this thread start() never sleeps for a free id, it takes the
  // ring's answers itself meanwhile. take() must not wait for an answer
  // (read(), write(), flush(), discard() belong on other threads). Served
  // until the destructor, also once shadowd is gone. Call once, first.
  void serve_also(int fd, void (*take)(void*), void* ctx);

  struct Stats {
    uint64_t submitted = 0;  // requests put on the ring (replays not counted)
    uint64_t completed = 0;  // responses taken (each request at most once)
    uint64_t reads = 0, writes = 0, flushes = 0, barriers = 0, discards = 0;
    uint64_t faults = 0, reconnects = 0, replayed = 0, max_inflight = 0;
  };
  Stats stats() const;

 private:
  Blkfront(ctl::Channel ch, std::unique_ptr<PoolSource> xen);
  // FrontendLink::Hooks (repair: with m_ held, from pump_locked)
  Result<void> attached(FrontendLink& link) override;
  Result<FrontendLink::Repair> repair(const ctl::Msg& m) override;
  void resumed() override { kick(); }
  // The event channel to the backend: the link's (local) or the pool's (Xen).
  int event_fd() const { return evt_ ? evt_->wait_fd() : link_.wait_fd(); }
  void kick();
  // Xen: a new pool for backend `domid`; the pages of every id a caller
  // holds (in flight, or answered and not yet read back) move over.
  Result<ctl::XenPool> regrant(uint32_t domid);

  void service_loop();
  // Waits until ready(): on a caller's thread for the service thread's
  // notification; on the service thread by taking answers itself.
  template <class Ready>
  void wait_locked(std::unique_lock<std::mutex>& lk, Ready ready);
  void pump_locked(bool control);
  void answer_locked(std::unique_lock<std::mutex>& lk, bool control);  // pump_locked, then finish_answered
  void take_responses_locked();
  void backend_fault_locked(const std::string& why);
  // A request's life: an id held by a caller, the request on the ring, its
  // response taken (service thread), its data copied out and the id given
  // back (finish_answered, service thread).
  std::optional<size_t> reserve_locked(std::unique_lock<std::mutex>& lk, size_t free = 1);
  bool post_locked(std::unique_lock<std::mutex>& lk, size_t id, uint8_t op, uint64_t sector, uint32_t sectors,
                   bool publish);
  void answered_locked(size_t id, int16_t status);  // its response taken: its slot is free
  void release_locked(size_t id);
  void ids_returned_locked();  // wakes whoever waits for an id
  void finish_answered(std::unique_lock<std::mutex>& lk);
  template <class Begin>
  int await(uint8_t* rdata, Begin begin);
  int run(uint8_t op, uint64_t sector, uint64_t sectors, const uint8_t* wdata, uint8_t* rdata);
  shadow::SplitterLog& log() { return link_.log(); }
  uint8_t* data(uint64_t id) const { return data_ + id * blkif::kSegs * blkif::kPageSize; }

  FrontendLink link_;
  blkif::DiskState disk_{};
  uint8_t* ring_page_ = nullptr;
  uint8_t* data_ = nullptr;  // kIds * kSegs pages, contiguous per id
  UniqueFd stop_, wake_;
  uint32_t limit_ = blkif::kRingSize;
  std::unique_ptr<PoolSource> xen_;
  std::unique_ptr<platform::EventChannel> evt_;  // Xen: the current pool's
  std::shared_ptr<void> pool_keep_;              // Xen: the current backend's grants

  mutable std::mutex m_;
  std::condition_variable slot_cv_;  // an id or ring slot came free
  std::array<Io*, blkif::kIds> io_{};          // per held id: the I/O it is part of
  std::array<uint64_t, blkif::kIds> part_at_{};  // its part's bytes from the I/O's start
  std::array<size_t, blkif::kIds> part_len_{};
  std::array<uint8_t, blkif::kIds> posted_{};  // its request is on the ring
  std::vector<size_t> answered_;                     // ids answered, not yet finished
  std::vector<Io*> finished_;                        // the service thread's: I/Os to complete
  std::shared_mutex pool_m_;  // callers copy data shared; a regrant (Xen) moves the pages exclusively
  size_t held_ = 0;           // ids held by callers
  size_t pending_ = 0;        // of which not answered yet (reserved or on the ring): at most limit_
  bool waiting_ = false;      // the service thread waits for an id (wait_locked): wake_ it
  bool stopping_ = false;     // the destructor asked the service thread to stop
  bool given_up() const { return link_.gone() || stopping_; }  // no request will be posted
  std::optional<ring::FrontRing<blkif::Traits>> ring_;
  blkif::InflightTable table_{blkif::kIds};
  std::vector<uint8_t> busy_ = std::vector<uint8_t>(blkif::kIds, 0);   // id's pages in use by a caller
  std::vector<int16_t> status_ = std::vector<int16_t>(blkif::kIds, 0);
  std::vector<uint8_t> done_ = std::vector<uint8_t>(blkif::kIds, 0);   // response taken, caller not back yet
  size_t next_id_ = 0;
  Stats stats_;
  std::mutex rmw_;  // serialises read-modify-write of partial sectors
  std::thread service_;
  std::thread::id service_id_;
  int source_fd_ = -1;
  void (*take_)(void*) = nullptr;
  void* take_ctx_ = nullptr;
};

template <class Use>
void Blkfront::return_lent(Io& io, Use use) {
  {
    std::shared_lock pages(pool_m_);
    std::array<iovec, blkif::kIds> v;
    size_t n = 0;
    for (uint32_t id : io.lent) v[n++] = {data(id), part_len_[id]};  // the caller's ids: no lock needed
    use(v.data(), n);
  }
  std::lock_guard lk(m_);
  for (uint32_t id : io.lent) release_locked(id);
  io.lent.clear();
  ids_returned_locked();
}

}  // namespace sd::front
