#include "vsnd/sndback.hpp"


#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace sd::drvdom {

using sndif::kPageSize;

Result<std::unique_ptr<Sndback>> Sndback::create(std::unique_ptr<GrantedPages> pages,
                                                 std::unique_ptr<platform::EventChannel> evt,
                                                 std::unique_ptr<GrantedPages> dac,
                                                 std::unique_ptr<platform::EventChannel> irq,
                                                 const sndif::StreamState& state) {
  if (!pages || pages->size() < sndif::kPoolPages) return fail(Code::kInvalidInput, "vsnd attach: pool too small");
  if (!evt || !irq) return fail(Code::kInvalidInput, "vsnd attach: no event channel or no DAC interrupt");
  uint8_t* ring_page = pages->get(sndif::kRingRef);
  uint8_t* evt_page = pages->get(sndif::kEvtRef);
  if (!ring_page || !evt_page) return fail(Code::kInvalidInput, "vsnd attach: ring or event page not granted");
  // The registers and the ring are addressed as one block: one mapping.
  constexpr size_t kDacPages = sndif::kDacBytes / kPageSize;
  uint8_t* base = dac && dac->size() >= kDacPages ? dac->get(0) : nullptr;
  for (size_t i = 1; base && i < kDacPages; ++i)
    if (dac->get(i) != base + i * kPageSize) base = nullptr;
  if (!base) return fail(Code::kInvalidInput, "vsnd attach: the DAC's memory is missing, too small or not one mapping");
  auto sb = std::unique_ptr<Sndback>(new Sndback());
  sb->dac_ = base;
  sb->regs_ = reinterpret_cast<sndif::DacRegs*>(base);
  if (sb->regs_->magic != sndif::kDacMagic) return fail(Code::kInvalidInput, "vsnd attach: not a DAC");
  sb->pages_ = std::move(pages);
  sb->dac_pages_ = std::move(dac);
  sb->chan_ = std::move(evt);
  sb->irq_ = std::move(irq);
  sb->evt_ = reinterpret_cast<xensnd_event_page*>(evt_page);
  // init=false: the frontend owns the ring; continue from the shared rsp_prod.
  auto r = ring::BackRing<sndif::Traits>::attach(ring_page, kPageSize, false);
  if (!r) return std::unexpected(r.error());
  sb->ring_.emplace(std::move(*r));
  // Replay: the stream shadowd kept (parameters, volume, mute, trigger, position).
  if (state.open) {
    if (auto e = sb->open_stream(state.params); !e.empty()) return fail(Code::kInvalidInput, "vsnd replay: " + e);
    sb->st_ = state;
    sb->program_dac();
    uint64_t wr = sb->regs_->wr.load(), rd = sb->regs_->rd.load();
    uint64_t queued = wr >= rd ? std::min<uint64_t>(wr - rd, state.acked) : 0;
    sb->last_pos_ = state.acked - queued;
  }
  return sb;
}

Sndback::~Sndback() = default;

void Sndback::poll_fds(std::vector<pollfd>& fds) {
  fds.push_back({chan_->wait_fd(), POLLIN, 0});
  fds.push_back({irq_->wait_fd(), POLLIN, 0});
}

// The stream's buffer pages, from the page directory the frontend granted.
std::string Sndback::open_stream(const xensnd_open_req& o) {
  if (auto e = sndif::check_open(o); !e.empty()) return e;
  uint8_t* dir = pages_->get(sndif::kDirRef);
  if (!dir) return "page directory not granted";
  uint32_t n = (o.buffer_sz + kPageSize - 1) / kPageSize;
  std::vector<uint8_t*> bufs;
  for (uint32_t i = 0; i < n; ++i) {
    grant_ref_t ref;
    // SAFETY: i < n <= kBufPages, far inside the directory page; each ref is
    // copied once and checked against the pool before use.
    std::memcpy(&ref, dir + offsetof(xensnd_page_directory, gref) + i * sizeof(grant_ref_t), sizeof(ref));
    if (ref < sndif::kBufRef0 || ref >= sndif::kPoolPages) return "buffer gref " + std::to_string(ref) + " not granted";
    uint8_t* pg = pages_->get(ref);
    if (!pg) return "buffer gref " + std::to_string(ref) + " cannot be mapped";
    bufs.push_back(pg);
  }
  buf_ = std::move(bufs);
  return {};
}

// The DAC as the stream state says: fifo (sndif::dac_fifo), gain, mute, run.
void Sndback::program_dac() {
  regs_->fifo.store(sndif::dac_fifo(st_.params));
  regs_->muted.store(st_.muted);
  regs_->gain_mdb[0].store(std::min(st_.volume[0], 0));
  regs_->gain_mdb[1].store(std::min(st_.volume[1], 0));
  regs_->run.store(st_.run == static_cast<uint8_t>(sndif::Run::kRunning) ? 1 : 0, std::memory_order_release);
}

bool Sndback::copy_to_dac(const xensnd_rw_req& rw) {
  uint64_t wr = regs_->wr.load(std::memory_order_relaxed);
  uint64_t rd = regs_->rd.load(std::memory_order_acquire);
  uint64_t level = wr >= rd ? wr - rd : 0;
  uint32_t fifo = std::max(regs_->fifo.load(), rw.length);
  if (level + rw.length > fifo) return false;
  uint8_t* ring = dac_ + sndif::kDacRegsBytes;
  for (uint32_t done = 0; done < rw.length;) {
    uint32_t src = rw.offset + done;  // inside the buffer: check_rw
    uint32_t in_page = std::min(rw.length - done, kPageSize - src % kPageSize);
    uint64_t dst = (wr + done) % sndif::kDacRing;
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(in_page, sndif::kDacRing - dst));
    // The guest may change its buffer while we copy: it only changes its audio.
    std::memcpy(ring + dst, buf_[src / kPageSize] + src % kPageSize, n);
    done += n;
  }
  regs_->wr.store(wr + rw.length, std::memory_order_release);
  return true;
}

void Sndback::respond(const xensnd_req& req, int32_t status) {
  xensnd_resp rsp = sndif::response_to(req, status);
  if (garbage(ctl::FaultKind::kBadId))
    rsp.id = static_cast<uint16_t>(req.id + 2 * sndif::kRingSize);  // never in flight
  else if (garbage(ctl::FaultKind::kBadProd))
    rsp.status = 7;  // neither 0 nor a negative errno
  (void)ring_->put_response(rsp);
  // Published at once: a crash replays only what was not answered.
  if (ring_->push_responses()) notify_ = true;
}

void Sndback::send_position(bool force) {
  if (!st_.open) return;
  uint64_t wr = regs_->wr.load(), rd = regs_->rd.load(std::memory_order_acquire);
  uint64_t queued = wr >= rd ? std::min<uint64_t>(wr - rd, st_.acked) : 0;
  uint64_t pos = std::max(last_pos_, st_.acked - queued);
  bool backwards = last_pos_ > 0 && garbage(ctl::FaultKind::kBadGrant, /*take=*/false);
  if (!backwards && pos == last_pos_) return;
  if (!backwards && !force && pos - last_pos_ < st_.params.period_sz && queued != 0) return;
  uint64_t told = backwards ? last_pos_ - std::min<uint64_t>(last_pos_, 4 * st_.params.period_sz) : pos;
  if (!sndif::post_position(evt_, evt_id_, told)) return;  // full: the next position supersedes this one
  if (backwards)
    garbage(ctl::FaultKind::kBadGrant);
  else
    last_pos_ = pos;
  notify_ = true;
}

// Writes queued before a STOP, CLOSE or new OPEN are answered without being
// played: hardware drops its FIFO on stop.
static bool dropped_later(const std::deque<xensnd_req>& q) {
  return std::any_of(q.begin() + 1, q.end(), [](const xensnd_req& r) {
    return r.operation == XENSND_OP_CLOSE || r.operation == XENSND_OP_OPEN ||
           (r.operation == XENSND_OP_TRIGGER && r.op.trigger.type == XENSND_OP_TRIGGER_STOP);
  });
}

// Serves the queue in order. A write waits while the DAC's FIFO is full;
// control requests behind it act at once (a trigger reaches hardware however
// full its FIFO is). Returns true if a write is waiting.
bool Sndback::serve_queue() {
  for (;;) {
    while (!queue_.empty()) {
      const xensnd_req r = queue_.front();
      int32_t status = 0;
      if (r.operation == XENSND_OP_WRITE) {
        if (!st_.open || !sndif::check_rw(r.op.rw, st_.params.buffer_sz).empty() ||
            r.op.rw.length > st_.params.period_sz) {
          status = -EINVAL;
        } else if (dropped_later(queue_)) {
          st_.acked += r.op.rw.length;
        } else if (st_.acked + r.op.rw.length <= regs_->stream_wr.load()) {
          st_.acked += r.op.rw.length;  // replayed, but the last incarnation delivered it before it died
        } else if (copy_to_dac(r.op.rw)) {
          st_.acked += r.op.rw.length;
          regs_->stream_wr.store(st_.acked, std::memory_order_release);
        } else {
          break;  // the DAC's interrupt brings us back
        }
      } else {
        status = control(r);
      }
      queue_.pop_front();
      respond(r, status);
    }
    if (queue_.empty()) return false;
    auto it = std::find_if(queue_.begin() + 1, queue_.end(),
                           [](const xensnd_req& q) { return q.operation != XENSND_OP_WRITE; });
    if (it == queue_.end()) return true;
    const xensnd_req r = *it;
    queue_.erase(it);
    respond(r, control(r));
  }
}

int32_t Sndback::control(const xensnd_req& r) {
  int32_t status = 0;
  switch (r.operation) {
    case XENSND_OP_OPEN: {
      auto e = open_stream(r.op.open);
      if (!e.empty()) {
        status = -EINVAL;
        break;
      }
      regs_->run.store(0);
      regs_->flush_to.store(regs_->wr.load());
      st_ = {};
      st_.open = 1;
      st_.params = r.op.open;
      last_pos_ = 0;
      regs_->stream_wr.store(0);
      program_dac();
      break;
    }
    case XENSND_OP_CLOSE:
      regs_->run.store(0);
      regs_->flush_to.store(regs_->wr.load());
      st_.open = 0;
      st_.run = static_cast<uint8_t>(sndif::Run::kStopped);
      break;
    case XENSND_OP_TRIGGER:
      if (!st_.open) {
        status = -EINVAL;
        break;
      }
      switch (r.op.trigger.type) {
        case XENSND_OP_TRIGGER_START:
        case XENSND_OP_TRIGGER_RESUME:
          st_.run = static_cast<uint8_t>(sndif::Run::kRunning);
          break;
        case XENSND_OP_TRIGGER_PAUSE:
          st_.run = static_cast<uint8_t>(sndif::Run::kPaused);
          break;
        case XENSND_OP_TRIGGER_STOP:
          st_.run = static_cast<uint8_t>(sndif::Run::kStopped);
          regs_->flush_to.store(regs_->wr.load());
          break;
        default:
          status = -EINVAL;
      }
      if (status == 0) program_dac();
      break;
    case XENSND_OP_SET_VOLUME:
    case XENSND_OP_GET_VOLUME:
    case XENSND_OP_MUTE:
    case XENSND_OP_UNMUTE: {
      // Per-channel int32 values in the stream's buffer at offset/length.
      if (!st_.open || !sndif::check_rw(r.op.rw, st_.params.buffer_sz).empty() || r.op.rw.length != 8) {
        status = -EINVAL;
        break;
      }
      uint32_t off = r.op.rw.offset;
      uint8_t* at = buf_[off / kPageSize] + off % kPageSize;
      if (off % kPageSize > kPageSize - 8) {
        status = -EINVAL;
        break;
      }
      if (r.operation == XENSND_OP_GET_VOLUME) {
        std::memcpy(at, st_.volume, 8);
      } else if (r.operation == XENSND_OP_SET_VOLUME) {
        int32_t vol[2];
        std::memcpy(vol, at, 8);  // copied once
        st_.volume[0] = std::clamp(vol[0], -100000, 0);
        st_.volume[1] = std::clamp(vol[1], -100000, 0);
      } else {
        st_.muted = r.operation == XENSND_OP_MUTE;
      }
      program_dac();
      break;
    }
    case XENSND_OP_HW_PARAM_QUERY:
      break;
    default:
      status = -ENOTSUP;  // READ: this card has no capture stream
  }
  return status;
}

Result<void> Sndback::service() {
  (void)chan_->consume();  // clear the kicks
  (void)irq_->consume();
  if (stalled_) return {};
  notify_ = false;
  for (;;) {
    // Take every request off the ring (at most its size are outstanding).
    for (;;) {
      auto req = ring_->get_request();
      if (!req) return std::unexpected(req.error());
      if (!*req) break;
      queue_.push_back(**req);
    }
    bool blocked = serve_queue();
    if (blocked || !ring_->final_check_for_requests()) break;
  }
  send_position(false);
  if (notify_) (void)chan_->notify();
  return {};
}

}  // namespace sd::drvdom
