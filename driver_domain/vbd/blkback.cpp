#include "vbd/blkback.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace sd::drvdom {

using blkif::kSectorSize;

Result<UniqueFd> Blkback::open_disk(const std::string& path, bool readonly) {
  UniqueFd fd(::open(path.c_str(), (readonly ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC));
  if (!fd) return sys_fail("vbd attach: open the disk " + path);
  return fd;
}

Result<std::unique_ptr<Blkback>> Blkback::create(std::unique_ptr<GrantedPages> pages,
                                                 std::unique_ptr<platform::EventChannel> evt, UniqueFd disk_fd,
                                                 const blkif::DiskState& disk) {
  if (!evt || !disk_fd) return fail(Code::kInvalidInput, "vbd attach: no event channel or no disk");
  if (!pages || pages->size() < blkif::kPoolPages) return fail(Code::kInvalidInput, "vbd attach: pool too small");
  uint8_t* ring_page = pages->get(blkif::kRingRef);
  if (!ring_page) return fail(Code::kInvalidInput, "vbd attach: ring page not granted");
  struct stat st;
  if (::fstat(disk_fd.get(), &st) != 0) return sys_fail("vbd attach: fstat disk");
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) return fail(Code::kInvalidInput, "vbd attach: not a disk");
  uint64_t bytes = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode) && ::ioctl(disk_fd.get(), BLKGETSIZE64, &bytes) != 0)
    return sys_fail("vbd attach: BLKGETSIZE64");
  if (bytes / kSectorSize < disk.sectors)
    return fail(Code::kInvalidInput, "vbd attach: the disk is smaller than the " + std::to_string(disk.sectors) +
                                         " sectors the guest was promised");
  auto bb = std::unique_ptr<Blkback>(new Blkback());
  bb->stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  bb->broken_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!bb->stop_ || !bb->broken_) return sys_fail("vbd attach: eventfd");
  bb->pages_ = std::move(pages);
  bb->evt_ = std::move(evt);
  bb->disk_ = std::move(disk_fd);
  bb->st_ = disk;
  // init=false: the frontend owns the ring; continue from the shared rsp_prod.
  auto r = ring::BackRing<blkif::Traits>::attach(ring_page, blkif::kPageSize, false);
  if (!r) return std::unexpected(r.error());
  bb->ring_.emplace(std::move(*r));
  bb->running_.resize(bb->ring_->size());
  bb->run_.reserve(bb->ring_->size());  // no allocation while serving
  bb->run_iov_.reserve(bb->ring_->size() * blkif::kSegs);
  // Workers pay where the disk makes a request wait (O_DIRECT: the device's
  // latency, overlapped); through the page cache a request is a memory copy,
  // and handing it to another thread costs more than the copy (1.2-1.3x the
  // IOPS done in the dispatcher: docs/BENCHMARKS.md, the vbd's data path).
  int fl = ::fcntl(bb->disk_.get(), F_GETFL);
  bb->parallel_ = fl >= 0 && (fl & O_DIRECT);  // set before any thread reads it
  for (unsigned i = 0; i <= (bb->parallel_ ? kWorkers : 0); ++i) {
    // Small stacks: a domain serving many disks runs under an address-space
    // limit (a default 8 MiB stack per thread would spend it).
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, kStackBytes);
    pthread_t t;
    auto body = i == 0 ? +[](void* p) -> void* { static_cast<Blkback*>(p)->io_loop(); return nullptr; }
                       : +[](void* p) -> void* { static_cast<Blkback*>(p)->work(); return nullptr; };
    int rc = pthread_create(&t, &attr, body, bb.get());
    pthread_attr_destroy(&attr);
    if (rc != 0) {
      errno = rc;
      return sys_fail("vbd attach: start a disk thread");  // the destructor stops those started
    }
    bb->threads_.push_back(t);
  }
  return bb;
}

Blkback::~Blkback() {
  {
    std::lock_guard lk(run_m_);
    stopping_ = true;
  }
  run_cv_.notify_all();
  work_cv_.notify_all();
  uint64_t one = 1;
  (void)!::write(stop_.get(), &one, sizeof(one));
  for (pthread_t t : threads_) pthread_join(t, nullptr);
}

void Blkback::poll_fds(std::vector<pollfd>& fds) { fds.push_back({broken_.get(), POLLIN, 0}); }

Result<void> Blkback::service() {
  uint64_t v;
  (void)!::read(broken_.get(), &v, sizeof(v));
  std::lock_guard lk(error_m_);
  if (error_) return std::unexpected(*error_);
  return {};
}

// The dispatcher: sleeps until the frontend kicks, serves the ring, until
// the owner says stop or the frontend breaks the protocol.
void Blkback::io_loop() {
  for (;;) {
    pollfd p[2] = {{evt_->wait_fd(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
    if (p[1].revents) return;
    (void)evt_->consume();  // clear the kicks
    if (stalled_) continue;
    if (auto e = serve_ring()) {
      std::lock_guard lk(error_m_);
      error_ = std::move(e);
      uint64_t one = 1;
      (void)!::write(broken_.get(), &one, sizeof(one));
      return;
    }
  }
}

// Moves all of `iov` at `off`; a short transfer is continued where it stopped.
static bool full_io(int fd, bool write, iovec* iov, int n, off_t off) {
  while (n > 0) {
    ssize_t got = write ? ::pwritev(fd, iov, n, off) : ::preadv(fd, iov, n, off);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    off += got;
    while (n > 0 && static_cast<size_t>(got) >= iov->iov_len) {
      got -= static_cast<ssize_t>(iov->iov_len);
      ++iov;
      --n;
    }
    if (n > 0) {
      iov->iov_base = static_cast<uint8_t*>(iov->iov_base) + got;
      iov->iov_len -= static_cast<size_t>(got);
    }
  }
  return true;
}

// The request's segments as memory (a checked request's pages are this
// id's, check_request); false if a page was never granted.
bool Blkback::segments(const blkif_request& r, iovec* iov) const {
  for (unsigned i = 0; i < r.nr_segments; ++i) {
    uint8_t* page = pages_->get(r.seg[i].gref);
    if (!page) return false;
    iov[i].iov_base = page + size_t{r.seg[i].first_sect} * kSectorSize;
    iov[i].iov_len = size_t{r.seg[i].last_sect - r.seg[i].first_sect + 1u} * kSectorSize;
  }
  return true;
}

int16_t Blkback::rw(const blkif_request& r) {
  iovec iov[blkif::kSegs];
  if (!segments(r, iov)) return BLKIF_RSP_ERROR;
  // The guest may change a page while we write it: it only changes its own data.
  bool ok = full_io(disk_.get(), r.operation != BLKIF_OP_READ, iov, r.nr_segments,
                    static_cast<off_t>(r.sector_number * kSectorSize));
  return ok ? BLKIF_RSP_OKAY : BLKIF_RSP_ERROR;
}

// Why `r` must be refused on this disk, "" if it may run.
std::string Blkback::refusal(const blkif_request& r) const {
  if (st_.readonly && r.operation != BLKIF_OP_READ) return "the disk is read-only";
  return blkif::check_request(r, st_.sectors);
}

// A read or write this domain may run as part of a merged run: valid, and
// every page granted (anything else takes execute(), which answers it).
bool Blkback::mergeable(const blkif_request& r, iovec* iov) const {
  return (r.operation == BLKIF_OP_READ || r.operation == BLKIF_OP_WRITE) && refusal(r).empty() && segments(r, iov);
}

int16_t Blkback::execute(const blkif_request& r) {
  if (auto e = refusal(r); !e.empty()) {
    std::fprintf(stderr, "blkback: refused request id %llu: %s\n", static_cast<unsigned long long>(r.id), e.c_str());
    return BLKIF_RSP_ERROR;
  }
  switch (r.operation) {
    case BLKIF_OP_READ:
    case BLKIF_OP_WRITE:
      return rw(r);
    case BLKIF_OP_FLUSH_DISKCACHE:
      return ::fdatasync(disk_.get()) == 0 ? BLKIF_RSP_OKAY : BLKIF_RSP_ERROR;
    case BLKIF_OP_WRITE_BARRIER: {
      // Everything before is done (ring order); make it durable, then this
      // write, durably, before anything after it.
      if (::fdatasync(disk_.get()) != 0) return BLKIF_RSP_ERROR;
      if (r.nr_segments && rw(r) != BLKIF_RSP_OKAY) return BLKIF_RSP_ERROR;
      return ::fdatasync(disk_.get()) == 0 ? BLKIF_RSP_OKAY : BLKIF_RSP_ERROR;
    }
    case BLKIF_OP_DISCARD: {
      if (!(st_.features & blkif::kFeatureDiscard)) return BLKIF_RSP_EOPNOTSUPP;
      blkif_request_discard d;
      std::memcpy(&d, &r, sizeof(d));
      int rc = ::fallocate(disk_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                           static_cast<off_t>(d.sector_number * kSectorSize),
                           static_cast<off_t>(d.nr_sectors * kSectorSize));
      if (rc == 0) return BLKIF_RSP_OKAY;
      return errno == EOPNOTSUPP ? BLKIF_RSP_EOPNOTSUPP : BLKIF_RSP_ERROR;
    }
    default:
      return BLKIF_RSP_EOPNOTSUPP;
  }
}

// Returns whether the frontend asked to be notified; the dispatcher notifies
// once for all it answered in a pass, a worker at once.
bool Blkback::respond(const blkif_request& r, int16_t status) {
  blkif_response rsp{};
  rsp.id = r.id;
  rsp.operation = r.operation;
  rsp.status = status;
  std::lock_guard lk(ring_m_);
  if (garbage(ctl::FaultKind::kBadId)) {
    rsp.id = r.id + blkif::kIds;  // never in flight
  } else if (garbage(ctl::FaultKind::kBadGrant)) {
    rsp.status = 7;  // not a blkif status
  } else if (dup_of_) {
    rsp = *dup_of_;  // kBadProd: a second response for one id; this request gets none
    dup_of_.reset();
  } else if (garbage(ctl::FaultKind::kBadProd)) {
    dup_of_ = rsp;
  }
  (void)ring_->put_response(rsp);
  // Published at once: a crash replays only what was not answered.
  return ring_->push_responses();
}

static bool writes(const blkif_request& r) { return r.operation != BLKIF_OP_READ; }

// The sectors a request touches (a flush: none; it orders by itself).
static std::pair<uint64_t, uint64_t> extent(const blkif_request& r) {
  if (r.operation == BLKIF_OP_DISCARD) {
    blkif_request_discard d;
    std::memcpy(&d, &r, sizeof(d));
    return {d.sector_number, d.sector_number + d.nr_sectors};
  }
  return {r.sector_number, r.sector_number + blkif::data_sectors(r)};
}

static bool orders_all(const blkif_request& r) {
  return r.operation == BLKIF_OP_FLUSH_DISKCACHE || r.operation == BLKIF_OP_WRITE_BARRIER;
}

bool Blkback::wait_turn(const blkif_request& r) {
  auto [first, end] = extent(r);
  std::unique_lock lk(run_m_);
  run_cv_.wait(lk, [&] {
    if (stopping_) return true;
    if (orders_all(r)) return busy_ == 0;
    if (busy_ == running_.size()) return false;
    for (const auto& o : running_)
      if (o.state != Running::kFree && (writes(r) || o.writes) && first < o.end && o.first < end) return false;
    return true;
  });
  return !stopping_;
}

// 256 KiB: some 25 us of copying here; a pass of small requests still
// notifies once.
constexpr uint64_t kNotifySectors = 512;
constexpr uint64_t kMergeSectors = 64;  // 32 KiB

std::optional<Error> Blkback::serve_ring() {
  std::optional<Error> err;
  bool notify = false;
  uint64_t unsent = 0;  // sectors answered since the last notification
  auto answer = [&](const blkif_request& q, int16_t status) {
    notify = respond(q, status) || notify;
    // A pass over a ring of large requests takes a while: the frontend
    // hears of the first answers meanwhile and reuses their ids while this
    // domain copies the rest (one notification per pass kept the two
    // taking turns).
    unsent += blkif::data_sectors(q);
    if (notify && unsent >= kNotifySectors) {
      (void)evt_->notify();
      notify = false;
      unsent = 0;
    }
  };
  // Reads (or writes) that continue one another run as one preadv
  // (pwritev), answered each: a 1 MiB read is 24 requests, and a system
  // call per request cost more than the copy. If a merged call fails, each
  // runs alone, for its own status. A run ends at kNotifySectors, so its
  // answers reach the frontend as often as a pass tells it.
  uint64_t run_first = 0, run_end = 0;  // the run's sectors [first, end)
  auto flush_run = [&] {
    if (run_.empty()) return;
    bool ok = full_io(disk_.get(), run_[0].operation != BLKIF_OP_READ, run_iov_.data(),
                      static_cast<int>(run_iov_.size()), static_cast<off_t>(run_first * kSectorSize));
    for (const auto& q : run_) answer(q, ok ? BLKIF_RSP_OKAY : run_.size() == 1 ? BLKIF_RSP_ERROR : rw(q));
    run_.clear();
    run_iov_.clear();
  };
  for (;;) {
    for (;;) {
      std::optional<blkif_request> got;
      {
        std::lock_guard lk(ring_m_);
        auto req = ring_->get_request();
        if (!req) {
          err = req.error();
          break;
        }
        got = *req;  // our copy; the guest cannot change it now
      }
      if (!got) break;
      const blkif_request r = *got;
      iovec iov[blkif::kSegs];
      // The dispatcher runs requests itself: merge large ones that continue
      // one another (small ones rarely do, and go straight through).
      if (!parallel_ && blkif::data_sectors(r) >= kMergeSectors && mergeable(r, iov)) {
        if (!run_.empty() && (r.operation != run_[0].operation || r.sector_number != run_end ||
                              run_end - run_first >= kNotifySectors))
          flush_run();
        if (run_.empty()) run_first = run_end = r.sector_number;
        run_.push_back(r);
        run_iov_.insert(run_iov_.end(), iov, iov + r.nr_segments);
        run_end += blkif::data_sectors(r);
      } else if (!parallel_ || orders_all(r)) {  // no workers, or nothing else may run (a flush, a barrier)
        flush_run();
        if (parallel_ && !wait_turn(r)) return err;  // the owner says stop
        answer(r, execute(r));
      } else {
        if (!wait_turn(r)) return err;
        auto [first, end] = extent(r);
        std::lock_guard lk(run_m_);
        for (auto& o : running_)  // a free place: wait_turn waited for one
          if (o.state == Running::kFree) {
            o = {Running::kQueued, writes(r), first, end, seq_++, r};
            ++busy_;
            break;
          }
        work_cv_.notify_one();
      }
      if (stalled_) break;
    }
    flush_run();
    if (err || stalled_) break;
    std::lock_guard lk(ring_m_);
    if (!ring_->final_check_for_requests()) break;
  }
  if (notify) (void)evt_->notify();
  return err;
}

// A worker: executes queued requests, answers each, and frees its place.
void Blkback::work() {
  for (;;) {
    Running* p = nullptr;
    {
      std::unique_lock lk(run_m_);
      work_cv_.wait(lk, [&] {
        p = nullptr;
        for (auto& o : running_)
          if (o.state == Running::kQueued && (!p || o.seq < p->seq)) p = &o;
        return stopping_ || p;
      });
      if (stopping_) return;
      p->state = Running::kExecuting;
    }
    const blkif_request r = p->req;
    int16_t status = execute(r);
    if (stalled_) continue;  // a hung driver answers nothing
    // Answered before its place is freed, so a request waiting behind it
    // (an overlap) is answered after it; the dispatcher waits for a place
    // (wait_turn) when the response let the frontend post more.
    if (respond(r, status)) (void)evt_->notify();
    {
      std::lock_guard lk(run_m_);
      p->state = Running::kFree;
      --busy_;
    }
    run_cv_.notify_one();
  }
}

}  // namespace sd::drvdom
