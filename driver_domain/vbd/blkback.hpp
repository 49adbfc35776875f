// vbd backend: serves a guest's blkif ring (xen/io/blkif.h) on the disk fd
// it was handed (a disk image or block device that shadowd opened and keeps
// across incarnations: through the host's page cache, or O_DIRECT for a
// disk whose spec says direct-io-safe).
//
// The ring is served by its own I/O thread, so the runtime's loop (control
// channel, heartbeats) never waits for the disk: a slow disk is not a hung
// driver. Every kick the thread takes every request on the ring (queue depth
// up to the ring size) and executes them in ring order: READ/WRITE with
// preadv/pwritev on the granted data pages, FLUSH_DISKCACHE with fdatasync,
// WRITE_BARRIER as flush + write + flush, DISCARD as a punched hole.
// Executing in ring order keeps every flush and barrier behind what came
// before it. Each response is published as soon as its request is done, so
// a crash replays only what was not answered; replayed requests are safe to
// run again (a write of the same data, a flush, a discard). Synchronous I/O
// also keeps a kill fast: a dying process waits for no queued I/O (Linux
// AIO's teardown costs an RCU grace period, ~30 ms here).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
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
  // evt: the event channel to the frontend (used by the I/O thread alone);
  // disk: the disk (shadowd's, or on Xen this domain's own: open_disk).
  // state: the compacted disk state shadowd replays.
  static Result<std::unique_ptr<Blkback>> create(std::unique_ptr<GrantedPages> pages,
                                                 std::unique_ptr<platform::EventChannel> evt, UniqueFd disk,
                                                 const blkif::DiskState& state);
  // A disk this domain owns (Xen: its block device), opened O_DIRECT: what
  // a write answered OKAY is on the device, not in this domain's page
  // cache, which dies with it. Errors name the path.
  static Result<UniqueFd> open_disk(const std::string& path, bool readonly);
  ~Blkback() override;  // stops the I/O thread after the request it is executing
  void poll_fds(std::vector<pollfd>& fds) override;
  // Reports what the I/O thread found wrong with the frontend's ring.
  Result<void> service() override;
  // Faults (inject): kBadId answers a request with an id that is not in
  // flight; kBadProd answers one request twice (and the next one not at all);
  // kBadGrant answers with a status that is not a blkif status.

 private:
  Blkback() = default;
  void io_loop();
  std::optional<Error> serve_ring();
  int16_t execute(const blkif_request& r);
  int16_t rw(const blkif_request& r);
  void respond(const blkif_request& r, int16_t status, bool& notify);

  std::unique_ptr<GrantedPages> pages_;
  std::unique_ptr<platform::EventChannel> evt_;
  UniqueFd disk_;
  UniqueFd stop_;    // eventfd: the owner asks the I/O thread to end
  UniqueFd broken_;  // eventfd: the I/O thread found the ring broken (error_)
  std::optional<ring::BackRing<blkif::Traits>> ring_;  // the I/O thread's
  blkif::DiskState st_{};
  std::optional<blkif_response> dup_of_;  // kBadProd: the response to send twice
  std::mutex error_m_;
  std::optional<Error> error_;
  std::thread io_;
};

}  // namespace sd::drvdom
