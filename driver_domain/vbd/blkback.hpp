// vbd backend: serves a guest's blkif ring (xen/io/blkif.h) on the disk fd
// it was handed (a disk image or block device that shadowd opened and keeps
// across incarnations: through the host's page cache, or O_DIRECT for a
// disk whose spec says direct-io-safe).
//
// The ring is served by its own threads, so the runtime's loop (control
// channel, heartbeats) never waits for the disk: a slow disk is not a hung
// driver. A dispatcher takes every request on the ring, in ring order; on a
// disk opened O_DIRECT (a device whose latency is worth overlapping) it
// hands READ, WRITE and DISCARD to kWorkers workers that execute several at
// once (preadv/pwritev on the granted data pages, a punched hole), with
// blkif's ordering kept where it binds: a request waits for every earlier
// one it overlaps unless both only read (overlapping writes land in ring
// order), and FLUSH_DISKCACHE (fdatasync) and WRITE_BARRIER (flush + write
// + flush) wait for everything before them and hold back everything after
// them. Through the page cache the dispatcher executes each itself, and
// large reads (writes) that continue one another as one preadv (pwritev),
// answered each. Each response is published as soon as its request is done
// (a pass tells the frontend every 256 KiB answered), so a crash replays
// only what was not answered; replayed requests are safe to run again (a
// write of the same data, a flush, a discard). Synchronous I/O also keeps a
// kill fast: a dying process waits for no queued I/O (Linux AIO's teardown
// costs an RCU grace period, ~30 ms here).
#pragma once

#include <pthread.h>
#include <sys/uio.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backend.hpp"
#include "granted_pages.hpp"
#include "sd/core/blkif.hpp"
#include "sd/core/fd.hpp"
#include "sd/core/platform.hpp"
#include "sd/core/ring.hpp"

namespace sd::drvdom {

class Blkback final : public Backend {
 public:
  // pages: the guest's granted pool (blkif::kPoolPages, ring page first);
  // evt: the event channel to the frontend (the dispatcher's and the workers');
  // disk: the disk (shadowd's, or on Xen this domain's own: open_disk).
  // state: the compacted disk state shadowd replays.
  static Result<std::unique_ptr<Blkback>> create(std::unique_ptr<GrantedPages> pages,
                                                 std::unique_ptr<platform::EventChannel> evt, UniqueFd disk,
                                                 const blkif::DiskState& state);
  // A disk this domain owns (Xen: its block device), opened O_DIRECT: what
  // a write answered OKAY is on the device, not in this domain's page
  // cache, which dies with it. Errors name the path.
  static Result<UniqueFd> open_disk(const std::string& path, bool readonly);
  ~Blkback() override;  // stops the threads after the requests they are executing
  void poll_fds(std::vector<pollfd>& fds) override;
  // Reports what the dispatcher found wrong with the frontend's ring.
  Result<void> service() override;
  // Faults (inject): kBadId answers a request with an id that is not in
  // flight; kBadProd answers one request twice (and the next one not at all);
  // kBadGrant answers with a status that is not a blkif status.

 private:
  static constexpr unsigned kWorkers = 4;
  static constexpr size_t kStackBytes = 256 << 10;
  Blkback() = default;
  void io_loop();
  void work();
  std::optional<Error> serve_ring();
  // Waits until `r` may start (nothing earlier it must follow is running,
  // and a place is free); false when the owner says stop.
  bool wait_turn(const blkif_request& r);
  int16_t execute(const blkif_request& r);
  int16_t rw(const blkif_request& r);
  std::string refusal(const blkif_request& r) const;
  bool segments(const blkif_request& r, iovec* iov) const;
  bool mergeable(const blkif_request& r, iovec* iov) const;
  bool respond(const blkif_request& r, int16_t status);

  std::unique_ptr<GrantedPages> pages_;
  std::unique_ptr<platform::EventChannel> evt_;
  UniqueFd disk_;
  UniqueFd stop_;    // eventfd: the owner asks the dispatcher to end
  UniqueFd broken_;  // eventfd: the dispatcher found the ring broken (error_)
  std::mutex ring_m_;  // the ring and the garbage faults, shared by dispatcher and workers
  std::optional<ring::BackRing<blkif::Traits>> ring_;
  // Requests handed to the workers, queued or executing: sectors [first,
  // end), whether it writes. One place per ring slot, so no allocation per
  // request.
  struct Running {
    enum : uint8_t { kFree, kQueued, kExecuting } state = kFree;
    bool writes = false;
    uint64_t first = 0, end = 0, seq = 0;
    blkif_request req{};
  };
  std::mutex run_m_;
  std::condition_variable run_cv_;   // a request finished, or stop
  std::condition_variable work_cv_;  // a request was queued, or stop
  std::vector<Running> running_;     // ring size
  std::vector<blkif_request> run_;   // the dispatcher's: requests merged into one call (ring size)
  std::vector<iovec> run_iov_;       // their segments
  size_t busy_ = 0;                  // places not kFree
  uint64_t seq_ = 0;                 // workers take the oldest queued first
  bool stopping_ = false;
  blkif::DiskState st_{};
  std::optional<blkif_response> dup_of_;  // kBadProd: the response to send twice
  std::mutex error_m_;
  std::optional<Error> error_;
  bool parallel_ = false;           // workers run the requests (an O_DIRECT disk)
  std::vector<pthread_t> threads_;  // the dispatcher, then the workers
};

}  // namespace sd::drvdom
