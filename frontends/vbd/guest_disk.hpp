// An unmodified Xen guest's own blkfront (xen-blkfront), served from dom0 as
// the backend of its disk: the guest's blkif ring (mapped from its grant),
// its event channel, and copies to and from the pages it grants per
// segment. This is the guest's side of the vbd's dom0 ring proxy: each
// request goes to the disk the proxy reaches through its own beam splitter
// (a BlockTarget: Blkfront, over the driver domain), on worker threads, and
// is answered on the guest's ring only once that disk answered it. The
// guest's ring never meets a driver domain; the splitter replays what a dead
// one held, so the guest sees a pause, never an error.
//
// Everything in the guest's ring is untrusted: a request that fails blkif's
// checks (operation, segment count, sectors inside their page, the range
// inside the disk) is answered BLKIF_RSP_ERROR and never executed; one the
// disk lacks (discard, barrier) BLKIF_RSP_EOPNOTSUPP; a segment the guest's
// grant refuses BLKIF_RSP_ERROR; an impossible ring index stops the port for
// good (reported once).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/guest_grants.hpp"
#include "vbd/block_target.hpp"
#include "sd/core/blkif.hpp"
#include "sd/core/platform.hpp"
#include "sd/core/ring.hpp"

namespace sd::front {

class GuestDisk {
 public:
  struct Counters {
    uint64_t done = 0;     // answered OKAY
    uint64_t refused = 0;  // answered ERROR or EOPNOTSUPP without touching the disk
    uint64_t failed = 0;   // the disk or a grant copy failed
  };
  // ring: the guest's shared ring page (mapped by the caller, kept alive by
  // `keep`); state: the disk as the guest was told of it (size, features);
  // workers: requests executed at once (1..kRingSize).
  static Result<std::unique_ptr<GuestDisk>> attach(void* ring, std::unique_ptr<platform::EventChannel> evt,
                                                   std::unique_ptr<GuestGrants> grants, BlockTarget& disk,
                                                   const blkif::DiskState& state, unsigned workers, std::string name,
                                                   std::shared_ptr<void> keep = nullptr);
  ~GuestDisk();

  // Readable when the guest posted requests or a worker finished one.
  int wait_fd() const { return evt_->wait_fd(); }
  int done_fd() const { return done_fd_.get(); }
  // Takes the guest's new requests (to the workers) and answers the
  // finished ones; call when either fd is readable.
  void serve();

  bool broken() const { return !broken_.empty(); }
  const std::string& why_broken() const { return broken_; }
  Counters counters() const;

 private:
  struct Job {
    blkif_request req;
    int16_t status = BLKIF_RSP_OKAY;
    std::vector<uint8_t> buf;  // kMaxIoBytes, allocated once per worker slot
  };
  GuestDisk() = default;
  void work();
  int16_t execute(Job& job);
  int16_t copy_segments(Job& job, bool to_guest, size_t* bytes);
  void answer(uint64_t id, uint8_t op, int16_t status);
  void stop(const std::string& why);

  std::optional<ring::BackRing<blkif::Traits>> ring_;
  std::unique_ptr<platform::EventChannel> evt_;
  std::unique_ptr<GuestGrants> grants_;
  BlockTarget* disk_ = nullptr;
  blkif::DiskState state_{};
  std::string name_, broken_;
  std::shared_ptr<void> keep_;
  UniqueFd done_fd_;

  mutable std::mutex m_;
  std::condition_variable cv_;
  std::deque<Job*> todo_, done_;  // bounded by the jobs below (one per ring slot)
  std::vector<Job> jobs_;
  std::vector<Job*> free_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  bool answered_ = false;
  Counters counters_;
};

}  // namespace sd::front
