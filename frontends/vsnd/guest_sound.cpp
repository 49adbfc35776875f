#include "vsnd/guest_sound.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>

namespace sd::front {

using sndif::kPageSize;

Result<std::unique_ptr<GuestSound>> GuestSound::attach(void* ring, void* evt_page,
                                                       std::unique_ptr<platform::EventChannel> req_evt,
                                                       std::unique_ptr<platform::EventChannel> pos_evt,
                                                       std::unique_ptr<GuestGrants> grants, Sndfront& out,
                                                       std::string name, std::shared_ptr<void> keep,
                                                       uint64_t outage_max) {
  if (!ring || !evt_page || !req_evt || !pos_evt || !grants)
    return fail(Code::kInvalidInput, "guest sound: no ring, event page, event channel or grants");
  auto r = ring::BackRing<sndif::Traits>::attach(ring, kPageSize, false);  // the guest initialised it
  if (!r) return std::unexpected(r.error());
  std::unique_ptr<GuestSound> g(new GuestSound());
  g->ring_.emplace(std::move(*r));
  g->evt_ = static_cast<xensnd_event_page*>(evt_page);
  g->req_evt_ = std::move(req_evt);
  g->pos_evt_ = std::move(pos_evt);
  g->grants_ = std::move(grants);
  g->out_ = &out;
  g->name_ = std::move(name);
  g->keep_ = std::move(keep);
  g->opens_wanted_ = out.opens();
  g->outage_max_ = outage_max - outage_max % sndif::kFrameBytes;
  size_t bytes = sndif::kMaxBuffer + g->outage_max_;
  g->audio_mem_ = std::make_unique_for_overwrite<uint8_t[]>(bytes);
  g->audio_ = {g->audio_mem_.get(), bytes};
  return g;
}

void GuestSound::stop(const std::string& why) {
  if (!broken_.empty()) return;
  broken_ = why;
  std::fprintf(stderr, "guest sound %s: the guest's ring is broken, no longer served: %s\n", name_.c_str(),
               why.c_str());
}

void GuestSound::serve() {
  (void)req_evt_->consume();
  bool answered = false;
  while (broken_.empty()) {
    auto r = ring_->next_request();
    if (!r) {
      stop(r.error().message);
      break;
    }
    if (!*r) break;
    const xensnd_req req = **r;  // our copy; the guest cannot change it now
    xensnd_resp rsp{};
    rsp.id = req.id;
    rsp.operation = req.operation;
    rsp.status = handle(req, rsp);
    if (rsp.status == 0) ++counters_.answered;
    else ++counters_.refused;
    (void)ring_->put_response(rsp);  // one per consumed request: always has a slot
    answered = true;
  }
  if (answered && ring_->push_responses()) (void)req_evt_->notify();
  feed();
  keep_time();
  report_position();
}

int32_t GuestSound::handle(const xensnd_req& r, xensnd_resp& rsp) {
  switch (r.operation) {
    case XENSND_OP_HW_PARAM_QUERY:
      return query(r.op.hw_param, rsp.resp.hw_param);
    case XENSND_OP_OPEN:
      return open(r.op.open);
    case XENSND_OP_CLOSE: {  // a CLOSE without an OPEN is answered too
      if (open_) queue_.push_back(Item{r, 0});
      open_ = running_ = false;
      lag_ = 0;
      buffer_refs_.clear();
      return 0;
    }
    case XENSND_OP_WRITE:
      return write(r.op.rw);
    case XENSND_OP_TRIGGER: {
      uint8_t t = r.op.trigger.type;
      if (!open_ || t > XENSND_OP_TRIGGER_RESUME) return -EINVAL;
      uint64_t hold_to = 0;
      if (t == XENSND_OP_TRIGGER_STOP) {
        // What the guest heard as played plays out before the STOP; what it
        // wrote beyond that it will not count (an underrun met while its
        // last WRITE was on the way: ALSA writes that audio again after its
        // prepare) or wants dropped (snd_pcm_drop).
        hold_to = std::min(reported_, written_);
        drop_after(std::max(hold_to, delivered_));
      }
      queue_.push_back(Item{r, 0, hold_to});
      running_ = t == XENSND_OP_TRIGGER_START || t == XENSND_OP_TRIGGER_RESUME;
      if (t == XENSND_OP_TRIGGER_STOP) restart_count();  // before the answer: the guest prepares after it
      return 0;
    }
    default:  // capture, volume and mute are not offered
      return -EOPNOTSUPP;
  }
}

// The guest's constraints narrowed to what the DAC plays (buffer and
// period in frames, as ALSA counts them); -EINVAL when nothing is left.
int32_t GuestSound::query(const xensnd_query_hw_param& q, xensnd_query_hw_param& out) const {
  out = q;
  out.formats = q.formats & (1ULL << sndif::kFormat);
  auto narrow = [](auto& iv, uint32_t lo, uint32_t hi) {
    iv.min = std::max(iv.min, lo);
    iv.max = std::min(iv.max, hi);
    return iv.min <= iv.max;
  };
  constexpr uint32_t kF = sndif::kFrameBytes;
  bool ok = out.formats != 0 && narrow(out.rates, sndif::kRate, sndif::kRate) &&
            narrow(out.channels, sndif::kChannels, sndif::kChannels) &&
            narrow(out.buffer, 2 * sndif::kMinPeriod / kF, sndif::kMaxBuffer / kF) &&
            narrow(out.period, sndif::kMinPeriod / kF, sndif::kMaxPeriod / kF);
  return ok ? 0 : -EINVAL;
}

int32_t GuestSound::open(const xensnd_open_req& o) {
  xensnd_open_req mine = o;
  mine.gref_directory = sndif::kDirRef;  // the splitter's buffer, not the guest's
  if (!sndif::check_open(mine).empty()) return -EINVAL;
  // The guest's page directory: one page lists up to 1023 buffer pages, and
  // a buffer here has at most kBufPages.
  std::vector<uint8_t> dir(kPageSize);
  GrantCopy op{o.gref_directory, 0, static_cast<uint16_t>(kPageSize), dir.data(), false, false};
  grants_->copy(&op, 1);
  if (!op.ok) return -EINVAL;
  std::vector<uint32_t> refs((o.buffer_sz + kPageSize - 1) / kPageSize);
  std::memcpy(refs.data(), dir.data() + offsetof(xensnd_page_directory, gref), refs.size() * sizeof(uint32_t));
  if (open_) {  // OPEN again without a CLOSE (new hw_params): close the old stream first
    xensnd_req close{};
    close.operation = XENSND_OP_CLOSE;
    queue_.push_back(Item{close, 0});
  }
  xensnd_req req{};
  req.operation = XENSND_OP_OPEN;
  req.op.open = mine;
  queue_.push_back(Item{req, 0});
  ++opens_wanted_;
  buffer_refs_ = std::move(refs);
  params_ = o;
  open_ = true;
  running_ = false;
  reported_ = written_ = delivered_ = lag_ = last_played_ = 0;
  told_base_ = stream_base_ = 0;  // snd-xen-front counts from 0 at each OPEN (hw_params)
  moved_ = ticked_ = now();
  return 0;
}

// The audio at rw.offset in the guest's buffer, copied out now behind the
// queued audio (one grant copy per page it touches, split where the queue
// wraps) and queued for the splitter.
int32_t GuestSound::write(const xensnd_rw_req& rw) {
  if (!open_ || !sndif::check_rw(rw, params_.buffer_sz).empty()) return -EINVAL;
  if (queued_bytes_ + rw.length > audio_.size()) return -EBUSY;  // more than was played: not a player's
  GrantCopy ops[sndif::kBufPages + 2];
  size_t n = 0, tail = (head_ + queued_bytes_) % audio_.size();
  for (uint32_t off = rw.offset, at = 0; at < rw.length;) {
    uint32_t page = off / kPageSize, in = off % kPageSize;
    auto len = static_cast<uint32_t>(std::min<size_t>({rw.length - at, kPageSize - in, audio_.size() - tail}));
    if (page >= buffer_refs_.size() || n == std::size(ops)) return -EINVAL;
    ops[n++] = {buffer_refs_[page], static_cast<uint16_t>(in), static_cast<uint16_t>(len), audio_.data() + tail,
                false, false};
    off += len;
    at += len;
    tail = (tail + len) % audio_.size();
  }
  grants_->copy(ops, n);
  for (size_t i = 0; i < n; ++i)
    if (!ops[i].ok) return -EINVAL;
  queued_bytes_ += rw.length;
  written_ += rw.length;
  counters_.bytes_in += rw.length;
  queue_.push_back(Item{std::nullopt, rw.length});
  return 0;
}

// What is queued goes to the splitter in the guest's order: a control
// request once the ring takes it, audio once the backend has the stream
// open and as far as the splitter's buffer takes it.
void GuestSound::feed() {
  while (!queue_.empty()) {
    Item& it = queue_.front();
    if (out_->state().open && out_->position() < it.hold_to) return;  // a STOP: the DAC is still playing
    if (it.control) {
      auto r = out_->submit(*it.control);
      if (!r && r.error().code == Code::kRetry) return;  // ring full, or no pool yet: next time
      if (!r)
        std::fprintf(stderr, "guest sound %s: %s not delivered: %s\n", name_.c_str(),
                     sndif::op_name(it.control->operation).c_str(), r.error().to_string().c_str());
      queue_.pop_front();
      continue;
    }
    if (out_->opens() != opens_wanted_ || !out_->state().open) return;  // the stream is not open there yet
    while (it.audio > 0) {
      size_t run = std::min<size_t>(it.audio, audio_.size() - head_);  // up to where the queue wraps
      auto took = out_->write(audio_.data() + head_, run);
      if (!took) return;  // shadowd is gone: nothing plays any more
      head_ = (head_ + *took) % audio_.size();
      queued_bytes_ -= *took;
      delivered_ += *took;
      it.audio -= static_cast<uint32_t>(*took);
      if (*took < run) return;  // the splitter's buffer is full: the rest later
    }
    queue_.pop_front();
  }
}

// The audio queued here beyond stream position `keep` leaves the queue
// (from its tail: the newest) and the stream.
void GuestSound::drop_after(uint64_t keep) {
  uint64_t extra = written_ > keep ? std::min<uint64_t>(written_ - keep, queued_bytes_) : 0;
  queued_bytes_ -= extra;
  written_ -= extra;
  for (auto it = queue_.rbegin(); it != queue_.rend() && extra > 0; ++it) {
    uint32_t cut = static_cast<uint32_t>(std::min<uint64_t>(it->audio, extra));
    it->audio -= cut;
    extra -= cut;
  }
}

// The guest's clock while the DAC's stands still (see the header): from
// kStall after the DAC's position last moved with the guest's audio
// waiting, lag_ grows by the time that passes, in whole frames, as far as
// the guest wrote and the queue holds.
uint64_t GuestSound::played() const { return out_->opens() == opens_wanted_ ? out_->position() : 0; }

void GuestSound::keep_time() {
  auto t = now();
  uint64_t dac = played();
  bool waiting = open_ && running_ && written_ > dac + lag_;
  if (dac != last_played_ || !waiting) {
    last_played_ = dac;
    moved_ = ticked_ = t;
    return;
  }
  if (t - moved_ < kStall) {
    ticked_ = t;
    return;
  }
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t - ticked_).count();
  uint64_t frames = static_cast<uint64_t>(ns) * sndif::kRate / 1'000'000'000ULL;
  if (frames == 0) return;
  ticked_ += std::chrono::nanoseconds(frames * 1'000'000'000ULL / sndif::kRate);
  uint64_t room = std::min(written_ - dac - lag_, outage_max_ - std::min(lag_, outage_max_));
  lag_ += std::min<uint64_t>(frames * sndif::kFrameBytes, room - room % sndif::kFrameBytes);
}

// The stream's position as the guest hears it (the DAC's, plus the time it
// stood still), each time it moved, while the guest runs it (none after its
// STOP or CLOSE: it would apply them to its next stream; none of an old
// stream's while the new one's OPEN waits).
void GuestSound::report_position() {
  if (!open_ || !running_) return;
  uint64_t pos = std::min(played() + lag_, written_);
  if (pos <= reported_) return;
  // In steps of at most half the guest's buffer: snd-xen-front keeps its
  // pointer modulo the buffer, so a step of a whole buffer (the guest's
  // buffer full, the position catching up after the proxy was busy) would
  // not move it at all, and ALSA would wait for room until it gives up.
  uint64_t step = std::max<uint64_t>(sndif::kFrameBytes, params_.buffer_sz / 2 / sndif::kFrameBytes * sndif::kFrameBytes);
  bool told = false;
  while (reported_ < pos) {
    uint64_t next = std::min(pos, reported_ + step);
    // The guest's page: indices it garbled only skip reports (every slot
    // written is inside the page); a full page takes the rest next time.
    if (!sndif::post_position(evt_, evt_id_, told_base_ + next - stream_base_)) break;
    reported_ = next;
    told = true;
    ++counters_.positions;
  }
  if (told) (void)pos_evt_->notify();
}

// At a STOP (see the header): the guest's count goes to the next whole
// buffer, so snd-xen-front's pointer is at 0 when ALSA counts from 0 again,
// and the audio written after the STOP is counted from there. Positions of
// audio written before it are not told any more (the guest ended that
// stream; a dropped part still plays and counts, unheard by the guest).
void GuestSound::restart_count() {
  uint64_t told = told_base_ + reported_ - stream_base_, buffer = params_.buffer_sz;
  uint64_t whole = (told + buffer - 1) / buffer * buffer;
  // The guest's page full (or garbled): its count stays where it was.
  if (whole != told && sndif::post_position(evt_, evt_id_, whole)) {
    ++counters_.positions;
    (void)pos_evt_->notify();
    told = whole;
  }
  told_base_ = told;
  stream_base_ = reported_ = written_;
}

}  // namespace sd::front
