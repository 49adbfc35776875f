#include "vbd/guest_disk.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace sd::front {

using blkif::kSectorSize;

Result<std::unique_ptr<GuestDisk>> GuestDisk::attach(void* ring, std::unique_ptr<platform::EventChannel> evt,
                                                     std::unique_ptr<GuestGrants> grants, BlockTarget& disk,
                                                     const blkif::DiskState& state, unsigned workers,
                                                     std::string name, std::shared_ptr<void> keep) {
  if (!evt || !grants || workers == 0 || workers > blkif::kRingSize)
    return fail(Code::kInvalidInput, "guest disk: no event channel or grants, or workers not in 1..32");
  auto r = ring::BackRing<blkif::Traits>::attach(ring, blkif::kPageSize, false);  // the guest initialised it
  if (!r) return std::unexpected(r.error());
  std::unique_ptr<GuestDisk> g(new GuestDisk());
  g->ring_.emplace(std::move(*r));
  g->evt_ = std::move(evt);
  g->grants_ = std::move(grants);
  g->disk_ = &disk;
  g->state_ = state;
  g->name_ = std::move(name);
  g->keep_ = std::move(keep);
  g->done_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!g->done_fd_) return sys_fail("eventfd");
  // One job per ring slot: the guest cannot have more requests unanswered.
  g->jobs_.resize(g->ring_->size());
  for (auto& j : g->jobs_) {
    j.buf.resize(blkif::kMaxIoBytes);
    g->free_.push_back(&j);
  }
  for (unsigned i = 0; i < workers; ++i) g->workers_.emplace_back([p = g.get()] { p->work(); });
  return g;
}

GuestDisk::~GuestDisk() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

GuestDisk::Counters GuestDisk::counters() const {
  std::lock_guard<std::mutex> lock(m_);
  return counters_;
}

void GuestDisk::stop(const std::string& why) {
  if (!broken_.empty()) return;
  broken_ = why;
  std::fprintf(stderr, "guest disk %s: the guest's ring is broken, no longer served: %s\n", name_.c_str(),
               why.c_str());
}

void GuestDisk::answer(uint64_t id, uint8_t op, int16_t status) {
  blkif_response rsp{};
  rsp.id = id;
  rsp.operation = op;
  rsp.status = status;
  (void)ring_->put_response(rsp);  // one per consumed request: always has a slot
  answered_ = true;
}

void GuestDisk::serve() {
  (void)evt_->consume();
  uint64_t n;
  (void)!::read(done_fd_.get(), &n, sizeof(n));
  // Finished jobs first: their slots take the next requests.
  std::deque<Job*> done;
  {
    std::lock_guard<std::mutex> lock(m_);
    done.swap(done_);
  }
  for (Job* j : done) {
    answer(j->req.id, j->req.operation, j->status);
    std::lock_guard<std::mutex> lock(m_);
    free_.push_back(j);
  }
  while (broken_.empty()) {
    auto r = ring_->next_request();
    if (!r) {
      stop(r.error().message);
      break;
    }
    if (!*r) break;
    const blkif_request req = **r;
    std::string why = blkif::check_request(req, state_.sectors, false);
    bool lacks = (req.operation == BLKIF_OP_DISCARD && !(state_.features & blkif::kFeatureDiscard)) ||
                 (req.operation == BLKIF_OP_WRITE_BARRIER && !(state_.features & blkif::kFeatureBarrier)) ||
                 (req.operation == BLKIF_OP_FLUSH_DISKCACHE && !(state_.features & blkif::kFeatureFlush));
    bool writes = req.operation != BLKIF_OP_READ;
    if (!why.empty() || lacks || (writes && state_.readonly)) {
      answer(req.id, req.operation, lacks ? BLKIF_RSP_EOPNOTSUPP : BLKIF_RSP_ERROR);
      std::lock_guard<std::mutex> lock(m_);
      ++counters_.refused;
      continue;
    }
    std::lock_guard<std::mutex> lock(m_);
    if (free_.empty()) {  // a job per ring slot: the ring's own checks keep this from happening
      stop("more requests in flight than ring slots");
      break;
    }
    Job* j = free_.back();
    free_.pop_back();
    j->req = req;
    todo_.push_back(j);
    cv_.notify_one();
  }
  if (answered_ && ring_->push_responses()) (void)evt_->notify();
  answered_ = false;
}

void GuestDisk::work() {
  for (;;) {
    Job* j;
    {
      std::unique_lock<std::mutex> lock(m_);
      cv_.wait(lock, [&] { return stopping_ || !todo_.empty(); });
      if (stopping_) return;
      j = todo_.front();
      todo_.pop_front();
    }
    j->status = execute(*j);
    {
      std::lock_guard<std::mutex> lock(m_);
      if (j->status == BLKIF_RSP_OKAY) ++counters_.done;
      else ++counters_.failed;
      done_.push_back(j);
    }
    uint64_t one = 1;
    (void)!::write(done_fd_.get(), &one, sizeof(one));
  }
}

// The request's segments between the guest's pages and the job's buffer,
// one grant-copy call; the bytes they hold in *bytes.
int16_t GuestDisk::copy_segments(Job& job, bool to_guest, size_t* bytes) {
  GrantCopy ops[blkif::kSegs];
  size_t at = 0;
  for (unsigned i = 0; i < job.req.nr_segments; ++i) {
    const auto& s = job.req.seg[i];
    auto len = static_cast<uint16_t>((s.last_sect - s.first_sect + 1u) * kSectorSize);
    ops[i] = {s.gref, static_cast<uint16_t>(s.first_sect * kSectorSize), len, job.buf.data() + at, to_guest, false};
    at += len;
  }
  grants_->copy(ops, job.req.nr_segments);
  *bytes = at;
  for (unsigned i = 0; i < job.req.nr_segments; ++i)
    if (!ops[i].ok) return BLKIF_RSP_ERROR;
  return BLKIF_RSP_OKAY;
}

int16_t GuestDisk::execute(Job& job) {
  const blkif_request& r = job.req;
  auto status = [](int rc) -> int16_t {
    return rc == 0 ? BLKIF_RSP_OKAY : rc == -EOPNOTSUPP ? BLKIF_RSP_EOPNOTSUPP : BLKIF_RSP_ERROR;
  };
  switch (r.operation) {
    case BLKIF_OP_FLUSH_DISKCACHE:
      return status(disk_->flush());
    case BLKIF_OP_DISCARD: {
      blkif_request_discard d;
      std::memcpy(&d, &r, sizeof(d));
      return status(disk_->discard(d.sector_number * kSectorSize, d.nr_sectors * kSectorSize));
    }
    case BLKIF_OP_READ: {
      size_t bytes = blkif::data_sectors(r) * kSectorSize;
      if (int rc = disk_->read(r.sector_number * kSectorSize, bytes, job.buf.data()); rc != 0) return status(rc);
      return copy_segments(job, true, &bytes);
    }
    default: {  // WRITE, or WRITE_BARRIER where the disk state offers barriers: flush, write,
                // flush (the proxy offers guests flush-cache, not barriers: its
                // workers run requests at once, and a barrier orders the whole queue)
      bool barrier = r.operation == BLKIF_OP_WRITE_BARRIER;
      if (barrier)
        if (int rc = disk_->flush(); rc != 0) return status(rc);
      if (r.nr_segments > 0) {
        size_t bytes = 0;
        if (auto s = copy_segments(job, false, &bytes); s != BLKIF_RSP_OKAY) return s;
        if (int rc = disk_->write(r.sector_number * kSectorSize, bytes, job.buf.data()); rc != 0) return status(rc);
      }
      return barrier ? status(disk_->flush()) : BLKIF_RSP_OKAY;
    }
  }
}

}  // namespace sd::front
