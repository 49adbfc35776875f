// vbd backend: serves a guest's blkif ring (xen/io/blkif.h) on the disk fd
// it was handed (a disk image or block device that shadowd opened and keeps
// across incarnations, O_DIRECT where the file system allows).
//
// Every kick it takes every request on the ring (queue depth up to the ring
// size) and executes them in ring order: READ/WRITE with preadv/pwritev on
// the granted data pages, FLUSH_DISKCACHE with fdatasync, WRITE_BARRIER as
// flush + write + flush, DISCARD as a punched hole. Executing in ring order
// keeps every flush and barrier after what came before it. Each response is
// published as soon as its request is done, so a crash replays only what was
// not answered. Replayed requests are safe to run again: a write of the same
// data, a flush, a discard.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "backend.hpp"
#include "granted_pages.hpp"
#include "sd/core/blkif.hpp"
#include "sd/core/fd.hpp"
#include "sd/core/ring.hpp"

namespace sd::drvdom {

class Blkback final : public Backend {
 public:
  // pages: the guest's granted pool (blkif::kPoolPages, ring page first).
  // fds: [0] eventfd to notify the frontend, [1] eventfd the frontend kicks,
  // [2] the disk. disk: the compacted disk state shadowd replays.
  static Result<std::unique_ptr<Blkback>> create(std::unique_ptr<GrantedPages> pages, std::vector<UniqueFd> fds,
                                                 const blkif::DiskState& disk);
  void poll_fds(std::vector<pollfd>& fds) override;
  Result<void> service() override;
  void set_config(const ctl::Msg&) override {}
  // kBadId: answer a request with an id that is not in flight; kBadProd:
  // answer one request twice (and another not at all); kBadGrant: answer with
  // a status that is not a blkif status; kStall: stop serving.
  void inject(ctl::FaultKind k) override;

  uint64_t served() const { return served_; }

 private:
  Blkback() = default;
  int16_t execute(const blkif_request& r);
  int16_t rw(const blkif_request& r);

  std::unique_ptr<GrantedPages> pages_;
  UniqueFd to_front_, from_front_, disk_;
  std::optional<ring::BackRing<blkif::Traits>> ring_;
  blkif::DiskState st_{};
  uint64_t served_ = 0;
  bool stalled_ = false;
  std::optional<ctl::FaultKind> garbage_;
};

}  // namespace sd::drvdom
