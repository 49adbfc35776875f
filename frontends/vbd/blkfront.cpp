#include "vbd/blkfront.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace sd::front {

using blkif::kPageSize;
using blkif::kSectorSize;
constexpr uint16_t kReqRing = 0;

namespace {
void drain(const UniqueFd& eventfd) {
  uint64_t n;
  (void)!::read(eventfd.get(), &n, sizeof(n));
}
}  // namespace

Result<std::unique_ptr<Blkfront>> Blkfront::attach(ctl::Channel ch, std::unique_ptr<PoolSource> xen) {
  auto f = std::unique_ptr<Blkfront>(new Blkfront(std::move(ch), std::move(xen)));
  if (auto r = f->link_.wait_attached(*f, std::chrono::seconds(5)); !r) return std::unexpected(r.error());
  f->stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  f->wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!f->stop_ || !f->wake_) return sys_fail("eventfd");
  f->service_ = std::thread([p = f.get()] { p->service_loop(); });
  return f;
}

Blkfront::Blkfront(ctl::Channel ch, std::unique_ptr<PoolSource> xen)
    : link_(std::move(ch), {"vbd", blkif::kIds, xen ? 0u : static_cast<uint32_t>(blkif::kPoolPages)}),
      xen_(std::move(xen)) {}

Blkfront::~Blkfront() { stop(); }

void Blkfront::stop() {
  if (service_.joinable()) {
    uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
    service_.join();
  }
}

// The attach's payload is the disk; the pool is this guest's own memory,
// mapped by the link (an id's kSegs data pages side by side, so they take
// one memcpy): initialise the ring, keep the disk state in the log.
Result<void> Blkfront::attached(FrontendLink& link) {
  disk_ = link.attach_msg().get_payload<blkif::DiskState>();
  if (disk_.sectors == 0) return fail(Code::kEscalate, "vbd attach: a disk of 0 sectors");
  limit_ = std::clamp<uint32_t>(disk_.queue_limit, 1, blkif::kRingSize);
  if (xen_) {  // the pool comes with the first kReconnect, which names the backend's domain
    log().set_config(&disk_, sizeof(disk_));
    return {};
  }
  ring_page_ = link.page(blkif::kRingRef);
  data_ = link.page(blkif::kDataRef0);
  auto r = ring::FrontRing<blkif::Traits>::attach(ring_page_, kPageSize, true);
  if (!r) return std::unexpected(r.error());
  ring_.emplace(std::move(*r));
  log().set_config(&disk_, sizeof(disk_));  // the negotiated disk, compacted
  return {};
}

void Blkfront::kick() {
  if (evt_) (void)evt_->notify();
  else link_.kick();
}

Blkfront::Stats Blkfront::stats() const {
  std::lock_guard lk(m_);
  return stats_;
}

void Blkfront::serve_also(int fd, void (*take)(void*), void* ctx) {
  std::lock_guard lk(m_);
  take_ = take;
  take_ctx_ = ctx;
  source_fd_ = fd;
  uint64_t one = 1;  // the service thread polls the new fd from its next turn
  (void)!::write(wake_.get(), &one, sizeof(one));
}

// Responses, control messages and the source's requests, until the
// destructor says stop. Once shadowd is gone only the source is served (its
// requests fail at once with EIO).
void Blkfront::service_loop() {
  service_id_ = std::this_thread::get_id();
  bool gone = false;
  int source = -1;  // serve_also's fd, read each turn (its write to wake_ makes one)
  for (;;) {
    // event_fd() changes only on this thread (a regrant, inside pump_locked).
    pollfd p[5] = {{stop_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}, {source, POLLIN, 0},
                   {gone ? -1 : event_fd(), POLLIN, 0}, {gone ? -1 : link_.fd(), POLLIN, 0}};
    int r = ::poll(p, 5, 200);
    if (r < 0 && errno != EINTR) break;
    if (p[0].revents) break;
    if (p[1].revents) drain(wake_);
    {
      std::unique_lock lk(m_);
      if (!gone) {
        answer_locked(lk, p[4].revents != 0 || r == 0);
        gone = link_.gone();
      }
      source = source_fd_;
    }
    if (p[2].revents & ~POLLNVAL) take_(take_ctx_);
    if (gone && source < 0) break;
  }
}

// The control channel is read only when it has something (or once in a
// while): a response alone costs no receive on it.
void Blkfront::answer_locked(std::unique_lock<std::mutex>& lk, bool control) {
  pump_locked(control);
  finish_answered(lk);
}

template <class Ready>
void Blkfront::wait_locked(std::unique_lock<std::mutex>& lk, Ready ready) {
  if (std::this_thread::get_id() != service_id_) return slot_cv_.wait(lk, ready);
  while (!ready()) {
    // wake_: a lent read's ids came back (return_lent, on another thread);
    // stop_: the destructor waits, so what waits here gives up (EIO) rather
    // than wait out an outage (stop_ stays readable for service_loop).
    pollfd p[4] = {{event_fd(), POLLIN, 0}, {link_.fd(), POLLIN, 0}, {wake_.get(), POLLIN, 0},
                   {stop_.get(), POLLIN, 0}};
    waiting_ = true;
    lk.unlock();
    int r = ::poll(p, 4, 200);
    if (p[2].revents) drain(wake_);
    lk.lock();
    waiting_ = false;
    if (p[3].revents) stopping_ = true;
    answer_locked(lk, p[1].revents != 0 || r == 0);
  }
}

// The answered ids: a read's data copied out (outside the lock, so callers
// post meanwhile), each id given back (a lent read's when its caller is
// done with the pages), and every I/O whose last part this was completed.
// Once shadowd is gone, every id on the ring counts as answered with an
// error: nothing will answer it.
void Blkfront::finish_answered(std::unique_lock<std::mutex>& lk) {
  if (link_.gone())
    for (size_t id = 0; id < blkif::kIds; ++id)
      if (busy_[id] && io_[id] && !done_[id] && posted_[id]) answered_locked(id, BLKIF_RSP_ERROR);
  if (answered_.empty()) return;
  std::vector<size_t> ids;
  ids.swap(answered_);
  lk.unlock();
  {
    std::shared_lock copying(pool_m_);
    for (size_t id : ids)
      if (status_[id] == BLKIF_RSP_OKAY && io_[id]->rdata)  // this thread alone reads an answered id
        std::memcpy(io_[id]->rdata + part_at_[id], data(id), part_len_[id]);
  }
  lk.lock();
  finished_.clear();  // only this thread uses it; its capacity stays (no allocation per response)
  for (size_t id : ids) {
    Io* io = io_[id];
    int rc = status_[id] == BLKIF_RSP_OKAY ? 0 : status_[id] == BLKIF_RSP_EOPNOTSUPP ? -EOPNOTSUPP : -EIO;
    if (io->rc == 0) io->rc = rc;
    if (--io->parts_left == 0) finished_.push_back(io);
    if (!io->lend) release_locked(id);
  }
  slot_cv_.notify_all();  // once for the whole pass: a caller woken per id would post one request per wakeup
  ids.clear();
  answered_.swap(ids);  // keep the capacity
  lk.unlock();
  for (Io* io : finished_) io->done(io->ctx, io->rc);
  lk.lock();
}

void Blkfront::answered_locked(size_t id, int16_t status) {
  status_[id] = status;
  done_[id] = 1;
  answered_.push_back(id);  // finished by the service thread
  --pending_;
}

void Blkfront::release_locked(size_t id) {
  if (!done_[id]) --pending_;  // reserved, never answered (shadowd went)
  busy_[id] = 0;
  done_[id] = 0;
  posted_[id] = 0;
  io_[id] = nullptr;
  --held_;
}

void Blkfront::ids_returned_locked() {
  slot_cv_.notify_all();
  if (waiting_) {
    uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof(one));
  }
}

void Blkfront::pump_locked(bool control) {
  if (control && !link_.pump(*this)) {
    slot_cv_.notify_all();  // shadowd is gone: nothing will answer
    return;
  }
  if (evt_) (void)evt_->consume();
  else link_.clear_kicks();
  if (link_.connected() && ring_) take_responses_locked();
}

void Blkfront::backend_fault_locked(const std::string& why) {
  ++stats_.faults;
  link_.fault(why);
}

// Each response is checked against the in-flight table before the caller
// waiting for it hears of it: an unknown id or a second response for an id
// completes nothing (the guest sees one completion per request).
void Blkfront::take_responses_locked() {
  std::optional<std::string> bad;
  bool any = false;
  do {
    for (;;) {
      auto r = ring_->get_response();
      if (!r) {
        bad = r.error().message;
        break;
      }
      if (!*r) break;
      const blkif_response rsp = **r;  // our copy; the backend cannot change it now
      auto req = table_.complete(rsp);
      if (!req) {
        bad = req.error().message;
        break;
      }
      log().complete(static_cast<uint32_t>(rsp.id));
      answered_locked(rsp.id, rsp.status);
      ++stats_.completed;
      any = true;
    }
    // Responses published between the last read and rsp_event being set
    // bring no notification: take them now.
  } while (!bad && ring_->final_check_for_responses());
  // The valid responses before a bad one are answered; the ring has room again.
  if (any) slot_cv_.notify_all();
  if (bad) backend_fault_locked(*bad);
}

// The old backend is dead. Keep what it finished, then hand the next one a
// clean ring holding exactly the requests still in flight, in submission
// order (xen-blkfront's blkif_recover: copy the shadow, reset, requeue), so
// every flush and barrier stays behind what was issued before it.
Result<FrontendLink::Repair> Blkfront::repair(const ctl::Msg& m) {
  if (ring_) take_responses_locked();  // stops at the first invalid response
  FrontendLink::Repair done{0, std::nullopt};
  if (xen_) {
    auto g = regrant(m.a);
    if (!g) return std::unexpected(g.error());
    done.xen_pool = *g;  // shadowd passes it on to the new backend
  }
  done.replayed = blkif::requeue(*ring_, table_, log(), kReqRing);
  ++stats_.reconnects;
  stats_.replayed += done.replayed;
  slot_cv_.notify_all();  // callers waiting for a first ring
  return done;
}

Result<ctl::XenPool> Blkfront::regrant(uint32_t domid) {
  // The old grants go first (the guest's grant allocator is bounded): the
  // data of every id a caller holds waits here meanwhile.
  constexpr size_t kIdBytes = size_t{blkif::kSegs} * kPageSize;
  std::vector<std::pair<size_t, std::vector<uint8_t>>> held;
  std::unique_lock copying(pool_m_);  // no caller is copying into or out of the old pages
  if (data_)
    for (size_t id = 0; id < blkif::kIds; ++id)
      if (busy_[id]) held.emplace_back(id, std::vector<uint8_t>(data(id), data(id) + kIdBytes));
  ring_.reset();
  evt_.reset();
  pool_keep_.reset();
  ring_page_ = data_ = nullptr;
  auto pool = xen_->next(domid, blkif::kPoolPages);
  if (!pool) return std::unexpected(pool.error());
  for (size_t i = 1; i < pool->pages.size(); ++i)  // data(id) takes an id's pages as one run
    if (pool->pages[i] != pool->pages[i - 1] + kPageSize) return fail(Code::kEscalate, "pool pages not contiguous");
  ring_page_ = pool->pages[blkif::kRingRef];
  data_ = pool->pages[blkif::kDataRef0];
  for (const auto& [id, bytes] : held) std::memcpy(data(id), bytes.data(), kIdBytes);
  auto r = ring::FrontRing<blkif::Traits>::attach(ring_page_, kPageSize, true);
  if (!r) return std::unexpected(r.error());
  ring_.emplace(std::move(*r));
  evt_ = std::move(pool->evt);
  pool_keep_ = std::move(pool->keep);
  return pool->ref;
}

// Blocks, never fails, until `free` ids and ring slots are free (an outage
// fills the ring and the queue limit: the requests wait for the next
// backend; lent reads may hold ids). Returns one free id, now held by the
// caller, or nullopt when shadowd is gone or the destructor stops the
// service thread waiting here.
std::optional<size_t> Blkfront::reserve_locked(std::unique_lock<std::mutex>& lk, size_t free) {
  wait_locked(lk, [&] {
    return given_up() || (ring_ && pending_ + free <= limit_ && held_ + free <= blkif::kIds &&
                          ring_->free_requests() >= free);
  });
  if (given_up()) return std::nullopt;
  size_t id = next_id_;
  while (busy_[id]) id = (id + 1) % blkif::kIds;
  next_id_ = (id + 1) % blkif::kIds;  // round robin: a stale duplicate is more likely caught
  busy_[id] = 1;
  done_[id] = 0;
  ++held_;
  ++pending_;
  return id;
}

// Puts one request of at most kMaxIoBytes on the ring for a held id whose
// pages already hold the data to write. Ids reserved and not answered never
// outnumber the ring's slots (pending_ <= limit_), so a reserved id always
// finds one; only a Xen regrant in between may have left no ring yet. False
// when shadowd is gone.
bool Blkfront::post_locked(std::unique_lock<std::mutex>& lk, size_t id, uint8_t op, uint64_t sector,
                           uint32_t sectors, bool publish) {
  wait_locked(lk, [&] { return given_up() || ring_; });
  if (given_up()) return false;
  blkif_request req{};
  req.operation = op;
  req.id = id;
  if (op == BLKIF_OP_DISCARD) {
    blkif_request_discard d{};
    d.operation = op;
    d.id = id;
    d.sector_number = sector;
    d.nr_sectors = sectors;
    std::memcpy(&req, &d, sizeof(d));
  } else if (op != BLKIF_OP_FLUSH_DISKCACHE) {
    req.sector_number = sector;
    uint32_t segs = (sectors + blkif::kSectorsPerPage - 1) / blkif::kSectorsPerPage;
    req.nr_segments = static_cast<uint8_t>(segs);
    for (uint32_t i = 0; i < segs; ++i) {
      req.seg[i].gref = blkif::data_ref(id, i);
      req.seg[i].first_sect = 0;
      req.seg[i].last_sect =
          static_cast<uint8_t>(std::min(blkif::kSectorsPerPage, sectors - i * blkif::kSectorsPerPage) - 1);
    }
  }
  (void)table_.add(req);
  (void)ring_->put_request(req);
  log().record(static_cast<uint32_t>(id), kReqRing, &req, blkif::kLoggedReq);  // the shadow's copy, same step
  posted_[id] = 1;
  stats_.max_inflight = std::max<uint64_t>(stats_.max_inflight, table_.count());
  ++stats_.submitted;
  switch (op) {
    case BLKIF_OP_READ: ++stats_.reads; break;
    case BLKIF_OP_WRITE: ++stats_.writes; break;
    case BLKIF_OP_FLUSH_DISKCACHE: ++stats_.flushes; break;
    case BLKIF_OP_WRITE_BARRIER: ++stats_.barriers; break;
    default: ++stats_.discards;
  }
  if (publish && ring_->push_requests()) kick();
  return true;
}

// Cuts the I/O into requests of at most kMaxIoBytes (a discard: 2^30
// sectors; a flush is one request) and puts each on the ring as soon as an
// id is free: a 1 MiB write is 24 requests the backend runs side by side.
// Write data moves into the id's pages here, outside the lock; read data
// moves out on the service thread, which gives each id back as soon as its
// part is answered, so a caller waiting for ids never waits on another's.
void Blkfront::start(Io& io, uint8_t op, uint64_t sector, uint64_t sectors, const uint8_t* wdata) {
  const uint64_t per = op == BLKIF_OP_DISCARD ? (1u << 30) : blkif::kMaxIoBytes / kSectorSize;
  const uint64_t parts = op == BLKIF_OP_FLUSH_DISKCACHE ? 1 : (sectors + per - 1) / per;
  io.rc = 0;
  io.parts_left = static_cast<uint32_t>(parts);
  io.lent.clear();
  if (parts == 0) return io.done(io.ctx, 0);
  // A lent read keeps its ids until its caller is done: one that needed
  // more than half of them could wait forever for its own.
  if (io.lend && (op != BLKIF_OP_READ || parts > blkif::kIds / 2)) return io.done(io.ctx, -EINVAL);
  // A big I/O on a full ring takes ids a batch at a time (up to kBatch at
  // once): taken one by one as each is answered, every part would cost the
  // backend a wakeup and this side a kick, the two taking turns.
  constexpr uint64_t kBatch = 8;
  for (uint64_t done = 0, k = 0, batch = 0; k < parts; ++k) {
    uint32_t n = static_cast<uint32_t>(std::min(per, sectors - done));
    std::unique_lock lk(m_);
    size_t free = 1;
    if (batch == 0) batch = free = std::min<uint64_t>({parts - k, kBatch, limit_});
    --batch;
    auto id = reserve_locked(lk, free);
    if (id) {
      io_[*id] = &io;
      part_at_[*id] = done * kSectorSize;
      part_len_[*id] = size_t{n} * kSectorSize;
      if (wdata) {
        lk.unlock();
        {
          std::shared_lock copying(pool_m_);
          std::memcpy(data(*id), wdata + done * kSectorSize, size_t{n} * kSectorSize);
        }
        lk.lock();
      }
      // A batch is published (and the backend kicked) once, whole.
      if (!post_locked(lk, *id, op, sector + done, n, batch == 0 || k + 1 == parts)) {
        release_locked(*id);
        slot_cv_.notify_one();
        id.reset();
      } else if (io.lend) {
        io.lent.push_back(static_cast<uint32_t>(*id));
      }
    }
    if (!id) {  // shadowd is gone (or this frontend stops): this part and the rest fail here
      io.rc = -EIO;
      io.parts_left -= static_cast<uint32_t>(parts - k);
      bool last = io.parts_left == 0;
      lk.unlock();
      if (last) io.done(io.ctx, io.rc);
      return;
    }
    done += n;
  }
}

// An asynchronous start, then wait for its end: one condition variable per
// call, so an answer wakes its own caller only.
template <class Begin>
int Blkfront::await(uint8_t* rdata, Begin begin) {
  struct Wait {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    int rc = 0;
  } w;
  Io io;
  io.rdata = rdata;
  io.ctx = &w;
  io.done = [](void* ctx, int rc) {
    auto* w = static_cast<Wait*>(ctx);
    std::lock_guard lk(w->m);
    w->rc = rc;
    w->done = true;
    w->cv.notify_one();
  };
  begin(io);
  std::unique_lock lk(w.m);
  w.cv.wait(lk, [&] { return w.done; });
  return w.rc;
}

int Blkfront::read(uint64_t off, size_t len, uint8_t* out) {
  if (off > size_bytes() || len > size_bytes() - off) return -EINVAL;
  if (len == 0) return 0;
  if (off % kSectorSize == 0 && len % kSectorSize == 0)
    return run(BLKIF_OP_READ, off / kSectorSize, len / kSectorSize, nullptr, out);
  uint64_t first = off / kSectorSize, last = (off + len - 1) / kSectorSize;
  std::vector<uint8_t> buf((last - first + 1) * kSectorSize);
  if (int rc = run(BLKIF_OP_READ, first, last - first + 1, nullptr, buf.data()); rc != 0) return rc;
  std::memcpy(out, buf.data() + off % kSectorSize, len);
  return 0;
}

int Blkfront::write(uint64_t off, size_t len, const uint8_t* in) {
  if (disk_.readonly) return -EROFS;
  if (off > size_bytes() || len > size_bytes() - off) return -EINVAL;
  if (len == 0) return 0;
  if (off % kSectorSize == 0 && len % kSectorSize == 0)
    return run(BLKIF_OP_WRITE, off / kSectorSize, len / kSectorSize, in, nullptr);
  // Partial sectors: read the sectors around, patch, write them back (a
  // block device only moves whole sectors).
  std::lock_guard rmw(rmw_);
  uint64_t first = off / kSectorSize, last = (off + len - 1) / kSectorSize;
  std::vector<uint8_t> buf((last - first + 1) * kSectorSize);
  if (int rc = run(BLKIF_OP_READ, first, last - first + 1, nullptr, buf.data()); rc != 0) return rc;
  std::memcpy(buf.data() + off % kSectorSize, in, len);
  return run(BLKIF_OP_WRITE, first, last - first + 1, buf.data(), nullptr);
}

int Blkfront::run(uint8_t op, uint64_t sector, uint64_t sectors, const uint8_t* wdata, uint8_t* rdata) {
  return await(rdata, [&](Io& io) { start(io, op, sector, sectors, wdata); });
}

void Blkfront::start_flush(Io& io) {
  if (!(disk_.features & blkif::kFeatureFlush)) return io.done(io.ctx, 0);  // no volatile cache to flush
  start(io, BLKIF_OP_FLUSH_DISKCACHE, 0, 0, nullptr);
}

void Blkfront::start_discard(Io& io, uint64_t off, uint64_t len) {
  if (!(disk_.features & blkif::kFeatureDiscard)) return io.done(io.ctx, -EOPNOTSUPP);
  if (off > size_bytes() || len > size_bytes() - off) return io.done(io.ctx, -EINVAL);
  // Whole sectors inside the range only: discarding is a hint.
  uint64_t first = (off + kSectorSize - 1) / kSectorSize, end = (off + len) / kSectorSize;
  if (end <= first) return io.done(io.ctx, 0);
  start(io, BLKIF_OP_DISCARD, first, end - first, nullptr);
}

int Blkfront::flush() {
  return await(nullptr, [&](Io& io) { start_flush(io); });
}

int Blkfront::discard(uint64_t off, uint64_t len) {
  return await(nullptr, [&](Io& io) { start_discard(io, off, len); });
}

}  // namespace sd::front
