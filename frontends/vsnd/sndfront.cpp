#include "vsnd/sndfront.hpp"

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace sd::front {

using sndif::kPageSize;
constexpr uint16_t kReqRing = 0;

Result<std::unique_ptr<Sndfront>> Sndfront::attach(ctl::Channel ch, std::unique_ptr<PoolSource> xen) {
  auto f = std::unique_ptr<Sndfront>(new Sndfront(std::move(ch), std::move(xen)));
  if (auto r = f->link_.wait_attached(*f, std::chrono::seconds(5)); !r) return std::unexpected(r.error());
  return f;
}

Sndfront::Sndfront(ctl::Channel ch, std::unique_ptr<PoolSource> xen)
    : link_(std::move(ch), {"vsnd", sndif::kRingSize, xen ? 0u : static_cast<uint32_t>(sndif::kPoolPages)}),
      xen_(std::move(xen)) {}

Sndfront::~Sndfront() = default;

// The pool is this guest's own memory, mapped by the link (the buffer pages
// side by side, so PCM is copied in one piece): initialise the ring, the
// event page and the page directory.
Result<void> Sndfront::attached(FrontendLink& link) {
  log().set_config(&st_, sizeof(st_));
  if (xen_) return {};  // the pool comes with the first kReconnect, which names the backend's domain
  return use_pages(link.page(sndif::kRingRef), link.page(sndif::kEvtRef), link.page(sndif::kDirRef),
                   link.page(sndif::kBufRef0));
}

Result<void> Sndfront::use_pages(uint8_t* ring, uint8_t* evt, uint8_t* dir, uint8_t* buf) {
  ring_page_ = ring;
  evt_ = reinterpret_cast<xensnd_event_page*>(evt);
  dir_ = dir;
  buf_ = buf;
  auto r = ring::FrontRing<sndif::Traits>::attach(ring_page_, kPageSize, true);
  if (!r) return std::unexpected(r.error());
  ring_.emplace(std::move(*r));
  std::memset(static_cast<void*>(evt_), 0, kPageSize);
  // The page directory: one page lists every buffer page.
  std::memset(dir_, 0, kPageSize);
  for (uint32_t i = 0; i < sndif::kBufPages; ++i) {
    grant_ref_t ref = sndif::kBufRef0 + i;
    std::memcpy(dir_ + offsetof(xensnd_page_directory, gref) + i * sizeof(ref), &ref, sizeof(ref));
  }
  return {};
}

void Sndfront::kick() {
  if (evt_chan_) (void)evt_chan_->notify();
  else link_.kick();
}

Result<ctl::XenPool> Sndfront::regrant(uint32_t domid) {
  // The old grants go first (the grant allocator is bounded): the audio in
  // the buffer (written, maybe not yet played) waits here meanwhile.
  std::vector<uint8_t> audio;
  if (buf_) audio.assign(buf_, buf_ + sndif::kMaxBuffer);
  ring_.reset();
  evt_chan_.reset();
  pool_keep_.reset();
  ring_page_ = dir_ = buf_ = nullptr;
  evt_ = nullptr;
  auto pool = xen_->next(domid, sndif::kPoolPages);
  if (!pool) return std::unexpected(pool.error());
  for (size_t i = sndif::kBufRef0 + 1; i < pool->pages.size(); ++i)  // the buffer is copied as one run
    if (pool->pages[i] != pool->pages[i - 1] + kPageSize) return fail(Code::kEscalate, "pool pages not contiguous");
  if (auto r = use_pages(pool->pages[sndif::kRingRef], pool->pages[sndif::kEvtRef], pool->pages[sndif::kDirRef],
                         pool->pages[sndif::kBufRef0]);
      !r)
    return std::unexpected(r.error());
  if (!audio.empty()) std::memcpy(buf_, audio.data(), audio.size());
  evt_chan_ = std::move(pool->evt);
  pool_keep_ = std::move(pool->keep);
  return pool->ref;
}

void Sndfront::log_state() {
  ++st_.generation;
  log().set_config(&st_, sizeof(st_));
}

Result<uint16_t> Sndfront::post(xensnd_req req) {
  if (link_.gone()) return fail(Code::kEscalate, "vsnd: shadowd is gone");
  if (!ring_) return fail(Code::kRetry, "vsnd: no backend yet");
  if (ring_->free_requests() == 0) return fail(Code::kRetry, "vsnd: ring full");
  auto id = ids_.allocate();
  if (!id) return fail(Code::kRetry, "vsnd: no free id");
  req.id = static_cast<uint16_t>(*id);
  (void)ring_->put_request(req);
  log().record(req.id, kReqRing, &req, sndif::kLoggedReq);  // the shadow's copy, same step
  sent_[req.id] = req;
  order_[req.id] = next_order_++;
  return req.id;
}

Result<int32_t> Sndfront::call(xensnd_req req, xensnd_resp* out) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ring_ && !link_.gone() && std::chrono::steady_clock::now() < deadline)  // Xen: the first pool
    if (auto w = wait(20); !w) return std::unexpected(w.error());
  auto id = post(req);
  if (!id) return std::unexpected(id.error());
  if (ring_->push_requests()) kick();
  done_.erase(*id);
  while (!done_.count(*id)) {
    if (std::chrono::steady_clock::now() >= deadline)
      return fail(Code::kEscalate, "vsnd: no answer to " + sndif::op_name(req.operation) + " within " +
                                       std::to_string(timeout.count()) + " ms");
    if (auto w = wait(20); !w) return std::unexpected(w.error());
  }
  auto rsp = done_[*id].second;
  done_.erase(*id);
  if (out) *out = rsp;
  return rsp.status;
}

Result<void> Sndfront::wait(int ms) {
  pollfd p[2] = {{link_.wait_fd(), POLLIN, 0}, {link_.fd(), POLLIN, 0}};
  int r = ::poll(p, 2, ms);
  if (r < 0 && errno != EINTR) return sys_fail("poll");
  return pump();
}

Result<void> Sndfront::pump() {
  if (auto r = link_.pump(*this); !r) return r;
  if (evt_chan_) (void)evt_chan_->consume();
  else link_.clear_kicks();
  if (link_.connected() && ring_) (void)take_responses();
  if (link_.connected() && ring_) (void)take_events();
  return {};
}

void Sndfront::backend_fault(const std::string& why) {
  link_.fault(why);
}

Result<void> Sndfront::take_responses() {
  do {
    for (;;) {
      auto r = ring::get_checked_response(*ring_, ids_);
      if (!r) {
        backend_fault(r.error().message);
        return std::unexpected(r.error());
      }
      if (!*r) break;
      const xensnd_resp rsp = **r;  // our copy; the backend cannot change it now
      auto it = sent_.find(rsp.id);
      if (it == sent_.end()) {  // cannot happen: the id table had it
        backend_fault("response for id " + std::to_string(rsp.id) + " not sent");
        return fail(Code::kRestartReplay, "unknown id");
      }
      const xensnd_req req = it->second;
      std::string bad;
      if (rsp.operation != req.operation)
        bad = "response of operation " + sndif::op_name(rsp.operation) + " to a " + sndif::op_name(req.operation) +
              " request (id " + std::to_string(rsp.id) + ")";
      else if (!sndif::plausible_status(rsp.status))
        bad = "wrong status " + std::to_string(rsp.status) + " for " + sndif::op_name(req.operation);
      else if (req.operation == XENSND_OP_WRITE && rsp.status != 0)
        bad = "WRITE failed with status " + std::to_string(rsp.status);
      if (!bad.empty()) {
        (void)ids_.claim(rsp.id);  // still in flight: it is replayed
        backend_fault(bad);
        return fail(Code::kRestartReplay, bad);
      }
      sent_.erase(it);
      order_.erase(rsp.id);
      log().complete(rsp.id);
      on_response(req, rsp);
      done_[rsp.id] = {true, rsp};
      if (req.operation == XENSND_OP_WRITE || unwaited_.erase(rsp.id)) done_.erase(rsp.id);
    }
    if (on_ring_read_empty_for_test) on_ring_read_empty_for_test();
    // Responses published between the last read and rsp_event being set
    // bring no notification: take them now.
  } while (ring_->final_check_for_responses());
  return {};
}

void Sndfront::on_response(const xensnd_req& req, const xensnd_resp& rsp) {
  if (rsp.status != 0) return;
  switch (req.operation) {
    case XENSND_OP_WRITE:
      st_.acked += req.op.rw.length;
      break;
    case XENSND_OP_OPEN:
      st_ = sndif::StreamState{};
      st_.open = 1;
      st_.params = req.op.open;
      st_.generation = 0;
      written_ = 0;
      position_ = pos_floor_ = 0;
      ++opens_;
      break;
    case XENSND_OP_CLOSE:
      st_.open = 0;
      st_.run = static_cast<uint8_t>(sndif::Run::kStopped);
      break;
    case XENSND_OP_TRIGGER:
      if (req.op.trigger.type == XENSND_OP_TRIGGER_START || req.op.trigger.type == XENSND_OP_TRIGGER_RESUME)
        st_.run = static_cast<uint8_t>(sndif::Run::kRunning);
      else if (req.op.trigger.type == XENSND_OP_TRIGGER_PAUSE)
        st_.run = static_cast<uint8_t>(sndif::Run::kPaused);
      else
        st_.run = static_cast<uint8_t>(sndif::Run::kStopped);
      break;
    case XENSND_OP_SET_VOLUME: {
      int32_t v[2];
      std::memcpy(v, buf_ + req.op.rw.offset, sizeof(v));
      st_.volume[0] = v[0];
      st_.volume[1] = v[1];
      break;
    }
    case XENSND_OP_MUTE:
    case XENSND_OP_UNMUTE:
      st_.muted = req.operation == XENSND_OP_MUTE;
      break;
    default:
      return;
  }
  log_state();
}

Result<void> Sndfront::take_events() {
  // SAFETY: in_prod is the backend's: read once, checked against what the
  // page can hold before any event is read; every event is copied once.
  uint32_t prod = std::atomic_ref<uint32_t>(evt_->in_prod).load(std::memory_order_acquire);
  uint32_t cons = std::atomic_ref<uint32_t>(evt_->in_cons).load(std::memory_order_relaxed);
  if (prod - cons > XENSND_IN_RING_LEN) {
    backend_fault("event in_prod " + std::to_string(prod) + " beyond the page (in_cons " + std::to_string(cons) + ")");
    return fail(Code::kRestartReplay, "events");
  }
  for (; cons != prod; ++cons) {
    xensnd_evt e;
    std::memcpy(&e, &XENSND_IN_RING_REF(evt_, cons), sizeof(e));
    if (e.type != XENSND_EVT_CUR_POS) continue;
    uint64_t pos = e.op.cur_pos.position;
    std::string bad;
    if (pos < pos_floor_)
      bad = "position went backwards from " + std::to_string(pos_floor_) + " to " + std::to_string(pos);
    else if (pos > st_.acked)
      bad = "position " + std::to_string(pos) + " beyond the " + std::to_string(st_.acked) + " bytes acknowledged";
    if (!bad.empty()) {
      std::atomic_ref<uint32_t>(evt_->in_cons).store(cons + 1, std::memory_order_release);
      backend_fault(bad);
      return fail(Code::kRestartReplay, bad);
    }
    pos_floor_ = pos;
    position_ = std::max(position_, pos);
  }
  std::atomic_ref<uint32_t>(evt_->in_cons).store(prod, std::memory_order_release);
  return {};
}

// The old backend is dead. Keep what it finished, then hand the next one
// (a new incarnation, or shadowd in active mode) a clean ring holding exactly
// the requests still in flight, in their order (xen-blkfront's
// blkif_recover: copy the shadow, reset, requeue).
Result<FrontendLink::Repair> Sndfront::repair(const ctl::Msg& m) {
  if (ring_) (void)take_responses();  // stops at the first invalid response
  std::optional<ctl::XenPool> granted;
  if (xen_) {
    auto g = regrant(m.a);
    if (!g) return std::unexpected(g.error());
    granted = *g;  // shadowd passes it on to the new backend
    // shadowd cannot map this splitter log on Xen: the stream the new
    // backend resumes comes with the repair, before kReconnected.
    link_.config(st_);
  }
  ring_->reset();
  ids_.clear();
  std::atomic_ref<uint32_t>(evt_->in_prod).store(0);
  std::atomic_ref<uint32_t>(evt_->in_cons).store(0);
  pos_floor_ = 0;
  // Replay order: the log's order counter; the content: the log's copy of
  // the request (the shadow's), our own copy where the log keeps no bytes.
  std::vector<std::pair<uint64_t, uint16_t>> todo;
  std::map<uint16_t, std::vector<uint8_t>> logged;
  if (log().enabled()) {
    for (const auto& e : log().inflight(kReqRing))
      if (e.slot < sndif::kRingSize && sent_.count(static_cast<uint16_t>(e.slot)) && e.len == sndif::kLoggedReq) {
        logged[static_cast<uint16_t>(e.slot)].assign(e.req, e.req + e.len);
      }
  }
  for (auto& [id, ord] : order_) todo.push_back({ord, id});
  std::sort(todo.begin(), todo.end());
  uint32_t replayed = 0;
  for (auto& [ord, id] : todo) {
    xensnd_req req = sent_[id];
    if (auto it = logged.find(id); it != logged.end()) {
      xensnd_req from_log;
      std::memcpy(&from_log, &req, sizeof(req));
      std::memcpy(&from_log, it->second.data(), it->second.size());
      if (from_log.id == id && from_log.operation == req.operation) req = from_log;
    }
    (void)ids_.claim(id);
    (void)ring_->put_request(req);
    ++replayed;
  }
  ring_->push_requests();
  return FrontendLink::Repair{replayed, granted};
}

Result<void> Sndfront::submit(xensnd_req req) {
  if (req.operation != XENSND_OP_OPEN && req.operation != XENSND_OP_CLOSE && req.operation != XENSND_OP_TRIGGER)
    return fail(Code::kInvalidInput, "vsnd: only OPEN, CLOSE and TRIGGER are submitted unwaited");
  if (req.operation == XENSND_OP_OPEN) {
    req.op.open.gref_directory = sndif::kDirRef;  // the splitter's own buffer
    if (auto e = sndif::check_open(req.op.open); !e.empty()) return fail(Code::kInvalidInput, "vsnd: " + e);
  }
  auto id = post(req);
  if (!id) return std::unexpected(id.error());
  unwaited_[*id] = true;
  if (ring_->push_requests()) kick();
  return {};
}

Result<int32_t> Sndfront::open(uint32_t buffer_bytes, uint32_t period_bytes) {
  xensnd_req r{};
  r.operation = XENSND_OP_OPEN;
  r.op.open.pcm_rate = sndif::kRate;
  r.op.open.pcm_format = sndif::kFormat;
  r.op.open.pcm_channels = sndif::kChannels;
  r.op.open.buffer_sz = buffer_bytes;
  r.op.open.period_sz = period_bytes;
  r.op.open.gref_directory = sndif::kDirRef;
  if (auto e = sndif::check_open(r.op.open); !e.empty()) return fail(Code::kInvalidInput, "vsnd: " + e);
  return call(r);
}

Result<int32_t> Sndfront::close_stream() {
  xensnd_req r{};
  r.operation = XENSND_OP_CLOSE;
  return call(r);
}

Result<int32_t> Sndfront::trigger(uint8_t type) {
  xensnd_req r{};
  r.operation = XENSND_OP_TRIGGER;
  r.op.trigger.type = type;
  return call(r);
}

// Volume values travel in the stream's buffer; only while nothing
// is queued in it (before the first write).
Result<int32_t> Sndfront::set_volume(int32_t left_mdb, int32_t right_mdb) {
  if (!st_.open || written_ != st_.acked || !buf_)
    return fail(Code::kRetry, "vsnd: volume only on an idle open stream");
  int32_t v[2] = {left_mdb, right_mdb};
  std::memcpy(buf_, v, sizeof(v));
  xensnd_req r{};
  r.operation = XENSND_OP_SET_VOLUME;
  r.op.rw = {0, 8};
  return call(r);
}

Result<size_t> Sndfront::write(const uint8_t* data, size_t bytes) {
  if (link_.gone()) return fail(Code::kEscalate, "vsnd: shadowd is gone");
  if (!st_.open) return fail(Code::kInvalidInput, "vsnd: write on a stream that is not open");
  if (!ring_) return size_t{0};
  const uint32_t bsz = st_.params.buffer_sz, psz = st_.params.period_sz;
  // Never past what the backend has not acknowledged: that audio is still
  // being read out of the buffer.
  bytes = std::min<uint64_t>(bytes, bsz - std::min<uint64_t>(bsz, written_ - st_.acked));
  bytes -= bytes % sndif::kFrameBytes;
  size_t taken = 0;
  // The last ring slots stay free for stream control (START, STOP, CLOSE):
  // many small writes must not leave a player unable to start.
  constexpr unsigned kControlSlots = 4;
  while (taken < bytes && ring_->free_requests() > kControlSlots && ids_.count() + kControlSlots < ids_.capacity()) {
    uint32_t off = static_cast<uint32_t>(written_ % bsz);
    uint32_t chunk = static_cast<uint32_t>(std::min<uint64_t>({bytes - taken, bsz - off, psz - written_ % psz}));
    std::memcpy(buf_ + off, data + taken, chunk);
    xensnd_req r{};
    r.operation = XENSND_OP_WRITE;
    r.op.rw = {off, chunk};
    if (!post(r)) break;
    written_ += chunk;
    taken += chunk;
  }
  if (taken && ring_->push_requests()) kick();
  return taken;
}

Result<void> Sndfront::drain() {
  if (!st_.open) return {};
  if (st_.run != static_cast<uint8_t>(sndif::Run::kRunning) && written_ > 0) {
    auto s = trigger(XENSND_OP_TRIGGER_START);
    if (!s) return std::unexpected(s.error());
  }
  // The audio still to play plus the DAC's FIFO, plus a second of slack.
  uint64_t left_ms = (written_ - std::min(written_, position_)) * 1000 / (sndif::kRate * sndif::kFrameBytes);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(left_ms + 1000);
  while (std::chrono::steady_clock::now() < deadline) {
    bool writes_out =
        std::any_of(sent_.begin(), sent_.end(), [](const auto& kv) { return kv.second.operation == XENSND_OP_WRITE; });
    if (!writes_out && position_ >= written_) return {};
    if (auto w = wait(10); !w) return w;
    if (writes_out) deadline = std::max(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(200));
  }
  return {};
}

}  // namespace sd::front
